"""OCR for pages without a text layer (the PDF's own text layer is read at preprocessing: tasks/preprocess/pdf.py):
tesseract, or RapidOCR's PP-OCRv6 ONNX models (Apache-2.0, bundled in the `rapidocr` package), whose lines are put
back in reading order."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from schemas.records import DocumentPage
from tasks.display import printable
from tasks.preprocess.openvino_session import openvino_session
from tasks.system_tools import missing_tool

OcrEngine = Literal["tesseract", "rapidocr"]

log = logging.getLogger(__name__)

# Fewer characters than this on a page means "no usable text layer": a scan, or a page of pictures.
MIN_TEXT_CHARS = 20
# Boxes of one row overlap horizontally by at most this share of the narrower one.
SAME_ROW_OVERLAP = 0.25


def ocr_image(path: Path, engine: OcrEngine = "tesseract") -> str:
    """The text of one page image, in reading order ('' when the engine finds nothing)."""
    return rapidocr_text(path) if engine == "rapidocr" else tesseract_text(path)


def ocr_images(paths: Sequence[Path], engine: OcrEngine = "tesseract") -> list[str]:
    """The text of each page image, in order: tesseract reads them in a few processes (one per BATCH_PAGES pages),
    RapidOCR one by one (its models stay loaded in this process)."""
    if engine == "rapidocr" or len(paths) == 1:
        return [ocr_image(path, engine) for path in paths]
    return tesseract_texts(paths)


# Pages one tesseract process reads: its start-up (loading the language model) costs more than a small page.
BATCH_PAGES = 64
# A batch may take this long per page beyond the one-page timeout before it is stopped (its pages read alone).
BATCH_SECONDS_PER_PAGE = 5


def _tesseract_env() -> dict[str, str]:
    """tesseract's own OpenMP threads spin against the other workers' on a busy machine: one thread per process,
    unless OMP_THREAD_LIMIT says otherwise."""
    return {"OMP_THREAD_LIMIT": "1", **os.environ}


def tesseract_text(path: Path, languages: str = "eng", timeout_s: int = 120) -> str:
    """tesseract's text for one page image ('' when tesseract finds nothing, cannot read it, or is missing)."""
    try:
        proc = subprocess.run(
            ["tesseract", str(path), "stdout", "-l", languages, "--psm", "3"],
            capture_output=True,
            timeout=timeout_s,
            check=False,
            env=_tesseract_env(),
        )
    except FileNotFoundError:
        raise missing_tool("tesseract") from None
    except subprocess.TimeoutExpired:
        log.warning("tesseract took over %d s on %s: read as a page without text", timeout_s, printable(str(path)))
        return ""
    return proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""


def tesseract_texts(paths: Sequence[Path], languages: str = "eng", timeout_s: int = 120) -> list[str]:
    """tesseract's text for each page image, in order, the same text `tesseract_text` gives page by page, read
    BATCH_PAGES pages per process. A page that stops a batch (unreadable, damaged, too slow) is read alone and
    gets '' as it would alone; the pages before it keep their text and the pages after it go on in a new batch."""
    texts: list[str] = []
    rest = list(paths)
    while rest:
        batch = list(itertools.takewhile(_batchable, rest[:BATCH_PAGES]))
        read = _tesseract_batch(batch, languages, timeout_s) if len(batch) > 1 else []
        if read is None:  # an answer that cannot be matched to the pages: read each one alone
            texts += [tesseract_text(path, languages, timeout_s) for path in batch]
            rest = rest[len(batch) :]
            continue
        texts += read
        rest = rest[len(read) :]
        if len(read) < len(batch) or not batch:  # the page that stopped the batch, or one read alone anyway
            texts.append(tesseract_text(rest[0], languages, timeout_s))
            rest = rest[1:]
    return texts


def _batchable(path: Path) -> bool:
    """Whether tesseract reads the page in a list file as it reads it alone: a list file holds one path a line,
    and from a list tesseract reads only a TIFF's first frame (alone, every frame)."""
    if "\n" in str(path) or "\r" in str(path):
        return False
    try:
        with path.open("rb") as file:
            return file.read(4) not in (b"II*\x00", b"MM\x00*")
    except OSError:
        return True  # unreadable: the batch's own failure handling reads it alone


def _tesseract_batch(paths: Sequence[Path], languages: str, timeout_s: int) -> list[str] | None:
    """The text of the leading pages one tesseract process read in full (all of them when it read every page),
    from its TSV output over a list file. None when its pages cannot be matched to the paths (more pages than
    images)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as listing:
        listing.write("".join(f"{path}\n" for path in paths))
        listing.flush()
        command = ["tesseract", listing.name, "stdout", "-l", languages, "--psm", "3", "tsv"]
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                timeout=timeout_s + BATCH_SECONDS_PER_PAGE * len(paths),
                check=False,
                env=_tesseract_env(),
            )
            output, complete = proc.stdout, proc.returncode == 0
        except FileNotFoundError:
            raise missing_tool("tesseract") from None
        except subprocess.TimeoutExpired as exc:
            output, complete = exc.stdout or b"", False
    pages = tsv_pages(output.decode("utf-8", "replace"))
    if len(pages) > len(paths):
        return None
    if complete and len(pages) == len(paths):
        return pages
    # A stopped process: its last page's rows may be cut short (tesseract's output is buffered); the pages before
    # it were followed by the next page's row, so they are whole.
    return pages[:-1]


def tsv_pages(tsv: str) -> list[str]:
    """Each page's text from tesseract's TSV output, as its plain-text output gives it: a line's words joined by a
    space, lines by a newline, paragraphs (and blocks) apart by an empty line, words of blanks left out."""
    pages: list[list[tuple[tuple[str, str, str], str]]] = []
    for row in tsv.split("\n"):  # not splitlines(): a word may hold a form feed or a Unicode line separator
        fields = row.rstrip("\r").split("\t")
        if len(fields) < 12:
            continue
        if fields[0] == "1":  # a page's own row: every page has one, with or without words
            pages.append([])
        elif fields[0] == "5" and pages and (word := "\t".join(fields[11:])).strip():
            pages[-1].append(((fields[2], fields[3], fields[4]), word))
    return [_page_text(words) for words in pages]


def _page_text(words: list[tuple[tuple[str, str, str], str]]) -> str:
    paragraphs: list[list[list[str]]] = []
    last: tuple[str, str, str] | None = None
    for line, word in words:
        if last is None or line[:2] != last[:2]:
            paragraphs.append([[word]])
        elif line != last:
            paragraphs[-1].append([word])
        else:
            paragraphs[-1][-1].append(word)
        last = line
    return "\n\n".join("\n".join(" ".join(line) for line in lines) for lines in paragraphs).strip()


def has_text(text: str) -> bool:
    return len(text.strip()) >= MIN_TEXT_CHARS


def with_page_text(pages: Sequence[DocumentPage], engine: OcrEngine, limit: int) -> tuple[DocumentPage, ...]:
    """The pages, the first `limit` of them with their text: the text layer where it has some, else OCR of the
    page image (read once: the classifier's words and the extractor's page are the same reading)."""
    return documents_with_page_text([pages], engine, limit)[0]


def documents_with_page_text(
    documents: Sequence[Sequence[DocumentPage]], engine: OcrEngine, limit: int
) -> list[tuple[DocumentPage, ...]]:
    """`with_page_text` for each document, their pages without a text layer read together (a window of small
    images is a few tesseract processes, not one per image)."""
    read = [list(pages) for pages in documents]
    wanted = [
        (document, index)
        for document, pages in enumerate(read)
        for index, page in enumerate(pages[:limit])
        if not has_text(page.text) and page.path is not None
    ]
    paths = [read[d][i].path for d, i in wanted]
    texts = ocr_images([path for path in paths if path is not None], engine)
    for (document, index), text in zip(wanted, texts, strict=True):
        read[document][index] = read[document][index].model_copy(update={"text": text})
    return [tuple(pages) for pages in read]


# RapidOCR's bundled text detector: onnxruntime loads it by path as RapidOCR would, OpenVINO compiles the same file.
DETECTOR_MODEL = "PP-OCRv6_det_small.onnx"


@functools.cache
def _rapidocr() -> Any:
    """One RapidOCR per process: its ONNX sessions load once. The text detector, most of a page's OCR time, runs on
    OpenVINO where it is installed (tasks/preprocess/openvino_session.py): on the 40 labelled receipt scans and 60 of
    the small-object bench's images the same text to the character, detection 3 times as fast (95 ms to 30 ms on a
    420x300 image); a whole small page 0.15 CPU-s before, 0.10 after, a receipt scan 1.84 s, 1.47 after (recognition
    is the rest). Recognition stays on onnxruntime: OpenVINO was no faster on it, and slower on each new input width."""
    from rapidocr import RapidOCR

    # No line-angle classifier: on the 41 labelled receipt and invoice scans it turned upright lines upside down
    # (`TEL: 012 - 6651783` read as `1EL-3 3 9 - 308`, `TAX INVOICE` as `TA ICE`) and changed the text of 22
    # of them, nearly always for the worse, in 7 % more time. "No text detected" is an answer, not a warning.
    # Text detection at the page's own size, never enlarged: the default enlarges a page's short side to 736 px, a
    # receipt scan's 440 to 736 (2.8 times the pixels) for 18 % of the OCR time and 2 % of the text changed.
    # ONNX Runtime's threads: half the cores (onnxruntime's default is all of them), since at least two workers read
    # pages at once; on a busy 2-core machine all of them made a page 3 times slower (1.27 s against 0.43 s, the same
    # text).
    threads = max(1, _cores() // 2)
    detector_model = _rapidocr_models() / DETECTOR_MODEL
    engine = RapidOCR(
        params={
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Det.model_path": str(detector_model),
            "Det.limit_type": "max",
            "Det.limit_side_len": 2000,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )
    # RapidOCR loads a model on first use; the detector is loaded now to hand it the OpenVINO session (RapidOCR has
    # no hook for a session of our own: its onnxruntime one is built first, once a process, and dropped).
    detector = engine._load_det_model()
    if (session := openvino_session(detector_model, threads)) is not None:
        detector.session = session
    return engine


def _rapidocr_models() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).parent / "models"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
