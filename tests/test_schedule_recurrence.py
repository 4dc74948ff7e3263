"""Recurrence expansion (issue 16, "Done means"): on random rules the fast path
(dateutil's rrule read from icalendar's vRecur) gives exactly the occurrences
recurring-ical-events gives, and the stored span (``span_ms``) holds every
occurrence, so the time-range prefilter never drops one. Rules: DAILY, WEEKLY,
MONTHLY, YEARLY with INTERVAL, BYDAY, BYMONTHDAY, COUNT or UNTIL; EXDATE, RDATE
and overrides; starts floating, in UTC, in a zone with daylight saving (Europe/
Berlin, America/New_York) and all-day. The arithmetic path (schedule/rules.py)
is drawn wider still and held to both recurring-ical-events and, field for
field and in order, the dateutil path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kares.schedule import recurrence
from kares.schedule import rules as shapes

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
    ref = recurrence.reference_between(cal, "VEVENT", start, end, z)
    # both ways of the fast path: the arithmetic where it applies, and dateutil's walk
    for arithmetic in (True, False):
        fast = recurrence.fast_between(cal, "VEVENT", start, end, z, arithmetic=arithmetic)
        if fast is None:
            continue  # a shape the fast path leaves to the reference
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


# --- the arithmetic path (schedule/rules.py) ------------------------------------

WIDE_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]
# days a change of offset falls on (Berlin: last Sundays of March and October; New
# York: second Sunday of March, first of November; Lord Howe: 30 minutes, April and
# October), leap days, and months' ends, around which the arithmetic could slip
SPECIAL_DAYS = [
    date(2026, 3, 29),
    date(2026, 10, 25),
    date(2026, 3, 8),
    date(2026, 11, 1),
    date(2027, 3, 28),
    date(2027, 3, 14),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2024, 2, 29),
    date(2028, 2, 29),
    date(2026, 1, 31),
    date(2026, 1, 30),
    date(2026, 1, 29),
    date(2026, 5, 31),
    date(2027, 12, 31),
    date(2025, 12, 29),
]


def _on_rule_byday(draw: Any, day: date) -> str:
    """A monthly BYDAY that holds ``day`` (its nth or nth-from-the-end weekday;
    or every such weekday) and perhaps others of the same kind. (dateutil, and
    so recurring-ical-events, reads a mix of the two kinds as their
    intersection, not their union: such a rule goes the reference's way.)"""
    w = DAYS[day.weekday()]
    length = (date(day.year + day.month // 12, day.month % 12 + 1, 1) - timedelta(days=1)).day
    nth, from_end = (day.day - 1) // 7 + 1, -((length - day.day) // 7 + 1)
    if draw(st.booleans()):
        return ",".join(sorted(draw(st.sets(st.sampled_from(DAYS), max_size=3)) | {w}))
    ordinals = st.sampled_from(["1", "2", "3", "4", "5", "-1", "-2", "-5"])
    others = {
        n + d for n, d in draw(st.lists(st.tuples(ordinals, st.sampled_from(DAYS)), max_size=2))
    }
    return ",".join(sorted(others | {draw(st.sampled_from([f"{nth}{w}", f"{from_end}{w}"]))}))


@st.composite
def wide_series(draw: Any) -> icalendar.Calendar:
    """Series as a phone writes them (DTSTART on the rule), of every shape the
    arithmetic takes: any INTERVAL, COUNT up to 500 (windows late in the series),
    UNTIL on an instance's exact time or off it, BYDAY with ordinals, negative
    BYMONTHDAY, WKST, starts on month ends, leap days and days of a change of
    offset at the hours it skips or repeats, EXDATEs, RDATEs and overrides
    spread over years."""
    kind = draw(st.sampled_from([*WIDE_ZONES, "floating", "date"]))
    day = draw(
        st.sampled_from(SPECIAL_DAYS)
        | st.integers(0, 3000).map(lambda d: date(2020, 1, 1) + timedelta(days=d))
    )
    hour = draw(st.sampled_from([1, 2, 3]) | st.integers(0, 23))
    minute = draw(st.sampled_from([0, 15, 30, 45]))
    naive = datetime(day.year, day.month, day.day, hour, minute)
    start: date | datetime
    if kind == "date":
        start = day
    elif kind == "floating":
        start = naive
    else:
        start = naive.replace(tzinfo=ZoneInfo(kind))
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]))
    parts = [f"FREQ={freq}"]
    interval = draw(st.sampled_from([1, 1, 2, 3, 5]))
    if interval > 1 or draw(st.booleans()):
        parts.append(f"INTERVAL={interval}")
    if freq == "WEEKLY":
        if draw(st.booleans()):
            more = draw(st.sets(st.sampled_from(DAYS), max_size=6))
            parts.append("BYDAY=" + ",".join(sorted(more | {DAYS[day.weekday()]})))
        if draw(st.booleans()):
            parts.append("WKST=" + draw(st.sampled_from(DAYS)))
    if freq == "MONTHLY":
        how = draw(st.sampled_from(["none", "bymonthday", "byday"]))
        if how == "bymonthday":
            length = (
                date(day.year + day.month // 12, day.month % 12 + 1, 1) - timedelta(days=1)
            ).day
            own = draw(st.sampled_from([day.day, day.day - length - 1]))
            more = draw(st.sets(st.integers(1, 31) | st.integers(-31, -1), max_size=3))
            parts.append("BYMONTHDAY=" + ",".join(map(str, sorted(more | {own}))))
        elif how == "byday":
            parts.append("BYDAY=" + _on_rule_byday(draw, day))
    end_kind = draw(st.sampled_from(["count", "until", "none"]))
    if end_kind == "count":
        parts.append(f"COUNT={draw(st.integers(1, 40) | st.integers(41, 500))}")
    elif end_kind == "until":
        u = naive + timedelta(days=draw(st.integers(0, 2500)))
        if draw(st.booleans()):  # off the instances' time of day (not before DTSTART)
            u = max(u + timedelta(minutes=draw(st.sampled_from([-1, 1, -60, 60, 600]))), naive)
        if kind == "date":
            parts.append(f"UNTIL={u.strftime('%Y%m%d')}")
        elif kind == "floating":
            parts.append(f"UNTIL={u.strftime('%Y%m%dT%H%M%S')}")
        else:
            # the UNTIL of a zoned series is in UTC (RFC 5545)
            at = u.replace(tzinfo=ZoneInfo(kind)).astimezone(UTC)
            parts.append(f"UNTIL={at.strftime('%Y%m%dT%H%M%SZ')}")
    ev = icalendar.Event()
    ev.add("UID", "wide@test")
    ev.add("DTSTART", start)
    if kind == "date":
        ev.add("DTEND", start + timedelta(days=draw(st.integers(1, 3))))
    else:
        ev.add("DTEND", start + timedelta(minutes=draw(st.sampled_from([0, 30, 90, 600, 1500]))))
    ev.add("RRULE", icalendar.vRecur.from_ical(";".join(parts)))

    def shifted(days: int) -> date | datetime:
        return start + timedelta(days=days)

    offsets = st.integers(1, 60) | st.integers(61, 2500)
    ex = draw(st.lists(offsets, max_size=5, unique=True))
    if ex:
        ev.add("EXDATE", [shifted(d) for d in ex])
    rd = draw(st.lists(offsets, max_size=3, unique=True))
    if rd:
        ev.add("RDATE", [shifted(d) for d in rd])
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//test//EN")
    cal.add("VERSION", "2.0")
    cal.add_component(ev)
    for d in draw(st.lists(st.sampled_from([0, 1, 7, 31, 365]) | offsets, max_size=3, unique=True)):
        o = icalendar.Event()
        o.add("UID", "wide@test")
        o.add("RECURRENCE-ID", shifted(d))
        moved = shifted(d) + timedelta(days=draw(st.integers(-3, 3)))
        o.add("DTSTART", moved)
        o.add("DTEND", moved + (timedelta(days=1) if kind == "date" else timedelta(hours=1)))
        o.add("SUMMARY", "moved")
        cal.add_component(o)
    cal.add_missing_timezones()
    return icalendar.Calendar.from_ical(cal.to_ical())


def wide_window(cal: icalendar.Calendar) -> st.SearchStrategy[tuple[datetime, datetime, str]]:
    """A window from a little before the series' start to years into it (late in
    a long COUNT), at any minute, a few minutes (all of it near its edges) to
    more than a year long, read in one of four zones."""
    first = recurrence.components_of(cal)[0].decoded("DTSTART")
    if not isinstance(first, datetime):
        first = datetime(first.year, first.month, first.day)
    anchor = first.replace(tzinfo=UTC) if first.tzinfo is None else first.astimezone(UTC)
    return st.tuples(
        (st.integers(-40, 60) | st.integers(61, 3000)).map(lambda d: timedelta(days=d)),
        st.integers(0, 24 * 60 - 1).map(lambda m: timedelta(minutes=m)),
        st.integers(1, 3 * 24 * 60).map(lambda m: timedelta(minutes=m))
        | st.integers(1, 400).map(lambda d: timedelta(days=d)),
        st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"]),
    ).map(lambda w: (anchor + w[0] + w[1], anchor + w[0] + w[1] + w[2], w[3]))


def exact(v: date | datetime | None) -> Any:
    """A value with everything that tells it apart: its type, its wall-clock
    fields, its fold and its zone's name, not only the instant it is."""
    if isinstance(v, datetime):
        return ("dt", v.replace(tzinfo=None), v.fold, str(v.tzinfo) if v.tzinfo else None)
    return (type(v).__name__, v)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cal=wide_series(), data=st.data())
def test_the_arithmetic_equals_recurring_ical_events_and_dateutil(
    cal: icalendar.Calendar, data: st.DataObject
) -> None:
    """Every series drawn goes the arithmetic way (asserted), and gives what
    recurring-ical-events gives, and exactly what the dateutil path gives: the
    same fields of the same types in the same zones, in the same order."""
    start, end, zname = data.draw(wide_window(cal))
    z = ZoneInfo(zname)
    plans: list[Any] = []

    def spy(*args: Any, **kw: Any) -> Any:
        plans.append(plan(*args, **kw))
        return plans[-1]

    plan = shapes.plan
    with mock.patch.object(shapes, "plan", spy):
        fast = recurrence.fast_between(cal, "VEVENT", start, end, z)
    assert fast is not None and plans and plans[0] is not None, cal.to_ical().decode()
    walked = recurrence.fast_between(cal, "VEVENT", start, end, z, arithmetic=False)
    assert walked is not None

    def strict(o: recurrence.Occurrence) -> tuple[Any, ...]:
        return (o.uid, exact(o.rid), exact(o.start), exact(o.end), o.all_day, id(o.component))

    assert [strict(o) for o in fast] == [strict(o) for o in walked], cal.to_ical().decode()
    ref = recurrence.reference_between(cal, "VEVENT", start, end, z)
    assert sorted(map(key, fast)) == sorted(map(key, ref)), cal.to_ical().decode()
    event("occurrences: " + ("none" if not ref else "1-9" if len(ref) < 10 else "10 or more"))
    # between's order: by start (what the reference's sort gives)
    assert fast == sorted(fast, key=recurrence._start_key(z))


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY",
        "FREQ=DAILY;INTERVAL=3;COUNT=400",
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=FR,SA;WKST=SU",
        "FREQ=MONTHLY;BYMONTHDAY=20,-1",
        "FREQ=MONTHLY;BYDAY=3FR",
        "FREQ=MONTHLY;BYDAY=-1FR,3FR,1MO",
        "FREQ=MONTHLY;BYDAY=FR,MO",
        "FREQ=MONTHLY;INTERVAL=2;COUNT=100",
        "FREQ=YEARLY;UNTIL=20300320T070000Z",
    ],
)
def test_the_arithmetic_takes_the_common_shapes(rule: str) -> None:
    """The common shapes (each holding 20 March 2026, a Friday) are read by the
    arithmetic; DTSTART off the rule, BYSETPOS or an hourly rule are not."""
    first = datetime(2026, 3, 20, 8)
    until = rule.partition("UNTIL=")[2]
    r = icalendar.vRecur.from_ical(rule)
    if until:
        r["UNTIL"] = [datetime(2030, 3, 20, 8)]
    assert shapes.plan(r, first, all_day=False) is not None
    for other in (
        "FREQ=WEEKLY;BYDAY=MO",
        "FREQ=MONTHLY;BYMONTHDAY=1",
        "FREQ=MONTHLY;BYDAY=FR;BYSETPOS=1",
        "FREQ=HOURLY",
        "FREQ=DAILY;BYMONTH=3",
        "FREQ=WEEKLY;BYDAY=1FR",
        "FREQ=MONTHLY;BYDAY=3FR,MO",
        "FREQ=DAILY;COUNT=3;UNTIL=20270101T000000",
    ):
        assert shapes.plan(icalendar.vRecur.from_ical(other), first, all_day=False) is None, other
