"""The watch port held at its edge: connections per peer address and per watch
id are limited, one connection speaks for one id, positions sent while two
connections speak for the same id are kept flagged and off the family map,
and an allow-list of networks (``KARES_WATCH_ALLOW``) closes everyone else.
Every burst is real: many TCP connections to the real listener on 127.0.0.1
at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from kares.config import Settings
from kares.protocols.watch.server import WatchServer
from tests.conftest import bearer
from tests.support import watch as ws
from tests.support.watch import (
    WAIT,
    WID,
    Conn,
    frame,
    from_file,
    household,
    now_s,
    reply,
)
from tests.test_location_ingest import last_of, stored

server, settings_overrides = ws.server, ws.settings_overrides  # fixtures

LK = reply("LK")


async def answered(c: Conn, wid: str = WID) -> bool:
    """Whether the connection's keep-alive is answered (False: the server closed it)."""
    try:
        return await c.ask(frame("LK", wid)) == reply("LK", wid)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False


async def open_many(srv: WatchServer, n: int) -> list[Conn]:
    return list(await asyncio.gather(*(Conn.open(srv.port) for _ in range(n))))  # type: ignore[attr-defined]


async def close_all(conns: list[Conn]) -> None:
    await asyncio.gather(*(c.close() for c in conns))


async def until(check: Any) -> None:
    """Wait (bounded) until ``check()`` holds: the server sees a close a moment later."""
    for _ in range(int(WAIT / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server never saw it")


@pytest.mark.parametrize("settings_overrides", [{"watch_max_per_peer": 3}], indirect=True)
async def test_connections_per_peer_address_are_limited(
    app: Any, server: WatchServer, settings_overrides: dict[str, Any]
) -> None:
    conns = await open_many(server, 6)
    try:
        # a different id on each, so only the peer's limit applies
        got = await asyncio.gather(*(answered(c, f"77000000{i:02d}") for i, c in enumerate(conns)))
        assert sorted(got) == [False] * 3 + [True] * 3
        assert server.refused == 3
    finally:
        await close_all(conns)
    # the slots come back once the connections are gone
    await until(lambda: not server._per_peer)
    again = await open_many(server, 3)
    try:
        assert (
            await asyncio.gather(*(answered(c, f"77000001{i}") for i, c in enumerate(again)))
            == [True] * 3
        )
    finally:
        await close_all(again)


async def test_connections_per_watch_id_are_limited_and_speak_for_one_id(
    app: Any, server: WatchServer
) -> None:
    conns = await open_many(server, 5)
    try:
        got = await asyncio.gather(*(answered(c) for c in conns))  # all for one id, at once
        assert sorted(got) == [False] * 3 + [True] * 2  # watch_max_per_id: 2
        assert server.connections_of(WID) == 2
        speaking = [c for c, ok in zip(conns, got, strict=True) if ok]
        # a connection speaks for the id of its first frame only
        await speaking[0].send(frame("LK", "7700000099"))
        await speaking[0].silent()
        assert await answered(speaking[0])
    finally:
        await close_all(conns)
    await until(lambda: server.connections_of(WID) == 0)
    c = await Conn.open(server.port)  # type: ignore[attr-defined]
    try:
        assert await answered(c)
    finally:
        await c.close()


async def test_positions_while_two_connections_speak_for_one_watch_are_flagged(
    client: httpx.AsyncClient, sms: Any, db: Any, server: WatchServer
) -> None:
    ctx = await household(client, sms)
    watch, copy = await open_many(server, 2)
    t = now_s() - timedelta(minutes=5)
    try:
        await asyncio.gather(watch.sync(), copy.sync())
        assert server.connections_of(WID) == 2
        # the copy plants a point far away, the watch reports where it is: neither is believed
        planted = from_file("ud_gps.txt", at=t).replace(b"31.230416", b"39.908722")
        await asyncio.gather(copy.send(planted), watch.send(from_file("ud_lte.txt", at=t)))
        await asyncio.gather(watch.sync(), copy.sync())
        rows = await stored(db, ctx["dep"])
        assert [(r["status"], r["flag"]) for r in rows] == [("flagged", "fix.contested")] * 2
        assert await last_of(db, ctx["dep"]) is None
        r = await client.get(
            f"/api/v1/families/{ctx['family_id']}/map",
            headers=bearer(ctx["guardians"][0]["token"]),
        )
        me = next(m for m in r.json()["members"] if m["account_id"] == ctx["dep"])
        assert me["position"] is None
    finally:
        await copy.close()
    # the copy is gone: the watch is believed again
    try:
        await until(lambda: server.connections_of(WID) == 1)
        await watch.send(from_file("ud_gps.txt", at=t + timedelta(seconds=60)))
        await watch.sync()
    finally:
        await watch.close()
    rows = await stored(db, ctx["dep"])
    assert [r["status"] for r in rows] == ["flagged", "flagged", "ok"]
    last = await last_of(db, ctx["dep"])
    assert last is not None and (last["lat"], last["lon"]) == (31.230416, 121.473701)


@pytest.mark.parametrize(
    ("settings_overrides", "served"),
    [
        ({"watch_allow": ["10.0.0.0/8", "192.168.0.0/16"]}, False),
        ({"watch_allow": ["10.0.0.0/8", "127.0.0.0/8"]}, True),
        ({"watch_allow": ["::1/128", "127.0.0.1/32"]}, True),
    ],
    indirect=["settings_overrides"],
)
async def test_only_allowed_networks_are_served(
    app: Any, server: WatchServer, settings_overrides: dict[str, Any], served: bool
) -> None:
    c = await Conn.open(server.port)  # type: ignore[attr-defined]
    try:
        assert await answered(c) is served
        assert server.refused == (0 if served else 1)
    finally:
        await c.close()


@pytest.mark.db_agnostic
def test_the_allow_list_must_be_networks_and_idle_connections_go_after_two_minutes() -> None:
    assert Settings(watch_allow="10.0.0.0/8, 2001:db8::/32").watch_allow == [  # type: ignore[arg-type]
        "10.0.0.0/8",
        "2001:db8::/32",
    ]
    with pytest.raises(ValidationError, match="not a network"):
        Settings(watch_allow="10.0.0.0/8,not-a-net")  # type: ignore[arg-type]
    assert Settings().watch_idle_seconds == 120
    assert Settings().watch_alarm_max_age_seconds == 600
