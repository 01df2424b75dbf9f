"""Structured extraction: prompts, constrained generation and validation, grounding of values in the page text, OCR,
and the stage."""
