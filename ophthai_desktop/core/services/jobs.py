"""The persistent analysis queue and the storing of finished analyses.

Jobs live in the database (queued → running → done | failed | cancelled), so a queue
survives a restart; jobs a crash left ``running`` are queued again at start. The
inference worker claims jobs one at a time; everything it learns goes back through this
service, which publishes the matching events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from ophthai_desktop.core.domain import (
    AnalysisStatus,
    JobPriority,
    JobState,
    NotificationType,
    ParseStatus,
    PatientStatus,
    WorkflowStep,
)
from ophthai_desktop.core.errors import Conflict, InvalidInput, NotFound, OphthaiError
from ophthai_desktop.core.events import (
    AbnormalScanDetected,
    AnalysisCancelled,
    AnalysisCancelRequested,
    AnalysisFailed,
    AnalysisFinished,
    AnalysisPrioritised,
    AnalysisQueued,
    Event,
    EventBus,
    NotificationCreated,
    NotificationUpdated,
    PatientUpdated,
)
from ophthai_desktop.core.imaging import inspect_image
from ophthai_desktop.core.inference.parsing import names_a_finding
from ophthai_desktop.core.inference.prompt import MAX_QUESTION_CHARS
from ophthai_desktop.core.paging import check_paging, fetch_page
from ophthai_desktop.core.records import (
    Actor,
    AnalysisRecord,
    JobQueue,
    JobRecord,
    NotificationRecord,
    Page,
    PatientRecord,
    ScanRecord,
)
from ophthai_desktop.core.services.audit import AuditService
from ophthai_desktop.core.services.notifications import NotificationService
from ophthai_desktop.core.services.patient_fields import check_patient_reference
from ophthai_desktop.core.services.patients import ImageLimits, NewImage, PatientService
from ophthai_desktop.core.storage import Database, ImageStore
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.images import sha256_hex
from ophthai_desktop.core.storage.to_records import (
    analysis_record,
    job_record,
    notification_record,
)

if TYPE_CHECKING:
    from ophthai_desktop.core.inference.engine import GenerationResult

log = logging.getLogger(__name__)

OPEN_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended, for callers that wait on it."""

    job: JobRecord
    analysis: AnalysisRecord | None


class JobService:
    """Queues analyses, hands them to the worker and stores what it produced."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        images: ImageStore,
        limits: ImageLimits,
    ) -> None:
        self._db = db
        self._bus = bus
        self._images = images
        self._limits = limits
        # Holds the look for a scan's open job and the queueing of a new one together,
        # so that two requests at the same moment make one job (one app per data folder).
        self._queue_lock = threading.Lock()

    @property
    def max_image_pixels(self) -> int:
        """The most pixels an image may have (the worker's refusals name it)."""
        return self._limits.max_pixels

    # Queueing -------------------------------------------------------------------------

    def queue_patient_analysis(
        self,
        patient_id: str,
        *,
        actor: Actor,
        question: str | None = None,
        scan_id: int | None = None,
        expect: Callable[[PatientRecord], None] | None = None,
        refuse_new: OphthaiError | None = None,
    ) -> JobRecord:
        """Queue the analysis of the patient's newest scan (or of ``scan_id``, one of
        theirs, so that a scan added meanwhile is not analysed instead).

        While that scan's analysis is queued or running, that job is returned instead
        of a second one (see :meth:`ensure_patient_analysis`). Interactive: it runs before
        the watch folder's queued analyses.

        Raises:
            OphthaiError: ``refuse_new``, where there is no open job to join (a caller's
                reason not to queue a new one, such as the model missing: the job
                already open is answered whatever it is).
        """
        job, _new = self.ensure_patient_analysis(
            patient_id,
            actor=actor,
            question=question,
            scan_id=scan_id,
            expect=expect,
            refuse_new=refuse_new,
        )
        return job

    def ensure_patient_analysis(
        self,
        patient_id: str,
        *,
        actor: Actor,
        question: str | None = None,
        scan_id: int | None = None,
        expect: Callable[[PatientRecord], None] | None = None,
        refuse_new: OphthaiError | None = None,
    ) -> tuple[JobRecord, bool]:
        """The open (queued or running) analysis of the scan with the same question, or
        a new one queued (unless ``refuse_new``, then raised); True when it is new. Each
        analysis takes the 7B model minutes, so a second request for the same scan (a
        double click, a client retrying) joins the first; not one someone asked to stop
        (it ends cancelled).

        Someone is asking, so the job is :attr:`JobPriority.INTERACTIVE`: a queued job the
        watch folder made for the scan is moved ahead of the other background jobs by
        joining it (audited as ``prioritise``).
        """
        with self._queue_lock, self._db.session() as session:
            # Locked, as a deletion locks it: the job is queued before the deletion
            # looks for open analyses, or not at all.
            PatientService.lock_in(session, patient_id, expect)
            scan = PatientService.scan_to_analyse(session, patient_id, scan_id)
            asked = (
                m.Job.question.is_(None) if not question else m.Job.question == question
            )  # another question is another analysis
            # A running job someone asked to stop is ending cancelled: a request now
            # joined to it would end so too, so it is queued anew.
            open_job = session.scalars(
                select(m.Job)
                .where(
                    m.Job.scan_id == scan.id,
                    m.Job.state.in_(OPEN_STATES),
                    m.Job.cancel_requested_at.is_(None),
                    asked,
                )
                .order_by(m.Job.id)
                .limit(1)
            ).first()
            new = raised = False
            if open_job is not None:
                if (
                    open_job.state == JobState.QUEUED.value
                    and open_job.priority < JobPriority.INTERACTIVE
                ):
                    raised = True
                    open_job.priority = int(JobPriority.INTERACTIVE)
                    details = {"patient_id": patient_id, "scan_id": scan.id}
                    session.add(
                        m.AuditEvent(
                            **AuditService.values(actor, "prioritise", "job", open_job.id, details)
                        )
                    )
                    session.flush()
                record = job_record(open_job)
            elif refuse_new is not None:
                raise refuse_new
            else:
                new = True
                record = self.queue_in(
                    session,
                    patient_id=patient_id,
                    scan_id=scan.id,
                    sha256=scan.sha256,
                    question=question,
                    actor=actor,
                )
        if new:
            self._bus.publish(_queued(record))
        elif raised:
            self._bus.publish(
                AnalysisPrioritised(
                    record.id, record.patient_id, record.scan_id, JobPriority(record.priority)
                )
            )
        return record, new

    def attach_and_queue(
        self,
        patients: PatientService,
        patient_id: str,
        image: NewImage,
        *,
        actor: Actor,
        question: str | None = None,
    ) -> tuple[ScanRecord, JobRecord]:
        """Store ``image`` as a new scan of the patient and queue its analysis, in one
        transaction: a failure leaves neither (never a scan whose analysis nobody
        queued, while the window says the image was not added). Interactive."""
        queued: list[JobRecord] = []
        scan = patients.attach_image(
            patient_id, image, actor=actor, then=self._queue_with(queued, question, actor)
        )
        self._bus.publish(_queued(queued[0]))
        return scan, queued[0]

    def create_and_queue(
        self,
        patients: PatientService,
        fields: Mapping[str, Any],
        image: NewImage,
        *,
        actor: Actor,
        question: str | None = None,
    ) -> tuple[PatientRecord, JobRecord]:
        """Create a patient with ``image`` as its first scan and queue its analysis, in
        one transaction: a failure creates nothing (never a patient the dialog still
        offers to create again, with a scan nobody analyses). Interactive."""
        queued: list[JobRecord] = []
        record = patients.create_patient(
            fields, actor=actor, image=image, then=self._queue_with(queued, question, actor)
        )
        self._bus.publish(_queued(queued[0]))
        return record, queued[0]

    def _queue_with(
        self, queued: list[JobRecord], question: str | None, actor: Actor
    ) -> Callable[[Session, ScanRecord], None]:
        """A ``then`` for :meth:`PatientService.attach_image` or ``create_patient``: the
        new scan's analysis queued in the same transaction, appended to ``queued``."""

        def queue(session: Session, scan: ScanRecord) -> None:
            queued.append(
                self.queue_in(
                    session,
                    patient_id=scan.patient_id,
                    scan_id=scan.id,
                    sha256=scan.sha256,
                    question=question,
                    actor=actor,
                )
            )

        return queue

    def queue_image_analysis(
        self, data: bytes, *, actor: Actor, question: str | None = None
    ) -> JobRecord:
        """Check and store an image that belongs to no patient, and queue its analysis."""
        inspect_image(data, max_bytes=self._limits.max_bytes, max_pixels=self._limits.max_pixels)
        digest = sha256_hex(data)
        with self._images.pinned(digest), self._db.session() as session:
            self._images.put(data, sha256=digest)
            record = self.queue_in(
                session,
                patient_id=None,
                scan_id=None,
                sha256=digest,
                question=question,
                actor=actor,
            )
        self._bus.publish(_queued(record))
        return record

    @staticmethod
    def queue_in(
        session: Session,
        *,
        patient_id: str | None,
        scan_id: int | None,
        sha256: str,
        question: str | None,
        actor: Actor,
        priority: JobPriority = JobPriority.INTERACTIVE,
    ) -> JobRecord:
        """Add a queued job inside a caller's transaction; the caller publishes
        :class:`AnalysisQueued` after the commit."""
        values = JobService.queued_values(
            patient_id=patient_id,
            scan_id=scan_id,
            sha256=sha256,
            question=question,
            actor=actor,
            priority=priority,
        )
        job = m.Job(**values)
        session.add(job)
        session.flush()
        session.add(
            m.AuditEvent(**JobService.queued_audit_values(actor, job.id, patient_id, scan_id))
        )
        return job_record(job)

    @staticmethod
    def queued_values(
        *,
        patient_id: str | None,
        scan_id: int | None,
        sha256: str,
        question: str | None,
        actor: Actor,
        priority: JobPriority = JobPriority.INTERACTIVE,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """A new queued analysis job's column values, checked (for callers that insert
        many rows at once). ``priority``: interactive for an analysis someone asked for,
        background for the watch folder's."""
        if question is not None and len(question) > MAX_QUESTION_CHARS:
            raise InvalidInput(
                f"the question is longer than {MAX_QUESTION_CHARS} characters", field="question"
            )
        return {
            "kind": "analysis",
            "state": JobState.QUEUED.value,
            "patient_id": patient_id,
            "scan_id": scan_id,
            "image_sha256": sha256,
            "question": question or None,
            "error": None,
            "attempts": 0,
            "requested_by": f"{actor.via}:{actor.who}"[:200],
            "priority": int(priority),
            "created_at": now or m.utcnow(),
            "started_at": None,
            "finished_at": None,
        }

    @staticmethod
    def queued_audit_values(
        actor: Actor,
        job_id: int,
        patient_id: str | None,
        scan_id: int | None,
        *,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """The column values of a queued job's audit entry."""
        details = {"patient_id": patient_id, "scan_id": scan_id}
        return AuditService.values(actor, "queue", "job", job_id, details, at=at)

    # Reading --------------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord:
        with self._db.session() as session:
            return job_record(self._get(session, job_id))

    def list_jobs(
        self,
        *,
        state: str | None = None,
        patient_id: str | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> Page[JobRecord]:
        """Newest first."""
        check_patient_reference(patient_id)
        query = select(m.Job)
        if state:
            try:
                query = query.where(m.Job.state == JobState(state).value)
            except ValueError as exc:
                allowed = ", ".join(s.value for s in JobState)
                raise InvalidInput(f"state must be one of: {allowed}", field="state") from exc
        if patient_id is not None:
            query = query.where(m.Job.patient_id == patient_id)
        with self._db.session() as session:
            return fetch_page(
                session,
                query,
                order_by=(m.Job.created_at.desc(), m.Job.id.desc()),
                skip=skip,
                limit=limit,
                convert=job_record,
            )

    def list_queue(self, *, limit: int, finished: int) -> JobQueue:
        """What a job queue shows first: the open (running and queued) jobs that run
        first, up to ``limit`` (running, then in :meth:`claim_next`'s order), the ids of
        the open ones past them, and the newest finished jobs in the room left below
        ``limit``, at most ``finished``.

        Read at one moment (:meth:`Database.snapshot`), though in three queries: a job
        that finishes meanwhile is listed once, as it was when the read began.

        A newest-first page (:meth:`list_jobs`) leaves out what runs next behind a
        backlog of newer queued jobs (the watch folder's, after a restart).
        """
        check_paging(0, limit)
        running_first = case((m.Job.state == JobState.RUNNING.value, 0), else_=1)
        with self._db.snapshot() as session:
            open_ids = session.execute(
                select(m.Job.id, m.Job.patient_id)
                .where(m.Job.state.in_(OPEN_STATES))
                .order_by(running_first, *_RUN_ORDER)
            ).all()
            first = [job_id for job_id, _patient in open_ids[:limit]]
            rows = session.scalars(select(m.Job).where(m.Job.id.in_(first))).all() if first else []
            by_id = {row.id: job_record(row) for row in rows}
            room = min(finished, limit - len(first))
            done = (
                session.scalars(
                    select(m.Job)
                    .where(m.Job.state.not_in(OPEN_STATES))
                    .order_by(m.Job.created_at.desc(), m.Job.id.desc())
                    .limit(room)
                ).all()
                if room > 0
                else []
            )
            return JobQueue(
                open=tuple(by_id[job_id] for job_id in first if job_id in by_id),
                more_open=tuple((job_id, patient) for job_id, patient in open_ids[limit:]),
                finished=tuple(job_record(row) for row in done),
            )

    def completion_tokens_of(self, job_ids: Collection[int]) -> dict[int, int]:
        """How many tokens the model wrote for those of ``job_ids`` that have a stored
        analysis with a count (for lists that show a finished job's count)."""
        if not job_ids:
            return {}
        with self._db.session() as session:
            rows = session.execute(
                select(m.Analysis.job_id, m.Analysis.completion_tokens).where(
                    m.Analysis.job_id.in_(set(job_ids))
                )
            )
            return {
                job_id: tokens
                for job_id, tokens in rows
                if job_id is not None and tokens is not None
            }

    def outcome(self, job_id: int) -> JobOutcome:
        """The job and, when it is done, its analysis."""
        with self._db.session() as session:
            job = self._get(session, job_id)
            analysis = session.scalars(
                select(m.Analysis).where(m.Analysis.job_id == job_id).limit(1)
            ).first()
            return JobOutcome(job_record(job), analysis_record(analysis) if analysis else None)

    def get_analysis(self, analysis_id: int) -> AnalysisRecord:
        with self._db.session() as session:
            row = session.get(m.Analysis, analysis_id)
            if row is None:
                raise NotFound(f"analysis {analysis_id} not found")
            return analysis_record(row)

    def image_bytes(self, job: JobRecord) -> bytes:
        return self._images.read(job.image_sha256)

    # Worker side (inference worker thread) ---------------------------------------------

    def requeue_interrupted(self) -> int:
        """Queue again the jobs a crash left running; called once at start. Those
        someone had asked to stop (a cancel the worker had not carried out when the app
        ended) are cancelled instead, as are such jobs queued again since then."""
        with self._db.session() as session:
            cancelled = session.execute(
                update(m.Job)
                .where(m.Job.state.in_(OPEN_STATES), m.Job.cancel_requested_at.is_not(None))
                .values(state=JobState.CANCELLED.value, finished_at=datetime.now(UTC))
                .returning(m.Job.id, m.Job.patient_id)
            ).all()
            result = session.execute(
                update(m.Job)
                .where(m.Job.state == JobState.RUNNING.value)
                .values(state=JobState.QUEUED.value, started_at=None)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        for job_id, patient_id in cancelled:
            self._bus.publish(AnalysisCancelled(job_id, patient_id))
        if cancelled:
            log.info(
                "cancelled %s asked to stop before the last shutdown", _analyses(len(cancelled))
            )
        if count:
            log.info("re-queued %s interrupted by the last shutdown", _analyses(count))
        return count

    def claim_next(self) -> JobRecord | None:
        """Mark the next queued job running and return it (None if the queue is empty):
        the highest :class:`JobPriority` first, then the oldest.

        One ``UPDATE ... RETURNING`` statement: it only applies while the job is still
        queued, so a job cancelled at the same moment is never run.
        """
        oldest = (
            select(m.Job.id)
            .where(m.Job.state == JobState.QUEUED.value)
            .order_by(*_RUN_ORDER)
            .limit(1)
            .scalar_subquery()
        )
        claim = (
            update(m.Job)
            .where(m.Job.id == oldest, m.Job.state == JobState.QUEUED.value)
            .values(
                state=JobState.RUNNING.value,
                started_at=datetime.now(UTC),
                attempts=m.Job.attempts + 1,
            )
            .returning(m.Job)
        )
        while True:
            with self._db.session() as session:
                job = session.scalars(claim).first()
                if job is not None:
                    return job_record(job)
                if not self.has_queued_in(session):
                    return None
            # Taken or cancelled in between: look again.

    def queued_ahead(self, job_id: int) -> int:
        """How many queued jobs the worker takes before this queued one, in
        :meth:`claim_next`'s order (0: it runs next, once the running one ends)."""
        with self._db.session() as session:
            job = self._get(session, job_id)
            earlier = or_(
                m.Job.created_at < job.created_at,
                and_(m.Job.created_at == job.created_at, m.Job.id < job.id),
            )
            ahead = select(func.count(m.Job.id)).where(
                m.Job.state == JobState.QUEUED.value,
                m.Job.id != job.id,
                or_(
                    m.Job.priority > job.priority,
                    and_(m.Job.priority == job.priority, earlier),
                ),
            )
            return session.scalar(ahead) or 0

    def requeue(self, job_id: int, *, announce: bool = False) -> None:
        """Put a running job back in the queue (the app is stopping mid-analysis, or
        the model was unloaded under it); with ``announce``, publish
        :class:`AnalysisQueued` so that clients see it waiting again."""
        with self._db.session() as session:
            job = session.scalars(
                update(m.Job)
                .where(m.Job.id == job_id, m.Job.state == JobState.RUNNING.value)
                .values(state=JobState.QUEUED.value, started_at=None)
                .returning(m.Job)
            ).first()
            record = job_record(job) if job is not None else None
        if record is not None:
            log.info("analysis job %d queued again", job_id)
            if announce:
                self._bus.publish(_queued(record, requeued=True))

    def has_queued(self) -> bool:
        with self._db.session() as session:
            return self.has_queued_in(session)

    @staticmethod
    def has_queued_in(session: Session) -> bool:
        return (
            session.scalar(select(m.Job.id).where(m.Job.state == JobState.QUEUED.value).limit(1))
            is not None
        )

    def complete(
        self, job: JobRecord, result: GenerationResult, *, again: bool = False
    ) -> AnalysisRecord:
        """Store the analysis with its provenance, finish the job, advance the patient's
        workflow, and raise the alarm for an abnormal finding.

        ``job`` is the record :meth:`claim_next` returned: what the analysis needs from
        the job cannot change while it runs, so the row is not read again.

        ``again``: an earlier call for this job may have stored it (the worker tries
        again after a commit whose answer was lost, a database server restarting as it
        committed): if it did, nothing more is stored and the stored analysis is
        announced.

        Raises:
            NotFound: The job is gone (its patient was deleted meanwhile).
        """
        stored = self._stored_before(job, result) if again else None
        if stored is not None:
            return stored
        now = datetime.now(UTC)
        job_id = job.id
        events: list[Event] = []
        with self._db.session() as session:
            # The patient first, as deleting them locks it: a deletion either waits
            # for this result (and announces it gone) or comes first (the job is gone).
            patient = PatientService.lock_in(session, job.patient_id) if job.patient_id else None
            finished = session.execute(
                update(m.Job)
                .where(m.Job.id == job_id)
                .values(state=JobState.DONE.value, finished_at=now, error=None)
            )
            if int(getattr(finished, "rowcount", 0) or 0) != 1:
                raise NotFound(f"job {job_id} not found")
            started = job.started_at or now
            parsed = result.parsed
            row = m.Analysis(
                patient_id=job.patient_id,
                scan_id=job.scan_id,
                job_id=job.id,
                image_sha256=job.image_sha256,
                model_id=_fit(result.model_id, 200),
                model_revision=result.revision,
                prompt_version=result.prompt_version,
                generation_settings={
                    **result.generation,
                    "finish_reason": result.finish_reason,
                    "thinking_forced_closed": result.thinking_forced_closed,
                },
                device=result.device,
                dtype=result.dtype,
                quantization=result.quantization,
                reasoning_text=result.reasoning,
                answer_text=result.answer_text,
                result=parsed.to_dict() if parsed else None,
                parse_status=(
                    ParseStatus.PARSED.value if parsed else ParseStatus.PARSE_FAILED.value
                ),
                parse_error=result.parse_error,
                status=AnalysisStatus.PRELIMINARY.value,
                queue_wait_s=max(0.0, (started - job.created_at).total_seconds()),
                time_to_first_token_s=result.time_to_first_token_s,
                total_s=result.total_s,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
            )
            session.add(row)
            session.flush()
            if patient is not None:
                patient.workflow_step = int(WorkflowStep.VALIDATION)
                patient.updated_at = now
                if parsed is not None and not parsed.is_ungradable:
                    patient.status = (
                        PatientStatus.CRITICAL.value
                        if parsed.is_abnormal
                        else PatientStatus.STABLE.value
                    )
                elif _unread_findings(result):
                    # As a preliminary finding makes them: the list shows who to look at.
                    patient.status = PatientStatus.CRITICAL.value
                # A new result awaits review: the verdict on the one before goes, with
                # who gave it and when, as withdrawing a verdict clears them.
                patient.validation_status = patient.validated_by = None
                patient.validated_at = patient.validation_notes = None
            for notice in _notices(result, patient):
                note = NotificationService.create_in(
                    session,
                    notice.message,
                    type=notice.type,
                    patient_id=job.patient_id,
                    analysis_id=row.id,
                    warning=notice.warning,
                )
                events.extend(notice.events(note))
            if patient is not None:
                # The scan has a result now: its earlier failures' alarms are no longer
                # true (announced as any read change is, after this commit).
                events.extend(
                    NotificationUpdated(note) for note in _read_failures_answered_in(session, job)
                )
            record = analysis_record(row)
            patient_record = (
                PatientService.records_in(session, [patient])[0] if patient is not None else None
            )
        self._bus.publish(AnalysisFinished(job_id, record.patient_id, record))
        if patient_record is not None:
            self._bus.publish(PatientUpdated(patient_record))
        for event in events:
            self._bus.publish(event)
        return record

    def _stored_before(self, job: JobRecord, result: GenerationResult) -> AnalysisRecord | None:
        """The analysis of ``job`` when it is no longer running and has one (stored by an
        earlier :meth:`complete` of ``result``), announced as :meth:`complete` does, with
        the notifications that commit stored, found by the analysis they name (their text
        names the patient, who may have been renamed since; one deleted meanwhile is not
        announced); None otherwise."""
        with self._db.session() as session:
            state = session.scalar(select(m.Job.state).where(m.Job.id == job.id))
            if state is None or state == JobState.RUNNING.value:
                return None
            row = session.scalars(
                select(m.Analysis).where(m.Analysis.job_id == job.id).limit(1)
            ).first()
            if row is None:
                return None
            record = analysis_record(row)
            patient = session.get(m.Patient, job.patient_id) if job.patient_id else None
            patient_record = (
                PatientService.records_in(session, [patient])[0] if patient is not None else None
            )
            events: list[Event] = []
            notes = session.scalars(
                select(m.Notification)
                .where(m.Notification.analysis_id == row.id)
                .order_by(m.Notification.id)
            ).all()
            # Each with the notice of ``result`` it was stored from, for the finding
            # that ``abnormal_scan`` names: ``_notices`` raises one at most.
            for notice, note in zip(_notices(result, patient), notes, strict=False):
                events.extend(notice.events(notification_record(note)))
        log.info("analysis job %d: its analysis was stored already", job.id)
        self._bus.publish(AnalysisFinished(job.id, record.patient_id, record))
        if patient_record is not None:
            self._bus.publish(PatientUpdated(patient_record))
        for event in events:
            self._bus.publish(event)
        return record

    def fail(
        self, job_id: int, reason: str, *, logged: str | None = None, again: bool = False
    ) -> None:
        """The job failed; ``reason`` is for the clinician (no patient identifiers).
        ``logged``: what the log says instead, where ``reason`` quotes an exception's
        text (which can quote what the job read). A job of a patient raises an info
        notification naming them, the job and the reason, stored with the job's end.

        ``again``: an earlier call for this job may have stored it (the worker tries
        again after a commit whose answer was lost): if it did, nothing more is stored
        and what that commit stored, never announced, is (the failure and its
        notification). A call that is no try again, on a job failed already, stores and
        announces nothing.

        Raises:
            NotFound: The job is gone (its patient was deleted meanwhile).
        """
        note: NotificationRecord | None = None
        with self._db.session() as session:
            self._lock_patient_of(session, job_id)
            before = session.scalar(select(m.Job.state).where(m.Job.id == job_id))
            stored = before == JobState.FAILED.value
            if stored:  # its end stored before (its reason kept): announced below
                patient_id = session.scalar(select(m.Job.patient_id).where(m.Job.id == job_id))
            else:
                patient_id = self._end_in(
                    session,
                    job_id,
                    state=JobState.FAILED.value,
                    error=reason[:2000],
                    finished_at=datetime.now(UTC),
                )
            patient = session.get(m.Patient, patient_id) if patient_id is not None else None
            # Told as a finished analysis's outcome is, so that one failing unattended (a
            # watch-folder scan overnight) does not wait unseen in the queue; once only,
            # where a try again finds the failure stored by a commit whose answer was lost.
            if patient is not None and not stored:
                note = NotificationService.create_in(
                    session,
                    _failure_message(job_id, patient, reason),
                    type=NotificationType.INFO.value,
                    patient_id=patient_id,
                    job_id=job_id,
                    warning=True,
                )
            elif patient is not None and again:
                note = _failure_note_in(session, job_id, patient.id)
        if stored and not again:
            return  # told when it was stored
        # Said once: a try again's first commit, whose answer was lost, said nothing.
        log.warning("analysis job %d failed: %s", job_id, reason if logged is None else logged)
        self._bus.publish(AnalysisFailed(job_id, patient_id, reason))
        if note is not None:
            self._bus.publish(NotificationCreated(note))

    def mark_cancelled(self, job_id: int) -> None:
        """The worker stopped a running job because it was cancelled.

        Raises:
            NotFound: The job is gone (its patient was deleted meanwhile).
        """
        patient_id = self._end(
            job_id, state=JobState.CANCELLED.value, finished_at=datetime.now(UTC)
        )
        self._bus.publish(AnalysisCancelled(job_id, patient_id))

    def _end(self, job_id: int, **values: Any) -> str | None:
        """Write the job's end in one statement; its patient's id.

        One statement, as :meth:`claim_next`'s: read first and written at the commit,
        a job deleted with its patient in between came out as SQLAlchemy's
        ``StaleDataError`` instead of :class:`NotFound`.

        Its patient is locked first (see :meth:`_lock_patient_of`).
        """
        with self._db.session() as session:
            self._lock_patient_of(session, job_id)
            return self._end_in(session, job_id, **values)

    @staticmethod
    def _end_in(session: Session, job_id: int, **values: Any) -> str | None:
        """:meth:`_end` inside a caller's transaction, its patient locked already."""
        ended = session.execute(
            update(m.Job).where(m.Job.id == job_id).values(**values).returning(m.Job.patient_id)
        ).first()
        if ended is None:
            raise NotFound(f"job {job_id} not found")
        return ended.patient_id

    def request_cancel(self, job_id: int, *, actor: Actor) -> JobRecord:
        """Cancel a queued job now; a running one is marked for the worker to stop.

        Raises:
            Conflict: The job already ended.
        """
        with self._db.session() as session:
            self._lock_patient_of(session, job_id)
            # One statement that applies only while the job is still queued, as
            # claim_next's: a job the worker claims at the same moment is either
            # cancelled before it runs or asked to stop, never both run and "cancelled".
            job = session.scalars(
                update(m.Job)
                .where(m.Job.id == job_id, m.Job.state == JobState.QUEUED.value)
                .values(state=JobState.CANCELLED.value, finished_at=datetime.now(UTC))
                .returning(m.Job)
            ).first()
            was_queued = job is not None
            if job is None:
                job = self._get(session, job_id)
                if job.state not in OPEN_STATES:
                    raise Conflict(f"job {job_id} already ended ({job.state})")
                # Kept, so that the job never runs again if the app ends before the
                # worker has stopped it (see requeue_interrupted).
                job.cancel_requested_at = datetime.now(UTC)
            AuditService.record(session, actor, "cancel", "job", job_id)
            session.flush()
            record = job_record(job)
        if was_queued:
            self._bus.publish(AnalysisCancelled(job_id, record.patient_id))
        else:
            self._bus.publish(AnalysisCancelRequested(job_id))
        return record

    @staticmethod
    def _lock_patient_of(session: Session, job_id: int) -> None:
        """Lock the job's patient, if it has one, before the job's end is written.

        As :meth:`complete` and a deletion lock the patient first: the deletion either
        sees the job ended (and leaves announcing its end to whoever ended it) or comes
        first (the job is gone). Unlocked, on PostgreSQL the deletion read the job still
        open while its end was written but not yet committed, and announced it
        cancelled after the end had been announced: two ends of one analysis.

        Raises:
            NotFound: The job is gone (its patient was deleted meanwhile).
        """
        owner = session.execute(select(m.Job.patient_id).where(m.Job.id == job_id)).first()
        if owner is None:
            raise NotFound(f"job {job_id} not found")
        if owner.patient_id is not None:
            try:
                PatientService.lock_in(session, owner.patient_id)
            except NotFound as exc:
                raise NotFound(f"job {job_id} not found") from exc

    @staticmethod
    def _get(session: Session, job_id: int) -> m.Job:
        row = session.get(m.Job, job_id)
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return row


#: The order the worker takes queued jobs in (:meth:`JobService.claim_next`): the highest
#: priority first, then the oldest.
_RUN_ORDER = (m.Job.priority.desc(), m.Job.created_at, m.Job.id)


def _queued(record: JobRecord, *, requeued: bool = False) -> AnalysisQueued:
    """The :class:`AnalysisQueued` event announcing the queued job ``record``."""
    return AnalysisQueued(
        record.id,
        record.patient_id,
        record.scan_id,
        requeued=requeued,
        priority=JobPriority(record.priority),
        created_at=record.created_at,
    )


@dataclass(frozen=True)
class _Notice:
    """A notification a finished analysis raises: critical for a finding (``label``,
    and its ``confidence``, None where the answer named it but could not be read),
    info for an image to take again or an answer to read."""

    message: str
    label: str | None = None
    confidence: float | None = None
    #: Listed as a warning (an answer that could not be read).
    warning: bool = False

    @property
    def type(self) -> str:
        return (
            NotificationType.INFO.value if self.label is None else NotificationType.CRITICAL.value
        )

    def events(self, note: NotificationRecord) -> list[Event]:
        """The events of ``note``, this notice stored: ``notification``, and for a
        finding ``abnormal_scan``."""
        if self.label is None:
            return [NotificationCreated(note)]
        confidence = self.confidence
        probabilities = {} if confidence is None else {self.label: confidence / 100.0}
        return [
            NotificationCreated(note),
            AbnormalScanDetected(
                notification=note,
                label=self.label,
                confidence=confidence,
                probabilities=probabilities,
                source="octomed",
            ),
        ]


def _unread_findings(result: GenerationResult) -> list[str]:
    """The abnormal diagnoses an answer that could not be read names ("DME" then
    "Normal", or one cut off after its classification): alarmed on as a preliminary
    finding is, marked as unreadable, so that the clinician reads it now."""
    if result.parsed is not None:
        return []
    return [label for label in result.named_classifications if names_a_finding(label)]


def _notices(result: GenerationResult, patient: m.Patient | None) -> list[_Notice]:
    """The notifications the analysis ``result`` of ``patient``'s scan (None: an image
    of no patient) raises, as :meth:`JobService.complete` stores them."""
    parsed = result.parsed
    unread_findings = _unread_findings(result)
    where = f" for patient {patient.name}" if patient is not None else ""
    if parsed is not None and parsed.is_abnormal:
        message = (
            f"Abnormal finding{where}: {parsed.classification} "
            f"({parsed.confidence:g}% confidence) - preliminary, needs validation"
        )
        notice = _Notice(message, parsed.classification, parsed.confidence)
    elif unread_findings:
        label = " or ".join(unread_findings)
        message = (
            f"Possible abnormal finding{where}: {label} - the answer could not be "
            f"read: {_sentence(_reason(result.parse_error))} Read the model's "
            "answer before validating."
        )
        notice = _Notice(message, label, None)  # no confidence was read
    elif patient is None:
        return []
    elif parsed is not None and parsed.is_ungradable:
        # No finding to alarm on, and nothing may go unread either: an image the model
        # could not grade is to be taken again, and an answer that could not be read
        # (two different diagnoses, one cut off) waits for the clinician as much as a
        # finding does, unattended watch-folder scans too.
        notice = _Notice(
            f"The image for patient {patient.name} could not be graded "
            f"({parsed.classification}): "
            f"{_sentence(parsed.explanation or 'no reason given')} Take the scan "
            "again or analyse another image."
        )
    elif parsed is None:
        notice = _Notice(
            f"{FAILURE_OPENING}{patient.name} could not be read: "
            f"{_sentence(_reason(result.parse_error))} Read "
            "the model's answer before validating.",
            warning=True,
        )
    else:
        return []  # a normal result: nothing to say
    # As stored (see NotificationService.new_values).
    return [replace(notice, message=notice.message[:2000].strip())]


def _analyses(count: int) -> str:
    """``count`` analyses, in words for the log ("1 analysis", "2 analyses")."""
    return f"{count} analysis" if count == 1 else f"{count} analyses"


def _read_failures_answered_in(session: Session, job: JobRecord) -> list[NotificationRecord]:
    """Mark read, in the caller's transaction, the unread notifications of earlier failed
    analyses of ``job``'s scan (``job`` stores its result: "The analysis for patient …
    failed (job #N): …" is answered); not those of the patient's other scans, whose
    failures still stand, nor any other notification. The ones marked, by id."""
    same_scan = m.Job.scan_id.is_(None) if job.scan_id is None else m.Job.scan_id == job.scan_id
    failed = session.scalars(
        select(m.Job.id).where(
            m.Job.patient_id == job.patient_id,
            same_scan,
            m.Job.state == JobState.FAILED.value,
            m.Job.id < job.id,
        )
    ).all()
    if not failed:
        return []
    answered = session.scalars(
        select(m.Notification)
        .where(
            m.Notification.job_id.in_(failed),
            m.Notification.read.is_(False),
        )
        .order_by(m.Notification.id)
    ).all()
    for note in answered:
        note.read = True
    session.flush()
    return [notification_record(note) for note in answered]


def _failure_note_in(session: Session, job_id: int, patient_id: str) -> NotificationRecord | None:
    """The notification of job ``job_id``'s failure (its patient's), or None where it
    is gone."""
    note = session.scalars(
        select(m.Notification)
        .where(m.Notification.job_id == job_id, m.Notification.patient_id == patient_id)
        .order_by(m.Notification.id.desc())
        .limit(1)
    ).first()
    return notification_record(note) if note is not None else None


#: How the notification of a failed analysis opens (see :func:`_failure_message`).
FAILURE_OPENING = "The analysis for patient "


def says_answer_not_read(note: NotificationRecord) -> bool:
    """Whether ``note`` is the one an analysis whose answer could not be read (and named
    no finding) raised: "The analysis for patient … could not be read: …", the warning
    that names its analysis (a failure's names its job). Stored as ``info``, one of the
    seed's types the API keeps; the window shows and announces it as a warning."""
    return note.warning and note.analysis_id is not None


def _failure_message(job_id: int, patient: m.Patient, reason: str) -> str:
    """The notification of an analysis of ``patient``'s scan that failed, as stored."""
    message = (
        f"{FAILURE_OPENING}{patient.name} failed (job #{job_id}): "
        f"{_sentence(reason or 'no reason given')}"
    )
    return message[:2000].strip()


def _sentence(text: str) -> str:
    """``text`` ending as a sentence does (a full stop added where it has none)."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _reason(parse_error: str | None) -> str:
    """Why an answer could not be read, for a notification that goes on to say "Read the
    model's answer" itself."""
    return (parse_error or "no result in the answer").removesuffix(" Read the model's answer.")


def _fit(text: str, length: int) -> str:
    """``text`` cut to ``length`` characters, keeping its end (a folder's own name)."""
    return text if len(text) <= length else "…" + text[-(length - 1) :]
