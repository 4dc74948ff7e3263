"""Display simplification of tracks (kares.geo.simplify)."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kares.geo.distance import M_PER_DEG_LAT
from kares.geo.points import Point
from kares.geo.simplify import metres_per_pixel, simplify
from tests.support.tracks import DAY0, one_hz_day, reference_day

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only

PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def random_track(n: int, seed: int, *, step_m: float = 20.0, jitter_m: float = 0.0) -> list[Point]:
    """A random walk with turns (and optional jitter) near Lyon."""
    rng = np.random.default_rng(seed)
    heading = np.cumsum(rng.normal(0.0, 0.4, n))
    step = rng.uniform(0.0, step_m, n)
    x = np.cumsum(step * np.sin(heading)) + rng.normal(0.0, jitter_m + 1e-9, n)
    y = np.cumsum(step * np.cos(heading)) + rng.normal(0.0, jitter_m + 1e-9, n)
    lat0, lon0 = 45.76, 4.84
    kx = M_PER_DEG_LAT * math.cos(math.radians(lat0))
    return [Point(DAY0 + i, lat0 + y[i] / M_PER_DEG_LAT, lon0 + x[i] / kx) for i in range(n)]


def my_projection(points: list[Point]) -> tuple[np.ndarray, np.ndarray]:
    """Independent local projection: metres east/north of the first fix, scaled at the
    mean latitude."""
    lat = np.array([p.lat for p in points])
    lon = np.array([p.lon for p in points])
    lon = lon[0] + (lon - lon[0] + 180.0) % 360.0 - 180.0
    k = math.cos(math.radians(float(lat.mean()))) * M_PER_DEG_LAT
    return (lon - lon[0]) * k, (lat - lat[0]) * M_PER_DEG_LAT


def max_deviation(points: list[Point], kept: list[int]) -> float:
    """Largest distance of a dropped fix from the segment of the simplified line that
    replaces it."""
    x, y = my_projection(points)
    worst = 0.0
    for a, b in pairwise(kept):
        if b - a < 2:
            continue
        ax, ay, bx, by = x[a], y[a], x[b], y[b]
        px, py = x[a + 1 : b], y[a + 1 : b]
        dx, dy = bx - ax, by - ay
        ll = dx * dx + dy * dy
        if ll == 0:
            d = np.hypot(px - ax, py - ay)
        else:
            u = np.clip(((px - ax) * dx + (py - ay) * dy) / ll, 0.0, 1.0)
            d = np.hypot(px - (ax + u * dx), py - (ay + u * dy))
        worst = max(worst, float(d.max()))
    return worst


def well_formed(kept: list[int], n: int) -> None:
    assert kept == sorted(set(kept))
    if n:
        assert kept[0] == 0 and kept[-1] == n - 1
    assert all(isinstance(i, int) for i in kept)


# -- small and degenerate inputs ------------------------------------------------------


def test_tiny_inputs() -> None:
    p = Point(DAY0, 45.0, 7.0)
    assert simplify([]) == []
    assert simplify([p]) == [0]
    assert simplify([p, p]) == [0, 1]
    assert simplify([p, Point(DAY0 + 1, 45.1, 7.1)], zoom=3) == [0, 1]


@pytest.mark.parametrize("algorithm", ["rdp", "vw"])
def test_identical_points(algorithm: str) -> None:
    pts = [Point(DAY0 + i, 45.0, 7.0) for i in range(500)]
    assert simplify(pts, zoom=15, algorithm=algorithm) == [0, 499]  # type: ignore[arg-type]
    assert simplify(pts, tolerance_m=0.0, algorithm=algorithm) == [0, 499]  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["rdp", "vw"])
def test_straight_line_collapses(algorithm: str) -> None:
    pts = [Point(DAY0 + i, 45.0 + i * 1e-4, 7.0 + i * 2e-4) for i in range(2000)]
    assert simplify(pts, zoom=18, algorithm=algorithm) == [0, 1999]  # type: ignore[arg-type]
    # along a meridian the projection is exactly straight: even a zero tolerance drops all
    meridian = [Point(DAY0 + i, 45.0 + i * 1e-4, 7.0) for i in range(100)]
    assert simplify(meridian, tolerance_m=0.0) == [0, 99]


def test_straight_line_across_the_antimeridian() -> None:
    pts = [
        Point(DAY0 + i, -17.0, 179.95 + i * 1e-3 - (360.0 if 179.95 + i * 1e-3 > 180 else 0))
        for i in range(100)
    ]
    assert any(p.lon < 0 for p in pts)
    assert simplify(pts, tolerance_m=1.0) == [0, 99]


def test_bad_arguments() -> None:
    pts = random_track(10, 1)
    with pytest.raises(ValueError):
        simplify(pts, max_points=1)
    with pytest.raises(ValueError):
        simplify(pts, tolerance_m=-1.0)
    with pytest.raises(ValueError):
        simplify(pts, tolerance_m=math.nan)
    with pytest.raises(ValueError):
        simplify(pts, algorithm="dp")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        simplify([*pts, Point(DAY0, math.nan, 7.0)])


# -- tolerance and zoom ---------------------------------------------------------------


def test_metres_per_pixel() -> None:
    assert metres_per_pixel(0, 0.0) == pytest.approx(156_543.03, abs=0.01)
    assert metres_per_pixel(1, 60.0) == pytest.approx(156_543.03 / 4, rel=1e-6)
    assert metres_per_pixel(30, 10.0) == metres_per_pixel(22, 10.0)
    assert metres_per_pixel(-3, 10.0) == metres_per_pixel(0, 10.0)


def test_zoom_is_clamped() -> None:
    pts = random_track(3000, 5)
    assert simplify(pts, zoom=40, max_points=10_000) == simplify(pts, zoom=22, max_points=10_000)
    assert simplify(pts, zoom=-4) == simplify(pts, zoom=0)


def test_tolerance_wins_over_zoom() -> None:
    pts = random_track(3000, 6)
    assert simplify(pts, zoom=3, tolerance_m=2.0, max_points=10_000) == simplify(
        pts, tolerance_m=2.0, max_points=10_000
    )


def test_higher_zoom_keeps_more_points() -> None:
    pts = reference_day().points
    counts = [len(simplify(pts, zoom=z, max_points=100_000)) for z in range(6, 21, 2)]
    assert counts == sorted(counts)
    assert counts[-1] > 2 * counts[0]
    lat = sum(p.lat for p in pts) / len(pts)
    for z in (10, 14, 18):
        kept = simplify(pts, zoom=z, max_points=100_000)
        assert max_deviation(pts, kept) <= metres_per_pixel(z, lat) * (1 + 1e-6) + 1e-6


@PROPS
@given(
    n=st.integers(3, 3000),
    seed=st.integers(0, 2**16),
    tol=st.floats(0.0, 500.0),
    jitter=st.floats(0.0, 60.0),
)
def test_tolerance_in_metres_is_honoured(n: int, seed: int, tol: float, jitter: float) -> None:
    pts = random_track(n, seed, jitter_m=jitter)
    kept = simplify(pts, tolerance_m=tol, max_points=n)
    well_formed(kept, n)
    assert max_deviation(pts, kept) <= tol * (1 + 1e-6) + 1e-6


# -- max_points -----------------------------------------------------------------------


@PROPS
@given(
    n=st.integers(3, 4000),
    seed=st.integers(0, 2**16),
    max_points=st.integers(2, 300),
    zoom=st.integers(0, 22),
    jitter=st.floats(0.0, 80.0),
    algorithm=st.sampled_from(["rdp", "vw"]),
)
def test_max_points_is_respected(
    n: int, seed: int, max_points: int, zoom: int, jitter: float, algorithm: str
) -> None:
    pts = random_track(n, seed, jitter_m=jitter)
    kept = simplify(pts, zoom=zoom, max_points=max_points, algorithm=algorithm)  # type: ignore[arg-type]
    well_formed(kept, n)
    assert len(kept) <= max_points


@pytest.mark.parametrize("algorithm", ["rdp", "vw"])
def test_a_jittery_day_at_one_hz_fits_the_budget(algorithm: str) -> None:
    pts = one_hz_day()
    kept = simplify(pts, zoom=15, max_points=2000, algorithm=algorithm)  # type: ignore[arg-type]
    well_formed(kept, len(pts))
    assert 0.4 * 2000 <= len(kept) <= 2000


def test_budget_raises_the_tolerance_only_as_needed() -> None:
    """A budget uses a good part of itself, and never beats the unconstrained result."""
    pts = random_track(20_000, 9, jitter_m=5.0)
    free = simplify(pts, zoom=18, max_points=20_000)
    assert len(free) > 500
    kept = simplify(pts, zoom=18, max_points=500)
    well_formed(kept, len(pts))
    assert 0.4 * 500 <= len(kept) <= 500
    assert max_deviation(pts, kept) > max_deviation(pts, free)


# -- the one-pass RDP tree against the library -----------------------------------------


def _plane(n: int, seed: int, kind: int) -> np.ndarray:
    """Coordinates in metres: a random walk, jitter, or either rounded to a grid (equal
    distances, repeated and collinear fixes, closed loops)."""
    rng = np.random.default_rng(seed)
    if kind == 0:
        xy = np.cumsum(rng.normal(0.0, 10.0, (n, 2)), axis=0)
    elif kind == 1:
        xy = rng.normal(0.0, 50.0, (n, 2))
    elif kind == 2:
        xy = np.round(np.cumsum(rng.normal(0.0, 1.0, (n, 2)), axis=0))
    else:
        xy = np.round(rng.normal(0.0, 2.0, (n, 2)))
        xy[-1] = xy[0]
    return np.ascontiguousarray(xy, dtype=np.float64)


@PROPS
@given(
    n=st.integers(3, 600),
    seed=st.integers(0, 2**16),
    kind=st.integers(0, 3),
    pick=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
)
def test_rdp_tree_is_the_library_at_every_tolerance(
    n: int, seed: int, kind: int, pick: list[float]
) -> None:
    """The values of the recursion tree give exactly the library's result at any
    tolerance, including at the values themselves (where a distance equals the
    tolerance) and with ties."""
    from simplification.cutil import simplify_coords_idx

    from kares.geo.simplify import _rdp_tree

    xy = _plane(n, seed, kind)
    nodes, values, _ = _rdp_tree(xy, 1e-9, n, exact=True)
    tolerances = [1e-9, *(float(np.quantile(values, q)) for q in pick if values.size)]
    for tol in tolerances:
        mine = [0, *sorted(nodes[values > tol].tolist()), n - 1]
        assert mine == np.asarray(simplify_coords_idx(xy, tol)).tolist()


@PROPS
@given(
    n=st.integers(3, 3000),
    seed=st.integers(0, 2**16),
    kind=st.integers(0, 3),
    g=st.floats(0.01, 30.0),
    max_points=st.integers(2, 400),
)
def test_a_budget_from_what_the_library_kept_is_the_library_at_one_tolerance(
    n: int, seed: int, kind: int, g: float, max_points: int
) -> None:
    """From the library's result at ``g``, the fixes kept under a budget are the
    library's result at the lowest tolerance that fits (found here from the whole
    track's tree)."""
    from simplification.cutil import simplify_coords_idx

    from kares.geo.simplify import _fit_kept, _kth_largest, _rdp_tree

    xy = _plane(n, seed, kind)
    kept = np.asarray(simplify_coords_idx(xy, g), dtype=np.int64)
    if kept.size <= max_points:
        return
    got = _fit_kept(xy, kept, g, max_points - 2)
    _, values, bound = _rdp_tree(xy, g, max_points - 2, exact=True)
    tol = _kth_largest(values, max_points - 2, bound)
    assert got.tolist() == np.asarray(simplify_coords_idx(xy, tol)).tolist()
    assert len(got) <= max_points
    lower = values[values < tol]
    if lower.size:  # the tolerance is the lowest that fits: any node value below keeps more
        assert len(simplify_coords_idx(xy, float(lower.max()))) > max_points
