"""OCR for pages without a text layer (the PDF's own text layer is read at preprocessing: tasks/preprocess/pdf.py):
tesseract, or RapidOCR's PP-OCRv6 ONNX models (Apache-2.0, bundled in the `rapidocr` package), whose lines are put
back in reading order."""

from __future__ import annotations

import functools
import itertools
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from schemas.records import DocumentPage
from tasks.system_tools import missing_tool

OcrEngine = Literal["tesseract", "rapidocr"]

# Fewer characters than this on a page means "no usable text layer": a scan, or a page of pictures.
MIN_TEXT_CHARS = 20
# Boxes of one row overlap horizontally by at most this share of the narrower one.
SAME_ROW_OVERLAP = 0.25


def ocr_image(path: Path, engine: OcrEngine = "tesseract") -> str:
    """The text of one page image, in reading order ('' when the engine finds nothing)."""
    return rapidocr_text(path) if engine == "rapidocr" else tesseract_text(path)


def tesseract_text(path: Path, languages: str = "eng", timeout_s: int = 120) -> str:
    """tesseract's text for one page image ('' when tesseract finds nothing or is missing)."""
    try:
        proc = subprocess.run(
            ["tesseract", str(path), "stdout", "-l", languages, "--psm", "3"],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise missing_tool("tesseract") from None
    return proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""


def has_text(text: str) -> bool:
    return len(text.strip()) >= MIN_TEXT_CHARS


def with_page_text(pages: Sequence[DocumentPage], engine: OcrEngine, limit: int) -> tuple[DocumentPage, ...]:
    """The pages, the first `limit` of them with their text: the text layer where it has some, else OCR of the
    page image (read once: the classifier's words and the extractor's page are the same reading)."""
    read = list(pages)
    for index, page in enumerate(read[:limit]):
        if not has_text(page.text) and page.path is not None:
            read[index] = page.model_copy(update={"text": ocr_image(page.path, engine)})
    return tuple(read)


@functools.cache
def _rapidocr() -> Any:
    """One RapidOCR per process: its three ONNX sessions load once."""
    from rapidocr import RapidOCR

    # No line-angle classifier: on the 41 labelled receipt and invoice scans it turned upright lines upside down
    # (`TEL: 012 - 6651783` read as `1EL-3 3 9 - 308`, `TAX INVOICE` as `TA ICE`) and changed the text of 22
    # of them, nearly always for the worse, in 7 % more time. "No text detected" is an answer, not a warning.
    # Text detection at the page's own size, never enlarged: the default enlarges a page's short side to 736 px, a
    # receipt scan's 440 to 736 (2.8 times the pixels) for 18 % of the OCR time and 2 % of the text changed.
    return RapidOCR(
        params={
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Det.limit_type": "max",
            "Det.limit_side_len": 2000,
        }
    )


def rapidocr_text(path: Path) -> str:
    """RapidOCR's text lines for one page image, rows rebuilt from the boxes (left to right, top to bottom).
    Boxes of one phrase are joined by a space, boxes further apart than a character height (layout columns,
    a label and its amount) by two, as `pdftotext -layout` sets columns apart."""
    result = _rapidocr()(str(path))
    if result.boxes is None or result.txts is None:
        return ""
    boxes = [
        TextBox(float(box[:, 1].min()), float(box[:, 1].max()), float(box[:, 0].min()), float(box[:, 0].max()), text)
        for box, text in zip(result.boxes, result.txts, strict=True)
    ]
    return "\n".join(_joined(row) for row in reading_rows(boxes))


class TextBox(NamedTuple):
    top: float
    bottom: float
    left: float
    right: float
    text: str


def _joined(row: list[TextBox]) -> str:
    text = row[0].text
    for before, box in itertools.pairwise(row):
        gap = box.left - before.right
        text += (" " if gap < min(box.bottom - box.top, before.bottom - before.top) else "  ") + box.text
    return text


def reading_rows(boxes: list[TextBox]) -> list[list[TextBox]]:
    """Text boxes grouped into rows: a box joins the current row when its vertical centre lies within the row's
    first box and it is beside, not above or under, every box of the row (the boxes of a skewed scan's centred
    lines overlap vertically: side by side they would read the second line first); each row is sorted left to
    right."""
    rows: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: (b.top + b.bottom) / 2):
        centre = (box.top + box.bottom) / 2
        beside = rows and all(_beside(box, other) for other in rows[-1])
        if beside and rows[-1][0].top <= centre <= rows[-1][0].bottom:
            rows[-1].append(box)
        else:
            rows.append([box])
    return [sorted(row, key=lambda b: b.left) for row in rows]


def _beside(box: TextBox, other: TextBox) -> bool:
    """Whether two boxes sit side by side: they overlap horizontally by at most a quarter of the narrower one
    (the detector's boxes of one line overlap by a few pixels)."""
    overlap = min(box.right, other.right) - max(box.left, other.left)
    return overlap <= SAME_ROW_OVERLAP * min(box.right - box.left, other.right - other.left)
