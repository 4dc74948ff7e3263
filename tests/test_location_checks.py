"""The per-fix checks of ``location.service.ingest``, against the plain rules.

The checks of each fix run in one pass, with one combined condition for the usual
fix; they must give the same rows, refusals and duplicates as the checks one by one
(the implementation ingest had before), for fixes at and beyond every limit.

The implied-speed check runs over a whole batch in numpy and walks fix by fix only
where a cheap bound leaves a step open; it must flag exactly the fixes the plain
walk below flags (the rule as docs/LOCATION.md states it), for any batch: out of
order, equal times, a stored last location before, inside or after the batch, and
fixes that are not good (flagged already, or unresolved)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kares.config import Settings
from kares.geo.distance import haversine_m
from kares.geo.resolver import Cell, WifiAp
from kares.location import service
from kares.location.service import (
    FIX_COLUMNS,
    REJECT_DETAIL,
    SOURCES,
    FixIn,
    IngestResult,
    Refusal,
    _implied_speeds,
)
from kares.privacy import service as privacy
from kares.privacy.catalog import catalog_of

pytestmark = pytest.mark.db_agnostic  # pure functions, no database: the SQLite tier only

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
    want = plain_walk(dicts, last, MAX_SPEED)
    assert set(_implied_speeds(rows, last, MAX_SPEED)) == want
    # both ways of walking: without numpy (a few fixes) and with it (a batch)
    few = service._FEW
    try:
        for service._FEW in (0, 10**9):
            assert set(_implied_speeds(rows, last, MAX_SPEED)) == want
    finally:
        service._FEW = few


def test_a_jump_and_the_way_back_flag_only_the_jump() -> None:
    rows = [row(0, 31.23, 121.47, "ok"), row(10_000, 39.9, 116.4, "ok")]
    rows.append(row(20_000, 31.2301, 121.4701, "ok"))
    assert _implied_speeds(rows, None, MAX_SPEED) == [1]
    # starting from a stored last location far away, the first fix is the jump
    assert _implied_speeds(rows[2:], (19_000, 39.9, 116.4), MAX_SPEED) == [0]


# -- the checks of each fix ----------------------------------------------------------------


def _clean_optional(v: float | None, lo: float, hi: float) -> float | None:
    if v is None or not math.isfinite(v) or v < lo or v > hi:
        return None
    return float(v)


def plain_checks(
    rt: Any, fixes: list[FixIn], *, now_ms: int, approximate: bool, wifi_allowed: bool
) -> tuple[list[tuple[Any, ...]], list[int], IngestResult]:
    """Each fix through the checks one by one, as ingest did before its single pass."""
    settings = rt.settings
    res = IngestResult(precision="approximate" if approximate else "precise")
    oldest_ms = now_ms - service._retention_ms(rt)
    newest_ms = now_ms + settings.location_future_tolerance_seconds * 1000
    rows: list[dict[str, Any]] = []
    seen_ids: set[str] = set()

    def reject(i: int, fix: FixIn, code: str) -> None:
        res.rejected.append(Refusal(i, fix.client_id, code, REJECT_DETAIL[code]))

    for i, fix in enumerate(fixes):
        if fix.client_id is not None:
            if fix.client_id in seen_ids:
                res.duplicates += 1
                continue
            seen_ids.add(fix.client_id)
        if fix.source not in SOURCES:
            reject(i, fix, "fix.invalid_source")
            continue
        if fix.t_ms > newest_ms:
            reject(i, fix, "fix.future")
            continue
        if fix.t_ms < oldest_ms:
            reject(i, fix, "fix.too_old")
            continue
        if fix.accuracy_m is not None and (
            not math.isfinite(fix.accuracy_m) or fix.accuracy_m <= 0
        ):
            reject(i, fix, "fix.invalid_accuracy")
            continue
        lat, lon, acc, source = fix.lat, fix.lon, fix.accuracy_m, fix.source
        status, flag, radio = "ok", None, None
        if lat is None or lon is None:
            resolved = service._resolve(rt, fix, wifi_allowed)
            if resolved is not None:
                lat, lon, acc, source = resolved
            elif approximate:
                reject(i, fix, "fix.unresolvable")
                continue
            else:
                radio = service._radio_json(fix, wifi_allowed)
                if radio is None:
                    reject(i, fix, "fix.no_position")
                    continue
                status = "unresolved"
        if lat is not None and lon is not None:
            if not (math.isfinite(lat) and math.isfinite(lon)):
                reject(i, fix, "fix.invalid_coordinates")
                continue
            if abs(lat) > 90 or abs(lon) > 180:
                reject(i, fix, "fix.out_of_range")
                continue
            if lat == 0 and lon == 0:
                reject(i, fix, "fix.null_island")
                continue
        speed = _clean_optional(fix.speed_mps, 0, 1e6)
        course = _clean_optional(fix.course_deg, 0, 360)
        altitude = _clean_optional(fix.altitude_m, -1000, 100_000)
        battery = fix.battery if fix.battery is not None and 0 <= fix.battery <= 100 else None
        if status == "ok":
            if acc is not None and acc > settings.location_max_accuracy_m:
                status, flag = "flagged", "fix.poor_accuracy"
            elif speed is not None and speed > settings.location_max_speed_mps:
                status, flag = "flagged", "fix.impossible_speed"
        if approximate and lat is not None and lon is not None:
            lat, lon = privacy.coarsen(catalog_of(rt), service.APPROXIMATE, lat, lon)
            acc = max(acc or 0.0, service.APPROXIMATE_ACCURACY_M)
            speed = course = altitude = None
        rows.append(
            {
                "_i": i,
                "account_id": "acc",
                "device_id": "dev",
                "client_id": fix.client_id,
                "recorded_ms": fix.t_ms,
                "received_ms": now_ms,
                "lat": lat,
                "lon": lon,
                "accuracy_m": acc,
                "altitude_m": altitude,
                "speed_mps": speed,
                "course_deg": course,
                "battery": battery,
                "source": source,
                "precise": not approximate,
                "status": status,
                "flag": flag,
                "radio": radio,
            }
        )
    index = [r.pop("_i") for r in rows]
    return [tuple(r[c] for c in FIX_COLUMNS) for r in rows], index, res


NOW_MS = 1_790_000_000_000
nan, inf = math.nan, math.inf
some = st.sampled_from
fix_values = st.builds(
    FixIn,
    t_ms=some([NOW_MS, NOW_MS - 60_000, NOW_MS + 299_000, NOW_MS + 301_000,
               NOW_MS - 89 * 86_400_000, NOW_MS - 91 * 86_400_000]),
    lat=some([31.23, -33.9, 90.0, -90.0, 90.0001, 0.0, None, nan, inf, 1e-300]),
    lon=some([121.47, -70.6, 180.0, -180.0, 180.5, 0.0, None, nan, -inf]),
    client_id=some([None, "a", "b", "c", "d"]),
    accuracy_m=some([None, 5.0, 0.0, -3.0, nan, inf, 1999.0, 2500.0, 3]),
    altitude_m=some([None, 12.5, -1000.0, -1001.0, 1e5, 2e5, nan]),
    speed_mps=some([None, 0.0, 1.5, -1.0, 339.9, 341.0, 1e7, nan, inf]),
    course_deg=some([None, 0.0, 360.0, 361.0, -1.0, nan]),
    battery=some([None, 0, 100, 101, -1, 55]),
    source=some(["gps", "wifi", "cell", "manual", "tea leaves"]),
    cells=some([(), (Cell(460, 0, 1, 2, -70),)]),
    wifi=some([(), (WifiAp("", "00:11:22:33:44:55", -60),)]),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    fixes=st.lists(fix_values, max_size=12),
    approximate=st.booleans(),
    wifi_allowed=st.booleans(),
)
def test_one_pass_checks_give_what_the_checks_one_by_one_give(
    fixes: list[FixIn], approximate: bool, wifi_allowed: bool
) -> None:
    rt = SimpleNamespace(settings=Settings(var_dir="/nonexistent-kares-test"))
    want_rows, want_index, want = plain_checks(
        rt, fixes, now_ms=NOW_MS, approximate=approximate, wifi_allowed=wifi_allowed
    )
    got = IngestResult(precision="approximate" if approximate else "precise")
    rows, index = service._validate(
        rt,  # type: ignore[arg-type]
        fixes,
        got,
        account_id="acc",
        device_id="dev",
        now_ms=NOW_MS,
        approximate=approximate,
        wifi_allowed=wifi_allowed,
    )
    assert index == want_index
    assert got.rejected == want.rejected and got.duplicates == want.duplicates
    # NaN never reaches a row, so rows compare equal exactly when they are the same
    assert rows == want_rows
    assert [tuple(map(type, r)) for r in rows] == [tuple(map(type, r)) for r in want_rows]
