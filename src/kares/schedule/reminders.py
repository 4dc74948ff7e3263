"""Reminders and to-do confirmations of calendar objects (docs/SCHEDULE_REMINDERS.md).

What is due, and when, is read from the iCalendar object itself: every VALARM
of every occurrence (``recurring_ical_events`` in its VALARM mode: recurrence,
overridden occurrences, alarms relative to the start or the end or at a time,
REPEAT, time zones and DST), and every occurrence of a component that asks its
assignee to confirm it (``X-KARES-CONFIRM:<duration>``, the grace after the
occurrence's time; ``PT30M`` by default).

Durable in four tables:

* ``schedule_reminder_sources``: the objects that have something to remind
  (one row each) and how far ahead their fires are materialised (``until``).
* ``schedule_reminder_fires``: the fire times of the next ``HORIZON``, one row
  per (object, occurrence, alarm), each with its job (``schedule.reminder``,
  run at the fire time). Recomputed when the schedule domain writes or deletes
  the object (its hook), extended by the recurring job ``schedule.reminders``.
* ``schedule_reminder_deliveries``: what was delivered (or told, or recorded as
  stale), UNIQUE (object, occurrence, alarm): the one row whose insert wins
  decides that the reminder goes out; a second worker, a retried job or a
  restarted one finds it there and sends nothing.
* ``schedule_reminder_recipients``: who was told (their inbox entry), and
  whether their paired watch still owes the reminder (sent down as a
  ``MESSAGE`` text by the watch listener).

``schedule_confirmations`` holds the "done" of one occurrence (one row per
occurrence, whoever confirmed it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    delete,
    false,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from kares import clock, jobs
from kares.db import Base, UTCDateTime, insert_for, new_id
from kares.errors import Problem
from kares.families import service as families
from kares.families.models import FamilyMember
from kares.fields import personal, table_info
from kares.identity.models import Account
from kares.notify import service as notify
from kares.schedule import ical
from kares.schedule import service as schedule
from kares.schedule.models import Calendar, CalendarObject
from kares.watches.models import Watch

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger(__name__)

CATEGORY = "calendar.events"
# fires are materialised this far ahead; the recurring job extends them
HORIZON = timedelta(days=2)
# ... by each object's refill job, which runs when a day of fires is left
REFILL_AHEAD = timedelta(days=1)
# an edit recomputes the fires from a moment ago (a fire due this instant stays)
GRACE = timedelta(minutes=1)
# a reminder delivered after its due minute is late; it is still delivered until
# its occurrence is over, and at least STALE_ALARM after its time; past that it
# is recorded as stale and nobody is told
STALE_ALARM = timedelta(hours=1)
# a missed confirmation is told late for up to a day after its check
STALE_CONFIRM = timedelta(days=1)
CONFIRM_PROP = ical.CONFIRM_PROP
CONFIRM_DEFAULT = timedelta(minutes=30)
CONFIRM_MAX = timedelta(days=1)
CONFIRM_KEY = "confirm"
# a reminder the watch has not taken this long after its delivery is not sent
# down any more (its inbox entry stays)
WATCH_MAX_AGE = timedelta(hours=2)
# fires made for one object at a time (each has a job)
MAX_FIRES = 500
JOB = "schedule.reminder"
REFILL_JOB = "schedule.reminder_refill"
TITLE_MAX = 200

ON_TIME, LATE, STALE, TOLD = "on_time", "late", "stale", "told"


# --- tables ----------------------------------------------------------------------------------


class ReminderSource(Base):
    """An object with something to remind: its fires exist up to ``until``."""

    __tablename__ = "schedule_reminder_sources"
    __table_args__ = (
        table_info(
            subject=None,
            why="reached through object_id: the calendar object's calendar names its person",
            not_personal=("object_id", "until", "job_id"),
        ),
    )

    object_id: Mapped[str] = mapped_column(
        ForeignKey("calendar_objects.id", ondelete="CASCADE"), primary_key=True
    )
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    # the refill job that extends them (a job finding another id here ends)
    job_id: Mapped[str] = mapped_column(String(32))


class ReminderFire(Base):
    """One fire time to come: a VALARM of one occurrence (``alarm_key``
    ``a<seconds from the occurrence's start>``) or the confirmation check of one
    occurrence (``confirm``). ``occurrence_ms`` is the occurrence's RECURRENCE-ID
    (its start as the rule gives it) in UTC milliseconds."""

    __tablename__ = "schedule_reminder_fires"
    __table_args__ = (
        UniqueConstraint("object_id", "occurrence_ms", "alarm_key"),
        table_info(
            subject=None,
            why="reached through object_id: the calendar object's calendar names its person",
            not_personal=("id", "object_id", "alarm_key", "kind"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    object_id: Mapped[str] = mapped_column(
        ForeignKey("calendar_objects.id", ondelete="CASCADE"), index=True
    )
    occurrence_ms: Mapped[int] = mapped_column(BigInteger, info=personal(CATEGORY))
    alarm_key: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))  # alarm | confirm
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True, info=personal(CATEGORY))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
    stale_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
    title: Mapped[str] = mapped_column(String(TITLE_MAX), info=personal(CATEGORY))
    # the members it is for, by account id (empty: everyone the calendar is for)
    assignees: Mapped[list[str]] = mapped_column(JSON, info=personal(CATEGORY))


class ReminderDelivery(Base):
    """A reminder delivered (``on_time``, ``late``), a missed confirmation told
    (``told``), or either recorded ``stale`` (due too long ago: nobody told).
    Unique per (object, occurrence, alarm): never twice."""

    __tablename__ = "schedule_reminder_deliveries"
    __table_args__ = (
        UniqueConstraint("object_id", "occurrence_ms", "alarm_key"),
        table_info(
            subject=None,
            why="reached through object_id: the calendar object's calendar names its person",
            also_about=("unconfirmed_by",),
            not_personal=("id", "object_id", "alarm_key", "kind", "status"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    object_id: Mapped[str] = mapped_column(
        ForeignKey("calendar_objects.id", ondelete="CASCADE"), index=True
    )
    occurrence_ms: Mapped[int] = mapped_column(BigInteger, info=personal(CATEGORY))
    alarm_key: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
    late_seconds: Mapped[int] = mapped_column(Integer, info=personal(CATEGORY))
    title: Mapped[str] = mapped_column(String(TITLE_MAX), info=personal(CATEGORY))
    # a missed confirmation: whose it was (named so that the object's key, not
    # this one, is the foreign key the privacy core follows to the row's person)
    unconfirmed_by: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, info=personal(CATEGORY)
    )


class ReminderRecipient(Base):
    """One person told of a delivery, and whether their watch still owes it."""

    __tablename__ = "schedule_reminder_recipients"
    __table_args__ = (
        UniqueConstraint("delivery_id", "account_id"),
        Index("ix_schedule_reminder_recipients_watch", "account_id", "watch_owed"),
        table_info(
            subject="account_id",
            not_personal=("id", "delivery_id", "notification_id"),
            collected="created_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("schedule_reminder_deliveries.id", ondelete="CASCADE")
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    notification_id: Mapped[str | None] = mapped_column(String(32))
    watch_owed: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), info=personal(CATEGORY)
    )
    watch_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))


class Confirmation(Base):
    """ "Done" for one occurrence (whoever of the item's people said so)."""

    __tablename__ = "schedule_confirmations"
    __table_args__ = (
        UniqueConstraint("object_id", "occurrence_ms"),
        table_info(
            subject="account_id",
            not_personal=("id", "object_id", "via"),
            collected="confirmed_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    object_id: Mapped[str] = mapped_column(
        ForeignKey("calendar_objects.id", ondelete="CASCADE"), index=True
    )
    occurrence_ms: Mapped[int] = mapped_column(BigInteger, info=personal(CATEGORY))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
    via: Mapped[str] = mapped_column(String(8))  # api


# --- what an object has to remind (pure) -------------------------------------------------------


@dataclass(frozen=True)
class Fire:
    occurrence_ms: int
    alarm_key: str
    kind: str
    fire_at: datetime
    starts_at: datetime
    stale_at: datetime
    title: str

    @property
    def key(self) -> tuple[int, str]:
        return self.occurrence_ms, self.alarm_key


def _utc(v: date | datetime, tz: ZoneInfo) -> datetime:
    """A DATE, a floating DATE-TIME (in the calendar's zone) or a zoned one, in UTC."""
    if not isinstance(v, datetime):
        v = datetime.combine(v, time(0, 0))
    if v.tzinfo is None:
        v = v.replace(tzinfo=tz)
    return v.astimezone(UTC)


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def from_ms(v: int) -> datetime:
    return datetime.fromtimestamp(v / 1000, UTC)


def _decoded(c: Any, name: str) -> Any:
    try:
        return c.decoded(name) if name in c else None
    except Exception:
        return None


def _span(c: Any, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """The occurrence's start and end in UTC (a to-do: DTSTART, else DUE)."""
    start = _decoded(c, "DTSTART")
    due = _decoded(c, "DUE")
    end = _decoded(c, "DTEND") or due
    s = _utc(start, tz) if start is not None else (_utc(due, tz) if due is not None else None)
    e = _utc(end, tz) if end is not None else None
    dur = _decoded(c, "DURATION")
    if e is None and s is not None and isinstance(dur, timedelta):
        e = s + dur
    if e is None and s is not None and start is not None and not isinstance(start, datetime):
        e = s + timedelta(days=1)  # an all-day item lasts its day
    return s, e


def _occurrence(c: Any, tz: ZoneInfo, start: datetime) -> int:
    rid = _decoded(c, "RECURRENCE-ID")
    return ms(_utc(rid, tz)) if rid is not None else ms(start)


def confirm_after(c: Any) -> timedelta | None:
    """The grace an item gives its assignee to confirm (None: it asks nothing)."""
    if CONFIRM_PROP not in c:
        return None
    raw = str(c.get(CONFIRM_PROP) or "").strip()
    try:
        got = icalendar.vDuration.from_ical(raw) if raw else CONFIRM_DEFAULT
    except Exception:
        got = CONFIRM_DEFAULT
    if not isinstance(got, timedelta) or got < timedelta(0) or got > CONFIRM_MAX:
        return CONFIRM_DEFAULT
    return got


def completed(c: Any) -> bool:
    """A to-do (or an occurrence of one) a CalDAV client marked done."""
    return str(c.get("STATUS", "")).upper() == "COMPLETED" or "COMPLETED" in c


def _title(c: Any) -> str:
    t = str(c.get("SUMMARY", "") or "").strip()
    return (t or "Reminder")[:TITLE_MAX]


def reminds(cal: icalendar.Calendar) -> bool:
    """Whether the object has anything to remind (an alarm, a confirmation)."""
    for c in cal.walk():
        if c.name == "VALARM" or (c.name in ("VEVENT", "VTODO") and CONFIRM_PROP in c):
            return True
    return False


def _alarm_times(alarm: Any, start: datetime, end: datetime | None, tz: ZoneInfo) -> list[datetime]:
    """When one VALARM of one occurrence goes off: its TRIGGER (relative to the
    start, or to the end with RELATED=END, or at a time) and its REPEATs."""
    try:
        prop = alarm.get("TRIGGER")
        trig = alarm.decoded("TRIGGER")
    except Exception:
        return []
    if isinstance(trig, timedelta):
        related = str(prop.params.get("RELATED", "START")).upper() if prop is not None else ""
        base = end if related == "END" and end is not None else start
        first = base + trig
    elif isinstance(trig, datetime | date):
        first = _utc(trig, tz)
    else:
        return []
    out = [first]
    repeat, step = _decoded(alarm, "REPEAT"), _decoded(alarm, "DURATION")
    if isinstance(repeat, int) and isinstance(step, timedelta) and step > timedelta(0):
        out += [first + step * i for i in range(1, min(repeat, 100) + 1)]
    return out


def _reach(cal: icalendar.Calendar) -> timedelta:
    """How far from its occurrence any alarm of the object can go off."""
    far = timedelta(0)
    for alarm in cal.walk("VALARM"):
        trig = _decoded(alarm, "TRIGGER")
        if isinstance(trig, timedelta):
            far = max(far, abs(trig))
        repeat, step = _decoded(alarm, "REPEAT"), _decoded(alarm, "DURATION")
        if isinstance(repeat, int) and isinstance(step, timedelta):
            far += abs(step) * min(repeat, 100)
    return far


def fires(cal: icalendar.Calendar, *, tz: ZoneInfo, lo: datetime, hi: datetime) -> list[Fire]:
    """Every fire of the object in [lo, hi): each VALARM of each occurrence, and
    each occurrence's confirmation check. ``recurring_ical_events`` expands the
    occurrences (an overridden one with its own alarms); an alarm's time is its
    trigger from the occurrence's start or end, or the time it names."""
    out: dict[tuple[int, str], Fire] = {}
    # floating times are compared as given by the library: a day either side
    reach = max(_reach(cal), CONFIRM_MAX) + timedelta(days=1)
    q = recurring_ical_events.of(cal, components=["VEVENT", "VTODO"])
    for c in q.between(lo - reach, hi + reach):
        start, end = _span(c, tz)
        if start is None:
            continue
        occ = _occurrence(c, tz, start)
        title = _title(c)
        for alarm in c.subcomponents:
            if alarm.name != "VALARM":
                continue
            for at in _alarm_times(alarm, start, end, tz):
                if lo <= at < hi:
                    key = f"a{int((at - start).total_seconds())}"
                    stale = max(end or start, at + STALE_ALARM)
                    out.setdefault((occ, key), Fire(occ, key, "alarm", at, start, stale, title))
        grace = confirm_after(c)
        if grace is not None and lo <= start + grace < hi:
            at = start + grace
            f = Fire(occ, CONFIRM_KEY, "confirm", at, start, at + STALE_CONFIRM, title)
            out.setdefault(f.key, f)
    return sorted(out.values(), key=lambda f: (f.fire_at, f.key))


def occurrence_of(
    cal: icalendar.Calendar, *, tz: ZoneInfo, occurrence_ms: int, near: datetime | None = None
) -> Any | None:
    """The component of one occurrence (overrides applied), or None. ``near``: where
    it starts now (an overridden occurrence may have moved from its RECURRENCE-ID)."""
    at = from_ms(occurrence_ms)
    lo, hi = min(at, near or at), max(at, near or at)
    q = recurring_ical_events.of(cal, components=["VEVENT", "VTODO"])
    for c in q.between(lo - timedelta(days=1), hi + timedelta(days=1)):
        start, _ = _span(c, tz)
        if start is not None and _occurrence(c, tz, start) == occurrence_ms:
            return c
    return None


# --- the schedule domain's objects ----------------------------------------------------------


@dataclass
class Loaded:
    """An object as reminders read it: its row, its calendar and its iCalendar."""

    object_id: str
    uid: str
    component: str
    calendar_id: str
    calendar_kind: str  # personal | family
    account_id: str | None  # a personal calendar's person
    family_id: str | None
    tz: ZoneInfo
    cal: icalendar.Calendar


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except Exception:
        return ZoneInfo("UTC")


def loaded(cal_row: Calendar, obj: CalendarObject) -> Loaded | None:
    try:
        cal = schedule.decode(obj)
    except Exception:
        log.warning("calendar object %s could not be read for its reminders", obj.id)
        return None
    return Loaded(
        object_id=obj.id,
        uid=obj.uid,
        component=obj.component,
        calendar_id=cal_row.id,
        calendar_kind=cal_row.kind,
        account_id=cal_row.account_id,
        family_id=cal_row.family_id,
        tz=zone(cal_row.time_zone),
        cal=cal,
    )


async def load(s: AsyncSession, object_id: str) -> Loaded | None:
    obj = await s.get(CalendarObject, object_id)
    if obj is None:
        return None
    cal_row = await s.get(Calendar, obj.calendar_id)
    return loaded(cal_row, obj) if cal_row is not None else None


ACCOUNT_URN = "urn:kares:account:"


def assignees_of(c: Any) -> list[str]:
    """The members an item is for: its ATTENDEEs that name a Kares account."""
    raw = c.get("ATTENDEE")
    if raw is None:
        return []
    values = raw if isinstance(raw, list) else [raw]
    out = []
    for v in values:
        text = str(v).strip()
        if text.lower().startswith(ACCOUNT_URN):
            out.append(text[len(ACCOUNT_URN) :])
    return list(dict.fromkeys(out))


async def _people(s: AsyncSession, o: Loaded, assignees: Sequence[str]) -> list[str]:
    """Whom an item reminds: a personal calendar's person; on a family calendar
    its assignees who are members, or every member when it names none."""
    if o.calendar_kind != "family" or o.family_id is None:
        return [o.account_id] if o.account_id else []
    members = await families.member_ids(s, o.family_id)
    chosen = [a for a in assignees if a in members]
    return chosen or list(members)


# --- materialising fires ----------------------------------------------------------------------


async def refresh(s: AsyncSession, o: Loaded | None, object_id: str) -> None:
    """Recompute an object's fires after it was written: fires from a moment ago
    to ``HORIZON`` ahead replace the ones there were; a moved fire gets a job at
    its new time."""
    if o is None or not reminds(o.cal):
        await forget(s, object_id)
        return
    now = clock.utcnow()
    lo, hi = now - GRACE, now + HORIZON
    hi = await _materialise(s, o, lo, hi, replace=True)
    await _set_until(s, o, hi)


@schedule.on_object_change
async def _object_changed(
    s: AsyncSession, cal_row: Calendar, name: str, obj: CalendarObject | None
) -> None:
    """The schedule domain's hook, in the transaction of every write of an object
    (JSON API, CalDAV, import). A deletion needs nothing: the object's fires,
    deliveries and confirmations go with its row (foreign keys), and the jobs of
    its fires find nothing when they run."""
    if obj is None:
        return
    try:
        await refresh(s, loaded(cal_row, obj), obj.id)
    except Exception:
        # the expansion could not read it (it runs before anything is written): the
        # object is stored all the same, the write being the person's; it reminds
        # nothing, and the log says so
        log.exception("calendar object %s: its reminders could not be computed", obj.id)
        await forget(s, obj.id)


async def forget(s: AsyncSession, object_id: str) -> None:
    """The object is gone or reminds nothing: its fires go (their jobs find none)."""
    await s.execute(delete(ReminderFire).where(ReminderFire.object_id == object_id))
    await s.execute(delete(ReminderSource).where(ReminderSource.object_id == object_id))


async def _set_until(s: AsyncSession, o: Loaded, until: datetime) -> None:
    """The object's fires exist up to ``until``; a new source gets its refill job."""
    src = await s.get(ReminderSource, o.object_id)
    if src is not None:
        src.until = until
        return
    job = jobs.enqueue(
        s,
        REFILL_JOB,
        {"object_id": o.object_id},
        account_id=o.account_id,
        run_at=until - REFILL_AHEAD,
    )
    s.add(ReminderSource(object_id=o.object_id, until=until, job_id=job.id))


async def _materialise(
    s: AsyncSession, o: Loaded, lo: datetime, hi: datetime, *, replace: bool
) -> datetime:
    """Put the object's fires of [lo, hi) in place (each with its job); with
    ``replace`` the fires already there from ``lo`` on that no longer exist go,
    and the moved ones move. Reminders already delivered are not made again.
    At most ``MAX_FIRES`` at a time (a rule every minute): returns how far it
    went, ``hi`` or the time of the first fire it left for the next round."""
    found = fires(o.cal, tz=o.tz, lo=lo, hi=hi)
    if len(found) > MAX_FIRES:
        hi = found[MAX_FIRES].fire_at
        found = [f for f in found if f.fire_at < hi]
    wanted = {f.key: f for f in found}
    assignees: dict[int, list[str]] = {}
    reach = max(_reach(o.cal), CONFIRM_MAX) + timedelta(days=1)
    for c in recurring_ical_events.of(o.cal, components=["VEVENT", "VTODO"]).between(
        lo - reach, hi + reach
    ):
        start, _ = _span(c, o.tz)
        if start is not None:
            assignees[_occurrence(c, o.tz, start)] = assignees_of(c)
    have_q = select(ReminderFire).where(ReminderFire.object_id == o.object_id)
    have = {(f.occurrence_ms, f.alarm_key): f for f in (await s.execute(have_q)).scalars()}
    done_q = select(ReminderDelivery.occurrence_ms, ReminderDelivery.alarm_key).where(
        ReminderDelivery.object_id == o.object_id,
        ReminderDelivery.occurrence_ms.in_(sorted({k[0] for k in wanted}) or [-1]),
    )
    done = {(int(a), str(b)) for a, b in (await s.execute(done_q)).all()}
    if replace:
        for key, old in have.items():
            if old.fire_at >= lo and key not in wanted:
                await s.delete(old)
    for key, f in wanted.items():
        if key in done:
            continue
        who = assignees.get(f.occurrence_ms, [])
        row: ReminderFire | None = have.get(key)
        if row is not None:
            if not replace:
                continue
            moved = row.fire_at != f.fire_at
            row.fire_at, row.starts_at, row.stale_at = f.fire_at, f.starts_at, f.stale_at
            row.title, row.assignees, row.kind = f.title, who, f.kind
            if moved:
                _job(s, row, o)
            continue
        row = ReminderFire(
            id=new_id(),
            object_id=o.object_id,
            occurrence_ms=f.occurrence_ms,
            alarm_key=f.alarm_key,
            kind=f.kind,
            fire_at=f.fire_at,
            starts_at=f.starts_at,
            stale_at=f.stale_at,
            title=f.title,
            assignees=who,
        )
        s.add(row)
        _job(s, row, o)
    await s.flush()
    return hi


def _job(s: AsyncSession, row: ReminderFire, o: Loaded) -> None:
    jobs.enqueue(s, JOB, {"fire_id": row.id}, account_id=o.account_id, run_at=row.fire_at)


@jobs.handler(REFILL_JOB)
async def refill_job(rt: Runtime, job: jobs.JobContext) -> None:
    """One object's fires extended to ``HORIZON`` ahead, from where they stood
    (after a long stop the fires of the gap are made too, already due: delivered
    late, or recorded stale); then again a day later. Ends when the object has
    nothing more to remind (its source row gone, or another job took over)."""
    now = clock.utcnow()
    hi = now + HORIZON
    async with rt.db.sessions() as s:
        src = await s.get(ReminderSource, str(job.payload.get("object_id")))
        if src is None or src.job_id != job.id:
            return
        o = await load(s, src.object_id)
        if o is None:
            await forget(s, src.object_id)
            await s.commit()
            return
        hi = await _materialise(s, o, src.until, hi, replace=False)
        src.until = hi
        # a series over (its last occurrence, and any confirmation of it, long
        # past): its fires that remain deliver themselves; the extending ends
        end_ms = (
            await s.execute(
                select(CalendarObject.range_end).where(CalendarObject.id == src.object_id)
            )
        ).scalar_one_or_none()
        over = end_ms is not None and from_ms(end_ms) + CONFIRM_MAX + _reach(o.cal) < now
        if over:
            await s.delete(src)
        await s.commit()
    if not over:
        raise jobs.Again(hi - REFILL_AHEAD)


# --- delivering ---------------------------------------------------------------------------------


def status_for(fire_at: datetime, stale_at: datetime, now: datetime) -> str:
    """On time within the due minute; late after it; stale past ``stale_at``."""
    if now >= stale_at:
        return STALE
    due_minute = fire_at.replace(second=0, microsecond=0)
    return ON_TIME if now < due_minute + timedelta(minutes=1) else LATE


def _local(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).strftime("%H:%M")


async def confirmed(s: AsyncSession, o: Loaded, occurrence_ms: int, near: datetime) -> bool:
    """Whether the occurrence was confirmed: through the API, or (a to-do) marked
    completed by a CalDAV client."""
    q = select(Confirmation.id).where(
        Confirmation.object_id == o.object_id, Confirmation.occurrence_ms == occurrence_ms
    )
    if (await s.execute(q)).first() is not None:
        return True
    c = occurrence_of(o.cal, tz=o.tz, occurrence_ms=occurrence_ms, near=near)
    return c is not None and completed(c)


async def _watchers(s: AsyncSession, account_ids: Iterable[str]) -> set[str]:
    q = select(Watch.account_id).where(
        Watch.account_id.in_(list(account_ids)), Watch.status == "paired"
    )
    return {a for a in (await s.execute(q)).scalars() if a}


async def missed_recipients(s: AsyncSession, o: Loaded, about: str) -> list[str]:
    """Who is told that ``about`` did not confirm: their guardians (a dependant,
    a minor); else, on a family calendar, the family's owner and guardians other
    than them; else (an adult's own calendar) they themselves."""
    ids = [a.id for a in await families.guardians_of(s, about)]
    if ids:
        return ids
    if o.calendar_kind == "family" and o.family_id is not None:
        q = select(FamilyMember.account_id).where(
            FamilyMember.family_id == o.family_id,
            FamilyMember.role.in_(families.ADMINS),
            FamilyMember.account_id != about,
        )
        ids = sorted((await s.execute(q)).scalars())
        if ids:
            return ids
    return [about]


async def deliver(rt: Runtime, fire_id: str) -> str | None:
    """Deliver one fire if it is due: the delivery row first (unique: whoever
    inserts it delivers; everyone else finds it and does nothing), then the
    inbox entries, pushes and watch in the same transaction. Returns the status
    recorded, or None when there was nothing (more) to do."""
    async with rt.db.sessions() as s:
        fire = await s.get(ReminderFire, fire_id)
        now = clock.utcnow()
        if fire is None or fire.fire_at > now:
            return None  # cancelled, or moved later (its new job comes then)
        o = await load(s, fire.object_id)
        if o is None:
            await s.delete(fire)
            await s.commit()
            return None
        people = await _people(s, o, fire.assignees or [])
        about: str | None = None
        if fire.kind == "confirm":
            if await confirmed(s, o, fire.occurrence_ms, fire.starts_at):
                await s.delete(fire)
                await s.commit()
                return None
            about = people[0] if len(people) == 1 else None
            to = await missed_recipients(s, o, about) if about else await _family_admins(s, o)
        else:
            to = people
        status = status_for(fire.fire_at, fire.stale_at, now)
        if fire.kind == "confirm" and status != STALE:
            status = TOLD
        delivery_id = new_id()
        ins = (
            insert_for(s)(ReminderDelivery)
            .values(
                id=delivery_id,
                object_id=fire.object_id,
                occurrence_ms=fire.occurrence_ms,
                alarm_key=fire.alarm_key,
                kind=fire.kind,
                status=status,
                due_at=fire.fire_at,
                starts_at=fire.starts_at,
                delivered_at=now,
                late_seconds=max(0, int((now - fire.fire_at).total_seconds())),
                title=fire.title,
                unconfirmed_by=about,
            )
            .on_conflict_do_nothing(index_elements=["object_id", "occurrence_ms", "alarm_key"])
        )
        made = (await s.execute(ins)).rowcount  # type: ignore[attr-defined]
        await s.execute(delete(ReminderFire).where(ReminderFire.id == fire.id))
        if not made:
            await s.commit()
            return None  # delivered already (another worker, an earlier run)
        if status != STALE and to:
            await _tell(s, o, fire, delivery_id, status, to, about, now)
        else:  # recorded for whom it was, so their lists show it; nobody is told
            for a in dict.fromkeys(to):
                s.add(
                    ReminderRecipient(
                        id=new_id(), delivery_id=delivery_id, account_id=a, created_at=now
                    )
                )
        await s.commit()
        if status == STALE:
            log.info("reminder %s recorded stale, %s late", delivery_id, now - fire.fire_at)
        return status


async def _family_admins(s: AsyncSession, o: Loaded) -> list[str]:
    if o.family_id is None:
        return [o.account_id] if o.account_id else []
    q = select(FamilyMember.account_id).where(
        FamilyMember.family_id == o.family_id, FamilyMember.role.in_(families.ADMINS)
    )
    return sorted((await s.execute(q)).scalars())


async def _tell(
    s: AsyncSession,
    o: Loaded,
    fire: ReminderFire,
    delivery_id: str,
    status: str,
    to: list[str],
    about: str | None,
    now: datetime,
) -> None:
    at = _local(fire.starts_at, o.tz)
    data: dict[str, Any] = {
        "calendar_id": o.calendar_id,
        "entry_id": o.uid,
        "type": TYPE_OF.get(o.component, "event"),
        "occurrence": from_ms(fire.occurrence_ms).isoformat(),
        "starts_at": fire.starts_at.isoformat(),
        "due_at": fire.fire_at.isoformat(),
        "delivery_id": delivery_id,
    }
    if fire.kind == "confirm":
        person = await s.get(Account, about) if about else None
        who = (person.name if person is not None else None) or "Someone"
        minutes = int((fire.fire_at - fire.starts_at).total_seconds() // 60)
        title = f"Not confirmed: {fire.title}"
        body = f"{who}: {fire.title} not confirmed {minutes} minutes after {at}."
        data |= {"kind": "missed_confirmation", "unconfirmed_by": about, "late": False}
    else:
        late = status == LATE
        title = ("Late reminder: " if late else "Reminder: ") + fire.title
        body = f"{fire.title} at {at}." + (" (delivered late)" if late else "")
        data |= {"kind": "reminder", "late": late}
    notes = await notify.send(
        s,
        account_ids=to,
        category="reminders",
        title=title[: notify.TITLE_MAX],
        body=body,
        data=data,
    )
    watching = await _watchers(s, to)
    for note in notes:
        s.add(
            ReminderRecipient(
                id=new_id(),
                delivery_id=delivery_id,
                account_id=note.account_id,
                notification_id=note.id,
                watch_owed=note.account_id in watching,
                created_at=now,
            )
        )


@jobs.handler(JOB)
async def fire_job(rt: Runtime, job: jobs.JobContext) -> None:
    """One fire's job (payload: fire_id), run at its time."""
    await deliver(rt, str(job.payload.get("fire_id")))


# --- the watch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchReminder:
    recipient_id: str
    text: str


async def next_for_watch(
    s: AsyncSession, *, account_id: str, paired_at: datetime, now: datetime | None = None
) -> WatchReminder | None:
    """The oldest reminder the wearer's watch still owes (delivered since the watch
    was paired, and not longer than ``WATCH_MAX_AGE`` ago)."""
    now = now or clock.utcnow()
    q = (
        select(ReminderRecipient, ReminderDelivery)
        .join(ReminderDelivery, ReminderDelivery.id == ReminderRecipient.delivery_id)
        .where(
            ReminderRecipient.account_id == account_id,
            ReminderRecipient.watch_owed.is_(True),
            ReminderRecipient.created_at >= max(paired_at, now - WATCH_MAX_AGE),
        )
        .order_by(ReminderRecipient.created_at, ReminderRecipient.id)
        .limit(1)
    )
    row = (await s.execute(q)).first()
    if row is None:
        return None
    rec, d = row
    o = await load(s, d.object_id)
    at = _local(d.starts_at, o.tz if o is not None else ZoneInfo("UTC"))
    if d.kind == "confirm":
        text = f"Not confirmed: {d.title} {at}"
    else:
        text = ("Late reminder: " if d.status == LATE else "Reminder: ") + f"{d.title} {at}"
    return WatchReminder(rec.id, text)


async def watch_took(s: AsyncSession, *, recipient_id: str) -> None:
    """The watch acknowledged the reminder: it is not sent again. Committed here."""
    await s.execute(
        update(ReminderRecipient)
        .where(ReminderRecipient.id == recipient_id)
        .values(watch_owed=False, watch_sent_at=clock.utcnow())
    )
    await s.commit()


# --- confirming, and what the API lists -----------------------------------------------------------


def occurrence_key(when: date | datetime | None, o: Loaded, master: Any) -> int | None:
    """An occurrence as the JSON API names it (its recurrence_id: a time with its
    offset, or a date; None for an item that does not repeat) as the key of
    fires and confirmations."""
    if when is None:
        start, _ = _span(master, o.tz)
        return ms(start) if start is not None else None
    return ms(_utc(when, o.tz))


async def confirm(
    s: AsyncSession,
    *,
    actor_id: str,
    calendar_id: str,
    entry_id: str,
    component: str,
    occurrence: date | datetime | None,
) -> tuple[Confirmation, bool]:
    """Confirm one occurrence of an entry done: whoever it is for, or their
    guardian (who gave the medicine). Idempotent: a second confirmation returns
    the first (False). Committed here."""
    cal_row, _ = await schedule.calendar_for(s, actor_id, calendar_id)
    obj = await schedule.get_by_uid(s, cal_row.id, entry_id)
    if obj is None or obj.component != component:
        raise Problem(404, "calendar.entry_not_found", "No such entry in this calendar.")
    o = loaded(cal_row, obj)
    if o is None:
        raise Problem(404, "calendar.entry_not_found", "No such entry in this calendar.")
    masters = [c for c in o.cal.walk(component) if "RECURRENCE-ID" not in c]
    occ = occurrence_key(occurrence, o, masters[0] if masters else o.cal.walk(component)[0])
    c = occurrence_of(o.cal, tz=o.tz, occurrence_ms=occ) if occ is not None else None
    if c is None or occ is None:
        raise Problem(
            404,
            "calendar.occurrence_not_found",
            "The entry has no such occurrence (give its recurrence_id).",
        )
    if confirm_after(c) is None:
        raise Problem(
            409, "schedule.confirmation_not_asked", "This entry does not ask to be confirmed."
        )
    people = await _people(s, o, assignees_of(c))
    allowed = actor_id in people
    for p in people:
        if allowed:
            break
        allowed = actor_id in {a.id for a in await families.guardians_of(s, p)}
    if not allowed:
        raise Problem(
            403,
            "schedule.confirm_forbidden",
            "Only the people the entry is for, or their guardians, confirm it.",
        )
    now = clock.utcnow()
    ins = (
        insert_for(s)(Confirmation)
        .values(
            id=new_id(),
            object_id=obj.id,
            occurrence_ms=occ,
            account_id=actor_id,
            confirmed_at=now,
            via="api",
        )
        .on_conflict_do_nothing(index_elements=["object_id", "occurrence_ms"])
    )
    made = bool((await s.execute(ins)).rowcount)  # type: ignore[attr-defined]
    await s.commit()
    q = select(Confirmation).where(
        Confirmation.object_id == obj.id, Confirmation.occurrence_ms == occ
    )
    return (await s.execute(q)).scalar_one(), made


@dataclass(frozen=True)
class Item:
    """Where a fire or delivery is, as the JSON API names it."""

    calendar_id: str
    entry_id: str  # the UID
    type: str  # event | todo


TYPE_OF = {"VEVENT": "event", "VTODO": "todo"}


@dataclass(frozen=True)
class Upcoming:
    item: Item
    occurrence: datetime
    fire_at: datetime
    starts_at: datetime
    title: str


async def _calendars_of(s: AsyncSession, account_id: str) -> tuple[list[str], list[str]]:
    """The person's own calendar ids and their families' calendar ids."""
    fams = [m.family.id for m in await families.families_of(s, account_id)]
    q = select(Calendar.id, Calendar.kind).where(
        (Calendar.account_id == account_id) | Calendar.family_id.in_(fams or ["-"])
    )
    own: list[str] = []
    shared: list[str] = []
    for cid, kind in (await s.execute(q)).all():
        (shared if kind == "family" else own).append(cid)
    return own, shared


async def upcoming(
    s: AsyncSession, *, account_id: str, hours: int = 48, limit: int = 200
) -> list[Upcoming]:
    """The person's reminders to come (their own calendars' and their families'
    items for them), soonest first, up to ``hours`` ahead."""
    now = clock.utcnow()
    own, shared = await _calendars_of(s, account_id)
    if not own and not shared:
        return []
    q = (
        select(
            ReminderFire, CalendarObject.calendar_id, CalendarObject.uid, CalendarObject.component
        )
        .join(CalendarObject, CalendarObject.id == ReminderFire.object_id)
        .where(
            CalendarObject.calendar_id.in_(own + shared),
            ReminderFire.kind == "alarm",
            ReminderFire.fire_at >= now - GRACE,
            ReminderFire.fire_at < now + timedelta(hours=hours),
        )
        .order_by(ReminderFire.fire_at, ReminderFire.id)
    )
    out: list[Upcoming] = []
    for f, cid, uid, comp in (await s.execute(q)).all():
        if cid in shared and f.assignees and account_id not in f.assignees:
            continue
        item = Item(cid, uid, TYPE_OF.get(comp, "event"))
        out.append(Upcoming(item, from_ms(f.occurrence_ms), f.fire_at, f.starts_at, f.title))
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True)
class Missed:
    delivery_id: str
    item: Item
    occurrence: datetime
    title: str
    starts_at: datetime
    due_at: datetime
    told_at: datetime
    status: str
    unconfirmed_by: str | None


async def missed(s: AsyncSession, *, account_id: str, limit: int = 100) -> list[Missed]:
    """The missed confirmations the person was told of (or that were recorded
    stale for them), newest first."""
    q = (
        select(
            ReminderDelivery,
            CalendarObject.calendar_id,
            CalendarObject.uid,
            CalendarObject.component,
        )
        .join(ReminderRecipient, ReminderRecipient.delivery_id == ReminderDelivery.id)
        .join(CalendarObject, CalendarObject.id == ReminderDelivery.object_id)
        .where(ReminderRecipient.account_id == account_id, ReminderDelivery.kind == "confirm")
        .order_by(ReminderDelivery.due_at.desc(), ReminderDelivery.id)
        .limit(limit)
    )
    return [
        Missed(
            d.id,
            Item(cid, uid, TYPE_OF.get(comp, "event")),
            from_ms(d.occurrence_ms),
            d.title,
            d.starts_at,
            d.due_at,
            d.delivered_at,
            d.status,
            d.unconfirmed_by,
        )
        for d, cid, uid, comp in (await s.execute(q)).all()
    ]
