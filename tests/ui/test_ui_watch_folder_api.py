"""The window follows a watch folder paused and resumed by an API client: one state,
whoever changes it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pytestqt.qtbot import QtBot

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core import watcher as watcher_module
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.watcher import WatcherState, WatcherStatus
from ophthai_desktop.ui.controllers import settings as settings_module
from ophthai_desktop.ui.controllers import watch_folder as watch_folder_controller
from ophthai_desktop.ui.session import GuiSession
from tests.api.test_api_watch_folder_control import build_routes
from tests.support.http import LoopbackClient
from tests.support.watch_folder import build_watch_app, hang_the_share
from tests.ui.conftest import Maker


def test_the_window_follows_a_clients_pause_and_resume(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none", api_port=0)
    with LoopbackClient(create_app(application)) as client:
        build_routes(client)  # before the window starts the watcher
        gui = make_gui(application=application)
        status, pause = gui.window.status, gui.window.pause_watch_action
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
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


def test_the_windows_pause_and_resume_after_a_clients_are_in_the_log(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The window said 'watch folder paused/resumed' when its own last call differed:
    after a client's pause, the clinician's Resume (and Pause again after a client's
    resume) left no line, as if nobody had asked."""
    caplog.set_level(logging.INFO, logger=watch_folder_controller.__name__)
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none", api_port=0)
    with LoopbackClient(create_app(application)) as client:
        build_routes(client)  # before the window starts the watcher
        gui = make_gui(application=application)
        status, pause = gui.window.status, gui.window.pause_watch_action
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")

        def said(words: str) -> int:
            return sum(record.getMessage() == words for record in caplog.records)

        client.post("/api/watch-folder/pause")
        qtbot.waitUntil(lambda: pause.isChecked())
        pause.trigger()  # the window's Resume
        qtbot.waitUntil(lambda: said("watch folder resumed") == 1)

        pause.trigger()  # the window's Pause
        qtbot.waitUntil(lambda: said("watch folder paused") == 1)
        client.post("/api/watch-folder/resume")
        qtbot.waitUntil(lambda: not pause.isChecked())
        pause.trigger()  # the window's Pause again, after the client's resume
        qtbot.waitUntil(lambda: said("watch folder paused") == 2)
        assert said("watch folder resumed") == 1  # the client's resume is the API's line


def test_a_clients_pause_while_the_window_starts_the_watch_folder_is_kept(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window started the watch folder and then resumed it: a client's pause that
    came in between was undone without a word, the folder taking files in although a
    client had paused it."""
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none", api_port=0)
    with LoopbackClient(create_app(application)) as client:
        build_routes(client)  # before the window starts the watcher
        start = application.watcher.start
        client_saw: list[str] = []

        def start_then_a_client_pauses() -> WatcherStatus:
            status = start()
            client_saw.append(client.post("/api/watch-folder/pause").json()["state"])
            return status

        monkeypatch.setattr(application.watcher, "start", start_then_a_client_pauses)
        gui = make_gui(application=application)
        status, pause = gui.window.status, gui.window.pause_watch_action
        qtbot.waitUntil(lambda: bool(client_saw) and not gui.watch_folder.busy)

        assert client_saw == ["paused"]
        assert client.get("/api/watch-folder").json()["state"] == "paused"
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: paused")
        assert pause.isChecked() and pause.isEnabled()
        # The window's Resume still resumes it.
        pause.trigger()
        qtbot.waitUntil(lambda: client.get("/api/watch-folder").json()["state"] == "running")
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")


def test_a_try_again_that_hangs_on_a_share_reads_does_not_answer_in_the_status_bar(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch folder's own try again after a failure, held by a share that does not
    answer, left the status bar on "error; retrying in 0.2 s" for as long as it hung."""
    monkeypatch.setattr(watcher_module, "ANSWER_WITHIN_S", 0.2, raising=False)
    share = tmp_path / "nas" / "oct"
    application = build_watch_app(
        tmp_path / "watch", model_path=tmp_path / "none", api_enabled=False, watch_folder_path=share
    )
    gui = make_gui(application=application)
    status = gui.window.status
    qtbot.waitUntil(lambda: status.watcher.text().startswith("Watch folder: error; retrying"))
    share_held = hang_the_share(monkeypatch)
    try:
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: does not answer")
        assert "did not answer within 0.2 s" in status.watcher.toolTip()
        share.mkdir(parents=True)
    finally:
        share_held.answer.set()
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")


def test_the_windows_start_held_by_a_share_reads_as_not_answering_over_the_api(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window's status bar said "does not answer" while its start of the watch
    folder hung on a share; an API client read "stopped", and could not tell why."""
    monkeypatch.setattr(watch_folder_controller, "NOT_ANSWERING_AFTER_S", 0.3)
    share = tmp_path / "nas" / "oct"
    share.mkdir(parents=True)
    application = build_watch_app(
        tmp_path / "watch", model_path=tmp_path / "none", api_port=0, watch_folder_path=share
    )
    with LoopbackClient(create_app(application)) as client:
        build_routes(client)
        share_held = hang_the_share(monkeypatch)
        try:
            gui = make_gui(application=application)
            status = gui.window.status
            qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: does not answer")
            read = client.get("/api/watch-folder").json()
            assert read["state"] == "error"
            assert read["message"].startswith(f"the watch folder {share} did not answer"), read
        finally:
            share_held.answer.set()
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
        qtbot.waitUntil(lambda: client.get("/api/watch-folder").json()["state"] == "running")


def test_settings_saved_with_the_same_watch_folder_keep_a_clients_pause(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    """Settings saved with the watch folder written another way (the default folder
    named where it was left empty) set nothing up again, yet resumed the watch folder
    that an API client had paused: it took files in without a word."""
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none", api_port=0)
    with LoopbackClient(create_app(application)) as client:
        build_routes(client)  # before the window starts the watcher
        gui = make_gui(application=application)
        status, pause = gui.window.status, gui.window.pause_watch_action
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
        assert client.post("/api/watch-folder/pause").json()["state"] == "paused"
        qtbot.waitUntil(lambda: pause.isChecked())
        settings = application.settings
        assert settings.watch_folder_path is None

        gui.settings_controller.apply(
            settings_module.validate(
                settings, {"watch_folder_path": settings.resolved_watch_folder}
            )
        )
        qtbot.waitUntil(lambda: not gui.watch_folder.busy)

        assert client.get("/api/watch-folder").json()["state"] == "paused"
        assert status.watcher.text() == "Watch folder: paused" and pause.isChecked()


@contextmanager
def _a_window_and_a_client(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> Iterator[tuple[GuiSession, TestClient]]:
    """A window whose watch folder runs, and an API client of its services."""
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none", api_port=0)
    with LoopbackClient(create_app(application)) as client:
        build_routes(client)  # before the window starts the watcher
        gui = make_gui(application=application)
        qtbot.waitUntil(lambda: gui.window.status.watcher.text() == "Watch folder: running")
        yield gui, client


def test_a_clients_resume_after_the_windows_pause_is_kept_for_the_next_start(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, _own_settings_file: Path
) -> None:
    """The clinician paused, a client resumed and the window showed the folder running,
    but only the window's Pause was kept in the settings file: the next start was
    paused again, files waiting with nothing said."""
    settings_path = _own_settings_file
    with _a_window_and_a_client(qtbot, make_gui, tmp_path) as (gui, client):
        folder = gui.application.settings.resolved_watch_folder
        gui.window.pause_watch_action.trigger()  # the window's Pause
        qtbot.waitUntil(lambda: 'OPHTHAI_WATCH_FOLDER_PAUSED="true"' in _text(settings_path))

        assert client.post("/api/watch-folder/resume").json()["state"] == "running"
        qtbot.waitUntil(lambda: gui.window.status.watcher.text() == "Watch folder: running")
        qtbot.waitUntil(
            lambda: 'OPHTHAI_WATCH_FOLDER_PAUSED="false"' in _text(settings_path), timeout=5_000
        )
        gui.shutdown()

    # Started again, reading the settings file as the app does.
    settings = Settings(
        _env_file=settings_path,  # type: ignore[call-arg]
        data_dir=tmp_path / "again",
        api_enabled=False,
        model_path=tmp_path / "none",
        watch_folder_enabled=True,
        watch_folder_path=folder,
    )
    assert not settings.watch_folder_paused
    again = make_gui(application=build_application(settings))
    qtbot.waitUntil(lambda: not again.watch_folder.busy)
    assert again.application.watcher.state is WatcherState.RUNNING
    assert again.window.status.watcher.text().startswith("Watch folder: running")
    assert not again.window.pause_watch_action.isChecked()


def test_a_clients_pause_is_written_after_the_windows_resume_made_before_it(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, _own_settings_file: Path
) -> None:
    """A client's pause and the window's Resume are written in the order they were
    made, through the one writer the window's Pause and Resume use."""
    with _a_window_and_a_client(qtbot, make_gui, tmp_path) as (gui, client):
        pause = gui.window.pause_watch_action
        pause.trigger()  # the window's Pause
        pause.trigger()  # and Resume
        qtbot.waitUntil(lambda: not gui.watch_folder.busy)
        assert gui.window.status.watcher.text() == "Watch folder: running"
        assert client.post("/api/watch-folder/pause").json()["state"] == "paused"
        qtbot.waitUntil(lambda: pause.isChecked())
        qtbot.waitUntil(lambda: gui.application.settings.watch_folder_paused)
        qtbot.waitUntil(
            lambda: 'OPHTHAI_WATCH_FOLDER_PAUSED="true"' in _text(_own_settings_file),
            timeout=5_000,
        )


def _text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""
