"""The WebSocket across real ``kares serve`` processes: a restart loses nothing,
and with Redis an event committed through process A reaches a socket on
process B, also after Redis was away for a moment.

The servers are real processes on the tier's database (tests/support/live.py);
Redis is a real ``redis-server`` (tests/support/redisserver.py), never a fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kares.db import Database
from kares.notify import service as notify
from tests.support.fakes import FakeSmsGateway
from tests.support.live import Live, kares_env, live_server
from tests.support.redisserver import RedisServer, redis_server  # noqa: F401 - fixture
from tests.test_location_clients import basic, ot_location
from tests.test_ws import frame, hello, opened


def env_for(tmp_path: Path, db_url: str, sms: FakeSmsGateway, **extra: str) -> dict[str, str]:
    return kares_env(
        tmp_path / "var",
        db_url,
        KARES_SMS_SENDER="http",
        KARES_SMS_HTTP_URL=sms.base + "/send",
        KARES_SMS_HTTP_TOKEN="sms-secret",
        **extra,
    )


def ws_of(live: Live) -> str:
    return live.url.replace("http://", "ws://") + "/api/v1/ws"


def database_of(tmp_path: Path, db_url: str) -> Database:
    """The database the servers use (on SQLite: the file under their var dir)."""
    if db_url.startswith("postgresql"):
        return Database(db_url)
    return Database(f"sqlite+aiosqlite:///{(tmp_path / 'var' / 'kares.db').as_posix()}")


async def test_a_restart_loses_and_repeats_nothing_for_a_resuming_socket(
    tmp_path: Path, db_url: str, sms: FakeSmsGateway
) -> None:
    env = env_for(tmp_path, db_url, sms)
    with live_server(env, tmp_path) as first:
        me = first.demo[0]
        async with opened(ws_of(first), me["token"]) as c:
            greeting, _ = await hello(c)
            me_id, token = greeting["account_id"], greeting["token"]
    db = database_of(tmp_path, db_url)
    try:
        async with db.sessions() as s:  # committed while no server runs
            for title in ("one", "two", "three"):
                await notify.add(s, account_id=me_id, category="messages", title=title, body="-")
            await s.commit()
    finally:
        await db.dispose()
    with live_server(env, tmp_path) as second:
        me = second.demo[0]  # the demo signs in again: a new token, the same account
        async with opened(ws_of(second), me["token"], since=token) as c:
            _, missed = await hello(c)
            assert [(f["source"], f["data"]["title"]) for f in missed] == [
                ("inbox", "one"),
                ("inbox", "two"),
                ("inbox", "three"),
            ]
            assert [f["position"] for f in missed] == sorted({f["position"] for f in missed})
            last = missed[-1]["token"]
        async with opened(ws_of(second), me["token"], since=last) as c:
            _, missed = await hello(c)
            assert missed == []
        assert second.alive(), second.log()[-3000:]


def upload(live: Live, member: dict[str, Any], tst: int, lat: float) -> None:
    t = member["tracker"]
    r = httpx.post(
        f"{live.url}/owntracks",
        json=ot_location(tst, lat=lat),
        headers=basic(t["username"], t["secret"]),
        timeout=30,
    )
    assert r.status_code == 200, r.text


async def next_location(c: Any, about: str) -> dict[str, Any]:
    while True:
        f = await frame(c)
        if f["type"] == "location" and f["data"]["account_id"] == about:
            return f


async def test_with_redis_an_event_through_process_a_reaches_a_socket_on_process_b(
    tmp_path: Path,
    db_url: str,
    sms: FakeSmsGateway,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # the periodic catch-up is an hour away: what comes back after Redis does is
    # the bridge's own catch-up when its subscription returns
    env = env_for(
        tmp_path, db_url, sms, KARES_REDIS_URL=redis_server.url, KARES_LIVE_CATCHUP_SECONDS="3600"
    )
    with (
        live_server(env, tmp_path) as a,
        live_server(env, tmp_path, seeded=a.demo) as b,
    ):
        watcher, mover = b.demo[0], a.demo[1]
        async with opened(ws_of(a), mover["token"]) as c:
            mover_id = (await hello(c))[0]["account_id"]
        now = int(time.time())
        async with opened(ws_of(b), watcher["token"]) as c:
            await hello(c)
            upload(a, mover, now - 30, 31.2304)
            first = await next_location(c, mover_id)
            assert first["source"] == "location"
            assert first["data"]["position"]["lat"] == 31.2304
            # Redis away for a moment: the notice of this upload is lost on the way...
            redis_server.stop()
            upload(a, mover, now - 20, 31.2404)
            redis_server.start()
            # ...and nothing is: B's streams catch up once its subscription is back
            second = await next_location(c, mover_id)
            assert second["data"]["position"]["lat"] == 31.2404
            assert second["position"] > first["position"]
            token = second["token"]
        # resuming on the other process from that token: nothing twice
        async with opened(ws_of(a), watcher["token"], since=token) as c:
            _, missed = await hello(c)
            assert missed == []
            upload(a, mover, now - 10, 31.2504)
            third = await next_location(c, mover_id)
            assert third["data"]["position"]["lat"] == 31.2504
        for p in (a, b):
            assert p.alive(), p.log()[-3000:]
        assert "redis subscription back" in b.log()
        assert json.dumps(third)  # plain JSON all the way


async def test_kares_serve_with_workers_answers_on_one_port_and_every_socket_hears_the_moves(
    tmp_path: Path,
    db_url: str,
    sms: FakeSmsGateway,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """``kares serve --workers 2``: two processes take turns on one port, so a
    watcher's sockets and a mover's posts land on either; each socket hears the
    moves in order, up to the last, whichever process stored them."""
    env = env_for(tmp_path, db_url, sms, KARES_REDIS_URL=redis_server.url)
    with live_server(env, tmp_path, workers=2) as srv:
        for _ in range(600):  # the first process may answer before the second is up
            pids = set(re.findall(r"Started server process \[(\d+)\]", srv.log()))
            if len(pids) == 2 and srv.log().count("Application startup complete") == 2:
                break
            await asyncio.sleep(0.05)
        assert len(pids) == 2, srv.log()[-3000:]
        watcher, mover = srv.demo[0], srv.demo[1]
        async with opened(ws_of(srv), mover["token"]) as c:
            mover_id = (await hello(c))[0]["account_id"]
        now = int(time.time())
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(opened(ws_of(srv), watcher["token"]))
                       for _ in range(4)]  # fmt: skip
            for c in sockets:
                await hello(c)
            lats = [31.2300 + k / 1000 for k in range(6)]
            for k, lat in enumerate(lats):  # each post on a new connection
                await asyncio.to_thread(upload, srv, mover, now - 60 + 10 * k, lat)
            for c in sockets:
                # a stream sends where the person is when it reads: moves that come
                # faster than it reads are folded into the newest, never reordered
                heard: list[float] = []
                while not heard or heard[-1] != lats[-1]:
                    heard.append((await next_location(c, mover_id))["data"]["position"]["lat"])
                assert heard == sorted(set(heard)) and set(heard) <= set(lats), heard
        log = srv.log()
        assert "uvicorn.access" not in log  # the app's own access log, once per request
        assert "Traceback" not in log, log[-3000:]


@pytest.mark.db_agnostic
async def test_a_process_is_ready_only_once_its_bridge_is_subscribed(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """What another process publishes right after this one started is heard:
    start-up (``livebus.attach``) returns once the subscription stands."""
    from kares import live, livebus

    before = live.hub.bridge
    bridge = await livebus.attach(redis_server.url, 3600)
    try:
        assert bridge is not None and bridge.subscribed.is_set()
    finally:
        live.hub.bridge = before
        if bridge is not None:
            await bridge.stop()


@pytest.mark.db_agnostic
async def test_notices_queued_together_cross_as_one_message_and_arrive_in_order(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """A burst of commits in one process: what queued while a send was on its
    way goes as one message, and the other process hands in every notice, in
    order; an item in a batch that is not a notice is skipped alone."""
    from kares import live
    from kares.livebus import RedisBridge

    one = await RedisBridge(redis_server.url).start()
    two = await RedisBridge(redis_server.url).start()
    sub = live.hub.subscribe("acct-w")
    try:
        await asyncio.wait_for(two.subscribed.wait(), 20)
        for seq in range(1, 201):  # queued in one go: sent in a few messages
            one.publish(live.Notice(seq, "location", "acct-w"), None)
        got = [(await asyncio.wait_for(sub.queue.get(), 20)).seq for _ in range(200)]
        assert got == list(range(1, 201))
        assert two.received == 200 and one.received == 0
        assert two.messages < 200  # batches: what queued during a send went with the next
        good = {"o": "elsewhere", "s": 201, "k": "location", "a": "acct-w"}
        two._hand_in(json.dumps([{"o": "elsewhere", "s": "x"}, good]))
        assert (await asyncio.wait_for(sub.queue.get(), 20)).seq == 201
    finally:
        live.hub.unsubscribe(sub)
        await one.stop()
        await two.stop()


@pytest.mark.db_agnostic
async def test_presence_and_ephemeral_events_cross_processes_through_redis(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Two bridges stand for two processes (each its own id): a device present
    through one is present for the other, until it leaves; a typing event one
    publishes reaches the sockets the other's hub holds."""
    from kares import live
    from kares.livebus import RedisBridge

    one = await RedisBridge(redis_server.url).start()
    two = await RedisBridge(redis_server.url).start()
    sub = live.hub.subscribe("acct-b", device_id="dev-b")
    try:
        await asyncio.wait_for(two.subscribed.wait(), 20)
        one.arrive("acct-a", "dev-a")
        for _ in range(1000):
            if await two.devices(["acct-a"]) == {"acct-a": {"dev-a"}}:
                break
            await asyncio.sleep(0.01)
        assert await two.devices(["acct-a", "acct-b"]) == {"acct-a": {"dev-a"}}
        one.leave("acct-a", "dev-a")
        for _ in range(1000):
            if await two.devices(["acct-a"]) == {}:
                break
            await asyncio.sleep(0.01)
        assert await two.devices(["acct-a"]) == {}
        data = {"conversation": "c1", "account_id": "acct-a", "typing": True}
        one.publish(live.Notice(0, "typing", "acct-a", data), ["acct-b"])
        got = await asyncio.wait_for(sub.queue.get(), 20)
        assert (got.kind, got.about, got.data) == ("typing", "acct-a", data)
        assert two.received == 1 and one.received == 0  # one never hands in its own
    finally:
        live.hub.unsubscribe(sub)
        await one.stop()
        await two.stop()
