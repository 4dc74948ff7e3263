"""Display simplification of a track: which fixes to draw at a map zoom.

The coordinates are projected to local metres (equirectangular around the
track's mean latitude, longitudes unwrapped) so that the tolerance is a ground
distance, then simplified by the ``simplification`` library (Rust):
Ramer-Douglas-Peucker (``"rdp"``, the default) or Visvalingam-Whyatt (``"vw"``).

* RDP with tolerance ``e`` guarantees that every dropped fix lies within ``e``
  metres (in the projection) of the segment of the simplified line that spans it.
* VW drops the fix whose triangle with its neighbours has the smallest area
  while that area is below ``e**2`` square metres. It gives smoother shapes but
  no distance guarantee.

Tolerance: ``tolerance_m`` if given; otherwise the ground size of one screen
pixel at ``zoom`` (web-mercator, 256 px tiles) at the track's mean latitude,
``156543.03392 * cos(lat) / 2**zoom`` metres, zoom clamped to 0..22; otherwise 0
(keep every fix that is not exactly on a straight line).

When the result has more than ``max_points`` fixes the tolerance is raised
until it fits. Each library run costs time in proportion to the fixes, and on a
jittery 1 Hz day the tolerance must climb to about the jitter (~100 m), so the
search is done where it is cheap: on a copy of every k-th fix (about
``4 * max_points`` fixes), by a safeguarded secant search on log(count) against
log(tolerance). The whole track is then simplified at that tolerance raised by
``_INFLATE`` (a sparser copy fits at a slightly lower tolerance than the whole),
and stepped up again only if that still does not fit — usually one run on the
whole track, at most ``_MAX_FULL_RUNS`` once something fits. The answer is always
one simplification of the whole track at one tolerance, so the RDP guarantee holds
at the tolerance finally used; the count usually lands between
``_FILL_FULL * max_points`` and ``max_points`` (a straight line under noise may come
back as its two ends).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Literal

import numpy as np
import numpy.typing as npt
from simplification.cutil import simplify_coords_idx, simplify_coords_vw_idx

from kares.geo.distance import M_PER_DEG_LAT
from kares.geo.points import Point, PointArrays

Algorithm = Literal["rdp", "vw"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MERCATOR_M_PER_PX_Z0 = 156_543.03392
"""Ground metres per pixel at the equator at zoom 0 (256-pixel tiles)."""

MIN_ZOOM = 0
MAX_ZOOM = 22

_get_lat = attrgetter("lat")
_get_lon = attrgetter("lon")

_COARSE_PER_POINT = 4  # the coarse copy has about this many fixes per allowed point ...
_COARSE_MIN = 2048  # ... and at least this many
_MIN_STRIDE = 4  # a copy with more than a quarter of the fixes saves too little
_FILL_COARSE = 0.9  # the coarse search aims at [0.9, 1] * max_points
_FILL_FULL = 0.4  # a fitting whole-track result with fewer fixes is refined further
_INFLATE = 1.3
_BRACKET = 1.05  # stop when the bracket is narrower than 5 %
_MAX_STEPS = 30
_MAX_FULL_RUNS = 3  # runs on the whole track once something fits (the first one included)
_MIN_TOL = 1e-3  # the search starts above this
_TINY_TOL = 1e-9


def metres_per_pixel(zoom: float, lat: float) -> float:
    """Ground size in metres of one web-mercator pixel at ``zoom`` and latitude ``lat``;
    the zoom is clamped to 0..22."""
    z = min(float(MAX_ZOOM), max(float(MIN_ZOOM), float(zoom)))
    return MERCATOR_M_PER_PX_Z0 * math.cos(math.radians(lat)) / 2.0**z


def project(points: Sequence[Point]) -> FloatArray:
    """The fixes as an (n, 2) array of metres (x east, y north), equirectangular around
    the mean latitude; longitudes are unwrapped so tracks over the antimeridian stay whole.
    This is the plane in which :func:`simplify` measures its tolerance."""
    n = len(points)
    lat = np.fromiter(map(_get_lat, points), dtype=np.float64, count=n)
    lon = np.fromiter(map(_get_lon, points), dtype=np.float64, count=n)
    return _project(lat, lon)


def _project(lat: FloatArray, lon: FloatArray) -> FloatArray:
    xy = np.empty((lat.size, 2), dtype=np.float64)
    if lat.size == 0:
        return xy
    lat0 = float(lat.mean())
    lon_u = np.unwrap(lon, period=360.0)
    xy[:, 0] = (lon_u - lon_u[0]) * (M_PER_DEG_LAT * math.cos(math.radians(lat0)))
    xy[:, 1] = (lat - lat0) * M_PER_DEG_LAT
    return xy


def _run(xy: FloatArray, tol: float, algorithm: Algorithm) -> IntArray:
    # The library returns every point for a zero tolerance; a tiny one drops only the
    # fixes exactly on the line (or on top of each other).
    tol = max(tol, _TINY_TOL)
    if algorithm == "rdp":
        idx = simplify_coords_idx(xy, tol)
    else:
        idx = simplify_coords_vw_idx(xy, tol * tol)
    return np.asarray(idx, dtype=np.int64)


def simplify(
    points: Sequence[Point],
    *,
    zoom: int | None = None,
    tolerance_m: float | None = None,
    max_points: int = 2000,
    algorithm: Algorithm = "rdp",
) -> list[int]:
    """Indices (sorted, unique, first and last always included) of the fixes to draw.

    ``tolerance_m`` wins over ``zoom``; with neither the tolerance is 0. At most
    ``max_points`` indices are returned (``max_points`` must be at least 2).
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    if algorithm not in ("rdp", "vw"):
        raise ValueError(f"unknown algorithm {algorithm!r}")
    if tolerance_m is not None and not tolerance_m >= 0:
        raise ValueError("tolerance_m must be >= 0")
    n = len(points)
    if n <= 2:
        return list(range(n))
    if isinstance(points, PointArrays):
        lat, lon = points.lat, points.lon
    else:
        lat = np.fromiter(map(_get_lat, points), dtype=np.float64, count=n)
        lon = np.fromiter(map(_get_lon, points), dtype=np.float64, count=n)
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise ValueError("points must have finite coordinates")
    xy = _project(lat, lon)
    if tolerance_m is not None:
        tol = float(tolerance_m)
    elif zoom is not None:
        tol = metres_per_pixel(zoom, float(lat.mean()))
    else:
        tol = 0.0
    return _finish(_fit(xy, tol, max_points, algorithm), n)


def _finish(idx: IntArray, n: int) -> list[int]:
    out = np.unique(np.concatenate((idx, np.array([0, n - 1], dtype=np.int64))))
    return [int(i) for i in out.tolist()]


def _fit(xy: FloatArray, tol: float, max_points: int, algorithm: Algorithm) -> IntArray:
    """The simplification at ``tol``, or at the lowest tolerance found that fits."""
    n = xy.shape[0]
    lo = max(tol, _MIN_TOL)
    guess: float | None = None
    k = n // max(_COARSE_MIN, _COARSE_PER_POINT * max_points)
    if k >= _MIN_STRIDE:
        coarse = np.ascontiguousarray(xy[::k])
        idx_c = _run(coarse, tol, algorithm)
        # A copy practically never keeps more fixes than the whole track: when it does
        # not fit, skip the (expensive, hopeless) run of the whole track at ``tol``.
        if idx_c.size > max_points:
            tol_c, _, slope = _search(
                lambda e: _run(coarse, e, algorithm),
                max_points,
                _FILL_COARSE,
                lo,
                int(idx_c.size),
                _MAX_STEPS,
            )
            guess = max(tol_c * _INFLATE, lo * _BRACKET)
    n_lo = n
    slope = 2.0
    steps = _MAX_FULL_RUNS
    if guess is None:
        idx = _run(xy, tol, algorithm)
        if idx.size <= max_points:
            return idx
        n_lo = int(idx.size)
        steps -= 1
    _, idx, _ = _search(
        lambda e: _run(xy, e, algorithm),
        max_points,
        _FILL_FULL,
        lo,
        n_lo,
        steps,
        first=guess,
        slope=slope,
    )
    return idx


def _search(
    run: Callable[[float], IntArray],
    max_points: int,
    fill: float,
    lo: float,
    n_lo: int,
    steps: int,
    *,
    first: float | None = None,
    slope: float = 2.0,
) -> tuple[float, IntArray, float]:
    """A tolerance above ``lo`` (which gives ``n_lo`` > ``max_points`` fixes) whose result
    fits ``max_points``, that result, and the local slope -d log(count) / d log(tol)
    (``slope`` is the first assumption for it).

    Stops when a fitting result has at least ``fill * max_points`` fixes, when the
    bracket is narrower than 5 %, or after ``steps`` runs once something fits; until
    something fits it keeps stepping up (at tolerances beyond the track's extent every
    algorithm keeps only the two ends, so this ends).
    """
    target = fill * max_points
    aim = max_points * (1.0 - 0.25 * (1.0 - fill))  # near the top of the accepted range
    hi = math.inf
    n_hi = 0
    best: IntArray | None = None
    prev: tuple[float, int] | None = None
    guess = first if first is not None else _step_up(lo, n_lo, aim, None, slope)
    used = 0
    while True:
        idx = run(guess)
        used += 1
        if idx.size <= max_points:
            hi, n_hi, best = guess, int(idx.size), idx
        else:
            prev = (lo, n_lo)
            lo, n_lo = guess, int(idx.size)
        if best is not None and (n_hi >= target or hi <= lo * _BRACKET or used >= steps):
            if n_lo > n_hi > 0 and hi > lo:
                slope = math.log(n_lo / n_hi) / math.log(hi / lo)
            return hi, best, min(4.0, max(0.5, slope))
        if math.isinf(hi):
            guess = _step_up(lo, n_lo, aim, prev if first is None or used > 1 else None, slope)
            continue
        # Secant on log(count) against log(tolerance), kept well inside the bracket.
        ll, lh = math.log(lo), math.log(hi)
        cl, ch = math.log(max(n_lo, 1)), math.log(max(n_hi, 1))
        g = ll + (math.log(aim) - cl) * (lh - ll) / (ch - cl) if ch != cl else 0.5 * (ll + lh)
        margin = 0.15 * (lh - ll)
        guess = math.exp(min(max(g, ll + margin), lh - margin))


def _step_up(
    lo: float, n_lo: int, aim: float, prev: tuple[float, int] | None, slope: float
) -> float:
    """Next tolerance while nothing fits yet: assume count ~ tol**-k with k from the last
    two tries (between 0.5 and 4; ``slope`` without them) and step towards the aim, by a
    factor between 1.05 and 4."""
    k = slope
    if prev is not None and 0 < prev[0] < lo and prev[1] > 0 and n_lo > 0:
        k = math.log(prev[1] / n_lo) / math.log(lo / prev[0])
        k = min(4.0, max(0.5, k))
    factor = (n_lo / aim) ** (1.0 / k)
    return lo * min(4.0, max(1.05, factor))
