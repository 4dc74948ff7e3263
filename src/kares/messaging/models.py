"""Tables of the messaging domain: conversations, messages and their attachments,
the stream of positions, read receipts and messages hidden for one person.

Rows are identified by integers where they must outlive a person: a message (and
its attachment) stays in the conversation for the others when its sender's
account is deleted, with the sender cleared (``ON DELETE SET NULL`` on the
subject column: the erase engine keeps such a row and drops only the link), and
nothing left in it names the person, not even an id made for them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Encrypted, not_personal, personal, table_info

BigId = BigInteger().with_variant(Integer(), "sqlite")

CONTENT = "messaging.content"
METADATA = "messaging.metadata"


class Conversation(Base):
    """A conversation: a family's group (``family``; its id is the family's id, so
    it is stable and needs no lookup) or two people's (``direct``; ``watch`` when
    one of them is a dependant, whose watch speaks for it). A family
    conversation's members are the family's members at the moment of each
    request; a direct one's are ``member_a`` < ``member_b``."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("member_a", "member_b"),
        table_info(
            subject=None,
            also_about=("member_a", "member_b"),
            not_personal=("id", "kind", "family_id", "created_at"),
            why="a family's conversation is about the family; a direct one names its "
            "two people in member_a and member_b",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(8))  # family | direct | watch
    family_id: Mapped[str | None] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), unique=True
    )
    member_a: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True, info=personal(METADATA)
    )
    member_b: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True, info=personal(METADATA)
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Attachment(Base):
    """An image or a voice note, uploaded before the message that carries it:
    the image re-encoded by the media pipeline (no metadata), the voice note's
    container sniffed and its duration read from it and capped."""

    __tablename__ = "message_attachments"
    __table_args__ = (
        table_info(
            subject="owner_account_id",
            not_personal=("id", "kind", "content_type", "byte_size", "sha256"),
            collected="created_at",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # who uploaded it; cleared (the attachment stays with its message) when the
    # account is deleted
    owner_account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))  # image | voice
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary, info=personal(CONTENT))
    byte_size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer, info=personal(CONTENT))
    height: Mapped[int | None] = mapped_column(Integer, info=personal(CONTENT))
    duration_ms: Mapped[int | None] = mapped_column(Integer, info=personal(CONTENT))
    codec: Mapped[str | None] = mapped_column(String(16), info=personal(CONTENT))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(METADATA))


# what a message must be to count as unread, as written in the partial index
# ix_messages_unread; a query that counts unread messages says it in these very
# words (literals, not parameters), so the database knows the index covers it
UNREAD_WHERE = text("kind != 'system' AND recalled_at IS NULL")
# ... and what a message must be to be a notice, as in ix_messages_notices
NOTICE_WHERE = text("kind = 'system'")


class Message(Base):
    """One message. ``position`` is its place in the stream (``MessageEvent``),
    also its id. ``body`` is JSON, encrypted at rest: the text, the shared
    location, or a system notice's facts."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("sender_account_id", "txn_key"),
        Index("ix_messages_conversation_position", "conversation_id", "position"),
        # unread counts (a count of others' messages after a receipt, from the
        # reader's joining on) read this index alone: migration 0036
        Index(
            "ix_messages_unread",
            "conversation_id",
            "position",
            "sender_account_id",
            "sent_at",
            # ... and the columns of its condition: SQLite (3.40) checks a partial
            # index's condition against the index, which then covers the count
            "kind",
            "recalled_at",
            sqlite_where=UNREAD_WHERE,
            postgresql_where=UNREAD_WHERE,
        ),
        # a person's own notices (a Matrix sync looks for "left" and "removed")
        Index(
            "ix_messages_notices",
            "sender_account_id",
            "position",
            sqlite_where=NOTICE_WHERE,
            postgresql_where=NOTICE_WHERE,
        ),
        table_info(
            subject="sender_account_id",
            not_personal=("position", "conversation_id", "kind", "recalled_at"),
            collected="sent_at",
        ),
    )

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    # cleared when the sender's account is deleted: the message stays for the others
    sender_account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(12))  # text | image | voice | location | system
    body: Mapped[str | None] = mapped_column(Encrypted("messages.body"), info=personal(CONTENT))
    attachment_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("message_attachments.id", ondelete="SET NULL"),
        unique=True,
        info=personal(CONTENT),
    )
    # a digest of (the sender's device or session, the client's transaction id)
    txn_key: Mapped[str | None] = mapped_column(
        String(64),
        info=not_personal("a digest of a client's retry key; names nobody on its own"),
    )
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(METADATA))
    recalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MessageEvent(Base):
    """The stream: every change a member can see gets the next position here, a
    global, strictly increasing integer from the database (Synapse's
    stream_ordering). On PostgreSQL positions are taken under a transaction-scoped
    advisory lock, so they commit in the order they were taken (docs/MESSAGING.md).

    ``kind``: ``message`` (``message_position`` is the message, written by
    ``account_id`` or by no one for a notice), ``recall``, ``receipt`` (``account_id``
    read up to ``message_position``), ``hide`` (seen by ``account_id`` only)."""

    __tablename__ = "message_events"
    __table_args__ = (
        Index("ix_message_events_conversation_position", "conversation_id", "position"),
        {
            **table_info(
                subject="account_id",
                not_personal=("position", "conversation_id", "kind", "message_position"),
                collected="at",
            ),
            # SQLite: AUTOINCREMENT, so a position is never given twice. A plain
            # rowid is the largest one plus one: once the newest event is deleted
            # (its family dissolved, its reader's account erased) the next event
            # would get its number again, at a position a socket had seen, and
            # that socket would skip it for good. (PostgreSQL's sequence never
            # goes back.) Migration 0027.
            "sqlite_autoincrement": True,
        },
    )

    position: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    message_position: Mapped[int | None] = mapped_column(BigInteger)
    # whose receipt or hiding it is; none for a message or a recall (the message
    # names its sender), so a deleted account's receipts go and its messages stay
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(METADATA))


class Receipt(Base):
    """How far a member has read a conversation (visible to its members)."""

    __tablename__ = "message_receipts"
    __table_args__ = (
        table_info(subject="account_id", not_personal=("conversation_id",), collected="read_at"),
    )

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    up_to: Mapped[int] = mapped_column(BigInteger, info=personal(METADATA))
    read_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(METADATA))


class Hidden(Base):
    """A message someone deleted for themselves: hidden from them only."""

    __tablename__ = "message_hidden"
    __table_args__ = (
        table_info(subject="account_id", not_personal=("message_position",), collected="at"),
    )

    message_position: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("messages.position", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(METADATA))


class WatchChatCursor(Base):
    """How far a dependant's watch has received its chat: the position of the last
    message the watch acknowledged (``TK,1`` for a voice note, ``MESSAGE`` for a
    text) over the watch protocol. Messages after it wait, in order, until the
    watch is connected (docs/MESSAGING.md, "Chat with a watch")."""

    __tablename__ = "watch_chat_cursors"
    __table_args__ = (
        table_info(subject="account_id", not_personal=("watch_id",), collected="updated_at"),
    )

    watch_id: Mapped[str] = mapped_column(
        ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True
    )
    # the wearer whose messages these are
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    up_to: Mapped[int] = mapped_column(BigInteger, info=personal(METADATA))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(METADATA))
