"""The one place that maps core errors to HTTP status codes.

Every error body is JSON with ``message``, a sentence a person can act on, whatever
raised it. ``detail`` stays as FastAPI clients expect it (that sentence, or the list of
problems for a request that failed validation). A 422 also has ``errors``, the same
list for both kinds: one ``{loc, field, msg, type}`` per problem, ``field`` in the
request's own spelling when the request named it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ophthai_desktop.core.errors import (
    Conflict,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    OphthaiError,
    PayloadTooLarge,
    StorageError,
    UnsupportedMedia,
)

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
    (StorageError, 503),
)


def status_for(exc: OphthaiError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(message: str, **extra: object) -> dict[str, object]:
    """The body every error has: ``detail`` and ``message`` (see the module's doc)."""
    return {"detail": message, "message": message, **extra}


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON with a ``message`` a person can act on."""

    @app.exception_handler(OphthaiError)
    async def _core_error(_request: Request, exc: OphthaiError) -> JSONResponse:
        status = status_for(exc)
        text = f"{exc.field}: {exc.message}" if exc.field else exc.message
        extra: dict[str, object] = {"field": exc.field} if exc.field else {}
        if status == 422:
            extra["errors"] = [
                {
                    "loc": [exc.field] if exc.field else [],
                    "field": exc.field or "",
                    "msg": exc.message,
                    "type": "value_error",
                }
            ]
        return JSONResponse(error_body(text, **extra), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(error_body(text), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for error in exc.errors():
            location = list(error.get("loc", ()))
            kind = error.get("type", "value_error")
            msg = error.get("msg", "invalid")
            # The first part says where (body, query, path...); a JSON syntax error's
            # second part is a character position, not a field.
            parts = location[1:] if location and location[0] in REQUEST_PARTS else location
            if kind == "json_invalid":
                parts = []
                reason = (error.get("ctx") or {}).get("error")
                msg = f"the body is not valid JSON ({reason})" if reason else "invalid JSON"
            errors.append(
                {
                    "loc": location,
                    "field": ".".join(str(part) for part in parts),
                    "msg": msg,
                    "type": kind,
                }
            )
        message = "; ".join(f"{e['field'] or 'body'}: {e['msg']}" for e in errors)
        return JSONResponse(
            {"detail": errors, "message": message, "errors": errors}, status_code=422
        )

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # The exception text can hold parameter values (names); log its type only.
        log.error("database error: %s", type(exc).__name__)
        return JSONResponse(
            error_body("the database could not complete the request"), status_code=503
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s while serving a request", type(exc).__name__, exc_info=exc)
        return JSONResponse(error_body("internal error; see the application log"), status_code=500)
