"""The plain point type the location algorithms work on (no database, no HTTP)."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, overload

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class Point(NamedTuple):
    """One good fix of one person, as the algorithms see it.

    ``t`` is seconds since the epoch (UTC); ``acc`` the horizontal accuracy in
    metres (None when unknown); ``speed`` the device-reported ground speed in
    m/s (None when not reported).
    """

    t: float
    lat: float
    lon: float
    acc: float | None = None
    speed: float | None = None


class PointArrays(Sequence[Point]):
    """A time-sorted run of points held as columns (numpy arrays): what a day read
    from the database becomes without 86,400 ``Point`` objects. The algorithms
    (``simplify``, ``detect``) read the columns directly; as a sequence it gives
    the same ``Point`` for each index as the list it stands for. ``acc`` and
    ``speed`` hold NaN where the value is unknown (``None`` in a ``Point``)."""

    __slots__ = ("acc", "lat", "lon", "speed", "t")

    def __init__(
        self, t: FloatArray, lat: FloatArray, lon: FloatArray, acc: FloatArray, speed: FloatArray
    ) -> None:
        self.t, self.lat, self.lon, self.acc, self.speed = t, lat, lon, acc, speed

    def __len__(self) -> int:
        return int(self.t.size)

    @overload
    def __getitem__(self, i: int) -> Point: ...
    @overload
    def __getitem__(self, i: slice) -> PointArrays: ...
    def __getitem__(self, i: int | slice) -> Point | PointArrays:
        if isinstance(i, slice):
            return PointArrays(self.t[i], self.lat[i], self.lon[i], self.acc[i], self.speed[i])
        acc, speed = float(self.acc[i]), float(self.speed[i])
        return Point(
            float(self.t[i]),
            float(self.lat[i]),
            float(self.lon[i]),
            None if math.isnan(acc) else acc,
            None if math.isnan(speed) else speed,
        )

    def __iter__(self) -> Iterator[Point]:
        for i in range(len(self)):
            yield self[i]


def unwrap_lon(lon: FloatArray) -> FloatArray:
    """Longitudes made continuous over the antimeridian: ``np.unwrap(lon, period=360)``,
    which costs a few milliseconds on a day of fixes; when no step reaches 180 degrees
    (nearly always) that is the input itself, returned as it is (not a copy)."""
    if lon.size < 2 or float(np.abs(np.diff(lon)).max()) <= 180.0:
        return lon
    return np.asarray(np.unwrap(lon, period=360.0), dtype=np.float64)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a bounded, synchronous burst of
    allocation (a day's 86,400 fixes become tuples and points): its passes over a
    heap that only grows cost more than the work itself. Only ever around code
    without ``await``, so no other request runs meanwhile; nothing here forms
    cycles, and reference counting frees it all as usual."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
