"""Helpers for the watch-port tests (tests/test_watch_*.py) and the live probes
(tests/support/probes.py): frames built and replayed from tests/data/watch, one
watch's TCP connection with bounded waits, the listener and a connection as
fixtures, and a family with a dependant wearing a paired watch."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kares import clock
from kares.domains import metadata
from kares.protocols.watch import frames as wp
from kares.protocols.watch.server import WatchServer
from tests.conftest import POLICY_VERSION, bearer, query, sign_up
from tests.test_families import join, set_role
from tests.test_location_ingest import grant_precise

DATA = Path(__file__).parent.parent / "data"
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
    w, r, dep = await worn_watch(client, h, fam["id"], "Grandma Li", wid, precise=precise)
    return {
        "guardians": [g, g2],
        "family_id": fam["id"],
        "dep": dep,
        "watch_id": r.json()["id"],
        "watch_token": w.json()["token"],
    }


async def worn_watch(
    client: httpx.AsyncClient,
    h: dict[str, str],
    family_id: str,
    name: str,
    wid: str,
    *,
    precise: bool = True,
) -> tuple[httpx.Response, httpx.Response, str]:
    """A dependant ``name`` added to the family by the guardian whose headers are
    ``h``, precise location granted for them (unless told), and the watch ``wid``
    introduced and paired to them: the hello and pair answers, and the
    dependant's account id."""
    r = await client.post(
        f"/api/v1/families/{family_id}/dependants",
        json={"name": name, "age_bracket": "adult"},
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
        json={"text": w.json()["pairing_text"], "family_id": family_id, "dependant_id": dep},
        headers=h,
    )
    assert r.status_code == 201, r.text
    return w, r, dep


async def inbox(client: httpx.AsyncClient, who: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/notifications", headers=bearer(who["token"]))
    assert r.status_code == 200, r.text
    return list(r.json())


async def alerts(db: Any, account_id: str) -> list[dict[str, Any]]:
    return await query(
        db,
        "SELECT id, account_id, lat, lon, precision, battery, note, status "
        "FROM sos_alerts WHERE account_id = :a ORDER BY created_at",
        a=account_id,
    )


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
