"""Tables of the health domain: one row per person, metric and UTC day, holding
that day's samples packed as arrays and encrypted (``kares.health.chunks``).

Two tables of the same shape, one per personal-information category, so a
chosen deletion of "steps and activity" or of "health readings" (and retention,
and the data map) works from the column declarations alone. The sample's record
id is kept only as a keyed hash inside the encrypted day: re-uploads are found
there, and nothing of a sample is readable in the database file.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base
from kares.fields import Sealed, personal, table_info


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
