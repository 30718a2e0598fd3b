"""The watch folder: image files that devices drop into a folder become patients.

Three kinds of thread take part (DESIGN §2):

- the watchdog observer reports file events: the native one (inotify on Linux), or the
  polling one every ``watch_poll_seconds`` where events do not arrive (network shares,
  ``watch_use_polling``). Its handler only notes what happened to which name;
- the settle thread decides when a file has finished arriving and hands it over;
- the ingest threads call :meth:`IngestService.ingest_file`. A few of them at once
  read, hash and check files (the CPU work); the others wait for their turn or for the
  group commit, so that every file read while a transaction is being written joins
  the next one, however large the burst.

A file has finished arriving when its size, modification time and inode have stayed the
same for ``settle_checks`` checks ``settle_interval_s`` apart and, on Linux, no process
has it open for writing (the kernel refuses a read lease on such a file; ``/proc`` where
it will not say). Faster signals skip that wait on Linux's native observer: the writer
closed the file (``IN_CLOSE_WRITE``) with no other handle open (taken at once: the
ingest reads it against the stamp seen then, so a writer that comes back is noticed),
the file appeared by rename and nobody has it open for writing, or it was created with
no open seen and stays unchanged for ``confirm_s`` with nobody writing it. An empty file
waits ``empty_grace_s`` longer, since some writers create a file before they fill it.

Only files directly in the folder whose extension is allowed (case-insensitive) are
taken; ``processed/``, ``failed/`` and other subfolders are not watched. Names starting
with ``.``, ``~$``, ``tmp_`` or ``temp_`` (:data:`IGNORED_PREFIXES`) and temporary names
(``.part``, ``.crdownload``, ...; their extension is not allowed) are ignored until
renamed; those of an allowed extension that two rescans in a row find are counted in
:class:`WatcherStatus` (a few of their names too), for the window and the API to show.
Files of other extensions are left
where they are. Files already waiting at start (or left behind by a crash) are taken in
at start, and the folder is rescanned every ``rescan_interval_s`` in case an event was
lost.

:class:`FolderWatcher` can be started, stopped, paused and resumed from any thread; each
change of state is published as :class:`WatcherStateChanged`.

A start that fails (the folder missing, a share not mounted or not answering; with
``watch_folder_require_mount``, a folder that is not a mount point) and a
running watch whose folder went away are the ``error`` state and are tried again by
themselves, ``retry_first_s`` after the failure, then twice as long after each failure
up to ``retry_max_s``; the state's message ends with ``; retrying in N s``. The first
failure and the recovery are each one notification. Pausing or stopping ends the tries;
resuming tries at once. Stopping waits a bounded time for files being read: a read a
hung share holds is left behind (counted in the log) and its file, never moved before
its commit, is taken in at the next start.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from watchdog.events import (
    DirDeletedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from ophthai_desktop.core.domain import NotificationType
from ophthai_desktop.core.errors import (
    ChangeRolledBack,
    DatabaseFileGone,
    DatabaseUnavailable,
    ImageStoreUnwritable,
    NoRoom,
    StorageError,
)
from ophthai_desktop.core.events import EventBus, WatcherStateChanged
from ophthai_desktop.core.log_safety import safe_description
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.ingest import (
    FileNotSettled,
    FileStamp,
    FileVanished,
    FolderLayout,
    IngestService,
    NoRoomToFile,
    make_filing_folder,
    patient_id_from_name,
    remove_stale_claims,
    shown_name,
)
from ophthai_desktop.core.services.notifications import NotificationService
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.storage.folders import cannot_create

log = logging.getLogger(__name__)

#: The events the handler needs. Of directory events only deletion: the native observer
#: reports the watched folder's own (inotify's IN_DELETE_SELF); subfolders are not watched.
#: A share unmounted from the folder is not reported: watchdog (7.1) drops inotify's
#: IN_UNMOUNT and the IN_IGNORED after it, so the health check at the next rescan finds it.
EVENT_FILTER: list[type[FileSystemEvent]] = [
    DirDeletedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileOpenedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
]

#: Whether ``/proc`` tells which processes have a file open (Linux).
PROC_FDS = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")

#: Whether the kernel can say of one file that it is open for writing (Linux leases).
LEASES = PROC_FDS and all(hasattr(fcntl, n) for n in ("F_SETLEASE", "F_SETSIG", "F_RDLCK"))

#: How long to wait before trying a file again after the database failed.
STORAGE_RETRY_S = 5.0

#: The running watch folder's message while the database does not answer.
WAITING_FOR_DATABASE = (
    f"{DatabaseUnavailable.OUTAGE}: new files wait in the folder and are taken in "
    f"{DatabaseUnavailable.UNTIL}"
)

#: The running watch folder's message while the database file is gone (deleted or
#: replaced: an outage that lasts until the app is started again).
WAITING_FOR_DATABASE_FILE = (
    f"{DatabaseFileGone.OUTAGE}: new files wait in the folder and are taken in "
    f"{DatabaseFileGone.UNTIL}"
)

#: The running watch folder's message while the disk of the database or the image store
#: is full (it stays so until someone frees space: not an outage that passes).
WAITING_FOR_ROOM = (
    "the disk is full: new files wait in the folder and are taken in once space is freed on it"
)

#: The running watch folder's message while the watch folder's own disk is full: files
#: are taken in but cannot be moved out of it (nor refused ones given their reason).
WAITING_FOR_ROOM_TO_FILE = (
    "the watch folder's disk is full: files taken in stay in the folder and are moved to "
    "processed/ or failed/ once space is freed on it"
)

#: The running watch folder's message while the image store cannot be written for another
#: reason than a full disk (its folder made read-only, or owned by another account).
WAITING_FOR_IMAGE_STORE = (
    "the image store (images/ in the data folder) cannot be written: new files wait in the "
    "folder and are taken in once it can (the application log says why)"
)

#: The messages of a running watch folder whose files wait for the storage, and the
#: line the log says as each starts.
STORAGE_WAITS = {
    WAITING_FOR_DATABASE: "watch folder: new files wait in the folder until the database answers",
    WAITING_FOR_DATABASE_FILE: "watch folder: the database file is gone; new files wait in the "
    "folder until OphthAI is started again",
    WAITING_FOR_ROOM: "watch folder: the disk is full; new files wait in the folder until space "
    "is freed",
    WAITING_FOR_ROOM_TO_FILE: "watch folder: its disk is full; files taken in stay in the folder "
    "until space is freed",
    WAITING_FOR_IMAGE_STORE: "watch folder: new files wait in the folder until the image store "
    "can be written",
}

#: After a failed start, or once a running watch folder went away, the next try is this
#: long after the failure, then twice as long after each failure, up to
#: :data:`RETRY_MAX_S`.
RETRY_FIRST_S = 5.0
RETRY_MAX_S = 300.0

#: How long a resume or a try again after a failure may wait on the folder (a share that
#: does not answer) before the state says so, as a start that hangs says (see
#: :func:`not_answering_message`).
ANSWER_WITHIN_S = 5.0

#: Who the audit trail names for the watch folder's own notifications.
WATCHER_SYSTEM_ACTOR = Actor.system("watch-folder")


class _QuietStopRace(logging.Filter):
    """Drops watchdog's error line about an emitter read racing its own stop.

    watchdog 7.1's inotify emitter logs ``queue_events() called when the thread is
    inactive`` at ERROR when ``stop()`` lands between its loop check and its read: a
    harmless race at every shutdown that would read as a failure in our logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in str(record.msg)


logging.getLogger("watchdog.observers.inotify").addFilter(_QuietStopRace())
# watchdog's debug lines name every file it sees (inotify's "in-event ..."), and a file
# name can hold a patient's name: they stay out of the log even with debug logging on.
logging.getLogger("watchdog").setLevel(logging.INFO)


#: Names a file is not taken in under (compared in lower case): hidden files, Office's
#: lock files, and the temporary names a writer gives a file before renaming it to its
#: own (``tmp_123.png``). Such a name with an allowed extension was taken in at once
#: where the writer closed it before renaming it (the native observer's fast path), or
#: once it settled: the scan filed under the temporary name, and the writer's rename
#: then failed. A name that starts with a longer patient id (``TEMP-0042_OD.png``, for
#: the patient ``TEMP-0042``) is a scan named as the watch folder asks, and is taken in.
IGNORED_PREFIXES = (".", "~$", "tmp_", "tmp-", "temp_", "temp-")
_TEMPORARY_WORDS = ("tmp", "temp")


def _no_move_pairing_delay() -> None:
    """Stop watchdog's inotify emitter from holding events back half a second.

    To pair a rename's two halves, it keeps every ``IN_MOVED_FROM`` for 0.5 s at the
    head of its queue, and every event behind it waits too. Each file we move to
    ``processed/`` is such an event, so at a steady trickle of scans each one would wait
    up to 0.5 s before we even heard of it. We treat a rename as "gone" plus "new"
    anyway, so pairing buys us nothing. (The class moved between watchdog versions.)
    """
    for module, name in (
        ("watchdog.observers.inotify_move_event_grouper", "InotifyMoveEventGrouper"),
        ("watchdog.observers.inotify_buffer", "InotifyBuffer"),
    ):
        try:
            holder = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(getattr(holder, "delay", None), int | float):
            holder.delay = 0.0


def not_answering_message(folder: Path, within_s: float) -> str:
    """The error state's message while a try at starting the watch folder in ``folder``
    has waited on it longer than ``within_s``."""
    return (
        f"the watch folder {folder} did not answer within {within_s:g} s (a network share "
        "that is not reachable?); it is set up once it answers"
    )


#: Why a folder cannot be found, as the watch folder's state says it.
MISSING_WHY = "a network share not mounted, a disk not connected, or the folder deleted or renamed?"


def missing_message(folder: Path) -> str:
    """The error state's message while the watch folder in ``folder`` is not there, at a
    start or while it was watched: the same situation, in the same words."""
    return f"the watch folder {folder} cannot be found ({MISSING_WHY})"


def missing_parent_message(folder: Path) -> str:
    """Why the watch folder ``folder`` is not made (Tools ▸ Open watch folder, the
    Settings dialog's check): the folder that should hold it is not there, said in the
    words the state uses for a missing watch folder. Made with the folders above it, a
    share's mount point would be a local folder that nobody copies into."""
    return (
        f"the folder {folder.parent} that should hold the watch folder cannot be found "
        f"({MISSING_WHY})"
    )


def not_mounted_message(folder: Path) -> str:
    """The error state's message while nothing is mounted on the watch folder in
    ``folder`` (``watch_folder_require_mount``), at a start or while it was watched."""
    return (
        f"the watch folder {folder} is not mounted (the network share is not connected?); "
        "waiting for the share"
    )


def ignored_for_its_name(name: str) -> bool:
    """Whether a file named ``name`` is left in the watch folder for its name (hidden,
    a lock file, a writer's temporary name: :data:`IGNORED_PREFIXES`)."""
    return name.lower().startswith(IGNORED_PREFIXES) and not _names_a_patient(name)


#: The prefix of macOS's AppleDouble companions (``._scan.png`` beside ``scan.png``): a
#: Mac copying to a share or disk that cannot keep a file's metadata writes it there as
#: such a file, a few kilobytes that are never an image. Left in the folder as hidden
#: files are, but not counted among the files to rename: renamed, one would only be
#: refused, and each scan copied from a Mac leaves one behind for good.
APPLE_DOUBLE_PREFIX = "._"


def _names_a_patient(name: str) -> bool:
    """Whether ``name`` starts with a patient id (``<id>_...``) that is more than a
    temporary name's word: ``TEMP-0042_OD.png`` names the patient ``TEMP-0042``;
    ``tmp_123.png`` and ``tmp-123.png`` are a writer's temporary names."""
    patient_id = patient_id_from_name(name)
    return patient_id is not None and patient_id.lower() not in _TEMPORARY_WORDS


#: How many of the names left in the folder for their names the status gives.
IGNORED_NAMES_SHOWN = 5


class WatcherState(StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"
    PAUSED = "paused"
    ERROR = "error"


@dataclass(frozen=True)
class WatcherStatus:
    """What the status bar shows."""

    state: WatcherState
    message: str
    folder: Path
    #: Whether the polling observer runs now (set up so, or the fallback where native
    #: events are unavailable); False while the folder is not watched.
    polling: bool
    pending: int  # files seen, not yet settled
    in_progress: int  # files being taken in
    #: Files left in the folder for their names (:func:`ignored_for_its_name`) though
    #: their extension is taken in, as the last two rescans both found them.
    ignored: int = 0
    #: The first :data:`IGNORED_NAMES_SHOWN` of them, sorted, as text to show.
    ignored_names: tuple[str, ...] = ()
    #: Whether the settings ask for the polling observer (``watch_use_polling``),
    #: whatever runs now.
    use_polling: bool = False


class _Evidence(Enum):
    NONE = 0  # only the settle timer can tell
    CLOSED = 1  # the writer closed it and no handle is open (inotify): ready
    RENAMED = 2  # appeared whole by a rename, no open seen: ready once /proc agrees
    QUIET = 3  # created with no open seen (yet): /proc decides after one steady check


@dataclass(slots=True)
class _Candidate:
    next_check: float
    changed_at: float
    evidence: _Evidence = _Evidence.NONE
    stamp: FileStamp | None = None
    stable: int = 0
    opens: int = 0
    closed_seen: bool = False


@dataclass
class _Run:
    """What one start() sets up; dropped by stop()."""

    layout: FolderLayout
    root: str
    extensions: frozenset[str]
    pool: ThreadPoolExecutor
    stopping: threading.Event = field(default_factory=threading.Event)
    #: Set while paused or stopping: files still waiting for their turn are not read.
    holding: threading.Event = field(default_factory=threading.Event)
    observer: BaseObserver | None = None
    inotify: bool = False
    #: The watched folder's device and inode: inotify follows a folder renamed away.
    folder_id: tuple[int, int] | None = None
    #: Whether the watched folder was a mount point (a share mounted on it) when watched:
    #: once unmounted, the folder left at its path is another, local one.
    mounted: bool = False
    thread: threading.Thread | None = None
    #: The ingest calls handed to the pool (done ones drop out).
    futures: set[Future[None]] = field(default_factory=set)
    #: When the settle thread next checks the folder (monotonic): every rescan, and
    #: with the backoff while the folder is away; 0 for at once.
    health_due: float = 0.0
    #: The running state's message from before the database stopped answering (the
    #: polling fallback's), put back once it answers.
    message_before_outage: str = ""
    #: The names the last rescan found left in the folder for their names.
    ignored_listed: frozenset[str] = frozenset()


def files_open_for_writing(paths: Collection[str]) -> set[str]:
    """Those of ``paths`` (real paths) that a process of this machine has open for
    writing.

    The kernel answers for one file at a time, in microseconds: a read lease
    (``F_SETLEASE``) is refused while any process has the file open for writing. Where
    it cannot answer (a file another user owns, a network file system, leases turned
    off), ``/proc`` is searched instead: every process's open files (our user's
    processes, or all as root), which takes tens of milliseconds on a desktop whose
    browsers hold thousands. Empty where neither exists: there only the settle timer
    can tell.
    """
    if not PROC_FDS or not paths:
        return set()
    found: set[str] = set()
    unknown: list[str] = []
    for path in paths:
        writing = _open_for_writing_by_lease(path)
        if writing is None:
            unknown.append(path)
        elif writing:
            found.add(path)
    if unknown:
        found |= _open_for_writing_in_proc(unknown)
    return found


#: File systems on which a refused read lease means the file is open for writing (local
#: ones). On a network file system the kernel answers another question: CIFS refuses a
#: lease whenever the client holds no read oplock, NFSv4 without a read delegation; a
#: file there would look written for ever. FUSE file systems vary.
LEASE_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "bcachefs", "zfs",
     "tmpfs", "ramfs", "overlay"}
)  # fmt: skip


class _MountTypes:
    """The file system type of each mounted device, from ``/proc/self/mountinfo``, read
    again when a device is not known yet (a share mounted since)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[int, str] = {}

    def leases_tell(self, device: int) -> bool:
        """Whether a read lease on a file of ``device`` says if it is being written."""
        with self._lock:
            kind = self._types.get(device)
            if kind is None:
                self._types = _read_mount_types()
                kind = self._types.setdefault(device, "")  # not listed: not asked again
        return kind in LEASE_FILE_SYSTEMS


def _read_mount_types() -> dict[int, str]:
    """Device number to file system type, for every mount this process sees."""
    types: dict[int, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                # "36 35 98:0 /root /mnt opts [optional fields] - ext4 /dev/sda1 opts"
                head, separator, tail = line.partition(" - ")
                fields = head.split()
                if not separator or len(fields) < 3 or not tail.split():
                    continue
                major, _colon, minor = fields[2].partition(":")
                with contextlib.suppress(ValueError):
                    types[os.makedev(int(major), int(minor))] = tail.split()[0]
    except OSError:
        pass
    return types


_MOUNTS = _MountTypes()


def _open_for_writing_by_lease(path: str) -> bool | None:
    """Whether a process has ``path`` open for writing, as a read lease tells; None
    where the kernel will not say (and on file systems where its answer means
    something else: :data:`LEASE_FILE_SYSTEMS`).

    The lease is given back at once, though not within microseconds: between the two
    calls this thread takes the interpreter lock back, which can take a switch interval
    (1 ms) per busy thread. A writer that opens the file meanwhile waits that long, or
    gets EAGAIN if it opens without blocking. The lease-break signal is SIGURG, ignored
    by default, rather than SIGIO, which would end this process. Opening the file breaks
    another holder's write lease (a file server's oplock for a client still writing), as
    reading it to take it in would.
    """
    if not LEASES:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # gone: nobody writes it here; the ingest finds it vanished
    except BlockingIOError:
        return True  # another holder's write lease (a file server writing it) must break
    except OSError:
        return None
    try:
        if not _MOUNTS.leases_tell(os.fstat(fd).st_dev):
            return None
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:  # EAGAIN: open for writing (or mapped writable) somewhere
        return True
    except OSError:  # EACCES: not our file; EINVAL: no leases on this file system
        return None
    finally:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        os.close(fd)
    return False


def _open_for_writing_in_proc(paths: Collection[str]) -> set[str]:
    """Those of ``paths`` that ``/proc`` shows open for writing by some process."""
    wanted = set(paths)
    found: set[str] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's process
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in wanted and target not in found and _writable(pid, fd):
                found.add(target)
    return found


def _writable(pid: str, fd: str) -> bool:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("flags:"):
                    return bool(int(line.split()[1], 8) & (os.O_WRONLY | os.O_RDWR))
    except (OSError, ValueError, IndexError):
        pass
    return True  # cannot tell: assume it is being written


def _folder_id(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class _Handler(FileSystemEventHandler):
    """Runs on the observer thread: notes the event, nothing more."""

    def __init__(self, watcher: FolderWatcher, run: _Run) -> None:
        self._watcher = watcher
        self._run = run

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type == "deleted" and os.fsdecode(event.src_path) == self._run.root:
                self._watcher._folder_deleted(self._run)
            return
        src = os.fsdecode(event.src_path)
        if event.event_type == "moved":
            self._watcher._noticed(self._run, src, "deleted")
            dest = os.fsdecode(event.dest_path)
            if dest:
                self._watcher._noticed(self._run, dest, "moved")
        else:
            self._watcher._noticed(self._run, src, event.event_type)


class FolderWatcher:
    """Watches the watch folder and takes in the image files that arrive there.

    Start, stop, pause and resume from any thread. Publishes
    :class:`WatcherStateChanged` on every change of :attr:`state`.
    """

    def __init__(
        self,
        settings: Settings,
        ingest: IngestService,
        bus: EventBus,
        *,
        settle_interval_s: float = 0.1,
        settle_checks: int = 2,
        confirm_s: float = 0.05,
        empty_grace_s: float = 2.0,
        rescan_interval_s: float = 10.0,
        ingest_threads: int = 32,
        notifications: NotificationService | None = None,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.settings = settings
        self._ingest = ingest
        self._bus = bus
        self._settle_interval_s = settle_interval_s
        self._settle_checks = max(1, settle_checks)
        self._confirm_s = confirm_s
        self._empty_grace_s = empty_grace_s
        self._rescan_interval_s = rescan_interval_s
        self._ingest_threads = max(1, ingest_threads)
        self._notifications = notifications
        self._retry_first_s = retry_first_s
        self._retry_max_s = max(retry_first_s, retry_max_s)

        self._control = threading.RLock()  # start/stop/pause/resume
        self._lock = threading.Lock()  # the file bookkeeping below
        self._wake = threading.Event()
        self._pending: dict[str, _Candidate] = {}
        self._in_progress: set[str] = set()
        self._stuck: dict[str, FileStamp] = {}  # could not be moved: skip until changed
        # Files left for their names: how many, and the first few names to show.
        self._ignored: tuple[int, tuple[str, ...]] = (0, ())
        self._run: _Run | None = None
        self._paused = False
        self._state = WatcherState.STOPPED
        self._message = ""
        self._polling = False
        # Retrying (under the control lock): the last wait, None while nothing fails.
        self._retry_s: float | None = None
        self._retry_timer: threading.Timer | None = None
        self._retry_generation = 0  # a timer of an older one does nothing
        self._failure_told = False  # the failure's notification went out
        self._stop_asked = False  # a stop() that could not wait for a try at starting
        # A try at starting that does not return (a share that does not answer): while it
        # runs, what :meth:`say_start_not_answering` said is the state (under its own lock,
        # so that the try, returning, always has the last word).
        self._start_lock = threading.RLock()
        self._starting = False
        self._start_not_answering: str | None = None

    # Control (any thread) ----------------------------------------------------------

    @property
    def state(self) -> WatcherState:
        return WatcherState.ERROR if self._start_not_answering else self._state

    @property
    def status(self) -> WatcherStatus:
        with self._lock:
            pending, in_progress = len(self._pending), len(self._in_progress)
            ignored, ignored_names = self._ignored
        use_polling = self.settings.watch_use_polling
        if hung := self._start_not_answering:
            return WatcherStatus(
                WatcherState.ERROR, hung, self.folder, False, 0, 0, use_polling=use_polling
            )
        return WatcherStatus(
            self._state,
            self._message,
            self.folder,
            self._polling_runs(),
            pending,
            in_progress,
            ignored,
            ignored_names,
            use_polling,
        )

    def _polling_runs(self) -> bool:
        """Whether the polling observer watches the folder now: not while it is not
        watched (stopped, failed), whichever observer the last run had."""
        return self._polling and self.watching

    @property
    def answering(self) -> bool:
        """False while a try at starting is said not to answer (the state is then
        ``error``, saying so)."""
        return self._start_not_answering is None

    @property
    def watching(self) -> bool:
        """Whether the folder is watched (files in it noticed and counted), paused or
        not; False while stopped, and while it has failed to start (also once paused:
        nothing looks at the folder until resumed)."""
        return self._run is not None and self._state in (
            WatcherState.RUNNING,
            WatcherState.PAUSED,
        )

    @property
    def folder(self) -> Path:
        run = self._run
        return run.layout.root if run else self.settings.resolved_watch_folder

    def start(self, *, paused: bool = False) -> WatcherStatus:
        """Create the folder (and ``processed/``, ``failed/``), start watching it and
        take in the files already there. A failure is the ``error`` state, not an
        exception, and is tried again by itself (:meth:`_failing`).

        Args:
            paused: start paused (the clinician paused it before the app last closed):
                the files already there wait for :meth:`resume`, none is read first.
        """
        with self._control:
            if self._state in (WatcherState.RUNNING, WatcherState.PAUSED):
                return self.status
            self._cancel_retry()
            self._retry_s = None  # asked for: the backoff starts again
            self._paused = False
            self._stop_asked = False
            # Its caller says when it does not answer (ophthai serve, the window).
            with self._trying_to_start(say_if_hung=False):
                self._try_start(hold=paused)
            if paused:
                self.pause()  # a start that failed: its tries wait for resume()
            return self.status

    @contextlib.contextmanager
    def _trying_to_start(self, *, say_if_hung: bool) -> Iterator[None]:
        """Around a try at starting (the control lock held): while it runs,
        :meth:`say_start_not_answering` can make the state say that it does not answer;
        with ``say_if_hung`` (a resume, a try again after a failure: nobody else waits
        for them) it is said after :data:`ANSWER_WITHIN_S`. Once the try returns, its
        own state follows."""
        with self._start_lock:
            self._starting = True
        timer: threading.Timer | None = None
        if say_if_hung:
            message = not_answering_message(self.folder, ANSWER_WITHIN_S)
            timer = threading.Timer(ANSWER_WITHIN_S, self._say_try_not_answering, (message,))
            timer.name = "watch-folder-answer"
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            with self._start_lock:
                self._starting = False
                if self._start_not_answering is not None:
                    # Said to be hung, and back in the state it was in: say that.
                    self._start_not_answering = None
                    self._publish_state()

    def _say_try_not_answering(self, message: str) -> None:
        """Runs on the timer's thread."""
        if self.say_start_not_answering(message):
            log.error("watch folder: %s", message)

    def say_start_not_answering(self, message: str) -> bool:
        """Make ``message`` the error state while the running :meth:`start` (or a
        resume's or a retry's try at starting) has not returned (a share that does not
        answer holds it), so that the state read and the ``watcher_state`` event say the
        same; the start's own state follows once it returns. Any thread: it does not
        wait behind the start.

        Returns:
            False when no start is running (it returned meanwhile): nothing is said.
        """
        with self._start_lock:
            if not self._starting:
                return False
            self._start_not_answering = message
            self._bus.publish(
                WatcherStateChanged(
                    state=WatcherState.ERROR.value,
                    message=message,
                    folder=str(self.folder),
                    polling=False,  # the try has not started an observer
                    use_polling=self.settings.watch_use_polling,
                )
            )
            return True

    def _try_start(self, *, hold: bool = False) -> WatcherStatus:
        """One try at starting (the control lock held); with ``hold`` the files found
        wait (the caller pauses at once)."""
        self._teardown()
        settings = self.settings
        layout = FolderLayout.under(settings.resolved_watch_folder.expanduser())
        require_mount = settings.watch_folder_require_mount
        if require_mount and layout.root.is_dir() and not os.path.ismount(layout.root.resolve()):
            # The share's mount point, the share not mounted on it (yet): the devices
            # write to the share, not here. Nothing is made in it.
            self._failing(not_mounted_message(layout.root), paused=hold)
            self._schedule_retry()
            return self.status
        try:
            layout.ensure(create_root=self._makes_its_folder())
            layout = FolderLayout.under(layout.root.resolve())
            remove_stale_claims(layout)  # before any file is moved in
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not layout.root.is_dir():
                reason = missing_message(layout.root)
            else:
                reason = _cannot_create(layout, exc)
            self._failing(reason, paused=hold)
            self._schedule_retry()
            return self.status
        run = _Run(
            layout=layout,
            root=str(layout.root),
            extensions=frozenset(e.lower().lstrip(".") for e in settings.watch_extensions),
            pool=ThreadPoolExecutor(self._ingest_threads, thread_name_prefix="watch-folder-ingest"),
        )
        try:
            message = self._start_observer(run)
        except OSError as exc:
            run.pool.shutdown(wait=False)
            self._failing(
                f"cannot watch the folder {layout.root}: {exc.strerror or exc}", paused=hold
            )
            self._schedule_retry()
            return self.status
        with self._lock:
            self._pending.clear()
            self._ignored = (0, ())
            self._in_progress.clear()
            self._stuck.clear()
        self._run = run
        self._paused = hold
        if hold:
            run.holding.set()  # before the settle thread can hand a file on
        self._rescan(run)  # files already waiting
        run.health_due = time.monotonic() + self._rescan_interval_s
        run.thread = threading.Thread(
            target=self._settle_loop, args=(run,), name="watch-folder-settle", daemon=True
        )
        run.thread.start()
        log.info(
            "watch folder started (%s observer, %d files waiting)",
            "polling" if self._polling else "native",
            len(self._pending),
        )
        # Started paused, it is paused from the first state it tells (a client shown
        # "running" for a moment could take in that its files were being read).
        self._set_state(WatcherState.PAUSED if hold else WatcherState.RUNNING, message)
        self._recovered()
        return self.status

    def _makes_its_folder(self) -> bool:
        """Whether a missing watch folder is made, at a start and at each try after it
        went away: the default one (in the data folder) is; a configured one is not:
        missing, it is most likely a share not mounted (or a NAS rebooting), and a
        folder made at its mount point would be watched while the device writes to the
        share."""
        settings = self.settings
        return settings.watch_folder_path is None and not settings.watch_folder_require_mount

    def _makes_again(self, run: _Run) -> bool:
        """Whether the folder, gone while watched, is made again: the default one deleted
        from the data folder is; not where the data folder went with it (moved, or its
        disk unplugged: made again by the umask, it would be open to other accounts), nor
        where the default path is a link (to a share, most likely: a folder made at its
        target would be watched while the device writes to the share)."""
        default = self.settings.resolved_watch_folder.expanduser()
        return (
            self._makes_its_folder()
            and not os.path.islink(default)
            and os.path.isdir(os.path.dirname(run.root))
        )

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop watching, and trying again after a failure; files being taken in are
        finished first, waiting at most ``timeout_s`` for them. Safe to repeat.

        Returns:
            Whether every thread of the watcher ended: False when an ingest still reads
            a file (a share that does not answer) after ``timeout_s``. Its file is not
            moved before its commit, so it stays in the folder (or is filed once its
            commit is done) and is taken in at the next start; a process that exits
            meanwhile leaves what a crash would, which the next start repairs. False
            too when a try at starting again still waits on the share after
            ``timeout_s``: it stops the watcher itself once it returns.
        """
        if not self._control.acquire(timeout=timeout_s):
            self._stop_asked = True
            log.warning("watch folder: not stopped yet: a try at starting it does not return")
            return False
        try:
            self._stop_asked = False
            was = self._state
            self._cancel_retry()
            self._retry_s = None
            self._failure_told = False
            stopped = self._teardown(timeout_s)
            if was is not WatcherState.STOPPED:
                log.info("watch folder stopped")
            self._set_state(WatcherState.STOPPED, "")
            return stopped
        finally:
            self._control.release()

    def pause(self) -> None:
        """Stop taking files in (the few being read finish; the rest of a burst waits for
        :meth:`resume`); keep noticing them. A watch folder in error stops trying again
        until :meth:`resume`."""
        with self._control:
            if self._state in (WatcherState.RUNNING, WatcherState.ERROR):
                failed = self._state is WatcherState.ERROR
                self._cancel_retry()
                self._paused = True
                if self._run is not None:
                    self._run.holding.set()  # a burst's files not read yet wait for resume()
                message = ""
                if failed:
                    reason = self._message.partition("; retrying in ")[0]
                    message = f"{reason}; not tried again until resumed"
                self._set_state(WatcherState.PAUSED, message)

    def resume(self) -> None:
        """Take in again, starting with the files that arrived while paused (and try a
        watch folder that had failed again at once)."""
        with self._control:
            if self._state is WatcherState.PAUSED:
                self._paused = False
                self._retry_s = None
                if self._run is None:  # it had failed to start
                    with self._trying_to_start(say_if_hung=True):
                        self._try_start()
                    if self._stop_asked:  # stop() gave up waiting for this try
                        self.stop()
                    return
                self._run.holding.clear()
                self._run.health_due = 0.0  # not checked while paused: check it now
                message = "" if self._message.endswith("until resumed") else self._message
                self._set_state(WatcherState.RUNNING, message)
                self._wake.set()

    # Failing and trying again (control lock held) ---------------------------------------

    def _next_retry_s(self) -> float:
        """The wait before the next try: doubled after each failure, up to the most."""
        if self._retry_s is None:
            self._retry_s = self._retry_first_s
        else:
            self._retry_s = min(self._retry_s * 2, self._retry_max_s)
        return self._retry_s

    def _failing(self, reason: str, *, paused: bool = False) -> float:
        """The error state saying when the next try is; a notification at the first
        failure only. Returns the wait before the next try. ``paused``: a start paused
        (the caller pauses at once, which stops the tries until resumed)."""
        delay = self._next_retry_s()
        self._set_state(WatcherState.ERROR, f"{reason}; retrying in {delay:g} s")
        if not self._failure_told:
            self._failure_told = True
            again = (
                "it is paused: it is tried again once resumed"
                if paused
                else "it is tried again by itself"
            )
            self._notify(
                f"The watch folder is not being watched ({reason}). Scans written to it "
                f"wait there and are taken in once it is back; {again}.",
                NotificationType.CRITICAL,
            )
        return delay

    def _recovered(self) -> None:
        """Watched again after a failure: one notification, the backoff reset."""
        self._retry_s = None
        if self._failure_told and not self._stop_asked:
            self._failure_told = False
            self._notify(
                "The watch folder is watched again; the scans that waited are taken in.",
                NotificationType.SUCCESS,
            )

    def _notify(self, message: str, kind: NotificationType) -> None:
        if self._notifications is None:
            return
        try:
            self._notifications.create_notification(message, type=kind, actor=WATCHER_SYSTEM_ACTOR)
        except Exception as exc:  # the database may be down too: the state still says it
            log.error("watch folder: could not notify: %s", safe_description(exc))

    def _schedule_retry(self) -> None:
        """Try starting again after the current wait, on a timer thread."""
        self._cancel_retry()
        generation = self._retry_generation
        timer = threading.Timer(self._retry_s or self._retry_first_s, self._retry, (generation,))
        timer.name = "watch-folder-retry"
        timer.daemon = True
        self._retry_timer = timer
        timer.start()

    def _cancel_retry(self) -> None:
        self._retry_generation += 1
        timer, self._retry_timer = self._retry_timer, None
        if timer is not None:
            timer.cancel()

    def _retry(self, generation: int) -> None:
        """Runs on the timer's thread."""
        with self._control:
            if generation != self._retry_generation or self._state is not WatcherState.ERROR:
                return  # stopped, paused or started meanwhile
            self._retry_timer = None
            try:
                with self._trying_to_start(say_if_hung=True):
                    self._try_start()
            except Exception as exc:  # never let the retries die silently
                log.error("watch folder: could not try again: %s", safe_description(exc))
            if self._stop_asked:  # stop() gave up waiting for this try
                self.stop()

    def is_idle(self) -> bool:
        """No file is waiting to settle or being taken in."""
        with self._lock:
            return not self._pending and not self._in_progress

    # Setting up and tearing down -----------------------------------------------------

    def _start_observer(self, run: _Run) -> str:
        """Start the native observer, or the polling one when asked for or when native
        events are unavailable (e.g. inotify's watch limit); returns a message for the
        status."""
        message = ""
        poll_s = self.settings.watch_poll_seconds
        run.folder_id = _folder_id(run.root)
        run.mounted = os.path.ismount(run.root)
        if not self.settings.watch_use_polling:
            observer: BaseObserver
            if sys.platform.startswith("linux"):
                _no_move_pairing_delay()
            try:
                # Full events (inotify): a file renamed in from another folder is a move
                # (whole at once: the fast path) rather than a creation (two steady
                # checks, ~100 ms, in case a writer still has it open).
                observer = Observer(generate_full_events=True)  # type: ignore[call-arg]
            except TypeError:  # another platform's observer, or watchdog's fallback
                observer = Observer()
            try:
                observer.schedule(
                    _Handler(self, run), run.root, recursive=False, event_filter=EVENT_FILTER
                )
                observer.start()
            except OSError as exc:
                log.warning("file events unavailable (%s); polling instead", exc.strerror or exc)
                message = (
                    f"file events unavailable ({exc.strerror or exc}); polling every {poll_s:g} s"
                )
            else:
                run.observer = observer
                run.inotify = type(observer).__name__.startswith("Inotify")
                self._polling = False
                return message
        observer = PollingObserver(timeout=poll_s)
        observer.schedule(_Handler(self, run), run.root, recursive=False, event_filter=EVENT_FILTER)
        observer.start()
        run.observer = observer
        run.inotify = False
        self._polling = True
        return message

    def _teardown(self, timeout_s: float = 10.0) -> bool:
        """Stop the run's threads, waiting ``timeout_s`` in all; whether they ended."""
        run, self._run = self._run, None
        if run is None:
            return True
        deadline = time.monotonic() + timeout_s
        run.stopping.set()
        run.holding.set()
        self._wake.set()
        if run.observer is not None:
            run.observer.stop()
            if run.observer.is_alive():
                run.observer.join(max(0.0, deadline - time.monotonic()))
        if run.thread is not None and run.thread is not threading.current_thread():
            run.thread.join(max(0.0, deadline - time.monotonic()))
        # Files not read yet are never started; those being read are waited for, as
        # long as the deadline allows (a share that hangs can hold a read for good).
        run.pool.shutdown(wait=False, cancel_futures=True)
        _done, left = wait_for_futures(
            set(run.futures), timeout=max(0.0, deadline - time.monotonic())
        )
        if left:
            # A count, never the names: a file name can hold a patient's name.
            log.warning(
                "watch folder: stopped without waiting for %d file(s) still being read; "
                "each stays in the folder until its commit and is taken in at the next "
                "start",
                len(left),
            )
        with self._lock:
            self._pending.clear()
            self._ignored = (0, ())
            self._in_progress.clear()
        return not left

    def _set_state(self, state: WatcherState, message: str) -> None:
        if state is self._state and message == self._message:
            return
        self._state, self._message = state, message
        if state is WatcherState.ERROR:
            log.error("watch folder: %s", message)
        with self._start_lock:  # said after a hung start's error: the state again
            self._start_not_answering = None
            self._publish_state()

    def _publish_state(self) -> None:
        self._bus.publish(
            WatcherStateChanged(
                state=self._state.value,
                message=self._message,
                folder=str(self.folder),
                polling=self._polling_runs(),
                use_polling=self.settings.watch_use_polling,
            )
        )

    # Noticing files (observer thread, and the settle thread's rescans) ----------------

    def _eligible(self, run: _Run, name: str) -> bool:
        return not ignored_for_its_name(name) and _allowed(run, name)

    def _noticed(self, run: _Run, path: str, kind: str) -> None:
        """A file event (observer thread): update the file's settle bookkeeping."""
        if run.stopping.is_set() or os.path.dirname(path) != run.root:
            return
        name = os.path.basename(path)
        now = time.monotonic()
        with self._lock:
            if kind == "deleted":
                self._pending.pop(name, None)
                self._stuck.pop(name, None)
                return
            urgent = False
            candidate = self._pending.get(name)
            if candidate is None:
                if kind in ("opened", "closed_no_write") or name in self._in_progress:
                    return
                if not self._eligible(run, name):
                    return
                self._stuck.pop(name, None)
                candidate = _Candidate(next_check=now + self._settle_interval_s, changed_at=now)
                self._pending[name] = candidate
                if run.inotify and PROC_FDS and kind == "moved":
                    candidate.evidence = _Evidence.RENAMED
                    candidate.next_check = now
                    urgent = True
                elif run.inotify and PROC_FDS and kind == "created":
                    candidate.evidence = _Evidence.QUIET
                    candidate.next_check = now + self._confirm_s
            if kind == "modified":
                candidate.stable = 0
                candidate.closed_seen = False
                candidate.evidence = _Evidence.NONE
            elif kind == "opened":
                candidate.opens += 1
                candidate.evidence = _Evidence.NONE
            elif kind in ("closed", "closed_no_write"):
                candidate.opens = max(0, candidate.opens - 1)
                if kind == "closed":
                    candidate.closed_seen = True
                if candidate.closed_seen and candidate.opens == 0:
                    candidate.evidence = _Evidence.CLOSED
                    candidate.stamp = None  # take a fresh baseline now
                    candidate.stable = 0
                    candidate.next_check = now
                    urgent = True
        if urgent:
            self._wake.set()

    def _folder_deleted(self, run: _Run) -> None:
        """The watched folder itself was deleted (observer thread): check it now rather
        than at the next rescan, so the error state and its notification come at once."""
        run.health_due = 0.0
        self._wake.set()

    def _rescan(self, run: _Run) -> None:
        """List the folder: take note of files no event told us about."""
        try:
            with os.scandir(run.root) as entries:
                found = []
                ignored = set()
                for entry in entries:
                    if not self._eligible(run, entry.name):
                        if (
                            _allowed(run, entry.name)
                            and ignored_for_its_name(entry.name)
                            and not entry.name.startswith(APPLE_DOUBLE_PREFIX)
                            and not entry.is_dir(follow_symlinks=False)
                        ):
                            ignored.add(entry.name)
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if not stat.S_ISDIR(info.st_mode):
                        found.append((entry.name, FileStamp.of(info)))
        except OSError as exc:
            log.debug("watch folder: cannot list the folder: %s", exc.strerror)
            return
        now = time.monotonic()
        with self._lock:
            for name, stamp in found:
                if name in self._pending or name in self._in_progress:
                    continue
                stuck = self._stuck.get(name)
                if stuck is not None:
                    if stuck == stamp:
                        continue
                    del self._stuck[name]
                self._pending[name] = _Candidate(
                    next_check=now + self._settle_interval_s, changed_at=now
                )
        self._note_ignored(run, frozenset(ignored))

    def _note_ignored(self, run: _Run, listed: frozenset[str]) -> None:
        """Keep the files the listing found left for their names, where the listing
        before found them too: a writer's temporary name (``tmp_123.png``, renamed once
        written) lasts moments, not a rescan. The window and API clients hear of a
        change as a ``watcher_state`` event; the log gives the count, never the names (a
        file name can hold a patient's name)."""
        lasting = listed & run.ignored_listed
        run.ignored_listed = listed
        shown = tuple(sorted(shown_name(name) for name in lasting)[:IGNORED_NAMES_SHOWN])
        with self._lock:
            # A stopped run's late listing (a share that held it past the stop's wait)
            # would give the next run, or a stopped watcher, its files.
            if self._run is not run or self._ignored == (len(lasting), shown):
                return
            self._ignored = (len(lasting), shown)
        if lasting:
            log.info(
                "watch folder: %d file(s) left in the folder for their names (hidden or "
                "temporary names); renamed, they are taken in",
                len(lasting),
            )
        with self._start_lock:  # in order with the state's own events (_set_state)
            if self._run is run and self._start_not_answering is None:
                self._publish_state()

    # Settling (settle thread) -------------------------------------------------------

    def _settle_loop(self, run: _Run) -> None:
        if not run.stopping.is_set():
            self._ingest.warm_up()  # files noticed meanwhile wait for it, as they would anyway
        while not run.stopping.is_set():
            self._wake.clear()  # before looking, so a wake-up after this is never lost
            now = time.monotonic()
            with self._lock:
                due = min((c.next_check for c in self._pending.values()), default=now + 1.0)
            self._wake.wait(max(0.0, min(due - now, self._settle_interval_s)))
            if run.stopping.is_set():
                break
            now = time.monotonic()
            try:
                if now >= run.health_due:
                    # Every rescan; while the folder is away, when the backoff says (and
                    # not while paused: resuming checks at once).
                    retry_in_s = None if self._paused else self._check_health(run)
                    run.health_due = now + (
                        self._rescan_interval_s if retry_in_s is None else retry_in_s
                    )
                    self._rescan(run)
                if not self._paused and self._state is not WatcherState.ERROR:
                    self._check_due(run, now)
            except Exception as exc:  # never let the watcher die silently
                log.error("watch folder: settle check failed: %s", safe_description(exc))

    def _check_due(self, run: _Run, now: float) -> None:
        with self._lock:
            due = [name for name, c in self._pending.items() if c.next_check <= now]
        if not due:
            return
        stats: list[tuple[str, os.stat_result | None]] = []
        for name in due:
            try:
                stats.append((name, os.lstat(os.path.join(run.root, name))))
            except FileNotFoundError:
                stats.append((name, None))
            except OSError:
                continue
        ready: list[str] = []
        ask_proc: list[str] = []
        with self._lock:
            for name, info in stats:
                candidate = self._pending.get(name)
                if candidate is None:
                    continue
                if info is None or stat.S_ISDIR(info.st_mode):
                    del self._pending[name]
                    continue
                if not stat.S_ISREG(info.st_mode):
                    ready.append(name)  # a link, a FIFO...: refused without being read
                    continue
                stamp = FileStamp.of(info)
                if stamp == candidate.stamp:
                    candidate.stable += 1
                else:
                    candidate.stamp, candidate.stable, candidate.changed_at = stamp, 0, now
                fast = candidate.evidence is not _Evidence.NONE and candidate.opens == 0
                candidate.next_check = now + (self._confirm_s if fast else self._settle_interval_s)
                if stamp.size == 0 and now - candidate.changed_at < self._empty_grace_s:
                    continue
                if fast and candidate.evidence is _Evidence.CLOSED:
                    # Closed by its writer with no other handle open: complete. The
                    # ingest reads it against this stamp, so a writer that comes back
                    # is noticed there.
                    ready.append(name)
                else:
                    steady = candidate.stable >= self._settle_checks or (
                        fast and (candidate.evidence is _Evidence.RENAMED or candidate.stable >= 1)
                    )
                    if steady:
                        ask_proc.append(name)
        writing: set[str] = set()
        if ask_proc:
            paths = {os.path.join(run.root, name): name for name in ask_proc}
            writing = {paths[p] for p in files_open_for_writing(list(paths))}
            ready.extend(name for name in ask_proc if name not in writing)
        with self._lock:
            for name in writing:
                candidate = self._pending.get(name)
                if candidate is not None:
                    candidate.stable = 0
                    candidate.evidence = _Evidence.NONE
            for name in ready:
                candidate = self._pending.pop(name, None)
                if candidate is None:
                    continue
                self._in_progress.add(name)
                try:
                    future = run.pool.submit(self._take_in, run, name, candidate.stamp)
                except RuntimeError:  # shutting down
                    self._in_progress.discard(name)
                else:
                    run.futures.add(future)
                    future.add_done_callback(run.futures.discard)

    def _take_in(self, run: _Run, name: str, stamp: FileStamp | None) -> None:
        """Runs on an ingest thread."""
        path = run.layout.root / name
        retry_in_s: float | None = None
        stuck = False
        try:
            result = self._ingest.ingest_file(path, run.layout, expected=stamp, abandon=run.holding)
            stuck = result.moved_to is None
            self._storage_waits(run, None)
        except FileNotSettled:
            retry_in_s = self._settle_interval_s
        except FileVanished:
            pass
        except ChangeRolledBack:
            # The database answers (it ended this commit to end a deadlock): no outage
            # to say, the file is tried again.
            retry_in_s = STORAGE_RETRY_S
        except DatabaseFileGone:
            self._storage_waits(run, WAITING_FOR_DATABASE_FILE)  # said once, as below
            retry_in_s = STORAGE_RETRY_S
        except DatabaseUnavailable:
            self._storage_waits(run, WAITING_FOR_DATABASE)  # said once, not per file and try
            retry_in_s = STORAGE_RETRY_S
        except NoRoomToFile:
            # Taken in (or refused), recorded and told: moved at a later try, once there
            # is room, without being told again. Not skipped as a file that cannot be
            # moved is: nothing would try it again until a restart.
            self._storage_waits(run, WAITING_FOR_ROOM_TO_FILE)
            retry_in_s = STORAGE_RETRY_S
        except NoRoom:
            # Not a bad file: it stays in the folder (never failed/) until there is room.
            self._storage_waits(run, WAITING_FOR_ROOM)
            retry_in_s = STORAGE_RETRY_S
        except ImageStoreUnwritable as exc:
            # Said once, with the reason, not per file and try (no file is named in it).
            what_to_do = exc.folder and ImageStoreUnwritable.what_to_do(exc.folder)
            reason = f"{exc.message}; {what_to_do}" if what_to_do else exc.message
            self._storage_waits(run, WAITING_FOR_IMAGE_STORE, reason)
            retry_in_s = STORAGE_RETRY_S
        except StorageError as exc:
            # Another storage failure of this file (its record refused by the database):
            # not the image store's, nor said as such; tried again.
            log.error("watch folder: storage failed, will retry: %s", exc.message)
            retry_in_s = STORAGE_RETRY_S
        except Exception as exc:
            # Never the exception's text: an OSError names the file, a database error
            # quotes the values of its statement.
            log.error(
                "watch folder: a file could not be taken in; it is left in place: %s",
                safe_description(exc),
            )
            stuck = True
        current: FileStamp | None = None
        if (stuck or retry_in_s is None) and not run.stopping.is_set():
            # Not under the bookkeeping lock: on a share that stops answering this can
            # hang, and the status bar (GUI thread) and the API count files under it.
            # A file written under the name from here on is found by the next rescan.
            with contextlib.suppress(OSError):  # gone: nothing to skip or take
                current = FileStamp.of(os.lstat(path))
        now = time.monotonic()
        with self._lock:
            self._in_progress.discard(name)
            if run.stopping.is_set():
                return
            if current is not None and not stuck:
                # Moved away (or vanished), yet a file has the name: one written again
                # under it while this one was taken in. Its events came while the name
                # was in progress and were not acted on; take it in now, not at the
                # next rescan.
                retry_in_s = self._settle_interval_s
            elif current is not None and stamp is not None and current != stamp:
                retry_in_s = self._settle_interval_s  # rewritten meanwhile: look again
            elif current is not None:
                # Left in place (could not be moved): skip it until it changes.
                self._stuck[name] = current
            if retry_in_s is not None:
                self._pending[name] = _Candidate(next_check=now + retry_in_s, changed_at=now)
        if retry_in_s is not None:
            self._wake.set()

    def _storage_waits(self, run: _Run, why: str | None, reason: str = "") -> None:
        """Say (the running state's message, and once in the log, with ``reason`` where
        given) that new files wait in the folder for the storage (``why``: one of
        :data:`STORAGE_WAITS`), or (None) that they are taken in again. Ingest thread."""
        waiting = self._message if self._message in STORAGE_WAITS else None
        if why == waiting:
            return  # the usual case: nothing changes
        # Never wait for the control lock: stop() holds it while it waits for this
        # thread. Starting, stopping or pausing sets the state itself; a file's next
        # try says it otherwise.
        if not self._control.acquire(blocking=False):
            return
        try:
            if (
                self._run is not run
                or run.stopping.is_set()
                or self._state is not WatcherState.RUNNING
                or why == (self._message if self._message in STORAGE_WAITS else None)
            ):
                return
            if why is not None:
                if self._message not in STORAGE_WAITS:
                    run.message_before_outage = self._message
                log.warning(f"{STORAGE_WAITS[why]} ({reason})" if reason else STORAGE_WAITS[why])
                self._set_state(WatcherState.RUNNING, why)
            else:
                message, run.message_before_outage = run.message_before_outage, ""
                if self._message == WAITING_FOR_DATABASE:
                    log.info("watch folder: the database answers; files are taken in again")
                elif self._message == WAITING_FOR_IMAGE_STORE:
                    log.info("watch folder: the image store can be written; files are taken in")
                else:
                    log.info("watch folder: there is room again; files are taken in again")
                self._set_state(WatcherState.RUNNING, message)
        finally:
            self._control.release()

    def _check_health(self, run: _Run) -> float | None:
        """Notice a folder that went away (an unplugged share) or an observer that died,
        and recover when the folder is back. Returns how long to wait before checking
        again while it fails (the backoff), None when it is fine."""
        # Never wait for the control lock: stop() holds it while it joins this thread.
        if not self._control.acquire(blocking=False):
            return None
        try:
            return self._recover(run)
        finally:
            self._control.release()

    def _recover(self, run: _Run) -> float | None:
        if self._run is not run or run.stopping.is_set() or self._paused:
            return None
        folder_ok = os.path.isdir(run.root)
        observer = run.observer
        observer_ok = (
            _folder_id(run.root) == run.folder_id  # not another folder put in its place
            and observer is not None
            and observer.is_alive()
            and bool(observer.emitters)
            and all(emitter.is_alive() for emitter in observer.emitters)
        )
        if folder_ok and observer_ok:
            try:
                made_again = _filing_folders_back(run.layout)
            except OSError as exc:  # a file or a link put where one of them should be
                return self._failing(_cannot_create(run.layout, exc))
            if made_again or self._state is WatcherState.ERROR:
                # Files that could not be filed meanwhile (their scan is stored) are
                # filed at the rescan that follows, as at a start, without a second scan.
                with self._lock:
                    self._stuck.clear()
            if self._state is WatcherState.ERROR:
                self._set_state(WatcherState.RUNNING, "")
                self._recovered()
            return None
        if not folder_ok and not self._makes_again(run):
            return self._failing(missing_message(Path(run.root)))
        if run.mounted and not os.path.ismount(run.root):
            # The share was unmounted: the empty folder under it is not to be watched
            # (the devices write to the share); watched again once it is mounted again.
            return self._failing(not_mounted_message(Path(run.root)))
        try:
            if not folder_ok:  # the default folder, deleted: made again, as at a start
                with contextlib.suppress(FileExistsError):  # made meanwhile: ensure() checks
                    os.mkdir(run.root)  # itself only, never the data folder above it
                log.warning("watch folder: the folder %s was deleted; made again", run.root)
            run.layout.ensure()
            if observer is not None:
                observer.stop()
                observer.join(1.0)
            message = self._start_observer(run)
        except OSError as exc:
            return self._failing(f"cannot watch the folder {run.root}: {exc.strerror or exc}")
        self._set_state(WatcherState.RUNNING, message)
        self._recovered()
        return None


def _allowed(run: _Run, name: str) -> bool:
    """Whether ``name``'s extension is one the watch folder takes in."""
    _stem, dot, ext = name.rpartition(".")
    return bool(dot) and ext.lower() in run.extensions


def _filing_folders_back(layout: FolderLayout) -> bool:
    """Make ``processed/`` or ``failed/`` again where one went while the folder was
    watched (deleted); returns whether one was.

    Raises:
        NotADirectoryError: a file (or a link to nothing) stands where one should be:
            each scan would be stored and then could not be filed, the folder looking
            fine, so the watch folder says so and the files wait, as at a start.
    """
    made = False
    for folder in (layout.processed, layout.failed):
        if not os.path.isdir(folder):
            make_filing_folder(folder)
            made = True
    return made


def _cannot_create(layout: FolderLayout, exc: OSError) -> str:
    """Why the watch folder (or its ``processed/`` or ``failed/``) could not be made,
    naming the folder and what is in the way (a file, a dangling link, a folder this
    account may not write in), as the state's message and the notification say it."""
    failed = Path(exc.filename) if exc.filename else layout.root
    if failed in (layout.processed, layout.failed):
        what, path = f"the watch folder's {failed.name}/ folder", failed
    else:
        what, path = "the watch folder", layout.root
    return cannot_create(what, path, exc, retried=True).message.rstrip(".")
