"""Who is calling: FastAPI dependencies that resolve the caller's session.

Apps, watches and scripts send ``Authorization: Bearer kares_...``; the web
portal sends the HttpOnly session cookie. A cookie-authenticated request
that changes something must also carry the ``X-Kares-CSRF`` header, which a
cross-site form cannot send (and a cross-site script cannot without a CORS
preflight we never grant).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kares.accounts import service
from kares.accounts.models import Account, Session
from kares.accounts.schemas import DeviceInfo
from kares.errors import Problem
from kares.netinfo import client_ip
from kares.runtime import Runtime

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The refusals every signed-in route can give, for its OpenAPI ``responses``.
AUTH_ERRORS = ((401, "auth.required"), (401, "auth.invalid_token"), (403, "auth.csrf"))
CSRF_HEADER = "X-Kares-CSRF"


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    rt: Runtime = request.app.state.runtime
    async with rt.db.sessions() as s:
        yield s


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
DbDep = Annotated[AsyncSession, Depends(get_db)]


def request_ip(request: Request, rt: Runtime) -> str:
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.get("x-forwarded-for"), rt.settings.trusted_proxies)


def environment(
    request: Request, rt: Runtime, device: DeviceInfo, client: str
) -> service.Environment:
    return service.Environment(
        ip=request_ip(request, rt),
        user_agent=request.headers.get("user-agent"),
        device=device,
        client=client,
    )


@dataclass(frozen=True)
class Caller:
    account: Account
    session: Session
    via_cookie: bool


_UNAUTH = {"WWW-Authenticate": 'Bearer realm="kares"'}


async def current_caller(request: Request, rt: RuntimeDep, s: DbDep) -> Caller:
    """The signed-in caller; resolved once per request (the guard and a handler
    may both ask)."""
    cached = getattr(request.state, "kares_caller", None)
    if cached is not None:
        return cached
    caller = await _resolve_caller(request, rt, s)
    request.state.kares_caller = caller
    return caller


async def _resolve_caller(request: Request, rt: Runtime, s: AsyncSession) -> Caller:
    header = request.headers.get("authorization")
    token: str | None = None
    via_cookie = False
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(
                401, "auth.invalid_token", "Use 'Authorization: Bearer <token>'.", headers=_UNAUTH
            )
        token = value.strip()
    else:
        token = request.cookies.get(rt.settings.session_cookie_name)
        via_cookie = token is not None
    if not token:
        raise Problem(401, "auth.required", "Sign in first.", headers=_UNAUTH)
    found = await service.authenticate(s, rt, token)
    if found is None:
        raise Problem(
            401,
            "auth.invalid_token",
            "This session has ended or the token is not valid. Sign in again.",
            headers=_UNAUTH,
        )
    if via_cookie and request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER):
        raise Problem(
            403, "auth.csrf", f"Requests from the portal must carry the {CSRF_HEADER} header."
        )
    account, sess = found
    return Caller(account=account, session=sess, via_cookie=via_cookie)


CallerDep = Annotated[Caller, Depends(current_caller)]
