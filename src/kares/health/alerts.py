"""Health alerts: thresholds a family's guardians set for a dependant, and the
episodes that crossing them opens (docs/HEALTH.md, "Alerts").

A threshold (``health_alerts``, one per family, dependant and kind) is one of

* ``heart_rate_above`` {bpm, minutes}: every heart-rate sample above ``bpm`` for
  at least ``minutes`` (a silence of more than ``GAP_MS`` breaks the run);
* ``spo2_below`` {percent}: a SpO2 sample below ``percent``;
* ``no_steps_by`` {time, time_zone}: no steps in the local day before ``time``;
* ``fall``: a fall recorded;
* ``wrist_off`` {hours}: the watch off the wrist (wrist_off intervals, joined
  when they touch) for at least ``hours``.

Crossing one opens an *episode* (``health_alert_episodes``) and tells the
family's owner and guardians once, through ``notify.send`` in the same
transaction. An episode is keyed by (threshold, the moment its condition
began), which the samples decide, not the time of the evaluation: evaluating
the same samples again (a re-upload, a second process, a restart) finds the
same key and opens nothing. ``open_alert`` holds the threshold's id while the
episode is open (unique): one open episode per threshold. Samples at or before
the last episode's close are not looked at again, so a late or re-sent sample
never reopens what closed. The episode closes when the value returns (heart
rate not above, SpO2 not below, steps seen, heart rate seen after the watch
went back on); a fall's episode is closed as it opens.

Evaluation runs from the domain's ``ingest`` (after the samples are stored, in
its transaction) and from the recurring job ``health.alerts`` for the
clock-driven kinds (no steps by a time: nothing arrives to say so).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import (
    delete,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, jobs
from kares.db import insert_for, new_id
from kares.errors import Problem
from kares.families import service as families
from kares.families.models import FamilyMember
from kares.health import service as health
from kares.health.models import HealthAlert, HealthAlertEpisode
from kares.identity.models import Account
from kares.notify import service as notify

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger(__name__)

KINDS = ("heart_rate_above", "spo2_below", "no_steps_by", "fall", "wrist_off")
# the metrics whose new samples may open or close an episode of each kind
METRICS: dict[str, tuple[str, ...]] = {
    "heart_rate_above": ("heart_rate",),
    "spo2_below": ("spo2",),
    "no_steps_by": ("steps",),
    "fall": ("fall",),
    "wrist_off": ("wrist_off", "heart_rate"),
}
CLOCK_KINDS = ("no_steps_by", "wrist_off")
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# a run of heart-rate samples above the threshold breaks on a silence this long
GAP_MS = 15 * MINUTE_MS
# wrist_off intervals this close together are one stretch off the wrist
JOIN_MS = 5 * MINUTE_MS
# samples older than this are never evaluated (an import of last year's history
# tells nobody anything)
LOOKBACK_MS = 24 * HOUR_MS
JOB = "health.alert_check"
# how often a wrist_off threshold looks at the clock (no_steps_by: at its time)
WRIST_CHECK = timedelta(minutes=15)
HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


# --- thresholds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    kind: str
    level: float | None = None
    minutes: int | None = None
    local_time: str | None = None
    time_zone: str | None = None

    def same(self, row: HealthAlert) -> bool:
        return (self.level, self.minutes, self.local_time, self.time_zone) == (
            row.level,
            row.minutes,
            row.local_time,
            row.time_zone,
        )


def _check(t: Threshold) -> None:
    if t.kind not in KINDS:
        raise Problem(422, "health_alert.unknown_kind", f"Unknown alert {t.kind!r}.")
    if t.kind == "no_steps_by":
        if t.local_time is None or not HHMM.match(t.local_time):
            raise Problem(422, "health_alert.bad_time", "time is HH:MM, e.g. 12:00.")
        health.zone(t.time_zone or "UTC")


async def _require_guardian(
    s: AsyncSession, *, family_id: str, actor_id: str, account_id: str
) -> None:
    """The caller is the family's owner or a guardian and ``account_id`` is a
    dependant of it: 404 for a non-member (of either), 403 otherwise."""
    await families.require_member(s, family_id, actor_id)
    target = await families.member(s, family_id, account_id)
    if target is None:
        raise Problem(404, "family.member_not_found", "No such member in this family.")
    me = await families.member(s, family_id, actor_id)
    assert me is not None
    if me.role not in families.ADMINS or account_id == actor_id:
        raise Problem(
            403, "health_alert.forbidden", "Only the family's owner and guardians set alerts."
        )
    if target.role != "dependant":
        raise Problem(
            403,
            "health_alert.not_dependant",
            "Alerts are set for the family's dependants; this member is not one.",
        )


async def thresholds(
    s: AsyncSession, *, family_id: str, actor_id: str, account_id: str
) -> list[HealthAlert]:
    await _require_guardian(s, family_id=family_id, actor_id=actor_id, account_id=account_id)
    return await _rows(s, family_id, account_id)


async def _rows(s: AsyncSession, family_id: str, account_id: str) -> list[HealthAlert]:
    q = select(HealthAlert).where(
        HealthAlert.family_id == family_id, HealthAlert.account_id == account_id
    )
    return sorted((await s.execute(q)).scalars(), key=lambda r: KINDS.index(r.kind))


async def set_thresholds(
    s: AsyncSession,
    *,
    family_id: str,
    actor_id: str,
    account_id: str,
    wanted: Iterable[Threshold],
) -> list[HealthAlert]:
    """Replace the dependant's thresholds in this family by ``wanted``. A kind
    whose values did not change keeps its row (and its open episode); a changed
    one starts afresh from now."""
    await _require_guardian(s, family_id=family_id, actor_id=actor_id, account_id=account_id)
    want = {t.kind: t for t in wanted}
    for t in want.values():
        _check(t)
    now = clock.utcnow()
    for row in await _rows(s, family_id, account_id):
        keep = want.get(row.kind)
        if keep is not None and keep.same(row):
            del want[row.kind]
        else:
            await s.delete(row)
    await s.flush()
    for t in want.values():
        row = HealthAlert(
            id=new_id(),
            family_id=family_id,
            account_id=account_id,
            kind=t.kind,
            level=t.level,
            minutes=t.minutes,
            local_time=t.local_time,
            time_zone=t.time_zone,
            set_by=actor_id,
            created_at=now,
        )
        s.add(row)
        if t.kind in CLOCK_KINDS:
            _schedule(s, row, now)
    await s.commit()
    return await _rows(s, family_id, account_id)


async def clear(s: AsyncSession, *, family_id: str, actor_id: str, account_id: str) -> None:
    await _require_guardian(s, family_id=family_id, actor_id=actor_id, account_id=account_id)
    await s.execute(
        delete(HealthAlert).where(
            HealthAlert.family_id == family_id, HealthAlert.account_id == account_id
        )
    )
    await s.commit()


# --- finding episodes in samples (pure) ------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """What the samples say: close the open episode at ``close_open``; open these
    (opened_ms, closed_ms or None) episodes."""

    close_open: int | None
    new: list[tuple[int, int | None]]


def runs(
    t: Any, bad: Any, *, hold_ms: int, gap_ms: int, open_since: int | None, after: int
) -> Found:
    """Episodes of an instant metric: ``bad`` for at least ``hold_ms`` (samples no
    further apart than ``gap_ms``) opens one at the first bad sample of the run;
    the first sample not bad closes it. Only samples after ``after`` count (the
    open episode's start or the last close)."""
    close_open: int | None = None
    new: list[tuple[int, int | None]] = []
    is_open = open_since is not None
    run_start = last = -1
    for ti, b in zip(t.tolist(), bad.tolist(), strict=True):
        if ti <= after:
            continue
        if is_open:
            if not b:
                if new:
                    new[-1] = (new[-1][0], ti)
                else:
                    close_open = ti
                is_open = False
                run_start = -1
            continue
        if not b:
            run_start = -1
            continue
        if run_start < 0 or ti - last > gap_ms:
            run_start = ti
        last = ti
        if ti - run_start >= hold_ms:
            new.append((run_start, None))
            is_open = True
    return Found(close_open, new)


def stretches(t0: Any, t1: Any) -> list[tuple[int, int]]:
    """wrist_off intervals joined where they touch (within ``JOIN_MS``)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(zip(t0.tolist(), t1.tolist(), strict=True)):
        if out and a <= out[-1][1] + JOIN_MS:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def off_wrist(
    spans: list[tuple[int, int]],
    worn: Any,
    *,
    hold_ms: int,
    open_since: int | None,
    after: int,
    now_ms: int,
) -> Found:
    """Episodes of the watch off the wrist: a stretch of wrist_off intervals says
    the watch came off at its start; it is back on at the first heart rate
    measured from the stretch's end (a watch measures only when worn), and until
    one arrives it is still off now. Off for ``hold_ms`` opens an episode at the
    stretch's start; back on closes it."""
    worn = np.sort(worn)

    def back_on(end: int) -> int | None:
        i = int(np.searchsorted(worn, end, side="left"))
        return int(worn[i]) if i < len(worn) else None

    if open_since is not None:
        mine = [sp for sp in spans if sp[0] <= open_since <= sp[1]]
        end = max((sp[1] for sp in mine), default=open_since)
        return Found(back_on(end), [])
    new: list[tuple[int, int | None]] = []
    for a0, a1 in spans:
        if a0 <= after:
            continue
        back = back_on(a1)
        if (back if back is not None else now_ms) - a0 >= hold_ms:
            new.append((a0, back))
    return Found(None, new)


# --- evaluating --------------------------------------------------------------------------------


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


async def _last_closed(s: AsyncSession, alert_id: str) -> int | None:
    q = select(HealthAlertEpisode.closed_ms).where(
        HealthAlertEpisode.alert_id == alert_id, HealthAlertEpisode.closed_ms.is_not(None)
    )
    got = [c for c in (await s.execute(q)).scalars() if c is not None]
    return max(got) if got else None


async def _find(
    s: AsyncSession, a: HealthAlert, open_ep: HealthAlertEpisode | None, now_ms: int
) -> Found:
    last = await _last_closed(s, a.id)
    created = _ms(a.created_at)
    floor = max(created, now_ms - LOOKBACK_MS)
    after = open_ep.opened_ms if open_ep is not None else max(floor - 1, last if last else -1)
    open_since = open_ep.opened_ms if open_ep is not None else None
    lo = min(after + 1, floor)

    async def read(metric: str, lo_ms: int) -> health.Samples:
        return await health.read(
            s, account_id=a.account_id, metric=metric, lo_ms=lo_ms, hi_ms=now_ms + 1
        )

    if a.kind in ("heart_rate_above", "spo2_below"):
        assert a.level is not None
        x = await read(METRICS[a.kind][0], lo)
        if a.kind == "heart_rate_above":
            bad = x.v > a.level
            hold = (a.minutes or 0) * MINUTE_MS
        else:
            bad = x.v < a.level
            hold = 0
        return runs(x.t0, bad, hold_ms=hold, gap_ms=GAP_MS, open_since=open_since, after=after)
    if a.kind == "fall":
        x = await read("fall", lo)
        return Found(None, [(t, t) for t in x.t0.tolist() if t > after])
    if a.kind == "wrist_off":
        assert a.level is not None
        hold = int(a.level * HOUR_MS)
        x = await read("wrist_off", lo - 3 * LOOKBACK_MS)
        worn = (await read("heart_rate", lo - 3 * LOOKBACK_MS)).t0
        return off_wrist(
            stretches(x.t0, x.t1),
            worn,
            hold_ms=hold,
            open_since=open_since,
            after=after,
            now_ms=now_ms,
        )
    if a.kind == "no_steps_by":
        return await _no_steps(s, a, open_ep, now_ms, last)
    return Found(None, [])


async def _no_steps(
    s: AsyncSession,
    a: HealthAlert,
    open_ep: HealthAlertEpisode | None,
    now_ms: int,
    last: int | None,
) -> Found:
    tz = health.zone(a.time_zone or "UTC")
    assert a.local_time is not None
    hh, mm = (int(p) for p in a.local_time.split(":"))

    def day_bounds(deadline_ms: int) -> tuple[int, int]:
        local = datetime.fromtimestamp(deadline_ms / 1000, UTC).astimezone(tz).date()
        midnight = health.local_midnight(local, tz)
        return _ms(midnight), _ms(health.local_midnight(local + timedelta(days=1), tz))

    async def first_steps(lo: int, hi: int) -> int | None:
        x = await health.read(s, account_id=a.account_id, metric="steps", lo_ms=lo, hi_ms=hi)
        moved = x.t0[x.v > 0]
        return int(np.min(moved)) if len(moved) else None

    if open_ep is not None:
        start, end = day_bounds(open_ep.opened_ms)
        seen = await first_steps(start, min(end, now_ms + 1))
        if seen is not None:
            return Found(max(seen, open_ep.opened_ms), [])
        return Found(end if now_ms >= end else None, [])
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz).date()
    deadline = datetime.combine(today, time(hh, mm), tzinfo=tz)
    d_ms = _ms(deadline)
    if d_ms > now_ms or d_ms < _ms(a.created_at) or (last is not None and d_ms <= last):
        return Found(None, [])
    start, end = day_bounds(d_ms)
    if await first_steps(start, now_ms + 1) is not None:
        return Found(None, [])
    return Found(None, [(d_ms, None)])


async def evaluate(
    s: AsyncSession,
    *,
    account_id: str,
    metrics: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
    now: datetime | None = None,
) -> list[HealthAlertEpisode]:
    """Open and close the episodes the person's stored samples call for, in the
    caller's transaction; tell the guardians of each episode opened. Returns the
    episodes opened."""
    now_ms = _ms(now or clock.utcnow())
    wanted = set(kinds or KINDS)
    if metrics is not None:
        ms = set(metrics)
        wanted = {k for k in wanted if ms & set(METRICS[k])}
    if not wanted:
        return []
    q = (
        select(HealthAlert)
        .where(HealthAlert.account_id == account_id, HealthAlert.kind.in_(sorted(wanted)))
        .order_by(HealthAlert.id)
        .with_for_update()
    )
    alerts = list((await s.execute(q)).scalars())
    opened: list[HealthAlertEpisode] = []
    for a in alerts:
        m = await families.member(s, a.family_id, account_id)
        if m is None or m.role != "dependant":
            continue  # no longer this family's dependant: the threshold sleeps
        open_ep = (
            await s.execute(select(HealthAlertEpisode).where(HealthAlertEpisode.open_alert == a.id))
        ).scalar_one_or_none()
        found = await _find(s, a, open_ep, now_ms)
        if open_ep is not None and found.close_open is not None:
            open_ep.closed_ms = found.close_open
            open_ep.open_alert = None
            await s.flush()
        for opened_ms, closed_ms in found.new:
            ep = await _open(s, a, opened_ms, closed_ms)
            if ep is not None:
                opened.append(ep)
                await _tell(s, a, ep)
    return opened


async def _open(
    s: AsyncSession, a: HealthAlert, opened_ms: int, closed_ms: int | None
) -> HealthAlertEpisode | None:
    """The episode (threshold, opened_ms), or None when it exists already."""
    ep_id = new_id()
    ins = (
        insert_for(s)(HealthAlertEpisode)
        .values(
            id=ep_id,
            alert_id=a.id,
            account_id=a.account_id,
            opened_ms=opened_ms,
            closed_ms=closed_ms,
            open_alert=a.id if closed_ms is None else None,
        )
        .on_conflict_do_nothing()
    )
    made = (await s.execute(ins)).rowcount  # type: ignore[attr-defined]
    if not made:
        return None
    return await s.get(HealthAlertEpisode, ep_id)


def describe(a: HealthAlert) -> str:
    if a.kind == "heart_rate_above":
        return f"heart rate above {a.level:g}/min for {a.minutes} minutes"
    if a.kind == "spo2_below":
        return f"blood oxygen below {a.level:g}%"
    if a.kind == "no_steps_by":
        return f"no steps by {a.local_time}"
    if a.kind == "fall":
        return "a fall was recorded"
    return f"watch off the wrist for {a.level:g} hours"


async def _tell(s: AsyncSession, a: HealthAlert, ep: HealthAlertEpisode) -> None:
    q = select(FamilyMember.account_id).where(
        FamilyMember.family_id == a.family_id,
        FamilyMember.role.in_(families.ADMINS),
        FamilyMember.account_id != a.account_id,
    )
    to = sorted((await s.execute(q)).scalars())
    if not to:
        return
    person = await s.get(Account, a.account_id)
    who = (person.name if person is not None else None) or "A family member"
    what = describe(a)
    await notify.send(
        s,
        account_ids=to,
        category="health",
        title=f"Health alert: {who}"[:120],
        body=f"{who}: {what}.",
        data={
            "family_id": a.family_id,
            "account_id": a.account_id,
            "alert": a.kind,
            "episode_id": ep.id,
            "at_ms": ep.opened_ms,
        },
    )


async def episodes(s: AsyncSession, *, alert_ids: Iterable[str]) -> list[HealthAlertEpisode]:
    q = (
        select(HealthAlertEpisode)
        .where(HealthAlertEpisode.alert_id.in_(list(alert_ids)))
        .order_by(HealthAlertEpisode.opened_ms)
    )
    return list((await s.execute(q)).scalars())


# --- hooks: ingest, and the clock ---------------------------------------------------------


async def after_ingest(
    s: AsyncSession, *, account_id: str, metrics: set[str], now: datetime
) -> None:
    await evaluate(s, account_id=account_id, metrics=metrics, now=now)


health.after_ingest.append(after_ingest)


def next_check(a: HealthAlert, *, is_open: bool, now: datetime) -> datetime:
    """When a clock-driven threshold looks again: a wrist_off one every
    ``WRIST_CHECK``; a no_steps_by one at its next time of day, or while its
    episode is open at the next local midnight (the day it was about is over)."""
    if a.kind != "no_steps_by":
        return now + WRIST_CHECK
    tz = health.zone(a.time_zone or "UTC")
    assert a.local_time is not None
    hh, mm = (int(p) for p in a.local_time.split(":"))
    local = now.astimezone(tz)
    if is_open:
        return health.local_midnight(local.date() + timedelta(days=1), tz)
    at = datetime.combine(local.date(), time(hh, mm), tzinfo=tz)
    if at <= now:
        at = datetime.combine(local.date() + timedelta(days=1), time(hh, mm), tzinfo=tz)
    return at.astimezone(UTC)


def _schedule(s: AsyncSession, a: HealthAlert, now: datetime) -> None:
    """The threshold's own check job: one row per clock-driven threshold, which
    each run puts back for its next time (``jobs.Again``), so a restart neither
    loses nor doubles it; it ends when the threshold is gone."""
    jobs.enqueue(
        s,
        JOB,
        {"alert_id": a.id},
        account_id=a.account_id,
        run_at=next_check(a, is_open=False, now=now),
    )


async def check_clock(rt: Runtime, *, now: datetime | None = None) -> int:
    """Every clock-driven threshold evaluated now, a transaction per person (what
    the check jobs do one threshold at a time). Returns the episodes opened."""
    async with rt.db.sessions() as s:
        q = select(HealthAlert.account_id).where(HealthAlert.kind.in_(CLOCK_KINDS)).distinct()
        people = sorted((await s.execute(q)).scalars())
    n = 0
    for account_id in people:
        async with rt.db.sessions() as s:
            n += len(await evaluate(s, account_id=account_id, kinds=CLOCK_KINDS, now=now))
            await s.commit()
    return n


@jobs.handler(JOB)
async def check_job(rt: Runtime, job: jobs.JobContext) -> None:
    """One clock-driven threshold's check (payload: alert_id)."""
    now = clock.utcnow()
    async with rt.db.sessions() as s:
        a = await s.get(HealthAlert, str(job.payload.get("alert_id")))
        if a is None:
            return  # the threshold was changed or removed: its check ends
        await evaluate(s, account_id=a.account_id, kinds=(a.kind,), now=now)
        is_open = (
            await s.execute(
                select(HealthAlertEpisode.id).where(HealthAlertEpisode.open_alert == a.id)
            )
        ).first() is not None
        at = next_check(a, is_open=is_open, now=now)
        await s.commit()
    raise jobs.Again(at)
