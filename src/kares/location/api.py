"""HTTP routes of the location domain: uploads (our apps, OwnTracks, Overland,
files), tracker credentials, the family map and its live stream, tracks,
timelines, exports and places."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, live
from kares.deps import DbDep, RuntimeDep, request_ip
from kares.errors import Problem, responses
from kares.identity.auth import AUTH_ERRORS
from kares.location import compat, formats, places, service, timeline, trackers
from kares.location import schemas as sc
from kares.location.models import LastLocation, Place
from kares.location.points import gc_paused
from kares.location.resolver import Cell, WifiAp
from kares.location.simplify import simplify
from kares.privacy.guard import Allowed, guard
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


def _wifi_allowed(perms: dict[str, str]) -> bool:
    return perms.get("wireless_network") != "denied"


async def _device_perms(s: AsyncSession, ctx: Allowed) -> dict[str, str]:
    """The device's permissions: as the guard read them (uploads need Location,
    so it did), else from the database."""
    from kares.devices import service as devices

    assert ctx.caller is not None
    if ctx.permissions is not None:
        return ctx.permissions
    device_id = ctx.caller.session.device_id
    return await devices.permissions_of(s, device_id) if device_id else {}


async def _ingest(
    s: AsyncSession, rt: Runtime, ctx: Allowed, fixes: list[service.FixIn]
) -> service.IngestResult:
    assert ctx.caller is not None
    perms = await _device_perms(s, ctx)
    return await service.ingest(
        s,
        rt,
        account_id=ctx.account_id,
        device_id=ctx.caller.session.device_id,
        fixes=fixes,
        degraded=ctx.degraded,
        wifi_allowed=_wifi_allowed(perms),
    )


# --- our apps' batch upload --------------------------------------------------------------------


@router.post(
    "/api/v1/location/fixes",
    response_model=sc.BatchResult,
    responses=responses(*AUTH, (422, "request.invalid")),
    summary="Upload a batch of fixes (up to 1,000; retries are stored once)",
    description="Each fix may carry the client's own `id`: a batch sent again stores "
    "nothing twice. Fixes may be late and out of order. Impossible fixes are refused or "
    "flagged one by one, with the reason; the rest is stored. When precise location is "
    "withdrawn (consent or the device's approximate permission state) positions are "
    "rounded before they are stored. Tracker credentials may call this too.",
)
async def upload(
    body: sc.FixBatch,
    ctx: Annotated[Allowed, guard("driving_tracks", "upload", trackers=True)],
    rt: RuntimeDep,
    s: DbDep,
) -> sc.BatchResult:
    if len(body.fixes) > rt.settings.location_batch_max:
        raise Problem(
            422,
            "location.batch_too_large",
            f"At most {rt.settings.location_batch_max} fixes per request.",
        )
    fixes = [
        service.FixIn(
            t_ms=_ms(f.t),
            lat=f.lat,
            lon=f.lon,
            client_id=f.id,
            accuracy_m=f.accuracy_m,
            altitude_m=f.altitude_m,
            speed_mps=f.speed_mps,
            course_deg=f.course_deg,
            battery=f.battery,
            source=f.source,
            cells=tuple(Cell(c.mcc, c.mnc, c.lac, c.cid, c.rssi) for c in f.cells),
            wifi=tuple(WifiAp("", w.mac.lower().replace("-", ":"), w.rssi) for w in f.wifi),
        )
        for f in body.fixes
    ]
    res = await _ingest(s, rt, ctx, fixes)
    return sc.BatchResult(
        accepted=res.accepted,
        duplicates=res.duplicates,
        unresolved=res.unresolved,
        flagged=_refusals(res.flagged),
        rejected=_refusals(res.rejected),
        precision="approximate" if res.precision == "approximate" else "precise",
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


# --- OwnTracks and Overland --------------------------------------------------------------------


def _tid(name: str | None) -> str:
    letters = [w[0] for w in (name or "").split() if w and w[0].isalnum()]
    return ("".join(letters[:2]) or (name or "?")[:2]).upper() or "??"


async def _friends(
    s: AsyncSession, rt: Runtime, ctx: Allowed, own_topic: tuple[str, str]
) -> list[dict[str, Any]]:
    """OwnTracks' reply: the last location and card of every family member the
    caller may see (the caller included), each under its own topic."""
    me = ctx.account_id
    people = await service.visible_people(s, me)
    ids = list(people)
    lasts = await service.last_locations(s, ids)
    tids = await trackers.tids_for(s, ids)
    out: list[dict[str, Any]] = []
    for account_id in ids:
        name = people[account_id]
        user, device = own_topic if account_id == me else (f"kares-{account_id[:12]}", "kares")
        topic = f"owntracks/{user}/{device}"
        tid = tids.get(account_id) or _tid(name)
        card: dict[str, Any] = {"_type": "card", "tid": tid, "topic": topic}
        if name:
            card["name"] = name
        out.append(card)
        last = lasts.get(account_id)
        if last is None:
            continue
        lat, lon, acc_m, precise = service.shown(
            rt, last.lat, last.lon, last.accuracy_m, last.precise, ctx.degraded
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


async def _json_body(request: Request, code: str) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, code, "The body is not JSON.") from exc


@router.post(
    "/owntracks",
    responses=responses(*AUTH, (400, "owntracks.invalid"), (403, "owntracks.user_mismatch")),
    summary="OwnTracks HTTP mode: store a location, reply with the family's locations",
    description="Authenticate with HTTP Basic (a tracker's user name and secret) or a bearer "
    "token. `X-Limit-U`, when sent, must be the credential's user name; `X-Limit-D` names "
    "the device. Accepts `location`, `transition`, `waypoint`, `waypoints` and `card`; the "
    "reply is a JSON array of the last locations and cards of the family members who share "
    "their location with you, yourself included. Other types are ignored with `[]`.",
)
async def owntracks(
    request: Request,
    ctx: Annotated[Allowed, guard("driving_tracks", "upload", trackers=True)],
    rt: RuntimeDep,
    s: DbDep,
) -> Response:
    assert ctx.caller is not None
    tracker = await trackers.of_session(s, ctx.caller.session.id)
    username = tracker.username if tracker is not None else f"kares-{ctx.account_id[:12]}"
    limit_u = request.headers.get("x-limit-u") or request.query_params.get("u")
    if limit_u and limit_u.lower() != username.lower():
        raise Problem(
            403,
            "owntracks.user_mismatch",
            f"This credential belongs to user {username!r}; set that as the user name.",
        )
    device = (request.headers.get("x-limit-d") or request.query_params.get("d") or "phone")[:32]
    msg = compat.owntracks(await _json_body(request, "owntracks.invalid"), device=device)
    headers: dict[str, str] = {}
    if msg.fixes:
        res = await _ingest(s, rt, ctx, msg.fixes)
        if res.rejected or res.flagged:
            # the app cannot act on a refusal (a 4xx makes it resend the same fix
            # forever); say it in a header and the log
            codes = [r.code for r in res.rejected + res.flagged]
            headers["X-Kares-Refused"] = ",".join(codes)
            log.info("owntracks fix refused: %s", ",".join(codes))
    for wp in msg.waypoints:
        await places.upsert_personal(
            s,
            account_id=ctx.account_id,
            external_id=wp.external_id,
            name=wp.name,
            lat=wp.lat,
            lon=wp.lon,
            radius_m=wp.radius_m,
        )
    if tracker is not None and msg.tid:
        await trackers.set_tid(s, tracker, msg.tid)
    if msg.kind == "ignored":
        return JSONResponse([], headers=headers)
    body = await _friends(s, rt, ctx, (username, device))
    return JSONResponse(body, headers=headers)


@router.post(
    "/overland",
    responses=responses(*AUTH, (400, "overland.invalid"), (413, "overland.batch_too_large")),
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
    fixes = compat.overland(await _json_body(request, "overland.invalid"))
    headers: dict[str, str] = {}
    if fixes:
        res = await _ingest(s, rt, ctx, fixes)
        codes = sorted({r.code for r in res.rejected + res.flagged})
        if codes:
            headers["X-Kares-Refused"] = ",".join(codes)
    return Response(b'{"result":"ok"}', media_type="application/json", headers=headers)


# --- the family map and its live stream --------------------------------------------------------


def _position(rt: Runtime, last: LastLocation, degraded: dict[str, str]) -> sc.Position:
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
        position=_position(rt, m.last, degraded) if m.last is not None else None,
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


def _sse(kind: str, data: Any, seq: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(
        event=kind, data=data, id=str(seq) if seq is not None else None, retry=3000
    )


async def _position_event(
    s: AsyncSession, rt: Runtime, ctx: Allowed, subject_id: str
) -> dict[str, Any]:
    if not await service.may_see_live(s, ctx.account_id, subject_id):
        return {"account_id": subject_id, "position": None}
    last = await s.get(LastLocation, subject_id, populate_existing=True)
    pos = _position(rt, last, ctx.degraded).model_dump(mode="json") if last else None
    return {"account_id": subject_id, "position": pos}


@router.get(
    "/api/v1/location/stream",
    response_class=EventSourceResponse,
    responses=responses(*AUTH),
    summary="Live family map: server-sent events",
    description="First a `snapshot` event (every family member the caller may see, as in "
    "the map), then a `location` event whenever one of them moves, re-checked against "
    "their sharing at the moment it is sent (a member who stops sharing is sent with "
    "`position: null`). Comments keep the connection alive every 15 s. After a reconnect, "
    "or when the client falls behind, a fresh `snapshot` replaces whatever was missed.",
)
async def stream(
    request: Request,
    ctx: Annotated[Allowed, guard("driving_tracks", "view")],
    rt: RuntimeDep,
    max_seconds: Annotated[float | None, Query(gt=0, le=86_400)] = None,
) -> AsyncIterator[ServerSentEvent]:
    sub = live.hub.subscribe(ctx.account_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds if max_seconds else None
    try:
        async with rt.db.sessions() as s:
            yield _sse("snapshot", await _snapshot(s, rt, ctx))
        while deadline is None or loop.time() < deadline:
            wait = STREAM_PING_SECONDS
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - loop.time()))
            try:
                notice = await asyncio.wait_for(sub.queue.get(), timeout=wait)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ServerSentEvent(comment="ping")
                continue
            async with rt.db.sessions() as s:
                if sub.lagged:
                    sub.lagged = False
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    yield _sse("snapshot", await _snapshot(s, rt, ctx), notice.seq)
                    continue
                yield _sse("location", await _position_event(s, rt, ctx, notice.about), notice.seq)
    finally:
        live.hub.unsubscribe(sub)


async def _snapshot(s: AsyncSession, rt: Runtime, ctx: Allowed) -> dict[str, Any]:
    from kares.families import service as families

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


# --- tracks, timelines, exports ----------------------------------------------------------------


def _range(start: datetime | None, end: datetime | None) -> tuple[int, int]:
    now = clock.utcnow()
    end = end or now
    start = start or end - timedelta(days=1)
    if end <= start:
        raise Problem(422, "location.invalid_range", "`to` must be after `from`.")
    if end - start > MAX_SPAN:
        raise Problem(
            422, "location.range_too_long", "Ask for at most 7 days at a time.", max_days=7
        )
    return _ms(start), _ms(end)


FromQ = Annotated[datetime | None, Query(alias="from")]
ToQ = Annotated[datetime | None, Query(alias="to")]


def _aware(t: datetime | None) -> datetime | None:
    if t is not None and t.tzinfo is None:
        raise Problem(422, "location.invalid_range", "Give times with their zone (ISO 8601).")
    return t


def _shown_fixes(
    rt: Runtime, fixes: list[service.StoredFix], degraded: dict[str, str]
) -> tuple[list[service.StoredFix], bool]:
    if service.PRECISE not in degraded and all(f.precise for f in fixes):
        return fixes, True
    out = []
    for f in fixes:
        lat, lon, acc, precise = service.shown(rt, f.lat, f.lon, f.accuracy_m, f.precise, degraded)
        out.append(
            service.StoredFix(
                f.id,
                f.t_ms,
                lat,
                lon,
                acc,
                None if not precise else f.altitude_m,
                f.speed_mps if precise else None,
                f.course_deg if precise else None,
                f.battery,
                f.source,
                precise,
            )
        )
    return out, all(f.precise for f in out)


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
    start: FromQ = None,
    end: ToQ = None,
    zoom: Annotated[int | None, Query(ge=0, le=22)] = None,
    max_points: Annotated[int, Query(ge=2, le=20_000)] = 2000,
    raw: bool = False,
    cursor: Annotated[str | None, Query(max_length=40, pattern=r"^\d+:\d+$")] = None,
) -> sc.Track:
    from_ms, to_ms = _range(_aware(start), _aware(end))
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
        fixes = await service.fixes_between(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
        total = len(fixes)
        with gc_paused():
            keep = simplify(service.to_points(fixes), zoom=zoom, max_points=max_points)
        fixes = [fixes[i] for i in keep]
        nxt = None
    shown, precise = _shown_fixes(rt, fixes, ctx.degraded)
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
    start: FromQ = None,
    end: ToQ = None,
) -> sc.Timeline:
    from_ms, to_ms = _range(_aware(start), _aware(end))
    fixes = await service.fixes_between(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
    with gc_paused():
        shown, precise = _shown_fixes(rt, fixes, ctx.degraded)
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


@router.get(
    "/api/v1/location/{account_id}/export",
    responses={
        200: {
            "content": {"application/gpx+xml": {}, "application/geo+json": {}},
            "description": "The track as a file",
        },
        **responses(*AUTH, (403, "sharing.off"), (404, "not_found")),
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
    from_ms, to_ms = _range(_aware(start), _aware(end))
    fixes = await service.fixes_between(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
    shown, _ = _shown_fixes(rt, fixes, ctx.degraded)
    day = _dt(from_ms).strftime("%Y%m%d")
    if format == "gpx":
        body = formats.to_gpx(f"Kares track {day}", shown).encode()
        media, ext = "application/gpx+xml", "gpx"
    else:
        body = json.dumps(formats.to_geojson(account_id, shown)).encode()
        media, ext = "application/geo+json", "geojson"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="kares-track-{day}.{ext}"'},
    )


@router.post(
    "/api/v1/location/import",
    response_model=sc.ImportResult,
    responses=responses(
        *AUTH,
        (413, "import.too_many_points"),
        (415, "import.unsupported"),
        (422, "import.invalid_gpx"),
        (422, "import.invalid_geojson"),
    ),
    summary="Import your own past routes from a GPX or GeoJSON file",
    description="Send the file as the request body (`application/gpx+xml` or "
    "`application/geo+json`). Points need times; the same file imported twice is stored "
    "once. The same checks as any upload apply, point by point.",
)
async def import_file(
    request: Request,
    ctx: Annotated[Allowed, guard("driving_tracks", "import")],
    rt: RuntimeDep,
    s: DbDep,
) -> sc.ImportResult:
    data = await request.body()
    parsed = formats.parse(data, request.headers.get("content-type"))
    accepted = duplicates = rejected = flagged = 0
    for k in range(0, len(parsed.fixes), rt.settings.location_batch_max):
        chunk = parsed.fixes[k : k + rt.settings.location_batch_max]
        res = await service.ingest(
            s,
            rt,
            account_id=ctx.account_id,
            device_id=None,
            fixes=chunk,
            degraded=ctx.degraded,
        )
        accepted += res.accepted
        duplicates += res.duplicates
        rejected += len(res.rejected)
        flagged += len(res.flagged)
    return sc.ImportResult(
        format="gpx" if parsed.format == "gpx" else "geojson",
        points=parsed.points,
        accepted=accepted,
        duplicates=duplicates,
        rejected=rejected + parsed.untimed,
        flagged=flagged,
    )


# --- places ------------------------------------------------------------------------------------


async def _place_out(s: AsyncSession, p: Place, viewer_id: str) -> sc.PlaceOut:
    present: list[sc.PresenceOut] = []
    if p.family_id is not None:
        from kares.families import service as families

        ids = [acc.id for _, acc in await families.members_of(s, p.family_id)]
        pres = await places.presence_of(s, p.id, ids)
        for acc_id, row in pres.items():
            if row.inside and await service.may_see_live(s, viewer_id, acc_id):
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
