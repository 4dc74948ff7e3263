"""Background work of the location domain: packing a day of fixes (``days``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kares import jobs
from kares.location import days

if TYPE_CHECKING:
    from kares.runtime import Runtime


@jobs.handler(days.PACK_JOB)
async def pack_day(rt: Runtime, job: jobs.JobContext) -> None:
    """Pack one person's day again (payload: day); an account deleted since has no
    fixes left, and its job went with it."""
    if job.account_id is None:
        return
    async with rt.db.sessions() as s:
        await days.pack_day(s, account_id=job.account_id, day=int(job.payload["day"]))
