"""Who sees someone typing in a family's conversation: the family's members now.

A family's group conversation has the family's id (the messaging domain keeps
it so); the WebSocket asks ``kares.live.typing`` who may see a typing notice,
and this answers for family ids. Any other id is left to the domains that
register after (messaging's direct and watch conversations).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from kares import live
from kares.families.service import member_ids


async def audience(s: AsyncSession, account_id: str, conversation: str) -> Iterable[str] | None:
    members = await member_ids(s, conversation)
    return members if account_id in members else None


live.typing.register(audience)
