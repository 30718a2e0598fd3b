"""uvicorn's HTTP protocol with time limits on each request's head and body and a cap on
open connections.

uvicorn reads a request's line and headers without a time limit: its only timer
(``timeout_keep_alive``) is armed after a response and dropped at the next byte. A
connection that sends nothing, or its headers a byte at a time (slowloris), was held
until the client left, and enough of them spend the process's file descriptors, which
the database, the image store and the watch folder need too. A body was read the same
way: a client that sent a few bytes of an upload now and then held the connection, and
the handler waiting for the rest, for as long as it went on. The time limits end such
connections; the cap keeps a client that opens them faster than they end from taking
every descriptor. A connection beyond the cap is answered ``503`` (JSON, as the API's
errors are, with ``Retry-After``, and the CORS headers of an ``Origin`` the app allows)
as soon as its request's head has come, then closed, without parsing the request
further or calling the app: its client can tell a busy server from one that has gone.
A CORS preflight beyond the cap gets the CORS middleware's own answer instead (a
browser fails a preflight answered 503 without letting the page see it), so that the
request after it gets the 503 a page can read.

uvicorn's own ``limit_concurrency`` is not used: it reads (and holds) every connection
until its request's head has come, answers each request beyond it with a plain-text
503 while counting idle sockets and open WebSockets, and never refuses a WebSocket
handshake.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import sys
from collections.abc import Iterable
from typing import Any, ClassVar

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp
from uvicorn._types import ASGIReceiveEvent
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

log = logging.getLogger(__name__)

#: How long a connection has to deliver a request's line and headers, counted from when
#: it opens and again from when it falls idle after each response. A browser sends its
#: head in one packet; 10 s leaves room for a slow network without holding an idle
#: socket long.
HEAD_TIMEOUT_S = 10.0

#: The most bytes a request's line and headers may take. httptools (under uvicorn) has
#: no limit: within its head time a client could send hundreds of megabytes of headers,
#: all held in memory before any route (or the token check) sees the request. Browsers
#: send a few kilobytes (cookies for ``localhost`` included); 64 KiB is 4 to 8 times the
#: limit of common servers (nginx, Node).
MAX_HEAD_BYTES = 64 * 1024

#: How long a request's body may go without a byte arriving, while the server reads it.
#: Not a limit on the whole body: a slow upload that keeps coming is read to its end.
#: 30 s leaves room for a network that stalls for a while (Wi-Fi roaming) without holding
#: a handler for a client that has gone.
BODY_TIMEOUT_S = 30.0

#: The most connections (requests and WebSockets) open at once, at most half of the
#: process's file descriptors (:func:`connection_cap`). A browser opens up to six per
#: server and one WebSocket per tab: a clinic's frontends need a few dozen.
MAX_CONNECTIONS = 200

#: A refused connection is logged as a warning at most this often (then at debug):
#: a client refused over and over would otherwise fill the log.
REFUSAL_WARNING_INTERVAL_S = 60.0

#: The ``Retry-After`` of the 503 that refuses a connection beyond the cap, in seconds.
REFUSAL_RETRY_AFTER_S = 5

#: How long a refused connection waits for its request to start (then it is closed
#: without a word, as a connection that asks nothing in time is), and how long it is
#: kept after its 503, its sending side closed, while what its client still sends is
#: read and dropped: closed at once, a socket with a request it has not read resets the
#: connection, and a client that has not read the 503 yet then loses it (Go's server
#: waits 0.5 s for the same reason). It ends sooner when the client closes.
REFUSAL_LINGER_S = 1.0

#: The most refused connections kept that way at once; past that one is closed at once,
#: without an answer. A flood of connections must not hold the descriptors the cap
#: keeps for the rest of the app.
REFUSALS_LINGERING_AT_ONCE = 32

_TIMEOUT_MESSAGE = "the request's headers did not arrive in time"
_REFUSAL_MESSAGE = (
    "the API server has too many connections open; try again in a few seconds "
    "(close connections this client does not use)"
)


#: The usual error body (``errors.error_body``), as the OpenAPI document lists it for a 408.
def _error_json(message: str) -> bytes:
    """The body every API error has (``errors.error_body``: ``detail`` and ``message``),
    written here because :mod:`~ophthai_desktop.api.errors` imports this module."""
    return json.dumps({"detail": message, "message": message}).encode()


_TIMEOUT_BODY = _error_json(_TIMEOUT_MESSAGE)
_HEAD_TOO_LARGE_BODY = _error_json(
    f"the request's line and headers are larger than the limit of {MAX_HEAD_BYTES // 1024} KB"
)
_REFUSAL_BODY = _error_json(_REFUSAL_MESSAGE)


def app_cors(app: ASGIApp) -> CORSMiddleware | None:
    """The CORS middleware ``app`` was built with (Starlette's ``user_middleware``, or a
    subclass of it), made again, of its own class, to ask it which origins it allows
    and to answer preflights as it does; None when the app has none."""
    for middleware in getattr(app, "user_middleware", ()):
        if isinstance(middleware.cls, type) and issubclass(middleware.cls, CORSMiddleware):
            cors: CORSMiddleware = middleware.cls(app, *middleware.args, **middleware.kwargs)
            return cors
    return None


def cors_headers(cors: CORSMiddleware | None, origin: str | None) -> list[tuple[bytes, bytes]]:
    """The headers ``cors`` adds to an answer to a request from ``origin`` when it allows
    that origin (none otherwise), so that a page there can read an answer the server
    writes itself as it reads the app's."""
    if cors is None or origin is None or not cors.is_allowed_origin(origin):
        return []
    headers = dict(cors.simple_headers)
    if cors.allow_credentials or not cors.allow_all_origins:  # else "*", as it is
        headers["Access-Control-Allow-Origin"] = origin
    headers["Vary"] = "Origin"
    return [(name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()]


def connection_cap(limit: int = MAX_CONNECTIONS) -> int:
    """``limit``, or half of the process's file descriptors where that is fewer (macOS
    gives an app 256). Windows has no such limit on sockets."""
    if sys.platform == "win32":
        return limit
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limit
    return max(1, min(limit, soft // 2))


class ApiHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that closes a connection whose request head does
    not arrive within :attr:`head_timeout_s`: with ``408 Request Timeout`` when part of
    a head came, without a word when nothing did (a browser's spare connection, which
    it drops without harm). A connection opened while :attr:`max_connections` are open
    is answered ``503 Service Unavailable`` once its request's head has come (or what
    came of it within :data:`REFUSAL_LINGER_S`), read only for its ``Origin``, and
    closed (see :data:`REFUSAL_LINGER_S`): open connections and WebSockets go on.

    The clock stops at the end of the head, so a request's body, a long or streaming
    response and a WebSocket after its upgrade are not limited by it; it starts again
    once the response and the request's body are both done and no pipelined request
    waits.

    A request's body has its own clock, :attr:`body_timeout_s` without a byte of it
    arriving. Past that, a request not yet answered gets ``408`` (JSON, as the API's
    errors are) and its handler sees the client gone (``http.disconnect``: FastAPI
    never calls a route with half a body); one already answered is closed. The clock
    waits while the server itself does not read (the handler has not taken what came,
    however little of it waits, or a pipelined request waits its turn), while the client
    waits for ``100 Continue``, and while an answer is being sent; it counts again from
    when the handler takes what came (:meth:`_note_reads`). A handler slow to turn to the
    body, or one that answers without it, is not cut off by a 408 asking the client to
    send again a request the handler goes on to carry out.

    A 408 carries the CORS headers the app's middleware (:attr:`cors`) would add for
    the request's ``Origin``, where that header arrived and the app allows the origin:
    a page there reads the 408 instead of an opaque network error. So do a 431 and the
    503 of a connection refused beyond the cap; a CORS preflight refused beyond the cap
    gets the middleware's answer to it (:meth:`_preflight_answer`).

    Runs on the server's event loop, like the class it extends.
    """

    head_timeout_s: ClassVar[float] = HEAD_TIMEOUT_S
    body_timeout_s: ClassVar[float] = BODY_TIMEOUT_S
    max_connections: ClassVar[int] = MAX_CONNECTIONS
    #: The app's CORS middleware (:func:`app_cors`): the 408s carry its headers.
    cors: ClassVar[CORSMiddleware | None] = None
    _refusal_warned_at: ClassVar[float | None] = None
    #: The refused connections still open (waiting for their request, or lingering after
    #: their 503): uvicorn neither counts them nor closes them when it stops.
    _refused: ClassVar[set[ApiHttpProtocol]] = set()
    #: Set once the server stops: a connection refused after that is closed at once.
    _stopping: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Each server's class (api_http_protocol) holds its own refused connections.
        cls._refused = set()
        cls._stopping = False

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # some of the awaited head has arrived
        self._head_bytes = 0  # bytes received since the awaited head began (about)
        self._head_size = 0  # the current head's line and headers, as parsed
        self._head_too_large = False
        self._body_done = True  # the latest request's body has been read to its end
        self._upgraded = False
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_heard_at = 0.0  # loop time of the last bytes while a body was awaited
        # A connection refused beyond the cap: its close, whether it was answered, and
        # its request's head as far as it came (for the Origin of the 503's CORS headers).
        self._refusal: asyncio.TimerHandle | None = None
        self._refusal_answered = False
        self._refused_head = bytearray()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn's set holds every open connection, WebSockets included, this one too.
        if len(self.connections) > self.max_connections:
            self._refuse()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self._refusal is not None:
            self._refusal.cancel()
            self._refusal = None
        type(self)._refused.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            self._take_refused_head(data)
            return
        if self._head_too_large:  # refused: what else comes is dropped (see on_response_complete)
            return
        if self._body_done and not self._upgraded:  # (part of) a request's head
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._head_started
            and self._head_bytes > MAX_HEAD_BYTES
            and not self.transport.is_closing()
        ):
            self._refuse_large_head()
            return
        # While a body is awaited every byte that comes is part of it (or ends the head
        # that announced it), so the clock restarts here rather than per parser callback.
        if not self._body_done and not self._upgraded and not self.transport.is_closing():
            self._body_heard_at = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout_s, self._on_body_timeout)

    # httptools' parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        """Adds to the head's size; past :data:`MAX_HEAD_BYTES` the parse stops (the
        parser reports the error to uvicorn, which calls :meth:`send_400_response`)."""
        self._head_size += size
        if self._head_size > MAX_HEAD_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._head_started = False
        self._head_bytes = 0
        self._body_done = False
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before:  # not a WebSocket's
            self._note_reads(self.cycle)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._body_done = True
        self._cancel_body_timer()
        self._arm_if_idle()

    # uvicorn's callbacks

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_too_large:  # its 431 waited for the answers before it
            if not self._answering() and not self.transport.is_closing():
                self._refuse_large_head()
            return
        if not self._body_done:  # the body's clock counts from when the server turns to it
            self._body_heard_at = self.loop.time()
        self._arm_if_idle()

    def handle_websocket_upgrade(self) -> None:
        # The parser calls on_message_complete for the handshake before this runs.
        self._upgraded = True
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().handle_websocket_upgrade()

    def _note_reads(self, cycle: RequestResponseCycle) -> None:
        """Restarts the body's clock each time the handler takes what came of its
        request's body: what the client sent before the handler turned to it (it waits
        unread meanwhile, the clock with it) does not use up the client's time."""
        receive = cycle.receive

        async def receive_noting() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "http.request" and self.cycle is cycle:
                self._body_heard_at = self.loop.time()
            return message

        # uvicorn's task calls the cycle's receive once it runs, after this.
        cycle.receive = receive_noting  # type: ignore[method-assign]

    def _arm_if_idle(self) -> None:
        """Starts the clock when the connection has nothing left to do: the response
        sent, the request read to its end, no pipelined request waiting."""
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.response_complete
            and self._body_done
            and not self.pipeline
            and not self._upgraded
            and not self.transport.is_closing()
        ):
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._on_head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self._head_started:
            # Neither the client's address nor what it sent: its head may hold a token.
            log.info(
                "closed a connection whose request headers did not arrive within %g s (408)",
                self.head_timeout_s,
            )
            self._send_error(
                http.HTTPStatus.REQUEST_TIMEOUT, _TIMEOUT_BODY, self._cors_headers(self.headers)
            )
        else:
            log.debug("closed a connection that sent no request within %g s", self.head_timeout_s)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:  # the parse was stopped by _count_head
            self._refuse_large_head()
            return
        super().send_400_response(msg)

    def _refuse_large_head(self) -> None:
        """``431`` and the end of the connection for a head over :data:`MAX_HEAD_BYTES`,
        before it is whole: the app never sees the request. Requests pipelined before
        it are answered first (:meth:`on_response_complete` sends it then): written at
        once, the 431 was read as the answer to the request before."""
        self._cancel_head_timer()
        self._head_too_large = True
        if self._answering():
            return
        # Neither the client's address nor what it sent: its head may hold a token.
        log.info("closed a connection whose request headers passed %d bytes (431)", MAX_HEAD_BYTES)
        self._send_error(
            http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            _HEAD_TOO_LARGE_BODY,
            self._cors_headers(self.headers),
        )
        self.transport.close()

    def _answering(self) -> bool:
        """Whether an earlier request's answer is still to be sent (or being sent)."""
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _on_body_timeout(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if (
            cycle is None
            or self._body_done
            or self._upgraded
            or self.transport.is_closing()
            or self.transport.get_protocol() is not self
        ):
            return
        now = self.loop.time()
        if (
            self.flow.read_paused  # the server is not reading: nothing can come
            # The handler has not taken what came (uvicorn reads on until the buffer's
            # limit, then pauses): it has not asked for more, however little waits.
            or (cycle.body and not cycle.response_complete)
            or self.pipeline  # the request waits for an earlier one's answer to end
            or cycle.waiting_for_100_continue  # the client waits for the handler's word
            or (cycle.response_started and not cycle.response_complete)  # left to finish
        ):
            # Counted again from now. Once reading resumes, a client that was held back
            # has its bytes queued already.
            self._body_heard_at = now
        due = self._body_heard_at + self.body_timeout_s
        if now < due:
            self._body_timer = self.loop.call_later(due - now, self._on_body_timeout)
            return
        # Neither the client's address nor what it sent: a body may hold a patient's name.
        if cycle.response_started:
            log.info(
                "closed a connection whose request body stopped arriving for %g s after its answer",
                self.body_timeout_s,
            )
        else:
            log.info(
                "closed a connection whose request body stopped arriving for %g s (408)",
                self.body_timeout_s,
            )
            # What uvicorn does when a client leaves, done now so that the handler's
            # answer cannot follow this one: its receive() gets http.disconnect, its
            # send() writes nothing.
            cycle.disconnected = True
            cycle.message_event.set()
            message = (
                f"the request body stopped arriving: nothing came for {self.body_timeout_s:g} "
                "s; send the request again"
            )
            self._send_error(
                http.HTTPStatus.REQUEST_TIMEOUT,
                _error_json(message),
                self._cors_headers(cycle.scope["headers"]),
            )
        self.transport.close()

    def _refuse(self) -> None:
        """Refuses a connection beyond the cap: it waits (uncounted) for its request to
        start, to answer it 503, unless too many refused ones wait already."""
        self.connections.discard(self)
        now = self.loop.time()
        cls = type(self)
        if cls._refusal_warned_at is None or now - cls._refusal_warned_at >= (
            REFUSAL_WARNING_INTERVAL_S
        ):
            cls._refusal_warned_at = now
            log.warning(
                "refused a connection (its request is answered 503): %d are open, the "
                "most the API server takes (further refusals in the next %g s are logged "
                "at debug level)",
                self.max_connections,
                REFUSAL_WARNING_INTERVAL_S,
            )
        else:
            log.debug("refused a connection: %d are open", self.max_connections)
        if cls._stopping or len(cls._refused) >= REFUSALS_LINGERING_AT_ONCE:
            self.transport.close()
            return
        cls._refused.add(self)
        self._refusal = self.loop.call_later(REFUSAL_LINGER_S, self._on_refusal_wait_over)

    def _take_refused_head(self, data: bytes) -> None:
        """What a refused connection sends: its request's head is kept until it ends
        (or passes :data:`MAX_HEAD_BYTES`), then answered; what comes after is dropped.
        A browser sends its head in one packet: answered at once. A head whose lines end
        in a bare ``\n`` is answered when the wait ends: under the cap the parser refuses
        it (400), so no client that can use the server sends one."""
        if self._refusal_answered:
            return
        start = max(0, len(self._refused_head) - 3)  # the end may straddle two packets
        self._refused_head += data[: MAX_HEAD_BYTES + 1 - len(self._refused_head)]
        if (
            self._refused_head.find(b"\r\n\r\n", start) >= 0
            or len(self._refused_head) > MAX_HEAD_BYTES
        ):
            self._answer_refusal()

    def _on_refusal_wait_over(self) -> None:
        """:data:`REFUSAL_LINGER_S` after the refusal: a connection that sent nothing is
        closed without a word; one whose head has not ended is answered with what came."""
        self._refusal = None
        if self._refused_head and not self._refusal_answered:
            self._answer_refusal()
        else:
            self.transport.close()

    def _answer_refusal(self) -> None:
        """The refused connection's request has come (its head, or what came of it in
        time): 503, with the CORS headers of its ``Origin`` where the app allows it,
        then the end of what is sent; the socket closes when the client closes its
        side (``eof_received``) or the linger ends. What else comes is dropped."""
        if self._refusal_answered or self.transport.is_closing():
            return
        self._refusal_answered = True
        head = bytes(self._refused_head)
        fields = _head_fields(head)
        preflight = self._preflight_answer(head, fields)
        if preflight is not None:
            self._send_error(*preflight)
        else:
            self._send_error(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                _REFUSAL_BODY,
                [
                    (b"retry-after", str(REFUSAL_RETRY_AFTER_S).encode("ascii")),
                    *self._cors_headers(fields),
                ],
            )
        self._refused_head.clear()
        if not self.transport.can_write_eof():  # TLS: no half-close
            self.transport.close()
            return
        self.transport.write_eof()
        if self._refusal is not None:  # the wait for the request ends: the linger starts
            self._refusal.cancel()
        self._refusal = self.loop.call_later(REFUSAL_LINGER_S, self.transport.close)

    def _preflight_answer(
        self, head: bytes, fields: list[tuple[bytes, bytes]]
    ) -> tuple[http.HTTPStatus, bytes, list[tuple[bytes, bytes]], bytes] | None:
        """The app's CORS middleware's answer to a refused connection's request when that
        is a whole CORS preflight (``OPTIONS`` with ``Origin`` and
        ``Access-Control-Request-Method``), as status, body, headers and content type;
        None for any other request.

        A browser fails a preflight that is not answered 2xx whatever its headers, and
        tells the page only that CORS failed: a 503 there hid "busy, try again" from a
        page on an allowed origin. The preflight says only which methods and headers
        that origin may send, which the middleware answers without the app and which
        does not depend on the load; the request that follows (on a new connection:
        this one closes) then gets its 503 with the CORS headers the page can read."""
        if self.cors is None or not head.startswith(b"OPTIONS ") or b"\r\n\r\n" not in head:
            return None
        headers = Headers(raw=fields)
        if "origin" not in headers or "access-control-request-method" not in headers:
            return None
        response = self.cors.preflight_response(request_headers=headers)
        answer_headers = [
            (name, value)
            for name, value in response.raw_headers
            if name not in (b"content-type", b"content-length")
        ]
        content_type = response.headers.get("content-type", "text/plain").encode("latin-1")
        return (
            http.HTTPStatus(response.status_code),
            bytes(response.body),
            answer_headers,
            content_type,
        )

    @classmethod
    def close_refused(cls) -> None:
        """Closes the refused connections still open, and any refused from now on at
        once: the server is stopping. uvicorn's shutdown closes only the connections it
        counts (``server_state.connections``), which a refused one leaves; without this
        they stayed open past the server's end, until its loop was garbage-collected.

        Runs on the server's event loop, from its shutdown."""
        cls._stopping = True
        for protocol in list(cls._refused):
            protocol.transport.close()

    def _cors_headers(
        self, request_headers: Iterable[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an answer to a request with these headers (as far as they
        came): the app's for its ``Origin`` when the app allows it."""
        origin = next((value for name, value in request_headers if name == b"origin"), None)
        return cors_headers(self.cors, None if origin is None else origin.decode("latin-1"))

    def _send_error(
        self,
        status: http.HTTPStatus,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = b"application/json",
    ) -> None:
        """Writes an error answer (``body``, JSON unless ``content_type`` says otherwise)
        that ends the connection, as uvicorn writes its own 400, without the app."""
        content = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
        for name, value in [*self.server_state.default_headers, *(headers or [])]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + content_type + b"\r\n",
                b"x-content-type-options: nosniff\r\n",  # as the app's answers (ResponseHeaders)
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))


def _head_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of a request's head as far as it came, by lower-case name:
    the whole lines only (one cut off may be a name or a value only in part), never the
    request line or the body after the head."""
    whole, end, _body = head.partition(b"\r\n\r\n")
    lines = whole.split(b"\n")[1:] if end else whole.split(b"\n")[1:-1]
    fields = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        fields.append((name.strip().lower(), value.strip()))
    return fields


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


def api_http_protocol(
    head_timeout_s: float = HEAD_TIMEOUT_S,
    max_connections: int | None = None,
    body_timeout_s: float = BODY_TIMEOUT_S,
    cors: CORSMiddleware | None = None,
) -> type[ApiHttpProtocol]:
    """A subclass of :class:`ApiHttpProtocol` with these limits, for one server (uvicorn
    builds a protocol per connection from a class and its own arguments);
    ``max_connections`` defaults to :func:`connection_cap`; ``cors`` is the app's
    (:func:`app_cors`)."""
    return type(
        "ApiHttpProtocol",
        (ApiHttpProtocol,),
        {
            "head_timeout_s": head_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_connections": connection_cap() if max_connections is None else max_connections,
            "cors": cors,
        },
    )
