"""What a message holds and how it is shown: the body (JSON, encrypted at rest by
its column), the shape a client reads, and history cursors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kares.errors import Problem
from kares.messaging.models import Message

KINDS = ("text", "image", "voice", "location")  # what a person sends
SYSTEM = "system"  # what the domain writes (joined, left, SOS, a place arrived at)
SYSTEM_EVENTS = ("joined", "left", "removed", "sos_raised", "sos_answered", "place_arrived")


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
    if m.recalled_at is not None:
        return out
    body = decode(m.body)
    if m.kind == "text":
        out["text"] = body.get("text")
    elif m.kind == "location":
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
    elif m.kind == SYSTEM:
        out["system"] = {k: v for k, v in body.items() if k in ("event", "place")}
    return out


# --- cursors -------------------------------------------------------------------------------

_PREFIX = "m1."


def cursor(position: int) -> str:
    """An opaque, stable cursor for a place in a conversation's history."""
    raw = f"{position}".encode()
    return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(value: str) -> int:
    """The position a cursor stands for, or 422 ``message.bad_cursor``."""
    bad = Problem(422, "message.bad_cursor", "This is not a cursor this service gave.")
    if not value.startswith(_PREFIX) or len(value) > 40:
        raise bad
    body = value[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad from exc
    if not raw.isdigit() or len(raw) > 18:
        raise bad
    return int(raw)
