"""Real-time delivery to connected clients: one hub, subscriptions by interest.

A connected client (a live map now, the WebSocket of step 8 later) subscribes
with the accounts whose changes it wants to hear of: its own and the people it
shares a family with. A domain says "something about account X moved" with
:meth:`Hub.deliver`, after its commit (``kares.events.on_commit``); every
subscription watching X gets a notice and re-reads what moved *under its own
rights* before it sends anything. The hub carries no personal data, only who
moved, a kind and a position, so a stale or over-broad notice can never leak
anything: the stream decides what the viewer may see at the moment it sends.

The publisher needs no query to find its audience: interest is kept by the
subscribers. When the set of people someone shares a family with changes,
the families domain sends a ``family`` notice about each member, and their
streams re-read everything and renew their interest.

The hub is in-process and holds no database connection. Step 8 carries the
same notices between processes (Redis); their positions come from the
database, so every process gives a change the same one.

A notice about someone many people watch wakes all their streams at once, and
each re-reads under its own rights. :meth:`Hub.reading` lets only a few of
them do that at a time (``READERS``): the rest wait without a connection, the
pool keeps connections for ordinary requests, and the event loop serves those
between a few re-reads instead of after all of them.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

QUEUE_SIZE = 256
# how many subscriptions may re-read (hold a database connection) at once, per
# process: well under the pool's size (SQLAlchemy's default 5 + 10 overflow)
READERS = 4


@dataclass(frozen=True)
class Notice:
    seq: int
    kind: str
    about: str  # the account whose data moved


@dataclass(eq=False)
class Subscription:
    account_id: str
    watching: frozenset[str] = frozenset()
    queue: asyncio.Queue[Notice] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    # set when notices were dropped because the client fell behind: it must
    # re-read everything (a snapshot) instead of trusting the deltas
    lagged: bool = False
    # set when the client left: whoever waits on the queue stops
    closed: bool = False

    def close(self) -> None:
        """The client left: wake whoever waits for the next notice."""
        self.closed = True
        if self.queue.empty():
            self.queue.put_nowait(_CLOSED)


_CLOSED = Notice(0, "closed", "")


class Hub:
    def __init__(self) -> None:
        self._by_about: dict[str, set[Subscription]] = {}
        self._by_account: dict[str, set[Subscription]] = {}
        self._seq = itertools.count(1)
        self._readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def subscribe(self, account_id: str, watching: Iterable[str] = ()) -> Subscription:
        """A subscription of ``account_id``'s client, hearing of its own changes and
        of those of ``watching``."""
        sub = Subscription(account_id)
        self._by_account.setdefault(account_id, set()).add(sub)
        self.watch(sub, watching)
        return sub

    def watch(self, sub: Subscription, account_ids: Iterable[str]) -> None:
        """Replace the accounts whose changes ``sub`` hears of (its own always)."""
        new = frozenset((sub.account_id, *account_ids))
        for a in sub.watching - new:
            self._drop(a, sub)
        for a in new - sub.watching:
            self._by_about.setdefault(a, set()).add(sub)
        sub.watching = new

    def _drop(self, about: str, sub: Subscription) -> None:
        subs = self._by_about.get(about)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_about[about]

    def unsubscribe(self, sub: Subscription) -> None:
        for a in sub.watching:
            self._drop(a, sub)
        sub.watching = frozenset()
        mine = self._by_account.get(sub.account_id)
        if mine is not None:
            mine.discard(sub)
            if not mine:
                del self._by_account[sub.account_id]

    def connected(self, account_ids: Iterable[str]) -> set[str]:
        """Which of these accounts have a client connected now."""
        return {a for a in account_ids if a in self._by_account}

    @property
    def subscriptions(self) -> int:
        return sum(len(subs) for subs in self._by_account.values())

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """A turn to re-read what a notice is about: at most ``READERS`` at once."""
        loop = asyncio.get_running_loop()
        sem = self._readers.get(loop)
        if sem is None:
            sem = self._readers[loop] = asyncio.Semaphore(READERS)
        async with sem:
            yield

    def deliver(self, *, kind: str, about: str, seq: int | None = None) -> int:
        """Tell every subscription watching ``about``; returns how many were told."""
        subs = self._by_about.get(about)
        if not subs:
            return 0
        notice = Notice(seq if seq is not None else next(self._seq), kind, about)
        n = 0
        for sub in list(subs):
            try:
                sub.queue.put_nowait(notice)
                n += 1
            except asyncio.QueueFull:
                sub.lagged = True
        return n


hub = Hub()
