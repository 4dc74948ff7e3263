"""What OwnTracks and Overland send, turned into fixes (pure: no I/O).

OwnTracks HTTP mode posts one JSON object per request (``_type`` location,
transition, waypoint, waypoints, card, and others we ignore), with times as
epoch seconds and speeds in km/h. Overland posts ``{"locations": [GeoJSON
Point Feature, ...]}`` with ISO 8601 times and speeds in m/s, ``-1`` for
unknown. Both are documented by their projects; tests replay their examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kares.errors import Problem
from kares.location.service import FixIn

MAX_OVERLAND_BATCH = 1000
MAX_WAYPOINTS = 200


def _num(v: Any) -> float | None:
    """A JSON number (not a bool), or None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _positive(v: Any) -> float | None:
    """Accuracies: 0 and the -1 some apps send mean unknown."""
    f = _num(v)
    return f if f is not None and f > 0 else None


def _int(v: Any) -> int | None:
    f = _num(v)
    return int(f) if f is not None else None


def _bad(code: str, detail: str) -> Problem:
    return Problem(422, code, detail)


@dataclass
class Waypoint:
    external_id: str
    name: str
    lat: float
    lon: float
    radius_m: float


@dataclass
class OwnTracksMessage:
    kind: str  # location | transition | waypoints | card | ignored
    fixes: list[FixIn] = field(default_factory=list)
    waypoints: list[Waypoint] = field(default_factory=list)
    tid: str | None = None


def _ot_fix(msg: dict[str, Any], device: str, prefix: str) -> FixIn:
    lat, lon, tst = _num(msg.get("lat")), _num(msg.get("lon")), _int(msg.get("tst"))
    if lat is None or lon is None or tst is None:
        raise _bad(
            "owntracks.invalid",
            "An OwnTracks location needs numeric lat, lon and tst (epoch seconds).",
        )
    if not 0 <= tst < 2**33:
        raise _bad("owntracks.invalid", "tst is not a plausible time in epoch seconds.")
    vel = _num(msg.get("vel"))
    batt = _int(msg.get("batt"))
    return FixIn(
        t_ms=tst * 1000,
        lat=lat,
        lon=lon,
        # one fix per device, time and place: a retried post is stored once
        client_id=f"{prefix}:{device}:{tst}:{lat:.6f},{lon:.6f}"[:96],
        accuracy_m=_positive(msg.get("acc")),
        altitude_m=_num(msg.get("alt")),
        speed_mps=vel / 3.6 if vel is not None and vel >= 0 else None,
        course_deg=_num(msg.get("cog")),
        battery=batt,
        source="gps",
    )


def _ot_waypoint(msg: dict[str, Any]) -> Waypoint | None:
    lat, lon = _num(msg.get("lat")), _num(msg.get("lon"))
    desc = msg.get("desc")
    rid = msg.get("rid")
    tst = _int(msg.get("tst"))
    if lat is None or lon is None or not isinstance(desc, str) or not desc.strip():
        return None
    ident = rid if isinstance(rid, str) and rid else (str(tst) if tst is not None else desc)
    return Waypoint(
        external_id=f"owntracks:{ident}"[:64],
        name=desc,
        lat=lat,
        lon=lon,
        radius_m=_num(msg.get("rad")) or 0.0,
    )


def owntracks(payload: Any, *, device: str) -> OwnTracksMessage:
    if not isinstance(payload, dict):
        raise _bad("owntracks.invalid", "OwnTracks posts one JSON object with a _type.")
    kind = payload.get("_type")
    tid = payload.get("tid") if isinstance(payload.get("tid"), str) else None
    if kind == "location":
        return OwnTracksMessage("location", [_ot_fix(payload, device, "ot")], tid=tid)
    if kind == "transition":
        # the device's own enter/leave: its position is a fix like any other;
        # whether someone arrived is decided on the server, for every place
        return OwnTracksMessage("transition", [_ot_fix(payload, device, "ott")], tid=tid)
    if kind == "waypoint":
        wp = _ot_waypoint(payload)
        return OwnTracksMessage("waypoints", waypoints=[wp] if wp else [])
    if kind == "waypoints":
        items = payload.get("waypoints")
        if not isinstance(items, list):
            raise _bad("owntracks.invalid", "waypoints must carry a list of waypoints.")
        wps = [w for w in (_ot_waypoint(x) for x in items[:MAX_WAYPOINTS] if isinstance(x, dict))]
        return OwnTracksMessage("waypoints", waypoints=[w for w in wps if w is not None])
    if kind == "card":
        return OwnTracksMessage("card", tid=tid)
    return OwnTracksMessage("ignored")


def _ol_time(v: Any) -> int | None:
    if not isinstance(v, str) or len(v) > 40:
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return int(t.timestamp() * 1000)


def overland(payload: Any) -> list[FixIn]:
    if not isinstance(payload, dict) or not isinstance(payload.get("locations"), list):
        raise _bad("overland.invalid", 'Overland posts {"locations": [GeoJSON Feature, ...]}.')
    items = payload["locations"]
    if len(items) > MAX_OVERLAND_BATCH:
        raise Problem(
            413,
            "overland.batch_too_large",
            f"At most {MAX_OVERLAND_BATCH} locations per request; lower Overland's batch size.",
        )
    out: list[FixIn] = []
    for i, f in enumerate(items):
        geom = f.get("geometry") if isinstance(f, dict) else None
        props = f.get("properties") if isinstance(f, dict) else None
        coords = geom.get("coordinates") if isinstance(geom, dict) else None
        if (
            not isinstance(props, dict)
            or not isinstance(coords, list)
            or len(coords) < 2
            or not isinstance(geom, dict)
            or geom.get("type") != "Point"
        ):
            raise _bad("overland.invalid", f"locations[{i}] is not a GeoJSON Point Feature.")
        lon, lat = _num(coords[0]), _num(coords[1])
        t_ms = _ol_time(props.get("timestamp"))
        if lon is None or lat is None or t_ms is None:
            raise _bad(
                "overland.invalid",
                f"locations[{i}] needs numeric coordinates and an ISO 8601 timestamp with "
                "its time zone.",
            )
        level = _num(props.get("battery_level"))
        raw_device = props.get("device_id")
        device = raw_device if isinstance(raw_device, str) else ""
        out.append(
            FixIn(
                t_ms=t_ms,
                lat=lat,
                lon=lon,
                client_id=f"ol:{device[:32]}:{t_ms}"[:96],
                accuracy_m=_positive(props.get("horizontal_accuracy")),
                altitude_m=_num(props.get("altitude")),
                speed_mps=_num(props.get("speed")),
                course_deg=_num(props.get("course")),
                battery=round(level * 100) if level is not None and 0 <= level <= 1 else None,
                source="gps",
            )
        )
    return out
