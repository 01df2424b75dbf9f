"""The work: pure stage logic (preprocess/), the per-object pipeline (ingest), and thin Prefect tasks."""
