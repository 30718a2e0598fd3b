"""The GUI thread's own work at the two moments of an analysis of the patient on screen.

What it measures
    ``gui_stall.py`` runs everything at once on a shared machine, so a change of a few
    milliseconds in the window's own work drowns in its noise. This benchmark keeps the
    other threads quiet and replays, on the real window (offscreen), the core events of
    one real analysis of the shown patient: it drops an image on that patient once, the
    tiny random-weight checkpoint analyses it through the real worker, and every event
    the bus carried is recorded. Then, ``--cycles`` times, from a background thread as
    the worker would:

    ``start``
        the scan, the patient's update, the queued and started analysis (the page and
        stepper change, the analysis view clears and starts streaming);
    ``stream``
        the analysis's token deltas, one every 4 ms (the bridge merges them into 50 ms
        batches);
    ``finish``
        the finished analysis and the patient's update (the result card appears, the
        reasoning folds, the stepper moves on).

    A 5 ms precise ``QTimer`` on the GUI thread records the gaps between its ticks in
    each window (0.25 s for start and finish, 0.45 s for the stream) and, as the
    baseline, in a 0.25 s ``idle`` window with no events. Nothing else runs (no API
    client, no watch folder, the model idle), so a gap over 5 ms is the GUI thread's own
    work: handlers, layout and painting.

    Per window and phase: the longest gap (``max_ms``: median and p90 over the cycles)
    and the ticks over 8 ms per cycle. ``gui_stall.py``'s p99 <= 8 ms allows one late
    tick in a hundred; with its analysis every second that is two per analysis at most,
    both moments together. ``ratios`` are the phases' median longest gap over idle's.

    ``gui_cpu_ms_median`` is the GUI thread's own CPU time in the window (its
    ``time.thread_time``; the ticks' handling is idle's figure): steadier than the
    longest gap, which another process's moment on the machine moves, so it is the
    figure to compare two versions of the window's code by. ``gui_cpu_ms_over_idle``
    is each phase's median less idle's.

Run (from the repository root)::

    .venv/bin/python bench/analysis_moments.py
    .venv/bin/python bench/analysis_moments.py --cycles 60

One JSON object goes to stdout; progress to stderr. Temporary files are removed.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gui_stall import (
    TickRecorder,
    close_window,
    load_model,
    log,
    print_result,
    pump,
    seed_patients,
    wait_for,
)
from machine_probe import machine
from private_config import use_private_config

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: (phase, seconds the ticks are recorded after the events are published)
WINDOWS = (("idle", 0.25), ("start", 0.25), ("stream", 0.45), ("finish", 0.25))
DELTA_SPACING_S = 0.004


def phase_summary(rows: list[tuple[float, int, float]]) -> dict[str, Any]:
    longest = sorted(r[0] for r in rows)
    return {
        "gui_cpu_ms_median": round(statistics.median(r[2] for r in rows), 2),
        "max_ms_median": round(statistics.median(longest), 2),
        "max_ms_p90": round(longest[int(0.9 * (len(longest) - 1))], 2),
        "max_ms_worst": round(longest[-1], 2),
        "ticks_over_8ms_per_cycle": round(statistics.mean(r[1] for r in rows), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--patients", type=int, default=300, help="patients in the list")
    parser.add_argument("--tokens", type=int, default=48, help="max_new_tokens of the analysis")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="write a cProfile of the GUI thread in the start and finish windows to FILE "
        "(the figures are then the profiler's, not the window's)",
    )
    args = parser.parse_args(argv)
    use_private_config()

    from ophthai_desktop.bootstrap import build_application
    from ophthai_desktop.core import events as ev
    from ophthai_desktop.core.settings import Settings
    from ophthai_desktop.desktop import Desktop, qt_application, settle_memory
    from tests.support.tiny_checkpoint import build_tiny_qwen25vl
    from tests.ui.demo_images import oct_bscan

    root = Path(tempfile.mkdtemp(prefix="ophthai-moments-"))
    desktop = None
    try:
        log("building the tiny checkpoint")
        settings = Settings(
            data_dir=root / "data",
            model_path=build_tiny_qwen25vl(root / "tiny"),
            device="cpu",
            max_new_tokens=args.tokens,
            api_enabled=False,
            watch_folder_enabled=False,
            user_name="Bench",
            _env_file=None,
        )
        application = build_application(settings)
        seed_patients(application, args.patients)
        qt_app = qt_application()
        desktop = Desktop(application=application, tray=False)
        session = desktop.session
        desktop.start()
        wait_for(qt_app, lambda: session.patient_list.model.rowCount() > 0, 30, "the list")
        target = session.patient_list.model.patient_id_at(0)
        assert target is not None
        session.patients.open_patient(target)
        wait_for(qt_app, lambda: session.patient_page.patient is not None, 30, "the page")
        load_model(qt_app, application)

        log("recording one real analysis of the shown patient")
        recorded: list[ev.Event] = []
        unsubscribe = application.bus.subscribe(recorded.append)
        image = root / "drop_OCT_OD.png"
        image.write_bytes(oct_bscan(1))
        session.imports.import_files([image])
        wait_for(qt_app, lambda: application.jobs.list_jobs(state="done").total > 0, 120, "it")
        pump(qt_app, 0.5)  # the bridge delivers the last batch
        unsubscribe()
        settle_memory()
        names = [type(e).__name__ for e in recorded]
        started = names.index("AnalysisStarted")
        finished = names.index("AnalysisFinished")
        quiet = (ev.ModelStateChanged,)
        events: dict[str, list[ev.Event]] = {
            "idle": [],
            "start": [e for e in recorded[: started + 1] if not isinstance(e, quiet)],
            "stream": [
                e for e in recorded[started + 1 : finished] if isinstance(e, ev.AnalysisProgressed)
            ],
            "finish": [e for e in recorded[finished:] if not isinstance(e, quiet)],
        }

        def publish(batch: list[ev.Event], spacing: float) -> threading.Thread:
            def run() -> None:
                for event in batch:
                    application.bus.publish(event)
                    if spacing:
                        time.sleep(spacing)

            thread = threading.Thread(target=run, name="replay")
            thread.start()
            return thread

        log(f"replaying {args.cycles} cycles")
        recorder = TickRecorder()
        profiler = cProfile.Profile() if args.profile else None
        rows: dict[str, list[tuple[float, int, float]]] = {name: [] for name, _ in WINDOWS}
        for _cycle in range(args.cycles):
            for name, seconds in WINDOWS:
                recorder.start()
                cpu = time.thread_time()  # the GUI thread's own CPU time in the window
                profiling = profiler if name in ("start", "finish") else None
                if profiling is not None:
                    profiling.enable()
                thread = publish(events[name], DELTA_SPACING_S if name == "stream" else 0.0)
                pump(qt_app, seconds)
                thread.join()
                if profiling is not None:
                    profiling.disable()
                cpu_ms = (time.thread_time() - cpu) * 1000.0
                gaps = recorder.stop()
                rows[name].append((max(gaps), sum(1 for g in gaps if g > 8.0), cpu_ms))

        phases = {name: phase_summary(rows[name]) for name, _ in WINDOWS}
        idle = phases["idle"]["max_ms_median"]
        result = {
            "benchmark": "analysis_moments",
            "machine": {**machine(), "qt_platform": qt_app.platformName()},
            "cycles": args.cycles,
            "events": {
                name: [type(e).__name__ for e in batch]
                for name, batch in events.items()
                if name != "stream"
            }
            | {"stream_deltas": len(events["stream"])},
            "phases": phases,
            "gui_cpu_ms_over_idle": {
                name: round(
                    phases[name]["gui_cpu_ms_median"] - phases["idle"]["gui_cpu_ms_median"], 2
                )
                for name, _ in WINDOWS
                if name != "idle"
            },
            "ratios": {
                name: round(phases[name]["max_ms_median"] / idle, 2)
                for name, _ in WINDOWS
                if name != "idle"
            },
        }
        return print_result(result, profiler, args.profile)
    finally:
        close_window(desktop, root)


if __name__ == "__main__":
    sys.exit(main())
