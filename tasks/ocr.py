"""Page text for the text backend: the PDF's own text layer when it has one (pdftotext), tesseract otherwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tasks.system_tools import missing_tool

# Fewer characters than this on a page means "no usable text layer": a scan, or a page of pictures.
MIN_TEXT_CHARS = 20


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


def ocr_image(path: Path, languages: str = "eng", timeout_s: int = 120) -> str:
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
