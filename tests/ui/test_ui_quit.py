"""Quitting while changes the clinician made wait for the database: asked first, and
nothing dropped without a word (a verdict or booking waiting behind another program's
lock was lost when the clinician quit)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QAbstractButton, QDialogButtonBox, QMessageBox
from pytestqt.qtbot import QtBot
from shiboken6 import isValid as shiboken_valid

from ophthai_desktop.core.errors import DatabaseUnavailable
from ophthai_desktop.core.records import Actor
from ophthai_desktop.ui.controllers.quit_guard import QUIT_ONCE_SAVED, QUIT_WITHOUT_SAVING
from ophthai_desktop.ui.session import GuiSession
from tests.support.images import png_bytes
from tests.ui.conftest import drop_files, open_patient
from tests.ui.test_ui_patients import _database_locked_by_another_program

ACTOR = Actor("t", "gui")


def _quits(gui: GuiSession) -> list[bool]:
    quits: list[bool] = []
    gui.quit_requested.connect(lambda: quits.append(True))
    return quits


def _change_held(gui: GuiSession, name: str, release: threading.Event) -> None:
    """A change sent as the window sends one (the changes' thread), that creates
    patient ``name`` once ``release`` is set: a change waiting for a locked database."""

    def create() -> None:
        assert release.wait(10)
        gui.application.patients.create_patient({"name": name}, actor=ACTOR)

    gui.tasks.submit(create, change=True)


def _change_refused(gui: GuiSession, release: threading.Event) -> list[BaseException]:
    """A change sent as the window sends one, refused (the database locked) once
    ``release`` is set; its error lands in the list returned."""

    def refused() -> None:
        assert release.wait(10)
        raise DatabaseUnavailable("database is locked")

    errors: list[BaseException] = []
    gui.tasks.submit(refused, on_error=errors.append, change=True)
    return errors


def _change_queued(gui: GuiSession, name: str) -> None:
    gui.tasks.submit(
        lambda: gui.application.patients.create_patient({"name": name}, actor=ACTOR),
        change=True,
    )


def _names(gui: GuiSession) -> set[str]:
    return {p.name for p in gui.application.patients.list_patients(limit=100).items}


def _question(gui: GuiSession, qtbot: QtBot) -> QMessageBox:
    qtbot.waitUntil(lambda: gui.quit_guard.question is not None)
    box = gui.quit_guard.question
    assert box is not None and box.isVisible()
    return box


def _button(box: QMessageBox, text: str) -> QAbstractButton:
    (button,) = [b for b in box.buttons() if b.text() == text]
    return button


def test_quit_with_a_change_waiting_asks_and_quits_once_it_is_saved(
    gui: GuiSession, qtbot: QtBot
) -> None:
    quits, release = _quits(gui), threading.Event()
    _change_held(gui, "Held Verdict", release)
    _change_queued(gui, "Queued Booking")
    assert gui.tasks.saving == 2
    gui.window.quit_action.trigger()
    box = _question(gui, qtbot)
    assert box.text() == "2 changes you made are not saved yet."
    assert "lost" in box.informativeText()
    assert quits == [] and gui.window.isVisible()
    _button(box, QUIT_ONCE_SAVED).click()
    assert gui.window.status.message.full_text() == "Quitting once your changes are saved…"
    assert quits == []
    release.set()
    qtbot.waitUntil(lambda: quits == [True], timeout=10_000)
    assert {"Held Verdict", "Queued Booking"} <= _names(gui)


def test_cancel_keeps_the_window_and_the_close_button_asks_too(
    gui: GuiSession, qtbot: QtBot
) -> None:
    quits, release = _quits(gui), threading.Event()
    _change_held(gui, "Held", release)
    try:
        gui.window.close()  # no tray: closing the window quits
        box = _question(gui, qtbot)
        box.button(QMessageBox.StandardButton.Cancel).click()
        qtbot.waitUntil(lambda: not box.isVisible())
        assert gui.window.isVisible() and quits == []
    finally:
        release.set()
    qtbot.waitUntil(lambda: gui.tasks.saving == 0)
    assert quits == []  # Cancel: the change saved, the window stays
    gui.window.quit_action.trigger()  # nothing unsaved: no question
    assert quits == [True]


def test_a_change_refused_while_waiting_to_quit_calls_the_quit_off(
    gui: GuiSession, qtbot: QtBot
) -> None:
    quits, release = _quits(gui), threading.Event()
    errors = _change_refused(gui, release)
    gui.window.quit_action.trigger()
    _button(_question(gui, qtbot), QUIT_ONCE_SAVED).click()
    release.set()
    qtbot.waitUntil(lambda: bool(errors))
    said = gui.window.status.message
    qtbot.waitUntil(lambda: said.full_text() == "Not quitting: 1 change could not be saved.")
    assert quits == [] and not gui.quit_guard.waiting


def test_quit_without_saving_drops_the_queued_change_and_logs_how_many(
    gui: GuiSession, qtbot: QtBot, caplog: pytest.LogCaptureFixture
) -> None:
    quits, release = _quits(gui), threading.Event()
    _change_held(gui, "Held", release)
    _change_queued(gui, "Queued Secret Name")
    gui.window.quit_action.trigger()
    _button(_question(gui, qtbot), QUIT_WITHOUT_SAVING).click()
    assert quits == [True]
    threading.Timer(0.3, release.set).start()  # the running one ends during shutdown
    with caplog.at_level(logging.WARNING, logger="ophthai_desktop.ui.tasks"):
        gui.shutdown()
    assert "Queued Secret Name" not in _names(gui)
    assert "Held" in _names(gui)  # running: it could not be stopped
    assert "1 change(s) or import(s) the clinician made were not saved" in caplog.text
    assert "Secret" not in caplog.text


def test_a_signal_s_quit_asks_nothing_and_lets_the_queued_changes_be_saved(
    gui: GuiSession, qtbot: QtBot
) -> None:
    """SIGTERM at log-out: nobody may answer a question; the changes are given the
    shutdown's deadline (the queued one was dropped)."""
    quits, release = _quits(gui), threading.Event()
    _change_held(gui, "Held", release)
    _change_queued(gui, "Queued")
    gui.quit_at_once()
    assert quits == [True] and gui.quit_guard.question is None
    threading.Timer(0.3, release.set).start()
    gui.shutdown()
    assert {"Held", "Queued"} <= _names(gui)


def test_quit_during_an_import_waiting_for_a_locked_database_asks_first(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Images dropped on a patient, stored once the database answers: quitting
    meanwhile asked nothing and the import was dropped."""
    patient = gui.application.patients.create_patient({"name": "Importer"}, actor=ACTOR)
    open_patient(qtbot, gui, patient.id)
    image = tmp_path / "scan.png"
    image.write_bytes(png_bytes((64, 48)))
    quits = _quits(gui)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=8000):
        assert drop_files(gui.window, [image])
        assert gui.tasks.saving == 1
        gui.window.quit_action.trigger()
        _button(_question(gui, qtbot), QUIT_ONCE_SAVED).click()
        assert quits == []
    qtbot.waitUntil(lambda: quits == [True], timeout=15_000)
    assert len(gui.application.patients.list_scans(patient.id)) == 1


def test_quit_once_saved_stays_when_the_import_s_images_are_refused(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The import's task ends without an error when its images are refused (each is
    named in the banner): counted as saved, the window quit by itself, the images not
    added and the banner saying so gone with it."""
    patient = gui.application.patients.create_patient({"name": "Importer"}, actor=ACTOR)
    open_patient(qtbot, gui, patient.id)
    image = tmp_path / "scan.png"
    image.write_bytes(png_bytes((64, 48)))
    quits = _quits(gui)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=1500):
        assert drop_files(gui.window, [image])
        gui.window.quit_action.trigger()
        _button(_question(gui, qtbot), QUIT_ONCE_SAVED).click()
        qtbot.waitUntil(lambda: gui.tasks.saving == 0, timeout=15_000)
    said = gui.window.status.message
    qtbot.waitUntil(lambda: said.full_text() == "Not quitting: 1 change could not be saved.")
    assert quits == [] and not gui.quit_guard.waiting
    assert "No image was added" in gui.window.banner.message()
    assert not gui.application.patients.list_scans(patient.id)


def test_quit_once_saved_after_the_change_was_refused_meanwhile_stays(
    gui: GuiSession, qtbot: QtBot
) -> None:
    """The change refused while the question was open: "Quit once saved" then quit at
    once (nothing left to wait for), the refusal's message gone with the window."""
    quits, release = _quits(gui), threading.Event()
    errors = _change_refused(gui, release)
    gui.window.quit_action.trigger()
    box = _question(gui, qtbot)
    release.set()
    qtbot.waitUntil(lambda: gui.tasks.saving == 0)
    assert errors
    _button(box, QUIT_ONCE_SAVED).click()
    assert gui.window.status.message.full_text() == "Not quitting: 1 change could not be saved."
    assert quits == [] and not gui.quit_guard.waiting
    gui.window.quit_action.trigger()  # asked again: nothing waits, nothing is asked
    assert quits == [True]


def test_a_change_whose_result_could_not_be_shown_is_not_left_counted(
    gui: GuiSession, qtbot: QtBot
) -> None:
    """A callback that fails (a defect) left its change counted as unsaved for good:
    every later Quit asked, and "Quit once saved" never quit."""
    quits = _quits(gui)

    def show(_result: object) -> None:
        raise RuntimeError("a defect in the callback")

    with qtbot.capture_exceptions() as raised:
        gui.tasks.submit(lambda: None, show, change=True)
        qtbot.waitUntil(lambda: bool(raised))
    qtbot.waitUntil(lambda: gui.tasks.saving == 0)
    gui.window.quit_action.trigger()
    assert quits == [True] and gui.quit_guard.question is None


def test_quit_during_an_import_s_slow_read_does_not_blame_the_database(
    gui: GuiSession, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Images read from a slow share, the database answering: the question said the
    database had not answered (another program may be using it), sending the clinician
    after a program that was not there."""
    from ophthai_desktop.ui.controllers import imports

    patient = gui.application.patients.create_patient({"name": "Importer"}, actor=ACTOR)
    open_patient(qtbot, gui, patient.id)
    image = tmp_path / "scan.png"
    image.write_bytes(png_bytes((64, 48)))
    read, check_file = threading.Event(), imports.check_file

    def slow_check(path: Path, **limits: int) -> imports.CheckedFile:
        assert read.wait(10)  # the share answers once the question was seen
        return check_file(path, **limits)

    monkeypatch.setattr(imports, "check_file", slow_check)
    quits = _quits(gui)
    try:
        assert drop_files(gui.window, [image])
        gui.window.quit_action.trigger()
        box = _question(gui, qtbot)
        assert box.text() == "1 change you made is not saved yet."
        assert "database has not answered" not in box.informativeText()
        assert "import" in box.informativeText()
        _button(box, QUIT_ONCE_SAVED).click()
    finally:
        read.set()
    qtbot.waitUntil(lambda: quits == [True], timeout=10_000)
    assert len(gui.application.patients.list_scans(patient.id)) == 1


def test_the_question_goes_and_the_window_quits_once_the_change_is_saved_meanwhile(
    gui: GuiSession, qtbot: QtBot
) -> None:
    """Saved while the question was open, it went on saying the change was not saved
    (and would be lost), until answered: a clinician reading it could send the verdict
    again. The Quit asked for goes ahead, as it does with nothing unsaved."""
    quits, release = _quits(gui), threading.Event()
    _change_held(gui, "Held Verdict", release)
    gui.window.quit_action.trigger()
    box = _question(gui, qtbot)
    release.set()
    qtbot.waitUntil(lambda: quits == [True])
    assert gui.quit_guard.question is None
    assert not shiboken_valid(box) or not box.isVisible()
    assert "Held Verdict" in _names(gui)


def test_quit_asks_again_after_the_question_was_answered_cancel(
    gui: GuiSession, qtbot: QtBot
) -> None:
    """The answered question is deleted; the guard kept it and asked the deleted box
    whether it was shown: the second Quit raised and did nothing, neither asked nor
    quit, as long as the change waited."""
    quits, release = _quits(gui), threading.Event()
    _change_held(gui, "Held", release)
    try:
        gui.window.quit_action.trigger()
        first = _question(gui, qtbot)
        first.button(QMessageBox.StandardButton.Cancel).click()
        qtbot.waitUntil(lambda: gui.quit_guard.question is not first or not shiboken_valid(first))
        gui.window.quit_action.trigger()
        second = _question(gui, qtbot)
        _button(second, QUIT_WITHOUT_SAVING).click()
        assert quits == [True]
    finally:
        release.set()


def _new_patient_form_with_a_dropped_image(gui: GuiSession, qtbot: QtBot, tmp_path: Path) -> None:
    image = tmp_path / "OCTA_OD_0001.png"
    image.write_bytes(png_bytes((64, 48)))
    assert drop_files(gui.window, [image])  # no patient open: the new-patient form
    qtbot.waitUntil(lambda: gui.patients.dialog is not None)
    qtbot.waitUntil(lambda: gui.tasks.saving == 1)  # the check delivered, the form open


def test_quit_while_the_new_patient_form_holds_dropped_images_asks_first(
    gui: GuiSession, qtbot: QtBot, tmp_path: Path
) -> None:
    """Once the images' check ended, nothing counted as unsaved: Quit from the tray
    quit at once, the form and its images lost without a word. Now it asks, and
    "Quit once saved" quits once the patient is created with them."""
    _new_patient_form_with_a_dropped_image(gui, qtbot, tmp_path)
    quits = _quits(gui)
    gui.quit()  # the tray's Quit
    box = _question(gui, qtbot)
    assert box.text() == "1 change you made is not saved yet."
    _button(box, QUIT_ONCE_SAVED).click()
    assert quits == []
    dialog = gui.patients.dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.keyClicks(dialog.name, "Walk-in")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: quits == [True], timeout=10_000)
    (patient,) = gui.application.patients.list_patients(limit=10).items
    assert len(gui.application.patients.list_scans(patient.id)) == 1


def test_the_new_patient_form_cancelled_no_longer_holds_quit(
    gui: GuiSession, qtbot: QtBot, tmp_path: Path
) -> None:
    _new_patient_form_with_a_dropped_image(gui, qtbot, tmp_path)
    dialog = gui.patients.dialog
    assert dialog is not None
    dialog.reject()  # the clinician's own choice: nothing left to save
    qtbot.waitUntil(lambda: gui.tasks.saving == 0)
    quits = _quits(gui)
    gui.quit()
    assert quits == [True] and gui.quit_guard.question is None


def test_a_signal_s_quit_with_the_new_patient_form_open_logs_the_images_lost(
    gui: GuiSession, qtbot: QtBot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _new_patient_form_with_a_dropped_image(gui, qtbot, tmp_path)
    gui.quit_at_once()
    with caplog.at_level(logging.WARNING, logger="ophthai_desktop.ui.tasks"):
        gui.shutdown()
    assert "1 change(s) or import(s) the clinician made were not saved" in caplog.text


def test_a_signal_s_quit_during_an_import_s_check_logs_the_import_not_saved(
    gui: GuiSession,
    qtbot: QtBot,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The check ends during shutdown, its storing step never sent (no callback runs
    then): the check was counted as saved and the log said nothing was lost."""
    from ophthai_desktop.ui.controllers import imports

    patient = gui.application.patients.create_patient({"name": "Importer"}, actor=ACTOR)
    open_patient(qtbot, gui, patient.id)
    image = tmp_path / "scan.png"
    image.write_bytes(png_bytes((64, 48)))
    read, check_file = threading.Event(), imports.check_file

    def slow_check(path: Path, **limits: int) -> imports.CheckedFile:
        assert read.wait(10)
        return check_file(path, **limits)

    monkeypatch.setattr(imports, "check_file", slow_check)
    assert drop_files(gui.window, [image])
    gui.quit_at_once()
    threading.Timer(0.3, read.set).start()  # the check ends during shutdown
    with caplog.at_level(logging.WARNING, logger="ophthai_desktop.ui.tasks"):
        gui.shutdown()
    assert not gui.application.patients.list_scans(patient.id)
    assert "1 change(s) or import(s) the clinician made were not saved" in caplog.text


def test_the_slow_tasks_and_the_changes_share_one_shutdown_deadline(
    gui: GuiSession,
    qtbot: QtBot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each runner waited its own deadline, one after the other: a slow task that never
    ends (a download) doubled the time quitting took. A change still held once the one
    deadline has passed is given up on (and counted) instead of waited for again."""
    from ophthai_desktop.ui import session

    monkeypatch.setattr(session, "SHUTDOWN_WAIT_MS", 2000)
    slow_release, change_release = threading.Event(), threading.Event()
    gui.slow_tasks.submit(lambda: slow_release.wait(30))  # runs past the deadline
    _change_held(gui, "Held", change_release)
    qtbot.waitUntil(lambda: gui.slow_tasks.busy)
    gui.quit_at_once()
    # Past the one deadline (2 s), well within two of them (4 s).
    threading.Timer(3.0, change_release.set).start()
    try:
        with caplog.at_level(logging.WARNING, logger="ophthai_desktop.ui.tasks"):
            gui.shutdown()
    finally:
        slow_release.set()
        change_release.set()
    assert "1 change(s) or import(s) the clinician made were not saved" in caplog.text
