"""A model run by OpenVINO, called the way RapidOCR calls its onnxruntime sessions (an array in, the first output
out): RapidOCR's text detector (the same ONNX file, compiled once per process), and an image embedder's vision
tower (tasks/models/openvino_vision.py converts it).

Why: on the text detector OpenVINO's CPU kernels are about 3 times as fast as onnxruntime's, with the same text to
the character (tasks/preprocess/ocr.py says where it is measured). RapidOCR's own OpenVINO engine cannot be used as
it is: it leaves the inference precision to OpenVINO, which picks bfloat16 on CPUs that have it, and bfloat16
changed the text of 26 of 40 labelled receipts. So the precision is pinned here to float32."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Kernels OpenVINO keeps for input shapes it has seen (its default, 5,000, let a run over pages of ever new sizes grow
# by ~1.4 MiB a size: 658 -> 821 MiB over 120 sizes; with none kept memory stays flat after the first 60 sizes, about
# 250 MiB above onnxruntime's, for the same speed on the bench's pages).
RUNTIME_CACHE_CAPACITY = 0


class OpenVinoSession:
    """`session(array) -> array` for one model (an ONNX or OpenVINO IR file, or an `openvino.Model`): compiled once,
    one inference request per thread (a request is not safe to share; the window's workers are threads that may read
    pages at once)."""

    def __init__(self, model: Path | Any, threads: int) -> None:
        import openvino

        self._compiled = openvino.Core().compile_model(
            str(model) if isinstance(model, Path) else model,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "f32",
                "INFERENCE_NUM_THREADS": str(threads),
                "PERFORMANCE_HINT": "LATENCY",
                "CPU_RUNTIME_CACHE_CAPACITY": str(RUNTIME_CACHE_CAPACITY),
            },
        )
        self._local = threading.local()

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer([inputs])
        # The request reuses its output buffer on the next call: hand the caller a copy of its own.
        output: Any = request.get_output_tensor().data
        return np.array(output, copy=True)


def openvino_session(model: Path, threads: int) -> OpenVinoSession | None:
    """An OpenVINO session for `model`, or None where OpenVINO is not installed or cannot compile it on this machine
    (onnxruntime then runs it: slower, the same text)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return None
    try:
        return OpenVinoSession(model, threads)
    except RuntimeError as exc:  # what OpenVINO raises for a model or a CPU its plugin cannot handle
        log.warning("OpenVINO could not compile %s, onnxruntime runs it instead: %s", model.name, exc)
        return None
