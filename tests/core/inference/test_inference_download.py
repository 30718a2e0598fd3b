"""The explicit download, against a local stand-in for the Hub and against no Hub at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from ophthai_desktop.core.errors import ModelUnavailable
from ophthai_desktop.core.events import Event, EventBus, ModelStateChanged
from ophthai_desktop.core.inference import InferenceEngine, ModelState
from ophthai_desktop.core.inference.download import DownloadCancelled, download_model
from ophthai_desktop.core.settings import Settings

REPO = "OctoMed/OctoMed-7B"
COMMIT = "c0ffee" + "0" * 34
CLOSED_PORT = "http://127.0.0.1:9"
ROOT = Path(__file__).parents[3]


@dataclass
class Held:
    """A file the Hub sends in two parts: ``first`` bytes, then, once ``go_on`` is set,
    the rest (``sent`` is set when the first part is on its way)."""

    name: str
    first: int
    sent: threading.Event = field(default_factory=threading.Event)
    go_on: threading.Event = field(default_factory=threading.Event)


def serve_repo(folder: Path, held: Held | None = None) -> ThreadingHTTPServer:
    """A minimal Hub: repository info, file tree and file downloads for one repository."""
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(200)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "GET":
                return
            name = self.path.rsplit("/", 1)[1]
            if held is None or name != held.name:
                self.wfile.write(body)
                return
            self.wfile.write(body[: held.first])
            self.wfile.flush()
            held.sent.set()
            if held.go_on.wait(timeout=60):
                with contextlib.suppress(OSError):  # the client may have stopped reading
                    self.wfile.write(body[held.first :])

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path.startswith(f"/api/models/{REPO}/revision/"):
                info = {"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
                self._send(json.dumps(info).encode(), {"Content-Type": "application/json"})
            elif path.startswith(f"/api/models/{REPO}/tree/"):
                tree = [
                    {"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for n, b in files.items()
                ]
                self._send(json.dumps(tree).encode(), {"Content-Type": "application/json"})
            elif path.startswith(f"/{REPO}/resolve/{COMMIT}/"):
                data = files[path.rsplit("/", 1)[1]]
                etag = f'"{hashlib.sha1(data).hexdigest()}"'
                self._send(data, {"ETag": etag, "X-Repo-Commit": COMMIT})
            else:
                self.send_response(404)
                self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def hub(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = serve_repo(tiny_checkpoint)
    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    yield endpoint
    server.shutdown()
    server.server_close()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"max_pixels": 3136 * 4, "max_new_tokens": 4, "device": "cpu"}
    values.update(overrides)
    return Settings(data_dir=tmp_path / "data", _env_file=None, **values)  # type: ignore[arg-type]


def test_engine_downloads_then_loads(hub: str, tmp_path: Path) -> None:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    engine = InferenceEngine(make_settings(tmp_path), events=bus, cache_dir=tmp_path / "hub")
    assert engine.status().state is ModelState.NOT_INSTALLED
    reported: list[float] = []

    folder = engine.download(progress=lambda fraction, message: reported.append(fraction))

    assert folder.name == COMMIT
    status = engine.status()
    assert status.state is ModelState.INSTALLED
    assert status.revision == COMMIT
    assert reported[-1] == 1.0
    assert reported == sorted(reported)
    states = [e.state for e in events if isinstance(e, ModelStateChanged)]
    assert states[0] == "downloading" and states[-1] == "installed"
    assert any(
        isinstance(e, ModelStateChanged) and e.state == "downloading" and e.progress == 1.0
        for e in events
    )
    assert engine.load().state is ModelState.READY


def test_download_into_the_model_path(hub: str, tmp_path: Path) -> None:
    target = tmp_path / "octomed"
    engine = InferenceEngine(make_settings(tmp_path, model_path=target))

    engine.download()

    assert (target / "config.json").is_file()
    assert engine.status().state is ModelState.INSTALLED


def test_cancelled_download_leaves_the_model_not_installed_and_can_be_started_again(
    hub: str, tmp_path: Path
) -> None:
    engine = InferenceEngine(make_settings(tmp_path), cache_dir=tmp_path / "hub")
    cancel = threading.Event()

    with pytest.raises(DownloadCancelled):
        engine.download(progress=lambda fraction, message: cancel.set(), cancel=cancel)

    status = engine.status()
    assert status.state is ModelState.NOT_INSTALLED
    assert "cancelled" in status.message
    engine.download()
    assert engine.status().state is ModelState.INSTALLED


def test_download_without_a_hub_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_PORT)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    engine = InferenceEngine(make_settings(tmp_path), events=bus, cache_dir=tmp_path / "hub")
    started = time.monotonic()

    with pytest.raises(ModelUnavailable, match="not reachable"):
        engine.download()

    assert time.monotonic() - started < 5.0
    status = engine.status()
    assert status.state is ModelState.ERROR
    assert status.error is not None and "OPHTHAI_MODEL_PATH" in status.error
    assert [e.state for e in events if isinstance(e, ModelStateChanged)] == [
        "downloading",
        "error",
    ]
    # The error clears once the files are checked again.
    assert engine.refresh().state is ModelState.NOT_INSTALLED


def test_download_model_without_a_hub_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()

    with pytest.raises(ModelUnavailable):
        download_model(REPO, cache_dir=tmp_path, endpoint=CLOSED_PORT)

    assert time.monotonic() - started < 5.0


def test_download_cancelled_before_it_starts(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(DownloadCancelled):
        download_model(REPO, cache_dir=tmp_path, endpoint=CLOSED_PORT, cancel=cancel)


def _ophthai(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``ophthai ARGS`` in a process of its own (it sets up logging for the process)."""
    return subprocess.run(
        [sys.executable, "-m", "ophthai_desktop", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_downloads_the_model_where_the_app_finds_it(
    hub: str, tmp_path: Path
) -> None:
    # `ophthai serve` has no window, so no model manager: this is its way to install.
    target = tmp_path / "octomed"

    done = _ophthai(["download-model"], tmp_path, OPHTHAI_MODEL_PATH=str(target))

    assert done.returncode == 0, done.stderr
    assert f"The model in {target} is installed and not loaded." in done.stdout
    assert "Downloaded" in done.stderr  # how far it got, as it went
    engine = InferenceEngine(make_settings(tmp_path, model_path=target))
    assert engine.status().state is ModelState.INSTALLED


def test_the_command_line_says_why_a_download_failed(tmp_path: Path) -> None:
    done = _ophthai(
        ["download-model"], tmp_path, HF_ENDPOINT=CLOSED_PORT, HF_HUB_CACHE=str(tmp_path / "hub")
    )

    assert done.returncode == 1
    said = done.stderr.splitlines()[-1]  # after the log's lines
    assert said.startswith(f"ophthai download-model: {REPO} could not be downloaded")
    assert "OPHTHAI_MODEL_PATH" in said


def test_a_missing_model_says_where_it_was_looked_for_and_how_to_download_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither variable set, as on most workstations: the default cache is named all the same.
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "default-hub"))

    message = InferenceEngine(make_settings(tmp_path)).status().message

    assert f"not in the Hugging Face cache ({tmp_path / 'default-hub'})" in message
    assert "ophthai download-model" in message  # a server has no model manager
    assert "AI ▸ Model manager…" in message  # the window has


def test_ctrl_c_stops_the_command_line_download_at_once(tmp_path: Path) -> None:
    """Ctrl-C stopped only the files not yet started: those on their way (a 7B model's
    shards, gigabytes) were fetched to their end before the command said it stopped."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_text("{}")
    (repo / "model.safetensors").write_bytes(bytes(24 * 1024 * 1024))
    held = Held("model.safetensors", first=hf_constants.DOWNLOAD_CHUNK_SIZE + 1024)
    server = serve_repo(repo, held)
    target = tmp_path / "octomed"
    process = subprocess.Popen(
        [sys.executable, "-m", "ophthai_desktop", "download-model"],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OPHTHAI_MODEL_PATH": str(target),
            "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    said: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [said.put(line) for line in process.stderr or ()])
    reader.start()
    try:
        assert held.sent.wait(timeout=60)  # the model's file on its way
        process.send_signal(signal.SIGINT)
        assert _heard(said, "stopping", within_s=30)
        held.go_on.set()  # the file goes on coming: the download stops at its next piece

        assert process.wait(timeout=60) == 130
    finally:
        held.go_on.set()
        process.kill()
        process.wait()
        reader.join()
        if process.stderr is not None:
            process.stderr.close()
        server.shutdown()
        server.server_close()
    assert _heard(said, "stopped; run it again to go on where it stopped", within_s=5)
    assert not (target / "model.safetensors").exists()  # not fetched to its end


def _heard(said: queue.Queue[str], text: str, within_s: float) -> bool:
    """Whether a line with ``text`` comes within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            if text in said.get(timeout=left):
                return True
        except queue.Empty:
            return False
    return False
