"""The statistics' one table: every release published, with the privacy budget it spent."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import table_info


class StatsRelease(Base):
    """One published release of the anonymised statistics (``kares stats``).

    ``figures`` is the release as published: noisy, generalised values with the
    small groups already suppressed, each figure with its k and its epsilon. It is
    about no account: it is what may be shown to anyone. ``epsilon_total`` is what
    the release spent of the budget (the sum of ``epsilons``); the budget check
    sums it over the releases of the period.
    """

    __tablename__ = "stats_releases"
    __table_args__ = (
        Index("ix_stats_releases_created_at", "created_at"),
        table_info(
            subject=None,
            why="published anonymised statistics: noisy counts of groups of at least k "
            "people, no account's data",
            not_personal=(
                "id",
                "created_at",
                "first_day",
                "last_day",
                "k",
                "epsilons",
                "epsilon_total",
                "figures",
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # the UTC days the per-day figures cover, both included
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    k: Mapped[int] = mapped_column(Integer)
    # figure name -> the epsilon its measurement spent (as OpenDP's privacy map says)
    epsilons: Mapped[dict[str, float]] = mapped_column(JSON)
    epsilon_total: Mapped[float] = mapped_column(Float)
    figures: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
