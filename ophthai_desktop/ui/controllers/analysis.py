"""The analysis tab: streams the running analysis of the shown patient, shows the
stored result, and carries the clinician's verdict and the appointment to the core."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox

from ophthai_desktop.core.domain import WorkflowStep
from ophthai_desktop.core.inference.engine import EngineStatus, ModelState
from ophthai_desktop.core.records import AnalysisRecord, JobRecord, Page, PatientRecord
from ophthai_desktop.ui.context import GuiContext
from ophthai_desktop.ui.controllers.patients import PatientsController
from ophthai_desktop.ui.display import local_datetime, step_name
from ophthai_desktop.ui.messages import (
    DATABASE_BACK,
    DATABASE_DOWN,
    describe,
    once_database_answers,
)
from ophthai_desktop.ui.views.analysis import AnalysisView
from ophthai_desktop.ui.views.confirm import ask
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.patient_page import PatientPage

log = logging.getLogger(__name__)

#: Said on the analysis tab while a verdict is on its way.
VERDICT_SENDING = "Recording the verdict…"
#: Said under the verdict's buttons once the database that refused it answers again.
VERDICT_AGAIN = f"{DATABASE_BACK} The verdict was not recorded: press Approve or Reject again."
#: Said on the analysis tab once the database that refused an Analyse answers again.
ANALYSIS_AGAIN = "The analysis was not queued: press Analyse again."
#: Said under the appointment picker once the database that refused a change answers.
APPOINTMENT_AGAIN = f"{DATABASE_BACK} The appointment was not changed: try again."
#: Said on the analysis tab while a booking, or its cancelling, is on its way.
BOOKING_SENDING = "Booking the appointment…"
CANCELLING_SENDING = "Cancelling the appointment…"
#: How long a verdict or an appointment's change waits before the notice says it is on
#: its way (the buttons wait at once): said at once, it replaced the notice shown (the
#: result to validate) for the few milliseconds a verdict usually takes, a flash.
SENDING_NOTICE_MS = 300

_T = TypeVar("_T")

#: Why Analyse is off for a patient without an image (pressed, it said "Patient pt-… has
#: no image to analyse; add one first", the id of the patient on screen).
NO_IMAGE_TO_ANALYSE = (
    "This patient has no image to analyse yet: drop one on the window, or use File ▸ Import image…"
)


@dataclass
class _Stream:
    """The text of a running analysis so far (kept while the clinician looks
    elsewhere, so coming back shows all of it)."""

    patient_id: str | None
    reasoning: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    pieces: int = 0


def model_problem(status: EngineStatus) -> str | None:
    """Why an analysis queued now would not run soon, in the engine's words; None when
    it will (ready, or installed and loaded on first use).

    Not installed or damaged, the engine's message is what is wrong (which folder or
    files) then what to do, after a heading that says which of the two it is, unless the
    engine's fault says so itself ("The model is not installed. The model is not
    installed: … holds none of its files." said it twice; "OPHTHAI_MODEL_PATH is …, but
    that folder does not exist." alone does not say that the model is missing)."""
    if status.state is ModelState.NOT_INSTALLED:
        if status.damaged:
            heading, said = "The model's files are damaged.", "is damaged"
            then = "the model's files are whole again"
        else:
            heading, said = "The model is not installed.", "is not installed"
            then = "the model is available"
        message = _sentence(status.message)
        if said not in (status.fault or ""):
            message = f"{heading} {message}"
        return f"{message} The analysis stays queued and runs once {then}."
    if status.state is ModelState.ERROR:
        return (
            f"The model is not usable: {_sentence(status.error or status.message)} "
            "Fix it (AI ▸ Check model files again) and the queued analysis will run."
        )
    if status.state is ModelState.DOWNLOADING:
        return f"The model is still downloading ({status.message}); the analysis will wait."
    return None


def _sentence(text: str) -> str:
    """``text`` ending as a sentence (the engine's errors often end without a stop)."""
    text = text.strip()
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def _booked_text(view: AnalysisView, moving: bool) -> str:
    """What Schedule did, with the time: a booking moved said "booked" as a new one did.
    (That the workflow waits for a verdict is said on the booked line, in sight.)"""
    when = view.booked_time()
    if moving:
        return f"The follow-up appointment is moved to {when}."
    return f"The follow-up appointment is booked for {when}."


class AnalysisController(QObject):
    """Drives the :class:`AnalysisView` for the patient on the page."""

    def __init__(
        self,
        ctx: GuiContext,
        view: AnalysisView,
        page: PatientPage,
        window: MainWindow,
        patients: PatientsController,
    ) -> None:
        super().__init__(view)
        self._ctx = ctx
        self._app = ctx.application
        self._view = view
        self._page = page
        self._window = window
        self._patients = patients
        self._patient_id: str | None = None
        #: The question before an appointment is cancelled, while it is asked.
        self.confirm: QMessageBox | None = None
        self._streams: dict[int, _Stream] = {}
        self._job_patients: dict[int, str | None] = {}
        #: Patients whose Analyse is being queued (a task in flight).
        self._queueing: set[str] = set()
        #: Analyses refused while another patient was on screen, by patient: what the
        #: notice says on their own page once it is opened (text, kind, and what it says
        #: once the database answers again). Said on the page on screen, the refusal
        #: read as that patient's. Dropped once their analysis is queued, starts or
        #: ends another way (the watch folder, the API), or the patient is deleted.
        self._analyse_refused: dict[str, tuple[str, str, str | None]] = {}
        #: The patients whose verdict is on its way (a database waiting for a lock held
        #: elsewhere takes up to 30 s to answer); another patient's Approve and Reject
        #: are theirs to press meanwhile.
        self._validating: set[str] = set()
        #: Patients whose appointment change (Schedule, Cancel appointment) is on its
        #: way: pressed again meanwhile, both were sent and the last to land won.
        #: What each says while it waits (re-opened meanwhile, the patient's page says
        #: it again: it showed the buttons off without a word of why).
        self._appointing: dict[str, str] = {}
        self._shown_job: int | None = None
        self._waiting_job: int | None = None  # the shown patient's queued job
        self._no_scan_shown = False  # the page says the patient has no scan
        self._model_state = ""  # the model's state as last announced
        self._model_notice = ""  # the model problem the notice last told of
        #: The notice that a new result replaced the one the notes were typed for.
        self._replaced_notice = ""
        #: Says that a change still waits, once it has waited SENDING_NOTICE_MS.
        self._sending_notice = QTimer(self)
        self._sending_notice.setSingleShot(True)
        self._sending_notice.timeout.connect(self._on_sending_notice_timeout)
        #: The notice that Analyse joined an open job: (job id, its state then, text).
        self._joined: tuple[int, str, str] | None = None
        #: Reads of the queue on their way back from the task pool, and what the window
        #: heard meanwhile of jobs starting, queued again or ending ("running", "queued",
        #: "ended"): what such a read says of those jobs is older than the page.
        self._reads = 0
        self._heard: dict[int, str] = {}
        view.set_clinician(ctx.actor.who)
        self._clinician = ctx.actor.who  # the name filled in for the verdict

        patients.patient_opened.connect(self._on_patients_patient_opened)
        patients.patient_changed.connect(self._on_patients_patient_changed)
        patients.day_watch.day_changed.connect(self._view.follow_today)
        view.analyse_requested.connect(self.analyse)
        page.analyse_requested.connect(self.analyse)
        window.analyse_action.triggered.connect(self.analyse)
        view.validate_requested.connect(self.validate)
        view.schedule_requested.connect(self.schedule)
        view.appointment_cancel_requested.connect(self.cancel_appointment)
        view.copy_requested.connect(self.copy_result)
        bridge = ctx.bridge
        bridge.analysis_queued.connect(self._on_bridge_analysis_queued)
        bridge.analysis_started.connect(self._on_bridge_analysis_started)
        bridge.analysis_progressed.connect(self._on_bridge_analysis_progressed)
        bridge.analysis_finished.connect(self._on_bridge_analysis_finished)
        bridge.analysis_failed.connect(self._on_bridge_analysis_failed)
        bridge.analysis_cancelled.connect(self._on_bridge_analysis_cancelled)
        bridge.model_state_changed.connect(self._on_bridge_model_state_changed)
        bridge.database_availability_changed.connect(self._on_bridge_database_availability_changed)
        bridge.patient_deleted.connect(self._on_bridge_patient_deleted)

    # The shown patient -------------------------------------------------------------------

    @Slot(object)
    def _on_patients_patient_opened(self, patient: PatientRecord | None) -> None:
        if (patient.id if patient else None) != self._patient_id:
            self._view.notes.clear()  # notes belong to the patient they were typed for
            self._view.scroll_to_top()  # their state and Analyse, not the last one's place
        self._patient_id = patient.id if patient else None
        self._offer_analyse(patient)
        self._shown_job = None
        self._waiting_job = None
        self._no_scan_shown = False
        self._joined = None
        self._view.notice.dismiss()
        refused = self._analyse_refused.pop(patient.id, None) if patient else None
        if refused is not None:  # their Analyse, refused while they were not on screen
            text, kind, resolved = refused
            self._view.notice.show_message(text, kind, resolved=resolved)
        self._view.mark_verdict_field(None)  # a refusal belongs to the patient it was for
        # Approve and Reject wait for this patient's verdict on its way, not another's.
        sending = self._patient_id in self._validating
        self._view.set_verdict_sending(sending)
        if sending:
            self._view.notice.show_message(VERDICT_SENDING, "info")
        self._view.show_schedule_error("")
        appointing = self._appointing.get(patient.id) if patient is not None else None
        self._view.set_appointment_sending(appointing is not None)
        if appointing is not None:
            self._view.notice.show_message(appointing, "info")
        if patient is None:
            self._view.show_empty()
            return
        self._show_appointment(patient)
        self._view.reset_appointment_time(patient.appointment_date)
        streaming = self._stream_of(patient.id)
        if streaming is not None:
            job_id, stream = streaming
            self._shown_job = job_id
            self._view.start_stream(self._progress_text(job_id, stream), stream.pieces)
            self._view.append_stream("reasoning", "".join(stream.reasoning))
            if stream.answer:
                self._view.append_stream("answer", "".join(stream.answer))
            return
        if patient.latest_analysis is not None:
            self._view.show_result(patient.latest_analysis)
        else:
            self._show_nothing_yet(patient)
        self._look_for_open_jobs(patient)

    @Slot(object)
    def _on_patients_patient_changed(self, patient: PatientRecord) -> None:
        self._show_appointment(patient)
        self._offer_analyse(patient)
        latest = patient.latest_analysis
        if self._shown_job is not None:
            return
        if latest is None:
            if self._no_scan_shown and patient.scan_count > 0 and self._waiting_job is None:
                self._show_nothing_yet(patient)  # its first scan arrived
            return
        shown = self._view.analysis
        if shown is None or (shown.id, shown.status) != (latest.id, latest.status):
            self._view.show_result(latest)

    def _show_appointment(self, patient: PatientRecord) -> None:
        """The booked line, saying while no verdict is recorded that the workflow waits
        for one (said in the banner alone, it was out of sight at the picker)."""
        pending = patient.workflow_step < int(WorkflowStep.SCHEDULING)
        self._view.set_appointment(patient.appointment_date, pending_verdict=pending)

    def _offer_analyse(self, patient: PatientRecord | None) -> None:
        """Analyse (the tab's, the page's, the menu's) only for a patient with an image
        to analyse; without one it is off and says why. (With no patient the window
        turns the menu's off itself.)"""
        why_not = NO_IMAGE_TO_ANALYSE if patient is not None and not patient.scan_count else ""
        self._view.offer_analyse(why_not)
        self._page.offer_analyse(why_not)
        if patient is not None:
            self._window.offer_analyse(why_not)

    def _show_nothing_yet(self, patient: PatientRecord) -> None:
        self._no_scan_shown = patient.scan_count == 0
        if self._no_scan_shown:
            self._view.show_empty("No scan yet. Drop an image here, or use File ▸ Import image.")
        else:
            self._view.show_empty()

    def _stream_of(self, patient_id: str) -> tuple[int, _Stream] | None:
        for job_id, stream in self._streams.items():
            if stream.patient_id == patient_id:
                return job_id, stream
        return None

    def _look_for_open_jobs(self, patient: PatientRecord) -> None:
        """Show a running or queued analysis of the patient, or that their newest one
        failed (the page would otherwise show no analysis, or an older result)."""
        patient_id = patient.id

        def fetch() -> tuple[Page[JobRecord], Page[JobRecord], Page[JobRecord], str | None]:
            """Runs on a pool thread."""
            jobs = self._app.jobs
            newest = jobs.list_jobs(patient_id=patient_id, limit=1)
            return (
                jobs.list_jobs(patient_id=patient_id, state="running", limit=1),
                jobs.list_jobs(patient_id=patient_id, state="queued", limit=1),
                newest,
                self._cancelled_by(newest.items[0]) if newest.items else None,
            )

        def done(
            pages: tuple[Page[JobRecord], Page[JobRecord], Page[JobRecord], str | None],
        ) -> None:
            running, queued, newest, cancelled_by = pages
            heard = self._read_arrived()
            if patient_id != self._patient_id or self._shown_job is not None:
                return
            open_jobs = running.items or queued.items
            if open_jobs and open_jobs[0].id in heard:
                # It started, ended or was queued again (the model unloaded) while this
                # was read: the page shows how, and this read is older.
                return
            if running.items:
                self._shown_job = running.items[0].id
                self._view.start_stream(f"Analysing (job #{self._shown_job})…", tokens=None)
            elif queued.items:
                self._show_queued(queued.items[0].id)
                self.explain_model_state()
            elif newest.items and newest.items[0].state == "failed":
                self._show_newest_failed(newest.items[0], patient.latest_analysis)
            elif newest.items and newest.items[0].state == "cancelled":
                self._show_newest_cancelled(newest.items[0], patient.latest_analysis, cancelled_by)

        def failed(exc: BaseException) -> None:
            self._window.banner.show_message(describe(exc), "error")

        self._read_jobs(fetch, done, failed)

    def _read_jobs(
        self,
        fn: Callable[[], _T],
        done: Callable[[_T], None],
        failed: Callable[[BaseException], None],
        *,
        change: bool = False,
    ) -> None:
        """Read the queue on the task pool (``change``: ``fn`` writes, as Analyse
        queueing a job); ``done`` calls :meth:`_read_arrived` first."""
        self._reads += 1

        def on_error(exc: BaseException) -> None:
            self._read_arrived()
            failed(exc)

        self._ctx.tasks.submit(fn, done, on_error, change=change)

    def _read_arrived(self) -> dict[int, str]:
        """A read of the queue is back: what was heard of jobs while it was away."""
        self._reads -= 1
        heard = self._heard
        if not self._reads:
            self._heard = {}
        return heard

    def _heard_of(self, job_id: int, state: str) -> None:
        """A job started, was queued again or ended: news to the reads on their way."""
        if self._reads:
            self._heard[job_id] = state

    def _cancelled_by(self, job: JobRecord) -> str | None:
        """Who cancelled ``job`` as the audit trail has it (None when it was not
        cancelled, or nobody is recorded). Runs on a pool thread."""
        if job.state != "cancelled":
            return None
        events = self._app.audit.list_events(entity_type="job", entity_id=str(job.id), limit=20)
        return next((event.actor for event in events.items if event.action == "cancel"), None)

    def _show_newest_cancelled(
        self, job: JobRecord, latest: AnalysisRecord | None, by: str | None
    ) -> None:
        """The newest analysis was cancelled: said as a failure is (with when and by
        whom), not "No analysis yet"; Analyse stays offered to run it again."""
        if latest is not None and latest.created_at >= job.created_at:
            return  # a result came after the cancellation
        text = f"The last analysis (job #{job.id}) was cancelled"
        if job.finished_at is not None:
            text += f" on {local_datetime(job.finished_at)}"
        if by:
            text += f" by {by}"
        text += ". Press Analyse to run it again."
        if latest is not None:
            text += " The result below is from an earlier analysis."
        self._view.set_state(text)

    def _show_newest_failed(self, job: JobRecord, latest: AnalysisRecord | None) -> None:
        if latest is not None and latest.created_at >= job.created_at:
            return  # a result came after the failure
        text = f"The newest analysis (job #{job.id}) failed: {job.error or 'no reason given'}"
        if latest is not None:
            text += ". The result below is from an earlier analysis."
        self._view.show_failure(text)

    # Analysis events ----------------------------------------------------------------------

    def _drop_analyse_refused(self, patient_id: str | None) -> None:
        """``patient_id``'s analysis was queued, started or finished another way: the
        Analyse refused meanwhile is over (said on their page, it read as a refusal of
        the analysis now queued, running or finished)."""
        if patient_id is not None:
            self._analyse_refused.pop(patient_id, None)

    @Slot(str)
    def _on_bridge_patient_deleted(self, patient_id: str) -> None:
        """A refusal kept for a deleted patient is not said to one created with their id."""
        self._drop_analyse_refused(patient_id)

    @Slot(int, object, bool, int, object)
    def _on_bridge_analysis_queued(
        self,
        job_id: int,
        patient_id: str | None,
        requeued: bool,
        _priority: int,
        _created_at: datetime,
    ) -> None:
        self._job_patients[job_id] = patient_id
        self._drop_analyse_refused(patient_id)
        if requeued:
            self._heard_of(job_id, "queued")
        if job_id in self._streams and not requeued:
            return  # its start came first (the worker wakes before the window hears)
        if requeued and self._streams.pop(job_id, None) is not None:  # the model unloaded
            if job_id == self._shown_job:
                self._shown_job = None
                earlier = self._show_earlier_result()
                self._view.set_state(
                    f"Queued again (job #{job_id}): the model was unloaded during the "
                    f"analysis. It runs again once the model is loaded.{earlier}"
                )
            return
        if patient_id is not None and patient_id == self._patient_id and self._shown_job is None:
            self._show_queued(job_id)

    @Slot(int, object)
    def _on_bridge_analysis_started(self, job_id: int, patient_id: str | None) -> None:
        self._job_moved(job_id, ended=False)
        self._drop_analyse_refused(patient_id)
        stream = _Stream(patient_id)
        self._streams[job_id] = stream
        if patient_id is not None and patient_id == self._patient_id:
            self._shown_job = job_id
            self._view.start_stream(self._progress_text(job_id, stream), stream.pieces)

    @Slot(int, str, str, int)
    def _on_bridge_analysis_progressed(
        self, job_id: int, phase: str, text: str, pieces: int
    ) -> None:
        stream = self._streams.get(job_id)
        if stream is None:  # started before the window opened
            stream = self._streams[job_id] = _Stream(self._job_patients.get(job_id))
        (stream.answer if phase == "answer" else stream.reasoning).append(text)
        stream.pieces += pieces
        if job_id == self._shown_job or (
            stream.patient_id is not None and stream.patient_id == self._patient_id
        ):
            if self._shown_job != job_id:
                self._shown_job = job_id
                self._view.start_stream()
            self._view.append_stream(phase, text)
            self._view.show_progress(self._progress_text(job_id, stream), stream.pieces)

    @Slot(int, object, object)
    def _on_bridge_analysis_finished(
        self, job_id: int, patient_id: str | None, analysis: AnalysisRecord
    ) -> None:
        self._job_moved(job_id, ended=True)
        self._streams.pop(job_id, None)
        self._job_patients.pop(job_id, None)
        self._drop_analyse_refused(patient_id)
        if patient_id is not None and patient_id == self._patient_id:
            self._shown_job = None
            before = self._view.analysis
            self._view.show_result(analysis)
            if (
                before is not None
                and before.patient_id == analysis.patient_id
                and before.id != analysis.id
                and self._view.notes.toPlainText().strip()
            ):
                # The notes were typed for the result shown before: kept, but the
                # verdict now goes to this one.
                self._replaced_notice = (
                    f"A new result (analysis #{analysis.id}) replaced the one your notes "
                    f"were written for (analysis #{before.id}). Your notes are kept: read "
                    "the new result before approving or rejecting it."
                )
                self._view.show_notice(self._replaced_notice, "warning")

    @Slot(int, object, str)
    def _on_bridge_analysis_failed(self, job_id: int, patient_id: str | None, reason: str) -> None:
        self._job_moved(job_id, ended=True)
        self._streams.pop(job_id, None)
        self._job_patients.pop(job_id, None)
        if patient_id is not None and patient_id == self._patient_id:
            self._shown_job = None
            earlier = self._show_earlier_result()
            text = f"The analysis failed: {reason}"
            self._view.show_failure(f"{_sentence(text)}{earlier}" if earlier else text)

    @Slot(int, object)
    def _on_bridge_analysis_cancelled(self, job_id: int, patient_id: str | None) -> None:
        self._job_moved(job_id, ended=True)
        self._streams.pop(job_id, None)
        self._job_patients.pop(job_id, None)
        if patient_id is not None and patient_id == self._patient_id:
            self._shown_job = None
            earlier = self._show_earlier_result()
            self._view.set_state(f"The analysis (job #{job_id}) was cancelled.{earlier}")

    def _show_earlier_result(self) -> str:
        """The shown analysis stopped (cancelled, failed, or queued again by an unload)
        without a result: the patient's newest result, which its stream had replaced,
        is shown again, as opening the patient shows it, so that its verdict can still
        be given. Returns the words to add to the state.

        Without one, the stopped run's text stays (what the model wrote before a failure
        can tell why), said to be unfinished: read on its own, half an answer looked like
        a result (the verdict stays off, as it was while the run streamed)."""
        patient = self._patients.current_patient
        if patient is None or patient.id != self._patient_id or patient.latest_analysis is None:
            if self._view.stop_stream():
                return " The text below is the model's unfinished output, not a result."
            return ""
        self._view.show_result(patient.latest_analysis)
        return " The result below is from an earlier analysis."

    def _progress_text(self, job_id: int, stream: _Stream) -> str:
        phase = "writing its answer" if stream.answer else "reasoning"
        return f"Analysing (job #{job_id}): the model is {phase}…"

    def _job_moved(self, job_id: int, *, ended: bool) -> None:
        """The job left the queue: it started, or it ended."""
        self._heard_of(job_id, "ended" if ended else "running")
        if job_id == self._waiting_job:
            self._waiting_job = None
        joined = self._joined
        # Only a notice about this job, and only once it says what is no longer so (a
        # job said to be running still runs when its late start event comes).
        if joined is not None and joined[0] == job_id and (ended or joined[1] == "queued"):
            self._joined = None
            if self._view.notice.message() == joined[2]:
                self._view.notice.dismiss()

    def _show_queued(self, job_id: int) -> None:
        self._waiting_job = job_id
        self._no_scan_shown = False
        self._view.set_state(self._queued_text(job_id))

    @Slot(str, str, object)
    def _on_bridge_model_state_changed(self, state: str, _message: str, _progress: object) -> None:
        """A queued analysis on the page says again why it waits (or that it no longer
        does) when the model's state changes: a load that failed meanwhile is said where
        the clinician is looking. (Download progress repeats the state: nothing to say.)"""
        if state == self._model_state:
            return
        self._model_state = state
        if self._waiting_job is None or self._shown_job is not None:
            return
        self._view.set_state(self._queued_text(self._waiting_job))
        shown = self._model_notice
        if not self.explain_model_state() and shown and self._view.notice.message() == shown:
            self._view.notice.dismiss()  # the model problem it told of is over

    def _queued_text(self, job_id: int) -> str:
        text = f"Queued for analysis (job #{job_id})."
        problem = model_problem(self._app.engine.status())
        if problem:
            text += " Waiting: the model is not available (see the note below)."
        elif self._app.worker.holding:
            text += (
                " Waiting: the model was unloaded; it runs once the model is loaded "
                "(AI ▸ Load model, or Analyse)."
            )
        elif self._app.engine.status().state is ModelState.INSTALLED:
            text += " The model is loaded first; this takes a while."
        return text

    # What the clinician does ----------------------------------------------------------------

    @Slot()
    def analyse(self) -> None:
        """Queue the analysis of the shown patient's newest scan; says so when the model
        cannot run it yet."""
        patient_id = self._patient_id
        if patient_id is None or patient_id in self._queueing:
            return  # a second click while the first is being queued
        self._queueing.add(patient_id)
        self._analyse_refused.pop(patient_id, None)  # asked again: that one is over
        model_problem_shown = self.explain_model_state()
        record = self._page.patient
        who = f"{record.name} ({patient_id})" if record is not None else patient_id

        def queue() -> tuple[JobRecord, bool, int]:
            """The newest scan's open analysis if there is one (the service does not
            queue a second one of the same scan), else a new one; and, for one joined
            while queued, how many queued analyses run before it. The model's files are
            looked at first (here, off the GUI thread): gone since they were last found
            (an unload, then the folder deleted), the page says the model is not
            installed, as the API's 503 does, rather than that it is loaded first."""
            self._app.engine.confirm_installed()
            jobs = self._app.jobs
            job, new = jobs.ensure_patient_analysis(patient_id, actor=self._ctx.actor)
            ahead = jobs.queued_ahead(job.id) if not new and job.state == "queued" else 0
            return job, new, ahead

        def done(result: tuple[JobRecord, bool, int]) -> None:
            heard = self._read_arrived()
            self._queueing.discard(patient_id)
            job, new, ahead = result
            if job.state == "queued":
                self._app.worker.resume_queue()  # a queue held since an unload runs
            self._page.show_tab("analysis")
            # Its start or end may have come while this was on its way (a slow pool
            # thread): the page shows that, and this answer is older.
            state = heard.get(job.id, job.state)
            if patient_id != self._patient_id or state == "ended":
                return
            # The files looked at on the way (see queue) may have been found gone.
            problem_shown = model_problem_shown or self.explain_model_state()
            if not new and not problem_shown:
                if state == "queued" and ahead:  # asked for again, behind others asked for
                    others = "analysis runs" if ahead == 1 else "analyses run"
                    text = (
                        f"This patient's analysis (job #{job.id}) is queued; {ahead} other "
                        f"requested {others} before it."
                    )
                elif state == "queued":  # asked for again: runs next (held or not)
                    text = f"This patient's analysis (job #{job.id}) is queued and runs next."
                else:
                    text = (
                        f"This patient's analysis is already {state} (job #{job.id}); "
                        "cancel it in the job queue to start another."
                    )
                self._view.show_notice(text, "info")
                self._joined = (job.id, state, text)
            if self._shown_job is None and state == "queued":
                self._show_queued(job.id)

        def failed(exc: BaseException) -> None:
            self._queueing.discard(patient_id)
            # Once the database answers again, said that nothing was queued (it said
            # only that the database answers, as if the analysis had been asked for).
            text, resolved = describe(exc), once_database_answers(exc, ANALYSIS_AGAIN)
            if patient_id == self._patient_id:
                self._view.notice.show_message(text, "error", resolved=resolved)
                return
            # Another patient is on screen: said on the page of the patient it was for,
            # once opened, and meanwhile in the banner with their name.
            self._analyse_refused[patient_id] = (text, "error", resolved)
            not_queued = f"The analysis of {who} was not queued"
            self._window.banner.show_message(
                f"{not_queued}: {text}",
                "error",
                resolved=once_database_answers(
                    exc, f"{not_queued}: open them and press Analyse again."
                ),
            )

        self._read_jobs(queue, done, failed, change=True)

    @Slot()
    def follow_user_name(self) -> None:
        """The name in the audit trail changed (Settings): the verdict's clinician
        field follows it, unless a name was typed in, so that a verdict is not
        recorded under the previous user's name while the audit trail names the new."""
        self._view.set_clinician(self._ctx.actor.who, replacing=self._clinician)
        self._clinician = self._ctx.actor.who

    def explain_model_state(self) -> bool:
        """Show why the model cannot run an analysis now; False when it can."""
        problem = model_problem(self._app.engine.status())
        if problem is None:
            return False
        self._view.show_notice(problem, "warning")
        self._model_notice = problem
        return True

    @Slot(bool, str, str)
    def validate(self, approved: bool, clinician: str, notes: str) -> None:
        patient_id = self._patient_id
        if patient_id is None or patient_id in self._validating:
            return
        # Approve and Reject wait for the verdict's answer: pressed again while a locked
        # database kept it waiting, both verdicts were recorded, the last to land
        # silently winning (Approve, then Reject: rejected).
        self._validating.add(patient_id)
        self._view.set_verdict_sending(True)
        self._sending_notice.start(SENDING_NOTICE_MS)  # said if it still waits then

        shown = self._view.analysis.id if self._view.analysis is not None else None
        record = self._page.patient
        who = f"{record.name} ({patient_id})" if record is not None else patient_id

        def sent() -> None:
            self._validating.discard(patient_id)
            if patient_id != self._patient_id:
                return  # another patient's buttons and notice are on screen
            self._view.set_verdict_sending(False)
            said = self._view.notice.message()
            if said.endswith(f" {VERDICT_SENDING}"):  # the appointment's answer stays
                self._view.notice.show_message(said.removesuffix(f" {VERDICT_SENDING}"), "info")
            if said == VERDICT_SENDING:  # also behind another tab
                self._view.notice.dismiss()
                appointing = self._appointing.get(patient_id)
                if appointing is not None:  # the appointment's change still waits
                    self._view.notice.show_message(appointing, "info")

        def done(patient: PatientRecord) -> None:
            sent()
            if patient.id != self._patient_id:
                return
            latest = patient.latest_analysis
            if latest is not None:
                self._view.show_result(latest)
            self._view.notes.clear()
            self._view.mark_verdict_field(None)  # a refusal shown before no longer applies
            if self._replaced_notice and self._view.notice.message() == self._replaced_notice:
                self._view.notice.dismiss()  # the verdict is recorded: said and done
            if (
                latest is not None
                and latest.status == "rejected"
                and latest.parse_status == "parse_failed"
            ):
                self._view.focus_analyse_again()  # no result: the next step is Analyse
            else:
                self._view.focus_appointment()

        def failed(exc: BaseException) -> None:
            sent()
            if patient_id != self._patient_id:
                # Said under the buttons on screen, it read as the shown patient's.
                self._window.banner.show_message(
                    f"The verdict on {who} was not recorded: {describe(exc)}",
                    "error",
                    resolved=once_database_answers(
                        exc, f"The verdict on {who} was not recorded: open them and validate again."
                    ),
                )
                return
            field = getattr(exc, "field", None)
            self._view.mark_verdict_field(field if isinstance(field, str) else None, describe(exc))

        self._ctx.tasks.submit(
            lambda: self._app.patients.validate_analysis(
                patient_id,
                approved=approved,
                clinician=clinician,
                notes=notes.strip() or None,
                analysis_id=shown,
                actor=self._ctx.actor,
            ),
            done,
            failed,
            change=True,
        )

    @Slot(bool)
    def _on_bridge_database_availability_changed(self, available: bool) -> None:
        """The database answers again: a verdict's or an appointment's "does not answer"
        gives way to what to do now (it stayed under the window's banner saying that
        the database answers again), as does an Analyse's kept for its patient's page."""
        if not available:
            return
        for patient_id, (_text, _kind, resolved) in list(self._analyse_refused.items()):
            if resolved is not None:  # as the notice would have said on their page
                self._analyse_refused[patient_id] = (resolved, "info", None)
        view = self._view
        if view.verdict_error_text() == DATABASE_DOWN:
            view.mark_verdict_field(None, VERDICT_AGAIN)
        if view.schedule_error_text() == DATABASE_DOWN:
            view.show_schedule_error(APPOINTMENT_AGAIN)

    @Slot()
    def copy_result(self) -> None:
        """Put the shown result on the clipboard once the export is in the audit log (a
        failed record copies nothing and says why)."""
        analysis = self._view.analysis
        if analysis is None:
            return
        text = self._view.result_text()

        def done(_none: None) -> None:
            QGuiApplication.clipboard().setText(text)
            self._view.show_copied()

        self._ctx.tasks.submit(
            lambda: self._app.audit.record_action(
                self._ctx.actor,
                "export",
                "analysis",
                analysis.id,
                {"patient_id": analysis.patient_id, "to": "clipboard"},
            ),
            done,
            lambda exc: self._view.show_notice(describe(exc), "error"),
            change=True,  # the export's audit record
        )

    @Slot()
    def cancel_appointment(self) -> None:
        """Ask, then call off the shown patient's follow-up appointment (a complete
        patient goes back to scheduling, as the core has it; one booked before a verdict
        stays where it is): one click next to Schedule must not lose a booking."""
        patient_id = self._patient_id
        if patient_id is None or patient_id in self._appointing:
            return
        booked = self._view.booked_time()
        shown = self._patients.current_patient
        step = shown.workflow_step if shown is not None and shown.id == patient_id else 0
        # A patient booked before a verdict (not yet analysed or validated, or whose
        # unreadable answer was rejected) was told they went back to scheduling.
        if step >= int(WorkflowStep.COMPLETE) or not step:
            then = "The patient goes back to the Scheduling step."
        else:
            then = f"The patient stays at the {step_name(step)} step."
        self.confirm = ask(
            self._window,
            "Cancel appointment",
            f"Cancel the follow-up appointment on {booked}? {then}",
            "Cancel appointment",
            lambda: self._cancel_appointment(patient_id),
            no_text="Keep appointment",
        )

    def _cancel_appointment(self, patient_id: str) -> None:
        self.confirm = None
        if not self._send_appointment(patient_id, CANCELLING_SENDING):
            return
        sending = CANCELLING_SENDING

        def done(patient: PatientRecord) -> None:
            self._appointment_sent(patient_id, sending)
            if patient.id == self._patient_id:
                self._show_appointment(patient)
                self._view.show_schedule_error("")
                self._view.notice.show_message(
                    self._while_verdict_waits(
                        patient_id, "The follow-up appointment is cancelled."
                    ),
                    "info",
                )

        def failed(exc: BaseException) -> None:
            self._appointment_sent(patient_id, sending)
            if patient_id == self._patient_id:
                self._view.show_schedule_error(describe(exc))

        self._ctx.tasks.submit(
            lambda: self._app.patients.update_patient(
                patient_id, {"appointment_date": None}, actor=self._ctx.actor
            ),
            done,
            failed,
            change=True,
        )

    def _send_appointment(self, patient_id: str, sending: str) -> bool:
        """A change of ``patient_id``'s appointment goes out, said while it waits (a
        database locked by another program takes up to 30 s to answer); False where one
        is already on its way (nothing is sent)."""
        if patient_id in self._appointing:
            return False
        self._appointing[patient_id] = sending
        self._view.set_appointment_sending(True)
        self._sending_notice.start(SENDING_NOTICE_MS)  # said if it still waits then
        return True

    @Slot()
    def _on_sending_notice_timeout(self) -> None:
        """A change of the patient on the page still waits: say so (the appointment's,
        where a verdict waits too; the verdict's is said once the appointment's lands)."""
        patient_id = self._patient_id
        if patient_id in self._appointing:
            self._view.notice.show_message(self._appointing[patient_id], "info")
        elif patient_id in self._validating:
            self._view.notice.show_message(VERDICT_SENDING, "info")

    def _appointment_sent(self, patient_id: str, sending: str) -> None:
        """The change of ``patient_id``'s appointment is back (done or refused)."""
        self._appointing.pop(patient_id, None)
        if patient_id == self._patient_id:
            self._view.set_appointment_sending(False)
            if self._view.notice.message() == sending:  # also behind another tab
                self._view.notice.dismiss()
                if patient_id in self._validating:  # the verdict still waits: say so
                    self._view.notice.show_message(VERDICT_SENDING, "info")

    def _while_verdict_waits(self, patient_id: str, text: str) -> str:
        """``text`` (the appointment's answer), saying also that the verdict still waits
        where it does (said alone, nothing told why Approve and Reject stayed off)."""
        return f"{text} {VERDICT_SENDING}" if patient_id in self._validating else text

    @Slot(object)
    def schedule(self, when: datetime) -> None:
        patient_id = self._patient_id
        if patient_id is None or not self._send_appointment(patient_id, BOOKING_SENDING):
            return
        moving = self._view.booked is not None
        sending = BOOKING_SENDING

        def done(patient: PatientRecord) -> None:
            self._appointment_sent(patient_id, sending)
            if patient.id == self._patient_id:
                self._show_appointment(patient)
                self._view.show_schedule_error("")
                booked = _booked_text(self._view, moving)
                self._view.notice.show_message(
                    self._while_verdict_waits(patient_id, booked), "info"
                )
                self._view.show_booking()

        def failed(exc: BaseException) -> None:
            self._appointment_sent(patient_id, sending)
            if patient_id == self._patient_id:
                self._view.show_schedule_error(describe(exc))

        self._ctx.tasks.submit(
            lambda: self._app.patients.schedule_appointment(
                patient_id, when, actor=self._ctx.actor
            ),
            done,
            failed,
            change=True,
        )
