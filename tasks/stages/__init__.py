"""The pipeline as a list of stages. Each stage takes a batch of work items (objects in flight) and returns one
typed update per item; `pipeline.py` builds the list from the settings and runs it, timing each stage."""
