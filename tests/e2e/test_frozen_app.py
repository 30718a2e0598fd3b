"""Smoke test of the PyInstaller build (``dist/ophthai/ophthai``, see ``build.spec``).

Run with ``make dist-test`` (builds first when the sources changed) or
``pytest -m frozen tests/e2e/test_frozen_app.py``. The tests skip unless the build
exists *and* ``-m frozen`` selected them, so ``make test`` stays fast and a stale
build lying in ``dist/`` cannot fail it. ``OPHTHAI_FROZEN_APP`` points them at another
build.

What they check, in the frozen executable only:
- ``serve``: /health, the Alembic migrations ran (the database is at the newest
  revision, so ``versions/*.py`` were bundled), a patient with an image is created and
  listed, the WebSocket answers (uvicorn's protocol modules, chosen by string), the
  model lookup in the Hugging Face cache works, SIGTERM stops it with status 0;
- ``serve`` with the tiny random-weight Qwen2.5-VL checkpoint: the model loads and an
  analysis runs (torch, transformers' lazy Qwen2.5-VL modules, tokenizers, safetensors);
- the desktop window (offscreen): it logs that it is shown, finds its icons and
  stylesheet, starts its embedded API, brings itself forward for a second launch (which
  then ends), and quits with status 0 on SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.crash import crash_lines
from tests.support.images import png_bytes

REPO = Path(__file__).resolve().parents[2]
FROZEN_APP = Path(os.environ.get("OPHTHAI_FROZEN_APP") or REPO / "dist" / "ophthai" / "ophthai")
MIGRATIONS = REPO / "ophthai_desktop" / "core" / "storage" / "migrations" / "versions"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
#: The window must still be up this long after it said it was shown.
GUI_ALIVE_S = 3.0


def _selected(config: pytest.Config) -> bool:
    return "frozen" in (config.getoption("markexpr") or "")


pytestmark = [
    pytest.mark.frozen,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not FROZEN_APP.is_file(), reason=f"no frozen build at {FROZEN_APP} (run `make dist`)"
    ),
]


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    if not _selected(request.config):
        pytest.skip("frozen-build smoke test: run it with `make dist-test` (pytest -m frozen)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def frozen_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without OphthAI settings, with an empty Hugging Face cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPHTHAI_", "HF_"))}
    env["HF_HOME"] = str(tmp_path / "hf")
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


@dataclass
class Running:
    """The frozen app as a child process; stdout and stderr merged, read by a thread."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = START_TIMEOUT_S) -> str:
        """The first line (from now on) containing ``text``; fails if the process ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}:\n{self.text()}")

    def text(self) -> str:
        return "".join(self.output)

    def terminate(self) -> int:
        """SIGTERM, then the exit status (killed and failed after STOP_TIMEOUT_S)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
            raise AssertionError(
                f"no exit {STOP_TIMEOUT_S} s after SIGTERM:\n{self.text()}"
            ) from None
        if self.reader is not None:
            self.reader.join(STOP_TIMEOUT_S)
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        if self.reader is not None:
            self.reader.join(STOP_TIMEOUT_S)
        assert self.process.stdout is not None
        self.process.stdout.close()


Launch = Callable[[list[str], dict[str, str]], Running]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    started: list[Running] = []

    def start(args: list[str], env: dict[str, str]) -> Running:
        process = subprocess.Popen(
            [str(FROZEN_APP), *args],
            cwd=tmp_path,  # no stray .env is read
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running = Running(process)
        running.reader = threading.Thread(target=running._read, daemon=True)
        running.reader.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


def head_revision() -> str:
    """The newest Alembic revision in the source tree (the one the build must reach)."""
    revisions: dict[str, str | None] = {}
    for script in MIGRATIONS.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revision = re.search(r"^revision(?:: str)? = \"([^\"]+)\"", text, re.M)
        parent = re.search(r"^down_revision(?:: [^=]+)? = \"([^\"]+)\"", text, re.M)
        assert revision is not None, script
        revisions[revision.group(1)] = parent.group(1) if parent else None
    heads = set(revisions) - set(revisions.values())
    assert len(heads) == 1, heads
    return heads.pop()


def test_frozen_serve_answers_and_stops_on_sigterm(tmp_path: Path, launch: Launch) -> None:
    data = tmp_path / "data"
    port = free_port()
    app = launch(["--data-dir", str(data), "serve", "--port", str(port)], frozen_env(tmp_path))
    url = app.wait_for("listening on").split("listening on ", 1)[1].split()[0]
    assert url == f"http://127.0.0.1:{port}"

    image = "data:image/png;base64," + base64.b64encode(png_bytes((48, 32))).decode()
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"
        created = http.post(
            "/api/patients",
            json={"name": "Frozen Test", "age": 61, "gender": "female", "imageUrl": image},
        )
        assert created.status_code == 201, created.text
        patient = created.json()
        listed = http.get("/api/patients")
        assert listed.headers["X-Total-Count"] == "1"
        assert listed.json()[0]["id"] == patient["id"]
        picture = http.get(f"/api/patients/{patient['id']}/image")
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
        # The Hugging Face cache lookup (huggingface_hub, imported lazily) works.
        assert http.get("/api/ai/health").json()["status"] == "not_installed"
        # The docs pages' bundles are in the build (served here, not from a CDN).
        assert "/docs-static/swagger-ui-bundle.js" in http.get("/docs").text
        assert len(http.get("/docs-static/swagger-ui-bundle.js").content) > 100_000

    ws_url = url.replace("http://", "ws://", 1) + "/api/notifications/ws"
    with connect(ws_url, open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["event"] == "connected"

    with sqlite3.connect(data / "ophthai.db") as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    db.close()
    assert revision == head_revision()

    assert app.terminate() == 0, app.text()
    assert "stopped cleanly" in app.text()
    assert not crash_lines(app.text()), app.text()


def test_frozen_serve_runs_the_tiny_model(
    tmp_path: Path, tiny_checkpoint: Path, launch: Launch
) -> None:
    env = frozen_env(
        tmp_path,
        OPHTHAI_MODEL_PATH=str(tiny_checkpoint),
        OPHTHAI_MAX_NEW_TOKENS="10",
        OPHTHAI_DEVICE="cpu",
    )
    app = launch(["--data-dir", str(tmp_path / "data"), "serve", "--port", "0"], env)
    url = app.wait_for("listening on").split("listening on ", 1)[1].split()[0]

    with httpx.Client(base_url=url, timeout=120) as http:
        loaded = http.post("/api/ai/load-model")
        assert loaded.status_code == 200, f"{loaded.text}\n{app.text()}"
        assert http.get("/api/ai/health").json()["status"] == "available"
        image = base64.b64encode(png_bytes((56, 56))).decode()
        analysed = http.post("/api/ai/analyze", json={"image_base64": image})
        assert analysed.status_code == 200, f"{analysed.text}\n{app.text()}"
    result = analysed.json()
    # Random weights: ten tokens of byte soup, reported as unparsed.
    assert result["parse_status"] == "parse_failed"
    assert result["provenance"]["completion_tokens"] == 10

    assert app.terminate() == 0, app.text()
    assert not crash_lines(app.text()), app.text()


def test_frozen_desktop_window_comes_up_and_quits_on_sigterm(
    tmp_path: Path, launch: Launch
) -> None:
    port = free_port()
    env = frozen_env(tmp_path, QT_QPA_PLATFORM="offscreen", OPHTHAI_API_PORT=str(port))
    app = launch(["--data-dir", str(tmp_path / "data")], env)
    app.wait_for("desktop window shown")

    # The embedded API starts after the window, on its own thread.
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or app.process.poll() is not None:
                raise AssertionError(f"the embedded API never answered:\n{app.text()}") from None
            time.sleep(0.2)
    assert health.json()["status"] == "ok"

    # A second launch on the same folder reaches this window through its local socket
    # (QtNetwork bundled) and ends.
    second = subprocess.run(
        [str(FROZEN_APP), "--data-dir", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert second.returncode == 0, second.stderr
    assert "its window was shown" in second.stderr

    time.sleep(GUI_ALIVE_S)
    assert app.process.poll() is None, app.text()
    assert app.terminate() == 0, app.text()

    output = app.text()
    assert "desktop stopped" in output
    # The icons and the stylesheet were found inside the bundle.
    assert "is missing from" not in output and "stylesheet could not be read" not in output
    assert not crash_lines(output), output


def test_frozen_window_without_a_display_says_so(tmp_path: Path) -> None:
    """No DISPLAY, no WAYLAND_DISPLAY, no QT_QPA_PLATFORM (an SSH session): the build
    says there is no display and names `ophthai serve`, status 1, rather than Qt's abort
    (SIGABRT) telling the user to reinstall the application."""
    env = {
        k: v
        for k, v in frozen_env(tmp_path).items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    done = subprocess.run(
        [str(FROZEN_APP), "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert done.returncode == 1, done.stderr
    assert "there is no display to open the window on" in done.stderr
    assert "ophthai serve" in done.stderr
    assert not crash_lines(done.stderr), done.stderr


def test_frozen_bundle_has_no_links_to_nothing() -> None:
    """build.spec drops Qt libraries the app does not use (QML, Quick, PDF, the virtual
    keyboard); PyInstaller's links to them at the top of the bundle went with them, or
    a copy of the folder (``cp -L``, an installer) fails on links that point nowhere."""
    bundle = FROZEN_APP.parent
    dangling = sorted(
        str(path.relative_to(bundle))
        for path in bundle.rglob("*")
        if path.is_symlink() and not path.exists()
    )
    assert dangling == []


def test_frozen_bundle_has_the_metadata_about_shows() -> None:
    """Help > About reads its versions from package metadata; a distribution whose
    metadata the build left out showed as "not installed" (PySide6 did)."""
    from importlib.metadata import PathDistribution

    from ophthai_desktop.ui.session import ABOUT_PACKAGES

    internal = FROZEN_APP.parent / "_internal"
    bundled = {
        PathDistribution(info).metadata["Name"].lower().replace("_", "-")
        for info in internal.glob("*.dist-info")
        if (info / "METADATA").is_file()
    }
    missing = [name for name in ABOUT_PACKAGES if name.lower() not in bundled]
    assert missing == []
