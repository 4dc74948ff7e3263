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
  occurrences endpoint does (the common rule shapes by arithmetic from the
  window, ``kares.schedule.rules``; other proven shapes by dateutil's rrule;
  anything else by recurring-ical-events), objects already read (parsed by
  icalendar), nothing else kept between runs: no cache of rules or expansions;
* ``kares, dateutil walk``: the same with the arithmetic turned off (every rule
  walked by dateutil from its DTSTART: what ``kares`` measured before);
* ``kares+read``: the same with each object's text read by icalendar first (what
  a request that reads the objects from the database pays on top);
* ``reference``: recurring-ical-events' own expansion of the same objects,
  ``recurring_ical_events.of(calendar).between(...)`` per object.

Each line gives the wall time of the best run and the CPU time
(``time.process_time``) of that run: on a shared machine the CPU time shows
what other jobs took from the wall time. It prints the ratio reference / kares,
and checks (a sanity check, not a test) that all found the same occurrences.
Issue 16's target: ``kares`` under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from dateutil.rrule import rrulestr

from kares.schedule import recurrence
from kares.schedule import rules as shapes

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


def _seen(got: list[recurrence.Occurrence]) -> list[tuple[object, ...]]:
    def at(v: date | datetime) -> object:
        return v.astimezone(UTC) if isinstance(v, datetime) else v

    return sorted(
        (o.uid, str(at(o.start)), str(at(o.end)), str(o.component.get("SUMMARY"))) for o in got
    )


def best(fn: Callable[[], int], reps: int) -> tuple[float, float, int]:
    """The wall time of the fastest of ``reps`` runs and that run's CPU time
    (milliseconds), and what it returned."""
    times = []
    n = 0
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        n = fn()
        times.append((time.perf_counter() - t, time.process_time() - c))
    wall, cpu = min(times)
    return wall * 1000, cpu * 1000, n


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

    def walked() -> int:
        n = 0
        for c in cals:
            got = recurrence.fast_between(c, "VEVENT", start, end, tz, arithmetic=False)
            n += len(got if got is not None else recurrence.between(c, "VEVENT", start, end, tz))
        return n

    def reference() -> int:
        a, b = start.astimezone(tz), end.astimezone(tz)
        return sum(len(recurring_ical_events.of(c).between(a, b)) for c in cals)

    # which way each object goes (a spy on the arithmetic's reading of the rule)
    plans: list[object] = []
    plan = shapes.plan

    def spy(*a: Any, **kw: Any) -> Any:
        plans.append(plan(*a, **kw))
        return plans[-1]

    arithmetic = fast_objects = 0
    with mock.patch.object(shapes, "plan", spy):
        for c in cals:
            plans.clear()
            fast = recurrence.fast_between(c, "VEVENT", start, end, tz)
            fast_objects += fast is not None
            arithmetic += fast is not None and any(p is not None for p in plans)
    k_ms, k_cpu, k_n = best(kares, args.reps)
    kr_ms, kr_cpu, kr_n = best(kares_read, args.reps)
    assert kr_n == k_n
    w_ms, w_cpu, w_n = best(walked, args.reps)
    r_ms, r_cpu, r_n = best(reference, max(1, min(args.reps, 2)))
    print(
        f"family calendar: {args.rules} recurring entries, {sum(map(len, texts))} bytes of "
        f"iCalendar; {arithmetic} expanded by arithmetic, {fast_objects - arithmetic} by "
        f"dateutil's rrule, {len(cals) - fast_objects} by recurring-ical-events"
    )
    # not only as many: the same occurrences (UID, start, end, summary) as the reference
    differ = sum(
        _seen(recurrence.between(c, "VEVENT", start, end, tz))
        != _seen(recurrence.reference_between(c, "VEVENT", start, end, tz))
        for c in cals
    )
    same = k_n == r_n == w_n and not differ
    print(
        f"occurrences in 2027: kares {k_n}, dateutil walk {w_n}, reference {r_n}; "
        f"objects whose occurrences differ from the reference's: {differ}"
        + ("" if same else "  <-- DIFFERENT")
    )
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'':22}{'wall ms':>9}{'CPU ms':>9}")
    print(f"kares                 {k_ms:9.1f}{k_cpu:9.1f}  (best of {args.reps}; cold: no cache)")
    print(f"kares+read            {kr_ms:9.1f}{kr_cpu:9.1f}  (icalendar reading each text first)")
    print(f"kares, dateutil walk  {w_ms:9.1f}{w_cpu:9.1f}  (the arithmetic turned off)")
    print(f"reference             {r_ms:9.1f}{r_cpu:9.1f}  (recurring-ical-events alone)")
    print(
        f"ratio reference / kares: {r_ms / k_ms:.1f}x (dateutil walk / kares: {w_ms / k_ms:.1f}x); "
        f"target 50 ms: {'met' if k_ms < 50 else 'NOT met'} ({k_ms:.1f} ms)"
    )


if __name__ == "__main__":
    main()
