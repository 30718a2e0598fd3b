"""Patients: records, their images, and the clinical workflow around an analysis.

Workflow: a new scan puts the patient at step 1 (analysis); a finished analysis moves
them to 2 (validation); the clinician's verdict to 3 (scheduling); an appointment to 4
(complete). Complete means a verdict and an appointment: an appointment booked before
the verdict is kept without completing anything, and the verdict then completes the
workflow while that appointment is still to come; a verdict withdrawn puts the patient
back at validation (the appointment stays booked). An answer that could not be read holds
no result: rejected (it cannot be approved), it puts the patient back at analysis.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, String, false, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ophthai_desktop.core import domain
from ophthai_desktop.core.domain import (
    AnalysisStatus,
    JobState,
    Laterality,
    Modality,
    ParseStatus,
    PatientStatus,
    ScanSource,
    ValidationStatus,
    WorkflowStep,
    age_on,
    text_sort_key,
)
from ophthai_desktop.core.errors import Conflict, InvalidInput, NotFound, about_field
from ophthai_desktop.core.events import (
    AnalysisCancelled,
    EventBus,
    NotificationDeleted,
    NotificationUpdated,
    PatientCreated,
    PatientDeleted,
    PatientUpdated,
    ScanIngested,
)
from ophthai_desktop.core.imaging import ImageInfo, inspect_image
from ophthai_desktop.core.inference.parsing import (
    AnswerParseError,
    ParsedAnswer,
    edits_stored,
    validate_result,
)
from ophthai_desktop.core.log_safety import patient_ref
from ophthai_desktop.core.paging import After, check_paging, rows_after
from ophthai_desktop.core.records import (
    Actor,
    AnalysisRecord,
    NotificationRecord,
    Page,
    PatientRecord,
    ScanRecord,
)
from ophthai_desktop.core.services.audit import AuditService
from ophthai_desktop.core.services.oculomics import summary_from_json
from ophthai_desktop.core.services.patient_fields import (
    aware,
    check_patient_id,
    clean_fields,
    reconcile_age,
)
from ophthai_desktop.core.storage import Database, ImageStore
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.images import sha256_hex
from ophthai_desktop.core.storage.sorting import age_in_years, case_insensitive, in_byte_order
from ophthai_desktop.core.storage.to_records import (
    analysis_record,
    notification_record,
    patient_record,
    scan_record,
)

log = logging.getLogger(__name__)

#: Columns the patient list can be sorted by.
SORTABLE: dict[str, Any] = {
    "id": in_byte_order(m.Patient.id),  # as SQLite orders text, whatever the locale
    "name": m.Patient.name_key,  # case and accents ignored (text_sort_key)
    "age": m.Patient.age,  # as shown: see list_patients
    "birth_date": m.Patient.birth_date,
    "gender": case_insensitive(m.Patient.gender),
    "status": in_byte_order(m.Patient.status),
    "workflow_step": m.Patient.workflow_step,
    "admission_date": m.Patient.admission_date,
    "appointment_date": m.Patient.appointment_date,
    "created_at": m.Patient.created_at,
    "updated_at": m.Patient.updated_at,
}

#: Sort keys some patients have no value for. Those patients come last whichever way
#: the list is sorted, on both databases (SQLite puts NULL first when ascending and
#: PostgreSQL last, each the other way round when descending).
NULLABLE_SORT_KEYS = frozenset({"age", "birth_date", "gender", "appointment_date"})

#: How far in the past an appointment may be given (clock skew between machines).
APPOINTMENT_PAST_TOLERANCE = timedelta(minutes=5)
#: An appointment sent back within this of the one booked is that one, as the client
#: kept it (a JavaScript Date keeps milliseconds, a datetime-local field minutes).
APPOINTMENT_SAME_WITHIN = timedelta(minutes=1)


def _same_appointment(booked: datetime | None, sent: datetime | None) -> bool:
    if booked is None or sent is None:
        return booked is sent
    if booked.tzinfo is None:  # stored as UTC
        booked = booked.replace(tzinfo=UTC)
    return abs(aware(sent, "appointment_date") - booked) < APPOINTMENT_SAME_WITHIN


def refuse_past_appointment(when: datetime, now: datetime) -> None:
    """A new appointment must be to come (within :data:`APPOINTMENT_PAST_TOLERANCE`):
    the rule of scheduling, and of a PATCH that moves the appointment."""
    if when < now - APPOINTMENT_PAST_TOLERANCE:
        raise InvalidInput("the appointment is in the past", field="appointment_date")


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class NewImage:
    """An image to attach, with what is known about how it was taken."""

    data: bytes
    source: str = ScanSource.API
    modality: str = Modality.UNKNOWN
    laterality: str = Laterality.UNKNOWN
    acquired_at: datetime | None = None
    filename: str | None = None
    #: The request field it came in (``imageUrl``, ``file``): errors about it name it.
    field: str | None = None


def _drop_echoed_age(values: dict[str, Any], row: m.Patient) -> None:
    """Leave out an age a client sends back as it read it, beside a birth date: the
    age follows the birth date, and a client that PATCHes back the whole patient with
    a corrected birth date (or read it the day before a birthday) is not contradicting
    it. Any other age that disagrees with the birth date is still refused."""
    given = values.get("age")
    birth_date = values.get("birth_date", row.birth_date)
    if given is None or birth_date is None or row.birth_date is None:
        return
    shown = age_on(row.birth_date)
    read_before_birthday = birth_date == row.birth_date and given == shown - 1
    if given != age_on(birth_date) and (given == shown or read_before_birthday):
        del values["age"]


def new_patient_id() -> str:
    return f"pt-{uuid.uuid4().hex[:12]}"


def new_patient_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Checked fields of a new patient with the defaults filled in: pending analysis,
    admitted now, at the analysis step."""
    values = clean_fields({"status": PatientStatus.PENDING_ANALYSIS.value, **fields})
    if "name" not in values:
        raise InvalidInput("the name is required", field="name")
    reconcile_age(values, values.get("birth_date"))
    values.setdefault("admission_date", datetime.now(UTC))
    values.setdefault("workflow_step", int(WorkflowStep.ANALYSIS))
    return values


class PatientService:
    """Create, read, change and delete patients; attach images; validate; schedule."""

    def __init__(
        self, db: Database, bus: EventBus, images: ImageStore, limits: ImageLimits
    ) -> None:
        self._db = db
        self._bus = bus
        self._images = images
        self._limits = limits

    # Reading ------------------------------------------------------------------------

    def names_of(self, patient_ids: Collection[str]) -> dict[str, str]:
        """The names of those of ``patient_ids`` that exist (for lists that show a
        patient by name, such as the job queue)."""
        if not patient_ids:
            return {}
        with self._db.session() as session:
            rows = session.execute(
                select(m.Patient.id, m.Patient.name).where(m.Patient.id.in_(set(patient_ids)))
            )
            return {patient_id: name for patient_id, name in rows}

    def get_patient(self, patient_id: str) -> PatientRecord:
        """The patient with their newest scan and analysis, read at one moment (an
        analysis that finishes meanwhile is not shown beside the step before it)."""
        with self._db.snapshot() as session:
            return self.records_in(session, [self._get(session, patient_id)])[0]

    def exists(self, patient_id: str) -> bool:
        with self._db.session() as session:
            return session.get(m.Patient, patient_id) is not None

    def list_patients(
        self,
        *,
        search: str | None = None,
        status: str | None = None,
        skip: int = 0,
        limit: int = 100,
        order_by: str = "created_at",
        descending: bool = True,
        after: After | None = None,
    ) -> Page[PatientRecord]:
        """A page of patients with the total that match ``search`` and ``status``.

        ``search`` matches part of the name, ignoring case and accents ("jose" finds
        "José", "muller" "Müller"), or part of the id, ignoring case. Patients without a
        value for ``order_by`` (no birth date, say) come last either way. With
        ``after`` (:func:`patient_after` of the last patient the reader holds, in this
        order), the page starts after that patient, whoever was created or deleted
        since; ``skip`` then counts from there, and the total still counts every match.
        The total and the page, with each patient's newest scan and analysis, are read
        at one moment.
        """
        check_paging(skip, limit)
        filters, ordering = _listing(search, status, order_by, descending)
        following = [] if after is None else [_following(order_by, descending, after)]
        with self._db.snapshot() as session:
            total = session.scalar(select(func.count(m.Patient.id)).where(*filters)) or 0
            rows = session.scalars(
                select(m.Patient)
                .where(*filters, *following)
                .order_by(*ordering)
                .offset(skip)
                .limit(limit)
            ).all()
            return Page(self.records_in(session, rows), total, skip, limit)

    def position_of(
        self,
        patient_id: str,
        *,
        search: str | None = None,
        status: str | None = None,
        order_by: str = "created_at",
        descending: bool = True,
    ) -> int | None:
        """Where the patient stands (from 0) in :meth:`list_patients` of the same query,
        or None where the query does not list them: the list then loads the pages up to
        that patient to show them still chosen after a new search, without reading the
        whole list to find out that they are not in it."""
        filters, ordering = _listing(search, status, order_by, descending)
        numbered = (
            select(
                m.Patient.id.label("patient_id"),
                func.row_number().over(order_by=ordering).label("number"),
            )
            .where(*filters)
            .subquery()
        )
        with self._db.session() as session:
            number = session.scalar(
                select(numbered.c.number).where(numbered.c.patient_id == patient_id)
            )
            return None if number is None else int(number) - 1

    def list_scans(self, patient_id: str) -> tuple[ScanRecord, ...]:
        """The patient's scans, newest first."""
        with self._db.session() as session:
            self._get(session, patient_id)
            rows = session.scalars(_scans_newest_first(patient_id)).all()
            return tuple(scan_record(r) for r in rows)

    def get_scan(self, patient_id: str, scan_id: int) -> ScanRecord:
        """One of the patient's scans (where an upload's ``Location`` points)."""
        with self._db.session() as session:
            self._get(session, patient_id)
            scan = session.get(m.Scan, scan_id)
            if scan is None or scan.patient_id != patient_id:
                raise NotFound(f"scan {scan_id} not found")
            return scan_record(scan)

    def list_analyses(self, patient_id: str) -> tuple[AnalysisRecord, ...]:
        """The patient's analyses, newest first."""
        with self._db.session() as session:
            self._get(session, patient_id)
            rows = session.scalars(
                select(m.Analysis)
                .where(m.Analysis.patient_id == patient_id)
                .order_by(m.Analysis.created_at.desc(), m.Analysis.id.desc())
            ).all()
            return tuple(analysis_record(r) for r in rows)

    def latest_image(self, patient_id: str) -> tuple[Path, str]:
        """The file and media type of the patient's newest scan."""
        with self._db.session() as session:
            self._get(session, patient_id)
            scan = self.newest_scan_in(session, patient_id)
            if scan is None:
                raise NotFound(f"patient {patient_id} has no image")
            sha, media_type = scan.sha256, scan.media_type
        return self._image_file(sha), media_type

    def scan_image(self, scan_id: int, *, patient_id: str | None = None) -> tuple[Path, str]:
        """The file and media type of one scan (of ``patient_id``, when given: a patient
        who is not there is said so, as the scan's other routes say it)."""
        with self._db.session() as session:
            if patient_id is not None:
                self._get(session, patient_id)
            scan = session.get(m.Scan, scan_id)
            if scan is None or (patient_id is not None and scan.patient_id != patient_id):
                raise NotFound(f"scan {scan_id} not found")
            sha, media_type = scan.sha256, scan.media_type
        return self._image_file(sha), media_type

    def check_analysable(self, patient_id: str, scan_id: int | None = None) -> None:
        """Refuse, as queueing it would, an analysis of a scan that is not there: an
        unknown patient or ``scan_id`` (not one of theirs) is :class:`NotFound`, a patient
        without scans a :class:`Conflict`. The API asks it before it says that no model
        is installed, which would not be the request's only fault; the queue checks again
        in its own transaction (a scan deleted meanwhile)."""
        with self._db.session() as session:
            self._get(session, patient_id)
            self.scan_to_analyse(session, patient_id, scan_id)

    @classmethod
    def scan_to_analyse(cls, session: Session, patient_id: str, scan_id: int | None) -> m.Scan:
        """The patient's scan ``scan_id``, or their newest where None; :class:`NotFound`
        for a scan that is not theirs, :class:`Conflict` for a patient without scans."""
        if scan_id is not None:
            scan = session.get(m.Scan, scan_id)
            if scan is None or scan.patient_id != patient_id:
                raise NotFound(f"scan {scan_id} of patient {patient_id} not found")
            return scan
        newest = cls.newest_scan_in(session, patient_id)
        if newest is None:
            raise Conflict(f"patient {patient_id} has no image to analyse; add one first")
        return newest

    # Changing -----------------------------------------------------------------------

    def create_patient(
        self,
        fields: Mapping[str, Any],
        *,
        actor: Actor,
        patient_id: str | None = None,
        image: NewImage | None = None,
        then: Callable[[Session, ScanRecord], None] | None = None,
    ) -> PatientRecord:
        """Create a patient, optionally with a first image, in one transaction.

        The image is checked before anything is stored; a refused image creates nothing.
        ``then`` runs in the same transaction once the image's scan is added (its
        analysis queued with it, :meth:`JobService.create_and_queue`).
        """
        pid = check_patient_id(patient_id) if patient_id else new_patient_id()
        info = self._inspect(image) if image else None
        digest = sha256_hex(image.data) if image else None
        try:
            with self._images.pinned(digest), self._db.session() as session:
                if session.get(m.Patient, pid) is not None:
                    raise Conflict(f"a patient with id {pid} already exists")
                row = self.create_in(session, fields, actor=actor, patient_id=pid)
                scan = (
                    self._add_scan(session, row, image, info, digest)
                    if image and info and digest
                    else None
                )
                if scan is not None and then is not None:
                    then(session, scan)
                record = self.records_in(session, [row])[0]
        except IntegrityError as exc:
            raise Conflict(f"a patient with id {pid} already exists") from exc
        log.info("patient %s created via %s", patient_ref(pid), actor.via)
        self._bus.publish(PatientCreated(record))
        if scan:
            self._bus.publish(ScanIngested(scan))
        return record

    def update_patient(
        self,
        patient_id: str,
        fields: Mapping[str, Any],
        *,
        actor: Actor,
        image: NewImage | None = None,
        ai_result: Mapping[str, Any] | None = None,
        expect: Callable[[PatientRecord], None] | None = None,
    ) -> PatientRecord:
        """Change the given fields, and optionally add an image and a client-supplied AI
        result (see :meth:`record_client_analysis`), in one transaction.

        A ``validation_status`` of approved or rejected is a verdict on the newest
        analysis, as :meth:`validate_analysis` records it (the actor as the clinician);
        ``None`` withdraws the verdict, and the analysis is preliminary again. Either is
        a no-op when the patient already has it (a client sending the record back).

        An update that changes nothing (every field as stored, or none) leaves no trace:
        no audit entry, no event, the same ``updated_at`` (so the API's ETag stays).
        """
        values = clean_fields(fields)
        verdict_given = "validation_status" in values
        verdict = values.pop("validation_status", None)
        if "name" in fields and not values.get("name"):
            raise InvalidInput("the name is required", field="name")
        info = self._inspect(image) if image else None
        digest = sha256_hex(image.data) if image else None
        with self._images.pinned(digest), self._db.session() as session:
            row = self.lock_in(session, patient_id, expect)
            named = self._named_analysis(session, ai_result) if ai_result is not None else None
            # One of the patient's analyses sent back as read is no new result (and one
            # that could not be parsed is not refused for lacking a classification): the
            # newest, as the client read the patient; an older one, a stale copy from a
            # client that read the patient before a newer analysis arrived.
            stale_copy: m.Analysis | None = None
            if ai_result is not None and named is not None and _sent_back(ai_result, named, row):
                latest = self._latest_analysis_row(session, row.id)
                stale_copy = named if latest is None or latest.id != named.id else None
                ai_result = None
            parsed = (
                _client_result(ai_result, named.result if named is not None else None)
                if ai_result is not None
                else None
            )
            if values.get("birth_date", row.birth_date) is None and row.birth_date:
                values.setdefault("age", age_on(row.birth_date))  # the last age it gave
            _drop_echoed_age(values, row)
            reconcile_age(values, values.get("birth_date", row.birth_date))
            # Only what differs: a client sending the record back changes nothing (the
            # age it read was derived from the birth date today).
            current = {"age": age_on(row.birth_date)} if row.birth_date else {}
            values = {
                key: value
                for key, value in values.items()
                if current.get(key, getattr(row, key)) != value
            }
            if "appointment_date" in values and _same_appointment(
                row.appointment_date, values["appointment_date"]
            ):
                del values["appointment_date"]  # the booked one, as the client kept it
            # A new appointment follows scheduling's rule; the one booked, sent back as
            # read once its day has passed, is no change, and null cancels it.
            if values.get("appointment_date") is not None:
                refuse_past_appointment(values["appointment_date"], datetime.now(UTC))
            if stale_copy is not None:
                verdict_changes = verdict_given and verdict != row.validation_status
                self._refuse_stale_decisions(row, stale_copy, values, verdict_changes)
            for key, value in values.items():
                setattr(row, key, value)
            if "appointment_date" in values and "workflow_step" not in values:
                # Complete is a verdict and an appointment, as scheduling has it: a new
                # appointment completes a patient at scheduling; cancelling it takes a
                # complete one back there.
                if values["appointment_date"] is None:
                    row.workflow_step = min(row.workflow_step, int(WorkflowStep.SCHEDULING))
                elif row.workflow_step == int(WorkflowStep.SCHEDULING):
                    row.workflow_step = int(WorkflowStep.COMPLETE)
            # Before the verdict: a verdict sent with a new result is on that result.
            analysis_id = (
                self._add_client_analysis(session, row, ai_result, parsed, actor)
                if ai_result is not None and parsed is not None
                else None
            )
            read: list[NotificationRecord] = []
            if verdict_given and verdict != row.validation_status:
                if verdict is None:
                    self._withdraw_verdict(session, row, actor)
                else:
                    approved = verdict == ValidationStatus.APPROVED.value
                    read = self._apply_verdict(session, row, approved, actor.who, None, actor)
                values["validation_status"] = verdict
            scan = (
                self._add_scan(session, row, image, info, digest)
                if image and info and digest
                else None
            )
            if values or scan or analysis_id:
                row.updated_at = datetime.now(UTC)
            changed = (
                sorted(values)
                + (["image"] if scan else [])
                + (["aiAnalysis"] if analysis_id else [])
            )
            if changed:  # nothing changed (the record sent back as read): no entry
                AuditService.record(
                    session, actor, "update", "patient", patient_id, {"fields": changed}
                )
            session.flush()
            record = self.records_in(session, [row])[0]
        if changed:
            self._bus.publish(PatientUpdated(record))
        if scan:
            self._bus.publish(ScanIngested(scan))
        for note in read:
            self._bus.publish(NotificationUpdated(note))
        return record

    def delete_patient(
        self,
        patient_id: str,
        *,
        actor: Actor,
        expect: Callable[[PatientRecord], None] | None = None,
    ) -> None:
        """Delete the patient with their scans, analyses, jobs, notifications and
        measurements; image files nothing else refers to are removed too."""
        with self._db.session() as session:
            # Locked first: an analysis finishing (or a scan arriving) meanwhile is
            # either in what is read here, and announced gone with the patient, or
            # waits and then finds no patient.
            row = self.lock_in(session, patient_id, expect)
            hashes = set(
                session.scalars(select(m.Scan.sha256).where(m.Scan.patient_id == patient_id))
            )
            notification_ids = list(
                session.scalars(
                    select(m.Notification.id).where(m.Notification.patient_id == patient_id)
                )
            )
            open_job_ids = list(
                session.scalars(
                    select(m.Job.id).where(
                        m.Job.patient_id == patient_id,
                        m.Job.state.in_((JobState.QUEUED.value, JobState.RUNNING.value)),
                    )
                )
            )
            created_at = row.created_at
            session.delete(row)
            AuditService.record(session, actor, "delete", "patient", patient_id)
        self._discard_unreferenced(hashes)
        log.info("patient %s deleted via %s", patient_ref(patient_id), actor.via)
        for notification_id in notification_ids:
            self._bus.publish(NotificationDeleted(notification_id))
        # Their queued and running analyses end with them: said, so that a client
        # showing one (or waiting for its result) is not left waiting.
        for job_id in open_job_ids:
            self._bus.publish(AnalysisCancelled(job_id, patient_id))
        self._bus.publish(PatientDeleted(patient_id, created_at))

    def attach_image(
        self,
        patient_id: str,
        image: NewImage,
        *,
        actor: Actor,
        expect: Callable[[PatientRecord], None] | None = None,
        then: Callable[[Session, ScanRecord], None] | None = None,
    ) -> ScanRecord:
        """Check and store an image as a new scan of the patient (workflow back to 1).

        ``then`` runs in the same transaction once the scan is added (its analysis
        queued with it, :meth:`JobService.attach_and_queue`): both are stored, or neither.
        """
        info = self._inspect(image)
        digest = sha256_hex(image.data)
        with self._images.pinned(digest), self._db.session() as session:
            row = self.lock_in(session, patient_id, expect)
            scan = self._add_scan(session, row, image, info, digest)
            AuditService.record(
                session, actor, "create", "scan", scan.id, {"patient_id": patient_id}
            )
            if then is not None:
                then(session, scan)
            record = self.records_in(session, [row])[0]
        self._bus.publish(ScanIngested(scan))
        self._bus.publish(PatientUpdated(record))
        return scan

    def validate_analysis(
        self,
        patient_id: str,
        *,
        approved: bool,
        clinician: str,
        notes: str | None = None,
        analysis_id: int | None = None,
        actor: Actor,
        expect: Callable[[PatientRecord], None] | None = None,
    ) -> PatientRecord:
        """Record the clinician's verdict on the newest analysis; moves to scheduling.

        An analysis whose answer could not be read (``parse_failed``) can be rejected,
        not approved (:class:`Conflict`): there is no classification to approve; the
        rejection puts the patient back at analysis, not on to scheduling.
        With ``analysis_id`` (the analysis the clinician read), a newer analysis that
        arrived meanwhile is a :class:`Conflict` rather than a verdict on unread text.
        """
        clinician = (clinician or "").strip()
        if not clinician:
            raise InvalidInput("the validating clinician's name is required", field="clinician")
        if notes is not None and len(notes) > 10_000:
            raise InvalidInput("the notes are longer than 10,000 characters", field="notes")
        with self._db.session() as session:
            row = self.lock_in(session, patient_id, expect)
            read = self._apply_verdict(
                session, row, approved, clinician, notes, actor, analysis_id=analysis_id
            )
            session.flush()
            record = self.records_in(session, [row])[0]
        self._bus.publish(PatientUpdated(record))
        for note in read:
            self._bus.publish(NotificationUpdated(note))
        return record

    def _withdraw_verdict(self, session: Session, row: m.Patient, actor: Actor) -> None:
        """Undo :meth:`_apply_verdict`: the newest analysis is preliminary again."""
        analysis = self._latest_analysis_row(session, row.id)
        if analysis is not None and analysis.validated_at is not None:
            analysis.status = AnalysisStatus.PRELIMINARY.value
            analysis.validated_by = analysis.validated_at = analysis.validation_notes = None
        verdict_at = row.validated_at
        row.validation_status = row.validated_by = row.validated_at = None
        row.validation_notes = None
        # Back to validation (not forward: a new scan meanwhile left it at analysis). The
        # rejection of an unreadable answer left it at analysis: back to validation too,
        # unless a scan came since.
        row.workflow_step = min(row.workflow_step, int(WorkflowStep.VALIDATION))
        if analysis is not None and _unreadable(analysis) and verdict_at is not None:
            newest = self.newest_scan_in(session, row.id)
            if newest is None or newest.created_at <= verdict_at:
                row.workflow_step = int(WorkflowStep.VALIDATION)
        AuditService.record(session, actor, "unvalidate", "patient", row.id)

    def _apply_verdict(
        self,
        session: Session,
        row: m.Patient,
        approved: bool,
        clinician: str,
        notes: str | None,
        actor: Actor,
        *,
        analysis_id: int | None = None,
    ) -> list[NotificationRecord]:
        """The verdict on ``row``'s newest analysis, on both rows, with its audit entry;
        the notifications that analysis raised are marked read (returned, for the caller
        to announce after the commit): the clinician has acted on them."""
        analysis = self._latest_analysis_row(session, row.id)
        if analysis is None:
            raise Conflict(f"patient {row.id} has no analysis to validate; analyse a scan first")
        if analysis_id is not None and analysis.id != analysis_id:
            raise Conflict("a newer analysis has arrived for this patient; review it first")
        if approved and _unreadable(analysis):
            # No classification was read: an approval would stand for a result nobody has
            # (and the patient's status and workflow would disagree on what was approved).
            raise Conflict(
                f"analysis {analysis.id}'s answer could not be read as a result, so there "
                "is nothing to approve; reject it, or analyse the scan again"
            )
        verdict = ValidationStatus.APPROVED if approved else ValidationStatus.REJECTED
        now = datetime.now(UTC)
        analysis.status = (
            AnalysisStatus.APPROVED.value if approved else AnalysisStatus.REJECTED.value
        )
        analysis.validated_by = clinician[:200]
        analysis.validated_at = now
        analysis.validation_notes = notes
        row.validation_status = verdict.value
        row.validated_by = clinician[:200]
        row.validated_at = now
        row.validation_notes = notes
        # An appointment still to come (booked before the verdict) completes it; one
        # already past belongs to an earlier visit.
        booked = (
            row.appointment_date is not None
            and row.appointment_date >= now - APPOINTMENT_PAST_TOLERANCE
        )
        if _unreadable(analysis):
            # Rejected (it cannot be approved), it leaves no result to follow up: back to
            # analysis, as the status ("Pending Analysis") has it. An appointment then
            # booked waits, as one booked before any result, for the next verdict.
            row.workflow_step = int(WorkflowStep.ANALYSIS)
        else:
            row.workflow_step = int(WorkflowStep.COMPLETE if booked else WorkflowStep.SCHEDULING)
        row.updated_at = now
        AuditService.record(
            session,
            actor,
            "validate",
            "patient",
            row.id,
            {"analysis_id": analysis.id, "verdict": verdict.value},
        )
        return self._read_analysis_notices(session, analysis, actor)

    @staticmethod
    def _read_analysis_notices(
        session: Session, analysis: m.Analysis, actor: Actor
    ) -> list[NotificationRecord]:
        """Mark read the unread notifications ``analysis`` raised (those that name it);
        not one the clinician or the watch folder made, nor an earlier analysis's."""
        rows = session.scalars(
            update(m.Notification)
            .where(
                m.Notification.analysis_id == analysis.id,
                m.Notification.read.is_(False),
            )
            .values(read=True)
            .returning(m.Notification)
        ).all()
        for note in rows:
            AuditService.record(session, actor, "update", "notification", note.id, {"read": True})
        return [notification_record(note) for note in sorted(rows, key=lambda n: n.id)]

    def record_client_analysis(
        self, patient_id: str, result: Mapping[str, Any], *, actor: Actor
    ) -> PatientRecord:
        """Store an AI result a client computed elsewhere (the seed's frontends PATCH
        ``aiAnalysis``), validated like a model answer and marked as client-supplied.

        A result that carries the ``analysis_id`` of the patient's newest analysis is
        that analysis echoed back, and changes nothing.
        """
        return self.update_patient(patient_id, {}, actor=actor, ai_result=result)

    def schedule_appointment(
        self,
        patient_id: str,
        appointment: datetime,
        *,
        actor: Actor,
        expect: Callable[[PatientRecord], None] | None = None,
    ) -> PatientRecord:
        """Set the follow-up appointment. It completes the workflow of a patient at the
        scheduling step (a verdict recorded); before that it is booked and the workflow
        stays where it is, so an unanalysed or unvalidated patient is never complete."""
        when = aware(appointment, "appointment_date")
        now = datetime.now(UTC)
        refuse_past_appointment(when, now)
        with self._db.session() as session:
            row = self.lock_in(session, patient_id, expect)
            completes = row.workflow_step == int(WorkflowStep.SCHEDULING)
            if row.appointment_date == when and not completes:
                return self.records_in(session, [row])[0]  # booked already: no change
            row.appointment_date = when
            if completes:
                row.workflow_step = int(WorkflowStep.COMPLETE)
            row.updated_at = now
            AuditService.record(session, actor, "schedule", "patient", patient_id)
            session.flush()
            record = self.records_in(session, [row])[0]
        self._bus.publish(PatientUpdated(record))
        return record

    # Internals ----------------------------------------------------------------------

    def _add_client_analysis(
        self,
        session: Session,
        row: m.Patient,
        result: Mapping[str, Any],
        parsed: ParsedAnswer,
        actor: Actor,
    ) -> int | None:
        """Add a client-supplied analysis (``result`` is not the newest one echoed)."""
        analysis = m.Analysis(
            patient_id=row.id,
            model_id=str(result.get("model") or "client-supplied")[:200],
            result=parsed.to_dict(),
            parse_status=ParseStatus.CLIENT_SUPPLIED.value,
            reasoning_text=str(result.get("reasoning") or ""),
            status=AnalysisStatus.PRELIMINARY.value,
        )
        session.add(analysis)
        if row.validation_status is not None:
            # The verdict was on the analysis before; this one awaits review, as a
            # model's new result does.
            row.validation_status = row.validated_by = None
            row.validated_at = row.validation_notes = None
            row.workflow_step = int(WorkflowStep.VALIDATION)
        row.workflow_step = max(row.workflow_step, int(WorkflowStep.VALIDATION))
        session.flush()
        AuditService.record(
            session, actor, "create", "analysis", analysis.id, {"patient_id": row.id}
        )
        return analysis.id

    @staticmethod
    def _named_analysis(session: Session, result: Mapping[str, Any]) -> m.Analysis | None:
        """The analysis ``result`` names (``analysis_id``), if any: one the client sends
        back unchanged is read as the server stored it."""
        analysis_id = result.get("analysis_id")
        if isinstance(analysis_id, bool) or not isinstance(analysis_id, int):
            return None
        if not 0 < analysis_id <= m.INTEGER_COLUMN_MAX:  # no row has it; PostgreSQL
            return None  # would refuse to bind it (a 500)
        return session.get(m.Analysis, analysis_id)

    @staticmethod
    def _refuse_stale_decisions(
        row: m.Patient,
        stale_copy: m.Analysis,
        values: Mapping[str, Any],
        verdict_changes: bool,
    ) -> None:
        """Refuse a request that sends back an older analysis of the patient's (read
        before a newer one arrived) and would change what the clinician decides on the
        newer one: the verdict, or the status and workflow step that result set. Its
        client never saw that analysis: a verdict would land on it unread, and "Stable"
        or step 3 sent back would take an abnormal result off the list to review."""
        changes = (["verdict"] if verdict_changes else []) + [
            label for key, label in _DECIDED_BY_AN_ANALYSIS.items() if key in values
        ]
        if changes:
            words = ", ".join(changes[:-1]) + " and " + changes[-1] if changes[1:] else changes[0]
            raise Conflict(
                f"patient {row.id} has a newer analysis than the one sent (analysis "
                f"{stale_copy.id}), and this request would change the patient's {words}; "
                "read the patient again, review the newer analysis and send the change "
                "again (nothing was changed)",
                field="aiAnalysis",
            )

    def _inspect(self, image: NewImage) -> ImageInfo:
        for name, value in (("modality", image.modality), ("laterality", image.laterality)):
            allowed = Modality if name == "modality" else Laterality
            if value not in {e.value for e in allowed}:
                options = ", ".join(e.value for e in allowed)
                raise InvalidInput(f"{name} must be one of: {options}", field=name)
        with about_field(image.field):
            return inspect_image(
                image.data, max_bytes=self._limits.max_bytes, max_pixels=self._limits.max_pixels
            )

    @staticmethod
    def create_in(
        session: Session,
        fields: Mapping[str, Any],
        *,
        actor: Actor,
        patient_id: str | None = None,
    ) -> m.Patient:
        """Add a new patient inside a caller's transaction (the caller publishes
        :class:`PatientCreated` after the commit). ``fields`` are checked here too."""
        values = new_patient_values(fields)
        row = m.Patient(id=patient_id or new_patient_id(), **values)
        session.add(row)  # the id is ours: no flush needed (several can share one)
        session.add(m.AuditEvent(**PatientService.created_audit_values(actor, row.id, values)))
        return row

    @staticmethod
    def created_audit_values(
        actor: Actor, patient_id: str, values: Mapping[str, Any], *, at: datetime | None = None
    ) -> dict[str, Any]:
        """The column values of a new patient's audit entry: the fields it was given,
        never their values."""
        return AuditService.values(
            actor, "create", "patient", patient_id, {"fields": sorted(values)}, at=at
        )

    def _add_scan(
        self, session: Session, patient: m.Patient, image: NewImage, info: ImageInfo, sha256: str
    ) -> ScanRecord:
        """A new scan of ``image`` (whose hash is ``sha256``, pinned in the store by the
        caller until its commit, so that a deletion's clean-up meanwhile keeps it)."""
        stored = self._images.put(image.data, sha256=sha256)
        now = datetime.now(UTC)
        scan = m.Scan(**self.scan_values(patient.id, image, info, stored.sha256, now=now))
        session.add(scan)
        patient.workflow_step = int(WorkflowStep.ANALYSIS)
        if patient.created_at is None:  # new in this transaction: not later than its update
            patient.created_at = now
        patient.updated_at = now
        session.flush()
        return scan_record(scan)

    @staticmethod
    def scan_values(
        patient_id: str,
        image: NewImage,
        info: ImageInfo,
        sha256: str,
        *,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """A scan's column values (for callers that insert many rows at once; they move
        the patient back to the analysis step)."""
        return {
            "patient_id": patient_id,
            "sha256": sha256,
            "media_type": info.media_type,
            "width": info.width,
            "height": info.height,
            "size_bytes": info.size_bytes,
            "modality": image.modality,
            "laterality": image.laterality,
            "source": image.source,
            "original_filename": (image.filename or None) and image.filename[:512],
            "acquired_at": image.acquired_at,
            "created_at": now or datetime.now(UTC),
        }

    def _image_file(self, sha256: str) -> Path:
        path = self._images.path_for(sha256)
        if not path.is_file():
            raise NotFound("the image file is missing from the store")
        return path

    def _discard_unreferenced(self, hashes: set[str]) -> None:
        if hashes:
            self._images.discard_unreferenced(hashes, self._referenced)

    def _referenced(self, hashes: set[str]) -> set[str]:
        """Those of ``hashes`` that a scan, an analysis or a job refers to."""
        with self._db.session() as session:
            still_used = set(
                session.scalars(select(m.Scan.sha256).where(m.Scan.sha256.in_(hashes)))
            )
            still_used |= set(
                session.scalars(
                    select(m.Analysis.image_sha256).where(m.Analysis.image_sha256.in_(hashes))
                )
            )
            still_used |= set(
                session.scalars(select(m.Job.image_sha256).where(m.Job.image_sha256.in_(hashes)))
            )
        return still_used

    @staticmethod
    def lock_in(
        session: Session,
        patient_id: str,
        expect: Callable[[PatientRecord], None] | None = None,
    ) -> m.Patient:
        """The patient's row, held against other writers until the caller's commit, so
        that what the transaction reads of the patient and their records (their jobs,
        notifications, newest analysis) is still so when it commits.

        PostgreSQL locks the row (``FOR UPDATE``; the worker's :meth:`JobService.complete`
        takes the same lock first). SQLite has no row locks, and its reads before a
        transaction's first write see every commit that lands meanwhile: a write first
        takes the database's write lock for the rest of the transaction.

        ``expect``: a check of the patient as it is now, made under the lock, before
        anything changes (the API's ``If-Match``); what it raises ends the transaction.

        Raises:
            NotFound: There is no such patient (deleted meanwhile, say).
        """
        if session.get_bind().dialect.name == "sqlite":
            session.execute(
                update(m.Patient)
                .where(m.Patient.id == patient_id)
                .values(updated_at=m.Patient.updated_at)
            )
        row = session.get(m.Patient, patient_id, with_for_update=True)
        if row is None:
            raise NotFound(f"patient {patient_id} not found")
        if expect is not None:
            expect(PatientService.records_in(session, [row])[0])
        return row

    @staticmethod
    def lock_all_in(session: Session, patient_ids: Collection[str]) -> list[m.Patient]:
        """Those of ``patient_ids`` that exist, each held as :meth:`lock_in` holds one
        (for a transaction that changes several patients: the watch folder's group
        commit). Locked in id order, so that two such transactions cannot deadlock."""
        if not patient_ids:
            return []
        chosen = m.Patient.id.in_(set(patient_ids))
        if session.get_bind().dialect.name == "sqlite":
            session.execute(update(m.Patient).where(chosen).values(updated_at=m.Patient.updated_at))
        return list(
            session.scalars(
                select(m.Patient).where(chosen).order_by(m.Patient.id).with_for_update()
            )
        )

    @staticmethod
    def _get(session: Session, patient_id: str) -> m.Patient:
        row = session.get(m.Patient, patient_id)
        if row is None:
            raise NotFound(f"patient {patient_id} not found")
        return row

    @staticmethod
    def newest_scan_in(session: Session, patient_id: str) -> m.Scan | None:
        """The patient's newest scan inside a caller's session."""
        return session.scalars(_scans_newest_first(patient_id).limit(1)).first()

    @staticmethod
    def _latest_analysis_row(session: Session, patient_id: str) -> m.Analysis | None:
        return session.scalars(
            select(m.Analysis)
            .where(m.Analysis.patient_id == patient_id)
            .order_by(m.Analysis.id.desc())  # the same "newest" as records_in: max(id)
            .limit(1)
        ).first()

    @staticmethod
    def records_in(session: Session, rows: Sequence[m.Patient]) -> tuple[PatientRecord, ...]:
        """Records for a page of patients, with their newest scan and analysis, scan
        count and oculomics summary, in a constant number of queries."""
        ids = [r.id for r in rows]
        if not ids:
            return ()
        latest_scans: dict[str, ScanRecord] = {}
        for scan in session.scalars(
            select(m.Scan)
            .where(m.Scan.patient_id.in_(ids))
            .order_by(m.Scan.created_at.desc(), m.Scan.id.desc())
        ):
            latest_scans.setdefault(scan.patient_id, scan_record(scan))
        counts = dict(
            session.execute(
                select(m.Scan.patient_id, func.count(m.Scan.id))
                .where(m.Scan.patient_id.in_(ids))
                .group_by(m.Scan.patient_id)
            ).all()
        )
        newest = (
            select(m.Analysis.patient_id, func.max(m.Analysis.id).label("id"))
            .where(m.Analysis.patient_id.in_(ids))
            .group_by(m.Analysis.patient_id)
            .subquery()
        )
        latest_analyses = {
            a.patient_id: analysis_record(a)
            for a in session.scalars(select(m.Analysis).join(newest, m.Analysis.id == newest.c.id))
            if a.patient_id is not None
        }
        return tuple(
            patient_record(
                row,
                latest_scan=latest_scans.get(row.id),
                latest_analysis=latest_analyses.get(row.id),
                oculomics=summary_from_json(row.oculomics_summary),
                scan_count=counts.get(row.id, 0),
            )
            for row in rows
        )


def _unreadable(analysis: m.Analysis) -> bool:
    """Whether ``analysis``'s answer could not be read: it holds no result."""
    return analysis.parse_status == ParseStatus.PARSE_FAILED.value


def _scans_newest_first(patient_id: str) -> Select[Any]:
    return (
        select(m.Scan)
        .where(m.Scan.patient_id == patient_id)
        .order_by(m.Scan.created_at.desc(), m.Scan.id.desc())
    )


#: The result keys of an analysis that could not be parsed as the API shows them (it
#: adds why, ``parse_error``); a client may send back any of them.
_UNPARSED_AS_SHOWN: dict[str, Any] = {
    "classification": None,
    "confidence": None,
    "findings": [],
    "recommendation": None,
    "explanation": None,
}

#: The patient fields a new analysis sets (besides the verdict it clears), as the
#: words a conflict over them uses.
_DECIDED_BY_AN_ANALYSIS = {"status": "status", "workflow_step": "workflow step"}


def _sent_back(result: Mapping[str, Any], named: m.Analysis, row: m.Patient) -> bool:
    """Whether ``result`` is ``named``, an analysis of the patient ``row``, sent back as
    read: no value of it changed (see :func:`edits_stored`: keys left out, or written as
    first sent, are no change). Edited, it is a new result: an edit is never dropped
    without a word."""
    if named.patient_id != row.id:
        return False  # another patient's (or /api/ai/analyze's): attached, not a copy
    return not edits_stored(result, named.result or _UNPARSED_AS_SHOWN)


def _client_result(result: Mapping[str, Any], stored: Mapping[str, Any] | None) -> ParsedAnswer:
    """``result`` validated; where it is ``stored`` (the result of the analysis it names)
    unchanged, read as the server stored it: a confidence of 1 stored (1%) is not
    refused as ambiguous, as a new result's 1 is."""
    try:
        return validate_result(result, stored=stored)
    except AnswerParseError as exc:
        raise InvalidInput(exc.message, field="aiAnalysis") from exc


#: What breaks ties in a patient list: the id, in the same order on both databases.
_TIEBREAK = in_byte_order(m.Patient.id)


def _listing(
    search: str | None, status: str | None, order_by: str, descending: bool
) -> tuple[list[ColumnElement[bool]], tuple[ColumnElement[Any], ...]]:
    """The filters and the order of a patient list (the same for its pages and for a
    patient's place in it)."""
    column = _sort_key(order_by)
    filters: list[ColumnElement[bool]] = []
    if status:
        try:
            filters.append(m.Patient.status == PatientStatus(status).value)
        except ValueError as exc:
            allowed = ", ".join(s.value for s in PatientStatus)
            raise InvalidInput(f"status must be one of: {allowed}", field="status") from exc
    if search and search.strip():
        filters.append(_search_filter(search.strip()))
    order = column.desc() if descending else column.asc()
    if order_by in NULLABLE_SORT_KEYS:
        order = order.nulls_last()
    tiebreak = _TIEBREAK.desc() if descending else _TIEBREAK.asc()
    return filters, (order, tiebreak)


def _sort_key(order_by: str) -> ColumnElement[Any]:
    """What the list sorted by ``order_by`` compares (the id breaking ties)."""
    column: ColumnElement[Any] | None = SORTABLE.get(order_by)
    if column is None:
        raise InvalidInput(
            f"cannot sort by {order_by!r}; use one of: {', '.join(SORTABLE)}",
            field="order_by",
        )
    if order_by == "age":  # today's, from the birth date where there is one
        # The day the ages shown are counted to, so that the order and a page's cursor
        # (the age a record shows) agree with them.
        column = age_in_years(m.Patient.birth_date, m.Patient.age, domain.local_today())
    return column


def _following(order_by: str, descending: bool, after: After) -> ColumnElement[bool]:
    """The patients a list sorted by ``order_by`` puts after ``after``."""
    if order_by == "gender" and after.value is not None:
        # Put through the key's own function, as the column is (lower() on PostgreSQL).
        after = After(case_insensitive(literal(after.value, String())), after.id)
    return rows_after(
        _sort_key(order_by),
        _TIEBREAK,
        after,
        descending=descending,
        nulls_last=order_by in NULLABLE_SORT_KEYS,
    )


def patient_after(patient: PatientRecord, order_by: str = "created_at") -> After:
    """Where the page after ``patient`` starts in a list sorted by ``order_by``
    (``list_patients(after=...)``): the value it sorts them by, as the patient's record
    gives it (an age is today's, a name's the key it sorts by), and their id."""
    _sort_key(order_by)  # refuses a key the list does not sort by
    value = text_sort_key(patient.name) if order_by == "name" else getattr(patient, order_by)
    return After(value, patient.id)


def _search_filter(search: str) -> ColumnElement[bool]:
    """Patients whose name holds ``search`` with case and accents ignored, or whose id
    holds it with case ignored: :func:`~ophthai_desktop.core.domain.matches_search` in SQL.

    The name is compared through its stored key (``name_key``: case folded, accents
    removed, the same function in Python on both databases), so neither database needs
    an accent-aware collation; the key is already folded, so a plain ``LIKE`` does. Ids
    are ASCII: SQLite's ``LIKE`` folds ASCII itself. Neither side calls SQLite's
    ``lower()``, a Python function per row there (ILIKE's): a search at 10,000 patients
    took 13 ms with it, 5 ms without."""
    key = text_sort_key(search)
    by_name = (
        m.Patient.name_key.like(f"%{_escape_like(key)}%", escape="\\") if key else false()
    )  # a search of accents alone names no letters
    by_id = case_insensitive(m.Patient.id).like(f"%{_escape_like(search.lower())}%", escape="\\")
    return or_(by_name, by_id)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
