"""Working days of the mainland-China calendar, for clocks such as "answered within
15 working days" (policy 5.8 and 8).

A working day is Monday to Friday, less the statutory holidays, plus the make-up
working weekends (调休上班日) that the State Council announces each year. The days
come from the maintained ``chinesecalendar`` package (pinned in pyproject.toml),
never from a rule of our own: the holidays move with the lunar calendar and the
make-up days are set by a yearly notice.

How a clock is read (docs/RIGHTS.md says why): the day of receipt, in Beijing
time, never counts, whatever the hour and whether or not it is a working day;
day 1 is the first working day after it (the Civil Code, art. 201: a period
counted in days starts on the next day). So 15 working days from a request is
the 15th working day after the Beijing date on which it arrived.

A day the library cannot vouch for raises ``WorkdaysUnknown``, never a guess:
a year outside its data, and the last week of December of its final year (the
next year's notice may still move those days, as the 2019 notice made
29 December 2018 a working day). The cure is a newer pin of ``chinesecalendar``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import chinese_calendar

BEIJING = "Asia/Shanghai"

# From this day of December on, the next year's New Year's Day notice has been
# known to move days (a make-up Saturday on 29 or 30 December, holidays on 30 and
# 31 December): they count only when the library holds the next year too.
_YEAR_END_FROM = (12, 25)


class WorkdaysUnknown(ValueError):
    """The calendar of ``year`` is not in the pinned ``chinesecalendar``: no clock
    that touches it can be computed. Upgrade the package (the State Council
    publishes each year's holidays around November of the year before)."""

    code = "workdays.unknown_year"

    def __init__(self, year: int, day: date | None = None) -> None:
        first, last = min(covered_years()), max(covered_years())
        about = f" (needed for {day.isoformat()})" if day is not None and day.year != year else ""
        super().__init__(
            f"the working days of {year}{about} are not known to chinesecalendar "
            f"{chinese_calendar.__version__}, which covers {first}-{last}; "
            "upgrade it once the State Council has published that year's holidays"
        )
        self.year = year
        self.day = day


@cache
def covered_years() -> frozenset[int]:
    """The years whose statutory holidays the installed library holds."""
    return frozenset(d.year for d in chinese_calendar.holidays)


def _check_known(day: date) -> None:
    years = covered_years()
    if day.year not in years:
        raise WorkdaysUnknown(day.year, day)
    if (day.month, day.day) >= _YEAR_END_FROM and day.year + 1 not in years:
        raise WorkdaysUnknown(day.year + 1, day)


def is_working_day(day: date) -> bool:
    """Whether ``day`` (a calendar day in mainland China) is a working day.

    Takes a ``date``, not a ``datetime``: an instant has a day only in a time
    zone (see ``local_day``).
    """
    if isinstance(day, datetime):
        raise TypeError("is_working_day takes a date; use local_day() for an instant")
    _check_known(day)
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as e:  # the library's own "no data for this year"
        raise WorkdaysUnknown(day.year, day) from e


def local_day(moment: datetime | date, *, tz: str = BEIJING) -> date:
    """The calendar day of ``moment`` in ``tz`` (Beijing time by default).

    A ``date`` is already a day and is returned as it is; a ``datetime`` must be
    time-zone-aware (Kares stores UTC), so a naive one is refused.
    """
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("a naive datetime has no day in Beijing: pass an aware one")
        return moment.astimezone(ZoneInfo(tz)).date()
    return moment


def add_working_days(start: datetime | date, n: int, *, tz: str = BEIJING) -> date:
    """The ``n``-th working day after the day of ``start`` in ``tz``.

    The day of ``start`` itself never counts (day 1 is the first working day
    after it), so a request received on a holiday, on a weekend or late on a
    working day all start counting on the next working day. ``n == 0`` gives the
    day of ``start``. The result is a working day whenever ``n >= 1``.

    Raises ``WorkdaysUnknown`` when a day on the way is not in the library.
    """
    if n < 0:
        raise ValueError(f"n must be 0 or more, not {n}")
    day = local_day(start, tz=tz)
    while n:
        day += timedelta(days=1)
        if is_working_day(day):
            n -= 1
    return day


def working_days_between(a: datetime | date, b: datetime | date, *, tz: str = BEIJING) -> int:
    """The working days after the day of ``a`` up to and including the day of ``b``.

    The inverse of ``add_working_days``: ``working_days_between(s,
    add_working_days(s, n)) == n``. When ``b`` is before ``a`` the count is
    negative (so ``working_days_between(today, due)`` is the working days left,
    below zero once overdue); the same day gives 0.
    """
    first, last = local_day(a, tz=tz), local_day(b, tz=tz)
    if last < first:
        return -working_days_between(last, first)
    count, day = 0, first
    while day < last:
        day += timedelta(days=1)
        if is_working_day(day):
            count += 1
    return count
