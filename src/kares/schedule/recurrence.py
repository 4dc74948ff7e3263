"""Recurrence: when a calendar object's occurrences fall, with ``icalendar`` and
``recurring-ical-events`` (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides, time
zones and daylight-saving changes are theirs, never rules of our own).

``span_ms`` gives the UTC span every occurrence of a resource lies in (stored as
``range_start``/``range_end`` to prefilter time-range queries); ``between``
expands one resource over a window. Floating times and all-day dates are read
in a time zone only when shown; the stored span is widened by 14 hours on each
side for them, so the prefilter never drops one that a zone would bring in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

FLOAT_SLACK = timedelta(hours=14)  # the widest offset from UTC in use
SPAN_CAP = 5000  # occurrences read to find a bounded series' end; beyond: unbounded
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(t: datetime) -> int:
    return (t - EPOCH) // timedelta(milliseconds=1)


def _aware(value: date | datetime, tz: tzinfo) -> tuple[datetime, bool]:
    """The value as an aware datetime (a date at its midnight, floating read in
    ``tz``) and whether it was floating or a date."""
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=tz), True
    if value.tzinfo is None:
        return value.replace(tzinfo=tz), True
    return value, False


def bounds(c: icalendar.Component) -> tuple[date | datetime, date | datetime] | None:
    """The start and end of one (occurrence) component as written: DTSTART and
    DTEND, DUE or DURATION (a date lasts a day, a time an instant); for a VTODO
    with only DUE, the instant it is due. None for a VTODO with neither."""
    start = c.decoded("DTSTART") if "DTSTART" in c else None
    if start is None:
        if "DUE" in c:
            due = c.decoded("DUE")
            return due, due
        return None
    if "DTEND" in c:
        return start, c.decoded("DTEND")
    if "DUE" in c:
        return start, c.decoded("DUE")
    if "DURATION" in c:
        return start, start + c.decoded("DURATION")
    if not isinstance(start, datetime):
        return start, start + timedelta(days=1)
    return start, start


def _unbounded(c: icalendar.Component) -> bool:
    for rule in c.get("RRULE", []) if isinstance(c.get("RRULE"), list) else [c.get("RRULE")]:
        if rule is not None and "COUNT" not in rule and "UNTIL" not in rule:
            return True
    return False


def components_of(cal: icalendar.Calendar) -> list[icalendar.Component]:
    return [c for c in cal.subcomponents if c.name in ("VEVENT", "VTODO")]


def span_ms(cal: icalendar.Calendar, component: str) -> tuple[int | None, int | None]:
    """The UTC span (milliseconds since 1970) all occurrences of one resource lie
    in; None for an unbounded side (a rule with no end, a to-do with no date)."""
    items = components_of(cal)
    if any(bounds(c) is None for c in items):
        return None, None
    unbounded = any(_unbounded(c) for c in items)
    lo: int | None = None
    hi: int | None = None
    n = 0
    q = recurring_ical_events.of(cal, components=[component])
    for occ in q.all():
        b = bounds(occ)
        if b is None:
            return None, None
        s, floating_s = _aware(b[0], UTC)
        e, floating_e = _aware(b[1], UTC)
        s_ms = _ms(s - FLOAT_SLACK) if floating_s else _ms(s)
        e_ms = _ms(e + FLOAT_SLACK) if floating_e else _ms(e)
        lo = s_ms if lo is None else min(lo, s_ms)
        hi = e_ms if hi is None else max(hi, e_ms)
        n += 1
        if unbounded or n >= SPAN_CAP:
            # the first occurrence gives the start; overrides moved earlier too
            for c in items:
                if "RECURRENCE-ID" in c:
                    ob = bounds(c)
                    if ob is not None:
                        os_, fl = _aware(ob[0], UTC)
                        lo = min(lo, _ms(os_ - FLOAT_SLACK) if fl else _ms(os_))
            return lo, None
    return lo, hi


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a resource: its UID, its RECURRENCE-ID (the original
    start, as iCalendar text; None for a resource that does not recur), its
    start and end (dates for all-day, aware times otherwise, floating read in
    the asked zone) and the component (the override's, if one)."""

    uid: str
    recurrence_id: str | None
    start: date | datetime
    end: date | datetime
    all_day: bool
    component: icalendar.Component


def _text(v: Any) -> str:
    raw = v.to_ical()
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _rid(c: icalendar.Component, recurs: bool) -> str | None:
    if not recurs:
        return None
    if "RECURRENCE-ID" in c:
        return _text(c["RECURRENCE-ID"])
    return _text(c["DTSTART"]) if "DTSTART" in c else None


def between(
    cal: icalendar.Calendar,
    component: str,
    start: datetime,
    end: datetime,
    tz: tzinfo | None = None,
) -> list[Occurrence]:
    """The occurrences of one resource that overlap [start, end) (aware times),
    floating times and dates read in ``tz`` (UTC if None), in start order."""
    zone = tz or UTC
    items = components_of(cal)
    recurs = any(("RRULE" in c or "RDATE" in c or "RECURRENCE-ID" in c) for c in items)
    out: list[Occurrence] = []
    if any(bounds(c) is None for c in items):
        # a to-do with no date is in every range (RFC 4791 9.9)
        for c in items:
            out.append(Occurrence(str(c["UID"]), None, start, start, False, c))
        return out
    q = recurring_ical_events.of(cal, components=[component])
    # the window as aware times in the zone: floating times and dates are read in it
    lo = start.astimezone(zone)
    hi = end.astimezone(zone)
    for occ in q.between(lo, hi):
        b = bounds(occ)
        if b is None:
            continue
        s, _ = _aware(b[0], zone)
        e, _ = _aware(b[1], zone)
        if not (s < end and (e > start or (e == s and start <= s < end))):
            continue
        all_day = not isinstance(b[0], datetime)
        out.append(
            Occurrence(
                str(occ["UID"]),
                _rid(occ, recurs),
                b[0] if all_day else s,
                b[1] if all_day else e,
                all_day,
                occ,
            )
        )
    out.sort(key=lambda o: _aware(o.start, zone)[0])
    return out


def zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except Exception:
        return None


def expand_all(
    objects: Iterable[tuple[Any, icalendar.Calendar, str]],
    start: datetime,
    end: datetime,
    tz: tzinfo | None = None,
) -> list[tuple[Any, Occurrence]]:
    """Occurrences of several resources, each paired with its key, by start."""
    zone_ = tz or UTC
    out = [(key, o) for key, cal, comp in objects for o in between(cal, comp, start, end, tz)]
    out.sort(key=lambda p: _aware(p[1].start, zone_)[0])
    return out
