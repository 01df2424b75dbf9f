"""The work, one package per role: pipeline (the stage protocol), one package per stage (preprocess, classify,
extract, transcribe), models, review, run (Prefect tasks and run bookkeeping) and ops (the local stack, deployments,
workers). docs/architecture.md says what each owns and may import."""
