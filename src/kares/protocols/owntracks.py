"""OwnTracks HTTP mode: ``POST /owntracks``.

The app posts one JSON object per request (``_type`` location, transition,
waypoint, waypoints, card, and others we ignore), with times as epoch seconds
and speeds in km/h, as its project documents; tests replay its examples. The
reply is what the app shows on its map: the last locations and cards of the
family members who share their location with the caller, each under its own
topic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import Headers, QueryParams
from starlette.requests import cookie_parser
from starlette.types import Scope

from kares import jsonread
from kares.db import Conn
from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.identity.auth import (
    AUTH_ERRORS,
    TRACKER_KIND,
    request_caller,
    steady_credentials,
    unsafe_without_csrf,
)
from kares.identity.service import steady_session
from kares.lanes import Reply, json_reply
from kares.location import service, trackers
from kares.location.service import FixIn, Region
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, admit, guard
from kares.privacy.guard import steady as guard_steady
from kares.protocols.common import integer, num, positive
from kares.runtime import Runtime

log = logging.getLogger("kares.protocols.owntracks")
router = APIRouter(tags=["location"])

MAX_WAYPOINTS = 200

_NUM = {"type": "number"}
# read when it is what it should be, ignored otherwise
_OPTIONAL = {"description": "ignored unless of the documented type"}
# The request body, as OwnTracks' JSON format documents it (the route reads it
# itself): a fix (location, transition) needs numeric lat, lon and tst (epoch
# seconds); a waypoint that cannot be read is skipped; any other message is
# answered with [].
OWNTRACKS_BODY = {
    "requestBody": {
        # an empty body is what the apps post when a friend is deleted: 200 [],
        # X-Kares-Refused: owntracks.empty
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {
                            "type": "object",
                            "properties": {
                                "_type": {"enum": ["location", "transition"]},
                                "lat": _NUM,
                                "lon": _NUM,
                                "tst": {"type": "number", "minimum": 0, "exclusiveMaximum": 2**33},
                                **{
                                    k: _OPTIONAL
                                    for k in ("acc", "alt", "vel", "cog", "batt", "tid")
                                },
                            },
                            "required": ["_type", "lat", "lon", "tst"],
                        },
                        {
                            "type": "object",
                            "properties": {
                                "_type": {"const": "waypoints"},
                                "waypoints": {"type": "array"},
                            },
                            "required": ["_type", "waypoints"],
                        },
                        # a waypoint, a card, or anything else JSON can say: not stored,
                        # answered 200 [] with why in X-Kares-Refused (the app would
                        # otherwise resend it forever and hold up its queue)
                        {
                            "description": "Any other JSON: not stored; the reply's "
                            "X-Kares-Refused header says why"
                        },
                    ]
                }
            }
        },
    }
}


@dataclass
class Message:
    kind: str  # location | transition | waypoints | card | ignored
    fixes: list[FixIn] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    tid: str | None = None
    refused: str | None = None  # why a message that is not stored is not (kind "ignored")


# OwnTracks' message types that carry nothing Kares keeps (the booklet's JSON page)
NOT_KEPT = frozenset(
    {"lwt", "cmd", "status", "steps", "beacon", "request", "configuration", "dump", "msg"}
)
REFUSED_DETAIL = {
    "owntracks.encrypted": "An encrypted payload: Kares holds no OwnTracks secret key; "
    "turn encryption off in the app.",
    "owntracks.not_kept": "A message type that holds nothing Kares keeps.",
    "owntracks.unknown_type": "Not an OwnTracks message (no known _type).",
    "owntracks.empty": "An empty body (what the app posts when a friend is deleted).",
    "owntracks.invalid": "A location needs numeric lat, lon and tst (epoch seconds).",
}


def _ignored(code: str) -> Message:
    return Message("ignored", refused=code)


def _fix(msg: dict[str, Any], device: str, prefix: str) -> FixIn | None:
    """The message's fix; None when it has no numeric lat, lon and tst (epoch seconds)."""
    lat, lon, tst = num(msg.get("lat")), num(msg.get("lon")), integer(msg.get("tst"))
    if lat is None or lon is None or tst is None or not 0 <= tst < 2**33:
        return None
    vel = num(msg.get("vel"))
    batt = integer(msg.get("batt"))
    return FixIn(
        t_ms=tst * 1000,
        lat=lat,
        lon=lon,
        # one fix per device, time and place: a retried post is stored once
        client_id=f"{prefix}:{device}:{tst}:{lat:.6f},{lon:.6f}"[:96],
        accuracy_m=positive(msg.get("acc")),
        altitude_m=num(msg.get("alt")),
        speed_mps=vel / 3.6 if vel is not None and vel >= 0 else None,
        course_deg=num(msg.get("cog")),
        battery=batt,
        source="gps",
    )


def _region(msg: dict[str, Any]) -> Region | None:
    lat, lon = num(msg.get("lat")), num(msg.get("lon"))
    desc = msg.get("desc")
    rid = msg.get("rid")
    tst = integer(msg.get("tst"))
    if lat is None or lon is None or not isinstance(desc, str) or not desc.strip():
        return None
    ident = rid if isinstance(rid, str) and rid else (str(tst) if tst is not None else desc)
    return Region(
        external_id=f"owntracks:{ident}"[:64],
        name=desc,
        lat=lat,
        lon=lon,
        radius_m=num(msg.get("rad")) or 0.0,
    )


def parse(payload: Any, *, device: str) -> Message:
    """One OwnTracks message (pure: no I/O). What the app sends is answered 200
    whatever it holds: the app retries a message until it gets a 2xx and holds up
    the messages behind it, so one it cannot fix (its own encrypted payload, a type
    Kares does not keep, a location without a position) is not stored, with why."""
    if not isinstance(payload, dict):
        return _ignored("owntracks.unknown_type")
    kind = payload.get("_type")
    tid = payload.get("tid") if isinstance(payload.get("tid"), str) else None
    if kind in ("location", "transition"):
        # a transition is the device's own enter/leave: its position is a fix like
        # any other; whether someone arrived is decided on the server, for every place
        fix = _fix(payload, device, "ot" if kind == "location" else "ott")
        if fix is None:
            return _ignored("owntracks.invalid")
        return Message(kind, [fix], tid=tid)
    if kind == "waypoint":
        wp = _region(payload)
        return Message("waypoints", regions=[wp] if wp else [])
    if kind == "waypoints":
        items = payload.get("waypoints")
        if not isinstance(items, list):
            return _ignored("owntracks.invalid")
        found = (_region(x) for x in items[:MAX_WAYPOINTS] if isinstance(x, dict))
        return Message("waypoints", regions=[w for w in found if w is not None])
    if kind == "card":
        return Message("card", tid=tid)
    if kind == "encrypted":
        return _ignored("owntracks.encrypted")
    if kind in NOT_KEPT:
        return _ignored("owntracks.not_kept")
    return _ignored("owntracks.unknown_type")


def _tid(name: str | None) -> str:
    letters = [w[0] for w in (name or "").split() if w and w[0].isalnum()]
    return ("".join(letters[:2]) or (name or "?")[:2]).upper() or "??"


async def friends(
    s: Conn, rt: Runtime, me: str, degraded: dict[str, str], own_topic: tuple[str, str]
) -> list[dict[str, Any]]:
    """OwnTracks' reply: the last location and card of every family member the
    caller may see (the caller included), each under its own topic."""
    out: list[dict[str, Any]] = []
    for who in await service.visible_positions(s, me):
        account_id, name, last = who.account_id, who.name, who.last
        user, device = own_topic if account_id == me else (f"kares-{account_id[:12]}", "kares")
        topic = f"owntracks/{user}/{device}"
        tid = who.tid or _tid(name)
        card: dict[str, Any] = {"_type": "card", "tid": tid, "topic": topic}
        if name:
            card["name"] = name
        out.append(card)
        if last is None:
            continue
        lat, lon, acc_m, precise = service.shown(
            rt, last.lat, last.lon, last.accuracy_m, last.precise, degraded
        )
        loc: dict[str, Any] = {
            "_type": "location",
            "tid": tid,
            "lat": lat,
            "lon": lon,
            "tst": last.recorded_ms // 1000,
            "topic": topic,
        }
        if acc_m is not None:
            loc["acc"] = round(acc_m)
        if last.battery is not None:
            loc["batt"] = last.battery
        if last.speed_mps is not None and precise:
            loc["vel"] = round(last.speed_mps * 3.6)
        out.append(loc)
    return out


GUARD = ("driving_tracks", "upload")


@router.post(
    "/owntracks",
    responses=responses(
        *AUTH_ERRORS,
        (400, "request.bad"),
        (403, "owntracks.user_mismatch"),
    ),
    openapi_extra=OWNTRACKS_BODY,
    summary="OwnTracks HTTP mode: store a location, reply with the family's locations",
    description="Authenticate with HTTP Basic (a tracker's user name and secret) or a bearer "
    "token. `X-Limit-U`, when sent, must be the credential's user name; `X-Limit-D` names "
    "the device. Accepts `location`, `transition`, `waypoint`, `waypoints` and `card`; the "
    "reply is a JSON array of the last locations and cards of the family members who share "
    "their location with you, yourself included. A message that is not stored (a fix the "
    "checks refuse, an `encrypted` payload, a type Kares does not keep, a location without "
    "a position, an empty body) is still answered 200, so the app does not resend it "
    "forever, with its code in the `X-Kares-Refused` header (`[]` when nothing of it was "
    "kept). Only a body that is not JSON is refused (400).",
)
async def owntracks(
    request: Request,
    ctx: Annotated[Allowed, guard(*GUARD, trackers=True)],
    rt: RuntimeDep,
    s: DbDep,
) -> Response:
    # served by the lane below (kares.lanes) in the app; this route documents it,
    # declares its guard, and serves it wherever the lane is not installed
    body, headers = await _post(
        s, rt, ctx, request.headers, request.query_params, await request.body()
    )
    return JSONResponse(body, headers=headers)


async def _post(
    s: AsyncSession,
    rt: Runtime,
    ctx: Allowed,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    raw: bytes,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One post of the app, its caller admitted: the reply and its headers."""
    assert ctx.caller is not None
    tracker = await trackers.of_session(s, ctx.caller.session.id)
    username = _username(tracker, ctx.account_id)
    if _other_user(headers, query, username):
        raise Problem(
            403,
            "owntracks.user_mismatch",
            f"This credential belongs to user {username!r}; set that as the user name.",
        )
    device = _device(headers, query)
    # the booklet: the app posts a zero-length body when a friend is deleted
    if raw.strip():
        msg = parse(jsonread.body(raw), device=device)
    else:
        msg = _ignored("owntracks.empty")
    out: dict[str, str] = {}
    codes: list[str] = []
    if msg.fixes or msg.regions or msg.tid:
        res = await service.upload(
            s, rt, ctx, msg.fixes, regions=msg.regions, tracker=tracker, tid=msg.tid
        )
        codes = [r.code for r in res.rejected + res.flagged]
    if msg.refused is not None:
        codes.append(msg.refused)
    if codes:
        # the app cannot act on a refusal (a 4xx makes it resend the same message
        # forever): say it in a header and the log
        out["X-Kares-Refused"] = ",".join(codes)
        log.info("owntracks message not stored: %s", ",".join(codes))
    if msg.kind == "ignored":
        return [], out
    return await friends(s, rt, ctx.account_id, ctx.degraded, (username, device)), out


def _username(tracker: trackers.Credential | None, account_id: str) -> str:
    """The OwnTracks user name of a caller: its tracker's, or one made of its account."""
    return tracker.username if tracker is not None else f"kares-{account_id[:12]}"


def _other_user(headers: Mapping[str, str], query: Mapping[str, str], username: str) -> bool:
    """Whether the app names a user (``X-Limit-U`` or ``?u=``) other than the caller."""
    limit_u = headers.get("x-limit-u") or query.get("u")
    return limit_u is not None and limit_u != "" and limit_u.lower() != username.lower()


def _device(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """The device the app names (``X-Limit-D`` or ``?d=``): part of each fix's retry key."""
    return (headers.get("x-limit-d") or query.get("d") or "phone")[:32]


async def lane(scope: Scope, raw: bytes) -> Reply:
    """``POST /owntracks`` without the framework (kares.lanes): the same caller,
    guard and post as the route above. On SQLite a location in the steady state
    is stored on a bare transaction (:func:`_steady`); anything else, and every
    post on PostgreSQL, goes the route's way with a session."""
    rt: Runtime = scope["app"].state.runtime
    headers = Headers(scope=scope)
    query = QueryParams(scope["query_string"])
    if rt.db.dialect == "sqlite" and "cookie" not in headers:
        reply = await _steady(rt, headers, query, raw)
        if reply is not None:
            return reply
    s = rt.db.sessions()
    try:
        cookies = cookie_parser(headers["cookie"]) if "cookie" in headers else {}
        caller = await request_caller(
            s, rt, headers, cookies, lambda: unsafe_without_csrf("POST", headers)
        )
        ctx = await admit(s, rt, caller, *GUARD, trackers=True)
        body, extra = await _post(s, rt, ctx, headers, query, raw)
    finally:
        await s.close()
    return json_reply(body, extra)


async def _steady(
    rt: Runtime, headers: Mapping[str, str], query: Mapping[str, str], raw: bytes
) -> Reply | None:
    """One location in the steady state: a live session that needs no touch, the
    guard's decision remembered, the tracker known, one fix that
    ``service.upload_steady`` can store. None, with nothing stored, for anything
    else: the caller then answers as the route does."""
    creds = steady_credentials(headers)
    if creds is None:
        return None
    device = _device(headers, query)
    if not raw.strip():
        return None
    try:
        payload = jsonread.loads(raw)
    except ValueError:
        return None
    msg = parse(payload, device=device)
    if msg.kind not in ("location", "transition") or len(msg.fixes) != 1 or msg.regions:
        return None
    async with rt.db.tx() as tx:
        facts = await steady_session(tx, rt, creds.token)
        if facts is None or (creds.scheme == "basic" and facts.kind != TRACKER_KIND):
            return None
        tracker = trackers.known(facts.session_id)
        if facts.kind == TRACKER_KIND and tracker is None:
            return None  # the route reads it (and remembers it)
        username = _username(tracker, facts.account_id)
        if _other_user(headers, query, username):
            return None
        if tracker is not None and trackers.tid_changes(tracker, msg.tid):
            return None
        decided = guard_steady(catalog_of(rt), facts, *GUARD, trackers=True)
        if decided is None:
            return None
        degraded, permissions = decided
        res = await service.upload_steady(
            tx,
            rt,
            account_id=facts.account_id,
            device_id=facts.device_id,
            fix=msg.fixes[0],
            degraded=degraded,
            permissions=permissions,
        )
        if res is None:
            return None
        await tx.commit()
        body = await friends(tx, rt, facts.account_id, degraded, (username, device))
    return json_reply(body)


LANES = {("POST", "/owntracks"): lane}
