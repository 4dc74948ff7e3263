"""Events and to-dos in JSON, written as iCalendar through ``icalendar``.

The JSON API reads and writes the same calendar object resources CalDAV does:
a write reads the stored object, changes the properties it names (a phone's own
properties are kept) and stores the result with ``service.store``. Edits of a
recurring entry take a scope:

* ``all``: the series (a moved start moves its exceptions and overrides along);
* ``this``: one occurrence, as an override with its RECURRENCE-ID;
* ``following``: the series is split: the original ends (UNTIL) just before the
  occurrence and a new series with a new UID starts there, in one transaction.
  RANGE=THISANDFUTURE would keep one UID, but the phones' calendars apply it
  badly or not at all (docs/SCHEDULE.md), so the split is what everyone reads.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from dateutil import rrule as du_rrule
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.errors import Problem
from kares.families import service as families
from kares.schedule import ical, recurrence, service
from kares.schedule.models import Calendar, CalendarObject

ATTENDEE_PREFIX = "urn:kares:account:"
KIND_OF = {"event": "VEVENT", "todo": "VTODO"}
TYPE_OF = {v: k for k, v in KIND_OF.items()}
SCOPES = ("all", "this", "following")
MAX_REMINDERS = 10
PRODID = "-//Kares//Schedule//EN"

When = date | datetime


def bad(code: str, detail: str) -> Problem:
    return Problem(400, code, detail)


def entry_not_found() -> Problem:
    return Problem(404, "calendar.entry_not_found", "No such event or to-do.")


def occurrence_not_found() -> Problem:
    return Problem(404, "calendar.occurrence_not_found", "The entry has no such occurrence.")


@dataclass(frozen=True)
class Reminder:
    """``minutes_before`` the start (or due time), or ``at`` a moment."""

    minutes_before: int | None = None
    at: datetime | None = None


# --- reading ----------------------------------------------------------------------------


def items(cal: icalendar.Calendar) -> list[icalendar.Component]:
    return recurrence.components_of(cal)


def master_of(cal: icalendar.Calendar) -> icalendar.Component | None:
    return next((c for c in items(cal) if "RECURRENCE-ID" not in c), None)


def _zone_name(v: When) -> str | None:
    if isinstance(v, datetime) and v.tzinfo is not None:
        key = getattr(v.tzinfo, "key", None)
        return str(key) if key else ("UTC" if v.utcoffset() == timedelta(0) else None)
    return None


def _iso(v: When | None, tz: tzinfo) -> str | None:
    if v is None:
        return None
    if not isinstance(v, datetime):
        return v.isoformat()
    if v.tzinfo is None:
        v = v.replace(tzinfo=tz)
    return v.isoformat()


def _list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _dates(comp: icalendar.Component, prop: str) -> list[When]:
    out: list[When] = []
    for p in _list(comp.get(prop)):
        out.extend(x.dt for x in p.dts)
    return out


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


def view(obj: CalendarObject, cal: Calendar) -> dict[str, Any]:
    """The JSON view of a stored entry: its master (or, for an object of
    overrides only, the first one) and the RECURRENCE-IDs it overrides."""
    vcal = service.decode(obj)
    comps = items(vcal)
    m = master_of(vcal) or comps[0]
    tz = recurrence.zone(cal.time_zone) or UTC
    start = m.decoded("DTSTART") if "DTSTART" in m else None
    end = recurrence.bounds(m)
    all_day = start is not None and not isinstance(start, datetime)
    due = m.decoded("DUE") if "DUE" in m else None
    rrule = m.get("RRULE")
    reminders: list[dict[str, Any]] = []
    for a in m.subcomponents:
        if a.name != "VALARM" or "TRIGGER" not in a:
            continue
        t = a.decoded("TRIGGER")
        if isinstance(t, timedelta):
            reminders.append({"minutes_before": int(-t.total_seconds() // 60)})
        elif isinstance(t, datetime):
            reminders.append({"at": _iso(t, UTC)})
    people = [
        str(a)[len(ATTENDEE_PREFIX) :]
        for a in _list(m.get("ATTENDEE"))
        if str(a).startswith(ATTENDEE_PREFIX)
    ]
    out: dict[str, Any] = {
        "id": obj.uid,
        "calendar_id": obj.calendar_id,
        "type": TYPE_OF[obj.component],
        "etag": obj.etag,
        "title": _text(m.get("SUMMARY")),
        "notes": _text(m.get("DESCRIPTION")),
        "place": _text(m.get("LOCATION")),
        "all_day": all_day,
        "time_zone": _zone_name(start) if start is not None else None,
        "rrule": rrule.to_ical().decode() if rrule is not None else None,
        "exdates": [_iso(x, tz) for x in _dates(m, "EXDATE")],
        "overrides": [_iso(c.decoded("RECURRENCE-ID"), tz) for c in comps if "RECURRENCE-ID" in c],
        "reminders": reminders,
        "confirm_minutes": _confirm_minutes(m),
        "updated_at": obj.updated_at.isoformat(),
    }
    if all_day:
        out["start_date"] = _iso(start, tz)
        out["end_date"] = _iso(end[1], tz) if end is not None else None
    else:
        out["start"] = _iso(start, tz)
        out["end"] = _iso(end[1], tz) if end is not None and "DTSTART" in m else None
    if obj.component == "VTODO":
        out["assignees"] = people
        out["due"] = _iso(due, tz) if isinstance(due, datetime) else None
        out["due_date"] = (
            _iso(due, tz) if due is not None and not isinstance(due, datetime) else None
        )
        out["status"] = str(m.get("STATUS", "NEEDS-ACTION")).lower()
        done = m.decoded("COMPLETED") if "COMPLETED" in m else None
        out["completed_at"] = _iso(done, UTC) if done is not None else None
    else:
        out["attendees"] = people
    return out


# --- writing ----------------------------------------------------------------------------


def _check_rrule(text: str, start: When) -> icalendar.vRecur:
    try:
        rule = icalendar.vRecur.from_ical(text)
        du_rrule.rrulestr(rule.to_ical().decode(), dtstart=_naive(start))
    except Exception:
        raise bad(
            "calendar.invalid_rrule", "Not an RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=MO."
        ) from None
    if "FREQ" not in rule:
        raise bad("calendar.invalid_rrule", "An RRULE needs FREQ.")
    if "UNTIL" in rule and "COUNT" in rule:
        raise bad("calendar.invalid_rrule", "An RRULE has UNTIL or COUNT, not both.")
    return rule


def _naive(v: When) -> datetime:
    if not isinstance(v, datetime):
        return datetime(v.year, v.month, v.day)
    return v.replace(tzinfo=None)


def _local(v: datetime, tz: tzinfo) -> datetime:
    """An aware moment as wall-clock time in ``tz`` (zone attached)."""
    return v.astimezone(tz)


def _zone(name: str | None, fallback: str) -> ZoneInfo:
    z = recurrence.zone(name or fallback)
    if not isinstance(z, ZoneInfo):
        raise bad("calendar.invalid_time_zone", "Not a known IANA time zone.")
    return z


def _set(comp: icalendar.Component, prop: str, value: Any) -> None:
    comp.pop(prop, None)
    if value is not None and value != "":
        comp.add(prop, value)


async def _people(s: AsyncSession, cal: Calendar, ids: list[str]) -> list[tuple[str, str]]:
    """Attendees or assignees: members of the calendar's family (a family
    calendar) or of a family of its owner (a personal one)."""
    if len(ids) > 50:
        raise bad("calendar.invalid_attendees", "At most 50 attendees.")
    if cal.family_id is not None:
        allowed = set(await families.member_ids(s, cal.family_id))
    else:
        assert cal.account_id is not None
        allowed = await families.co_members(s, cal.account_id)
    out = []
    for a in dict.fromkeys(ids):
        if a not in allowed:
            raise bad("calendar.invalid_attendees", "Attendees are members of the family.")
        out.append((a, await _display(s, a)))
    return out


async def _display(s: AsyncSession, account_id: str) -> str:
    from kares.identity.models import Account

    acc = await s.get(Account, account_id)
    return (acc.name if acc is not None and acc.name else "") or ""


@dataclass
class Fields:
    """What a JSON write sets; ``given`` names the fields that were sent."""

    values: dict[str, Any]

    def has(self, k: str) -> bool:
        return k in self.values

    def get(self, k: str) -> Any:
        return self.values.get(k)


async def apply(
    s: AsyncSession,
    cal: Calendar,
    comp: icalendar.Component,
    f: Fields,
    *,
    new: bool,
    override: bool = False,
) -> timedelta | None:
    """Write the given fields into one component (a master or an override)."""
    now = clock.utcnow().replace(microsecond=0)
    kind = comp.name
    for key, prop in (("title", "SUMMARY"), ("notes", "DESCRIPTION"), ("place", "LOCATION")):
        if f.has(key):
            _set(comp, prop, f.get(key))
    shift = _apply_times(cal, comp, f, new=new)
    if f.has("attendees") or f.has("assignees"):
        ids = f.get("attendees") if kind == "VEVENT" else f.get("assignees")
        comp.pop("ATTENDEE", None)
        for a, name in await _people(s, cal, list(ids or [])):
            att = icalendar.vCalAddress(ATTENDEE_PREFIX + a)
            if name:
                att.params["CN"] = name
            comp.add("ATTENDEE", att)
    if f.has("reminders"):
        rs: list[Reminder] = list(f.get("reminders") or [])
        if len(rs) > MAX_REMINDERS:
            raise bad("calendar.invalid_reminders", f"At most {MAX_REMINDERS} reminders.")
        comp.subcomponents = [c for c in comp.subcomponents if c.name != "VALARM"]
        for r in rs:
            alarm = icalendar.Alarm()
            alarm.add("ACTION", "DISPLAY")
            alarm.add("DESCRIPTION", str(comp.get("SUMMARY", "Reminder")))
            if r.at is not None:
                alarm.add("TRIGGER", r.at.astimezone(UTC))
            else:
                mins = int(r.minutes_before or 0)
                if not 0 <= mins <= 40320:
                    raise bad("calendar.invalid_reminders", "0 to 40320 minutes (4 weeks) before.")
                alarm.add("TRIGGER", -timedelta(minutes=mins))
                if kind == "VTODO" and "DTSTART" not in comp:
                    alarm["TRIGGER"].params["RELATED"] = "END"  # before the due time
            comp.add_component(alarm)
    if f.has("confirm_minutes"):
        comp.pop(ical.CONFIRM_PROP, None)
        minutes = f.get("confirm_minutes")
        if minutes is not None:
            comp.add(
                ical.CONFIRM_PROP,
                icalendar.vDuration(timedelta(minutes=int(minutes))).to_ical().decode(),
            )
    if not override and (f.has("rrule") or f.has("exdates")):
        start = comp.decoded("DTSTART") if "DTSTART" in comp else None
        if f.has("rrule"):
            text = f.get("rrule")
            if text:
                if start is None:
                    raise bad("calendar.invalid_rrule", "A repeating to-do needs a start.")
                comp.pop("RRULE", None)
                comp.add("RRULE", _check_rrule(str(text), start))
            else:
                comp.pop("RRULE", None)
        if f.has("exdates"):
            comp.pop("EXDATE", None)
            xs = list(f.get("exdates") or [])
            if xs and start is not None:
                comp.add("EXDATE", [_like(x, start, cal) for x in xs])
    if kind == "VTODO" and f.has("status"):
        st = str(f.get("status")).upper()
        _set(comp, "STATUS", st)
        comp.pop("COMPLETED", None)
        comp.pop("PERCENT-COMPLETE", None)
        if st == "COMPLETED":
            comp.add("COMPLETED", now)
            comp.add("PERCENT-COMPLETE", 100)
    if new:
        comp.pop("CREATED", None)
        comp.add("CREATED", now)
    _set(comp, "DTSTAMP", now)
    _set(comp, "LAST-MODIFIED", now)
    seq = int(comp.get("SEQUENCE", 0))
    _set(comp, "SEQUENCE", seq if new else seq + 1)
    return shift


def _like(v: When, start: When, cal: Calendar) -> When:
    """An occurrence time from JSON in the value type of ``start`` (a date, a
    time in the start's zone, or a floating time in the calendar's zone)."""
    if not isinstance(start, datetime):
        if isinstance(v, datetime):
            return v.astimezone(recurrence.zone(cal.time_zone) or UTC).date()
        return v
    if not isinstance(v, datetime):
        raise bad("calendar.invalid_occurrence", "A timed entry's occurrences are times.")
    if start.tzinfo is None:
        return v.astimezone(recurrence.zone(cal.time_zone) or UTC).replace(tzinfo=None)
    return v.astimezone(start.tzinfo)


def _confirm_minutes(m: icalendar.Component) -> int | None:
    raw = m.get(ical.CONFIRM_PROP)
    if raw is None:
        return None
    try:
        d = icalendar.vDuration.from_ical(str(raw))
    except (ValueError, TypeError):
        return None
    return int(d.total_seconds() // 60) if d.total_seconds() > 0 else None


def _apply_times(
    cal: Calendar, comp: icalendar.Component, f: Fields, *, new: bool
) -> timedelta | None:
    """Set the times the fields give; returns the wall-clock shift of a moved
    series start (its EXDATEs moved along here, its overrides by the caller)."""
    keys = ("all_day", "start", "end", "start_date", "end_date", "time_zone", "due", "due_date")
    if not any(f.has(k) for k in keys):
        return None
    kind = comp.name
    old_start = comp.decoded("DTSTART") if "DTSTART" in comp else None
    old_b = recurrence.bounds(comp)
    all_day = (
        bool(f.get("all_day"))
        if f.has("all_day")
        else (old_start is not None and not isinstance(old_start, datetime))
    )
    tzname = f.get("time_zone") or (_zone_name(old_start) if old_start is not None else None)
    tz = _zone(tzname, cal.time_zone)
    start: When | None
    end: When | None
    if all_day:
        start = (
            f.get("start_date")
            if f.has("start_date")
            else (
                old_start if old_start is not None and not isinstance(old_start, datetime) else None
            )
        )
        end = f.get("end_date") if f.has("end_date") else None
        if start is None and kind == "VEVENT":
            raise bad("calendar.invalid_times", "An all-day event needs start_date.")
        if end is None and start is not None and kind == "VEVENT":
            if old_b is not None and old_start is not None and not isinstance(old_b[1], datetime):
                end = start + (old_b[1] - old_start)
            else:
                end = start + timedelta(days=1)
    else:
        given = f.get("start") if f.has("start") else None
        if given is None and old_start is not None and isinstance(old_start, datetime):
            given = old_start if old_start.tzinfo is not None else old_start.replace(tzinfo=tz)
        start = _local(given, tz) if given is not None else None
        e = f.get("end") if f.has("end") else None
        if e is not None:
            end = _local(e, tz)
        elif start is not None and kind == "VEVENT":
            keep = (
                old_b[1] - old_b[0]
                if old_b is not None and isinstance(old_b[0], datetime) and not f.has("end")
                else timedelta(hours=1)
            )
            end = start + keep
        else:
            end = None
        if start is None and kind == "VEVENT":
            raise bad("calendar.invalid_times", "An event needs start.")
    if start is not None and end is not None and end < start:
        raise bad("calendar.invalid_times", "The end comes before the start.")
    comp.pop("DTSTART", None)
    comp.pop("DTEND", None)
    comp.pop("DURATION", None)
    if start is not None:
        comp.add("DTSTART", start)
    if kind == "VEVENT":
        comp.add("DTEND", end)
    else:
        if f.has("due") or f.has("due_date") or f.has("all_day"):
            comp.pop("DUE", None)
            due = f.get("due_date") if all_day else f.get("due")
            if due is not None:
                due = due if all_day else _local(due, tz)
                if start is not None and due < start:
                    raise bad("calendar.invalid_times", "A to-do is due after its start.")
                comp.add("DUE", due)
    # a moved start moves the series' exceptions along (scope "all")
    if new or old_start is None or start is None or "RRULE" not in comp:
        return None
    if isinstance(start, datetime) != isinstance(old_start, datetime):
        return None
    shift = _naive(start) - _naive(old_start)
    xs = _dates(comp, "EXDATE")
    if shift and xs:
        comp.pop("EXDATE", None)
        comp.add("EXDATE", [_shift(x, shift, start) for x in xs])
    return shift or None


def _shift(v: When, by: timedelta, like: When) -> When:
    """Move an occurrence time by a wall-clock shift, in the zone of ``like``."""
    if not isinstance(v, datetime):
        return v + timedelta(days=by.days)
    if v.tzinfo is None:
        return v + by
    tz = like.tzinfo if isinstance(like, datetime) and like.tzinfo is not None else v.tzinfo
    return (v.astimezone(tz).replace(tzinfo=None) + by).replace(tzinfo=tz)


def _new_vcalendar() -> icalendar.Calendar:
    c = icalendar.Calendar()
    c.add("PRODID", PRODID)
    c.add("VERSION", "2.0")
    return c


def _serialise(vcal: icalendar.Calendar) -> tuple[ical.Parsed, bytes]:
    vcal.subcomponents = [c for c in vcal.subcomponents if c.name != "VTIMEZONE"]
    vcal.add_missing_timezones()
    data = vcal.to_ical()
    return ical.parse(data), data


async def create(
    s: AsyncSession, *, account_id: str, calendar_id: str, type_: str, fields: Fields
) -> CalendarObject:
    """A new event or to-do (write access). Commits."""
    cal, _ = await service.calendar_for(s, account_id, calendar_id, write=True)
    kind = KIND_OF[type_]
    comp = icalendar.Event() if kind == "VEVENT" else icalendar.Todo()
    uid = f"{uuid.uuid4()}@kares"
    comp.add("UID", uid)
    await apply(s, cal, comp, fields, new=True)
    if kind == "VEVENT" and "DTSTART" not in comp:
        raise bad("calendar.invalid_times", "An event needs start or start_date.")
    vcal = _new_vcalendar()
    vcal.add_component(comp)
    parsed, data = _serialise(vcal)
    w = await service.store(s, cal, name=f"{uid}.ics", parsed=parsed, data=data, if_none_match=True)
    await s.commit()
    return w.object


async def _entry(
    s: AsyncSession, account_id: str, calendar_id: str, uid: str, *, write: bool
) -> tuple[Calendar, CalendarObject]:
    cal, _ = await service.calendar_for(s, account_id, calendar_id, write=write)
    obj = await service.get_by_uid(s, cal.id, uid)
    if obj is None:
        raise entry_not_found()
    return cal, obj


async def get(
    s: AsyncSession, *, account_id: str, calendar_id: str, uid: str
) -> tuple[Calendar, CalendarObject]:
    return await _entry(s, account_id, calendar_id, uid, write=False)


def _same(a: When, b: When) -> bool:
    if isinstance(a, datetime) != isinstance(b, datetime):
        return False
    if isinstance(a, datetime) and isinstance(b, datetime):
        if (a.tzinfo is None) != (b.tzinfo is None):
            return False
    return a == b


def _find_instance(vcal: icalendar.Calendar, master: icalendar.Component, rid: When) -> bool:
    """Whether ``rid`` is an original start of the series (RRULE/RDATE/DTSTART)."""
    if any(_same(x, rid) for x in _dates(master, "EXDATE")):
        return False
    only = _new_vcalendar()
    for c in vcal.subcomponents:
        if c.name == "VTIMEZONE":
            only.add_component(c)
    m = copy.deepcopy(master)
    only.add_component(m)
    lo = rid
    hi = (rid + timedelta(days=1)) if not isinstance(rid, datetime) else rid + timedelta(seconds=1)
    q = recurrence.recurring_ical_events.of(only, components=[master.name])
    for occ in q.between(lo, hi):
        if "RECURRENCE-ID" in occ and _same(occ.decoded("RECURRENCE-ID"), rid):
            return True
        if "DTSTART" in occ and _same(occ.decoded("DTSTART"), rid):
            return True
    return False


async def update(
    s: AsyncSession,
    *,
    account_id: str,
    calendar_id: str,
    uid: str,
    fields: Fields,
    scope: str = "all",
    occurrence: When | None = None,
    if_match: str | None = None,
) -> list[CalendarObject]:
    """Change an entry: the series (``all``), one occurrence (``this``) or the
    occurrence and those after it (``following``: a new series, returned second).
    Commits once."""
    cal, obj = await _entry(s, account_id, calendar_id, uid, write=True)
    stale = if_match is not None and if_match.strip('"') not in (obj.etag, "*")

    def fresh() -> None:
        # the precondition is judged once the change itself is found valid: a
        # bad field is the 4xx it is, whatever the If-Match
        if stale:
            raise service.precondition_failed()

    vcal = service.decode(obj)
    master = master_of(vcal)
    if scope != "all" and (master is None or not any(p in master for p in ("RRULE", "RDATE"))):
        if master is None:
            raise occurrence_not_found()
        scope = "all"  # a single entry: its one occurrence is all of it
    if scope == "all":
        target = master or items(vcal)[0]
        shift = await apply(s, cal, target, fields, new=False)
        if master is not None and "DTSTART" in master:
            _move_overrides(vcal, shift)
        fresh()
        return [await _save(s, cal, obj, vcal)]
    assert master is not None
    if occurrence is None:
        raise bad("calendar.invalid_occurrence", "Name the occurrence (its original start).")
    rid = _like(occurrence, master.decoded("DTSTART"), cal)
    existing = next(
        (c for c in items(vcal) if "RECURRENCE-ID" in c and _same(c.decoded("RECURRENCE-ID"), rid)),
        None,
    )
    if existing is None and not _find_instance(vcal, master, rid):
        raise occurrence_not_found()
    if scope == "this":
        if existing is None:
            existing = _override_of(master, rid)
            vcal.add_component(existing)
        await apply(s, cal, existing, fields, new=False, override=True)
        fresh()
        return [await _save(s, cal, obj, vcal)]
    # following
    if _same(rid, master.decoded("DTSTART")):
        return await update(
            s,
            account_id=account_id,
            calendar_id=calendar_id,
            uid=uid,
            fields=fields,
            scope="all",
            if_match=if_match,
        )
    new_vcal = _split(vcal, master, rid)
    new_master = master_of(new_vcal)
    assert new_master is not None
    shift = await apply(s, cal, new_master, fields, new=False)
    _move_overrides(new_vcal, shift)
    fresh()
    first = await _save(s, cal, obj, vcal, commit=False)
    parsed, data = _serialise(new_vcal)
    w = await service.store(
        s, cal, name=f"{parsed.uid}.ics", parsed=parsed, data=data, if_none_match=True
    )
    await s.commit()
    return [first, w.object]


def _override_of(master: icalendar.Component, rid: When) -> icalendar.Component:
    """A new override of the occurrence ``rid``: the master's properties at that
    occurrence (no rule), to be changed by the edit."""
    o = _master_at(master, rid)
    for p in ("RRULE", "RDATE", "EXDATE"):
        o.pop(p, None)
    o.add("RECURRENCE-ID", rid)
    return o


def _master_at(master: icalendar.Component, rid: When) -> icalendar.Component:
    """A copy of the master starting at ``rid``: its end (or due time) as far
    after it as the master's is after the master's start."""
    o = copy.deepcopy(master)
    start = master.decoded("DTSTART")
    b = recurrence.bounds(master)
    length = (b[1] - b[0]) if b is not None else timedelta(0)
    o.pop("DTSTART", None)
    o.add("DTSTART", rid)
    if "DTEND" in o:
        o.pop("DTEND")
        o.add("DTEND", rid + length)
    if "DUE" in o:
        due = master.decoded("DUE")
        o.pop("DUE")
        o.add("DUE", rid + (due - start))
    return o


def _move_overrides(vcal: icalendar.Calendar, shift: timedelta | None) -> None:
    """Keep overrides in step with a moved series start (its EXDATEs move in
    ``_apply_times``): each RECURRENCE-ID moves by the same wall-clock shift, and
    so does the time of an override that was not moved itself."""
    master = master_of(vcal)
    if not shift or master is None:
        return
    like = master.decoded("DTSTART")
    for c in items(vcal):
        if "RECURRENCE-ID" in c:
            rid = c.decoded("RECURRENCE-ID")
            if isinstance(rid, datetime) != isinstance(like, datetime):
                continue
            c.pop("RECURRENCE-ID")
            c.add("RECURRENCE-ID", _shift(rid, shift, like))
            # an occurrence changed but not moved moves with its series; one
            # moved to a time of its own keeps it
            if "DTSTART" in c and _same(c.decoded("DTSTART"), rid):
                for prop in ("DTSTART", "DTEND", "DUE"):
                    if prop in c:
                        v = c.decoded(prop)
                        c.pop(prop)
                        c.add(prop, _shift(v, shift, like))


def _split(vcal: icalendar.Calendar, master: icalendar.Component, rid: When) -> icalendar.Calendar:
    """End the series before ``rid`` and return the new series from ``rid`` on
    (new UID; overrides and exceptions at or after ``rid`` go with it)."""
    start = master.decoded("DTSTART")
    rule = master.get("RRULE")
    new_uid = f"{uuid.uuid4()}@kares"
    new_master = _master_at(master, rid)
    new_master.pop("UID")
    new_master.add("UID", new_uid)
    new_master.pop("RECURRENCE-ID", None)
    if rule is not None:
        new_rule = icalendar.vRecur(dict(rule))
        if "COUNT" in rule:
            before = _count_before(rule, start, rid)
            left = int(_list(rule["COUNT"])[0]) - before
            new_rule["COUNT"] = [max(left, 1)]
        new_master.pop("RRULE")
        new_master.add("RRULE", new_rule)
        old_rule = icalendar.vRecur(dict(rule))
        old_rule.pop("COUNT", None)
        old_rule["UNTIL"] = [_until_before(rid, start)]
        master.pop("RRULE")
        master.add("RRULE", old_rule)
    for prop in ("EXDATE", "RDATE"):
        xs = _dates(master, prop)
        master.pop(prop, None)
        new_master.pop(prop, None)
        keep = [x for x in xs if _before(x, rid)]
        move = [x for x in xs if not _before(x, rid)]
        if keep:
            master.add(prop, keep)
        if move:
            new_master.add(prop, move)
    out = _new_vcalendar()
    out.add_component(new_master)
    stay: list[icalendar.Component] = []
    for c in vcal.subcomponents:
        if c.name in ("VEVENT", "VTODO") and "RECURRENCE-ID" in c:
            if not _before(c.decoded("RECURRENCE-ID"), rid):
                moved = copy.deepcopy(c)
                moved.pop("UID")
                moved.add("UID", new_uid)
                out.add_component(moved)
                continue
        stay.append(c)
    vcal.subcomponents = stay
    return out


def _before(a: When, b: When) -> bool:
    return _naive(a) < _naive(b) if _kind(a) != _kind(b) else a < b


def _kind(v: When) -> str:
    if not isinstance(v, datetime):
        return "date"
    return "floating" if v.tzinfo is None else "aware"


def _until_before(rid: When, start: When) -> When:
    """UNTIL just before ``rid`` in the form RFC 5545 asks: a date for a date
    start, UTC for a zoned start, floating for a floating one."""
    if not isinstance(start, datetime):
        return rid - timedelta(days=1) if not isinstance(rid, datetime) else rid.date()
    assert isinstance(rid, datetime)
    t = rid - timedelta(seconds=1)
    return t.astimezone(UTC) if start.tzinfo is not None else t


def _count_before(rule: icalendar.vRecur, start: When, rid: When) -> int:
    """How many instances the rule makes before ``rid`` (COUNT counts them all,
    excluded ones included: RFC 5545 3.8.5.1)."""
    r = du_rrule.rrulestr(rule.to_ical().decode(), dtstart=_naive(start))
    return sum(1 for _ in r.between(_naive(start) - timedelta(seconds=1), _naive(rid), inc=False))


async def _save(
    s: AsyncSession,
    cal: Calendar,
    obj: CalendarObject,
    vcal: icalendar.Calendar,
    *,
    commit: bool = True,
) -> CalendarObject:
    parsed, data = _serialise(vcal)
    w = await service.store(s, cal, name=obj.name, parsed=parsed, data=data, if_match=obj.etag)
    if commit:
        await s.commit()
    return w.object


async def delete(
    s: AsyncSession,
    *,
    account_id: str,
    calendar_id: str,
    uid: str,
    scope: str = "all",
    occurrence: When | None = None,
    if_match: str | None = None,
) -> CalendarObject | None:
    """Delete an entry, one occurrence (an EXDATE) or an occurrence and those
    after it (the series ends before it). Commits."""
    cal, obj = await _entry(s, account_id, calendar_id, uid, write=True)
    if if_match is not None and if_match.strip('"') not in (obj.etag, "*"):
        raise service.precondition_failed()
    vcal = service.decode(obj)
    master = master_of(vcal)
    recurs = master is not None and any(p in master for p in ("RRULE", "RDATE"))
    if scope == "all" or not recurs:
        await service.remove(s, cal, obj.name, if_match=obj.etag)
        await s.commit()
        return None
    assert master is not None
    if occurrence is None:
        raise bad("calendar.invalid_occurrence", "Name the occurrence (its original start).")
    start = master.decoded("DTSTART")
    rid = _like(occurrence, start, cal)
    existing = [
        c for c in items(vcal) if "RECURRENCE-ID" in c and _same(c.decoded("RECURRENCE-ID"), rid)
    ]
    if not existing and not _find_instance(vcal, master, rid):
        raise occurrence_not_found()
    if scope == "this":
        vcal.subcomponents = [c for c in vcal.subcomponents if not any(c is e for e in existing)]
        xs = _dates(master, "EXDATE")
        master.pop("EXDATE", None)
        master.add("EXDATE", [*xs, rid])
        return await _save(s, cal, obj, vcal)
    if _same(rid, start):
        await service.remove(s, cal, obj.name, if_match=obj.etag)
        await s.commit()
        return None
    _split(vcal, master, rid)  # the part from rid on is dropped
    return await _save(s, cal, obj, vcal)


MAX_WINDOW = timedelta(days=400)


@dataclass(frozen=True)
class Found:
    calendar: Calendar
    object: CalendarObject
    occurrence: recurrence.Occurrence
    overridden: bool  # changed on its own (an override of the series)


async def occurrences(
    s: AsyncSession,
    *,
    account_id: str,
    start: datetime,
    end: datetime,
    calendar_id: str | None = None,
    time_zone: str | None = None,
) -> list[Found]:
    """Every occurrence in [start, end) of one calendar's entries (or of every
    calendar the account sees), floating times and dates read in ``time_zone``
    (else each calendar's), by start."""
    if end <= start:
        raise bad("calendar.invalid_window", "'to' comes after 'from'.")
    if end - start > MAX_WINDOW:
        raise bad("calendar.invalid_window", "At most 400 days at a time.")
    tz = _zone(time_zone, "UTC") if time_zone else None
    if calendar_id is not None:
        cal, _ = await service.calendar_for(s, account_id, calendar_id)
        cals = [cal]
    else:
        cals = [x.calendar for x in await service.calendars_for(s, account_id)]
    out: list[Found] = []
    for cal in cals:
        zone = tz or recurrence.zone(cal.time_zone) or UTC
        # the stored spans select the candidates; each is read and expanded once
        for obj in await service.objects_of(s, cal, start=start, end=end, exact=False):
            vcal = service.decode(obj)
            if any(recurrence.bounds(c) is None for c in items(vcal)):
                continue  # a to-do with no date has no occurrences (it is in /todos)
            overridden = {c.decoded("RECURRENCE-ID") for c in items(vcal) if "RECURRENCE-ID" in c}
            for o in recurrence.between(vcal, obj.component, start, end, zone):
                out.append(Found(cal, obj, o, o.rid is not None and o.rid in overridden))

    def key(f: Found) -> datetime:
        z = tz or recurrence.zone(f.calendar.time_zone) or UTC
        v = f.occurrence.start
        if not isinstance(v, datetime):
            return datetime(v.year, v.month, v.day, tzinfo=z)
        return v if v.tzinfo is not None else v.replace(tzinfo=z)

    out.sort(key=key)
    return out
