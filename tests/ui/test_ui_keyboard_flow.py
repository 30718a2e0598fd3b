"""The clinician's day by keyboard alone (issue #5, "Desktop GUI I"): create a patient,
import an OCT image, watch its analysis stream, see the notification it raises and open
its patient from it, approve the result and book the follow-up, look at the scan, and
cancel a queued analysis, with keys only: the window's shortcuts and the menus' Alt
letters, Tab and Shift+Tab between fields, Enter and Space to press, the arrow keys in
lists. Every key goes to the widget that has the focus, as a keyboard's would."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAccessible, QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QFileDialog,
    QMenu,
    QToolBar,
    QToolButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.ui.session import GuiSession
from tests.support.images import png_bytes
from tests.support.scripted_engine import DME, ScriptedEngine
from tests.ui.conftest import Maker, open_patient

NO = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
ALT = Qt.KeyboardModifier.AltModifier
ACTOR = Actor("t", "gui")


def focused() -> QWidget:
    widget = QApplication.focusWidget()
    assert widget is not None, "the keyboard focus is nowhere"
    return widget


def press(qtbot: QtBot, key: Qt.Key, modifier: Qt.KeyboardModifier = NO) -> QWidget | None:
    """Press ``key`` where the focus is (or on the open menu); returns where the focus
    is after it."""
    target = QApplication.activePopupWidget() or focused()
    qtbot.keyClick(target, key, modifier)
    return QApplication.focusWidget()


def type_text(qtbot: QtBot, text: str) -> None:
    qtbot.keyClicks(focused(), text)


def tab_to(qtbot: QtBot, widget: QWidget, *, back: bool = False, most: int = 40) -> int:
    """Tab (Shift+Tab) until ``widget`` has the focus; returns how many presses."""
    for presses in range(most + 1):
        if focused() is widget:
            return presses
        press(qtbot, Qt.Key.Key_Backtab if back else Qt.Key.Key_Tab, SHIFT if back else NO)
    raise AssertionError(f"{widget!r} not reached by {'Shift+' if back else ''}Tab")


def f6_to(qtbot: QtBot, area: QWidget) -> None:
    """Press F6 until the focus is in ``area`` (F6 goes round four areas)."""
    for _ in range(4):
        if press(qtbot, Qt.Key.Key_F6) is area:
            return
    raise AssertionError(f"F6 did not reach {area!r}")


def when_modal(
    kind: type[QWidget], act: Callable[[QWidget], None], *, within_s: float = 10
) -> None:
    """Call ``act`` with the modal window of ``kind`` once it is shown and active (a
    static dialog such as QFileDialog.getOpenFileNames runs its own event loop). Made
    active as a desktop's window manager would (offscreen does not always); closed
    unused after ``within_s``, so that the test fails rather than hangs."""
    deadline = time.monotonic() + within_s

    def poll() -> None:
        modal = QApplication.activeModalWidget()
        if isinstance(modal, kind) and modal.isVisible():
            if QApplication.activeWindow() is not modal:
                modal.activateWindow()
            elif QApplication.focusWidget() is not None:
                act(modal)
                return
            if time.monotonic() > deadline:
                modal.close()
                return
        QTimer.singleShot(20, poll)

    QTimer.singleShot(20, poll)


def accessible_name(widget: QWidget) -> str:
    return QAccessible.queryAccessibleInterface(widget).text(QAccessible.Text.Name)


def _active(qtbot: QtBot, gui: GuiSession) -> QWidget:
    """The window active again (after a dialog closes a desktop's window manager does
    it; offscreen does not); returns where the focus is in it."""
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    return focused()


def test_the_whole_flow_by_keyboard(
    qtbot: QtBot, qtlog: Any, make_gui: Maker, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """On the tiny model (its answer cannot be read: a notification says so)."""
    gui = make_gui(model_path=tiny_checkpoint, max_new_tokens=24, device="cpu")
    window, page, view = gui.window, gui.patient_page, gui.analysis_view
    _active(qtbot, gui)

    # Ctrl+N: the new-patient form, the name first; Tab through it; Enter creates.
    press(qtbot, Qt.Key.Key_N, CTRL)
    dialog = gui.patients.dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog)
    assert focused() is dialog.name
    type_text(qtbot, "Keyboard Only")
    assert press(qtbot, Qt.Key.Key_Tab) is dialog.age
    type_text(qtbot, "64")
    tab_to(qtbot, dialog.gender)
    type_text(qtbot, "Female")
    tab_to(qtbot, dialog.symptoms)
    type_text(qtbot, "blurred vision")
    press(qtbot, Qt.Key.Key_Return)  # a new line in the symptoms
    type_text(qtbot, "floaters")
    tab_to(qtbot, dialog.name)  # round the form and back: no trap
    press(qtbot, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.patient is not None and page.name.text() == "Keyboard Only")
    patient = page.patient
    assert patient is not None
    # The keyboard is on the new patient's page (it went back to the search field).
    assert _active(qtbot, gui) is page.info_scroll
    assert list(patient.symptoms) == ["blurred vision", "floaters"] and patient.age == 64

    # File ▸ Import image… by its Alt letters; the file typed in the file dialog.
    image = tmp_path / "macula_OD.png"
    image.write_bytes(png_bytes((64, 48)))

    def choose(box: QWidget) -> None:
        assert isinstance(box, QFileDialog)
        type_text(qtbot, str(image))
        press(qtbot, Qt.Key.Key_Return)

    when_modal(QFileDialog, choose)
    press(qtbot, Qt.Key.Key_F, ALT)
    press(qtbot, Qt.Key.Key_I)
    qtbot.waitUntil(lambda: "added to" in window.banner.text())
    _active(qtbot, gui)

    # The analysis streams, then its result; the notification it raises arrives.
    qtbot.waitUntil(lambda: view.reasoning.toPlainText() != "", timeout=90_000)
    qtbot.waitUntil(view.card.isVisible, timeout=90_000)
    notifications = gui.notifications_panel
    qtbot.waitUntil(notifications.unread.isVisible)
    assert accessible_name(notifications.unread) == "1 unread"

    # F6 to the notifications, Home to the newest, Enter opens its patient (read).
    f6_to(qtbot, notifications.list)
    press(qtbot, Qt.Key.Key_Home)
    press(qtbot, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not notifications.unread.isVisible())

    # Back to the page (Shift+F6), to the verdict by Tab; Space rejects (an answer that
    # could not be read has nothing to approve: Approve is off).
    press(qtbot, Qt.Key.Key_F6, SHIFT)
    assert page.isAncestorOf(focused())
    tab_to(qtbot, view.reject)
    press(qtbot, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: view.card.badge.text().startswith("REJECTED"))
    # No result: the focus goes on to Analyse, the next step (the explanation above it
    # in sight); Tab to Schedule, Space books it.
    qtbot.waitUntil(lambda: focused() is view.analyse)
    tab_to(qtbot, view.schedule)
    press(qtbot, Qt.Key.Key_Space)
    qtbot.waitUntil(view.cancel_appointment.isVisible)

    # The scan: Shift+Tab back to the page's tabs, Right to Scans, Tab to the viewer's
    # buttons; Space zooms, Ctrl+- and Ctrl+0 zoom out and fit; the arrow keys move the
    # brightness slider and Space on Reset puts it back.
    scans = gui.scan_viewer
    tab_to(qtbot, page.tabs.tabBar(), back=True)
    press(qtbot, Qt.Key.Key_Right)
    assert page.tabs.tabText(page.tabs.currentIndex()).startswith("Scans")
    qtbot.waitUntil(lambda: scans.canvas.has_image)
    fitted = scans.canvas.scale_factor()
    tab_to(qtbot, scans.zoom_in_button)
    press(qtbot, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: scans.canvas.scale_factor() > fitted)
    tab_to(qtbot, scans.canvas)
    press(qtbot, Qt.Key.Key_Minus, CTRL)
    qtbot.waitUntil(lambda: abs(scans.canvas.scale_factor() - fitted) < 1e-6)
    press(qtbot, Qt.Key.Key_Plus, CTRL)
    assert scans.canvas.scale_factor() > fitted
    press(qtbot, Qt.Key.Key_0, CTRL)
    qtbot.waitUntil(lambda: abs(scans.canvas.scale_factor() - fitted) < 1e-6)
    tab_to(qtbot, scans.brightness)
    press(qtbot, Qt.Key.Key_Right)
    assert scans.brightness.value() > 0
    reset = next(
        button
        for button in scans.findChildren(QToolButton)
        if button.accessibleName() == "Reset brightness and contrast"
    )
    tab_to(qtbot, reset)
    press(qtbot, Qt.Key.Key_Space)
    assert scans.brightness.value() == 0

    # F6 to the job queue: the row the keyboard is on is the one chosen.
    jobs = gui.jobs_panel
    f6_to(qtbot, jobs.table)
    analysis = view.analysis
    assert analysis is not None and jobs.selected_job_id() == analysis.job_id
    assert not [r.message for r in qtlog.records if "Ambiguous shortcut" in r.message]


def test_a_queued_analysis_is_cancelled_by_keyboard(qtbot: QtBot, gui: GuiSession) -> None:
    """F6 to the job queue, Shift+Tab to Cancel, Space. The keyboard stood on the only
    row, which was not chosen, and no arrow key chose it: Cancel stayed off."""
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Queued Keyed"}, actor=ACTOR, image=NewImage(png_bytes())
    )
    job = app.jobs.queue_patient_analysis(patient.id, actor=ACTOR)  # waits: no model
    jobs = gui.jobs_panel
    qtbot.waitUntil(lambda: jobs.model.get(job.id) is not None)
    _active(qtbot, gui)
    f6_to(qtbot, jobs.table)
    press(qtbot, Qt.Key.Key_Down)  # one row: the arrow keys cannot move
    assert jobs.selected_job_id() == job.id
    tab_to(qtbot, jobs.cancel, back=True)
    press(qtbot, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: app.jobs.get_job(job.id).state == "cancelled")


def _tab_stops(window: QWidget) -> list[QWidget]:
    """The widgets of ``window`` that Tab stops on now."""
    return [
        widget
        for widget in window.findChildren(QWidget)
        if widget.isVisible()
        and widget.isEnabled()
        and widget.focusPolicy() & Qt.FocusPolicy.TabFocus
        and widget.focusProxy() is None
    ]


def test_every_tab_stop_has_a_name_for_a_screen_reader(qtbot: QtBot, make_gui: Maker) -> None:
    """What a screen reader says as Tab comes to each field: never nothing."""
    gui = make_gui(engine=ScriptedEngine(DME))
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Named"}, actor=ACTOR, image=NewImage(png_bytes((64, 48)))
    )
    app.oculomics.add_measurement(
        patient.id, eye="OD", measured_on=date.today(), iop_mmhg=18.0, actor=ACTOR
    )
    app.notifications.create_notification("Scan received", type="info", actor=ACTOR)
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    view.analyse.click()
    qtbot.waitUntil(view.card.isVisible)
    unnamed: dict[str, list[str]] = {}
    for tab in ("analysis", "scans", "oculomics"):
        gui.patient_page.show_tab(tab)
        qtbot.wait(50)
        unnamed[tab] = [
            f"{type(w).__name__}#{w.objectName()}"
            for w in _tab_stops(gui.window)
            if not accessible_name(w).strip()
        ]
    charts = gui.oculomics_view.charts.values()
    assert [accessible_name(chart) for chart in charts][:2] == [
        "Intraocular pressure (mmHg) over time",
        "Cup-to-disc ratio over time",
    ]
    dialog = gui.patients.new_patient()
    qtbot.waitExposed(dialog)
    dialog.birth_known.setChecked(True)  # the birth date can be entered
    unnamed["new patient"] = [
        f"{type(w).__name__}#{w.objectName()}"
        for w in _tab_stops(dialog)
        if not accessible_name(w).strip()
    ]
    dialog.reject()
    assert not any(unnamed.values()), unnamed


def _shortcuts(window: QWidget) -> list[tuple[str, QWidget, bool, QObject]]:
    """Every key of ``window`` that does something, in portable text, with where it
    works (a widget, and whether in its children too) and what has it (an action, a
    shortcut, a button)."""
    portable = QKeySequence.SequenceFormat.PortableText
    found: list[tuple[str, QWidget, bool, QObject]] = []
    window_wide = (Qt.ShortcutContext.WindowShortcut, Qt.ShortcutContext.ApplicationShortcut)
    for action in window.findChildren(QAction):
        context = action.shortcutContext()
        owners = [window] if context in window_wide else action.associatedObjects()
        for sequence in action.shortcuts():
            for owner in owners:
                if isinstance(owner, QWidget) and not isinstance(owner, QMenu | QToolBar):
                    children = context != Qt.ShortcutContext.WidgetShortcut
                    found.append((sequence.toString(portable), owner, children, action))
    for shortcut in window.findChildren(QShortcut):
        owner = shortcut.parent()
        assert isinstance(owner, QWidget)
        if shortcut.context() in window_wide:
            owner = window
        children = shortcut.context() != Qt.ShortcutContext.WidgetShortcut
        found.append((shortcut.key().toString(portable), owner, children, shortcut))
    for button in window.findChildren(QAbstractButton):
        if not button.shortcut().isEmpty():  # a button's own: window-wide
            found.append((button.shortcut().toString(portable), window, True, button))
    return found


def test_no_two_things_on_one_key(qtbot: QtBot, make_gui: Maker) -> None:
    """Two shortcuts on one key where both work do neither: Qt only warns "Ambiguous
    shortcut overload"."""
    gui = make_gui()
    keys = _shortcuts(gui.window)
    assert len(keys) >= 15
    clashes = []
    for i, (key, owner, children, what) in enumerate(keys):
        for other_key, other, other_children, other_what in keys[i + 1 :]:
            overlap = (
                owner is other
                or (children and owner.isAncestorOf(other))
                or (other_children and other.isAncestorOf(owner))
            )
            if key == other_key and overlap and what is not other_what:
                clashes.append((key, repr(what), repr(other_what)))
    assert not clashes


def test_the_notification_the_keyboard_comes_to_is_the_one_chosen(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """F6 put the keyboard on the newest notification without choosing it: Delete and
    Enter acted on a row shown only by a focus frame. Unchosen (Ctrl+Space), Delete
    deleted it all the same."""
    notes = gui.application.notifications
    older = notes.create_notification("Older", actor=ACTOR)
    newer = notes.create_notification("Newer", actor=ACTOR)
    panel = gui.notifications_panel
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2)
    _active(qtbot, gui)
    f6_to(qtbot, panel.list)
    assert panel.list.selectionModel().selectedIndexes() == [panel.list.currentIndex()]
    assert panel.selected_id() == newer.id and panel.delete.isEnabled()

    press(qtbot, Qt.Key.Key_Space, CTRL)  # unchosen: the focus frame stays on it
    assert not panel.list.selectionModel().hasSelection()
    assert not panel.delete.isEnabled() and not panel.mark_read.isEnabled()
    with qtbot.assertNotEmitted(panel.delete_requested):  # asks for nothing to be deleted
        press(qtbot, Qt.Key.Key_Delete)

    press(qtbot, Qt.Key.Key_Space)  # chosen again
    press(qtbot, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1)
    assert [n.id for n in notes.list_notifications().items] == [older.id]


def test_a_new_patient_has_the_keyboard_on_their_page(qtbot: QtBot, gui: GuiSession) -> None:
    """Ctrl+N, the name, Enter: the keyboard went back to the search field, away from
    the new patient's page where the next steps are. A form cancelled still gives it
    back to where it was."""
    page, search = gui.patient_page, gui.patient_list.search
    _active(qtbot, gui)
    press(qtbot, Qt.Key.Key_F, CTRL)
    assert focused() is search
    press(qtbot, Qt.Key.Key_N, CTRL)
    dialog = gui.patients.dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog)
    press(qtbot, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert _active(qtbot, gui) is search

    press(qtbot, Qt.Key.Key_N, CTRL)
    dialog = gui.patients.dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog)
    type_text(qtbot, "Keyed In")
    press(qtbot, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.patient is not None and page.name.text() == "Keyed In")
    assert _active(qtbot, gui) is page.info_scroll
    assert accessible_name(focused()) == "Patient details"
