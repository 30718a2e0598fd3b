"""The image store that cannot be written for another reason than a full disk (its
folder made read-only while the app runs, or given to another account): the watch
folder's files wait in the folder, and its state says why, once, instead of "running"
with nothing said while the log repeats "storage failed" for every file at every try."""

from __future__ import annotations

import errno
import logging
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ophthai_desktop.core import watcher as watcher_module
from ophthai_desktop.core.errors import StorageError
from ophthai_desktop.core.services.ingest import FolderLayout, IngestService
from ophthai_desktop.core.watcher import WAITING_FOR_IMAGE_STORE, WatcherState
from tests.support.images import png_bytes
from tests.support.watch_folder import EventLog, build_watch_app, wait_until


def test_files_wait_in_the_folder_while_the_image_store_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    tries: list[int] = []

    def refused(*_args: Any, **_kwargs: Any) -> tuple[int, str]:
        # What a read-only images/ answers (the tests run as root, whom chmod never stops).
        tries.append(1)
        raise PermissionError(errno.EACCES, "Permission denied")

    try:
        log = EventLog(app.bus)
        layout = FolderLayout.under(app.watcher.folder)
        layout.ensure()
        with caplog.at_level(logging.INFO):
            monkeypatch.setattr(tempfile, "mkstemp", refused)
            for n in range(3):
                (layout.root / f"Jane Doe {n}.png").write_bytes(png_bytes((10, 10), (n, 6, 7)))
            assert app.watcher.start().state is WatcherState.RUNNING
            assert wait_until(lambda: len(tries) >= 12)  # each file tried again and again
            status = app.watcher.status
            assert (status.state, status.message) == (WatcherState.RUNNING, WAITING_FOR_IMAGE_STORE)
            assert len([p for p in layout.root.iterdir() if p.is_file()]) == 3
            assert not any(layout.failed.iterdir())
            said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert said == [
                f"{watcher_module.STORAGE_WAITS[WAITING_FOR_IMAGE_STORE]} (cannot write to the "
                f"image store: Permission denied; make {app.images.root} writable by the "
                "account running OphthAI)"
            ]  # once, with the reason and what to do, not per file and try
            monkeypatch.undo()  # the folder writable again
            monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
            finished = log.wait_finished(*(f"Jane Doe {n}.png" for n in range(3)))
        assert {f.outcome for f in finished.values()} == {"ingested"}
        assert wait_until(lambda: app.watcher.status.message == "")
        assert "Jane" not in caplog.text
    finally:
        app.close()


def test_a_file_whose_record_the_database_refused_is_not_said_to_wait_for_the_image_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The ingest's other StorageError (its record refused: a race on its hash whose
    # winner is gone): the image store was written, and the status bar must not send
    # anyone to images/ for it.
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    commit = IngestService._commit_grouped
    refusals: list[int] = []

    def refused_once(self: IngestService, item: Any) -> Any:
        if not refusals:
            refusals.append(1)
            raise StorageError("could not record the ingested file")
        return commit(self, item)

    monkeypatch.setattr(IngestService, "_commit_grouped", refused_once)
    states: list[str] = []
    app.bus.subscribe(lambda e: states.append(getattr(e, "message", "")))
    try:
        log = EventLog(app.bus)
        layout = FolderLayout.under(app.watcher.folder)
        layout.ensure()
        with caplog.at_level(logging.INFO):
            (layout.root / "Jane Doe.png").write_bytes(png_bytes((10, 10), (1, 6, 7)))
            assert app.watcher.start().state is WatcherState.RUNNING
            finished = log.wait_finished("Jane Doe.png")
        assert finished["Jane Doe.png"].outcome == "ingested"
        assert refusals
        assert WAITING_FOR_IMAGE_STORE not in states
        assert "image store" not in caplog.text
        assert "could not record the ingested file" in caplog.text
    finally:
        app.close()
