"""FastAPI dependencies of the plumbing: the runtime, a database session, the
client's address. Every router uses them; they know no domain.

``DbDep`` ends its session when the route's function returns, before the
response is sent (FastAPI's ``scope="function"``): a streamed response (a
live map, later a WebSocket) never holds a pooled connection while it waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from kares.netinfo import client_ip
from kares.runtime import Runtime


async def get_runtime(conn: HTTPConnection) -> Runtime:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool
    rt: Runtime = conn.app.state.runtime
    return rt


async def get_db(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    rt: Runtime = conn.app.state.runtime
    async with rt.db.sessions() as s:
        yield s


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
DbDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


def request_ip(conn: HTTPConnection, rt: Runtime) -> str:
    """The client's address, believing ``X-Forwarded-For`` only from trusted proxies."""
    peer = conn.client.host if conn.client else None
    return client_ip(peer, conn.headers.get("x-forwarded-for"), rt.settings.trusted_proxies)
