"""Page cursors: where a REST client's next page starts, as one opaque string.

A list answers a full page with the cursor of the page after it (``Link: <...>;
rel="next"`` and ``X-Next-Cursor``); a client sends it back as ``after``. The page then
starts after the last row the client holds, by its sort value and id
(:class:`~ophthai_desktop.core.paging.After`, as the window reads its pages), so rows
created or deleted between two requests never make a page skip or repeat one.

A cursor holds a small JSON object (the list, order and direction it was made for, a
digest of the filters, and the row's sort value and id: a patient's name, by name),
sealed with AES-GCM (:class:`CursorCipher`) under the data folder's key and written
base64url (unpadded): URLs land in browser histories and proxies' logs, which must not
read a patient's name, and a cursor altered by one bit no longer opens. One that cannot
be opened (altered, another data folder's, or made before the key was made again) or
was made for another list, order or filters, is refused with a 422 naming ``after``
rather than read as the first page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Query
from starlette.datastructures import URL

from ophthai_desktop.api.params import INTEGER_COLUMN_MAX
from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.paging import After
from ophthai_desktop.core.services.patient_fields import MAX_NAME_CHARS
from ophthai_desktop.core.storage.keys import read_or_create_key

#: The most bytes one character of a name takes in the name's sort key (``name_key``,
#: decomposed by ``text_sort_key``): U+FDFA, one sign, is a phrase of 18 Arabic letters
#: and spaces, 33 bytes. A Hangul syllable is three letters, 9 bytes.
KEY_BYTES_PER_NAME_CHAR = 33
#: The longest ``after`` taken: a cursor holds one sort value, at most a 200-character
#: name's key (6,600 bytes), with the rest of its JSON and the 28 bytes of its seal, in
#: base64url (4 characters for 3 bytes). At 2,048 a valid name's cursor was refused,
#: and no page after that patient could be read. Well within a request's 64 KB head.
MAX_CURSOR_CHARS = 4 * (MAX_NAME_CHARS * KEY_BYTES_PER_NAME_CHAR + 1024) // 3
#: AES-GCM's nonce (random for each cursor) and tag (what an alteration breaks).
NONCE_BYTES = 12
TAG_BYTES = 16
#: The widest whole number a cursor holds: every integer it sorts by (an age, a
#: workflow step, a notification's id) is an ``Integer`` column.
MAX_CURSOR_INT = INTEGER_COLUMN_MAX

NEXT_PAGE_HEADERS: dict[str, Any] = {
    "Link": {
        "description": (
            'The next page (RFC 8288 rel="next"): this request\'s URL with `after` set to '
            "the next page's cursor. Sent with a full page only: a shorter page is the last."
        ),
        "schema": {"type": "string"},
        "required": False,
    },
    "X-Next-Cursor": {
        "description": "The next page's cursor (send it as `after`); sent with Link.",
        "schema": {"type": "string"},
        "required": False,
    },
}

AFTER_DESCRIPTION = (
    "The cursor of the page before (its answer's X-Next-Cursor, or the after= of its "
    'Link rel="next"): the page starts after the last row that page held, whatever was '
    "created or deleted since. Send it with the same order and filters; skip then counts "
    "from the cursor."
)

#: The ``after`` query parameter of a list that pages by cursor.
AfterCursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        pattern=r"^[A-Za-z0-9_-]+$",  # base64url, unpadded
        description=AFTER_DESCRIPTION,
    ),
]

_STALE = (
    "send it with the order and filters of the page that gave it, or leave after out to "
    "start from the first page"
)
_UNREADABLE = (
    "this is not a page cursor of this server's (altered, another server's, or made before "
    "its key was made again): send the X-Next-Cursor of the page before as it came, or "
    "leave after out to start from the first page"
)


class CursorCipher:
    """Seals cursors with AES-GCM under the key in ``key_path`` (the data folder's),
    read, or made where missing or unreadable, on first use: cursors stay valid across
    a restart on the same data folder, and open on no other. Called on the API's
    threads."""

    def __init__(self, key_path: Path) -> None:
        self._key_path = key_path
        self._aead: AESGCM | None = None
        self._loading = threading.Lock()

    def seal(self, plain: bytes) -> str:
        """``plain`` unreadable and tamper-proof: base64url(nonce + ciphertext and tag)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._cipher().encrypt(nonce, plain, None)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, cursor: str) -> bytes:
        """What :meth:`seal` sealed; :class:`InvalidInput` (``after``) for a cursor that
        is not base64url, was altered, or was sealed under another key."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("too short to be sealed")
            return self._cipher().decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None)
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise InvalidInput(_UNREADABLE, field="after") from exc

    def _cipher(self) -> AESGCM:
        with self._loading:  # two first requests at once must not make two keys
            if self._aead is None:
                self._aead = AESGCM(read_or_create_key(self._key_path))
            return self._aead


@dataclass(frozen=True)
class Listing:
    """One list as a client asked for it: what its cursors are made for, and how its
    sort values read back (``value_type``: ``str``, ``int``, ``date`` or ``datetime``;
    None only where ``nullable``); ``cipher`` seals its cursors."""

    cipher: CursorCipher
    name: str
    order_by: str
    descending: bool
    value_type: type
    id_type: type
    nullable: bool = False
    filters: Mapping[str, Any] = field(default_factory=dict)

    def cursor(self, after: After) -> str:
        """The opaque cursor of the page that starts after ``after``."""
        payload = {
            "l": self.name,
            "o": self.order_by,
            "d": self.descending,
            "f": self._digest(),
            "v": _plain(after.value),
            "i": after.id,
        }
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return self.cipher.seal(text.encode())

    def after(self, cursor: str) -> After:
        """Where the page of ``cursor`` starts; :class:`InvalidInput` (``after``) for a
        cursor that cannot be read or was made for another list, order or filters."""
        payload = _payload(self.cipher.open(cursor))
        if payload.get("l") != self.name:
            raise InvalidInput(f"this cursor is not one of this list's; {_STALE}", field="after")
        if payload.get("o") != self.order_by or payload.get("d") is not self.descending:
            raise InvalidInput(
                f"this cursor was made for order_by={payload.get('o')} and "
                f"descending={str(payload.get('d')).lower()}, not order_by={self.order_by} "
                f"and descending={str(self.descending).lower()}; {_STALE}",
                field="after",
            )
        if payload.get("f") != self._digest():
            raise InvalidInput(f"this cursor was made for other filters; {_STALE}", field="after")
        if "v" not in payload or "i" not in payload:
            raise InvalidInput("this is not a page cursor", field="after")
        value = payload["v"]
        if value is None and not self.nullable:
            raise InvalidInput("this cursor's sort value is missing", field="after")
        return After(
            None if value is None else _read(value, self.value_type),
            _read(payload["i"], self.id_type),
        )

    def next_link(self, url: URL, after: After, query: Mapping[str, Any]) -> dict[str, str]:
        """The headers that give the next page: ``url`` with ``query`` (the order and
        filters as sent, ``after`` replaced) and the cursor on its own."""
        cursor = self.cursor(after)
        params = {k: _query_value(v) for k, v in query.items() if v is not None}
        next_url = url.replace(query=urlencode({**params, "after": cursor}))
        return {"Link": f'<{next_url}>; rel="next"', "X-Next-Cursor": cursor}

    def _digest(self) -> str:
        text = json.dumps(dict(self.filters), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _payload(plain: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(plain.decode())
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError
        raise InvalidInput(_UNREADABLE, field="after") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("this is not a page cursor", field="after")
    return payload


def _plain(value: Any) -> Any:
    """A sort value as JSON holds it; a date or time in ISO 8601, to the microsecond."""
    return value.isoformat() if isinstance(value, date) else value


def _read(value: Any, kind: type) -> Any:
    """A cursor's value as ``kind``; :class:`InvalidInput` where it is not one that
    the database takes (an integer past the columns' 32 bits, a time without its zone,
    text with a NUL or half a character)."""
    try:
        if kind is datetime and isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                return moment.astimezone(UTC)  # as stored: a zone may put it past year 9999
        elif kind is date and isinstance(value, str):
            return date.fromisoformat(value)
        elif kind is int and type(value) is int and -MAX_CURSOR_INT - 1 <= value <= MAX_CURSOR_INT:
            return value
        elif kind is str and isinstance(value, str) and "\x00" not in value:
            value.encode()  # a lone surrogate ("\\ud800") no database stores
            return value
    except (ValueError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidInput("this cursor's values cannot be read", field="after") from exc
    raise InvalidInput("this cursor's values cannot be read", field="after")


def _query_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
