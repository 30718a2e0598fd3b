"""The test run's own environment: what tests/conftest.py keeps and what it clears."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_suite_clears_app_settings_but_keeps_its_own_switches() -> None:
    """OPHTHAI_FROZEN_APP (which build the frozen smoke test runs) was cleared with the
    app's settings, so the smoke test always ran dist/ophthai whatever it said."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPHTHAI_")}
    env.update(OPHTHAI_FROZEN_APP="/elsewhere/ophthai", OPHTHAI_API_PORT="1")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, tests.conftest; "
            "print(os.environ.get('OPHTHAI_FROZEN_APP'), os.environ.get('OPHTHAI_API_PORT'))",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/elsewhere/ophthai", "None"]
