"""Liveness: answered on the event loop without touching the database, so it stays
fast even while every worker thread is busy."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from ophthai_desktop import __version__
from ophthai_desktop.api import schemas as s
from ophthai_desktop.api.errors import documented

router = APIRouter(tags=["health"])


@router.get("/health", response_model=s.HealthPublic, responses=documented(403, 408, 431))
@router.get("/health/", response_model=s.HealthPublic, include_in_schema=False)
async def health(request: Request) -> s.HealthPublic:
    started: float = request.app.state.started_monotonic
    return s.HealthPublic(
        status="ok",
        version=__version__,
        uptime_seconds=round(time.monotonic() - started, 3),
        database=request.app.state.application.db.url.get_backend_name(),
    )
