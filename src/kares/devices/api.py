"""HTTP routes of the devices domain."""

from __future__ import annotations

from typing import Annotated

import segno
from fastapi import APIRouter, Request, Response

from kares.accounts.auth import AUTH_ERRORS, DbDep, RuntimeDep
from kares.devices import service
from kares.devices.models import Device, Watch
from kares.devices.schemas import (
    DeviceOut,
    PermissionsReport,
    StatusReport,
    WatchCredentials,
    WatchHello,
    WatchOut,
    WatchPair,
)
from kares.errors import Problem, responses
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, guard

router = APIRouter(prefix="/api/v1", tags=["devices"])
AUTH = AUTH_ERRORS


def device_out(d: Device, perms: dict[str, str], current_device: str | None) -> DeviceOut:
    return DeviceOut(
        id=d.id,
        current=d.id == current_device,
        kind=d.kind,
        model=d.model,
        os=d.os,
        os_version=d.os_version,
        app_version=d.app_version,
        language=d.language,
        permissions=perms,
        battery=d.battery,
        charging=d.charging,
        battery_at=d.battery_at,
        first_seen_at=d.first_seen_at,
        last_seen_at=d.last_seen_at,
    )


DevicesCtx = Annotated[Allowed, guard("account_security", "devices")]


@router.get(
    "/devices",
    response_model=list[DeviceOut],
    responses=responses(*AUTH),
    summary="The devices this account has used, with their reported permissions",
)
async def list_devices(ctx: DevicesCtx, s: DbDep) -> list[DeviceOut]:
    assert ctx.caller is not None
    devs = await service.list_for(s, account_id=ctx.account_id)
    perms = await service.permissions_for_many(s, [d.id for d in devs])
    return [device_out(d, perms[d.id], ctx.caller.session.device_id) for d in devs]


@router.get(
    "/devices/{device_id}",
    response_model=DeviceOut,
    responses=responses(*AUTH, (404, "device.not_found")),
    summary="One device",
)
async def get_device(device_id: str, ctx: DevicesCtx, s: DbDep) -> DeviceOut:
    assert ctx.caller is not None
    d = await service.get_owned(s, account_id=ctx.account_id, device_id=device_id)
    perms = await service.permissions_of(s, d.id)
    return device_out(d, perms, ctx.caller.session.device_id)


@router.put(
    "/devices/{device_id}/permissions",
    response_model=DeviceOut,
    responses=responses(
        *AUTH,
        (404, "device.not_found"),
        (422, "permission.unknown"),
        (422, "permission.invalid_state"),
    ),
    summary="Report the OS permission states of a device (policy 1.6.1)",
    description="Closing a permission disables only the features that need it (see the "
    "policy's permission table); location in the `approximate` state keeps only "
    "approximate location.",
)
async def put_permissions(
    device_id: str, body: PermissionsReport, ctx: DevicesCtx, rt: RuntimeDep, s: DbDep
) -> DeviceOut:
    assert ctx.caller is not None
    perms = await service.report_permissions(
        s, catalog_of(rt), account_id=ctx.account_id, device_id=device_id, states=body.permissions
    )
    d = await service.get_owned(s, account_id=ctx.account_id, device_id=device_id)
    return device_out(d, perms, ctx.caller.session.device_id)


@router.put(
    "/devices/{device_id}/status",
    response_model=DeviceOut,
    responses=responses(*AUTH, (404, "device.not_found")),
    summary="Report a device's battery (apps and watches, regularly)",
)
async def put_status(device_id: str, body: StatusReport, ctx: DevicesCtx, s: DbDep) -> DeviceOut:
    assert ctx.caller is not None
    d = await service.report_status(
        s,
        account_id=ctx.account_id,
        device_id=device_id,
        battery=body.battery,
        charging=body.charging,
    )
    perms = await service.permissions_of(s, d.id)
    return device_out(d, perms, ctx.caller.session.device_id)


# --- watches -------------------------------------------------------------------------------


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
    responses=responses((409, "watch.already_paired"), (422, "watch.invalid_imei")),
    summary="A watch introduces itself and gets a credential and a pairing code",
    description="The watch shows `pairing_text` as a QR code; a guardian scans it. Until "
    "then the credential only answers GET /api/v1/watches/me. Introducing itself again "
    "replaces both.",
)
async def watch_hello(body: WatchHello, s: DbDep) -> WatchCredentials:
    w, token, secret = await service.watch_hello(s, imei=body.imei, model=body.model)
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
    watch_id: str, ctx: Annotated[Allowed, guard("watches", "manage")], s: DbDep
) -> Response:
    await service.unpair_watch(s, actor_id=ctx.account_id, watch_id=watch_id)
    return Response(status_code=204)
