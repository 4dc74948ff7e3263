"""Real tracking clients: tracker credentials, OwnTracks HTTP mode and Overland.

The payloads are the ones the OwnTracks booklet (JSON format) and the
Overland README document; the replies are checked byte for byte where the
client depends on them (Overland deletes its queue only on exactly
``{"result":"ok"}``; OwnTracks reads a JSON array of friends' messages).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from kares import clock
from tests.conftest import bearer, snapshot
from tests.test_families import join, new_family
from tests.test_location_ingest import member, stored

ALICE, BOB, CAROL = "+8613700002001", "+8613700002002", "+8613700002003"
TRACKERS = "/api/v1/location/trackers"


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def tracker(client: httpx.AsyncClient, me: dict, kind: str = "owntracks") -> dict:
    r = await client.post(
        TRACKERS, json={"name": "Jane's phone", "kind": kind}, headers=bearer(me["token"])
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def now_s() -> int:
    return int(clock.utcnow().timestamp())


def ot_location(tst: int, lat: float = 31.2304, lon: float = 121.4737, **kw: Any) -> dict:
    """A location message as the OwnTracks booklet documents it."""
    return {
        "_type": "location",
        "acc": 13,
        "alt": 26,
        "batt": 52,
        "bs": 1,
        "conn": "w",
        "created_at": tst + 2,
        "lat": lat,
        "lon": lon,
        "m": 1,
        "t": "u",
        "tid": "JJ",
        "tst": tst,
        "vac": 3,
        "vel": 36,
        **kw,
    }


async def named(client: httpx.AsyncClient, me: dict, name: str) -> None:
    r = await client.patch("/api/v1/me", json={"name": name}, headers=bearer(me["token"]))
    assert r.status_code == 200, r.text


# --- credentials -------------------------------------------------------------------------------


async def test_a_tracker_credential_is_shown_once_listed_with_its_last_use_and_revocable(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await member(client, sms, ALICE)
    t = await tracker(client, me)
    assert t["secret"].startswith("kares_t") and t["username"].startswith("jane-s-phone-")
    assert t["setup"] == {
        "url": "https://testserver/owntracks",
        "auth": "basic",
        "user": t["username"],
        "password": t["secret"],
        "token": None,
    }
    listed = (await client.get(TRACKERS, headers=bearer(me["token"]))).json()
    assert [x["id"] for x in listed] == [t["id"]]
    assert "secret" not in listed[0] and listed[0]["last_used_at"] is None
    clock.advance(120)
    r = await client.post(
        "/owntracks", json=ot_location(now_s()), headers=basic(t["username"], t["secret"])
    )
    assert r.status_code == 200, r.text
    listed = (await client.get(TRACKERS, headers=bearer(me["token"]))).json()
    assert listed[0]["last_used_at"] is not None and listed[0]["revoked"] is False
    r = await client.delete(f"{TRACKERS}/{t['id']}", headers=bearer(me["token"]))
    assert r.status_code == 204
    r = await client.post(
        "/owntracks", json=ot_location(now_s()), headers=basic(t["username"], t["secret"])
    )
    assert r.status_code == 401
    assert 'Basic realm="kares"' in r.headers["www-authenticate"]
    listed = (await client.get(TRACKERS, headers=bearer(me["token"]))).json()
    assert listed[0]["revoked"] is True


async def test_a_tracker_credential_can_only_upload_locations(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await member(client, sms, ALICE)
    t = await tracker(client, me, "overland")
    h = bearer(t["secret"])
    for method, path in (
        ("GET", "/api/v1/me"),
        ("GET", TRACKERS),
        ("GET", "/api/v1/families"),
        ("DELETE", "/api/v1/me/sessions"),
    ):
        r = await client.request(method, path, headers=h)
        assert r.status_code in (401, 403), (path, r.text)
        if r.status_code == 403:
            assert r.json()["code"] == "auth.tracker_scope"
    fix = {"t": clock.utcnow().isoformat(), "lat": 31.2, "lon": 121.4}
    r = await client.post("/api/v1/location/fixes", json={"fixes": [fix]}, headers=h)
    assert r.status_code == 200 and r.json()["accepted"] == 1


async def test_basic_auth_does_not_accept_a_person_s_session(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await member(client, sms, ALICE)
    r = await client.post("/owntracks", json=ot_location(now_s()), headers=basic("x", me["token"]))
    assert r.status_code == 401
    r = await client.get("/api/v1/me", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401 and r.json()["code"] == "auth.invalid_token"


@pytest.mark.parametrize(
    "body", [{"name": "", "kind": "owntracks"}, {"name": "x", "kind": "carrier pigeon"}, {}]
)
async def test_bad_tracker_requests_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, body: dict
) -> None:
    me = await member(client, sms, ALICE)
    before = await snapshot(db)
    r = await client.post(TRACKERS, json=body, headers=bearer(me["token"]))
    assert r.status_code == 422
    assert await snapshot(db) == before


# --- OwnTracks ---------------------------------------------------------------------------------


@pytest.fixture
async def family3(client: httpx.AsyncClient, sms: Any) -> dict[str, Any]:
    """Alice (owner), Bob (shares live) and Carol (shares nothing) in one family."""
    alice = await member(client, sms, ALICE)
    bob = await member(client, sms, BOB)
    carol = await member(client, sms, CAROL)
    await named(client, alice, "Alice Li")
    await named(client, bob, "Bob")
    fid = await new_family(client, alice, "Lis")
    await join(client, alice, fid, bob)
    await join(client, alice, fid, carol)
    r = await client.put(
        f"/api/v1/families/{fid}/members/me/sharing",
        json={"location": "off"},
        headers=bearer(carol["token"]),
    )
    assert r.status_code == 200, r.text
    return {"alice": alice, "bob": bob, "carol": carol, "family_id": fid}


async def test_owntracks_location_is_stored_and_the_reply_lists_who_shares_with_me(
    client: httpx.AsyncClient, sms: Any, db: Any, family3: dict
) -> None:
    alice, bob, carol = family3["alice"], family3["bob"], family3["carol"]
    tst = now_s() - 30
    # Bob and Carol have moved already (through our app)
    for who, lat in ((bob, 31.25), (carol, 31.26)):
        fix = {"id": "b1", "t": clock.utcnow().isoformat(), "lat": lat, "lon": 121.5, "battery": 77}
        r = await client.post(
            "/api/v1/location/fixes", json={"fixes": [fix]}, headers=bearer(who["token"])
        )
        assert r.json()["accepted"] == 1
    t = await tracker(client, alice)
    headers = {
        **basic(t["username"], t["secret"]),
        "X-Limit-U": t["username"],
        "X-Limit-D": "iphone",
        "Content-Type": "application/json",
    }
    r = await client.post("/owntracks", content=json.dumps(ot_location(tst)), headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    reply = r.json()
    assert isinstance(reply, list)
    mine = f"owntracks/{t['username']}/iphone"
    bobs = f"owntracks/kares-{bob['account']['id'][:12]}/kares"
    bob_tst = next(m["tst"] for m in reply if m.get("topic") == bobs and m["_type"] == "location")
    assert reply == [
        {"_type": "card", "tid": "JJ", "topic": mine, "name": "Alice Li"},
        {
            "_type": "location",
            "tid": "JJ",
            "lat": 31.2304,
            "lon": 121.4737,
            "tst": tst,
            "topic": mine,
            "acc": 13,
            "batt": 52,
            "vel": 36,
        },
        {"_type": "card", "tid": "B", "topic": bobs, "name": "Bob"},
        {
            "_type": "location",
            "tid": "B",
            "lat": 31.25,
            "lon": 121.5,
            "tst": bob_tst,
            "topic": bobs,
            "batt": 77,
        },
    ]
    # Carol shares nothing: not in the reply at all
    assert all(carol["account"]["id"][:12] not in m["topic"] for m in reply)
    rows = await stored(db, alice["account"]["id"])
    assert len(rows) == 1
    assert rows[0]["speed_mps"] == pytest.approx(10.0) and rows[0]["accuracy_m"] == 13
    # the app retries the same post: stored once
    r = await client.post("/owntracks", content=json.dumps(ot_location(tst)), headers=headers)
    assert r.status_code == 200
    assert len(await stored(db, alice["account"]["id"])) == 1


async def test_owntracks_bearer_auth_and_the_other_message_types(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, ALICE)
    t = await tracker(client, me)
    h = bearer(t["secret"])
    tst = now_s()
    transition = {
        "_type": "transition",
        "wtst": tst - 1000,
        "lat": 31.2304,
        "lon": 121.4737,
        "tst": tst - 5,
        "acc": 10,
        "tid": "JJ",
        "event": "enter",
        "desc": "Home",
        "t": "c",
    }
    r = await client.post("/owntracks", json=transition, headers=h)
    assert r.status_code == 200 and r.json()[0]["_type"] == "card"
    waypoints = {
        "_type": "waypoints",
        "waypoints": [
            {
                "_type": "waypoint",
                "desc": "Home",
                "lat": 31.23,
                "lon": 121.47,
                "rad": 120,
                "tst": 1700000000,
            },
            {
                "_type": "waypoint",
                "desc": "Gym",
                "lat": 31.25,
                "lon": 121.45,
                "rad": 20,
                "tst": 1700000100,
                "rid": "gym-1",
            },
            {"_type": "waypoint", "desc": "Nowhere", "lat": 0, "lon": 0, "rad": 50, "tst": 1},
        ],
    }
    r = await client.post("/owntracks", json=waypoints, headers=h)
    assert r.status_code == 200
    # the same region again (edited): one place, updated
    moved = {
        "_type": "waypoint",
        "desc": "Home",
        "lat": 31.231,
        "lon": 121.47,
        "rad": 150,
        "tst": 1700000000,
    }
    assert (await client.post("/owntracks", json=moved, headers=h)).status_code == 200
    async with db.engine.connect() as conn:
        from sqlalchemy import text

        rows = (
            await conn.execute(
                text("SELECT name, lat, radius_m, family_id FROM places ORDER BY name")
            )
        ).all()
    assert [tuple(r) for r in rows] == [("Gym", 31.25, 50.0, None), ("Home", 31.231, 150.0, None)]
    card = {"_type": "card", "name": "Jane", "face": base64.b64encode(b"\x89PNG").decode()}
    r = await client.post("/owntracks", json=card, headers=h)
    assert r.status_code == 200 and isinstance(r.json(), list)
    # what is not stored is still answered 200 (or the app resends it forever), with why
    for other, code in (
        ({"_type": "lwt", "tst": tst}, "owntracks.not_kept"),
        ({"_type": "encrypted", "data": "abc"}, "owntracks.encrypted"),
        ({"_type": "status"}, "owntracks.not_kept"),
        ({"_type": "cmd", "action": "reportLocation"}, "owntracks.not_kept"),
        ({"_type": "selfie"}, "owntracks.unknown_type"),
        ({"lat": 31.2, "lon": 121.4}, "owntracks.unknown_type"),
    ):
        r = await client.post("/owntracks", json=other, headers=h)
        assert r.status_code == 200 and r.content == b"[]", other
        assert r.headers["x-kares-refused"] == code, other
    assert len(await stored(db, me["account"]["id"])) == 1  # the transition's position


async def test_owntracks_refuses_a_foreign_user_and_malformed_posts(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, ALICE)
    t = await tracker(client, me)
    h = basic(t["username"], t["secret"])
    before = await snapshot(db)
    r = await client.post(
        "/owntracks", json=ot_location(now_s()), headers={**h, "X-Limit-U": "someone-else"}
    )
    assert r.status_code == 403 and r.json()["code"] == "owntracks.user_mismatch"
    for body, status, code in (
        (b"not json", 400, "request.bad"),
        (b"[" * 50_000, 400, "request.bad"),  # too deep to read, not a 500
        (b'{"_type": "location", "lat": NaN, "lon": 1, "tst": 1}', 400, "request.bad"),
    ):
        r = await client.post("/owntracks", content=body, headers=h)
        assert r.status_code == status, body[:80]
        assert r.json()["code"] == code
    # JSON the app may really send but that holds no usable message: 200, so that it
    # does not resend it forever, and the reason in X-Kares-Refused
    for body, code in (
        (b"[1, 2]", "owntracks.unknown_type"),
        (json.dumps({"_type": "location", "lat": "x", "lon": 1, "tst": 1}).encode(),
         "owntracks.invalid"),
        (json.dumps({"_type": "location", "lat": 1, "lon": 1}).encode(), "owntracks.invalid"),
        (json.dumps({"_type": "location", "lat": True, "lon": 1, "tst": 1}).encode(),
         "owntracks.invalid"),
        (json.dumps({"_type": "waypoints", "waypoints": 3}).encode(), "owntracks.invalid"),
        (b"", "owntracks.empty"),
    ):  # fmt: skip
        r = await client.post("/owntracks", content=body, headers=h)
        assert r.status_code == 200 and r.content == b"[]", body[:80]
        assert r.headers["x-kares-refused"] == code, body[:80]
    assert await snapshot(db) == before


async def test_an_impossible_owntracks_fix_is_answered_but_not_stored(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, ALICE)
    t = await tracker(client, me)
    r = await client.post(
        "/owntracks",
        json=ot_location(now_s(), lat=0, lon=0),
        headers=basic(t["username"], t["secret"]),
    )
    assert r.status_code == 200 and r.headers["x-kares-refused"] == "fix.null_island"
    assert await stored(db, me["account"]["id"]) == []


# --- Overland ----------------------------------------------------------------------------------


def overland_batch(n: int, start_s: int) -> dict:
    """A batch as Overland's README documents it."""
    locs = []
    for i in range(n):
        t = clock.utcnow().replace(microsecond=0) - timedelta(seconds=start_s - i * 10)
        locs.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [121.4737 + i * 1e-4, 31.2304]},
                "properties": {
                    "timestamp": t.astimezone().isoformat(),
                    "altitude": 0,
                    "speed": 4,
                    "horizontal_accuracy": 30,
                    "vertical_accuracy": -1,
                    "motion": ["driving", "stationary"],
                    "pauses": False,
                    "activity": "other_navigation",
                    "desired_accuracy": 100,
                    "deferred": 1000,
                    "significant_change": "disabled",
                    "locations_in_payload": n,
                    "battery_state": "charging",
                    "battery_level": 0.89,
                    "device_id": "",
                    "wifi": "launchlab",
                },
            }
        )
    return {"locations": locs, "current": locs[-1], "trip": None}


async def test_overland_batches_get_exactly_result_ok_and_are_stored_once(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, ALICE)
    t = await tracker(client, me, "overland")
    assert t["setup"] == {
        "url": "https://testserver/overland",
        "auth": "bearer",
        "user": None,
        "password": None,
        "token": t["secret"],
    }
    batch = overland_batch(30, 600)
    r = await client.post("/overland", json=batch, headers=bearer(t["secret"]))
    assert r.status_code == 200
    assert r.content == b'{"result":"ok"}'
    r = await client.post("/overland", json=batch, headers=bearer(t["secret"]))
    assert r.content == b'{"result":"ok"}'
    rows = await stored(db, me["account"]["id"])
    assert len(rows) == 30
    assert rows[0]["speed_mps"] == 4 and rows[0]["accuracy_m"] == 30


async def test_overland_refuses_what_is_not_an_overland_batch(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, ALICE)
    t = await tracker(client, me, "overland")
    h = bearer(t["secret"])
    before = await snapshot(db)
    for body, status, code in (
        (b"{", 400, "request.bad"),
        (b'{"locations": ' + b"[" * 50_000, 400, "request.bad"),  # too deep, not a 500
        (b'{"locations": 5}', 422, "overland.invalid"),
        (b'[{"type": "Feature"}]', 422, "overland.invalid"),
        (json.dumps(overland_batch(1001, 20000)).encode(), 413, "overland.batch_too_large"),
    ):
        r = await client.post("/overland", content=body, headers=h)
        assert r.status_code == status, r.text
        assert r.json()["code"] == code
    assert await snapshot(db) == before


async def test_an_overland_batch_is_taken_whole_when_some_features_cannot_be_read(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, ALICE)
    t = await tracker(client, me, "overland")
    batch = overland_batch(4, 100)
    del batch["locations"][1]["properties"]["timestamp"]
    batch["locations"][2]["geometry"] = {"type": "Point", "coordinates": [True, 31.2]}
    batch["locations"].append({"type": "Feature"})
    r = await client.post("/overland", json=batch, headers=bearer(t["secret"]))
    assert r.status_code == 200
    # Overland deletes the batch on "result": "ok"; what was not stored rides along
    assert r.json()["result"] == "ok"
    assert [(x["index"], x["code"]) for x in r.json()["refused"]] == [
        (1, "overland.unreadable"),
        (2, "overland.unreadable"),
        (4, "overland.unreadable"),
    ]
    assert r.headers["x-kares-refused"] == "overland.unreadable"
    rows = await stored(db, me["account"]["id"])
    assert [r["client_id"] for r in rows] == [
        f"ol::{ms}" for ms in (batch_ms(batch, 0), batch_ms(batch, 3))
    ]


def batch_ms(batch: dict, k: int) -> int:
    t = datetime.fromisoformat(batch["locations"][k]["properties"]["timestamp"])
    return int(t.timestamp() * 1000)
