"""Lists read again while events arrive: what an event told after the read was asked
for shows once the read is listed (a row that arrived meanwhile stays, one deleted
meanwhile does not come back, one changed shows its new values)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import QAbstractItemModel, QDate, Qt
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.errors import DatabaseUnavailable
from ophthai_desktop.core.paging import After
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.ui.controllers.notifications import PAGE_SIZE
from ophthai_desktop.ui.models import notification_list
from ophthai_desktop.ui.models.notification_list import NotificationListModel, NotificationRow
from ophthai_desktop.ui.models.patient_table import COLUMN_OF, PatientTableModel
from ophthai_desktop.ui.models.rows import PagedRowModel
from tests.support.images import png_bytes
from tests.ui.conftest import Maker, seed_patients

ACTOR = Actor("t", "gui")


class HeldRead:
    """A service's read that waits, once its result is in hand, until released: the
    snapshot is taken, and events arrive before it is listed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, service: object, name: str) -> None:
        self.reading, self._release = threading.Event(), threading.Event()
        read: Callable[..., Any] = getattr(service, name)

        def held(*args: Any, **kwargs: Any) -> Any:
            result = read(*args, **kwargs)
            self.reading.set()
            self._release.wait(10)
            return result

        monkeypatch.setattr(service, name, held)

    def wait(self, qtbot: QtBot) -> None:
        """Until the read is taken (the event loop runs meanwhile: it may ask for it)."""
        qtbot.waitUntil(self.reading.is_set)

    def release(self) -> None:
        self._release.set()


def _status(model: PatientTableModel, patient_id: str) -> str | None:
    row = model.row_of(patient_id)
    return None if row is None else model.data(model.index(row, COLUMN_OF["status"]))


def _placed(monkeypatch: pytest.MonkeyPatch, model: PagedRowModel) -> list[int]:
    """The totals the rows read again were settled with (the read is listed once one is)."""
    settled: list[int] = []

    def settle(total: int) -> None:
        PagedRowModel.settle(model, total)
        settled.append(total)

    monkeypatch.setattr(model, "settle", settle)
    return settled


def test_the_patient_list_read_again_keeps_what_events_told_meanwhile(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list is read again in place (here on a new day). A patient who arrived after
    the read was taken, and was listed as they arrived, was taken out as the read was
    placed, until the next read: a clinician did not see them. One deleted meanwhile
    came back, and one turned Critical showed their old status."""
    gui = make_gui()
    patients, model = gui.application.patients, gui.patient_list.model
    gone = patients.create_patient({"name": "Gone"}, actor=ACTOR)
    changed = patients.create_patient({"name": "Changed"}, actor=ACTOR)
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    settled = _placed(monkeypatch, model)
    read = HeldRead(monkeypatch, patients, "list_patients")

    gui.patients.day_watch.day_changed.emit(QDate.currentDate())  # a new day: read again
    read.wait(qtbot)
    with qtbot.waitSignal(gui.bridge.patient_created):
        arrived = patients.create_patient({"name": "Arrived"}, actor=ACTOR)
    with qtbot.waitSignal(gui.bridge.patient_deleted):
        patients.delete_patient(gone.id, actor=ACTOR)
    with qtbot.waitSignal(gui.bridge.patient_updated):
        patients.update_patient(changed.id, {"status": "Critical"}, actor=ACTOR)
    qtbot.waitUntil(lambda: model.row_of(arrived.id) == 0)  # listed as they arrived
    read.release()

    qtbot.waitUntil(lambda: bool(settled))
    assert model.row_of(arrived.id) == 0
    assert model.row_of(gone.id) is None
    assert _status(model, changed.id) == "Critical"
    assert (model.rowCount(), model.total) == (2, 2)
    assert gui.patient_list.count.text() == "2 patients"


def test_a_patient_deleted_past_the_rows_read_is_no_longer_counted(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list holds the newest 200 of 250 patients. One past them, deleted while the
    list was read again (the read counted them), was still counted until the next read:
    "of 250" for 249. So was one deleted while nothing was being read."""
    gui = make_gui()
    patients, view = gui.application.patients, gui.patient_list
    seed_patients(gui.application, 250)
    gui.patients.refresh()
    qtbot.waitUntil(lambda: view.count.text() == "Showing 200 of 250 patients (scroll for more)")
    read = HeldRead(monkeypatch, patients, "list_patients")

    gui.patients.day_watch.day_changed.emit(QDate.currentDate())  # a new day: read again
    read.wait(qtbot)
    with qtbot.waitSignal(gui.bridge.patient_deleted):
        patients.delete_patient("pt-seed00000", actor=ACTOR)  # the oldest: not loaded
    read.release()
    qtbot.waitUntil(lambda: view.count.text() == "Showing 200 of 249 patients (scroll for more)")

    with qtbot.waitSignal(gui.bridge.patient_deleted):
        patients.delete_patient("pt-seed00001", actor=ACTOR)
    qtbot.waitUntil(lambda: view.count.text() == "Showing 200 of 248 patients (scroll for more)")
    assert gui.patient_list.model.rowCount() == 200


def test_a_new_search_keeps_a_patient_who_arrived_while_it_was_read(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search (filter, order) replaces the rows with those read: a matching patient
    who arrived after the read was taken, listed as they arrived, was taken out again."""
    gui = make_gui()
    patients, view, model = gui.application.patients, gui.patient_list, gui.patient_list.model
    other = patients.create_patient({"name": "Other"}, actor=ACTOR)
    ada = patients.create_patient({"name": "Ada Lovelace"}, actor=ACTOR)
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    read = HeldRead(monkeypatch, patients, "list_patients")

    qtbot.keyClicks(view.search, "ada")
    read.wait(qtbot)
    with qtbot.waitSignal(gui.bridge.patient_created):
        arrived = patients.create_patient({"name": "Ada King"}, actor=ACTOR)
    qtbot.waitUntil(lambda: model.row_of(arrived.id) == 0)  # listed as they arrived
    read.release()

    qtbot.waitUntil(lambda: model.row_of(other.id) is None)  # the read is listed
    assert model.row_of(arrived.id) == 0 and model.row_of(ada.id) == 1
    assert model.total == 2


def test_notifications_told_of_while_the_first_page_is_read_are_listed(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window lists the newest notifications as it opens. One created after they
    were read, listed as it arrived, was taken out as the page replaced the rows, until
    the window was opened again; one deleted meanwhile came back, one read meanwhile
    showed unread."""
    first = make_gui()
    app = first.application
    notes = app.notifications
    gone = notes.create_notification("Gone", actor=ACTOR)
    kept = notes.create_notification("Kept", actor=ACTOR)
    read = HeldRead(monkeypatch, notes, "list_notifications")
    gui = make_gui(application=app)  # its first page is read ...
    model = gui.notifications_panel.model
    replaced: list[int] = []
    reset = model.reset

    def spied_reset(rows: Any, total: int) -> None:
        reset(rows, total)
        replaced.append(total)

    monkeypatch.setattr(model, "reset", spied_reset)
    read.wait(qtbot)
    with qtbot.waitSignal(gui.bridge.notification_created):  # ... one arrives ...
        notes.create_notification("Arrived", actor=ACTOR)
    with qtbot.waitSignal(gui.bridge.notification_deleted):  # ... one goes ...
        notes.delete_notification(gone.id, actor=ACTOR)
    with qtbot.waitSignal(gui.bridge.notification_updated):  # ... one is read ...
        notes.mark_read(kept.id, actor=ACTOR)
    assert _texts(model) == ["Arrived"]  # listed as it arrived
    read.release()  # ... and the page is listed

    qtbot.waitUntil(lambda: bool(replaced))
    assert _texts(model) == ["Arrived", "Kept"]
    assert model.total == 2
    bold = [model.data(model.index(row, 0), Qt.ItemDataRole.FontRole) is not None for row in (0, 1)]
    assert bold == [True, False]  # "Kept" was read


def _texts(model: QAbstractItemModel) -> list[str]:
    return [model.data(model.index(row, 0)).split("\n")[0] for row in range(model.rowCount())]


def test_a_notification_told_of_after_all_were_marked_read_stays_as_told(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are shown read a page a turn after all are marked read; one told of
    after it (done again on top of the first page read, which had it already) is newer
    news: it stays unread."""
    monkeypatch.setattr(notification_list, "MARK_READ_PER_TURN", 1)
    model = NotificationListModel()
    rows = [
        NotificationRow(i, None, "info", False, f"Note {i}\nInfo", After(None, i)) for i in (1, 2)
    ]
    model.reset(rows, 2)
    model.mark_all_read()  # the first now, the second the next turn ...
    model.insert_first([rows[1]])  # ... told of after the marking, unread
    qtbot.waitUntil(lambda: not model.marking_read)
    assert [model.get(i).read for i in (1, 2)] == [True, False]  # type: ignore[union-attr]


def test_the_job_queue_read_as_the_window_opens_keeps_what_events_told_meanwhile(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue's first read (and one read again after it failed, or after too many
    events) holds the events heard meanwhile and applies them on top of its rows: an
    analysis queued after the read was taken is listed, one whose patient was deleted
    meanwhile does not come back."""
    app = make_gui().application
    image = NewImage(png_bytes())
    gone = app.patients.create_patient({"name": "Gone"}, actor=ACTOR, image=image)
    gone_job = app.jobs.queue_patient_analysis(gone.id, actor=ACTOR)
    read = HeldRead(monkeypatch, app.jobs, "list_queue")
    gui = make_gui(application=app)  # its queue is read ...
    read.wait(qtbot)
    arrived = app.patients.create_patient({"name": "Arrived"}, actor=ACTOR, image=image)
    with qtbot.waitSignal(gui.bridge.analysis_queued):  # ... an analysis is queued ...
        job = app.jobs.queue_patient_analysis(arrived.id, actor=ACTOR)
    with qtbot.waitSignal(gui.bridge.patient_deleted):  # ... a patient deleted ...
        app.patients.delete_patient(gone.id, actor=ACTOR)
    read.release()  # ... and the read is listed

    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: not gui.jobs.loading)
    assert model.get(job.id) is not None and model.get(job.id).state == "queued"  # type: ignore[union-attr]
    assert model.get(gone_job.id) is None


def test_an_older_page_of_notifications_keeps_what_events_told_while_it_was_read(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list scrolls to its end and the next older page is read. One of its
    notifications deleted meanwhile (by a client, or with its patient) came back with
    the page, and clicking it led nowhere; one read meanwhile showed unread."""
    app = make_gui().application
    notes = app.notifications
    patient = app.patients.create_patient({"name": "Gone"}, actor=ACTOR)
    notes.create_notification("Theirs", patient_id=patient.id, actor=ACTOR)
    gone = notes.create_notification("Deleted", actor=ACTOR)
    kept = notes.create_notification("Read", actor=ACTOR)
    for i in range(PAGE_SIZE):
        notes.create_notification(f"Note {i}", actor=ACTOR)
    gui = make_gui(application=app)
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE)
    read = HeldRead(monkeypatch, notes, "list_notifications")

    panel.list.scrollToBottom()  # the older page is read ...
    read.wait(qtbot)
    with qtbot.waitSignal(gui.bridge.notification_deleted):  # ... one deleted ...
        notes.delete_notification(gone.id, actor=ACTOR)
    with qtbot.waitSignal(gui.bridge.notification_updated):  # ... one read ...
        notes.mark_read(kept.id, actor=ACTOR)
    with qtbot.waitSignal(gui.bridge.patient_deleted):  # ... a patient deleted ...
        app.patients.delete_patient(patient.id, actor=ACTOR)
    read.release()  # ... and the page is listed

    qtbot.waitUntil(lambda: model.rowCount() > PAGE_SIZE)
    assert _texts(model)[PAGE_SIZE:] == ["Read"]
    assert model.data(model.index(PAGE_SIZE, 0), Qt.ItemDataRole.FontRole) is None  # read
    assert model.total == PAGE_SIZE + 1


def test_an_older_page_read_while_all_were_marked_read_shows_them_read(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All read, clicked while the next older page was read: its rows showed unread,
    and Mark read stayed on for them."""
    app = make_gui().application
    notes = app.notifications
    for i in range(PAGE_SIZE + 2):
        notes.create_notification(f"Note {i}", actor=ACTOR)
    gui = make_gui(application=app)
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE)
    read = HeldRead(monkeypatch, notes, "list_notifications")

    panel.list.scrollToBottom()
    read.wait(qtbot)
    with qtbot.waitSignal(gui.bridge.notifications_all_read):
        notes.mark_all_read(actor=ACTOR)
    read.release()

    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE + 2)
    qtbot.waitUntil(lambda: not model.marking_read)
    assert [row.read for row in model.records()] == [True] * (PAGE_SIZE + 2)


def test_a_patient_list_read_that_failed_leaves_events_to_read_again(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list read again failed (the database did not answer). A patient who then
    came to match the status chosen was not listed, and one deleted past the loaded
    rows stayed counted, until the next query: their events waited for the failed read
    to put them right."""
    gui = make_gui()
    patients, view, model = gui.application.patients, gui.patient_list, gui.patient_list.model
    seed_patients(gui.application, 900)  # every fourth Critical: 225
    turning = patients.create_patient({"name": "Turning", "status": "Stable"}, actor=ACTOR)
    view.status.setCurrentText("Critical")
    shown = "Showing 200 of {} patients (scroll for more)"
    qtbot.waitUntil(lambda: view.count.text() == shown.format(225))
    read, refused = patients.list_patients, threading.Event()

    def refusing(*args: Any, **kwargs: Any) -> Any:
        if not refused.is_set():
            refused.set()
            raise DatabaseUnavailable()
        return read(*args, **kwargs)

    monkeypatch.setattr(patients, "list_patients", refusing)
    gui.patients.day_watch.day_changed.emit(QDate.currentDate())  # a new day: read again
    qtbot.waitUntil(lambda: bool(gui.window.banner.message()))
    assert refused.is_set()

    with qtbot.waitSignal(gui.bridge.patient_deleted):
        patients.delete_patient("pt-seed00002", actor=ACTOR)  # the oldest Critical
    qtbot.waitUntil(lambda: view.count.text() == shown.format(224))
    with qtbot.waitSignal(gui.bridge.patient_updated):
        patients.update_patient(turning.id, {"status": "Critical"}, actor=ACTOR)
    qtbot.waitUntil(lambda: model.row_of(turning.id) == 0)
    qtbot.waitUntil(lambda: view.count.text() == shown.format(225))


def test_a_notification_created_while_an_older_page_is_read_leaves_none_unlisted(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notification created while the next older page was read was listed at the top
    and counted, but the page's count (taken before it) replaced the list's: the list
    stopped one row short of its end, and the oldest notification was never listed."""
    app = make_gui().application
    notes = app.notifications
    for i in range(2 * PAGE_SIZE + 1):
        notes.create_notification(f"Note {i}", actor=ACTOR)
    gui = make_gui(application=app)
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE)
    read = HeldRead(monkeypatch, notes, "list_notifications")

    panel.list.scrollToBottom()  # the older page is read ...
    read.wait(qtbot)
    with qtbot.waitSignal(gui.bridge.notification_created):  # ... one created ...
        notes.create_notification("New", actor=ACTOR)
    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE + 1)  # ... listed at the top
    read.release()
    qtbot.waitUntil(lambda: model.rowCount() == 2 * PAGE_SIZE + 1)
    assert model.total == 2 * PAGE_SIZE + 2

    panel.list.scrollToBottom()  # the last page: the oldest one
    qtbot.waitUntil(lambda: model.rowCount() == 2 * PAGE_SIZE + 2)
    assert _texts(model)[0] == "New" and _texts(model)[-1] == "Note 0"


def test_a_patient_created_while_an_older_page_is_read_leaves_none_unlisted(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for the patient list: "Showing 401 of 401" for 402, and the oldest
    patient never listed."""
    gui = make_gui()
    patients, view, model = gui.application.patients, gui.patient_list, gui.patient_list.model
    seed_patients(gui.application, 2 * 200 + 1)
    gui.patients.refresh()
    qtbot.waitUntil(lambda: view.count.text() == "Showing 200 of 401 patients (scroll for more)")
    read = HeldRead(monkeypatch, patients, "list_patients")

    view.table.scrollToBottom()  # the older page is read ...
    read.wait(qtbot)
    with qtbot.waitSignal(gui.bridge.patient_created):  # ... one created ...
        arrived = patients.create_patient({"name": "Arrived"}, actor=ACTOR)
    qtbot.waitUntil(lambda: model.row_of(arrived.id) == 0)  # ... listed at the top
    read.release()
    qtbot.waitUntil(lambda: model.rowCount() == 401)
    assert view.count.text() == "Showing 401 of 402 patients (scroll for more)"

    view.table.scrollToBottom()
    qtbot.waitUntil(lambda: model.rowCount() == 402)
    assert model.row_of("pt-seed00000") == 401
    assert view.count.text() == "402 patients"


def test_a_patient_listed_while_a_read_is_placed_leaves_none_unlisted(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The list read again is placed a page a turn. A patient who arrived between two
    turns was listed and counted, and the read's count then replaced the list's: one
    row short, the oldest patient never listed."""
    gui = make_gui()
    patients, view, model = gui.application.patients, gui.patient_list, gui.patient_list.model
    seed_patients(gui.application, 2 * 200 + 1)
    gui.patients.refresh()
    qtbot.waitUntil(lambda: model.rowCount() == 200)
    view.table.scrollToBottom()
    qtbot.waitUntil(lambda: view.count.text() == "Showing 400 of 401 patients (scroll for more)")
    feed = gui.patients._feed_timer  # the turns between pages, held here
    feed.setInterval(60_000)

    gui.patients.day_watch.day_changed.emit(QDate.currentDate())  # a new day: read again
    qtbot.waitUntil(feed.isActive)  # its first page placed, the second waits
    with qtbot.waitSignal(gui.bridge.patient_created):
        arrived = patients.create_patient({"name": "Arrived"}, actor=ACTOR)
    qtbot.waitUntil(lambda: model.row_of(arrived.id) == 0)  # listed between the turns
    feed.setInterval(0)
    feed.start()
    qtbot.waitUntil(lambda: not feed.isActive())
    qtbot.waitUntil(lambda: view.count.text() == "Showing 401 of 402 patients (scroll for more)")

    view.table.scrollToBottom()
    qtbot.waitUntil(lambda: model.rowCount() == 402)
    assert model.row_of("pt-seed00000") == 401
