"""The real application on a real X server (Xvfb): ``ophthai`` starts and stops
cleanly, and the README's screenshots (the window, the Settings dialog, the model
manager) are taken and none is blank.

``.ci/run`` installs Xvfb and the xcb libraries; where Xvfb is missing these tests are
skipped with that reason. Set ``UPDATE_SCREENSHOTS=1`` to refresh every screenshot in
``docs/screenshots/`` from the run (they are also written when missing)::

    UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/ui/test_ui_xvfb.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tests.support.crash import crash_lines
from tests.support.xserver import app_env, xvfb
from tests.ui.screenshot_app import SHOWN_HOME

REPO = Path(__file__).resolve().parents[2]
DOCS_SHOTS = REPO / "docs" / "screenshots"
#: The screenshots the README shows, all taken by ``screenshot_app``.
README_SHOTS = (
    "main-window",
    "scans",
    "oculomics",
    "settings",
    "model-manager",
    "model-manager-ready",
)

needs_xvfb = pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)"
)


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb server on a free display number."""
    try:
        with xvfb() as number:
            yield number
    except RuntimeError as exc:
        pytest.fail(str(exc))


@needs_xvfb
def test_ophthai_starts_the_window_and_stops_on_sigterm(display: str, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ophthai_desktop"],
        cwd=tmp_path,
        env=app_env(display, tmp_path / "data"),
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    shown = threading.Event()
    serving = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "desktop window shown" in line:
                shown.set()
            if "API server listening on" in line:
                serving.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert shown.wait(60), "".join(lines)
        assert serving.wait(30), "".join(lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10)
        assert process.stderr is not None
        process.stderr.close()
    log = "".join(lines)
    assert "desktop stopped" in log
    assert not crash_lines(log)


@needs_xvfb
def test_screenshot_of_the_real_window_is_not_blank(display: str, tmp_path: Path) -> None:
    out = tmp_path / "shots"
    done = subprocess.run(
        [sys.executable, "-m", "tests.ui.screenshot_app", str(out)],
        cwd=REPO,
        env=app_env(display, tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["platform"] == "xcb"
    assert result["card"] == "Diabetic Macular Edema"
    assert result["api"].startswith("API: http://127.0.0.1:")
    for name in ("main-window", "screen", "scans", "oculomics"):
        image = Image.open(result["files"][name]).convert("L")
        assert image.size[0] >= 1000 and image.size[1] >= 700
        variance = ImageStat.Stat(image).var[0]
        assert variance > 500, f"{name} looks blank (variance {variance:.0f})"
        # Text and widgets spread over the whole window, not one filled corner.
        height = image.size[1]
        for box in ((0, 0, 700, 450), (700, 0, 1400, 450), (0, height - 450, 700, height - 20)):
            assert ImageStat.Stat(image.crop(box)).var[0] > 100, (name, box)
    # The oculomics shot shows the whole tab: charts at the top, the table at the bottom.
    oculomics = Image.open(result["files"]["oculomics"]).convert("L")
    for box in ((800, 150, 1400, 400), (800, 700, 1400, 1000)):
        assert ImageStat.Stat(oculomics.crop(box)).var[0] > 100, ("oculomics", box)
    # The model manager, through real engines: not installed, then the tiny model loaded.
    assert result["model_manager"] == {
        "model-manager": "Not installed",
        "model-manager-ready": "Ready",
    }
    for name in ("model-manager", "model-manager-ready"):
        manager = Image.open(result["files"][name]).convert("L")
        assert manager.size[0] >= 400 and ImageStat.Stat(manager).var[0] > 500, name
    # The Settings dialog whole: both columns of groups filled in, the buttons at the
    # bottom right.
    settings = Image.open(result["files"]["settings"]).convert("L")
    width, height = settings.size
    assert width >= 600 and height >= 300 and ImageStat.Stat(settings).var[0] > 500
    for box in ((0, 0, width // 2, height // 2), (width // 2, 0, width, height // 2)):
        assert ImageStat.Stat(settings.crop(box)).var[0] > 100, ("settings", box)
    assert ImageStat.Stat(settings.crop((width - 250, height - 60, width, height))).var[0] > 100
    # The folders shown are where a new install keeps them, in a clinician's home folder,
    # not the run's temporary folders.
    temporary = [
        (name, text)
        for name in README_SHOTS
        for text in result["texts"][name]
        if tempfile.gettempdir() + os.sep in text
    ]
    assert not temporary
    assert f"{SHOWN_HOME}/.local/share/OphthAI" in result["texts"]["settings"]
    assert f"{SHOWN_HOME}/models/tiny-qwen25vl" in result["texts"]["model-manager-ready"]
    if os.environ.get("UPDATE_SCREENSHOTS") or not (DOCS_SHOTS / "main-window.png").exists():
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        for name in README_SHOTS:
            shutil.copyfile(result["files"][name], DOCS_SHOTS / f"{name}.png")


def test_every_screenshot_is_taken_and_shown_in_the_readme() -> None:
    """docs/screenshots holds what the screenshot test writes, each in the README."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    files = sorted(path.stem for path in DOCS_SHOTS.glob("*.png"))
    assert files == sorted(README_SHOTS)
    for name in README_SHOTS:
        assert f"](docs/screenshots/{name}.png)" in readme, name
