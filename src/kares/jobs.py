"""The background-job runner: durable jobs in the database, run by workers.

A service enqueues a job in the *same transaction* as the action that causes
it (``jobs.enqueue(s, "notify.push", {...})`` before its ``commit``), so a job
exists exactly when its cause does. Workers claim due jobs, run the handler
registered for the job's kind, and only then delete the job: nothing is lost
when a handler fails or a process dies.

* **Claiming is exclusive across processes.** PostgreSQL: ``UPDATE ... WHERE id
  IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``; SQLite: one conditional
  ``UPDATE ... WHERE status = 'queued' AND run_at <= now`` per candidate whose
  row count decides the one winner. A claim is a lease (``locked_until``): a
  job whose worker died is claimed again when the lease runs out, so delivery
  is at-least-once (handlers are written to be repeatable).
* **Retries.** A handler that raises is retried with exponential backoff
  (``jobs_backoff_base_seconds`` doubling per attempt, capped at
  ``jobs_backoff_max_seconds``, with a little jitter); ``Retry(after=...)``
  asks for a specific delay (a provider's Retry-After). After ``max_attempts``
  the job is kept with status ``dead`` and its last error, for an operator.
* **Holding.** ``Defer(until)`` puts a job back without counting an attempt
  (quiet hours).
* **Recurring jobs.** ``jobs.every(kind, first=...)`` declares a job that runs
  for ever: one row with a fixed id (``every:<kind>``), so however many processes
  start, there is one schedule and claiming it stays exclusive. Its handler ends
  a run with ``raise Again(at)``: the row goes back to the queue for ``at``
  (no attempt counted, the error cleared) instead of being deleted. Workers put
  the rows in place when they start (``ensure_recurring``), and bring back one
  that an operator's or a bug's failures left ``dead``: a restart never loses
  the schedule, and never makes a second one.
* **Where they run.** ``kares serve`` runs an in-process worker (setting
  ``KARES_JOBS_WORKER``; off in tests, which call ``await jobs.run_due(rt)``
  to run what is due, deterministically); ``kares worker`` runs one standalone.

Payloads carry references (row ids), never personal data itself: the handler
reads the rows when it runs, so a job outliving its data (an account deleted,
a token removed) finds nothing and ends. The ``account_id`` column names whose
job it is; deleting the account deletes its pending jobs.

Domains register handlers in their own ``jobs.py`` with ``@jobs.handler(kind)``;
the entry points import ``kares.domains``, which imports every one of them, so
this runner never names a domain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from kares import clock, events
from kares.db import Base, UTCDateTime, insert_for, new_id
from kares.fields import not_personal, table_info

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.jobs")

QUEUED, RUNNING, DEAD = "queued", "running", "dead"
ERROR_MAX = 500


class Job(Base):
    """One unit of background work. Deleted once it succeeded."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at"),
        table_info(
            subject="account_id",
            not_personal=(
                "id",
                "kind",
                "status",
                "run_at",
                "attempts",
                "max_attempts",
                "locked_until",
                "locked_by",
                "created_at",
                "updated_at",
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSON, info=not_personal("row ids only: handlers read the data when they run")
    )
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(
        Text, info=not_personal("error class and provider answer; handlers put no personal data")
    )
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- what handlers raise ---------------------------------------------------------------


class Retry(Exception):
    """Run the job again later: after ``after`` seconds, or with backoff."""

    def __init__(self, reason: str, *, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class Again(Exception):
    """A recurring job's run is over: run it again at ``at``."""

    def __init__(self, at: datetime, reason: str = "") -> None:
        super().__init__(reason or "again")
        self.at = at


class Defer(Exception):
    """Put the job back until ``until`` without counting an attempt."""

    def __init__(self, until: datetime, reason: str = "deferred") -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


@dataclass(frozen=True)
class JobContext:
    """What a handler is given about its job."""

    id: str
    kind: str
    payload: dict[str, Any]
    account_id: str | None
    attempt: int  # 1 on the first run
    max_attempts: int


HandlerFn = Callable[["Runtime", JobContext], Awaitable[None]]


@dataclass(frozen=True)
class _Handler:
    fn: HandlerFn
    max_attempts: int | None


_handlers: dict[str, _Handler] = {}


def handler(kind: str, *, max_attempts: int | None = None) -> Callable[[HandlerFn], HandlerFn]:
    """Register ``fn`` as the handler of jobs of ``kind``."""

    def register(fn: HandlerFn) -> HandlerFn:
        _handlers[kind] = _Handler(fn, max_attempts)
        return fn

    return register


# --- recurring jobs --------------------------------------------------------------------

_recurring: dict[str, Callable[[datetime], datetime]] = {}


def recurring_id(kind: str) -> str:
    return f"every:{kind}"


def every(kind: str, *, first: Callable[[datetime], datetime]) -> None:
    """Declare ``kind`` recurring: its row is put in place by :func:`ensure_recurring`,
    due at ``first(now)``; its handler ends each run with ``raise Again(next)``."""
    if len(recurring_id(kind)) > 32:
        raise ValueError(f"recurring job kind {kind!r} is too long for a job id")
    _recurring[kind] = first


async def ensure_recurring(rt: Runtime) -> list[str]:
    """Put the row of every recurring job in place (one per kind, whichever process
    asks first), and queue again one left ``dead``. Returns the kinds it created or
    revived."""
    now = clock.utcnow()
    out = []
    async with rt.db.sessions() as s:
        for kind, first in sorted(_recurring.items()):
            job_id = recurring_id(kind)
            at = first(now)
            stmt = (
                insert_for(s)(Job)
                .values(
                    id=job_id,
                    kind=kind,
                    payload={},
                    account_id=None,
                    status=QUEUED,
                    run_at=at,
                    attempts=0,
                    max_attempts=0,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=[Job.__table__.c.id])
            )
            made = (await s.execute(stmt)).rowcount  # type: ignore[attr-defined]
            revived = (
                await s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == DEAD)
                    .values(status=QUEUED, run_at=now, attempts=0, updated_at=now)
                )
            ).rowcount  # type: ignore[attr-defined]
            if made or revived:
                out.append(kind)
        await s.commit()
    return out


# --- enqueueing ------------------------------------------------------------------------

# Workers in this process, woken when a transaction that enqueued a job commits.
_wakers: set[asyncio.Event] = set()


def _wake_workers() -> None:
    for ev in list(_wakers):
        ev.set()


def enqueue(
    s: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    account_id: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
) -> Job:
    """Add a job to the caller's transaction; it exists once the caller commits."""
    now = clock.utcnow()
    job = Job(
        id=new_id(),
        kind=kind,
        payload=payload,
        account_id=account_id,
        status=QUEUED,
        run_at=run_at or now,
        attempts=0,
        max_attempts=max_attempts or 0,  # 0: the handler's, else jobs_max_attempts
        created_at=now,
        updated_at=now,
    )
    s.add(job)
    events.on_commit(s, _wake_workers, key=_wake_workers)
    return job


# --- running ---------------------------------------------------------------------------


def backoff_seconds(attempt: int, base: float, cap: float, jitter: float = 0.1) -> float:
    """Delay before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped,
    plus up to ``jitter`` of it at random so failed jobs do not retry in lockstep."""
    delay = min(cap, base * (2 ** max(0, min(attempt - 1, 30))))
    return min(cap, delay * (1 + random.random() * jitter))  # noqa: S311 - not crypto


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{new_id()[:8]}"


@dataclass
class RunStats:
    done: int = 0
    retried: int = 0
    deferred: int = 0
    dead: int = 0
    ids: list[str] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return self.done + self.retried + self.deferred + self.dead


def _due(now: datetime) -> Any:
    return or_(
        and_(Job.status == QUEUED, Job.run_at <= now),
        and_(Job.status == RUNNING, Job.locked_until < now),
    )


async def claim(
    rt: Runtime, *, worker: str, limit: int, exclude: Collection[str] = ()
) -> list[JobContext]:
    """Claim up to ``limit`` due jobs for ``worker`` (other than ``exclude``); each
    is claimed by one worker only."""
    now = clock.utcnow()
    due = _due(now)
    if exclude:
        due = and_(due, Job.id.not_in(list(exclude)))
    lease = now + timedelta(seconds=rt.settings.jobs_lease_seconds)
    values = {
        "status": RUNNING,
        "locked_by": worker,
        "locked_until": lease,
        "attempts": Job.attempts + 1,
        "updated_at": now,
    }
    cols = (
        Job.id,
        Job.kind,
        Job.payload,
        Job.account_id,
        Job.attempts,
        Job.max_attempts,
        Job.run_at,
        Job.created_at,
    )
    rows: list[Any] = []
    async with rt.db.sessions() as s:
        if s.get_bind().dialect.name == "postgresql":
            pick = (
                select(Job.id)
                .where(due)
                .order_by(Job.run_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            claim_q = update(Job).where(Job.id.in_(pick)).values(values).returning(*cols)
            res = await s.execute(claim_q)
            # RETURNING follows no order: oldest first, as the queue promises
            rows = sorted(res.all(), key=lambda r: (r.run_at, r.created_at, r.id))
            await s.commit()
        else:
            q = select(Job.id).where(due).order_by(Job.run_at, Job.created_at).limit(limit)
            for job_id in (await s.execute(q)).scalars().all():
                res = await s.execute(
                    update(Job).where(Job.id == job_id, due).values(values).returning(*cols)
                )
                row = res.first()
                await s.commit()
                if row is not None:
                    rows.append(row)
    return [
        JobContext(
            id=r.id,
            kind=r.kind,
            payload=dict(r.payload or {}),
            account_id=r.account_id,
            attempt=int(r.attempts),
            max_attempts=_max_attempts(rt, r.kind, int(r.max_attempts)),
        )
        for r in rows
    ]


def _max_attempts(rt: Runtime, kind: str, stored: int) -> int:
    h = _handlers.get(kind)
    return stored or (h.max_attempts if h else None) or rt.settings.jobs_max_attempts


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:ERROR_MAX]


async def run_job(rt: Runtime, job: JobContext, *, worker: str) -> str:
    """Run one claimed job; returns what became of it: done, retried, deferred or dead."""
    h = _handlers.get(job.kind)
    settings = rt.settings
    mine = and_(Job.id == job.id, Job.status == RUNNING, Job.locked_by == worker)
    outcome = "done"
    values: dict[str, Any] = {}
    again: datetime | None = None
    try:
        if job.attempt > job.max_attempts:
            # Its earlier runs never finished (a worker died mid-run each time).
            raise Retry("gave up: earlier runs never finished")
        if h is None:
            raise Retry(f"no handler for job kind {job.kind!r}")
        await h.fn(rt, job)
    except Again as a:
        again = a.at
    except Defer as d:
        outcome = "deferred"
        values = {"status": QUEUED, "run_at": d.until, "attempts": Job.attempts - 1}
        values["last_error"] = d.reason[:ERROR_MAX]
    except Exception as exc:
        after = exc.after if isinstance(exc, Retry) else None
        if isinstance(exc, Retry):
            log.info("job %s (%s) will retry: %s", job.id, job.kind, exc.reason)
        else:
            log.exception("job %s (%s) failed", job.id, job.kind)
        if job.attempt >= job.max_attempts:
            outcome = "dead"
            values = {"status": DEAD}
            log.error("job %s (%s) gave up after %d attempts", job.id, job.kind, job.attempt)
        else:
            outcome = "retried"
            cap = settings.jobs_backoff_max_seconds
            delay = (
                min(max(after, 0.0), cap)
                if after is not None
                else backoff_seconds(job.attempt, settings.jobs_backoff_base_seconds, cap)
            )
            values = {"status": QUEUED, "run_at": clock.utcnow() + timedelta(seconds=delay)}
        values["last_error"] = _error_text(exc)
    async with rt.db.sessions() as s:
        if again is not None:
            values = {
                "status": QUEUED,
                "run_at": again,
                "attempts": 0,
                "last_error": None,
                "locked_by": None,
                "locked_until": None,
                "updated_at": clock.utcnow(),
            }
            res = await s.execute(update(Job).where(mine).values(values))
        elif outcome == "done":
            res = await s.execute(delete(Job).where(mine))
        else:
            values.update(locked_by=None, locked_until=None, updated_at=clock.utcnow())
            res = await s.execute(update(Job).where(mine).values(values))
        await s.commit()
        if res.rowcount != 1:  # type: ignore[attr-defined]
            # Our lease ran out and another worker took the job over: it decides.
            log.warning("job %s (%s): lease lost before it finished", job.id, job.kind)
    return outcome


async def run_due(rt: Runtime, *, limit: int = 1000, worker: str | None = None) -> RunStats:
    """Run every job due now, one at a time, each at most once in this call (tests,
    ``kares worker --once``). Jobs a run reschedules for later wait for a later call."""
    name = worker or worker_name()
    stats = RunStats()
    seen: set[str] = set()
    while len(seen) < limit:
        batch = await claim(rt, worker=name, limit=min(50, limit - len(seen)), exclude=seen)
        if not batch:
            break
        for job in batch:
            seen.add(job.id)
            stats.ids.append(job.id)
            outcome = await run_job(rt, job, worker=name)
            setattr(stats, outcome, getattr(stats, outcome) + 1)
    return stats


class Worker:
    """Polls for due jobs and runs them, a few at a time, until stopped."""

    def __init__(self, rt: Runtime, *, name: str | None = None) -> None:
        self.rt = rt
        self.name = name or worker_name()
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> Worker:
        _wakers.add(self.wake)
        self._task = asyncio.create_task(self.run(), name=f"kares-worker-{self.name}")
        return self

    async def run(self) -> None:
        settings = self.rt.settings
        limit = max(1, settings.jobs_concurrency)
        gate = asyncio.Semaphore(limit)
        log.info("job worker %s started", self.name)
        try:
            await ensure_recurring(self.rt)
        except Exception:
            log.exception("job worker %s: putting the recurring jobs in place failed", self.name)
        while not self._stopping:
            self.wake.clear()
            try:
                batch = await claim(self.rt, worker=self.name, limit=settings.jobs_batch_size)
            except Exception:
                log.exception("job worker %s: claiming failed", self.name)
                batch = []

            async def one(job: JobContext) -> None:
                async with gate:
                    try:
                        await run_job(self.rt, job, worker=self.name)
                    except Exception:
                        log.exception("job worker %s: finishing job %s failed", self.name, job.id)

            if batch:
                await asyncio.gather(*(one(j) for j in batch))
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=settings.jobs_poll_seconds)
            except TimeoutError:
                pass

    async def stop(self, grace: float = 5.0) -> None:
        """Stop polling and let the jobs in hand finish for up to ``grace`` seconds;
        a job cut off after that keeps its lease and runs again later."""
        self._stopping = True
        _wakers.discard(self.wake)
        self.wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        log.info("job worker %s stopped", self.name)


async def pending(
    s: AsyncSession, *, kind: str | None = None, recurring: bool = False
) -> list[Job]:
    """Jobs not yet done (queued, running or dead), oldest first; the rows of
    recurring jobs, which are never done, only with ``recurring=True``."""
    q = select(Job).order_by(Job.created_at, Job.id)
    if not recurring:
        q = q.where(Job.id.not_in([recurring_id(k) for k in _recurring]))
    if kind is not None:
        q = q.where(Job.kind == kind)
    return list((await s.execute(q)).scalars())
