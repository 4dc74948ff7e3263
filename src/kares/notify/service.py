"""The in-app inbox. Every feature that tells a user something goes through here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.notify.models import Notification

CATEGORIES = ("security", "messages", "reminders", "location", "health", "sos", "system")


async def add(
    s: AsyncSession,
    *,
    account_id: str,
    category: str,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
) -> Notification:
    if category not in CATEGORIES:
        raise ValueError(f"unknown notification category {category!r}")
    n = Notification(
        account_id=account_id,
        category=category,
        title=title,
        body=body,
        data=data or {},
        created_at=clock.utcnow(),
    )
    s.add(n)
    await s.flush()
    return n


async def list_for(
    s: AsyncSession, *, account_id: str, limit: int, before: str | None = None
) -> list[Notification]:
    q = select(Notification).where(Notification.account_id == account_id)
    if before:
        anchor = await s.get(Notification, before)
        if anchor is not None and anchor.account_id == account_id:
            q = q.where(Notification.created_at <= anchor.created_at, Notification.id != anchor.id)
    q = q.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return list((await s.execute(q)).scalars())


async def unread_count(s: AsyncSession, *, account_id: str) -> int:
    q = select(func.count()).where(
        Notification.account_id == account_id, Notification.read_at.is_(None)
    )
    return int((await s.execute(q)).scalar_one())


async def mark_read(s: AsyncSession, *, account_id: str, notification_id: str | None) -> int:
    """Mark one (or, with None, every) unread notification read. Returns how many."""
    q = update(Notification).where(
        Notification.account_id == account_id, Notification.read_at.is_(None)
    )
    if notification_id is not None:
        q = q.where(Notification.id == notification_id)
    res = await s.execute(q.values(read_at=clock.utcnow()))
    await s.commit()
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def exists(s: AsyncSession, *, account_id: str, notification_id: str) -> bool:
    q = select(Notification.id).where(
        Notification.id == notification_id, Notification.account_id == account_id
    )
    return (await s.execute(q)).first() is not None
