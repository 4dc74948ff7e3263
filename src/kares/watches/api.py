"""HTTP routes of the watches domain: a watch introduces itself, is paired with
a dependant, listed and unpaired."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import segno
from fastapi import APIRouter, Request, Response

from kares.deps import DbDep, RuntimeDep, request_ip
from kares.devices import service as devices
from kares.devices.api import device_out
from kares.devices.schemas import DeviceOut, PermissionsReport
from kares.errors import Problem, responses
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, guard
from kares.watches import service
from kares.watches.models import Watch
from kares.watches.schemas import WatchCredentials, WatchHello, WatchOut, WatchPair

router = APIRouter(prefix="/api/v1", tags=["watches"])
AUTH = AUTH_ERRORS


def watch_out(w: Watch) -> WatchOut:
    return WatchOut(
        id=w.id,
        status=w.status,
        model=w.model,
        imei_tail=w.imei_tail,
        account_id=w.account_id,
        family_id=w.family_id,
        device_id=w.device_id,
        paired_at=w.paired_at,
        last_seen_at=w.last_seen_at,
    )


@router.post(
    "/watches/hello",
    dependencies=[guard("watches", "hello")],
    response_model=WatchCredentials,
    responses=responses(
        (409, "watch.already_paired"), (422, "watch.invalid_imei"), (429, "watch.hello_limit")
    ),
    summary="A watch introduces itself and gets a credential and a pairing code",
    description="The watch shows `pairing_text` as a QR code; a guardian scans it. Until "
    "then the credential only answers GET /api/v1/watches/me. Introducing itself again "
    "replaces both. A network address may introduce `KARES_WATCH_HELLO_PER_IP_PER_HOUR` "
    "(20) watches an hour; a watch not paired within `KARES_WATCH_HELLO_TTL_SECONDS` (a day) "
    "is forgotten.",
)
async def watch_hello(
    body: WatchHello, request: Request, rt: RuntimeDep, s: DbDep
) -> WatchCredentials:
    settings = rt.settings
    w, token, secret = await service.watch_hello(
        s,
        imei=body.imei,
        model=body.model,
        peer=request_ip(request, rt),
        per_hour=settings.watch_hello_per_ip_per_hour,
        forget_after=timedelta(seconds=settings.watch_hello_ttl_seconds),
    )
    text = service.pairing_text(body.imei, secret)
    return WatchCredentials(
        watch_id=w.id,
        token=token,
        pairing_text=text,
        pairing_qr_svg=segno.make(text, error="m").svg_inline(scale=4),
    )


@router.get(
    "/watches/me",
    dependencies=[guard("watches", "hello")],
    response_model=WatchOut,
    responses=responses((401, "auth.invalid_token")),
    summary="The calling watch: has it been paired yet?",
)
async def watch_me(request: Request, s: DbDep) -> WatchOut:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    w = await service.watch_by_token(s, token.strip()) if scheme.lower() == "bearer" else None
    if w is None:
        raise Problem(401, "auth.invalid_token", "Not a watch credential (any more).")
    return watch_out(w)


@router.post(
    "/watches/pair",
    response_model=WatchOut,
    status_code=201,
    responses=responses(
        *AUTH,
        (400, "watch.pairing_invalid"),
        (403, "family.forbidden"),
        (404, "family.not_found"),
        (404, "dependant.not_found"),
    ),
    summary="A family's owner or guardian pairs a scanned watch with a dependant",
)
async def watch_pair(
    body: WatchPair,
    ctx: Annotated[Allowed, guard("watches", "pair")],
    s: DbDep,
) -> WatchOut:
    w = await service.pair_watch(
        s,
        actor_id=ctx.account_id,
        family_id=body.family_id,
        dependant_id=body.dependant_id,
        text=body.text,
    )
    return watch_out(w)


@router.get(
    "/families/{family_id}/watches",
    response_model=list[WatchOut],
    responses=responses(*AUTH, (404, "family.not_found")),
    summary="The watches paired with this family's dependants",
)
async def family_watches(
    family_id: str, ctx: Annotated[Allowed, guard("watches", "manage")], s: DbDep
) -> list[WatchOut]:
    return [
        watch_out(w)
        for w in await service.family_watches(s, actor_id=ctx.account_id, family_id=family_id)
    ]


@router.delete(
    "/watches/{watch_id}",
    status_code=204,
    responses=responses(*AUTH, (404, "watch.not_found")),
    summary="Unpair a watch: its credential stops working at once",
)
async def watch_unpair(
    watch_id: str,
    ctx: Annotated[Allowed, guard("watches", "manage")],
    rt: RuntimeDep,
    s: DbDep,
) -> Response:
    await service.unpair_watch(
        s,
        actor_id=ctx.account_id,
        watch_id=watch_id,
        forget_after=timedelta(seconds=rt.settings.watch_hello_ttl_seconds),
    )
    return Response(status_code=204)


@router.put(
    "/watches/{watch_id}/permissions",
    response_model=DeviceOut,
    responses=responses(
        *AUTH,
        (404, "watch.not_found"),
        (422, "permission.unknown"),
        (422, "permission.invalid_state"),
    ),
    summary="A guardian answers the watch's permission questions (e.g. its Microphone)",
    description="A watch has no pop-up its wearer could answer: the family's owner or a "
    "guardian sets its permission states (policy 1.6.1; for a child under 14 the watch's "
    "voice notes are kept only once a guardian granted `microphone`). The answer is the "
    "watch's device.",
)
async def watch_permissions(
    watch_id: str,
    body: PermissionsReport,
    ctx: Annotated[Allowed, guard("watches", "manage")],
    rt: RuntimeDep,
    s: DbDep,
) -> DeviceOut:
    w, perms = await service.set_permissions(
        s, catalog_of(rt), actor_id=ctx.account_id, watch_id=watch_id, states=body.permissions
    )
    assert w.device_id is not None and w.account_id is not None
    d = await devices.get_owned(s, account_id=w.account_id, device_id=w.device_id)
    return device_out(d, perms, None)
