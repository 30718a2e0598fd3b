"""A router whose every path also answers with or without a trailing slash.

The seed's clients call both forms; a redirect would drop the body of a POST and the
Authorization header on some clients, so both paths are real routes (the second one is
hidden from the OpenAPI schema).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


def _twin(path: str) -> str | None:
    if path in ("", "/"):
        return "/" if path == "" else ""
    return path[:-1] if path.endswith("/") else path + "/"


class SlashRouter(APIRouter):
    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        twin = _twin(path)
        if twin is not None and (self.prefix or twin):
            hidden = {**kwargs, "include_in_schema": False}
            hidden.pop("operation_id", None)
            super().add_api_route(twin, endpoint, **hidden)

    def add_api_websocket_route(
        self, path: str, endpoint: Callable[..., Any], name: str | None = None, **kwargs: Any
    ) -> None:
        super().add_api_websocket_route(path, endpoint, name=name, **kwargs)
        twin = _twin(path)
        if twin is not None and (self.prefix or twin):
            super().add_api_websocket_route(twin, endpoint, name=name, **kwargs)
