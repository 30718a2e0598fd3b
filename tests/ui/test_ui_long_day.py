"""A window kept open all day: what a cycle of the clinician's work leaves behind must
not pile up (widgets, rows, connections), however many cycles the day has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from PySide6.QtCore import SIGNAL
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views.patient_dialog import PatientDialog
from tests.support.scripted_engine import DME, ScriptedEngine
from tests.ui.conftest import Maker, open_patient

#: Cycles of each test: enough that anything kept per cycle shows.
CYCLES = 30


def test_answered_questions_do_not_pile_up_in_the_window(qtbot: QtBot, make_gui: Maker) -> None:
    """Every "Cancel appointment?" (and "Delete patient?") stayed a hidden child of the
    window once answered: a day's questions were all still there at closing time."""
    gui = make_gui(engine=ScriptedEngine(DME))
    actor = Actor("t", "gui")
    patients = gui.application.patients
    patient_id = patients.create_patient({"name": "Booked"}, actor=actor).id
    booked = datetime.now(UTC) + timedelta(days=9)
    patients.update_patient(patient_id, {"appointment_date": booked}, actor=actor)
    open_patient(qtbot, gui, patient_id)
    view = gui.analysis_view
    qtbot.waitUntil(lambda: view.cancel_appointment.isVisibleTo(view))

    def questions() -> int:
        return len(gui.window.findChildren(QMessageBox))

    for _ in range(CYCLES):
        view.cancel_appointment.click()
        box = gui.analysis.confirm
        assert isinstance(box, QMessageBox) and box.isVisible()
        box.property("noButton").click()  # keep it
        assert not box.isVisible()
    qtbot.waitUntil(lambda: questions() == 1)  # the last one answered
    assert patients.get_patient(patient_id).appointment_date is not None


def test_cancelled_patient_forms_do_not_pile_up_in_the_window(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A New patient or Edit patient form cancelled stayed a hidden child of the window,
    still told of each new day: a day's cancelled forms were all kept, and at midnight
    each of them updated its dates."""
    actor = Actor("t", "gui")
    patient_id = gui.application.patients.create_patient({"name": "Edited"}, actor=actor).id
    open_patient(qtbot, gui, patient_id)

    def forms() -> int:
        return len(gui.window.findChildren(PatientDialog))

    def following_the_day() -> int:
        return gui.patients.day_watch.receivers(SIGNAL("day_changed(QDate)"))

    following = following_the_day()

    for cycle in range(CYCLES):
        dialog = gui.patients.new_patient() if cycle % 2 else gui.patients.edit_patient()
        assert dialog is not None
        qtbot.waitUntil(dialog.isVisible)
        dialog.reject()
    qtbot.waitUntil(lambda: forms() == 0)
    assert following_the_day() == following
    assert gui.patients.dialog is None
    dialog = gui.patients.new_patient()  # a new form still opens and follows the day
    assert forms() == 1 and gui.patients.dialog is dialog
    dialog.reject()


def test_about_boxes_read_do_not_pile_up_in_the_window(qtbot: QtBot, gui: GuiSession) -> None:
    """Each About read stayed a hidden child of the window once closed."""
    for _ in range(CYCLES):
        gui.window.about_action.trigger()
        box = gui.about_box
        assert isinstance(box, QMessageBox) and "OphthAI Desktop" in box.text()
        box.close()
    qtbot.waitUntil(lambda: not gui.window.findChildren(QMessageBox))
    assert gui.about_box is None
