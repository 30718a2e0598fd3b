"""Turn any image Pillow opens into the 8-bit RGB image the model reads.

OCT devices write 16-bit grayscale TIFF/PNG whose values use a small part of the
range; converting those with Pillow's ``convert("RGB")`` clips everything above 255 to
white. Here they are stretched from their own minimum to maximum instead, the window a
viewer shows. Transparent pixels are composited on black, the background of OCT and
fundus images, so a transparent border does not read as a bright structure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageFile, ImageOps

from ophthai_desktop.core.errors import InvalidInput, PayloadTooLarge
from ophthai_desktop.core.imaging import too_many_pixels_to_decode_message

log = logging.getLogger(__name__)

#: ``(width, height)`` of an image → the ``(width, height)`` the model's processor will
#: resize it to (see ``InferenceEngine``); ``None`` leaves the size alone.
SizeFitter = Callable[[tuple[int, int]], tuple[int, int] | None]

#: Pillow modes holding more than 8 bits per pixel in one channel.
_WIDE_GRAY_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_FULL_RANGE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


class UnreadablePixels(InvalidInput):
    """The image's pixels cannot be decoded or converted: a damaged or truncated file
    (a JPEG handed over undecoded is decoded here)."""


def prepare_image(
    image: Image.Image,
    *,
    fit: SizeFitter | None = None,
    resample: int = Image.Resampling.BICUBIC,
    own_size: SizeFitter | None = None,
    keep_gray: bool = False,
) -> Image.Image:
    """Return ``image`` as an 8-bit RGB image, upright per its EXIF orientation.

    16-bit and 32-bit grayscale is rescaled linearly from its minimum to its maximum
    to 0..255 (a flat image by the mode's full range); alpha and palette transparency are
    composited on black; every other mode goes through Pillow's conversion. Multi-frame
    files give their current (first) frame.

    ``fit`` resizes the image (with ``resample``) to the size the model's processor
    would resize it to anyway, while it is still one channel where it is grayscale: a
    third of the work of resizing its RGB copy, and the same pixels, since RGB made from
    gray has three equal channels that Pillow resamples alike.

    A JPEG not yet decoded (``Image.open`` without ``load``) is decoded, where ``fit``
    shrinks it, at the smallest of the DCT scales 1/2, 1/4, 1/8 that still leaves at
    least twice the fitted size in each direction (as Pillow's ``thumbnail`` does with
    ``reducing_gap=2.0``), then resized as any other image: a 120 MP fundus photograph
    is not inflated in full for a model that reads 0.26 MP. The fitted size is that of
    the full image (after its EXIF rotation), so the model gets the same size as from a
    full decode; the pixels differ by about one level in 255.

    ``own_size`` is the size an image processor that resamples its own way
    (torchvision's) resizes an image to: an image it resizes to the fitted size itself
    is left at its size for it. Such a JPEG is still resized ahead (it is no longer at
    its full size), and so is an image whose own resize is not the fitted one (over the
    image budget, see :func:`~ophthai_desktop.core.inference.processor.within_budget`).

    ``keep_gray`` returns a grayscale image as the one 8-bit channel (mode ``L``) the
    RGB copy would repeat three times: the same picture, a third of the bytes (the API's
    PNG renditions).

    Raises:
        PayloadTooLarge: The image has more pixels than Pillow's decompression-bomb limit.
        UnreadablePixels: The pixels cannot be read or converted.
    """
    try:
        fitted = _draft_jpeg(image, fit) if fit is not None else None
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in _WIDE_GRAY_MODES:
            image = _stretch_to_8bit(image)
        if image.mode == "P":
            palette_mode = image.palette.mode if image.palette is not None else ""
            has_alpha = "transparency" in image.info or palette_mode == "RGBA"
            image = image.convert("RGBA" if has_alpha else "RGB")
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            image = _composite_on_black(image)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        if fit is not None:
            size = fitted if fitted is not None else fit(image.size)
            left_to_the_processor = (
                fitted is None and own_size is not None and own_size(image.size) == size
            )
            if size is not None and size != image.size and not left_to_the_processor:
                image = image.resize(size, resample=resample)
        if image.mode == "RGB" or (keep_gray and image.mode == "L"):
            return image
        return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        message = too_many_pixels_to_decode_message(None)  # the limit is the caller's
        raise PayloadTooLarge(f"{message[0].upper()}{message[1:]}.", field="image") from exc
    except (OSError, ValueError) as exc:
        raise UnreadablePixels(f"The image cannot be read as pixels: {exc}", field="image") from exc


#: EXIF orientations that turn the image a quarter turn: its width and height swap.
_QUARTER_TURNS = {5, 6, 7, 8}


def upright_size(image: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of ``image`` turned upright per its EXIF orientation, as
    :func:`prepare_image` returns it (before any resize); its size where the EXIF data
    cannot be read (``prepare_image`` then says why)."""
    width, height = image.size
    try:
        turned = image.getexif().get(0x0112) in _QUARTER_TURNS
    except (OSError, ValueError, SyntaxError):
        return width, height
    return (height, width) if turned else (width, height)


def _draft_jpeg(image: Image.Image, fit: SizeFitter) -> tuple[int, int] | None:
    """Have a JPEG not yet decoded decode at a reduced DCT scale, no less than twice
    the size ``fit`` gives its upright full size; that size, or None where nothing was
    reduced (another format, decoded already, or not shrunk by half or more)."""
    if image.format not in ("JPEG", "MPO") or not isinstance(image, ImageFile.ImageFile):
        return None
    if len(image.tile) != 1:  # decoded already
        return None
    width, height = image.size
    upright = upright_size(image)
    fitted = fit(upright)
    if fitted is None:
        return None
    wide, high = fitted if upright == image.size else (fitted[1], fitted[0])
    if width < 4 * wide or height < 4 * high:  # not even the 1/2 scale leaves twice
        return None
    # The mode is kept: draft("L") would make a colour JPEG gray.
    if image.draft(image.mode, (2 * wide, 2 * high)) is None:
        return None
    return fitted


def _stretch_to_8bit(image: Image.Image) -> Image.Image:
    """Stretch one wide gray channel linearly from its minimum to its maximum.

    16-bit pixels go through a 65,536-entry table, a few bytes a pixel (an 8000x8000
    OCT export took 2.2 GB as float64 copies). Float pixels that are not numbers (NaN:
    no data, as float OCTA maps mark it) are black, and infinities black or white; the
    scale comes from the finite ones.
    """
    import numpy as np

    pixels = np.asarray(image)
    if pixels.dtype.kind == "u" and pixels.dtype.itemsize == 2:
        levels = np.arange(65536, dtype=np.float64)
        table = _stretch(levels, float(pixels.min()), float(pixels.max()), image.mode)
        return Image.fromarray(table[pixels])
    values = pixels.astype(np.float32)  # the one copy; the rest is done in place
    finite = np.isfinite(values)
    if finite.all():
        low, high = float(values.min()), float(values.max())
    elif finite.any():
        low, high = float(values[finite].min()), float(values[finite].max())
        np.copyto(values, np.float32(low), where=np.isnan(values) | np.isneginf(values))
        np.copyto(values, np.float32(high), where=np.isposinf(values))
        values[np.isnan(pixels)] = low  # NaN is black even where the image is flat
    else:
        return Image.new("L", image.size, 0)
    return Image.fromarray(_stretch(values, low, high, image.mode))


def _stretch(values: Any, low: float, high: float, mode: str) -> Any:
    """``values`` (a float array, changed in place) mapped from low..high to 0..255."""
    import numpy as np

    if high > low:
        values -= low
        values *= 255.0 / (high - low)
    else:
        full = _FULL_RANGE.get(mode, 255.0)
        values[...] = min(max(low, 0.0), full) * 255.0 / full
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def _composite_on_black(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
