"""Plain frozen records that services return.

They cross threads freely (ORM objects never do) and carry no database state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from ophthai_desktop.core.domain import age_on

T = TypeVar("T")


@dataclass(frozen=True)
class Actor:
    """Who did something and through which door, for the audit trail.

    ``who`` is the GUI user's name, the API client's address, or a component name
    (``watch-folder``); ``via`` is ``gui``, ``api``, ``watcher``, ``worker`` or ``cli``.
    """

    who: str
    via: str

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls(who=component, via="system")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    total: int
    skip: int
    limit: int


@dataclass(frozen=True)
class ScanRecord:
    id: int
    patient_id: str
    sha256: str
    media_type: str
    width: int
    height: int
    size_bytes: int
    modality: str
    laterality: str
    source: str
    original_filename: str | None
    acquired_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class AnalysisRecord:
    id: int
    patient_id: str | None
    scan_id: int | None
    job_id: int | None
    image_sha256: str | None
    model_id: str
    model_revision: str | None
    prompt_version: str | None
    generation_settings: dict[str, Any]
    device: str | None
    dtype: str | None
    quantization: str | None
    reasoning_text: str
    answer_text: str
    result: dict[str, Any] | None
    parse_status: str
    parse_error: str | None
    status: str
    validated_by: str | None
    validated_at: datetime | None
    validation_notes: str | None
    queue_wait_s: float | None
    time_to_first_token_s: float | None
    total_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: datetime


@dataclass(frozen=True)
class OculomicsRecord:
    id: int
    patient_id: str
    eye: str
    measured_on: date
    iop_mmhg: float | None
    cup_to_disc_ratio: float | None
    rnfl_thickness_um: float | None
    vessel_density_pct: float | None
    created_at: datetime
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class OculomicsSummary:
    """The seed's ``oculomics`` shape, derived from the per-eye measurements."""

    intraocular_pressure: float | None
    cup_to_disc_ratio: float | None
    rnfl_thickness: float | None
    vessel_density: float | None
    history: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class PatientRecord:
    id: str
    name: str
    age: int | None
    birth_date: date | None
    gender: str | None
    symptoms: tuple[str, ...]
    history: str
    status: str
    workflow_step: int
    admission_date: datetime
    appointment_date: datetime | None
    validation_status: str | None
    validated_by: str | None
    validated_at: datetime | None
    validation_notes: str | None
    created_at: datetime
    updated_at: datetime
    latest_scan: ScanRecord | None = None
    latest_analysis: AnalysisRecord | None = None
    oculomics: OculomicsSummary | None = None
    scan_count: int = 0

    def age_now(self) -> int | None:
        """The age on this computer's date now: the birth date's when there is one.
        ``age`` is as of when the record was read, and a record can be shown later: a
        change told just before midnight, and heard after the window had read every
        age again for the new day, put last year's age back in the list."""
        return age_on(self.birth_date) if self.birth_date else self.age


@dataclass(frozen=True)
class NotificationRecord:
    id: int
    patient_id: str | None
    message: str
    timestamp: datetime
    read: bool
    type: str
    #: The analysis that raised it; None for one a person or the watch folder made.
    analysis_id: int | None = None
    #: The analysis job whose failure it tells; None for every other notification.
    job_id: int | None = None
    #: One the app means as a warning (stored as info): an analysis that failed, an
    #: answer that could not be read, a file the watch folder did not take in.
    warning: bool = False


@dataclass(frozen=True)
class UnreadTally:
    """The unread notifications counted, and the newest notification's id then (0:
    none): a notification up to it that was stored unread is in ``count``."""

    count: int
    newest_id: int


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    state: str
    patient_id: str | None
    scan_id: int | None
    image_sha256: str
    question: str | None
    error: str | None
    attempts: int
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    priority: int = 1  # a JobPriority: the worker takes the highest first


@dataclass(frozen=True)
class JobQueue:
    """What a job queue shows first (:meth:`JobService.list_queue`)."""

    #: The queued and running jobs that run first: the running ones, then the queued
    #: ones in the order the worker takes them.
    open: tuple[JobRecord, ...]
    #: (job id, patient id) of the open jobs past those, which run after them.
    more_open: tuple[tuple[int, str | None], ...]
    #: The newest finished (done, failed or cancelled) jobs, newest first.
    finished: tuple[JobRecord, ...]


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    origin: str
    action: str
    entity_type: str
    entity_id: str
    details: dict[str, Any] = field(default_factory=dict)
