"""``ophthai serve`` end to end: a real process, real HTTP and a real WebSocket."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ophthai_desktop import __version__
from ophthai_desktop.__main__ import listening_line
from ophthai_desktop.core import addresses
from ophthai_desktop.core.addresses import lan_address
from tests.conftest import png_bytes
from tests.support.crash import crash_lines

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
FRAME_TIMEOUT_S = 10.0


def clean_env() -> dict[str, str]:
    """The test's environment without any OphthAI setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OPHTHAI_")}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[str]
    stderr_path: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    stdout: list[str] = field(default_factory=list)
    url: str = ""
    reader: threading.Thread | None = None

    def read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if "listening on" in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
                return
        raise AssertionError(f"the server did not start:\n{self.output()}")

    def output(self) -> str:
        return "".join(self.stdout) + self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the process if a test left it running and release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        if self.reader is not None:
            self.reader.join(STOP_TIMEOUT_S)
        assert self.process.stdout is not None
        self.process.stdout.close()


def start(
    tmp_path: Path, args: list[str], env: dict[str, str], before: Sequence[str] = ()
) -> Server:
    """Start ``python -m ophthai_desktop ARGS`` in ``tmp_path`` (after the command prefix
    ``before``, if any) and wait until it listens."""
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [*before, sys.executable, "-m", "ophthai_desktop", *args],
            cwd=tmp_path,  # no stray .env is read
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    running = Server(process, stderr_path)
    running.reader = threading.Thread(target=running.read_stdout, daemon=True)
    running.reader.start()
    try:
        running.wait_listening()
    except BaseException:
        running.stop()
        raise
    return running


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``ophthai serve`` on a free port with a fresh data folder and no settings."""
    args = ["--data-dir", str(tmp_path / "data"), "serve", "--port", str(free_port())]
    running = start(tmp_path, args, clean_env())
    yield running
    running.stop()


def receive_event(ws: Any, name: str) -> dict[str, Any]:
    """The next frame called ``name``, skipping others (bounded)."""
    deadline = time.monotonic() + FRAME_TIMEOUT_S
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=left))
        if frame["event"] == name:
            return frame
        seen.append(frame["event"])
    raise AssertionError(f"no {name!r} frame; saw {seen}")


def test_serve_answers_http_and_websocket_then_stops_cleanly(
    server: Server, tmp_path: Path
) -> None:
    image = png_bytes((48, 32), (10, 200, 30))
    ws_url = server.url.replace("http://", "ws://", 1) + "/api/notifications/ws"

    with (
        httpx.Client(base_url=server.url, timeout=10) as http,
        connect(ws_url, open_timeout=10) as ws,
    ):
        assert receive_event(ws, "connected")["data"] is not None
        assert http.get("/health").json()["status"] == "ok"

        created = http.post(
            "/api/patients",
            json={
                "name": "Ada Lovelace",
                "age": 36,
                "imageUrl": "data:image/png;base64," + base64.b64encode(image).decode(),
            },
        )
        assert created.status_code == 201, created.text
        patient = created.json()
        assert receive_event(ws, "patient_created")["data"]["id"] == patient["id"]

        served = http.get(patient["imageUrl"])
        assert patient["imageUrl"].startswith(server.url)
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/png"
        assert served.content == image

        posted = http.post(
            "/api/notifications/",
            json={"message": "OCT ready", "type": "success", "patientId": patient["id"]},
        )
        assert posted.status_code == 201, posted.text
        frame = receive_event(ws, "notification")
        assert frame["data"] == posted.json()
        assert http.get("/api/notifications/unread-count").json() == {"count": 1}

        # Stop while a WebSocket client is still connected, as a browser would be.
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(STOP_TIMEOUT_S)
        with pytest.raises(ConnectionClosed) as closed:
            receive_event(ws, "never")

    assert exit_code == 0, server.output()
    assert closed.value.rcvd is not None and closed.value.rcvd.code in (1001, 1012)
    assert not crash_lines(server.output())
    assert (tmp_path / "data" / "ophthai.db").is_file()


def test_with_a_token_http_and_websocket_need_it(tmp_path: Path) -> None:
    token = "t" * 24
    data = tmp_path / "elsewhere"
    args = ["serve", "--data-dir", str(data), "--port", str(free_port())]
    running = start(tmp_path, args, clean_env() | {"OPHTHAI_API_TOKEN": token})
    try:
        ws_url = running.url.replace("http://", "ws://", 1) + "/api/notifications/ws"
        with httpx.Client(base_url=running.url, timeout=10) as http:
            assert http.get("/api/patients").status_code == 401
            assert http.get(
                "/api/patients", headers={"Authorization": f"Bearer {token}"}
            ).is_success
            assert http.get("/health").status_code == 200
        with pytest.raises(InvalidStatus) as refused:  # noqa: SIM117
            with connect(ws_url, open_timeout=10):
                pass
        assert refused.value.response.status_code == 401
        with connect(f"{ws_url}?token={token}", open_timeout=10) as ws:
            assert receive_event(ws, "connected")
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(STOP_TIMEOUT_S) == 0, running.output()
    finally:
        running.stop()
    assert (data / "ophthai.db").is_file()  # --data-dir after the command counts too
    assert not crash_lines(running.output())
    # uvicorn logs each WebSocket's path with its query: never the token itself.
    assert "ws?token=[redacted]" in running.output()
    assert token not in running.output()


@pytest.mark.parametrize("level", ["DEBUG", "NOTSET"])
def test_the_token_is_never_logged_in_any_form_the_server_takes(tmp_path: Path, level: str) -> None:
    """Whoever reads the log must not get access to the patient data: the token sent
    in every form the server accepts (a percent-encoded key it decodes as ``token``, a
    repeated key, the ``Authorization`` header), or under a key it refuses (``TOKEN``),
    stays out of every line, even at the most verbose levels (``OPHTHAI_DEBUG`` and the
    seed's ``DEBUG=true`` give DEBUG, where the WebSocket library logs each handshake's
    request line and headers; NOTSET adds uvicorn's trace of every request's scope)."""
    token = "s3cret-" + "t" * 20
    data = tmp_path / "data"
    args = ["serve", "--data-dir", str(data), "--port", str(free_port())]
    env = clean_env() | {"OPHTHAI_API_TOKEN": token, "OPHTHAI_LOG_LEVEL": level}
    running = start(tmp_path, args, env)
    try:
        ws_url = running.url.replace("http://", "ws://", 1) + "/api/notifications/ws"
        bearer = {"Authorization": f"Bearer {token}"}
        for query in (f"tok%65n={token}", f"%74oken={token}", f"token={token}&token={token}"):
            with connect(f"{ws_url}?{query}", open_timeout=10) as ws:
                assert receive_event(ws, "connected")
        with connect(ws_url, open_timeout=10, additional_headers=bearer) as ws:
            assert receive_event(ws, "connected")
        with pytest.raises(InvalidStatus) as refused:  # noqa: SIM117
            with connect(f"{ws_url}?TOKEN={token}", open_timeout=10):
                pass
        assert refused.value.response.status_code == 401
        with httpx.Client(base_url=running.url, timeout=10) as http:
            image = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
            created = http.post(
                "/api/patients", json={"name": "A", "imageUrl": image}, headers=bearer
            )
            assert created.status_code == 201, created.text
            image_path = f"/api/patients/{created.json()['id']}/image"
            assert http.get(f"{image_path}?tok%65n={token}").status_code == 200
            # Not read as the token: refused (401) before the query is checked.
            assert http.get(f"{image_path}?TOKEN={token}").status_code == 401
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(STOP_TIMEOUT_S) == 0, running.output()
    finally:
        running.stop()
    assert "WebSocket /api/notifications/ws?tok%65n=[redacted]" in running.output()
    assert token not in running.output()


def test_ctrl_c_stops_cleanly(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/api/patients", json={"name": "Ada"}).status_code == 201

    server.process.send_signal(signal.SIGINT)

    assert server.process.wait(STOP_TIMEOUT_S) == 0, server.output()
    assert not crash_lines(server.output())


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ophthai_desktop",
                "--data-dir",
                "data",
                "serve",
                "--port",
                port,
            ],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )

    assert result.returncode != 0
    assert port in result.stderr and "in use" in result.stderr
    assert "listening on" not in result.stdout
    assert not crash_lines(result.stderr)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        # TEST-NET-1 (RFC 5737): never one of this computer's addresses.
        ("192.0.2.1", "192.0.2.1 is not an address of this computer"),
        ("no-such-host.invalid", "neither an IP address nor a name this computer can resolve"),
    ],
)
def test_an_address_that_cannot_be_listened_on_says_why_not_port_in_use(
    tmp_path: Path, host: str, reason: str
) -> None:
    """An IT administrator's typo in OPHTHAI_API_HOST (or a LAN address the computer no
    longer has) was reported as "(is the port in use?)", sending them after a program
    that was not there."""
    result = subprocess.run(
        [sys.executable, "-m", "ophthai_desktop", "--data-dir", "data", "serve", "--port", "0"],
        cwd=tmp_path,
        env=clean_env() | {"OPHTHAI_API_HOST": host, "OPHTHAI_API_TOKEN": "t" * 24},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )

    assert result.returncode == 1, result.stderr
    assert reason in result.stderr
    assert "in use" not in result.stderr
    assert "listening on" not in result.stdout
    assert not crash_lines(result.stderr)


@pytest.mark.parametrize("where", ["before-command", "after-command"])
def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path: Path, where: str) -> None:
    data_dir = ["--data-dir", str(tmp_path / "data")]
    serve = ["serve", "--host", "0.0.0.0", "--port", str(free_port())]
    args = data_dir + serve if where == "before-command" else serve + data_dir
    result = subprocess.run(
        [sys.executable, "-m", "ophthai_desktop", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )

    assert result.returncode != 0
    assert "token" in result.stderr.lower()
    assert "OPHTHAI_API_TOKEN" in result.stderr
    assert "listening on" not in result.stdout
    assert not crash_lines(result.stderr)


def test_serving_on_every_interface_prints_urls_a_person_can_open(tmp_path: Path) -> None:
    """``--host 0.0.0.0`` listens on every interface, but ``http://0.0.0.0:PORT`` is not an
    address to open: the line names the network address (as the window's status bar
    does) and this computer's."""
    port = free_port()
    args = ["--data-dir", str(tmp_path / "data"), "serve", "--host", "0.0.0.0", "--port", str(port)]
    running = start(tmp_path, args, clean_env() | {"OPHTHAI_API_TOKEN": "t" * 24})
    try:
        line = next(line for line in running.stdout if "listening on" in line)
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{running.url}/health").status_code == 200
            assert http.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        running.stop()

    assert "0.0.0.0" not in line
    assert running.url == f"http://{lan_address()}:{port}"
    assert f"http://127.0.0.1:{port}/docs" in line


def test_the_listening_line_names_the_network_and_the_local_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    network = {socket.AF_INET: "192.168.1.20", socket.AF_INET6: "2001:db8:1::20"}
    monkeypatch.setattr(addresses, "lan_address", lambda family=socket.AF_INET: network[family])

    line = listening_line("http://0.0.0.0:8000")

    # Scripts read the first word after "listening on": the address others use.
    assert line.split("listening on ", 1)[1].split()[0] == "http://192.168.1.20:8000"
    assert "0.0.0.0" not in line
    assert "http://127.0.0.1:8000/docs" in line
    # Listening on "::" is IPv6 only: 127.0.0.1 would not reach it.
    line = listening_line("http://[::]:8000")
    assert line.split("listening on ", 1)[1].split()[0] == "http://[2001:db8:1::20]:8000"
    assert "http://[::1]:8000/docs" in line
    assert listening_line("http://127.0.0.1:8000") == (
        "OphthAI API listening on http://127.0.0.1:8000 (docs: http://127.0.0.1:8000/docs)"
    )


def test_every_origin_without_a_token_is_refused(tmp_path: Path) -> None:
    """CORS_ORIGINS=* without a token would let any web page the clinician opens read
    patient data through the loopback API."""
    serve = ["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    result = subprocess.run(
        [sys.executable, "-m", "ophthai_desktop", *serve],
        cwd=tmp_path,
        env={**clean_env(), "OPHTHAI_CORS_ORIGINS": "*"},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )

    assert result.returncode == 2
    assert "CORS_ORIGINS=*" in result.stderr and "OPHTHAI_API_TOKEN" in result.stderr
    assert "listening on" not in result.stdout
    assert not crash_lines(result.stderr)


def test_version(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ophthai_desktop", "--version"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )

    assert result.returncode == 0
    assert result.stdout.strip() == f"ophthai {__version__}"


def test_a_clients_pause_lasts_until_a_clients_resume_across_restarts(tmp_path: Path) -> None:
    """``ophthai serve`` has no window: a client's pause lived only in the running
    watcher, and the next serve took the folder's files in again with nothing said."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    config = tmp_path / "config"
    env = clean_env() | {
        "OPHTHAI_WATCH_FOLDER_ENABLED": "true",
        "OPHTHAI_WATCH_FOLDER_PATH": str(folder),
        "XDG_CONFIG_HOME": str(config),
    }

    def serve_and(change: str) -> str:
        """Start serve, read the watch folder's state once started, make ``change``
        (pause or resume), stop with Ctrl-C; the state read."""
        args = ["--data-dir", str(tmp_path / "data"), "serve", "--port", str(free_port())]
        running = start(tmp_path, args, env)
        try:
            with httpx.Client(base_url=running.url, timeout=10) as http:
                deadline = time.monotonic() + START_TIMEOUT_S
                while (state := http.get("/api/watch-folder").json()["state"]) == "stopped":
                    assert time.monotonic() < deadline, running.output()
                    time.sleep(0.05)
                changed = http.post(f"/api/watch-folder/{change}")
                assert changed.status_code == 200, changed.text
            running.process.send_signal(signal.SIGINT)
            assert running.process.wait(STOP_TIMEOUT_S) == 0, running.output()
        finally:
            running.stop()
        return state

    def kept() -> str:
        (settings_file,) = config.rglob("settings.env")
        return settings_file.read_text()

    assert serve_and("pause") == "running"
    assert 'OPHTHAI_WATCH_FOLDER_PAUSED="true"' in kept()
    assert serve_and("resume") == "paused"
    assert 'OPHTHAI_WATCH_FOLDER_PAUSED="false"' in kept()
    assert serve_and("pause") == "running"
