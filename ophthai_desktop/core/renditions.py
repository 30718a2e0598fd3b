"""Stored images made displayable: an 8-bit PNG of what the viewer and the model see.

A browser shows PNG, JPEG, WebP and BMP, but not TIFF, and shows a 16-bit OCT export's
values without the stretch they need (its values use a small part of the range: nearly
black). A rendition is the picture :func:`prepare_image` makes for the window's viewer
and for the model: upright per its EXIF orientation, 16-bit and float grayscale stretched
from its lowest to its highest value, palette, CMYK and the rest as RGB, transparency on
black; optionally scaled down (never up) to a longest side, as the viewer scales large
scans. It is encoded as PNG, which keeps those pixels exactly, without the stored file's
metadata (EXIF, ICC profile).

Rendering is CPU work (an 8000x8000 16-bit TIFF of OCT speckle: 3.5 s at full size,
0.4 s for a 256-pixel thumbnail, half a gigabyte at its peak): callers run it off any
event loop and bound how many run at once.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path

from cachetools import LRUCache
from PIL import Image, UnidentifiedImageError

from ophthai_desktop.core.errors import InvalidInput, NotFound, PayloadTooLarge
from ophthai_desktop.core.imaging import (
    allow_pillow_pixels,
    pillow_reason,
    too_many_pixels_message,
    too_many_pixels_to_decode_message,
)
from ophthai_desktop.core.inference.preprocess import prepare_image

#: The formats a rendition comes in, by the name a request gives, with their media type.
RENDITION_FORMATS: dict[str, str] = {"png": "image/png"}

#: The largest ``max_side`` a request may ask for: the window's viewer shows scans at
#: most this large too. A larger scan at full size is a rendition without ``max_side``.
MAX_SIDE = 4096

#: Changes whenever the pixels a rendition holds would change (a different stretch, a
#: different resampling): it is part of the renditions' ETags, so caches drop old ones.
RENDITION_VERSION = 1

#: zlib level of the PNG: the fastest. An 8000x8000 OCT export's speckle encodes in 2.4 s
#: instead of 3.4 s at Pillow's default level, for a file 2% larger.
_PNG_COMPRESS_LEVEL = 1

MISSING_MESSAGE = "the image file is missing from the store"
#: What a refusal of a rendition for its pixels offers instead (nothing is decoded).
FETCH_AS_STORED = "fetch the file as it is stored (without format or max_side)"


@dataclass(frozen=True)
class RenditionSpec:
    """What a request asked for: the format and, optionally, the longest side."""

    format: str = "png"
    max_side: int | None = None

    def tag(self, sha256: str) -> str:
        """A name for this rendition of the stored image ``sha256``, different for
        every parameter and :data:`RENDITION_VERSION` (the API quotes it as its ETag)."""
        side = self.max_side if self.max_side is not None else "full"
        return f"{sha256}.{self.format}.{side}.r{RENDITION_VERSION}"


@dataclass(frozen=True)
class Rendition:
    data: bytes
    media_type: str
    width: int
    height: int


def render(path: Path, spec: RenditionSpec, *, max_pixels: int) -> Rendition:
    """The rendition ``spec`` names of the stored image at ``path``.

    Runs on a thread that may block (the API's pool threads).

    Raises:
        NotFound: The file is not (or no longer) in the store.
        PayloadTooLarge: The image has more than ``max_pixels`` pixels (the configured
            image limit, lowered since it was stored): decoding it is refused, as
            taking it in would be.
        InvalidInput: The stored file is damaged or not an image.
    """
    media_type = RENDITION_FORMATS[spec.format]
    allow_pillow_pixels(max_pixels)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"{too_many_pixels_message(width, height, max_pixels, 'stored image')}"
                    f"; {FETCH_AS_STORED}"
                )
            shown = displayed(image, spec.max_side, keep_gray=True)
    except FileNotFoundError as exc:  # deleted since it was looked up
        raise NotFound(MISSING_MESSAGE) from exc
    except PayloadTooLarge:
        raise
    except UnidentifiedImageError as exc:  # its message names the file's path
        raise InvalidInput(_damaged()) from exc
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(
            f"{too_many_pixels_to_decode_message(max_pixels, 'stored image')}; {FETCH_AS_STORED}"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(_damaged(f" ({pillow_reason(exc)})")) from exc
    except InvalidInput as exc:  # prepare_image's: the pixels cannot be converted
        raise InvalidInput(_damaged(f" ({exc.message})")) from exc
    shown.info = {}  # no ICC profile (a CMYK one on RGB pixels), colour key or EXIF
    buffer = io.BytesIO()
    shown.save(buffer, "PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return Rendition(buffer.getvalue(), media_type, *shown.size)


def displayed(image: Image.Image, max_side: int | None, *, keep_gray: bool) -> Image.Image:
    """``image`` as the viewer shows it (see :func:`prepare_image`), scaled down to
    ``max_side`` (None: full size); a JPEG is decoded at a reduced scale where that
    suffices. Shared by the window's viewer and the API's renditions."""
    if max_side is not None:
        image.draft("RGB", (max_side, max_side))
    image.load()
    shown = prepare_image(image, keep_gray=keep_gray)
    if max_side is not None and max(shown.size) > max_side:
        shown.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return shown


def _damaged(detail: str = "") -> str:
    return (
        f"the scan's stored image file is damaged or not an image{detail}, so it cannot "
        "be shown; add the image to the patient again"
    )


class RenditionCache:
    """The renditions made last, up to ``max_bytes`` in all, the least recently used
    dropped first (cachetools' LRU, sized by bytes). One larger than ``max_bytes // 8``
    is not kept: a full-size rendition of a large scan would push out every thumbnail,
    which is what is asked for again (a list's pictures, several clients). Shared by the
    API's pool threads.
    """

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: LRUCache[str, Rendition] = LRUCache(max_bytes, getsizeof=_size)
        self._lock = threading.Lock()

    def get(self, key: str) -> Rendition | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, rendition: Rendition) -> None:
        if _size(rendition) > self.max_bytes // 8:
            return
        with self._lock:
            self._entries[key] = rendition

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return int(self._entries.currsize)


def _size(rendition: Rendition) -> int:
    return len(rendition.data)
