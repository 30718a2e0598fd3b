"""Records → response schemas. The only place that knows both shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from ophthai_desktop.api import schemas as s
from ophthai_desktop.core.domain import JobPriority
from ophthai_desktop.core.records import (
    AnalysisRecord,
    JobRecord,
    NotificationRecord,
    OculomicsRecord,
    OculomicsSummary,
    PatientRecord,
    ScanRecord,
)
from ophthai_desktop.core.services.oculomics import REFERENCE_RANGES, OculomicsOverview

#: How much of the newest image's hash ``imageUrl`` carries as its version (``?v=``).
IMAGE_VERSION_CHARS = 12


@overload
def timestamp(value: datetime) -> str: ...
@overload
def timestamp(value: None) -> None: ...
def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with ``Z``, as pydantic writes the schemas' datetimes."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def image_url(base_url: str, record: PatientRecord) -> str | None:
    """Absolute URL of the patient's newest image; the hash busts caches on change."""
    if record.latest_scan is None:
        return None
    version = record.latest_scan.sha256[:IMAGE_VERSION_CHARS]
    return f"{base_url}api/patients/{record.id}/image?v={version}"


def ai_analysis(record: AnalysisRecord | None, *, with_reasoning: bool) -> dict[str, Any] | None:
    """The seed's snake_case AI result plus our provenance additions.

    A result that could not be parsed carries no classification, confidence, findings
    or advice (null, and an empty list): only its parse status and error, never
    made-up values.
    """
    if record is None:
        return None
    data: dict[str, Any] = {
        "analysis_id": record.id,
        "status": record.status,
        "parse_status": record.parse_status,
        "model": record.model_id,
        "model_revision": record.model_revision,
        "prompt_version": record.prompt_version,
        "created_at": timestamp(record.created_at),
    }
    if record.result is not None:
        data.update(record.result)
    else:  # the result's keys are there, empty, as /api/ai/analyze answers them: a
        # client showing ``aiAnalysis.findings`` gets an empty list, not a missing key
        data.update(
            classification=None,
            confidence=None,
            findings=[],
            recommendation=None,
            explanation=None,
            parse_error=record.parse_error,
        )
    if record.validated_by:
        data["validated_by"] = record.validated_by
        data["validated_at"] = timestamp(record.validated_at)
    if with_reasoning:
        data["reasoning"] = record.reasoning_text
        data["raw_answer"] = record.answer_text
    return data


def oculomics_summary(summary: OculomicsSummary | None) -> s.OculomicsSummaryPublic | None:
    if summary is None:
        return None
    return s.OculomicsSummaryPublic(
        intraocular_pressure=summary.intraocular_pressure,
        cup_to_disc_ratio=summary.cup_to_disc_ratio,
        rnfl_thickness=summary.rnfl_thickness,
        vessel_density=summary.vessel_density,
        history=[s.OculomicsHistoryPoint(**point) for point in summary.history],
    )


def patient(record: PatientRecord, base_url: str, *, detail: bool = False) -> s.PatientPublic:
    return s.PatientPublic(
        id=record.id,
        name=record.name,
        age=record.age,
        birth_date=record.birth_date,
        gender=record.gender,
        admission_date=record.admission_date,
        symptoms=list(record.symptoms),
        status=record.status,  # validated by the core
        image_url=image_url(base_url, record),
        history=record.history,
        oculomics=oculomics_summary(record.oculomics),
        ai_analysis=ai_analysis(record.latest_analysis, with_reasoning=detail),
        validation_status=record.validation_status,
        validated_by=record.validated_by,
        validated_at=record.validated_at,
        validation_notes=record.validation_notes,
        appointment_date=record.appointment_date,
        workflow_step=record.workflow_step,
        scan_count=record.scan_count,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def scan(record: ScanRecord, base_url: str) -> s.ScanPublic:
    return s.ScanPublic(
        id=record.id,
        patient_id=record.patient_id,
        sha256=record.sha256,
        media_type=record.media_type,
        width=record.width,
        height=record.height,
        size_bytes=record.size_bytes,
        modality=record.modality,
        laterality=record.laterality,
        source=record.source,
        acquired_at=record.acquired_at,
        created_at=record.created_at,
        image_url=f"{base_url}api/patients/{record.patient_id}/scans/{record.id}/image",
    )


def notification(record: NotificationRecord) -> s.NotificationPublic:
    return s.NotificationPublic(
        id=record.id,
        patient_id=record.patient_id,
        message=record.message,
        timestamp=record.timestamp,
        read=record.read,
        type=record.type,  # validated by the core
        analysis_id=record.analysis_id,
        job_id=record.job_id,
        warning=record.warning,
    )


def measurement(record: OculomicsRecord) -> s.OculomicsMeasurementPublic:
    return s.OculomicsMeasurementPublic(
        id=record.id,
        patient_id=record.patient_id,
        eye=record.eye,
        measured_on=record.measured_on,
        iop_mmhg=record.iop_mmhg,
        cup_to_disc_ratio=record.cup_to_disc_ratio,
        rnfl_thickness_um=record.rnfl_thickness_um,
        vessel_density_pct=record.vessel_density_pct,
        flags=list(record.flags),
        created_at=record.created_at,
    )


def oculomics(overview: OculomicsOverview) -> s.OculomicsPublic:
    return s.OculomicsPublic(
        patient_id=overview.patient_id,
        measurements={eye: [measurement(r) for r in rows] for eye, rows in overview.series.items()},
        trends=[
            s.MetricTrendPublic(
                eye=t.eye,
                metric=t.metric,
                unit=t.unit,
                points=t.points,
                first_on=t.first_on,
                last_on=t.last_on,
                latest_value=t.latest_value,
                change_per_year=t.change_per_year,
                latest_flag=t.latest_flag,
            )
            for t in overview.trends
        ],
        summary=oculomics_summary(overview.summary),
        reference_ranges=[
            s.ReferenceRangePublic(
                metric=r.metric, label=r.label, unit=r.unit, low=r.low, high=r.high
            )
            for r in REFERENCE_RANGES.values()
        ],
    )


def provenance(record: AnalysisRecord) -> dict[str, Any]:
    """Where an analysis came from: model, prompt, settings, device and timings."""
    return {
        "model": record.model_id,
        "model_revision": record.model_revision,
        "prompt_version": record.prompt_version,
        "generation_settings": record.generation_settings,
        "device": record.device,
        "dtype": record.dtype,
        "quantization": record.quantization,
        "image_sha256": record.image_sha256,
        "queue_wait_s": record.queue_wait_s,
        "time_to_first_token_s": record.time_to_first_token_s,
        "total_s": record.total_s,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
    }


def job(record: JobRecord, waiting: str | None = None) -> dict[str, Any]:
    """A job as the API gives it; ``waiting``: why the worker takes no queued job now
    (the worker's ``queued_waiting``), said of this job only while it is queued."""
    return {
        "id": record.id,
        "kind": record.kind,
        "state": record.state,
        "patientId": record.patient_id,
        "scanId": record.scan_id,
        "imageSha256": record.image_sha256,
        "question": record.question,
        "error": record.error,
        "waiting": waiting if record.state == "queued" else None,
        "attempts": record.attempts,
        "requestedBy": record.requested_by,
        "priority": JobPriority(record.priority).label,
        "createdAt": timestamp(record.created_at),
        "startedAt": timestamp(record.started_at),
        "finishedAt": timestamp(record.finished_at),
    }
