"""HTTP routes of the location domain: uploads (our apps, OwnTracks, Overland,
files), tracker credentials, the family map and its live stream, tracks,
timelines, exports and places."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import Response
from fastapi.sse import format_sse_event
from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Receive, Scope, Send

from kares import live
from kares.deps import (
    DbDep,
    JsonModelRoute,
    RuntimeDep,
    end_request_session,
    pydantic_only,
    read_body,
    request_ip,
)
from kares.errors import Problem, responses
from kares.families import service as families
from kares.geo import timeline
from kares.geo.points import gc_paused
from kares.geo.resolver import Cell, WifiAp
from kares.geo.simplify import simplify
from kares.identity.auth import AUTH_ERRORS, caller_for_session
from kares.location import places, service, trackers
from kares.location import schemas as sc
from kares.location.models import LastLocation, Place
from kares.privacy.guard import Allowed, admit, guard
from kares.runtime import Runtime

log = logging.getLogger("kares.location")
router = APIRouter(tags=["location"])
AUTH = AUTH_ERRORS
MAX_SPAN = timedelta(days=7)
RAW_PAGE = 5000
STREAM_PING_SECONDS = 15.0


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _refusals(items: list[service.Refusal]) -> list[sc.RefusalOut]:
    return [
        sc.RefusalOut(index=r.index, id=r.client_id, code=r.code, detail=r.detail) for r in items
    ]


# --- our apps' batch upload --------------------------------------------------------------------


def _cells(cells: list[sc.CellIn]) -> tuple[Cell, ...]:
    return tuple(Cell(c.mcc, c.mnc, c.lac, c.cid, c.rssi) for c in cells)


def _wifi(aps: list[sc.WifiIn]) -> tuple[WifiAp, ...]:
    return tuple(WifiAp("", w.mac.lower().replace("-", ":"), w.rssi) for w in aps)


def _fix_in(f: sc.FixIn) -> service.FixIn:
    # the model's way, for a body the reader below left to it
    return service.FixIn(
        _ms(f.t),
        f.lat,
        f.lon,
        f.id,
        f.accuracy_m,
        f.altitude_m,
        f.speed_mps,
        f.course_deg,
        f.battery,
        f.source,
        _cells(f.cells) if f.cells else (),
        _wifi(f.wifi) if f.wifi else (),
    )


# what _fix_in does, done by the reader as each field is validated
_RENAMED = {"id": "client_id", "t": "t_ms"}
_THEN: dict[str, Callable[[Any], Any]] = {"t": _ms, "cells": _cells, "wifi": _wifi}


def _fixes_reader() -> SchemaValidator:
    """The batch body validated straight into ``service.FixIn``s: sc.FixBatch's own
    rules (taken from its schema, so they cannot drift apart), made
    :func:`pydantic_only`, with each fix built as the dataclass ``ingest`` takes
    instead of a model object and then a ``FixIn`` (a 1,000-fix batch is the
    largest body clients send). No tuple is built for absent cells and Wi-Fi."""
    batch: Any = pydantic_only(sc.FixBatch.__pydantic_core_schema__)  # a model's schema
    fixes = batch["schema"]["fields"]["fixes"]["schema"]
    model = fixes["items_schema"]
    assert batch["cls"] is sc.FixBatch and model["cls"] is sc.FixIn
    fields = []
    for name, f in model["schema"]["fields"].items():
        rule, then = f["schema"], _THEN.get(name)
        if then is not None and rule["type"] == "default":  # cells, wifi: an empty list
            rule = cs.with_default_schema(
                cs.no_info_after_validator_function(then, rule["schema"]), default=()
            )
        elif then is not None:
            rule = cs.no_info_after_validator_function(then, rule)
        fields.append(
            cs.dataclass_field(
                _RENAMED.get(name, name),
                rule,
                validation_alias=name if name in _RENAMED else None,
            )
        )
    # every field of the body is one of FixIn's (FixIn.flag is not sent: its default)
    assert {f["name"] for f in fields} <= {f.name for f in dataclass_fields(service.FixIn)}
    fix = cs.dataclass_schema(
        service.FixIn,
        cs.dataclass_args_schema("FixIn", fields, extra_behavior="forbid"),
        [f["name"] for f in fields],
        config=model["config"],
    )
    body = cs.typed_dict_schema(
        {"fixes": cs.typed_dict_field({**fixes, "items_schema": fix})},
        extra_behavior="forbid",
    )
    return SchemaValidator(body, batch["config"])


_FIXES = _fixes_reader()


def _read_fixes(raw: bytes) -> list[service.FixIn]:
    fixes: list[service.FixIn] = _FIXES.validate_json(raw)["fixes"]
    return fixes


async def upload(
    body: sc.FixBatch,
    request: Request,
    ctx: Annotated[Allowed, guard("driving_tracks", "upload", trackers=True)],
    rt: RuntimeDep,
    s: DbDep,
) -> sc.BatchResult:
    fixes: list[service.FixIn] | None = read_body(request)
    if fixes is None:
        fixes = [_fix_in(f) for f in body.fixes]
    if len(fixes) > rt.settings.location_batch_max:
        raise Problem(
            422,
            "location.batch_too_large",
            f"At most {rt.settings.location_batch_max} fixes per request.",
        )
    res = await service.upload(s, rt, ctx, fixes)
    return sc.BatchResult(
        accepted=res.accepted,
        duplicates=res.duplicates,
        unresolved=res.unresolved,
        flagged=_refusals(res.flagged),
        rejected=_refusals(res.rejected),
        precision="approximate" if res.precision == "approximate" else "precise",
    )


# validated from the raw bytes, straight into what ingest takes: a 1,000-fix batch
# is the largest body clients send
router.add_api_route(
    "/api/v1/location/fixes",
    upload,
    methods=["POST"],
    route_class_override=JsonModelRoute.reading(_read_fixes),
    response_model=sc.BatchResult,
    responses=responses(*AUTH, (422, "request.invalid")),
    summary="Upload a batch of fixes (up to 1,000; retries are stored once)",
    description="Each fix may carry the client's own `id`: a batch sent again stores "
    "nothing twice. Fixes may be late and out of order. Impossible fixes are refused or "
    "flagged one by one, with the reason; the rest is stored. When precise location is "
    "withdrawn (consent or the device's approximate permission state) positions are "
    "rounded before they are stored. Tracker credentials may call this too.",
)


# --- tracker credentials -----------------------------------------------------------------------


def _tracker_out(v: trackers.TrackerView) -> sc.TrackerOut:
    t = v.tracker
    return sc.TrackerOut(
        id=t.id,
        name=t.name,
        kind=t.kind,
        username=t.username,
        created_at=t.created_at,
        last_used_at=v.last_used_at,
        revoked=v.revoked,
    )


def _setup(request: Request, kind: str, username: str, secret: str) -> sc.TrackerSetup:
    base = str(request.base_url).rstrip("/")
    if kind == "owntracks":
        return sc.TrackerSetup(
            url=f"{base}/owntracks", auth="basic", user=username, password=secret
        )
    if kind == "overland":
        return sc.TrackerSetup(url=f"{base}/overland", auth="bearer", token=secret)
    return sc.TrackerSetup(url=f"{base}/api/v1/location/fixes", auth="bearer", token=secret)


@router.post(
    "/api/v1/location/trackers",
    status_code=status.HTTP_201_CREATED,
    response_model=sc.TrackerCreated,
    responses=responses(*AUTH, (409, "tracker.limit"), (422, "tracker.invalid_name")),
    summary="Create a credential for a tracking app or logger (the secret is shown once)",
    description="It lets that app upload your location and nothing else. OwnTracks: HTTP "
    "mode, the URL, and the user name and secret as its user and password. Overland: the "
    "URL and the secret as its access token.",
)
async def create_tracker(
    body: sc.TrackerCreate,
    request: Request,
    ctx: Annotated[Allowed, guard("driving_tracks", "trackers")],
    rt: RuntimeDep,
    s: DbDep,
) -> sc.TrackerCreated:
    t, secret = await trackers.create(
        s, account_id=ctx.account_id, name=body.name, kind=body.kind, ip=request_ip(request, rt)
    )
    out = _tracker_out(trackers.TrackerView(t, None, False))
    return sc.TrackerCreated(
        **out.model_dump(), secret=secret, setup=_setup(request, t.kind, t.username, secret)
    )


@router.get(
    "/api/v1/location/trackers",
    response_model=list[sc.TrackerOut],
    responses=responses(*AUTH),
    summary="Your tracker credentials, with their last use",
)
async def list_trackers(
    ctx: Annotated[Allowed, guard("driving_tracks", "trackers")], s: DbDep
) -> list[sc.TrackerOut]:
    return [_tracker_out(v) for v in await trackers.list_for(s, account_id=ctx.account_id)]


@router.delete(
    "/api/v1/location/trackers/{tracker_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH, (404, "tracker.not_found")),
    summary="Revoke a tracker credential (it stops working at once)",
)
async def revoke_tracker(
    tracker_id: str, ctx: Annotated[Allowed, guard("driving_tracks", "trackers")], s: DbDep
) -> Response:
    await trackers.revoke(s, account_id=ctx.account_id, tracker_id=tracker_id)
    return Response(status_code=204)


# --- the family map and its live stream --------------------------------------------------------


def position_of(rt: Runtime, last: LastLocation, degraded: dict[str, str]) -> sc.Position:
    lat, lon, acc, precise = service.shown(
        rt, last.lat, last.lon, last.accuracy_m, last.precise, degraded
    )
    return sc.Position(
        lat=lat,
        lon=lon,
        accuracy_m=acc,
        precise=precise,
        speed_mps=last.speed_mps if precise else None,
        course_deg=last.course_deg if precise else None,
        at=_dt(last.recorded_ms),
    )


def _member_out(rt: Runtime, m: service.MemberPosition, degraded: dict[str, str]) -> Any:
    return sc.MemberLocation(
        account_id=m.account_id,
        name=m.name,
        role=m.role,
        sharing=m.sharing,
        position=position_of(rt, m.last, degraded) if m.last is not None else None,
        battery=m.battery,
        battery_at=m.battery_at,
    )


@router.get(
    "/api/v1/families/{family_id}/map",
    response_model=sc.FamilyMap,
    responses=responses(*AUTH, (404, "family.not_found")),
    summary="The family map: each member's last position, battery and when",
    description="A member who does not share location now (off, or paused) is listed "
    "without a position. Positions are approximate when the member withdrew precise "
    "location or the caller may only see approximate location.",
)
async def family_map(
    family_id: str,
    ctx: Annotated[Allowed, guard("driving_tracks", "view")],
    rt: RuntimeDep,
    s: DbDep,
) -> sc.FamilyMap:
    members = await service.family_map(s, family_id=family_id, viewer_id=ctx.account_id)
    return sc.FamilyMap(
        family_id=family_id, members=[_member_out(rt, m, ctx.degraded) for m in members]
    )


def _sse(kind: str, data: Any, seq: int | None = None) -> bytes:
    return format_sse_event(
        data_str=json.dumps(data),
        event=kind,
        id=str(seq) if seq is not None else None,
        retry=3000,
    )


_PING = format_sse_event(comment="ping")
# the notices the live map answers: someone moved, or who shares with whom changed
_MAP_KINDS = frozenset({"location", "family"})


async def _position_event(
    s: AsyncSession, rt: Runtime, ctx: Allowed, subject_id: str
) -> dict[str, Any]:
    if not await families.may_see(s, ctx.account_id, subject_id):
        return {"account_id": subject_id, "position": None}
    last = await s.get(LastLocation, subject_id, populate_existing=True)
    pos = position_of(rt, last, ctx.degraded).model_dump(mode="json") if last else None
    return {"account_id": subject_id, "position": pos}


async def _readmit(s: AsyncSession, rt: Runtime, ctx: Allowed) -> Allowed | dict[str, str]:
    """The guard's checks again, before anything more is sent: a stream outlives
    the request that opened it, and a revoked session, a withdrawn consent or a
    closed permission must stop it at the next event. Returns why it ended."""
    assert ctx.caller is not None
    caller = await caller_for_session(s, ctx.caller.session.id)
    if caller is None:
        return {"code": "auth.invalid_token", "detail": "This session has ended."}
    try:
        return await admit(s, rt, caller, ctx.function, ctx.feature)
    except Problem as exc:
        return {"code": exc.code, "detail": exc.detail}


class _LiveMap(Response):
    """The live map's event stream, as a plain ASGI response.

    While it waits, a stream is one task parked on its subscription's queue (with
    a timer for the next ping) and one task parked on ``receive`` for the client
    leaving: no database session, and as little in memory as the request itself.
    Every object a parked stream holds is one the garbage collector walks on
    each full collection, so a thousand open maps must stay small.
    """

    media_type = "text/event-stream"

    def __init__(self, rt: Runtime, ctx: Allowed, deadline: float | None) -> None:
        # as StreamingResponse does: no body, so no Content-Length
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.rt, self.ctx, self.deadline = rt, ctx, deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt, ctx = self.rt, self.ctx
        # the guard's session is done with: a crowd opening maps at once must not
        # hold the pool while it queues for its turn to read
        await end_request_session(scope)
        async with live.hub.reading(), rt.db.sessions() as s:  # a reconnecting crowd queues
            watching = await families.co_members(s, ctx.account_id)
            first = _sse("snapshot", await _snapshot(s, rt, ctx))
        sub = live.hub.subscribe(ctx.account_id, watching)
        try:
            gone = asyncio.create_task(_until_gone(receive, sub))
            try:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                await send({"type": "http.response.body", "body": first, "more_body": True})
                await self._follow(sub, send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the client left (ASGI 2.4 servers say so on send)
                pass
            finally:
                gone.cancel()
        finally:
            live.hub.unsubscribe(sub)

    async def _follow(self, sub: live.Subscription, send: Send) -> None:
        rt, ctx = self.rt, self.ctx
        loop = asyncio.get_running_loop()
        while not sub.closed:
            wait = STREAM_PING_SECONDS
            if self.deadline is not None:
                wait = min(wait, self.deadline - loop.time())
                if wait <= 0:
                    return
            try:
                async with asyncio.timeout(wait):
                    notice = await sub.queue.get()
            except TimeoutError:
                await send({"type": "http.response.body", "body": _PING, "more_body": True})
                continue
            if sub.closed:
                return
            if notice.kind not in _MAP_KINDS and not sub.lagged:
                continue  # news of another stream (the inbox, messages): nothing on the map
            async with live.hub.reading():  # a few streams re-read at a time
                if sub.closed:  # the client left while this one waited for its turn
                    return
                async with rt.db.sessions() as s:
                    now = await _readmit(s, rt, ctx)
                    if not isinstance(now, Allowed):
                        event = _sse("end", now, notice.seq)
                    elif sub.lagged or notice.kind == "family":
                        if sub.lagged:  # what was missed is in the snapshot
                            sub.lagged = False
                            while not sub.queue.empty():
                                sub.queue.get_nowait()
                        live.hub.watch(sub, await families.co_members(s, ctx.account_id))
                        event = _sse("snapshot", await _snapshot(s, rt, now), notice.seq)
                    else:
                        data = await _position_event(s, rt, now, notice.about)
                        event = _sse("location", data, notice.seq)
            # sent with the session closed: a slow client holds no connection
            await send({"type": "http.response.body", "body": event, "more_body": True})
            if not isinstance(now, Allowed):
                return
            ctx = now


async def _until_gone(receive: Receive, sub: live.Subscription) -> None:
    """Wait for the client to leave, then wake the stream so that it ends."""
    for _ in range(1_000_000):  # a GET has no body: only the disconnect comes
        if (await receive())["type"] == "http.disconnect":
            break
    sub.close()


# what OpenAPI 3.2 says of an event stream (as FastAPI writes it for its own)
_SSE_ITEM = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


@router.get(
    "/api/v1/location/stream",
    status_code=200,
    response_class=_LiveMap,
    responses={
        200: {"content": {"text/event-stream": {"itemSchema": _SSE_ITEM}}},
        **responses(*AUTH),
    },
    summary="Live family map: server-sent events",
    description="First a `snapshot` event (every family member the caller may see, as in "
    "the map), then a `location` event whenever one of them moves, re-checked against "
    "their sharing at the moment it is sent (a member who stops sharing is sent with "
    "`position: null`). Comments keep the connection alive every 15 s. After a reconnect, "
    "when the client falls behind, or when someone joins or leaves one of the caller's "
    "families, a fresh `snapshot` replaces whatever was missed. If the session ends or the "
    "caller's consents or device permissions no longer allow the map, an `end` event says "
    "why and the stream closes. The stream holds no database connection while it waits.",
)
async def stream(
    ctx: Annotated[Allowed, guard("driving_tracks", "view")],
    rt: RuntimeDep,
    max_seconds: Annotated[float | None, Query(gt=0, le=86_400)] = None,
) -> Response:
    loop = asyncio.get_running_loop()
    return _LiveMap(rt, ctx, loop.time() + max_seconds if max_seconds else None)


async def _snapshot(s: AsyncSession, rt: Runtime, ctx: Allowed) -> dict[str, Any]:
    out = []
    for fam in await families.families_of(s, ctx.account_id):
        members = await service.family_map(s, family_id=fam.family.id, viewer_id=ctx.account_id)
        out.append(
            {
                "family_id": fam.family.id,
                "members": [
                    _member_out(rt, m, ctx.degraded).model_dump(mode="json") for m in members
                ],
            }
        )
    return {"families": out}


# --- tracks and timelines ----------------------------------------------------------------


@router.get(
    "/api/v1/location/{account_id}/track",
    response_model=sc.Track,
    responses=responses(
        *AUTH,
        (403, "sharing.off"),
        (404, "not_found"),
        (422, "location.invalid_range"),
        (422, "location.range_too_long"),
    ),
    summary="A member's track for a time range, simplified for display or raw",
    description="Simplified (Ramer-Douglas-Peucker in metres) with the tolerance of one "
    "screen pixel at `zoom` and at most `max_points` points; `raw=true` gives every good "
    f"fix, {RAW_PAGE} per page (`cursor` from `next_cursor`). The member must share "
    "location history with the caller.",
)
async def track(
    account_id: str,
    ctx: Annotated[Allowed, guard("driving_tracks", "history", about="account_id")],
    rt: RuntimeDep,
    s: DbDep,
    start: sc.FromQ = None,
    end: sc.ToQ = None,
    zoom: Annotated[int | None, Query(ge=0, le=22)] = None,
    max_points: Annotated[int, Query(ge=2, le=20_000)] = 2000,
    raw: bool = False,
    cursor: Annotated[str | None, Query(max_length=40, pattern=r"^\d+:\d+$")] = None,
) -> sc.Track:
    from_ms, to_ms = service.time_range(start, end)
    if raw:
        after = tuple(int(x) for x in cursor.split(":")) if cursor else None
        fixes = await service.fixes_between(
            s,
            account_id=account_id,
            from_ms=from_ms,
            to_ms=to_ms,
            after=after,  # type: ignore[arg-type]
            limit=RAW_PAGE + 1,
        )
        more = len(fixes) > RAW_PAGE
        fixes = fixes[:RAW_PAGE]
        nxt = f"{fixes[-1].t_ms}:{fixes[-1].id}" if more else None
        total = len(fixes)
    else:
        fixes = await service.day_fixes(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
        total = len(fixes)
        with gc_paused():
            keep = simplify(service.to_points(fixes), zoom=zoom, max_points=max_points)
        fixes = [fixes[i] for i in keep]
        nxt = None
    shown, precise = service.shown_fixes(rt, fixes, ctx.degraded)
    return sc.Track(
        account_id=account_id,
        start=_dt(from_ms),
        end=_dt(to_ms),
        raw=raw,
        total_points=total,
        points=[
            sc.TrackPoint(
                t=_dt(f.t_ms), lat=f.lat, lon=f.lon, accuracy_m=f.accuracy_m, speed_mps=f.speed_mps
            )
            for f in shown
        ],
        next_cursor=nxt,
        precise=precise,
    )


def _ref(p: Place | None) -> sc.PlaceRef | None:
    return sc.PlaceRef(id=p.id, name=p.name) if p is not None else None


async def _visible_places(s: AsyncSession, viewer_id: str, subject_id: str) -> list[Place]:
    """Places that may name a subject's stays for this viewer: the subject's
    families' places the viewer shares, and the subject's own for themself."""
    found = await places.places_for(s, subject_id)
    if viewer_id == subject_id:
        return found
    mine = {p.id for p in await places.places_for(s, viewer_id)}
    return [p for p in found if p.family_id is not None and p.id in mine]


@router.get(
    "/api/v1/location/{account_id}/timeline",
    response_model=sc.Timeline,
    responses=responses(
        *AUTH,
        (403, "sharing.off"),
        (404, "not_found"),
        (422, "location.invalid_range"),
        (422, "location.range_too_long"),
    ),
    summary="A member's timeline: stays and trips, with driving events for drives",
)
async def member_timeline(
    account_id: str,
    ctx: Annotated[Allowed, guard("driving_tracks", "history", about="account_id")],
    rt: RuntimeDep,
    s: DbDep,
    start: sc.FromQ = None,
    end: sc.ToQ = None,
) -> sc.Timeline:
    from_ms, to_ms = service.time_range(start, end)
    fixes = await service.day_fixes(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
    with gc_paused():
        shown, precise = service.shown_fixes(rt, fixes, ctx.degraded)
        tl = timeline.detect(service.to_points(shown))
    known = await _visible_places(s, ctx.account_id, account_id)
    items: list[sc.StayOut | sc.TripOut] = []
    stay_places: dict[float, Place | None] = {}
    for st in tl.stays:
        p = places.nearest(known, st.lat, st.lon)
        stay_places[st.end_t] = p
        stay_places[st.start_t] = p
        items.append(
            sc.StayOut(
                start=_dt(int(st.start_t * 1000)),
                end=_dt(int(st.end_t * 1000)),
                duration_s=st.end_t - st.start_t,
                lat=st.lat,
                lon=st.lon,
                radius_m=st.radius_m,
                place=_ref(p),
            )
        )
    for tr in tl.trips:
        items.append(
            sc.TripOut(
                start=_dt(int(tr.start_t * 1000)),
                end=_dt(int(tr.end_t * 1000)),
                duration_s=tr.duration_s,
                distance_m=tr.distance_m,
                avg_speed_mps=tr.avg_speed_mps,
                max_speed_mps=tr.max_speed_mps,
                mode=tr.mode,
                start_lat=tr.start_lat,
                start_lon=tr.start_lon,
                end_lat=tr.end_lat,
                end_lon=tr.end_lon,
                from_place=_ref(places.nearest(known, tr.start_lat, tr.start_lon)),
                to_place=_ref(places.nearest(known, tr.end_lat, tr.end_lon)),
                events=[
                    sc.DrivingEventOut(
                        kind=e.kind,
                        start=_dt(int(e.start_t * 1000)),
                        end=_dt(int(e.end_t * 1000)),
                        lat=e.lat,
                        lon=e.lon,
                        value=e.value,
                    )
                    for e in tr.events
                ],
                summary=sc.DrivingSummaryOut(**asdict(tr.summary)) if tr.summary else None,
            )
        )
    items.sort(key=lambda i: i.start)
    return sc.Timeline(
        account_id=account_id,
        start=_dt(from_ms),
        end=_dt(to_ms),
        precise=precise,
        items=items,
    )


# --- places ------------------------------------------------------------------------------------


async def _place_out(s: AsyncSession, p: Place, viewer_id: str) -> sc.PlaceOut:
    present: list[sc.PresenceOut] = []
    if p.family_id is not None:
        ids = [acc.id for _, acc in await families.members_of(s, p.family_id)]
        pres = await places.presence_of(s, p.id, ids)
        for acc_id, row in pres.items():
            if row.inside and await families.may_see(s, viewer_id, acc_id):
                present.append(
                    sc.PresenceOut(account_id=acc_id, inside=True, since=_dt(row.since_ms))
                )
    return sc.PlaceOut(
        id=p.id,
        family_id=p.family_id,
        name=p.name,
        lat=p.lat,
        lon=p.lon,
        radius_m=p.radius_m,
        created_by=p.account_id,
        created_at=p.created_at,
        updated_at=p.updated_at,
        present=present,
    )


PLACE_ERRORS = (
    (403, "family.forbidden"),
    (404, "place.not_found"),
    (422, "place.invalid"),
    (422, "place.invalid_radius"),
    (422, "place.invalid_name"),
)


@router.post(
    "/api/v1/families/{family_id}/places",
    status_code=status.HTTP_201_CREATED,
    response_model=sc.PlaceOut,
    responses=responses(*AUTH, (404, "family.not_found"), (409, "place.limit"), *PLACE_ERRORS),
    summary="Add a place (home, school, ...) to the family",
)
async def create_place(
    family_id: str,
    body: sc.PlaceCreate,
    ctx: Annotated[Allowed, guard("driving_tracks", "places")],
    s: DbDep,
) -> sc.PlaceOut:
    p = await places.create(
        s,
        family_id=family_id,
        actor_id=ctx.account_id,
        name=body.name,
        lat=body.lat,
        lon=body.lon,
        radius_m=body.radius_m,
    )
    return await _place_out(s, p, ctx.account_id)


@router.get(
    "/api/v1/families/{family_id}/places",
    response_model=list[sc.PlaceOut],
    responses=responses(*AUTH, (404, "family.not_found")),
    summary="The family's places, with who is there now (among those who share)",
)
async def list_places(
    family_id: str, ctx: Annotated[Allowed, guard("driving_tracks", "places")], s: DbDep
) -> list[sc.PlaceOut]:
    found = await places.list_places(s, family_id=family_id, account_id=ctx.account_id)
    return [await _place_out(s, p, ctx.account_id) for p in found]


@router.get(
    "/api/v1/places/{place_id}",
    response_model=sc.PlaceOut,
    responses=responses(*AUTH, (404, "place.not_found")),
    summary="One place",
)
async def get_place(
    place_id: str, ctx: Annotated[Allowed, guard("driving_tracks", "places")], s: DbDep
) -> sc.PlaceOut:
    p = await places.visible(s, place_id=place_id, account_id=ctx.account_id)
    return await _place_out(s, p, ctx.account_id)


@router.patch(
    "/api/v1/places/{place_id}",
    response_model=sc.PlaceOut,
    responses=responses(*AUTH, *PLACE_ERRORS),
    summary="Rename, move or resize a place",
)
async def update_place(
    place_id: str,
    body: sc.PlaceUpdate,
    ctx: Annotated[Allowed, guard("driving_tracks", "places")],
    s: DbDep,
) -> sc.PlaceOut:
    p = await places.update(
        s,
        place_id=place_id,
        actor_id=ctx.account_id,
        name=body.name,
        lat=body.lat,
        lon=body.lon,
        radius_m=body.radius_m,
    )
    return await _place_out(s, p, ctx.account_id)


@router.delete(
    "/api/v1/places/{place_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH, (403, "family.forbidden"), (404, "place.not_found")),
    summary="Remove a place (and its alerts)",
)
async def delete_place(
    place_id: str, ctx: Annotated[Allowed, guard("driving_tracks", "places")], s: DbDep
) -> Response:
    await places.remove(s, place_id=place_id, actor_id=ctx.account_id)
    return Response(status_code=204)


@router.put(
    "/api/v1/places/{place_id}/alerts",
    response_model=list[sc.AlertOut],
    responses=responses(
        *AUTH, (404, "place.not_found"), (404, "member.not_found"), (422, "place.personal")
    ),
    summary="Be told when a member (or anyone) arrives at or leaves this place",
    description="Both flags false stops it. You are told only while that member shares "
    "their location with you.",
)
async def set_alert(
    place_id: str,
    body: sc.AlertIn,
    ctx: Annotated[Allowed, guard("driving_tracks", "places")],
    s: DbDep,
) -> list[sc.AlertOut]:
    await places.set_alert(
        s,
        place_id=place_id,
        watcher_id=ctx.account_id,
        subject_id=body.subject_id,
        on_arrive=body.on_arrive,
        on_leave=body.on_leave,
    )
    return await _alerts(s, place_id, ctx.account_id)


async def _alerts(s: AsyncSession, place_id: str, watcher_id: str) -> list[sc.AlertOut]:
    rows = await places.alerts_of(s, place_id=place_id, watcher_id=watcher_id)
    return [
        sc.AlertOut(
            place_id=a.place_id, subject_id=a.subject_id, on_arrive=a.on_arrive, on_leave=a.on_leave
        )
        for a in rows
    ]


@router.get(
    "/api/v1/places/{place_id}/alerts",
    response_model=list[sc.AlertOut],
    responses=responses(*AUTH, (404, "place.not_found")),
    summary="Your alerts for this place",
)
async def get_alerts(
    place_id: str, ctx: Annotated[Allowed, guard("driving_tracks", "places")], s: DbDep
) -> list[sc.AlertOut]:
    return await _alerts(s, place_id, ctx.account_id)
