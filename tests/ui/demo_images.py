"""Synthetic OCT B-scans and fundus photographs for screenshots and benchmarks.

They only need to look like what a clinician drops on the window (layered retina with
a foveal pit and cysts; an orange fundus with an optic disc and vessels); they are made
with numpy in a few milliseconds and carry no patient data.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def oct_bscan(seed: int = 0, size: tuple[int, int] = (768, 496), cysts: bool = True) -> bytes:
    """A grayscale OCT B-scan as PNG bytes."""
    rng = np.random.default_rng(seed)
    width, height = size
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None].astype(np.float32)
    centre = width / 2 + rng.uniform(-30, 30)
    pit = 38 * np.exp(-(((x - centre) / (width * 0.08)) ** 2))
    top = height * 0.35 + 10 * np.sin(x / width * 3.0) + pit
    image = rng.normal(18, 8, (height, width)).astype(np.float32)
    bands = ((0, 6, 230), (10, 22, 120), (28, 44, 70), (50, 58, 150), (70, 80, 245), (84, 96, 200))
    thickness = 1.0 - 0.35 * np.exp(-(((x - centre) / (width * 0.06)) ** 2))
    for start, end, level in bands:
        lo = top + start * thickness
        hi = top + end * thickness
        mask = (y >= lo) & (y < hi)
        image = np.where(mask, level + rng.normal(0, 18, (height, width)), image)
    below = y >= top + 96 * thickness
    image = np.where(below, 90 * np.exp(-(y - top - 96) / 60) + image * 0.6, image)
    if cysts:
        for _ in range(5):
            cx = centre + rng.uniform(-70, 70)
            cy = float(np.mean(top)) + rng.uniform(25, 55)
            rx, ry = rng.uniform(8, 18), rng.uniform(5, 11)
            inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
            image = np.where(inside, rng.normal(12, 4, (height, width)), image)
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "PNG")
    return buffer.getvalue()


def fundus(seed: int = 0, side: int = 640) -> bytes:
    """A colour fundus photograph as JPEG bytes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    c = side / 2
    r = np.hypot(x - c, y - c) / (side / 2)
    base = np.clip(1.0 - r**3, 0, 1)
    red = 200 * base + rng.normal(0, 4, base.shape)
    green = 95 * base + rng.normal(0, 3, base.shape)
    blue = 40 * base + rng.normal(0, 2, base.shape)
    dx, dy = c + side * 0.22, c - side * 0.02
    disc = np.exp(-(((x - dx) ** 2 + (y - dy) ** 2) / (2 * (side * 0.05) ** 2)))
    red, green, blue = red + 55 * disc, green + 120 * disc, blue + 70 * disc
    for k in range(8):
        angle = k * np.pi / 4 + rng.uniform(-0.2, 0.2)
        bend = rng.uniform(-0.8, 0.8)
        t = np.linspace(0.1, 1, 400)
        px = dx + np.cos(angle + bend * t) * t * side * 0.45
        py = dy + np.sin(angle + bend * t) * t * side * 0.45
        for i in range(0, 400, 2):
            xi, yi = int(px[i]), int(py[i])
            if 2 <= xi < side - 2 and 2 <= yi < side - 2:
                red[yi - 2 : yi + 2, xi - 2 : xi + 2] *= 0.93
                green[yi - 2 : yi + 2, xi - 2 : xi + 2] *= 0.85
                blue[yi - 2 : yi + 2, xi - 2 : xi + 2] *= 0.9
    rgb = np.stack([red, green, blue], axis=-1) * (r[..., None] < 1)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
