"""A model run by OpenVINO, called the way RapidOCR calls its onnxruntime sessions (an array in, the first output
out): RapidOCR's text detector and recogniser (the same ONNX files, compiled once per process), and an image
embedder's vision tower (tasks/models/openvino_vision.py converts it).

Why: on the text detector OpenVINO's CPU kernels are about 3 times as fast as onnxruntime's in float32, and on a CPU
with bfloat16 units (AMX, AVX512-BF16) OpenVINO's own default precision, bfloat16, is 1.9 times as fast again on
the detector and 2.9 times onnxruntime's speed on the recogniser, with text as accurate against the labelled ground
truth (bench/ocr.py measures both). RapidOCR's own OpenVINO engine cannot be used as it is: it cannot pin the
precision, nor keep the kernels of a bounded number of input shapes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

# auto: OpenVINO's own choice for this CPU (bfloat16 where it computes it natively, else float32); f32: float32.
Precision = Literal["auto", "f32"]


class OpenVinoSession:
    """`session(array) -> array` for one model (an ONNX or OpenVINO IR file, or an `openvino.Model`): compiled once,
    one inference request per thread (a request is not safe to share; the window's workers are threads that may read
    pages at once), `threads` threads each.

    `streams`: calls that run at once. A compiled model runs one request at a time per stream, and OpenVINO's
    latency hint makes one stream: two workers reading pages took turns (measured: 23 ms an inference of the
    recogniser with one thread calling, 23 ms with two; 11.7 ms with two streams).

    `shapes_kept`: the compiled kernels OpenVINO keeps for input shapes it has seen, least recently used dropped. Its
    default, 5,000, let a process grow by 1.4 MiB (float32 detector) to 5 MiB (bfloat16 recogniser) with every new
    shape, and pages come in ever new sizes; with none kept, each call builds its kernels again (the recogniser
    twice as slow on small pages)."""

    def __init__(
        self, model: Path | Any, threads: int, precision: Precision = "f32", shapes_kept: int = 0, streams: int = 1
    ) -> None:
        import openvino

        config = {
            "INFERENCE_NUM_THREADS": str(threads * streams),
            "NUM_STREAMS": str(streams),
            "PERFORMANCE_HINT": "LATENCY",
            "CPU_RUNTIME_CACHE_CAPACITY": str(shapes_kept),
        }
        if precision == "f32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self._compiled = openvino.Core().compile_model(str(model) if isinstance(model, Path) else model, "CPU", config)
        self._local = threading.local()
        _first_array_views(self._compiled)

    @property
    def precision(self) -> str:
        """The precision OpenVINO computes in: f32, bf16 (or f16)."""
        precision: Any = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return str(precision.to_string())

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer([inputs])
        # The request reuses its output buffer on the next call: hand the caller a copy of its own.
        output: Any = request.get_output_tensor().data
        return np.array(output, copy=True)


_viewing = threading.Lock()


def _first_array_views(compiled: Any) -> None:
    """Take a numpy view of a tensor of each of the model's element types once, here, one thread at a time.

    The binding's first view of a tensor (`Tensor.data`) initialises a function-local static in C++ and lets go of
    the GIL while doing so; a second thread taking its first view meanwhile blocks on that static while holding the
    GIL, so the first never gets the GIL back. Seen here as a run whose two workers' first OCR calls hung forever
    while another thread imported the embedder's libraries (gdb: `__cxa_guard_acquire` under `Tensor.data`);
    tests/faults/test_openvino_first_use.py runs that scenario. Sessions are built before they are called, so every
    first view happens here."""
    import openvino

    with _viewing:
        for port in [*compiled.inputs, *compiled.outputs]:
            openvino.Tensor(port.get_element_type(), openvino.Shape([1])).data  # noqa: B018 (the view is the point)


def openvino_session(
    model: Path, threads: int, precision: Precision = "f32", shapes_kept: int = 0, streams: int = 1
) -> OpenVinoSession | None:
    """An OpenVINO session for `model`, or None where OpenVINO is not installed or cannot compile it on this machine
    (onnxruntime then runs it: slower, in float32)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return None
    try:
        return OpenVinoSession(model, threads, precision, shapes_kept, streams)
    except RuntimeError as exc:  # what OpenVINO raises for a model or a CPU its plugin cannot handle
        log.warning("OpenVINO could not compile %s, onnxruntime runs it instead: %s", model.name, exc)
        return None
