"""Chat with a dependant's watch: what the watch records becomes a voice message
from the dependant, and what the family writes to the dependant reaches the
watch, in order, once each (docs/MESSAGING.md, "Chat with a watch").

Free of the wire: the watch protocol's listener (``protocols/watch``) frames
and acknowledges; this module decides where a voice note goes, which messages
the watch is owed next and how far it has acknowledged.

Where a voice note from the watch goes: the conversation of the family the
watch is paired in, as children's-watch apps do (the watch's "family group"
chat, which every guardian bound to the watch hears): the watch has no way
to pick a recipient, and one message keeps one copy of the audio.

What reaches the watch: text and voice messages others send, after the watch
was paired, in that family's conversation and in the dependant's watch
conversations (each member's one-to-one conversation with the dependant). A
voice note reaches it only when the watch can play it (AMR-NB, in one frame);
a watch conversation refuses any other at send time
(``attachments.check_playable``).
Images, shared locations, system notices and recalled messages are not sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.families import service as families
from kares.identity.models import Account
from kares.messaging import service
from kares.messaging.attachments import playable, sniff_voice
from kares.messaging.content import decode
from kares.messaging.models import Attachment, Conversation, Message, WatchChatCursor
from kares.runtime import Runtime

_BATCH = 50


# --- from the watch ---------------------------------------------------------------------------


async def voice_from_watch(
    s: AsyncSession,
    rt: Runtime,
    *,
    wearer: Account,
    family_id: str,
    scope: str,
    audio: bytes,
) -> Message:
    """A voice note the watch recorded, as a voice message from its wearer in the
    family's conversation: the attachment and the message in one transaction.
    Idempotent: the same audio again (the watch resends what we did not
    acknowledge) returns the first message and stores nothing."""
    st = rt.settings
    voice = sniff_voice(audio, max_bytes=st.voice_max_bytes, max_seconds=st.voice_max_seconds)
    txn_id = "watch-voice:" + hashlib.sha256(audio).hexdigest()[:40]
    first = await service.first_of(s, sender=wearer.id, scope=scope, txn_id=txn_id)
    if first is not None:
        return first
    att = Attachment(
        owner_account_id=wearer.id,
        kind="voice",
        content_type=voice.content_type,
        data=audio,
        byte_size=len(audio),
        sha256=hashlib.sha256(audio).hexdigest(),
        duration_ms=voice.duration_ms,
        codec=voice.codec,
        created_at=clock.utcnow(),
    )
    s.add(att)
    await s.flush()
    msg, _ = await service.send(
        s,
        rt,
        sender=wearer,
        scope=scope,
        conversation_id=family_id,
        txn_id=txn_id,
        outgoing=service.Outgoing(kind="voice", attachment_id=att.id),
    )
    return msg


# --- to the watch -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outbound:
    """The next message the watch is owed: a text to show or a voice note to play."""

    position: int
    kind: str  # text | voice
    text: str | None = None
    audio: bytes | None = None


async def _accesses(s: AsyncSession, dependant_id: str, family_id: str) -> list[service.Access]:
    out: list[service.Access] = []
    if await families.member(s, family_id, dependant_id) is not None:
        out.append(await service.access(s, dependant_id, family_id))
    q = select(Conversation.id).where(
        Conversation.kind == "watch",
        or_(Conversation.member_a == dependant_id, Conversation.member_b == dependant_id),
    )
    for (cid,) in (await s.execute(q.order_by(Conversation.id))).all():
        out.append(await service.access(s, dependant_id, cid))
    return [a for a in out if a.exists]


async def delivered_up_to(s: AsyncSession, watch_id: str) -> int:
    cur = await s.get(WatchChatCursor, watch_id)
    return cur.up_to if cur is not None else 0


async def next_for_watch(
    s: AsyncSession,
    *,
    watch_id: str,
    dependant_id: str,
    family_id: str,
    paired_at: datetime,
) -> Outbound | None:
    """The first message after what the watch acknowledged that it should get,
    or None when it is owed nothing."""
    accs = await _accesses(s, dependant_id, family_id)
    if not accs:
        return None
    after = await delivered_up_to(s, watch_id)
    visible = or_(*(service.visible(a, dependant_id) for a in accs))
    while True:
        q = (
            select(Message)
            .where(
                visible,
                Message.position > after,
                Message.sent_at >= paired_at,
                Message.kind.in_(("text", "voice")),
                Message.recalled_at.is_(None),
                Message.sender_account_id.is_not(None),
                Message.sender_account_id != dependant_id,
            )
            .order_by(Message.position)
            .limit(_BATCH)
        )
        rows = list((await s.execute(q)).scalars())
        for m in rows:
            got = await _outbound(s, m)
            if got is not None:
                return got
        if len(rows) < _BATCH:
            return None
        after = rows[-1].position


async def _outbound(s: AsyncSession, m: Message) -> Outbound | None:
    body = decode(m.body)
    if m.kind == "text":
        text = body.get("text")
        if not isinstance(text, str) or not text:
            return None
        sender = await s.get(Account, m.sender_account_id)
        name = sender.name if sender is not None and sender.name else None
        return Outbound(m.position, "text", text=f"{name}: {text}" if name else text)
    if m.attachment_id is None:
        return None
    att = await s.get(Attachment, m.attachment_id)
    if att is None or not playable(att):
        return None  # an Opus note in the family's conversation: the watch cannot play it
    return Outbound(m.position, "voice", audio=att.data)


async def acknowledged(s: AsyncSession, *, watch_id: str, dependant_id: str, position: int) -> None:
    """The watch acknowledged the message at ``position``: it is not sent again.
    Only ever moves forward; committed here."""
    now = clock.utcnow()
    cur = await s.get(WatchChatCursor, watch_id)
    if cur is None:
        s.add(
            WatchChatCursor(
                watch_id=watch_id, account_id=dependant_id, up_to=position, updated_at=now
            )
        )
    elif cur.up_to < position or cur.account_id != dependant_id:
        cur.up_to, cur.account_id, cur.updated_at = position, dependant_id, now
    await s.commit()
