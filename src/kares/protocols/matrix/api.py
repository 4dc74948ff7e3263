"""The routes of the Matrix client-server API subset (docs/MESSAGING.md,
"Matrix clients"): log in, sync, send, page history, receipts, typing,
redactions, members, profiles and media, over the messaging domain.

Every route runs through :class:`~kares.protocols.matrix.errors.MatrixRoute`
(errors in the Matrix form) and declares its function to the guard like any
route: chatting is ``messaging``/``chat``, with ``photo``/``voice``/``location``
for what needs a device permission, exactly as ``/api/v1`` messaging. Any other
``/_matrix`` path answers ``M_UNRECOGNIZED`` (404, or 405 for a known path with
another method).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import QueryParams
from starlette.routing import Match
from starlette.types import Scope

from kares import clock, live
from kares.accounts import service as accounts
from kares.accounts.schemas import DeviceInfo
from kares.db import Conn, Statement
from kares.deps import DbDep, RuntimeDep, end_request_session, request_ip
from kares.errors import Problem
from kares.families import service as families
from kares.identity import changes
from kares.identity.auth import lane_bearer
from kares.identity.models import Account
from kares.identity.service import parse_phone, steady_session
from kares.lanes import Lane, Reply, json_reply
from kares.messaging import attachments, stream
from kares.messaging import service as messaging
from kares.messaging.content import cursor
from kares.messaging.models import Conversation
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, Guard, guard
from kares.privacy.guard import steady as guard_steady
from kares.protocols.matrix import events as mx
from kares.protocols.matrix import ids
from kares.protocols.matrix import sync as syncing
from kares.protocols.matrix.errors import (
    MatrixError,
    MatrixRoute,
    bad_json,
    forbidden,
    invalid_param,
    json_body,
    not_found,
    unrecognized,
)
from kares.protocols.matrix.errors import response as error_response
from kares.protocols.matrix.models import MatrixFilter
from kares.runtime import Runtime

CS = "/_matrix/client/v3"
MEDIA = "/_matrix/media/v3"
MEDIA_V1 = "/_matrix/client/v1/media"
VERSIONS = [f"v1.{n}" for n in range(1, 12)]
SYNC_TIMEOUT_MAX_MS = 30_000
TYPING_MAX_MS = 30_000
DEVICE_ID_MAX = 48
LABEL_PREFIX = "matrix:"
EXTRA_MAX_BYTES = 4096
_DEVICE_ID = re.compile(r"^[A-Za-z0-9._~+/=-]{1,48}$")


class MatrixRouter(APIRouter):
    """A router that only ever matches ``/_matrix`` paths, and says so at once:
    included first in the app, it costs every other request one string test, and
    a Matrix request (a sync, a send) none of the other routers' matching."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not str(scope.get("path", "")).startswith("/_matrix/"):
            return Match.NONE, {}
        return super().matches(scope)


router = MatrixRouter(route_class=MatrixRoute, include_in_schema=False)
SEND_PATH = CS + "/rooms/{room_id}/send/{event_type}/{txn_id}"
SYNC_PATH = f"{CS}/sync"
# a message wakes every member's streams (kares.live.Hub.admit); its steady state
# is served beside the framework (send_lane, below)
live.fanout_writes.register("PUT", SEND_PATH)
fallback = MatrixRouter(route_class=MatrixRoute, include_in_schema=False)

CHAT = ("messaging", "chat")
Chat = Annotated[Allowed, guard(*CHAT)]
Profile = Annotated[Allowed, guard("account", "profile")]
Sessions = Annotated[Allowed, guard("account_security", "sessions")]
SignIn = [guard("account", "sign_in")]


def _server(rt: Runtime) -> str:
    return rt.settings.server_name


def _ok(body: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse(body or {})


def _device_of(ctx: Allowed) -> str:
    """The Matrix device id of the caller's session: what the client asked for at
    login (kept in the session's label), else the Kares device's id."""
    assert ctx.caller is not None
    sess = ctx.caller.session
    return _device_name(sess.label, sess.device_id, sess.id)


def _device_name(label: str | None, device_id: str | None, session_id: str) -> str:
    if label and label.startswith(LABEL_PREFIX):
        return label[len(LABEL_PREFIX) :]
    return device_id or session_id


def _conversation(room: str, rt: Runtime) -> str:
    conv = mx.conversation_of(room, _server(rt))
    if conv is None:
        raise forbidden("You are not in this room.")
    return conv


async def _room_access(s: AsyncSession, ctx: Allowed, room: str, rt: Runtime) -> messaging.Access:
    conv = _conversation(room, rt)
    try:
        return await messaging.access(s, ctx.account_id, conv)
    except Problem as exc:
        raise forbidden("You are not in this room.") from exc


def _position(event_id: str, rt: Runtime) -> int:
    pos = mx.position_of(event_id, _server(rt))
    if pos is None:
        raise not_found("Event not found.")
    return pos


async def _kind_allowed(function_feature: str, request: Request, rt: Runtime, s: DbDep) -> None:
    g = Guard("messaging", function_feature)
    g.validate(catalog_of(rt))
    await g(request, rt, s)


# --- versions, login, logout, whoami --------------------------------------------------------


@router.get("/_matrix/client/versions", dependencies=SignIn)
async def versions() -> JSONResponse:
    return _ok({"versions": VERSIONS, "unstable_features": {}})


@router.get(f"{CS}/login", dependencies=SignIn)
async def login_flows() -> JSONResponse:
    return _ok({"flows": [{"type": "m.login.password"}]})


def _identifier(body: dict[str, Any]) -> dict[str, Any]:
    ident = body.get("identifier")
    if ident is None:  # the legacy top-level fields
        if isinstance(body.get("user"), str):
            return {"type": "m.id.user", "user": body["user"]}
        if body.get("medium") == "msisdn" and isinstance(body.get("address"), str):
            return {"type": "m.id.thirdparty", "medium": "msisdn", "address": body["address"]}
        raise bad_json("Say who signs in: an identifier.")
    if not isinstance(ident, dict):
        raise bad_json("The identifier is an object.")
    return ident


@router.post(f"{CS}/login", dependencies=SignIn)
async def login(request: Request, rt: RuntimeDep, s: DbDep) -> JSONResponse:
    """``m.login.password`` as a Kares password sign-in: the same check, limits
    and lockout, and a real session (the access token is its bearer token)."""
    body = await json_body(request)
    if body.get("type") != "m.login.password":
        raise MatrixError(400, "M_UNKNOWN", "Unknown login type: Kares takes m.login.password.")
    password = body.get("password")
    if not isinstance(password, str) or not password or len(password) > 1024:
        raise bad_json("A password is required.")
    device = body.get("device_id")
    if device is None:
        device = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(10))
    if not isinstance(device, str) or not _DEVICE_ID.match(device):
        raise invalid_param(f"A device_id has 1 to {DEVICE_ID_MAX} URL-safe characters.")
    shown = body.get("initial_device_display_name")
    model = shown[:64] if isinstance(shown, str) and shown.strip() else "Matrix client"
    env = accounts.Environment(
        ip=request_ip(request, rt),
        user_agent=request.headers.get("user-agent"),
        device=DeviceInfo(id=f"{LABEL_PREFIX}{device}", model=model),
        client="app",
    )
    ident = _identifier(body)
    kind = ident.get("type")
    server = _server(rt)
    if kind == "m.id.user" and isinstance(ident.get("user"), str):
        who = ident["user"]
        account_id = ids.localpart(who.lower() if who.startswith("@") else who, server)
        res = await accounts.sign_in_with_password(
            s,
            rt,
            account_id=account_id or f"?{who[:60]}",
            password=password,
            env=env,
            label=f"{LABEL_PREFIX}{device}",
        )
    elif kind in ("m.id.phone", "m.id.thirdparty"):
        if kind == "m.id.phone":
            country, number = ident.get("country"), ident.get("phone")
            if not isinstance(country, str) or not isinstance(number, str):
                raise bad_json("m.id.phone takes a country and a phone.")
            if len(country) > 3 or len(number) > 32:
                raise invalid_param("That is not a phone number.")
            e164 = parse_phone(number, country.upper())
        else:
            address = ident.get("address")
            if ident.get("medium") != "msisdn" or not isinstance(address, str):
                raise MatrixError(400, "M_UNKNOWN", "Kares signs in by phone number (msisdn).")
            if len(address) > 32:
                raise invalid_param("That is not a phone number.")
            digits = address if address.startswith("+") else f"+{address}"
            e164 = parse_phone(digits, rt.settings.default_region)
        res = await accounts.sign_in_with_password(
            s, rt, phone=e164, password=password, env=env, label=f"{LABEL_PREFIX}{device}"
        )
    else:
        raise MatrixError(400, "M_UNKNOWN", "Kares takes an m.id.user or m.id.phone identifier.")
    return _ok(
        {
            "user_id": ids.user_id(res.account.id, server),
            "access_token": res.token,
            "device_id": device,
            "home_server": server,
        }
    )


@router.post(f"{CS}/logout")
async def logout(ctx: Sessions, s: DbDep) -> JSONResponse:
    assert ctx.caller is not None
    await accounts.revoke_session(s, account_id=ctx.account_id, session_id=ctx.caller.session.id)
    return _ok()


@router.post(f"{CS}/logout/all")
async def logout_all(ctx: Sessions, s: DbDep) -> JSONResponse:
    await accounts.revoke_all_sessions(s, account_id=ctx.account_id, keep_session_id=None)
    return _ok()


@router.get(f"{CS}/account/whoami")
async def whoami(ctx: Profile, rt: RuntimeDep) -> JSONResponse:
    return _ok(
        {
            "user_id": ids.user_id(ctx.account_id, _server(rt)),
            "device_id": _device_of(ctx),
            "is_guest": False,
        }
    )


@router.get(f"{CS}/capabilities")
async def capabilities(ctx: Chat) -> JSONResponse:
    off = {"enabled": False}
    return _ok(
        {
            "capabilities": {
                "m.change_password": off,
                "m.set_displayname": off,
                "m.set_avatar_url": off,
                "m.3pid_changes": off,
                "m.room_versions": {
                    "default": mx.ROOM_VERSION,
                    "available": {mx.ROOM_VERSION: "stable"},
                },
            }
        }
    )


# --- rooms ----------------------------------------------------------------------------------


@router.get(f"{CS}/joined_rooms")
async def joined_rooms(ctx: Chat, rt: RuntimeDep, s: DbDep) -> JSONResponse:
    mine = await stream.scopes(s, ctx.account_id)
    return _ok({"joined_rooms": [mx.room_id(c, _server(rt)) for c in sorted(mine)]})


@router.get(CS + "/rooms/{room_id}/joined_members")
async def joined_members(room_id: str, ctx: Chat, rt: RuntimeDep, s: DbDep) -> JSONResponse:
    acc = await _room_access(s, ctx, room_id, rt)
    info = await syncing.room_info(s, acc.id)
    joined = {
        ids.user_id(a, _server(rt)): {"display_name": name, "avatar_url": None}
        for a, name in info.members
    }
    return _ok({"joined": joined})


@router.get(CS + "/rooms/{room_id}/members")
async def members(room_id: str, ctx: Chat, rt: RuntimeDep, s: DbDep) -> JSONResponse:
    acc = await _room_access(s, ctx, room_id, rt)
    info = await syncing.room_info(s, acc.id)
    state = mx.room_state(
        mx.room_id(acc.id, _server(rt)),
        _server(rt),
        name=info.name,
        members=info.members,
        created=info.created,
    )
    return _ok({"chunk": [e for e in state if e["type"] == "m.room.member"]})


def _extra(content: dict[str, Any], handled: tuple[str, ...]) -> dict[str, Any] | None:
    extra = {k: v for k, v in content.items() if k not in handled}
    if not extra:
        return None
    if len(syncing.json.dumps(extra, separators=(",", ":"))) > EXTRA_MAX_BYTES:
        raise MatrixError(413, "M_TOO_LARGE", "The event's content is too large.")
    return extra


def _text_outgoing(content: dict[str, Any], kind: str) -> messaging.Outgoing:
    """A text message (``m.text``, ``m.notice``, ``m.emote``) as the domain takes
    it: the words, and the content's other keys kept beside them."""
    text = content.get("body")
    if not isinstance(text, str):
        raise bad_json("A text message has a body.")
    extra = _extra(content, ("body", "msgtype"))
    if kind != "m.text":
        extra = {**(extra or {}), "msgtype": kind}
    return messaging.Outgoing(kind="text", text=text, extra=extra)


def _media_id(url: Any, rt: Runtime) -> int:
    prefix = f"mxc://{_server(rt)}/"
    if not isinstance(url, str) or not url.startswith(prefix):
        raise bad_json(f"An image or audio message refers to uploaded media ({prefix}...).")
    rest = url[len(prefix) :]
    if not rest.isdigit() or len(rest) > 18:
        raise not_found("No such media.")
    return int(rest)


_GEO = re.compile(
    r"^geo:(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)(?:,-?\d+(?:\.\d+)?)?(?:;u=(\d+(?:\.\d+)?))?"
)


async def _outgoing(
    content: dict[str, Any], request: Request, rt: Runtime, s: AsyncSession
) -> messaging.Outgoing:
    kind = content.get("msgtype")
    if kind in mx.TEXT_TYPES:
        return _text_outgoing(content, kind)
    if kind in ("m.image", "m.audio"):
        await _kind_allowed("photo" if kind == "m.image" else "voice", request, rt, s)
        media = _media_id(content.get("url"), rt)
        extra = _extra(content, ("url", "info", "msgtype", "org.matrix.msc3245.voice"))
        return messaging.Outgoing(
            kind="image" if kind == "m.image" else "voice", attachment_id=media, extra=extra
        )
    if kind == "m.location":
        await _kind_allowed("location", request, rt, s)
        geo = content.get("geo_uri")
        m = _GEO.match(geo) if isinstance(geo, str) else None
        if m is None:
            raise bad_json("A location has a geo_uri: geo:<lat>,<lon>.")
        lat, lon = float(m.group(1)), float(m.group(2))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise bad_json("The geo_uri is not a place on Earth.")
        acc = float(m.group(3)) if m.group(3) else None
        extra = _extra(content, ("geo_uri", "msgtype", "body"))
        return messaging.Outgoing(kind="location", lat=lat, lon=lon, accuracy_m=acc, extra=extra)
    raise bad_json(
        "Kares stores m.text, m.notice, m.emote, m.image, m.audio and m.location messages."
    )


def _txn(ctx: Allowed, txn_id: str) -> tuple[str, str]:
    """The retry scope (the Matrix device: its Kares device, or its session) and
    an id of at most 64 characters (a longer one by its digest)."""
    assert ctx.caller is not None
    sess = ctx.caller.session
    return _txn_of(sess.device_id, sess.id, txn_id)


def _txn_of(device_id: str | None, session_id: str, txn_id: str) -> tuple[str, str]:
    scope = f"mx:{device_id or session_id}"
    if 1 <= len(txn_id) <= messaging.TXN_MAX:
        return scope, txn_id
    return scope, hashlib.sha256(txn_id.encode()).hexdigest()


async def send_lane(scope: Scope, raw: bytes) -> Reply | None:
    """``PUT .../rooms/{room}/send/m.room.message/{txn}`` in its steady state,
    without the framework (``kares.lanes``), as ``/api/v1``'s send lane: on
    SQLite, a text message (``m.text``, ``m.notice``, ``m.emote``) to a family's
    room from a live session that needs no touch (its token in the header), the
    guard's decision remembered, every other member connected, is stored on a
    bare transaction (``messaging.send_steady``) and answered as the route below
    answers it. Anything else is declined, with nothing stored, and the route
    answers it (its errors in the Matrix form)."""
    rt: Runtime = scope["app"].state.runtime
    creds = lane_bearer(scope)
    if rt.db.dialect != "sqlite" or creds is None:
        return None
    _, _, _, _, _, room, _, event_type, txn_id = scope["path"].split("/")
    conversation_id = mx.conversation_of(room, _server(rt))
    if event_type != "m.room.message" or conversation_id is None:
        return None
    try:
        content = syncing.json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(content, dict) or content.get("msgtype") not in mx.TEXT_TYPES:
        return None
    try:
        out = _text_outgoing(content, content["msgtype"])
    except MatrixError:
        return None  # the route says what is wrong
    async with rt.db.tx() as tx:
        facts = await steady_session(tx, rt, creds.token)
        if facts is None or guard_steady(catalog_of(rt), facts, *CHAT) is None:
            return None
        retry_scope, txn = _txn_of(facts.device_id, facts.session_id, txn_id)
        msg = await messaging.send_steady(
            tx,
            sender_id=facts.account_id,
            scope=retry_scope,
            conversation_id=conversation_id,
            txn_id=txn,
            text=out.text or "",
            extra=out.extra,
        )
        if msg is None:
            return None
        await tx.commit()
    return json_reply({"event_id": mx.event_id(msg.position, _server(rt))})


@router.put(SEND_PATH)
async def send(
    room_id: str,
    event_type: str,
    txn_id: str,
    request: Request,
    ctx: Chat,
    rt: RuntimeDep,
    s: DbDep,
) -> JSONResponse:
    acc = await _room_access(s, ctx, room_id, rt)
    if event_type != "m.room.message":
        raise MatrixError(
            400,
            "M_UNRECOGNIZED",
            "Kares stores m.room.message events only (no reactions, "
            "no encrypted or custom events).",
        )
    content = await json_body(request)
    out = await _outgoing(content, request, rt, s)
    scope, txn = _txn(ctx, txn_id)
    assert ctx.caller is not None
    msg, _ = await messaging.send(
        s,
        rt,
        sender=ctx.caller.account,
        scope=scope,
        conversation_id=acc.id,
        txn_id=txn,
        outgoing=out,
    )
    return _ok({"event_id": mx.event_id(msg.position, _server(rt))})


@router.put(CS + "/rooms/{room_id}/redact/{event_id}/{txn_id}")
async def redact(
    room_id: str, event_id: str, txn_id: str, ctx: Chat, rt: RuntimeDep, s: DbDep
) -> JSONResponse:
    acc = await _room_access(s, ctx, room_id, rt)
    position = _position(event_id, rt)
    try:
        m = await messaging.recall(
            s, rt, account_id=ctx.account_id, conversation_id=acc.id, position=position
        )
    except Problem as exc:
        if exc.code == "message.not_found":
            raise not_found("Event not found.") from exc
        raise
    return _ok({"event_id": mx.event_id(m.position, _server(rt), ".r")})


@router.get(CS + "/rooms/{room_id}/messages")
async def room_messages(
    room_id: str,
    request: Request,
    ctx: Chat,
    rt: RuntimeDep,
    s: DbDep,
) -> JSONResponse:
    acc = await _room_access(s, ctx, room_id, rt)
    qp = request.query_params
    direction = qp.get("dir", "b")
    if direction not in ("b", "f"):
        raise invalid_param("dir is b or f.")
    limit = _int_param(qp.get("limit"), 10, "limit")
    limit = max(1, min(limit, messaging.HISTORY_MAX))
    start = qp.get("from")
    point = syncing.page_position(start) if start else None
    to = syncing.page_position(qp["to"]) if qp.get("to") else None
    server = _server(rt)
    if direction == "b":
        page = await messaging.history(
            s, account_id=ctx.account_id, conversation_id=acc.id, before=point, limit=limit
        )
        msgs = list(reversed(page.messages))
        if to is not None:
            msgs = [m for m in msgs if m.position >= to]
        more = page.before is not None and len(msgs) == len(page.messages)
        end = cursor(msgs[-1].position) if msgs and more else None
    else:
        after = (point - 1) if point is not None else 0
        page = await messaging.history(
            s, account_id=ctx.account_id, conversation_id=acc.id, after=max(after, 0), limit=limit
        )
        msgs = list(page.messages)
        if to is not None:
            msgs = [m for m in msgs if m.position < to]
        end = cursor(msgs[-1].position + 1) if msgs else None
    joiners = {m.sender_account_id for m in msgs if m.sender_account_id}
    names = await syncing.names_of(s, joiners)
    body: dict[str, Any] = {
        "start": start or (cursor(msgs[0].position + 1) if msgs else cursor(1)),
        "chunk": [mx.message_event(m, server, names) for m in msgs],
        "state": [],
    }
    if end is not None:
        body["end"] = end
    return _ok(body)


def _int_param(raw: str | None, default: int, name: str) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise invalid_param(f"{name} is a non-negative integer.")
    return int(raw)


async def _read_up_to(s: AsyncSession, ctx: Allowed, conv: str, event_id: str, rt: Runtime) -> None:
    position = _position(event_id, rt)
    try:
        await messaging.mark_read(
            s, account_id=ctx.account_id, conversation_id=conv, position=position
        )
    except Problem as exc:
        if exc.code == "message.not_found":
            raise not_found("Event not found.") from exc
        raise


@router.post(CS + "/rooms/{room_id}/receipt/{receipt_type}/{event_id}")
async def receipt(
    room_id: str,
    receipt_type: str,
    event_id: str,
    request: Request,
    ctx: Chat,
    rt: RuntimeDep,
    s: DbDep,
) -> JSONResponse:
    acc = await _room_access(s, ctx, room_id, rt)
    await json_body(request)
    if receipt_type == "m.read":
        await _read_up_to(s, ctx, acc.id, event_id, rt)
    elif receipt_type in ("m.read.private", "m.fully_read"):
        _position(event_id, rt)  # accepted; Kares keeps no private receipts
    else:
        raise invalid_param("Receipt types: m.read, m.read.private, m.fully_read.")
    return _ok()


@router.post(CS + "/rooms/{room_id}/read_markers")
async def read_markers(
    room_id: str, request: Request, ctx: Chat, rt: RuntimeDep, s: DbDep
) -> JSONResponse:
    acc = await _room_access(s, ctx, room_id, rt)
    body = await json_body(request)
    for key in ("m.fully_read", "m.read", "m.read.private"):
        if key in body and not isinstance(body[key], str):
            raise bad_json(f"{key} is an event id.")
    if isinstance(body.get("m.read"), str):
        await _read_up_to(s, ctx, acc.id, body["m.read"], rt)
    return _ok()


# --- typing ------------------------------------------------------------------------------------

_typing_expiry: dict[tuple[str, str], asyncio.Task[None]] = {}


def tell_typing(
    account_id: str, conversation: str, audience: frozenset[str], typing: bool, ms: int
) -> None:
    """A typing change of ``account_id``: to this process's state, and to the
    others in the conversation through the hub (their WebSockets, their Matrix
    syncs, here or in another process)."""
    syncing.typing.change(conversation, account_id, typing, ms / 1000)
    data: dict[str, Any] = {
        "conversation": conversation,
        "account_id": account_id,
        "typing": typing,
    }
    if typing:
        data["expires_in_ms"] = ms
    live.hub.tell(audience, kind="typing", about=account_id, data=data)


async def _expire_typing(key: tuple[str, str], audience: frozenset[str], ms: int) -> None:
    await asyncio.sleep(ms / 1000)
    if _typing_expiry.get(key) is asyncio.current_task():
        del _typing_expiry[key]
        tell_typing(key[0], key[1], audience, False, 0)


@router.put(CS + "/rooms/{room_id}/typing/{user_id}")
async def put_typing(
    room_id: str, user_id: str, request: Request, ctx: Chat, rt: RuntimeDep, s: DbDep
) -> JSONResponse:
    server = _server(rt)
    if ids.localpart(user_id, server) != ctx.account_id:
        raise forbidden("You can only say that you are typing yourself.")
    conv = _conversation(room_id, rt)
    body = await json_body(request)
    typing = body.get("typing")
    if not isinstance(typing, bool):
        raise bad_json("typing is true or false.")
    timeout = body.get("timeout", TYPING_MAX_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise bad_json("timeout is a number of milliseconds.")
    ms = min(timeout, TYPING_MAX_MS)
    audience = await live.typing.audience(s, ctx.account_id, conv)
    if audience is None or ctx.account_id not in audience:
        raise forbidden("You are not in this room.")
    others = frozenset(audience - {ctx.account_id})
    key = (ctx.account_id, conv)
    old = _typing_expiry.pop(key, None)
    if old is not None:
        old.cancel()
    tell_typing(ctx.account_id, conv, others, typing, ms)
    if typing:
        _typing_expiry[key] = asyncio.create_task(_expire_typing(key, others, ms))
    return _ok()


# --- profiles ----------------------------------------------------------------------------------


async def _profile(user_id: str, ctx: Allowed, rt: Runtime, s: AsyncSession) -> dict[str, Any]:
    """A profile of someone the caller shares a conversation with (themselves
    included); anyone else is not found."""
    account_id = ids.localpart(user_id, _server(rt))
    if account_id is None:
        raise not_found("Profile not found.")
    known = account_id == ctx.account_id or account_id in await families.co_members(
        s, ctx.account_id
    )
    if not known:
        a, b = sorted((account_id, ctx.account_id))
        q = select(Conversation.id).where(Conversation.member_a == a, Conversation.member_b == b)
        known = (await s.execute(q)).first() is not None
    acc = await s.get(Account, account_id) if known else None
    if acc is None:
        raise not_found("Profile not found.")
    return {"displayname": acc.name}


@router.get(CS + "/profile/{user_id}")
async def profile(user_id: str, ctx: Chat, rt: RuntimeDep, s: DbDep) -> JSONResponse:
    return _ok(await _profile(user_id, ctx, rt, s))


@router.get(CS + "/profile/{user_id}/displayname")
async def displayname(user_id: str, ctx: Chat, rt: RuntimeDep, s: DbDep) -> JSONResponse:
    return _ok(await _profile(user_id, ctx, rt, s))


# --- filters -------------------------------------------------------------------------------------


def _own(user_id: str, ctx: Allowed, rt: Runtime) -> None:
    if ids.localpart(user_id, _server(rt)) != ctx.account_id:
        raise forbidden("You can only use your own filters.")


@router.post(CS + "/user/{user_id}/filter")
async def post_filter(
    user_id: str, request: Request, ctx: Chat, rt: RuntimeDep, s: DbDep
) -> JSONResponse:
    _own(user_id, ctx, rt)
    raw = await request.body()
    _, text = syncing.read_filter_text(raw.decode("utf-8", "replace"))
    row = MatrixFilter(account_id=ctx.account_id, definition=text, created_at=clock.utcnow())
    s.add(row)
    await s.flush()
    fid = row.id
    await s.commit()
    return _ok({"filter_id": str(fid)})


# every sync that names its filter reads it: a statement built once
_FILTER = Statement(
    select(MatrixFilter.account_id, MatrixFilter.definition).where(
        MatrixFilter.id == bindparam("id")
    )
)


async def _load_filter(s: Conn, account_id: str, filter_id: str) -> Any:
    """The account's filter (its ``definition``), or 404 ``M_NOT_FOUND``."""
    if not filter_id.isdigit() or len(filter_id) > 12:
        raise not_found("No such filter.")
    row = await _FILTER.first(s, {"id": int(filter_id)})
    if row is None or row.account_id != account_id:
        raise not_found("No such filter.")
    return row


@router.get(CS + "/user/{user_id}/filter/{filter_id}")
async def get_filter(
    user_id: str, filter_id: str, ctx: Chat, rt: RuntimeDep, s: DbDep
) -> JSONResponse:
    _own(user_id, ctx, rt)
    row = await _load_filter(s, ctx.account_id, filter_id)
    return _ok(syncing.json.loads(row.definition))


# --- sync --------------------------------------------------------------------------------


@router.get(SYNC_PATH)
async def sync(request: Request, ctx: Chat, rt: RuntimeDep, s: DbDep) -> JSONResponse:
    """The long-poll: answers at once when something is there, else waits on the
    hub (holding no database connection) until something the user may see moves
    or the timeout passes. A wake costs one bounded read."""
    assert ctx.caller is not None
    asked = await _asked(s, ctx.account_id, request.query_params)
    if asked.token is None:
        return _ok(await syncing.initial(s, ctx.account_id, asked.flt, _server(rt)))
    await end_request_session(request.scope)  # what follows holds connections briefly
    return _ok(
        await _poll(
            rt,
            account_id=ctx.account_id,
            session_id=ctx.caller.session.id,
            device=f"mx:{_device_of(ctx)}",
            asked=asked,
        )
    )


@dataclass(frozen=True)
class _Asked:
    """What a sync asks for, read from its query string."""

    flt: syncing.Filter
    wait_ms: int
    full_state: bool
    token: syncing.Token | None  # None: a first sync


async def _asked(s: Conn, account_id: str, qp: Mapping[str, str]) -> _Asked:
    """A sync's parameters (its filter, written out or by id, read), or the
    Matrix error that refuses them."""
    raw_filter = qp.get("filter")
    flt = syncing.Filter()
    if raw_filter:
        if raw_filter.lstrip().startswith("{"):
            flt = syncing.parse_filter(syncing.read_filter_text(raw_filter)[0])
        else:
            row = await _load_filter(s, account_id, raw_filter)
            flt = syncing.parse_filter(syncing.json.loads(row.definition))
    timeout = min(_int_param(qp.get("timeout"), 0, "timeout"), SYNC_TIMEOUT_MAX_MS)
    since = qp.get("since")
    return _Asked(
        flt,
        timeout,
        qp.get("full_state", "false") == "true",
        syncing.read_token(since) if since else None,
    )


async def _poll(
    rt: Runtime,
    *,
    account_id: str,
    session_id: str,
    device: str,
    asked: _Asked,
) -> dict[str, Any]:
    """An incremental sync's answer, waited for (``asked.wait_ms`` at most) holding
    no database connection while it waits: what :func:`sync` and its lane serve
    once they know the caller and what it asks."""
    server = _server(rt)
    assert asked.token is not None
    token, flt, full_state = asked.token, asked.flt, asked.full_state
    deadline = time.monotonic() + asked.wait_ms / 1000
    key = (account_id, device)
    # the subscription this device kept since its last poll: it heard everything
    # meanwhile, and the device counted as connected (no pushes between polls)
    sub = parking.take(key)
    refamily = woken = False
    check = changes.SessionCheck(session_id)  # the guard read it for this request
    try:
        while True:
            async with live.hub.reading(woken=woken), rt.db.sessions() as s2:
                if woken and check.due() and not await check.run(s2):
                    raise MatrixError(
                        401, "M_UNKNOWN_TOKEN", "This session has ended.", soft_logout=False
                    )
                if sub is not None and refamily:
                    live.hub.watch(sub, await families.co_members(s2, account_id))
                    refamily = False
                if not woken and not full_state and await _nothing_since(s2, token):
                    # the usual next poll: one query says nothing moved
                    batch = syncing.Batch(syncing.nothing(token), token.position, False)
                else:
                    batch = await syncing.incremental(
                        s2, account_id, token, flt, server, full_state=full_state
                    )
                full_state = False
                if not batch.content and sub is None and time.monotonic() < deadline:
                    # nothing yet: subscribe, then look again, so that nothing
                    # committed between the read and the subscription is missed
                    watching = await families.co_members(s2, account_id)
                    sub = live.hub.subscribe(account_id, watching, device_id=device)
                    if await stream.top(s2) > batch.position:
                        continue
            if batch.content or time.monotonic() >= deadline:
                return batch.response
            token = syncing.Token(batch.position, max(token.typing, syncing.typing.serial))
            assert sub is not None
            wake = await _wait(sub, token, deadline)
            if wake is None:
                return batch.response
            refamily, woken = wake, True
    finally:
        if sub is not None:
            parking.park(key, sub)


async def sync_lane(scope: Scope, raw: bytes) -> Reply | None:
    """``GET /sync`` in its steady state, without the framework (``kares.lanes``):
    on SQLite, an incremental sync (``since``), from a live session that needs
    no touch (its token in the header) and the guard's decision remembered, is
    read as the route reads it (:func:`_asked`) and answered by the same poll
    (:func:`_poll`). Anything else (a first sync, a parameter the route
    refuses) is declined and the route answers it."""
    rt: Runtime = scope["app"].state.runtime
    creds = lane_bearer(scope)
    if rt.db.dialect != "sqlite" or creds is None:
        return None
    try:
        async with rt.db.tx() as tx:
            facts = await steady_session(tx, rt, creds.token)
            if facts is None or guard_steady(catalog_of(rt), facts, *CHAT) is None:
                return None
            asked = await _asked(tx, facts.account_id, QueryParams(scope["query_string"]))
    except MatrixError:
        return None  # the route says what is wrong
    if asked.token is None:
        return None  # a first sync: the route reads it with a session
    device = _device_name(facts.label, facts.device_id, facts.session_id)
    try:
        body = await _poll(
            rt,
            account_id=facts.account_id,
            session_id=facts.session_id,
            device=f"mx:{device}",
            asked=asked,
        )
    except MatrixError as exc:
        return _error_reply(exc)
    return json_reply(body)


def _error_reply(exc: MatrixError) -> Reply:
    """A Matrix error as a lane's answer (what the route's error handler sends)."""
    answer = error_response(exc)
    headers = [h for h in answer.raw_headers if h[0] != b"content-length"]  # the lane's own
    return answer.status_code, headers, bytes(answer.body)


# what Matrix clients call all day, served beside the framework (kares.lanes)
LANES: dict[tuple[str, str], Lane] = {("PUT", SEND_PATH): send_lane, ("GET", SYNC_PATH): sync_lane}


PARK_SECONDS = 10.0


class Parking:
    """Each device's hub subscription between two of its polls, for
    :data:`PARK_SECONDS`: the next poll takes it back (no query to find whom to
    watch, and every notice meanwhile is in its queue), and while it waits here
    the device counts as connected, as a WebSocket's does. Unclaimed, it ends."""

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str], tuple[live.Subscription, asyncio.TimerHandle]] = {}

    def take(self, key: tuple[str, str]) -> live.Subscription | None:
        got = self._subs.pop(key, None)
        if got is None:
            return None
        sub, timer = got
        timer.cancel()
        if sub.closed:
            live.hub.unsubscribe(sub)
            return None
        return sub

    def park(self, key: tuple[str, str], sub: live.Subscription) -> None:
        if sub.closed:
            live.hub.unsubscribe(sub)
            return
        old = self._subs.pop(key, None)
        if old is not None:  # two polls of one device at once: keep the newer
            old[1].cancel()
            self._end(old[0])
        timer = asyncio.get_running_loop().call_later(PARK_SECONDS, self._expire, key, sub)
        self._subs[key] = (sub, timer)

    def _expire(self, key: tuple[str, str], sub: live.Subscription) -> None:
        got = self._subs.get(key)
        if got is not None and got[0] is sub:
            del self._subs[key]
        self._end(sub)

    @staticmethod
    def _end(sub: live.Subscription) -> None:
        sub.close()
        live.hub.unsubscribe(sub)


parking = Parking()


async def _nothing_since(s: AsyncSession, token: syncing.Token) -> bool:
    """Nothing can be there for the token: no position after it, no typing
    change in this process after its serial."""
    return syncing.typing.serial <= token.typing and await stream.top(s) <= token.position


async def _wait(sub: live.Subscription, token: syncing.Token, deadline: float) -> bool | None:
    """Wait for a notice that may concern the sync: None at the deadline, else
    whether the set of people to watch must be read again (a family changed)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            notice = await asyncio.wait_for(sub.queue.get(), left)
        except TimeoutError:
            return None
        notices = [notice]
        while not sub.queue.empty():
            notices.append(sub.queue.get_nowait())
        lagged, sub.lagged = sub.lagged, False
        refamily, moved = False, lagged
        for n in notices:
            if n.kind == "typing" and n.data is not None:
                conv, who = n.data.get("conversation"), n.data.get("account_id")
                if isinstance(conv, str) and isinstance(who, str):
                    secs = float(n.data.get("expires_in_ms") or 0) / 1000
                    syncing.typing.change(conv, who, bool(n.data.get("typing")), secs)
                    # told already by a Matrix client in this process, or now
                    if syncing.typing.changed.get(conv, 0) > token.typing:
                        moved = True
            elif n.data is not None:
                continue  # call signals and the like: not Matrix
            elif n.kind == "family":
                refamily = moved = True
            elif n.kind == live.TICK:
                moved = True
            elif n.kind == "message" and (n.seq > token.position or n.seq == 0):
                moved = True
        if sub.closed:
            return None
        if moved:
            return refamily


# --- media ---------------------------------------------------------------------------------------


@router.post(f"{MEDIA}/upload")
async def upload(request: Request, ctx: Chat, rt: RuntimeDep, s: DbDep) -> JSONResponse:
    """An image (through the media pipeline: sniffed, capped, re-encoded, its
    metadata dropped) or a voice note (Ogg Opus, AMR-NB), as a messaging
    attachment; sent next as m.image / m.audio with its mxc:// URI."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    kind = "voice" if ctype.startswith("audio/") else "image"
    await _kind_allowed("photo" if kind == "image" else "voice", request, rt, s)
    cap = rt.settings.image_max_bytes if kind == "image" else rt.settings.voice_max_bytes
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > cap:
            raise MatrixError(413, "M_TOO_LARGE", f"Uploads here are at most {cap} bytes.")
    att = await attachments.upload(s, rt, account_id=ctx.account_id, kind=kind, raw=bytes(raw))
    return _ok({"content_uri": f"mxc://{_server(rt)}/{att.id}"})


@router.get(f"{MEDIA}/config")
@router.get(f"{MEDIA_V1}/config")
async def media_config(ctx: Chat, rt: RuntimeDep) -> JSONResponse:
    return _ok({"m.upload.size": rt.settings.image_max_bytes})


async def _download(
    server_name: str, media_id: str, ctx: Allowed, rt: Runtime, s: AsyncSession
) -> Response:
    if server_name != _server(rt) or not media_id.isdigit() or len(media_id) > 18:
        raise not_found("No such media.")
    try:
        att = await messaging.attachment_for(
            s, account_id=ctx.account_id, attachment_id=int(media_id)
        )
    except Problem as exc:
        raise not_found("No such media.") from exc
    return Response(
        att.data,
        media_type=att.content_type,
        headers={
            "Cache-Control": "private, max-age=86400",
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none';",
        },
    )


for _base in (MEDIA, MEDIA_V1):
    for _what in ("download", "thumbnail"):

        @router.get(f"{_base}/{_what}/{{server_name}}/{{media_id}}")
        async def _media(
            server_name: str, media_id: str, ctx: Chat, rt: RuntimeDep, s: DbDep
        ) -> Response:
            return await _download(server_name, media_id, ctx, rt, s)

        @router.get(f"{_base}/{_what}/{{server_name}}/{{media_id}}/{{file_name}}")
        async def _media_named(
            server_name: str, media_id: str, file_name: str, ctx: Chat, rt: RuntimeDep, s: DbDep
        ) -> Response:
            return await _download(server_name, media_id, ctx, rt, s)


# --- everything else ---------------------------------------------------------------------

_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]


@fallback.api_route("/_matrix/{rest:path}", methods=_METHODS, dependencies=SignIn)
async def unknown(request: Request) -> JSONResponse:
    """Room creation, invites, federation, keys and end-to-end encryption, push
    rules, account data, presence... are not supported: ``M_UNRECOGNIZED``, 404,
    or 405 for a path above with another method."""
    known = False
    for route in router.routes:
        with contextlib.suppress(Exception):
            match, _ = route.matches(request.scope)
            known = known or match == Match.PARTIAL
    raise unrecognized(405 if known else 404)
