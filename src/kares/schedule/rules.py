"""The days of the common RRULE shapes, by arithmetic from the window.

dateutil's ``rrule`` walks a rule from its DTSTART one instance at a time
(about 9 µs each here), so a year of a family's rules costs it every instance
since each series began. For the few shapes a family calendar is made of, the
days an instance falls on are plain arithmetic on day numbers (proleptic
Gregorian ordinals, ``date.toordinal``), started at the window:

* ``DAILY`` (no BYxxx): every INTERVAL-th day;
* ``WEEKLY`` with BYDAY weekdays (no ordinals; DTSTART's weekday if none), weeks
  begun on WKST (Monday if none), every INTERVAL-th week;
* ``MONTHLY`` with BYMONTHDAY (negative counts from the month's end), or BYDAY
  (``TU``, ``2TU``, ``-1SU``: every, the nth, the nth from the end), or neither
  (DTSTART's day); a month without the day has no instance there;
* ``YEARLY`` (no BYxxx): DTSTART's month and day; a year without it (29
  February) has none;

each with COUNT or UNTIL or neither, an instance being the rule's time of day
on each such day. COUNT counts from DTSTART: for DAILY and WEEKLY the last
instance is computed; for MONTHLY and YEARLY the periods are walked from
DTSTART (a few hundred at most for any series a family keeps), counting.

``plan`` returns None for every other shape (any other BYxxx part, BYDAY
ordinals in a WEEKLY rule, COUNT with UNTIL, a DTSTART that is not itself an
instance, an UNTIL of another kind than DTSTART, values out of range): the
caller then leaves the rule to dateutil. Instances are wall-clock times with no
zone: attaching the zone is the caller's (tests/test_schedule_recurrence.py
proves the result equal to dateutil's and to recurring-ical-events').
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_BYDAY = re.compile(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
_ALLOWED = {
    "DAILY": {"FREQ", "INTERVAL", "COUNT", "UNTIL"},
    "WEEKLY": {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST"},
    "MONTHLY": {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "WKST"},
    "YEARLY": {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST"},
}


def weekday(day: int) -> int:
    """Monday 0 .. Sunday 6 of a day number (day 1, 1 January of year 1, was a Monday)."""
    return (day + 6) % 7


@dataclass(frozen=True, slots=True)
class Plan:
    """One rule read for ``days``: its frequency and INTERVAL, COUNT, the last
    day UNTIL lets an instance fall on, and what picks the days of a period."""

    freq: str
    interval: int
    count: int | None
    last: int | None
    start: int  # DTSTART's day number
    offsets: tuple[int, ...] = ()  # WEEKLY: the days after the week's start, sorted
    week_start: int = 0  # WEEKLY: the day number the first week begins on
    monthdays: tuple[int, ...] = ()  # MONTHLY by month day (negative: from the end)
    nweekdays: tuple[tuple[int, int], ...] = ()  # MONTHLY by weekday: (nth or 0, weekday)


def _one(v: Any) -> Any:
    return v[0] if isinstance(v, list) and len(v) == 1 else None if isinstance(v, list) else v


def _int(v: Any) -> int | None:
    v = _one(v)
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return int(v)


def plan(rule: Mapping[str, Any], first: datetime, *, all_day: bool) -> Plan | None:
    """The rule (an icalendar vRecur, its UNTIL already a wall-clock time or a
    date) read for ``days`` with DTSTART ``first`` (wall-clock, naive; midnight
    for a date), or None for a shape left to dateutil."""
    keys = {str(k).upper() for k in rule}
    freq = str(_one(rule.get("FREQ")) or "").upper()
    if freq not in _ALLOWED or not keys <= _ALLOWED[freq]:
        return None
    interval = _int(rule.get("INTERVAL", [1]))
    if interval is None or not 1 <= interval <= 1000:
        return None
    count: int | None = None
    if "COUNT" in keys:
        count = _int(rule["COUNT"])
        if count is None or count < 1 or "UNTIL" in keys:
            return None
    last: int | None = None
    if "UNTIL" in keys:
        until = _one(rule["UNTIL"])
        if all_day:
            if isinstance(until, datetime) or not isinstance(until, date):
                return None
            last = until.toordinal()
        else:
            if not isinstance(until, datetime) or until.tzinfo is not None:
                return None
            # an instance is in while its wall-clock time is not after UNTIL's
            last = until.toordinal() - (first.time() > until.time())
    wkst = 0
    if "WKST" in keys:
        w = WEEKDAYS.get(str(_one(rule["WKST"]) or "").upper())
        if w is None:
            return None
        wkst = w
    d0 = first.toordinal()
    byday: list[tuple[int, int]] = []
    for v in rule.get("BYDAY", []):
        m = _BYDAY.fullmatch(str(v).upper())
        if m is None:
            return None
        n = int(m.group(1)) if m.group(1) else 0
        if not -5 <= n <= 5:
            return None
        byday.append((n, WEEKDAYS[m.group(2)]))
    monthdays: list[int] = []
    for v in rule.get("BYMONTHDAY", []):
        if isinstance(v, bool) or not isinstance(v, int) or not (1 <= abs(v) <= 31):
            return None
        monthdays.append(int(v))
    if ("BYDAY" in keys and not byday) or ("BYMONTHDAY" in keys and not monthdays):
        return None
    p: Plan
    if freq == "DAILY":
        p = Plan(freq, interval, count, last, d0)
    elif freq == "WEEKLY":
        if any(n for n, _ in byday):
            return None  # an ordinal in a weekly rule: dateutil's reading, not ours
        wds = {w for _, w in byday} or {weekday(d0)}
        offsets = tuple(sorted((w - wkst) % 7 for w in wds))
        p = Plan(freq, interval, count, last, d0, offsets, d0 - (weekday(d0) - wkst) % 7)
    elif freq == "MONTHLY":
        if byday and monthdays:
            return None
        if len({n == 0 for n, _ in byday}) > 1:
            # "every Monday and the third Friday": dateutil (and so recurring-ical-
            # events) reads the two kinds as their intersection, not their union
            return None
        if not byday and not monthdays:
            monthdays = [first.day]
        p = Plan(
            freq,
            interval,
            count,
            last,
            d0,
            monthdays=tuple(sorted(set(monthdays))),
            nweekdays=tuple(sorted(set(byday))),
        )
    else:
        p = Plan(freq, interval, count, last, d0)
    # RFC 5545 counts DTSTART as the first instance even off the rule; dateutil
    # does not: such a series is not ours to expand
    if d0 not in days(p, d0, d0):
        return None
    return p


def _month(p: Plan, y: int, m: int) -> list[int]:
    """The month days (1-based, sorted) of a MONTHLY or YEARLY rule in one month."""
    first_wd, length = monthrange(y, m)
    if p.freq == "YEARLY":
        d = p.monthdays[0] if p.monthdays else date.fromordinal(p.start).day
        return [d] if d <= length else []
    if p.nweekdays:
        out: set[int] = set()
        for n, w in p.nweekdays:
            f = 1 + (w - first_wd) % 7  # the month's first such weekday
            if n == 0:
                out.update(range(f, length + 1, 7))
            elif n > 0:
                d = f + 7 * (n - 1)
                if d <= length:
                    out.add(d)
            else:
                d = f + 7 * ((length - f) // 7) + 7 * (n + 1)
                if d >= 1:
                    out.add(d)
        return sorted(out)
    got = {d if d > 0 else length + d + 1 for d in p.monthdays}
    return sorted(d for d in got if 1 <= d <= length)


def days(p: Plan, lo: int, hi: int) -> list[int]:
    """The day numbers in [lo, hi] (inclusive) the rule has an instance on, in order."""
    d0 = p.start
    if p.last is not None and p.last < hi:
        hi = p.last
    lo = max(lo, d0)
    if hi < lo:
        return []
    n = p.interval
    count = p.count
    if p.freq == "DAILY":
        if count is not None:
            hi = min(hi, d0 + (count - 1) * n)
        first = d0 + -(-(lo - d0) // n) * n
        return list(range(first, hi + 1, n))
    if p.freq == "WEEKLY":
        step = 7 * n
        ws0 = p.week_start
        offs = p.offsets
        if count is not None:
            head = [o for o in offs if ws0 + o >= d0]  # the first week's, from DTSTART on
            if count <= len(head):
                end = ws0 + head[count - 1]
            else:
                r = count - len(head) - 1
                end = ws0 + (1 + r // len(offs)) * step + offs[r % len(offs)]
            hi = min(hi, end)
        base = ws0 + (lo - ws0) // step * step
        out: list[int] = []
        while base <= hi:
            for o in offs:
                d = base + o
                if lo <= d <= hi:
                    out.append(d)
            base += step
        return out
    # MONTHLY and YEARLY: walk the periods (from the window, or from DTSTART to count)
    s = date.fromordinal(d0)
    step = n if p.freq == "MONTHLY" else 12 * n
    index = s.year * 12 + s.month - 1
    if count is None:
        w = date.fromordinal(lo)
        index += max(0, (w.year * 12 + w.month - 1 - index) // step) * step
    seen = 0
    out = []
    while True:
        y, m0 = divmod(index, 12)
        if y > 9999:
            break
        month_first = date(y, m0 + 1, 1).toordinal()
        if month_first > hi:
            break
        for md in _month(p, y, m0 + 1):
            d = month_first + md - 1
            if d < d0:
                continue
            if count is not None:
                seen += 1
                if seen > count:
                    return out
            if d > hi:
                return out
            if d >= lo:
                out.append(d)
        index += step
    return out
