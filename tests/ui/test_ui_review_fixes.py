"""Regressions found in review: the open patient, typed notes and markup in data."""

from __future__ import annotations

import logging

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.ui.tasks import TaskRunner
from tests.ui.conftest import Maker

ACTOR = Actor("review", "gui")


def test_deleting_the_open_patient_does_not_open_a_neighbour(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui()
    patients = gui.application.patients
    first = patients.create_patient({"name": "Alpha First"}, actor=ACTOR)
    patients.create_patient({"name": "Beta Second"}, actor=ACTOR)
    qtbot.waitUntil(lambda: gui.patient_list.model.rowCount() == 2)
    gui.patients.open_patient(first.id)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Alpha First")
    patients.delete_patient(first.id, actor=ACTOR)
    qtbot.waitUntil(lambda: gui.patient_list.model.rowCount() == 1)
    qtbot.wait(200)
    assert gui.patients.current_patient_id is None
    assert gui.patient_page.name.text() != "Beta Second"


def test_typed_notes_do_not_follow_to_another_patient(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui()
    patients = gui.application.patients
    first = patients.create_patient({"name": "Notes One"}, actor=ACTOR)
    second = patients.create_patient({"name": "Notes Two"}, actor=ACTOR)
    gui.patients.open_patient(first.id)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Notes One")
    gui.analysis_view.notes.setPlainText("drusen in the left eye")
    gui.patients.open_patient(second.id)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Notes Two")
    assert gui.analysis_view.notes.toPlainText() == ""


def test_markup_in_a_name_is_shown_as_text(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui()
    patient = gui.application.patients.create_patient({"name": "<b>Bold</b> Name"}, actor=ACTOR)
    gui.patients.open_patient(patient.id)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "<b>Bold</b> Name")
    assert gui.patient_page.name.textFormat() == Qt.TextFormat.PlainText


def test_slow_work_does_not_hold_up_opening_a_patient(qtbot: QtBot, make_gui: Maker) -> None:
    import threading

    gui = make_gui()
    patient = gui.application.patients.create_patient({"name": "Prompt Open"}, actor=ACTOR)
    release = threading.Event()
    for _ in range(3):  # e.g. a download, a settings change waiting for an analysis
        gui.slow_tasks.submit(lambda: release.wait(10), lambda _r: None)
    try:
        gui.patients.open_patient(patient.id)
        qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Prompt Open", timeout=2000)
    finally:
        release.set()


def test_a_failed_background_task_is_logged_without_its_text(
    qtbot: QtBot, caplog: pytest.LogCaptureFixture
) -> None:
    """A task's error can quote what it read (a patient's name): the log gets its kind
    and where it was raised; the task's own error handler still gets the exception."""
    runner = TaskRunner()
    errors: list[BaseException] = []

    def read() -> None:
        raise KeyError("Jane Doeling")

    with caplog.at_level(logging.ERROR, logger="ophthai_desktop.ui.tasks"):
        runner.submit(read, on_error=errors.append)
        qtbot.waitUntil(lambda: bool(errors))
    runner.shutdown()

    assert isinstance(errors[0], KeyError) and "Doeling" in str(errors[0])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "a background task failed: KeyError at " in logged
    assert "Doeling" not in logged and all(r.exc_info is None for r in caplog.records)
