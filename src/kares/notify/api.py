"""HTTP routes of the in-app inbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kares.accounts.auth import CallerDep, DbDep
from kares.errors import Problem, responses
from kares.notify import service
from kares.notify.schemas import MarkedRead, NotificationOut, UnreadCount
from kares.privacy.guard import guard

router = APIRouter(prefix="/api/v1", tags=["notifications"])
AUTH = ((401, "auth.required"), (401, "auth.invalid_token"), (403, "auth.csrf"))


@router.get(
    "/notifications",
    dependencies=[guard("notifications", "inbox")],
    response_model=list[NotificationOut],
    responses=responses(*AUTH),
    summary="The inbox, newest first",
)
async def list_notifications(
    caller: CallerDep,
    s: DbDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[str | None, Query(max_length=32)] = None,
) -> list[NotificationOut]:
    rows = await service.list_for(s, account_id=caller.account.id, limit=limit, before=before)
    return [
        NotificationOut(
            id=n.id,
            category=n.category,
            title=n.title,
            body=n.body,
            data=n.data,
            created_at=n.created_at,
            read_at=n.read_at,
        )
        for n in rows
    ]


@router.get(
    "/notifications/unread-count",
    dependencies=[guard("notifications", "inbox")],
    response_model=UnreadCount,
    responses=responses(*AUTH),
    summary="How many are unread",
)
async def unread(caller: CallerDep, s: DbDep) -> UnreadCount:
    return UnreadCount(unread=await service.unread_count(s, account_id=caller.account.id))


@router.post(
    "/notifications/{notification_id}/read",
    dependencies=[guard("notifications", "inbox")],
    response_model=MarkedRead,
    responses=responses(*AUTH, (404, "notification.not_found")),
    summary="Mark one read",
)
async def mark_one(notification_id: str, caller: CallerDep, s: DbDep) -> MarkedRead:
    n = await service.mark_read(s, account_id=caller.account.id, notification_id=notification_id)
    if n == 0 and not await service.exists(
        s, account_id=caller.account.id, notification_id=notification_id
    ):
        raise Problem(404, "notification.not_found", "No such notification.")
    return MarkedRead(marked=n)


@router.post(
    "/notifications/read-all",
    dependencies=[guard("notifications", "inbox")],
    response_model=MarkedRead,
    responses=responses(*AUTH),
    summary="Mark every notification read",
)
async def mark_all(caller: CallerDep, s: DbDep) -> MarkedRead:
    return MarkedRead(
        marked=await service.mark_read(s, account_id=caller.account.id, notification_id=None)
    )
