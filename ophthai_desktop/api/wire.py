"""Bus events → WebSocket frame data (the ``data`` of ``{"event", "data"}``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic.alias_generators import to_camel
from pydantic_core import to_jsonable_python

from ophthai_desktop.api import presenters
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.domain import JobPriority


def event_data(
    event: ev.Event, base_url: str, *, waiting: str | None = None
) -> dict[str, Any] | None:
    """Frame data for ``event`` as seen by a client reached at ``base_url``;
    ``waiting``: why the worker takes no queued job now, which a newly queued job's
    frame says as ``GET /api/jobs/{id}`` would (``queue_waiting`` announces changes)."""
    match event:
        case ev.NotificationCreated(notification=n) | ev.NotificationUpdated(notification=n):
            return presenters.notification(n).model_dump(mode="json", by_alias=True)
        case ev.PatientCreated(patient=p) | ev.PatientUpdated(patient=p):
            # As GET /api/patients/{id} answers it (aiAnalysis with its reasoning and raw
            # answer): a client showing the patient replaces it with the frame.
            return presenters.patient(p, base_url, detail=True).model_dump(
                mode="json", by_alias=True
            )
        case ev.PatientDeleted(patient_id=pid):
            return {"id": pid}
        case ev.NotificationDeleted(notification_id=nid):
            return {"id": nid}
        case ev.ScanIngested(scan=scan):
            return presenters.scan(scan, base_url).model_dump(mode="json", by_alias=True)
        case ev.OculomicsMeasured(measurement=record):
            return presenters.measurement(record).model_dump(mode="json", by_alias=True)
        case ev.AnalysisFinished(job_id=job_id, patient_id=pid, analysis=analysis):
            return {
                "jobId": job_id,
                "patientId": pid,
                "analysis": presenters.ai_analysis(analysis, with_reasoning=False),
            }
        case ev.AbnormalScanDetected(notification=n):
            data = presenters.notification(n).model_dump(mode="json", by_alias=True) if n else {}
            data.update(
                label=event.label,
                confidence=event.confidence,
                probabilities=dict(event.probabilities),
                source=event.source,
            )
            return data
    # Any other event: its fields, made JSON-able (dates become ISO text, paths text).
    fields: dict[str, Any] = to_jsonable_python(
        {to_camel(key): value for key, value in asdict(event).items()}, fallback=str
    )
    if isinstance(event, ev.AnalysisQueued | ev.AnalysisPrioritised):
        # The words of the REST job schema, not the number the database keeps.
        fields["priority"] = JobPriority(event.priority).label
    if isinstance(event, ev.AnalysisQueued):
        fields["waiting"] = waiting
    return fields
