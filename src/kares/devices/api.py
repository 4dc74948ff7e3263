"""HTTP routes of the devices domain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from kares.deps import DbDep, RuntimeDep
from kares.devices import service
from kares.devices.models import Device
from kares.devices.schemas import (
    DeviceOut,
    PermissionsReport,
    StatusReport,
)
from kares.errors import responses
from kares.identity.auth import AUTH_ERRORS
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
