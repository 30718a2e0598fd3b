"""/api/ai/* with the real engine on the tiny random-weight checkpoint."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import build_application
from tests.conftest import make_settings
from tests.support.forced_output import force_output
from tests.support.http import LoopbackClient
from tests.support.images import png_bytes


@pytest.fixture
def tiny_client(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[TestClient]:
    application = build_application(
        make_settings(tmp_path, model_path=tiny_checkpoint, max_new_tokens=10, device="cpu")
    )
    application.start_worker()
    with LoopbackClient(create_app(application)) as client:
        yield client
    application.close()


def test_health_load_analyze_unload(tiny_client: TestClient) -> None:
    health = tiny_client.get("/api/ai/health").json()
    assert health["status"] == "unavailable" and health["state"] == "installed"
    assert health["memory"]["used_bytes"] is None

    loaded = tiny_client.post("/api/ai/load-model")
    assert loaded.status_code == 200, loaded.text
    health = tiny_client.get("/api/ai/health").json()
    assert health["status"] == "available" and health["device"] == "cpu"
    # OPHTHAI_MODEL_PATH: the folder is what runs, not the configured Hub id.
    folder = health["model_source"]
    assert health["model"] == folder and "OctoMed" not in health["model"]
    assert health["message"].startswith(f"{folder} is ready")
    assert health["revision"].startswith("sha256:")
    assert health["memory"]["used_bytes"] > 0

    image = base64.b64encode(png_bytes((56, 56))).decode()
    with tiny_client.websocket_connect("/api/notifications/ws") as socket:
        socket.receive_json()  # connected
        response = tiny_client.post("/api/ai/analyze", json={"image_base64": image})
        assert response.status_code == 200, response.text
        names = []
        while "analysis_finished" not in names:
            names.append(socket.receive_json()["event"])
    result = response.json()
    # Random weights give no parseable answer: reported as such, nothing invented.
    assert result["parse_status"] == "parse_failed"
    assert result["classification"] is None and result["confidence"] is None
    assert result["parse_error"]
    assert result["provenance"]["completion_tokens"] == 10
    assert result["provenance"]["device"] == "cpu"
    assert result["provenance"]["model"] == folder
    assert result["provenance"]["model_revision"] == health["revision"]
    assert result["provenance"]["time_to_first_token_s"] > 0
    assert "analysis_progress" in names and "analysis_started" in names

    unloaded = tiny_client.post("/api/ai/unload-model")
    assert unloaded.status_code == 200 and unloaded.json()["unloaded"] is True
    health = tiny_client.get("/api/ai/health").json()
    assert health["state"] == "installed" and health["memory"]["used_bytes"] is None
    assert tiny_client.post("/api/ai/unload-model").json()["unloaded"] is False


def test_health_after_an_unload_names_no_device_as_before_the_first_load(
    tiny_client: TestClient,
) -> None:
    """The model is off the device: health says so, as for a model never loaded."""
    never_loaded = tiny_client.get("/api/ai/health").json()
    assert tiny_client.post("/api/ai/load-model").status_code == 200
    loaded = tiny_client.get("/api/ai/health").json()
    assert (loaded["device"], loaded["dtype"]) == ("cpu", "float32")

    assert tiny_client.post("/api/ai/unload-model").status_code == 200
    unloaded = tiny_client.get("/api/ai/health").json()

    assert unloaded["state"] == never_loaded["state"] == "installed"
    assert (unloaded["device"], unloaded["dtype"]) == (None, None)
    assert unloaded["memory"] == never_loaded["memory"]
    assert unloaded["memory"] == {"estimated_bytes": None, "free_bytes": None, "used_bytes": None}
    assert unloaded["quantization"] == never_loaded["quantization"]


@contextmanager
def _serving_a_copy(
    tmp_path: Path, tiny_checkpoint: Path, *, max_new_tokens: int
) -> Iterator[tuple[TestClient, Path, str]]:
    """A client of the app with its worker running on a copy of the tiny checkpoint
    (which the test may delete), the copy, and a patient with an image."""
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "model")
    application = build_application(
        make_settings(tmp_path, model_path=copy, max_new_tokens=max_new_tokens, device="cpu")
    )
    application.start_worker()
    try:
        with LoopbackClient(create_app(application)) as client:
            image = base64.b64encode(png_bytes((56, 56))).decode()
            patient = client.post(
                "/api/patients",
                json={"name": "Files gone", "imageUrl": f"data:image/png;base64,{image}"},
            ).json()
            yield client, copy, patient["id"]
    finally:
        application.close()


@pytest.mark.usefixtures("model_looks_waited_for")
def test_model_files_gone_after_an_unload_are_a_503_not_a_job_left_waiting(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """Unloaded, then its folder deleted, the model still said ``installed`` for the
    seconds until the next look at the files: an analysis asked for then was queued
    (202) to wait silently, where the same request with the folder gone from the start
    is a 503 saying the model is not installed and what to do. The request looks now."""
    with _serving_a_copy(tmp_path, tiny_checkpoint, max_new_tokens=4) as (client, copy, pid):
        assert client.post("/api/ai/load-model").status_code == 200
        assert client.post("/api/ai/unload-model").json()["unloaded"] is True
        shutil.rmtree(copy)

        queued = client.post(f"/api/patients/{pid}/analyze")
        image = base64.b64encode(png_bytes((56, 56))).decode()
        synchronous = client.post("/api/ai/analyze", json={"image_base64": image})
        upload = client.post(
            "/api/ai/analyze-upload", files={"file": ("a.png", png_bytes(), "image/png")}
        )
        health = client.get("/api/ai/health").json()
        jobs = client.get("/api/jobs")

    for response in (queued, synchronous, upload):
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert f"OPHTHAI_MODEL_PATH is {copy}, but that folder does not exist." in detail
        assert "download the model into it" in detail  # what to do
    assert (health["state"], health["status"]) == ("not_installed", "not_installed")
    assert jobs.headers["x-total-count"] == "0"


@pytest.mark.usefixtures("model_looks_waited_for")
def test_model_files_put_back_after_a_503_are_found_by_the_next_request(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """Files found gone by a request (a 503) and then put back: the next request looks
    again and queues the analysis, which runs. It was a 503 "not installed" for seconds
    more, the files looked at only while the model was said to be installed."""
    with _serving_a_copy(tmp_path, tiny_checkpoint, max_new_tokens=4) as (client, copy, pid):
        shutil.rmtree(copy)
        refused = client.post(f"/api/patients/{pid}/analyze")
        shutil.copytree(tiny_checkpoint, copy)

        queued = client.post(f"/api/patients/{pid}/analyze")
        assert queued.status_code == 202, queued.text
        deadline = time.monotonic() + 120
        while client.get(f"/api/jobs/{queued.json()['id']}").json()["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.05)

    assert refused.status_code == 503, refused.text


@pytest.mark.usefixtures("model_looks_waited_for")
def test_asking_again_for_a_job_an_unload_queued_again_joins_it_after_its_files_went(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The join rule with the model's files gone: the analysis an unload stopped and
    queued again is answered (202), its ``waiting`` saying the model is not installed
    and what to do, not "load it to run the queue" (a load would only fail)."""
    with _serving_a_copy(tmp_path, tiny_checkpoint, max_new_tokens=32_768) as (
        client,
        copy,
        pid,
    ):
        first = client.post(f"/api/patients/{pid}/analyze").json()
        deadline = time.monotonic() + 60
        while client.get(f"/api/jobs/{first['id']}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.post("/api/ai/unload-model").json()["unloaded"] is True
        assert client.get(f"/api/jobs/{first['id']}").json()["state"] == "queued"
        shutil.rmtree(copy)

        again = client.post(f"/api/patients/{pid}/analyze")

    assert again.status_code == 202, again.text
    job = again.json()
    assert (job["id"], job["state"]) == (first["id"], "queued")
    assert job["waiting"].startswith("the model is not installed. ")
    assert f"OPHTHAI_MODEL_PATH is {copy}, but that folder does not exist." in job["waiting"]


def test_not_installed_model_is_503_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_cache = tmp_path / "hf"
    empty_cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(empty_cache))  # a machine without the model
    application = build_application(make_settings(tmp_path, model_id="OctoMed/OctoMed-7B"))
    application.start_worker()
    try:
        with LoopbackClient(create_app(application)) as client:
            health = client.get("/api/ai/health").json()
            assert health["status"] == "not_installed"
            assert "OPHTHAI_MODEL_PATH" in health["message"]
            image = base64.b64encode(png_bytes()).decode()
            response = client.post("/api/ai/analyze", json={"image_base64": image})
            assert response.status_code == 503
            assert "not installed" in response.json()["detail"]
            assert client.post("/api/ai/load-model").status_code == 503
    finally:
        application.close()


def test_health_says_a_damaged_model_folder_is_damaged(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "cut-short")
    (copy / "model-00002-of-00002.safetensors").unlink()
    application = build_application(make_settings(tmp_path, model_path=copy))
    try:
        with LoopbackClient(create_app(application)) as client:
            health = client.get("/api/ai/health").json()
    finally:
        application.close()

    assert (health["status"], health["state"]) == ("not_installed", "not_installed")
    assert health["message"].startswith(f"The model in {copy} is damaged: ")
    assert "model-00002-of-00002.safetensors is missing" in health["message"]
    assert "Download it again" in health["message"]


def test_an_answer_giving_two_classifications_is_reported_unparsed_naming_both(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The synchronous endpoint reads the model's text with the worker's parser: an
    answer of "Drusen" then "Normal" is no classification, and says why."""
    answer = (
        '```json\n{"classification": "Drusen", "confidence": 70}\n```\n'
        '```json\n{"classification": "Normal", "confidence": 70}\n```'
    )
    force_output(monkeypatch, tiny_checkpoint, f"<think>Drusen?</think>{answer}")
    application = build_application(
        make_settings(tmp_path, model_path=tiny_checkpoint, max_new_tokens=200, device="cpu")
    )
    application.start_worker()
    try:
        with LoopbackClient(create_app(application)) as client:
            image = base64.b64encode(png_bytes((56, 56))).decode()
            response = client.post("/api/ai/analyze", json={"image_base64": image})
    finally:
        application.close()

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["parse_status"] == "parse_failed"
    assert result["classification"] is None and result["confidence"] is None
    assert "two different classifications: Drusen and Normal" in result["parse_error"]
    assert result["raw_answer"] == answer
    assert result["provenance"]["generation_settings"]["finish_reason"] == "eos"
