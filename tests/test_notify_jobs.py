"""The background-job runner (kares.jobs): durable, exclusive, retried, never lost."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kares import clock, jobs
from kares.db import Database
from kares.notify import service as notify
from tests.conftest import TEST_DATA_KEYS, TEST_INDEX_KEY, bearer, sign_up

# Handlers for these tests: record each run; fail as told.
RUNS: Counter[str] = Counter()
FAIL: dict[str, list[BaseException]] = {}


@jobs.handler("test.record")
async def _record(rt: Any, job: jobs.JobContext) -> None:
    key = str(job.payload["key"])
    RUNS[key] += 1
    await asyncio.sleep(float(job.payload.get("sleep", 0)))
    todo = FAIL.get(key)
    if todo:
        raise todo.pop(0)


@jobs.handler("test.capped", max_attempts=2)
async def _capped(rt: Any, job: jobs.JobContext) -> None:
    RUNS[str(job.payload["key"])] += 1
    raise RuntimeError("always fails")


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, push_outbox: Path) -> dict[str, Any]:
    over: dict[str, Any] = {
        "jobs_backoff_base_seconds": 10.0,
        "jobs_backoff_max_seconds": 600.0,
        "jobs_max_attempts": 4,
        "jobs_lease_seconds": 60,
        "push_sink": "file",
        "push_file": push_outbox,
    }
    if getattr(request.function, "in_process_worker", False):
        over.update(jobs_worker=True, jobs_poll_seconds=0.05)
    return over


@pytest.fixture(autouse=True)
def _clean() -> None:
    RUNS.clear()
    FAIL.clear()


async def add_job(db: Database, key: str, **payload: Any) -> str:
    async with db.sessions() as s:
        job = jobs.enqueue(s, "test.record", {"key": key, **payload})
        await s.commit()
        return job.id


async def job_row(db: Database, job_id: str) -> jobs.Job | None:
    async with db.sessions() as s:
        return await s.get(jobs.Job, job_id)


async def test_a_job_exists_only_if_its_transaction_commits(app: Any, db: Database) -> None:
    rt = app.state.runtime
    async with db.sessions() as s:
        jobs.enqueue(s, "test.record", {"key": "rolled-back"})
        await s.rollback()
    async with db.sessions() as s:
        assert await jobs.pending(s) == []
    job_id = await add_job(db, "committed")
    stats = await jobs.run_due(rt)
    assert (stats.done, stats.ran) == (1, 1)
    assert RUNS == {"committed": 1}
    assert await job_row(db, job_id) is None  # deleted once it succeeded


async def test_a_failing_job_retries_with_backoff_and_is_kept(app: Any, db: Database) -> None:
    rt = app.state.runtime
    FAIL["flaky"] = [RuntimeError("boom 1"), RuntimeError("boom 2")]
    job_id = await add_job(db, "flaky")
    t0 = clock.utcnow()
    assert (await jobs.run_due(rt)).retried == 1
    row = await job_row(db, job_id)
    assert row is not None and row.status == "queued" and row.attempts == 1
    assert row.last_error == "RuntimeError: boom 1"
    assert row.locked_by is None and row.locked_until is None
    first = (row.run_at - t0).total_seconds()
    assert 10 <= first <= 11 + 1  # base 10 s, up to 10 % jitter
    assert (await jobs.run_due(rt)).ran == 0  # not due yet
    clock.advance(first + 1)
    assert (await jobs.run_due(rt)).retried == 1
    row = await job_row(db, job_id)
    assert row is not None and row.attempts == 2
    second = (row.run_at - clock.utcnow()).total_seconds()
    assert 19 <= second <= 22 + 1  # doubled
    clock.advance(second + 1)
    assert (await jobs.run_due(rt)).done == 1
    assert RUNS["flaky"] == 3
    assert await job_row(db, job_id) is None


async def test_retry_after_is_honoured_and_capped(app: Any, db: Database) -> None:
    rt = app.state.runtime
    FAIL["later"] = [jobs.Retry("busy", after=300), jobs.Retry("very busy", after=99999)]
    job_id = await add_job(db, "later")

    async def run_and_row(wait_s: int) -> Any:
        """Run due jobs; the job's row, its next run ``wait_s`` after that run."""
        before = clock.utcnow()
        await jobs.run_due(rt)
        after = clock.utcnow()
        row = await job_row(db, job_id)
        assert row is not None
        wait = timedelta(seconds=wait_s)
        assert before + wait - timedelta(seconds=1) <= row.run_at <= after + wait
        return row

    row = await run_and_row(300)
    assert row.last_error == "Retry: busy"
    clock.advance(301)
    await run_and_row(600)  # the cap


async def test_after_max_attempts_a_job_is_dead_but_kept(app: Any, db: Database) -> None:
    rt = app.state.runtime
    async with db.sessions() as s:
        job = jobs.enqueue(s, "test.capped", {"key": "capped"})
        await s.commit()
    await jobs.run_due(rt)
    clock.advance(3600)
    stats = await jobs.run_due(rt)
    assert stats.dead == 1
    row = await job_row(db, job.id)
    assert row is not None and row.status == "dead" and row.attempts == 2
    assert row.last_error == "RuntimeError: always fails"
    clock.advance(86400)
    assert (await jobs.run_due(rt)).ran == 0  # dead jobs are not run again
    assert RUNS["capped"] == 2


async def test_defer_holds_without_counting_an_attempt(app: Any, db: Database) -> None:
    rt = app.state.runtime
    until = clock.utcnow() + timedelta(hours=2)
    FAIL["held"] = [jobs.Defer(until, "quiet hours")]
    job_id = await add_job(db, "held")
    assert (await jobs.run_due(rt)).deferred == 1
    row = await job_row(db, job_id)
    assert row is not None and row.attempts == 0 and row.run_at == until
    clock.advance(2 * 3600 + 1)
    assert (await jobs.run_due(rt)).done == 1


async def test_two_runners_one_job_runs_once(app: Any, db: Database, db_url: str) -> None:
    """Two runners in separate connection pools (as two processes would be)
    race for one job: exactly one claims it."""
    rt = app.state.runtime
    other = Database(db_url)
    try:
        rt2 = dataclasses.replace(rt, db=other)
        job_id = await add_job(db, "once", sleep=0.2)
        a, b = await asyncio.gather(
            jobs.run_due(rt, worker="runner-a"), jobs.run_due(rt2, worker="runner-b")
        )
        assert RUNS == {"once": 1}
        assert sorted([a.ran, b.ran]) == [0, 1]
        assert await job_row(db, job_id) is None
    finally:
        await other.dispose()


async def test_many_runners_many_jobs_each_runs_once(app: Any, db: Database, db_url: str) -> None:
    rt = app.state.runtime
    pools = [Database(db_url) for _ in range(3)]
    try:
        runtimes = [dataclasses.replace(rt, db=p) for p in pools]
        async with db.sessions() as s:
            for i in range(30):
                jobs.enqueue(s, "test.record", {"key": f"job-{i}", "sleep": 0.01})
            await s.commit()
        results = await asyncio.gather(
            *(jobs.run_due(r, worker=f"runner-{i}") for i, r in enumerate(runtimes))
        )
        assert sum(r.ran for r in results) == 30
        assert RUNS == {f"job-{i}": 1 for i in range(30)}
        ids = [i for r in results for i in r.ids]
        assert len(ids) == len(set(ids)) == 30
    finally:
        for p in pools:
            await p.dispose()


async def test_a_job_whose_worker_died_is_claimed_again_after_its_lease(
    app: Any, db: Database
) -> None:
    rt = app.state.runtime
    job_id = await add_job(db, "orphan")
    (claimed,) = await jobs.claim(rt, worker="dead-worker", limit=10)
    assert claimed.id == job_id and claimed.attempt == 1
    assert (await jobs.run_due(rt)).ran == 0  # leased to the dead worker
    clock.advance(61)  # lease is 60 s
    stats = await jobs.run_due(rt, worker="survivor")
    assert stats.done == 1 and RUNS == {"orphan": 1}
    # the dead worker waking up cannot finish (or delete) what it no longer holds
    assert await jobs.run_job(rt, claimed, worker="dead-worker") == "done"
    assert RUNS == {"orphan": 2}  # at-least-once: handlers must be repeatable


async def test_a_job_that_keeps_killing_its_worker_ends_up_dead(app: Any, db: Database) -> None:
    rt = app.state.runtime
    job_id = await add_job(db, "poison")
    for n in range(4):  # max attempts: each claim counts, even if the run never ends
        (_claimed,) = await jobs.claim(rt, worker=f"doomed-{n}", limit=1)
        clock.advance(61)
    assert (await jobs.run_due(rt)).dead == 1
    row = await job_row(db, job_id)
    assert row is not None and row.status == "dead" and row.attempts == 5
    assert "never finished" in (row.last_error or "")
    assert RUNS == {}


async def test_unknown_kind_is_kept_for_a_worker_that_knows_it(app: Any, db: Database) -> None:
    rt = app.state.runtime
    async with db.sessions() as s:
        job = jobs.enqueue(s, "test.from_the_future", {"x": 1})
        await s.commit()
    assert (await jobs.run_due(rt)).retried == 1
    row = await job_row(db, job.id)
    assert row is not None and row.status == "queued"
    assert "no handler" in (row.last_error or "")


@pytest.mark.db_agnostic
async def test_backoff_grows_and_is_capped() -> None:
    delays = [jobs.backoff_seconds(n, 10, 3600, jitter=0) for n in range(1, 12)]
    assert delays[:4] == [10, 20, 40, 80]
    assert max(delays) == 3600 and delays[-1] == 3600
    for n in range(1, 40):
        d = jobs.backoff_seconds(n, 10, 3600)
        assert 10 <= d <= 3600


def with_worker(fn: Any) -> Any:
    """Run the app's in-process worker for this test (off in tests otherwise)."""
    fn.in_process_worker = True
    return fn


@with_worker
async def test_the_in_process_worker_runs_jobs_soon_after_commit(
    app: Any, db: Database, client: httpx.AsyncClient, sms: Any, push_outbox: Path
) -> None:
    me = await sign_up(client, sms)
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/push",
        json={"provider": "console", "token": "dev-phone-1"},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    await add_job(db, "background")
    async with db.sessions() as s:
        await notify.add(
            s, account_id=me["account"]["id"], category="messages", title="Hi", body="Hello"
        )
        await s.commit()
    outbox = push_outbox
    for _ in range(250):
        async with db.sessions() as s:
            if not await jobs.pending(s):
                break
        await asyncio.sleep(0.02)
    async with db.sessions() as s:
        assert await jobs.pending(s) == []  # both ran (and were deleted) without run_due
    assert RUNS["background"] == 1
    lines = [json.loads(x) for x in outbox.read_text().splitlines()]
    assert [(x["provider"], x["title"]) for x in lines] == [("console", "Hi")]


async def test_kares_worker_once_runs_due_jobs_standalone(
    app: Any, db: Database, client: httpx.AsyncClient, sms: Any, tmp_path: Path, db_url: str
) -> None:
    me = await sign_up(client, sms)
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/push",
        json={"provider": "console", "token": "dev-phone-2"},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    clock.reset()  # the worker process runs on the real clock
    async with db.sessions() as s:
        await notify.add(
            s, account_id=me["account"]["id"], category="reminders", title="Pills", body="8 pm"
        )
        await s.commit()
    outbox = tmp_path / "worker-outbox.jsonl"
    env = {
        **os.environ,
        "KARES_DATABASE_URL": db_url,
        "KARES_DATA_KEYS": TEST_DATA_KEYS,
        "KARES_INDEX_KEY": TEST_INDEX_KEY,
        "KARES_VAR_DIR": str(tmp_path / "var"),
        "KARES_PUSH_SINK": "file",
        "KARES_PUSH_FILE": str(outbox),
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "kares", "worker", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ran 1 jobs: 1 done" in proc.stdout
    (line,) = [json.loads(x) for x in outbox.read_text().splitlines()]
    assert (line["provider"], line["title"], line["category"]) == ("console", "Pills", "reminders")
    async with db.sessions() as s:
        assert (await s.execute(select(jobs.Job))).first() is None
