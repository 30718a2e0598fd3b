"""Patients: the seed's endpoints plus images, scans and oculomics."""

from __future__ import annotations

import os
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Body, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic.alias_generators import to_camel, to_snake
from starlette.concurrency import run_in_threadpool

from ophthai_desktop.api import presenters
from ophthai_desktop.api import schemas as s
from ophthai_desktop.api.cursors import NEXT_PAGE_HEADERS, AfterCursor, Listing
from ophthai_desktop.api.deps import (
    ActorDep,
    ApplicationDep,
    BaseUrlDep,
    CursorCipherDep,
    OculomicsDep,
    PatientsDep,
)
from ophthai_desktop.api.errors import COMMON_ERRORS, documented
from ophthai_desktop.api.head_requests import HEAD_REQUEST
from ophthai_desktop.api.params import Limit, RecordId, Skip, form_fields, one_value
from ophthai_desktop.api.renditions import (
    DisplayFormat,
    MaxSide,
    RenditionsDep,
    rendition_spec,
)
from ophthai_desktop.api.routing import SlashRouter
from ophthai_desktop.api.security import require_token, require_token_or_query
from ophthai_desktop.api.versions import (
    ETAG_HEADER,
    IfMatch,
    IfNoneMatch,
    if_none_match_names,
    patient_etag,
    patient_write,
    tag_patient,
)
from ophthai_desktop.core.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMedia,
    about_field,
)
from ophthai_desktop.core.imaging import (
    USE_AN_ACCEPTED_FORMAT,
    decode_data_url,
    too_large_message,
)
from ophthai_desktop.core.services.patients import (
    NULLABLE_SORT_KEYS,
    SORTABLE,
    NewImage,
    patient_after,
)

router = SlashRouter(
    prefix="/api/patients", tags=["patients"], responses=documented(*COMMON_ERRORS)
)
guarded = [Depends(require_token)]

IMAGE_CACHE = "private, max-age=86400, immutable"
IMAGE_ETAG: dict[str, Any] = {
    "ETag": {
        "description": "The image's version; send it as If-None-Match to revalidate.",
        "schema": {"type": "string"},
    }
}
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/*": {}},
        "description": (
            "The image file as stored, with an ETag; with format or max_side, its 8-bit "
            "PNG rendition (image/png), with an ETag of its own."
        ),
        "headers": IMAGE_ETAG,
    },
    304: {
        "description": "Not Modified: If-None-Match names this image's (or rendition's) ETag.",
        "headers": IMAGE_ETAG,
    },
}


#: The sort keys as responses spell them; their snake_case spellings work too.
SORT_KEYS = ", ".join(to_camel(key) for key in SORTABLE)
#: Every spelling of a sort key, as the document lists them (a generated client offers
#: these instead of any string, which the API refuses).
SORT_KEY_SPELLINGS = sorted({to_camel(key) for key in SORTABLE} | set(SORTABLE))
#: What each sort key's value is, as a page cursor holds it (``patient_after``: a
#: name's is its sort key, an age today's).
SORT_VALUE_TYPES: dict[str, type] = {
    "id": str,
    "name": str,
    "age": int,
    "birth_date": date,
    "gender": str,
    "status": str,
    "workflow_step": int,
    "admission_date": datetime,
    "appointment_date": datetime,
    "created_at": datetime,
    "updated_at": datetime,
}


def _sort_key(order_by: str) -> str:
    """The service's (snake_case) name of a sort key sent in either spelling: responses
    name the keys in camelCase, so clients sort by ``admissionDate``."""
    key = to_snake(order_by)
    if key not in SORTABLE:
        raise InvalidInput(
            f"cannot sort by {order_by!r}; use one of: {SORT_KEYS} (or in snake_case)",
            field="order_by",
        )
    return key


def _image_from_url(
    value: str | None, *, patient_id: str | None, max_bytes: int, modality: str, laterality: str
) -> NewImage | None:
    """A data URL (or bare base64) becomes an image to store; the patient's own image
    URL (echoed back by a client that PATCHes whole objects) changes nothing; a link to
    anything else is refused."""
    if not value:
        return None
    # Bare base64 may start with "/" (every JPEG's does: "/9j/"), so only absolute URLs
    # and paths of this API count as links.
    if not value.startswith(("http://", "https://", "/api/")):
        with about_field("imageUrl"):
            data = decode_data_url(value, max_bytes=max_bytes)
        return NewImage(
            data=data, source="api", modality=modality, laterality=laterality, field="imageUrl"
        )
    if patient_id and urlsplit(value).path.rstrip("/") == f"/api/patients/{patient_id}/image":
        return None
    raise InvalidInput(
        "imageUrl must be a data:image/...;base64 URL (links to other servers are not fetched)",
        field="imageUrl",
    )


def _refuse_image_details_without_image(
    body: s.PatientCreate | s.PatientUpdate, image: NewImage | None
) -> None:
    """``modality`` and ``laterality`` describe the image a data URL in ``imageUrl``
    brings; sent without one they would be dropped, so they are refused instead. A form
    that always sends its default, ``unknown``, loses nothing and is not refused."""
    if image is not None:
        return
    for name in ("modality", "laterality"):
        if name in body.model_fields_set and getattr(body, name) != "unknown":
            raise InvalidInput(
                "applies to an image sent with it as a data URL in imageUrl, and none "
                "was sent; send one, or upload a scan (POST .../scans)",
                field=name,
            )


@router.get(
    "",
    response_model=list[s.PatientPublic],
    dependencies=guarded,
    responses={200: {"headers": {**s.TOTAL_COUNT_HEADER, **NEXT_PAGE_HEADERS}}},
)
def list_patients(
    patients: PatientsDep,
    base_url: BaseUrlDep,
    request: Request,
    response: Response,
    cursors: CursorCipherDep,
    after: AfterCursor = None,
    skip: Skip = 0,
    limit: Limit = 100,
    search: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Part of the name, ignoring case and accents (jose muller finds "
            "José Müller), or part of the id, ignoring case",
        ),
    ] = None,
    status: Annotated[
        s.PatientStatusName | None, Query(description="Only the patients with this status")
    ] = None,
    order_by: Annotated[
        str,
        Query(
            description=f"One of: {SORT_KEYS} (or in snake_case)",
            json_schema_extra={"enum": SORT_KEY_SPELLINGS},
        ),
    ] = "created_at",
    descending: Annotated[
        bool,
        Query(
            description="Z to A, newest or largest first (the default for every key); "
            "false for A to Z, oldest or smallest first. Patients without a value for the "
            "key come last either way"
        ),
    ] = True,
) -> list[s.PatientPublic]:
    """List patients, newest first unless ``order_by`` says otherwise; ``descending`` is
    true by default for every key (``descending=false`` sorts names A to Z). The total
    matching count is in ``X-Total-Count``; a full page gives the next page's cursor in
    ``Link`` (``rel="next"``) and ``X-Next-Cursor``."""
    key = _sort_key(order_by)
    listing = Listing(
        cursors,
        "patients",
        key,
        descending,
        SORT_VALUE_TYPES[key],
        str,
        nullable=key in NULLABLE_SORT_KEYS,
        filters={"search": search, "status": status},
    )
    page = patients.list_patients(
        search=search,
        status=status,
        skip=skip,
        limit=limit,
        order_by=key,
        descending=descending,
        after=None if after is None else listing.after(after),
    )
    response.headers["X-Total-Count"] = str(page.total)
    if len(page.items) == limit:
        query = {
            "limit": limit,
            "order_by": order_by,
            "descending": descending,
            "search": search,
            "status": status,
        }
        last = patient_after(page.items[-1], key)
        response.headers.update(listing.next_link(request.url, last, query))
    return [presenters.patient(p, base_url) for p in page.items]


@router.post(
    "",
    response_model=s.PatientPublic,
    status_code=201,
    dependencies=guarded,
    responses={
        201: {"headers": {**ETAG_HEADER, **s.LOCATION_HEADER}},
        **documented(400, 409, 413, 415, 507),
    },
)
def create_patient(
    body: s.PatientCreate,
    app: ApplicationDep,
    actor: ActorDep,
    base_url: BaseUrlDep,
    response: Response,
) -> s.PatientPublic:
    fields = body.model_dump(
        exclude_unset=True, exclude={"id", "image_url", "modality", "laterality"}
    )
    image = _image_from_url(
        body.image_url,
        patient_id=None,
        max_bytes=app.settings.max_image_bytes,
        modality=body.modality,
        laterality=body.laterality,
    )
    _refuse_image_details_without_image(body, image)
    record = app.patients.create_patient(fields, actor=actor, patient_id=body.id, image=image)
    response.headers["Location"] = f"/api/patients/{record.id}"
    return presenters.patient(tag_patient(response, record), base_url, detail=True)


@router.get(
    "/{patient_id}",
    response_model=s.PatientPublic,
    dependencies=guarded,
    responses={
        200: {"headers": ETAG_HEADER},
        304: {
            "description": "Not Modified: If-None-Match names the patient's ETag.",
            "headers": ETAG_HEADER,
        },
        **documented(404),
    },
)
def get_patient(
    patient_id: str,
    patients: PatientsDep,
    base_url: BaseUrlDep,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> s.PatientPublic | Response:
    """The patient, with an ``ETag`` to send back as ``If-Match`` with a change; 304
    without the body when ``If-None-Match`` names that ``ETag``."""
    record = patients.get_patient(patient_id)
    etag = patient_etag(record)
    if if_none_match is not None and if_none_match_names(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return presenters.patient(record, base_url, detail=True)


@router.patch(
    "/{patient_id}",
    response_model=s.PatientPublic,
    dependencies=guarded,
    responses={200: {"headers": ETAG_HEADER}, **documented(400, 404, 409, 412, 413, 415, 507)},
)
def update_patient(
    response: Response,
    patient_id: str,
    body: s.PatientUpdate,
    app: ApplicationDep,
    actor: ActorDep,
    base_url: BaseUrlDep,
    if_match: IfMatch = None,
) -> s.PatientPublic:
    """Change the fields sent; with ``If-Match``, only if the patient is still the
    version read (412 otherwise)."""
    if body.id is not None and body.id != patient_id:
        raise InvalidInput("the id cannot be changed", field="id")
    fields = body.model_dump(
        exclude_unset=True, exclude={"image_url", "modality", "laterality", *s.PATIENT_READ_ONLY}
    )
    image = _image_from_url(
        body.image_url,
        patient_id=patient_id,
        max_bytes=app.settings.max_image_bytes,
        modality=body.modality,
        laterality=body.laterality,
    )
    _refuse_image_details_without_image(body, image)
    if body.ai_analysis is not None and not isinstance(body.ai_analysis, dict):
        raise InvalidInput("aiAnalysis must be an object", field="aiAnalysis")
    ai_result = body.ai_analysis
    with patient_write(if_match, app.patients, patient_id) as expect:
        record = app.patients.update_patient(
            patient_id, fields, actor=actor, image=image, ai_result=ai_result, expect=expect
        )
    return presenters.patient(tag_patient(response, record), base_url, detail=True)


@router.delete(
    "/{patient_id}",
    response_model=s.Message,
    dependencies=guarded,
    responses=documented(404, 409, 412, 507),
)
def delete_patient(
    patient_id: str, patients: PatientsDep, actor: ActorDep, if_match: IfMatch = None
) -> s.Message:
    with patient_write(if_match, patients, patient_id) as expect:
        patients.delete_patient(patient_id, actor=actor, expect=expect)
    return s.Message(message=f"patient {patient_id} deleted")


@router.post(
    "/{patient_id}/validate",
    response_model=s.PatientPublic,
    dependencies=guarded,
    responses={200: {"headers": ETAG_HEADER}, **documented(400, 404, 409, 412, 413, 507)},
)
def validate_patient(
    response: Response,
    patient_id: str,
    patients: PatientsDep,
    actor: ActorDep,
    base_url: BaseUrlDep,
    approved: Annotated[bool | None, Query(description="The seed's query form")] = None,
    body: Annotated[s.ValidateRequest | None, Body()] = None,
    if_match: IfMatch = None,
) -> s.PatientPublic:
    """Approve or reject the newest analysis (``?approved=true`` or a JSON body)."""
    verdict = one_value(approved, body.approved if body else None, "approved")
    if verdict is None:
        raise InvalidInput("say whether the analysis is approved", field="approved")
    clinician = (body.clinician if body else None) or f"API client {actor.who}"
    with patient_write(if_match, patients, patient_id) as expect:
        record = patients.validate_analysis(
            patient_id,
            approved=verdict,
            clinician=clinician,
            notes=body.notes if body else None,
            actor=actor,
            expect=expect,
        )
    return presenters.patient(tag_patient(response, record), base_url, detail=True)


@router.post(
    "/{patient_id}/schedule",
    response_model=s.PatientPublic,
    dependencies=guarded,
    responses={200: {"headers": ETAG_HEADER}, **documented(400, 404, 409, 412, 413, 507)},
)
def schedule_patient(
    response: Response,
    patient_id: str,
    patients: PatientsDep,
    actor: ActorDep,
    base_url: BaseUrlDep,
    appointment_date: Annotated[
        datetime | None, Query(description="The seed's query form (ISO 8601 with zone)")
    ] = None,
    body: Annotated[s.ScheduleRequest | None, Body()] = None,
    if_match: IfMatch = None,
) -> s.PatientPublic:
    """Schedule the follow-up (``?appointment_date=...`` or a JSON body)."""
    when = one_value(appointment_date, body.appointment_date if body else None, "appointment_date")
    if when is None:
        raise InvalidInput("the appointment date is required", field="appointment_date")
    with patient_write(if_match, patients, patient_id) as expect:
        record = patients.schedule_appointment(patient_id, when, actor=actor, expect=expect)
    return presenters.patient(tag_patient(response, record), base_url, detail=True)


# Images and scans --------------------------------------------------------------------


@router.get(
    "/{patient_id}/image",
    response_class=FileResponse,
    dependencies=[Depends(require_token_or_query)],
    responses={**IMAGE_RESPONSES, **documented(404, 413)},
)
async def get_patient_image(
    request: Request,
    patient_id: str,
    patients: PatientsDep,
    renditions: RenditionsDep,
    v: Annotated[str | None, Query(description="The image's version, as imageUrl gives it")] = None,
    display_format: DisplayFormat = None,
    max_side: MaxSide = None,
) -> Response:
    """The newest scan's image file, or its PNG rendition (``format``, ``max_side``).
    Cached for good only under the version ``imageUrl`` names (a new scan changes the
    URL); the bare path is revalidated every time, since a new scan changes what it
    serves (304 while it has not)."""
    path, media_type = await run_in_threadpool(patients.latest_image, patient_id)
    current = v is not None and len(v) >= presenters.IMAGE_VERSION_CHARS and path.name.startswith(v)
    cache = IMAGE_CACHE if current else "private, no-cache"
    spec = rendition_spec(display_format, max_side)
    if spec is not None:
        return await renditions.response(request, path, cache, spec)
    return await run_in_threadpool(image_response, request, path, media_type, cache)


@router.get(
    "/{patient_id}/scans",
    response_model=list[s.ScanPublic],
    dependencies=guarded,
    responses=documented(404),
)
def list_scans(patient_id: str, patients: PatientsDep, base_url: BaseUrlDep) -> list[s.ScanPublic]:
    return [presenters.scan(r, base_url) for r in patients.list_scans(patient_id)]


@router.post(
    "/{patient_id}/scans",
    response_model=s.ScanPublic,
    status_code=201,
    dependencies=[*guarded, form_fields("file", "modality", "laterality")],
    responses={
        201: {"headers": s.LOCATION_HEADER},
        **documented(400, 404, 409, 412, 413, 415, 500, 507),
    },
)
def upload_scan(
    patient_id: str,
    app: ApplicationDep,
    actor: ActorDep,
    base_url: BaseUrlDep,
    response: Response,
    file: Annotated[UploadFile, File(description="PNG, JPEG, WebP, BMP or TIFF")],
    modality: Annotated[s.ModalityName, Form()] = "unknown",
    laterality: Annotated[s.LateralityName, Form()] = "unknown",
    if_match: IfMatch = None,
) -> s.ScanPublic:
    """Attach an uploaded image to the patient as a new scan."""
    data = read_upload(file, app.settings.max_image_bytes)
    image = NewImage(
        data=data,
        source="api",
        modality=modality,
        laterality=laterality,
        filename=file.filename,
        field="file",
    )
    with patient_write(if_match, app.patients, patient_id) as expect:
        record = app.patients.attach_image(patient_id, image, actor=actor, expect=expect)
    response.headers["Location"] = f"/api/patients/{patient_id}/scans/{record.id}"
    return presenters.scan(record, base_url)


@router.get(
    "/{patient_id}/scans/{scan_id}",
    response_model=s.ScanPublic,
    dependencies=guarded,
    responses=documented(404),
)
def get_scan(
    patient_id: str, scan_id: RecordId, patients: PatientsDep, base_url: BaseUrlDep
) -> s.ScanPublic:
    """One of the patient's scans, as the list gives it (an upload's ``Location``)."""
    return presenters.scan(patients.get_scan(patient_id, scan_id), base_url)


@router.get(
    "/{patient_id}/scans/{scan_id}/image",
    response_class=FileResponse,
    dependencies=[Depends(require_token_or_query)],
    responses={**IMAGE_RESPONSES, **documented(404, 413)},
)
async def get_scan_image(
    request: Request,
    patient_id: str,
    scan_id: RecordId,
    patients: PatientsDep,
    renditions: RenditionsDep,
    display_format: DisplayFormat = None,
    max_side: MaxSide = None,
) -> Response:
    """One scan's image file, or its PNG rendition (``format``, ``max_side``)."""
    path, media_type = await run_in_threadpool(
        partial(patients.scan_image, scan_id, patient_id=patient_id)
    )
    spec = rendition_spec(display_format, max_side)
    if spec is not None:
        return await renditions.response(request, path, IMAGE_CACHE, spec)
    return await run_in_threadpool(image_response, request, path, media_type, IMAGE_CACHE)


def image_response(request: Request, path: Path, media_type: str, cache: str) -> Response:
    """The image file, or 304 Not Modified when the client's copy (``If-None-Match``)
    is this file: a browser revalidating the bare image URL then gets no body."""
    try:
        stat = os.stat(path)
    except FileNotFoundError as exc:  # deleted since it was looked up
        raise NotFound("the image file is missing from the store") from exc
    response = FileResponse(
        path, media_type=media_type, headers={"Cache-Control": cache}, stat_result=stat
    )
    etag = response.headers["etag"]
    sent = request.headers.getlist("if-none-match")  # every line: one list
    if sent and if_none_match_names(", ".join(sent), etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache})
    if request.scope.get(HEAD_REQUEST):  # the file's headers, without reading the file
        return Response(status_code=200, headers=dict(response.headers))
    return response


def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """The bytes of an uploaded image; a declared type that is not an image is a 415 up
    front. The content decides which image it is, as for a data URL: the declared
    ``image/...`` type comes from the client's operating system, which may name a JPEG
    ``image/pjpeg`` or ``image/jpg`` and a BMP ``image/x-ms-bmp``."""
    declared = (file.content_type or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream" and not declared.startswith("image/"):
        raise UnsupportedMedia(
            f"{declared} is not an image; {USE_AN_ACCEPTED_FORMAT}", field="file"
        )
    data: bytes = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:  # what was read stops at the limit: say the real size
        raise PayloadTooLarge(too_large_message(file.size, max_bytes), field="file")
    return data


# Oculomics ---------------------------------------------------------------------------


@router.get(
    "/{patient_id}/oculomics",
    response_model=s.OculomicsPublic,
    dependencies=guarded,
    responses=documented(404),
)
def get_oculomics(patient_id: str, oculomics: OculomicsDep) -> s.OculomicsPublic:
    """Per-eye series, trends (change per year) and reference-range flags."""
    return presenters.oculomics(oculomics.overview(patient_id))


@router.post(
    "/{patient_id}/oculomics",
    response_model=s.OculomicsMeasurementPublic,
    status_code=201,
    dependencies=guarded,
    responses={
        201: {"headers": s.LOCATION_HEADER},
        **documented(400, 404, 409, 412, 413, 507),
    },
)
def add_oculomics(
    patient_id: str,
    body: s.OculomicsCreate,
    patients: PatientsDep,
    oculomics: OculomicsDep,
    actor: ActorDep,
    response: Response,
    if_match: IfMatch = None,
) -> s.OculomicsMeasurementPublic:
    with patient_write(if_match, patients, patient_id) as expect:
        record = oculomics.add_measurement(
            patient_id,
            eye=body.eye,
            measured_on=body.measured_on,
            iop_mmhg=body.iop_mmhg,
            cup_to_disc_ratio=body.cup_to_disc_ratio,
            rnfl_thickness_um=body.rnfl_thickness_um,
            vessel_density_pct=body.vessel_density_pct,
            actor=actor,
            expect=expect,
        )
    response.headers["Location"] = f"/api/patients/{patient_id}/oculomics/{record.id}"
    return presenters.measurement(record)


@router.get(
    "/{patient_id}/oculomics/{measurement_id}",
    response_model=s.OculomicsMeasurementPublic,
    dependencies=guarded,
    responses=documented(404),
)
def get_oculomics_measurement(
    patient_id: str, measurement_id: RecordId, oculomics: OculomicsDep
) -> s.OculomicsMeasurementPublic:
    """One measurement, with its flags (a POST's ``Location``)."""
    return presenters.measurement(oculomics.get_measurement(patient_id, measurement_id))
