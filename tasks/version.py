"""Recorded with every processed object so a later change of the pipeline can find what an older one made."""

PIPELINE_VERSION = "preprocess-1"
