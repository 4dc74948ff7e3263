"""One open SOS per person from the app (issue 12), as a watch has one per
device: a second SOS while the first is open is added to it (``repeats``,
answered 200 with that alert) and tells nobody again: no second inbox entry,
push or SMS. The database decides (``sos_alerts.open_person``, unique, taken by
an INSERT ... ON CONFLICT DO NOTHING), so a burst sent at once, each request on
its own connection, opens one alert between them, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text

from kares import clock, jobs
from kares.sos.service import LIVE_FOR
from tests.conftest import bearer, query
from tests.test_location_read import ALICE, CAROL, fam

__all__ = ["fam"]  # the fixture: Alice, Bob and Carol in one family; Dan in none
SOS = "/api/v1/sos"


async def rows(db: Any, account_id: str) -> list[dict[str, Any]]:
    return await query(
        db,
        "SELECT id, status, repeats, repeated_at, open_person FROM sos_alerts "
        "WHERE account_id = :a ORDER BY created_at",
        a=account_id,
    )


async def sos_jobs(db: Any) -> dict[str, int]:
    async with db.engine.connect() as c:
        got = await c.execute(
            text("SELECT kind, count(*) FROM jobs WHERE kind LIKE 'sos.%' GROUP BY kind")
        )
        return {k: int(n) for k, n in got}


async def told(client: httpx.AsyncClient, *who: dict[str, Any]) -> list[int]:
    """How many SOS inbox entries each has."""
    out = []
    for w in who:
        r = await client.get("/api/v1/notifications", headers=bearer(w["token"]))
        assert r.status_code == 200, r.text
        out.append(sum(n["category"] == "sos" for n in r.json()))
    return out


def sms_sos(sms: Any) -> list[str]:
    return sorted(m["to"] for m in sms.messages if m["template"] == "sos")


async def test_a_second_sos_while_one_is_open_is_added_to_it(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, fam: dict[str, Any]
) -> None:
    alice, bob, carol = fam["alice"], fam["bob"], fam["carol"]
    me = bearer(bob["token"])
    sms.messages.clear()
    first = await client.post(SOS, json={"lat": 31.2304, "lon": 121.4737}, headers=me)
    assert first.status_code == 201, first.text
    assert first.json()["repeats"] == 0 and first.json()["repeated_at"] is None
    again = await client.post(SOS, json={"lat": 31.2310, "lon": 121.4740}, headers=me)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["repeats"] == 1 and again.json()["repeated_at"] is not None
    # the alert as guardians list it shows the repeat too
    listed = await client.get(SOS, headers=bearer(alice["token"]))
    assert listed.status_code == 200, listed.text
    [seen] = [a for a in listed.json() if a["id"] == first.json()["id"]]
    assert seen["repeats"] == 1 and seen["repeated_at"] == again.json()["repeated_at"]
    assert (again.json()["lat"], again.json()["lon"]) == (31.2304, 121.4737)  # the first's
    (row,) = await rows(db, bob["account"]["id"])
    assert row["open_person"] == bob["account"]["id"] and row["repeated_at"] is not None
    # told once: one inbox entry each, one SMS each, one round of reminders
    assert await told(client, alice, carol) == [1, 1]
    assert await sos_jobs(db) == {"sos.sms": 2, "sos.remind": 1}
    await jobs.run_due(app.state.runtime)
    assert sms_sos(sms) == sorted([ALICE, CAROL])

    # answered: the next SOS is a new emergency, told again
    r = await client.post(f"{SOS}/{first.json()['id']}/acknowledge", headers=bearer(alice["token"]))
    assert r.status_code == 200, r.text
    assert (await rows(db, bob["account"]["id"]))[0]["open_person"] is None
    second = await client.post(SOS, json={}, headers=me)
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first.json()["id"]
    assert [x["status"] for x in await rows(db, bob["account"]["id"])] == ["acknowledged", "open"]

    # nobody answers it within its reminders: after them, an SOS is new again
    clock.advance(LIVE_FOR.total_seconds() + 60)
    third = await client.post(SOS, json={}, headers=me)
    assert third.status_code == 201, third.text
    got = await rows(db, bob["account"]["id"])
    assert [x["status"] for x in got] == ["acknowledged", "open", "open"]
    assert [x["open_person"] for x in got] == [None, None, bob["account"]["id"]]


async def test_a_burst_of_sos_at_once_opens_one_alert(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, fam: dict[str, Any]
) -> None:
    """Twelve presses sent at once (each request its own session and connection),
    and Carol's at the same moment: one alert each, every guardian told once."""
    alice, bob, carol = fam["alice"], fam["bob"], fam["carol"]
    sms.messages.clear()
    n = 12
    answers = await asyncio.gather(
        *(
            client.post(SOS, json={"lat": 31.2304, "lon": 121.4737, "note": f"press {i}"},
              headers=bearer(bob["token"]))
            for i in range(n)
        ),
        client.post(SOS, json={}, headers=bearer(carol["token"])),
    )  # fmt: skip
    bobs, carols = answers[:n], answers[n]
    assert sorted(r.status_code for r in bobs) == [200] * (n - 1) + [201], [r.text for r in bobs]
    assert len({r.json()["id"] for r in bobs}) == 1
    assert carols.status_code == 201, carols.text
    (bob_alert,) = await rows(db, bob["account"]["id"])
    assert bob_alert["status"] == "open" and bob_alert["repeats"] == n - 1
    (carol_alert,) = await rows(db, carol["account"]["id"])
    assert carol_alert["repeats"] == 0
    # Bob's alert told Alice and Carol once; Carol's told Alice and Bob once
    assert await told(client, alice, bob, carol) == [2, 1, 1]
    assert await sos_jobs(db) == {"sos.sms": 4, "sos.remind": 2}
    await jobs.run_due(app.state.runtime)
    assert len(sms_sos(sms)) == 4
    listed = (await client.get(SOS, headers=bearer(alice["token"]))).json()
    assert sorted(a["repeats"] for a in listed) == [0, n - 1]
