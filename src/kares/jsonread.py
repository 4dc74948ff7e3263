"""One way to read JSON that a route reads itself.

FastAPI reads a declared body (and answers 400 for one it cannot read); the
protocol routes (OwnTracks, Overland) and an imported GeoJSON file are read
here. The
parser is pydantic-core's (Rust): it refuses nesting deeper than ``MAX_DEPTH``
with an error instead of recursing (the standard library's ``json`` raises
``RecursionError`` on ``[`` x 50,000, which escaped as a 500), refuses ``NaN``
and ``Infinity`` (not JSON), and what it cannot read is a ``ValueError`` here and
a 400 ``request.bad`` for a body. The size is bounded before any of this, as the
body streams in (``app.BodyLimit``: 413).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json

from kares.errors import Problem

MAX_DEPTH = 200
"""Nesting the parser reads; deeper is refused (pydantic-core's own limit)."""

BAD = "request.bad"


def loads(raw: bytes | bytearray | str) -> Any:
    """The JSON value of ``raw``; ``ValueError`` for anything that cannot be read
    (not JSON, invalid UTF-8, too deep, NaN or Infinity)."""
    return from_json(raw, allow_inf_nan=False)


def body(raw: bytes | bytearray | str) -> Any:
    """The JSON value of a request body, or a 400 ``request.bad`` problem that says
    where it could not be read."""
    try:
        return loads(raw)
    except ValueError as exc:
        raise Problem(400, BAD, f"The request body is not JSON that can be read ({exc}).") from exc
