"""HTTP routes of health alerts: a dependant's thresholds, set by the family's
owner and guardians (docs/HEALTH.md, "Alerts")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from kares.deps import DbDep
from kares.errors import responses
from kares.health import alerts
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.guard import Allowed, guard

router = APIRouter(prefix="/api/v1", tags=["health"])
Circles = Annotated[Allowed, guard("family", "circles")]
PATH = "/families/{family_id}/members/{account_id}/health/alerts"
ERRORS = (
    *AUTH_ERRORS,
    (404, "family.not_found"),
    (404, "family.member_not_found"),
    (403, "health_alert.forbidden"),
    (403, "health_alert.not_dependant"),
)


class HeartRateAbove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bpm: int = Field(ge=60, le=220, description="beats per minute the heart rate stays above")
    minutes: int = Field(ge=1, le=240, description="for at least this long")


class Spo2Below(BaseModel):
    model_config = ConfigDict(extra="forbid")
    percent: int = Field(ge=70, le=99, description="a SpO2 reading below this")


class NoStepsBy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time: str = Field(pattern=alerts.HHMM.pattern, examples=["12:00"])
    time_zone: str = Field(
        default="UTC", max_length=64, description="IANA time zone of `time`", examples=["UTC"]
    )


class WristOff(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: int = Field(ge=1, le=72, description="off the wrist at least this long")


class Thresholds(BaseModel):
    """A dependant's alerts; a kind left out (or null, fall false) is not watched."""

    model_config = ConfigDict(extra="forbid")
    heart_rate_above: HeartRateAbove | None = None
    spo2_below: Spo2Below | None = None
    no_steps_by: NoStepsBy | None = None
    fall: bool = False
    wrist_off: WristOff | None = None


def _out(rows: list[alerts.HealthAlert]) -> Thresholds:
    out = Thresholds()
    for r in rows:
        if r.kind == "heart_rate_above":
            assert r.level is not None and r.minutes is not None
            out.heart_rate_above = HeartRateAbove(bpm=int(r.level), minutes=r.minutes)
        elif r.kind == "spo2_below":
            assert r.level is not None
            out.spo2_below = Spo2Below(percent=int(r.level))
        elif r.kind == "no_steps_by":
            assert r.local_time is not None
            out.no_steps_by = NoStepsBy(time=r.local_time, time_zone=r.time_zone or "UTC")
        elif r.kind == "fall":
            out.fall = True
        elif r.kind == "wrist_off":
            assert r.level is not None
            out.wrist_off = WristOff(hours=int(r.level))
    return out


def _wanted(body: Thresholds) -> list[alerts.Threshold]:
    T = alerts.Threshold
    out = []
    if body.heart_rate_above is not None:
        x = body.heart_rate_above
        out.append(T("heart_rate_above", level=float(x.bpm), minutes=x.minutes))
    if body.spo2_below is not None:
        out.append(T("spo2_below", level=float(body.spo2_below.percent)))
    if body.no_steps_by is not None:
        y = body.no_steps_by
        out.append(T("no_steps_by", local_time=y.time, time_zone=y.time_zone))
    if body.fall:
        out.append(T("fall"))
    if body.wrist_off is not None:
        out.append(T("wrist_off", level=float(body.wrist_off.hours)))
    return out


@router.get(
    PATH,
    response_model=Thresholds,
    responses=responses(*ERRORS),
    summary="A dependant's health alerts (the family's owner and guardians)",
)
async def get_alerts(family_id: str, account_id: str, ctx: Circles, s: DbDep) -> Thresholds:
    rows = await alerts.thresholds(
        s, family_id=family_id, actor_id=ctx.account_id, account_id=account_id
    )
    return _out(rows)


@router.put(
    PATH,
    response_model=Thresholds,
    responses=responses(*ERRORS, (422, "request.invalid"), (422, "health.bad_time_zone")),
    summary="Set a dependant's health alerts (replaces them all)",
    description="Crossing a threshold opens an episode and tells the family's owner and "
    "guardians once (category health); the episode closes when the value returns.",
)
async def put_alerts(
    family_id: str, account_id: str, body: Thresholds, ctx: Circles, s: DbDep
) -> Thresholds:
    rows = await alerts.set_thresholds(
        s,
        family_id=family_id,
        actor_id=ctx.account_id,
        account_id=account_id,
        wanted=_wanted(body),
    )
    return _out(rows)


@router.delete(
    PATH,
    status_code=204,
    responses=responses(*ERRORS),
    summary="Stop all of a dependant's health alerts",
)
async def delete_alerts(family_id: str, account_id: str, ctx: Circles, s: DbDep) -> Response:
    await alerts.clear(s, family_id=family_id, actor_id=ctx.account_id, account_id=account_id)
    return Response(status_code=204)
