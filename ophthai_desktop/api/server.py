"""The embedded server: uvicorn in its own thread with its own event loop."""

from __future__ import annotations

import errno
import logging
import re
import socket
import sys
import threading
import time
from urllib.parse import unquote_plus

import uvicorn
from fastapi import FastAPI

from ophthai_desktop.api.http_protocol import (
    BODY_TIMEOUT_S,
    HEAD_TIMEOUT_S,
    ApiHttpProtocol,
    api_http_protocol,
    app_cors,
)
from ophthai_desktop.core.log_safety import LIBRARY_LOGGERS, describe_exceptions_in

log = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The server could not start (port in use, address not available)."""


#: The largest WebSocket message a client may send (larger ones close the connection with
#: 1009). Clients only send pings; uvicorn's default, 16 MiB, let one client hold the
#: server's event loop (every request and WebSocket) for about a second per message
#: while it was parsed as JSON.
WS_MAX_MESSAGE_BYTES = 64 * 1024

#: A ``key=value`` pair of a query in a logged line: after ``?``, ``&``, a space or a
#: quote (uvicorn's trace logs the scope, whose ``query_string`` is ``b'...'``). The key
#: as sent, percent-encoded; the value up to the next pair.
QUERY_PAIR = re.compile(r"(?:^|(?<=[?&\s'\"]))([^=&?#\s'\"]+)=([^&#\s'\"]*)")

#: An ``Authorization`` header in a logged line (the WebSocket library logs each
#: handshake's headers at DEBUG, the bearer token with them).
AUTHORIZATION = re.compile(r"(?i)(authorization:\s*)\S[^\r\n'\"]*")

#: A WebSocket subprotocol carrying the token (``bearer.<token>``, see
#: :data:`~ophthai_desktop.api.security.BEARER_SUBPROTOCOL_PREFIX`): in the handshake's
#: ``Sec-WebSocket-Protocol`` header the library logs, and in the scope's
#: ``subprotocols`` uvicorn traces.
BEARER_SUBPROTOCOL = re.compile(r"(?<![\w.-])(bearer\.)[^\s,;'\"\]]+")

REDACTED = "[redacted]"

#: The loggers whose lines may quote a request's query or headers: uvicorn's (its
#: WebSocket lines name the path with the query; the WebSocket library logs through
#: ``uvicorn.error``) and its trace of each request's scope (``uvicorn.asgi``).
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def is_token_key(key: str) -> bool:
    """Whether a query key, as sent, names the API token. Decoded as the server decodes
    it (``tok%65n`` is ``token``; ``+`` is a space), and ignoring case and surrounding
    spaces: the server takes only ``token``, but a ``TOKEN=`` it refuses still carries
    the secret."""
    return unquote_plus(key).strip().lower() == "token"


#: Query keys whose value is a patient's name or other free text (the patient list's
#: search), as the server decodes them: never logged either.
PRIVATE_QUERY_KEYS = frozenset({"search"})


def is_private_key(key: str) -> bool:
    """Whether a query key, as sent, names a parameter that carries patient data."""
    return unquote_plus(key).strip().lower() in PRIVATE_QUERY_KEYS


def redact_tokens(text: str) -> str:
    """``text`` with the value of every query parameter naming the token or patient data
    (:data:`PRIVATE_QUERY_KEYS`), of every ``Authorization`` header and of every
    ``bearer.<token>`` subprotocol, replaced by ``[redacted]``."""

    def pair(match: re.Match[str]) -> str:
        key = match.group(1)
        private = is_token_key(key) or is_private_key(key)
        return f"{key}={REDACTED}" if private else match.group(0)

    text = QUERY_PAIR.sub(pair, text)
    text = BEARER_SUBPROTOCOL.sub(rf"\g<1>{REDACTED}", text)
    return AUTHORIZATION.sub(rf"\g<1>{REDACTED}", text)


class RedactTokens(logging.Filter):
    """Replaces API tokens (and a patient search) in uvicorn's log lines with
    ``[redacted]``: whoever reads the log must not get access to the patient data.

    The line is formatted first and redacted whole, so a token in any argument (a
    path, a header, the trace's scope dictionary) is found whatever the format.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: the handler reports it as it would
            return True
        redacted = redact_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_tokens_in_uvicorn_logs() -> None:
    """Install :class:`RedactTokens` on uvicorn's loggers (once), and ``DescribeExceptions``
    (:mod:`~ophthai_desktop.core.log_safety`) on them and on asyncio's
    (``LIBRARY_LOGGERS``): uvicorn logs an error that reached it (one the app's handler
    answered 500 included) with its traceback, whose text can quote a name, and the
    server's event loop logs a task's exception nobody retrieved the same way."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    describe_exceptions_in(*UVICORN_LOGGERS, *LIBRARY_LOGGERS)


class _UvicornServer(uvicorn.Server):
    """uvicorn's server, whose shutdown also closes the connections refused beyond the
    cap (uvicorn closes only the connections it counts)."""

    def __init__(self, config: uvicorn.Config, protocol: type[ApiHttpProtocol]) -> None:
        super().__init__(config)
        self._protocol = protocol

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Before uvicorn's, which waits for the connections it counts: meanwhile those
        # closed here are seen gone (connection_lost) while the loop still runs.
        self._protocol.close_refused()
        await super().shutdown(sockets)


def bind_failure_reason(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on, found by trying it again (uvicorn logs
    its ``OSError`` and exits, keeping nothing of it): an address that is not this
    computer's or a name that does not resolve is no port in use, and an administrator
    told "is the port in use?" looks for a program that is not there."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return (
            f"the address {host} is neither an IP address nor a name this computer can "
            f"resolve ({getattr(exc, 'strerror', None) or exc}); use 127.0.0.1, 0.0.0.0 "
            "or one of this computer's own addresses"
        )
    for family, kind, proto, _name, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                if hasattr(socket, "SO_REUSEADDR") and sys.platform != "win32":
                    # As asyncio's server does: a port whose old connections linger
                    # in TIME_WAIT is not in use.
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is in use (another program, or another OphthAI, listens on it)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return (
                    f"{host} is not an address of this computer; use 127.0.0.1, 0.0.0.0 "
                    "or one of this computer's own addresses"
                )
            if exc.errno in (errno.EACCES, errno.EPERM):
                return (
                    f"this account may not listen on port {port} (ports below 1024 need "
                    "administrator rights); use a port from 1024 up, such as 8000"
                )
            return exc.strerror or str(exc)
    return "is the port in use?"


class ApiServer:
    """Runs ``app`` with uvicorn on a background thread.

    ``start`` returns once the socket is listening (or raises); ``stop`` asks uvicorn to
    finish open requests, closes the connections refused beyond the cap, and waits for
    the thread. A connection must send each request's
    head within ``head_timeout_s`` and may pause its body for at most ``body_timeout_s``,
    and at most ``max_connections`` are open at once (see
    :mod:`ophthai_desktop.api.http_protocol`).
    """

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        head_timeout_s: float = HEAD_TIMEOUT_S,
        max_connections: int | None = None,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        # The class "auto" would pick (httptools, a dependency), with the limits; the
        # answers it writes itself carry the app's CORS headers.
        protocol = api_http_protocol(
            head_timeout_s, max_connections, body_timeout_s, cors=app_cors(app)
        )
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=protocol,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="websockets-sansio",
            ws_max_size=WS_MAX_MESSAGE_BYTES,
            timeout_graceful_shutdown=5,
        )
        self._server = _UvicornServer(self._config, protocol)
        redact_tokens_in_uvicorn_logs()
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._run, name="api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise ServerStartError(
                    f"the API server could not listen on {self.host}:{self.port}: "
                    f"{bind_failure_reason(self.host, self.port)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError("the API server did not start in time")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("API server listening on %s", self.url)

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits this way when it cannot bind
            log.error("the API server stopped: could not bind %s:%s", self.host, self.port)
        except Exception:
            log.exception("the API server stopped unexpectedly")

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(2.0)
        self._thread = None
