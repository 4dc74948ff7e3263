"""Benchmark: a year of a family's recurring events expanded (issue 16).

Run from the repository root:

    .venv/bin/python bench/bench_recurrence.py [--rules 200] [--reps 5] [--seed 16]

A family's calendar of ``--rules`` recurring entries, each one calendar object
resource as a phone would store it (icalendar text with its VTIMEZONE): daily
medicine, weekday school runs, weekly classes, fortnightly visits, monthly bills
(by month day and by "second Tuesday"), yearly birthdays, in Asia/Shanghai,
Europe/Berlin and America/New_York, all-day and floating ones too; each with
two to four EXDATEs and one or two moved occurrences (RECURRENCE-ID overrides).

Measured, best of ``--reps`` (absolute milliseconds), over the year 2027:

* ``kares``: ``kares.schedule.recurrence.between`` on each object, as the
  occurrences endpoint does (dateutil's rrule where proven equal, else
  recurring-ical-events), objects already read;
* ``kares+read``: the same with each object's text read by icalendar first (what
  a request that reads the objects from the database pays on top);
* ``reference``: recurring-ical-events' own expansion of the same objects,
  ``recurring_ical_events.of(calendar).between(...)`` per object.

It prints the ratio reference / kares, and checks (a sanity check, not a test)
that both found the same occurrences. Issue 16's target: under 50 ms.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from dateutil.rrule import rrulestr

from kares.schedule import recurrence

ZONES = ["Asia/Shanghai", "Asia/Shanghai", "Europe/Berlin", "America/New_York"]
# (share, rule, kind): what a family keeps repeating
MIX = [
    (8, "FREQ=DAILY", "timed"),
    (12, "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "timed"),
    (25, "FREQ=WEEKLY", "timed"),
    (10, "FREQ=WEEKLY;INTERVAL=2;BYDAY=SA", "timed"),
    (10, "FREQ=MONTHLY;BYMONTHDAY=1,15", "timed"),
    (10, "FREQ=MONTHLY;BYDAY=2TU", "floating"),
    (10, "FREQ=MONTHLY", "timed"),
    (15, "FREQ=YEARLY", "date"),
]


def family(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)  # noqa: S311  (a reproducible data set, no secret)
    kinds = [m for m in MIX for _ in range(m[0])]
    out = []
    for i in range(n):
        _, rule, kind = rng.choice(kinds)
        day = date(2026, 1, 1) + timedelta(days=rng.randrange(0, 365))
        # a phone puts DTSTART on the rule's first instance
        day = rrulestr(rule, dtstart=datetime(day.year, day.month, day.day))[0].date()
        if kind == "date":
            start: date | datetime = day
            end: date | datetime = day + timedelta(days=1)
        else:
            naive = datetime(day.year, day.month, day.day, rng.randrange(6, 21), 0)
            start = (
                naive if kind == "floating" else naive.replace(tzinfo=ZoneInfo(rng.choice(ZONES)))
            )
            end = start + timedelta(minutes=rng.choice([15, 30, 60, 90]))
        ev = icalendar.Event()
        uid = f"family-{i}@bench"
        ev.add("UID", uid)
        ev.add("DTSTAMP", datetime(2026, 12, 1, tzinfo=UTC))
        ev.add("SUMMARY", f"entry {i}")
        ev.add("DTSTART", start)
        ev.add("DTEND", end)
        ev.add("RRULE", icalendar.vRecur.from_ical(rule))
        cal = icalendar.Calendar()
        cal.add("PRODID", "-//bench//EN")
        cal.add("VERSION", "2.0")
        cal.add_component(ev)
        # exceptions and moved occurrences on instances of the rule
        occ = list(
            recurring_ical_events.of(cal).between(
                datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
            )
        )
        if len(occ) >= 4:
            picks = rng.sample(occ, k=min(len(occ), rng.randint(3, 6)))
            ex = picks[: max(1, len(picks) // 2 + 1) - 1] or picks[:1]
            ev.add("EXDATE", [o.decoded("DTSTART") for o in ex])
            for o in picks[len(ex) :][:2]:
                ov = icalendar.Event()
                ov.add("UID", uid)
                ov.add("DTSTAMP", datetime(2026, 12, 1, tzinfo=UTC))
                rid = o.decoded("DTSTART")
                ov.add("RECURRENCE-ID", rid)
                moved = rid + (
                    timedelta(days=1) if isinstance(rid, datetime) is False else timedelta(hours=2)
                )
                ov.add("DTSTART", moved)
                ov.add("DTEND", moved + (end - start))
                ov.add("SUMMARY", f"entry {i} (moved)")
                cal.add_component(ov)
        cal.add_missing_timezones()
        out.append(cal.to_ical())
    return out


def best(fn: Callable[[], int], reps: int) -> tuple[float, int]:
    times = []
    n = 0
    for _ in range(reps):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    texts = family(args.rules, args.seed)
    cals = [icalendar.Calendar.from_ical(t) for t in texts]
    start, end = datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
    tz = ZoneInfo("Asia/Shanghai")

    def kares() -> int:
        return sum(len(recurrence.between(c, "VEVENT", start, end, tz)) for c in cals)

    def kares_read() -> int:
        n = 0
        for t in texts:
            n += len(recurrence.between(icalendar.Calendar.from_ical(t), "VEVENT", start, end, tz))
        return n

    def reference() -> int:
        a, b = start.astimezone(tz), end.astimezone(tz)
        return sum(len(recurring_ical_events.of(c).between(a, b)) for c in cals)

    fast_objects = sum(
        recurrence.fast_between(c, "VEVENT", start, end, tz) is not None for c in cals
    )
    k_ms, k_n = best(kares, args.reps)
    kr_ms, kr_n = best(kares_read, args.reps)
    assert kr_n == k_n
    r_ms, r_n = best(reference, max(1, min(args.reps, 2)))
    print(
        f"family calendar: {args.rules} recurring entries, {sum(map(len, texts))} bytes of "
        f"iCalendar; {fast_objects} expanded by dateutil's rrule, the rest by "
        "recurring-ical-events"
    )
    print(
        f"occurrences in 2027: kares {k_n}, reference {r_n}"
        + ("" if k_n == r_n else "  <-- DIFFERENT")
    )
    print(f"kares       {k_ms:9.1f} ms  (best of {args.reps})")
    print(f"kares+read  {kr_ms:9.1f} ms  (icalendar reading each object's text first)")
    print(f"reference   {r_ms:9.1f} ms  (recurring-ical-events alone)")
    print(
        f"ratio reference / kares: {r_ms / k_ms:.1f}x; "
        f"target 50 ms: {'met' if k_ms < 50 else 'NOT met'} ({k_ms:.1f} ms)"
    )


if __name__ == "__main__":
    main()
