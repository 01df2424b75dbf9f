"""Which backend serves extraction (DOCFLOW_EXTRACT_BACKEND, and for a text model DOCFLOW_TEXT_LLM_ENGINE), loaded
once per spec per worker process."""

from __future__ import annotations

from collections.abc import Callable

from schemas.defaults import TEXT_LLM_ENGINE
from schemas.errors import ConfigError
from tasks.models.cache import load_cached
from tasks.models.generation.base import GeneratorSpec, StructuredGenerator
from tasks.models.generation.hf import TextLLMGenerator, VisionLanguageGenerator
from tasks.models.generation.llama_cpp import LlamaCppGenerator
from tasks.models.generation.openai_server import OpenAIServerGenerator

# The extraction backends: a new one is a class with the StructuredGenerator shape, registered here under its
# (DOCFLOW_EXTRACT_BACKEND, engine) pair, with the setting that names its model.
BACKENDS: dict[tuple[str, str], tuple[Callable[[GeneratorSpec], StructuredGenerator], str]] = {
    ("vlm", "transformers"): (VisionLanguageGenerator, "DOCFLOW_VLM_MODEL"),
    ("text", "transformers"): (TextLLMGenerator, "DOCFLOW_TEXT_LLM_MODEL"),
    ("text", "llama.cpp"): (LlamaCppGenerator, "DOCFLOW_TEXT_LLM_MODEL"),
    # An OpenAI-compatible server (DOCFLOW_LLM_SERVER_URL) runs the model: a VLM gets the page images too.
    ("vlm", "openai"): (OpenAIServerGenerator, "DOCFLOW_VLM_MODEL"),
    ("text", "openai"): (OpenAIServerGenerator, "DOCFLOW_TEXT_LLM_MODEL"),
}


# The engine of a backend when its spec names none.
DEFAULT_ENGINES = {"vlm": "transformers", "text": TEXT_LLM_ENGINE}


def load_generator(spec: GeneratorSpec) -> StructuredGenerator:
    """One model per spec per worker process."""
    engine = spec.engine or DEFAULT_ENGINES.get(spec.kind, "")
    if (spec.kind, engine) not in BACKENDS:
        known = ", ".join(f"{kind} on {engine}" for kind, engine in BACKENDS)
        raise ConfigError(f"no extraction backend {spec.kind!r} on {engine!r}; known: {known}")
    factory, setting = BACKENDS[(spec.kind, engine)]
    return load_cached("generator", spec, lambda: factory(spec), f"model {spec.model!r} ({setting})")
