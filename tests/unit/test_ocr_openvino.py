"""RapidOCR's two models on OpenVINO instead of onnxruntime: in OpenVINO's own precision for this CPU (bfloat16 where
it has bfloat16 units) or float32, the drawn text read in each, the workers' calls side by side, safe from several
threads at once, and onnxruntime again where OpenVINO is not installed or cannot compile them."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tasks.preprocess import ocr
from tasks.preprocess.ocr import SteppedWidths
from tasks.preprocess.openvino_session import OpenVinoSession

RECEIPT = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "extraction" / "inputs" / "sroie_001.jpg"
# What sroie_001's labels say it prints (../shared/corpus/extraction/truth.jsonl).
RECEIPT_PRINTS = ["INDAH GIFT & HOME DECO", "19/10/2018", "60.30"]
DRAWN = [
    ["INVOICE 2041", "Bill to: Ana Lopez", "TOTAL 12.50"],
    ["CASH 20.00  CHANGE 7.50", "Thank you"],
    ["Dear Sir,", "Regards, Ana"],
]


def _page(path: Path, lines: list[str], size: int) -> Path:
    image = Image.new("RGB", (520, 60 + (size + 16) * len(lines)), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((24, 24 + (size + 16) * row), line, fill="black", font=ImageFont.load_default(size=size))
    image.save(path)
    return path


@pytest.fixture
def pages(tmp_path: Path) -> list[Path]:
    names, sizes = ["invoice", "small", "letter"], [26, 14, 20]
    return [_page(tmp_path / f"{name}.png", lines, size) for name, lines, size in zip(names, DRAWN, sizes, strict=True)]


@pytest.fixture
def fresh_engine() -> Iterator[None]:
    ocr._engine.cache_clear()
    yield
    ocr._engine.cache_clear()


def _words(text: str) -> list[str]:
    return re.findall(r"[\w.&/]+", text)


def _reads_what_is_drawn(pages: list[Path], precision: ocr.Precision) -> None:
    for page, lines in zip(pages, DRAWN, strict=True):
        read = _words(ocr.rapidocr_text(page, precision))
        assert read == _words(" ".join(lines)), page.name


def _cpu_has_bfloat16() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize("precision", ["auto", "f32"])
def test_both_models_run_on_openvino_and_read_the_drawn_text(
    pages: list[Path], precision: ocr.Precision, fresh_engine: None
) -> None:
    _reads_what_is_drawn(pages, precision)
    engine = ocr._rapidocr(precision)
    detector, recogniser = engine.text_det.session, engine.text_rec.session
    assert isinstance(detector, OpenVinoSession)
    assert isinstance(recogniser, SteppedWidths) and isinstance(recogniser.session, OpenVinoSession)
    chosen = "bf16" if precision == "auto" and _cpu_has_bfloat16() else "f32"
    assert detector.precision == recogniser.session.precision == chosen


@pytest.mark.skipif(not RECEIPT.exists(), reason="needs ../shared/corpus")
@pytest.mark.parametrize("precision", ["auto", "f32"])
def test_a_receipt_scan_is_read_with_what_its_labels_say_it_prints(precision: ocr.Precision) -> None:
    text = " ".join(ocr.rapidocr_text(RECEIPT, precision).split())
    assert all(printed in text for printed in RECEIPT_PRINTS), text


def test_without_openvino_onnxruntime_reads_the_same_words(
    pages: list[Path], fresh_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: import fails
    _reads_what_is_drawn(pages, "auto")
    engine = ocr._rapidocr("auto")
    assert not isinstance(engine.text_det.session, OpenVinoSession)
    assert not isinstance(engine.text_rec.session, SteppedWidths)


def test_threads_reading_at_once_each_get_their_own_pages_text(pages: list[Path], fresh_engine: None) -> None:
    """One compiled model per process, an inference request per thread: pages read at once by four threads come
    back with their own text, not a neighbour's."""
    alone = [ocr.rapidocr_text(page) for page in pages]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(ocr.rapidocr_text, pages * 6))
    assert together == alone * 6


def test_workers_reading_their_first_pages_at_once_build_one_engine(
    pages: list[Path], fresh_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    build = ocr.rapidocr_on_onnxruntime

    def counted() -> object:
        built.append(threading.current_thread())
        time.sleep(0.2)  # a build takes a second: the other workers arrive meanwhile
        return build()

    monkeypatch.setattr(ocr, "rapidocr_on_onnxruntime", counted)
    with ThreadPoolExecutor(max_workers=3) as pool:
        texts = list(pool.map(ocr.rapidocr_text, pages))
    assert len(built) == 1
    assert "TOTAL 12.50" in texts[0]


def test_the_workers_calls_run_side_by_side_with_a_thread_each(
    pages: list[Path], fresh_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers on two cores: a stream and a thread each (OpenVINO's latency hint alone makes one stream, and the
    workers took turns); onnxruntime's default, a thread per core in each, oversubscribed a busy 2-core machine."""
    monkeypatch.setattr(ocr, "usable_cores", lambda: 2)
    ocr.rapidocr_text(pages[0])
    engine = ocr._rapidocr("auto")
    for session in (engine.text_det.session, engine.text_rec.session.session):
        assert session._compiled.get_property("NUM_STREAMS") == 2
        assert session._compiled.get_property("INFERENCE_NUM_THREADS") == 2  # one per stream


def test_models_openvino_cannot_compile_here_run_on_onnxruntime(
    pages: list[Path], fresh_engine: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A CPU or model OpenVINO's plugin cannot handle costs speed, not the pages' text."""
    import openvino

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp: unsupported on this CPU")

    monkeypatch.setattr(openvino.Core, "compile_model", refuse)
    assert "TOTAL 12.50" in ocr.rapidocr_text(pages[0])
    engine = ocr._rapidocr("auto")
    assert not isinstance(engine.text_det.session, OpenVinoSession)
    assert not isinstance(engine.text_rec.session, SteppedWidths)
    assert caplog.text.count("onnxruntime runs it instead") == 2


def test_a_batch_of_lines_is_padded_on_the_right_to_the_next_width_step() -> None:
    seen: list[np.ndarray] = []

    def session(batch: np.ndarray) -> np.ndarray:
        seen.append(batch)
        return batch[:, :1]

    padded = SteppedWidths(session, step=64)
    lines = np.random.default_rng(0).standard_normal((3, 3, 48, 330)).astype(np.float32)
    padded(lines)
    padded(lines[..., :320])
    assert [batch.shape for batch in seen] == [(3, 3, 48, 384), (3, 3, 48, 320)]
    assert np.array_equal(seen[0][..., :330], lines) and not seen[0][..., 330:].any()
