"""Location: storing fixes, and reading them back as maps, tracks and timelines.

Every way in (our apps' batch API, OwnTracks, Overland, imported files, the
watch TCP listener) is one action, :func:`upload` (or :func:`import_fixes`
for a file), and one transaction: :func:`ingest` validates each fix, applies
the person's precision (precise location withdrawn -> rounded as the catalog
says before anything is stored), stores the batch idempotently, keeps each
person's last location and runs the new fixes through the places; the action
commits once, and only then does the live map hear of the move.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple, overload

import numpy as np
from sqlalchemy import Table, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, events, live
from kares.db import Conn, Statement, Tx, dialect_of, sqlite_driver
from kares.devices.models import Device
from kares.errors import Problem
from kares.families import service as families
from kares.families.models import FamilyMember
from kares.geo import plausible
from kares.geo.distance import haversine_m
from kares.geo.points import Point, PointArrays, gc_paused
from kares.geo.resolver import Cell, WifiAp, resolver_for
from kares.identity.models import Account
from kares.location import days, places, trackers
from kares.location.models import LastLocation, LocationFix, Tracker
from kares.privacy import ports
from kares.privacy import service as privacy
from kares.privacy.catalog import catalog_of
from kares.privacy.ports import Allowed
from kares.runtime import Runtime

log = logging.getLogger("kares.location")

PRECISE = "location.precise"
APPROXIMATE = "location.approximate"
SOURCES = frozenset({"gps", "wifi", "cell", "network", "manual", "import"})
# an "approximate" fix is as good as its rounding: 0.01 degree is about 1.1 km
APPROXIMATE_ACCURACY_M = 1100.0


@dataclass
class FixIn:
    """A fix as a client reported it, before validation."""

    t_ms: int
    lat: float | None
    lon: float | None
    client_id: str | None = None
    accuracy_m: float | None = None
    altitude_m: float | None = None
    speed_mps: float | None = None
    course_deg: float | None = None
    battery: int | None = None
    source: str = "gps"
    cells: tuple[Cell, ...] = ()
    wifi: tuple[WifiAp, ...] = ()
    # the client's own doubt (a FLAG_DETAIL code): stored flagged, never used as good
    flag: str | None = None


@dataclass(frozen=True)
class Refusal:
    index: int
    client_id: str | None
    code: str
    detail: str


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    flagged: list[Refusal] = field(default_factory=list)
    rejected: list[Refusal] = field(default_factory=list)
    unresolved: int = 0
    precision: str = "precise"
    last_updated: bool = False


REJECT_DETAIL = {
    "fix.no_position": "The fix has no coordinates and no cell towers or Wi-Fi access points.",
    "fix.invalid_coordinates": "Latitude and longitude must be finite numbers.",
    "fix.out_of_range": "Latitude must be within ±90 and longitude within ±180 degrees.",
    "fix.null_island": "0,0 is what devices send when they have no position; it is not stored.",
    "fix.future": "The fix is dated in the future.",
    "fix.too_old": "The fix is older than location history is kept.",
    "fix.invalid_accuracy": "Accuracy must be a positive number of metres.",
    "fix.invalid_time": "The fix's time is not a valid time.",
    "fix.invalid_source": "Unknown source; use gps, wifi, cell, network or manual.",
    "fix.duplicate_in_batch": "The same client id appears twice in this batch.",
    "fix.unresolvable": (
        "Only approximate location may be kept, and the cell towers or Wi-Fi access points "
        "could not be turned into a position."
    ),
}
FLAG_DETAIL = {
    "fix.poor_accuracy": "Accuracy worse than the service keeps as good.",
    "fix.impossible_speed": "The reported speed is faster than any vehicle.",
    "fix.implied_speed": "Reaching this fix from the one before needs an impossible speed.",
    "fix.contested": "Another connection reported for the same device at the same time.",
}


def _retention_ms(rt: Runtime) -> int:
    days = catalog_of(rt).categories[PRECISE].retention.days
    return int((days if days is not None else 3650) * 86_400_000)


def _resolve(rt: Runtime, fix: FixIn, wifi_allowed: bool) -> tuple[float, float, float, str] | None:
    wifi = fix.wifi if wifi_allowed else ()
    if not fix.cells and not wifi:
        return None
    found = resolver_for(rt.settings.geo_cells_csv, rt.settings.geo_wifi_csv).resolve(
        fix.cells, wifi
    )
    if found is None:
        return None
    return found.lat, found.lon, found.accuracy_m, found.source


def _radio_json(fix: FixIn, wifi_allowed: bool) -> str | None:
    cells = [[c.mcc, c.mnc, c.lac, c.cid, c.rssi] for c in fix.cells]
    wifi = [[w.mac, w.rssi] for w in fix.wifi] if wifi_allowed else []
    if not cells and not wifi:
        return None
    return json.dumps({"cells": cells, "wifi": wifi}, separators=(",", ":"))


async def ingest(
    s: AsyncSession,
    rt: Runtime,
    *,
    account_id: str,
    device_id: str | None,
    fixes: Sequence[FixIn],
    degraded: dict[str, str],
    wifi_allowed: bool = True,
) -> IngestResult:
    """Validate and store (once per client id) a batch of fixes, keep the last
    location, run the places; in the caller's transaction (nothing is committed
    here), with the live notice registered for after its commit."""
    settings = rt.settings
    now_ms = int(clock.utcnow().timestamp() * 1000)
    res = IngestResult(precision="approximate" if PRECISE in degraded else "precise")
    rows, index = _validate(
        rt,
        fixes,
        res,
        account_id=account_id,
        device_id=device_id,
        now_ms=now_ms,
        approximate=PRECISE in degraded,
        wifi_allowed=wifi_allowed,
    )
    last = await _last_of(s, account_id)
    max_speed = settings.location_max_speed_mps
    jumps = _implied_speeds(rows, None if last is None else last[:3], max_speed)
    recheck: _Recheck | None = None
    if jumps or (last is not None and _any_late(rows, last[0])):
        # a fix that disagrees with the one before it, or one arriving after a newer
        # one: judged with its stored neighbours on both sides (geo.plausible), which
        # may also flag a stored fix the newcomers outvote, or clear one they back
        recheck = await _recheck(s, account_id, rows, max_speed)
        jumps = recheck.flag_new
        last = recheck.last
    for k in jumps:
        rows[k] = (*rows[k][:_STATUS], "flagged", "fix.implied_speed", rows[k][_RADIO])
    inserted = await _store(s, rows)
    # a retried batch (even one running at the same moment): what the database
    # already had is a duplicate, counted from what the INSERT really wrote
    res.duplicates += len(rows) - len(inserted)
    if len(inserted) < len(rows):
        rows = [rows[k] for k in inserted]
        index = [index[k] for k in inserted]
    res.accepted = len(rows)
    good: list[_Row] = []
    for k, r in enumerate(rows):
        st = r[_STATUS]
        if st == "ok":
            good.append(r)
        elif st == "flagged":
            code = r[_FLAG]
            res.flagged.append(Refusal(index[k], r[_CLIENT_ID], code, FLAG_DETAIL[code]))
        else:
            res.unresolved += 1
    if recheck is not None and (recheck.demote or recheck.revive):
        res.last_updated = await _restate(s, account_id, recheck, last)
    if not good:
        return res
    days.note_written(s, account_id, map(_get_row_t, good))

    # the newest good fix (the first of equals, in batch order)
    newest = good[0]
    for r in good:
        if r[_T] > newest[_T]:
            newest = r
    if last is None or newest[_T] > last[0]:
        res.last_updated = await _set_last(s, account_id, newest)
    await places.observe(s, rt, account_id=account_id, fixes=_GoodFixes(good))
    return res


def _validate(
    rt: Runtime,
    fixes: Sequence[FixIn],
    res: IngestResult,
    *,
    account_id: str,
    device_id: str | None,
    now_ms: int,
    approximate: bool,
    wifi_allowed: bool,
) -> tuple[list[_Row], list[int]]:
    """Every fix of the batch checked and turned into the row to store (FIX_COLUMNS
    order), with its index in the batch; refusals and duplicates within the batch
    go into ``res``."""
    precise = not approximate
    oldest_ms = now_ms - _retention_ms(rt)
    newest_ms = now_ms + rt.settings.location_future_tolerance_seconds * 1000
    max_acc = rt.settings.location_max_accuracy_m
    max_speed = rt.settings.location_max_speed_mps
    cat = catalog_of(rt) if approximate else None
    # the rows as ingest writes them (FIX_COLUMNS order), and each one's index in the batch
    rows: list[_Row] = []
    index: list[int] = []
    seen_ids: set[str] = set()
    seen = seen_ids.add
    inf = math.inf

    # One pass: every fix is checked and becomes its row. The usual fix (a position in
    # range, a known source, a time within the window, a sane accuracy) is settled by
    # the first condition; anything else goes through the checks one by one, in the
    # order the table in docs/LOCATION.md gives, for its code.
    for i, fix in enumerate(fixes):
        cid = fix.client_id
        if cid is not None:
            if cid in seen_ids:
                res.duplicates += 1
                continue
            seen(cid)
        t = fix.t_ms
        lat, lon, acc, source = fix.lat, fix.lon, fix.accuracy_m, fix.source
        status, radio = "ok", None
        if not (
            oldest_ms <= t <= newest_ms
            and source in SOURCES
            and (acc is None or 0 < acc < inf)
            and lat is not None
            and lon is not None
            and -90 <= lat <= 90
            and -180 <= lon <= 180
            and (lat != 0 or lon != 0)
        ):
            checked = _check(rt, fix, oldest_ms, newest_ms, approximate, wifi_allowed)
            if isinstance(checked, str):
                res.rejected.append(Refusal(i, cid, checked, REJECT_DETAIL[checked]))
                continue
            lat, lon, acc, source, status, radio = checked
        speed = fix.speed_mps
        if speed is not None:
            speed = float(speed) if 0 <= speed <= 1e6 else None
        course = fix.course_deg
        if course is not None:
            course = float(course) if 0 <= course <= 360 else None
        altitude = fix.altitude_m
        if altitude is not None:
            altitude = float(altitude) if -1000 <= altitude <= 100_000 else None
        battery = fix.battery
        if battery is not None and not 0 <= battery <= 100:
            battery = None
        flag = None
        if status == "ok":
            if acc is not None and acc > max_acc:
                status, flag = "flagged", "fix.poor_accuracy"
            elif speed is not None and speed > max_speed:
                status, flag = "flagged", "fix.impossible_speed"
            elif fix.flag is not None:
                status, flag = "flagged", fix.flag
        if cat is not None and lat is not None and lon is not None:
            lat, lon = privacy.coarsen(cat, APPROXIMATE, lat, lon)
            acc = max(acc or 0.0, APPROXIMATE_ACCURACY_M)
            speed = course = altitude = None
        rows.append(
            (
                account_id, device_id, cid, t, now_ms, lat, lon, acc, altitude, speed, course,
                battery, source, precise, status, flag, radio,
            )
        )  # fmt: skip
        index.append(i)
    return rows, index


# a row of location_fixes as ingest writes it: the values of FIX_COLUMNS, in order
_Row = tuple[Any, ...]


def _check(
    rt: Runtime,
    fix: FixIn,
    oldest_ms: int,
    newest_ms: int,
    approximate: bool,
    wifi_allowed: bool,
) -> str | tuple[float | None, float | None, float | None, str, str, str | None]:
    """The checks of one fix that is not plainly good, one by one: the code it is
    refused with, or (lat, lon, accuracy, source, status, radio) to store it with."""
    if fix.source not in SOURCES:
        return "fix.invalid_source"
    if fix.t_ms > newest_ms:
        return "fix.future"
    if fix.t_ms < oldest_ms:
        return "fix.too_old"
    if fix.accuracy_m is not None and (not math.isfinite(fix.accuracy_m) or fix.accuracy_m <= 0):
        return "fix.invalid_accuracy"
    lat, lon, acc, source = fix.lat, fix.lon, fix.accuracy_m, fix.source
    status, radio = "ok", None
    if lat is None or lon is None:
        resolved = _resolve(rt, fix, wifi_allowed)
        if resolved is not None:
            lat, lon, acc, source = resolved
        elif approximate:
            # what was heard is itself precise location: without a position
            # there is nothing approximate to keep
            return "fix.unresolvable"
        else:
            radio = _radio_json(fix, wifi_allowed)
            if radio is None:
                return "fix.no_position"
            status = "unresolved"
    if lat is not None and lon is not None:
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return "fix.invalid_coordinates"
        if abs(lat) > 90 or abs(lon) > 180:
            return "fix.out_of_range"
        if lat == 0 and lon == 0:
            return "fix.null_island"
    return lat, lon, acc, source, status, radio


class _GoodFixes(Sequence[dict[str, Any]]):
    """The batch's good fixes in time order, as the places see them (one dict per
    fix); built only when they are read, which they are not for someone without
    places."""

    def __init__(self, rows: list[_Row]) -> None:
        self._rows = rows
        self._dicts: list[dict[str, Any]] | None = None

    def _all(self) -> list[dict[str, Any]]:
        if self._dicts is None:
            ordered = sorted(self._rows, key=itemgetter(_T))  # stable: equal times keep order
            self._dicts = [dict(zip(FIX_COLUMNS, r, strict=True)) for r in ordered]
        return self._dicts

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k: Any) -> Any:
        return self._all()[k]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._all())


@dataclass(frozen=True)
class Region:
    """A person's own place as their tracking app defines it (an OwnTracks region)."""

    external_id: str
    name: str
    lat: float
    lon: float
    radius_m: float


def wifi_allowed(perms: dict[str, str]) -> bool:
    """Wi-Fi access points heard are kept only while Wireless Network is open."""
    return perms.get("wireless_network") != "denied"


async def upload(
    s: AsyncSession,
    rt: Runtime,
    allowed: Allowed,
    fixes: Sequence[FixIn],
    *,
    regions: Sequence[Region] = (),
    tracker: trackers.Credential | None = None,
    tid: str | None = None,
) -> IngestResult:
    """One upload of a signed-in device (our apps, a tracking app, a watch): its
    fixes, the regions it defines and its tracker's display id, in one transaction."""
    caller = allowed.caller
    assert caller is not None
    device_id = caller.session.device_id
    perms = allowed.permissions
    if perms is None:
        perms = await ports.device_permissions(s, device_id) if device_id else {}
    res = IngestResult(precision="approximate" if PRECISE in allowed.degraded else "precise")
    if fixes:
        res = await ingest(
            s,
            rt,
            account_id=caller.account.id,
            device_id=device_id,
            fixes=fixes,
            degraded=allowed.degraded,
            wifi_allowed=wifi_allowed(perms),
        )
    for r in regions:
        await places.upsert_personal(
            s,
            account_id=caller.account.id,
            external_id=r.external_id,
            name=r.name,
            lat=r.lat,
            lon=r.lon,
            radius_m=r.radius_m,
        )
    if tracker is not None and tid:
        await trackers.set_tid(s, caller.session.id, tracker, tid)
    await s.commit()
    return res


async def upload_steady(
    tx: Tx,
    rt: Runtime,
    *,
    account_id: str,
    device_id: str | None,
    fix: FixIn,
    degraded: dict[str, str],
    permissions: dict[str, str] | None,
) -> IngestResult | None:
    """One fix of a device in the steady state, on a bare transaction (kares.db.Tx):
    what :func:`upload` does for it, with the same helpers and statements, when
    nothing about it needs more. It is the steady state when the fix passes every
    check, is newer than the person's last location and plausible after it, is not
    stored already, falls on a day whose pack is planned, and crosses no place's
    edge; a fix older than the last location is steady when its stored neighbours
    and it agree (nothing to flag, demote or revive). Otherwise it returns None
    having written nothing that will stay (the caller rolls the transaction back)
    and the caller runs :func:`upload`, which decides the same and does the rest
    (flags, restatements, notices, jobs)."""
    res = IngestResult(precision="approximate" if PRECISE in degraded else "precise")
    rows, _ = _validate(
        rt,
        [fix],
        res,
        account_id=account_id,
        device_id=device_id,
        now_ms=int(clock.utcnow().timestamp() * 1000),
        approximate=PRECISE in degraded,
        wifi_allowed=wifi_allowed(permissions or {}),
    )
    if len(rows) != 1 or rows[0][_STATUS] != "ok" or not days.planned(account_id, [rows[0][_T]]):
        return None
    max_speed = rt.settings.location_max_speed_mps
    last = await _last_of(tx, account_id)
    if last is not None and rows[0][_T] <= last[0]:
        # late (a second device of the person, or posts overtaking each other on
        # their way in): judged with its stored neighbours as ingest judges it, and
        # steady only when they agree with it and with each other
        recheck = await _recheck(tx, account_id, rows, max_speed)
        if recheck.flag_new or recheck.demote or recheck.revive:
            return None
        last = recheck.last
    elif _implied_speeds(rows, None if last is None else last[:3], max_speed):
        return None
    if not await _store(tx, rows):
        return None  # stored already: a retry
    res.accepted = 1
    if last is None or rows[0][_T] > last[0]:
        res.last_updated = await _set_last(tx, account_id, rows[0])
    if (
        await places.observe(tx, rt, account_id=account_id, fixes=_GoodFixes(rows), steady=True)
        is None
    ):
        return None
    return res


@dataclass
class Imported:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    flagged: int = 0
    # every point not kept as good: its index among the fixes given, and why
    refused: list[Refusal] = field(default_factory=list)


async def import_fixes(
    s: AsyncSession, rt: Runtime, allowed: Allowed, fixes: Sequence[FixIn]
) -> Imported:
    """A person's own past routes from a file: every point through the same checks
    as an upload, in batches, one transaction for the whole file."""
    out = Imported()
    batch = rt.settings.location_batch_max
    for k in range(0, len(fixes), batch):
        if k:
            # SQLite runs inline on the event loop (kares.sqlite): let other requests
            # in between the batches of a long file
            await asyncio.sleep(0)
        res = await ingest(
            s,
            rt,
            account_id=allowed.account_id,
            device_id=None,
            fixes=fixes[k : k + batch],
            degraded=allowed.degraded,
        )
        out.accepted += res.accepted
        out.duplicates += res.duplicates
        out.rejected += len(res.rejected)
        out.flagged += len(res.flagged)
        out.refused += (
            Refusal(k + r.index, r.client_id, r.code, r.detail)
            for r in chain(res.rejected, res.flagged)
        )
    out.refused.sort(key=lambda r: r.index)
    await s.commit()
    return out


# the columns ingest writes, in the order of its SQLite insert (bench/ uses them too)
FIX_COLUMNS = (
    "account_id",
    "device_id",
    "client_id",
    "recorded_ms",
    "received_ms",
    "lat",
    "lon",
    "accuracy_m",
    "altitude_m",
    "speed_mps",
    "course_deg",
    "battery",
    "source",
    "precise",
    "status",
    "flag",
    "radio",
)
_SQLITE_INSERT = (
    f"INSERT INTO location_fixes ({', '.join(FIX_COLUMNS)}) "  # noqa: S608 - constant names
    f"VALUES ({', '.join('?' for _ in FIX_COLUMNS)}) "
    "ON CONFLICT (account_id, client_id) DO NOTHING"
)
# SQLite takes a batch fastest as multi-row INSERTs of a fixed size (one statement,
# compiled once per connection, for every full group) and the rest row by row
_SQLITE_GROUP = 100
_SQLITE_INSERT_GROUP = (
    f"INSERT INTO location_fixes ({', '.join(FIX_COLUMNS)}) VALUES "  # noqa: S608 - constant
    + ", ".join([f"({', '.join('?' for _ in FIX_COLUMNS)})"] * _SQLITE_GROUP)
    + " ON CONFLICT (account_id, client_id) DO NOTHING"
)
# positions in a row (FIX_COLUMNS)
_CLIENT_ID, _T, _LAT, _LON, _STATUS, _FLAG, _RADIO = 2, 3, 5, 6, 14, 15, 16
_get_row_t = itemgetter(_T)
_BATCH_CONSTANT = ("account_id", "device_id", "received_ms", "precise")
_PG_TYPES = {
    "account_id": "VARCHAR",
    "device_id": "VARCHAR",
    "client_id": "VARCHAR",
    "recorded_ms": "BIGINT",
    "received_ms": "BIGINT",
    "battery": "SMALLINT",
    "source": "VARCHAR",
    "precise": "BOOLEAN",
    "status": "VARCHAR",
    "flag": "VARCHAR",
    "radio": "TEXT",
}
_PG_PER_ROW = tuple(c for c in FIX_COLUMNS if c not in _BATCH_CONSTANT)
_PG_PER_ROW_AT = tuple(FIX_COLUMNS.index(c) for c in _PG_PER_ROW)
# One statement for the whole batch: the batch's values as one array per column,
# unnested into rows (the constant columns once); what it really wrote comes back.
_PG_INSERT = text(
    f"INSERT INTO location_fixes ({', '.join((*_BATCH_CONSTANT, *_PG_PER_ROW))}) "  # noqa: S608
    "SELECT "
    + ", ".join(f"CAST(:{c} AS {_PG_TYPES[c]})" for c in _BATCH_CONSTANT)
    + ", u.* FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_PG_TYPES.get(c, 'FLOAT8')}[])" for c in _PG_PER_ROW)
    + f") AS u({', '.join(_PG_PER_ROW)}) WHERE u.recorded_ms IS NOT NULL"
    " ON CONFLICT (account_id, client_id) DO NOTHING RETURNING client_id"
)


_PG_WIDTH = 32


def _pg_array(values: Sequence[Any]) -> list[list[Any]]:
    """A column as a two-dimensional array, rows of ``_PG_WIDTH`` padded with NULLs
    (unnest reads every element in order; the padding rows have no time and are
    left out). asyncpg checks every element of an array's first row and the first
    element of every row for whether it is itself an array, through the abstract
    base classes, which costs more than encoding it: this shape checks ~2·sqrt(n)."""
    n = len(values)
    padded = [*values, *([None] * (-n % _PG_WIDTH))]
    return [padded[k : k + _PG_WIDTH] for k in range(0, len(padded), _PG_WIDTH)]


async def _sqlite_driver(s: Conn) -> Any:
    """The session's own SQLite connection (kares.sqlite), in its transaction."""
    driver = await sqlite_driver(s)
    assert driver is not None, "a SQLite session"
    return driver


async def _store(s: Conn, rows: list[_Row]) -> list[int]:
    """Insert the rows, each (account, client id) once; returns the positions of
    the rows that were written, so concurrent retries cannot both count a fix.

    PostgreSQL: one INSERT ... SELECT FROM unnest(one array per column) ON CONFLICT
    DO NOTHING RETURNING client_id. SQLite: the driver's executemany, the cheapest
    way in, inside the action's transaction (which this process's write gate admits
    alone, kares.sqlite); only when SQLite skipped some rows of a batch is that
    undone and redone with the rows not already stored."""
    if not rows:
        return []
    if dialect_of(s) == "postgresql":
        assert isinstance(s, AsyncSession)
        columns = list(zip(*rows, strict=True))
        params: dict[str, Any] = {c: rows[0][FIX_COLUMNS.index(c)] for c in _BATCH_CONSTANT}
        for c, k in zip(_PG_PER_ROW, _PG_PER_ROW_AT, strict=True):
            params[c] = _pg_array(columns[k])
        written = {c for (c,) in (await s.execute(_PG_INSERT, params)).all()}
        if len(written) == len(rows):  # no NULL client id, nothing skipped
            return list(range(len(rows)))
        return [k for k, r in enumerate(rows) if r[_CLIENT_ID] is None or r[_CLIENT_ID] in written]
    driver = await _sqlite_driver(s)
    # the first write begins the action's transaction (kares.sqlite: BEGIN
    # IMMEDIATE), so the savepoint below cannot open and commit one of its own
    before = driver.total_changes
    if len(rows) == 1:  # one fix (a phone's post): stored, or already there
        await driver.execute(_SQLITE_INSERT, rows[0])
        return [0] if driver.total_changes > before else []
    assert isinstance(s, AsyncSession)
    # the usual case, a batch of new fixes, needs no look-up: insert, and only if
    # the database skipped some, undo and insert again knowing which are stored
    await driver.execute("SAVEPOINT kares_ingest")
    await _sqlite_insert(driver, rows)
    if driver.total_changes - before == len(rows):
        await driver.execute("RELEASE kares_ingest")
        return list(range(len(rows)))
    await driver.execute("ROLLBACK TO kares_ingest")
    await driver.execute("RELEASE kares_ingest")
    table: Table = LocationFix.__table__  # type: ignore[assignment]
    account_id = rows[0][0]
    ids = [r[_CLIENT_ID] for r in rows if r[_CLIENT_ID] is not None]
    stored: set[str] = set()
    for k in range(0, len(ids), 500):
        q = select(table.c.client_id).where(
            table.c.account_id == account_id, table.c.client_id.in_(ids[k : k + 500])
        )
        stored.update(c for c in (await s.execute(q)).scalars() if c is not None)
    keep = [k for k, r in enumerate(rows) if r[_CLIENT_ID] is None or r[_CLIENT_ID] not in stored]
    await _sqlite_insert(driver, [rows[k] for k in keep])
    return keep


async def _sqlite_insert(driver: Any, rows: list[_Row]) -> None:
    full = len(rows) - len(rows) % _SQLITE_GROUP
    for k in range(0, full, _SQLITE_GROUP):
        await driver.execute(
            _SQLITE_INSERT_GROUP, list(chain.from_iterable(rows[k : k + _SQLITE_GROUP]))
        )
    if full < len(rows):
        await driver.executemany(_SQLITE_INSERT, rows[full:])


# the stored last location, as ingest needs it (a row, not an ORM object: the
# upsert below changes it behind the session's back)
_LAST = Statement(
    select(
        LastLocation.recorded_ms, LastLocation.lat, LastLocation.lon, LastLocation.position
    ).where(LastLocation.account_id == bindparam("account_id"))
)


async def _last_of(s: Conn, account_id: str) -> tuple[int, float, float, int | None] | None:
    """The time and place of the person's stored last location (where the
    implied-speed check starts), and its position (the id of its fix)."""
    row = await _LAST.first(s, {"account_id": account_id})
    return None if row is None else (row[0], row[1], row[2], row[3])


# --- the plausibility filter over stored neighbours ---------------------------------------------

NEIGHBOURS = 8
"""Stored fixes read on each side of a batch that needs its neighbours."""
_STORED_WEIGHT = 1.001  # a stored good fix: a tie keeps what was there
_IMPLIED = "fix.implied_speed"


@dataclass
class _Recheck:
    flag_new: list[int]  # positions in the batch's rows to flag
    demote: list[int]  # ids of stored good fixes now flagged
    revive: list[int]  # ids of stored fixes flagged for their speed, now good
    last: tuple[int, float, float, int | None] | None


def _any_late(rows: Sequence[_Row], last_ms: int) -> bool:
    return any(r[_T] <= last_ms for r in rows if r[_STATUS] == "ok")


def _neighbours_statements() -> tuple[Statement, Statement, Statement]:
    c = LocationFix.__table__.c
    cols = (c.id, c.client_id, c.recorded_ms, c.lat, c.lon, c.status)
    judged = and_(
        c.account_id == bindparam("account_id"),
        c.lat.is_not(None),
        c.lon.is_not(None),
        or_(c.status == "ok", c.flag == _IMPLIED),
    )
    before = (
        select(*cols)
        .where(judged, c.recorded_ms < bindparam("t_min"))
        .order_by(c.recorded_ms.desc(), c.id.desc())
        .limit(NEIGHBOURS)
    )
    between = select(*cols).where(
        judged, c.recorded_ms >= bindparam("t_min"), c.recorded_ms <= bindparam("t_max")
    )
    after = (
        select(*cols)
        .where(judged, c.recorded_ms > bindparam("t_max"))
        .order_by(c.recorded_ms, c.id)
        .limit(NEIGHBOURS)
    )
    return Statement(before), Statement(between), Statement(after)


_NEIGHBOURS = _neighbours_statements()


_ACCOUNTS: Table = Account.__table__  # type: ignore[assignment]
_HOLD_ACCOUNT = Statement(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .values(updated_at=_ACCOUNTS.c.updated_at)
)
"""``db.hold`` of the person's account row, as a statement that also runs on a bare Tx."""


async def _recheck(s: Conn, account_id: str, rows: Sequence[_Row], max_speed: float) -> _Recheck:
    """The batch's good fixes judged together with the stored ones around them
    (``NEIGHBOURS`` on each side and all in between) by ``geo.plausible.keep``.

    Holds the person's account row first, so two batches of one person that both
    need this are judged one after the other, each seeing the other's fixes."""
    await _HOLD_ACCOUNT.run(s, {"account_id": account_id})
    last = await _last_of(s, account_id)  # as it is now that the row is held
    at = [k for k, r in enumerate(rows) if r[_STATUS] == "ok"]
    if not at:
        return _Recheck([], [], [], last)
    params = {
        "account_id": account_id,
        "t_min": min(rows[k][_T] for k in at),
        "t_max": max(rows[k][_T] for k in at),
    }
    batch_ids = {rows[k][_CLIENT_ID] for k in at} - {None}
    stored = [
        r
        for st in _NEIGHBOURS
        for r in await st.rows(s, params)
        if r.client_id is None or r.client_id not in batch_ids  # a retry is not a neighbour
    ]
    # (time, stored first at equal times, lat, lon, weight, stored id or -1 - position)
    items = [
        (
            r.recorded_ms,
            0,
            r.lat,
            r.lon,
            _STORED_WEIGHT if r.status == "ok" else 1.0,
            r.id,
            r.status == "ok",
        )
        for r in stored
    ]
    items += [(rows[k][_T], 1, rows[k][_LAT], rows[k][_LON], 1.0, -1 - k, True) for k in at]
    items.sort(key=itemgetter(0, 1))
    t = [x[0] for x in items]
    lat = [x[2] for x in items]
    lon = [x[3] for x in items]
    if plausible.consistent(t, lat, lon, max_speed):
        kept = [True] * len(items)
    else:
        kept = plausible.keep(t, lat, lon, [x[4] for x in items], max_speed)
    out = _Recheck([], [], [], last)
    for x, k in zip(items, kept, strict=True):
        ident, was_ok = x[5], x[6]
        if ident < 0:
            if not k:
                out.flag_new.append(-1 - ident)
        elif was_ok and not k:
            out.demote.append(ident)
        elif k and not was_ok:
            out.revive.append(ident)
    return out


_NEWEST_GOOD = Statement(
    select(LocationFix.recorded_ms)
    .where(LocationFix.account_id == bindparam("account_id"), LocationFix.status == "ok")
    .order_by(LocationFix.recorded_ms.desc(), LocationFix.id.desc())
    .limit(1)
)


async def _restate(
    s: AsyncSession,
    account_id: str,
    recheck: _Recheck,
    last: tuple[int, float, float, int | None] | None,
) -> bool:
    """Write what the recheck decided about stored fixes; when the fix of the last
    location lost, or a fix cleared is newer than it, the last location becomes the
    newest good fix (or none), and the person's live streams are told. Whether it
    changed."""
    table: Table = LocationFix.__table__  # type: ignore[assignment]
    for ids, status, flag in ((recheck.demote, "flagged", _IMPLIED), (recheck.revive, "ok", None)):
        for k in range(0, len(ids), 500):
            await s.execute(
                table.update()
                .where(table.c.account_id == account_id, table.c.id.in_(ids[k : k + 500]))
                .values(status=status, flag=flag)
            )
    if recheck.revive:
        changed = select(table.c.recorded_ms).where(table.c.id.in_(recheck.revive))
        days.note_written(s, account_id, (await s.execute(changed)).scalars())
    if last is None or last[3] is None:
        return False  # the batch's newest good fix sets it, as always
    lt: Table = LastLocation.__table__  # type: ignore[assignment]
    newest = await _NEWEST_GOOD.first(s, {"account_id": account_id})
    lost = last[3] in recheck.demote
    if newest is None:
        await s.execute(lt.delete().where(lt.c.account_id == account_id, lt.c.position == last[3]))
        return False
    if not lost and newest[0] <= last[0]:
        return False  # the last location stands
    fix = (
        await s.execute(
            select(*(table.c[c] for c in _LAST_COLUMNS), table.c.id)
            .where(table.c.account_id == account_id, table.c.recorded_ms == newest[0])
            .order_by(table.c.id.desc())
            .limit(1)
        )
    ).one()
    values = {c: fix._mapping[c] for c in _LAST_COLUMNS}
    # only if it is still the one this recheck saw (the account's row is held)
    await s.execute(
        lt.update()
        .where(lt.c.account_id == account_id, lt.c.position == last[3])
        .values(**values, position=fix.id)
    )
    position = int(fix.id)
    events.on_commit(
        s,
        lambda: live.hub.deliver(kind="location", about=account_id, seq=position),
        key=("location", account_id),
    )
    return True


_METRES_PER_DEGREE_BOUND = 111_320  # a degree is at most ~111.2 km
_IMPLIED_SLACK_M = 2000  # a few km of slack: two fixes of poor accuracy a second apart


def _implied_speeds(
    rows: Sequence[_Row], last: tuple[int, float, float] | None, max_speed: float
) -> list[int]:
    """Positions of the good rows that no vehicle could reach from the good fix
    before them: in time order (stable), starting from the stored last location,
    each good fix is checked against the last one that was not itself flagged, and
    flagged when reaching it needs more than ``max_speed`` over more than 2 km.
    Fixes older than the last location are neither checked nor the fix before
    another.

    A bound on the distance of each step (no more than this many metres apart)
    settles nearly every step, in numpy over the whole batch at once; only the
    steps it leaves open, and the step after a flagged fix, are walked one by one
    with the haversine."""
    if all(r[_STATUS] == "ok" for r in rows):
        good, at = rows, None
    else:
        at = [k for k, r in enumerate(rows) if r[_STATUS] == "ok"]
        good = [rows[k] for k in at]
    n = len(good)
    if n == 0:
        return []
    if n <= _FEW:
        # a phone's post of one or a few fixes: numpy's set-up costs more than
        # walking every step (each is checked by the bound first, as below)
        items = sorted(
            zip(
                map(itemgetter(_T), good),
                map(itemgetter(_LAT), good),
                map(itemgetter(_LON), good),
                range(n) if at is None else at,
                strict=True,
            ),
            key=itemgetter(0),
        )
        if last is not None:
            k = bisect_left(items, last[0], key=itemgetter(0))
            items = [(last[0], last[1], last[2], -1), *items[k:]]
        if len(items) < 2:
            return []
        tl, la, lo, pl = (list(c) for c in zip(*items, strict=True))
        return _walk(tl, la, lo, pl, range(1, len(tl)), max_speed)
    t = np.fromiter(map(itemgetter(_T), good), dtype=np.int64, count=n)
    lat = np.fromiter(map(itemgetter(_LAT), good), dtype=np.float64, count=n)
    lon = np.fromiter(map(itemgetter(_LON), good), dtype=np.float64, count=n)
    pos = np.arange(n, dtype=np.int64) if at is None else np.array(at, dtype=np.int64)
    if n > 1 and bool((t[1:] < t[:-1]).any()):
        order = np.argsort(t, kind="stable")
        t, lat, lon, pos = t[order], lat[order], lon[order], pos[order]
    if last is not None:
        k = int(np.searchsorted(t, last[0], side="left"))
        t = np.concatenate(([last[0]], t[k:]))
        lat = np.concatenate(([last[1]], lat[k:]))
        lon = np.concatenate(([last[2]], lon[k:]))
        pos = np.concatenate(([-1], pos[k:]))
    if t.size < 2:
        return []
    bound = (np.abs(np.diff(lat)) + np.abs(np.diff(lon))) * _METRES_PER_DEGREE_BOUND
    # the fixes whose step from the fix just before is not settled by the bound
    unsettled = np.flatnonzero(
        (bound > _IMPLIED_SLACK_M) & (bound > max_speed * (np.diff(t) / 1000))
    )
    if unsettled.size == 0:
        return []
    return _walk(
        t.tolist(), lat.tolist(), lon.tolist(), pos.tolist(), (unsettled + 1).tolist(), max_speed
    )


_FEW = 16  # up to this many fixes, the implied speeds are walked without numpy


def _walk(
    tl: list[int],
    la: list[float],
    lo: list[float],
    pos: list[int],
    unsettled: Iterable[int],
    max_speed: float,
) -> list[int]:
    """The implied-speed walk over fixes in time order (the first is where it
    starts): the positions of the fixes flagged. A step from the fix just before
    that is not in ``unsettled`` is known to be within the bound."""
    open_ = set(unsettled)
    if not open_:
        return []
    flagged: list[int] = []
    first = min(open_)
    p = first - 1  # the fix before the next one (the last one not flagged)
    for i in range(first, len(tl)):
        if p == i - 1 and i not in open_:
            p = i  # settled by the bound
            continue
        if tl[i] > tl[p]:
            dt = (tl[i] - tl[p]) / 1000
            bound_m = (abs(la[i] - la[p]) + abs(lo[i] - lo[p])) * _METRES_PER_DEGREE_BOUND
            if bound_m > _IMPLIED_SLACK_M and bound_m > max_speed * dt:
                d = haversine_m(la[p], lo[p], la[i], lo[i])
                if d > _IMPLIED_SLACK_M and d / dt > max_speed:
                    flagged.append(int(pos[i]))
                    continue
        p = i
    return flagged


_LAST_COLUMNS = (
    "device_id",
    "recorded_ms",
    "lat",
    "lon",
    "accuracy_m",
    "speed_mps",
    "course_deg",
    "battery",
    "precise",
)


def _set_last_statement(dialect: str) -> Any:
    """Insert or replace a person's last location, unless a newer one is stored (a
    concurrent batch with a newer fix wins, whichever commits first); its position
    is the id of the fix it is. Returns the position, or nothing when it lost."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite_insert
    fix = LocationFix.__table__.c
    position = (
        select(func.max(fix.id))
        .where(
            fix.account_id == bindparam("account_id"), fix.recorded_ms == bindparam("recorded_ms")
        )
        .scalar_subquery()
    )
    last: Table = LastLocation.__table__  # type: ignore[assignment]
    ins = insert(last).values(
        account_id=bindparam("account_id"),
        position=position,
        **{c: bindparam(c) for c in _LAST_COLUMNS},
    )
    return ins.on_conflict_do_update(
        index_elements=["account_id"],
        set_={c: getattr(ins.excluded, c) for c in (*_LAST_COLUMNS, "position")},
        where=last.c.recorded_ms < ins.excluded.recorded_ms,
    ).returning(last.c.position)


_SET_LAST = {d: Statement(_set_last_statement(d)) for d in ("sqlite", "postgresql")}


_LAST_AT = [FIX_COLUMNS.index(c) for c in _LAST_COLUMNS]


async def _set_last(s: Conn, account_id: str, row: _Row) -> bool:
    """Make a newly stored good fix (a row as ingest writes it) the person's last
    location, unless a newer one is stored; once that commits, the streams
    watching this person hear of it (and re-read it under their own rights).
    Whether it became the last location."""
    params = {c: row[k] for c, k in zip(_LAST_COLUMNS, _LAST_AT, strict=True)}
    params["account_id"] = account_id
    found = await _SET_LAST[dialect_of(s)].first(s, params)
    if found is None or found.position is None:
        return False
    position = int(found.position)
    events.on_commit(
        s,
        lambda: live.hub.deliver(kind="location", about=account_id, seq=position),
        key=("location", account_id),
    )
    return True


# --- reading -----------------------------------------------------------------------------------


async def last_locations(s: AsyncSession, account_ids: Sequence[str]) -> dict[str, LastLocation]:
    if not account_ids:
        return {}
    q = select(LastLocation).where(LastLocation.account_id.in_(list(account_ids)))
    return {x.account_id: x for x in (await s.execute(q)).scalars()}


def shown(
    rt: Runtime, lat: float, lon: float, acc: float | None, precise: bool, degraded: dict[str, str]
) -> tuple[float, float, float | None, bool]:
    """A stored position as the caller may see it: rounded when it was stored
    approximately or the caller may only see approximate location."""
    if precise and PRECISE not in degraded:
        return lat, lon, acc, True
    la, lo = privacy.coarsen(catalog_of(rt), APPROXIMATE, lat, lon)
    return la, lo, max(acc or 0.0, APPROXIMATE_ACCURACY_M), False


class StoredFix(NamedTuple):
    id: int
    t_ms: int
    lat: float
    lon: float
    accuracy_m: float | None
    altitude_m: float | None
    speed_mps: float | None
    course_deg: float | None
    battery: int | None
    source: str
    precise: bool


class StoredFixes(Sequence[StoredFix]):
    """The fixes of one read, kept as the driver returned them (one row per fix, in
    the order of :class:`StoredFix`'s fields): a ``StoredFix`` is made only for the
    fixes looked at (the 2,000 of a simplified track, say), and the columns the
    track and timeline algorithms need are read out once, as arrays
    (:meth:`points`), instead of 86,400 objects per day."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Sequence[Any]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> StoredFix: ...
    @overload
    def __getitem__(self, i: slice) -> StoredFixes: ...
    def __getitem__(self, i: int | slice) -> StoredFix | StoredFixes:
        if isinstance(i, slice):
            return StoredFixes(self._rows[i])
        r = self._rows[i]
        return StoredFix(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]))

    def __iter__(self) -> Iterator[StoredFix]:
        for r in self._rows:
            yield StoredFix(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]))

    def all_precise(self) -> bool:
        return all(map(_get_precise, self._rows))

    def points(self) -> PointArrays:
        """The fixes as the algorithms' points: t (s), lat, lon, accuracy, speed."""
        rows, n = self._rows, len(self._rows)
        with gc_paused():
            t_ms = np.fromiter(map(_get_t_ms, rows), dtype=np.int64, count=n)
            return PointArrays(
                t_ms / 1000,
                np.fromiter(map(_get_lat, rows), dtype=np.float64, count=n),
                np.fromiter(map(_get_lon, rows), dtype=np.float64, count=n),
                np.array(list(map(_get_acc, rows)), dtype=np.float64),  # None -> NaN
                np.array(list(map(_get_speed, rows)), dtype=np.float64),
            )


_get_t_ms, _get_lat, _get_lon, _get_acc, _get_speed, _get_precise = (
    itemgetter(k) for k in (1, 2, 3, 4, 6, 10)
)


def _none(x: float) -> float | None:
    return None if math.isnan(x) else x


class FixColumns(Sequence[StoredFix]):
    """The good fixes of a track or timeline read (:func:`day_fixes`) as columns:
    time, position, accuracy, speed and the precise flag, what the algorithms and
    the track's points need. As a sequence it gives a ``StoredFix`` per index
    (altitude, course and battery None, source ``""``: not read)."""

    __slots__ = ("_c",)

    def __init__(self, columns: days.Columns) -> None:
        self._c = columns

    def __len__(self) -> int:
        return self._c.n

    @overload
    def __getitem__(self, i: int) -> StoredFix: ...
    @overload
    def __getitem__(self, i: slice) -> FixColumns: ...
    def __getitem__(self, i: int | slice) -> StoredFix | FixColumns:
        c = self._c
        if isinstance(i, slice):
            return FixColumns(days.Columns._make(x[i] for x in c))
        return StoredFix(
            int(c.id[i]),
            int(c.t_ms[i]),
            float(c.lat[i]),
            float(c.lon[i]),
            _none(float(c.acc[i])),
            None,
            _none(float(c.speed[i])),
            None,
            None,
            "",
            bool(c.precise[i]),
        )

    def __iter__(self) -> Iterator[StoredFix]:
        for i in range(self._c.n):
            yield self[i]

    def all_precise(self) -> bool:
        return bool(self._c.precise.all())

    def points(self) -> PointArrays:
        c = self._c
        return PointArrays(c.t_ms / 1000, c.lat, c.lon, c.acc, c.speed)


async def day_fixes(
    s: AsyncSession, *, account_id: str, from_ms: int, to_ms: int
) -> Sequence[StoredFix]:
    """Good fixes of one person in [from_ms, to_ms), in time order, for the track and
    the timeline: on SQLite from the day store (``days``: each day's packed copy and
    what was stored since), elsewhere as :func:`fixes_between` reads them."""
    with gc_paused():
        cols = await days.read(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
    if cols is None:
        return await fixes_between(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
    return FixColumns(cols)


async def fixes_between(
    s: AsyncSession,
    *,
    account_id: str,
    from_ms: int,
    to_ms: int,
    after: tuple[int, int] | None = None,
    limit: int | None = None,
) -> Sequence[StoredFix]:
    """Good fixes of one person in [from_ms, to_ms), in time order; ``after`` is
    the (time, id) of the last fix of the previous page."""
    c = LocationFix.__table__.c
    q = (
        select(
            c.id,
            c.recorded_ms,
            c.lat,
            c.lon,
            c.accuracy_m,
            c.altitude_m,
            c.speed_mps,
            c.course_deg,
            c.battery,
            c.source,
            c.precise,
        )
        .where(
            c.account_id == account_id,
            c.recorded_ms >= from_ms,
            c.recorded_ms < to_ms,
            c.status == "ok",
        )
        .order_by(c.recorded_ms, c.id)
    )
    if after is not None:
        q = q.where(or_(c.recorded_ms > after[0], and_(c.recorded_ms == after[0], c.id > after[1])))
    if limit is not None:
        q = q.limit(limit)
    if s.get_bind().dialect.name == "sqlite":
        # a day at 1 Hz is 86,400 rows: on SQLite the driver's own fetch is
        # several times faster than building SQLAlchemy rows (bench_timeline --db)
        compiled = q.compile(dialect=s.get_bind().dialect)
        conn = await s.connection()
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        params = [compiled.params[k] for k in compiled.positiontup or ()]
        with gc_paused():
            async with driver.execute(str(compiled), params) as cur:
                rows = await cur.fetchall()
        return StoredFixes(rows)
    return StoredFixes((await s.execute(q)).all())


MAX_SPAN_MS = 7 * 86_400_000


def time_range(start: datetime | None, end: datetime | None) -> tuple[int, int]:
    """A read's time range in ms: the day before ``end`` (now) when not given,
    at most seven days, times with their zone."""
    for t in (start, end):
        if t is not None and t.tzinfo is None:
            raise Problem(422, "location.invalid_range", "Give times with their zone (ISO 8601).")
    end_ms = int((end or clock.utcnow()).timestamp() * 1000)
    start_ms = int(start.timestamp() * 1000) if start is not None else end_ms - 86_400_000
    if end_ms <= start_ms:
        raise Problem(422, "location.invalid_range", "`to` must be after `from`.")
    if end_ms - start_ms > MAX_SPAN_MS:
        raise Problem(
            422, "location.range_too_long", "Ask for at most 7 days at a time.", max_days=7
        )
    return start_ms, end_ms


def shown_fixes(
    rt: Runtime, fixes: Sequence[StoredFix], degraded: dict[str, str]
) -> tuple[Sequence[StoredFix], bool]:
    """Stored fixes as the caller may see them (see :func:`shown`); and whether
    all of them are precise."""
    if PRECISE not in degraded and (
        fixes.all_precise()
        if isinstance(fixes, StoredFixes | FixColumns)
        else all(f.precise for f in fixes)
    ):
        return fixes, True
    out = []
    for f in fixes:
        lat, lon, acc, precise = shown(rt, f.lat, f.lon, f.accuracy_m, f.precise, degraded)
        out.append(
            StoredFix(
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


def to_points(fixes: Sequence[StoredFix]) -> Sequence[Point]:
    """The fixes as the algorithms' points (a read's fixes as columns, at once)."""
    if isinstance(fixes, StoredFixes | FixColumns):
        return fixes.points()
    return [Point(f[1] / 1000, f[2], f[3], f[4], f[6]) for f in fixes]


# --- the family map --------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberPosition:
    account_id: str
    name: str | None
    role: str
    sharing: str  # live | history | off | paused
    last: LastLocation | None
    battery: int | None
    battery_at: datetime | None


async def family_map(s: AsyncSession, *, family_id: str, viewer_id: str) -> list[MemberPosition]:
    """Every member of the family, with their last position when they share it
    with the family now (the viewer always sees their own)."""
    await families.require_member(s, family_id, viewer_id)
    members = await families.members_of(s, family_id)
    now = clock.utcnow()
    ids = [acc.id for _, acc in members]
    lasts = await last_locations(s, ids)
    batteries: dict[str, tuple[int, datetime]] = {}
    q = select(Device.account_id, Device.battery, Device.battery_at).where(
        Device.account_id.in_(ids), Device.battery.is_not(None), Device.battery_at.is_not(None)
    )
    for acc_id, battery, at in (await s.execute(q)).all():
        if battery is None or at is None:
            continue
        if acc_id not in batteries or at > batteries[acc_id][1]:
            batteries[acc_id] = (battery, at)
    out = []
    for m, acc in members:
        sharing = "paused" if families.is_paused(m, now) else m.location
        visible = acc.id == viewer_id or families.allows(m, families.LIVE_LOCATION, now)
        last = lasts.get(acc.id) if visible else None
        batt = batteries.get(acc.id) if visible else None
        if last is not None and last.battery is not None:
            fix_at = datetime.fromtimestamp(last.recorded_ms / 1000, UTC)
            if batt is None or fix_at > batt[1]:
                batt = (last.battery, fix_at)
        out.append(
            MemberPosition(
                account_id=acc.id,
                name=acc.name,
                role=m.role,
                sharing=sharing,
                last=last,
                battery=batt[0] if batt else None,
                battery_at=batt[1] if batt else None,
            )
        )
    return out


@dataclass(frozen=True)
class Visible:
    """Someone the viewer may see on the live map, with what a tracking app shows."""

    account_id: str
    name: str | None
    last: Seen | None
    tid: str | None  # the two letters their own tracking app chose, if any


class Seen(NamedTuple):
    """A last location as the map shows it."""

    recorded_ms: int
    lat: float
    lon: float
    accuracy_m: float | None
    speed_mps: float | None
    battery: int | None
    precise: bool


def _first_tid(account_id: Any, outer: Any) -> Any:
    """The tracker id a person's first tracker with one chose, as a column of a
    query over ``outer`` (whose ``account_id`` column this is)."""
    return (
        select(Tracker.tid)
        .where(Tracker.account_id == account_id, Tracker.tid.is_not(None))
        .order_by(Tracker.created_at)
        .limit(1)
        .correlate(outer)
        .scalar_subquery()
    )


def _visible_statement() -> Statement:
    mine = select(FamilyMember.family_id).where(FamilyMember.account_id == bindparam("viewer"))
    tid = _first_tid(FamilyMember.account_id, FamilyMember)
    last = LastLocation
    return Statement(
        select(
            # what families.allows reads of a membership
            FamilyMember.account_id,
            FamilyMember.location,
            FamilyMember.health,
            FamilyMember.schedule,
            FamilyMember.paused_until,
            Account.name,
            *(getattr(last, f) for f in Seen._fields),
            tid.label("tid"),
        )
        .join(Account, Account.id == FamilyMember.account_id)
        .outerjoin(last, last.account_id == FamilyMember.account_id)
        .where(FamilyMember.family_id.in_(mine))
        .order_by(FamilyMember.joined_at, FamilyMember.account_id)
    )


_VISIBLE = _visible_statement()


def _own_statement() -> Statement:
    # what visible_positions shows of a viewer in no family yet
    tid = _first_tid(Account.id, Account)
    last = LastLocation
    return Statement(
        select(Account.name, *(getattr(last, f) for f in Seen._fields), tid.label("tid"))
        .outerjoin(last, last.account_id == Account.id)
        .where(Account.id == bindparam("viewer"))
    )


_OWN = _own_statement()


async def visible_positions(s: Conn, viewer_id: str) -> list[Visible]:
    """Who the viewer may see on the live map now, in one query: themself first,
    then everyone sharing a family with them whose choice there (live or history,
    not paused) shows them, each with their last location and tracker id."""
    rows = await _VISIBLE.rows(s, {"viewer": viewer_id})
    now = clock.utcnow()
    me: Visible | None = None
    out: dict[str, Visible] = {}
    for m in rows:
        last = Seen(*m[6:13]) if m.recorded_ms is not None else None
        seen = Visible(m.account_id, m.name, last, m.tid)
        if m.account_id == viewer_id:
            me = seen
        elif m.account_id not in out and families.allows(m, families.LIVE_LOCATION, now):
            out[m.account_id] = seen
    if me is None:  # in no family yet
        own = await _OWN.first(s, {"viewer": viewer_id})
        if own is None:
            me = Visible(viewer_id, None, None, None)
        else:
            seen_own = Seen(*own[1:8]) if own.recorded_ms is not None else None
            me = Visible(viewer_id, own.name, seen_own, own.tid)
    return [me, *out.values()]


# --- deletion (policy 5.2) ---------------------------------------------------------------------


async def _after_erasure(s: AsyncSession, e: ports.Erasure) -> None:
    """A chosen deletion of location leaves what is derived from the fixes true:
    the last location, if it went, becomes the newest fix that is left (the live
    map then shows that), and the days whose packed copies went (the triggers
    drop a day's copy with any of its fixes) are packed again later. In the
    deletion's transaction."""
    if e.scope != "chosen" or e.category not in ("location.precise", "location.approximate"):
        return
    if await s.get(LastLocation, e.account_id, populate_existing=True) is None:
        fix = LocationFix.__table__.c
        q = (
            select(*[fix[c] for c in _LAST_COLUMNS])
            .where(fix.account_id == e.account_id, fix.status == "ok", fix.lat.is_not(None))
            .order_by(fix.recorded_ms.desc(), fix.id.desc())
            .limit(1)
        )
        row = (await s.execute(q)).first()
        if row is not None:
            params = dict(zip(_LAST_COLUMNS, row, strict=True))
            params["account_id"] = e.account_id
            await _SET_LAST[dialect_of(s)].first(s, params)
    if e.since is not None and e.until is not None:
        first, last = int(e.since.timestamp() * 1000), int(e.until.timestamp() * 1000) - 1
        span = range(first // days.DAY_MS, last // days.DAY_MS + 1)
        if len(span) <= 366:
            days.note_written(s, e.account_id, [d * days.DAY_MS for d in span])


ports.register_erasure("after", _after_erasure)
