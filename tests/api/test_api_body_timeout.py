"""The real server, with request bodies that do not all arrive (a client gone
mid-upload): the request stores nothing and the log reports no failure."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI

from ophthai_desktop.api import create_app
from ophthai_desktop.api.server import ApiServer
from ophthai_desktop.bootstrap import Application

#: How long a test waits for the server to act.
GRACE_S = 5.0
#: A name sent in the cut-off bodies: it must not reach the log.
NAME = "Adalind Quenneville"

Serve = Callable[[FastAPI], ApiServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts the real server for an app; stops it after the test."""
    servers: list[ApiServer] = []

    def start(app: FastAPI) -> ApiServer:
        server = ApiServer(app, "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def open_socket(server: ApiServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=GRACE_S)


def request_head(method: str, path: str, content_type: str, length: int) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def handlers_running(server: ApiServer) -> int:
    """The server's requests still being handled (uvicorn's own count)."""
    return len(server._server.server_state.tasks)


def wait_until_handlers_end(server: ApiServer) -> None:
    deadline = time.monotonic() + GRACE_S
    while handlers_running(server):
        if time.monotonic() > deadline:
            pytest.fail("the handler of the cut-off request is still running")
        time.sleep(0.02)


def test_a_client_that_leaves_mid_body_is_not_an_error_in_the_log(
    serve: Serve, sqlite_services: Application, caplog: pytest.LogCaptureFixture
) -> None:
    """A laptop closed mid-upload: the handler ends and stores nothing, and the log
    does not report a failure of the server."""
    server = serve(create_app(sqlite_services))
    body = json.dumps({"name": NAME, "notes": "x" * 100_000}).encode()
    head = request_head("POST", "/api/patients", "application/json", len(body))

    with caplog.at_level(logging.DEBUG), open_socket(server) as sock:
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.2)  # read by the server before the close
        sock.close()
        wait_until_handlers_end(server)

    assert sqlite_services.patients.list_patients().total == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
