"""Waking a callee whose app holds no socket, and missed calls (docs/CALLS.md).

A call rings on the callee's sockets at once; every device of the callee with a
push channel and no socket gets a push that rings it: an APNs VoIP push (push
type ``voip``, the ``<bundle>.voip`` topic, the device's PushKit token) or an
FCM data message at high priority, each living as long as the ringing. The fake
providers on loopback check the real request shape. A woken device opens its
socket and hears the call ringing, with the offer. A call the callee never
answered is a notice in the two people's conversation and a ``calls``
notification that names nobody until it is read.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from kares import jobs
from kares.db import Database
from tests.conftest import bearer, query, sign_up
from tests.support.push_fakes import FakeAPNs, FakeFCM
from tests.test_calls import ANSWER, OFFER
from tests.test_calls_ws import send
from tests.test_devices import grant
from tests.test_families import join, new_family
from tests.test_ws import frame, hello, opened, ws_url  # noqa: F401 - ws_url

ANN, BO = "+8613700009101", "+8613700009102"
ANN_PHONE = {"model": "Pixel 8", "os": "Android", "id": "OAID-9101"}
BO_IPHONE = {"model": "iPhone15,2", "os": "iOS", "id": "IDFV-9102"}
BO_ANDROID = {"model": "SM-G9910", "os": "Android", "id": "OAID-9103"}
BO_IPAD = {"model": "iPad14,1", "os": "iPadOS", "id": "IDFV-9104"}
APNS_TOKEN, VOIP_TOKEN = "a1" * 32, "b2" * 32
IPAD_TOKEN, IPAD_VOIP = "c3" * 32, "d4" * 32
FCM_TOKEN = "fcm-registration-token:APA91b" + "y" * 140
RING = 45
# the callee's notifications of calls (signing in on a new device tells the others too)
CALL_NOTES = "SELECT id FROM notifications WHERE account_id = :b AND category = 'calls'"
CALL_NOTICES = (
    "SELECT position FROM messages WHERE kind = 'system' AND conversation_id IN "
    "(SELECT id FROM conversations WHERE kind = 'direct')"
)


@pytest.fixture
def settings_overrides(push_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**push_overrides, "calls_ring_seconds": RING, "push_ttl_seconds": 86400}


@pytest.fixture(autouse=True)
def _no_fake_errors(fake_apns: FakeAPNs, fake_fcm: FakeFCM) -> Any:
    yield
    assert fake_apns.errors == [], fake_apns.errors
    assert fake_fcm.errors == [], fake_fcm.errors


async def named(client: httpx.AsyncClient, sms: Any, phone: str, device: dict, name: str) -> dict:
    me = await sign_up(client, sms, phone, device=device)
    r = await client.patch("/api/v1/me", json={"name": name}, headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    await grant(client, me, "function:calls")
    return me


async def push_channel(client: httpx.AsyncClient, me: dict, body: dict) -> dict[str, Any]:
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/push", json=body, headers=bearer(me["token"])
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def family(client: httpx.AsyncClient, sms: Any) -> dict[str, dict]:
    """Ann (one phone) and Bo (an iPhone and an Android phone that can be woken,
    and an iPad with a VoIP token too), in one family."""
    ann = await named(client, sms, ANN, ANN_PHONE, "Ann")
    bo_iphone = await named(client, sms, BO, BO_IPHONE, "Bo")
    bo_android = await sign_up(client, sms, BO, device=BO_ANDROID)
    bo_ipad = await sign_up(client, sms, BO, device=BO_IPAD)
    fid = await new_family(client, ann, "Lis")
    await join(client, ann, fid, bo_iphone)
    got = await push_channel(
        client, bo_iphone, {"provider": "apns", "token": APNS_TOKEN, "voip_token": VOIP_TOKEN}
    )
    assert got["voip"] is True
    assert (await push_channel(client, bo_android, {"provider": "fcm", "token": FCM_TOKEN}))[
        "voip"
    ] is True
    await push_channel(
        client, bo_ipad, {"provider": "apns", "token": IPAD_TOKEN, "voip_token": IPAD_VOIP}
    )
    return {"ann": ann, "iphone": bo_iphone, "android": bo_android, "ipad": bo_ipad}


async def until(c: Any, kind: str) -> dict[str, Any]:
    while True:
        f = await frame(c)
        assert f["type"] != "error", f
        if f["type"] == kind:
            return f


async def invite(a: Any, callee: str) -> dict[str, Any]:
    await send(a, type="call.invite", callee=callee, sdp=OFFER, id="inv")
    ok = await until(a, "call.ok")
    return dict(ok["call"])


def ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


async def test_an_offline_device_is_rung_by_a_voip_push_and_a_connected_one_is_not(
    app: Any,
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
    fake_fcm: FakeFCM,
) -> None:
    p = await family(client, sms)
    ann, bo = p["ann"]["account"]["id"], p["iphone"]["account"]["id"]
    async with opened(ws_url, p["ann"]["token"]) as a, opened(ws_url, p["ipad"]["token"]) as pad:
        await hello(a)
        await hello(pad)
        call = await invite(a, bo)
        cid, ring_until = call["id"], call["ring_until"]
        assert (await until(pad, "call.invite"))["call"]["id"] == cid  # rung on its socket
        assert (await jobs.run_due(app.state.runtime)).done == 3  # a wake job per device

        # the iPhone: a VoIP push to its PushKit token (not its alert token)
        (req,) = fake_apns.delivered()
        assert req.token == VOIP_TOKEN
        h = req.headers
        assert h["apns-push-type"] == "voip" and h["apns-topic"] == "com.kares.app.voip"
        assert h["apns-priority"] == "10" and h["apns-collapse-id"] == cid
        assert int(h["apns-expiration"]) == ts(ring_until)  # useless once the ringing is over
        wake = {"type": "call.invite", "call": cid, "ring_until": ring_until}
        assert req.body == {"kares": wake}
        # the Android phone: a data message (the app rings itself) at high priority
        (msg,) = fake_fcm.delivered()
        assert msg.token == FCM_TOKEN and "notification" not in msg.message
        assert msg.message["data"] == wake
        android = msg.message["android"]
        assert android["priority"] == "HIGH" and android["collapse_key"] == cid
        assert 0 < int(android["ttl"].removesuffix("s")) <= RING
        # nobody's name or number leaves Kares; the iPad (connected) got nothing
        sent = json.dumps([req.body, dict(req.headers), msg.message])
        for personal in ("Ann", ann, ANN, "Bo", bo):
            assert personal not in sent
        assert IPAD_VOIP not in [r.token for r in fake_apns.requests]
        assert IPAD_TOKEN not in [r.token for r in fake_apns.requests]
        # and the inbox gets nothing while it rings
        assert await query(db, CALL_NOTES, b=bo) == []

        # the woken iPhone opens its socket: it hears the call, with the offer
        async with opened(ws_url, p["iphone"]["token"]) as phone:
            await hello(phone)
            got = await frame(phone)
            assert got["type"] == "call.invite" and got["call"]["id"] == cid, got
            assert got["sdp"] == OFFER and got["from"] == {"id": ann, "name": "Ann"}
            assert 0 < got["lifetime_ms"] <= RING * 1000
            await send(phone, type="call.answer", call=cid, sdp=ANSWER)
            assert (await until(phone, "call.ok"))["call"]["state"] == "connected"
            assert (await until(a, "call.answer"))["sdp"] == ANSWER
            assert (await until(pad, "call.answered_elsewhere"))["call"]["id"] == cid
        # the offer was held while it rang, never after
        [row] = await query(db, "SELECT offer FROM calls WHERE id = :c", c=cid)
        assert row["offer"] is None
        # a socket opening now hears of no ringing call
        async with opened(ws_url, p["android"]["token"]) as droid:
            await hello(droid)
            await send(droid, type="ping", id="p")
            assert await frame(droid) == {"type": "pong", "id": "p"}
        await send(a, type="call.hangup", call=cid)
        await until(a, "call.ok")
    # answered: no missed call anywhere
    assert (await jobs.run_due(app.state.runtime)).done == 0
    assert len(fake_apns.requests) == len(fake_fcm.sends) == 1
    assert await query(db, CALL_NOTES, b=bo) == []
    assert (
        await query(
            db,
            "SELECT position FROM messages WHERE kind = 'system' AND "
            "conversation_id IN (SELECT id FROM conversations WHERE kind = 'direct')",
        )
        == []
    )


async def test_a_call_the_caller_gave_up_is_a_missed_call(
    app: Any,
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
    fake_fcm: FakeFCM,
) -> None:
    p = await family(client, sms)
    ann, bo = p["ann"]["account"]["id"], p["iphone"]["account"]["id"]
    async with opened(ws_url, p["ann"]["token"]) as a:
        await hello(a)
        cid = (await invite(a, bo))["id"]
        await send(a, type="call.hangup", call=cid, id="bye")
        ended = await until(a, "call.ok")
        assert ended["call"]["end_reason"] == "cancelled"
    await jobs.run_due(app.state.runtime)
    # the call ended before the wake jobs ran: no device rings for it; the
    # missed-call notification is pushed instead, naming nobody
    assert [r.headers["apns-push-type"] for r in fake_apns.delivered()] == ["alert", "alert"]
    for r in fake_apns.delivered():
        assert r.token in (APNS_TOKEN, IPAD_TOKEN)
        assert r.body["aps"]["alert"] == {
            "title": "Missed call",
            "body": "A family member called you.",
        }
        assert r.body["kares"]["category"] == "calls"
    (fcm,) = fake_fcm.delivered()
    assert fcm.message["notification"]["title"] == "Missed call"
    assert "Ann" not in json.dumps(fcm.message) and ann not in json.dumps(fcm.message)
    # Bo's inbox names Ann when read
    r = await client.get("/api/v1/notifications", headers=bearer(p["iphone"]["token"]))
    (note,) = [n for n in r.json() if n["category"] == "calls"]
    assert note["category"] == "calls" and note["data"]["call_id"] == cid
    assert (note["title"], note["body"]) == ("Missed call from Ann", "Ann called you.")
    # the conversation of the two has a notice: Ann called, nothing else
    for who in (p["iphone"], p["ann"]):
        r = await client.get("/api/v1/conversations", headers=bearer(who["token"]))
        (conv,) = [c for c in r.json() if c["kind"] == "direct"]
        r = await client.get(
            f"/api/v1/conversations/{conv['id']}/messages", headers=bearer(who["token"])
        )
        (m,) = r.json()["messages"]
        assert (m["kind"], m["sender_id"], m["system"]) == (
            "system",
            ann,
            {"event": "call_missed", "place": None},
        )
        assert m["text"] is None and m["attachment"] is None
    [row] = await query(db, "SELECT offer FROM calls WHERE id = :c", c=cid)
    assert row["offer"] is None


async def test_a_rejected_call_is_not_missed_and_a_call_nobody_answers_is(
    app: Any,
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
) -> None:
    p = await family(client, sms)
    bo = p["iphone"]["account"]["id"]
    async with opened(ws_url, p["ann"]["token"]) as a, opened(ws_url, p["ipad"]["token"]) as pad:
        await hello(a)
        await hello(pad)
        cid = (await invite(a, bo))["id"]
        await until(pad, "call.invite")
        await send(pad, type="call.reject", call=cid)
        assert (await until(pad, "call.ok"))["call"]["end_reason"] == "rejected"
        assert (await until(a, "call.hangup"))["reason"] == "rejected"
        await jobs.run_due(app.state.runtime)
        assert await query(db, CALL_NOTES, b=bo) == []
        assert fake_apns.requests == []  # ended before the wake jobs ran

        # rung until the ringing time is over: missed
        cid = (await invite(a, bo))["id"]
        await jobs.run_due(app.state.runtime)
        assert [r.token for r in fake_apns.delivered()] == [VOIP_TOKEN]
        from kares import clock

        clock.advance(RING + 1)
        await jobs.run_due(app.state.runtime)
        assert (await until(a, "call.hangup"))["reason"] == "missed"
    [row] = await query(db, "SELECT end_reason, offer FROM calls WHERE id = :c", c=cid)
    assert (row["end_reason"], row["offer"]) == ("missed", None)
    notes = await query(db, CALL_NOTES.replace("id", "category, title", 1), b=bo)
    assert notes == [{"category": "calls", "title": "Missed call"}]


async def test_no_ring_with_the_calls_category_off_and_a_dead_voip_token_is_forgotten(
    app: Any,
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fake_apns: FakeAPNs,
    fake_fcm: FakeFCM,
) -> None:
    p = await family(client, sms)
    bo = p["iphone"]["account"]["id"]
    fake_apns.answer(VOIP_TOKEN, (410, {}, {"reason": "Unregistered"}))
    async with opened(ws_url, p["ann"]["token"]) as a:
        await hello(a)
        cid = (await invite(a, bo))["id"]
        await jobs.run_due(app.state.runtime)
        await send(a, type="call.hangup", call=cid)
        await until(a, "call.ok")
    # the PushKit token is gone; the alert token stays (missed-call pushes still go)
    r = await client.get(
        f"/api/v1/devices/{p['iphone']['device_id']}/push", headers=bearer(p["iphone"]["token"])
    )
    assert r.json()["voip"] is False and r.json()["provider"] == "apns"
    [row] = await query(
        db, "SELECT voip_token FROM push_tokens WHERE device_id = :d", d=p["iphone"]["device_id"]
    )
    assert row["voip_token"] is None
    await jobs.run_due(app.state.runtime)
    fake_apns.reset()
    fake_fcm.reset()

    # Bo turns calls off: nothing rings by push (the sockets still would)
    r = await client.put(
        "/api/v1/notifications/preferences",
        json={"categories": {"calls": False}},
        headers=bearer(p["iphone"]["token"]),
    )
    assert r.status_code == 200 and r.json()["categories"]["calls"] is False
    async with opened(ws_url, p["ann"]["token"]) as a:
        await hello(a)
        await invite(a, bo)
    await jobs.run_due(app.state.runtime)
    assert fake_apns.requests == [] and fake_fcm.sends == []


async def test_voip_tokens_are_apns_only_well_formed_and_encrypted(
    client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    me = await sign_up(client, sms, BO, device=BO_IPHONE)
    url, h = f"/api/v1/devices/{me['device_id']}/push", bearer(me["token"])
    for body in (
        {"provider": "fcm", "token": FCM_TOKEN, "voip_token": VOIP_TOKEN},
        {"provider": "apns", "token": APNS_TOKEN, "voip_token": "not hex"},
    ):
        r = await client.put(url, json=body, headers=h)
        assert r.status_code == 422, r.text
    assert await query(db, "SELECT id FROM push_tokens") == []
    got = await push_channel(
        client, me, {"provider": "apns", "token": APNS_TOKEN, "voip_token": VOIP_TOKEN.upper()}
    )
    assert got["voip"] is True
    [row] = await query(db, "SELECT voip_token FROM push_tokens")
    assert VOIP_TOKEN not in row["voip_token"] and VOIP_TOKEN.upper() not in row["voip_token"]
    # registering again without one: no VoIP token (the app no longer has one)
    got = await push_channel(client, me, {"provider": "apns", "token": APNS_TOKEN})
    assert got["voip"] is False


async def test_a_callee_without_the_calls_consent_is_not_woken(
    app: Any,
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
    fake_apns: FakeAPNs,
) -> None:
    ann = await named(client, sms, ANN, ANN_PHONE, "Ann")
    bo = await sign_up(client, sms, BO, device=BO_IPHONE)  # calls never granted
    await join(client, ann, await new_family(client, ann, "Lis"), bo)
    await push_channel(
        client, bo, {"provider": "apns", "token": APNS_TOKEN, "voip_token": VOIP_TOKEN}
    )
    async with opened(ws_url, ann["token"]) as a:
        await hello(a)
        await invite(a, bo["account"]["id"])
    assert (await jobs.run_due(app.state.runtime)).done == 1  # the wake job, sending nothing
    assert fake_apns.requests == []
