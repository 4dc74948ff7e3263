"""Request and response shapes of the messaging API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from kares.fields import Number
from kares.messaging.content import TEXT_MAX

DIGITS = r"^[0-9]{1,18}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DirectIn(_In):
    account_id: str = Field(
        max_length=64, description="The other person: someone you share a family with"
    )


_TXN = Field(
    min_length=1,
    max_length=64,
    description="The client's id of this send: a retry with the same id (from the same "
    "device) returns the first message and stores nothing new",
)


class TextIn(_In):
    txn_id: str = _TXN
    kind: Literal["text"]
    text: str = Field(
        max_length=TEXT_MAX,
        pattern=r"\S",
        description=f"The words: at most {TEXT_MAX} characters, not only spaces",
    )


class AttachmentIn(_In):
    txn_id: str = _TXN
    kind: Literal["image", "voice"]
    attachment_id: str = Field(
        pattern=DIGITS, description="An image or voice note uploaded first, sent once"
    )


class LocationIn(_In):
    txn_id: str = _TXN
    kind: Literal["location"]
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)
    accuracy_m: Number | None = Field(default=None, ge=0, le=100_000, description="null: unknown")


SendIn = Annotated[TextIn | AttachmentIn | LocationIn, Field(discriminator="kind")]


class ReadIn(_In):
    message_id: str = Field(pattern=DIGITS, description="Read up to this message")


class LocationOut(BaseModel):
    lat: float
    lon: float
    accuracy_m: float | None


class AttachmentRef(BaseModel):
    id: str
    url: str
    content_type: str | None = None
    duration_ms: int | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None


class SystemOut(BaseModel):
    event: str = Field(
        description="joined, left, removed, sos_raised, sos_answered or place_arrived"
    )
    place: str | None = None


class MessageOut(BaseModel):
    id: str = Field(description="The message's id: its position")
    position: int
    conversation_id: str
    sender_id: str | None = Field(
        description="null: the sender's account was deleted (the message stays)"
    )
    kind: Literal["text", "image", "voice", "location", "system"]
    sent_at: datetime
    recalled: bool
    text: str | None
    location: LocationOut | None
    attachment: AttachmentRef | None
    system: SystemOut | None


class ConversationOut(BaseModel):
    id: str = Field(description="A family's conversation has the family's id")
    kind: Literal["family", "direct", "watch"]
    family_id: str | None
    title: str | None
    members: list[str] = Field(description="Who may read it now")
    peer_id: str | None
    last_message: MessageOut | None
    unread: int


class Opened(BaseModel):
    conversation: ConversationOut
    created: bool


class Page(BaseModel):
    messages: list[MessageOut] = Field(description="Oldest first")
    before: str | None = Field(description="Cursor for older messages; null at the start")
    after: str = Field(description="Cursor for newer messages (they may arrive any time)")


class ReceiptOut(BaseModel):
    account_id: str
    up_to: str = Field(description="The message read up to")
    read_at: datetime


class AttachmentOut(BaseModel):
    id: str
    kind: Literal["image", "voice"]
    content_type: str
    byte_size: int
    duration_ms: int | None
    codec: str | None
    width: int | None
    height: int | None


class EventOut(BaseModel):
    position: int
    kind: Literal["message", "recall", "receipt", "hide"]
    conversation_id: str
    message: MessageOut | None = None
    account_id: str | None = None
    up_to: int | None = None
    message_position: int | None = None


class EventsOut(BaseModel):
    events: list[EventOut]
    next: int = Field(description="Ask again with after=next")
