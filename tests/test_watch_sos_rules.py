"""What a watch's alarm may raise: one live SOS per watch at a time (a new
alarm while one is open is added to it, never a second round of SMS and inbox
entries, even when the alarms arrive at once on several connections), and an
alarm older than ``watch_alarm_max_age_seconds`` is recorded with its own
time and alerts nobody. Real sockets to the real listener on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kares import clock, jobs
from kares.protocols.watch.server import WatchServer
from tests.conftest import bearer
from tests.support import watch as ws
from tests.support.watch import (
    GUARDIAN,
    SECOND_GUARDIAN,
    Conn,
    alerts,
    from_file,
    household,
    inbox,
    now_s,
)

server, conn, settings_overrides = ws.server, ws.conn, ws.settings_overrides  # fixtures

AL = b"[3G*8800000015*0002*AL]"


async def sos_jobs(db: Any) -> dict[str, int]:
    async with db.engine.connect() as c:
        rows = await c.execute(
            text("SELECT kind, count(*) FROM jobs WHERE kind LIKE 'sos.%' GROUP BY kind")
        )
        return {k: int(n) for k, n in rows}


async def told(client: httpx.AsyncClient, ctx: dict[str, Any]) -> list[int]:
    """How many SOS inbox entries each guardian has."""
    return [sum(n["category"] == "sos" for n in await inbox(client, g)) for g in ctx["guardians"]]


def sms_sos(sms: Any) -> list[str]:
    return sorted(m["to"] for m in sms.messages if m["template"] == "sos")


async def listed(client: httpx.AsyncClient, who: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/sos", headers=bearer(who["token"]))
    assert r.status_code == 200, r.text
    return list(r.json())


# --- old alarms -------------------------------------------------------------------------------


async def test_an_old_alarm_is_recorded_with_its_own_time_and_alerts_nobody(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    sms.messages.clear()
    long_ago = datetime(2017, 3, 2, 10, 15, 0, tzinfo=UTC)
    stale = now_s() - timedelta(seconds=601)  # just over the default 10 minutes
    assert await conn.ask(from_file("al_sos.txt", at=long_ago)) == AL
    assert await conn.ask(from_file("al_fall.txt", at=stale)) == AL
    assert await conn.ask(from_file("al_removed.txt", at=long_ago)) == AL
    assert [a["status"] for a in await alerts(db, ctx["dep"])] == ["late", "late"]
    await jobs.run_due(app.state.runtime)
    assert sms_sos(sms) == []
    assert await sos_jobs(db) == {}
    for g in ctx["guardians"]:
        notes = await inbox(client, g)
        assert [n for n in notes if n["category"] == "sos" or "alarm" in n["data"]] == []
        # the guardians see them, with the alarms' own times
        seen = {a["alarm_at"]: a for a in await listed(client, g)}
        assert set(seen) == {"2017-03-02T10:15:00Z", stale.isoformat().replace("+00:00", "Z")}
        assert {a["status"] for a in seen.values()} == {"late"}
        assert seen["2017-03-02T10:15:00Z"]["note"] == "SOS from the watch"
    # a fresh alarm still raises a live SOS
    assert await conn.ask(from_file("al_sos.txt", at=now_s() - timedelta(seconds=30))) == AL
    assert [a["status"] for a in await alerts(db, ctx["dep"])] == ["late", "late", "open"]
    assert await told(client, ctx) == [1, 1]
    await jobs.run_due(app.state.runtime)
    assert len(sms_sos(sms)) == 2


@pytest.mark.parametrize(
    "settings_overrides", [{"watch_alarm_max_age_seconds": 3600}], indirect=True
)
async def test_the_age_of_a_late_alarm_is_configured(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    assert await conn.ask(from_file("al_sos.txt", at=now_s() - timedelta(minutes=30))) == AL
    (alert,) = await alerts(db, ctx["dep"])
    assert alert["status"] == "open"
    assert await told(client, ctx) == [1, 1]


# --- one live SOS per watch -------------------------------------------------------------------


async def test_a_new_alarm_while_one_is_open_is_added_to_it(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    rt = app.state.runtime
    sms.messages.clear()
    t = now_s() - timedelta(seconds=60)
    assert await conn.ask(from_file("al_sos.txt", at=t)) == AL
    assert await conn.ask(from_file("al_sos.txt", at=t + timedelta(seconds=20))) == AL
    assert await conn.ask(from_file("al_fall.txt", at=t + timedelta(seconds=40))) == AL
    (alert,) = await alerts(db, ctx["dep"])
    assert alert["status"] == "open"
    assert await told(client, ctx) == [1, 1]
    await jobs.run_due(rt)
    assert sms_sos(sms) == sorted([GUARDIAN, SECOND_GUARDIAN])
    (shown,) = await listed(client, ctx["guardians"][0])
    assert shown["repeats"] == 2
    assert shown["alarm_at"] == t.isoformat().replace("+00:00", "Z")

    # answered: the next alarm is a new emergency, told again
    r = await client.post(
        f"/api/v1/sos/{alert['id']}/acknowledge", headers=bearer(ctx["guardians"][0]["token"])
    )
    assert r.status_code == 200, r.text
    assert await conn.ask(from_file("al_sos.txt", at=now_s())) == AL
    assert [a["status"] for a in await alerts(db, ctx["dep"])] == ["acknowledged", "open"]
    sos_counts = await told(client, ctx)
    assert sos_counts[0] == 2  # the answering guardian: the new SOS
    assert sos_counts[1] == 3  # the other: "... is responding" and the new SOS

    # nobody answers the second within its reminders: after them, an alarm is new again
    clock.advance(21 * 60)
    assert await conn.ask(from_file("al_sos.txt", at=now_s())) == AL
    assert [a["status"] for a in await alerts(db, ctx["dep"])] == ["acknowledged", "open", "open"]


@pytest.mark.parametrize("settings_overrides", [{"watch_max_per_id": 8}], indirect=True)
async def test_alarms_at_once_on_several_connections_open_one_alert(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, server: WatchServer
) -> None:
    ctx = await household(client, sms)
    sms.messages.clear()
    conns = [await Conn.open(server.port) for _ in range(8)]  # type: ignore[attr-defined]
    try:
        t = now_s() - timedelta(seconds=60)
        # each connection its own alarm (its own time), all sent at once
        got = await asyncio.gather(
            *(
                c.ask(from_file("al_sos.txt", at=t + timedelta(seconds=i)))
                for i, c in enumerate(conns)
            )
        )
    finally:
        for c in conns:
            await c.close()
    assert got == [AL] * 8
    (alert,) = await alerts(db, ctx["dep"])
    assert alert["status"] == "open"
    (shown,) = await listed(client, ctx["guardians"][0])
    assert shown["repeats"] == 7
    assert await told(client, ctx) == [1, 1]
    assert await sos_jobs(db) == {"sos.sms": 2, "sos.remind": 1}
    await jobs.run_due(app.state.runtime)
    assert len(sms_sos(sms)) == 2
