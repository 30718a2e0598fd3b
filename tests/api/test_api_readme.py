"""The README's API table against the routes the app serves."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def _shape(path: str) -> str:
    """``/api/patients/{id}`` and ``/api/patients/{patient_id}`` alike."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _readme_table() -> set[tuple[str, str]]:
    """(method, path shape) of each row of the API section's table."""
    section = README[README.index("\n## API\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| ([A-Z/]+) \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {
        (method, _shape(path))
        for methods, paths in rows
        for method in methods.split("/")
        for path in re.findall(r"`(/[^`]*)`", paths)
    }


def test_the_readme_table_lists_every_route(client: TestClient) -> None:
    served = {
        (method.upper(), _shape(path))
        for path, operations in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in operations
    }
    table = _readme_table()
    assert len(served) > 30
    assert sorted(served - table) == []  # every route is described
    sockets = {row for row in table if row[0] == "WS"}
    assert sorted(table - served - sockets) == []  # every row is served
    assert sockets
    for _, path in sockets:  # the WebSocket is not in the OpenAPI document
        with client.websocket_connect(path) as socket:
            assert socket.receive_json()["event"] == "connected"
