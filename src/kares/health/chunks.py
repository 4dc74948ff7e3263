"""A day of one person's samples of one metric, packed as arrays.

What ``health_*_days.data`` holds before it is encrypted (``fields.Sealed``):
zlib of a little-endian header length, a JSON header and seven arrays of
``n`` items each, in start order:

    t0  int64    start, ms since 1970 (UTC)
    t1  int64    end, ms (= t0 for a moment)
    v   float64  the value in the metric's canonical unit (systolic for blood
                 pressure; NaN for events and sleep)
    v2  float64  diastolic for blood pressure, NaN otherwise
    st  int8     the sleep stage (index in ``metrics.STAGES``), -1 otherwise
    src uint16   the source, an index into the header's ``sources``
    key uint64   the first 8 bytes of the blind index of (source, record id):
                 the idempotency key, unreadable without the index key

The header names the account, metric and day the row is about, and the reader
checks them: a day copied to another row (another person) is refused instead
of read as theirs (the table and column are bound into the ciphertext too).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from kares import crypto

DAY_MS = 86_400_000
FORMAT = 1
_FIELDS: tuple[tuple[str, str], ...] = (
    ("t0", "<i8"),
    ("t1", "<i8"),
    ("v", "<f8"),
    ("v2", "<f8"),
    ("st", "<i1"),
    ("src", "<u2"),
    ("key", "<u8"),
)
_LEN = struct.Struct("<I")


class CorruptDay(ValueError):
    pass


def day_of(t: datetime) -> int:
    """The UTC day a sample starting at ``t`` is stored under."""
    return int(t.timestamp() * 1000) // DAY_MS


def record_key(source: str, record_id: str) -> int:
    """The idempotency key of a source's record: a keyed hash, so the record id
    (which may say what and when) is never stored readable."""
    digest = crypto.blind_index(f"{source}\x00{record_id}", purpose="health.record")
    return int(digest[:16], 16)


def record_keys(sources: Sequence[str], record_ids: Sequence[str]) -> npt.NDArray[np.uint64]:
    """``record_key`` of each (source, record id) pair, for a batch: the same
    keys (the digest's first 8 bytes, big-endian), one keyed state for all."""
    digests = crypto.blind_digests_of_pairs(sources, record_ids, purpose="health.record")
    head = b"".join([d[:8] for d in digests])
    return np.frombuffer(head, dtype=">u8").astype(np.uint64)


@dataclass
class Day:
    account_id: str
    metric: str
    day: int
    sources: list[str] = field(default_factory=list)
    t0: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    t1: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    v: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    v2: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    st: npt.NDArray[np.int8] = field(default_factory=lambda: np.empty(0, np.int8))
    src: npt.NDArray[np.uint16] = field(default_factory=lambda: np.empty(0, np.uint16))
    key: npt.NDArray[np.uint64] = field(default_factory=lambda: np.empty(0, np.uint64))

    def __len__(self) -> int:
        return int(self.t0.shape[0])

    def keys(self) -> set[int]:
        return set(self.key.tolist())

    def source_index(self, name: str) -> int:
        try:
            return self.sources.index(name)
        except ValueError:
            self.sources.append(name)
            return len(self.sources) - 1

    def add(self, rows: list[tuple[int, int, float, float, int, int, int]]) -> None:
        """Append (t0, t1, v, v2, st, src, key) rows and keep start order."""
        if not rows:
            return
        self.extend(*(list(col) for col in zip(*rows, strict=True)))

    def extend(self, *cols: Any) -> None:
        """Append columns (t0, t1, v, v2, st, src, key: arrays or lists of equal
        length, in the order given) and keep start order (a stable sort: rows of
        the same start stay in the order they came)."""
        for (name, dtype), col in zip(_FIELDS, cols, strict=True):
            new = np.asarray(col, dtype=dtype)
            setattr(self, name, np.concatenate([getattr(self, name), new]))
        t0 = self.t0
        if len(t0) > 1 and bool((t0[1:] < t0[:-1]).any()):
            order = np.argsort(t0, kind="stable")
            for name, _ in _FIELDS:
                setattr(self, name, getattr(self, name)[order])


def pack(d: Day, *, level: int = 1) -> bytes:
    header = json.dumps(
        {"f": FORMAT, "a": d.account_id, "m": d.metric, "d": d.day, "n": len(d), "s": d.sources},
        separators=(",", ":"),
    ).encode()
    parts = [_LEN.pack(len(header)), header]
    parts.extend(np.ascontiguousarray(getattr(d, name), dtype=dt).tobytes() for name, dt in _FIELDS)
    return zlib.compress(b"".join(parts), level)


def unpack(blob: bytes, *, account_id: str, metric: str, day: int) -> Day:
    raw = zlib.decompress(blob)
    (hlen,) = _LEN.unpack_from(raw, 0)
    h: dict[str, Any] = json.loads(raw[4 : 4 + hlen])
    if h.get("f") != FORMAT or (h["a"], h["m"], h["d"]) != (account_id, metric, day):
        raise CorruptDay(f"health day {metric}/{day} does not belong to the row it was read from")
    n = int(h["n"])
    d = Day(account_id, metric, day, list(h["s"]))
    off = 4 + hlen
    for name, dt in _FIELDS:
        a = np.frombuffer(raw, dtype=dt, count=n, offset=off)
        setattr(d, name, a)
        off += a.nbytes
    if off != len(raw):
        raise CorruptDay(f"health day {metric}/{day}: {len(raw) - off} bytes left over")
    return d
