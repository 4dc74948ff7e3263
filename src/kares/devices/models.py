"""Tables of the devices domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import not_personal, personal, table_info


class Device(Base):
    """A device an account signed in from, recognised by a keyed hash of its id."""

    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("account_id", "device_key"),
        table_info(subject="account_id", not_personal=("id",)),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), info=personal("device.identifier")
    )
    device_key: Mapped[str] = mapped_column(String(64), info=personal("device.identifier"))
    kind: Mapped[str] = mapped_column(String(16), info=personal("device.attributes"))
    model: Mapped[str | None] = mapped_column(String(64), info=personal("device.attributes"))
    os: Mapped[str | None] = mapped_column(String(32), info=personal("device.attributes"))
    os_version: Mapped[str | None] = mapped_column(String(32), info=personal("device.attributes"))
    app_version: Mapped[str | None] = mapped_column(String(32), info=personal("device.attributes"))
    language: Mapped[str | None] = mapped_column(String(35), info=personal("device.attributes"))
    battery: Mapped[int | None] = mapped_column(Integer, info=personal("device.attributes"))
    charging: Mapped[bool | None] = mapped_column(Boolean, info=personal("device.attributes"))
    battery_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("device.attributes")
    )
    first_seen_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("device.attributes")
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("device.attributes")
    )


class DevicePermission(Base):
    """The latest state the device reported for one OS permission."""

    __tablename__ = "device_permissions"
    __table_args__ = (
        table_info(subject=None, why="reached through devices.account_id (device_id)"),
    )

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"),
        primary_key=True,
        info=personal("device.permissions"),
    )
    permission: Mapped[str] = mapped_column(
        String(32), primary_key=True, info=not_personal("catalog permission key")
    )
    state: Mapped[str] = mapped_column(String(16), info=personal("device.permissions"))
    reported_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("device.permissions")
    )
