"""A file dropped in the watch folder reaches WebSocket clients as ``patient_created``,
``scan_ingested``, ``analysis_queued`` and ``notification`` frames."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import WebSocketTestSession

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application
from tests.support.http import NOTIFICATION_KEYS, LoopbackClient
from tests.support.images import png_bytes
from tests.support.watch_folder import build_watch_app

FRAME_TIMEOUT_S = 10.0


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    application = build_watch_app(tmp_path)
    yield application
    application.close()


def frames_until(
    socket: WebSocketTestSession, wanted: set[str], pool: ThreadPoolExecutor
) -> dict[str, dict[str, Any]]:
    """Frames by event name until every wanted one has arrived (bounded)."""
    frames: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + FRAME_TIMEOUT_S
    while not wanted <= set(frames):
        left = deadline - time.monotonic()
        assert left > 0, f"missing frames {sorted(wanted - set(frames))}; saw {sorted(frames)}"
        frame = pool.submit(socket.receive_json).result(timeout=left)
        frames.setdefault(frame["event"], frame)
    return frames


def test_a_dropped_file_reaches_the_websocket(app: Application) -> None:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ws-receive")
    try:
        with (
            LoopbackClient(create_app(app)) as client,
            client.websocket_connect("/api/notifications/ws") as socket,
        ):
            frames_until(socket, {"connected"}, pool)
            app.watcher.start()
            (app.settings.resolved_watch_folder / "drop_OS_fundus.png").write_bytes(
                png_bytes((40, 40))
            )
            wanted = {"patient_created", "scan_ingested", "analysis_queued", "notification"}
            frames = frames_until(socket, wanted | {"ingest_finished"}, pool)
            patient = client.get(f"/api/patients/{frames['patient_created']['data']['id']}")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    created = frames["patient_created"]["data"]
    assert patient.status_code == 200 and patient.json()["name"] == created["name"]
    assert created["status"] == "Pending Analysis" and created["workflowStep"] == 1
    assert created["imageUrl"].startswith("http")
    note = frames["notification"]["data"]
    assert set(note) == NOTIFICATION_KEYS
    assert note["type"] == "info" and note["patientId"] == created["id"]
    assert "watch folder" in note["message"]
    assert frames["analysis_queued"]["data"]["patientId"] == created["id"]
    finished = frames["ingest_finished"]["data"]
    assert finished["outcome"] == "ingested" and finished["patientId"] == created["id"]
    assert finished["movedTo"] == "processed/drop_OS_fundus.png"


def test_the_watcher_state_reaches_the_websocket(app: Application) -> None:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ws-receive")
    try:
        with (
            LoopbackClient(create_app(app)) as client,
            client.websocket_connect("/api/notifications/ws") as socket,
        ):
            frames_until(socket, {"connected"}, pool)
            app.watcher.start()
            frame = frames_until(socket, {"watcher_state"}, pool)["watcher_state"]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert frame["data"]["state"] == "running" and frame["data"]["polling"] is True
    assert frame["data"]["usePolling"] is True  # as GET /api/watch-folder says it
