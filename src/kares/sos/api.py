"""HTTP routes of the SOS domain."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from kares.deps import DbDep, RuntimeDep
from kares.errors import responses
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, guard
from kares.sos import service
from kares.sos.models import SosAlert
from kares.sos.schemas import SosOut, SosRaise

router = APIRouter(prefix="/api/v1", tags=["sos"])
AUTH = AUTH_ERRORS


async def sos_out(s: AsyncSession, a: SosAlert) -> SosOut:
    return SosOut(
        id=a.id,
        account_id=a.account_id,
        status=a.status,
        lat=a.lat,
        lon=a.lon,
        accuracy_m=a.accuracy_m,
        precision=a.precision,
        battery=a.battery,
        note=a.note,
        recipients=await service.recipients_of(s, a.id),
        created_at=a.created_at,
        alarm_at=a.alarm_at,
        repeats=a.repeats,
        repeated_at=a.repeated_at,
        acknowledged_by=a.acknowledged_by,
        acknowledged_at=a.acknowledged_at,
    )


@router.post(
    "/sos",
    status_code=status.HTTP_201_CREATED,
    response_model=SosOut,
    responses={
        200: {
            "model": SosOut,
            "description": "The caller already has an open SOS: this one was added to it "
            "(`repeats`) and nobody was told again",
        },
        **responses(*AUTH),
    },
    summary="Raise an SOS (from the app or a paired watch) with the last location",
    description="Every guardian of the caller is told at once: in-app, by push to each of "
    "their devices (whatever their preferences and quiet hours), and by SMS. Reminders "
    "follow every 2 minutes until one of them answers. A person has one open SOS at a "
    "time: another while it is open (however many at once) is added to it, answered "
    "200 with that alert, and tells nobody again.",
)
async def raise_sos(
    body: SosRaise,
    ctx: Annotated[Allowed, guard("sos", "raise")],
    rt: RuntimeDep,
    s: DbDep,
    response: Response,
) -> SosOut:
    assert ctx.caller is not None
    alert, opened = await service.raise_alert(
        s,
        catalog_of(rt),
        account=ctx.caller.account,
        device_id=ctx.caller.session.device_id,
        degraded=ctx.degraded,
        lat=body.lat,
        lon=body.lon,
        accuracy_m=body.accuracy_m,
        battery=body.battery,
        note=body.note,
    )
    if not opened:
        response.status_code = status.HTTP_200_OK
    return await sos_out(s, alert)


@router.get(
    "/sos",
    response_model=list[SosOut],
    responses=responses(*AUTH),
    summary="SOS alerts I raised or was told of, newest first",
)
async def list_sos(
    ctx: Annotated[Allowed, guard("sos", "respond")],
    s: DbDep,
    status_: Annotated[
        Literal["open", "acknowledged", "late"] | None, Query(alias="status")
    ] = None,
) -> list[SosOut]:
    alerts = await service.alerts_for(s, account_id=ctx.account_id, status=status_)
    return [await sos_out(s, a) for a in alerts]


@router.post(
    "/sos/{alert_id}/acknowledge",
    response_model=SosOut,
    responses=responses(*AUTH, (404, "sos.not_found"), (403, "sos.not_recipient")),
    summary="A guardian answers the SOS; it closes and everyone else is told",
)
async def acknowledge(
    alert_id: str, ctx: Annotated[Allowed, guard("sos", "respond")], s: DbDep
) -> SosOut:
    assert ctx.caller is not None
    alert = await service.acknowledge(s, responder=ctx.caller.account, alert_id=alert_id)
    return await sos_out(s, alert)
