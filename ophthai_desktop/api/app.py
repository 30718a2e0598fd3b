"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware

from ophthai_desktop import __version__
from ophthai_desktop.api.bodies import MultipartCompleteness
from ophthai_desktop.api.cursors import CursorCipher
from ophthai_desktop.api.errors import install_error_handlers
from ophthai_desktop.api.head_requests import HeadAsGet
from ophthai_desktop.api.hub import WebSocketHub
from ophthai_desktop.api.renditions import Renditions
from ophthai_desktop.api.routes import ai, audit, health, notifications, patients, watch_folder
from ophthai_desktop.api.routes.docs import install_docs
from ophthai_desktop.api.security import (
    ApiCORSMiddleware,
    BodySizeLimit,
    LoopbackHostGuard,
    ResponseHeaders,
)
from ophthai_desktop.api.websocket_paths import answer_websocket_handshakes_without_a_route
from ophthai_desktop.api.wire import event_data
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.events import Event

#: Threads that run the blocking route functions (database work).
API_THREADS = 4


def create_app(application: Application) -> FastAPI:
    """Build the API over already-built services (the desktop app shares them)."""
    settings = application.settings

    def frame_data(event: Event, base_url: str) -> dict[str, Any] | None:
        """A frame's data; a queued job's says why it waits, if it does (server loop)."""
        return event_data(event, base_url, waiting=application.worker.queued_waiting)

    hub = WebSocketHub(application.bus, frame_data)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Few worker threads: they share one interpreter lock, and more of them only
        # make each request (and the GUI in the same process) wait longer.
        anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS
        hub.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            await hub.stop()

    app = FastAPI(
        title="OphthAI Desktop API",
        version=__version__,
        description=(
            "The embedded REST/WebSocket API of OphthAI Desktop. With an API token "
            "configured, send `Authorization: Bearer <token>` (image URLs and the "
            "WebSocket also take `?token=`); without one, no credentials are needed. "
            "Every error body has `message` and `detail`; a 422's also lists `errors`."
        ),
        lifespan=lifespan,
        redirect_slashes=False,
        # Served by install_docs from local copies: FastAPI's pages load a CDN.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.application = application
    app.state.hub = hub
    app.state.renditions = Renditions(settings.max_image_pixels)
    app.state.cursor_cipher = CursorCipher(settings.cursor_key_path)
    app.state.watcher_calls = watch_folder.WatcherCalls()
    app.state.started_monotonic = time.monotonic()

    install_error_handlers(app)
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=5)
    app.add_middleware(LoopbackHostGuard)
    app.add_middleware(MultipartCompleteness)  # inside the size limit: that one's 413 first
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        ApiCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        # Retry-After: a page reads when to try again (a 503), Allow what a path takes
        # (a 405), and Link and X-Next-Cursor a list's next page, which CORS hides
        # otherwise.
        expose_headers=[
            "X-Total-Count",
            "ETag",
            "Location",
            "Retry-After",
            "Allow",
            "Link",
            "X-Next-Cursor",
        ],
    )
    app.add_middleware(ResponseHeaders)  # outside the guards: their refusals get them too
    app.add_middleware(HeadAsGet)  # added last: outermost, every layer sees the GET
    for module in (health, patients, notifications, ai, audit, watch_folder):
        app.include_router(module.router)
    answer_websocket_handshakes_without_a_route(app)
    install_docs(app, token_required=bool(settings.api_token))
    return app
