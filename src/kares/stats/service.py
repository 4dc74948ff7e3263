"""Anonymised usage statistics (policy 1.6): compute, publish and account for a release.

A release covers whole UTC days in the past. It is computed only from the
de-identified records of :mod:`kares.stats.inputs`, published as five figures,
each with k-anonymity (cells of fewer than k distinct people are suppressed) and
differential-privacy noise from OpenDP (:mod:`kares.stats.noise`), and recorded
with the epsilon it spent in ``stats_releases``. A release that would take the
releases of the budget period past the budget is refused and records nothing.

:func:`publish` is the one action (the CLI calls it; the portal will); it commits
once. docs/STATS.md gives the figures, the guarantees and the reasoning.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.config import Settings
from kares.errors import Problem
from kares.stats import inputs as inputs_mod
from kares.stats import noise
from kares.stats.inputs import FEATURES, Inputs
from kares.stats.models import StatsRelease

MAX_DAYS = 31
"""A release covers at most this many days: the noise of a per-day figure grows with
the days (one person can be in each), so a longer window buys nothing but noise."""
TRIPS_MAX = 10
"""A person-day counts at most this many trips (more are clamped)."""
KM_MAX = 200.0
"""A person-day counts at most this many km (more are clamped)."""
# serialises the budget check with the insert of the release on PostgreSQL (a
# constant key of pg_advisory_xact_lock); SQLite's write lock does it there
_BUDGET_LOCK = 0x6B617265_73737473  # "karesstats"
_FLOAT_SLACK = 1e-9

FIGURES: dict[str, str] = {
    "active_accounts": "Active accounts per day",
    "feature_use": "People using each feature per day",
    "trips": "Trips per day",
    "distance_km": "Distance travelled per day (km)",
    "watch_wearers": "Watch wearers by age bracket and region",
}


@dataclass(frozen=True)
class Policy:
    """The guarantees of a release: k, epsilon per figure, and the budget per period."""

    k: int
    epsilon: float
    budget: float
    period_days: int

    @classmethod
    def of(cls, settings: Settings, *, epsilon: float | None = None) -> Policy:
        return cls(
            k=settings.stats_k,
            epsilon=settings.stats_epsilon if epsilon is None else epsilon,
            budget=settings.stats_budget_epsilon,
            period_days=settings.stats_budget_period_days,
        )

    @property
    def per_release(self) -> float:
        """The most one release can spend: each figure spends at most ``epsilon``."""
        return self.epsilon * len(FIGURES)


@dataclass(frozen=True)
class Budget:
    since: datetime
    spent: float
    limit: float
    period_days: int
    releases: list[StatsRelease]

    @property
    def left(self) -> float:
        return max(self.limit - self.spent, 0.0)


def default_window(days: int, today: date | None = None) -> tuple[date, date]:
    """The ``days`` whole UTC days before today."""
    last = (today or clock.utcnow().date()) - timedelta(days=1)
    return last - timedelta(days=days - 1), last


def _check_window(first: date, last: date) -> None:
    today = clock.utcnow().date()
    if last < first:
        raise Problem(422, "stats.invalid_range", "The last day comes before the first.")
    if last >= today:
        raise Problem(
            422,
            "stats.invalid_range",
            "A release covers whole UTC days in the past: end it yesterday at the latest.",
        )
    if (last - first).days + 1 > MAX_DAYS:
        raise Problem(
            422,
            "stats.range_too_long",
            f"A release covers at most {MAX_DAYS} days.",
            max_days=MAX_DAYS,
        )


def _check_policy(policy: Policy) -> None:
    if policy.k < 2:
        raise Problem(422, "stats.invalid_k", "k must be at least 2.")
    if not (math.isfinite(policy.epsilon) and 0 < policy.epsilon <= 10):
        raise Problem(422, "stats.invalid_epsilon", "Epsilon per figure is above 0, at most 10.")


# --- the figures --------------------------------------------------------------------------


def _guarantee(policy: Policy, n: noise.Noisy, mechanism: str, contribution: str) -> dict[str, Any]:
    return {
        "k": policy.k,
        "epsilon": n.epsilon,
        "mechanism": mechanism,
        "noise_scale": n.scale,
        "margin95": n.margin95,
        "contribution": contribution,
    }


def _count_figure(
    name: str,
    policy: Policy,
    keys: Sequence[tuple[str, ...]],
    fields: tuple[str, ...],
    records: Sequence[tuple[str, tuple[str, ...]]],
    per_person: int,
    contribution: str,
) -> dict[str, Any]:
    """A figure of noisy distinct-people counts per cell: ``records`` are (person,
    cell) pairs, already one per person and cell."""
    people: Counter[tuple[str, ...]] = Counter(cell for _, cell in records)
    n = noise.counts(
        ["|".join(cell) for _, cell in records],
        ["|".join(key) for key in keys],
        per_person=per_person,
        epsilon=policy.epsilon,
    )
    cells = []
    for key, value in zip(keys, n.values, strict=True):
        suppressed = people[key] < policy.k
        cells.append(
            {
                **dict(zip(fields, key, strict=True)),
                "value": None if suppressed else max(round(value), 0),
                "suppressed": suppressed,
            }
        )
    return {
        "name": name,
        "title": FIGURES[name],
        "unit": "people",
        "guarantee": _guarantee(
            policy, n, "OpenDP make_count_by_categories >> make_laplace", contribution
        ),
        "cells": cells,
    }


def _sum_figure(
    name: str,
    policy: Policy,
    inp: Inputs,
    index: int,
    upper: float,
    unit: str,
    digits: int,
) -> dict[str, Any]:
    days = inp.days
    per_day: dict[date, list[float]] = defaultdict(list)
    for (_, day), values in inp.movement.items():
        per_day[day].append(float(values[index]))
    n = noise.sums([per_day[d] for d in days], upper=upper, epsilon=policy.epsilon)
    cells = []
    for day, value in zip(days, n.values, strict=True):
        suppressed = len(per_day[day]) < policy.k
        shown = None if suppressed else round(max(value, 0.0), digits)
        cells.append(
            {
                "day": day.isoformat(),
                "value": int(shown) if shown is not None and digits == 0 else shown,
                "suppressed": suppressed,
            }
        )
    return {
        "name": name,
        "title": FIGURES[name],
        "unit": unit,
        "guarantee": _guarantee(
            policy,
            n,
            "OpenDP make_clamp >> make_sum >> make_laplace, per day",
            f"one value per person per day, clamped to [0, {upper:g}]",
        ),
        "cells": cells,
    }


def compute(inp: Inputs, policy: Policy) -> list[dict[str, Any]]:
    """The figures of a release from de-identified records (noise drawn anew on every
    call)."""
    days = inp.days
    day_keys = [(d.isoformat(),) for d in days]
    active = _count_figure(
        "active_accounts",
        policy,
        day_keys,
        ("day",),
        [(p, (d.isoformat(),)) for p, d in sorted(inp.active)],
        per_person=len(days),
        contribution="at most once per person per day",
    )
    features = _count_figure(
        "feature_use",
        policy,
        [(d.isoformat(), f) for d in days for f in FEATURES],
        ("day", "feature"),
        [(p, (d.isoformat(), f)) for p, d, f in sorted(inp.features)],
        per_person=len(days) * len(FEATURES),
        contribution="at most once per person per day and feature",
    )
    trips = _sum_figure("trips", policy, inp, 0, TRIPS_MAX, "trips", 0)
    distance = _sum_figure("distance_km", policy, inp, 1, KM_MAX, "km", 1)
    wearer_keys = sorted(
        set(inp.wearers.values()), key=lambda k: (inputs_mod.BRACKETS.index(k[0]), k[1])
    )
    wearers = _count_figure(
        "watch_wearers",
        policy,
        wearer_keys,
        ("age_bracket", "region"),
        [(p, cell) for p, cell in sorted(inp.wearers.items())],
        per_person=1,
        contribution="once per person (a person wearing two watches counts once)",
    )
    wearers["as_of"] = clock.utcnow().isoformat()
    return [active, features, trips, distance, wearers]


# --- the budget and the action ------------------------------------------------------------


async def budget(s: AsyncSession, policy: Policy) -> Budget:
    """What the releases of the current period (the last ``period_days``) spent."""
    since = clock.utcnow() - timedelta(days=policy.period_days)
    rows = (
        (
            await s.execute(
                select(StatsRelease)
                .where(StatsRelease.created_at > since)
                .order_by(StatsRelease.created_at)
            )
        )
        .scalars()
        .all()
    )
    spent = sum(r.epsilon_total for r in rows)
    return Budget(since, spent, policy.budget, policy.period_days, list(rows))


def _refusal(b: Budget, asked: float) -> Problem:
    return Problem(
        409,
        "stats.budget_exceeded",
        f"This release would spend epsilon {asked:.3g}, but the releases of the last "
        f"{b.period_days} days already spent {b.spent:.3g} of the {b.limit:.3g} allowed "
        f"({b.left:.3g} left). Wait until older releases leave the period, or release "
        "fewer or less exact figures.",
        asked=asked,
        spent=b.spent,
        budget=b.limit,
        period_days=b.period_days,
    )


async def publish(
    s: AsyncSession, policy: Policy, *, first_day: date, last_day: date
) -> StatsRelease:
    """Compute a release of the days ``first_day``..``last_day``, record it with the
    epsilon it spent and commit; refused (409 ``stats.budget_exceeded``, nothing
    recorded) when the period's releases would spend more than the budget."""
    _check_policy(policy)
    _check_window(first_day, last_day)
    before = await budget(s, policy)
    if before.spent + policy.per_release > policy.budget + _FLOAT_SLACK:
        raise _refusal(before, policy.per_release)
    inp = await inputs_mod.read(s, first_day=first_day, last_day=last_day)
    figures = compute(inp, policy)
    del inp
    epsilons = {f["name"]: float(f["guarantee"]["epsilon"]) for f in figures}
    total = sum(epsilons.values())
    # the check again, serialised with every other release's: it counts what
    # committed while this one was computed
    if s.get_bind().dialect.name == "postgresql":
        await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _BUDGET_LOCK})
    release = StatsRelease(
        created_at=clock.utcnow(),
        first_day=first_day,
        last_day=last_day,
        k=policy.k,
        epsilons=epsilons,
        epsilon_total=total,
        figures=figures,
    )
    s.add(release)
    await s.flush()  # on SQLite the first write of the transaction takes the write lock
    since = clock.utcnow() - timedelta(days=policy.period_days)
    spent = (
        await s.execute(
            select(func.coalesce(func.sum(StatsRelease.epsilon_total), 0.0)).where(
                StatsRelease.created_at > since
            )
        )
    ).scalar_one()
    if float(spent) > policy.budget + _FLOAT_SLACK:
        await s.rollback()
        raise _refusal(await budget(s, policy), total)
    await s.commit()
    return release


async def latest(s: AsyncSession) -> StatsRelease | None:
    """The newest release (what the portal shows), without spending anything."""
    q = select(StatsRelease).order_by(StatsRelease.created_at.desc()).limit(1)
    return (await s.execute(q)).scalar_one_or_none()


def as_dict(r: StatsRelease) -> dict[str, Any]:
    return {
        "id": r.id,
        "created_at": r.created_at.isoformat(),
        "first_day": r.first_day.isoformat(),
        "last_day": r.last_day.isoformat(),
        "k": r.k,
        "epsilon_total": r.epsilon_total,
        "epsilons": r.epsilons,
        "figures": r.figures,
    }
