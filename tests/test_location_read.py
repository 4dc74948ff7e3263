"""Reading location: the family map and its live stream, tracks (simplified and
raw), the timeline of a synthetic day, GPX/GeoJSON export and import, and
places with arrive/leave alerts that do not flap. Every read of another
member goes through the guard and that member's sharing choice."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kares import clock
from tests.conftest import POLICY_VERSION, bearer, sign_up, snapshot
from tests.support.asgi import http_scope
from tests.support.tracks import DAY0, reference_day
from tests.test_families import join, new_family
from tests.test_location_clients import named
from tests.test_location_ingest import member, stored, upload

ALICE, BOB, CAROL, DAN = "+8613700003001", "+8613700003002", "+8613700003003", "+8613700003004"


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms, UTC).isoformat()


async def share(client: httpx.AsyncClient, me: dict, fid: str, **body: Any) -> None:
    r = await client.put(
        f"/api/v1/families/{fid}/members/me/sharing", json=body, headers=bearer(me["token"])
    )
    assert r.status_code == 200, r.text


@pytest.fixture
async def fam(client: httpx.AsyncClient, sms: Any) -> dict[str, Any]:
    """Alice and Bob share live; Carol shares history; Dan is in no family of theirs."""
    alice = await member(client, sms, ALICE)
    bob = await member(client, sms, BOB)
    carol = await member(client, sms, CAROL)
    dan = await member(client, sms, DAN)
    for who, name in ((alice, "Alice"), (bob, "Bob"), (carol, "Carol")):
        await named(client, who, name)
    fid = await new_family(client, alice, "Lis")
    await join(client, alice, fid, bob)
    await join(client, alice, fid, carol)
    await share(client, carol, fid, location="history")
    return {"alice": alice, "bob": bob, "carol": carol, "dan": dan, "fid": fid}


def at(seconds_ago: float, lat: float, lon: float = 121.47, **kw: Any) -> dict:
    t = clock.utcnow() - timedelta(seconds=seconds_ago)
    return {
        "id": f"f{seconds_ago}-{lat}",
        "t": t.isoformat(),
        "lat": lat,
        "lon": lon,
        "accuracy_m": 10,
        **kw,
    }


# --- the family map ----------------------------------------------------------------------------


async def test_the_map_shows_who_shares_and_hides_who_does_not(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob, carol = fam["alice"], fam["bob"], fam["carol"]
    for i, who in enumerate((alice, bob, carol)):
        r = await upload(client, who, [at(30, 31.2 + i / 100, battery=50 + i)])
        assert r.json()["accepted"] == 1
    url = f"/api/v1/families/{fam['fid']}/map"
    body = (await client.get(url, headers=bearer(alice["token"]))).json()
    by = {m["name"]: m for m in body["members"]}
    assert by["Bob"]["sharing"] == "live" and by["Bob"]["position"]["lat"] == pytest.approx(31.21)
    assert by["Bob"]["battery"] == 51 and by["Bob"]["position"]["precise"] is True
    assert by["Carol"]["position"]["lat"] == pytest.approx(31.22)
    # Bob stops sharing, Carol pauses: both still listed, without a position
    await share(client, bob, fam["fid"], location="off")
    until = (clock.utcnow() + timedelta(hours=2)).isoformat()
    await share(client, carol, fam["fid"], paused_until=until)
    body = (await client.get(url, headers=bearer(alice["token"]))).json()
    by = {m["name"]: m for m in body["members"]}
    assert by["Bob"]["sharing"] == "off" and by["Bob"]["position"] is None
    assert by["Bob"]["battery"] is None
    assert by["Carol"]["sharing"] == "paused" and by["Carol"]["position"] is None
    assert by["Alice"]["position"]["lat"] == pytest.approx(31.2)  # always oneself
    # Bob himself still sees his own position
    body = (await client.get(url, headers=bearer(bob["token"]))).json()
    assert {m["name"]: m for m in body["members"]}["Bob"]["position"] is not None
    # someone outside the family does not learn it exists
    r = await client.get(url, headers=bearer(fam["dan"]["token"]))
    assert r.status_code == 404


async def test_a_viewer_without_precise_location_sees_everyone_approximately(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob = fam["alice"], fam["bob"]
    await upload(client, bob, [at(10, 31.234567, 121.476543)])
    r = await client.post(
        "/api/v1/me/consents",
        json={
            "subject": "category:location.precise",
            "action": "withdraw",
            "policy_version": POLICY_VERSION,
        },
        headers=bearer(alice["token"]),
    )
    assert r.status_code == 201, r.text
    body = await client.get(f"/api/v1/families/{fam['fid']}/map", headers=bearer(alice["token"]))
    pos = {m["name"]: m for m in body.json()["members"]}["Bob"]["position"]
    assert (pos["lat"], pos["lon"], pos["precise"]) == (31.23, 121.48, False)


def sse_events(r: httpx.Response) -> list[tuple[str, Any]]:
    """The events of a server-sent event stream, in order, as (kind, data)."""
    events = []
    for block in r.text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
            for line in block.splitlines()
            if not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def open_stream(
    client: httpx.AsyncClient, me: dict, seconds: float = 5
) -> asyncio.Task[httpx.Response]:
    """A stream of ``me`` in a task, once it has sent its snapshot and subscribed."""
    from kares import live

    task = asyncio.create_task(
        client.get(
            "/api/v1/location/stream",
            params={"max_seconds": seconds},
            headers=bearer(me["token"]),
        )
    )
    for _ in range(250):
        if live.hub.connected([me["account"]["id"]]):
            return task
        await asyncio.sleep(0.02)
    raise AssertionError("the stream never subscribed")


async def test_the_stream_sends_a_snapshot_then_moves_rechecked_at_send_time(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob, carol = fam["alice"], fam["bob"], fam["carol"]
    await upload(client, bob, [at(60, 31.20)])

    async def listen() -> httpx.Response:
        return await client.get(
            "/api/v1/location/stream", params={"max_seconds": 3}, headers=bearer(alice["token"])
        )

    task = asyncio.create_task(listen())
    from kares import live

    for _ in range(500):  # the stream subscribed (a busy machine may take seconds)
        if live.hub.connected([alice["account"]["id"]]):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the stream never subscribed")
    await upload(client, bob, [at(5, 31.25)])
    await share(client, carol, fam["fid"], location="off")
    await upload(client, carol, [at(4, 31.26)])
    r = await asyncio.wait_for(task, timeout=15)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[0][0] == "snapshot"
    (snap,) = events[0][1]["families"]
    by = {m["name"]: m for m in snap["members"]}
    assert by["Bob"]["position"]["lat"] == pytest.approx(31.20)
    moves = [e for kind, e in events[1:] if kind == "location"]
    assert {"account_id": bob["account"]["id"]}.items() <= moves[0].items()
    assert moves[0]["position"]["lat"] == pytest.approx(31.25)
    carol_moves = [m for m in moves if m["account_id"] == carol["account"]["id"]]
    assert carol_moves == [{"account_id": carol["account"]["id"], "position": None}]


async def test_the_stream_ends_at_the_next_event_once_the_session_is_revoked(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob = fam["alice"], fam["bob"]
    again = await sign_up(client, sms, ALICE)
    task = await open_stream(client, alice, seconds=10)
    r = await client.delete(
        f"/api/v1/me/sessions/{alice['session_id']}", headers=bearer(again["token"])
    )
    assert r.status_code == 204
    await upload(client, bob, [at(5, 31.25)])
    r = await asyncio.wait_for(task, timeout=15)
    events = sse_events(r)
    assert [kind for kind, _ in events] == ["snapshot", "end"]
    assert events[1][1]["code"] == "auth.invalid_token"
    assert "31.25" not in r.text


async def test_the_stream_ends_at_the_next_event_once_consent_is_withdrawn(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob = fam["alice"], fam["bob"]
    task = await open_stream(client, alice, seconds=10)
    r = await client.post(
        "/api/v1/me/consents",
        json={"subject": "policy", "action": "withdraw", "policy_version": POLICY_VERSION},
        headers=bearer(alice["token"]),
    )
    assert r.status_code == 201, r.text
    await upload(client, bob, [at(5, 31.25)])
    r = await asyncio.wait_for(task, timeout=15)
    events = sse_events(r)
    assert [kind for kind, _ in events] == ["snapshot", "end"]
    assert events[1][1]["code"] == "consent.policy_required"
    assert "31.25" not in r.text


async def test_someone_joining_sends_a_snapshot_and_their_moves_follow(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, dan = fam["alice"], fam["dan"]
    from kares import live

    task = await open_stream(client, alice, seconds=3)
    await join(client, alice, fam["fid"], dan)
    # the join's notices reach the stream, which re-reads the family and starts
    # watching dan; a move made before that arrives in the snapshot, one after
    # it as a location event
    for _ in range(250):
        if any(
            dan["account"]["id"] in sub.watching
            for sub in live.hub._by_account.get(alice["account"]["id"], ())
        ):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the stream never started watching the newcomer")
    await upload(client, dan, [at(5, 31.27)])
    events = sse_events(await asyncio.wait_for(task, timeout=15))
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["snapshot", "snapshot"], kinds
    (fam_after,) = events[1][1]["families"]
    assert dan["account"]["id"] in {m["account_id"] for m in fam_after["members"]}
    moves = [e for kind, e in events if kind == "location"]
    assert moves[-1]["account_id"] == dan["account"]["id"]
    assert moves[-1]["position"]["lat"] == pytest.approx(31.27)


async def test_a_stream_that_falls_behind_gets_a_snapshot_instead_of_the_backlog(
    client: httpx.AsyncClient, sms: Any, fam: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kares import live

    alice, bob = fam["alice"], fam["bob"]
    await upload(client, bob, [at(30, 31.21)])
    monkeypatch.setattr(live, "QUEUE_SIZE", 2)
    task = await open_stream(client, alice, seconds=2)
    for seq in range(10):  # a burst the stream cannot take in between
        live.hub.deliver(kind="location", about=bob["account"]["id"], seq=1000 + seq)
    events = sse_events(await asyncio.wait_for(task, timeout=15))
    assert [kind for kind, _ in events] == ["snapshot", "snapshot"]
    (snap,) = events[1][1]["families"]
    by = {m["account_id"]: m for m in snap["members"]}
    assert by[bob["account"]["id"]]["position"]["lat"] == pytest.approx(31.21)


async def test_a_crowd_opening_maps_at_once_queues_without_holding_the_pool(
    app: Any, client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    """Everyone's map reconnecting at once (a server restart): the streams queue for
    their turn to read their first snapshot, and none of them holds a connection
    while it queues, so the pool stays free for everything else and none is refused."""
    from kares import live

    pool = app.state.runtime.db.engine.pool
    members = [fam[n] for n in ("alice", "bob", "carol")]
    crowd = 3 * len(members)
    async with live.hub.reading():  # every reading turn taken: the streams must queue
        async with contextlib.AsyncExitStack() as held:
            for _ in range(live.READERS - 1):
                await held.enter_async_context(live.hub.reading())
            tasks = [
                asyncio.create_task(
                    client.get(
                        "/api/v1/location/stream",
                        params={"max_seconds": 1},
                        headers=bearer(members[i % len(members)]["token"]),
                    )
                )
                for i in range(crowd)
            ]
            for _ in range(100):  # until each has passed the guard and waits for its turn
                await asyncio.sleep(0.02)
            assert not any(t.done() for t in tasks)
            assert pool.checkedout() == 0
    answers = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    assert [r.status_code for r in answers] == [200] * crowd
    assert all(sse_events(r)[0][0] == "snapshot" for r in answers)


async def test_a_waiting_stream_holds_no_connection_and_goes_when_the_client_does(
    app: Any, client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    """Driven as the server drives it: the client leaves while the stream waits,
    long before the next ping, and the stream is gone at once."""
    from kares import live

    alice = fam["alice"]
    left = asyncio.Event()
    sent: list[dict[str, Any]] = []
    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        if asked == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(
        "GET",
        "/api/v1/location/stream",
        [
            (b"authorization", f"Bearer {alice['token']}".encode()),
        ],
    )
    task = asyncio.create_task(app(scope, receive, send))
    for _ in range(250):
        if live.hub.connected([alice["account"]["id"]]) and len(sent) >= 2:
            break
        await asyncio.sleep(0.02)
    assert sent[0]["status"] == 200 and b"event: snapshot" in sent[1]["body"]
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert b"content-length" not in headers  # a stream has no length
    await asyncio.sleep(0.1)
    assert app.state.runtime.db.engine.pool.checkedout() == 0
    left.set()
    await asyncio.wait_for(task, timeout=2)  # the next ping would be 15 s away
    assert not live.hub.connected([alice["account"]["id"]])


# --- tracks, timelines, export and import ------------------------------------------------------


def synthetic_day() -> tuple[list[dict], Any]:
    """The reference day (home, drive, work, walk, lunch, walk, work, drive with a
    gap, home), moved to end now, as upload fixes."""
    b = reference_day()
    shift = clock.utcnow().timestamp() - (DAY0 + 86_400) - 60
    fixes = [
        {
            "id": f"d{i}",
            "t": iso(p.t + shift),
            "lat": p.lat,
            "lon": p.lon,
            **({"accuracy_m": p.acc} if p.acc is not None else {}),
            **({"speed_mps": p.speed} if p.speed is not None else {}),
        }
        for i, p in enumerate(b.points)
    ]
    return fixes, (b, shift)


async def upload_all(client: httpx.AsyncClient, me: dict, fixes: list[dict]) -> None:
    for k in range(0, len(fixes), 1000):
        r = await upload(client, me, fixes[k : k + 1000])
        assert r.status_code == 200, r.text


async def test_a_members_track_needs_their_history_sharing(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob = fam["alice"], fam["bob"]
    fixes = [at(600 - i, 31.2 + i * 1e-4) for i in range(300)]
    await upload_all(client, bob, fixes)
    url = f"/api/v1/location/{bob['account']['id']}/track"
    r = await client.get(url, headers=bearer(alice["token"]))
    assert r.status_code == 403 and r.json()["code"] == "sharing.off"  # live only
    await share(client, bob, fam["fid"], location="history")
    r = await client.get(url, headers=bearer(alice["token"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total_points"] == 300 and not body["raw"]
    assert len(body["points"]) == 2  # a straight line
    # raw, in pages
    got: list[dict] = []
    cursor = None
    from kares.location import api as location_api

    location_api.RAW_PAGE, old = 120, location_api.RAW_PAGE
    try:
        while True:
            params: dict[str, Any] = {"raw": "true"}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get(url, params=params, headers=bearer(alice["token"]))).json()
            got += page["points"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    finally:
        location_api.RAW_PAGE = old
    assert len(got) == 300 and got == sorted(got, key=lambda p: p["t"])
    r = await client.get(url, headers=bearer(fam["dan"]["token"]))
    assert r.status_code == 404
    r = await client.get(
        url,
        params={"from": "2026-01-01T00:00:00+00:00", "to": "2026-03-01T00:00:00+00:00"},
        headers=bearer(alice["token"]),
    )
    assert r.status_code == 422 and r.json()["code"] == "location.range_too_long"


async def test_timeline_of_a_synthetic_day_names_stays_by_family_places(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice = fam["alice"]
    fixes, (b, shift) = synthetic_day()
    await upload_all(client, alice, fixes)
    home = b.stays[0]
    r = await client.post(
        f"/api/v1/families/{fam['fid']}/places",
        json={"name": "Home", "lat": home.lat, "lon": home.lon, "radius_m": 150},
        headers=bearer(alice["token"]),
    )
    assert r.status_code == 201, r.text
    start = iso(DAY0 + shift)
    end = iso(DAY0 + 86_400 + shift + 1)
    r = await client.get(
        f"/api/v1/location/{alice['account']['id']}/timeline",
        params={"from": start, "to": end},
        headers=bearer(alice["token"]),
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    kinds = [(i["kind"], i.get("mode")) for i in items]
    assert kinds[0] == ("stay", None) and kinds[-1] == ("stay", None)
    trips = [i for i in items if i["kind"] == "trip"]
    modes = [t["mode"] for t in trips]
    assert modes[0] == "driving" and modes[-1] == "driving"
    assert modes.count("walking") == 2
    assert items[0]["place"]["name"] == "Home" and items[-1]["place"]["name"] == "Home"
    assert trips[0]["from_place"]["name"] == "Home"
    assert trips[0]["summary"] is not None and trips[0]["events"]
    # stays and trips never overlap and follow each other
    for a, c in itertools.pairwise(items):
        assert a["end"] <= c["start"]


async def import_file(
    client: httpx.AsyncClient, me: dict, body: bytes, ctype: str
) -> httpx.Response:
    """A file sent to the import route as a person's app sends it."""
    return await client.post(
        "/api/v1/location/import",
        content=body,
        headers={**bearer(me["token"]), "Content-Type": ctype},
    )


async def test_export_as_gpx_and_geojson_and_import_back(
    client: httpx.AsyncClient, sms: Any, db: Any, fam: dict
) -> None:
    alice, dan = fam["alice"], fam["dan"]
    fixes = [at(900 - i * 3, 31.2 + i * 1e-4, 121.47 + i * 5e-5) for i in range(200)]
    await upload_all(client, alice, fixes)
    url = f"/api/v1/location/{alice['account']['id']}/export"
    gpx = await client.get(url, params={"format": "gpx"}, headers=bearer(alice["token"]))
    assert gpx.status_code == 200 and gpx.headers["content-type"] == "application/gpx+xml"
    assert gpx.text.count("<trkpt") == 200
    geo = await client.get(url, params={"format": "geojson"}, headers=bearer(alice["token"]))
    assert geo.headers["content-type"] == "application/geo+json"
    assert len(geo.json()["features"]) == 200
    # Dan imports both into his own history: stored once however often
    for body, ctype in (
        (gpx.content, "application/gpx+xml"),
        (geo.content, "application/geo+json"),
    ):
        for attempt in range(2):
            r = await import_file(client, dan, body, ctype)
            assert r.status_code == 200, r.text
            res = r.json()
            assert res["points"] == 200
            assert (res["accepted"], res["duplicates"]) == ((200, 0) if attempt == 0 else (0, 200))
    rows = await stored(db, dan["account"]["id"])
    assert len(rows) == 400 and all(r["source"] == "import" for r in rows)
    assert rows[0]["lat"] == pytest.approx(31.2, abs=1e-6)


@pytest.mark.parametrize(
    ("body", "ctype", "status", "code"),
    [
        (b"<gpx><trk><trkseg><trkpt lat='x'", "application/gpx+xml", 422, "import.invalid_gpx"),
        (b'{"type": "Point"}', "application/geo+json", 422, "import.invalid_geojson"),
        (b"{not json", "application/geo+json", 400, "request.bad"),
        (b"\xff\xfe{}", "application/geo+json", 400, "request.bad"),
        (
            b'{"type": "Feature", "geometry": ' + b"[" * 50_000,
            "application/geo+json",
            400,
            "request.bad",
        ),  # too deep to read, not a 500
        (b"GIF89a", "image/gif", 415, "import.unsupported"),
    ],
)
async def test_bad_import_files_store_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, body: bytes, ctype: str, status: int, code: str
) -> None:
    me = await member(client, sms, DAN)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/location/import",
        content=body,
        headers={**bearer(me["token"]), "Content-Type": ctype},
    )
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert await snapshot(db) == before


async def test_a_geojson_line_with_coordinate_times_imports(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, DAN)
    t0 = clock.utcnow().timestamp() - 3600
    doc = {
        "type": "Feature",
        "geometry": {
            "type": "LineString",
            "coordinates": [[121.47, 31.2], [121.471, 31.201], [121.472, 31.202]],
        },
        "properties": {"coordTimes": [iso(t0), iso(t0 + 10), None]},
    }
    r = await client.post("/api/v1/location/import", json=doc, headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "format": "geojson",
        "points": 3,
        "accepted": 2,
        "duplicates": 0,
        "rejected": 1,
        "flagged": 0,
        "refused": [
            {
                "point": 2,
                "time": None,
                "code": "import.no_time",
                "detail": "The point has no time, so it cannot be placed in anyone's history.",
            }
        ],
        "refused_truncated": False,
    }


# --- places ------------------------------------------------------------------------------------


HOME = (31.2000, 121.4700)


def north(metres: float) -> float:
    return HOME[0] + metres / 111_195


async def inbox(client: httpx.AsyncClient, me: dict) -> list[dict]:
    r = await client.get("/api/v1/notifications", headers=bearer(me["token"]))
    return [n for n in r.json() if n["category"] == "location"]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"place_confirm_seconds": 60}


async def test_arrive_and_leave_alerts_do_not_flap_at_the_border(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob, carol = fam["alice"], fam["bob"], fam["carol"]
    r = await client.post(
        f"/api/v1/families/{fam['fid']}/places",
        json={"name": "School", "lat": HOME[0], "lon": HOME[1], "radius_m": 100},
        headers=bearer(alice["token"]),
    )
    place = r.json()
    # Alice wants to know about Bob; Carol about anyone
    r = await client.put(
        f"/api/v1/places/{place['id']}/alerts",
        json={"subject_id": bob["account"]["id"], "on_arrive": True, "on_leave": True},
        headers=bearer(alice["token"]),
    )
    assert r.status_code == 200 and len(r.json()) == 1
    r = await client.put(
        f"/api/v1/places/{place['id']}/alerts", json={}, headers=bearer(carol["token"])
    )
    assert r.status_code == 200
    # Bob far away, then walking in; jitter across the border (90 m <-> 130 m)
    seq = [(900, 2000), (840, 1000), (780, 400), (720, 60), (660, 40)]
    seq += [(600 - 30 * i, 90 if i % 2 else 130) for i in range(10)]
    seq += [(200, 500), (140, 800)]  # leaves for good
    fixes = [at(ago, north(m)) for ago, m in seq]
    for f in fixes:  # one at a time, as a phone reports
        assert (await upload(client, bob, [f])).status_code == 200
    a = await inbox(client, alice)
    assert [n["data"]["event"] for n in reversed(a)] == ["arrive", "leave"]
    assert a[-1]["title"] == "Bob arrived at School"
    c = await inbox(client, carol)
    assert [n["data"]["event"] for n in reversed(c)] == ["arrive", "leave"]
    assert await inbox(client, bob) == []  # not told about himself
    listed = (
        await client.get(f"/api/v1/families/{fam['fid']}/places", headers=bearer(alice["token"]))
    ).json()
    assert listed[0]["present"] == []


async def test_one_outlier_or_a_late_fix_never_alerts(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob = fam["alice"], fam["bob"]
    r = await client.post(
        f"/api/v1/families/{fam['fid']}/places",
        json={"name": "Home", "lat": HOME[0], "lon": HOME[1], "radius_m": 150},
        headers=bearer(alice["token"]),
    )
    pid = r.json()["id"]
    await client.put(f"/api/v1/places/{pid}/alerts", json={}, headers=bearer(alice["token"]))
    await upload(client, bob, [at(600, north(10)), at(540, north(20))])  # at home
    await upload(client, bob, [at(480, north(3000))])  # one wild fix
    await upload(client, bob, [at(420, north(15)), at(360, north(5))])
    await upload(client, bob, [at(3000, north(5000)), at(2900, north(6000))])  # late, old
    assert await inbox(client, alice) == []
    listed = (await client.get(f"/api/v1/places/{pid}", headers=bearer(alice["token"]))).json()
    assert [p["account_id"] for p in listed["present"]] == [bob["account"]["id"]]


async def test_no_alert_about_someone_who_stopped_sharing(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob = fam["alice"], fam["bob"]
    r = await client.post(
        f"/api/v1/families/{fam['fid']}/places",
        json={"name": "Home", "lat": HOME[0], "lon": HOME[1]},
        headers=bearer(alice["token"]),
    )
    pid = r.json()["id"]
    await client.put(f"/api/v1/places/{pid}/alerts", json={}, headers=bearer(alice["token"]))
    await upload(client, bob, [at(900, north(5000))])
    await share(client, bob, fam["fid"], location="off")
    await upload(client, bob, [at(600, north(10)), at(500, north(10))])
    assert await inbox(client, alice) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "", "lat": 31.2, "lon": 121.4}, "request.invalid"),
        ({"name": "X", "lat": 91, "lon": 121.4}, "request.invalid"),
        ({"name": "X", "lat": 31.2, "lon": 121.4, "radius_m": 10}, "request.invalid"),
        ({"name": "X", "lat": 0, "lon": 0}, "place.invalid"),
    ],
)
async def test_bad_places_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, fam: dict, body: dict, code: str
) -> None:
    before = await snapshot(db)
    r = await client.post(
        f"/api/v1/families/{fam['fid']}/places", json=body, headers=bearer(fam["alice"]["token"])
    )
    assert r.status_code == 422 and r.json()["code"] == code
    assert await snapshot(db) == before


async def test_places_are_managed_by_their_family(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    alice, bob, dan = fam["alice"], fam["bob"], fam["dan"]
    r = await client.post(
        f"/api/v1/families/{fam['fid']}/places",
        json={"name": "Gym", "lat": 31.21, "lon": 121.45},
        headers=bearer(bob["token"]),
    )
    assert r.status_code == 201
    pid = r.json()["id"]
    assert (
        await client.get(f"/api/v1/places/{pid}", headers=bearer(dan["token"]))
    ).status_code == 404
    r = await client.patch(
        f"/api/v1/places/{pid}", json={"radius_m": 300}, headers=bearer(bob["token"])
    )
    assert r.status_code == 200 and r.json()["radius_m"] == 300
    r = await client.patch(
        f"/api/v1/places/{pid}", json={"name": "Dan's"}, headers=bearer(dan["token"])
    )
    assert r.status_code == 404
    r = await client.delete(f"/api/v1/places/{pid}", headers=bearer(alice["token"]))  # owner
    assert r.status_code == 204
    assert (
        await client.get(f"/api/v1/places/{pid}", headers=bearer(bob["token"]))
    ).status_code == 404


# --- SOS from the last location ------------------------------------------------------------


async def test_an_sos_without_a_position_sends_the_last_known_one(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    bob = fam["bob"]
    await upload(client, bob, [at(120, 31.2345, 121.4567)])
    r = await client.post("/api/v1/sos", json={}, headers=bearer(bob["token"]))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["lat"], body["lon"], body["precision"]) == (31.2345, 121.4567, "precise")


async def test_a_burst_of_new_places_stops_at_the_cap(
    client: httpx.AsyncClient, sms: Any, fam: dict
) -> None:
    """More places asked for at once than a family may have: exactly the cap is kept."""
    from kares.location.places import MAX_PLACES_PER_FAMILY as CAP

    alice = fam["alice"]
    url = f"/api/v1/families/{fam['fid']}/places"
    answers = await asyncio.gather(
        *(
            client.post(
                url,
                json={"name": f"Place {i}", "lat": 31.2 + i * 1e-3, "lon": 121.4, "radius_m": 100},
                headers=bearer(alice["token"]),
            )
            for i in range(CAP + 30)
        )
    )
    assert sorted(r.status_code for r in answers) == [201] * CAP + [409] * 30, {
        r.status_code: r.text for r in answers
    }
    listed = (await client.get(url, headers=bearer(alice["token"]))).json()
    assert len(listed) == CAP


async def test_booleans_are_not_numbers_and_numbers_are_not_times(
    client: httpx.AsyncClient, sms: Any, db: Any, fam: dict
) -> None:
    """true is not 1 and a bare number is not a time: a place at (1, 0), a fix at
    (true, false) or a track to "0.5" (1970) is refused, and nothing is stored."""
    alice = fam["alice"]
    h = bearer(alice["token"])
    before = await snapshot(db)
    places = f"/api/v1/families/{fam['fid']}/places"
    for body in (
        {"name": "Home", "lat": True, "lon": False},
        {"name": "Home", "lat": 31.2, "lon": 121.4, "radius_m": True},
        {"name": "Home", "lat": "31.2", "lon": 121.4},
    ):
        r = await client.post(places, json=body, headers=h)
        assert (r.status_code, r.json()["code"]) == (422, "request.invalid"), body
    for fix in (
        {"t": iso(DAY0), "lat": True, "lon": False},
        {"t": iso(DAY0), "lat": 31.2, "lon": 121.4, "battery": True},
        {"t": iso(DAY0), "lat": 31.2, "lon": 121.4, "accuracy_m": "10"},
    ):
        r = await client.post("/api/v1/location/fixes", json={"fixes": [fix]}, headers=h)
        assert (r.status_code, r.json()["code"]) == (422, "request.invalid"), fix
    me = alice["account"]["id"]
    for query in ({"to": "0.5"}, {"from": "1733446800"}, {"from": "1e9"}):
        r = await client.get(f"/api/v1/location/{me}/track", params=query, headers=h)
        assert (r.status_code, r.json()["code"]) == (422, "request.invalid"), query
    assert await snapshot(db) == before
