"""Small images made in memory for tests."""

from __future__ import annotations

import io

from PIL import Image


def png_bytes(
    size: tuple[int, int] = (32, 24), color: tuple[int, int, int] = (90, 120, 30)
) -> bytes:
    """A small valid PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(size: tuple[int, int] = (32, 24)) -> bytes:
    """A small valid JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, "JPEG")
    return buffer.getvalue()
