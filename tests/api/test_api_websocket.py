"""The notifications WebSocket: frames for REST changes, for events published on other
threads (the worker's and the watcher's path), and the hub's handling of slow clients."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ophthai_desktop.api import create_app
from ophthai_desktop.api.hub import WebSocketHub
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.ingest import FolderLayout, IngestResult
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.storage import availability
from tests.conftest import png_bytes
from tests.support.http import NOTIFICATION_KEYS
from tests.support.outage import database_down
from tests.support.raw_http import StartServer
from tests.support.scripted_engine import ScriptedEngine

FRAME_TIMEOUT_S = 5.0
SECRET_NAME = "Philomena Cunegonde"


@pytest.fixture
def receive_pool() -> Iterator[ThreadPoolExecutor]:
    """Receives run here so that a missing frame fails the test instead of hanging it."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ws-receive")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def next_frame(receive_pool: ThreadPoolExecutor) -> Callable[[WebSocketTestSession], Any]:
    def receive(socket: WebSocketTestSession) -> Any:
        return receive_pool.submit(socket.receive_json).result(timeout=FRAME_TIMEOUT_S)

    return receive


@pytest.fixture
def frame_named(
    next_frame: Callable[[WebSocketTestSession], Any],
) -> Callable[[WebSocketTestSession, str], dict[str, Any]]:
    """The next frame with the given event name, skipping others (bounded)."""

    def wait(socket: WebSocketTestSession, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + FRAME_TIMEOUT_S
        seen = []
        while time.monotonic() < deadline:
            frame: dict[str, Any] = next_frame(socket)
            if frame["event"] == name:
                return frame
            seen.append(frame["event"])
        raise AssertionError(f"no {name!r} frame; saw {seen}")

    return wait


@pytest.mark.parametrize("path", ["/api/notifications/ws", "/api/notifications/ws/"])
def test_the_first_frame_says_connected(
    client: TestClient, next_frame: Callable[[WebSocketTestSession], Any], path: str
) -> None:
    with client.websocket_connect(path) as socket:
        frame = next_frame(socket)

    assert frame["event"] == "connected"
    assert isinstance(frame["data"], dict)


def test_a_rest_notification_is_pushed_with_the_seed_fields(
    client: TestClient, frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]]
) -> None:
    with client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")
        created = client.post(
            "/api/notifications", json={"message": "IOP 28 mmHg", "type": "critical"}
        ).json()
        frame = frame_named(socket, "notification")

    assert set(frame) == {"event", "data"}
    assert set(frame["data"]) == NOTIFICATION_KEYS
    assert frame["data"] == created


def test_every_client_receives_the_frame(
    client: TestClient, frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]]
) -> None:
    with (
        client.websocket_connect("/api/notifications/ws") as first,
        client.websocket_connect("/api/notifications/ws/") as second,
    ):
        frame_named(first, "connected")
        frame_named(second, "connected")
        client.post("/api/notifications", json={"message": "both"})

        frames = [frame_named(first, "notification"), frame_named(second, "notification")]

    assert [f["data"]["message"] for f in frames] == ["both", "both"]


def test_patient_changes_are_pushed(
    client: TestClient, frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]]
) -> None:
    image = base64.b64encode(png_bytes()).decode()
    with client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")

        created = client.post("/api/patients", json={"name": "Ada", "imageUrl": image}).json()
        on_create = frame_named(socket, "patient_created")
        client.patch(f"/api/patients/{created['id']}", json={"status": "Critical"})
        on_update = frame_named(socket, "patient_updated")
        client.delete(f"/api/patients/{created['id']}")
        on_delete = frame_named(socket, "patient_deleted")

    assert on_create["data"]["id"] == created["id"]
    assert on_create["data"]["imageUrl"] == created["imageUrl"]  # absolute, like REST
    assert on_create["data"]["admissionDate"] == created["admissionDate"]
    assert on_update["data"]["status"] == "Critical"
    assert on_delete["data"] == {"id": created["id"]}


def test_a_measurement_pushes_the_patient_it_changed(
    client: TestClient, frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]]
) -> None:
    """A measurement changes the patient's ``oculomics`` (and ETag): a client keeping
    patients from ``patient_updated`` frames gets the patient as GET now answers it."""
    created = client.post("/api/patients", json={"name": "Iris"}).json()
    with client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")
        client.post(
            f"/api/patients/{created['id']}/oculomics",
            json={"eye": "OD", "date": "2025-01-01", "iop": 25},
        )
        frame_named(socket, "oculomics_measured")
        on_update = frame_named(socket, "patient_updated")

    current = client.get(f"/api/patients/{created['id']}").json()
    assert on_update["data"]["oculomics"]["intraocularPressure"] == 25.0
    assert on_update["data"]["oculomics"] == current["oculomics"]
    assert current["updatedAt"] > created["updatedAt"]


def test_a_patient_frame_is_the_patient_as_get_answers_it_reasoning_included(
    ai_client: TestClient, frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]]
) -> None:
    """A frontend showing one patient replaces it with each ``patient_updated``: the
    frame is the patient as ``GET /api/patients/{id}`` answers it, so the newest
    ``aiAnalysis`` keeps its ``reasoning`` and ``raw_answer`` (the frame gave the list's
    shape, without them, and the page lost the model's reasoning it showed)."""
    image = base64.b64encode(png_bytes()).decode()
    created = ai_client.post("/api/patients", json={"name": "Ada", "imageUrl": image}).json()
    with ai_client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")
        assert ai_client.post(f"/api/patients/{created['id']}/analyze").status_code == 202
        frame_named(socket, "analysis_finished")
        on_result = frame_named(socket, "patient_updated")["data"]
        ai_client.patch(f"/api/patients/{created['id']}", json={"history": "diabetes"})
        on_edit = frame_named(socket, "patient_updated")["data"]
        current = ai_client.get(f"/api/patients/{created['id']}").json()

    assert on_result["aiAnalysis"].get("reasoning") == "Looking at the fovea."
    assert on_result["aiAnalysis"].get("raw_answer") == current["aiAnalysis"]["raw_answer"]
    assert on_edit == current


def test_events_published_on_another_thread_reach_the_client(
    client: TestClient,
    sqlite_services: Application,
    frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]],
) -> None:
    """The inference worker and the watch folder publish from their own threads."""
    with client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")

        def worker() -> None:
            sqlite_services.notifications.create_notification(
                "abnormal OCT", type="critical", actor=Actor.system("watch-folder")
            )
            sqlite_services.bus.publish(ev.AnalysisProgressed(job_id=7, delta="The cup"))
            sqlite_services.bus.publish(ev.ModelStateChanged(state="loading", progress=0.5))

        thread = threading.Thread(target=worker, name="fake-worker")
        thread.start()
        thread.join(FRAME_TIMEOUT_S)

        notification = frame_named(socket, "notification")
        progress = frame_named(socket, "analysis_progress")
        model = frame_named(socket, "model_state")

    assert notification["data"]["message"] == "abnormal OCT"
    assert notification["data"]["type"] == "critical"
    assert progress["data"] == {"jobId": 7, "delta": "The cup", "phase": "reasoning", "seq": 0}
    assert model["data"]["state"] == "loading"


def test_a_client_reconnecting_mid_analysis_can_tell_it_missed_the_start(
    ai_client: TestClient,
    engine: ScriptedEngine,
    frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]],
) -> None:
    """Events are not replayed: a client whose WebSocket drops mid-stream and comes back
    gets the rest of the deltas only. Each delta's ``seq`` says so (its first is not 0),
    where before the client showed the end of the reasoning as if it were all of it."""
    step = threading.Semaphore(0)
    pieces = ("<think>Looking ", "at ", "the fovea.</think>", '{"classification": "x"}')

    def generate(image: Any, *, on_delta: Callable[[str], None], **_: Any) -> Any:
        for piece in pieces:  # one piece per release, as a model's tokens come
            assert step.acquire(timeout=FRAME_TIMEOUT_S)
            on_delta(piece)
        return engine._result(cancelled=False)

    engine.generate = generate  # type: ignore[method-assign]
    patient = ai_client.post("/api/patients", json={"name": "Stream Patient"}).json()
    scan = ai_client.post(
        f"/api/patients/{patient['id']}/scans",
        files={"file": ("scan.png", png_bytes(), "image/png")},
    )
    assert scan.status_code == 201, scan.text
    with ai_client.websocket_connect("/api/notifications/ws") as first:
        frame_named(first, "connected")
        job = ai_client.post(f"/api/patients/{patient['id']}/analyze").json()
        step.release()
        opening = frame_named(first, "analysis_progress")["data"]
    step.release()  # generated while no socket is open: this client never hears it
    with ai_client.websocket_connect("/api/notifications/ws") as second:
        frame_named(second, "connected")
        for _ in pieces[2:]:
            step.release()
        heard: list[dict[str, Any]] = []
        while True:
            frame = frame_named(second, "analysis_progress")["data"]
            heard.append(frame)
            if frame["phase"] == "answer":
                break
    assert opening == {"jobId": job["id"], "delta": "Looking ", "phase": "reasoning", "seq": 0}
    assert heard[0]["seq"] > 0  # the client knows it missed the text before
    assert [f["seq"] for f in heard] == list(range(heard[0]["seq"], heard[0]["seq"] + len(heard)))


def test_why_queued_analyses_wait_appears_and_clears_on_the_stream(
    ai_client: TestClient,
    engine: ScriptedEngine,
    sqlite_services: Application,
    frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]],
) -> None:
    """A frontend following the queue live learns what ``GET /api/jobs`` says of each
    queued job: why it waits appears when the model fails to load (``queue_waiting``),
    comes with every job queued meanwhile (``analysis_queued``'s ``waiting``), says
    ``model loading`` while the model loads (the load asked for, or one on first use if
    the worker looks at the queue first: either, not the failure, nor nothing) and
    clears when it is loaded, before the first job starts."""
    app = sqlite_services
    watcher = Actor("watch-folder", "watcher")  # queues whatever the model's state

    def queue() -> int:
        image = NewImage(png_bytes())
        patient = app.patients.create_patient({"name": "Queued"}, actor=watcher, image=image)
        return app.jobs.queue_patient_analysis(patient.id, actor=watcher).id

    with ai_client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")
        engine.state = "error"  # a load failed: damaged files
        first = queue()

        appeared = frame_named(socket, "queue_waiting")["data"]
        reason = appeared["waiting"]
        assert "scripted engine is error" in reason and "POST /api/ai/load-model" in reason
        assert ai_client.get(f"/api/jobs/{first}").json()["waiting"] == reason

        second = queue()
        while (queued := frame_named(socket, "analysis_queued"))["data"]["jobId"] != second:
            pass
        assert queued["data"]["waiting"] == reason

        engine.state = "installed"  # the files fixed
        assert ai_client.post("/api/ai/load-model").status_code == 200
        loading = frame_named(socket, "queue_waiting")["data"]
        cleared = frame_named(socket, "queue_waiting")["data"]
        started = frame_named(socket, "analysis_started")["data"]

    assert appeared == {"waiting": reason}
    assert loading == {"waiting": "model loading"}
    assert cleared == {"waiting": None}
    assert started["jobId"] == first
    assert ai_client.get(f"/api/jobs/{second}").json()["waiting"] is None


def test_an_analysis_asked_for_before_the_model_is_loaded_says_it_waits_for_the_load(
    ai_client: TestClient,
    engine: ScriptedEngine,
    sqlite_services: Application,
    frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model installed, not loaded, nothing queued: the analysis's 202 and its
    ``analysis_queued`` said ``waiting: null`` (the worker had not looked at the queue
    again yet) while ``queue_waiting`` said ``model loading`` a moment later. All say
    ``model loading``, as ``GET /api/jobs/{id}`` does."""
    app = sqlite_services
    engine.state = "installed"
    engine.load_hold = threading.Event()
    looked = threading.Event()  # the worker's look at the queue, late (a busy machine)
    has_queued = app.jobs.has_queued

    def late_look() -> bool:  # worker thread
        looked.wait(10)
        return has_queued()

    monkeypatch.setattr(app.jobs, "has_queued", late_look)
    image = NewImage(png_bytes())
    patient = app.patients.create_patient({"name": "First"}, actor=Actor("t", "api"), image=image)

    with ai_client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")
        answered = ai_client.post(f"/api/patients/{patient.id}/analyze")
        queued = frame_named(socket, "analysis_queued")["data"]
        looked.set()
        said = frame_named(socket, "queue_waiting")["data"]
        read = ai_client.get(f"/api/jobs/{answered.json()['id']}").json()
        engine.load_hold.set()
        frame_named(socket, "analysis_started")

    assert answered.status_code == 202
    assert said == {"waiting": "model loading"}
    assert [answered.json()["waiting"], queued["waiting"], read["waiting"]] == ["model loading"] * 3


def test_the_stream_says_which_queued_analyses_run_first_and_when_one_moves_ahead(
    ai_client: TestClient,
    engine: ScriptedEngine,
    sqlite_services: Application,
    frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]],
    next_frame: Callable[[WebSocketTestSession], Any],
) -> None:
    """A frontend drawing the queue from the WebSocket alone: ``analysis_queued`` says
    each job's priority in the words of ``GET /api/jobs``, and asking for a scan the
    watch folder queued (which joins that job and moves it ahead of the folder's)
    sends ``analysis_prioritised``; asking again changes nothing and says nothing."""
    app = sqlite_services
    engine.hold = threading.Event()  # the first job runs until released: the rest wait
    layout = FolderLayout.under(app.settings.resolved_watch_folder)
    layout.ensure()

    def queued_frame(socket: WebSocketTestSession, job_id: int) -> dict[str, Any]:
        while (data := frame_named(socket, "analysis_queued")["data"])["jobId"] != job_id:
            pass  # the running job's, should its start have come first
        return data

    def from_the_folder(i: int) -> IngestResult:
        (layout.root / f"device_{i}.png").write_bytes(png_bytes((40 + i, 30)))
        return app.ingest.ingest_file(layout.root / f"device_{i}.png", layout)

    try:
        with ai_client.websocket_connect("/api/notifications/ws") as socket:
            frame_named(socket, "connected")
            from_the_folder(0)  # runs, held
            frame_named(socket, "analysis_started")
            waiting = from_the_folder(1)
            from_folder = queued_frame(socket, waiting.job_id)
            image = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
            created = ai_client.post("/api/patients", json={"name": "A", "imageUrl": image})
            asked = ai_client.post(f"/api/patients/{created.json()['id']}/analyze").json()
            from_client = queued_frame(socket, asked["id"])

            joined = ai_client.post(f"/api/patients/{waiting.patient_id}/analyze").json()
            raised = frame_named(socket, "analysis_prioritised")["data"]
            again = ai_client.post(f"/api/patients/{waiting.patient_id}/analyze").json()
            ai_client.post("/api/notifications", json={"message": "after the requests"})
            after = []
            while (frame := next_frame(socket))["event"] != "notification":
                after.append(frame["event"])
    finally:
        engine.hold.set()

    assert (from_folder["jobId"], from_folder["priority"]) == (waiting.job_id, "background")
    assert (from_client["jobId"], from_client["priority"]) == (asked["id"], "interactive")
    # When each was queued, as REST says it (a client shows it without asking).
    assert (
        from_folder["createdAt"] == ai_client.get(f"/api/jobs/{waiting.job_id}").json()["createdAt"]
    )
    assert from_client["createdAt"] == asked["createdAt"]
    assert joined["id"] == again["id"] == waiting.job_id
    assert raised == {
        "jobId": waiting.job_id,
        "patientId": waiting.patient_id,
        "scanId": waiting.scan_id,
        "priority": "interactive",
    }
    assert ai_client.get(f"/api/jobs/{waiting.job_id}").json()["priority"] == "interactive"
    assert "analysis_prioritised" not in after and "analysis_queued" not in after


@dataclass(frozen=True)
class BackupFinished(ev.Event):
    """An event whose fields are not plain JSON values (a later feature's, say)."""

    name: ClassVar[str] = "backup_finished"
    at: datetime
    folder: Path


def test_an_event_with_non_json_fields_does_not_break_the_stream(
    client: TestClient,
    sqlite_services: Application,
    frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]],
) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")

        sqlite_services.bus.publish(BackupFinished(at=at, folder=Path("backups")))
        backup = frame_named(socket, "backup_finished")
        client.post("/api/notifications", json={"message": "still streaming"})
        after = frame_named(socket, "notification")

    assert datetime.fromisoformat(backup["data"]["at"].replace("Z", "+00:00")) == at
    assert backup["data"]["folder"] == "backups"
    assert after["data"]["message"] == "still streaming"


def test_a_ping_is_answered(
    client: TestClient, frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]]
) -> None:
    with client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")
        socket.send_text("ping")
        first = frame_named(socket, "pong")
        socket.send_json({"event": "ping"})
        second = frame_named(socket, "pong")

    assert first == second == {"event": "pong", "data": {}}


def test_a_binary_message_is_ignored_and_the_connection_kept(
    client: TestClient, frame_named: Callable[[WebSocketTestSession, str], dict[str, Any]]
) -> None:
    """Any message but a ping is read and ignored, a binary one too: reading it as text
    raised, and the server ended the connection without a close frame (1006)."""
    with client.websocket_connect("/api/notifications/ws") as socket:
        frame_named(socket, "connected")
        socket.send_bytes(b"\x00\x01 not text")
        socket.send_text("ping")
        pong = frame_named(socket, "pong")
        client.post("/api/notifications", json={"message": "still here"})
        notification = frame_named(socket, "notification")

    assert pong == {"event": "pong", "data": {}}
    assert notification["data"]["message"] == "still here"


def test_a_disconnected_client_is_forgotten(
    client: TestClient, next_frame: Callable[[WebSocketTestSession], Any]
) -> None:
    hub: WebSocketHub = client.app.state.hub  # type: ignore[attr-defined]
    with client.websocket_connect("/api/notifications/ws") as socket:
        next_frame(socket)
        assert hub.client_count == 1

    deadline = time.monotonic() + FRAME_TIMEOUT_S
    while hub.client_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub.client_count == 0
    assert client.post("/api/notifications", json={"message": "nobody listens"}).is_success


# The hub and slow clients ----------------------------------------------------------------


class FakeSocket:
    """Stands in for a WebSocket; ``stuck`` makes every send after the first block, like a
    client whose network buffer is full."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        self.stuck = stuck
        self._gone = asyncio.Event()

    async def send_text(self, frame: str) -> None:
        if self.stuck and self.sent:
            await asyncio.Event().wait()  # never returns
        self.sent.append(json.loads(frame))

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        raise ConnectionError("gone")

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = code
        self._gone.set()


async def until(condition: Callable[[], bool], timeout_s: float = FRAME_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def test_a_slow_client_is_dropped_without_holding_up_publishers_or_others() -> None:
    async def scenario() -> None:
        bus = ev.EventBus()
        hub = WebSocketHub(bus, lambda event, _base: {"n": event.job_id}, max_queue=4)
        hub.start(asyncio.get_running_loop())
        slow, fast = FakeSocket(stuck=True), FakeSocket()
        serving = [
            asyncio.create_task(hub.serve(slow, "http://x/")),  # type: ignore[arg-type]
            asyncio.create_task(hub.serve(fast, "http://x/")),  # type: ignore[arg-type]
        ]
        await until(lambda: len(slow.sent) == 1 and len(fast.sent) == 1)

        def publish(n: int) -> float:
            started = time.monotonic()
            bus.publish(ev.AnalysisProgressed(job_id=n, delta="x"))
            return time.monotonic() - started

        # A token stream: each frame reaches the fast client before the next is generated.
        durations = []
        for n in range(20):
            durations.append(await asyncio.to_thread(publish, n))
            await until(lambda n=n: len(fast.sent) == n + 2)

        assert max(durations) < 0.5  # the publisher never waited for the stuck client
        assert [f["data"]["n"] for f in fast.sent[1:]] == list(range(20))
        assert hub.client_count == 1  # the stuck one fell more than 4 frames behind
        # Dropped means disconnected, even while its network stays stuck.
        await asyncio.wait_for(serving[0], FRAME_TIMEOUT_S)
        assert slow.closed_with == 1013
        assert [f["event"] for f in slow.sent] == ["connected"]
        await hub.stop()
        await asyncio.wait_for(serving[1], FRAME_TIMEOUT_S)

    asyncio.run(scenario())


def test_stopping_the_hub_ends_every_client_and_unsubscribes() -> None:
    async def scenario() -> None:
        bus = ev.EventBus()
        hub = WebSocketHub(bus, lambda event, _base: {}, max_queue=4)
        hub.start(asyncio.get_running_loop())
        socket = FakeSocket()
        serving = asyncio.create_task(hub.serve(socket, "http://x/"))  # type: ignore[arg-type]
        await until(lambda: len(socket.sent) == 1)

        await hub.stop()
        await asyncio.wait_for(serving, FRAME_TIMEOUT_S)
        bus.publish(ev.ModelStateChanged(state="ready"))
        await asyncio.sleep(0.05)

        assert hub.client_count == 0
        assert [f["event"] for f in socket.sent] == ["connected"]

    asyncio.run(scenario())


def test_a_message_too_large_for_a_ping_closes_that_client_only(
    sqlite_services: Application, live_server: StartServer
) -> None:
    """Clients only ever send pings. Parsing a 16 MiB message (uvicorn's default limit)
    as JSON held the server's event loop, and every other client, for about a second."""
    server = live_server(create_app(sqlite_services))
    url = server.url.replace("http://", "ws://") + "/api/notifications/ws"
    with connect(url, max_size=None, open_timeout=FRAME_TIMEOUT_S) as flooding:
        flooding.recv(timeout=FRAME_TIMEOUT_S)  # connected
        flooding.send("[" + "1," * 512 * 1024 + "1]")  # 1 MiB
        with pytest.raises(ConnectionClosed) as closed:
            flooding.recv(timeout=FRAME_TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with connect(url, open_timeout=FRAME_TIMEOUT_S) as other:
        other.recv(timeout=FRAME_TIMEOUT_S)
        other.send("ping")
        assert json.loads(other.recv(timeout=FRAME_TIMEOUT_S))["event"] == "pong"


def test_an_event_that_cannot_be_encoded_is_logged_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A frame is a patient's record: pydantic's error for a value it refuses quotes it."""

    def refuse(event: ev.Event, _base: str) -> dict[str, Any]:
        if isinstance(event, ev.PatientDeleted):
            raise ValueError(f"input_value={SECRET_NAME!r} ({event.patient_id})")
        return {}

    async def scenario() -> None:
        bus = ev.EventBus()
        hub = WebSocketHub(bus, refuse)
        hub.start(asyncio.get_running_loop())
        socket = FakeSocket()
        serving = asyncio.create_task(hub.serve(socket, "http://x/"))  # type: ignore[arg-type]
        await until(lambda: len(socket.sent) == 1)

        bus.publish(ev.PatientDeleted(patient_id="pt-1"))
        bus.publish(ev.ModelStateChanged(state="ready"))
        await until(lambda: len(socket.sent) == 2)  # the stream goes on
        await hub.stop()
        await asyncio.wait_for(serving, FRAME_TIMEOUT_S)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())

    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "PatientDeleted" in logged and "ValueError" in logged
    assert "Philomena" not in logged


def test_clients_hear_once_that_the_database_stops_answering_and_once_that_it_answers(
    client: TestClient,
    sqlite_services: Application,
    next_frame: Callable[[WebSocketTestSession], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(availability, "QUIET_S", 0.0)
    with client.websocket_connect("/api/notifications/ws") as socket:
        assert next_frame(socket)["event"] == "connected"
        with database_down(sqlite_services.db):
            for _ in range(3):
                assert client.get("/api/patients").status_code == 503
        for _ in range(2):
            assert client.get("/api/patients").status_code == 200
        client.post("/api/notifications", json={"message": "after", "type": "info"})
        frames = []
        while (frame := next_frame(socket))["event"] != "notification":
            frames.append(frame)
    assert frames == [
        {"event": "database_availability", "data": {"available": False}},
        {"event": "database_availability", "data": {"available": True}},
    ]
