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


def tiff_volume_bytes(pages: int = 3, size: tuple[int, int] = (40, 30)) -> bytes:
    """A multi-page 16-bit TIFF, as OCT devices export a volume of B-scans."""
    frames = [Image.new("I;16", size, 1000 * (page + 1)) for page in range(pages)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()
