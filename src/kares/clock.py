"""The service's notion of "now", always timezone-aware UTC.

Every rule with a clock in it (code expiry, cooldowns, lockouts, caps) reads
time from here, so tests can move time forward through the public API
without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def utcnow() -> datetime:
    return datetime.now(UTC) + _offset


def advance(seconds: float) -> None:
    """Move the service clock forward (tests only)."""
    global _offset
    _offset += timedelta(seconds=seconds)


def reset() -> None:
    global _offset
    _offset = timedelta(0)
