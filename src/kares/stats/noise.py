"""The differentially private measurements, all built with OpenDP: no noise of our own.

Two shapes cover every figure:

* :func:`counts`: how many records fall in each of a fixed list of cells, with
  Laplace noise (``make_count_by_categories >> make_laplace``, discrete Laplace on
  integers). The caller says how many records one person can have at most
  (``per_person``, the distance between neighbouring datasets under the symmetric
  metric); OpenDP derives the sensitivity from it and its privacy map gives the
  epsilon spent.
* :func:`sums`: one clamped sum per day (``make_clamp >> make_sum >> make_laplace``),
  one value per person and day; OpenDP derives the sensitivity from the clamping
  bounds. The days are composed one after another (a person may be in every day),
  so the figure's epsilon is the sum of the days' (basic sequential composition).

The noise scale is the smallest OpenDP's binary search finds whose privacy map stays
within the epsilon asked for, and the epsilon recorded is the map's own answer for
that scale, never the figure asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import opendp.prelude as dp

dp.enable_features("contrib")

MARGIN_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Noisy:
    values: list[float]
    """One noisy value per cell, in the cells' order."""
    epsilon: float
    """What the measurement spent, as OpenDP's privacy map says (at most the epsilon asked)."""
    scale: float
    """The Laplace scale b of each cell's noise."""

    @property
    def margin95(self) -> float:
        """|noise| stays below this with 95 % probability: P(|X| > t) = exp(-t/b)."""
        return self.scale * math.log(1 / (1 - MARGIN_CONFIDENCE))


_SCALES: dict[tuple[Any, ...], float] = {}


def _calibrated(
    make: Callable[[float], Any], d_in: Any, epsilon: float, shape: tuple[Any, ...]
) -> tuple[Any, float, float]:
    """The measurement with the smallest scale whose privacy map for ``d_in`` is
    within ``epsilon``, its scale, and the epsilon the map gives for ``d_in``.

    The binary search is remembered per ``shape`` (the chain's kind and bounds, which
    with ``d_in`` and ``epsilon`` decide the map); the measurement built with the
    remembered scale is checked against its own map every time."""
    key = (*shape, d_in, epsilon)
    scale = _SCALES.get(key)
    if scale is None:
        scale = _SCALES[key] = float(dp.binary_search_param(make, d_in=d_in, d_out=epsilon))
    meas = make(scale)
    spent = float(meas.map(d_in))
    if spent > epsilon:  # binary_search_param promises otherwise; never publish past it
        raise RuntimeError(f"OpenDP calibrated a scale that spends {spent} > {epsilon}")
    return meas, scale, spent


def counts(
    records: Sequence[str], cells: Sequence[str], *, per_person: int, epsilon: float
) -> Noisy:
    """Noisy counts of ``records`` (each the cell key of one record) in ``cells``.

    ``per_person``: the most records one person contributes, over all cells; the
    caller has bounded it (one record per person, day and cell at most)."""
    space = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()

    def make(scale: float) -> Any:
        return (
            space
            >> dp.t.then_count_by_categories(categories=list(cells), null_category=False)
            >> dp.m.then_laplace(scale=scale)
        )

    meas, scale, spent = _calibrated(make, max(per_person, 1), epsilon, ("counts",))
    out = meas(list(records)) if cells else []
    return Noisy([float(v) for v in out], spent, scale)


def sums(per_day: Sequence[Sequence[float]], *, upper: float, epsilon: float) -> Noisy:
    """One noisy sum per day of values clamped to [0, upper]; ``per_day[i]`` holds at
    most one value per person (the caller adds a person's values of the day up first)."""
    days = max(len(per_day), 1)
    share = epsilon / days
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()

    def make(scale: float) -> Any:
        return (
            space
            >> dp.t.then_clamp(bounds=(0.0, float(upper)))
            >> dp.t.then_sum()
            >> dp.m.then_laplace(scale=scale)
        )

    meas, scale, per_day_spent = _calibrated(make, 1, share, ("sums", float(upper)))
    values = [float(meas([float(v) for v in day])) for day in per_day]
    return Noisy(values, per_day_spent * len(per_day), scale)
