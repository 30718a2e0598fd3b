"""The watch folder survives ``kill -9`` in the middle of a burst: nothing lost, nothing
taken in twice (issue #4).

A real ``ophthai serve`` with the watch folder on (no model: the analyses stay queued)
is killed with SIGKILL three times while a burst of scans is copied in and taken in, at
points chosen by what can be seen from outside (files reaching ``processed/``), never
by the clock: once while a file is half written and most of the burst not copied yet,
once in the middle of taking in a backlog while more files arrive, once right after a
restart while the files waiting at start are being taken in. Then it runs to the end,
and the database, the folders and the image store must hold each scan exactly once.

It found that a kill right after a refused file reached ``failed/`` left it there with
no notification and no ingest record (3 runs in 5 before the fix).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_e2e_serve import STOP_TIMEOUT_S, Server, clean_env, free_port, start
from tests.support.crash import crash_lines
from tests.support.watch_folder import noise_png

pytestmark = pytest.mark.e2e

#: How long the test waits for one observable step (a file filed, the folder drained).
STEP_TIMEOUT_S = 20.0
DISTINCT = 48


@dataclass(frozen=True)
class Scan:
    name: str
    data: bytes
    chunked: bool = False  # written in pieces through one open handle, as a slow copy

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def burst() -> tuple[list[Scan], list[Scan], list[Scan]]:
    """Distinct valid scans (a few KB each), copies of some of them under other names,
    and files that are no image. Deterministic."""
    distinct = [
        Scan(f"burst-{i:02d}.png", noise_png((20 + i % 7, 18 + i % 5), seed=i), chunked=i % 6 == 0)
        for i in range(DISTINCT)
    ]
    # Large enough to arrive in several pieces.
    for i in (6, 30):
        distinct[i] = Scan(distinct[i].name, noise_png((70, 50), seed=1000 + i), chunked=True)
    copies = [Scan(f"copy-of-{i:02d}.png", distinct[i].data) for i in (3, 17, 31, 45, 46)]
    truncated = noise_png((40, 30), seed=999)
    invalid = [
        Scan("notes.png", b"this is a text file, not a scan\n" * 40),
        Scan("cut-short.png", truncated[: len(truncated) // 2], chunked=True),
    ]
    return distinct, copies, invalid


def write(folder: Path, scan: Scan) -> None:
    """Copy one file into the watch folder as a device would: straight under its name."""
    path = folder / scan.name
    if not scan.chunked:
        path.write_bytes(scan.data)
        return
    step = -(-len(scan.data) // 3)
    with path.open("wb") as handle:
        for start_at in range(0, len(scan.data), step):
            handle.write(scan.data[start_at : start_at + step])
            handle.flush()
            time.sleep(0.02)


def filed(folder: Path) -> int:
    """How many files have reached ``processed/`` (the progress the kills key on)."""
    try:
        return len(os.listdir(folder / "processed"))
    except FileNotFoundError:
        return 0


def waiting_in(server: Server) -> int:
    """How many files the server has seen in the watch folder and not yet taken in."""
    answer = httpx.get(f"{server.url}/api/watch-folder", timeout=STEP_TIMEOUT_S)
    return int(answer.raise_for_status().json()["waiting"] or 0)


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Runs:
    """Starts ``ophthai serve`` on the same data folder again and again."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.data = tmp_path / "data"
        self.env = clean_env() | {
            "OPHTHAI_WATCH_FOLDER_ENABLED": "true",
            "HF_HOME": str(tmp_path / "hf"),  # no model anywhere: jobs stay queued
            "HF_HUB_OFFLINE": "1",
        }
        self.servers: list[Server] = []

    def start(self) -> Server:
        cwd = self.tmp_path / f"run-{len(self.servers)}"
        cwd.mkdir()
        args = ["--data-dir", str(self.data), "serve", "--port", str(free_port())]
        server = start(cwd, args, self.env)
        self.servers.append(server)
        return server

    def kill(self, server: Server, folder: Path, copying: str) -> None:
        """SIGKILL ``server`` while the test holds ``copying`` half written in ``folder``,
        once the server says it has a file waiting (that one, at least: open for writing,
        it is not taken in half): the kill lands in the middle of the work whatever the
        server's pace, and the file must still be where it was."""
        wait_for(lambda: waiting_in(server) > 0, "the server to say a file is waiting")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(STOP_TIMEOUT_S)
        server.stop()
        waiting = sorted(p.name for p in folder.iterdir() if p.is_file())
        assert copying in waiting, f"{copying} was taken in half written; waiting: {waiting}"

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    running = Runs(tmp_path)
    yield running
    running.close()


def test_kill_9_in_the_middle_of_a_burst_loses_nothing_and_takes_nothing_in_twice(
    runs: Runs,
) -> None:
    distinct, copies, invalid = burst()
    everything = distinct + copies + invalid
    random.Random(4).shuffle(everything)
    folder = runs.data / "incoming_scans"
    folder.mkdir(parents=True)
    first, second, third = everything[:14], everything[14:24], everything[24:40]
    last = everything[40:]

    # 1. Killed while copying: a dozen files in, a few filed, one file half written.
    server = runs.start()
    for scan in first[:-1]:
        write(folder, scan)
    wait_for(lambda: filed(folder) >= 3, "the first files to be filed")
    half = first[-1]
    with (folder / half.name).open("wb") as handle:
        handle.write(half.data[: len(half.data) // 2])
        handle.flush()
        runs.kill(server, folder, half.name)
        handle.write(half.data[len(half.data) // 2 :])
    for scan in second:  # copied while the app is down: waiting at the next start
        write(folder, scan)

    # 2. Killed in the middle of taking in the backlog while more files arrive, the last
    # of them still being copied (by then, a test held up for 0.4 s saw the server take
    # in all the others).
    holding, killed = threading.Event(), threading.Event()

    def arrive() -> None:
        for scan in third[:-1]:
            write(folder, scan)
        with (folder / third[-1].name).open("wb") as handle:
            handle.write(third[-1].data[: len(third[-1].data) // 2])
            handle.flush()
            holding.set()
            killed.wait(STEP_TIMEOUT_S)
            handle.write(third[-1].data[len(third[-1].data) // 2 :])

    at_start = filed(folder)
    server = runs.start()
    writer = threading.Thread(target=arrive)
    writer.start()
    wait_for(
        lambda: filed(folder) >= at_start + 8 and holding.is_set(),
        "part of the backlog to be filed, and the last file half copied",
    )
    try:
        runs.kill(server, folder, third[-1].name)
    finally:
        killed.set()
        writer.join()
    for scan in last[:-1]:
        write(folder, scan)

    # 3. Killed right after the next start, as the files waiting at start go in, while one
    # more is still being copied. The waiting ones go in together, within a few ms of the
    # second: a test held up that long kills a server that has only the copy left to do.
    copying = last[-1]
    at_start = filed(folder)  # before the start: a test held up after it counts late
    with (folder / copying.name).open("wb") as handle:
        handle.write(copying.data[: len(copying.data) // 2])
        handle.flush()
        server = runs.start()
        wait_for(lambda: filed(folder) >= at_start + 2, "the first waiting files to be filed")
        runs.kill(server, folder, copying.name)
        handle.write(copying.data[len(copying.data) // 2 :])

    # Then it runs to the end: every file leaves the folder, and stops cleanly.
    server = runs.start()
    wait_for(
        lambda: (
            not any(p.is_file() for p in folder.iterdir())
            and len(os.listdir(folder / "failed")) == 2 * len(invalid)
        ),
        "the watch folder to be emptied",
    )
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(STOP_TIMEOUT_S) == 0, server.output()
    assert not crash_lines(server.output())

    check_database(runs.data, distinct, copies, invalid)
    check_folders(folder, distinct, copies, invalid)
    check_image_store(runs.data, distinct)
    check_staged_leftovers_go_after_an_hour(runs)


def check_database(
    data: Path, distinct: list[Scan], copies: list[Scan], invalid: list[Scan]
) -> None:
    """One patient, one scan and one queued analysis per distinct image; the copies and
    the refused files recorded as such."""
    with sqlite3.connect(f"file:{data / 'ophthai.db'}?mode=ro", uri=True) as db:
        scans = db.execute("SELECT id, patient_id, sha256 FROM scans").fetchall()
        patients = {row[0] for row in db.execute("SELECT id FROM patients")}
        jobs = db.execute("SELECT scan_id, patient_id, state FROM jobs").fetchall()
        records = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT sha256, outcome, patient_id, duplicate_count, reason FROM ingested_files"
            )
        }
    by_hash = Counter(sha for _id, _patient, sha in scans)
    expected = {scan.sha256 for scan in distinct}
    assert set(by_hash) == expected, "a scan missing, or one that was never copied in"
    assert [sha for sha, n in by_hash.items() if n > 1] == [], "an image taken in twice"
    assert len(patients) == len(distinct) == len({p for _id, p, _sha in scans})
    scan_of = {scan_id: patient for scan_id, patient, _sha in scans}
    assert sorted(scan_id for scan_id, _p, _s in jobs) == sorted(scan_of), "one job per scan"
    assert all(state == "queued" and scan_of[s] == p for s, p, state in jobs), jobs
    for scan_id, patient, sha in scans:
        outcome, record_patient, _count, _reason = records[sha]
        assert (outcome, record_patient) == ("ingested", patient), scan_id
    for sha, n in Counter(scan.sha256 for scan in copies).items():
        # Each copy is a sighting of its original (a crash between a file's commit and
        # its move counts one more, for the file itself).
        assert records[sha][2] >= n
    for scan in invalid:
        outcome, patient, _count, reason = records[scan.sha256]
        assert outcome == "failed" and patient is None and reason


def check_folders(
    folder: Path, distinct: list[Scan], copies: list[Scan], invalid: list[Scan]
) -> None:
    """Every file filed once, whole, in ``processed/`` or ``failed/``; no empty claim."""
    assert sorted(p.name for p in folder.iterdir()) == ["failed", "processed"]
    processed = {p.name: p.read_bytes() for p in (folder / "processed").iterdir()}
    tagged: Counter[str] = Counter()
    for scan in distinct + copies:
        stem = scan.name.removesuffix(".png")
        plain, duplicate = f"{stem}.png", f"{stem} (duplicate).png"
        present = [name for name in (plain, duplicate) if name in processed]
        assert len(present) == 1, (scan.name, present)
        assert processed.pop(present[0]) == scan.data
        tagged[scan.sha256] += present[0] == duplicate
    assert processed == {}, f"unexpected files in processed/: {sorted(processed)}"
    copied = Counter(scan.sha256 for scan in copies)
    for scan in distinct:
        # Of the n + 1 files with the same bytes, one made the patient; a file whose
        # commit came just before a kill is filed under its own name, never as a duplicate.
        assert tagged[scan.sha256] == copied[scan.sha256], scan.name
    failed = {p.name: p for p in (folder / "failed").iterdir()}
    assert set(failed) == {s.name for s in invalid} | {s.name + ".reason.txt" for s in invalid}
    for scan in invalid:
        assert failed[scan.name].read_bytes() == scan.data
        assert failed[scan.name + ".reason.txt"].read_text().startswith("Not taken in: ")


def check_image_store(data: Path, distinct: list[Scan]) -> None:
    """Exactly the distinct images, each whole, under its hash: nothing stored for
    nothing (a file stored before a kill is the one its retry refers to)."""
    images = data / "images"
    stored = {
        p.name: p.read_bytes()
        for fan_out in images.iterdir()
        if fan_out.name != ".staging"
        for p in fan_out.iterdir()
    }
    assert {hashlib.sha256(b).hexdigest() for b in stored.values()} == set(stored)
    assert set(stored) == {scan.sha256 for scan in distinct}


def check_staged_leftovers_go_after_an_hour(runs: Runs) -> None:
    """A kill in the middle of a copy into the store leaves its staged copy in
    ``images/.staging/``: the specified clean-up is an hour later (another process may
    be staging there), at the next start."""
    staging = runs.data / "images" / ".staging"
    leftovers = list(staging.iterdir()) if staging.exists() else []
    two_hours_ago = time.time() - 7200
    for path in leftovers:
        os.utime(path, (two_hours_ago, two_hours_ago))
    server = runs.start()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(STOP_TIMEOUT_S) == 0, server.output()
    assert not staging.exists() or list(staging.iterdir()) == []
