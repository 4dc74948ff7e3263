"""``GET /sync``: the messaging domain's stream, shaped as Matrix rooms.

The token (``next_batch``) is positions only: ``m<position>`` is the messaging
stream's position (``kares.messaging.stream``: one order for every
conversation, from the database), ``t<n>`` this process's typing serial (see
:class:`TypingState`). Written with ``kares.live``'s token encoding, e.g.
``m1234.t7``. Because the message position comes from the database, a restarted
server, or another process on the same database, continues from a token
exactly; a typing serial from another process only makes the next answer
repeat who is typing now.

An incremental sync reads what the user may see after the token's position
(``stream.since_rows``, under the user's rights at that moment), in one
bounded read: at most :data:`BATCH` events; more are left for the next sync
(whose token continues exactly there). A room the user left or was removed from
since the token appears once under ``rooms.leave``: found from the user's own
``left``/``removed`` notices in the range, in a conversation they may no longer
read. A room new to the client (a family joined, a direct conversation whose
first message is in this batch) comes with its whole state.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, live
from kares.db import Statement
from kares.families import service as families
from kares.families.models import Family
from kares.identity.models import Account
from kares.messaging import fanread, stream
from kares.messaging import service as messaging
from kares.messaging.content import SYSTEM, cursor, decode
from kares.messaging.models import (
    NOTICE_WHERE,
    UNREAD_WHERE,
    Conversation,
    Hidden,
    Message,
    MessageEvent,
    Receipt,
)
from kares.protocols.matrix import events as mx
from kares.protocols.matrix.errors import MatrixError, bad_json, invalid_param

BATCH = 1000  # events read by one sync at most (more: the next sync, at once)
DEFAULT_LIMIT = 10  # timeline events a room, as Synapse's default filter
MAX_LIMIT = 100
FILTER_MAX_BYTES = 8192


# --- filters -------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    timeline_limit: int = DEFAULT_LIMIT
    rooms: frozenset[str] | None = None  # only these room ids, when given


def parse_filter(raw: Any) -> Filter:
    """The parts of a Matrix filter that Kares honours: ``room.timeline.limit``
    and ``room.rooms``; the rest is accepted and has no effect."""
    if not isinstance(raw, dict):
        raise bad_json("A filter is a JSON object.")
    room = raw.get("room", {})
    if not isinstance(room, dict):
        raise bad_json("filter.room is an object.")
    timeline = room.get("timeline", {})
    if not isinstance(timeline, dict):
        raise bad_json("filter.room.timeline is an object.")
    limit = timeline.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise bad_json("filter.room.timeline.limit is a non-negative integer.")
    rooms = room.get("rooms")
    if rooms is not None and (
        not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms)
    ):
        raise bad_json("filter.room.rooms is a list of room ids.")
    return Filter(
        timeline_limit=min(limit, MAX_LIMIT),
        rooms=frozenset(rooms) if rooms is not None else None,
    )


def read_filter_text(text: str) -> tuple[Any, str]:
    """A filter's JSON: the parsed object and its canonical text."""
    if len(text.encode()) > FILTER_MAX_BYTES:
        raise MatrixError(413, "M_TOO_LARGE", f"A filter is at most {FILTER_MAX_BYTES} bytes.")
    try:
        got = json.loads(text)
    except ValueError as exc:
        raise MatrixError(400, "M_NOT_JSON", "The filter is not JSON.") from exc
    parse_filter(got)
    return got, json.dumps(got, separators=(",", ":"), sort_keys=True)


# --- typing: ephemeral, per process ------------------------------------------------------


@dataclass
class TypingState:
    """Who is typing in which conversation, as this process has heard it (from
    Matrix clients here and the hub's typing notices: the WebSocket's and other
    processes' included). Each change takes a serial, the time in milliseconds
    (strictly increasing here), so serials of different processes compare: a
    sync token carries the highest serial its client has been told, and the next
    sync tells the rooms whose typing changed after it. Typing is ephemeral: a
    change this process never heard of is simply not told."""

    serial: int = 0
    rooms: dict[str, dict[str, float]] = field(default_factory=dict)  # conv -> who -> until
    changed: dict[str, int] = field(default_factory=dict)  # conv -> serial of its change

    def change(self, conversation: str, account_id: str, typing: bool, seconds: float) -> bool:
        """Record a change; whether anything a client sees changed."""
        now = time.monotonic()
        room = self.rooms.setdefault(conversation, {})
        was = room.get(account_id, 0.0) > now
        if typing:
            room[account_id] = now + seconds
        else:
            room.pop(account_id, None)
        if not room:
            self.rooms.pop(conversation, None)
        if was == typing:
            return False
        self.serial = max(self.serial + 1, int(time.time() * 1000))
        self.changed[conversation] = self.serial
        return True

    def users(self, conversation: str) -> list[str]:
        now = time.monotonic()
        return sorted(a for a, until in self.rooms.get(conversation, {}).items() if until > now)

    def changed_since(self, serial: int, conversations: set[str]) -> set[str]:
        return {c for c in conversations if self.changed.get(c, 0) > serial}


typing = TypingState()


def typing_event(conversation: str, server: str) -> dict[str, Any]:
    from kares.protocols.matrix import ids

    return {
        "type": "m.typing",
        "content": {"user_ids": [ids.user_id(a, server) for a in typing.users(conversation)]},
    }


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    position: int
    typing: int


def read_token(raw: str) -> Token:
    got = live.decode_token(raw)
    if got is None or "m" not in got or set(got) - {"m", "t"}:
        raise invalid_param("This since token is not one this server gave.")
    return Token(got["m"], got.get("t", 0))


def write_token(position: int, typing_serial: int) -> str:
    return live.encode_token({"m": position, "t": typing_serial})


def page_position(raw: str) -> int:
    """The point a pagination token stands for: just before this position. A
    ``prev_batch``/``end`` is a history cursor (``p`` and base 36); a sync token
    stands just after its position."""
    if raw.startswith("p"):
        try:
            from kares.messaging.content import read_cursor

            return read_cursor(raw)
        except Exception as exc:
            raise invalid_param("This pagination token is not one this server gave.") from exc
    return read_token(raw).position + 1


# --- reading ---------------------------------------------------------------------------------


async def names_of(s: AsyncSession, account_ids: set[str]) -> dict[str, str | None]:
    if not account_ids:
        return {}
    q = select(Account.id, Account.name).where(Account.id.in_(sorted(account_ids)))
    return {a: n for a, n in (await s.execute(q)).all()}


@dataclass
class RoomInfo:
    name: str | None
    members: list[tuple[str, str | None]]  # (account id, display name), who may read it now
    created: datetime


async def room_info(s: AsyncSession, conversation_id: str) -> RoomInfo:
    conv = await s.get(Conversation, conversation_id)
    created = conv.created_at if conv is not None else clock.utcnow()
    if conv is None or conv.kind == "family":
        fam = await s.get(Family, conversation_id)
        rows = await families.members_of(s, conversation_id)
        return RoomInfo(
            fam.name if fam is not None else None,
            [(a.id, a.name) for _, a in rows],
            fam.created_at if fam is not None else created,
        )
    ids_ = {a for a in (conv.member_a, conv.member_b) if a is not None}
    names = await names_of(s, ids_)
    return RoomInfo(None, sorted(names.items()), created)


def _unread_statement(since_joined: bool) -> Statement:
    receipt = (
        select(Receipt.up_to)
        .where(
            Receipt.conversation_id == bindparam("conversation_id"),
            Receipt.account_id == bindparam("account_id"),
        )
        .scalar_subquery()
    )
    hidden = select(Hidden.message_position).where(Hidden.account_id == bindparam("account_id"))
    where: list[Any] = [
        Message.conversation_id == bindparam("conversation_id"),
        Message.position > func.coalesce(receipt, 0),
        UNREAD_WHERE,  # in the words of ix_messages_unread
        or_(
            Message.sender_account_id.is_(None),
            Message.sender_account_id != bindparam("account_id"),
        ),
        Message.position.not_in(hidden),
    ]
    if since_joined:
        where.append(Message.sent_at >= bindparam("since", type_=Message.sent_at.type))
    return Statement(select(func.count().label("n")).where(*where))


# built once: a sync counts the conversations that moved, one statement each
_UNREAD = {joined: _unread_statement(joined) for joined in (False, True)}


async def unread_counts(
    s: AsyncSession, account_id: str, scopes: dict[str, stream.Scope], conversations: set[str]
) -> dict[str, int]:
    """Unread messages in each of these conversations: others' messages after
    the account's receipt, not recalled, not hidden by it, not notices, from its
    joining on (a statement per conversation, read from ``ix_messages_unread``)."""
    out: dict[str, int] = {}
    for c in sorted(conversations):
        scope = scopes.get(c)
        if scope is None:
            out[c] = 0
            continue
        params: dict[str, Any] = {"conversation_id": c, "account_id": account_id}
        if scope.since is not None:
            params["since"] = scope.since
        row = await _UNREAD[scope.since is not None].first(s, params)
        out[c] = int(row[0]) if row is not None else 0
    return out


def _receipt_content(receipts: list[tuple[int, str, datetime]], server: str) -> dict[str, Any]:
    from kares.protocols.matrix import ids

    content: dict[str, Any] = {}
    for up_to, account_id, at in receipts:
        content.setdefault(mx.event_id(up_to, server), {}).setdefault("m.read", {})[
            ids.user_id(account_id, server)
        ] = {"ts": mx.ms(at)}
    return content


def _joined_room(
    timeline: list[dict[str, Any]],
    *,
    limited: bool,
    prev_batch: str,
    state: list[dict[str, Any]],
    ephemeral: list[dict[str, Any]],
    unread: int | None,
) -> dict[str, Any]:
    room: dict[str, Any] = {
        "timeline": {"events": timeline, "limited": limited, "prev_batch": prev_batch},
        "state": {"events": state},
        "ephemeral": {"events": ephemeral},
        "account_data": {"events": []},
    }
    if unread is not None:
        room["unread_notifications"] = {"notification_count": unread, "highlight_count": 0}
    return room


def empty_response(next_batch: str) -> dict[str, Any]:
    return {
        "next_batch": next_batch,
        "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
        "presence": {"events": []},
        "account_data": {"events": []},
        "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []},
        "device_one_time_keys_count": {},
    }


async def full_room(
    s: AsyncSession,
    account_id: str,
    conversation_id: str,
    ceiling: int,
    limit: int,
    server: str,
) -> dict[str, Any]:
    """A room as a first sync (or ``full_state``) gives it: its state, its last
    ``limit`` messages up to ``ceiling``, receipts, typing and the unread count."""
    room = mx.room_id(conversation_id, server)
    info = await room_info(s, conversation_id)
    page = await messaging.history(
        s,
        account_id=account_id,
        conversation_id=conversation_id,
        before=ceiling + 1,
        limit=max(limit, 1),
    )
    msgs = page.messages[-limit:] if limit > 0 else []
    names = dict(info.members)
    extra = {
        m.sender_account_id
        for m in msgs
        if m.kind == SYSTEM and m.sender_account_id and m.sender_account_id not in names
    }
    names.update(await names_of(s, extra))
    timeline = [mx.message_event(m, server, names) for m in msgs]
    limited = page.before is not None or len(msgs) < len(page.messages)
    prev = cursor(msgs[0].position) if msgs else cursor(ceiling + 1)
    receipts = await messaging.receipts(s, account_id=account_id, conversation_id=conversation_id)
    ephemeral = [
        {
            "type": "m.receipt",
            "content": _receipt_content(
                [(r.up_to, r.account_id, r.read_at) for r in receipts], server
            ),
        },
        typing_event(conversation_id, server),
    ]
    unread = await messaging.unread(s, account_id=account_id, conversation_id=conversation_id)
    state = mx.room_state(room, server, name=info.name, members=info.members, created=info.created)
    return _joined_room(
        timeline, limited=limited, prev_batch=prev, state=state, ephemeral=ephemeral, unread=unread
    )


async def initial(s: AsyncSession, account_id: str, flt: Filter, server: str) -> dict[str, Any]:
    """A first sync: every room the account may read, with its state."""
    ceiling = await stream.top(s)  # first: the history read below stops there
    mine = await stream.scopes(s, account_id)
    out = empty_response(write_token(ceiling, typing.serial))
    for conv in sorted(mine):
        room = mx.room_id(conv, server)
        if flt.rooms is not None and room not in flt.rooms:
            continue
        out["rooms"]["join"][room] = await full_room(
            s, account_id, conv, ceiling, flt.timeline_limit, server
        )
    return out


# the account's own notices in a range of positions: where a leave is found
_OWN_NOTICES = Statement(
    select(*Message.__table__.c).where(
        Message.sender_account_id == bindparam("account_id"),
        NOTICE_WHERE,  # in the words of ix_messages_notices
        Message.position > bindparam("after"),
        Message.position <= bindparam("upto"),
    )
)


def nothing(token: Token) -> dict[str, Any]:
    """The answer when nothing moved after the token."""
    return empty_response(write_token(token.position, max(token.typing, typing.serial)))


@dataclass
class Batch:
    response: dict[str, Any]
    position: int  # the stream position read up to
    content: bool  # anything for the client (else a long-poll keeps waiting)


async def incremental(
    s: AsyncSession,
    account_id: str,
    token: Token,
    flt: Filter,
    server: str,
    *,
    full_state: bool = False,
) -> Batch:
    """What the account may see after the token, as rooms."""
    got = await fanread.since_rows(s, account_id, token.position, BATCH, scopes_always=True)
    mine = got.scopes
    upto = max(got.next, token.position)
    rooms_join: dict[str, dict[str, Any]] = {}
    rooms_leave: dict[str, dict[str, Any]] = {}

    def wanted(conv: str) -> bool:
        return flt.rooms is None or mx.room_id(conv, server) in flt.rooms

    # rooms left since the token: the account's own notices in conversations it
    # may no longer read
    if upto > token.position:
        params = {"account_id": account_id, "after": token.position, "upto": upto}
        for row in await _OWN_NOTICES.rows(s, params):
            if row.conversation_id in mine or not wanted(row.conversation_id):
                continue
            if decode(row.body).get("event") not in ("left", "removed"):
                continue
            m = Message(**row._asdict())
            room = mx.room_id(m.conversation_id, server)
            left = mx.message_event(m, server, {})
            rooms_leave[room] = {
                "timeline": {"events": [left], "limited": False, "prev_batch": cursor(m.position)},
                "state": {"events": []},
                "account_data": {"events": []},
            }

    timelines: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    receipts: dict[str, list[tuple[int, str, datetime]]] = {}
    fresh: set[str] = set()  # rooms the client does not know yet (a family joined)
    joiners: set[str] = set()
    moved: set[str] = set()  # rooms whose unread count may have changed for the account
    for ev, msg in got.rows:
        if msg is not None and msg.kind == SYSTEM and msg.sender_account_id is not None:
            joiners.add(msg.sender_account_id)
        if ev.kind in ("receipt", "hide"):
            changed = ev.account_id == account_id  # my receipt, my "deleted for me"
        else:  # someone else's message, or its recall
            changed = msg is not None and msg.sender_account_id != account_id
        if changed:
            moved.add(ev.conversation_id)
    names = await names_of(s, joiners)
    for ev, msg in got.rows:
        conv = ev.conversation_id
        if not wanted(conv):
            continue
        if ev.kind == "receipt":
            if ev.account_id is not None and ev.message_position is not None:
                receipts.setdefault(conv, []).append((ev.message_position, ev.account_id, ev.at))
            continue
        if msg is None:
            continue
        if ev.kind == "message":
            item = mx.message_event(msg, server, names)
            if msg.kind == SYSTEM and msg.sender_account_id == account_id:
                if decode(msg.body).get("event") == "joined":
                    fresh.add(conv)
        elif ev.kind == "recall":
            sender = mx.user(msg.sender_account_id, server)
            item = mx.redaction(msg, server, at=ev.at, suffix=".r", sender=sender)
        elif ev.kind == "hide":
            me = mx.user(account_id, server)
            item = mx.redaction(msg, server, at=ev.at, suffix=".h", sender=me)
        else:
            continue
        timelines.setdefault(conv, []).append((ev.position, item))

    # a direct conversation whose first message is in this batch is new to the client
    for conv in timelines:
        if conv in fresh or mine.get(conv) is None or mine[conv].since is not None:
            continue
        first = select(func.min(MessageEvent.position)).where(MessageEvent.conversation_id == conv)
        low = (await s.execute(first)).scalar_one_or_none()
        if low is not None and low > token.position:
            fresh.add(conv)

    typing_rooms = {c for c in typing.changed_since(token.typing, set(mine)) if wanted(c)}
    touched = set(timelines) | set(receipts) | typing_rooms
    if full_state:
        touched |= {c for c in mine if wanted(c)}
    unread = await unread_counts(s, account_id, mine, moved)
    for conv in sorted(touched):
        items = timelines.get(conv, [])
        limit = flt.timeline_limit
        limited = len(items) > limit
        kept = items[-limit:] if limit > 0 else []
        prev = cursor(kept[0][0]) if kept else cursor(upto + 1)
        state: list[dict[str, Any]] = []
        if conv in fresh or full_state:
            info = await room_info(s, conv)
            state = mx.room_state(
                mx.room_id(conv, server),
                server,
                name=info.name,
                members=info.members,
                created=info.created,
            )
        ephemeral: list[dict[str, Any]] = []
        if conv in receipts:
            ephemeral.append(
                {"type": "m.receipt", "content": _receipt_content(receipts[conv], server)}
            )
        if conv in typing_rooms:
            ephemeral.append(typing_event(conv, server))
        rooms_join[mx.room_id(conv, server)] = _joined_room(
            [item for _, item in kept],
            limited=limited,
            prev_batch=prev,
            state=state,
            ephemeral=ephemeral,
            unread=unread.get(conv),
        )
    out = empty_response(write_token(upto, max(token.typing, typing.serial)))
    out["rooms"]["join"] = rooms_join
    out["rooms"]["leave"] = rooms_leave
    return Batch(out, upto, bool(rooms_join or rooms_leave))
