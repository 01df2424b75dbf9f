"""Operations: the local stack (`docflow stack`), deployments on a Prefect server, and workers."""
