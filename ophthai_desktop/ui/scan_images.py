"""Scan pixels for the screen: decoding, thumbnails, brightness and contrast.

These run on pool threads (decoding a large fundus photograph takes a while); the
results are QImages, which may be made off the GUI thread (QPixmaps may not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

from ophthai_desktop.core.inference.preprocess import prepare_image
from ophthai_desktop.core.renditions import displayed

#: Longest side shown; larger scans are scaled down once, when decoded.
MAX_DISPLAY_SIDE = 4096


def decode(path: Path, max_side: int = MAX_DISPLAY_SIDE) -> np.ndarray:
    """The scan as an 8-bit RGB array (16-bit grayscale stretched, EXIF applied)."""
    with Image.open(path) as image:
        rgb = displayed(image, max_side, keep_gray=False)
        return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def thumbnail(path: Path, side: int) -> QImage:
    """A small preview of the scan."""
    with Image.open(path) as image:
        image.draft("RGB", (side * 2, side * 2))
        rgb = prepare_image(image)
        rgb.thumbnail((side, side), Image.Resampling.BILINEAR)
        return to_qimage(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)))


def adjust(pixels: np.ndarray, brightness: int, contrast: int) -> np.ndarray:
    """Brightness and contrast, both -100..100 (0 leaves the pixels as they are).

    Contrast scales about mid-grey by ``10 ** (contrast / 100)`` (0.1x to 10x);
    brightness adds up to ±128 levels. One lookup table, so it is fast on big scans.
    """
    if brightness == 0 and contrast == 0:
        return pixels
    levels = np.arange(256, dtype=np.float32)
    factor = 10.0 ** (contrast / 100.0)
    table = np.clip((levels - 128.0) * factor + 128.0 + brightness * 1.28, 0, 255)
    return table.astype(np.uint8)[pixels]


def to_qimage(pixels: np.ndarray) -> QImage:
    """An independent QImage copy of an RGB array."""
    height, width = pixels.shape[:2]
    image = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()
