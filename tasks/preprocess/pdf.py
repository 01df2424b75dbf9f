"""PDF pages to images with poppler (pdf2image): DPI control, a pixel budget per page, page limits, and rendering
in page ranges so a long document never holds more than one range of decoded pages; and the PDF's own text layer
(pdftotext), which spares a page OCR and is what extracted values are checked against."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from PIL import Image

from schemas.errors import InputError
from schemas.records import DocumentPage
from schemas.settings import RenderSettings
from tasks.system_tools import missing_tool

STAGE = "render"
# pdftoppm rounds sizes up; staying this fraction under the budget keeps every page inside it.
_BUDGET_MARGIN = 0.995


@dataclass(frozen=True)
class PageGeometry:
    number: int
    width_pt: float
    height_pt: float


@dataclass(frozen=True)
class RenderRange:
    first: int
    last: int
    dpi: float


@dataclass(frozen=True)
class PdfRender:
    page_count: int
    pages: list[DocumentPage]
    warnings: list[str]


_POPPLER_ERRORS: list[tuple[str, str, str]] = [
    ("Incorrect password", "encrypted", "encrypted PDF: password required"),
    ("Document stream is empty", "empty", "empty PDF: the file has no content"),
    ("Couldn't find trailer dictionary", "corrupt", "corrupt or truncated PDF: no trailer or cross-reference table"),
    ("Couldn't read xref table", "corrupt", "corrupt or truncated PDF: cross-reference table unreadable"),
    ("Invalid page count", "bad_page_tree", "corrupt PDF: invalid page count in the page tree"),
    ("Page count in top-level pages object", "bad_page_tree", "corrupt PDF: the page tree is missing or invalid"),
    ("Wrong page range given", "no_pages", "PDF has no usable pages"),
]


def explain_poppler_error(stderr: str) -> InputError:
    for needle, code, message in _POPPLER_ERRORS:
        if needle in stderr:
            return InputError(STAGE, code, message)
    detail = next((line.strip() for line in stderr.splitlines() if "Error" in line), stderr.strip()[:200])
    return InputError(STAGE, "unreadable", f"unreadable PDF: {detail or 'poppler failed without a message'}")


_PAGE_SIZE = re.compile(r"^Page\s+(\d+) size:\s+([\d.]+) x ([\d.]+) pts", re.M)
_PAGES = re.compile(r"^Pages:\s+(\d+)", re.M)


def read_geometry(path: Path, max_pages: int, timeout_s: int) -> tuple[int, list[PageGeometry]]:
    """Page count and the size of the first `max_pages` pages, from one pdfinfo call."""
    try:
        proc = subprocess.run(
            ["pdfinfo", "-f", "1", "-l", str(max_pages), str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise missing_tool("pdfinfo") from None
    except subprocess.TimeoutExpired:
        raise InputError(
            STAGE, "render_timeout", f"PDF inspection timed out after {timeout_s} s (DOCFLOW_RENDER_TIMEOUT_S)"
        ) from None
    if proc.returncode != 0:
        raise explain_poppler_error(proc.stderr)
    count_match = _PAGES.search(proc.stdout)
    page_count = int(count_match.group(1)) if count_match else 0
    if page_count <= 0:
        raise InputError(STAGE, "no_pages", "PDF has no pages")
    geometry = [PageGeometry(int(n), float(w), float(h)) for n, w, h in _PAGE_SIZE.findall(proc.stdout)]
    if not geometry:
        raise InputError(STAGE, "no_pages", "PDF has no readable page sizes")
    return page_count, geometry


def page_dpi(page: PageGeometry, limits: RenderSettings) -> float:
    """The configured DPI, lowered for this page just enough to fit the pixel budget and the longest-side cap."""
    width_px = page.width_pt * limits.dpi / 72
    height_px = page.height_pt * limits.dpi / 72
    scale = min(
        1.0,
        math.sqrt(limits.max_pixels / max(width_px * height_px, 1.0)),
        limits.max_side / max(width_px, height_px, 1.0),
    )
    if scale >= 1.0:
        return float(limits.dpi)
    return round(limits.dpi * scale * _BUDGET_MARGIN, 3)


def plan_ranges(pages: list[PageGeometry], limits: RenderSettings) -> list[RenderRange]:
    """Group consecutive pages that share a DPI into ranges of at most `chunk_pages` pages."""
    ranges: list[RenderRange] = []
    for page in pages[: limits.max_pages]:
        dpi = page_dpi(page, limits)
        last = ranges[-1] if ranges else None
        if (
            last is not None
            and last.dpi == dpi
            and last.last == page.number - 1
            and last.last - last.first + 1 < limits.chunk_pages
        ):
            ranges[-1] = RenderRange(last.first, page.number, dpi)
        else:
            ranges.append(RenderRange(page.number, page.number, dpi))
    return ranges


def _render_range(path: Path, out_dir: Path, rng: RenderRange, limits: RenderSettings) -> list[DocumentPage]:
    from pdf2image import convert_from_path
    from pdf2image.exceptions import (
        PDFInfoNotInstalledError,
        PDFPageCountError,
        PDFPopplerTimeoutError,
        PDFSyntaxError,
    )

    try:
        # pdf2image types the result as images; with paths_only=True it is the written files' paths.
        files = cast(
            list[str],
            convert_from_path(
                path,
                # Typed int, but pdf2image passes it to pdftoppm's -r as str(dpi), and -r takes a fractional DPI.
                dpi=rng.dpi,  # type: ignore[arg-type]
                first_page=rng.first,
                last_page=rng.last,
                output_folder=out_dir,
                output_file=f"p{rng.first:05d}",
                fmt="jpeg",
                jpegopt={"quality": limits.jpeg_quality, "optimize": "n", "progressive": "n"},
                paths_only=True,
                thread_count=1,
                timeout=limits.timeout_s,
            ),
        )
    except PDFInfoNotInstalledError:  # a broken installation is not the file's fault
        raise missing_tool("pdftoppm") from None
    except (PDFPageCountError, PDFSyntaxError) as exc:
        raise explain_poppler_error(str(exc)) from None
    except (PDFPopplerTimeoutError, subprocess.TimeoutExpired):  # pdf2image raises its own error, not the stdlib's
        raise InputError(
            STAGE,
            "render_timeout",
            f"rendering pages {rng.first}-{rng.last} timed out after {limits.timeout_s} s (DOCFLOW_RENDER_TIMEOUT_S)",
        ) from None
    expected = rng.last - rng.first + 1
    if len(files) != expected:
        raise InputError(STAGE, "render_failed", f"poppler rendered {len(files)} of pages {rng.first}-{rng.last}")
    rendered = []
    for number, file in zip(range(rng.first, rng.last + 1), sorted(files), strict=True):
        with Image.open(file) as img:  # reads the header only
            width, height = img.size
        rendered.append(DocumentPage(page_number=number, path=Path(file), width=width, height=height, dpi=rng.dpi))
    return rendered


def render_pdf(path: Path, out_dir: Path, limits: RenderSettings) -> PdfRender:
    """Render up to `max_pages` pages as JPEG files in `out_dir`. Raises InputError for a bad PDF."""
    page_count, geometry = read_geometry(path, limits.max_pages, limits.timeout_s)
    warnings = []
    if page_count > limits.max_pages:
        warnings.append(f"only the first {limits.max_pages} of {page_count} pages were rendered (DOCFLOW_MAX_PAGES)")
    reduced = [p.number for p in geometry[: limits.max_pages] if page_dpi(p, limits) < limits.dpi]
    if reduced:
        warnings.append(f"{len(reduced)} page(s) rendered below {limits.dpi} DPI to fit the pixel budget")
    pages: list[DocumentPage] = []
    for rng in plan_ranges(geometry, limits):
        pages.extend(_render_range(path, out_dir, rng, limits))
    return PdfRender(page_count=page_count, pages=pages, warnings=warnings)


def pdf_text_layer(path: Path, last_page: int, timeout_s: int = 60) -> list[str]:
    """Text of pages 1..last_page in reading layout ('' for pages without a text layer)."""
    try:
        proc = subprocess.run(
            ["pdftotext", "-layout", "-enc", "UTF-8", "-f", "1", "-l", str(last_page), str(path), "-"],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise missing_tool("pdftotext") from None
    if proc.returncode != 0:
        return [""] * last_page
    pages = proc.stdout.decode("utf-8", "replace").split("\f")
    return [(pages[i] if i < len(pages) else "").strip() for i in range(last_page)]
