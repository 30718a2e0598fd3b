"""Request parameters that several routes share, with their bounds and rules.

A number past what the database stores (a signed 64-bit integer; a record id, 32 bits)
is refused here with a 422 naming the parameter, rather than reaching the database, which
cannot bind it; so is a form field a route does not take, and a value given twice two
different ways.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator

from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.paging import MAX_LIMIT
from ophthai_desktop.core.storage.models import INTEGER_COLUMN_MAX

T = TypeVar("T")

#: The largest whole number SQLite and PostgreSQL store (a signed 64-bit integer).
DB_INT_MAX = 2**63 - 1

_DIGITS = re.compile(r"-?[0-9]+")


def _written_in_digits(value: object) -> object:
    """An id, a skip or a limit as digits alone: pydantic reads ``1_0`` as 10 and ``1.0``,
    ``+1`` or `` 1`` as 1, so a mistyped id named another record (``DELETE …/1_0``
    deleted notification 10)."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("a whole number written in the digits 0-9")
    return value


#: A numeric record id in the path (a notification, a job, an analysis, a scan).
RecordId = Annotated[int, Path(ge=0, le=INTEGER_COLUMN_MAX), BeforeValidator(_written_in_digits)]
Skip = Annotated[
    int,
    Query(ge=0, le=DB_INT_MAX, description="How many records to skip"),
    BeforeValidator(_written_in_digits),
]
Limit = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"Page size (1-{MAX_LIMIT})"),
    BeforeValidator(_written_in_digits),
]


def it_takes(takes: str) -> str:
    """What an endpoint takes, as a refusal ends: ``(it takes: a, b)``, or ``(it takes
    none)`` for one that takes nothing."""
    return "(it takes none)" if takes == "none" else f"(it takes: {takes})"


def not_taken(where: str, keys: list[str], takes: str) -> RequestValidationError:
    """The 422 for parameters or form fields (``where``: ``query``, ``body``) that an
    endpoint does not take, naming each and what it takes."""
    kind = "query parameter" if where == "query" else "form field"
    return RequestValidationError(
        [
            {
                "loc": (where, key),
                "msg": f"this endpoint takes no such {kind} {it_takes(takes)}",
                "type": "extra_forbidden",
            }
            for key in keys
        ]
    )


def form_fields(*names: str) -> Any:
    """A dependency for a multipart route: a field it does not take is a 422 naming it
    (the form is the one FastAPI parsed for the route; Starlette keeps it)."""

    async def check(request: Request) -> None:
        form = await request.form()
        unknown = sorted({key for key in form if key not in names})
        if unknown:
            raise not_taken("body", unknown, ", ".join(names))
        # FastAPI takes the last of a field sent twice: of two files, the first was
        # dropped without a word (and of two different patient ids, one was chosen).
        repeated = [key for key in names if len(set(map(_sent, form.getlist(key)))) > 1]
        if repeated:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", key),
                        "msg": (
                            f"{len(form.getlist(key))} files sent; send one image per request"
                            if key == "file"
                            else "given more than once, with different values; send it once"
                        ),
                        "type": "value_error",
                    }
                    for key in repeated
                ]
            )

    return Depends(check)


def _sent(value: object) -> object:
    """A form field's value, to tell repeats apart: each file is one of its own."""
    return value if isinstance(value, str) else id(value)


def one_value(first: T | None, second: T | None, field: str) -> T | None:
    """A value a client may send two ways (in the query or the body, as ``patient_id``
    or ``patientId``): either, or both when they agree. Two different values are
    refused rather than one of them chosen."""
    if first is not None and second is not None and first != second:
        raise InvalidInput("given twice, with different values; send it once", field=field)
    return second if second is not None else first
