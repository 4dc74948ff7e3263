"""Benchmark: the fire times of a family's reminders over the materialised horizon.

Run from the repository root:

    .venv/bin/python bench/bench_reminders.py [--rules 200] [--reps 5]

A family's calendar of ``--rules`` recurring entries (daily, weekday, weekly,
monthly; Asia/Shanghai and Europe/Berlin), each with one or two VALARMs (minutes
before, related to the end, with a REPEAT) and every fifth asking to be
confirmed. Measured, best of ``--reps``, in milliseconds:

* ``kares``: ``kares.schedule.reminders.fires`` on every object for the two days
  of ``HORIZON`` (what one refill round of every object computes; a write
  computes it for one object);
* ``reference``: recurring-ical-events' own VALARM mode,
  ``recurring_ical_events.of(cal, components=["VALARM"]).between(...)``, on the
  same objects and window.

It prints both, the ratio reference / kares, and checks that both found the
same alarm times (a sanity check, not a test; confirmations are kares' alone).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from kares.schedule import reminders

ZONES = ("Asia/Shanghai", "Europe/Berlin")
RULES = ("FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "FREQ=WEEKLY", "FREQ=MONTHLY")
ALARMS = (
    ("TRIGGER:-PT10M",),
    ("TRIGGER:-PT30M", "TRIGGER;RELATED=END:PT0M"),
    ("TRIGGER:-PT1H\nREPEAT:2\nDURATION:PT15M",),
)


def entry(i: int) -> icalendar.Calendar:
    tz = ZONES[i % len(ZONES)]
    hour = 6 + i % 14
    alarms = "".join(
        f"BEGIN:VALARM\nACTION:DISPLAY\nDESCRIPTION:x\n{a}\nEND:VALARM\n"
        for a in ALARMS[i % len(ALARMS)]
    )
    confirm = "X-KARES-CONFIRM:PT30M\n" if i % 5 == 0 else ""
    text = (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//bench//EN\nBEGIN:VEVENT\n"
        f"UID:e{i}\nDTSTAMP:20260101T000000Z\nDTSTART;TZID={tz}:20260105T{hour:02d}{i % 60:02d}00\n"
        f"DURATION:PT45M\nRRULE:{RULES[i % len(RULES)]}\nSUMMARY:Entry {i}\n{confirm}{alarms}"
        "END:VEVENT\nEND:VCALENDAR\n"
    )
    return icalendar.Calendar.from_ical(text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=int, default=200)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    cals = [entry(i) for i in range(a.rules)]
    lo = datetime(2027, 3, 27, tzinfo=UTC)  # across Europe's change to summer time
    hi = lo + reminders.HORIZON
    utc = ZoneInfo("UTC")

    def ours() -> list[set[datetime]]:
        return [
            {f.fire_at for f in reminders.fires(c, tz=utc, lo=lo, hi=hi) if f.kind == "alarm"}
            for c in cals
        ]

    def reference() -> list[set[datetime]]:
        out = []
        for c in cals:
            got = set()
            for comp in recurring_ical_events.of(c, components=["VALARM"]).between(lo, hi):
                for alarm in comp.walk("VALARM"):
                    t = alarm.decoded("TRIGGER")
                    got.add(t.astimezone(UTC))
            out.append({t for t in got if lo <= t < hi})
        return out

    def best(fn: object) -> tuple[float, list[set[datetime]]]:
        times, result = [], []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            result = fn()  # type: ignore[operator]
            times.append((time.perf_counter() - t0) * 1000)
        return min(times), result

    k_ms, k = best(ours)
    r_ms, r = best(reference)
    n = sum(len(x) for x in k)
    print(f"objects: {a.rules}, window: {lo:%Y-%m-%d} + {reminders.HORIZON}, alarm fires: {n}")
    print(f"kares:     {k_ms:8.1f} ms")
    print(f"reference: {r_ms:8.1f} ms")
    print(f"ratio reference/kares: {r_ms / k_ms:.2f}")
    print("same alarm times:", k == r)


if __name__ == "__main__":
    main()
