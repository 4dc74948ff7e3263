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

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kares.netinfo import client_ip
from kares.runtime import Runtime

SESSION_KEY = "kares.db_session"


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


def request_ip(conn: HTTPConnection, rt: Runtime) -> str:
    """The client's address, believing ``X-Forwarded-For`` only from trusted proxies."""
    peer = conn.client.host if conn.client else None
    return client_ip(peer, conn.headers.get("x-forwarded-for"), rt.settings.trusted_proxies)
