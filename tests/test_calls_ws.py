"""A call over the device's WebSocket (docs/CALLS.md): invite, ringing on every
device of the callee, the first answer wins, ICE and hang-up between the two
devices that hold the call; refused without the calls consent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import bearer, sign_up
from tests.test_calls import ANSWER, OFFER
from tests.test_devices import grant
from tests.test_families import join, new_family
from tests.test_ws import frame, frames_until, hello, opened, ws_url  # noqa: F401 - ws_url

ANN, BO = "+8613700009001", "+8613700009002"
PHONE = {"model": "Pixel 8", "os": "Android", "id": "OAID-9001"}
BO_PHONE = {"model": "iPhone15,2", "os": "iOS", "id": "IDFV-9002"}
BO_WATCH = {"model": "Pad 2", "os": "Android", "id": "OAID-9003"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"calls_ring_seconds": 30}


async def caller(client: httpx.AsyncClient, sms: Any, phone: str, device: dict) -> dict:
    me = await sign_up(client, sms, phone, device=device)
    await grant(client, me, "function:calls")
    return me


async def send(c: Any, **frame_: Any) -> None:
    await c.send(json.dumps(frame_))


async def test_a_call_over_the_socket(
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
) -> None:
    ann = await caller(client, sms, ANN, PHONE)
    bo1 = await caller(client, sms, BO, BO_PHONE)
    bo2 = await sign_up(client, sms, BO, device=BO_WATCH)  # Bo's second device
    fid = await new_family(client, ann, "Lis")
    await join(client, ann, fid, bo1)
    b = bo1["account"]["id"]
    async with (
        opened(ws_url, ann["token"]) as a,
        opened(ws_url, bo1["token"]) as p,
        opened(ws_url, bo2["token"]) as w,
    ):
        for c in (a, p, w):
            await hello(c)
        await send(a, type="call.invite", callee=b, sdp=OFFER, id="inv")
        ok = await frame(a)
        assert ok["type"] == "call.ok" and ok["id"] == "inv", ok
        cid = ok["call"]["id"]
        for c in (p, w):  # rings on both of Bo's devices
            got = await frame(c)
            assert got["type"] == "call.invite" and got["sdp"] == OFFER
            assert got["call"]["id"] == cid and got["from"]["id"] == ann["account"]["id"]
        await send(p, type="call.ringing", call=cid)
        assert (await frame(p))["type"] == "call.ok"
        assert (await frame(a))["type"] == "call.ringing"
        await send(p, type="call.answer", call=cid, sdp=ANSWER, id="ans")
        ok = await frame(p)
        assert ok == {"type": "call.ok", "call": ok["call"], "id": "ans"}
        assert ok["call"]["state"] == "connected"
        got = await frame(a)
        assert got["type"] == "call.answer" and got["sdp"] == ANSWER
        got = await frame(w)  # the watch stops ringing; the phone is not told
        assert got["type"] == "call.answered_elsewhere"
        # the watch cannot take the call over
        await send(w, type="call.hangup", call=cid, id="w")
        err = await frame(w)
        assert (err["type"], err["code"], err["id"]) == ("error", "call.answered_elsewhere", "w")
        # ICE between the two devices that hold the call
        await send(a, type="call.candidates", call=cid, candidates=[{"candidate": "c1"}])
        assert (await frame(a))["type"] == "call.ok"
        got = await frame(p)
        assert got["type"] == "call.candidates" and got["candidates"] == [{"candidate": "c1"}]
        await send(p, type="call.hangup", call=cid)
        assert (await frame(p))["type"] == "call.ok"
        got = await frame(a)
        assert (got["type"], got["reason"]) == ("call.hangup", "hangup")
        # bad frames get an error and change nothing
        await send(a, type="call.dance", call=cid, id=1)
        assert (await frame(a))["code"] == "call.unknown_step"
        await send(a, type="call.invite", id=2)
        assert (await frame(a))["code"] == "call.callee_required"
        await send(a, type="call.hangup", call=cid, id=3)
        assert (await frame(a))["code"] == "call.ended"
        # the phone saw nothing of the watch's refused hang-up
        await send(p, type="ping", id="p")
        assert await frames_until(p, "pong") == [{"type": "pong", "id": "p"}]


async def test_calling_needs_the_calls_consent(
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
) -> None:
    ann = await sign_up(client, sms, ANN, device=PHONE)  # no calls consent
    bo = await caller(client, sms, BO, BO_PHONE)
    fid = await new_family(client, ann, "Lis")
    await join(client, ann, fid, bo)
    async with opened(ws_url, ann["token"]) as a:
        await hello(a)
        await send(a, type="call.invite", callee=bo["account"]["id"], sdp=OFFER, id="x")
        err = await frame(a)
        assert err["type"] == "error" and err["code"] == "consent.required", err
    r = await client.get("/api/v1/me", headers=bearer(ann["token"]))
    assert r.status_code == 200
