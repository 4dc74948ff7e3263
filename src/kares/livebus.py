"""The live hub's notices between processes, through Redis (``KARES_REDIS_URL``).

Several ``kares serve`` processes share one database; a change committed in
one must wake the sockets held by the others. :class:`RedisBridge` is the
hub's :attr:`~kares.live.Hub.bridge`: what a process delivers is published on
one Redis channel, and every other process hands it to its own subscriptions.
A message carries only the notice (kind, about, position; an ephemeral typing
event also carries its audience and what it says), never what changed: the
receiving stream re-reads that from the database under its viewer's rights.

Redis only wakes processes. A notice lost on the way (Redis restarting, a
network blip) loses nothing: when the subscription comes back, and on a
periodic tick, every local stream is woken to catch up from its last
position (``Hub.wake_all``); a client that reconnects resumes from its token.
Publishing never blocks or fails the action that committed: notices queue
in memory (bounded; the oldest are dropped, the tick covers them) and a
background task sends them.

Presence (which devices hold a socket, for "connected devices get no push")
is kept in one Redis hash per account, field ``device@process``, value the
moment it expires; each process refreshes its own entries well before then,
so a process that dies stops counting within ``PRESENCE_TTL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kares import live

log = logging.getLogger("kares.livebus")

CHANNEL = "kares:live"
PRESENCE_KEY = "kares:presence:"
PRESENCE_TTL = 45.0
PRESENCE_REFRESH = 15.0
QUEUE_SIZE = 10_000
SEND_BATCH = 500  # the most queued items one send takes
SUBSCRIBE_WAIT_SECONDS = 5.0  # at start, how long to wait for the subscription
RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)


async def attach(redis_url: str, catchup_seconds: float) -> RedisBridge | None:
    """With a Redis URL, a started bridge made the hub's (``kares serve`` and
    ``kares worker`` call this at start); None without one."""
    if not redis_url:
        return None
    bridge = await RedisBridge(redis_url, catchup_seconds=catchup_seconds).start()
    live.hub.bridge = bridge
    # ready once subscribed: a socket this process accepts before then would not
    # hear what the others publish meanwhile (with Redis away, start anyway: the
    # streams catch up when the subscription comes)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
            await bridge.subscribed.wait()
    return bridge


async def detach(bridge: RedisBridge | None) -> None:
    """Stop a bridge :func:`attach` made (what it still holds is sent first, briefly)."""
    if bridge is None:
        return
    if live.hub.bridge is bridge:
        live.hub.bridge = None
    await bridge.stop()


class RedisBridge:
    def __init__(self, url: str, *, catchup_seconds: float = 60.0) -> None:
        self.url = url
        self.process = uuid.uuid4().hex[:16]
        self.catchup_seconds = catchup_seconds
        self.client: aioredis.Redis = aioredis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        self._out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()
        self.received = 0  # notices handed in from other processes
        self.messages = 0  # messages read from the channel (a batch is one)

    # --- the hub's side (sync: called from after-commit callbacks) ------------------

    def publish(self, notice: live.Notice, to: Sequence[str] | None) -> None:
        msg: dict[str, Any] = {"o": self.process, "k": notice.kind, "a": notice.about}
        msg["s"] = notice.seq
        if to is not None:
            msg["t"] = list(to)
        if notice.data is not None:
            msg["d"] = dict(notice.data)
        self._queue("pub", json.dumps(msg, separators=(",", ":")))

    def arrive(self, account_id: str, device_id: str) -> None:
        self._queue("here", (account_id, device_id))

    def leave(self, account_id: str, device_id: str) -> None:
        self._queue("gone", (account_id, device_id))

    def _queue(self, op: str, arg: Any) -> None:
        try:
            self._out.put_nowait((op, arg))
        except asyncio.QueueFull:  # Redis away for long: the oldest goes (the tick covers it)
            with contextlib.suppress(asyncio.QueueEmpty):
                self._out.get_nowait()
                self._out.task_done()
            self._out.put_nowait((op, arg))

    async def devices(self, account_ids: Sequence[str]) -> dict[str, set[str]]:
        if not account_ids:
            return {}
        async with self.client.pipeline(transaction=False) as p:
            for a in account_ids:
                p.hgetall(PRESENCE_KEY + a)
            rows = await p.execute()
        now = time.time()
        out: dict[str, set[str]] = {}
        for a, row in zip(account_ids, rows, strict=True):
            for fieldname, until in (row or {}).items():
                if float(until) > now:
                    device = fieldname.decode().rpartition("@")[0]
                    out.setdefault(a, set()).add(device)
        return out

    # --- the background tasks ----------------------------------------------------

    async def start(self) -> RedisBridge:
        self._tasks = [
            asyncio.create_task(self._send(), name="livebus-send"),
            asyncio.create_task(self._listen(), name="livebus-listen"),
            asyncio.create_task(self._refresh(), name="livebus-presence"),
        ]
        return self

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):  # what is queued goes out, if Redis is there
            async with asyncio.timeout(2):
                await self._out.join()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await self._forget_all()
        await self.client.aclose()

    async def _send(self) -> None:
        """Send what is queued: everything that queued while the last send was on
        its way goes as one (the notices as one message, a JSON array), so a busy
        process pays a round trip to Redis per batch, not per notice, and every
        other process reads and parses one message per batch."""
        failing = False
        while True:
            batch = [await self._out.get()]
            while len(batch) < SEND_BATCH:
                try:
                    batch.append(self._out.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                notices = [arg for op, arg in batch if op == "pub"]
                if notices:
                    one = notices[0] if len(notices) == 1 else "[" + ",".join(notices) + "]"
                    await self.client.publish(CHANNEL, one)
                here = [arg for op, arg in batch if op == "here"]
                if here:
                    await self._here(here)
                for op, arg in batch:
                    if op != "gone":
                        continue
                    account_id, device_id = arg
                    if device_id not in live.hub.devices(account_id):
                        await self.client.hdel(PRESENCE_KEY + account_id, self._field(device_id))
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:  # once per outage
                    log.warning("redis unreachable, notices wait for the catch-up: %s", exc)
                failing = True
            finally:
                for _ in batch:
                    self._out.task_done()

    def _field(self, device_id: str) -> str:
        return f"{device_id}@{self.process}"

    async def _here(self, pairs: Sequence[tuple[str, str]]) -> None:
        until = str(time.time() + PRESENCE_TTL)
        async with self.client.pipeline(transaction=False) as p:
            for account_id, device_id in pairs:
                p.hset(PRESENCE_KEY + account_id, self._field(device_id), until)
                p.expire(PRESENCE_KEY + account_id, int(PRESENCE_TTL) * 2)
            await p.execute()

    async def _forget_all(self) -> None:
        pairs = live.hub.present()
        if pairs:
            async with self.client.pipeline(transaction=False) as p:
                for account_id, device_id in pairs:
                    p.hdel(PRESENCE_KEY + account_id, self._field(device_id))
                await p.execute()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_REFRESH)
            pairs = live.hub.present()
            if pairs:
                with contextlib.suppress(RedisError, OSError):
                    await self._here(pairs)

    async def _listen(self) -> None:
        """Hand in what other processes publish; after the subscription was lost
        (or on the periodic tick), wake every stream to catch up."""
        attempt = 0
        lost = False
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(CHANNEL)
                    self.subscribed.set()
                    attempt = 0
                    if lost:
                        # what was published while there was no subscription (at
                        # start too, when Redis came late) is read by catching up
                        log.info("redis subscription back: streams catch up")
                        live.hub.wake_all()
                    lost = False
                    last_tick = time.monotonic()
                    while True:
                        msg = await ps.get_message(timeout=1.0)
                        if msg is not None and msg.get("type") == "message":
                            self._hand_in(msg["data"])
                        if time.monotonic() - last_tick >= self.catchup_seconds:
                            last_tick = time.monotonic()
                            live.hub.wake_all()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                lost = True
                self.subscribed.clear()
                if attempt == 0:
                    log.warning("redis subscription lost, retrying: %s", exc)
                await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1

    def _hand_in(self, raw: bytes | str) -> None:
        """One message: a notice, or a batch of them (a JSON array)."""
        self.messages += 1
        try:
            got = json.loads(raw)
        except ValueError:
            log.warning("a notice from redis that is not one was ignored")
            return
        for msg in got if isinstance(got, list) else [got]:
            self._one(msg)

    def _one(self, msg: Any) -> None:
        try:
            if msg.get("o") == self.process:
                return
            data = msg.get("d")
            notice = live.Notice(int(msg["s"]), str(msg["k"]), str(msg["a"]), data)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("a notice from redis that is not one was ignored")
            return
        self.received += 1
        to = msg.get("t")
        if isinstance(to, list):
            live.hub.hand_to([str(a) for a in to], notice)
        else:
            live.hub.hand_in(notice)
