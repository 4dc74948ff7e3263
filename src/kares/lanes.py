"""Lanes: a few exact routes served beside the framework, for what devices call all day.

A tracking app posts a location every few seconds for every member of every
family, and each post is small: FastAPI's routing, its dependency solving and
the request and response objects it builds cost more than the post's own work
(``bench/README.md``, "bench_owntracks.py"). A lane is a plain coroutine that
takes the request's scope and body and returns its status, headers and body;
:class:`Lanes` serves the lanes it holds, by exact method and path, and passes
every other request on. It sits inside the body limit and the security
headers, so a lane's request is bounded and its answer dressed like any other.

A lane is registered by the module that owns the wire format (a protocol
module), next to the documented route it serves: the route stays in the
OpenAPI document and declares its guard; the lane is how it is served. What a
lane raises is answered as the framework would: a :class:`~kares.errors.Problem`
as its problem document, a body that was refused while it streamed in (413, a
NUL character) as the framework's own answer, a client that went away with one
info line; anything else is the server error handler's, as on any route.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from kares.errors import PROBLEM_MEDIA_TYPE, Problem, http_problem, problem_body

log = logging.getLogger("kares.lanes")

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]
Lane = Callable[[Scope, bytes], Awaitable[Reply]]

_JSON = b"application/json"


def json_reply(content: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A 200 JSON answer (encoded as the framework's ``JSONResponse`` does)."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return 200, [(b"content-type", _JSON), *_encoded(headers)], body.encode("utf-8")


def _encoded(headers: Mapping[str, str] | None) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]


def _problem(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None, **extra: Any
) -> Reply:
    hs = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), *_encoded(headers)]
    return status, hs, problem_body(status, code, detail, **extra)


class _Gone(Exception):
    """The client went away before its body was read."""


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class Lanes:
    """Serves the lanes registered for exact (method, path) pairs; passes the rest on."""

    def __init__(self, app: ASGIApp, lanes: Mapping[tuple[str, str], Lane]) -> None:
        self.app = app
        self.lanes = dict(lanes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = (
            self.lanes.get((scope.get("method", ""), scope["path"]))
            if scope["type"] == "http"
            else None
        )
        if lane is None:
            await self.app(scope, receive, send)
            return
        try:
            raw = await _body(receive)
            status, headers, body = await lane(scope, raw)
        except _Gone:
            log.info("client went away mid-request: %s %s", scope["method"], scope["path"])
            return
        except Problem as exc:
            status, headers, body = _problem(
                exc.status, exc.code, exc.detail, exc.headers, **exc.extra
            )
        except StarletteHTTPException as exc:  # refused while it streamed in (app.BodyLimit)
            status, code, detail, extra_headers = http_problem(exc)
            status, headers, body = _problem(status, code, detail, extra_headers)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
