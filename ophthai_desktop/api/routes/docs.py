"""The OpenAPI docs: Swagger UI at ``/docs`` and ReDoc at ``/redoc``.

FastAPI's own pages load their scripts and styles from a CDN, so on a workstation
without internet access (common in clinics) they stay blank. These pages are the same
ones, with the Swagger UI and ReDoc bundles that the ``fastapi-offline`` package ships
served by this server under :data:`ASSETS_URL`; nothing is fetched from elsewhere
(Swagger UI's online validator badge is off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from ophthai_desktop.api.params import DB_INT_MAX
from ophthai_desktop.api.routing import SlashRouter

#: Where the pages' scripts, styles and icon are served.
ASSETS_URL = "/docs-static"
#: The bundles shipped with ``fastapi-offline`` (swagger-ui-bundle.js, swagger-ui.css,
#: redoc.standalone.js, favicon.png).
ASSETS_FOLDER = Path(fastapi_offline.__file__).resolve().parent / "static"

router = SlashRouter(include_in_schema=False)


def _asset(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"


def _schema_url(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_schema_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon.png"),
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=_schema_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, "favicon.png"),
        with_google_fonts=False,
    )


def install_docs(app: FastAPI, *, token_required: bool) -> None:
    """Serve the docs pages and their assets (``app`` made with ``docs_url=None`` and
    ``redoc_url=None``), and the OpenAPI document saying whether the token is needed."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_FOLDER), name="docs-static")
    app.include_router(router)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()  # built once, then cached on the app
        if fresh:
            _write_integer_bounds_as_integers(schema)
            _close_multipart_forms(schema)
            if not token_required:
                _make_token_optional(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _make_token_optional(schema: dict[str, Any]) -> None:
    """Without a configured token the server asks for none: each operation's security
    also lists the empty requirement (OpenAPI's "no credentials needed"), so clients
    generated from the document do not insist on one, while /docs keeps its Authorize
    button for servers that do."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation["security"].append({})


def _close_multipart_forms(schema: dict[str, Any]) -> None:
    """Every multipart route checks its fields with ``params.form_fields`` (one it does not
    take is a 422 naming it, as an unknown key of a JSON body is), but the form's schema
    that FastAPI writes allows any other field: it says so instead."""
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("multipart/form-data", {}).get("schema", {})
            name = form.get("$ref", "").rpartition("/")[2]
            if name in components:
                components[name]["additionalProperties"] = False


#: The bounds FastAPI's OpenAPI model holds as floats.
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _write_integer_bounds_as_integers(node: Any) -> None:
    """FastAPI's OpenAPI model stores a request body's bounds as floats (an age's
    ``maximum: 130.0``), which some client generators refuse on an integer, and past
    2**53 a float cannot hold the bound: the database's largest integer (an id's
    ``le``) became ``9.223372036854776e+18``, 2**63, one more than the API takes. Each
    integer's bounds are written back as integers, that one as :data:`DB_INT_MAX`."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = max(-DB_INT_MAX - 1, min(DB_INT_MAX, int(value)))
        for value in node.values():
            _write_integer_bounds_as_integers(value)
    elif isinstance(node, list):
        for value in node:
            _write_integer_bounds_as_integers(value)
