"""Who is calling, on any connection.

Apps, watches and scripts send ``Authorization: Bearer kares_...``; tracking
apps send HTTP Basic (a tracker's user name and secret); the web portal sends
the HttpOnly session cookie. :func:`read_credentials` reads them from any
headers, :func:`resolve` turns them into a :class:`Caller`, and
:func:`caller_for_session` does the same for a session the server already
holds (a watch's TCP connection). The FastAPI dependency
:func:`current_caller` wires them to an HTTP request or a WebSocket.

A cookie-authenticated request that changes something must also carry the
``X-Kares-CSRF`` header, which a cross-site form cannot send (and a
cross-site script cannot without a CORS preflight we never grant). A browser
cannot put headers on a WebSocket handshake, so a cookie opens one only from
the server's own origin.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem
from kares.identity import service
from kares.identity.models import Account, Session
from kares.runtime import Runtime

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The refusals every signed-in route can give, for its OpenAPI ``responses``.
AUTH_ERRORS = ((401, "auth.required"), (401, "auth.invalid_token"), (403, "auth.csrf"))
# what a route that sends a one-time code by SMS may answer besides its own errors
SEND_CODE_ERRORS = (
    (429, "otp.cooldown"),
    (429, "otp.number_limit"),
    (429, "otp.ip_limit"),
    (502, "sms.unavailable"),
)
CSRF_HEADER = "X-Kares-CSRF"
TRACKER_KIND = service.TRACKER_KIND


@dataclass(frozen=True)
class Caller:
    account: Account
    session: Session
    via_cookie: bool = False


@dataclass(frozen=True)
class Credentials:
    token: str
    scheme: Literal["bearer", "basic", "cookie"]
    user: str | None = None  # the user name of a Basic credential


_UNAUTH = {"WWW-Authenticate": 'Bearer realm="kares"'}
# tracking apps send Basic: offer both schemes (Bearer first: it is what a person uses)
_UNAUTH_BASIC = {"WWW-Authenticate": 'Bearer realm="kares", Basic realm="kares", charset="UTF-8"'}


def _basic_password(value: str) -> tuple[str, str] | None:
    """User and password of an HTTP Basic credential (tracking apps use it)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep and password else None


def read_credentials(
    headers: Mapping[str, str], cookies: Mapping[str, str], cookie_name: str
) -> Credentials:
    """The credentials a connection carries, or a 401 problem."""
    header = headers.get("authorization")
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
        return Credentials(pair[1], "basic", pair[0])
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(
                401, "auth.invalid_token", "Use 'Authorization: Bearer <token>'.", headers=_UNAUTH
            )
        return Credentials(value.strip(), "bearer")
    token = cookies.get(cookie_name)
    if not token:
        raise Problem(401, "auth.required", "Sign in first.", headers=_UNAUTH)
    return Credentials(token, "cookie")


def steady_credentials(headers: Mapping[str, str]) -> Credentials | None:
    """A request's bearer or Basic credential when it reads cleanly; None for
    anything :func:`read_credentials` would answer with a problem or a cookie."""
    try:
        creds = read_credentials(headers, {}, "")
    except Problem:
        return None
    return creds if creds.scheme != "cookie" else None


def lane_bearer(scope: MutableMapping[str, Any]) -> Credentials | None:
    """The bearer credential of a request a lane may serve in its steady state
    (``kares.lanes``): None with a cookie (whose requests answer to the CSRF
    rules), with a token in the query string (``?access_token=``, which Matrix
    clients may send) or with any credential that does not read cleanly; the
    route answers those."""
    if b"access_token" in scope.get("query_string", b""):
        return None
    headers = Headers(scope=scope)
    if "cookie" in headers:
        return None
    creds = steady_credentials(headers)
    return creds if creds is not None and creds.scheme == "bearer" else None


async def resolve(s: AsyncSession, rt: Runtime, creds: Credentials) -> Caller:
    """The live session behind the credentials, or a 401 problem."""
    basic = creds.scheme == "basic"
    found = await service.authenticate(s, rt, creds.token)
    if found is not None and basic and found[1].kind != TRACKER_KIND:
        found = None
    if found is None:
        raise Problem(
            401,
            "auth.invalid_token",
            "This session has ended or the token is not valid. Sign in again.",
            headers=_UNAUTH_BASIC if basic else _UNAUTH,
        )
    account, sess = found
    return Caller(account=account, session=sess, via_cookie=creds.scheme == "cookie")


async def caller_for_session(s: AsyncSession, session_id: str) -> Caller | None:
    """The caller behind a session the server holds itself (a paired watch's TCP
    connection): None once it is revoked or expired, or its account cannot use it."""
    found = await service.live_session(s, session_id)
    if found is None:
        return None
    account, sess = found
    return Caller(account=account, session=sess)


def _same_origin(conn: HTTPConnection) -> bool:
    origin = conn.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == conn.headers.get("host")


def _forged(conn: HTTPConnection) -> bool:
    """Whether a cookie-authenticated connection may come from another site."""
    if conn.scope["type"] == "websocket":
        return not _same_origin(conn)
    return unsafe_without_csrf(conn.scope["method"], conn.headers)


def unsafe_without_csrf(method: str, headers: Mapping[str, str]) -> bool:
    """A request that changes something and lacks the CSRF header (which a
    cross-site form cannot send)."""
    return method not in SAFE_METHODS and not headers.get(CSRF_HEADER.lower())


async def request_caller(
    s: AsyncSession,
    rt: Runtime,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    forged: Callable[[], bool],
) -> Caller:
    """The signed-in caller of a request, from its headers and cookies; ``forged``
    says whether a cookie-authenticated one may come from another site."""
    creds = read_credentials(headers, cookies, rt.settings.session_cookie_name)
    caller = await resolve(s, rt, creds)
    if caller.via_cookie and forged():
        raise Problem(
            403, "auth.csrf", f"Requests from the portal must carry the {CSRF_HEADER} header."
        )
    return caller


async def current_caller(conn: HTTPConnection, rt: RuntimeDep, s: DbDep) -> Caller:
    """The signed-in caller of an HTTP request or a WebSocket; resolved once per
    connection (the guard and a handler may both ask)."""
    cached: Caller | None = getattr(conn.state, "kares_caller", None)
    if cached is not None:
        return cached
    caller = await request_caller(s, rt, conn.headers, conn.cookies, lambda: _forged(conn))
    conn.state.kares_caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
