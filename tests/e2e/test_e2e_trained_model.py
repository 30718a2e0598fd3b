"""``ophthai serve`` with the trained tiny model: a real process analyses an upload,
streams the output over the WebSocket, raises the alarm, and stops cleanly."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import png_bytes
from tests.e2e.test_e2e_serve import STOP_TIMEOUT_S, clean_env, free_port, start
from tests.support.tiny_checkpoint import TRAINED_ANSWER, TRAINED_MAX_PIXELS, TRAINED_REASONING

pytestmark = pytest.mark.e2e


def frames_until(ws: Any, name: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every frame up to and including the first called ``name`` (bounded)."""
    deadline = time.monotonic() + timeout
    frames: list[dict[str, Any]] = []
    while (left := deadline - time.monotonic()) > 0:
        frames.append(json.loads(ws.recv(timeout=left)))
        if frames[-1]["event"] == name:
            return frames
    raise AssertionError(f"no {name!r} frame; saw {[f['event'] for f in frames]}")


def test_serve_analyses_an_upload_with_the_trained_model(
    tmp_path: Path, trained_checkpoint: Path
) -> None:
    env = clean_env() | {
        "OPHTHAI_MODEL_PATH": str(trained_checkpoint),
        "OPHTHAI_DEVICE": "cpu",
        "OPHTHAI_MAX_PIXELS": str(TRAINED_MAX_PIXELS),
    }
    args = ["--data-dir", str(tmp_path / "data"), "serve", "--port", str(free_port())]
    server = start(tmp_path, args, env)
    try:
        ws_url = server.url.replace("http://", "ws://", 1) + "/api/notifications/ws"
        with (
            httpx.Client(base_url=server.url, timeout=90) as http,
            connect(ws_url, open_timeout=10) as ws,
        ):
            assert frames_until(ws, "connected")
            response = http.post(
                "/api/ai/analyze-upload",
                files={"file": ("scan.png", png_bytes((160, 120), (40, 90, 160)), "image/png")},
            )
            assert response.status_code == 200, response.text
            result = response.json()
            frames = frames_until(ws, "abnormal_scan")

            server.process.send_signal(signal.SIGTERM)
            exit_code = server.process.wait(STOP_TIMEOUT_S)

        for key, value in TRAINED_ANSWER.items():
            assert result[key] == value, key
        assert result["reasoning"] == TRAINED_REASONING
        assert result["model"] and isinstance(result["analysis_id"], int)
        events = [frame["event"] for frame in frames]
        assert "analysis_progress" in events
        assert events.index("analysis_progress") < events.index("analysis_finished")
        alarm = frames[-1]["data"]
        assert "Diabetic Macular Edema" in json.dumps(alarm)
        assert exit_code == 0, server.output()
        assert "Traceback" not in server.output()
    finally:
        server.stop()
