"""The geolocation resolver the configuration asks for, loaded once per process."""

from __future__ import annotations

import logging
from pathlib import Path

from kares.location.resolver import LocalResolver, NullResolver, Resolver
from kares.runtime import Runtime

log = logging.getLogger("kares.location")
_cache: dict[tuple[Path | None, Path | None], Resolver] = {}


def resolver_for(rt: Runtime) -> Resolver:
    """A local table from ``KARES_GEO_CELLS_CSV`` / ``KARES_GEO_WIFI_CSV``, or
    one that resolves nothing (the fix is kept as heard, never as 0,0)."""
    key = (rt.settings.geo_cells_csv, rt.settings.geo_wifi_csv)
    found = _cache.get(key)
    if found is None:
        if key == (None, None):
            found = NullResolver()
        else:
            local = LocalResolver()
            if key[0] is not None:
                local.load_opencellid_csv(key[0])
            if key[1] is not None:
                local.load_wifi_csv(key[1])
            found = local
        _cache[key] = found
    return found
