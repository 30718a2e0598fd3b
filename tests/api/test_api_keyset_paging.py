"""Stable pages for REST clients: a full page of patients or notifications gives the next
page's cursor (``Link: <...>; rel="next"`` and ``X-Next-Cursor``), and the page read with
it starts after the last row the client holds, so rows created or deleted between two
requests never make a client skip or repeat one, as pages by ``skip`` do. Run on SQLite,
and on PostgreSQL where ``OPHTHAI_TEST_DATABASE_URL`` is set."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic.alias_generators import to_camel

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core.services.patients import SORTABLE
from tests.conftest import make_settings
from tests.support.http import LoopbackClient

#: A web frontend's origin among the default OPHTHAI_CORS_ORIGINS.
FRONTEND = "http://localhost:5173"
NEXT = re.compile(r'^<([^>]+)>; rel="next"$')


@pytest.fixture
def api(app_services: Application) -> Iterator[TestClient]:
    with LoopbackClient(create_app(app_services)) as test_client:
        yield test_client


def _next_url(response: httpx.Response) -> str | None:
    link = response.headers.get("Link")
    if link is None:
        return None
    match = NEXT.match(link)
    assert match, link
    return match.group(1)


def _every_page(
    api: TestClient,
    path: str,
    params: dict[str, Any],
    between: Callable[[int, list[str]], None] = lambda _page, _ids: None,
) -> list[str]:
    """The ids of every page, following each answer's Link verbatim; ``between(n, ids)``
    runs after page ``n`` is read, with the ids read so far."""
    ids: list[str] = []
    response = api.get(path, params=params)
    for number in range(100):
        assert response.status_code == 200, response.text
        ids.extend(str(row["id"]) for row in response.json())
        url = _next_url(response)
        if url is None:
            return ids
        between(number, ids)
        response = api.get(url)
    raise AssertionError("no last page")


def _by_skip(
    api: TestClient, params: dict[str, Any], between: Callable[[int, list[str]], None]
) -> list[str]:
    ids: list[str] = []
    for number in range(100):
        page = api.get("/api/patients", params={**params, "skip": len(ids)}).json()
        ids.extend(row["id"] for row in page)
        if len(page) < params["limit"]:
            return ids
        between(number, ids)
    raise AssertionError("no last page")


def _create(api: TestClient, **fields: Any) -> str:
    response = api.post("/api/patients", json=fields)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_paging_with_after_never_skips_or_repeats_a_patient_while_others_come_and_go(
    api: TestClient,
) -> None:
    """Between pages a patient already read is deleted, and two new ones come (newest
    first: before the pages read). By ``skip`` the deletion moves the list up (a patient
    is never read) and the new ones move it down (two are read twice); by ``after``
    every patient there throughout is read once."""
    for way in ("skip", "after"):
        originals = [_create(api, name=f"{way} {n}") for n in range(9)]

        def change(page: int, read: list[str], way: str = way) -> None:
            if page == 0:
                assert api.delete(f"/api/patients/{read[0]}").status_code == 200
            if page == 1:
                _create(api, name=f"{way} new 1")
                _create(api, name=f"{way} new 2")

        params = {"limit": 3, "search": way}
        if way == "skip":
            read = _by_skip(api, params, change)
            assert len(set(read)) < len(read), "skip paging did not repeat anyone"
            assert set(originals) - set(read), "skip paging did not miss anyone"
        else:
            read = _every_page(api, "/api/patients", params, change)
            assert sorted(read) == sorted(originals)


def test_the_cursor_pages_follow_every_sort_key_both_ways_with_ties_and_missing_values(
    api: TestClient,
) -> None:
    """Every page read by its Link, whatever the order, gives the one-page list: no
    patient skipped or repeated where values tie (the id breaks them), where patients
    have none (they come last), nor where the value is a time to the microsecond."""
    soon = datetime.now(UTC) + timedelta(days=3)
    admitted = "2024-03-01T10:00:00.123456+02:00"
    rows = [
        {"name": "Zoë", "gender": "F", "birthDate": "1984-02-02"},
        {"name": "zoe", "gender": "f", "birthDate": "1984-02-02"},
        {"name": "Émile", "gender": "M", "admissionDate": admitted},
        {"name": "adam", "birthDate": "1950-12-31", "admissionDate": admitted},
        {"name": "Ann", "age": 42},
        {"name": "Bob"},
        {"name": "bob", "gender": "X", "status": "Critical"},
    ]
    ids = [_create(api, **fields) for fields in rows]
    for n, patient_id in enumerate(ids[:3]):
        moment = (soon + timedelta(microseconds=n * 7 + 1)).isoformat()
        assert api.patch(f"/api/patients/{patient_id}", json={"appointmentDate": moment}).is_success
    assert api.patch(
        f"/api/patients/{ids[3]}", json={"appointmentDate": soon.isoformat()}
    ).is_success

    for key in SORTABLE:
        for descending in ("true", "false"):
            order = {"orderBy": to_camel(key), "descending": descending}
            whole = [row["id"] for row in api.get("/api/patients", params=order).json()]
            assert sorted(whole) == sorted(ids)

            paged = _every_page(api, "/api/patients", {**order, "limit": 2})

            assert paged == whole, (key, descending)


def test_the_total_counts_every_match_and_a_short_page_gives_no_next(api: TestClient) -> None:
    for n in range(5):
        _create(api, name=f"p{n}")

    first = api.get("/api/patients", params={"limit": 3})
    second = api.get(_next_url(first) or "")

    assert first.headers["X-Total-Count"] == second.headers["X-Total-Count"] == "5"
    assert len(second.json()) == 2
    assert "Link" not in second.headers and "X-Next-Cursor" not in second.headers


def test_skip_with_after_counts_from_the_cursor(api: TestClient) -> None:
    for n in range(6):
        _create(api, name=f"p{n}")
    whole = [row["id"] for row in api.get("/api/patients").json()]
    cursor = api.get("/api/patients", params={"limit": 2}).headers["X-Next-Cursor"]

    page = api.get("/api/patients", params={"after": cursor, "skip": 1, "limit": 2}).json()

    assert [row["id"] for row in page] == whole[3:5]


def test_the_link_keeps_the_filters_and_order_and_leaves_skip_out(api: TestClient) -> None:
    for n in range(4):
        _create(api, name=f"Ann {n}")
    _create(api, name="Bob")

    answer = api.get(
        "/api/patients",
        params={"search": "ann", "orderBy": "name", "descending": "false", "limit": 1, "skip": 1},
    )

    url = httpx.URL(_next_url(answer) or "")
    assert url.path == "/api/patients"
    assert dict(url.params) == {
        "limit": "1",
        "order_by": "name",
        "descending": "false",
        "search": "ann",
        "after": answer.headers["X-Next-Cursor"],
    }
    assert [row["name"] for row in api.get(str(url)).json()] == ["Ann 2"]


def test_notification_pages_by_cursor_keep_unread_only_and_the_patient(
    api: TestClient, app_services: Application
) -> None:
    """Read by ``unread_only`` and ``patient_id``, a notification marked read between
    two pages (it leaves that list) makes no other one skipped."""
    ours, theirs = _create(api, name="Ours"), _create(api, name="Theirs")
    made = []
    for n in range(9):
        for patient_id in (ours, theirs):
            answer = api.post(
                "/api/notifications", json={"message": f"m{n}", "patientId": patient_id}
            )
            made.append((patient_id, answer.json()["id"]))
    api.patch(f"/api/notifications/{made[2][1]}/read")  # one of ours, read before
    params = {"unread_only": "true", "patient_id": ours, "limit": 3}
    whole = api.get("/api/notifications", params={**params, "limit": 100}).json()
    expected = [str(note["id"]) for note in whole]
    assert len(expected) == 8

    def mark_one_read(page: int, _read: list[str]) -> None:
        if page == 0:  # the first page's newest: already read by the client
            api.patch(f"/api/notifications/{expected[0]}/read")

    paged = _every_page(api, "/api/notifications", params, mark_one_read)

    assert paged == expected
    total = api.get("/api/notifications", params={**params, "after": _cursor_of(api, params)})
    assert total.headers["X-Total-Count"] == "7"  # every match, not those after the cursor


def _cursor_of(api: TestClient, params: dict[str, Any]) -> str:
    return str(api.get("/api/notifications", params=params).headers["X-Next-Cursor"])


def _cipher(api: TestClient) -> Any:
    """The app's :class:`~ophthai_desktop.api.cursors.CursorCipher` (its real key)."""
    return api.app.state.cursor_cipher  # type: ignore[attr-defined]


def _bytes_of(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def test_a_garbage_foreign_or_tampered_cursor_is_a_422_naming_after(api: TestClient) -> None:
    """Cursors sealed with the app's own key (as only someone holding the data folder's
    key could make them) whose contents are refused all the same."""
    cipher = _cipher(api)

    def _encode(payload: Any) -> str:
        return cipher.seal(json.dumps(payload, ensure_ascii=True).encode())

    def _decode(cursor: str) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(cipher.open(cursor))
        return decoded

    for n in range(3):
        _create(api, name=f"p{n}", birthDate="1990-01-0" + str(n + 1))
        api.post("/api/notifications", json={"message": f"m{n}"})
    by_birth = {"orderBy": "birthDate", "limit": 1}
    patients = api.get("/api/patients", params=by_birth).headers["X-Next-Cursor"]
    by_created = api.get("/api/patients", params={"limit": 1}).headers["X-Next-Cursor"]
    notes = api.get("/api/notifications", params={"limit": 1}).headers["X-Next-Cursor"]
    fields = _decode(patients)
    created = _decode(by_created)
    note = _decode(notes)
    by_age = _decode(
        api.get("/api/patients", params={"orderBy": "age", "limit": 1}).headers["X-Next-Cursor"]
    )

    refused = [
        ("/api/patients", {**by_birth, "after": "!!"}),  # not base64url
        ("/api/patients", {**by_birth, "after": "abc"}),  # too short to be sealed
        ("/api/patients", {**by_birth, "after": cipher.seal(b"{")}),  # not JSON
        ("/api/patients", {**by_birth, "after": cipher.seal(b"\xff")}),  # not UTF-8
        ("/api/patients", {**by_birth, "after": _encode([1, 2])}),
        ("/api/patients", {**by_birth, "after": _encode({"l": "patients"})}),
        ("/api/patients", {**by_birth, "after": notes}),  # another list's
        ("/api/notifications", {"after": patients}),
        ("/api/patients", {"orderBy": "name", "after": patients}),  # another order
        ("/api/patients", {**by_birth, "descending": "false", "after": patients}),
        ("/api/patients", {**by_birth, "search": "p", "after": patients}),  # other filters
        ("/api/patients", {**by_birth, "status": "Stable", "after": patients}),
        ("/api/notifications", {"unread_only": "true", "after": notes}),
        ("/api/patients", {**by_birth, "after": _encode({**fields, "v": "1990-13-01"})}),
        ("/api/patients", {**by_birth, "after": _encode({**fields, "v": 19900101})}),
        ("/api/patients", {**by_birth, "after": _encode({**fields, "i": 7})}),
        ("/api/patients", {**by_birth, "after": _encode({**fields, "i": "a\x00b"})}),
        ("/api/patients", {**by_birth, "after": _encode({**fields, "i": "\ud800"})}),
        ("/api/patients", {"limit": 1, "after": _encode({**created, "v": "2024-01-01T10:00"})}),
        ("/api/patients", {"limit": 1, "after": _encode({**created, "v": None})}),
        ("/api/patients", {"after": _encode({**created, "v": "0001-01-01T00:00:00+14:00"})}),
        ("/api/notifications", {"after": _encode({**note, "i": 2**63})}),
        # Past the Integer columns' 32 bits: PostgreSQL refused to bind it (a 500).
        ("/api/notifications", {"after": _encode({**note, "i": 2**31})}),
        ("/api/notifications", {"after": _encode({**note, "i": -(2**31) - 1})}),
        ("/api/patients", {"orderBy": "age", "after": _encode({**by_age, "v": 2**31})}),
        ("/api/notifications", {"after": _encode({**note, "i": True})}),
        ("/api/notifications", {"after": _encode({**note, "i": "1"})}),
    ]
    for path, params in refused:
        answer = api.get(path, params=params)

        assert answer.status_code == 422, (path, params, answer.text)
        assert answer.json()["errors"][0]["loc"] == ["query", "after"], answer.text

    # A birth date no patient has is a value, not the first page: none sort after it.
    beyond = _encode({**fields, "v": "1880-01-01", "i": "pt-000000000000"})
    assert api.get("/api/patients", params={**by_birth, "after": beyond}).json() == []


def test_a_web_page_can_read_the_next_page_headers(api: TestClient) -> None:
    for n in range(2):
        _create(api, name=f"p{n}")

    answer = api.get("/api/patients", params={"limit": 1}, headers={"Origin": FRONTEND})

    assert answer.headers["access-control-allow-origin"] == FRONTEND
    exposed = answer.headers["access-control-expose-headers"].split(", ")
    assert {"Link", "X-Next-Cursor", "X-Total-Count"} <= set(exposed)


def test_a_name_sorted_cursor_does_not_hold_the_name_and_the_next_page_follows_it(
    api: TestClient,
) -> None:
    """The cursor lands in URLs (browser history, proxies' logs, screenshots): neither
    the patient's name, in any spelling, nor their id can be read back from it."""
    ids = [_create(api, name=name) for name in ("Zoë Quintana-Müller", "Yannick Ostrowski")]
    by_name = {"orderBy": "name", "limit": 1}

    first = api.get("/api/patients", params=by_name)

    cursor = first.headers["X-Next-Cursor"]
    assert first.json()[0]["name"] == "Zoë Quintana-Müller"
    assert httpx.URL(_next_url(first) or "").params["after"] == cursor
    sealed = _bytes_of(cursor)
    for clear in ("quintana", "Quintana", "zoe", "Zoë", "müller", "muller", ids[0]):
        for encoding in ("utf-8", "utf-16-le", "latin-1"):
            assert clear.encode(encoding, "ignore") not in sealed, clear
    assert not set(sealed) <= set(range(0x20, 0x7F)), "the cursor reads as text"
    assert len(cursor) < 200
    second = api.get(_next_url(first) or "")
    assert second.status_code == 200, second.text
    assert [row["name"] for row in second.json()] == ["Yannick Ostrowski"]


def test_a_cursor_altered_by_any_one_bit_is_a_422_naming_after(api: TestClient) -> None:
    """Not only the well-formed parts: a sort value changed by one letter moved where
    the page started before cursors were sealed."""
    for name in ("anna", "bob", "carl"):
        _create(api, name=name)
    by_name = {"orderBy": "name", "descending": "false", "limit": 1}
    cursor = api.get("/api/patients", params=by_name).headers["X-Next-Cursor"]
    sealed = _bytes_of(cursor)

    for position in range(len(sealed)):
        altered = bytearray(sealed)
        altered[position] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        answer = api.get("/api/patients", params={**by_name, "after": text})

        assert answer.status_code == 422, (position, answer.text)
        assert answer.json()["errors"][0]["loc"] == ["query", "after"], answer.text


def test_a_cursor_survives_a_restart_on_the_same_data_folder(
    app_services: Application,
) -> None:
    """The key that seals cursors is kept in the data folder, readable by its owner
    only: a client's cursor still opens on the app started again (a new app object)."""
    with LoopbackClient(create_app(app_services)) as before:
        for name in ("anna", "bob", "carl"):
            _create(before, name=name)
        by_name = {"orderBy": "name", "descending": "false", "limit": 1}
        cursor = before.get("/api/patients", params=by_name).headers["X-Next-Cursor"]

    with LoopbackClient(create_app(app_services)) as after:
        answer = after.get("/api/patients", params={**by_name, "after": cursor})

    assert answer.status_code == 200, answer.text
    assert [row["name"] for row in answer.json()] == ["bob"]
    key = app_services.settings.cursor_key_path
    assert len(key.read_bytes()) == 32
    assert key.stat().st_mode & 0o077 == 0


def test_another_data_folders_cursor_and_one_made_before_its_key_was_lost_are_422(
    api: TestClient, tmp_path: Path
) -> None:
    """Another installation's cursor, well formed for this list, opens nowhere but there;
    a key file deleted (or unreadable) is made again, and the cursors of the old one are
    refused as any unreadable cursor is."""
    for name in ("anna", "bob", "carl"):
        _create(api, name=name)
    by_name = {"orderBy": "name", "descending": "false", "limit": 1}
    other = build_application(make_settings(tmp_path / "other"))
    try:
        with LoopbackClient(create_app(other)) as there:
            for name in ("anna", "bob"):
                _create(there, name=name)
            foreign = there.get("/api/patients", params=by_name).headers["X-Next-Cursor"]
    finally:
        other.close()
    own = api.get("/api/patients", params=by_name).headers["X-Next-Cursor"]

    answer = api.get("/api/patients", params={**by_name, "after": foreign})

    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"] == ["query", "after"]
    key = api.app.state.application.settings.cursor_key_path  # type: ignore[attr-defined]
    key.unlink()
    with LoopbackClient(create_app(api.app.state.application)) as restarted:  # type: ignore[attr-defined]
        stale = restarted.get("/api/patients", params={**by_name, "after": own})
        fresh = restarted.get("/api/patients", params=by_name).headers["X-Next-Cursor"]
        followed = restarted.get("/api/patients", params={**by_name, "after": fresh})
    assert stale.status_code == 422, stale.text
    assert stale.json()["errors"][0]["loc"] == ["query", "after"]
    assert "leave after out" in stale.json()["errors"][0]["msg"]
    assert [row["name"] for row in followed.json()] == ["bob"]
    assert len(key.read_bytes()) == 32


@pytest.mark.parametrize(
    "long_name",
    [
        "한" * 200,  # each syllable sorts as its three letters (jamo), 3 bytes each
        "\ufdfa" * 200,  # one sign whose key is a phrase of 18 characters
    ],
)
def test_the_next_page_after_the_longest_name_follows_its_cursor(
    api: TestClient, long_name: str
) -> None:
    """A name of 200 characters is valid, but its sort key, which the cursor holds, can
    be many times as long in bytes: the server gave a cursor it then refused (422), and
    the client could not read past that patient."""
    _create(api, name=long_name)
    _create(api, name="龍")  # sorts after both
    by_name = {"orderBy": "name", "descending": "false", "limit": 1}

    first = api.get("/api/patients", params=by_name)
    assert first.json()[0]["name"] == long_name
    second = api.get(_next_url(first) or "")

    assert second.status_code == 200, second.text
    assert [row["name"] for row in second.json()] == ["龍"]
