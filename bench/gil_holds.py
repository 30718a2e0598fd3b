"""How long the background threads hold the interpreter lock without giving it up.

What it measures
    The same window and loads as ``bench/gui_stall.py`` (the tiny checkpoint analysing
    a dropped image every ``--drop-every`` s, an API client process looping
    ``GET /api/patients?limit=100`` against the embedded server, a watch-folder burst),
    run one load at a time and then all together, plus a probe thread that sleeps
    0.5 ms in a loop and records how late it wakes.

    A late wake is split in two with the probe thread's own scheduler statistics
    (``/proc/thread-self/schedstat``, the time it sat runnable waiting for a core):
    ``cpu_wait`` is that time, ``gil_wait`` the rest, the time it waited for the
    interpreter lock (and the timer's slack, ~0.05 ms). A thread that runs Python gives
    the lock up within the switch interval (1 ms, as the app sets it) of being asked;
    ``gil_wait`` well over that (``over_2ms``) means some thread held the lock unbroken,
    in one C call (or was itself kept off a core while holding it), or that several
    threads took the lock in turn before the probe got it.

    The lock's hand-over count (CPython 3.11's ``gil.switch_number``, read with
    ``ctypes``) tells the two apart: a late wake with two hand-overs (to one other
    thread and back) was one unbroken hold (``late_unbroken_ms``); more means several
    threads took the lock in turn before the probe got it (``late_handed_on_ms``). For
    an unbroken hold the thread that ran longest while the probe waited (per-thread CPU
    time from schedstat) is named as the holder (``holders``, with its CPU time in
    that wait) and its Python stack taken (``holder_frames``): it has just given the
    lock up, so it stands at (or just past) the call that held it. That naming is a
    heuristic: a thread running C code without the lock (sqlite, torch) also uses CPU.
    FastAPI's validation and JSON dump of each response (pydantic-core calls that hold
    the lock for their whole length) are timed directly (``api_calls_ms``). The probe
    reads ~10 small files a wake, so it costs some CPU of its own.

Phases (``--seconds`` each; ``idle`` ``--idle-seconds``): ``idle``, ``api`` (the client
only), ``analyses`` (the drops only), ``burst`` (``--burst`` files into the watch folder
only), ``all`` (everything, as ``gui_stall.py``'s ``load``). Each phase reports the
probe's wakes (``probe``: ``gil_wait`` and ``cpu_wait`` in ms: p50, p99, p999, max, and
counts over 2, 4 and 8 ms) and the GUI's 5 ms ticks as ``gui_stall.py`` does (``gui``).

Run (from the repository root)::

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gil_holds.py
    .venv/bin/python bench/gil_holds.py --seconds 10 --phases api,all

One JSON object goes to stdout; progress to stderr. Temporary files are removed.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gui_stall import (
    CLIENT,
    TickRecorder,
    close_window,
    load_model,
    pump,
    reniced,
    seed_patients,
    summary,
    wait_for,
)
from machine_probe import machine
from private_config import use_private_config

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PROBE_SLEEP_S = 0.0005
PHASES = ("idle", "api", "analyses", "burst", "all")


def log(message: str) -> None:
    print(f"[gil_holds] {message}", file=sys.stderr, flush=True)


def _run_delay_ns(fd: int) -> int:
    """The calling thread's time spent runnable but off a core (schedstat's 2nd field)."""
    return int(os.pread(fd, 128, 0).split()[1])


class GilCounter:
    """The interpreter lock's hand-over count (CPython 3.11's
    ``_PyRuntime.ceval.gil.switch_number``), found by its neighbours: the switch
    interval in microseconds, then the last holder's thread state, then ``locked``, then
    the count. It grows by one each time another thread takes the lock."""

    def __init__(self) -> None:
        api = ctypes.pythonapi
        api.PyThreadState_Get.restype = ctypes.c_void_p
        runtime = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
        interval_us = round(sys.getswitchinterval() * 1e6)
        me = api.PyThreadState_Get()
        memory = ctypes.string_at(runtime, 65536)
        for offset in range(0, len(memory) - 32, 8):
            if struct.unpack_from("QQ", memory, offset) == (interval_us, me):
                self._count = ctypes.c_ulong.from_address(runtime + offset + 24)
                return
        raise SystemExit("gil_holds: the interpreter lock's state was not found")

    def value(self) -> int:
        return int(self._count.value)


def _where(frame: Any, depth: int = 3) -> str:
    """A thread's innermost ``depth`` Python frames, innermost first."""
    parts: list[str] = []
    while frame is not None and len(parts) < depth:
        code = frame.f_code
        parts.append(f"{code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})")
        frame = frame.f_back
    return " < ".join(parts)


class Probe:
    """A thread that sleeps 0.5 ms in a loop and records how late it wakes, and which
    thread ran while it waited for the interpreter lock."""

    def __init__(self, attribute_ms: float) -> None:
        self._attribute_ms = attribute_ms
        self._stop = threading.Event()
        self._recording = False
        self._thread = threading.Thread(target=self._run, name="gil-probe", daemon=True)
        self._threads: dict[int, tuple[str, int, int]] = {}  # native id: name, ident, fd
        self.gil_waits: list[float] = []
        self.cpu_waits: list[float] = []
        self.unbroken: list[float] = []
        self.handed_on: list[float] = []
        self.by_holder: dict[str, list[float]] = collections.defaultdict(list)
        self.holder_cpu: dict[str, list[float]] = collections.defaultdict(list)
        self.frames: collections.Counter[str] = collections.Counter()

    def start(self) -> None:
        self._thread.start()

    def record(self) -> None:
        self.gil_waits, self.cpu_waits = [], []
        self.unbroken, self.handed_on = [], []
        self.by_holder = collections.defaultdict(list)
        self.holder_cpu = collections.defaultdict(list)
        self.frames = collections.Counter()
        self._recording = True

    def pause(self) -> None:
        self._recording = False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _refresh_threads(self) -> None:
        """Open the scheduler statistics of each Python thread (they come and go)."""
        alive = {t.native_id: t for t in threading.enumerate() if t.native_id is not None}
        alive.pop(threading.get_native_id(), None)
        for nid in list(self._threads):
            if nid not in alive:
                os.close(self._threads.pop(nid)[2])
        for nid, thread in alive.items():
            if nid not in self._threads and thread.ident is not None:
                try:
                    fd = os.open(f"/proc/self/task/{nid}/schedstat", os.O_RDONLY)
                except OSError:
                    continue
                self._threads[nid] = (thread.name, thread.ident, fd)

    def _runtimes(self) -> dict[int, int]:
        """Each thread's CPU time so far (schedstat's first field), ns."""
        times = {}
        for nid, (_name, _ident, fd) in self._threads.items():
            try:
                times[nid] = int(os.pread(fd, 128, 0).split()[0])
            except (OSError, IndexError, ValueError):
                continue
        return times

    def _run(self) -> None:  # the probe thread
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        switches = GilCounter()
        try:
            loops = 0
            self._refresh_threads()
            before = self._runtimes()
            while not self._stop.is_set():
                delay0 = _run_delay_ns(fd)
                switch0 = switches.value()
                t0 = time.perf_counter()
                time.sleep(PROBE_SLEEP_S)
                late_ms = (time.perf_counter() - t0 - PROBE_SLEEP_S) * 1000.0
                handovers = switches.value() - switch0
                cpu_ms = (_run_delay_ns(fd) - delay0) / 1e6
                after = self._runtimes()
                loops += 1
                if self._recording:
                    gil_ms = max(0.0, late_ms - cpu_ms)
                    self.gil_waits.append(gil_ms)
                    self.cpu_waits.append(cpu_ms)
                    if gil_ms > self._attribute_ms:
                        # Two hand-overs (to one other thread and back): one unbroken
                        # hold; more: several threads took the lock in turn.
                        if handovers <= 2:
                            self.unbroken.append(gil_ms)
                            self._attribute(gil_ms, before, after)
                        else:
                            self.handed_on.append(gil_ms)
                if loops % 200 == 0:
                    self._refresh_threads()
                    after = self._runtimes()
                before = after
        finally:
            os.close(fd)
            for _name, _ident, thread_fd in self._threads.values():
                os.close(thread_fd)

    def _attribute(self, gil_ms: float, before: dict[int, int], after: dict[int, int]) -> None:
        """The thread that ran longest while the probe waited held the lock; where it
        stands now (just past the call that held it)."""
        ran = {nid: after[nid] - before[nid] for nid in after if nid in before}
        if not ran:
            return
        nid = max(ran, key=lambda k: ran[k])
        name, ident, _fd = self._threads[nid]
        holder = "".join(c for c in name if not c.isdigit()).rstrip("-_ ") or name
        self.by_holder[holder].append(gil_ms)
        self.holder_cpu[holder].append(ran[nid] / 1e6)
        frame = sys._current_frames().get(ident)
        self.frames[f"[{holder}] {_where(frame)}"] += 1

    def report(self) -> dict[str, Any]:
        return {
            "wakes": len(self.gil_waits),
            "gil_wait_ms": distribution(self.gil_waits),
            "cpu_wait_ms": distribution(self.cpu_waits),
            "late_unbroken_ms": distribution(self.unbroken),
            "late_handed_on_ms": distribution(self.handed_on),
            "holders": {
                name: {
                    "gil_wait_ms": distribution(waits),
                    "its_cpu_ms": distribution(self.holder_cpu[name]),
                }
                for name, waits in sorted(self.by_holder.items(), key=lambda kv: -len(kv[1]))
            },
            "holder_frames": dict(self.frames.most_common(15)),
        }


def distribution(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[int(q * (len(ordered) - 1))], 3)

    return {
        "n": len(ordered),
        "p50": at(0.5),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": round(ordered[-1], 3),
        "over_2ms": sum(1 for v in ordered if v > 2.0),
        "over_4ms": sum(1 for v in ordered if v > 4.0),
        "over_8ms": sum(1 for v in ordered if v > 8.0),
    }


class ApiCallTimer:
    """Times FastAPI's validation and JSON dump of each response (pydantic-core calls
    that hold the interpreter lock throughout)."""

    def __init__(self) -> None:
        from fastapi._compat import v2

        self.calls: dict[str, list[float]] = {"validate": [], "serialize_json": []}
        self._field = v2.ModelField
        self._saved = {name: getattr(v2.ModelField, name) for name in self.calls}
        for name, original in self._saved.items():
            setattr(v2.ModelField, name, self._timed(name, original))

    def _timed(self, name: str, original: Any) -> Any:
        calls = self.calls[name]

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                calls.append((time.perf_counter() - t0) * 1000.0)

        return timed

    def take(self) -> dict[str, Any]:
        taken = {name: distribution(values) for name, values in self.calls.items()}
        for values in self.calls.values():
            values.clear()
        return taken


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a load phase")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=48, help="max_new_tokens per analysis")
    parser.add_argument("--drop-every", type=float, default=1.0, help="seconds between drops")
    parser.add_argument("--burst", type=int, default=20, help="files put in the watch folder")
    parser.add_argument("--client-nice", type=int, default=10)
    parser.add_argument(
        "--attribute-ms", type=float, default=2.0, help="take stacks at GIL waits over this"
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated, of: {', '.join(PHASES)}"
    )
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    use_private_config()

    from ophthai_desktop.bootstrap import build_application
    from ophthai_desktop.core.settings import Settings
    from ophthai_desktop.desktop import Desktop, qt_application, settle_memory
    from tests.support.tiny_checkpoint import build_tiny_qwen25vl
    from tests.ui.demo_images import oct_bscan

    root = Path(tempfile.mkdtemp(prefix="ophthai-gil-holds-"))
    clients: list[subprocess.Popen[str]] = []
    desktop = None
    probe = Probe(args.attribute_ms)
    timer = ApiCallTimer()
    try:
        log("building the tiny checkpoint")
        checkpoint = build_tiny_qwen25vl(root / "tiny")
        settings = Settings(
            data_dir=root / "data",
            model_path=checkpoint,
            device="cpu",
            max_new_tokens=args.tokens,
            api_port=0,
            watch_folder_enabled=True,
            user_name="Bench",
            _env_file=None,
        )
        application = build_application(settings)
        log(f"seeding {args.patients} patients")
        seed_patients(application, args.patients)
        qt_app = qt_application()
        desktop = Desktop(application=application, tray=False)
        session = desktop.session
        recorder = TickRecorder()
        desktop.start()
        wait_for(qt_app, lambda: desktop.api_url is not None, 60, "the API server")
        url = desktop.api_url
        assert url is not None
        watcher = application.watcher
        wait_for(qt_app, lambda: str(watcher.state) == "running", 30, "the watch folder")
        wait_for(qt_app, lambda: session.patient_list.model.rowCount() > 0, 30, "the list")
        target = session.patient_list.model.patient_id_at(0)
        assert target is not None
        session.patients.open_patient(target)
        wait_for(qt_app, lambda: session.patient_page.patient is not None, 30, "the page")
        log("loading the model")
        load_model(qt_app, application)
        settle_memory()
        probe.start()

        drops_dir = root / "drops"
        drops_dir.mkdir()
        drops = [drops_dir / f"stream_{i:03d}_OCT_OD.png" for i in range(200)]
        for i, path in enumerate(drops):
            path.write_bytes(oct_bscan(i, cysts=i % 2 == 0))
        counters = {"dropped": 0, "burst_from": 0}

        def run_phase(name: str) -> dict[str, Any]:
            with_api = name in ("api", "all")
            with_drops = name in ("analyses", "all")
            with_burst = name in ("burst", "all")
            seconds = args.idle_seconds if name == "idle" else args.seconds
            log(f"{name} for {seconds:.0f} s")
            loaders = []
            if with_api:
                loaders = [
                    reniced(
                        subprocess.Popen(
                            [sys.executable, "-c", CLIENT, url, str(seconds)],
                            stdout=subprocess.PIPE,
                            text=True,
                        ),
                        args.client_nice,
                    )
                ]
                clients.extend(loaders)
            if with_burst:
                start = counters["burst_from"]
                for i in range(start, start + args.burst):
                    (watcher.folder / f"burst_{i:03d}_fundus_OS.png").write_bytes(
                        oct_bscan(1000 + i, size=(512, 384))
                    )
                counters["burst_from"] = start + args.burst
            state = {"next_drop": 0.0, "dropped": 0}
            started = time.monotonic()

            def every_100ms() -> None:
                bar = session.patient_list.table.verticalScrollBar()
                bar.setValue((bar.value() + 60) % max(1, bar.maximum()))
                now = time.monotonic() - started
                if with_drops and now >= state["next_drop"] and counters["dropped"] < len(drops):
                    session.imports.import_files([drops[counters["dropped"]]])
                    counters["dropped"] += 1
                    state["dropped"] += 1
                    state["next_drop"] = now + args.drop_every

            timer.take()
            probe.record()
            recorder.start()
            pump(qt_app, seconds, every_100ms)
            gui = summary(recorder.stop())
            probe.pause()
            served = []
            for loader in loaders:
                out, _ = loader.communicate(timeout=60)
                served.append(json.loads(out.strip().splitlines()[-1]))
                clients.remove(loader)
            return {
                "probe": probe.report(),
                "gui": gui,
                "api_calls_ms": timer.take(),
                "work": {"images_dropped": state["dropped"], "api_clients": served},
            }

        results = {name: run_phase(name) for name in phases}
        return {
            "benchmark": "gil_holds",
            "machine": {**machine(), "switch_interval_s": sys.getswitchinterval()},
            "probe_sleep_ms": PROBE_SLEEP_S * 1000,
            "attribute_ms": args.attribute_ms,
            "phases": results,
        }
    finally:
        probe.close()
        for client in clients:
            if client.poll() is None:
                client.terminate()
            client.communicate(timeout=20)
        close_window(desktop, root)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2), flush=True)
