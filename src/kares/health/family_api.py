"""HTTP routes of the family view of health: another member's latest values,
summaries and series, read through one family by that person's sharing level
there (``kares.health.sharing``), with the same reading functions and answers
as the person's own routes (``kares.health.api``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.fields import Day, ZonedTime
from kares.health import api as own
from kares.health import schemas as sc
from kares.health import service, sharing
from kares.health.metrics import METRICS, SERIES_METRICS
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, guard
from kares.runtime import Runtime

router = APIRouter(tags=["health"])
BASE = "/api/v1/families/{family_id}/members/{account_id}/health"
# the reader views health information (the policy's basic function "viewing
# health information"): signed in, the policy and the separate consent for at
# least one of the two kinds of health data, like reading one's own
VIEW = guard("health", any_of=sharing.FEATURES)
FAMILY_ERRORS = (
    *AUTH_ERRORS,
    (403, "health.not_shared"),
    (404, "family.not_found"),
    (404, "family.member_not_found"),
)


async def _metrics(
    rt: Runtime, s: DbDep, ctx: Allowed, family_id: str, account_id: str, need: str
) -> set[str]:
    assert ctx.caller is not None
    return await sharing.readable_metrics(
        s,
        catalog_of(rt),
        family_id=family_id,
        viewer=ctx.caller.account,
        subject_id=account_id,
        need=need,
    )


@router.get(
    f"{BASE}/latest",
    response_model=sc.LatestList,
    responses=responses(*FAMILY_ERRORS),
    summary="A member's newest value of each metric (shared at summaries or series)",
)
async def member_latest(
    family_id: str,
    account_id: str,
    ctx: Annotated[Allowed, VIEW],
    rt: RuntimeDep,
    s: DbDep,
) -> sc.LatestList:
    allowed = await _metrics(rt, s, ctx, family_id, account_id, "summaries")
    return own.latest_out(
        [x for x in await service.latest(s, account_id=account_id) if x.metric in allowed]
    )


@router.get(
    f"{BASE}/summary/daily",
    response_model=sc.SummaryList,
    responses=responses(*FAMILY_ERRORS, (422, "health.bad_range"), (422, "health.bad_time_zone")),
    summary=f"A member's daily summaries (local days, at most {own.MAX_DAYS})",
)
async def member_daily(
    family_id: str,
    account_id: str,
    ctx: Annotated[Allowed, VIEW],
    rt: RuntimeDep,
    s: DbDep,
    since: Annotated[Day, Query()],
    until: Annotated[Day, Query(description="The last day, included.")],
    tz: own.TzQ = "UTC",
) -> sc.SummaryList:
    spans = own.daily_spans(since, until, tz)
    allowed = await _metrics(rt, s, ctx, family_id, account_id, "summaries")
    got = await service.summaries(s, account_id=account_id, spans=spans, metrics=allowed)
    return sc.SummaryList(time_zone=tz, summaries=[own._summary_out(x) for x in got])


@router.get(
    f"{BASE}/summary/weekly",
    response_model=sc.SummaryList,
    responses=responses(*FAMILY_ERRORS, (422, "health.bad_time_zone")),
    summary="A member's weekly summaries: weeks of seven local days from `since`",
)
async def member_weekly(
    family_id: str,
    account_id: str,
    ctx: Annotated[Allowed, VIEW],
    rt: RuntimeDep,
    s: DbDep,
    since: Annotated[Day, Query(description="The first day of the first week.")],
    weeks: Annotated[int, Query(ge=1, le=own.MAX_WEEKS)] = 1,
    tz: own.TzQ = "UTC",
) -> sc.SummaryList:
    spans = own._spans(since, weeks, 7, service.zone(tz))
    allowed = await _metrics(rt, s, ctx, family_id, account_id, "summaries")
    got = await service.summaries(s, account_id=account_id, spans=spans, metrics=allowed)
    return sc.SummaryList(time_zone=tz, summaries=[own._summary_out(x) for x in got])


@router.get(
    f"{BASE}/series",
    response_model=sc.SeriesOut,
    responses=responses(
        *FAMILY_ERRORS,
        (422, "health.unknown_metric"),
        (422, "health.no_series"),
        (422, "health.bad_range"),
        (422, "health.too_many_points"),
        (422, "health.bad_time_zone"),
    ),
    summary="One metric of a member over a time range (shared at the series level)",
)
async def member_series(
    family_id: str,
    account_id: str,
    ctx: Annotated[Allowed, VIEW],
    rt: RuntimeDep,
    s: DbDep,
    metric: Annotated[str, Query(max_length=32, json_schema_extra={"enum": SERIES_METRICS})],
    since: Annotated[ZonedTime, Query()],
    until: Annotated[ZonedTime, Query()],
    resolution: Annotated[str, Query(pattern="^(minute|5min|15min|hour|day|week)$")] = "hour",
    tz: own.TzQ = "UTC",
) -> sc.SeriesOut:
    zone = service.zone(tz)
    allowed = await _metrics(rt, s, ctx, family_id, account_id, "series")
    if metric in METRICS and metric not in allowed:
        raise Problem(
            403,
            "health.not_shared",
            "This member's data of this kind is not available to the family now.",
            level="series",
            needed="series",
        )
    try:
        x = await service.series(
            s,
            account_id=account_id,
            metric=metric,
            lo=since,
            hi=until,
            resolution=resolution,
            tz=zone,
        )
    except service.Refused as r:
        raise own._refused(r) from None
    return own.series_out(x, resolution)
