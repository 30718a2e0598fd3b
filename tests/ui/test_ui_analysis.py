"""The analysis view: streamed reasoning, the result card, validation and scheduling."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QDate, QDateTime, QEvent, QObject, QPoint, QRect, Qt, QTime
from PySide6.QtGui import QFocusEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDateTimeEdit,
    QLineEdit,
    QMessageBox,
    QScrollArea,
    QWidget,
)
from pytestqt.exceptions import TimeoutError as WaitTimedOut
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.errors import ModelUnavailable, StorageError
from ophthai_desktop.core.inference import ParsedAnswer
from ophthai_desktop.core.records import Actor, AnalysisRecord
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.ui import day
from ophthai_desktop.ui.controllers import analysis as analysis_controller
from ophthai_desktop.ui.display import local_datetime
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views import analysis as analysis_view
from ophthai_desktop.ui.views.analysis import (
    EARLIEST_S,
    MAX_YEARS_AHEAD,
    AnalysisView,
    ResultCard,
)
from tests.support.images import png_bytes
from tests.support.scripted_engine import DME, ScriptedEngine
from tests.ui.conftest import Maker, drop_files, nothing_more_happens, open_patient


def _patient_with_scan(gui: GuiSession, name: str = "Streamed") -> str:
    return gui.application.patients.create_patient(
        {"name": name}, actor=Actor("t", "gui"), image=NewImage(png_bytes((64, 48)))
    ).id


def test_tiny_model_streams_then_shows_the_parse_failure(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """The real worker and engine on the random-weight checkpoint: its byte soup streams
    into the reasoning pane as it is written, then the card says it did not parse and
    shows the raw answer."""
    gui = make_gui(model_path=tiny_checkpoint, max_new_tokens=48, device="cpu")
    view = gui.analysis_view
    snapshots: list[tuple[int, bool]] = []
    # Connected after the controller: sees the view as each batch left it.
    gui.bridge.analysis_progressed.connect(
        lambda *_: snapshots.append((len(view.reasoning.toPlainText()), view.card.isVisible()))
    )
    patient = gui.application.patients.create_patient({"name": "Tiny"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    image = tmp_path / "oct_OD.png"
    image.write_bytes(png_bytes((64, 48)))
    assert drop_files(gui.window, [image])

    qtbot.waitUntil(lambda: view.card.isVisible(), timeout=90_000)
    assert any(length > 0 and not card for length, card in snapshots), snapshots
    analysis = view.analysis
    assert analysis is not None and analysis.parse_status == "parse_failed"
    assert view.card.classification.text() == "The model's answer could not be read"
    assert view.card.badge.text() == "PARSE FAILED · PRELIMINARY"
    assert view.card.raw.isVisibleTo(view.card)
    assert view.card.raw.toPlainText() == (analysis.answer_text or "(the model wrote no answer)")
    view.card.copy.click()
    qtbot.waitUntil(lambda: view.card.copy.text() == "Copied")
    copied = QGuiApplication.clipboard().text()
    assert copied.startswith(
        f"OphthAI analysis #{analysis.id} of patient {patient.id} ({analysis.model_id})\n"
        "The model's answer could not be read ["
    )
    assert view.card.raw.toPlainText() in copied
    assert "Device: cpu\nPrecision: float32\nQuantisation: none" in copied
    assert "Answer read as a result: no (parse failed)" in copied
    assert view.reasoning.toPlainText().strip() == analysis.reasoning_text.strip()
    assert view.state.property("kind") == "error"
    assert gui.window.status.model.text() == "Model: ready · cpu"
    jobs = gui.jobs_panel.model
    row = jobs.get(analysis.job_id or -1)
    assert row is not None and row.state == "done" and row.tokens == 48
    # The patient's new step comes with PatientUpdated, published just after
    # AnalysisFinished (which showed the card): it may be delivered a moment later.
    qtbot.waitUntil(lambda: gui.patient_page.stepper.current_name() == "Validation")


def test_a_copy_that_cannot_be_recorded_copies_nothing(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise StorageError("the database is locked")

    monkeypatch.setattr(gui.application.audit, "record_action", refuse)
    QGuiApplication.clipboard().setText("what was there")
    view.card.copy.click()

    qtbot.waitUntil(lambda: "the database is locked" in view.notice.text())
    assert QGuiApplication.clipboard().text() == "what was there"
    assert view.card.copy.text() == "Copy result"


def test_a_parsed_result_is_validated_and_scheduled(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    open_patient(qtbot, gui, patient_id)
    assert view.clinician.text() == "Dr. Test"  # settings.user_name

    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    card = view.card
    assert card.classification.text() == "Diabetic Macular Edema"
    assert card.confidence.value() == 87
    assert card.findings.text() == "• intraretinal fluid"
    assert card.recommendation.text() == "Refer to retina clinic"
    assert card.explanation.text() == "Cysts in the outer plexiform layer."
    assert card.badge.text() == "PRELIMINARY"
    assert not card.raw.isVisibleTo(card)
    assert "Looking at the fovea." in view.reasoning.toPlainText()
    assert not view.reasoning.isVisibleTo(view)  # collapsed once the card is there
    view.reasoning_toggle.click()
    assert view.reasoning.isVisibleTo(view)

    assert not view.provenance.isVisibleTo(view)
    view.provenance_toggle.click()  # one click away
    assert view.provenance.isVisibleTo(view)
    provenance = view.provenance_text()
    assert "Model: scripted" in provenance and "Prompt version: test-v1" in provenance
    assert "Device: cpu\nPrecision: float32\nQuantisation: none" in provenance
    assert "Max new tokens: 64 tokens" in provenance  # a label and a unit, not the key
    card.copy.click()  # for the clinician's notes: what the card says, and where from
    qtbot.waitUntil(lambda: card.copy.text() == "Copied")
    shown = view.analysis
    assert shown is not None
    assert QGuiApplication.clipboard().text() == (
        f"OphthAI analysis #{shown.id} of patient {patient_id} (scripted)\n"
        "Diabetic Macular Edema [PRELIMINARY]\n"
        "Confidence: 87%\n"
        "Findings: • intraretinal fluid\n"
        "Recommendation: Refer to retina clinic\n"
        "Explanation: Cysts in the outer plexiform layer.\n"
        "Preliminary: a clinician has not validated this result yet.\n\n" + provenance
    )
    exports = gui.application.audit.list_events(entity_type="analysis", entity_id=str(shown.id))
    assert [(e.action, e.actor, e.details) for e in exports.items] == [
        ("export", "Dr. Test", {"patient_id": patient_id, "to": "clipboard"})
    ]
    qtbot.waitUntil(lambda: card.copy.text() == "Copy result", timeout=5_000)
    page = gui.patient_page
    qtbot.waitUntil(lambda: page.status.text() == "Critical")  # abnormal finding
    assert page.stepper.current_name() == "Validation"

    view.clinician.setText("Dr. Jones")
    qtbot.keyClicks(view.notes, "Agree; refer.")
    view.approve.click()
    qtbot.waitUntil(lambda: card.badge.text() == "APPROVED")
    assert "Approved by Dr. Jones" in card.validated.text()
    assert "Agree; refer." in card.validated.text()
    qtbot.waitUntil(lambda: page.stepper.current_name() == "Scheduling")
    stored = gui.application.patients.get_patient(patient_id)
    assert stored.validation_status == "approved" and stored.validated_by == "Dr. Jones"

    when = QDateTime.currentDateTime().addDays(14)
    view.when.setDateTime(when)
    view.schedule.click()
    qtbot.waitUntil(lambda: page.stepper.current_name() == "Complete")
    appointment = gui.application.patients.get_patient(patient_id).appointment_date
    assert appointment is not None
    qtbot.waitUntil(lambda: "booked" in view.notice.text())
    assert view.notice.text() == f"The follow-up appointment is booked for {view.booked_time()}."
    assert abs(appointment - when.toPython().astimezone()) < timedelta(minutes=1)
    assert "Scheduled for" in view.appointment.text()
    qtbot.waitUntil(lambda: "booked" in view.notice.text())


def test_cancelling_an_appointment_booked_before_a_verdict_says_the_step_stays(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """A follow-up booked before any verdict (the patient not yet analysed, or their
    unreadable answer rejected) completes nothing, and cancelling it moves nothing: the
    question said the patient went back to the Scheduling step, from Analysis."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    gui.application.patients.schedule_appointment(
        patient_id, datetime.now(UTC) + timedelta(days=7), actor=Actor("t", "gui")
    )
    open_patient(qtbot, gui, patient_id)
    qtbot.waitUntil(lambda: view.cancel_appointment.isVisibleTo(view))
    assert gui.patient_page.stepper.current_name() == "Analysis"

    view.cancel_appointment.click()

    box = gui.analysis.confirm
    assert isinstance(box, QMessageBox)
    assert "stays at the Analysis step" in box.text() and "Scheduling" not in box.text()
    box.property("noButton").click()


def test_a_change_heard_while_a_patient_is_read_waits_for_them_to_open(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Opening B while the reads were busy, a booking for B heard before B's read came
    back showed B on the page and B's Cancel appointment in the tab, while the tab still
    belonged to A: pressing it cancelled A's appointment."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    patients = gui.application.patients
    actor = Actor("t", "gui")
    first = _patient_with_scan(gui, "First")
    second = _patient_with_scan(gui, "Second")
    open_patient(qtbot, gui, first)
    release = threading.Event()
    for _ in range(8):  # every reader busy (the pool has fewer threads)
        gui.tasks.submit(lambda: release.wait(10), lambda _r: None)
    try:
        gui.patients.open_patient(second)
        with qtbot.waitSignal(  # heard (by the window's controllers first)
            gui.bridge.patient_updated,
            check_params_cb=lambda record: record.appointment_date is not None,
            timeout=10_000,
        ):
            patients.schedule_appointment(
                second, datetime.now(UTC) + timedelta(days=3), actor=actor
            )
        assert gui.patient_page.patient is not None
        assert gui.patient_page.patient.id == first
        assert not view.cancel_appointment.isVisibleTo(view)
    finally:
        release.set()
    qtbot.waitUntil(lambda: view.cancel_appointment.isVisibleTo(view))
    assert gui.patient_page.patient is not None and gui.patient_page.patient.id == second


def test_a_booked_appointment_is_cancelled_from_the_window(qtbot: QtBot, make_gui: Maker) -> None:
    """A follow-up booked can be called off where it was booked (the window had no way
    to, only the API's PATCH): the page and the list say "not scheduled", and a complete
    patient goes back to scheduling."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    page = gui.patient_page
    patient_id = _patient_with_scan(gui)
    open_patient(qtbot, gui, patient_id)
    assert not view.cancel_appointment.isVisibleTo(view)  # nothing booked to cancel
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    view.approve.click()
    qtbot.waitUntil(lambda: page.stepper.current_name() == "Scheduling")
    view.when.setDateTime(QDateTime.currentDateTime().addDays(7))
    view.schedule.click()
    qtbot.waitUntil(lambda: page.stepper.current_name() == "Complete")
    assert view.cancel_appointment.isVisibleTo(view)

    view.cancel_appointment.click()  # asked first: a stray click loses no booking
    box = gui.analysis.confirm
    assert isinstance(box, QMessageBox) and "Scheduling step" in box.text()
    box.property("noButton").click()
    nothing_more_happens(qtbot, gui)
    assert gui.application.patients.get_patient(patient_id).appointment_date is not None
    assert view.cancel_appointment.isVisibleTo(view)

    view.cancel_appointment.click()
    box = gui.analysis.confirm
    assert isinstance(box, QMessageBox)
    box.property("yesButton").click()
    qtbot.waitUntil(lambda: page.appointment.text() == "not scheduled")
    assert gui.application.patients.get_patient(patient_id).appointment_date is None
    assert view.appointment.text() == "Not scheduled."
    assert page.stepper.current_name() == "Scheduling"
    assert not view.cancel_appointment.isVisibleTo(view)
    qtbot.waitUntil(lambda: "cancelled" in view.notice.text())


def test_the_cancel_appointment_question_does_not_offer_a_plain_cancel(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The question "Cancel appointment?" was answered with "Cancel appointment" or
    "Cancel" (found by review): a clinician meaning to call it off could press "Cancel",
    keep the booking and believe it gone. The other answer says what it does, and
    Escape keeps it."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    actor = Actor("t", "gui")
    booked = datetime.now(UTC) + timedelta(days=9)
    patients = gui.application.patients
    patient_id = patients.create_patient({"name": "Booked"}, actor=actor).id
    patients.update_patient(patient_id, {"appointment_date": booked}, actor=actor)
    open_patient(qtbot, gui, patient_id)

    view.cancel_appointment.click()
    box = gui.analysis.confirm
    assert isinstance(box, QMessageBox)
    assert sorted(button.text() for button in box.buttons()) == [
        "Cancel appointment",
        "Keep appointment",
    ]
    assert box.defaultButton().text() == "Keep appointment"
    qtbot.keyClick(box, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not box.isVisible())
    nothing_more_happens(qtbot, gui)
    assert patients.get_patient(patient_id).appointment_date is not None
    assert view.cancel_appointment.isVisibleTo(view)


def test_the_picker_starts_at_the_booked_appointment(qtbot: QtBot, make_gui: Maker) -> None:
    """A patient with a follow-up to come opens with the picker at its time, so that
    moving it starts there; one without (or whose day has passed) at tomorrow 09:00."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    actor = Actor("t", "gui")
    booked = (datetime.now(UTC) + timedelta(days=9)).replace(second=0, microsecond=0)
    patients = gui.application.patients
    with_booking = patients.create_patient({"name": "Booked"}, actor=actor).id
    patients.update_patient(with_booking, {"appointment_date": booked}, actor=actor)
    without = patients.create_patient({"name": "Free"}, actor=actor).id

    open_patient(qtbot, gui, with_booking)
    assert view.when.dateTime().toSecsSinceEpoch() == int(booked.timestamp())

    open_patient(qtbot, gui, without)
    tomorrow = QDateTime.currentDateTime().addDays(1)
    assert view.when.dateTime().date() == tomorrow.date()
    assert view.when.dateTime().time() == QTime(9, 0)


def test_schedule_says_the_time_and_whether_it_moved_the_appointment(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Schedule again said "booked" as the first time did, with no time, and a booking
    before a verdict did not say that the patient is not complete yet."""
    patient = gui.application.patients.create_patient({"name": "Early"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    when = QDateTime.currentDateTime().addDays(3)
    view.when.setDateTime(when)
    view.schedule.click()
    qtbot.waitUntil(lambda: "booked" in view.notice.text())
    first = view.booked_time()
    assert view.notice.text() == f"The follow-up appointment is booked for {first}."
    assert view.appointment.text() == (  # beside the booking, not only atop the tab
        f"Scheduled for {first}. The patient's workflow completes once a result is validated."
    )

    view.when.setDateTime(when.addDays(2))
    view.schedule.click()
    qtbot.waitUntil(lambda: "moved" in view.notice.text())
    assert view.booked_time() != first
    assert view.notice.text().startswith(
        f"The follow-up appointment is moved to {view.booked_time()}."
    )


def _opened_hours_ago(view: AnalysisView, hours: int) -> None:
    """The picker as the page set it when the patient was opened ``hours`` ago."""
    view.when.setMinimumDateTime(QDateTime.currentDateTime().addSecs(-hours * 3600 - EARLIEST_S))


def _focus(widget: QWidget) -> None:
    QApplication.sendEvent(
        widget, QFocusEvent(QEvent.Type.FocusIn, Qt.FocusReason.MouseFocusReason)
    )


def test_the_picker_s_earliest_time_is_now_when_it_gets_the_focus(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A page left open for hours let a time that had passed since be picked (the
    earliest time was set when the patient was opened), and the server refused it."""
    patient = gui.application.patients.create_patient({"name": "Open"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    _opened_hours_ago(view, 3)
    shown = view.when.dateTime()

    _focus(view.when)

    earliest = view.when.minimumDateTime()
    # Now less EARLIEST_S, at the start of that minute (the one shown).
    assert earliest >= QDateTime.currentDateTime().addSecs(-EARLIEST_S - 60 - 5)
    assert view.when.dateTime() == shown  # tomorrow 09:00 still
    view.when.setDateTime(QDateTime.currentDateTime().addSecs(-3600))
    assert view.when.dateTime() == earliest  # an hour ago cannot be picked


@pytest.mark.parametrize(
    ("key", "modifier"),
    [
        (Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier),
        (Qt.Key.Key_F4, Qt.KeyboardModifier.NoModifier),
    ],
)
def test_the_picker_s_earliest_time_is_now_when_its_calendar_opens_by_keys(
    qtbot: QtBot, gui: GuiSession, key: Qt.Key, modifier: Qt.KeyboardModifier
) -> None:
    """The picker kept the focus for days (the page left open): its calendar opened by
    the keyboard offered the days since passed, as the focus had come before them."""
    view = _picker_in_focus(qtbot, gui, "Keys")
    _opened_hours_ago(view, 72)  # the focus came three days ago
    calendar = view.when.calendarWidget()

    qtbot.keyClick(view.when, key, modifier)

    qtbot.waitUntil(calendar.isVisible)
    earliest = QDateTime.currentDateTime().addSecs(-EARLIEST_S - 60 - 5)  # its minute's start
    assert view.when.minimumDateTime() >= earliest
    assert calendar.minimumDate() >= earliest.date()  # the days since are not offered
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not calendar.isVisible())


def test_a_time_shown_that_has_passed_is_not_moved_without_a_word(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """The picker at a time that has passed since the page was opened: the focus does
    not move it silently to another; Schedule with it says why it is refused."""
    patient = gui.application.patients.create_patient({"name": "Late"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    _opened_hours_ago(view, 3)
    passed = QDateTime.currentDateTime().addSecs(-3600)
    view.when.setDateTime(passed)

    _focus(view.when)
    assert view.when.dateTime() == passed
    view.schedule.click()

    qtbot.waitUntil(lambda: "in the past" in view.schedule_error_text())
    assert gui.application.patients.get_patient(patient.id).appointment_date is None


def test_an_appointment_booked_past_the_horizon_is_shown_as_booked(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """One booked by a client further ahead than the picker's horizon was shown at the
    horizon without a word, and Schedule moved it there."""
    gui = make_gui(engine=ScriptedEngine(DME))
    actor = Actor("t", "gui")
    patients = gui.application.patients
    patient_id = patients.create_patient({"name": "Far"}, actor=actor).id
    booked = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(
        days=365 * (MAX_YEARS_AHEAD + 2)
    )
    patients.update_patient(patient_id, {"appointment_date": booked}, actor=actor)
    view = gui.analysis_view

    open_patient(qtbot, gui, patient_id)

    assert view.when.dateTime().toSecsSinceEpoch() == int(booked.timestamp())
    assert view.booked_time() in view.appointment.text()
    without = patients.create_patient({"name": "Near"}, actor=actor).id
    open_patient(qtbot, gui, without)  # the next patient's horizon is the usual one
    assert view.when.maximumDateTime().date().year() == datetime.now().year + MAX_YEARS_AHEAD


def test_an_ungradable_result_asks_for_the_scan_again(qtbot: QtBot, make_gui: Maker) -> None:
    """The model answers "Ungradable" for an image it cannot read: the card shows that
    answer, and the view says what to do about it (not only "please validate")."""
    ungradable = ParsedAnswer(
        classification="Ungradable (poor image quality)",
        confidence=90.0,
        explanation="Heavy media opacity.",
    )
    gui = make_gui(engine=ScriptedEngine(ungradable))
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))

    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())

    assert view.card.classification.text() == "Ungradable (poor image quality)"
    assert view.card.badge.text() == "PRELIMINARY"
    assert view.state.text() == (
        "The model could not grade this image: take the scan again or analyse another "
        "image. Preliminary result: please validate."
    )


@pytest.mark.parametrize(
    ("confidence", "shown"), [(87.0, "87%"), (72.5, "72.5%"), (0.5, "0.5%"), (99.6, "99.6%")]
)
def test_the_card_shows_the_confidence_as_stored(
    qtbot: QtBot, confidence: float, shown: str
) -> None:
    """The stored confidence, as the API gives it and the notification rounds it: a 0.5%
    (the model wrote "0.5%") was shown as 0% and a 99.6 as 100%."""
    card = ResultCard()
    qtbot.addWidget(card)
    analysis = AnalysisRecord(
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
        result={"classification": "AMD", "confidence": confidence},
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

    card.show_analysis(analysis)

    assert card.confidence.text() == f"{shown} confidence"
    assert f"\nConfidence: {shown}\n" in card.text()


def test_the_appointment_picker_stops_at_a_follow_up_horizon(qtbot: QtBot, gui: GuiSession) -> None:
    patient = gui.application.patients.create_patient({"name": "Later"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    asked: list[datetime] = []
    view.schedule_requested.connect(asked.append)
    view.when.setDateTime(QDateTime(QDate(9999, 12, 31), QTime(23, 59)))
    assert view.schedule.isEnabled()
    view.schedule.click()
    assert len(asked) == 1 and asked[0].tzinfo is not None
    assert asked[0].year <= datetime.now().year + MAX_YEARS_AHEAD


def test_a_patient_without_a_scan_is_told_to_add_one_until_it_arrives(
    qtbot: QtBot, gui: GuiSession
) -> None:
    app = gui.application
    patient = app.patients.create_patient({"name": "No Scan"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    state = gui.analysis_view.state
    # Not "File ▸ Import image…." (the menu entry's ellipsis, then a full stop).
    assert state.text() == "No scan yet. Drop an image here, or use File ▸ Import image."
    app.patients.attach_image(patient.id, NewImage(png_bytes()), actor=Actor("t", "api"))
    qtbot.waitUntil(lambda: state.text() == "No analysis yet. Drop an image or press Analyse.")


def test_validation_needs_a_clinician_name(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    view.clinician.clear()
    view.reject.click()
    qtbot.waitUntil(lambda: "Clinician:" in view.verdict_error_text())
    assert "name is required" in view.verdict_error_text()
    assert view.card.badge.text() == "PRELIMINARY"
    assert view.clinician.property("invalid") is True and view.clinician.hasFocus()

    view.clinician.setText("Dr. Jones")  # put right, the refusal goes with it
    view.approve.click()

    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    assert view.verdict_error_text() == ""
    assert view.clinician.property("invalid") is False


def _in_sight(widget: QWidget, scroll: QScrollArea) -> bool:
    viewport = scroll.viewport()
    shown = QRect(widget.mapTo(viewport, QPoint(0, 0)), widget.size())
    return widget.isVisible() and viewport.rect().contains(shown)


def _analysed_at_1024(
    qtbot: QtBot, make_gui: Maker, answer: ParsedAnswer | None = DME
) -> tuple[GuiSession, AnalysisView]:
    """A window of 1024 x 700 showing a patient's finished analysis (``answer`` None:
    one the model wrote unreadably)."""
    gui = make_gui(engine=ScriptedEngine(answer))
    gui.window.resize(1024, 700)
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    return gui, view


#: A result with long texts: six findings of two lines or more, a recommendation and
#: an explanation of several lines at 1024 px.
LONG_DME = ParsedAnswer(
    classification="Diabetic Macular Edema",
    confidence=87.0,
    findings=tuple(
        f"Finding {i}: intraretinal cystoid spaces in the central macula with loss of the "
        "foveal contour"
        for i in range(6)
    ),
    recommendation="Refer to the retina clinic within 2 weeks for anti-VEGF assessment; "
    "repeat OCT in 4 weeks. " * 2,
    explanation="Cystoid fluid in the INL and OPL with central thickening is consistent with "
    "DME. " * 5,
)


def test_a_long_result_is_shown_whole_at_1024(qtbot: QtBot, make_gui: Maker) -> None:
    """The card's rows kept the heights worked out for the wider card they had before:
    at 1024 x 700 (and 1280 x 720) the findings lost their first and last lines, the
    recommendation and the explanation their last ones."""
    _gui, view = _analysed_at_1024(qtbot, make_gui, LONG_DME)
    card = view.card
    rows = (card.findings, card.recommendation, card.explanation)

    def whole() -> bool:
        return all(row.height() >= row.heightForWidth(row.width()) for row in rows)

    qtbot.waitUntil(whole)
    assert card.findings.text().count("\n") == 5


def test_schedule_after_a_verdict_shows_the_booking_beside_the_button(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """After a verdict the tab scrolls down to the picker, no further; Schedule's
    confirmation went to the banner at the top of the tab, out of sight, and the booked
    time under the picker was cut off at the foot of the tab (1024 x 700 and 1440 x 860
    alike)."""
    _gui, view = _analysed_at_1024(qtbot, make_gui)
    scroll = view._scroll
    view.approve.click()
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    # Where a verdict given from the keyboard leaves the tab (focus_appointment).
    scroll.verticalScrollBar().setValue(0)
    scroll.ensureWidgetVisible(view.when)
    qtbot.waitUntil(lambda: _in_sight(view.when, scroll))

    view.schedule.click()
    qtbot.waitUntil(lambda: view.appointment.text().startswith("Scheduled for "))
    qtbot.waitUntil(lambda: _in_sight(view.appointment, scroll))
    assert _in_sight(view.cancel_appointment, scroll)
    assert _in_sight(view.schedule, scroll)


def test_a_refused_verdict_says_why_beside_the_buttons(qtbot: QtBot, make_gui: Maker) -> None:
    """At 1024 x 700 the tab is scrolled down to Approve / Reject; the reason went to the
    banner at its top, out of sight: only a red outline said something was wrong. And the
    outline stayed on when another patient was opened."""
    gui, view = _analysed_at_1024(qtbot, make_gui)
    scroll = view._scroll
    scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
    qtbot.waitUntil(lambda: _in_sight(view.reject, scroll))
    assert not _in_sight(view.notice, scroll)  # the banner's place is out of sight

    view.clinician.clear()
    view.reject.click()
    qtbot.waitUntil(lambda: "Clinician: " in view.verdict_error_text())
    qtbot.waitUntil(lambda: _in_sight(view.verdict_error, scroll))
    assert _in_sight(view.reject, scroll)

    open_patient(qtbot, gui, _patient_with_scan(gui))
    assert view.verdict_error_text() == ""
    assert view.clinician.property("invalid") is False


def test_an_unreadable_answer_keeps_its_title_readable_at_1024(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Beside the wide PARSE FAILED badge the title had one word a line (five lines of
    16 pt at 1024 x 700); the badge now goes under it there."""
    _gui, view = _analysed_at_1024(qtbot, make_gui, None)
    card = view.card
    qtbot.waitUntil(lambda: card.badge.text() == "PARSE FAILED · PRELIMINARY")
    QApplication.processEvents()
    title = card.classification
    lines = title.height() / title.fontMetrics().lineSpacing()
    assert lines < 3, f"{lines:.1f} lines in {title.width()} px"
    assert card.badge.isVisible() and card.badge.width() <= card.badge.sizeHint().width() + 1


def test_a_result_keeps_its_badge_beside_the_title(qtbot: QtBot, make_gui: Maker) -> None:
    _gui, view = _analysed_at_1024(qtbot, make_gui)
    card = view.card
    assert card.badge.text() == "PRELIMINARY"
    assert card.badge_beside


def test_another_patient_opens_at_the_top_of_the_tab(qtbot: QtBot, make_gui: Maker) -> None:
    """Scrolled down to validate one patient, the next one opened there too: their
    state line and Analyse were out of sight, the greyed validation in view."""
    gui, view = _analysed_at_1024(qtbot, make_gui)
    scroll = view._scroll
    bar = scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(bar.maximum())
    assert not _in_sight(view.analyse, scroll)

    open_patient(qtbot, gui, _patient_with_scan(gui))
    qtbot.waitUntil(lambda: view.state.text().startswith("No analysis yet"))
    assert _in_sight(view.state, scroll) and _in_sight(view.analyse, scroll)


def test_a_past_appointment_is_refused_with_the_reason(qtbot: QtBot, gui: GuiSession) -> None:
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    gui.analysis.schedule(datetime.now().astimezone() - timedelta(days=2))
    qtbot.waitUntil(lambda: "Appointment:" in view.schedule_error_text())
    assert "in the past" in view.schedule_error_text()

    gui.analysis.schedule(datetime.now().astimezone() + timedelta(days=2))
    qtbot.waitUntil(lambda: "booked" in view.notice.text())
    assert view.schedule_error_text() == ""


def test_analyse_explains_a_model_that_is_not_installed(qtbot: QtBot, gui: GuiSession) -> None:
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    open_patient(qtbot, gui, patient_id)
    status = gui.application.engine.status()
    assert status.state.value == "not_installed"

    gui.patient_page.analyse.click()

    # What is wrong, then what to do (where to put it / how to get it), each once.
    notice = view.notice.text()
    assert (
        status.fault
        == f"OPHTHAI_MODEL_PATH is {status.model_source}, but that folder does not exist."
    )
    # A fault that does not say the model is missing gets the heading that does.
    assert notice == (
        f"The model is not installed. {status.message} The analysis stays queued and runs "
        "once the model is available."
    )
    assert notice.count("download the model into it (AI ▸ Model manager…") == 1
    qtbot.waitUntil(lambda: "Queued for analysis" in view.state.text())
    jobs = gui.jobs_panel
    qtbot.waitUntil(lambda: jobs.model.rowCount() == 1)
    qtbot.waitUntil(lambda: "not installed" in jobs.waiting.text(), timeout=5000)


@pytest.mark.usefixtures("model_looks_waited_for")
def test_analyse_after_an_unload_with_the_model_files_gone_says_it_is_not_installed(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """The model unloaded (its running analysis queued again), then its folder deleted:
    Analyse joined the waiting job and said "This patient's analysis (job #1) is queued
    and runs next.", the model still taken for installed, until the load it started
    found the files gone. The files are looked at as Analyse queues: the page says at
    once that the model is not installed and what to do, as the API's 503 does."""
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "model")
    gui = make_gui(model_path=copy, device="cpu", max_new_tokens=32_768)
    app, view = gui.application, gui.analysis_view
    patient_id = _patient_with_scan(gui, "Files gone")
    open_patient(qtbot, gui, patient_id)
    view.analyse.click()
    qtbot.waitUntil(lambda: app.jobs.list_jobs(patient_id=patient_id, state="running").total)
    app.worker.request_unload()
    qtbot.waitUntil(lambda: "Queued again" in view.state.text())
    # The job is queued again as the unload starts; the model is unloaded a moment later.
    qtbot.waitUntil(lambda: app.engine.status().state.value == "installed")
    shutil.rmtree(copy)
    shown: list[str] = []
    show_notice = view.show_notice
    view.show_notice = lambda text, kind="warning": (shown.append(text), show_notice(text, kind))  # type: ignore[method-assign]

    view.analyse.click()

    qtbot.waitUntil(lambda: bool(shown) and not gui.tasks.busy)
    assert not [text for text in shown if "runs next" in text]
    assert shown[0].startswith("The model is not installed. OPHTHAI_MODEL_PATH is ")
    assert "download the model into it" in shown[0]
    assert view.notice.text() == shown[0]
    assert "Waiting: the model is not available" in view.state.text()
    assert app.jobs.list_jobs(patient_id=patient_id).total == 1  # joined: it waits
    qtbot.waitUntil(lambda: "not installed" in gui.jobs_panel.waiting.text())


def test_analyse_with_the_model_on_a_share_that_hangs_holds_up_no_other_read(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path
) -> None:
    """Analyse looks at the model's files on the short-call pool: with the model's
    folder on a share that hung, Analyse on two patients held both of its threads, and
    every read of the window (opening a patient, the lists) waited for the share. The
    look is waited for a moment only: the analyses are queued, and other reads run."""
    gui = make_gui(model_path=tiny_checkpoint, device="cpu", max_new_tokens=4)
    view, app = gui.analysis_view, gui.application
    first, second = _patient_with_scan(gui, "First"), _patient_with_scan(gui, "Second")
    release = threading.Event()
    real_locate = app.engine._locate

    def hanging_locate() -> object:
        release.wait(60)
        return real_locate()

    monkeypatch.setattr(app.engine, "_locate", hanging_locate)
    try:
        open_patient(qtbot, gui, first)
        view.analyse.click()
        open_patient(qtbot, gui, second)
        view.analyse.click()
        read: list[int] = []
        gui.tasks.submit(lambda: 1, read.append)
        qtbot.waitUntil(lambda: bool(read), timeout=15_000)
        qtbot.waitUntil(lambda: app.jobs.list_jobs().total == 2, timeout=15_000)
    finally:
        release.set()


def test_the_model_not_installed_note_says_what_is_wrong_and_what_to_do_once(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    """A heading before the engine's words said it again: "The model is not
    installed. The model is not installed: … holds none of its files. Download it …"."""
    empty = tmp_path / "models"
    empty.mkdir()
    gui = make_gui(model_path=empty)
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    status = gui.application.engine.status()
    assert status.fault == f"The model is not installed: {empty} holds none of its files."

    gui.patient_page.analyse.click()

    notice = view.notice.text()
    assert notice.startswith(status.fault)
    assert notice.count("not installed") == 1
    assert notice.count("Download it (AI ▸ Model manager…, or ophthai download-model)") == 1
    assert notice.endswith(" The analysis stays queued and runs once the model is available.")


def test_a_damaged_model_is_called_damaged_in_the_status_bar_notice_and_queue(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A shard missing (a copy cut short) read "Model: not installed" and "The model is
    not installed…": a clinician, or the IT person they call, took it for never
    installed rather than to be repaired."""
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "cut-short")
    (copy / "model-00002-of-00002.safetensors").unlink()
    gui = make_gui(model_path=copy)
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))

    assert gui.window.status.model.text() == "Model: files damaged"
    assert str(copy) in gui.window.status.model.toolTip()
    gui.patient_page.analyse.click()

    notice = view.notice.text()
    fault = gui.application.engine.status().fault or ""
    assert fault.startswith(f"The model in {copy} is damaged: ")
    assert notice.startswith(fault) and notice.count("is damaged") == 1  # said once
    # "they" named nothing: the sentence before it is what to do.
    assert notice.endswith(
        " The analysis stays queued and runs once the model's files are whole again."
    )
    assert "not installed" not in notice
    assert "model-00002-of-00002.safetensors is missing" in notice and str(copy) in notice
    assert "Download it again" in notice
    jobs = gui.jobs_panel
    qtbot.waitUntil(lambda: "damaged" in jobs.waiting.text(), timeout=5000)
    assert jobs.waiting.text().startswith(
        "Queued analyses are waiting: the model's files are damaged. To run them, "
        "download the model again"
    )
    assert "not installed" not in jobs.waiting.text()
    reason = gui.application.worker.waiting_reason or ""
    assert "model-00002-of-00002.safetensors is missing" in reason
    assert "Download it again" not in reason  # the advice once: the worker's, not the engine's too


def test_analyse_is_offered_once_the_patient_has_an_image(qtbot: QtBot, make_gui: Maker) -> None:
    """Without an image Analyse was on, and pressed it said "Patient pt-… has no image to
    analyse; add one first", the id of the patient on screen: it is off, and says why
    (the tab's button, the page's and the menu's alike), until an image arrives."""
    gui = make_gui(engine=ScriptedEngine(DME))
    app = gui.application
    patient = app.patients.create_patient({"name": "No scan"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    view, page, action = gui.analysis_view, gui.patient_page, gui.window.analyse_action
    why = (
        "This patient has no image to analyse yet: drop one on the window, or use "
        "File ▸ Import image…"
    )
    for control in (view.analyse, page.analyse, action):
        assert not control.isEnabled()
        assert control.toolTip() == why

    app.patients.attach_image(patient.id, NewImage(png_bytes()), actor=Actor("t", "api"))
    qtbot.waitUntil(lambda: page.analyse.isEnabled())
    assert view.analyse.isEnabled() and action.isEnabled()
    assert page.analyse.toolTip() == "Queue the analysis of the newest scan"
    assert why not in (view.analyse.toolTip(), action.toolTip())
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())


def test_an_update_that_leaves_analyse_as_it_was_sends_nothing_to_its_buttons(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Each update of the patient on screen (an analysis's start and finish among them)
    set Analyse's state and tooltip again on the tab's and the page's buttons: each
    ``setToolTip`` sends an event through the button on the GUI thread, at the moments
    that are already its busiest. Unchanged, they are not set."""
    gui = make_gui(engine=ScriptedEngine(DME))
    app = gui.application
    patient = app.patients.create_patient({"name": "Steady"}, actor=Actor("t", "gui"))
    app.patients.attach_image(patient.id, NewImage(png_bytes()), actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    buttons = (gui.analysis_view.analyse, gui.patient_page.analyse)
    qtbot.waitUntil(lambda: all(button.isEnabled() for button in buttons))
    changes: list[QEvent.Type] = []
    watched = (QEvent.Type.ToolTipChange, QEvent.Type.EnabledChange)

    class Counter(QObject):
        def eventFilter(self, _watched: QObject, event: QEvent) -> bool:
            if event.type() in watched:
                changes.append(event.type())
            return False

    counter = Counter()
    for button in buttons:
        button.installEventFilter(counter)
    try:
        for number in range(3):
            app.patients.update_patient(
                patient.id, {"history": f"visit {number}"}, actor=Actor("t", "api")
            )
            qtbot.waitUntil(
                lambda n=number: (
                    gui.patient_page.patient is not None  # type: ignore[misc]
                    and gui.patient_page.patient.history == f"visit {n}"
                ),
                timeout=10_000,
            )
    finally:
        for button in buttons:
            button.removeEventFilter(counter)
    assert changes == []
    assert all(button.isEnabled() for button in buttons)


def test_a_first_image_arriving_while_the_patient_opens_turns_analyse_on(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patient read as they were opened, then their first image arrived (a client's
    upload, the watch folder) before that read reached the page: the read, older than
    the change, was shown last, and Analyse stayed off ("no image") for a patient with
    one, the scan count at 0, until the next change."""
    gui = make_gui(engine=ScriptedEngine(DME))
    app = gui.application
    patient = app.patients.create_patient({"name": "First image"}, actor=Actor("t", "gui"))
    read, release = threading.Event(), threading.Event()
    get_patient = app.patients.get_patient

    def read_then_wait(patient_id: str) -> object:
        """The page's read, held on its pool thread until the image has arrived."""
        record = get_patient(patient_id)
        read.set()
        release.wait(timeout=30)
        return record

    monkeypatch.setattr(app.patients, "get_patient", read_then_wait)
    action = gui.window.analyse_action
    gui.patients.open_patient(patient.id)
    try:
        qtbot.waitUntil(read.is_set)
        with qtbot.waitSignal(  # the change, heard while the read waits
            gui.bridge.patient_updated,
            check_params_cb=lambda record: record.scan_count == 1,
            timeout=10_000,
        ):
            app.patients.attach_image(patient.id, NewImage(png_bytes()), actor=Actor("t", "api"))
        assert not action.isEnabled()  # shown with the patient, once opened
        with qtbot.waitSignal(gui.patients.patient_opened):
            release.set()
    finally:
        release.set()  # the pool thread is not left waiting

    assert gui.patient_page.patient is not None
    assert gui.patient_page.patient.scan_count == 1
    for control in (action, gui.patient_page.analyse, gui.analysis_view.analyse):
        assert control.isEnabled()


def test_an_unreadable_answer_is_rejected_not_approved(qtbot: QtBot, make_gui: Maker) -> None:
    """Approve was on beside "analyse again or validate as rejected"; approved, the card
    said APPROVED of no result, the status stayed "Pending Analysis" and the workflow went
    on to Complete. Approve is off and says why; Reject records the verdict, and the
    message says what the status and the workflow show."""
    gui, view = _analysed_at_1024(qtbot, make_gui, None)
    page = gui.patient_page
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    asked: list[bool] = []
    view.validate_requested.connect(lambda approved, *_: asked.append(approved))
    qtbot.waitUntil(lambda: page.stepper.current_name() == "Validation")
    assert view.state.text() == (
        "The model answered, but its answer could not be read as a result (the raw answer "
        "is shown below), so there is nothing to approve: analyse again, or reject it."
    )
    assert not view.approve.isEnabled()
    assert view.approve.toolTip() == analysis_view.NOTHING_TO_APPROVE
    # Its shortcut is off too: pressed before Reject's, its click would come first.
    _press(qtbot, view.notes, view.approve.shortcut())
    _press(qtbot, view.notes, view.reject.shortcut())
    qtbot.waitUntil(lambda: bool(asked))
    assert asked == [False]
    qtbot.waitUntil(lambda: view.card.badge.text() == "REJECTED")
    # No result to follow up: back at analysis (it went on to Scheduling, and a
    # booking then showed the patient Complete).
    qtbot.waitUntil(lambda: page.stepper.current_name() == "Analysis")
    assert page.status.text() == "Pending Analysis"
    assert view.state.text() == (
        "Rejected by Dr. Test: the model's answer could not be read, so this patient has "
        "no AI result yet. Analyse again for one."
    )
    assert not view.approve.isEnabled()
    stored = gui.application.patients.get_patient(page.patient.id if page.patient else "")
    assert stored.validation_status == "rejected"
    when = datetime.now(UTC) + timedelta(days=7)
    gui.application.patients.schedule_appointment(stored.id, when, actor=Actor("t", "gui"))
    qtbot.waitUntil(lambda: view.appointment.text().startswith("Scheduled for"))
    assert view.appointment.text().endswith("completes once a result is validated.")
    assert page.stepper.current_name() == "Analysis"


def test_rejecting_an_unreadable_answer_from_the_keyboard_goes_on_to_analyse(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """After an unreadable answer was rejected the focus went to the appointment picker
    (the next step after a verdict on a result), which scrolled "Rejected by …: …
    Analyse again for one" out of sight while the stepper showed Analysis. The next
    step is Analyse: it has the focus, with the explanation in sight."""
    gui, view = _analysed_at_1024(qtbot, make_gui, None)
    page = gui.patient_page
    scroll = view._scroll
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
    qtbot.waitUntil(lambda: _in_sight(view.reject, scroll))
    assert not _in_sight(view.state, scroll)  # the verdict's place is below it

    _press(qtbot, view.notes, view.reject.shortcut())
    qtbot.waitUntil(lambda: view.card.badge.text() == "REJECTED")
    qtbot.waitUntil(lambda: page.stepper.current_name() == "Analysis")
    qtbot.waitUntil(lambda: view.analyse.hasFocus())
    assert view.state.text().endswith("Analyse again for one.")
    qtbot.waitUntil(lambda: _in_sight(view.state, scroll))
    assert _in_sight(view.analyse, scroll)


def test_a_booking_before_the_verdict_says_so_beside_it_at_1024(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Scheduled before a verdict, "the workflow completes once a result is validated"
    went to the banner at the top of the tab, out of sight at the picker (1024 x 700):
    the booked line says it, until the verdict completes the workflow."""
    gui, view = _analysed_at_1024(qtbot, make_gui)
    scroll = view._scroll
    scroll.ensureWidgetVisible(view.when)
    qtbot.waitUntil(lambda: _in_sight(view.when, scroll))

    view.schedule.click()
    qtbot.waitUntil(lambda: view.appointment.text().startswith("Scheduled for "))
    qtbot.waitUntil(lambda: _in_sight(view.appointment, scroll))
    assert not _in_sight(view.notice, scroll)
    assert view.appointment.text().endswith(
        " The patient's workflow completes once a result is validated."
    )

    view.approve.click()
    qtbot.waitUntil(lambda: gui.patient_page.stepper.current_name() == "Complete")
    qtbot.waitUntil(lambda: view.appointment.text() == f"Scheduled for {view.booked_time()}.")


class _LayoutRequests(QObject):
    """Counts the layout requests that reach widgets of ``view`` outside ``inside``."""

    def __init__(self, view: QWidget, inside: tuple[QWidget, ...]) -> None:
        super().__init__()
        self.count = 0
        self.seen: list[str] = []
        self._view, self._inside = view, inside

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.LayoutRequest
            and isinstance(watched, QWidget)
            and (watched is self._view or self._view.isAncestorOf(watched))
            and not any(w is watched or w.isAncestorOf(watched) for w in self._inside)
        ):
            self.count += 1
            self.seen.append(f"{type(watched).__name__}:{watched.objectName()}")
        return False


def test_streamed_batches_count_tokens_without_laying_the_view_out_again(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Each batch of a stream (every 50 ms, for minutes with the real model) repaints
    the text it adds and the count, not the whole view: a new layout of the view means a
    repaint of all of it on the GUI thread."""
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    open_patient(qtbot, gui, patient_id)
    gui.bridge.analysis_started.emit(9001, patient_id)
    gui.bridge.analysis_progressed.emit(9001, "reasoning", "The fovea ", 2)
    assert view.progress.isVisible() and view.progress.text() == "2 tokens"
    # Opening the patient loads its scans in the background; the page lays itself out
    # when they arrive. Let that settle: only the batches are under test.
    qtbot.waitUntil(lambda: not gui.tasks.busy and not gui.slow_tasks.busy)
    for _ in range(3):
        QApplication.processEvents()

    spy = _LayoutRequests(view, (view.reasoning, view.answer))
    QApplication.instance().installEventFilter(spy)
    try:
        for i in range(3, 40):
            gui.bridge.analysis_progressed.emit(9001, "reasoning", f"word{i} ", 1)
            QApplication.processEvents()
    finally:
        QApplication.instance().removeEventFilter(spy)
    assert view.progress.text() == "39 tokens"
    assert "reasoning" in view.state.text()
    assert spy.count == 0, spy.seen


def test_a_failure_before_any_text_leaves_no_empty_reasoning_open(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """A run that failed before writing anything left the reasoning pane open and empty,
    saying "The model's reasoning appears here as it is written" under the failure; and
    so did opening that patient again."""
    engine = ScriptedEngine(DME, fail_with=RuntimeError("out of memory"))
    gui = make_gui(engine=engine)
    view = gui.analysis_view
    failed, other = _patient_with_scan(gui, "Failed"), _patient_with_scan(gui, "Other")
    open_patient(qtbot, gui, failed)
    view.analyse.click()
    qtbot.waitUntil(lambda: "failed" in view.state.text())
    assert not view.reasoning.isVisibleTo(view)
    assert view.reasoning_toggle.isVisibleTo(view)  # one click away all the same

    open_patient(qtbot, gui, other)
    open_patient(qtbot, gui, failed)
    qtbot.waitUntil(lambda: "failed" in view.state.text())
    assert not view.reasoning.isVisibleTo(view)


def test_a_patient_whose_newest_analysis_failed_says_so_when_opened(
    qtbot: QtBot, make_gui: Maker
) -> None:
    engine = ScriptedEngine(DME)
    gui = make_gui(engine=engine)
    view = gui.analysis_view
    failed, other = _patient_with_scan(gui, "Failed"), _patient_with_scan(gui, "Other")
    engine.fail_with = RuntimeError("CUDA out of memory")
    job = gui.application.jobs.queue_patient_analysis(failed, actor=Actor("t", "gui"))

    def failure_shown_in_the_queue() -> bool:  # the window has had the failure event
        row = gui.jobs_panel.model.get(job.id)
        return row is not None and row.state == "failed"

    qtbot.waitUntil(failure_shown_in_the_queue)

    open_patient(qtbot, gui, other)
    open_patient(qtbot, gui, failed)  # opened after the failure, not watching it happen

    qtbot.waitUntil(lambda: f"job #{job.id}) failed" in view.state.text())
    assert "CUDA out of memory" in view.state.text()
    assert view.state.property("kind") == "error"

    engine.fail_with = None  # the next analysis works: its result replaces the failure
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    open_patient(qtbot, gui, other)
    open_patient(qtbot, gui, failed)
    qtbot.wait(200)
    assert "failed" not in view.state.text()


def test_analyse_again_while_one_runs_points_to_it_instead_of_queueing_another(
    qtbot: QtBot, make_gui: Maker
) -> None:
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    open_patient(qtbot, gui, patient_id)
    jobs = gui.application.jobs
    try:
        view.analyse.click()
        view.analyse.click()  # a double click: one analysis
        qtbot.waitUntil(lambda: jobs.list_jobs(patient_id=patient_id).total == 1)
        qtbot.waitUntil(lambda: jobs.list_jobs(patient_id=patient_id, state="running").total)

        def click_again() -> bool:  # later, while it runs (a click while the first is
            view.analyse.click()  # still being queued is ignored: click until answered)
            return "already running (job #" in view.notice.text()

        qtbot.waitUntil(click_again)
        # The last click's answer may still be on its way: wait for it while the job
        # runs. Left in flight, it made the click below a double click (ignored) under
        # load, and no second analysis was queued.
        qtbot.waitUntil(lambda: not gui.tasks.busy)
        assert "already running (job #" in view.notice.text()
        assert jobs.list_jobs(patient_id=patient_id).total == 1
    finally:
        hold.set()
    qtbot.waitUntil(lambda: view.card.isVisible())
    view.analyse.click()  # finished: a new analysis may start
    qtbot.waitUntil(lambda: jobs.list_jobs(patient_id=patient_id).total == 2)


def test_an_answer_to_analyse_older_than_the_jobs_end_says_nothing_stale(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Analyse clicked while the analysis ran, its answer ("already running") delayed
    until after the result came (a busy pool thread, as under load): the page said the
    analysis was still running beside its result, until the patient was opened again."""
    hold, release = threading.Event(), threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    open_patient(qtbot, gui, patient_id)
    jobs = gui.application.jobs
    ensure = jobs.ensure_patient_analysis
    delayed: list[int] = []

    def slow_answer(*args: object, **kwargs: object) -> object:
        """The pool thread reads the queue, then is not run again for a while."""
        answer = ensure(*args, **kwargs)  # type: ignore[arg-type]
        if hold.is_set():
            return answer
        delayed.append(answer[0].id)
        release.wait(10)
        return answer

    try:
        view.analyse.click()
        qtbot.waitUntil(lambda: jobs.list_jobs(patient_id=patient_id, state="running").total)
        qtbot.waitUntil(lambda: not gui.tasks.busy)
        jobs.ensure_patient_analysis = slow_answer  # type: ignore[method-assign]
        view.analyse.click()
        qtbot.waitUntil(lambda: len(delayed) == 1)  # read: running
        hold.set()
        qtbot.waitUntil(lambda: view.card.isVisible())
    finally:
        hold.set()
        release.set()
    qtbot.waitUntil(lambda: not gui.tasks.busy)
    assert "running" not in view.notice.text()
    assert "running" not in view.state.text() and "Queued" not in view.state.text()
    assert view.card.isVisible()
    view.analyse.click()  # and the next click queues a new analysis
    qtbot.waitUntil(lambda: jobs.list_jobs(patient_id=patient_id).total == 2)


def test_another_patients_job_ending_leaves_the_notice_about_this_ones(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The notice "already running (job #1)" went away when any job started or ended:
    another patient's analysis cancelled in the queue took it off this patient's page."""
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    other_id = _patient_with_scan(gui, "Someone Else")
    open_patient(qtbot, gui, patient_id)
    jobs = gui.application.jobs
    actor = Actor("t", "gui")
    try:
        view.analyse.click()
        qtbot.waitUntil(lambda: jobs.list_jobs(patient_id=patient_id, state="running").total)
        qtbot.waitUntil(lambda: not gui.tasks.busy)
        view.analyse.click()
        qtbot.waitUntil(lambda: "already running (job #" in view.notice.text())
        cancelled: list[int] = []
        gui.bridge.analysis_cancelled.connect(lambda job_id, _patient: cancelled.append(job_id))
        other = jobs.queue_patient_analysis(other_id, actor=actor)
        jobs.request_cancel(other.id, actor=actor)
        qtbot.waitUntil(lambda: cancelled == [other.id])
        assert "already running (job #" in view.notice.text()
    finally:
        hold.set()
    qtbot.waitUntil(lambda: view.card.isVisible())
    assert view.notice.text() == ""  # its own job ended: now it goes


def _press(qtbot: QtBot, widget: QWidget, keys: QKeySequence) -> None:
    """Press ``keys`` (one combination) with the focus on ``widget``, as a user would."""
    combination = keys[0]
    widget.setFocus()
    qtbot.keyClick(widget, combination.key(), combination.keyboardModifiers())


def test_approve_and_reject_have_shortcuts_that_act_as_the_buttons(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The verdict had no keys. Its shortcuts (named in the buttons' tooltips) act only
    while the buttons can be pressed (a result shown, the analysis tab in front), never
    take a letter typed into a field, and are refused without the clinician's name as
    the buttons are."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    asked: list[bool] = []
    view.validate_requested.connect(lambda approved, *_: asked.append(approved))
    approve, reject = view.approve.shortcut(), view.reject.shortcut()
    for button, keys in ((view.approve, approve), (view.reject, reject)):
        assert (
            not keys.isEmpty() and keys[0].keyboardModifiers() & Qt.KeyboardModifier.ControlModifier
        )
        assert keys.toString(QKeySequence.SequenceFormat.NativeText) in button.toolTip()
    open_patient(qtbot, gui, _patient_with_scan(gui))
    _press(qtbot, gui.patient_list.table, approve)  # no result yet: nothing to approve
    qtbot.wait(200)
    assert asked == []

    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    qtbot.keyClicks(view.notes, "AR ax")  # letters typed are notes, not verdicts
    qtbot.keyClicks(view.clinician, "a")
    qtbot.wait(200)
    assert asked == [] and view.notes.toPlainText() == "AR ax"
    view.clinician.clear()
    _press(qtbot, view.notes, approve)  # no name: refused, as the button is
    qtbot.waitUntil(lambda: "name is required" in view.verdict_error_text())
    assert view.card.badge.text() == "PRELIMINARY"
    assert view.notes.toPlainText() == "AR ax"  # nothing typed is lost

    view.clinician.setText("Dr. Keys")
    gui.patient_page.show_tab("scans")  # the verdict out of sight: the keys do nothing
    _press(qtbot, gui.patient_list.table, reject)
    qtbot.wait(200)
    assert asked == [True]
    gui.patient_page.show_tab("analysis")
    _press(qtbot, view.notes, reject)
    qtbot.waitUntil(lambda: view.card.badge.text() == "REJECTED")
    assert asked == [True, False]
    assert "Rejected by Dr. Keys" in view.card.validated.text()
    assert "AR ax" in view.card.validated.text()
    _press(qtbot, view.clinician, approve)
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    stored = gui.application.patients.get_patient(gui.patient_page.patient.id)
    assert (stored.validation_status, stored.validated_by) == ("approved", "Dr. Keys")


def test_a_new_result_arriving_while_the_verdict_is_typed_says_so_and_drops_the_old_refusal(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """A second analysis of the patient finishes while the clinician types the verdict
    for the first: the notes are kept, but the window says they were written for the
    result it replaced, and the first verdict's refusal (notes too long) is not left
    under the new result, outlining notes that are short by now."""
    hold = threading.Event()
    hold.set()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    view = gui.analysis_view
    patient_id, first = _shown_result(qtbot, gui, "Typed Verdict")
    view.notes.setPlainText("x" * 10_001)
    view.reject.click()
    qtbot.waitUntil(lambda: "longer than 10,000 characters" in view.verdict_error_text())
    view.notes.setPlainText("Cysts confirmed on the B-scan")

    hold.clear()
    gui.application.jobs.queue_patient_analysis(patient_id, actor=Actor("t", "gui"))
    qtbot.waitUntil(lambda: "Analysing" in view.state.text())
    assert view.verdict_error_text() == ""  # not left under the analysis now running
    hold.set()
    qtbot.waitUntil(
        lambda: (
            view.card.isVisible() and view.analysis is not None and view.analysis.id != first.id
        ),
        timeout=10_000,
    )
    second = view.analysis
    assert second is not None
    assert view.notes.toPlainText() == "Cysts confirmed on the B-scan"  # nothing lost
    assert view.notice.text() == (
        f"A new result (analysis #{second.id}) replaced the one your notes were written "
        f"for (analysis #{first.id}). Your notes are kept: read the new result before "
        "approving or rejecting it."
    )
    assert view.verdict_error_text() == ""
    assert view.notes.property("invalid") is not True

    view.approve.click()  # read, and approved: the notice has said its piece
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    # Dismissed as the verdict's answer comes back, which may be after its event shows
    # the card approved.
    qtbot.waitUntil(lambda: view.notice.text() == "")


def test_a_new_result_with_no_notes_typed_raises_no_notice(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui, "No Notes")
    open_patient(qtbot, gui, patient_id)
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    first = view.analysis
    gui.application.jobs.queue_patient_analysis(patient_id, actor=Actor("t", "gui"))
    qtbot.waitUntil(
        lambda: view.analysis is not None and first is not None and view.analysis.id != first.id,
        timeout=10_000,
    )
    assert "replaced" not in view.notice.text()


def test_a_read_of_the_queue_older_than_the_unload_does_not_show_the_job_running(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page reads the patient's open jobs when it opens (on the task pool). When
    that read saw the analysis running but came back after an unload had queued it
    again, the page said "Analysing (job #1)…" over an empty reasoning pane, while the
    job queue said queued and nothing ran."""
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app, view = gui.application, gui.analysis_view
    patient_id = _patient_with_scan(gui, "Slow Read")
    fetch, give_back = threading.Event(), threading.Event()
    list_jobs = app.jobs.list_jobs

    def slow_list_jobs(*args: object, **kwargs: object) -> object:
        if kwargs.get("patient_id") == patient_id:
            fetch.wait(10)
            page = list_jobs(*args, **kwargs)  # type: ignore[arg-type]
            give_back.wait(10)
            return page
        return list_jobs(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app.jobs, "list_jobs", slow_list_jobs)
    gui.patients.open_patient(patient_id)
    qtbot.waitUntil(lambda: gui.patient_page.patient is not None)
    job = app.jobs.queue_patient_analysis(patient_id, actor=Actor("t", "gui"))
    qtbot.waitUntil(lambda: "the model is reasoning" in view.state.text())
    fetch.set()  # the read sees the job running ...
    qtbot.waitUntil(lambda: app.jobs.get_job(job.id).state == "running")
    qtbot.wait(200)
    app.worker.request_unload()  # ... and comes back after it was queued again
    qtbot.waitUntil(lambda: "Queued again" in view.state.text())
    give_back.set()
    qtbot.waitUntil(lambda: gui.analysis._reads == 0)  # the read is back and handled
    qtbot.wait(100)  # (a late stream start would be queued behind it)
    assert app.jobs.get_job(job.id).state == "queued"
    assert "Queued again" in view.state.text()
    assert not view.state.text().startswith("Analysing")
    hold.set()


def test_a_patient_whose_only_analysis_was_cancelled_says_so_when_opened(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Reopened, a patient whose only analysis was cancelled showed "No analysis yet",
    where a failed one was named: the cancellation is said, with when and by whom, and
    Analyse is still offered."""
    view = gui.analysis_view
    cancelled, other = _patient_with_scan(gui, "Cancelled"), _patient_with_scan(gui, "Other")
    jobs = gui.application.jobs
    job = jobs.queue_patient_analysis(cancelled, actor=Actor("Dr. Quinn", "gui"))
    jobs.request_cancel(job.id, actor=Actor("Dr. Quinn", "gui"))  # queued: no model here
    # The window has heard of the cancellation (the bridge delivers events in order), so
    # what it says when the patient is opened is the page's own reading, not the event's.
    panel = gui.jobs_panel.model
    qtbot.waitUntil(lambda: (row := panel.get(job.id)) is not None and row.state == "cancelled")
    qtbot.waitUntil(lambda: not gui.tasks.busy)

    open_patient(qtbot, gui, other)
    open_patient(qtbot, gui, cancelled)

    qtbot.waitUntil(lambda: f"last analysis (job #{job.id}) was cancelled" in view.state.text())
    finished = jobs.list_jobs(patient_id=cancelled).items[0].finished_at
    assert finished is not None
    assert local_datetime(finished) in view.state.text()
    assert "by Dr. Quinn" in view.state.text()
    assert "No analysis yet" not in view.state.text()
    assert view.analyse.isVisible() and view.analyse.isEnabled()


def _shown_result(qtbot: QtBot, gui: GuiSession, name: str) -> tuple[str, AnalysisRecord]:
    """A new patient with a scan, opened and analysed: their id, and the result shown."""
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui, name)
    open_patient(qtbot, gui, patient_id)
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    result = view.analysis
    assert result is not None
    return patient_id, result


def _a_result_then_a_held_analysis(
    qtbot: QtBot, make_gui: Maker, name: str
) -> tuple[GuiSession, ScriptedEngine, AnalysisRecord, int]:
    """A patient's result on the page, then another analysis of theirs queued by a
    client (as the window's API does), held while it streams."""
    hold = threading.Event()
    hold.set()
    engine = ScriptedEngine(DME, hold=hold)
    gui = make_gui(engine=engine)
    view = gui.analysis_view
    patient_id, result = _shown_result(qtbot, gui, name)
    hold.clear()
    job = gui.application.jobs.queue_patient_analysis(
        patient_id, actor=Actor("api:127.0.0.1", "api"), question="Any drusen?"
    )
    qtbot.waitUntil(lambda: "the model is reasoning" in view.state.text())
    assert not view.card.isVisible()
    return gui, engine, result, job.id


def _shows_again(view: AnalysisView, result: AnalysisRecord) -> None:
    assert view.card.isVisible()
    assert view.analysis is not None and view.analysis.id == result.id
    assert view.verdict_group.isEnabled() and view.approve.isEnabled()
    assert not view.answer.isVisible()  # not the stopped run's half-written text
    assert "The result below is from an earlier analysis." in view.state.text()


def test_an_analysis_cancelled_as_it_streams_gives_the_page_back_its_result(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """A client's analysis of the patient shown, cancelled as it ran: the page said
    "The analysis (job #N) was cancelled." over the stopped run's text, the patient's
    result gone and its verdict off until the patient was opened again. The result comes
    back, as opening the patient shows it."""
    gui, _engine, result, job_id = _a_result_then_a_held_analysis(qtbot, make_gui, "Cancel")
    view = gui.analysis_view

    gui.application.jobs.request_cancel(job_id, actor=Actor("api:127.0.0.1", "api"))

    qtbot.waitUntil(lambda: f"(job #{job_id}) was cancelled" in view.state.text())
    _shows_again(view, result)


def test_an_analysis_queued_again_by_an_unload_gives_the_page_back_its_result(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """An unload stops the running analysis and queues it again, to wait for the model:
    meanwhile the patient's result is on the page to be validated, not the stopped run."""
    gui, _engine, result, _job_id = _a_result_then_a_held_analysis(qtbot, make_gui, "Unload")
    view = gui.analysis_view

    gui.application.worker.request_unload()

    qtbot.waitUntil(lambda: "Queued again" in view.state.text())
    _shows_again(view, result)


def test_an_analysis_that_fails_gives_the_page_back_its_result(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """A new analysis of the patient shown fails: the failure is said above the
    patient's result, which stays to be validated."""
    engine = ScriptedEngine(DME)
    gui = make_gui(engine=engine)
    view = gui.analysis_view
    patient_id, result = _shown_result(qtbot, gui, "Fails")
    engine.fail_with = RuntimeError("out of memory")
    gui.application.jobs.queue_patient_analysis(
        patient_id, actor=Actor("api:127.0.0.1", "api"), question="Any drusen?"
    )

    qtbot.waitUntil(lambda: "The analysis failed" in view.state.text())
    assert "out of memory" in view.state.text()
    _shows_again(view, result)


class _StopsMidAnswer(ScriptedEngine):
    """Writes its reasoning and the start of its answer, then waits: cancelled, it
    stops; given ``fail_with`` meanwhile, it fails."""

    def generate(
        self,
        image: Any,
        *,
        on_delta: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        **_kwargs: Any,
    ) -> Any:
        assert on_delta is not None and cancel is not None
        for piece in ("<think>", "Looking at the fovea.", "</think>", '{"classification": "Diab'):
            on_delta(piece)
        while not cancel.wait(0.01):
            if self.fail_with is not None:
                raise self.fail_with
        return self._result(cancelled=True)


def _a_first_analysis_mid_answer(
    qtbot: QtBot, make_gui: Maker, name: str
) -> tuple[GuiSession, _StopsMidAnswer, int]:
    """A patient with no result on the page, their first analysis (a client's) halfway
    through its answer."""
    engine = _StopsMidAnswer(DME)
    gui = make_gui(engine=engine)
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui, name)
    open_patient(qtbot, gui, patient_id)
    job = gui.application.jobs.queue_patient_analysis(
        patient_id, actor=Actor("api:127.0.0.1", "api")
    )
    qtbot.waitUntil(lambda: "Diab" in view.answer.toPlainText())
    return gui, engine, job.id


def _says_the_text_is_no_result(view: AnalysisView) -> None:
    assert "The text below is the model's unfinished output, not a result." in view.state.text()
    assert view.answer.isVisible() and "Diab" in view.answer.toPlainText()
    assert "Unfinished" in view.answer_label.text()
    assert "not a result" in view.answer_label.text()
    assert not view.card.isVisible()
    assert not view.approve.isEnabled() and not view.reject.isEnabled()


def test_a_first_analysis_cancelled_mid_answer_says_its_text_is_no_result(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Cancelled halfway, a patient's first analysis left its half-written answer under
    "The analysis (job #N) was cancelled.", still headed "Answer (as it is written)": half
    an answer read as a result. It is said to be unfinished output, not a result."""
    gui, _engine, job_id = _a_first_analysis_mid_answer(qtbot, make_gui, "Cancel first")
    view = gui.analysis_view

    gui.application.jobs.request_cancel(job_id, actor=Actor("api:127.0.0.1", "api"))

    qtbot.waitUntil(lambda: f"(job #{job_id}) was cancelled" in view.state.text())
    _says_the_text_is_no_result(view)


def test_a_first_analysis_that_fails_mid_answer_says_its_text_is_no_result(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """As a cancelled one: the failure, then that the text kept is no result."""
    gui, engine, _job_id = _a_first_analysis_mid_answer(qtbot, make_gui, "Fails first")
    view = gui.analysis_view

    engine.fail_with = RuntimeError("out of memory")

    qtbot.waitUntil(lambda: "The analysis failed" in view.state.text())
    assert "out of memory." in view.state.text()
    _says_the_text_is_no_result(view)


def test_an_analysis_that_starts_again_heads_its_answer_as_streaming(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The next analysis after one that stopped streams under its usual heading."""
    gui, _engine, job_id = _a_first_analysis_mid_answer(qtbot, make_gui, "Again")
    view = gui.analysis_view
    gui.application.jobs.request_cancel(job_id, actor=Actor("api:127.0.0.1", "api"))
    qtbot.waitUntil(lambda: "Unfinished" in view.answer_label.text())

    view.analyse.click()

    qtbot.waitUntil(lambda: "writing its answer" in view.state.text())
    assert view.answer_label.text() == "Answer (as it is written)"


def _page_opened_yesterday(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> tuple[GuiSession, AnalysisView]:
    """A patient without a booking, opened the day before (the window left open)."""
    yesterday = QDateTime.currentDateTime().addDays(-1)
    with monkeypatch.context() as clock:
        clock.setattr(analysis_view, "now", lambda: yesterday)
        clock.setattr(day, "today", lambda: yesterday.date())
        gui = make_gui()
        patient = gui.application.patients.create_patient({"name": "Ada"}, actor=Actor("t", "gui"))
        open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    assert view.when.dateTime() == QDateTime(QDate.currentDate(), QTime(9, 0))
    return gui, view


def test_tomorrow_s_default_appointment_follows_the_day(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The picker's "tomorrow 09:00" was counted when the patient was opened: a page
    left open overnight offered today 09:00, booked as shown before nine and refused as
    past after."""
    gui, view = _page_opened_yesterday(qtbot, make_gui, monkeypatch)

    gui.patients.day_watch.look()  # as its timer does just past midnight

    assert view.when.dateTime() == QDateTime(QDate.currentDate().addDays(1), QTime(9, 0))
    view.schedule.click()
    qtbot.waitUntil(lambda: "booked" in view.notice.text())


def test_an_appointment_time_the_clinician_set_stays_the_next_day(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    gui, view = _page_opened_yesterday(qtbot, make_gui, monkeypatch)
    chosen = QDateTime(QDate.currentDate().addDays(3), QTime(14, 30))
    view.when.setDateTime(chosen)  # as the clinician's editing or calendar sets it

    gui.patients.day_watch.look()

    assert view.when.dateTime() == chosen


def test_a_refused_time_s_reason_goes_when_the_new_day_moves_the_picker(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typed time refused, the picker back at "tomorrow 09:00": past midnight the
    picker moves on to the new tomorrow, but the reason stayed under it, saying "The
    picker is back at" the time it no longer shows, while Schedule booked the new one."""
    gui, view = _page_opened_yesterday(qtbot, make_gui, monkeypatch)
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    view.when.setFocus()
    qtbot.waitUntil(view.when.hasFocus)
    view.when.setSelectedSection(QDateTimeEdit.Section.YearSection)
    qtbot.keyClicks(view.when, str(QDate.currentDate().year() - 2))
    view.schedule.setFocus()  # the focus leaves: the time typed goes back, said
    qtbot.waitUntil(lambda: "The picker is back at" in view.schedule_error_text())

    gui.patients.day_watch.look()  # as its timer does just past midnight

    assert view.when.dateTime() == QDateTime(QDate.currentDate().addDays(1), QTime(9, 0))
    assert view.schedule_error_text() == ""


@pytest.mark.parametrize(
    ("key", "modifier"),
    [
        (Qt.Key.Key_Down, Qt.KeyboardModifier.AltModifier),
        (Qt.Key.Key_F4, Qt.KeyboardModifier.NoModifier),
    ],
)
def test_the_picker_s_calendar_opens_from_the_keyboard(
    qtbot: QtBot, gui: GuiSession, key: Qt.Key, modifier: Qt.KeyboardModifier
) -> None:
    """The appointment's calendar opened on a click of its arrow alone: Alt+Down moved
    the date a day back instead, F4 did nothing. Both open it, as they open a combo box's
    list; a day chosen in it with the arrows and Enter is taken as a click's is, the
    time kept, and the keyboard is back on the picker."""
    view = _picker_in_focus(qtbot, gui, "Keys")
    shown = view.when.dateTime()
    calendar = view.when.calendarWidget()

    qtbot.keyClick(view.when, key, modifier)

    qtbot.waitUntil(calendar.isVisible)
    assert QApplication.activePopupWidget() is calendar.window()
    assert view.when.dateTime() == shown  # opening it changed nothing
    assert calendar.selectedDate() == shown.date()
    assert calendar.minimumDate() == view.when.minimumDate()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Right)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not calendar.isVisible())
    assert view.when.dateTime() == QDateTime(shown.date().addDays(1), shown.time())
    assert QApplication.focusWidget() is view.when


def test_provenance_opens_in_sight_at_1024(qtbot: QtBot, make_gui: Maker) -> None:
    """Provenance opened its panel under the card, below the tab's foot at 1024 x 700:
    the button seemed to do nothing until the tab was scrolled. Now its first rows are
    in sight, under the button."""
    _gui, view = _analysed_at_1024(qtbot, make_gui)
    scroll = view._scroll
    scroll.ensureWidgetVisible(view.provenance_toggle)
    qtbot.waitUntil(lambda: _in_sight(view.provenance_toggle, scroll))

    view.provenance_toggle.click()

    def first_rows_in_sight() -> bool:
        top = view.provenance.mapTo(scroll.viewport(), QPoint(0, 0)).y()
        return top >= 0 and top + 100 <= scroll.viewport().height()

    qtbot.waitUntil(first_rows_in_sight)
    assert _in_sight(view.provenance_toggle, scroll)


def _picker_in_focus(qtbot: QtBot, gui: GuiSession, name: str) -> AnalysisView:
    patient = gui.application.patients.create_patient({"name": name}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    view.when.setFocus()
    qtbot.waitUntil(view.when.hasFocus)
    return view


def test_enter_in_the_appointment_picker_schedules(qtbot: QtBot, gui: GuiSession) -> None:
    """Enter in the picker did nothing: the clinician had to reach for Schedule."""
    view = _picker_in_focus(qtbot, gui, "Enter")
    view.when.setDateTime(QDateTime.currentDateTime().addDays(3))

    qtbot.keyClick(view.when, Qt.Key.Key_Return)

    qtbot.waitUntil(lambda: "booked" in view.notice.text())
    assert view.booked_time() in view.notice.text()


def test_a_past_year_typed_in_the_picker_is_refused_with_the_reason(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A year in the past typed into the picker went back to the year shown with
    nothing said (Qt refuses the digit that makes it, and puts the text back at Enter)."""
    view = _picker_in_focus(qtbot, gui, "Past")
    shown = view.when.text()
    past_year = str(QDate.currentDate().year() - 2)
    view.when.setSelectedSection(QDateTimeEdit.Section.YearSection)

    qtbot.keyClicks(view.when, past_year)

    assert "cannot be booked" in view.schedule_error_text()
    assert "from now" in view.schedule_error_text()
    with qtbot.assertNotEmitted(view.schedule_requested):  # not the time it went back to
        qtbot.keyClick(view.when, Qt.Key.Key_Return)
    assert view.when.text() == shown
    assert f"The picker is back at {shown}." in view.schedule_error_text()

    # Enter again books the time shown, and the reason goes.
    qtbot.keyClick(view.when, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "booked" in view.notice.text())
    assert view.schedule_error_text() == ""


def test_the_earliest_time_the_picker_stops_at_is_booked_at_enter(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today chosen in the calendar (F4, Left, Enter) from a time that has passed today
    puts the picker at its earliest time (now, less a minute); Enter there said "16:12
    cannot be booked: an appointment is from now (16:12) ... The picker is back at
    16:12." and booked nothing: the earliest time kept the clock's milliseconds, which
    the minutes shown drop (so whenever they were not 0)."""

    def now_at_half_a_second() -> QDateTime:
        clock = QDateTime.currentDateTime()
        return clock.addMSecs(500 - clock.time().msec())

    monkeypatch.setattr(analysis_view, "now", now_at_half_a_second)
    view = _picker_in_focus(qtbot, gui, "Earliest")
    view.when.setDateTime(QDateTime(QDate.currentDate().addDays(1), QTime(0, 0)))
    calendar = view.when.calendarWidget()
    qtbot.keyClick(view.when, Qt.Key.Key_F4)
    qtbot.waitUntil(calendar.isVisible)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Left)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not calendar.isVisible())
    assert view.when.date() == QDate.currentDate()  # at the earliest time: today's
    shown = view.when.text()

    with qtbot.waitSignal(view.schedule_requested, timeout=2000):
        qtbot.keyClick(view.when, Qt.Key.Key_Return)

    assert view.schedule_error_text() == ""
    qtbot.waitUntil(lambda: "booked" in view.notice.text())
    assert view.when.text() == shown


def test_the_earliest_minute_typed_into_the_picker_is_booked(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The earliest minute the picker says it takes ("from now (16:40)"), typed: the
    earliest time kept the clock's seconds (16:40:30), so Qt refused the last digit of
    16:40 without a word, and Enter said "… 16:4 cannot be booked: an appointment is
    from now (… 16:40)" and booked nothing."""

    def now_at_half_a_minute() -> QDateTime:
        clock = QDateTime.currentDateTime()
        return clock.addMSecs(30_500 - clock.time().second() * 1000 - clock.time().msec())

    monkeypatch.setattr(analysis_view, "now", now_at_half_a_minute)
    view = _picker_in_focus(qtbot, gui, "Earliest typed")
    earliest = view.when.minimumDateTime()
    view.when.setDateTime(QDateTime(earliest.date(), QTime(23, 59)))
    for section, digits in (
        (QDateTimeEdit.Section.HourSection, earliest.toString("HH")),
        (QDateTimeEdit.Section.MinuteSection, earliest.toString("mm")),
    ):
        view.when.setSelectedSection(section)
        qtbot.keyClicks(view.when, digits)
    assert view.when.text() == earliest.toString("yyyy-MM-dd HH:mm")
    assert view.schedule_error_text() == ""

    with qtbot.waitSignal(view.schedule_requested, timeout=2000) as booked:
        qtbot.keyClick(view.when, Qt.Key.Key_Return)

    when = booked.args[0] if booked.args else None
    assert when is not None
    assert when.strftime("%Y-%m-%d %H:%M") == earliest.toString("yyyy-MM-dd HH:mm")
    assert view.schedule_error_text() == ""


def test_schedule_clicked_from_a_refused_typed_time_does_not_book_the_one_it_went_back_to(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """The click on Schedule takes the focus from the picker, which puts a refused
    typed time back: that click booked the time gone back to, not the one typed."""
    view = _picker_in_focus(qtbot, gui, "Click")
    view.when.setSelectedSection(QDateTimeEdit.Section.YearSection)
    qtbot.keyClicks(view.when, str(QDate.currentDate().year() - 2))

    with qtbot.assertNotEmitted(view.schedule_requested):
        qtbot.mouseClick(view.schedule, Qt.MouseButton.LeftButton)

    assert "The picker is back at" in view.schedule_error_text()
    qtbot.mouseClick(view.schedule, Qt.MouseButton.LeftButton)  # the time shown, seen
    qtbot.waitUntil(lambda: "booked" in view.notice.text())


def test_schedule_pressed_by_keyboard_after_a_refused_time_asks_before_booking(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Tab from a refused typed time (the picker goes back to the time before) to
    Schedule, then Space, booked the time gone back to, which the clinician did not
    choose (only a mouse click within 2 s was held back). Now the first press says so;
    a second books the time shown."""
    view = _picker_in_focus(qtbot, gui, "Tab Space")
    view.when.setSelectedSection(QDateTimeEdit.Section.YearSection)
    qtbot.keyClicks(view.when, str(QDate.currentDate().year() - 2))
    view.schedule.setFocus()  # where Tab takes the focus from the picker
    qtbot.waitUntil(view.schedule.hasFocus)
    shown = view.when.text()

    with qtbot.assertNotEmitted(view.schedule_requested):
        qtbot.keyClick(view.schedule, Qt.Key.Key_Space)

    assert "cannot be booked: an appointment is from now" in view.schedule_error_text()
    assert view.schedule_error_text().endswith(
        f". Not booked: press Schedule again to book {shown}, or change the time."
    )
    with qtbot.waitSignal(view.schedule_requested):
        qtbot.keyClick(view.schedule, Qt.Key.Key_Space)  # the time shown, seen
    qtbot.waitUntil(lambda: "booked" in view.notice.text())


def test_the_time_shown_typed_again_after_a_refusal_is_booked_at_the_first_press(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """After a refused time the clinician types the time shown again (the year it
    went back to) and presses Schedule: the time is theirs now, but the first press
    said "Not booked" (no change of time was heard)."""
    view = _picker_in_focus(qtbot, gui, "Retyped")
    view.when.setSelectedSection(QDateTimeEdit.Section.YearSection)
    year = view.when.date().year()
    qtbot.keyClicks(view.when, str(QDate.currentDate().year() - 2))
    view.schedule.setFocus()  # the picker goes back
    qtbot.waitUntil(lambda: "The picker is back at" in view.schedule_error_text())

    view.when.setFocus()
    qtbot.waitUntil(view.when.hasFocus)
    view.when.setSelectedSection(QDateTimeEdit.Section.YearSection)
    qtbot.keyClicks(view.when, str(year))  # the year shown, typed over itself
    view.schedule.setFocus()
    qtbot.waitUntil(view.schedule.hasFocus)

    with qtbot.waitSignal(view.schedule_requested):
        qtbot.keyClick(view.schedule, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: "booked" in view.notice.text())


def test_a_digit_typed_into_a_full_section_is_not_said_to_be_out_of_range(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Qt refuses a digit typed where the cursor stands in a full section (a click
    between the minutes' digits, then "3"): the picker said "That time cannot be
    booked: an appointment is from now ... to ..." under Schedule, of tomorrow 09:00.
    A past year typed is still said (the test above)."""
    view = _picker_in_focus(qtbot, gui, "Digit")
    edit = view.when.findChild(QLineEdit)
    assert edit is not None
    edit.setCursorPosition(len(edit.text()) - 1)
    qtbot.mouseClick(edit, Qt.MouseButton.LeftButton, pos=edit.cursorRect().center())
    assert not edit.hasSelectedText()
    shown = view.when.text()

    qtbot.keyClick(view.when, "3")

    assert view.when.text() == shown  # refused by Qt
    assert view.schedule_error_text() == ""


@pytest.mark.parametrize("size", [(1440, 900), (1024, 768)])
def test_the_booked_line_reads_on_one_or_two_lines(
    qtbot: QtBot, make_gui: Maker, size: tuple[int, int]
) -> None:
    """Beside Cancel appointment, "Scheduled for … (UTC)." had a third of its group
    (102 px at 1440 x 900, the appointment beside the validation) and took three lines
    for a date and a zone. It has the group's width, the button under it; Cancel
    appointment is in sight with it after Schedule."""
    gui = make_gui(engine=ScriptedEngine(DME))
    gui.window.resize(*size)
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    view.approve.click()
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    view.schedule.click()
    line = view.appointment
    qtbot.waitUntil(lambda: line.text() == f"Scheduled for {view.booked_time()}.")
    qtbot.waitUntil(lambda: _in_sight(view.cancel_appointment, view._scroll))
    assert _in_sight(line, view._scroll)
    lines = line.height() / line.fontMetrics().lineSpacing()
    assert lines <= 2, f"{lines:.1f} lines in {line.width()} px"


def test_provenance_rows_that_wrap_are_shown_whole_at_1024(qtbot: QtBot, make_gui: Maker) -> None:
    """Opened 1024 wide, the provenance panel gave its rows the heights of one line:
    the image's SHA-256 and the analysis (job, scan, time), wrapped over two to four
    lines, were drawn over one another and cut at the top and bottom, an empty band under
    the last row."""
    _gui, view = _analysed_at_1024(qtbot, make_gui)
    view.provenance_toggle.click()
    qtbot.waitUntil(view.provenance.isVisible)
    values = list(view.provenance.values.values())

    def cut() -> list[str]:
        return [
            f"{v.text()!r}: {v.height()} px of {v.heightForWidth(v.width())}"
            for v in values
            if v.height() < v.heightForWidth(v.width())
        ]

    with contextlib.suppress(WaitTimedOut):
        qtbot.waitUntil(lambda: not cut(), timeout=2000)
    assert cut() == []
    assert any(v.height() > v.fontMetrics().lineSpacing() * 1.5 for v in values)  # some wrap


def test_a_verdict_waiting_for_a_locked_database_is_sent_once_and_its_error_gives_way(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program held the database's write lock: Approve and Reject stayed
    pressable while the verdict waited (Approve, then Reject, recorded both, the last
    to land winning without a word), nothing said it waited, and "The database does not
    answer" stayed under the buttons, and under the picker, after it answered again."""
    from ophthai_desktop.ui.messages import DATABASE_BACK, DATABASE_DOWN
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    monkeypatch.setattr(analysis_controller, "SENDING_NOTICE_MS", 50)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=1000):
        view.approve.click()
        assert not view.reject.isEnabled() and not view.approve.isEnabled()
        qtbot.waitUntil(lambda: view.notice.text() == "Recording the verdict…")
        view.reject.click()  # pressed while the approval waits: not sent
        qtbot.waitUntil(lambda: view.verdict_error_text() == DATABASE_DOWN, timeout=5000)
        assert view.approve.isEnabled() and view.reject.isEnabled()
        view.schedule_requested.emit(datetime.now().astimezone() + timedelta(days=3))
        qtbot.waitUntil(lambda: view.schedule_error_text() == DATABASE_DOWN, timeout=5000)
    qtbot.waitUntil(lambda: gui.window.banner.text() == DATABASE_BACK, timeout=5000)
    qtbot.waitUntil(lambda: view.verdict_error_text().startswith(DATABASE_BACK))
    assert "not recorded" in view.verdict_error_text()
    assert view.schedule_error_text().startswith(DATABASE_BACK)
    assert view.card.badge.text() == "PRELIMINARY"  # neither verdict was recorded
    view.approve.click()
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    nothing_more_happens(qtbot, gui, 300)
    assert view.card.badge.text() == "APPROVED"  # no Reject sent after it


def test_an_analyse_a_locked_database_refused_says_to_analyse_again_once_it_answers(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tab said "The database does not answer…", then only "The database answers
    again.": not that the analysis was never queued."""
    from ophthai_desktop.ui.messages import DATABASE_BACK, DATABASE_DOWN
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    open_patient(qtbot, gui, patient_id)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=300):
        view.analyse.click()
        qtbot.waitUntil(lambda: view.notice.text() == DATABASE_DOWN, timeout=5000)
    qtbot.waitUntil(lambda: view.notice.text().startswith(DATABASE_BACK), timeout=5000)
    assert "not queued: press Analyse again" in view.notice.text()
    assert not gui.application.jobs.list_jobs().items


def test_a_refused_reject_of_an_unreadable_answer_leaves_approve_off(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Approve and Reject came back on together once a verdict's answer came: after a
    refused Reject of an answer that could not be read, Approve was on, beside "there
    is nothing to approve", and its tooltip still said why it was off."""
    _gui, view = _analysed_at_1024(qtbot, make_gui, None)
    assert not view.approve.isEnabled()
    view.clinician.clear()  # refused: the validating clinician's name is required
    view.reject.click()
    qtbot.waitUntil(lambda: "clinician" in view.verdict_error_text(), timeout=5000)
    assert view.reject.isEnabled()
    assert not view.approve.isEnabled()
    assert view.approve.toolTip() == analysis_view.NOTHING_TO_APPROVE


def test_a_verdict_waiting_for_a_locked_database_waits_for_its_own_patient_only(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one patient's verdict waited for a locked database, another patient opened
    meanwhile showed Approve on, and pressed it did nothing, without a word; the first
    verdict's refusal was then said under the other patient's buttons, as if theirs."""
    from ophthai_desktop.ui.messages import DATABASE_DOWN
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    first = _patient_with_scan(gui, "First")
    second = _patient_with_scan(gui, "Second")
    for patient_id in (first, second):
        open_patient(qtbot, gui, patient_id)
        view.analyse.click()
        qtbot.waitUntil(lambda: view.card.isVisible() and view.approve.isEnabled())
    open_patient(qtbot, gui, first)
    qtbot.waitUntil(lambda: view.card.isVisible())
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=3000):
        view.approve.click()
        assert not view.approve.isEnabled()
        open_patient(qtbot, gui, second)
        qtbot.waitUntil(lambda: view.card.isVisible())
        assert view.approve.isEnabled()  # this patient's verdict is not on its way
        assert view.notice.text() != "Recording the verdict…"
        open_patient(qtbot, gui, first)
        qtbot.waitUntil(lambda: view.card.isVisible())
        assert not view.approve.isEnabled()  # back at the first: still on its way
        assert view.notice.text() == "Recording the verdict…"
        open_patient(qtbot, gui, second)
        qtbot.waitUntil(lambda: view.card.isVisible())
        view.approve.click()  # this one's own verdict: sent, and said to be on its way
        assert not view.approve.isEnabled()
        qtbot.waitUntil(lambda: view.notice.text() == "Recording the verdict…")
        # The first patient's refusal is said as theirs, not under this one's buttons.
        qtbot.waitUntil(lambda: f"First ({first})" in gui.window.banner.text(), timeout=10_000)
        assert "was not recorded" in gui.window.banner.text()
        assert view.verdict_error_text() == ""
        qtbot.waitUntil(lambda: view.verdict_error_text() == DATABASE_DOWN, timeout=10_000)


def test_approve_pressed_from_the_keyboard_keeps_the_focus_on_a_locked_database(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approve, pressed with the Space key, went grey under the focus, which Qt passed
    on to the appointment picker: there it stayed once "The database does not answer"
    was said under the buttons, a screen reader announcing the picker as if the verdict
    had been recorded and the next step were the appointment."""
    from ophthai_desktop.ui.messages import DATABASE_DOWN
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible() and view.approve.isEnabled())
    gui.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is gui.window)
    view.approve.setFocus()
    qtbot.waitUntil(view.approve.hasFocus)
    monkeypatch.setattr(analysis_controller, "SENDING_NOTICE_MS", 50)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=1000):
        qtbot.keyClick(view.approve, Qt.Key.Key_Space)
        qtbot.waitUntil(lambda: view.notice.text() == "Recording the verdict…")
        qtbot.waitUntil(lambda: view.verdict_error_text() == DATABASE_DOWN, timeout=5000)
    assert QApplication.focusWidget() is view.approve


def test_recording_the_verdict_goes_once_answered_behind_another_tab(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scans tab brought to the front while a verdict waited for a locked
    database: back on the analysis tab, "Recording the verdict…" stayed, above the
    refusal that had answered it meanwhile."""
    from ophthai_desktop.ui.messages import DATABASE_DOWN
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible() and view.approve.isEnabled())
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=1000):
        view.approve.click()
        gui.patient_page.show_tab("scans")
        qtbot.waitUntil(lambda: view.verdict_error_text() == DATABASE_DOWN, timeout=5000)
    gui.patient_page.show_tab("analysis")
    qtbot.waitUntil(view.isVisible)
    assert view.notice.text() != "Recording the verdict…"
    assert view.approve.isEnabled()


def test_an_appointment_change_waiting_for_a_locked_database_says_so_and_is_sent_once(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program held the database's write lock: nothing said that Schedule
    waited, and Schedule pressed again with another time sent both (the last to land
    winning); Cancel appointment the same. One change at a time, said while it waits."""
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    patient_id = _patient_with_scan(gui)
    open_patient(qtbot, gui, patient_id)
    first = (datetime.now().astimezone() + timedelta(days=3)).replace(microsecond=0)
    second = first + timedelta(days=1)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=5000):
        view.schedule_requested.emit(first)
        assert not view.schedule.isEnabled()
        qtbot.waitUntil(lambda: view.notice.text() == "Booking the appointment…")
        view.schedule_requested.emit(second)  # another time, while the first waits
        qtbot.wait(200)
    # The lock is gone: the first booking lands, and nothing after it.
    qtbot.waitUntil(lambda: view.schedule.isEnabled(), timeout=5000)
    nothing_more_happens(qtbot, gui, 300)
    assert view.notice.text() != "Booking the appointment…"
    assert gui.application.patients.get_patient(patient_id).appointment_date == first
    events = gui.application.audit.list_events(entity_type="patient", entity_id=patient_id)
    assert [e.action for e in events.items].count("schedule") == 1

    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=5000):
        view.cancel_appointment.click()
        box = gui.analysis.confirm
        assert isinstance(box, QMessageBox)
        box.property("yesButton").click()
        assert not view.cancel_appointment.isEnabled() and not view.schedule.isEnabled()
        qtbot.waitUntil(lambda: view.notice.text() == "Cancelling the appointment…")
        view.schedule_requested.emit(second)  # not sent while the cancel waits
        gui.analysis.cancel_appointment()  # nor asked again
        assert gui.analysis.confirm is None
        qtbot.wait(200)
    qtbot.waitUntil(lambda: view.appointment.text() == "Not scheduled.", timeout=5000)
    nothing_more_happens(qtbot, gui, 300)
    assert gui.application.patients.get_patient(patient_id).appointment_date is None
    assert view.schedule.isEnabled()


def test_a_refused_analyse_is_said_on_the_page_of_the_patient_it_was_for(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Analyse refused (the model missing, the database locked) once another patient
    was opened: the refusal was said on that other patient's page, as if theirs. It is
    said on its own patient's page once opened, and in the banner with their name."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view, banner = gui.analysis_view, gui.window.banner
    first = _patient_with_scan(gui, "First")
    second = _patient_with_scan(gui, "Second")
    open_patient(qtbot, gui, first)
    asked, release = threading.Event(), threading.Event()
    refusal = "The model is not installed: its folder holds none of its files"

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        asked.set()
        release.wait(10)
        raise ModelUnavailable(refusal)

    monkeypatch.setattr(gui.application.jobs, "ensure_patient_analysis", refused)
    view.analyse.click()
    qtbot.waitUntil(asked.is_set)
    open_patient(qtbot, gui, second)
    release.set()
    qtbot.waitUntil(lambda: refusal in banner.text() or refusal in view.notice.message())
    assert refusal not in view.notice.message()  # not the second patient's
    assert f"First ({first})" in banner.text() and "not queued" in banner.text()

    open_patient(qtbot, gui, first)
    qtbot.waitUntil(lambda: refusal in view.notice.message())
    open_patient(qtbot, gui, second)
    assert refusal not in view.notice.message()


def _analyse_refused_while_another_is_open(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> tuple[str, str, Callable[..., Any]]:
    """First's Analyse refused once Second was opened (kept for First's page); the
    two patients' ids and the service's own ensure_patient_analysis."""
    first = _patient_with_scan(gui, "First")
    second = _patient_with_scan(gui, "Second")
    open_patient(qtbot, gui, first)
    asked, release = threading.Event(), threading.Event()
    ensure = gui.application.jobs.ensure_patient_analysis

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        asked.set()
        release.wait(10)
        raise ModelUnavailable(refusal)

    monkeypatch.setattr(gui.application.jobs, "ensure_patient_analysis", refused)
    gui.analysis_view.analyse.click()
    qtbot.waitUntil(asked.is_set)
    open_patient(qtbot, gui, second)
    release.set()
    qtbot.waitUntil(lambda: refusal in gui.window.banner.text())
    return first, second, ensure


def test_a_kept_analyse_refusal_goes_once_the_analysis_is_queued_another_way(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused Analyse kept for its patient's page was said there once opened even
    after their analysis was queued another way (the watch folder, the API): the page
    said it was refused over the queued, running or finished analysis."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    refusal = "The model is not installed: its folder holds none of its files"
    first, _second, ensure = _analyse_refused_while_another_is_open(
        qtbot, gui, monkeypatch, refusal
    )
    with qtbot.waitSignal(
        gui.bridge.analysis_queued,
        check_params_cb=lambda _job, patient_id, *_rest: patient_id == first,
        timeout=10_000,
    ):
        ensure(first, actor=Actor("api", "api"))  # as the API or the watch folder would
    open_patient(qtbot, gui, first)
    assert refusal not in view.notice.message()


def test_a_kept_analyse_refusal_goes_with_its_deleted_patient(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused Analyse kept for a patient since deleted was said on the page of a new
    patient created with the same id."""
    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    refusal = "The model is not installed: its folder holds none of its files"
    first, _second, _ensure = _analyse_refused_while_another_is_open(
        qtbot, gui, monkeypatch, refusal
    )
    actor = Actor("t", "gui")
    with qtbot.waitSignal(gui.bridge.patient_deleted, timeout=10_000):
        gui.application.patients.delete_patient(first, actor=actor)
    with qtbot.waitSignal(gui.bridge.patient_created, timeout=10_000):
        gui.application.patients.create_patient({"name": "New"}, actor=actor, patient_id=first)
    open_patient(qtbot, gui, first)
    assert refusal not in view.notice.message()


def test_a_verdict_still_waiting_once_the_appointment_lands_says_so(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An appointment change and a verdict both waited for the database: the notice
    named the appointment's, and once that landed nothing said the verdict still
    waited (Approve and Reject stayed off without a word of why)."""
    from ophthai_desktop.ui.controllers.analysis import BOOKING_SENDING, VERDICT_SENDING

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    _shown_result(qtbot, gui, "Both")
    monkeypatch.setattr(analysis_controller, "SENDING_NOTICE_MS", 50)
    booking, verdict = threading.Event(), threading.Event()
    schedule = gui.application.patients.schedule_appointment
    validate = gui.application.patients.validate_analysis

    def held_schedule(*args: Any, **kwargs: Any) -> Any:
        booking.wait(10)
        return schedule(*args, **kwargs)

    def held_validate(*args: Any, **kwargs: Any) -> Any:
        verdict.wait(10)
        return validate(*args, **kwargs)

    monkeypatch.setattr(gui.application.patients, "schedule_appointment", held_schedule)
    monkeypatch.setattr(gui.application.patients, "validate_analysis", held_validate)
    try:
        view.schedule_requested.emit(datetime.now().astimezone() + timedelta(days=3))
        view.approve.click()
        qtbot.waitUntil(lambda: view.notice.message() == BOOKING_SENDING)
        booking.set()
        qtbot.waitUntil(view.schedule.isEnabled)
        assert not view.approve.isEnabled()
        booked = "The follow-up appointment is booked for"
        assert view.notice.message().startswith(booked)
        assert view.notice.message().endswith(VERDICT_SENDING)
    finally:
        booking.set()
        verdict.set()
    qtbot.waitUntil(lambda: view.card.badge.text() == "APPROVED")
    qtbot.waitUntil(lambda: VERDICT_SENDING not in view.notice.message())
    assert view.notice.message().startswith(booked)  # the booking's answer stays


def test_a_patient_reopened_while_their_booking_waits_says_it_is_booking(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-opened while their appointment's booking waited for the database, a patient's
    Schedule and Cancel appointment were off without a word of why: "Booking the
    appointment…", said before they were left, was gone."""
    from ophthai_desktop.ui.controllers.analysis import BOOKING_SENDING

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    first = _patient_with_scan(gui, "First")
    second = _patient_with_scan(gui, "Second")
    open_patient(qtbot, gui, first)
    asked, release = threading.Event(), threading.Event()
    schedule = gui.application.patients.schedule_appointment

    def held(*args: Any, **kwargs: Any) -> Any:
        asked.set()
        release.wait(10)
        return schedule(*args, **kwargs)

    monkeypatch.setattr(gui.application.patients, "schedule_appointment", held)
    when = (datetime.now().astimezone() + timedelta(days=3)).replace(microsecond=0)
    view.schedule_requested.emit(when)
    qtbot.waitUntil(asked.is_set)
    try:
        qtbot.waitUntil(lambda: view.notice.message() == BOOKING_SENDING)
        open_patient(qtbot, gui, second)
        assert view.notice.message() != BOOKING_SENDING and view.schedule.isEnabled()
        open_patient(qtbot, gui, first)
        assert not view.schedule.isEnabled()
        assert view.notice.message() == BOOKING_SENDING
    finally:
        release.set()
    qtbot.waitUntil(view.schedule.isEnabled)
    assert view.notice.message() != BOOKING_SENDING
    assert gui.application.patients.get_patient(first).appointment_date == when


def test_a_verdict_on_its_way_leaves_the_notice_until_it_has_waited_a_moment(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Recording the verdict…" replaced the notice on screen the moment Approve was
    pressed, for the few milliseconds a verdict usually takes (a flash); it is said
    only once the verdict has waited SENDING_NOTICE_MS, the buttons waiting at once."""
    from tests.ui.test_ui_patients import _database_locked_by_another_program

    gui = make_gui(engine=ScriptedEngine(DME))
    view = gui.analysis_view
    open_patient(qtbot, gui, _patient_with_scan(gui))
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible() and view.approve.isEnabled())
    view.show_notice("Shown before the verdict.", "info")
    monkeypatch.setattr(analysis_controller, "SENDING_NOTICE_MS", 60_000)
    with _database_locked_by_another_program(gui, monkeypatch, wait_ms=1000):
        view.approve.click()
        assert not view.approve.isEnabled() and not view.reject.isEnabled()
        qtbot.wait(100)
        assert view.notice.message() == "Shown before the verdict."
        qtbot.waitUntil(view.approve.isEnabled, timeout=5000)  # refused: it waited 1 s
    assert view.notice.message() != "Recording the verdict…"
