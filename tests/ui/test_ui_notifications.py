"""Notifications arriving from other threads, the unread badge, the toast, and the
watch folder's files turning up in the window."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from PySide6.QtCore import QPoint, QRect, Qt, QTimer
from PySide6.QtGui import QAccessible, QFont
from PySide6.QtWidgets import QApplication, QLabel, QListView, QWidget
from pytestqt.qtbot import QtBot

from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core.errors import StorageError
from ophthai_desktop.core.events import NotificationCreated
from ophthai_desktop.core.paging import After
from ophthai_desktop.core.records import Actor, UnreadTally
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.storage import availability
from ophthai_desktop.ui.controllers import notifications as notifications_controller
from ophthai_desktop.ui.controllers import status as status_controller
from ophthai_desktop.ui.controllers.notifications import MAX_LOADED, PAGE_SIZE
from ophthai_desktop.ui.controllers.status import ALERT_GAP_MS
from ophthai_desktop.ui.models.notification_list import (
    MARK_READ_PER_TURN,
    PATIENT_ROLE,
    NotificationListModel,
    NotificationRow,
)
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views import toast as toast_view
from ophthai_desktop.ui.views.empty import NOT_READ, READING
from ophthai_desktop.ui.views.notifications import NotificationsPanel
from ophthai_desktop.ui.views.toast import Toast
from tests.support.images import png_bytes
from tests.support.outage import database_down
from tests.support.scripted_engine import DME, NORMAL, ScriptedEngine
from tests.support.watch_folder import build_watch_app
from tests.ui.conftest import Maker, open_patient

SYSTEM = Actor.system("test")


def _from_another_thread(fn: object) -> None:
    thread = threading.Thread(target=fn)  # type: ignore[arg-type]
    thread.start()
    thread.join()


def test_notifications_arrive_and_are_managed(qtbot: QtBot, gui: GuiSession) -> None:
    app = gui.application
    patient = app.patients.create_patient({"name": "Noted"}, actor=SYSTEM)
    panel, model = gui.notifications_panel, gui.notifications_panel.model

    _from_another_thread(
        lambda: app.notifications.create_notification(
            "Scan reviewed", type="info", patient_id=patient.id, actor=SYSTEM
        )
    )
    _from_another_thread(
        lambda: app.notifications.create_notification(
            "Abnormal finding: CNV", type="critical", patient_id=patient.id, actor=SYSTEM
        )
    )
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    assert model.data(model.index(0, 0)).startswith("Abnormal finding: CNV")  # newest first
    font = model.data(model.index(0, 0), Qt.ItemDataRole.FontRole)
    assert isinstance(font, QFont) and font.bold()
    qtbot.waitUntil(lambda: panel.unread.text() == "2")
    assert gui.window.notifications_dock.windowTitle() == "Notifications (2 unread)"
    # No system tray offscreen: the critical one shows as an in-window toast.
    assert gui.window.toast.isVisible()
    assert gui.window.toast.text() == "Critical finding: Abnormal finding: CNV"

    panel.list.setCurrentIndex(model.index(1, 0))
    panel.mark_read.click()
    qtbot.waitUntil(lambda: panel.unread.text() == "1")
    # The badge may come from the count's own refresh, a moment before the row's update.
    qtbot.waitUntil(lambda: model.data(model.index(1, 0), Qt.ItemDataRole.FontRole) is None)

    panel.mark_all.click()
    qtbot.waitUntil(lambda: not panel.unread.isVisible())
    assert gui.window.notifications_dock.windowTitle() == "Notifications"
    assert app.notifications.unread_count() == 0

    panel.list.setCurrentIndex(model.index(0, 0))
    panel.delete.click()
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    assert app.notifications.list_notifications().total == 1


def test_clicking_a_notification_opens_the_patient(qtbot: QtBot, gui: GuiSession) -> None:
    app = gui.application
    patient = app.patients.create_patient({"name": "Clicked"}, actor=SYSTEM)
    app.notifications.create_notification("Look at me", patient_id=patient.id, actor=SYSTEM)
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    rect = panel.list.visualRect(model.index(0, 0))
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Clicked")
    qtbot.waitUntil(lambda: app.notifications.unread_count() == 0)  # opened = read
    qtbot.waitUntil(lambda: panel.unread.text() == "0")


def test_existing_notifications_load_at_start(qtbot: QtBot, make_gui: Maker) -> None:
    first = make_gui()
    app = first.application
    for i in range(3):
        app.notifications.create_notification(f"Old {i}", actor=SYSTEM)
    second = make_gui(application=app)
    qtbot.waitUntil(lambda: second.notifications_panel.model.rowCount() == 3)
    qtbot.waitUntil(lambda: second.notifications_panel.unread.text() == "3")


def _a_page_and_50_more(
    qtbot: QtBot, make_gui: Maker
) -> tuple[Application, NotificationsPanel, NotificationListModel, int]:
    """A window opened on a page of notifications and 50 more, its first page listed:
    the application, the panel, its rows and how many there are."""
    app = make_gui().application
    count = PAGE_SIZE + 50
    for i in range(count):
        app.notifications.create_notification(f"Note {i}", actor=SYSTEM)
    panel = make_gui(application=app).notifications_panel
    model = panel.model
    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE)
    return app, panel, model, count


def test_older_notifications_load_as_the_list_scrolls(qtbot: QtBot, make_gui: Maker) -> None:
    _app, panel, model, count = _a_page_and_50_more(qtbot, make_gui)
    assert model.total == count
    panel.list.scrollToBottom()  # the view asks for more at the end (fetchMore)
    qtbot.waitUntil(lambda: model.rowCount() == count)
    texts = [model.data(model.index(row, 0)).split("\n")[0] for row in range(count)]
    assert texts == [f"Note {i}" for i in reversed(range(count))]  # newest first, once each


@pytest.mark.parametrize("change", ["deleted", "created"])
def test_older_notifications_changed_elsewhere_meanwhile_are_listed_once_each(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Another window on the same database (which tells this one nothing) deletes or
    creates a notification between two pages: the older page was read by position, so
    after a deletion it skipped one ("Note 50" was never listed until the window was
    opened again) and after a creation it read one already listed again."""
    app, panel, model, count = _a_page_and_50_more(qtbot, make_gui)
    listed = set(_texts(model))
    elsewhere = build_application(app.settings, migrate=False)  # its own event bus
    if change == "deleted":
        note = next(n for n in elsewhere.notifications.list_notifications(limit=20).items)
        elsewhere.notifications.delete_notification(note.id, actor=SYSTEM)
    else:
        elsewhere.notifications.create_notification("Newer", actor=SYSTEM)
    elsewhere.db.dispose()
    read: list[str] = []
    list_notifications = app.notifications.list_notifications

    def recorded(**query: Any) -> Any:
        page = list_notifications(**query)
        read.extend(n.message for n in page.items)
        return page

    monkeypatch.setattr(app.notifications, "list_notifications", recorded)
    panel.list.scrollToBottom()  # the view asks for the next older page (fetchMore)
    qtbot.waitUntil(lambda: "Note 0" in _texts(model))

    assert [t for t in _texts(model) if t.startswith("Note")] == [
        f"Note {i}" for i in reversed(range(count))
    ]
    assert not listed & set(read)  # the older page repeated none


def test_a_window_left_open_holds_the_newest_notifications_and_reads_older_ones_again(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Weeks beside a watch folder (500 a day): the panel held every notification that
    arrived. It holds the newest; scrolling down reads the older ones from the database;
    the badge counts every unread one; rows scrolled to are not taken from under the
    clinician's eyes."""
    app = gui.application
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    count = MAX_LOADED + 700

    def arriving() -> None:
        for i in range(count):
            app.notifications.create_notification(f"Note {i}", actor=SYSTEM)

    _from_another_thread(arriving)
    qtbot.waitUntil(lambda: model.total == count, timeout=20_000)
    assert model.rowCount() <= MAX_LOADED
    qtbot.waitUntil(lambda: panel.unread.text() == str(count))

    def scrolled_to_the_end() -> bool:
        panel.list.scrollToBottom()  # the view asks for the next older page (fetchMore)
        return model.rowCount() == count

    qtbot.waitUntil(scrolled_to_the_end, timeout=20_000)
    texts = [model.data(model.index(row, 0)).split("\n")[0] for row in range(count)]
    assert texts == [f"Note {i}" for i in reversed(range(count))]  # newest first, once each

    # Looking at the oldest: a new one arrives, and the rows in view stay.
    _from_another_thread(lambda: app.notifications.create_notification("New", actor=SYSTEM))
    qtbot.waitUntil(lambda: model.total == count + 1)
    assert model.rowCount() == count + 1
    panel.list.scrollToTop()
    _from_another_thread(lambda: app.notifications.create_notification("Newer", actor=SYSTEM))
    qtbot.waitUntil(lambda: model.total == count + 2)
    assert model.rowCount() <= MAX_LOADED  # back at the top: the older ones go again
    qtbot.waitUntil(lambda: panel.unread.text() == str(count + 2))


def test_notifications_scrolled_to_stay_while_the_panel_is_closed(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scrolled past the newest 50 (the cap here), the panel closed: a notification
    arriving meanwhile trimmed the list to the cap (a hidden list counted no rows in
    view), and those looked at were gone when it was opened again. They stay; and no
    more than were in use are kept, however many arrive."""
    monkeypatch.setattr(notifications_controller, "MAX_LOADED", 50)
    app = gui.application
    panel, model, dock = (
        gui.notifications_panel,
        gui.notifications_panel.model,
        gui.window.notifications_dock,
    )

    def arriving() -> None:
        for i in range(120):
            app.notifications.create_notification(f"Note {i}", actor=SYSTEM)

    _from_another_thread(arriving)
    qtbot.waitUntil(lambda: model.total == 120, timeout=20_000)

    def scrolled_to_the_end() -> bool:
        panel.list.scrollToBottom()  # the view asks for the next older page (fetchMore)
        return model.rowCount() == 120

    qtbot.waitUntil(scrolled_to_the_end, timeout=20_000)
    panel.list.scrollToBottom()
    top = panel.list.indexAt(panel.list.viewport().rect().topLeft())
    assert top.row() > 50
    looked_at = model.data(top)

    dock.close()
    assert not panel.list.isVisible()
    _from_another_thread(lambda: app.notifications.create_notification("New", actor=SYSTEM))
    qtbot.waitUntil(lambda: model.total == 121)
    assert model.rowCount() == 120  # those in use when closed (50: the cap)
    _from_another_thread(lambda: app.notifications.create_notification("Newer", actor=SYSTEM))
    qtbot.waitUntil(lambda: model.total == 122)
    assert model.rowCount() == 120  # no more

    dock.show()
    qtbot.waitUntil(panel.list.isVisible)
    texts = [model.data(model.index(row, 0)) for row in range(model.rowCount())]
    assert looked_at in texts
    panel.list.scrollToBottom()
    qtbot.waitUntil(lambda: model.rowCount() == 122)  # the rest read again, scrolled to


def _watching(qtbot: QtBot, make_gui: Maker, tmp_path: Path) -> tuple[GuiSession, Path]:
    """A window whose watch folder (no model) is running, and the folder."""
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none")
    gui = make_gui(application=application)
    qtbot.waitUntil(
        lambda: gui.window.status.watcher.text() == "Watch folder: running", timeout=10_000
    )
    return gui, application.watcher.folder


def test_watch_folder_files_show_up_live(qtbot: QtBot, make_gui: Maker, tmp_path: Path) -> None:
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none")
    gui = make_gui(application=application)
    status = gui.window.status
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
    assert gui.window.pause_watch_action.isEnabled()

    folder = application.watcher.folder
    for i in range(3):
        (folder / f"burst_{i}_OD.png").write_bytes(png_bytes((40 + i, 30)))
    model = gui.patient_list.model
    qtbot.waitUntil(lambda: model.rowCount() == 3, timeout=15_000)
    qtbot.waitUntil(lambda: gui.notifications_panel.model.rowCount() == 3)
    qtbot.waitUntil(lambda: gui.jobs_panel.model.rowCount() == 3)

    gui.window.pause_watch_action.trigger()
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: paused")
    assert gui.window.pause_watch_action.isChecked()
    gui.window.pause_watch_action.trigger()
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")


def test_watch_folder_files_not_taken_in_are_one_warning_each_moment(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    gui, folder = _watching(qtbot, make_gui, tmp_path)
    toast = gui.window.toast

    (folder / "notes.jpg").write_text("not an image", encoding="utf-8")

    qtbot.waitUntil(toast.isVisible, timeout=15_000)
    first_alert = time.monotonic()
    assert toast.property("kind") == "warning"
    assert toast.text().startswith("Watch folder: a file was not taken in: notes.jpg: ")
    assert "in the failed folder with its reason" in toast.text()
    toast.hide()

    for i in range(5):  # a burst of bad files: one alert, not five
        (folder / f"bad_{i}.png").write_bytes(b"")
    qtbot.waitUntil(toast.isVisible, timeout=20_000)
    qtbot.waitUntil(lambda: gui.notifications_panel.model.rowCount() == 6, timeout=15_000)

    # Not a second after the burst but after the gap since the last alert, so the whole
    # burst is in it (measured from when the first toast was seen, which may be late).
    assert time.monotonic() - first_alert >= ALERT_GAP_MS / 1000 - 1.0
    assert toast.text().startswith("Watch folder: 5 files were not taken in: ")
    assert toast.text().count("bad_") == 3 and "and 2 more" in toast.text()
    assert gui.patient_list.model.rowCount() == 0


def test_a_watch_folder_file_not_taken_in_is_listed_as_a_warning_as_its_toast_says(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    """A damaged file's notification was listed as "Info" with the blue "i", among the
    new scans, while its toast was an amber warning: it is listed as a warning (stored and
    served as info, a type of the seed's). A repeat of a file already taken in, filed
    once, stays an info."""
    gui, folder = _watching(qtbot, make_gui, tmp_path)
    model = gui.notifications_panel.model

    (folder / "scan_OD.png").write_bytes(png_bytes((40, 30)))
    qtbot.waitUntil(lambda: model.rowCount() == 1, timeout=15_000)
    (folder / "broken_OD.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "scan_OD_copy.png").write_bytes(png_bytes((40, 30)))
    qtbot.waitUntil(lambda: model.rowCount() == 3, timeout=15_000)

    def row_of(words: str) -> int:
        rows = [r for r in range(model.rowCount()) if words in model.data(model.index(r, 0))]
        assert len(rows) == 1, words
        return rows[0]

    refused = row_of("broken_OD.png from the watch folder was not taken in: ")
    assert "\nWarning · " in model.data(model.index(refused, 0))
    assert model.row_at(refused).type == "warning"  # the amber badge, not the info's
    repeat = row_of("scan_OD_copy.png from the watch folder was already taken in")
    assert "\nInfo · " in model.data(model.index(repeat, 0))
    assert model.row_at(repeat).type == "info"
    scan = row_of("New scan from the watch folder")
    assert model.row_at(scan).type == "info"
    stored = gui.application.notifications.list_notifications()
    assert {n.type for n in stored.items} == {"info"}


def test_watch_folder_scans_taken_in_are_one_toast_each_moment(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan arriving in the watch folder is told as it comes, in the toast (or the
    tray), not only in the panel a clinician away from the window does not see; a burst
    is one message."""
    gui, folder = _watching(qtbot, make_gui, tmp_path)
    toast = gui.window.toast

    (folder / "fundus_OS.png").write_bytes(png_bytes((40, 30)))

    qtbot.waitUntil(toast.isVisible, timeout=15_000)
    assert toast.property("kind") == "info"
    assert toast.text() == (
        "Watch folder: a new scan: fundus_OS.png was filed and its analysis queued "
        "(see Notifications)."
    )
    toast.hide()
    # The burst is gathered for longer than five files take on a loaded machine: the
    # few seconds left of the gap since the first alert were not always enough.
    monkeypatch.setattr(status_controller, "ALERT_DELAY_MS", 10_000)

    for i in range(5):  # a burst: one alert, not five
        (folder / f"burst_{i}_OD.png").write_bytes(png_bytes((50 + i, 30)))
    qtbot.waitUntil(lambda: gui.patient_list.model.rowCount() == 6, timeout=20_000)
    qtbot.waitUntil(toast.isVisible, timeout=30_000)
    assert toast.text().startswith("Watch folder: 5 new scans: ")
    assert toast.text().count("burst_") == 3 and "and 2 more" in toast.text()


def test_failed_analyses_are_a_warning_each_moment_and_a_notification_each(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An analysis that fails away from the clinician's eyes (a watch-folder scan
    overnight, a patient not on screen) is told as a finished one is: in the toast (or
    the tray), and in the panel, naming the patient; failures in a burst are one alert."""
    engine = ScriptedEngine(DME, fail_with=RuntimeError("CUDA out of memory"))
    gui = make_gui(engine=engine)
    toast = gui.window.toast
    actor = Actor("t", "gui")
    patients = gui.application.patients
    first = patients.create_patient(
        {"name": "Failed First"}, actor=actor, image=NewImage(png_bytes((40, 30)))
    )
    job = gui.application.jobs.queue_patient_analysis(first.id, actor=actor)

    qtbot.waitUntil(toast.isVisible)
    assert toast.property("kind") == "warning"
    assert toast.text() == (
        f"An analysis failed: Job #{job.id}: unexpected error: RuntimeError: CUDA out of "
        "memory. See Notifications for the patient."
    )
    model = gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    assert model.row_at(0).text.startswith(
        f"The analysis for patient Failed First failed (job #{job.id}): unexpected error: "
        "RuntimeError: CUDA out of memory.\nWarning · "
    )
    assert model.row_at(0).type == "warning"  # listed as one too, not among the infos
    qtbot.waitUntil(lambda: gui.notifications_panel.unread.text() == "1")
    toast.hide()

    monkeypatch.setattr(status_controller, "ALERT_DELAY_MS", 10_000)  # as for files
    for i in range(4):  # a burst: one alert, not four
        patient = patients.create_patient(
            {"name": f"Failed {i}"}, actor=actor, image=NewImage(png_bytes((40 + i, 30)))
        )
        gui.application.jobs.queue_patient_analysis(patient.id, actor=actor)
    qtbot.waitUntil(lambda: model.rowCount() == 5)
    qtbot.waitUntil(toast.isVisible, timeout=30_000)
    assert toast.text().startswith("4 analyses failed: Jobs #")
    assert toast.text().endswith(
        " and 1 more: unexpected error: RuntimeError: CUDA out of memory. See Notifications "
        "for the patients."
    )  # one reason for all of them: said, as it says what to do


def test_a_clients_notification_in_a_failures_words_is_not_listed_as_a_warning(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A notification an API client posts, opening as a failed analysis's does, names no
    job: it is listed as the info it was sent as. (The window told a failure by its
    words alone and listed the client's as a warning.)"""
    patient = gui.application.patients.create_patient(
        {"name": "Words Alike"}, actor=Actor("t", "gui")
    )
    gui.application.notifications.create_notification(
        "The analysis for patient Words Alike failed (job #7): the report was faxed.",
        patient_id=patient.id,
        actor=Actor("127.0.0.1", "api"),
    )

    model = gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    assert model.row_at(0).type == "info"
    assert "\nInfo · " in model.row_at(0).text


def test_a_routine_toast_waits_for_a_critical_one_to_go(qtbot: QtBot, gui: GuiSession) -> None:
    toast = gui.window.toast
    toast.show_message("Critical finding", "Abnormal finding: CNV", "critical")

    toast.show_message("Watch folder: a file was not taken in", "notes.jpg: ...", "warning")

    assert toast.text() == "Critical finding: Abnormal finding: CNV"
    toast.hide()  # its time is up, or the clinician clicked it
    qtbot.waitUntil(toast.isVisible)
    assert toast.text().startswith("Watch folder: a file was not taken in")
    assert toast.property("kind") == "warning"
    toast.show_message("Critical finding", "Abnormal finding: AMD", "critical")
    assert toast.text() == "Critical finding: Abnormal finding: AMD"  # urgent goes first


def test_a_toast_replaced_while_it_shows_grows_for_the_longer_text(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A second finding arriving while the first one's toast showed took that toast's
    height: the line the longer text took more was cut, its first and last lines half
    hidden ("Abnormal finding for patient Pierre Fischer: ... needs validation")."""
    toast = gui.window.toast
    toast.show_message("Critical finding", "Abnormal finding: CNV", "critical")
    qtbot.waitUntil(toast.isVisible)
    one_line = toast.height()
    longer = (
        "Abnormal finding for patient Maria-Fernanda Wolfeschlegelsteinhausen: Drusen "
        "(72% confidence) - preliminary, needs validation"
    )

    toast.show_message("Critical finding", longer, "critical")

    label = toast.label
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()), timeout=5000)
    assert toast.height() > one_line
    assert toast.rect().contains(QRect(label.mapTo(toast, QPoint(0, 0)), label.size()))


def _in_window(widget: QWidget, window: QWidget) -> QRect:
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


@pytest.mark.parametrize("size", [(1024, 700), (1280, 800), (1440, 900), (800, 600)])
def test_the_toast_covers_no_control_of_the_queue_or_the_patient_page(
    qtbot: QtBot, gui: GuiSession, size: tuple[int, int]
) -> None:
    """In the window's corner it covered the job queue's right-hand columns and Cancel,
    which a clinician may need just as an analysis finishes and its finding is toasted.
    It goes over the notifications list (the toast is its newest entry) and, without
    one, in the corner of the area above the docks."""
    window, toast = gui.window, gui.window.toast
    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size)
    gui.application.notifications.create_notification(
        "Abnormal finding for patient Amelia Okafor: Diabetic Macular Edema (87% "
        "confidence) - preliminary, needs validation",
        type="critical",
        actor=SYSTEM,
    )
    qtbot.waitUntil(toast.isVisible)
    jobs, panel = window.jobs_dock, gui.notifications_panel
    assert jobs.isVisible() and gui.jobs_panel.cancel.isVisible()
    placed = toast.geometry()
    assert window.rect().contains(placed)  # all of it in the window, at full size
    assert _in_window(panel.list, window).contains(placed)  # at the list's foot...
    assert not placed.intersects(_in_window(panel.list.viewport(), window))  # ...below it
    covered = [jobs, gui.jobs_panel.cancel, panel.mark_read, panel.mark_all, panel.delete]
    covered += [window.centralWidget(), panel.list.verticalScrollBar()]
    for widget in covered:
        if widget.isVisible():
            assert not placed.intersects(_in_window(widget, window)), widget.objectName()

    # Without the notifications in the window, it goes above the docks, wherever the
    # job queue is.
    window.notifications_dock.setFloating(True)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, jobs)

    def in_the_central_area() -> bool:
        central = _in_window(window.centralWidget(), window)
        spot = toast.geometry()
        return (
            central.contains(spot)
            and central.right() - spot.right() < 20
            and central.bottom() - spot.bottom() < 20
            and not (jobs.isVisible() and spot.intersects(_in_window(jobs, window)))
        )

    qtbot.waitUntil(in_the_central_area)
    window.notifications_dock.hide()
    jobs.hide()  # the central area widens: the toast keeps to its corner
    qtbot.waitUntil(lambda: window.centralWidget().width() > window.width() - 20)
    qtbot.waitUntil(in_the_central_area)


def test_the_toast_covers_no_older_notification_and_gives_the_list_back_when_gone(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Over the list it covered the right-hand part of the older entries for its 8 s.
    The list now ends its entries above it (the others scrolled to, not covered), and
    takes its whole height again once the toast goes."""
    window, toast, panel = gui.window, gui.window.toast, gui.notifications_panel
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() == 1280)
    for i in range(8):
        gui.application.notifications.create_notification(f"Scan {i} reviewed", actor=SYSTEM)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 8)
    viewport = panel.list.viewport()
    full_px = viewport.height()
    gui.application.notifications.create_notification(
        "Abnormal finding: Diabetic Macular Edema", type="critical", actor=SYSTEM
    )
    qtbot.waitUntil(lambda: toast.isVisible() and panel.model.rowCount() == 9)

    placed = toast.geometry()
    shown = (  # the part of each entry the list shows
        panel.list.visualRect(panel.model.index(row, 0)) & viewport.rect()
        for row in range(panel.model.rowCount())
    )
    entries = [QRect(viewport.mapTo(window, r.topLeft()), r.size()) for r in shown if r.isValid()]
    assert len(entries) >= 1
    assert not [e for e in entries if e.intersects(placed)]
    panel.list.scrollToBottom()  # the oldest, still there to read
    last = panel.list.visualRect(panel.model.index(8, 0))
    assert viewport.rect().contains(last)

    toast.hide()  # its time is up, or the clinician clicked it
    assert viewport.height() == full_px


@pytest.mark.parametrize(
    ("size", "font_scale", "narrow"),
    [((800, 600), 1.0, False), ((1024, 700), 1.5, True), ((1440, 900), 1.5, False)],
)
def test_where_the_notifications_list_is_short_the_toast_stays_off_the_patient_page(
    qtbot: QtBot,
    make_gui: Maker,
    qapp: QApplication,
    size: tuple[int, int],
    font_scale: float,
    narrow: bool,
) -> None:
    """A trial: with the docks short (at 800 x 600, as a restored layout or Qt leaves
    them; at 1.5 times the font, where the list shows one entry) the list had no room
    for the toast, which went to the central area's corner, over the result card the
    clinician was reading, for its 8 s. It now goes over the notifications dock and the
    status bar's strip beneath it (narrowed where need be), clear of the patient page,
    the job queue and the status bar's states."""
    font = QFont(qapp.font())
    font.setPointSizeF(font.pointSizeF() * font_scale)
    qapp.setFont(font)  # the next test starts at the usual font again (conftest)
    gui = make_gui()
    window, toast = gui.window, gui.window.toast
    window.resize(*size)
    qtbot.waitUntil(lambda: window.height() == size[1])
    panel = gui.notifications_panel
    gui.application.notifications.create_notification("Routine", actor=SYSTEM)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1 and panel.list.isVisible())
    docks = [window.notifications_dock, window.jobs_dock]
    window.resizeDocks(docks, [1, 1], Qt.Orientation.Vertical)  # as short as they go
    toast_width = toast.sizeHint().width() + 20  # with its margins
    if narrow:  # and as narrow as it goes: narrower than the toast
        window.resizeDocks([window.notifications_dock], [1], Qt.Orientation.Horizontal)
    viewport = panel.list.viewport()
    qtbot.waitUntil(lambda: viewport.height() < 100)
    qtbot.waitUntil(lambda: not narrow or window.notifications_dock.width() < toast_width)
    gui.application.notifications.create_notification(
        "Abnormal finding for patient Amelia Okafor: Diabetic Macular Edema (87% "
        "confidence) - preliminary, needs validation",
        type="critical",
        actor=SYSTEM,
    )
    qtbot.waitUntil(toast.isVisible)
    kept_clear = (window.centralWidget(), window.jobs_dock, *window.status.findChildren(QLabel))

    def covered() -> list[str]:
        placed = toast.geometry()
        return [
            widget.objectName() or type(widget).__name__
            for widget in kept_clear
            if widget.isVisible() and placed.intersects(_in_window(widget, window))
        ]

    # Placed again as the docks' layout settles (on a loaded machine, after the show).
    qtbot.waitUntil(lambda: not covered(), timeout=3000)
    placed = toast.geometry()
    assert viewport.height() < placed.height() + 20  # no room in the list itself
    assert window.rect().contains(placed)
    notifications = _in_window(window.notifications_dock, window)
    assert notifications.left() <= placed.left() and placed.right() <= notifications.right()
    assert placed.top() >= notifications.top()
    assert toast.label.text().endswith("needs validation")  # the whole text, wrapped
    assert not narrow or placed.width() < toast_width - 20  # narrowed to the dock


def test_the_toast_keeps_following_the_window_after_it_was_hidden_and_shown(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Closing the window to the tray hides it, and with it the toast: the toast stopped
    following the window's size then, so after the window came back a resize left it
    where it was, cut off or in the middle of the page."""
    window, toast = gui.window, gui.window.toast
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() == 1280)
    toast.show_message("Critical finding", "Abnormal finding: CNV", "critical")
    qtbot.waitUntil(toast.isVisible)

    window.hide()  # to the tray
    qtbot.waitUntil(lambda: not toast.isVisible())
    window.show()
    qtbot.waitUntil(toast.isVisible)  # its time is not up: it shows again
    window.resize(1024, 700)

    qtbot.waitUntil(lambda: window.width() == 1024)
    qtbot.waitUntil(lambda: toast.geometry() == _placed(toast))
    assert window.rect().contains(toast.geometry())

    # Gone for good, it stops watching: no Python runs for the window's events.
    toast.hide()
    calls: list[str] = []

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call" and frame.f_code is Toast.eventFilter.__code__:
            calls.append(event)

    sys.setprofile(profile)
    try:
        window.resize(1280, 800)
        qtbot.waitUntil(lambda: window.width() == 1280)
    finally:
        sys.setprofile(None)
    assert calls == []


def _placed(toast: Toast) -> QRect:
    """Where the toast belongs now: the corner of its area."""
    area = toast.area()
    left = max(area.left() + 10, area.right() + 1 - toast.width() - 10)
    top = max(area.top() + 10, area.bottom() + 1 - toast.height() - 10)
    return QRect(QPoint(left, top), toast.size())


def test_mark_read_and_delete_need_a_chosen_notification(qtbot: QtBot, gui: GuiSession) -> None:
    panel = gui.notifications_panel
    assert not panel.mark_read.isEnabled() and not panel.delete.isEnabled()
    gui.application.notifications.create_notification("Routine", actor=SYSTEM)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1)
    assert not panel.delete.isEnabled()  # arrived, but not chosen

    panel.list.setCurrentIndex(panel.model.index(0, 0))

    assert panel.mark_read.isEnabled() and panel.delete.isEnabled()
    panel.delete.click()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 0)
    assert not panel.mark_read.isEnabled() and not panel.delete.isEnabled()


def test_a_chosen_notification_deleted_elsewhere_leaves_nothing_chosen(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Deleted by a client: the one below it was chosen instead, and Delete (or Enter)
    then acted on a notification the clinician never chose."""
    panel, notes = gui.notifications_panel, gui.application.notifications
    older = notes.create_notification("Older", actor=SYSTEM)
    newer = notes.create_notification("Newer", actor=SYSTEM)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2)
    panel.list.setCurrentIndex(panel.model.index(0, 0))
    assert panel.selected_id() == newer.id

    notes.delete_notification(newer.id, actor=SYSTEM)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1)
    assert panel.selected_id() is None
    assert not panel.delete.isEnabled() and not panel.mark_read.isEnabled()
    assert panel.model.row_at(0).notification_id == older.id  # type: ignore[union-attr]


def test_mark_read_is_off_for_a_notification_already_read(qtbot: QtBot, gui: GuiSession) -> None:
    """After All read, Mark read stayed on for the chosen notification and did nothing."""
    panel = gui.notifications_panel
    gui.application.notifications.create_notification("First", actor=SYSTEM)
    gui.application.notifications.create_notification("Second", actor=SYSTEM)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2)
    panel.list.setCurrentIndex(panel.model.index(0, 0))
    assert panel.mark_read.isEnabled()

    panel.mark_read.click()  # the row turns read while it is still the chosen one
    qtbot.waitUntil(lambda: not panel.mark_read.isEnabled())
    assert panel.delete.isEnabled()
    panel.list.setCurrentIndex(panel.model.index(1, 0))
    assert panel.mark_read.isEnabled()

    qtbot.waitUntil(lambda: panel.unread.text() == "1")  # the badge counted them
    panel.mark_all.click()
    qtbot.waitUntil(lambda: not panel.mark_read.isEnabled())
    assert panel.delete.isEnabled()


def test_empty_panels_say_so_and_show_their_rows_once_there_are_some(
    qtbot: QtBot, gui: GuiSession
) -> None:
    notes, jobs = gui.notifications_panel, gui.jobs_panel
    qtbot.waitUntil(lambda: notes.body.hint.text() == "No notifications.")  # read: none
    qtbot.waitUntil(lambda: jobs.body.hint.text().startswith("No analyses yet"))
    assert notes.body.is_empty_shown() and jobs.body.is_empty_shown()

    note = gui.application.notifications.create_notification("Routine", actor=SYSTEM)
    qtbot.waitUntil(lambda: not notes.body.is_empty_shown())
    assert notes.list.isVisible()

    gui.application.notifications.delete_notification(note.id, actor=SYSTEM)
    qtbot.waitUntil(notes.body.is_empty_shown)


def test_the_panels_say_they_are_reading_until_their_first_rows_come(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At start on a busy machine the panels said "No notifications." and "No analyses
    yet" for seconds while the unread notifications and the queue were being read."""
    app = make_gui().application
    app.notifications.create_notification("Routine", actor=SYSTEM)
    release = threading.Event()
    for service, name in ((app.notifications, "list_notifications"), (app.jobs, "list_queue")):
        read: Callable[..., Any] = getattr(service, name)

        def held(*args: Any, read: Callable[..., Any] = read, **kwargs: Any) -> Any:
            release.wait(30)
            return read(*args, **kwargs)

        monkeypatch.setattr(service, name, held)
    try:
        gui = make_gui(application=app)
        notes, jobs = gui.notifications_panel, gui.jobs_panel
        assert notes.body.is_empty_shown() and notes.body.hint.text() == READING
        assert jobs.body.is_empty_shown() and jobs.body.hint.text() == READING
    finally:
        release.set()
    qtbot.waitUntil(lambda: not notes.body.is_empty_shown())  # the one there
    qtbot.waitUntil(lambda: jobs.body.hint.text().startswith("No analyses yet"))
    assert jobs.body.is_empty_shown()


def test_the_keyboard_opens_and_deletes_the_chosen_notification(
    qtbot: QtBot, gui: GuiSession
) -> None:
    app = gui.application
    patient = app.patients.create_patient({"name": "Keyed"}, actor=SYSTEM)
    app.notifications.create_notification("Routine", actor=SYSTEM)
    app.notifications.create_notification("Look at me", patient_id=patient.id, actor=SYSTEM)
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    gui.window.activateWindow()
    panel.list.setFocus()
    panel.list.setCurrentIndex(model.index(0, 0))  # the newest: about the patient

    qtbot.keyClick(panel.list, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Keyed")

    panel.list.setFocus()
    panel.list.setCurrentIndex(model.index(1, 0))
    qtbot.keyClick(panel.list, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    assert [n.message for n in app.notifications.list_notifications().items] == ["Look at me"]


def test_a_watch_folder_that_cannot_start_says_it_retries_and_can_be_paused(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    """It only said "Watch folder: error", for good, with Pause disabled: nothing told
    that it would never come back by itself, nor let the clinician stop it trying."""
    share = tmp_path / "nas" / "oct"
    application = build_watch_app(tmp_path / "watch", watch_folder_path=share)
    gui = make_gui(application=application)
    status = gui.window.status
    qtbot.waitUntil(
        lambda: status.watcher.text().startswith("Watch folder: error; retrying in"),
        timeout=10_000,
    )
    assert str(share) in status.watcher.toolTip()
    qtbot.waitUntil(lambda: gui.notifications_panel.model.rowCount() == 1)  # once, not per try
    assert gui.window.pause_watch_action.isEnabled()
    gui.window.pause_watch_action.trigger()
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: paused")
    assert "not tried again until resumed" in status.watcher.toolTip()
    share.mkdir(parents=True)
    gui.window.pause_watch_action.trigger()  # Resume: tried at once
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
    qtbot.waitUntil(lambda: gui.notifications_panel.model.rowCount() == 2)


def test_a_watch_folders_error_says_why_without_hovering(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    """The status bar said only "Watch folder: error; retrying in 5 s": why, and which
    folder, was in its tooltip alone, out of the keyboard's reach (a screen reader reads
    the tooltip as the field's description)."""
    share = tmp_path / "nas" / "oct"
    application = build_watch_app(tmp_path / "watch", watch_folder_path=share)
    gui = make_gui(application=application)
    status = gui.window.status
    qtbot.waitUntil(lambda: status.watcher.text().startswith("Watch folder: error"))
    heard = QAccessible.queryAccessibleInterface(status.watcher).text(QAccessible.Text.Description)
    assert str(share) in heard

    gui.window.watcher_details_action.trigger()  # View ▸ Watch folder status… (Alt+V, S)
    box = status.watcher_details
    assert box is not None and box.isVisible()
    assert box.text().startswith("Watch folder: error") and str(share) in box.informativeText()
    box.close()
    qtbot.waitUntil(lambda: status.watcher_details is None)

    qtbot.mouseClick(status.watcher, Qt.MouseButton.LeftButton)
    box = status.watcher_details
    assert box is not None and box.isVisible() and str(share) in box.informativeText()
    box.close()


def test_files_the_watch_folder_leaves_for_their_names_are_shown_in_the_status_bar(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    """A clinician who dropped ``temp_retina.png`` saw nothing happen, ever: the file
    stayed in the folder, said nowhere but in the README."""
    application = build_watch_app(tmp_path / "watch")
    gui = make_gui(application=application)
    status = gui.window.status
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
    folder = application.settings.resolved_watch_folder
    (folder / "temp_retina.png").write_bytes(png_bytes((20, 20)))
    qtbot.waitUntil(
        lambda: status.watcher.text() == "Watch folder: running · 1 file ignored",
        timeout=20_000,
    )
    assert "temp_retina.png" in status.watcher.toolTip()
    assert "rename it to have it taken in" in status.watcher.toolTip()
    gui.window.watcher_details_action.trigger()  # View ▸ Watch folder status…
    box = status.watcher_details
    assert box is not None and "temp_retina.png" in box.informativeText()
    box.close()

    (folder / "temp_retina.png").rename(folder / "retina_OD.png")  # taken in once renamed
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running", timeout=20_000)
    assert "temp_retina" not in status.watcher.toolTip()


def _unread(model: NotificationListModel) -> list[int]:
    return [row.notification_id for row in model.records() if not row.read]


def test_marking_10000_loaded_notifications_read_is_done_a_page_a_turn(
    qtbot: QtBot,
) -> None:
    """Mark all read with 10,000 notifications loaded held the GUI thread for 67 ms
    (every row at once): rows are shown read a page an event-loop turn now. One marked
    unread again, or a new one, meanwhile stays unread."""
    model = NotificationListModel()
    view = QListView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.show()
    count = 10_000
    rows = [
        NotificationRow(i, None, "info", False, f"Note {i}\nInfo · now", After(None, i))
        for i in range(count)
    ]
    model.reset(rows, count)

    model.mark_all_read()
    # Not all at once: a page now, the rest in the turns after (bench/, not a test,
    # says how long a turn takes).
    assert model.marking_read and len(_unread(model)) == count - MARK_READ_PER_TURN
    model.replace(rows[-1])  # marked unread again since (its event came after)
    new = NotificationRow(count, None, "critical", False, "New\nCritical · now", After(None, count))
    model.insert_first([new])
    qtbot.waitUntil(lambda: not model.marking_read)

    assert _unread(model) == [count, count - 1]
    assert model.data(model.index(1, 0), Qt.ItemDataRole.FontRole) is None  # shown read


def _notes(start: int, stop: int) -> list[NotificationRow]:
    return [
        NotificationRow(
            i, f"pt-{i}", "info", False, f"Notification {i}\nInfo · now", After(None, i)
        )
        for i in range(start, stop)
    ]


def test_a_page_of_older_notifications_reaches_the_views_as_one_insertion(
    qtbot: QtBot,
) -> None:
    """A page of 200 older notifications was inserted a row at a time: the views (and
    the panel's handlers) heard 200 insertions, and with 10,000 loaded a page held the
    GUI thread for about 25 ms. They hear one now, and the rows are as before."""
    model = NotificationListModel()
    view = QListView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.show()
    model.reset(_notes(0, PAGE_SIZE), 2 * PAGE_SIZE)
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _parent, first, last: inserted.append((first, last)))

    model.append(_notes(PAGE_SIZE, 2 * PAGE_SIZE), 2 * PAGE_SIZE)

    assert inserted == [(PAGE_SIZE, 2 * PAGE_SIZE - 1)]
    assert [row.notification_id for row in model.records()] == list(range(2 * PAGE_SIZE))
    last = model.index(2 * PAGE_SIZE - 1, 0)
    assert model.data(last) == f"Notification {2 * PAGE_SIZE - 1}\nInfo · now"
    assert model.data(last, Qt.ItemDataRole.ToolTipRole) == model.data(last)
    assert model.data(last, PATIENT_ROLE) == f"pt-{2 * PAGE_SIZE - 1}"
    assert model.data(last, Qt.ItemDataRole.FontRole).bold()  # unread
    assert model.position(2 * PAGE_SIZE - 1) == 2 * PAGE_SIZE - 1
    assert not model.canFetchMore()


def test_marking_notifications_read_tells_the_views_once_a_turn(qtbot: QtBot) -> None:
    """Mark all read changed a page of rows a turn, each row telling the views (and the
    panel's buttons) on its own: 300 changes a turn. One change a turn now, over the
    rows it marked."""
    model = NotificationListModel()
    view = QListView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.show()
    count = 3 * MARK_READ_PER_TURN
    model.reset(_notes(0, count), count)
    changed: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda first, last, _roles: changed.append((first.row(), last.row())))

    model.mark_all_read()

    assert changed == [(0, MARK_READ_PER_TURN - 1)]
    assert _unread(model) == list(range(MARK_READ_PER_TURN, count))
    qtbot.waitUntil(lambda: not model.marking_read)
    assert len(changed) == 3 and not _unread(model)
    assert all(
        model.data(model.index(row, 0), Qt.ItemDataRole.FontRole) is None for row in range(count)
    )


def test_the_badge_never_counts_more_than_there_are_while_notifications_arrive_at_start(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window opened on 31 notifications while more keep arriving: the first count
    already holds some whose events come after it (the bridge hands events over in
    batches), which were counted a second time (the badge read 40 for a moment)."""
    first = make_gui()
    app = first.application
    for i in range(31):
        app.notifications.create_notification(f"Old {i}", actor=SYSTEM)
    shown: list[tuple[int, int]] = []  # (the badge, the unread ones in the database then)
    original = NotificationsPanel.set_unread

    def recording(panel: NotificationsPanel, count: int) -> None:
        if panel is not first.notifications_panel:
            shown.append((count, app.notifications.unread_count()))
        original(panel, count)

    monkeypatch.setattr(NotificationsPanel, "set_unread", recording)
    stop = threading.Event()

    def arriving() -> None:
        for i in range(60):
            if stop.wait(0.01):
                return
            app.notifications.create_notification(f"New {i}", actor=SYSTEM)

    writer = threading.Thread(target=arriving)
    writer.start()
    try:
        second = make_gui(application=app)
        qtbot.waitUntil(lambda: not writer.is_alive())  # the window runs
    finally:
        stop.set()
        writer.join()
    total = app.notifications.unread_count()
    qtbot.waitUntil(lambda: second.notifications_panel.unread.text() == str(total))
    over = [(badge, there) for badge, there in shown if badge > there]
    assert over == [], f"the badge showed more than there were: {over}"
    assert second.notifications_panel.unread.text() == str(total)  # and stays


def _texts(model: NotificationListModel) -> list[str]:
    return [model.data(model.index(row, 0)).split("\n")[0] for row in range(model.rowCount())]


def test_a_notification_of_a_patient_deleted_elsewhere_says_so_and_leaves_the_list(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Another window on the same database deleted the patient (and their notifications
    with them; it tells this window nothing): clicking the notification said "Patient
    … not found", and the row stayed, leading nowhere again."""
    app = gui.application
    patient = app.patients.create_patient({"name": "Gone"}, actor=SYSTEM)
    app.notifications.create_notification("Look at me", patient_id=patient.id, actor=SYSTEM)
    app.notifications.create_notification("Still here", actor=SYSTEM)
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    elsewhere = build_application(app.settings, migrate=False)  # its own event bus
    elsewhere.patients.delete_patient(patient.id, actor=SYSTEM)
    elsewhere.db.dispose()

    rect = panel.list.visualRect(model.index(1, 0))  # "Look at me", the older
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    banner = gui.window.banner
    qtbot.waitUntil(lambda: "was deleted" in banner.message())
    assert "not found" not in banner.message()
    assert _texts(model) == ["Still here"]
    assert gui.patient_page.patient is None


def test_a_page_read_before_a_patient_was_deleted_does_not_list_their_notifications(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patient's notifications leave the list as they are deleted with the patient;
    an older page read just before the deletion and listed just after brought them back,
    leading nowhere."""
    first = make_gui()
    app = first.application
    patient = app.patients.create_patient({"name": "Gone"}, actor=SYSTEM)
    app.notifications.create_notification("Theirs", patient_id=patient.id, actor=SYSTEM)
    app.notifications.create_notification("Older, still here", actor=SYSTEM)
    for i in range(PAGE_SIZE):
        app.notifications.create_notification(f"Note {i}", actor=SYSTEM)
    gui = make_gui(application=app)
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE)
    read, go_on = threading.Event(), threading.Event()
    list_notifications = app.notifications.list_notifications

    def held(**query: object) -> object:
        page = list_notifications(**query)  # type: ignore[arg-type]
        read.set()
        go_on.wait(10)
        return page

    monkeypatch.setattr(app.notifications, "list_notifications", held)
    panel.list.scrollToBottom()  # the older page is read ...
    assert read.wait(10)
    with qtbot.waitSignal(gui.bridge.patient_deleted):  # ... the patient deleted ...
        app.patients.delete_patient(patient.id, actor=SYSTEM)
    go_on.set()  # ... and the page listed

    qtbot.waitUntil(lambda: "Older, still here" in _texts(model))
    assert "Theirs" not in _texts(model)


def test_a_patient_created_again_under_a_deleted_id_has_notifications_that_open(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A patient deleted, then created again with the same id (the clinic's record
    number, from the watch folder or a client): their new notification said the patient
    "was deleted" when clicked, and left the list, and a page read later hid them."""
    app = gui.application
    patient = app.patients.create_patient({"name": "Back"}, patient_id="R-77", actor=SYSTEM)
    panel, model = gui.notifications_panel, gui.notifications_panel.model
    with qtbot.waitSignal(gui.bridge.patient_deleted):
        app.patients.delete_patient(patient.id, actor=SYSTEM)
    with qtbot.waitSignal(gui.bridge.patient_created):
        app.patients.create_patient({"name": "Back"}, patient_id="R-77", actor=SYSTEM)
    app.notifications.create_notification("Theirs again", patient_id="R-77", actor=SYSTEM)
    qtbot.waitUntil(lambda: _texts(model) == ["Theirs again"])

    rect = panel.list.visualRect(model.index(0, 0))
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    qtbot.waitUntil(
        lambda: gui.patient_page.patient is not None and gui.patient_page.patient.id == "R-77"
    )
    assert "was deleted" not in gui.window.banner.message()
    assert _texts(model) == ["Theirs again"]
    gui.notifications.start()  # the list read again lists it too
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    assert _texts(model) == ["Theirs again"]


def _refused_while(
    monkeypatch: pytest.MonkeyPatch, app: Application, name: str, locked: threading.Event
) -> list[dict[str, Any]]:
    """The notifications service's ``name`` raises StorageError while ``locked`` is set
    (a database locked, not an outage); returns the queries it refused."""
    refused: list[dict[str, Any]] = []
    call: Callable[..., Any] = getattr(app.notifications, name)

    def sometimes_locked(**query: Any) -> Any:
        if locked.is_set():
            refused.append(query)
            raise StorageError("the database is locked")
        return call(**query)

    monkeypatch.setattr(app.notifications, name, sometimes_locked)
    return refused


def test_notifications_not_read_as_the_window_opened_are_read_once_the_database_answers(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window opened while the database did not answer listed no notification for
    the whole session (the badge was counted again once it answered; the list was not),
    as if there were none."""
    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    # Not on the timer: as soon as the database answers.
    monkeypatch.setattr(notifications_controller, "RELOAD_AFTER_MS", 60_000, raising=False)
    app = make_gui().application
    for i in range(3):
        app.notifications.create_notification(f"Old {i}", actor=SYSTEM)
    refused: list[int] = []
    list_notifications = app.notifications.list_notifications

    def counted(**query: Any) -> Any:
        try:
            return list_notifications(**query)
        except Exception:
            refused.append(1)
            raise

    monkeypatch.setattr(app.notifications, "list_notifications", counted)
    with database_down(app.db):
        gui = make_gui(application=app)
        panel = gui.notifications_panel
        qtbot.waitUntil(lambda: bool(refused))
        assert panel.model.rowCount() == 0

    qtbot.waitUntil(lambda: panel.model.rowCount() == 3, timeout=5000)
    qtbot.waitUntil(lambda: panel.unread.text() == "3")
    assert "notifications could not be read" not in gui.window.banner.text()


def test_notifications_that_could_not_be_read_are_read_again(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first read and the unread count refused for another reason than an outage
    (the database file locked): the panel said nothing was there, with no badge, until
    the window was opened again. They are read again, as the job queue is."""
    monkeypatch.setattr(notifications_controller, "RELOAD_AFTER_MS", 200, raising=False)
    app = make_gui().application
    for i in range(3):
        app.notifications.create_notification(f"Old {i}", actor=SYSTEM)
    locked = threading.Event()
    locked.set()
    refused = _refused_while(monkeypatch, app, "list_notifications", locked)
    _refused_while(monkeypatch, app, "unread_tally", locked)
    gui = make_gui(application=app)
    banner = gui.window.banner
    qtbot.waitUntil(lambda: len(refused) >= 2)  # tried again, still locked
    assert gui.notifications_panel.body.hint.text() == NOT_READ  # not "No notifications."
    assert banner.text().startswith("The notifications could not be read (")
    assert banner.text().endswith("); trying again.")
    banner.dismiss()  # closed by the clinician: not shown again at every try
    tries = len(refused)
    qtbot.waitUntil(lambda: len(refused) >= tries + 2)
    assert banner.text() == ""
    locked.clear()

    panel = gui.notifications_panel
    qtbot.waitUntil(lambda: panel.model.rowCount() == 3)
    qtbot.waitUntil(lambda: panel.unread.text() == "3")
    assert "notifications could not be read" not in banner.text()


def test_an_older_page_that_could_not_be_read_is_read_again_at_the_end_of_the_list(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page refused as the list scrolled to its end was asked for again only once
    the list was scrolled up and down again: at its end, the list scrolls no further,
    and the older notifications seemed not to exist."""
    monkeypatch.setattr(notifications_controller, "RELOAD_AFTER_MS", 200, raising=False)
    app, panel, model, count = _a_page_and_50_more(qtbot, make_gui)
    locked = threading.Event()
    locked.set()
    refused = _refused_while(monkeypatch, app, "list_notifications", locked)

    panel.list.scrollToBottom()
    qtbot.waitUntil(lambda: bool(refused))
    locked.clear()

    qtbot.waitUntil(lambda: model.rowCount() == count)  # the list did not move
    assert _texts(model)[-1] == "Note 0"


def _alarm_on_the_list(qtbot: QtBot, gui: GuiSession) -> str:
    """A patient whose scan was analysed as abnormal: its alarm listed unread, counted."""
    app = gui.application
    patient_id = app.patients.create_patient(
        {"name": "Alarm Badge"}, actor=SYSTEM, image=NewImage(png_bytes((40, 30)))
    ).id
    app.jobs.queue_patient_analysis(patient_id, actor=SYSTEM)
    claimed = app.jobs.claim_next()
    assert claimed is not None
    app.jobs.complete(claimed, ScriptedEngine(DME)._result(cancelled=False))
    model = gui.notifications_panel.model
    qtbot.waitUntil(lambda: len(_unread(model)) == 1 and _badge(gui) == 1)
    return patient_id


def _badge(gui: GuiSession) -> int:
    """The count the panel's badge shows ("3 unread" to a screen reader)."""
    return int(gui.notifications_panel.unread.accessibleName().split()[0])


@contextmanager
def _compared_at_each_turn(gui: GuiSession) -> Iterator[list[str]]:
    """Compares the unread rows listed with the badge at every event-loop turn while
    inside; yields the disagreements seen ("list 1 unread, badge 0")."""
    model = gui.notifications_panel.model
    disagreed: list[str] = []

    def compare() -> None:
        listed, badge = len(_unread(model)), _badge(gui)
        if listed != badge:
            disagreed.append(f"list {listed} unread, badge {badge}")

    turns = QTimer()
    turns.setInterval(0)
    turns.timeout.connect(compare)
    turns.start()
    try:
        yield disagreed
    finally:
        turns.stop()


@pytest.mark.parametrize("where", ["window", "another client"])
def test_the_badge_and_the_list_agree_at_every_turn_after_a_verdict(
    qtbot: QtBot, gui: GuiSession, where: str
) -> None:
    """The verdict marks the alarm its analysis raised read. The row was shown read at
    once, but the badge said "1 unread" until a count read from the database came
    back (tens of milliseconds, longer on a loaded machine): a screenshot showed both.
    Each event-loop turn compares them now, until both say none is unread."""
    patient_id = _alarm_on_the_list(qtbot, gui)
    model = gui.notifications_panel.model
    view = gui.analysis_view
    if where == "window":
        open_patient(qtbot, gui, patient_id)
        gui.patient_page.show_tab("analysis")
        qtbot.waitUntil(view.approve.isEnabled)
    with _compared_at_each_turn(gui) as disagreed:
        if where == "window":
            view.approve.click()
        else:  # as the API's thread pool does for another client's verdict
            approve = gui.application.patients.validate_analysis
            _from_another_thread(
                lambda: approve(
                    patient_id, approved=True, clinician="Dr B", actor=Actor("api", "api")
                )
            )
        qtbot.waitUntil(lambda: _unread(model) == [] and _badge(gui) == 0)
        # The count asked after the event has come back, and changed nothing.
        qtbot.waitUntil(lambda: not gui.notifications._counting)
    assert disagreed == []
    assert gui.application.notifications.unread_count() == 0


def test_a_count_read_after_a_verdict_waits_for_the_verdict_s_event(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count asked before a verdict and read after it already leaves the alarm out;
    placed before the verdict's event (the bridge hands events over in batches), the
    badge said none while the alarm's row still showed unread, and the event then
    lowered it again. It is placed after the event now."""
    patient_id = _alarm_on_the_list(qtbot, gui)
    app = gui.application
    note = app.notifications.create_notification("Call back", actor=SYSTEM)
    model = gui.notifications_panel.model
    qtbot.waitUntil(lambda: len(_unread(model)) == 2 and _badge(gui) == 2)
    asked, read, release = _hold_the_count(gui, monkeypatch)
    with _compared_at_each_turn(gui) as disagreed:
        try:
            _from_another_thread(lambda: app.notifications.mark_read(note.id, actor=SYSTEM))
            qtbot.waitUntil(asked.is_set)  # the count the read asked for is on its way
            # No event-loop turn from here until the count is read: the verdict's event
            # waits in the bridge, the count comes back first.
            _from_another_thread(
                lambda: app.patients.validate_analysis(
                    patient_id, approved=True, clinician="Dr B", actor=Actor("api", "api")
                )
            )
            release.set()
            assert read.wait(30)
            qtbot.waitUntil(lambda: _unread(model) == [] and _badge(gui) == 0)
            qtbot.waitUntil(lambda: not gui.notifications._counting)
        finally:
            release.set()
    assert disagreed == []


def _hold_the_count(
    gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event, threading.Event]:
    """The window's unread counts held on their pool thread: (asked: one is on its way,
    read: it has been read, release: let it read)."""
    asked, read, release = threading.Event(), threading.Event(), threading.Event()
    count = gui.application.notifications.unread_tally

    def held_count() -> UnreadTally:
        asked.set()
        release.wait(30)
        try:
            return count()
        finally:
            read.set()

    monkeypatch.setattr(gui.application.notifications, "unread_tally", held_count)
    return asked, read, release


def test_a_new_notification_moves_the_badge_before_the_count_and_is_counted_once(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new notification reached the badge only once a count read from the database
    came back (tens of milliseconds, longer under load): the row was listed unread
    beside a badge that did not count it. It moves the badge at once now; the count
    then read, which holds it, leaves the badge as it is, and one stored before a count
    was read whose event comes after it is not counted a second time."""
    app = gui.application
    app.notifications.create_notification("Old", actor=SYSTEM)
    model = gui.notifications_panel.model
    qtbot.waitUntil(lambda: len(_unread(model)) == 1 and _badge(gui) == 1)
    qtbot.waitUntil(lambda: not gui.notifications._counting)
    asked, read, release = _hold_the_count(gui, monkeypatch)
    with _compared_at_each_turn(gui) as disagreed:
        try:
            _from_another_thread(lambda: app.notifications.create_notification("New", actor=SYSTEM))
            qtbot.waitUntil(lambda: len(_unread(model)) == 2)
            assert _badge(gui) == 2  # at once, with the row
            qtbot.waitUntil(asked.is_set)  # the count asked for it
            assert not read.is_set() and _badge(gui) == 2
            # Stored before the count is read, its event handed over after that count
            # has come back (a writer between its commit and its publish).
            with app.db.session() as session:
                late = app.notifications.create_in(session, "Late", type="info", patient_id=None)
            release.set()
            assert read.wait(30)
            qtbot.waitUntil(lambda: not gui.notifications._counting)
            assert _badge(gui) == 3 == app.notifications.unread_count()
            app.bus.publish(NotificationCreated(late))
            qtbot.waitUntil(lambda: len(_unread(model)) == 3)
            qtbot.waitUntil(lambda: not gui.notifications._counting)
            assert _badge(gui) == 3  # the count saw it: not added again
        finally:
            release.set()
    # The late one was listed after the count had it: the list, not the badge, lagged.
    assert [d for d in disagreed if not d.startswith("list 2 unread, badge 3")] == []


def test_a_critical_toast_goes_once_its_finding_is_validated(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The toast of a critical finding went on saying "preliminary, needs validation"
    for the rest of its 8 s after the clinician had approved the result. (Kept on
    screen here until something takes it away: its own time would hide it anyway.)"""
    monkeypatch.setattr(toast_view, "SHOW_MS", 600_000)
    gui = make_gui(engine=ScriptedEngine(DME))
    toast, view = gui.window.toast, gui.analysis_view
    patient = gui.application.patients.create_patient(
        {"name": "Validated"}, actor=SYSTEM, image=NewImage(png_bytes((64, 48)))
    )
    open_patient(qtbot, gui, patient.id)
    view.analyse.click()
    qtbot.waitUntil(lambda: "needs validation" in toast.text())
    qtbot.waitUntil(lambda: view.approve.isEnabled())

    view.approve.click()
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    qtbot.waitUntil(lambda: not toast.isVisible())


def test_a_later_result_of_the_scan_unbolds_its_failure_and_lowers_the_badge(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The failure's notification stayed bold, and counted, once the scan had a result."""
    engine = ScriptedEngine(NORMAL, fail_with=RuntimeError("CUDA out of memory"))
    gui = make_gui(engine=engine)
    app, panel = gui.application, gui.notifications_panel
    model = panel.list.model()
    patient = app.patients.create_patient(
        {"name": "Failed Once"}, actor=SYSTEM, image=NewImage(png_bytes((40, 30)))
    )
    failed = app.jobs.queue_patient_analysis(patient.id, actor=SYSTEM)
    qtbot.waitUntil(lambda: panel.unread.text() == "1")
    engine.fail_with = None
    done = app.jobs.queue_patient_analysis(patient.id, actor=SYSTEM)
    qtbot.waitUntil(lambda: app.jobs.get_job(done.id).state == "done")

    def failure_row() -> Any:
        for row in range(model.rowCount()):
            index = model.index(row, 0)
            if f"failed (job #{failed.id})" in model.data(index):
                return index
        return None

    qtbot.waitUntil(lambda: failure_row() is not None)
    qtbot.waitUntil(lambda: model.data(failure_row(), Qt.ItemDataRole.FontRole) is None)
    unread = app.notifications.unread_count()  # the result's own notices, if any
    if unread:
        qtbot.waitUntil(lambda: panel.unread.text() == str(unread))
    else:
        qtbot.waitUntil(lambda: not panel.unread.isVisible())


def test_an_answer_that_could_not_be_read_is_a_warning_not_an_info(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Its notification was an info, missed among the infos: it is shown and announced
    as a warning, as an analysis that failed is (stored and served as info, a type of
    the seed's)."""
    gui = make_gui(engine=ScriptedEngine(None))  # the model writes no readable answer
    patient = gui.application.patients.create_patient(
        {"name": "Unread"}, actor=SYSTEM, image=NewImage(png_bytes((64, 48)))
    )
    open_patient(qtbot, gui, patient.id)
    model, toast = gui.notifications_panel.model, gui.window.toast

    gui.analysis_view.analyse.click()

    def unread_row() -> int | None:
        for row in range(model.rowCount()):
            if "could not be read" in model.data(model.index(row, 0)):
                return row
        return None

    qtbot.waitUntil(lambda: unread_row() is not None, timeout=15_000)
    row = unread_row()
    assert row is not None
    assert "\nWarning · " in model.data(model.index(row, 0))
    assert model.row_at(row).type == "warning"  # the warning's badge, not the info's
    qtbot.waitUntil(toast.isVisible)
    assert toast.kind == "warning"
    assert toast.text().startswith("An answer could not be read: The analysis for patient ")
    stored = gui.application.notifications.list_notifications()
    assert {n.type for n in stored.items if "could not be read" in n.message} == {"info"}


def test_a_burst_of_critical_findings_is_one_toast_at_once_then_one_gathered(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch folder's night of scans finishing together made one critical toast (or
    tray message) per finding, each wiping off the last a moment after it showed, and a
    screen reader interrupted as often: the first is told at once, the rest of the
    burst gathered into one message that says how many there are."""
    monkeypatch.setattr(toast_view, "SHOW_MS", 600_000)
    # Gathered over 3 s: the twelve are made within it even on a loaded machine.
    monkeypatch.setattr(notifications_controller, "CRITICAL_GATHER_MS", 3_000)
    gui = make_gui()
    toast = gui.window.toast
    shown: list[str] = []
    monkeypatch.setattr(toast_view, "announce", lambda _w, text, urgent=False: shown.append(text))
    app = gui.application
    patient = app.patients.create_patient({"name": "Burst"}, actor=SYSTEM)

    def burst() -> None:
        for i in range(12):
            app.notifications.create_notification(
                f"Possible abnormal finding {i}",
                type="critical",
                patient_id=patient.id,
                actor=SYSTEM,
            )

    _from_another_thread(burst)
    qtbot.waitUntil(lambda: gui.notifications_panel.unread.text() == "12")
    # The first at once; not eleven more replacing it as they were listed.
    assert shown == ["Critical finding: Possible abnormal finding 0"]
    qtbot.waitUntil(lambda: len(shown) == 2, timeout=10_000)
    assert toast.isVisible() and toast.kind == "critical"
    assert toast.text().startswith("12 critical findings: ")
    assert "see Notifications" in toast.text()
    qtbot.wait(3_500)  # the gathering's next turn: none came meanwhile
    assert len(shown) == 2  # the burst is over: nothing more is told of it


def test_a_gathered_critical_toast_goes_once_each_of_its_findings_is_validated(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The toast telling of several critical findings stays while one of them is still
    to validate, and goes once the last is."""
    monkeypatch.setattr(toast_view, "SHOW_MS", 600_000)
    toast = gui.window.toast
    toast.show_message(
        "3 critical findings", "Possible abnormal findings", "critical", about=[4, 5]
    )
    toast.withdraw(4)
    assert toast.isVisible()
    toast.withdraw(5)
    assert not toast.isVisible()


def test_a_gathered_critical_toast_leaves_out_a_finding_validated_before_it_showed(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finding of the burst validated before the gathered toast showed was counted in
    it ("3 critical findings" of two still to validate), and the toast stayed after the
    other two were validated: it waited for a verdict already given."""
    monkeypatch.setattr(toast_view, "SHOW_MS", 600_000)
    monkeypatch.setattr(notifications_controller, "CRITICAL_GATHER_MS", 5_000)
    gui = make_gui(engine=ScriptedEngine(DME))
    app, toast = gui.application, gui.window.toast
    patients = [
        app.patients.create_patient(
            {"name": f"Burst {i}"}, actor=SYSTEM, image=NewImage(png_bytes((64, 48)))
        ).id
        for i in range(3)
    ]
    for patient_id in patients:
        app.jobs.queue_patient_analysis(patient_id, actor=SYSTEM)
    qtbot.waitUntil(lambda: toast.title.text() == "Critical finding", timeout=10_000)
    qtbot.waitUntil(lambda: gui.notifications_panel.unread.text() == "3", timeout=10_000)

    def validate(patient_id: str) -> None:
        latest = app.patients.get_patient(patient_id).latest_analysis
        assert latest is not None
        app.patients.validate_analysis(
            patient_id, approved=True, clinician="Dr. Test", analysis_id=latest.id, actor=SYSTEM
        )

    validate(patients[1])  # before the gathered toast shows
    qtbot.waitUntil(lambda: toast.title.text() == "2 critical findings", timeout=10_000)
    validate(patients[0])
    validate(patients[2])
    qtbot.waitUntil(lambda: not toast.isVisible())


def test_notification_changes_a_locked_database_refused_say_which_and_are_sent_once(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program held the database's write lock: Mark read, All read and Delete
    pressed twice were sent twice, and their refusal showed only "The database does not
    answer", then "The database answers again": not what was left undone."""
    from ophthai_desktop.ui.messages import DATABASE_BACK
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    panel, notes, banner = gui.notifications_panel, gui.application.notifications, gui.window.banner
    older = notes.create_notification("Older", actor=SYSTEM)
    newer = notes.create_notification("Newer", actor=SYSTEM)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2)
    sent: list[str] = []
    for name in ("mark_read", "mark_all_read", "delete_notification"):

        def counted(
            *args: Any, _call: Any = getattr(notes, name), _name: str = name, **kw: Any
        ) -> Any:
            sent.append(_name)
            return _call(*args, **kw)

        monkeypatch.setattr(notes, name, counted)

    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=300):
        panel.list.setCurrentIndex(panel.model.index(0, 0))
        assert panel.selected_id() == newer.id
        panel.mark_read.click()
        panel.mark_read.click()  # again while the first waits: not sent
        qtbot.waitUntil(
            lambda: "The notification was not marked read" in banner.text(), timeout=5000
        )
    qtbot.waitUntil(lambda: banner.text().startswith(DATABASE_BACK), timeout=5000)
    assert "not marked read: mark it read again" in banner.text()
    assert sent == ["mark_read"]

    sent.clear()
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=300):
        panel.delete_requested.emit(older.id)
        panel.delete_requested.emit(older.id)
        qtbot.waitUntil(lambda: "The notification was not deleted" in banner.text(), timeout=5000)
        panel.mark_all.click()
        panel.mark_all.click()
        qtbot.waitUntil(lambda: "were not marked read" in banner.text(), timeout=5000)
    qtbot.waitUntil(lambda: banner.text().startswith(DATABASE_BACK), timeout=5000)
    assert "press All read again" in banner.text()
    assert sorted(sent) == ["delete_notification", "mark_all_read"]
    assert panel.model.rowCount() == 2 and panel.unread.text() == "2"  # nothing changed
