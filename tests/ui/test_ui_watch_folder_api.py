"""The window follows a watch folder paused and resumed by an API client: one state,
whoever changes it."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from ophthai_desktop.api import create_app
from tests.api.test_api_watch_folder_control import build_routes
from tests.support.http import LoopbackClient
from tests.support.watch_folder import build_watch_app
from tests.ui.conftest import Maker


def test_the_window_follows_a_clients_pause_and_resume(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none", api_port=0)
    with LoopbackClient(create_app(application)) as client:
        build_routes(client)  # before the window starts the watcher
        gui = make_gui(application=application)
        status, pause = gui.window.status, gui.window.pause_watch_action
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running", timeout=10_000)
        assert not pause.isChecked()

        assert client.post("/api/watch-folder/pause").json()["state"] == "paused"
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: paused")
        assert pause.isChecked() and pause.isEnabled()

        # The window's Resume undoes the client's pause; the client reads it.
        pause.trigger()
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
        assert client.get("/api/watch-folder").json()["state"] == "running"

        # And the window's Pause is what the client reads, then resumes.
        pause.trigger()
        qtbot.waitUntil(lambda: client.get("/api/watch-folder").json()["state"] == "paused")
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: paused")
        assert client.post("/api/watch-folder/resume").json()["state"] == "running"
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
        assert not pause.isChecked()
