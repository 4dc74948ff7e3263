"""Tables of retention: legal holds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import not_personal, table_info


class LegalHold(Base):
    """Retention suspended for one account while a legal matter needs its data.

    A hold is in force from ``set_at`` until ``released_at``; while it is, the
    retention job removes none of the rows about the account (its subject or
    ``also_about`` columns). Released holds are kept as the record of what was
    held and why.
    """

    __tablename__ = "legal_holds"
    __table_args__ = (
        Index("ix_legal_holds_account_released", "account_id", "released_at"),
        table_info(
            subject="account_id",
            not_personal=("id", "set_at", "released_at"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(
        String(500),
        info=not_personal("the operator's reference to the legal matter, not the person's data"),
    )
    set_at: Mapped[datetime] = mapped_column(UTCDateTime())
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
