"""Matrix sync across real ``kares serve`` processes (issue 14, "Done means"): two
processes on one database with Redis between them, members syncing with
matrix-nio through both, one process killed and started again in the middle of
the conversation. Every message whose PUT was answered 200 is received exactly
once, in order, by every member over sync.

The servers are real processes on the tier's database (tests/support/live.py);
Redis is a real ``redis-server`` (tests/support/redisserver.py), never a fake.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
from nio import AsyncClient, AsyncClientConfig, LoginResponse, RoomMessageText, SyncResponse

from tests.support.fakes import FakeSmsGateway
from tests.support.live import live_server
from tests.support.redisserver import RedisServer, redis_server  # noqa: F401 - fixture
from tests.test_ws_processes import env_for

CS = "/_matrix/client/v3"
WAIT = 60.0  # a bound on what must come (never a timing assertion)
ROUNDS = 3  # of messages: before the kill, while the process is down, after its restart
PER_ROUND = 6


class Member:
    """A member's nio client syncing through one of the processes (``urls[via]``,
    which changes when that process is started again), and what it received."""

    def __init__(self, demo: dict[str, Any], urls: dict[str, str], via: str) -> None:
        self.demo, self.urls, self.via = demo, urls, via
        # no retries of its own: a process that is down is this test's to handle
        config = AsyncClientConfig(max_timeouts=0)
        self.client = AsyncClient(urls[via], demo["matrix_user"], config=config)
        self.received: list[tuple[int, str]] = []  # (position, body), as they came
        self.errors = 0

    async def login(self) -> str:
        r = await self.client.login(self.demo["password"], device_name=f"nio via {self.via}")
        assert isinstance(r, LoginResponse), r
        first = await self.client.sync(timeout=0)
        assert isinstance(first, SyncResponse), first
        rooms = list(first.rooms.join)
        assert len(rooms) == 1, rooms
        return rooms[0]

    async def receive(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.client.homeserver = self.urls[self.via]  # the process, wherever it runs now
            try:
                r = await asyncio.wait_for(self.client.sync(timeout=2_000), 30)
            except (TimeoutError, OSError, Exception):  # the process is down: try again
                self.errors += 1
                await asyncio.sleep(0.2)
                continue
            if not isinstance(r, SyncResponse):
                self.errors += 1
                await asyncio.sleep(0.2)
                continue
            for info in r.rooms.join.values():
                for ev in info.timeline.events:
                    if isinstance(ev, RoomMessageText) and ev.body.startswith("proc-"):
                        position = int(ev.event_id[1:].split(":")[0])
                        self.received.append((position, ev.body))


async def put(url: str, token: str, room: str, txn: str, body: str) -> str | None:
    """One send; its event id when answered 200, None when it was not."""
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            r = await http.put(
                f"{url}{CS}/rooms/{room}/send/m.room.message/{txn}",
                json={"msgtype": "m.text", "body": body},
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.TransportError:
        return None
    return str(r.json()["event_id"]) if r.status_code == 200 else None


async def test_every_acknowledged_message_arrives_once_in_order_across_a_restart(
    tmp_path: Path,
    db_url: str,
    sms: FakeSmsGateway,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    env = env_for(tmp_path, db_url, sms, KARES_REDIS_URL=redis_server.url)
    with contextlib.ExitStack() as stack:
        b = await asyncio.to_thread(stack.enter_context, live_server(env, tmp_path))
        a_stack = contextlib.ExitStack()
        a = await asyncio.to_thread(
            a_stack.enter_context, live_server(env, tmp_path, seeded=b.demo)
        )
        stack.callback(a_stack.close)
        urls = {"a": a.url, "b": b.url}
        members = [
            Member(m, urls, via)
            for m, via in zip(b.demo[:3], ("a", "b", "a"), strict=True)
            if m.get("password")
        ]
        assert len(members) == 3
        rooms = {await m.login() for m in members}
        assert len(rooms) == 1
        room = rooms.pop()
        stop = asyncio.Event()
        receivers = [asyncio.create_task(m.receive(stop)) for m in members]
        acked: list[tuple[str, str]] = []  # (event id, body), in the order sent
        n = 0

        async def send_round() -> None:
            nonlocal n
            for _ in range(PER_ROUND):
                n += 1
                sender = members[n % 3]
                body, txn = f"proc-{n}", f"txn-{n}"
                token = sender.client.access_token
                first = "a" if n % 2 else "b"
                got = await put(urls[first], token, room, txn, body)
                if got is None:  # that process is down: the same transaction through the other
                    got = await put(urls["b" if first == "a" else "a"], token, room, txn, body)
                assert got is not None, f"{body} was not acknowledged by either process"
                acked.append((got, body))
                await asyncio.sleep(0.05)

        try:
            await send_round()
            # kill A in the middle of the conversation (no goodbye), and keep talking
            a.proc.kill()
            await asyncio.to_thread(a.proc.wait)
            await send_round()
            # A again, on a new port; its members' syncs continue from their tokens
            a_stack.close()
            a2 = await asyncio.to_thread(
                a_stack.enter_context, live_server(env, tmp_path, seeded=b.demo)
            )
            urls["a"] = a2.url
            await send_round()
            want = [body for _, body in acked]
            for m in members:
                for _ in range(int(WAIT / 0.1)):
                    if len(m.received) >= len(want):
                        break
                    await asyncio.sleep(0.1)
        finally:
            stop.set()
            for t in receivers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(t, 40)
            for m in members:
                await m.client.close()
        assert len(acked) == ROUNDS * PER_ROUND
        positions = [int(e[1:].split(":")[0]) for e, _ in acked]
        assert positions == sorted(positions)
        for m in members:
            # exactly once, in order: what every member received is what was acknowledged
            assert [body for _, body in m.received] == want, (m.via, m.received)
            assert [p for p, _ in m.received] == positions
        assert b.alive(), b.log()[-3000:]
        assert a2.alive(), a2.log()[-3000:]
        assert any(m.errors for m in members if m.via == "a")  # A really was away
