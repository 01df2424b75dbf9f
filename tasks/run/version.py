"""Recorded with every processed object so a later change of the pipeline can find what an older one made."""

# 2: transcription and structured extraction joined preprocessing.
PIPELINE_VERSION = "pipeline-2"
