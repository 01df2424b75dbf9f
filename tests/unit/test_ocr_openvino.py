"""RapidOCR's text detector on OpenVINO (float32) instead of onnxruntime: the same text, safe to call from the
window's worker threads at once, and onnxruntime again where OpenVINO is not installed or cannot compile it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from tasks.preprocess import ocr
from tasks.preprocess.openvino_session import OpenVinoSession

RECEIPT = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "extraction" / "inputs" / "sroie_001.jpg"


def _page(path: Path, lines: list[str], size: int) -> Path:
    image = Image.new("RGB", (520, 60 + (size + 16) * len(lines)), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((24, 24 + (size + 16) * row), line, fill="black", font=ImageFont.load_default(size=size))
    image.save(path)
    return path


@pytest.fixture
def pages(tmp_path: Path) -> list[Path]:
    found = [
        _page(tmp_path / "invoice.png", ["INVOICE 2041", "Bill to: Ana Lopez", "TOTAL 12.50"], 26),
        _page(tmp_path / "small.png", ["CASH 20.00  CHANGE 7.50", "Thank you"], 14),
        _page(tmp_path / "letter.png", ["Dear Sir,", "Regards, Ana"], 20),
    ]
    return [*found, RECEIPT] if RECEIPT.exists() else found


@pytest.fixture
def fresh_engine() -> Iterator[None]:
    ocr._rapidocr.cache_clear()
    yield
    ocr._rapidocr.cache_clear()


def _read(pages: list[Path]) -> list[str]:
    ocr._rapidocr.cache_clear()
    return [ocr.rapidocr_text(page) for page in pages]


def test_openvino_detection_reads_the_text_onnxruntime_reads(
    pages: list[Path], fresh_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_openvino = _read(pages)
    assert isinstance(ocr._rapidocr().text_det.session, OpenVinoSession)
    assert "TOTAL 12.50" in on_openvino[0] and "CHANGE 7.50" in on_openvino[1]
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: import fails
    on_onnxruntime = _read(pages)
    assert not isinstance(ocr._rapidocr().text_det.session, OpenVinoSession)
    assert on_openvino == on_onnxruntime


def test_threads_reading_at_once_each_get_their_own_pages_text(pages: list[Path], fresh_engine: None) -> None:
    """One compiled detector per process, an inference request per thread: pages read at once by four threads come
    back with their own text, not a neighbour's."""
    alone = [ocr.rapidocr_text(page) for page in pages]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(ocr.rapidocr_text, pages * 6))
    assert together == alone * 6


def test_a_detector_openvino_cannot_compile_here_runs_on_onnxruntime(
    pages: list[Path], fresh_engine: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A CPU or model OpenVINO's plugin cannot handle costs speed, not the pages' text."""
    import openvino

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp: unsupported on this CPU")

    monkeypatch.setattr(openvino.Core, "compile_model", refuse)
    assert "TOTAL 12.50" in ocr.rapidocr_text(pages[0])
    assert not isinstance(ocr._rapidocr().text_det.session, OpenVinoSession)
    assert "onnxruntime runs it instead" in caplog.text
