"""Where the keyboard focus goes after the clinician's actions (found driving the real
window under Xvfb and openbox with xdotool): never to a button whose Space or Enter
would undo or replace what was just done, and never nowhere."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtGui import QFocusEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QMessageBox,
    QScrollArea,
    QStyle,
    QStyleOption,
    QWidget,
)
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.inference import ModelState
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.ui.session import GuiSession
from tests.support.images import png_bytes
from tests.support.scripted_engine import DME, ScriptedEngine
from tests.ui.conftest import Maker, open_patient


def _shown_result(qtbot: QtBot, make_gui: Maker) -> GuiSession:
    """A window, active, with a patient's preliminary result shown."""
    gui = make_gui(engine=ScriptedEngine(DME))
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    patient = gui.application.patients.create_patient(
        {"name": "Focus"}, actor=Actor("t", "gui"), image=NewImage(png_bytes((64, 48)))
    )
    open_patient(qtbot, gui, patient.id)
    gui.patient_page.show_tab("analysis")
    view = gui.analysis_view
    view.analyse.setFocus()
    qtbot.keyClick(view.analyse, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: view.card.isVisible())
    return gui


def test_after_a_verdict_by_its_keys_the_focus_goes_to_the_appointment(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Analyse pressed, then Ctrl+Shift+A: the focus stayed on Analyse, where Space
    queued a new analysis whose result replaced the approved one. Now it goes to the
    next step, the appointment picker."""
    gui = _shown_result(qtbot, make_gui)
    view = gui.analysis_view
    assert QApplication.focusWidget() is view.analyse
    keys = view.approve.shortcut()[0]
    qtbot.keyClick(view.analyse, keys.key(), keys.keyboardModifiers())
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view.when)


def test_after_a_verdict_by_its_button_the_focus_goes_to_the_appointment(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Tab to Reject, Space: the focus left on Reject (Space again recorded it again)."""
    gui = _shown_result(qtbot, make_gui)
    view = gui.analysis_view
    qtbot.keyClicks(view.notes, "motion artefact")
    view.reject.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.keyClick(view.reject, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: view.card.badge.text() == "REJECTED")
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view.when)


def test_a_refused_verdict_keeps_the_focus_on_the_field_to_fix(
    qtbot: QtBot, make_gui: Maker
) -> None:
    gui = _shown_result(qtbot, make_gui)
    view = gui.analysis_view
    view.clinician.clear()
    view.approve.setFocus()
    qtbot.keyClick(view.approve, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: "name is required" in view.verdict_error_text())
    assert QApplication.focusWidget() is view.clinician


def test_a_new_analysis_does_not_lose_the_focus_from_the_verdict(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Focus on Approve, then Ctrl+R: the verdict went disabled under the focus and the
    window had no focus widget at all (keys went nowhere)."""
    gui = _shown_result(qtbot, make_gui)
    view = gui.analysis_view
    view.approve.setFocus()
    assert QApplication.focusWidget() is view.approve
    view.start_stream()  # what a new analysis of this patient does to the view
    assert not view.approve.isEnabled()
    assert QApplication.focusWidget() is view.analyse


def test_after_an_appointment_is_cancelled_the_focus_goes_to_the_picker(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Cancel appointment goes away once the booking is called off; the focus went to
    whatever came next in the tab order."""
    gui = _shown_result(qtbot, make_gui)
    view = gui.analysis_view
    view.schedule.setFocus()
    qtbot.keyClick(view.schedule, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: view.cancel_appointment.isVisible())
    view.cancel_appointment.setFocus()
    qtbot.keyClick(view.cancel_appointment, Qt.Key.Key_Space)
    box = gui.analysis.confirm
    assert isinstance(box, QMessageBox)
    yes = box.property("yesButton")
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None)
    qtbot.keyClick(yes, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not view.cancel_appointment.isVisible())
    gui.window.activateWindow()  # the question gone (offscreen does not do it itself)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view.when)


def test_enter_in_the_model_manager_closes_it_and_does_not_unload(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The model manager opened with the focus on Unload (Load greyed out with the model
    loaded), and Enter, which closes other dialogs, unloaded the model."""
    gui = make_gui(engine=ScriptedEngine(DME))
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    assert gui.application.engine.status().state is ModelState.READY
    dialog = gui.model_manager.open()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog)
    assert not dialog.unload_button.hasFocus()
    focused = QApplication.focusWidget()
    assert focused is not None
    qtbot.keyClick(focused, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    qtbot.wait(200)
    assert gui.application.engine.status().state is ModelState.READY


def _tab_chain(qtbot: QtBot, gui: GuiSession, stops: int = 80) -> list[QWidget]:
    """The widgets Tab goes through from the search field, once round (or ``stops``)."""
    start = gui.patient_list.search
    start.setFocus(Qt.FocusReason.TabFocusReason)
    chain: list[QWidget] = []
    for _ in range(stops):
        widget = QApplication.focusWidget()
        assert widget is not None
        chain.append(widget)
        qtbot.keyClick(widget, Qt.Key.Key_Tab)
        if QApplication.focusWidget() is start:
            break
    return chain


def test_tab_stops_on_no_scroll_area_that_hides_the_focus(qtbot: QtBot, make_gui: Maker) -> None:
    """Tab stopped on the analysis tab's and the oculomics tab's scroll areas, showing
    no focus and doing nothing visible; it stops on the patient details (the one way to
    scroll a long history by keyboard), which now show the focus and are named."""
    gui = _shown_result(qtbot, make_gui)
    page = gui.patient_page
    for tab in ("analysis", "oculomics"):
        page.show_tab(tab)
        chain = _tab_chain(qtbot, gui)
        assert chain[-1] is not chain[0] and len(chain) < 80  # back round, no trap
        areas = [w for w in chain if isinstance(w, QAbstractScrollArea) and type(w) is QScrollArea]
        assert areas == [page.info_scroll], tab
    details = page.info_scroll
    assert details.accessibleName() == "Patient details"
    details.setFocus(Qt.FocusReason.TabFocusReason)
    focused = details.grab().toImage()
    gui.patient_list.search.setFocus(Qt.FocusReason.TabFocusReason)
    assert details.grab().toImage() != focused  # the focus shows


def test_the_oculomics_tables_let_tab_go_on(qtbot: QtBot, make_gui: Maker) -> None:
    """Tab went round the trends table's cells and never left it (a keyboard trap)."""
    gui = _shown_result(qtbot, make_gui)
    gui.patient_page.show_tab("oculomics")
    view = gui.oculomics_view
    for table in (view.trends, view.table):
        table.setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.keyClick(table, Qt.Key.Key_Tab)
        assert QApplication.focusWidget() is not table


def test_a_click_in_the_analysis_gives_it_the_arrow_keys(qtbot: QtBot, make_gui: Maker) -> None:
    """Out of the Tab chain, the analysis still scrolls by keyboard once clicked."""
    gui = _shown_result(qtbot, make_gui)
    gui.window.resize(900, 560)
    view = gui.analysis_view
    view.reasoning_toggle.setChecked(True)
    area = view._scroll
    bar = area.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    qtbot.mouseClick(area.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
    assert QApplication.focusWidget() is area
    qtbot.keyClick(area, Qt.Key.Key_PageDown)
    assert bar.value() > 0


class _FocusReasons(QObject):
    """Records the reason of each focus the watched widgets get."""

    def __init__(self, *widgets: QWidget) -> None:
        super().__init__()
        self.reasons: dict[QWidget, list[Qt.FocusReason]] = {w: [] for w in widgets}
        for widget in widgets:
            widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusIn and watched in self.reasons:
            assert isinstance(event, QFocusEvent)
            self.reasons[watched].append(event.reason())  # type: ignore[index]
        return False


def _shows_focus(widget: QWidget) -> bool:
    """Whether the style is told to draw the widget's focus frame (Fusion draws it only
    with both flags)."""
    option = QStyleOption()
    option.initFrom(widget)
    wanted = QStyle.StateFlag.State_HasFocus | QStyle.StateFlag.State_KeyboardFocusChange
    return option.state & wanted == wanted


def test_the_focus_moved_after_a_clicked_verdict_shows(qtbot: QtBot, make_gui: Maker) -> None:
    """A verdict clicked moved the focus to the appointment picker with no focus frame
    (the click had cleared the window's keyboard mode, and the move set nothing): where
    the keyboard went did not show until the next Tab."""
    gui = _shown_result(qtbot, make_gui)
    view = gui.analysis_view
    reasons = _FocusReasons(view.when)
    qtbot.mouseClick(view.approve, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view.when)
    # Approve, disabled while its verdict was on its way, passed the focus on (to the
    # picker) before the verdict moved it there: the last move is the one that shows.
    assert reasons.reasons[view.when][-1] == Qt.FocusReason.TabFocusReason
    assert _shows_focus(view.when)


def test_the_focus_back_to_the_list_after_a_deletion_shows(qtbot: QtBot, make_gui: Maker) -> None:
    """The patient shown deleted (the page's Delete clicked): the focus goes back to the
    list, and shows there."""
    gui = _shown_result(qtbot, make_gui)
    page = gui.patient_page
    qtbot.mouseClick(page.delete, Qt.MouseButton.LeftButton)
    box = gui.patients.confirm
    assert isinstance(box, QMessageBox)
    box.property("yesButton").click()
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: page.patient is None)
    table = gui.patient_list.table
    qtbot.waitUntil(lambda: QApplication.focusWidget() is table)
    assert _shows_focus(table)
