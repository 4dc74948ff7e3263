"""Tables of the watches domain."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import personal, table_info


class Watch(Base):
    """A watch, from the moment it introduces itself until it is unpaired.

    Unbound, it holds only its IMEI (as a keyed hash), a pairing secret and a
    credential that lets it ask whether it has been paired. Paired, it is a
    device of the person wearing it and its credential is that person's
    session on this device: it reports on their behalf, under their consents.
    """

    __tablename__ = "watches"
    __table_args__ = (
        table_info(
            subject="account_id",
            # the guardian who paired it
            also_about=("paired_by",),
            not_personal=(
                "id",
                "status",
                "secret_hash",
                "token_hash",
                "created_at",
                "session_id",
                "device_id",
                "family_id",
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    imei_hash: Mapped[str] = mapped_column(
        String(64), unique=True, info=personal("device.identifier")
    )
    imei_tail: Mapped[str] = mapped_column(String(4), info=personal("device.identifier"))
    model: Mapped[str | None] = mapped_column(String(64), info=personal("device.attributes"))
    status: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    family_id: Mapped[str | None] = mapped_column(String(32))
    paired_by: Mapped[str | None] = mapped_column(String(32), info=personal("family.membership"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paired_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("family.membership")
    )
    last_seen_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("device.attributes")
    )


class WatchHelloCount(Base):
    """How many watches one peer address introduced in its current hour: the
    limit of ``POST /api/v1/watches/hello``, counted by the database in one
    statement (``watches.service.count_hello``). The address is kept only as a
    keyed hash, and only for the hour."""

    __tablename__ = "watch_hello_counts"
    __table_args__ = (
        table_info(
            subject=None,
            why="a rate limit per network address, keyed by its hash, kept an hour",
            not_personal=("window_start", "count"),
            collected="window_start",
            lifetime={"window_start": timedelta(hours=1)},  # service.HELLO_WINDOW
        ),
    )

    peer_hash: Mapped[str] = mapped_column(
        String(64), primary_key=True, info=personal("security.login_environment")
    )
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(Integer)
