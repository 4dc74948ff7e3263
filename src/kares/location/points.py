"""The plain point type the location algorithms work on (no database, no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Point:
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
