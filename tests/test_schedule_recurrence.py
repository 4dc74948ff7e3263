"""Recurrence expansion (issue 16, "Done means"): on random rules the fast path
(dateutil's rrule read from icalendar's vRecur) gives exactly the occurrences
recurring-ical-events gives, and the stored span (``span_ms``) holds every
occurrence, so the time-range prefilter never drops one. Rules: DAILY, WEEKLY,
MONTHLY, YEARLY with INTERVAL, BYDAY, BYMONTHDAY, COUNT or UNTIL; EXDATE, RDATE
and overrides; starts floating, in UTC, in a zone with daylight saving (Europe/
Berlin, America/New_York) and all-day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kares.schedule import recurrence

pytestmark = pytest.mark.db_agnostic

ZONES = ["Europe/Berlin", "America/New_York", "UTC", "floating", "date"]
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


@st.composite
def series(draw: Any) -> icalendar.Calendar:
    kind = draw(st.sampled_from(ZONES))
    day = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 400)))
    # around the DST changes too: hours 0-23, minutes on the quarter
    hour, minute = draw(st.integers(0, 23)), draw(st.sampled_from([0, 15, 30, 45]))
    naive = datetime(day.year, day.month, day.day, hour, minute)
    start: date | datetime
    if kind == "date":
        start = day
    elif kind == "floating":
        start = naive
    elif kind == "UTC":
        start = naive.replace(tzinfo=UTC)
    else:
        start = naive.replace(tzinfo=ZoneInfo(kind))
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]))
    parts = [f"FREQ={freq}"]
    interval = draw(st.integers(1, 3))
    if interval > 1:
        parts.append(f"INTERVAL={interval}")
    if freq == "WEEKLY" and draw(st.booleans()):
        parts.append("BYDAY=" + ",".join(draw(st.sets(st.sampled_from(DAYS), min_size=1))))
    if freq == "MONTHLY":
        how = draw(st.sampled_from(["none", "bymonthday", "byday"]))
        if how == "bymonthday":
            days = draw(st.sets(st.integers(1, 31) | st.integers(-3, -1), min_size=1, max_size=3))
            parts.append("BYMONTHDAY=" + ",".join(map(str, sorted(days))))
        elif how == "byday":
            n = draw(st.sampled_from(["1", "2", "-1", ""]))
            parts.append(f"BYDAY={n}{draw(st.sampled_from(DAYS))}")
    end_kind = draw(st.sampled_from(["count", "until", "none"]))
    if end_kind == "count":
        parts.append(f"COUNT={draw(st.integers(1, 40))}")
    elif end_kind == "until":
        u = day + timedelta(days=draw(st.integers(0, 300)))
        if kind == "date":
            parts.append(f"UNTIL={u.strftime('%Y%m%d')}")
        elif kind == "floating":
            parts.append(f"UNTIL={u.strftime('%Y%m%d')}T120000")
        else:
            parts.append(f"UNTIL={u.strftime('%Y%m%d')}T120000Z")
    ev = icalendar.Event()
    ev.add("UID", "series@test")
    ev.add("DTSTART", start)
    if kind == "date":
        ev.add("DTEND", start + timedelta(days=draw(st.integers(1, 3))))
    else:
        ev.add("DTEND", start + timedelta(minutes=draw(st.sampled_from([0, 30, 90, 600]))))
    ev.add("RRULE", icalendar.vRecur.from_ical(";".join(parts)))

    # exceptions, extra dates and overrides on instants the rule may or may not make
    def shifted(days: int) -> date | datetime:
        return start + timedelta(days=days)

    offsets = st.integers(1, 120)
    ex = draw(st.lists(offsets, max_size=4, unique=True))
    if ex:
        ev.add("EXDATE", [shifted(d) for d in ex])
    rd = draw(st.lists(offsets, max_size=3, unique=True))
    if rd:
        ev.add("RDATE", [shifted(d) for d in rd])
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//test//EN")
    cal.add("VERSION", "2.0")
    cal.add_component(ev)
    for d in draw(st.lists(st.sampled_from([0, 1, 2, 7, 14, 30, 31]), max_size=2, unique=True)):
        o = icalendar.Event()
        o.add("UID", "series@test")
        o.add("RECURRENCE-ID", shifted(d))
        moved = shifted(d) + timedelta(days=draw(st.integers(-3, 3)))
        o.add("DTSTART", moved)
        o.add("DTEND", moved + (timedelta(days=1) if kind == "date" else timedelta(hours=1)))
        o.add("SUMMARY", "moved")
        cal.add_component(o)
    cal.add_missing_timezones()
    # what a client sends is text: read it back as the server does
    return icalendar.Calendar.from_ical(cal.to_ical())


def key(o: recurrence.Occurrence) -> tuple[Any, ...]:
    def norm(v: date | datetime) -> Any:
        return v.astimezone(UTC) if isinstance(v, datetime) else v

    return (norm(o.start), norm(o.end), o.all_day, str(o.component.get("SUMMARY", "")))


windows = st.tuples(
    st.integers(-30, 500).map(lambda d: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=d)),
    st.integers(1, 400).map(lambda d: timedelta(days=d) / 1),
    st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cal=series(), window=windows)
def test_the_fast_path_equals_recurring_ical_events(
    cal: icalendar.Calendar, window: tuple[datetime, timedelta, str]
) -> None:
    start, length, zname = window
    end = start + length
    z = ZoneInfo(zname)
    fast = recurrence.fast_between(cal, "VEVENT", start, end, z)
    ref = recurrence.reference_between(cal, "VEVENT", start, end, z)
    if fast is None:
        return  # a shape the fast path leaves to the reference
    assert sorted(map(key, fast)) == sorted(map(key, ref)), cal.to_ical().decode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cal=series())
def test_the_stored_span_holds_every_occurrence(cal: icalendar.Calendar) -> None:
    lo, hi = recurrence.span_ms(cal, "VEVENT")
    assert lo is not None
    start = datetime(2025, 6, 1, tzinfo=UTC)
    for o in recurrence.reference_between(cal, "VEVENT", start, start + timedelta(days=1000), UTC):
        s = (
            o.start
            if isinstance(o.start, datetime)
            else datetime.combine(o.start, datetime.min.time(), UTC)
        )
        e = (
            o.end
            if isinstance(o.end, datetime)
            else datetime.combine(o.end, datetime.min.time(), UTC)
        )
        assert recurrence._ms(s) >= lo - recurrence.FLOAT_SLACK // timedelta(milliseconds=1) * 2
        if hi is not None:
            assert recurrence._ms(e) <= hi + recurrence.FLOAT_SLACK // timedelta(milliseconds=1) * 2


def test_the_fast_path_takes_the_common_shapes() -> None:
    """The property test above is not vacuous: zoned, floating, UTC and all-day
    weekly series with exceptions go the fast way."""
    for start in (
        datetime(2026, 3, 20, 8, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(2026, 3, 20, 8),
        datetime(2026, 3, 20, 8, tzinfo=UTC),
        date(2026, 3, 20),
    ):
        ev = icalendar.Event()
        ev.add("UID", "u")
        ev.add("DTSTART", start)
        ev.add("RRULE", icalendar.vRecur.from_ical("FREQ=WEEKLY;COUNT=5"))
        ev.add("EXDATE", [start + timedelta(days=7)])
        cal = icalendar.Calendar()
        cal.add_component(ev)
        got = recurrence.fast_between(
            cal, "VEVENT", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), UTC
        )
        assert got is not None and len(got) == 4, start


def test_berlin_morning_medicine_across_both_changes() -> None:
    """08:00 in Berlin stays 08:00 through the spring and autumn changes: 07:00
    UTC in winter, 06:00 UTC in summer."""
    ev = icalendar.Event()
    ev.add("UID", "med")
    ev.add("DTSTART", datetime(2026, 3, 27, 8, tzinfo=ZoneInfo("Europe/Berlin")))
    ev.add("RRULE", icalendar.vRecur.from_ical("FREQ=DAILY;UNTIL=20261027T235959Z"))
    cal = icalendar.Calendar()
    cal.add_component(ev)
    z = ZoneInfo("Europe/Berlin")
    got = recurrence.between(
        cal, "VEVENT", datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 28, tzinfo=UTC), z
    )
    utc_hours = [o.start.astimezone(UTC).hour for o in got]  # type: ignore[union-attr]
    assert utc_hours[:2] == [7, 7] and utc_hours[2] == 6  # 29 March: summer time
    assert utc_hours[-4:] == [6, 7, 7, 7]  # 25 October: back to winter time
    assert {o.start.astimezone(z).hour for o in got} == {8}  # type: ignore[union-attr]
