"""Batch ingestion of health samples (issue 15, the import's speed): the
checks made on arrays (``service.check_columns``) decide every sample exactly as
``service.clean`` does one by one, reasons and converted values included; a
batch stored at once leaves the same days as its samples stored one at a time;
and the batch's keyed hashes are ``blind_index``'s."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from kares import crypto
from kares.health import chunks
from kares.health import service as health
from kares.health.metrics import METRICS
from kares.health.models import TABLES
from tests.conftest import sign_up
from tests.test_health import grant

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PLUS8 = timezone(timedelta(hours=8))
METRIC_KEYS = [*METRICS, "no_such_metric"]


@st.composite
def samples(draw: st.DrawFn) -> health.SampleIn:
    """A sample of any metric, right or wrong in any of the ways ``clean`` checks."""
    key = draw(st.sampled_from(METRIC_KEYS))
    m = METRICS.get(key)
    minutes = draw(st.integers(-60 * 24 * 3, 30))
    zone = draw(st.sampled_from([UTC, PLUS8, PLUS8, None]))
    start = (
        NOW + timedelta(minutes=minutes, microseconds=draw(st.integers(0, 999_999)))
    ).astimezone(PLUS8)
    if zone is None:
        start = start.replace(tzinfo=None)
    elif zone is UTC:
        start = start.astimezone(UTC)
    span = draw(st.sampled_from([None, 0, 1, 30, -5, 60 * 30, "naive"]))
    end: datetime | None
    if span is None:
        end = None
    elif span == "naive":
        end = (start + timedelta(minutes=3)).replace(tzinfo=None)
    else:
        end = start + timedelta(minutes=int(span))
    units = list(m.units) if m is not None else []
    unit = draw(st.sampled_from([*units, *units, None, "furlong"]))
    lo, hi = m.bounds if m is not None and m.bounds is not None else (0.0, 100.0)
    value = draw(
        st.one_of(
            st.none(),
            st.floats(lo - 10, hi + 10),
            st.integers(int(lo), int(hi)),
            st.sampled_from([math.inf, math.nan, -1.0]),
        )
    )
    values = None
    if m is not None and m.components and draw(st.booleans()):
        values = {c.key: draw(st.floats(c.bounds[0] - 5, c.bounds[1] + 5)) for c in m.components}
        value = None if draw(st.booleans()) else value
    stages = list(m.stages) if m is not None else []
    stage = draw(st.sampled_from([*stages, *stages, None, "napping"]))
    source = draw(st.sampled_from(["Watch", " Watch ", "Phone", "", "   ", "w" * 70]))
    record_id = draw(st.sampled_from(["r1", "r2", "r3", "", "x" * 129]))
    total = draw(st.sampled_from([None, None, None, 5.0, 10_000.0, -3.0]))
    return health.SampleIn(
        metric=key,
        start=start,
        end=end,
        value=value,
        values=values,
        unit=unit,
        stage=stage,
        source=source,
        record_id=record_id,
        total=total,
    )


def one_by_one(x: health.SampleIn) -> tuple[Any, ...]:
    try:
        m, (t0, t1, v, v2, stage), source, rid = health.clean(x, NOW)
    except health.Refused as r:
        return ("refused", r.code, r.detail)
    return ("ok", m.key, t0, t1, v, v2, stage, source, rid)


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        or x == y
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.db_agnostic
@settings(max_examples=300, deadline=None)
@given(st.lists(samples(), min_size=1, max_size=40))
def test_the_checks_on_arrays_decide_each_sample_as_clean_does(xs: list[health.SampleIn]) -> None:
    refused: dict[int, tuple[str, str]] = {}
    parts = health.check_columns(health.Columns.of_samples(xs), NOW, refused)
    got: dict[int, tuple[Any, ...]] = {i: ("refused", *why) for i, why in refused.items()}
    for p in parts:
        for j, i in enumerate(p.idx.tolist()):
            assert i not in got
            got[i] = (
                "ok",
                p.metric.key,
                int(p.t0[j]),
                int(p.t1[j]),
                float(p.v[j]),
                float(p.v2[j]),
                int(p.st[j]),
                p.source[j],
                p.record_id[j],
            )
    assert sorted(got) == list(range(len(xs)))
    for i, x in enumerate(xs):
        assert same(got[i], one_by_one(x)), (x, got[i], one_by_one(x))


def aware(x: health.SampleIn) -> bool:
    return x.start.tzinfo is not None and (x.end is None or x.end.tzinfo is not None)


@pytest.mark.db_agnostic
@settings(max_examples=300, deadline=None)
@given(st.lists(samples().filter(aware), min_size=1, max_size=40))
def test_times_given_as_epoch_seconds_are_decided_as_clean_decides_the_datetimes(
    xs: list[health.SampleIn],
) -> None:
    """What an import hands over (``Columns.of_times``: the times as the epoch
    seconds ``datetime.timestamp`` gives, NaN for no end): every sample decided
    as ``clean`` decides it from its datetimes, reasons and values included."""
    c = health.Columns.of_samples(xs)
    timed = health.Columns.of_times(
        np.array([x.start.timestamp() for x in xs]),
        np.array([math.nan if x.end is None else x.end.timestamp() for x in xs]),
        metric=c.metric,
        value=c.value,
        values=c.values,
        unit=c.unit,
        stage=c.stage,
        source=c.source,
        record_id=c.record_id,
        total=c.total,
    )
    refused: dict[int, tuple[str, str]] = {}
    parts = health.check_columns(timed, NOW, refused)
    got: dict[int, tuple[Any, ...]] = {i: ("refused", *why) for i, why in refused.items()}
    for p in parts:
        for j, i in enumerate(p.idx.tolist()):
            got[i] = (
                "ok",
                p.metric.key,
                int(p.t0[j]),
                int(p.t1[j]),
                float(p.v[j]),
                float(p.v2[j]),
                int(p.st[j]),
                p.source[j],
                p.record_id[j],
            )
    assert sorted(got) == list(range(len(xs)))
    for i, x in enumerate(xs):
        assert same(got[i], one_by_one(x)), (x, got[i], one_by_one(x))


@pytest.mark.db_agnostic
def test_columns_of_times_refuse_what_no_import_gives() -> None:
    cols: dict[str, Any] = {f: [None] for f in ("value", "values", "unit", "stage", "total")} | {
        "metric": ["fall"],
        "source": ["Watch"],
        "record_id": ["r1"],
    }
    with pytest.raises(ValueError):
        health.Columns.of_times(np.array([1.0, 2.0]), np.array([math.nan]), **cols)
    with pytest.raises(ValueError):
        health.Columns.of_times(np.array([math.nan]), np.array([math.nan]), **cols)
    c = health.Columns.of_times(np.array([1.7e9]), np.array([math.nan]), **cols)
    x = c.sample(0)
    assert x.start == datetime.fromtimestamp(1.7e9, UTC) and x.end is None


@pytest.mark.db_agnostic
def test_the_mappings_the_protocols_yield_read_as_their_samples() -> None:
    x = {
        "metric": "heart_rate",
        "start": NOW,
        "end": None,
        "value": 70.0,
        "values": None,
        "unit": "count/min",
        "stage": None,
        "source": "Watch",
        "record_id": "a",
    }
    c = health.Columns.of_mappings([x, {**x, "record_id": "b", "total": 3.0}])
    assert c.sample(0) == health.SampleIn(**x)
    assert c.sample(1) == health.SampleIn(**{**x, "record_id": "b", "total": 3.0})


def batch(seed: int, n: int) -> list[health.SampleIn]:
    """Valid and refused samples over a few days, with record ids repeated
    within the batch (the same reading sent twice, by the same or another source)."""
    r = random.Random(seed)
    out: list[health.SampleIn] = []
    for _ in range(n):
        t = NOW - timedelta(days=3) + timedelta(seconds=r.randrange(3 * 86_400))
        rid, src = f"r{r.randrange(n // 2)}", r.choice(["Watch", "Phone"])
        kind = r.random()
        if kind < 0.45:
            x = health.SampleIn(
                "heart_rate", t, src, rid, value=float(r.randrange(15, 320)), unit="/min"
            )
        elif kind < 0.75:
            end = t + timedelta(minutes=r.randrange(1, 30))
            x = health.SampleIn(
                "steps", t, src, rid, end=end, value=float(r.randrange(0, 900)), unit="count"
            )
        elif kind < 0.85:
            end = t + timedelta(minutes=r.randrange(1, 90))
            stage = r.choice(["in_bed", "asleep_core", "asleep_deep", "awake", "dozing"])
            x = health.SampleIn("sleep", t, src, rid, end=end, stage=stage)
        elif kind < 0.95:
            sys_, dia = float(r.randrange(90, 160)), float(r.randrange(50, 100))
            x = health.SampleIn(
                "blood_pressure",
                t,
                src,
                rid,
                values={"systolic": sys_, "diastolic": dia},
                unit="mmHg",
            )
        else:
            x = health.SampleIn(
                "body_temperature", t, src, rid, value=r.uniform(95, 105), unit="[degF]"
            )
        out.append(x)
    return out


async def days_of(db: Any, account_id: str) -> dict[tuple[str, str, int], dict[str, list[Any]]]:
    out: dict[tuple[str, str, int], dict[str, list[Any]]] = {}
    async with db.sessions() as s:
        for category, table in TABLES.items():
            q = select(table.metric, table.day, table.data).where(table.account_id == account_id)
            for metric, d, blob in (await s.execute(q)).all():
                day = chunks.unpack(blob, account_id=account_id, metric=metric, day=d)
                out[(category, metric, d)] = {
                    "t0": day.t0.tolist(),
                    "t1": day.t1.tolist(),
                    "v": np.nan_to_num(day.v, nan=-1).tolist(),
                    "v2": np.nan_to_num(day.v2, nan=-1).tolist(),
                    "st": day.st.tolist(),
                    "src": [day.sources[i] for i in day.src.tolist()],
                    "key": day.key.tolist(),
                }
    return out


async def test_a_batch_stored_at_once_leaves_what_its_samples_one_at_a_time_leave(
    client: Any, sms: Any, db: Any
) -> None:
    a = await sign_up(client, sms, "+8613700016001")
    b = await sign_up(client, sms, "+8613700016002")
    for me in (a, b):
        await grant(client, me, "health.vitals", "health.activity")
    xs = batch(15, 400)
    # half of it stored first, so the batch meets days that exist and days that do not
    async with db.sessions() as s:
        for acc in (a, b):
            first = await health.ingest(
                s, account_id=acc["account"]["id"], samples=xs[::2][:100], now=NOW
            )
        await s.commit()
    async with db.sessions() as s:
        at_once = await health.ingest(s, account_id=a["account"]["id"], samples=xs, now=NOW)
        await s.commit()
    singly = []
    for x in xs:
        async with db.sessions() as s:
            (o,) = await health.ingest(s, account_id=b["account"]["id"], samples=[x], now=NOW)
            await s.commit()
        singly.append(o)
    assert [(o.status, o.code, o.detail) for o in at_once] == [
        (o.status, o.code, o.detail) for o in singly
    ]
    statuses = {o.status for o in at_once}
    assert statuses == {"stored", "duplicate", "refused"}
    got_a, got_b = await days_of(db, a["account"]["id"]), await days_of(db, b["account"]["id"])
    assert got_a == got_b
    stored = sum(o.status == "stored" for o in [*first, *at_once])
    assert sum(len(d["t0"]) for d in got_a.values()) == stored
    # and again: nothing new
    async with db.sessions() as s:
        again = await health.ingest(s, account_id=a["account"]["id"], samples=xs, now=NOW)
        await s.commit()
    assert {o.status for o in again} == {"duplicate", "refused"}
    assert await days_of(db, a["account"]["id"]) == got_a


async def test_the_batch_keys_are_the_blind_index(client: Any) -> None:
    # the app (started by the client fixture) installed the key ring
    values = ["Watch\x00r1", "王芳的Apple Watch\x00" + "f" * 32, "", "x" * 500]
    digests = crypto.blind_digests(values, purpose="health.record")
    assert [d.hex() for d in digests] == [
        crypto.blind_index(v, purpose="health.record") for v in values
    ]
    keys = chunks.record_keys(["Watch", "Phone"], ["r1", "r2"])
    assert keys.tolist() == [chunks.record_key("Watch", "r1"), chunks.record_key("Phone", "r2")]
    # pairs: the state carried past each distinct first item gives the same digests
    firsts = ["Watch", "王芳的Apple Watch", "Watch", "", "x" * 500, "Watch"]
    seconds = ["r1", "f" * 32, "r2", "r3", "", "r1"]
    pairs = crypto.blind_digests_of_pairs(firsts, seconds, purpose="health.record")
    assert [d.hex() for d in pairs] == [
        crypto.blind_index(f"{a}\x00{b}", purpose="health.record")
        for a, b in zip(firsts, seconds, strict=True)
    ]
    with pytest.raises(ValueError):
        crypto.blind_digests_of_pairs(["a"], [], purpose="health.record")
