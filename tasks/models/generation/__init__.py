"""Structured generation: one protocol (base), one module per backend (hf: transformers), the registry that
picks one, and the schema-constrained decoding they share."""
