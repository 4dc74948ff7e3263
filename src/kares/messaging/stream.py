"""Positions: every change a member can see, in one global order from the database.

Each message, recall, read receipt and "deleted for me" is a row of
``message_events`` whose ``position`` is the next value of one sequence (an
autoincrementing key: a PostgreSQL sequence, SQLite's rowid). A client that has
seen position N asks for what came after N (:func:`since`) and gets exactly what
it missed, in order, under its rights at the time it asks.

The one danger is a reader seeing N+1 before N is committed: on PostgreSQL two
transactions may take N and N+1 and commit in the other order, and a reader that
read N+1 and moved its cursor there would never see N. So positions are taken
under a transaction-scoped advisory lock (:func:`take`): whoever holds it takes
the next position and keeps the lock until its transaction ends, so positions
commit in the order they were taken and a committed position has every smaller
one committed (or rolled back, a gap nobody waits for). An action takes its
position as its last step before it commits, so the lock is held for the time of
an insert and a commit. SQLite has one writer at a time (the write gate of
``kares.sqlite`` and SQLite's own lock), so the order holds there by itself.

:func:`since` reads the highest committed position *first*, then the events up
to it: an event that commits between the two reads is above that position and
is read next time, never skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, events, live
from kares.db import Conn, Statement, dialect_of
from kares.families.models import FamilyMember
from kares.messaging.content import message_out
from kares.messaging.models import Conversation, Hidden, Message, MessageEvent

# pg_advisory_xact_lock's key for "taking a messaging position" (b"KrsMsgP1")
LOCK_KEY = 0x4B72734D73675031
NOTICE_KIND = "message"


async def take(
    s: AsyncSession,
    *,
    conversation_id: str,
    kind: str,
    about: str | None,
    account_id: str | None = None,
    message_position: int | None = None,
    at: datetime | None = None,
) -> MessageEvent:
    """The next position, for an event of ``kind`` in the conversation, in the
    caller's transaction (nothing is committed here). After the commit the hub
    hears of it (about ``about``: the people watching that account re-read)."""
    if dialect_of(s) == "postgresql":
        await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    ev = MessageEvent(
        conversation_id=conversation_id,
        kind=kind,
        account_id=account_id,
        message_position=message_position,
        at=at or clock.utcnow(),
    )
    s.add(ev)
    await s.flush()
    position = ev.position
    if about is not None:
        events.on_commit(s, lambda: live.hub.deliver(kind=NOTICE_KIND, about=about, seq=position))
    return ev


# take_message's statements, built once (kares.db.Statement); their parameters are
# not named after columns, which SQLAlchemy reserves in an INSERT or UPDATE
_TAKE = Statement(
    insert(MessageEvent)
    .values(
        conversation_id=bindparam("in_conversation"),
        kind="message",
        account_id=None,
        message_position=None,
        at=bindparam("taken_at"),
    )
    .returning(MessageEvent.position)
)
_POINT = Statement(
    update(MessageEvent)
    .where(MessageEvent.position == bindparam("taken"))
    .values(message_position=bindparam("taken"))
)


async def take_message(s: Conn, *, conversation_id: str, about: str | None, at: datetime) -> int:
    """:func:`take` for a message (every message: sent, steady or not, and the
    notices the domain writes), in statements that run on any connection (a
    bare :class:`kares.db.Tx` of the steady path too): the event written, pointing
    at the message of its own position (which the caller writes next, in the same
    transaction), and the hub told after the commit. Returns the position."""
    if dialect_of(s) == "postgresql":
        await _LOCK.run(s, {"k": LOCK_KEY})
    row = await _TAKE.first(s, {"in_conversation": conversation_id, "taken_at": at})
    position = int(row[0])
    await _POINT.run(s, {"taken": position})
    if about is not None:
        events.on_commit(s, lambda: live.hub.deliver(kind=NOTICE_KIND, about=about, seq=position))
    return position


_LOCK = Statement(select(func.pg_advisory_xact_lock(bindparam("k"))))
_TOP = Statement(select(func.max(MessageEvent.position).label("top")))


async def top(s: AsyncSession) -> int:
    """The highest committed position (0 before the first)."""
    row = await _TOP.first(s, {})
    return int(row[0] or 0) if row is not None else 0


@dataclass(frozen=True)
class Scope:
    """A conversation the account may read now, and from when (a family's
    conversation from the moment the account joined the family)."""

    conversation_id: str
    since: datetime | None


async def scopes(s: AsyncSession, account_id: str) -> dict[str, Scope]:
    """Every conversation the account may read now: its families' (as members
    now) and the direct ones it is in."""
    out: dict[str, Scope] = {}
    for family_id, joined_at in await _FAMILIES.rows(s, {"account_id": account_id}):
        out[family_id] = Scope(family_id, joined_at)
    for (cid,) in await _DIRECT.rows(s, {"account_id": account_id}):
        out[cid] = Scope(cid, None)
    return out


# what every wake of a stream reads: built once (kares.db.Statement)
_FAMILIES = Statement(
    select(FamilyMember.family_id, FamilyMember.joined_at).where(
        FamilyMember.account_id == bindparam("account_id")
    )
)
_DIRECT = Statement(
    select(Conversation.id).where(
        Conversation.kind != "family",
        or_(
            Conversation.member_a == bindparam("account_id"),
            Conversation.member_b == bindparam("account_id"),
        ),
    )
)


def visible_from(scope: Scope, at: datetime) -> bool:
    return scope.since is None or at >= scope.since


@dataclass(frozen=True)
class Rows:
    rows: list[tuple[MessageEvent, Message | None]]
    next: int  # the position to ask from next time
    scopes: dict[str, Scope]  # what the account may read, read after the ceiling


async def since_rows(
    s: AsyncSession, account_id: str, after: int, limit: int, *, scopes_always: bool = False
) -> Rows:
    """:func:`since` as rows: each event the account may see after ``after`` (in
    order, at most ``limit``) with its message, if it has one, read now; and the
    position to ask from next time. For a wire format that shapes the rows itself
    (the Matrix client API) under the same rights; with the account's
    :func:`scopes` as they were read (after the ceiling, so a conversation joined
    meanwhile is in them); read even when nothing moved with ``scopes_always``."""
    limit = max(1, min(int(limit), 1000))
    ceiling = await top(s)  # first: everything up to it has committed
    if ceiling <= after and not scopes_always:
        return Rows([], after, {})
    mine = await scopes(s, account_id)
    if ceiling <= after:
        return Rows([], after, mine)
    if not mine:
        return Rows([], ceiling, mine)
    hidden = select(Hidden.message_position).where(Hidden.account_id == account_id)
    q = (
        select(MessageEvent, Message)
        .outerjoin(Message, Message.position == MessageEvent.message_position)
        .where(
            MessageEvent.position > after,
            MessageEvent.position <= ceiling,
            MessageEvent.conversation_id.in_(list(mine)),
            or_(MessageEvent.kind != "hide", MessageEvent.account_id == account_id),
            or_(
                MessageEvent.kind.in_(("hide", "receipt")),
                and_(
                    Message.position.is_not(None),
                    Message.position.not_in(hidden),
                ),
            ),
        )
        .order_by(MessageEvent.position)
        .limit(limit)
    )
    rows = (await s.execute(q)).all()
    out: list[tuple[MessageEvent, Message | None]] = []
    for ev, msg in rows:
        scope = mine[ev.conversation_id]
        if not visible_from(scope, ev.at):
            continue
        if msg is not None and not visible_from(scope, msg.sent_at):
            continue
        out.append((ev, msg))
    nxt = rows[-1][0].position if len(rows) == limit else ceiling
    return Rows(out, int(nxt), mine)


async def since(
    s: AsyncSession, account_id: str, after: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """What the account may see after position ``after``, in order, at most
    ``limit`` events, and the position to ask from next time.

    Each event is a dict: ``position``, ``kind`` (``message``, ``recall``,
    ``receipt``, ``hide``), ``conversation_id`` and, by kind, ``message`` (as
    :func:`kares.messaging.content.message_out` shapes it, read now: a recalled
    message comes without its body), ``account_id`` and ``up_to`` (a receipt's
    reader and the position read up to). Rights are those of the moment of the
    call: a conversation the account has left yields nothing more."""
    got = await since_rows(s, account_id, after, limit)
    return [item(ev, msg) for ev, msg in got.rows], got.next


def item(ev: MessageEvent, msg: Message | None) -> dict[str, Any]:
    """An event as :func:`since` gives it."""
    out: dict[str, Any] = {
        "position": ev.position,
        "kind": ev.kind,
        "conversation_id": ev.conversation_id,
    }
    if ev.kind in ("message", "recall") and msg is not None:
        out["message"] = message_out(msg)
    elif ev.kind == "receipt":
        out["account_id"] = ev.account_id
        out["up_to"] = ev.message_position
    elif ev.kind == "hide":
        out["message_position"] = ev.message_position
    return out


# the device's WebSocket reads this stream as source "m", registered by
# kares.messaging.fanread (one read per message shared by the sockets it wakes)


async def typing_audience(s: AsyncSession, account_id: str, conversation: str) -> set[str] | None:
    """Who sees someone typing in a direct or watch conversation: its two people,
    when the typist is one of them (a family's conversation is answered by the
    families domain: its id is the family's)."""
    conv = await s.get(Conversation, conversation)
    if conv is None or conv.kind == "family":
        return None
    two = {a for a in (conv.member_a, conv.member_b) if a is not None}
    return two if account_id in two else None


live.typing.register(typing_audience)
