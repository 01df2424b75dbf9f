"""On a CPU in float32 an image embedder's vision tower runs on OpenVINO: converted from torch once, checked, and
kept under the model cache for the next process (named by its weights); the same vectors as torch. Where OpenVINO
cannot convert it, or the cache cannot be written, the embedder still works."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino
import pytest
import torch
from PIL import Image, ImageDraw

from tasks.models import bundled, embedders, openvino_vision, tower_recipes
from tasks.models.embedders import EmbedderSpec, TimmEmbedder

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # timm's and torch's own notices
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spec(tmp_path: Path) -> EmbedderSpec:
    """A seeded random EfficientNet-Lite0 (the offline default's architecture), its cache a folder of its own."""
    return EmbedderSpec("timm", "efficientnet_lite0", None, "cpu", "float32", 4, tmp_path / "cache")


@pytest.fixture
def pages(tmp_path: Path) -> list[Path]:
    """Five pages (a batch of four and one): text on paper, a photo-like gradient, a long receipt."""
    made = []
    for n, size in enumerate([(240, 320), (480, 360), (80, 900), (300, 300), (1200, 40)]):
        image = Image.linear_gradient("L").resize(size).convert("RGB") if n == 1 else Image.new("RGB", size, "white")
        ImageDraw.Draw(image).text((4, 4 + 10 * n), f"TOTAL {n}2.50", fill=(0, 0, 0))
        made.append(tmp_path / f"page{n}.png")
        image.save(made[-1])
    return made


def _kept(spec: EmbedderSpec) -> list[str]:
    folder = spec.cache_dir / "openvino"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_the_tower_runs_on_openvino_with_torchs_vectors_and_is_converted_once(
    spec: EmbedderSpec, pages: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    on_torch = TimmEmbedder(dataclasses.replace(spec, openvino=False))
    assert on_torch.on_openvino is None
    first = TimmEmbedder(spec)
    assert first.on_openvino is not None
    kept = _kept(spec)
    assert [Path(name).suffix for name in kept] == [".bin", ".xml"]  # and no staging folder left
    want = on_torch.embed_images(pages)
    np.testing.assert_allclose(first.embed_images(pages), want, atol=1e-4, rtol=0)

    def no_conversion(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(openvino, "convert_model", no_conversion)
    second = TimmEmbedder(spec)  # another process's load: from the kept IR
    assert second.on_openvino is not None
    np.testing.assert_allclose(second.embed_images(pages), want, atol=1e-4, rtol=0)
    assert _kept(spec) == kept


def test_other_weights_are_another_file() -> None:
    conv = torch.nn.Conv2d(3, 4, 3)
    model = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    before = openvino_vision.fingerprint(model, 32)
    assert openvino_vision.fingerprint(model, 32) == before
    assert openvino_vision.fingerprint(model, 64) != before
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] += 1e-3
    assert openvino_vision.fingerprint(model, 32) != before


def test_a_tower_openvino_cannot_convert_stays_on_torch(
    spec: EmbedderSpec, pages: list[Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unsupported(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("Cannot create HardSwish layer: unsupported")

    monkeypatch.setattr(openvino, "convert_model", unsupported)
    with caplog.at_level(logging.WARNING, logger=openvino_vision.__name__):
        embedder = TimmEmbedder(spec)
    assert embedder.on_openvino is None
    assert "torch runs it" in caplog.text and "HardSwish" in caplog.text
    want = TimmEmbedder(dataclasses.replace(spec, openvino=False)).embed_images(pages)
    np.testing.assert_allclose(embedder.embed_images(pages), want, atol=0, rtol=0)
    assert _kept(spec) == []


def test_a_conversion_that_computes_something_else_is_not_used(
    spec: EmbedderSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The check against torch: a converted model whose outputs differ (here, the tower of another seed) is
    dropped, and nothing is kept for the next process."""
    other = TimmEmbedder(dataclasses.replace(spec, openvino=False, model="efficientnet_b0")).model
    convert = openvino.convert_model
    monkeypatch.setattr(openvino, "convert_model", lambda _tower, **kwargs: convert(other, **kwargs))
    with caplog.at_level(logging.WARNING, logger=openvino_vision.__name__):
        embedder = TimmEmbedder(spec)
    assert embedder.on_openvino is None
    assert "differ from torch's" in caplog.text
    assert _kept(spec) == []


def test_a_cache_that_cannot_be_written_still_runs_on_openvino(
    spec: EmbedderSpec, pages: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache would be\n")
    spec = dataclasses.replace(spec, cache_dir=blocked)
    with caplog.at_level(logging.WARNING, logger=openvino_vision.__name__):
        embedder = TimmEmbedder(spec)
    assert embedder.on_openvino is not None
    assert "the next process converts it again" in caplog.text
    want = TimmEmbedder(dataclasses.replace(spec, openvino=False)).embed_images(pages)
    np.testing.assert_allclose(embedder.embed_images(pages), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kept", [False, True], ids=["converted", "from the kept IR"])
def test_with_dtype_auto_the_tower_computes_in_the_cpus_own_precision(
    spec: EmbedderSpec, pages: list[Path], kept: bool
) -> None:
    """dtype auto on a CPU: OpenVINO's own precision for it (bfloat16 where the CPU computes it natively, float32
    elsewhere), whether the tower was just converted (and checked in float32) or comes from the kept IR; the vectors
    point where torch's do. dtype float32 pins float32."""
    if kept:
        TimmEmbedder(spec)  # an earlier process's conversion
    auto = TimmEmbedder(dataclasses.replace(spec, dtype="auto"))
    assert auto.on_openvino is not None
    cpu_default = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    assert auto.on_openvino.precision == cpu_default
    pinned = TimmEmbedder(spec).on_openvino
    assert pinned is not None and pinned.precision == "f32"
    want = TimmEmbedder(dataclasses.replace(spec, openvino=False)).embed_images(pages)
    cosines = np.sum(auto.embed_images(pages) * want, axis=1)
    assert cosines.min() > 0.99, cosines


KEPT_CHILD = """
import sys
from pathlib import Path
import numpy as np
from tasks.models.embedders import EmbedderSpec, KeptTowerEmbedder, _build

cache, out, dtype, *pages = sys.argv[1:]
embedder = _build(EmbedderSpec("timm", "efficientnet_lite0", "pkg:efficientnet-lite0", "cpu", dtype, 4, Path(cache)))
assert isinstance(embedder, KeptTowerEmbedder), type(embedder)
np.save(out, embedder.embed_images([Path(p) for p in pages]))
assert "torch" not in sys.modules and "timm" not in sys.modules, "torch was imported"
"""


@pytest.mark.parametrize("dtype", ["float32", "auto"])
def test_the_next_process_runs_the_kept_tower_without_torch(tmp_path: Path, pages: list[Path], dtype: str) -> None:
    """The packaged weights: the first load converts on torch and keeps the tower and its recipe; another process
    then loads neither torch nor timm, and its vectors are the first one's (float32, or the CPU's own precision)."""
    spec = EmbedderSpec("timm", "efficientnet_lite0", "pkg:efficientnet-lite0", "cpu", dtype, 4, tmp_path / "cache")
    first = embedders._build(spec)
    assert isinstance(first, TimmEmbedder) and first.on_openvino is not None
    want = first.embed_images(pages)
    out = tmp_path / "vectors.npy"
    child = [sys.executable, "-c", KEPT_CHILD, str(spec.cache_dir), str(out), dtype, *map(str, pages)]
    subprocess.run(child, cwd=REPO_ROOT, check=True, timeout=300)
    np.testing.assert_allclose(np.load(out), want, atol=1e-6, rtol=0)


def test_other_weights_or_a_lost_tower_take_the_torch_path(tmp_path: Path, pages: list[Path]) -> None:
    spec = EmbedderSpec("timm", "efficientnet_lite0", "pkg:efficientnet-lite0", "cpu", "float32", 4, tmp_path / "c")
    assert isinstance(embedders._build(spec), TimmEmbedder)
    assert isinstance(embedders._build(spec), embedders.KeptTowerEmbedder)
    weights = Path(bundled.resolve(spec.weights or "", spec.cache_dir))
    other = tmp_path / "other.pth"
    other.write_bytes(weights.read_bytes() + b"\0")
    assert tower_recipes.recipe_path(spec.model, other, spec.cache_dir) != tower_recipes.recipe_path(
        spec.model, weights, spec.cache_dir
    )
    for ir in (spec.cache_dir / "openvino").glob("*.bin"):
        ir.unlink()  # a cache cleaned by hand: the recipe alone is not enough
    assert isinstance(embedders._build(spec), TimmEmbedder)
