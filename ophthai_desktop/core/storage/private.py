"""Patient data at rest is readable by its owner only (POSIX modes; on Windows the
user's profile folder is what keeps it private).

The database holds names and birth dates: another account on the workstation must not
read it, whatever the umask. (The image store's files are owner-only as ``mkstemp``
makes them; the settings file, which can hold the API token, is written so too.)
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from ophthai_desktop.core.storage.folders import cannot_create, not_writable

log = logging.getLogger(__name__)

#: A folder this application creates for patient data.
PRIVATE_FOLDER_MODE = 0o700
#: The database file (and SQLite's -wal, -shm and -journal beside it).
PRIVATE_FILE_MODE = 0o600
#: What SQLite keeps beside the database file while it is open.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def create_private_folder(path: Path) -> None:
    """Create the data folder (and its parents) if missing, readable by its owner only.

    A folder that already exists keeps its mode: one chosen with ``OPHTHAI_DATA_DIR``
    may be shared on purpose (a watch folder inside it that a device's account writes).

    Raises:
        StorageError: It cannot be made (a file or a broken link in the way, no right
            to write in its parent, a read-only disk), or this account may not write in
            it; :class:`NoRoom` where its disk is full.
    """
    try:
        path.mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_create("the data folder", path, exc) from exc
    refused = not_writable("the data folder", path)
    if refused is not None:
        raise refused


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` as a new file at ``path``, readable by its owner only (0600, or
    less where the umask takes more away).

    Whatever is at ``path`` already is replaced, never written through: a file there
    would keep its own mode, and a link there would have its target overwritten.
    """
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(path, flags, PRIVATE_FILE_MODE), "wb") as handle:
        handle.write(data)


def replace_private_file(path: Path, data: bytes) -> None:
    """Replace the file at ``path`` with one holding ``data``, readable by its owner
    only, all at once: readers see the old file or the new one, never a part, and where
    the new one cannot be written whole (a full disk) the old one stays as it was.

    The new file is written under a name of its own chosen at random beside ``path``
    (created, never opened through a link left there), flushed to the disk, then renamed
    over ``path``; on failure it is removed.
    """
    fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp: 0600, O_EXCL
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def make_default_folder_private(path: Path) -> None:
    """Take group and others' access away from the default data folder that a version
    before 0700 folders created by the umask (usually 0755): the default watch folder
    inside it lists files named after patients. One that others may write into was
    shared on purpose (a device's account writing scans) and keeps its mode, as does a
    folder chosen with ``OPHTHAI_DATA_DIR`` (not passed here)."""
    if os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077 and not mode & 0o022:
            path.chmod(mode & ~0o077)
            log.info("data folder made readable by its owner only (it was %o)", mode)
    except OSError as exc:  # not ours to change (another account's folder)
        log.warning("the data folder could not be made private: %s", exc.strerror)


def make_database_private(database: Path) -> None:
    """Create the SQLite file owner-only before SQLite does (SQLite would follow the
    umask, usually 0644), or take group and others' access away from an existing one
    and its companions: SQLite gives new -wal and -shm files the database's mode.

    A link to a file not there yet has that file created owner-only (SQLite would
    create it through the link by the umask).

    Raises:
        StorageError: The file cannot be created (a folder this account may not write
            in, a link to a disk not connected, a read-only disk): SQLite is not left
            to try, since a file it did create would follow the umask.
            :class:`NoRoom` where the disk is full.
    """
    if os.name != "posix":
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
        return
    except FileExistsError:
        if database.is_symlink() and not database.exists():
            _create_through_link(database)
            return
    except OSError as exc:
        raise cannot_create("the database file", database, exc) from exc
    for path in (database, *(Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS)):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                path.chmod(mode & ~0o077)
        except FileNotFoundError:
            continue
        except OSError as exc:  # not ours to change (another account's file)
            log.warning("the database file could not be made private: %s", exc.strerror)


def _create_through_link(database: Path) -> None:
    """Create the file a link at ``database`` names, owner-only (without ``O_EXCL``,
    ``open`` follows the link)."""
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
    except OSError as exc:
        raise cannot_create("the database file", database, exc) from exc
