"""The mainland-China working-day clock (kares.workdays), against dates counted by hand.

Sources of the holidays and make-up working days below (the State Council's notices,
read in their Xinhua text; the library's data, chinese_calendar/constants.py of
chinesecalendar 1.11.0, holds the same days):

- 2025: 国务院办公厅关于2025年部分节假日安排的通知 (国办发明电[2024]12号, 12 Nov 2024).
  Spring Festival: 28 Jan (Tue) to 4 Feb (Tue) off, 8 days; 26 Jan (Sun) and 8 Feb (Sat)
  worked. National Day and Mid-Autumn: 1 Oct (Wed) to 8 Oct (Wed) off, 8 days;
  28 Sep (Sun) and 11 Oct (Sat) worked.
- 2026: 国务院办公厅关于2026年部分节假日安排的通知 (4 Nov 2025, published by Xinhua).
  Spring Festival: 15 Feb (Sun) to 23 Feb (Mon) off, 9 days; 14 Feb (Sat) and 28 Feb (Sat)
  worked. Mid-Autumn: 25 Sep (Fri) to 27 Sep (Sun) off. National Day: 1 Oct (Thu) to
  7 Oct (Wed) off, 7 days; 20 Sep (Sun) and 10 Oct (Sat) worked.

Every expected due date was counted by hand, day by day, and the count is written
next to it: "day 1 is the first working day after the day of receipt" (docs/RIGHTS.md).
Each literal carries its weekday, checked when it is parsed, so a typo cannot hide.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kares import workdays
from kares.workdays import (
    WorkdaysUnknown,
    add_working_days,
    covered_years,
    is_working_day,
    local_day,
    working_days_between,
)

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def d(text: str) -> date:
    """'2025-01-26 Sun' -> date(2025, 1, 26), after checking it is a Sunday."""
    iso, weekday = text.split()
    day = date.fromisoformat(iso)
    assert _WEEKDAYS[day.weekday()] == weekday, f"{iso} is a {_WEEKDAYS[day.weekday()]}"
    return day


def days(first: str, last: str) -> list[date]:
    a, b = d(first), d(last)
    return [a + timedelta(days=i) for i in range((b - a).days + 1)]


# The notices, day by day: (days off, the notice's "共N天", make-up working days).
HOLIDAYS = {
    "2025 Spring Festival": (
        days("2025-01-28 Tue", "2025-02-04 Tue"),
        8,
        ["2025-01-26 Sun", "2025-02-08 Sat"],
    ),
    "2025 National Day": (
        days("2025-10-01 Wed", "2025-10-08 Wed"),
        8,
        ["2025-09-28 Sun", "2025-10-11 Sat"],
    ),
    "2026 Spring Festival": (
        days("2026-02-15 Sun", "2026-02-23 Mon"),
        9,
        ["2026-02-14 Sat", "2026-02-28 Sat"],
    ),
    "2026 Mid-Autumn": (days("2026-09-25 Fri", "2026-09-27 Sun"), 3, []),
    "2026 National Day": (
        days("2026-10-01 Thu", "2026-10-07 Wed"),
        7,
        ["2026-09-20 Sun", "2026-10-10 Sat"],
    ),
}


@pytest.mark.parametrize("name", HOLIDAYS)
def test_the_notices_days_off_and_make_up_days(name: str) -> None:
    off, total, make_up = HOLIDAYS[name]
    assert len(off) == total
    for day in off:
        assert not is_working_day(day), day
    for text in make_up:
        assert is_working_day(d(text)), text  # a Saturday or Sunday that is worked


def test_every_make_up_day_of_2025_and_2026_is_the_notices() -> None:
    # All the worked weekend days the two notices list (New Year's Day, Spring
    # Festival, Labour Day, National Day), no more and no fewer: every other Saturday
    # and Sunday of those years is a day off.
    notices = {
        d(t)
        for t in (
            "2025-01-26 Sun", "2025-02-08 Sat", "2025-04-27 Sun", "2025-09-28 Sun",
            "2025-10-11 Sat", "2026-01-04 Sun", "2026-02-14 Sat", "2026-02-28 Sat",
            "2026-05-09 Sat", "2026-09-20 Sun", "2026-10-10 Sat",
        )
    }  # fmt: skip
    weekends = [
        day
        for day in days("2025-01-01 Wed", "2026-12-24 Thu")
        if day.weekday() >= 5 and is_working_day(day)
    ]
    assert set(weekends) == notices


def test_ordinary_days_around_the_holidays() -> None:
    assert is_working_day(d("2025-01-27 Mon"))  # between the make-up Sunday and the holiday
    assert not is_working_day(d("2025-01-25 Sat"))  # a plain weekend before it
    assert not is_working_day(d("2025-02-09 Sun"))  # the day after the make-up Saturday
    assert is_working_day(d("2025-02-05 Wed"))  # the first day back
    assert is_working_day(d("2026-09-30 Wed"))  # between Mid-Autumn and National Day
    assert not is_working_day(d("2026-10-11 Sun"))  # the day after the make-up Saturday


# (received, n, due, the count by hand). "Received" is the Beijing date of receipt,
# which never counts itself; ranges like 10-14 are Monday to Friday.
DUE = [
    # 2025 Spring Festival
    ("2025-01-27 Mon", 15, "2025-02-24 Mon",  # the last working day before the holiday
     "5 Feb(1) 6(2) 7(3) Sat 8(4) 10-14(5-9) 17-21(10-14) 24(15)"),
    ("2025-01-25 Sat", 15, "2025-02-20 Thu",  # the make-up Sunday is day 1
     "Sun 26 Jan(1) 27(2) 5 Feb(3) 6(4) 7(5) Sat 8(6) 10-14(7-11) 17-20(12-15)"),
    ("2025-01-31 Fri", 15, "2025-02-24 Mon",  # received on a holiday: day 1 is 5 Feb
     "5 Feb(1) 6(2) 7(3) Sat 8(4) 10-14(5-9) 17-21(10-14) 24(15)"),
    ("2025-01-27 Mon", 1, "2025-02-05 Wed", "the first day back"),
    ("2025-02-07 Fri", 1, "2025-02-08 Sat", "the make-up Saturday"),
    # 2025 National Day and Mid-Autumn
    ("2025-09-30 Tue", 15, "2025-10-28 Tue",
     "9 Oct(1) 10(2) Sat 11(3) 13-17(4-8) 20-24(9-13) 27(14) 28(15)"),
    ("2025-09-27 Sat", 15, "2025-10-23 Thu",
     "Sun 28 Sep(1) 29(2) 30(3) 9 Oct(4) 10(5) Sat 11(6) 13-17(7-11) 20-23(12-15)"),
    ("2025-10-05 Sun", 3, "2025-10-11 Sat", "9 Oct(1) 10(2) Sat 11(3)"),
    # 2026 Spring Festival
    ("2026-02-13 Fri", 15, "2026-03-12 Thu",
     "Sat 14 Feb(1) 24(2) 25(3) 26(4) 27(5) Sat 28(6) 2-6 Mar(7-11) 9-12(12-15)"),
    ("2026-02-14 Sat", 15, "2026-03-13 Fri",  # received on the make-up Saturday
     "24 Feb(1) 25(2) 26(3) 27(4) Sat 28(5) 2-6 Mar(6-10) 9-13(11-15)"),
    ("2026-02-18 Wed", 15, "2026-03-13 Fri",  # received on a holiday
     "24 Feb(1) 25(2) 26(3) 27(4) Sat 28(5) 2-6 Mar(6-10) 9-13(11-15)"),
    # 2026 Mid-Autumn and National Day
    ("2026-09-30 Wed", 15, "2026-10-27 Tue",
     "8 Oct(1) 9(2) Sat 10(3) 12-16(4-8) 19-23(9-13) 26(14) 27(15)"),
    ("2026-10-01 Thu", 15, "2026-10-27 Tue",  # received on National Day itself
     "8 Oct(1) 9(2) Sat 10(3) 12-16(4-8) 19-23(9-13) 26(14) 27(15)"),
    ("2026-09-18 Fri", 15, "2026-10-15 Thu",  # across Mid-Autumn and National Day
     "Sun 20 Sep(1) 21-24(2-5) 28-30(6-8) 8 Oct(9) 9(10) Sat 10(11) 12-15(12-15)"),
]  # fmt: skip


@pytest.mark.parametrize(("received", "n", "due", "count"), DUE, ids=[r[0] for r in DUE])
def test_due_dates_counted_by_hand(received: str, n: int, due: str, count: str) -> None:
    assert add_working_days(d(received), n) == d(due), count
    assert working_days_between(d(received), d(due)) == n
    assert working_days_between(d(due), d(received)) == -n
    # the day before the due date is one working day short
    assert working_days_between(d(received), d(due) - timedelta(days=1)) == n - 1


def test_the_day_of_receipt_is_the_beijing_day() -> None:
    # 16:00 UTC on Sat 25 Jan 2025 is midnight, the start of Sun 26 Jan, in Beijing: the
    # make-up Sunday is the day of receipt, so it does not count, and day 1 is Mon 27 Jan.
    # Counted: 27 Jan(1) 5 Feb(2) 6(3) 7(4) Sat 8(5) 10-14(6-10) 17-21(11-15).
    late = datetime(2025, 1, 25, 16, 0, tzinfo=UTC)
    assert local_day(late) == d("2025-01-26 Sun")
    assert add_working_days(late, 15) == d("2025-02-21 Fri")
    # one minute earlier it is still Saturday 23:59 in Beijing: day 1 is the make-up Sunday
    assert add_working_days(late - timedelta(minutes=1), 15) == d("2025-02-20 Thu")
    # the hour does not matter within the Beijing day: 08:00 and 23:59 on Mon 27 Jan
    beijing = timezone(timedelta(hours=8))
    for hour, minute in ((8, 0), (23, 59)):
        at = datetime(2025, 1, 27, hour, minute, tzinfo=beijing)
        assert add_working_days(at, 15) == d("2025-02-24 Mon")
    assert working_days_between(late, datetime(2025, 2, 21, 9, 0, tzinfo=beijing)) == 15
    assert add_working_days(late, 0) == d("2025-01-26 Sun")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        add_working_days(datetime(2025, 1, 27, 9, 0), 15)
    with pytest.raises(ValueError, match="0 or more"):
        add_working_days(d("2025-01-27 Mon"), -1)
    with pytest.raises(TypeError):
        is_working_day(datetime(2025, 1, 27, 9, 0, tzinfo=UTC))


# ---- years the library does not know -------------------------------------------


def test_the_library_signals_an_unknown_year_with_not_implemented_error() -> None:
    # what the wrapper guards against: chinesecalendar 1.11.0 raises, it does not guess
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2100, 3, 1))
    assert min(covered_years()) == 2004 and 2026 in covered_years()


@pytest.mark.parametrize("year", [1900, 2003, 2100, 9999])
def test_a_year_out_of_the_library_is_a_clear_error(year: int) -> None:
    day = date(year, 3, 2)
    with pytest.raises(WorkdaysUnknown) as e:
        is_working_day(day)
    assert e.value.year == year and isinstance(e.value, ValueError)
    assert str(year) in str(e.value) and "chinesecalendar" in str(e.value)
    with pytest.raises(WorkdaysUnknown):
        add_working_days(day, 15)
    with pytest.raises(WorkdaysUnknown):
        working_days_between(day, day + timedelta(days=30))


def test_a_clock_running_past_the_last_known_year_is_an_error_not_a_date() -> None:
    last = max(covered_years())
    # the next year's notice may still move the last days of December (the 2019
    # notice made Sat 29 Dec 2018 a working day and Mon 31 Dec 2018 a holiday)
    assert is_working_day(d("2018-12-29 Sat")) and not is_working_day(d("2018-12-31 Mon"))
    with pytest.raises(WorkdaysUnknown) as e:
        is_working_day(date(last, 12, 25))
    assert e.value.year == last + 1 and e.value.day == date(last, 12, 25)
    assert str(last + 1) in str(e.value)
    is_working_day(date(last, 12, 24))  # known
    with pytest.raises(WorkdaysUnknown):
        add_working_days(date(last, 12, 10), 15)


def test_the_year_end_margin_of_2026_by_hand() -> None:
    # 1.11.0 ends with 2026: 15 working days from Mon 30 Nov 2026 are still answerable,
    # Dec 1-4(1-4) 7-11(5-9) 14-18(10-14) 21(15) (no holiday in December 2026).
    if max(covered_years()) != 2026:
        pytest.skip("the pinned library now covers a later year")
    assert add_working_days(d("2026-11-30 Mon"), 15) == d("2026-12-21 Mon")
    with pytest.raises(WorkdaysUnknown):
        add_working_days(d("2026-12-07 Mon"), 15)  # would need 25 December onwards


def test_a_library_that_refuses_a_year_it_seemed_to_cover(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(day: date) -> bool:
        raise NotImplementedError(f"no available data for year {day.year}")

    monkeypatch.setattr(chinese_calendar, "is_workday", refuse)
    with pytest.raises(WorkdaysUnknown) as e:
        workdays.is_working_day(d("2025-03-03 Mon"))
    assert e.value.year == 2025


# ---- properties --------------------------------------------------------------

PROPS = settings(max_examples=300, deadline=None, database=None)
# start days whose clock of up to 40 working days (about 60 calendar days) stays
# clear of the end-of-year margin of the last covered year
STARTS = st.dates(
    min_value=date(min(covered_years()), 1, 1), max_value=date(max(covered_years()), 10, 15)
)


@PROPS
@given(start=STARTS, n=st.integers(min_value=0, max_value=40))
def test_counting_forward_then_between_gives_n_back(start: date, n: int) -> None:
    due = add_working_days(start, n)
    assert working_days_between(start, due) == n
    assert working_days_between(due, start) == -n
    if n >= 1:
        assert is_working_day(due)
        assert due > start
        # the library's own list of working days agrees: exactly n in (start, due]
        assert len(chinese_calendar.get_workdays(start + timedelta(days=1), due)) == n
        # and the due date is the first day that reaches n
        assert working_days_between(start, due - timedelta(days=1)) == n - 1
    else:
        assert due == start


@PROPS
@given(
    start=st.datetimes(
        min_value=datetime(min(covered_years()), 1, 2),
        max_value=datetime(max(covered_years()), 10, 15),
        timezones=st.just(UTC),
    ),
    n=st.integers(min_value=0, max_value=40),
)
def test_an_instant_counts_from_its_beijing_day(start: datetime, n: int) -> None:
    assert add_working_days(start, n) == add_working_days(local_day(start), n)
    assert local_day(start) == (start + timedelta(hours=8)).date()  # China has no DST since 1991
