"""Access control and request limits for the embedded server."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ophthai_desktop.api.errors import error_body
from ophthai_desktop.core.units import format_bytes

#: Methods that change nothing, which cross-site pages may send freely (CORS keeps them
#: from reading the answer).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


#: How the OpenAPI document (and /docs' Authorize button) names the ways to send the
#: token. The guards below read the token themselves; these only declare it.
BEARER = HTTPBearer(
    scheme_name="bearerToken",
    description="The API token (OPHTHAI_API_TOKEN), when one is configured.",
    auto_error=False,
)
QUERY_TOKEN = APIKeyQuery(
    name="token",
    scheme_name="queryToken",
    description="The API token as ?token=, taken on image URLs (browsers load <img> "
    "without headers) and the WebSocket only.",
    auto_error=False,
)
BearerDeclared = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
QueryTokenDeclared = Annotated[str | None, Depends(QUERY_TOKEN)]


#: The WebSocket subprotocol the API speaks, echoed to a client that offers it. A browser
#: that offers subprotocols fails the connection unless the server answers one of them.
WEBSOCKET_SUBPROTOCOL = "ophthai.v1"

#: A WebSocket subprotocol ``bearer.<token>`` carries the API token: a browser cannot set
#: headers on a WebSocket. It is read, never echoed (the client offers it beside
#: :data:`WEBSOCKET_SUBPROTOCOL`, which is).
BEARER_SUBPROTOCOL_PREFIX = "bearer."


def presented_token(connection: HTTPConnection, *, allow_query: bool) -> str | None:
    """The bearer token from the ``Authorization`` header, or ``?token=`` (and, on a
    WebSocket handshake, a ``bearer.<token>`` subprotocol) if allowed."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if not allow_query:
        return None
    query_token = connection.query_params.get("token")
    if query_token is not None:
        return query_token
    for protocol in connection.scope.get("subprotocols", ()):
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return str(protocol[len(BEARER_SUBPROTOCOL_PREFIX) :])
    return None


def token_matches(expected: str | None, presented: str | None) -> bool:
    if expected is None:
        return True
    return presented is not None and secrets.compare_digest(
        presented.encode("utf-8"), expected.encode("utf-8")
    )


def _expected_token(connection: HTTPConnection) -> str | None:
    token: str | None = connection.app.state.application.settings.api_token
    return token


def origin_allowed(connection: HTTPConnection) -> bool:
    """Whether the web page that sent the request may use the API.

    Browsers send ``Origin`` with WebSocket handshakes and with requests that change
    things, and CORS does not stop either from reaching the server: without this check
    any web site the clinician visits could read the notification stream or validate an
    analysis on a token-less loopback server. Allowed: the configured CORS origins and
    pages this server served itself; requests without ``Origin`` come from programs.
    """
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    allowed: list[str] = connection.app.state.application.settings.cors_origins
    if "*" in allowed or origin.rstrip("/") in (o.rstrip("/") for o in allowed):
        return True
    host = connection.headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()


def origin_refusal(connection: HTTPConnection) -> str:
    """The 403 message for a refused origin, saying how to allow it."""
    return (
        f"requests from web pages at {connection.headers.get('origin')} are not allowed; "
        "add the origin to OPHTHAI_CORS_ORIGINS"
    )


def token_refusal(request: Request, ways: str, *, allow_query: bool) -> str:
    """The 401 message: how to send the token, and what was wrong with what came where
    that is plain from the request (a token in the query of a route that takes only the
    header, an ``Authorization`` header without the ``Bearer`` scheme)."""
    message = f"a valid API token is required ({ways})"
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme and not (scheme.lower() == "bearer" and value.strip()):
        return f"{message}; the Authorization header must read Bearer <token>"
    if not allow_query and "token" in request.query_params:
        return (
            f"{message}; ?token= is taken only by image URLs and the WebSocket, which "
            "browsers open without headers: send the token in the Authorization header"
        )
    return message


def refuse_without_token(request: Request) -> None:
    """With a token configured, ``Authorization: Bearer <token>`` is needed (401);
    requests that change things must come from an allowed origin or no browser (403)."""
    if not token_matches(_expected_token(request), presented_token(request, allow_query=False)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=token_refusal(request, "Authorization: Bearer <token>", allow_query=False),
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS and not origin_allowed(request):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=origin_refusal(request))


def refuse_without_token_or_query(request: Request) -> None:
    """As :func:`refuse_without_token` for image URLs, which browsers load without
    headers: ``?token=`` also works."""
    if not token_matches(_expected_token(request), presented_token(request, allow_query=True)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=token_refusal(
                request, "Authorization: Bearer <token> or ?token=", allow_query=True
            ),
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_token(request: Request, _declared: BearerDeclared) -> None:
    """REST guard (see :func:`refuse_without_token`), declared in the OpenAPI document."""
    refuse_without_token(request)


def require_token_or_query(
    request: Request, _bearer: BearerDeclared, _query: QueryTokenDeclared
) -> None:
    """Guard for image URLs (see :func:`refuse_without_token_or_query`)."""
    refuse_without_token_or_query(request)


#: What each guard dependency checks, run by the router (:mod:`ophthai_desktop.api.routing`)
#: before it reads the query or the body: FastAPI reads and parses a route's body before it
#: runs any dependency, so a request without the token (or from a foreign web page) would
#: otherwise have its JSON decoded and its upload spooled to disk, and be told how its body
#: or query was wrong (422, 400) instead of 401.
GUARD_CHECKS: dict[Callable[..., None], Callable[[Request], None]] = {
    require_token: refuse_without_token,
    require_token_or_query: refuse_without_token_or_query,
}


#: The 401 of a WebSocket handshake (or of an HTTP request at its path) without the token.
WEBSOCKET_TOKEN_REQUIRED = (
    "a valid API token is required (?token=, Authorization: Bearer, or the WebSocket "
    f"subprotocol {BEARER_SUBPROTOCOL_PREFIX}<token> beside {WEBSOCKET_SUBPROTOCOL})"
)


def websocket_subprotocol_refusal(offered: list[str]) -> str | None:
    """The 400 message for a handshake that offers subprotocols but not
    :data:`WEBSOCKET_SUBPROTOCOL` (None when it offers that one, or none): accepted
    without one, a browser fails the connection without saying why. Never names what
    was offered, which may be the token."""
    if not offered or WEBSOCKET_SUBPROTOCOL in offered:
        return None
    return (
        f"this WebSocket speaks the subprotocol {WEBSOCKET_SUBPROTOCOL} only: offer it "
        f"among the subprotocols (new WebSocket(url, ['{WEBSOCKET_SUBPROTOCOL}', "
        f"'{BEARER_SUBPROTOCOL_PREFIX}<token>'])), or offer none"
    )


def websocket_allowed(connection: HTTPConnection) -> bool:
    """Whether the connection presents the token (if one is configured), in the
    ``Authorization`` header or as ``?token=``, as WebSocket clients may send it."""
    return token_matches(_expected_token(connection), presented_token(connection, allow_query=True))


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with 413, before they are buffered.

    Checks ``Content-Length`` up front and counts streamed chunks for bodies without it.

    A body refused by its ``Content-Length`` is being sent as the 413 goes out, unless
    its client waits for ``100 Continue`` (``Expect``), which it then never gets. The
    first kind of connection is kept, so that the server reads the rest of the body and
    drops it (it is never held; a body that stalls is cut off as any other): closed with
    that body unread, its socket reset the connection, and a client that sends its whole
    body before reading the answer (Python's http.client and requests, past the few
    megabytes the sockets buffer) lost the 413 to "Connection reset by peer". The
    second kind is closed, since its body never comes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send, declared, close=_awaits_continue(scope))
                    return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send: Send, size: int | None = None, *, close: bool = True) -> None:
        """The 413, giving the body's size when its ``Content-Length`` said it; with
        ``close``, the connection ends after it (see the class's doc)."""
        body = json.dumps(error_body(too_large_message(self.max_bytes, size))).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _awaits_continue(scope: Scope) -> bool:
    """Whether the request's client waits for ``100 Continue`` before its body."""
    return any(
        name == b"expect" and value.strip().lower() == b"100-continue"
        for name, value in scope.get("headers", ())
    )


class _TooLarge(HTTPException):
    """Raised from inside the body stream; an HTTPException so that FastAPI's body
    parsing passes it on as a 413 instead of turning it into a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(max_bytes))


#: The setting that sets the request body's limit, as its 413 names it.
MAX_REQUEST_SETTING = "OPHTHAI_MAX_REQUEST_BYTES"


def too_large_message(max_bytes: int, size: int | None = None) -> str:
    """Why a request body is refused: its size where it is known (its
    ``Content-Length``), as an image's 413 gives the image's, and the setting that sets
    the limit."""
    limit = f"{format_bytes(max_bytes)} ({MAX_REQUEST_SETTING})"
    if size is None or format_bytes(size) == format_bytes(max_bytes):
        return f"the request body is larger than the limit of {limit}"
    return f"the request body is {format_bytes(size)}; the limit is {limit}"


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

#: The 403 of a request to another name than a loopback one, without a token.
LOOPBACK_ONLY = (
    "without an API token this server only answers requests to "
    "localhost, 127.0.0.1 or [::1]; set OPHTHAI_API_TOKEN for network access"
)


async def refuse_handshake(
    scope: Scope, receive: Receive, send: Send, status_code: int, message: str
) -> None:
    """Refuse a WebSocket handshake with an HTTP answer, the API's JSON error body, where
    the server supports it (uvicorn does); else close it with 1008 (policy violation),
    the message as its reason. A bare close reaches the client as a 403 without a body,
    which tells whoever reads it nothing."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await JSONResponse(error_body(message), status_code)(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


class LoopbackHostGuard:
    """Without an API token, answers only requests addressed to this machine by a
    loopback name, so a web page that re-points its own domain at 127.0.0.1 (DNS
    rebinding) cannot read patient data through the victim's browser. With a token
    configured the token protects every request and any ``Host`` is accepted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await refuse_handshake(scope, receive, send, 403, LOOPBACK_ONLY)
            return
        body = json.dumps(error_body(LOOPBACK_ONLY)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _allowed(scope: Scope) -> bool:
        application = scope["app"].state.application
        if application.settings.api_token:
            return True
        host = ""
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1").strip().lower()
                break
        if host.startswith("["):
            hostname = host[1 : host.find("]")] if "]" in host else host
        else:
            hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return hostname in LOOPBACK_NAMES


#: Where answers carry patient data (and errors that may echo it).
PATIENT_DATA_PREFIX = "/api"


class ResponseHeaders:
    """Headers every answer needs for the browser's sake.

    ``X-Content-Type-Options: nosniff`` on every answer, so that a browser never reads
    an image or a JSON body (which may echo what a client sent) as a script or a page.
    ``Cache-Control: no-store`` on ``/api`` answers that set none of their own (records,
    lists, errors), so that patient data is not kept in the browser's disk cache on a
    shared workstation; the image routes set theirs (private, cached by version). A
    WebSocket handshake refused with an HTTP answer (its 401 or 403) gets them too."""

    #: The messages that start an HTTP answer: a request's, or a refused handshake's.
    STARTS = frozenset({"http.response.start", "websocket.http.response.start"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        patient_data = scope["path"].startswith(PATIENT_DATA_PREFIX)

        async def with_headers(message: Message) -> None:
            if message["type"] in self.STARTS:
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if patient_data and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


#: What each failure Starlette's CORS middleware names in a refused preflight means.
PREFLIGHT_FAILURES = {
    "origin": "this page's origin is not one OPHTHAI_CORS_ORIGINS allows",
    "method": "the method asked for is not allowed",
    "headers": "a header asked for is not allowed",
    "private-network": "access from a public web page to this private network is not allowed",
}


class ApiCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware whose refused preflight (``OPTIONS`` from an origin
    not in ``OPHTHAI_CORS_ORIGINS``) is the API's JSON error body, not its plain-text
    ``Disallowed CORS origin``, with the same status (400) and headers.

    A browser never shows a failed preflight's body to the page (it fails the request
    whatever the status); the body is for whoever reads it: a developer in the
    browser's network panel, a script or a test checking the server's CORS settings,
    who gets the same ``message``/``detail`` as from every other error, and what to
    change."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        # Starlette's text: "Disallowed CORS origin, method" (each failure, in order).
        text = bytes(response.body).decode("utf-8", "replace")
        failures = text.removeprefix("Disallowed CORS ").split(", ")
        reasons = [PREFLIGHT_FAILURES.get(failure, failure) for failure in failures]
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-type", "content-length")
        }
        return JSONResponse(
            error_body(f"CORS preflight refused: {'; '.join(reasons)}"),
            status_code=400,
            headers=headers,
        )
