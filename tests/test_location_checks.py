"""The per-fix checks of ``location.service.ingest``, against the plain rule.

The implied-speed check runs over a whole batch in numpy and walks fix by fix only
where a cheap bound leaves a step open; it must flag exactly the fixes the plain
walk below flags (the rule as docs/LOCATION.md states it), for any batch: out of
order, equal times, a stored last location before, inside or after the batch, and
fixes that are not good (flagged already, or unresolved)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kares.geo.distance import haversine_m
from kares.location.service import FIX_COLUMNS, _implied_speeds

MAX_SPEED = 340.0


def plain_walk(rows: list[dict[str, Any]], last: Any, max_speed: float) -> set[int]:
    """The rule fix by fix (the implementation ingest had before it was vectorised)."""
    flagged: set[int] = set()
    prev: tuple[int, float, float] | None = None
    if last is not None:
        prev = (last[0], last[1], last[2])
    for k, r in sorted(enumerate(rows), key=lambda kr: kr[1]["recorded_ms"]):
        if r["status"] != "ok":
            continue
        if prev is not None and r["recorded_ms"] > prev[0]:
            dt = (r["recorded_ms"] - prev[0]) / 1000
            d = haversine_m(prev[1], prev[2], r["lat"], r["lon"])
            if d > 2000 and d / dt > max_speed:
                flagged.add(k)
                continue
        if prev is None or r["recorded_ms"] >= prev[0]:
            prev = (r["recorded_ms"], r["lat"], r["lon"])
    return flagged


def row(t_ms: int, lat: float, lon: float, status: str) -> tuple[Any, ...]:
    values = dict.fromkeys(FIX_COLUMNS)
    values.update(recorded_ms=t_ms, lat=lat, lon=lon, status=status)
    return tuple(values[c] for c in FIX_COLUMNS)


# a walk with jumps: small steps (metres), jumps of a few km and of hundreds of km
steps = st.tuples(
    st.integers(min_value=-2_000, max_value=60_000),  # ms after the fix before (may go back)
    st.sampled_from([0.0, 1e-5, 1e-4, 0.01, 0.03, 0.2, 5.0]),  # degrees moved
    st.sampled_from(["ok", "ok", "ok", "ok", "flagged", "unresolved"]),
    st.booleans(),  # move in latitude or longitude
)


@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(steps, max_size=60),
    last=st.one_of(
        st.none(),
        st.tuples(
            st.integers(min_value=-30_000, max_value=400_000),
            st.sampled_from([31.23, 31.3, 39.9]),
            st.sampled_from([121.47, 121.5, 116.4]),
        ),
    ),
)
def test_implied_speeds_flag_what_the_plain_walk_flags(steps: list[Any], last: Any) -> None:
    t, lat, lon = 0, 31.23, 121.47
    rows = []
    for dt, move, status, north in steps:
        t += dt
        if north:
            lat = max(-89.0, min(89.0, lat + move))
        else:
            lon = (lon + move + 180.0) % 360.0 - 180.0
        rows.append(row(t, lat, lon, status))
    dicts = [dict(zip(FIX_COLUMNS, r, strict=True)) for r in rows]
    assert set(_implied_speeds(rows, last, MAX_SPEED)) == plain_walk(dicts, last, MAX_SPEED)


def test_a_jump_and_the_way_back_flag_only_the_jump() -> None:
    rows = [row(0, 31.23, 121.47, "ok"), row(10_000, 39.9, 116.4, "ok")]
    rows.append(row(20_000, 31.2301, 121.4701, "ok"))
    assert _implied_speeds(rows, None, MAX_SPEED) == [1]
    # starting from a stored last location far away, the first fix is the jump
    assert _implied_speeds(rows[2:], (19_000, 39.9, 116.4), MAX_SPEED) == [0]
