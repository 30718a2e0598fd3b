"""Talking to a real server (``live_server`` in ``tests/api/conftest.py``) through a
plain socket, for tests that send requests byte by byte."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from ophthai_desktop.api.server import ApiServer

#: How long a socket waits for the server by default.
SOCKET_TIMEOUT_S = 5.0

#: Starts the real server for an app with the transport limits given (``ApiServer``'s
#: keyword arguments: ``head_timeout_s``, ``body_timeout_s``, ``max_connections``).
StartServer = Callable[..., ApiServer]


def open_socket(server: ApiServer, timeout_s: float = SOCKET_TIMEOUT_S) -> socket.socket:
    """A plain connection to ``server``."""
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s)


def read_until_closed(sock: socket.socket, within_s: float) -> bytes:
    """What the server sends until it closes the connection; fails if it is still open
    after ``within_s``."""
    received = b""
    deadline = time.monotonic() + within_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the connection was still open after {within_s} s")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response with a ``content-length``: its head and its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return head, body


def header_fields(head: bytes) -> dict[str, str]:
    """A response head's header fields by lower-case name (repeats joined with ``, ``)."""
    fields: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    return fields
