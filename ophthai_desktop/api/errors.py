"""The one place that maps core errors to HTTP status codes.

Every error body is JSON with ``message``, a sentence a person can act on, whatever
raised it. ``detail`` stays as FastAPI clients expect it (that sentence, or the list of
problems for a request that failed validation). A 422 also has ``errors``, the same
list for both kinds: one ``{loc, field, msg, type}`` per problem, ``field`` in the
request's own spelling when the request named it, whether FastAPI or a service refused
it (services name fields in snake_case; see :func:`as_sent`).
"""

from __future__ import annotations

import http
import json
import logging
import re
import typing
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AliasChoices
from pydantic.alias_generators import to_camel
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from ophthai_desktop.api.bodies import (
    FASTAPI_BODY_ERROR,
    UNREADABLE_BODY,
    UPLOAD_NO_ROOM,
    UPLOAD_NOT_SPOOLED,
)
from ophthai_desktop.api.http_protocol import BODY_TIMEOUT_S, HEAD_TIMEOUT_S, MAX_HEAD_BYTES
from ophthai_desktop.api.params import it_takes
from ophthai_desktop.api.routing import QUERY_SPELLING, allowed_methods
from ophthai_desktop.api.schemas import READ_ONLY, ErrorPublic, ValidationErrorPublic
from ophthai_desktop.core.errors import (
    NO_ROOM_ERRNOS,
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    ModelUnavailable,
    NoRoom,
    NotFound,
    OphthaiError,
    PayloadTooLarge,
    StorageError,
    UnsupportedMedia,
)
from ophthai_desktop.core.log_safety import safe_description

log = logging.getLogger(__name__)

#: The first element of a validation error's location: which part of the request.
REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})

STATUS_BY_ERROR: tuple[tuple[type[OphthaiError], int], ...] = (
    (NotFound, 404),
    (UnsupportedMedia, 415),
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (Conflict, 409),
    (ModelUnavailable, 503),
    (NoRoom, 507),  # stays full until someone frees space: no Retry-After
    (StorageError, 503),
)


#: The ``Retry-After`` of a 503 for a database that does not answer, in seconds: a
#: server restarting is back within seconds, and a client trying sooner only adds load.
DATABASE_RETRY_AFTER_S = 5

#: A 503's message when every database connection stayed busy (with Retry-After too).
BUSY_MESSAGE = "the database is busy (every connection in use); try again shortly"

#: A 500's message for a database error that is not about the database answering.
REFUSED_MESSAGE = "the database refused the request; see the application log"


#: What each error status means, as the OpenAPI document says it.
ERROR_MEANINGS: dict[int, str] = {
    400: "The body could not be read (JSON not in UTF-8, or a malformed upload).",
    401: "An API token is configured and the request did not send it.",
    403: (
        "Refused: a web page from an origin not in OPHTHAI_CORS_ORIGINS, or (without an "
        "API token) a request not addressed to localhost."
    ),
    404: "No such record.",
    408: (
        f"The request's line and headers did not arrive within {HEAD_TIMEOUT_S:g} s (of the "
        "connection opening, or of the previous answer on it), or its body stopped "
        f"arriving for {BODY_TIMEOUT_S:g} s (nothing of it is stored); the connection is "
        "closed."
    ),
    409: (
        "The record's state does not allow it, or another request changed or deleted "
        "the record at the same moment; or the watch folder is turned off (or not started)."
    ),
    412: "If-Match does not name the patient's current ETag: it changed since it was read.",
    413: "The request body or the image is larger than the limits.",
    415: "Not an image this application reads (PNG, JPEG, WebP, BMP, TIFF).",
    431: (
        f"The request's line and headers are larger than {MAX_HEAD_BYTES // 1024} KB; the "
        "connection is closed."
    ),
    422: "Invalid input: each problem is in errors, naming its field as the request did.",
    500: (
        "The analysis failed (job_id names the job), or the database refused the "
        "request (not an outage: trying again does not help), or the server could not "
        "hold an upload in its temporary folder (nothing was stored)."
    ),
    503: (
        "The model is not available; or, with Retry-After saying when to try again, the "
        "database does not answer, every database connection is in use, or the server "
        "has as many connections open as it takes; or the watch folder did not answer "
        "within 5 s (a network share that is not reachable)."
    ),
    504: "The analysis is still running after the wait; poll the job (job_id).",
    507: (
        "The server's disk is full (its temporary folder, the image store or the "
        "database): nothing was stored; it stays so until space is freed there, so no "
        "Retry-After."
    ),
}

#: The problems a 422 lists; the message counts the rest. A 2 MB body can hold a million
#: wrong values: listing each held the server's event loop for 16 s and answered 338 MB.
MAX_LISTED_PROBLEMS = 50

#: The errors every API route may answer: no token, a refused origin or host, a request
#: head that came too slowly or was too large, a query parameter it does not take, the
#: database unavailable or the server's connections all taken. A full disk (507) is
#: listed by each route that stores something: one that only reads cannot run out of room.
COMMON_ERRORS = (401, 403, 408, 422, 431, 503)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses a route answers, with the body each has:
    :class:`ValidationErrorPublic` for a 422, :class:`ErrorPublic` otherwise."""
    return {
        status: {
            "model": ValidationErrorPublic if status == 422 else ErrorPublic,
            "description": ERROR_MEANINGS[status],
        }
        for status in statuses
    }


def status_for(exc: OphthaiError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(message: str, **extra: object) -> dict[str, object]:
    """The body every error has: ``detail`` and ``message`` (see the module's doc)."""
    return {"detail": message, "message": message, **extra}


def no_route(path: str) -> str:
    """The message of a 404 for a path no route takes (Starlette's says "Not Found")."""
    return f"there is nothing at {path}: the API's paths are listed at /docs (and in /openapi.json)"


def method_not_allowed(method: str, path: str, allowed: str) -> str:
    """The message of a 405: the method, the path (the client's own), and the methods
    the path takes (its ``Allow``), when they are known."""
    message = f"{method} is not allowed on {path}"
    return f"{message}; it takes {allowed}" if allowed else message


#: Plain type names pydantic puts in a location for each member of a union it tried.
PYDANTIC_TYPES = frozenset(
    {"str", "int", "float", "bool", "list", "dict", "none", "date", "datetime"}
)


def _without_type_names(location: Sequence[object], *, sent_key: bool = False) -> list[object]:
    """A location without the types pydantic tried ("list[str]", "constrained-str",
    "function-after[...]", or a plain "str" after the field it tried it for): the
    request's keys, in camelCase or snake_case. A plain name right after the request's
    part is a key: the seed's oculomics "date" was dropped, and its 422 named no field.
    With ``sent_key`` (a key not taken, ``extra_forbidden``) the last part is the key as
    the client sent it, whatever it holds ("birth-date", "symptoms[0]")."""
    kept: list[object] = []
    for at, part in enumerate(location):
        if sent_key and at == len(location) - 1:
            kept.append(part)
            continue
        if isinstance(part, str) and ("[" in part or "-" in part):
            continue
        if part in PYDANTIC_TYPES and at > 0 and location[at - 1] not in REQUEST_PARTS:
            continue
        kept.append(part)
    return kept


async def as_sent(request: Request, field: str) -> tuple[list[str], str]:
    """A core error's field (snake_case, as the services name it) as the request spelled
    it: its location (``["body", "admissionDate"]``, ``query`` or ``path``) and name.

    A field the request did not send (a required one left out) is named as the wire
    names it, in camelCase, as pydantic names a required body key left out: its
    location is ``["body", name]`` when the route's body takes it
    (``["body", "appointmentDate"]``), else the name alone."""
    spelled = request.scope.get(QUERY_SPELLING, {})
    if field in spelled or field in request.query_params:
        name = spelled.get(field, field)
        return ["query", name], name
    if field in request.path_params:
        return ["path", field], field
    keys = await _body_keys(request)
    aliases = _body_aliases(request, field)
    for name in (field, to_camel(field), *(aliases or [])):
        if name in keys:
            return ["body", name], name
    if aliases:  # the body's own first name for it (camelCase)
        return ["body", aliases[0]], aliases[0]
    return [to_camel(field)], to_camel(field)


def _body_models(request: Request) -> list[object]:
    """The route's body model, and the members of its annotation (``Model | None``)."""
    body = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(body, "field_info", None), "annotation", None)
    return [annotation, *typing.get_args(annotation)]


def _body_aliases(request: Request, field: str) -> list[str] | None:
    """The names the route's body model reads ``field`` from, the one its schema shows
    first (``iopMmhg``, then ``iop`` and the rest); None when it takes no such field."""
    for model in _body_models(request):
        info = getattr(model, "model_fields", {}).get(field)
        if info is None:
            continue
        names: list[str] = []
        alias = info.validation_alias
        if isinstance(alias, str):
            names.append(alias)
        elif isinstance(alias, AliasChoices):
            names.extend(choice for choice in alias.choices if isinstance(choice, str))
        if info.alias and info.alias not in names:
            names.append(info.alias)
        return names or [field]
    return None


def _other_spelling(request: Request, key: str, sent: frozenset[str]) -> str | None:
    """Another name the body also sent for the field ``key`` names (``birthDate`` for
    ``birth_date``, ``iop`` for ``iopMmhg``): pydantic reads one and calls the other an
    extra input, which names a key the API documents as accepted."""
    for model in _body_models(request):
        for name in getattr(model, "model_fields", {}):
            names = {name, *(_body_aliases(request, name) or [])}
            if key in names:
                others = sorted(names & sent - {key})
                return others[0] if others else None
    return None


def _part(request: Request) -> list[str]:
    """Where a problem that names no field lies: the body as a whole when the request has
    one (the measurement with no values), else its query or path."""
    if request.headers.get("content-type") or request.headers.get("content-length", "0") != "0":
        return ["body"]
    return ["query"] if request.url.query else ["path"]


def _body_takes(request: Request) -> str:
    """The keys the route's JSON body takes, for a 422 to list as the query's and the
    form's list theirs: each as the schema names it (camelCase), in the model's order,
    a required one said so; not the read-only keys a PATCH accepts and never applies."""
    for model in _body_models(request):
        fields = getattr(model, "model_fields", None)
        if not isinstance(fields, dict):
            continue
        takes = []
        for name, info in fields.items():
            if info.description == READ_ONLY:
                continue
            wire = (_body_aliases(request, name) or [name])[0]
            takes.append(f"{wire} (required)" if info.is_required() else wire)
        return ", ".join(takes) or "none"
    return "none"


#: The media types of a form's body (the fields of which :func:`_body_keys` reads).
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _sent_as_form(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith(FORM_TYPES)


async def _body_keys(request: Request) -> frozenset[str]:
    """The top-level keys of the request's JSON body, or the fields of its form, as
    already read for the route."""
    content_type = request.headers.get("content-type", "")
    if _sent_as_form(request):
        try:
            return frozenset(await request.form())  # parsed for the route: kept on it
        except (RuntimeError, ValueError, MultiPartException):  # unreadable: not named
            return frozenset()
    if "json" not in content_type:
        return frozenset()
    try:
        # The route has read the body (Starlette keeps it on this request); a body
        # read as a stream (an upload) raises here instead of being read again.
        body = json.loads(await request.body())
    except (RuntimeError, ValueError):
        return frozenset()
    return frozenset(body) if isinstance(body, dict) else frozenset()


#: What FastAPI says of a text value where a route takes a file (``received: <class 'str'>``).
NOT_A_FILE = "Expected UploadFile"

#: What Starlette's form parser says of a malformed multipart body, and what we say.
MULTIPART_MESSAGES = {
    "Missing boundary in multipart.": (
        "the Content-Type multipart/form-data names no boundary: let the HTTP client write "
        "the Content-Type of a multipart body (one set by hand leaves the boundary out)"
    ),
    "Invalid multipart data.": (
        "the multipart body could not be read: it is malformed; send the form again as "
        "the HTTP client writes it"
    ),
}


def _takes_form(request: Request) -> bool:
    """Whether the request's route reads its body as a form (an upload)."""
    body = getattr(request.scope.get("route"), "body_field", None)
    return isinstance(getattr(body, "field_info", None), params.Form)


def _takes_file(request: Request, name: str) -> bool:
    """Whether the request's route takes a file (an upload's image) in the form field
    ``name``."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    return any(
        field.alias == name and isinstance(field.field_info, params.File)
        for field in getattr(dependant, "body_params", ())
    )


def _form_problem(request: Request, kind: str, msg: str, name: str) -> str:
    """A form route's problem with its field ``name``, said so that the client sees what
    to send: a body that is no multipart form at all is named (its fields were not
    "required", they could not come), a form without its file says where the image goes,
    and a text value where a file belongs is not "Expected UploadFile, received: <class
    'str'>"."""
    sent = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "missing" and sent != "multipart/form-data":
        what = sent or "a body without a Content-Type"
        return f"not sent: this endpoint takes a multipart/form-data body, not {what}"
    if kind == "missing" and _takes_file(request, name):
        return (
            f"the form has no file: send the image in a multipart field named {name} "
            f"(as curl -F '{name}=@scan.png' sends it)"
        )
    if msg.startswith(NOT_A_FILE):
        if sent == "application/x-www-form-urlencoded":
            return (
                "must be a file, which an application/x-www-form-urlencoded body cannot "
                "carry: send multipart/form-data"
            )
        return (
            "must be a file (a part with a filename, as curl -F 'file=@scan.png' sends "
            "it), not text"
        )
    return msg


#: What pydantic calls a body that is not a JSON object (a form post, text, an array).
NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type"})


def _not_an_object(request: Request) -> str:
    """The message for a body that is not a JSON object, naming what was sent instead."""
    sent = request.headers.get("content-type", "").split(";")[0].strip()
    if sent and "json" not in sent:
        return f"the body must be a JSON object sent as application/json, not {sent}"
    return "the body must be a JSON object"


async def _not_json(request: Request, at: object, reason: str | None) -> str:
    """The message for a body that is not valid JSON: where it fails (``at``, the
    character FastAPI's ``loc`` gives, counted from 0) and why, or that it ends before the
    JSON is complete (cut short, or a closing brace left out: the decoder's own words,
    "Expecting ',' delimiter", said neither)."""
    try:
        text = (await request.body()).decode("utf-8-sig", "replace")  # read for the route
    except (RuntimeError, ClientDisconnect):
        text = ""
    if isinstance(at, int) and text.strip() and at >= len(text.rstrip()):
        return f"the body is not valid JSON: it ends at character {at}, before the JSON is complete"
    where = f"at character {at}" if isinstance(at, int) else ""
    why = ": ".join(part for part in (where, reason) if part)
    return f"the body is not valid JSON ({why})" if why else "the body is not valid JSON"


def _body_not_held(exc: OSError) -> JSONResponse:
    """The answer to a body the server could not hold while FastAPI parsed it (a
    multipart upload spooled to a full temporary folder): the server's fault, not the
    client's, and the route never ran. 507 for a disk with no room, 500 otherwise."""
    # Its errno and where, never its text: it names the temporary file's path.
    log.error("could not hold a request's body while reading it: %s", safe_description(exc))
    if exc.errno in NO_ROOM_ERRNOS:
        return JSONResponse(error_body(UPLOAD_NO_ROOM), status_code=507)
    return JSONResponse(error_body(UPLOAD_NOT_SPOOLED), status_code=500)


#: A date and time whose zone offset's ``+`` a URL's query turned into a space, as
#: ``?appointment_date=2030-12-01T09:30:00+01:00`` written into a URL unencoded arrives:
#: ``2030-12-01T09:30:00 01:00`` (form encoding reads ``+`` as a space).
PLUS_READ_AS_SPACE = re.compile(r"\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}(:?\d{2})?$")

#: A date field's problems in the API's words (pydantic's: "Datetimes provided to dates
#: should have zero time - e.g. be exact dates" for JavaScript's toISOString() of a local
#: midnight, "1980-04-30T22:00:00.000Z").
TAKES_A_DATE = "a date as YYYY-MM-DD (e.g. 1980-05-01)"
DATE_WITH_A_TIME = (
    f"{TAKES_A_DATE}, without a time of day: a moment with a time other than midnight "
    "falls on another date in another time zone, so it is not taken as one (send the date "
    "as entered, not as a UTC moment)"
)
DATE_KINDS = frozenset({"date_parsing", "date_from_datetime_parsing", "date_type"})


def _date_problem(kind: str, msg: str) -> str | None:
    """What a date field's problem ``kind`` says in the API's words; None for no date's
    (a number sent for a date is refused before, by the request models)."""
    if kind == "date_from_datetime_inexact":
        return DATE_WITH_A_TIME
    if kind in DATE_KINDS:
        why = msg.removeprefix("Input should be a valid date or datetime").lstrip(", ")
        return f"{TAKES_A_DATE}: {why}" if why and why != msg else TAKES_A_DATE
    return None


#: What a query's date and time refused for that reason adds to pydantic's message.
PLUS_HINT = (
    "a + in a URL's query is read as a space: send the zone's + as %2B "
    "(encodeURIComponent does), or the time in UTC with Z"
)


def _plus_read_as_space(location: list[Any], kind: str, value: object) -> bool:
    """A query's date and time refused because its zone's ``+`` came as a space."""
    return (
        location[:1] == ["query"]
        and kind.startswith("datetime")
        and isinstance(value, str)
        and PLUS_READ_AS_SPACE.search(value) is not None
    )


def _without_null_alternatives(problems: Sequence[Any]) -> list[Any]:
    """pydantic's problems without "Input should be None" for an optional field whose
    other type it also tried (``status: Literal[...] | None`` sent ``"Review"``): beside
    the values the field takes, it reads as if the field had to be null."""

    def where(problem: Any) -> tuple[object, ...]:
        return tuple(_without_type_names(problem.get("loc", ())))

    tried_otherwise = {where(p) for p in problems if p.get("type") != "none_required"}
    return [
        p for p in problems if p.get("type") != "none_required" or where(p) not in tried_otherwise
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON with a ``message`` a person can act on."""

    @app.exception_handler(OphthaiError)
    async def _core_error(request: Request, exc: OphthaiError) -> JSONResponse:
        status = status_for(exc)
        location, field = await as_sent(request, exc.field) if exc.field else (_part(request), "")
        text = f"{field}: {exc.message}" if field else exc.message
        extra: dict[str, object] = {"field": field} if field else {}
        if status == 422:
            errors = [(location, field)]
            for other in exc.also:  # the other fields of a contradiction
                errors.append(await as_sent(request, other))
            extra["errors"] = [
                {"loc": loc, "field": name, "msg": exc.message, "type": "value_error"}
                for loc, name in errors
            ]
        headers = (
            {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
            if isinstance(exc, DatabaseUnavailable)
            else None
        )
        return JSONResponse(error_body(text, **extra), status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and text == FASTAPI_BODY_ERROR:
            if isinstance(exc.__cause__, OSError):
                return _body_not_held(exc.__cause__)
            text = UNREADABLE_BODY
        if exc.status_code == 400:
            text = MULTIPART_MESSAGES.get(text, text)
        if exc.status_code == 404 and text == http.HTTPStatus.NOT_FOUND.phrase:
            # Starlette's, for a path no route takes. The path is the client's own,
            # repeated to it; it is never logged (it may hold a patient's id or name).
            text = no_route(request.url.path)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # A mount (the docs' assets) names its own methods; a web page reads the
            # body more easily than the header, so it says them too.
            if allowed := allowed_methods(request) or headers.get("Allow", ""):
                headers["Allow"] = allowed
            text = method_not_allowed(request.method, request.url.path, allowed)
        return JSONResponse(error_body(text), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        problems = _without_null_alternatives(exc.errors())
        for error in problems[:MAX_LISTED_PROBLEMS]:
            location = list(error.get("loc", ()))
            kind = error.get("type", "value_error")
            msg = error.get("msg", "invalid")
            # The first part says where (body, query, path...); a JSON syntax error's
            # second part is a character position, not a field.
            keys = _without_type_names(location, sent_key=kind == "extra_forbidden")
            parts = keys[1:] if keys and keys[0] in REQUEST_PARTS else keys
            msg = msg.removeprefix("Value error, ")
            if location[:1] == ["query"] and parts:  # named as sent, not as renamed
                parts[0] = request.scope.get(QUERY_SPELLING, {}).get(parts[0], parts[0])
                location = ["query", *parts]
            if location == ["body"] and kind in NOT_AN_OBJECT:
                msg = f"{_not_an_object(request)} {it_takes(_body_takes(request))}"
            if location == ["body"] and kind == "missing":  # no body (pydantic: "Field required")
                msg = (
                    "the body must be a JSON object; none was sent "
                    f"{it_takes(_body_takes(request))}"
                )
            if kind == "extra_forbidden" and location[:1] == ["body"] and len(parts) == 1:
                sent = await _body_keys(request)
                other = _other_spelling(request, str(parts[0]), sent)
                if other is not None:
                    msg = f"given twice, as {other} and {parts[0]}; send one of them"
                elif not _sent_as_form(request):  # a form's own say so (params.not_taken)
                    msg = f"this endpoint takes no such field {it_takes(_body_takes(request))}"
            if location[:1] == ["body"] and _takes_form(request):
                msg = _form_problem(request, kind, msg, ".".join(map(str, parts)))
            if (dated := _date_problem(kind, msg)) is not None:
                msg = dated
            if _plus_read_as_space(location, kind, error.get("input")):
                msg = f"{msg}; {PLUS_HINT}"
            if kind == "json_invalid":
                parts = []
                at = location[1] if len(location) > 1 else None
                msg = await _not_json(request, at, (error.get("ctx") or {}).get("error"))
            errors.append(
                {
                    "loc": location,
                    "field": ".".join(str(part) for part in parts),
                    "msg": msg,
                    "type": kind,
                }
            )
        message = "; ".join(f"{e['field'] or 'body'}: {e['msg']}" for e in errors)
        if len(problems) > MAX_LISTED_PROBLEMS:
            message += f"; and {len(problems) - MAX_LISTED_PROBLEMS:,} more"
        body: dict[str, object] = {"detail": errors, "message": message}
        fields = {e["field"] for e in errors}
        if len(fields) == 1 and "" not in fields and len(problems) == len(errors):
            body["field"] = fields.pop()  # one field at fault, as the API's own 422s say
        body["errors"] = errors
        return JSONResponse(body, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # The client left before its body had arrived, or the server ended a body that
        # stopped coming (and answered 408 itself): nothing failed, and no one reads this.
        # FastAPI turns the same while it reads a route's body into a 400; a body read
        # before it (refuse_json_not_in_utf8) ended here as an unexpected error.
        return JSONResponse(error_body("the request body did not arrive"), status_code=400)

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # The exception text can hold parameter values (names); log its type only.
        if isinstance(exc, IntegrityError | StaleDataError):
            # Another request changed or deleted a record this one relied on, between
            # its checks and its commit (a scan posted while the patient is deleted).
            log.info("request lost a race with another: %s", type(exc).__name__)
            return JSONResponse(
                error_body(
                    "the record was changed or deleted by another request at the same "
                    "moment; reload it and try again"
                ),
                status_code=409,
            )
        if isinstance(exc, PoolTimeout):
            # Every pooled connection stayed in use for the pool's whole wait (a burst
            # of requests, slow queries): the same request works once some are free.
            log.warning("request waited too long for a database connection")
            return JSONResponse(
                error_body(BUSY_MESSAGE),
                status_code=503,
                headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
            )
        # Not an outage (those are DatabaseUnavailable, a 503 with Retry-After) nor a
        # busy pool: a statement the database refuses (a bug, a value it cannot take),
        # which fails again however often it is sent, so no 503 that invites retries.
        log.error("database error: %s", type(exc).__name__)
        return JSONResponse(error_body(REFUSED_MESSAGE), status_code=500)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Its kind and where it was raised: its text and traceback can quote what it was
        # given (a patient's name in pydantic's input_value, a file name).
        log.error("unexpected error while serving a request: %s", safe_description(exc))
        return JSONResponse(error_body("internal error; see the application log"), status_code=500)
