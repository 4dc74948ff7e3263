"""Apple Health exports into the health domain: the parser
(``kares.protocols.applehealth``) joined to the domain's ingestion
(``kares.health.service.ingest``). The domain never imports a protocol, so the
join lives here, on the protocol side, and serves both ways in:

* ``kares health import FILE --phone P`` (``applehealth_cli``), run by an operator;
* ``POST /api/v1/health/imports``: the person uploads the export, a background
  job (``health.import``) reads it, and ``GET /api/v1/health/imports/{id}``
  shows how far it has come and how it ended.

Memory stays bounded whatever the file's size: the parser streams, and samples
go to the store in batches of ``BATCH``, one transaction each (the import's
progress row is updated in the same transaction, so what it shows was stored:
the progress as it stood when the batch was cut). The file is parsed by a
process of its own (``applehealth_child``: lxml holds the GIL while it parses,
so in one process the parse and the store would take turns on one core); a
worker thread here takes its batches, one batch ahead: the next batch is read
while this one is stored, so a running import leaves the event loop free and the
file's reading overlaps the database's writing (at most two batches, and a few
chunks' rows, are in memory). The parser hands over columns
(``read_export_columns``: times as epoch seconds, no dict or datetime per
sample), and a batch is checked and stored on arrays
(``health.service.ingest_columns`` of ``Columns.of_times``);
docs/HEALTH_IMPORT.md, "Into the store", says where its time goes.

Consent is never bypassed: before the first batch and before every batch, the
person's consent to each health feature is checked as the guard checks it for a
job (``privacy.check_for_job``: account state, a guardian for a child, the
function's and each sensitive category's consent). Samples of a feature
without consent are refused with the guard's code; when neither feature
("readings", "steps") is allowed, nothing is read and the import fails with
that refusal. A withdrawal during an import stops it at its next batch.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import JSON, ForeignKey, Index, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from kares import clock, events, jobs
from kares.db import Base, UTCDateTime, new_id
from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.fields import personal, table_info
from kares.health import service as health
from kares.identity.auth import AUTH_ERRORS
from kares.identity.models import Account
from kares.privacy import ports
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, guard
from kares.privacy.service import check_for_job
from kares.protocols.applehealth import (
    ExportError,
    Progress,
    SampleColumns,
)
from kares.protocols.applehealth_child import read_export_columns_apart

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.health.import")

# samples per transaction: on SQLite a batch holds the one write lock while it
# is stored, and 5,000 store as fast as 10,000 with the parse in its own process
# and 5 MB less at the peak; on PostgreSQL each commit waits for the server's
# fsync, and 10,000 go faster (docs/HEALTH_IMPORT.md, "Batch size")
BATCH = 5_000
BATCH_POSTGRESQL = 10_000
FEATURES = ("readings", "steps")
JOB = "health.import"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


# --- the import, whichever way it came in --------------------------------------------------


@dataclass
class Tally:
    """What an import stored, found already stored, and refused (by code)."""

    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    refused_codes: Counter[str] = field(default_factory=Counter)

    def add(self, got: health.Ingested) -> None:
        stored, duplicates = got.stored, got.duplicates
        self.stored += stored
        self.duplicates += duplicates
        self.refused += len(got.status) - stored - duplicates
        self.refused_codes.update(code for code, _ in got.refused.values())


async def refused_features(
    s: AsyncSession, rt: Runtime, account: Account
) -> dict[str, tuple[str, str]]:
    """Each health feature the person may not use now, with the guard's (code,
    detail). Raises the refusal when neither may be used."""
    cat = catalog_of(rt)
    out: dict[str, tuple[str, str]] = {}
    first: Problem | None = None
    for feature in FEATURES:
        try:
            await check_for_job(s, cat, account, "health", feature)
        except Problem as exc:
            out[feature] = (exc.code, exc.detail)
            first = first or exc
    if first is not None and len(out) == len(FEATURES):
        raise first
    return out


# called after each batch, in its transaction, before its commit
AfterBatch = Callable[[AsyncSession, Progress, Tally], Any]


async def run_import(
    rt: Runtime,
    account_id: str,
    source: str | os.PathLike[str],
    *,
    progress: Progress,
    tally: Tally,
    after_batch: AfterBatch | None = None,
) -> None:
    """Read the export at ``source`` and store its samples for ``account_id``, a
    batch per transaction. Raises ``ExportError`` for a bad file (what came before
    the fault stays stored), the guard's ``Problem`` when the person may not use
    health (at the start, or after a withdrawal), and ``LookupError`` when the
    account is gone."""
    # nothing is read for a person who may not use health (checked again per batch)
    async with rt.db.sessions() as s:
        account = await s.get(Account, account_id)
        if account is None:
            raise LookupError("the account is gone")
        await refused_features(s, rt, account)
    # parsed by a process of its own while this one stores (applehealth_child)
    size = BATCH_POSTGRESQL if rt.db.dialect == "postgresql" else BATCH
    batches = read_export_columns_apart(source, batch=size, progress=progress)

    Cut = tuple[health.Columns | None, Progress, ExportError | None]

    def cut() -> Cut:
        # the batch, the progress as it stood when the batch was cut (the reader
        # runs on into the next batch while this one is stored), and the file's
        # fault if it came after this batch: the samples before it are stored
        # first (the reader yields them, then raises)
        try:
            got = next(batches, None)
        except ExportError as exc:
            return None, copy.copy(progress), exc
        return (None if got is None else _columns(got)), copy.copy(progress), None

    def read_ahead() -> asyncio.Future[Cut]:
        return asyncio.ensure_future(anyio.to_thread.run_sync(cut))

    reading: asyncio.Future[Cut] | None = read_ahead()
    try:
        while reading is not None:
            batch, seen, fault = await reading
            # the next batch is read in the worker thread while this one is stored
            reading = read_ahead() if batch and fault is None else None
            async with rt.db.sessions() as s:
                account = await s.get(Account, account_id)
                if account is None:
                    raise LookupError("the account is gone")
                refused = await refused_features(s, rt, account)
                if batch:
                    out = await health.ingest_columns(
                        s,
                        account_id=account_id,
                        samples=batch,
                        refused_features=refused,
                        now=clock.utcnow(),
                    )
                    tally.add(out)
                if after_batch is not None:
                    r = after_batch(s, seen, tally)
                    if inspect.isawaitable(r):
                        await r
                await s.commit()
            if fault is not None:
                raise fault
    finally:
        try:
            if reading is not None and not reading.done():
                # a batch being read when the import stops: let the reader finish
                # it before the file is closed (a generator cannot be closed mid-step)
                await asyncio.wait([reading])
        finally:
            if reading is None or reading.done():
                if reading is not None and not reading.cancelled():
                    reading.exception()  # retrieved: raised or not, the import has stopped
                batches.close()  # the file too


def _columns(c: SampleColumns) -> health.Columns:
    """The parser's columns as the domain's (the times as epoch seconds)."""
    return health.Columns.of_times(
        np.array(c.start, np.float64),
        np.array(c.end, np.float64),
        metric=c.metric,
        value=c.value,
        values=c.values,
        unit=c.unit,
        stage=c.stage,
        source=c.source,
        record_id=c.record_id,
        total=[None] * len(c),
    )


# --- the API import: an uploaded file, read by a job -----------------------------------------


class HealthImport(Base):
    """One person's upload of an Apple Health export and how its import went.
    The file itself is under var (``upload_path``) only until the import ends."""

    __tablename__ = "health_imports"
    __table_args__ = (
        Index("ix_health_imports_account_id", "account_id"),
        table_info(
            subject="account_id",
            collected="created_at",
            not_personal=("id", "state", "size", "error_code", "error_detail", "finished_at"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    # bytes read, records, samples, and the records skipped / unusable per type:
    # which kinds of health records the person keeps
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, info=personal("health.vitals"))
    stored: Mapped[int] = mapped_column(Integer, default=0, info=personal("health.vitals"))
    duplicates: Mapped[int] = mapped_column(Integer, default=0, info=personal("health.vitals"))
    refused: Mapped[int] = mapped_column(Integer, default=0, info=personal("health.vitals"))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("health.vitals"))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def upload_dir(rt: Runtime) -> Path:
    return rt.settings.var_dir / "health-imports"


def upload_path(rt: Runtime, import_id: str) -> Path:
    """The uploaded file of one import: named after its id alone."""
    if not import_id.isalnum():
        raise ValueError("an import id is hexadecimal")
    return upload_dir(rt) / f"{import_id}.upload"


def _snapshot(p: Progress) -> dict[str, Any]:
    return {
        "bytes_read": p.bytes_read,
        "bytes_total": p.bytes_total,
        "fraction": p.fraction,
        "records": p.records,
        "samples": p.samples,
        "skipped": dict(p.skipped),
        "invalid": dict(p.invalid),
    }


def _record(row: HealthImport, p: Progress, t: Tally) -> None:
    row.progress = _snapshot(p)
    row.stored, row.duplicates, row.refused = t.stored, t.duplicates, t.refused


async def _finish(
    rt: Runtime, import_id: str, state: str, p: Progress, t: Tally, code: str | None, detail: str
) -> None:
    async with rt.db.sessions() as s:
        row = await s.get(HealthImport, import_id)
        if row is None:
            return
        _record(row, p, t)
        row.state = state
        row.error_code = code
        row.error_detail = detail[:500] if code else None
        row.finished_at = clock.utcnow()
        await s.commit()


@jobs.handler(JOB, max_attempts=3)
async def import_job(rt: Runtime, job: jobs.JobContext) -> None:
    """Read one uploaded export into the uploader's health data; the file is
    deleted when the import ends, however it ends. A worker that dies midway
    leaves the job to be claimed again: the import starts over, and what was
    stored comes back as duplicates."""
    import_id = str(job.payload["import"])
    path = upload_path(rt, import_id)
    try:
        async with rt.db.sessions() as s:
            row = await s.get(HealthImport, import_id)
            if row is None or row.state in (DONE, FAILED):
                return
            row.state = RUNNING
            await s.commit()
        p, t = Progress(), Tally()
        if not path.exists():
            await _finish(rt, import_id, FAILED, p, t, "health.import_lost", "The file is gone.")
            return

        async def after_batch(s: AsyncSession, p: Progress, t: Tally) -> None:
            row = await s.get(HealthImport, import_id)
            if row is not None:
                _record(row, p, t)

        try:
            await run_import(rt, row.account_id, path, progress=p, tally=t, after_batch=after_batch)
        except ExportError as exc:
            await _finish(rt, import_id, FAILED, p, t, exc.code, exc.message)
        except Problem as exc:  # no consent, or withdrawn during the import
            await _finish(rt, import_id, FAILED, p, t, exc.code, exc.detail)
        except LookupError:
            return  # the account went, and its import row with it
        else:
            await _finish(rt, import_id, DONE, p, t, None, "")
    finally:
        path.unlink(missing_ok=True)


async def _uploads_on_erasure(s: AsyncSession, e: ports.Erasure) -> None:
    """A deletion that takes an account's import rows (the account, or its
    health readings) takes their uploaded files too, once it commits: a queued
    import's job goes with the account, and would not be there to delete it."""
    if e.rt is None or (e.scope != "account" and e.category != "health.vitals"):
        return
    q = select(HealthImport.id).where(HealthImport.account_id == e.account_id)
    paths = [upload_path(e.rt, i) for i in (await s.execute(q)).scalars().all()]

    def unlink() -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    if paths:
        events.on_commit(s, unlink)


ports.register_erasure("before", _uploads_on_erasure)


# --- routes ----------------------------------------------------------------------------------

router = APIRouter(tags=["health"])
HEALTH = guard("health", any_of=FEATURES)
ZIP_MAGIC = b"PK\x03\x04"


class ImportProgress(BaseModel):
    fraction: float | None = Field(description="Share of export.xml read, 0..1, when known")
    bytes_read: int
    bytes_total: int | None
    records: int = Field(description="Records read from the file")
    samples: int = Field(description="Samples read from the records")
    skipped: dict[str, int] = Field(description="Records of types not imported, per type")
    invalid: dict[str, int] = Field(description="Records that could not be read, per type")


class ImportOut(BaseModel):
    id: str
    state: str = Field(description="queued | running | done | failed")
    size: int = Field(description="The uploaded file's size in bytes")
    progress: ImportProgress
    stored: int
    duplicates: int = Field(description="Samples already stored by an earlier import or upload")
    refused: int = Field(description="Samples refused (bounds, units, a feature without consent)")
    error_code: str | None = None
    error_detail: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


def _out(row: HealthImport) -> ImportOut:
    p = row.progress or {}
    return ImportOut(
        id=row.id,
        state=row.state,
        size=row.size,
        progress=ImportProgress(
            fraction=p.get("fraction"),
            bytes_read=p.get("bytes_read", 0),
            bytes_total=p.get("bytes_total"),
            records=p.get("records", 0),
            samples=p.get("samples", 0),
            skipped=p.get("skipped", {}),
            invalid=p.get("invalid", {}),
        ),
        stored=row.stored,
        duplicates=row.duplicates,
        refused=row.refused,
        error_code=row.error_code,
        error_detail=row.error_detail,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _looks_like_export(head: bytes) -> bool:
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(ZIP_MAGIC) or head.startswith(b"<")


@router.post(
    "/api/v1/health/imports",
    status_code=202,
    response_model=ImportOut,
    responses=responses(
        *AUTH_ERRORS,
        (413, "health.import_too_large"),
        (415, "health.import_unsupported"),
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                "application/xml": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    summary="Import your Apple Health export (the zip, or its export.xml)",
    description="Send the file as the request body. It is read in the background: the "
    "answer (202) names the import; `GET /api/v1/health/imports/{id}` shows its progress "
    "and outcome. The same checks as the batch upload apply to each sample, and records "
    "already stored are not stored twice. The file is deleted when the import ends.",
)
async def start_import(
    request: Request, ctx: Annotated[Allowed, HEALTH], rt: RuntimeDep, s: DbDep
) -> ImportOut:
    cap = rt.settings.health_import_max_bytes
    import_id = new_id()
    path = upload_path(rt, import_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    kept = False
    try:
        with path.open("wb") as f:
            async for chunk in request.stream():
                if size == 0 and chunk and not _looks_like_export(chunk[:64]):
                    raise Problem(
                        415,
                        "health.import_unsupported",
                        "Send the Health app's export: the zip, or its export.xml.",
                    )
                size += len(chunk)
                if size > cap:
                    raise Problem(
                        413,
                        "health.import_too_large",
                        f"An export may be at most {cap} bytes.",
                    )
                f.write(chunk)
        if size == 0:
            raise Problem(
                415, "health.import_unsupported", "The body is empty: send the export file."
            )
        row = HealthImport(
            id=import_id,
            account_id=ctx.account_id,
            state=QUEUED,
            size=size,
            progress={},
            stored=0,
            duplicates=0,
            refused=0,
            created_at=clock.utcnow(),
        )
        s.add(row)
        jobs.enqueue(s, JOB, {"import": import_id}, account_id=ctx.account_id)
        await s.commit()
        kept = True
        return _out(row)
    finally:
        if not kept:
            path.unlink(missing_ok=True)


@router.get(
    "/api/v1/health/imports/{import_id}",
    response_model=ImportOut,
    responses=responses(*AUTH_ERRORS, (404, "not_found")),
    summary="How your health import is going, and how it ended",
)
async def get_import(import_id: str, ctx: Annotated[Allowed, HEALTH], s: DbDep) -> ImportOut:
    row = (
        await s.execute(
            select(HealthImport).where(
                HealthImport.id == import_id, HealthImport.account_id == ctx.account_id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise Problem(404, "not_found", "No such import.")
    return _out(row)


__all__ = ["BATCH", "HealthImport", "Tally", "refused_features", "router", "run_import"]
