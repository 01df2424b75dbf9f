"""The generation protocol every extraction backend implements: requests (a prompt, page images for a VLM, the
JSON Schema the answer must follow), generations (constrained JSON with per-token scores), and the frozen spec that
is the model cache key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from schemas.defaults import VLM_MIN_PIXELS, model_cache_dir
from tasks.models.generation.constrained import TokenScore


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt (with its page images for a VLM) and the JSON Schema its answer must follow. Requests in one
    batch may follow different schemas: each row gets its own grammar."""

    prompt: str
    schema_json: str
    images: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: list[TokenScore] = field(default_factory=list)
    finished: bool = True  # False when max_new_tokens cut the answer off


class StructuredGenerator(Protocol):
    model_id: str
    reads_images: bool

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int) -> list[Generation]: ...


@dataclass(frozen=True)
class ServerEndpoint:
    """An OpenAI-compatible inference server that runs the model instead of this process."""

    url: str  # the base URL, ending in /v1
    api_key: SecretStr | None = field(default=None, repr=False)  # never in a repr, a log line or an artifact
    in_flight: int = 8  # requests sent at once
    timeout_s: float = 120.0


@dataclass(frozen=True)
class GeneratorSpec:
    """The model cache key: one load per worker process for each distinct spec."""

    kind: str  # "vlm" | "text"
    model: str
    device: str = "auto"
    dtype: str = "auto"
    min_pixels: int = VLM_MIN_PIXELS
    max_pixels: int = 1280 * 28 * 28
    cache_dir: Path = field(default_factory=model_cache_dir)  # for pkg: models
    engine: str | None = None  # what runs the model: "transformers" | "llama.cpp" | "openai"; None: the kind's default
    server: ServerEndpoint | None = None  # where engine "openai" sends its requests
