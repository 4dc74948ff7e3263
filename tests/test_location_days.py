"""The day store (``location.days``): each person's good fixes of a UTC day, packed
as columns for the track and the timeline.

A read through it gives exactly what reading ``location_fixes`` gives (packed days,
fixes stored after the pack, ranges cutting through days, days not packed yet), and
the copy is personal data that goes with the fixes: deleting or changing a fix
(history deletion, retention, anonymisation) deletes its day's copy, deleting the
account deletes them all, and the data map lists it as precise location."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kares import clock, jobs
from kares.location import days, service
from tests.conftest import bearer
from tests.test_location_ingest import member, upload
from tests.test_location_read import synthetic_day, upload_all

ME = "+8613700004001"


def sqlite_only(db: Any) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the day store is packed on SQLite only (location.days)")


async def pack_due(app: Any) -> None:
    """What the worker does once the planned packs are due."""
    clock.advance(days.PACK_DELAY_S + 1)
    await jobs.run_due(app.state.runtime)


async def packed_days(db: Any, account_id: str) -> dict[int, int]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT day, count FROM location_days WHERE account_id = :a"), {"a": account_id}
        )
        return {int(d): int(c) for d, c in rows}


async def both_reads(db: Any, account_id: str, from_ms: int, to_ms: int) -> tuple[list, list]:
    """(id, t, lat, lon, accuracy, speed, precise) of every fix, through the day store
    and straight from location_fixes."""
    async with db.sessions() as s:
        via = await service.day_fixes(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)
        rows = await service.fixes_between(s, account_id=account_id, from_ms=from_ms, to_ms=to_ms)

    def key(f: service.StoredFix) -> tuple[Any, ...]:
        return (f.id, f.t_ms, f.lat, f.lon, f.accuracy_m, f.speed_mps, f.precise)

    return [key(f) for f in via], [key(f) for f in rows]


def two_days_ago(hours: float) -> datetime:
    """A time on the UTC day before yesterday (``hours`` into it)."""
    today = clock.utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=2) + timedelta(hours=hours)


def fixes_at(start: datetime, n: int, tag: str, step_s: float = 30.0) -> list[dict]:
    return [
        {
            "id": f"{tag}{i}",
            "t": (start + timedelta(seconds=i * step_s)).isoformat(),
            "lat": 31.23 + i * 1e-4,
            "lon": 121.47 + i * 5e-5,
            **({"accuracy_m": 8} if i % 3 else {}),  # some without accuracy
            **({"speed_mps": 1.5} if i % 2 else {}),
        }
        for i in range(n)
    ]


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


# --- the same fixes, read either way ------------------------------------------------------


async def test_track_and_timeline_are_the_same_before_and_after_the_day_is_packed(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    sqlite_only(db)
    me = await member(client, sms, ME)
    fixes, _ = synthetic_day()
    await upload_all(client, me, fixes)
    aid = me["account"]["id"]
    base = f"/api/v1/location/{aid}"
    end = clock.utcnow() + timedelta(seconds=1)
    window = {"from": (end - timedelta(days=1, minutes=5)).isoformat(), "to": end.isoformat()}

    async def read() -> tuple[Any, Any]:
        h = bearer(me["token"])
        track = await client.get(f"{base}/track", params={**window, "zoom": 15}, headers=h)
        timeline = await client.get(f"{base}/timeline", params=window, headers=h)
        assert track.status_code == 200 and timeline.status_code == 200, track.text
        return track.json(), timeline.json()

    before = await read()
    assert await packed_days(db, aid) == {}  # not before the pack is due
    await pack_due(app)
    stored = await packed_days(db, aid)
    assert sum(stored.values()) == len(fixes)
    assert await read() == before
    assert before[0]["total_points"] == len(fixes) and before[1]["items"]


async def test_a_read_is_the_pack_and_what_was_stored_after_it(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    sqlite_only(db)
    me = await member(client, sms, ME)
    aid = me["account"]["id"]
    first = fixes_at(two_days_ago(22), 300, "a", step_s=60)  # runs over midnight into the next day
    r = await upload(client, me, first)
    assert r.json()["accepted"] == 300
    await pack_due(app)
    assert len(await packed_days(db, aid)) == 2
    # late fixes: between packed ones (same times too), before, after, and a bad one
    # (late fixes near the track: they face the same plausibility filter as any other)
    t0 = two_days_ago(22)
    late = [
        {"id": "late1", "t": (t0 + timedelta(seconds=45)).isoformat(), "lat": 31.23, "lon": 121.47},
        {"id": "late2", "t": (t0 + timedelta(seconds=60)).isoformat(), "lat": 31.23, "lon": 121.47},
        {"id": "late3", "t": (t0 - timedelta(hours=1)).isoformat(), "lat": 31.3, "lon": 121.5},
        {"id": "late4", "t": (t0 + timedelta(hours=6)).isoformat(), "lat": 31.3, "lon": 121.5},
        {"id": "bad", "t": (t0 + timedelta(seconds=90)).isoformat(), "lat": 31.23, "lon": 121.47,
         "accuracy_m": -1},
    ]  # fmt: skip
    r = await upload(client, me, late)
    assert r.status_code == 200, r.text
    lo, hi = ms(t0 - timedelta(hours=2)), ms(t0 + timedelta(hours=8))
    rng = random.Random(7)
    cuts = [(lo, hi), (ms(t0), ms(t0 + timedelta(seconds=61))), (ms(t0) + 1, ms(t0) + 2)]
    cuts += [tuple(sorted(rng.sample(range(lo, hi), 2))) for _ in range(20)]
    for a, b in cuts:
        via, rows = await both_reads(db, aid, a, b)
        assert via == rows, (a, b)
    via, _ = await both_reads(db, aid, lo, hi)
    assert len(via) == 304  # the bad one was refused
    # packed again later, the same
    await pack_due(app)
    assert sum((await packed_days(db, aid)).values()) == 304
    for a, b in cuts:
        via, rows = await both_reads(db, aid, a, b)
        assert via == rows, (a, b)


async def test_fixes_at_the_same_time_keep_their_order(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    sqlite_only(db)
    me = await member(client, sms, ME)
    aid = me["account"]["id"]
    t = two_days_ago(10).isoformat()
    same = [{"id": f"s{i}", "t": t, "lat": 31.2 + i * 1e-3, "lon": 121.4} for i in range(5)]
    await upload(client, me, same[:3])
    await pack_due(app)
    await upload(client, me, same[3:])
    lo = ms(two_days_ago(9))
    via, rows = await both_reads(db, aid, lo, lo + 7_200_000)
    assert via == rows and len(via) == 5


# --- the copy is personal data: it goes with the fixes ------------------------------------


async def fake_pack(db: Any, account_id: str, day: int) -> None:
    """PostgreSQL packs nothing (location.days); a row by hand shows what the triggers do."""
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO location_days (account_id, day, through_id, count, ids, t_ms, lat, "
                "lon, accuracy_m, speed_mps, precise) VALUES (:a, :d, 0, 0, :b, :b, :b, :b, :b, "
                ":b, :b)"
            ),
            {"a": account_id, "d": day, "b": b""},
        )


async def two_packed_days(client: httpx.AsyncClient, sms: Any, db: Any, app: Any) -> tuple:
    me = await member(client, sms, ME)
    aid = me["account"]["id"]
    start = two_days_ago(1)
    await upload(client, me, fixes_at(start, 20, "a"))
    await upload(client, me, fixes_at(start + timedelta(days=1), 20, "b"))
    d1 = ms(start) // days.DAY_MS
    if db.engine.dialect.name == "sqlite":
        await pack_due(app)
    else:
        for d in (d1, d1 + 1):
            await fake_pack(db, aid, d)
    assert set(await packed_days(db, aid)) == {d1, d1 + 1}
    return me, aid, d1


async def test_deleting_fixes_deletes_their_days_copy(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    """History deletion or retention: whatever statement deletes fixes, the copy of
    their day goes in the same transaction; other days stay."""
    _, aid, d1 = await two_packed_days(client, sms, db, app)
    async with db.engine.begin() as conn:  # as a retention purge would: older than a time
        await conn.execute(
            text("DELETE FROM location_fixes WHERE account_id = :a AND recorded_ms < :t"),
            {"a": aid, "t": (d1 + 1) * days.DAY_MS},
        )
    assert set(await packed_days(db, aid)) == {d1 + 1}
    via, rows = await both_reads(db, aid, d1 * days.DAY_MS, (d1 + 2) * days.DAY_MS)
    assert via == rows and len(via) == 20
    async with db.engine.begin() as conn:  # one fix of the other day
        await conn.execute(
            text(
                "DELETE FROM location_fixes WHERE id = (SELECT max(id) FROM location_fixes "
                "WHERE account_id = :a)"
            ),
            {"a": aid},
        )
    assert await packed_days(db, aid) == {}
    via, rows = await both_reads(db, aid, d1 * days.DAY_MS, (d1 + 2) * days.DAY_MS)
    assert via == rows and len(via) == 19


async def test_changing_a_fix_deletes_its_days_copy(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    """Anonymisation (or any change) of a fix: the copy that still holds the old
    position goes."""
    _, aid, d1 = await two_packed_days(client, sms, db, app)
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE location_fixes SET lat = 31.23, lon = 121.47 "
                "WHERE account_id = :a AND recorded_ms < :t"
            ),
            {"a": aid, "t": (d1 + 1) * days.DAY_MS},
        )
    assert set(await packed_days(db, aid)) == {d1 + 1}
    via, rows = await both_reads(db, aid, d1 * days.DAY_MS, (d1 + 2) * days.DAY_MS)
    assert via == rows and {(v[2], v[3]) for v in via[:20]} == {(31.23, 121.47)}


async def test_deleting_the_account_deletes_its_days(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    _, aid, _ = await two_packed_days(client, sms, db, app)
    other = await member(client, sms, "+8613700004002")
    await upload(client, other, fixes_at(two_days_ago(3), 5, "o"))
    if db.engine.dialect.name == "sqlite":
        await pack_due(app)
    else:
        await fake_pack(db, other["account"]["id"], ms(two_days_ago(3)) // days.DAY_MS)
    async with db.engine.begin() as conn:
        # consent receipts may only go with an account being deleted
        await conn.execute(
            text("UPDATE accounts SET status = 'deleting' WHERE id = :a"), {"a": aid}
        )
        await conn.execute(text("DELETE FROM accounts WHERE id = :a"), {"a": aid})
    assert await packed_days(db, aid) == {}
    assert len(await packed_days(db, other["account"]["id"])) == 1


async def test_the_data_map_lists_the_copy_as_precise_location(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await member(client, sms, ME)
    r = await client.get("/api/v1/privacy/data-map", headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    mine = {row["column"]: row for row in r.json() if row["table"] == "location_days"}
    fixes = {row["column"]: row for row in r.json() if row["table"] == "location_fixes"}
    assert set(mine) == {"day", "t_ms", "lat", "lon", "accuracy_m", "speed_mps"}
    for row in mine.values():
        assert row["category"] == "location.precise"
        assert row["retention"] == fixes["lat"]["retention"]  # kept no longer than the fixes
