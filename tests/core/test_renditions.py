"""Renditions of stored images (what the API's ``?format=png`` serves) and their cache."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ophthai_desktop.core.errors import InvalidInput, NotFound, PayloadTooLarge
from ophthai_desktop.core.renditions import (
    Rendition,
    RenditionCache,
    RenditionSpec,
    render,
)


def kept(size: int) -> Rendition:
    return Rendition(b"x" * size, "image/png", 1, 1)


def test_the_cache_keeps_the_last_used_up_to_its_size() -> None:
    cache = RenditionCache(max_bytes=800)
    for key in "abcd":
        cache.put(key, kept(100))  # at most 800 // 8 = 100 bytes each
    assert cache.get("a") is not None  # a is used again: b is now the oldest

    for key in "efghi":
        cache.put(key, kept(100))

    assert [key for key in "abcdefghi" if cache.get(key) is None] == ["b"]
    assert cache.size_bytes == 800


def test_the_cache_does_not_keep_what_would_push_out_the_rest() -> None:
    cache = RenditionCache(max_bytes=800)
    cache.put("thumb", kept(100))

    cache.put("full size", kept(101))
    cache.put("thumb", kept(50))  # a key put again is counted once

    assert cache.get("full size") is None
    assert cache.get("thumb") == kept(50)
    assert cache.size_bytes == 50


def test_a_cmyk_jpeg_with_a_profile_comes_back_as_rgb_without_it(tmp_path: Path) -> None:
    path = tmp_path / "scan"
    Image.new("CMYK", (40, 30), (0, 200, 200, 0)).save(path, "JPEG", icc_profile=b"not sRGB")

    made = render(path, RenditionSpec(max_side=20), max_pixels=10_000)

    image = Image.open(io.BytesIO(made.data))
    assert (image.mode, image.size, (made.width, made.height)) == ("RGB", (20, 15), (20, 15))
    assert "icc_profile" not in image.info  # the CMYK profile would miscolour RGB pixels
    red, green, blue = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 100 and blue < 100


def test_a_long_thin_image_keeps_at_least_one_pixel(tmp_path: Path) -> None:
    path = tmp_path / "scan"
    Image.new("L", (400, 2), 128).save(path, "PNG")

    image = Image.open(io.BytesIO(render(path, RenditionSpec(max_side=16), max_pixels=10**6).data))

    assert image.size == (16, 1)


def test_a_missing_or_unreadable_file_says_so_without_its_path(tmp_path: Path) -> None:
    text = tmp_path / "abc"
    text.write_bytes(b"not an image at all")

    with pytest.raises(NotFound, match="missing from the store"):
        render(tmp_path / "gone", RenditionSpec(), max_pixels=10**6)
    with pytest.raises(InvalidInput, match="damaged or not an image") as refused:
        render(text, RenditionSpec(), max_pixels=10**6)
    assert str(tmp_path) not in refused.value.message


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_a_damaged_file_s_reason_leaves_out_pillow_s_bracketed_details(
    tmp_path: Path, fmt: str
) -> None:
    """Pillow's details came in brackets inside the reason's ("damaged or not an image
    (image file is truncated (81 bytes not processed))"), which the image check at
    ingest no longer says."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, fmt)
    data = buffer.getvalue()
    path = tmp_path / "scan"
    path.write_bytes(data[: len(data) * 2 // 3])

    with pytest.raises(InvalidInput) as refused:
        render(path, RenditionSpec(), max_pixels=10**6)

    assert "damaged or not an image (image file is truncated), so it" in refused.value.message


def test_a_stored_image_with_too_many_pixels_names_the_limit_and_its_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused by our count or by Pillow's (a decompression bomb), a rendition says the
    limit and the setting that raises it: Pillow's refusal said neither."""
    path = tmp_path / "scan.png"
    Image.new("RGB", (60, 60)).save(path)
    with pytest.raises(PayloadTooLarge) as counted:
        render(path, RenditionSpec(), max_pixels=100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 3,600 pixels: over twice it
    with pytest.raises(PayloadTooLarge) as a_bomb:
        render(path, RenditionSpec(), max_pixels=500)

    how = "; fetch the file as it is stored (without format or max_side)"
    assert counted.value.message == (
        f"the stored image is 60x60 pixels; the limit is 100 pixels (OPHTHAI_MAX_IMAGE_PIXELS){how}"
    )
    assert a_bomb.value.message == (
        "the stored image has too many pixels to decode safely; the limit is 500 pixels "
        f"(OPHTHAI_MAX_IMAGE_PIXELS){how}"
    )
