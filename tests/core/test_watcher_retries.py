"""Stopping the watch folder never waits longer than asked for a file whose read hangs
(a share that does not answer), and loses nothing."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ophthai_desktop.core.services.ingest import IngestService
from ophthai_desktop.core.watcher import WatcherState
from tests.support.images import png_bytes
from tests.support.watch_folder import WAIT_S, EventLog, build_watch_app, wait_until


def test_stop_gives_up_on_a_read_that_hangs_and_the_file_is_taken_in_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A share that hangs holds a read for good: stop() waits only as long as asked and
    says how many files it left, never which; nothing is moved before its commit, so
    the file is still in the folder for the next start."""
    app = build_watch_app(tmp_path)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    release = threading.Event()
    read = IngestService._read

    def hanging_read(self: IngestService, path: Path, expected: Any) -> Any:
        release.wait(WAIT_S * 3)
        raise OSError(5, "Input/output error", str(path))  # the share came back broken

    monkeypatch.setattr(IngestService, "_read", hanging_read)
    try:
        app.watcher.start()
        (folder / "Doe Jane OD.png").write_bytes(png_bytes((10, 10), (9, 9, 9)))
        assert wait_until(lambda: app.watcher.status.in_progress == 1)
        started = time.monotonic()
        with caplog.at_level(logging.INFO):
            stopped = app.watcher.stop(timeout_s=0.5)
        assert time.monotonic() - started < 2.0
        assert stopped is False
        assert app.watcher.state is WatcherState.STOPPED
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "1 file(s) still being read" in text and "Doe" not in text
        release.set()
        assert (folder / "Doe Jane OD.png").exists()  # not half taken in: still waiting

        monkeypatch.setattr(IngestService, "_read", read)
        app.watcher.start()  # the next start takes it in
        done = log.wait_finished("Doe Jane OD.png")
        assert done["Doe Jane OD.png"].outcome == "ingested"
        assert app.patients.list_patients(limit=1).total == 1
        assert (folder / "processed" / "Doe Jane OD.png").exists()
    finally:
        release.set()
        app.close()
