"""Benchmark: a day of 1 Hz fixes -> display track + timeline.

Run from the repository root:

    .venv/bin/python bench/bench_timeline.py [--runs 15]

Builds the synthetic reference day of the tests at 1 Hz everywhere (86,400 fixes:
home with 30-80 m jitter every second, a 15 km drive, work, walks, lunch, the
drive home), then times ``simplify(zoom=15, max_points=2000)`` + ``detect`` over
N runs and prints the median and best in milliseconds, the ratio to two
references measured in the same process on the same data, and whether the
median is within the 300 ms target. The references make figures comparable
across machines:

* "haversine ref": numpy great-circle distances between consecutive fixes on
  the day's latitude/longitude arrays (pure vectorised work);
* "points ref": building the list of 86,400 ``Point`` objects (pure Python).

It is a benchmark, not a test: the only checks are sanity checks.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "src", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402
from tests.support.tracks import one_hz_day  # noqa: E402

from kares.location.geo import consecutive_distances_m  # noqa: E402
from kares.location.points import Point  # noqa: E402
from kares.location.simplify import simplify  # noqa: E402
from kares.location.timeline import Timeline, detect  # noqa: E402

TARGET_MS = 300.0
T = TypeVar("T")


def timed(fn: Callable[[], T], runs: int) -> tuple[list[float], T]:
    """Milliseconds of each of ``runs`` calls (after one warm-up call), and the result."""
    result = fn()
    times: list[float] = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="timed runs (default 15)")
    args = ap.parse_args()
    runs = max(1, args.runs)

    points = one_hz_day()
    n = len(points)
    assert n == 86_400, n
    lat = np.array([p.lat for p in points])
    lon = np.array([p.lon for p in points])
    rows = [(p.t, p.lat, p.lon, p.acc, p.speed) for p in points]

    def both() -> tuple[list[int], Timeline]:
        return simplify(points, zoom=15, max_points=2000), detect(points)

    t_simplify, kept = timed(lambda: simplify(points, zoom=15, max_points=2000), runs)
    t_detect, timeline = timed(lambda: detect(points), runs)
    t_both, _ = timed(both, runs)
    t_hav, dist = timed(lambda: consecutive_distances_m(lat, lon), runs)
    t_pts, built = timed(lambda: [Point(*r) for r in rows], runs)

    # sanity only
    assert 2 <= len(kept) <= 2000 and kept[0] == 0 and kept[-1] == n - 1
    assert timeline.stays and timeline.trips
    assert dist.size == n - 1 and len(built) == n

    med = statistics.median
    ref_hav = med(t_hav)
    ref_pts = med(t_pts)
    total = med(t_both)
    print(f"kares timeline bench: {n} fixes at 1 Hz, {runs} runs (median / best ms)")
    print(f"  simplify zoom 15, max 2000  {med(t_simplify):8.1f} / {min(t_simplify):8.1f}")
    print(f"    -> {len(kept)} fixes kept")
    print(f"  detect                      {med(t_detect):8.1f} / {min(t_detect):8.1f}")
    print(
        f"    -> {len(timeline.stays)} stays, {len(timeline.trips)} trips "
        f"({', '.join(t.mode for t in timeline.trips)}), "
        f"{sum(len(t.events) for t in timeline.trips)} driving events"
    )
    print(f"  simplify + detect           {total:8.1f} / {min(t_both):8.1f}")
    print(f"  haversine ref (numpy, consecutive fixes) {ref_hav:8.2f} ms")
    print(f"  points ref (build {n} Point objects)  {ref_pts:8.1f} ms")
    print(f"  ratio simplify+detect / haversine ref   {total / ref_hav:8.1f} x")
    print(f"  ratio simplify+detect / points ref      {total / ref_pts:8.2f} x")
    verdict = "within" if total <= TARGET_MS else "OVER"
    print(f"  target {TARGET_MS:.0f} ms: {verdict} (median {total:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
