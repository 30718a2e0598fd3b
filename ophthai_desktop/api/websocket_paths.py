"""Requests that ask for the other protocol than their path speaks: an HTTP request at a
WebSocket's path is answered ``426 Upgrade Required``, a WebSocket handshake at a path
without a WebSocket ``404`` with the API's JSON error body.

Starlette's router passes a request without the WebSocket upgrade by the WebSocket
routes, so it ended as a generic 404 "Not Found": a developer who opened the URL in a
browser, or called it with an HTTP client, was not told that the path exists, nor how
to connect. Each WebSocket route of a :class:`~ophthai_desktop.api.routing.SlashRouter`
gets an HTTP route at its path, outside the OpenAPI document, that refuses the request
as the handshake would (without the token 401, from a web page at a refused origin
403, in that order) and otherwise answers 426 (RFC 9110 §15.5.22) with
``Upgrade: websocket``, ``Connection: Upgrade`` and the usual JSON error body naming
the URL to connect to.

The other way round, a handshake at a mistyped path (``/api/notification/ws``) or a
REST one was closed by the router before it was accepted, which the client sees as
``403 Forbidden`` with no body: as if it were not allowed, when there is nothing there.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ophthai_desktop.api.errors import error_body
from ophthai_desktop.api.security import (
    BEARER_SUBPROTOCOL_PREFIX,
    WEBSOCKET_SUBPROTOCOL,
    WEBSOCKET_TOKEN_REQUIRED,
    origin_allowed,
    origin_refusal,
    refuse_handshake,
    websocket_allowed,
)

#: Where the API's WebSocket is, named by the 404 of a handshake at another path.
NOTIFICATIONS_WEBSOCKET = "/api/notifications/ws"

#: The headers of the 426: the protocol to switch to (RFC 9110 §15.5.22 requires
#: ``Upgrade``), and the hop-by-hop header that carries it.
UPGRADE_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade"}


async def upgrade_required(request: Request) -> JSONResponse:
    """The answer to an HTTP request at a WebSocket's path: what the handshake would
    answer when it refuses the request, else 426 saying how to connect."""
    if not websocket_allowed(request):
        return JSONResponse(
            error_body(WEBSOCKET_TOKEN_REQUIRED),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not origin_allowed(request):
        return JSONResponse(error_body(origin_refusal(request)), status_code=403)
    scheme = "wss" if request.url.scheme == "https" else "ws"
    # The path alone: the query may hold the token, which an answer never repeats.
    url = f"{scheme}://{request.url.netloc}{request.url.path}"
    message = (
        f"{request.url.path} is a WebSocket: connect to {url} with a WebSocket client "
        "(a browser's new WebSocket(url), not a page load or an HTTP request)"
    )
    if request.app.state.application.settings.api_token:
        message += (
            "; send the API token as ?token=<token>, Authorization: Bearer <token>, or "
            f"(a browser) the subprotocols ['{WEBSOCKET_SUBPROTOCOL}', "
            f"'{BEARER_SUBPROTOCOL_PREFIX}<token>']"
        )
    return JSONResponse(error_body(message), status_code=426, headers=UPGRADE_HEADERS)


def answer_websocket_handshakes_without_a_route(app: FastAPI) -> None:
    """Make the router answer a WebSocket handshake that no route takes with 404 (and the
    JSON error body) instead of closing it, which the client saw as a bare 403."""
    not_found: ASGIApp = app.router.default

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await not_found(scope, receive, send)
            return
        message = (
            f"there is no WebSocket at {scope['path']}; "
            f"the API's WebSocket is {NOTIFICATIONS_WEBSOCKET}"
        )
        await refuse_handshake(scope, receive, send, 404, message)

    app.router.default = default
