"""SQLAlchemy 2 ORM models (DESIGN §3).

ORM objects never leave a service method: services convert them to the frozen records
of :mod:`ophthai_desktop.core.records` before returning.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from ophthai_desktop.core.domain import text_sort_key

#: The largest value of an ``Integer`` column (a record id, an age, a count): 32 bits on
#: PostgreSQL, which refuses to bind a wider one (a 500, where SQLite found no record).
INTEGER_COLUMN_MAX = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned with its zone.

    SQLite keeps no zone, so values are normalised to UTC on the way in and tagged as
    UTC on the way out; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give them a zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: The type of a sort key: compared byte by byte on PostgreSQL too (collation "C"), so
#: that both databases order the same keys alike (a locale's collation would, say, skip
#: the spaces of "de la cruz").
NAME_KEY_TYPE = Text().with_variant(Text(collation="C"), "postgresql")

#: Indexes that PostgreSQL alone has (migration 0010): the patient list's sorts in byte
#: order (``in_byte_order``) on the expressions they sort by, which SQLite's own indexes
#: already serve. The models cannot declare an index for one database only; a schema
#: comparison leaves these aside (:func:`compared_with_models`).
POSTGRESQL_ONLY_INDEXES = frozenset(
    {"ix_patients_id_bytes", "ix_patients_name_key_id_bytes", "ix_patients_status_id_bytes"}
)


def compared_with_models(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's ``include_object``: whether a schema comparison (autogenerate, the
    tests') compares ``obj``; not the database's :data:`POSTGRESQL_ONLY_INDEXES`."""
    return not (type_ == "index" and reflected and name in POSTGRESQL_ONLY_INDEXES)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: SQLite gives a deleted row's id to the next row when it had the largest id; with
#: AUTOINCREMENT it never does (PostgreSQL's sequences never do). A link or an audit
#: entry naming job 19 must not come to mean another patient's job 19.
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: What the name sorts by and a search compares (case and accents ignored; see
    #: text_sort_key), kept with the name so that a sorted page walks an index on either
    #: database and a search needs no function per row.
    name_key: Mapped[str] = mapped_column(NAME_KEY_TYPE, default="")
    age: Mapped[int | None] = mapped_column(Integer)
    birth_date: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(32))
    symptoms: Mapped[list[Any]] = mapped_column(JSON, default=list)
    history: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32))
    workflow_step: Mapped[int] = mapped_column(Integer, default=1)
    admission_date: Mapped[datetime] = mapped_column(default=utcnow)
    appointment_date: Mapped[datetime | None] = mapped_column()
    validation_status: Mapped[str | None] = mapped_column(String(16))
    validated_by: Mapped[str | None] = mapped_column(String(200))
    validated_at: Mapped[datetime | None] = mapped_column()
    validation_notes: Mapped[str | None] = mapped_column(Text)
    # The seed-shaped oculomics summary, recomputed whenever a measurement is added, so
    # list pages need not read every patient's measurement history.
    oculomics_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    scans: Mapped[list[Scan]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_patients_created_at", "created_at"),
        Index("ix_patients_status_created_at", "status", "created_at"),
        Index("ix_patients_name", "name"),
        Index("ix_patients_name_key_id", "name_key", "id"),
    )

    @validates("name")
    def _keep_name_key(self, _key: str, name: str) -> str:
        self.name_key = text_sort_key(name)
        return name


class Scan(Base):
    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    modality: Mapped[str] = mapped_column(String(16), default="unknown")
    laterality: Mapped[str] = mapped_column(String(16), default="unknown")
    source: Mapped[str] = mapped_column(String(32))
    original_filename: Mapped[str | None] = mapped_column(String(512))
    acquired_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="scans")

    __table_args__ = (
        Index("ix_scans_patient_id_created_at", "patient_id", "created_at"),
        Index("ix_scans_sha256", "sha256"),
        NEVER_REUSED_IDS,
    )


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), default="analysis")
    state: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    image_sha256: Mapped[str] = mapped_column(String(64))
    question: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    #: :class:`~ophthai_desktop.core.domain.JobPriority`: the worker takes the highest
    #: first, then the oldest.
    priority: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: When someone asked to stop it while it ran: it never runs again, even if the app
    #: was killed before the worker stopped it.
    cancel_requested_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index("ix_jobs_state_created_at", "state", "created_at"),
        Index("ix_jobs_patient_id", "patient_id"),
        Index("ix_jobs_scan_id", "scan_id"),
        NEVER_REUSED_IDS,
    )


class Analysis(Base):
    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(200))
    model_revision: Mapped[str | None] = mapped_column(String(100))
    prompt_version: Mapped[str | None] = mapped_column(String(64))
    generation_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    device: Mapped[str | None] = mapped_column(String(32))
    dtype: Mapped[str | None] = mapped_column(String(32))
    quantization: Mapped[str | None] = mapped_column(String(16))
    reasoning_text: Mapped[str] = mapped_column(Text, default="")
    answer_text: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    parse_status: Mapped[str] = mapped_column(String(16))
    parse_error: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="preliminary")
    validated_by: Mapped[str | None] = mapped_column(String(200))
    validated_at: Mapped[datetime | None] = mapped_column()
    validation_notes: Mapped[str | None] = mapped_column(Text)
    queue_wait_s: Mapped[float | None] = mapped_column(Float)
    time_to_first_token_s: Mapped[float | None] = mapped_column(Float)
    total_s: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_analyses_patient_id_created_at", "patient_id", "created_at"),
        Index("ix_analyses_scan_id", "scan_id"),
        Index("ix_analyses_job_id", "job_id"),
        NEVER_REUSED_IDS,
    )


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    #: The analysis that raised it (its alarm, "could not be graded", "could not be
    #: read"); None for one a person or the watch folder made, and for those stored
    #: before the column came (revision 0009). An analysis goes with its patient, whose
    #: notifications go too; one deleted otherwise leaves its notification, unlinked.
    analysis_id: Mapped[int | None] = mapped_column(ForeignKey("analyses.id", ondelete="SET NULL"))
    #: The analysis job whose failure it tells ("The analysis for patient … failed (job
    #: #N): …", revision 0011); None for every other notification. A job goes with its
    #: patient, whose notifications go too.
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    #: One the app means as a warning (an analysis that failed, an answer that could
    #: not be read, a file the watch folder did not take in), stored under one of the
    #: seed's types (info), which have none; never a client's (revision 0011).
    warning: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_notifications_timestamp", "timestamp"),
        Index("ix_notifications_read_timestamp", "read", "timestamp"),
        Index("ix_notifications_patient_id", "patient_id"),
        Index("ix_notifications_analysis_id", "analysis_id"),
        Index("ix_notifications_job_id", "job_id"),
        NEVER_REUSED_IDS,
    )


class OculomicsMeasurement(Base):
    __tablename__ = "oculomics_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    eye: Mapped[str] = mapped_column(String(2))
    measured_on: Mapped[date] = mapped_column(Date)
    iop_mmhg: Mapped[float | None] = mapped_column(Float)
    cup_to_disc_ratio: Mapped[float | None] = mapped_column(Float)
    rnfl_thickness_um: Mapped[float | None] = mapped_column(Float)
    vessel_density_pct: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_oculomics_patient_eye_date", "patient_id", "eye", "measured_on"),
        NEVER_REUSED_IDS,
    )


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_audit_events_entity", "entity_type", "entity_id"),
        Index("ix_audit_events_at", "at"),
        NEVER_REUSED_IDS,
    )


class IngestedFile(Base):
    """A file taken in through the watch folder, known by the SHA-256 of its bytes.

    The unique hash is what makes the same file twice (under any name) a duplicate rather
    than a second patient; with the name and the time, it tells the file a crash left
    between the commit and the move to ``processed/`` (moved, not notified again). Refused
    files whose bytes could be read are kept too, with the reason, so a repeat is
    visible; they are tried again when they come back. Files refused before their bytes
    could be read (links, FIFOs, files too large) are kept under a hash of their device
    and inode instead, so the one a crash left before its move is not notified again.
    """

    __tablename__ = "ingested_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    original_name: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))  # ingested | attached | failed
    reason: Mapped[str | None] = mapped_column(Text)
    # Deleting the patient forgets the ingest, so the same file can make them again.
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_ingested_files_patient_id", "patient_id"),
        Index("ix_ingested_files_created_at", "created_at"),
        Index("ix_ingested_files_scan_id", "scan_id"),
        Index("ix_ingested_files_job_id", "job_id"),
        NEVER_REUSED_IDS,
    )
