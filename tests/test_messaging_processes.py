"""Issue 14, "Done means", over the WebSocket: kill the server in the middle of
a conversation, start it again, and every acknowledged message reaches every
member exactly once, in order.

A demo family of four chats through real ``kares serve`` processes on the
tier's database (tests/support/chat.py); every member holds a real
``/api/v1/ws`` socket and every member sends, each text with its own
transaction id, retrying a send whose answer was lost with the same id until
a server answers. Mid-conversation a server is killed with ``SIGKILL`` (no
graceful stop) and started again on the same port; the sockets reconnect with
the token of the last frame they processed. At the end, what was acknowledged,
what is stored and what every socket got must be one and the same sequence:
each message once, in the order of positions (``check_exactly_once``).

With Redis (a real ``redis-server``, tests/support/redisserver.py) two
processes share the database, members and senders spread over both: process
B is killed and comes back, or Redis itself is restarted while only process A
sends, so only the catch-up after Redis returns can tell B's sockets.

The periodic catch-up (``KARES_LIVE_CATCHUP_SECONDS``) is set an hour away:
nothing here is rescued by it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support.chat import (
    Sender,
    Server,
    SocketReader,
    check_exactly_once,
    history,
    seed,
)
from tests.support.fakes import FakeSmsGateway
from tests.support.redisserver import RedisServer, redis_server  # noqa: F401 - fixture
from tests.test_ws_processes import env_for

PER_SENDER = 20  # four senders: 80 messages a conversation
LOSE_EVERY = 7  # every 7th send of a member: its answer is lost, then it is retried
BOUND = 240.0  # seconds for a whole conversation, restarts included


class Chat:
    """A family's conversation in progress: its senders and readers, and how
    many sends have been acknowledged so far."""

    def __init__(self, family: dict[str, Any]) -> None:
        self.family = family
        self.conversation = str(family["id"])
        self.members: list[dict[str, Any]] = list(family["members"])
        self.senders: list[Sender] = []
        self.readers: list[SocketReader] = []
        self.target: int | None = None  # the readers stop at this position
        self.start = 0  # the last position before the conversation
        self.planned = 0  # how many sends the senders will make
        self._reading: list[asyncio.Task[None]] = []

    def acked(self) -> int:
        return sum(1 for s in self.senders for one in s.sent if one.acked)

    def high(self) -> int:
        return max((one.position or 0 for s in self.senders for one in s.sent), default=0)

    async def kill_mid_send(
        self, server: Server, after_acked: int, on_it: Sequence[SocketReader] | None = None
    ) -> None:
        """Once ``after_acked`` sends are acknowledged, ``SIGKILL`` the server
        while sends are out (most senders waiting for an answer: some are cut
        before their commit, some may be after it, their answer lost), then
        start it again on its port, and wait until the readers that were on it
        (``on_it``, every reader by default) have connected again."""
        await self.until_acked(after_acked)
        busy = min(3, len(self.senders))
        for _ in range(5000):  # a few seconds at most
            if sum(s.in_flight for s in self.senders) >= busy:
                break
            await asyncio.sleep(0.001)
        cut = list(self.readers if on_it is None else on_it)
        opened = [r.sockets for r in cut]
        server.kill()
        assert self.acked() < self.planned, "the kill came after the conversation"
        await server.astart()
        # each reader it cut comes back before anything else happens (else a
        # second kill could find one still reconnecting, and cut it only once)
        deadline = time.monotonic() + 60
        while late := [r.name for r, n in zip(cut, opened, strict=True) if r.sockets <= n]:
            assert time.monotonic() < deadline, f"never reconnected: {late}"
            await asyncio.sleep(0.01)

    async def open_sockets(self, where: Sequence[Callable[[], Sequence[str]]]) -> None:
        """A reader per member (member i goes to ``where[i]()``), each caught up."""
        for i, m in enumerate(self.members):
            r = SocketReader(f"member{i + 1}", m["token"], where[i])
            self.readers.append(r)
            self._reading.append(asyncio.create_task(r.run(self._done, bound=BOUND)))
        await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in self.readers)), 60)

    def _done(self, high: int) -> bool:
        return self.target is not None and high >= self.target

    async def until_acked(self, n: int, bound: float = 120.0) -> None:
        deadline = time.monotonic() + bound
        while self.acked() < n:
            assert time.monotonic() < deadline, f"only {self.acked()} sends acknowledged"
            await asyncio.sleep(0.01)

    async def until_read(self, position: int, readers: Sequence[SocketReader]) -> None:
        """Until each of ``readers`` has seen ``position`` (bounded; far below the
        periodic catch-up, so only a wake-up can have told them)."""
        deadline = time.monotonic() + 30
        while any(r.high < position for r in readers):
            behind = [(r.name, r.high) for r in readers if r.high < position]
            assert time.monotonic() < deadline, f"never caught up to {position}: {behind}"
            await asyncio.sleep(0.02)

    async def finish(self, base: str) -> list[tuple[int, str]]:
        """Once every send is answered: a send retried once more stores nothing and
        gives the first position; then every reader reads to the end, and the
        verdict."""
        for s in self.senders:
            acked = [o for o in s.sent if o.acked]
            one = next((o for o in acked if o.retried), acked[-1])
            again = await s.resend(one)
            assert again.answers[-1:] == [200], (one.txn_id, again.answers)
            assert again.position == one.position
        stored = await history(base, self.members[0]["token"], self.conversation)
        # every reader reads up to the last message stored (a send nobody
        # acknowledged may be stored too, and must then reach everyone once)
        self.target = max([self.start, *(int(m["id"]) for m in stored)])
        await asyncio.wait_for(asyncio.gather(*self._reading), BOUND)
        verdict = check_exactly_once(self.senders, self.readers, stored, after=self.start)
        # and a resume from where each reader ended brings nothing more, nothing again
        for r in self.readers:
            again = await r.once_more()
            kinds = [f["type"] for f in again if f.get("source") == "message" or "source" not in f]
            assert kinds == ["hello", "caught_up"], (r.name, again)
        return verdict


async def begin(chat: Chat, base: str) -> None:
    """Where the conversation starts: the last position stored before it."""
    before = await history(base, chat.members[0]["token"], chat.conversation)
    chat.start = max((int(m["id"]) for m in before), default=0)


def sending(
    chat: Chat,
    where: Sequence[Callable[[], Sequence[str]]],
    count: int = PER_SENDER,
    run_id: str = "r",
    give_up: Sequence[int] = (),
) -> list[asyncio.Task[None]]:
    """The first ``len(where)`` members send ``count`` texts each, member i
    through ``where[i]()``, with transaction ids of their own for ``run_id``;
    the members numbered in ``give_up`` do not retry a send whose answer was
    lost."""
    tasks = []
    chat.planned += count * len(where)
    for i, m in enumerate(chat.members[: len(where)]):
        s = Sender(
            f"member{i + 1}",
            m["token"],
            chat.conversation,
            where[i],
            retry=i not in give_up,
            lose_every=LOSE_EVERY,
        )
        chat.senders.append(s)
        tasks.append(asyncio.create_task(s.run(count, run_id=run_id)))
    return tasks


async def bounded(work: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(work, BOUND)


def summary(chat: Chat) -> str:
    sends = [one for s in chat.senders for one in s.sent]
    retried = sum(1 for one in sends if one.retried)
    again = sum(1 for one in sends if one.stored_before_retry)
    dropped = sum(1 for one in sends if not one.acked)
    sockets = [r.sockets for r in chat.readers]
    return (
        f"{len(sends)} sends: {retried} retried after an answer was lost ({again} of them "
        f"stored before the loss: the retry answered 200), {dropped} given up; "
        f"sockets per member {sockets}"
    )


async def test_a_server_killed_mid_conversation_delivers_every_acknowledged_message_once(
    tmp_path: Path, db_url: str, sms: FakeSmsGateway
) -> None:
    env = env_for(tmp_path, db_url, sms, KARES_LIVE_CATCHUP_SECONDS="3600")
    family = seed(env)[0]
    server = Server(env, tmp_path / "serve.log").start()
    try:
        chat = Chat(family)
        await chat.open_sockets([lambda: [server.ws]] * 4)
        await begin(chat, server.url)
        # members 1-3 retry a lost send until it is answered; member 4 gives it up
        sends = sending(chat, [lambda: [server.url]] * 4, give_up=[3])
        total = len(chat.members) * PER_SENDER

        async def kill_twice() -> None:
            await chat.kill_mid_send(server, total // 3)
            await chat.kill_mid_send(server, 2 * total // 3)

        await bounded(asyncio.gather(kill_twice(), *sends))
        got = await chat.finish(server.url)
        retrying = [one for s in chat.senders[:3] for one in s.sent]
        assert {p for p, _ in got} >= {one.position for one in retrying}
        # the kills cut every socket and some sends: each reader came back twice
        assert all(r.sockets >= 3 for r in chat.readers), summary(chat)
        assert any(one.retried for one in retrying), summary(chat)
        assert server.alive(), server.log()[-3000:]
        assert server.starts == 3
    finally:
        server.stop()
    print(summary(chat))


async def test_with_redis_process_b_killed_mid_conversation_loses_and_repeats_nothing(
    tmp_path: Path,
    db_url: str,
    sms: FakeSmsGateway,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    env = env_for(
        tmp_path, db_url, sms, KARES_REDIS_URL=redis_server.url, KARES_LIVE_CATCHUP_SECONDS="3600"
    )
    family = seed(env)[0]
    a = Server(env, tmp_path / "serve-a.log").start()
    b = Server(env, tmp_path / "serve-b.log").start()
    try:
        chat = Chat(family)
        # members 1 and 2 on A; 3 and 4 on B, back to A while B is away, or to B once back
        on_a, on_b = (lambda: [a.ws, b.ws]), (lambda: [b.ws, a.ws])
        await chat.open_sockets([on_a, on_a, on_b, on_b])
        await begin(chat, a.url)
        via_a, via_b = (lambda: [a.url, b.url]), (lambda: [b.url, a.url])
        sends = sending(chat, [via_a, via_a, via_b, via_b])

        kill_b = chat.kill_mid_send(b, len(chat.members) * PER_SENDER // 3, chat.readers[2:])
        await bounded(asyncio.gather(kill_b, *sends))
        got = await chat.finish(a.url)
        assert len(got) == len(chat.members) * PER_SENDER
        assert all(r.sockets >= 2 for r in chat.readers[2:]), summary(chat)
        assert all(p.alive() for p in (a, b)), (a.log()[-3000:], b.log()[-3000:])
    finally:
        for p in (b, a):
            p.stop()
    print(summary(chat))


async def test_with_redis_restarted_mid_conversation_the_catch_up_delivers_everything(
    tmp_path: Path,
    db_url: str,
    sms: FakeSmsGateway,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    env = env_for(
        tmp_path, db_url, sms, KARES_REDIS_URL=redis_server.url, KARES_LIVE_CATCHUP_SECONDS="3600"
    )
    family = seed(env)[0]
    a = Server(env, tmp_path / "serve-a.log").start()
    b = Server(env, tmp_path / "serve-b.log").start()
    try:
        chat = Chat(family)
        on_a, on_b = (lambda: [a.ws]), (lambda: [b.ws])
        await chat.open_sockets([on_a, on_a, on_b, on_b])
        await begin(chat, a.url)
        via_a, via_b = (lambda: [a.url]), (lambda: [b.url])
        # first, everyone talks through their own process
        await bounded(asyncio.gather(*sending(chat, [via_a, via_a, via_b, via_b], 10)))
        await chat.until_read(chat.high(), chat.readers)
        # then Redis goes away while only A's members talk, and comes back: nothing
        # else happens on B, so only the catch-up after Redis returns tells B's sockets
        redis_server.stop()
        try:
            quiet = Chat(chat.family)  # A's members' sends of this phase
            await bounded(asyncio.gather(*sending(quiet, [via_a, via_a], 5, "quiet")))
        finally:
            redis_server.start()
        chat.senders.extend(quiet.senders)
        await chat.until_read(chat.high(), chat.readers[2:])
        # and on: everyone again, Redis back
        more = Chat(chat.family)
        await bounded(asyncio.gather(*sending(more, [via_a, via_a, via_b, via_b], 10, "more")))
        chat.senders.extend(more.senders)
        got = await chat.finish(a.url)
        assert len(got) == 4 * 10 + 2 * 5 + 4 * 10
        assert all(p.alive() for p in (a, b)), (a.log()[-3000:], b.log()[-3000:])
    finally:
        for p in (b, a):
            p.stop()
    print(summary(chat))
