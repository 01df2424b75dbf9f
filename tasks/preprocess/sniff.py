"""File-type detection from the bytes (magic numbers), never from the name."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from schemas.records import ObjectKind

HEAD_BYTES = 4096


@dataclass(frozen=True)
class Detection:
    kind: ObjectKind
    description: str


_OPENDOCUMENT = {
    b"application/vnd.oasis.opendocument.text": "OpenDocument text",
    b"application/vnd.oasis.opendocument.spreadsheet": "OpenDocument spreadsheet",
    b"application/vnd.oasis.opendocument.presentation": "OpenDocument presentation",
}

_EXTENSION_KINDS = {
    ".pdf": "PDF",
    ".jpg": "JPEG image",
    ".jpeg": "JPEG image",
    ".png": "PNG image",
    ".gif": "GIF image",
    ".tif": "TIFF image",
    ".tiff": "TIFF image",
    ".webp": "WebP image",
    ".bmp": "BMP image",
    ".wav": "WAV audio",
    ".flac": "FLAC audio",
    ".mp3": "MP3 audio",
    ".ogg": "Ogg audio",
    ".m4a": "M4A audio",
    ".opus": "Opus audio",
    ".webm": "WebM audio",
}


def _zip_description(head: bytes, path: Path | None) -> str:
    # ODF puts an uncompressed "mimetype" member first, so its type is readable from the head alone.
    if head[30:38] == b"mimetype":
        for mime, name in _OPENDOCUMENT.items():
            if mime in head[38:200]:
                return name
    if path is not None:
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError):
            return "ZIP archive (damaged)"
        if "word/document.xml" in names:
            return "Word document (DOCX)"
        if "xl/workbook.xml" in names:
            return "Excel workbook (XLSX)"
        if "ppt/presentation.xml" in names:
            return "PowerPoint presentation (PPTX)"
    return "ZIP archive"


def detect(head: bytes, path: Path | None = None) -> Detection:
    """Classify a file by its first bytes (`path` lets ZIP containers be looked into)."""
    if not head:
        return Detection(ObjectKind.UNKNOWN, "empty file (0 bytes)")
    # The PDF spec tolerates bytes before the header; readers look in the first 1 KB.
    if b"%PDF-" in head[:1024]:
        return Detection(ObjectKind.PDF, "PDF document")
    if head.startswith(b"\xff\xd8\xff"):
        return Detection(ObjectKind.IMAGE, "JPEG image")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Detection(ObjectKind.IMAGE, "PNG image")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Detection(ObjectKind.IMAGE, "GIF image")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Detection(ObjectKind.IMAGE, "TIFF image")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Detection(ObjectKind.IMAGE, "WebP image")
    if head[:2] == b"BM" and len(head) > 14:
        return Detection(ObjectKind.IMAGE, "BMP image")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Detection(ObjectKind.AUDIO, "WAV audio")
    if head[:4] == b"fLaC":
        return Detection(ObjectKind.AUDIO, "FLAC audio")
    if head[:4] == b"OggS":
        return Detection(ObjectKind.AUDIO, "Ogg audio")
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return Detection(ObjectKind.AUDIO, "MP3 audio")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return Detection(ObjectKind.AUDIO, "M4A audio")
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
            return Detection(ObjectKind.UNKNOWN, "HEIF/AVIF image (not supported yet)")
        return Detection(ObjectKind.AUDIO, "MP4 media")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return Detection(ObjectKind.AUDIO, "WebM/Matroska media")
    if head[:6] == b"#!AMR\n":
        return Detection(ObjectKind.AUDIO, "AMR audio")
    if head[:4] == b"PK\x03\x04":
        return Detection(ObjectKind.UNKNOWN, _zip_description(head, path))
    if head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return Detection(ObjectKind.UNKNOWN, "legacy Microsoft Office document (OLE2)")
    if b" obj" in head and (b"endobj" in head or b"/Type" in head):
        return Detection(ObjectKind.UNKNOWN, "damaged PDF without a %PDF- header")
    if _looks_like_text(head):
        return Detection(ObjectKind.UNKNOWN, "plain text")
    return Detection(ObjectKind.UNKNOWN, "unrecognised binary data")


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 9 for b in head[:512])


def unsupported_message(detection: Detection, key: str) -> str:
    """Explain an unsupported file, naming the mismatch when the extension promised something else."""
    claimed = _EXTENSION_KINDS.get(PurePosixPath(key).suffix.lower())
    if detection.description.startswith("empty file"):
        return detection.description
    if claimed:
        return f"not a {claimed}: {detection.description}"
    return f"unsupported file type: {detection.description}"
