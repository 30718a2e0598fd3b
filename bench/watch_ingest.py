"""Watch-folder ingest throughput and latency for a burst of ~1 MB scans.

What it measures
    ``--files`` distinct PNGs of random RGB noise (``--side`` x ``--side`` pixels; noise
    compresses poorly, so 600 x 600 is about 1.08 MB) arrive in the watch folder as one
    burst, written by a separate process (as a device or a file share would), in two
    ways, each on a fresh data folder:

    - ``copy``: ``shutil.copyfile`` from a folder outside the watch folder (the file
      grows in place; its close is the moment it is complete);
    - ``rename``: written to a temporary folder on the same file system, then
      ``os.rename``-d in (it appears complete; the rename is its "close").

    The application is the real one (``build_application``, the watcher of
    ``ophthai serve``) with the native observer (``--polling`` for the polling one); the
    inference worker is not started, so no analysis runs (they stay queued).

    Per scenario: files/s from the first file's copy starting to the last patient
    committed; latency from each file's close (in the writer process, system-wide
    monotonic clock) to its ``PatientCreated`` event, p50 / p95 / max in ms; and a check
    that every file became exactly one patient whose stored image has the file's hash.

Baseline, measured in the same run on the same files: reading, hashing (SHA-256) and
copying each file to another folder with no application at all; ratio = the baseline's
files/s over the scenario's.

Targets: >= 50 files/s; p95 latency <= 300 ms.

``--busy-python`` adds a thread to the app's process that runs Python 4 ms of every 5,
as the inference worker does while a model analyses; ``--open-fds N`` has a helper
process hold N files open, as a desktop's browsers do. The run sets the thread switch
interval ``ophthai serve`` sets (``--switch-interval`` to compare others).

Run (from the repository root)::

    .venv/bin/python bench/watch_ingest.py                  # 200 files, copy and rename
    .venv/bin/python bench/watch_ingest.py --files 50 --modes rename --polling

One JSON object goes to stdout; progress goes to stderr. Temporary folders are removed.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine_probe import Faults, machine

TARGET_FILES_PER_S = 50.0
TARGET_P95_MS = 300.0


def progress(message: str) -> None:
    print(f"[watch_ingest] {message}", file=sys.stderr, flush=True)


def make_sources(folder: Path, count: int, side: int) -> list[Path]:
    """``count`` distinct noise PNGs of about 3 bytes a pixel."""
    from PIL import Image

    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        path = folder / f"scan_{i:04d}_OD_OCT.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def baseline(sources: list[Path], target: Path) -> dict[str, Any]:
    """Read, hash and copy every file: the floor any ingest sits on."""
    target.mkdir()
    started = time.perf_counter()
    for path in sources:
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        (target / path.name).write_bytes(data)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "files_per_s": round(len(sources) / seconds, 1)}


# The writer process ---------------------------------------------------------------


def writer(
    mode: str,
    sources: list[str],
    staging: str,
    folder: str,
    gap_s: float,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Runs in a child process: deliver the files into ``folder`` as one burst (or one
    every ``gap_s``) and send back ``{name: close time}`` (``time.monotonic``, which is
    system-wide on Linux)."""
    if mode == "rename":
        for source in sources:  # untimed: a device writes elsewhere first
            shutil.copyfile(source, os.path.join(staging, os.path.basename(source)))
    ready.set()
    go.wait()
    closed: dict[str, float] = {}
    started = time.monotonic()
    for i, source in enumerate(sources):
        if gap_s:
            time.sleep(max(0.0, started + i * gap_s - time.monotonic()))
        name = os.path.basename(source)
        if mode == "rename":
            os.rename(os.path.join(staging, name), os.path.join(folder, name))
        else:
            shutil.copyfile(source, os.path.join(folder, name))
        closed[name] = time.monotonic()
    results.put({"started": started, "closed": closed})


def hold_descriptors(count: int, ready: Any, done: Any) -> None:
    """Runs in a child process: keep ``count`` files open until ``done`` is set, as the
    browsers and tools of a desktop do (the watcher looks through every process's open
    files when it cannot ask the kernel about one file)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 64
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    held = []
    try:
        for _ in range(count):
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass  # as many as the limit allows: the report counts the machine's descriptors
    ready.set()
    done.wait()
    for fd in held:
        os.close(fd)


def open_descriptors() -> int:
    """Open file descriptors of every process this user can see (all, as root)."""
    total = 0
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if pid.isdigit():
            try:
                total += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
    return total


class BusyPython:
    """A thread of the app's process that runs Python 4 ms out of every 5, as the
    inference worker does between tokens: what the ingest threads' database calls and
    file reads compete with for the interpreter lock while a model analyses."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="busy-python", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            until = time.perf_counter() + 0.004
            while time.perf_counter() < until:
                sum(range(200))
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# One scenario ---------------------------------------------------------------------


def run_scenario(
    mode: str,
    sources: list[Path],
    work: Path,
    *,
    polling: bool,
    timeout_s: float,
    ingest_threads: int | None,
    rate: float | None = None,
    busy_python: bool = False,
) -> dict[str, Any]:
    from ophthai_desktop.bootstrap import build_application
    from ophthai_desktop.core import events as ev
    from ophthai_desktop.core.settings import Settings
    from ophthai_desktop.core.watcher import FolderWatcher

    data_dir = work / f"data-{mode}"
    folder = data_dir / "incoming_scans"
    staging = work / f"staging-{mode}"
    staging.mkdir()
    settings = Settings(
        data_dir=data_dir,
        watch_folder_enabled=True,
        watch_use_polling=polling,
        model_id="not-installed/bench",  # nothing to load: ingest only
        _env_file=None,
    )
    app = build_application(settings)
    if ingest_threads is not None:
        app.watcher = FolderWatcher(settings, app.ingest, app.bus, ingest_threads=ingest_threads)
    created: dict[str, float] = {}
    outcomes: dict[str, str] = {}
    lock = threading.Lock()
    all_created = threading.Event()

    def on_event(event: ev.Event) -> None:
        now = time.monotonic()
        if isinstance(event, ev.PatientCreated) and event.patient.latest_scan is not None:
            with lock:
                created[event.patient.latest_scan.original_filename] = now
                if len(created) == len(sources):
                    all_created.set()
        elif isinstance(event, ev.IngestFinished):
            with lock:
                outcomes[event.file_name] = event.outcome

    app.bus.subscribe(on_event)
    # As `ophthai serve` does once it is built: what start-up made stays out of the
    # collector's full passes.
    gc.collect()
    gc.freeze()
    busy = BusyPython() if busy_python else None
    try:
        status = app.start_watcher() and app.watcher.status
        assert status and status.state == "running", status
        context = mp.get_context("spawn")
        ready, go, results = context.Event(), context.Event(), context.Queue()
        child = context.Process(
            target=writer,
            args=(
                "rename" if mode == "rename" else "copy",
                [str(p) for p in sources],
                str(staging),
                str(folder),
                1.0 / rate if rate else 0.0,
                ready,
                go,
                results,
            ),
        )
        child.start()
        ready.wait(timeout_s)
        go.set()
        delivered = results.get(timeout=timeout_s)
        child.join(timeout_s)
        finished = all_created.wait(timeout_s)
        idle_deadline = time.monotonic() + timeout_s
        while not app.watcher.is_idle() and time.monotonic() < idle_deadline:
            time.sleep(0.01)
        with lock:
            created_at, outcome_of = dict(created), dict(outcomes)
        # Every file: exactly one patient, whose stored image is the whole file.
        patients = app.patients.list_patients(limit=500)
        whole = 0
        by_name = {p.name: p for p in sources}
        for patient in patients.items:
            scan = patient.latest_scan
            if scan and scan.original_filename in by_name:
                digest = hashlib.sha256(by_name[scan.original_filename].read_bytes()).hexdigest()
                whole += scan.sha256 == digest and app.images.exists(scan.sha256)
    finally:
        if busy is not None:
            busy.stop()
        app.close()
        gc.unfreeze()

    closed: dict[str, float] = delivered["closed"]
    latency_ms = {
        name: (created_at[name] - closed[name]) * 1000 for name in closed if name in created_at
    }
    latencies_ms = list(latency_ms.values())
    first = min(closed, key=closed.__getitem__) if closed else None
    first_start = delivered["started"]
    last_commit = max(created_at.values()) if created_at else float("nan")
    seconds = last_commit - first_start
    burst_s = max(closed.values()) - first_start
    return {
        "mode": mode,
        "arrival": f"{rate:g} files/s" if rate else "burst",
        "observer": "polling" if polling else "native",
        "files": len(sources),
        "all_ingested": finished and len(created_at) == len(sources),
        "outcomes": {k: list(outcome_of.values()).count(k) for k in set(outcome_of.values())},
        "patients": patients.total,
        "stored_whole": whole,
        "burst_write_s": round(burst_s, 3),
        "seconds": round(seconds, 3),
        "files_per_s": round(len(created_at) / seconds, 1) if seconds > 0 else None,
        "latency_ms": {
            "p50": round(statistics.median(latencies_ms), 1),
            "p95": round(percentile(latencies_ms, 0.95), 1),
            "max": round(max(latencies_ms), 1),
            "min": round(min(latencies_ms), 1),
            # The first file to arrive after the watcher started.
            "first": round(latency_ms[first], 1) if first in latency_ms else None,
        }
        if latencies_ms
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--side", type=int, default=600, help="pixels a side (600: ~1 MB)")
    parser.add_argument(
        "--modes",
        default="copy,rename,paced",
        help="comma-separated: copy, rename (bursts), paced (copies at --paced-rate)",
    )
    parser.add_argument("--paced-rate", type=float, default=20.0, help="files/s when paced")
    parser.add_argument("--paced-files", type=int, default=60, help="files when paced")
    parser.add_argument("--polling", action="store_true", help="use the polling observer")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--ingest-threads", type=int, help="the watcher's ingest threads (default: its own)"
    )
    parser.add_argument(
        "--busy-python",
        action="store_true",
        help="a thread of the app's process runs Python meanwhile, as the inference worker "
        "does while a model analyses",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval for the run (default: what `ophthai serve` sets)",
    )
    parser.add_argument(
        "--open-fds",
        type=int,
        default=0,
        help="a helper process keeps this many files open meanwhile (a desktop's browsers "
        "and tools hold 10,000-50,000)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    holder = None
    if args.open_fds:
        context = mp.get_context("spawn")
        held, release = context.Event(), context.Event()
        holder = context.Process(target=hold_descriptors, args=(args.open_fds, held, release))
        holder.start()
        held.wait(60)
    try:
        return run_all(args)
    finally:
        if holder is not None:
            release.set()
            holder.join(10)


def run_all(args: argparse.Namespace) -> int:
    from ophthai_desktop.bootstrap import tune_interpreter

    tune_interpreter()  # as `ophthai serve` does
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    with tempfile.TemporaryDirectory(prefix="ophthai-watch-bench-") as tmp:
        work = Path(tmp)
        progress(f"making {args.files} noise PNGs of {args.side}x{args.side}")
        sources = make_sources(work / "sources", args.files, args.side)
        sizes = [p.stat().st_size for p in sources]
        descriptors = open_descriptors()
        progress(f"{descriptors} files open on this machine")
        progress("baseline: read + SHA-256 + copy, no application")
        base = baseline(sources, work / "baseline")
        scenarios = []
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            paced = mode == "paced"
            progress(f"scenario: {mode}")
            load_before = os.getloadavg()[0]
            faults = Faults()
            result = run_scenario(
                mode,
                sources[: args.paced_files] if paced else sources,
                work,
                polling=args.polling,
                timeout_s=args.timeout,
                ingest_threads=args.ingest_threads,
                rate=args.paced_rate if paced else None,
                busy_python=args.busy_python,
            )
            result["page_faults"] = faults.since()
            result["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            rate = result["files_per_s"]
            result["baseline_ratio"] = round(base["files_per_s"] / rate, 1) if rate else None
            p95 = result["latency_ms"]["p95"] if result["latency_ms"] else None
            result["meets"] = {
                # A paced run's rate is the arrival rate: only its latency says anything.
                "files_per_s": None if paced else bool(rate and rate >= TARGET_FILES_PER_S),
                "p95": p95 is not None and p95 <= TARGET_P95_MS,
            }
            scenarios.append(result)
            progress(json.dumps(result))

    report = {
        "benchmark": "watch_ingest",
        "files": args.files,
        "file_mb_mean": round(statistics.mean(sizes) / 1e6, 3),
        "targets": {"files_per_s_min": TARGET_FILES_PER_S, "p95_ms_max": TARGET_P95_MS},
        "baseline_hash_copy": base,
        "open_fds_on_machine": descriptors,
        "busy_python": args.busy_python,
        "switch_interval_s": sys.getswitchinterval(),
        "scenarios": scenarios,
        "machine": machine(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
