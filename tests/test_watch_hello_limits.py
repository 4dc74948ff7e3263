"""``POST /api/v1/watches/hello`` needs no sign-in, so it is limited per
network address (counted by the database: a burst sent at once cannot
overrun it), and a watch nobody pairs is forgotten after
``watch_hello_ttl_seconds``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from kares import clock, jobs
from tests.conftest import bearer, count_rows, snapshot
from tests.test_watches_sos import hello, paired

DAY = 86400


def imei(i: int) -> str:
    return f"35824005{i:07d}"


async def introduce(client: httpx.AsyncClient, i: int) -> httpx.Response:
    return await client.post("/api/v1/watches/hello", json={"imei": imei(i), "model": "Kid W1"})


async def is_paired_or_waiting(client: httpx.AsyncClient, token: str) -> bool:
    r = await client.get("/api/v1/watches/me", headers=bearer(token))
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"watch_hello_per_ip_per_hour": 5}])
async def test_introductions_per_address_are_limited_even_in_a_burst(
    client: httpx.AsyncClient, app: Any, db: Any, settings_overrides: dict[str, Any]
) -> None:
    got = await asyncio.gather(*(introduce(client, i) for i in range(20)))  # all at once
    codes = sorted(r.status_code for r in got)
    assert codes == [200] * 5 + [429] * 15
    refused = [r for r in got if r.status_code == 429]
    assert {r.json()["code"] for r in refused} == {"watch.hello_limit"}
    assert all(0 < int(r.headers["retry-after"]) <= 3600 for r in refused)
    assert await count_rows(db, "watches") == 5
    # a refused introduction changes nothing
    before = await snapshot(db)
    assert (await introduce(client, 99)).status_code == 429
    assert await snapshot(db) == before
    # another address has its own count
    other = httpx.ASGITransport(app=app, client=("192.0.2.7", 40001))
    async with httpx.AsyncClient(transport=other, base_url="https://testserver") as c2:
        assert (await introduce(c2, 100)).status_code == 200
    # an hour later the address may introduce watches again
    clock.advance(3601)
    assert (await introduce(client, 101)).status_code == 200
    assert await count_rows(db, "watches") == 7


async def test_a_watch_nobody_pairs_is_forgotten(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    rt = app.state.runtime
    ctx = await paired(client, sms)  # this one is paired and stays
    lonely = await hello(client, imei(1))
    # introduced again half a day later: its day starts again
    clock.advance(DAY // 2)
    again = await hello(client, imei(3))
    clock.advance(DAY // 2)
    again = await hello(client, imei(3))  # replaces the credential of the first hello
    clock.advance(DAY // 2 + 1)
    await jobs.run_due(rt)
    assert not await is_paired_or_waiting(client, lonely["token"])  # forgotten
    assert await is_paired_or_waiting(client, ctx["watch"]["token"])
    assert await is_paired_or_waiting(client, again["token"])
    assert await count_rows(db, "watches") == 2
    clock.advance(DAY // 2)
    await jobs.run_due(rt)
    assert not await is_paired_or_waiting(client, again["token"])
    assert await count_rows(db, "watches") == 1
    assert await count_rows(db, "watch_hello_counts") == 0  # the hours are over too

    # unpaired and not paired again: forgotten a day later
    r = await client.delete(
        f"/api/v1/watches/{ctx['watch_id']}", headers=bearer(ctx["guardian"]["token"])
    )
    assert r.status_code == 204, r.text
    assert await count_rows(db, "watches") == 1
    clock.advance(DAY + 1)
    await jobs.run_due(rt)
    assert await count_rows(db, "watches") == 0
