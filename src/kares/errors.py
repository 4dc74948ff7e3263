"""Errors as RFC 9457 problem documents with a stable machine-readable ``code``.

A service raises ``Problem(status, code, detail)``; the handlers here turn it
(and every framework error, and anything unexpected) into
``application/problem+json``. Codes are part of the API contract: apps branch
on them, so they never change meaning.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

log = logging.getLogger("kares.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class ProblemDoc(BaseModel):
    """An error: ``code`` is stable and machine-readable, ``detail`` is for people."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Bad Request"])
    status: int = Field(examples=[400])
    code: str = Field(examples=["phone.invalid"])
    detail: str = Field(examples=["That is not a valid phone number."])
    errors: list[dict[str, Any]] | None = None


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    423: "Locked",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def status_title(status: int) -> str:
    """The HTTP reason phrase a problem document carries as its ``title``."""
    return _TITLES.get(status, "Error")


def allowed_methods(req: Request) -> str:
    """The ``Allow`` header of a 405: the methods of every route on this path.
    (Starlette names only those of the first route that matched the path, and
    a path's methods are often spread over several routes.)"""
    methods: set[str] = set()
    for route in _routes(req.app.routes):
        if getattr(route, "methods", None) and route.matches(req.scope)[0] != Match.NONE:
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


def _routes(routes: list[Any]) -> list[Any]:
    """The app's routes, with included routers expanded."""
    try:  # FastAPI >= 0.16x includes routers lazily
        from fastapi.routing import _iter_included_route_candidates

        return list(_iter_included_route_candidates(routes))
    except ImportError:  # pragma: no cover - older FastAPI
        return list(routes)


def retry_after(seconds: float) -> dict[str, str]:
    """The ``Retry-After`` header for a refusal that ends in ``seconds``."""
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


def _problem_doc(status: int, code: str, detail: str, extra: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    body.update(extra)
    return body


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = _problem_doc(status, code, detail, extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def problem_body(status: int, code: str, detail: str, **extra: Any) -> bytes:
    """The bytes of a problem document, as :func:`problem_response` sends them."""
    return JSONResponse(None).render(_problem_doc(status, code, detail, extra))


def responses(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route: each status with the codes it can carry."""
    by_status: dict[int, list[str]] = {}
    for status, code in codes:
        by_status.setdefault(status, []).append(code)
    by_status.setdefault(422, []).append("request.invalid")
    out: dict[int | str, dict[str, Any]] = {}
    for status, names in sorted(by_status.items()):
        out[status] = {
            "model": ProblemDoc,
            "description": f"{_TITLES.get(status, 'Error')}; code: "
            + ", ".join(sorted(set(names))),
            "content": {
                PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDoc"}}
            },
        }
    return out


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        out.append(
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
        )
    return out


def _client_went_away(req: Request) -> Response:
    # the client went away before its request was read: nobody is there to answer
    # and nothing is wrong on our side, so one line, no traceback
    log.info("client went away mid-request: %s %s", req.method, req.url.path)
    return Response(status_code=499)


# A NUL character in a path, query or text body (app.BodyLimit, kares.lanes)
NUL_CODE = "request.nul_character"
NUL_DETAIL = "Text may not contain NUL characters."


def http_problem(exc: StarletteHTTPException) -> tuple[int, str, str, dict[str, str]]:
    """Status, code, detail and headers of the problem answering a framework error."""
    code = {
        404: "not_found",
        405: "method_not_allowed",
        400: "request.bad",
        413: "request.too_large",
    }.get(exc.status_code, f"http.{exc.status_code}")
    if exc.status_code == 400 and exc.detail == NUL_DETAIL:
        code = NUL_CODE
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
    headers = dict(getattr(exc, "headers", None) or {})
    return exc.status_code, code, detail, headers


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClientDisconnect)
    async def _gone(req: Request, _exc: ClientDisconnect) -> Response:
        return _client_went_away(req)

    @app.exception_handler(Problem)
    async def _problem(_req: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_validation_errors(exc.errors())
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                400, "request.malformed_json", "The request body is not valid JSON."
            )
        return problem_response(
            422, "request.invalid", "The request does not have the expected shape.", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, ClientDisconnect):
            # FastAPI turns a body that stopped coming into "400, error parsing the body"
            return _client_went_away(req)
        status, code, detail, headers = http_problem(exc)
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(req)
        return problem_response(status, code, detail, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %s", type(exc).__name__)
        return problem_response(500, "internal", "Something went wrong on our side.")
