"""Image checks: the content decides, and every refusal says why."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from ophthai_desktop.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from ophthai_desktop.core.imaging import (
    MAX_BYTES_SETTING,
    MAX_PIXELS_SETTING,
    decode_data_url,
    inspect_image,
    too_large_message,
)
from ophthai_desktop.core.renditions import RenditionSpec, render
from ophthai_desktop.core.settings import Settings
from tests.conftest import make_settings
from tests.support.images import jpeg_bytes, png_bytes

LIMITS = {"max_bytes": 5_000_000, "max_pixels": 10_000_000}


def test_png_and_jpeg_are_described() -> None:
    info = inspect_image(png_bytes((40, 30)), **LIMITS)
    assert (info.format, info.media_type, info.width, info.height) == ("PNG", "image/png", 40, 30)
    assert inspect_image(jpeg_bytes(), **LIMITS).media_type == "image/jpeg"


def test_sixteen_bit_tiff_is_accepted() -> None:
    buffer = io.BytesIO()
    Image.new("I;16", (20, 20), 3000).save(buffer, "TIFF")
    assert inspect_image(buffer.getvalue(), **LIMITS).media_type == "image/tiff"


def test_empty_text_truncated_and_gif_are_refused() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        inspect_image(b"", **LIMITS)
    with pytest.raises(UnsupportedMedia):
        inspect_image(b"this is text, not a picture", **LIMITS)
    data = png_bytes((200, 200), (1, 2, 3))
    with pytest.raises(InvalidInput, match="damaged or incomplete"):
        inspect_image(data[: len(data) // 2], **LIMITS)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF  # one byte inside the image data: its CRC fails
    with pytest.raises(InvalidInput, match="damaged or incomplete"):
        inspect_image(bytes(damaged), **LIMITS)
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, "GIF")
    with pytest.raises(UnsupportedMedia, match="GIF"):
        inspect_image(gif.getvalue(), **LIMITS)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_a_damaged_image_s_reason_has_no_brackets_or_python_bytes(fmt: str) -> None:
    """Pillow's details came along in brackets ("image file is truncated (4 bytes not
    processed)", "broken PNG file (chunk b'\\xc0...')"): bytes as Python writes them,
    and brackets inside those the window and the watch folder's notes put around it."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, fmt)
    data = buffer.getvalue()
    for cut in (data[: len(data) * 2 // 3], data[: len(data) - 7]):
        with pytest.raises(InvalidInput) as refused:
            inspect_image(cut, **LIMITS)
        said = str(refused.value)
        assert said.startswith("the image is damaged or incomplete: "), said
        assert "(" not in said and "b'" not in said, said


def test_size_and_pixel_limits() -> None:
    with pytest.raises(PayloadTooLarge, match="the limit is 10 B"):
        inspect_image(png_bytes(), max_bytes=10, max_pixels=10_000)
    # A small file that would decode to far too many pixels (decompression bomb).
    bomb = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(bomb, "PNG")
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(PayloadTooLarge, match="pixels"):
        inspect_image(bomb.getvalue(), max_bytes=1_000_000, max_pixels=50_000_000)


def test_an_image_under_our_pixel_limit_is_taken_above_pillows() -> None:
    """Pillow calls anything over 89.5 million pixels a possible bomb; the default limit
    here is 120 million (a widefield montage), and images in between were refused as
    bombs."""
    big = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(big, "PNG")  # 100 million pixels, ~15 KB

    info = inspect_image(big.getvalue(), max_bytes=1_000_000, max_pixels=120_000_000)

    assert (info.width, info.height) == (10_000, 10_000)
    with pytest.raises(PayloadTooLarge, match="the limit is 90,000,000 pixels"):
        inspect_image(big.getvalue(), max_bytes=1_000_000, max_pixels=90_000_000)


def test_data_urls() -> None:
    raw = png_bytes()
    encoded = base64.b64encode(raw).decode()
    assert decode_data_url(f"data:image/png;base64,{encoded}", max_bytes=10**6) == raw
    assert decode_data_url(encoded, max_bytes=10**6) == raw
    with pytest.raises(UnsupportedMedia, match="text/plain"):
        decode_data_url(f"data:text/plain;base64,{encoded}", max_bytes=10**6)
    with pytest.raises(InvalidInput, match="base64"):
        decode_data_url("data:image/png;base64,@@@not-base64@@@", max_bytes=10**6)
    with pytest.raises(PayloadTooLarge):
        decode_data_url(encoded, max_bytes=10)


def test_a_refusal_says_what_to_do_about_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's trial: "the image is 27.3 MB; the limit is 26.2 MB" said what was
    wrong, not what to do. A limit is named with the setting that sets it, a file that
    is not an image with the formats that are taken."""
    with pytest.raises(UnsupportedMedia) as not_an_image:
        inspect_image(b"this is text, not a picture", **LIMITS)
    with pytest.raises(PayloadTooLarge) as too_many_bytes:
        inspect_image(png_bytes((60, 60)), max_bytes=10, max_pixels=10_000)
    with pytest.raises(PayloadTooLarge) as too_many_pixels:
        inspect_image(png_bytes((60, 60)), max_bytes=10**6, max_pixels=2500)
    # Over twice Pillow's own limit (at least ours): Pillow refuses it as it opens it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(PayloadTooLarge) as a_bomb:
        inspect_image(png_bytes((60, 60)), max_bytes=10**6, max_pixels=500)
    with pytest.raises(PayloadTooLarge) as a_large_data_url:
        decode_data_url(base64.b64encode(bytes(4096)).decode(), max_bytes=1024)

    assert not_an_image.value.message == (
        "the file is not an image that can be read; use PNG, JPEG, WebP, BMP or TIFF"
    )
    assert too_many_bytes.value.message.endswith("; the limit is 10 B (OPHTHAI_MAX_IMAGE_BYTES)")
    assert too_many_pixels.value.message == (
        "the image is 60x60 pixels; the limit is 2,500 pixels (OPHTHAI_MAX_IMAGE_PIXELS)"
    )
    assert a_bomb.value.message == (
        "the image has too many pixels to decode safely; the limit is 500 pixels "
        "(OPHTHAI_MAX_IMAGE_PIXELS)"
    )
    assert a_large_data_url.value.message.endswith("(OPHTHAI_MAX_IMAGE_BYTES)")


def test_the_settings_a_refusal_names_are_the_ones_that_set_the_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MAX_BYTES_SETTING, "4096")
    monkeypatch.setenv(MAX_PIXELS_SETTING, "2500")

    settings = Settings(_env_file=None)

    assert (settings.max_image_bytes, settings.max_image_pixels) == (4096, 2500)


def test_a_size_that_rounds_to_the_limit_is_said_to_be_over_it() -> None:
    assert too_large_message(27_262_986, 26_214_400) == (
        "the image is 27.3 MB; the limit is 26.2 MB (OPHTHAI_MAX_IMAGE_BYTES)"
    )
    assert too_large_message(26_214_401, 26_214_400) == (
        "the image is over the limit of 26.2 MB (OPHTHAI_MAX_IMAGE_BYTES)"
    )
    assert too_large_message(None, 1000) == (
        "the image is over the limit of 1.0 KB (OPHTHAI_MAX_IMAGE_BYTES)"
    )


def test_the_configured_pixel_limit_reaches_pillow_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker opens stored images with Pillow, which refuses anything over twice its
    own limit (179 million pixels) whatever the clinic allows."""
    from ophthai_desktop.bootstrap import build_application

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # put back after
    application = build_application(make_settings(tmp_path, max_image_pixels=400_000_000))
    try:
        assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= 400_000_000
    finally:
        application.close()


def test_an_image_too_elongated_for_the_model_is_refused() -> None:
    """Qwen2.5-VL's processor refuses a long side over 200 times the short one: such an
    image is refused where it comes in, not when its analysis runs."""
    for size in ((201, 1), (2, 403)):
        with pytest.raises(InvalidInput, match="more than 200 times its short side") as refused:
            inspect_image(png_bytes(size), max_bytes=10**6, max_pixels=10**6)
        assert f"{size[0]}x{size[1]} pixels" in refused.value.message
        assert not isinstance(refused.value, PayloadTooLarge | UnsupportedMedia)
    assert inspect_image(png_bytes((200, 1)), max_bytes=10**6, max_pixels=10**6).width == 200


def _tiff_pages(*values: int, reduced: tuple[int, ...] = ()) -> bytes:
    """A TIFF of one gray page per value; pages in ``reduced`` are marked as previews."""
    pages = [
        Image.new("L", (20, 15) if index in reduced else (40, 30), value)
        for index, value in enumerate(values)
    ]
    buffer = io.BytesIO()
    pages[0].save(
        buffer,
        "TIFF",
        save_all=True,
        append_images=pages[1:],
        tiffinfo={254: 0},
    )
    if not reduced:
        return buffer.getvalue()
    # Pillow writes one tiffinfo for every page: mark the previews by rewriting their tag.
    return _mark_reduced(buffer.getvalue(), reduced)


def _mark_reduced(data: bytes, reduced: tuple[int, ...]) -> bytes:
    import struct

    out = bytearray(data)
    endian = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(endian + "I", data, 4)
    page = 0
    while offset:
        (count,) = struct.unpack_from(endian + "H", data, offset)
        for entry in range(count):
            at = offset + 2 + 12 * entry
            (tag,) = struct.unpack_from(endian + "H", data, at)
            if tag == 254 and page in reduced:
                struct.pack_into(endian + "I", out, at + 8, 1)  # NewSubfileType: reduced
        (offset,) = struct.unpack_from(endian + "I", data, offset + 2 + 12 * count)
        page += 1
    return bytes(out)


def test_a_multi_page_tiff_volume_is_refused_with_the_reason() -> None:
    volume = _tiff_pages(10, 128, 250)
    assert Image.open(io.BytesIO(volume)).n_frames == 3

    with pytest.raises(InvalidInput, match="holds 3 images") as refused:
        inspect_image(volume, **LIMITS)

    assert "its own file" in str(refused.value)


def test_a_tiff_with_reduced_resolution_previews_is_taken() -> None:
    # Cameras add a small preview page to the full image; it is not a second scan.
    data = _tiff_pages(128, 40, reduced=(1,))
    opened = Image.open(io.BytesIO(data))
    opened.seek(1)
    assert opened.n_frames == 2 and opened.tag_v2[254] == 1

    info = inspect_image(data, **LIMITS)

    assert (info.width, info.height) == (40, 30)


def test_a_jpeg_with_extra_pictures_is_a_jpeg() -> None:
    # Phones and stereo cameras write JPEGs carrying more pictures (MPF), which Pillow
    # calls MPO: refusing them as "MPO images" named a format the user never chose.
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(
        buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (20, 15))]
    )

    info = inspect_image(buffer.getvalue(), **LIMITS)

    assert (info.format, info.media_type, info.width, info.height) == (
        "JPEG",
        "image/jpeg",
        40,
        30,
    )


@pytest.mark.parametrize("kept", [0.9, 0.95, 0.99, "all but the end marker"])
def test_a_large_jpeg_cut_short_near_its_end_is_refused(kept: float | str) -> None:
    """A JPEG is checked decoded at 1/8 scale, which still reads its whole compressed
    stream: a copy cut off in its last tenth (a watch-folder file still being written)
    is refused as a full decode refused it."""
    import numpy as np

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((1600, 1200)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    cut = data[:-2] if isinstance(kept, str) else data[: int(len(data) * kept)]

    with pytest.raises(InvalidInput, match=r"damaged or incomplete: .*truncated"):
        inspect_image(cut, **LIMITS)
    assert inspect_image(data, **LIMITS).width == 1600


def test_checking_an_image_leaves_the_process_warning_filters_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`warnings.catch_warnings()` is not thread-safe before Python 3.14: the watch
    folder's check leaving it put back the filters of the moment it entered, undoing
    what FastAPI, building a route on another thread meanwhile, had set (a flaky
    warning-as-error in the tests). The checks must not swap the filters at all."""

    def swapped(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image check swapped the process's warning filters")

    big = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(big, "PNG")  # above Pillow's own limit
    stored = tmp_path / "big.png"
    stored.write_bytes(big.getvalue())
    monkeypatch.setattr(warnings, "catch_warnings", swapped)

    inspect_image(big.getvalue(), max_bytes=1_000_000, max_pixels=120_000_000)
    inspect_image(jpeg_bytes(), max_bytes=1_000_000, max_pixels=120_000_000)
    render(stored, RenditionSpec(format="png", max_side=64), max_pixels=120_000_000)


def test_an_image_over_the_limit_is_refused_without_a_warning_on_stderr(tmp_path: Path) -> None:
    """Outside the tests (default warning filters), an image refused for its pixels
    says so once, as the refusal, not also as Pillow's bomb warning in the log."""
    big = tmp_path / "big.png"
    Image.new("1", (11_000, 11_000)).save(big, "PNG")  # 121 million pixels
    script = (
        "import sys\n"
        "from ophthai_desktop.core.errors import PayloadTooLarge\n"
        "from ophthai_desktop.core.imaging import inspect_image\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "try:\n"
        "    inspect_image(data, max_bytes=10_000_000, max_pixels=120_000_000)\n"
        "except PayloadTooLarge as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(big)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert "the limit is 120,000,000 pixels" in done.stdout
    assert done.stderr == ""
