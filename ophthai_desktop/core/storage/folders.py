"""Why a folder the app keeps its data in cannot be made, in words a person can act on.

At start the app makes the data folder, the image store's folder and the database's; a
bare ``OSError`` would say "File exists" for a file in the way, or a link to a disk not
connected. These messages name the folder (a path of the app's, never a patient's) and
what is in the way.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ophthai_desktop.core.errors import NO_ROOM_ERRNOS, NoRoom, StorageError

#: The errors of an account that may not write where the folder goes.
NOT_ALLOWED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


def cannot_create(what: str, path: Path, exc: OSError, *, retried: bool = False) -> StorageError:
    """The error to raise where making ``path`` (``what``: "the data folder", say)
    failed with ``exc``: :class:`NoRoom` on a full disk, else :class:`StorageError`.
    ``retried``: the app tries again by itself (the watch folder), so a full disk's
    remedy does not ask for a new start."""
    said = f"cannot create {what} {path}"
    try:
        in_the_way = _in_the_way(path)
        where = _nearest_existing(path)
    except OSError:  # a parent this account may not even look into
        in_the_way, where = "", path.parent
    if in_the_way:
        return StorageError(f"{said}: {in_the_way}")
    if exc.errno in NO_ROOM_ERRNOS:
        then = "" if retried else ", then start OphthAI again"
        return NoRoom(f"{said}: the disk that holds {where} is full. Free space on it{then}.")
    if exc.errno in NOT_ALLOWED_ERRNOS:
        return StorageError(
            f"{said}: this account may not write in {where}. Choose a folder it may "
            "write in, or have it given the right."
        )
    if exc.errno == errno.EROFS:
        return StorageError(f"{said}: {where} is on a read-only disk.")
    return StorageError(f"{said}: {exc.strerror or exc}")


def not_writable(what: str, path: Path) -> StorageError | None:
    """The error to raise where this account may not write in the folder ``path``
    (``what``: "the data folder", say); None where it may."""
    if os.access(path, os.W_OK | os.X_OK):
        return None
    return StorageError(
        f"{what} {path} cannot be written by this account. Choose a folder it may write "
        "in, or have it given the right."
    )


def _in_the_way(path: Path) -> str:
    """What stands where ``path`` or one of its parents should be a folder: a file, or a
    link to something that is not there ("" where nothing does)."""
    for candidate in (path, *path.parents):
        if candidate.is_symlink() and not candidate.exists():
            return (
                f"{candidate} is a link to {os.readlink(candidate)}, which does not exist "
                "(a disk not connected?). Connect it, or remove the link."
            )
        if candidate.exists():
            if candidate.is_dir():
                return ""
            return f"{candidate} is a file, not a folder. Move it aside, or choose another folder."
    return ""


def _nearest_existing(path: Path) -> Path:
    """The nearest of ``path``'s parents that is there (``path`` itself if it is)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path
