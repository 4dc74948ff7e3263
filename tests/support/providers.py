"""Fake third-party sign-in providers as real HTTP servers on loopback.

``FakeWeChat`` answers the two WeChat OAuth2 endpoints Kares calls (code ->
access token, access token -> user info) the way the real API does, including
its habit of answering errors with HTTP 200 and an ``errcode``; it also serves
the avatar images its ``headimgurl`` points at.

``FakeAppleID`` publishes a JWKS at ``/auth/keys`` for an RSA key it made and
mints ID tokens like Apple's, with knobs to forge every way a token can be
wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from PIL import Image

from tests.support.fakes import FakeServer, Request, json_reply

Reply = tuple[int, dict[str, str], bytes]


def make_image(
    fmt: str = "PNG", size: tuple[int, int] = (48, 32), color: tuple[int, int, int] = (200, 40, 90)
) -> bytes:
    """A small real image, encoded with Pillow."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


# --- WeChat --------------------------------------------------------------------


@dataclass
class WeChatUser:
    openid: str
    unionid: str | None
    scope: str
    nickname: str
    headimgurl: str


class FakeWeChat(FakeServer):
    """``api.weixin.qq.com`` for the OAuth2 authorization-code flow."""

    TOKEN_PATH = "/sns/oauth2/access_token"
    USERINFO_PATH = "/sns/userinfo"

    def __init__(
        self, app_id: str = "wx0123456789abcdef", app_secret: str = "fake-wechat-secret"
    ) -> None:
        super().__init__()
        self.app_id = app_id
        self.app_secret = app_secret
        self.route("GET", self.TOKEN_PATH, self._access_token)
        self.route("GET", self.USERINFO_PATH, self._userinfo)
        self.reset()

    def reset(self) -> None:
        self.codes: dict[str, WeChatUser] = {}
        self.used_codes: set[str] = set()
        self.tokens: dict[str, WeChatUser] = {}
        self.fail_with: int | None = None  # answer every API call with this status
        self.fail_on: dict[str, int] = {}  # path -> status, to fail one endpoint only
        self.garbage = False  # answer API calls with a non-JSON page
        self.requests.clear()
        for key in [k for k in self.routes if k[1].startswith("/mmopen/")]:
            del self.routes[key]

    # -- what tests use

    def avatar_path(self, openid: str) -> str:
        return f"/mmopen/vi_32/{openid}/132"

    def add_code(
        self,
        openid: str,
        *,
        unionid: str | None = None,
        scope: str = "snsapi_userinfo",
        nickname: str = "微信用户",
        headimgurl: str | None = None,
        avatar: bytes | None = None,
    ) -> str:
        """Register a fresh single-use authorization code for this WeChat user.

        Unless ``headimgurl`` is given, the avatar is served by this server at
        :meth:`avatar_path` (``avatar`` bytes, or a generated PNG).
        """
        if headimgurl is None:
            path = self.avatar_path(openid)
            data = avatar if avatar is not None else make_image("PNG")
            self.serve_image(path, data)
            headimgurl = self.base + path
        code = "wxcode_" + secrets.token_hex(8)
        self.codes[code] = WeChatUser(openid, unionid, scope, nickname, headimgurl)
        return code

    def serve_image(self, path: str, data: bytes, content_type: str = "image/png") -> None:
        self.route("GET", path, lambda _req: (200, {"Content-Type": content_type}, data))

    def calls(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    # -- the API

    def _failure(self, path: str) -> Reply | None:
        status = self.fail_on.get(path, self.fail_with)
        if status is not None:
            return json_reply({"errcode": -1, "errmsg": "system error"}, status)
        if self.garbage:
            return 200, {"Content-Type": "text/html"}, b"<html>upstream proxy error</html>"
        return None

    def _access_token(self, req: Request) -> Reply:
        failed = self._failure(req.path)
        if failed:
            return failed
        if req.q("appid") != self.app_id:
            return json_reply({"errcode": 40013, "errmsg": "invalid appid"})
        if req.q("secret") != self.app_secret:
            return json_reply({"errcode": 40125, "errmsg": "invalid appsecret"})
        if req.q("grant_type") != "authorization_code":
            return json_reply({"errcode": 40002, "errmsg": "invalid grant_type"})
        code = req.q("code") or ""
        if code in self.used_codes:
            return json_reply({"errcode": 40163, "errmsg": "code been used"})
        user = self.codes.pop(code, None)
        if user is None:
            return json_reply({"errcode": 40029, "errmsg": "invalid code"})
        self.used_codes.add(code)
        token = "ACCESS_" + secrets.token_hex(12)
        self.tokens[token] = user
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": 7200,
            "refresh_token": "REFRESH_" + secrets.token_hex(12),
            "openid": user.openid,
            "scope": user.scope,
        }
        if user.unionid:
            body["unionid"] = user.unionid
        return json_reply(body)

    def _userinfo(self, req: Request) -> Reply:
        failed = self._failure(req.path)
        if failed:
            return failed
        user = self.tokens.get(req.q("access_token") or "")
        if user is None:
            return json_reply({"errcode": 40001, "errmsg": "invalid credential"})
        if req.q("openid") != user.openid:
            return json_reply({"errcode": 40003, "errmsg": "invalid openid"})
        if "snsapi_userinfo" not in user.scope.split(","):
            return json_reply({"errcode": 48001, "errmsg": "api unauthorized"})
        body: dict[str, Any] = {
            "openid": user.openid,
            "nickname": user.nickname,
            "sex": 0,
            "province": "",
            "city": "",
            "country": "",
            "headimgurl": user.headimgurl,
            "privilege": [],
        }
        if user.unionid:
            body["unionid"] = user.unionid
        return json_reply(body)


# --- Sign in with Apple ----------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hashed_nonce(raw: str) -> str:
    """What native iOS puts in the token: the SHA-256 hex of the app's nonce."""
    return hashlib.sha256(raw.encode()).hexdigest()


_UNSET: Any = object()


class FakeAppleID(FakeServer):
    """``appleid.apple.com``: the JWKS, and ID tokens signed with its key."""

    KEYS_PATH = "/auth/keys"
    ISSUER = "https://appleid.apple.com"

    def __init__(
        self, client_id: str = "com.kares.app", now: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.now = now
        self.kid = "fakeAppleKey1"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.route("GET", self.KEYS_PATH, self._jwks)
        self.reset()

    def reset(self) -> None:
        self.fail_with: int | None = None
        self.requests.clear()

    @property
    def jwks_url(self) -> str:
        return self.base + self.KEYS_PATH

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _jwks(self, _req: Request) -> Reply:
        if self.fail_with is not None:
            return json_reply({"error": "unavailable"}, self.fail_with)
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return json_reply({"keys": [jwk]})

    def id_token(
        self,
        sub: str,
        nonce: str | None,
        *,
        nonce_hashed: bool = True,
        aud: Any = _UNSET,
        iss: str | None = None,
        exp_in: float = 600,
        iat_offset: float = 0,
        email: str | None = None,
        signer: str = "apple",
        kid: str | None = _UNSET,
        alg: str = "RS256",
        hmac_key: bytes = b"not-apple",
        drop: tuple[str, ...] = (),
        extra: dict[str, Any] | None = None,
    ) -> str:
        """An ID token as Apple issues it, or forged as asked.

        ``nonce`` is the raw nonce the app got from Kares (put in hashed, as
        native iOS does, unless ``nonce_hashed=False``); ``signer`` is
        ``"apple"`` (the key in the JWKS) or ``"other"`` (a key that is not);
        ``alg`` may be ``RS256``, ``HS256`` (signed with ``hmac_key``) or
        ``none``; ``drop`` removes claims.
        """
        now = int(self.now())
        claims: dict[str, Any] = {
            "iss": iss if iss is not None else self.ISSUER,
            "aud": self.client_id if aud is _UNSET else aud,
            "exp": int(now + iat_offset + exp_in),
            "iat": int(now + iat_offset),
            "sub": sub,
            "c_hash": _b64url(secrets.token_bytes(16)),
            "auth_time": now,
            "nonce_supported": True,
        }
        if nonce is not None:
            claims["nonce"] = hashed_nonce(nonce) if nonce_hashed else nonce
        if email is not None:
            claims.update(email=email, email_verified=True, is_private_email=True)
        if extra:
            claims.update(extra)
        for name in drop:
            claims.pop(name, None)
        headers: dict[str, Any] = {"kid": self.kid if kid is _UNSET else kid}
        if headers["kid"] is None:
            del headers["kid"]
        if alg == "RS256":
            key = self.key if signer == "apple" else self.other_key
            return jwt.encode(claims, key, algorithm="RS256", headers=headers)
        # Built by hand: PyJWT (rightly) will not HMAC with a PEM public key.
        head = {"alg": alg, "typ": "JWT", **headers}
        signing_input = (
            _b64url(json.dumps(head).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        if alg == "HS256":
            mac = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
            return signing_input + "." + _b64url(mac)
        if alg == "none":
            return signing_input + "."
        raise ValueError(f"unsupported alg {alg}")


def tamper_payload(token: str, **changes: Any) -> str:
    """Change claims of a signed token but keep its original signature."""
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return head + "." + _b64url(json.dumps(claims).encode()) + "." + sig
