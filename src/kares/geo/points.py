"""The plain point type the location algorithms work on (no database, no HTTP)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple


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
