"""Real exports replayed through the import route: files that GPSBabel, GDAL's
ogr2ogr, the OwnTracks Recorder's ``ocat`` and gpxpy wrote on a developer's
machine from one synthetic walk (tests/data/clients/exports/; its README says
which tool, version and command made each file, and ``make.py`` there makes
them again). CI does not need those tools: the files are kept as they came.

The walk: 240 points 5 s apart from 07:30:00Z on 2024-05-18 (100 walking, 60
standing at a cafe, 80 walking); point 199 is a GPS jump 3 km north; a named
waypoint at the cafe has no time where the format carries waypoints. Each file
is sent as it is except its times, which are all moved by one whole number of
seconds (ISO times and OwnTracks' epoch seconds alike) so that the walk ends
ten minutes ago: retention would refuse a walk from 2024. No other byte changes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kares import clock
from tests.conftest import query
from tests.test_location_ingest import last_of, member
from tests.test_location_read import import_file

EXPORTS = Path(__file__).parent / "data" / "clients" / "exports"
_ISO = re.compile(rb"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})Z")
_EPOCH = re.compile(rb'("(?:tst|created_at)":)(\d{9,10})')

# the walk, as make.py wrote it
START_S = datetime(2024, 5, 18, 7, 30, tzinfo=UTC).timestamp()
POINTS = 240
FIRST = (30.25901, 120.148045)
LAST = (30.263004, 120.156448)
GLITCH = 199
JUMP = (199, "fix.implied_speed")
CAFE = (240, "import.no_time")  # points are numbered track first, then waypoints


def exported(name: str) -> tuple[bytes, int]:
    """The file's bytes with its times moved, and the seconds they were moved by
    (0 for a file without a time)."""
    raw = (EXPORTS / name).read_bytes()
    found = [datetime.fromisoformat(m.decode() + "+00:00").timestamp() for m in _ISO.findall(raw)]
    found += [float(m[1]) for m in _EPOCH.findall(raw)]
    if not found:
        return raw, 0
    by = int((clock.utcnow() - timedelta(minutes=10)).timestamp() - max(found))

    def iso(m: re.Match[bytes]) -> bytes:
        t = datetime.fromisoformat(m.group(1).decode()) + timedelta(seconds=by)
        return t.strftime("%Y-%m-%dT%H:%M:%S").encode()

    def epoch(m: re.Match[bytes]) -> bytes:
        return m.group(1) + str(int(m.group(2)) + by).encode()

    return _EPOCH.sub(epoch, _ISO.sub(iso, raw)), by


async def rows_of(db: Any, account_id: str) -> list[dict[str, Any]]:
    return await query(
        db,
        "SELECT recorded_ms, lat, lon, accuracy_m, altitude_m, speed_mps, course_deg, "
        "status, flag, source FROM location_fixes WHERE account_id = :a "
        "ORDER BY recorded_ms",
        a=account_id,
    )


# what each file's first point keeps besides its time and position
BARE: dict[str, Any] = {"accuracy_m": None, "altitude_m": 11.8, "speed_mps": None}


@pytest.mark.parametrize(
    ("name", "points", "want", "first"),
    [
        # GPX 1.0 carries speed and course per point (GPSBabel writes 75.3 as 75.300003);
        # GPX 1.1 does not
        (
            "gpx-gpsbabel-1.0.gpx",
            241,
            [JUMP, CAFE],
            {**BARE, "speed_mps": 1.3, "course_deg": 75.300003},
        ),
        ("gpx-gpsbabel-1.1.gpx", 241, [JUMP, CAFE], BARE),
        ("gpx-gdal-ogr2ogr.gpx", 240, [JUMP], BARE),
        # GDAL names the elevation of a GPX point `ele`
        ("geojson-gdal-ogr2ogr.geojson", 240, [JUMP], BARE),
        # the Recorder keeps OwnTracks' whole metres of `alt`
        ("gpx-owntracks-recorder.gpx", 240, [JUMP], {**BARE, "altitude_m": 12.0}),
        # tst/isotst, acc, alt and vel (km/h) as OwnTracks names them
        (
            "geojson-owntracks-recorder.geojson",
            240,
            [JUMP],
            {"accuracy_m": 8.0, "altitude_m": 12.0, "speed_mps": pytest.approx(5 / 3.6)},
        ),
        # ocat --format json: the stored OwnTracks messages themselves, course (cog) too
        (
            "json-owntracks-recorder.json",
            240,
            [JUMP],
            {
                "accuracy_m": 8.0,
                "altitude_m": 12.0,
                "speed_mps": pytest.approx(5 / 3.6),
                "course_deg": 75.0,
            },
        ),
        ("gpx-gpxpy.gpx", 241, [JUMP, CAFE], BARE),
    ],
)
async def test_a_real_export_is_imported_point_for_point(
    client: httpx.AsyncClient,
    sms: Any,
    db: Any,
    name: str,
    points: int,
    want: list[tuple[int, str]],
    first: dict[str, Any],
) -> None:
    me = await member(client, sms)
    body, by = exported(name)
    ctype = "application/gpx+xml" if name.endswith(".gpx") else "application/geo+json"
    r = await import_file(client, me, body, ctype)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert (reply["points"], reply["accepted"], reply["flagged"]) == (points, POINTS, 1)
    assert reply["rejected"] == points - POINTS and reply["duplicates"] == 0
    assert [(x["point"], x["code"]) for x in reply["refused"]] == want
    jump = reply["refused"][0]
    assert jump["time"] == datetime.fromtimestamp(
        START_S + GLITCH * 5 + by, UTC
    ).isoformat().replace("+00:00", "Z")

    rows = await rows_of(db, me["account"]["id"])
    assert len(rows) == POINTS and all(x["source"] == "import" for x in rows)
    assert [x["recorded_ms"] for x in rows] == [
        int((START_S + by + 5 * i) * 1000) for i in range(POINTS)
    ]
    assert [(i, x["flag"]) for i, x in enumerate(rows) if x["status"] != "ok"] == [
        (GLITCH, "fix.implied_speed")
    ]  # one jump is flagged, and the points after it are good again
    assert (rows[0]["lat"], rows[0]["lon"]) == FIRST
    assert (rows[-1]["lat"], rows[-1]["lon"]) == LAST
    assert {k: rows[0][k] for k in first} == first
    # the family map shows the walk's last point
    last = await last_of(db, me["account"]["id"])
    assert last is not None and (last["lat"], last["lon"]) == LAST
    assert last["recorded_ms"] == rows[-1]["recorded_ms"]

    # imported again (the person sends the same file twice): nothing new
    again = (await import_file(client, me, body, ctype)).json()
    assert (again["accepted"], again["duplicates"]) == (0, POINTS)
    assert len(await rows_of(db, me["account"]["id"])) == POINTS


@pytest.mark.parametrize(
    ("name", "points"),
    [
        # GPSBabel's GeoJSON writes the track as a LineString without times, and the
        # waypoint as a Point without one: there is nothing to place in a history
        ("geojson-gpsbabel.geojson", 241),
    ],
)
async def test_an_export_without_times_is_refused_point_by_point(
    client: httpx.AsyncClient, sms: Any, db: Any, name: str, points: int
) -> None:
    me = await member(client, sms)
    body, by = exported(name)
    assert by == 0  # it holds no time to move
    r = await import_file(client, me, body, "application/geo+json")
    assert r.status_code == 200, r.text
    reply = r.json()
    assert (reply["points"], reply["accepted"], reply["rejected"]) == (points, 0, points)
    assert [(x["point"], x["code"], x["time"]) for x in reply["refused"]] == [
        (k, "import.no_time", None) for k in range(points)
    ]
    assert await rows_of(db, me["account"]["id"]) == []
    assert await last_of(db, me["account"]["id"]) is None


async def test_json_that_is_neither_geojson_nor_the_recorders_is_refused_whole(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """A JSON file with no Feature, FeatureCollection or Recorder ``locations`` is
    not a route file: refused whole, nothing stored."""
    me = await member(client, sms)
    body = json.dumps({"count": 1, "points": [{"lat": 30.1, "lon": 120.1, "tst": 1}]})
    r = await import_file(client, me, body.encode(), "application/json")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "import.invalid_geojson"
    assert await rows_of(db, me["account"]["id"]) == []
