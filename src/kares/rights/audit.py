"""The staff-action log: every operator run against a person's data is recorded.

Operators reach the rights engine from the command line (``kares rights
export``, ``kares rights delete``, answering the staff queue, legal holds).
Each run writes one row here, in the same transaction as what it did, so the
log cannot say something happened that did not, nor miss something that did.

The row names the account while it exists. When the account is deleted its
id is cleared (the foreign key sets it to NULL) and the detail holds only
counts and table names, never a phone number, a name or a coordinate, so the
log outlives the person without keeping anything about them.
"""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from kares import clock
from kares.db import Base, UTCDateTime, new_id
from kares.fields import not_personal, personal, table_info


class StaffAction(Base):
    """One thing an operator did to a person's data (or to the service)."""

    __tablename__ = "staff_actions"
    __table_args__ = (
        Index("ix_staff_actions_account_at", "account_id", "at"),
        table_info(subject="account_id", not_personal=("id",)),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("rights.requests"))
    # the operator's name on the machine that ran the command (staff, not a
    # person the service holds data about)
    actor: Mapped[str] = mapped_column(String(64), info=not_personal("an operator's name"))
    # "rights.export", "rights.delete", "staff.answer", "retention.hold", ...
    action: Mapped[str] = mapped_column(String(48), info=personal("rights.requests"))
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), info=personal("rights.requests")
    )
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSON, info=not_personal("counts, table names and ids of requests; never a value")
    )


def operator() -> str:
    """Who runs this command: the login name of the process, or "unknown"."""
    try:
        return getpass.getuser()[:64]
    except (OSError, KeyError):
        return "unknown"


async def record(
    s: AsyncSession,
    action: str,
    *,
    account_id: str | None,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
) -> str:
    """Log one staff action in the caller's transaction; returns its id."""
    row_id = new_id()
    await s.execute(
        insert(StaffAction).values(
            id=row_id,
            at=clock.utcnow(),
            actor=(actor or operator())[:64],
            action=action,
            account_id=account_id,
            detail=detail or {},
        )
    )
    return row_id
