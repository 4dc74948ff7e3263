"""Third-party sign-in adapters: WeChat OAuth2 and Sign in with Apple.

Both reach the provider over real HTTP at configurable base URLs, so tests
run a fake provider on loopback and this code runs unchanged.

Only the public profile the user authorised is taken (policy 1.1): from
WeChat the nickname and avatar (and only when the user granted the
``snsapi_userinfo`` scope); from Apple the stable subject and, on the first
authorisation, the name the app passes on. Apple's e-mail claim is never
read or stored: sign-in does not need it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from jwt import PyJWK

from kares import clock
from kares.config import Settings
from kares.errors import Problem

log = logging.getLogger("kares.gateways.oauth")


# Column sizes the profile is stored in (external_identities, auth_tickets).
MAX_SUBJECT = 255
MAX_NICKNAME = 64
MAX_AVATAR_URL = 512


def clean_nickname(raw: object) -> str | None:
    """A provider's display name fit to be an account name: no control characters
    (the rule PATCH /me enforces), trimmed, at most 64 characters; None if nothing is left."""
    if not isinstance(raw, str):
        return None
    text = "".join(c for c in raw if not (ord(c) < 32 or 0x7F <= ord(c) < 0xA0))
    return text.strip()[:MAX_NICKNAME].strip() or None


@dataclass(frozen=True)
class ExternalProfile:
    provider: str
    subject: str
    nickname: str | None = None
    avatar_url: str | None = None


# errcodes that blame our configuration, not the user's code: invalid appid,
# invalid appsecret, appid missing, secret missing, caller IP not whitelisted.
WECHAT_SERVER_SIDE_ERRORS = frozenset({40013, 40125, 41002, 41004, 40164, 61004})


def configured(settings: Settings) -> dict[str, bool]:
    """Which third-party sign-in providers this server is set up for."""
    return {
        "wechat": bool(settings.wechat_app_id and settings.wechat_app_secret),
        "apple": bool(settings.apple_client_ids),
    }


_PROVIDER_NAMES = {"wechat": "WeChat sign-in", "apple": "Sign in with Apple"}


def require_configured(settings: Settings, provider: str) -> None:
    """A provider this server is not set up for does not exist here: 404, not an outage."""
    if not configured(settings).get(provider, False):
        raise Problem(
            404,
            "oauth.provider_not_configured",
            f"{_PROVIDER_NAMES[provider]} is not offered by this server; "
            "GET /api/v1/auth/methods lists the ways to sign in here.",
        )


def _unavailable(provider: str, why: str) -> Problem:
    return Problem(
        502, "oauth.provider_unavailable", f"{provider} could not be reached ({why}). Try again."
    )


# --- WeChat ----------------------------------------------------------------


async def wechat_exchange(
    settings: Settings, http: httpx.AsyncClient, code: str
) -> ExternalProfile:
    """Exchange an authorization code for the user's identity and public profile."""
    require_configured(settings, "wechat")
    base = settings.wechat_api_base.rstrip("/")
    token = await _wechat_get(
        http,
        f"{base}/sns/oauth2/access_token",
        {
            "appid": settings.wechat_app_id,
            "secret": settings.wechat_app_secret,
            "code": code,
            "grant_type": "authorization_code",
        },
    )
    openid = token.get("openid")
    access_token = token.get("access_token")
    if not isinstance(openid, str) or not isinstance(access_token, str) or not openid:
        raise Problem(400, "oauth.invalid_code", "WeChat did not accept that authorization code.")
    unionid = token.get("unionid")
    subject = unionid if isinstance(unionid, str) and unionid else openid
    if len(subject) > MAX_SUBJECT:
        raise _unavailable("WeChat", "unexpected reply")
    scopes = str(token.get("scope", "")).split(",")
    nickname = avatar = None
    if "snsapi_userinfo" in scopes:
        info = await _wechat_get(
            http, f"{base}/sns/userinfo", {"access_token": access_token, "openid": openid}
        )
        nickname = clean_nickname(info.get("nickname"))
        url = info.get("headimgurl")
        if isinstance(url, str) and len(url) <= MAX_AVATAR_URL:
            avatar = url or None
    return ExternalProfile("wechat", subject, nickname, avatar)


async def _wechat_get(http: httpx.AsyncClient, url: str, params: dict[str, str]) -> dict[str, Any]:
    try:
        resp = await http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise _unavailable("WeChat", type(exc).__name__) from exc
    if resp.status_code >= 500:
        raise _unavailable("WeChat", f"status {resp.status_code}")
    try:
        body = resp.json()
    except ValueError as exc:
        raise _unavailable("WeChat", "reply was not JSON") from exc
    if not isinstance(body, dict):
        raise _unavailable("WeChat", "unexpected reply")
    errcode = body.get("errcode")
    if errcode in WECHAT_SERVER_SIDE_ERRORS:
        log.error("WeChat refused our app credentials (errcode %s): check KARES_WECHAT_*", errcode)
        # configured, but with credentials WeChat refuses: this server is broken
        raise Problem(
            502,
            "oauth.provider_misconfigured",
            "WeChat sign-in is not working on this server right now. Try another way to sign in.",
        )
    if errcode not in (None, 0):
        # 40029 invalid code, 40163 code been used, 42003 code expired, ...
        raise Problem(
            400,
            "oauth.invalid_code",
            f"WeChat refused the authorization code (errcode {errcode}).",
        )
    return body


def wechat_avatar_allowed(settings: Settings, url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # e.g. a port out of range
        return False
    host = parts.hostname or ""
    if port and f"{host}:{port}" in settings.wechat_avatar_hosts:
        return parts.scheme == settings.wechat_avatar_scheme
    return parts.scheme == settings.wechat_avatar_scheme and host in settings.wechat_avatar_hosts


async def fetch_avatar(http: httpx.AsyncClient, url: str, max_bytes: int) -> bytes | None:
    """Download a provider avatar, capped at ``max_bytes``; None on any failure."""
    try:
        async with http.stream("GET", url) as resp:
            if resp.status_code != 200:
                return None
            buf = bytearray()
            async for chunk in resp.aiter_bytes():
                buf += chunk
                if len(buf) > max_bytes:
                    return None
            return bytes(buf)
    except (httpx.HTTPError, httpx.InvalidURL):
        log.info("provider avatar download failed")
        return None


# --- Sign in with Apple ------------------------------------------------------


class AppleKeys:
    """Apple's JWKS, cached; refetched when a token names an unknown key."""

    def __init__(self) -> None:
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = 0.0
        self._url = ""

    async def get(self, settings: Settings, http: httpx.AsyncClient, kid: str) -> PyJWK | None:
        now = time.monotonic()
        stale = now - self._fetched_at > settings.apple_jwks_cache_seconds
        if (
            self._url != settings.apple_jwks_url
            or stale
            or (kid not in self._keys and now - self._fetched_at > 10)
        ):
            await self._refresh(settings, http)
        return self._keys.get(kid)

    async def _refresh(self, settings: Settings, http: httpx.AsyncClient) -> None:
        try:
            resp = await http.get(settings.apple_jwks_url)
            resp.raise_for_status()
            doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            if self._keys and self._url == settings.apple_jwks_url:
                log.warning("Apple JWKS refresh failed; keeping cached keys")
                return
            raise _unavailable("Apple", type(exc).__name__) from exc
        keys: dict[str, PyJWK] = {}
        for entry in doc.get("keys", []) if isinstance(doc, dict) else []:
            try:
                key = PyJWK.from_dict(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, KeyError, TypeError, ValueError):
                continue
            if key.key_id:
                keys[key.key_id] = key
        self._keys = keys
        self._fetched_at = time.monotonic()
        self._url = settings.apple_jwks_url


def _bad_token(detail: str) -> Problem:
    return Problem(401, "oauth.invalid_token", f"The Apple ID token was rejected: {detail}.")


def nonce_matches(claim: object, nonce: str) -> bool:
    """Apple puts the app's nonce in the token, hashed (native) or as given (web)."""
    if not isinstance(claim, str):
        return False
    return claim in (nonce, hashlib.sha256(nonce.encode()).hexdigest())


async def apple_verify(
    settings: Settings, http: httpx.AsyncClient, keys: AppleKeys, id_token: str, nonce: str
) -> ExternalProfile:
    """Verify signature (Apple's JWKS), issuer, audience, expiry and nonce."""
    require_configured(settings, "apple")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise _bad_token("not a JWT") from exc
    if header.get("alg") != "RS256":
        raise _bad_token("unexpected signing algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise _bad_token("no key id")
    key = await keys.get(settings, http, kid)
    if key is None:
        raise _bad_token("signed with an unknown key")
    try:
        claims = jwt.decode(
            id_token,
            key=key.key,
            algorithms=["RS256"],
            audience=settings.apple_client_ids,
            issuer=settings.apple_issuer,
            options={
                "require": ["iss", "aud", "exp", "iat", "sub"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise _bad_token("issued for another app") from exc
    except jwt.InvalidIssuerError as exc:
        raise _bad_token("not issued by Apple") from exc
    except jwt.InvalidSignatureError as exc:
        raise _bad_token("bad signature") from exc
    except jwt.PyJWTError as exc:
        raise _bad_token("malformed") from exc
    # Expiry against the service clock (so it is testable), with a small leeway.
    now = clock.utcnow().timestamp()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise _bad_token("malformed time claims")
    if exp < now - 30:
        raise _bad_token("expired")
    if iat > now + 300:
        raise _bad_token("issued in the future")
    if not nonce_matches(claims.get("nonce"), nonce):
        raise _bad_token("nonce does not match")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise _bad_token("no subject")
    return ExternalProfile("apple", sub)
