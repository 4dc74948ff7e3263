"""The inbox as a stream source of the WebSocket (``kares.live.streams``, key ``i``).

Each inbox entry has a position in its account's stream (``Notification.seq``:
1, 2, 3... per account, never given twice: ``InboxHead``); a socket that
reconnects with the position it saw last gets every entry after it, shown as
the inbox shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import live
from kares.notify import service
from kares.notify.models import InboxHead, Notification


async def since(
    s: AsyncSession, viewer: live.Viewer, after: int, limit: int
) -> tuple[Sequence[live.Event], int]:
    q = (
        select(Notification)
        .where(Notification.account_id == viewer.account_id, Notification.seq > after)
        .order_by(Notification.seq)
        .limit(limit)
    )
    rows = list((await s.execute(q)).scalars())
    out = []
    for n in rows:
        data: dict[str, Any] = {
            "id": n.id,
            "category": n.category,
            **asdict(await service.shown(s, n)),
            "created_at": n.created_at.isoformat(),
            "read_at": n.read_at.isoformat() if n.read_at else None,
        }
        out.append(live.Event(int(n.seq or 0), "notification", data))
    return out, out[-1].position if out else after


async def head(s: AsyncSession, viewer: live.Viewer) -> int:
    """The last position given (``InboxHead``), whether or not its entry is still
    there: a socket that saw an entry since deleted resumes without a resync."""
    q = select(InboxHead.seq).where(InboxHead.account_id == viewer.account_id)
    return int((await s.execute(q)).scalar_one_or_none() or 0)


SOURCE = live.streams.register(
    "i",
    "inbox",
    since,
    head,
    function=("notifications", "inbox"),
    kinds=("inbox",),
    own_only=True,
    history="GET /api/v1/notifications",
)
