"""How records are shown over the API."""

from __future__ import annotations

from datetime import UTC, datetime

from ophthai_desktop.api import presenters
from ophthai_desktop.core.records import AnalysisRecord


def test_an_unparsed_analysis_has_every_result_key_empty() -> None:
    """As /api/ai/analyze answers it and the README says; the patient's aiAnalysis, GET
    /api/analyses/{id}, a job's analysis and ``analysis_finished`` left the keys out
    (first classification and confidence; then findings, recommendation and
    explanation, so a frontend's ``aiAnalysis.findings.map`` threw on such a result)."""
    record = AnalysisRecord(
        id=3, patient_id="p1", scan_id=1, job_id=2, image_sha256=None, model_id="m",
        model_revision=None, prompt_version="v1", generation_settings={}, device="cpu",
        dtype=None, quantization=None, reasoning_text="", answer_text="??", result=None,
        parse_status="parse_failed", parse_error="no JSON object", status="preliminary",
        validated_by=None, validated_at=None, validation_notes=None, queue_wait_s=None,
        time_to_first_token_s=None, total_s=None, prompt_tokens=None, completion_tokens=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    shown = presenters.ai_analysis(record, with_reasoning=False)
    assert shown is not None
    assert shown["classification"] is None and shown["confidence"] is None
    assert shown["findings"] == []
    assert shown["recommendation"] is None and shown["explanation"] is None
    assert shown["parse_error"] == "no JSON object"
