"""Recurrence: when a calendar object's occurrences fall, with ``icalendar`` and
``recurring-ical-events`` (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides, time
zones and daylight-saving changes: what a rule means is their reading of it).
``between`` takes a faster way for the shapes a property test proves equal to
it (tests/test_schedule_recurrence.py): the common rules by arithmetic from the
window (``kares.schedule.rules``), other proven ones by dateutil's rrule.

``span_ms`` gives the UTC span every occurrence of a resource lies in (stored as
``range_start``/``range_end`` to prefilter time-range queries); ``between``
expands one resource over a window. Floating times and all-day dates are read
in a time zone only when shown; the stored span is widened by 14 hours on each
side for them, so the prefilter never drops one that a zone would bring in.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from dateutil import rrule as du_rrule

from kares.schedule import rules as shapes

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


def _rules(c: icalendar.Component) -> list[Any]:
    r = c.get("RRULE")
    return r if isinstance(r, list) else [] if r is None else [r]


def _until_only(c: icalendar.Component) -> bool:
    """A rule ended by UNTIL alone: its span is read from UNTIL, not expanded."""
    return any("UNTIL" in rule and "COUNT" not in rule for rule in _rules(c))


def _edge(value: date | datetime, *, late: bool) -> int:
    t, floating = _aware(value, UTC)
    if floating:
        t = t + FLOAT_SLACK if late else t - FLOAT_SLACK
    return _ms(t)


def _written_span(
    items: list[icalendar.Component], *, open_end: bool
) -> tuple[int | None, int | None]:
    """The span of a resource read from what it says, not from its occurrences:
    from the earliest DTSTART, RDATE or moved occurrence, to no end (``open_end``)
    or to the latest UNTIL, RDATE or override end plus the longest duration.
    Wider than the occurrences (an EXDATE'd first start still counts), never
    narrower: a prefilter for time ranges."""
    lo: int | None = None
    hi: int | None = None
    for c in items:
        b = bounds(c)
        assert b is not None  # checked by the caller
        starts: list[date | datetime] = [b[0]]
        ends: list[date | datetime] = [b[1]]
        length = _as_delta(b)
        rdates = c.get("RDATE")
        for rd in rdates if isinstance(rdates, list) else [rdates] if rdates is not None else []:
            for d in getattr(rd, "dts", []):
                v = d.dt
                if isinstance(v, tuple):  # a PERIOD: (start, end or duration)
                    v = v[0]
                starts.append(v)
                ends.append(v + length)
        for rule in _rules(c):
            for until in rule.get("UNTIL", []):
                if not isinstance(until, datetime):  # a date: that whole day may hold one
                    until = until + timedelta(days=1)
                ends.append(until + length)
        for v in starts:
            e = _edge(v, late=False)
            lo = e if lo is None else min(lo, e)
        for v in ends:
            e = _edge(v, late=True)
            hi = e if hi is None else max(hi, e)
    if open_end or hi is None:
        return lo, None
    return lo, hi


def _as_delta(b: tuple[date | datetime, date | datetime]) -> timedelta:
    start, end = b
    if isinstance(start, datetime) != isinstance(end, datetime):
        return timedelta(days=1)
    try:
        return max(timedelta(0), end - start)  # type: ignore[operator]
    except TypeError:  # one aware, one floating
        return timedelta(days=1)


def components_of(cal: icalendar.Calendar) -> list[icalendar.Component]:
    return [c for c in cal.subcomponents if c.name in ("VEVENT", "VTODO")]


def span_ms(cal: icalendar.Calendar, component: str) -> tuple[int | None, int | None]:
    """The UTC span (milliseconds since 1970) all occurrences of one resource lie
    in; None for an unbounded side (a rule with no end, a to-do with no date)."""
    items = components_of(cal)
    if any(bounds(c) is None for c in items):
        return None, None
    unbounded = any(_unbounded(c) for c in items)
    if unbounded or any(_until_only(c) for c in items):
        # no expansion: recurring-ical-events reads a rule with no end, or an
        # UNTIL far off, ahead of its first answer (seconds for an hourly rule)
        return _written_span(items, open_end=unbounded)
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


class Occurrence(NamedTuple):
    """One occurrence of a resource: its UID, its RECURRENCE-ID value (the
    original start; None for a resource that does not recur), its start and end
    (dates for all-day, aware times otherwise, floating read in the asked zone)
    and the component it comes from (the override's, if one; else the master).

    Immutable, read by its field names; a named tuple because a year of a
    family's calendar makes some 15,000 of them per request."""

    uid: str
    rid: date | datetime | None
    start: date | datetime
    end: date | datetime
    all_day: bool
    component: icalendar.Component

    @property
    def recurrence_id(self) -> str | None:
        """The RECURRENCE-ID as iCalendar text (``20261207T080000``)."""
        if self.rid is None:
            return None
        return _text(icalendar.vDDDTypes(self.rid))


def _text(v: Any) -> str:
    raw = v.to_ical()
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _rid(c: icalendar.Component, recurs: bool) -> date | datetime | None:
    if not recurs:
        return None
    if "RECURRENCE-ID" in c:
        return c.decoded("RECURRENCE-ID")
    return c.decoded("DTSTART") if "DTSTART" in c else None


def overlaps(s: datetime, e: datetime, start: datetime, end: datetime) -> bool:
    """RFC 4791 9.9: an occurrence [s, e) meets the window [start, end); one of
    no length meets it when it starts inside."""
    return s < end and (e > start or (e == s and start <= s < end))


def between(
    cal: icalendar.Calendar,
    component: str,
    start: datetime,
    end: datetime,
    tz: tzinfo | None = None,
) -> list[Occurrence]:
    """The occurrences of one resource that overlap [start, end) (aware times),
    floating times and dates read in ``tz`` (UTC if None), in start order.

    The resource is expanded by ``fast_between`` where it is of the shapes that
    path is proven equal to recurring-ical-events on
    (tests/test_schedule_recurrence.py); anything else by recurring-ical-events."""
    zone_ = tz or UTC
    got = fast_between(cal, component, start, end, zone_)
    if got is None:
        got = reference_between(cal, component, start, end, zone_)
        got.sort(key=_start_key(zone_))
    return got


def _start_key(zone_: tzinfo) -> Callable[[Occurrence], datetime]:
    """The order of ``between``: by start, floating times and dates read in ``zone_``."""

    def key(o: Occurrence) -> datetime:
        return _aware(o.start, zone_)[0]

    return key


class _NotFast(Exception):
    """The resource has a shape the fast path does not take."""


def _local(v: date | datetime, z: tzinfo | None) -> datetime:
    """An instance key: wall-clock time in the series' zone, naive (a date at
    its midnight; an aware value moved into ``z`` first)."""
    if not isinstance(v, datetime):
        return datetime(v.year, v.month, v.day)
    if v.tzinfo is None:
        if z is not None:
            raise _NotFast
        return v
    if z is None:
        raise _NotFast
    return v.astimezone(z).replace(tzinfo=None)


def fast_between(
    cal: icalendar.Calendar,
    component: str,
    start: datetime,
    end: datetime,
    zone_: tzinfo,
    *,
    arithmetic: bool = True,
) -> list[Occurrence] | None:
    """``between`` (in its order) for one master with at most one RRULE whose
    DTSTART is a date, a floating time or a time in an IANA zone (or UTC), with
    EXDATE, RDATE (dates and times) and RECURRENCE-ID overrides; None for any
    other shape. The rule's instances are days worked out by ``rules`` (the
    common shapes; ``arithmetic=False`` turns it off, for the tests) or else
    walked by dateutil's rrule, read from icalendar's vRecur."""
    try:
        return _fast(cal, component, start, end, zone_, arithmetic)
    except _NotFast:
        return None


_new = tuple.__new__  # an Occurrence from its fields, without NamedTuple's __new__


def _fast(
    cal: icalendar.Calendar,
    component: str,
    start: datetime,
    end: datetime,
    zone_: tzinfo,
    arithmetic: bool,
) -> list[Occurrence]:
    items = components_of(cal)
    masters = [c for c in items if "RECURRENCE-ID" not in c]
    if len(masters) != 1 or "DTSTART" not in masters[0] or "EXRULE" in masters[0]:
        raise _NotFast
    m = masters[0]
    b = bounds(m)
    if b is None:
        raise _NotFast
    first, last = b
    timed = isinstance(first, datetime)
    # the series' zone: an IANA zone (or UTC) of DTSTART, None for floating and dates
    z: tzinfo | None = None
    if isinstance(first, datetime) and first.tzinfo is not None:
        z = first.tzinfo
        if not (isinstance(z, ZoneInfo) or z is UTC or getattr(z, "key", None)):
            raise _NotFast
    if isinstance(last, datetime) != timed or (
        isinstance(last, datetime) and (last.tzinfo is None) != (z is None)
    ):
        raise _NotFast
    length: timedelta = last - first  # type: ignore[operator]
    rules = m.get("RRULE")
    if isinstance(rules, list):
        if len(rules) > 1:
            raise _NotFast
        rules = rules[0] if rules else None
    recurs = rules is not None or "RDATE" in m or len(items) > 1
    s0 = _local(first, z)
    # the window in the series' wall-clock time, a day wider each side (any offset)
    wz = z or zone_
    start_w, end_w = start.astimezone(wz), end.astimezone(wz)
    lo = start_w.replace(tzinfo=None) - timedelta(days=1) - length
    hi = end_w.replace(tzinfo=None) + timedelta(days=1)
    keys: set[datetime] = set()  # instances as wall-clock times: dateutil's, RDATEs
    days: list[int] = []  # the rule's instances by arithmetic: day numbers, at s0's time
    if rules is not None:
        rule = icalendar.vRecur(dict(rules))
        if "UNTIL" in rule:
            until = rule["UNTIL"][0] if isinstance(rule["UNTIL"], list) else rule["UNTIL"]
            if isinstance(until, datetime) and until.tzinfo is not None and z is None:
                raise _NotFast  # a floating or all-day start with a UTC UNTIL
            rule["UNTIL"] = [_local(until, z) if isinstance(until, datetime) else until]
        p = (
            shapes.plan(rule, s0, all_day=not timed)
            if arithmetic and length >= timedelta(0)
            else None
        )
        if p is not None:
            days = shapes.days(p, lo.toordinal(), hi.toordinal())
        else:
            try:
                r = du_rrule.rrulestr(_text(rule), dtstart=s0)
            except Exception:
                raise _NotFast from None
            if not isinstance(r, du_rrule.rrule):
                raise _NotFast
            head = next(iter(r), None)
            if head != s0:
                raise _NotFast  # DTSTART off the rule: RFC 5545 counts it, dateutil not
            keys.update(r.between(lo, hi, inc=True))
    else:
        if lo <= s0 <= hi:
            keys.add(s0)
    for rd in _dates_of(m, "RDATE"):
        k = _local(rd, z)
        if isinstance(rd, datetime) != timed:
            raise _NotFast
        if lo <= k <= hi:
            keys.add(k)
    excluded: set[datetime] = set()
    for x in _dates_of(m, "EXDATE"):
        if isinstance(x, datetime) != timed:
            raise _NotFast
        excluded.add(_local(x, z))
    keys -= excluded
    # an override replaces its instance; one of an excluded instance is excluded with it
    overrides: list[tuple[icalendar.Component, date | datetime]] = []
    replaced: set[datetime] = set()
    for c in items:
        if "RECURRENCE-ID" not in c:
            continue
        rid = c.decoded("RECURRENCE-ID")
        if isinstance(rid, datetime) != timed:
            if _local(rid, z) in excluded:
                continue
            raise _NotFast
        k = _local(rid, z)
        if k in excluded:
            continue
        overrides.append((c, rid))
        replaced.add(k)
    keys -= replaced
    if days:
        t0 = s0.time()
        gone = {k.toordinal() for k in excluded | replaced if k.time() == t0}
        if gone:
            days = [d for d in days if d not in gone]
        if keys:  # an RDATE on an instance of the rule is that instance
            on_rule = set(days)
            keys = {k for k in keys if k.time() != t0 or k.toordinal() not in on_rule}
    uid = str(m["UID"])
    out: list[Occurrence] = []
    if days:
        out = _instances(days, s0, timed, length, z, zone_, uid, m, start, end, start_w, end_w)
    extras: list[Occurrence] = []
    for k in keys:
        if timed:
            sv: date | datetime = k.replace(tzinfo=z) if z is not None else k
        else:
            sv = k.date()
        ev = sv + length
        s_, _ = _aware(sv, zone_)
        e_, _ = _aware(ev, zone_)
        if not overlaps(s_, e_, start, end):
            continue
        if timed:
            extras.append(Occurrence(uid, sv if recurs else None, s_, e_, False, m))
        else:
            extras.append(Occurrence(uid, sv if recurs else None, sv, ev, True, m))
    for o, rid in overrides:
        ob = bounds(o)
        if ob is None:
            raise _NotFast
        s_, _ = _aware(ob[0], zone_)
        e_, _ = _aware(ob[1], zone_)
        if not overlaps(s_, e_, start, end):
            continue
        all_day = not isinstance(ob[0], datetime)
        extras.append(
            Occurrence(uid, rid, ob[0] if all_day else s_, ob[1] if all_day else e_, all_day, o)
        )
    key = _start_key(zone_)
    if not out:
        extras.sort(key=key)
        return extras
    # the rule's instances are in start order already (one wall-clock time a
    # day, in one zone): the few others go in where they belong, after equals
    for extra in extras:
        insort(out, extra, key=key)
    return out


def _instances(
    days: list[int],
    s0: datetime,
    timed: bool,
    length: timedelta,
    z: tzinfo | None,
    zone_: tzinfo,
    uid: str,
    m: icalendar.Component,
    start: datetime,
    end: datetime,
    start_w: datetime,
    end_w: datetime,
) -> list[Occurrence]:
    """The occurrences of the rule's instances on ``days`` (day numbers, in
    order) at the time of day of ``s0``, in the series' zone ``z`` (floating
    times and dates: in ``zone_``) exactly as ``Occurrence`` holds them
    elsewhere (a time in a spring-forward gap keeps the offset before it, one in
    the repeated hour takes the first: zoneinfo's reading at fold 0, as RFC 5545
    says), those meeting [start, end). ``start_w`` and ``end_w`` are the window
    in the series' wall-clock time: a day two or more after its first and two or
    more before its last meets it whatever the offsets (no change of offset is a
    day or more), so only the days nearer the edges are compared as instants."""
    fo = date.fromordinal
    comb = datetime.combine
    cls = Occurrence
    lo_i = bisect_left(days, start_w.toordinal() + 2)
    hi_i = max(lo_i, bisect_right(days, end_w.toordinal() - 2))
    inner, edges = days[lo_i:hi_i], days[:lo_i] + days[hi_i:]
    made: list[Occurrence]
    if not timed:
        midnight = time(tzinfo=zone_)
        made = [_new(cls, (uid, d, d, d + length, True, m)) for d in map(fo, edges + inner)]
        ends = [
            overlaps(comb(o.start, midnight), comb(o.end, midnight), start, end)
            for o in made[: len(edges)]
        ]
    elif z is not None:
        tz_ = s0.time().replace(tzinfo=z)
        made = [
            _new(cls, (uid, s, s, s + length, False, m))
            for s in [comb(fo(d), tz_) for d in edges + inner]
        ]
        ends = [overlaps(o.start, o.end, start, end) for o in made[: len(edges)]]  # type: ignore[arg-type]
    else:
        t0 = s0.time()
        tf = t0.replace(tzinfo=zone_)
        made = []
        for dt in map(fo, edges + inner):
            s = comb(dt, tf)
            made.append(_new(cls, (uid, comb(dt, t0), s, s + length, False, m)))
        ends = [overlaps(o.start, o.end, start, end) for o in made[: len(edges)]]  # type: ignore[arg-type]
    head = [o for o, ok in zip(made[:lo_i], ends[:lo_i], strict=True) if ok]
    tail = [o for o, ok in zip(made[lo_i : len(edges)], ends[lo_i:], strict=True) if ok]
    return head + made[len(edges) :] + tail


def _dates_of(c: icalendar.Component, prop: str) -> list[date | datetime]:
    v = c.get(prop)
    if v is None:
        return []
    out: list[date | datetime] = []
    for p in v if isinstance(v, list) else [v]:
        for d in p.dts:
            if isinstance(d.dt, tuple | timedelta):
                raise _NotFast  # a PERIOD
            out.append(d.dt)
    return out


def reference_between(
    cal: icalendar.Calendar, component: str, start: datetime, end: datetime, zone_: tzinfo
) -> list[Occurrence]:
    """``between`` by recurring-ical-events alone (the reference)."""
    items = components_of(cal)
    recurs = any(("RRULE" in c or "RDATE" in c or "RECURRENCE-ID" in c) for c in items)
    out: list[Occurrence] = []
    if any(bounds(c) is None for c in items):
        # a to-do with no date is in every range (RFC 4791 9.9)
        for c in items:
            out.append(Occurrence(str(c["UID"]), None, start, start, False, c))
        return out
    q = recurring_ical_events.of(cal, components=[component])
    # the window as aware times in the zone (floating times and dates are read in
    # it), a day wider each side: recurring-ical-events compares wall-clock times
    # at its edges, so a start in a spring-forward gap (02:00 in Berlin on the
    # day the clocks skip to 03:00, 01:00 UTC) is not in a window from 01:00 UTC;
    # which occurrences meet the window is decided below, by the instants
    wide = timedelta(days=1)
    for occ in q.between((start - wide).astimezone(zone_), (end + wide).astimezone(zone_)):
        b = bounds(occ)
        if b is None:
            continue
        s, _ = _aware(b[0], zone_)
        e, _ = _aware(b[1], zone_)
        if not overlaps(s, e, start, end):
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
