"""Push providers behind one interface: ``await provider.send(token, message)``.

* ``apns``: Apple Push Notification service, token-based auth (an ES256 JWT
  signed with the team's .p8 key, reused for 50 minutes), HTTP/2 only.
* ``fcm``: Firebase Cloud Messaging HTTP v1; an RS256 JWT from the service
  account is exchanged at the token URI for an access token (cached).
* ``webpush``: RFC 8030 push services with VAPID (RFC 8292) and the payload
  encrypted per RFC 8291 (aes128gcm, RFC 8188).
* ``console``: prints to stderr or appends JSON lines to ``KARES_PUSH_FILE``;
  the default for development, and where a provider without credentials
  sends outside production.

A provider never raises for a provider's answer: it returns an ``Outcome``
that the delivery job acts on (``invalid_token`` removes the token, ``retry``
retries with backoff or after Retry-After, ``drop`` logs and gives up on this
device). Only the message's title, body, category and id leave Kares, never
its ``data``: the app reads the rest from the inbox.

``await provider.wake(token, CallWake(...))`` rings a device for an incoming
call while its app holds no socket (kares.calls): an APNs VoIP push (push type
``voip``, topic ``<bundle>.voip``, the device's PushKit token), an FCM data
message at high priority, a Web Push of high urgency; each lives as long as the
call rings. It carries the call's id and ringing end, never who calls: the app
reads that from its socket once it opens.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import anyio
import http_ece
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kares import clock, gateways
from kares.config import ConfigError, Settings

log = logging.getLogger("kares.gateways.push")

PROVIDERS = ("apns", "fcm", "webpush", "console")
BODY_MAX = 1000  # characters of the body sent in a push; the inbox has it all


@dataclass(frozen=True)
class PushMessage:
    id: str  # the notification's id; also the collapse id, so a repeat replaces
    category: str
    title: str
    body: str
    urgent: bool
    expires_at: datetime
    badge: int | None = None

    def short_body(self) -> str:
        return self.body if len(self.body) <= BODY_MAX else self.body[: BODY_MAX - 1] + "…"

    def ttl(self) -> int:
        return max(0, int((self.expires_at - clock.utcnow()).total_seconds()))


@dataclass(frozen=True)
class CallWake:
    """An incoming call, for the callee's device that holds no socket."""

    call_id: str
    expires_at: datetime  # the end of the ringing time: the push is useless after it

    def ttl(self) -> int:
        return max(0, int((self.expires_at - clock.utcnow()).total_seconds()))

    def payload(self) -> dict[str, str]:
        """What the app gets (strings only: FCM data values are strings)."""
        return {
            "type": "call.invite",
            "call": self.call_id,
            "ring_until": self.expires_at.isoformat(),
        }


@dataclass(frozen=True)
class Outcome:
    kind: Literal["sent", "invalid_token", "retry", "drop"]
    status: int | None = None
    reason: str = ""
    retry_after: float | None = None

    def describe(self, provider: str) -> str:
        code = f" {self.status}" if self.status is not None else ""
        return f"{provider}{code} {self.reason}".strip()


class PushProvider(Protocol):
    name: str

    async def send(self, token: str, msg: PushMessage) -> Outcome: ...

    async def wake(self, token: str, call: CallWake) -> Outcome: ...


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.utcnow()).total_seconds())


def _unreachable(exc: Exception) -> Outcome:
    return Outcome("retry", None, f"unreachable: {type(exc).__name__}")


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- token formats (checked when a device registers) ------------------------------------


class TokenError(ValueError):
    pass


def normalise_apns(token: str) -> str:
    t = token.strip().lower()
    if not (64 <= len(t) <= 200 and len(t) % 2 == 0) or any(c not in "0123456789abcdef" for c in t):
        raise TokenError("An APNs device token is 64 to 200 hexadecimal digits.")
    return t


FCM_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:")


def normalise_fcm(token: str) -> str:
    if not (20 <= len(token) <= 4096) or any(c not in FCM_CHARS for c in token):
        raise TokenError("An FCM registration token is 20 to 4096 URL-safe characters.")
    return token


def normalise_webpush(
    endpoint: str, p256dh: str, auth: str, *, hosts: list[str], allow_http: bool
) -> str:
    """The subscription as stored (JSON), after checking the keys and the endpoint."""
    check_endpoint(endpoint, hosts=hosts, allow_http=allow_http)
    try:
        pub = b64url_decode(p256dh)
        secret = b64url_decode(auth)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    except (ValueError, binascii.Error) as exc:
        raise TokenError("keys.p256dh must be a P-256 public key in base64url.") from exc
    if len(pub) != 65 or len(secret) != 16:
        raise TokenError("keys.p256dh is 65 bytes and keys.auth 16 bytes, in base64url.")
    return json.dumps(
        {"endpoint": endpoint, "keys": {"p256dh": b64url(pub), "auth": b64url(secret)}},
        separators=(",", ":"),
    )


def check_endpoint(endpoint: str, *, hosts: list[str], allow_http: bool) -> None:
    """A Web Push endpoint must be https on a known push service: the server
    POSTs to it, so anything else would let a client aim Kares at any host."""
    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        _ = parts.port
    except ValueError as exc:
        raise TokenError("The subscription endpoint is not a valid URL.") from exc
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not host or parts.username or parts.password:
        raise TokenError("The subscription endpoint must be an https URL.")
    if not any(fnmatch(host, pattern.lower()) for pattern in hosts):
        raise EndpointNotAllowed(f"Push service {host!r} is not one Kares delivers to.")


class EndpointNotAllowed(TokenError):
    pass


# --- console ----------------------------------------------------------------------------


class ConsoleProvider:
    """Development sink: stderr (default) or JSON lines in a file."""

    def __init__(self, name: str, path: Path | None = None, note: str = "") -> None:
        self.name = name
        self.path = path
        self.note = note

    async def send(self, token: str, msg: PushMessage) -> Outcome:
        said = f"{msg.category}: {msg.title} — {msg.short_body()}"
        record = {
            "provider": self.name,
            "token": token,
            "id": msg.id,
            "category": msg.category,
            "title": msg.title,
            "body": msg.short_body(),
            "urgent": msg.urgent,
        }
        return await self._emit(token, said, record)

    async def wake(self, token: str, call: CallWake) -> Outcome:
        said = f"incoming call {call.call_id} (rings {call.ttl()} s)"
        record = {"provider": self.name, "token": token, "wake": call.payload()}
        return await self._emit(token, said, record)

    async def _emit(self, token: str, said: str, record: dict[str, Any]) -> Outcome:
        """A line on the console, or a JSON record appended to the file."""
        if self.path is None:
            print(
                f"[push {self.name}{self.note} …{token[-6:]}] {said}", file=sys.stderr, flush=True
            )
            return Outcome("sent", None, "console")
        await self._append(json.dumps(record, ensure_ascii=False))
        return Outcome("sent", None, "file")

    async def _append(self, line: str) -> None:
        assert self.path is not None
        path = self.path

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")

        await anyio.to_thread.run_sync(write)


# --- APNs -------------------------------------------------------------------------------

APNS_INVALID = {"BadDeviceToken", "Unregistered", "ExpiredToken"}
APNS_JWT_SECONDS = 50 * 60  # Apple: refresh at most every 20 min, at least every 60


class ApnsProvider:
    name = "apns"

    def __init__(
        self, *, key_pem: str, key_id: str, team_id: str, topic: str, base_url: str, timeout: float
    ) -> None:
        try:
            key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError("the APNs key is not a PEM (.p8) private key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError("the APNs key must be an EC P-256 key (.p8)")
        self.key = key
        self.key_id = key_id
        self.team_id = team_id
        self.topic = topic
        self.base_url = base_url.rstrip("/")
        # APNs speaks HTTP/2 only: no HTTP/1.1 fallback (prior knowledge on http://).
        self.http = gateways.client(
            http1=False, http2=True, timeout=timeout, follow_redirects=False
        )
        self._jwt: tuple[str, float] | None = None

    def provider_token(self) -> str:
        now = clock.utcnow().timestamp()
        if self._jwt is None or now - self._jwt[1] >= APNS_JWT_SECONDS:
            token = jwt.encode(
                {"iss": self.team_id, "iat": int(now)},
                self.key,
                algorithm="ES256",
                headers={"kid": self.key_id},
            )
            self._jwt = (token, now)
        return self._jwt[0]

    def request(self, token: str, msg: PushMessage) -> tuple[str, dict[str, str], bytes]:
        aps: dict[str, Any] = {
            "alert": {"title": msg.title, "body": msg.short_body()},
            "sound": "default",
            "thread-id": msg.category,
            "interruption-level": "time-sensitive" if msg.urgent else "active",
        }
        if msg.badge is not None:
            aps["badge"] = msg.badge
        body = {"aps": aps, "kares": {"id": msg.id, "category": msg.category}}
        headers = {
            "authorization": f"bearer {self.provider_token()}",
            "apns-topic": self.topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            "apns-expiration": str(int(msg.expires_at.timestamp())),
            "apns-collapse-id": msg.id[:64],
        }
        try:
            headers["apns-id"] = str(uuid.UUID(hex=msg.id))
        except ValueError:
            pass
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return f"{self.base_url}/3/device/{token}", headers, data

    def wake_request(self, token: str, call: CallWake) -> tuple[str, dict[str, str], bytes]:
        """A VoIP push (PushKit): its own push type and topic, to the device's VoIP
        token; the app must report it to CallKit at once, so it is only ever sent
        for a call that rings."""
        headers = {
            "authorization": f"bearer {self.provider_token()}",
            "apns-topic": f"{self.topic}.voip",
            "apns-push-type": "voip",
            "apns-priority": "10",
            "apns-expiration": str(int(call.expires_at.timestamp())),
            "apns-collapse-id": call.call_id[:64],
        }
        try:
            headers["apns-id"] = str(uuid.UUID(hex=call.call_id))
        except ValueError:
            pass
        body = {"kares": call.payload()}
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return f"{self.base_url}/3/device/{token}", headers, data

    async def send(self, token: str, msg: PushMessage) -> Outcome:
        return await self._post(*self.request(token, msg))

    async def wake(self, token: str, call: CallWake) -> Outcome:
        return await self._post(*self.wake_request(token, call))

    async def _post(self, url: str, headers: dict[str, str], data: bytes) -> Outcome:
        try:
            resp = await self.http.post(url, headers=headers, content=data)
        except httpx.HTTPError as exc:
            return _unreachable(exc)
        if resp.status_code == 200:
            return Outcome("sent", 200)
        reason = str(_json(resp).get("reason", ""))[:64]
        if resp.status_code == 410 or reason in APNS_INVALID:
            return Outcome("invalid_token", resp.status_code, reason)
        if resp.status_code == 403 and reason == "ExpiredProviderToken":
            self._jwt = None
            return Outcome("retry", 403, reason, 0.0)
        if _retryable(resp.status_code) or resp.status_code == 403:
            # 403 other than an expired token is our configuration: keep it for later
            return Outcome(
                "retry", resp.status_code, reason, retry_after(resp.headers.get("retry-after"))
            )
        return Outcome("drop", resp.status_code, reason)

    async def aclose(self) -> None:
        await self.http.aclose()


# --- FCM HTTP v1 ------------------------------------------------------------------------

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
FCM_INVALID = {"UNREGISTERED", "SENDER_ID_MISMATCH"}


class FcmProvider:
    name = "fcm"

    def __init__(
        self,
        *,
        service_account: dict[str, Any],
        base_url: str,
        token_uri: str,
        http: httpx.AsyncClient,
    ) -> None:
        try:
            self.project = str(service_account["project_id"])
            self.client_email = str(service_account["client_email"])
            self.key_id = str(service_account.get("private_key_id", ""))
            key = serialization.load_pem_private_key(
                str(service_account["private_key"]).encode(), password=None
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(
                "the FCM service account needs project_id, client_email and a PEM private_key"
            ) from exc
        self.key = key
        self.token_uri = token_uri or str(service_account.get("token_uri") or FCM_DEFAULT_TOKEN_URI)
        self.base_url = base_url.rstrip("/")
        self.http = http
        self._access: tuple[str, float] | None = None  # token, expires (epoch seconds)
        self._lock = anyio.Lock()

    def assertion(self) -> str:
        now = int(clock.utcnow().timestamp())
        claims = {
            "iss": self.client_email,
            "scope": FCM_SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, self.key, algorithm="RS256", headers=headers)  # type: ignore[arg-type]

    async def access_token(self) -> str:
        async with self._lock:
            now = clock.utcnow().timestamp()
            if self._access is not None and self._access[1] - 60 > now:
                return self._access[0]
            resp = await self.http.post(
                self.token_uri,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": self.assertion(),
                },
            )
            body = _json(resp)
            token = body.get("access_token")
            if resp.status_code != 200 or not isinstance(token, str):
                raise FcmAuthError(f"token exchange answered {resp.status_code}")
            expires_in = body.get("expires_in", 3600)
            life = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
            self._access = (token, now + life)
            return token

    def message(self, token: str, msg: PushMessage) -> dict[str, Any]:
        return {
            "message": {
                "token": token,
                "notification": {"title": msg.title, "body": msg.short_body()},
                "data": {"id": msg.id, "category": msg.category},
                "android": {
                    "priority": "HIGH" if msg.urgent else "NORMAL",
                    "ttl": f"{msg.ttl()}s",
                    "collapse_key": msg.id,
                    "notification": {"tag": msg.id},
                },
            }
        }

    def wake_message(self, token: str, call: CallWake) -> dict[str, Any]:
        """A data message (no notification: the app rings itself) at high priority,
        living as long as the call rings."""
        return {
            "message": {
                "token": token,
                "data": call.payload(),
                "android": {
                    "priority": "HIGH",
                    "ttl": f"{call.ttl()}s",
                    "collapse_key": call.call_id,
                },
            }
        }

    async def send(self, token: str, msg: PushMessage) -> Outcome:
        return await self._post(self.message(token, msg))

    async def wake(self, token: str, call: CallWake) -> Outcome:
        return await self._post(self.wake_message(token, call))

    async def _post(self, message: dict[str, Any]) -> Outcome:
        url = f"{self.base_url}/v1/projects/{self.project}/messages:send"
        try:
            access = await self.access_token()
            resp = await self.http.post(
                url, json=message, headers={"Authorization": f"Bearer {access}"}
            )
        except FcmAuthError as exc:
            return Outcome("retry", None, str(exc))
        except httpx.HTTPError as exc:
            return _unreachable(exc)
        if resp.status_code == 200:
            return Outcome("sent", 200)
        raw_err = _json(resp).get("error")
        err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
        status = str(err.get("status", ""))
        codes: set[str] = set()
        fields: set[str] = set()
        for d in err.get("details") or []:
            if not isinstance(d, dict):
                continue
            if "errorCode" in d:
                codes.add(str(d["errorCode"]))
            for v in d.get("fieldViolations") or []:
                if isinstance(v, dict):
                    fields.add(str(v.get("field", "")))
        reason = (next(iter(sorted(codes)), "") or status)[:64]
        if codes & FCM_INVALID or (
            resp.status_code == 400
            and "INVALID_ARGUMENT" in codes | {status}
            and "message.token" in fields
        ):
            return Outcome("invalid_token", resp.status_code, reason)
        if resp.status_code == 401:
            self._access = None  # expired or revoked access token: get a new one
            return Outcome("retry", 401, reason, 0.0)
        if _retryable(resp.status_code):
            return Outcome(
                "retry", resp.status_code, reason, retry_after(resp.headers.get("retry-after"))
            )
        return Outcome("drop", resp.status_code, reason)


class FcmAuthError(RuntimeError):
    pass


# --- Web Push ---------------------------------------------------------------------------


def load_vapid_key(text: str) -> ec.EllipticCurvePrivateKey:
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text)
            key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError("KARES_WEBPUSH_VAPID_KEY is not a P-256 private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError("KARES_WEBPUSH_VAPID_KEY must be a P-256 (prime256v1) key")
    return key


def dev_vapid_key(var_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The development VAPID key, generated once under var_dir (mode 600)."""
    path = var_dir / "dev-vapid.pem"
    if path.exists():
        return load_vapid_key(path.read_text())
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, path)
    return key


class WebPushProvider:
    name = "webpush"

    def __init__(
        self,
        *,
        key: ec.EllipticCurvePrivateKey,
        subject: str,
        hosts: list[str],
        allow_http: bool,
        http: httpx.AsyncClient,
    ) -> None:
        self.key = key
        self.subject = subject
        self.hosts = hosts
        self.allow_http = allow_http
        self.http = http
        self.public_key = b64url(
            key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def vapid(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "exp": int(clock.utcnow().timestamp()) + 12 * 3600,
            "sub": self.subject,
        }
        token = jwt.encode(claims, self.key, algorithm="ES256")
        return f"vapid t={token}, k={self.public_key}"

    def encrypt(self, p256dh: str, auth: str, plaintext: bytes) -> bytes:
        """RFC 8291: ECDH with a fresh key pair + the subscription's auth secret."""
        ephemeral = ec.generate_private_key(ec.SECP256R1())
        return bytes(
            http_ece.encrypt(
                plaintext,
                salt=secrets.token_bytes(16),
                private_key=ephemeral,
                dh=b64url_decode(p256dh),
                auth_secret=b64url_decode(auth),
                version="aes128gcm",
            )
        )

    def request(self, token: str, msg: PushMessage) -> tuple[str, dict[str, str], bytes]:
        payload = json.dumps(
            {
                "id": msg.id,
                "category": msg.category,
                "title": msg.title,
                "body": msg.short_body(),
                "urgent": msg.urgent,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        return self._request(token, payload, msg.ttl(), msg.urgent, msg.id)

    def wake_request(self, token: str, call: CallWake) -> tuple[str, dict[str, str], bytes]:
        payload = json.dumps(call.payload(), separators=(",", ":")).encode()
        return self._request(token, payload, call.ttl(), True, call.call_id)

    def _request(
        self, token: str, payload: bytes, ttl: int, urgent: bool, topic: str
    ) -> tuple[str, dict[str, str], bytes]:
        sub = json.loads(token)
        endpoint = str(sub["endpoint"])
        check_endpoint(endpoint, hosts=self.hosts, allow_http=self.allow_http)
        body = self.encrypt(sub["keys"]["p256dh"], sub["keys"]["auth"], payload)
        headers = {
            "Authorization": self.vapid(endpoint),
            "TTL": str(ttl),
            "Urgency": "high" if urgent else "normal",
            "Topic": topic[:32],
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        return endpoint, headers, body

    async def send(self, token: str, msg: PushMessage) -> Outcome:
        return await self._send(lambda: self.request(token, msg))

    async def wake(self, token: str, call: CallWake) -> Outcome:
        return await self._send(lambda: self.wake_request(token, call))

    async def _send(self, build: Callable[[], tuple[str, dict[str, str], bytes]]) -> Outcome:
        try:
            endpoint, headers, body = build()
        except TokenError as exc:
            return Outcome("invalid_token", None, str(exc)[:64])
        except (ValueError, KeyError, TypeError) as exc:
            return Outcome("invalid_token", None, f"unusable subscription: {type(exc).__name__}")
        try:
            resp = await self.http.post(endpoint, headers=headers, content=body)
        except httpx.HTTPError as exc:
            return _unreachable(exc)
        if resp.status_code in (200, 201, 202):
            return Outcome("sent", resp.status_code)
        if resp.status_code in (404, 410):
            return Outcome("invalid_token", resp.status_code, "subscription gone")
        if _retryable(resp.status_code):
            return Outcome(
                "retry", resp.status_code, "", retry_after(resp.headers.get("retry-after"))
            )
        return Outcome("drop", resp.status_code, resp.reason_phrase[:64])


# --- the set of providers a process uses ------------------------------------------------


def _read(path: Path | None, inline: str) -> str:
    if inline:
        return inline
    if path is not None:
        return path.read_text()
    return ""


class Push:
    """The providers this process delivers with, built from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = gateways.client(
            timeout=settings.push_http_timeout_seconds, follow_redirects=False
        )
        self._providers: dict[str, PushProvider | None] = {}
        self._closers: list[Any] = []
        for name in PROVIDERS:  # a bad key or service account stops the start
            self.provider(name)

    def _console(self, name: str, note: str = "") -> ConsoleProvider:
        s = self.settings
        path = (s.push_file or s.var_dir / "push-outbox.jsonl") if s.push_sink == "file" else None
        return ConsoleProvider(name, path, note)

    def _build(self, name: str) -> PushProvider | None:
        s = self.settings
        if name == "console":
            return None if s.is_production else self._console("console")
        if name == "apns":
            key = _read(s.apns_key_file, s.apns_key)
            if key and s.apns_key_id and s.apns_team_id and s.apns_topic:
                p = ApnsProvider(
                    key_pem=key,
                    key_id=s.apns_key_id,
                    team_id=s.apns_team_id,
                    topic=s.apns_topic,
                    base_url=s.apns_base_url,
                    timeout=s.push_http_timeout_seconds,
                )
                self._closers.append(p.aclose)
                return p
        elif name == "fcm":
            raw = _read(s.fcm_service_account_file, s.fcm_service_account)
            if raw:
                try:
                    account = json.loads(raw)
                except ValueError as exc:
                    raise ConfigError("the FCM service account is not JSON") from exc
                if not isinstance(account, dict):
                    raise ConfigError("the FCM service account is not a JSON object")
                return FcmProvider(
                    service_account=account,
                    base_url=s.fcm_base_url,
                    token_uri=s.fcm_token_uri,
                    http=self.http,
                )
        elif name == "webpush":
            if s.webpush_vapid_key:
                vapid = load_vapid_key(s.webpush_vapid_key)
            elif not s.is_production:
                vapid = dev_vapid_key(s.var_dir)
            else:
                return None
            return WebPushProvider(
                key=vapid,
                subject=s.webpush_vapid_subject,
                hosts=s.webpush_hosts,
                allow_http=s.webpush_allow_http,
                http=self.http,
            )
        else:
            return None
        # a real provider without its credentials
        return None if s.is_production else self._console(name, " (not configured)")

    def provider(self, name: str) -> PushProvider | None:
        """The provider for ``name``, or None when it cannot be used here."""
        if name not in self._providers:
            self._providers[name] = self._build(name)
        return self._providers[name]

    def available(self) -> list[str]:
        return [p for p in PROVIDERS if self.provider(p) is not None]

    def webpush_public_key(self) -> str | None:
        p = self.provider("webpush")
        return p.public_key if isinstance(p, WebPushProvider) else None

    async def aclose(self) -> None:
        for close in self._closers:
            await close()
        await self.http.aclose()
