"""Anonymised statistics (policy 1.6, docs/STATS.md): a crafted population, then the
releases computed from it: small groups suppressed, large ones published with OpenDP
noise whose size follows from epsilon, the budget recorded and enforced.

The noise is never switched off: the published values are checked against the exact
counts the test knows from what it stored, within a bound computed from epsilon and
the contribution bound (Laplace: P(|X| > t) = exp(-t/b), so t = 28 b is crossed with
probability below 1e-12), and their mean over many computations against a much
tighter bound.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from kares import clock
from kares.accounts.models import LoginEvent
from kares.db import new_id
from kares.errors import Problem
from kares.geo import timeline
from kares.geo.points import Point
from kares.identity.models import Account
from kares.identity.service import phone_index
from kares.location.models import LocationFix
from kares.sos.models import SosAlert
from kares.stats import inputs, service
from kares.stats.command import render_text
from kares.stats.inputs import FEATURES
from kares.watches.models import Watch
from tests.conftest import count_rows, query

K = 10
MOVERS = 30  # adults in Beijing who sign in on both days and travel on the first
SOS = 3  # of the movers raise an SOS on the first day: a group below k
BEIJING_KIDS = 12  # wearers whose watch a Beijing mover paired: published
JIANGSU_KIDS = 3  # wearers whose watch a Jiangsu adult paired: suppressed
TAIL = 28.0  # |Laplace(b)| > 28 b with probability exp(-28) < 1e-12
M_PER_DEG = 111_320.0


def _track(t0: float) -> list[Point]:
    """A quarter of an hour at home, 40 km north in 2,000 s, a quarter of an hour there."""
    pts, t, far = [], t0, 40_000 / M_PER_DEG
    for _ in range(30):
        pts.append(Point(t, 31.23, 121.47, 10.0, 0.0))
        t += 30
    for i in range(1, 201):
        pts.append(Point(t, 31.23 + far * i / 200, 121.47, 10.0, 20.0))
        t += 10
    for _ in range(30):
        pts.append(Point(t, 31.23 + far, 121.47, 10.0, 0.0))
        t += 30
    return pts


@dataclass
class Truth:
    d1: date
    d2: date
    km_per_mover: float
    names: list[str]
    phones: list[str]
    ids: list[str]


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


async def populate(db: Any) -> Truth:
    today = clock.utcnow().date()
    d1, d2 = today - timedelta(days=2), today - timedelta(days=1)
    now = clock.utcnow()
    names, phones, ids = [], [], []

    def account(phone: str | None, **kw: Any) -> Account:
        a = Account(
            id=new_id(),
            phone=phone,
            phone_hash=phone_index(phone) if phone else None,
            created_at=now,
            updated_at=now,
            status=kw.pop("status", "active"),
            **kw,
        )
        if phone:
            phones.append(phone)
        names.append(kw.get("name") or "")
        ids.append(a.id)
        return a

    track = _track(_at(d1, 8).timestamp())
    km = sum(t.distance_m for t in timeline.detect(track).trips) / 1000
    async with db.sessions() as s:
        movers = [
            account(f"+86138001380{i:02d}", name=f"Mover Number {i}", age_bracket="adult")
            for i in range(MOVERS)
        ]
        jiangsu = account("+8613912345678", name="Jiangsu Parent", age_bracket="adult")
        kids = [
            account(None, name=f"Kid Number {i}", birth_date="2018-05-01", status="managed")
            for i in range(BEIJING_KIDS + JIANGSU_KIDS)
        ]
        s.add_all([*movers, jiangsu, *kids])
        await s.flush()
        for n, m in enumerate(movers):
            # several sign-ins a day: still one active person a day
            for when in (_at(d1, 7), _at(d1, 19), _at(d2, 9)):
                s.add(
                    LoginEvent(
                        account_id=m.id,
                        method="sms",
                        success=True,
                        device_key=f"dev{n}",
                        ip="127.0.0.1",
                        occurred_at=when,
                    )
                )
            s.add_all(
                LocationFix(
                    account_id=m.id,
                    recorded_ms=int(p.t * 1000),
                    received_ms=int(p.t * 1000),
                    lat=p.lat,
                    lon=p.lon,
                    accuracy_m=p.acc,
                    speed_mps=p.speed,
                    source="test",
                    precise=True,
                    status="ok",
                )
                for p in track
            )
        for m in movers[:SOS]:
            s.add(
                SosAlert(account_id=m.id, precision="none", status="closed", created_at=_at(d1, 12))
            )
        for i, kid in enumerate(kids):
            pairer = movers[i].id if i < BEIJING_KIDS else jiangsu.id
            s.add(
                Watch(
                    imei_hash=f"imei{i:060d}",
                    imei_tail=f"{i:04d}",
                    status="paired",
                    account_id=kid.id,
                    paired_by=pairer,
                    paired_at=_at(d2, 15),
                    created_at=_at(d2, 14),
                )
            )
        await s.commit()
    return Truth(d1, d2, km, [n for n in names if n], phones, ids)


def exact(t: Truth) -> dict[str, dict[tuple[str, ...], float | None]]:
    """What each cell really holds (None: fewer than k people, so suppressed)."""
    d1, d2 = t.d1.isoformat(), t.d2.isoformat()
    wearers_d2 = BEIJING_KIDS + JIANGSU_KIDS
    features: dict[tuple[str, ...], float | None] = {
        (d, f): None for d in (d1, d2) for f in FEATURES
    }
    features[(d1, "location_upload")] = MOVERS
    features[(d2, "watch_paired")] = wearers_d2
    return {
        "active_accounts": {(d1,): MOVERS, (d2,): MOVERS + wearers_d2},
        "feature_use": features,
        "trips": {(d1,): MOVERS, (d2,): None},
        "distance_km": {(d1,): MOVERS * t.km_per_mover, (d2,): None},
        "watch_wearers": {
            ("under_14", "CN-Beijing"): BEIJING_KIDS,
            ("under_14", "CN-Jiangsu"): None,
        },
    }


KEYS = {
    "active_accounts": ("day",),
    "feature_use": ("day", "feature"),
    "trips": ("day",),
    "distance_km": ("day",),
    "watch_wearers": ("age_bracket", "region"),
}


def cells(fig: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(c[k] for k in KEYS[fig["name"]]): c for c in fig["cells"]}


def sensitivity(name: str, days: int) -> float:
    """The most one person changes a figure (L1, over all its cells), as the test
    reasons it: once per day; once per day and feature; one clamped value per day."""
    return {
        "active_accounts": days,
        "feature_use": days * len(FEATURES),
        "trips": days * service.TRIPS_MAX,
        "distance_km": days * service.KM_MAX,
        "watch_wearers": 1,
    }[name]


def policy(epsilon: float = 1.0, budget: float = 1000.0) -> service.Policy:
    return service.Policy(k=K, epsilon=epsilon, budget=budget, period_days=30)


async def test_small_groups_suppressed_large_ones_published_within_the_noise_bound(
    app: Any, db: Any
) -> None:
    t = await populate(db)
    eps = 2.0
    async with db.sessions() as s:
        release = await service.publish(s, policy(eps), first_day=t.d1, last_day=t.d2)
    body = service.as_dict(release)
    truth = exact(t)
    assert [f["name"] for f in body["figures"]] == list(truth)
    for fig in body["figures"]:
        g = fig["guarantee"]
        assert g["k"] == K
        assert 0 < g["epsilon"] <= eps and g["epsilon"] == pytest.approx(eps, rel=1e-3)
        # the scale OpenDP calibrated is the one the contribution bound asks for
        assert g["noise_scale"] == pytest.approx(sensitivity(fig["name"], 2) / eps, rel=1e-3)
        got = cells(fig)
        assert set(got) == set(truth[fig["name"]]), fig["name"]
        for key, want in truth[fig["name"]].items():
            cell = got[key]
            if want is None:
                assert cell == {**cell, "suppressed": True, "value": None}, (fig["name"], key)
            else:
                assert cell["suppressed"] is False, (fig["name"], key)
                bound = TAIL * g["noise_scale"] + 0.5  # + rounding
                assert abs(cell["value"] - want) <= bound, (fig["name"], key, cell, want)
    assert body["epsilon_total"] == pytest.approx(sum(body["epsilons"].values()))
    assert body["epsilon_total"] <= 5 * eps

    # recorded as published, with the budget it spent
    rows = await query(db, "SELECT * FROM stats_releases")
    assert len(rows) == 1
    assert rows[0]["k"] == K and rows[0]["epsilon_total"] == pytest.approx(body["epsilon_total"])
    stored = rows[0]["figures"]
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored == body["figures"]

    # nothing that names anyone left the de-identification step
    text = json.dumps(body)
    for needle in [*t.names, *t.phones, *t.ids, "31.23", "121.47"]:
        assert needle not in text

    # as `kares stats` prints it: each figure with its guarantee, each cell shown or not
    printed = render_text(body)
    assert printed.count(f"guarantee: k={K}, epsilon=2.000") == 5
    assert f"{t.d1.isoformat()}  sos_raised: suppressed (fewer than k people)" in printed
    assert "under_14  CN-Jiangsu: suppressed (fewer than k people)" in printed
    beijing = cells(body["figures"][4])[("under_14", "CN-Beijing")]["value"]
    assert f"under_14  CN-Beijing: {beijing}" in printed


async def test_the_noise_is_there_and_centred_on_the_exact_counts(app: Any, db: Any) -> None:
    """Two releases differ; the mean of many is close to the truth (noise is drawn,
    never skipped, and adds no bias beyond clamping at zero)."""
    t = await populate(db)
    eps = 10.0  # the most a figure may spend: the tightest bound on the mean
    async with db.sessions() as s:
        inp = await inputs.read(s, first_day=t.d1, last_day=t.d2)
    p = policy(eps)
    first = service.compute(inp, p)
    for _ in range(5):  # a bounded loop: equal twice in a row has probability ~0
        if service.compute(inp, p) != first:
            break
    else:
        pytest.fail("five releases in a row came out identical: no noise")

    runs = 100
    totals: dict[tuple[str, tuple[str, ...]], float] = {}
    scales: dict[str, float] = {}
    for _ in range(runs):
        for fig in service.compute(inp, p):
            scales[fig["name"]] = fig["guarantee"]["noise_scale"]
            for key, c in cells(fig).items():
                if not c["suppressed"]:
                    totals[(fig["name"], key)] = totals.get((fig["name"], key), 0.0) + c["value"]
    truth = exact(t)
    published = {(n, k) for n, cs in truth.items() for k, v in cs.items() if v is not None}
    assert set(totals) == published
    for (name, key), total in totals.items():
        want = truth[name][key]
        assert want is not None
        # the mean of n Laplace(b) has standard deviation b * sqrt(2 / n); 7 of them
        bound = 7 * scales[name] * math.sqrt(2 / runs) + 0.5
        assert abs(total / runs - want) <= bound, (name, key, total / runs, want)


async def test_the_budget_is_recorded_and_a_release_past_it_refused(app: Any, db: Any) -> None:
    t = await populate(db)
    p = policy(epsilon=1.0, budget=7.0)  # one release spends 5: a second would be 10
    async with db.sessions() as s:
        first = await service.publish(s, p, first_day=t.d1, last_day=t.d2)
        b = await service.budget(s, p)
    assert b.spent == pytest.approx(first.epsilon_total) and 4.99 < b.spent <= 5.0
    assert [r.id for r in b.releases] == [first.id]

    async with db.sessions() as s:
        with pytest.raises(Problem) as exc:
            await service.publish(s, p, first_day=t.d1, last_day=t.d2)
    assert exc.value.status == 409 and exc.value.code == "stats.budget_exceeded"
    assert "already spent" in exc.value.detail
    assert await count_rows(db, "stats_releases") == 1

    # a smaller release still fits what is left
    async with db.sessions() as s:
        second = await service.publish(s, policy(0.3, 7.0), first_day=t.d1, last_day=t.d1)
        b = await service.budget(s, p)
    assert b.spent == pytest.approx(first.epsilon_total + second.epsilon_total) and b.spent <= 7
    assert await count_rows(db, "stats_releases") == 2

    # once the period has passed, the old releases no longer count against it
    clock.advance(31 * 86400)
    async with db.sessions() as s:
        assert (await service.budget(s, p)).spent == 0
        await service.publish(s, p, first_day=t.d1, last_day=t.d2)
    assert await count_rows(db, "stats_releases") == 3


async def test_two_releases_at_once_cannot_both_slip_under_the_budget(app: Any, db: Any) -> None:
    """Both pass the first check (nothing spent yet); the second check, serialised with
    the insert, lets exactly one of them be recorded."""
    t = await populate(db)
    p = policy(epsilon=1.0, budget=7.0)

    async def one() -> str:
        async with db.sessions() as s:
            try:
                await service.publish(s, p, first_day=t.d1, last_day=t.d2)
            except Problem as exc:
                return exc.code
            return "published"

    results = await asyncio.gather(one(), one())
    assert sorted(results) == ["published", "stats.budget_exceeded"]
    assert await count_rows(db, "stats_releases") == 1


@pytest.mark.parametrize(
    ("shift", "days", "code"),
    [
        (0, 1, "stats.invalid_range"),
        (-1, 40, "stats.range_too_long"),
        (-3, -2, "stats.invalid_range"),
    ],
)
async def test_a_bad_window_is_refused_and_records_nothing(
    app: Any, db: Any, shift: int, days: int, code: str
) -> None:
    today = clock.utcnow().date()
    last = today + timedelta(days=shift)
    first = last - timedelta(days=days - 1) if days > 0 else last + timedelta(days=1)
    async with db.sessions() as s:
        with pytest.raises(Problem) as exc:
            await service.publish(s, policy(), first_day=first, last_day=last)
    assert exc.value.status == 422 and exc.value.code == code
    assert await count_rows(db, "stats_releases") == 0


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("phone", "region"),
    [
        ("+8613912345678", "CN-Jiangsu"),  # Changzhou, Jiangsu: the province only
        ("+8613800138000", "CN-Beijing"),  # a municipality is its own province
        ("+8617012345678", "CN"),  # a block tied to no province
        ("+85291234567", "HK"),
        ("+14155550100", "US"),  # elsewhere: the country only
        (None, "unknown"),
        ("not a number", "unknown"),
    ],
)
def test_regions_are_no_finer_than_a_province(phone: str | None, region: str) -> None:
    assert inputs.region_of(phone) == region


@pytest.mark.db_agnostic
def test_age_brackets_are_the_policys() -> None:
    today = date(2026, 12, 6)
    assert inputs.bracket_of("2018-05-01", None, today) == "under_14"
    assert inputs.bracket_of("2010-01-01", None, today) == "14_to_17"
    assert inputs.bracket_of("1990-01-01", "under_14", today) == "adult"  # the date wins
    assert inputs.bracket_of(None, "14_to_17", today) == "14_to_17"
    assert inputs.bracket_of(None, None, today) == "unknown"
