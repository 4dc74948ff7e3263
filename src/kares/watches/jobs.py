"""Background work of the watches domain: forgetting watches nobody paired."""

from __future__ import annotations

from datetime import datetime

from kares import jobs
from kares.runtime import Runtime
from kares.watches import service


@jobs.handler(service.FORGET_JOB)
async def forget_unpaired(rt: Runtime, job: jobs.JobContext) -> None:
    async with rt.db.sessions() as s:
        await service.forget_unpaired(
            s,
            watch_id=str(job.payload["watch_id"]),
            seen=datetime.fromisoformat(str(job.payload["seen"])),
        )
