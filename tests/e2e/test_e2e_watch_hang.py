"""``ophthai serve`` exits on SIGTERM while a watch-folder read hangs (a share that does
not answer): it used to wait for that read for good."""

from __future__ import annotations

import signal
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import png_bytes
from tests.e2e.test_e2e_serve import clean_env, free_port
from tests.support.processes import spawned
from tests.support.watch_folder import wait_until

pytestmark = pytest.mark.e2e

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from ophthai_desktop.core.services.ingest import IngestService

    def hanging_read(self, path, expected):
        print("READ STARTED", file=sys.stderr, flush=True)
        time.sleep(600)

    IngestService._read = hanging_read
    from ophthai_desktop.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_serve_stops_on_sigterm_while_a_watch_folder_read_hangs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env() | {"OPHTHAI_WATCH_FOLDER_ENABLED": "true", "OPHTHAI_LOG_LEVEL": "INFO"}
    stderr_path = tmp_path / "stderr.log"
    command = [sys.executable, "-c", SCRIPT, "--data-dir", str(data), "serve"]
    command += ["--port", str(free_port())]
    with spawned(command, cwd=tmp_path, env=env, stderr_path=stderr_path) as process:
        folder = data / "incoming_scans"
        assert wait_until(lambda: (folder / "processed").is_dir(), timeout_s=30)
        (folder / "Doe Jane OD.png").write_bytes(png_bytes())
        assert wait_until(lambda: "READ STARTED" in stderr_path.read_text(), timeout_s=30)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(30)
        took = time.monotonic() - started
    output = stderr_path.read_text()
    assert status == 0, output
    assert took < 20, took  # the watcher waits 10 s for the read, then gives up
    assert "stopped without waiting for 1 file(s) still being read" in output
    assert "exiting without waiting for" in output
    assert "Doe" not in output  # counted, never named
    assert (folder / "Doe Jane OD.png").exists()  # for the next start


START_HANGS_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from ophthai_desktop.core.services.ingest import FolderLayout

    def hanging_ensure(self, *, create_root=True):
        print("START HANGS", file=sys.stderr, flush=True)
        time.sleep(600)

    FolderLayout.ensure = hanging_ensure
    from ophthai_desktop.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_serve_serves_and_stops_while_the_watch_folders_first_start_hangs(
    tmp_path: Path,
) -> None:
    """The watch folder's first start (a share that does not answer) ran on serve's main
    thread: the API was never announced and SIGTERM never acted on."""
    env = clean_env() | {"OPHTHAI_WATCH_FOLDER_ENABLED": "true", "OPHTHAI_LOG_LEVEL": "INFO"}
    stdout_path, stderr_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    command = [sys.executable, "-c", START_HANGS_SCRIPT, "--data-dir", str(tmp_path / "data")]
    command += ["serve", "--port", str(free_port())]
    with spawned(
        command, cwd=tmp_path, env=env, stderr_path=stderr_path, stdout_path=stdout_path
    ) as process:
        assert wait_until(lambda: "listening on" in stdout_path.read_text(), timeout_s=30), (
            stderr_path.read_text()
        )
        assert "START HANGS" in stderr_path.read_text()
        url = stdout_path.read_text().split("listening on ", 1)[1].split()[0]
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/api/patients").status_code == 200
        assert wait_until(lambda: "did not answer within 5 s" in stderr_path.read_text(), 30)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(30)
        took = time.monotonic() - started
    output = stderr_path.read_text()
    assert status == 0, output
    assert took < 8, took  # nothing waits for the start that hangs
    assert "closing without waiting for the watch folder: it does not answer" in output
    assert "exiting without waiting for" in output
