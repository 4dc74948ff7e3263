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

The hub is in-process and holds no database connection. With Redis
configured (``kares.livebus``) the same notices travel between processes:
:attr:`Hub.bridge` publishes what is delivered here and hands in what other
processes delivered. Their positions come from the database, so every process
gives a change the same one, and a lost notice loses nothing: the database
holds the truth and a stream catches up from its last position.

The WebSocket (``kares.protocols.ws``, docs/MESSAGING.md) reads through
:data:`streams`, a registry of *stream sources*: each domain whose changes a
device hears of in real time registers how to read what an account may see
after a position (``since``) and where its stream stands now (``head``). A
socket's resume token is the positions of every source, so adding a source
is one line and a client that reconnects gets exactly what it missed.
:data:`presence` says which devices hold a socket now (here and, with
Redis, in other processes); :data:`typing` is where a domain says who may
see someone typing in a conversation.

A notice about someone many people watch wakes all their streams at once, and
each re-reads under its own rights. :meth:`Hub.reading` lets only a few of
them do that at a time (``READERS``): the rest wait without a connection, the
pool keeps connections for ordinary requests, and the event loop serves those
between a few re-reads instead of after all of them.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

QUEUE_SIZE = 256
# how many subscriptions may re-read (hold a database connection) at once, per
# process: well under the pool's size (SQLAlchemy's default 5 + 10 overflow)
READERS = 4
# a write that wakes streams (a message) waits before it starts while more than
# this many woken streams wait for their read here, for at most ADMIT_WAIT_S: the
# senders slow down to the pace the readers keep, instead of the readers falling
# seconds behind the senders (docs/MESSAGING.md, "Sending waits for delivery")
BACKLOG = 12
ADMIT_WAIT_S = 2.0


@dataclass(frozen=True)
class Notice:
    seq: int
    kind: str
    about: str  # the account whose data moved
    # an ephemeral event (typing) carries what it says and is never stored:
    # everything else carries no data and is re-read under the viewer's rights
    data: Mapping[str, Any] | None = None


@dataclass(eq=False)
class Subscription:
    account_id: str
    # the device holding the subscription when it counts for presence (a
    # WebSocket); None for streams that do not (the live map's SSE)
    device_id: str | None = None
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


class FanoutWrites:
    """The routes whose writes wake many streams (a message sent), by method and
    path template (``/api/v1/conversations/{id}/messages``): the app makes each
    such request wait in :meth:`Hub.admit` before the framework sees it, so the
    wait holds no database session. The module that owns the route registers it."""

    def __init__(self) -> None:
        self._by_method: dict[str, list[re.Pattern[str]]] = {}

    def register(self, method: str, template: str) -> None:
        parts = re.split(r"(\{[^}/]+\})", template)
        rx = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p)
        pat = re.compile(rx + "$")
        pats = self._by_method.setdefault(method.upper(), [])
        if all(p.pattern != pat.pattern for p in pats):
            pats.append(pat)

    def matches(self, method: str, path: str) -> bool:
        return any(p.match(path) for p in self._by_method.get(method, ()))


fanout_writes = FanoutWrites()


class _Turns:
    """One event loop's turns to re-read: at most ``READERS`` at once, and how
    many streams want one (hold a turn or wait for it)."""

    def __init__(self) -> None:
        self.sem = asyncio.Semaphore(READERS)
        self.wanting = 0
        self.eased = asyncio.Event()  # set while ``wanting`` is at most BACKLOG
        self.eased.set()


class Hub:
    def __init__(self) -> None:
        self._by_about: dict[str, set[Subscription]] = {}
        self._by_account: dict[str, set[Subscription]] = {}
        self._seq = itertools.count(1)
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = (
            weakref.WeakKeyDictionary()
        )
        self.admitted_late = 0  # writes that waited for the readers (benches, tests)
        # carries notices to other processes (kares.livebus), when Redis is configured
        self.bridge: Bridge | None = None
        # told of every notice handed in here and of every wake_all (a tick about
        # nobody), before any subscription: what a per-process cache keeps
        # (kares.messaging.fanread) it forgets or renews there
        self._listeners: list[Callable[[Notice], None]] = []

    def listen(self, fn: Callable[[Notice], None]) -> None:
        """Call ``fn`` with every notice handed in here (and a ``tick`` on
        :meth:`wake_all`), synchronously, before the subscriptions hear it."""
        if fn not in self._listeners:
            self._listeners.append(fn)

    def unlisten(self, fn: Callable[[Notice], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def subscribe(
        self, account_id: str, watching: Iterable[str] = (), *, device_id: str | None = None
    ) -> Subscription:
        """A subscription of ``account_id``'s client, hearing of its own changes and
        of those of ``watching``; with ``device_id``, the device counts as present
        (:data:`presence`) while it lasts."""
        sub = Subscription(account_id, device_id)
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
        """Which of these accounts have a client connected now (in this process)."""
        return {a for a in account_ids if a in self._by_account}

    def devices(self, account_id: str) -> set[str]:
        """The devices of ``account_id`` holding a socket in this process."""
        subs = self._by_account.get(account_id, ())
        return {sub.device_id for sub in subs if sub.device_id is not None}

    def present(self) -> list[tuple[str, str]]:
        """Every (account, device) holding a socket in this process."""
        return [
            (a, sub.device_id)
            for a, subs in self._by_account.items()
            for sub in subs
            if sub.device_id is not None
        ]

    @property
    def subscriptions(self) -> int:
        return sum(len(subs) for subs in self._by_account.values())

    def _turns_here(self) -> _Turns:
        loop = asyncio.get_running_loop()
        turns = self._turns.get(loop)
        if turns is None:
            turns = self._turns[loop] = _Turns()
        return turns

    @asynccontextmanager
    async def reading(self, *, woken: bool = False) -> AsyncIterator[None]:
        """A turn to re-read what a notice is about: at most ``READERS`` at once.
        ``woken``: the stream reads because a notice woke it (a delivery, not a
        first read or a poll's look): counted in :attr:`backlog` while it waits."""
        t = self._turns_here()
        if not woken:
            async with t.sem:
                yield
            return
        t.wanting += 1
        if t.wanting > BACKLOG:
            t.eased.clear()
        counted = True
        try:
            async with t.sem:
                counted = False  # it has its turn: no longer waiting
                t.wanting -= 1
                if t.wanting <= BACKLOG:
                    t.eased.set()
                yield
        finally:
            if counted:
                t.wanting -= 1
                if t.wanting <= BACKLOG:
                    t.eased.set()

    @property
    def backlog(self) -> int:
        """Woken streams of this event loop waiting for a turn to re-read."""
        return self._turns_here().wanting

    async def admit(self, wait_s: float = ADMIT_WAIT_S) -> float:
        """Wait, holding nothing (no connection, no transaction), until at most
        ``BACKLOG`` woken streams wait for their read here, or ``wait_s`` passed;
        returns the seconds waited. A write that wakes streams (a message sent)
        calls it before it starts: under a flood of sends the senders wait a
        little, and what they sent is delivered in step with them, rather than
        every send answering at once and the deliveries falling seconds behind.
        Bounded, so a reader that is stuck never stops the writes."""
        t = self._turns_here()
        if t.eased.is_set():
            return 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.admitted_late += 1
        try:
            await asyncio.wait_for(t.eased.wait(), wait_s)
        except TimeoutError:
            pass
        return loop.time() - start

    def deliver(self, *, kind: str, about: str, seq: int | None = None) -> int:
        """Tell every subscription watching ``about`` (and, through :attr:`bridge`,
        every other process); returns how many were told here."""
        notice = Notice(seq if seq is not None else next(self._seq), kind, about)
        if self.bridge is not None:
            self.bridge.publish(notice, None)
        return self.hand_in(notice)

    def hand_in(self, notice: Notice) -> int:
        """Deliver a notice to this process's subscriptions watching its ``about``
        (one that another process published, or one delivered here)."""
        for fn in self._listeners:
            fn(notice)
        return self._put(self._by_about.get(notice.about), notice)

    def tell(
        self, account_ids: Iterable[str], *, kind: str, about: str, data: Mapping[str, Any]
    ) -> int:
        """An ephemeral event (typing) for the sockets of ``account_ids``: it
        carries its ``data``, has no position and is not stored; through
        :attr:`bridge` it reaches other processes too. How many were told here."""
        to = sorted(set(account_ids))
        notice = Notice(0, kind, about, dict(data))
        if self.bridge is not None:
            self.bridge.publish(notice, to)
        return self.hand_to(to, notice)

    def hand_to(self, account_ids: Iterable[str], notice: Notice) -> int:
        """Deliver an ephemeral notice to this process's sockets of ``account_ids``."""
        n = 0
        for a in account_ids:
            n += self._put(
                {s for s in self._by_account.get(a, ()) if s.device_id is not None}, notice
            )
        return n

    @staticmethod
    def _put(subs: Iterable[Subscription] | None, notice: Notice) -> int:
        n = 0
        for sub in list(subs or ()):
            try:
                sub.queue.put_nowait(notice)
                n += 1
            except asyncio.QueueFull:
                sub.lagged = True
        return n

    def wake_all(self) -> int:
        """Wake every subscription to catch up (after notices may have been lost,
        e.g. while Redis was away): a socket gets a ``tick`` (it re-reads every
        source from its positions), a stream without positions (the live map) a
        ``family`` notice (it re-reads its snapshot)."""
        for fn in self._listeners:
            fn(Notice(0, TICK, ""))
        n = 0
        for account_id, subs in list(self._by_account.items()):
            for sub in list(subs):
                kind = TICK if sub.device_id is not None else "family"
                n += self._put((sub,), Notice(0, kind, account_id))
        return n


TICK = "tick"
"""The kind of notice that asks a stream to catch up, about nothing in particular."""


class Bridge(Protocol):
    """Carries notices to other processes (``kares.livebus``)."""

    def publish(self, notice: Notice, to: Sequence[str] | None) -> None: ...

    def arrive(self, account_id: str, device_id: str) -> None: ...

    def leave(self, account_id: str, device_id: str) -> None: ...

    async def devices(self, account_ids: Sequence[str]) -> dict[str, set[str]]: ...


hub = Hub()


# --- stream sources: what a socket reads, by position ------------------------------------------


@dataclass(frozen=True)
class Event:
    """One event of a source, at its position in the viewer's stream."""

    position: int
    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Viewer:
    """Who a source reads for: the account, its device, what the guard said of the
    source's function (``degraded``: what must be coarsened) and the process's
    runtime (typed loosely: plumbing knows no runtime)."""

    account_id: str
    device_id: str | None = None
    degraded: Mapping[str, str] = field(default_factory=dict)
    runtime: Any = None
    # the highest position a notice named for this source at this wake (0: none
    # known, e.g. a catch-up): a source that shares its reads needs no more
    want: int = 0


class Expired(Exception):
    """Raised by a source's ``since`` when the position is older than what it keeps."""


# since(session, viewer, after, limit) -> (events after ``after``, in order, at most
# ``limit``; the position read up to)
Since = Callable[[Any, Viewer, int, int], Awaitable[tuple[Sequence[Any], int]]]
Head = Callable[[Any, Viewer], Awaitable[int]]
AccountSince = Callable[[Any, str, int, int], Awaitable[tuple[Sequence[Any], int]]]
AccountHead = Callable[[Any, str], Awaitable[int]]

_KEY = re.compile(r"^[a-z]{1,3}$")


@dataclass(frozen=True)
class Source:
    key: str  # its letters in a token ("l" in "i7.l340")
    name: str  # the ``source`` of its events
    since: Since
    head: Head
    # the guard's function (and feature) that must admit the viewer for this
    # source; its events wait while it does not
    function: tuple[str, str | None] | None = None
    # hub notice kinds that mean this source may have moved
    kinds: frozenset[str] = frozenset()
    # only notices about the viewer's own account concern it (an inbox)
    own_only: bool = False
    # where a client that is too far behind pages what it missed
    history: str = ""


def by_account(since: AccountSince) -> Since:
    """A ``since`` that takes an account id, as a source's."""

    async def read(s: Any, viewer: Viewer, after: int, limit: int) -> tuple[Sequence[Any], int]:
        return await since(s, viewer.account_id, after, limit)

    return read


def head_by_account(head: AccountHead) -> Head:
    async def read(s: Any, viewer: Viewer) -> int:
        return await head(s, viewer.account_id)

    return read


class Streams:
    """The registry of stream sources (one per domain that streams)."""

    def __init__(self) -> None:
        self._sources: dict[str, Source] = {}

    def register(
        self,
        key: str,
        name: str,
        since: Since,
        head: Head,
        *,
        function: tuple[str, str | None] | None = None,
        kinds: Iterable[str] = (),
        own_only: bool = False,
        history: str = "",
    ) -> Source:
        if not _KEY.match(key):
            raise ValueError(f"a source's key is one to three letters a-z, not {key!r}")
        for other in self._sources.values():
            if other.name == name and other.key != key:
                raise ValueError(f"a stream source named {name!r} exists")
        src = Source(
            key, name, since, head, function, frozenset(kinds or (name,)), own_only, history
        )
        self._sources[key] = src
        return src

    def unregister(self, key: str) -> None:
        self._sources.pop(key, None)

    def all(self) -> list[Source]:
        return [self._sources[k] for k in sorted(self._sources)]

    def get(self, key: str) -> Source | None:
        return self._sources.get(key)


streams = Streams()


def as_event(src: Source, item: Any) -> Event:
    """A source's item as an :class:`Event`: an Event, or a mapping with a
    ``position`` and a ``type`` (or ``kind``; else the source's name) whose
    other keys are its data."""
    if isinstance(item, Event):
        return item
    if isinstance(item, Mapping):
        kind = item.get("type", item.get("kind", src.name))
        data = {k: v for k, v in item.items() if k not in ("position", "type", "kind")}
        return Event(int(item["position"]), str(kind), data)
    position = getattr(item, "position")  # noqa: B009 - any object with a position
    return Event(int(position), src.name, getattr(item, "data", {}) or {})


_PART = re.compile(r"^([a-z]{1,3})(0|[1-9][0-9]{0,18})$")


def encode_token(positions: Mapping[str, int]) -> str:
    """A resume token: each source's position, e.g. ``i7.l340.m12`` (opaque to clients)."""
    return ".".join(f"{k}{positions[k]}" for k in sorted(positions))


def decode_token(token: str) -> dict[str, int] | None:
    """The positions of a token, or None when it is not one."""
    if not token or len(token) > 400:
        return None
    out: dict[str, int] = {}
    for part in token.split("."):
        m = _PART.match(part)
        if m is None or m.group(1) in out:
            return None
        out[m.group(1)] = int(m.group(2))
    return out


# --- presence: which devices hold a socket now ---------------------------------------------


class Presence:
    """Which devices of an account hold a socket now: in this process (the hub)
    and, with Redis, in every process (each refreshes what it holds)."""

    async def devices(self, account_ids: Iterable[str]) -> dict[str, set[str]]:
        ids = list(dict.fromkeys(account_ids))
        out = {a: hub.devices(a) for a in ids}
        if hub.bridge is not None:
            try:
                far = await hub.bridge.devices(ids)
            except Exception:  # Redis away: what this process knows
                far = {}
            for a, ds in far.items():
                out.setdefault(a, set()).update(ds)
        return out

    async def connected(self, account_id: str, device_id: str) -> bool:
        """Whether this device holds a socket now, here or in another process."""
        if device_id in hub.devices(account_id):
            return True
        return device_id in (await self.devices([account_id])).get(account_id, set())


presence = Presence()


# --- typing: who may see someone typing in a conversation ----------------------------------

# audience(session, account_id, conversation) -> the accounts who see that
# conversation (the typer included), or None when it is not the typer's
Audience = Callable[[Any, str, str], Awaitable[Iterable[str] | None]]


class Typing:
    """Where a domain says who sees a conversation (messaging, at merge; tests
    register their own). Asked in order; the first that knows the conversation
    answers."""

    def __init__(self) -> None:
        self._audiences: list[Audience] = []

    def register(self, audience: Audience) -> None:
        if audience not in self._audiences:
            self._audiences.append(audience)

    def unregister(self, audience: Audience) -> None:
        if audience in self._audiences:
            self._audiences.remove(audience)

    async def audience(self, s: Any, account_id: str, conversation: str) -> set[str] | None:
        for fn in list(self._audiences):
            got = await fn(s, account_id, conversation)
            if got is not None:
                return set(got)
        return None


typing = Typing()
