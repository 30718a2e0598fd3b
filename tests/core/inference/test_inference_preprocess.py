"""Every image mode becomes 8-bit RGB; 16-bit scans keep their contrast."""

from __future__ import annotations

import io
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from ophthai_desktop.core.errors import InvalidInput, PayloadTooLarge
from ophthai_desktop.core.inference.preprocess import UnreadablePixels, prepare_image


def test_sixteen_bit_grayscale_is_stretched_not_clipped() -> None:
    values = np.linspace(1000, 3000, 64 * 32).reshape(32, 64).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"

    rgb = prepare_image(image)

    pixels = np.asarray(rgb)
    assert rgb.mode == "RGB" and rgb.size == (64, 32)
    assert pixels.min() == 0 and pixels.max() == 255
    assert len(np.unique(pixels[..., 0])) > 200  # the ramp survives as a ramp
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    # Linear: the middle value lands in the middle.
    middle = pixels[..., 0].ravel()[np.argmin(np.abs(values.ravel().astype(int) - 2000))]
    assert 125 <= middle <= 130


def test_sixteen_bit_png_round_trip_keeps_its_range() -> None:
    values = np.full((20, 20), 1200, dtype=np.uint16)
    values[5:15, 5:15] = 2400
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    opened = Image.open(io.BytesIO(buffer.getvalue()))
    assert opened.mode in ("I;16", "I")

    pixels = np.asarray(prepare_image(opened))

    assert pixels[0, 0, 0] == 0 and pixels[10, 10, 0] == 255


@pytest.mark.parametrize("mode", ["I", "F"])
def test_wide_modes_are_stretched(mode: str) -> None:
    values = np.linspace(-50, 5000, 100).reshape(10, 10)
    image = Image.fromarray(values.astype(np.int32 if mode == "I" else np.float32))
    assert image.mode == mode

    pixels = np.asarray(prepare_image(image))

    assert pixels.min() == 0 and pixels.max() == 255


def test_flat_sixteen_bit_image_uses_the_full_range() -> None:
    image = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))

    pixels = np.asarray(prepare_image(image))

    assert (pixels == 127).all()


def test_rgba_is_composited_on_black() -> None:
    image = Image.new("RGBA", (4, 4), (200, 100, 50, 255))
    image.putpixel((0, 0), (255, 255, 255, 0))  # fully transparent white
    image.putpixel((1, 0), (200, 100, 50, 128))  # half transparent

    pixels = np.asarray(prepare_image(image))

    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert tuple(pixels[0, 2]) == (200, 100, 50)
    assert 95 <= pixels[0, 1, 0] <= 105


def test_palette_with_transparency() -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.info["transparency"] = 1

    pixels = np.asarray(prepare_image(image))

    assert (pixels == 0).all()


def test_palette_without_transparency() -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))

    assert tuple(np.asarray(prepare_image(image))[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize(
    ("mode", "color"),
    [
        ("L", 128),
        ("1", 1),
        ("CMYK", (0, 255, 255, 0)),
        ("LA", (128, 255)),
        ("YCbCr", (128, 128, 128)),
    ],
)
def test_other_modes_become_rgb(mode: str, color: object) -> None:
    image = Image.new(mode, (6, 5), color)  # type: ignore[arg-type]

    rgb = prepare_image(image)

    assert rgb.mode == "RGB" and rgb.size == (6, 5)


def test_cmyk_red_stays_red() -> None:
    pixels = np.asarray(prepare_image(Image.new("CMYK", (2, 2), (0, 255, 255, 0))))

    assert tuple(pixels[0, 0]) == (255, 0, 0)


def test_exif_rotation_is_applied() -> None:
    image = Image.new("RGB", (30, 10), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())

    rgb = prepare_image(Image.open(io.BytesIO(buffer.getvalue())))

    assert rgb.size == (10, 30)


def test_truncated_file_is_invalid_input() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="PNG")
    truncated = Image.open(io.BytesIO(buffer.getvalue()[:60]))

    with pytest.raises(InvalidInput):
        prepare_image(truncated)


def test_a_float_scan_with_missing_values_keeps_its_gray_scale() -> None:
    # Float TIFFs (OCTA maps) mark pixels without data as NaN: the rest of the image
    # keeps its scale instead of all turning black.
    values = np.linspace(0.0, 1.0, 100, dtype=np.float32).reshape(10, 10)
    values[0, 0] = np.nan
    values[0, 1] = np.inf
    values[0, 2] = -np.inf

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value" from numpy either
        pixels = np.asarray(prepare_image(Image.fromarray(values)))[..., 0]

    assert pixels[0, 0] == 0 and pixels[0, 1] == 255 and pixels[0, 2] == 0
    # Stretched from the lowest value there is (3/99) to the highest (1).
    assert pixels[0, 3] == 0 and pixels[9, 9] == 255
    assert pixels[2, 7] == 64  # a quarter of the way
    assert len(np.unique(pixels[1:])) == 90


def test_a_float_scan_with_no_values_at_all_is_black() -> None:
    values = np.full((4, 4), np.nan, dtype=np.float32)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = np.asarray(prepare_image(Image.fromarray(values)))

    assert (pixels == 0).all()


def test_a_large_sixteen_bit_scan_converts_in_a_few_bytes_a_pixel() -> None:
    # An 8000x8000 OCT export took 2.2 GB (float64 copies of every pixel) and seconds
    # for each of its thumbnail, its view and its analysis, at the same time.
    side = 1500
    values = np.random.default_rng(0).integers(500, 4000, (side, side)).astype(np.uint16)
    image = Image.fromarray(values)
    image.load()

    tracemalloc.start()
    try:
        rgb = prepare_image(image)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * side * side, f"{peak / (side * side):.1f} bytes a pixel"
    pixels = np.asarray(rgb)[..., 0]
    expected = np.rint((values.astype(np.float64) - values.min()) * 255.0 / np.ptp(values))
    assert (pixels == expected).all()  # the same linear stretch as before


@pytest.mark.parametrize("mode", ["I;16", "L", "F"])
def test_keep_gray_gives_grayscale_as_its_one_channel(mode: str) -> None:
    values = np.linspace(0, 200, 64 * 32).reshape(32, 64)
    image = Image.fromarray(values.astype(np.float32)).convert(mode)

    gray = prepare_image(image, keep_gray=True)

    assert gray.mode == "L"
    assert np.array_equal(np.asarray(gray), np.asarray(prepare_image(image))[..., 0])
    assert prepare_image(Image.new("RGB", (4, 4), (1, 2, 3)), keep_gray=True).mode == "RGB"


def _photo_jpeg(size: tuple[int, int], mode: str = "RGB", orientation: int = 1) -> bytes:
    """A fundus-like JPEG: a bright disc on a smooth background with fine grain, and a
    white block at its stored top-left corner to tell which way up it comes out."""
    width, height = size
    rng = np.random.default_rng(11)
    y, x = np.ogrid[:height, :width]
    radius = np.hypot((x - width / 2) / (width / 2), (y - height / 2) / (height / 2))
    disc = np.clip(1.1 - radius, 0, 1)[..., None] * np.array([200.0, 90.0, 30.0])
    pixels = disc + 20 + rng.normal(0, 4, (height, width, 1))
    pixels[: height // 4, : width // 4] = 255
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


def _fit_to(pixels: int) -> Callable[[tuple[int, int]], tuple[int, int]]:
    """A fitter like the processor's: about ``pixels`` pixels, sides multiples of 28."""

    def fit(size: tuple[int, int]) -> tuple[int, int]:
        scale = (pixels / (size[0] * size[1])) ** 0.5
        width, height = (max(28, round(side * scale / 28) * 28) for side in size)
        return width, height

    return fit


@pytest.mark.parametrize(
    ("mode", "orientation"), [("RGB", 1), ("RGB", 6), ("RGB", 8), ("L", 1), ("CMYK", 1)]
)
def test_a_large_jpeg_is_decoded_reduced_to_the_same_size_and_nearly_the_same_pixels(
    mode: str, orientation: int
) -> None:
    """The model reads ~0.26 MP; a 12-120 MP fundus JPEG is decoded at a DCT scale
    that leaves at least twice that, and gives the size a full decode gives, upright."""
    data = _photo_jpeg((2400, 1600), mode, orientation)
    fit = _fit_to(12544)
    full = Image.open(io.BytesIO(data))
    full.load()
    expected = prepare_image(full, fit=fit)
    upright = (1600, 2400) if orientation in (6, 8) else (2400, 1600)
    assert expected.size == fit(upright)

    opened = Image.open(io.BytesIO(data))
    reduced = prepare_image(opened, fit=fit)

    assert opened.size == (300, 200)  # decoded at 1/8: still over twice 140x84 (or 84x140)
    assert reduced.mode == "RGB" and reduced.size == expected.size
    difference = np.abs(np.asarray(reduced, np.int16) - np.asarray(expected, np.int16))
    assert difference.mean() < 1.5
    # The white block is where the full decode puts it: upright per the EXIF orientation.
    corner = {1: (0, 0), 6: (0, -1), 8: (-1, 0)}[orientation]
    assert np.asarray(reduced)[corner].min() > 230
    assert np.asarray(reduced)[tuple(-1 - c if c >= 0 else 0 for c in corner)].max() < 120
    if mode == "L":
        channels = np.asarray(reduced)
        assert (channels[..., 0] == channels[..., 1]).all()
    if mode == "CMYK":
        assert np.abs(np.asarray(reduced, np.int16) - np.asarray(expected, np.int16)).max() < 40


def test_a_jpeg_not_shrunk_by_half_is_decoded_in_full() -> None:
    data = _photo_jpeg((300, 200))
    opened = Image.open(io.BytesIO(data))

    rgb = prepare_image(opened, fit=_fit_to(300 * 200 // 3))

    assert opened.size == (300, 200)
    assert rgb.size == _fit_to(300 * 200 // 3)((300, 200))


def test_a_truncated_large_jpeg_decoded_reduced_is_still_refused() -> None:
    data = _photo_jpeg((2400, 1600))
    opened = Image.open(io.BytesIO(data[: len(data) * 9 // 10]))

    with pytest.raises(UnreadablePixels, match="truncated"):
        prepare_image(opened, fit=_fit_to(12544))


def test_pixels_pillow_will_not_decode_name_the_setting_that_raises_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TIFF's size is checked again as its pixels are read: refused then, the reason
    was Pillow's ("could be decompression bomb DOS attack"), which names no setting."""
    buffer = io.BytesIO()
    Image.new("RGB", (60, 60)).save(buffer, "TIFF")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 3,600 pixels: over twice it

    with pytest.raises(PayloadTooLarge) as refused:
        prepare_image(image)

    assert refused.value.message == (
        "The image has too many pixels to decode safely; raise the limit "
        "(OPHTHAI_MAX_IMAGE_PIXELS) to take it."
    )
