"""HTTP routes of notifications: the in-app inbox, preferences, push channels."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.identity.auth import AUTH_ERRORS, CallerDep
from kares.notify import service
from kares.notify.schemas import (
    ApnsRegistration,
    MarkedRead,
    NotificationOut,
    PreferencesIn,
    PreferencesOut,
    PushConfigOut,
    PushRegistration,
    PushTokenOut,
    UnreadCount,
    WebPushRegistration,
)
from kares.privacy.guard import guard

if TYPE_CHECKING:
    from kares.notify.models import PushToken

router = APIRouter(prefix="/api/v1", tags=["notifications"])
AUTH = AUTH_ERRORS
# Ids are hex; anything else (a NUL byte, say) is refused before it reaches the database.
ID = r"^[A-Za-z0-9_-]+$"
DeviceId = Annotated[str, Path(max_length=64, pattern=ID)]


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
    before: Annotated[str | None, Query(max_length=32, pattern=ID)] = None,
) -> list[NotificationOut]:
    rows = await service.list_for(s, account_id=caller.account.id, limit=limit, before=before)
    # title, body and data as the inbox shows them: rendered from what they reference
    shown = [asdict(await service.shown(s, n)) for n in rows]
    return [
        NotificationOut(
            id=n.id, category=n.category, created_at=n.created_at, read_at=n.read_at, **v
        )
        for n, v in zip(rows, shown, strict=True)
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
async def mark_one(
    notification_id: Annotated[str, Path(max_length=64, pattern=ID)], caller: CallerDep, s: DbDep
) -> MarkedRead:
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


# --- preferences -----------------------------------------------------------------------
# Declared as the notifications function as a whole (no feature): choosing what
# to receive must work even on a device whose Notifications permission is closed.


@router.get(
    "/notifications/preferences",
    dependencies=[guard("notifications")],
    response_model=PreferencesOut,
    responses=responses(*AUTH),
    summary="Which categories are pushed, and quiet hours",
)
async def get_preferences(caller: CallerDep, s: DbDep) -> PreferencesOut:
    prefs = await service.preferences_of(s, caller.account.id)
    return PreferencesOut.model_validate(service.prefs_out(prefs))


@router.put(
    "/notifications/preferences",
    dependencies=[guard("notifications")],
    response_model=PreferencesOut,
    responses=responses(
        *AUTH,
        (422, "preferences.category_unknown"),
        (422, "preferences.cannot_disable"),
        (422, "preferences.quiet_hours_invalid"),
        (422, "preferences.time_zone_unknown"),
    ),
    summary="Turn categories on or off, set quiet hours",
    description="Turning a category off stops its pushes; the inbox still gets everything. "
    "`sos` and `security` cannot be turned off and are pushed during quiet hours too; "
    "other pushes wait until the quiet hours end.",
)
async def put_preferences(body: PreferencesIn, caller: CallerDep, s: DbDep) -> PreferencesOut:
    quiet: Any = service.KEEP
    if "quiet_hours" in body.model_fields_set:
        q = body.quiet_hours
        quiet = (q.start, q.end, q.time_zone) if q is not None else None
    prefs = await service.set_preferences(
        s, account_id=caller.account.id, categories=body.categories, quiet=quiet
    )
    return PreferencesOut.model_validate(service.prefs_out(prefs))


# --- push channels ---------------------------------------------------------------------


def token_out(row: PushToken) -> PushTokenOut:
    return PushTokenOut(
        device_id=row.device_id,
        provider=row.provider,
        hint=service.token_hint(row),
        voip=service.wakes(row),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get(
    "/notifications/push/config",
    dependencies=[guard("notifications", "push")],
    response_model=PushConfigOut,
    responses=responses(*AUTH),
    summary="What a device needs to register for pushes",
)
async def push_config(rt: RuntimeDep) -> PushConfigOut:
    return PushConfigOut(
        providers=rt.push.available(), webpush_public_key=rt.push.webpush_public_key()
    )


@router.put(
    "/devices/{device_id}/push",
    dependencies=[guard("notifications", "push")],
    response_model=PushTokenOut,
    responses=responses(
        *AUTH,
        (404, "device.not_found"),
        (409, "push.conflict"),
        (422, "push.provider_unavailable"),
        (422, "push.token_invalid"),
        (422, "push.endpoint_not_allowed"),
    ),
    summary="Register (or replace) this device's push channel",
    description="One channel per device: `apns` (device token, hex), `fcm` (registration "
    "token), `webpush` (the browser's PushSubscription JSON) or `console` (development).",
)
async def put_push(
    device_id: DeviceId,
    body: Annotated[PushRegistration, Body()],
    caller: CallerDep,
    rt: RuntimeDep,
    s: DbDep,
) -> PushTokenOut:
    if isinstance(body, WebPushRegistration):
        sub = body.subscription
        reg = service.Registration(
            "webpush", endpoint=sub.endpoint, p256dh=sub.keys.p256dh, auth=sub.keys.auth
        )
    elif isinstance(body, ApnsRegistration):
        reg = service.Registration("apns", token=body.token, voip_token=body.voip_token)
    else:
        reg = service.Registration(body.provider, token=body.token)
    row = await service.register_push(
        s, rt.push, account_id=caller.account.id, device_id=device_id, reg=reg
    )
    return token_out(row)


@router.get(
    "/devices/{device_id}/push",
    dependencies=[guard("notifications")],
    response_model=PushTokenOut,
    responses=responses(*AUTH, (404, "device.not_found"), (404, "push.not_registered")),
    summary="This device's push channel",
)
async def get_push(device_id: DeviceId, caller: CallerDep, s: DbDep) -> PushTokenOut:
    return token_out(await service.get_push(s, account_id=caller.account.id, device_id=device_id))


@router.delete(
    "/devices/{device_id}/push",
    dependencies=[guard("notifications")],
    status_code=204,
    response_class=Response,
    responses=responses(*AUTH, (404, "device.not_found")),
    summary="Remove a device's push channel (it gets no more pushes)",
)
async def delete_push(device_id: DeviceId, caller: CallerDep, s: DbDep) -> Response:
    await service.remove_push(s, account_id=caller.account.id, device_id=device_id)
    return Response(status_code=204)


@router.get(
    "/notifications/push-tokens",
    dependencies=[guard("notifications")],
    response_model=list[PushTokenOut],
    responses=responses(*AUTH),
    summary="The push channels of this account's devices",
)
async def list_push(caller: CallerDep, s: DbDep) -> list[PushTokenOut]:
    return [token_out(r) for r in await service.list_push(s, account_id=caller.account.id)]
