import zipfile
from pathlib import Path

import pytest

from schemas.records import ObjectKind
from tasks.preprocess.sniff import detect, unsupported_message


@pytest.mark.parametrize(
    ("head", "kind", "description"),
    [
        (b"%PDF-1.7\n...", ObjectKind.PDF, "PDF document"),
        (b"\x00\x00junk%PDF-1.4", ObjectKind.PDF, "PDF document"),  # header within the first KB is legal
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ObjectKind.IMAGE, "JPEG image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", ObjectKind.IMAGE, "PNG image"),
        (b"GIF89a\x01\x00", ObjectKind.IMAGE, "GIF image"),
        (b"II*\x00\x08\x00", ObjectKind.IMAGE, "TIFF image"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", ObjectKind.AUDIO, "WAV audio"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", ObjectKind.IMAGE, "WebP image"),
        (b"fLaC\x00\x00\x00\x22", ObjectKind.AUDIO, "FLAC audio"),
        (b"OggS\x00\x02", ObjectKind.AUDIO, "Ogg audio"),
        (b"ID3\x04\x00", ObjectKind.AUDIO, "MP3 audio"),
        (b"\x00\x00\x00\x20ftypM4A \x00", ObjectKind.AUDIO, "M4A audio"),
        (b"", ObjectKind.UNKNOWN, "empty file (0 bytes)"),
        (b"hello, this is text\n", ObjectKind.UNKNOWN, "plain text"),
        (b"\x01\x02\x03\x04\x05\x06", ObjectKind.UNKNOWN, "unrecognised binary data"),
        (
            b"%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog>> endobj",
            ObjectKind.UNKNOWN,
            "damaged PDF without a %PDF- header",
        ),
    ],
)
def test_detects_kind_from_bytes(head: bytes, kind: ObjectKind, description: str) -> None:
    detection = detect(head)
    assert (detection.kind, detection.description) == (kind, description)


def test_opendocument_named_pdf_is_named_as_such(tmp_path: Path) -> None:
    odt = tmp_path / "letter.pdf"
    with zipfile.ZipFile(odt, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", "<office:document-content/>")
    detection = detect(odt.read_bytes()[:4096], odt)
    assert detection.description == "OpenDocument text"
    assert unsupported_message(detection, "in/letter.pdf") == "not a PDF: OpenDocument text"


def test_docx_is_recognised_by_looking_inside(tmp_path: Path) -> None:
    docx = tmp_path / "x.bin"
    with zipfile.ZipFile(docx, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    detection = detect(docx.read_bytes()[:4096], docx)
    assert detection.description == "Word document (DOCX)"
    assert unsupported_message(detection, "x.bin") == "unsupported file type: Word document (DOCX)"


def test_extension_never_decides(sample_inbox: Path) -> None:
    png = (sample_inbox / "images" / "invoice2data_AmazonWebServices.png").read_bytes()[:4096]
    assert detect(png).kind is ObjectKind.IMAGE
    assert unsupported_message(detect(b"plain words"), "scan.jpg") == "not a JPEG image: plain text"
