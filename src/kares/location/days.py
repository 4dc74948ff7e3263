"""The day store: each person's good fixes of one UTC day, packed as columns.

A track or a timeline of a day needs the day's 86,400 fixes (1 Hz) at once. Read
as rows, SQLite alone takes 30-40 ms to step through them and Python several
times that to turn them into objects; read as one row of packed columns
(``location_days``: little-endian arrays of ids, times, coordinates, accuracy,
speed and the precise flag) it is a few milliseconds, and the arrays are the
algorithms' input as they are (``np.frombuffer``, no copy).

* **Exact, never stale.** A day's copy holds its ``ok`` fixes with ids up to
  ``through_id``; a read takes the copy and the day's fixes stored after it (ids
  above ``through_id``) from ``location_fixes``. SQLite admits one writer at a
  time, so a fix committed after the copy was made always has a higher id.
  Deleting or changing any fix deletes its day's copy (triggers, migration 0009),
  so the copy never holds a fix the table no longer has; the account's deletion
  takes it with its foreign key.
* **Packed after writes.** :func:`note_written` (called by ``ingest``) plans a
  pack of each day a batch wrote to, ``PACK_DELAY_S`` later (a job), at most one
  pending per person and day in a process: a phone posting every second gets its
  day packed every ten minutes, not every second, and what came since is read
  from the table (ten minutes at 1 Hz is 600 rows).
* **After retention.** When the retention job deletes fixes, the triggers drop
  their days' copies in the same statement; :func:`after_retention` (registered
  with ``kares.fields.expiry_hook``) packs again the one day that keeps fixes (the
  day the limit falls in) and removes the last location of a person whose every
  fix went, in the same transaction.
* **SQLite only.** On PostgreSQL ids come from a sequence and commit out of
  order, so "every fix after the copy has a higher id" does not hold; the day is
  read from ``location_fixes`` there (and the triggers still stand guard).

No commit happens here except in :func:`pack_day`, the pack job's one action.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, jobs
from kares.db import sqlite_driver
from kares.fields import Expired, expiry_hook
from kares.location.models import LastLocation

log = logging.getLogger("kares.location.days")

DAY_MS = 86_400_000
PACK_JOB = "location.pack_day"
PACK_DELAY_S = 600.0
"""A day is packed this long after a write to it (later writes wait for that pack)."""
_PLANNED_MAX = 10_000

_LE_I8, _LE_F8, _U1 = np.dtype("<i8"), np.dtype("<f8"), np.dtype("u1")

_SELECT = (
    "SELECT id, recorded_ms, lat, lon, accuracy_m, speed_mps, precise FROM location_fixes "
    "WHERE account_id = ? AND recorded_ms >= ? AND recorded_ms < ? AND status = 'ok'"
)
_AFTER = _SELECT + " AND id > ? ORDER BY recorded_ms, id"
# the same, walking the ids after the copy's instead of the person's day in the index:
# cheaper while few fixes (of anyone) came since
_AFTER_BY_ID = (
    "SELECT id, recorded_ms, lat, lon, accuracy_m, speed_mps, precise FROM location_fixes "
    "WHERE id > ? AND +account_id = ? AND +recorded_ms >= ? AND +recorded_ms < ? "
    "AND status = 'ok' ORDER BY recorded_ms, id"
)
_BY_ID_MAX = 20_000
_MAX_ID = "SELECT max(id) FROM location_fixes"
_ALL = _SELECT + " ORDER BY recorded_ms, id"
_PACKS = (
    "SELECT day, through_id, count, ids, t_ms, lat, lon, accuracy_m, speed_mps, precise "
    "FROM location_days WHERE account_id = ? AND day >= ? AND day <= ? ORDER BY day"
)
_INSERT = (
    "INSERT INTO location_days (account_id, day, through_id, count, ids, t_ms, lat, lon, "
    "accuracy_m, speed_mps, precise) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DROP = "DELETE FROM location_days WHERE account_id = ? AND day = ?"


class Columns(NamedTuple):
    """Good fixes as columns, in (time, id) order; NaN where accuracy or speed is
    unknown."""

    id: npt.NDArray[np.int64]
    t_ms: npt.NDArray[np.int64]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    acc: npt.NDArray[np.float64]
    speed: npt.NDArray[np.float64]
    precise: npt.NDArray[np.bool_]

    @property
    def n(self) -> int:
        """How many fixes (``len`` is the number of columns: this is a tuple)."""
        return int(self.t_ms.size)

    def cut(self, lo: int, hi: int) -> Columns:
        """The fixes with ``lo <= t_ms < hi``."""
        a, b = np.searchsorted(self.t_ms, (lo, hi), side="left").tolist()
        if a == 0 and b == self.t_ms.size:
            return self
        return Columns._make(c[a:b] for c in self)


def empty() -> Columns:
    return from_rows([])


def from_rows(rows: Sequence[Sequence[Any]]) -> Columns:
    """Columns of rows (id, recorded_ms, lat, lon, accuracy_m, speed_mps, precise)."""
    if not rows:
        z = np.zeros(0)
        return Columns(z.astype(np.int64), z.astype(np.int64), z, z, z, z, z.astype(np.bool_))
    ids, t, lat, lon, acc, speed, precise = zip(*rows, strict=True)
    return Columns(
        np.array(ids, dtype=np.int64),
        np.array(t, dtype=np.int64),
        np.array(lat, dtype=np.float64),
        np.array(lon, dtype=np.float64),
        np.array(acc, dtype=np.float64),  # None -> NaN
        np.array(speed, dtype=np.float64),
        np.array(precise, dtype=np.bool_),
    )


def concat(parts: Sequence[Columns]) -> Columns:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return empty()
    return Columns._make(np.concatenate(cs) for cs in zip(*parts, strict=True))


def merge(packed: Columns, later: Columns) -> Columns:
    """The fixes of both (disjoint ids), in (time, id) order."""
    if not later.n:
        return packed
    if not packed.n:
        return later
    if (int(later.t_ms[0]), int(later.id[0])) > (int(packed.t_ms[-1]), int(packed.id[-1])):
        return concat([packed, later])  # the usual case: what came since is newer
    both = concat([packed, later])
    order = np.lexsort((both.id, both.t_ms))
    return Columns._make(c[order] for c in both)


def _unpack(row: Sequence[Any]) -> tuple[int, int, Columns]:
    day, through, count = int(row[0]), int(row[1]), int(row[2])
    b = row[3:]
    cols = Columns(
        np.frombuffer(b[0], dtype=_LE_I8, count=count).astype(np.int64, copy=False),
        np.frombuffer(b[1], dtype=_LE_I8, count=count).astype(np.int64, copy=False),
        np.frombuffer(b[2], dtype=_LE_F8, count=count).astype(np.float64, copy=False),
        np.frombuffer(b[3], dtype=_LE_F8, count=count).astype(np.float64, copy=False),
        np.frombuffer(b[4], dtype=_LE_F8, count=count).astype(np.float64, copy=False),
        np.frombuffer(b[5], dtype=_LE_F8, count=count).astype(np.float64, copy=False),
        np.frombuffer(b[6], dtype=_U1, count=count).astype(np.bool_),
    )
    return day, through, cols


async def _rows(driver: Any, sql: str, params: Sequence[Any]) -> list[Any]:
    async with driver.execute(sql, params) as cur:
        rows: list[Any] = await cur.fetchall()
    return rows


async def read(s: AsyncSession, *, account_id: str, from_ms: int, to_ms: int) -> Columns | None:
    """The good fixes of one person in [from_ms, to_ms), in (time, id) order: each
    day's packed copy and what was stored after it; None where there is no day store
    (PostgreSQL: read ``location_fixes``)."""
    driver = await sqlite_driver(s)
    if driver is None:
        return None
    if to_ms <= from_ms:
        return empty()
    first, last = from_ms // DAY_MS, (to_ms - 1) // DAY_MS
    packs = {
        day: (through, cols)
        for day, through, cols in map(
            _unpack, await _rows(driver, _PACKS, (account_id, first, last))
        )
    }
    parts: list[Columns] = []
    newest: int | None = None
    for day in range(first, last + 1):
        lo, hi = max(from_ms, day * DAY_MS), min(to_ms, (day + 1) * DAY_MS)
        pack = packs.get(day)
        if pack is None:
            parts.append(from_rows(await _rows(driver, _ALL, (account_id, lo, hi))))
            continue
        through, cols = pack
        if newest is None:
            newest = (await _rows(driver, _MAX_ID, ()))[0][0] or 0
        if newest - through <= _BY_ID_MAX:
            later = from_rows(await _rows(driver, _AFTER_BY_ID, (through, account_id, lo, hi)))
        else:
            later = from_rows(await _rows(driver, _AFTER, (account_id, lo, hi, through)))
        parts.append(merge(cols.cut(lo, hi), later))
    return concat(parts)


async def pack_day(s: AsyncSession, *, account_id: str, day: int) -> int:
    """Pack one person's good fixes of one UTC day (again), and commit; the number
    of fixes packed. The copy is dropped first, in the same write transaction as the
    read of the fixes, so no deletion can come between them."""
    driver = await sqlite_driver(s)
    if driver is None:
        return 0
    await driver.execute(_DROP, (account_id, day))  # takes the write lock: BEGIN IMMEDIATE
    rows = await _rows(driver, _ALL, (account_id, day * DAY_MS, (day + 1) * DAY_MS))
    if rows:
        c = from_rows(rows)
        await driver.execute(
            _INSERT,
            (
                account_id,
                day,
                int(c.id.max()),
                c.n,
                c.id.astype(_LE_I8).tobytes(),
                c.t_ms.astype(_LE_I8).tobytes(),
                c.lat.astype(_LE_F8).tobytes(),
                c.lon.astype(_LE_F8).tobytes(),
                c.acc.astype(_LE_F8).tobytes(),
                c.speed.astype(_LE_F8).tobytes(),
                c.precise.astype(_U1).tobytes(),
            ),
        )
    await s.commit()
    return len(rows)


# (account, day) -> when the pack planned for it runs (service clock, seconds)
_planned: dict[tuple[str, int], float] = {}


def planned(account_id: str, times_ms: Iterable[int]) -> bool:
    """Whether a pack is already planned after now for every day of these times,
    so that :func:`note_written` would plan nothing."""
    now_s = clock.utcnow().timestamp()
    return all(_planned.get((account_id, t // DAY_MS), 0.0) > now_s for t in times_ms)


def note_written(s: AsyncSession, account_id: str, times_ms: Iterable[int]) -> None:
    """Plan a pack of each day of these newly stored good fixes, ``PACK_DELAY_S`` from
    now, unless one is already planned after now (it will include them). In the
    caller's transaction: the job exists once it commits."""
    if s.get_bind().dialect.name != "sqlite":
        return
    now = clock.utcnow()
    now_s = now.timestamp()
    for day in {t // DAY_MS for t in times_ms}:
        key = (account_id, day)
        if _planned.get(key, 0.0) > now_s:
            continue
        if len(_planned) >= _PLANNED_MAX:
            for k in [k for k, at in _planned.items() if at <= now_s]:
                del _planned[k]
        _planned[key] = now_s + PACK_DELAY_S
        jobs.enqueue(
            s,
            PACK_JOB,
            {"day": day},
            account_id=account_id,
            run_at=now + timedelta(seconds=PACK_DELAY_S),
        )


@expiry_hook("location_fixes")
async def after_retention(s: AsyncSession, expired: Expired) -> None:
    """Fixes older than ``expired.cutoff_ms`` were deleted (their days' copies went
    with them, by trigger): plan a pack of the day the limit falls in for each person
    who lost fixes of it (the rest of that day stays), and remove the last location
    of those whose newest fix is older than the limit (then every fix of theirs went)."""
    cut_day = expired.cutoff_ms // DAY_MS
    people = {str(r["subject"]) for r in expired.rows}
    if s.get_bind().dialect.name == "sqlite":
        for account_id in sorted(
            {str(r["subject"]) for r in expired.rows if int(r["collected"]) // DAY_MS == cut_day}
        ):
            jobs.enqueue(s, PACK_JOB, {"day": cut_day}, account_id=account_id)
    last = LastLocation.__table__.c
    await s.execute(
        delete(LastLocation)
        .where(last.account_id.in_(sorted(people)), last.recorded_ms < expired.cutoff_ms)
        .execution_options(synchronize_session=False)
    )
