"""Tables of the location domain.

Times of fixes are integer milliseconds since the epoch (UTC): a day of 1 Hz
fixes is 86,400 rows, and integers keep range scans and the timeline cheap on
both databases. Every other time is a ``UTCDateTime``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import not_personal, personal, table_info

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid)
BigId = BigInteger().with_variant(Integer(), "sqlite")


class LocationFix(Base):
    """One position report of one person, as stored.

    ``status`` is ``ok`` (used for maps, tracks and the timeline), ``flagged``
    (kept with the reason in ``flag``, never used as good) or ``unresolved``
    (only cell towers / Wi-Fi were reported and no position is known yet:
    ``lat``/``lon`` are NULL, never 0,0, and ``radio`` keeps what was heard).
    ``precise`` is false when the person's precise location was withdrawn: the
    coordinates were rounded as the catalog says before they were stored.
    """

    __tablename__ = "location_fixes"
    __table_args__ = (
        UniqueConstraint("account_id", "client_id"),
        Index("ix_location_fixes_account_id_recorded_ms", "account_id", "recorded_ms"),
        table_info(
            subject="account_id",
            not_personal=("id", "status", "flag", "source", "precise", "device_id"),
            collected="recorded_ms",
            collected_unit="ms",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    client_id: Mapped[str | None] = mapped_column(
        String(96), info=not_personal("the client's own id of the fix, for retries")
    )
    recorded_ms: Mapped[int] = mapped_column(BigInteger, info=personal("location.precise"))
    received_ms: Mapped[int] = mapped_column(BigInteger, info=personal("location.precise"))
    lat: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    lon: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    accuracy_m: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    altitude_m: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    speed_mps: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    course_deg: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    battery: Mapped[int | None] = mapped_column(SmallInteger, info=personal("device.attributes"))
    source: Mapped[str] = mapped_column(String(8))
    precise: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(12))
    flag: Mapped[str | None] = mapped_column(String(32))
    radio: Mapped[str | None] = mapped_column(Text, info=personal("location.precise"))


class LocationDay(Base):
    """One person's good fixes of one UTC day, packed as columns: what the track
    and the timeline read instead of 86,400 rows (``location.days``).

    A derived copy of ``location_fixes``, and personal data like them: every
    column holds the same location as the fixes it was packed from. It holds the
    day's ``ok`` fixes with ids up to ``through_id`` (little-endian arrays in
    (time, id) order); fixes stored later are read from ``location_fixes``. The
    database deletes it with any of its fixes (triggers of migration 0009: a
    deleted or changed fix deletes its day's copy) and with the account.
    """

    __tablename__ = "location_days"
    __table_args__ = (
        table_info(
            subject="account_id",
            not_personal=("through_id", "count", "ids", "precise"),
            collected="day",
            collected_unit="day",
        ),
    )

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    # the UTC day: recorded_ms // 86_400_000
    day: Mapped[int] = mapped_column(
        Integer, primary_key=True, autoincrement=False, info=personal("location.precise")
    )
    through_id: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    ids: Mapped[bytes] = mapped_column(LargeBinary)  # int64: the fixes' ids
    t_ms: Mapped[bytes] = mapped_column(LargeBinary, info=personal("location.precise"))  # int64
    lat: Mapped[bytes] = mapped_column(LargeBinary, info=personal("location.precise"))  # float64
    lon: Mapped[bytes] = mapped_column(LargeBinary, info=personal("location.precise"))  # float64
    # float64, NaN where unknown
    accuracy_m: Mapped[bytes] = mapped_column(LargeBinary, info=personal("location.precise"))
    speed_mps: Mapped[bytes] = mapped_column(LargeBinary, info=personal("location.precise"))
    precise: Mapped[bytes] = mapped_column(LargeBinary)  # uint8


class LastLocation(Base):
    """Each person's newest good fix: what the live map shows. A fix that
    arrives late never replaces a newer one."""

    __tablename__ = "location_last"
    __table_args__ = (
        table_info(
            subject="account_id",
            not_personal=("device_id", "precise", "position"),
            collected="recorded_ms",
            collected_unit="ms",
        ),
    )

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    recorded_ms: Mapped[int] = mapped_column(BigInteger, info=personal("location.precise"))
    lat: Mapped[float] = mapped_column(Float, info=personal("location.precise"))
    lon: Mapped[float] = mapped_column(Float, info=personal("location.precise"))
    accuracy_m: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    speed_mps: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    course_deg: Mapped[float | None] = mapped_column(Float, info=personal("location.precise"))
    battery: Mapped[int | None] = mapped_column(SmallInteger, info=personal("device.attributes"))
    precise: Mapped[bool] = mapped_column(Boolean)
    # the id of the fix this is: the live stream's position, the same in every process
    position: Mapped[int | None] = mapped_column(BigInteger)


class Tracker(Base):
    """A credential for a tracking app or logger (OwnTracks, Overland, ...).

    The secret is a session of kind ``tracker`` (so last use and revocation
    are the session's); the guard lets such a session only upload locations.
    """

    __tablename__ = "location_trackers"
    __table_args__ = (
        UniqueConstraint("username"),
        table_info(subject="account_id", not_personal=("id", "session_id", "device_id", "kind")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64), info=personal("device.attributes"))
    kind: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(40), info=personal("device.attributes"))
    tid: Mapped[str | None] = mapped_column(String(4), info=personal("device.attributes"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("device.attributes"))


class Place(Base):
    """A named circle: a family's place (home, school) or, without a family,
    one person's own (an OwnTracks region)."""

    __tablename__ = "places"
    __table_args__ = (
        UniqueConstraint("account_id", "external_id"),
        table_info(
            subject="account_id",
            not_personal=("id", "family_id", "external_id"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    family_id: Mapped[str | None] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    # who created it (and, for a personal place, whose it is)
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    external_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64), info=personal("location.places"))
    lat: Mapped[float] = mapped_column(Float, info=personal("location.places"))
    lon: Mapped[float] = mapped_column(Float, info=personal("location.places"))
    radius_m: Mapped[float] = mapped_column(Float, info=personal("location.places"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("location.places"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("location.places"))


class PlacePresence(Base):
    """Whether a person is inside a place, as decided with hysteresis."""

    __tablename__ = "place_presence"
    __table_args__ = (
        table_info(
            subject="account_id",
            not_personal=("place_id",),
            collected="seen_ms",
            collected_unit="ms",
        ),
    )

    place_id: Mapped[str] = mapped_column(
        ForeignKey("places.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    inside: Mapped[bool] = mapped_column(Boolean, info=personal("location.precise"))
    since_ms: Mapped[int] = mapped_column(BigInteger, info=personal("location.precise"))
    # the newest fix this state has seen: older (late) fixes cannot flip it
    seen_ms: Mapped[int] = mapped_column(BigInteger, info=personal("location.precise"))
    # a crossing not yet confirmed: since when the fixes say the other side
    pending_since_ms: Mapped[int | None] = mapped_column(
        BigInteger, info=personal("location.precise")
    )


class PlaceAlert(Base):
    """Someone asked to be told when a member (or anyone) arrives at or leaves a place."""

    __tablename__ = "place_alerts"
    __table_args__ = (
        UniqueConstraint("place_id", "watcher_id", "subject_id"),
        table_info(subject="watcher_id", also_about=("subject_id",), not_personal=("id",)),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    place_id: Mapped[str] = mapped_column(
        ForeignKey("places.id", ondelete="CASCADE"), index=True, info=not_personal("a place id")
    )
    watcher_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    # None: anyone of the family
    subject_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"),
        index=True,
        info=personal("family.membership"),
    )
    on_arrive: Mapped[bool] = mapped_column(Boolean, info=personal("family.membership"))
    on_leave: Mapped[bool] = mapped_column(Boolean, info=personal("family.membership"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("family.membership"))
