"""Which fixes of a stretch of track one person could really have been at.

Two fixes disagree when going from one to the other needs more than a maximum
speed over more than a few kilometres (the slack covers two fixes of poor
accuracy a moment apart). A fix that disagrees with the one before it says
only that one of the two is wrong, not which: the fix before may be the stale
one (a phone's cached position from yesterday, sent with today's time). So the
filter does not judge each fix against the last one it kept; it keeps, among
the fixes of the stretch in time order, the largest group that a traveller
could have visited one after the other (each agreeing with the one kept before
it), and flags the rest. One wrong fix is outvoted by the fixes around it,
whichever side it is on; fixes arriving late are judged against their
neighbours in time on both sides, like any other.

Each fix has a weight: the caller gives what it already stored and kept as
good a little more than a newcomer, so a tie keeps what was there, and the
group that grows by the next agreeing fix wins.

Pure: lists in, a list out; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from kares.geo.distance import haversine_m

SLACK_M = 2000.0
"""Within this distance two fixes always agree, whatever the time between them."""

LOOKBACK = 24
"""How many fixes back a kept fix looks for the one kept before it: a group can
step over at most this many wrong fixes in a row."""

_METRES_PER_DEGREE_BOUND = 111_320  # a degree of latitude or longitude is at most this far


def agree(
    t0_ms: int, lat0: float, lon0: float, t1_ms: int, lat1: float, lon1: float, max_speed: float
) -> bool:
    """Whether someone at the first fix could be at the second (t1 >= t0): within
    the slack, or reachable at no more than ``max_speed`` (m/s)."""
    dt = (t1_ms - t0_ms) / 1000
    bound = (abs(lat1 - lat0) + abs(lon1 - lon0)) * _METRES_PER_DEGREE_BOUND
    if bound <= SLACK_M or (dt > 0 and bound <= max_speed * dt):
        return True  # the cheap bound settles it (never less than the real distance)
    d = haversine_m(lat0, lon0, lat1, lon1)
    return d <= SLACK_M or (dt > 0 and d / dt <= max_speed)


def keep(
    t_ms: Sequence[int],
    lat: Sequence[float],
    lon: Sequence[float],
    weight: Sequence[float],
    max_speed: float,
) -> list[bool]:
    """For fixes in time order: which to keep. The kept fixes are the heaviest
    chain in which each fix agrees with the kept one before it (at most
    ``LOOKBACK`` fixes back); among equally heavy chains, the one ending latest,
    and within it the nearest fix before each."""
    n = len(t_ms)
    best = [0.0] * n
    prev = [-1] * n
    for j in range(n):
        b, p = 0.0, -1
        tj, la, lo = t_ms[j], lat[j], lon[j]
        for i in range(j - 1, max(-1, j - 1 - LOOKBACK), -1):
            if best[i] > b and agree(t_ms[i], lat[i], lon[i], tj, la, lo, max_speed):
                b, p = best[i], i
        best[j] = b + weight[j]
        prev[j] = p
    out = [False] * n
    if n == 0:
        return out
    top = max(best)
    j = max(k for k in range(n) if best[k] >= top - 1e-9)
    while j >= 0:
        out[j] = True
        j = prev[j]
    return out


def consistent(
    t_ms: Sequence[int], lat: Sequence[float], lon: Sequence[float], max_speed: float
) -> bool:
    """Whether every fix (in time order) agrees with the one just before it: then
    every fix is kept, and :func:`keep` need not run."""
    return all(
        agree(t_ms[k - 1], lat[k - 1], lon[k - 1], t_ms[k], lat[k], lon[k], max_speed)
        for k in range(1, len(t_ms))
    )
