"""The plausibility filter: one wrong fix never vetoes the truth, and fixes that
arrive late are judged against their neighbours in time like any other.

The scenarios are the ones of issue 12: a stale first fix in Beijing that kept
three true fixes in Shanghai off the map for about fifty minutes (item 16), and
fixes in Sydney, London and Shanghai two seconds apart, older than the last one
stored, that the timeline drew as a 26,190 km "driving" trip (item 15)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kares import clock
from kares.geo import plausible
from tests.conftest import bearer
from tests.test_location_ingest import fix, last_of, member, ms, stored, upload

BEIJING = {"lat": 39.9042, "lon": 116.4074}
SHANGHAI = (31.2304, 121.4737)
SYDNEY = {"lat": -33.8688, "lon": 151.2093}
LONDON = {"lat": 51.5074, "lon": -0.1278}
MAX_SPEED = 340.0


def near(place: tuple[float, float], k: int) -> dict[str, float]:
    """A few tens of metres from a place (a phone standing still, give or take)."""
    return {"lat": place[0] + k * 1e-4, "lon": place[1] + k * 1e-4}


def statuses(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    return {r["client_id"]: (r["status"], r["flag"]) for r in rows}


OK = ("ok", None)
JUMP = ("flagged", "fix.implied_speed")


async def timeline(client: httpx.AsyncClient, me: dict, since: timedelta) -> list[dict]:
    now = clock.utcnow()
    r = await client.get(
        f"/api/v1/location/{me['account']['id']}/timeline",
        params={"from": (now - since).isoformat(), "to": (now + timedelta(minutes=1)).isoformat()},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def someone(client: httpx.AsyncClient, sms: Any) -> tuple[dict, str, datetime]:
    """A member who agreed to precise location, their account id, and now."""
    me = await member(client, sms)
    return me, me["account"]["id"], clock.utcnow()


async def test_a_stale_first_fix_is_outvoted_by_the_true_ones_after_it(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me, aid, now = await someone(client, sms)
    # the phone's cached position from yesterday in Beijing, sent with today's time
    r = await upload(client, me, [fix(0, now - timedelta(minutes=4), **BEIJING)])
    assert r.json()["flagged"] == []
    # then the true fixes, in Shanghai, one post each, as a phone sends them
    r = await upload(client, me, [fix(1, now - timedelta(minutes=3), **near(SHANGHAI, 1))])
    # one against one: what was there stays until a second fix backs the newcomer
    assert [f["code"] for f in r.json()["flagged"]] == ["fix.implied_speed"]
    assert statuses(await stored(db, aid)) == {"c0": OK, "c1": JUMP}
    r = await upload(client, me, [fix(2, now - timedelta(minutes=2), **near(SHANGHAI, 2))])
    assert r.json()["flagged"] == [] and r.json()["accepted"] == 1
    # two agreeing fixes win: the stale one is flagged, the first Shanghai fix cleared
    assert statuses(await stored(db, aid)) == {"c0": JUMP, "c1": OK, "c2": OK}
    last = await last_of(db, aid)
    assert last is not None and last["lat"] == pytest.approx(SHANGHAI[0] + 2e-4)
    r = await upload(client, me, [fix(3, now - timedelta(minutes=1), **near(SHANGHAI, 3))])
    assert r.json()["flagged"] == []
    assert statuses(await stored(db, aid)) == {"c0": JUMP, "c1": OK, "c2": OK, "c3": OK}
    # the map shows Shanghai, and the timeline knows nothing of a flight from Beijing
    items = await timeline(client, me, timedelta(hours=1))
    assert [i for i in items if i["kind"] == "trip"] == []
    assert all(abs(i["lat"] - SHANGHAI[0]) < 0.01 for i in items if i["kind"] == "stay")


async def test_a_stale_fix_in_the_same_batch_as_the_true_ones_is_the_one_flagged(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me, _, now = await someone(client, sms)
    batch = [fix(0, now - timedelta(minutes=4), **BEIJING)]
    batch += [fix(k, now - timedelta(minutes=4 - k), **near(SHANGHAI, k)) for k in (1, 2, 3)]
    r = await upload(client, me, batch)
    assert [(f["index"], f["code"]) for f in r.json()["flagged"]] == [(0, "fix.implied_speed")]
    last = await last_of(db, me["account"]["id"])
    assert last is not None and last["recorded_ms"] == ms(now - timedelta(minutes=1))


async def test_late_teleports_are_judged_against_their_neighbours_in_time(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me, aid, now = await someone(client, sms)
    track = [fix(k, now - timedelta(seconds=600 - 60 * k), **near(SHANGHAI, k)) for k in range(10)]
    assert (await upload(client, me, track)).json()["flagged"] == []
    # three fixes 2 s apart, older than the last one stored: Sydney, London, Shanghai
    t = now - timedelta(seconds=300)
    late = [
        fix(20, t, **SYDNEY),
        fix(21, t + timedelta(seconds=2), **LONDON),
        fix(22, t + timedelta(seconds=4), **near(SHANGHAI, 5)),
    ]
    r = await upload(client, me, late)
    assert [(f["id"], f["code"]) for f in r.json()["flagged"]] == [
        ("c20", "fix.implied_speed"),
        ("c21", "fix.implied_speed"),
    ]
    rows = statuses(await stored(db, aid))
    assert rows["c22"] == OK and all(rows[f"c{k}"] == OK for k in range(10))
    # the last location did not move back, and no 26,190 km "drive" appears
    last = await last_of(db, aid)
    assert last is not None and last["recorded_ms"] == ms(now - timedelta(seconds=60))
    for item in await timeline(client, me, timedelta(hours=1)):
        assert item["kind"] != "trip" or item["avg_speed_mps"] < MAX_SPEED, item


async def test_late_fixes_that_fit_between_their_neighbours_are_good(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me, aid, now = await someone(client, sms)
    evens = [fix(k, now - timedelta(seconds=600 - 30 * k), **near(SHANGHAI, k)) for k in (0, 2, 4)]
    odds = [fix(k, now - timedelta(seconds=600 - 30 * k), **near(SHANGHAI, k)) for k in (3, 1)]
    assert (await upload(client, me, evens)).json()["flagged"] == []
    r = await upload(client, me, odds)
    assert r.json()["accepted"] == 2 and r.json()["flagged"] == []
    assert set(statuses(await stored(db, aid)).values()) == {OK}


async def test_a_stale_last_location_is_replaced_by_older_fixes_that_outvote_it(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me, aid, now = await someone(client, sms)
    # the only fix stored: a wrong one in Beijing, the newest there is
    assert (await upload(client, me, [fix(9, now, **BEIJING)])).json()["flagged"] == []
    # a delayed batch from a minute before, in Shanghai: the map moves back to its newest
    late = [fix(k, now - timedelta(seconds=60 - 10 * k), **near(SHANGHAI, k)) for k in range(3)]
    r = await upload(client, me, late)
    assert r.json()["flagged"] == []
    assert statuses(await stored(db, aid))["c9"] == JUMP
    last = await last_of(db, aid)
    assert last is not None and last["recorded_ms"] == ms(now - timedelta(seconds=40))
    assert last["lat"] == pytest.approx(SHANGHAI[0] + 2e-4)


async def test_true_fixes_sent_at_once_after_a_stale_one_all_win(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """Several posts of one phone at once (a queue flushed on reconnecting): each is
    judged after the others that got there first, so the outcome is the same as one
    by one."""
    me, aid, now = await someone(client, sms)
    assert (await upload(client, me, [fix(0, now - timedelta(minutes=9), **BEIJING)])).json()
    posts = [[fix(k, now - timedelta(minutes=8 - k), **near(SHANGHAI, k))] for k in range(1, 7)]
    replies = await asyncio.gather(*(upload(client, me, p) for p in posts))
    assert all(r.status_code == 200 for r in replies)
    rows = statuses(await stored(db, aid))
    assert rows == {"c0": JUMP, **{f"c{k}": OK for k in range(1, 7)}}
    last = await last_of(db, aid)
    assert last is not None and last["recorded_ms"] == ms(now - timedelta(minutes=2))


# --- the algorithm -----------------------------------------------------------------------------


def walk(steps: list[tuple[int, float, float]]) -> tuple[list[int], list[float], list[float]]:
    t, lat, lon = [0], [31.2], [121.4]
    for dt, dlat, dlon in steps:
        t.append(t[-1] + dt)
        lat.append(lat[-1] + dlat)
        lon.append(lon[-1] + dlon)
    return t, lat, lon


# a walk of small steps a few seconds apart (always plausible)
small_steps = st.lists(
    st.tuples(
        st.integers(min_value=1_000, max_value=30_000),
        st.floats(min_value=-3e-4, max_value=3e-4),
        st.floats(min_value=-3e-4, max_value=3e-4),
    ),
    min_size=2,
    max_size=40,
)


@pytest.mark.db_agnostic
@settings(max_examples=200, deadline=None)
@given(steps=small_steps, at=st.integers(min_value=0, max_value=40), far=st.booleans())
def test_one_wild_fix_is_flagged_wherever_it_is_and_nothing_else(
    steps: list[tuple[int, float, float]], at: int, far: bool
) -> None:
    t, lat, lon = walk(steps)
    assert plausible.consistent(t, lat, lon, MAX_SPEED)
    assert plausible.keep(t, lat, lon, [1.0] * len(t), MAX_SPEED) == [True] * len(t)
    # one fix far away (the other side of the world, or 50 km off), at the same time
    # as one of the walk's fixes plus a moment
    k = min(at, len(t) - 1)
    wild = (-33.8, 151.2) if far else (lat[k] + 0.45, lon[k])
    t2 = [*t[: k + 1], t[k] + 500, *t[k + 1 :]]
    lat2 = [*lat[: k + 1], wild[0], *lat[k + 1 :]]
    lon2 = [*lon[: k + 1], wild[1], *lon[k + 1 :]]
    kept = plausible.keep(t2, lat2, lon2, [1.0] * len(t2), MAX_SPEED)
    assert kept == [j != k + 1 for j in range(len(t2))]


@pytest.mark.db_agnostic
@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=20_000),
            st.sampled_from([31.2, 31.25, 39.9, -33.8]),
            st.sampled_from([121.4, 121.45, 116.4, 151.2]),
        ),
        max_size=40,
    ),
    weights=st.lists(st.sampled_from([1.0, 1.001]), min_size=40, max_size=40),
)
def test_what_is_kept_is_a_journey_someone_could_make(
    points: list[tuple[int, float, float]], weights: list[float]
) -> None:
    points.sort(key=lambda p: p[0])
    t = [p[0] for p in points]
    lat = [p[1] for p in points]
    lon = [p[2] for p in points]
    kept = plausible.keep(t, lat, lon, weights[: len(t)], MAX_SPEED)
    chosen = [k for k in range(len(t)) if kept[k]]
    assert bool(chosen) == bool(t)
    for a, b in itertools.pairwise(chosen):
        assert plausible.agree(t[a], lat[a], lon[a], t[b], lat[b], lon[b], MAX_SPEED)
    # and no fix left out would have joined it at its place without breaking it
    for k in range(len(t)):
        before = [j for j in chosen if j < k]
        after = [j for j in chosen if j > k]
        if kept[k] or (before and k - before[-1] > plausible.LOOKBACK):
            continue
        if after and after[0] - k > plausible.LOOKBACK:
            continue
        fits = (not before or plausible.agree(
            t[before[-1]], lat[before[-1]], lon[before[-1]], t[k], lat[k], lon[k], MAX_SPEED
        )) and (not after or plausible.agree(
            t[k], lat[k], lon[k], t[after[0]], lat[after[0]], lon[after[0]], MAX_SPEED
        ))  # fmt: skip
        assert not fits, k
