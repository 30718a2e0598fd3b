"""The watch folder over REST: ``GET /api/watch-folder`` says its state, ``POST
/api/watch-folder/pause`` and ``/resume`` change it at run time (``ophthai serve`` has no
window to do it), on a real watcher over a temporary folder."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.api.routes import watch_folder as watch_folder_routes
from ophthai_desktop.api.wire import event_data
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core import watcher as watcher_module
from tests.api.test_api_openapi import Conformance
from tests.support.http import LoopbackClient
from tests.support.images import png_bytes
from tests.support.watch_folder import EventLog, build_watch_app, hang_the_share, wait_until

TOKEN = "w" * 24
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    application = build_watch_app(tmp_path)
    yield application
    application.close()


def build_routes(client: TestClient) -> None:
    """Have FastAPI build the watch-folder routes (it does so at their first request)
    before the watcher's threads run. Both it and the image check the watcher's warm-up
    makes use ``warnings.catch_warnings``, which is not thread-safe: side by side, one
    can put back the other's filters mid-way, and FastAPI's build then warns, an error
    in this test run."""
    client.get("/api/watch-folder")
    client.post("/api/watch-folder/pause")
    client.post("/api/watch-folder/resume")


@pytest.fixture
def client(app: Application) -> Iterator[TestClient]:
    with LoopbackClient(create_app(app)) as test_client:
        build_routes(test_client)
        yield test_client


def _patients(client: TestClient) -> list[dict[str, object]]:
    response = client.get("/api/patients")
    assert response.status_code == 200, response.text
    listed: list[dict[str, object]] = response.json()
    return listed


def test_a_paused_folder_holds_a_dropped_file_until_resumed(
    app: Application, client: TestClient
) -> None:
    app.watcher.start()
    folder = app.settings.resolved_watch_folder

    paused = client.post("/api/watch-folder/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"
    assert client.post("/api/watch-folder/pause").json()["state"] == "paused"  # idempotent

    held = png_bytes((40, 40))
    (folder / "held_OD.png").write_bytes(held)
    # Noticed (counted as waiting), not taken in.
    assert wait_until(lambda: client.get("/api/watch-folder").json()["waiting"] == 1)
    state = client.get("/api/watch-folder").json()
    assert state["state"] == "paused" and state["inProgress"] == 0
    assert (folder / "held_OD.png").exists()
    assert _patients(client) == []

    resumed = client.post("/api/watch-folder/resume/")  # the trailing slash too
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["state"] == "running"
    assert client.post("/api/watch-folder/resume").json()["state"] == "running"  # idempotent
    assert wait_until(lambda: len(_patients(client)) == 1)
    # Filed: its name is claimed in processed/ (an empty file) and then the scan renamed
    # over the claim, so the name there shows up before the scan has left.
    assert wait_until(lambda: not (folder / "held_OD.png").exists())
    assert (folder / "processed" / "held_OD.png").read_bytes() == held
    assert wait_until(lambda: client.get("/api/watch-folder").json()["waiting"] == 0)


def test_the_state_says_what_the_watcher_state_event_says(
    app: Application, client: TestClient
) -> None:
    before = client.get("/api/watch-folder/")
    assert before.status_code == 200, before.text
    assert before.json()["state"] == "stopped" and before.json()["enabled"] is True
    assert before.json()["waiting"] is None  # not watched: nothing is counted

    events = EventLog(app.bus)
    app.watcher.start()
    client.post("/api/watch-folder/pause")
    announced = event_data(events.of(ev.WatcherStateChanged)[-1], "http://127.0.0.1/")
    state = client.get("/api/watch-folder").json()

    assert announced is not None and announced["state"] == "paused"
    assert {key: state[key] for key in announced} == announced  # same keys, same words
    assert state["enabled"] is True and state["polling"] is True
    assert state["pollSeconds"] == app.settings.watch_poll_seconds
    assert state["extensions"] == list(app.settings.watch_extensions)
    assert state["folder"] == str(app.settings.resolved_watch_folder.resolve())


def test_the_watcher_state_event_says_what_the_setting_asks_and_what_runs(
    app: Application, client: TestClient
) -> None:
    """The event said ``polling`` (what runs now) but not ``usePolling`` (what the
    setting asks), which ``GET /api/watch-folder`` says: a client following the events
    could not tell a stopped polling folder from a stopped native one."""
    events = EventLog(app.bus)
    app.watcher.start()
    app.watcher.stop()
    stopped = event_data(events.of(ev.WatcherStateChanged)[-1], "http://127.0.0.1/")
    state = client.get("/api/watch-folder").json()

    assert stopped is not None and stopped["state"] == "stopped"
    assert stopped["polling"] is False and stopped["usePolling"] is True
    assert {key: state[key] for key in stopped} == stopped


def test_the_state_names_the_files_left_in_the_folder_for_their_names(
    app: Application, client: TestClient
) -> None:
    """``temp_retina.png`` dropped in the folder stayed there, and no answer said so."""
    assert client.get("/api/watch-folder").json()["ignored"] is None  # not watched
    app.watcher.start()
    folder = app.settings.resolved_watch_folder
    (folder / "temp_retina.png").write_bytes(png_bytes((20, 20)))
    (folder / ".notes.txt").write_text("not an image: not counted")
    assert wait_until(lambda: client.get("/api/watch-folder").json()["ignored"] == 1)
    state = client.get("/api/watch-folder").json()
    assert state["ignoredNames"] == ["temp_retina.png"] and state["state"] == "running"
    assert (folder / "temp_retina.png").exists()

    (folder / "temp_retina.png").rename(folder / "retina_OD.png")  # taken in once renamed
    assert wait_until(lambda: len(_patients(client)) == 1)
    assert wait_until(lambda: client.get("/api/watch-folder").json()["ignored"] == 0)
    assert client.get("/api/watch-folder").json()["ignoredNames"] == []


def test_a_folder_paused_after_failing_to_start_counts_no_files(
    tmp_path: Path,
) -> None:
    """Paused while its share was away, nothing looks at the folder: files written
    there once it is back wait uncounted until resumed. The answer says no count
    (null), as while in error, not 0 files waiting."""
    share = tmp_path / "share"
    application = build_watch_app(tmp_path, watch_folder_path=share)
    try:
        with LoopbackClient(create_app(application)) as client:
            build_routes(client)
            application.watcher.start()
            assert client.get("/api/watch-folder").json()["state"] == "error"
            paused = client.post("/api/watch-folder/pause").json()
            share.mkdir()
            (share / "unseen_OD.png").write_bytes(png_bytes((40, 40)))
            later = client.get("/api/watch-folder").json()
            resumed = client.post("/api/watch-folder/resume").json()
            assert wait_until(lambda: len(_patients(client)) == 1)
    finally:
        application.close()

    for state in (paused, later):
        assert state["state"] == "paused"
        assert state["waiting"] is None and state["inProgress"] is None
    assert resumed["state"] == "running"


def test_pausing_a_watch_folder_turned_off_says_how_to_turn_it_on(
    sqlite_services: Application,
) -> None:
    with LoopbackClient(create_app(sqlite_services)) as client:
        conform = Conformance(client)
        state = conform(client.get("/api/watch-folder")).json()
        refused = [
            conform(client.post("/api/watch-folder/pause")),
            conform(client.post("/api/watch-folder/resume/")),
        ]

    assert state["enabled"] is False and state["state"] == "stopped"
    for response in refused:
        assert response.status_code == 409
        body = response.json()
        assert body["message"] == body["detail"]
        assert "OPHTHAI_WATCH_FOLDER_ENABLED=true" in body["message"]
        assert "Tools → Settings" in body["message"]


def test_the_answers_match_the_openapi_document(app: Application, client: TestClient) -> None:
    conform = Conformance(client)
    conform(client.post("/api/watch-folder/pause"))  # 409: not started yet
    app.watcher.start()
    conform(client.get("/api/watch-folder"))
    conform(client.post("/api/watch-folder/pause"))
    conform(client.post("/api/watch-folder/resume", json={"paused": True}))  # 422: no body
    conform(client.post("/api/watch-folder/resume", json={}))

    assert {status for *_, status in conform.checked} == {200, 409, 422}


def test_the_token_is_needed_on_the_lan(tmp_path: Path) -> None:
    application = build_watch_app(tmp_path, api_token=TOKEN)
    try:
        with LoopbackClient(create_app(application)) as client:
            build_routes(client)
            application.watcher.start()
            refused = [
                client.get("/api/watch-folder"),
                client.post("/api/watch-folder/pause"),
                client.post("/api/watch-folder/resume"),
            ]
            assert application.watcher.state.value == "running"  # nothing was changed
            paused = client.post("/api/watch-folder/pause", headers=BEARER)
    finally:
        application.close()

    assert [r.status_code for r in refused] == [401, 401, 401]
    assert paused.status_code == 200 and paused.json()["state"] == "paused"


def test_a_watch_folder_that_does_not_answer_is_a_503_not_a_request_held(
    app: Application,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A start that waits on a share that does not answer holds the watcher's control;
    # a pause asked meanwhile waits behind it.
    monkeypatch.setattr(watch_folder_routes, "ANSWER_WITHIN_S", 0.3)
    caplog.set_level(logging.INFO, logger=watch_folder_routes.__name__)
    app.watcher.start()
    holding, release = threading.Event(), threading.Event()

    def hung_share() -> None:
        with app.watcher._control:
            holding.set()
            release.wait(30)

    share = threading.Thread(target=hung_share, name="hung-share")
    share.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        first = client.post("/api/watch-folder/pause")
        second = client.post("/api/watch-folder/resume")
        took_s = time.monotonic() - started
        state = client.get("/api/watch-folder").json()
    finally:
        release.set()
        share.join()

    assert first.status_code == 503 and "did not answer within 0.3 s" in first.json()["message"]
    assert second.status_code == 503 and "earlier pause" in second.json()["message"]
    assert took_s < 5
    assert state["state"] == "running"
    # Once the share answers, the pause asked for is done, and the log says who asked.
    assert wait_until(lambda: client.get("/api/watch-folder").json()["state"] == "paused")
    assert wait_until(
        lambda: any(
            "pause asked by an API client" in record.getMessage() for record in caplog.records
        )
    )
    assert client.post("/api/watch-folder/resume").json()["state"] == "running"


class _NoThreadToSpare(threading.Thread):
    def start(self) -> None:
        raise RuntimeError("can't start new thread")


def test_a_pause_that_gets_no_thread_says_so_and_the_next_one_works(
    app: Application, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of threads once: every later pause or resume was a 503 saying an earlier
    pause had not answered, as if the share hung, until the server was restarted."""
    app.watcher.start()
    with monkeypatch.context() as limit:
        # The route's threads only: the server's own go on starting.
        limit.setattr(watch_folder_routes, "threading", SimpleNamespace(Thread=_NoThreadToSpare))
        refused = client.post("/api/watch-folder/pause")

    assert refused.status_code == 503
    assert "no thread to spare" in refused.json()["message"]
    assert client.get("/api/watch-folder").json()["state"] == "running"
    paused = client.post("/api/watch-folder/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"


def test_a_start_that_does_not_answer_reads_as_the_error_the_event_said(
    app: Application, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ophthai serve``'s start held by a share: the event and the log said error, but
    the state read "stopped" and a pause was a 409 "not started ... try again shortly"."""
    monkeypatch.setattr(watch_folder_routes, "ANSWER_WITHIN_S", 0.3)
    share_held = hang_the_share(monkeypatch)
    events = EventLog(app.bus)
    starting = app.start_watcher_in_background(answer_within_s=0.2)
    assert starting is not None
    try:
        assert wait_until(lambda: events.of(ev.WatcherStateChanged))
        said = events.of(ev.WatcherStateChanged)[0]
        state = client.get("/api/watch-folder").json()
        paused = client.post("/api/watch-folder/pause")
    finally:
        share_held.answer.set()
        starting.join(30)

    assert (state["state"], state["message"]) == ("error", said.message)
    assert "did not answer within 0.2 s" in state["message"]
    assert paused.status_code == 503, paused.text  # the share, not "not started"
    assert wait_until(lambda: client.get("/api/watch-folder").json()["state"] == "paused")


def test_a_resume_that_does_not_answer_reads_as_not_answering_until_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume of a folder that had failed to start tries it again; held by a share
    that does not answer, it was a 503 and the state read "paused" until it returned."""
    monkeypatch.setattr(watch_folder_routes, "ANSWER_WITHIN_S", 0.3)
    monkeypatch.setattr(watcher_module, "ANSWER_WITHIN_S", 0.2, raising=False)
    share = tmp_path / "nas" / "oct"
    app = build_watch_app(tmp_path, watch_folder_path=share)
    try:
        with LoopbackClient(create_app(app)) as client:
            build_routes(client)
            app.watcher.start()  # the share is not there
            assert client.post("/api/watch-folder/pause").json()["state"] == "paused"
            share_held = hang_the_share(monkeypatch)
            try:
                resumed = client.post("/api/watch-folder/resume")
                state = client.get("/api/watch-folder").json()
                share.mkdir(parents=True)
            finally:
                share_held.answer.set()
            assert resumed.status_code == 503, resumed.text
            assert state["state"] == "error"
            assert state["message"] == (
                f"the watch folder {share} did not answer within 0.2 s (a network share "
                "that is not reachable?); it is set up once it answers"
            )
            assert wait_until(lambda: client.get("/api/watch-folder").json()["state"] == "running")
    finally:
        app.close()


def test_the_state_says_polling_as_set_up_and_as_running_in_every_state(
    tmp_path: Path,
) -> None:
    """A watch folder set to poll said ``polling: false`` while it failed to start (true
    was taken for what runs, yet nothing said what was asked for), and ``polling: true``
    once stopped after a polling run (the last run's observer, not one that runs)."""
    app = build_watch_app(tmp_path, watch_folder_path=tmp_path / "share-not-mounted")
    try:
        with LoopbackClient(create_app(app)) as client:
            build_routes(client)
            app.watcher.start()
            failed = client.get("/api/watch-folder").json()
            assert failed["state"] == "error"
            assert failed["usePolling"] is True  # set up to poll
            assert failed["polling"] is False  # nothing runs

            (tmp_path / "share-not-mounted").mkdir()
            assert wait_until(lambda: client.get("/api/watch-folder").json()["state"] == "running")
            running = client.get("/api/watch-folder").json()
            assert running["usePolling"] is True and running["polling"] is True

            app.watcher.stop()
            stopped = client.get("/api/watch-folder").json()
            assert stopped["state"] == "stopped"
            assert stopped["usePolling"] is True and stopped["polling"] is False
    finally:
        app.close()


def test_a_fallback_to_polling_says_it_runs_though_not_set_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Native events unavailable (inotify's limit): polling runs, not asked for."""

    def no_native_events(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "inotify watch limit reached")

    app = build_watch_app(tmp_path, polling=False)
    monkeypatch.setattr(watcher_module.Observer, "schedule", no_native_events)
    try:
        with LoopbackClient(create_app(app)) as client:
            build_routes(client)
            app.watcher.start()
            state = client.get("/api/watch-folder").json()
            assert state["state"] == "running"
            assert state["usePolling"] is False and state["polling"] is True
    finally:
        app.close()
