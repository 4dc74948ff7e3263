"""Kares conversations and messages as Matrix rooms and events.

* A conversation is the room ``!<conversation id>:<server name>`` (a family's
  conversation has the family's id, so its room id never changes).
* A message at position P is the event ``$<P>:<server name>``; its recall is
  the ``m.room.redaction`` ``$<P>.r:<server name>``, a "deleted for me" the
  redaction ``$<P>.h:<server name>`` (sent to that person only). Ids are
  derived from positions, so every process and every restart gives the same.
* ``origin_server_ts`` is the time sent, in milliseconds.
* System notices: ``joined`` is an ``m.room.member`` join, ``left`` and
  ``removed`` a leave (in the timeline, with its ``state_key``); the others
  (an SOS raised or answered, a place arrived at) are ``m.notice`` messages
  sent by the person they are about (by ``@kares:<server>``, the server's
  notices user, when that account is gone). A deleted account's messages are
  sent by ``@deleted:<server>``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from kares.messaging.content import SYSTEM, decode
from kares.messaging.models import Message
from kares.protocols.matrix import ids

NOTICES_LOCALPART = "kares"
DELETED_LOCALPART = "deleted"
ROOM_VERSION = "10"
TEXT_TYPES = ("m.text", "m.notice", "m.emote")
_EVENT = re.compile(r"^\$([1-9][0-9]{0,17}):(.+)$")

_NOTICE_TEXT = {
    "sos_raised": "raised an SOS.",
    "sos_answered": "answered the SOS.",
    "place_arrived": "arrived at {place}.",
}


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def room_id(conversation_id: str, server: str) -> str:
    return f"!{conversation_id}:{server}"


def conversation_of(room: str, server: str) -> str | None:
    """The conversation id a room id names on this server, or None."""
    if not room.startswith("!"):
        return None
    local, sep, host = room[1:].partition(":")
    if not sep or host != server or not local:
        return None
    return local


def event_id(position: int, server: str, suffix: str = "") -> str:
    return f"${position}{suffix}:{server}"


def position_of(event: str, server: str) -> int | None:
    """The message position an event id of ours names, or None."""
    m = _EVENT.match(event)
    if m is None or m.group(2) != server:
        return None
    return int(m.group(1))


def user(account_id: str | None, server: str) -> str:
    return ids.user_id(account_id, server) if account_id else f"@{DELETED_LOCALPART}:{server}"


def notices_user(server: str) -> str:
    return f"@{NOTICES_LOCALPART}:{server}"


def membership(
    room: str, server: str, account_id: str, state: str, name: str | None, at: datetime, eid: str
) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": state}
    if state == "join":
        content["displayname"] = name
    uid = ids.user_id(account_id, server)
    return {
        "type": "m.room.member",
        "event_id": eid,
        "sender": uid,
        "state_key": uid,
        "room_id": room,
        "origin_server_ts": ms(at),
        "content": content,
        "unsigned": {},
    }


def _content(m: Message, server: str) -> dict[str, Any]:
    body = decode(m.body)
    extra = body.get("extra") if isinstance(body.get("extra"), dict) else {}
    out: dict[str, Any] = dict(extra or {})
    if m.kind == "text":
        kind = out.get("msgtype")
        out["msgtype"] = kind if kind in TEXT_TYPES else "m.text"
        out["body"] = body.get("text", "")
    elif m.kind == "image" and m.attachment_id is not None:
        out.update(
            msgtype="m.image",
            body=out.get("body") or "image",
            url=f"mxc://{server}/{m.attachment_id}",
            info={
                "mimetype": body.get("content_type"),
                "w": body.get("width"),
                "h": body.get("height"),
            },
        )
    elif m.kind == "voice" and m.attachment_id is not None:
        out.update(
            msgtype="m.audio",
            body=out.get("body") or "voice message",
            url=f"mxc://{server}/{m.attachment_id}",
            info={"mimetype": body.get("content_type"), "duration": body.get("duration_ms")},
        )
        out.setdefault("org.matrix.msc3245.voice", {})
    elif m.kind == "location" and "lat" in body and "lon" in body:
        geo = f"geo:{body['lat']},{body['lon']}"
        if body.get("accuracy_m") is not None:
            geo += f";u={body['accuracy_m']}"
        out.update(msgtype="m.location", body=out.get("body") or "Location", geo_uri=geo)
    else:  # its sender deleted what it said, or an attachment that is gone
        return {}
    return out


def message_event(m: Message, server: str, names: dict[str, str | None]) -> dict[str, Any]:
    """The event of a message as it reads now (a recalled one redacted)."""
    room = room_id(m.conversation_id, server)
    eid = event_id(m.position, server)
    if m.kind == SYSTEM:
        facts = decode(m.body)
        what = facts.get("event")
        if m.sender_account_id is not None and what in ("joined", "left", "removed"):
            state = "join" if what == "joined" else "leave"
            name = names.get(m.sender_account_id)
            return membership(room, server, m.sender_account_id, state, name, m.sent_at, eid)
        text = _NOTICE_TEXT.get(str(what), "")
        if "{place}" in text:
            text = text.format(place=facts.get("place") or "a family place")
        sender = ids.user_id(m.sender_account_id, server) if m.sender_account_id else None
        return {
            "type": "m.room.message",
            "event_id": eid,
            "sender": sender or notices_user(server),
            "room_id": room,
            "origin_server_ts": ms(m.sent_at),
            "content": {"msgtype": "m.notice", "body": text or "Something happened."},
            "unsigned": {},
        }
    out: dict[str, Any] = {
        "type": "m.room.message",
        "event_id": eid,
        "sender": user(m.sender_account_id, server),
        "room_id": room,
        "origin_server_ts": ms(m.sent_at),
        "content": _content(m, server) if m.recalled_at is None else {},
        "unsigned": {},
    }
    if m.recalled_at is not None:
        out["unsigned"]["redacted_because"] = {
            "type": "m.room.redaction",
            "event_id": event_id(m.position, server, ".r"),
            "sender": out["sender"],
            "origin_server_ts": ms(m.recalled_at),
            "redacts": eid,
            "content": {"redacts": eid},
        }
    return out


def redaction(m: Message, server: str, *, at: datetime, suffix: str, sender: str) -> dict[str, Any]:
    eid = event_id(m.position, server)
    return {
        "type": "m.room.redaction",
        "event_id": event_id(m.position, server, suffix),
        "sender": sender,
        "room_id": room_id(m.conversation_id, server),
        "origin_server_ts": ms(at),
        "redacts": eid,
        "content": {"redacts": eid},
        "unsigned": {},
    }


def room_state(
    room: str,
    server: str,
    *,
    name: str | None,
    members: list[tuple[str, str | None]],
    created: datetime,
) -> list[dict[str, Any]]:
    """The state of a room: created by the server's notices user, a name (a
    family's), each member joined with their display name, power levels (every
    member equal; nobody may change the state: it follows the family),
    invite-only, history visible to members from their joining."""
    ts = ms(created)
    admin = notices_user(server)
    local = room[1:].partition(":")[0]

    def suffix(key: str) -> str:
        return "." + key[1:].partition(":")[0] if key else ""

    def state(kind: str, content: dict[str, Any], key: str = "") -> dict[str, Any]:
        return {
            "type": kind,
            "event_id": f"${kind.removeprefix('m.room.')}.{local}{suffix(key)}:{server}",
            "sender": admin,
            "state_key": key,
            "room_id": room,
            "origin_server_ts": ts,
            "content": content,
            "unsigned": {},
        }

    out = [
        state("m.room.create", {"creator": admin, "room_version": ROOM_VERSION}),
        state(
            "m.room.power_levels",
            {
                "users": {admin: 100},
                "users_default": 0,
                "events_default": 0,
                "state_default": 100,
                "ban": 100,
                "kick": 100,
                "invite": 100,
                "redact": 100,
                "events": {},
                "notifications": {"room": 100},
            },
        ),
        state("m.room.join_rules", {"join_rule": "invite"}),
        state("m.room.history_visibility", {"history_visibility": "joined"}),
        state("m.room.guest_access", {"guest_access": "forbidden"}),
    ]
    if name:
        out.append(state("m.room.name", {"name": name}))
    for account_id, display in members:
        uid = ids.user_id(account_id, server)
        ev = state("m.room.member", {"membership": "join", "displayname": display}, uid)
        ev["sender"] = uid
        out.append(ev)
    return out
