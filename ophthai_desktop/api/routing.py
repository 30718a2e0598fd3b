"""A router whose every path also answers with or without a trailing slash, whose
routes read query parameters in camelCase or snake_case alike, and whose JSON bodies
must be UTF-8 (see :mod:`ophthai_desktop.api.bodies`).

The seed's clients call both path forms; a redirect would drop the body of a POST and
the Authorization header on some clients, so both paths are real routes (the second one
is hidden from the OpenAPI schema).

Query parameters follow the rule JSON bodies follow (DESIGN §4): ``patientId`` is read
as ``patient_id``, and a parameter the endpoint does not take is a 422 naming it rather
than silently ignored (a filter a client believes it applied would otherwise return
every record). Names starting with ``_`` (cache busters such as jQuery's ``_=``) and
``token`` (the browsers' way to send the API token) are let through.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request, Response, params
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic.alias_generators import to_snake
from starlette.routing import Match, Mount
from starlette.types import Scope

from ophthai_desktop.api.bodies import refuse_json_not_in_utf8
from ophthai_desktop.api.params import not_taken
from ophthai_desktop.api.schemas import CONTROL_CHARACTERS

#: Where :func:`normalise_query` leaves the names as sent, by the name they were given
#: (``{"patient_id": "patientId"}``), so that errors can name them as the client did.
QUERY_SPELLING = "ophthai.query_spelling"

#: Query parameters any route accepts without declaring them.
ALWAYS_ALLOWED = frozenset({"token"})


#: The methods routes are declared with, in the order ``Allow`` lists them.
ROUTE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a 405: every method some route takes at the request's
    path, and ``HEAD`` where ``GET`` is (the HEAD middleware serves it); empty when no
    route takes the path (a mount, such as the docs' static files, which answers its
    own 405). FastAPI makes each method a route of its own, so the route that answers
    405 names only its own. ``OPTIONS`` is not listed: only CORS preflights are
    answered.

    Each method is tried against the app's routes as the router tries them
    (``matches``)."""
    scope = request.scope
    # A mount that answered has put its own path in the root path: back to the app's.
    root_path = scope.get("app_root_path", scope.get("root_path", ""))
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    methods = [
        method
        for method in ROUTE_METHODS
        if any(
            route.matches({**scope, "type": "http", "method": method, "root_path": root_path})[0]
            is Match.FULL
            for route in routes
        )
    ]
    if "GET" in methods:
        methods.insert(1, "HEAD")
    return ", ".join(methods)


def _twin(path: str) -> str | None:
    if path in ("", "/"):
        return "/" if path == "" else ""
    return path[:-1] if path.endswith("/") else path + "/"


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters an endpoint and its dependencies declare."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(field.alias for field in current.query_params)
        stack.extend(current.dependencies)
    return names


def normalise_query(scope: MutableMapping[str, Any], declared: set[str]) -> None:
    """Rewrite the request's query string to the declared snake_case names, or raise a
    422 naming each parameter the endpoint does not take."""
    raw = scope.get("query_string", b"")
    if not raw:
        return
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    renamed, unknown = [], []
    for key, value in pairs:
        if key in declared or key in ALWAYS_ALLOWED or key.startswith("_"):
            renamed.append((key, value))
        elif to_snake(key) in declared:
            renamed.append((to_snake(key), value))
        else:
            unknown.append(key)
    if unknown:
        raise not_taken("query", unknown, ", ".join(sorted(declared)) or "none")
    _refuse_differing_repeats(pairs, renamed)
    if renamed != pairs:
        scope["query_string"] = urlencode(renamed).encode("latin-1")
        scope[QUERY_SPELLING] = {
            new: old for (old, _), (new, _) in zip(pairs, renamed, strict=True) if old != new
        }


def _refuse_differing_repeats(pairs: list[tuple[str, str]], renamed: list[tuple[str, str]]) -> None:
    """A parameter sent twice (``limit=10&limit=20``, ``patientId=a&patient_id=b``) with
    different values is a 422: which one the client meant cannot be known, and taking
    either could apply a filter the client did not ask for. The same value twice is
    fine."""
    first: dict[str, tuple[str, str]] = {}  # name: (spelling, value) first sent
    clashing: list[tuple[str, str]] = []  # (spelling sent, spelling sent first)
    for (sent, value), (name, _) in zip(pairs, renamed, strict=True):
        if name in first and first[name][1] != value:
            clashing.append((sent, first[name][0]))
        first.setdefault(name, (sent, value))
    if clashing:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", sent),
                    "msg": (
                        f"given twice, with different values, as {earlier} and {sent}; "
                        "send one of them"
                        if earlier != sent
                        else "given more than once, with different values; send it once"
                    ),
                    "type": "value_error",
                }
                for sent, earlier in clashing
            ]
        )


def refuse_control_characters(scope: Scope) -> None:
    """A path or query parameter holding a control character (a NUL, say) is a 422
    naming it, as a body's text field is: PostgreSQL cannot take a NUL even to compare,
    so it would otherwise be a 500 there and an empty answer on SQLite."""
    sent = [("path", key, value) for key, value in scope.get("path_params", {}).items()]
    raw = scope.get("query_string", b"")
    if raw:
        spelling = scope.get(QUERY_SPELLING, {})
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
        sent += [("query", spelling.get(key, key), value) for key, value in pairs]
    refused = [
        (where, key)
        for where, key, value in sent
        if isinstance(value, str) and CONTROL_CHARACTERS.search(value)
    ]
    if refused:
        raise RequestValidationError(
            [
                {
                    "loc": (where, key),
                    "msg": "holds a control character (such as NUL); send plain text",
                    "type": "value_error",
                }
                for where, key in refused
            ]
        )


class QueryNamesRoute(APIRoute):
    """An API route that checks its token guard first (a refused request's query and
    body are not read), applies :func:`normalise_query` before FastAPI reads the query,
    and refuses a JSON body that is not UTF-8 before FastAPI decodes it.

    A route with a path parameter does not take a path that is another route's own
    (:attr:`fixed_paths`): ``DELETE /api/notifications/mark-all-read`` is a 405 whose
    ``Allow`` names ``PATCH``, not a 422 for a notification id that is not a number, and
    ``POST`` there does not list ``GET`` and ``DELETE`` (the id's routes) as allowed."""

    #: The paths without parameters of the router's routes (:class:`SlashRouter` shares
    #: its set with each of its routes).
    fixed_paths: frozenset[str] | set[str] = frozenset()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if (
            match is not Match.NONE
            and self.param_convertors
            and self._names_fixed_path(child_scope)
        ):
            return Match.NONE, {}
        return match, child_scope

    def _names_fixed_path(self, child_scope: Scope) -> bool:
        """Whether the path this route matched, its parameters put back in its own
        pattern, is a route's of the router without parameters. Put back in the
        route's own path (not compared with the request's), it holds wherever the router
        is included."""
        params = child_scope.get("path_params", {})
        try:
            path = self.path_format.format_map({k: str(v) for k, v in params.items()})
        except (KeyError, IndexError, ValueError):
            return False
        return path in self.fixed_paths

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        # Imported here: security imports errors, which imports this module.
        from ophthai_desktop.api.security import GUARD_CHECKS

        handler = super().get_route_handler()
        guards = [
            GUARD_CHECKS[depends.dependency]
            for depends in self.dependencies
            if depends.dependency in GUARD_CHECKS
        ]
        declared = _query_names(self.dependant)
        # Form and upload routes parse their body as a form, never as JSON.
        takes_json = self.body_field is not None and not isinstance(
            self.body_field.field_info, params.Form
        )

        async def route(request: Request) -> Response:
            if guards:
                # A request of its own: the query it reads (and caches) is the one sent,
                # before normalise_query renames it for FastAPI.
                sent = Request(request.scope)
                for guard in guards:
                    guard(sent)
            normalise_query(request.scope, declared)
            refuse_control_characters(request.scope)
            if takes_json:
                await refuse_json_not_in_utf8(request)
            return await handler(request)

        return route


class SlashRouter(APIRouter):
    """A router whose paths answer with and without a trailing slash, whose routes are
    :class:`QueryNamesRoute`, and where a fixed path (``mark-all-read``, ``ws``) is never
    taken as the value of a sibling's parameter (``{notification_id}``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", QueryNamesRoute)
        super().__init__(**kwargs)
        #: The full paths (the prefix included) of its routes without parameters.
        self.fixed_paths: set[str] = set()

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        self._added(path)
        twin = _twin(path)
        if twin is not None and (self.prefix or twin):
            hidden = {**kwargs, "include_in_schema": False}
            hidden.pop("operation_id", None)
            super().add_api_route(twin, endpoint, **hidden)
            self._added(twin)

    def add_api_websocket_route(
        self, path: str, endpoint: Callable[..., Any], name: str | None = None, **kwargs: Any
    ) -> None:
        """Adds the WebSocket at both spellings of its path, and at each an HTTP route,
        outside the OpenAPI document, that tells a plain HTTP request how to connect
        (:mod:`ophthai_desktop.api.websocket_paths`)."""
        # Imported here: websocket_paths imports security, which imports errors, which
        # imports this module.
        from ophthai_desktop.api.websocket_paths import upgrade_required

        twin = _twin(path)
        for each in [path] if twin is None or not (self.prefix or twin) else [path, twin]:
            super().add_api_websocket_route(each, endpoint, name=name, **kwargs)
            self._added(each)
            # Every method: an OPTIONS that is no CORS preflight (the CORS middleware
            # answers those) was a 405 whose Allow listed POST, PUT, PATCH and DELETE,
            # methods the path takes only to answer them with this 426.
            self.add_route(
                self.prefix + each,
                upgrade_required,
                methods=[*ROUTE_METHODS, "OPTIONS"],
                include_in_schema=False,
            )

    def _added(self, path: str) -> None:
        """Notes the route just added: its path when it has no parameter, and the set of
        those paths on it (shared: paths added later count too)."""
        if "{" not in path:
            self.fixed_paths.add(self.prefix + path)
        route = self.routes[-1]
        if isinstance(route, QueryNamesRoute):
            route.fixed_paths = self.fixed_paths
