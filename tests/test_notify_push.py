"""Push delivery to APNs, FCM and Web Push (fake providers on loopback that check
the real request shape), push-channel registration, and what happens when a
provider refuses, rate-limits or is down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from kares import clock, jobs
from kares.db import Database
from kares.notify import service as notify
from kares.notify.models import PushToken
from tests.conftest import bearer, sign_up, snapshot
from tests.support.push_fakes import FakeAPNs, FakeFCM, FakeWebPush, b64url, fcm_error
from tests.support.tiers import examples

IPHONE = {"id": "IDFV-PUSH-1", "model": "iPhone15,2", "os": "iOS", "os_version": "18.1"}
ANDROID = {"id": "OAID-PUSH-2", "model": "SM-G9910", "os": "Android", "os_version": "14"}
BROWSER = {"id": "WEB-PUSH-3", "model": "Firefox", "os": "Linux"}
OTHER_PHONE = "+8613900001111"
APNS_TOKEN = "a1" * 32
FCM_TOKEN = "fcm-registration-token:APA91b" + "x" * 140

VAPID = ec.generate_private_key(ec.SECP256R1())
VAPID_PEM = VAPID.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


@pytest.fixture
def settings_overrides(push_overrides: dict[str, Any], fake_webpush: FakeWebPush) -> dict[str, Any]:
    fake_webpush.reset()
    return {
        **push_overrides,
        "webpush_vapid_key": VAPID_PEM,
        "webpush_hosts": ["127.0.0.1"],
        "webpush_allow_http": True,
        "jobs_backoff_base_seconds": 10.0,
        "jobs_backoff_max_seconds": 3600.0,
        "push_ttl_seconds": 86400,
    }


@pytest.fixture(autouse=True)
def _no_fake_errors(
    fake_apns: FakeAPNs, fake_fcm: FakeFCM, fake_webpush: FakeWebPush
) -> Iterator[None]:
    yield
    assert fake_apns.errors == [], fake_apns.errors
    assert fake_fcm.errors == [], fake_fcm.errors
    assert fake_webpush.errors == [], fake_webpush.errors


# --- helpers ---------------------------------------------------------------------------


async def register(
    client: httpx.AsyncClient, me: dict[str, Any], body: dict[str, Any], device: str | None = None
) -> httpx.Response:
    return await client.put(
        f"/api/v1/devices/{device or me['device_id']}/push",
        json=body,
        headers=bearer(me["token"]),
    )


async def registered(client: httpx.AsyncClient, me: dict[str, Any], body: dict[str, Any]) -> None:
    r = await register(client, me, body)
    assert r.status_code == 200, r.text


async def tell(
    db: Database, *accounts: str, category: str = "messages", title: str = "Hello"
) -> list[str]:
    async with db.sessions() as s:
        notes = await notify.send(
            s,
            account_ids=list(accounts),
            category=category,
            title=title,
            body=f"{title}: body text",
            data={"secret": "stays in the inbox"},
        )
        await s.commit()
        return [n.id for n in notes]


async def run(app: Any) -> jobs.RunStats:
    return await jobs.run_due(app.state.runtime)


async def push_jobs(db: Database) -> list[jobs.Job]:
    async with db.sessions() as s:
        return await jobs.pending(s, kind="notify.push")


async def inbox(client: httpx.AsyncClient, me: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/notifications", headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    return list(r.json())


def problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.json()


async def webpush_me(
    client: httpx.AsyncClient, sms: Any, fake: FakeWebPush
) -> tuple[dict[str, Any], Any]:
    me = await sign_up(client, sms, device=BROWSER)
    r = await client.get("/api/v1/notifications/push/config", headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    assert "webpush" in r.json()["providers"]
    fake.application_server_key = r.json()["webpush_public_key"]
    sub = fake.subscribe()
    await registered(client, me, {"provider": "webpush", "subscription": sub.json()})
    return me, sub


# --- delivery to each provider ---------------------------------------------------------


async def test_apns_gets_an_http2_request_with_a_signed_provider_token(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_apns: FakeAPNs
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await registered(client, me, {"provider": "apns", "token": APNS_TOKEN.upper()})
    before = clock.utcnow()
    (nid,) = await tell(db, me["account"]["id"], title="Grandma arrived home")
    assert len(await push_jobs(db)) == 1
    assert fake_apns.requests == []  # not in the request: as a job
    stats = await run(app)
    after = clock.utcnow()
    assert stats.done == 1
    (req,) = fake_apns.delivered()
    assert req.token == APNS_TOKEN  # stored normalised (lower case)
    h = req.headers
    assert h[":method"] == "POST" and h[":path"] == f"/3/device/{APNS_TOKEN}"
    assert h["apns-topic"] == "com.kares.app"
    assert h["apns-push-type"] == "alert" and h["apns-priority"] == "10"
    assert h["apns-collapse-id"] == nid and h["apns-id"].replace("-", "") == nid
    expires = int(h["apns-expiration"])
    # a day after the notice was made or sent (a busy machine may take seconds between)
    day = timedelta(days=1)
    assert int((before + day).timestamp()) <= expires <= (after + day).timestamp() + 1
    assert req.claims["iss"] == fake_apns.team_id
    assert req.body == {
        "aps": {
            "alert": {"title": "Grandma arrived home", "body": "Grandma arrived home: body text"},
            "sound": "default",
            "thread-id": "messages",
            "interruption-level": "active",
            "badge": 1,
        },
        "kares": {"id": nid, "category": "messages"},
    }
    assert "secret" not in json.dumps(req.body)  # data stays in the inbox
    assert await push_jobs(db) == []


async def test_fcm_exchanges_a_jwt_for_an_access_token_once_and_sends_v1_messages(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_fcm: FakeFCM
) -> None:
    me = await sign_up(client, sms, device=ANDROID)
    await registered(client, me, {"provider": "fcm", "token": FCM_TOKEN})
    (n1,) = await tell(db, me["account"]["id"], title="Dinner at 7")
    (n2,) = await tell(db, me["account"]["id"], category="sos", title="SOS from Dad")
    assert (await run(app)).done == 2
    assert fake_fcm.exchanges == 1  # the access token is cached
    first, second = fake_fcm.delivered()
    assert first.token == FCM_TOKEN
    assert first.message["notification"] == {
        "title": "Dinner at 7",
        "body": "Dinner at 7: body text",
    }
    assert first.message["data"] == {"id": n1, "category": "messages"}
    android = first.message["android"]
    assert android["priority"] == "NORMAL" and android["collapse_key"] == n1
    assert 86000 < int(android["ttl"].removesuffix("s")) <= 86400
    assert second.message["android"]["priority"] == "HIGH"
    assert second.message["data"] == {"id": n2, "category": "sos"}


async def test_web_push_is_vapid_signed_and_encrypted_for_the_subscription(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_webpush: FakeWebPush
) -> None:
    me, sub = await webpush_me(client, sms, fake_webpush)
    (n1,) = await tell(db, me["account"]["id"], title="Walk reminder")
    (n2,) = await tell(db, me["account"]["id"], category="security", title="New sign-in")
    assert (await run(app)).done == 2
    first, second = fake_webpush.delivered()
    assert first.subscription == sub.id
    assert first.payload == {
        "id": n1,
        "category": "messages",
        "title": "Walk reminder",
        "body": "Walk reminder: body text",
        "urgent": False,
    }
    assert first.headers["urgency"] == "normal" and first.headers["topic"] == n1
    assert 86000 < int(first.headers["ttl"]) <= 86400
    assert first.claims["aud"] == fake_webpush.base
    assert first.claims["sub"] == "mailto:support@auroraKare.com"
    assert second.headers["urgency"] == "high" and second.payload["urgent"] is True
    assert second.payload["id"] == n2


async def test_a_new_device_sign_in_pushes_a_security_alert_to_the_other_device(
    app: Any, client: httpx.AsyncClient, sms: Any, fake_apns: FakeAPNs
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
    await sign_up(client, sms, device=ANDROID)  # the same account, a new device
    await run(app)
    (req,) = fake_apns.delivered()
    assert req.body["aps"]["alert"]["title"] == "New sign-in to your Kares account"
    assert req.body["aps"]["interruption-level"] == "time-sensitive"
    assert req.body["kares"]["category"] == "security"


async def test_send_to_several_accounts_reaches_every_device_of_each(
    app: Any,
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
    fake_fcm: FakeFCM,
    fake_webpush: FakeWebPush,
) -> None:
    a = await sign_up(client, sms, device=IPHONE)
    await registered(client, a, {"provider": "apns", "token": APNS_TOKEN})
    a2 = await sign_up(client, sms, device=BROWSER)  # the same account in a browser
    fake_webpush.application_server_key = None
    sub = fake_webpush.subscribe()
    await registered(client, a2, {"provider": "webpush", "subscription": sub.json()})
    b = await sign_up(client, sms, phone=OTHER_PHONE, device=ANDROID)
    await registered(client, b, {"provider": "fcm", "token": FCM_TOKEN})
    await run(app)  # the new-device security alert
    fake_apns.reset()
    ids = await tell(db, a["account"]["id"], b["account"]["id"], category="sos", title="SOS")
    assert len(ids) == 2
    assert (await run(app)).done == 3
    assert [r.body["kares"]["id"] for r in fake_apns.delivered()] == [ids[0]]
    assert fake_webpush.delivered()[-1].payload["id"] == ids[0]
    assert [r.message["data"]["id"] for r in fake_fcm.delivered()] == [ids[1]]
    for who in (a, b):
        assert (await inbox(client, who))[0]["title"] == "SOS"


# --- invalid tokens --------------------------------------------------------------------

INVALID = [
    ("apns", (410, {}, {"reason": "Unregistered"})),
    ("apns", (400, {}, {"reason": "BadDeviceToken"})),
    ("fcm", fcm_error(404, "NOT_FOUND", "UNREGISTERED")),
    ("fcm", fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", field="message.token")),
    ("webpush", (410, {}, None)),
    ("webpush", (404, {}, None)),
]


@pytest.mark.parametrize(("provider", "reply"), INVALID, ids=lambda x: str(x)[:40])
async def test_a_token_the_provider_calls_invalid_is_removed(
    app: Any,
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
    fake_fcm: FakeFCM,
    fake_webpush: FakeWebPush,
    provider: str,
    reply: Any,
) -> None:
    if provider == "apns":
        me = await sign_up(client, sms, device=IPHONE)
        await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
        fake_apns.answer(APNS_TOKEN, reply)
    elif provider == "fcm":
        me = await sign_up(client, sms, device=ANDROID)
        await registered(client, me, {"provider": "fcm", "token": FCM_TOKEN})
        fake_fcm.answer(FCM_TOKEN, reply)
    else:
        me, sub = await webpush_me(client, sms, fake_webpush)
        fake_webpush.answer(sub, reply)
    (nid,) = await tell(db, me["account"]["id"])
    assert (await run(app)).done == 1
    r = await client.get(f"/api/v1/devices/{me['device_id']}/push", headers=bearer(me["token"]))
    problem(r, 404, "push.not_registered")
    assert await push_jobs(db) == []
    assert (await inbox(client, me))[0]["id"] == nid  # the inbox keeps it
    await tell(db, me["account"]["id"])
    assert await push_jobs(db) == []  # nothing more goes to the dead token


async def test_a_token_replaced_meanwhile_is_not_removed(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_apns: FakeAPNs
) -> None:
    """The provider's 'invalid' verdict is about the old token, not the new one."""
    me = await sign_up(client, sms, device=IPHONE)
    await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
    await tell(db, me["account"]["id"])
    rt = app.state.runtime
    apns = rt.push.provider("apns")
    sent: list[str] = []
    real_send = apns.send

    async def send_then_reregister(token: str, msg: Any) -> Any:
        sent.append(token)
        await registered(client, me, {"provider": "apns", "token": "b2" * 32})
        return await real_send(token, msg)

    fake_apns.answer(APNS_TOKEN, (410, {}, {"reason": "Unregistered"}))
    apns.send = send_then_reregister
    try:
        await run(app)
    finally:
        del apns.send
    assert sent == [APNS_TOKEN]
    r = await client.get(f"/api/v1/devices/{me['device_id']}/push", headers=bearer(me["token"]))
    assert r.status_code == 200 and r.json()["hint"] == "…" + "b2" * 3


@pytest.mark.parametrize(
    ("provider", "reply"),
    [
        ("apns", (400, {}, {"reason": "PayloadTooLarge"})),
        ("fcm", fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", field="message.data")),
        ("webpush", (413, {}, None)),
    ],
    ids=["apns-400", "fcm-400-payload", "webpush-413"],
)
async def test_other_refusals_are_dropped_for_that_device_and_the_token_kept(
    app: Any,
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
    fake_fcm: FakeFCM,
    fake_webpush: FakeWebPush,
    provider: str,
    reply: Any,
) -> None:
    if provider == "apns":
        me = await sign_up(client, sms, device=IPHONE)
        await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
        fake_apns.answer(APNS_TOKEN, reply)
    elif provider == "fcm":
        me = await sign_up(client, sms, device=ANDROID)
        await registered(client, me, {"provider": "fcm", "token": FCM_TOKEN})
        fake_fcm.answer(FCM_TOKEN, reply)
    else:
        me, sub = await webpush_me(client, sms, fake_webpush)
        fake_webpush.answer(sub, reply)
    await tell(db, me["account"]["id"])
    assert (await run(app)).done == 1
    assert await push_jobs(db) == []
    r = await client.get(f"/api/v1/devices/{me['device_id']}/push", headers=bearer(me["token"]))
    assert r.status_code == 200


# --- rate limits, provider errors, providers down ---------------------------------------

RETRYABLE = [
    ("apns", (429, {"Retry-After": "120"}, {"reason": "TooManyRequests"}), 120),
    ("apns", (503, {}, {"reason": "ServiceUnavailable"}), None),
    ("fcm", (429, {"Retry-After": "300"}, {"error": {"status": "RESOURCE_EXHAUSTED"}}), 300),
    ("fcm", fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"), None),
    ("webpush", (429, {"Retry-After": "60"}, None), 60),
    ("webpush", (500, {}, None), None),
]


@pytest.mark.parametrize(("provider", "reply", "retry_after"), RETRYABLE, ids=lambda x: str(x)[:30])
async def test_rate_limits_and_server_errors_retry_with_backoff_then_succeed(
    app: Any,
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
    fake_fcm: FakeFCM,
    fake_webpush: FakeWebPush,
    provider: str,
    reply: Any,
    retry_after: int | None,
) -> None:
    if provider == "apns":
        me = await sign_up(client, sms, device=IPHONE)
        await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
        fake_apns.answer(APNS_TOKEN, reply, reply)
        delivered: Any = fake_apns.delivered
    elif provider == "fcm":
        me = await sign_up(client, sms, device=ANDROID)
        await registered(client, me, {"provider": "fcm", "token": FCM_TOKEN})
        fake_fcm.answer(FCM_TOKEN, reply, reply)
        delivered = fake_fcm.delivered
    else:
        me, sub = await webpush_me(client, sms, fake_webpush)
        fake_webpush.answer(sub, reply, reply)
        delivered = fake_webpush.delivered
    (nid,) = await tell(db, me["account"]["id"])
    expect = [retry_after or 10, retry_after or 20]  # Retry-After, else base 10 s doubling
    for attempt, wait in enumerate(expect, start=1):
        t0 = clock.utcnow()
        assert (await run(app)).retried == 1
        t1 = clock.utcnow()  # the failure happened between t0 and t1, however slow the machine
        (job,) = await push_jobs(db)
        assert job.status == "queued" and job.attempts == attempt
        assert str(reply[0]) in (job.last_error or "")
        delay = (job.run_at - t0).total_seconds()
        assert wait <= delay, delay
        assert (job.run_at - t1).total_seconds() <= wait * 1.1, delay  # at most 10 % jitter
        assert (await run(app)).ran == 0  # not before its time
        clock.advance(delay + 1)
    assert (await run(app)).done == 1
    assert len(delivered()) == 1
    assert await push_jobs(db) == []
    assert (await inbox(client, me))[0]["id"] == nid


async def test_provider_down_keeps_the_notification_and_the_job(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_apns: FakeAPNs
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
    apns = app.state.runtime.push.provider("apns")
    apns.base_url = "http://127.0.0.1:9"  # nothing listens there
    (nid,) = await tell(db, me["account"]["id"], title="While APNs was down")
    for _ in range(3):
        assert (await run(app)).retried == 1
        clock.advance(3600)
    (job,) = await push_jobs(db)
    assert job.status == "queued" and job.attempts == 3
    assert "unreachable" in (job.last_error or "")
    assert (await inbox(client, me))[0]["id"] == nid
    r = await client.get("/api/v1/notifications/unread-count", headers=bearer(me["token"]))
    assert r.json() == {"unread": 1}
    apns.base_url = fake_apns.base  # back up
    assert (await run(app)).done == 1
    (req,) = fake_apns.delivered()
    assert req.body["aps"]["alert"]["title"] == "While APNs was down"


async def test_a_provider_credential_refresh_is_retried_at_once(
    app: Any,
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
    fake_fcm: FakeFCM,
) -> None:
    ios = await sign_up(client, sms, device=IPHONE)
    await registered(client, ios, {"provider": "apns", "token": APNS_TOKEN})
    android = await sign_up(client, sms, phone=OTHER_PHONE, device=ANDROID)
    await registered(client, android, {"provider": "fcm", "token": FCM_TOKEN})
    fake_apns.answer(APNS_TOKEN, (403, {}, {"reason": "ExpiredProviderToken"}))
    fake_fcm.answer(FCM_TOKEN, (401, {}, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}))
    await tell(db, ios["account"]["id"], android["account"]["id"])
    assert (await run(app)).retried == 2
    assert (await run(app)).done == 2  # due again at once
    assert len(fake_apns.delivered()) == 1 and len(fake_fcm.delivered()) == 1
    assert fake_fcm.exchanges == 2  # a fresh access token after the 401


async def test_a_push_expires_instead_of_arriving_a_day_late(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_apns: FakeAPNs
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
    fake_apns.answer(APNS_TOKEN, (503, {}, {"reason": "ServiceUnavailable"}))
    await tell(db, me["account"]["id"])
    await run(app)
    clock.advance(86400 + 60)
    assert (await run(app)).done == 1
    assert fake_apns.delivered() == []
    assert await push_jobs(db) == []


# --- registration ----------------------------------------------------------------------


async def test_register_replace_list_and_remove(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_fcm: FakeFCM
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    h = bearer(me["token"])
    r = await register(client, me, {"provider": "apns", "token": APNS_TOKEN})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["provider"] == "apns" and first["device_id"] == me["device_id"]
    assert first["hint"] == "…" + APNS_TOKEN[-6:]
    clock.advance(5)
    r = await register(client, me, {"provider": "fcm", "token": FCM_TOKEN})
    assert r.status_code == 200 and r.json()["provider"] == "fcm"
    assert r.json()["created_at"] == first["created_at"]
    assert r.json()["updated_at"] > first["updated_at"]
    listed = (await client.get("/api/v1/notifications/push-tokens", headers=h)).json()
    assert [(x["device_id"], x["provider"]) for x in listed] == [(me["device_id"], "fcm")]
    async with db.sessions() as s:
        (row,) = (await s.execute(select(PushToken))).scalars()
        assert row.token == FCM_TOKEN
    async with db.engine.connect() as conn:
        raw = (await conn.execute(text("SELECT token FROM push_tokens"))).scalar_one()
        assert FCM_TOKEN not in raw  # encrypted at rest
    await tell(db, me["account"]["id"])
    await run(app)
    assert len(fake_fcm.delivered()) == 1
    r = await client.delete(f"/api/v1/devices/{me['device_id']}/push", headers=h)
    assert r.status_code == 204
    r = await client.delete(f"/api/v1/devices/{me['device_id']}/push", headers=h)
    assert r.status_code == 204  # idempotent
    problem(
        await client.get(f"/api/v1/devices/{me['device_id']}/push", headers=h),
        404,
        "push.not_registered",
    )
    assert (await client.get("/api/v1/notifications/push-tokens", headers=h)).json() == []
    await tell(db, me["account"]["id"])
    assert await push_jobs(db) == []


async def test_a_token_follows_the_account_that_registered_it_last(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_apns: FakeAPNs
) -> None:
    """A shared phone: once the second account registers the phone's token, the
    first account's notifications no longer reach that phone."""
    a = await sign_up(client, sms, device=IPHONE)
    await registered(client, a, {"provider": "apns", "token": APNS_TOKEN})
    b = await sign_up(client, sms, phone=OTHER_PHONE, device=IPHONE)
    await registered(client, b, {"provider": "apns", "token": APNS_TOKEN})
    ha = bearer(a["token"])
    assert (await client.get("/api/v1/notifications/push-tokens", headers=ha)).json() == []
    await tell(db, a["account"]["id"])
    assert await push_jobs(db) == []


async def test_signing_out_a_device_stops_its_pushes(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, fake_apns: FakeAPNs
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
    await tell(db, me["account"]["id"])  # queued while signed in
    r = await client.post("/api/v1/auth/logout", headers=bearer(me["token"]))
    assert r.status_code in (200, 204), r.text
    assert (await run(app)).done == 1
    assert fake_apns.requests == []
    await tell(db, me["account"]["id"])
    assert await push_jobs(db) == []


async def test_registration_is_refused_with_the_notifications_permission_closed(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
    h = bearer(me["token"])
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"notifications": "denied"}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    before = await snapshot(db)
    r = await register(client, me, {"provider": "apns", "token": "c3" * 32})
    problem(r, 403, "permission.closed")
    assert await snapshot(db) == before
    # ... but removing it, listing it and choosing preferences still work
    assert (await client.get("/api/v1/notifications/push-tokens", headers=h)).status_code == 200
    assert (await client.get("/api/v1/notifications/preferences", headers=h)).status_code == 200
    r = await client.delete(f"/api/v1/devices/{me['device_id']}/push", headers=h)
    assert r.status_code == 204


BAD_REGISTRATIONS: list[tuple[dict[str, Any], int, str]] = [
    ({"provider": "apns", "token": "not-hex-at-all" * 5}, 422, "push.token_invalid"),
    ({"provider": "apns", "token": "ab" * 10}, 422, "push.token_invalid"),
    ({"provider": "apns", "token": "a" * 65}, 422, "push.token_invalid"),
    ({"provider": "fcm", "token": "has spaces and / slashes " * 3}, 422, "push.token_invalid"),
    ({"provider": "fcm", "token": "short"}, 422, "push.token_invalid"),
    ({"provider": "console", "token": "tab\there"}, 422, "push.token_invalid"),
    ({"provider": "pigeon", "token": "x"}, 422, "request.invalid"),
    ({"provider": "apns"}, 422, "request.invalid"),
    ({"provider": "apns", "token": APNS_TOKEN, "extra": 1}, 422, "request.invalid"),
    ({"provider": "apns", "token": 12345}, 422, "request.invalid"),
    ({"provider": "webpush", "token": "x"}, 422, "request.invalid"),
    ({}, 422, "request.invalid"),
]


def webpush_body(endpoint: str, p256dh: str | None = None, auth: str | None = None) -> Any:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pub = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "provider": "webpush",
        "subscription": {
            "endpoint": endpoint,
            "keys": {"p256dh": p256dh or b64url(pub), "auth": auth or b64url(b"0123456789abcdef")},
        },
    }


BAD_WEBPUSH: list[tuple[dict[str, Any], int, str]] = [
    (webpush_body("https://evil.example.com/push/1"), 422, "push.endpoint_not_allowed"),
    (webpush_body("http://169.254.169.254/latest/meta-data"), 422, "push.endpoint_not_allowed"),
    (webpush_body("file:///etc/passwd"), 422, "push.token_invalid"),
    (webpush_body("http://127.0.0.1:99999999/x"), 422, "push.token_invalid"),
    (webpush_body("http://user:pw@127.0.0.1/x"), 422, "push.token_invalid"),
    (webpush_body("not a url"), 422, "push.token_invalid"),
    (webpush_body("http://127.0.0.1/push", p256dh="AAAA"), 422, "push.token_invalid"),
    (webpush_body("http://127.0.0.1/push", p256dh="BB" + "A" * 85), 422, "push.token_invalid"),
    (webpush_body("http://127.0.0.1/push", auth="c2hvcnQ"), 422, "push.token_invalid"),
    (webpush_body("http://127.0.0.1/push", auth="!!!"), 422, "push.token_invalid"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), BAD_REGISTRATIONS + BAD_WEBPUSH, ids=lambda x: str(x)[:50]
)
async def test_bad_registrations_are_refused_and_change_nothing(
    app: Any,
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await registered(client, me, {"provider": "apns", "token": APNS_TOKEN})
    before = await snapshot(db)
    problem(await register(client, me, body), status, code)
    assert await snapshot(db) == before


async def test_only_your_own_devices(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    a = await sign_up(client, sms, device=IPHONE)
    b = await sign_up(client, sms, phone=OTHER_PHONE, device=ANDROID)
    await registered(client, b, {"provider": "fcm", "token": FCM_TOKEN})
    before = await snapshot(db)
    body = {"provider": "apns", "token": APNS_TOKEN}
    for device in (b["device_id"], "no-such-device", "x" * 64):
        problem(await register(client, a, body, device=device), 404, "device.not_found")
        for method in ("GET", "DELETE"):
            r = await client.request(
                method, f"/api/v1/devices/{device}/push", headers=bearer(a["token"])
            )
            problem(r, 404, "device.not_found")
    r = await register(client, a, body, device="x" * 65)
    problem(r, 422, "request.invalid")
    assert await snapshot(db) == before


@pytest.mark.db_agnostic
async def test_unconfigured_providers_in_production_are_refused(tmp_path: Any) -> None:
    from kares.config import Settings
    from kares.gateways.push import Push

    push = Push(Settings(env="production", var_dir=tmp_path))
    try:
        assert push.available() == []
        assert push.webpush_public_key() is None
        assert not (tmp_path / "dev-vapid.pem").exists()  # no development key
    finally:
        await push.aclose()
    dev = Push(Settings(env="development", var_dir=tmp_path))
    try:
        assert dev.available() == ["apns", "fcm", "webpush", "console"]  # console fallbacks
        assert dev.webpush_public_key()
        assert (tmp_path / "dev-vapid.pem").stat().st_mode & 0o777 == 0o600
    finally:
        await dev.aclose()


@pytest.mark.db_agnostic
async def test_a_bad_provider_key_stops_the_start(tmp_path: Any) -> None:
    from kares.config import ConfigError, Settings
    from kares.gateways.push import Push

    for bad in (
        {"apns_key": "not a key", "apns_key_id": "K", "apns_team_id": "T", "apns_topic": "x"},
        {"fcm_service_account": "{not json"},
        {"fcm_service_account": json.dumps({"project_id": "p"})},
        {"webpush_vapid_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"},
    ):
        with pytest.raises(ConfigError):
            Push(Settings(var_dir=tmp_path, **bad))


# --- no input gets a 500 ---------------------------------------------------------------

FUZZ_FIELDS = ["provider", "token", "subscription", "categories", "quiet_hours", "extra"]
SUB_FIELDS = ["endpoint", "keys", "p256dh", "auth", "expirationTime"]
leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "apns",
            "fcm",
            "webpush",
            "console",
            "sos",
            "messages",
            APNS_TOKEN,
            "http://127.0.0.1/push/x",
            "https://fcm.googleapis.com/fcm/send/x",
            "22:00",
            "Asia/Shanghai",
            "BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ]
    )
)
values = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*SUB_FIELDS, "start", "end", "time_zone"]), inner)
    ),
    max_leaves=8,
)


@hyp_settings(
    max_examples=examples(200),  # all on PostgreSQL, a quarter on SQLite
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_input_to_the_notification_routes_gets_a_500(
    app: Any, client: httpx.AsyncClient, sms: Any, data: Any
) -> None:
    if not hasattr(client, "_push_me"):
        client._push_me = await sign_up(client, sms, device=IPHONE)  # type: ignore[attr-defined]
    me = client._push_me  # type: ignore[attr-defined]
    device = data.draw(st.sampled_from([me["device_id"], "nope", "%00", "a" * 64]))
    method, path = data.draw(
        st.sampled_from(
            [
                ("PUT", f"/api/v1/devices/{device}/push"),
                ("GET", f"/api/v1/devices/{device}/push"),
                ("DELETE", f"/api/v1/devices/{device}/push"),
                ("PUT", "/api/v1/notifications/preferences"),
                ("GET", "/api/v1/notifications/preferences"),
                ("GET", "/api/v1/notifications/push-tokens"),
                ("GET", "/api/v1/notifications/push/config"),
            ]
        )
    )
    body: Any = data.draw(st.dictionaries(st.sampled_from(FUZZ_FIELDS), values, max_size=4))
    if data.draw(st.booleans()):
        body = data.draw(values)
    raw = json.dumps(body).encode() if data.draw(st.integers(0, 9)) else b"\xff{"
    r = await client.request(
        method,
        path,
        content=raw,
        headers={**bearer(me["token"]), "Content-Type": "application/json"},
    )
    assert r.status_code < 500, f"{method} {path} {raw[:200]!r} -> {r.status_code}: {r.text}"
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
