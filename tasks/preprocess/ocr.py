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
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from schemas.defaults import usable_cores
from schemas.records import DocumentPage
from tasks.display import printable
from tasks.preprocess.openvino_session import Precision, openvino_session
from tasks.system_tools import missing_tool

OcrEngine = Literal["tesseract", "rapidocr"]

log = logging.getLogger(__name__)

# Fewer characters than this on a page means "no usable text layer": a scan, or a page of pictures.
MIN_TEXT_CHARS = 20
# Boxes of one row overlap horizontally by at most this share of the narrower one.
SAME_ROW_OVERLAP = 0.25


def ocr_image(path: Path, engine: OcrEngine = "tesseract", precision: Precision = "auto") -> str:
    """The text of one page image, in reading order ('' when the engine finds nothing). `precision`: RapidOCR's."""
    return rapidocr_text(path, precision) if engine == "rapidocr" else tesseract_text(path)


def ocr_images(paths: Sequence[Path], engine: OcrEngine = "tesseract", precision: Precision = "auto") -> list[str]:
    """The text of each page image, in order: tesseract reads them in a few processes (one per BATCH_PAGES pages),
    RapidOCR one by one (its models stay loaded in this process)."""
    if engine == "rapidocr" or len(paths) == 1:
        return [ocr_image(path, engine, precision) for path in paths]
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


def with_page_text(
    pages: Sequence[DocumentPage], engine: OcrEngine, limit: int, precision: Precision = "auto"
) -> tuple[DocumentPage, ...]:
    """The pages, the first `limit` of them with their text: the text layer where it has some, else OCR of the
    page image (read once: the classifier's words and the extractor's page are the same reading)."""
    return documents_with_page_text([pages], engine, limit, precision)[0]


def documents_with_page_text(
    documents: Sequence[Sequence[DocumentPage]], engine: OcrEngine, limit: int, precision: Precision = "auto"
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
    texts = ocr_images([path for path in paths if path is not None], engine, precision)
    for (document, index), text in zip(wanted, texts, strict=True):
        read[document][index] = read[document][index].model_copy(update={"text": text})
    return [tuple(pages) for pages in read]


# RapidOCR's bundled models: onnxruntime loads them by path as RapidOCR would, OpenVINO compiles the same files.
DETECTOR_MODEL = "PP-OCRv6_det_small.onnx"
RECOGNISER_MODEL = "PP-OCRv6_rec_small.onnx"
# Input shapes whose kernels OpenVINO keeps (tasks/preprocess/openvino_session.py): a scanner's pages share a few
# sizes; the recogniser's batches are one of six heights (lines per batch) by a LINE_WIDTH_STEP multiple.
DETECTOR_SHAPES_KEPT = 16
RECOGNISER_SHAPES_KEPT = 32
LINE_WIDTH_STEP = 64


_building = threading.Lock()


def _rapidocr(precision: Precision) -> Any:
    """The process's RapidOCR for `precision` (`_engine`). The window's workers read their first pages at the same
    moment: one builds it while the others wait, rather than each building one (measured here: a process's first
    costs 1.1 CPU-s and 190 MiB)."""
    with _building:
        return _engine(precision)


@functools.cache
def _engine(precision: Precision) -> Any:
    """One RapidOCR per process and precision: its models load once. Both models run on OpenVINO where it is
    installed (tasks/preprocess/openvino_session.py), in OpenVINO's own precision for this CPU unless `precision`
    is f32. bench/ocr.py measures it against the ground truth of labelled scans and the drawn text of the small-
    object bench: in float32, detection 3 times as fast as onnxruntime, recognition as fast; in bfloat16 on a CPU
    with AMX, a page about twice as fast again, as accurate (the text differs here and there)."""
    engine = rapidocr_on_onnxruntime()
    threads = _threads()
    streams = max(1, usable_cores() // threads)  # the workers' calls run side by side, not in turn
    models = _rapidocr_models()
    # RapidOCR loads a model on first use; both are loaded now to hand them the OpenVINO sessions (RapidOCR has no
    # hook for a session of our own: its onnxruntime one is built first, once a process, and dropped).
    detector, recogniser = engine._load_det_model(), engine._load_rec_model()
    if session := openvino_session(models / DETECTOR_MODEL, threads, precision, DETECTOR_SHAPES_KEPT, streams):
        detector.session = session
    if session := openvino_session(models / RECOGNISER_MODEL, threads, precision, RECOGNISER_SHAPES_KEPT, streams):
        recogniser.session = SteppedWidths(session, LINE_WIDTH_STEP)
        log.info("RapidOCR on OpenVINO in %s", session.precision)
    return engine


def rapidocr_on_onnxruntime() -> Any:
    """RapidOCR with docflow's settings, on onnxruntime as the library ships it (bench/ocr.py's reference)."""
    from rapidocr import RapidOCR

    # No line-angle classifier: on the 41 labelled receipt and invoice scans it turned upright lines upside down
    # (`TEL: 012 - 6651783` read as `1EL-3 3 9 - 308`, `TAX INVOICE` as `TA ICE`) and changed the text of 22
    # of them, nearly always for the worse, in 7 % more time. "No text detected" is an answer, not a warning.
    # Text detection at the page's own size, never enlarged: the default enlarges a page's short side to 736 px, a
    # receipt scan's 440 to 736 (2.8 times the pixels) for 18 % of the OCR time and 2 % of the text changed.
    models = _rapidocr_models()
    return RapidOCR(
        params={
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Det.model_path": str(models / DETECTOR_MODEL),
            "Det.limit_type": "max",
            "Det.limit_side_len": 2000,
            "Rec.model_path": str(models / RECOGNISER_MODEL),
            "EngineConfig.onnxruntime.intra_op_num_threads": _threads(),
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )


def _threads() -> int:
    """Inference threads a call: half the cores (onnxruntime's default is all of them), since at least two workers
    read pages at once; on a busy 2-core machine all of them made a page 3 times slower (1.27 s against 0.43 s, the
    same text)."""
    return max(1, usable_cores() // 2)


class SteppedWidths:
    """RapidOCR's recogniser is handed batches of lines as wide as their widest line, of any width: a new input
    shape, new kernels, nearly every batch. Padded on the right to a multiple of `step` columns, with what RapidOCR
    pads a shorter line with (0 after normalisation), a run sees a few dozen shapes, whose kernels are kept."""

    def __init__(self, session: Callable[[np.ndarray], np.ndarray], step: int) -> None:
        self.session, self.step = session, step

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        width = batch.shape[-1]
        if pad := -width % self.step:
            batch = np.pad(batch, [(0, 0)] * (batch.ndim - 1) + [(0, pad)])
        return self.session(batch)


def _rapidocr_models() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).parent / "models"


def load_ocr(engine: OcrEngine, precision: Precision = "auto") -> None:
    """Load the engine's models into this process now (RapidOCR's; tesseract starts a process a batch)."""
    if engine == "rapidocr":
        _rapidocr(precision)


def rapidocr_text(path: Path, precision: Precision = "auto") -> str:
    """RapidOCR's text lines for one page image, in reading order (`page_text`)."""
    return page_text(_rapidocr(precision)(str(path)))


def page_text(result: Any) -> str:
    """The text of a RapidOCR result, rows rebuilt from the boxes (left to right, top to bottom). Boxes of one
    phrase are joined by a space, boxes further apart than a character height (layout columns, a label and its
    amount) by two, as `pdftotext -layout` sets columns apart."""
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
