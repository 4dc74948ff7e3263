"""Who is calling: FastAPI dependencies that resolve the caller's session.

Apps, watches and scripts send ``Authorization: Bearer kares_...``; the web
portal sends the HttpOnly session cookie. A cookie-authenticated request
that changes something must also carry the ``X-Kares-CSRF`` header, which a
cross-site form cannot send (and a cross-site script cannot without a CORS
preflight we never grant).
"""

from __future__ import annotations

import base64
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
# sessions of this kind are tracker credentials (OwnTracks, Overland, ...):
# the guard lets them call only the routes that upload locations
TRACKER_KIND = "tracker"


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
# tracking apps send Basic: offer both schemes (Bearer first: it is what a person uses)
_UNAUTH_BASIC = {"WWW-Authenticate": 'Bearer realm="kares", Basic realm="kares", charset="UTF-8"'}


async def current_caller(request: Request, rt: RuntimeDep, s: DbDep) -> Caller:
    """The signed-in caller; resolved once per request (the guard and a handler
    may both ask)."""
    cached = getattr(request.state, "kares_caller", None)
    if cached is not None:
        return cached
    caller = await _resolve_caller(request, rt, s)
    request.state.kares_caller = caller
    return caller


def _basic_password(value: str) -> tuple[str, str] | None:
    """User and password of an HTTP Basic credential (tracking apps use it)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep and password else None


async def _resolve_caller(request: Request, rt: Runtime, s: AsyncSession) -> Caller:
    header = request.headers.get("authorization")
    token: str | None = None
    via_cookie = False
    basic = False
    if header and header[:6].lower() == "basic ":
        # tracker credentials only: the password is the credential's secret
        pair = _basic_password(header[6:])
        if pair is None:
            raise Problem(
                401,
                "auth.invalid_token",
                "Use 'Authorization: Basic' with the tracker's user name and secret.",
                headers=_UNAUTH_BASIC,
            )
        request.state.basic_user = pair[0]
        token, basic = pair[1], True
    elif header:
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
    if found is not None and basic and found[1].kind != TRACKER_KIND:
        found = None
    if found is None:
        raise Problem(
            401,
            "auth.invalid_token",
            "This session has ended or the token is not valid. Sign in again.",
            headers=_UNAUTH_BASIC if basic else _UNAUTH,
        )
    if via_cookie and request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER):
        raise Problem(
            403, "auth.csrf", f"Requests from the portal must carry the {CSRF_HEADER} header."
        )
    account, sess = found
    return Caller(account=account, session=sess, via_cookie=via_cookie)


CallerDep = Annotated[Caller, Depends(current_caller)]
