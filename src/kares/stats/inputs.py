"""The de-identification step: the only code of the statistics that reads the database.

It reads the few columns listed in docs/STATS.md and turns each into a generalised
attribute at once: a time into its UTC day, a birth date or declared bracket into
one of the policy's age brackets, a phone number into its country (and province in
mainland China), a day of fixes into a number of trips and a distance. What it
returns holds no name, phone number, account id, time of day or coordinate: each
person is a random token drawn for this reading alone (so records of one person can
be bounded and counted once, and nothing can be joined with another release or
with the database), and the mapping from accounts to tokens is dropped on return.

Bounding each person's contribution is done here too: one record per person, day
and figure (a person who signed in five times on a day is active once), one
movement record per person and day, one wearer record per person.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import phonenumbers
from phonenumbers import geocoder
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kares import clock
from kares.accounts.models import LoginEvent
from kares.families.models import FamilyMember
from kares.geo import timeline
from kares.identity.models import Account, Session
from kares.location import service as location
from kares.location.models import Place
from kares.notify.models import Notification
from kares.privacy import service as privacy
from kares.sos.models import SosAlert
from kares.watches.models import Watch

DAY_MS = 86_400_000

# The features whose use is counted, each as "distinct people who did it on a UTC day".
FEATURES = (
    "location_upload",  # a fix of theirs was stored (location_fixes.recorded_ms)
    "place_created",  # they created a place (places.created_at)
    "sos_raised",  # an SOS of theirs was raised (sos_alerts.created_at)
    "family_joined",  # they joined a family, as owner or member (family_members.joined_at)
    "watch_paired",  # a watch was paired for them to wear (watches.paired_at)
    "notified",  # their inbox got a notification (notifications.created_at)
)
# Feature records that are also activity of the person: all but being notified
# (a notice arrives whether or not anyone opens the app).
_ACTIVE_FEATURES = frozenset(FEATURES) - {"notified"}

BRACKETS = (*privacy.BRACKETS, "unknown")
UNKNOWN = "unknown"


@dataclass
class Inputs:
    """De-identified records of one reading (see the module's docstring)."""

    first_day: date
    last_day: date
    active: set[tuple[str, date]] = field(default_factory=set)
    """(person, day): the person did something that day."""
    features: set[tuple[str, date, str]] = field(default_factory=set)
    """(person, day, feature)."""
    movement: dict[tuple[str, date], tuple[int, float]] = field(default_factory=dict)
    """(person, day) -> (trips, km) of that day, for each person-day with good fixes."""
    wearers: dict[str, tuple[str, str]] = field(default_factory=dict)
    """person -> (age bracket, region) of each person wearing a paired watch now."""

    @property
    def days(self) -> list[date]:
        n = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=i) for i in range(n)]


class _Tokens:
    """Account id -> a random token, for one reading only."""

    def __init__(self) -> None:
        self._of: dict[str, str] = {}

    def __call__(self, account_id: str) -> str:
        token = self._of.get(account_id)
        if token is None:
            token = self._of[account_id] = secrets.token_hex(8)
        return token


def region_of(phone: str | None) -> str:
    """The coarse region of a phone number: its country's ISO code, and for a
    mainland-China mobile number the province its number block was issued in
    (``CN-Guangdong``; ``CN`` when the block is not tied to one). ``unknown``
    without a number. Never finer than a province: a city would split the
    groups below k, and the number says where it was issued, not where anyone
    lives, so anything finer would look more exact than it is."""
    if not phone:
        return UNKNOWN
    try:
        num = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return UNKNOWN
    country = phonenumbers.region_code_for_number(num)
    if not country:
        return UNKNOWN
    if country != "CN":
        return country
    # "Changzhou, Jiangsu" / "Beijing" (a municipality is its own province) / "China"
    desc = geocoder.description_for_number(num, "en", region="CN")
    if not desc or desc.strip() in ("China", "CN"):
        return "CN"
    return "CN-" + desc.split(",")[-1].strip()


def bracket_of(birth_date: str | None, age_bracket: str | None, today: date) -> str:
    """The policy's age brackets (under_14, 14_to_17, adult): from the birth date
    when one is stored, else the bracket the account declared."""
    return privacy.bracket_of(birth_date, age_bracket, today) or UNKNOWN


def _range(first: date, last: date) -> tuple[datetime, datetime]:
    lo = datetime.combine(first, time(), tzinfo=UTC)
    return lo, lo + timedelta(days=(last - first).days + 1)


def _ms_day(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


async def _person_days(
    s: AsyncSession, column: Any, who: Any, first: date, last: date, *where: Any
) -> list[tuple[str, date]]:
    """Distinct (account, UTC day) of a time column in the window."""
    lo, hi = _range(first, last)
    q = select(who, column).where(column >= lo, column < hi, who.isnot(None), *where)
    seen: set[tuple[str, date]] = set()
    for account_id, at in (await s.execute(q)).all():
        seen.add((str(account_id), at.astimezone(UTC).date()))
    return sorted(seen)


async def _fix_days(
    s: AsyncSession, first: date, last: date, *, good_only: bool
) -> list[tuple[str, date]]:
    """Distinct (account, UTC day) with stored fixes: integer division of the time in
    milliseconds, in the database (a day of 1 Hz fixes is 86,400 rows)."""
    lo = (first - date(1970, 1, 1)).days * DAY_MS
    hi = ((last - date(1970, 1, 1)).days + 1) * DAY_MS
    sql = (
        "SELECT DISTINCT account_id, recorded_ms / 86400000 AS day FROM location_fixes "
        "WHERE recorded_ms >= :lo AND recorded_ms < :hi"
    )
    if good_only:
        sql += " AND status = 'ok'"
    rows = (await s.execute(text(sql), {"lo": lo, "hi": hi})).all()
    return sorted((str(a), _ms_day(int(d))) for a, d in rows)


async def _movement(s: AsyncSession, account_id: str, day: date) -> tuple[int, float]:
    """Trips and km of one person's UTC day, from the timeline of the day's good
    fixes (the same algorithm the app's timeline uses); only the two numbers leave."""
    lo = (day - date(1970, 1, 1)).days * DAY_MS
    fixes = await location.day_fixes(s, account_id=account_id, from_ms=lo, to_ms=lo + DAY_MS)
    tl = timeline.detect(location.to_points(fixes))
    return len(tl.trips), sum(t.distance_m for t in tl.trips) / 1000.0


async def read(s: AsyncSession, *, first_day: date, last_day: date) -> Inputs:
    """The de-identified records of the UTC days ``first_day``..``last_day`` (and the
    watch wearers as of now)."""
    token = _Tokens()
    out = Inputs(first_day, last_day)

    def add(feature: str, pairs: Iterable[tuple[str, date]]) -> None:
        for account_id, day in pairs:
            out.features.add((token(account_id), day, feature))
            if feature in _ACTIVE_FEATURES:
                out.active.add((token(account_id), day))

    add("location_upload", await _fix_days(s, first_day, last_day, good_only=False))
    add(
        "place_created",
        await _person_days(s, Place.created_at, Place.account_id, first_day, last_day),
    )
    add(
        "sos_raised",
        await _person_days(s, SosAlert.created_at, SosAlert.account_id, first_day, last_day),
    )
    add(
        "family_joined",
        await _person_days(s, FamilyMember.joined_at, FamilyMember.account_id, first_day, last_day),
    )
    add(
        "watch_paired",
        await _person_days(s, Watch.paired_at, Watch.account_id, first_day, last_day),
    )
    add(
        "notified",
        await _person_days(
            s, Notification.created_at, Notification.account_id, first_day, last_day
        ),
    )
    # activity that is no feature of its own: signing in, using a session, reading the inbox
    for pairs in (
        await _person_days(
            s,
            LoginEvent.occurred_at,
            LoginEvent.account_id,
            first_day,
            last_day,
            LoginEvent.success.is_(True),
        ),
        await _person_days(s, Session.last_seen_at, Session.account_id, first_day, last_day),
        await _person_days(s, Notification.read_at, Notification.account_id, first_day, last_day),
    ):
        out.active.update((token(a), d) for a, d in pairs)

    for account_id, day in await _fix_days(s, first_day, last_day, good_only=True):
        out.movement[(token(account_id), day)] = await _movement(s, account_id, day)

    today = clock.utcnow().date()
    wearer, pairer = aliased(Account), aliased(Account)
    q = (
        select(
            Watch.account_id,
            wearer.birth_date,
            wearer.age_bracket,
            wearer.phone,
            pairer.phone,
        )
        .join(wearer, wearer.id == Watch.account_id)
        .outerjoin(pairer, pairer.id == Watch.paired_by)
        .where(Watch.status == "paired", Watch.account_id.isnot(None))
    )
    for wearer_id, birth, bracket, own_phone, pairer_phone in (await s.execute(q)).all():
        # a child's watch is usually worn by a profile without a number of its own:
        # the region is then that of the number of whoever paired it
        region = region_of(own_phone or pairer_phone)
        out.wearers[token(str(wearer_id))] = (bracket_of(birth, bracket, today), region)
    return out
