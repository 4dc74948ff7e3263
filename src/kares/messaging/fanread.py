"""One read per message, shared by every socket and sync it wakes in this process.

A message in a family of four wakes four streams (WebSockets, Matrix syncs).
Each used to re-read on its own (:func:`kares.messaging.stream.since_rows`: the
highest position, the viewer's conversations, the events); the rows are the
same for all of them, only the per-viewer filters differ. Here the first reader
reads the new events once into a :class:`Window` of recent positions, and every
other reader takes them from memory, filtered under *its own* rights:

* **The window** holds every event with ``lo < position <= hi`` (all
  conversations: positions are one global order, so "what came after N" is one
  range), with its message as it was read and, for a direct or watch
  conversation, its two people. It is filled by one reader at a time (a lock):
  the highest committed position first, then the events up to it, as ``since``
  reads them, so everything in the window is committed and nothing below ``hi``
  can still appear. It is bounded (:data:`WINDOW_ROWS` events, restarted after
  :data:`WINDOW_SECONDS`) and a reader whose cursor is below ``lo`` reads the
  database as before: positions stay the truth.
* **When to read.** The hub tells the window of every message position it
  hands in (here or from another process through the bridge, :meth:`Hub.listen`);
  a reader goes to the database only when the window stands below the highest
  position heard, after a ``tick`` (notices may have been lost) or when the
  window is too old. A later commit is always announced, and wakes the reader
  again; so the usual wake costs no query at all.
* **Rights, per viewer.** A viewer's family conversations with their since-when
  (:class:`~kares.messaging.stream.Scope`) and the messages it hid are kept per
  account (:data:`VIEWERS_MAX`, least recently used first out) and forgotten
  when they may have changed: when the window takes in a membership notice
  (``joined``, ``left``, ``removed``) about the account or a ``hide`` of its
  own, in position order, before any later event is served from it; on a
  ``family`` notice about it; and after :data:`SCOPE_SECONDS` at the latest. A
  direct conversation's two people come with its rows. A recall replaces the
  recalled message in the window. So a reader never gets from memory what the
  database would now refuse it for positions up to the window's ``hi``: a member
  removed at position R is refused everything of that family after R.

The cost is memory (the window's rows, decrypted: at most a minute of messages)
and, for a family notice, the window itself (it is emptied, and the next
readers read from the database once).
"""

from __future__ import annotations

import asyncio
import bisect
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import live
from kares.db import Statement
from kares.messaging import stream
from kares.messaging.content import SYSTEM, decode
from kares.messaging.models import Conversation, Hidden, Message, MessageEvent

WINDOW_ROWS = 4000  # events kept at most
WINDOW_SECONDS = 60.0  # the window starts again (from the database) after this
READ_MAX = 1000  # events read into the window at once
SCOPE_SECONDS = 30.0  # a viewer's rights are read again after this at the latest
VIEWERS_MAX = 20000  # viewers whose rights are kept
MEMBERSHIP = frozenset({"joined", "left", "removed"})

_EV = MessageEvent.__table__.c
_MSG = Message.__table__.c
_CONV = Conversation.__table__.c
_EV_COLS = [c.key for c in MessageEvent.__table__.c]
_MSG_COLS = [c.key for c in Message.__table__.c]

# the events after the window's top, up to a ceiling, with their messages and,
# for a direct conversation, its two people (kares.db.Statement: built once)
_ROWS = Statement(
    select(
        *(c.label(f"e_{c.key}") for c in MessageEvent.__table__.c),
        *(c.label(f"m_{c.key}") for c in Message.__table__.c),
        _CONV.kind.label("c_kind"),
        _CONV.member_a.label("c_a"),
        _CONV.member_b.label("c_b"),
    )
    .select_from(MessageEvent.__table__)
    .outerjoin(Message.__table__, _MSG.position == _EV.message_position)
    .outerjoin(Conversation.__table__, _CONV.id == _EV.conversation_id)
    .where(_EV.position > bindparam("after"), _EV.position <= bindparam("upto"))
    .order_by(_EV.position)
    .limit(bindparam("limit"))
)
_FAMILIES = stream._FAMILIES  # the viewer's families and since when
_DIRECT = stream._DIRECT  # its direct and watch conversations
_HIDDEN = Statement(
    select(Hidden.message_position).where(Hidden.account_id == bindparam("account_id"))
)


@dataclass
class Row:
    ev: MessageEvent  # transient objects: no session, never expire
    msg: Message | None
    pair: frozenset[str] | None  # a direct or watch conversation's people; None for a family's


@dataclass
class Rights:
    families: dict[str, stream.Scope]  # the family conversations, from when
    direct: dict[str, stream.Scope]  # the direct ones it was in when read
    hidden: set[int]
    at: float  # when read (monotonic)


class Window:
    def __init__(self) -> None:
        self.lo = self.hi = 0
        self.positions: list[int] = []
        self.rows: list[Row] = []
        self.started = 0.0
        self.heard = 0  # the highest message position the hub handed in here
        self.fresh = False  # read since the last tick, and no fill under way
        self.ticks = 0  # counts "the window may be behind" (a tick, a lost notice)
        self.epoch = 0  # counts emptying: a fill begun before one keeps nothing
        self.viewers: OrderedDict[str, Rights] = OrderedDict()
        self.forgot = 0  # counts forgetting: rights read meanwhile are not kept
        self.reads = 0  # database reads of events (for tests and benches)
        self.engine: weakref.ref[Any] | None = None
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    # --- what the hub says ---------------------------------------------------------------

    def hear(self, notice: live.Notice) -> None:
        if notice.data is not None:
            return
        if notice.kind == stream.NOTICE_KIND:
            self.heard = max(self.heard, notice.seq)
            if notice.seq == 0:
                self.stale()
        elif notice.kind == "family":
            self.forget(notice.about)
            self.clear()
        elif notice.kind == live.TICK:
            self.stale()
            self.viewers.clear()
            self.forgot += 1

    def on(self, engine: Any) -> None:
        """The database this process reads (a test's runtime after another's):
        positions of another database mean nothing here."""
        if self.engine is None or self.engine() is not engine:
            self.reset()
            self.engine = weakref.ref(engine)

    def stale(self) -> None:
        """The window may be behind what committed: the next reader reads (a fill
        under way when this is heard does not make it fresh)."""
        self.ticks += 1
        self.fresh = False

    def forget(self, account_id: str) -> None:
        self.viewers.pop(account_id, None)
        self.forgot += 1

    def clear(self) -> None:
        """Empty the window: it starts again at its top (readers below it read
        the database)."""
        self.lo = self.hi
        self.positions, self.rows = [], []
        self.epoch += 1
        self.stale()

    def reset(self) -> None:
        """Everything forgotten (tests)."""
        self.lo = self.hi = self.heard = 0
        self.positions, self.rows = [], []
        self.epoch += 1
        self.stale()
        self.started = 0.0
        self.viewers.clear()
        self.forgot += 1

    # --- filling -----------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def current(self, want: int = 0) -> bool:
        """Whether the window serves a reader without a read: it was read since
        the last tick, not too long ago, and up to the highest position heard
        (or, for a reader woken for position ``want``, up to that one: a later
        position wakes it again)."""
        return (
            self.fresh
            and self.hi >= (want if want > 0 else self.heard)
            and time.monotonic() - self.started < WINDOW_SECONDS
        )

    async def fill(self, s: AsyncSession, want: int = 0) -> None:
        """Read what committed after the window's top, once for every reader
        waiting (the first reads, the others wait on the lock and find it done).

        While a fill is under way the window is not fresh, so a reader arriving
        meanwhile waits for it rather than taking the window as it was before
        the read (it would serve nothing new, and no later wake might come). A
        tick heard during the read leaves the window stale after it; an emptying
        (:meth:`clear`, :meth:`reset`) during it discards what was read."""
        async with self._lock():
            if self.current(want):
                return
            self.reads += 1
            if time.monotonic() - self.started >= WINDOW_SECONDS:
                self.clear()
                self.started = time.monotonic()
            ticks, epoch = self.ticks, self.epoch
            self.fresh = False
            ceiling = await stream.top(s)  # first: everything up to it has committed
            got: list[Any] = []
            if self.hi <= ceiling <= self.hi + WINDOW_ROWS:
                after = self.hi
                while after < ceiling:
                    part = await _ROWS.rows(s, {"after": after, "upto": ceiling, "limit": READ_MAX})
                    got.extend(part)
                    after = int(part[-1].e_position) if len(part) == READ_MAX else ceiling
            # from here on nothing awaits: what the hub says meanwhile waits for it
            if epoch != self.epoch:
                return  # emptied while reading: the next reader reads again
            if ceiling < self.hi or ceiling - self.hi > WINDOW_ROWS:
                # a database that went back (tests), or too far to read: start
                # at the top, and read every viewer's rights again (what changed
                # them in between was not taken in)
                self.lo = self.hi = ceiling
                self.positions, self.rows = [], []
                self.viewers.clear()
                self.forgot += 1
            else:
                for r in got:
                    self._take(r)
                self.hi = ceiling
                extra = len(self.rows) - WINDOW_ROWS
                if extra > 0:
                    self.lo = self.positions[extra - 1]
                    del self.rows[:extra], self.positions[:extra]
            self.fresh = ticks == self.ticks

    def _take(self, r: Any) -> None:
        ev = MessageEvent(**{k: getattr(r, f"e_{k}") for k in _EV_COLS})
        msg = None
        if r.m_position is not None:
            msg = Message(**{k: getattr(r, f"m_{k}") for k in _MSG_COLS})
        pair = None
        if r.c_kind is not None and r.c_kind != "family":
            pair = frozenset(a for a in (r.c_a, r.c_b) if a is not None)
        # rights that may have changed at this position: read again before
        # anything after it is served from here
        if ev.kind == "hide" and ev.account_id is not None:
            self.forget(ev.account_id)
        elif ev.kind == "recall" and msg is not None:
            for old in self.rows:  # the message as it is now, for every event of it
                if old.msg is not None and old.msg.position == msg.position:
                    old.msg = msg
        if (
            msg is not None
            and msg.kind == SYSTEM
            and msg.sender_account_id is not None
            and pair is None
            and decode(msg.body).get("event") in MEMBERSHIP
        ):
            self.forget(msg.sender_account_id)
        self.positions.append(ev.position)
        self.rows.append(Row(ev, msg, pair))

    # --- a viewer's rights ----------------------------------------------------------------

    async def rights(self, s: AsyncSession, account_id: str) -> Rights:
        got = self.viewers.get(account_id)
        now = time.monotonic()
        if got is not None and now - got.at < SCOPE_SECONDS:
            self.viewers.move_to_end(account_id)
            return got
        forgot = self.forgot
        params = {"account_id": account_id}
        fams = {f: stream.Scope(f, at) for f, at in await _FAMILIES.rows(s, params)}
        direct = {c: stream.Scope(c, None) for (c,) in await _DIRECT.rows(s, params)}
        hidden = {int(p) for (p,) in await _HIDDEN.rows(s, params)}
        got = Rights(fams, direct, hidden, now)
        if forgot == self.forgot:  # nothing was forgotten while reading: keep it
            self.viewers[account_id] = got
            self.viewers.move_to_end(account_id)
            while len(self.viewers) > VIEWERS_MAX:
                self.viewers.popitem(last=False)
        return got


window = Window()
live.hub.listen(window.hear)


def _visible(rights: Rights, account_id: str, row: Row) -> stream.Scope | None:
    """The scope under which ``account_id`` may see this row, or None."""
    ev, msg = row.ev, row.msg
    if row.pair is not None:
        if account_id not in row.pair:
            return None
        scope = rights.direct.get(ev.conversation_id) or stream.Scope(ev.conversation_id, None)
    else:
        fam = rights.families.get(ev.conversation_id)
        if fam is None:
            return None
        scope = fam
    if ev.kind == "hide" and ev.account_id != account_id:
        return None
    if ev.kind not in ("hide", "receipt"):
        if msg is None or msg.position in rights.hidden:
            return None
    if not stream.visible_from(scope, ev.at):
        return None
    if msg is not None and not stream.visible_from(scope, msg.sent_at):
        return None
    return scope


async def since_rows(
    s: AsyncSession,
    account_id: str,
    after: int,
    limit: int,
    *,
    scopes_always: bool = False,
    want: int = 0,
) -> stream.Rows:
    """:func:`kares.messaging.stream.since_rows` through the window: the same
    rows under the same rights, read from the database only by the first reader
    of new positions (or when ``after`` is below the window). ``want``: the
    position the reader was woken for, if it knows (it needs no more)."""
    limit = max(1, min(int(limit), 1000))
    w = window
    w.on(s.sync_session.get_bind())
    if not w.current(want):
        await w.fill(s, want)
    if not w.current(want) or after < w.lo or after > w.hi:
        # emptied or made stale while it read, or a cursor outside the window:
        # the database, as before
        return await stream.since_rows(s, account_id, after, limit, scopes_always=scopes_always)
    upto = w.hi
    if upto <= after and not scopes_always:
        return stream.Rows([], after, {})
    # rights read (or kept) now hold for every position up to ``upto``: a change
    # of them committed later has a higher position, and is taken in (and the
    # rights forgotten) before anything above ``upto`` is served
    rights = await w.rights(s, account_id)
    if after < w.lo:  # the window started again meanwhile
        return await stream.since_rows(s, account_id, after, limit, scopes_always=scopes_always)
    mine: dict[str, stream.Scope] = {**rights.families, **rights.direct}
    out: list[tuple[MessageEvent, Message | None]] = []
    nxt = upto
    start = bisect.bisect_right(w.positions, after)
    for row in w.rows[start:]:
        if row.ev.position > upto:
            break
        scope = _visible(rights, account_id, row)
        if scope is None:
            continue
        if row.pair is not None:
            mine.setdefault(row.ev.conversation_id, scope)
        out.append((row.ev, row.msg))
        if len(out) == limit:
            nxt = row.ev.position
            break
    return stream.Rows(out, max(nxt, after), mine)


async def since(
    s: AsyncSession, account_id: str, after: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """:func:`kares.messaging.stream.since` through the window."""
    got = await since_rows(s, account_id, after, limit)
    return [stream.item(ev, msg) for ev, msg in got.rows], got.next


async def _since_viewer(
    s: AsyncSession, viewer: live.Viewer, after: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    got = await since_rows(s, viewer.account_id, after, limit, want=viewer.want)
    return [stream.item(ev, msg) for ev, msg in got.rows], got.next


# --- the device's WebSocket ----------------------------------------------------------------

SOURCE = live.streams.register(
    "m",
    "message",
    _since_viewer,
    lambda s, viewer: stream.top(s),
    function=("messaging", "chat"),
    kinds=(stream.NOTICE_KIND,),
    history="GET /api/v1/conversations/{id}/messages",
)
