"""Weights that install from packages: the split Qwen2.5-Coder GGUF joins into the pinned file, and what it holds is
the model its provenance says (the packages' own name says nothing about it)."""

from pathlib import Path

import pytest

from schemas.errors import ConfigError
from tasks.models import bundled


def test_the_split_gguf_joins_into_the_pinned_qwen_file(tmp_path: Path) -> None:
    from gguf import GGUFReader

    directory = Path(bundled.resolve(bundled.PREFIX + bundled.QWEN25_CODER_05B_GGUF.name, tmp_path))
    reader = GGUFReader(directory / "model.gguf")
    assert reader.fields["general.name"].contents() == "Qwen2.5 Coder 0.5B Instruct AWQ"
    assert reader.fields["general.architecture"].contents() == "qwen2"
    assert (directory / ".sha256").read_text() == bundled.QWEN25_CODER_05B_GGUF.sha256
    # Assembled once: a second resolve finds the checked file and joins nothing.
    before = (directory / "model.gguf").stat().st_mtime_ns
    bundled.resolve(bundled.PREFIX + bundled.QWEN25_CODER_05B_GGUF.name, tmp_path)
    assert (directory / "model.gguf").stat().st_mtime_ns == before


def test_a_corrupt_join_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = bundled.SplitModel(
        name="qwen-bad", parts=bundled.QWEN25_CODER_05B_GGUF.parts[:1], sha256="0" * 64, filename="model.gguf"
    )
    monkeypatch.setitem(bundled._MODELS, "qwen-bad", wrong)
    with pytest.raises(ConfigError, match="sha256"):
        bundled.resolve("pkg:qwen-bad", tmp_path)
    assert not (tmp_path / "qwen-bad").exists()
