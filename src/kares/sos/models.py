"""Tables of the SOS domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import not_personal, personal, table_info


class SosAlert(Base):
    __tablename__ = "sos_alerts"
    __table_args__ = (
        Index("uq_sos_alerts_account_id_source_key", "account_id", "source_key", unique=True),
        Index("uq_sos_alerts_open_device", "open_device", unique=True),
        Index("uq_sos_alerts_open_person", "open_person", unique=True),
        table_info(
            subject="account_id",
            also_about=("acknowledged_by",),
            not_personal=("id", "status", "device_id", "reminders_sent", "open_device", "repeats"),
            collected="created_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    lat: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    lon: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    accuracy_m: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    precision: Mapped[str] = mapped_column(String(16), info=personal("location.approximate"))
    battery: Mapped[int | None] = mapped_column(Integer, info=personal("device.attributes"))
    note: Mapped[str | None] = mapped_column(String(200), info=personal("notification.content"))
    status: Mapped[str] = mapped_column(String(16))
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("notification.content")
    )
    acknowledged_by: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), info=personal("family.membership")
    )
    acknowledged_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("notification.content")
    )
    # the device's own id of the alarm (a watch's frame): a repeated alarm whose
    # answer was lost raises nothing twice
    source_key: Mapped[str | None] = mapped_column(
        String(96), info=not_personal("the device's id of the alarm")
    )
    # when the device says the alarm was given (a watch's frame carries its time)
    alarm_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("notification.content")
    )
    # a device's alarm holds its device here while it is open and live: unique,
    # so a device has one such alert at a time and the database decides which
    open_device: Mapped[str | None] = mapped_column(String(32))
    # an SOS raised through the API (the app) holds its person here while it is open
    # and live: unique, so a person has one such alert at a time, decided the same way
    open_person: Mapped[str | None] = mapped_column(
        String(32), info=not_personal("a copy of account_id while the alert is open")
    )
    # further alarms of the device (or SOS of the person) added to this alert while it
    # was open, and the last one's time
    repeats: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    repeated_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("notification.content")
    )


class SosRecipient(Base):
    """Who was told of an alert (and may answer it)."""

    __tablename__ = "sos_recipients"
    __table_args__ = (table_info(subject="account_id", not_personal=("alert_id",)),)

    alert_id: Mapped[str] = mapped_column(
        ForeignKey("sos_alerts.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
