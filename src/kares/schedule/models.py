"""Tables of the schedule domain (docs/SCHEDULE.md).

``calendars``: a personal calendar (``account_id`` names its owner) or a family's
(``family_id``). ``calendar_objects``: one CalDAV *calendar object resource* per
row, its iCalendar text kept verbatim and sealed, with the few plain columns that
find it (its name in the collection, its UID, its component type, its ETag, the
calendar's change counter at its last write, and the UTC span its occurrences
cover, to prefilter time-range queries). ``calendar_changes``: the RFC 6578 sync
log, one row per resource name holding its last change (a tombstone once
deleted).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Sealed, personal, table_info

CATEGORY = "calendar.events"


class Calendar(Base):
    """A calendar: ``kind`` "personal" (owned by ``account_id``) or "family"
    (``family_id``). ``default_for`` holds the owner's id on the one calendar made
    for it on first use (unique, so two first uses make one)."""

    __tablename__ = "calendars"
    __table_args__ = (
        table_info(
            subject="account_id",
            not_personal=(
                "id",
                "kind",
                "family_id",
                "default_for",
                "color",
                "modseq",
                "sync_floor",
                "created_at",
                "updated_at",
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(8))  # personal | family
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[str | None] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    default_for: Mapped[str | None] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64), info=personal(CATEGORY))
    color: Mapped[str | None] = mapped_column(String(9))
    description: Mapped[str | None] = mapped_column(Text, info=personal(CATEGORY))
    time_zone: Mapped[str] = mapped_column(String(64), info=personal(CATEGORY))
    # the sync counter: every change to the calendar's objects takes the next value
    modseq: Mapped[int] = mapped_column(BigInteger, default=0)
    # sync tokens below this were given before tombstones since pruned: refused
    sync_floor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CalendarObject(Base):
    """One calendar object resource: a VCALENDAR holding one UID's components
    (a master VEVENT or VTODO and its overridden occurrences) and the VTIMEZONEs
    they use, stored verbatim (``data``, UTF-8, sealed)."""

    __tablename__ = "calendar_objects"
    __table_args__ = (
        UniqueConstraint("calendar_id", "name"),
        UniqueConstraint("calendar_id", "uid"),
        Index("ix_calendar_objects_calendar_modseq", "calendar_id", "modseq"),
        table_info(
            subject=None,
            why="a calendar's object: reached through calendar_id (calendars.account_id, "
            "the owner of a personal calendar); a family calendar's go with the family",
            not_personal=("id", "calendar_id", "component", "etag", "modseq", "created_at"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    calendar_id: Mapped[str] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255), info=personal(CATEGORY))
    uid: Mapped[str] = mapped_column(String(255), info=personal(CATEGORY))
    component: Mapped[str] = mapped_column(String(8))  # VEVENT | VTODO
    data: Mapped[bytes] = mapped_column(Sealed("calendar_objects.data"), info=personal(CATEGORY))
    etag: Mapped[str] = mapped_column(String(40))
    modseq: Mapped[int] = mapped_column(BigInteger)
    # UTC milliseconds since 1970 covering every occurrence; NULL = unbounded
    range_start: Mapped[int | None] = mapped_column(BigInteger, info=personal(CATEGORY))
    range_end: Mapped[int | None] = mapped_column(BigInteger, info=personal(CATEGORY))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))


class CalendarChange(Base):
    """The last change of one resource name in a calendar (RFC 6578): written
    (``deleted`` false) or deleted (a tombstone, pruned after
    ``service.TOMBSTONE_DAYS``)."""

    __tablename__ = "calendar_changes"
    __table_args__ = (
        Index("ix_calendar_changes_calendar_modseq", "calendar_id", "modseq"),
        table_info(
            subject=None,
            why="a calendar's change log: reached through calendar_id like its objects",
            not_personal=("calendar_id", "modseq", "deleted"),
        ),
    )

    calendar_id: Mapped[str] = mapped_column(
        ForeignKey("calendars.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True, info=personal(CATEGORY))
    modseq: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(CATEGORY))
