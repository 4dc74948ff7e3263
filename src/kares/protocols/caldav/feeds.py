"""Read-only iCalendar subscriptions: a secret URL per calendar.

A person makes a subscription URL for a calendar they can see, to paste into
any calendar app that subscribes to ``webcal://`` feeds (read only, no sign
in). The token in the URL is shown once and stored as a keyed hash; it is
revocable, and it stops working by itself when its maker can no longer see the
calendar (they left the family) or their account is no longer active.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto
from kares.errors import Problem
from kares.identity.models import Account
from kares.protocols.caldav import store
from kares.protocols.caldav.models import Subscription
from kares.protocols.caldav.xml import DavError
from kares.runtime import Runtime
from kares.schedule import service as schedule

MAX_PER_CALENDAR = 10
_PREFIX = "kcs_"


@dataclass(frozen=True)
class SubscriptionView:
    sub: Subscription
    revoked: bool


def path_of(token: str) -> str:
    return f"/dav/feeds/{token}.ics"


async def create(
    s: AsyncSession, *, account_id: str, calendar_id: str, name: str
) -> tuple[Subscription, str]:
    from kares.families.service import clean_name

    clean = clean_name(name, max_len=64, code="calendar.invalid_name")
    if await store.calendar_of(s, account_id, calendar_id) is None:
        raise schedule.not_found()
    live = await list_for(s, account_id=account_id, calendar_id=calendar_id)
    if sum(1 for v in live if not v.revoked) >= MAX_PER_CALENDAR:
        raise Problem(
            409, "calendar.subscription_limit", f"At most {MAX_PER_CALENDAR} per calendar."
        )
    token = _PREFIX + secrets.token_urlsafe(32)
    sub = Subscription(
        account_id=account_id,
        calendar_id=calendar_id,
        token_hash=crypto.token_hash(token),
        name=clean,
        created_at=clock.utcnow(),
    )
    s.add(sub)
    await s.commit()
    return sub, token


async def list_for(s: AsyncSession, *, account_id: str, calendar_id: str) -> list[SubscriptionView]:
    q = (
        select(Subscription)
        .where(Subscription.account_id == account_id, Subscription.calendar_id == calendar_id)
        .order_by(Subscription.created_at, Subscription.id)
    )
    return [SubscriptionView(x, x.revoked_at is not None) for x in (await s.execute(q)).scalars()]


async def revoke(
    s: AsyncSession, *, account_id: str, calendar_id: str, subscription_id: str
) -> None:
    sub = await s.get(Subscription, subscription_id) if len(subscription_id) <= 32 else None
    if sub is None or sub.account_id != account_id or sub.calendar_id != calendar_id:
        raise Problem(404, "calendar.subscription_not_found", "No such subscription.")
    await s.execute(
        update(Subscription)
        .where(Subscription.id == sub.id, Subscription.revoked_at.is_(None))
        .values(revoked_at=clock.utcnow())
    )
    await s.commit()


async def serve(rt: Runtime, name: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """GET /dav/feeds/{token}.ics: the calendar as one iCalendar file."""
    gone = DavError(404, "No such subscription (or it was revoked).")
    token = name.removesuffix(".ics")
    if not token.startswith(_PREFIX) or len(token) > 80:
        raise gone
    async with rt.db.sessions() as s:
        q = select(Subscription).where(Subscription.token_hash == crypto.token_hash(token))
        sub = (await s.execute(q)).scalar_one_or_none()
        if sub is None or sub.revoked_at is not None:
            raise gone
        account = await s.get(Account, sub.account_id)
        if account is None or account.status != "active":
            raise gone
        text = await store.export_of(s, sub.account_id, sub.calendar_id)
        if text is None:
            raise gone
    headers = [
        (b"content-type", b"text/calendar; charset=utf-8"),
        (b"cache-control", b"private, max-age=300"),
    ]
    return 200, headers, text.encode("utf-8")
