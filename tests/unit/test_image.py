from pathlib import Path

import pytest
from PIL import Image

from schemas.errors import InputError
from schemas.records import DocumentPage
from schemas.settings import RenderSettings
from tasks.preprocess.image import (
    NormalisedDocument,
    fit_to_budget,
    normalise_image,
)

LIMITS = RenderSettings(max_pixels=1_000_000, max_side=2048, max_decode_pixels=50_000_000)


def _file(page: DocumentPage) -> Path:
    assert page.path is not None
    return page.path


@pytest.mark.parametrize(
    ("size", "budget", "side", "expected"),
    [
        ((800, 600), 1_000_000, 4096, (800, 600)),  # never upscales
        ((4000, 3000), 1_200_000, 4096, (1264, 948)),
        ((10000, 100), 10**9, 2000, (2000, 20)),
    ],
)
def test_fit_to_budget_keeps_aspect(size: tuple[int, int], budget: int, side: int, expected: tuple[int, int]) -> None:
    w, h = fit_to_budget(*size, budget, side)
    assert (w, h) == expected
    assert w * h <= budget and max(w, h) <= side


def test_large_scan_is_resized_to_budget(sample_inbox: Path, tmp_path: Path) -> None:
    result = normalise_image(sample_inbox / "images" / "invoice2data_AmazonWebServices.png", tmp_path, LIMITS)
    (page,) = result.pages
    assert result.page_count == 1 and result.warnings == []
    assert page.width * page.height <= LIMITS.max_pixels
    assert abs(page.width / page.height - 2975 / 3850) < 0.01
    with Image.open(_file(page)) as img:
        assert img.mode == "RGB" and img.format == "JPEG"


def test_exif_orientation_is_applied(sample_inbox: Path, tmp_path: Path) -> None:
    source = sample_inbox / "images" / "photo_pillow_hopper_exif-orientation-6.jpg"
    (page,) = normalise_image(source, tmp_path, LIMITS).pages
    with Image.open(source) as raw, Image.open(_file(page)) as out:
        rotated = raw.convert("RGB").transpose(Image.Transpose.ROTATE_270)  # orientation 6 = rotate 90 CW
        # compare a coarse thumbnail: JPEG re-encoding changes pixels slightly, orientation changes them a lot
        a = rotated.resize((8, 8)).tobytes()
        b = out.resize((8, 8)).tobytes()
        assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a) < 12
        wrong = raw.convert("RGB").resize((8, 8)).tobytes()
        assert sum(abs(x - y) for x, y in zip(wrong, b, strict=True)) / len(a) > 12


def test_decompression_bomb_rejected_before_decoding(sample_inbox: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="image exceeds pixel limit"):
        normalise_image(sample_inbox / "images" / "bad_pillow_decompression_bomb-65535x66601.gif", tmp_path, LIMITS)


def test_our_decode_limit_applies_below_pillows(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(big)
    with pytest.raises(InputError, match=r"3000x3000 = 9 Mpx, limit 5 Mpx"):
        normalise_image(big, tmp_path, RenderSettings(max_pixels=1_000_000, max_side=2048, max_decode_pixels=5_000_000))


def test_truncated_jpeg_is_a_clear_failure(sample_inbox: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="corrupt image: file is truncated"):
        normalise_image(sample_inbox / "images" / "bad_pillow_truncated_jpeg.jpg", tmp_path, LIMITS)


def test_multipage_tiff_gives_one_page_per_frame(tmp_path: Path) -> None:
    tiff = tmp_path / "fax.tif"
    frames = [Image.new("L", (200, 300), color) for color in (0, 128, 255)]
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    result = normalise_image(tiff, tmp_path, LIMITS)
    assert result.page_count == 3
    assert [p.page_number for p in result.pages] == [1, 2, 3]
    assert result.warnings == []


def test_tiff_past_the_page_limit_keeps_its_page_count_and_warns(tmp_path: Path) -> None:
    tiff = tmp_path / "long.tif"
    frames = [Image.new("L", (16, 16), n * 8) for n in range(30)]
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    out.mkdir()
    limits = RenderSettings(max_pixels=1_000_000, max_side=2048, max_decode_pixels=50_000_000, max_pages=5)
    result = normalise_image(tiff, out, limits)
    assert isinstance(result, NormalisedDocument)
    assert result.page_count == 30
    assert [p.page_number for p in result.pages] == [1, 2, 3, 4, 5]
    assert sorted(f.name for f in out.iterdir()) == [f"p{n:05d}.jpg" for n in range(1, 6)]
    assert result.warnings == ["only the first 5 of 30 pages were processed (DOCFLOW_MAX_PAGES)"]


def test_palette_and_alpha_images_become_rgb(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.new("RGBA", (50, 40), (255, 0, 0, 128)).save(src)
    (page,) = normalise_image(src, tmp_path, LIMITS).pages
    with Image.open(_file(page)) as img:
        assert img.mode == "RGB" and img.size == (50, 40)
