"""Stays, trips, transport modes and driving events from a day of fixes.

Pure algorithms over a time-sorted sequence of :class:`Point` (no database, no
I/O). The pipeline, every threshold and the reasons for them are described in
``docs/TIMELINE.md``; in short:

1. **Clean**: drop fixes with non-finite or out-of-range coordinates, fixes
   worse than ``max_accuracy_m``, and all but the first of fixes sharing a
   timestamp; sort if needed; drop single-fix spikes that jump away and back
   faster than ``_SPIKE_SPEED_MPS``, or, however slowly, from a place to which
   the next fix returns (a lone far fix between two at one place).
2. **Scan** the fixes in time order into clusters: a fix joins the current
   cluster while it lies within the stay radius of the cluster's running centre
   (the radius is widened while the centre rests on few fixes). A short run of
   fixes outside that comes straight back (at most ``_MAX_OUTLIER_RUN`` fixes,
   together spanning less than ``min_stay_s``) is dropped as outliers; otherwise
   the cluster ends.
3. **Stays**: clusters lasting ``min_stay_s`` or more, trimmed at both ends to
   the fixes within the radius of their time-weighted median centre; short
   neighbouring clusters lying mostly within the radius are absorbed, then the
   adjacent fixes within it; consecutive stays closer than ``merge_radius_m``
   merge when nothing lies between them, or when they are less than
   ``merge_gap_s`` apart without real movement in between.
4. **Trips** fill the time between stays (and before the first / after the
   last). Stay boundaries are refined to the moment of leaving / reaching the
   place's centre, a trip runs from place to place and its distance is the
   length of its path simplified at ``_PATH_TOLERANCE_M``. Data gaps longer than
   ``max_gap_s`` split a trip; the unknown part becomes a trip of mode
   ``"other"`` measured as a straight line.
5. **Mode** from time-weighted percentiles of the moving speed, and **driving
   events** on driving trips from speeds smoothed over a few seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter
from typing import Literal

import numpy as np
import numpy.typing as npt
from simplification.cutil import simplify_coords_idx

from kares.geo.distance import M_PER_DEG_LAT, haversine_m, haversine_np
from kares.geo.points import Point, PointArrays, unwrap_lon

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

Mode = Literal["walking", "cycling", "driving", "other"]
EventKind = Literal["speeding", "hard_braking", "rapid_acceleration"]


@dataclass(frozen=True)
class TimelineParams:
    """The tunable thresholds (see docs/TIMELINE.md for why these values)."""

    stay_radius_m: float = 100.0
    """Fixes within this radius of the stay's centre belong to it."""
    min_stay_s: float = 300.0
    """A stay lasts at least this long."""
    max_accuracy_m: float = 200.0
    """Fixes reporting a worse horizontal accuracy are ignored."""
    merge_gap_s: float = 600.0
    """Two stays closer than ``merge_radius_m``, separated by less than this and with no
    real movement in between, are one stay."""
    merge_radius_m: float = 150.0
    max_gap_s: float = 3600.0
    """A data gap longer than this inside a trip splits it: the observed parts keep their
    own mode, the gap becomes a trip of mode "other" (straight line). A gap inside a stay
    (no movement across it) never splits the stay."""
    min_trip_distance_m: float = 200.0
    """Shorter trips are not reported; it is also the reach that counts as "real
    movement" (a fix farther than this from both neighbouring places)."""
    # driving
    speeding_limit_mps: float = 120 / 3.6
    speeding_min_s: float = 10.0
    hard_brake_mps2: float = 3.0
    rapid_accel_mps2: float = 3.0


@dataclass(frozen=True)
class Stay:
    start_t: float
    end_t: float
    lat: float
    lon: float
    radius_m: float
    """90th percentile of the fixes' distances from the centre."""
    points: int


@dataclass(frozen=True)
class DrivingEvent:
    kind: EventKind
    start_t: float
    end_t: float
    lat: float
    lon: float
    value: float
    """Max speed (m/s) for speeding, peak |acceleration| (m/s^2) for the others."""


@dataclass(frozen=True)
class DrivingSummary:
    events: int
    speeding: int
    hard_braking: int
    rapid_acceleration: int
    speeding_s: float
    max_speed_mps: float
    score: int
    """0..100, see :func:`driving_score`."""


@dataclass(frozen=True)
class Trip:
    start_t: float
    end_t: float
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float
    duration_s: float
    avg_speed_mps: float
    max_speed_mps: float
    mode: Mode
    first: int
    """Index (into the input) of the first fix describing the trip: the last fix at the
    previous place when the trip leaves a stay, else the trip's own first fix."""
    last: int
    """Index of the last fix describing the trip: the first fix at the next place when
    the trip reaches a stay, else the trip's own last fix."""
    events: tuple[DrivingEvent, ...]
    summary: DrivingSummary | None
    """Only for driving trips."""


@dataclass(frozen=True)
class Timeline:
    stays: tuple[Stay, ...]
    trips: tuple[Trip, ...]


# --- fixed thresholds ---------------------------------------------------------------

_SPIKE_SPEED_MPS = 70.0
"""A single fix reached and left faster than this (252 km/h), whose neighbours are
close to each other, is a spike and dropped before anything else."""
_MAX_OUTLIER_RUN = 2
"""Up to this many consecutive fixes outside a cluster that then comes back are outliers."""
_MAX_SPEED_MPS = 90.0
"""Device speeds above this (324 km/h) are not plausible."""
_CLASS_HALF_WINDOW_S = 5.0
"""Speed for the mode: chord over +-5 s (GPS noise of a few metres averages out)."""
_FINE_HALF_WINDOW_S = 2.0
"""Speed for speeding and max speed: chord over +-2 s ..."""
_SMOOTH_HALF_WINDOW_S = 1.0
"""... then averaged over +-1 s."""
_ACCEL_HALF_WINDOW_S = 1.0
"""Acceleration: the change over +-1 s of the +-1 s chord speed (a 4 s triangular
smoothing in all: keeps a 3 s hard stop whole, averages 1 Hz noise out)."""
_EVENT_MAX_DT_S = 5.0
"""Events never span two fixes further apart than this."""
_ACCEL_PERSIST_S = 2.0
"""Hard braking / rapid acceleration must last this long."""
_STOPPED_MPS = 0.5
"""Slower samples are "stopped" and left out of the mode statistics."""
_WEIGHT_CAP_S = 60.0
"""A sample stands for half of each neighbouring interval, at most this much."""
_WALK_P85_MPS = 2.5
_DRIVE_P85_MPS = 7.0
_DRIVE_P95_MPS = 12.0
_PATH_TOLERANCE_M = 10.0
"""Trip paths are simplified (RDP) at this tolerance before measuring: removes GPS
zig-zag without cutting real corners."""
_REFINE_MAX_DT_S = 10.0
"""Stay boundaries are refined only when fixes around them are at most this far apart."""
_MIN_EXTRAPOLATION_MPS = 0.5
_CORRIDOR_M = 15.0
"""Half-width of the corridor from a place's centre in which fixes count as the straight
way in or out of it."""
_BACKTRACK_M = 5.0
_RUN_MAX_FIXES = 300
_EDGE_FIXES = 6
"""Fixes at each end of a trip used for the departure / arrival speed."""
_QUANTILE_SAMPLE = 4096
_TRANSIT_WINDOW_S = 60.0
_MIN_WEIGHT_S = 0.1
_ABSORB_SHARE = 0.75
_MIN_OPEN_TRIP_FIXES = 2
"""A trip not bounded by stays at both ends needs at least this many fixes of its own."""


# --- public API ----------------------------------------------------------------------


def detect(points: Sequence[Point], params: TimelineParams = TimelineParams()) -> Timeline:
    """The stays and trips of a time-sorted sequence of fixes."""
    tr = _prepare(points, params)
    n = tr.t.size
    if n == 0:
        return Timeline((), ())
    w = np.maximum(tr.weights(), _MIN_WEIGHT_S)
    transit = _in_transit(tr, params)
    starts, moving, outlier = _scan(
        tr.lat, tr.lon, tr.t, w, transit, params.stay_radius_m, params.min_stay_s
    )
    if outlier.any():
        keep = ~outlier
        newpos = np.cumsum(keep) - 1
        starts = [int(newpos[s]) for s in starts]  # a cluster's first fix is never an outlier
        tr = tr.keep(keep)
        n = tr.t.size
    stays = _stays(tr, starts, moving, params)
    _refine(tr, stays, params)
    trips: list[Trip] = []
    if not stays:
        if n >= 2:
            trips.extend(_connect(tr, params, None, None))
    else:
        if stays[0].s > 0:
            trips.extend(_connect(tr, params, None, stays[0]))
        for a, b in pairwise(stays):
            trips.extend(_connect(tr, params, a, b))
        if stays[-1].e < n - 1:
            trips.extend(_connect(tr, params, stays[-1], None))
    out_stays = tuple(
        Stay(
            start_t=s.start_t,
            end_t=s.end_t,
            lat=s.lat,
            lon=_wrap_lon(s.lon),
            radius_m=s.radius,
            points=s.e - s.s + 1,
        )
        for s in stays
    )
    trips.sort(key=lambda x: x.start_t)
    return Timeline(out_stays, tuple(trips))


def driving_score(
    distance_m: float, speeding: int, hard_braking: int, rapid_acceleration: int, speeding_s: float
) -> int:
    """0..100: ``100 - penalty / max(1, km / 25)`` rounded and clamped, where
    ``penalty = 10 * speeding + 8 * hard_braking + 5 * rapid_acceleration + speeding_s / 10``.

    Every event costs points, time over the limit costs one point per 10 s, and on
    trips longer than 25 km the penalty is spread per 25 km driven (so a long drive is
    not judged harsher than a short one with the same event rate).
    """
    penalty = 10.0 * speeding + 8.0 * hard_braking + 5.0 * rapid_acceleration + speeding_s / 10.0
    scale = max(1.0, distance_m / 25_000.0)
    return int(min(100, max(0, round(100.0 - penalty / scale))))


# --- preparation ---------------------------------------------------------------------

_get_t = attrgetter("t")
_get_lat = attrgetter("lat")
_get_lon = attrgetter("lon")
_get_acc = attrgetter("acc")
_get_speed = attrgetter("speed")


@dataclass
class _Track:
    """The clean fixes as arrays; ``lon`` is unwrapped (continuous over the antimeridian),
    ``orig`` maps back to indices of the input sequence and ``kx`` is each fix's metres
    per degree of longitude (``M_PER_DEG_LAT * cos(lat)``)."""

    t: FloatArray
    lat: FloatArray
    lon: FloatArray
    dev: FloatArray
    orig: IntArray
    kx: FloatArray

    def keep(self, mask: BoolArray) -> _Track:
        """The fixes where ``mask`` is true."""
        return _Track(
            self.t[mask],
            self.lat[mask],
            self.lon[mask],
            self.dev[mask],
            self.orig[mask],
            self.kx[mask],
        )

    def weights(self) -> FloatArray:
        """Seconds each fix stands for: half of each neighbouring interval, each half
        capped at ``_WEIGHT_CAP_S / 2`` (a fix before a long gap does not dominate)."""
        w = np.zeros(self.t.size)
        if self.t.size > 1:
            half = 0.5 * np.minimum(np.diff(self.t), _WEIGHT_CAP_S)
            w[:-1] += half
            w[1:] += half
        else:
            w[:] = 1.0
        return w


def _prepare(points: Sequence[Point], params: TimelineParams) -> _Track:
    n = len(points)
    if isinstance(points, PointArrays):  # already columns (a day read from the database)
        t, lat, lon, acc, dev = points.t, points.lat, points.lon, points.acc, points.speed
    else:
        t = np.fromiter(map(_get_t, points), dtype=np.float64, count=n)
        lat = np.fromiter(map(_get_lat, points), dtype=np.float64, count=n)
        lon = np.fromiter(map(_get_lon, points), dtype=np.float64, count=n)
        # None (unknown) becomes NaN
        acc = np.fromiter(map(_get_acc, points), dtype=object, count=n).astype(np.float64)
        dev = np.fromiter(map(_get_speed, points), dtype=object, count=n).astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = (
            np.isfinite(t)
            & np.isfinite(lat)
            & np.isfinite(lon)
            & (np.abs(lat) <= 90.0)
            & (np.abs(lon) <= 180.0)
            & ~(acc > params.max_accuracy_m)
        )
    idx = np.flatnonzero(ok).astype(np.int64, copy=False)
    t = t[idx]
    if t.size > 1 and bool((np.diff(t) < 0).any()):
        order = np.argsort(t, kind="stable")
        idx = idx[order]
        t = t[order]
    if t.size > 1:
        first = np.concatenate(([True], np.diff(t) > 0))
        idx = idx[first]
        t = t[first]
    lat = lat[idx]
    tr = _Track(
        t, lat, unwrap_lon(lon[idx]), dev[idx], idx, M_PER_DEG_LAT * np.cos(np.radians(lat))
    )
    return _drop_spikes(tr, params.stay_radius_m)


def _drop_spikes(tr: _Track, radius_m: float) -> _Track:
    """Drop single fixes that jump away and straight back: both legs faster than
    ``_SPIKE_SPEED_MPS`` while the neighbours are close to each other; or, at any
    speed, a fix farther than ``4 * radius_m`` (a transit's reach) from both of
    neighbours that are at one place (within ``2 * radius_m``: a stay's jitter).

    The second kind is what sparse fixes (a watch every few minutes) make of a
    wild fix: one fix away cannot show a visit (that needs ``min_stay_s``) nor
    a trip, and left in, alternating wild fixes around someone who never moves
    look like movement to the transit test."""
    n = tr.t.size
    if n < 3:
        return tr
    # Equirectangular distances with each fix's own scale: only ratios matter here.
    kx = tr.kx
    y = tr.lat * M_PER_DEG_LAT
    d = _norm((tr.lon[1:] - tr.lon[:-1]) * kx[1:], y[1:] - y[:-1])
    v = d / np.diff(tr.t)
    away = np.minimum(d[:-1], d[1:])
    fast = (v[:-1] > _SPIKE_SPEED_MPS) & (v[1:] > _SPIKE_SPEED_MPS)
    # Only these can be spikes; the distance between their neighbours decides.
    c = np.flatnonzero(fast | (away > 4.0 * radius_m))
    if c.size == 0:
        return tr
    skip = _norm((tr.lon[c + 2] - tr.lon[c]) * kx[c + 1], y[c + 2] - y[c])
    away = away[c]
    spike = (skip < 0.5 * away) & (fast[c] | ((skip <= 2.0 * radius_m) & (away > 4.0 * radius_m)))
    if not spike.any():
        return tr
    keep = np.ones(n, dtype=bool)
    keep[c[spike] + 1] = False
    return tr.keep(keep)


def _norm(dx: FloatArray, dy: FloatArray) -> FloatArray:
    """``sqrt(dx**2 + dy**2)``, in place of ``np.hypot`` (several times slower, and its
    guard against overflow is not needed for distances on Earth)."""
    dx = dx * dx
    dx += dy * dy
    return np.sqrt(dx, out=dx)


def _sorted_search(a: FloatArray, v: FloatArray, side: Literal["left", "right"]) -> IntArray:
    """``np.searchsorted(a, v, side)`` for a sorted ``v``: one stable sort of both,
    which merges the two sorted runs in linear time, instead of a binary search per
    value (about twice as fast on a day of fixes); small inputs use the binary search."""
    if v.size < 1024:
        return np.asarray(np.searchsorted(a, v, side=side), dtype=np.int64)
    m = v.size
    if side == "left":  # on ties the values come first: counts the elements below
        order = np.argsort(np.concatenate((v, a)), kind="stable")
        return np.asarray(np.flatnonzero(order < m) - np.arange(m), dtype=np.int64)
    order = np.argsort(np.concatenate((a, v)), kind="stable")
    return np.asarray(np.flatnonzero(order >= a.size) - np.arange(m), dtype=np.int64)


def _wrap_lon(lon: float) -> float:
    return (lon + 180.0) % 360.0 - 180.0


def _dist_from(lat: FloatArray, lon: FloatArray, clat: float, clon: float) -> FloatArray:
    """Distances (m) from a centre, equirectangular: exact enough within a few km."""
    kx = M_PER_DEG_LAT * math.cos(math.radians(clat))
    dx = (lon - clon) * kx
    dy = (lat - clat) * M_PER_DEG_LAT
    return np.asarray(np.sqrt(dx * dx + dy * dy), dtype=np.float64)


# --- step 2: the scan ----------------------------------------------------------------


def _d2_between(tr: _Track, a: IntArray, b: IntArray, kx: FloatArray) -> FloatArray:
    dx = (tr.lon[b] - tr.lon[a]) * kx
    dy = (tr.lat[b] - tr.lat[a]) * M_PER_DEG_LAT
    return np.asarray(dx * dx + dy * dy, dtype=np.float64)


def _in_transit(tr: _Track, p: TimelineParams) -> BoolArray:
    """Fixes that are certainly on the move: more than ``4 * stay_radius_m`` from where
    the person was ``_TRANSIT_WINDOW_S`` before and after, and those two places as far
    apart (dense data only; >= 6.7 m/s sustained with the defaults). No stay can contain
    them; the scan skips over them in bulk instead of fix by fix."""
    t = tr.t
    n = t.size
    # A stay lasting min_stay_s around a fix would contain the fixes up to 2 * win away
    # on one side at least, all within 2 * (widened) radius of each other.
    win = min(_TRANSIT_WINDOW_S, 0.25 * p.min_stay_s)
    if n < 3 or win <= 0:
        return np.zeros(n, dtype=np.bool_)
    jf = np.minimum(_sorted_search(t, t + win, "left"), n - 1)
    far = (4.0 * p.stay_radius_m) ** 2
    kx = tr.kx
    out = np.zeros(n, dtype=np.bool_)
    # far from where the person will be: the few fixes for which the rest is worth it
    dx = (tr.lon[jf] - tr.lon) * kx
    dy = (tr.lat[jf] - tr.lat) * M_PER_DEG_LAT
    c = np.flatnonzero(dx * dx + dy * dy > far)
    if c.size == 0:
        return out
    jb = np.maximum(_sorted_search(t, t[c] - win, "right") - 1, 0)
    jf, tc = jf[c], t[c]
    dx = (tr.lon[jb] - tr.lon[c]) * kx[c]
    dy = (tr.lat[jb] - tr.lat[c]) * M_PER_DEG_LAT
    ok = (
        (t[jf] - tc >= win)
        & (t[jf] - tc <= 2.0 * win)
        & (tc - t[jb] >= win)
        & (tc - t[jb] <= 2.0 * win)
        & (dx * dx + dy * dy > far)
        & (_d2_between(tr, jb, jf, kx[c]) > far)  # not a lone spike: the way goes on
    )
    out[c[ok]] = True
    return out


_VECTOR_FROM = 16  # clusters with this many fixes continue in numpy chunks
_CHUNK0 = 64
_CHUNK_MAX = 8192
_WINDOW = 64  # fixes converted to Python floats at a time for the fix-by-fix steps


def _scan(
    lat: FloatArray,
    lon: FloatArray,
    t: FloatArray,
    w: FloatArray,
    transit: BoolArray,
    radius_m: float,
    min_stay_s: float,
) -> tuple[list[int], list[bool], BoolArray]:
    """Split the fixes into consecutive clusters; returns the clusters' first indices,
    whether each is a run of ``transit`` fixes (never a stay), and the outlier mask.

    A fix joins the cluster when it is within ``radius * (1 + 1/sqrt(k))`` of the
    time-weighted mean of the cluster's ``k`` fixes (``w``: seconds per fix, so a place
    reported every 30 s is not outweighed by the 1 Hz fixes of the walk that reached it).
    The mean of a few jittery fixes is itself uncertain, so the first fixes are judged
    with a wider radius (2x for the second fix, 1.25x from the 16th on). Fixes outside
    followed within ``_MAX_OUTLIER_RUN`` fixes by one inside are outliers, unless they
    together span ``min_stay_s`` (then they are a real visit).
    """
    n = lat.size
    wlat = w * lat
    wlon = w * lon
    ky = M_PER_DEG_LAT
    r2 = [0.0] + [(radius_m * (1.0 + 1.0 / math.sqrt(k))) ** 2 for k in range(1, 4 * _VECTOR_FROM)]
    outlier = np.zeros(n, dtype=np.bool_)
    starts: list[int] = []
    moving: list[bool] = []
    still = np.flatnonzero(~transit)  # the fixes not in transit
    # The fix-by-fix steps read Python floats from a window of the arrays, [base, top),
    # refilled where they are needed: converting whole days to lists would cost more
    # than the steps themselves when long stays go by in numpy chunks.
    base = top = 0
    la: list[float] = []
    lo: list[float] = []
    tl: list[float] = []
    wl: list[float] = []
    tv: list[bool] = []

    i = 0
    while i < n:
        if i + _MAX_OUTLIER_RUN >= top and top < n:
            base, top = i, min(n, i + _WINDOW)
            la, lo, tl = lat[base:top].tolist(), lon[base:top].tolist(), t[base:top].tolist()
            wl, tv = w[base:top].tolist(), transit[base:top].tolist()
        starts.append(i)
        if tv[i - base]:
            moving.append(True)
            k = int(np.searchsorted(still, i))
            i = int(still[k]) if k < still.size else n
            continue
        moving.append(False)
        kx = ky * math.cos(math.radians(la[i - base]))
        sw = wl[i - base]
        slat = sw * la[i - base]
        slon = sw * lo[i - base]
        cnt = 1
        j = i + 1
        chunk = _CHUNK0
        while j < n:
            clat = slat / sw
            clon = slon / sw
            rr = r2[cnt] if cnt < len(r2) else (radius_m * (1.0 + 1.0 / math.sqrt(cnt))) ** 2
            if cnt >= _VECTOR_FROM and n - j > _VECTOR_FROM:
                end = min(n, j + chunk)
                dx = (lon[j:end] - clon) * kx
                dy = (lat[j:end] - clat) * ky
                inside = (dx * dx + dy * dy <= rr) & ~transit[j:end]
                k = int(np.argmin(inside))
                if inside[k]:
                    k = end - j
                    chunk = min(chunk * 2, _CHUNK_MAX)
                else:
                    chunk = _CHUNK0
                if k > 0:
                    sw += float(w[j : j + k].sum())
                    slat += float(wlat[j : j + k].sum())
                    slon += float(wlon[j : j + k].sum())
                    cnt += k
                    j += k
                    continue
            if j + _MAX_OUTLIER_RUN >= top and top < n:
                base, top = j, min(n, j + _WINDOW)
                la, lo, tl = lat[base:top].tolist(), lon[base:top].tolist(), t[base:top].tolist()
                wl, tv = w[base:top].tolist(), transit[base:top].tolist()
            if tv[j - base]:
                break
            if not (cnt >= _VECTOR_FROM and n - j > _VECTOR_FROM):
                dx0 = (lo[j - base] - clon) * kx
                dy0 = (la[j - base] - clat) * ky
                if dx0 * dx0 + dy0 * dy0 <= rr:
                    wj = wl[j - base]
                    sw += wj
                    slat += wj * la[j - base]
                    slon += wj * lo[j - base]
                    cnt += 1
                    j += 1
                    continue
            # Fix j is outside: an outlier run if the track comes straight back.
            back = -1
            for k in range(j + 1, min(n, j + 1 + _MAX_OUTLIER_RUN)):
                dx1 = (lo[k - base] - clon) * kx
                dy1 = (la[k - base] - clat) * ky
                if dx1 * dx1 + dy1 * dy1 <= rr:
                    back = k
                    break
            if back > 0 and tl[back - 1 - base] - tl[j - base] < min_stay_s:
                outlier[j:back] = True
                j = back
                continue
            break
        i = j
    return starts, moving, outlier


# --- step 3: stays -------------------------------------------------------------------


@dataclass
class _StayRec:
    s: int
    e: int
    lat: float
    lon: float
    radius: float = 0.0
    start_t: float = 0.0
    end_t: float = 0.0


def _wquantile(v: FloatArray, w: FloatArray, q: float) -> float:
    """Weighted quantile: the smallest value whose cumulative weight reaches q. Long
    inputs are thinned to an even ``_QUANTILE_SAMPLE`` of their values first (a stay's
    centre does not need more than a few thousand fixes)."""
    if v.size > _QUANTILE_SAMPLE:
        pick = np.linspace(0, v.size - 1, _QUANTILE_SAMPLE).astype(np.int64)
        v = v[pick]
        w = w[pick]
    order = _argsort_stable(v)
    cw = np.cumsum(w[order])
    k = int(np.searchsorted(cw, q * float(cw[-1]), side="left"))
    return float(v[order[min(k, v.size - 1)]])


def _argsort_stable(v: FloatArray) -> IntArray:
    """``np.argsort(v, kind="stable")``, faster: numpy's default sort is several times
    quicker (SIMD), and without equal values every sort gives the one same order; only
    with ties (then ordered by position) is the stable sort run."""
    order = np.argsort(v)
    vs = v[order]
    if bool((vs[1:] == vs[:-1]).any()):
        order = np.argsort(v, kind="stable")
    return np.asarray(order, dtype=np.int64)


def _median_centre(tr: _Track, w: FloatArray, s: int, e: int) -> tuple[float, float]:
    """Time-weighted median of latitude and longitude: a stay reported every 30 s is not
    pulled towards the dense 1 Hz fixes of the walk that reached it."""
    ww = w[s : e + 1]
    if not float(ww.sum()) > 0:
        ww = np.ones(e - s + 1)
    return _wquantile(tr.lat[s : e + 1], ww, 0.5), _wquantile(tr.lon[s : e + 1], ww, 0.5)


def _stays(tr: _Track, starts: list[int], moving: list[bool], p: TimelineParams) -> list[_StayRec]:
    n = tr.t.size
    t = tr.t
    r = p.stay_radius_m
    bounds = [*starts, n]
    w = tr.weights()
    centres: dict[tuple[int, int], tuple[float, float]] = {}

    def centre(s: int, e: int) -> tuple[float, float]:
        """The median centre of fixes s..e, computed once per range."""
        if (s, e) not in centres:
            centres[(s, e)] = _median_centre(tr, w, s, e)
        return centres[(s, e)]

    cum_lat = np.concatenate(([0.0], np.cumsum(tr.lat)))
    cum_lon = np.concatenate(([0.0], np.cumsum(tr.lon)))

    # Blocks: [s, e, is_stay, lat, lon]; non-stay blocks are centred on their mean.
    blocks: list[tuple[int, int, bool, float, float]] = []

    def plain(s: int, e: int) -> None:
        if s <= e:
            m = e - s + 1
            blocks.append(
                (s, e, False, (cum_lat[e + 1] - cum_lat[s]) / m, (cum_lon[e + 1] - cum_lon[s]) / m)
            )

    for (s, nxt), in_transit in zip(pairwise(bounds), moving, strict=True):
        e = nxt - 1
        if in_transit or t[e] - t[s] < p.min_stay_s:
            plain(s, e)
            continue
        clat, clon = centre(s, e)
        inside = _dist_from(tr.lat[s : e + 1], tr.lon[s : e + 1], clat, clon) <= r
        if not inside.any():
            plain(s, e)
            continue
        s2 = s + int(np.argmax(inside))
        e2 = e - int(np.argmax(inside[::-1]))
        if t[e2] - t[s2] < p.min_stay_s:
            plain(s, e)
            continue
        clat, clon = centre(s2, e2)
        plain(s, s2 - 1)
        blocks.append((s2, e2, True, clat, clon))
        plain(e2 + 1, e)

    # Absorb short neighbouring blocks lying (mostly) within the radius: fragments of the
    # same place cut off by a burst of jitter.
    stays: list[_StayRec] = []
    taken = [False] * len(blocks)
    next_stay = [n] * (len(blocks) + 1)  # first fix of the next stay block after block i
    for i in range(len(blocks) - 1, -1, -1):
        next_stay[i] = blocks[i + 1][0] if i + 1 < len(blocks) and blocks[i + 1][2] else n
        if i + 1 < len(blocks) and not blocks[i + 1][2]:
            next_stay[i] = next_stay[i + 1]
    for i, (s, e, is_stay, clat, clon) in enumerate(blocks):
        if not is_stay:
            continue
        j = i - 1
        while j >= 0 and not blocks[j][2] and not taken[j] and _near(tr, blocks[j], clat, clon, r):
            taken[j] = True
            s = blocks[j][0]
            j -= 1
        j = i + 1
        while j < len(blocks) and not blocks[j][2] and _near(tr, blocks[j], clat, clon, r):
            taken[j] = True
            e = blocks[j][1]
            j += 1
        # Then the fixes just before / after within the radius: the last metres of the
        # way in and the first of the way out (boundaries are refined later).
        lo_lim = stays[-1].e + 1 if stays else 0
        s = max(s, lo_lim)
        if s > lo_lim:
            d = _dist_from(tr.lat[lo_lim:s][::-1], tr.lon[lo_lim:s][::-1], clat, clon)
            out = d > r
            s -= int(np.argmax(out)) if out.any() else d.size
        hi_lim = next_stay[i]
        if e < hi_lim - 1:
            d = _dist_from(tr.lat[e + 1 : hi_lim], tr.lon[e + 1 : hi_lim], clat, clon)
            out = d > r
            e += int(np.argmax(out)) if out.any() else d.size
        stays.append(_StayRec(s, e, clat, clon))

    # Merge consecutive stays at the same place.
    merged: list[_StayRec] = []
    for st in stays:
        if merged and _mergeable(tr, merged[-1], st, p):
            prev = merged[-1]
            prev.e = st.e
            prev.lat, prev.lon = centre(prev.s, prev.e)
        else:
            merged.append(st)
    for st in merged:
        st.lat, st.lon = centre(st.s, st.e)
        d = _dist_from(tr.lat[st.s : st.e + 1], tr.lon[st.s : st.e + 1], st.lat, st.lon)
        # Final trim: a stay starts and ends with fixes within the radius of its centre.
        inside = d <= r
        s2 = st.s + int(np.argmax(inside))
        e2 = st.e - int(np.argmax(inside[::-1]))
        if (s2, e2) != (st.s, st.e) and t[e2] - t[s2] >= p.min_stay_s:
            st.s, st.e = s2, e2
            st.lat, st.lon = centre(st.s, st.e)
            d = _dist_from(tr.lat[st.s : st.e + 1], tr.lon[st.s : st.e + 1], st.lat, st.lon)
        st.radius = _wquantile(d, w[st.s : st.e + 1] + 1e-9, 0.9)
        st.start_t = float(t[st.s])
        st.end_t = float(t[st.e])
    return merged


def _near(
    tr: _Track, block: tuple[int, int, bool, float, float], clat: float, clon: float, r: float
) -> bool:
    """A block belongs to a neighbouring stay when its mean is within the radius and at
    least ``_ABSORB_SHARE`` of its fixes are (a walk through the edge of the place is not)."""
    s, e = block[0], block[1]
    if _dist_from(np.array([block[3]]), np.array([block[4]]), clat, clon)[0] > r:
        return False
    d = _dist_from(tr.lat[s : e + 1], tr.lon[s : e + 1], clat, clon)
    return bool(np.count_nonzero(d <= r) >= _ABSORB_SHARE * d.size)


def _mergeable(tr: _Track, a: _StayRec, b: _StayRec, p: TimelineParams) -> bool:
    if haversine_m(a.lat, a.lon, b.lat, b.lon) > p.merge_radius_m:
        return False
    if b.s == a.e + 1:
        return True  # nothing in between: a gap without movement never splits a stay
    if tr.t[b.s] - tr.t[a.e] > p.merge_gap_s:
        return False
    la = tr.lat[a.e + 1 : b.s]
    lo = tr.lon[a.e + 1 : b.s]
    reach = np.minimum(_dist_from(la, lo, a.lat, a.lon), _dist_from(la, lo, b.lat, b.lon))
    return not bool((reach > p.min_trip_distance_m).any())


# --- step 4: boundaries and trips ----------------------------------------------------


def _window(t: FloatArray, half: float) -> tuple[IntArray, IntArray]:
    """Per sample, the first and last index within +-half seconds."""
    eps = 1e-6
    lo = _sorted_search(t, t - half - eps, "left")
    hi = _sorted_search(t, t + half + eps, "right") - 1
    return lo, hi


def _chord_speed(t: FloatArray, lat: FloatArray, lon: FloatArray, half: float) -> FloatArray:
    """Straight-line speed between the first and last fix within +-half seconds (or the
    neighbours when a fix has none that close); NaN for a lone fix."""
    n = t.size
    lo, hi = _window(t, half)
    alone = hi <= lo
    if alone.any():
        k = np.arange(n, dtype=np.int64)
        lo = np.where(alone, np.maximum(k - 1, 0), lo)
        hi = np.where(alone, np.minimum(k + 1, n - 1), hi)
    dt = t[hi] - t[lo]
    d = haversine_np(lat[lo], lon[lo], lat[hi], lon[hi])
    out = np.full(n, np.nan)
    np.divide(d, dt, out=out, where=dt > 0)
    return out


def _edge_speed(tr: _Track, a: int, b: int) -> float:
    """Median +-5 s chord speed of fixes a..b (a short slice at a trip's end)."""
    if b < a:
        return math.nan
    v = _chord_speed(tr.t[a : b + 1], tr.lat[a : b + 1], tr.lon[a : b + 1], _CLASS_HALF_WINDOW_S)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def _refine(tr: _Track, stays: list[_StayRec], p: TimelineParams) -> None:
    """Move each stay's start to the estimated arrival at its centre and its end to the
    estimated departure from it, so that trips run from place to place.

    Only where the fixes around the boundary are dense (at most ``_REFINE_MAX_DT_S``
    apart); elsewhere a stay runs from its first to its last fix. The stay's own fixes
    that lead straight from the centre to the first fix outside (see
    :func:`_straight_run`) are the way out; from the innermost of them the remaining
    distance to the centre is covered at the speed of the trip's first fixes. Arrivals
    mirror this. A boundary never moves outside the stay's own fixes, and a stay never
    shrinks below ``min_stay_s``.
    """
    t = tr.t
    for k, st in enumerate(stays):
        raw_s, raw_e = float(t[st.s]), float(t[st.e])
        start, end = raw_s, raw_e
        floor = stays[k - 1].e if k > 0 else -1
        l_ = st.s - 1
        if l_ > floor and t[st.s] - t[l_] <= _REFINE_MAX_DT_S:
            v = _edge_speed(tr, max(floor + 1, l_ - _EDGE_FIXES + 1), l_)
            v = max(v, _MIN_EXTRAPOLATION_MPS) if math.isfinite(v) else _MIN_EXTRAPOLATION_MPS
            k0, rest = _straight_run(tr, st, l_, +1)
            start = min(max(float(t[k0]) + rest / v, raw_s), raw_e - p.min_stay_s)
        ceil = stays[k + 1].s if k + 1 < len(stays) else t.size
        f = st.e + 1
        if f < ceil and t[f] - t[st.e] <= _REFINE_MAX_DT_S:
            v = _edge_speed(tr, f, min(ceil - 1, f + _EDGE_FIXES - 1))
            v = max(v, _MIN_EXTRAPOLATION_MPS) if math.isfinite(v) else _MIN_EXTRAPOLATION_MPS
            k0, rest = _straight_run(tr, st, f, -1)
            end = max(min(float(t[k0]) - rest / v, raw_e), start + p.min_stay_s)
        st.start_t = start
        st.end_t = end


def _straight_run(tr: _Track, st: _StayRec, anchor: int, step: int) -> tuple[int, float]:
    """Follow the stay's fixes from the trip fix ``anchor`` just outside it (``step`` +1:
    into the stay after an arrival, -1: back from a departure) while they stay dense and
    within ``_CORRIDOR_M`` of the straight line from the anchor to the centre, moving
    towards the centre (``_BACKTRACK_M`` of slack). Returns the innermost such fix and
    its remaining distance to the centre along that line."""
    t = tr.t
    kx = M_PER_DEG_LAT * math.cos(math.radians(st.lat))
    ax = (float(tr.lon[anchor]) - st.lon) * kx
    ay = (float(tr.lat[anchor]) - st.lat) * M_PER_DEG_LAT
    length = math.hypot(ax, ay)
    if length <= 0.0:
        return anchor, 0.0
    ux, uy = ax / length, ay / length
    if step > 0:
        idx = np.arange(anchor + 1, min(st.e, anchor + _RUN_MAX_FIXES) + 1)
    else:
        idx = np.arange(anchor - 1, max(st.s, anchor - _RUN_MAX_FIXES) - 1, -1)
    if idx.size == 0:
        return anchor, length
    px = (tr.lon[idx] - st.lon) * kx
    py = (tr.lat[idx] - st.lat) * M_PER_DEG_LAT
    along = px * ux + py * uy
    across = np.abs(px * uy - py * ux)
    dense = np.abs(t[idx] - t[idx - step]) <= _REFINE_MAX_DT_S
    # closest approach so far, before each fix (starting from the anchor itself)
    before = np.minimum.accumulate(np.concatenate(([length], np.maximum(along, 0.0))))[:-1]
    ok = (
        dense & (across <= _CORRIDOR_M) & (along >= -_CORRIDOR_M) & (along <= before + _BACKTRACK_M)
    )
    m = int(np.argmin(ok)) if not ok.all() else idx.size
    if m == 0:
        return anchor, length
    return int(idx[m - 1]), float(min(before[m - 1], max(float(along[m - 1]), 0.0)))


@dataclass
class _End:
    """One end of a trip: when, where, and the fix index that documents it."""

    t: float
    lat: float
    lon: float
    idx: int


def _path_length(lat: FloatArray, lon: FloatArray) -> float:
    """Length (m) of a path after RDP simplification at ``_PATH_TOLERANCE_M``."""
    n = lat.size
    if n < 2:
        return 0.0
    if n > 2:
        lat0 = float(lat[0])
        xy = np.empty((n, 2), dtype=np.float64)
        xy[:, 0] = (lon - lon[0]) * (M_PER_DEG_LAT * math.cos(math.radians(lat0)))
        xy[:, 1] = (lat - lat0) * M_PER_DEG_LAT
        keep = np.asarray(simplify_coords_idx(xy, _PATH_TOLERANCE_M), dtype=np.int64)
        lat = lat[keep]
        lon = lon[keep]
    return float(haversine_np(lat[:-1], lon[:-1], lat[1:], lon[1:]).sum())


def _moved(lat: FloatArray, lon: FloatArray, a: _End, b: _End, p: TimelineParams) -> bool:
    """Real movement between two ends: they are more than ``merge_radius_m`` apart, or
    some fix in between is farther than ``min_trip_distance_m`` from both."""
    if haversine_m(a.lat, a.lon, b.lat, b.lon) > p.merge_radius_m:
        return True
    if lat.size == 0:
        return False
    reach = np.minimum(_dist_from(lat, lon, a.lat, a.lon), _dist_from(lat, lon, b.lat, b.lon))
    return bool((reach > p.min_trip_distance_m).any())


def _connect(tr: _Track, p: TimelineParams, a: _StayRec | None, b: _StayRec | None) -> list[Trip]:
    """The trips between stay ``a`` and stay ``b`` (either may be None: the data's start
    or end)."""
    t = tr.t
    n = t.size
    cs = a.e + 1 if a is not None else 0
    ce = b.s - 1 if b is not None else n - 1
    lo = a.e if a is not None else cs
    hi = b.s if b is not None else ce
    legs = np.diff(t[lo : hi + 1])
    big = (np.nonzero(legs > p.max_gap_s)[0] + lo).tolist()

    def start_at_stay(st: _StayRec) -> _End:
        return _End(st.end_t, st.lat, st.lon, st.e)

    def end_at_stay(st: _StayRec) -> _End:
        return _End(st.start_t, st.lat, st.lon, st.s)

    def at_fix(i: int) -> _End:
        return _End(float(t[i]), float(tr.lat[i]), float(tr.lon[i]), i)

    if not big:
        if cs > ce:
            if a is None or b is None:
                return []
            trip = _make_trip(tr, p, start_at_stay(a), end_at_stay(b), cs, ce, observed=False)
            return [trip] if trip is not None else []
        if (a is None or b is None) and ce - cs + 1 < _MIN_OPEN_TRIP_FIXES:
            return []
        s_end = start_at_stay(a) if a is not None else at_fix(cs)
        e_end = end_at_stay(b) if b is not None else at_fix(ce)
        trip = _make_trip(tr, p, s_end, e_end, cs, ce, observed=True)
        return [trip] if trip is not None else []

    # Split the fixes between the stays at the long gaps.
    pieces: list[tuple[int, int]] = []
    cur = cs
    for g in big:
        if cur <= g <= ce:
            pieces.append((cur, g))
        cur = max(cur, g + 1)
    if cur <= ce:
        pieces.append((cur, ce))
    elements: list[tuple[_End, _End, Trip | None]] = []
    if a is not None:
        e0 = start_at_stay(a)
        elements.append((e0, e0, None))
    for k, (ps, pe) in enumerate(pieces):
        attached_a = a is not None and k == 0 and ps == cs and t[ps] - t[a.e] <= p.max_gap_s
        attached_b = (
            b is not None and k == len(pieces) - 1 and pe == ce and t[b.s] - t[pe] <= p.max_gap_s
        )
        if pe - ps + 1 < _MIN_OPEN_TRIP_FIXES and not (attached_a and attached_b):
            continue
        s_end = start_at_stay(a) if attached_a and a is not None else at_fix(ps)
        e_end = end_at_stay(b) if attached_b and b is not None else at_fix(pe)
        trip = _make_trip(tr, p, s_end, e_end, ps, pe, observed=True)
        if trip is not None:
            elements.append((s_end, e_end, trip))
    if b is not None:
        e1 = end_at_stay(b)
        elements.append((e1, e1, None))
    out: list[Trip] = [el[2] for el in elements if el[2] is not None]
    # Whatever lies across a long gap between two elements is an unknown trip.
    for (_, x_end, _), (y_start, _, _) in pairwise(elements):
        if any(x_end.idx <= g < y_start.idx for g in big):
            gap_trip = _make_trip(
                tr, p, x_end, y_start, x_end.idx + 1, y_start.idx - 1, observed=False
            )
            if gap_trip is not None:
                out.append(gap_trip)
    return out


def _make_trip(
    tr: _Track, p: TimelineParams, s: _End, e: _End, ps: int, pe: int, *, observed: bool
) -> Trip | None:
    """A trip from ``s`` to ``e`` through fixes ``ps..pe`` (possibly none), or None when
    it does not qualify (no duration, too short, or no real movement). ``observed=False``
    makes it an unknown ("other") trip.

    The path (hence the distance) runs from the place's centre through the fixes outside
    the places; speeds, mode and events use every fix within the trip's time span (the
    refined boundaries put the last metres inside a place's radius into the trip)."""
    duration = e.t - s.t
    if not duration > 0:
        return None
    lat_in = tr.lat[ps : pe + 1] if pe >= ps else tr.lat[:0]
    lon_in = tr.lon[ps : pe + 1] if pe >= ps else tr.lon[:0]
    head_lat = [s.lat] if s.idx != ps else []
    head_lon = [s.lon] if s.idx != ps else []
    tail_lat = [e.lat] if e.idx != pe else []
    tail_lon = [e.lon] if e.idx != pe else []
    path_lat = np.concatenate((head_lat, lat_in, tail_lat))
    path_lon = np.concatenate((head_lon, lon_in, tail_lon))
    distance = _path_length(path_lat, path_lon)
    if distance < p.min_trip_distance_m or not _moved(lat_in, lon_in, s, e, p):
        return None
    avg = distance / duration
    mode: Mode = "other"
    max_speed = avg
    events: tuple[DrivingEvent, ...] = ()
    summary: DrivingSummary | None = None
    if observed and pe >= ps:
        t = tr.t
        # Fixes within the trip's time span: inside the places' radii after a refined
        # departure / before a refined arrival, too.
        sa = ps
        if s.idx < ps and s.t < t[s.idx]:
            sa = min(ps, int(np.searchsorted(t, s.t, side="left")))
        sb = pe
        if e.idx > pe and e.t > t[e.idx]:
            sb = max(pe, int(np.searchsorted(t, e.t, side="right")) - 1)
        # A lone fix borrows the fixes at the places around it for its speed.
        a_i = sa if sb > sa else min(sa, s.idx)
        b_i = sb if sb > sa else max(sb, e.idx)
        sp = _speeds(tr, a_i, b_i)
        off = sa - a_i
        m = sb - sa + 1
        v_cls = sp.v_cls[off : off + m]
        v_fine = sp.v_fine[off : off + m]
        mode = _classify(v_cls, sp.weights[off : off + m])
        finite = v_fine[np.isfinite(v_fine)]
        if finite.size:
            max_speed = max(avg, float(finite.max()))
        if mode == "driving":
            found = _driving_events(
                t[sa : sb + 1],
                tr.lat[sa : sb + 1],
                tr.lon[sa : sb + 1],
                v_fine,
                sp.accel[off : off + m],
                p,
            )
            events = tuple(x for x, _ in found)
            speeding = [x for x in events if x.kind == "speeding"]
            braking = sum(1 for x in events if x.kind == "hard_braking")
            accel = sum(1 for x in events if x.kind == "rapid_acceleration")
            speeding_s = float(sum(c for x, c in found if x.kind == "speeding"))
            summary = DrivingSummary(
                events=len(events),
                speeding=len(speeding),
                hard_braking=braking,
                rapid_acceleration=accel,
                speeding_s=speeding_s,
                max_speed_mps=max_speed,
                score=driving_score(distance, len(speeding), braking, accel, speeding_s),
            )
    return Trip(
        start_t=s.t,
        end_t=e.t,
        start_lat=s.lat,
        start_lon=_wrap_lon(s.lon),
        end_lat=e.lat,
        end_lon=_wrap_lon(e.lon),
        distance_m=distance,
        duration_s=duration,
        avg_speed_mps=avg,
        max_speed_mps=max_speed,
        mode=mode,
        first=int(tr.orig[s.idx]),
        last=int(tr.orig[e.idx]),
        events=events,
        summary=summary,
    )


# --- step 5: speeds, modes, events ---------------------------------------------------


@dataclass
class _Speeds:
    v_cls: FloatArray
    """For the mode: device speed when plausible, else the +-5 s chord speed."""
    v_fine: FloatArray
    """For speeding and max speed: device speed or the +-2 s chord, averaged over +-1 s."""
    accel: FloatArray
    """Change over +-1 s of the device speed or the +-1 s chord speed (NaN where no
    neighbour is that close)."""
    weights: FloatArray
    """Seconds each sample stands for."""


def _speeds(tr: _Track, a: int, b: int) -> _Speeds:
    t = tr.t[a : b + 1]
    lat = tr.lat[a : b + 1]
    lon = tr.lon[a : b + 1]
    dev = tr.dev[a : b + 1]
    v_cls = _chord_speed(t, lat, lon, _CLASS_HALF_WINDOW_S)
    v_raw = _chord_speed(t, lat, lon, _FINE_HALF_WINDOW_S)
    v_acc = _chord_speed(t, lat, lon, _ACCEL_HALF_WINDOW_S)
    with np.errstate(invalid="ignore"):
        plausible = (
            np.isfinite(dev)
            & (dev >= 0.0)
            & (dev <= _MAX_SPEED_MPS)
            & ~(np.abs(dev - v_cls) > 5.0 + 0.5 * v_cls)
        )
    if plausible.size and plausible.mean() >= 0.5:
        v_cls = np.where(plausible, dev, v_cls)
        v_raw = np.where(plausible, dev, v_raw)
        v_acc = np.where(plausible, dev, v_acc)
    v_fine = _smooth(t, v_raw, _SMOOTH_HALF_WINDOW_S)
    lo, hi = _window(t, _ACCEL_HALF_WINDOW_S)
    dt = t[hi] - t[lo]
    accel = np.full(t.size, np.nan)
    np.divide(v_acc[hi] - v_acc[lo], dt, out=accel, where=dt > 0)
    return _Speeds(
        v_cls,
        v_fine,
        accel,
        _Track(t, lat, lon, dev, tr.orig[a : b + 1], tr.kx[a : b + 1]).weights(),
    )


def _smooth(t: FloatArray, v: FloatArray, half: float) -> FloatArray:
    """Mean of the finite values within +-half seconds."""
    lo, hi = _window(t, half)
    ok = np.isfinite(v)
    vv = np.where(ok, v, 0.0)
    cs = np.concatenate(([0.0], np.cumsum(vv)))
    cn = np.concatenate(([0], np.cumsum(ok)))
    cnt = cn[hi + 1] - cn[lo]
    out = np.full(t.size, np.nan)
    np.divide(cs[hi + 1] - cs[lo], cnt, out=out, where=cnt > 0)
    return out


def _wpercentiles(v: FloatArray, w: FloatArray, qs: Sequence[float]) -> list[float]:
    order = _argsort_stable(v)
    vs = v[order]
    cw = np.cumsum(w[order])
    total = float(cw[-1])
    out: list[float] = []
    for q in qs:
        k = int(np.searchsorted(cw, q * total, side="left"))
        out.append(float(vs[min(k, vs.size - 1)]))
    return out


def _classify(v: FloatArray, w: FloatArray) -> Mode:
    """Mode from time-weighted percentiles of the moving speed (samples >= 0.5 m/s).

    driving: p85 > 7 m/s (25 km/h) or p95 > 12 m/s (43 km/h); cycling: p85 > 2.5 m/s
    (9 km/h); walking otherwise; "other" without any moving sample.
    """
    with np.errstate(invalid="ignore"):
        moving = np.isfinite(v) & (v >= _STOPPED_MPS)
    w_m = np.where(w > 0, w, 1.0)[moving]
    if not moving.any() or float(w_m.sum()) <= 0:
        return "other"
    p85, p95 = _wpercentiles(v[moving], w_m, (0.85, 0.95))
    if p85 > _DRIVE_P85_MPS or p95 > _DRIVE_P95_MPS:
        return "driving"
    if p85 > _WALK_P85_MPS:
        return "cycling"
    return "walking"


def _covered(t: FloatArray, s: int, e: int) -> float:
    """Time a run of samples s..e stands for: its span plus one sampling interval (the
    median interval around it, at most ``_EVENT_MAX_DT_S``), so that two 1 Hz samples
    cover 2 s."""
    seg = np.diff(t[max(s - 1, 0) : min(e + 2, t.size)])
    seg = seg[seg <= _EVENT_MAX_DT_S]
    step = float(np.median(seg)) if seg.size else 0.0
    return float(t[e] - t[s]) + step


def _runs(mask: BoolArray, t: FloatArray) -> list[tuple[int, int]]:
    """Maximal runs of True whose consecutive fixes are at most ``_EVENT_MAX_DT_S`` apart."""
    if not mask.any():
        return []
    cont = np.zeros(mask.size, dtype=np.bool_)
    cont[:-1] = mask[:-1] & mask[1:] & (np.diff(t) <= _EVENT_MAX_DT_S)
    prev = np.concatenate(([False], cont[:-1]))
    starts = np.nonzero(mask & ~prev)[0].tolist()
    ends = np.nonzero(mask & ~cont)[0].tolist()
    return list(zip(starts, ends, strict=True))


def _driving_events(
    t: FloatArray,
    lat: FloatArray,
    lon: FloatArray,
    v: FloatArray,
    accel: FloatArray,
    p: TimelineParams,
) -> list[tuple[DrivingEvent, float]]:
    """Driving events with the time each covers (see :func:`_covered`)."""
    events: list[tuple[DrivingEvent, float]] = []

    def add(kind: EventKind, s: int, e: int, values: FloatArray, pick: Callable[..., int]) -> None:
        k = s + int(pick(values[s : e + 1]))
        events.append(
            (
                DrivingEvent(
                    kind=kind,
                    start_t=float(t[s]),
                    end_t=float(t[e]),
                    lat=float(lat[k]),
                    lon=_wrap_lon(float(lon[k])),
                    value=float(abs(values[k])),
                ),
                _covered(t, s, e),
            )
        )

    with np.errstate(invalid="ignore"):
        fast = np.isfinite(v) & (v > p.speeding_limit_mps)
        braking = np.isfinite(accel) & (accel <= -p.hard_brake_mps2)
        rapid = np.isfinite(accel) & (accel >= p.rapid_accel_mps2)
    for s, e in _runs(fast, t):
        if _covered(t, s, e) >= p.speeding_min_s - 1e-9:
            add("speeding", s, e, v, np.argmax)
    for s, e in _runs(braking, t):
        if _covered(t, s, e) >= _ACCEL_PERSIST_S - 1e-9:
            add("hard_braking", s, e, accel, np.argmin)
    for s, e in _runs(rapid, t):
        if _covered(t, s, e) >= _ACCEL_PERSIST_S - 1e-9:
            add("rapid_acceleration", s, e, accel, np.argmax)
    events.sort(key=lambda x: x[0].start_t)
    return events
