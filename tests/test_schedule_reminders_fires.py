"""What an iCalendar object has to remind, and when (kares.schedule.reminders.fires):
pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from kares.schedule import reminders as r

pytestmark = pytest.mark.db_agnostic

UTCZ = ZoneInfo("UTC")
OCT = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


def cal(*components: str) -> icalendar.Calendar:
    body = "\n".join(components)
    return icalendar.Calendar.from_ical(
        f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n{body}\nEND:VCALENDAR\n"
    )


def alarm(trigger: str, extra: str = "") -> str:
    return f"BEGIN:VALARM\nACTION:DISPLAY\nDESCRIPTION:x\n{trigger}\n{extra}END:VALARM"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


def test_every_alarm_of_every_occurrence_across_a_dst_change_with_an_override() -> None:
    c = cal(
        "BEGIN:VEVENT\nUID:m\nSUMMARY:Medicine\nDTSTART;TZID=Europe/Berlin:20261024T080000\n"
        "DURATION:PT30M\nRRULE:FREQ=DAILY;COUNT=3\n" + alarm("TRIGGER:-PT10M") + "\nEND:VEVENT",
        "BEGIN:VEVENT\nUID:m\nSUMMARY:Medicine, later\n"
        "RECURRENCE-ID;TZID=Europe/Berlin:20261025T080000\n"
        "DTSTART;TZID=Europe/Berlin:20261025T090000\nDURATION:PT30M\n"
        + alarm("TRIGGER:-PT5M")
        + "\nEND:VEVENT",
    )
    got = r.fires(c, tz=UTCZ, lo=OCT[0], hi=OCT[1])
    assert [(f.fire_at, f.alarm_key, f.title) for f in got] == [
        (utc(2026, 10, 24, 5, 50), "a-600", "Medicine"),  # CEST: 08:00 is 06:00 UTC
        (utc(2026, 10, 25, 7, 55), "a-300", "Medicine, later"),  # the override's own alarm
        (utc(2026, 10, 26, 6, 50), "a-600", "Medicine"),  # CET: 08:00 is 07:00 UTC
    ]
    # the overridden occurrence keeps its name: its RECURRENCE-ID
    assert got[1].occurrence_ms == r.ms(utc(2026, 10, 25, 7, 0))
    assert got[1].starts_at == utc(2026, 10, 25, 8, 0)
    # late until the event is over and at least an hour after the alarm
    assert got[0].stale_at == utc(2026, 10, 24, 6, 50)


def test_alarms_related_to_the_end_at_a_time_and_repeated() -> None:
    c = cal(
        "BEGIN:VEVENT\nUID:x\nSUMMARY:Visit\nDTSTART:20261010T100000Z\nDTEND:20261010T110000Z\n"
        + alarm("TRIGGER;RELATED=END:-PT15M")
        + "\n"
        + alarm("TRIGGER;VALUE=DATE-TIME:20261009T180000Z")
        + "\n"
        + alarm("TRIGGER:-PT1H", "REPEAT:2\nDURATION:PT15M\n")
        + "\nEND:VEVENT"
    )
    got = [(f.fire_at, f.alarm_key) for f in r.fires(c, tz=UTCZ, lo=OCT[0], hi=OCT[1])]
    assert got == [
        (utc(2026, 10, 9, 18, 0), "a-57600"),
        (utc(2026, 10, 10, 9, 0), "a-3600"),
        (utc(2026, 10, 10, 9, 15), "a-2700"),
        (utc(2026, 10, 10, 9, 30), "a-1800"),
        (utc(2026, 10, 10, 10, 45), "a2700"),
    ]


def test_floating_times_and_dates_are_the_calendars_zone() -> None:
    c = cal(
        "BEGIN:VTODO\nUID:t\nSUMMARY:Pill\nDTSTART:20261010T080000\n"
        + alarm("TRIGGER:PT0M")
        + "\nEND:VTODO",
        "BEGIN:VEVENT\nUID:d\nSUMMARY:Birthday\nDTSTART;VALUE=DATE:20261012\n"
        + alarm("TRIGGER:-PT2H")
        + "\nEND:VEVENT",
    )
    shanghai = ZoneInfo("Asia/Shanghai")
    got = r.fires(c, tz=shanghai, lo=OCT[0], hi=OCT[1])
    assert [f.fire_at for f in got] == [utc(2026, 10, 10, 0, 0), utc(2026, 10, 11, 14, 0)]
    # an all-day item lasts its day: late reminders until its end
    assert got[1].stale_at == utc(2026, 10, 12, 16, 0)


def test_a_confirmation_check_per_occurrence_at_the_start_plus_its_grace() -> None:
    c = cal(
        "BEGIN:VTODO\nUID:t\nSUMMARY:Medicine\nDTSTART;TZID=Asia/Shanghai:20261010T080000\n"
        "RRULE:FREQ=DAILY;COUNT=2\nX-KARES-CONFIRM:PT45M\nEND:VTODO"
    )
    got = r.fires(c, tz=UTCZ, lo=OCT[0], hi=OCT[1])
    assert [(f.kind, f.alarm_key, f.fire_at) for f in got] == [
        ("confirm", "confirm", utc(2026, 10, 10, 0, 45)),
        ("confirm", "confirm", utc(2026, 10, 11, 0, 45)),
    ]
    assert got[0].stale_at == got[0].fire_at + r.STALE_CONFIRM
    for raw, want in (("", 30), ("soon", 30), ("PT2H", 120), ("P3D", 30), ("-PT5M", 30)):
        comp = icalendar.Todo()
        comp.add("X-KARES-CONFIRM", raw)
        assert r.confirm_after(comp) == timedelta(minutes=want)
    assert r.confirm_after(icalendar.Todo()) is None


def test_only_the_window_and_a_completed_todo_is_seen() -> None:
    c = cal(
        "BEGIN:VEVENT\nUID:w\nSUMMARY:W\nDTSTART:20261010T100000Z\nRRULE:FREQ=HOURLY;COUNT=5\n"
        + alarm("TRIGGER:-PT10M")
        + "\nEND:VEVENT"
    )
    got = r.fires(c, tz=UTCZ, lo=utc(2026, 10, 10, 10, 50), hi=utc(2026, 10, 10, 12, 50))
    assert [f.fire_at for f in got] == [utc(2026, 10, 10, 10, 50), utc(2026, 10, 10, 11, 50)]
    todo = icalendar.Todo()
    assert not r.completed(todo)
    todo.add("STATUS", "COMPLETED")
    assert r.completed(todo)
    assert r.reminds(c)
    assert not r.reminds(cal("BEGIN:VEVENT\nUID:n\nDTSTART:20261010T100000Z\nEND:VEVENT"))


def test_a_reminder_is_on_time_in_its_minute_then_late_then_stale() -> None:
    due = utc(2026, 10, 10, 7, 50, 0)
    stale = utc(2026, 10, 10, 8, 50)
    assert r.status_for(due, stale, due) == r.ON_TIME
    assert r.status_for(due, stale, due + timedelta(seconds=59)) == r.ON_TIME
    assert r.status_for(due, stale, due + timedelta(seconds=60)) == r.LATE
    assert r.status_for(due, stale, stale - timedelta(seconds=1)) == r.LATE
    assert r.status_for(due, stale, stale) == r.STALE
