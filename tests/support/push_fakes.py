"""Fake push providers as real servers on loopback, checking the real request shape.

* ``FakeAPNs`` speaks HTTP/2 only (h2, prior knowledge), as APNs does: an
  HTTP/1.1 client cannot reach it. It verifies the provider JWT (ES256) with
  the public half of the team's key, the ``apns-*`` headers and the JSON body.
* ``FakeFCM`` serves the OAuth token URI (checks the RS256 assertion with the
  service account's public key) and ``/v1/projects/{id}/messages:send``
  (checks the bearer access token it issued).
* ``FakeWebPush`` is a push service and the browser behind it: it makes a
  subscription (P-256 key pair + auth secret), verifies the VAPID JWT with the
  ``k=`` key, and decrypts the aes128gcm body per RFC 8291 with its own
  implementation (not the library Kares uses).

Each can be told to answer with a queue of replies per device token, e.g.
``fake.answer(token, (503, {"Retry-After": "30"}, {...}))``; afterwards it
answers success. Every check that fails is appended to ``errors``.

The fixtures at the end (a pytest plugin, listed in ``tests/conftest.py``)
start each fake once per test module; ``push_overrides`` resets the APNs and
FCM fakes for each test and gives the settings that point Kares at them, for a
module's ``settings_overrides``.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kares import clock
from tests.support.fakes import FakeServer, Request, json_reply

Reply = tuple[int, dict[str, str], Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now_ts() -> float:
    return clock.utcnow().timestamp()


class _Answers:
    def __init__(self) -> None:
        self.queues: dict[str, list[Reply]] = {}
        self.lock = threading.Lock()

    def answer(self, key: str, *replies: Reply) -> None:
        with self.lock:
            self.queues.setdefault(key, []).extend(replies)

    def next(self, key: str) -> Reply | None:
        with self.lock:
            q = self.queues.get(key)
            return q.pop(0) if q else None

    def clear(self) -> None:
        with self.lock:
            self.queues.clear()


# --- APNs -------------------------------------------------------------------------------


@dataclass
class ApnsRequest:
    token: str
    headers: dict[str, str]
    body: dict[str, Any]
    claims: dict[str, Any]
    status: int


class FakeAPNs:
    """``api.push.apple.com`` over HTTP/2 (cleartext, prior knowledge)."""

    def __init__(self, *, team_id: str = "TEAM123456", key_id: str = "KEY1234567") -> None:
        self.team_id = team_id
        self.key_id = key_id
        self.topic = "com.kares.app"
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.requests: list[ApnsRequest] = []
        self.errors: list[str] = []
        self.answers = _Answers()
        self.connections = 0
        self._conns: list[socket.socket] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.requests.clear()
        self.errors.clear()
        self.answers.clear()

    def answer(self, token: str, *replies: Reply) -> None:
        self.answers.answer(token, *replies)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        h2c = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        h2c.initiate_connection()
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        try:
            conn.sendall(h2c.data_to_send())
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                try:
                    events = h2c.receive_data(data)
                except Exception as exc:  # an HTTP/1.1 client, or garbage
                    self.errors.append(f"not HTTP/2: {type(exc).__name__}")
                    return
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = (
                            {str(k): str(v) for k, v in ev.headers or []},
                            bytearray(),
                        )
                    elif isinstance(ev, h2.events.DataReceived):
                        streams[ev.stream_id][1].extend(ev.data or b"")
                        h2c.acknowledge_received_data(
                            ev.flow_controlled_length or 0, ev.stream_id or 0
                        )
                    elif isinstance(ev, h2.events.StreamEnded):
                        headers, body = streams.pop(ev.stream_id or 0)
                        status, extra, reply = self._handle(headers, bytes(body))
                        payload = json.dumps(reply).encode() if reply is not None else b""
                        out = [(":status", str(status)), ("apns-id", headers.get("apns-id", ""))]
                        out += [(k.lower(), v) for k, v in extra.items()]
                        if payload:
                            out += [
                                ("content-type", "application/json"),
                                ("content-length", str(len(payload))),
                            ]
                            h2c.send_headers(ev.stream_id or 0, out)
                            h2c.send_data(ev.stream_id or 0, payload, end_stream=True)
                        else:
                            h2c.send_headers(ev.stream_id or 0, out, end_stream=True)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        conn.sendall(h2c.data_to_send())
                        return
                out_data = h2c.data_to_send()
                if out_data:
                    conn.sendall(out_data)
        except OSError:
            return
        finally:
            conn.close()

    def _handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        path = headers.get(":path", "")
        if headers.get(":method") != "POST" or not path.startswith("/3/device/"):
            self.errors.append(f"unexpected {headers.get(':method')} {path}")
            return 404, {}, {"reason": "BadPath"}
        token = path.removeprefix("/3/device/")
        claims: dict[str, Any] = {}
        try:
            scheme, _, provider_token = headers.get("authorization", "").partition(" ")
            assert scheme == "bearer", "authorization is not 'bearer <jwt>'"
            head = jwt.get_unverified_header(provider_token)
            assert head.get("alg") == "ES256" and head.get("kid") == self.key_id, head
            claims = jwt.decode(
                provider_token,
                self.key.public_key(),
                algorithms=["ES256"],
                options={"verify_iat": False, "require": ["iss", "iat"]},
            )
            assert claims["iss"] == self.team_id, claims
            assert abs(claims["iat"] - now_ts()) < 3700, "iat is more than an hour off"
        except Exception as exc:
            self.errors.append(f"provider token: {exc}")
            return 403, {}, {"reason": "InvalidProviderToken"}
        try:
            kind = headers.get("apns-push-type")
            assert kind in ("alert", "voip"), "apns-push-type"
            # a VoIP push (PushKit) goes to the app's VoIP topic, always at once
            topic = self.topic + ".voip" if kind == "voip" else self.topic
            assert headers.get("apns-topic") == topic, "apns-topic"
            assert headers.get("apns-priority") in (("10",) if kind == "voip" else ("5", "10"))
            assert headers.get("apns-expiration", "").isdigit(), "apns-expiration"
            assert int(headers["apns-expiration"]) > now_ts(), "apns-expiration in the past"
            doc = json.loads(body)
            if kind == "alert":
                assert isinstance(doc["aps"]["alert"]["title"], str), "aps.alert.title"
            assert len(body) <= (5120 if kind == "voip" else 4096), "payload too large"
        except Exception as exc:
            self.errors.append(f"request: {exc}")
            return 400, {}, {"reason": "BadRequest"}
        reply = self.answers.next(token)
        status, extra, answer = reply if reply is not None else (200, {}, None)
        self.requests.append(ApnsRequest(token, headers, doc, claims, status))
        return status, extra, answer

    def delivered(self) -> list[ApnsRequest]:
        return [r for r in self.requests if r.status == 200]

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


# --- FCM --------------------------------------------------------------------------------


@dataclass
class FcmRequest:
    token: str
    message: dict[str, Any]
    status: int


class FakeFCM(FakeServer):
    """Google's OAuth token endpoint and the FCM HTTP v1 send endpoint."""

    project = "kares-test"

    def __init__(self) -> None:
        super().__init__()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "push@kares-test.iam.gserviceaccount.com"
        self.private_key_id = "fcm-key-1"
        self.issued: dict[str, float] = {}  # access token -> expires
        self.exchanges = 0
        self.sends: list[FcmRequest] = []
        self.errors: list[str] = []
        self.answers = _Answers()
        self.route("POST", "/token", self._token)
        self.route("POST", f"/v1/projects/{self.project}/messages:send", self._send)

    def service_account(self) -> dict[str, Any]:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project,
            "private_key_id": self.private_key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "1234567890",
            "token_uri": self.base + "/token",
        }

    def reset(self) -> None:
        self.issued.clear()
        self.exchanges = 0
        self.sends.clear()
        self.errors.clear()
        self.answers.clear()

    def answer(self, token: str, *replies: Reply) -> None:
        self.answers.answer(token, *replies)

    def _token(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        form = parse_qs(req.body.decode())
        try:
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            assertion = form["assertion"][0]
            head = jwt.get_unverified_header(assertion)
            assert head.get("alg") == "RS256" and head.get("kid") == self.private_key_id, head
            claims = jwt.decode(
                assertion,
                self.key.public_key(),
                algorithms=["RS256"],
                audience=self.base + "/token",
                options={"verify_iat": False, "verify_exp": False},
            )
            assert claims["iss"] == self.client_email
            assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
            assert claims["exp"] - claims["iat"] <= 3600
            assert claims["exp"] > now_ts()
        except Exception as exc:
            self.errors.append(f"token exchange: {exc!r}")
            return json_reply({"error": "invalid_grant"}, 400)
        self.exchanges += 1
        token = "ya29.fake-" + secrets.token_urlsafe(12)
        self.issued[token] = now_ts() + 3600
        return json_reply({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _send(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        auth = req.headers.get("authorization") or ""
        access = auth.removeprefix("Bearer ")
        if access not in self.issued or self.issued[access] < now_ts():
            self.errors.append("send without a valid access token")
            return json_reply({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, 401)
        msg = req.json()["message"]
        token = msg.get("token", "")
        reply = self.answers.next(token)
        status, extra, answer = reply if reply is not None else (200, {}, None)
        self.sends.append(FcmRequest(token, msg, status))
        if status == 200:
            answer = {"name": f"projects/{self.project}/messages/{len(self.sends)}"}
        body = json.dumps(answer).encode()
        return status, {"Content-Type": "application/json", **extra}, body

    def delivered(self) -> list[FcmRequest]:
        return [r for r in self.sends if r.status == 200]


def fcm_error(status: int, code: str, error_code: str, field: str | None = None) -> Reply:
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
    ]
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": "Invalid registration token"}],
            }
        )
    return (
        status,
        {},
        {"error": {"code": status, "message": error_code, "status": code, "details": details}},
    )


# --- Web Push ---------------------------------------------------------------------------


@dataclass
class Subscription:
    id: str
    key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str

    def public(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(self.public()), "auth": b64url(self.auth)},
        }


@dataclass
class WebPushDelivery:
    subscription: str
    headers: dict[str, str]
    claims: dict[str, Any]
    payload: dict[str, Any]
    status: int


def rfc8291_decrypt(sub: Subscription, body: bytes) -> bytes:
    """Decrypt an aes128gcm Web Push message (RFC 8291 section 3, RFC 8188 section 2)."""
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    as_public = body[21 : 21 + idlen]
    records = body[21 + idlen :]
    assert idlen == 65 and as_public[0] == 4, "keyid must be the sender's P-256 public key"
    assert 18 <= len(records) <= rs, "one record expected"
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public)
    ecdh = sub.key.exchange(ec.ECDH(), peer)
    key_info = b"WebPush: info\x00" + sub.public() + as_public
    ikm = HKDF(hashes.SHA256(), 32, salt=sub.auth, info=key_info).derive(ecdh)
    cek = HKDF(hashes.SHA256(), 16, salt=salt, info=b"Content-Encoding: aes128gcm\x00").derive(ikm)
    nonce = HKDF(hashes.SHA256(), 12, salt=salt, info=b"Content-Encoding: nonce\x00").derive(ikm)
    padded = AESGCM(cek).decrypt(nonce, records, None).rstrip(b"\x00")
    assert padded.endswith(b"\x02"), "last record delimiter missing"
    return padded[:-1]


class FakeWebPush(FakeServer):
    """A push service (and the browser's keys) for Web Push subscriptions."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[WebPushDelivery] = []
        self.errors: list[str] = []
        self.answers = _Answers()
        self.application_server_key: str | None = None  # the VAPID key subscribed with

    def reset(self) -> None:
        self.deliveries.clear()
        self.errors.clear()
        self.answers.clear()

    def subscribe(self) -> Subscription:
        sid = secrets.token_hex(8)
        sub = Subscription(
            sid, ec.generate_private_key(ec.SECP256R1()), secrets.token_bytes(16), ""
        )
        sub.endpoint = f"{self.base}/push/{sid}"
        self.subscriptions[sid] = sub
        self.route("POST", f"/push/{sid}", lambda req: self._push(sid, req))
        return sub

    def answer(self, sub: Subscription, *replies: Reply) -> None:
        self.answers.answer(sub.id, *replies)

    def _push(self, sid: str, req: Request) -> tuple[int, dict[str, str], bytes]:
        sub = self.subscriptions[sid]
        headers = {k.lower(): v for k, v in req.headers.items()}
        try:
            scheme, _, params = headers.get("authorization", "").partition(" ")
            assert scheme == "vapid", "Authorization is not 'vapid t=..., k=...'"
            parts = dict(p.strip().split("=", 1) for p in params.split(","))
            k = parts["k"]
            if self.application_server_key is not None:
                assert k == self.application_server_key, "k is not the subscribed VAPID key"
            pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(k))
            claims = jwt.decode(
                parts["t"],
                pub,
                algorithms=["ES256"],
                audience=self.base,
                options={"verify_exp": False},
            )
            assert now_ts() < claims["exp"] <= now_ts() + 24 * 3600, "exp not within 24 h"
            assert claims["sub"].startswith(("mailto:", "https:")), "sub"
            assert headers.get("ttl", "").isdigit(), "TTL header"
            assert headers.get("urgency") in ("very-low", "low", "normal", "high"), "Urgency"
            assert headers.get("content-encoding") == "aes128gcm", "Content-Encoding"
            payload = json.loads(rfc8291_decrypt(sub, req.body))
        except Exception as exc:
            self.errors.append(f"web push: {exc!r}")
            return json_reply({"error": str(exc)}, 400)
        reply = self.answers.next(sid)
        status, extra, answer = reply if reply is not None else (201, {}, None)
        self.deliveries.append(WebPushDelivery(sid, headers, claims, payload, status))
        return status, extra, json.dumps(answer).encode() if answer is not None else b""

    def delivered(self) -> list[WebPushDelivery]:
        return [d for d in self.deliveries if d.status == 201]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_apns() -> Iterator[FakeAPNs]:
    f = FakeAPNs()
    yield f
    f.close()


@pytest.fixture(scope="module")
def fake_fcm() -> Iterator[FakeFCM]:
    f = FakeFCM()
    yield f
    f.close()


@pytest.fixture(scope="module")
def fake_webpush() -> Iterator[FakeWebPush]:
    f = FakeWebPush()
    yield f
    f.close()


def push_settings(apns: FakeAPNs, fcm: FakeFCM) -> dict[str, Any]:
    """Settings that point Kares at the fake APNs and FCM, with their keys."""
    return {
        "apns_key": apns.key_pem,
        "apns_key_id": apns.key_id,
        "apns_team_id": apns.team_id,
        "apns_topic": apns.topic,
        "apns_base_url": apns.base,
        "fcm_service_account": json.dumps(fcm.service_account()),
        "fcm_base_url": fcm.base,
    }


@pytest.fixture
def push_overrides(fake_apns: FakeAPNs, fake_fcm: FakeFCM) -> dict[str, Any]:
    """``push_settings`` for this test, with both fakes reset (nothing received, no
    queued answers, no errors)."""
    fake_apns.reset()
    fake_fcm.reset()
    return push_settings(fake_apns, fake_fcm)
