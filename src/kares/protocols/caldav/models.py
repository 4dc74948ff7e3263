"""The CalDAV module's own tables: app passwords and calendar subscriptions.

An app password is a session of kind ``caldav`` (its last use and revocation
are the session's, and it is listed with the sessions); this table adds the
user name a CalDAV client types and the name the person gave it. A
subscription is a secret URL that reads one calendar as iCalendar, without
signing in: only its hash is stored, and it stops working when revoked or when
the person who made it can no longer see the calendar.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import personal, table_info


class AppPassword(Base):
    """A CalDAV client's credential (the secret is the session's token)."""

    __tablename__ = "caldav_app_passwords"
    __table_args__ = (
        UniqueConstraint("username"),
        table_info(subject="account_id", not_personal=("id", "session_id")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), unique=True
    )
    name: Mapped[str] = mapped_column(String(64), info=personal("device.attributes"))
    username: Mapped[str] = mapped_column(String(40), info=personal("device.attributes"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("device.attributes"))


class Subscription(Base):
    """A read-only iCalendar URL of one calendar (the token is shown once)."""

    __tablename__ = "calendar_subscriptions"
    __table_args__ = (
        table_info(
            subject="account_id", not_personal=("id", "calendar_id", "token_hash", "revoked_at")
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    calendar_id: Mapped[str] = mapped_column(
        ForeignKey("calendars.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), info=personal("device.attributes"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("device.attributes"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
