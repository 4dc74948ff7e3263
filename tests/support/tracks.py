"""Synthetic location tracks for the timeline and simplification tests and the bench.

A :class:`TrackBuilder` walks a person through a day in a local metric frame
(x east, y north, metres from an origin) and emits :class:`Point` fixes as a
phone or watch would: jittery fixes while stationary (at heartbeat or 1 Hz
rates), clean 1 Hz fixes while moving, outliers and data gaps on request. It
also records the ground truth (where each stay was, how long each trip was)
for the tests to compare the detected timeline with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kares.geo.distance import M_PER_DEG_LAT
from kares.geo.points import Point

FloatArray = npt.NDArray[np.float64]

DAY0 = 1_714_953_600.0  # 2024-05-06 00:00:00 UTC


@dataclass(frozen=True)
class Route:
    """A polyline in the local frame, sampled every metre or so."""

    x: FloatArray
    y: FloatArray

    @property
    def length_m(self) -> float:
        return float(np.hypot(np.diff(self.x), np.diff(self.y)).sum())

    def reversed(self) -> Route:
        return Route(self.x[::-1].copy(), self.y[::-1].copy())

    def at(self, s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Positions at arc lengths ``s`` (clamped to the route)."""
        seg = np.hypot(np.diff(self.x), np.diff(self.y))
        cum = np.concatenate(([0.0], np.cumsum(seg)))
        s = np.clip(s, 0.0, cum[-1])
        return np.interp(s, cum, self.x), np.interp(s, cum, self.y)

    @staticmethod
    def winding(
        x0: float,
        y0: float,
        length_m: float,
        heading_deg: float,
        *,
        wiggle_deg: float = 12.0,
        wavelength_m: float = 3000.0,
    ) -> Route:
        """A gently winding road: the heading swings +-wiggle around the mean."""
        s = np.arange(0.0, length_m + 1.0, 1.0)
        h = np.radians(heading_deg + wiggle_deg * np.sin(2.0 * math.pi * s / wavelength_m))
        dx = np.sin(h[:-1])
        dy = np.cos(h[:-1])
        x = x0 + np.concatenate(([0.0], np.cumsum(dx)))
        y = y0 + np.concatenate(([0.0], np.cumsum(dy)))
        return Route(x, y)

    @staticmethod
    def legs(x0: float, y0: float, legs: Sequence[tuple[float, float]]) -> Route:
        """Straight legs given as (length_m, heading_deg), sampled every metre."""
        xs = [np.array([x0])]
        ys = [np.array([y0])]
        x, y = x0, y0
        for length, heading in legs:
            steps = max(1, round(length))
            f = np.arange(1, steps + 1) / steps
            hx = math.sin(math.radians(heading)) * length
            hy = math.cos(math.radians(heading)) * length
            xs.append(x + f * hx)
            ys.append(y + f * hy)
            x, y = x + hx, y + hy
        return Route(np.concatenate(xs), np.concatenate(ys))


Keyframes = Sequence[tuple[float | None, float]]
"""Speed profile: (duration_s, speed at its end) ramps, linear in time. One entry
may have duration None: a cruise at the previous speed whose length is solved so
that the profile covers the whole route."""


def _solve_profile(keys: Keyframes, length_m: float) -> list[tuple[float, float]]:
    fixed = 0.0
    v = 0.0
    flex_v: float | None = None
    for dur, v_end in keys:
        if dur is None:
            flex_v = v
            continue
        fixed += 0.5 * (v + v_end) * dur
        v = v_end
    out: list[tuple[float, float]] = []
    v = 0.0
    for dur, v_end in keys:
        if dur is None:
            assert flex_v is not None and flex_v > 0
            cruise = (length_m - fixed) / flex_v
            assert cruise > 0, "route too short for the profile"
            out.append((cruise, v))
        else:
            out.append((dur, v_end))
            v = v_end
    return out


@dataclass(frozen=True)
class StayTruth:
    start_t: float
    end_t: float
    lat: float
    lon: float
    name: str


@dataclass(frozen=True)
class TripTruth:
    start_t: float
    end_t: float
    distance_m: float
    mode: str
    name: str


@dataclass
class TrackBuilder:
    """Builds a day of fixes. Positions are kept in a local frame around
    (``lat0``, ``lon0``); every fix is converted to degrees when emitted."""

    t: float = DAY0
    lat0: float = 48.8566
    lon0: float = 2.3522
    seed: int = 1
    x: float = 0.0
    y: float = 0.0
    points: list[Point] = field(default_factory=list)
    stays: list[StayTruth] = field(default_factory=list)
    trips: list[TripTruth] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._kx = M_PER_DEG_LAT * math.cos(math.radians(self.lat0))

    # -- conversions ---------------------------------------------------------
    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return self.lat0 + y / M_PER_DEG_LAT, (self.lon0 + x / self._kx + 180.0) % 360.0 - 180.0

    def here(self) -> tuple[float, float]:
        return self.to_latlon(self.x, self.y)

    def _emit(
        self,
        ts: FloatArray,
        xs: FloatArray,
        ys: FloatArray,
        acc: FloatArray | None = None,
        speed: FloatArray | None = None,
    ) -> None:
        lat = self.lat0 + ys / M_PER_DEG_LAT
        lon = (self.lon0 + xs / self._kx + 180.0) % 360.0 - 180.0
        for k in range(ts.size):
            self.points.append(
                Point(
                    float(ts[k]),
                    float(lat[k]),
                    float(lon[k]),
                    None if acc is None else float(acc[k]),
                    None if speed is None else float(speed[k]),
                )
            )

    # -- segments ------------------------------------------------------------
    def stay(
        self,
        duration_s: float,
        *,
        interval_s: float,
        jitter_m: tuple[float, float] = (30.0, 80.0),
        outliers: Sequence[tuple[float, float, float]] = (),
        bad_accuracy_every: int = 0,
        name: str = "",
    ) -> None:
        """Stationary fixes every ``interval_s`` for ``duration_s``: each fix is off the
        true spot by a random distance in ``jitter_m`` in a random direction.
        ``outliers`` are (offset_s, distance_m, bearing_deg): one wild fix each.
        ``bad_accuracy_every`` adds a far-off fix with 500 m accuracy every n fixes."""
        ts = self.t + np.arange(0.0, duration_s, interval_s)
        n = ts.size
        r = self.rng.uniform(jitter_m[0], jitter_m[1], n)
        a = self.rng.uniform(0.0, 2.0 * math.pi, n)
        xs = self.x + r * np.sin(a)
        ys = self.y + r * np.cos(a)
        acc = np.full(n, max(jitter_m[1], 10.0))
        if bad_accuracy_every:
            sel = np.arange(n) % bad_accuracy_every == bad_accuracy_every // 2
            xs[sel] += 700.0
            acc[sel] = 500.0
        for off, dist, bearing in outliers:
            k = int(np.searchsorted(ts, self.t + off))
            if k < n:
                xs[k] = self.x + dist * math.sin(math.radians(bearing))
                ys[k] = self.y + dist * math.cos(math.radians(bearing))
                acc[k] = 40.0
        self._emit(ts, xs, ys, acc=acc)
        lat, lon = self.here()
        self.stays.append(StayTruth(self.t, self.t + duration_s, lat, lon, name))
        self.t += duration_s

    def travel(
        self,
        route: Route,
        keys: Keyframes,
        *,
        mode: str,
        interval_s: float = 1.0,
        noise_m: float = 1.0,
        device_speed: bool = False,
        gap: tuple[float, float] | None = None,
        name: str = "",
    ) -> None:
        """Move along ``route`` (which must start here) with the speed profile ``keys``.
        ``gap`` = (start offset, duration) seconds without any fix."""
        prof = _solve_profile(keys, route.length_m)
        total = sum(d for d, _ in prof)
        ts = np.arange(interval_s, total + 1e-9, interval_s)
        v = np.zeros_like(ts)
        s = np.zeros_like(ts)
        t_a = 0.0
        v_a = 0.0
        s_a = 0.0
        for dur, v_b in prof:
            sel = (ts > t_a) & (ts <= t_a + dur)
            u = ts[sel] - t_a
            acc = (v_b - v_a) / dur
            v[sel] = v_a + acc * u
            s[sel] = s_a + v_a * u + 0.5 * acc * u * u
            s_a += 0.5 * (v_a + v_b) * dur
            t_a += dur
            v_a = v_b
        xs, ys = route.at(s)
        xs = xs + self.rng.normal(0.0, noise_m, ts.size)
        ys = ys + self.rng.normal(0.0, noise_m, ts.size)
        keep = np.ones(ts.size, dtype=bool)
        if gap is not None:
            keep &= ~((ts >= gap[0]) & (ts < gap[0] + gap[1]))
        speed = None
        if device_speed:
            speed = np.maximum(0.0, v + self.rng.normal(0.0, 0.2, ts.size))[keep]
        acc_m = np.full(int(keep.sum()), 5.0)
        self._emit(self.t + ts[keep], xs[keep], ys[keep], acc=acc_m, speed=speed)
        self.trips.append(TripTruth(self.t, self.t + total, route.length_m, mode, name))
        self.x = float(route.x[-1])
        self.y = float(route.y[-1])
        self.t += total

    def gap(self, seconds: float) -> None:
        self.t += seconds


# -- the reference day -------------------------------------------------------

DRIVE_TO_WORK: Keyframes = (
    (8.0, 11.1),  # 0 -> 40 km/h
    (60.0, 11.1),
    (6.0, 16.7),  # 60 km/h
    (None, 16.7),  # cruise, solved to fill the route
    (6.0, 25.0),  # 90 km/h
    (120.0, 25.0),
    (6.0, 36.1),  # 130 km/h: speeding for ~30 s
    (30.0, 36.1),
    (8.0, 25.0),
    (90.0, 25.0),
    (4.0, 5.0),  # hard braking: -5 m/s2 for 4 s
    (10.0, 5.0),
    (8.0, 16.7),
    (120.0, 16.7),
    (11.0, 0.0),  # gentle stop (-1.5 m/s2)
)

DRIVE_HOME: Keyframes = (
    (10.0, 13.9),  # 50 km/h
    (None, 13.9),
    (8.0, 22.2),  # 80 km/h
    (200.0, 22.2),
    (8.0, 13.9),
    (120.0, 13.9),
    (10.0, 0.0),
)

WALK: Keyframes = ((2.0, 1.4), (None, 1.4), (2.0, 0.0))


def reference_day(
    *,
    seed: int = 7,
    stay_interval_s: float | None = None,
    home_interval_s: float = 600.0,
    work_interval_s: float = 60.0,
    lunch_interval_s: float = 30.0,
    evening_gap_s: float = 600.0,
    device_speed: bool = False,
    lat0: float = 48.8566,
    lon0: float = 2.3522,
) -> TrackBuilder:
    """The day of the tests: home -> drive -> work -> walk -> lunch -> walk -> work ->
    drive (with a data gap) -> home. ``stay_interval_s`` overrides every stay's rate
    (1.0 gives a 1 Hz day)."""
    hi = stay_interval_s or home_interval_s
    wi = stay_interval_s or work_interval_s
    li = stay_interval_s or lunch_interval_s
    b = TrackBuilder(seed=seed, lat0=lat0, lon0=lon0)
    b.stay(7.5 * 3600, interval_s=hi, name="home")
    to_work = Route.winding(b.x, b.y, 15_000.0, 60.0)
    b.travel(to_work, DRIVE_TO_WORK, mode="driving", device_speed=device_speed, name="to work")
    morning_end = DAY0 + 12 * 3600
    b.stay(
        morning_end - b.t,
        interval_s=wi,
        outliers=[(2 * 3600.0, 2000.0, 200.0)],
        bad_accuracy_every=37,
        name="work",
    )
    to_lunch = Route.legs(b.x, b.y, [(500.0, 90.0), (300.0, 0.0)])
    b.travel(to_lunch, WALK, mode="walking", noise_m=1.0, name="to lunch")
    b.stay(45 * 60.0, interval_s=li, name="lunch")
    b.travel(to_lunch.reversed(), WALK, mode="walking", noise_m=1.0, name="back")
    b.stay(DAY0 + 17 * 3600 - b.t, interval_s=wi, name="work")
    gap = (300.0, evening_gap_s) if evening_gap_s > 0 else None
    b.travel(
        to_work.reversed(),
        DRIVE_HOME,
        mode="driving",
        device_speed=device_speed,
        gap=gap,
        name="home",
    )
    b.stay(DAY0 + 86_400.0 - b.t, interval_s=hi, name="home")
    return b


def one_hz_day(*, seed: int = 3, n: int = 86_400) -> list[Point]:
    """The reference day at 1 Hz everywhere (no gap), cut to exactly ``n`` fixes."""
    b = reference_day(seed=seed, stay_interval_s=1.0, evening_gap_s=0.0)
    while len(b.points) < n:
        b.stay(600.0, interval_s=1.0, name="home")
    return b.points[:n]


# -- random scenarios for property tests --------------------------------------------


@dataclass(frozen=True)
class Seg:
    """One piece of a random scenario.

    kind "stay": stationary for ``duration_s``, a fix every ``interval_s``, jitter up to
    ``jitter_m``; "move": straight line at ``speed_mps`` towards ``heading_deg``, a fix
    every ``interval_s``; "gap": no fix for ``duration_s``; "jump": move ``distance_m``
    towards ``heading_deg`` instantly and unseen (to follow a gap).
    """

    kind: str
    duration_s: float
    interval_s: float = 1.0
    jitter_m: float = 0.0
    speed_mps: float = 0.0
    heading_deg: float = 0.0
    distance_m: float = 0.0


def scenario(
    segs: Sequence[Seg],
    *,
    seed: int = 0,
    outliers: int = 0,
    duplicates: int = 0,
    lat0: float = 45.0,
    lon0: float = 7.0,
) -> list[Point]:
    """Fixes for a sequence of segments, plus ``outliers`` isolated wild fixes (1-5 km
    off, never first or last, never two in a row) and ``duplicates`` repeated timestamps."""
    rng = np.random.default_rng(seed)
    kx = M_PER_DEG_LAT * math.cos(math.radians(lat0))
    t = DAY0
    x = y = 0.0
    ts: list[float] = []
    xs: list[float] = []
    ys: list[float] = []
    for seg in segs:
        if seg.kind == "gap":
            t += seg.duration_s
            continue
        if seg.kind == "jump":
            x += math.sin(math.radians(seg.heading_deg)) * seg.distance_m
            y += math.cos(math.radians(seg.heading_deg)) * seg.distance_m
            continue
        k = np.arange(0.0, seg.duration_s, seg.interval_s)
        if seg.kind == "stay":
            r = rng.uniform(0.0, seg.jitter_m, k.size)
            a = rng.uniform(0.0, 2.0 * math.pi, k.size)
            px = x + r * np.sin(a)
            py = y + r * np.cos(a)
        else:
            h = math.radians(seg.heading_deg)
            px = x + math.sin(h) * seg.speed_mps * k + rng.normal(0.0, 1.0, k.size)
            py = y + math.cos(h) * seg.speed_mps * k + rng.normal(0.0, 1.0, k.size)
            x += math.sin(h) * seg.speed_mps * seg.duration_s
            y += math.cos(h) * seg.speed_mps * seg.duration_s
        ts.extend((t + k).tolist())
        xs.extend(px.tolist())
        ys.extend(py.tolist())
        t += seg.duration_s
    n = len(ts)
    if n >= 5 and outliers:
        slots = rng.choice(np.arange(1, n - 1, 2), size=min(outliers, (n - 2) // 2), replace=False)
        for i in slots.tolist():
            d = float(rng.uniform(1000.0, 5000.0))
            ang = float(rng.uniform(0.0, 2.0 * math.pi))
            xs[i] += d * math.sin(ang)
            ys[i] += d * math.cos(ang)
    pts = [
        Point(
            ts[i], lat0 + ys[i] / M_PER_DEG_LAT, (lon0 + xs[i] / kx + 180.0) % 360.0 - 180.0, 20.0
        )
        for i in range(n)
    ]
    if n >= 2 and duplicates:
        for i in rng.choice(n - 1, size=min(duplicates, n - 1), replace=False).tolist():
            p = pts[i]
            pts.insert(i + 1, Point(p.t, p.lat + 1e-5, p.lon, p.acc, None))
    return pts
