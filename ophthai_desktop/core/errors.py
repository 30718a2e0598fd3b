"""The one error tree of the core.

Adapters map these to what their user sees: the API to status codes (``api/errors.py``),
the GUI to a message a clinician can act on. Core code never raises HTTP errors.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class OphthaiError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(
        self, message: str, *, field: str | None = None, also: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        #: Other fields the problem is about (two that contradict each other).
        self.also = also


class NotFound(OphthaiError):
    """A record that was asked for does not exist."""


class InvalidInput(OphthaiError):
    """Input that a person can fix: a bad field value, an unreadable image."""


class UnsupportedMedia(InvalidInput):
    """Content that is not an image type we accept."""


class PayloadTooLarge(InvalidInput):
    """Content over a configured size limit."""


class Conflict(OphthaiError):
    """The operation does not fit the record's current state."""


class ModelUnavailable(OphthaiError):
    """The model is not installed, not loaded, or failed to load."""


class StorageError(OphthaiError):
    """The database or the image store failed (locked, disk full, unreachable).

    An environment failure, kept apart from bugs so it can be reported as such.
    """


class NoRoom(StorageError):
    """The disk that holds the data has no room left (full, or its quota spent): it stays
    so until someone frees space, so trying again soon does not help."""


class ImageStoreUnwritable(StorageError):
    """The image store cannot be written for another reason than a full disk (its folder
    made read-only, or given to another account): until someone fixes it."""

    def __init__(self, message: str, folder: str = "") -> None:
        super().__init__(message)
        #: The image store's folder ("" where not known).
        self.folder = folder

    @staticmethod
    def what_to_do(folder: str) -> str:
        """What fixes it, for a person: the image store's folder ``folder`` writable."""
        return f"make {folder} writable by the account running OphthAI"


#: The errors of a disk with no room left (a full disk, a user's quota spent).
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DatabaseUnavailable(StorageError):
    """The database does not answer (its server restarting or stopped, a locked or
    read-only SQLite file): the same call may well work in a few seconds."""

    MESSAGE = "the database is unavailable; try again shortly"
    #: The outage in a few words, and when what waits for it goes on: for the texts that
    #: say what waits (the watch folder's state, the job queue), one wording per kind.
    OUTAGE = "the database does not answer"
    UNTIL = "once it does"

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


class DatabaseFileGone(DatabaseUnavailable):
    """The SQLite file the app opened is no longer at its path (deleted, or another file
    put there) while the app runs: changes would go into the removed file and vanish at
    quit, so none is made until the app is started again (an outage that does not end:
    the watch folder's files wait in it, a finished analysis is held)."""

    OUTAGE = "the database file was deleted or replaced while OphthAI ran"
    UNTIL = "once the file is put back and OphthAI is started again"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"the database file {path} was deleted or replaced while OphthAI ran, so "
            "nothing can be saved: put the file back (or restore it from a backup), "
            "then quit OphthAI and start it again"
        )


class ChangeRolledBack(DatabaseUnavailable):
    """The database answers, but ended this change to let a conflicting one through (a
    PostgreSQL deadlock or serialisation failure, or a lock another connection held past
    the wait): not an outage, and the same call may well work at once (a 503 with
    Retry-After to a client, retried by the worker)."""


@contextmanager
def about_field(field: str | None) -> Iterator[None]:
    """Input errors raised inside that name no field name ``field`` (the request field
    an image came in, say), so the client is told which of its inputs to fix."""
    try:
        yield
    except InvalidInput as exc:
        exc.field = exc.field or field
        raise
