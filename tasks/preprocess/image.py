"""Raster images: decompression-bomb guard, EXIF orientation, RGB, resize to the pixel budget."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from schemas.errors import InputError
from schemas.records import DocumentPage
from schemas.settings import RenderSettings

STAGE = "image"


@dataclass(frozen=True)
class NormalisedDocument:
    page_count: int  # every frame in the file, including those past `max_pages`
    pages: list[DocumentPage]
    warnings: list[str]


def fit_to_budget(width: int, height: int, max_pixels: int, max_side: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio that fits both caps (never upscales)."""
    scale = min(1.0, math.sqrt(max_pixels / (width * height)), max_side / max(width, height))
    if scale >= 1.0:
        return width, height
    new_w = max(1, math.floor(width * scale))
    new_h = max(1, math.floor(height * scale))
    return new_w, new_h


def _open(path: Path, limits: RenderSettings) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit below
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)) / 1e6:.0f} Mpx declared" if declared else str(exc)
        raise InputError(
            STAGE, "pixel_limit", f"image exceeds pixel limit: {size} (decompression bomb guard)"
        ) from None
    except UnidentifiedImageError:
        raise InputError(STAGE, "unreadable", "image format not recognised or header corrupt") from None
    width, height = img.size
    if width * height > limits.max_decode_pixels:
        img.close()
        raise InputError(
            STAGE,
            "pixel_limit",
            f"image exceeds pixel limit: {width}x{height} = {width * height / 1e6:.0f} Mpx, "
            f"limit {limits.max_decode_pixels / 1e6:.0f} Mpx (DOCFLOW_MAX_DECODE_PIXELS)",
        )
    return img


def _normalise_frame(img: Image.Image, limits: RenderSettings) -> Image.Image:
    target = fit_to_budget(*img.size, limits.max_pixels, limits.max_side)
    if img.format == "JPEG" and target != img.size:
        img.draft("RGB", target)  # let libjpeg decode at a reduced scale: much faster for big photos
    img = ImageOps.exif_transpose(img)  # after draft: draft keeps orientation metadata
    if img.mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if "A" in img.getbands() or img.mode == "P" else img.convert("RGB")
    target = fit_to_budget(*img.size, limits.max_pixels, limits.max_side)
    if target != img.size:
        img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img


def normalise_image(path: Path, out_dir: Path, limits: RenderSettings) -> NormalisedDocument:
    """Write an upright RGB JPEG per frame (multi-page TIFFs give several pages) for up to `max_pages` frames.
    Raises InputError."""
    img = _open(path, limits)
    pages: list[DocumentPage] = []
    try:
        frames = getattr(img, "n_frames", 1) if img.format == "TIFF" else 1
        for index in range(min(frames, limits.max_pages)):
            img.seek(index)
            page = _normalise_frame(img, limits)
            out = out_dir / f"p{index + 1:05d}.jpg"
            page.save(out, "JPEG", quality=limits.jpeg_quality)
            pages.append(DocumentPage(page_number=index + 1, path=out, width=page.width, height=page.height))
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's decoders report damage this way
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason:
            raise InputError(STAGE, "truncated", f"corrupt image: file is truncated ({reason})") from None
        raise InputError(STAGE, "corrupt", f"corrupt image: {reason}") from None
    finally:
        img.close()
    notes = []
    if frames > limits.max_pages:
        notes.append(f"only the first {limits.max_pages} of {frames} pages were processed (DOCFLOW_MAX_PAGES)")
    return NormalisedDocument(page_count=frames, pages=pages, warnings=notes)
