"""The README's API table against the routes the app serves."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.api.wire import event_data
from ophthai_desktop.core import events

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


def _readme_notes() -> dict[tuple[str, str], str]:
    """The Notes cell of each (method, path shape) of the API section's table."""
    section = README[README.index("\n## API\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| ([A-Z/]+) \| ([^|]+) \| (.*) \|$", section, flags=re.MULTILINE)
    return {
        (method, _shape(path)): notes
        for methods, paths, notes in rows
        for method in methods.split("/")
        for path in re.findall(r"`(/[^`]*)`", paths)
    }


def test_the_readme_table_names_every_query_parameter(client: TestClient) -> None:
    # A parameter a route takes is named in backticks in its row (`skip`, `?approved=true`,
    # `format=png`): a client reading the table knows every filter and option there is.
    notes = _readme_notes()
    checked = 0
    for path, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method, operation in operations.items():
            row = notes[(method.upper(), _shape(path))]
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query":
                    continue
                name = re.escape(parameter["name"])
                assert re.search(rf"`[^`]*(?<!\w){name}(?!\w)[^`]*`", row), (
                    f"{method.upper()} {path}: {parameter['name']}"
                )
                checked += 1
    assert checked > 20


@pytest.mark.parametrize("path", ["/health", "/api/ai/health"])
def test_the_readme_table_names_every_key_of_the_health_answers(
    client: TestClient, path: str
) -> None:
    # The status routes answer flat records a client reads key by key; their rows name
    # each key (and the nested ones of /api/ai/health's memory and queue) as sent.
    row = _readme_notes()[("GET", path)]
    answer = client.get(path).json()
    keys = set(answer) | {
        key for value in answer.values() if isinstance(value, dict) for key in value
    }
    assert len(keys) >= 4
    unnamed = {key for key in keys if not re.search(rf"`[^`]*(?<!\w){key}(?!\w)[^`]*`", row)}
    assert unnamed == set()


def _sample(cls: type[events.Event]) -> events.Event | None:
    """An instance of ``cls`` with placeholder values; None for an event carrying a
    record (the README describes those in words)."""
    values: dict[str, object] = {}
    for field in dataclasses.fields(cls):
        kind = str(field.type)
        if kind == "Any":
            return None
        if (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        ):
            continue
        values[field.name] = 1 if kind.startswith("int") or kind == "JobPriority" else "x"
    return cls(**values)


def test_the_websocket_payloads_the_readme_spells_out() -> None:
    # "`analysis_failed` (`{jobId, patientId, reason}`)": those keys, as the hub sends them.
    section = README[README.index("WebSocket events:") :]
    section = section[: section.index("\n\n")]
    spelled = {
        name: {key.split(":")[0].strip() for key in keys.split(",")}
        for name, keys in re.findall(r"`(\w+)`\s+\(`\{([^}]*)\}`", section)
    }
    checked = 0
    for cls in vars(events).values():
        if not (isinstance(cls, type) and issubclass(cls, events.Event)):
            continue
        sample = _sample(cls) if cls is not events.Event else None
        if sample is None or cls.name not in spelled:
            continue
        data = event_data(sample, "http://127.0.0.1")
        assert data is not None
        assert set(data) == spelled[cls.name], cls.name
        checked += 1
    assert checked >= 10


def test_the_hubs_own_frames_are_in_the_websocket_events() -> None:
    # Besides the bus's events the hub writes frames of its own (the greeting, the
    # answer to a ping): a client reads them on the same socket, so the README's list of
    # events names them too, not in a paragraph about something else.
    hub = (Path(__file__).parents[2] / "ophthai_desktop" / "api" / "hub.py").read_text(
        encoding="utf-8"
    )
    sent = set(re.findall(r'\{"event": "(\w+)", "data"', hub))
    assert {"connected", "pong"} <= sent
    section = README[README.index("WebSocket events:") :]
    section = section[: section.index("\n\n")]
    assert {name for name in sent if f'"event": "{name}"' not in section} == set()
