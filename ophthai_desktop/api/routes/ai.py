"""AI analysis: the seed's /api/ai endpoints, patient analysis, and the job queue."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Body, Depends, File, Form, Query, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from ophthai_desktop.api import presenters
from ophthai_desktop.api import schemas as s
from ophthai_desktop.api.deps import ActorDep, ApplicationDep
from ophthai_desktop.api.errors import COMMON_ERRORS, documented, error_body
from ophthai_desktop.api.params import Limit, RecordId, Skip, form_fields, one_value
from ophthai_desktop.api.routes.patients import read_upload
from ophthai_desktop.api.routing import SlashRouter
from ophthai_desktop.api.security import require_token
from ophthai_desktop.api.versions import IfMatch, patient_write
from ophthai_desktop.api.waiting import JobTimeout, wait_for_job
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.domain import JobState
from ophthai_desktop.core.errors import (
    DatabaseUnavailable,
    ModelUnavailable,
    NotFound,
    about_field,
)
from ophthai_desktop.core.imaging import decode_data_url, inspect_image
from ophthai_desktop.core.inference import EngineStatus, ModelState
from ophthai_desktop.core.records import Actor, JobRecord
from ophthai_desktop.core.services.jobs import JobOutcome
from ophthai_desktop.core.services.patient_fields import check_patient_reference
from ophthai_desktop.core.services.patients import NewImage

router = SlashRouter(
    prefix="/api", dependencies=[Depends(require_token)], responses=documented(*COMMON_ERRORS)
)
#: What the analyse-and-wait endpoints answer besides the result.
ANALYSIS_ERRORS = documented(400, 404, 409, 413, 415, 500, 503, 504, 507)

#: How long the synchronous analyse endpoints wait before answering 504 with the job id.
WAIT_S = 900.0
MODEL_WAIT_S = 900.0

HEALTH_STATUS = {
    ModelState.READY: "available",
    ModelState.LOADING: "loading",
    ModelState.UNLOADING: "loading",
    ModelState.DOWNLOADING: "loading",
    ModelState.NOT_INSTALLED: "not_installed",
    ModelState.INSTALLED: "unavailable",
    ModelState.ERROR: "unavailable",
}


def _require_patient(application: Application, patient_id: str) -> None:
    """422 for an empty id, 404 for an unknown patient, before (and whatever) the model
    check says."""
    check_patient_reference(patient_id)
    if not application.patients.exists(patient_id):
        raise NotFound(f"patient {patient_id} not found")


def _require_installed(application: Application) -> None:
    """503 at once when no analysis could run (queued jobs would only wait): also when
    the state says installed but the files are gone since they were last checked (they
    are looked at now: a thread of the pool, as every caller here runs on)."""
    status = application.engine.confirm_installed()
    if status.state in (ModelState.NOT_INSTALLED, ModelState.ERROR):
        raise ModelUnavailable(status.message)
    if not application.worker.alive:
        raise ModelUnavailable("the inference worker is not running")


@router.get("/ai/health", tags=["ai"], response_model=s.AIHealthPublic)
def ai_health(app: ApplicationDep) -> dict[str, Any]:
    """The model's state: available, loading, unavailable or not_installed. The model
    does not need the database: while it does not answer, only the queued count is
    null (and ``database`` says so)."""
    status = app.engine.status()
    queued: int | None
    try:
        queued = app.jobs.list_jobs(state=JobState.QUEUED.value, limit=1).total
    except DatabaseUnavailable:
        queued = None
    return {
        "status": HEALTH_STATUS[status.state],
        "state": status.state.value,
        "message": status.message,
        "model": status.model_name or status.model_id,
        "model_source": status.model_source,
        "revision": status.revision,
        "device": status.device,
        "dtype": status.dtype,
        "quantization": status.quantization,
        "parameters": status.parameters,
        "memory": {
            "estimated_bytes": status.estimated_bytes,
            "free_bytes": status.free_bytes,
            "used_bytes": status.used_bytes,
        },
        "queue": {"queued": queued, "running": app.worker.current_job_id},
        # With nothing queued, what becomes of queued analyses is not said; nor is the
        # engine's message a second time, there already as ``message``.
        "worker_waiting": app.worker.waiting_cause if queued == 0 else app.worker.queued_waiting,
        "database": "available" if queued is not None else "unavailable",
    }


@router.post(
    "/ai/load-model",
    tags=["ai"],
    response_model=None,  # the body as built (no null device added)
    responses={200: {"model": s.ModelCommandPublic}, **documented(400, 413)},
)
async def load_model(
    app: ApplicationDep, _body: Annotated[s.NoFields | None, Body(alias="body")] = None
) -> dict[str, Any]:
    """Load the model on the inference worker; answers when it is ready (or failed)."""
    status: EngineStatus = await run_in_threadpool(app.engine.refresh)
    if status.state is ModelState.NOT_INSTALLED:
        raise ModelUnavailable(status.message)
    if not app.worker.alive:
        raise ModelUnavailable("the inference worker is not running")
    app.worker.request_load()
    status = await _await_state(app, {ModelState.READY, ModelState.ERROR})
    if status.state is not ModelState.READY:
        raise ModelUnavailable(status.message)
    return {"status": "success", "message": status.message, "device": status.device}


@router.post(
    "/ai/unload-model",
    tags=["ai"],
    response_model=None,
    responses={200: {"model": s.ModelCommandPublic}, **documented(400, 413)},
)
async def unload_model(
    app: ApplicationDep, _body: Annotated[s.NoFields | None, Body(alias="body")] = None
) -> dict[str, Any]:
    """Unload the model to free GPU memory; a running analysis is queued again and
    runs when the model is loaded again. With no model loaded it changes nothing and
    says so (``unloaded``: false)."""
    if not app.worker.alive:
        raise ModelUnavailable("the inference worker is not running")
    unloads = app.worker.unloads
    app.worker.request_unload()
    status = await _await_state(
        app, {ModelState.INSTALLED, ModelState.NOT_INSTALLED, ModelState.ERROR}
    )
    unloaded = app.worker.unloads > unloads
    done = "The model was unloaded." if unloaded else "Nothing to unload: the model was not loaded."
    return {"status": "success", "message": f"{done} {status.message}", "unloaded": unloaded}


async def _await_state(app: Application, targets: set[ModelState]) -> EngineStatus:
    """Poll the engine's status until a target state (status() may look at the disk,
    so it runs in the thread pool)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MODEL_WAIT_S
    await asyncio.sleep(0.05)
    while True:
        status: EngineStatus = await run_in_threadpool(app.engine.status)
        if status.state in targets and not app.worker.commands_pending:
            return status
        if loop.time() > deadline:
            return status
        await asyncio.sleep(0.1)


@router.post(
    "/ai/analyze",
    tags=["ai"],
    response_model=s.AnalysisResultPublic,
    responses=ANALYSIS_ERRORS,
)
async def analyze(body: s.AnalyzeRequest, app: ApplicationDep, actor: ActorDep) -> JSONResponse:
    """Analyse a base64 image (bare or as a data URL) and answer with the result."""

    def queue() -> JobRecord:
        with about_field("image_base64"):
            data = decode_data_url(body.image_base64, max_bytes=app.settings.max_image_bytes)
        return _queue(app, data, "image_base64", body.patient_id, body.question, actor)

    job = await run_in_threadpool(queue)
    return await _result_response(app, job)


@router.post(
    "/ai/analyze-upload",
    tags=["ai"],
    response_model=s.AnalysisResultPublic,
    responses=ANALYSIS_ERRORS,
    dependencies=[form_fields("file", "patient_id", "patientId", "question")],
)
async def analyze_upload(
    app: ApplicationDep,
    actor: ActorDep,
    file: Annotated[UploadFile, File(description="PNG, JPEG, WebP, BMP or TIFF")],
    patient_id: Annotated[str | None, Form()] = None,
    patient_id_camel: Annotated[
        str | None,
        Form(alias="patientId", title="Patient Id", description="The same as patient_id"),
    ] = None,
    question: Annotated[str | None, Form(max_length=2000)] = None,
) -> JSONResponse:
    """Analyse an uploaded image (multipart field ``file``; ``patient_id`` or
    ``patientId`` attaches it to that patient)."""
    patient = one_value(patient_id, patient_id_camel, "patient_id")

    def queue() -> JobRecord:
        data = read_upload(file, app.settings.max_image_bytes)
        return _queue(app, data, "file", patient, question, actor)

    job = await run_in_threadpool(queue)
    return await _result_response(app, job)


def _queue(
    app: Application,
    data: bytes,
    field: str,
    patient_id: str | None,
    question: str | None,
    actor: Actor,
) -> JobRecord:
    """Check the image (a bad one is the client's error, model or not; the error names
    the request ``field`` it came in), then refuse with 503 if no analysis could run,
    then store and queue it."""
    limits = app.settings
    with about_field(field):
        inspect_image(data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
    if patient_id is not None:  # an empty one is refused, not taken as none
        _require_patient(app, patient_id)
    _require_installed(app)
    if patient_id is not None:
        image = NewImage(data=data, source="api", field=field)
        _scan, job = app.jobs.attach_and_queue(
            app.patients, patient_id, image, actor=actor, question=question
        )
        return job
    return app.jobs.queue_image_analysis(data, actor=actor, question=question)


async def _result_response(app: Application, job: JobRecord) -> JSONResponse:
    try:
        outcome = await wait_for_job(app, job.id, WAIT_S)
    except JobTimeout:
        return JSONResponse(
            error_body("the analysis is still running; poll the job", job_id=job.id),
            status_code=504,
        )
    return _outcome_response(outcome)


def _outcome_response(outcome: JobOutcome) -> JSONResponse:
    job = outcome.job
    if job.state == JobState.CANCELLED.value:
        return JSONResponse(
            error_body("the analysis was cancelled", job_id=job.id), status_code=409
        )
    if job.state == JobState.FAILED.value or outcome.analysis is None:
        return JSONResponse(
            error_body(f"the analysis failed: {job.error}", job_id=job.id), status_code=500
        )
    analysis = outcome.analysis
    result: dict[str, Any] = {
        "classification": None,
        "confidence": None,
        "findings": [],
        "recommendation": None,
        "explanation": None,
    }
    result.update(presenters.ai_analysis(analysis, with_reasoning=True) or {})
    result.update(
        job_id=job.id,
        patient_id=analysis.patient_id,
        provenance=presenters.provenance(analysis),
    )
    return JSONResponse(result)


@router.post(
    "/patients/{patient_id}/analyze",
    status_code=202,
    tags=["patients"],
    response_model=s.JobPublic,
    responses={202: {"headers": s.LOCATION_HEADER}, **documented(400, 404, 409, 412, 413, 507)},
)
def analyze_patient(
    patient_id: str,
    app: ApplicationDep,
    actor: ActorDep,
    response: Response,
    body: Annotated[s.AnalyzePatientRequest | None, Body()] = None,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Queue the analysis of the patient's newest scan (or of ``scanId``, with an
    optional ``question``); the result arrives on the WebSocket (``analysis_finished``)
    and moves the workflow to validation."""
    _require_patient(app, patient_id)
    wanted = body or s.AnalyzePatientRequest()
    with patient_write(if_match, app.patients, patient_id) as expect:
        # What the request names is there (404, 409) before the model is (503).
        app.patients.check_analysable(patient_id, wanted.scan_id)
        # A scan whose analysis is open is answered with that job (202), whatever the
        # model's state: only a new job, which would only wait, is refused (503).
        refusal: ModelUnavailable | None = None
        try:
            _require_installed(app)
        except ModelUnavailable as exc:
            refusal = exc
        job = app.jobs.queue_patient_analysis(
            patient_id,
            actor=actor,
            question=wanted.question,
            scan_id=wanted.scan_id,
            expect=expect,
            refuse_new=refusal,
        )
    if job.state == "queued":
        app.worker.resume_queue()  # asked for again: a queue held since an unload runs
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return presenters.job(job, app.worker.queued_waiting)


def _no_state(value: object) -> object:
    """``?state=`` (empty) filters nothing, as before the document named the states: a
    client that sends the filter it was given, blank for every job, was not refused."""
    return value or None


@router.get(
    "/jobs",
    tags=["jobs"],
    response_model=list[s.JobPublic],
    responses={200: {"headers": s.TOTAL_COUNT_HEADER}},
)
def list_jobs(
    app: ApplicationDep,
    response: Response,
    state: Annotated[s.JobStateName | None, BeforeValidator(_no_state), Query()] = None,
    patient_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    skip: Skip = 0,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    """The analysis queue's jobs, newest first (the worker takes them in the order that
    ``priority`` describes)."""
    page = app.jobs.list_jobs(state=state, patient_id=patient_id, skip=skip, limit=limit)
    response.headers["X-Total-Count"] = str(page.total)
    waiting = app.worker.queued_waiting
    return [presenters.job(j, waiting) for j in page.items]


@router.get(
    "/jobs/{job_id}", tags=["jobs"], response_model=s.JobDetailPublic, responses=documented(404)
)
def get_job(job_id: RecordId, app: ApplicationDep) -> dict[str, Any]:
    outcome = app.jobs.outcome(job_id)
    data = presenters.job(outcome.job, app.worker.queued_waiting)
    data["analysis"] = presenters.ai_analysis(outcome.analysis, with_reasoning=True)
    return data


@router.post(
    "/jobs/{job_id}/cancel",
    tags=["jobs"],
    response_model=s.JobPublic,
    responses=documented(404, 409, 507),
)
def cancel_job(job_id: RecordId, app: ApplicationDep, actor: ActorDep) -> dict[str, Any]:
    """Cancel a queued job, or stop a running one after its current token."""
    return presenters.job(app.jobs.request_cancel(job_id, actor=actor), app.worker.queued_waiting)


@router.get(
    "/analyses/{analysis_id}",
    tags=["ai"],
    response_model=None,  # the body as built (keys absent, not null, where they are)
    responses={200: {"model": s.AnalysisPublic}, **documented(404)},
)
def get_analysis(analysis_id: RecordId, app: ApplicationDep) -> dict[str, Any]:
    """One analysis with its reasoning, raw answer and full provenance."""
    analysis = app.jobs.get_analysis(analysis_id)
    data = presenters.ai_analysis(analysis, with_reasoning=True) or {}
    data["provenance"] = presenters.provenance(analysis)
    return data
