"""Stays, trips, modes and driving events (kares.geo.timeline) on synthetic days."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kares.geo.distance import haversine_m
from kares.geo.points import Point
from kares.geo.timeline import (
    DrivingSummary,
    Stay,
    Timeline,
    TimelineParams,
    Trip,
    detect,
    driving_score,
)
from tests.support.tracks import (
    DAY0,
    Route,
    Seg,
    TrackBuilder,
    one_hz_day,
    reference_day,
    scenario,
)

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only

P = TimelineParams()


# -- helpers ------------------------------------------------------------------------


def sequence(tl: Timeline) -> list[Stay | Trip]:
    items: list[Stay | Trip] = [*tl.stays, *tl.trips]
    items.sort(key=lambda x: (x.start_t, x.end_t))
    return items


def check_invariants(points: Sequence[Point], tl: Timeline, p: TimelineParams = P) -> None:
    """Everything the timeline promises whatever the input."""
    assert list(tl.stays) == sorted(tl.stays, key=lambda s: s.start_t)
    assert list(tl.trips) == sorted(tl.trips, key=lambda s: s.start_t)
    good = [q for q in points if q.acc is None or q.acc <= p.max_accuracy_m]
    if not good:
        assert tl == Timeline((), ())
        return
    t0 = min(q.t for q in good)
    t1 = max(q.t for q in good)
    items = sequence(tl)
    for a, b in pairwise(items):
        assert a.end_t <= b.start_t + 1e-6, (a, b)  # never overlap, in time order
    total = 0.0
    for s in tl.stays:
        assert s.end_t - s.start_t >= p.min_stay_s - 1e-6
        assert t0 - 1e-6 <= s.start_t and s.end_t <= t1 + 1e-6
        assert s.radius_m >= 0 and s.points >= 1
        assert -90 <= s.lat <= 90 and -180 <= s.lon <= 180
        total += s.end_t - s.start_t
    for tr in tl.trips:
        assert tr.distance_m >= 0
        assert tr.duration_s > 0
        assert math.isclose(tr.duration_s, tr.end_t - tr.start_t, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(tr.avg_speed_mps, tr.distance_m / tr.duration_s, rel_tol=1e-9)
        assert tr.max_speed_mps >= tr.avg_speed_mps * (1 - 1e-9)
        assert tr.distance_m >= p.min_trip_distance_m
        assert t0 - 1e-6 <= tr.start_t and tr.end_t <= t1 + 1e-6
        assert 0 <= tr.first < tr.last < len(points)
        assert tr.mode in ("walking", "cycling", "driving", "other")
        if tr.mode == "driving":
            assert isinstance(tr.summary, DrivingSummary)
            sm = tr.summary
            assert sm.events == len(tr.events)
            assert sm.events == sm.speeding + sm.hard_braking + sm.rapid_acceleration
            assert 0 <= sm.score <= 100
            assert sm.speeding_s >= 0
        else:
            assert tr.summary is None and tr.events == ()
        for ev in tr.events:
            assert tr.start_t - 1e-6 <= ev.start_t <= ev.end_t <= tr.end_t + 1e-6
            assert ev.value > 0
        total += tr.duration_s
    assert total <= (t1 - t0) + 1e-6
    # Two trips follow each other without a stay only across a data gap > max_gap_s.
    ts = sorted(q.t for q in good)
    for a, b in pairwise(items):
        if isinstance(a, Trip) and isinstance(b, Trip):
            gaps = [y - x for x, y in pairwise(ts) if a.start_t - 1e-6 <= x and y <= b.end_t + 1e-6]
            assert gaps and max(gaps) > p.max_gap_s, (a, b)


def near(stay: Stay, lat: float, lon: float, within_m: float = 100.0) -> bool:
    return haversine_m(stay.lat, stay.lon, lat, lon) <= within_m


def assert_reference_day(b: TrackBuilder, tl: Timeline, *, gap: bool) -> None:
    check_invariants(b.points, tl)
    truth_stays = b.stays
    assert len(tl.stays) == 5, tl.stays
    for got, want in zip(tl.stays, truth_stays, strict=True):
        assert near(got, want.lat, want.lon), (got, want)
        # The stay covers the true one up to the sampling interval at its ends.
        assert abs(got.start_t - want.start_t) <= 11 * 60
        assert abs(got.end_t - want.end_t) <= 11 * 60
    lunch = tl.stays[2]
    assert 40 * 60 <= lunch.end_t - lunch.start_t <= 46 * 60
    assert [t.mode for t in tl.trips] == ["driving", "walking", "walking", "driving"]
    for got_trip, want_trip in zip(tl.trips, b.trips, strict=True):
        assert got_trip.distance_m == pytest.approx(want_trip.distance_m, rel=0.10)
        assert got_trip.start_t == pytest.approx(want_trip.start_t, abs=120)
        assert got_trip.end_t == pytest.approx(want_trip.end_t, abs=120)
    for a, s, b_ in zip(tl.stays, tl.trips, tl.stays[1:], strict=False):
        assert a.end_t <= s.start_t and s.end_t <= b_.start_t
    drive, walk1, walk2, home = tl.trips
    kinds = [e.kind for e in drive.events]
    assert sorted(kinds) == ["hard_braking", "speeding"], drive.events
    speeding = next(e for e in drive.events if e.kind == "speeding")
    assert speeding.value == pytest.approx(130 / 3.6, rel=0.05)
    assert 25 <= speeding.end_t - speeding.start_t <= 40
    braking = next(e for e in drive.events if e.kind == "hard_braking")
    assert 3.0 <= braking.value <= 8.0
    assert drive.summary is not None
    assert drive.summary.speeding == 1 and drive.summary.hard_braking == 1
    assert drive.summary.rapid_acceleration == 0
    assert drive.summary.max_speed_mps == pytest.approx(130 / 3.6, rel=0.05)
    assert drive.summary.score < 100
    assert home.events == () and home.summary is not None and home.summary.score == 100
    for w in (walk1, walk2):
        assert w.avg_speed_mps == pytest.approx(1.4, rel=0.2)
        assert w.summary is None
    # The walk starts at the work place and ends at lunch.
    assert haversine_m(walk1.start_lat, walk1.start_lon, tl.stays[1].lat, tl.stays[1].lon) < 1
    assert haversine_m(walk1.end_lat, walk1.end_lon, tl.stays[2].lat, tl.stays[2].lon) < 1
    # first / last: the last fix at the previous place and the first at the next (the
    # trip itself starts a little earlier / ends a little later: leaving the centre).
    for before, trip, after in zip(tl.stays, tl.trips, tl.stays[1:], strict=False):
        first, last = b.points[trip.first], b.points[trip.last]
        assert haversine_m(first.lat, first.lon, before.lat, before.lon) <= P.stay_radius_m
        assert haversine_m(last.lat, last.lon, after.lat, after.lon) <= P.stay_radius_m
        assert trip.start_t <= first.t <= trip.start_t + 120
        assert trip.end_t - 120 <= last.t <= trip.end_t
    if gap:
        assert home.distance_m == pytest.approx(15_000, rel=0.10)


# -- the reference day --------------------------------------------------------------


def test_reference_day_heartbeats_and_gap() -> None:
    """Home heartbeats every 10 min, work fixes every minute with one 2 km outlier and
    some 500 m-accuracy fixes, 1 Hz travel, a 10-minute gap on the way home."""
    b = reference_day()
    tl = detect(b.points)
    assert_reference_day(b, tl, gap=True)


def test_reference_day_with_device_speed() -> None:
    b = reference_day(device_speed=True, seed=11)
    tl = detect(b.points)
    assert_reference_day(b, tl, gap=True)


@pytest.mark.parametrize("seed", [3, 4])
def test_reference_day_at_one_hz(seed: int) -> None:
    """The same day at 1 Hz everywhere: 30-80 m jitter every second while stationary."""
    b = reference_day(seed=seed, stay_interval_s=1.0, evening_gap_s=0.0)
    tl = detect(b.points)
    assert_reference_day(b, tl, gap=False)
    assert sum(s.points for s in tl.stays) > 70_000


def test_reference_day_elsewhere_on_the_globe() -> None:
    """Southern hemisphere, across the antimeridian: longitudes jump from 180 to -180."""
    b = reference_day(seed=5, lat0=-16.8, lon0=179.99)
    assert any(q.lon < 0 for q in b.points) and any(q.lon > 0 for q in b.points)
    tl = detect(b.points)
    assert_reference_day(b, tl, gap=True)
    for s in tl.stays:
        assert -180 <= s.lon <= 180


def test_one_hz_day_helper_is_a_full_day() -> None:
    pts = one_hz_day()
    assert len(pts) == 86_400
    tl = detect(pts)
    assert len(tl.stays) == 5 and len(tl.trips) == 4


# -- stationary robustness -----------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_phone_at_home_heartbeats_is_one_stay(seed: int) -> None:
    """One fix every 10-15 minutes for a day, 30-80 m jitter, one wild fix: one stay."""
    rnd = random.Random(seed)
    b = TrackBuilder(seed=seed)
    t = DAY0
    pts: list[Point] = []
    while t < DAY0 + 86_400:
        b.t = t
        b.stay(1.0, interval_s=1.0)
        t += rnd.uniform(600, 900)
    pts = b.points
    k = len(pts) // 2
    wild = pts[k]
    pts[k] = Point(wild.t, wild.lat + 0.018, wild.lon, 30.0)  # 2 km north
    tl = detect(pts)
    check_invariants(pts, tl)
    assert len(tl.stays) == 1 and tl.trips == ()
    assert tl.stays[0].points == len(pts) - 1


def test_watch_every_five_minutes() -> None:
    """A watch reporting every 5 min: home, a drive seen by a few fixes, school."""
    b = TrackBuilder(seed=2)
    b.stay(4 * 3600, interval_s=300, jitter_m=(10, 60))
    route = Route.legs(b.x, b.y, [(20_000.0, 45.0)])
    b.travel(route, ((10, 15.0), (None, 15.0), (10, 0.0)), mode="driving", interval_s=300)
    b.stay(4 * 3600, interval_s=300, jitter_m=(10, 60))
    tl = detect(b.points)
    check_invariants(b.points, tl)
    assert len(tl.stays) == 2 and len(tl.trips) == 1
    trip = tl.trips[0]
    assert trip.mode == "driving"
    assert trip.distance_m == pytest.approx(20_000, rel=0.10)


@pytest.mark.parametrize("seed", range(3))
def test_one_hz_jitter_invents_no_trip(seed: int) -> None:
    pts = scenario([Seg("stay", 3 * 3600, 1.0, jitter_m=80.0)], seed=seed, outliers=5)
    tl = detect(pts)
    check_invariants(pts, tl)
    assert len(tl.stays) == 1 and tl.trips == ()
    assert tl.stays[0].radius_m <= 100


def test_outlier_inside_a_stay_does_not_split_it() -> None:
    b = TrackBuilder(seed=9)
    b.stay(3 * 3600, interval_s=60, outliers=[(3600.0, 2000.0, 90.0)])
    tl = detect(b.points)
    assert len(tl.stays) == 1 and tl.trips == ()


def test_inaccurate_fixes_are_ignored() -> None:
    b = TrackBuilder(seed=4)
    b.stay(2 * 3600, interval_s=60, bad_accuracy_every=3)
    tl = detect(b.points)
    assert len(tl.stays) == 1 and tl.trips == ()
    assert all(q.acc is not None for q in b.points)
    good = sum(1 for q in b.points if q.acc is not None and q.acc <= 200)
    assert tl.stays[0].points == good


def test_stepping_out_briefly_is_one_stay() -> None:
    """Out to the garden 120 m away for three minutes and back: still at home."""
    pts = scenario(
        [
            Seg("stay", 1800, 5.0, jitter_m=40.0),
            Seg("move", 100, 1.0, speed_mps=1.2, heading_deg=0.0),
            Seg("stay", 180, 5.0, jitter_m=10.0),
            Seg("move", 100, 1.0, speed_mps=1.2, heading_deg=180.0),
            Seg("stay", 1800, 5.0, jitter_m=40.0),
        ]
    )
    tl = detect(pts)
    check_invariants(pts, tl)
    assert len(tl.stays) == 1 and tl.trips == ()


def test_a_long_silence_at_the_same_place_is_one_stay() -> None:
    pts = scenario(
        [
            Seg("stay", 1800, 60.0, jitter_m=50.0),
            Seg("gap", 8 * 3600),
            Seg("stay", 1800, 60.0, jitter_m=50.0),
        ]
    )
    tl = detect(pts)
    assert len(tl.stays) == 1 and tl.trips == ()
    assert tl.stays[0].end_t - tl.stays[0].start_t > 8.9 * 3600


# -- gaps ---------------------------------------------------------------------------


def test_gap_then_elsewhere_is_an_unknown_trip() -> None:
    """No data for an hour, then 20 km away: a straight-line trip of mode "other"."""
    pts = scenario(
        [
            Seg("stay", 1800, 60.0, jitter_m=30.0),
            Seg("gap", 3600),
            Seg("jump", 0, distance_m=20_000.0, heading_deg=90.0),
            Seg("stay", 1800, 60.0, jitter_m=30.0),
        ]
    )
    tl = detect(pts)
    check_invariants(pts, tl)
    assert len(tl.stays) == 2 and len(tl.trips) == 1
    trip = tl.trips[0]
    assert trip.mode == "other"
    assert trip.distance_m == pytest.approx(20_000, rel=0.01)
    assert trip.max_speed_mps == pytest.approx(trip.avg_speed_mps)
    assert trip.events == () and trip.summary is None
    assert trip.start_t == tl.stays[0].end_t and trip.end_t == tl.stays[1].start_t


def test_long_gap_splits_a_trip() -> None:
    """Drive, then two silent hours, then a walk to a stay: the observed parts keep their
    modes and the gap is an unknown trip between them."""
    pts = scenario(
        [
            Seg("stay", 1800, 30.0, jitter_m=30.0),
            Seg("move", 600, 1.0, speed_mps=15.0, heading_deg=0.0),
            Seg("gap", 7200),
            Seg("jump", 0, distance_m=30_000.0, heading_deg=90.0),
            Seg("move", 600, 1.0, speed_mps=1.4, heading_deg=90.0),
            Seg("stay", 1800, 30.0, jitter_m=30.0),
        ]
    )
    tl = detect(pts)
    check_invariants(pts, tl)
    assert len(tl.stays) == 2
    assert [t.mode for t in tl.trips] == ["driving", "other", "walking"]
    drive, gap, walk = tl.trips
    assert drive.distance_m == pytest.approx(9000, rel=0.05)
    assert walk.distance_m == pytest.approx(840, rel=0.15)
    assert gap.end_t - gap.start_t >= 7200


def test_short_gap_inside_a_drive_keeps_one_driving_trip() -> None:
    pts = scenario(
        [
            Seg("stay", 1800, 30.0, jitter_m=30.0),
            Seg("move", 300, 1.0, speed_mps=20.0, heading_deg=0.0),
            Seg("gap", 600),
            Seg("jump", 0, distance_m=12_000.0, heading_deg=0.0),
            Seg("move", 300, 1.0, speed_mps=20.0, heading_deg=0.0),
            Seg("stay", 1800, 30.0, jitter_m=30.0),
        ]
    )
    tl = detect(pts)
    check_invariants(pts, tl)
    assert [t.mode for t in tl.trips] == ["driving"]
    assert tl.trips[0].distance_m == pytest.approx(24_000, rel=0.05)


# -- input handling -----------------------------------------------------------------


def test_empty_and_tiny_inputs() -> None:
    assert detect([]) == Timeline((), ())
    one = Point(DAY0, 45.0, 7.0)
    assert detect([one]) == Timeline((), ())
    assert detect([one, Point(DAY0 + 10, 45.0, 7.0)]) == Timeline((), ())
    bad = Point(DAY0, math.nan, 7.0)
    assert detect([bad, Point(DAY0 + 1, 91.0, 7.0)]) == Timeline((), ())


def test_duplicate_timestamps_and_unsorted_input() -> None:
    b = reference_day(seed=8)
    pts = list(b.points)
    dup = [q for i, q in enumerate(pts) if i % 7 == 0]
    with_dups = sorted(pts + dup, key=lambda q: q.t)
    tl = detect(with_dups)
    check_invariants(with_dups, tl)
    assert len(tl.stays) == 5 and len(tl.trips) == 4
    shuffled = list(pts)
    random.Random(1).shuffle(shuffled)
    tl2 = detect(shuffled)
    assert [(s.start_t, s.end_t) for s in tl2.stays] == [
        (s.start_t, s.end_t) for s in detect(pts).stays
    ]
    for trip in tl2.trips:
        assert shuffled[trip.first].t <= shuffled[trip.last].t


def test_stationary_only_without_enough_time_is_nothing() -> None:
    pts = scenario([Seg("stay", 200, 10.0, jitter_m=50.0)])
    assert detect(pts) == Timeline((), ())


def test_params_change_the_result() -> None:
    pts = scenario([Seg("stay", 400, 10.0, jitter_m=20.0)])
    assert len(detect(pts).stays) == 1
    assert detect(pts, TimelineParams(min_stay_s=600)).stays == ()


def test_trip_without_stays() -> None:
    pts = scenario([Seg("move", 900, 1.0, speed_mps=3.0, heading_deg=10.0)])
    tl = detect(pts)
    check_invariants(pts, tl)
    assert tl.stays == () and len(tl.trips) == 1
    trip = tl.trips[0]
    assert trip.mode == "cycling"
    assert trip.first == 0 and trip.last == len(pts) - 1
    assert trip.distance_m == pytest.approx(2700, rel=0.05)


@pytest.mark.parametrize(
    ("speed", "mode"), [(1.3, "walking"), (4.5, "cycling"), (14.0, "driving"), (30.0, "driving")]
)
def test_modes(speed: float, mode: str) -> None:
    pts = scenario(
        [
            Seg("stay", 900, 10.0, jitter_m=20.0),
            Seg("move", 3000 / speed, 1.0, speed_mps=speed, heading_deg=300.0),
            Seg("stay", 900, 10.0, jitter_m=20.0),
        ]
    )
    tl = detect(pts)
    check_invariants(pts, tl)
    assert [t.mode for t in tl.trips] == [mode]
    assert tl.trips[0].distance_m == pytest.approx(3000, rel=0.10)


def test_rapid_acceleration_and_no_events_off_the_road() -> None:
    b = TrackBuilder(seed=12)
    b.stay(900, interval_s=10)
    route = Route.winding(b.x, b.y, 3000.0, 90.0)
    # 0 -> 72 km/h in 5 s, straight from the parking spot
    b.travel(route, ((5.0, 20.0), (None, 20.0), (15.0, 0.0)), mode="driving", noise_m=0.5)
    b.stay(900, interval_s=10)
    tl = detect(b.points)
    (trip,) = tl.trips
    assert [e.kind for e in trip.events] == ["rapid_acceleration"]
    assert trip.events[0].value == pytest.approx(4.0, rel=0.3)
    assert trip.start_t == pytest.approx(b.trips[0].start_t, abs=3)
    # Same thing on foot-speed thresholds: a cyclist is never judged as a driver.
    slow = scenario(
        [
            Seg("stay", 900, 10.0, jitter_m=20.0),
            Seg("move", 900, 1.0, speed_mps=5.0, heading_deg=0.0),
            Seg("stay", 900, 10.0, jitter_m=20.0),
        ]
    )
    (bike,) = detect(slow).trips
    assert bike.mode == "cycling" and bike.events == () and bike.summary is None


def test_driving_score() -> None:
    assert driving_score(10_000, 0, 0, 0, 0.0) == 100
    assert driving_score(10_000, 1, 1, 0, 30.0) == 100 - 10 - 8 - 3
    assert driving_score(100_000, 1, 1, 0, 30.0) == round(100 - 21 / 4)
    assert driving_score(1_000, 20, 20, 20, 600.0) == 0


# -- properties ---------------------------------------------------------------------

segments = st.one_of(
    st.builds(
        Seg,
        kind=st.just("stay"),
        duration_s=st.floats(60, 3 * 3600),
        interval_s=st.sampled_from([1.0, 5.0, 30.0, 60.0, 300.0, 600.0, 900.0]),
        jitter_m=st.floats(0, 80),
    ),
    st.builds(
        Seg,
        kind=st.just("move"),
        duration_s=st.floats(5, 3600),
        interval_s=st.sampled_from([1.0, 2.0, 5.0, 30.0, 300.0]),
        speed_mps=st.floats(0.3, 40),
        heading_deg=st.floats(0, 360),
    ),
    st.builds(Seg, kind=st.just("gap"), duration_s=st.floats(2, 5 * 3600)),
)

PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@PROPS
@given(
    segs=st.lists(segments, min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
    outliers=st.integers(0, 3),
    duplicates=st.integers(0, 3),
)
def test_invariants_on_random_days(
    segs: list[Seg], seed: int, outliers: int, duplicates: int
) -> None:
    pts = scenario(segs, seed=seed, outliers=outliers, duplicates=duplicates)
    tl = detect(pts)
    check_invariants(pts, tl)
    assert detect(pts) == tl  # deterministic


@PROPS
@given(
    parts=st.lists(
        st.tuples(
            st.floats(60, 4 * 3600),
            st.sampled_from([1.0, 10.0, 60.0, 300.0, 600.0, 900.0]),
            st.floats(0, 80),
            st.floats(0, 6 * 3600),
        ),
        min_size=1,
        max_size=5,
    ),
    seed=st.integers(0, 2**16),
    outliers=st.integers(0, 3),
)
def test_stationary_jitter_and_silences_are_one_stay(
    parts: list[tuple[float, float, float, float]], seed: int, outliers: int
) -> None:
    """However sparse, jittery (up to 80 m) or interrupted by silences and single wild
    fixes: someone who never moves has exactly one stay and no trip."""
    segs: list[Seg] = []
    for dur, interval, jitter, gap in parts:
        segs.append(Seg("stay", dur, interval, jitter_m=jitter))
        segs.append(Seg("gap", gap))
    pts = scenario(segs, seed=seed, outliers=outliers)
    tl = detect(pts)
    check_invariants(pts, tl)
    assert tl.trips == ()
    clean = sorted(q.t for q in pts)
    if clean[-1] - clean[0] >= P.min_stay_s:
        assert len(tl.stays) == 1
        assert tl.stays[0].radius_m <= 100
    else:
        assert tl.stays == ()


@PROPS
@given(
    stays=st.lists(
        st.tuples(st.floats(600, 3 * 3600), st.sampled_from([1.0, 30.0, 300.0])),
        min_size=2,
        max_size=5,
    ),
    legs=st.lists(st.tuples(st.floats(1.0, 30.0), st.floats(0, 360)), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_distinct_places_are_found(
    stays: list[tuple[float, float]], legs: list[tuple[float, float]], seed: int
) -> None:
    """Stays at places at least 1 km apart joined by 1 Hz trips: one stay per place, one
    trip per move, and the trips' distances within 10 % of the truth."""
    segs: list[Seg] = []
    for k, (dur, interval) in enumerate(stays):
        segs.append(Seg("stay", dur, interval, jitter_m=60.0))
        if k < len(stays) - 1:
            speed, heading = legs[k]
            segs.append(Seg("move", 1500.0 / speed, 1.0, speed_mps=speed, heading_deg=heading))
    pts = scenario(segs, seed=seed)
    tl = detect(pts)
    check_invariants(pts, tl)
    assert len(tl.stays) == len(stays)
    assert len(tl.trips) == len(stays) - 1
    for trip in tl.trips:
        assert trip.distance_m == pytest.approx(1500, rel=0.10)
