"""The workflow stepper: the current step's name, drawn in bold, is never cut."""

from __future__ import annotations

import sys

from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.ui.session import GuiSession
from tests.ui.conftest import open_patient


def _cut_names(gui: GuiSession) -> list[str]:
    """Each step name narrower than its text in the font it is drawn in now (bold for
    the current step): 'name (state): width < needed'."""
    cut = []
    for label in gui.patient_page.stepper.findChildren(QLabel, "stepLabel"):
        needed = QFontMetrics(label.font()).horizontalAdvance(label.text())
        if label.contentsRect().width() < needed:
            state = label.property("state")
            cut.append(f"{label.text()} ({state}): {label.contentsRect().width()} < {needed}")
    return cut


def test_the_current_step_name_fits_as_soon_as_it_turns_bold(qtbot: QtBot, gui: GuiSession) -> None:
    """A step turned current is drawn bold at once (the stylesheet), but its wider name
    was laid out an event-loop turn later: a screenshot right after a drop showed
    'Validatio'. Each name is checked right after the change, before any other event."""
    record = gui.application.patients.create_patient(
        {"name": "Ada Stepper", "age": 60}, actor=Actor("Dr. Test", "gui")
    )
    open_patient(qtbot, gui, record.id)
    stepper = gui.patient_page.stepper
    qtbot.waitUntil(lambda: stepper.isVisible() and _cut_names(gui) == [])
    for width in (gui.window.width(), gui.window.minimumSizeHint().width()):
        gui.window.resize(width, gui.window.height())
        QApplication.processEvents()
        for step in (2, 3, 4, 1, 3, 2):
            stepper.set_step(step)
            assert _cut_names(gui) == [], f"step {step} at a window {width} px wide"


def test_laying_out_and_painting_the_stepper_runs_no_python(qtbot: QtBot, gui: GuiSession) -> None:
    """The names keep their width with a minimum set when the step changes, not with a
    ``sizeHint`` written in Python: each layout pass would call it, and on the GUI thread
    each Python call waits for the interpreter lock the worker and the API share."""
    record = gui.application.patients.create_patient(
        {"name": "Ada Layout", "age": 60}, actor=Actor("Dr. Test", "gui")
    )
    open_patient(qtbot, gui, record.id)
    stepper = gui.patient_page.stepper
    qtbot.waitUntil(stepper.isVisible)
    calls: list[str] = []

    def profile(frame: object, event: str, _arg: object) -> None:
        if event == "call":
            calls.append(frame.f_code.co_qualname)  # type: ignore[attr-defined]

    layout = stepper.layout()
    sys.setprofile(profile)
    try:
        for label in stepper.findChildren(QLabel, "stepLabel"):
            label.updateGeometry()
        layout.invalidate()
        layout.activate()
        stepper.repaint()
    finally:
        sys.setprofile(None)
    assert calls == [], calls


def test_the_names_keep_their_width_however_often_the_step_changes(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """The names' widths depend on the font alone: measured from each label's size hint,
    which counts the minimum set before, every step change grew a name a few pixels (a
    day of analyses, a stepper wider than the page) and laid the page out again at each
    analysis's start and finish."""
    record = gui.application.patients.create_patient(
        {"name": "Ada Widths", "age": 60}, actor=Actor("Dr. Test", "gui")
    )
    open_patient(qtbot, gui, record.id)
    stepper = gui.patient_page.stepper
    qtbot.waitUntil(stepper.isVisible)
    labels = stepper.findChildren(QLabel, "stepLabel")
    first = [label.minimumWidth() for label in labels]
    for _ in range(10):
        for step in (2, 1, 3, 4):
            stepper.set_step(step)
            QApplication.processEvents()
    assert [label.minimumWidth() for label in labels] == first
    for label in labels:  # each as wide as its name in bold, no wider
        bold = label.font()
        bold.setBold(True)
        assert first[labels.index(label)] <= QFontMetrics(bold).horizontalAdvance(label.text()) + 4
    assert _cut_names(gui) == []
