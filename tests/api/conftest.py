"""API fixtures: the app factory's TestClient over fresh services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.worker import InferenceWorker
from tests.support.http import LoopbackClient
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
