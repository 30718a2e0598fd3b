"""Start-up time: a new process until the main window is shown and responsive.

What it measures
    Each run spawns a fresh interpreter (``python bench/startup.py --child``) that does
    what ``ophthai`` (``ophthai_desktop.desktop.run``) does, offscreen: imports the
    launcher, builds the QApplication (name, icon, style, stylesheet), builds the
    :class:`~ophthai_desktop.desktop.Desktop` (settings, database upgrade, services,
    the window and its controllers) and calls ``start()`` (the window is shown, the
    inference thread and, in the background, the API server start), then enters Qt's
    event loop. A ``QTimer.singleShot(0)`` queued right after ``show()`` records
    *shown* (the loop has started and handled the show/expose events); from there a
    second ``singleShot(0)`` records *responsive* (the loop turns again: input would be
    handled). At *shown* the child asserts that neither ``torch`` nor ``transformers``
    is imported (the run fails otherwise), then quits and shuts down.

    ``cold_start_s`` is the median over runs of *responsive* minus the moment the parent
    spawned the child (``time.monotonic`` is system-wide on Linux and macOS). "Cold"
    means a new process; the operating system's file cache is warm (a first run after a
    reboot is slower). A throw-away first run creates the database, so every measured
    run starts on an existing one, as a clinician's does; its time is reported as
    ``first_run_s`` (fresh data folder: Alembic creates the schema).

Baselines (same machine, same interpreter, same way of measuring)
    ``baseline_python_s``: ``python -c pass``, spawn to exit.
    ``baseline_import_pyside6_s``: a child that imports PySide6.QtWidgets, shows an
    empty QWidget offscreen and records *responsive* the same way: the floor for any
    Qt window started from Python.
    ``ratio_vs_baseline``: ``cold_start_s / baseline_import_pyside6_s``.

Target: ``cold_start_s`` <= 1.5 s (DESIGN.md §1: "well under two seconds").
Over the target, one more child runs with ``-X importtime`` and ``slowest_imports``
lists the top-level imports by cumulative time and single modules by their own time
(the API server imports on its own thread at the same time, so own times include
waits for the interpreter lock). ``--frozen`` also times the PyInstaller build from
spawn to its "desktop window shown" log line (``frozen_to_shown_log_s``).

Run (from the repository root)::

    .venv/bin/python bench/startup.py              # 7 runs
    .venv/bin/python bench/startup.py --runs 15 --importtime
    .venv/bin/python bench/startup.py --frozen      # after `make dist`

One JSON object goes to stdout; progress to stderr. Temporary folders are removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from private_config import use_private_config

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 1.5
CHILD_TIMEOUT_S = 120.0
HEAVY_MODULES = ("torch", "transformers")


# --------------------------------------------------------------------------- child side


def _child_app(data_dir: Path) -> dict[str, Any]:
    """In the child: start the desktop app as ``desktop.run`` does; return timings."""
    marks: dict[str, float] = {"child_start": time.monotonic()}
    import logging
    import signal

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer

    marks["pyside6_imported"] = time.monotonic()
    from ophthai_desktop.core.settings import Settings
    from ophthai_desktop.desktop import Desktop, qt_application

    marks["launcher_imported"] = time.monotonic()
    settings = Settings(data_dir=data_dir)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    qt_app = qt_application()
    marks["qapplication"] = time.monotonic()
    desktop = Desktop(settings)
    marks["desktop_built"] = time.monotonic()
    qt_app.setQuitOnLastWindowClosed(desktop.session.tray is None)
    previous = signal.signal(signal.SIGINT, lambda *_: qt_app.quit())

    heavy_at_shown: list[str] = []
    window_visible: list[bool] = []

    def responsive() -> None:
        marks["responsive"] = time.monotonic()
        qt_app.quit()

    def shown() -> None:
        marks["shown"] = time.monotonic()
        heavy_at_shown.extend(name for name in HEAVY_MODULES if name in sys.modules)
        window_visible.append(desktop.window.isVisible())
        QTimer.singleShot(0, responsive)

    try:
        desktop.start()  # shows the window; the API server starts on a thread
        marks["show_called"] = time.monotonic()
        QTimer.singleShot(0, shown)
        qt_app.exec()
    finally:
        desktop.shutdown()
        signal.signal(signal.SIGINT, previous)
    return {
        "marks": marks,
        "heavy_imported_at_shown": heavy_at_shown,
        "window_visible": bool(window_visible and window_visible[0]),
        "heavy_imported_at_exit": [name for name in HEAVY_MODULES if name in sys.modules],
    }


def _child_baseline() -> dict[str, Any]:
    """In the child: the smallest Qt window, measured the same way."""
    marks: dict[str, float] = {"child_start": time.monotonic()}
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QWidget

    marks["pyside6_imported"] = time.monotonic()
    qt_app = QApplication(sys.argv[:1])
    window = QWidget()
    window.resize(1280, 800)
    window.show()
    marks["show_called"] = time.monotonic()

    def responsive() -> None:
        marks["responsive"] = time.monotonic()
        qt_app.quit()

    def shown() -> None:
        marks["shown"] = time.monotonic()
        QTimer.singleShot(0, responsive)

    QTimer.singleShot(0, shown)
    qt_app.exec()
    return {"marks": marks}


def child_main(kind: str, data_dir: str | None) -> int:
    result = _child_app(Path(data_dir or ".")) if kind == "app" else _child_baseline()
    print("STARTUP-RESULT " + json.dumps(result), flush=True)
    return 0


# -------------------------------------------------------------------------- parent side


def _env(tmp: Path) -> dict[str, str]:
    """No OphthAI settings from the caller, an empty Hugging Face cache, offscreen Qt,
    the embedded API on any free port (it starts after the window in any case)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPHTHAI_", "HF_"))}
    env.update(
        {
            "QT_QPA_PLATFORM": "offscreen",
            "HF_HOME": str(tmp / "hf"),
            "HF_HUB_OFFLINE": "1",
            "OPHTHAI_API_PORT": "0",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def _spawn(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str, float]:
    """Run a child; (spawn time, stdout, spawn-to-exit seconds)."""
    spawned = time.monotonic()
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    ended = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return spawned, done.stdout, ended - spawned


def _run_child(kind: str, tmp: Path, data_dir: Path | None = None) -> dict[str, Any]:
    args = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    spawned, stdout, wall = _spawn(args, _env(tmp), tmp)
    line = next(x for x in stdout.splitlines() if x.startswith("STARTUP-RESULT "))
    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    marks = result.pop("marks")
    order = ["child_start", *(k for k in marks if k != "child_start")]
    phases, previous = {}, spawned
    for name in order:
        phases[name] = round(marks[name] - previous, 4)
        previous = marks[name]
    result["phases_s"] = phases  # each mark minus the one before (spawn first)
    result["start_to_shown_s"] = round(marks["shown"] - spawned, 4)
    result["start_to_responsive_s"] = round(marks["responsive"] - spawned, 4)
    result["process_wall_s"] = round(wall, 4)
    return result


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def _slowest_imports(tmp: Path, data_dir: Path, top: int = 20) -> dict[str, Any]:
    """One app child under ``-X importtime``: the top-level imports by cumulative time
    and the single modules by their own time."""
    args = [sys.executable, "-X", "importtime", str(Path(__file__).resolve())]
    args += ["--child", "app", "--data-dir", str(data_dir)]
    done = subprocess.run(
        args, env=_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    packages: list[dict[str, Any]] = []
    modules: list[dict[str, Any]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line[len("import time:") :].split("|")
        try:
            own, cumulative = int(fields[0]), int(fields[1])
        except ValueError:
            continue  # the header
        name = fields[2].rstrip()
        entry = {"module": name.strip(), "self_ms": own / 1000, "cumulative_ms": cumulative / 1000}
        modules.append(entry)
        if not name.startswith("  "):  # depth 0: a top-level import and all it pulled in
            packages.append(entry)
    packages.sort(key=lambda entry: entry["cumulative_ms"], reverse=True)
    modules.sort(key=lambda entry: entry["self_ms"], reverse=True)
    return {
        "top_level_by_cumulative_ms": [_rounded(e) for e in packages[:top]],
        "modules_by_self_ms": [_rounded(e) for e in modules[:top]],
    }


def _rounded(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in entry.items()}


def _frozen_to_shown(app: Path, tmp: Path, runs: int) -> list[float]:
    """The PyInstaller build (``make dist``): spawn until it logs "desktop window shown"
    (logged right after ``show()``, before the loop turns), then SIGTERM."""
    import signal

    data_dir = tmp / "frozen-data"
    times = []
    for _ in range(runs + 1):  # the first creates the database and is not counted
        spawned = time.monotonic()
        process = subprocess.Popen(
            [str(app), "--data-dir", str(data_dir)],
            env=_env(tmp),
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        shown = None
        for line in process.stderr:
            if "desktop window shown" in line:
                shown = time.monotonic() - spawned
                break
        # desktop.run loses a SIGTERM that arrives before Qt's loop runs (quit() before
        # exec() does nothing): give the loop time to start first.
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RuntimeError(f"{app} did not stop on SIGTERM") from None
        if shown is None:
            raise RuntimeError(f"{app} never logged that its window was shown")
        times.append(round(shown, 4))
    return times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="measured runs (default 7)")
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--importtime", action="store_true", help="always add slowest_imports")
    parser.add_argument(
        "--frozen",
        type=Path,
        nargs="?",
        const=REPO / "dist" / "ophthai" / "ophthai",
        help="also time the PyInstaller build (default dist/ophthai/ophthai)",
    )
    parser.add_argument("--child", choices=["app", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child, args.data_dir)
    use_private_config()  # the children inherit it

    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    tmp = Path(tempfile.mkdtemp(prefix="ophthai-startup-"))
    try:
        data_dir = tmp / "data"
        print("first run (creates the database) ...", file=sys.stderr)
        first = _run_child("app", tmp, data_dir)
        runs = []
        for index in range(args.runs):
            run = _run_child("app", tmp, data_dir)
            print(
                f"run {index + 1}/{args.runs}: {run['start_to_responsive_s']:.3f} s",
                file=sys.stderr,
            )
            runs.append(run)
        python_s = []
        for _ in range(args.baseline_runs):
            python_s.append(_spawn([sys.executable, "-c", "pass"], _env(tmp), tmp)[2])
        qt_s = [
            _run_child("baseline", tmp)["start_to_responsive_s"] for _ in range(args.baseline_runs)
        ]
        cold = _median([r["start_to_responsive_s"] for r in runs])
        baseline_qt = _median(qt_s)
        heavy = sorted({name for r in [first, *runs] for name in r["heavy_imported_at_shown"]})
        passed = cold <= TARGET_S and not heavy and all(r["window_visible"] for r in runs)
        report: dict[str, Any] = {
            "cold_start_s": cold,
            "runs": [r["start_to_responsive_s"] for r in runs],
            "shown_s": _median([r["start_to_shown_s"] for r in runs]),
            "phases_median_s": {
                name: _median([r["phases_s"][name] for r in runs]) for name in runs[0]["phases_s"]
            },
            "first_run_s": first["start_to_responsive_s"],
            "torch_imported_before_shown": "torch" in heavy,
            "transformers_imported_before_shown": "transformers" in heavy,
            "heavy_imported_at_exit": sorted(
                {name for r in runs for name in r["heavy_imported_at_exit"]}
            ),
            "baseline_python_s": _median(python_s),
            "baseline_import_pyside6_s": baseline_qt,
            "ratio_vs_baseline": round(cold / baseline_qt, 2),
            "target_s": TARGET_S,
            "pass": passed,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "qt_platform": "offscreen",
                "load_avg_1min_before": round(load_before, 2),
                "load_avg_1min_after": round(os.getloadavg()[0], 2),
            },
        }
        if args.frozen is not None:
            print(f"frozen build {args.frozen} ...", file=sys.stderr)
            frozen = _frozen_to_shown(args.frozen, tmp, args.baseline_runs)
            report["frozen_to_shown_log_s"] = _median(frozen)
            report["frozen_runs"] = frozen
        if cold > TARGET_S or args.importtime:
            print("-X importtime run ...", file=sys.stderr)
            report["slowest_imports"] = _slowest_imports(tmp, data_dir)
        print(json.dumps(report, indent=2))
        if heavy:
            print(f"FAIL: {', '.join(heavy)} imported before the window was shown", file=sys.stderr)
        return 0 if passed else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
