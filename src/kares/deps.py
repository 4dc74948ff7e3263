"""FastAPI dependencies of the plumbing: the runtime, a database session, the
client's address. Every router uses them; they know no domain.

A request's database session is made the first time a dependency asks for it
and closed by :class:`RequestSessions` as soon as the response starts, before
its body is sent: a streamed response (a live map, later a WebSocket) never
holds a pooled connection while it waits, and an ordinary request pays for a
plain dependency rather than a generator (which FastAPI wraps in an exit
stack and a shielded cancel scope on every request).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, ClassVar, get_args

from fastapi import Depends
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import CoreSchema
from pydantic_core import core_schema as cs
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kares.fields import Count, Time
from kares.netinfo import client_ip
from kares.runtime import Runtime

SESSION_KEY = "kares.db_session"
READ_KEY = "kares.read_body"


async def get_runtime(conn: HTTPConnection) -> Runtime:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool
    rt: Runtime = conn.app.state.runtime
    return rt


async def get_db(conn: HTTPConnection) -> AsyncSession:
    s: AsyncSession | None = conn.scope.get(SESSION_KEY)
    if s is None:
        rt: Runtime = conn.app.state.runtime
        s = conn.scope[SESSION_KEY] = rt.db.sessions()
    return s


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
DbDep = Annotated[AsyncSession, Depends(get_db)]

_STARTS = frozenset(
    {"http.response.start", "websocket.accept", "websocket.close", "websocket.http.response.start"}
)


class RequestSessions:
    """Closes the request's database session when its response starts (or a
    WebSocket is accepted), and at the latest when the request ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def close_then_send(message: Message) -> None:
            if message["type"] in _STARTS:
                await _close(scope)
            await send(message)

        try:
            await self.app(scope, receive, close_then_send)
        finally:
            await _close(scope)


async def _close(scope: Scope) -> None:
    s: AsyncSession | None = scope.pop(SESSION_KEY, None)
    if s is not None:
        await s.close()


async def end_request_session(scope: Scope) -> None:
    """Close the request's database session now, before the response starts: for a
    response that waits before its first byte (a stream queueing for its turn to
    read), so that the wait holds no connection."""
    await _close(scope)


def request_ip(conn: HTTPConnection, rt: Runtime) -> str:
    """The client's address, believing ``X-Forwarded-For`` only from trusted proxies."""
    peer = conn.client.host if conn.client else None
    return client_ip(peer, conn.headers.get("x-forwarded-for"), rt.settings.trusted_proxies)


class JsonModelRoute(APIRoute):
    """A route whose JSON body (one pydantic model) is validated straight from the
    request's bytes by pydantic's own JSON parser, instead of ``json.loads`` and
    then validating the Python objects it built: about half the CPU for a large
    body (a 1,000-fix batch: 3.6 against 6.5 ms). A body that fails goes the
    usual way, so a client sees the same 422 (or JSON error) as on any route.

    A route made with :meth:`reading` first tries its own ``reader`` (bytes ->
    what the endpoint works with, no model objects in between; the endpoint gets
    it from :func:`read_body`). The reader must take no body the model refuses,
    and read what it takes as the model would; whatever it refuses (with a
    ``ValidationError``) goes the model's way, errors included. The endpoint's
    model is still what the OpenAPI document describes."""

    reader: ClassVar[Callable[[bytes], Any] | None] = None

    @classmethod
    def reading(cls, reader: Callable[[bytes], Any]) -> type[JsonModelRoute]:
        return type("JsonReaderRoute", (cls,), {"reader": staticmethod(reader)})

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        field = self.body_field
        model = field.field_info.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handler
        validate = model.model_validate_json
        reader = type(self).reader
        # what FastAPI is handed when the reader took the body: an instance of the
        # model passes its validation as it is (and has no fields to misread)
        read = model.model_construct()

        async def app(request: Request) -> Response:
            async def parsed() -> Any:
                raw = await request.body()
                if reader is not None:
                    try:
                        request.scope[READ_KEY] = reader(raw)
                        return read
                    except ValidationError:
                        pass  # the model decides, with its own answers
                try:
                    return validate(raw)
                except ValidationError:  # FastAPI reads and validates again, with its
                    return json.loads(raw)  # own answers (a 400 for JSON it cannot read)

            request.json = parsed  # type: ignore[method-assign]
            return await handler(request)

        return app


def read_body(conn: HTTPConnection) -> Any:
    """What the route's reader made of the body, or None when the model read it."""
    return conn.scope.get(READ_KEY)


# the request-field rules of kares.fields that call Python for every value
_COUNT = get_args(Count)[-1].func  # 25.0 -> 25, then a strict integer
_ISO_TEXT = get_args(Time)[-1].func  # a time as text, never a number


def pydantic_only(schema: CoreSchema) -> CoreSchema:
    """A copy of a pydantic core schema in which Count, Time and ZonedTime check
    without calling Python: narrower, never wider. Whatever the copy takes, the
    original takes too and reads the same; what only the original takes (25.0 for
    a Count, a time with spaces around it) the copy refuses. For a reader of
    :meth:`JsonModelRoute.reading`, which hands what it refuses to the model."""

    def narrow(x: Any) -> Any:
        if isinstance(x, list):
            return [narrow(v) for v in x]
        if not isinstance(x, dict):
            return x
        kind = x.get("type")
        if kind in ("function-wrap", "function-before"):
            fn = x["function"].get("function")
            if kind == "function-wrap" and fn is _COUNT:
                # a JSON integer as it is; only a float's conversion is left out
                return narrow(x["schema"])
            if kind == "function-before" and fn is _ISO_TEXT:
                # text that starts as a date does (four digits and a dash) can never
                # be a number, which is all _iso_text refuses of a string; then the
                # same parser, on the same str, as after _iso_text (which trims nothing,
                # whatever the model's str_strip_whitespace says)
                text = cs.str_schema(
                    strict=True, pattern=r"^\d{4}-", strip_whitespace=False, to_lower=False
                )
                return cs.chain_schema([text, narrow(x["schema"])])
        return {k: narrow(v) for k, v in x.items()}

    out: CoreSchema = narrow(schema)
    return out
