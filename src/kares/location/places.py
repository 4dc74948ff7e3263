"""Places: named circles (home, school) and arrive/leave alerts that do not flap.

A family's places are shared by its members; a personal place (an OwnTracks
region) belongs to one person. Whether someone is inside a place is decided
per (place, person) with hysteresis:

* a fix counts as *inside* when its distance to the centre is at most the
  radius; as *outside* only when even the near edge of its accuracy circle is
  beyond the radius plus a band (``max(50 m, radius / 4)``). A fix in the band
  is no evidence either way, so jitter at the border cannot flip the state;
* a crossing is confirmed only when the fixes have said the other side for
  ``place_confirm_seconds`` (two fixes at least that far apart), so one
  outlier never produces an arrive/leave pair;
* a fix older than the newest one already seen is ignored: late fixes cannot
  rewind the state;
* the first evidence for a new (place, person) sets the state without an alert.

A confirmed crossing tells everyone who asked for it (``place_alerts``) and
may still see that person's location (shared family, sharing live or history,
not paused), through ``notify.send``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, events
from kares.db import Conn, Statement, dialect_of
from kares.errors import Problem
from kares.families import service as families
from kares.families.models import FamilyMember
from kares.geo.distance import haversine_m
from kares.identity.models import Account
from kares.location.models import Place, PlaceAlert, PlacePresence
from kares.notify import service as notify
from kares.runtime import Runtime

log = logging.getLogger("kares.location.places")

MIN_RADIUS_M = 50.0
MAX_RADIUS_M = 50_000.0
MAX_PLACES_PER_FAMILY = 100
# accuracy beyond this cannot make a fix count as outside a place
MAX_EVIDENCE_ACCURACY_M = 500.0


def band_m(radius_m: float) -> float:
    return max(50.0, radius_m / 4)


@dataclass
class Presence:
    inside: bool | None
    since_ms: int
    seen_ms: int
    pending_since_ms: int | None


@dataclass(frozen=True)
class Crossing:
    arrived: bool
    at_ms: int


def evidence(distance_m: float, accuracy_m: float | None, radius_m: float) -> bool | None:
    """True: inside; False: outside; None: in the band, no evidence."""
    if distance_m <= radius_m:
        return True
    acc = min(accuracy_m or 0.0, MAX_EVIDENCE_ACCURACY_M)
    if distance_m - acc > radius_m + band_m(radius_m):
        return False
    return None


def step(
    state: Presence, *, t_ms: int, inside: bool | None, confirm_ms: int
) -> tuple[Presence, Crossing | None]:
    """One fix through the hysteresis state machine (pure)."""
    if t_ms <= state.seen_ms and state.inside is not None:
        return state, None  # late: cannot rewind
    state = Presence(state.inside, state.since_ms, max(state.seen_ms, t_ms), state.pending_since_ms)
    if inside is None:
        return state, None
    if state.inside is None:
        return Presence(inside, t_ms, t_ms, None), None
    if inside == state.inside:
        state.pending_since_ms = None
        return state, None
    if state.pending_since_ms is None:
        state.pending_since_ms = t_ms
    if t_ms - state.pending_since_ms >= confirm_ms:
        at = state.pending_since_ms
        return Presence(inside, at, state.seen_ms, None), Crossing(inside, at)
    return state, None


# --- observing fixes ---------------------------------------------------------------------------


# the places that apply to a person: their families' and their own
_APPLIES = or_(
    Place.family_id.in_(
        select(FamilyMember.family_id).where(FamilyMember.account_id == bindparam("account"))
    ),
    (Place.family_id.is_(None)) & (Place.account_id == bindparam("account")),
)
_PLACES_FOR = select(Place).where(_APPLIES)


async def places_for(s: AsyncSession, account_id: str) -> list[Place]:
    """The places that apply to a person: their families' and their own."""
    return list((await s.execute(_PLACES_FOR, {"account": account_id})).scalars())


# what observing a fix needs of those places, on every upload: plain rows
_CIRCLES = Statement(
    select(Place.id, Place.family_id, Place.name, Place.lat, Place.lon, Place.radius_m).where(
        _APPLIES
    )
)


_PRESENCE = Statement(
    select(
        PlacePresence.place_id,
        PlacePresence.inside,
        PlacePresence.since_ms,
        PlacePresence.seen_ms,
        PlacePresence.pending_since_ms,
    ).where(
        PlacePresence.account_id == bindparam("account"),
        PlacePresence.place_id.in_(
            select(Place.id).where(_APPLIES)  # the places _CIRCLES reads
        ),
    )
)
_STATE = ("inside", "since_ms", "seen_ms", "pending_since_ms")


def _keep_presence(dialect: str) -> Statement:
    insert = postgresql.insert if dialect == "postgresql" else sqlite_insert
    ins = insert(PlacePresence).values(
        place_id=bindparam("place_id"),
        account_id=bindparam("account_id"),
        **{c: bindparam(c) for c in _STATE},
    )
    return Statement(
        ins.on_conflict_do_update(
            index_elements=["place_id", "account_id"],
            set_={c: getattr(ins.excluded, c) for c in _STATE},
        )
    )


_KEEP_PRESENCE = {d: _keep_presence(d) for d in ("sqlite", "postgresql")}


async def observe(
    s: Conn,
    rt: Runtime,
    *,
    account_id: str,
    fixes: Sequence[dict[str, Any]],
    steady: bool = False,
) -> list[tuple[Any, Crossing]] | None:
    """Run a person's new good fixes (in time order) through every place that
    applies to them; tell the watchers of each confirmed crossing. In the
    caller's transaction: the upload that carried the fixes commits it all.

    ``steady``: the caller's transaction is a bare :class:`~kares.db.Tx` that
    cannot tell anyone; when a fix crosses a place's edge, nothing is written
    and None is returned (the caller runs the upload again with a session)."""
    found = await _CIRCLES.rows(s, {"account": account_id})
    if not found:
        return []
    confirm_ms = rt.settings.place_confirm_seconds * 1000
    stored = {p.place_id: p for p in await _PRESENCE.rows(s, {"account": account_id})}
    crossings: list[tuple[Any, Crossing]] = []
    changed: list[tuple[str, Presence]] = []
    for place in found:
        row = stored.get(place.id)
        before = (
            Presence(row.inside, row.since_ms, row.seen_ms, row.pending_since_ms)
            if row is not None
            else Presence(None, 0, 0, None)
        )
        state = Presence(before.inside, before.since_ms, before.seen_ms, before.pending_since_ms)
        for f in fixes:
            d = haversine_m(place.lat, place.lon, f["lat"], f["lon"])
            ev = evidence(d, f["accuracy_m"], place.radius_m)
            state, crossing = step(state, t_ms=f["recorded_ms"], inside=ev, confirm_ms=confirm_ms)
            if crossing is not None:
                crossings.append((place, crossing))
        if state.inside is not None and state != before:
            changed.append((place.id, state))
    if steady and crossings:
        return None
    keep = _KEEP_PRESENCE[dialect_of(s)]
    for place_id, state in changed:
        await keep.run(
            s,
            {
                "place_id": place_id,
                "account_id": account_id,
                "inside": state.inside,
                "since_ms": state.since_ms,
                "seen_ms": state.seen_ms,
                "pending_since_ms": state.pending_since_ms,
            },
        )
    if crossings:
        assert isinstance(s, AsyncSession)
        for place, crossing in crossings:
            await _tell(s, place, account_id, crossing)
    return crossings


async def _tell(s: AsyncSession, place: Any, subject_id: str, crossing: Crossing) -> None:
    if crossing.arrived:
        await events.emit(
            s,
            "place.arrived",
            account_id=subject_id,
            family_id=place.family_id,
            place_name=place.name,
        )
    q = select(PlaceAlert).where(
        PlaceAlert.place_id == place.id,
        or_(PlaceAlert.subject_id == subject_id, PlaceAlert.subject_id.is_(None)),
        PlaceAlert.watcher_id != subject_id,
    )
    wanted = [
        a.watcher_id
        for a in (await s.execute(q)).scalars()
        if (a.on_arrive if crossing.arrived else a.on_leave)
    ]
    watchers = [w for w in dict.fromkeys(wanted) if await families.may_see(s, w, subject_id)]
    if not watchers:
        return
    person = await s.get(Account, subject_id)
    who = (person.name if person is not None else None) or "A family member"
    verb = "arrived at" if crossing.arrived else "left"
    await notify.send(
        s,
        account_ids=watchers,
        category="location",
        title=f"{who} {verb} {place.name}"[:120],
        body=f"{who} {verb} {place.name}.",
        data={
            "place_id": place.id,
            "account_id": subject_id,
            "event": "arrive" if crossing.arrived else "leave",
            "at_ms": crossing.at_ms,
        },
    )


# --- managing places ---------------------------------------------------------------------------


def _check_circle(lat: float, lon: float, radius_m: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        raise Problem(
            422, "place.invalid", "A place's centre needs a valid latitude and longitude."
        )
    if lat == 0 and lon == 0:
        raise Problem(422, "place.invalid", "0,0 is not a place.")
    if not (MIN_RADIUS_M <= radius_m <= MAX_RADIUS_M):
        raise Problem(
            422,
            "place.invalid_radius",
            f"A place's radius is between {MIN_RADIUS_M:.0f} m and {MAX_RADIUS_M:.0f} m.",
        )


def _not_found() -> Problem:
    return Problem(404, "place.not_found", "No such place.")


async def create(
    s: AsyncSession,
    *,
    family_id: str,
    actor_id: str,
    name: str,
    lat: float,
    lon: float,
    radius_m: float,
) -> Place:
    """Any member (not a dependant) adds a place to their family."""
    _, me = await families.require_member(s, family_id, actor_id)
    if me.role == "dependant":
        raise Problem(403, "family.forbidden", "A dependant's guardians manage places.")
    clean = families.clean_name(name, max_len=64, code="place.invalid_name")
    _check_circle(lat, lon, radius_m)
    await families.hold(s, family_id)
    count = len(
        (await s.execute(select(Place.id).where(Place.family_id == family_id))).scalars().all()
    )
    if count >= MAX_PLACES_PER_FAMILY:
        raise Problem(409, "place.limit", f"A family has at most {MAX_PLACES_PER_FAMILY} places.")
    now = clock.utcnow()
    p = Place(
        family_id=family_id,
        account_id=actor_id,
        name=clean,
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        created_at=now,
        updated_at=now,
    )
    s.add(p)
    await s.commit()
    return p


async def visible(s: AsyncSession, *, place_id: str, account_id: str) -> Place:
    """A place the caller may see: one of their families' or their own."""
    p = await s.get(Place, place_id) if families.is_id(place_id) else None
    if p is None:
        raise _not_found()
    if p.family_id is None:
        if p.account_id != account_id:
            raise _not_found()
        return p
    if await families.member(s, p.family_id, account_id) is None:
        raise _not_found()
    return p


async def _editable(s: AsyncSession, *, place_id: str, actor_id: str) -> Place:
    p = await visible(s, place_id=place_id, account_id=actor_id)
    if p.family_id is not None:
        m = await families.member(s, p.family_id, actor_id)
        if m is None or (m.role == "dependant"):
            raise Problem(403, "family.forbidden", "A dependant's guardians manage places.")
        if p.account_id != actor_id and m.role not in families.ADMINS:
            raise Problem(
                403,
                "family.forbidden",
                "Only whoever added a place, or the family's owner and guardians, change it.",
            )
    return p


async def update(
    s: AsyncSession,
    *,
    place_id: str,
    actor_id: str,
    name: str | None,
    lat: float | None,
    lon: float | None,
    radius_m: float | None,
) -> Place:
    p = await _editable(s, place_id=place_id, actor_id=actor_id)
    clean = families.clean_name(name, max_len=64, code="place.invalid_name") if name else None
    new_lat = p.lat if lat is None else lat
    new_lon = p.lon if lon is None else lon
    new_r = p.radius_m if radius_m is None else radius_m
    _check_circle(new_lat, new_lon, new_r)
    moved = (new_lat, new_lon, new_r) != (p.lat, p.lon, p.radius_m)
    if clean is not None:
        p.name = clean
    p.lat, p.lon, p.radius_m = new_lat, new_lon, new_r
    p.updated_at = clock.utcnow()
    if moved:
        # everyone's presence is decided afresh against the new circle
        await s.execute(delete(PlacePresence).where(PlacePresence.place_id == p.id))
    await s.commit()
    return p


async def remove(s: AsyncSession, *, place_id: str, actor_id: str) -> None:
    p = await _editable(s, place_id=place_id, actor_id=actor_id)
    await s.delete(p)
    await s.commit()


async def list_places(s: AsyncSession, *, family_id: str, account_id: str) -> list[Place]:
    await families.require_member(s, family_id, account_id)
    q = select(Place).where(Place.family_id == family_id).order_by(Place.name, Place.id)
    return list((await s.execute(q)).scalars())


async def presence_of(
    s: AsyncSession, place_id: str, account_ids: Sequence[str]
) -> dict[str, PlacePresence]:
    if not account_ids:
        return {}
    q = select(PlacePresence).where(
        PlacePresence.place_id == place_id, PlacePresence.account_id.in_(list(account_ids))
    )
    return {p.account_id: p for p in (await s.execute(q)).scalars()}


async def set_alert(
    s: AsyncSession,
    *,
    place_id: str,
    watcher_id: str,
    subject_id: str | None,
    on_arrive: bool,
    on_leave: bool,
) -> PlaceAlert | None:
    """Ask (or stop asking, with both false) to be told when someone arrives at
    or leaves a family place. ``subject_id`` None: any member."""
    p = await visible(s, place_id=place_id, account_id=watcher_id)
    if p.family_id is None:
        raise Problem(422, "place.personal", "Alerts are for family places; this one is personal.")
    if subject_id is not None:
        if subject_id == watcher_id or await families.member(s, p.family_id, subject_id) is None:
            raise Problem(404, "member.not_found", "No such member in this place's family.")
    q = select(PlaceAlert).where(
        PlaceAlert.place_id == place_id,
        PlaceAlert.watcher_id == watcher_id,
        PlaceAlert.subject_id.is_(None)
        if subject_id is None
        else PlaceAlert.subject_id == subject_id,
    )
    row = (await s.execute(q)).scalar_one_or_none()
    if not on_arrive and not on_leave:
        if row is not None:
            await s.delete(row)
            await s.commit()
        return None
    if row is None:
        row = PlaceAlert(
            place_id=place_id,
            watcher_id=watcher_id,
            subject_id=subject_id,
            created_at=clock.utcnow(),
        )
        s.add(row)
    row.on_arrive, row.on_leave = on_arrive, on_leave
    await s.commit()
    return row


async def alerts_of(s: AsyncSession, *, place_id: str, watcher_id: str) -> list[PlaceAlert]:
    await visible(s, place_id=place_id, account_id=watcher_id)
    q = select(PlaceAlert).where(
        PlaceAlert.place_id == place_id, PlaceAlert.watcher_id == watcher_id
    )
    return list((await s.execute(q)).scalars())


async def upsert_personal(
    s: AsyncSession,
    *,
    account_id: str,
    external_id: str,
    name: str,
    lat: float,
    lon: float,
    radius_m: float,
) -> Place | None:
    """A person's own region (an OwnTracks waypoint), keyed by the client's id.
    Invalid regions are skipped (None): the app cannot be told per region. In the
    caller's transaction (the upload that carried it)."""
    try:
        clean = families.clean_name(name, max_len=64, code="place.invalid_name")
        _check_circle(lat, lon, min(max(radius_m, MIN_RADIUS_M), MAX_RADIUS_M))
    except Problem:
        return None
    radius = min(max(radius_m, MIN_RADIUS_M), MAX_RADIUS_M)
    q = select(Place).where(Place.account_id == account_id, Place.external_id == external_id)
    p = (await s.execute(q)).scalar_one_or_none()
    now = clock.utcnow()
    if p is None:
        p = Place(
            family_id=None,
            account_id=account_id,
            external_id=external_id,
            created_at=now,
            name=clean,
            lat=lat,
            lon=lon,
            radius_m=radius,
            updated_at=now,
        )
        s.add(p)
    else:
        if (p.lat, p.lon, p.radius_m) != (lat, lon, radius):
            await s.execute(delete(PlacePresence).where(PlacePresence.place_id == p.id))
        p.name, p.lat, p.lon, p.radius_m, p.updated_at = clean, lat, lon, radius, now
    await s.flush()
    return p


def nearest(places: Sequence[Place], lat: float, lon: float) -> Place | None:
    """The place a stay is at: the nearest whose circle holds the point."""
    best: tuple[float, Place] | None = None
    for p in places:
        d = haversine_m(p.lat, p.lon, lat, lon)
        if d <= p.radius_m + band_m(p.radius_m) and (best is None or d < best[0]):
            best = (d, p)
    return best[1] if best else None
