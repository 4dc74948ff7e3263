"""GPX and GeoJSON route files: exporting a member's track, and importing a
route a person recorded elsewhere.

Import reads what common tools write: GPX 1.0/1.1 track points and
timestamped waypoints (``gpxpy``); GeoJSON Point features with a
``timestamp`` or ``time`` property (Overland, our own export, GDAL's
``ogr2ogr``) or OwnTracks' ``tst``/``isotst`` (the OwnTracks Recorder's
``ocat --format geojson``; its ``--format json``, the stored OwnTracks messages
under ``locations``, is read as such points too), and
LineString / MultiLineString features with per-coordinate times in
``properties.coordTimes`` or ``properties.coordinateProperties.times`` (the
convention of togeojson, used by Strava and Google exports). A point without
a time cannot be placed in anyone's history and is counted as rejected. The
reply lists every point not kept as good (its place in the file, its time and
why), not only the counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import gpxpy
import gpxpy.gpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import jsonread
from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.identity.auth import AUTH_ERRORS
from kares.location import service
from kares.location.models import LocationFix
from kares.location.schemas import FromQ, ImportResult, RefusedPoint, ToQ
from kares.location.service import FixIn, StoredFix
from kares.privacy.guard import Allowed, guard
from kares.protocols.common import integer, num, positive
from kares.rights import formats
from kares.runtime import Runtime

router = APIRouter(tags=["location"])
T = TypeVar("T")

MAX_IMPORT_POINTS = 200_000

# The request body: the file itself (the route reads it itself).
IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/gpx+xml": {
                "schema": {"type": "string", "description": "A GPX 1.0 or 1.1 file"}
            },
            "application/geo+json": {
                "schema": {
                    "type": "object",
                    "description": "A GeoJSON FeatureCollection (or Feature) with timestamped "
                    "Point features or LineStrings with per-coordinate times",
                    "properties": {"type": {"enum": ["FeatureCollection", "Feature"]}},
                    "required": ["type"],
                }
            },
        },
    }
}
GPX_CREATOR = "Kares"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def to_geojson(account_id: str, fixes: Sequence[StoredFix]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "properties": {"account_id": account_id, "generator": GPX_CREATOR},
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [f.lon, f.lat]},
                "properties": {
                    "timestamp": _iso(f.t_ms),
                    "horizontal_accuracy": f.accuracy_m,
                    "altitude": f.altitude_m,
                    "speed": f.speed_mps,
                    "course": f.course_deg,
                    "precise": f.precise,
                },
            }
            for f in fixes
        ],
    }


def to_gpx(name: str, fixes: Sequence[StoredFix]) -> str:
    doc = gpxpy.gpx.GPX()
    doc.creator = GPX_CREATOR
    track = gpxpy.gpx.GPXTrack(name=name)
    seg = gpxpy.gpx.GPXTrackSegment()
    for f in fixes:
        seg.points.append(
            gpxpy.gpx.GPXTrackPoint(
                latitude=f.lat,
                longitude=f.lon,
                elevation=f.altitude_m,
                time=datetime.fromtimestamp(f.t_ms / 1000, UTC),
                horizontal_dilution=None,
                speed=f.speed_mps,
            )
        )
    track.segments.append(seg)
    doc.tracks.append(track)
    return str(doc.to_xml(version="1.1"))


@dataclass
class Parsed:
    format: str
    fixes: list[FixIn]
    points: int
    at: list[int] = field(default_factory=list)  # each fix's point index in the file
    unread: list[tuple[int, str]] = field(default_factory=list)  # (point, code) not read

    @property
    def untimed(self) -> int:
        return len(self.unread)


UNREAD_DETAIL = {
    "import.no_time": "The point has no time, so it cannot be placed in anyone's history.",
    "import.no_position": "The point has no numeric coordinates.",
}
MAX_REFUSED_LISTED = 1000


def _ms(t: datetime | None) -> int | None:
    if t is None:
        return None
    if t.tzinfo is None:  # GPX times are UTC by definition
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _parse_time(v: Any) -> int | None:
    if isinstance(v, str) and len(v) <= 40:
        try:
            return _ms(datetime.fromisoformat(v.replace("Z", "+00:00")))
        except ValueError:
            return None
    n = num(v)
    if n is not None and 0 < n < 2**33:  # epoch seconds
        return int(n * 1000)
    if n is not None and 2**33 <= n < 2**43:  # epoch milliseconds
        return int(n)
    return None


def _too_many() -> Problem:
    return Problem(
        413, "import.too_many_points", f"A file may hold at most {MAX_IMPORT_POINTS} points."
    )


def parse_gpx(data: bytes, tag: str) -> Parsed:
    try:
        doc = gpxpy.parse(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, gpxpy.gpx.GPXException, ValueError) as exc:
        raise Problem(422, "import.invalid_gpx", "This is not a GPX file we can read.") from exc
    parsed = Parsed("gpx", [], 0)
    out = parsed.fixes
    pts: list[Any] = [p for t in doc.tracks for seg in t.segments for p in seg.points]
    pts += [p for r in doc.routes for p in r.points]
    pts += list(doc.waypoints)
    if len(pts) > MAX_IMPORT_POINTS:
        raise _too_many()
    parsed.points = len(pts)
    for k, p in enumerate(pts):
        t_ms = _ms(p.time)
        if t_ms is None:
            parsed.unread.append((k, "import.no_time"))
            continue
        parsed.at.append(k)
        out.append(
            FixIn(
                t_ms=t_ms,
                lat=float(p.latitude),
                lon=float(p.longitude),
                client_id=f"import:{tag}:{len(out)}",
                altitude_m=float(p.elevation) if p.elevation is not None else None,
                speed_mps=float(p.speed) if getattr(p, "speed", None) is not None else None,
                course_deg=float(p.course) if getattr(p, "course", None) is not None else None,
                source="import",
            )
        )
    return parsed


# A Point feature's properties, as the tools that write them name them: Overland
# and our export (timestamp, horizontal_accuracy, altitude), GDAL's ogr2ogr from
# GPX (time, ele), the OwnTracks Recorder's ocat (tst in epoch seconds, isotst,
# acc, alt, and vel in km/h). The first key that reads as a value wins.
TIME_KEYS = ("timestamp", "time", "isotst", "tst")
ACCURACY_KEYS = ("horizontal_accuracy", "accuracy", "acc")
ALTITUDE_KEYS = ("altitude", "ele", "alt")
COURSE_KEYS = ("course", "cog")
BATTERY_KEYS = ("battery", "batt")


def _first(
    props: dict[str, Any], keys: tuple[str, ...], read: Callable[[Any], T | None]
) -> T | None:
    for key in keys:
        if (v := read(props.get(key))) is not None:
            return v
    return None


# What the OwnTracks Recorder's ``ocat --format json`` writes: the stored messages
# under "locations" (not GeoJSON); each location's fields are as the app sent them.
RECORDER_KINDS = ("location", "transition")


def _recorder_points(doc: Any) -> list[dict[str, Any]] | None:
    """The located messages of a Recorder JSON export, as GeoJSON Point features
    (the message's fields as properties); None for any other document."""
    if not isinstance(doc, dict) or doc.get("type") is not None:
        return None
    items = doc.get("locations")
    if not isinstance(items, list):
        return None
    return [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [m.get("lon"), m.get("lat")]},
            "properties": m,
        }
        for m in items
        if isinstance(m, dict) and m.get("_type") in RECORDER_KINDS
    ]


def _features(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    if doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        return [f for f in doc["features"] if isinstance(f, dict)]
    if doc.get("type") == "Feature":
        return [doc]
    return []


def parse_geojson(data: bytes, tag: str) -> Parsed:
    # JSON that cannot be read is refused like any body the service reads itself
    # (400 request.bad, kares.jsonread); JSON that is not GeoJSON is a bad file (422)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Problem(400, jsonread.BAD, "The request body is not UTF-8 JSON.") from exc
    doc = jsonread.body(text)
    recorder = _recorder_points(doc)
    feats = recorder if recorder is not None else _features(doc)
    if not feats:
        raise Problem(
            422,
            "import.invalid_geojson",
            "Expected a GeoJSON Feature or FeatureCollection, or the OwnTracks Recorder's "
            "JSON export.",
        )
    parsed = Parsed("geojson" if recorder is None else "owntracks-recorder", [], 0)
    out = parsed.fixes

    def add(coord: Any, t_ms: int | None, props: dict[str, Any]) -> None:
        k = parsed.points
        parsed.points += 1
        if parsed.points > MAX_IMPORT_POINTS:
            raise _too_many()
        ok = isinstance(coord, list) and len(coord) >= 2
        lon, lat = (num(coord[0]), num(coord[1])) if ok else (None, None)
        if lon is None or lat is None:
            parsed.unread.append((k, "import.no_position"))
            return
        if t_ms is None:
            parsed.unread.append((k, "import.no_time"))
            return
        parsed.at.append(k)
        alt = num(coord[2]) if len(coord) > 2 else _first(props, ALTITUDE_KEYS, num)
        speed = num(props.get("speed"))
        if speed is None and (vel := num(props.get("vel"))) is not None:
            speed = vel / 3.6  # OwnTracks' vel is km/h
        out.append(
            FixIn(
                t_ms=t_ms,
                lat=lat,
                lon=lon,
                client_id=f"import:{tag}:{len(out)}",
                accuracy_m=_first(props, ACCURACY_KEYS, positive),
                altitude_m=alt,
                speed_mps=speed,
                course_deg=_first(props, COURSE_KEYS, num),
                battery=_first(props, BATTERY_KEYS, integer),
                source="import",
            )
        )

    for f in feats:
        geom = f.get("geometry") if isinstance(f.get("geometry"), dict) else {}
        props = f.get("properties") if isinstance(f.get("properties"), dict) else {}
        assert isinstance(geom, dict) and isinstance(props, dict)
        gtype = geom.get("type")
        coords = geom.get("coordinates")
        if gtype == "Point":
            add(coords, _first(props, TIME_KEYS, _parse_time), props)
            continue
        if gtype not in ("LineString", "MultiLineString") or not isinstance(coords, list):
            continue
        times: Any = props.get("coordTimes")
        if times is None and isinstance(props.get("coordinateProperties"), dict):
            times = props["coordinateProperties"].get("times")
        # a LineString's times are one list; a MultiLineString's, one list per line
        lines, per_line = ([coords], [times]) if gtype == "LineString" else (coords, times)
        if not isinstance(per_line, list):
            per_line = []
        for li, line in enumerate(lines):
            if not isinstance(line, list):
                continue
            lt = per_line[li] if li < len(per_line) else None
            for k, c in enumerate(line):
                t = lt[k] if isinstance(lt, list) and k < len(lt) else None
                add(c, _parse_time(t), props)
    return parsed


def parse(data: bytes, content_type: str | None) -> Parsed:
    """Sniff GPX (XML) or GeoJSON (JSON) and read it. The ids of the fixes come
    from the file's hash, so importing the same file twice stores it once."""
    tag = hashlib.sha256(data).hexdigest()[:16]
    head = data.lstrip()[:1]
    ctype = (content_type or "").split(";")[0].strip().lower()
    if head == b"<" or ctype in ("application/gpx+xml", "application/xml", "text/xml"):
        return parse_gpx(data, tag)
    if head in (b"{", b"[") or ctype in ("application/geo+json", "application/json"):
        return parse_geojson(data, tag)
    raise Problem(415, "import.unsupported", "Send a GPX (application/gpx+xml) or GeoJSON file.")


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d")


@router.get(
    "/api/v1/location/{account_id}/export",
    responses={
        200: {
            "content": {"application/gpx+xml": {}, "application/geo+json": {}},
            "description": "The track as a file",
        },
        **responses(
            *AUTH_ERRORS,
            (403, "sharing.off"),
            (404, "not_found"),
            (422, "location.invalid_range"),
            (422, "location.range_too_long"),
        ),
    },
    summary="Export a member's track as GPX or GeoJSON",
)
async def export(
    account_id: str,
    ctx: Annotated[Allowed, guard("driving_tracks", "history", about="account_id")],
    rt: RuntimeDep,
    s: DbDep,
    format: Literal["gpx", "geojson"] = "gpx",
    start: FromQ = None,
    end: ToQ = None,
) -> Response:
    from_ms, to_ms = service.time_range(start, end)
    fixes = await service.fixes_between(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
    shown, _ = service.shown_fixes(rt, fixes, ctx.degraded)
    day = _day(from_ms)
    if format == "gpx":
        body = to_gpx(f"Kares track {day}", shown).encode()
        media, ext = "application/gpx+xml", "gpx"
    else:
        body = json.dumps(to_geojson(account_id, shown)).encode()
        media, ext = "application/geo+json", "geojson"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="kares-track-{day}.{ext}"'},
    )


@router.post(
    "/api/v1/location/import",
    response_model=ImportResult,
    responses=responses(
        *AUTH_ERRORS,
        (413, "import.too_many_points"),
        (415, "import.unsupported"),
        (422, "import.invalid_gpx"),
        (422, "import.invalid_geojson"),
    ),
    openapi_extra=IMPORT_BODY,
    summary="Import your own past routes from a GPX or GeoJSON file",
    description="Send the file as the request body (`application/gpx+xml` or "
    "`application/geo+json`). Points need times; the same file imported twice is stored "
    "once. The same checks as any upload apply, point by point; the reply lists each point "
    "not kept as good with its place in the file, its time and the reason.",
)
async def import_file(
    request: Request,
    ctx: Annotated[Allowed, guard("driving_tracks", "import")],
    rt: RuntimeDep,
    s: DbDep,
) -> ImportResult:
    parsed = parse(await request.body(), request.headers.get("content-type"))
    res = await service.import_fixes(s, rt, ctx, parsed.fixes)
    refused = [(k, None, code, UNREAD_DETAIL[code]) for k, code in parsed.unread] + [
        (parsed.at[r.index], parsed.fixes[r.index].t_ms, r.code, r.detail) for r in res.refused
    ]
    refused.sort(key=lambda x: x[0])
    return ImportResult(
        format="gpx" if parsed.format == "gpx" else "geojson",
        points=parsed.points,
        accepted=res.accepted,
        duplicates=res.duplicates,
        rejected=res.rejected + parsed.untimed,
        flagged=res.flagged,
        refused=[
            RefusedPoint(
                point=k,
                time=None if t_ms is None else datetime.fromtimestamp(t_ms / 1000, UTC),
                code=code,
                detail=detail,
            )
            for k, t_ms, code, detail in refused[:MAX_REFUSED_LISTED]
        ],
        refused_truncated=len(refused) > MAX_REFUSED_LISTED,
    )


# --- the export archive (policy 5.1) -------------------------------------------------------

DAY_MS = 86_400_000


@formats.register(
    "tracks",
    title=("Tracks", "轨迹"),
    about=(
        "your recorded locations, one GPX and one GeoJSON file per day (UTC), for map and "
        "fitness apps",
        "您记录的位置,每天(UTC)一个 GPX 文件和一个 GeoJSON 文件,可用地图和运动类应用打开",
    ),
)
async def export_tracks(
    s: AsyncSession, rt: Runtime, account_id: str
) -> AsyncIterator[formats.ArchiveFile]:
    """The account's own good fixes, as they were stored, a day per file."""
    c = LocationFix.__table__.c
    day = c.recorded_ms // DAY_MS
    q = select(day).where(c.account_id == account_id, c.status == "ok").group_by(day).order_by(day)
    for (d,) in (await s.execute(q)).all():
        start = int(d) * DAY_MS
        fixes = await service.fixes_between(
            s, account_id=account_id, from_ms=start, to_ms=start + DAY_MS
        )
        if not len(fixes):
            continue
        name = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y-%m-%d")
        yield formats.ArchiveFile(f"{name}.gpx", to_gpx(f"Kares track {name}", fixes).encode())
        body = json.dumps(to_geojson(account_id, fixes)).encode()
        yield formats.ArchiveFile(f"{name}.geojson", body)
