"""The retention job: one recurring row in the job queue (``jobs.every``).

It runs when a worker first starts (catching up after downtime), then every
``retention_interval_seconds``. One run works for at most
``retention_run_seconds`` (well inside the job's lease, so no other worker
takes it over while it runs) and, with work left, queues itself again at once:
a long backlog goes in slices, and a worker that dies mid-run leaves whole
batches behind it, which the next run (in any process) picks up.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

from kares import clock, jobs
from kares.privacy.catalog import catalog_of
from kares.retention import service

if TYPE_CHECKING:
    from kares.runtime import Runtime

KIND = "retention.run"

jobs.every(KIND, first=lambda now: now)


@jobs.handler(KIND)
async def run(rt: Runtime, job: jobs.JobContext) -> None:
    settings = rt.settings
    rules = service.plan(catalog_of(rt))
    result = await service.run(
        rt, rules, deadline=time.monotonic() + settings.retention_run_seconds
    )
    if result.more:
        raise jobs.Again(clock.utcnow(), "more to do")
    raise jobs.Again(clock.utcnow() + timedelta(seconds=settings.retention_interval_seconds))
