"""Tables of the notify domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.privacy.fields import personal, table_info


class Notification(Base):
    """One entry of an account's in-app inbox."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_account_created", "account_id", "created_at"),
        table_info(subject="account_id", not_personal=("id", "category", "created_at", "read_at")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(24))
    title: Mapped[str] = mapped_column(String(128), info=personal("notification.content"))
    body: Mapped[str] = mapped_column(Text, info=personal("notification.content"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, info=personal("notification.content"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
