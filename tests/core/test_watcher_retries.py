"""A watch folder that fails (at start, or while running) is tried again by itself with
a growing wait, says so, notifies once when it fails and once when it is back, and takes
in the files that waited; Pause and Stop end the retries. Stopping never waits longer
than asked for a file whose read hangs."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core import watcher as watcher_module
from ophthai_desktop.core.services.ingest import FileVanished, FolderLayout, IngestService
from ophthai_desktop.core.watcher import (
    WAITING_FOR_DATABASE,
    WatcherState,
    missing_message,
    not_mounted_message,
)
from tests.support.images import png_bytes
from tests.support.outage import database_down
from tests.support.watch_folder import WAIT_S, EventLog, build_watch_app, hang_the_share, wait_until


@pytest.fixture
def share(tmp_path: Path) -> Path:
    """A configured watch folder on a "share" that is not there yet."""
    return tmp_path / "nas" / "oct"


@pytest.fixture
def app(tmp_path: Path, share: Path) -> Iterator[Application]:
    application = build_watch_app(tmp_path, watch_folder_path=share)
    yield application
    application.close()


def notices(app: Application) -> list[tuple[str, str]]:
    """The watch folder's own notifications so far (no patient's), oldest first:
    (type, message)."""
    page = app.notifications.list_notifications(limit=100)
    return [(n.type, n.message) for n in reversed(page.items) if n.patient_id is None]


def message(app: Application) -> str:
    return app.watcher.status.message


def test_a_folder_missing_at_start_is_tried_again_and_what_waited_is_taken_in(
    app: Application, share: Path
) -> None:
    log = EventLog(app.bus)
    status = app.watcher.start()
    assert status.state is WatcherState.ERROR
    assert not share.exists()  # a share's mount point is not filled with a local folder
    # In the words the watch said while watched (below): one situation, one wording.
    assert status.message == f"{missing_message(share)}; retrying in 0.2 s"
    # Each failed try doubles the wait, up to the most (0.8 s here); one notification.
    assert wait_until(lambda: "retrying in 0.8 s" in message(app))
    assert [kind for kind, _ in notices(app)] == ["critical"]
    assert "not being watched" in notices(app)[0][1]

    share.mkdir(parents=True)  # the share is back, with a scan the device wrote meanwhile
    (share / "waited.png").write_bytes(png_bytes((10, 10), (5, 6, 7)))
    assert log.wait_finished("waited.png")["waited.png"].outcome == "ingested"
    assert app.watcher.state is WatcherState.RUNNING and message(app) == ""
    # Said once the start is running, while its ingest threads may already file scans.
    assert wait_until(lambda: [kind for kind, _ in notices(app)] == ["critical", "success"])
    # Watched, not only rescanned: a new file is taken in too.
    (share / "next.png").write_bytes(png_bytes((10, 10), (8, 6, 7)))
    assert log.wait_finished("next.png")["next.png"].outcome == "ingested"
    events = log.of(ev.WatcherStateChanged)
    assert [e.state for e in events][-1] == "running"
    assert any("retrying in" in e.message for e in events)  # what API clients were told


def test_a_folder_removed_while_running_is_tried_again_and_recovers(
    app: Application, share: Path
) -> None:
    log = EventLog(app.bus)
    share.mkdir(parents=True)
    assert app.watcher.start().state is WatcherState.RUNNING
    shutil.rmtree(share)  # unmounted
    assert wait_until(lambda: app.watcher.state is WatcherState.ERROR)
    assert message(app).startswith(f"{missing_message(share)}; retrying in ")
    assert wait_until(lambda: "retrying in 0.8 s" in message(app))
    assert [kind for kind, _ in notices(app)] == ["critical"]

    share.mkdir()
    (share / "waited.png").write_bytes(png_bytes((10, 10), (1, 2, 3)))
    assert log.wait_finished("waited.png")["waited.png"].outcome == "ingested"
    assert wait_until(lambda: app.watcher.state is WatcherState.RUNNING)
    assert [kind for kind, _ in notices(app)] == ["critical", "success"]
    (share / "after.png").write_bytes(png_bytes((10, 10), (3, 2, 1)))
    assert log.wait_finished("after.png")["after.png"].outcome == "ingested"


def _fake_mount(share: Path, monkeypatch: pytest.MonkeyPatch, *, now: bool) -> dict[str, bool]:
    """The machine's mounts, with ``share`` mounted while the returned ``["now"]`` is
    True (tests cannot mount as a user)."""
    mounted = {"now": now}
    real_ismount = os.path.ismount

    def ismount(path: Any) -> bool:
        if os.fspath(path) == str(share.resolve()):
            return mounted["now"]
        return real_ismount(path)

    monkeypatch.setattr(os.path, "ismount", ismount)
    return mounted


def test_a_share_unmounted_while_running_is_the_error_state_until_mounted_again(
    app: Application, share: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unmounted, a share leaves the empty local folder it was mounted on at its path:
    that folder is not watched (the devices write to the share), and a file put into it
    is not taken in; the share mounted again is."""
    log = EventLog(app.bus)
    share.mkdir(parents=True)
    mounted = _fake_mount(share, monkeypatch, now=True)
    assert app.watcher.start().state is WatcherState.RUNNING
    (share / "before.png").write_bytes(png_bytes((10, 10), (1, 1, 1)))
    assert log.wait_finished("before.png")["before.png"].outcome == "ingested"

    away = share.parent / "mounted share"
    os.rename(share, away)  # the share's folder goes, the mount point's shows
    share.mkdir()
    mounted["now"] = False
    assert wait_until(lambda: message(app).startswith(not_mounted_message(share)))
    assert app.watcher.state is WatcherState.ERROR
    (share / "local.png").write_bytes(png_bytes((10, 10), (2, 2, 2)))
    assert not wait_until(lambda: "local.png" in log.finished(), timeout_s=1.5)
    assert not (share / "processed").exists()  # nothing made on the mount point
    assert [kind for kind, _ in notices(app)] == ["critical"]

    shutil.rmtree(share)
    os.rename(away, share)  # mounted again
    mounted["now"] = True
    (share / "after.png").write_bytes(png_bytes((10, 10), (3, 3, 3)))
    assert log.wait_finished("after.png")["after.png"].outcome == "ingested"
    assert wait_until(lambda: app.watcher.state is WatcherState.RUNNING)
    assert [kind for kind, _ in notices(app)] == ["critical", "success"]


def test_pause_and_stop_end_the_retries(app: Application, share: Path) -> None:
    log = EventLog(app.bus)
    app.watcher.start()
    assert app.watcher.state is WatcherState.ERROR
    app.watcher.pause()
    assert app.watcher.state is WatcherState.PAUSED
    assert "not tried again until resumed" in message(app)
    share.mkdir(parents=True)
    (share / "waiting.png").write_bytes(png_bytes((10, 10), (4, 4, 4)))
    # Paused: not tried again (the retries would have come every 0.2-0.8 s).
    assert not wait_until(lambda: app.watcher.state is not WatcherState.PAUSED, timeout_s=1.5)
    assert not (share / "processed").exists()
    app.watcher.resume()  # tried at once
    assert app.watcher.state is WatcherState.RUNNING
    assert log.wait_finished("waiting.png")["waiting.png"].outcome == "ingested"

    app.watcher.stop()
    shutil.rmtree(share)
    app.watcher.start()
    assert app.watcher.state is WatcherState.ERROR
    app.watcher.stop()
    share.mkdir()
    assert not wait_until(lambda: app.watcher.state is not WatcherState.STOPPED, timeout_s=1.5)
    assert not (share / "processed").exists()


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


def test_stop_does_not_wait_for_a_try_that_hangs_and_the_try_stops_it_when_back(
    app: Application, share: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A try at starting again holds the watcher while a share hangs: stop() (serve's
    SIGTERM) waits only as long as asked, and the try, once back, leaves it stopped."""
    app.watcher.start()
    assert app.watcher.state is WatcherState.ERROR
    share_held = hang_the_share(monkeypatch)
    release, trying = share_held.answer, share_held.trying
    try:
        assert trying.wait(WAIT_S)
        started = time.monotonic()
        assert app.watcher.stop(timeout_s=0.5) is False
        assert time.monotonic() - started < 2.0
        share.mkdir(parents=True)  # the try succeeds once the share answers...
    finally:
        release.set()
    # ...and stops the watcher, as asked; no try after it.
    assert wait_until(lambda: app.watcher.state is WatcherState.STOPPED)
    assert not wait_until(lambda: app.watcher.state is not WatcherState.STOPPED, timeout_s=1.0)


def test_stop_does_not_wait_for_a_resume_that_hangs_and_the_resume_stops_it_when_back(
    app: Application, share: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume tries a failed watch folder again, and a share holds it: stop() (serve's
    SIGTERM, the window closing) gives up waiting, and the resume, once back, left the
    watch folder running, taking files in after it was stopped."""
    app.watcher.start()  # the share is not there: the error state
    app.watcher.pause()
    release, trying = threading.Event(), threading.Event()
    ensure = FolderLayout.ensure

    def hanging_ensure(self: FolderLayout, *, create_root: bool = True) -> None:
        trying.set()
        release.wait(WAIT_S)
        ensure(self, create_root=create_root)

    monkeypatch.setattr(FolderLayout, "ensure", hanging_ensure)
    resuming = threading.Thread(target=app.watcher.resume, name="resume", daemon=True)
    resuming.start()
    try:
        assert trying.wait(WAIT_S)
        assert app.watcher.stop(timeout_s=0.5) is False
        share.mkdir(parents=True)  # the resume's try succeeds once the share answers...
    finally:
        release.set()
    resuming.join(WAIT_S)
    # ...and stops the watcher, as asked.
    assert app.watcher.state is WatcherState.STOPPED
    assert not app.watcher.watching


def test_files_wait_for_a_database_that_does_not_answer_and_the_state_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    try:
        log = EventLog(app.bus)
        assert app.watcher.start().state is WatcherState.RUNNING
        folder = app.watcher.folder
        with caplog.at_level(logging.INFO), database_down(app.db) as refusals:
            for n in range(3):
                (folder / f"Jane Doe {n}.png").write_bytes(png_bytes((10, 10), (n, 6, 7)))
            assert wait_until(lambda: len(refusals) >= 30)  # each file tried ten times
            assert app.watcher.state is WatcherState.RUNNING
            assert message(app) == WAITING_FOR_DATABASE
            assert sorted(p.name for p in folder.glob("*.png")) == [
                f"Jane Doe {n}.png" for n in range(3)
            ]
            said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(said) == 2, said  # the database's line and the watch folder's
        finished = log.wait_finished(*(f"Jane Doe {n}.png" for n in range(3)))
        assert {f.outcome for f in finished.values()} == {"ingested"}
        assert wait_until(lambda: message(app) == "")
        assert [e.message for e in log.of(ev.WatcherStateChanged)][-2:] == [
            WAITING_FOR_DATABASE,
            "",
        ]
        assert "Jane" not in caplog.text
    finally:
        app.close()


def test_a_bad_file_waits_for_a_database_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its refusal could not be recorded, so nobody would have been told: it went to
    failed/ all the same. It waits as a good file does, and is refused (moved, recorded,
    notified) once the database answers."""
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    try:
        log = EventLog(app.bus)
        layout = FolderLayout.under(app.watcher.folder)
        assert app.watcher.start().state is WatcherState.RUNNING
        bad = layout.root / "Jane Doe notes.png"
        with database_down(app.db) as refusals:
            bad.write_bytes(b"not an image at all")
            assert wait_until(lambda: len(refusals) >= 5)
            assert message(app) == WAITING_FOR_DATABASE
            assert bad.exists()
            assert not any(layout.failed.iterdir())
        assert log.wait_finished(bad.name)[bad.name].outcome == "failed"
        assert (layout.failed / bad.name).exists()
        told = [n.message for n in app.notifications.list_notifications().items]
        assert len(told) == 1 and "Moved to failed/" in told[0]
    finally:
        app.close()


def test_a_file_the_decoder_chokes_on_is_logged_once_while_it_waits_for_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Read and refused again every few seconds while the database does not answer (a
    full disk can last for hours): the log said the decoder failed at every try. It says
    the refusal once, recorded, with the decoder's error."""
    import struct

    from ophthai_desktop.core.services import ingest as ingest_module

    inspect_image = ingest_module.inspect_image

    def explode(data: bytes, **limits: int) -> Any:
        if data.startswith(b"II*"):
            raise struct.error("unpack requires a buffer of 4 bytes")
        return inspect_image(data, **limits)  # the warm-up's own image

    monkeypatch.setattr(ingest_module, "inspect_image", explode)
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    caplog.set_level(logging.INFO, logger="ophthai_desktop")
    app = build_watch_app(tmp_path)
    try:
        events = EventLog(app.bus)
        layout = FolderLayout.under(app.watcher.folder)
        assert app.watcher.start().state is WatcherState.RUNNING
        odd = layout.root / "odd.tif"
        with database_down(app.db) as refusals:
            odd.write_bytes(b"II*\x00odd")
            assert wait_until(lambda: len(refusals) >= 5)
        assert events.wait_finished(odd.name)[odd.name].outcome == "failed"
        said = [r.getMessage() for r in caplog.records if r.name.endswith("ingest")]
        assert len([line for line in said if "decod" in line]) == 1
        assert any("refused a file" in line and "decoded (error)" in line for line in said)
    finally:
        app.close()


def test_with_require_mount_a_folder_that_is_no_mount_point_waits_for_the_share(
    tmp_path: Path, share: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A share not mounted at the first start leaves its empty mount point, which cannot
    be told from an empty local folder: it was watched while the devices wrote to the
    share. With OPHTHAI_WATCH_FOLDER_REQUIRE_MOUNT it is the error state until the share
    is mounted there, nothing made on the mount point, and then watched."""
    share.mkdir(parents=True)  # the mount point, the share not mounted on it
    (share / "local.png").write_bytes(png_bytes((10, 10), (4, 4, 4)))
    mounted = _fake_mount(share, monkeypatch, now=False)
    app = build_watch_app(tmp_path, watch_folder_path=share, watch_folder_require_mount=True)
    log = EventLog(app.bus)
    try:
        status = app.watcher.start()
        assert status.state is WatcherState.ERROR
        assert status.message == f"{not_mounted_message(share)}; retrying in 0.2 s"
        assert wait_until(lambda: "retrying in 0.8 s" in message(app))
        assert not wait_until(lambda: "local.png" in log.finished(), timeout_s=0.5)
        assert sorted(p.name for p in share.iterdir()) == ["local.png"]  # nothing made there
        assert [kind for kind, _ in notices(app)] == ["critical"]

        shutil.rmtree(share)
        share.mkdir()
        mounted["now"] = True  # the share mounted, with a scan the device wrote meanwhile
        (share / "waited.png").write_bytes(png_bytes((10, 10), (5, 5, 5)))
        assert log.wait_finished("waited.png")["waited.png"].outcome == "ingested"
        assert app.watcher.state is WatcherState.RUNNING
        # Said once the start is running, while its ingest threads may already file scans.
        assert wait_until(lambda: [kind for kind, _ in notices(app)] == ["critical", "success"])
    finally:
        app.close()


def test_without_require_mount_a_folder_that_is_no_mount_point_is_watched(
    app: Application, share: Path
) -> None:
    """The default: a local folder is watched as it is (most watch folders are one)."""
    share.mkdir(parents=True)
    assert app.settings.watch_folder_require_mount is False
    assert app.watcher.start().state is WatcherState.RUNNING


def test_a_file_whose_change_the_database_rolled_back_is_retried_without_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL ended the file's commit to end a deadlock (ChangeRolledBack): the
    database answers, so the file is tried again without the state saying that files
    wait for the database (and its log line), which is for an outage."""
    from ophthai_desktop.core.errors import ChangeRolledBack
    from ophthai_desktop.core.storage.database import GAVE_WAY

    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    try:
        log = EventLog(app.bus)
        ingest_file = app.ingest.ingest_file
        rolled_back: list[str] = []

        def deadlocked_once(path: Path, *args: Any, **kwargs: Any) -> Any:
            if not rolled_back:
                rolled_back.append(path.name)
                raise ChangeRolledBack(GAVE_WAY)
            return ingest_file(path, *args, **kwargs)

        monkeypatch.setattr(app.ingest, "ingest_file", deadlocked_once)
        assert app.watcher.start().state is WatcherState.RUNNING
        with caplog.at_level(logging.INFO):
            (app.watcher.folder / "Jane Doe.png").write_bytes(png_bytes((10, 10), (1, 6, 7)))
            finished = log.wait_finished("Jane Doe.png")
        assert rolled_back == ["Jane Doe.png"]
        assert finished["Jane Doe.png"].outcome == "ingested"
        assert WAITING_FOR_DATABASE not in [e.message for e in log.of(ev.WatcherStateChanged)]
        assert "until the database answers" not in caplog.text
    finally:
        app.close()


def test_the_state_is_read_while_a_share_holds_a_files_last_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a file is taken in, the watcher looks whether another was written under its
    name. On a share that stops answering right then, that look held the bookkeeping
    lock, which the window's status bar (on the GUI thread) and GET /api/watch-folder
    take to count the files: both hung with the share, past the API's bounded wait."""
    app = build_watch_app(tmp_path)
    hung, release = threading.Event(), threading.Event()
    real_lstat = os.lstat

    def share_stops_answering(path: Any, *args: Any, **kwargs: Any) -> Any:
        last_look = threading.current_thread().name.startswith("watch-folder-ingest")
        if last_look and os.fspath(path).endswith("held_OD.png") and not hung.is_set():
            hung.set()
            release.wait(WAIT_S)
        return real_lstat(path, *args, **kwargs)

    def moved_away(path: Path, *args: Any, **kwargs: Any) -> Any:
        path.unlink()
        raise FileVanished("moved away meanwhile")

    monkeypatch.setattr(app.ingest, "ingest_file", moved_away)
    monkeypatch.setattr(os, "lstat", share_stops_answering)
    read: list[WatcherState] = []
    try:
        assert app.watcher.start().state is WatcherState.RUNNING
        (app.watcher.folder / "held_OD.png").write_bytes(png_bytes((10, 10)))
        assert hung.wait(WAIT_S)
        reader = threading.Thread(target=lambda: read.append(app.watcher.status.state))
        reader.start()
        reader.join(2.0)
        answered = not reader.is_alive()
    finally:
        release.set()
        app.close()

    assert answered and read == [WatcherState.RUNNING]


@pytest.mark.parametrize("by", ["resume", "retry"])
def test_a_resume_or_a_retry_that_hangs_says_the_folder_does_not_answer(
    app: Application, share: Path, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """A try at starting again held by a share that does not answer read, for as long
    as it hung, as the state before it: "paused" (a resume's) or "error; retrying in
    0.2 s" (a retry's), while a start that hangs says that the folder does not answer.
    Now they say it in the start's words, and the true state once the try returns."""
    monkeypatch.setattr(watcher_module, "ANSWER_WITHIN_S", 0.3, raising=False)
    app.watcher.start()  # the share is not there: the error state, tried again
    if by == "resume":
        app.watcher.pause()
    share_held = hang_the_share(monkeypatch)
    release, trying = share_held.answer, share_held.trying
    log = EventLog(app.bus)
    resuming = threading.Thread(target=app.watcher.resume, name="resume", daemon=True)
    if by == "resume":
        resuming.start()
    said = (
        f"the watch folder {app.settings.resolved_watch_folder} did not answer within 0.3 s "
        "(a network share that is not reachable?); it is set up once it answers"
    )
    try:
        assert trying.wait(WAIT_S)
        assert wait_until(lambda: app.watcher.status.message == said)
        assert app.watcher.status.state is WatcherState.ERROR
        assert log.of(ev.WatcherStateChanged)[-1].message == said  # what clients heard
        share.mkdir(parents=True)
    finally:
        release.set()
    assert wait_until(lambda: app.watcher.state is WatcherState.RUNNING)
    assert app.watcher.status.message == ""
    assert [e.state for e in log.of(ev.WatcherStateChanged)][-2:] == ["error", "running"]
    if by == "resume":
        resuming.join(WAIT_S)
