"""HTTP test helpers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

#: Without an API token the server answers requests to loopback hosts only.
LOOPBACK = "http://127.0.0.1"

#: A notification's keys, in REST answers and WebSocket frames alike.
NOTIFICATION_KEYS = {
    "id",
    "patientId",
    "message",
    "timestamp",
    "read",
    "type",
    "analysisId",
    "jobId",
    "warning",
}


class LoopbackClient(TestClient):
    """A TestClient that addresses the app as 127.0.0.1 (REST and WebSocket), as
    local clients do, instead of Starlette's ``testserver``."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        kwargs.setdefault("base_url", LOOPBACK)
        super().__init__(app, **kwargs)

    def websocket_connect(self, url: str, *args: Any, **kwargs: Any) -> WebSocketTestSession:
        return super().websocket_connect(urljoin("ws://127.0.0.1", url), *args, **kwargs)
