from __future__ import annotations

import json
from pathlib import Path

import pytest


class Configure:
    """Sets DOCFLOW_* variables the way a user would; flows read them at their entry point."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path

    def __call__(self, **fields: object) -> None:
        defaults = {
            "derived_store": str(self.tmp_path / "derived"),
            "retries": 1,
            "retry_delay_s": 0.1,
            "batch_size": 4,
            "whisper_model": "pkg:whisper-tiny.en",  # real weights, small and fast
            "extract": False,  # extraction tests turn it on; a CPU LLM per page would slow every other test
            "text_llm_model": "pkg:smollm2-135m",  # the smallest real text LLM, when a test turns extraction on
        }
        for name, value in {**defaults, **fields}.items():
            text = ",".join(value) if isinstance(value, list | tuple) else str(value)
            self.monkeypatch.setenv(f"DOCFLOW_{name.upper()}", text)


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random open_clip model (ViT and text tower) as a model config file: no weights to download."""
    path = tmp_path_factory.mktemp("clip") / "docflow-tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return path


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ~20M-parameter Qwen2-VL with the real Qwen2 tokenizer, saved as a local checkpoint."""
    from tests.support.tiny_qwen2vl import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Configure:
    return Configure(monkeypatch, tmp_path)
