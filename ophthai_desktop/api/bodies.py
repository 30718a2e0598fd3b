"""JSON request bodies are UTF-8 (RFC 8259 §8.1): what the API says of one it cannot read.

FastAPI decodes a JSON body with ``json.loads`` on its bytes, which guesses UTF-16 and
UTF-32 from a byte-order mark or from the pattern of zero bytes. A body in one of those
was therefore read (or, when the guess was wrong, refused as "not valid JSON", a 422),
while any other body that is not UTF-8 is a 400 saying what to send. Refusing them all
alike keeps one rule for clients: JSON as UTF-8 text. A UTF-8 byte-order mark, which
the RFC lets a parser ignore, is ignored.
"""

from __future__ import annotations

import email.message
import json

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: What FastAPI says of a body it could not decode (not UTF-8, nested too deeply), and
#: what we say instead.
FASTAPI_BODY_ERROR = "There was an error parsing the body"
UNREADABLE_BODY = (
    "the body could not be read: send JSON as UTF-8 text, nested no deeper than a few "
    "hundred levels"
)

#: What the API says when the server could not hold an upload's body while parsing it:
#: Starlette spools a multipart file past 1 MB to the temporary folder, and FastAPI
#: reported a full disk there as :data:`FASTAPI_BODY_ERROR`, blaming the client.
UPLOAD_NO_ROOM = (
    "the server ran out of room for the upload (its temporary folder is full); nothing "
    "was stored: free disk space on the server, then send it again"
)
UPLOAD_NOT_SPOOLED = (
    "the server could not hold the upload in its temporary folder; nothing was stored; "
    "see the application log"
)


#: What :func:`json.detect_encoding` calls UTF-8, with and without a byte-order mark.
UTF8 = frozenset({"utf-8", "utf-8-sig"})


def read_as_json(content_type: str | None) -> bool:
    """Whether FastAPI decodes a body sent with this ``Content-Type`` as JSON: none
    given, ``application/json`` or ``application/*+json``."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def refuse_json_not_in_utf8(request: Request) -> None:
    """A 400 for a JSON body in another encoding than UTF-8 (a UTF-16 or UTF-32 one,
    with or without a byte-order mark), before FastAPI would decode it.

    The body read here stays on the request, where FastAPI reads it again.
    """
    if not read_as_json(request.headers.get("content-type")):
        return
    body = await request.body()
    if body and json.detect_encoding(body) not in UTF8:
        raise HTTPException(status_code=400, detail=UNREADABLE_BODY)


#: What the API says of a multipart body that ended before its closing boundary.
MULTIPART_CUT_OFF = (
    "the upload is incomplete: its multipart body ended before the closing boundary "
    "(cut off on the way, or a Content-Length smaller than the body); nothing was "
    "stored, send it again"
)
MULTIPART_EMPTY = (
    "the multipart body is empty: send the form's fields (an upload's image in the "
    "field file), ended by the closing boundary"
)


def multipart_close(content_type: str | None) -> bytes | None:
    """The close delimiter (``--boundary--``) of a ``multipart/form-data`` body sent
    with this ``Content-Type``; None for another type, or one without a boundary (the
    form parser says that one)."""
    if not content_type:
        return None
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        return None
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        return None
    return b"--" + boundary.encode("latin-1", "replace") + b"--"


class MultipartCompleteness:
    """Refuses, with a 400 that says so, a ``multipart/form-data`` body that ends before
    its closing boundary (RFC 2046 §5.1.1).

    The form parser (python-multipart, under Starlette) stops where the body stops and
    hands over the parts it finished: a body cut off in transit, or sent with a
    ``Content-Length`` smaller than it, lost its last part (the image), and the route
    answered "file: Field required", blaming a field the client did send. The body's
    bytes pass through unchanged; the close delimiter is looked for as they go (a part
    cannot hold ``CRLF--boundary``, which would end it), and the last of them is
    answered with the 400 instead when it never came. Raised from the body's stream, it
    ends the form's parse before any route runs (the parser closes its spooled files),
    as :class:`~ophthai_desktop.api.security.BodySizeLimit`'s 413 does.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        close = multipart_close(Headers(scope=scope).get("content-type"))
        if close is None:
            await self.app(scope, receive, send)
            return
        delimiter = b"\r\n" + close
        tail = b"\r\n"  # the body may open with its close delimiter (an empty form)
        seen = False
        received = 0

        async def checking_receive() -> Message:
            nonlocal tail, seen, received
            message = await receive()
            if message["type"] != "http.request" or seen:
                return message
            chunk = message.get("body", b"")
            received += len(chunk)
            window = tail + chunk
            seen = delimiter in window
            tail = window[-(len(delimiter) - 1) :]
            if not seen and not message.get("more_body", False):
                raise HTTPException(
                    status_code=400, detail=MULTIPART_EMPTY if not received else MULTIPART_CUT_OFF
                )
            return message

        await self.app(scope, checking_receive, send)
