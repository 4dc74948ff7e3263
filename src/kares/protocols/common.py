"""Reading loosely typed JSON that outside apps send: numbers that must not be
booleans, accuracies where 0 and -1 mean unknown, and a request body that must
be JSON."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request

from kares import jsonread


def num(v: Any) -> float | None:
    """A JSON number (not a bool), or None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def positive(v: Any) -> float | None:
    """Accuracies: 0 and the -1 some apps send mean unknown."""
    f = num(v)
    return f if f is not None and f > 0 else None


def integer(v: Any) -> int | None:
    f = num(v)
    return int(f) if f is not None else None


async def json_body(request: Request) -> Any:
    """The request body as JSON, or a 400 ``request.bad`` problem (``kares.jsonread``)."""
    return jsonread.body(await request.body())
