"""The image routes' display renditions: ``?format=png`` and ``?max_side=N``.

Without either parameter an image route serves the stored file as it is. With them it
serves :mod:`ophthai_desktop.core.renditions`' PNG, which a browser's ``<img>`` shows
whatever the stored format (a TIFF, a 16-bit OCT export), optionally scaled down for a
thumbnail.

Rendering is CPU work of up to a few seconds and hundreds of megabytes for the largest
scans: it runs on the API's pool threads (never on the event loop), at most
:data:`RENDITIONS_AT_ONCE` at a time, so that parallel requests neither exhaust memory
nor take every pool thread from the other routes; the others wait on the event loop,
holding no thread. Each image is at most the configured pixel limit
(``OPHTHAI_MAX_IMAGE_PIXELS``), which bounds what one rendition decodes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from ophthai_desktop.api.versions import if_none_match_names
from ophthai_desktop.core.renditions import (
    MAX_SIDE,
    Rendition,
    RenditionCache,
    RenditionSpec,
    render,
)

#: Renditions made at once; the API has four pool threads (``API_THREADS``).
RENDITIONS_AT_ONCE = 2

DisplayFormat = Annotated[
    Literal["png"] | None,
    Query(
        alias="format",
        description=(
            "`png`: an 8-bit PNG a browser shows, as the window's viewer and the model see "
            "the image (upright, 16-bit and float grayscale stretched, other modes as RGB), "
            "instead of the stored file. Implied by `max_side`."
        ),
    ),
]
MaxSide = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_SIDE,
        description=(
            f"Scale the PNG down to at most this many pixels on its longest side (1-{MAX_SIDE}), "
            "keeping its aspect ratio; a smaller image is not enlarged."
        ),
    ),
]


class Renditions:
    """Makes renditions for the image routes: a bounded number at once, the last ones
    kept in a small cache (thumbnails asked for again by a list or another client)."""

    def __init__(self, max_pixels: int, *, at_once: int = RENDITIONS_AT_ONCE) -> None:
        self.max_pixels = max_pixels
        self.cache = RenditionCache()
        self._at_once = at_once
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    async def response(
        self, request: Request, path: Path, cache_control: str, spec: RenditionSpec
    ) -> Response:
        """The rendition of the stored file ``path`` (a ``GET`` with its ``If-None-Match``
        naming it: 304), with an ETag of its own that names the parameters."""
        etag = f'"{spec.tag(path.name)}"'
        headers = {"ETag": etag, "Cache-Control": cache_control}
        sent = request.headers.getlist("if-none-match")
        if sent and if_none_match_names(", ".join(sent), etag):
            return Response(status_code=304, headers=headers)
        rendition = await self._rendition(path, spec)
        return Response(rendition.data, media_type=rendition.media_type, headers=headers)

    async def _rendition(self, path: Path, spec: RenditionSpec) -> Rendition:
        key = spec.tag(path.name)
        kept = self.cache.get(key)
        if kept is not None:
            return kept
        async with self._slots_of_this_loop():
            made: Rendition = await run_in_threadpool(self._make, path, spec, key)
            return made

    def _make(self, path: Path, spec: RenditionSpec, key: str) -> Rendition:
        """Pool thread: the rendition, unless another request made it meanwhile."""
        kept = self.cache.get(key)
        if kept is not None:
            return kept
        made = render(path, spec, max_pixels=self.max_pixels)
        self.cache.put(key, made)
        return made

    def _slots_of_this_loop(self) -> asyncio.Semaphore:
        """The semaphore of the running loop (a test client runs a loop per session;
        the server, one), made on the loop that uses it."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._loop, self._slots = loop, asyncio.Semaphore(self._at_once)
        return self._slots


def get_renditions(connection: HTTPConnection) -> Renditions:
    renditions: Renditions = connection.app.state.renditions
    return renditions


RenditionsDep = Annotated[Renditions, Depends(get_renditions)]


def rendition_spec(display_format: str | None, max_side: int | None) -> RenditionSpec | None:
    """What the parameters ask for; None: the stored file (neither was sent)."""
    if display_format is None and max_side is None:
        return None
    return RenditionSpec(format=display_format or "png", max_side=max_side)
