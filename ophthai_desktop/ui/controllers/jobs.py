"""The job queue: every analysis with its state and token count, why queued ones wait,
and cancelling."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial

from PySide6.QtCore import QObject, QTimer, Slot

from ophthai_desktop.core.errors import DatabaseFileGone, DatabaseUnavailable, OphthaiError
from ophthai_desktop.core.records import AnalysisRecord, JobQueue, JobRecord, PatientRecord
from ophthai_desktop.ui.context import GuiContext
from ophthai_desktop.ui.controllers.patients import PatientsController
from ophthai_desktop.ui.display import local_datetime
from ophthai_desktop.ui.messages import (
    describe,
    once_database_answers,
)
from ophthai_desktop.ui.models.job_table import (
    MAX_SHOWN,
    JobRow,
    in_order,
    job_row,
    new_job_row,
    order,
)
from ophthai_desktop.ui.views.banner import ReadFailureNotice
from ophthai_desktop.ui.views.jobs import JobQueuePanel
from ophthai_desktop.ui.views.main_window import MainWindow

log = logging.getLogger(__name__)

#: The finished jobs the first load shows (the newest), below every open one (those
#: that run first, up to the panel's MAX_SHOWN rows).
LOADED = 100
#: Fewer listed queued jobs than this while open jobs are known not listed: the queue's
#: open jobs are read again, so the clinician sees what runs next before it starts.
TOP_UP_BELOW = 20
#: Patients whose names are kept for the Patient column (those last heard of, about
#: 150 B each): more than a read of the queue lists. A name not kept is read again for
#: a new row of the patient; a listed row keeps its own.
NAMES_KEPT = 2000
#: A queued job's :func:`order` sorts after this (one with nothing listed before it).
_BEFORE_QUEUED: tuple[float, ...] = (1,)
#: How long after a failed first read of the queue it is read again.
RELOAD_AFTER_MS = 5000
#: A job's note while its cancellation is being asked for.
CANCELLING = "cancelling…"
#: The most events held for after a read of the queue (a job's token batches count as
#: one). Past it they are dropped and the queue is read again once this read arrives.
HELD_LIMIT = 1000
#: Rows of a read of the queue listed an event-loop turn (about 2.5 ms): its 500 at once
#: held the GUI thread for 10 ms (600, 12.5 ms).
PLACED_PER_TURN = 100
#: Why queued analyses wait while the database does not answer (the worker takes no
#: job and stores no result until it does); with a running one, which goes on but whose
#: result waits to be stored, it is said of both.
QUEUED_WAIT_FOR_DATABASE = f"{DatabaseUnavailable.OUTAGE}; they start {DatabaseUnavailable.UNTIL}"
OPEN_WAIT_FOR_DATABASE = (
    f"{DatabaseUnavailable.OUTAGE}; queued ones start, and results are stored, "
    f"{DatabaseUnavailable.UNTIL}"
)
RUNNING_WAITS_FOR_DATABASE = (
    f"{DatabaseUnavailable.OUTAGE}; the result is stored {DatabaseUnavailable.UNTIL}"
)
#: The same while the database file is gone (an outage that lasts until the app is
#: started again: a result finished meanwhile is held, and lost at quit).
QUEUED_WAIT_FOR_DATABASE_FILE = f"{DatabaseFileGone.OUTAGE}; they start {DatabaseFileGone.UNTIL}"
OPEN_WAIT_FOR_DATABASE_FILE = (
    f"{DatabaseFileGone.OUTAGE}; queued ones start {DatabaseFileGone.UNTIL}; a result "
    "finished before then cannot be stored (ask for it again then)"
)
RUNNING_WAITS_FOR_DATABASE_FILE = (
    f"{DatabaseFileGone.OUTAGE}; the result cannot be stored (ask for it again "
    f"{DatabaseFileGone.UNTIL})"
)


def _not_cancelled(job_ids: list[int], why: str) -> str:
    """ "Job #1 was not cancelled: ``why``", or "Jobs #1, #2 were …" for several."""
    jobs = ", ".join(f"#{job_id}" for job_id in job_ids)
    if len(job_ids) == 1:
        return f"Job {jobs} was not cancelled: {why}"
    return f"Jobs {jobs} were not cancelled: {why}"


def _cancel_again(job_ids: list[int]) -> str:
    """That ``job_ids`` were not cancelled, and to cancel them again."""
    if len(job_ids) == 1:
        return _not_cancelled(job_ids, "cancel it again if it should not run.")
    return _not_cancelled(job_ids, "cancel them again if they should not run.")


class JobsController(QObject):
    """Fills the job queue panel from the database, then from events."""

    def __init__(
        self,
        ctx: GuiContext,
        window: MainWindow,
        panel: JobQueuePanel,
        patients: PatientsController,
        *,
        limit: int = MAX_SHOWN,
    ) -> None:
        """``limit``: the most open jobs a read of the queue lists (tests lower it)."""
        super().__init__(panel)
        self._limit = limit
        # Listed queued jobs below which the open ones are read again (see TOP_UP_BELOW).
        self._top_up_below = max(1, min(TOP_UP_BELOW, limit // 2))
        self._ctx = ctx
        self._jobs = ctx.application.jobs
        self._window = window
        self._panel = panel
        self._model = panel.model
        self._patients = patients
        # Patient id -> name, for the Patient column: the NAMES_KEPT last heard of.
        self._names: OrderedDict[str, str] = OrderedDict()
        self._looking_up: set[str] = set()  # ids whose names are being fetched
        # Events heard before the first load arrived, applied after it (None: loaded).
        self._held: list[Callable[[], None]] | None = []
        # Per job, the tokens of the batches held since its last other held event.
        self._held_tokens: dict[int, list[int]] = {}
        self._held_dropped = False  # past HELD_LIMIT: the load is read again
        self._read_failure = ReadFailureNotice(window.banner, "The job queue")
        # The rows of a read of the queue still to be listed (a page a turn, in place of
        # those shown: they keep the selection), the events heard held until then; the
        # job ids read, and the last row placed.
        self._pending: list[JobRow] = []
        self._read_ids: set[int] = set()
        self._last_placed: int | None = None
        self._feed_timer = QTimer(self)
        self._feed_timer.setSingleShot(True)
        self._feed_timer.setInterval(0)
        self._feed_timer.timeout.connect(self._on_feed_timer_timeout)
        # Open jobs past the ``limit`` listed (job id -> patient id): those past the
        # read, and those queued since that run after the listed ones. They run after
        # the listed ones, and are listed as those run down or when one starts.
        self._unlisted: dict[int, str | None] = {}
        # Every unlisted job's :func:`order` sorts after this (None: none is unlisted).
        self._unlisted_after: tuple[float, ...] | None = None
        self._topping_up = False  # a read of the open jobs is on its way
        # A job past those listed started: the worker got past the listed ones.
        self._overtaken = False
        self._stopped = False
        # Why the worker takes no queued job: read once here, then followed by its
        # event (the bridge, built before this, hears every change after this read).
        self._waiting_reason = ctx.application.worker.waiting_reason
        # Whether the database answers: read once here, then followed by its event.
        self._database_down = not ctx.application.db.availability.available

        bridge = ctx.bridge
        bridge.analysis_queued.connect(self._on_bridge_analysis_queued)
        bridge.analysis_prioritised.connect(self._on_bridge_analysis_prioritised)
        bridge.analysis_started.connect(self._on_bridge_analysis_started)
        bridge.analysis_progressed.connect(self._on_bridge_analysis_progressed)
        bridge.analysis_finished.connect(self._on_bridge_analysis_finished)
        bridge.analysis_failed.connect(self._on_bridge_analysis_failed)
        bridge.analysis_cancelled.connect(self._on_bridge_analysis_cancelled)
        bridge.queue_waiting_changed.connect(self._on_bridge_queue_waiting_changed)
        bridge.database_availability_changed.connect(self._on_bridge_database_availability_changed)
        bridge.patient_deleted.connect(self._on_bridge_patient_deleted)
        bridge.patient_created.connect(self._on_bridge_patient_known)
        bridge.patient_updated.connect(self._on_bridge_patient_known)
        panel.cancel_requested.connect(self.cancel_jobs)
        panel.job_opened.connect(self._on_panel_job_opened)
        self._model.states_changed.connect(self._show_waiting)
        self._model.states_changed.connect(self._show_unlisted)
        self._model.states_changed.connect(self._top_up)

    def start(self) -> None:
        self._load()

    def _load(self) -> None:
        """Read the queue's first rows on a pool thread (every open job up to
        MAX_SHOWN, those that run first, then the newest finished ones); events heard
        meanwhile are held and applied on top of them."""
        if self._stopped:
            return
        if self._held is None:
            self._held = []

        def fetch() -> tuple[list[JobRecord], JobQueue, dict[str, str], dict[int, int]]:
            queue = self._jobs.list_queue(limit=self._limit, finished=LOADED)
            jobs = [*queue.open, *queue.finished]  # the model puts them in its order
            ids = {job.patient_id for job in jobs if job.patient_id}
            finished = [job.id for job in queue.finished if job.state == "done"]
            return (
                jobs,
                queue,
                self._ctx.application.patients.names_of(ids),
                self._jobs.completion_tokens_of(finished),
            )

        def done(result: tuple[list[JobRecord], JobQueue, dict[str, str], dict[int, int]]) -> None:
            if self._held_dropped:  # read before events that were dropped: read again
                self._held_dropped = False
                self._load()
                return
            jobs, queue, names, tokens = result
            for patient_id, name in names.items():
                # A name an event told meanwhile is newer than the one read.
                self._remember_name(patient_id, name, newer=False)
            self._pending = in_order(
                [
                    job_row(
                        job,
                        tokens=tokens.get(job.id, 0),
                        patient_name=names.get(job.patient_id or ""),
                    )
                    for job in jobs
                ]
            )
            self._read_ids = {row.job_id for row in self._pending}
            self._last_placed = None
            self._unlisted = dict(queue.more_open)
            self._unlisted_after = _last_key(queue) if queue.more_open else None
            self._overtaken = False
            self._read_failure.read()
            self._on_feed_timer_timeout()
            self._panel.body.rows_read()  # its first rows placed: none now means none

        def failed(exc: BaseException) -> None:
            # A bug's text can quote a row's values: the task's failure is logged with
            # its kind and place instead; the core's errors are written to be read.
            said = f": {exc.message}" if isinstance(exc, OphthaiError) else ""
            log.warning("the job queue could not be read%s", said)
            self._read_failure.failed(exc)
            self._panel.body.read_failed()
            self._replay_held()  # the jobs the events tell of, meanwhile
            QTimer.singleShot(RELOAD_AFTER_MS, self, self._load)

        self._ctx.tasks.submit(fetch, done, failed)

    @Slot()
    def _on_feed_timer_timeout(self) -> None:
        """List the next :data:`PLACED_PER_TURN` rows read, after the last placed; once
        all are, the rows past them go and the events heard meanwhile are applied."""
        page, self._pending = self._pending[:PLACED_PER_TURN], self._pending[PLACED_PER_TURN:]
        # The names as known now: one learnt or changed meanwhile is on the rows placed.
        page = [
            replace(row, patient_name=self._names.get(row.patient_id or "") or row.patient_name)
            for row in page
        ]
        last = None if self._last_placed is None else self._model.position(self._last_placed)
        end = self._model.place_rows(0 if last is None else last + 1, page, self._read_ids)
        if page:
            self._last_placed = page[-1].job_id
        if self._pending:
            self._feed_timer.start()
            return
        self._read_ids = set()
        self._model.settle(end)
        if self._held_dropped:  # events dropped meanwhile: the queue is read again
            self._held_dropped = False
            self._load()
            return
        self._replay_held()
        self._show_unlisted()

    @property
    def loading(self) -> bool:
        """Whether the queue is being read or its rows listed (events are held)."""
        return self._held is not None

    @property
    def held_events(self) -> int:
        """How many events are held for after the queue's read (0 once it arrived)."""
        return len(self._held or ())

    def _hold(self, slot: Callable[..., None], *args: object, job_id: int | None = None) -> bool:
        """Until the first load has arrived, keep an event for after it (True when it
        was kept). The load is a snapshot read on a pool thread: replacing the rows
        with it would undo what events told meanwhile (a job that finished in between
        lost its token count), so those events are applied on top of it instead."""
        if self._held is None:
            return False
        if job_id is not None:
            self._held_tokens.pop(job_id, None)  # later batches come after this event
        self._keep(partial(slot, *args))
        return True

    def _hold_tokens(self, job_id: int, pieces: int) -> bool:
        """:meth:`_hold` for a batch of tokens: a job's batches in a row add up in one
        entry (one batch every 50 ms while the read is held up would be thousands)."""
        if self._held is None:
            return False
        count = self._held_tokens.get(job_id)
        if count is None:
            count = self._held_tokens[job_id] = [0]
            self._keep(lambda: self._model.add_tokens(job_id, count[0]))
        count[0] += pieces
        return True

    def _keep(self, apply: Callable[[], None]) -> None:
        held = self._held
        assert held is not None
        if len(held) >= HELD_LIMIT:
            # Events of jobs the read may not show (as many as that only from jobs that
            # never appear): drop them, and read the queue again once this read is in;
            # the database has what they told by then.
            log.warning("over %d job events heard while the queue is read", HELD_LIMIT)
            held.clear()
            self._held_tokens.clear()
            self._held_dropped = True
        held.append(apply)

    def _replay_held(self) -> None:
        held, self._held = self._held or [], None
        self._held_tokens.clear()
        for apply in held:
            apply()

    def stop(self) -> None:
        self._stopped = True

    @Slot(int, object, bool, int, object)
    def _on_bridge_analysis_queued(
        self,
        job_id: int,
        patient_id: str | None,
        requeued: bool,
        priority: int,
        created_at: datetime,
    ) -> None:
        if self._hold(
            self._on_bridge_analysis_queued,
            job_id,
            patient_id,
            requeued,
            priority,
            created_at,
            job_id=job_id,
        ):
            return
        self._unlisted.pop(job_id, None)  # counted again below if still past the list
        # A known job queued again (the model was unloaded under it) is waiting again. A
        # new job's start can arrive before its queueing (the worker wakes first): a
        # known row then stays as it is, but for the priority and the queued time its
        # start did not tell.
        if requeued:
            self._model.update(job_id, state="queued", tokens=0, note="")
        if self._model.raise_priority(job_id, priority):
            self._show_queued_at(job_id, created_at)
        else:
            row = new_job_row(job_id, patient_id, priority=priority, created_at=created_at)
            self._list_or_count(row)
        self._show_unlisted()

    def _show_queued_at(self, job_id: int, created_at: datetime) -> None:
        """Show when the listed job was queued (and so its place among those of its
        priority), unless its row says so already."""
        row = self._model.get(job_id)
        if row is not None and (not row.queued_at or row.queued_time != created_at.timestamp()):
            self._model.update(
                job_id,
                queued_at=local_datetime(created_at),
                queued_time=created_at.timestamp(),
            )

    def _list_or_count(self, row: JobRow) -> None:
        """List a newly queued job if it runs before the jobs not listed and within the
        ``limit``, the job that runs last then going unlisted; else count it with those
        not listed. A backlog queued while the model is missing grew the list by a row a
        file (1.2 MB of memory per 1,000); the list shows what runs next (a requested
        analysis before the watch folder's), the panel says how many more wait."""
        key = order(row)
        boundary = self._unlisted_after
        if self._unlisted and boundary is not None and key > boundary:
            self._count_unlisted(row.job_id, row.patient_id, boundary)
            self._top_up()  # the list may have run down meanwhile
            return
        if len(self._model.open_job_ids()) >= self._limit:
            last = self._model.last_queued()
            if last is None or key > order(last):
                self._count_unlisted(
                    row.job_id, row.patient_id, order(last) if last else _BEFORE_QUEUED
                )
                return
        self._model.upsert(replace(row, patient_name=self._name_of(row.patient_id)))
        self._shed(but=row.job_id)

    def _count_unlisted(
        self, job_id: int, patient_id: str | None, after: tuple[float, ...]
    ) -> None:
        """Count the job with those not listed, which sort after ``after``."""
        boundary = self._unlisted_after
        if not self._unlisted or boundary is None:
            self._unlisted_after = after
        else:
            self._unlisted_after = min(boundary, after)
        self._unlisted[job_id] = patient_id

    def _shed(self, but: int | None = None) -> None:
        """Past the ``limit`` of open jobs listed, the queued ones that run last (but
        job ``but``) are no longer listed: counted with those that run after them. The
        job the clinician selected stays, the list over its limit until the selection
        moves: taking its row out moved the selection to another job, which Cancel then
        stopped."""
        selected = self._panel.selected_job_ids()
        while len(self._model.open_job_ids()) > self._limit:
            last = self._model.last_queued(but)
            if last is None or last.job_id in selected:
                return
            self._model.remove_job(last.job_id)
            before = self._model.last_queued()
            self._count_unlisted(
                last.job_id, last.patient_id, order(before) if before else _BEFORE_QUEUED
            )

    @Slot(int, object, int)
    def _on_bridge_analysis_prioritised(
        self, job_id: int, patient_id: str | None, priority: int
    ) -> None:
        """A queued job was moved ahead: its row says so. A job not listed (past the
        open jobs read at the start, or one whose queueing is still on its way) is added:
        the clinician sees the analysis they asked for."""
        if self._hold(
            self._on_bridge_analysis_prioritised, job_id, patient_id, priority, job_id=job_id
        ):
            return
        self._forget_unlisted(job_id)
        if not self._model.raise_priority(job_id, priority):
            row = new_job_row(job_id, patient_id, self._name_of(patient_id), priority=priority)
            self._add_heard(row)

    @Slot(int, object)
    def _on_bridge_analysis_started(self, job_id: int, patient_id: str | None) -> None:
        if self._hold(self._on_bridge_analysis_started, job_id, patient_id, job_id=job_id):
            return
        if job_id in self._unlisted:  # the listed queued jobs ran out: list the next ones
            self._overtaken = True
        self._forget_unlisted(job_id)
        if self._model.update(job_id, state="running", note="") is None:
            row = new_job_row(job_id, patient_id, self._name_of(patient_id))
            self._add_heard(replace(row, state="running"))

    def _add_heard(self, row: JobRow) -> None:
        """List a job first heard of by its start or its move ahead (one past the open
        jobs read at the start, or a new one whose queueing is on its way), then show
        when it was queued and its priority, read on a pool thread (not the time it was
        heard of: a job of the backlog was queued long before). Past the ``limit`` the
        queued job that runs last makes room for it, as for a newly queued one."""
        job_id = row.job_id
        self._model.upsert(replace(row, queued_at=""))
        self._shed(but=job_id)
        self._show_unlisted()

        def found(job: JobRecord) -> None:
            if self._model.get(job_id) is None:  # gone meanwhile (its patient deleted)
                return
            self._show_queued_at(job_id, job.created_at)  # and its place in the queue
            self._model.raise_priority(job_id, job.priority)

        def failed(exc: BaseException) -> None:  # gone already: its row goes by its event
            log.debug("job %d could not be read", job_id)

        self._ctx.tasks.submit(lambda: self._jobs.get_job(job_id), found, failed)

    @Slot(int, str, str, int)
    def _on_bridge_analysis_progressed(
        self, job_id: int, _phase: str, _text: str, pieces: int
    ) -> None:
        if self._hold_tokens(job_id, pieces):
            return
        self._model.add_tokens(job_id, pieces)

    @Slot(int, object, object)
    def _on_bridge_analysis_finished(
        self, job_id: int, _patient_id: str | None, analysis: AnalysisRecord
    ) -> None:
        if self._hold(
            self._on_bridge_analysis_finished, job_id, _patient_id, analysis, job_id=job_id
        ):
            return
        self._forget_unlisted(job_id)
        row = self._model.get(job_id)
        tokens = analysis.completion_tokens or (row.tokens if row else 0)
        note = "answer not readable" if analysis.parse_status == "parse_failed" else ""
        self._model.update(job_id, state="done", tokens=tokens, note=note)

    @Slot(int, object, str)
    def _on_bridge_analysis_failed(self, job_id: int, _patient_id: str | None, reason: str) -> None:
        if self._hold(self._on_bridge_analysis_failed, job_id, _patient_id, reason, job_id=job_id):
            return
        self._forget_unlisted(job_id)
        self._model.update(job_id, state="failed", note=reason)

    @Slot(int, object)
    def _on_bridge_analysis_cancelled(self, job_id: int, _patient_id: str | None) -> None:
        if self._hold(self._on_bridge_analysis_cancelled, job_id, _patient_id, job_id=job_id):
            return
        self._forget_unlisted(job_id)  # an unlisted job cancelled (by a client) is gone
        self._model.update(job_id, state="cancelled", note="cancelled")

    @Slot(str)
    def _on_bridge_patient_deleted(self, patient_id: str) -> None:
        if self._hold(self._on_bridge_patient_deleted, patient_id):
            return
        self._names.pop(patient_id, None)
        self._model.remove_patient(patient_id)
        gone = [job_id for job_id, owner in self._unlisted.items() if owner == patient_id]
        for job_id in gone:
            del self._unlisted[job_id]
        if gone:
            self._show_unlisted()

    @Slot(object)
    def _on_bridge_patient_known(self, patient: PatientRecord) -> None:
        """A patient created or changed: their jobs show their (new) name."""
        self._learn_name(patient.id, patient.name)

    def _learn_name(self, patient_id: str, name: str) -> None:
        self._looking_up.discard(patient_id)
        if self._names.get(patient_id) != name:
            self._model.name_patient(patient_id, name)
        self._remember_name(patient_id, name)

    def _remember_name(self, patient_id: str, name: str, *, newer: bool = True) -> None:
        """Keep the patient's name (``newer``: in place of one kept), among the
        :data:`NAMES_KEPT` last heard of."""
        if newer or patient_id not in self._names:
            self._names[patient_id] = name
        self._names.move_to_end(patient_id)
        while len(self._names) > NAMES_KEPT:
            self._names.popitem(last=False)

    def _name_of(self, patient_id: str | None) -> str | None:
        """The patient's name if known; else None, and it is looked up (once) for their
        rows."""
        if not patient_id:
            return None
        name = self._names.get(patient_id)
        if name is not None:
            self._names.move_to_end(patient_id)
        elif patient_id not in self._looking_up:
            self._looking_up.add(patient_id)
            patients = self._ctx.application.patients

            def found(names: dict[str, str]) -> None:
                self._looking_up.discard(patient_id)
                for found_id, found_name in names.items():
                    self._learn_name(found_id, found_name)

            self._ctx.tasks.submit(
                lambda: patients.names_of([patient_id]),
                found,
                lambda _exc: self._looking_up.discard(patient_id),  # asked again later
            )
        return name

    @Slot(int)
    def cancel(self, job_id: int) -> None:
        """Cancel a queued job, or stop a running one (see :meth:`cancel_jobs`)."""
        self.cancel_jobs([job_id])

    @Slot(list)
    def cancel_jobs(self, job_ids: list[int]) -> None:
        """Cancel queued jobs, or stop running ones (the worker acts on them), in one
        change sent for all of them. One whose cancel is on its way is not asked again:
        Cancel pressed twice before the row showed it cancelled warned that the job
        "already ended (cancelled)". Those not cancelled say what they said before,
        and one message says which they are."""
        notes: dict[int, str] = {}
        for job_id in job_ids:
            before = self._model.get(job_id)
            if before is not None and before.note == CANCELLING:
                continue
            notes[job_id] = before.note if before is not None else ""
            self._model.update(job_id, note=CANCELLING)
        if not notes:
            return
        asked = list(notes)
        actor = self._ctx.actor

        def cancel_all() -> dict[int, BaseException]:  # the changes' thread
            refused: dict[int, BaseException] = {}
            for position, job_id in enumerate(asked):
                try:
                    self._jobs.request_cancel(job_id, actor=actor)
                except DatabaseUnavailable as exc:  # the others would wait as long
                    refused.update(dict.fromkeys(asked[position:], exc))
                    break
                except OphthaiError as exc:  # this one (ended meanwhile): the others go on
                    refused[job_id] = exc
            return refused

        def done(refused: dict[int, BaseException]) -> None:
            if refused:
                self._cancels_refused(refused, notes)

        def failed(exc: BaseException) -> None:
            self._cancels_refused(dict.fromkeys(asked, exc), notes)

        self._ctx.tasks.submit(cancel_all, done, failed, change=True)

    def _cancels_refused(self, refused: dict[int, BaseException], notes: dict[int, str]) -> None:
        """The jobs go on: their rows say what they said before, not "cancelling…"; the
        banner says why and which were not cancelled (refused for different reasons,
        one line for each reason with its jobs: the first job's alone named none of the
        others' and misled about them)."""
        for job_id in refused:
            row = self._model.get(job_id)
            if row is not None and row.note == CANCELLING:
                self._model.update(job_id, note=notes.get(job_id, ""))
        by_reason: dict[str, list[int]] = {}
        errors: dict[str, BaseException] = {}
        for job_id, exc in refused.items():
            by_reason.setdefault(describe(exc), []).append(job_id)
            errors.setdefault(describe(exc), exc)
        if len(by_reason) == 1:
            exc = next(iter(refused.values()))
            again = _cancel_again(list(refused))
            self._window.banner.show_message(
                describe(exc), "warning", resolved=once_database_answers(exc, again)
            )
            return
        lines = [_not_cancelled(jobs, reason) for reason, jobs in by_reason.items()]
        # Once the database answers again, those it refused are to be cancelled again;
        # the others' reasons stand.
        back: BaseException | None = None
        resolved_lines = []
        for reason, jobs in by_reason.items():
            exc = errors[reason]
            if once_database_answers(exc, "") is None:
                resolved_lines.append(_not_cancelled(jobs, reason))
            else:
                back = exc
                resolved_lines.append(_cancel_again(jobs))
        resolved = None if back is None else once_database_answers(back, "\n".join(resolved_lines))
        self._window.banner.show_message("\n".join(lines), "warning", resolved=resolved)

    @Slot(int)
    def _on_panel_job_opened(self, job_id: int) -> None:
        row = self._model.get(job_id)
        if row is not None and row.patient_id:
            self._patients.open_patient(row.patient_id)

    def _forget_unlisted(self, job_id: int) -> None:
        """An event told of the job: if it was past the first read, it is listed now or
        has left the queue."""
        if job_id in self._unlisted:
            del self._unlisted[job_id]
            self._show_unlisted()

    @Slot()
    def _top_up(self) -> None:
        """List the open jobs that run next when those listed have run down (fewer than
        :data:`TOP_UP_BELOW` queued, or one past them started) while some are known not
        listed: read on a pool thread, and added to the rows (which keep their tokens
        and the selection). A job an event told of meanwhile is left to its event."""
        if (
            not self._unlisted
            or self._topping_up
            or self._held is not None  # the first read is on its way
            or self._stopped
            or (not self._overtaken and self._model.queued_count() >= self._top_up_below)
        ):
            return
        self._topping_up = True
        self._overtaken = False

        def fetch() -> tuple[JobQueue, dict[str, str]]:  # pool thread
            queue = self._jobs.list_queue(limit=self._limit, finished=0)
            ids = {job.patient_id for job in queue.open if job.patient_id}
            return queue, self._ctx.application.patients.names_of(ids)

        def done(result: tuple[JobQueue, dict[str, str]]) -> None:
            queue, names = result
            for patient_id, known in names.items():
                self._remember_name(patient_id, known, newer=False)
            # Only jobs still not listed, that no event told of since (one that started,
            # moved ahead or left the queue meanwhile is listed or gone by its event):
            # those the read puts past the first ones, and those queued after it began.
            unlisted, boundary = self._unlisted, self._unlisted_after
            more = dict(queue.more_open)
            seen = more.keys() | {job.id for job in queue.open}
            self._unlisted = {
                job_id: patient_id
                for job_id, patient_id in unlisted.items()
                if job_id in more or job_id not in seen
            }
            later = any(job_id not in seen for job_id in self._unlisted)
            if queue.open:
                read_to = _last_key(queue)
                # Those queued since sort after the boundary they were counted at.
                self._unlisted_after = (
                    min(read_to, boundary) if later and boundary is not None else read_to
                )
            for job in queue.open:
                listed = self._model.get(job.id)
                if listed is None and job.id in unlisted:
                    patient_id = job.patient_id or ""
                    name = self._names.get(patient_id) or names.get(patient_id)
                    self._model.upsert(job_row(job, patient_name=name))
                elif listed is not None and listed.queued_time != job.created_at.timestamp():
                    # Listed by its event, when it was heard of: where it goes among
                    # those read is by when it was queued.
                    self._model.update(
                        job.id,
                        queued_at=local_datetime(job.created_at),
                        queued_time=job.created_at.timestamp(),
                    )
            # Those listed by their events meanwhile and those read: the ``limit`` holds.
            self._shed()
            # Only now: the rows added above did not each ask for another read, and one
            # that brought nothing new is not followed by another until a job changes.
            self._topping_up = False
            self._show_unlisted()
            if later:  # where those queued meanwhile go in the queue: read again
                self._overtaken = True
                self._top_up()

        def failed(exc: BaseException) -> None:  # read again at the next change
            self._topping_up = False
            log.warning("the queued jobs could not be read")

        self._ctx.tasks.submit(fetch, done, failed)

    @Slot()
    def _show_unlisted(self) -> None:
        """Say how many open jobs the panel does not list, while there are some."""
        unlisted = len(self._unlisted)
        listed = len(self._model.open_job_ids()) if unlisted else 0
        self._panel.set_unlisted(listed, unlisted)

    @Slot(object)
    def _on_bridge_queue_waiting_changed(self, reason: str | None) -> None:
        self._waiting_reason = reason
        self._show_waiting()

    @Slot(bool)
    def _on_bridge_database_availability_changed(self, available: bool) -> None:
        self._database_down = not available
        self._show_waiting()

    @Slot()
    def _show_waiting(self) -> None:
        """Say why queued analyses wait, while the queue shows one: first that the
        database does not answer (a running analysis's result waits for it too), else
        the worker's reason."""
        queued = self._model.has_queued()
        # Which outage (no I/O): the file gone never ends by itself, so never "once it does".
        gone = self._ctx.application.db.outage_cause is not None
        if self._database_down and self._model.has_running():
            if gone:
                said = OPEN_WAIT_FOR_DATABASE_FILE if queued else RUNNING_WAITS_FOR_DATABASE_FILE
            else:
                said = OPEN_WAIT_FOR_DATABASE if queued else RUNNING_WAITS_FOR_DATABASE
            self._panel.set_waiting(said, who="Analyses" if queued else "Running analyses")
        elif self._database_down and queued:
            self._panel.set_waiting(
                QUEUED_WAIT_FOR_DATABASE_FILE if gone else QUEUED_WAIT_FOR_DATABASE
            )
        else:
            reason = self._waiting_reason
            self._panel.set_waiting(reason if reason and queued else None)


def _last_key(queue: JobQueue) -> tuple[float, ...]:
    """The :func:`order` of the last open job of ``queue`` (the open ones past it sort
    after it)."""
    return order(job_row(queue.open[-1])) if queue.open else _BEFORE_QUEUED
