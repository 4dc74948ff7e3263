"""Matrix errors: ``{"errcode", "error"}`` with the status the spec gives.

Every route of the Matrix API runs through :class:`MatrixRoute`, which turns
what the rest of Kares raises (a :class:`~kares.errors.Problem` with a stable
code, a request that does not parse) into the Matrix form, so a Matrix client
never sees an ``application/problem+json`` document. The guard's refusals map
as Synapse's do: no token 401 ``M_MISSING_TOKEN``, a revoked or unknown one 401
``M_UNKNOWN_TOKEN``, a missing consent 403 ``M_CONSENT_NOT_GIVEN`` with a
``consent_uri``, any other refusal 403 ``M_FORBIDDEN``; limits 429
``M_LIMIT_EXCEEDED`` with ``retry_after_ms``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kares.errors import Problem

# what a Kares code becomes (status, errcode) where the status alone does not say
_CODES: dict[str, tuple[int, str]] = {
    "auth.required": (401, "M_MISSING_TOKEN"),
    "auth.invalid_token": (401, "M_UNKNOWN_TOKEN"),
    "auth.invalid_credentials": (403, "M_FORBIDDEN"),
    "conversation.not_found": (403, "M_FORBIDDEN"),
    "conversation.no_shared_family": (403, "M_FORBIDDEN"),
    "conversation.closed": (403, "M_FORBIDDEN"),
    "message.not_sender": (403, "M_FORBIDDEN"),
    "message.recall_expired": (403, "M_FORBIDDEN"),
    "attachment.used": (400, "M_INVALID_PARAM"),
    "auth.locked": (429, "M_LIMIT_EXCEEDED"),
    "phone.invalid": (400, "M_INVALID_PARAM"),
    "phone.not_mobile": (400, "M_INVALID_PARAM"),
    "media.unsupported_type": (400, "M_UNKNOWN"),
    "media.empty": (400, "M_UNKNOWN"),
    "request.too_large": (413, "M_TOO_LARGE"),
    "request.malformed_json": (400, "M_NOT_JSON"),
}
_BY_STATUS = {
    400: "M_BAD_JSON",
    401: "M_UNKNOWN_TOKEN",
    403: "M_FORBIDDEN",
    404: "M_NOT_FOUND",
    405: "M_UNRECOGNIZED",
    409: "M_UNKNOWN",
    413: "M_TOO_LARGE",
    415: "M_UNKNOWN",
    422: "M_BAD_JSON",
    429: "M_LIMIT_EXCEEDED",
}


class MatrixError(Exception):
    def __init__(self, status: int, errcode: str, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status, self.errcode, self.error, self.extra = status, errcode, error, extra


def forbidden(error: str = "You are not allowed to do that.") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", error)


def not_found(error: str = "Not found.") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", error)


def bad_json(error: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", error)


def invalid_param(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", error)


def unrecognized(status: int = 404) -> MatrixError:
    return MatrixError(status, "M_UNRECOGNIZED", "Unrecognized request")


def response(exc: MatrixError) -> JSONResponse:
    body = {"errcode": exc.errcode, "error": exc.error, **exc.extra}
    headers = (
        {"Retry-After": str(max(1, -(-exc.extra["retry_after_ms"] // 1000)))}
        if ("retry_after_ms" in exc.extra)
        else None
    )
    return JSONResponse(body, status_code=exc.status, headers=headers)


def from_problem(exc: Problem, request: Request) -> MatrixError:
    """A Kares problem in Matrix terms."""
    if exc.code.startswith("consent.") or exc.code == "guardian.consent_required":
        return MatrixError(
            403,
            "M_CONSENT_NOT_GIVEN",
            exc.detail,
            consent_uri=f"{str(request.base_url).rstrip('/')}/privacy/policy",
        )
    status, errcode = _CODES.get(exc.code, (0, ""))
    if not errcode:
        if exc.status >= 500:
            status, errcode = exc.status, "M_UNKNOWN"
        elif exc.code.startswith("auth.") and exc.status == 401:
            status, errcode = 401, "M_UNKNOWN_TOKEN"
        else:
            status, errcode = exc.status, _BY_STATUS.get(exc.status, "M_UNKNOWN")
            if status == 422:
                status = 400
    extra: dict[str, Any] = {}
    if errcode == "M_LIMIT_EXCEEDED":
        retry = (exc.headers or {}).get("Retry-After")
        seconds = int(retry) if retry is not None and str(retry).isdigit() else 60
        extra["retry_after_ms"] = seconds * 1000
    if errcode == "M_UNKNOWN_TOKEN":
        extra["soft_logout"] = False
    return MatrixError(status, errcode, exc.detail, **extra)


def _token_from_query(request: Request) -> None:
    """``?access_token=`` (deprecated by the spec, still sent by clients such as
    matrix-nio) as the ``Authorization`` header the guard reads."""
    token = request.query_params.get("access_token")
    if not token:
        return
    headers = request.scope["headers"]
    if any(k == b"authorization" for k, _ in headers):
        return
    request.scope["headers"] = [*headers, (b"authorization", f"Bearer {token}".encode())]
    request.__dict__.pop("_headers", None)


class MatrixRoute(APIRoute):
    """A route whose errors, its guard's included, answer in the Matrix form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def app(request: Request) -> Response:
            _token_from_query(request)
            try:
                return await handler(request)
            except MatrixError as exc:
                return response(exc)
            except Problem as exc:
                return response(from_problem(exc, request))
            except RequestValidationError as exc:
                if any(e.get("type") == "json_invalid" for e in exc.errors()):
                    return response(MatrixError(400, "M_NOT_JSON", "Content not JSON."))
                return response(bad_json("The request does not have the expected shape."))
            except StarletteHTTPException as exc:
                if exc.status_code == 405:
                    return response(unrecognized(405))
                code = _BY_STATUS.get(exc.status_code, "M_UNKNOWN")
                return response(MatrixError(exc.status_code, code, str(exc.detail)))

        return app


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or 400 ``M_NOT_JSON`` / ``M_BAD_JSON``."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        got = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON.") from exc
    if not isinstance(got, dict):
        raise bad_json("The content is not a JSON object.")
    return got
