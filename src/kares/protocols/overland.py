"""Overland: ``POST /overland``.

The app posts ``{"locations": [GeoJSON Point Feature, ...]}`` with ISO 8601
times and speeds in m/s, ``-1`` for unknown, as its project documents; tests
replay its examples. It deletes what it sent only when the reply is exactly
``{"result":"ok"}``, so that reply is sent only once the batch is committed.
"""

from __future__ import annotations

from datetime import datetime
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
                            "items": {
                                "type": "object",
                                "properties": {
                                    "type": {"description": '"Feature" (not checked)'},
                                    "geometry": {
                                        "type": "object",
                                        "properties": {
                                            "type": {"const": "Point"},
                                            "coordinates": {
                                                "type": "array",
                                                "description": "longitude, latitude[, altitude]",
                                                "prefixItems": [
                                                    {"type": "number"},
                                                    {"type": "number"},
                                                ],
                                                "minItems": 2,
                                            },
                                        },
                                        "required": ["type", "coordinates"],
                                    },
                                    "properties": {
                                        "type": "object",
                                        "properties": {
                                            "timestamp": {
                                                "type": "string",
                                                "format": "date-time",
                                                "maxLength": 40,
                                            },
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
                                        },
                                        "required": ["timestamp"],
                                    },
                                },
                                "required": ["geometry", "properties"],
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


def parse(payload: Any) -> list[FixIn]:
    """One Overland batch (pure: no I/O)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("locations"), list):
        raise _bad('Overland posts {"locations": [GeoJSON Feature, ...]}.')
    items = payload["locations"]
    if len(items) > MAX_BATCH:
        raise Problem(
            413,
            "overland.batch_too_large",
            f"At most {MAX_BATCH} locations per request; lower Overland's batch size.",
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
            raise _bad(f"locations[{i}] is not a GeoJSON Point Feature.")
        lon, lat = num(coords[0]), num(coords[1])
        t_ms = _time(props.get("timestamp"))
        if lon is None or lat is None or t_ms is None:
            raise _bad(
                f"locations[{i}] needs numeric coordinates and an ISO 8601 timestamp with "
                "its time zone."
            )
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
    return out


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
    'exactly `{"result":"ok"}` and is sent only after the batch is committed, so Overland '
    "deletes only what is stored. Fixes refused one by one (say at 0,0) are dropped with "
    "the reason in the `X-Kares-Refused` header: a batch the app cannot change must not be "
    "refused forever.",
)
async def overland(
    request: Request,
    ctx: Annotated[Allowed, guard("driving_tracks", "upload", trackers=True)],
    rt: RuntimeDep,
    s: DbDep,
) -> Response:
    fixes = parse(await json_body(request))
    headers: dict[str, str] = {}
    if fixes:
        res = await service.upload(s, rt, ctx, fixes)
        codes = sorted({r.code for r in res.rejected + res.flagged})
        if codes:
            headers["X-Kares-Refused"] = ",".join(codes)
    return Response(b'{"result":"ok"}', media_type="application/json", headers=headers)
