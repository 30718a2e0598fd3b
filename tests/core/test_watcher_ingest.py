"""The watch folder takes files in once, whole, and never makes a second patient from the
same bytes: slow copies, duplicates, names that attach to a patient, restarts and a crash
between the commit and the move."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import random
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, update

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.log_safety import patient_ref
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services import ingest as ingest_module
from ophthai_desktop.core.services.ingest import (
    REASON_SUFFIX,
    FileNotSettled,
    FolderLayout,
    IngestOutcome,
    IngestResult,
    IngestService,
    demo_patient_fields,
    move_without_overwrite,
    patient_id_from_name,
    remove_stale_claims,
    scan_kind_from_name,
)
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.watcher import PROC_FDS, WatcherState
from tests.support.images import jpeg_bytes, png_bytes, tiff_volume_bytes
from tests.support.races import meanwhile
from tests.support.watch_folder import (
    EventLog,
    build_watch_app,
    noise_png,
    wait_until,
    write_in_chunks,
)


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[Application]:
    """The watch-folder application on SQLite and, where configured, PostgreSQL: the
    group commit writes its rows with multi-row ``INSERT ... RETURNING`` on both."""
    application = build_watch_app(tmp_path, database_url=db_url)
    yield application
    application.close()


@pytest.fixture
def log(app: Application) -> EventLog:
    return EventLog(app.bus)


def folder_of(app: Application) -> Path:
    return app.settings.resolved_watch_folder


def patient_count(app: Application) -> int:
    return app.patients.list_patients(limit=1).total


def ingest_row(app: Application, sha256: str) -> m.IngestedFile | None:
    with app.db.session() as session:
        return session.scalars(
            select(m.IngestedFile).where(m.IngestedFile.sha256 == sha256)
        ).first()


@pytest.mark.parametrize(
    ("gap_s", "why"),
    [
        (0.1, "writes closer together than the settle window"),
        pytest.param(
            0.35,
            "pauses longer than the settle window: /proc shows the writer",
            marks=pytest.mark.skipif(not PROC_FDS, reason="needs /proc"),
        ),
    ],
)
def test_a_slow_copy_is_taken_in_once_and_whole(
    app: Application, log: EventLog, gap_s: float, why: str
) -> None:
    data = noise_png((300, 200), seed=1)  # ~180 KB
    app.watcher.start()
    writer = write_in_chunks(
        folder_of(app) / "slow.png", data, chunks=4 if gap_s > 0.2 else 10, gap_s=gap_s
    )
    done = log.wait_finished("slow.png")
    writer.join()

    result = done["slow.png"]
    assert result.outcome == "ingested", f"{why}: {result.reason}"
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    scan = app.patients.list_scans(result.patient_id or "")[0]
    assert app.images.read(scan.sha256) == data  # the stored image is the whole file
    assert patient_count(app) == 1 and len(log.of(ev.PatientCreated)) == 1
    assert (folder_of(app) / "processed" / "slow.png").read_bytes() == data
    assert not (folder_of(app) / "slow.png").exists()


def test_one_file_makes_a_patient_a_scan_a_queued_analysis_and_a_notification(
    app: Application, log: EventLog
) -> None:
    app.watcher.start()
    (folder_of(app) / "macula_OS_OCTA.png").write_bytes(png_bytes((64, 48)))
    result = log.wait_finished("macula_OS_OCTA.png")["macula_OS_OCTA.png"]

    assert result.outcome == "ingested" and result.patient_id
    patient = app.patients.get_patient(result.patient_id)
    assert patient.name and patient.age is not None and patient.gender in ("Male", "Female")
    assert patient.symptoms and "Demo patient" in patient.history
    assert patient.status == "Pending Analysis" and patient.workflow_step == 1
    scan = patient.latest_scan
    assert scan is not None
    assert (scan.source, scan.laterality, scan.modality) == ("watch_folder", "OS", "OCTA")
    assert scan.original_filename == "macula_OS_OCTA.png"
    job = app.jobs.get_job(result.job_id or 0)
    assert (job.state, job.patient_id, job.scan_id) == ("queued", patient.id, scan.id)
    notes = app.notifications.list_notifications(patient_id=patient.id).items
    assert [n.type for n in notes] == ["info"]
    assert notes[0].message.startswith("New scan from the watch folder")
    # Events after the commit, in order, each once.
    names = [
        type(e).__name__
        for e in log.of(ev.Event)
        if isinstance(
            e, ev.PatientCreated | ev.ScanIngested | ev.AnalysisQueued | ev.NotificationCreated
        )
    ]
    assert names == ["PatientCreated", "ScanIngested", "AnalysisQueued", "NotificationCreated"]
    row = ingest_row(app, result.sha256 or "")
    assert row is not None
    assert (row.outcome, row.patient_id, row.scan_id, row.job_id, row.original_name) == (
        "ingested",
        patient.id,
        scan.id,
        job.id,
        "macula_OS_OCTA.png",
    )


@pytest.mark.parametrize("kernel_copy", [True, False], ids=["kernel-copy", "read-and-write"])
def test_the_stored_bytes_are_the_checked_ones_and_no_staged_copy_is_left(
    app: Application, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    if not kernel_copy:  # as on a system without copy_file_range
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    data = png_bytes((64, 48), (9, 8, 7))
    for name, content in (("good.png", data), ("again.png", data), ("text.png", b"no image")):
        (layout.root / name).write_bytes(content)

    results = [
        app.ingest.ingest_file(layout.root / name, layout)
        for name in ("good.png", "again.png", "text.png")
    ]

    assert [r.outcome for r in results] == ["ingested", "duplicate", "failed"]
    assert app.images.read(results[0].sha256 or "") == data
    assert (layout.processed / "good.png").read_bytes() == data
    staging = app.settings.images_dir / ".staging"
    assert not staging.exists() or not any(staging.iterdir())
    stored = [p for p in app.settings.images_dir.rglob("*") if p.is_file()]
    assert len(stored) == 1


def test_the_same_bytes_under_another_name_are_a_duplicate(app: Application, log: EventLog) -> None:
    data = png_bytes((40, 30), (1, 2, 3))
    folder = folder_of(app)
    app.watcher.start()
    (folder / "first.png").write_bytes(data)
    first = log.wait_finished("first.png")["first.png"]
    (folder / "again.png").write_bytes(data)
    again = log.wait_finished("again.png")["again.png"]

    assert first.outcome == "ingested" and again.outcome == "duplicate"
    assert again.patient_id == first.patient_id
    assert patient_count(app) == 1 and len(log.of(ev.PatientCreated)) == 1
    assert (folder / "processed" / "again (duplicate).png").read_bytes() == data
    assert not (folder / "again.png").exists()
    row = ingest_row(app, first.sha256 or "")
    assert row is not None and row.duplicate_count == 1
    messages = [n.message for n in app.notifications.list_notifications().items]
    assert any("already taken in" in text for text in messages)


@pytest.fixture
def india_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[timezone]:
    """This computer's zone is UTC+05:30 (a POSIX TZ rule: no zone database needed)."""
    if not hasattr(time, "tzset"):
        pytest.skip("the zone cannot be changed here")
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield timezone(timedelta(hours=5, minutes=30))
    monkeypatch.undo()
    time.tzset()


def test_a_duplicate_says_when_it_was_taken_in_in_local_time(
    app: Application, log: EventLog, india_time: timezone
) -> None:
    """The notification said the first ingest's time in UTC ("on 2026-05-09 08:33 UTC")
    beside its own time in local time, and the reason file local time: a clinician in
    UTC+05:30 read a time five and a half hours off. Now local, with the offset."""
    data = png_bytes((40, 30), (7, 8, 9))
    folder = folder_of(app)
    app.watcher.start()
    (folder / "first.png").write_bytes(data)
    first = log.wait_finished("first.png")["first.png"]
    (folder / "again.png").write_bytes(data)
    assert log.wait_finished("again.png")["again.png"].outcome == "duplicate"

    row = ingest_row(app, first.sha256 or "")
    assert row is not None
    local = row.created_at.astimezone(india_time).strftime("%Y-%m-%d %H:%M")
    messages = [n.message for n in app.notifications.list_notifications().items]
    said = [text for text in messages if "already taken in" in text]
    assert len(said) == 1
    assert f" on {local} (UTC+05:30); " in said[0]


def test_a_file_named_after_a_patient_is_attached_to_them(
    app: Application, log: EventLog, actor: Actor
) -> None:
    patient = app.patients.create_patient({"name": "Known Patient"}, actor=actor)
    name = f"{patient.id}_OD_macula_oct.png"
    app.watcher.start()
    (folder_of(app) / name).write_bytes(png_bytes((48, 48)))
    result = log.wait_finished(name)[name]

    assert result.outcome == "attached" and result.patient_id == patient.id
    assert patient_count(app) == 1 and len(log.of(ev.PatientCreated)) == 1  # the test's own
    assert [e.patient.id for e in log.of(ev.PatientUpdated)] == [patient.id]
    scan = app.patients.list_scans(patient.id)[0]
    assert (scan.laterality, scan.modality) == ("OD", "OCT")
    assert app.jobs.get_job(result.job_id or 0).scan_id == scan.id
    assert app.patients.get_patient(patient.id).name == "Known Patient"


def test_a_demo_patient_s_first_name_agrees_with_the_sex_given() -> None:
    """The demo patients are to be plausible, as the seed's were: "Omar …, Female" and
    "Amelia …, Male" were made (the name and the sex were drawn apart)."""
    rng = random.Random(7)
    first_names: dict[str, set[str]] = {"Male": set(), "Female": set()}
    for _ in range(400):
        fields = demo_patient_fields(rng)
        first_names[fields["gender"]].add(fields["name"].split()[0])

    assert first_names["Male"] and first_names["Female"]
    assert not first_names["Male"] & first_names["Female"]
    assert not first_names["Male"] & {"Amelia", "Sofia", "Fatima", "Aisha", "Hannah"}
    assert not first_names["Female"] & {"Omar", "Kenji", "Lucas", "Samuel", "Pierre"}


def test_without_demo_mode_a_file_needs_a_known_patient_id(tmp_path: Path) -> None:
    app = build_watch_app(tmp_path, watch_demo_mode=False)
    log = EventLog(app.bus)
    folder = folder_of(app)
    try:
        app.watcher.start()
        (folder / "anonymous.png").write_bytes(png_bytes((20, 20), (5, 5, 5)))
        (folder / "pt-000000000000_OD.png").write_bytes(png_bytes((20, 20), (6, 6, 6)))
        done = log.wait_finished("anonymous.png", "pt-000000000000_OD.png")
    finally:
        app.close()
    assert done["anonymous.png"].outcome == "failed"
    assert "no patient id in the file name" in (done["anonymous.png"].reason or "")
    assert done["pt-000000000000_OD.png"].outcome == "failed"
    assert "pt-000000000000" in (done["pt-000000000000_OD.png"].reason or "")
    assert (folder / "failed" / "anonymous.png.reason.txt").is_file()
    assert patient_count(app) == 0


def test_a_refused_file_that_comes_back_takes_over_its_ingest_record(tmp_path: Path) -> None:
    app = build_watch_app(tmp_path, watch_demo_mode=False)
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    data = png_bytes((20, 20), (7, 7, 7))
    name = "pt-00000000abcd_OD_OCT.png"
    try:
        (layout.root / name).write_bytes(data)
        first = app.ingest.ingest_file(layout.root / name, layout)
        assert first.outcome is IngestOutcome.FAILED
        app.patients.create_patient(
            {"name": "Came Later"}, actor=Actor("t", "test"), patient_id="pt-00000000abcd"
        )
        (layout.root / name).write_bytes(data)  # the device sends it again
        second = app.ingest.ingest_file(layout.root / name, layout)
        with app.db.session() as session:
            records = list(session.scalars(select(m.IngestedFile)))
    finally:
        app.close()
    assert second.outcome is IngestOutcome.ATTACHED
    assert second.patient_id == "pt-00000000abcd"
    (record,) = records  # the refusal's record, now the ingest's
    assert (record.outcome, record.reason, record.patient_id, record.scan_id, record.job_id) == (
        "attached",
        None,
        "pt-00000000abcd",
        second.scan_id,
        second.job_id,
    )


def test_files_dropped_while_stopped_are_taken_in_at_the_next_start(
    app: Application, log: EventLog
) -> None:
    folder = folder_of(app)
    app.watcher.start()
    (folder / "before.png").write_bytes(png_bytes((10, 10), (9, 9, 9)))
    log.wait_finished("before.png")
    app.watcher.stop()

    names = [f"waiting {i}.png" for i in range(3)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(png_bytes((10, 10), (i, 100, 0)))
    assert app.watcher.state == "stopped" and len(log.finished()) == 1
    app.watcher.start()
    done = log.wait_finished(*names)

    assert {done[n].outcome for n in names} == {"ingested"}
    assert patient_count(app) == 4
    assert sorted(p.name for p in (folder / "processed").iterdir()) == sorted(
        ["before.png", *names]
    )


class _Killed(BaseException):
    """The process dying (as a kill would): nothing after it runs."""


def _die_before_the_move(*_args: object, **_options: object) -> None:
    raise _Killed


def _crash_before_the_move(tmp_path: Path, name: str, data: bytes) -> tuple[Path, Application]:
    """``name`` taken in (or refused) and recorded, the process dying before its move;
    the watch folder, and the application started again on the same data."""
    first = build_watch_app(tmp_path)
    folder = folder_of(first)
    layout = FolderLayout.under(folder)
    layout.ensure()
    (folder / name).write_bytes(data)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(IngestService, "_move", staticmethod(_die_before_the_move))
            with pytest.raises(_Killed):
                first.ingest.ingest_file(folder / name, layout)
    finally:
        first.close()
    assert (folder / name).read_bytes() == data  # still waiting in the folder
    return folder, build_watch_app(tmp_path)


#: The crash repairs that tell the file a crash left by its change time (not Windows').
_CHANGE_TIME_NEEDED = pytest.mark.skipif(
    not ingest_module.CHANGE_TIME_IS_KNOWN, reason="st_ctime is the creation time here"
)


def _notes(app: Application) -> list[str]:
    return [n.message for n in app.notifications.list_notifications(limit=50).items]


@_CHANGE_TIME_NEEDED
def test_a_crash_between_commit_and_move_makes_no_second_patient_and_no_duplicate(
    tmp_path: Path,
) -> None:
    """Issue #4: a file half-moved by a crash is handled at the next start without a
    duplicate. It was filed as ``<name> (duplicate)`` with an "already taken in"
    notification, for a file copied in once."""
    data = png_bytes((30, 30), (50, 60, 70))
    folder, second = _crash_before_the_move(tmp_path, "interrupted.png", data)
    log = EventLog(second.bus)
    try:
        (before,) = second.patients.list_patients(limit=5).items
        second.watcher.start()
        result = log.wait_finished("interrupted.png")["interrupted.png"]
        notes = _notes(second)
        record = ingest_row(second, hashlib.sha256(data).hexdigest())
        assert patient_count(second) == 1 and not log.of(ev.PatientCreated)
    finally:
        second.close()
    assert result.outcome == "ingested" and result.patient_id == before.id
    assert result.scan_id is not None and result.job_id is not None
    assert [n for n in notes if "already taken in" in n] == [] and len(notes) == 1
    assert not log.of(ev.NotificationCreated)
    assert record is not None and record.duplicate_count == 0
    assert not (folder / "interrupted.png").exists()
    assert {p.name: p.read_bytes() for p in (folder / "processed").iterdir()} == {
        "interrupted.png": data
    }


@_CHANGE_TIME_NEEDED
def test_a_crash_between_a_refusal_and_its_move_notifies_it_once(tmp_path: Path) -> None:
    """The refusal is recorded and notified before the move: a crash between the two
    refused the file again at the next start, notified twice. Its recorded refusal is
    recognised now: the file is moved with its reason, and nobody is told twice."""
    folder, second = _crash_before_the_move(tmp_path, "bad.png", b"not an image")
    log = EventLog(second.bus)
    try:
        second.watcher.start()
        result = log.wait_finished("bad.png")["bad.png"]
        notes = _notes(second)
        record = ingest_row(second, hashlib.sha256(b"not an image").hexdigest())
    finally:
        second.close()
    assert result.outcome == "failed" and result.moved_to == "failed/bad.png"
    assert notes == [
        "bad.png from the watch folder was not taken in: the file is not an image that can "
        "be read; use PNG, JPEG, WebP, BMP or TIFF. Moved to failed/, where its .reason.txt "
        "file says how to take it in."
    ]
    assert not log.of(ev.NotificationCreated)
    assert record is not None and record.duplicate_count == 0
    assert sorted(p.name for p in (folder / "failed").iterdir()) == [
        "bad.png",
        "bad.png" + REASON_SUFFIX,
    ]
    reason = (folder / "failed" / ("bad.png" + REASON_SUFFIX)).read_text(encoding="utf-8")
    assert reason.startswith("Not taken in: the file is not an image that can be read;")


@_CHANGE_TIME_NEEDED
@pytest.mark.parametrize("copy", ["copy.png", " copy.png"])
def test_a_crash_between_a_duplicate_and_its_move_tells_it_once(tmp_path: Path, copy: str) -> None:
    """A copy of bytes taken in is recorded and told ("already taken in") before its
    move: a crash between the two told it again at the next start, and counted it twice
    (the stress run of kill -9 in bursts: 4 copies in 147). The very file a crash left
    is only moved now, also where its name starts with a space (the notification's text
    is stored stripped)."""
    data = png_bytes((30, 30), (7, 8, 9))
    first = build_watch_app(tmp_path)
    folder = folder_of(first)
    layout = FolderLayout.under(folder)
    layout.ensure()
    (folder / "original.png").write_bytes(data)
    (folder / copy).write_bytes(data)
    try:
        assert first.ingest.ingest_file(folder / "original.png", layout).moved_to is not None
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(IngestService, "_move", staticmethod(_die_before_the_move))
            with pytest.raises(_Killed):
                first.ingest.ingest_file(folder / copy, layout)
    finally:
        first.close()
    second = build_watch_app(tmp_path)
    log = EventLog(second.bus)
    try:
        assert len([n for n in _notes(second) if "already taken in" in n]) == 1
        second.watcher.start()
        result = log.wait_finished(copy)[copy]
        notes = _notes(second)
        record = ingest_row(second, hashlib.sha256(data).hexdigest())
    finally:
        second.close()
    filed = copy.replace(".png", " (duplicate).png")
    assert result.outcome == "duplicate" and result.moved_to == f"processed/{filed}"
    assert len([n for n in notes if "already taken in" in n]) == 1
    assert not log.of(ev.NotificationCreated)
    assert record is not None and record.duplicate_count == 1
    assert sorted(p.name for p in (folder / "processed").iterdir()) == sorted(
        [filed, "original.png"]
    )


def _make_unreadable(folder: Path, kind: str) -> str:
    """A file refused before it could be read, in ``folder``; its name."""
    if kind == "link":
        outside = folder.parent / "outside.png"
        outside.write_bytes(png_bytes())
        (folder / "link.png").symlink_to(outside)
        return "link.png"
    if kind == "fifo":
        os.mkfifo(folder / "pipe.png")
        return "pipe.png"
    (folder / "large.png").write_bytes(png_bytes() + bytes(4096))  # over 1 KiB
    return "large.png"


@_CHANGE_TIME_NEEDED
@pytest.mark.parametrize("kind", ["link", "fifo", "too large"])
def test_a_crash_between_the_refusal_of_an_unread_file_and_its_move_notifies_it_once(
    tmp_path: Path, kind: str
) -> None:
    """Files refused before they could be read (links, FIFOs, files too large) kept no
    record: a crash between their notification and their move notified them again at
    the next start. Their refusal is recognised now (by the file's identity and change
    time, not its bytes or name), the file moved with its reason, nobody told twice."""
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    first = build_watch_app(tmp_path, max_image_bytes=1024)
    folder = folder_of(first)
    layout = FolderLayout.under(folder)
    layout.ensure()
    name = _make_unreadable(folder, kind)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(IngestService, "_move", staticmethod(_die_before_the_move))
            with pytest.raises(_Killed):
                first.ingest.ingest_file(folder / name, layout)
    finally:
        first.close()
    second = build_watch_app(tmp_path, max_image_bytes=1024)
    log = EventLog(second.bus)
    try:
        assert len(_notes(second)) == 1
        second.watcher.start()
        result = log.wait_finished(name)[name]
        notes = _notes(second)
    finally:
        second.close()
    assert result.outcome == "failed" and result.moved_to == f"failed/{name}"
    assert len(notes) == 1 and notes[0].startswith(f"{name} from the watch folder was not")
    assert not log.of(ev.NotificationCreated)
    assert sorted(p.name for p in (folder / "failed").iterdir()) == [name, name + REASON_SUFFIX]


@_CHANGE_TIME_NEEDED
def test_an_unread_file_refused_again_under_the_same_name_is_told_again(
    app: Application, log: EventLog
) -> None:
    """Only the very file a crash left is filed silently: a new link under the name of
    one refused before is a new refusal, told."""
    folder = folder_of(app)
    FolderLayout.under(folder).ensure()
    app.watcher.start()
    _make_unreadable(folder, "link")
    assert log.wait_finished("link.png")["link.png"].moved_to == "failed/link.png"
    (folder / "link.png").symlink_to(folder.parent / "outside.png")
    assert wait_until(lambda: len(log.of(ev.IngestFinished)) == 2)
    moved = [e.moved_to for e in log.of(ev.IngestFinished)]
    assert moved == ["failed/link.png", "failed/link (1).png"]
    assert len(log.of(ev.NotificationCreated)) == 2


@pytest.mark.parametrize(
    ("data", "said", "times"),
    [
        (png_bytes((30, 30), (1, 2, 3)), "already taken in", 1),
        (b"not an image", "was not taken in", 2),
    ],
    ids=["processed", "failed"],
)
def test_the_same_file_copied_in_again_under_its_name_is_still_told(
    app: Application, log: EventLog, data: bytes, said: str, times: int
) -> None:
    """Only the very file a crash left behind is filed silently: a copy made later (a
    new inode, changed after the record) is a duplicate or a refusal told again."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    (layout.root / "again.png").write_bytes(data)
    first = app.ingest.ingest_file(layout.root / "again.png", layout)
    assert first.moved_to is not None
    time.sleep(0.02)  # past the file system's clock tick (its times are coarse)
    (layout.root / "again.png").write_bytes(data)

    second = app.ingest.ingest_file(layout.root / "again.png", layout)

    assert second.outcome == ("duplicate" if said == "already taken in" else "failed")
    assert len([n for n in _notes(app) if said in n]) == times


@pytest.mark.parametrize(
    ("data", "said", "times"),
    [
        (png_bytes((30, 30), (4, 5, 6)), "already taken in", 1),
        (b"not an image", "was not taken in", 2),
    ],
    ids=["processed", "failed"],
)
def test_where_the_change_time_is_the_creation_time_a_file_moved_back_is_still_told(
    app: Application, monkeypatch: pytest.MonkeyPatch, data: bytes, said: str, times: int
) -> None:
    """On Windows ``st_ctime`` is when the file was created, which a move keeps: a file
    taken in, then moved back from ``processed/`` under its name, has a time earlier
    than its record, as the file a crash left has. It was filed with nobody told; where
    the change time is not known it is a duplicate (or refused again), and said so."""
    monkeypatch.setattr(ingest_module, "CHANGE_TIME_IS_KNOWN", False, raising=False)
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    path = layout.root / "moved.png"
    path.write_bytes(data)
    first = app.ingest.ingest_file(path, layout)
    assert first.moved_to is not None
    # The file's time, kept by the move, is now earlier than its record's (on Linux,
    # where the rename sets it, the record is dated later instead).
    later = m.utcnow() + timedelta(hours=1)
    with app.db.session() as session:
        session.execute(
            update(m.IngestedFile)
            .where(m.IngestedFile.sha256 == hashlib.sha256(data).hexdigest())
            .values(created_at=later, last_seen_at=later)
        )
    os.rename(first.moved_to, path)

    second = app.ingest.ingest_file(path, layout)

    assert second.outcome == ("duplicate" if said == "already taken in" else "failed")
    assert len([n for n in _notes(app) if said in n]) == times


def _restamp(path: Path) -> None:
    """What ``shutil.copy2`` (or ``touch``, or a sync tool) does once it has closed the
    file: set its times (here the source's, an hour earlier). Same bytes, same inode.

    Once the file system's clock has passed now: it is coarse (a tick behind), and a
    change time earlier than the record's reads as the file a crash left."""
    now_ns = time.time_ns()
    probe = path.parent.parent / "clock-probe"
    while True:
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > now_ns:
            break
    earlier = path.stat().st_mtime_ns - 3600 * 10**9
    os.utime(path, ns=(earlier, earlier))


def _once_on(app: Application, kind: type[ev.Event], action: Callable[[], None]) -> None:
    """Run ``action`` in the ingest's own thread when it first publishes a ``kind``
    event: after its commit (or its duplicate notice), before its move."""
    done: list[bool] = []

    def subscriber(event: ev.Event) -> None:
        if isinstance(event, kind) and not done:
            done.append(True)
            action()

    app.bus.subscribe(subscriber)


def test_a_file_re_stamped_after_it_was_taken_in_is_filed_under_its_own_name(
    app: Application, log: EventLog
) -> None:
    """A writer that sets the file's times after closing it (``shutil.copy2``) changed
    it between the commit and the move: the file was left in the folder, taken again,
    and filed as ``<name> (duplicate)`` with an "already taken in" notice for a file
    copied in once. The app knows it took in these very bytes of this very file: it is
    moved under its own name, nobody told twice."""
    folder = folder_of(app)
    path = folder / "copied.png"
    data = png_bytes((30, 30), (11, 12, 13))
    _once_on(app, ev.ScanIngested, lambda: _restamp(path))
    app.watcher.start()
    path.write_bytes(data)

    assert wait_until(lambda: len(log.of(ev.IngestFinished)) == 2)
    first, again = log.of(ev.IngestFinished)

    assert first.outcome == "ingested" and first.moved_to == ""  # changed: left
    assert again.outcome == "ingested" and again.moved_to == "processed/copied.png"
    assert (again.patient_id, again.scan_id, again.job_id) == (
        first.patient_id,
        first.scan_id,
        first.job_id,
    )
    assert [n for n in _notes(app) if "already taken in" in n] == []
    assert len(log.of(ev.NotificationCreated)) == 1 and patient_count(app) == 1
    record = ingest_row(app, hashlib.sha256(data).hexdigest())
    assert record is not None and record.duplicate_count == 0
    assert {p.name: p.read_bytes() for p in (folder / "processed").iterdir()} == {
        "copied.png": data
    }
    assert not path.exists()


def test_a_duplicate_re_stamped_after_its_notice_is_told_once(app: Application) -> None:
    """The same for a real copy: it is told "already taken in" once, counted once, and
    filed as ``<name> (duplicate)``; it was told and counted again."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    data = png_bytes((30, 30), (14, 15, 16))
    (layout.root / "original.png").write_bytes(data)
    assert app.ingest.ingest_file(layout.root / "original.png", layout).moved_to is not None
    path = layout.root / "copy.png"
    path.write_bytes(data)
    _once_on(app, ev.NotificationCreated, lambda: _restamp(path))

    first = app.ingest.ingest_file(path, layout)
    again = app.ingest.ingest_file(path, layout)

    assert first.outcome == "duplicate" and first.moved_to is None
    assert again.outcome == "duplicate"
    assert again.moved_to == layout.processed / "copy (duplicate).png"
    assert len([n for n in _notes(app) if "already taken in" in n]) == 1
    record = ingest_row(app, hashlib.sha256(data).hexdigest())
    assert record is not None and record.duplicate_count == 1
    assert sorted(p.name for p in layout.processed.iterdir()) == [
        "copy (duplicate).png",
        "original.png",
    ]


def _rewrite(path: Path, data: bytes) -> None:
    path.write_bytes(data)  # in place: the same inode


def _replace(path: Path, data: bytes) -> None:
    path.with_name("replacing.tmp").write_bytes(data)
    os.replace(path.with_name("replacing.tmp"), path)  # another file under the name


@pytest.mark.parametrize(
    ("change", "same_bytes", "outcome"),
    [(_rewrite, False, "ingested"), (_replace, True, "duplicate")],
    ids=["rewritten with other bytes", "replaced by another file of the same bytes"],
)
def test_a_file_changed_after_it_was_taken_in_is_still_taken_as_it_is_now(
    app: Application,
    change: Callable[[Path, bytes], None],
    same_bytes: bool,
    outcome: str,
) -> None:
    """Only the very file taken in, with the very bytes, is filed silently: one its
    writer rewrote is new, and another file put in its place with the same bytes is a
    duplicate, told."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    path = layout.root / "export.png"
    data = png_bytes((30, 30), (17, 18, 19))
    other = data if same_bytes else png_bytes((30, 30), (20, 21, 22))
    path.write_bytes(data)
    _once_on(app, ev.ScanIngested, lambda: change(path, other))

    first = app.ingest.ingest_file(path, layout)
    again = app.ingest.ingest_file(path, layout)

    assert first.outcome == "ingested" and first.moved_to is None
    assert again.outcome == outcome and again.moved_to is not None
    assert again.moved_to.read_bytes() == other
    said = [n for n in _notes(app) if "already taken in" in n]
    assert len(said) == (1 if outcome == "duplicate" else 0)
    assert patient_count(app) == (1 if same_bytes else 2)


#: Run in a child process: take one file in, dying (as a power cut or a kill would, with
#: no clean-up) in the middle of its move, between the claim of its new name and the
#: rename over it.
_DIE_IN_THE_MOVE = """
import os, sys
from pathlib import Path
from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core.services.ingest import FolderLayout
from ophthai_desktop.core.settings import Settings

settings = Settings(data_dir=Path(sys.argv[1]), watch_folder_enabled=True, _env_file=None)
app = build_application(settings)
layout = FolderLayout.under(settings.resolved_watch_folder)
replace = os.replace


def die_moving_in(src, dst, **options):
    if Path(dst).parent in (layout.processed, layout.failed):
        os._exit(9)
    replace(src, dst, **options)


os.replace = die_moving_in
app.ingest.ingest_file(layout.root / sys.argv[2], layout)
"""


@pytest.mark.parametrize(
    ("data", "folder_name"),
    [(png_bytes((30, 30), (90, 10, 10)), "processed"), (b"not an image", "failed")],
    ids=["processed", "failed"],
)
def test_a_crash_in_the_middle_of_a_move_leaves_no_empty_file_and_loses_nothing(
    tmp_path: Path, data: bytes, folder_name: str
) -> None:
    import subprocess
    import sys

    settings = build_watch_app(tmp_path).settings
    folder = settings.resolved_watch_folder
    FolderLayout.under(folder).ensure()
    (folder / "Jane Doe_OD.png").write_bytes(data)
    child = subprocess.run(
        [sys.executable, "-c", _DIE_IN_THE_MOVE, str(settings.data_dir), "Jane Doe_OD.png"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == 9, child.stderr.decode()
    # What the crash left: the file where it was, and its new name claimed, empty.
    assert (folder / "Jane Doe_OD.png").read_bytes() == data
    assert (folder / folder_name / "Jane Doe_OD.png").stat().st_size == 0

    second = build_watch_app(tmp_path)  # the next start, on the same data
    log = EventLog(second.bus)
    try:
        second.watcher.start()
        result = log.wait_finished("Jane Doe_OD.png")["Jane Doe_OD.png"]
        assert wait_until(second.watcher.is_idle)
        notes = _notes(second)
    finally:
        second.close()
    assert not (folder / "Jane Doe_OD.png").exists()
    assert len(notes) == 1  # told when it was taken in or refused, not again
    kept = {p.name: p.read_bytes() for p in (folder / folder_name).iterdir()}
    if folder_name == "processed":
        # Committed before the crash: taken in once, filed under its own name.
        assert result.outcome == "ingested" and patient_count(second) == 1
        assert kept == {"Jane Doe_OD.png": data}
    else:
        # Filed under its own name, with its reason beside it.
        assert result.outcome == "failed" and patient_count(second) == 0
        assert kept["Jane Doe_OD.png"] == data
        assert set(kept) == {"Jane Doe_OD.png", "Jane Doe_OD.png" + REASON_SUFFIX}
    assert not [p for p in (folder / "processed").iterdir() if p.stat().st_size == 0]


#: Run in a child process: refuse one file, dying (as a kill would) the moment it has
#: been renamed into failed/.
_DIE_ONCE_IN_FAILED = """
import os, sys
from pathlib import Path
from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core.services.ingest import FolderLayout
from ophthai_desktop.core.settings import Settings

settings = Settings(data_dir=Path(sys.argv[1]), watch_folder_enabled=True, _env_file=None)
app = build_application(settings)
layout = FolderLayout.under(settings.resolved_watch_folder)
replace = os.replace


def die_once_moved(src, dst, **options):
    replace(src, dst, **options)
    if Path(dst).parent == layout.failed:
        os._exit(9)


os.replace = die_once_moved
app.ingest.ingest_file(layout.root / sys.argv[2], layout)
"""


def test_a_refused_file_is_recorded_and_notified_before_it_leaves_the_folder(
    tmp_path: Path,
) -> None:
    """Found by killing ``ophthai serve`` in a burst (tests/e2e/test_e2e_watch_kill.py):
    a kill right after a refused file reached failed/ left it there with nobody told (no
    notification, no ingest record). As a scan is committed before its move, the refusal
    is now committed before the file leaves the watch folder."""
    import subprocess
    import sys

    settings = build_watch_app(tmp_path).settings
    folder = settings.resolved_watch_folder
    FolderLayout.under(folder).ensure()
    data = b"not an image"
    (folder / "bad.png").write_bytes(data)
    child = subprocess.run(
        [sys.executable, "-c", _DIE_ONCE_IN_FAILED, str(settings.data_dir), "bad.png"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == 9, child.stderr.decode()
    assert (folder / "failed" / "bad.png").read_bytes() == data

    after = build_watch_app(tmp_path)  # the next start, on the same data
    try:
        record = ingest_row(after, hashlib.sha256(data).hexdigest())
        notes = after.notifications.list_notifications(limit=10).items
    finally:
        after.close()
    assert record is not None and record.outcome == "failed" and record.reason
    assert [n.message for n in notes] == [
        "bad.png from the watch folder was not taken in: the file is not an image that can "
        "be read; use PNG, JPEG, WebP, BMP or TIFF. Moved to failed/, where its .reason.txt "
        "file says how to take it in."
    ]


#: Run in a child process: refuse one file, dying (as a kill would) part way through
#: writing its reason file.
_DIE_WRITING_THE_REASON = """
import os, sys
from pathlib import Path
from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core.services import ingest
from ophthai_desktop.core.services.ingest import FolderLayout
from ophthai_desktop.core.settings import Settings

settings = Settings(data_dir=Path(sys.argv[1]), watch_folder_enabled=True, _env_file=None)
app = build_application(settings)
layout = FolderLayout.under(settings.resolved_watch_folder)
write_private_file = ingest.write_private_file


def die_half_written(path, data):
    write_private_file(path, data[:10])
    os._exit(9)


ingest.write_private_file = die_half_written
app.ingest.ingest_file(layout.root / sys.argv[2], layout)
"""


def _refuse_and_die(tmp_path: Path, script: str) -> tuple[Path, Application]:
    """``bad.png`` refused by a child process that ``script`` kills part way; the
    watch folder, and the application started again on the same data."""
    import subprocess
    import sys

    settings = build_watch_app(tmp_path).settings
    folder = settings.resolved_watch_folder
    FolderLayout.under(folder).ensure()
    (folder / "bad.png").write_bytes(b"not an image")
    child = subprocess.run(
        [sys.executable, "-c", script, str(settings.data_dir), "bad.png"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == 9, child.stderr.decode()
    return folder, build_watch_app(tmp_path)


def test_a_kill_just_after_a_refused_file_reached_failed_leaves_its_reason_beside_it(
    tmp_path: Path,
) -> None:
    """Found by the kill -9 e2e test failing now and then: the reason file was written
    after the move, so a kill between the two left the file in failed/ without one (or
    with an empty one). It is written before the move now."""
    folder, after = _refuse_and_die(tmp_path, _DIE_ONCE_IN_FAILED)
    after.close()
    reason = (folder / "failed" / "bad.png.reason.txt").read_text(encoding="utf-8")
    assert reason.startswith("Not taken in: the file is not an image that can be read;")


def test_a_kill_while_the_reason_is_written_refuses_the_file_again_at_the_next_start(
    tmp_path: Path,
) -> None:
    """The file has not left the watch folder yet: the next start deletes the claimed
    name and the half-written reason beside it, and refuses the file again, whole."""
    folder, after = _refuse_and_die(tmp_path, _DIE_WRITING_THE_REASON)
    try:
        layout = FolderLayout.under(folder)
        remove_stale_claims(layout)  # as the watcher does at its start
        if (folder / "bad.png").exists():
            after.ingest.ingest_file(folder / "bad.png", layout)
    finally:
        after.close()
    assert sorted(p.name for p in (folder / "failed").iterdir()) == [
        "bad.png",
        "bad.png.reason.txt",
    ]
    reason = (folder / "failed" / "bad.png.reason.txt").read_text(encoding="utf-8")
    assert reason.startswith("Not taken in: the file is not an image that can be read;")
    assert (folder / "failed" / "bad.png").read_bytes() == b"not an image"


class _Killed(BaseException):
    """The process dying at that point (nothing catches it)."""


@pytest.mark.skipif(os.name == "nt", reason="Windows moves without claiming the name")
def test_an_empty_file_without_permissions_stays_in_failed_across_restarts(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos run of issue #4: an empty file without permissions (a writer
    that creates a file before it sets its mode) was refused into failed/ keeping its
    mode, and the next start took it for a name claim left by a crash and deleted it
    with its reason file. Killed once between its refusal's record and its move, it is
    still filed once, told once, and kept by the starts after."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    source = layout.root / "blank.png"
    source.touch()
    source.chmod(0)

    def die(path: Path, folder: Path, name: str, **options: object) -> Path:
        raise _Killed

    with monkeypatch.context() as patched:
        patched.setattr(ingest_module, "move_without_overwrite", die)
        with pytest.raises(_Killed):
            app.ingest.ingest_file(source, layout)
    remove_stale_claims(layout)  # the next start
    result = app.ingest.ingest_file(source, layout)
    remove_stale_claims(layout)  # and the one after

    assert result.outcome == "failed"
    assert sorted(p.name for p in layout.failed.iterdir()) == ["blank.png", "blank.png.reason.txt"]
    assert (layout.failed / "blank.png").read_bytes() == b""
    notes = [n.message for n in app.notifications.list_notifications().items]
    assert len(notes) == 1 and notes[0].startswith("blank.png from the watch folder was not")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_an_empty_file_without_permissions_of_another_account_is_no_claim(
    tmp_path: Path,
) -> None:
    """The app claims names as its own account: another's empty file without permissions
    in failed/ (one the app could not give a permission) is a refused file, kept."""
    layout = FolderLayout.under(tmp_path / "watch")
    layout.ensure()
    theirs, claim = layout.failed / "theirs.png", layout.failed / "claim.png"
    for path in (theirs, claim):
        path.touch()
        path.chmod(0)
    os.chown(theirs, 4321, 4321)

    assert remove_stale_claims(layout) == 1
    assert [p.name for p in layout.failed.iterdir()] == ["theirs.png"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_file_the_app_may_not_read_says_whose_permission_to_fix(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device or share that writes scans as another account without read permission
    for the app's: the file went to failed/ saying "it cannot be read (Permission
    denied)" and to fix it or export it from the device again, which only brings the
    next one there the same way. The reason names the permission and how to give it."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    source = layout.root / "scan_OD.png"
    source.write_bytes(png_bytes((10, 10), (7, 7, 7)))
    source.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway: the kernel's answer to any other account
        real_open = os.open

        def refused(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if Path(path) == source:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refused)

    result = app.ingest.ingest_file(source, layout)
    monkeypatch.undo()

    assert result.outcome == "failed" and (layout.failed / "scan_OD.png").is_file()
    reason = (layout.failed / ("scan_OD.png" + REASON_SUFFIX)).read_text(encoding="utf-8")
    assert "not allowed to read it (Permission denied)" in reason
    assert "give it read permission" in reason and "export it from the device" not in reason
    assert patient_count(app) == 0


def test_a_refused_file_that_cannot_be_moved_says_so(
    app: Application, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ophthai_desktop.core.services import ingest as ingest_module

    def refuse_move(path: Path, folder: Path, name: str, **options: object) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ingest_module, "move_without_overwrite", refuse_move)
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    (layout.root / "bad.png").write_bytes(b"not an image")

    result = app.ingest.ingest_file(layout.root / "bad.png", layout)

    assert result.outcome == "failed" and result.moved_to is None
    said = "bad.png from the watch folder was not taken in: the file is not an image that can "
    said += "be read; use PNG, JPEG, WebP, BMP or TIFF. It could not be moved to failed/."
    assert [n.message for n in app.notifications.list_notifications().items] == [said]
    assert [e.notification.message for e in log.of(ev.NotificationCreated)] == [said]


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_reason_file_is_readable_by_its_owner_only_and_does_not_repeat_the_name(
    app: Application,
) -> None:
    """The reason sits beside the file, so the name it repeated told nothing more, and a
    file name often holds a patient's: the reason file was created 0644 by the umask,
    readable by every account, with the name in it. It is 0600 now, and says why, when
    and what to do without the name."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    name = "Jane Doe_1961-04-02_OD.png"
    (layout.root / name).write_bytes(b"not an image")
    umask = os.umask(0o022)
    try:
        result = app.ingest.ingest_file(layout.root / name, layout)
    finally:
        os.umask(umask)
    assert result.moved_to == layout.failed / name
    reason_file = layout.failed / (name + REASON_SUFFIX)
    assert oct(reason_file.stat().st_mode & 0o777) == oct(0o600)
    text = reason_file.read_text(encoding="utf-8")
    assert "Jane" not in text and "1961" not in text
    assert text.startswith("Not taken in: the file is not an image that can be read;")
    assert "refused at: " in text
    # Local time with its offset, as the notifications say the time of a duplicate.
    assert re.search(r"refused at: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(UTC[+-]\d\d:\d\d\)\n", text)
    assert "copy it into the watch folder again" in text


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
@pytest.mark.parametrize(
    ("watch_mode", "umask"),
    [
        (0o731, 0o022),  # a drop box: others may write in, not list (by the umask: 0755)
        (0o770, 0o077),  # a group share: the group reads what is filed (by the umask: 0700)
    ],
)
def test_processed_and_failed_take_the_watch_folder_s_permissions(
    app: Application, tmp_path: Path, watch_mode: int, umask: int
) -> None:
    """processed/ and failed/ were made by the umask: in a drop box other accounts may
    write into but not list, they could list and read every file filed (names and
    images of patients); in a group share, the group could not read what it had put in.
    They now have the watch folder's own permissions, and keep them when they are made
    again while it runs."""
    layout = FolderLayout.under(tmp_path / "share")
    layout.root.mkdir()
    layout.root.chmod(watch_mode)
    old_umask = os.umask(umask)
    try:
        layout.ensure()
        assert oct(stat.S_IMODE(layout.processed.stat().st_mode)) == oct(watch_mode)
        assert oct(stat.S_IMODE(layout.failed.stat().st_mode)) == oct(watch_mode)

        layout.processed.rmdir()  # removed while the watch folder runs: made again
        layout.failed.rmdir()
        (layout.root / "scan.png").write_bytes(png_bytes((30, 30), (9, 9, 1)))
        (layout.root / "bad.png").write_bytes(b"not an image")
        filed = app.ingest.ingest_file(layout.root / "scan.png", layout)
        refused = app.ingest.ingest_file(layout.root / "bad.png", layout)
    finally:
        os.umask(old_umask)
        layout.root.chmod(0o700)
    assert filed.moved_to == layout.processed / "scan.png"
    assert refused.moved_to == layout.failed / "bad.png"
    assert oct(stat.S_IMODE(layout.processed.stat().st_mode)) == oct(watch_mode)
    assert oct(stat.S_IMODE(layout.failed.stat().st_mode)) == oct(watch_mode)
    reason_file = layout.failed / ("bad.png" + REASON_SUFFIX)
    assert oct(stat.S_IMODE(reason_file.stat().st_mode)) == oct(0o600)  # still private


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown as root")
def test_processed_and_failed_of_a_group_share_without_setgid_take_its_group(
    app: Application, tmp_path: Path
) -> None:
    """Without setgid on the watch folder, a folder made in it takes this account's
    group: given the watch folder's group rights, processed/ opened to that group (on
    some systems "users", everyone) and stayed shut to the share's own."""
    share_gid = 4242
    layout = FolderLayout.under(tmp_path / "share")
    layout.root.mkdir()
    os.chown(layout.root, -1, share_gid)
    layout.root.chmod(0o770)
    layout.ensure()
    for folder in (layout.processed, layout.failed):
        made = folder.stat()
        assert (made.st_gid, oct(stat.S_IMODE(made.st_mode))) == (share_gid, oct(0o770))


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_processed_and_failed_already_there_keep_their_mode(
    app: Application, tmp_path: Path
) -> None:
    """An administrator's choice for them stays."""
    layout = FolderLayout.under(tmp_path / "share")
    layout.processed.mkdir(parents=True)
    layout.root.chmod(0o775)
    layout.processed.chmod(0o750)
    layout.ensure()
    assert oct(stat.S_IMODE(layout.processed.stat().st_mode)) == oct(0o750)
    assert oct(stat.S_IMODE(layout.failed.stat().st_mode)) == oct(0o775)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_link_at_the_reason_files_name_is_not_written_through(app: Application) -> None:
    """A link left in failed/ under the reason file's name (a share's other accounts
    can write there) made the reason overwrite the file it pointed to."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    outside = layout.root.parent / "notes.txt"
    outside.write_text("kept", encoding="utf-8")
    (layout.failed / ("bad.png" + REASON_SUFFIX)).symlink_to(outside)
    (layout.root / "bad.png").write_bytes(b"not an image")

    result = app.ingest.ingest_file(layout.root / "bad.png", layout)

    assert result.moved_to == layout.failed / "bad.png"
    assert outside.read_text(encoding="utf-8") == "kept"
    reason_file = layout.failed / ("bad.png" + REASON_SUFFIX)
    assert not reason_file.is_symlink()
    assert reason_file.read_text(encoding="utf-8").startswith("Not taken in: ")


def test_a_duplicate_replaced_while_its_sighting_is_recorded_is_not_moved(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device writing the same name again: the new scan is taken in, never filed away
    in processed/ as a duplicate of the bytes it replaced."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    path = layout.root / "export.png"
    old, new = png_bytes((8, 8), (1, 1, 1)), png_bytes((8, 8), (2, 2, 2))
    path.write_bytes(old)
    app.ingest.ingest_file(path, layout)
    path.write_bytes(old)
    record_duplicate = IngestService._record_duplicate

    def replaced_meanwhile(self: IngestService, *args: Any) -> Any:
        note = record_duplicate(self, *args)
        path.with_name("export.tmp").write_bytes(new)
        os.replace(path.with_name("export.tmp"), path)
        return note

    monkeypatch.setattr(IngestService, "_record_duplicate", replaced_meanwhile)
    seen = app.ingest.ingest_file(path, layout)
    assert seen.outcome == "duplicate" and seen.moved_to is None
    assert path.read_bytes() == new
    monkeypatch.undo()
    assert app.ingest.ingest_file(path, layout).outcome == "ingested"
    assert not (layout.processed / "export (duplicate).png").exists()
    assert patient_count(app) == 2


def test_a_stored_copy_lost_in_a_crash_is_repaired_and_flushed_before_the_move(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power lost after the commit, before the stored image reached the disk: at the
    next start the source is found taken in, and its bytes replace the empty stored
    copy on disk before the source leaves the folder."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    path = layout.root / "interrupted.png"
    data = png_bytes((30, 30), (50, 60, 70))
    path.write_bytes(data)
    with monkeypatch.context() as patch:
        patch.setattr(IngestService, "_move", staticmethod(lambda *args: None))
        committed = app.ingest.ingest_file(path, layout)
    sha256 = committed.sha256 or ""
    app.images.path_for(sha256).write_bytes(b"")  # what the crash left of it
    synced: list[str] = []
    sync = app.images.sync
    monkeypatch.setattr(app.images, "sync", lambda sha: (synced.append(sha), sync(sha)))

    again = app.ingest.ingest_file(path, layout)

    assert again.outcome == "ingested" and again.moved_to is not None
    assert app.images.read(sha256) == data and synced == [sha256]


def test_two_ingests_of_the_same_bytes_at_once_make_one_patient(app: Application) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    same = png_bytes((16, 16), (7, 7, 7))
    names = [f"same-{i}.png" for i in range(4)] + [f"other-{i}.png" for i in range(4)]
    for i, name in enumerate(names):
        data = same if name.startswith("same") else noise_png((32, 32), seed=i)
        (layout.root / name).write_bytes(data)
    start = threading.Barrier(len(names))

    def ingest(name: str) -> IngestOutcome:
        start.wait()
        return app.ingest.ingest_file(layout.root / name, layout).outcome

    with ThreadPoolExecutor(len(names)) as pool:
        outcomes = dict(zip(names, pool.map(ingest, names), strict=True))

    same_outcomes = sorted(outcomes[n] for n in names if n.startswith("same"))
    assert same_outcomes == [IngestOutcome.DUPLICATE] * 3 + [IngestOutcome.INGESTED]
    assert all(outcomes[n] is IngestOutcome.INGESTED for n in names if n.startswith("other"))
    assert patient_count(app) == 5 and app.jobs.list_jobs().total == 5
    assert sorted(p.name for p in layout.processed.iterdir()) == sorted(
        n if outcomes[n] is IngestOutcome.INGESTED else n.replace(".png", " (duplicate).png")
        for n in names
    )


def _ingest_as_one_batch(
    app: Application, layout: FolderLayout, names: list[str]
) -> dict[str, IngestResult | Exception]:
    """Ingest ``names`` on threads of their own while the commit lock is held, then let
    go: the files wait together and one transaction takes them all."""
    results: dict[str, IngestResult | Exception] = {}

    def ingest(name: str) -> None:
        try:
            results[name] = app.ingest.ingest_file(layout.root / name, layout)
        except Exception as exc:
            results[name] = exc

    service = app.ingest
    with service._commit_lock:
        threads = [threading.Thread(target=ingest, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(service._queue) == len(names), timeout_s=10)
    for thread in threads:
        thread.join(10)
    return results


def test_files_ready_together_share_one_transaction(app: Application, log: EventLog) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    known = app.patients.create_patient({"name": "Known Patient"}, actor=Actor("t", "test"))
    same = noise_png((40, 40), seed=99)
    files = {
        "a.png": noise_png((40, 40), seed=1),
        "b_OD_OCT.png": noise_png((40, 40), seed=2),
        "twice-1.png": same,
        "twice-2.png": same,
        f"{known.id}_OS_fundus.png": noise_png((40, 40), seed=3),
    }
    for name, data in files.items():
        (layout.root / name).write_bytes(data)
    batches: list[int] = []
    real = IngestService._commit_batch

    def counting(self: IngestService, batch: list[object]) -> None:
        batches.append(len(batch))
        real(self, batch)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(IngestService, "_commit_batch", counting)
        results = _ingest_as_one_batch(app, layout, list(files))

    assert batches == [5]
    outcome = {name: r.outcome for name, r in results.items() if isinstance(r, IngestResult)}
    assert sorted(outcome[n] for n in ("twice-1.png", "twice-2.png")) == [
        IngestOutcome.DUPLICATE,
        IngestOutcome.INGESTED,
    ]
    assert outcome[f"{known.id}_OS_fundus.png"] is IngestOutcome.ATTACHED
    assert outcome["a.png"] is outcome["b_OD_OCT.png"] is IngestOutcome.INGESTED
    assert patient_count(app) == 4  # the known one and three new
    attached = results[f"{known.id}_OS_fundus.png"]
    assert isinstance(attached, IngestResult) and attached.patient_id == known.id
    assert app.patients.get_patient(known.id).scan_count == 1
    # Each new patient's event carries its scan, as a reader would see it.
    created = {
        e.patient.latest_scan.original_filename: e.patient
        for e in log.of(ev.PatientCreated)
        if e.patient.latest_scan is not None
    }
    assert set(created) == {"a.png", "b_OD_OCT.png", "twice-1.png"} or set(created) == {
        "a.png",
        "b_OD_OCT.png",
        "twice-2.png",
    }
    b = created["b_OD_OCT.png"]
    assert b.latest_scan is not None
    assert (b.scan_count, b.latest_scan.laterality, b.latest_scan.modality) == (1, "OD", "OCT")
    assert app.patients.get_patient(b.id) == b
    assert len(log.of(ev.PatientUpdated)) == 1 and len(log.of(ev.AnalysisQueued)) == 4
    # The attached patient's event is the record as read back, with its new scan.
    (updated,) = log.of(ev.PatientUpdated)
    assert updated.patient == app.patients.get_patient(known.id)
    assert updated.patient.latest_scan is not None
    assert updated.patient.latest_scan.original_filename == f"{known.id}_OS_fundus.png"
    # Every other record an event carries is the row as stored.
    stored_scans = {
        s.id: s for p in app.patients.list_patients().items for s in app.patients.list_scans(p.id)
    }
    for event in log.of(ev.ScanIngested):
        assert stored_scans[event.scan.id] == event.scan
    notes = {n.id: n for n in app.notifications.list_notifications(limit=50).items}
    for event in log.of(ev.NotificationCreated):
        assert notes[event.notification.id] == event.notification
    for event in log.of(ev.AnalysisQueued):
        job = app.jobs.get_job(event.job_id)
        assert (job.state, job.patient_id, job.scan_id) == (
            "queued",
            event.patient_id,
            event.scan_id,
        )
        assert job.requested_by == "watcher:watch-folder"
        queued = app.audit.list_events(entity_type="job", entity_id=str(job.id)).items
        assert [(a.action, a.details) for a in queued] == [
            ("queue", {"patient_id": job.patient_id, "scan_id": job.scan_id})
        ]
    made = app.audit.list_events(entity_type="patient", entity_id=b.id).items
    assert [(a.action, a.actor, a.origin) for a in made] == [("create", "watch-folder", "watcher")]
    assert "name" in made[0].details["fields"]
    attach = app.audit.list_events(entity_type="scan", entity_id=str(attached.scan_id)).items
    assert [(a.action, a.details) for a in attach] == [("create", {"patient_id": known.id})]
    with app.db.session() as session:
        taken = {r.original_name: r for r in session.scalars(select(m.IngestedFile))}
    assert taken["b_OD_OCT.png"].patient_id == b.id
    assert taken["b_OD_OCT.png"].scan_id == b.latest_scan.id
    assert taken["b_OD_OCT.png"].outcome == "ingested"
    assert taken[f"{known.id}_OS_fundus.png"].outcome == "attached"


def test_a_file_that_breaks_its_batch_fails_alone(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    names = ["good-1.png", "bad.png", "good-2.png"]
    for i, name in enumerate(names):
        (layout.root / name).write_bytes(noise_png((30, 30), seed=10 + i))
    real = IngestService._message

    def failing(outcome: IngestOutcome, patient: m.Patient, scan: dict[str, Any]) -> str:
        if scan["original_filename"] == "bad.png":
            raise RuntimeError("simulated failure inside the transaction")
        return real(outcome, patient, scan)

    monkeypatch.setattr(IngestService, "_message", staticmethod(failing))
    results = _ingest_as_one_batch(app, layout, names)

    assert isinstance(results["bad.png"], RuntimeError)
    assert all(
        isinstance(results[n], IngestResult) and results[n].outcome is IngestOutcome.INGESTED
        for n in ("good-1.png", "good-2.png")
    )
    assert patient_count(app) == 2
    assert (layout.root / "bad.png").exists()  # left where it was, nothing half-made
    assert sorted(p.name for p in layout.processed.iterdir()) == ["good-1.png", "good-2.png"]


@pytest.mark.parametrize("demo_mode", [True, False], ids=["demo", "known-only"])
def test_a_file_for_a_patient_deleted_as_it_is_attached_is_dealt_with(
    app: Application, actor: Actor, demo_mode: bool
) -> None:
    """The patient the file name names is deleted between the group commit's look at
    them and its write. Before, the write found no row: SQLAlchemy's StaleDataError
    came out, the watcher logged an error and left the file in the folder until it
    changed. The commit now locks the patients it attaches to first, as every other
    change to a patient does: the file is attached before the deletion (which then
    removes that scan with the patient), or finds no such patient."""
    app.ingest.demo_mode = demo_mode
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    patient = app.patients.create_patient({"name": "Leaving Patient"}, actor=actor)
    name = f"{patient.id}_OD.png"
    (layout.root / name).write_bytes(png_bytes((24, 24), (9, 9, 9)))

    def delete() -> None:
        app.patients.delete_patient(patient.id, actor=actor)

    with meanwhile(app, "FROM patients", delete):
        result = app.ingest.ingest_file(layout.root / name, layout)

    assert not app.patients.exists(patient.id)
    assert not (layout.root / name).exists()  # dealt with, not left to fail again
    if result.outcome is IngestOutcome.ATTACHED:  # first: deleted with the patient
        assert result.patient_id == patient.id and app.jobs.list_jobs().total == 0
        assert (layout.processed / name).is_file()
    elif demo_mode:  # no such patient: a demo patient of its own
        assert result.outcome is IngestOutcome.INGESTED and patient_count(app) == 1
    else:
        assert result.outcome is IngestOutcome.FAILED and (layout.failed / name).is_file()


def test_a_name_taken_in_processed_gets_a_number(app: Application) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    for colour in ((1, 1, 1), (2, 2, 2), (3, 3, 3)):
        (layout.root / "same name.png").write_bytes(png_bytes((8, 8), colour))
        assert app.ingest.ingest_file(layout.root / "same name.png", layout).outcome == "ingested"
    assert sorted(p.name for p in layout.processed.iterdir()) == [
        "same name (1).png",
        "same name (2).png",
        "same name.png",
    ]
    (layout.root / "x").write_bytes(b"new")
    (layout.processed / "x").write_bytes(b"old")
    assert move_without_overwrite(layout.root / "x", layout.processed, "x").name == "x (1)"
    assert (layout.processed / "x").read_bytes() == b"old"


def test_a_name_at_the_length_limit_is_shortened_to_fit_its_suffixes(app: Application) -> None:
    """255 bytes is the longest name a file system takes: ` (1)`, ` (duplicate)` and the
    reason file's `.reason.txt` shorten the stem instead of leaving the file behind."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    long = "é" * 125 + "x.png"  # 256 - 1 bytes: a character cut in half would not decode
    assert len(os.fsencode(long)) == 255
    same = png_bytes((8, 8), (5, 5, 5))
    for data in (same, same, png_bytes((8, 8), (6, 6, 6)), b"not an image", b"not one either"):
        (layout.root / long).write_bytes(data)
        result = app.ingest.ingest_file(layout.root / long, layout)
        assert result.moved_to is not None and result.moved_to.read_bytes() == data
    assert not (layout.root / long).exists()
    processed = {p.name for p in layout.processed.iterdir()}
    assert all(len(os.fsencode(n)) <= 255 for n in processed)
    assert long in processed  # fits as it is
    duplicate, numbered = sorted(processed - {long})
    assert duplicate.endswith("é (duplicate).png") and numbered.endswith("é (1).png")
    failed = sorted(p.name for p in layout.failed.iterdir())
    assert len(failed) == 4 and all(len(os.fsencode(n)) <= 255 for n in failed)
    images = [n for n in failed if not n.endswith(REASON_SUFFIX)]
    assert sorted(n + REASON_SUFFIX for n in images) == sorted(set(failed) - set(images))
    assert all(n.endswith(".png") for n in images)


def test_on_windows_a_path_past_its_limit_is_shortened_to_fit_its_suffixes(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows programs take paths of at most 259 characters (MAX_PATH) unless long paths
    are turned on: a name that fitted in the watch folder could pass it in failed/ or
    processed/ with a suffix, and the move failed, leaving the file behind. The name is
    shortened to fit, keeping its extension and suffix (the limit driven here as on
    Windows, made short enough for this temporary folder)."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    limit = len(str(layout.processed)) + 1 + 40
    monkeypatch.setattr(ingest_module, "WINDOWS_MAX_PATH_CHARS", limit, raising=False)
    name = "é" * 30 + "_OD.png"  # 37 characters: fits as it is
    same = png_bytes((8, 8), (7, 7, 7))
    for data in (same, same, b"not an image"):
        (layout.root / name).write_bytes(data)
        result = app.ingest.ingest_file(layout.root / name, layout)
        assert result.moved_to is not None and result.moved_to.read_bytes() == data
    processed = {p.name for p in layout.processed.iterdir()}
    assert name in processed and len(processed) == 2
    assert (processed - {name}).pop().endswith("é (duplicate).png")
    failed = sorted(p.name for p in layout.failed.iterdir())
    assert len(failed) == 2 and failed[1] == failed[0] + REASON_SUFFIX
    assert failed[0].endswith("é.png") and len(failed[0]) < len(name)  # with its reason
    everything = [*layout.processed.iterdir(), *layout.failed.iterdir()]
    assert all(len(str(path)) <= limit for path in everything)


def test_deleting_the_patient_lets_the_same_file_make_them_again(
    app: Application, actor: Actor
) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    data = jpeg_bytes((20, 20))
    (layout.root / "a.jpg").write_bytes(data)
    first = app.ingest.ingest_file(layout.root / "a.jpg", layout)
    app.patients.delete_patient(first.patient_id or "", actor=actor)
    shutil.copy(layout.processed / "a.jpg", layout.root / "a.jpg")
    again = app.ingest.ingest_file(layout.root / "a.jpg", layout)
    assert again.outcome == "ingested" and again.patient_id != first.patient_id


def test_logs_carry_ids_and_hashes_never_names(
    app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    name = "Jane Doe_OD.png"
    (layout.root / name).write_bytes(png_bytes((12, 12), (4, 4, 4)))
    (layout.root / "Jane Doe bad.png").write_bytes(b"not an image")
    with caplog.at_level(logging.DEBUG, logger="ophthai_desktop"):
        result = app.ingest.ingest_file(layout.root / name, layout)
        app.ingest.ingest_file(layout.root / "Jane Doe bad.png", layout)
    patient = app.patients.get_patient(result.patient_id or "")
    assert result.patient_id in caplog.text and (result.sha256 or "")[:12] in caplog.text
    assert "Jane" not in caplog.text and patient.name not in caplog.text

    # Without demo mode the start of the name is taken for a patient id: no such id.
    app.ingest.demo_mode = False
    (layout.root / "JaneDoe_OD.png").write_bytes(png_bytes((12, 12), (5, 5, 5)))
    with caplog.at_level(logging.DEBUG, logger="ophthai_desktop"):
        refused = app.ingest.ingest_file(layout.root / "JaneDoe_OD.png", layout)
    assert "no patient has the id JaneDoe" in (refused.reason or "")
    assert "refused a file" in caplog.text and "Jane" not in caplog.text


def test_a_patient_id_the_clinic_gave_is_never_logged(
    app: Application, actor: Actor, log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    """A device names its files after the clinic's record number, which a client gave the
    patient as their id: the log names the patient by a digest of it."""
    record_number = "MRN20458817"
    name = f"{record_number}_OD_macula_oct.png"
    with caplog.at_level(logging.DEBUG, logger="ophthai_desktop"):
        app.patients.create_patient(
            {"name": "Known Patient"}, actor=actor, patient_id=record_number
        )
        app.watcher.start()
        (folder_of(app) / name).write_bytes(png_bytes((48, 48)))
        assert log.wait_finished(name)[name].patient_id == record_number
        (folder_of(app) / "again.png").write_bytes(png_bytes((48, 48)))  # a duplicate
        log.wait_finished("again.png")
        app.patients.delete_patient(record_number, actor=actor)

    assert "created via" in caplog.text and "duplicate" in caplog.text
    assert "deleted via" in caplog.text
    assert record_number not in caplog.text and "20458817" not in caplog.text
    assert caplog.text.count(patient_ref(record_number)) >= 4


def test_failing_ingests_log_the_kind_of_error_and_the_step_never_the_file_name(
    app: Application,
    log: EventLog,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exceptions quote file names (an OSError's filename, a database error's statement
    values): what is logged of them is their kind, errno and where they were raised."""
    import errno

    from sqlalchemy.exc import DataError, IntegrityError

    from ophthai_desktop.core.services.notifications import NotificationService

    folder = folder_of(app)
    read = IngestService._read

    def unreadable(self: IngestService, path: Path, expected: Any) -> Any:
        if path.name == "Jane Doe_OD.png":  # e.g. lstat on a failing disk
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return read(self, path, expected)

    insert_planned = IngestService._insert_planned

    def statement_fails(
        self: IngestService, session: Any, connection: Any, planned: Any, *rest: Any
    ) -> None:
        names = [p.item.name for p in planned]
        if "Jane Doe_OS.png" in names:
            raise DataError(
                "INSERT INTO ingested_files ...",
                {"original_name": names},
                Exception("value too long"),
            )
        insert_planned(self, session, connection, planned, *rest)

    def record_fails(session: Any, message: str, **fields: Any) -> Any:
        raise IntegrityError(
            "INSERT INTO notifications ...", {"message": message}, Exception("UNIQUE")
        )

    monkeypatch.setattr(IngestService, "_read", unreadable)
    monkeypatch.setattr(IngestService, "_insert_planned", statement_fails)
    monkeypatch.setattr(NotificationService, "create_in", staticmethod(record_fails))
    broken_png = png_bytes((40, 40), (9, 9, 9))
    files = {
        "Jane Doe_OD.png": png_bytes((12, 12), (4, 4, 4)),
        "Jane Doe_OS.png": png_bytes((12, 12), (5, 5, 5)),
        "Jane Doe truncated.png": broken_png[: len(broken_png) // 2],
        "Jane Doe notes.jpg": b"not an image at all",
    }
    with caplog.at_level(logging.DEBUG):
        app.watcher.start()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        done = log.wait_finished("Jane Doe truncated.png", "Jane Doe notes.jpg")
        assert wait_until(lambda: "DataError" in caplog.text and "PermissionError" in caplog.text)
        app.watcher.stop()

    assert {done[n].outcome for n in ("Jane Doe truncated.png", "Jane Doe notes.jpg")} == {"failed"}
    text = caplog.text
    assert "Jane" not in text and "Doe" not in text
    # The step and the kind of error, with errno and where it was raised.
    assert "could not be taken in; it is left in place: PermissionError [EACCES" in text
    assert "in unreadable" in text
    assert "could not be taken in; it is left in place: DataError" in text
    assert "could not record a refused file: IntegrityError" in text


def test_reading_names() -> None:
    assert patient_id_from_name("pt-abc123def456_OD_macula.png") == "pt-abc123def456"
    assert patient_id_from_name("scan.png") is None
    assert patient_id_from_name("Ünïcödé_1.png") is None
    assert patient_id_from_name("MRN-2\n_OD.png") is None
    assert scan_kind_from_name("pt-1_OD_macula.png") == ("OD", "unknown")
    assert scan_kind_from_name("x-os-fundus.JPG") == ("OS", "fundus")
    assert scan_kind_from_name("OCTA_left OS.tif") == ("OS", "OCTA")
    assert scan_kind_from_name("OD_OS_oct.png") == ("unknown", "OCT")  # contradictory
    assert scan_kind_from_name("doctor.png") == ("unknown", "unknown")


def test_the_ingest_record_has_a_unique_hash(app: Application) -> None:
    unique = inspect(app.db.engine).get_unique_constraints("ingested_files")
    assert [c["column_names"] for c in unique] == [["sha256"]]


def test_a_renamed_temporary_file_is_taken_in_only_once_renamed(
    app: Application, log: EventLog
) -> None:
    folder = folder_of(app)
    app.watcher.start()
    for name in ("scan.png.part", "scan.png.crdownload", ".hidden.png", "~$lock.png"):
        (folder / name).write_bytes(png_bytes((10, 10), (len(name), 0, 0)))
    (folder / "notes.txt").write_text("device log")
    (folder / "control.png").write_bytes(png_bytes((10, 10), (0, 0, 1)))
    log.wait_finished("control.png")
    assert wait_until(lambda: app.watcher.is_idle())
    assert set(log.finished()) == {"control.png"}
    os.rename(folder / "scan.png.part", folder / "scan.png")
    assert log.wait_finished("scan.png")["scan.png"].outcome == "ingested"
    left = {p.name for p in folder.iterdir() if p.is_file()}
    assert left == {"scan.png.crdownload", ".hidden.png", "~$lock.png", "notes.txt"}


@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
def test_a_scan_written_under_a_temporary_name_is_taken_in_under_the_one_it_is_renamed_to(
    tmp_path: Path, polling: bool
) -> None:
    """A device writes ``tmp_123.png``, closes it, and renames it a while later: the
    temporary name was taken in (at once on the native observer, which takes a file its
    writer closed; once settled when polling), the scan filed under it and the device's
    rename failed."""
    app = build_watch_app(tmp_path, polling=polling)
    log = EventLog(app.bus)
    folder = folder_of(app)
    try:
        app.watcher.start()
        (folder / "tmp_123.png").write_bytes(png_bytes((12, 12), (9, 8, 7)))
        # Longer than the settle checks (and a rescan) take: not taken in meanwhile.
        assert not wait_until(lambda: log.finished(), timeout_s=1.5)
        os.rename(folder / "tmp_123.png", folder / "scan_OD.png")
        assert log.wait_finished("scan_OD.png")["scan_OD.png"].outcome == "ingested"
        assert wait_until(lambda: (folder / "processed" / "scan_OD.png").is_file())
        assert set(log.finished()) == {"scan_OD.png"} and patient_count(app) == 1
    finally:
        app.close()


def test_a_scan_of_a_patient_whose_id_starts_with_temp_is_taken_in(
    tmp_path: Path, actor: Actor
) -> None:
    """Ids are letters, digits, dots and dashes: a clinic's temporary registrations
    (``TEMP-0042``, ``TMP-7``) named as the watch folder asks (``<patient id>_...``) were
    taken for a writer's temporary names and left in the folder, never taken in and
    never told. A writer's own temporary names still wait for their rename."""
    app = build_watch_app(tmp_path, watch_demo_mode=False)
    log = EventLog(app.bus)
    folder = folder_of(app)
    try:
        patients = [
            app.patients.create_patient({"name": "Walk In"}, actor=actor, patient_id=patient_id)
            for patient_id in ("TEMP-0042", "tmp-7")
        ]
        app.watcher.start()
        (folder / "tmp-123.png").write_bytes(png_bytes((12, 12), (9, 8, 7)))
        names = [f"{patient.id}_OD_oct.png" for patient in patients]
        for index, name in enumerate(names):
            (folder / name).write_bytes(png_bytes((20, 20), (index, 6, 6)))
        done = log.wait_finished(*names)
        assert [done[name].outcome for name in names] == ["attached", "attached"]
        assert (folder / "tmp-123.png").is_file() and "tmp-123.png" not in log.finished()
    finally:
        app.close()


def test_files_left_for_their_names_are_counted_in_the_status(
    app: Application, log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    """A clinician who drops ``temp_retina.png`` saw nothing happen, ever: the file
    stayed in the folder and only the README said why. The status counts such files
    (those of an allowed extension) and names a few; a ``watcher_state`` event tells the
    window and API clients; the log gives the count, never a name."""
    caplog.set_level(logging.INFO, logger="ophthai_desktop")
    folder = folder_of(app)
    app.watcher.start()
    for name in ("temp_retina.png", ".hidden.png", "~$lock.png", ".DS_Store", "tmp_x.txt"):
        (folder / name).write_bytes(png_bytes((10, 10), (len(name), 0, 0)))
    (folder / "tmp_study.png").mkdir()  # a folder: never taken in, nor counted
    states_before = len(log.of(ev.WatcherStateChanged))
    assert wait_until(lambda: app.watcher.status.ignored == 3)
    status = app.watcher.status
    assert status.ignored_names == (".hidden.png", "temp_retina.png", "~$lock.png")
    assert status.state is WatcherState.RUNNING
    assert wait_until(lambda: len(log.of(ev.WatcherStateChanged)) > states_before)
    assert "3 file(s) left in the folder for their names" in caplog.text
    assert "retina" not in caplog.text and "lock.png" not in caplog.text

    os.rename(folder / "temp_retina.png", folder / "retina_OD.png")
    assert log.wait_finished("retina_OD.png")["retina_OD.png"].outcome == "ingested"
    assert wait_until(lambda: app.watcher.status.ignored == 2)
    assert app.watcher.status.ignored_names == (".hidden.png", "~$lock.png")
    app.watcher.stop()
    assert app.watcher.status.ignored == 0 and app.watcher.status.ignored_names == ()


def test_macos_resource_forks_are_left_and_not_counted(app: Application, log: EventLog) -> None:
    """A Mac copying ``scan.png`` to a share writes its metadata beside it as
    ``._scan.png`` (AppleDouble bytes, never an image). The scan was taken in and the
    companion, left behind for good, was counted among the files to rename ("1 file
    ignored", named in the tooltip and the API): renamed it could only be refused, and
    the count grew with every scan a Mac copied in. It is left, and not counted."""
    folder = folder_of(app)
    app.watcher.start()
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(200)
    (folder / "._scan.png").write_bytes(apple_double)
    (folder / "scan.png").write_bytes(png_bytes((10, 10), (3, 1, 4)))
    (folder / ".hidden.png").write_bytes(png_bytes((10, 10), (2, 7, 1)))  # still counted
    assert log.wait_finished("scan.png")["scan.png"].outcome == "ingested"
    assert wait_until(lambda: app.watcher.status.ignored > 0)
    assert not wait_until(lambda: app.watcher.status.ignored > 1, timeout_s=1.2)
    assert app.watcher.status.ignored_names == (".hidden.png",)
    assert (folder / "._scan.png").read_bytes() == apple_double
    assert "._scan.png" not in log.finished()


def test_a_stopped_runs_late_listing_does_not_count_its_files_afterwards(
    app: Application,
) -> None:
    """A rescan held by a share that does not answer can end after ``stop()`` gave up
    waiting for it: what it found was the stopped watcher's count, and the next
    start's until its own rescans."""
    folder = folder_of(app)
    app.watcher.start()
    (folder / "temp_retina.png").write_bytes(png_bytes((10, 10), (1, 0, 0)))
    assert wait_until(lambda: app.watcher.status.ignored == 1)
    run = app.watcher._run
    assert run is not None
    app.watcher.stop()

    app.watcher._rescan(run)  # the settle thread's listing, returning late

    assert app.watcher.status.ignored == 0 and app.watcher.status.ignored_names == ()


def test_an_image_too_elongated_for_the_model_goes_to_failed_with_the_reason(
    app: Application,
) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    data = png_bytes((1000, 4), (7, 7, 7))
    (layout.root / "line scan.png").write_bytes(data)

    result = app.ingest.ingest_file(layout.root / "line scan.png", layout)

    assert result.outcome == "failed" and patient_count(app) == 0
    assert "more than 200 times its short side" in (result.reason or "")
    assert (layout.failed / "line scan.png").read_bytes() == data
    reason = (layout.failed / ("line scan.png" + REASON_SUFFIX)).read_text()
    assert "1000x4 pixels" in reason and "Crop" in reason
    assert app.jobs.list_jobs().total == 0


def test_a_file_that_cannot_be_moved_is_taken_in_once(
    app: Application, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No notification storm: a file left in place is skipped until it changes."""
    from ophthai_desktop.core.services import ingest as ingest_module

    def refuse_move(path: Path, folder: Path, name: str, **options: object) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ingest_module, "move_without_overwrite", refuse_move)
    folder = folder_of(app)
    app.watcher.start()
    (folder / "stuck.png").write_bytes(png_bytes((10, 10), (20, 20, 20)))
    assert log.wait_finished("stuck.png")["stuck.png"].moved_to == ""
    # Rescans (every 0.5 s here) see it again and leave it alone.
    assert not wait_until(lambda: len(log.of(ev.IngestFinished)) > 1, timeout_s=1.2)
    monkeypatch.undo()
    (folder / "stuck.png").write_bytes(png_bytes((10, 10), (21, 21, 21)))  # changed
    assert wait_until(lambda: (folder / "processed" / "stuck.png").exists())
    assert patient_count(app) == 2


@pytest.mark.skipif(
    not ingest_module.CHANGE_TIME_IS_KNOWN, reason="filed by the change time, as after a crash"
)
def test_files_waiting_for_room_to_be_filed_are_logged_once_not_at_each_try(
    app: Application, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each try while the watch folder's disk was full (every 5 s) logged each waiting
    file again: "could not move a file", "refused a file" and "was refused before a
    restart; moved now" (neither a restart nor moved), some 17,000 lines a file a night.
    Said once a file; the state's message says the disk is full."""
    from ophthai_desktop.core import watcher as watcher_module

    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    tries: list[str] = []

    def disk_full(path: Path, *args: object, **options: object) -> None:
        tries.append(path.name)
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as full, caplog.at_level(logging.INFO, logger="ophthai_desktop"):
        full.setattr(ingest_module, "move_without_overwrite", disk_full)
        folder = folder_of(app)
        app.watcher.start()
        (folder / "bad.png").write_bytes(b"not an image")
        (folder / "scan.png").write_bytes(png_bytes((10, 10), (40, 41, 42)))
        assert wait_until(lambda: tries.count("bad.png") >= 3 and tries.count("scan.png") >= 3)
    assert wait_until(lambda: not (folder / "bad.png").exists())  # space freed: filed
    assert wait_until(lambda: not (folder / "scan.png").exists())
    app.watcher.stop()

    said = [r.getMessage() for r in caplog.records if r.name.startswith("ophthai_desktop")]
    assert len([m for m in said if "could not move a file" in m]) == 2  # one a file
    assert len([m for m in said if "refused a file" in m]) == 1
    assert not [m for m in said if "before a restart" in m]


@pytest.mark.skipif(
    not ingest_module.CHANGE_TIME_IS_KNOWN, reason="filed by the change time, as after a crash"
)
@pytest.mark.parametrize("full_at", ["move", "reason file"])
def test_files_that_a_full_disk_keeps_in_the_folder_are_filed_once_there_is_room(
    app: Application, log: EventLog, monkeypatch: pytest.MonkeyPatch, full_at: str
) -> None:
    """The watch folder's own disk full (its data on another): a scan was taken in and
    a refused file recorded, but neither could be moved (nor the reason file written:
    the refused file then went to failed/ without it). They stayed in the folder, skipped
    until they changed, so even once space was freed they were never filed before a
    restart, while the status said all was well with nothing waiting. The status says
    the disk is full, and they are filed once there is room, told once."""
    from ophthai_desktop.core import watcher as watcher_module

    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)

    def disk_full(*args: object, **options: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = "move_without_overwrite" if full_at == "move" else "write_private_file"
    with monkeypatch.context() as full:
        full.setattr(ingest_module, target, disk_full)
        folder = folder_of(app)
        app.watcher.start()
        scan = png_bytes((10, 10), (30, 31, 32))
        (folder / "bad.png").write_bytes(b"not an image")
        if full_at == "move":
            (folder / "scan.png").write_bytes(scan)
        assert wait_until(
            lambda: app.watcher.status.message == watcher_module.WAITING_FOR_ROOM_TO_FILE
        )
        told = 2 if full_at == "move" else 1
        assert wait_until(lambda: len(log.of(ev.NotificationCreated)) == told)
        time.sleep(0.3)  # several tries while the disk is full
        assert (folder / "bad.png").is_file() and list((folder / "failed").iterdir()) == []
    # Space freed.
    assert wait_until(lambda: (folder / "failed" / ("bad.png" + REASON_SUFFIX)).is_file())
    # Its name in failed/ is claimed (empty) before the file is moved over it.
    assert wait_until(lambda: (folder / "failed" / "bad.png").read_bytes() == b"not an image")
    if full_at == "move":
        assert wait_until(lambda: (folder / "processed" / "scan.png").is_file())
        assert patient_count(app) == 1
    assert wait_until(lambda: app.watcher.status.message == "")
    assert len(app.notifications.list_notifications().items) == told
    assert len(log.of(ev.NotificationCreated)) == told
    assert [p.name for p in folder.iterdir() if p.is_file()] == []


def test_a_decoder_surprise_is_a_refusal(app: Application, monkeypatch: pytest.MonkeyPatch) -> None:
    import struct

    from ophthai_desktop.core.services import ingest as ingest_module

    def explode(data: bytes, **_limits: int) -> None:
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(ingest_module, "inspect_image", explode)
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    (layout.root / "odd.tif").write_bytes(b"II*\x00odd")
    result = app.ingest.ingest_file(layout.root / "odd.tif", layout)
    assert result.outcome == "failed" and "could not be decoded (error)" in (result.reason or "")
    assert (layout.failed / "odd.tif").is_file()


def _row_counts(app: Application) -> dict[str, int]:
    tables = (m.Patient, m.Scan, m.Job, m.Notification, m.AuditEvent, m.IngestedFile)
    with app.db.session() as session:
        return {table.__tablename__: len(session.scalars(select(table)).all()) for table in tables}


def test_warming_up_leaves_no_trace(
    app: Application,
    log: EventLog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = _row_counts(app)
    draws = app.ingest._rng.getstate()
    rehearsed: list[BaseException] = []
    commit = app.ingest._commit_batch

    def spied(batch: list[Any], **kwargs: Any) -> None:
        try:
            commit(batch, **kwargs)
        except BaseException as exc:
            rehearsed.append(exc)
            raise

    monkeypatch.setattr(app.ingest, "_commit_batch", spied)
    with caplog.at_level(logging.WARNING):
        app.ingest.warm_up()

    # On SQLite it really wrote the rows (and rolled them back); on PostgreSQL, where a
    # rollback would leave gaps in the audit trail's ids, it writes none. Nothing went
    # wrong either way.
    expected = ["_Rehearsal"] if app.db.is_sqlite else []
    assert [type(exc).__name__ for exc in rehearsed] == expected
    assert "warming up" not in caplog.text
    assert _row_counts(app) == before
    assert log.of(ev.Event) == []
    assert app.ingest._rng.getstate() == draws  # seeded demo patients stay the same
    # The path it rehearsed works for real afterwards.
    app.watcher.start()
    (folder_of(app) / "after_warm_up_OD_OCT.png").write_bytes(png_bytes((40, 30)))
    result = log.wait_finished("after_warm_up_OD_OCT.png")["after_warm_up_OD_OCT.png"]
    assert result.outcome == "ingested"
    assert _row_counts(app)["patients"] == before["patients"] + 1


def test_the_watcher_warms_up_before_it_takes_files_in(
    app: Application, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    warm_up = app.ingest.warm_up
    monkeypatch.setattr(app.ingest, "warm_up", lambda: (order.append("warm-up"), warm_up()))
    app.bus.subscribe(
        lambda e: order.append("ingested") if isinstance(e, ev.IngestFinished) else None
    )
    folder_of(app).mkdir(parents=True)
    (folder_of(app) / "waiting_OS_OCT.png").write_bytes(png_bytes((40, 30), (1, 2, 3)))

    app.watcher.start()
    log.wait_finished("waiting_OS_OCT.png")

    assert order == ["warm-up", "ingested"]


def test_a_failed_warm_up_is_logged_and_the_first_file_still_goes_in(
    app: Application,
    log: EventLog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("database went away")

    # The rehearsed commit where there is one (SQLite), the decoders' warm-up elsewhere.
    with monkeypatch.context() as patch:
        if app.db.is_sqlite:
            patch.setattr(app.ingest, "_commit_batch", broken)
        else:
            patch.setattr("ophthai_desktop.core.services.ingest.inspect_image", broken)
        with caplog.at_level(logging.WARNING):
            app.ingest.warm_up()
    assert "warming up the ingest path failed" in caplog.text

    app.watcher.start()
    (folder_of(app) / "first_OD_OCT.png").write_bytes(png_bytes((40, 30), (4, 5, 6)))
    assert log.wait_finished("first_OD_OCT.png")["first_OD_OCT.png"].outcome == "ingested"


def test_a_few_files_are_read_at_once_and_the_rest_of_a_burst_joins_the_next_commit(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = IngestService(
        app.db, app.bus, app.patients, app.images, app.ingest._limits, preparing_at_once=2
    )
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    names = [f"burst {i}.png" for i in range(8)]
    for i, name in enumerate(names):
        (layout.root / name).write_bytes(noise_png((60, 40), seed=i))
    reading = {"now": 0, "most": 0}
    batches: list[int] = []
    guard = threading.Lock()
    read, commit = service._read, service._commit_batch

    def counted_read(*args: Any) -> Any:
        with guard:
            reading["now"] += 1
            reading["most"] = max(reading["most"], reading["now"])
        try:
            threading.Event().wait(0.02)  # long enough for the others to pile up
            return read(*args)
        finally:
            with guard:
                reading["now"] -= 1

    def slow_commit(batch: list[Any], **kwargs: Any) -> None:
        batches.append(len(batch))
        if len(batches) == 1:
            threading.Event().wait(0.5)  # the first transaction takes a while
        commit(batch, **kwargs)

    monkeypatch.setattr(service, "_read", counted_read)
    monkeypatch.setattr(service, "_commit_batch", slow_commit)
    with ThreadPoolExecutor(len(names)) as pool:
        outcomes = list(pool.map(lambda n: service.ingest_file(layout.root / n, layout), names))

    assert [o.outcome for o in outcomes] == ["ingested"] * len(names)
    assert reading["most"] == 2  # never more than two files read at once
    # Files read while the first transaction was written did not wait for a place to be
    # read in: they went into the next transaction together, more than two of them.
    assert sum(batches) == len(names) and max(batches[1:]) > 2, batches


def test_a_file_waiting_to_be_read_when_the_watcher_stops_is_left_as_it_is(
    app: Application, log: EventLog
) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    path = layout.root / "late_OD_OCT.png"
    path.write_bytes(png_bytes((40, 30), (7, 8, 9)))
    stopping = threading.Event()
    stopping.set()

    with pytest.raises(FileNotSettled):
        app.ingest.ingest_file(path, layout, abandon=stopping)

    assert path.exists() and not any(layout.processed.iterdir())
    assert not any(layout.failed.iterdir())
    assert _row_counts(app)["patients"] == 0 and log.of(ev.Event) == []


def test_a_file_its_writer_still_holds_on_windows_waits_instead_of_being_refused(
    app: Application, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows refuses to open a file another program has open without sharing it
    (a camera's software still writing): that is a file not settled yet, not one that
    cannot be read. Driven by the error Windows raises (POSIX never does)."""
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    path = layout.root / "held_OD_OCT.png"
    path.write_bytes(png_bytes((40, 30), (7, 8, 9)))
    real_open = os.open

    def held_by_its_writer(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(file) == path:
            exc = PermissionError(errno.EACCES, "The process cannot access the file")
            exc.winerror = 32  # type: ignore[attr-defined]  # ERROR_SHARING_VIOLATION
            raise exc
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(ingest_module.os, "open", held_by_its_writer)
    with pytest.raises(FileNotSettled):
        app.ingest.ingest_file(path, layout)
    assert path.exists() and not any(layout.failed.iterdir())
    assert _row_counts(app)["patients"] == 0 and _notes(app) == []

    monkeypatch.undo()  # the writer closed it
    assert app.ingest.ingest_file(path, layout).outcome == IngestOutcome.INGESTED
    assert (layout.processed / "held_OD_OCT.png").is_file()


def test_a_tiff_volume_goes_to_failed_saying_how_many_images_it_holds(app: Application) -> None:
    layout = FolderLayout.under(folder_of(app))
    layout.ensure()
    data = tiff_volume_bytes(pages=4)
    (layout.root / "volume.tif").write_bytes(data)

    result = app.ingest.ingest_file(layout.root / "volume.tif", layout)

    assert result.outcome == "failed" and patient_count(app) == 0
    assert "holds 4 images" in (result.reason or "")
    assert (layout.failed / "volume.tif").read_bytes() == data
    assert "its own file" in (layout.failed / ("volume.tif" + REASON_SUFFIX)).read_text()
    assert app.jobs.list_jobs().total == 0
