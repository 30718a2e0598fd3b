"""Starting, stopping, pausing and resuming the watcher from any thread, its published
state, the native observer, and a folder that cannot be watched or goes away."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.services.ingest import IngestService
from ophthai_desktop.core.watcher import FolderWatcher, WatcherState, missing_message
from tests.support.images import png_bytes
from tests.support.watch_folder import (
    WAIT_S,
    EventLog,
    build_watch_app,
    hang_the_share,
    noise_png,
    wait_until,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    application = build_watch_app(tmp_path)
    yield application
    application.close()


def states(log: EventLog) -> list[str]:
    return [e.state for e in log.of(ev.WatcherStateChanged)]


def test_start_creates_the_folders_and_publishes_each_state(app: Application) -> None:
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    assert not folder.exists() and app.watcher.state is WatcherState.STOPPED

    status = app.watcher.start()
    assert status.state is WatcherState.RUNNING and status.polling
    assert (folder / "processed").is_dir() and (folder / "failed").is_dir()
    app.watcher.start()  # already running: nothing changes
    app.watcher.pause()
    app.watcher.resume()
    app.watcher.stop()
    app.watcher.stop()
    assert states(log) == ["running", "paused", "running", "stopped"]
    assert log.of(ev.WatcherStateChanged)[0].folder == str(folder.resolve())


def test_paused_files_wait_and_are_taken_in_on_resume(app: Application) -> None:
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    app.watcher.start()
    app.watcher.pause()
    (folder / "while paused.png").write_bytes(png_bytes((10, 10), (3, 3, 3)))
    assert wait_until(lambda: app.watcher.status.pending == 1)  # noticed...
    assert not wait_until(lambda: bool(log.finished()), timeout_s=0.5)  # ...not taken in
    app.watcher.resume()
    assert log.wait_finished("while paused.png")["while paused.png"].outcome == "ingested"


def test_pausing_in_a_burst_leaves_the_files_not_read_yet_for_resume(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pause stops taking files in within the few being read, not after the whole burst
    that was already handed to the ingest threads."""
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    release = threading.Event()
    started: list[Path] = []
    read = IngestService._read

    def held_read(self: IngestService, path: Path, expected: Any) -> Any:
        started.append(path)
        release.wait(WAIT_S)
        return read(self, path, expected)

    monkeypatch.setattr(IngestService, "_read", held_read)
    app.watcher.start()
    names = [f"burst {i}.png" for i in range(10)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(png_bytes((10, 10), (i, 50, 50)))
    assert wait_until(lambda: app.watcher.status.in_progress == len(names))  # all handed over
    app.watcher.pause()
    release.set()
    assert wait_until(lambda: app.watcher.status.in_progress == 0)
    assert not wait_until(lambda: app.watcher.status.in_progress > 0, timeout_s=0.5)
    # Only the few files being read when it paused (one per core or so) were taken in.
    assert 0 < len(started) <= 8 and len(log.finished()) == len(started)
    assert len([p for p in folder.iterdir() if p.is_file()]) == len(names) - len(started)
    app.watcher.resume()
    done = log.wait_finished(*names)
    assert {r.outcome for r in done.values()} == {"ingested"}


def test_control_from_other_threads(app: Application) -> None:
    log = EventLog(app.bus)
    errors: list[BaseException] = []

    def run(action: str) -> None:
        try:
            getattr(app.watcher, action)()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for action in ("start", "pause", "resume", "stop", "start"):
        workers = [threading.Thread(target=run, args=(action,)) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(10)
    assert not errors
    assert app.watcher.state is WatcherState.RUNNING
    assert states(log) == ["running", "paused", "running", "stopped", "running"]


def test_a_folder_that_cannot_be_created_is_the_error_state(tmp_path: Path) -> None:
    app = build_watch_app(tmp_path)
    app.settings.resolved_watch_folder.write_text("a file in the way of the default folder")
    log = EventLog(app.bus)
    try:
        status = app.watcher.start()
        assert status.state is WatcherState.ERROR
        assert "cannot create the watch folder" in status.message
        assert set(states(log)) == {"error"}  # tried again meanwhile, failing again
        assert app.start_watcher()  # serve's call: reports through the state, never raises
    finally:
        app.close()
    assert app.watcher.state is WatcherState.STOPPED


@pytest.mark.parametrize("in_the_way", ["file", "dangling link"])
def test_a_folder_that_cannot_be_created_is_named_with_what_is_in_the_way(
    tmp_path: Path, in_the_way: str
) -> None:
    """The state (the window's status bar, ``serve``'s log) and the critical notification
    say which folder and why, not a bare "File exists"."""
    app = build_watch_app(tmp_path)
    folder = app.settings.resolved_watch_folder
    if in_the_way == "file":
        folder.write_text("the user's")
        said = f"cannot create the watch folder {folder}: {folder} is a file, not a folder"
    else:
        folder.symlink_to(tmp_path / "usb-disk" / "scans")
        said = (
            f"cannot create the watch folder {folder}: {folder} is a link to "
            f"{tmp_path / 'usb-disk' / 'scans'}, which does not exist"
        )
    try:
        status = app.watcher.start()
        notified = [n.message for n in app.notifications.list_notifications().items]
    finally:
        app.close()

    assert status.state is WatcherState.ERROR
    assert status.message.startswith(said)
    assert len(notified) == 1 and said in notified[0]
    assert not (tmp_path / "usb-disk").exists()  # nothing made where the link points


def test_a_watch_folder_on_a_full_disk_asks_for_space_not_for_a_new_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "Free space on it, then start OphthAI again; retrying in 5 s": the watcher
    tries again by itself, and starting again is not needed."""
    app = build_watch_app(tmp_path)
    folder = app.settings.resolved_watch_folder
    real_mkdir = Path.mkdir

    def no_room(path: Path, *args: Any, **kwargs: Any) -> None:
        if path == folder:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", no_room)

    assert _refused_start(app).startswith(
        f"cannot create the watch folder {folder}: the disk that holds {folder.parent} is full. "
        "Free space on it; retrying in "
    )


@pytest.mark.parametrize("name", ["processed", "failed"])
def test_a_file_named_as_a_filing_folder_is_named_and_the_scans_wait(
    tmp_path: Path, name: str
) -> None:
    """A file called ``processed`` or ``failed`` in the watch folder: nothing could be
    filed, so the watch folder is not started; the state and the notification say which
    path and why, the scans wait where they are, and are taken in once it is moved."""
    app = build_watch_app(tmp_path)
    folder = app.settings.resolved_watch_folder
    folder.mkdir(parents=True)
    in_the_way = folder / name
    in_the_way.write_text("the user's")
    (folder / "waiting.png").write_bytes(png_bytes((10, 10), (4, 4, 4)))
    log = EventLog(app.bus)
    try:
        status = app.watcher.start()
        notified = [n.message for n in app.notifications.list_notifications().items]
        assert status.state is WatcherState.ERROR
        said = (
            f"cannot create the watch folder's {name}/ folder {in_the_way}: {in_the_way} is "
            "a file, not a folder"
        )
        assert status.message.startswith(said)
        assert len(notified) == 1 and said in notified[0]
        assert (folder / "waiting.png").is_file()  # waits, not lost
        assert in_the_way.read_text() == "the user's"

        in_the_way.rename(folder / f"{name}.txt")
        assert log.wait_finished("waiting.png")["waiting.png"].outcome == "ingested"
    finally:
        app.close()


@pytest.mark.parametrize("name", ["processed", "failed"])
def test_a_file_put_in_a_filing_folders_place_while_watched_is_said_and_the_scans_wait(
    tmp_path: Path, name: str
) -> None:
    """A file put where ``processed/`` or ``failed/`` was while the folder is watched:
    the folder looked fine (running) while every scan was stored and then could not be
    filed. The watch folder now says which path and why, as at a start, the scans wait,
    and they are taken in once the file is moved away (the folder made again)."""
    app = build_watch_app(tmp_path)
    folder = app.settings.resolved_watch_folder
    try:
        assert app.watcher.start().state is WatcherState.RUNNING
        in_the_way = folder / name
        in_the_way.rmdir()
        in_the_way.write_text("the user's")
        said = (
            f"cannot create the watch folder's {name}/ folder {in_the_way}: {in_the_way} is "
            "a file, not a folder"
        )
        assert wait_until(lambda: app.watcher.status.message.startswith(said))
        assert app.watcher.status.state is WatcherState.ERROR
        # The notification follows the state.
        assert wait_until(lambda: app.notifications.list_notifications().total == 1)
        notified = [n.message for n in app.notifications.list_notifications().items]
        assert said in notified[0]

        log = EventLog(app.bus)
        (folder / "waiting.png").write_bytes(png_bytes((10, 10), (4, 4, 4)))
        time.sleep(1.0)  # two health checks and many polls: nothing is taken in meanwhile
        assert (folder / "waiting.png").is_file()
        assert app.patients.list_patients().total == 0
        assert in_the_way.read_text() == "the user's"

        in_the_way.rename(folder / f"{name}.txt")
        assert log.wait_finished("waiting.png")["waiting.png"].outcome == "ingested"
        assert wait_until(lambda: (folder / "processed" / "waiting.png").is_file())
        assert app.watcher.status.state is WatcherState.RUNNING
        assert (folder / name).is_dir()
    finally:
        app.close()


def test_a_scan_stored_but_not_filed_before_the_check_is_filed_once_processed_is_back(
    tmp_path: Path,
) -> None:
    """A file put where ``processed/`` was, and a scan taken in before the next check
    noticed it: the scan is stored but cannot be moved, so it stays in the folder. Once
    ``processed/`` is back the watcher forgets it could not be moved, and the rescan
    files it through the crash repair: one patient, one scan, the file in processed/."""
    app = build_watch_app(tmp_path)
    # Checked only when this test says: the scan is taken in before the check.
    app.watcher = FolderWatcher(
        app.settings,
        app.ingest,
        app.bus,
        rescan_interval_s=3600.0,
        notifications=app.notifications,
        retry_first_s=0.2,
        retry_max_s=0.8,
    )
    folder = app.settings.resolved_watch_folder
    in_the_way = folder / "processed"

    def check_now() -> None:  # as when the folder itself is deleted
        run = app.watcher._run
        assert run is not None
        app.watcher._folder_deleted(run)

    try:
        assert app.watcher.start().state is WatcherState.RUNNING
        in_the_way.rmdir()
        in_the_way.write_text("the user's")
        log = EventLog(app.bus)
        (folder / "Jane Doe OD.png").write_bytes(png_bytes((10, 10), (6, 6, 6)))
        first = log.wait_finished("Jane Doe OD.png")["Jane Doe OD.png"]
        assert first.outcome == "ingested" and first.moved_to == ""  # stored, not filed
        assert (folder / "Jane Doe OD.png").is_file()

        check_now()
        assert wait_until(lambda: app.watcher.state is WatcherState.ERROR)
        assert "processed/ folder" in app.watcher.status.message

        in_the_way.rename(folder / "processed.txt")  # the retry makes processed/ again
        assert wait_until(lambda: not (folder / "Jane Doe OD.png").exists())
        assert app.watcher.state is WatcherState.RUNNING
        assert (in_the_way / "Jane Doe OD.png").read_bytes() == png_bytes((10, 10), (6, 6, 6))
        assert [p.name for p in folder.iterdir() if p.is_file()] == ["processed.txt"]
        patients = app.patients.list_patients().items
        assert len(patients) == 1
        assert len(app.patients.list_scans(patients[0].id)) == 1
    finally:
        app.close()


def test_a_processed_folder_deleted_while_watched_is_made_again(tmp_path: Path) -> None:
    """``processed/`` deleted while the folder is watched (someone tidying up): it is
    made again, and the scans that arrive are filed there."""
    app = build_watch_app(tmp_path)
    folder = app.settings.resolved_watch_folder
    try:
        assert app.watcher.start().state is WatcherState.RUNNING
        (folder / "processed").rmdir()
        assert wait_until(lambda: (folder / "processed").is_dir())
        log = EventLog(app.bus)
        (folder / "scan.png").write_bytes(png_bytes((10, 10), (5, 5, 5)))
        assert log.wait_finished("scan.png")["scan.png"].outcome == "ingested"
        assert wait_until(lambda: (folder / "processed" / "scan.png").is_file())
        assert app.watcher.status.state is WatcherState.RUNNING
    finally:
        app.close()


def test_a_configured_watch_folder_that_is_a_file_is_named_so(tmp_path: Path) -> None:
    """Not "does not exist (a share not mounted?)": it is there, and a file."""
    scans = tmp_path / "scans"
    scans.write_text("the user's")
    app = build_watch_app(tmp_path, watch_folder_path=scans)
    assert _refused_start(app).startswith(
        f"cannot create the watch folder {scans}: {scans} is a file, not a folder"
    )


def _refused_start(app: Application) -> str:
    """The message of ``app``'s watcher, started then closed, whose start failed."""
    try:
        status = app.watcher.start()
    finally:
        app.close()
    assert status.state is WatcherState.ERROR
    return status.message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_a_folder_that_goes_away_is_reported_and_watched_again_when_back(
    tmp_path: Path,
) -> None:
    """A configured folder (a share) that goes away is waited for, not made."""
    folder = tmp_path / "nas" / "oct"
    folder.mkdir(parents=True)
    app = build_watch_app(tmp_path, watch_folder_path=folder)
    log = EventLog(app.bus)
    try:
        app.watcher.start()
        # Gone in one step: deleted in place, the folders in it went one by one and the
        # watcher made processed/ again before the folder's turn ("Directory not empty").
        folder.rename(tmp_path / "gone")
        assert wait_until(lambda: app.watcher.state is WatcherState.ERROR)
        assert app.watcher.status.message.startswith(f"{missing_message(folder)}; retrying in ")
        assert not folder.exists()
        folder.mkdir(parents=True)
        assert wait_until(lambda: app.watcher.state is WatcherState.RUNNING)
        (folder / "after.png").write_bytes(png_bytes((10, 10), (8, 8, 8)))
        assert log.wait_finished("after.png")["after.png"].outcome == "ingested"
        assert states(log)[-2:] == ["error", "running"]
    finally:
        app.close()


@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
def test_the_default_folder_deleted_while_watched_is_made_again(
    tmp_path: Path, polling: bool
) -> None:
    """The default folder (in the data folder) deleted while watched, by someone tidying
    up: it is made again, as a start makes it, and the scans copied into it are taken in.
    It stayed in the error state ("not reachable"), retried every 5 minutes at most and
    never made, until the app was restarted."""
    app = build_watch_app(tmp_path, polling=polling)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    try:
        assert app.watcher.start().state is WatcherState.RUNNING
        # Moved to the bin, in one step: deleted in place, the folders in it went one by
        # one, and the watcher, rightly, made processed/ again before the folder's turn
        # ("Directory not empty").
        folder.rename(tmp_path / "bin")
        assert wait_until(lambda: (folder / "processed").is_dir() and (folder / "failed").is_dir())
        (folder / "after.png").write_bytes(png_bytes((10, 10), (8, 7, 8)))
        assert log.wait_finished("after.png")["after.png"].outcome == "ingested"
        assert wait_until(lambda: (folder / "processed" / "after.png").is_file())
        assert app.watcher.state is WatcherState.RUNNING
        notes = app.notifications.list_notifications(limit=5).items
        assert [n.type for n in notes] == ["info"]  # the scan's; no "not being watched"
    finally:
        app.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX modes")
def test_a_start_never_makes_the_data_folder(tmp_path: Path) -> None:
    """A start (or a try again after a failed one) while the data folder is gone (moved,
    its disk unplugged) waits for it, as a watch that was running does: it made the data
    folder by the umask (0755), open to other accounts, where the app makes it 0700,
    and the default folder with patients' scans inside it."""
    data = tmp_path / "data"
    (tmp_path / "db").mkdir()
    app = build_watch_app(tmp_path, database_url=f"sqlite:///{tmp_path / 'db' / 'o.db'}")
    folder = app.settings.resolved_watch_folder
    data.rename(tmp_path / "data moved away")
    umask = os.umask(0o022)
    try:
        status = app.watcher.start()
        assert status.state is WatcherState.ERROR
        assert status.message == f"{missing_message(folder)}; retrying in 0.2 s"
        assert wait_until(lambda: "retrying in 0.8 s" in app.watcher.status.message)
        assert not data.exists()

        (tmp_path / "data moved away").rename(data)  # the disk is back
        assert wait_until(lambda: app.watcher.state is WatcherState.RUNNING)
        assert (data.stat().st_mode & 0o777) == 0o700
        assert (folder / "processed").is_dir()
    finally:
        os.umask(umask)
        app.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX links and modes")
@pytest.mark.parametrize("gone", ["data folder", "link's target"])
def test_the_default_folder_is_not_made_again_where_what_held_it_went(
    tmp_path: Path, gone: str
) -> None:
    """The default folder is made again where it alone was deleted; not where the data
    folder went with it (moved away, its disk unplugged: made again by the umask, 0755,
    it was open to other accounts, where a start makes it 0700), nor where the default
    path is a link to another folder (a share, most likely) that went: that folder (and
    the folders above it, at a share's mount point) was made, as a start never does.
    Both are waited for, as a configured folder is.

    The data folder is moved away, in one step: deleted, the folders in it went one by
    one, and the default folder, gone while the data folder was still there, was made
    again (rightly) before the data folder's turn ("Directory not empty")."""
    data = tmp_path / "data"
    share = tmp_path / "nas"
    (tmp_path / "db").mkdir()
    app = build_watch_app(tmp_path, database_url=f"sqlite:///{tmp_path / 'db' / 'o.db'}")
    if gone == "link's target":
        (share / "oct").mkdir(parents=True)
        app.settings.resolved_watch_folder.symlink_to(share / "oct")
    try:
        assert app.watcher.start().state is WatcherState.RUNNING
        if gone == "data folder":
            data.rename(tmp_path / "data moved away")
        else:
            shutil.rmtree(share)
        assert wait_until(lambda: app.watcher.state is WatcherState.ERROR)
        watched = data / "incoming_scans" if gone == "data folder" else share / "oct"
        assert app.watcher.status.message.startswith(missing_message(watched))
        assert not data.exists() if gone == "data folder" else not share.exists()
    finally:
        app.close()


@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
def test_a_folder_renamed_away_and_made_again_is_watched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, polling: bool
) -> None:
    """inotify follows the folder that was renamed away: the new one at the path must be
    watched again, not left to the rescan (every 10 s) for each file. (A configured
    folder: the default one would be made again by the watcher itself.)"""
    (tmp_path / "scans").mkdir()
    app = build_watch_app(tmp_path, polling=polling, watch_folder_path=tmp_path / "scans")
    noticed_names: list[str] = []
    noticed = app.watcher._noticed

    def recording(run: Any, path: str, kind: str) -> None:
        noticed_names.append(os.path.basename(path))
        noticed(run, path, kind)

    monkeypatch.setattr(app.watcher, "_noticed", recording)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    try:
        app.watcher.start()
        os.rename(folder, tmp_path / "old scans")
        folder.mkdir()
        (folder / "first.png").write_bytes(png_bytes((10, 10), (1, 8, 8)))
        log.wait_finished("first.png")  # by a rescan, after the health check before it
        (folder / "next.png").write_bytes(png_bytes((10, 10), (2, 8, 8)))
        assert log.wait_finished("next.png")["next.png"].outcome == "ingested"
        assert "next.png" in noticed_names  # an event told, not a rescan
        assert app.watcher.state is WatcherState.RUNNING
    finally:
        app.close()


def test_the_native_observer_takes_in_copies_and_renames(tmp_path: Path) -> None:
    app = build_watch_app(tmp_path, polling=False)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    staging = tmp_path / "staging"
    staging.mkdir()
    try:
        status = app.watcher.start()
        assert status.state is WatcherState.RUNNING and not status.polling
        for i in range(3):
            source = staging / f"scan {i}.png"
            source.write_bytes(noise_png((64, 64), seed=10 + i))
            shutil.copy(source, folder / f"copied {i}.png")
            os.rename(source, folder / f"renamed {i}.png")
        names = [f"{kind} {i}.png" for kind in ("copied", "renamed") for i in range(3)]
        done = log.wait_finished(*names)
    finally:
        app.close()
    # Copies and renames of the same bytes: one patient each, the twin a duplicate.
    outcomes = sorted(done[n].outcome for n in names)
    assert outcomes == ["duplicate"] * 3 + ["ingested"] * 3
    assert app.patients.list_patients().total == 3


@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
def test_debug_logs_carry_no_file_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, polling: bool
) -> None:
    """With debug logging on (``OPHTHAI_DEBUG``), the observers' own lines would name
    every file they see, and a file name can hold a patient's name."""
    app = build_watch_app(tmp_path, polling=polling)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    try:
        with caplog.at_level(logging.DEBUG):
            app.watcher.start()
            (folder / "Jane Doe_OD.png").write_bytes(png_bytes((12, 12), (4, 4, 4)))
            os.rename(folder / "Jane Doe_OD.png", folder / "Jane Roe_OS.png")
            assert log.wait_finished("Jane Roe_OS.png")["Jane Roe_OS.png"].outcome == "ingested"
            app.watcher.stop()
    finally:
        app.close()
    assert "watch folder started" in caplog.text  # the log was captured
    assert "Jane" not in caplog.text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_a_file_renamed_in_from_elsewhere_is_seen_as_a_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename is whole at once and takes the fast path; watchdog reported one from
    outside the folder as a creation, which waits two steady checks (~100 ms) in case a
    writer still has the file open."""
    app = build_watch_app(tmp_path, polling=False)
    seen: list[tuple[str, str]] = []
    noticed = app.watcher._noticed

    def recording(run: Any, path: str, kind: str) -> None:
        seen.append((os.path.basename(path), kind))
        noticed(run, path, kind)

    monkeypatch.setattr(app.watcher, "_noticed", recording)
    log = EventLog(app.bus)
    staging = tmp_path / "device-temp"
    staging.mkdir()
    try:
        app.watcher.start()
        source = staging / "scan.png"
        source.write_bytes(noise_png((64, 64), seed=3))
        os.rename(source, app.settings.resolved_watch_folder / "scan.png")
        assert log.wait_finished("scan.png")["scan.png"].outcome == "ingested"
    finally:
        app.close()
    assert next(kind for name, kind in seen if name == "scan.png") == "moved"


def test_the_watcher_built_by_the_application_uses_the_settings(tmp_path: Path) -> None:
    app = build_watch_app(tmp_path, watch_extensions="PNG, .Tif")
    try:
        assert isinstance(app.watcher, FolderWatcher)
        app.watcher.start()
        folder = app.settings.resolved_watch_folder
        log = EventLog(app.bus)
        (folder / "a.jpg").write_bytes(png_bytes())  # not an allowed extension here
        (folder / "b.tif").write_bytes(png_bytes((9, 9)))  # allowed; PNG content decides
        assert log.wait_finished("b.tif")["b.tif"].outcome == "ingested"
        assert (folder / "a.jpg").exists() and "a.jpg" not in log.finished()
    finally:
        app.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_moving_a_file_out_does_not_hold_back_the_next(tmp_path: Path) -> None:
    """watchdog holds a rename's first half for 0.5 s and every event behind it; each
    file moved to processed/ is one, so without our fix the next file waited that long."""
    app = build_watch_app(tmp_path, polling=False)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    try:
        app.watcher.start()
        (folder / "first.png").write_bytes(png_bytes((10, 10), (1, 1, 1)))
        log.wait_finished("first.png")  # published just after its move to processed/
        written = time.monotonic()
        (folder / "second.png").write_bytes(png_bytes((10, 10), (2, 2, 2)))
        log.wait_finished("second.png")
        took_s = time.monotonic() - written
    finally:
        app.close()
    assert took_s < 0.4, f"the second file took {took_s:.2f} s"


@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
def test_a_file_written_again_under_its_name_while_taken_in_is_taken_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, polling: bool
) -> None:
    """A device that exports under one fixed name writes the next scan as soon as the
    last one left the folder: the new file's events arrive while the name is still being
    taken in. It is taken in then, not at the next rescan (a minute away here)."""
    app = build_watch_app(tmp_path, polling=polling)
    app.watcher = FolderWatcher(
        app.settings, app.ingest, app.bus, empty_grace_s=0.3, rescan_interval_s=60.0
    )
    folder = app.settings.resolved_watch_folder
    second = png_bytes((10, 10), (2, 2, 2))
    noticed_again = threading.Event()
    noticed = app.watcher._noticed
    finished: list[ev.IngestFinished] = []

    def recording(run: Any, path: str, kind: str) -> None:
        noticed(run, path, kind)
        if os.path.basename(path) == "export.png" and kind != "deleted" and finished:
            noticed_again.set()

    def on_event(event: ev.Event) -> None:
        if not isinstance(event, ev.IngestFinished) or event.file_name != "export.png":
            return
        finished.append(event)
        if len(finished) == 1:
            # Still on the ingest thread, the name still in progress: the device writes
            # the next export, and the watcher hears of it before this one is done.
            (folder / "export.png").write_bytes(second)
            assert noticed_again.wait(WAIT_S)

    monkeypatch.setattr(app.watcher, "_noticed", recording)
    app.bus.subscribe(on_event)
    try:
        app.watcher.start()
        (folder / "export.png").write_bytes(png_bytes((10, 10), (1, 1, 1)))
        assert wait_until(lambda: len(finished) == 2, timeout_s=5.0), "the new file waited"
    finally:
        app.close()
    assert [e.outcome for e in finished] == ["ingested", "ingested"]
    assert (folder / "processed" / "export (1).png").read_bytes() == second
    assert not (folder / "export.png").exists()


def test_a_start_in_the_background_that_hangs_says_so_and_is_set_up_once_it_answers(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ophthai serve``'s start: a share that does not answer holds its thread, not the
    caller; clients hear of it (``watcher_state`` error) and of the start once it answers."""
    answer = hang_the_share(monkeypatch).answer
    log = EventLog(app.bus)
    starting = app.start_watcher_in_background(answer_within_s=0.2)
    assert starting is not None and starting.is_alive()
    assert wait_until(lambda: states(log) == ["error"])
    (said,) = log.of(ev.WatcherStateChanged)
    assert "did not answer within 0.2 s" in said.message
    assert said.folder == str(app.settings.resolved_watch_folder)
    assert starting.is_alive()
    # What a client reading the state (GET /api/watch-folder) is told: the event's word.
    assert (app.watcher.status.state, app.watcher.status.message) == (
        WatcherState.ERROR,
        said.message,
    )
    answer.set()
    starting.join(WAIT_S)
    assert app.watcher.state is WatcherState.RUNNING
    assert states(log) == ["error", "running"]


def test_a_start_in_the_background_that_answers_says_nothing_more(app: Application) -> None:
    log = EventLog(app.bus)
    # Time enough to answer on a loaded machine: a start slower than this is said to hang.
    starting = app.start_watcher_in_background(answer_within_s=2.0)
    assert starting is not None
    starting.join(WAIT_S)
    assert not starting.is_alive()
    # Past the time to answer (its timer has run): nothing is said of a start that answered.
    for timer in [t for t in threading.enumerate() if t.name == "watch-folder-answer"]:
        timer.join(WAIT_S)
    assert states(log) == ["running"]
    app.settings.watch_folder_enabled = False
    assert app.start_watcher_in_background() is None


def test_a_start_in_the_background_that_fails_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``ophthai serve``'s log says a watch folder that cannot be made once, as an
    error, not again as information."""
    app = build_watch_app(tmp_path)
    folder = app.settings.resolved_watch_folder
    folder.write_text("the user's")
    try:
        with caplog.at_level(logging.INFO, logger="ophthai_desktop"):
            starting = app.start_watcher_in_background(answer_within_s=WAIT_S)
            assert starting is not None
            starting.join(WAIT_S)
    finally:
        app.close()

    first_try = f"cannot create the watch folder {folder}"
    said = [
        r.levelname
        for r in caplog.records
        if first_try in r.message and "retrying in 0.2 s" in r.message  # not the retries
    ]
    assert said == ["ERROR"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_a_deleted_folder_is_the_error_state_at_once_not_at_the_next_rescan(
    tmp_path: Path,
) -> None:
    """The native observer reports the watched folder's own deletion (IN_DELETE_SELF):
    the error state and its notification came only at the next rescan (every 10 s).
    (A configured folder: the default one is made again.)"""
    (tmp_path / "scans").mkdir()
    app = build_watch_app(tmp_path, polling=False, watch_folder_path=tmp_path / "scans")
    app.watcher = FolderWatcher(
        app.settings,
        app.ingest,
        app.bus,
        rescan_interval_s=60.0,
        notifications=app.notifications,
        retry_first_s=60.0,
    )
    try:
        app.watcher.start()
        assert app.watcher.state is WatcherState.RUNNING and not app.watcher.status.polling
        shutil.rmtree(app.settings.resolved_watch_folder)
        assert wait_until(lambda: app.watcher.state is WatcherState.ERROR, timeout_s=5)
        assert app.watcher.status.message.startswith(missing_message(tmp_path / "scans"))
        notes = app.notifications.list_notifications(limit=5).items
        assert [n.type for n in notes] == ["critical"]
    finally:
        app.close()


def test_a_start_paused_reads_no_file_waiting_until_resumed(tmp_path: Path) -> None:
    """The clinician's pause is kept for the next start (``watch_folder_paused``): a
    start then a pause took in the files waiting in between."""
    app = build_watch_app(tmp_path, watch_folder_paused=True)
    try:
        log = EventLog(app.bus)
        folder = app.settings.resolved_watch_folder
        folder.mkdir(parents=True)
        (folder / "waiting.png").write_bytes(png_bytes((10, 10), (4, 4, 4)))

        assert app.start_watcher()
        assert app.watcher.state is WatcherState.PAUSED
        assert states(log) == ["paused"]  # never said to be running meanwhile
        assert wait_until(lambda: app.watcher.status.pending == 1)  # noticed...
        assert not wait_until(lambda: bool(log.finished()), timeout_s=0.5)  # ...not read
        app.watcher.resume()
        assert log.wait_finished("waiting.png")["waiting.png"].outcome == "ingested"
    finally:
        app.close()


def test_a_start_paused_that_fails_does_not_say_it_is_tried_again_by_itself(
    tmp_path: Path,
) -> None:
    """Started paused (the clinician's pause kept) on a folder that cannot be made: the
    critical notification said "it is tried again by itself", though a pause stops the
    tries until Resume."""
    app = build_watch_app(tmp_path, watch_folder_paused=True)
    app.settings.resolved_watch_folder.write_text("a file in the way of the default folder")
    try:
        assert app.start_watcher()
        assert app.watcher.state is WatcherState.PAUSED
        assert app.watcher.status.message.endswith("not tried again until resumed")
        [note] = app.notifications.list_notifications().items
        assert note.type == "critical"
        assert "tried again by itself" not in note.message
        assert note.message.endswith("it is paused: it is tried again once resumed.")
    finally:
        app.close()
