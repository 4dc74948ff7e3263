"""HTTP routes of the health domain: the native batch upload and the person's
own readings (latest values, daily and weekly summaries, downsampled series)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.fields import Day, ZonedTime
from kares.health import schemas as sc
from kares.health import service
from kares.health.metrics import METRICS, SERIES_METRICS
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.guard import Allowed, admit, guard
from kares.runtime import Runtime

router = APIRouter(tags=["health"])
AUTH = AUTH_ERRORS
MAX_DAYS = 92
MAX_WEEKS = 53

TzQ = Annotated[
    str,
    Query(max_length=64, description="IANA time zone of the days and weeks, e.g. Asia/Shanghai"),
]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _refused(r: service.Refused) -> Problem:
    return Problem(422, r.code, r.detail)


# each HTTP route serves both features of the function: heart rate and the other
# readings (health.vitals) and steps (health.activity, with the Motion & fitness
# permission), each under its own separate consent
HEALTH = guard("health", any_of=("readings", "steps"))
FEATURES = ("readings", "steps")


async def _admitted(
    s: AsyncSession, rt: Runtime, ctx: Allowed, features: Iterable[str] = FEATURES
) -> dict[str, Problem | None]:
    """For each feature: None when the caller may use it, else the guard's refusal."""
    caller = ctx.caller
    assert caller is not None
    out: dict[str, Problem | None] = {}
    for feature in sorted(set(features)):
        try:
            await admit(s, rt, caller, "health", feature)
            out[feature] = None
        except Problem as exc:
            out[feature] = exc
    return out


def _allowed_metrics(admitted: dict[str, Problem | None]) -> set[str]:
    return {k for k, m in METRICS.items() if admitted.get(m.feature, True) is None}


async def upload_guarded(
    s: AsyncSession, rt: Runtime, ctx: Allowed, samples: list[service.SampleIn]
) -> list[service.Outcome]:
    """Store ``samples`` for the caller admitted by :data:`HEALTH`, as one action:
    each feature the batch uses under the guard (its consent, the device's
    permission); a sample of a refused feature is refused with the guard's code,
    and when every feature used is refused the guard's refusal is raised as it is.
    The native batch and the imports of other formats (``kares.protocols``) share it."""
    features = {METRICS[x.metric].feature for x in samples if x.metric in METRICS}
    admitted = await _admitted(s, rt, ctx, features)
    refused = {f: (p.code, p.detail) for f, p in admitted.items() if p is not None}
    if features and features == set(refused):
        # nothing of the batch may be stored: the guard's refusal as it is
        raise next(p for f in sorted(features) if (p := admitted[f]) is not None)
    return await service.upload(
        s,
        account_id=ctx.account_id,
        samples=samples,
        refused_features=refused,
        now=clock.utcnow(),
    )


def allowed_metrics(admitted: dict[str, Problem | None]) -> set[str]:
    """The metrics whose feature the caller was admitted to (see :func:`admitted`)."""
    return _allowed_metrics(admitted)


async def admitted(
    s: AsyncSession, rt: Runtime, ctx: Allowed, features: Iterable[str] = FEATURES
) -> dict[str, Problem | None]:
    """For each feature: None when the caller may use it, else the guard's refusal."""
    return await _admitted(s, rt, ctx, features)


@router.post(
    "/api/v1/health/samples",
    response_model=sc.BatchResult,
    responses=responses(*AUTH, (422, "request.invalid")),
    summary=f"Upload a batch of health samples (up to {sc.BATCH_MAX}; retries stored once)",
    description="Each sample is checked on its own: an unknown metric or unit, a value "
    "outside physiological bounds or a bad time refuses that sample with a stable code "
    "and the rest are stored. Units are converted to the metric's canonical UCUM unit. "
    "(person, source, record_id) is stored once: a batch sent again stores nothing new. "
    "Steps, distance and energy also need the device's Motion & fitness permission: "
    "when it is closed those samples are refused with permission.closed.",
)
async def upload(
    body: sc.SampleBatch,
    ctx: Annotated[Allowed, HEALTH],
    rt: RuntimeDep,
    s: DbDep,
) -> sc.BatchResult:
    samples = [
        service.SampleIn(
            metric=x.metric,
            start=x.start,
            end=x.end,
            value=x.value,
            values=x.values,
            unit=x.unit,
            stage=x.stage,
            source=x.source,
            record_id=x.record_id,
        )
        for x in body.samples
    ]
    out = await upload_guarded(s, rt, ctx, samples)
    return sc.BatchResult(
        stored=sum(o.status == "stored" for o in out),
        duplicates=sum(o.status == "duplicate" for o in out),
        refused=sum(o.status == "refused" for o in out),
        results=[
            sc.ItemResult(index=o.index, status=o.status, code=o.code, detail=o.detail) for o in out
        ],
    )


@router.get(
    "/api/v1/health/latest",
    response_model=sc.LatestList,
    responses=responses(*AUTH),
    summary="Your newest value of each metric",
)
async def latest(ctx: Annotated[Allowed, HEALTH], rt: RuntimeDep, s: DbDep) -> sc.LatestList:
    allowed = _allowed_metrics(await _admitted(s, rt, ctx))
    got = [x for x in await service.latest(s, account_id=ctx.account_id) if x.metric in allowed]
    return latest_out(got)


def latest_out(got: list[service.Latest]) -> sc.LatestList:
    return sc.LatestList(
        latest=[
            sc.LatestOut(
                metric=x.metric,
                start=_dt(x.start_ms),
                end=_dt(x.end_ms) if x.end_ms is not None else None,
                value=x.value,
                values=x.values,
                unit=x.unit,
                stage=x.stage,
            )
            for x in got
        ]
    )


def _summary_out(x: service.Summary) -> sc.SummaryOut:
    return sc.SummaryOut(
        start=x.start,
        end=x.end,
        steps=x.steps,
        distance_m=x.distance_m,
        active_energy_kcal=x.active_energy_kcal,
        heart_rate_min=x.heart_rate_min,
        heart_rate_avg=x.heart_rate_avg,
        heart_rate_max=x.heart_rate_max,
        heart_rate_count=x.heart_rate_count,
        resting_heart_rate=x.resting_heart_rate,
        spo2_min=x.spo2_min,
        sleep_asleep_min=x.sleep_asleep_min,
        sleep_in_bed_min=x.sleep_in_bed_min,
        sleep_stages_min=x.sleep_stages_min,
    )


def daily_spans(since: date, until: date, tz: str) -> list[tuple[datetime, datetime]]:
    """The local days since..until (included) in ``tz``, checked."""
    zone = service.zone(tz)
    n = (until - since).days + 1
    if n < 1 or n > MAX_DAYS:
        raise Problem(
            422, "health.bad_range", f"until must be since or later, at most {MAX_DAYS} days."
        )
    return _spans(since, n, 1, zone)


def _spans(first: date, count: int, days: int, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    starts = [
        service.local_midnight(first + timedelta(days=i * days), tz) for i in range(count + 1)
    ]
    return list(itertools.pairwise(starts))


@router.get(
    "/api/v1/health/summary/daily",
    response_model=sc.SummaryList,
    responses=responses(*AUTH, (422, "health.bad_range"), (422, "health.bad_time_zone")),
    summary=f"Your daily summaries, since..until (local days, at most {MAX_DAYS})",
    description="Per day: steps, distance and active energy totals; heart rate min/avg/max; "
    "resting heart rate; SpO2 minimum; sleep (the sessions that end that day) by stage.",
)
async def daily(
    ctx: Annotated[Allowed, HEALTH],
    rt: RuntimeDep,
    s: DbDep,
    since: Annotated[Day, Query()],
    until: Annotated[Day, Query(description="The last day, included.")],
    tz: TzQ = "UTC",
) -> sc.SummaryList:
    got = await service.summaries(
        s,
        account_id=ctx.account_id,
        spans=daily_spans(since, until, tz),
        metrics=_allowed_metrics(await _admitted(s, rt, ctx)),
    )
    return sc.SummaryList(time_zone=tz, summaries=[_summary_out(x) for x in got])


@router.get(
    "/api/v1/health/summary/weekly",
    response_model=sc.SummaryList,
    responses=responses(*AUTH, (422, "health.bad_range"), (422, "health.bad_time_zone")),
    summary="Your weekly summaries: weeks of seven local days from `since`",
)
async def weekly(
    ctx: Annotated[Allowed, HEALTH],
    rt: RuntimeDep,
    s: DbDep,
    since: Annotated[Day, Query(description="The first day of the first week.")],
    weeks: Annotated[int, Query(ge=1, le=MAX_WEEKS)] = 1,
    tz: TzQ = "UTC",
) -> sc.SummaryList:
    zone = service.zone(tz)
    got = await service.summaries(s, account_id=ctx.account_id, spans=_spans(since, weeks, 7, zone))
    return sc.SummaryList(time_zone=tz, summaries=[_summary_out(x) for x in got])


@router.get(
    "/api/v1/health/series",
    response_model=sc.SeriesOut,
    responses=responses(
        *AUTH,
        (422, "health.unknown_metric"),
        (422, "health.no_series"),
        (422, "health.bad_range"),
        (422, "health.too_many_points"),
        (422, "health.bad_time_zone"),
    ),
    summary="One metric over a time range, downsampled on the server",
    description="Buckets of the chosen resolution (minute, 5min, 15min, hour, or local "
    f"day / week in `tz`), at most {service.MAX_POINTS}: sums for steps, distance and "
    "energy; min/avg/max for readings (diastolic in min2/avg2/max2 for blood pressure).",
)
async def series(
    ctx: Annotated[Allowed, HEALTH],
    rt: RuntimeDep,
    s: DbDep,
    metric: Annotated[str, Query(max_length=32, json_schema_extra={"enum": SERIES_METRICS})],
    since: Annotated[ZonedTime, Query()],
    until: Annotated[ZonedTime, Query()],
    resolution: Annotated[str, Query(pattern="^(minute|5min|15min|hour|day|week)$")] = "hour",
    tz: TzQ = "UTC",
) -> sc.SeriesOut:
    zone = service.zone(tz)
    m = METRICS.get(metric)
    if m is not None:
        refusal = (await _admitted(s, rt, ctx, [m.feature]))[m.feature]
        if refusal is not None:
            raise refusal
    try:
        x = await service.series(
            s,
            account_id=ctx.account_id,
            metric=metric,
            lo=since,
            hi=until,
            resolution=resolution,
            tz=zone,
        )
    except service.Refused as r:
        raise _refused(r) from None
    return series_out(x, resolution)


def series_out(x: service.Series, resolution: str) -> sc.SeriesOut:
    return sc.SeriesOut(
        metric=x.metric,
        unit=x.unit,
        resolution=resolution,
        aggregate="sum" if x.aggregate == "sum" else "min_avg_max",
        t=[_dt(t) for t in x.t],
        count=x.count,
        sum=x.sum,
        min=x.min,
        avg=x.avg,
        max=x.max,
        min2=x.min2,
        avg2=x.avg2,
        max2=x.max2,
    )
