"""Benchmarks that start the app leave the user's own settings alone.

The window and ``ophthai serve`` read the user's settings file (``settings.env`` in
``$XDG_CONFIG_HOME/OphthAI``), which can turn on a watch folder holding real scans, and
the window saves its layout beside it. A benchmark's throwaway app must do neither: it
would take the clinic's scans into a database that is deleted a minute later, and
overwrite the clinician's window layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.images import png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "command",
    [
        ["bench/startup.py", "--runs", "1", "--baseline-runs", "1"],
        [
            "bench/api_list.py",
            "--patients",
            "20",
            "--notifications",
            "20",
            "--requests",
            "5",
            "--hammer-seconds",
            "0.5",
        ],
        ["bench/analysis_moments.py", "--cycles", "1", "--patients", "5", "--tokens", "8"],
        [
            "bench/gui_stall.py",
            "--seconds",
            "1",
            "--idle-seconds",
            "0.5",
            "--patients",
            "20",
            "--burst",
            "1",
        ],
        [
            "bench/gil_holds.py",
            "--seconds",
            "1",
            "--idle-seconds",
            "0.5",
            "--patients",
            "20",
            "--burst",
            "1",
        ],
    ],
    ids=lambda command: Path(command[0]).stem,
)
def test_benchmark_keeps_off_the_users_settings(tmp_path: Path, command: list[str]) -> None:
    scans = tmp_path / "clinic-scans"
    scans.mkdir()
    (scans / "scan_OD.png").write_bytes(png_bytes())
    user_config = tmp_path / "user-config" / "OphthAI"
    user_config.mkdir(parents=True)
    (user_config / "settings.env").write_text(
        f"OPHTHAI_WATCH_FOLDER_ENABLED=true\nOPHTHAI_WATCH_FOLDER_PATH={scans}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPHTHAI_")}
    env["XDG_CONFIG_HOME"] = str(user_config.parent)
    env["QT_QPA_PLATFORM"] = "offscreen"

    done = subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )

    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: a target was missed
    assert isinstance(json.loads(done.stdout), dict)
    assert sorted(p.name for p in scans.iterdir()) == ["scan_OD.png"]  # not taken in
    assert sorted(p.name for p in user_config.iterdir()) == ["settings.env"]  # no layout
