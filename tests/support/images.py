"""Small images made in memory for tests."""

from __future__ import annotations

import io

import numpy as np
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


def clinic_image_files() -> dict[str, bytes]:
    """Images as OCT, OCTA and fundus devices write them, not 8-bit RGB PNGs."""
    ramp = np.linspace(1000, 3000, 64 * 48).reshape(48, 64).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    palette = Image.new("P", (64, 48), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    float_map = np.linspace(0.0, 1.0, 64 * 48, dtype=np.float32).reshape(48, 64)
    float_map[:4] = np.nan
    made = {
        "16-bit PNG": (Image.fromarray(ramp), "PNG", {}),
        "16-bit TIFF": (Image.fromarray(ramp), "TIFF", {}),
        "EXIF JPEG": (Image.new("RGB", (96, 32), (180, 90, 40)), "JPEG", {"exif": exif}),
        "CMYK JPEG": (Image.new("CMYK", (64, 48), (0, 200, 200, 0)), "JPEG", {}),
        "palette PNG": (palette, "PNG", {"transparency": 0}),
        "LA PNG": (Image.new("LA", (64, 48), (200, 128)), "PNG", {}),
        "1-bit TIFF": (Image.new("1", (64, 48), 1), "TIFF", {"compression": "group4"}),
        "float TIFF": (Image.fromarray(float_map), "TIFF", {}),
        "MPO JPEG": (
            Image.new("RGB", (64, 48), (20, 120, 20)),
            "MPO",
            {"save_all": True, "append_images": [Image.new("RGB", (32, 24))]},
        ),
    }
    files = {}
    for name, (image, fmt, options) in made.items():
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        files[name] = buffer.getvalue()
    return files
