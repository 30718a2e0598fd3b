"""Recognising and checking image content: the content decides, never a file name.

Used by every way an image enters the application (drop, API upload, data URL, watch
folder) so that all of them refuse the same things with the same messages.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ophthai_desktop.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from ophthai_desktop.core.units import format_bytes

#: Pillow format name → media type, for the formats a clinic's devices write.
ACCEPTED_FORMATS: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}

ACCEPTED_MEDIA_TYPES = frozenset(ACCEPTED_FORMATS.values())

#: The accepted formats as their makers spell them, for the refusals that list them.
_SPELLED = [{"WEBP": "WebP"}.get(name, name) for name in ACCEPTED_FORMATS]

#: What a refusal of a file for its type says to send instead.
USE_AN_ACCEPTED_FORMAT = f"use {', '.join(_SPELLED[:-1])} or {_SPELLED[-1]}"

#: The settings that set the limits an image is checked against, as a refusal names
#: them (as an environment variable or a line of the settings file): the one who reads
#: it learns what to raise, where the limit is too low for the clinic's images.
MAX_BYTES_SETTING = "OPHTHAI_MAX_IMAGE_BYTES"
MAX_PIXELS_SETTING = "OPHTHAI_MAX_IMAGE_PIXELS"

#: Pillow's name for a JPEG that carries more pictures (MPF: phones' depth or gain maps,
#: stereo cameras' second view). It is a JPEG to the user and to every reader; the first
#: picture, the primary one, is what the viewer and the model use.
_JPEG_WITH_MORE_PICTURES = "MPO"

#: TIFF ``NewSubfileType`` (tag 254) bit 0: the page is a reduced-resolution copy (a
#: preview) of another page, not an image of its own.
_REDUCED_RESOLUTION = 1

#: Qwen2.5-VL's image processor (OctoMed's) refuses an image whose long side is more
#: than this many times its short side (its ``smart_resize``). Such an image is refused
#: where it comes in, with the reason, rather than filed with an analysis that can only
#: fail: the clinician crops or pads it, and nothing is filed under a patient that the
#: app's one purpose for it (the analysis) cannot use.
MAX_ASPECT_RATIO = 200

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?),", re.ASCII)


@dataclass(frozen=True)
class ImageInfo:
    """What decoding an image told us."""

    format: str
    media_type: str
    width: int
    height: int
    mode: str
    size_bytes: int


def too_large_message(size: int | None, max_bytes: int, what: str = "image") -> str:
    """Why an image (or ``what``) of ``size`` bytes (None: not known) is refused, in
    figures that differ: a size that rounds to the limit is said to be over it. The
    limit is named with the setting that sets it (:data:`MAX_BYTES_SETTING`)."""
    limit = format_bytes(max_bytes)
    said = format_bytes(size) if size is not None else limit
    if said == limit:
        return f"the {what} is over the limit of {limit} ({MAX_BYTES_SETTING})"
    return f"the {what} is {said}; the limit is {limit} ({MAX_BYTES_SETTING})"


def too_many_pixels_message(width: int, height: int, max_pixels: int, what: str = "image") -> str:
    """Why an image (or ``what``) of ``width`` x ``height`` pixels is refused, with the
    limit and the setting that sets it (:data:`MAX_PIXELS_SETTING`)."""
    return (
        f"the {what} is {width}x{height} pixels; the limit is {max_pixels:,} pixels "
        f"({MAX_PIXELS_SETTING})"
    )


def too_many_pixels_to_decode_message(max_pixels: int | None, what: str = "image") -> str:
    """Why an image (or ``what``) that Pillow would not decode (a decompression bomb) is
    refused: more pixels than twice Pillow's limit, which :func:`allow_pillow_pixels`
    raised to ours, so more than ours. Said with our limit where the caller knows it and
    the setting that raises it (:data:`MAX_PIXELS_SETTING`): Pillow's own words name its
    limit, which no setting names, and told nobody what to change."""
    if max_pixels is None:
        limit = f"raise the limit ({MAX_PIXELS_SETTING}) to take it"
    else:
        limit = f"the limit is {max_pixels:,} pixels ({MAX_PIXELS_SETTING})"
    return f"the {what} has too many pixels to decode safely; {limit}"


def fits_the_model(width: int, height: int) -> bool:
    """Whether the model's processor takes an image of this shape (its aspect ratio)."""
    return max(width, height) <= MAX_ASPECT_RATIO * min(width, height)


def too_elongated_message(width: int, height: int) -> str:
    """Why an image of this shape is refused (see :data:`MAX_ASPECT_RATIO`)."""
    return (
        f"the image is {width}x{height} pixels: its long side is more than "
        f"{MAX_ASPECT_RATIO} times its short side, which the model cannot read. Crop it "
        "(or pad it) to a less elongated shape and add it again"
    )


# Pillow warns about an image from its own pixel limit up to twice it (then refuses it).
# Every image we open is checked against our own limit, to which allow_pillow_pixels
# raises Pillow's, before a pixel is decoded, so the warning tells nothing our check does
# not: it is silenced once, here, for the process. `warnings.catch_warnings()` around
# each open is not thread-safe before Python 3.14: a thread leaving it puts back the
# filters as they were when it entered, undoing what another thread (FastAPI building a
# route, say) set or cleared in between.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def allow_pillow_pixels(max_pixels: int) -> None:
    """Raise Pillow's decompression-bomb limit to ``max_pixels`` where that is higher.

    Pillow refuses to open an image of more than twice its own limit (89.5 million
    pixels, so 179 million) and warns above it; without this, images between 89.5
    million pixels and the 120 million allowed by default were refused as bombs. Called
    at start with the configured limit (the worker opens stored images too) and by each
    check. Only ever raised, to the largest limit asked for (a plain assignment: safe
    across threads)."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def inspect_image(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Check ``data`` is a whole, undamaged image and describe it, or say why it is
    refused.

    A PNG is checked chunk by chunk: every chunk's length and CRC-32 (the image data's
    included) up to the end marker, which catches a truncated or damaged file without
    inflating its pixels (about 0.2 ms instead of 2 ms for 1 MB; the watch folder's
    bursts depend on it). Only a file written with valid checksums around an invalid
    compressed stream gets past it; such a file fails when the model's preprocessing
    decodes it, and the job says why. A JPEG is decoded at 1/8 scale, which still reads
    its whole compressed stream, so a truncated one fails as in a full decode (120 MP:
    0.27 s and +8 MB instead of 0.69 s and +460 MB). Every other format is decoded in
    full.

    Raises:
        PayloadTooLarge: more than ``max_bytes`` bytes or ``max_pixels`` pixels
            (a decompression bomb is refused before its pixels are decoded).
        UnsupportedMedia: not an image, or an image type we do not accept.
        InvalidInput: an image that is empty, truncated or corrupt, or too elongated
            for the model to read (:data:`MAX_ASPECT_RATIO`).
    """
    if not data:
        raise InvalidInput("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PayloadTooLarge(too_large_message(len(data), max_bytes))
    allow_pillow_pixels(max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").upper()
            if fmt == _JPEG_WITH_MORE_PICTURES:
                fmt = "JPEG"
            width, height = image.size
            if fmt not in ACCEPTED_FORMATS:
                raise UnsupportedMedia(
                    f"{fmt or 'this'} images are not accepted; {USE_AN_ACCEPTED_FORMAT}"
                )
            if width * height > max_pixels:
                raise PayloadTooLarge(too_many_pixels_message(width, height, max_pixels))
            if not fits_the_model(width, height):
                raise InvalidInput(too_elongated_message(width, height))
            if fmt == "TIFF":
                _refuse_a_volume(image)
            mode = image.mode
            if fmt == "PNG":
                image.verify()  # every chunk's CRC, up to IEND
            elif fmt == "JPEG":
                # At 1/8 scale: the whole entropy-coded stream is still read, so a
                # truncated file still fails, without holding every pixel.
                image.draft(mode, (max(1, width // 8), max(1, height // 8)))
                image.load()
            else:
                image.load()  # decode every pixel: truncated files fail here
    except (UnsupportedMedia, PayloadTooLarge, InvalidInput):
        raise
    except UnidentifiedImageError as exc:
        raise UnsupportedMedia(
            f"the file is not an image that can be read; {USE_AN_ACCEPTED_FORMAT}"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(too_many_pixels_to_decode_message(max_pixels)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"the image is damaged or incomplete: {pillow_reason(exc)}") from exc
    return ImageInfo(
        format=fmt,
        media_type=ACCEPTED_FORMATS[fmt],
        width=width,
        height=height,
        mode=mode,
        size_bytes=len(data),
    )


#: The details Pillow puts in brackets after its reason ("image file is truncated (4
#: bytes not processed)", "broken PNG file (chunk b'\\xc0\\xd47\\r')"): bytes as Python
#: writes them, and brackets inside the brackets the window and the watch folder's notes
#: put around a reason.
_PILLOW_DETAIL = re.compile(r"\s*\([^()]*\)\s*$")


def pillow_reason(exc: BaseException) -> str:
    """Pillow's reason for refusing an image, without its bracketed details (said so
    wherever a reason goes: the image check, the worker's, a rendition's)."""
    text = str(exc).strip()
    return _PILLOW_DETAIL.sub("", text) or text or type(exc).__name__


def _refuse_a_volume(image: Image.Image) -> None:
    """Refuse a TIFF of more than one full-size page (a volume of B-scans).

    The viewer and the model would use its first page only, and a volume's first
    B-scan is rarely the one a clinician means (it is often an edge of the volume), so
    analysing it as "the scan" would mislead. Pages marked as reduced-resolution
    previews are not counted. Reads the pages' tags only, not their pixels.
    """
    pages = getattr(image, "n_frames", 1)
    if pages <= 1:
        return
    full_size = 0
    for page in range(pages):
        image.seek(page)
        tags = getattr(image, "tag_v2", {})
        if not int(tags.get(254, 0)) & _REDUCED_RESOLUTION:
            full_size += 1
    image.seek(0)
    if full_size > 1:
        raise InvalidInput(
            f"the TIFF file holds {full_size} images (a volume of scans); one image is "
            "analysed at a time. Export the scan to analyse as its own file (PNG or "
            "single-page TIFF) and add that"
        )


def decode_data_url(value: str, *, max_bytes: int) -> bytes:
    """The bytes of a base64 image, given bare or as a ``data:image/...;base64,`` URL.

    Raises:
        UnsupportedMedia: a data URL whose declared type is not an image.
        InvalidInput: text that is not base64.
        PayloadTooLarge: more than ``max_bytes`` once decoded.
    """
    text = value.strip()
    match = _DATA_URL.match(text)
    if match:
        declared = (match.group("type") or "").lower()
        if declared and not declared.startswith("image/"):
            raise UnsupportedMedia(f"a data URL of type {declared} is not an image")
        if ";base64" not in (match.group("params") or "").lower():
            raise InvalidInput("only base64 data URLs are accepted")
        text = text[match.end() :]
    elif text.startswith("data:"):
        raise InvalidInput("the data URL is malformed")
    if (len(text) * 3) // 4 > max_bytes + 3:
        raise PayloadTooLarge(
            f"the image is larger than the limit of {format_bytes(max_bytes)} ({MAX_BYTES_SETTING})"
        )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("the image is not valid base64") from exc
