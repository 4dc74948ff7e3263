"""Background work of the notify domain: delivering a notification to one device."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kares import jobs
from kares.notify import service
from kares.privacy.catalog import catalog_of

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.notify.jobs")


@jobs.handler(service.PUSH_JOB)
async def deliver_push(rt: Runtime, job: jobs.JobContext) -> None:
    """Push one notification to one device (payload: notification_id, device_id).

    Outcomes: sent -> done; the provider says the token is no longer valid ->
    the token is removed, done; 429 / 5xx / unreachable -> retried with backoff
    (or after Retry-After), the job stays queued; any other refusal -> logged,
    done. Quiet hours -> the job waits until they end.
    """
    notification_id = str(job.payload.get("notification_id", ""))
    device_id = str(job.payload.get("device_id", ""))
    async with rt.db.sessions() as s:
        plan = await service.plan_push(
            s,
            catalog_of(rt),
            notification_id=notification_id,
            device_id=device_id,
            ttl_seconds=rt.settings.push_ttl_seconds,
        )
    if isinstance(plan, service.Decision):
        if plan.action == "hold" and plan.until is not None:
            raise jobs.Defer(plan.until, plan.reason)
        log.info("push %s to device %s skipped: %s", notification_id, device_id, plan.reason)
        return
    provider = rt.push.provider(plan.provider)
    if provider is None:
        log.warning(
            "push %s to device %s dropped: %s unavailable", job.id, device_id, plan.provider
        )
        return
    outcome = await provider.send(plan.token, plan.message)
    what = outcome.describe(plan.provider)
    if outcome.kind == "sent":
        log.info("push %s sent to device %s (%s)", notification_id, device_id, what)
    elif outcome.kind == "invalid_token":
        async with rt.db.sessions() as s:
            removed = await service.forget_token(
                s, token_id=plan.token_id, token_hash=plan.token_hash
            )
        log.info(
            "push %s: token of device %s no longer valid (%s)%s",
            notification_id,
            device_id,
            what,
            "; removed" if removed else "",
        )
    elif outcome.kind == "retry":
        raise jobs.Retry(what, after=outcome.retry_after)
    else:
        log.warning("push %s to device %s refused: %s", notification_id, device_id, what)
