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

#: What FastAPI says of a body it could not decode (not UTF-8, nested too deeply), and
#: what we say instead.
FASTAPI_BODY_ERROR = "There was an error parsing the body"
UNREADABLE_BODY = (
    "the body could not be read: send JSON as UTF-8 text, nested no deeper than a few "
    "hundred levels"
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
