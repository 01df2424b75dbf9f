from pathlib import Path

import pytest
from PIL import Image

from schemas.errors import InputError
from schemas.records import DocumentPage
from schemas.settings import RenderSettings
from tasks.preprocess.pdf import (
    PageGeometry,
    explain_poppler_error,
    page_dpi,
    plan_ranges,
    read_geometry,
    render_pdf,
)
from tests.support import hostile

LETTER = PageGeometry(1, 612, 792)
LIMITS = RenderSettings(dpi=150, max_pixels=4_000_000, max_side=4096, max_pages=200, chunk_pages=4)


def _file(page: DocumentPage) -> Path:
    assert page.path is not None
    return page.path


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
    dpi = page_dpi(strip, RenderSettings(dpi=150, max_pixels=10**9, max_side=2000, max_pages=1))
    assert 100 * dpi <= 2000


def test_ranges_split_by_chunk_size_and_dpi() -> None:
    pages = [PageGeometry(n, 612, 792) for n in range(1, 10)] + [PageGeometry(10, 8400, 8400)]
    ranges = plan_ranges(pages, LIMITS)
    assert [(r.first, r.last) for r in ranges] == [(1, 4), (5, 8), (9, 9), (10, 10)]
    assert ranges[-1].dpi < 150


def test_page_limit_stops_planning() -> None:
    pages = [PageGeometry(n, 612, 792) for n in range(1, 11)]
    limits = RenderSettings(dpi=72, max_pixels=10**7, max_side=9999, max_pages=3, chunk_pages=16)
    assert [(r.first, r.last) for r in plan_ranges(pages, limits)] == [(1, 3)]


def test_renders_mixed_page_sizes_at_requested_dpi(sample_inbox: Path, tmp_path: Path) -> None:
    result = render_pdf(sample_inbox / "documents" / "pdfjs_sizes-mixed-page-sizes.pdf", tmp_path, LIMITS)
    assert result.page_count == 3
    # 612x792, 649x323 and 792x612 pt at 150 DPI (poppler rounds 1352.1 px up)
    assert [(p.width, p.height) for p in result.pages] == [(1275, 1650), (1353, 673), (1650, 1275)]
    assert all(p.dpi == 150 for p in result.pages)
    with Image.open(_file(result.pages[0])) as img:
        assert img.format == "JPEG" and img.size == (1275, 1650)


def test_dpi_setting_changes_resolution(sample_inbox: Path, tmp_path: Path) -> None:
    limits = RenderSettings(dpi=72, max_pixels=4_000_000, max_side=4096, max_pages=10)
    result = render_pdf(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", tmp_path, limits)
    assert [(p.width, p.height) for p in result.pages] == [(595, 842)]


def test_page_limit_renders_first_pages_and_warns(sample_inbox: Path, tmp_path: Path) -> None:
    limits = RenderSettings(dpi=50, max_pixels=4_000_000, max_side=4096, max_pages=2)
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
    limits = RenderSettings(dpi=36, max_pixels=4_000_000, max_side=4096, max_pages=40, chunk_pages=8)
    result = render_pdf(corpus / "pdf" / "pypdfsf_GeoTopo-117pages.pdf", tmp_path, limits)
    assert result.page_count == 117
    assert [p.page_number for p in result.pages] == list(range(1, 41))


def test_resource_bomb_page_fits_the_budget(corpus: Path, tmp_path: Path) -> None:
    result = render_pdf(corpus / "pdf_bad" / "ocrmypdf_hugemono-35000px-jbig2.pdf", tmp_path, LIMITS)
    (page,) = result.pages
    assert page.width * page.height <= LIMITS.max_pixels
    assert page.dpi is not None and page.dpi < 20
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


def test_slow_page_is_a_render_timeout(tmp_path: Path) -> None:
    pdf = hostile.slow_page_pdf(tmp_path / "slow.pdf")
    out = tmp_path / "out"
    out.mkdir()
    limits = RenderSettings(dpi=150, max_pixels=4_000_000, max_side=4096, max_pages=1, timeout_s=1)
    with pytest.raises(InputError) as excinfo:
        render_pdf(pdf, out, limits)
    assert excinfo.value.error.code == "render_timeout"
    assert "1 s" in str(excinfo.value) and "DOCFLOW_RENDER_TIMEOUT_S" in str(excinfo.value)


def test_missing_poppler_is_a_setup_problem_not_the_files(
    sample_inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemas.errors import ToolMissingError

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ToolMissingError, match="pdfinfo is not installed"):
        render_pdf(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", tmp_path, LIMITS)
