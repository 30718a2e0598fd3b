"""The inference worker: the one thread that owns the model.

It claims jobs from the persistent queue, runs the engine, streams the model's text as
:class:`AnalysisProgressed` events and hands the result to :class:`JobService`. A job
that fails is recorded as failed and the worker goes on. The desktop app runs
:meth:`InferenceWorker.run` inside a QThread; ``ophthai serve`` uses :meth:`start`,
which runs it on a plain thread.

While the model is not installed, queued jobs wait (they are processed once it is);
when it is installed but not loaded, the first job loads it. Unloading the model stops
the running job and queues it again; the jobs waiting then run when the model is
loaded again (a load asked for, or a new analysis, which loads it on first use).
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol, TypeVar

from PIL import Image, UnidentifiedImageError
from sqlalchemy.exc import SQLAlchemyError

from ophthai_desktop.core.errors import (
    ChangeRolledBack,
    DatabaseUnavailable,
    InvalidInput,
    ModelUnavailable,
    NoRoom,
    NotFound,
    OphthaiError,
    PayloadTooLarge,
)
from ophthai_desktop.core.events import (
    AnalysisCancelRequested,
    AnalysisProgressed,
    AnalysisQueued,
    AnalysisStarted,
    Event,
    EventBus,
    PatientDeleted,
    QueueWaitingChanged,
)
from ophthai_desktop.core.imaging import pillow_reason, too_many_pixels_to_decode_message
from ophthai_desktop.core.inference.download import HOW_TO_DOWNLOAD
from ophthai_desktop.core.inference.engine import EngineStatus, GenerationResult, ModelState
from ophthai_desktop.core.inference.parsing import StreamPhases
from ophthai_desktop.core.inference.preprocess import UnreadablePixels
from ophthai_desktop.core.log_safety import safe_description
from ophthai_desktop.core.records import JobRecord
from ophthai_desktop.core.services.jobs import JobService

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often an idle worker looks at the queue even without a wake-up.
IDLE_POLL_S = 1.0

#: How long stopping waits for a running job: it is cancelled, and generation checks
#: the cancel after every token.
JOB_STOP_WAIT_S = 30.0

#: The model's states in which queued analyses wait for it, each said as "model <state>".
_BUSY_STATES = (ModelState.LOADING, ModelState.UNLOADING, ModelState.DOWNLOADING)
#: Why queued analyses wait after an unload, until the model is loaded again.
HELD_AFTER_UNLOAD = "the model was unloaded; load it to run the queue"
#: Why analyses wait while the database's disk is full: unlike an outage, it lasts until
#: someone frees space, so the queue says so (the job list, the API's job) besides the log.
WAITING_FOR_ROOM = (
    "the disk is full: free space on it. A finished analysis is stored, and queued ones "
    "run, once there is room (none is lost or failed for it)"
)

#: How long stopping waits for a model load, which cannot be interrupted (minutes for
#: the 7B model). It only reads the model's files, so the app does not wait it out.
LOAD_STOP_WAIT_S = 2.0


class Engine(Protocol):
    """What the worker needs from :class:`~ophthai_desktop.core.inference.InferenceEngine`."""

    def status(self) -> EngineStatus: ...

    def load(self) -> EngineStatus: ...

    def unload(self) -> EngineStatus: ...

    def generate(
        self,
        image: Image.Image,
        *,
        on_delta: Callable[[str], None] | None = ...,
        cancel: threading.Event | None = ...,
        question: str | None = ...,
        modality: str | None = ...,
    ) -> GenerationResult: ...


#: The start of an engine's fault that says what the worker's heading says already
#: ("OctoMed/OctoMed-7B is not installed: it is not in ...", "The model in F is damaged:
#: a.safetensors is missing ...").
_FAULT_HEADING = re.compile(r"^(?P<subject>.+?) is (?:not installed|damaged): (?P<rest>.+)$", re.S)


def _after_heading(fault: str) -> str:
    """``fault`` said after the heading "the model is not installed." (or "the model's
    files are damaged."), without saying it again: "OctoMed/OctoMed-7B: it is not in
    ...", "F holds none of its files.", "The model in F: a.safetensors is missing ..."."""
    said = _FAULT_HEADING.match(fault)
    if said is None:
        return fault
    subject, rest = said["subject"], said["rest"]
    if subject.lower() == "the model":
        return rest  # begins with a folder, named as set: never given a capital
    return f"{subject}: {rest}"


def _unusable(problem: str) -> str:
    """Why queued analyses wait on a model that failed to load (or to download), and
    what makes them run: the engine stays in its error state until someone checks the
    files again, so that a damaged model is not loaded again and again. The engine's
    message says what to put right (its files, or a setting such as the device)."""
    problem = problem.strip()
    if not problem.endswith((".", "!", "?")):
        problem += "."
    return (
        f"{problem} Queued analyses stay queued (none is failed) and run once the model "
        "loads: put right what this says, then check again (AI ▸ Check model files "
        "again, or POST /api/ai/load-model)."
    )


def _not_installed(status: EngineStatus) -> str:
    """Why queued analyses wait on a model not installed (or damaged), and what to do.
    The engine says what is missing (a folder, or one of its files); the advice is said
    here, once, with what happens to the queue."""
    what = _after_heading((status.fault or "").strip())
    if what and not what.endswith((".", "!", "?")):
        what += "."
    if status.damaged:  # found, but cut short: never "not installed"
        return (
            f"the model's files are damaged. {what + ' ' if what else ''}"
            "Queued analyses stay queued and run once the files are whole: download "
            f"the model again ({HOW_TO_DOWNLOAD}) or put back a complete copy."
        )
    return (
        f"the model is not installed. {what + ' ' if what else ''}Queued analyses "
        f"stay queued and run once it is: download it ({HOW_TO_DOWNLOAD}) or set "
        "OPHTHAI_MODEL_PATH to a folder that holds it."
    )


class _Running(NamedTuple):
    job_id: int
    patient_id: str | None
    cancel: threading.Event


class InferenceWorker:
    """Runs queued analyses one at a time."""

    def __init__(self, engine: Engine, jobs: JobService, bus: EventBus) -> None:
        self._engine = engine
        self._jobs = jobs
        self._bus = bus
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._current: _Running | None = None
        # Cancels that arrived between a job's claim and its start.
        self._cancel_requested: set[int] = set()
        self._current_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Set while run() loops, on whichever thread hosts it: the window's QThread
        # leaves _thread None.
        self._looping = threading.Event()
        self._commands: list[str] = []  # "load" / "unload", run between jobs
        self._running_command = False
        # Jobs stopped by an unload, to be queued again rather than marked cancelled.
        self._interrupted_by_unload: set[int] = set()
        # After an unload, the queue waits for a load instead of loading by itself.
        self._hold_after_unload = False
        self._unsubscribe = bus.subscribe(self._on_event)
        self.waiting_reason: str | None = None
        #: Why the worker waits, for a reader that sees nothing queued: as
        #: :attr:`waiting_reason`, but None where that is the model's own state and
        #: message (not installed, damaged, a failed load) and what becomes of queued
        #: analyses, which is not true with none.
        self.waiting_cause: str | None = None
        #: How many unloads freed a loaded model (an unload with none loaded does not
        #: count), so that whoever asked for one can tell which happened.
        self.unloads = 0

    # Control (any thread) -------------------------------------------------------------

    def start(self) -> None:
        """Run on a plain background thread (headless)."""
        self._thread = threading.Thread(target=self.run, name="inference-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = JOB_STOP_WAIT_S) -> bool:
        """Ask the loop to end, cancelling the running job, and wait for the thread
        (see :meth:`wait_stopped`); False when it is still running."""
        self.request_stop()
        thread = self._thread
        stopped = thread is None or self.wait_stopped(thread.is_alive, timeout_s)
        if stopped:
            self._thread = None
        self._unsubscribe()
        return stopped

    def request_stop(self) -> None:
        """Ask the loop to end and cancel the running job; returns at once."""
        self._stop.set()
        self._wake.set()
        with self._current_lock:
            if self._current is not None:
                self._current.cancel.set()

    def wait_stopped(self, running: Callable[[], bool], timeout_s: float = JOB_STOP_WAIT_S) -> bool:
        """Wait, after :meth:`request_stop`, until ``running()`` (the hosting thread's
        liveness) is False: up to ``timeout_s`` for a cancelled job, but only
        :data:`LOAD_STOP_WAIT_S` while the model is loading. False if it still runs."""
        deadline = time.monotonic() + timeout_s
        loading_since: float | None = None
        while running():
            now = time.monotonic()
            if self._engine.status().state is ModelState.LOADING:
                loading_since = now if loading_since is None else loading_since
                if now - loading_since >= LOAD_STOP_WAIT_S:
                    log.warning("stopping without waiting for the model load to finish")
                    return False
            else:
                loading_since = None
            if now >= deadline:
                log.error("the inference worker did not stop within %.0f s", timeout_s)
                return False
            time.sleep(0.02)
        return True

    def wake(self) -> None:
        self._wake.set()

    def request_load(self) -> None:
        """Load the model on the worker thread (after the running job, if any)."""
        with self._current_lock:
            self._commands.append("load")
            self._hold_after_unload = False
        self._wake.set()

    def resume_queue(self) -> None:
        """Someone asked again for a queued analysis: a queue held since an unload
        runs now (the model is loaded on first use)."""
        with self._current_lock:
            self._hold_after_unload = False
        self._wake.set()

    @property
    def queued_waiting(self) -> str | None:
        """Why a queued job waits, also one queued a moment ago: :attr:`waiting_reason`,
        or, where that says nothing waits only because the worker has not looked at the
        queue since, what it will say when it does: with nothing queued, the model
        installed, not loaded (it loads the model, or holds the queue after an unload);
        busy loading or unloading the model as asked (Load, ``load-model``, at start:
        minutes), ``model loading``. A job's 202 said ``waiting: null`` meanwhile, as if
        it were about to run. With the model not installed, what the worker says once it
        looks, whatever it said before: files a request found gone (an unload, then the
        folder deleted) left "load it to run the queue" in the 202 of the job it joined.
        Any thread."""
        status = self._engine.status()
        if status.state is ModelState.NOT_INSTALLED:
            return _not_installed(status)
        reason = self.waiting_reason
        if reason is not None:
            return reason
        state = status.state
        if state is ModelState.INSTALLED:
            return HELD_AFTER_UNLOAD if self.holding else f"model {ModelState.LOADING.value}"
        if state in _BUSY_STATES:
            return f"model {state.value}"  # as the worker says once it looks
        return None

    @property
    def holding(self) -> bool:
        """Whether queued analyses wait for the model to be loaded (after an unload)."""
        with self._current_lock:
            return self._hold_after_unload

    def request_unload(self) -> None:
        """Unload the model on the worker thread. The running job is stopped and queued
        again: it runs when the model is loaded again."""
        with self._current_lock:
            self._commands.append("unload")
            self._hold_after_unload = True
            if self._current is not None:
                if not self._current.cancel.is_set():  # not cancelled by someone already
                    self._interrupted_by_unload.add(self._current.job_id)
                self._current.cancel.set()
        self._wake.set()

    @property
    def commands_pending(self) -> bool:
        with self._current_lock:
            return bool(self._commands) or self._running_command

    @property
    def alive(self) -> bool:
        """Whether the loop runs (or a started thread is about to run it), hosted by
        :meth:`start`'s thread or another (the window's QThread)."""
        started = self._thread is not None and self._thread.is_alive()
        return started or self._looping.is_set()

    @property
    def current_job_id(self) -> int | None:
        with self._current_lock:
            return self._current.job_id if self._current else None

    def _on_event(self, event: Event) -> None:
        """Bus subscriber: new work wakes the loop; a cancel request, or the deletion
        of the running job's patient (its job went with it), stops the job."""
        if isinstance(event, AnalysisQueued):
            with self._current_lock:
                if event.job_id not in self._interrupted_by_unload:
                    self._hold_after_unload = False  # new work: load on first use
            self._wake.set()
        elif isinstance(event, AnalysisCancelRequested):
            with self._current_lock:
                self._interrupted_by_unload.discard(event.job_id)  # cancelled: stays so
                # Remembered also for the running job: if it is being queued again for
                # an unload, its next start honours the cancel.
                self._cancel_requested.add(event.job_id)
                if self._current is not None and self._current.job_id == event.job_id:
                    self._current.cancel.set()
        elif isinstance(event, PatientDeleted):
            with self._current_lock:
                if self._current is not None and self._current.patient_id == event.patient_id:
                    self._current.cancel.set()

    # The loop (worker thread) ---------------------------------------------------------

    def run(self) -> None:
        """The worker loop; returns after :meth:`stop`. Nothing ends it but stop():
        a failure (the database unavailable, a load that raises) is logged and the
        loop tries again."""
        self._looping.set()
        try:
            requeued = False
            while not self._stop.is_set():
                try:
                    if not requeued:
                        self._jobs.requeue_interrupted()
                        requeued = True
                    self._wake.wait(IDLE_POLL_S)
                    self._wake.clear()
                    if self._stop.is_set():
                        break
                    self._run_commands()
                    while not self._stop.is_set() and self._ready_for_work():
                        job = self._jobs.claim_next()
                        self._room_again()
                        if job is None:
                            break
                        self._run_job(job)
                        self._run_commands()
                except DatabaseUnavailable:
                    # The database does not answer: its own log says so, once per outage;
                    # the queue is looked at again until it answers.
                    self._stop.wait(IDLE_POLL_S)
                except NoRoom:
                    # Claiming a job is a change: the database's log says the disk is full;
                    # the queue says why it does not move, and is looked at again.
                    self._set_waiting(WAITING_FOR_ROOM)
                    self._stop.wait(IDLE_POLL_S)
                except Exception as exc:
                    # Where it was raised, not only its kind: a bare "hit SystemError" once
                    # could not be traced (never its text, which can quote a record).
                    log.error("the inference worker hit %s; retrying", safe_description(exc))
                    self._stop.wait(IDLE_POLL_S)
        finally:
            self._looping.clear()

    def _run_commands(self) -> None:
        if self._stop.is_set():
            return  # closing: a load asked for now would only hold the exit up
        with self._current_lock:
            commands, self._commands = self._commands, []
            self._running_command = bool(commands)
        try:
            self._execute(commands)
        finally:
            with self._current_lock:
                self._running_command = False

    def _execute(self, commands: list[str]) -> None:
        for command in commands:
            if self._stop.is_set():
                return
            try:
                if command == "load":
                    self._say_loading()
                    self._engine.load()
                else:
                    # Loads run on this thread only: ready here means a model to free.
                    loaded = self._engine.status().state is ModelState.READY
                    self._engine.unload()
                    if loaded:
                        self.unloads += 1
            except OphthaiError as exc:
                log.warning("model %s failed: %s", command, exc.message)
            except Exception:
                log.exception("model %s failed unexpectedly", command)

    def _say_loading(self) -> None:
        """Before a load asked for (Load, ``load-model``): queued analyses that waited
        (for a failed load, after an unload) now wait for this load, as they do for one
        on first use, not for what was true before it. The model installed: the load
        starts, not refused at once. A full disk still holds them. Worker thread."""
        if self.waiting_reason in (None, WAITING_FOR_ROOM):
            return
        if self._engine.status().state is ModelState.INSTALLED:
            self._set_waiting(f"model {ModelState.LOADING.value}")

    def _ready_for_work(self) -> bool:
        """Load the model for waiting jobs when it is installed; otherwise let them wait."""
        state = self._engine.status().state
        if state is ModelState.READY:
            if self.waiting_reason != WAITING_FOR_ROOM:  # cleared once a claim works
                self._set_waiting(None)
            return True
        if state in _BUSY_STATES:
            self._set_waiting(f"model {state.value}")
            return False
        if state is ModelState.INSTALLED:
            if not self._jobs.has_queued():
                self._set_waiting(None)  # nothing waits
                return False
            if self._hold_after_unload:
                self._set_waiting(HELD_AFTER_UNLOAD)
                return False
            self._set_waiting(f"model {ModelState.LOADING.value}")  # on first use, here
            try:
                self._engine.load()
            except ModelUnavailable as exc:
                status = self._engine.status()
                if status.state is ModelState.NOT_INSTALLED:  # gone since it was checked
                    self._say_not_installed(status)
                else:
                    self._set_waiting(_unusable(exc.message), engine_says=True)
                log.warning("queued analyses are waiting: the model did not load")
                return False
            self._set_waiting(None)
            # Closing while it loaded: claim nothing. An unload (or load) asked for
            # meanwhile runs first, not after a whole analysis.
            return not self._stop.is_set() and not self.commands_pending
        if state is ModelState.ERROR:
            self._set_waiting(_unusable(self._engine.status().message), engine_says=True)
        else:
            self._say_not_installed(self._engine.status())
        return False

    def _say_not_installed(self, status: EngineStatus) -> None:
        """Why queued analyses wait on a model not installed (or damaged), said so
        wherever the worker finds it: at a look at the queue, or at a load on first use
        that found the files gone since they were last checked (it said the engine's
        message then, and this a look later). Worker thread."""
        self._set_waiting(_not_installed(status), engine_says=True)

    def _set_waiting(self, reason: str | None, *, engine_says: bool = False) -> None:
        """Say why queued jobs wait (None: they run); a change is published, so that
        clients following the queue see it appear and clear. ``engine_says``: the why is
        the engine's state and message (see :attr:`waiting_cause`). Worker thread."""
        self.waiting_cause = None if engine_says else reason
        if reason != self.waiting_reason:
            self.waiting_reason = reason
            self._bus.publish(QueueWaitingChanged(reason))

    def _room_again(self) -> None:
        """A change went through: analyses no longer wait for room. Worker thread."""
        if self.waiting_reason == WAITING_FOR_ROOM:
            self._set_waiting(None)

    def _run_job(self, job: JobRecord) -> None:
        cancel = threading.Event()
        with self._current_lock:
            self._current = _Running(job.id, job.patient_id, cancel)
            if job.id in self._cancel_requested:  # kept: the job's end reads it
                cancel.set()
        requeued_for_load = False
        try:
            if not self._job_exists(job.id):  # its patient was deleted since the claim
                log.info("analysis job %d not started: its patient was deleted", job.id)
                return
            self._bus.publish(AnalysisStarted(job.id, job.patient_id))
            image = self._open_image(job)
            # The prompt asks for <think> first, so output starts as reasoning (as
            # split_output reads a reply whose opening tag is missing); the stored
            # analysis is authoritative once AnalysisFinished arrives.
            phases = StreamPhases(reasoning_first=True)
            # Numbers the deltas (see AnalysisProgressed.seq): events are not replayed,
            # so a WebSocket client that reconnects mid-stream learns it missed some.
            delta_seq = itertools.count()

            def on_delta(delta: str) -> None:
                for phase, text in phases.feed(delta):
                    self._bus.publish(AnalysisProgressed(job.id, text, phase, next(delta_seq)))

            try:
                result = self._engine.generate(
                    image, on_delta=on_delta, cancel=cancel, question=job.question
                )
            except UnreadablePixels as exc:  # a JPEG is decoded there (see _open_image)
                cause = exc.__cause__
                detail = f" ({pillow_reason(cause)})" if cause else ""
                raise InvalidInput(_damaged_stored_image(detail)) from exc
            for phase, text in phases.flush():
                self._bus.publish(AnalysisProgressed(job.id, text, phase, next(delta_seq)))
            requeued_for_load = bool(
                self._until_stored(job.id, lambda again: self._store_outcome(job, result, again))
            )
        except (DatabaseUnavailable, NoRoom):
            # The database failed (or had no room) before the analysis ran, not the
            # analysis: it is queued again (once the database takes it) rather than
            # failed for good.
            self._until_stored(job.id, lambda _again: self._jobs.requeue(job.id, announce=True))
        except NotFound as exc:
            # Whether the job is still there is read as its end is written: through an
            # outage (it escaped to the loop, and left the job running until a restart).
            exists = self._until_stored(job.id, lambda _again: self._job_exists(job.id))
            if exists:  # something else is missing (its image file)
                self._record_failure(job.id, exc.message)
            elif exists is not None:
                log.info("analysis job %d ended: its patient was deleted", job.id)
        except Exception as exc:
            if cancel.is_set():
                # Stopped (cancelled, unloaded, the app closing) as it raised: ended as a
                # stop is, not failed with the error the stop may have caused.
                log.info("analysis job %d: stopped as it raised %s", job.id, safe_description(exc))
                try:
                    requeued_for_load = bool(
                        self._until_stored(job.id, lambda _again: self._store_stop(job))
                    )
                except NotFound:
                    log.info("analysis job %d ended after its patient was deleted", job.id)
            elif isinstance(exc, OphthaiError):
                self._record_failure(job.id, exc.message)
            else:  # a bad job never kills the worker
                self._record_unexpected(job.id, exc)
        finally:
            with self._current_lock:
                self._current = None
                self._interrupted_by_unload.discard(job.id)
                if not requeued_for_load:
                    # Queued again, a cancel asked for as it was is honoured at its
                    # next start; otherwise the job has ended.
                    self._cancel_requested.discard(job.id)

    def _record_unexpected(self, job_id: int, exc: Exception) -> None:
        """The job failed on an exception no part of the app raised for it."""
        # The text of a database error holds parameter values (names): only its kind.
        reason = (
            type(exc).__name__
            if isinstance(exc, SQLAlchemyError)
            else f"{type(exc).__name__}: {exc}"
        )
        # The job keeps the text (the clinician sees it); the log only its kind and
        # where it was raised, as a text can quote what the job read.
        safe = safe_description(exc)
        log.error("analysis job %d failed unexpectedly: %s", job_id, safe)
        self._record_failure(
            job_id, f"unexpected error: {reason}", logged=f"unexpected error: {safe}"
        )

    def _store_outcome(self, job: JobRecord, result: GenerationResult, again: bool) -> bool:
        """Store how the job ended; True when it was queued again to run once the
        model is loaded again (an unload stopped it). ``again``: a try after one the
        database failed, which may have stored it."""
        if result.cancelled:
            return self._store_stop(job)
        self._jobs.complete(job, result, again=again)
        return False

    def _store_stop(self, job: JobRecord) -> bool:
        """Store the end of a job that was stopped: queued again where the app is closing
        (and nobody cancelled it) or an unload stopped it (then True: it runs once the
        model is loaded again), else cancelled."""
        with self._current_lock:
            unloaded = job.id in self._interrupted_by_unload
            # Cancelled by someone, not only stopped by the app closing.
            asked = job.id in self._cancel_requested
        if self._stop.is_set() and not asked:
            self._jobs.requeue(job.id)  # the app is closing: run it next time
        elif unloaded:
            self._jobs.requeue(job.id, announce=True)  # runs once loaded again
            with self._current_lock:  # cancelled while it was being queued again
                cancelled = job.id not in self._interrupted_by_unload
            if not cancelled:
                return True
            self._jobs.mark_cancelled(job.id)
        else:
            self._jobs.mark_cancelled(job.id)
        return False

    def _until_stored(self, job_id: int, store: Callable[[bool], T]) -> T | None:
        """Run ``store`` (it writes how a job ended) until the database takes it: an
        outage (a database server restarting, a locked or read-only SQLite file) or a
        full disk must neither lose a finished analysis nor leave its job running until
        the next start. Retried every :data:`IDLE_POLL_S`, ``store`` told whether it is a try
        again; None when the app stops first (the job, still marked running, is queued
        again at the next start). Worker thread."""
        waiting = False
        while True:
            try:
                stored = store(waiting)
            except NoRoom as exc:
                # A full disk stays full until someone frees space: said in the queue's
                # state too, and the outcome (in memory) is stored once there is room.
                if not waiting:
                    log.warning(
                        "analysis job %d: %s; its outcome is stored once space is freed",
                        job_id,
                        exc.message,
                    )
                    waiting = True
                self._set_waiting(WAITING_FOR_ROOM)
                if self._stop.wait(IDLE_POLL_S):
                    log.warning(
                        "analysis job %d: left running; it runs again at the next start", job_id
                    )
                    return None
                continue
            except DatabaseUnavailable as exc:
                if not waiting:
                    if isinstance(exc, ChangeRolledBack):  # the database answers: no outage
                        log.info(
                            "analysis job %d: %s; its outcome is stored again", job_id, exc.message
                        )
                    else:
                        log.warning(
                            "analysis job %d: %s; its outcome is stored once the database answers",
                            job_id,
                            exc.message,
                        )
                    waiting = True
                if self._stop.wait(IDLE_POLL_S):
                    log.warning(
                        "analysis job %d: left running; it runs again at the next start", job_id
                    )
                    return None
                continue
            if waiting:
                log.info("analysis job %d: stored at a later try", job_id)
            self._room_again()
            return stored

    def _job_exists(self, job_id: int) -> bool:
        try:
            self._jobs.get_job(job_id)
        except NotFound:
            return False
        return True

    def _record_failure(self, job_id: int, reason: str, *, logged: str | None = None) -> None:
        try:
            self._until_stored(
                job_id, lambda again: self._jobs.fail(job_id, reason, logged=logged, again=again)
            )
        except NotFound:
            log.info("analysis job %d ended after its patient was deleted", job_id)

    def _open_image(self, job: JobRecord) -> Image.Image:
        """The job's stored image, decoded; a JPEG only opened, for the engine to decode
        at the reduced scale the model's size allows (see :func:`prepare_image`): a
        120 MP one decoded in full here took ~1 GB for a model that reads 0.26 MP. Its
        damage, if any, is found there, and said as here.

        Raises:
            PayloadTooLarge: It has more pixels than Pillow decodes safely.
            InvalidInput: The stored file is damaged or not an image (the store is not
                read-only to other programs, and the image check at ingest does not
                inflate a PNG's pixels).
        """
        data = self._jobs.image_bytes(job)
        try:
            image = Image.open(io.BytesIO(data))
            if image.format not in _DECODED_BY_THE_ENGINE:
                image.load()
        except Image.DecompressionBombError as exc:
            message = too_many_pixels_to_decode_message(self._jobs.max_image_pixels, "scan's image")
            raise PayloadTooLarge(f"{message[0].upper()}{message[1:]}.") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            # Pillow's "cannot identify" names the in-memory buffer: nothing to act on.
            detail = "" if isinstance(exc, UnidentifiedImageError) else f" ({pillow_reason(exc)})"
            raise InvalidInput(_damaged_stored_image(detail)) from exc
        return image


#: Formats :func:`prepare_image` decodes at a reduced scale when handed them undecoded.
_DECODED_BY_THE_ENGINE = {"JPEG", "MPO"}


def _damaged_stored_image(detail: str) -> str:
    return (
        f"The scan's stored image file is damaged or not an image{detail}. "
        "Add the image to the patient again and analyse the new scan."
    )
