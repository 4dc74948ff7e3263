"""Lanes: a few exact routes served beside the framework, for what devices call all day.

A tracking app posts a location every few seconds for every member of every
family, and each post is small: FastAPI's routing, its dependency solving and
the request and response objects it builds cost more than the post's own work
(``bench/README.md``, "bench_owntracks.py"). A lane is a plain coroutine that
takes the request's scope and body and returns its status, headers and body;
:class:`Lanes` serves the lanes it holds, by exact method and path, in front
of the framework's middleware (``app.KaresApp``): the app asks it first and
passes every other request on. What the framework's layers do for every
request, it does for a lane's too: the body is bounded, a NUL character is
refused, the security headers are added.

A lane is registered by the module that owns the route it serves (a protocol
module, or a domain's HTTP module), next to that route: the route stays in the
OpenAPI document and declares its guard; the lane is how it is served. A lane's
path is exact (``/owntracks``) or a template whose ``{name}`` parts each stand
for one path segment (``/api/v1/conversations/{conversation_id}/messages``).

A lane may also decline: it returns None, having changed nothing, and the
request goes to the framework with its body handed over again, to be answered
by its route (a lane that serves only a request's steady state, and leaves
every other case to the route that knows them all). What a lane raises is
answered as the framework would: a :class:`~kares.errors.Problem` as its
problem document (a body refused while it streamed in, 413 or a NUL
character, included), a client that went away with one info line, anything
else logged and answered 500 as the framework's error handler answers it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from kares.errors import NUL_CODE, NUL_DETAIL, PROBLEM_MEDIA_TYPE, Problem, problem_body

log = logging.getLogger("kares.lanes")

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]
# a lane answers (a Reply) or declines (None): the framework answers then
Lane = Callable[[Scope, bytes], Awaitable[Reply | None]]

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


@dataclass(frozen=True)
class Declined:
    """A lane declined the request: the framework answers it, with this body
    (already read from the client) handed over again."""

    body: bytes

    def receive(self, receive: Receive) -> Receive:
        """The request's ``receive`` for the framework: the body first, then
        whatever the client sends next (its disconnect)."""
        given = False

        async def again() -> Any:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            return await receive()

        return again


def _template(path: str) -> re.Pattern[str] | None:
    """The pattern of a path template (None for an exact path)."""
    if "{" not in path:
        return None
    parts = re.split(r"(\{[^}/]+\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p))


class Lanes:
    """Serves the lanes registered for (method, path) pairs, the path exact or a
    template, in front of the framework: the app calls :meth:`serve` before its
    middleware stack, so a lane's request passes no framework layer (unless the
    lane declines it). What those layers do for every
    request is done here too: the body is bounded (413) and a NUL character in
    the path, the query or the body is refused (400), the security headers are
    added, and an unexpected error is logged and answered 500 as the framework's
    handler answers it."""

    def __init__(
        self,
        lanes: Mapping[tuple[str, str], Lane],
        *,
        limit: int,
        headers: Headers,
    ) -> None:
        self.lanes: dict[tuple[str, str], Lane] = {}
        self._templates: dict[str, list[tuple[re.Pattern[str], Lane]]] = {}
        for (method, path), lane in lanes.items():
            pat = _template(path)
            if pat is None:
                self.lanes[(method, path)] = lane
            else:
                self._templates.setdefault(method, []).append((pat, lane))
        self.limit = limit
        self.headers = list(headers)

    def get(self, scope: Scope) -> Lane | None:
        """The lane for this request, or None for the framework."""
        if scope["type"] != "http":
            return None
        method, path = scope["method"], scope["path"]
        lane = self.lanes.get((method, path))
        if lane is None:
            for pat, candidate in self._templates.get(method, ()):
                if pat.fullmatch(path):
                    return candidate
        return lane

    async def serve(
        self, lane: Lane, scope: Scope, receive: Receive, send: Send
    ) -> int | Declined | None:
        """Answer the request with ``lane``; the status sent (None: nothing was sent,
        the client went away), or :class:`Declined` when the lane left it to the
        framework (nothing was sent)."""
        try:
            raw = await self._body(scope, receive)
            reply = await lane(scope, raw)
            if reply is None:
                return Declined(raw)
            status, headers, body = reply
        except _Gone:
            log.info("client went away mid-request: %s %s", scope["method"], scope["path"])
            return None
        except Problem as exc:
            status, headers, body = _problem(
                exc.status, exc.code, exc.detail, exc.headers, **exc.extra
            )
        except Exception as exc:
            log.exception("unhandled error: %s", type(exc).__name__)
            status, headers, body = _problem(
                500, "internal", "Something went wrong on our side.", None
            )
        have = {name for name, _ in headers}
        headers.extend(h for h in self.headers if h[0] not in have)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, within the limit and without a NUL character."""
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        query = scope.get("query_string", b"")
        if b"\x00" in raw_path or b"%00" in raw_path or b"\x00" in query or b"%00" in query:
            raise Problem(400, NUL_CODE, NUL_DETAIL)
        too_big = Problem(
            413, "request.too_large", f"Request bodies here may be at most {self.limit} bytes."
        )
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    raise too_big
                break
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            if chunk:
                seen += len(chunk)
                if seen > self.limit:
                    raise too_big
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"\x00" in body or b"\\u0000" in body:
            raise Problem(400, NUL_CODE, NUL_DETAIL)
        return body
