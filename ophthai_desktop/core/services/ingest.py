"""Taking image files in: one file becomes a scan with a queued analysis and a notification.

The watch folder (:class:`~ophthai_desktop.core.watcher.FolderWatcher`) calls
:meth:`IngestService.ingest_file` on its ingest threads once a file has stopped
changing. For one file:

1. Read it once: regular files only (a symbolic link is refused, never followed), within
   the size limit, and unchanged while it was read (else :class:`FileNotSettled`).
2. Hash it (SHA-256) once, and decode it with
   :func:`~ophthai_desktop.core.imaging.inspect_image`: the content decides, never the
   extension. A refused file goes to ``failed/`` with ``<name>.reason.txt`` beside it and
   an info notification. Otherwise its bytes go into the content-addressed image store.
3. One transaction: the patient (the one whose id starts the file name, as in
   ``pt-abc123def456_OD_macula.png``, or in demo mode a new patient with randomised
   details), the scan, the queued analysis, the notification and the ingest record.
   Bytes already taken in for a patient who still exists are a duplicate instead:
   recorded, notified, moved to ``processed/`` as ``<name> (duplicate)``. Files that
   several ingest threads have ready at the same moment share one transaction (a group
   commit), which is what keeps a burst of scans moving.
4. After the commit: publish the events, then move the file to ``processed/``.

A crash between 3 and 4 leaves the file where it was; the next start reads it again and
finds its bytes committed under its name before the file last changed, so it is only
moved (no second patient, no duplicate notification). A file that changes between 3 and
4 is left in place to be read again; if only its times changed (its writer set them
after closing it: ``shutil.copy2``, ``touch``), the same bytes and inode under the same
name tell it is the very file, and it is only moved too (in this process: after a
restart it is a duplicate, told). A refusal is recorded before its
move the same way, and found recorded after a crash between the two. A crash in the
middle of a move leaves an empty claim of the new name too, deleted at the next start
(:func:`remove_stale_claims`). Logs carry hashes and record ids, never file names (they
can hold a patient's name) or patient details, nor the text of an exception (an
``OSError`` names its file): :func:`safe_description` instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import logging
import os
import random
import re
import stat
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ophthai_desktop.core.domain import (
    JobPriority,
    Laterality,
    Modality,
    NotificationType,
    ScanSource,
    WorkflowStep,
    text_sort_key,
)
from ophthai_desktop.core.errors import (
    NO_ROOM_ERRNOS,
    DatabaseUnavailable,
    InvalidInput,
    NoRoom,
    NotFound,
    OphthaiError,
    PayloadTooLarge,
    StorageError,
)
from ophthai_desktop.core.events import (
    AnalysisQueued,
    Event,
    EventBus,
    IngestFinished,
    NotificationCreated,
    PatientCreated,
    PatientUpdated,
    ScanIngested,
)
from ophthai_desktop.core.imaging import ImageInfo, inspect_image, too_large_message
from ophthai_desktop.core.log_safety import patient_ref, safe_description
from ophthai_desktop.core.records import Actor, NotificationRecord
from ophthai_desktop.core.services.audit import AuditService
from ophthai_desktop.core.services.jobs import JobService
from ophthai_desktop.core.services.notifications import NotificationService
from ophthai_desktop.core.services.patient_fields import PATIENT_ID
from ophthai_desktop.core.services.patients import (
    ImageLimits,
    NewImage,
    PatientService,
    new_patient_id,
    new_patient_values,
)
from ophthai_desktop.core.storage import Database, ImageStore, StoredImage
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.private import write_private_file
from ophthai_desktop.core.storage.to_records import (
    notification_record,
    patient_record,
    scan_record,
)
from ophthai_desktop.core.units import local_time

log = logging.getLogger(__name__)

#: Who the audit trail names for what the watch folder does.
WATCHER_ACTOR = Actor(who="watch-folder", via="watcher")

PROCESSED_DIR = "processed"
FAILED_DIR = "failed"
REASON_SUFFIX = ".reason.txt"

SYMLINK_REASON = (
    "it is a symbolic link; links are not followed, because one could expose a file "
    "from outside the watch folder - copy the image itself into the folder"
)

#: How to retry, as a reason file ends: for most refusals the file is to be fixed; a
#: file over the size limit or naming a patient not on record is not, and the one who
#: reads the reason (an IT person, often) is told what to change instead. The reason, at
#: the top of the file, names the setting a limit comes from: said once.
RETRY_FIXED = (
    "To retry, fix it (or export it from the device again) and copy it into the watch folder again."
)
RETRY_LARGER = (
    "To take in files this large, raise the setting named above (a number of bytes, read "
    "when the app starts) and restart the app, then copy it into the watch folder again."
)
RETRY_PIXELS = (
    "To take in images this large, raise the setting named above (read when the app "
    "starts) and restart the app, then copy it into the watch folder again."
)
RETRY_NAMED = (
    "To retry, rename it to start with a patient's id and copy it into the watch folder again."
)
RETRY_LINK = (
    "To retry, copy the file the link points to into the watch folder (in a file manager, "
    "open the link's target and copy that file; in a terminal, cp -L copies what a link "
    "points to). A device or script that leaves links there must be set to copy the file "
    "itself. The link here can be deleted: the file it points to stays as it is."
)
#: Why a file this app's account may not read is refused, and how to retry: the account
#: that wrote it (a device's, a share's) gave no read permission to the app's, and
#: exporting the file again the same way would only be refused again.
UNREADABLE_REASON = (
    "the app's account is not allowed to read it (Permission denied): the device or share "
    "that wrote it gave it no read permission for this account"
)
RETRY_PERMISSION = (
    "To retry, let the app's account read it (give it read permission, or have the device "
    "or share write files that this account can read) and copy it into the watch folder again."
)
#: Why an entry of the folder that is no file of bytes (a named pipe, a socket, a
#: device) under an image's name is refused, and how to retry.
NOT_A_FILE_REASON = (
    "it is not a file of an image's bytes but a named pipe, a socket or a device (a program "
    "made it under an image's name)"
)
RETRY_NOT_A_FILE = (
    "To retry, have the device or program write the image itself as a file, then copy it "
    "into the watch folder again. This entry can be deleted."
)
RETRY_PATIENT = (
    "To retry, add the patient with this id (or rename the file to start with the id of "
    "a patient on record), then copy it into the watch folder again."
)


class IngestOutcome(StrEnum):
    INGESTED = "ingested"  # a new patient with the scan
    ATTACHED = "attached"  # a new scan of an existing patient
    DUPLICATE = "duplicate"  # bytes already taken in: nothing new
    FAILED = "failed"  # refused: moved to failed/ with the reason


class FileNotSettled(OphthaiError):
    """The file changed while it was read; try again once it has settled."""


class FileVanished(OphthaiError):
    """The file disappeared before it could be read (renamed or deleted)."""


class NoRoomToFile(NoRoom):
    """The watch folder's disk is full: a file taken in (or refused) cannot be moved to
    ``processed/`` or ``failed/`` (nor its reason written). It stays in the folder and
    is filed once there is room, without being recorded or told again (as after a
    crash before its move)."""


class _Rehearsal(Exception):
    """Rolls back the warm-up's transaction."""


class _Refused(Exception):
    def __init__(self, reason: str, size: int | None = None, retry: str = RETRY_FIXED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.size = size
        self.retry = retry


@dataclass(frozen=True)
class FolderLayout:
    """A watch folder and the two folders inside it that files are moved to."""

    root: Path
    processed: Path
    failed: Path

    @classmethod
    def under(cls, root: Path) -> FolderLayout:
        return cls(root, root / PROCESSED_DIR, root / FAILED_DIR)

    def ensure(self, *, create_root: bool = True) -> None:
        """Create the three folders where they are missing (``processed/`` and
        ``failed/`` only, when not ``create_root``). The root is made itself only,
        never the folders above it: the default one is in the data folder, which is made
        owner-only at start (by the umask, a data folder made here would be open to
        other accounts); where that went (moved, its disk unplugged), it is waited for.
        A missing root (or folder above it) raises :class:`FileNotFoundError`.

        Raises:
            NotADirectoryError: a file stands where one of them should be (its path in
                ``filename``).
        """
        if not create_root and not self.root.is_dir():
            if self.root.exists():  # a file where the folder should be: not a share
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(self.root))
            raise FileNotFoundError(errno.ENOENT, "the folder does not exist", str(self.root))
        self.root.mkdir(exist_ok=True)
        for folder in (self.processed, self.failed):
            make_filing_folder(folder)


def make_filing_folder(folder: Path) -> None:
    """Create ``processed/`` or ``failed/`` (``folder``) in the watch folder, with the
    watch folder's own permissions whatever the umask (POSIX): the files moved there
    are those that waited in the watch folder, under the same names, so whoever could
    list and read them there still can, and nobody else. (By the umask, usually 0755, a
    drop box others may write into but not list, 0733, let them list and read every
    patient's file once it was filed.) It is made owner-only first, and stays so where
    the watch folder's mode cannot be given to it. It takes the watch folder's group
    (one without setgid gives a new folder this account's group), or, where this account
    cannot give it that group, no group rights. A folder already there keeps its mode:
    an administrator may have set it."""
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        if folder.is_dir():
            return
        # A file (or a link to nothing) by that name: nothing could be filed there, so
        # the watch folder is not started and the scans wait where they are.
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder)) from None
    if os.name != "posix":
        return
    try:
        # The permission bits, with setgid (the share's group for what is filed) and
        # the sticky bit (nobody removes another's file); never setuid.
        watched = folder.parent.stat()
        mode = stat.S_IMODE(watched.st_mode) & 0o3777
        if folder.stat().st_gid != watched.st_gid:  # no setgid: this account's group
            try:
                os.chown(folder, -1, watched.st_gid)
            except OSError:  # not a member of the share's group: none gets its rights
                mode &= ~0o2070
        folder.chmod(mode)
    except OSError as exc:
        log.warning(
            "watch folder: %s/ is left readable by this account only: %s",
            folder.name,
            exc.strerror,
        )


@dataclass(frozen=True)
class FileStamp:
    """What tells whether a file changed: size, modification time and identity."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, result: os.stat_result) -> FileStamp:
        return cls(result.st_size, result.st_mtime_ns, result.st_ino)


@dataclass(frozen=True)
class IngestResult:
    """How one file was dealt with."""

    outcome: IngestOutcome
    file_name: str
    sha256: str | None
    patient_id: str | None = None
    scan_id: int | None = None
    job_id: int | None = None
    reason: str | None = None
    moved_to: Path | None = None  # None: it could not be moved (see the log)


@dataclass(frozen=True)
class _Known:
    """The earlier ingest of the same bytes."""

    outcome: str
    patient_id: str | None
    created_at: datetime
    original_name: str = ""
    scan_id: int | None = None
    job_id: int | None = None


@dataclass(frozen=True)
class _LeftInPlace:
    """A file this service took in (or told a duplicate of) and then left in the folder,
    because it changed between its read and its move: most often only its times, set by
    its writer after it closed it (``shutil.copy2``, ``touch``, sync tools). When it is
    taken again with the same bytes and the same inode it is that very file, and is only
    moved."""

    sha256: str
    inode: int
    scan_id: int | None  # the scan its bytes were taken in as
    duplicate: bool = False  # told as a duplicate (else: taken in under its name)

    def is_(self, sha256: str, stamp: FileStamp, known: _Known, name: str) -> bool:
        """Whether the file read now (``sha256``, ``stamp``, named ``name``), whose
        bytes are ``known``, is this one, as it was recorded then."""
        return (
            sha256 == self.sha256
            and stamp.inode == self.inode
            and known.scan_id == self.scan_id
            and (self.duplicate or known.original_name == name[:512])
        )


@dataclass(frozen=True)
class _Committed:
    """A file's patient, scan and job, committed; the events to publish."""

    outcome: IngestOutcome
    events: list[Event]
    patient_id: str
    scan_id: int
    job_id: int


@dataclass(eq=False)
class _Planned:
    """What the group commit writes for one file."""

    item: _Pending
    patient: m.Patient  # a new patient's (not in the session) or the attached one
    row: dict[str, Any] | None = None  # a new patient's column values (None: attached)
    fields: dict[str, Any] = field(default_factory=dict)  # what a new patient was given
    scan: dict[str, Any] = field(default_factory=dict)  # column values, then its id
    job_id: int = 0
    note: dict[str, Any] = field(default_factory=dict)

    @property
    def new(self) -> bool:
        return self.row is not None

    @property
    def outcome(self) -> IngestOutcome:
        return IngestOutcome.INGESTED if self.new else IngestOutcome.ATTACHED


#: Statements of the group commit, built once.
_KNOWN = select(
    m.IngestedFile.id,
    m.IngestedFile.sha256,
    m.IngestedFile.outcome,
    m.IngestedFile.patient_id,
    m.IngestedFile.created_at,
    m.IngestedFile.original_name,
    m.IngestedFile.scan_id,
    m.IngestedFile.job_id,
).where(m.IngestedFile.sha256.in_(bindparam("hashes", expanding=True)))
#: An earlier ingest record: id, sha256, outcome, patient_id, created_at, original_name,
#: scan_id, job_id.
_KnownRow = Row[int, str, str, str | None, datetime, str, int | None, int | None]
_INSERT_SCANS = insert(m.Scan).returning(m.Scan.id, sort_by_parameter_order=True)
_INSERT_JOBS = insert(m.Job).returning(m.Job.id, sort_by_parameter_order=True)
_INSERT_NOTES = insert(m.Notification).returning(m.Notification.id, sort_by_parameter_order=True)
_PATIENT_COLUMNS = tuple(column.key for column in m.Patient.__table__.columns)


def _record_values(
    name: str,
    size: int,
    outcome: IngestOutcome,
    reason: str | None,
    patient_id: str | None,
    scan_id: int | None,
    job_id: int | None,
    now: datetime,
) -> dict[str, Any]:
    """An ingest record's columns that every sighting of the file sets."""
    return {
        "original_name": name[:512],
        "size_bytes": size,
        "source": ScanSource.WATCH_FOLDER.value,
        "outcome": outcome.value,
        "reason": reason,
        "patient_id": patient_id,
        "scan_id": scan_id,
        "job_id": job_id,
        "last_seen_at": now,
    }


def _patient_row(patient_id: str, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Every column of a new patient: the rows of one multi-row ``INSERT`` share their
    keys."""
    row: dict[str, Any] = dict.fromkeys(_PATIENT_COLUMNS)
    row.update(symptoms=[], history="", created_at=now, updated_at=now)
    row.update(values)
    row["id"] = patient_id
    row["name_key"] = text_sort_key(row["name"])  # a Core insert: no ORM to set it
    return row


@dataclass(eq=False)
class _Pending:
    """A checked file whose image is in the store, waiting for the group commit."""

    name: str
    sha256: str
    size: int
    info: ImageInfo
    target_id: str | None
    actor: Actor
    #: Set by the group commit, under its lock (None: not committed yet).
    result: _Committed | _Known | BaseException | None = None


# Reading file names ----------------------------------------------------------------

_TOKENS = re.compile(r"[\W_]+")
_LATERALITY = {"OD": Laterality.OD, "OS": Laterality.OS, "OU": Laterality.OU}
_MODALITY = {"OCTA": Modality.OCTA, "OCT": Modality.OCT, "FUNDUS": Modality.FUNDUS}


def display_name(name: str) -> str:
    """``name`` as text that can be stored (undecodable bytes replaced); to put it in a
    message, :func:`shown_name`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


#: How :func:`shown_name` writes the control characters that have a short escape.
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _hidden(char: str) -> bool:
    """Whether ``char`` acts on the text around it rather than showing: a control
    character (an escape sequence's ESC, a line break, a NUL), a format character (a
    right-to-left override that shows ``gpj.exe`` as ``exe.jpg``, a zero-width space)
    or a line or paragraph separator."""
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def shown_name(name: str) -> str:
    """A file's ``name`` as a message shows it to a person (a notification, a reason, a
    status): as :func:`display_name`, with each control or format character written as
    its escape (``\\x1b``, ``\\n``, ``\\u202e``), so that a name cannot colour a
    terminal, break a line or turn the text around it. The file keeps its name."""
    text = display_name(name)
    if all(char.isprintable() for char in text):
        return text
    return "".join(_escaped(char) if _hidden(char) else char for char in text)


def patient_id_from_name(name: str) -> str | None:
    """The patient id that starts a file name (``<id>_...``), if it has one."""
    head, separator, _rest = name.partition("_")
    if separator and PATIENT_ID.fullmatch(head):
        return head
    return None


def scan_kind_from_name(name: str) -> tuple[Laterality, Modality]:
    """Laterality from ``OD``/``OS``/``OU`` and modality from ``OCTA``/``OCT``/``fundus``
    tokens of the name (case-insensitive); unknown when absent or contradictory."""
    tokens = {t.upper() for t in _TOKENS.split(Path(name).stem) if t}
    sides = {_LATERALITY[t] for t in tokens if t in _LATERALITY}
    kinds = {_MODALITY[t] for t in tokens if t in _MODALITY}
    laterality = sides.pop() if len(sides) == 1 else Laterality.UNKNOWN
    modality = kinds.pop() if len(kinds) == 1 else Modality.UNKNOWN
    return laterality, modality


# Demo patients ---------------------------------------------------------------------

#: First names by the sex the demo patient is given, so that the two agree.
_FIRST_NAMES = {
    "Female": (
        "Amelia", "Sofia", "Fatima", "Priya", "Chloe", "Ingrid", "Mei", "Aisha", "Elena",
        "Hannah", "Lucia", "Yara",
    ),
    "Male": (
        "Omar", "Kenji", "Lucas", "Mateo", "Tariq", "Samuel", "Jonas", "Daniel", "Kwame",
        "Ravi", "Noah", "Pierre",
    ),
}  # fmt: skip
_LAST_NAMES = (
    "Johnson", "Haddad", "Rossi", "Tanaka", "Okafor", "Martin", "Sharma", "Garcia",
    "Dubois", "Nielsen", "Kowalski", "Chen", "Schmidt", "Mensah", "Fischer", "Novak",
    "Silva", "Andersson", "Khan", "Moreau", "O'Brien", "Petrov", "Costa", "Lindqvist",
)  # fmt: skip
_SYMPTOMS = (
    "Blurred vision",
    "Distorted central vision",
    "Floaters",
    "Flashes of light",
    "Reduced night vision",
    "Gradual loss of peripheral vision",
    "Dark spot in central vision",
    "Difficulty reading",
    "Glare and halos around lights",
    "Eye pain",
    "Red eye",
    "Dry, gritty eyes",
    "Sudden vision loss in one eye",
    "Colours appear faded",
)
_HISTORIES = (
    "Type 2 diabetes for 12 years.",
    "Type 1 diabetes since childhood.",
    "Hypertension, treated.",
    "Family history of glaucoma.",
    "High myopia.",
    "Smoker, 20 pack-years.",
    "Cataract surgery in the right eye three years ago.",
    "No relevant medical history.",
)


def demo_patient_fields(rng: random.Random) -> dict[str, Any]:
    """Plausible, randomised details for a demo patient (the seed's dummy patients).

    The history says the details are made up, so nobody mistakes them for a person.
    """
    gender = rng.choice(("Male", "Female"))
    return {
        "name": f"{rng.choice(_FIRST_NAMES[gender])} {rng.choice(_LAST_NAMES)}",
        "age": rng.randint(28, 89),
        "gender": gender,
        "symptoms": rng.sample(_SYMPTOMS, rng.randint(1, 3)),
        "history": "Demo patient created from the watch folder with randomised details. "
        + rng.choice(_HISTORIES),
    }


# Moving files ----------------------------------------------------------------------


def _split_name(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return (stem, f".{ext}") if dot and stem else (name, "")


#: The longest file name, in bytes, that common file systems take (ext4, XFS, APFS;
#: NTFS counts 255 UTF-16 units, never more than the UTF-8 bytes).
NAME_MAX_BYTES = 255


#: The longest path, in UTF-16 units, that Windows programs take unless long paths are
#: turned on (MAX_PATH, 260 with the terminating NUL): a longer one cannot be moved to
#: (the file would be left in the watch folder) nor opened in Explorer and most device
#: software. None where paths have no such limit.
WINDOWS_MAX_PATH_CHARS: int | None = 259 if os.name == "nt" else None


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _fitted(stem: str, tail: str, max_bytes: int, max_units: int | None = None) -> str:
    """``stem + tail``, the stem shortened by whole characters until it fits in
    ``max_bytes`` bytes (and ``max_units`` UTF-16 units, where given)."""

    def too_long(name: str) -> bool:
        if len(os.fsencode(name)) > max_bytes:
            return True
        return max_units is not None and _utf16_units(name) > max_units

    while len(stem) > 1 and too_long(stem + tail):
        stem = stem[:-1]
    return stem + tail


#: The permission bits of a name claimed for a file being moved in (see
#: :func:`move_without_overwrite`): none. An empty file without permissions that the
#: app's account owns is nothing the watch folder files (a refused empty file keeps the
#: mode it had, except that one of the app's without any is given its owner's read:
#: :func:`_unlike_a_claim`), so a claim that a crash left behind is told apart at the
#: next start.
CLAIM_MODE = 0o000


def move_without_overwrite(
    path: Path,
    folder: Path,
    name: str,
    *,
    tag: str = "",
    room_bytes: int = 0,
    beside: Callable[[Path], Path | None] | None = None,
) -> Path:
    """Move ``path`` into ``folder`` as ``name``, or ``name (1)``, ``name (2)``... when
    taken; an existing file is never replaced.

    ``tag`` goes after the stem (``" (duplicate)"``). A name that would be too long for
    the file system (or, on Windows, make the path longer than
    :data:`WINDOWS_MAX_PATH_CHARS`) has its stem shortened, leaving ``room_bytes`` free
    for an ASCII suffix the caller adds beside it (the reason file's).

    On POSIX the name is claimed first (created exclusively, empty, with
    :data:`CLAIM_MODE`) and the file renamed over the claim; a crash between the two
    leaves the claim, which :func:`remove_stale_claims` deletes at the next start (the
    file itself is still where it was). Windows' rename refuses an existing name by
    itself.

    ``beside``: writes a file beside the one moved, given its new name, and returns the
    file written (None: none). On POSIX it runs after the claim and before the move: a
    crash between the two leaves the claim, which :func:`remove_stale_claims` deletes
    with what was written beside it, and the file is taken in again; a crash after the
    move finds both in place (the other order left a refused file in ``failed/``
    without its reason, or with half of it). On Windows it runs after the move.
    """
    stem, ext = _split_name(name)
    max_bytes = NAME_MAX_BYTES - room_bytes
    max_units = None
    if WINDOWS_MAX_PATH_CHARS is not None:  # the folder, a separator, the name, the suffix
        max_units = WINDOWS_MAX_PATH_CHARS - _utf16_units(str(folder)) - 1 - room_bytes
    for n in range(10_000):
        tail = f"{tag}{ext}" if n == 0 else f"{tag} ({n}){ext}"
        target = folder / _fitted(stem, tail, max_bytes, max_units)
        if os.name == "nt":
            try:
                os.rename(path, target)
            except FileExistsError:
                continue
            if beside is not None:
                beside(target)
            return target
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CLAIM_MODE)
        except FileExistsError:
            continue
        os.close(fd)
        written: Path | None = None
        try:
            if beside is not None:
                written = beside(target)
            os.replace(path, target)
        except BaseException:
            target.unlink(missing_ok=True)
            if written is not None:
                written.unlink(missing_ok=True)
            raise
        return target
    raise OSError(errno.EEXIST, "no free name", str(folder / name))


def _is_stale_claim(info: os.stat_result, folder_is_processed: bool) -> bool:
    if not stat.S_ISREG(info.st_mode) or info.st_size != 0:
        return False
    # Nothing empty is ever taken in, so an empty file in processed/ is a claim (one
    # left by a version that claimed names readable by their owner, too). In failed/,
    # where refused empty files go, only one of the app's own without permissions is.
    return folder_is_processed or (
        stat.S_IMODE(info.st_mode) == CLAIM_MODE and _owned_by_this_account(info)
    )


def _owned_by_this_account(info: os.stat_result) -> bool:
    """Whether the app's account owns the file (on Windows, which has no owner ids,
    any file)."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid is None or info.st_uid == geteuid()


def _unlike_a_claim(path: Path) -> None:
    """Give ``path``, about to be refused, its owner's read permission where it is an
    empty file of the app's own without any: filed so in ``failed/``, it would be taken
    for a name claim left by a crash and deleted (with its reason file) at the next
    start. Done before the refusal is recorded, so that after a crash before its move
    the file is still the one recorded (its change time earlier than the record)."""
    try:
        info = os.lstat(path)
        if (
            stat.S_ISREG(info.st_mode)
            and info.st_size == 0
            and stat.S_IMODE(info.st_mode) == CLAIM_MODE
            and _owned_by_this_account(info)
        ):
            os.chmod(path, stat.S_IRUSR)
    except OSError as exc:
        log.warning(
            "watch folder: cannot give an empty refused file a permission: %s", exc.strerror
        )


def remove_stale_claims(layout: FolderLayout) -> int:
    """Delete the claims a crash left in ``processed/`` and ``failed/`` (see
    :func:`move_without_overwrite`); the number deleted.

    Call it only while no file is being moved into them (the watcher's start). The
    files the claims were made for are still in the watch folder and are taken in again:
    each ends up in the folder it was going to, under its name. A claim's reason file
    (written before the move, perhaps in part) goes with it: the file's next refusal
    writes it again.
    """
    removed = 0
    for folder in (layout.processed, layout.failed):
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
        except OSError as exc:
            log.warning("watch folder: cannot list %s/: %s", folder.name, exc.strerror)
            continue
        for entry in found:
            try:
                if _is_stale_claim(entry.stat(follow_symlinks=False), folder == layout.processed):
                    os.unlink(entry.path)
                    removed += 1
                    if folder == layout.failed:
                        Path(entry.path + REASON_SUFFIX).unlink(missing_ok=True)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("watch folder: cannot delete a stale name claim: %s", exc.strerror)
    if removed:
        log.info("watch folder: deleted %d empty name claims left by a crash", removed)
    return removed


def _unchanged(path: Path, stamp: FileStamp) -> bool:
    try:
        return FileStamp.of(os.lstat(path)) == stamp
    except OSError:
        return False


def _ensure_unchanged(path: Path, stamp: FileStamp) -> None:
    """Raise :class:`FileNotSettled` when the file changed since it was read."""
    if not _unchanged(path, stamp):
        raise FileNotSettled("the file changed after it was read")


#: Whether ``os.stat``'s ``st_ctime`` is the inode's change time, which a rename sets.
#: On Windows it is the file's creation time, which a move keeps: a file taken in, then
#: moved back from ``processed/`` (or moved in from elsewhere on the volume) under its
#: name, would look like the one a crash left and be filed with nobody told.
CHANGE_TIME_IS_KNOWN = os.name != "nt"


def _left_by_a_crash(path: Path, name: str, recorded_name: str, recorded_at: datetime) -> bool:
    """Whether ``path`` is the very file whose ingest record (of its bytes, under
    ``recorded_name``) was written at ``recorded_at``, left in the folder by a crash
    before its move, rather than a copy of it that came later.

    The name is the same, and the file's inode has not changed since before the record:
    its change time (``st_ctime``), which a copy, a rename into the folder or a link
    sets to the moment it happens and which no tool can set back (unlike the
    modification time, which ``cp -p`` and rsync keep), is earlier. A file system whose
    clock is not the app's (a network share) can make a later copy look older by the
    difference; such a copy is filed without its "already taken in" message. Where the
    change time is not known (:data:`CHANGE_TIME_IS_KNOWN`: Windows), never: the file is
    a duplicate, or refused again, and told so (after a crash, a second message).
    """
    if not CHANGE_TIME_IS_KNOWN or name[:512] != recorded_name:
        return False
    try:
        changed_ns = os.lstat(path).st_ctime_ns
    except OSError:
        return False
    return changed_ns < int(recorded_at.timestamp() * 1_000_000) * 1_000


#: Windows' errors for a file another program holds: opened without sharing it for
#: reading (ERROR_SHARING_VIOLATION), or a range of it locked (ERROR_LOCK_VIOLATION).
#: The writer still has it: it is read again once it settles, not refused.
IN_USE_WINERRORS = frozenset({32, 33})


def _in_use_elsewhere(exc: OSError) -> bool:
    """Whether ``exc`` says another program has the file open (Windows only: POSIX
    never refuses a read for that)."""
    return getattr(exc, "winerror", None) in IN_USE_WINERRORS


def _unread_record_key(path: Path) -> str | None:
    """The key of the ingest record of a file refused before its bytes could be read (a
    link, a FIFO, a file too large), in place of their hash: one of its device and inode,
    never of its name. As for read files, the very file a crash left before its move is
    then told by its name and its change time (:func:`_left_by_a_crash`). None where it
    is gone."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return hashlib.sha256(f"not read: {info.st_dev} {info.st_ino}".encode()).hexdigest()


# The service -----------------------------------------------------------------------


class IngestService:
    """Turns settled image files into patients, scans, analyses and notifications.

    Methods run on the watcher's ingest threads (several at once); each opens its own
    short sessions.
    """

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        patients: PatientService,
        images: ImageStore,
        limits: ImageLimits,
        *,
        demo_mode: bool = True,
        rng: random.Random | None = None,
        preparing_at_once: int | None = None,
    ) -> None:
        self._db = db
        self._bus = bus
        self._patients = patients
        self._images = images
        self._limits = limits
        self.demo_mode = demo_mode
        self._rng = rng or random.Random()
        self._commit_lock = threading.Lock()  # one ingest transaction at a time
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []  # files waiting for the group commit
        # Reading, hashing, checking and storing a file is CPU work: a few files at once
        # (about one per core) keep the processors busy, and more would only slow each
        # other down. Files past that wait here, while those read so far wait for the
        # group commit without holding a place, so a burst's batches grow with it.
        at_once = preparing_at_once or min(8, max(2, (os.cpu_count() or 2) + 1))
        self._preparing = threading.BoundedSemaphore(at_once)
        # Files taken in and left in the folder because they changed before their move,
        # by path, until they are taken again (in this process only: see _LeftInPlace).
        self._left_lock = threading.Lock()
        self._left: dict[Path, _LeftInPlace] = {}
        # Files that a full watch-folder disk keeps from processed/ or failed/
        # (NoRoomToFile), by path: said once, not at each try until there is room.
        self._waiting_for_room: set[Path] = set()

    def ingest_file(
        self,
        path: Path,
        folder: FolderLayout,
        *,
        expected: FileStamp | None = None,
        actor: Actor = WATCHER_ACTOR,
        abandon: threading.Event | None = None,
    ) -> IngestResult:
        """Take in one file of ``folder`` and move it to ``processed/`` or ``failed/``.

        Args:
            path: The file, directly inside ``folder.root``.
            folder: Where processed and refused files go.
            expected: The stamp the caller saw when it judged the file settled; a
                different one means it is still being written.
            actor: Who the audit trail names.
            abandon: Set when the caller is stopping or pausing: a file still waiting
                for its turn to be read is then left as it is (:class:`FileNotSettled`).

        Raises:
            FileNotSettled: The file changed since ``expected`` or while being read, or
                ``abandon`` was set before it was read.
            FileVanished: It was gone before it could be read.
            StorageError: The database or the image store failed; the file stays.
        """
        staged: Path | None = None
        # The stored image is pinned until its scan is committed: a patient deleted
        # meanwhile whose scan had the same bytes does not take the file with them.
        with contextlib.ExitStack() as keep:
            try:
                with self._preparing:
                    if abandon is not None and abandon.is_set():
                        raise FileNotSettled("not read: the watcher is stopping or paused")
                    data, stamp, staged = self._read(path, expected)
                    size = len(data)
                    sha256 = hashlib.sha256(data).hexdigest()
                    info, reason, retry = self._check(data, path.name)
                    if info is not None:
                        keep.enter_context(self._images.pinned(sha256))
                    stored = None if info is None else self._store(data, sha256, staged)
                    del data  # not held while waiting for the commit (up to the size limit)
            except _Refused as refused:
                return self._refuse(
                    path,
                    folder,
                    refused.reason,
                    sha256=None,
                    size=refused.size,
                    retry=refused.retry,
                )
            finally:
                if staged is not None and staged.exists():  # not kept: refused, failed...
                    self._images.drop_staged(staged)
            if info is None or stored is None:
                _ensure_unchanged(path, stamp)  # a refusal is final: be sure it was complete
                return self._refuse(path, folder, reason, sha256=sha256, size=size, retry=retry)
            return self._take_in(path, folder, sha256, size, info, stored, stamp, actor)

    def _store(self, data: bytes, sha256: str, staged: Path | None) -> StoredImage:
        """The checked bytes into the image store (the staged copy, where there is one).

        Stored before the transaction so the database's write lock is held briefly; the
        store is content-addressed, so a rollback only leaves an unused file. It is
        flushed to disk after the commit and before the source file is moved: the source
        stays the copy of record until then, and the patient appears sooner.
        """
        if staged is not None:
            return self._images.keep_staged(staged, sha256)
        return self._images.put(data, sha256=sha256, sync=False)

    def _take_in(
        self,
        path: Path,
        folder: FolderLayout,
        sha256: str,
        size: int,
        info: ImageInfo,
        stored: StoredImage,
        stamp: FileStamp,
        actor: Actor,
    ) -> IngestResult:
        """Commit a checked, stored file (with whatever else is ready), then publish its
        events, flush its stored copy and move it to ``processed/``."""
        name = display_name(path.name)
        item = _Pending(
            name=name,
            sha256=sha256,
            size=size,
            info=info,
            target_id=patient_id_from_name(path.name),
            actor=actor,
        )
        try:
            done = self._commit_grouped(item)
        except IntegrityError as exc:
            # Another ingest committed the same bytes first.
            known = self._find(sha256)
            if known is None:
                raise StorageError("could not record the ingested file") from exc
            return self._duplicate(path, folder, sha256, known, stamp)
        except NotFound as exc:
            _ensure_unchanged(path, stamp)
            # The reason quotes the start of the file name, which may be a name.
            logged = "no patient has the id that starts the file name"
            return self._refuse(
                path,
                folder,
                exc.message,
                sha256=sha256,
                size=size,
                logged=logged,
                retry=RETRY_PATIENT,
            )
        left = self._left_here(path)
        if isinstance(done, _Known):
            if stored.created:  # the store had lost its copy (a crash before the flush)
                self._images.sync(sha256)  # on disk before the source moves away
            if left is not None and left.is_(sha256, stamp, done, name):
                if left.duplicate:
                    return self._duplicate(path, folder, sha256, done, stamp, told=True)
                return self._file_taken_in(path, folder, sha256, done, stamp, restamped=True)
            if _left_by_a_crash(path, name, done.original_name, done.created_at):
                return self._file_taken_in(path, folder, sha256, done, stamp)
            return self._duplicate(path, folder, sha256, done, stamp)
        for event in done.events:
            self._bus.publish(event)
        log.info(
            "watch folder: %s… %s patient %s (scan %d, job %d)",
            sha256[:12],
            "created" if done.outcome is IngestOutcome.INGESTED else "added a scan to",
            patient_ref(done.patient_id),
            done.scan_id,
            done.job_id,
        )
        moved = None
        if stored.created:
            self._images.sync(sha256)  # a StorageError leaves the source in place
        if _unchanged(path, stamp):
            moved = self._move(path, folder.processed, sha256)
        else:  # changed since we read it: left in place, to be taken in as it is now
            self._left_changed(path, _LeftInPlace(sha256, stamp.inode, done.scan_id))
        return self._finish(
            IngestResult(
                done.outcome,
                name,
                sha256,
                done.patient_id,
                done.scan_id,
                done.job_id,
                None,
                moved,
            )
        )

    def warm_up(self) -> None:
        """Pay now, before any file arrives, what the first file would pay: the image
        decoders' imports, the mappers' set-up and the group commit's statements
        compiled (written for a made-up file in a transaction that is rolled back).

        Without it a burst's first file takes ~0.2 s and every file behind it waits.
        Best effort: a failure is logged and the first file pays instead. The rehearsal
        runs on SQLite only: on PostgreSQL a rollback does not give back the ids it drew,
        and a gap in the audit trail's ids would look like a deleted entry.
        """
        from PIL import Image

        limits = self._limits
        try:
            for fmt in ("JPEG", "PNG"):
                buffer = io.BytesIO()
                Image.new("L", (8, 8)).save(buffer, fmt)
                info = inspect_image(
                    buffer.getvalue(), max_bytes=limits.max_bytes, max_pixels=limits.max_pixels
                )
            if not self._db.is_sqlite:
                return
            rehearsal = _Pending(
                name="warm-up.png",
                sha256=hashlib.sha256(os.urandom(32)).hexdigest(),
                size=info.size_bytes,
                info=info,
                target_id=None,
                actor=WATCHER_ACTOR,
            )
            # Under the commit lock, where every real draw of demo details is made: the
            # made-up patient's draws are given back before any real file's.
            with self._commit_lock:
                state = self._rng.getstate()
                try:
                    with contextlib.suppress(_Rehearsal):
                        self._commit_batch([rehearsal], rehearse=True)
                finally:
                    self._rng.setstate(state)
        except (DatabaseUnavailable, NoRoom):
            pass  # said by the database's own log; the first file finds it again
        except Exception as exc:
            log.warning(
                "watch folder: warming up the ingest path failed: %s", safe_description(exc)
            )

    # Steps ------------------------------------------------------------------------

    def _check(self, data: bytes, file_name: str) -> tuple[ImageInfo | None, str, str]:
        """Decode the image (the content decides) and check the name can be filed:
        the image's description, or None, why it is refused and how to retry."""
        try:
            info = inspect_image(
                data, max_bytes=self._limits.max_bytes, max_pixels=self._limits.max_pixels
            )
        except PayloadTooLarge as exc:  # over the pixels (the bytes were checked on reading)
            return None, exc.message, RETRY_PIXELS
        except InvalidInput as exc:
            return None, exc.message, RETRY_FIXED
        except Exception as exc:  # a decoder's surprise on a hostile file is a refusal
            # Logged with the refusal, once recorded: not here, at each try while the
            # database cannot record it.
            return None, f"the image could not be decoded ({type(exc).__name__})", RETRY_FIXED
        if not self.demo_mode and patient_id_from_name(file_name) is None:
            return (
                None,
                "no patient id in the file name (name files <patient id>_..., e.g. "
                "pt-abc123def456_OD_macula.png, or turn on the watch folder's demo mode)",
                RETRY_NAMED,
            )
        return info, "", ""

    def _read(self, path: Path, expected: FileStamp | None) -> tuple[bytes, FileStamp, Path | None]:
        """The file's bytes, read once, its stamp, and the store's staged copy of them
        (None where there is none: :meth:`ImageStore.put` stores them); or why it is
        refused."""
        try:
            before = os.lstat(path)
        except FileNotFoundError as exc:
            raise FileVanished("the file is gone") from exc
        if stat.S_ISLNK(before.st_mode):
            raise _Refused(SYMLINK_REASON, retry=RETRY_LINK)
        if not stat.S_ISREG(before.st_mode):
            raise _Refused(NOT_A_FILE_REASON, retry=RETRY_NOT_A_FILE)
        if expected is not None and FileStamp.of(before) != expected:
            raise FileNotSettled("the file changed after it settled")
        limit = self._limits.max_bytes
        if before.st_size > limit:
            raise _Refused(too_large_message(before.st_size, limit), before.st_size, RETRY_LARGER)
        flags = (
            os.O_RDONLY
            | getattr(os, "O_NOFOLLOW", 0)  # swapped for a link since lstat: refuse
            | getattr(os, "O_NONBLOCK", 0)  # never hang on a FIFO swapped in
            | getattr(os, "O_BINARY", 0)
        )
        try:
            fd = os.open(path, flags)
        except FileNotFoundError as exc:
            raise FileVanished("the file is gone") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Refused(SYMLINK_REASON, retry=RETRY_LINK) from exc
            if _in_use_elsewhere(exc):
                raise FileNotSettled("the file is open in another program") from exc
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise _Refused(UNREADABLE_REASON, retry=RETRY_PERMISSION) from exc
            raise _Refused(f"it cannot be read ({exc.strerror})") from exc
        staged: Path | None = None
        try:
            with os.fdopen(fd, "rb") as handle:
                opened = os.fstat(handle.fileno())
                if not stat.S_ISREG(opened.st_mode):
                    raise _Refused(NOT_A_FILE_REASON, retry=RETRY_NOT_A_FILE)
                # Copied into the store by the kernel and read back from the copy, or
                # read here (and written by put() later) where the kernel cannot copy.
                staged = self._images.stage_copy(handle.fileno(), min(opened.st_size, limit))
                if staged is not None:
                    data = staged.read_bytes()
                else:
                    data = handle.read(min(opened.st_size, limit) + 1)  # +1: did it grow?
                after = os.fstat(handle.fileno())
            if FileStamp.of(after) != FileStamp.of(before) or len(data) != after.st_size:
                raise FileNotSettled("the file changed while it was read")
            if len(data) > limit:
                raise _Refused(too_large_message(None, limit), len(data), RETRY_LARGER)
        except OSError as exc:
            if staged is not None:
                self._images.drop_staged(staged)
            if _in_use_elsewhere(exc):
                raise FileNotSettled("the file is locked by another program") from exc
            raise _Refused(f"it cannot be read ({exc.strerror})") from exc
        except BaseException:
            if staged is not None:
                self._images.drop_staged(staged)
            raise
        return data, FileStamp.of(before), staged

    def _find(self, sha256: str) -> _Known | None:
        with self._db.session() as session:
            row = self._record_of(session, sha256)
            if row is None:
                return None
            return _Known(
                row.outcome,
                row.patient_id,
                row.created_at,
                row.original_name,
                row.scan_id,
                row.job_id,
            )

    def _commit_grouped(self, item: _Pending) -> _Committed | _Known:
        """Commit ``item`` together with the files other ingest threads have waiting.

        Group commit: whoever takes the commit lock commits everything queued so far in
        one transaction, and the threads whose files it took find them done when the
        lock comes to them. In a burst each transaction carries several files; alone,
        a file is committed at once. SQLite has a single writer anyway, and a thread
        waiting on this lock wakes the moment it is free, where one waiting in SQLite's
        busy handler sleeps in growing steps.

        Raises what committing this file raised (``NotFound``: its patient is gone).
        """
        with self._queue_lock:
            self._queue.append(item)
        with self._commit_lock:
            if item.result is None:  # no earlier holder of the lock took it
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit_each_or_all(batch)
        if isinstance(item.result, BaseException):
            raise item.result
        assert item.result is not None
        return item.result

    def _commit_each_or_all(self, batch: list[_Pending]) -> None:
        """One transaction for ``batch``; if it fails, one per file, so that one bad
        file (a patient deleted meanwhile, a race on its hash) fails alone."""
        try:
            try:
                self._commit_batch(batch)
                return
            except Exception as exc:
                if len(batch) == 1:
                    batch[0].result = exc
                    return
            for item in batch:
                item.result = None  # what the failed transaction decided does not stand
                try:
                    self._commit_batch([item])
                except Exception as exc:
                    item.result = exc
        finally:
            for item in batch:
                if item.result is None:
                    item.result = StorageError("the file was not committed")

    def _commit_batch(self, batch: list[_Pending], *, rehearse: bool = False) -> None:
        """Patients, scans, queued analyses, notifications and ingest records of
        ``batch`` in one transaction; sets each item's result (the events to publish
        after the commit, or the earlier ingest of the same bytes).

        The rows are written with one multi-row ``INSERT`` per table (ids come back
        with ``RETURNING``), not through the ORM's unit of work: in a burst this
        transaction is what every file waits for, and the ORM's bookkeeping cost three
        times the statements themselves. The records in the events are made from the
        very values inserted. ``rehearse``: roll everything back (raises
        :class:`_Rehearsal`).
        """
        now = m.utcnow()
        planned: list[_Planned] = []
        first_of: dict[str, _Pending] = {}
        with self._db.session() as session:
            connection = session.connection()
            records = {
                row.sha256: row
                for row in connection.execute(_KNOWN, {"hashes": [i.sha256 for i in batch]})
            }
            # Locked, as every change to a patient locks them: one deleted meanwhile is
            # either attached to first (and its scan goes with them) or not found.
            target_ids = {item.target_id for item in batch if item.target_id}
            targets = {row.id: row for row in PatientService.lock_all_in(session, target_ids)}
            for item in batch:
                record = records.get(item.sha256)
                if record is not None and record.outcome != IngestOutcome.FAILED:
                    item.result = _Known(
                        record.outcome,
                        record.patient_id,
                        record.created_at,
                        record.original_name,
                        record.scan_id,
                        record.job_id,
                    )
                    continue
                if item.sha256 in first_of:
                    continue  # the same bytes twice in one batch: a duplicate of the first
                existing = targets.get(item.target_id) if item.target_id else None
                if existing is None and item.target_id is not None and not self.demo_mode:
                    item.result = NotFound(
                        f"no patient has the id {item.target_id} that starts the file name"
                    )
                    continue
                laterality, modality = scan_kind_from_name(item.name)
                image = NewImage(
                    b"",  # already in the store
                    source=ScanSource.WATCH_FOLDER,
                    modality=modality,
                    laterality=laterality,
                    filename=item.name,
                )
                if existing is None:
                    values = new_patient_values(demo_patient_fields(self._rng))
                    row = _patient_row(new_patient_id(), values, now)
                    planned.append(_Planned(item, m.Patient(**row), row, values))
                else:
                    existing.workflow_step = int(WorkflowStep.ANALYSIS)
                    existing.updated_at = now
                    planned.append(_Planned(item, existing))
                planned[-1].scan = PatientService.scan_values(
                    planned[-1].patient.id, image, item.info, item.sha256, now=now
                )
                first_of[item.sha256] = item
            if not planned:
                return
            self._insert_planned(session, connection, planned, records, now)
            # Records as every reader sees them: a new patient has just this scan and
            # nothing else; an existing one is read back (counts, oculomics...).
            attached = {p.patient.id: p.patient for p in planned if not p.new}
            patient_records = {
                r.id: r for r in PatientService.records_in(session, list(attached.values()))
            }
            for plan in planned:
                scan_seen = scan_record(m.Scan(**plan.scan))
                seen = patient_records.get(plan.patient.id) or patient_record(
                    plan.patient, latest_scan=scan_seen, scan_count=1
                )
                changed: Event = PatientCreated(seen) if plan.new else PatientUpdated(seen)
                plan.item.result = _Committed(
                    plan.outcome,
                    [
                        changed,
                        ScanIngested(scan_seen),
                        AnalysisQueued(
                            plan.job_id,
                            plan.patient.id,
                            plan.scan["id"],
                            priority=JobPriority.BACKGROUND,
                            created_at=now,  # as the job's row says
                        ),
                        NotificationCreated(notification_record(m.Notification(**plan.note))),
                    ],
                    plan.patient.id,
                    plan.scan["id"],
                    plan.job_id,
                )
            if rehearse:
                raise _Rehearsal
        # After the commit: later copies of bytes this batch took in are duplicates.
        for item in batch:
            first = first_of.get(item.sha256)
            if item.result is None and first is not None and isinstance(first.result, _Committed):
                done = first.result
                item.result = _Known(
                    done.outcome, done.patient_id, m.utcnow(), first.name, done.scan_id, done.job_id
                )

    def _insert_planned(
        self,
        session: Session,
        connection: Connection,
        planned: list[_Planned],
        records: dict[str, _KnownRow],
        now: datetime,
    ) -> None:
        """The rows of ``planned``: one multi-row ``INSERT`` per table; sets each
        plan's scan id, job id and notification values."""
        new_patients = [p.row for p in planned if p.row is not None]
        if new_patients:
            connection.execute(insert(m.Patient), new_patients)
        session.flush()  # an attached patient's step, before its new scan refers to it
        scan_ids = connection.execute(_INSERT_SCANS, [p.scan for p in planned]).scalars().all()
        jobs = []
        for plan, scan_id in zip(planned, scan_ids, strict=True):
            plan.scan["id"] = scan_id
            jobs.append(
                JobService.queued_values(
                    patient_id=plan.patient.id,
                    scan_id=scan_id,
                    sha256=plan.item.sha256,
                    question=None,
                    actor=plan.item.actor,
                    priority=JobPriority.BACKGROUND,
                    now=now,
                )
            )
        job_ids = connection.execute(_INSERT_JOBS, jobs).scalars().all()
        audit = []
        notes = []
        for plan, job_id in zip(planned, job_ids, strict=True):
            plan.job_id = job_id
            actor = plan.item.actor
            # Audited as create_patient and attach_image do: a new patient's own entry
            # covers its first scan.
            if plan.new:
                audit.append(
                    PatientService.created_audit_values(actor, plan.patient.id, plan.fields, at=now)
                )
            else:
                where = {"patient_id": plan.patient.id}
                audit.append(
                    AuditService.values(actor, "create", "scan", plan.scan["id"], where, at=now)
                )
            audit.append(
                JobService.queued_audit_values(
                    actor, job_id, plan.patient.id, plan.scan["id"], at=now
                )
            )
            plan.note = NotificationService.new_values(
                self._message(plan.outcome, plan.patient, plan.scan),
                type=NotificationType.INFO.value,
                patient_id=plan.patient.id,
                now=now,
            )
            notes.append(plan.note)
        connection.execute(insert(m.AuditEvent), audit)
        note_ids = connection.execute(_INSERT_NOTES, notes).scalars().all()
        for note, note_id in zip(notes, note_ids, strict=True):
            note["id"] = note_id
        taken_in = []
        for plan in planned:
            values = _record_values(
                plan.item.name,
                plan.item.size,
                plan.outcome,
                None,
                plan.patient.id,
                plan.scan["id"],
                plan.job_id,
                now,
            )
            values["created_at"] = now  # when it was taken in, not when it was first refused
            refused_before = records.get(plan.item.sha256)
            if refused_before is None:
                taken_in.append({"sha256": plan.item.sha256, "duplicate_count": 0, **values})
            else:  # refused before, readable now: its record becomes the ingest's
                connection.execute(
                    update(m.IngestedFile)
                    .where(m.IngestedFile.id == refused_before.id)
                    .values(**values)
                )
        if taken_in:
            connection.execute(insert(m.IngestedFile), taken_in)

    @staticmethod
    def _message(outcome: IngestOutcome, patient: m.Patient, scan: dict[str, Any]) -> str:
        what = (
            " ".join(v for v in (scan["modality"], scan["laterality"]) if v != "unknown") or "image"
        )
        if outcome is IngestOutcome.INGESTED:
            return (
                f"New scan from the watch folder ({what}): new demo patient {patient.name} "
                f"({patient.id}); analysis queued"
            )
        return (
            f"New scan from the watch folder ({what}) for {patient.name} ({patient.id}); "
            "analysis queued"
        )

    @staticmethod
    def _record_of(session: Session, sha256: str) -> m.IngestedFile | None:
        query = select(m.IngestedFile).where(m.IngestedFile.sha256 == sha256)
        return session.scalars(query).first()

    @staticmethod
    def _record_refusal(
        session: Session,
        *,
        sha256: str,
        name: str,
        size: int,
        reason: str,
    ) -> None:
        """Add or update the ingest record of refused bytes ``sha256``. Bytes taken in
        meanwhile keep their record; the refusal only counts as a sighting."""
        now = m.utcnow()
        row = IngestService._record_of(session, sha256)
        if row is None:
            row = m.IngestedFile(sha256=sha256, duplicate_count=0, created_at=now)
            session.add(row)
        else:
            row.duplicate_count += 1
            if row.outcome != IngestOutcome.FAILED:
                row.last_seen_at = now
                return
        values = _record_values(name, size, IngestOutcome.FAILED, reason, None, None, None, now)
        for key, value in values.items():
            setattr(row, key, value)

    def _file_taken_in(
        self,
        path: Path,
        folder: FolderLayout,
        sha256: str,
        known: _Known,
        stamp: FileStamp,
        *,
        restamped: bool = False,
    ) -> IngestResult:
        """The file whose commit a crash cut off from its move (``restamped``: that a
        change keeping its bytes, such as of its times, kept from it): moved to
        ``processed/`` under its own name now. Its patient, scan, analysis and
        notification were committed (and published) then; nothing is recorded or
        notified again."""
        if path not in self._waiting_for_room:  # else it is only being tried again
            log.info(
                "watch folder: %s… was taken in %s (patient %s); moved now",
                sha256[:12],
                "before it changed (same bytes)" if restamped else "before a restart",
                patient_ref(known.patient_id),
            )
        moved = None
        if _unchanged(path, stamp):
            moved = self._move(path, folder.processed, sha256)
        else:
            self._left_changed(path, _LeftInPlace(sha256, stamp.inode, known.scan_id))
        outcome = IngestOutcome(known.outcome)
        return self._finish(
            IngestResult(
                outcome,
                display_name(path.name),
                sha256,
                known.patient_id,
                known.scan_id,
                known.job_id,
                None,
                moved,
            )
        )

    def _duplicate(
        self,
        path: Path,
        folder: FolderLayout,
        sha256: str,
        known: _Known,
        stamp: FileStamp,
        *,
        told: bool = False,
    ) -> IngestResult:
        """Bytes already taken in: count the sighting, tell the clinician, move it.

        Counted and told before the move, as a scan is committed before its: a crash
        between the two leaves the file in the folder, and at the next start its
        notification is found (:meth:`_duplicate_told`) and it is only moved; so is one
        that a change keeping its bytes, such as of its times, kept from its move
        (``told``).
        """
        name = display_name(path.name)
        if told:
            log.info(
                "watch folder: %s… was found a duplicate before it changed (same bytes); moved now",
                sha256[:12],
            )
        else:
            _ensure_unchanged(path, stamp)
            self._tell_duplicate(path, name, sha256, known)
        moved = None
        if _unchanged(path, stamp):
            moved = self._move(path, folder.processed, sha256, tag=" (duplicate)")
        else:  # changed while the sighting was recorded: taken again as it is now
            self._left_changed(
                path, _LeftInPlace(sha256, stamp.inode, known.scan_id, duplicate=True)
            )
        return self._finish(
            IngestResult(
                IngestOutcome.DUPLICATE, name, sha256, known.patient_id, None, None, None, moved
            )
        )

    def _tell_duplicate(self, path: Path, name: str, sha256: str, known: _Known) -> None:
        """Count the sighting of ``known``'s bytes and tell the clinician, unless this
        very file was told before a crash."""
        when = local_time(known.created_at)  # as the notifications' own times read
        whose = f" for patient {known.patient_id}" if known.patient_id else ""
        message = (
            f"{shown_name(name)} from the watch folder was already taken in{whose} on {when}; "
            "no new patient was created. Moved to processed/."
        )
        if self._duplicate_told(path, name, message, known.patient_id):
            if path not in self._waiting_for_room:
                log.info(
                    "watch folder: %s… was found a duplicate before a restart; moved now",
                    sha256[:12],
                )
        else:
            try:
                note = self._record_duplicate(sha256, message, known.patient_id)
            except NotFound as exc:
                # The patient was deleted a moment ago (and with them the ingest record):
                # look at the file again, as new.
                raise FileNotSettled("the patient of this file was just deleted") from exc
            self._bus.publish(NotificationCreated(note))
            log.info(
                "watch folder: %s… already taken in (patient %s): duplicate",
                sha256[:12],
                patient_ref(known.patient_id),
            )

    def _left_changed(self, path: Path, left: _LeftInPlace) -> None:
        """``path`` changed after it was read, so it is left in place, to be taken again
        as it is then: remembered as ``left``, which it is if only its times changed."""
        log.warning("watch folder: %s… changed after it was read; not moved", left.sha256[:12])
        with self._left_lock:
            self._left[path] = left

    def _left_here(self, path: Path) -> _LeftInPlace | None:
        """The file left at ``path`` (:meth:`_left_changed`), forgotten now: the file
        there is being dealt with."""
        with self._left_lock:
            return self._left.pop(path, None)

    def _duplicate_told(self, path: Path, name: str, message: str, patient_id: str | None) -> bool:
        """Whether this very file was counted and told as a duplicate (``message``)
        before a crash kept it from its move: the notification is there, and the file
        has not changed since it was written (:func:`_left_by_a_crash`). One the
        clinician deleted meanwhile is told again."""
        if not CHANGE_TIME_IS_KNOWN:
            return False
        query = (
            select(m.Notification.timestamp)
            .where(
                m.Notification.patient_id == patient_id, m.Notification.message == message.strip()
            )
            .order_by(m.Notification.id.desc())
            .limit(1)
        )
        try:
            with self._db.session() as session:
                told_at = session.scalars(query).first()
        except StorageError:
            return False  # told again, if the database lets it
        return told_at is not None and _left_by_a_crash(path, name, name, told_at)

    def _record_duplicate(
        self, sha256: str, message: str, patient_id: str | None
    ) -> NotificationRecord:
        with self._db.session() as session:
            row = self._record_of(session, sha256)
            if row is not None:
                row.duplicate_count += 1
                row.last_seen_at = m.utcnow()
            note = NotificationService.create_in(
                session,
                message,
                type=NotificationType.INFO.value,
                patient_id=patient_id,
            )
        return note

    def _refuse(
        self,
        path: Path,
        folder: FolderLayout,
        reason: str,
        *,
        sha256: str | None,
        size: int | None,
        logged: str | None = None,
        retry: str = RETRY_FIXED,
    ) -> IngestResult:
        """Record the refusal and notify, then move the file to ``failed/`` with the
        reason beside it (and ``retry``, how to retry).

        Recorded before the file leaves the folder, as a scan is committed before its
        move, where the other order left it in ``failed/`` with nobody told. A crash
        between the two leaves the file in the folder: at the next start its refusal is
        found recorded (:meth:`_refusal_recorded`) and it is only moved, not notified
        again. A file refused before its bytes could be read is recorded under a key of
        its identity instead (:func:`_unread_record_key`). Where the database cannot
        take the record (it does not answer, its disk is full) the file stays in the
        folder, as a good file does, and is refused once it can: nobody would be told.

        ``logged``: the reason as the log says it, where ``reason`` quotes the file name.

        Raises:
            DatabaseUnavailable: The database does not answer; the file is left in place.
            NoRoom: The database's disk is full; the file is left in place.
        """
        name = display_name(path.name)
        refused = f"{shown_name(name)} from the watch folder was not taken in: {reason}."
        note = None
        _unlike_a_claim(path)
        key = sha256 if sha256 is not None else _unread_record_key(path)
        if key is None or not self._refusal_recorded(path, key, name, reason):
            # How to retry depends on the reason: the reason file says it, not the note.
            told = f"{refused} Moved to failed/, where its .reason.txt file says how to take it in."
            note = self._record_refused(told, reason, key, name, size)
        if path not in self._waiting_for_room:  # once recorded: not at each try after
            log.warning(
                "watch folder: refused a file (sha256 %s): %s",
                (sha256 or "-")[:12],
                logged or reason,
            )
        try:
            moved = self._move(
                path,
                folder.failed,
                sha256,
                room_bytes=len(REASON_SUFFIX),
                beside=lambda target: self._write_reason(target, reason, sha256, size, retry),
            )
        except NoRoomToFile:
            if note is not None:  # recorded: told now, and only moved once there is room
                self._bus.publish(NotificationCreated(note))
            raise
        if moved is None and note is not None:
            note = self._reword(note, f"{refused} It could not be moved to failed/.")
        if note is not None:
            self._bus.publish(NotificationCreated(note))
        return self._finish(
            IngestResult(IngestOutcome.FAILED, name, sha256, None, None, None, reason, moved)
        )

    def _refusal_recorded(self, path: Path, sha256: str, name: str, reason: str) -> bool:
        """Whether this very file's refusal, for ``reason``, was recorded (and notified)
        before a crash kept it from its move to ``failed/``."""
        try:
            with self._db.session() as session:
                row = self._record_of(session, sha256)
                if (
                    row is None
                    or row.outcome != IngestOutcome.FAILED
                    or row.reason != reason[:2000]
                ):
                    return False
                recorded_name, recorded_at = row.original_name, row.last_seen_at
        except StorageError:
            return False  # recorded again, if the database lets it
        if not _left_by_a_crash(path, name, recorded_name, recorded_at):
            return False
        if path not in self._waiting_for_room:
            log.info("watch folder: %s… was refused before a restart; moved now", sha256[:12])
        return True

    def _record_refused(
        self, message: str, reason: str, sha256: str | None, name: str, size: int | None
    ) -> NotificationRecord | None:
        """Commit the refusal's ingest record (under ``sha256``: the bytes' hash, or an
        unread file's key; none where neither is known) and its notification; the
        notification, not published yet (None: not recorded).

        Raises:
            DatabaseUnavailable: The database does not answer (or ended the change).
            NoRoom: Its disk is full.
        """
        for attempt in range(2):
            try:
                with self._db.session() as session:
                    if sha256 is not None:
                        self._record_refusal(
                            session,
                            sha256=sha256,
                            name=name,
                            size=size or 0,
                            reason=reason[:2000],
                        )
                    return NotificationService.create_in(
                        session,
                        message[:2000],
                        type=NotificationType.INFO.value,
                        patient_id=None,
                        warning=True,  # listed as one, as its toast and tray message are
                    )
            except IntegrityError as exc:
                # The same bytes were refused on another ingest thread at the same
                # moment; the second attempt updates that record.
                if attempt:
                    self._log_unrecorded(exc)
            except (DatabaseUnavailable, NoRoom):
                # Not recorded, so nobody would be told: the file stays in the folder
                # and is refused again once the database takes the record, as a good
                # file waits to be taken in.
                raise
            except StorageError as exc:
                self._log_unrecorded(exc)
                break
        return None

    def _reword(self, note: NotificationRecord, message: str) -> NotificationRecord:
        """``note`` saying ``message`` instead (the file could not be moved after all)."""
        try:
            with self._db.session() as session:
                session.execute(
                    update(m.Notification)
                    .where(m.Notification.id == note.id)
                    .values(message=message[:2000])
                )
        except StorageError as exc:
            self._log_unrecorded(exc)
            return note
        return dataclasses.replace(note, message=message[:2000])

    @staticmethod
    def _log_unrecorded(exc: BaseException) -> None:
        # Not the exception's text: a database error quotes its statement's values (the
        # file's name, the notification naming it).
        log.error("watch folder: could not record a refused file: %s", safe_description(exc))

    @staticmethod
    def _write_reason(
        moved: Path, reason: str, sha256: str | None, size: int | None, retry: str
    ) -> Path | None:
        """Write why the file was refused beside ``moved``, its name in ``failed/``; the
        reason file (None: it could not be written, which keeps no file out of
        ``failed/``).

        Readable by the app's account only, and without the file's name (a file name
        often holds a patient's): its own name, beside the file, says which file it is.

        Raises:
            OSError: The disk is full (:data:`NO_ROOM_ERRNOS`): the move waits for room
                rather than leave the file in ``failed/`` without its reason.
        """
        refused_at = local_time(datetime.now().astimezone(), seconds=True)
        lines = [
            f"Not taken in: {reason}.",
            "",
            f"refused at: {refused_at}",
            f"sha256: {sha256 or 'not read'}",
            f"size: {'unknown' if size is None else f'{size} bytes'}",
            "",
            f'The file is beside this one, named as this one without "{REASON_SUFFIX}".',
            retry,
        ]
        reason_file = moved.with_name(moved.name + REASON_SUFFIX)
        try:
            write_private_file(reason_file, ("\n".join(lines) + "\n").encode("utf-8"))
        except OSError as exc:
            log.error("watch folder: could not write a reason file: %s", exc.strerror)
            with contextlib.suppress(OSError):
                reason_file.unlink(missing_ok=True)  # not half of one
            if exc.errno in NO_ROOM_ERRNOS and CHANGE_TIME_IS_KNOWN:
                raise
            return None
        return reason_file

    def _move(
        self,
        path: Path,
        folder: Path,
        sha256: str | None,
        *,
        tag: str = "",
        room_bytes: int = 0,
        beside: Callable[[Path], Path | None] | None = None,
    ) -> Path | None:
        waited = path in self._waiting_for_room
        try:
            make_filing_folder(folder)  # removed while the watch folder ran
            moved = move_without_overwrite(
                path, folder, path.name, tag=tag, room_bytes=room_bytes, beside=beside
            )
        except OSError as exc:
            no_room = exc.errno in NO_ROOM_ERRNOS and CHANGE_TIME_IS_KNOWN
            if not (no_room and waited):  # said at its first try, not at each
                log.error(
                    "watch folder: could not move a file (sha256 %s) to %s/: %s",
                    (sha256 or "-")[:12],
                    folder.name,
                    exc.strerror,
                )
            if no_room:
                self._waiting_for_room.add(path)
                # Tried again once there is room: found recorded (its scan, its
                # duplicate notice or its refusal) and only moved. Where the change time
                # does not tell the very file (Windows), each try would be told again.
                raise NoRoomToFile(
                    f"cannot move a file to {folder.name}/ in the watch folder: {exc.strerror}"
                ) from exc
            self._waiting_for_room.discard(path)
            return None
        if waited:
            self._waiting_for_room.discard(path)
            log.info(
                "watch folder: %s… moved to %s/ now that there is room",
                (sha256 or "-")[:12],
                folder.name,
            )
        return moved

    def _finish(self, result: IngestResult) -> IngestResult:
        moved = ""
        if result.moved_to is not None:
            moved = f"{result.moved_to.parent.name}/{shown_name(result.moved_to.name)}"
        self._bus.publish(
            IngestFinished(
                outcome=result.outcome.value,
                file_name=shown_name(result.file_name),
                sha256=result.sha256,
                patient_id=result.patient_id,
                scan_id=result.scan_id,
                job_id=result.job_id,
                reason=result.reason,
                moved_to=moved,
            )
        )
        return result
