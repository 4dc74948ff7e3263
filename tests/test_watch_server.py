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
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from kares import clock
from kares.domains import metadata
from kares.geo.resolver import LocalResolver
from kares.protocols.watch import frames as wp
from kares.protocols.watch.server import WatchServer
from tests.conftest import POLICY_VERSION, bearer, count_rows, sign_up, snapshot
from tests.test_families import join, set_role
from tests.test_location_ingest import grant_precise, last_of, stored

DATA = Path(__file__).parent / "data"
WATCH_DATA = DATA / "watch"
WID = "8800000015"
GUARDIAN = "+8613900000601"
SECOND_GUARDIAN = "+8613900000602"
WAIT = 10.0  # seconds: the longest any single step may take
QUIET = 0.5  # seconds: how long "no reply" is waited for


# --- frames ----------------------------------------------------------------------------------


def now_s() -> datetime:
    """The service's "now", to the second (frames carry whole seconds)."""
    return clock.utcnow().replace(microsecond=0)


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def frame(content: str, wid: str = WID, vendor: str = "3G") -> bytes:
    return wp.encode(vendor, wid, content)


def from_file(name: str, *, at: datetime | None = None, wid: str = WID) -> bytes:
    """A captured frame from tests/data/watch with our watch's id, its length
    recomputed and, for a position, its date and time set to ``at`` (now)."""
    raw = (WATCH_DATA / name).read_bytes().strip()
    frames = wp.FrameReader().feed(raw)
    assert len(frames) == 1, name
    f = frames[0]
    parts = f.content.split(b",")
    if isinstance(wp.parse(f), wp.Position):
        t = at or now_s()
        parts[1] = t.strftime("%d%m%y").encode()
        parts[2] = t.strftime("%H%M%S").encode()
    return wp.encode(f.vendor, wid, b",".join(parts))


def position_of(data: bytes) -> wp.Position:
    (f,) = wp.FrameReader().feed(data)
    msg = wp.parse(f)
    assert isinstance(msg, wp.Position)
    return msg


def reply(content: str, wid: str = WID) -> bytes:
    return wp.encode("3G", wid, content)


# --- a watch on a socket ---------------------------------------------------------------------


class Conn:
    """One watch's TCP connection, with bounded waits everywhere."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), WAIT)

    async def reply(self) -> bytes:
        """The next frame the server sends."""
        return await asyncio.wait_for(self.reader.readuntil(b"]"), WAIT)

    async def ask(self, data: bytes) -> bytes:
        await self.send(data)
        return await self.reply()

    async def silent(self, wait: float = QUIET) -> None:
        """Nothing arrives for a while, and the connection stays open."""
        with pytest.raises(TimeoutError):
            got = await asyncio.wait_for(self.reader.read(1), wait)
            pytest.fail(f"unexpected {got!r} from the server")

    async def sync(self, wid: str = WID) -> None:
        """Wait until everything sent before was handled (LK is answered in order)."""
        assert await self.ask(frame("LK", wid)) == reply("LK", wid)

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)
        except (ConnectionError, TimeoutError):
            pass


@pytest.fixture
async def server(app: Any) -> AsyncIterator[WatchServer]:
    srv = WatchServer(app.state.runtime)
    srv.port = await srv.start("127.0.0.1", 0)  # type: ignore[attr-defined]
    yield srv
    await asyncio.wait_for(srv.stop(), WAIT)


@pytest.fixture
async def conn(server: WatchServer) -> AsyncIterator[Conn]:
    c = await Conn.open(server.port)  # type: ignore[attr-defined]
    yield c
    await c.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """``indirect`` parameters: settings, and ``geo``: "cells" / "cells+wifi"
    for resolver tables written to tmp_path."""
    over = dict(getattr(request, "param", {}))
    if over.get("watch_port") == "free":
        over["watch_port"] = free_port()
    geo = over.pop("geo", None)
    if geo is not None:
        cells = tmp_path / "cells.csv"
        cells.write_bytes((DATA / "opencellid-sample.csv").read_bytes())
        over["geo_cells_csv"] = cells
        if "wifi" in geo:
            wifi = tmp_path / "wifi.csv"
            wifi.write_text(
                "mac,lat,lon,range_m\n"
                "3c:46:d8:11:02:aa,31.2305,121.4738,40\n"
                "50:bd:5f:2a:5e:21,31.2307,121.4735,60\n"
            )
            over["geo_wifi_csv"] = wifi
    return over


# --- a family with a dependant wearing the watch ----------------------------------------------


async def household(
    client: httpx.AsyncClient,
    sms: Any,
    *,
    precise: bool = True,
    wid: str = WID,
    phones: tuple[str, str] = (GUARDIAN, SECOND_GUARDIAN),
) -> dict[str, Any]:
    """An owner and a second guardian (``phones``), a dependant ("Grandma Li") with
    the watch ``wid`` introduced and paired; precise location granted by the
    guardian for the dependant (unless told), and by both guardians."""
    g = await sign_up(client, sms, phones[0])
    g2 = await sign_up(client, sms, phones[1])
    for who in (g, g2):
        await grant_precise(client, who)
    h = bearer(g["token"])
    fam = (await client.post("/api/v1/families", json={"name": "Li family"}, headers=h)).json()
    await join(client, g, fam["id"], g2)
    assert (await set_role(client, g, fam["id"], g2, "guardian")).status_code == 200
    r = await client.post(
        f"/api/v1/families/{fam['id']}/dependants",
        json={"name": "Grandma Li", "age_bracket": "adult"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    dep = r.json()["member"]["account_id"]
    if precise:
        r = await client.post(
            f"/api/v1/guardian/wards/{dep}/consents",
            json={
                "subject": "category:location.precise",
                "action": "grant",
                "policy_version": POLICY_VERSION,
            },
            headers=h,
        )
        assert r.status_code == 201, r.text
    w = await client.post("/api/v1/watches/hello", json={"imei": wid, "model": "Kid W1"})
    assert w.status_code == 200, w.text
    r = await client.post(
        "/api/v1/watches/pair",
        json={"text": w.json()["pairing_text"], "family_id": fam["id"], "dependant_id": dep},
        headers=h,
    )
    assert r.status_code == 201, r.text
    return {
        "guardians": [g, g2],
        "family_id": fam["id"],
        "dep": dep,
        "watch_id": r.json()["id"],
        "watch_token": w.json()["token"],
    }


async def inbox(client: httpx.AsyncClient, who: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/notifications", headers=bearer(who["token"]))
    assert r.status_code == 200, r.text
    return list(r.json())


async def alerts(db: Any, account_id: str) -> list[dict[str, Any]]:
    async with db.engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT id, account_id, lat, lon, precision, battery, note, status "
                "FROM sos_alerts WHERE account_id = :a ORDER BY created_at"
            ),
            {"a": account_id},
        )
        return [dict(r._mapping) for r in rows]


async def watch_device(client: httpx.AsyncClient, ctx: dict[str, Any]) -> dict[str, Any]:
    r = await client.get("/api/v1/devices", headers=bearer(ctx["watch_token"]))
    assert r.status_code == 200, r.text
    return dict(next(d for d in r.json() if d["current"]))


async def state_but_last_seen(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the bookkeeping of when a watch or a
    session was last seen (a watch's frames move its ``last_seen_at``)."""
    skip = {"sessions": {"last_seen_at", "expires_at"}, "watches": {"last_seen_at"}}
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with db.engine.connect() as c:
        for t in metadata.sorted_tables:
            cols = [col for col in t.columns if col.name not in skip.get(t.name, set())]
            rows = (await c.execute(select(*cols))).all()
            out[t.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


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


async def test_health_readings_are_answered_and_not_stored(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
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
