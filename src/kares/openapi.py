"""The OpenAPI document as the truth, and the pages that show it.

Routes declare what is theirs (``responses=errors.responses(...)``, the guard
adds its refusals); :func:`install` adds, once, what every route shares:

- the refusals that come before any handler runs (NUL characters in a path,
  query or body: 400 ``request.nul_character``; a body that cannot be read:
  400 ``request.bad`` / ``request.malformed_json``, 413 ``request.too_large``;
  a request of the wrong shape: 422 ``request.invalid``);
- for every error status, the exact ``code`` values it can carry (an ``enum``
  on the problem document's ``code``), so a client, and schemathesis, can
  check them;
- on every plain string a request can carry, the pattern that says what the
  code enforces: no NUL character (``BodyLimit`` in app.py refuses them).

:func:`install_docs` serves Swagger UI at ``/docs`` from an installed
package's files, so the page works without the internet.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

from kares.errors import PROBLEM_MEDIA_TYPE, ProblemDoc, status_title

# What a string may hold: anything but NUL (refused before any handler runs).
NO_NUL = r"^[^\u0000]*$"

# Refusals every route can give, before its handler runs.
EVERY_ROUTE = ((400, "request.nul_character"), (422, "request.invalid"))
WITH_A_BODY = ((400, "request.bad"), (413, "request.too_large"))
WITH_JSON = ((400, "request.malformed_json"),)

_REF = "#/components/schemas/ProblemDoc"


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the refined document (built once, like FastAPI's)."""
    base = app.openapi
    refined: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        spec = base()
        if not refined or refined[0] is not spec:
            refine(spec)
            refined[:] = [spec]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def codes_of(response: dict[str, Any]) -> list[str]:
    """The codes a response's description lists ("Not Found; code: a, b")."""
    _, sep, names = str(response.get("description", "")).partition("code: ")
    return [n.strip() for n in names.split(",") if n.strip()] if sep else []


def refine(spec: dict[str, Any]) -> None:
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    if "ProblemDoc" not in components:
        components["ProblemDoc"] = ProblemDoc.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            _refine_operation(op)
            for param in op.get("parameters", []):
                _forbid_nul(param.get("schema", {}))
            for name, media in op.get("requestBody", {}).get("content", {}).items():
                if "json" in name:  # a file (GPX, an image) is read as it is
                    _forbid_nul(media.get("schema", {}))
    for schema in components.values():
        _forbid_nul(schema)
    _constraint_names(spec)


# pydantic names a bound by its own name ("ge") where it cannot draw it through a
# validator inside a union (``Count | None = Field(ge=0)``: kares.fields.Count
# wraps the integer check); the model enforces it, the document says it as JSON
# Schema does
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _constraint_names(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _constraint_names(item)
    elif isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            for name, json_name in _BOUNDS.items():
                if name in node:
                    node[json_name] = node.pop(name)
        for key, value in node.items():
            if key not in ("examples", "default", "enum", "const", "example"):
                _constraint_names(value)


def _refine_operation(op: dict[str, Any]) -> None:
    for response in op.get("responses", {}).values():
        stream = response.get("content", {}).get("text/event-stream", {})
        if "itemSchema" in stream:
            # an event stream is described event by event (OpenAPI 3.2's itemSchema);
            # FastAPI also calls the whole body a string, which tools then read as
            # the schema of the list of events
            stream.pop("schema", None)
    shared = list(EVERY_ROUTE)
    body = op.get("requestBody", {}).get("content", {})
    if body:
        shared += WITH_A_BODY
        if any("json" in media for media in body):
            shared += WITH_JSON
    responses: dict[str, Any] = op.setdefault("responses", {})
    by_status: dict[str, list[str]] = {}
    for status, response in responses.items():
        # a refusal declared with errors.responses() names its codes; a response
        # with a body of its own (/readyz's 503) is no problem document
        if status.isdigit() and int(status) >= 400 and codes_of(response):
            by_status[status] = codes_of(response)
    for status_code, code in shared:
        by_status.setdefault(str(status_code), []).append(code)
    for status, found in by_status.items():
        names = sorted(set(found))
        response = responses.setdefault(status, {})
        title = status_title(int(status))
        response["description"] = f"{title}; code: {', '.join(names)}" if names else title
        schema: dict[str, Any] = {"$ref": _REF}
        if names:
            schema = {"allOf": [{"$ref": _REF}], "properties": {"code": {"enum": names}}}
        # problems are answered as application/problem+json only
        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": schema}}
    op["responses"] = dict(sorted(responses.items()))


def _forbid_nul(schema: Any) -> None:
    """Add the no-NUL pattern to every plain string in a schema (one without a
    pattern, format, enum or const of its own), walking into its parts."""
    if isinstance(schema, list):
        for item in schema:
            _forbid_nul(item)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    plain = not any(k in schema for k in ("pattern", "format", "enum", "const"))
    if plain and (kind == "string" or (isinstance(kind, list) and "string" in kind)):
        schema["pattern"] = NO_NUL
    if isinstance(schema.get("additionalProperties"), dict) and "propertyNames" not in schema:
        # a map's keys are strings of the request too
        schema["propertyNames"] = {"pattern": NO_NUL}
    for key, value in schema.items():
        if key in ("properties", "$defs", "patternProperties"):
            for sub in value.values() if isinstance(value, dict) else ():
                _forbid_nul(sub)
        elif isinstance(value, dict | list) and key not in ("examples", "default", "enum"):
            _forbid_nul(value)


DOCS_ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the files of the installed ``swagger-ui-bundle-v2``
    package (no CDN: the page works offline)."""
    from swagger_ui_bundle import swagger_ui_path

    oauth2 = "/docs/oauth2-redirect"

    async def docs(req: Request) -> HTMLResponse:
        root = req.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=root + oauth2,
        )

    async def redirect(_req: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.add_route(oauth2, redirect, methods=["GET"], include_in_schema=False)
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
