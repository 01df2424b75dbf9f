"""Smoke test of bench/gpu_models.py: the model stages run on CPU through docflow's wrappers with tiny numbers, and
the key-figures line parses. Timings are only checked to be positive."""

from __future__ import annotations

import pytest

from bench.gpu_models import main
from tasks.models import cache


def test_gpu_models_bench_runs_on_cpu(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "_loaded", {})  # the bench's models stay out of the process-wide model cache
    tiny = ["--pages", "3", "--batch-size", "2", "--clip-batch-size", "2", "--max-new-tokens", "8"]
    main(["--devices", "cpu", *tiny, "--max-pixels", str(28 * 28 * 64)])  # small VLM pages: a smoke test

    lines = capsys.readouterr().out.strip().splitlines()
    figures = {name: float(value) for name, value in (item.split("=") for item in lines[-1].split())}
    assert set(figures) == {
        "cpu_classify_pages_per_s",
        "cpu_classify_batch_fill",
        "cpu_extract_pages_per_s",
        "cpu_extract_batch_fill",
    }
    assert figures["cpu_classify_pages_per_s"] > 0
    assert figures["cpu_extract_pages_per_s"] > 0
    # 3 pages in batches of 2: one full batch and one half-full one.
    assert figures["cpu_classify_batch_fill"] == pytest.approx(0.75)
    assert figures["cpu_extract_batch_fill"] == pytest.approx(0.75)
    assert all(0 < figures[name] <= 1 for name in figures if name.endswith("_batch_fill"))
