"""Messaging actions: conversations, sending (idempotent on the client's
transaction id), history, read receipts, recall, deleting for oneself, and the
system notices the domain writes when something happens in a family.

Who may read a conversation is decided on every request, never remembered:

* a family's conversation: the family's members at that moment, each from the
  moment they joined (a member who leaves or is removed loses it with their next
  request; what was said before stays with those who remain);
* a direct conversation: its two people. Sending needs them to share a family
  still; reading the history they already have does not (it is their own
  correspondence). A conversation of someone else's family, or one the caller is
  not in, is 404 ``conversation.not_found``, like anything of a family one is not
  in (``families``: never a 403 that says it exists).

Every change a member can see takes a position (``messaging.stream``) as the last
step before its commit; the hub hears of it after the commit.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, db, events, live
from kares.db import Conn, Statement
from kares.errors import Problem
from kares.families import service as families
from kares.families.models import Family, FamilyMember
from kares.identity.models import Account
from kares.messaging import stream
from kares.messaging.attachments import check_playable
from kares.messaging.content import KINDS, SYSTEM, TEXT_MAX, cursor, encode, message_out
from kares.messaging.models import UNREAD_WHERE, Attachment, Conversation, Hidden, Message, Receipt
from kares.notify import service as notify
from kares.notify.models import Notification
from kares.runtime import Runtime

TXN_MAX = 64
HISTORY_MAX = 100


# --- errors --------------------------------------------------------------------------------


def _not_found() -> Problem:
    return Problem(404, "conversation.not_found", "No such conversation.")


def _no_message() -> Problem:
    return Problem(404, "message.not_found", "No such message in this conversation.")


# --- who may read what -----------------------------------------------------------------------


@dataclass
class Access:
    """A conversation as the caller may use it now."""

    id: str
    kind: str
    family_id: str | None
    since: datetime | None  # a family conversation: from when the caller joined
    members: list[str] = field(default_factory=list)  # who may read it now
    peer: str | None = None  # a direct conversation: the other person (None: deleted)
    exists: bool = True  # a family's conversation is written at its first event


async def access(s: AsyncSession, account_id: str, conversation_id: str) -> Access:
    """The conversation as ``account_id`` may use it now, or 404."""
    if not families.is_id(conversation_id):
        raise _not_found()
    m = await families.member(s, conversation_id, account_id)
    if m is not None:  # a family's conversation has the family's id
        members = await families.member_ids(s, conversation_id)
        row = await s.get(Conversation, conversation_id)
        return Access(
            conversation_id, "family", conversation_id, m.joined_at, members, exists=row is not None
        )
    row = await s.get(Conversation, conversation_id)
    if row is None or row.kind == "family" or account_id not in (row.member_a, row.member_b):
        raise _not_found()
    peer = row.member_b if row.member_a == account_id else row.member_a
    members = [a for a in (row.member_a, row.member_b) if a is not None]
    return Access(row.id, row.kind, None, None, members, peer=peer)


async def ensure_family_conversation(s: AsyncSession, family_id: str) -> None:
    """The family's conversation row (its id is the family's), written once."""
    ins = db.insert_for(s)(Conversation).values(
        id=family_id, kind="family", family_id=family_id, created_at=clock.utcnow()
    )
    await s.execute(ins.on_conflict_do_nothing())


async def _may_send(s: AsyncSession, acc: Access, account_id: str) -> None:
    if acc.kind == "family":
        return
    if acc.peer is None:
        raise Problem(409, "conversation.closed", "The other person's account was deleted.")
    if not await families.shared_memberships(s, account_id, acc.peer):
        raise Problem(
            403,
            "conversation.no_shared_family",
            "You no longer share a family with this person: the history stays, "
            "new messages cannot be sent.",
        )


# --- conversations ----------------------------------------------------------------------------


async def open_direct(
    s: AsyncSession, *, account_id: str, other_id: str
) -> tuple[Conversation, bool]:
    """The one conversation of two people who share a family; opening it again
    returns the same one. ``watch`` when the other is a dependant in a shared family
    (its watch speaks for it). Returns it and whether it was made now."""
    if other_id == account_id:
        # 409, not 422: the id is well formed; that it is the caller's own is a fact of
        # who asks, not of the request (schemathesis rightly calls it valid input)
        raise Problem(409, "conversation.self", "A conversation is with someone else.")
    shared = (
        await families.shared_memberships(s, account_id, other_id)
        if families.is_id(other_id)
        else []
    )
    if not shared:
        raise Problem(404, "conversation.person_not_found", "No such person in your families.")
    a, b = sorted((account_id, other_id))
    kind = "watch" if any(m.role == "dependant" for m in shared) else "direct"
    found = await _pair(s, a, b)
    if found is not None:
        return found, False
    conv = Conversation(kind=kind, member_a=a, member_b=b, created_at=clock.utcnow())
    s.add(conv)
    try:
        await s.flush()
    except IntegrityError:  # opened by a concurrent request: that one
        await s.rollback()
        again = await _pair(s, a, b)
        if again is None:
            raise
        return again, False
    await s.commit()
    return conv, True


async def direct_between(s: AsyncSession, a: str, b: str) -> Conversation:
    """The one conversation of two people (opened by neither yet: made now), in
    the caller's transaction: what happens between them (a missed call) is
    told there."""
    x, y = sorted((a, b))
    found = await _pair(s, x, y)
    if found is not None:
        return found
    shared = await families.shared_memberships(s, a, b)
    kind = "watch" if any(m.role == "dependant" for m in shared) else "direct"
    ins = db.insert_for(s)(Conversation).values(
        id=db.new_id(), kind=kind, member_a=x, member_b=y, created_at=clock.utcnow()
    )
    await s.execute(ins.on_conflict_do_nothing())  # or opened meanwhile: that one
    made = await _pair(s, x, y)
    assert made is not None
    return made


async def _pair(s: AsyncSession, a: str, b: str) -> Conversation | None:
    q = select(Conversation).where(Conversation.member_a == a, Conversation.member_b == b)
    return (await s.execute(q)).scalar_one_or_none()


def visible(acc: Access, account_id: str) -> Any:
    """Messages of the conversation the caller may read: from their joining, not
    hidden by them."""
    hidden = select(Hidden.message_position).where(Hidden.account_id == account_id)
    cond = and_(Message.conversation_id == acc.id, Message.position.not_in(hidden))
    if acc.since is not None:
        cond = and_(cond, Message.sent_at >= acc.since)
    return cond


async def _unread(s: AsyncSession, acc: Access, account_id: str) -> int:
    r = await s.get(Receipt, (acc.id, account_id))
    q = (
        select(func.count())
        .select_from(Message)
        .where(
            visible(acc, account_id),
            Message.position > (r.up_to if r is not None else 0),
            UNREAD_WHERE,  # in the words of ix_messages_unread
            or_(Message.sender_account_id.is_(None), Message.sender_account_id != account_id),
        )
    )
    return int((await s.execute(q)).scalar_one())


async def _last(s: AsyncSession, acc: Access, account_id: str) -> Message | None:
    q = select(Message).where(visible(acc, account_id)).order_by(Message.position.desc()).limit(1)
    return (await s.execute(q)).scalar_one_or_none()


async def conversation_out(s: AsyncSession, acc: Access, account_id: str) -> dict[str, Any]:
    title = None
    if acc.family_id is not None:
        fam = await s.get(Family, acc.family_id)
        title = fam.name if fam is not None else None
    last = await _last(s, acc, account_id) if acc.exists else None
    return {
        "id": acc.id,
        "kind": acc.kind,
        "family_id": acc.family_id,
        "title": title,
        "members": sorted(acc.members),
        "peer_id": acc.peer,
        "last_message": message_out(last) if last is not None else None,
        "unread": await _unread(s, acc, account_id) if acc.exists else 0,
    }


async def list_conversations(s: AsyncSession, *, account_id: str) -> list[dict[str, Any]]:
    """The caller's conversations, the most recently active first."""
    out = []
    for ms in await families.families_of(s, account_id):
        out.append(await conversation_out(s, await access(s, account_id, ms.family.id), account_id))
    q = select(Conversation.id).where(
        Conversation.kind != "family",
        or_(Conversation.member_a == account_id, Conversation.member_b == account_id),
    )
    for (cid,) in (await s.execute(q)).all():
        out.append(await conversation_out(s, await access(s, account_id, cid), account_id))
    out.sort(key=lambda c: -(c["last_message"]["position"] if c["last_message"] else 0))
    return out


# --- sending ------------------------------------------------------------------------------------


def txn_key(scope: str, txn_id: str) -> str:
    """The retry key of one client's transaction: its device (or session) and id."""
    return hashlib.sha256(f"{scope}\n{txn_id}".encode()).hexdigest()


async def _by_txn(s: AsyncSession, sender: str, key: str) -> Message | None:
    q = select(Message).where(Message.sender_account_id == sender, Message.txn_key == key)
    return (await s.execute(q)).scalar_one_or_none()


@dataclass(frozen=True)
class Outgoing:
    kind: str
    text: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    attachment_id: int | None = None
    # what a wire format keeps beside the message so that it reads back the same
    # (the Matrix client API: the content's other keys, its msgtype); part of the
    # body, encrypted and exported and erased with it
    extra: dict[str, Any] | None = None


async def _body(
    s: AsyncSession, rt: Runtime, sender: str, out: Outgoing, *, to_watch: bool = False
) -> tuple[dict[str, Any], int | None]:
    """Check what is sent and make its body; the attachment it uses, if any."""
    body, attachment_id = await _checked_body(s, rt, sender, out, to_watch=to_watch)
    if out.extra:
        body["extra"] = out.extra
    return body, attachment_id


async def _checked_body(
    s: AsyncSession, rt: Runtime, sender: str, out: Outgoing, *, to_watch: bool
) -> tuple[dict[str, Any], int | None]:
    if out.kind not in KINDS:
        raise Problem(422, "message.invalid_kind", f"A message is one of {', '.join(KINDS)}.")
    if out.kind == "text":
        text = (out.text or "").strip()
        if not text:
            raise Problem(422, "message.empty", "A text message needs some text.")
        if len(text) > TEXT_MAX:
            raise Problem(422, "message.too_long", f"A message has at most {TEXT_MAX} characters.")
        return {"text": text}, None
    if out.kind == "location":
        if out.lat is None or out.lon is None:
            raise Problem(422, "message.invalid", "A shared location needs lat and lon.")
        return {"lat": out.lat, "lon": out.lon, "accuracy_m": out.accuracy_m}, None
    if out.attachment_id is None:
        raise Problem(422, "message.invalid", f"A {out.kind} message needs its attachment_id.")
    # locked (PostgreSQL): the job that deletes unsent attachments waits for this send
    att = await s.get(Attachment, out.attachment_id, with_for_update=True)
    if att is None or att.owner_account_id != sender:
        raise Problem(404, "attachment.not_found", "No such attachment of yours.")
    if att.kind != out.kind:
        raise Problem(422, "message.invalid", f"This attachment is not a {out.kind}.")
    used = select(Message.position).where(Message.attachment_id == att.id)
    if (await s.execute(used)).first() is not None:
        raise Problem(409, "attachment.used", "This attachment was already sent.")
    if to_watch:
        check_playable(att)
    body: dict[str, Any] = {"content_type": att.content_type}
    if att.kind == "image":
        body.update(width=att.width, height=att.height)
    else:
        body.update(duration_ms=att.duration_ms, codec=att.codec)
    return body, att.id


_PREVIEW = {
    "text": "sent a message",
    "image": "sent a photo",
    "voice": "sent a voice message",
    "location": "shared a location",
}


async def _offline(members: list[str], sender_id: str) -> list[str]:
    """The conversation's other members with no live client: none in this process
    (the hub) and, with Redis, no device present in another (``live.presence``:
    a member whose socket is held by another process of ``--workers`` is live
    too). Asked before the send writes anything, so no transaction waits on Redis."""
    others = [a for a in members if a != sender_id]
    here = live.hub.connected(others)
    rest = [a for a in others if a not in here]
    if rest and live.hub.bridge is not None:
        far = await live.presence.devices(rest)
        here |= {a for a, devices in far.items() if devices}
    return [a for a in others if a not in here]


async def _push(
    s: AsyncSession, acc: Access, sender: Account, msg: Message, offline: list[str]
) -> None:
    """Recipients with no live client (``offline``) get a notice and a push. What
    is stored and pushed names nobody and says nothing of the words ("A family
    member sent a photo"): the push services see only that there is a message,
    and a person's inbox (and its copy in their data archive) holds no one
    else's name. The inbox shows the sender's name, read when the notice is
    (``_shown``)."""
    if not offline:
        return
    await notify.send(
        s,
        account_ids=offline,
        category="messages",
        title="New message",
        body=f"A family member {_PREVIEW.get(msg.kind, 'sent a message')}.",
        # no one's id: the message says who sent it, for as long as it can (a
        # deleted sender's notice stays, naming nobody, like the message)
        data={notify.RENDER: "message", "conversation_id": acc.id, "position": msg.position},
    )


@notify.renderer("message")
async def _shown(s: AsyncSession, note: Notification) -> notify.Shown | None:
    """A message notice as its recipient reads it: who sent it, named now."""
    msg = await s.get(Message, note.data.get("position"))
    sender = await s.get(Account, msg.sender_account_id) if msg and msg.sender_account_id else None
    if msg is None or sender is None or not sender.name:
        return None
    preview = "recalled a message" if msg.recalled_at else _PREVIEW.get(msg.kind, "sent a message")
    return notify.Shown(sender.name[:100], f"{sender.name} {preview}.", dict(note.data))


async def first_of(s: AsyncSession, *, sender: str, scope: str, txn_id: str) -> Message | None:
    """The message a client's transaction already stored, if any."""
    return await _by_txn(s, sender, txn_key(scope, txn_id))


async def send(
    s: AsyncSession,
    rt: Runtime,
    *,
    sender: Account,
    scope: str,
    conversation_id: str,
    txn_id: str,
    outgoing: Outgoing,
) -> tuple[Message, bool]:
    """Send a message; returns it and whether it was stored now. A retry of the
    same (sender, device or session, ``txn_id``) returns the first message and
    stores nothing, also when both arrive at once."""
    if not 1 <= len(txn_id) <= TXN_MAX:
        raise Problem(422, "message.invalid_txn", f"A txn_id has 1 to {TXN_MAX} characters.")
    acc = await access(s, sender.id, conversation_id)
    key = txn_key(scope, txn_id)
    first = await _by_txn(s, sender.id, key)
    if first is not None:
        return first, False
    await _may_send(s, acc, sender.id)
    offline = await _offline(acc.members, sender.id)
    # a dependant's watch conversation: a voice note in it must play on the watch
    body, attachment_id = await _body(s, rt, sender.id, outgoing, to_watch=acc.kind == "watch")
    sender_id = sender.id
    if acc.kind == "family":
        await ensure_family_conversation(s, acc.id)
    now = clock.utcnow()
    position = await stream.take_message(s, conversation_id=acc.id, about=sender_id, at=now)
    # under the position lock (PostgreSQL): a concurrent twin has committed by now
    if await _by_txn(s, sender_id, key) is not None:
        await s.rollback()  # the position taken goes unused: a gap nobody waits for
        twin = await _by_txn(s, sender_id, key)
        assert twin is not None
        return twin, False
    msg = Message(
        position=position,
        conversation_id=acc.id,
        sender_account_id=sender_id,
        kind=outgoing.kind,
        body=encode(body),
        attachment_id=attachment_id,
        txn_key=key,
        sent_at=now,
    )
    s.add(msg)
    try:
        await s.flush()
    except IntegrityError:  # SQLite: the twin committed between our read and write
        await s.rollback()
        again = await _by_txn(s, sender_id, key)
        if again is None:
            if attachment_id is not None and await s.get(Attachment, attachment_id) is None:
                # deleted as unsent at this very moment (KARES_ATTACHMENT_UNSENT_HOURS)
                raise Problem(404, "attachment.not_found", "No such attachment of yours.") from None
            raise
        return again, False
    await _push(s, acc, sender, msg, offline)
    await s.commit()
    return msg, True


# --- sending, the steady state -------------------------------------------------------------------

# send_steady's statements, built once (kares.db.Statement); parameters are not
# named after the columns they fill (SQLAlchemy reserves those names)
_MEMBERS = Statement(
    select(FamilyMember.account_id).where(FamilyMember.family_id == bindparam("family_id"))
)
_TXN = Statement(
    select(Message.position).where(
        Message.sender_account_id == bindparam("sender"), Message.txn_key == bindparam("key")
    )
)
_FAMILY_CONVERSATION = Statement(  # SQLite's ON CONFLICT: the steady path is SQLite's
    sqlite_insert(Conversation)
    .values(
        id=bindparam("family"),
        kind="family",
        family_id=bindparam("family"),
        created_at=bindparam("at"),
    )
    .on_conflict_do_nothing()
)
_MESSAGE = Statement(
    insert(Message).values(
        position=bindparam("taken"),
        conversation_id=bindparam("family"),
        sender_account_id=bindparam("sender"),
        kind="text",
        body=bindparam("words"),
        attachment_id=None,
        txn_key=bindparam("key"),
        sent_at=bindparam("at"),
        recalled_at=None,
    )
)


async def send_steady(
    tx: Conn,
    *,
    sender_id: str,
    scope: str,
    conversation_id: str,
    txn_id: str,
    text: str,
    extra: dict[str, Any] | None = None,
) -> Message | None:
    """A text message to a family's conversation in the steady state, on a bare
    transaction (``kares.db.Tx``, SQLite), with statements built once: what
    :func:`send` does for it when nothing about it needs more. It is the steady
    state when the sender is a member of the family, the transaction id is new,
    the text is one :func:`send` takes as it is, and every other member has a
    live client (so nobody gets a notice). The message is written but not
    committed; the caller commits. Otherwise it returns None, having written
    nothing that will stay (the caller's transaction is rolled back), and the
    route runs :func:`send`, which decides the same and does the rest (the
    errors, a retry's first message, the notices). ``extra``: what a wire format
    keeps beside the words (``Outgoing.extra``)."""
    if not (1 <= len(txn_id) <= TXN_MAX and families.is_id(conversation_id)):
        return None
    body = text.strip()
    if not body or len(body) > TEXT_MAX:
        return None
    members = [r[0] for r in await _MEMBERS.rows(tx, {"family_id": conversation_id})]
    if sender_id not in members:
        return None  # not a family's conversation the sender is in: the route says why
    key = txn_key(scope, txn_id)
    if await _TXN.first(tx, {"sender": sender_id, "key": key}) is not None:
        return None  # a retry: the route answers with the first message
    if await _offline(members, sender_id):
        return None  # somebody gets a notice: the route writes it
    now = clock.utcnow()
    await _FAMILY_CONVERSATION.run(tx, {"family": conversation_id, "at": now})
    position = await stream.take_message(
        tx, conversation_id=conversation_id, about=sender_id, at=now
    )
    stored = encode({"text": body, "extra": extra} if extra else {"text": body})
    try:
        await _MESSAGE.run(
            tx,
            {
                "taken": position,
                "family": conversation_id,
                "sender": sender_id,
                "words": stored,
                "key": key,
                "at": now,
            },
        )
    except sqlite3.IntegrityError:
        return None  # a twin committed between the read and the write: the route answers
    return Message(
        position=position,
        conversation_id=conversation_id,
        sender_account_id=sender_id,
        kind="text",
        body=stored,
        attachment_id=None,
        txn_key=key,
        sent_at=now,
        recalled_at=None,
    )


# --- notices the domain writes ------------------------------------------------------------------


async def post_system(
    s: AsyncSession,
    *,
    conversation_id: str,
    about: str | None,
    event: str,
    family: bool = True,
    **facts: Any,
) -> Message:
    """A system notice in a conversation, in the caller's transaction. ``about``
    is the person it is about (its sender: the notice goes with the others'
    copy of their messages, and names no one in its body). ``family``: the
    conversation is a family's (written at its first event); otherwise it is
    one that exists (``direct_between``)."""
    if family:
        await ensure_family_conversation(s, conversation_id)
    now = clock.utcnow()
    position = await stream.take_message(s, conversation_id=conversation_id, about=about, at=now)
    msg = Message(
        position=position,
        conversation_id=conversation_id,
        sender_account_id=about,
        kind=SYSTEM,
        body=encode({"event": event, **facts}),
        sent_at=now,
    )
    s.add(msg)
    await s.flush()
    return msg


@events.listen("family.created")
async def _family_created(s: AsyncSession, *, family_id: str, account_id: str) -> None:
    await ensure_family_conversation(s, family_id)


@events.listen("family.joined")
async def _joined(s: AsyncSession, *, family_id: str, account_id: str) -> None:
    await post_system(s, conversation_id=family_id, about=account_id, event="joined")


@events.listen("family.left")
async def _left(s: AsyncSession, *, family_id: str, account_id: str) -> None:
    await post_system(s, conversation_id=family_id, about=account_id, event="left")


@events.listen("family.removed")
async def _removed(s: AsyncSession, *, family_id: str, account_id: str) -> None:
    await post_system(s, conversation_id=family_id, about=account_id, event="removed")


async def _families_of(s: AsyncSession, account_id: str) -> list[str]:
    q = select(FamilyMember.family_id).where(FamilyMember.account_id == account_id)
    return sorted((await s.execute(q)).scalars())


@events.listen("sos.raised")
async def _sos_raised(s: AsyncSession, *, account_id: str) -> None:
    for fid in await _families_of(s, account_id):
        await post_system(s, conversation_id=fid, about=account_id, event="sos_raised")


@events.listen("sos.answered")
async def _sos_answered(s: AsyncSession, *, account_id: str, responder_id: str) -> None:
    mine = set(await _families_of(s, account_id))
    for fid in await _families_of(s, responder_id):
        if fid in mine:
            await post_system(s, conversation_id=fid, about=responder_id, event="sos_answered")


@events.listen("place.arrived")
async def _arrived(
    s: AsyncSession, *, account_id: str, family_id: str | None, place_name: str
) -> None:
    """A family place arrived at, told in that family's conversation only while
    the person shares their location with it."""
    if family_id is None:
        return
    m = await families.member(s, family_id, account_id)
    if m is None or not families.allows(m, families.LIVE_LOCATION, clock.utcnow()):
        return
    await post_system(
        s, conversation_id=family_id, about=account_id, event="place_arrived", place=place_name
    )


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    messages: list[Message]
    before: str | None  # a cursor for older messages (None: this is the start)
    after: str  # a cursor for newer ones (always: new messages may come)


async def history(
    s: AsyncSession,
    *,
    account_id: str,
    conversation_id: str,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Page:
    """A page of the conversation, oldest first: the newest ``limit`` messages
    (before a cursor, when given), or the oldest ``limit`` after a cursor (and
    before the other, when both are given). Positions never change, so a cursor
    means the same place however many messages arrive while a client pages."""
    limit = max(1, min(limit, HISTORY_MAX))
    acc = await access(s, account_id, conversation_id)
    if not acc.exists:
        return Page([], None, cursor(after or 0))
    q = select(Message).where(visible(acc, account_id))
    if after is not None:
        if before is not None:
            q = q.where(Message.position < before)
        q = q.where(Message.position > after).order_by(Message.position).limit(limit + 1)
        rows = list((await s.execute(q)).scalars())
        page = rows[:limit]
    else:
        if before is not None:
            q = q.where(Message.position < before)
        q = q.order_by(Message.position.desc()).limit(limit + 1)
        rows = list((await s.execute(q)).scalars())
        page = list(reversed(rows[:limit]))
    if page:
        older = select(Message.position).where(
            visible(acc, account_id), Message.position < page[0].position
        )
        has_older = (await s.execute(older.limit(1))).first() is not None
        return Page(
            page, cursor(page[0].position) if has_older else None, cursor(page[-1].position)
        )
    # nothing there: nothing older either; newer ones come after the cursor given
    anchor = after if after is not None else (before or 1) - 1
    return Page([], None, cursor(max(anchor, 0)))


async def _message(s: AsyncSession, acc: Access, account_id: str, position: int) -> Message:
    q = select(Message).where(visible(acc, account_id), Message.position == position)
    m = (await s.execute(q)).scalar_one_or_none()
    if m is None:
        raise _no_message()
    return m


def parse_message_id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise _no_message()
    return int(value)


async def mark_read(
    s: AsyncSession, *, account_id: str, conversation_id: str, position: int
) -> Receipt:
    """The caller has read up to this message: a receipt the conversation sees. It
    only moves forward; reading an older message again changes nothing."""
    acc = await access(s, account_id, conversation_id)
    if not acc.exists:
        raise _no_message()
    await _message(s, acc, account_id, position)
    r = await s.get(Receipt, (acc.id, account_id))
    if r is not None and r.up_to >= position:
        return r
    now = clock.utcnow()
    await stream.take(
        s,
        conversation_id=acc.id,
        kind="receipt",
        about=account_id,
        account_id=account_id,
        message_position=position,
        at=now,
    )
    if r is None:
        r = Receipt(conversation_id=acc.id, account_id=account_id, up_to=position, read_at=now)
        s.add(r)
    else:
        r.up_to, r.read_at = position, now
    await s.flush()
    await s.commit()
    return r


async def receipts(s: AsyncSession, *, account_id: str, conversation_id: str) -> list[Receipt]:
    """How far each member who may read the conversation now has read it."""
    acc = await access(s, account_id, conversation_id)
    if not acc.exists or not acc.members:
        return []
    q = (
        select(Receipt)
        .where(Receipt.conversation_id == acc.id, Receipt.account_id.in_(acc.members))
        .order_by(Receipt.account_id)
    )
    return list((await s.execute(q)).scalars())


async def unread(s: AsyncSession, *, account_id: str, conversation_id: str) -> int:
    acc = await access(s, account_id, conversation_id)
    return await _unread(s, acc, account_id) if acc.exists else 0


# --- recall and deleting for oneself --------------------------------------------------------------


async def recall(
    s: AsyncSession, rt: Runtime, *, account_id: str, conversation_id: str, position: int
) -> Message:
    """The sender takes a message back within the recall window: its words and
    attachment go, a "recalled" marker keeps its place for everyone."""
    acc = await access(s, account_id, conversation_id)
    if not acc.exists:
        raise _no_message()
    m = await _message(s, acc, account_id, position)
    if m.kind == SYSTEM or m.sender_account_id != account_id:
        raise Problem(403, "message.not_sender", "Only the sender can recall a message.")
    if m.recalled_at is not None:
        return m
    now = clock.utcnow()
    window = timedelta(seconds=rt.settings.message_recall_seconds)
    if now - m.sent_at > window:
        raise Problem(
            409,
            "message.recall_expired",
            f"A message can be recalled for {rt.settings.message_recall_seconds} seconds "
            "after it was sent.",
        )
    attachment = m.attachment_id
    await stream.take(
        s,
        conversation_id=acc.id,
        kind="recall",
        about=account_id,
        message_position=m.position,
        at=now,
    )
    m.recalled_at = now
    m.body = None
    m.attachment_id = None
    await s.flush()
    if attachment is not None:
        await s.execute(
            delete(Attachment)
            .where(Attachment.id == attachment)
            .execution_options(synchronize_session=False)
        )
    await s.commit()
    return m


async def hide(s: AsyncSession, *, account_id: str, conversation_id: str, position: int) -> None:
    """Delete a message for oneself: hidden from the caller only; again is a no-op."""
    acc = await access(s, account_id, conversation_id)
    if not acc.exists:
        raise _no_message()
    q = select(Message).where(
        Message.conversation_id == acc.id,
        Message.position == position,
        *([Message.sent_at >= acc.since] if acc.since is not None else []),
    )
    m = (await s.execute(q)).scalar_one_or_none()
    if m is None:
        raise _no_message()
    if await s.get(Hidden, (position, account_id)) is not None:
        return
    now = clock.utcnow()
    await stream.take(
        s,
        conversation_id=acc.id,
        kind="hide",
        about=account_id,
        account_id=account_id,
        message_position=position,
        at=now,
    )
    s.add(Hidden(message_position=position, account_id=account_id, at=now))
    try:
        await s.flush()
    except IntegrityError:  # hidden by a concurrent request of the same person
        await s.rollback()
        return
    await s.commit()


async def attachment_for(s: AsyncSession, *, account_id: str, attachment_id: int) -> Attachment:
    """An attachment its uploader may read, or anyone who may read a message that
    carries it; 404 otherwise."""
    att = await s.get(Attachment, attachment_id)
    if att is None:
        raise Problem(404, "attachment.not_found", "No such attachment.")
    if att.owner_account_id == account_id:
        return att
    q = select(Message).where(Message.attachment_id == attachment_id)
    m = (await s.execute(q)).scalar_one_or_none()
    if m is not None:
        try:
            acc = await access(s, account_id, m.conversation_id)
            await _message(s, acc, account_id, m.position)
            return att
        except Problem:
            pass
    raise Problem(404, "attachment.not_found", "No such attachment.")
