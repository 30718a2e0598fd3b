"""The content-addressed image store.

Each image is one file named by the SHA-256 of its bytes, under a two-character fan-out
folder: ``images/ab/ab12…``. Storing the same bytes twice writes nothing new. Files are
written to a temporary name and renamed into place, so a crash never leaves a partial
image under a real name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ophthai_desktop.core.errors import NotFound, StorageError

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
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
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
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
            raise StorageError(f"cannot write to the image store: {exc.strerror}") from exc
        return StoredImage(digest, target, created=True)

    def sync(self, sha256: str) -> None:
        """Wait until the stored image is on disk (after ``put(..., sync=False)``)."""
        try:
            fd = os.open(self.path_for(sha256), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot write to the image store: {exc.strerror}") from exc

    def read(self, sha256: str) -> bytes:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound("the image file is missing from the store") from exc

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def discard(self, sha256: str) -> None:
        """Delete an image file; callers make sure nothing refers to it any more."""
        try:
            self.path_for(sha256).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not delete an unreferenced image: %s", exc.strerror)
