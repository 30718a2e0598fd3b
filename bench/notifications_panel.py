"""How long the GUI thread waits while the notifications panel holds many notifications.

What it measures
    The real desktop window (:class:`ophthai_desktop.desktop.Desktop`) runs offscreen in
    this process on a fresh data folder holding ``--notifications`` notifications
    (stored through ``NotificationService.create_in``, one transaction; a mix of
    critical, warning, done and info ones, all unread) and ``--jobs`` queued analyses
    (``JobService.queue_image_analysis``; no model is loaded, so they stay queued). No
    API server, no watch folder. A 5 ms precise ``QTimer`` on the GUI thread records the
    time between its ticks (5 ms is on time); per phase: the longest gap, p99, p50, the
    ticks over 16 and 8 ms, and the GUI thread's own CPU time (``time.thread_time``).

Phases
    1. ``idle`` (the baseline): the window shown, the panel closed, nothing happening.
    2. ``open``: the notifications dock shown (its first page was read at start).
    3. ``scroll``: the list scrolled to its end every 60 ms until every notification is
       loaded (pages of 200 read as it gets there).
    4. ``mark_all_read``: "All read" clicked; until every row shows read.
    5. ``delete_one``: a row in the middle chosen, "Delete" clicked; until it is gone.
    6. ``cancel``: in the job queue, each queued job chosen and "Cancel" clicked, one
       every 100 ms; until all show cancelled.

Target (``gui_stall.py``'s): no gap over 16 ms in any phase.

Run (from the repository root)::

    .venv/bin/python bench/notifications_panel.py
    .venv/bin/python bench/notifications_panel.py --notifications 2000 --profile /tmp/p.prof

One JSON object goes to stdout; progress to stderr. Temporary files are removed.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gui_stall import TickRecorder, close_window, print_result, pump, summary, wait_for
from machine_probe import machine
from private_config import use_private_config

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def log(message: str) -> None:
    print(f"[notifications_panel] {message}", file=sys.stderr, flush=True)


PHASES = ("idle", "open", "scroll", "mark_all_read", "delete_one", "cancel")


def seed(application: Any, notifications: int, jobs: int) -> None:
    """``notifications`` unread notifications (one transaction) and ``jobs`` queued
    analyses of images that belong to no patient."""
    from ophthai_desktop.core.records import Actor
    from ophthai_desktop.core.services.notifications import NotificationService
    from tests.ui.demo_images import oct_bscan

    kinds = ("info", "critical", "success", "info")
    with application.db.session() as session:
        for i in range(notifications):
            NotificationService.create_in(
                session,
                f"Bench notification {i:06d}: analysis of scan {i} finished",
                type=kinds[i % 4],
                patient_id=None,
                warning=i % 10 == 3,
            )
    actor = Actor("bench", "api")
    for i in range(jobs):
        application.jobs.queue_image_analysis(oct_bscan(i + 1), actor=actor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=20, help="queued jobs cancelled")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="write a cProfile of the GUI thread in the measured phases (not idle) to "
        "FILE (the figures are then the profiler's, not the window's)",
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES[1:]), help="comma-separated phases to profile"
    )
    args = parser.parse_args(argv)
    use_private_config()

    from ophthai_desktop.bootstrap import build_application
    from ophthai_desktop.core.settings import Settings
    from ophthai_desktop.desktop import Desktop, qt_application, settle_memory

    root = Path(tempfile.mkdtemp(prefix="ophthai-notif-panel-"))
    desktop = None
    try:
        settings = Settings(
            data_dir=root / "data",
            model_path=root / "no-model",
            device="cpu",
            api_enabled=False,
            watch_folder_enabled=False,
            user_name="Bench",
            _env_file=None,
        )
        application = build_application(settings)
        log(f"storing {args.notifications} notifications and {args.jobs} queued jobs")
        seed(application, args.notifications, args.jobs)
        qt_app = qt_application()
        desktop = Desktop(application=application, tray=False)
        session = desktop.session
        window = session.window
        panel = session.notifications_panel
        model = panel.model
        jobs = session.jobs_panel
        window.notifications_dock.hide()
        desktop.start()
        wait_for(qt_app, lambda: model.rowCount() > 0, 60, "the first page")
        wait_for(qt_app, lambda: session.notifications.unread > 0, 60, "the unread count")
        wait_for(qt_app, lambda: jobs.model.rowCount() >= args.jobs, 60, "the job queue")
        pump(qt_app, 0.5)
        settle_memory()

        recorder = TickRecorder()
        profiler = cProfile.Profile() if args.profile else None
        profiled = set(args.phases.split(","))
        results: dict[str, Any] = {}

        def measure(
            name: str,
            act: Callable[[], None],
            done: Callable[[], bool],
            every: Callable[[], None] | None = None,
            timeout_s: float = 120,
        ) -> None:
            log(name)
            recorder.start()
            cpu = time.thread_time()
            wall = time.perf_counter()
            profiling = profiler if name in profiled else None
            if profiling is not None:
                profiling.enable()
            act()
            if every is not None:
                from PySide6.QtCore import QTimer

                ticker = QTimer()
                ticker.setInterval(60)
                ticker.timeout.connect(every)
                ticker.start()
            wait_for(qt_app, done, timeout_s, name)
            if every is not None:
                ticker.stop()
            pump(qt_app, 0.3)  # what follows the last change (repaints, counts)
            if profiling is not None:
                profiling.disable()
            results[name] = summary(recorder.stop()) | {
                "seconds": round(time.perf_counter() - wall, 2),
                "gui_cpu_ms": round((time.thread_time() - cpu) * 1000.0, 1),
            }

        log("idle")
        recorder.start()
        cpu = time.thread_time()
        pump(qt_app, 1.0)
        results["idle"] = summary(recorder.stop()) | {
            "seconds": 1.0,
            "gui_cpu_ms": round((time.thread_time() - cpu) * 1000.0, 1),
        }

        measure("open", window.notifications_dock.show, lambda: panel.list.isVisible())

        bar = panel.list.verticalScrollBar()
        total = model.total

        def to_end() -> None:
            bar.setValue(bar.maximum())

        measure(
            "scroll",
            to_end,
            lambda: model.rowCount() >= total and bar.value() == bar.maximum(),
            every=to_end,
            timeout_s=300,
        )
        loaded = model.rowCount()

        def all_read() -> bool:
            return session.notifications.unread == 0 and not model.marking_read

        measure("mark_all_read", panel.mark_all.click, all_read)

        victim = model.row_at(model.rowCount() // 2)
        assert victim is not None

        def delete_one() -> None:
            index = model.index(model.position(victim.notification_id) or 0, 0)
            panel.list.setCurrentIndex(index)
            panel.delete.click()

        measure("delete_one", delete_one, lambda: model.get(victim.notification_id) is None)

        window.jobs_dock.show()
        pump(qt_app, 0.3)
        queued = [
            row.job_id for row in jobs.model.records() if getattr(row, "state", "") == "queued"
        ]
        left = list(queued)

        def cancel_next() -> None:
            if left:
                jobs.select_job(left.pop(0))
                jobs.cancel.click()

        def cancelled() -> bool:
            return not left and all(
                (row := jobs.model.get(job_id)) is None or row.state == "cancelled"
                for job_id in queued
            )

        from PySide6.QtCore import QTimer

        canceller = QTimer()
        canceller.setInterval(100)
        canceller.timeout.connect(cancel_next)
        measure("cancel", canceller.start, cancelled)
        canceller.stop()

        idle_max = results["idle"].get("max_ms") or 1.0
        result = {
            "benchmark": "notifications_panel",
            "machine": {**machine(), "qt_platform": qt_app.platformName()},
            "notifications": args.notifications,
            "loaded_after_scroll": loaded,
            "jobs_cancelled": len(queued),
            "target": {"max_ms": 16.0},
            "phases": results,
            "ratios_max_over_idle": {
                name: round(results[name]["max_ms"] / idle_max, 2)
                for name in PHASES[1:]
                if results.get(name, {}).get("max_ms")
            },
            "profiled": bool(profiler),
        }
        return print_result(result, profiler, args.profile)
    finally:
        close_window(desktop, root)


if __name__ == "__main__":
    sys.exit(main())
