"""An image embedder's vision tower on OpenVINO, on a CPU: the torch model converted once and kept.

Why: on this 2-core CPU OpenVINO runs EfficientNet-Lite0 (the offline default) at 8.4 CPU-ms a page in float32
against torch's 23.7, the vectors the same to 1e-5 (cosine 1.0000), and at 4.2 in bfloat16 on a CPU that computes
it natively (AMX), OpenVINO's own choice there and docflow's with dtype auto: the vectors differ by up to 0.02, the
corpus's classes and review decisions are the same (bench/classify.py). Converting the torch model costs about 1.7 s,
so the converted model (OpenVINO IR, an .xml and a .bin, in float32) is kept under the model cache, named by a hash
of the weights and of the versions that made it: a later process compiles it in under 0.1 s, and new weights get a
file of their own.

Anything that goes wrong (OpenVINO not installed, a layer it cannot convert, a cache it cannot write) leaves the
model on torch, with a warning: slower, the same vectors."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from tasks.preprocess.openvino_session import OpenVinoSession, Precision

log = logging.getLogger(__name__)


def openvino_tower(
    tower: Any, side: int, cache_dir: Path, threads: int, precision: Precision = "f32"
) -> OpenVinoSession | None:
    """`tower` (a torch module from an N x 3 x side x side float32 batch to vectors) compiled by OpenVINO in
    `precision`, from the IR under `cache_dir` when an earlier process converted the same weights; None where it
    cannot be. A new conversion is checked against torch in float32, whatever precision it then runs in."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return None
    try:
        ir = cache_dir / "openvino" / f"{fingerprint(tower, side)}.xml"
        if ir.is_file():
            return OpenVinoSession(ir, threads, precision)
        model = _converted(tower, side)
        session = OpenVinoSession(model, threads, "f32")
        _check(tower, side, session)
        if precision != "f32":
            session = OpenVinoSession(model, threads, precision)
    except Exception as exc:  # tracing and conversion fail in many ways (an op OpenVINO lacks, a dynamic branch)
        log.warning("OpenVINO could not take the image embedder %s, torch runs it: %s", type(tower).__name__, exc)
        return None
    _keep(model, ir)
    return session


def fingerprint(tower: Any, side: int) -> str:
    """What the converted model depends on: the module's class, its weights, the input side and the versions of
    torch and OpenVINO that convert it."""
    import openvino
    import torch

    digest = hashlib.sha256(f"{type(tower).__module__}.{type(tower).__qualname__}:{side}".encode())
    digest.update(f"torch {torch.__version__}, openvino {openvino.__version__}".encode())
    for name, tensor in tower.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{type(tower).__name__.lower()}-{digest.hexdigest()[:24]}"


def _converted(tower: Any, side: int) -> Any:
    """The tower as an OpenVINO model, for any batch size."""
    import openvino
    import torch

    with warnings.catch_warnings():
        # torch.jit.trace's deprecation, and its notes on shape checks it records as constants: `_check` is what
        # says whether the traced model computes what the module does
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return openvino.convert_model(
            tower, example_input=torch.zeros(1, 3, side, side), input=[openvino.PartialShape([-1, 3, side, side])]
        )


def _check(tower: Any, side: int, session: OpenVinoSession) -> None:
    """Raises unless the converted model gives torch's outputs on a batch of two."""
    import numpy as np
    import torch

    probe = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = tower(probe).float().numpy()
    got = session(probe.numpy())
    if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max()))):
        raise ValueError("the converted model's outputs differ from torch's")


def _keep(model: Any, ir: Path) -> None:
    """Save the checked model to `ir` for the next process, where it can be (a read-only cache only costs the next
    process the conversion again)."""
    import openvino

    try:
        ir.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=ir.parent, prefix=".converting-") as staging:
            staged = Path(staging) / ir.name
            openvino.save_model(model, staged, compress_to_fp16=False)
            os.replace(staged.with_suffix(".bin"), ir.with_suffix(".bin"))
            os.replace(staged, ir)  # last: an .xml is there only beside its whole .bin
    except OSError as exc:
        log.warning("cannot keep the converted image embedder in %s (%s): the next process converts it again", ir, exc)
