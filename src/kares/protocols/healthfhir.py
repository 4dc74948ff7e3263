"""FHIR R4 over the health domain: ``POST /api/v1/health/fhir`` (import a
Bundle or an Observation), ``GET /api/v1/health/fhir`` (export one's own
Observations) and the ``fhir/`` folder of the rights archive.

The mapping itself is :mod:`kares.protocols.fhir` (docs/HEALTH_FHIR.md); this
module only carries its samples to and from the health domain, which never
imports a wire format. The import is the native batch upload under another
syntax: the same guard declaration, the same per-feature consent and
permission refusals, the same per-item results, plus the Observations the
mapper did not take with their reasons.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.fields import ZonedTime
from kares.health import api as health_api
from kares.health import service
from kares.health.metrics import METRICS, STAGES
from kares.health.models import TABLES
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.guard import Allowed
from kares.protocols import fhir
from kares.rights import formats
from kares.runtime import Runtime

router = APIRouter(tags=["health"])

PATH = "/api/v1/health/fhir"
MEDIA = "application/fhir+json"
MEDIA_TYPES = frozenset({MEDIA, "application/json"})
BODY_LIMIT = 16 * 1024 * 1024
"""Bytes of one import (kares.app caps the body before it is read)."""
MAX_IMPORT = 50_000
"""Observations taken from one import (each becomes a sample of one action)."""
MAX_EXPORT_DAYS = 31
MAX_EXPORT = 20_000
"""Observations in one export; a longer history is asked for range by range."""
DAY_MS = 86_400_000

IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            t: {
                "schema": {
                    "type": "object",
                    "description": "A FHIR R4 Bundle of Observations (any type: collection, "
                    "searchset, transaction) or one Observation",
                    "properties": {"resourceType": {"enum": ["Bundle", "Observation"]}},
                    "required": ["resourceType"],
                }
            }
            for t in sorted(MEDIA_TYPES)
        },
    }
}


class FhirItem(BaseModel):
    index: int = Field(description="The sample's place among the Observations taken.")
    record_id: str = Field(description="The record id the Observation was read with.")
    metric: str
    status: str = Field(description="stored | duplicate | refused")
    code: str | None = None
    detail: str | None = None


class FhirSkipped(BaseModel):
    entry: int = Field(description="The entry's place in the Bundle (0 for an Observation).")
    id: str | None
    reason: str = Field(description="A stable reason code (docs/HEALTH_FHIR.md).")
    detail: str


class FhirImportResult(BaseModel):
    observations: int = Field(description="Observations taken as samples.")
    stored: int
    duplicates: int
    refused: int
    results: list[FhirItem] = Field(description="One per sample taken, in the file's order.")
    skipped: list[FhirSkipped] = Field(description="Observations not taken, and why.")
    other_resources: dict[str, int] = Field(
        description="Entries that are not Observations (Patient, Encounter...), by type: not read."
    )


def sample_in(x: dict[str, Any]) -> service.SampleIn:
    """A neutral sample dict (what ``fhir.read`` yields) as the domain's input."""
    return service.SampleIn(
        metric=x["metric"],
        start=x["start"],
        end=x.get("end"),
        value=x.get("value"),
        values=x.get("values"),
        unit=x.get("unit"),
        stage=x.get("stage"),
        source=x["source"],
        record_id=x["record_id"],
    )


@router.post(
    PATH,
    response_model=FhirImportResult,
    responses=responses(
        *AUTH_ERRORS,
        (400, "fhir.json_invalid"),
        (413, "fhir.bundle_too_large"),
        (413, "request.too_large"),
        (415, "fhir.unsupported_media_type"),
        (422, "fhir.not_bundle"),
        (422, "fhir.bundle_invalid"),
        (422, "fhir.many_subjects"),
    ),
    openapi_extra=IMPORT_BODY,
    summary="Import your readings from a FHIR R4 Bundle or Observation",
    description="Send the Bundle (or one Observation) as the body, `application/fhir+json` "
    f"or `application/json`, at most {BODY_LIMIT // (1024 * 1024)} MiB and {MAX_IMPORT} "
    "Observations. Observations are mapped by LOINC code (docs/HEALTH_FHIR.md); each one "
    "taken is stored, a duplicate or refused exactly as in the native batch upload (the same "
    "consents and permission), each one not taken is listed with its reason. Entries that are "
    "not Observations are counted, not read. A file about more than one patient is refused.",
)
async def import_fhir(
    request: Request,
    ctx: Annotated[Allowed, health_api.HEALTH],
    rt: RuntimeDep,
    s: DbDep,
) -> FhirImportResult:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype not in MEDIA_TYPES:
        raise Problem(
            415,
            "fhir.unsupported_media_type",
            "Send the FHIR JSON as application/fhir+json (or application/json).",
        )
    got = fhir.read(await request.body())
    if len(got.subjects) > 1:
        raise Problem(
            422,
            "fhir.many_subjects",
            f"The file is about {len(got.subjects)} patients; import one person's file "
            "into their own account.",
        )
    if len(got.samples) > MAX_IMPORT:
        raise Problem(
            413,
            "fhir.bundle_too_large",
            f"The file has {len(got.samples)} Observations to import; at most {MAX_IMPORT} "
            "at once: split it.",
        )
    samples = [sample_in(x) for x in got.samples]
    held = await already_held(s, ctx.account_id, samples)
    fresh = [i for i in range(len(samples)) if i not in held]
    taken = (
        await health_api.upload_guarded(s, rt, ctx, [samples[i] for i in fresh]) if fresh else []
    )
    out = sorted(
        [replace(o, index=fresh[o.index]) for o in taken]
        + [service.Outcome(i, "duplicate") for i in held],
        key=lambda o: o.index,
    )
    return FhirImportResult(
        observations=len(samples),
        stored=sum(o.status == "stored" for o in out),
        duplicates=sum(o.status == "duplicate" for o in out),
        refused=sum(o.status == "refused" for o in out),
        results=[
            FhirItem(
                index=o.index,
                record_id=samples[o.index].record_id,
                metric=samples[o.index].metric,
                status=o.status,
                code=o.code,
                detail=o.detail,
            )
            for o in out
        ],
        skipped=[
            FhirSkipped(entry=k.index, id=k.id, reason=k.reason, detail=k.detail)
            for k in got.skipped
        ],
        other_resources=got.other_resources,
    )


async def already_held(
    s: AsyncSession, account_id: str, samples: list[service.SampleIn]
) -> set[int]:
    """The samples the person already holds as they are: the same metric, times,
    values, stage and source. The store keeps only a keyed hash of a source's
    record id, so an exported Observation carries none and comes back under its
    Observation id; without this, importing one's own export back would store
    every reading a second time. (Two readings of one source at the same
    millisecond with the same value are one reading.)"""
    now = clock.utcnow()
    want: dict[str, dict[int, tuple[int, int, float, float, int, str]]] = {}
    for i, x in enumerate(samples):
        try:
            m, (t0, t1, v, v2, st), source, _ = service.clean(x, now)
        except service.Refused:
            continue  # refused as usual by the upload
        want.setdefault(m.key, {})[i] = (t0, t1, v, v2, st, source)
    held: set[int] = set()
    for metric, mine in want.items():
        lo = min(k[0] for k in mine.values())
        hi = max(k[0] for k in mine.values()) + 1
        have = await service.read(
            s, account_id=account_id, metric=metric, lo_ms=lo, hi_ms=hi, sources=True
        )
        if not len(have):
            continue
        names = have.src_names if have.src_names is not None else [None] * len(have)
        stored = {
            (int(a), int(b), _same(v), _same(v2), int(st), str(n))
            for a, b, v, v2, st, n in zip(
                have.t0.tolist(),
                have.t1.tolist(),
                have.v.tolist(),
                have.v2.tolist(),
                have.st.tolist(),
                names,
                strict=True,
            )
        }
        for i, (t0, t1, v, v2, st, source) in mine.items():
            if (t0, t1, _same(v), _same(v2), st, source) in stored:
                held.add(i)
    return held


def _same(x: float) -> float | None:
    """A value as compared between an import and the store (NaN, no value, is None)."""
    return None if math.isnan(x) else round(x, 6)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def samples_of(x: service.Samples) -> Iterator[dict[str, Any]]:
    """The stored samples as neutral sample dicts (canonical units). The
    source's record id is not stored readable (only its keyed hash), so none is
    written: the Observation's id names the sample instead."""
    m = x.metric
    names = x.src_names
    for i in range(len(x)):
        t0, t1 = int(x.t0[i]), int(x.t1[i])
        d: dict[str, Any] = {
            "metric": m.key,
            "start": _dt(t0),
            "end": _dt(t1) if m.interval else None,
            "value": None,
            "values": None,
            "unit": m.unit,
            "stage": None,
            "source": str(names[i]) if names is not None else None,
            "record_id": None,
        }
        if m.components:
            d["values"] = {
                m.components[0].key: _num(x.v[i]),
                m.components[1].key: _num(x.v2[i]),
            }
        elif m.valued and not math.isnan(x.v[i]):
            d["value"] = _num(x.v[i])
        if m.stages and x.st[i] >= 0:
            d["stage"] = STAGES[int(x.st[i])]
        yield d


@router.get(
    PATH,
    responses={
        200: {"content": {MEDIA: {}}, "description": "A FHIR R4 Bundle (type collection)"},
        **responses(
            *AUTH_ERRORS,
            (422, "health.unknown_metric"),
            (422, "health.bad_range"),
            (422, "fhir.export_too_large"),
        ),
    },
    summary="Your readings as a FHIR R4 Bundle of Observations",
    description=f"The Observations starting in [from, to) (at most {MAX_EXPORT_DAYS} days, "
    f"at most {MAX_EXPORT} Observations: ask for a shorter range or one metric when there "
    "are more), of every metric your consents open or of `metric` alone. A Bundle of type "
    "`collection` (docs/HEALTH_FHIR.md says why), in canonical UCUM units.",
)
async def export_fhir(
    ctx: Annotated[Allowed, health_api.HEALTH],
    rt: RuntimeDep,
    s: DbDep,
    since: Annotated[ZonedTime, Query(alias="from")],
    until: Annotated[ZonedTime, Query(alias="to")],
    metric: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    if until <= since or until - since > timedelta(days=MAX_EXPORT_DAYS):
        raise Problem(
            422,
            "health.bad_range",
            f"to must be after from, at most {MAX_EXPORT_DAYS} days later.",
        )
    if metric is not None:
        m = METRICS.get(metric)
        if m is None:
            raise Problem(422, "health.unknown_metric", f"Unknown metric {metric!r}.")
        refusal = (await health_api.admitted(s, rt, ctx, [m.feature]))[m.feature]
        if refusal is not None:
            raise refusal
        wanted = [metric]
    else:
        wanted = sorted(health_api.allowed_metrics(await health_api.admitted(s, rt, ctx)))
    lo, hi = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    got = []
    n = 0
    for key in wanted:
        x = await service.read(
            s, account_id=ctx.account_id, metric=key, lo_ms=lo, hi_ms=hi, sources=True
        )
        n += len(x)
        if n > MAX_EXPORT:
            raise Problem(
                422,
                "fhir.export_too_large",
                f"More than {MAX_EXPORT} Observations in this range: ask for a shorter "
                "range or one metric.",
            )
        got.append(x)
    body = fhir.bundle_json(
        (d for x in got for d in samples_of(x)), ctx.account_id, timestamp=clock.utcnow()
    )
    return Response(body, media_type=MEDIA)


# --- the rights archive (policy 5.1) --------------------------------------------------------


@formats.register(
    "fhir",
    title=("Health readings (FHIR)", "健康数据(FHIR)"),
    about=(
        "your health readings as FHIR R4 Bundles of Observations (JSON), for health apps "
        f"and hospital systems; at most {fhir.PER_BUNDLE} readings per file",
        "您的健康数据,FHIR R4 观察结果集(JSON),可导入健康类应用和医院系统;"
        f"每个文件最多 {fhir.PER_BUNDLE} 条",
    ),
)
async def export_health_fhir(
    s: AsyncSession, rt: Runtime, account_id: str
) -> AsyncIterator[formats.ArchiveFile]:
    """Every stored sample of the account, metric by metric and day by day, as
    Bundles of at most ``fhir.PER_BUNDLE`` Observations (one file each)."""
    stamp = clock.utcnow()
    for key in sorted(METRICS):
        table = TABLES[METRICS[key].category]
        q = (
            select(table.day)
            .where(table.account_id == account_id, table.metric == key)
            .order_by(table.day)
        )
        days = [int(d) for (d,) in (await s.execute(q)).all()]
        part = 0
        chunk: list[dict[str, Any]] = []
        for d in days:
            x = await service.read(
                s,
                account_id=account_id,
                metric=key,
                lo_ms=d * DAY_MS,
                hi_ms=(d + 1) * DAY_MS,
                sources=True,
            )
            chunk.extend(samples_of(x))
            while len(chunk) >= fhir.PER_BUNDLE:
                part += 1
                head, chunk = chunk[: fhir.PER_BUNDLE], chunk[fhir.PER_BUNDLE :]
                body = fhir.bundle_json(head, account_id, timestamp=stamp)
                yield formats.ArchiveFile(f"{key}-{part:04d}.json", body)
        if chunk:
            part += 1
            body = fhir.bundle_json(chunk, account_id, timestamp=stamp)
            yield formats.ArchiveFile(f"{key}-{part:04d}.json", body)
