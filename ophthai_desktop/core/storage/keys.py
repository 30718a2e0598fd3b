"""Secret keys kept in the data folder: what one seals (the API's page cursors) stays
readable across a restart of the app on the same folder, and no other folder's key
opens it."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from ophthai_desktop.core.storage.private import replace_private_file

log = logging.getLogger(__name__)

#: A key's length: 256 bits (AES-256).
KEY_BYTES = 32


def read_or_create_key(path: Path) -> bytes:
    """The key in ``path``: :data:`KEY_BYTES` random bytes, made there (readable by its
    owner only) where the file is missing or cannot be read as one; what the old key
    sealed then no longer opens.

    A new key that cannot be written (a read-only folder, a full disk) is still
    returned and serves this run only: what it seals no longer opens after a restart.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    except OSError as exc:
        log.warning("the key %s could not be read (%s): a new one is made", path.name, exc.strerror)
        key = b""
    if len(key) == KEY_BYTES:
        return key
    if key:
        log.warning("the key %s is not %d bytes long: a new one is made", path.name, KEY_BYTES)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        replace_private_file(path, key)
    except OSError as exc:
        log.warning(
            "the key %s could not be written (%s): it serves until the app stops",
            path.name,
            exc.strerror,
        )
    return key
