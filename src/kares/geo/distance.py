"""Geodesy helpers on a spherical Earth: great-circle distances (one pair of
points, or numpy arrays of them), bearings, metres per degree, a local
equirectangular projection to metres and point-in-circle tests.

A sphere of the mean Earth radius is within 0.5 % of the WGS-84 ellipsoid,
far better than the accuracy of the fixes these functions are given.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kares.geo.points import Point

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), metres."""

M_PER_DEG_LAT = EARTH_RADIUS_M * math.pi / 180.0
"""Metres per degree of latitude (and of longitude at the equator)."""


def metres_per_degree_lat(lat: float = 0.0) -> float:
    """Metres per degree of latitude (the same at every latitude on the sphere)."""
    del lat
    return M_PER_DEG_LAT


def metres_per_degree_lon(lat: float) -> float:
    """Metres per degree of longitude along the parallel at ``lat`` degrees."""
    return M_PER_DEG_LAT * math.cos(math.radians(lat))


def wrap_lon_delta(dlon: float) -> float:
    """A difference of longitudes folded into [-180, 180) degrees."""
    return (dlon + 180.0) % 360.0 - 180.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    s_dlat = math.sin((p2 - p1) * 0.5)
    s_dlon = math.sin(math.radians(lon2 - lon1) * 0.5)
    a = s_dlat * s_dlat + math.cos(p1) * math.cos(p2) * s_dlon * s_dlon
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, a))))


def haversine_np(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> FloatArray:
    """Great-circle distances in metres, element-wise over broadcastable arrays."""
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    s_dlat = np.sin((p2 - p1) * 0.5)
    s_dlon = np.sin(dl * 0.5)
    a = s_dlat * s_dlat + np.cos(p1) * np.cos(p2) * s_dlon * s_dlon
    np.clip(a, 0.0, 1.0, out=a)
    return np.asarray(2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a)), dtype=np.float64)


def consecutive_distances_m(lat: npt.ArrayLike, lon: npt.ArrayLike) -> FloatArray:
    """Distances in metres between consecutive points: ``n - 1`` values for ``n`` points."""
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    if la.size < 2:
        return np.zeros(0, dtype=np.float64)
    return haversine_np(la[:-1], lo[:-1], la[1:], lo[1:])


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance in metres between two points."""
    return haversine_m(a.lat, a.lon, b.lat, b.lon)


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north
    in [0, 360). Zero for identical points."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    if x == 0.0 and y == 0.0:
        return 0.0
    return math.degrees(math.atan2(y, x)) % 360.0


def local_xy(
    lat: npt.ArrayLike, lon: npt.ArrayLike, lat0: float, lon0: float
) -> tuple[FloatArray, FloatArray]:
    """Equirectangular projection to metres around ``(lat0, lon0)``: x east, y north.

    Distances in the plane match great-circle distances to well under 1 % within a few
    tens of kilometres of the origin (the scale error grows with the latitude spread).
    Longitude differences are folded, so tracks crossing the antimeridian stay whole.
    """
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    dlon = (lo - lon0 + 180.0) % 360.0 - 180.0
    x = dlon * metres_per_degree_lon(lat0)
    y = (la - lat0) * M_PER_DEG_LAT
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def in_circle(
    lat: float, lon: float, centre_lat: float, centre_lon: float, radius_m: float
) -> bool:
    """True when the point lies within ``radius_m`` metres of the centre (boundary included)."""
    return haversine_m(lat, lon, centre_lat, centre_lon) <= radius_m


def point_in_circle(p: Point, centre_lat: float, centre_lon: float, radius_m: float) -> bool:
    """True when ``p`` lies within ``radius_m`` metres of the centre (boundary included)."""
    return in_circle(p.lat, p.lon, centre_lat, centre_lon, radius_m)


def in_circle_np(
    lat: npt.ArrayLike,
    lon: npt.ArrayLike,
    centre_lat: float,
    centre_lon: float,
    radius_m: float,
) -> BoolArray:
    """Element-wise :func:`in_circle` over arrays of latitudes and longitudes."""
    d = haversine_np(lat, lon, centre_lat, centre_lon)
    return np.asarray(d <= radius_m, dtype=np.bool_)
