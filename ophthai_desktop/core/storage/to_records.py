"""Conversions from ORM rows to the frozen records services return."""

from __future__ import annotations

from ophthai_desktop.core.domain import age_on
from ophthai_desktop.core.records import (
    AnalysisRecord,
    AuditRecord,
    JobRecord,
    NotificationRecord,
    OculomicsRecord,
    OculomicsSummary,
    PatientRecord,
    ScanRecord,
)
from ophthai_desktop.core.storage import models as m


def scan_record(row: m.Scan) -> ScanRecord:
    return ScanRecord(
        id=row.id,
        patient_id=row.patient_id,
        sha256=row.sha256,
        media_type=row.media_type,
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
        modality=row.modality,
        laterality=row.laterality,
        source=row.source,
        original_filename=row.original_filename,
        acquired_at=row.acquired_at,
        created_at=row.created_at,
    )


def analysis_record(row: m.Analysis) -> AnalysisRecord:
    return AnalysisRecord(
        id=row.id,
        patient_id=row.patient_id,
        scan_id=row.scan_id,
        job_id=row.job_id,
        image_sha256=row.image_sha256,
        model_id=row.model_id,
        model_revision=row.model_revision,
        prompt_version=row.prompt_version,
        generation_settings=dict(row.generation_settings or {}),
        device=row.device,
        dtype=row.dtype,
        quantization=row.quantization,
        reasoning_text=row.reasoning_text or "",
        answer_text=row.answer_text or "",
        result=dict(row.result) if row.result is not None else None,
        parse_status=row.parse_status,
        parse_error=row.parse_error,
        status=row.status,
        validated_by=row.validated_by,
        validated_at=row.validated_at,
        validation_notes=row.validation_notes,
        queue_wait_s=row.queue_wait_s,
        time_to_first_token_s=row.time_to_first_token_s,
        total_s=row.total_s,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        created_at=row.created_at,
    )


def patient_record(
    row: m.Patient,
    *,
    latest_scan: ScanRecord | None = None,
    latest_analysis: AnalysisRecord | None = None,
    oculomics: OculomicsSummary | None = None,
    scan_count: int = 0,
) -> PatientRecord:
    return PatientRecord(
        id=row.id,
        name=row.name,
        # The age a birth date gives today; the stored one is as of the last change.
        age=age_on(row.birth_date) if row.birth_date else row.age,
        birth_date=row.birth_date,
        gender=row.gender,
        symptoms=tuple(row.symptoms or ()),
        history=row.history or "",
        status=row.status,
        workflow_step=row.workflow_step,
        admission_date=row.admission_date,
        appointment_date=row.appointment_date,
        validation_status=row.validation_status,
        validated_by=row.validated_by,
        validated_at=row.validated_at,
        validation_notes=row.validation_notes,
        created_at=row.created_at,
        updated_at=row.updated_at,
        latest_scan=latest_scan,
        latest_analysis=latest_analysis,
        oculomics=oculomics,
        scan_count=scan_count,
    )


def notification_record(row: m.Notification) -> NotificationRecord:
    return NotificationRecord(
        id=row.id,
        patient_id=row.patient_id,
        message=row.message,
        timestamp=row.timestamp,
        read=row.read,
        type=row.type,
        analysis_id=row.analysis_id,
        job_id=row.job_id,
        warning=row.warning,
    )


def oculomics_record(row: m.OculomicsMeasurement, flags: tuple[str, ...] = ()) -> OculomicsRecord:
    return OculomicsRecord(
        id=row.id,
        patient_id=row.patient_id,
        eye=row.eye,
        measured_on=row.measured_on,
        iop_mmhg=row.iop_mmhg,
        cup_to_disc_ratio=row.cup_to_disc_ratio,
        rnfl_thickness_um=row.rnfl_thickness_um,
        vessel_density_pct=row.vessel_density_pct,
        created_at=row.created_at,
        flags=flags,
    )


def job_record(row: m.Job) -> JobRecord:
    return JobRecord(
        id=row.id,
        kind=row.kind,
        state=row.state,
        patient_id=row.patient_id,
        scan_id=row.scan_id,
        image_sha256=row.image_sha256,
        question=row.question,
        error=row.error,
        attempts=row.attempts,
        requested_by=row.requested_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        priority=row.priority,
    )


def audit_record(row: m.AuditEvent) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        origin=row.origin,
        action=row.action,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        details=dict(row.details or {}),
    )
