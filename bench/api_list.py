"""List-endpoint latency, page size and event-loop responsiveness of the real API server.

What it measures
    1. Fill: a fresh database in a temporary data folder (or ``--data-dir``, which must
       be empty) with ``--patients`` patients through the real services
       (``PatientService.create_patient`` with a ``NewImage``: the image is checked,
       stored in the content-addressed store and gets a real Scan row, so ``imageUrl``
       comes out exactly as in production) and ``--notifications`` notifications
       (``NotificationService.create_notification``). Every patient has its own noise
       PNG of about ``--image-kb`` KB (distinct bytes, so one file per patient).
       ``--clinical N`` also gives the newest N patients (the first page) an analysis
       and 12 dates of two-eye oculomics, so the page carries ``aiAnalysis`` and
       ``oculomics`` as it does for patients who have been seen (off by default).
    2. Server: ``python -m ophthai_desktop --data-dir D serve --port 0`` as a child
       process (its own interpreter lock), on loopback; the URL comes from its
       ``listening on`` line.
    3. Sequential latency over keep-alive HTTP (httpx): ``--requests`` requests each of
       ``GET /api/patients?limit=100`` and ``GET /api/notifications?limit=50`` after a
       warm-up; p50/p95/max in ms and the response size.
    4. ``/health`` latency (sampled every ``--sample-ms``) while four client processes
       (multiprocessing, so the load generator is not bound by one interpreter lock)
       loop ``GET /api/patients?limit=100`` for ``--hammer-seconds``; plus the hammer's
       throughput and latency and the server's CPU use.

Baselines, measured in the same run against the same server:
    - ``/health`` sampled the same way with no load: ratio = loaded p95 / idle p95;
    - sequential ``/health`` round trips (a trivial route on the event loop) and
      ``/api/patients?limit=1`` (the same route, dependencies and thread-pool hop with
      one row): ratios = list p50 / those p50s.

Targets: patient page p50 <= 15 ms, page <= 100 KB (KiB, 1024 bytes), /health p95 under
load <= 20 ms.

Run (from the repository root)::

    .venv/bin/python bench/api_list.py                      # 10,000 / 10,000, ~1.5 min
    .venv/bin/python bench/api_list.py --patients 500 --notifications 500 --requests 50
    .venv/bin/python bench/api_list.py --clinical 100       # first page fully populated

One JSON object goes to stdout; progress goes to stderr. The temporary folder and the
server are removed on exit (also on Ctrl-C) unless ``--keep``. Only loopback traffic.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from machine_probe import machine as probe_machine
from private_config import use_private_config

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGETS = {"patients_p50_ms": 15, "patient_page_kb": 100, "health_p95_ms": 20}
HAMMER_CLIENTS = 4
HAMMER_NICE = 5  # the load generator yields the CPU to the server and the sampler
PATIENTS_PATH = "/api/patients?limit=100"
NOTIFICATIONS_PATH = "/api/notifications?limit=50"
#: Searches of the patient list: the name as stored, and as typed without its accent
#: (both match an eighth of the patients, "Müller"), and one that matches nobody.
SEARCH_PATHS = {
    "accented": "/api/patients?limit=100&search=M%C3%BCller",
    "unaccented": "/api/patients?limit=100&search=muller",
    "no_match": "/api/patients?limit=100&search=zzzz",
}
#: Settings the server would otherwise take from this shell (another database, a token).
ENV_TO_DROP = (
    "DATABASE_URL",
    "LOAD_MODEL_ON_STARTUP",
    "WATCH_FOLDER_ENABLED",
    "WATCH_FOLDER_PATH",
    "DEBUG",
    "CORS_ORIGINS",
)


def log(message: str) -> None:
    print(f"[api_list] {message}", file=sys.stderr, flush=True)


# Test data ---------------------------------------------------------------------------


class NoisePngs:
    """Distinct RGB noise PNGs of about ``kb`` KB, fast to make in bulk.

    A few noise frames are made once; each image takes one of them and writes its index
    into the first pixels, so every image has its own bytes (and SHA-256). The pixels are
    stored with zlib level 0 (noise does not compress anyway), which makes encoding a
    memory copy plus two checksums.
    """

    BASES = 4

    def __init__(self, kb: int, seed: int = 1234) -> None:
        side = max(8, int(math.sqrt(kb * 1024 / 3)))
        self.width = self.height = side
        stride = 1 + 3 * side  # filter byte + RGB pixels
        rand = _random_bytes(seed, self.BASES * stride * side)
        self._frames: list[bytearray] = []
        for b in range(self.BASES):
            frame = bytearray(rand[b * stride * side : (b + 1) * stride * side])
            frame[::stride] = bytes(side)  # filter type 0 on every scanline
            self._frames.append(frame)
        ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
        self._head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
        self._tail = _chunk(b"IEND", b"")

    def make(self, index: int) -> bytes:
        frame = self._frames[index % self.BASES]
        frame[1:5] = index.to_bytes(4, "big")  # first pixels of the first row
        return self._head + _chunk(b"IDAT", zlib.compress(bytes(frame), 0)) + self._tail


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _random_bytes(seed: int, size: int) -> bytes:
    try:
        import numpy as np

        return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    except ImportError:  # pragma: no cover - numpy is a project dependency
        import random

        return random.Random(seed).randbytes(size)


FIRST = ["Ana", "Ben", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Jia"]
LAST = ["Silva", "Okafor", "Nguyen", "Müller", "Haddad", "Kowalski", "Tanaka", "Ruiz"]
SYMPTOMS = [
    "blurred vision",
    "floaters",
    "eye pain",
    "photophobia",
    "reduced night vision",
    "halos around lights",
    "distorted central vision",
]
HISTORIES = [
    "Type 2 diabetes for 12 years; hypertension on ACE inhibitor.",
    "Myopia -6.0 D both eyes; family history of glaucoma.",
    "No relevant history.",
    "Cataract surgery OD in 2021; dry AMD OS under observation.",
]
STATUSES = ["Pending Analysis", "Stable", "Critical", "Discharged"]
NOTE_TYPES = ["info", "critical", "success"]


def patient_fields(i: int, now: datetime) -> dict[str, Any]:
    return {
        "name": f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]} {i:05d}",
        "age": 20 + i % 70,
        "gender": ("Female", "Male", "Other")[i % 3],
        "symptoms": [SYMPTOMS[i % len(SYMPTOMS)], SYMPTOMS[(i + 1 + i % 5) % len(SYMPTOMS)]],
        "history": HISTORIES[i % len(HISTORIES)],
        "status": STATUSES[i % len(STATUSES)],
        "admission_date": now - timedelta(minutes=i),
    }


ANALYSIS_RESULT = {
    "classification": "Diabetic macular edema",
    "confidence": 87.0,
    "findings": [
        "Intraretinal cystoid spaces in the central macula",
        "Increased central retinal thickness (about 420 um)",
        "Hard exudates temporal to the fovea",
    ],
    "recommendation": "Refer to the retina clinic within 2 weeks for anti-VEGF evaluation; "
    "repeat OCT after treatment.",
    "explanation": "The OCT B-scan shows cystoid fluid within the inner nuclear and outer "
    "plexiform layers with loss of the foveal contour, consistent with centre-involving "
    "diabetic macular edema in a patient with long-standing diabetes.",
}
OCULOMICS_DATES = 12  # the summary's history keeps the last 12 dates


def add_clinical(app: Any, patient_ids: Sequence[str], actor: Any) -> None:
    """Give each patient an analysis and a two-eye oculomics series, as after a visit.

    Measurements go through ``OculomicsService.add_measurement``; the analysis row is
    written with the ORM (as the job service stores a finished analysis), with the
    reasoning text a real run keeps (the list leaves it out; the database still holds it).
    """
    from ophthai_desktop.core.storage import models as m

    today = datetime.now(UTC).date()
    for n, pid in enumerate(patient_ids):
        for k in range(OCULOMICS_DATES):
            day = today - timedelta(days=60 * (OCULOMICS_DATES - k))
            for eye, shift in (("OD", 0.0), ("OS", 0.8)):
                app.oculomics.add_measurement(
                    pid,
                    eye=eye,
                    measured_on=day,
                    iop_mmhg=round(14.0 + shift + 0.3 * k, 1),
                    cup_to_disc_ratio=0.4,
                    rnfl_thickness_um=95.0 - k,
                    vessel_density_pct=round(48.0 - 0.2 * k, 1),
                    actor=actor,
                )
        with app.db.session() as session:
            session.add(
                m.Analysis(
                    patient_id=pid,
                    model_id="OctoMed/OctoMed-7B",
                    model_revision="main",
                    prompt_version="bench",
                    generation_settings={"max_new_tokens": 1024},
                    device="cpu",
                    reasoning_text="The macula shows ... " * 200,
                    answer_text=json.dumps(ANALYSIS_RESULT),
                    result=ANALYSIS_RESULT,
                    parse_status="parsed",
                    status="preliminary",
                    prompt_tokens=900 + n % 100,
                    completion_tokens=700,
                )
            )


def fill(
    data_dir: Path, patients: int, notifications: int, image_kb: int, clinical: int = 0
) -> dict[str, Any]:
    """Fill a fresh database through the real services; returns timings."""
    from ophthai_desktop.bootstrap import build_application
    from ophthai_desktop.core.records import Actor
    from ophthai_desktop.core.services.patients import NewImage
    from ophthai_desktop.core.settings import Settings

    settings = Settings(data_dir=data_dir, database_url=None, api_token=None)
    app = build_application(settings)
    actor = Actor.system("bench")
    pngs = NoisePngs(image_kb)
    now = datetime.now(UTC)
    ids: list[str] = []
    image_bytes = 0
    progress_every = max(1, patients // 10)
    try:
        t0 = time.perf_counter()
        for i in range(patients):
            data = pngs.make(i)
            image_bytes += len(data)
            image = NewImage(
                data=data,
                source="api",
                modality=("fundus", "OCT")[i % 2],
                laterality=("OD", "OS")[i % 2],
                filename=f"scan-{i:05d}.png",
            )
            record = app.patients.create_patient(patient_fields(i, now), actor=actor, image=image)
            ids.append(record.id)
            if (i + 1) % progress_every == 0:
                log(f"fill: {i + 1}/{patients} patients ({time.perf_counter() - t0:.1f} s)")
        t_patients = time.perf_counter() - t0
        t1 = time.perf_counter()
        for j in range(notifications):
            pid = ids[j % len(ids)] if ids else None
            app.notifications.create_notification(
                f"New scan analysed for patient {pid}: review the findings (#{j})",
                type=NOTE_TYPES[j % len(NOTE_TYPES)],
                patient_id=pid,
                actor=actor,
            )
        t_notifications = time.perf_counter() - t1
        t2 = time.perf_counter()
        # The newest patients: the first page of the default (newest first) order.
        add_clinical(app, ids[len(ids) - clinical :] if clinical else [], actor)
        t_clinical = time.perf_counter() - t2
        stored_files = sum(1 for p in settings.images_dir.rglob("*") if p.is_file())
    finally:
        app.close()
    log(
        f"fill: {patients} patients in {t_patients:.1f} s, "
        f"{notifications} notifications in {t_notifications:.1f} s"
    )
    return {
        "method": "services (PatientService.create_patient + NewImage, "
        "NotificationService.create_notification)",
        "patients": patients,
        "notifications": notifications,
        "image_bytes_mean": round(image_bytes / patients) if patients else 0,
        "image_px": f"{pngs.width}x{pngs.height} PNG",
        "stored_image_files": stored_files,
        "patients_s": round(t_patients, 2),
        "patient_create_ms": round(1000 * t_patients / patients, 2) if patients else None,
        "notifications_s": round(t_notifications, 2),
        "clinical_patients": clinical,
        "clinical_s": round(t_clinical, 2),
        "total_s": round(t_patients + t_notifications + t_clinical, 2),
    }


# The server --------------------------------------------------------------------------


class Server:
    """``ophthai serve`` in a child process, on a free loopback port."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._log: Any = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def start(self, timeout_s: float = 60.0) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("OPHTHAI_") and k not in ENV_TO_DROP
        }
        env["OPHTHAI_LOG_LEVEL"] = "WARNING"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "ophthai_desktop", "--data-dir", str(self.data_dir)]
        cmd += ["serve", "--host", "127.0.0.1", "--port", "0"]
        self._log = self.log_path.open("w", encoding="utf-8")
        # cwd is the data folder so no stray .env is read.
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.data_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            if "listening on" in line:
                self.url = line.split("listening on", 1)[1].split()[0]
                log(f"server: pid {self.proc.pid} at {self.url}")
                return
        raise RuntimeError(f"the server did not start; see its log:\n{self.log_tail()}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux)."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()


# Measuring ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "max_ms": round(max(ms), 2),
        "n": len(ms),
    }


def timed_get(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    t = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - t) * 1000
    response.raise_for_status()
    return elapsed, response


def sequential(client: httpx.Client, path: str, n: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        timed_get(client, path)
    times: list[float] = []
    size = wire = 0
    for _ in range(n):
        ms, response = timed_get(client, path)
        times.append(ms)
        size = len(response.content)
        wire = response.num_bytes_downloaded  # as sent (gzip when the server compresses)
    result: dict[str, Any] = summary(times)
    result["bytes"] = size
    result["kb"] = round(size / 1024, 1)
    result["wire_bytes"] = wire
    result["wire_kb"] = round(wire / 1024, 1)
    return result


def paced(client: httpx.Client, path: str, until: float, interval_s: float) -> list[float]:
    """GET ``path`` on a fixed schedule until ``until`` (monotonic); the latencies."""
    times: list[float] = []
    tick = time.monotonic()
    while tick < until:
        ms, _ = timed_get(client, path)
        times.append(ms)
        tick += interval_s
        delay = tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:  # fell behind: keep the schedule, never burst
            tick = time.monotonic()
    return times


def hammer_worker(url: str, path: str, start_at: float, seconds: float, out: Any) -> None:
    """One load-generating process: loop ``GET path`` from ``start_at`` (wall clock)."""
    with contextlib.suppress(OSError):
        os.nice(HAMMER_NICE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    times: list[float] = []
    errors = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/health")  # connect before the clock starts
        time.sleep(max(0.0, start_at - time.time()))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                response = client.get(path)
                response.read()
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                times.append((time.perf_counter() - t) * 1000)
            else:
                errors += 1
    out.put({"times": times, "errors": errors})


def health_under_load(
    client: httpx.Client, server: Server, seconds: float, interval_s: float
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3.0  # spawn + import + connect
    workers = [
        ctx.Process(
            target=hammer_worker,
            args=(server.url, PATIENTS_PATH, start_at, seconds, out),
            daemon=True,
        )
        for _ in range(HAMMER_CLIENTS)
    ]
    results: list[dict[str, Any]] = []
    started: list[Any] = []
    try:
        for w in workers:
            w.start()
            started.append(w)
        time.sleep(max(0.0, start_at - time.time()))
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        samples = paced(client, "/health", time.monotonic() + seconds, interval_s)
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
        for _ in workers:
            results.append(out.get(timeout=seconds + 60))
    finally:
        for w in started:
            w.join(5)
            if w.is_alive():
                w.terminate()
                w.join(5)
    hammer_times = [t for r in results for t in r["times"]]
    result: dict[str, Any] = summary(samples)
    result.update(
        hammer_rps=round(len(hammer_times) / seconds, 1),
        hammer_errors=sum(r["errors"] for r in results),
        hammer_p50_ms=round(statistics.median(hammer_times), 1) if hammer_times else None,
        hammer_p95_ms=round(percentile(hammer_times, 95), 1) if hammer_times else None,
        clients=HAMMER_CLIENTS,
        client_processes_nice=HAMMER_NICE,
        seconds=seconds,
        sample_interval_ms=round(interval_s * 1000),
    )
    if cpu0 is not None and cpu1 is not None:
        result["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 1)
    return result


def check_payload(client: httpx.Client, patients_expected: int) -> dict[str, Any]:
    """One unmeasured look at the page: the shape is the production one."""
    response = client.get(PATIENTS_PATH)
    response.raise_for_status()
    items = response.json()
    first = items[0] if items else {}
    image_ok = None
    if first.get("imageUrl"):
        image = client.get(first["imageUrl"])
        image_ok = image.status_code == 200 and image.headers["content-type"] == "image/png"
    return {
        "items": len(items),
        "total": int(response.headers.get("x-total-count", -1)),
        "total_ok": int(response.headers.get("x-total-count", -1)) == patients_expected,
        "image_url_example": first.get("imageUrl"),
        "image_url_serves": image_ok,
        "bytes_per_patient": round(len(response.content) / max(1, len(items))),
    }


def search_total(client: httpx.Client, path: str) -> int:
    """How many patients a search found (``X-Total-Count``)."""
    response = client.get(path)
    response.raise_for_status()
    return int(response.headers.get("x-total-count", -1))


def machine() -> dict[str, Any]:
    return {**probe_machine(), "sqlite": sqlite3.sqlite_version}


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b > 0 else None


# Main --------------------------------------------------------------------------------


@contextlib.contextmanager
def data_folder(given: Path | None, keep: bool) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        if any(given.iterdir()):
            raise SystemExit(f"--data-dir {given} is not empty; the benchmark needs a fresh one")
        yield given  # the caller's folder is never deleted
        return
    path = Path(tempfile.mkdtemp(prefix="ophthai-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    warmup = max(10, args.requests // 10)
    with data_folder(args.data_dir, args.keep) as root:
        data_dir = root / "data"
        log(f"data folder {data_dir}")
        filled = fill(data_dir, args.patients, args.notifications, args.image_kb, args.clinical)
        server = Server(data_dir, root / "server.log")
        try:
            server.start()
            with httpx.Client(base_url=server.url, timeout=30) as client:
                checked = check_payload(client, args.patients)
                log(f"page check: {checked}")
                log("measuring baselines")
                health_seq = sequential(client, "/health", args.requests, warmup)
                one_row = sequential(client, "/api/patients?limit=1", args.requests, warmup)
                interval = args.sample_ms / 1000
                idle = summary(
                    paced(client, "/health", time.monotonic() + args.hammer_seconds, interval)
                )
                log(f"measuring {PATIENTS_PATH}")
                patients_page = sequential(client, PATIENTS_PATH, args.requests, warmup)
                log(f"measuring {NOTIFICATIONS_PATH}")
                notes_page = sequential(client, NOTIFICATIONS_PATH, args.requests, warmup)
                searches: dict[str, dict[str, Any]] = {}
                for name, path in SEARCH_PATHS.items():
                    log(f"measuring {path}")
                    searches[name] = sequential(client, path, args.requests, warmup)
                    searches[name]["total"] = search_total(client, path)
                log(f"measuring /health under {HAMMER_CLIENTS} clients for {args.hammer_seconds} s")
                loaded = health_under_load(client, server, args.hammer_seconds, interval)
        finally:
            server.stop()
            if server.proc is not None and server.proc.returncode not in (0, None):
                log(f"server exited with {server.proc.returncode}:\n{server.log_tail()}")
    page_kb = patients_page["bytes"] / 1024
    return {
        "machine": machine(),
        "fill": filled,
        "page_check": checked,
        "patients_page": patients_page,
        "notifications_page": notes_page,
        "search_pages": searches,
        "health_under_load": loaded,
        "targets": TARGETS,
        "baseline": {
            "health_sequential": health_seq,
            "patients_limit1": {k: one_row[k] for k in ("p50_ms", "p95_ms", "max_ms", "bytes")},
            "health_idle_paced": idle,
        },
        "ratios": {
            "patients_p50_over_health_p50": ratio(patients_page["p50_ms"], health_seq["p50_ms"]),
            "patients_p50_over_limit1_p50": ratio(patients_page["p50_ms"], one_row["p50_ms"]),
            "notifications_p50_over_health_p50": ratio(notes_page["p50_ms"], health_seq["p50_ms"]),
            "health_p95_loaded_over_idle": ratio(loaded["p95_ms"], idle["p95_ms"]),
            "patients_p50_over_target": ratio(patients_page["p50_ms"], TARGETS["patients_p50_ms"]),
            "page_kb_over_target": ratio(page_kb, TARGETS["patient_page_kb"]),
            "health_p95_over_target": ratio(loaded["p95_ms"], TARGETS["health_p95_ms"]),
        },
        "pass": {
            "patients_p50": patients_page["p50_ms"] <= TARGETS["patients_p50_ms"],
            "patient_page_size": page_kb <= TARGETS["patient_page_kb"],
            "patient_page_wire_size": patients_page["wire_kb"] <= TARGETS["patient_page_kb"],
            "health_p95_under_load": loaded["p95_ms"] <= TARGETS["health_p95_ms"],
        },
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--patients", type=int, default=10_000)
    p.add_argument("--notifications", type=int, default=10_000)
    p.add_argument("--image-kb", type=int, default=150, help="size of each patient's image")
    p.add_argument("--requests", type=int, default=200, help="measured requests per endpoint")
    p.add_argument("--hammer-seconds", type=float, default=10.0)
    p.add_argument("--sample-ms", type=float, default=20.0, help="/health sampling interval")
    p.add_argument(
        "--clinical",
        type=int,
        default=0,
        help="give the newest N patients an analysis and 12 dates of oculomics per eye "
        "(what a seen patient's list entry carries); 0 = images only",
    )
    p.add_argument("--data-dir", type=Path, help="an empty folder to fill (kept afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = p.parse_args(argv)
    if args.patients < 1 or args.requests < 1 or args.hammer_seconds <= 0:
        p.error("--patients, --requests and --hammer-seconds must be positive")
    if args.notifications < 0 or args.image_kb < 1 or args.sample_ms <= 0:
        p.error("--notifications >= 0, --image-kb >= 1 and --sample-ms > 0 are needed")
    if not 0 <= args.clinical <= args.patients:
        p.error("--clinical must be between 0 and --patients")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    use_private_config()
    try:
        result = run(args)
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        return 130
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
