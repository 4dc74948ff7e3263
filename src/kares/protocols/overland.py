"""Overland: ``POST /overland``.

The app posts ``{"locations": [GeoJSON Point Feature, ...]}`` with ISO 8601
times and speeds in m/s, ``-1`` for unknown, as its project documents; tests
replay captures of it (tests/data/clients/). It deletes what it sent only when
the reply's ``result`` is ``"ok"``, so that reply is sent only once the batch is
committed, and whenever the batch could be read: a feature that is not stored
(a log entry, a visit, a trip summary, a fix refused by the checks) is listed
with its reason in the reply's ``refused`` (which the app ignores) and its code
in ``X-Kares-Refused``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.identity.auth import AUTH_ERRORS
from kares.location import service
from kares.location.service import FixIn
from kares.privacy.guard import Allowed, guard
from kares.protocols.common import json_body, num, positive

router = APIRouter(tags=["location"])

MAX_BATCH = 1000

# The request body, as Overland sends it (the route reads it itself): GeoJSON
# Point features with an ISO 8601 timestamp, speeds in m/s, -1 for unknown.
_LOCATION_FEATURE = {
    "type": "object",
    "description": "A location: a GeoJSON Point feature with an ISO 8601 timestamp",
    "properties": {
        "type": {"description": '"Feature" (not checked)'},
        "geometry": {
            "type": "object",
            "properties": {
                "type": {"const": "Point"},
                "coordinates": {
                    "type": "array",
                    "description": "longitude, latitude[, altitude]",
                    "prefixItems": [{"type": "number"}, {"type": "number"}],
                    "minItems": 2,
                },
            },
            "required": ["type", "coordinates"],
        },
        "properties": {
            "type": "object",
            "properties": {
                "timestamp": {"type": "string", "format": "date-time", "maxLength": 40},
                **{
                    k: {"description": "ignored unless a number"}
                    for k in (
                        "horizontal_accuracy",
                        "altitude",
                        "speed",
                        "course",
                        "battery_level",
                    )
                },
                "device_id": {"description": "ignored unless a string"},
                "action": {"description": "an app's log entry or a visit: skipped"},
            },
            "required": ["timestamp"],
        },
    },
    "required": ["geometry", "properties"],
}

OVERLAND_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "locations": {
                            "type": "array",
                            "maxItems": MAX_BATCH,
                            # a location is stored; anything else in the list (an action,
                            # a visit, a trip summary, an entry that cannot be read) is
                            # skipped and listed in the reply's "refused" with why: the app
                            # cannot change a batch, so refusing it would block it forever
                            "items": {
                                "anyOf": [
                                    _LOCATION_FEATURE,
                                    {
                                        "description": "Anything else: skipped, listed in "
                                        "the reply's `refused` with why"
                                    },
                                ]
                            },
                        }
                    },
                    "required": ["locations"],
                }
            }
        },
    }
}


def _bad(detail: str) -> Problem:
    return Problem(422, "overland.invalid", detail)


def _time(v: Any) -> int | None:
    if not isinstance(v, str) or len(v) > 40:
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return int(t.timestamp() * 1000)


@dataclass(frozen=True)
class Skipped:
    """A feature of the batch that is not stored as a fix, and why."""

    index: int
    code: str


# what Overland sends besides locations (GLManager.m in aaronpk/Overland-iOS): log
# entries of the app's life (``properties.action``, with the last location as their
# point when it has one), the visits iOS reports (``action: "visit"``, dated when
# reported) and a finished trip's summary (``properties.type: "trip"``, placed at
# the trip's end). None of them is a position measured at its time: none becomes a fix.
SKIP_DETAIL = {
    "overland.action": "A log entry of the app (its action), not a location.",
    "overland.visit": "A visit as iOS reports it; stays are computed from the locations.",
    "overland.trip": "A trip summary; trips are computed from the locations.",
    "overland.unreadable": "Not a GeoJSON Point Feature with numeric coordinates and an "
    "ISO 8601 timestamp with its time zone.",
}


def _kind(props: dict[str, Any]) -> str | None:
    """The code a feature that is not a location is skipped with, or None."""
    action = props.get("action")
    if action == "visit":
        return "overland.visit"
    if action is not None:
        return "overland.action"
    if props.get("type") == "trip":
        return "overland.trip"
    return None


@dataclass
class Batch:
    fixes: list[FixIn] = field(default_factory=list)
    at: list[int] = field(default_factory=list)  # each fix's index in the batch
    skipped: list[Skipped] = field(default_factory=list)


def parse(payload: Any) -> Batch:
    """One Overland batch (pure: no I/O): its locations as fixes, and the features
    that are not stored, each with why. Only a body that is not a batch at all is
    refused: the app cannot change a batch, and resends it until it is taken."""
    if not isinstance(payload, dict) or not isinstance(payload.get("locations"), list):
        raise _bad('Overland posts {"locations": [GeoJSON Feature, ...]}.')
    items = payload["locations"]
    if len(items) > MAX_BATCH:
        raise Problem(
            413,
            "overland.batch_too_large",
            f"At most {MAX_BATCH} locations per request; lower Overland's batch size.",
        )
    batch = Batch()
    out, index, skipped = batch.fixes, batch.at, batch.skipped
    for i, f in enumerate(items):
        props = f.get("properties") if isinstance(f, dict) else None
        if not isinstance(props, dict):
            skipped.append(Skipped(i, "overland.unreadable"))
            continue
        kind = _kind(props)
        if kind is not None:
            skipped.append(Skipped(i, kind))
            continue
        geom = f.get("geometry")
        coords = geom.get("coordinates") if isinstance(geom, dict) else None
        t_ms = _time(props.get("timestamp"))
        if (
            not isinstance(geom, dict)
            or geom.get("type") != "Point"
            or not isinstance(coords, list)
            or len(coords) < 2
            or num(coords[0]) is None
            or num(coords[1]) is None
            or t_ms is None
        ):
            skipped.append(Skipped(i, "overland.unreadable"))
            continue
        lon, lat = num(coords[0]), num(coords[1])
        level = num(props.get("battery_level"))
        raw_device = props.get("device_id")
        device = raw_device if isinstance(raw_device, str) else ""
        out.append(
            FixIn(
                t_ms=t_ms,
                lat=lat,
                lon=lon,
                client_id=f"ol:{device[:32]}:{t_ms}"[:96],
                accuracy_m=positive(props.get("horizontal_accuracy")),
                altitude_m=num(props.get("altitude")),
                speed_mps=num(props.get("speed")),
                course_deg=num(props.get("course")),
                battery=round(level * 100) if level is not None and 0 <= level <= 1 else None,
                source="gps",
            )
        )
        index.append(i)
    return batch


@router.post(
    "/overland",
    responses=responses(
        *AUTH_ERRORS,
        (400, "request.bad"),
        (413, "overland.batch_too_large"),
        (422, "overland.invalid"),
    ),
    openapi_extra=OVERLAND_BODY,
    summary='Overland: store a batch of GeoJSON locations; reply {"result":"ok"} once stored',
    description="Authenticate with a bearer token (a tracker's secret). The reply is "
    '`{"result":"ok"}`, sent only after the batch is committed, so Overland deletes only '
    "what is stored. Features that are not stored (the app's `action` log entries, "
    "`visit`s, `trip` summaries, unreadable features, fixes refused by the checks) do not "
    "hold the batch up: the reply lists them in `refused` (index, code, detail) and their "
    "codes in the `X-Kares-Refused` header. Only a body that is not an Overland batch at "
    "all is refused.",
)
async def overland(
    request: Request,
    ctx: Annotated[Allowed, guard("driving_tracks", "upload", trackers=True)],
    rt: RuntimeDep,
    s: DbDep,
) -> Response:
    batch = parse(await json_body(request))
    refused: list[dict[str, Any]] = [
        {"index": k.index, "code": k.code, "detail": SKIP_DETAIL[k.code]} for k in batch.skipped
    ]
    if batch.fixes:
        res = await service.upload(s, rt, ctx, batch.fixes)
        refused += (
            {"index": batch.at[r.index], "code": r.code, "detail": r.detail}
            for r in res.rejected + res.flagged
        )
    if not refused:
        return Response(b'{"result":"ok"}', media_type="application/json")
    # Overland reads only "result"; what was not stored, and why, rides along
    refused.sort(key=itemgetter("index"))
    codes = ",".join(sorted({r["code"] for r in refused}))
    body = json.dumps({"result": "ok", "refused": refused}, separators=(",", ":"))
    return Response(
        body.encode(), media_type="application/json", headers={"X-Kares-Refused": codes}
    )
