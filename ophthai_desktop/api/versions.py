"""Optimistic concurrency and revalidation for patients: the ``ETag`` their responses
carry, the ``If-Match`` that requests changing them may send and the ``If-None-Match``
that a read may send.

Two clients that read a patient and PATCH it back would otherwise each overwrite the
other's change without either knowing. A client that sends the ``ETag`` it read as
``If-Match`` gets 412 Precondition Failed instead when the patient changed in between;
a request without ``If-Match`` is served as before (the seed's frontends send none).

A client that already holds the current version and reads it again with
``If-None-Match`` gets ``304 Not Modified`` without the body.

Both headers take a list of tags, which a client (or a proxy) may split over several
header lines: the lines are one list (RFC 9110 §5.3), and any tag in it may match.

The tag is a digest of the patient as the API shows it (which includes ``updatedAt``,
moved by every change): a new tag whenever anything a client can see of the patient
changes, even two changes within one tick of a coarse clock. The host a client reached
the server by is left out (``imageUrl`` is absolute), so every client sees the same tag.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, Response

from ophthai_desktop.api import presenters
from ophthai_desktop.core.records import PatientRecord
from ophthai_desktop.core.services import PatientService

#: Requests that change a patient through the API take one of these (by the patient's
#: id) from their ``If-Match`` check to their commit, so that two of them cannot both
#: pass the check against the same version. Changes made by the desktop window, the
#: watch folder or the inference worker do not take it.
_WRITE_LOCKS = tuple(threading.Lock() for _ in range(64))

#: One member of an entity-tag list: ``*``, ``"tag"`` or ``W/"tag"``. A tag may hold a
#: comma, so the list is read tag by tag rather than split at commas.
_LIST_MEMBER = re.compile(r'\*|(?:W/)?"[^"]*"')


def entity_tags(header: str) -> list[str]:
    """The members of an ``If-Match`` or ``If-None-Match`` value, in order."""
    return _LIST_MEMBER.findall(header)


def _all_lines(request: Request, name: str) -> str | None:
    """Every line of the header ``name`` as one comma-separated list (RFC 9110 §5.3);
    None when the request has none."""
    lines = request.headers.getlist(name)
    return ", ".join(lines) if lines else None


def _if_match(
    request: Request,
    if_match: Annotated[
        str | None,
        Header(
            description=(
                "The ETag read with the patient: the change is made only if the patient "
                "is still that version (412 otherwise). * matches any version."
            )
        ),
    ] = None,
) -> str | None:
    # Declared as a header for the OpenAPI document; FastAPI would give its first line.
    return _all_lines(request, "if-match")


def _if_none_match(
    request: Request,
    if_none_match: Annotated[
        str | None,
        Header(
            description=(
                "The ETag of the copy the client holds: 304 Not Modified, without the "
                "body, while the patient is still that version."
            )
        ),
    ] = None,
) -> str | None:
    return _all_lines(request, "if-none-match")


#: The ``If-Match`` request header (every line of it), as routes that change a patient
#: declare it.
IfMatch = Annotated[str | None, Depends(_if_match)]
#: The ``If-None-Match`` request header (every line of it), as a patient read takes it.
IfNoneMatch = Annotated[str | None, Depends(_if_none_match)]

#: The ``ETag`` response header of the responses that carry a patient (OpenAPI).
ETAG_HEADER: dict[str, Any] = {
    "ETag": {
        "description": "The patient's version; send it back as If-Match with a change.",
        "schema": {"type": "string"},
    }
}

PRECONDITION_FAILED = (
    "the patient was changed by someone else since you read it (If-Match does not match "
    "its ETag); read it again and reapply your change"
)


def patient_etag(record: PatientRecord) -> str:
    """The patient's strong entity tag (quoted, as the ``ETag`` header carries it)."""
    shown = presenters.patient(record, "", detail=True).model_dump_json()
    return f'"{hashlib.sha256(shown.encode()).hexdigest()[:32]}"'


def tag_patient(response: Response, record: PatientRecord) -> PatientRecord:
    """Put the patient's ``ETag`` on ``response``; returns the record for chaining."""
    response.headers["ETag"] = patient_etag(record)
    return record


def if_match_holds(header: str, etag: str) -> bool:
    """RFC 9110 ``If-Match``: ``*`` or a list naming ``etag``. The comparison is strong:
    a weak tag (``W/"..."``) never matches."""
    tags = entity_tags(header)
    return "*" in tags or etag in tags


def if_none_match_names(header: str, etag: str) -> bool:
    """RFC 9110 ``If-None-Match`` against the current ``etag``: whether it names it (or
    is ``*``), so that a read answers 304. The comparison is weak: ``W/"x"`` names
    ``"x"``."""
    tags = entity_tags(header)
    return "*" in tags or etag.removeprefix("W/") in (tag.removeprefix("W/") for tag in tags)


#: What :func:`patient_write` gives the service call: the ``If-Match`` check, for the
#: service to make on the patient as it is under the lock its change takes (None when
#: the request has no ``If-Match``).
Expectation = Callable[[PatientRecord], None] | None


@contextmanager
def patient_write(
    if_match: str | None, patients: PatientService, patient_id: str
) -> Iterator[Expectation]:
    """Around a request that changes the patient: 412 when its ``If-Match`` names
    another version than the stored one (404 when there is no such patient).

    The check is made before the change and made again by the service (pass on what
    this gives as its ``expect``) under the lock its transaction takes on the patient:
    the desktop window, the watch folder and the inference worker do not take this
    module's lock, and a result stored between the first check and the change would
    otherwise be changed (a verdict given on an analysis the client never read).

    Runs in the API's worker threads (the route functions are plain ``def``).
    """
    lock = _WRITE_LOCKS[hash(patient_id) % len(_WRITE_LOCKS)]
    with lock:
        if if_match is None:
            yield None
            return
        header = if_match

        def expect(record: PatientRecord) -> None:
            if not if_match_holds(header, patient_etag(record)):
                raise HTTPException(status_code=412, detail=PRECONDITION_FAILED)

        expect(patients.get_patient(patient_id))
        yield expect
