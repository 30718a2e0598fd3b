"""The patient list: what it says when empty, and the chosen patient across queries."""

from __future__ import annotations

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views.patient_list import ALL_STATUSES


def _hint_centred_in_table(gui: GuiSession) -> bool:
    """The empty list's message is shown inside the table's viewport, about centred."""
    view = gui.patient_list
    hint, viewport = view.empty_hint, view.table.viewport()
    if not hint.isVisible() or hint.parentWidget() is not viewport:
        return False
    centre, middle = hint.geometry().center(), viewport.rect().center()
    return abs(centre.x() - middle.x()) <= 2 and abs(centre.y() - middle.y()) <= 2


def test_an_empty_list_says_why_inside_the_table(qtbot: QtBot, gui: GuiSession) -> None:
    """ "No patients match" was a line under the table, where a clinician looking at the
    empty table did not see it; it now sits in the table, says which of the two it is,
    and what to do, and goes as soon as a patient is listed."""
    view = gui.patient_list
    qtbot.waitUntil(lambda: view.empty_text().startswith("No patients yet"))
    assert "New patient" in view.empty_text()
    assert _hint_centred_in_table(gui)
    assert view.count.text() == ""  # said once, in the table

    patient = gui.application.patients.create_patient({"name": "Ada"}, actor=Actor("t", "gui"))
    qtbot.waitUntil(lambda: view.model.rowCount() == 1)
    assert not view.empty_hint.isVisible() and view.empty_text() == ""

    qtbot.keyClicks(view.search, "zzz")
    qtbot.waitUntil(lambda: view.model.rowCount() == 0)
    qtbot.waitUntil(lambda: view.empty_text().startswith("No patients match “zzz”"))
    assert "Clear the search box" in view.empty_text()
    assert _hint_centred_in_table(gui)

    view.search.selectAll()
    qtbot.keyClick(view.search, Qt.Key.Key_Backspace)
    view.status.setCurrentText("Critical")
    qtbot.waitUntil(lambda: view.empty_text().startswith("No patients with status Critical"))
    assert f"Choose “{ALL_STATUSES}”" in view.empty_text()

    gui.application.patients.update_patient(
        patient.id, {"status": "Critical"}, actor=Actor("t", "gui")
    )
    qtbot.waitUntil(lambda: view.model.rowCount() == 1)
    qtbot.waitUntil(lambda: not view.empty_hint.isVisible())
