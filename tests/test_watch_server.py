"""The kids'-watch TCP listener end to end: real sockets on loopback, a watch
introduced and paired through the HTTP API, and what it reports checked in
the database and through the API (stored fixes, the family map, SOS alerts,
notifications, the device's battery).

A watch is recognised by the id in its frames, which it introduced as its
IMEI. Positions go through the same ingestion as the apps' uploads (precise
location withdrawn -> rounded; cell/Wi-Fi only -> kept unresolved, never 0,0,
or placed by the configured tables). An alarm is acknowledged only once what
it reports is stored and the guardians are being told; an unknown watch gets
its keep-alive answered and nothing else.

Frames that go unanswered (positions) are followed by a keep-alive: one
connection's frames are handled in order, so its ``LK`` reply means the
frame before it was handled."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kares.geo.resolver import LocalResolver
from kares.protocols.watch import frames as wp
from kares.protocols.watch.server import WatchServer
from tests.conftest import bearer, count_rows, snapshot
from tests.support.watch import (
    WAIT,
    WID,
    Conn,
    alerts,
    conn,
    frame,
    from_file,
    household,
    inbox,
    ms,
    now_s,
    position_of,
    reply,
    server,
    settings_overrides,
    state_but_last_seen,
    watch_device,
)
from tests.test_location_ingest import last_of, stored

__all__ = ["conn", "server", "settings_overrides"]  # fixtures, from tests.support.watch


# --- an unknown watch ---------------------------------------------------------------------------


async def test_an_unknown_watch_gets_its_keepalive_answered_and_nothing_else(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    await household(client, sms)  # another watch is paired; this one is not
    stranger = "8800000099"
    before = await snapshot(db)
    assert await conn.ask(frame("LK", stranger)) == b"[3G*8800000099*0002*LK]"
    assert await conn.ask(frame("LK,10,0,90", stranger)) == b"[3G*8800000099*0002*LK]"
    await conn.send(from_file("ud_gps.txt", wid=stranger))
    await conn.sync(stranger)
    # its alarm is not acknowledged: the watch keeps trying and calls its SOS numbers
    await conn.send(from_file("al_sos.txt", wid=stranger))
    await conn.silent()
    await conn.send(from_file("btemp2.txt", wid=stranger))
    await conn.silent()
    await conn.sync(stranger)
    assert await snapshot(db) == before


async def test_an_introduced_but_unpaired_watch_is_not_trusted(
    client: httpx.AsyncClient, db: Any, conn: Conn
) -> None:
    r = await client.post("/api/v1/watches/hello", json={"imei": WID, "model": "Kid W1"})
    assert r.status_code == 200, r.text
    before = await state_but_last_seen(db)
    await conn.send(from_file("ud_gps.txt"))
    await conn.sync()
    await conn.send(from_file("al_sos.txt"))
    await conn.silent()
    assert await state_but_last_seen(db) == before
    assert await count_rows(db, "location_fixes") == 0


# --- a paired watch: keep-alives and positions -------------------------------------------------


async def test_keepalive_is_answered_and_reports_the_battery(
    client: httpx.AsyncClient, sms: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    assert await conn.ask(frame("LK")) == b"[3G*8800000015*0002*LK]"
    assert await conn.ask(from_file("lk_steps.txt")) == b"[3G*8800000015*0002*LK]"
    dev = await watch_device(client, ctx)
    assert dev["battery"] == 87
    # lower-case vendor tags and sequence numbers are echoed back
    got = await conn.ask(wp.encode("zj", WID, "LK,0,0,19", index="0009"))
    assert got == b"[zj*8800000015*0009*0002*LK]"
    assert (await watch_device(client, ctx))["battery"] == 19
    # a battery out of range is not believed, the keep-alive still answered
    assert await conn.ask(frame("LK,0,0,250")) == b"[3G*8800000015*0002*LK]"
    assert (await watch_device(client, ctx))["battery"] == 19


async def test_a_gps_fix_is_stored_and_shown_on_the_family_map(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    t = now_s() - timedelta(seconds=30)
    data = from_file("ud_gps.txt", at=t)
    await conn.send(data)
    await conn.silent()  # a position report is not answered
    await conn.sync()
    rows = await stored(db, ctx["dep"])
    assert len(rows) == 1
    row = rows[0]
    assert row["recorded_ms"] == ms(t)
    assert (row["lat"], row["lon"]) == (31.230416, 121.473701)
    assert row["speed_mps"] == pytest.approx(2.5 / 3.6)
    assert row["accuracy_m"] == pytest.approx(8.5)
    assert (row["status"], row["source"], bool(row["precise"])) == ("ok", "gps", True)
    last = await last_of(db, ctx["dep"])
    assert last is not None and last["recorded_ms"] == ms(t)
    assert (last["lat"], last["lon"]) == (31.230416, 121.473701)
    assert last["battery"] == 76
    # the guardian sees it on the family map
    r = await client.get(
        f"/api/v1/families/{ctx['family_id']}/map", headers=bearer(ctx["guardians"][1]["token"])
    )
    assert r.status_code == 200, r.text
    me = next(m for m in r.json()["members"] if m["account_id"] == ctx["dep"])
    pos = me["position"]
    assert pos is not None
    assert (pos["lat"], pos["lon"], pos["precise"]) == (31.230416, 121.473701, True)
    assert datetime.fromisoformat(pos["at"].replace("Z", "+00:00")) == t
    # the position's battery reached the device too
    assert (await watch_device(client, ctx))["battery"] == 76


async def test_4g_positions_and_the_newest_fix_wins(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    t = now_s()
    await conn.send(from_file("ud_lte.txt", at=t - timedelta(seconds=60)))
    await conn.send(from_file("ud_gps.txt", at=t - timedelta(seconds=120)))  # late, older
    await conn.sync()
    rows = await stored(db, ctx["dep"])
    assert [r["recorded_ms"] for r in rows] == [ms(t) - 120_000, ms(t) - 60_000]
    last = await last_of(db, ctx["dep"])
    assert last is not None
    assert (last["lat"], last["lon"]) == (31.224361, 121.46917)


async def test_a_stored_position_sent_twice_is_stored_once(
    client: httpx.AsyncClient, sms: Any, db: Any, server: WatchServer, conn: Conn
) -> None:
    ctx = await household(client, sms)
    t = now_s() - timedelta(hours=2)
    data = from_file("ud2.txt", at=t)
    await conn.send(data)
    await conn.sync()
    await conn.send(data)  # the watch was not sure it got through
    await conn.sync()
    other = await Conn.open(server.port)  # type: ignore[attr-defined]
    try:  # again, after a reconnect
        await other.send(data)
        await other.sync()
    finally:
        await other.close()
    rows = await stored(db, ctx["dep"])
    assert len(rows) == 1
    assert rows[0]["recorded_ms"] == ms(t)
    assert (rows[0]["lat"], rows[0]["lon"]) == (39.908722, 116.397499)


async def test_a_fix_without_gps_is_kept_unresolved_never_as_zero(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    t = now_s() - timedelta(seconds=10)
    await conn.send(from_file("ud_nofix_cells_wifi.txt", at=t))
    await conn.send(from_file("ud_a_zero.txt", at=t - timedelta(seconds=5)))  # "A" but 0,0
    await conn.sync()
    rows = await stored(db, ctx["dep"])
    assert len(rows) == 2
    for row in rows:
        assert row["lat"] is None and row["lon"] is None
        assert row["status"] == "unresolved"
    heard = json.loads(rows[1]["radio"])
    assert [c[:4] for c in heard["cells"]] == [
        [460, 0, 6243, 24131],
        [460, 0, 6243, 24132],
        [460, 0, 6243, 30275],
    ]
    assert len(heard["wifi"]) == 3
    assert await last_of(db, ctx["dep"]) is None
    async with db.engine.connect() as c:
        zero = await c.execute(text("SELECT count(*) FROM location_fixes WHERE lat = 0"))
        assert zero.scalar_one() == 0


@pytest.mark.parametrize(
    ("settings_overrides", "source"),
    [({"geo": "cells"}, "cell"), ({"geo": "cells+wifi"}, "wifi")],
    indirect=["settings_overrides"],
)
async def test_a_fix_without_gps_is_placed_by_the_configured_tables(
    client: httpx.AsyncClient,
    sms: Any,
    db: Any,
    conn: Conn,
    settings_overrides: dict[str, Any],
    source: str,
) -> None:
    ctx = await household(client, sms)
    t = now_s() - timedelta(seconds=10)
    data = from_file("ud_nofix_cells_wifi.txt", at=t)
    pos = position_of(data)
    expected = LocalResolver()
    expected.load_opencellid_csv(settings_overrides["geo_cells_csv"])
    if "geo_wifi_csv" in settings_overrides:
        expected.load_wifi_csv(settings_overrides["geo_wifi_csv"])
    want = expected.resolve(pos.cells, pos.wifi)
    assert want is not None and want.source == source
    await conn.send(data)
    await conn.sync()
    (row,) = await stored(db, ctx["dep"])
    assert row["status"] == "ok" and row["source"] == source
    assert row["lat"] == pytest.approx(want.lat) and row["lon"] == pytest.approx(want.lon)
    assert row["accuracy_m"] == pytest.approx(want.accuracy_m)
    assert abs(row["lat"] - 31.23) < 0.01 and abs(row["lon"] - 121.473) < 0.01
    last = await last_of(db, ctx["dep"])
    assert last is not None and last["lat"] == pytest.approx(want.lat)


async def test_without_precise_consent_positions_are_rounded(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms, precise=False)
    t = now_s() - timedelta(seconds=20)
    await conn.send(from_file("ud_gps.txt", at=t))
    # what was heard is precise location too: without a position it is not kept
    await conn.send(from_file("ud_nofix_cells_wifi.txt", at=t + timedelta(seconds=5)))
    await conn.sync()
    (row,) = await stored(db, ctx["dep"])
    assert row["recorded_ms"] == ms(t)
    assert (row["lat"], row["lon"], bool(row["precise"])) == (31.23, 121.47, False)
    assert row["speed_mps"] is None and row["radio"] is None
    assert row["accuracy_m"] >= 1000
    r = await client.get(
        f"/api/v1/families/{ctx['family_id']}/map", headers=bearer(ctx["guardians"][0]["token"])
    )
    me = next(m for m in r.json()["members"] if m["account_id"] == ctx["dep"])
    assert (me["position"]["lat"], me["position"]["lon"]) == (31.23, 121.47)
    assert me["position"]["precise"] is False


# --- alarms -------------------------------------------------------------------------------------


async def test_sos_is_acknowledged_only_once_every_guardian_is_told(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    t = now_s() - timedelta(seconds=5)
    data = from_file("al_sos.txt", at=t)
    assert await alerts(db, ctx["dep"]) == []
    assert await conn.ask(data) == b"[3G*8800000015*0002*AL]"
    # the moment the watch has its answer, the alert is there
    (alert,) = await alerts(db, ctx["dep"])
    assert alert["status"] == "open" and alert["note"] == "SOS from the watch"
    assert (alert["lat"], alert["lon"], alert["precision"]) == (31.22987, 121.474125, "precise")
    assert alert["battery"] == 64
    for g in ctx["guardians"]:
        sos = [n for n in await inbox(client, g) if n["category"] == "sos"]
        assert len(sos) == 1, g["account"]["id"]
        assert sos[0]["data"]["sos_id"] == alert["id"]
        assert "Grandma Li" in sos[0]["title"]
    # the alarm's position is stored like any other
    (row,) = await stored(db, ctx["dep"])
    assert (row["recorded_ms"], row["lat"]) == (ms(t), 31.22987)
    # our answer was lost: the watch sends the same alarm again; it is answered, not raised twice
    assert await conn.ask(data) == b"[3G*8800000015*0002*AL]"
    assert len(await alerts(db, ctx["dep"])) == 1
    for g in ctx["guardians"]:
        assert sum(n["category"] == "sos" for n in await inbox(client, g)) == 1
    assert len(await stored(db, ctx["dep"])) == 1


async def test_a_fall_raises_an_sos(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    # AL_LTE is answered AL
    assert await conn.ask(from_file("al_fall.txt")) == b"[3G*8800000015*0002*AL]"
    (alert,) = await alerts(db, ctx["dep"])
    assert "fall" in alert["note"].lower()
    assert (alert["lat"], alert["lon"]) == (39.9042, 116.4074)
    for g in ctx["guardians"]:
        assert [n["data"]["sos_id"] for n in await inbox(client, g) if n["category"] == "sos"] == [
            alert["id"]
        ]


@pytest.mark.parametrize(
    ("name", "category", "title"),
    [
        ("al_removed.txt", "location", "Grandma Li took off the watch"),
        ("al_low_battery.txt", "system", "Grandma Li's watch battery is low"),
    ],
)
async def test_other_alarms_notify_the_guardians_without_an_sos(
    client: httpx.AsyncClient,
    sms: Any,
    db: Any,
    conn: Conn,
    name: str,
    category: str,
    title: str,
) -> None:
    ctx = await household(client, sms)
    data = from_file(name)
    assert await conn.ask(data) == b"[3G*8800000015*0002*AL]"
    assert await alerts(db, ctx["dep"]) == []
    for g in ctx["guardians"]:
        notes = [n for n in await inbox(client, g) if "alarm" in n["data"]]
        assert [(n["category"], n["title"]) for n in notes] == [(category, title)]
        assert notes[0]["data"]["account_id"] == ctx["dep"]
    # sent again (our answer was lost): told once
    assert await conn.ask(data) == b"[3G*8800000015*0002*AL]"
    for g in ctx["guardians"]:
        assert sum(n["category"] == category for n in await inbox(client, g)) == 1


async def test_a_resent_sos_without_a_kept_position_is_raised_once(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms, precise=False)
    # no GPS fix, only cells: with precise location withdrawn nothing of it is stored
    t = now_s()
    content = (
        f"AL,{t:%d%m%y},{t:%H%M%S},V,0.000000,N,0.000000,E,0.00,0.0,0.0,0,70,61,2480,0,"
        "00010000,1,255,460,0,6243,24131,150,0,0.0"
    )
    assert await conn.ask(frame(content)) == b"[3G*8800000015*0002*AL]"
    assert await conn.ask(frame(content)) == b"[3G*8800000015*0002*AL]"
    assert len(await alerts(db, ctx["dep"])) == 1


async def test_an_sos_that_failed_is_raised_when_the_watch_retries(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kares.sos import service as sos

    ctx = await household(client, sms)
    real = sos.open_alert
    calls = 0

    async def flaky(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database went away for a moment")
        return await real(*args, **kw)

    monkeypatch.setattr(sos, "open_alert", flaky)
    data = from_file("al_sos.txt")
    await conn.send(data)
    await conn.silent()  # not acknowledged: nothing was raised
    assert await alerts(db, ctx["dep"]) == []
    # the watch sends it again: acknowledged only if it is raised now
    assert await conn.ask(data) == b"[3G*8800000015*0002*AL]"
    assert len(await alerts(db, ctx["dep"])) == 1


async def test_an_sos_of_an_approximate_only_wearer_is_precise_as_over_http(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms, precise=False)
    assert await conn.ask(from_file("al_sos.txt")) == b"[3G*8800000015*0002*AL]"
    (alert,) = await alerts(db, ctx["dep"])
    # whichever way it is fixed, the label must match the coordinates
    assert (alert["lat"], alert["lon"], alert["precision"]) == (31.22987, 121.474125, "precise")


# --- health readings -------------------------------------------------------------------------


async def test_health_readings_without_the_wearers_consent_are_answered_and_not_stored(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    # with the separate consent for health readings they are stored: tests/test_health.py
    await household(client, sms)
    await conn.sync()
    before = await state_but_last_seen(db)
    assert await conn.ask(from_file("bphrt.txt")) == b"[3G*8800000015*0005*bphrt]"
    assert await conn.ask(from_file("btemp2.txt")) == b"[3G*8800000015*0006*btemp2]"
    assert await conn.ask(from_file("oxygen.txt")) == b"[3G*8800000015*0008*oxygen,1]"
    assert await conn.ask(frame("BLOOD,109,68")) == b"[3G*8800000015*0005*BLOOD]"
    await conn.send(from_file("heart.txt"))  # no reply is known for it
    await conn.silent()
    await conn.sync()
    assert await state_but_last_seen(db) == before


# --- the byte stream -------------------------------------------------------------------------


async def test_frames_split_joined_and_among_garbage(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    t = now_s() - timedelta(seconds=60)
    ud = from_file("ud_gps.txt", at=t)
    # one frame over several writes
    for i in range(0, len(ud), 37):
        await conn.send(ud[i : i + 37])
        await asyncio.sleep(0.01)
    await conn.sync()
    assert len(await stored(db, ctx["dep"])) == 1
    # several frames in one write, answered in order
    ud2 = from_file("ud_lte.txt", at=t + timedelta(seconds=20))
    await conn.send(frame("LK") + ud2 + from_file("btemp2.txt") + b"\r\n" + frame("LK,1,2,55"))
    assert await conn.reply() == reply("LK")
    assert await conn.reply() == reply("btemp2")
    assert await conn.reply() == reply("LK")
    assert len(await stored(db, ctx["dep"])) == 2
    assert (await watch_device(client, ctx))["battery"] == 55
    # garbage before, between and as broken headers is skipped
    ud3 = from_file("ud_gps.txt", at=t + timedelta(seconds=40))
    junk = b"\x00\xffGET / HTTP/1.1\r\n\r\n[3G*zz[3G*"
    await conn.send(junk + ud3[:50])
    await conn.send(ud3[50:] + b"noise]]" + b"[3G*88*zzzz*LK]" + frame("LK"))
    assert await conn.reply() == reply("LK")
    assert len(await stored(db, ctx["dep"])) == 3
    # a frame that does not parse as what it says is not stored and breaks nothing
    await conn.send(frame("UD,nonsense"))
    await conn.sync()
    assert len(await stored(db, ctx["dep"])) == 3


@pytest.mark.parametrize("settings_overrides", [{"watch_max_per_id": 3}], indirect=True)
async def test_several_connections_of_one_watch_at_once(
    client: httpx.AsyncClient, sms: Any, db: Any, server: WatchServer
) -> None:
    """Every report is kept; while several connections speak for one id none is
    believed (tests/test_watch_port_limits.py)."""
    ctx = await household(client, sms)
    conns = [await Conn.open(server.port) for _ in range(3)]  # type: ignore[attr-defined]
    try:
        await asyncio.gather(*(c.sync() for c in conns))  # each speaks for the id now
        t = now_s() - timedelta(seconds=300)
        await asyncio.gather(
            *(
                c.send(from_file("ud_gps.txt", at=t + timedelta(seconds=i)))
                for i, c in enumerate(conns)
            )
        )
        await asyncio.gather(*(c.sync() for c in conns))
    finally:
        for c in conns:
            await c.close()
    rows = await stored(db, ctx["dep"])
    assert [(r["status"], r["flag"]) for r in rows] == [("flagged", "fix.contested")] * 3


async def test_an_unpaired_watch_is_no_longer_heard(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    t = now_s() - timedelta(seconds=100)
    await conn.send(from_file("ud_gps.txt", at=t))
    await conn.sync()
    assert len(await stored(db, ctx["dep"])) == 1
    r = await client.delete(
        f"/api/v1/watches/{ctx['watch_id']}", headers=bearer(ctx["guardians"][1]["token"])
    )
    assert r.status_code == 204, r.text
    # on the same connection: its keep-alive is answered, nothing else is taken
    await conn.send(from_file("ud_gps.txt", at=t + timedelta(seconds=50)))
    await conn.sync()
    await conn.send(from_file("al_sos.txt"))
    await conn.silent()
    assert len(await stored(db, ctx["dep"])) == 1
    assert await alerts(db, ctx["dep"]) == []
    for g in ctx["guardians"]:
        assert not [n for n in await inbox(client, g) if n["category"] == "sos"]


# --- the listener started by the app, and idle connections --------------------------------------


@pytest.mark.parametrize(
    "settings_overrides",
    [{"watch_port": "free", "watch_idle_seconds": 10}],
    indirect=True,
)
async def test_the_app_listens_and_closes_idle_connections(
    app: Any, settings_overrides: dict[str, Any]
) -> None:
    port = app.state.watch_port
    assert port == settings_overrides["watch_port"]
    c = await Conn.open(port)
    try:
        assert await c.ask(frame("LK")) == reply("LK")
        started = time.monotonic()
        # nothing more is sent: the server hangs up after watch_idle_seconds
        got = await asyncio.wait_for(c.reader.read(1), 10 + WAIT)
        waited = time.monotonic() - started
        assert got == b""
        assert 9 <= waited <= 10 + WAIT
    finally:
        await c.close()


async def test_the_listener_is_off_by_default(app: Any) -> None:
    assert getattr(app.state, "watch_port", None) is None
