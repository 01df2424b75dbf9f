"""What a model stage did, timed from outside the code under test: bench/pipeline.py installs this in the flow
process of both the old and the new tree, whose own generator classes differ, but which both generate through
transformers' GenerationMixin.generate and read page text through a function named `ocr_image` (or `ocr_images`, a
window's pages at once).

Imports nothing of docflow's, so it works in any exported tree."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# The modules of docflow's trees (old and new) that define or import `ocr_image`.
OCR_MODULES = ("tasks.preprocess.ocr", "tasks.ocr", "tasks.extraction", "tasks.extract.stage")


def call_record(
    start: float, seconds: float, kwargs: dict[str, Any], sequences: Any, eos: int | list[int] | None
) -> dict[str, Any]:
    """One generate() call: rows, prompt length (positions, padding included), left-padding positions, decode
    steps (every row is computed until the longest one stops) and the tokens each row wrote, its stop included."""
    ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
    prompt = int(ids.shape[1])
    written = sequences[:, prompt:]
    stop = {kwargs.get("pad_token_id"), *(eos if isinstance(eos, list) else [eos])} - {None}
    row_tokens = []
    for row in written.tolist():
        ends = [i for i, token in enumerate(row) if token in stop]
        row_tokens.append(ends[0] + 1 if ends else len(row))
    return {
        "start": start,
        "seconds": seconds,
        "rows": int(ids.shape[0]),
        "prompt": prompt,
        "pad": int((mask == 0).sum()) if mask is not None else 0,
        "steps": int(written.shape[1]),
        "row_tokens": row_tokens,
        "thread": threading.get_ident(),
    }


def install(calls: list[dict[str, Any]], ocr_seconds: list[float]) -> None:
    """Record every generate() call into `calls` and every OCR call's seconds into `ocr_seconds`."""
    from transformers.generation.utils import GenerationMixin

    plain_generate = GenerationMixin.generate

    def timed_generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = plain_generate(self, *args, **kwargs)
        seconds = time.perf_counter() - start
        if "input_ids" in kwargs:  # docflow passes its inputs by name; the output is a tensor or has .sequences
            sequences = getattr(out, "sequences", out)
            eos = kwargs.get("eos_token_id", self.generation_config.eos_token_id)
            calls.append(call_record(start, seconds, kwargs, sequences, eos))
        return out

    GenerationMixin.generate = timed_generate  # type: ignore[method-assign]
    for name in OCR_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # the other tree's layout
            continue
    for module in list(sys.modules.values()):
        # Newer trees read a window's pages in one call (`ocr_images`, which calls `ocr_image` for a lone page):
        # time that one where it exists, so no page is counted twice.
        name = "ocr_images" if callable(getattr(module, "ocr_images", None)) else "ocr_image"
        plain_ocr = getattr(module, name, None)
        if getattr(module, "__name__", "").startswith("tasks.") and callable(plain_ocr):
            setattr(module, name, _timed(plain_ocr, ocr_seconds))


def _timed(function: Callable[..., Any], seconds: list[float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    return timed


def profile(calls: list[dict[str, Any]], ocr_seconds: list[float]) -> dict[str, float]:
    """A run's generate() calls summed up: calls, rows, seconds inside generate(), decode steps, row-steps computed
    against tokens written (the rest went to rows that had stopped while a longer row in their batch went on),
    mean prompt positions per row and the share of them that was padding, threads that called, and OCR.
    `generate_wall_s` counts once the time that calls from several threads overlapped."""
    rows = sum(c["rows"] for c in calls)
    row_steps = sum(c["rows"] * c["steps"] for c in calls)
    written = sum(sum(c["row_tokens"]) for c in calls)
    positions = sum(c["rows"] * c["prompt"] for c in calls)
    return {
        "calls": len(calls),
        "rows": rows,
        "generate_s": sum(c["seconds"] for c in calls),
        "generate_wall_s": _covered([(c["start"], c["start"] + c["seconds"]) for c in calls]),
        "steps": sum(c["steps"] for c in calls),
        "row_steps": row_steps,
        "written": written,
        "decode_waste": 1 - written / row_steps if row_steps else 0.0,
        "prompt_tokens": positions / rows if rows else 0.0,
        "pad_share": sum(c["pad"] for c in calls) / positions if positions else 0.0,
        "threads": len({c["thread"] for c in calls}),
        "ocr_calls": len(ocr_seconds),
        "ocr_s": sum(ocr_seconds),
    }


def _covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the intervals."""
    total, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total
