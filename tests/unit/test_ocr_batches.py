"""tesseract reading a window's pages in a few processes (a list file, TSV output split by page) instead of one
process per page: the same text page for page, in order, and one damaged image costs only its own text."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from schemas.records import DocumentPage
from tasks.preprocess import ocr
from tasks.preprocess.ocr import documents_with_page_text, tesseract_text, tesseract_texts

LINES = [
    ["INVOICE 2041", "Bill to: Ana Lopez", "TOTAL 12.50"],
    ["Dear Sir,", "", "Thank you for your order.", "Regards"],
    ["CASH 20.00", "CHANGE 7.50"],
]


def _text_page(path: Path, lines: list[str]) -> Path:
    image = Image.new("RGB", (640, 80 + 44 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    for row, line in enumerate(lines):
        draw.text((30, 30 + 44 * row), line, fill="black", font=font)
    image.save(path)
    return path


def _blank(path: Path) -> Path:
    Image.new("RGB", (300, 200), "white").save(path)
    return path


def _photo(path: Path) -> Path:
    image = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for n in range(6):
        draw.ellipse((20 + 40 * n, 40 + 20 * n, 80 + 40 * n, 100 + 20 * n), fill=(40 * n, 200 - 30 * n, 90))
    image.save(path)
    return path


@pytest.fixture
def pages(tmp_path: Path) -> list[Path]:
    """Text pages, a blank page and a photo-like picture between them."""
    return [
        _text_page(tmp_path / "invoice.png", LINES[0]),
        _blank(tmp_path / "blank.png"),
        _text_page(tmp_path / "letter.png", LINES[1]),
        _photo(tmp_path / "photo.png"),
        _text_page(tmp_path / "receipt.png", LINES[2]),
    ]


@pytest.fixture
def tesseract_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The tesseract commands run (the real ones: only counted)."""
    runs: list[list[str]] = []
    real_run: Callable[..., Any] = subprocess.run

    def counted(command: list[str], *args: Any, **kwargs: Any) -> Any:
        runs.append(command)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(ocr.subprocess, "run", counted)
    return runs


def test_a_batch_reads_each_page_as_tesseract_reads_it_alone(
    pages: list[Path], corpus: Path, tesseract_runs: list[list[str]]
) -> None:
    pages = [*pages, corpus / "extraction" / "inputs" / "sroie_001.jpg", corpus / "image" / "funsd_82092117.png"]
    alone = [tesseract_text(path) for path in pages]
    tesseract_runs.clear()

    together = tesseract_texts(pages)

    assert together == alone
    assert len(tesseract_runs) == 1  # one process for the seven pages
    assert together[1] == "" and together[3] == ""  # the blank page and the photo, in their places
    assert "TOTAL 12.50" in together[0] and "Thank you for your order." in together[2]
    assert "\n\n" in together[2]  # paragraphs apart, as tesseract's own text output sets them
    assert "CHANGE" in together[4]


def test_a_damaged_image_in_a_batch_loses_only_its_own_text(pages: list[Path], tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 20)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    batch = [pages[0], corrupt, pages[2], tmp_path / "missing.png", pages[4], empty, pages[0]]

    texts = tesseract_texts(batch)

    assert len(texts) == len(batch)
    assert texts[1] == texts[3] == texts[5] == ""
    assert texts[0] == texts[6] == tesseract_text(pages[0]) != ""
    assert texts[2] == tesseract_text(pages[2]) and texts[4] == tesseract_text(pages[4])


def test_an_image_of_several_frames_is_read_alone_not_shifting_the_others(pages: list[Path], tmp_path: Path) -> None:
    """tesseract reads every frame of a TIFF as a page of its own: the batch's pages no longer match its paths."""
    frames = [Image.open(pages[0]).convert("RGB"), Image.open(pages[4]).convert("RGB")]
    tiff = tmp_path / "two-frames.tif"
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    batch = [pages[2], tiff, pages[4]]

    assert tesseract_texts(batch) == [tesseract_text(path) for path in batch]


def test_a_window_of_documents_is_read_in_one_process_in_order(
    pages: list[Path], tesseract_runs: list[list[str]]
) -> None:
    def page(number: int, path: Path, text: str = "") -> DocumentPage:
        return DocumentPage(page_number=number, path=path, width=640, height=200, text=text)

    layer = "A text layer of its own, long enough to be kept as it is."
    documents = [
        [page(1, pages[0])],
        [page(1, pages[1]), page(2, pages[3])],
        [page(1, pages[2], layer), page(2, pages[4])],
        [page(1, pages[4])],
    ]

    read = documents_with_page_text(documents, "tesseract", limit=10)

    assert len(tesseract_runs) == 1
    assert [[page.text for page in document] for document in read] == [
        [tesseract_text(pages[0])],
        ["", ""],
        [layer, tesseract_text(pages[4])],
        [tesseract_text(pages[4])],
    ]
    first_pages = documents_with_page_text(documents, "tesseract", limit=1)
    assert [[page.text for page in document] for document in first_pages][2:] == [
        [layer, ""],  # past the limit: not read
        [tesseract_text(pages[4])],
    ]


def test_rapidocr_takes_half_the_cores_not_all(pages: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """At least two workers read pages at once: onnxruntime's default (a thread per core in each) oversubscribed a
    busy 2-core machine, a page 3 times slower for the same text."""
    monkeypatch.setattr(ocr, "usable_cores", lambda: 2)  # onnxruntime takes no more than os.cpu_count()
    monkeypatch.setitem(sys.modules, "openvino", None)  # onnxruntime runs both models
    ocr._engine.cache_clear()
    try:
        assert "TOTAL 12.50" in ocr.rapidocr_text(pages[0])  # the models load on first use
        engine = ocr._rapidocr("auto")
        for model in (engine.text_det, engine.text_rec):
            assert model.session.session.get_session_options().intra_op_num_threads == 1
    finally:
        ocr._engine.cache_clear()
