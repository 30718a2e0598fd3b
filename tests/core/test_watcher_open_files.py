"""Whether some process still has a file open for writing: asked of the kernel one file
at a time (a read lease), and looked up in ``/proc`` where the kernel will not say."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ophthai_desktop.core import watcher
from ophthai_desktop.core.watcher import files_open_for_writing
from tests.support.images import png_bytes
from tests.support.watch_folder import EventLog, build_watch_app

pytestmark = pytest.mark.skipif(not watcher.LEASES, reason="Linux leases and /proc")

HOLD = """
import sys, time
handle = open(sys.argv[1], sys.argv[2])
print("open", flush=True)
time.sleep(60)
"""


def hold_open(path: Path, mode: str) -> subprocess.Popen[str]:
    """Another process that keeps ``path`` open in ``mode`` until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), mode], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    return holder


def stop(holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.communicate()  # waits, and closes its pipe


@pytest.fixture
def files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    paths = {name: tmp_path / f"{name}.png" for name in ("written", "read", "closed")}
    for path in paths.values():
        path.write_bytes(b"\x89PNG")
    holders = [hold_open(paths["written"], "ab"), hold_open(paths["read"], "rb")]
    yield paths
    for holder in holders:
        stop(holder)


def test_a_writer_in_another_process_is_seen_and_readers_are_not(
    files: dict[str, Path], tmp_path: Path
) -> None:
    asked = [str(p) for p in files.values()] + [str(tmp_path / "gone.png")]
    assert files_open_for_writing(asked) == {str(files["written"])}


def test_a_writer_in_this_process_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "mine.png"
    with path.open("wb"):
        assert files_open_for_writing([str(path)]) == {str(path)}
    assert files_open_for_writing([str(path)]) == set()


def test_where_the_kernel_will_not_say_proc_is_searched(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file another user owns (or one on a network file system) gets no lease."""
    real_fcntl = watcher.fcntl.fcntl
    refused: list[str] = []

    def no_leases(fd: int, command: int, arg: Any = 0) -> Any:
        if command == watcher.fcntl.F_SETLEASE and arg != watcher.fcntl.F_UNLCK:
            refused.append(os.readlink(f"/proc/self/fd/{fd}"))
            raise PermissionError(errno.EACCES, "not the owner")
        return real_fcntl(fd, command, arg)

    monkeypatch.setattr(watcher.fcntl, "fcntl", no_leases)
    asked = [str(p) for p in files.values()]
    assert files_open_for_writing(asked) == {str(files["written"])}
    assert sorted(refused) == sorted(asked)  # each was asked of the kernel first


def test_the_lease_is_given_back_at_once(tmp_path: Path) -> None:
    """A writer that opens the file after the check is not held up by it (a lease kept
    would make its open wait for the kernel's lease-break time, 45 s by default)."""
    path = tmp_path / "later.png"
    path.write_bytes(b"\x89PNG")
    assert files_open_for_writing([str(path)]) == set()
    started = time.monotonic()
    holder = hold_open(path, "ab")
    try:
        assert time.monotonic() - started < 10
        assert files_open_for_writing([str(path)]) == {str(path)}
    finally:
        stop(holder)


@pytest.fixture
def on_a_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``tmp_path`` as if mounted over CIFS or NFSv4, whose kernels refuse a read lease
    whenever the client holds no oplock or delegation, whoever has the file open. The
    list collects every lease asked for."""
    device = os.stat(tmp_path).st_dev
    real_fcntl = watcher.fcntl.fcntl
    asked: list[int] = []

    def share_leases(fd: int, command: int, arg: Any = 0) -> Any:
        if command == watcher.fcntl.F_SETLEASE and arg == watcher.fcntl.F_RDLCK:
            asked.append(fd)
            raise BlockingIOError(errno.EAGAIN, "no oplock held")
        return real_fcntl(fd, command, arg)

    real_types = watcher._read_mount_types
    monkeypatch.setattr(watcher, "_MOUNTS", watcher._MountTypes())
    monkeypatch.setattr(watcher, "_read_mount_types", lambda: {**real_types(), device: "cifs"})
    monkeypatch.setattr(watcher.fcntl, "fcntl", share_leases)
    return asked


def test_on_a_network_share_no_lease_is_asked_and_proc_is_searched(
    files: dict[str, Path], on_a_share: list[int]
) -> None:
    asked = [str(p) for p in files.values()]
    assert files_open_for_writing(asked) == {str(files["written"])}
    assert on_a_share == []


def test_a_file_dropped_on_a_network_share_is_taken_in(
    tmp_path: Path, on_a_share: list[int]
) -> None:
    """Trusting the share's refused leases, the watcher held every file as still being
    written, for ever, while it showed "running"."""
    app = build_watch_app(tmp_path, polling=True)
    log = EventLog(app.bus)
    try:
        app.watcher.start()
        (app.settings.resolved_watch_folder / "scan_OD_OCT.png").write_bytes(png_bytes((64, 48)))
        done = log.wait_finished("scan_OD_OCT.png", timeout_s=15)
    finally:
        app.close()
    assert done["scan_OD_OCT.png"].outcome == "ingested"
