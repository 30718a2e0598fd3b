"""Keyboard, screen readers, large fonts and colour: a clinician who works without the
mouse, hears the window through a screen reader or reads it at a larger font size
reaches and understands everything the others do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPoint, QRect, QSize, Qt
from PySide6.QtGui import (
    QAccessible,
    QAccessibleAnnouncementEvent,
    QAccessibleEvent,
    QColor,
    QFont,
    QFontInfo,
    QFontMetrics,
    QKeySequence,
    QPixmap,
    QStandardItem,
)
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QDockWidget,
    QHeaderView,
    QLabel,
    QMenu,
    QScrollArea,
    QSplitter,
    QTableView,
    QToolButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from ophthai_desktop.core import events as ev
from ophthai_desktop.core.inference import ParsedAnswer
from ophthai_desktop.core.records import Actor, AnalysisRecord
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.ui.models.job_table import STATE_COLUMN
from ophthai_desktop.ui.models.patient_table import COLUMN_OF, STATUS_COLUMN
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views.analysis import AnalysisView
from ophthai_desktop.ui.views.scan_viewer import THUMB_SIZE
from tests.support.images import png_bytes
from tests.support.scripted_engine import DME, ScriptedEngine
from tests.ui.conftest import Maker, open_patient

ACTOR = Actor("t", "gui")


# Keyboard ---------------------------------------------------------------------------------


def test_every_menu_entry_has_its_own_mnemonic(gui: GuiSession) -> None:
    """Alt+F, N opens New patient…: each entry of each menu has a letter of its own."""
    for top in gui.window.menuBar().actions():
        menu = top.menu()
        assert isinstance(menu, QMenu)
        letters = []
        for action in menu.actions():
            if action.isSeparator():
                continue
            text = action.text()
            assert "&" in text[:-1], f"{top.text()} ▸ {text} has no mnemonic"
            letters.append(text[text.index("&") + 1].lower())
        assert len(letters) == len(set(letters)), f"{top.text()}: {letters}"


def test_deleting_the_shown_patient_gives_the_keyboard_back_to_the_list(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Delete… on the page, confirmed: the page's buttons go with the patient, and the
    focus was left on the empty page's hint, a label a keyboard or screen reader user
    can do nothing with."""
    patient = gui.application.patients.create_patient({"name": "Gone Soon"}, actor=ACTOR)
    open_patient(qtbot, gui, patient.id)
    window = gui.window
    window.activateWindow()
    gui.patient_page.delete.setFocus()
    qtbot.waitUntil(lambda: window.focusWidget() is gui.patient_page.delete)
    qtbot.keyClick(gui.patient_page.delete, Qt.Key.Key_Space)
    box = gui.patients.confirm
    assert box is not None
    qtbot.waitUntil(lambda: QApplication.activeWindow() is box)
    yes = box.property("yesButton")
    yes.setFocus()
    qtbot.keyClick(yes, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: gui.patient_page.patient is None)
    assert window.focusWidget() is gui.patient_list.table


def test_enter_on_the_job_queue_opens_the_jobs_patient_and_tab_leaves_it(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A double-click was the only way from a job to its patient; and Tab went from cell
    to cell of the queue (row after row) instead of on to Cancel."""
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Queued Keyed"}, actor=ACTOR, image=NewImage(png_bytes())
    )
    job = app.jobs.queue_patient_analysis(patient.id, actor=ACTOR)
    panel = gui.jobs_panel
    qtbot.waitUntil(lambda: panel.model.get(job.id) is not None)
    gui.window.activateWindow()
    assert panel.select_job(job.id)
    panel.table.setFocus()
    qtbot.waitUntil(panel.table.hasFocus)
    qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Queued Keyed")

    panel.table.setFocus()
    qtbot.waitUntil(panel.table.hasFocus)
    qtbot.keyClick(panel.table, Qt.Key.Key_Tab)
    assert not panel.table.hasFocus()


def _f6(qtbot: QtBot, shift: bool = False) -> QWidget:
    """Press F6 (Shift+F6) where the keyboard focus is, as a user would; returns where
    the focus went."""
    focused = QApplication.focusWidget()
    assert focused is not None
    modifier = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
    qtbot.keyClick(focused, Qt.Key.Key_F6, modifier)
    QApplication.processEvents()
    now = QApplication.focusWidget()
    assert now is not None
    return now


def test_f6_goes_from_area_to_area_and_back_to_where_it_was(qtbot: QtBot, gui: GuiSession) -> None:
    """Reaching the job queue from the patient list took Tab through every field of the
    patient page. F6 and Shift+F6 go round the list, the page, the notifications and
    the job queue (named in the View menu), passing over a closed dock and an empty
    one."""
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Keyboard Only"}, actor=ACTOR, image=NewImage(png_bytes())
    )
    app.jobs.queue_patient_analysis(patient.id, actor=ACTOR)  # waits: no model here
    app.notifications.create_notification("Scan received", type="info", actor=ACTOR)
    page, notifications, jobs = gui.patient_page, gui.notifications_panel, gui.jobs_panel
    qtbot.waitUntil(lambda: notifications.list.isVisible() and jobs.table.isVisible())
    open_patient(qtbot, gui, patient.id)
    window = gui.window
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    table = gui.patient_list.table
    table.setFocus()
    qtbot.waitUntil(table.hasFocus)

    assert page.isAncestorOf(_f6(qtbot))
    assert _f6(qtbot) is notifications.list
    assert _f6(qtbot) is jobs.table
    assert _f6(qtbot) is table  # round again
    assert _f6(qtbot, shift=True) is jobs.table
    assert _f6(qtbot, shift=True) is notifications.list

    # The page again: where the focus was in it, not its first widget.
    edit = page.edit
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus)
    assert _f6(qtbot) is notifications.list
    assert _f6(qtbot, shift=True) is edit

    window.notifications_dock.close()  # View ▸ Notifications unticked
    assert _f6(qtbot) is jobs.table
    assert _f6(qtbot, shift=True) is edit
    window.notifications_dock.show()
    for notification in app.notifications.list_notifications().items:
        app.notifications.delete_notification(notification.id, actor=ACTOR)
    qtbot.waitUntil(lambda: not notifications.list.isVisible())  # "No notifications."
    assert _f6(qtbot) is jobs.table

    # A dock floating in a window of its own is reached, and left, the same way.
    app.notifications.create_notification("Scan received", type="info", actor=ACTOR)
    qtbot.waitUntil(notifications.list.isVisible)
    window.notifications_dock.setFloating(True)
    qtbot.waitExposed(window.notifications_dock)
    assert _f6(qtbot, shift=True) is notifications.list
    assert QApplication.activeWindow() is window.notifications_dock
    assert _f6(qtbot) is jobs.table
    assert QApplication.activeWindow() is window

    menu = window.next_area_action.associatedObjects()
    assert any(isinstance(m, QMenu) and m.title() == "&View" for m in menu)
    assert window.next_area_action.shortcut() == QKeySequence("F6")
    assert window.previous_area_action.shortcut() == QKeySequence("Shift+F6")


# Screen readers ---------------------------------------------------------------------------


def _name(widget: object) -> str:
    interface = QAccessible.queryAccessibleInterface(widget)
    return interface.text(QAccessible.Text.Name)


def test_escape_dismisses_the_toast_and_leaves_the_focus_where_it_is(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A critical toast went only by a click or after its 8 s: a clinician at the
    keyboard could not put it away from the list it covered."""
    window, toast = gui.window, gui.window.toast
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    search = gui.patient_list.search
    search.setFocus()
    qtbot.keyClicks(search, "Smi")
    toast.show_message("Critical finding", "Abnormal finding: CNV", "critical")
    assert toast.isVisible() and QApplication.focusWidget() is search

    qtbot.keyClick(search, Qt.Key.Key_Escape)
    assert not toast.isVisible()
    assert QApplication.focusWidget() is search and search.text() == "Smi"
    qtbot.keyClicks(search, "th")
    assert search.text() == "Smith"


@pytest.mark.parametrize("which", ["settings", "model manager"])
def test_escape_in_a_dialog_closes_the_dialog_and_leaves_the_toast(
    qtbot: QtBot, gui: GuiSession, which: str
) -> None:
    """One key, one thing: in a dialog (modal or not) Escape closes it, as in every Qt
    dialog, and the toast in the window stays to be read; back in the window, the next
    Escape dismisses it. A floating notifications dock counts as the window."""
    window, toast = gui.window, gui.window.toast
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    toast.show_message("Critical finding", "Abnormal finding: CNV", "critical")
    if which == "settings":
        window.settings_action.trigger()
        dialog: QWidget | None = gui.settings_controller.dialog
    else:
        window.model_manager_action.trigger()
        dialog = gui.model_manager.dialog
    assert dialog is not None
    dialog.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog)

    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    assert not dialog.isVisible() and toast.isVisible()

    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not toast.isVisible()

    toast.show_message("Critical finding", "Abnormal finding: AMD", "critical")
    dock = window.notifications_dock
    dock.setFloating(True)
    dock.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dock)
    qtbot.keyClick(gui.notifications_panel.list, Qt.Key.Key_Escape)
    assert not toast.isVisible() and dock.isVisible()


def _description(widget: object) -> str:
    interface = QAccessible.queryAccessibleInterface(widget)
    return interface.text(QAccessible.Text.Description)


def test_a_screen_reader_hears_what_the_patient_pages_parts_are(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """The status pill read a bare "Critical", the stepper's dots "1", "2", the image and
    its thumbnails nothing at all (the compact column's thumbnails have no text), the
    banner's close button "✕" and the unread badge a bare number."""
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Heard", "status": "Critical"},
        actor=ACTOR,
        image=NewImage(png_bytes(), modality="OCT", laterality="OS", filename="macula.png"),
    )
    open_patient(qtbot, gui, patient.id)
    page, viewer = gui.patient_page, gui.scan_viewer
    assert _name(page.status) == "Status: Critical"
    assert _name(page.stepper) == "Workflow"
    assert _description(page.stepper) == "Step 1 of 4: Analysis"
    dots = [_name(label) for label in page.stepper.findChildren(QLabel, "stepDot")]
    assert dots == [
        "Step 1, Analysis: current step",
        "Step 2, Validation: to do",
        "Step 3, Scheduling: to do",
        "Step 4, Complete: to do",
    ]
    assert _name(page.tabs) == "Patient's analysis, scans and measurements"
    assert _name(gui.analysis_view.card.confidence) == "Confidence"
    assert "confidence" in _description(gui.analysis_view.card.confidence)

    page.show_tab("scans")
    qtbot.waitUntil(lambda: viewer.canvas.has_image)
    assert _name(viewer.canvas) == "Scan image"
    assert _description(viewer.canvas).startswith("OCT · OS (left) · ")
    assert "macula.png" in _description(viewer.canvas)
    assert _name(viewer.thumbnails) == "Scans of the patient"
    viewer.resize(300, 400)  # compact: pictures without their labels
    qtbot.waitUntil(lambda: viewer.compact_thumbnails)
    assert viewer.thumbnails.item(0).text() == ""
    thumbnail = QAccessible.queryAccessibleInterface(viewer.thumbnails).child(0)
    assert thumbnail.text(QAccessible.Text.Name).startswith("OCT · OS (left) · ")
    assert _name(viewer.brightness) == "Brightness"
    assert _name(viewer.contrast) == "Contrast"

    gui.window.banner.show_message("Something to say", "info")
    close = gui.window.banner.findChild(QToolButton)
    assert _name(close) == "Dismiss the message"
    gui.notifications_panel.set_unread(2)
    assert _name(gui.notifications_panel.unread) == "2 unread"


def _tab_stops(window: QWidget) -> list[QWidget]:
    """The widgets Tab goes to in ``window``, in its order, as Qt picks them."""
    stops: list[QWidget] = []
    widget = window.nextInFocusChain()
    while widget is not window:
        tab = Qt.FocusPolicy.TabFocus
        if widget.isVisible() and widget.isEnabled() and widget.focusPolicy() & tab == tab:
            stops.append(widget)
        widget = widget.nextInFocusChain()
    return stops


def test_a_screen_reader_tells_the_two_analyse_buttons_apart(qtbot: QtBot, make_gui: Maker) -> None:
    """The patient page's Analyse, beside the name, and the analysis tab's were two Tab
    stops both heard as "Analyse": which was which could not be told. Each says where
    it is, after the word shown on it; no two buttons the Tab key reaches share a name."""
    gui = make_gui(engine=ScriptedEngine(DME))
    patient = gui.application.patients.create_patient(
        {"name": "Heard"}, actor=ACTOR, image=NewImage(png_bytes((64, 48)))
    )
    open_patient(qtbot, gui, patient.id)
    page, view = gui.patient_page, gui.analysis_view
    qtbot.waitUntil(lambda: page.analyse.isEnabled() and view.analyse.isEnabled())
    assert page.analyse.text() == view.analyse.text() == "Analyse"  # as shown

    stops = [w for w in _tab_stops(gui.window) if isinstance(w, QAbstractButton)]
    assert page.analyse in stops and view.analyse in stops
    names = [_name(button) for button in stops]
    assert len(set(names)) == len(names), names
    assert _name(page.analyse) == "Analyse, beside the patient's name"
    assert _name(view.analyse) == "Analyse, in the Analysis tab"


def test_a_screen_reader_is_told_a_toast_appeared_and_what_it_says(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The toast showed and went unheard: nothing told a screen reader it was there."""
    told: list[tuple[str, QAccessible.AnnouncementPoliteness]] = []
    update = QAccessible.updateAccessibility

    def hear(event: QAccessibleEvent) -> None:
        if isinstance(event, QAccessibleAnnouncementEvent):
            told.append((event.message(), event.politeness()))
        update(event)

    monkeypatch.setattr(QAccessible, "updateAccessibility", hear)
    toast = gui.window.toast
    toast.show_message("Scan received", "1 new scan", "info")
    toast.show_message("Critical finding", "Abnormal finding: CNV", "critical")
    assert told == [
        ("Scan received: 1 new scan", QAccessible.AnnouncementPoliteness.Polite),
        ("Critical finding: Abnormal finding: CNV", QAccessible.AnnouncementPoliteness.Assertive),
    ]
    assert _name(toast) == "Critical finding"
    assert _description(toast) == "Abnormal finding: CNV"


def test_a_screen_reader_is_told_why_a_form_was_refused(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enter in the new-patient form with the name left empty: the focus stayed on the
    name, the message showed under the form, and a screen reader said nothing. So too
    a verdict without the clinician's name."""
    told: list[tuple[str, QAccessible.AnnouncementPoliteness]] = []
    update = QAccessible.updateAccessibility

    def hear(event: QAccessibleEvent) -> None:
        if isinstance(event, QAccessibleAnnouncementEvent):
            told.append((event.message(), event.politeness()))
        update(event)

    monkeypatch.setattr(QAccessible, "updateAccessibility", hear)
    gui = make_gui(engine=ScriptedEngine(DME))
    dialog = gui.patients.new_patient()
    qtbot.waitExposed(dialog)
    dialog.name.setFocus()
    qtbot.keyClick(dialog.name, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: dialog.error_text() != "")
    assert QApplication.focusWidget() is dialog.name
    assert told == [(dialog.error_text(), QAccessible.AnnouncementPoliteness.Assertive)]
    dialog.reject()

    patient = gui.application.patients.create_patient(
        {"name": "Heard"}, actor=ACTOR, image=NewImage(png_bytes((64, 48)))
    )
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    view.analyse.click()
    qtbot.waitUntil(view.card.isVisible)
    view.clinician.clear()
    told.clear()
    view.approve.click()
    qtbot.waitUntil(lambda: "name is required" in view.verdict_error_text())
    assert (view.verdict_error_text(), QAccessible.AnnouncementPoliteness.Assertive) in told


# Colour -----------------------------------------------------------------------------------


def test_a_notifications_kind_is_told_by_words_and_shape_not_colour_alone(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A critical finding and a routine note differed by the colour of a square only."""
    notes = gui.application.notifications
    notes.create_notification("Abnormal finding: CNV", type="critical", actor=ACTOR)
    notes.create_notification("Two files filed", type="info", actor=ACTOR)
    notes.create_notification("Analysis approved", type="success", actor=ACTOR)
    model = gui.notifications_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == 3)
    items = {model.item(row).text().split("\n")[0]: model.item(row) for row in range(3)}
    critical, info = items["Abnormal finding: CNV"], items["Two files filed"]
    assert critical.text().split("\n")[1].startswith("Critical · ")
    assert info.text().split("\n")[1].startswith("Info · ")
    assert items["Analysis approved"].text().split("\n")[1].startswith("Done · ")

    def shape(item: QStandardItem) -> list[bool]:
        """Which pixels of the icon are drawn (its outline, whatever its colour)."""
        image = item.icon().pixmap(16, 16).toImage()
        return [image.pixelColor(x, y).alpha() > 128 for y in range(16) for x in range(16)]

    def signed(item: QStandardItem) -> bool:
        """Whether a light sign is drawn on the icon's colour."""
        image = item.icon().pixmap(16, 16).toImage()
        pixels = [image.pixelColor(x, y) for y in range(16) for x in range(16)]
        return any(p.alpha() == 255 and p.lightness() > 200 for p in pixels)

    assert shape(critical) != shape(info)  # a triangle, a disc
    assert signed(critical) and signed(info)  # "!" and "i"


# Large fonts ------------------------------------------------------------------------------

#: The window's size in the large-font tests: a common laptop screen.
LARGE_FONT_WINDOW = (1440, 900)


@pytest.fixture
def large_font(qapp: QApplication) -> Iterator[QFont]:
    """The application font at 1.5 times its size while the window is built (as a
    clinician's desktop setting would make it), put back after the test."""
    before = QFont(qapp.font())
    font = QFont(before)
    font.setPointSizeF(before.pointSizeF() * 1.5)
    qapp.setFont(font)
    yield font  # asked for before make_gui: its windows are gone when the font goes back
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qapp.setFont(before)


def _large_window(qtbot: QtBot, make_gui: Maker) -> GuiSession:
    gui = make_gui()
    gui.window.resize(*LARGE_FONT_WINDOW)
    qtbot.waitUntil(lambda: (gui.window.width(), gui.window.height()) == LARGE_FONT_WINDOW)
    return gui


def test_at_a_larger_font_the_patient_page_shows_its_text_whole(
    qtbot: QtBot, large_font: QFont, make_gui: Maker
) -> None:
    """At 1.5 times the font size the list's status read "Pending A…", the details
    scrolled sideways with the dates cut at the edge, the thumbnails' labels lost the
    eye ("Fundus · …") and the charts' axes were all "…"."""
    gui = _large_window(qtbot, make_gui)
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Large Print", "age": 70},
        actor=ACTOR,
        image=NewImage(png_bytes(), modality="fundus", laterality="OS"),
    )
    app.patients.attach_image(
        patient.id, NewImage(png_bytes(), modality="OCT", laterality="OD"), actor=ACTOR
    )
    for days_ago, iop in ((400, 17.0), (200, 19.5), (10, 23.0)):
        app.oculomics.add_measurement(
            patient.id,
            eye="OD",
            measured_on=date.today() - timedelta(days=days_ago),
            iop_mmhg=iop,
            actor=ACTOR,
        )
    open_patient(qtbot, gui, patient.id)
    metrics = gui.patient_list.table.fontMetrics()

    header = gui.patient_list.table.horizontalHeader()
    status = header.sectionSize(STATUS_COLUMN)
    assert status >= metrics.horizontalAdvance("Pending Analysis") + 16 + 8  # icon, margins
    jobs = gui.jobs_panel.table
    state = jobs.horizontalHeader().sectionSize(STATE_COLUMN)
    assert state >= jobs.fontMetrics().horizontalAdvance("cancelled") + 8

    page = gui.patient_page
    qtbot.waitUntil(lambda: page.admitted.text() != "—")
    QApplication.processEvents()
    assert not page.info_scroll.horizontalScrollBar().isVisible()

    page.show_tab("scans")
    viewer = gui.scan_viewer
    qtbot.waitUntil(lambda: viewer.scan_count() == 2 and viewer.canvas.has_image)
    assert not viewer.compact_thumbnails
    fundus = viewer.thumbnails.item(1)
    assert fundus.text().startswith("Fundus · OS")  # the newest first: the OCT
    width = viewer.thumbnails.visualItemRect(fundus).width()
    # Qt cuts a label to the cell less a margin each side (a few pixels).
    assert width - 8 >= viewer.thumbnails.fontMetrics().horizontalAdvance("Fundus · OS")

    page.show_tab("oculomics")
    chart = gui.oculomics_view.charts["iop_mmhg"]
    qtbot.waitUntil(lambda: chart.isVisible() and chart.y_axis.tickCount() >= 2)
    QApplication.processEvents()
    labels = QFontMetrics(chart.y_axis.labelsFont()).height()
    assert chart.chart().plotArea().height() >= chart.y_axis.tickCount() * labels


#: A classification of long words, as the model may write it.
LONG_WORDS = ParsedAnswer(
    classification="Diabetic Macular Edema with Epiretinal Membrane and Vitreomacular Traction",
    confidence=87.0,
    findings=("intraretinal cystoid spaces",),
    recommendation="Refer to the retina clinic",
    explanation="Centre-involving DME",
)


def _right_edge_in(scroll: QScrollArea, widget: QWidget) -> int:
    return widget.mapTo(scroll.viewport(), QPoint(widget.width(), 0)).x()


def test_at_a_larger_font_on_a_small_screen_the_analysis_does_not_scroll_sideways(
    qtbot: QtBot, large_font: QFont, make_gui: Maker
) -> None:
    """At 1.5 times the font on a 1024 x 768 screen the tabs were left 300 px beside the
    details; the result card, its badge beside the classification, made the analysis
    tab scroll sideways, and its Analyse button showed "An"."""
    gui = make_gui(engine=ScriptedEngine(LONG_WORDS))
    gui.window.resize(1024, 768)
    patient = gui.application.patients.create_patient(
        {"name": "Large Print"}, actor=ACTOR, image=NewImage(png_bytes(), modality="OCT")
    )
    open_patient(qtbot, gui, patient.id)
    gui.patient_page.show_tab("analysis")
    view = gui.analysis_view
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible(), timeout=20_000)
    qtbot.waitUntil(lambda: gui.window.width() == 1024)
    scroll = view.findChild(QScrollArea)
    assert scroll is not None

    def fits() -> bool:
        return scroll.horizontalScrollBar().maximum() == 0 and all(
            _right_edge_in(scroll, w) <= scroll.viewport().width()
            for w in (view.analyse, view.card, view.card.badge, view.approve, view.schedule)
        )

    qtbot.waitUntil(fits)
    assert view.analyse.width() >= view.analyse.sizeHint().width()  # "Analyse", not "An"
    assert not gui.patient_page.details_beside_tabs  # under the tabs, not beside them
    assert view.card.text().startswith(LONG_WORDS.classification + " [")


def test_at_a_larger_font_the_page_narrows_for_the_list_without_cutting_anything(
    qtbot: QtBot, large_font: QFont, make_gui: Maker
) -> None:
    """At 1.5 times the font on a 1024 x 768 screen the stepper's four names and the
    details beside the tabs kept the page 666 px wide: the list, given all the room the
    page could spare, still showed the names alone. The page now narrows to its tabs'
    width: the buttons go under the name, the stepper shows the current step's name
    alone, and nothing is cut or scrolls sideways."""
    gui = make_gui(engine=ScriptedEngine(LONG_WORDS))
    gui.window.resize(1024, 768)
    patient = gui.application.patients.create_patient(
        {"name": "Large Print"}, actor=ACTOR, image=NewImage(png_bytes(), modality="OCT")
    )
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible(), timeout=20_000)
    qtbot.waitUntil(lambda: gui.window.width() == 1024)
    page = gui.patient_page
    split = gui.window.findChild(QSplitter, "mainSplit")
    assert split is not None
    least = page.minimumSizeHint().width()
    handle = split.handle(1)  # the list's edge, dragged right as far as it goes
    start = handle.rect().center()
    QTest.mousePress(handle, Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(handle, start + QPoint(page.width() - least + 50, 0))
    QTest.mouseRelease(handle, Qt.MouseButton.LeftButton, pos=start)
    qtbot.waitUntil(lambda: page.width() == least)

    buttons = (page.analyse, page.edit, page.delete)
    qtbot.waitUntil(  # laid out anew: not cut ("An")
        lambda: all(b.width() >= b.sizeHint().width() for b in buttons), timeout=10_000
    )
    table = gui.patient_list.table
    qtbot.waitUntil(lambda: not table.isColumnHidden(STATUS_COLUMN))
    stepper = page.stepper
    current = [label for label in stepper.findChildren(QLabel, "stepLabel") if label.isVisible()]
    assert [label.text() for label in current] == [stepper.current_name()]
    assert current[0].width() >= current[0].minimumWidth()  # whole, in bold
    for widget in (*buttons, stepper, page.tabs):
        assert widget.mapTo(page, QPoint(widget.width(), 0)).x() <= page.width()
    scroll = view.findChild(QScrollArea)
    assert scroll is not None
    qtbot.waitUntil(lambda: scroll.horizontalScrollBar().maximum() == 0)


#: The longest states of the status bar's fields, and their reasons.
LONGEST_STATES = {
    "model": ("Model: unloaded (load it to run the queue)", "warn", "Installed, not loaded"),
    "api": ("API: http://127.0.0.1:65535", "ok", "Other apps can connect"),
    "watcher": (
        "Watch folder: does not answer; retrying in 10 s · 12 files ignored",
        "error",
        "/mnt/share/retina did not answer",
    ),
}


def _show_longest_states(gui: GuiSession) -> None:
    status = gui.window.status
    status.set_model(*LONGEST_STATES["model"])
    status.set_api(*LONGEST_STATES["api"])
    status.set_watcher(*LONGEST_STATES["watcher"])


@pytest.mark.parametrize(("size", "scale"), [((800, 600), 1.0), ((1024, 768), 1.5)])
def test_the_status_bar_with_its_longest_states_fits_a_small_screen(
    qtbot: QtBot, request: pytest.FixtureRequest, size: tuple[int, int], scale: float
) -> None:
    """Each field of the status bar kept room for its whole text: with the model
    unloaded and the watch folder not answering the window was at least 892 px wide
    (1303 px at 1.5 times the font), its right edge off a 1024 x 768 screen. The fields
    now give way: each shows its state with "…" for the rest."""
    if scale != 1.0:
        request.getfixturevalue("large_font")  # before the window is built
    gui = request.getfixturevalue("make_gui")()
    _show_longest_states(gui)
    window, status = gui.window, gui.window.status
    for _ in range(2):  # the bar's layout, then the window's
        QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    assert window.minimumSizeHint().width() <= size[0]
    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size)
    QApplication.processEvents()
    for field in (status.model, status.api, status.watcher):
        assert field.mapTo(window, QPoint(field.width(), 0)).x() <= window.width()
        assert field.width() >= field.minimumWidth()
    # The state itself is kept; its details go first.
    assert status.model.text().startswith("Model: unloaded")
    assert status.watcher.text().startswith("Watch folder: does not answer")
    assert status.api.text() == LONGEST_STATES["api"][0]


def test_a_status_field_too_long_for_the_bar_is_elided_and_grows_back(
    qtbot: QtBot, large_font: QFont, make_gui: Maker
) -> None:
    """A field cut short ends in "…" and has its whole text in its tooltip and as the
    name a screen reader hears (its reason as the description); the window widened, it
    shows its whole text again."""
    gui = make_gui()
    _show_longest_states(gui)
    window, watcher = gui.window, gui.window.status.watcher
    whole, _kind, reason = LONGEST_STATES["watcher"]
    window.resize(1024, 768)
    qtbot.waitUntil(lambda: watcher.text().endswith("…"))
    assert whole.startswith(watcher.text()[:-1])
    assert watcher.toolTip() == f"{whole}\n\n{reason}"
    accessible = QAccessible.queryAccessibleInterface(watcher)
    assert accessible.text(QAccessible.Text.Name) == whole
    assert accessible.text(QAccessible.Text.Description) == reason
    assert watcher.full_text() == whole

    window.resize(2400, 768)
    qtbot.waitUntil(lambda: watcher.text() == whole)
    assert watcher.toolTip() == reason
    assert accessible.text(QAccessible.Text.Name) == whole


def test_a_status_message_shares_the_bar_with_the_fields(
    qtbot: QtBot, large_font: QFont, make_gui: Maker
) -> None:
    """A file the watch folder refused was said in the room the fields left, cut
    without an ellipsis ("Watch folder: some_rea" at 1024 px), or not at all once the
    fields filled the bar; it now shares the bar with them, each cut with "…"."""
    gui = make_gui()
    _show_longest_states(gui)
    window, status = gui.window, gui.window.status
    window.resize(1024, 768)
    qtbot.waitUntil(lambda: window.width() == 1024)
    name = "some_really_long_name_from_the_fundus_camera_exported_twice.dcm"
    gui.application.bus.publish(
        ev.IngestFinished("failed", name, None, reason="it could not be read", moved_to="x")
    )
    message = status.message
    whole = f"Watch folder: {name} was not taken in (it could not be read)"
    qtbot.waitUntil(lambda: message.isVisible() and message.text().endswith("…"))
    assert message.text().startswith("Watch folder: some")
    assert message.toolTip() == whole
    QApplication.processEvents()
    for field in (message, status.model, status.api, status.watcher):
        assert field.mapTo(window, QPoint(field.width(), 0)).x() <= window.width()
    assert status.model.text().startswith("Model: unloaded")
    assert status.watcher.text().startswith("Watch folder: does not answer")
    status.show_message("Watch folder: one more", 10)  # the latest, for its own moment
    qtbot.waitUntil(lambda: not message.isVisible())


def test_a_status_field_cut_short_shows_its_ellipsis_whole(qtbot: QtBot, make_gui: Maker) -> None:
    """A field cut short is drawn as a plain label with the same text is: the room it
    fits its text to counts the stylesheet's padding and QLabel's indent (half an "x"
    where a label has a frame, as the padding gives it). Counted without the indent,
    the text was a few pixels wider than the room QLabel draws in, and its "…" was
    clipped at the field's edge."""
    gui = make_gui()
    _show_longest_states(gui)
    window, status = gui.window, gui.window.status
    window.resize(800, 600)
    qtbot.waitUntil(lambda: status.watcher.text().endswith("…"))
    QApplication.processEvents()
    assert status.watcher.elided()
    for field in (status.model, status.api, status.watcher):
        plain = QLabel(field.text(), status)  # the bar's stylesheet, not in its layout
        plain.setProperty("kind", field.property("kind"))
        plain.resize(field.width() + 200, field.height())  # room to spare: not clipped
        shown = field.grab().toImage()
        whole = plain.grab(QRect(0, 0, field.width(), field.height())).toImage()
        plain.deleteLater()
        assert shown == whole, (field.objectName(), field.text())


def test_a_status_tip_is_shown_as_the_bars_messages_are(
    qtbot: QtBot, large_font: QFont, make_gui: Maker
) -> None:
    """A status tip (Analyse's reason it is off, the pointer on its toolbar button) was
    QStatusBar's own message: painted in the room the fields left, cut without "…", the
    bar's message hidden meanwhile. It is shown in the message's place, cut with "…"
    and whole in its tooltip and to a screen reader; once the pointer leaves, the
    message it covered is back."""
    gui = make_gui()
    _show_longest_states(gui)
    window, status = gui.window, gui.window.status
    window.resize(1024, 768)
    qtbot.waitUntil(lambda: window.width() == 1024)
    patient = gui.application.patients.create_patient({"name": "No scan"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    why = window.analyse_action.statusTip()
    assert why.startswith("This patient has no image to analyse yet")
    said = "Watch folder: scan.png was not taken in (it could not be read)"
    status.show_message(said, 60_000)
    message = status.message
    qtbot.waitUntil(message.isVisible)
    button = window.toolbar.widgetForAction(window.analyse_action)
    assert button is not None

    QTest.mouseMove(window.toolbar, QPoint(1, 1))
    QTest.mouseMove(button, button.rect().center())
    qtbot.waitUntil(lambda: message.full_text() == why)
    assert not status.currentMessage().strip()  # QStatusBar paints no text of its own
    assert message.isVisible()
    qtbot.waitUntil(lambda: message.text().endswith("…"))
    assert why.startswith(message.text()[:-1])
    assert message.toolTip() == why
    accessible = QAccessible.queryAccessibleInterface(message)
    assert accessible.text(QAccessible.Text.Name) == why
    QApplication.processEvents()
    assert message.mapTo(window, QPoint(message.width(), 0)).x() <= window.width()

    QTest.mouseMove(window.toolbar, QPoint(1, 1))  # the tip ends: the message is back
    qtbot.waitUntil(lambda: message.full_text() == said)
    assert message.isVisible()


def test_a_classification_wider_than_the_card_breaks_its_words(qtbot: QtBot) -> None:
    """A card narrower than a word of the classification in its large heading font
    ("Vitreomacular" is 255 px at 1.5 times the font; larger here) kept that word's
    width, wider than its tab; the word breaks instead, and is copied whole."""
    view = AnalysisView()
    qtbot.addWidget(view)
    view.setStyleSheet("QLabel#classification { font-size: 40pt; font-weight: bold; }")
    view.resize(320, 600)
    view.show()
    qtbot.waitExposed(view)
    card = view.card
    card.show_analysis(_analysis(LONG_WORDS.classification))
    card.show()
    scroll = view.findChild(QScrollArea)
    assert scroll is not None
    title = card.classification

    def laid_out() -> bool:  # the title as tall as its lines at its width
        return title.isVisible() and title.height() == title.heightForWidth(title.width())

    qtbot.waitUntil(laid_out)
    word = title.fontMetrics().horizontalAdvance("Vitreomacular")
    assert word > scroll.viewport().width()  # the case at hand: a word wider than the tab
    assert scroll.horizontalScrollBar().maximum() == 0
    assert _right_edge_in(scroll, title) <= scroll.viewport().width()
    assert card.text().startswith(LONG_WORDS.classification + " [")
    # Heard whole too: a screen reader was given the word in pieces ("Vitreo macular").
    assert "\u200b" in title.text()
    spoken = QAccessible.queryAccessibleInterface(title).text(QAccessible.Text.Name)
    assert spoken == LONG_WORDS.classification

    view.resize(1400, 600)  # wide again: whole words, as before
    qtbot.waitUntil(lambda: card.classification.text() == LONG_WORDS.classification)


def _analysis(classification: str) -> AnalysisRecord:
    return AnalysisRecord(
        id=1,
        patient_id="pt-1",
        scan_id=1,
        job_id=1,
        image_sha256="ab" * 32,
        model_id="OctoMed/OctoMed-7B",
        model_revision=None,
        prompt_version="octomed-oct-v1",
        generation_settings={},
        device="cpu",
        dtype="float32",
        quantization="none",
        reasoning_text="",
        answer_text="{}",
        result={"classification": classification, "confidence": 87.0},
        parse_status="parsed",
        parse_error=None,
        status="preliminary",
        validated_by=None,
        validated_at=None,
        validation_notes=None,
        queue_wait_s=None,
        time_to_first_token_s=None,
        total_s=None,
        prompt_tokens=None,
        completion_tokens=None,
        created_at=datetime.now().astimezone(),
    )


def test_at_a_larger_font_text_boxes_show_their_lines_and_the_toast_its_place(
    qtbot: QtBot, large_font: QFont, make_gui: Maker
) -> None:
    """The new-patient form's symptoms box showed two of its three example lines; and
    the critical finding's toast, too tall for the notifications list, went over the
    patient page (on the result card, Schedule or the scan viewer's Reset)."""
    gui = _large_window(qtbot, make_gui)
    dialog = gui.patients.new_patient()
    qtbot.waitExposed(dialog)
    line = dialog.symptoms.fontMetrics().lineSpacing()
    assert dialog.symptoms.viewport().height() >= 3 * line + 8
    assert dialog.history.viewport().height() >= 4 * line + 8
    dialog.reject()

    window, toast = gui.window, gui.window.toast
    gui.application.notifications.create_notification(
        "Abnormal finding for patient Amelia Okafor: Diabetic Macular Edema (87% "
        "confidence) - preliminary, needs validation",
        type="critical",
        actor=ACTOR,
    )
    qtbot.waitUntil(toast.isVisible)
    placed = toast.geometry()
    viewport = gui.notifications_panel.list.viewport()
    assert QRect(viewport.mapTo(window, QPoint(0, 0)), viewport.size()).contains(placed)
    central = window.centralWidget()
    assert not placed.intersects(QRect(central.mapTo(window, QPoint(0, 0)), central.size()))


def _text_sizes(qtbot: QtBot, gui: GuiSession) -> dict[str, float]:
    """The point size of the text of every named part of the window (the patient page
    with an analysis result, the unread badge, a toast), by object name."""
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Large Print"}, actor=ACTOR, image=NewImage(png_bytes())
    )
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    view.analyse.click()
    qtbot.waitUntil(view.card.isVisible)
    app.notifications.create_notification("Abnormal finding: CNV", type="critical", actor=ACTOR)
    qtbot.waitUntil(gui.window.toast.isVisible)
    qtbot.waitUntil(gui.notifications_panel.unread.isVisible)
    sizes: dict[str, float] = {}
    for widget in gui.window.findChildren(QWidget):
        name = widget.objectName()
        if name and not name.startswith("qt_") and name not in sizes:
            widget.ensurePolished()
            sizes[name] = QFontInfo(widget.font()).pointSizeF()
    dot = gui.window.findChild(QLabel, "stepDot")
    assert dot is not None
    sizes["stepDot width"] = float(dot.width())  # a circle around its number
    return sizes


def test_at_a_larger_font_every_text_is_larger(
    qtbot: QtBot, qapp: QApplication, make_gui: Maker
) -> None:
    """The stylesheet's sizes stayed as they were at 1.5 times the application font:
    the patient's name, the result's classification, the unread badge, the reasoning,
    the empty lists' hints, the stepper's circles. Each text (and each circle) now grows
    as the font does, the font changed while the app runs too."""
    running = make_gui(engine=ScriptedEngine(DME))
    normal = _text_sizes(qtbot, running)
    for name in ("patientName", "statusPill", "classification", "verdictBadge", "badge"):
        assert name in normal, name
    assert {"toastTitle", "toastText", "stepDot width"} <= set(normal)
    before = QFont(qapp.font())
    font = QFont(before)
    font.setPointSizeF(before.pointSizeF() * 1.5)
    qapp.setFont(font)
    try:
        name = running.patient_page.name  # the window already open follows the font
        qtbot.waitUntil(lambda: QFontInfo(name.font()).pointSizeF() >= normal["patientName"] * 1.45)
        large = _text_sizes(qtbot, make_gui(engine=ScriptedEngine(DME)))
    finally:
        qapp.setFont(before)
    smaller = {
        name: (size, large.get(name))
        for name, size in normal.items()
        if large.get(name, 0) < size * 1.45
    }
    assert not smaller, smaller


def _title_ink_height(dock: QDockWidget) -> int:
    """How many pixel rows of the dock's title bar hold the title's text (its darkest
    pixels against the bar's light background); the buttons on the right left out."""
    bar = dock.widget().geometry().top()
    image = dock.grab(QRect(0, 0, dock.width() // 2, bar)).toImage()
    return sum(
        any(image.pixelColor(x, y).lightness() < 100 for x in range(image.width()))
        for y in range(image.height())
    )


def test_a_larger_font_set_while_the_window_is_open_enlarges_the_dock_titles(
    qtbot: QtBot, qapp: QApplication, gui: GuiSession
) -> None:
    """Qt painted a dock's title in the font the application had when the dock was
    made: after the desktop's font grew with the window open, "Notifications (2
    unread)" and "Job queue" stayed small above panels that had grown."""
    docks = [gui.window.notifications_dock, gui.window.jobs_dock]
    normal = [_title_ink_height(dock) for dock in docks]
    assert all(height > 0 for height in normal), normal
    font = QFont(qapp.font())
    font.setPointSizeF(font.pointSizeF() * 1.6)
    qapp.setFont(font)  # the next test starts at the usual font again (conftest)
    bar = docks[0].widget().geometry().top()
    qtbot.waitUntil(lambda: docks[0].widget().geometry().top() > bar)
    large = [_title_ink_height(dock) for dock in docks]
    assert all(after >= before * 1.4 for before, after in zip(normal, large, strict=True)), (
        normal,
        large,
    )


def _room_around_titles(table: QTableView) -> dict[str, int]:
    """The pixels each shown column (but the one that stretches) has beside its title's
    text, for the sort arrow and the margins: a title cut short has less than it had."""
    header = table.horizontalHeader()
    model = table.model()
    metrics = header.fontMetrics()
    return {
        title: header.sectionSize(column) - metrics.horizontalAdvance(title)
        for column in range(header.count())
        if not header.isSectionHidden(column)
        and header.sectionResizeMode(column) != QHeaderView.ResizeMode.Stretch
        for title in [str(model.headerData(column, Qt.Orientation.Horizontal))]
    }


def test_a_larger_font_set_while_the_window_is_open_widens_the_columns(
    qtbot: QtBot, qapp: QApplication, gui: GuiSession
) -> None:
    """The widths were set once at start-up: after the desktop's font grew with the
    window open, the patient list's "Age" read "Ag", and the job queue's titles were cut
    alike. The widths follow the font, as the rows' heights do (the notifications' cut
    the time under the message); a column the clinician dragged keeps its width."""
    gui.window.resize(1680, 1000)
    gui.application.notifications.create_notification("Noted", actor=Actor("t", "gui"))
    notes = gui.notifications_panel.list
    qtbot.waitUntil(lambda: notes.model().rowCount() == 1)
    patients, jobs = gui.patient_list.table, gui.jobs_panel.table
    qtbot.waitUntil(lambda: not patients.horizontalHeader().isSectionHidden(COLUMN_OF["age"]))
    dragged = COLUMN_OF["status"]
    patients.horizontalHeader().resizeSection(dragged, 250)  # as a drag of its edge does
    normal = {table: _room_around_titles(table) for table in (patients, jobs)}
    assert {"Age", "Sex"} <= set(normal[patients]) and {"Job", "State"} <= set(normal[jobs])

    header = patients.horizontalHeader()
    line_px = header.fontMetrics().height()
    rows = [patients.rowHeight(0), jobs.verticalHeader().defaultSectionSize()]
    note_px = notes.visualRect(notes.model().index(0, 0)).height()
    font = QFont(qapp.font())
    font.setPointSizeF(font.pointSizeF() * 1.6)
    qapp.setFont(font)  # the next test starts at the usual font again (conftest)
    qtbot.waitUntil(lambda: header.fontMetrics().height() >= line_px * 1.4)
    for table in (patients, jobs):
        large = _room_around_titles(table)
        cut = {
            title: (room, large[title])
            for title, room in normal[table].items()
            if title in large and title != "Status" and large[title] < room
        }
        assert not cut, cut
    assert "Age" in _room_around_titles(patients)
    assert header.sectionSize(dragged) == 250
    large_rows = [patients.rowHeight(0), jobs.verticalHeader().defaultSectionSize()]
    assert all(after >= before * 1.4 for before, after in zip(rows, large_rows, strict=True))
    qtbot.waitUntil(
        lambda: notes.visualRect(notes.model().index(0, 0)).height() >= note_px * 1.4,
        timeout=10_000,
    )


def _toast_lines(gui: GuiSession) -> int:
    label = gui.window.toast.label
    return round(label.height() / label.fontMetrics().lineSpacing())


def test_a_larger_font_set_while_a_toast_shows_widens_it(
    qtbot: QtBot, qapp: QApplication, gui: GuiSession
) -> None:
    """The toast's text widths were measured once, as it was made: after the desktop's
    font grew with the window open, a critical finding's toast grew taller, not wider
    (three lines became five). The widths follow the font, the toast showing then or
    not."""
    gui.window.resize(1680, 1000)
    toast = gui.window.toast
    finding = (
        "Abnormal finding for patient Amelia Okafor: Diabetic Macular Edema (87% "
        "confidence) - preliminary, needs validation"
    )
    gui.application.notifications.create_notification(finding, type="critical", actor=ACTOR)
    qtbot.waitUntil(toast.isVisible)
    lines = _toast_lines(gui)
    line_px = toast.label.fontMetrics().lineSpacing()
    width = toast.width()
    font = QFont(qapp.font())
    font.setPointSizeF(font.pointSizeF() * 1.6)
    qapp.setFont(font)  # the next test starts at the usual font again (conftest)
    qtbot.waitUntil(
        lambda: toast.label.fontMetrics().lineSpacing() >= line_px * 1.4, timeout=10_000
    )
    qtbot.waitUntil(lambda: toast.width() >= width * 1.4)
    assert toast.isVisible()
    assert _toast_lines(gui) <= lines

    toast.hide()  # the next one shows at the new font's widths too
    gui.application.notifications.create_notification(finding, type="critical", actor=ACTOR)
    qtbot.waitUntil(toast.isVisible)
    assert _toast_lines(gui) <= lines


def test_a_screen_reader_hears_what_the_status_filter_is(gui: GuiSession) -> None:
    """On Linux a combo box's accessible name is its current value: the status filter
    was heard as "All statuses" (or "Critical"), never as a filter. The label beside it
    is its buddy, which a screen reader there reads as its name; Alt+S goes to it."""
    status = gui.patient_list.status
    labels = QAccessible.queryAccessibleInterface(status).relations(QAccessible.Relation.Label)
    assert [label.text(QAccessible.Text.Name) for label, _relation in labels] == ["Status"]
    assert all(label.object().isVisible() for label, _relation in labels)
    assert status.accessibleName() == "Status filter"  # where the name is not the value

    gui.window.activateWindow()
    gui.patient_list.table.setFocus()
    QTest.keyClick(gui.window, Qt.Key.Key_S, Qt.KeyboardModifier.AltModifier)
    assert QApplication.focusWidget() is status


# High-resolution screens --------------------------------------------------------------------

#: Set by the test that runs the next one on a screen scaled to 200 %: the scale it must
#: find (else it would pass at 100 %, where nothing is scaled up).
EXPECTED_PIXEL_RATIO = "OPHTHAI_TEST_EXPECTED_PIXEL_RATIO"


def test_a_thumbnail_has_a_pixel_for_each_pixel_of_the_screen(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """The thumbnails were made 80 pixels wide whatever the screen: on a 4K monitor at
    200 % each was drawn at 160 pixels, scaled up and blurred (the vessels of a fundus
    photograph smudged), while the scan beside them was sharp."""
    colour = (90, 120, 30)
    patient = gui.application.patients.create_patient(
        {"name": "Sharp Thumb"},
        actor=ACTOR,
        image=NewImage(png_bytes((640, 640), colour), modality="fundus", laterality="OD"),
    )
    open_patient(qtbot, gui, patient.id)
    gui.patient_page.show_tab("scans")
    thumbnails = gui.scan_viewer.thumbnails
    ratio = thumbnails.devicePixelRatioF()
    expected = os.environ.get(EXPECTED_PIXEL_RATIO)
    if expected is not None:
        assert ratio == float(expected)

    def drawn() -> QPixmap:
        return thumbnails.item(0).icon().pixmap(thumbnails.iconSize(), ratio)

    def loaded() -> bool:  # the scan's own pixels, not the placeholder's
        image = drawn().toImage()
        return image.pixelColor(image.width() // 2, image.height() // 2) == QColor(*colour)

    qtbot.waitUntil(lambda: thumbnails.count() == 1 and loaded(), timeout=10_000)
    assert drawn().width() >= THUMB_SIZE * ratio
    assert drawn().height() >= THUMB_SIZE * ratio


def test_a_thumbnail_made_before_a_sharper_screen_came_is_made_again_for_it(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thumbnails stayed cached as made: a 4K monitor at 200 % plugged in later
    showed them scaled up and blurred until the app restarted."""
    from ophthai_desktop.ui.controllers import scans as scans_controller

    def made(patient_id: str) -> int:
        open_patient(qtbot, gui, patient_id)
        thumbnails = gui.scan_viewer.thumbnails

        def width() -> int:
            if thumbnails.count() != 1:
                return 0
            icon = thumbnails.item(0).icon()
            return icon.pixmap(QSize(THUMB_SIZE, THUMB_SIZE), 2.0).width()

        qtbot.waitUntil(lambda: width() >= THUMB_SIZE, timeout=10_000)
        return width()

    image = NewImage(png_bytes((640, 640), (90, 120, 30)), modality="fundus", laterality="OD")
    first = gui.application.patients.create_patient({"name": "One"}, actor=ACTOR, image=image)
    other = gui.application.patients.create_patient({"name": "Two"}, actor=ACTOR)
    gui.patient_page.show_tab("scans")
    monkeypatch.setattr(scans_controller, "screen_pixel_ratio", lambda: 1.0)
    assert made(first.id) == THUMB_SIZE
    open_patient(qtbot, gui, other.id)
    monkeypatch.setattr(scans_controller, "screen_pixel_ratio", lambda: 2.0)
    open_patient(qtbot, gui, first.id)
    thumbnails = gui.scan_viewer.thumbnails
    qtbot.waitUntil(
        lambda: (
            thumbnails.count() == 1
            and thumbnails.item(0).icon().pixmap(QSize(THUMB_SIZE, THUMB_SIZE), 2.0).width()
            == 2 * THUMB_SIZE
        ),
        timeout=10_000,
    )


def test_thumbnails_are_sharp_on_a_screen_scaled_to_200_percent(tmp_path: Path) -> None:
    """The test above, in a process of its own on a screen at 200 % (QT_SCALE_FACTOR is
    read when Qt starts)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": "2"}
    env[EXPECTED_PIXEL_RATIO] = "2"
    test = f"{__file__}::test_a_thumbnail_has_a_pixel_for_each_pixel_of_the_screen"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", test],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout


def test_at_a_larger_font_on_a_small_screen_the_status_pill_is_whole(
    qtbot: QtBot, large_font: QFont, make_gui: Maker
) -> None:
    """At 1.5 times the font on a 1024 x 768 screen a name that wraps kept the buttons
    beside it, and the status pill under the name was cut: "Pending Ana"."""
    gui = make_gui()
    gui.window.resize(1024, 768)
    qtbot.waitUntil(lambda: gui.window.width() == 1024)
    patient = gui.application.patients.create_patient(
        {"name": "Pat Long-Name Example", "age": 50}, actor=ACTOR
    )
    open_patient(qtbot, gui, patient.id)
    page = gui.patient_page
    pill = page.status
    qtbot.waitUntil(lambda: pill.text() == "Pending Analysis")
    qtbot.wait(50)  # the layout settles
    assert pill.width() >= pill.sizeHint().width(), (pill.width(), pill.sizeHint().width())
    assert page.header.width() >= page.header.minimumSizeHint().width()
    assert pill.geometry().right() < page.header.width()
