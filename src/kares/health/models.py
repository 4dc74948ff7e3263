"""Tables of the health domain: one row per person, metric and UTC day, holding
that day's samples packed as arrays and encrypted (``kares.health.chunks``).

Two tables of the same shape, one per personal-information category, so a
chosen deletion of "steps and activity" or of "health readings" (and retention,
and the data map) works from the column declarations alone. The sample's record
id is kept only as a keyed hash inside the encrypted day: re-uploads are found
there, and nothing of a sample is readable in the database file.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Sealed, not_personal, personal, table_info


class HealthVitalsDay(Base):
    """A day of one person's readings of one metric (heart rate, blood pressure,
    SpO2, temperature, weight, sleep, falls, wrist-off)."""

    __tablename__ = "health_vitals_days"
    __table_args__ = (table_info(subject="account_id", collected="day", collected_unit="day"),)

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(
        String(24), primary_key=True, info=personal("health.vitals")
    )
    # the UTC day of the samples' start: start_ms // 86_400_000
    day: Mapped[int] = mapped_column(
        Integer, primary_key=True, autoincrement=False, info=personal("health.vitals")
    )
    data: Mapped[bytes] = mapped_column(
        Sealed("health_vitals_days.data"), info=personal("health.vitals")
    )


class HealthActivityDay(Base):
    """A day of one person's activity samples of one metric (steps, distance,
    active energy)."""

    __tablename__ = "health_activity_days"
    __table_args__ = (table_info(subject="account_id", collected="day", collected_unit="day"),)

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(
        String(24), primary_key=True, info=personal("health.activity")
    )
    day: Mapped[int] = mapped_column(
        Integer, primary_key=True, autoincrement=False, info=personal("health.activity")
    )
    data: Mapped[bytes] = mapped_column(
        Sealed("health_activity_days.data"), info=personal("health.activity")
    )


DayTable = type[HealthVitalsDay] | type[HealthActivityDay]
TABLES: dict[str, DayTable] = {
    "health.vitals": HealthVitalsDay,
    "health.activity": HealthActivityDay,
}


# --- health alerts (kares.health.alerts) ---------------------------------------------------------

# an episode says when a reading crossed: a health reading; a threshold is the
# family's care settings, as a place alert is (kept while the family is)
CATEGORY = "health.vitals"
SETTINGS = "family.membership"


class HealthAlert(Base):
    """A threshold a guardian set for a dependant of a family."""

    __tablename__ = "health_alerts"
    __table_args__ = (
        UniqueConstraint("family_id", "account_id", "kind"),
        table_info(subject="account_id", also_about=("set_by",), not_personal=("id",)),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), info=not_personal("a family id")
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(24), info=personal(SETTINGS))
    # bpm, percent or hours, by kind
    level: Mapped[float | None] = mapped_column(Float, info=personal(SETTINGS))
    minutes: Mapped[int | None] = mapped_column(Integer, info=personal(SETTINGS))
    local_time: Mapped[str | None] = mapped_column(String(5), info=personal(SETTINGS))
    time_zone: Mapped[str | None] = mapped_column(String(64), info=personal(SETTINGS))
    set_by: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), info=personal("family.membership")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(SETTINGS))


class HealthAlertEpisode(Base):
    """One crossing of a threshold, from the moment its condition began until it
    ended (``closed_ms`` None: still open)."""

    __tablename__ = "health_alert_episodes"
    __table_args__ = (
        UniqueConstraint("alert_id", "opened_ms"),
        Index("uq_health_alert_episodes_open_alert", "open_alert", unique=True),
        table_info(
            subject="account_id",
            not_personal=("id", "open_alert"),
            collected="opened_ms",
            collected_unit="ms",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    alert_id: Mapped[str] = mapped_column(
        ForeignKey("health_alerts.id", ondelete="CASCADE"), info=not_personal("a threshold id")
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    opened_ms: Mapped[int] = mapped_column(BigInteger, info=personal(CATEGORY))
    closed_ms: Mapped[int | None] = mapped_column(BigInteger, info=personal(CATEGORY))
    # the threshold's id while the episode is open, else None (unique: one open episode)
    open_alert: Mapped[str | None] = mapped_column(String(32))
