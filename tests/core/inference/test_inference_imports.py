"""Importing the inference package stays cheap: no torch, no transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_import_does_not_load_torch() -> None:
    code = (
        "import ophthai_desktop.core.inference, sys\n"
        "assert 'torch' not in sys.modules\n"
        "assert 'transformers' not in sys.modules\n"
    )

    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_status_of_a_missing_model_needs_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ophthai_desktop.core.inference import InferenceEngine\n"
        "from ophthai_desktop.core.settings import Settings\n"
        "started = time.monotonic()\n"
        "engine = InferenceEngine(Settings(data_dir=Path(sys.argv[1]), _env_file=None))\n"
        "status = engine.status()\n"
        "print(status.state.value, round(time.monotonic() - started, 3))\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPHTHAI_"))}
    env["HF_HOME"] = str(tmp_path / "hf-home")

    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    state, seconds = done.stdout.split()
    assert state == "not_installed"
    assert float(seconds) < 1.0
