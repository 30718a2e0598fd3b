"""Creating, editing and deleting patients through the dialogs."""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from datetime import date, timedelta

import pytest
from PySide6.QtCore import QDate, QItemSelectionModel, QMimeData, QPoint, QRect, Qt, QTimer
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QDateEdit,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QWidget,
)
from pytestqt.qtbot import QtBot

from ophthai_desktop.core import domain
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.ui import day
from ophthai_desktop.ui.models.job_table import STATE_COLUMN
from ophthai_desktop.ui.models.patient_table import COLUMN_OF, PatientTableModel
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views.patient_dialog import PatientDialog
from ophthai_desktop.ui.window_state import window_settings
from tests.ui.conftest import Maker, nothing_more_happens, open_patient, seed_patients
from tests.ui.demo_images import oct_bscan


def _ok(dialog: object) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()  # type: ignore[attr-defined]


def test_create_a_patient_through_the_dialog(qtbot: QtBot, gui: GuiSession) -> None:
    gui.window.new_patient_action.trigger()
    dialog = gui.patients.dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.keyClicks(dialog.name, "Ada Lovelace")
    dialog.age.setValue(61)
    dialog.gender.setCurrentText("Female")
    qtbot.keyClicks(dialog.symptoms, "blurred vision")  # one a line
    qtbot.keyClick(dialog.symptoms, Qt.Key.Key_Return)
    qtbot.keyClicks(dialog.symptoms, "floaters")
    qtbot.keyClicks(dialog.history, "Type 2 diabetes")
    _ok(dialog)

    qtbot.waitUntil(lambda: gui.patients.dialog is None)  # closed once saved
    page = gui.patient_page
    qtbot.waitUntil(lambda: page.patient is not None and page.name.text() == "Ada Lovelace")
    assert page.age.text() == "61 years"
    assert page.symptoms.text() == "blurred vision, floaters"
    assert page.history.text() == "Type 2 diabetes"
    assert page.status.text() == "Pending Analysis"
    assert page.stepper.current_name() == "Analysis"
    model = gui.patient_list.model
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    assert model.data(model.index(0, 0)) == "Ada Lovelace"
    assert gui.patient_list.table.selectionModel().isRowSelected(0)
    assert gui.window.edit_patient_action.isEnabled()
    assert not gui.window.analyse_action.isEnabled()  # no image to analyse yet


def test_ctrl_enter_in_symptoms_or_history_saves(qtbot: QtBot, gui: GuiSession) -> None:
    """Enter there starts a new line (one symptom a line), and nothing else saved from
    them: the clinician had to Tab out to the button, or take the mouse."""
    dialog = gui.patients.new_patient()
    qtbot.waitExposed(dialog)
    dialog.activateWindow()  # its keys go to the active window
    qtbot.waitUntil(dialog.isActiveWindow)
    qtbot.keyClicks(dialog.name, "Grace Hopper")
    qtbot.keyClicks(dialog.symptoms, "floaters")
    dialog.symptoms.setFocus()

    qtbot.keyClick(dialog.symptoms, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    qtbot.waitUntil(lambda: gui.patients.dialog is None)  # saved, and closed
    page = gui.patient_page
    qtbot.waitUntil(lambda: page.patient is not None and page.name.text() == "Grace Hopper")
    assert page.symptoms.text() == "floaters"  # no line added

    dialog = gui.patients.edit_patient()
    assert dialog is not None
    qtbot.waitExposed(dialog)
    dialog.activateWindow()  # its keys go to the active window
    qtbot.waitUntil(dialog.isActiveWindow)
    qtbot.keyClicks(dialog.history, "Glaucoma")
    qtbot.keyClick(dialog.history, Qt.Key.Key_Enter, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: gui.patients.dialog is None)
    qtbot.waitUntil(lambda: page.history.text() == "Glaucoma")


def test_invalid_fields_say_which_field_and_why(qtbot: QtBot, gui: GuiSession) -> None:
    dialog = gui.patients.new_patient()
    qtbot.keyClicks(dialog.name, "   ")  # blank: the core refuses it
    _ok(dialog)
    qtbot.waitUntil(lambda: dialog.error_text() != "")
    assert dialog.error_text() == "Name: the name is required"
    assert dialog.name.property("invalid") is True
    assert dialog.isVisible()  # still open, to fix it

    dialog.name.setText("Grace")
    dialog.symptoms.setPlainText("\n".join(f"s{i}" for i in range(60)))
    _ok(dialog)
    qtbot.waitUntil(lambda: dialog.error_text().startswith("Symptoms:"))
    assert "at most 50" in dialog.error_text()
    assert dialog.symptoms.property("invalid") is True
    assert dialog.name.property("invalid") is False
    assert gui.application.patients.list_patients().total == 0  # nothing created


def test_fixing_the_refused_field_takes_its_error_away(qtbot: QtBot, gui: GuiSession) -> None:
    """The name typed in after "Name: the name is required": the form went on showing the
    error and the red frame until Create was pressed again. An edit of another field
    leaves them (the name is still empty)."""
    dialog = gui.patients.new_patient()
    _ok(dialog)
    qtbot.waitUntil(lambda: dialog.error_text() != "")
    assert dialog.name.property("invalid") is True

    qtbot.keyClicks(dialog.history, "Type 2 diabetes")
    assert dialog.error_text() == "Name: the name is required"
    assert dialog.name.property("invalid") is True

    qtbot.keyClicks(dialog.name, "Amelia")
    assert dialog.error_text() == ""
    assert dialog.name.property("invalid") is False


def test_an_error_names_the_field_as_the_form_labels_it(qtbot: QtBot, gui: GuiSession) -> None:
    """The form says "Sex"; its error said "Gender: ...", a field the form does not have."""
    dialog = gui.patients.new_patient()
    dialog.name.setText("Grace")
    dialog.gender.setCurrentText("x" * 40)
    _ok(dialog)
    qtbot.waitUntil(lambda: dialog.error_text() != "")
    label = dialog.findChild(QFormLayout).labelForField(dialog.gender).text()
    assert label == "Sex"
    assert dialog.error_text().startswith("Sex: ")
    assert dialog.gender.property("invalid") is True


def test_edit_and_delete_a_patient(qtbot: QtBot, gui: GuiSession) -> None:
    app = gui.application
    patient = app.patients.create_patient({"name": "Old Name"}, actor=Actor("t", "gui"))
    model = gui.patient_list.model
    qtbot.waitUntil(lambda: model.rowCount() == 1)  # the bus told the list
    open_patient(qtbot, gui, patient.id)

    gui.window.edit_patient_action.trigger()
    dialog = gui.patients.dialog
    assert dialog is not None and dialog.name.text() == "Old Name"
    dialog.name.setText("New Name")
    dialog.status.setCurrentIndex(dialog.status.findData("Stable"))
    _ok(dialog)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "New Name")
    assert gui.patient_page.status.text() == "Stable"
    qtbot.waitUntil(lambda: model.data(model.index(0, 0)) == "New Name")

    gui.window.delete_patient_action.trigger()
    box = gui.patients.confirm
    assert isinstance(box, QMessageBox) and "cannot be undone" in box.text()
    box.property("yesButton").click()
    qtbot.waitUntil(lambda: model.rowCount() == 0)
    assert gui.patient_page.patient is None
    assert not gui.window.analyse_action.isEnabled()
    # Named as the question named them (an id alone told the clinician nothing), with
    # all that went with them (the measurements and notifications were left out).
    assert gui.window.banner.text() == (
        f"New Name ({patient.id}) was deleted with their scans, analyses, oculomics "
        "measurements and notifications."
    )
    assert app.patients.list_patients().total == 0


def test_an_edit_saves_only_what_the_clinician_changed(qtbot: QtBot, gui: GuiSession) -> None:
    app = gui.application
    actor = Actor("t", "gui")
    patient = app.patients.create_patient(
        {"name": "Old Name", "symptoms": ["pain, worse at night", "floaters"]}, actor=actor
    )
    open_patient(qtbot, gui, patient.id)
    gui.window.edit_patient_action.trigger()
    dialog = gui.patients.dialog
    assert dialog is not None
    # While the dialog is open, another client marks the patient critical.
    app.patients.update_patient(
        patient.id, {"status": "Critical", "history": "Seen by Dr. B."}, actor=actor
    )
    qtbot.waitUntil(lambda: gui.patient_page.status.text() == "Critical")
    dialog.name.setText("New Name")
    _ok(dialog)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "New Name")
    saved = app.patients.get_patient(patient.id)
    assert (saved.name, saved.status, saved.history) == ("New Name", "Critical", "Seen by Dr. B.")
    assert saved.symptoms == ("pain, worse at night", "floaters")

    # Edited, a symptom with a comma stays one symptom.
    gui.window.edit_patient_action.trigger()
    dialog = gui.patients.dialog
    assert dialog is not None
    dialog.symptoms.setPlainText(dialog.symptoms.toPlainText() + "\nhalos, at night")
    _ok(dialog)
    qtbot.waitUntil(lambda: len(app.patients.get_patient(patient.id).symptoms) == 3)
    assert app.patients.get_patient(patient.id).symptoms == (
        "pain, worse at night",
        "floaters",
        "halos, at night",
    )


def test_tab_leaves_the_patient_list_and_delete_asks_to_delete(
    qtbot: QtBot, gui: GuiSession
) -> None:
    app = gui.application
    first = app.patients.create_patient({"name": "First"}, actor=Actor("t", "gui"))
    app.patients.create_patient({"name": "Second"}, actor=Actor("t", "gui"))
    qtbot.waitUntil(lambda: gui.patient_list.model.rowCount() == 2)
    open_patient(qtbot, gui, first.id)
    table = gui.patient_list.table
    gui.window.activateWindow()
    table.setFocus()
    for _ in range(12):  # more than a row has cells
        qtbot.keyClick(table, Qt.Key.Key_Tab)
        if not table.hasFocus():
            break
    assert not table.hasFocus()
    assert gui.patient_page.name.text() == "First"  # no other patient opened

    table.setFocus()
    qtbot.keyClick(table, Qt.Key.Key_Delete)
    box = gui.patients.confirm
    assert isinstance(box, QMessageBox) and "First" in box.text()
    box.reject()


def test_enter_opens_the_patient_the_keyboard_is_on(qtbot: QtBot, gui: GuiSession) -> None:
    """Searched, then Tab into the list: the focus is on the one row found, but nothing
    is chosen; Enter did nothing there (only Space chose it)."""
    app = gui.application
    app.patients.create_patient({"name": "First"}, actor=Actor("t", "gui"))
    second = app.patients.create_patient({"name": "Second"}, actor=Actor("t", "gui"))
    qtbot.waitUntil(lambda: gui.patient_list.model.rowCount() == 2)
    gui.window.activateWindow()
    table = gui.patient_list.table
    row = gui.patient_list.model.row_of(second.id)
    assert row is not None
    table.setFocus()
    table.setCurrentIndex(gui.patient_list.model.index(row, 0))  # the keyboard's row
    table.clearSelection()
    assert gui.patients.current_patient_id is None

    qtbot.keyClick(table, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Second")
    assert gui.patient_list.selected_patient_id() == second.id
    assert table.hasFocus()  # still in the list, to go on with the keyboard


def test_delete_asks_about_the_patient_chosen_and_shown_only(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delete in the list asked to delete the patient on the page, not the one chosen in
    the list: a row chosen while the page was still loading it (or not listed at all,
    as when a search hides the open patient) asked "Delete First?" with Second's row
    highlighted. It asks only about the patient both show, after confirmation (Enter
    keeps them), and never from the search field."""
    app = gui.application
    first = app.patients.create_patient({"name": "First"}, actor=Actor("t", "gui"))
    second = app.patients.create_patient({"name": "Second"}, actor=Actor("t", "gui"))
    model, table = gui.patient_list.model, gui.patient_list.table
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    open_patient(qtbot, gui, first.id)
    loading = threading.Event()
    get_patient = app.patients.get_patient

    def slow_get_patient(patient_id: str) -> object:
        if patient_id == second.id:
            loading.wait(10)
        return get_patient(patient_id)

    monkeypatch.setattr(app.patients, "get_patient", slow_get_patient)
    gui.window.activateWindow()
    table.setFocus()
    table.selectRow(model.row_of(second.id))  # the page still shows First meanwhile
    qtbot.keyClick(table, Qt.Key.Key_Delete)
    assert gui.patients.confirm is None
    gui.window.delete_patient_action.trigger()  # the menu, likewise
    assert gui.patients.confirm is None
    loading.set()
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Second")

    gui.patient_list.search.setFocus()
    qtbot.keyClicks(gui.patient_list.search, "Sec")
    qtbot.keyClick(gui.patient_list.search, Qt.Key.Key_Delete)  # edits the text
    assert gui.patients.confirm is None
    table.setFocus()
    qtbot.keyClick(table, Qt.Key.Key_Delete)
    box = gui.patients.confirm
    assert isinstance(box, QMessageBox) and "Second" in box.text()
    # Answered once the box has the keyboard, as the clinician answers it (before, Enter
    # goes to the list, where it opens the patient the keyboard is on).
    box.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is box)
    qtbot.keyClick(box, Qt.Key.Key_Return)  # the default answer keeps the patient
    nothing_more_happens(qtbot, gui)
    assert app.patients.exists(second.id) and app.patients.exists(first.id)
    gui.window.activateWindow()  # back from the question
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)

    search = gui.patient_list.search
    search.selectAll()
    qtbot.keyClicks(search, "First")  # the list hides the open patient: no row chosen
    qtbot.waitUntil(lambda: model.rowCount() == 1 and model.patient_id_at(0) == first.id)
    assert gui.patient_page.name.text() == "Second" and table.selectionModel().selectedRows() == []
    table.setFocus()
    assert table.hasFocus()
    qtbot.keyClick(table, Qt.Key.Key_Delete)
    assert gui.patients.confirm is box and not box.isVisible()
    search.selectAll()
    qtbot.keyClick(search, Qt.Key.Key_Backspace)
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    assert gui.patient_list.selected_patient_id() == second.id
    table.setFocus()
    qtbot.keyClick(table, Qt.Key.Key_Delete)
    box = gui.patients.confirm
    assert box.isVisible() and "Second" in box.text()
    box.property("yesButton").click()
    qtbot.waitUntil(lambda: not app.patients.exists(second.id))
    assert app.patients.exists(first.id)


def test_tab_in_the_history_field_moves_on(qtbot: QtBot, gui: GuiSession) -> None:
    gui.window.new_patient_action.trigger()
    dialog = gui.patients.dialog
    assert dialog is not None
    qtbot.waitExposed(dialog)
    # The form has the keyboard first: in a window not yet active nothing has the focus,
    # and "not in the history field" held whatever Tab did.
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    dialog.history.setFocus()
    qtbot.waitUntil(dialog.history.hasFocus)
    qtbot.keyClicks(dialog.history, "Type 2 diabetes.")
    qtbot.keyClick(dialog.history, Qt.Key.Key_Tab)
    assert dialog.history.toPlainText() == "Type 2 diabetes."
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert QApplication.focusWidget() is save  # on to Save, as in a form
    dialog.reject()


def test_the_delete_question_names_what_goes_with_the_patient(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """The core deletes the scans, analyses, notifications and oculomics measurements;
    the question named the first three only, and not how many scans."""
    actor = Actor("t", "gui")
    patient = gui.application.patients.create_patient(
        {"name": "Has Scans"},
        actor=actor,
        image=NewImage(oct_bscan(0), source="drop", modality="OCT", filename="a.png"),
    )
    gui.application.oculomics.add_measurement(
        patient.id, eye="OD", measured_on=date(2025, 1, 2), iop_mmhg=18.0, actor=actor
    )
    open_patient(qtbot, gui, patient.id)
    gui.window.delete_patient_action.trigger()
    box = gui.patients.confirm
    assert box is not None
    assert "with their 1 scan, analyses, oculomics measurements and notifications" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()


def test_a_patient_deleted_elsewhere_while_chosen_leaves_no_other_chosen(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Deleted through the API while chosen in the list: the next row must not become
    the chosen patient (Delete would ask to delete them)."""
    actor = Actor("t", "gui")
    service = gui.application.patients
    service.create_patient({"name": "Below"}, actor=actor)
    chosen = service.create_patient({"name": "Chosen"}, actor=actor)
    model = gui.patient_list.model
    qtbot.waitUntil(lambda: model.row_of(chosen.id) is not None and model.rowCount() == 2)
    gui.patient_list.table.selectRow(model.row_of(chosen.id) or 0)
    qtbot.waitUntil(lambda: getattr(gui.patient_page.patient, "id", None) == chosen.id)
    assert gui.patient_list.selected_patient_id() == chosen.id

    service.delete_patient(chosen.id, actor=actor)
    qtbot.waitUntil(lambda: model.row_of(chosen.id) is None)
    qtbot.waitUntil(lambda: gui.patient_page.patient is None)
    assert gui.patient_list.selected_patient_id() is None
    assert not gui.window.delete_patient_action.isEnabled()


def test_cancelling_the_delete_keeps_the_patient(qtbot: QtBot, gui: GuiSession) -> None:
    patient = gui.application.patients.create_patient({"name": "Keep"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    gui.window.delete_patient_action.trigger()
    box = gui.patients.confirm
    assert box is not None
    box.button(QMessageBox.StandardButton.Cancel).click()
    nothing_more_happens(qtbot, gui)
    assert gui.application.patients.exists(patient.id)
    assert gui.patient_page.patient is not None


def test_a_burst_of_new_patients_reaches_the_list_as_it_is_now(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Patients created in a burst (a watch folder) are listed newest first, with what
    changed or went away before they were shown taken into account."""
    model = gui.patient_list.model
    qtbot.waitUntil(lambda: gui.patient_list.empty_text().startswith("No patients yet"))
    service = gui.application.patients
    actor = Actor("t", "gui")
    created = [service.create_patient({"name": f"Burst {i:02d}"}, actor=actor) for i in range(30)]
    service.update_patient(created[3].id, {"status": "Critical"}, actor=actor)
    service.delete_patient(created[5].id, actor=actor)
    qtbot.waitUntil(lambda: model.rowCount() == 29)
    names = [model.data(model.index(row, 0)) for row in range(29)]
    assert names == [f"Burst {i:02d}" for i in reversed(range(30)) if i != 5]
    row = model.row_of(created[3].id)
    assert row is not None and model.data(model.index(row, COLUMN_OF["status"])) == "Critical"
    assert model.total == 29
    assert gui.patient_list.count.text() == "29 patients"


def test_a_long_name_wraps_on_the_page_and_is_whole_in_the_lists_tooltip(
    qtbot: QtBot, gui: GuiSession
) -> None:
    name = "Đặng Thị Ngọc Ánh-Χριστοδουλοπούλου Añuñez-Øberg Mohammed bin Abdulrahman " * 2
    patient = gui.application.patients.create_patient(
        {"name": name.strip()}, actor=Actor("tester", "gui")
    )
    model = gui.patient_list.model
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    gui.patients.open_patient(patient.id)
    qtbot.waitUntil(lambda: gui.patient_page.name.full_text() == name.strip())

    assert model.data(model.index(0, 0), Qt.ItemDataRole.ToolTipRole) == name.strip()
    assert (
        model.data(model.index(0, COLUMN_OF["id"]), Qt.ItemDataRole.ToolTipRole) is None
    )  # short id
    # The window still fits a 1024-pixel screen: the name wraps instead.
    gui.window.resize(1024, 700)
    qtbot.wait(50)
    assert gui.window.width() <= 1024


@pytest.mark.parametrize(
    "name",
    [
        ("Maximiliana Josefina Fernández-Villavicencio de la Peña Özdemir " * 4)[:200],
        "山田太郎佐藤花子長谷川一郎渡辺美咲小林健太郎高橋由美子" * 7,
    ],
    ids=["latin", "cjk"],
)
def test_a_name_too_long_for_three_lines_is_cut_short_with_an_ellipsis_not_cut_off(
    qtbot: QtBot, gui: GuiSession, name: str
) -> None:
    """At 1024 x 700 a 200-character name needed 17 lines at the top of the page; the
    header got 7 and the rest were cut off mid-line, without a mark. It takes three
    lines, the last ending with an ellipsis, and is whole in the tooltip."""
    patient = gui.application.patients.create_patient({"name": name}, actor=Actor("t", "gui"))
    gui.window.resize(1024, 700)
    gui.patients.open_patient(patient.id)
    title = gui.patient_page.name
    qtbot.waitUntil(lambda: title.full_text() == name)
    qtbot.wait(50)

    assert title.height() >= title.heightForWidth(title.width())  # every line shown
    assert title.text().endswith("…")
    assert title.toolTip() == name
    assert title.accessibleName() == name
    lines = title.heightForWidth(title.width()) // title.fontMetrics().lineSpacing()
    assert lines <= 3


def test_a_name_and_history_without_spaces_wrap_and_keep_the_window_on_the_screen(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Qt wraps a label at spaces only: a name typed without any (200 letters, the most
    a name has) made the page's title as wide as the whole name, the window 2,858 px
    wide at 1024 x 768 and unable to shrink; the history scrolled sideways, the
    deletion's message in the banner widened the window again and the toast cut the
    name at its edge. Every letter is still shown."""
    name = ("Wolfeschlegelsteinhausenbergerdorffvoralternwarengewissenhaftschaferswessen" * 3)[:200]
    history = "HbA1c" + "9" * 150
    patient = gui.application.patients.create_patient(
        {"name": name, "history": history}, actor=Actor("tester", "gui")
    )
    gui.window.resize(1024, 700)
    gui.patients.open_patient(patient.id)
    page = gui.patient_page
    qtbot.waitUntil(lambda: page.name.full_text() == name)

    assert page.history.text().replace("\u200b", "") == history
    qtbot.wait(50)
    assert gui.window.width() <= 1024
    assert gui.window.minimumSizeHint().width() <= 1024
    assert page.info_scroll.horizontalScrollBar().maximum() == 0  # no sideways scrolling

    gui.window.banner.show_message(f"{name} ({patient.id}) was deleted.", "info")
    qtbot.wait(50)
    assert gui.window.width() <= 1024
    assert gui.window.banner.message() == f"{name} ({patient.id}) was deleted."  # as said
    # The toast keeps its width: the name wraps in it rather than being cut at its edge.
    gui.notifications.alert("Critical finding", f"Abnormal finding for patient {name}")
    toast = gui.window.toast
    qtbot.waitUntil(toast.isVisible)
    assert toast.label.minimumSizeHint().width() <= toast.label.width()
    assert toast.text() == f"Critical finding: Abnormal finding for patient {name}"


def _select_all_of(qtbot: QtBot, gui: GuiSession, label: QLabel) -> None:
    """The window shown, ``label`` with the focus and all its text selected."""
    gui.window.show()
    qtbot.waitExposed(gui.window)
    label.setFocus()
    qtbot.waitUntil(label.hasFocus)
    label.setSelection(0, len(label.text()))


def _history_shown(qtbot: QtBot, gui: GuiSession, name: str, history: str) -> QLabel:
    """A new patient's page open, ``history`` on it (break hints aside)."""
    patient = gui.application.patients.create_patient(
        {"name": name, "history": history}, actor=Actor("tester", "gui")
    )
    gui.patients.open_patient(patient.id)
    label = gui.patient_page.history
    qtbot.waitUntil(lambda: label.text().replace("\u200b", "") == history)
    return label


def test_a_history_in_a_script_without_spaces_keeps_its_vowel_signs_on_their_letters(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Thai is written without spaces between words, and Thai and Devanagari vowel signs
    are marks of combining class 0: the breaks put into a long run went before them too,
    and each sign was drawn alone on a dotted circle. So were an emoji's variation
    selector and skin tone, and the parts of a family joined by zero-width joiners."""
    thai = "ผู้ป่วยมีอาการตามัวข้างขวามาสองสัปดาห์ความดันลูกตาสูง"
    hindi = "दाहिनीआँखमेंधुंधलापनदोसप्ताहसेहैऔरदबावबढ़ाहुआहै"
    emoji = "❤️👍🏽👨‍👩‍👧" * 5
    history = f"{thai} {hindi} {emoji}"
    shown = _history_shown(qtbot, gui, "Somchai Dee", history)

    text = shown.text()
    assert text != history  # the long runs may still break
    for before, after in itertools.pairwise(text):
        if before == "\u200b":
            assert not unicodedata.category(after).startswith("M"), text
            assert after not in "\u200d\U0001f3fd", text
        if after == "\u200b":
            assert before != "\u200d", text


def test_the_birth_date_picker_offers_no_day_after_today(qtbot: QtBot) -> None:
    dialog = PatientDialog()
    qtbot.addWidget(dialog)
    dialog.birth_known.setChecked(True)

    dialog.birth_date.setDate(QDate.currentDate().addDays(3))

    assert dialog.birth_date.date() == QDate.currentDate()


def test_a_known_birth_date_sets_the_age_and_locks_it(qtbot: QtBot) -> None:
    dialog = PatientDialog()
    qtbot.addWidget(dialog)
    dialog.age.setValue(50)

    dialog.birth_known.setChecked(True)
    # Ticked: the picker starts from a date that keeps the age entered (it was
    # 1970-01-01, which changed the age and was saved as a made-up birth date).
    assert dialog.age.value() == 50
    assert dialog.birth_date.date() == QDate.currentDate().addYears(-50)
    dialog.birth_date.setDate(QDate.currentDate().addYears(-30))

    assert dialog.age.value() == 30 and not dialog.age.isEnabled()
    assert dialog.fields()["age"] == 30
    dialog.birth_known.setChecked(False)
    assert dialog.age.isEnabled()


def test_the_list_sorts_names_ignoring_case_and_accents(qtbot: QtBot, gui: GuiSession) -> None:
    actor = Actor("t", "gui")
    for name in ("Zack", "de la Cruz", "zoë", "Adam", "Élodie", "Eve", "bob"):
        gui.application.patients.create_patient({"name": name}, actor=actor)
    gui.patients.refresh()
    view, model = gui.patient_list, gui.patient_list.model
    qtbot.waitUntil(lambda: model.rowCount() == 7)

    view.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)

    expected = ["Adam", "bob", "de la Cruz", "Élodie", "Eve", "Zack", "zoë"]
    qtbot.waitUntil(lambda: [model.data(model.index(r, 0)) for r in range(7)] == expected)


def test_columns_chosen_from_the_header_menu_stay_chosen_after_a_restart(
    make_gui: Maker, qtbot: QtBot
) -> None:
    """At 1024 px the list shows three columns; a clinician hides those not needed, and
    the next start shows the list as they left it."""
    first = make_gui()
    view = first.window.patient_list
    menu = view.column_menu()
    titles = [action.text() for action in menu.actions()]
    assert "Name" not in titles and {"Status", "ID", "Step"} <= set(titles)
    for action in menu.actions():
        if action.text() in ("ID", "Step", "Admitted"):
            action.setChecked(False)  # as unticking it in the menu does
    hidden = {COLUMN_OF[key] for key in ("id", "workflow_step", "admission_date")}
    assert {c for c in range(len(COLUMN_OF)) if view.table.isColumnHidden(c)} == hidden
    first.shutdown()

    second = make_gui().window.patient_list
    assert second.hidden_columns() == ["id", "workflow_step", "admission_date"]
    assert [a.isChecked() for a in second.column_menu().actions() if a.text() == "ID"] == [False]
    second.hide_columns(["name", "status"])  # the name is always shown
    assert not second.table.isColumnHidden(COLUMN_OF["name"])
    assert second.table.isColumnHidden(COLUMN_OF["status"])


def _choose_in_menus(qtbot: QtBot, path: list[str]) -> None:
    """Once a menu pops up, go down it to each entry of ``path`` in turn by the arrow
    keys and press Enter on it (which opens a submenu); the menus are closed if an entry
    is not found, so that the test fails rather than hangs."""
    handled: list[QWidget] = []
    deadline = time.monotonic() + 10

    def poll() -> None:
        popup = QApplication.activePopupWidget()
        if not isinstance(popup, QMenu) or popup in handled:
            if time.monotonic() < deadline:
                QTimer.singleShot(20, poll)
            return
        handled.append(popup)
        wanted = path[len(handled) - 1]
        for _ in range(len(popup.actions()) + 1):
            if popup.activeAction() is not None and popup.activeAction().text() == wanted:
                break
            qtbot.keyClick(popup, Qt.Key.Key_Down)
        else:
            popup.close()
            return
        qtbot.keyClick(popup, Qt.Key.Key_Return)
        if len(handled) < len(path):
            QTimer.singleShot(20, poll)

    QTimer.singleShot(20, poll)


def test_the_list_is_sorted_and_its_columns_chosen_from_the_keyboard(
    make_gui: Maker, qtbot: QtBot
) -> None:
    """The header sorts on a click and chooses the columns on a right-click, and takes
    no focus: from the keyboard the list could be neither sorted nor its columns chosen.
    The menu key (or Shift+F10) in the list opens a menu of both."""
    gui = make_gui()
    actor = Actor("t", "gui")
    for name, age in (("Old", 80), ("Young", 20), ("Middle", 50)):
        gui.application.patients.create_patient({"name": name, "age": age}, actor=actor)
    gui.patients.refresh()
    view, model = gui.patient_list, gui.patient_list.model
    qtbot.waitUntil(lambda: model.rowCount() == 3)
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    view.table.setFocus()

    def names() -> list[str]:
        return [model.data(model.index(row, COLUMN_OF["name"])) for row in range(3)]

    _choose_in_menus(qtbot, ["Sort by", "Age"])
    qtbot.keyClick(view.table, Qt.Key.Key_Menu)
    qtbot.waitUntil(lambda: names() == ["Young", "Middle", "Old"])
    _choose_in_menus(qtbot, ["Sort by", "Age"])  # again: the other way round
    qtbot.keyClick(view.table, Qt.Key.Key_F10, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: names() == ["Old", "Middle", "Young"])

    assert not view.table.isColumnHidden(COLUMN_OF["status"])
    _choose_in_menus(qtbot, ["Columns", "Status"])
    qtbot.keyClick(view.table, Qt.Key.Key_Menu)
    qtbot.waitUntil(lambda: view.table.isColumnHidden(COLUMN_OF["status"]))
    assert view.hidden_columns() == ["status"]
    assert QApplication.focusWidget() is view.table


def _drag_status_and_state(qtbot: QtBot, gui: GuiSession) -> int:
    """In a wide window, the patient list's Status dragged to 250 px and the job
    queue's State to 170 px, as a drag of their edges does; the width of Age, left
    alone."""
    gui.window.resize(1680, 1000)
    patients, jobs = gui.patient_list.table, gui.jobs_panel.table
    qtbot.waitUntil(lambda: not patients.isColumnHidden(COLUMN_OF["age"]))
    patients.horizontalHeader().resizeSection(COLUMN_OF["status"], 250)
    jobs.horizontalHeader().resizeSection(STATE_COLUMN, 170)
    return patients.horizontalHeader().sectionSize(COLUMN_OF["age"])


def test_column_widths_dragged_come_back_at_the_next_start(
    make_gui: Maker, qtbot: QtBot, qapp: QApplication
) -> None:
    """A clinician widened the patient list's Status and the job queue's State; the next
    start gave them back the widths fitted to the font. The widths dragged come back and
    stay as the font changes; the columns left alone go on fitting the font."""
    first = make_gui()
    age_px = _drag_status_and_state(qtbot, first)
    first.shutdown()

    second = make_gui()
    second.window.resize(1680, 1000)
    header = second.patient_list.table.horizontalHeader()
    jobs = second.jobs_panel.table.horizontalHeader()
    qtbot.waitUntil(lambda: not header.isSectionHidden(COLUMN_OF["age"]))
    assert header.sectionSize(COLUMN_OF["status"]) == 250
    assert jobs.sectionSize(STATE_COLUMN) == 170
    assert header.sectionSize(COLUMN_OF["age"]) == age_px

    font = QFont(qapp.font())
    font.setPointSizeF(font.pointSizeF() * 1.6)
    qapp.setFont(font)  # the next test starts at the usual font again (conftest)
    qtbot.waitUntil(lambda: header.sectionSize(COLUMN_OF["age"]) >= age_px * 1.4)
    assert header.sectionSize(COLUMN_OF["status"]) == 250
    assert jobs.sectionSize(STATE_COLUMN) == 170


@pytest.mark.parametrize("saved", ["older columns", "unreadable"])
def test_column_widths_saved_for_other_columns_are_ignored(
    make_gui: Maker, qtbot: QtBot, saved: str
) -> None:
    """Widths saved by a version with a column fewer (or a damaged settings file) would
    land on the wrong columns: they are ignored, and the columns fit as on a first
    start."""
    first = make_gui()
    _drag_status_and_state(qtbot, first)
    first.shutdown()
    store = window_settings()
    key = "column_widths/patientTable"
    stored = store.value(key)
    assert isinstance(stored, str)
    if saved == "older columns":
        state = json.loads(stored)
        state["columns"] = state["columns"][:-1]  # no "Appointment" column then
        store.setValue(key, json.dumps(state))
    else:
        store.setValue(key, '{"columns": ["Name"')
    store.sync()

    second = make_gui()
    second.window.resize(1680, 1000)
    header = second.patient_list.table.horizontalHeader()
    qtbot.waitUntil(lambda: not header.isSectionHidden(COLUMN_OF["age"]))
    assert 0 < header.sectionSize(COLUMN_OF["status"]) < 250
    assert second.jobs_panel.table.horizontalHeader().sectionSize(STATE_COLUMN) == 170
    assert not header.isSectionHidden(COLUMN_OF["name"])


def test_a_column_width_saved_wider_than_the_screen_is_not_put_back(
    make_gui: Maker, qtbot: QtBot
) -> None:
    """Status dragged very wide on a larger monitor (or a settings file edited): put
    back, it hid Status and every column after it at any window size, with no edge left
    to drag it narrower, and it was saved again at each quit. It fits as on a first
    start; the other widths dragged still come back."""
    first = make_gui()
    _drag_status_and_state(qtbot, first)
    first.shutdown()
    store = window_settings()
    key = "column_widths/patientTable"
    state = json.loads(str(store.value(key)))
    screen_px = first.window.screen().availableGeometry().width()
    state["widths"][str(COLUMN_OF["status"])] = screen_px * 3
    store.setValue(key, json.dumps(state))
    store.sync()

    second = make_gui()
    second.window.resize(1680, 1000)
    header = second.patient_list.table.horizontalHeader()
    qtbot.waitUntil(lambda: not header.isSectionHidden(COLUMN_OF["age"]))
    assert not header.isSectionHidden(COLUMN_OF["status"])
    assert 0 < header.sectionSize(COLUMN_OF["status"]) < 250
    assert second.jobs_panel.table.horizontalHeader().sectionSize(STATE_COLUMN) == 170


def test_a_restart_puts_back_the_list_order_and_the_open_patient(
    make_gui: Maker, qtbot: QtBot
) -> None:
    """Quitting in the middle of the day and starting again showed the list newest first
    (not as sorted) and no patient open: the clinician had to find their place again."""
    first = make_gui()
    actor = Actor("t", "gui")
    for name in ("Bruno", "Carla", "Dora"):
        first.application.patients.create_patient({"name": name}, actor=actor)
    carla = first.application.patients.list_patients(search="Carla").items[0]
    view, model = first.patient_list, first.patient_list.model

    def names(model: PatientTableModel) -> list[str]:
        return [model.data(model.index(row, 0)) for row in range(model.rowCount())]

    qtbot.waitUntil(lambda: names(model) == ["Dora", "Carla", "Bruno"])
    view.table.horizontalHeader().setSortIndicator(COLUMN_OF["name"], Qt.SortOrder.AscendingOrder)
    qtbot.waitUntil(lambda: names(model) == ["Bruno", "Carla", "Dora"])
    open_patient(qtbot, first, carla.id)
    first.shutdown()

    second = make_gui(application=first.application)
    qtbot.waitUntil(lambda: second.patient_page.name.text() == "Carla")
    header = second.patient_list.table.horizontalHeader()
    assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (
        COLUMN_OF["name"],
        Qt.SortOrder.AscendingOrder,
    )
    later = second.patient_list.model
    qtbot.waitUntil(lambda: names(later) == ["Bruno", "Carla", "Dora"])
    qtbot.waitUntil(lambda: second.patient_list.selected_patient_id() == carla.id)

    # A patient deleted since (through the API, say) is simply not open: no error.
    second.application.patients.delete_patient(carla.id, actor=actor)
    second.shutdown()
    third = make_gui(application=first.application)
    qtbot.waitUntil(lambda: names(third.patient_list.model) == ["Bruno", "Dora"])
    qtbot.waitUntil(lambda: third.patients.current_patient_id is None)  # looked up: gone
    assert not third.window.banner.isVisible()


def test_a_new_patient_does_not_move_the_list_scrolled_down(qtbot: QtBot, gui: GuiSession) -> None:
    """A patient arriving (the watch folder, the API) while the clinician reads further
    down the list scrolled it back to the open patient, and otherwise pushed the rows
    down under the pointer; a list at its top shows the newcomer."""
    app = gui.application
    seed_patients(app, 300)
    gui.patients.refresh()
    model, table = gui.patient_list.model, gui.patient_list.table
    qtbot.waitUntil(lambda: model.rowCount() == 200)
    open_patient(qtbot, gui, "pt-seed00295")  # near the top (newest first)
    table.verticalScrollBar().setValue(100 * table.verticalHeader().defaultSectionSize())
    top = model.patient_id_at(table.indexAt(QPoint(5, 5)).row())

    app.patients.create_patient({"name": "Arrived"}, actor=Actor("t", "gui"))

    qtbot.waitUntil(lambda: model.total == 301 and model.rowCount() == 201)
    assert model.patient_id_at(table.indexAt(QPoint(5, 5)).row()) == top
    assert table.selectionModel().isRowSelected(model.row_of("pt-seed00295"))
    table.verticalScrollBar().setValue(0)
    app.patients.create_patient({"name": "Seen"}, actor=Actor("t", "gui"))
    qtbot.waitUntil(lambda: model.rowCount() == 202)
    assert model.data(model.index(table.indexAt(QPoint(5, 5)).row(), 0)) == "Seen"


def test_a_patient_arriving_during_a_search_typed_without_accents_is_listed(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """The list searches the database ignoring accents; a patient arriving meanwhile (the
    watch folder, the API) is held to the same rule."""
    view, model, app = gui.patient_list, gui.patient_list.model, gui.application
    app.patients.create_patient({"name": "Ann Before"}, actor=Actor("t", "api"))
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    qtbot.keyClicks(view.search, "muller")
    qtbot.waitUntil(lambda: model.rowCount() == 0)  # the search has run

    app.patients.create_patient({"name": "Ann Other"}, actor=Actor("t", "api"))
    app.patients.create_patient({"name": "Jürgen Müller"}, actor=Actor("t", "api"))

    qtbot.waitUntil(lambda: model.rowCount() == 1)
    assert model.data(model.index(0, COLUMN_OF["name"])) == "Jürgen Müller"


@pytest.mark.parametrize("before", ["Referral letter: ", "Referral\nletter,\u00a0see: "])
def test_a_history_copied_from_the_page_has_no_break_hints(
    qtbot: QtBot, gui: GuiSession, before: str
) -> None:
    """The page puts zero-width spaces into long runs without a space so that they wrap;
    a link or an identifier copied from the history (Ctrl+C in the selectable label)
    carried them to wherever it was pasted, where it no longer matched. (A history of
    two lines, or with a no-break space, is copied as the label copies it: a line break,
    a space.)"""
    link = "https://referrals.example.org/letters/2026/RX-4471-OD-macula-follow-up.pdf"
    history = f"{before}{link}"
    label = _history_shown(qtbot, gui, "Ada Quist", history)
    assert "\u200b" in label.text()  # the hints are there, on screen

    _select_all_of(qtbot, gui, label)
    clipboard = QGuiApplication.clipboard()
    clipboard.clear()
    qtbot.keyClick(label, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)

    copied = history.replace("\u00a0", " ")
    qtbot.waitUntil(lambda: clipboard.text() == copied)


def test_text_copied_in_a_field_keeps_its_zero_width_spaces(qtbot: QtBot, gui: GuiSession) -> None:
    """Only a label's copy is put back: what a field being edited copies is the user's."""
    gui.window.show()
    qtbot.waitExposed(gui.window)
    field = gui.patient_list.search
    field.setText("a\u200bb")
    field.setFocus()
    qtbot.waitUntil(field.hasFocus)
    field.selectAll()
    clipboard = QGuiApplication.clipboard()
    clipboard.clear()
    qtbot.keyClick(field, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)

    qtbot.waitUntil(lambda: clipboard.text() != "")
    qtbot.wait(20)
    assert clipboard.text() == "a\u200bb"


def test_a_copy_from_elsewhere_while_a_label_has_the_focus_is_left_whole(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Another program's copy can land while a label of the window has the focus (a
    remote desktop's or a virtual machine's shared clipboard, a clipboard manager): it
    was taken for the label's and rewritten as plain text without its zero-width spaces,
    its other formats (HTML) lost. Only the label's own selection is put back."""
    label = _history_shown(qtbot, gui, "Ada Quist", "RX-4471-OD-macula-follow-up-2026-referral")
    assert "\u200b" in label.text()
    _select_all_of(qtbot, gui, label)
    clipboard = QGuiApplication.clipboard()
    elsewhere = QMimeData()
    elsewhere.setText("see\u200bhere")
    elsewhere.setHtml("<b>see\u200bhere</b>")

    clipboard.setMimeData(elsewhere)
    try:
        qtbot.wait(20)

        assert clipboard.text() == "see\u200bhere"
        pasted = clipboard.mimeData()
        assert pasted is not None and pasted.hasHtml()
    finally:
        # The clipboard owns the data made here; left there, Qt deleted it at exit,
        # after Python had finished, and the test run ended in a segmentation fault.
        clipboard.clear()


def test_a_dialog_left_open_past_midnight_into_a_birthday_saves_the_patient(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The age followed the birth date when it was set: sent the next day, on the
    patient's birthday, it was a year short and the core refused it as not matching."""
    today = date.today()
    born = date(1980, today.month, today.day)  # 1980 had a 29 February too
    with monkeypatch.context() as clock:
        clock.setattr(domain, "local_today", lambda: today - timedelta(days=1))
        dialog = gui.patients.new_patient()
        dialog.name.setText("Ada")
        dialog.birth_known.setChecked(True)
        dialog.birth_date.setDate(QDate(born))
        assert dialog.age.value() == today.year - 1980 - 1

    _ok(dialog)  # the next morning

    qtbot.waitUntil(lambda: gui.patients.dialog is None)  # closed once saved
    created = gui.application.patients.list_patients().items
    assert [(p.birth_date, p.age) for p in created] == [(born, today.year - 1980)]


def test_a_dialog_left_open_past_midnight_offers_the_new_day_as_a_birth_date(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latest birth date was the day the form opened: left open past midnight, a
    baby born that morning could not be entered until the form was opened again. The
    date entered stays, and the age shown is counted to the new day."""
    dialog = gui.patients.new_patient()
    dialog.name.setText("Ada")
    dialog.birth_known.setChecked(True)
    today = date.today()
    tomorrow = today + timedelta(days=1)
    born = date(1980, tomorrow.month, tomorrow.day)  # 1980 had a 29 February too
    dialog.birth_date.setDate(QDate(born))
    assert dialog.birth_date.maximumDate() == QDate(today)
    assert dialog.age.value() == domain.age_on(born, today)

    monkeypatch.setattr(domain, "local_today", lambda: tomorrow)
    monkeypatch.setattr(day, "today", lambda: QDate(tomorrow))
    gui.patients.day_watch.look()  # as its timer does just past midnight

    assert dialog.birth_date.maximumDate() == QDate(tomorrow)
    assert dialog.birth_date.date() == QDate(born)  # what the clinician entered
    assert dialog.age.value() == domain.age_on(born, tomorrow)
    dialog.birth_date.setDate(QDate(tomorrow))  # born after midnight: can be entered
    assert dialog.birth_date.date() == QDate(tomorrow)
    assert dialog.age.value() == 0


def _menu_opened_at(qtbot: QtBot, open_it: Callable[[], None]) -> QRect:
    """Where the menu that ``open_it`` pops up opened, on the screen (it is closed)."""
    where: list[QRect] = []
    focused = QApplication.focusWidget()
    assert focused is not None
    deadline = time.monotonic() + 10

    def poll() -> None:
        popup = QApplication.activePopupWidget()
        if isinstance(popup, QMenu):
            where.append(popup.geometry())
            popup.close()
        elif time.monotonic() < deadline:
            QTimer.singleShot(20, poll)

    QTimer.singleShot(20, poll)
    open_it()
    assert where, "no menu opened"
    # The menu is made the active window by an event the offscreen platform posts as it
    # opens; on a busy machine the menu was closed before that event came, and the
    # hidden menu stayed the active window: the next key went nowhere. A window manager
    # gives the window back; here the test does.
    focused.window().activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is focused)
    return where[0]


def test_the_menu_keys_open_the_menu_in_the_list_when_its_row_is_out_of_sight(
    make_gui: Maker, qtbot: QtBot
) -> None:
    """The menu key's menu opened under the row the keyboard was on, also when that row
    was scrolled out of sight: above the list, or off it. It opens under the row while
    the row is in sight, else at the list's top-left."""
    gui = make_gui()
    seed_patients(gui.application, 80)
    gui.patients.refresh()
    view, model = gui.patient_list, gui.patient_list.model
    table = view.table
    qtbot.waitUntil(lambda: model.rowCount() == 80)
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    table.setFocus()
    viewport = table.viewport()
    seen = QRect(viewport.mapToGlobal(QPoint(0, 0)), viewport.size())

    def press_menu_key() -> None:
        qtbot.keyClick(table, Qt.Key.Key_Menu)

    # The keyboard on the third row (moved there as Ctrl+Down does: not chosen).
    third = model.index(2, COLUMN_OF["name"])
    table.selectionModel().setCurrentIndex(third, QItemSelectionModel.SelectionFlag.NoUpdate)
    table.scrollToTop()
    under_row = viewport.mapToGlobal(table.visualRect(third).bottomLeft())
    opened = _menu_opened_at(qtbot, press_menu_key)
    assert abs(opened.top() - under_row.y()) <= 2 and abs(opened.left() - under_row.x()) <= 2

    for scroll_to, current_row in ((table.scrollToBottom, 2), (table.scrollToTop, 79)):
        current = model.index(current_row, COLUMN_OF["name"])
        table.selectionModel().setCurrentIndex(current, QItemSelectionModel.SelectionFlag.NoUpdate)
        scroll_to()
        qtbot.waitUntil(
            lambda current=current: not table.visualRect(current).intersects(viewport.rect())
        )
        opened = _menu_opened_at(qtbot, press_menu_key)
        assert seen.contains(opened.topLeft()), (current_row, opened, seen)
        assert abs(opened.top() - seen.top()) <= 2 and abs(opened.left() - seen.left()) <= 2


def _choose_the_day_before_by_keys(qtbot: QtBot, edit: QDateEdit) -> None:
    """Open ``edit``'s calendar by Alt+Down, choose the day before and close it by
    Enter; then the same by F4 and Escape, which leaves the date."""
    calendar = edit.calendarWidget()
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus)
    shown = edit.date()
    qtbot.keyClick(edit, Qt.Key.Key_Down, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(calendar.isVisible)
    assert edit.date() == shown  # not stepped a day back, as Alt+Down did
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Left)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not calendar.isVisible())
    assert edit.date() == shown.addDays(-1)
    assert QApplication.focusWidget() is edit
    qtbot.keyClick(edit, Qt.Key.Key_F4)
    qtbot.waitUntil(calendar.isVisible)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not calendar.isVisible())
    assert edit.date() == shown.addDays(-1)


def test_the_birth_date_and_measured_on_calendars_open_from_the_keyboard(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """The patient form's birth date and the oculomics' date opened their calendars on a
    click of the arrow alone (Alt+Down moved the date a day back; F4 did nothing). Both
    keys open them, as they open a combo box's list."""
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    dialog = gui.patients.new_patient()
    qtbot.waitExposed(dialog)
    dialog.birth_known.setChecked(True)
    _choose_the_day_before_by_keys(qtbot, dialog.birth_date)
    dialog.reject()

    patient = gui.application.patients.create_patient({"name": "Dated"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    gui.patient_page.show_tab("oculomics")
    qtbot.waitUntil(gui.oculomics_view.measured_on.isVisible)
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    _choose_the_day_before_by_keys(qtbot, gui.oculomics_view.measured_on)


@contextlib.contextmanager
def _database_locked_by_another_program(
    gui: GuiSession, monkeypatch: pytest.MonkeyPatch, wait_ms: int
) -> Iterator[None]:
    """Another program (an sqlite3 shell) holds the SQLite file's write lock meanwhile;
    a change here waits ``wait_ms`` for it (30 s in use) before it is refused."""
    from ophthai_desktop.core.storage import availability
    from ophthai_desktop.core.storage import database as database_module

    monkeypatch.setattr(availability, "QUIET_S", 0.1)
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", wait_ms)
    gui.application.db.dispose()  # connections made from now on wait wait_ms
    other = sqlite3.connect(str(gui.application.db.url.database), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def _said(dialog: PatientDialog) -> str:
    """What the form's labels show (the user's view, not a method of the form's)."""
    return " ".join(label.text() for label in dialog.findChildren(QLabel) if label.isVisible())


def test_a_new_patient_waiting_for_a_locked_database_says_so_and_cancel_says_what_it_does(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save waited up to 30 s with every button greyed, no word of why, and Cancel
    and Escape did nothing. It says it waits, Cancel says that the save sent cannot be
    taken back, and the form goes once the save ended (refused here: nobody created)."""
    from ophthai_desktop.ui.views import patient_dialog

    monkeypatch.setattr(patient_dialog, "BUSY_NOTICE_MS", 50, raising=False)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=1500):
        dialog = gui.patients.new_patient()
        qtbot.keyClicks(dialog.name, "Locked Out")
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        assert "Saving…" in _said(dialog)
        qtbot.waitUntil(lambda: "the database is busy" in _said(dialog))
        cancel = dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        assert cancel.isEnabled()
        assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)
        assert dialog.isVisible()  # a save sent cannot be taken back: it is said
        assert "cannot be taken back" in _said(dialog)
        qtbot.waitUntil(lambda: gui.patients.dialog is None, timeout=5000)  # refused: gone
    assert gui.patients.dialog is None
    assert gui.application.patients.list_patients().total == 0


def test_the_new_patient_form_s_outage_error_gives_way_once_the_database_answers(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "The database does not answer…" stayed in the form after the window's banner
    said that it answers again; now the form says so too, and Save creates one patient."""
    from ophthai_desktop.ui.messages import DATABASE_BACK, DATABASE_DOWN

    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=200):
        dialog = gui.patients.new_patient()
        qtbot.keyClicks(dialog.name, "Locked Out")
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        qtbot.waitUntil(lambda: dialog.error_text() == DATABASE_DOWN, timeout=5000)
        assert "Saving" not in _said(dialog)
    qtbot.waitUntil(lambda: gui.window.banner.text() == DATABASE_BACK, timeout=5000)
    qtbot.waitUntil(lambda: DATABASE_DOWN not in dialog.error_text())
    assert "answers again" in dialog.error_text()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Locked Out")
    assert gui.application.patients.list_patients().total == 1


def test_a_delete_waiting_for_a_locked_database_says_so_is_asked_once_and_says_it_failed(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window said nothing while the delete waited (up to 30 s), let it be asked
    and confirmed again, and once refused said only that the database does not answer,
    then that it answers again: not that the patient was still there."""
    from ophthai_desktop.ui.messages import DATABASE_BACK

    app, banner = gui.application, gui.window.banner
    patient = app.patients.create_patient({"name": "Kept"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    who = f"Kept ({patient.id})"
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=1000):
        gui.window.delete_patient_action.trigger()
        first = gui.patients.confirm
        assert isinstance(first, QMessageBox)
        first.property("yesButton").click()
        assert banner.text() == f"{who} is being deleted…"
        gui.window.delete_patient_action.trigger()  # again, while it waits
        assert gui.patients.confirm is first and not first.isVisible()  # not asked again
        qtbot.waitUntil(lambda: f"{who} was not deleted" in banner.text(), timeout=5000)
    qtbot.waitUntil(lambda: banner.text().startswith(DATABASE_BACK), timeout=5000)
    assert f"{who} was not deleted: delete again." in banner.text()
    assert app.patients.list_patients().total == 1
    assert gui.patient_page.name.text() == "Kept"


def test_reads_go_on_while_changes_wait_for_a_locked_database(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two changes waiting on another program's lock held both threads of the window's
    pool: opening a patient waited behind them (up to 30 s each), though the lock does
    not stop reads. Changes wait on a thread of their own; reads go on."""
    from datetime import datetime

    app = gui.application
    actor = Actor("t", "gui")
    first = app.patients.create_patient({"name": "First"}, actor=actor)
    second = app.patients.create_patient({"name": "Second"}, actor=actor)
    note = app.notifications.create_notification("Routine", actor=actor)
    panel = gui.notifications_panel
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1)
    open_patient(qtbot, gui, first.id)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=3000):
        started = time.monotonic()
        gui.analysis_view.schedule_requested.emit(datetime.now().astimezone() + timedelta(days=3))
        panel.mark_read_requested.emit(note.id)
        open_patient(qtbot, gui, second.id)  # read while both changes wait
        assert time.monotonic() - started < 2.0
        qtbot.waitUntil(lambda: "not marked read" in gui.window.banner.text(), timeout=10_000)
    qtbot.waitUntil(lambda: not gui.tasks.busy, timeout=5000)
    assert app.patients.get_patient(first.id).appointment_date is None  # refused
