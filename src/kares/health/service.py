"""The health domain's actions and queries.

Samples come in as :class:`SampleIn` (the native batch API, the kids' watch,
later the Apple Health and FHIR imports), are checked one by one (metric, unit,
bounds, times), converted to the metric's canonical unit and stored in the
person's encrypted day of that metric (``chunks``), unless the same (source,
record id) is already there. Reads unpack the days they need and compute on
arrays.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, bindparam, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares.db import insert_for
from kares.errors import Problem
from kares.health import chunks
from kares.health.chunks import DAY_MS, Day
from kares.health.metrics import ASLEEP, METRICS, STAGES, Metric
from kares.health.models import TABLES

# a sample may say it starts a little in the future (a watch's clock runs ahead)
FUTURE_SLACK = timedelta(minutes=10)
MAX_SOURCE = 64
MAX_RECORD_ID = 128

Status = Literal["stored", "duplicate", "refused"]

# called at the end of every ingest that stored something, in its transaction,
# with (session, account_id=, metrics=, now=): health alerts register here
AfterIngest = Callable[..., Awaitable[None]]
after_ingest: list[AfterIngest] = []


@dataclass(frozen=True)
class SampleIn:
    """One sample as a source gives it (docs/HEALTH.md, "The sample")."""

    metric: str
    start: datetime
    source: str
    record_id: str
    end: datetime | None = None
    value: float | None = None
    values: dict[str, float] | None = None
    unit: str | None = None
    stage: str | None = None
    # a source that counts a running total (a watch's steps today): the total it
    # reported, kept beside the increment (see ``ingest_running_total``)
    total: float | None = None


@dataclass(frozen=True)
class Outcome:
    index: int
    status: Status
    code: str | None = None
    detail: str | None = None


class Refused(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _fmt(x: float) -> str:
    return f"{x:g}"


def metric_of(key: str) -> Metric:
    m = METRICS.get(key)
    if m is None:
        raise Refused(
            "health.unknown_metric",
            f"Unknown metric {key!r}; known: {', '.join(METRICS)}.",
        )
    return m


def _in_bounds(name: str, x: float, bounds: tuple[float, float], unit: str) -> float:
    lo, hi = bounds
    if not math.isfinite(x) or x < lo or x > hi:
        raise Refused(
            "health.out_of_bounds",
            f"{name} {_fmt(x)} {unit} is outside {_fmt(lo)}..{_fmt(hi)} {unit}.",
        )
    return x


def zone(name: str) -> ZoneInfo:
    """An IANA time zone by name; 422 ``health.bad_time_zone`` when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Problem(422, "health.bad_time_zone", f"Unknown time zone {name!r}.") from None


def clean(
    x: SampleIn, now: datetime
) -> tuple[Metric, tuple[int, int, float, float, int], str, str]:
    """The sample checked and converted: (metric, (t0, t1, v, v2, stage), source,
    record id). Raises :class:`Refused` with the reason."""
    m = metric_of(x.metric)
    source = x.source.strip()
    if not source or len(source) > MAX_SOURCE:
        raise Refused("health.bad_source", f"source must be 1 to {MAX_SOURCE} characters.")
    if not x.record_id or len(x.record_id) > MAX_RECORD_ID:
        raise Refused("health.bad_record_id", f"record_id must be 1 to {MAX_RECORD_ID} characters.")
    if x.start.tzinfo is None:
        raise Refused("health.bad_time", "start needs its time zone.")
    if x.start > now + FUTURE_SLACK:
        raise Refused("health.in_future", "start is in the future.")
    t0 = _ms(x.start)
    if m.interval:
        if x.end is None:
            raise Refused("health.end_required", f"{m.key} is an interval: give its end.")
        if x.end.tzinfo is None:
            raise Refused("health.bad_time", "end needs its time zone.")
        t1 = _ms(x.end)
        if t1 < t0:
            raise Refused("health.bad_interval", "end is before start.")
        if m.max_hours is not None and t1 - t0 > m.max_hours * 3_600_000:
            raise Refused(
                "health.bad_interval",
                f"a {m.key} sample spans at most {_fmt(m.max_hours)} hours; split it.",
            )
        if x.end > now + FUTURE_SLACK:
            raise Refused("health.in_future", "end is in the future.")
    else:
        if x.end is not None and x.end != x.start:
            raise Refused("health.end_not_expected", f"{m.key} is a moment: leave end out.")
        t1 = t0
    stage = -1
    if m.stages:
        if x.stage not in m.stages:
            raise Refused(
                "health.bad_stage", f"stage must be one of {', '.join(m.stages)} for {m.key}."
            )
        stage = m.stages.index(x.stage)
    elif x.stage is not None:
        raise Refused("health.stage_not_expected", f"{m.key} has no stage.")
    v = v2 = math.nan
    if m.components:
        if x.values is None or x.value is not None:
            names = " and ".join(c.key for c in m.components)
            raise Refused("health.values_required", f"{m.key} takes values: {names}.")
        if set(x.values) != {c.key for c in m.components}:
            names = " and ".join(c.key for c in m.components)
            raise Refused("health.values_required", f"{m.key} takes exactly {names}.")
        conv = [_convert(m, x.values[c.key], x.unit) for c in m.components]
        assert m.unit is not None
        v, v2 = (
            _in_bounds(c.key, y, c.bounds, m.unit) for c, y in zip(m.components, conv, strict=True)
        )
        if v2 >= v:
            raise Refused("health.out_of_bounds", "diastolic must be below systolic.")
    elif m.valued:
        if x.value is None or x.values is not None:
            raise Refused("health.value_required", f"{m.key} takes one value.")
        assert m.unit is not None and m.bounds is not None
        v = _in_bounds(m.key, _convert(m, x.value, x.unit), m.bounds, m.unit)
        if x.total is not None and m.kind == "interval":
            v2 = _in_bounds(m.key, _convert(m, x.total, x.unit), m.bounds, m.unit)
    elif x.value is not None or x.values is not None:
        raise Refused("health.value_not_expected", f"{m.key} has no value.")
    return m, (t0, t1, v, v2, stage), source, x.record_id


def _convert(m: Metric, value: float, unit: str | None) -> float:
    if unit is None:
        raise Refused("health.unit_required", f"give the unit of {m.key} (e.g. {m.unit}).")
    y = m.convert(value, unit)
    if y is None:
        raise Refused(
            "health.unit_not_accepted",
            f"{m.key} is not accepted in {unit!r}; accepted: {', '.join(m.units)}.",
        )
    return y


@dataclass
class Columns:
    """A batch of samples as parallel lists, one item per sample: what
    ingestion works on. ``of_samples`` takes :class:`SampleIn`; ``of_mappings``
    takes the neutral sample dicts the import protocols yield (the item shape of
    the batch API), without a :class:`SampleIn` per sample."""

    metric: list[str]
    start: list[datetime]
    end: list[datetime | None]
    value: list[float | None]
    values: list[dict[str, float] | None]
    unit: list[str | None]
    stage: list[str | None]
    source: list[str]
    record_id: list[str]
    total: list[float | None]
    # when given, each sample's start and end as epoch seconds (float64, what
    # ``datetime.timestamp`` gives; NaN for no end), and ``start`` and ``end``
    # are left empty: an import that read the times as numbers hands them over
    # as such (``of_times``); a sample's datetimes (in UTC: the same instants,
    # all ``clean`` looks at) are made only for a sample ``clean`` must see
    times: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None

    @classmethod
    def of_times(
        cls, start: npt.NDArray[np.float64], end: npt.NDArray[np.float64], **cols: Any
    ) -> Columns:
        """Columns whose times are epoch seconds (``end`` NaN for no end), every
        other column given as a list (``metric``, ``value``, ... ``total``)."""
        if not len(start) == len(end) == len(cols["metric"]):
            raise ValueError("columns of different lengths")
        if np.isnan(start).any():
            raise ValueError("every sample has a start")
        return cls(start=[], end=[], times=(start, end), **cols)

    @classmethod
    def of_samples(cls, samples: Sequence[SampleIn]) -> Columns:
        cols: dict[str, Any] = {f: [getattr(x, f) for x in samples] for f in _COLUMNS}
        return cls(**cols)

    @classmethod
    def of_mappings(cls, items: Sequence[Mapping[str, Any]]) -> Columns:
        cols: dict[str, Any] = {f: [x[f] for x in items] for f in _COLUMNS[:-1]}
        return cls(**cols, total=[x.get("total") for x in items])

    def __len__(self) -> int:
        return len(self.metric)

    def sample(self, i: int) -> SampleIn:
        if self.times is None:
            return SampleIn(**{f: getattr(self, f)[i] for f in _COLUMNS})
        t0, t1 = float(self.times[0][i]), float(self.times[1][i])
        return SampleIn(
            **{f: getattr(self, f)[i] for f in _COLUMNS if f != "start" and f != "end"},
            start=datetime.fromtimestamp(t0, UTC),
            end=None if math.isnan(t1) else datetime.fromtimestamp(t1, UTC),
        )


_COLUMNS = (
    "metric",
    "start",
    "end",
    "value",
    "values",
    "unit",
    "stage",
    "source",
    "record_id",
    "total",
)
STORED, DUPLICATE, REFUSED = 0, 1, 2
_STATUS: tuple[Status, ...] = ("stored", "duplicate", "refused")


@dataclass
class Ingested:
    """What became of each sample of a batch: ``status`` (STORED, DUPLICATE,
    REFUSED) by the sample's index, and each refused sample's (code, detail)."""

    status: npt.NDArray[np.int8]
    refused: dict[int, tuple[str, str]]

    def outcomes(self) -> list[Outcome]:
        out: list[Outcome] = []
        for i, st in enumerate(self.status.tolist()):
            if st == REFUSED:
                code, detail = self.refused[i]
                out.append(Outcome(i, "refused", code, detail))
            else:
                out.append(Outcome(i, _STATUS[st]))
        return out

    @property
    def stored(self) -> int:
        return int((self.status == STORED).sum())

    @property
    def duplicates(self) -> int:
        return int((self.status == DUPLICATE).sum())


@dataclass
class _Part:
    """One metric's accepted samples of a batch, in the batch's order."""

    metric: Metric
    idx: npt.NDArray[np.int64]  # their indices in the batch
    t0: npt.NDArray[np.int64]
    t1: npt.NDArray[np.int64]
    v: npt.NDArray[np.float64]
    v2: npt.NDArray[np.float64]
    st: npt.NDArray[np.int8]
    source: list[str]
    record_id: list[str]
    # the idempotency keys (chunks.record_keys of source and record id), made
    # once for the part when it is stored
    keys: npt.NDArray[np.uint64] | None = None


def _none_mask(xs: list[Any]) -> npt.NDArray[np.bool_]:
    """Where ``xs`` holds None, for a column that should hold none (by the
    items' types: ``None in xs`` would compare each item with None)."""
    if _NONE not in set(map(type, xs)):
        return np.zeros(len(xs), bool)
    return np.fromiter((x is None for x in xs), bool, len(xs))


def _some_mask(xs: list[Any]) -> npt.NDArray[np.bool_]:
    """Where ``xs`` holds something, for a column that should hold only None."""
    if xs.count(None) == len(xs):  # by identity first: quick when they are None
        return np.zeros(len(xs), bool)
    return np.fromiter((x is not None for x in xs), bool, len(xs))


def _naive_mask(ts: list[Any]) -> npt.NDArray[np.bool_]:
    return _none_mask(list(map(_tzinfo, ts)))


_timestamp = datetime.timestamp
_tzinfo = attrgetter("tzinfo")
_NONE = type(None)
_NUMBERS = {float, int, _NONE}


def _check_times(
    m: Metric, start: list[Any], end: list[Any], soon: float, bad: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The checks of :func:`clean` on one metric's times given as datetimes:
    (t0, t1) in ms; a sample that fails any is marked in ``bad``."""
    n = len(start)
    bad |= _naive_mask(start)
    t0s = np.fromiter(map(_timestamp, start), np.float64, n)
    bad |= t0s > soon
    t0 = (t0s * 1000).astype(np.int64)
    if m.interval:
        missing = _none_mask(end)
        bad |= missing
        ends = (
            [t0_ if e is None else e for e, t0_ in zip(end, start, strict=True)]
            if missing.any()
            else end
        )
        bad |= _naive_mask(ends)
        t1s = np.fromiter(map(_timestamp, ends), np.float64, n)
        bad |= t1s > soon
        t1 = (t1s * 1000).astype(np.int64)
        bad |= t1 < t0
        if m.max_hours is not None:
            bad |= (t1 - t0) > m.max_hours * 3_600_000
    else:
        t1 = t0
        if end.count(None) != n:
            bad |= np.fromiter(
                (e is not None and e != s for e, s in zip(end, start, strict=True)), bool, n
            )
    return t0, t1


def _check_epochs(
    m: Metric,
    times: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    rows: npt.NDArray[np.int64],
    total: int,
    soon: float,
    bad: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """:func:`_check_times` on times given as epoch seconds (aware by
    construction: the same instants, the same checks, the same ms)."""
    if len(rows) == total:
        t0s, t1s = times
    else:
        t0s, t1s = times[0][rows], times[1][rows]
    bad |= t0s > soon
    t0 = (t0s * 1000).astype(np.int64)
    if m.interval:
        missing = np.isnan(t1s)
        bad |= missing
        ends = np.where(missing, t0s, t1s)
        bad |= ends > soon
        t1 = (np.nan_to_num(ends) * 1000).astype(np.int64)
        bad |= t1 < t0
        if m.max_hours is not None:
            bad |= (t1 - t0) > m.max_hours * 3_600_000
    else:
        t1 = t0
        bad |= ~np.isnan(t1s) & (t1s != t0s)
    return t0, t1


def _clean_metric(
    m: Metric,
    c: Columns,
    idx: list[int],
    now: datetime,
    refused: dict[int, tuple[str, str]],
    given: _Given,
) -> _Part:
    """:func:`clean` over one metric's samples of a batch at once. Every check
    of ``clean`` is made on arrays; a sample that fails any (a "suspect") goes
    through ``clean`` itself, which refuses it with the reason ``clean`` gives
    (its first failing check) or, in the rare case the arrays were stricter,
    accepts it with the values ``clean`` computes. So the outcome of every
    sample is exactly ``clean``'s, and only the suspects pay its cost."""
    n = len(idx)
    pick = itemgetter(*idx)
    get: Callable[[list[Any]], list[Any]]
    if n == len(c):
        get = list
    elif n == 1:
        get = lambda col: [pick(col)]  # noqa: E731 - itemgetter of one index gives the item
    else:
        get = lambda col: list(pick(col))  # noqa: E731
    rows = np.array(idx, np.int64)
    value, unit, stage = get(c.value), get(c.unit), None
    raw_source, record_id = get(c.source), get(c.record_id)
    bad = np.zeros(n, bool)
    # blood pressure (a pair of values, a few a day) and running totals: one by one
    if m.components:
        bad[:] = True
    else:
        for held in (given.values, given.total):
            if held is not None:
                bad |= held[rows]
    strip = {x: x.strip() if isinstance(x, str) else "" for x in set(raw_source)}
    if any(x is not y for x, y in strip.items()):  # str.strip gives the string itself
        source = [strip[x] for x in raw_source]
    else:
        source = raw_source
    bad_sources = {x for x, y in strip.items() if not y or len(y) > MAX_SOURCE}
    if bad_sources:
        bad |= np.fromiter((x in bad_sources for x in raw_source), bool, n)
    try:
        rid_len = np.fromiter(map(len, record_id), np.int64, n)
        bad |= (rid_len == 0) | (rid_len > MAX_RECORD_ID)
    except TypeError:
        bad[:] = True
    soon = _timestamp(now + FUTURE_SLACK)
    if c.times is not None:
        t0, t1 = _check_epochs(m, c.times, rows, len(c), soon, bad)
    else:
        t0, t1 = _check_times(m, get(c.start), get(c.end), soon, bad)
    if m.stages:
        stage = get(c.stage)
        at = {name: i for i, name in enumerate(m.stages)}
        st = np.fromiter((at.get(x, -1) if isinstance(x, str) else -1 for x in stage), np.int8, n)
        bad |= st < 0
    else:
        st = np.full(n, -1, np.int8)
        if given.stage is not None:
            bad |= given.stage[rows]
    v2 = np.full(n, math.nan)
    if m.components:
        v = np.full(n, math.nan)  # one by one (above)
    elif m.valued:
        assert m.bounds is not None
        none = _none_mask(value)
        bad |= none
        bad |= _none_mask(unit)
        if set(map(type, value)) <= _NUMBERS:
            x = np.array([0.0 if y is None else y for y in value], np.float64)
        else:  # what numpy would read and arithmetic would not (a string): one by one
            x = np.zeros(n)
            bad[:] = True
        units = set(unit)
        if len(units) == 1 and (u := next(iter(units))) in m.units:
            factor, offset = m.units[u]
            v = x * factor + offset
        else:
            conv = [m.units.get(u) if isinstance(u, str) else None for u in unit]
            bad |= _none_mask(conv)
            fo = np.array([(1.0, 0.0) if y is None else y for y in conv], np.float64)
            v = x * fo[:, 0] + fo[:, 1]
        lo, hi = m.bounds
        with np.errstate(invalid="ignore"):
            bad |= ~np.isfinite(v) | (v < lo) | (v > hi)
    else:
        v = np.full(n, math.nan)
        bad |= _some_mask(value)
    keep = ~bad
    if not bad.any():
        return _Part(m, rows, t0, t1, v, v2, st, source, record_id)
    # the suspects, one by one
    t0, t1, v, v2, st = t0.copy(), np.array(t1), v.copy(), v2, st.copy()
    for j in np.flatnonzero(bad).tolist():
        try:
            _, (a, b, y, y2, z), src, _rid = clean(c.sample(idx[j]), now)
        except Refused as r:
            refused[idx[j]] = (r.code, r.detail)
            continue
        t0[j], t1[j], v[j], v2[j], st[j], source[j] = a, b, y, y2, z, src
        keep[j] = True
    sel = np.flatnonzero(keep)
    return _Part(
        m,
        rows[sel],
        t0[sel],
        t1[sel],
        v[sel],
        v2[sel],
        st[sel],
        [source[j] for j in sel.tolist()],
        [record_id[j] for j in sel.tolist()],
    )


def check_columns(
    samples: Columns, now: datetime, refused: dict[int, tuple[str, str]]
) -> list[_Part]:
    """Each sample checked and converted as :func:`clean` does it: the accepted
    ones by metric (in the batch's order), the refused ones' (code, detail) put
    in ``refused`` by their index."""
    by_metric: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(samples.metric):
        by_metric[key].append(i)
    # where the batch holds values, a total or a stage (most samples hold
    # none), found once for every metric's checks
    given = _Given(*(_given(col) for col in (samples.values, samples.total, samples.stage)))
    out: list[_Part] = []
    for key, idx in by_metric.items():
        m = METRICS.get(key) if isinstance(key, str) else None
        if m is None:
            for i in idx:
                try:
                    clean(samples.sample(i), now)
                except Refused as r:
                    refused[i] = (r.code, r.detail)
            continue
        out.append(_clean_metric(m, samples, idx, now, refused, given))
    return out


@dataclass
class _Given:
    """Per column of a batch, where it holds something (None: nowhere)."""

    values: npt.NDArray[np.bool_] | None
    total: npt.NDArray[np.bool_] | None
    stage: npt.NDArray[np.bool_] | None


def _given(col: list[Any]) -> npt.NDArray[np.bool_] | None:
    if col.count(None) == len(col):  # by identity: quick when all are None
        return None
    return _some_mask(col)


async def ingest(
    s: AsyncSession,
    *,
    account_id: str,
    samples: list[SampleIn],
    refused_features: dict[str, tuple[str, str]] | None = None,
    now: datetime,
) -> list[Outcome]:
    """Store what may be stored of ``samples`` for ``account_id``, in the
    caller's transaction (no commit). ``refused_features`` maps a catalog
    feature the guard refused (e.g. "steps" with the device's Motion & fitness
    permission closed) to (code, detail): its samples are refused with it."""
    got = await ingest_columns(
        s,
        account_id=account_id,
        samples=Columns.of_samples(samples),
        refused_features=refused_features,
        now=now,
    )
    return got.outcomes()


# days per statement: a statement's parameters stay far below SQLite's and asyncpg's limits
_DAYS_PER_STATEMENT = 500


async def ingest_columns(
    s: AsyncSession,
    *,
    account_id: str,
    samples: Columns,
    refused_features: dict[str, tuple[str, str]] | None = None,
    now: datetime,
) -> Ingested:
    """:func:`ingest` of a batch given as :class:`Columns`, answering with an
    :class:`Ingested` (no object per sample): what a large import uses.

    Each sample is checked as :func:`clean` checks it (on arrays, metric by
    metric); the accepted ones are grouped by (metric, day), and each day the
    batch touches is read, merged and sealed once: per category, one statement
    inserts the days not stored yet (empty), one reads them all (locking them on
    PostgreSQL), and one ``executemany`` writes back the days that changed."""
    refused_features = refused_features or {}
    n = len(samples)
    status = np.full(n, REFUSED, np.int8)
    refused: dict[int, tuple[str, str]] = {}
    parts: dict[str, list[_Part]] = defaultdict(list)
    for part in check_columns(samples, now, refused):
        why = refused_features.get(part.metric.feature)
        if why is not None:
            for i in part.idx.tolist():
                refused[i] = why
        elif len(part.idx):
            parts[part.metric.category].append(part)
    stored: set[str] = set()
    for category, ps in parts.items():
        await _store(s, account_id, TABLES[category], ps, status)
        stored.update(p.metric.key for p in ps if bool((status[p.idx] == STORED).any()))
    assert len(refused) == int((status == REFUSED).sum())
    if stored:
        for hook in after_ingest:
            await hook(s, account_id=account_id, metrics=stored, now=now)
    return Ingested(status, refused)


async def _store(
    s: AsyncSession,
    account_id: str,
    table: Any,
    parts: list[_Part],
    status: npt.NDArray[np.int8],
) -> None:
    """Merge one category's accepted samples into their days: each (metric,
    day) read, deduplicated, packed and sealed once."""
    # (metric, day) -> (part, positions in the part, in the batch's order)
    groups: dict[tuple[str, int], tuple[_Part, npt.NDArray[np.int64]]] = {}
    for p in parts:
        p.keys = chunks.record_keys(p.source, p.record_id)  # one keyed state per part
        days = p.t0 // DAY_MS
        order = np.argsort(days, kind="stable")
        uniq, first = np.unique(days[order], return_index=True)
        for d, sel in zip(uniq.tolist(), np.split(order, first[1:]), strict=True):
            groups[(p.metric.key, d)] = (p, sel)
    pairs = sorted(groups)
    t = table.__table__
    write = (
        update(t)
        .where(
            t.c.account_id == bindparam("b_account"),
            t.c.metric == bindparam("b_metric"),
            t.c.day == bindparam("b_day"),
        )
        .values(data=bindparam("b_data"))
    )
    for lo in range(0, len(pairs), _DAYS_PER_STATEMENT):
        chunk = pairs[lo : lo + _DAYS_PER_STATEMENT]
        # a placeholder day first, so two uploads of the same day queue on its
        # row (a write takes SQLite's write gate; PostgreSQL locks the row
        # below). Empty bytes (sealed like any value), never committed: a new
        # day receives the batch's samples below, in this transaction.
        await s.execute(
            insert_for(s)(t).on_conflict_do_nothing(),
            [{"account_id": account_id, "metric": m, "day": d, "data": b""} for m, d in chunk],
        )
        q = (
            select(table.metric, table.day, table.data)
            .where(table.account_id == account_id, tuple_(table.metric, table.day).in_(chunk))
            .order_by(table.metric, table.day)
            .with_for_update()
        )
        changed: list[dict[str, Any]] = []
        for metric, d, blob in (await s.execute(q)).all():
            if blob:
                packed = chunks.unpack(blob, account_id=account_id, metric=metric, day=d)
            else:  # the placeholder: a new day
                packed = Day(account_id, metric, d)
            p, sel = groups[(metric, d)]
            if _merge(packed, p, sel, status) or not blob:
                changed.append(
                    {
                        "b_account": account_id,
                        "b_metric": metric,
                        "b_day": d,
                        "b_data": chunks.pack(packed),
                    }
                )
        if changed:
            await s.execute(write, changed)


def _merge(day: Day, p: _Part, sel: npt.NDArray[np.int64], status: npt.NDArray[np.int8]) -> bool:
    """Add the part's samples at ``sel`` to ``day``, but those whose (source,
    record id) the day holds or an earlier sample of the batch brought: those
    are duplicates. Their status is set; True when the day changed."""
    assert p.keys is not None
    keys = p.keys[sel]
    # the first of each key, the day's own keys first (a stable sort): what is
    # left at the batch's positions is new
    old = len(day)
    _, first = np.unique(np.concatenate([day.key, keys]) if old else keys, return_index=True)
    new = np.zeros(len(sel), bool)
    new[first[first >= old] - old] = True
    status[p.idx[sel]] = np.where(new, STORED, DUPLICATE)
    if not new.any():
        return False
    add = sel[new]
    names = [p.source[j] for j in add.tolist()]
    at = {name: day.source_index(name) for name in dict.fromkeys(names)}
    day.extend(
        p.t0[add],
        p.t1[add],
        p.v[add],
        p.v2[add],
        p.st[add],
        np.array([at[x] for x in names], np.uint16),
        keys[new],
    )
    return True


async def upload(
    s: AsyncSession,
    *,
    account_id: str,
    samples: list[SampleIn],
    refused_features: dict[str, tuple[str, str]] | None = None,
    now: datetime,
) -> list[Outcome]:
    """:func:`ingest` as one action: checked, stored, committed."""
    out = await ingest(
        s, account_id=account_id, samples=samples, refused_features=refused_features, now=now
    )
    await s.commit()
    return out


# a running total older than this is not continued: its next report starts afresh
RUNNING_GAP_MS = 24 * 3_600_000


async def ingest_running_total(
    s: AsyncSession,
    *,
    account_id: str,
    metric: str,
    source: str,
    total: float,
    unit: str,
    at: datetime,
    now: datetime,
) -> Outcome | None:
    """A source that reports a running total (a kids' watch's steps since its
    midnight, in every keep-alive) stored as increments: the difference from the
    source's last report, over the interval since it. A total below the last one
    (the watch started a new day) counts from zero; a first report, or one after
    a day of silence, is stored as a moment. Each sample keeps the total it was
    taken from, which is how the next report finds it. Nothing is stored when the
    total did not move (None). In the caller's transaction."""
    m = METRICS[metric]
    assert m.kind == "interval"
    at_ms = _ms(at)
    x = await read(
        s,
        account_id=account_id,
        metric=metric,
        lo_ms=at_ms - RUNNING_GAP_MS,
        hi_ms=at_ms + 1,
        sources=True,
    )
    last_end, last_total = -1, None
    if len(x) and x.src_names is not None:
        mine = np.flatnonzero((x.src_names == source) & ~np.isnan(x.v2))
        if len(mine):
            i = int(mine[np.argmax(x.t1[mine])])
            last_end, last_total = int(x.t1[i]), float(x.v2[i])
    if last_end >= at_ms:
        return Outcome(0, "duplicate")  # a report out of order, or sent twice
    if last_total is None:
        value, start = total, at
    else:
        value = total - last_total if total >= last_total else total
        start = datetime.fromtimestamp(last_end / 1000, UTC)
    if value == 0 and last_total is not None and total == last_total:
        return None
    sample = SampleIn(
        metric=metric,
        start=start,
        end=at,
        value=value,
        unit=unit,
        source=source,
        record_id=f"total:{at_ms}",
        total=total,
    )
    (out,) = await ingest(s, account_id=account_id, samples=[sample], now=now)
    return out


# --- reading ------------------------------------------------------------------------------------


@dataclass
class Samples:
    """A metric's samples of a span, concatenated from its days."""

    metric: Metric
    t0: npt.NDArray[np.int64]
    t1: npt.NDArray[np.int64]
    v: npt.NDArray[np.float64]
    v2: npt.NDArray[np.float64]
    st: npt.NDArray[np.int8]
    # each sample's source name, when the read asked for them (``sources=True``)
    src_names: npt.NDArray[np.object_] | None = None

    def within(self, lo_ms: int, hi_ms: int, *, by_end: bool = False) -> Samples:
        """The samples starting (or ending, ``by_end``) in [lo_ms, hi_ms)."""
        keep: Any
        if by_end:
            keep = (self.t1 >= lo_ms) & (self.t1 < hi_ms)
        else:
            a, b = np.searchsorted(self.t0, [lo_ms, hi_ms], side="left")
            keep = slice(int(a), int(b))
        return Samples(
            self.metric,
            self.t0[keep],
            self.t1[keep],
            self.v[keep],
            self.v2[keep],
            self.st[keep],
            self.src_names[keep] if self.src_names is not None else None,
        )

    def __len__(self) -> int:
        return int(self.t0.shape[0])


async def read(
    s: AsyncSession,
    *,
    account_id: str,
    metric: str,
    lo_ms: int,
    hi_ms: int,
    sources: bool = False,
) -> Samples:
    """The samples of ``metric`` starting in [lo_ms, hi_ms) (whole days read)."""
    m = METRICS[metric]
    table = TABLES[m.category]
    q = (
        select(table.day, table.data)
        .where(
            table.account_id == account_id,
            table.metric == metric,
            table.day >= lo_ms // DAY_MS,
            table.day <= (hi_ms - 1) // DAY_MS,
        )
        .order_by(table.day)
    )
    days = [
        chunks.unpack(blob, account_id=account_id, metric=metric, day=d)
        for d, blob in (await s.execute(q)).all()
    ]
    return _concat(m, days, sources).within(lo_ms, hi_ms)


HOUR_MS = 3_600_000


def one_source_per_hour(x: Samples) -> Samples:
    """An additive metric's samples with no hour counted twice: where two or more
    sources counted in the same hour (a phone in the pocket and a watch on the
    wrist, both counting one walk), only the samples of the source that counted
    most in that hour are kept; an hour with one source keeps its samples as
    they are. Hours are UTC hours of the samples' starts (a sample counts where
    it starts, as everywhere in the summaries). Needs the sources
    (``read(..., sources=True)``); samples stay in time order."""
    if x.src_names is None:
        raise ValueError("one_source_per_hour needs the samples' sources")
    if len(x) < 2:
        return x
    names, src = np.unique(x.src_names.astype(str), return_inverse=True)
    if len(names) < 2:
        return x
    hour = x.t0 // HOUR_MS
    # per (hour, source): the sum; per hour: the source with the largest sum
    # (ties to the first source name, so the choice is stable)
    key = hour * len(names) + src
    keys, inverse = np.unique(key, return_inverse=True)
    sums = np.zeros(len(keys), np.float64)
    np.add.at(sums, inverse, x.v)
    k_hour, k_src = keys // len(names), keys % len(names)
    order = np.lexsort((k_src, -sums, k_hour))  # by hour, then largest sum first
    first = np.ones(len(order), bool)
    first[1:] = k_hour[order][1:] != k_hour[order][:-1]
    winners = keys[order][first]
    keep = np.isin(key, winners)
    return Samples(
        x.metric,
        x.t0[keep],
        x.t1[keep],
        x.v[keep],
        x.v2[keep],
        x.st[keep],
        x.src_names[keep],
    )


async def read_counted(
    s: AsyncSession, *, account_id: str, metric: str, lo_ms: int, hi_ms: int
) -> Samples:
    """:func:`read`, and for an additive metric :func:`one_source_per_hour`:
    what the summaries and series add up."""
    m = METRICS[metric]
    if not (m.additive or m.stages):
        return await read(s, account_id=account_id, metric=metric, lo_ms=lo_ms, hi_ms=hi_ms)
    x = await read(s, account_id=account_id, metric=metric, lo_ms=lo_ms, hi_ms=hi_ms, sources=True)
    # sleep keeps every source: the summary takes each stage from one source
    return one_source_per_hour(x) if m.additive else x


def _concat(m: Metric, days: list[Day], sources: bool = False) -> Samples:
    if not days:
        e = np.empty(0, np.int64)
        f = np.empty(0, np.float64)
        return Samples(m, e, e, f, f, np.empty(0, np.int8), np.empty(0, object))
    return Samples(
        m,
        np.concatenate([d.t0 for d in days]),
        np.concatenate([d.t1 for d in days]),
        np.concatenate([d.v for d in days]),
        np.concatenate([d.v2 for d in days]),
        np.concatenate([d.st for d in days]),
        np.concatenate([np.array(d.sources, dtype=object)[d.src] for d in days])
        if sources
        else None,
    )


@dataclass(frozen=True)
class Latest:
    metric: str
    start_ms: int
    end_ms: int | None
    value: float | None
    values: dict[str, float] | None
    unit: str | None
    stage: str | None


async def latest(s: AsyncSession, *, account_id: str) -> list[Latest]:
    """Each metric's newest sample (by start) of the person."""
    out: list[Latest] = []
    for table in TABLES.values():
        newest = (
            select(table.metric, func.max(table.day).label("day"))
            .where(table.account_id == account_id)
            .group_by(table.metric)
            .subquery()
        )
        q = select(table.metric, table.day, table.data).join(
            newest,
            and_(
                table.account_id == account_id,
                table.metric == newest.c.metric,
                table.day == newest.c.day,
            ),
        )
        for metric, d, blob in (await s.execute(q)).all():
            if metric not in METRICS:
                continue
            day = chunks.unpack(blob, account_id=account_id, metric=metric, day=d)
            if not len(day):
                continue
            out.append(_latest_of(METRICS[metric], day))
    return sorted(out, key=lambda x: x.metric)


def _latest_of(m: Metric, day: Day) -> Latest:
    i = len(day) - 1
    t0, t1 = int(day.t0[i]), int(day.t1[i])
    value: float | None = None
    values: dict[str, float] | None = None
    if m.components:
        values = {m.components[0].key: float(day.v[i]), m.components[1].key: float(day.v2[i])}
    elif m.valued:
        value = float(day.v[i])
    stage = STAGES[int(day.st[i])] if m.stages and day.st[i] >= 0 else None
    return Latest(m.key, t0, t1 if m.interval else None, value, values, m.unit, stage)


# --- summaries ----------------------------------------------------------------------------------

SUMMARY_METRICS = (
    "steps",
    "distance",
    "active_energy",
    "heart_rate",
    "resting_heart_rate",
    "spo2",
    "sleep",
)


@dataclass
class Summary:
    """What a span's samples say. Sleep counts the sessions that end in the
    span (a night belongs to the morning it ends); the rest by start."""

    start: datetime
    end: datetime
    steps: float | None = None
    distance_m: float | None = None
    active_energy_kcal: float | None = None
    heart_rate_min: float | None = None
    heart_rate_avg: float | None = None
    heart_rate_max: float | None = None
    heart_rate_count: int = 0
    resting_heart_rate: float | None = None
    spo2_min: float | None = None
    sleep_asleep_min: float | None = None
    sleep_in_bed_min: float | None = None
    sleep_stages_min: dict[str, float] | None = None


def summarise(span: tuple[datetime, datetime], got: dict[str, Samples]) -> Summary:
    """What the samples of ``got`` (by metric; a metric left out stays empty)
    say about ``span``."""
    lo, hi = _ms(span[0]), _ms(span[1])
    out = Summary(span[0], span[1])

    def of(metric: str, *, by_end: bool = False) -> Samples | None:
        x = got.get(metric)
        if x is None:
            return None
        x = x.within(lo, hi, by_end=by_end)
        return x if len(x) else None

    def total(metric: str) -> float | None:
        x = of(metric)
        return float(x.v.sum()) if x is not None else None

    out.steps = total("steps")
    out.distance_m = total("distance")
    out.active_energy_kcal = total("active_energy")
    hr = of("heart_rate")
    if hr is not None:
        out.heart_rate_min = float(hr.v.min())
        out.heart_rate_max = float(hr.v.max())
        out.heart_rate_avg = round(float(hr.v.mean()), 1)
        out.heart_rate_count = len(hr)
    rhr = of("resting_heart_rate")
    if rhr is not None:
        out.resting_heart_rate = round(float(rhr.v.mean()), 1)
    sp = of("spo2")
    if sp is not None:
        out.spo2_min = float(sp.v.min())
    sl = of("sleep", by_end=True)
    if sl is not None:
        minutes = (sl.t1 - sl.t0) / 60_000.0
        # each stage as the source that recorded most of it says: a phone's time
        # in bed and a watch's stages add to one night; two watches do not make two
        src = (
            np.unique(sl.src_names.astype(str), return_inverse=True)[1]
            if sl.src_names is not None
            else np.zeros(len(sl), np.int64)
        )
        stages = {
            name: round(
                max(float(minutes[(sl.st == i) & (src == k)].sum()) for k in np.unique(src)), 1
            )
            for i, name in enumerate(STAGES)
            if bool((sl.st == i).any())
        }
        out.sleep_stages_min = stages
        out.sleep_asleep_min = round(sum(v for k, v in stages.items() if k in ASLEEP), 1)
        out.sleep_in_bed_min = stages.get("in_bed")
    return out


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


async def summaries(
    s: AsyncSession,
    *,
    account_id: str,
    spans: list[tuple[datetime, datetime]],
    metrics: Iterable[str] = SUMMARY_METRICS,
) -> list[Summary]:
    """A summary per span (consecutive, in order): the days are read once. Only
    ``metrics`` are read (what the caller may see); the others stay empty."""
    if not spans:
        return []
    lo, hi = _ms(spans[0][0]), _ms(spans[-1][1])
    wanted = set(metrics)
    # a night that ends in the first span began up to a day before it
    got = {
        m: await read_counted(
            s, account_id=account_id, metric=m, lo_ms=lo - (DAY_MS if m == "sleep" else 0), hi_ms=hi
        )
        for m in SUMMARY_METRICS
        if m in wanted
    }
    return [summarise(span, got) for span in spans]


# --- series -------------------------------------------------------------------------------------

RESOLUTIONS = {
    "minute": 60_000,
    "5min": 300_000,
    "15min": 900_000,
    "hour": 3_600_000,
    "day": None,  # local days
    "week": None,  # local weeks from the range's start
}
MAX_POINTS = 10_000


def edges(lo: datetime, hi: datetime, resolution: str, tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """Bucket starts in ms, with the range's end last."""
    lo_ms, hi_ms = _ms(lo), _ms(hi)
    step = RESOLUTIONS[resolution]
    if step is not None:
        first = lo_ms - lo_ms % step
        n = -(-(hi_ms - first) // step)
        if n > MAX_POINTS:
            raise Refused(
                "health.too_many_points",
                f"{n} points at {resolution}; at most {MAX_POINTS}: choose a coarser resolution.",
            )
        e = first + step * np.arange(n + 1, dtype=np.int64)
        e[0], e[-1] = lo_ms, hi_ms
        return e
    days = 7 if resolution == "week" else 1
    d = lo.astimezone(tz).date()
    out = [lo_ms]
    while True:
        d += timedelta(days=days)
        t = _ms(local_midnight(d, tz))
        if t >= hi_ms:
            break
        out.append(t)
        if len(out) > MAX_POINTS:
            raise Refused("health.too_many_points", f"more than {MAX_POINTS} points.")
    out.append(hi_ms)
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class Series:
    metric: str
    unit: str | None
    aggregate: str  # "sum" or "min_avg_max"
    t: list[int]  # bucket starts (ms); only buckets with samples
    count: list[int]
    sum: list[float] | None = None
    min: list[float] | None = None
    avg: list[float] | None = None
    max: list[float] | None = None
    # blood pressure: diastolic's min/avg/max beside systolic's
    min2: list[float] | None = None
    avg2: list[float] | None = None
    max2: list[float] | None = None


def downsample(x: Samples, e: npt.NDArray[np.int64]) -> Series:
    """Aggregate samples into the buckets of edges ``e``: sums for interval
    metrics (steps), min/avg/max for readings."""
    m = x.metric
    idx = np.searchsorted(e, x.t0, side="right") - 1
    keep = (idx >= 0) & (idx < len(e) - 1)
    idx = idx[keep]
    v, v2 = x.v[keep], x.v2[keep]
    if not len(idx):
        starts = np.empty(0, np.int64)
        buckets = np.empty(0, np.int64)
    else:
        buckets, starts = np.unique(idx, return_index=True)
    counts = np.diff(np.append(starts, len(idx))).astype(np.int64)
    t = e[buckets].tolist()
    if m.kind == "interval":
        sums = np.add.reduceat(v, starts) if len(idx) else np.empty(0)
        return Series(m.key, m.unit, "sum", t, counts.tolist(), sum=np.round(sums, 3).tolist())

    def mam(a: npt.NDArray[np.float64]) -> tuple[list[float], list[float], list[float]]:
        if not len(idx):
            return [], [], []
        mn = np.minimum.reduceat(a, starts)
        mx = np.maximum.reduceat(a, starts)
        avg = np.add.reduceat(a, starts) / counts
        return mn.tolist(), np.round(avg, 2).tolist(), mx.tolist()

    mn, avg, mx = mam(v)
    if m.components:
        mn2, avg2, mx2 = mam(v2)
        return Series(
            m.key, m.unit, "min_avg_max", t, counts.tolist(), None, mn, avg, mx, mn2, avg2, mx2
        )
    return Series(m.key, m.unit, "min_avg_max", t, counts.tolist(), None, mn, avg, mx)


async def series(
    s: AsyncSession,
    *,
    account_id: str,
    metric: str,
    lo: datetime,
    hi: datetime,
    resolution: str,
    tz: ZoneInfo,
) -> Series:
    m = metric_of(metric)
    if not m.valued:
        raise Refused(
            "health.no_series",
            f"{m.key} has no values to plot; read its summaries or latest instead.",
        )
    if hi <= lo:
        raise Refused("health.bad_range", "until must be after since.")
    e = edges(lo, hi, resolution, tz)
    x = await read_counted(
        s, account_id=account_id, metric=metric, lo_ms=int(e[0]), hi_ms=int(e[-1])
    )
    return downsample(x, e)
