"""The OwnTracks lane's steady path stores and answers exactly what the route does.

``POST /owntracks`` is served by a lane (``kares.lanes``); on SQLite a location
in the steady state (a live session, the guard's decision remembered, one
plausible new fix that crosses no place's edge) is stored on a bare
transaction (``owntracks._steady``, ``service.upload_steady``), and everything
else goes the route's way with a session. These tests run the same day of
posts for two identical families, one with the steady path and one without it,
and compare everything either leaves behind: replies, stored fixes, the last
location, place presence, notices, jobs, the tracker id.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from kares import clock
from kares.protocols import owntracks
from tests.conftest import bearer, query
from tests.test_families import join, new_family
from tests.test_location_clients import basic, named, ot_location, tracker
from tests.test_location_ingest import member, stored
from tests.test_location_read import share

HOME = (31.2000, 121.4700)


def north(metres: float) -> float:
    return HOME[0] + metres / 111_195


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"place_confirm_seconds": 60}


async def family(client: httpx.AsyncClient, sms: Any, n: int, base: int) -> dict[str, Any]:
    """Alice posts with OwnTracks; Bob shares his position and wants to know when
    she arrives at or leaves Home."""
    alice = await member(client, sms, f"+86137000090{n}1")
    bob = await member(client, sms, f"+86137000090{n}2")
    await named(client, alice, "Alice Li")
    await named(client, bob, "Bob")
    fid = await new_family(client, alice, f"Lis {n}")
    await join(client, alice, fid, bob)
    for who in (alice, bob):
        await share(client, who, fid, location="history")
    r = await client.post(
        f"/api/v1/families/{fid}/places",
        json={"name": "Home", "lat": HOME[0], "lon": HOME[1], "radius_m": 150},
        headers=bearer(alice["token"]),
    )
    assert r.status_code == 201, r.text
    place = r.json()["id"]
    r = await client.put(
        f"/api/v1/places/{place}/alerts",
        json={"subject_id": alice["account"]["id"]},
        headers=bearer(bob["token"]),
    )
    assert r.status_code == 200, r.text
    when = datetime.fromtimestamp(base - 100, UTC).isoformat()
    fix = {"id": "b1", "t": when, "lat": 31.25, "lon": 121.5}
    r = await client.post(
        "/api/v1/location/fixes", json={"fixes": [fix]}, headers=bearer(bob["token"])
    )
    assert r.json()["accepted"] == 1
    t = await tracker(client, alice)
    return {"alice": alice, "bob": bob, "tracker": t, "place": place}


def day(base: int) -> list[dict[str, Any]]:
    """A morning of posts: walking home, arriving, a retried post, two late ones
    (one plausible, one not), a teleport, a new tracker id, the other message
    types, leaving again."""
    posts: list[dict[str, Any]] = []

    def loc(dt: int, metres: float, **kw: Any) -> None:
        posts.append(ot_location(base + dt, north(metres), HOME[1], **kw))

    for dt, m in ((0, 2000), (10, 1500), (20, 1000), (30, 500)):
        loc(dt, m)
    for dt, m in ((40, 60), (50, 40), (60, 30), (70, 20), (80, 50), (90, 40)):
        loc(dt, m)
    loc(100, 30)  # confirms the arrival: Bob is told
    loc(110, 20)
    loc(60, 30)  # the app retries an old post
    loc(105, 25)  # a late one, new
    posts.append(ot_location(base + 115, 36.0, 121.47))  # a late one, 500 km away
    posts.append(ot_location(base + 120, 36.0, 121.47))  # 500 km in ten seconds
    loc(130, 20)
    loc(140, 20, tid="AL")  # the app's tracker id changed
    loc(150, 20, tid="AL")
    posts.append(ot_location(base + 160, north(20), HOME[1], _type="transition", tid="AL"))
    posts.append(
        {"_type": "waypoint", "desc": "Gym", "lat": 31.3, "lon": 121.5, "rad": 80, "tst": base}
    )
    posts.append({"_type": "card", "name": "Alice"})
    posts.append({"_type": "encrypted", "data": "AAAA"})
    for dt, m in ((170, 2000), (200, 2100), (240, 2000), (250, 1900), (260, 1800)):
        loc(dt, m, tid="AL")
    return posts


async def run(
    client: httpx.AsyncClient, fam: dict[str, Any], posts: list[dict[str, Any]]
) -> list[tuple[int, str | None, Any]]:
    t = fam["tracker"]
    headers = {
        **basic(t["username"], t["secret"]),
        "X-Limit-U": t["username"],
        "X-Limit-D": "phone",
        "Content-Type": "application/json",
    }
    out = []
    for p in posts:
        r = await client.post("/owntracks", content=json.dumps(p), headers=headers)
        assert r.status_code == 200, r.text
        out.append((r.status_code, r.headers.get("x-kares-refused"), r.json()))
    return out


def count_steady(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each post from now on was answered by the steady path."""
    taken: list[bool] = []
    steady = owntracks._steady

    async def counted(*a: Any, **kw: Any) -> Any:
        reply = await steady(*a, **kw)
        taken.append(reply is not None)
        return reply

    monkeypatch.setattr(owntracks, "_steady", counted)
    return taken


async def left_behind(db: Any, client: httpx.AsyncClient, fam: dict[str, Any]) -> dict[str, Any]:
    """Everything the posts left, with the family's own ids taken out."""
    alice, bob = fam["alice"]["account"]["id"], fam["bob"]["account"]["id"]
    fixes = [{k: v for k, v in f.items() if k != "received_ms"} for f in await stored(db, alice)]
    last = await query(
        db,
        "SELECT recorded_ms, lat, lon, accuracy_m, speed_mps, course_deg, battery, precise, "
        "(SELECT client_id FROM location_fixes f WHERE f.id = l.position) AS fix "
        "FROM location_last l WHERE account_id = :a",
        a=alice,
    )
    presence = await query(
        db,
        "SELECT inside, since_ms, seen_ms, pending_since_ms FROM place_presence "
        "WHERE account_id = :a",
        a=alice,
    )
    jobs = await query(
        db,
        "SELECT kind, payload, attempts FROM jobs WHERE account_id = :a ORDER BY kind, run_at",
        a=alice,
    )
    tids = await query(db, "SELECT tid FROM location_trackers WHERE account_id = :a", a=alice)
    places = await query(
        db,
        "SELECT name, lat, lon, radius_m, external_id FROM places "
        "WHERE account_id = :a AND family_id IS NULL",
        a=alice,
    )
    r = await client.get("/api/v1/notifications", headers=bearer(fam["bob"]["token"]))
    told = [(n["title"], n["data"]["event"]) for n in r.json() if n["category"] == "location"]
    assert bob not in json.dumps(fixes)
    return {
        "fixes": fixes,
        "last": last,
        "presence": presence,
        "jobs": jobs,
        "tids": tids,
        "places": places,
        "told": told,
    }


def neutral(replies: Any, fam: dict[str, Any]) -> Any:
    """The replies with the family's own user names and ids replaced by roles."""
    raw = json.dumps(replies)
    raw = raw.replace(fam["tracker"]["username"], "ALICE")
    raw = raw.replace(fam["bob"]["account"]["id"][:12], "BOB")
    return json.loads(raw)


async def test_the_steady_path_leaves_what_the_route_leaves(
    client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = int(clock.utcnow().timestamp()) - 3000
    posts = day(base)
    with_steady, without = await family(client, sms, 1, base), await family(client, sms, 2, base)

    taken = count_steady(monkeypatch)
    replies_on = await run(client, with_steady, posts)

    async def never(*a: Any, **kw: Any) -> None:
        return None

    monkeypatch.setattr(owntracks, "_steady", never)
    replies_off = await run(client, without, posts)

    if db.engine.dialect.name != "sqlite":
        assert taken == []  # PostgreSQL: every post goes the route's way
    else:
        assert len(taken) == len(posts)
        steady_state(taken)
    assert neutral(replies_on, with_steady) == neutral(replies_off, without)
    on = await left_behind(db, client, with_steady)
    off = await left_behind(db, client, without)
    assert on == off
    # and what they left is what the day says
    assert [e for _, e in on["told"]] == ["leave", "arrive"]
    assert on["told"][1][0] == "Alice Li arrived at Home"
    assert [f["flag"] for f in on["fixes"] if f["status"] == "flagged"] == ["fix.implied_speed"] * 2
    assert len(on["fixes"]) == len({p.get("tst") for p in posts if p["_type"] != "waypoint"}) - 1
    assert on["tids"] == [{"tid": "AL"}] and on["places"][0]["name"] == "Gym"
    assert on["last"][0]["recorded_ms"] == (base + 260) * 1000


def steady_state(taken: list[bool]) -> None:
    """The steady path carried the steady state, and only that."""
    assert sum(taken) >= 12, taken
    assert taken[0] is False  # the first post: nothing remembered yet
    assert taken[10] is False  # the arrival: Bob is told, which needs a session
    assert taken[12] is False  # a retried post
    assert taken[13] is True  # a late post that its stored neighbours agree with
    assert taken[14] is False  # a late post they outvote is flagged
    assert taken[15] is False  # the teleport is flagged
    assert taken[17] is False and taken[18] is True  # a new tracker id, then the same
    assert taken[19] is True  # a transition is a fix like any other


async def test_posts_in_flight_at_once_are_each_stored_once(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    base = int(clock.utcnow().timestamp()) - 3000
    fam = await family(client, sms, 3, base)
    # warm: the tracker and the guard's decision remembered, the day's pack planned
    await run(client, fam, [ot_location(base, north(3000), HOME[1])])
    # 60 posts, eight at a time, in an order that sends some late
    order = list(range(1, 61))
    random.Random(7).shuffle(order)
    posts = [ot_location(base + 10 * k, north(3000 + k), HOME[1]) for k in order]
    t = fam["tracker"]
    headers = {**basic(t["username"], t["secret"]), "Content-Type": "application/json"}
    gate = asyncio.Semaphore(8)

    async def post(p: dict[str, Any]) -> int:
        async with gate:
            r = await client.post("/owntracks", content=json.dumps(p), headers=headers)
            return r.status_code

    assert set(await asyncio.gather(*(post(p) for p in posts))) == {200}
    rows = await stored(db, fam["alice"]["account"]["id"])
    assert sorted(r["recorded_ms"] for r in rows) == [(base + 10 * k) * 1000 for k in range(61)]
    assert all(r["status"] == "ok" for r in rows)
    last = (await left_behind(db, client, fam))["last"][0]
    assert last["recorded_ms"] == (base + 600) * 1000
    assert re.fullmatch(r"ot:phone:\d+:[\d.]+,[\d.]+", last["fix"])
