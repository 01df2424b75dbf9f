"""Which backend serves extraction (DOCFLOW_EXTRACT_BACKEND), loaded once per spec per worker process."""

from __future__ import annotations

from collections.abc import Callable

from schemas.errors import ConfigError
from tasks.models.cache import load_cached
from tasks.models.generation.base import GeneratorSpec, StructuredGenerator
from tasks.models.generation.hf import TextLLMGenerator, VisionLanguageGenerator

# The extraction backends (DOCFLOW_EXTRACT_BACKEND): a new backend is a class with the StructuredGenerator shape,
# registered here under its name, with the setting that names its model.
BACKENDS: dict[str, tuple[Callable[[GeneratorSpec], StructuredGenerator], str]] = {
    "vlm": (VisionLanguageGenerator, "DOCFLOW_VLM_MODEL"),
    "text": (TextLLMGenerator, "DOCFLOW_TEXT_LLM_MODEL"),
}


def load_generator(spec: GeneratorSpec) -> StructuredGenerator:
    """One model per spec per worker process."""
    if spec.kind not in BACKENDS:
        raise ConfigError(f"unknown extraction backend {spec.kind!r}; known: {', '.join(BACKENDS)}")
    factory, setting = BACKENDS[spec.kind]
    return load_cached("generator", spec, lambda: factory(spec), f"model {spec.model!r} ({setting})")
