"""One running OphthAI per data folder: the lock that the window and ``ophthai serve``
hold in it while they run.

Two on one folder would both watch the same watch folder, and the second would hand
the first one's running analysis back to the queue as it starts (it takes a running job
for one a crash left), so the analysis runs twice. The lock is stale, and taken over,
once the process that held it is gone (a crash, a kill).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ophthai_desktop.core.errors import Conflict, StorageError
from ophthai_desktop.core.storage.private import (
    PRIVATE_FILE_MODE,
    create_private_folder,
    replace_private_file,
)

if TYPE_CHECKING:
    from PySide6.QtCore import QLockFile

#: The file in the data folder that :func:`instance_lock` holds.
INSTANCE_LOCK = "ophthai-desktop.lock"
#: The file beside the lock in which ``ophthai serve`` writes its process id while it
#: holds the lock (the lock itself names only the process, ``python3``): a window finds
#: a ``serve``, which has no window to show, at once, instead of asking it to show
#: itself until it gives up.
SERVE_MARKER = "ophthai-serve.pid"


def instance_lock(data_dir: Path) -> QLockFile:
    """The data folder's lock (not yet taken), the folder made first.

    Raises:
        StorageError: The data folder cannot be made or written (see
            :func:`create_private_folder`).
    """
    from PySide6.QtCore import QLockFile

    create_private_folder(data_dir)
    lock = QLockFile(str(data_dir / INSTANCE_LOCK))
    lock.setStaleLockTime(0)  # never stale by age: only when its process is gone
    return lock


def hold_data_folder(data_dir: Path) -> QLockFile:
    """Take the data folder's lock at once, as ``ophthai serve`` does (the window asks
    the running one to show itself instead: ``desktop.claim_data_folder``).

    Raises:
        Conflict: Another OphthAI (a window or ``ophthai serve``) runs on the folder.
        StorageError: The folder or its lock file cannot be made or written.
    """
    from PySide6.QtCore import QLockFile

    lock = instance_lock(data_dir)
    if lock.tryLock(0):
        # QLockFile follows the umask; a folder chosen with OPHTHAI_DATA_DIR may be shared.
        with contextlib.suppress(OSError):
            (data_dir / INSTANCE_LOCK).chmod(PRIVATE_FILE_MODE)
        with contextlib.suppress(OSError):  # without it a window waits, then says so
            replace_private_file(data_dir / SERVE_MARKER, str(os.getpid()).encode())
        return lock
    if lock.error() is QLockFile.LockError.LockFailedError:
        pid = lock.getLockInfo()[0]
        if left_by_an_ended_process(lock):
            raise StorageError(stale_lock_refusal(data_dir, pid))
        raise Conflict(
            f"OphthAI already runs on the data folder {data_dir} (process {pid}): a "
            "window or another ophthai serve. Quit it first, or give this one a data "
            "folder of its own (--data-dir)."
        )
    raise StorageError(
        f"the data folder's lock file {data_dir / INSTANCE_LOCK} cannot be written "
        f"({lock.error().name})"
    )


def left_by_an_ended_process(lock: QLockFile) -> bool:
    """Whether ``lock``, which could not be taken, names a process of this machine that
    has ended: QLockFile takes such a stale lock over by writing its file anew, which
    fails where the data folder's disk is full (and reports the lock held). Ended as
    QLockFile judges it: the machine restarted since, no process has the id, or (on
    Linux) the system gave the id since to another program. Not known on Windows, nor
    for another machine's lock (a data folder on a share): False."""
    from PySide6.QtCore import QSysInfo

    pid, host, program = lock.getLockInfo()
    if os.name == "nt" or pid <= 0:
        return False
    written = _lock_file_lines(Path(lock.fileName()))
    machine, boot = [*written, b"", b""][3:5]
    this_machine = bytes(QSysInfo.machineUniqueId().data())
    if machine and this_machine:  # as QLockFile: the machine's id, where both have one
        elsewhere = machine != this_machine
    else:
        elsewhere = host != QSysInfo.machineHostName()
    if elsewhere:
        return False
    if boot and boot != bytes(QSysInfo.bootUniqueId().data()):
        return True  # written before the machine restarted: its process id is anyone's now
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists, another account's (whose program Linux may not say)
        pass
    return _runs_another_program(pid, program)


def _lock_file_lines(lock_file: Path) -> list[bytes]:
    """The lock file's lines as QLockFile writes them (its process id, program, host
    name, machine id and boot id); none where it cannot be read."""
    try:
        return [line.strip() for line in lock_file.read_bytes().split(b"\n")]
    except OSError:
        return []


def _runs_another_program(pid: int, program: str) -> bool:
    """Whether process ``pid`` runs a program other than ``program`` (the name the lock
    gives its holder's), as QLockFile compares them on Linux: a process whose program
    cannot be read is another account's, never the lock's. Not known elsewhere: False."""
    if not Path("/proc/self/exe").exists():
        return False
    try:
        running = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return True
    return Path(running).name != program


def stale_lock_refusal(data_dir: Path, pid: int) -> str:
    """Why the data folder cannot be taken when its lock was left by an ended process."""
    return (
        f"the data folder's lock file {data_dir / INSTANCE_LOCK} was left by OphthAI "
        f"process {pid}, which has ended (a crash?), and cannot be replaced: is the disk "
        "of the data folder full? Free space on it, then start again."
    )


def release_data_folder(data_dir: Path, lock: QLockFile) -> None:
    """Give up what :func:`hold_data_folder` took."""
    with contextlib.suppress(OSError):
        (data_dir / SERVE_MARKER).unlink(missing_ok=True)
    lock.unlock()


def held_by_serve(data_dir: Path, pid: int) -> bool:
    """Whether the process ``pid``, which holds the data folder's lock, is ``ophthai
    serve`` (a marker a crashed serve left names another process)."""
    try:
        return (data_dir / SERVE_MARKER).read_text(encoding="ascii").strip() == str(pid)
    except (OSError, ValueError):
        return False
