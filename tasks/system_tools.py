"""The programs docflow runs besides Python: found on PATH before a run starts, so a missing one stops the run with
one clear message instead of failing every file as if the files were broken."""

from __future__ import annotations

import shutil

from schemas.errors import ToolMissingError
from schemas.settings import Settings

POPPLER = ("pdfinfo", "pdftoppm", "pdftotext")
TESSERACT = ("tesseract",)
_PACKAGES = {
    "pdfinfo": "poppler-utils",
    "pdftoppm": "poppler-utils",
    "pdftotext": "poppler-utils",
    "tesseract": "tesseract-ocr",
}


def required_tools(settings: Settings) -> tuple[str, ...]:
    """PDFs always need poppler; extraction with tesseract as its OCR engine also needs tesseract (every backend
    reads page text: the values are checked against it)."""
    ocr = settings.extraction.enabled and settings.extraction.ocr_engine == "tesseract"
    return POPPLER + (TESSERACT if ocr else ())


def missing_tool(program: str) -> ToolMissingError:
    package = _PACKAGES.get(program, program)
    return ToolMissingError(
        f"{program} is not installed or not on PATH: install {package} (Debian/Ubuntu: apt-get install {package}; "
        "`make setup` does it)"
    )


def check_tools(settings: Settings) -> None:
    """Raise ToolMissingError naming the first missing program and its package."""
    for program in required_tools(settings):
        if shutil.which(program) is None:
            raise missing_tool(program)
