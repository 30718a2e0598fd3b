"""The window and the embedded API server side by side: a browser client and the
window see the same data, live."""

from __future__ import annotations

from pathlib import Path

import httpx
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from ophthai_desktop.desktop import Desktop
from tests.conftest import make_settings
from tests.support.images import png_bytes


def test_window_and_api_share_the_same_data_live(qtbot: QtBot, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, api_port=0, model_path=tmp_path / "none", user_name="Dr. Both"
    )
    desktop = Desktop(settings, tray=False)
    try:
        desktop.start()
        window, session = desktop.window, desktop.session
        qtbot.waitUntil(lambda: desktop.api_url is not None, timeout=20_000)
        url = desktop.api_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        qtbot.waitUntil(lambda: window.status.api.text() == f"API: {url}")
        model = session.patient_list.model

        with httpx.Client(base_url=url, timeout=10) as client:
            created = client.post("/api/patients", json={"name": "From the browser"})
            assert created.status_code == 201, created.text
            qtbot.waitUntil(lambda: model.rowCount() == 1)
            assert model.data(model.index(0, 0)) == "From the browser"

            dialog = session.patients.new_patient()
            qtbot.keyClicks(dialog.name, "From the window")
            dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
            qtbot.waitUntil(lambda: model.rowCount() == 2)
            listed = client.get("/api/patients", params={"search": "window"})
            assert [p["name"] for p in listed.json()] == ["From the window"]

            pid = created.json()["id"]
            session.patients.open_patient(pid)
            qtbot.waitUntil(lambda: session.patient_page.name.text() == "From the browser")
            patched = client.patch(f"/api/patients/{pid}", json={"status": "Stable"})
            assert patched.status_code == 200, patched.text
            qtbot.waitUntil(lambda: session.patient_page.status.text() == "Stable")
    finally:
        desktop.shutdown()


def test_a_port_in_use_is_shown_in_the_status_bar(qtbot: QtBot, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = make_settings(tmp_path, api_port=port, model_path=tmp_path / "none")
        desktop = Desktop(settings, tray=False)
        try:
            desktop.start()
            status = desktop.window.status.api
            qtbot.waitUntil(lambda: status.text() == "API: failed to start", timeout=20_000)
            assert "in use" in status.toolTip()
            assert desktop.window.isVisible()  # the window works without the server
        finally:
            desktop.shutdown()


def test_the_window_s_api_queues_an_analysis_on_its_worker(
    qtbot: QtBot, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The window hosts the inference worker in a QThread: the API it serves takes
    analyses and model commands as `ophthai serve`'s does, not 503 "the inference
    worker is not running"."""
    settings = make_settings(
        tmp_path, api_port=0, model_path=tiny_checkpoint, device="cpu", max_new_tokens=8
    )
    desktop = Desktop(settings, tray=False)
    try:
        desktop.start()
        qtbot.waitUntil(lambda: desktop.api_url is not None, timeout=20_000)
        qtbot.waitUntil(lambda: desktop.session.inference.isRunning(), timeout=20_000)
        with httpx.Client(base_url=desktop.api_url or "", timeout=60) as client:
            unloaded = client.post("/api/ai/unload-model")
            assert unloaded.status_code == 200, unloaded.text
            assert unloaded.json()["unloaded"] is False
            created = client.post("/api/patients", json={"name": "From the browser"})
            pid = created.json()["id"]
            scan = client.post(f"/api/patients/{pid}/scans", files={"file": ("a.png", png_bytes())})
            assert scan.status_code == 201, scan.text
            queued = client.post(f"/api/patients/{pid}/analyze")
            assert queued.status_code == 202, queued.text
            job = f"/api/jobs/{queued.json()['id']}"
            qtbot.waitUntil(lambda: client.get(job).json()["state"] == "done", timeout=60_000)
    finally:
        desktop.shutdown()
