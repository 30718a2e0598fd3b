"""``HEAD`` wherever ``GET`` works (RFC 9110 §9.3.2): the same status and headers, no
body.

FastAPI routes declared with ``GET`` do not answer ``HEAD`` (405), and declaring both
methods on every route would list each operation twice in the OpenAPI document. So one
middleware serves a ``HEAD`` request as the ``GET`` it stands for and drops the body on
the way out: the headers (``Content-Length``, ``ETag``, ``X-Total-Count``, gzip's
``Content-Encoding``) are those the ``GET`` gets, errors included (404, 401, 405 where
the path takes no ``GET``). ``HEAD`` is therefore not in ``/openapi.json``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Set in the scope of a ``HEAD`` served as ``GET``: a route whose body is costly to
#: make (an image file read from disk) may answer with its headers alone.
HEAD_REQUEST = "ophthai.head_request"


class HeadAsGet:
    """Answers ``HEAD`` as ``GET`` without the body. Outermost, so that every other
    middleware (gzip, CORS, the guards) treats the request as the ``GET``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        extensions = {
            name: value
            for name, value in scope.get("extensions", {}).items()
            if name != "http.response.pathsend"  # so that files come as body messages
        }

        async def without_body(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                await send(message)
            elif kind == "http.response.body" and not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            # Earlier chunks of a streamed body are dropped: only its end is passed on.

        as_get = {**scope, "method": "GET", "extensions": extensions, HEAD_REQUEST: True}
        await self.app(as_get, receive, without_body)
