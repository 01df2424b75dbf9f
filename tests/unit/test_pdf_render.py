import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from schemas.errors import InputError
from tasks.preprocess.pdf import (
    PageGeometry,
    RenderLimits,
    explain_poppler_error,
    page_dpi,
    plan_ranges,
    read_geometry,
    render_pdf,
)

LETTER = PageGeometry(1, 612, 792)
LIMITS = RenderLimits(dpi=150, max_pixels=4_000_000, max_side=4096, max_pages=200, chunk_pages=4)


def test_small_page_keeps_configured_dpi() -> None:
    assert page_dpi(LETTER, LIMITS) == 150.0


def test_oversized_page_is_rendered_at_lower_dpi_within_budget() -> None:
    poster = PageGeometry(1, 8400, 8400)
    dpi = page_dpi(poster, LIMITS)
    side = 8400 * dpi / 72
    assert dpi < 150
    assert side * side <= LIMITS.max_pixels
    assert side > 0.98 * LIMITS.max_pixels**0.5  # not needlessly small


def test_longest_side_cap_applies_to_thin_pages() -> None:
    strip = PageGeometry(1, 72 * 100, 72)  # 100 in x 1 in: few pixels, very long
    dpi = page_dpi(strip, RenderLimits(dpi=150, max_pixels=10**9, max_side=2000, max_pages=1))
    assert 100 * dpi <= 2000


def test_ranges_split_by_chunk_size_and_dpi() -> None:
    pages = [PageGeometry(n, 612, 792) for n in range(1, 10)] + [PageGeometry(10, 8400, 8400)]
    ranges = plan_ranges(pages, LIMITS)
    assert [(r.first, r.last) for r in ranges] == [(1, 4), (5, 8), (9, 9), (10, 10)]
    assert ranges[-1].dpi < 150


def test_page_limit_stops_planning() -> None:
    pages = [PageGeometry(n, 612, 792) for n in range(1, 11)]
    limits = RenderLimits(dpi=72, max_pixels=10**7, max_side=9999, max_pages=3, chunk_pages=16)
    assert [(r.first, r.last) for r in plan_ranges(pages, limits)] == [(1, 3)]


def test_renders_mixed_page_sizes_at_requested_dpi(sample_inbox: Path, tmp_path: Path) -> None:
    result = render_pdf(sample_inbox / "documents" / "pdfjs_sizes-mixed-page-sizes.pdf", tmp_path, LIMITS)
    assert result.page_count == 3
    # 612x792, 649x323 and 792x612 pt at 150 DPI (poppler rounds 1352.1 px up)
    assert [(p.width, p.height) for p in result.pages] == [(1275, 1650), (1353, 673), (1650, 1275)]
    assert all(p.dpi == 150 for p in result.pages)
    with Image.open(result.pages[0].path) as img:
        assert img.format == "JPEG" and img.size == (1275, 1650)


def test_dpi_setting_changes_resolution(sample_inbox: Path, tmp_path: Path) -> None:
    limits = RenderLimits(dpi=72, max_pixels=4_000_000, max_side=4096, max_pages=10)
    result = render_pdf(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", tmp_path, limits)
    assert [(p.width, p.height) for p in result.pages] == [(595, 842)]


def test_page_limit_renders_first_pages_and_warns(sample_inbox: Path, tmp_path: Path) -> None:
    limits = RenderLimits(dpi=50, max_pixels=4_000_000, max_side=4096, max_pages=2)
    result = render_pdf(sample_inbox / "documents" / "pdfjs_sizes-mixed-page-sizes.pdf", tmp_path, limits)
    assert result.page_count == 3
    assert [p.page_number for p in result.pages] == [1, 2]
    assert "first 2 of 3 pages" in result.warnings[0]


def test_recoverable_broken_xref_renders(sample_inbox: Path, tmp_path: Path) -> None:
    result = render_pdf(sample_inbox / "documents" / "pypdf_issue-297-broken-xref.pdf", tmp_path, LIMITS)
    assert result.page_count == 1 and len(result.pages) == 1


def test_encrypted_pdf_is_reported_as_such(sample_inbox: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        read_geometry(sample_inbox / "documents" / "pdfjs_issue3371-encrypted-pw-ELXRTQWS.pdf", 10, 30)
    assert excinfo.value.error.code == "encrypted"
    assert str(excinfo.value) == "encrypted PDF: password required"


def test_long_document_renders_in_ranges_with_bounded_pages(corpus: Path, tmp_path: Path) -> None:
    limits = RenderLimits(dpi=36, max_pixels=4_000_000, max_side=4096, max_pages=40, chunk_pages=8)
    result = render_pdf(corpus / "pdf" / "pypdfsf_GeoTopo-117pages.pdf", tmp_path, limits)
    assert result.page_count == 117
    assert [p.page_number for p in result.pages] == list(range(1, 41))


def test_resource_bomb_page_fits_the_budget(corpus: Path, tmp_path: Path) -> None:
    result = render_pdf(corpus / "pdf_bad" / "ocrmypdf_hugemono-35000px-jbig2.pdf", tmp_path, LIMITS)
    (page,) = result.pages
    assert page.width * page.height <= LIMITS.max_pixels
    assert page.dpi < 20
    assert "below 150 DPI" in result.warnings[0]


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        ("Command Line Error: Incorrect password", "encrypted"),
        ("Syntax Error: Couldn't find trailer dictionary", "corrupt"),
        ("Syntax Error: Invalid page count -2147483648", "bad_page_tree"),
        ("Syntax Error: something new", "unreadable"),
    ],
)
def test_poppler_messages_become_reasons(stderr: str, code: str) -> None:
    assert explain_poppler_error(stderr).error.code == code


def _slow_pdf(fills: int) -> bytes:
    """A one-page PDF of a few hundred bytes whose page repaints the whole page `fills` times: each fill costs poppler
    tens of milliseconds at 150 DPI (1,000 fills took ~24 s on a 2-core dev box), so it stands in for a flate bomb."""
    stream = zlib.compress(b"0 0 612 792 re f\n" * fills, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%b\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%b\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_slow_page_is_a_render_timeout(tmp_path: Path) -> None:
    pdf = tmp_path / "slow.pdf"
    pdf.write_bytes(_slow_pdf(1000))
    out = tmp_path / "out"
    out.mkdir()
    limits = RenderLimits(dpi=150, max_pixels=4_000_000, max_side=4096, max_pages=1, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(InputError) as excinfo:
        render_pdf(pdf, out, limits)
    assert time.monotonic() - started < 10  # poppler was stopped, not waited for
    assert excinfo.value.error.code == "render_timeout"
    assert "1 s" in str(excinfo.value) and "DOCFLOW_RENDER_TIMEOUT_S" in str(excinfo.value)
