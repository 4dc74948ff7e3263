"""What a message holds and how it is shown: the body (JSON, encrypted at rest by
its column), the shape a client reads, and history cursors."""

from __future__ import annotations

import json
import re
from typing import Any

from kares.errors import Problem
from kares.messaging.models import Message

KINDS = ("text", "image", "voice", "location")  # what a person sends
TEXT_MAX = 4000  # characters of a text message
SYSTEM = "system"  # what the domain writes (joined, left, SOS, a place arrived at)
# ... and what other domains write through it (call_missed: kares.calls, in the
# two people's conversation, its sender the caller)
SYSTEM_EVENTS = (
    "joined",
    "left",
    "removed",
    "sos_raised",
    "sos_answered",
    "place_arrived",
    "call_missed",
)


def encode(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def decode(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    got = json.loads(raw)
    return got if isinstance(got, dict) else {}


def message_out(m: Message) -> dict[str, Any]:
    """A message as every member reads it. A recalled message keeps its place and
    says so, with nothing of what it said; a deleted sender is ``null``."""
    out: dict[str, Any] = {
        "id": str(m.position),
        "position": m.position,
        "conversation_id": m.conversation_id,
        "sender_id": m.sender_account_id,
        "kind": m.kind,
        "sent_at": m.sent_at.isoformat(),
        "recalled": m.recalled_at is not None,
        "text": None,
        "location": None,
        "attachment": None,
        "system": None,
    }
    body = decode(m.body)
    if m.recalled_at is not None or not body:
        return out  # recalled, or its sender deleted what it said (policy 5.2)
    if m.kind == "text":
        out["text"] = body.get("text")
    elif m.kind == "location" and "lat" in body and "lon" in body:
        out["location"] = {k: body.get(k) for k in ("lat", "lon", "accuracy_m")}
    elif m.kind in ("image", "voice"):
        if m.attachment_id is not None:
            att = {
                "id": str(m.attachment_id),
                "url": f"/api/v1/messaging/attachments/{m.attachment_id}",
            }
            att.update(
                {
                    k: body[k]
                    for k in ("content_type", "duration_ms", "codec", "width", "height")
                    if k in body
                }
            )
            out["attachment"] = att
    elif m.kind == SYSTEM and isinstance(body.get("event"), str):
        out["system"] = {k: v for k, v in body.items() if k in ("event", "place")}
    return out


# --- cursors -------------------------------------------------------------------------------

# A cursor is "p" and a position in base 36: opaque to clients (they hand back what
# a page gave), and every string of its pattern is one, so the schema says it all.
CURSOR_PATTERN = r"^p[0-9a-z]{1,12}$"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def cursor(position: int) -> str:
    """An opaque, stable cursor for a place in a conversation's history."""
    out, n = "", max(int(position), 0)
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return "p" + out


def read_cursor(value: str) -> int:
    """The position a cursor stands for, or 422 ``message.bad_cursor``."""
    if not re.fullmatch(CURSOR_PATTERN, value):
        raise Problem(422, "message.bad_cursor", "This is not a cursor this service gave.")
    return int(value[1:], 36)
