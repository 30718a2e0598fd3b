"""The content-addressed image store.

Each image is one file named by the SHA-256 of its bytes, under a two-character fan-out
folder: ``images/ab/ab12…``. Storing the same bytes twice writes nothing new. Files are
written to a temporary name and renamed into place, so a crash never leaves a partial
image under a real name.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from ophthai_desktop.core.errors import (
    NO_ROOM_ERRNOS,
    ImageStoreUnwritable,
    NoRoom,
    NotFound,
    StorageError,
)
from ophthai_desktop.core.storage.folders import cannot_create

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FAN_OUT = re.compile(r"^[0-9a-f]{2}$")
#: The temporary name an upload had beside the stored images before it was written in
#: ``.staging/``: ``tempfile.mkstemp(prefix=".incoming-")``, whose 8 random characters
#: are lowercase letters, digits and ``_``. No stored image is named so (they are hashes).
_OLD_UPLOAD = re.compile(r"^\.incoming-[a-z0-9_]{8}$")

#: ``copy_file_range`` errors that mean "not here": copy through the process instead.
_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}
)

#: Whether a file must be open for writing to be flushed: Windows' ``os.fsync``
#: (``_commit``, ``FlushFileBuffers``) refuses a read-only handle with ``EBADF``.
FLUSH_NEEDS_WRITE = os.name == "nt"

#: Age after which a staged copy is a crash's leftover.
STALE_STAGING_S = 3600.0

#: An empty folder made in the store once it was found free of old uploads
#: (:meth:`_clear_old_uploads`): this version never leaves any there, so the store's
#: folders are not listed again at each start (0.06 s at 100,000 images with the disk
#: cached, seconds from a cold disk). A folder, not a file: every file in the store is
#: an image.
OLD_UPLOADS_CLEARED = ".old-uploads-cleared"


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    path: Path
    created: bool  # False when the same bytes were already stored


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageStore:
    """Files on disk named by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise cannot_create("the image store", root, exc) from exc
        self._staging = root / ".staging"
        # Before any put() of this store; another process sharing it is covered by the
        # age rule of both clean-ups.
        self._clear_stale_staging()
        self._clear_old_uploads()
        # Hashes being stored by a transaction not yet committed (see pinned).
        self._pins: Counter[str] = Counter()
        self._pins_lock = threading.Lock()

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise NotFound("no such image")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes, *, sha256: str | None = None, sync: bool = True) -> StoredImage:
        """Store ``data``; returns its hash and whether a new file was written.

        ``sha256``: the hash of ``data`` where the caller has just computed it (hashing
        a large image twice is measurable); never a hash of other bytes.
        ``sync=False``: return before the bytes are on disk; the caller keeps its own
        copy until :meth:`sync` says they are (the watch folder keeps the source file).
        """
        digest = sha256 or sha256_hex(data)
        target = self.path_for(digest)
        if target.exists() and target.stat().st_size == len(data):
            return StoredImage(digest, target, created=False)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Written in the staging folder, as the watch folder's copies are: one that a
            # crash leaves behind is cleared with theirs (beside the images nothing did).
            self._staging.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._staging, prefix="incoming-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    if sync:
                        os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise _write_failed(exc, self.root) from exc
        return StoredImage(digest, target, created=True)

    def stage_copy(self, source_fd: int, size: int) -> Path | None:
        """Copy ``size`` bytes of an open file into a new temporary file in the store.

        The copy is made by the kernel (``os.copy_file_range``), without passing the
        bytes through this process: on a small machine that is several times cheaper
        than writing bytes already read. The caller reads the copy back (from the page
        cache) to hash and check it, so what is kept is exactly what was checked, even
        if the source changes meanwhile; then :meth:`keep_staged` or
        :meth:`drop_staged`. None where the kernel cannot copy (not Linux, a file
        system that refuses): the caller reads the source and uses :meth:`put`.
        """
        copy = getattr(os, "copy_file_range", None)
        if copy is None:
            return None
        try:
            self._staging.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._staging, prefix="copy-")
        except OSError as exc:
            raise _write_failed(exc, self.root) from exc
        try:
            offset = 0
            while offset < size:
                copied = copy(source_fd, fd, size - offset, offset)
                if copied == 0:  # shorter than it said: the caller sees the size differ
                    break
                offset += copied
        except OSError as exc:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            if exc.errno in _NO_KERNEL_COPY:
                return None
            raise _write_failed(exc, self.root) from exc
        os.close(fd)
        return Path(tmp)

    def keep_staged(self, staged: Path, sha256: str) -> StoredImage:
        """Put a staged copy in place under ``sha256``, the hash of its bytes (the
        caller's own, just computed); a copy already there is kept instead."""
        target = self.path_for(sha256)
        try:
            if target.exists() and target.stat().st_size == staged.stat().st_size:
                staged.unlink(missing_ok=True)
                return StoredImage(sha256, target, created=False)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        except OSError as exc:
            self.drop_staged(staged)
            raise _write_failed(exc, self.root) from exc
        return StoredImage(sha256, target, created=True)

    def drop_staged(self, staged: Path) -> None:
        try:
            staged.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not delete a staged image copy: %s", exc.strerror)

    def _clear_stale_staging(self) -> None:
        """Staged copies a crash left behind (an hour old: another process sharing the
        store may be using newer ones)."""
        try:
            entries = list(self._staging.iterdir())
        except OSError:
            return
        cutoff = time.time() - STALE_STAGING_S
        for entry in entries:
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
            except OSError:
                continue

    def _clear_old_uploads(self) -> None:
        """Uploads a crash cut off while they were written beside the stored images
        (``images/ab/.incoming-*``), where versions before ``.staging/`` wrote them and
        left them for good: those of exactly that form, an hour old as staged copies
        (an older version sharing the store may be writing a newer one). Once none is
        left, :data:`OLD_UPLOADS_CLEARED` says so and later starts skip the search."""
        marker = self.root / OLD_UPLOADS_CLEARED
        if marker.is_dir():
            return
        cutoff = time.time() - STALE_STAGING_S
        cleared = 0
        left = 0  # too new to clear, or not cleared
        try:
            folders = [e for e in os.scandir(self.root) if _FAN_OUT.fullmatch(e.name)]
        except OSError:
            return
        for folder in folders:
            try:
                if not folder.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(folder.path) as entries:
                    leftovers = [e for e in entries if _OLD_UPLOAD.fullmatch(e.name)]
            except OSError:
                left += 1
                continue
            for entry in leftovers:
                try:
                    info = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    if info.st_mtime >= cutoff:
                        left += 1
                        continue
                    os.unlink(entry.path)
                    cleared += 1
                except OSError:
                    left += 1
        if cleared:
            log.info("image store: cleared %d unfinished uploads a crash had left", cleared)
        if not left:
            with suppress(OSError):  # searched again at the next start
                marker.mkdir()

    def sync(self, sha256: str) -> None:
        """Wait until the stored image is on disk (after ``put(..., sync=False)``)."""
        flags = (os.O_RDWR | getattr(os, "O_BINARY", 0)) if FLUSH_NEEDS_WRITE else os.O_RDONLY
        try:
            fd = os.open(self.path_for(sha256), flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_failed(exc, self.root) from exc

    def read(self, sha256: str) -> bytes:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound("the image file is missing from the store") from exc

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    @contextmanager
    def pinned(self, sha256: str | None) -> Iterator[None]:
        """Keeps ``sha256``'s file from :meth:`discard_unreferenced` while the caller
        stores it and commits a row that refers to it: enter before :meth:`put`, leave
        after the commit. (None: nothing to keep, for callers with no image.)"""
        if sha256 is None:
            yield
            return
        with self._pins_lock:
            self._pins[sha256] += 1
        try:
            yield
        finally:
            with self._pins_lock:
                self._pins[sha256] -= 1
                if not self._pins[sha256]:
                    del self._pins[sha256]

    def discard_unreferenced(
        self, hashes: set[str], referenced: Callable[[set[str]], set[str]]
    ) -> None:
        """Delete the files of ``hashes`` that ``referenced`` (a query of the committed
        rows) does not name and no writer has :meth:`pinned`. The query runs under the
        pins' lock: a row that refers to a file is either committed before it or pinned
        (or stored after the file is gone, which :meth:`put` then writes again)."""
        with self._pins_lock:
            candidates = hashes - self._pins.keys()
            for sha in candidates - referenced(candidates) if candidates else ():
                self.discard(sha)

    def discard(self, sha256: str) -> None:
        """Delete an image file; callers make sure nothing refers to it any more."""
        try:
            self.path_for(sha256).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not delete an unreferenced image: %s", exc.strerror)


def _write_failed(exc: OSError, root: Path) -> StorageError:
    message = f"cannot write to the image store: {exc.strerror}"
    if exc.errno in NO_ROOM_ERRNOS:
        return NoRoom(message)
    return ImageStoreUnwritable(message, str(root))
