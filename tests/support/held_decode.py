"""An image whose decode waits until the test lets it go: an analysis held at a point
the test controls (inside the engine's lock), without mocking the engine."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class HeldDecode:
    image: Image.Image
    #: Set once the decode has begun (and waits).
    decoding: threading.Event
    #: Set by the test to let the decode go on.
    release: threading.Event


def held_at_decode(image: Image.Image, *, wait_s: float = 10) -> HeldDecode:
    """``image``, made to wait in its decode (``load``) for ``release``, ``wait_s`` at
    most."""
    decoding, release = threading.Event(), threading.Event()

    class SlowToDecode(Image.Image):
        def load(self) -> Any:
            decoding.set()
            release.wait(wait_s)
            return super().load()

    image.__class__ = SlowToDecode
    return HeldDecode(image, decoding, release)
