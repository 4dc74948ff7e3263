"""HTTP routes of the messaging domain (docs/MESSAGING.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import Scope

from kares import live
from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.identity.auth import AUTH_ERRORS, lane_bearer
from kares.identity.service import steady_session
from kares.lanes import Lane, Reply, json_reply
from kares.messaging import attachments, service, stream
from kares.messaging.content import CURSOR_PATTERN, message_out, read_cursor
from kares.messaging.schemas import (
    AttachmentIn,
    AttachmentOut,
    ConversationOut,
    DirectIn,
    EventsOut,
    LocationIn,
    MessageOut,
    Opened,
    Page,
    ReadIn,
    ReceiptOut,
    SendIn,
    TextIn,
)
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, Guard, guard
from kares.privacy.guard import steady as guard_steady
from kares.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["messaging"])
# a message wakes every member's streams: sends wait while the readers are behind
live.fanout_writes.register("POST", "/api/v1/conversations/{conversation_id}/messages")
# ... and its steady state is served beside the framework (send_lane, below)

AUTH = AUTH_ERRORS
NOT_FOUND = (404, "conversation.not_found")
NO_MESSAGE = (404, "message.not_found")
IMAGE_ERRORS = (
    (413, "media.too_large"),
    (413, "request.too_large"),
    (415, "media.unsupported_type"),
    (422, "media.empty"),
    (422, "media.too_many_pixels"),
    (422, "media.too_long"),
)

CHAT = ("messaging", "chat")
Chat = Annotated[Allowed, guard(*CHAT)]
# what each kind needs besides chatting: photos or camera, the microphone, location
_KIND_GUARD = {
    "image": Guard("messaging", "photo"),
    "voice": Guard("messaging", "voice"),
    "location": Guard("messaging", "location"),
}


async def _kind_allowed(kind: str, request: Request, rt: RuntimeDep, s: DbDep) -> None:
    g = _KIND_GUARD.get(kind)
    if g is not None:
        g.validate(catalog_of(rt))
        await g(request, rt, s)


def _scope(ctx: Allowed) -> str:
    """Whose retries are one: the device, or (a client with none) the session."""
    assert ctx.caller is not None
    sess = ctx.caller.session
    return f"d:{sess.device_id}" if sess.device_id else f"s:{sess.id}"


def _cursor(value: str | None) -> int | None:
    return read_cursor(value) if value is not None else None


@router.get(
    "/conversations",
    response_model=list[ConversationOut],
    responses=responses(*AUTH),
    summary="My conversations: each family's, and the direct ones, with unread counts",
)
async def list_conversations(ctx: Chat, s: DbDep) -> list[dict[str, Any]]:
    return await service.list_conversations(s, account_id=ctx.account_id)


@router.post(
    "/conversations",
    status_code=status.HTTP_201_CREATED,
    response_model=Opened,
    responses={
        200: {"model": Opened, "description": "Already open: the same conversation"},
        **responses(*AUTH, (404, "conversation.person_not_found"), (409, "conversation.self")),
    },
    summary="Open the conversation with someone you share a family with (idempotent)",
)
async def open_direct(body: DirectIn, response: Response, ctx: Chat, s: DbDep) -> Opened:
    conv, created = await service.open_direct(
        s, account_id=ctx.account_id, other_id=body.account_id
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    acc = await service.access(s, ctx.account_id, conv.id)
    out = await service.conversation_out(s, acc, ctx.account_id)
    return Opened(conversation=ConversationOut.model_validate(out), created=created)


@router.get(
    "/conversations/{conversation_id}",
    response_model=ConversationOut,
    responses=responses(*AUTH, NOT_FOUND),
    summary="One conversation",
)
async def get_conversation(conversation_id: str, ctx: Chat, s: DbDep) -> dict[str, Any]:
    acc = await service.access(s, ctx.account_id, conversation_id)
    return await service.conversation_out(s, acc, ctx.account_id)


@router.get(
    "/conversations/{conversation_id}/messages",
    response_model=Page,
    responses=responses(*AUTH, NOT_FOUND),
    summary="History, oldest first, paged backwards (before=) or forwards (after=)",
    description="Without a cursor: the newest messages. `before` and `after` are the "
    "opaque cursors a page gives; they stay valid however many messages arrive. With "
    "both: the oldest messages after `after` and before `before`.",
)
async def history(
    conversation_id: str,
    ctx: Chat,
    s: DbDep,
    before: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
    after: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=service.HISTORY_MAX)] = 50,
) -> Page:
    page = await service.history(
        s,
        account_id=ctx.account_id,
        conversation_id=conversation_id,
        before=_cursor(before),
        after=_cursor(after),
        limit=limit,
    )
    return Page(
        messages=[MessageOut.model_validate(message_out(m)) for m in page.messages],
        before=page.before,
        after=page.after,
    )


SEND_ERRORS = (
    NOT_FOUND,
    (403, "conversation.no_shared_family"),
    (404, "attachment.not_found"),
    (409, "attachment.used"),
    (409, "conversation.closed"),
    (422, "message.watch_unplayable"),
)


def _outgoing(body: TextIn | AttachmentIn | LocationIn) -> service.Outgoing:
    if isinstance(body, TextIn):
        return service.Outgoing(kind="text", text=body.text)
    if isinstance(body, LocationIn):
        return service.Outgoing(
            kind="location", lat=body.lat, lon=body.lon, accuracy_m=body.accuracy_m
        )
    return service.Outgoing(kind=body.kind, attachment_id=int(body.attachment_id))


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses={
        200: {"model": MessageOut, "description": "A retry: the first message, nothing new"},
        **responses(*AUTH, *SEND_ERRORS),
    },
    summary="Send a message (text, image, voice or location), idempotent on txn_id",
    description="Images and voice notes are uploaded first (`POST "
    "/api/v1/messaging/attachments`) and sent by id; they need the Photos (or Camera) "
    "and the Microphone permission, a shared location the Location permission.",
)
async def send(
    conversation_id: str,
    body: SendIn,
    request: Request,
    response: Response,
    ctx: Chat,
    rt: RuntimeDep,
    s: DbDep,
) -> MessageOut:
    await _kind_allowed(body.kind, request, rt, s)
    assert ctx.caller is not None
    msg, created = await service.send(
        s,
        rt,
        sender=ctx.caller.account,
        scope=_scope(ctx),
        conversation_id=conversation_id,
        txn_id=body.txn_id,
        outgoing=_outgoing(body),
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return MessageOut.model_validate(message_out(msg))


SEND_PATH = "/api/v1/conversations/{conversation_id}/messages"


async def send_lane(scope: Scope, raw: bytes) -> Reply | None:
    """``POST /api/v1/conversations/{id}/messages`` in its steady state, without
    the framework (``kares.lanes``): on SQLite, a text message to a family's
    conversation from a live session that needs no touch, the guard's decision
    remembered, every other member connected, is stored on a bare transaction
    (``service.send_steady``) and answered as the route answers it. Anything
    else (another database, a cookie, a body the route would refuse, a retry,
    a member to notify) is declined, with nothing stored, and the route above
    answers it."""
    rt: Runtime = scope["app"].state.runtime
    if rt.db.dialect != "sqlite":
        return None
    creds = lane_bearer(scope)
    if creds is None or not _json_body(Headers(scope=scope).get("content-type")):
        return None
    try:
        body = TextIn.model_validate_json(raw)
    except ValidationError:
        return None  # another kind, or a body the route refuses with its 422
    conversation_id = scope["path"].split("/")[4]
    async with rt.db.tx() as tx:
        facts = await steady_session(tx, rt, creds.token)
        if facts is None or guard_steady(catalog_of(rt), facts, *CHAT) is None:
            return None
        device = facts.device_id
        msg = await service.send_steady(
            tx,
            sender_id=facts.account_id,
            scope=f"d:{device}" if device else f"s:{facts.session_id}",
            conversation_id=conversation_id,
            txn_id=body.txn_id,
            text=body.text,
        )
        if msg is None:
            return None
        await tx.commit()
    _, out_headers, out = json_reply(
        MessageOut.model_validate(message_out(msg)).model_dump(mode="json")
    )
    return status.HTTP_201_CREATED, out_headers, out


def _json_body(content_type: str | None) -> bool:
    """Whether the framework reads the body as JSON (no type, or a JSON one)."""
    if content_type is None:
        return True
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or (
        main.startswith("application/") and main.endswith("+json")
    )


LANES: dict[tuple[str, str], Lane] = {("POST", SEND_PATH): send_lane}


@router.post(
    "/conversations/{conversation_id}/read",
    response_model=ReceiptOut,
    responses=responses(*AUTH, NOT_FOUND, NO_MESSAGE),
    summary="I have read up to this message (a receipt the conversation sees)",
)
async def mark_read(conversation_id: str, body: ReadIn, ctx: Chat, s: DbDep) -> ReceiptOut:
    r = await service.mark_read(
        s,
        account_id=ctx.account_id,
        conversation_id=conversation_id,
        position=int(body.message_id),
    )
    return ReceiptOut(account_id=r.account_id, up_to=str(r.up_to), read_at=r.read_at)


@router.get(
    "/conversations/{conversation_id}/receipts",
    response_model=list[ReceiptOut],
    responses=responses(*AUTH, NOT_FOUND),
    summary="How far each member has read",
)
async def receipts(conversation_id: str, ctx: Chat, s: DbDep) -> list[ReceiptOut]:
    got = await service.receipts(s, account_id=ctx.account_id, conversation_id=conversation_id)
    return [ReceiptOut(account_id=r.account_id, up_to=str(r.up_to), read_at=r.read_at) for r in got]


@router.post(
    "/conversations/{conversation_id}/messages/{message_id}/recall",
    response_model=MessageOut,
    responses=responses(
        *AUTH,
        NOT_FOUND,
        NO_MESSAGE,
        (403, "message.not_sender"),
        (409, "message.recall_expired"),
    ),
    summary="Recall my message (within KARES_MESSAGE_RECALL_SECONDS, 120 by default)",
)
async def recall(
    conversation_id: str, message_id: str, ctx: Chat, rt: RuntimeDep, s: DbDep
) -> MessageOut:
    m = await service.recall(
        s,
        rt,
        account_id=ctx.account_id,
        conversation_id=conversation_id,
        position=service.parse_message_id(message_id),
    )
    return MessageOut.model_validate(message_out(m))


@router.delete(
    "/conversations/{conversation_id}/messages/{message_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(*AUTH, NOT_FOUND, NO_MESSAGE),
    summary="Delete a message for me (the others keep it)",
)
async def hide(conversation_id: str, message_id: str, ctx: Chat, s: DbDep) -> Response:
    await service.hide(
        s,
        account_id=ctx.account_id,
        conversation_id=conversation_id,
        position=service.parse_message_id(message_id),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/messaging/events",
    response_model=EventsOut,
    responses=responses(*AUTH),
    summary="Everything I may see after a position, in order (what the WebSocket resumes by)",
)
async def events_since(
    ctx: Chat,
    s: DbDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventsOut:
    got, nxt = await stream.since(s, ctx.account_id, after, limit)
    return EventsOut.model_validate({"events": got, "next": nxt})


def _attachment_out(att: Any) -> AttachmentOut:
    return AttachmentOut(
        id=str(att.id),
        kind=att.kind,
        content_type=att.content_type,
        byte_size=att.byte_size,
        duration_ms=att.duration_ms,
        codec=att.codec,
        width=att.width,
        height=att.height,
    )


@router.post(
    "/messaging/attachments",
    status_code=status.HTTP_201_CREATED,
    response_model=AttachmentOut,
    responses=responses(*AUTH, *IMAGE_ERRORS),
    summary="Upload an image or a voice note, to send it next",
    description="An image is sniffed, capped, re-encoded and stripped of its metadata by "
    "the media pipeline; a voice note (Ogg Opus, WebM/Opus, MP4/AAC or AMR-NB) is sniffed "
    "and its duration read from it and capped (KARES_VOICE_MAX_SECONDS).",
)
async def upload_attachment(
    request: Request,
    file: Annotated[UploadFile, File(description="The image or the voice note")],
    ctx: Chat,
    rt: RuntimeDep,
    s: DbDep,
    kind: Annotated[Literal["image", "voice"], Query()] = "image",
) -> AttachmentOut:
    await _kind_allowed(kind, request, rt, s)
    cap = rt.settings.image_max_bytes if kind == "image" else rt.settings.voice_max_bytes
    raw = await file.read(cap + 1)
    att = await attachments.upload(s, rt, account_id=ctx.account_id, kind=kind, raw=raw)
    return _attachment_out(att)


@router.get(
    "/messaging/attachments/{attachment_id}",
    response_class=Response,
    responses={
        200: {
            "content": {
                "image/jpeg": {},
                "image/png": {},
                "audio/ogg": {},
                "audio/amr": {},
                "audio/webm": {},
                "audio/mp4": {},
            },
            "description": "The attachment",
        },
        **responses(*AUTH, (404, "attachment.not_found")),
    },
    summary="Download an attachment (its uploader, or anyone who may read its message)",
)
async def get_attachment(attachment_id: str, ctx: Chat, s: DbDep) -> Response:
    if not attachment_id.isdigit() or len(attachment_id) > 18:
        raise Problem(404, "attachment.not_found", "No such attachment.")
    att = await service.attachment_for(
        s, account_id=ctx.account_id, attachment_id=int(attachment_id)
    )
    return Response(
        att.data,
        media_type=att.content_type,
        headers={
            "Cache-Control": "private, max-age=86400",
            "ETag": f'"{att.sha256}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
