"""Family members' last locations as a stream source of the WebSocket
(``kares.live.streams``, key ``l``).

A last location is state, not a log: the source's position is the id of the
fix that became someone's last location (``LastLocation.position``, the same
in every process), and a socket that reconnects gets, for each family member
whose last location moved after its position, that member's location *now*,
re-checked against their sharing (``position: null`` when the viewer may no
longer see it) and coarsened as the guard says. However long a client was
away, that is at most one event per family member: never too far behind.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import live
from kares.families import service as families
from kares.location.api import position_of
from kares.location.models import LastLocation


async def since(
    s: AsyncSession, viewer: live.Viewer, after: int, limit: int
) -> tuple[Sequence[live.Event], int]:
    watched = await families.co_members(s, viewer.account_id) | {viewer.account_id}
    q = (
        select(LastLocation)
        .where(LastLocation.account_id.in_(watched), LastLocation.position > after)
        .order_by(LastLocation.position)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    out = []
    for last in (await s.execute(q)).scalars():
        pos = None
        if await families.may_see(s, viewer.account_id, last.account_id):
            pos = position_of(viewer.runtime, last, dict(viewer.degraded)).model_dump(mode="json")
        data = {"account_id": last.account_id, "position": pos}
        out.append(live.Event(int(last.position or 0), "location", data))
    return out, out[-1].position if out else after


async def head(s: AsyncSession, viewer: live.Viewer) -> int:
    watched = await families.co_members(s, viewer.account_id) | {viewer.account_id}
    q = select(func.max(LastLocation.position)).where(LastLocation.account_id.in_(watched))
    return int((await s.execute(q)).scalar_one() or 0)


SOURCE = live.streams.register(
    "l",
    "location",
    since,
    head,
    function=("driving_tracks", "view"),
    kinds=("location",),
    history="GET /api/v1/families/{family_id}/map",
)
