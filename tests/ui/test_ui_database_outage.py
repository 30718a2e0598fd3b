"""The window while the database does not answer: one clear sentence, which gives way
once the database answers again; the status bar says that watch-folder files wait."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from ophthai_desktop.core import events as ev
from ophthai_desktop.core.errors import DatabaseFileGone, NoRoom
from ophthai_desktop.core.records import Actor, JobRecord
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.storage import availability
from ophthai_desktop.core.watcher import (
    WAITING_FOR_DATABASE,
    WAITING_FOR_DATABASE_FILE,
    WAITING_FOR_IMAGE_STORE,
    WAITING_FOR_ROOM,
)
from ophthai_desktop.ui.messages import DATABASE_BACK, DATABASE_DOWN
from ophthai_desktop.ui.session import GuiSession
from tests.support.images import png_bytes
from tests.support.outage import database_down, database_full
from tests.support.scripted_engine import DME, ScriptedEngine
from tests.ui.conftest import Maker, open_patient


def test_the_banner_says_the_database_does_not_answer_once_and_gives_way_when_it_does(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(availability, "QUIET_S", 0.0)
    view, banner = gui.patient_list, gui.window.banner
    qtbot.waitUntil(lambda: view.empty_text().startswith("No patients yet"))
    with database_down(gui.application.db) as refusals:
        qtbot.keyClicks(view.search, "zzz")  # the list asks the database again
        qtbot.waitUntil(lambda: bool(refusals) and banner.text() != "")
        assert banner.text() == DATABASE_DOWN
        assert banner.text().lower().count("database") == 1  # said once, not twice
    view.search.selectAll()
    qtbot.keyClick(view.search, Qt.Key.Key_Backspace)  # a later call, which works
    qtbot.waitUntil(lambda: banner.text() == DATABASE_BACK)


def test_the_status_bar_says_watch_folder_files_wait_for_the_database(
    gui: GuiSession, qtbot: QtBot
) -> None:
    label = gui.window.status.watcher
    gui.application.bus.publish(
        ev.WatcherStateChanged("running", WAITING_FOR_DATABASE, str(gui.application.watcher.folder))
    )
    qtbot.waitUntil(lambda: label.text() == "Watch folder: waiting for the database")
    assert WAITING_FOR_DATABASE in label.toolTip()
    gui.application.bus.publish(
        ev.WatcherStateChanged("running", "", str(gui.application.watcher.folder))
    )
    qtbot.waitUntil(lambda: label.text() == "Watch folder: running")


def test_the_banner_gives_way_in_an_idle_window_with_nothing_else_asking(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No request, no job, no click: the database's return is still said, since the app
    asks the database itself while it does not answer."""
    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    view, banner = gui.patient_list, gui.window.banner
    qtbot.waitUntil(lambda: view.empty_text().startswith("No patients yet"))
    with database_down(gui.application.db) as refusals:
        qtbot.keyClicks(view.search, "zzz")
        qtbot.waitUntil(lambda: bool(refusals) and banner.text() == DATABASE_DOWN)
    qtbot.waitUntil(lambda: banner.text() == DATABASE_BACK, timeout=5000)


def _one_running_one_queued(
    qtbot: QtBot, make_gui: Maker
) -> tuple[GuiSession, threading.Event, JobRecord]:
    """A window whose queue lists two patients' analyses: the first running (held until
    the event returned is set), the second queued. Returns the running job too."""
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app, actor = gui.application, Actor("t", "gui")
    first = app.patients.create_patient({"name": "A"}, actor=actor, image=NewImage(png_bytes()))
    second = app.patients.create_patient({"name": "B"}, actor=actor, image=NewImage(png_bytes()))
    running = app.jobs.queue_patient_analysis(first.id, actor=actor)
    queued = app.jobs.queue_patient_analysis(second.id, actor=actor)
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: model.get(queued.id) is not None)
    qtbot.waitUntil(lambda: model.get(running.id).state == "running")  # type: ignore[union-attr]
    return gui, hold, running


def test_the_job_queue_says_its_analyses_wait_for_the_database_until_it_answers(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued analyses (and the running one, whose result is stored once the database
    takes it) wait while the database does not answer: the queue said nothing."""
    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    gui, hold, running = _one_running_one_queued(qtbot, make_gui)
    app, panel, model = gui.application, gui.jobs_panel, gui.jobs_panel.model
    assert panel.waiting.text() == ""
    try:
        with database_down(app.db) as refusals:
            qtbot.keyClicks(gui.patient_list.search, "zzz")  # the list asks the database
            qtbot.waitUntil(lambda: bool(refusals) and "database" in panel.waiting.text())
            assert panel.waiting.text() == (
                "Analyses are waiting: the database does not answer; queued ones start, "
                "and results are stored, once it does"
            )
            assert panel.waiting.isVisible()
        qtbot.waitUntil(lambda: panel.waiting.text() == "", timeout=5000)  # it answers
    finally:
        hold.set()
    qtbot.waitUntil(lambda: model.get(running.id).state == "done")  # type: ignore[union-attr]


def test_the_job_queue_says_the_database_file_is_gone_not_that_it_does_not_answer(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The file deleted while analyses are open: the queue said "the database does not
    answer; ... once it does", which never comes (the app must be started again)."""
    gui, hold, _running = _one_running_one_queued(qtbot, make_gui)
    app, panel = gui.application, gui.jobs_panel
    path = Path(str(app.db.url.database)).absolute()
    try:
        for companion in path.parent.glob(f"{path.name}*"):
            companion.unlink()
        with pytest.raises(DatabaseFileGone):
            app.patients.list_patients()
        qtbot.waitUntil(lambda: "database" in panel.waiting.text())
        whole = panel.waiting.toolTip() or panel.waiting.text()
        assert "does not answer" not in whole and "once it does" not in whole
        assert whole == (
            "Analyses are waiting: the database file was deleted or replaced while OphthAI "
            "ran; queued ones start once the file is put back and OphthAI is started again; "
            "a result finished before then cannot be stored (ask for it again then)"
        )
    finally:
        hold.set()


def test_an_import_the_outage_refused_says_to_import_again_once_the_database_answers(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ "No image was added … The database does not answer" stayed until closed by hand
    after the database answered; it now says that it answers and to import them again.
    A banner about another failure stays."""
    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    app, banner = gui.application, gui.window.banner
    patient = app.patients.create_patient({"name": "Dropped"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    image = tmp_path / "macula_OCT_OD.png"
    image.write_bytes(png_bytes())
    with database_down(app.db) as refusals:
        gui.imports.import_files([image])
        qtbot.waitUntil(lambda: bool(refusals) and "macula_OCT_OD.png" in banner.text())
        assert "No image was added" in banner.text() and DATABASE_DOWN in banner.text()
    qtbot.waitUntil(lambda: banner.text().startswith(DATABASE_BACK), timeout=5000)
    assert "macula_OCT_OD.png" in banner.text() and "again" in banner.text()
    assert DATABASE_DOWN not in banner.text()
    assert not app.patients.list_scans(patient.id)  # nothing was added: it says so

    with database_down(app.db) as refusals:  # an import refused for another reason
        qtbot.keyClicks(gui.patient_list.search, "zzz")
        qtbot.waitUntil(lambda: bool(refusals) and banner.text() == DATABASE_DOWN)
        qtbot.wait(500)  # the window's other calls refused meanwhile have said so
        text = tmp_path / "notes.txt"
        text.write_text("not an image")
        gui.imports.import_files([text])
        qtbot.waitUntil(lambda: "notes.txt" in banner.text())
        refused = banner.text()
    qtbot.wait(1000)  # the database answers again meanwhile (said within 0.3 s)
    assert app.db.availability.available
    assert banner.text() == refused


def test_another_call_refused_in_the_outage_keeps_the_banner_that_says_what_failed(
    gui: GuiSession, qtbot: QtBot
) -> None:
    """The patient page's read, refused a moment after an import, put the outage's bare
    words over "No image was added … import it again once it answers": once the
    database answered, the banner said only that it answers (the import was not said
    again). Seen as a flaky import test, 1 run in 8."""
    banner = gui.window.banner
    told = f"No image was added: {DATABASE_DOWN}"
    banner.show_message(told, "error", resolved="Import scan.png again.")
    banner.show_message(DATABASE_DOWN, "error")  # as describe() says an outage
    assert banner.text() == told
    assert banner.resolve() and banner.text() == "Import scan.png again."
    banner.show_message(DATABASE_DOWN, "error")  # nothing of the outage shown: said
    assert banner.text() == DATABASE_DOWN


def test_a_cancel_the_outage_refused_says_to_cancel_again_once_the_database_answers(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    app, banner = gui.application, gui.window.banner
    actor = Actor("t", "gui")
    patient = app.patients.create_patient({"name": "Q"}, actor=actor, image=NewImage(png_bytes()))
    job = app.jobs.queue_patient_analysis(patient.id, actor=actor)  # no model: it waits
    qtbot.waitUntil(lambda: gui.jobs_panel.model.get(job.id) is not None)
    with database_down(app.db) as refusals:
        gui.jobs.cancel(job.id)
        qtbot.waitUntil(lambda: bool(refusals) and DATABASE_DOWN in banner.text())
    qtbot.waitUntil(lambda: banner.text().startswith(DATABASE_BACK), timeout=5000)
    assert "not cancelled" in banner.text()
    assert app.jobs.get_job(job.id).state == "queued"


def test_the_unread_badge_is_counted_again_once_the_database_answers(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notification stored just before an outage, whose event arrives during it: the
    badge's count is refused, and nothing else changes afterwards to ask again, so the
    badge stayed short (of one stored by another window, which tells this one nothing)
    until the next notification. The one heard moves the badge at once."""
    from ophthai_desktop.core.storage import models as m
    from ophthai_desktop.core.storage.to_records import notification_record

    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    badge = gui.notifications_panel.unread
    app = gui.application
    qtbot.waitUntil(lambda: not gui.notifications._counting)  # the start-up count
    with app.db.session() as session:  # stored; its event not yet delivered
        row = m.Notification(message="Watch folder: 1 new OCT image filed", type="info")
        session.add(row)
        session.add(m.Notification(message="From another window", type="info"))
        session.flush()
        record = notification_record(row)
    with database_down(app.db) as refusals:
        app.bus.publish(ev.NotificationCreated(record))
        qtbot.waitUntil(lambda: len(refusals) >= 2)  # the count was refused
        assert badge.isVisible() and badge.text() == "1"  # the one heard, at once
    qtbot.waitUntil(lambda: badge.text() == "2", timeout=5000)


def test_a_change_the_database_rolled_back_is_not_told_as_an_outage(tmp_path: Path) -> None:
    """PostgreSQL ends one of two deadlocked changes (SQLSTATE class 40): the database
    answers and the same click may well work at once. The window said "The database does
    not answer (its server restarting or stopped…)", and a banner saying so waited for a
    return of the database that never came (no outage was declared)."""
    from sqlalchemy.exc import OperationalError

    from ophthai_desktop.core.errors import DatabaseUnavailable
    from ophthai_desktop.core.storage import Database
    from ophthai_desktop.ui.messages import describe, once_database_answers

    class DeadlockDetected(Exception):
        sqlstate = "40P01"  # as psycopg's errors carry it

    db = Database(f"sqlite:///{tmp_path / 'rolled-back.db'}")
    try:
        with pytest.raises(DatabaseUnavailable) as caught, db.session():
            raise OperationalError("UPDATE jobs", {}, DeadlockDetected("deadlock detected"))
        assert db.availability.available  # not an outage
        said = describe(caught.value)
        assert said != DATABASE_DOWN
        assert said.startswith("The database ended this change") and "try again" in said
        assert once_database_answers(caught.value, "Import them again.") is None
    finally:
        db.close()


def test_the_outage_banner_gives_way_while_the_window_is_in_the_tray(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call's failure told in the outage's own words, the window then hidden (closed to
    the tray) until the database answers: the banner was compared by its visible text,
    "" for a hidden window, and said "The database does not answer" once opened again."""
    from ophthai_desktop.core.errors import DatabaseUnavailable
    from ophthai_desktop.ui.messages import describe

    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    banner, db = gui.window.banner, gui.application.db
    heard: list[bool] = []
    gui.bridge.database_availability_changed.connect(heard.append)
    with database_down(db) as refusals:
        with pytest.raises(DatabaseUnavailable) as refused:
            gui.application.patients.list_patients()
        qtbot.waitUntil(lambda: bool(refusals) and heard == [False])
        banner.show_message(describe(refused.value), "error")  # as a refused call says it
        gui.window.hide()
    qtbot.waitUntil(lambda: heard == [False, True], timeout=5000)

    gui.window.show()
    qtbot.waitExposed(gui.window)
    assert banner.text() != DATABASE_DOWN


def test_an_import_the_database_s_full_disk_refused_says_the_disk_is_full_not_an_outage(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SQLITE_FULL was an outage: "The database does not answer", then "The database
    answers again" within seconds (its probe writes nothing, so a full disk let it
    through) while every change still failed. It says the disk is full, and stays."""
    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    app, banner = gui.application, gui.window.banner
    actor = Actor("t", "gui")
    patient = app.patients.create_patient({"name": "Dropped"}, actor=actor)
    open_patient(qtbot, gui, patient.id)
    image = tmp_path / "macula_OCT_OD.png"
    image.write_bytes(png_bytes((32, 24), (1, 2, 3)))
    with database_full(app.db):
        for n in range(4, 250):  # scans like the import's until the disk refuses one
            try:
                app.patients.attach_image(
                    patient.id,
                    NewImage(png_bytes((32, 24), (n, 2, 3)), filename="filler_OCT_OD.png"),
                    actor=actor,
                )
            except NoRoom:
                break
        gui.imports.import_files([image])
        qtbot.waitUntil(lambda: "macula_OCT_OD.png" in banner.text())
        assert "The disk is full: free space on it, then try again" in banner.text()
        assert DATABASE_DOWN not in banner.text()
        qtbot.wait(500)  # an outage's end would have been said by now
        assert DATABASE_BACK not in banner.text()
        assert app.db.availability.available
    assert image.name not in [s.original_filename for s in app.patients.list_scans(patient.id)]


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (WAITING_FOR_ROOM, "Watch folder: waiting — the disk is full"),
        # Not "waiting for the database": it never answers again until a restart.
        (WAITING_FOR_DATABASE_FILE, "Watch folder: waiting — the database file is gone"),
        # Not "Watch folder: running" while no file can be taken in (images/ read-only).
        (WAITING_FOR_IMAGE_STORE, "Watch folder: waiting — images cannot be stored"),
    ],
    ids=["room", "database file", "image store"],
)
def test_the_status_bar_says_watch_folder_files_wait_for_the_storage(
    gui: GuiSession, qtbot: QtBot, message: str, shown: str
) -> None:
    label = gui.window.status.watcher
    folder = str(gui.application.watcher.folder)
    gui.application.bus.publish(ev.WatcherStateChanged("running", message, folder))
    qtbot.waitUntil(lambda: label.text() == shown)
    assert message in label.toolTip()
    gui.application.bus.publish(ev.WatcherStateChanged("running", "", folder))
    qtbot.waitUntil(lambda: label.text() == "Watch folder: running")


def test_the_status_bar_says_what_to_do_when_images_cannot_be_stored(
    gui: GuiSession, qtbot: QtBot
) -> None:
    """It sent the clinician to the log, which says why, not what to do about it."""
    label = gui.window.status.watcher
    folder = str(gui.application.watcher.folder)
    gui.application.bus.publish(ev.WatcherStateChanged("running", WAITING_FOR_IMAGE_STORE, folder))
    qtbot.waitUntil(lambda: label.text() == "Watch folder: waiting — images cannot be stored")
    images = gui.application.images.root
    assert label.toolTip().endswith(f"Make {images} writable by the account running OphthAI.")


def test_the_banner_says_the_database_file_was_deleted_and_what_to_do(
    gui: GuiSession, qtbot: QtBot
) -> None:
    """Noticed by another thread's call (the API's, the watch folder's): the banner says
    what happened, not "does not answer ... try again in a moment", which never ends."""
    path = Path(str(gui.application.db.url.database)).absolute()
    banner = gui.window.banner
    for companion in path.parent.glob(f"{path.name}*"):
        companion.unlink()
    with pytest.raises(DatabaseFileGone):
        gui.application.patients.list_patients()
    said = f"The database file {path} was deleted or replaced while OphthAI ran"
    qtbot.waitUntil(lambda: banner.text().startswith(said))
    assert "put the file back" in banner.text() and banner.text().endswith("start it again.")
    assert "Try again in a moment" not in banner.text()


def test_an_import_stops_trying_its_files_once_the_database_does_not_answer(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each file of a drop waited up to 30 s for a locked database before it was
    refused: twenty files, ten minutes before the window said anything. Once one is
    refused for that, the others are named with it, not tried."""
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    app, banner = gui.application, gui.window.banner
    patient = app.patients.create_patient({"name": "Dropped"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    images = []
    for i in range(3):
        image = tmp_path / f"scan{i}.png"
        image.write_bytes(png_bytes((32 + i, 32)))
        images.append(image)
    tried: list[str] = []
    attach = app.jobs.attach_and_queue

    def counted(*args: object, **kwargs: object) -> object:
        tried.append("one")
        return attach(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app.jobs, "attach_and_queue", counted)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=300):
        gui.imports.import_files(images)
        qtbot.waitUntil(lambda: "No image was added" in banner.text(), timeout=10_000)
    assert tried == ["one"]
    assert all(f"scan{i}.png: {DATABASE_DOWN}" in banner.text() for i in range(3))
    qtbot.waitUntil(lambda: banner.text().startswith(DATABASE_BACK), timeout=5000)
    assert "scan0.png, scan1.png, scan2.png. Import them again." in banner.text()


def test_reads_go_on_while_imports_wait_for_a_locked_database(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two imports waiting for a lock held both of the reads' threads: opening a
    patient waited until they were refused. Imports have a thread of their own."""
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    app = gui.application
    dropped = app.patients.create_patient({"name": "Dropped"}, actor=Actor("t", "gui"))
    other = app.patients.create_patient({"name": "Other"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, dropped.id)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=8000):
        for i in range(2):
            image = tmp_path / f"scan{i}.png"
            image.write_bytes(png_bytes((40 + i, 32)))
            gui.imports.import_files([image])
        qtbot.waitUntil(lambda: gui.tasks.saving == 2)
        qtbot.wait(200)  # both imports sent on; each now waits for the lock
        open_patient(qtbot, gui, other.id)
        assert gui.tasks.saving == 2  # opened while both still wait
    qtbot.waitUntil(lambda: gui.tasks.saving == 0, timeout=20_000)
