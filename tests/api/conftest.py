"""API fixtures: the app factory's TestClient over fresh services."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.api.server import ApiServer
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.worker import InferenceWorker
from tests.support.http import LoopbackClient
from tests.support.raw_http import StartServer
from tests.support.scripted_engine import DME, ScriptedEngine


@pytest.fixture
def client(sqlite_services: Application) -> Iterator[TestClient]:
    with LoopbackClient(create_app(sqlite_services)) as test_client:
        yield test_client


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine(DME)


@pytest.fixture
def ai_client(sqlite_services: Application, engine: ScriptedEngine) -> Iterator[TestClient]:
    """A client whose inference worker runs a scripted engine (no model needed)."""
    app = sqlite_services
    app.worker.stop()
    app.engine = engine  # type: ignore[assignment]
    app.worker = InferenceWorker(engine, app.jobs, app.bus)
    app.worker.start()
    with LoopbackClient(create_app(app)) as client:
        yield client
    app.worker.stop()


@pytest.fixture
def live_server() -> Iterator[StartServer]:
    """Starts real servers (uvicorn on a free loopback port, in its own thread) for an
    app, with the transport limits given; stops them after the test."""
    servers: list[ApiServer] = []

    def start(app: FastAPI, **limits: Any) -> ApiServer:
        server = ApiServer(app, "127.0.0.1", 0, **limits)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def full_image_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The image store's disk full: the file it writes an image into is one whose
    writes the kernel refuses with ENOSPC (``/dev/full``)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")

    def full_file(*_args: Any, **_kwargs: Any) -> tuple[int, str]:
        return os.open("/dev/full", os.O_WRONLY), str(tmp_path / "never-written")

    monkeypatch.setattr(tempfile, "mkstemp", full_file)
