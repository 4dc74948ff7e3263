"""The record of a call: who called whom, when, how long, how it ended (policy
1.6.1 and the catalog's calls.records: never the audio, never what was said)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Encrypted, personal, table_info


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_callee_created", "callee_id", "created_at"),
        Index("ix_calls_caller_created", "caller_id", "created_at"),
        table_info(
            subject="caller_id",
            also_about=("callee_id",),
            not_personal=("id", "caller_device_id", "answered_device_id"),
            collected="created_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    caller_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), info=personal("calls.records")
    )
    callee_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), info=personal("calls.records")
    )
    # the devices that hold the call on each side (devices.id; the callee's once answered)
    caller_device_id: Mapped[str] = mapped_column(String(32))
    answered_device_id: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), info=personal("calls.records"))
    end_reason: Mapped[str | None] = mapped_column(String(16), info=personal("calls.records"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("calls.records"))
    ring_until: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("calls.records"))
    answered_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("calls.records")
    )
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), info=personal("calls.records"))
    # the caller's offer (SDP), held only while the call rings so that a callee
    # device woken by a push gets it when its socket opens; erased by the step
    # that ends the ringing (answer, reject, hang-up, the ringing time over)
    offer: Mapped[str | None] = mapped_column(
        Encrypted("calls.offer"), info=personal("calls.records")
    )
