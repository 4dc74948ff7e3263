"""Background work of the staff queue: the due date of a request stored while the
working-day calendar of its year was not known."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from kares import clock, jobs
from kares.privacy.catalog import catalog_of
from kares.rights import staff
from kares.rights.staff_models import RightsRequest

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.rights.jobs")

RECHECK = timedelta(days=1)


@jobs.handler(staff.DUE_JOB)
async def fill_due_date(rt: Runtime, job: jobs.JobContext) -> None:
    """Fill one request's due date (payload: request_id). While the calendar
    still lacks the year, the job waits a day and asks again, without counting an
    attempt: it ends once the date is known or the request is closed or gone."""
    request_id = str(job.payload.get("request_id", ""))
    async with rt.db.sessions() as s:
        r = await s.get(RightsRequest, request_id)
        if r is None or r.status != staff.OPEN or r.due_on is not None:
            return
        due, pending = staff.due_date(r.created_at, catalog_of(rt).policy.response_working_days)
        if due is None:
            log.error("rights request %s still has no due date: %s", r.id, pending)
            raise jobs.Defer(clock.utcnow() + RECHECK, "working-day calendar not known yet")
        r.due_on, r.due_pending = due, None
        await s.commit()
        log.info("rights request %s is due on %s", r.id, due.isoformat())
