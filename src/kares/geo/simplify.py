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

When the result has more than ``max_points`` fixes the tolerance is raised to the
lowest one that fits. For RDP this is read off the recursion tree rather than searched
for (see "RDP under a budget" below): a guess from a copy of every k-th fix (about
``4 * max_points`` of them), one run of the library on the whole track at that
guess raised by ``_INFLATE`` (a sparser copy fits at a lower tolerance than the
whole), and, when that still does not fit, one pass over the fixes it kept, which
gives the lowest tolerance that fits and the fixes the library keeps at it. So the
answer is always one RDP of the whole track at one tolerance (the guarantee holds at
that tolerance), with the most fixes that fit when the guess did not fit, and usually at
least ``_FILL_FULL * max_points`` of them when it did (a guess that leaves fewer is
lowered by ``_STEP_DOWN``, at most ``_MAX_FULL_RUNS`` runs in all).

For VW the tolerance is searched for: a safeguarded secant search of log(count)
against log(tolerance) on the copy, then on the whole track, stepped up until it fits
(at most ``_MAX_FULL_RUNS`` runs on the whole track once something fits); the count
usually lands between ``_FILL_FULL * max_points`` and ``max_points``. A straight line
under noise may come back as its two ends.
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
from kares.geo.points import Point, PointArrays, unwrap_lon

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
_INFLATE = 1.35  # RDP: the whole's / the copy's tolerance, 1.33-1.46 on jittery 1 Hz days
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
    lon_u = unwrap_lon(lon)
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
    if algorithm == "rdp":
        return _fit_rdp(xy, tol, max_points)
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


# --- RDP under a budget: one run of the library, one pass over what it kept ----------
#
# RDP's recursion does not depend on the tolerance: a segment is split at its farthest
# fix whatever the tolerance, and only whether it is split does. So each split fix (a
# node of the recursion tree) has a value, the largest tolerance at which it is kept:
# its own distance from its segment, or its parent's value when that is smaller (the
# parent must be kept for the segment to exist). At tolerance e the library keeps
# exactly the two ends and the nodes whose value exceeds e, so the tolerance that fits
# ``max_points`` is read off the sorted values instead of searched for.
#
# The values of the whole track would cost more than a run of the library (numpy,
# level by level). But they are only needed above a tolerance ``g`` just below the
# answer, and above ``g`` the tree consists of the fixes the library keeps at ``g``: a
# segment split at ``g`` has its farthest fix among them, and it is also the farthest of
# them. So: guess ``g`` on a copy of every k-th fix (values, cheaply), run the library
# on the whole track at ``g``; if that does not fit, the same pass over the fixes it kept
# gives the exact tolerance and the fixes kept at it, which is what the library would
# return at that tolerance (bit for bit the same distances and choices; tested).

_STEP_DOWN = 1.25  # a guess that fits with too few fixes is lowered by this factor


def _fit_rdp(xy: FloatArray, tol: float, max_points: int) -> IntArray:
    n = xy.shape[0]
    keep = max_points - 2  # nodes besides the two ends
    tol = max(tol, _TINY_TOL)
    g = tol
    k = n // max(_COARSE_MIN, _COARSE_PER_POINT * max_points)
    if k >= _MIN_STRIDE:
        coarse = xy[::k]
        _, values, floor = _rdp_tree(coarse, tol, keep, exact=False)
        if values.size > keep:  # the copy does not fit at ``tol``: nor will the whole
            g = max(_kth_largest(values, keep, floor) * _INFLATE, tol * _BRACKET)
    best: IntArray | None = None
    for _ in range(_MAX_FULL_RUNS):
        idx = _run(xy, g, "rdp")
        if idx.size > max_points:
            return _fit_kept(xy, idx, g, keep)
        best = idx
        if g <= tol or idx.size >= _FILL_FULL * max_points:
            break
        g = max(tol, g / _STEP_DOWN)  # fits with too few fixes: try lower
    assert best is not None
    return best


def _fit_kept(xy: FloatArray, kept: IntArray, g: float, keep: int) -> IntArray:
    """The library's result at the lowest tolerance above ``g`` at which at most
    ``keep`` + 2 fixes remain, from ``kept``, its result at ``g``."""
    nodes, values, floor = _rdp_tree(xy[kept], g, keep, exact=True)
    e = _kth_largest(values, keep, floor)
    inner = kept[nodes[values > e]]
    inner.sort()
    return np.concatenate((kept[:1], inner, kept[-1:]))


def _kth_largest(values: FloatArray, keep: int, floor: float) -> float:
    """The lowest tolerance at which at most ``keep`` of these node values remain."""
    if values.size <= keep:
        return floor
    return max(floor, float(np.partition(values, values.size - keep - 1)[values.size - keep - 1]))


def _distances(
    px: FloatArray, py: FloatArray, dx: FloatArray, dy: FloatArray, d2: FloatArray, h: FloatArray
) -> FloatArray:
    """Distances of the fixes (``px``, ``py`` relative to their segment's first end) to
    their segments (``dx``, ``dy``: the segment; ``d2`` its squared length; ``h`` its
    length) as ``geo`` computes them (``line_segment_distance``, to the bit): the
    distance to the first end where the projection falls before it (or both ends
    coincide), |cross| / d2 * h inside; -1 where it falls beyond the last end (the
    caller measures those from that end)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (px * dx + py * dy) / d2  # NaN when the ends coincide
        d = np.abs((px * dy - py * dx) / d2) * h
    before = np.flatnonzero(~(r > 0.0))
    if before.size:
        d[before] = np.hypot(px[before], py[before])
    d[r >= 1.0] = -1.0
    return d


def _rdp_tree(
    xy: FloatArray, floor: float, keep: int, *, exact: bool
) -> tuple[IntArray, FloatArray, float]:
    """The nodes of RDP's recursion tree over ``xy`` (positions of the split fixes) with
    their values (see above), for the nodes whose value exceeds ``floor``, computed level
    by level in numpy. A subtree is not explored once its value is at most the
    ``keep + 1``-th largest value found so far (nothing in it can be among the ``keep``
    largest); returns that bound too: every node above it is listed.

    ``exact`` computes the distances as the library does (``geo``'s point-to-segment
    distance, the last farthest fix on ties), so the values are the library's to the
    bit; otherwise squared distances to the segment are used (a guess needs no more).
    """
    n = xy.shape[0]
    x = np.ascontiguousarray(xy[:, 0])
    y = np.ascontiguousarray(xy[:, 1])
    if n <= 2:
        return np.empty(0, dtype=np.int64), np.empty(0), floor
    bound = floor if exact else floor * floor  # in the units of the distances used
    pos = np.arange(1, n - 1, dtype=np.int64)  # the fixes inside live segments, in order
    px_all, py_all = x[1:-1], y[1:-1]
    sa = np.zeros(1, dtype=np.int64)  # segments: first and last fix, fixes inside,
    sb = np.full(1, n - 1, dtype=np.int64)
    cnt = np.full(1, n - 2, dtype=np.int64)
    parent = np.full(1, np.inf)  # and the value of the node that made them
    found_nodes: list[IntArray] = []
    found_values: list[FloatArray] = []
    total = recount = 0
    while True:
        starts = np.cumsum(cnt) - cnt
        ax, ay, bx, by = x[sa], y[sa], x[sb], y[sb]
        dx, dy = bx - ax, by - ay
        d2 = dx * dx + dy * dy
        px = px_all - np.repeat(ax, cnt)
        py = py_all - np.repeat(ay, cnt)
        rdx, rdy, rd2 = np.repeat(dx, cnt), np.repeat(dy, cnt), np.repeat(d2, cnt)
        if exact:
            d = _distances(px, py, rdx, rdy, rd2, np.repeat(np.hypot(dx, dy), cnt))
            after = np.flatnonzero(d < 0.0)  # closest to the last end
            if after.size:
                seg = np.searchsorted(starts, after, side="right") - 1
                d[after] = np.hypot(px_all[after] - bx[seg], py_all[after] - by[seg])
        else:  # squared distance to the segment
            rd2[rd2 == 0.0] = np.inf  # ends coincide: the distance to them
            u = px * rdx
            u += py * rdy
            u /= rd2
            np.clip(u, 0.0, 1.0, out=u)
            px -= u * rdx
            py -= u * rdy
            px *= px
            py *= py
            d = px
            d += py
        far = np.maximum.reduceat(d, starts)
        ties = np.flatnonzero(d == np.repeat(far, cnt))
        at = np.empty(cnt.size, dtype=np.int64)
        at[np.searchsorted(starts, ties, side="right") - 1] = ties  # the last one wins
        value = np.minimum(far, parent)
        node = pos[at]
        found_nodes.append(node)
        found_values.append(value)
        total += value.size
        if total > keep and total >= recount:
            # raise the bound to the keep+1-th largest value so far (not at every level:
            # a bound raised late only prunes a little less)
            allv = np.concatenate(found_values)
            alln = np.concatenate(found_nodes)
            kth = float(np.partition(allv, allv.size - keep - 1)[allv.size - keep - 1])
            if kth > bound:
                bound = kth
                sel = allv > bound
                allv, alln = allv[sel], alln[sel]
            found_values, found_nodes, total = [allv], [alln], int(allv.size)
            recount = total + total // 4
        split = value > bound
        if not split.any():
            break
        live = np.repeat(split, cnt)
        live[at] = False
        pos = pos[live]
        if pos.size == 0:
            break
        px_all, py_all = x[pos], y[pos]
        m = at[split]
        left = m - starts[split]
        right = cnt[split] - left - 1
        mid = node[split]
        two = 2 * mid.size
        sa2 = np.empty(two, dtype=np.int64)
        sb2 = np.empty(two, dtype=np.int64)
        cnt2 = np.empty(two, dtype=np.int64)
        sa2[0::2], sa2[1::2] = sa[split], mid
        sb2[0::2], sb2[1::2] = mid, sb[split]
        cnt2[0::2], cnt2[1::2] = left, right
        nonempty = cnt2 > 0
        sa, sb, cnt = sa2[nonempty], sb2[nonempty], cnt2[nonempty]
        parent = np.repeat(value[split], 2)[nonempty]
    values = np.concatenate(found_values)
    nodes = np.concatenate(found_nodes)
    if not exact:
        values = np.sqrt(values)
        bound = math.sqrt(bound)
    above = values > floor
    return nodes[above], values[above], max(bound, floor)
