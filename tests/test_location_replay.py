"""Replays of what real clients send, as hand-written reconstructions kept in
tests/data/clients/ (its README says where each one's shape comes from; none is a
capture of the app): OwnTracks for Android and iOS in HTTP mode, an Overland
batch, GPX files in the shape of GPSLogger, Strava and OsmAnd, and GeoJSON in the
shape of togeojson and Compass. Files that real software wrote are replayed by
tests/test_location_exports.py.

Each capture is sent as the client sends it, except its times, which are moved
by one offset (every time of a capture by the same amount) so that the capture
ends a few minutes ago: the fixes' retention window would refuse a capture from
last year as ``fix.too_old``. (A GPX file keeps every other byte; a JSON capture
is written back compactly, keys in their order, to move its times; an empty
body is sent empty.) Each replay asserts what
was stored and what was not, with which code."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kares import clock
from tests.conftest import bearer
from tests.test_location_clients import basic, tracker
from tests.test_location_ingest import last_of, member, stored
from tests.test_location_read import import_file

DATA = Path(__file__).parent / "data" / "clients"
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})")
_EPOCH_KEYS = frozenset({"tst", "created_at", "wtst", "from", "to"})  # OwnTracks' epoch seconds
_GPX_TIME = re.compile(rb"<time>([^<]+)</time>")


def _parse(v: str) -> datetime:
    return datetime.fromisoformat(v.replace("Z", "+00:00"))


def _times(v: Any, key: str = "") -> list[float]:
    if isinstance(v, dict):
        return [t for k, x in v.items() for t in _times(x, k)]
    if isinstance(v, list):
        return [t for x in v for t in _times(x, key)]
    if isinstance(v, str) and _ISO.fullmatch(v):
        return [_parse(v).timestamp()]
    if isinstance(v, int) and not isinstance(v, bool) and key in _EPOCH_KEYS:
        return [float(v)]
    return []


def _moved(v: Any, by: float, key: str = "") -> Any:
    if isinstance(v, dict):
        return {k: _moved(x, by, k) for k, x in v.items()}
    if isinstance(v, list):
        return [_moved(x, by, key) for x in v]
    if isinstance(v, str) and _ISO.fullmatch(v):
        t = _parse(v) + timedelta(seconds=by)
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(v, int) and not isinstance(v, bool) and key in _EPOCH_KEYS:
        return v + int(by)
    return v


def offset(newest_s: float) -> float:
    """Seconds to add to a capture's times so that its newest is ten minutes ago."""
    return (clock.utcnow() - timedelta(minutes=10)).timestamp() - newest_s


def json_capture(*names: str) -> list[bytes]:
    """JSON captures (one request body each), their times moved together; an empty
    file is an empty body, sent as it is."""
    raw = [(DATA / n).read_bytes() for n in names]
    docs = [json.loads(b) if b.strip() else None for b in raw]
    by = offset(max(t for d in docs for t in _times(d)))
    return [
        b if d is None else json.dumps(_moved(d, by), separators=(",", ":")).encode()
        for b, d in zip(raw, docs, strict=True)
    ]


def gpx_capture(name: str) -> bytes:
    raw = (DATA / name).read_bytes()
    times = [_parse(m.decode()).timestamp() for m in _GPX_TIME.findall(raw)]
    by = offset(max(times))

    def move(m: re.Match[bytes]) -> bytes:
        t = _parse(m.group(1).decode()) + timedelta(seconds=by)
        return b"<time>" + t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode() + b"</time>"

    return _GPX_TIME.sub(move, raw)


def refused(r: httpx.Response) -> str | None:
    return r.headers.get("x-kares-refused")


# --- OwnTracks ---------------------------------------------------------------------------------


def owntracks_files(folder: str) -> list[str]:
    return sorted(f"{folder}/{p.name}" for p in (DATA / folder).iterdir())


@pytest.mark.parametrize(
    ("capture", "device", "want"),
    [
        (
            "owntracks-android",
            "pixel",
            {
                "01-location.json": None,
                "02-transition.json": None,
                "03-location-ping.json": None,
                "04-waypoint.json": None,
                "05-location-null-island.json": "fix.null_island",
                "06-encrypted.json": "owntracks.encrypted",
            },
        ),
        (
            "owntracks-ios",
            "iphone",
            {
                "01-location.json": None,
                "02-location.json": None,
                "03-steps.json": "owntracks.not_kept",
                "04-status.json": "owntracks.not_kept",
                "05-encrypted.json": "owntracks.encrypted",
                "06-empty.json": "owntracks.empty",
                "07-lwt.json": "owntracks.not_kept",
                "08-location.json": None,
            },
        ),
    ],
)
async def test_owntracks_replay(
    client: httpx.AsyncClient,
    sms: Any,
    db: Any,
    capture: str,
    device: str,
    want: dict[str, str | None],
) -> None:
    me = await member(client, sms)
    t = await tracker(client, me)
    # what the apps send in HTTP mode: Basic auth, and the user and device as headers
    h = {
        **basic(t["username"], t["secret"]),
        "X-Limit-U": t["username"],
        "X-Limit-D": device,
        "Content-Type": "application/json",
    }
    names = owntracks_files(capture)
    assert [n.split("/")[1] for n in names] == list(want)
    got = {}
    for name, body in zip(names, json_capture(*names), strict=True):
        r = await client.post("/owntracks", content=body, headers=h)
        assert r.status_code == 200, (name, r.text)  # anything else: the app resends forever
        assert isinstance(r.json(), list)
        got[name.split("/")[1]] = refused(r)
    assert got == want
    rows = await stored(db, me["account"]["id"])
    if capture == "owntracks-android":
        # two locations and the transition's position; 0,0 is not a position
        assert [(r["client_id"].split(":")[0], r["status"]) for r in rows] == [
            ("ot", "ok"),
            ("ott", "ok"),
            ("ot", "ok"),
        ]
        assert all(r["client_id"].split(":")[1] == "pixel" for r in rows)
        async with db.engine.connect() as conn:
            places = (await conn.execute(text("SELECT name, radius_m FROM places"))).all()
        assert [tuple(p) for p in places] == [("Office", 80.0)]
    else:
        assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
        # vel is km/h in OwnTracks, stored as m/s
        assert [round(r["speed_mps"] * 3.6) for r in rows] == [38, 41, 36]
        last = await last_of(db, me["account"]["id"])
        assert last is not None and last["lon"] == pytest.approx(120.1690)


# --- Overland ----------------------------------------------------------------------------------


async def test_overland_replay(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    me = await member(client, sms)
    t = await tracker(client, me, "overland")
    (body,) = json_capture("overland-ios-batch.json")
    r = await client.post(
        "/overland",
        content=body,
        headers={**bearer(t["secret"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    reply = r.json()
    assert reply["result"] == "ok"  # the app deletes the batch from its queue
    assert [(x["index"], x["code"]) for x in reply["refused"]] == [
        (3, "overland.action"),  # paused_location_updates, at the last location
        (4, "overland.trip"),  # the finished trip's summary
        (5, "overland.visit"),  # a visit iOS reported, dated when reported
        (6, "fix.poor_accuracy"),  # a 3 km cell fix: stored, never good
        (7, "overland.action"),  # will_terminate, without geometry
        (8, "overland.action"),  # resumed_location_updates
    ]
    assert refused(r) == "fix.poor_accuracy,overland.action,overland.trip,overland.visit"
    rows = await stored(db, me["account"]["id"])
    assert [(r["status"], r["flag"]) for r in rows] == [
        ("ok", None),
        ("ok", None),
        ("ok", None),
        ("flagged", "fix.poor_accuracy"),
        ("ok", None),
    ]
    # the map shows the last location feature, not the trip summary or the visit
    last = await last_of(db, me["account"]["id"])
    assert last is not None
    assert (last["lat"], last["lon"], last["accuracy_m"]) == (31.23158, 121.47695, 10.0)
    # sent again (the app did not see the reply): nothing new
    r = await client.post("/overland", content=body, headers=bearer(t["secret"]))
    assert r.json()["result"] == "ok" and len(await stored(db, me["account"]["id"])) == 5


# --- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "points", "accepted", "want"),
    [
        ("gpx-gpslogger-android.gpx", 5, 5, []),
        ("gpx-strava-export.gpx", 6, 6, []),
        # track points come first, then the favourite (no time); point 2 jumps 45 km in 5 s
        ("gpx-osmand-track.gpx", 6, 5, [(2, "fix.implied_speed"), (5, "import.no_time")]),
        ("geojson-togeojson-track.geojson", 6, 5, [(5, "import.no_time")]),
        ("geojson-compass-export.geojson", 4, 3, [(2, "fix.null_island")]),
    ],
)
async def test_file_import_replay(
    client: httpx.AsyncClient,
    sms: Any,
    db: Any,
    name: str,
    points: int,
    accepted: int,
    want: list[tuple[int, str]],
) -> None:
    me = await member(client, sms)
    if name.endswith(".gpx"):
        body, ctype = gpx_capture(name), "application/gpx+xml"
    else:
        (body,) = json_capture(name)
        ctype = "application/geo+json"
    r = await import_file(client, me, body, ctype)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert (reply["points"], reply["accepted"]) == (points, accepted)
    assert [(x["point"], x["code"]) for x in reply["refused"]] == want
    assert reply["refused_truncated"] is False
    for x in reply["refused"]:
        assert x["detail"] and (x["time"] is None) == (x["code"] == "import.no_time")
    rows = await stored(db, me["account"]["id"])
    assert len(rows) == accepted and all(r["source"] == "import" for r in rows)
    flagged = sum(1 for _, code in want if code.startswith("fix.implied"))
    assert sum(1 for r in rows if r["status"] == "ok") == accepted - flagged
    assert reply["flagged"] == flagged
