"""Geolocation of fixes that carry only cell towers and/or Wi-Fi access points.

A watch without a GPS fix still reports the cells and Wi-Fi access points it
hears (see :mod:`kares.protocols.watch.frames`). A :class:`Resolver` turns
those into an approximate position. The only resolver here is local: tables
held in memory, loaded from files, so no fix ever leaves the server.

Tables
======

Cells, from an **OpenCellID-format CSV** (``load_opencellid_csv``). The
format is the one OpenCellID publishes and Mozilla Location Service used for
its exports; its columns, in this order, are::

    radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal

- ``radio``: GSM, UMTS, LTE, CDMA (and NR in newer exports); not used for the
  key, see below.
- ``mcc``; ``net``: the MNC (for CDMA the SID); ``area``: LAC, or TAC for LTE
  (for CDMA the NID); ``cell``: the cell id (LTE: the 28-bit ECI; UMTS: the
  UTRAN cell id, RNC and CID together; CDMA: the BID).
- ``unit``: PSC/PCI, unused.
- **``lon`` comes before ``lat``**; WGS 84 degrees.
- ``range``: an estimate, in metres, of the cell's radius.
- the rest (``samples``, ``changeable``, ``created``/``updated`` as Unix
  seconds, ``averageSignal`` in dBm) is not used.

A first row whose first field is ``radio`` is a header, and then columns are
found by name (so a file with the columns in another order still loads);
without a header the order above is assumed. A ``.gz`` path is read as gzip
(OpenCellID ships ``cell_towers.csv.gz``).

Wi-Fi access points, from a CSV of our own (``load_wifi_csv``)::

    mac,lat,lon,range_m
    00:11:22:33:44:55,31.2304,121.4737,60

- ``mac`` in any usual spelling (``00:11:22:33:44:55``, ``00-11-...``,
  ``001122334455``, any case); ``lat``/``lon`` in WGS 84 degrees (note: lat
  first here, unlike OpenCellID); ``range_m`` optional (empty: 100 m).
- an optional header line starting with ``mac``; blank lines and lines
  starting with ``#`` are ignored.

In both, a row that does not parse, has coordinates out of range or exactly
0,0 (the classic "no fix" placeholder) is skipped and counted in the returned
:class:`LoadStats`; a key seen again keeps the first row (counted as a
duplicate). The key of a cell is ``(mcc, mnc, lac, cid)``: the watch does not
say which radio it heard, and GSM/UMTS/LTE ids practically never collide.

Memory: a cell is a tuple of four ints mapped to a tuple ``(lat, lon,
range_m)``; an access point is its MAC as one int mapped to the same. No
per-row objects beyond those: a million rows is a few hundred MB and a few
seconds to load.

Resolution
==========

1. Wi-Fi first: the access points found in the table, each weighted by its
   signal. When at least ``min_wifi`` (2) of them agree (lie within
   ``wifi_cluster_m`` of one another, see below), their weighted centroid is
   the answer, ``source="wifi"``.
2. Otherwise cells: the known cells, weighted the same way, ``source="cell"``
   (one known cell is enough).
3. Otherwise ``None``. Never 0,0.

Weights: a negative signal is dBm: weight ``rssi - floor`` (floor -100 dBm for
Wi-Fi, -120 dBm for cells), at least 1. A positive signal is a device's own
"bigger is stronger" scale (the watches report cells as e.g. 156 or 0..100):
the weight is the value itself. Unknown or 0: weight 1.

Agreement: an access point that moved (a travel router, a phone hotspot)
would drag a centroid far away. So the points kept are those within the
cluster distance (1 km for Wi-Fi, 50 km for cells) of the point that has the
most such neighbours (ties: the stronger). The centroid is the weighted mean
of unit vectors (right across the antimeridian too).

Accuracy: ``max(range of the strongest point kept, spread)``, the spread being
the largest distance from the centroid to a point kept.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from kares.geo.distance import haversine_m

DEFAULT_CELL_RANGE_M = 1000.0
DEFAULT_WIFI_RANGE_M = 100.0
WIFI_FLOOR_DBM = -100.0
CELL_FLOOR_DBM = -120.0

OPENCELLID_COLUMNS = (
    "radio",
    "mcc",
    "net",
    "area",
    "cell",
    "unit",
    "lon",
    "lat",
    "range",
    "samples",
    "changeable",
    "created",
    "updated",
    "averageSignal",
)

_MAC_SEPARATED = re.compile(r"[0-9a-fA-F]{1,2}(?:[:\-][0-9a-fA-F]{1,2}){5}")
_MAC_PLAIN = re.compile(r"[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class Cell:
    """A cell tower as heard: ``rssi`` None when the device did not say.

    For LTE ``lac`` is the TAC and ``cid`` the 28-bit ECI; for UMTS ``cid`` is
    the UTRAN cell id. The signal is in the device's own unit: dBm when
    negative, else a "bigger is stronger" scale.
    """

    mcc: int
    mnc: int
    lac: int
    cid: int
    rssi: int | None = None


@dataclass(frozen=True, slots=True)
class WifiAp:
    """A Wi-Fi access point as heard: ``mac`` lower-case, colon-separated;
    ``rssi`` in dBm (negative)."""

    name: str
    mac: str
    rssi: int


@dataclass(frozen=True, slots=True)
class Resolved:
    lat: float
    lon: float
    accuracy_m: float
    source: Literal["wifi", "cell"]


class Resolver(Protocol):
    def resolve(self, cells: Sequence[Cell], wifi: Sequence[WifiAp]) -> Resolved | None: ...


@dataclass
class LoadStats:
    """What one load did: rows read (headers, blanks and comments not
    counted), rows kept, rows skipped as malformed, duplicates of a key."""

    rows: int = 0
    loaded: int = 0
    skipped: int = 0
    duplicates: int = 0


def normalise_mac(text: str) -> str | None:
    """``"A0-C5-F2-B0-7-D0"`` -> ``"a0:c5:f2:b0:07:d0"``; None if not a MAC
    (including the all-zero placeholder some watches send)."""
    key = mac_key(text)
    if key is None:
        return None
    raw = f"{key:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def mac_key(text: str) -> int | None:
    """A MAC in any usual spelling as one 48-bit int; None if not a MAC or 0."""
    s = text.strip()
    if _MAC_SEPARATED.fullmatch(s):
        value = 0
        for part in re.split(r"[:\-]", s):
            value = (value << 8) | int(part, 16)
    elif _MAC_PLAIN.fullmatch(s):
        value = int(s, 16)
    else:
        return None
    return value or None


def signal_weight(rssi: int | None, floor_dbm: float) -> float:
    """The weight of one observation in a centroid (see the module doc)."""
    if rssi is None or rssi == 0:
        return 1.0
    if rssi < 0:
        return max(1.0, rssi - floor_dbm)
    return float(rssi)


def _good_coords(lat: float, lon: float) -> bool:
    return (
        math.isfinite(lat)
        and math.isfinite(lon)
        and -90.0 <= lat <= 90.0
        and -180.0 <= lon <= 180.0
        and not (lat == 0.0 and lon == 0.0)
    )


def _range_or(value: float | None, default: float) -> float:
    if value is None or not math.isfinite(value) or value <= 0:
        return default
    return value


# a point in a centroid: lat, lon, range_m, weight
_Pt = tuple[float, float, float, float]


def _estimate(points: Sequence[_Pt], cluster_m: float) -> tuple[float, float, float, int] | None:
    """Weighted centroid of the points that agree: (lat, lon, accuracy_m, n_used)."""
    if not points:
        return None
    best: list[int] = []
    best_weight = -1.0
    for i, (lat_i, lon_i, _, w_i) in enumerate(points):
        near = [
            j
            for j, (lat_j, lon_j, _, _) in enumerate(points)
            if j == i or haversine_m(lat_i, lon_i, lat_j, lon_j) <= cluster_m
        ]
        if len(near) > len(best) or (len(near) == len(best) and w_i > best_weight):
            best, best_weight = near, w_i
    used = [points[j] for j in best]
    x = y = z = total = 0.0
    for lat, lon, _, w in used:
        phi, lam = math.radians(lat), math.radians(lon)
        x += w * math.cos(phi) * math.cos(lam)
        y += w * math.cos(phi) * math.sin(lam)
        z += w * math.sin(phi)
        total += w
    x, y, z = x / total, y / total, z / total
    if math.hypot(x, y, z) < 1e-12:  # points on opposite sides of the earth
        return None
    c_lat = math.degrees(math.atan2(z, math.hypot(x, y)))
    c_lon = math.degrees(math.atan2(y, x))
    if c_lat == 0.0 and c_lon == 0.0:
        return None
    strongest = max(used, key=lambda p: p[3])
    spread = max(haversine_m(c_lat, c_lon, lat, lon) for lat, lon, _, _ in used)
    return c_lat, c_lon, max(strongest[2], spread), len(used)


SourceArg = str | os.PathLike[str] | Iterable[str]


@contextmanager
def _lines(source: SourceArg) -> Iterator[Iterable[str]]:
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if path.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
                yield fh
        else:
            with open(path, encoding="utf-8", newline="") as fh:
                yield fh
    else:
        yield source


class LocalResolver:
    """In-memory cell and Wi-Fi tables (see the module doc for the formats and
    how a position is worked out)."""

    def __init__(
        self,
        *,
        min_wifi: int = 2,
        wifi_cluster_m: float = 1000.0,
        cell_cluster_m: float = 50_000.0,
    ) -> None:
        self.min_wifi = min_wifi
        self.wifi_cluster_m = wifi_cluster_m
        self.cell_cluster_m = cell_cluster_m
        self._cells: dict[tuple[int, int, int, int], tuple[float, float, float]] = {}
        self._wifi: dict[int, tuple[float, float, float]] = {}

    @property
    def cell_count(self) -> int:
        return len(self._cells)

    @property
    def wifi_count(self) -> int:
        return len(self._wifi)

    # -- filling the tables ------------------------------------------------

    def add_cell(
        self,
        mcc: int,
        mnc: int,
        lac: int,
        cid: int,
        lat: float,
        lon: float,
        range_m: float | None = None,
    ) -> bool:
        """Add one cell; False (and nothing added) for bad coordinates or a key
        already known."""
        if not _good_coords(lat, lon) or min(mcc, mnc, lac, cid) < 0:
            return False
        key = (mcc, mnc, lac, cid)
        if key in self._cells:
            return False
        self._cells[key] = (lat, lon, _range_or(range_m, DEFAULT_CELL_RANGE_M))
        return True

    def add_wifi(self, mac: str, lat: float, lon: float, range_m: float | None = None) -> bool:
        """Add one access point; False for a bad MAC, bad coordinates or a MAC
        already known."""
        key = mac_key(mac)
        if key is None or not _good_coords(lat, lon) or key in self._wifi:
            return False
        self._wifi[key] = (lat, lon, _range_or(range_m, DEFAULT_WIFI_RANGE_M))
        return True

    def load_opencellid_csv(self, source: SourceArg) -> LoadStats:
        """Load cells from an OpenCellID-format CSV: a path (``.gz`` read as
        gzip) or an iterable of lines. Malformed rows are skipped and counted;
        a header without the needed columns is a ``ValueError``."""
        stats = LoadStats()
        cells = self._cells
        with _lines(source) as lines:
            rows = csv.reader(lines)
            cols = {name: i for i, name in enumerate(OPENCELLID_COLUMNS)}
            first = True
            for row in rows:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if first:
                    first = False
                    if row[0].strip().lower() == "radio":
                        cols = {name.strip().lower(): i for i, name in enumerate(row)}
                        missing = {"mcc", "net", "area", "cell", "lon", "lat"} - cols.keys()
                        if missing:
                            raise ValueError(f"not an OpenCellID CSV: no {sorted(missing)}")
                        continue
                stats.rows += 1
                try:
                    key = (
                        int(row[cols["mcc"]]),
                        int(row[cols["net"]]),
                        int(row[cols["area"]]),
                        int(row[cols["cell"]]),
                    )
                    lon = float(row[cols["lon"]])
                    lat = float(row[cols["lat"]])
                    i_range = cols.get("range")
                    raw_range = row[i_range].strip() if i_range is not None else ""
                    range_m = float(raw_range) if raw_range else None
                except (ValueError, IndexError):
                    stats.skipped += 1
                    continue
                if not _good_coords(lat, lon) or min(key) < 0 or key[0] > 999:
                    stats.skipped += 1
                    continue
                if key in cells:
                    stats.duplicates += 1
                    continue
                cells[key] = (lat, lon, _range_or(range_m, DEFAULT_CELL_RANGE_M))
                stats.loaded += 1
        return stats

    def load_wifi_csv(self, source: SourceArg) -> LoadStats:
        """Load access points from a ``mac,lat,lon,range_m`` CSV: a path or an
        iterable of lines. Malformed rows are skipped and counted."""
        stats = LoadStats()
        wifi = self._wifi
        with _lines(source) as lines:
            first = True
            for row in csv.reader(lines):
                if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                    continue
                if first:
                    first = False
                    if row[0].strip().lower() == "mac":
                        continue
                stats.rows += 1
                key = mac_key(row[0])
                try:
                    lat = float(row[1])
                    lon = float(row[2])
                    raw_range = row[3].strip() if len(row) > 3 else ""
                    range_m = float(raw_range) if raw_range else None
                except (ValueError, IndexError):
                    stats.skipped += 1
                    continue
                if key is None or not _good_coords(lat, lon):
                    stats.skipped += 1
                    continue
                if key in wifi:
                    stats.duplicates += 1
                    continue
                wifi[key] = (lat, lon, _range_or(range_m, DEFAULT_WIFI_RANGE_M))
                stats.loaded += 1
        return stats

    # -- resolving ---------------------------------------------------------

    def resolve(self, cells: Sequence[Cell], wifi: Sequence[WifiAp]) -> Resolved | None:
        seen: dict[int, _Pt] = {}
        for ap in wifi:
            key = mac_key(ap.mac)
            hit = self._wifi.get(key) if key is not None else None
            if key is None or hit is None:
                continue
            pt = (hit[0], hit[1], hit[2], signal_weight(ap.rssi, WIFI_FLOOR_DBM))
            if key not in seen or seen[key][3] < pt[3]:
                seen[key] = pt
        if len(seen) >= self.min_wifi:
            found = _estimate(list(seen.values()), self.wifi_cluster_m)
            if found is not None and found[3] >= self.min_wifi:
                return Resolved(found[0], found[1], found[2], "wifi")

        known: dict[tuple[int, int, int, int], _Pt] = {}
        for cell in cells:
            ckey = (cell.mcc, cell.mnc, cell.lac, cell.cid)
            chit = self._cells.get(ckey)
            if chit is None:
                continue
            pt = (chit[0], chit[1], chit[2], signal_weight(cell.rssi, CELL_FLOOR_DBM))
            if ckey not in known or known[ckey][3] < pt[3]:
                known[ckey] = pt
        found = _estimate(list(known.values()), self.cell_cluster_m)
        if found is not None:
            return Resolved(found[0], found[1], found[2], "cell")
        return None


class NullResolver:
    """Resolves nothing: the fix is kept as heard, never placed."""

    def resolve(self, cells: Sequence[Cell], wifi: Sequence[WifiAp]) -> Resolved | None:
        return None


__all__ = [
    "DEFAULT_CELL_RANGE_M",
    "DEFAULT_WIFI_RANGE_M",
    "OPENCELLID_COLUMNS",
    "Cell",
    "LoadStats",
    "LocalResolver",
    "NullResolver",
    "Resolved",
    "Resolver",
    "WifiAp",
    "haversine_m",
    "mac_key",
    "normalise_mac",
    "signal_weight",
]


_loaded: dict[tuple[Path | None, Path | None], Resolver] = {}


def resolver_for(cells_csv: Path | None, wifi_csv: Path | None) -> Resolver:
    """A local table from OpenCelliD-style cell and Wi-Fi CSV files (loaded once
    per process and file pair), or one that resolves nothing when neither is
    given (a fix is then kept as heard, never as 0,0)."""
    key = (cells_csv, wifi_csv)
    found = _loaded.get(key)
    if found is None:
        if key == (None, None):
            found = NullResolver()
        else:
            local = LocalResolver()
            if cells_csv is not None:
                local.load_opencellid_csv(cells_csv)
            if wifi_csv is not None:
                local.load_wifi_csv(wifi_csv)
            found = local
        _loaded[key] = found
    return found
