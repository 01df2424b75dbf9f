"""The defaults of the settings that a model key (the specs of tasks/models) needs too, declared once here:
schemas/settings.py declares each of these settings with its default from here, and a spec built without a Settings
object (by a test, or by bench/gpu_models.py) defaults to the same value. This module imports nothing but the
standard library, so the model wrappers use it without pydantic-settings (bench/gpu_models.py's bare GPU machine
has none)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

VLM_MIN_PIXELS = 28 * 28 * 16  # DOCFLOW_VLM_MIN_PIXELS: smallest page image the VLM sees
CLASSIFY_BATCH_SIZE = 16  # DOCFLOW_CLASSIFY_BATCH_SIZE: images the classification embedder encodes together
TEXT_LLM_ENGINE: Final = "llama.cpp"  # DOCFLOW_TEXT_LLM_ENGINE (chosen by bench/extract_accuracy.py)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def model_cache_dir() -> Path:
    """DOCFLOW_MODEL_CACHE_DIR's default, under the home of the process that asks."""
    return Path.home() / ".cache" / "docflow"
