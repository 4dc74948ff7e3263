"""Background work of the messaging domain: an attachment uploaded and never sent
is deleted ``KARES_ATTACHMENT_UNSENT_HOURS`` (24) after its upload; the job is
queued in the upload's own transaction (``attachments.upload``)."""

from __future__ import annotations

from kares import jobs
from kares.messaging import attachments
from kares.runtime import Runtime


@jobs.handler(attachments.FORGET_UNSENT)
async def forget_unsent(rt: Runtime, job: jobs.JobContext) -> None:
    async with rt.db.sessions() as s:
        await attachments.forget_unsent(s, int(job.payload["attachment_id"]))
