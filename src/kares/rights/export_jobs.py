"""The export's background jobs: making the archive, and deleting it later.

Both are durable jobs (``kares.jobs``): a restart in the middle of a build runs
it again from the start, and the deletion planned for an archive happens
whenever a worker runs next, however many restarts came between.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kares import jobs
from kares.rights import export

if TYPE_CHECKING:
    from kares.runtime import Runtime

BUILD_ATTEMPTS = 3


@jobs.handler(export.BUILD_JOB, max_attempts=BUILD_ATTEMPTS)
async def build(rt: Runtime, job: jobs.JobContext) -> None:
    export_id = str(job.payload["export_id"])
    try:
        await export.build(rt, export_id)
    except Exception:
        if job.attempt >= job.max_attempts:
            await export.fail(rt, export_id)
        raise


@jobs.handler(export.EXPIRE_JOB)
async def expire(rt: Runtime, job: jobs.JobContext) -> None:
    await export.expire(rt, str(job.payload["export_id"]))
