"""Tables of the notify domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Encrypted, personal, table_info


class Notification(Base):
    """One entry of an account's in-app inbox."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_account_created", "account_id", "created_at"),
        # the account's inbox stream: positions 1, 2, 3... (the WebSocket resumes by
        # them), never given twice (InboxHead)
        Index("ux_notifications_account_seq", "account_id", "seq", unique=True),
        table_info(
            subject="account_id",
            not_personal=("id", "category", "created_at", "read_at", "seq"),
            collected="created_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(24))
    title: Mapped[str] = mapped_column(String(128), info=personal("notification.content"))
    body: Mapped[str] = mapped_column(Text, info=personal("notification.content"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, info=personal("notification.content"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # its position in the account's inbox stream (kares.notify.stream)
    seq: Mapped[int | None] = mapped_column(BigInteger)


class InboxHead(Base):
    """The last position an account's inbox stream has given
    (``Notification.seq``, kares.notify.stream): a new entry takes the next one.
    Deleting entries (retention, an erased person's notices) never lowers it,
    so no position is given twice: a socket that had seen a number would skip
    a new entry given it again."""

    __tablename__ = "notification_heads"
    __table_args__ = (table_info(subject="account_id", not_personal=("seq",)),)

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger)


class PushToken(Base):
    """A device's push channel: one per device, replaced when it registers again.

    ``token`` is the provider's address for the device (an APNs device token, an
    FCM registration token, or a Web Push subscription as JSON), encrypted at
    rest; ``token_hash`` finds it again (a token moves with the device: when
    another account registers it, the old registration goes).
    """

    __tablename__ = "push_tokens"
    __table_args__ = (table_info(subject="account_id", not_personal=("id",)),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"),
        unique=True,
        info=personal("device.push_token"),
    )
    provider: Mapped[str] = mapped_column(String(16), info=personal("device.push_token"))
    token: Mapped[str] = mapped_column(
        Encrypted("push_tokens.token"), info=personal("device.push_token")
    )
    token_hash: Mapped[str] = mapped_column(
        String(64), unique=True, info=personal("device.push_token")
    )
    # APNs only: the PushKit VoIP token an incoming call wakes the device with
    # (kares.calls); FCM wakes with ``token`` at high priority
    voip_token: Mapped[str | None] = mapped_column(
        Encrypted("push_tokens.voip_token"), info=personal("device.push_token")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("device.push_token"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("device.push_token"))


class NotificationPreference(Base):
    """An account's push choices: categories turned off, and quiet hours."""

    __tablename__ = "notification_preferences"
    __table_args__ = (table_info(subject="account_id", not_personal=("updated_at",)),)

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    muted: Mapped[list[str]] = mapped_column(JSON, info=personal("account.profile"))
    quiet_start: Mapped[str | None] = mapped_column(String(5), info=personal("account.profile"))
    quiet_end: Mapped[str | None] = mapped_column(String(5), info=personal("account.profile"))
    time_zone: Mapped[str | None] = mapped_column(String(64), info=personal("account.profile"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
