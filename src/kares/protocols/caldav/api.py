"""JSON routes of the CalDAV module (under /api/v1): app passwords for CalDAV
clients, read-only subscription URLs, and iCalendar import and export."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from kares.deps import DbDep, RuntimeDep, request_ip
from kares.errors import Problem, responses
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.guard import Allowed, guard
from kares.protocols.caldav import feeds, importer, passwords, store
from kares.protocols.caldav import schemas as sc

router = APIRouter(tags=["schedule"])
AUTH = AUTH_ERRORS
PASSWORDS = "/api/v1/caldav/passwords"
GUARD_PASSWORDS = ("schedule", "device_sync")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _password_out(v: passwords.PasswordView) -> sc.AppPasswordOut:
    p = v.password
    return sc.AppPasswordOut(
        id=p.id,
        name=p.name,
        username=p.username,
        session_id=p.session_id,
        created_at=p.created_at,
        last_used_at=v.last_used_at,
        revoked=v.revoked,
    )


@router.post(
    PASSWORDS,
    status_code=status.HTTP_201_CREATED,
    response_model=sc.AppPasswordCreated,
    responses=responses(*AUTH, (409, "caldav.limit"), (422, "caldav.invalid_name")),
    summary="Create an app password for a CalDAV client (shown once)",
    description="A user name and password for the phone's own calendar (iOS, DAVx5, "
    "Thunderbird): they work for CalDAV and nothing else, are listed with your sessions, "
    "and stop working when revoked.",
)
async def create_password(
    body: sc.AppPasswordCreate,
    request: Request,
    ctx: Annotated[Allowed, guard(*GUARD_PASSWORDS)],
    rt: RuntimeDep,
    s: DbDep,
) -> sc.AppPasswordCreated:
    p, secret = await passwords.create(
        s, account_id=ctx.account_id, name=body.name, ip=request_ip(request, rt)
    )
    out = _password_out(passwords.PasswordView(p, None, False))
    setup = sc.CalDavSetup(url=f"{_base(request)}/dav/", username=p.username, password=secret)
    return sc.AppPasswordCreated(**out.model_dump(), password=secret, setup=setup)


@router.get(
    PASSWORDS,
    response_model=list[sc.AppPasswordOut],
    responses=responses(*AUTH),
    summary="Your CalDAV app passwords, with their last use",
)
async def list_passwords(
    ctx: Annotated[Allowed, guard(*GUARD_PASSWORDS)], s: DbDep
) -> list[sc.AppPasswordOut]:
    return [_password_out(v) for v in await passwords.list_for(s, account_id=ctx.account_id)]


@router.delete(
    PASSWORDS + "/{password_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH, (404, "caldav.not_found")),
    summary="Revoke a CalDAV app password (it stops working at once)",
)
async def revoke_password(
    password_id: str, ctx: Annotated[Allowed, guard(*GUARD_PASSWORDS)], s: DbDep
) -> Response:
    await passwords.revoke(s, account_id=ctx.account_id, password_id=password_id)
    return Response(status_code=204)


# --- subscriptions, import, export -------------------------------------------------------------

CALENDAR = "/api/v1/calendars/{calendar_id}"
# an .ics file of a whole calendar is larger than a JSON body (app.BodyLimit reads these)
IMPORT_PATH = re.compile(r"^/api/v1/calendars/[^/]+/import$")
IMPORT_BODY_LIMIT = 16 * 1024 * 1024
GUARD_EVENTS = ("schedule", "events")


def _sub_out(v: feeds.SubscriptionView) -> sc.SubscriptionOut:
    x = v.sub
    return sc.SubscriptionOut(
        id=x.id, calendar_id=x.calendar_id, name=x.name, created_at=x.created_at, revoked=v.revoked
    )


@router.post(
    CALENDAR + "/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=sc.SubscriptionCreated,
    responses=responses(
        *AUTH,
        (404, "calendar.not_found"),
        (409, "calendar.subscription_limit"),
        (422, "calendar.invalid_name"),
    ),
    summary="Make a read-only iCalendar URL of a calendar (shown once)",
    description="Anyone with the URL can read the calendar (no sign-in), until it is "
    "revoked or you can no longer see the calendar.",
)
async def create_subscription(
    calendar_id: str,
    body: sc.SubscriptionCreate,
    request: Request,
    ctx: Annotated[Allowed, guard(*GUARD_EVENTS)],
    s: DbDep,
) -> sc.SubscriptionCreated:
    sub, token = await feeds.create(
        s, account_id=ctx.account_id, calendar_id=calendar_id, name=body.name
    )
    url = _base(request) + feeds.path_of(token)
    webcal = "webcal://" + url.split("://", 1)[1]
    out = _sub_out(feeds.SubscriptionView(sub, False))
    return sc.SubscriptionCreated(**out.model_dump(), url=url, webcal=webcal)


@router.get(
    CALENDAR + "/subscriptions",
    response_model=list[sc.SubscriptionOut],
    responses=responses(*AUTH, (404, "calendar.not_found")),
    summary="Your subscription URLs of a calendar (without their secrets)",
)
async def list_subscriptions(
    calendar_id: str, ctx: Annotated[Allowed, guard(*GUARD_EVENTS)], s: DbDep
) -> list[sc.SubscriptionOut]:
    if await store.calendar_of(s, ctx.account_id, calendar_id) is None:
        raise Problem(404, "calendar.not_found", "No such calendar.")
    got = await feeds.list_for(s, account_id=ctx.account_id, calendar_id=calendar_id)
    return [_sub_out(v) for v in got]


@router.delete(
    CALENDAR + "/subscriptions/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH, (404, "calendar.subscription_not_found")),
    summary="Revoke a subscription URL (it stops working at once)",
)
async def revoke_subscription(
    calendar_id: str,
    subscription_id: str,
    ctx: Annotated[Allowed, guard(*GUARD_EVENTS)],
    s: DbDep,
) -> Response:
    await feeds.revoke(
        s, account_id=ctx.account_id, calendar_id=calendar_id, subscription_id=subscription_id
    )
    return Response(status_code=204)


@router.post(
    CALENDAR + "/import",
    response_model=sc.ImportResult,
    responses=responses(
        *AUTH,
        (400, "calendar.invalid_file"),
        (400, "calendar.invalid_object"),
        (403, "calendar.read_only"),
        (404, "calendar.not_found"),
        (413, "request.too_large"),
    ),
    summary="Import an iCalendar file (.ics) into a calendar, all or nothing",
    description="The body is the file itself (text/calendar). Each UID becomes one "
    "calendar object (an existing one with that UID is replaced). One bad event refuses "
    "the whole file, saying which, and nothing is stored.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/calendar": {"schema": {"type": "string"}}},
        }
    },
)
async def import_ics(
    calendar_id: str,
    request: Request,
    ctx: Annotated[Allowed, guard(*GUARD_EVENTS)],
    s: DbDep,
) -> sc.ImportResult:
    body = await request.body()
    created, updated = await importer.import_file(s, ctx.account_id, calendar_id, body)
    return sc.ImportResult(created=created, updated=updated)


@router.get(
    CALENDAR + "/export.ics",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {}}, "description": "The calendar as iCalendar"},
        **responses(*AUTH, (404, "calendar.not_found")),
    },
    summary="Export a calendar as one iCalendar file",
)
async def export_ics(
    calendar_id: str, ctx: Annotated[Allowed, guard(*GUARD_EVENTS)], s: DbDep
) -> Response:
    text = await store.export_of(s, ctx.account_id, calendar_id)
    if text is None:
        raise Problem(404, "calendar.not_found", "No such calendar.")
    return Response(
        text,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{calendar_id}.ics"'},
    )
