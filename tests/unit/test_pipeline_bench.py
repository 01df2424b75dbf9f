"""bench/pipeline.py's probe of the model stage (bench/generate_probe.py): what it records of a generate() call and
how a run's calls add up. Timings are only checked to be positive."""

from __future__ import annotations

from typing import Any

import pytest

from bench import generate_probe


def test_a_call_record_counts_padding_steps_and_each_rows_tokens_up_to_its_stop() -> None:
    import torch

    eos, pad = 7, 0
    kwargs: dict[str, Any] = {
        "input_ids": torch.tensor([[pad, pad, 5], [4, 5, 6]]),
        "attention_mask": torch.tensor([[0, 0, 1], [1, 1, 1]]),
        "pad_token_id": pad,
    }
    # Row 0 stops at its 2nd token and is padded after it; row 1 writes all 4 steps.
    sequences = torch.tensor([[pad, pad, 5, 9, eos, pad, pad], [4, 5, 6, 9, 9, 9, 9]])

    record = generate_probe.call_record(10.0, 0.5, kwargs, sequences, [eos])

    assert record["rows"] == 2
    assert record["prompt"] == 3
    assert record["pad"] == 2
    assert record["steps"] == 4
    assert record["row_tokens"] == [2, 4]


def test_a_runs_profile_shows_overlap_decode_spent_on_stopped_rows_and_padding() -> None:
    calls = [
        {
            "start": 0.0,
            "seconds": 1.0,
            "rows": 4,
            "prompt": 100,
            "pad": 40,
            "steps": 48,
            "row_tokens": [48, 12, 12, 24],
            "thread": 1,
        },
        {
            "start": 0.75,
            "seconds": 0.5,
            "rows": 1,
            "prompt": 80,
            "pad": 0,
            "steps": 20,
            "row_tokens": [20],
            "thread": 2,
        },
    ]

    profile = generate_probe.profile(calls, [0.25, 0.25])

    assert profile["calls"] == 2
    assert profile["rows"] == 5
    assert profile["generate_s"] == pytest.approx(1.5)
    assert profile["generate_wall_s"] == pytest.approx(1.25)  # the second call overlapped the first by 0.25 s
    assert profile["row_steps"] == 4 * 48 + 20
    assert profile["written"] == 96 + 20
    assert profile["decode_waste"] == pytest.approx(1 - 116 / 212)
    assert profile["prompt_tokens"] == pytest.approx(480 / 5)
    assert profile["pad_share"] == pytest.approx(40 / 480)
    assert profile["threads"] == 2
    assert profile["ocr_calls"] == 2
    assert profile["ocr_s"] == pytest.approx(0.5)


def test_install_records_every_generate_call_and_every_ocr_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.generation.utils import GenerationMixin

    from tasks.preprocess import ocr

    # install() patches process-wide: restore both after the test.
    monkeypatch.setattr(GenerationMixin, "generate", GenerationMixin.generate)
    monkeypatch.setattr(ocr, "ocr_images", lambda paths, engine="tesseract": [f"text of {p}" for p in paths])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=32, n_embd=8, n_layer=1, n_head=1)).eval()
    calls: list[dict[str, Any]] = []
    ocr_seconds: list[float] = []

    generate_probe.install(calls, ocr_seconds)
    model.generate(
        input_ids=torch.tensor([[0, 3, 4], [5, 6, 7]]),
        attention_mask=torch.tensor([[0, 1, 1], [1, 1, 1]]),
        max_new_tokens=5,
        min_new_tokens=5,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=31,
    )
    texts = ocr.with_page_text.__globals__["ocr_images"](["page.png", "two.png"])

    assert texts == ["text of page.png", "text of two.png"]
    assert len(ocr_seconds) == 1 and ocr_seconds[0] >= 0
    (call,) = calls
    assert (call["rows"], call["prompt"], call["pad"], call["steps"]) == (2, 3, 1, 5)
    assert call["row_tokens"] == [5, 5]
    assert call["seconds"] > 0
