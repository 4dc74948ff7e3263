"""SOS background work: an SMS to each guardian, and reminders until answered."""

from __future__ import annotations

from kares import jobs
from kares.gateways.sms import SmsError, SmsMessage
from kares.identity.models import Account
from kares.runtime import Runtime
from kares.sos import service
from kares.sos.models import SosAlert


@jobs.handler(service.SMS_JOB, max_attempts=8)
async def sms_guardian(rt: Runtime, job: jobs.JobContext) -> None:
    async with rt.db.sessions() as s:
        alert = await s.get(SosAlert, job.payload["alert_id"])
        to = await s.get(Account, job.payload["to"])
        person = await s.get(Account, alert.account_id) if alert else None
        if alert is None or to is None or person is None or not to.phone:
            return
        if alert.status != "open":
            return  # answered already: no need to wake anyone
        who = person.name or "A family member"
        text = f"[Kares] SOS from {who}. Open Kares to respond."
    try:
        await rt.sms.send(SmsMessage(to=to.phone, template="sos", params={"who": who}, text=text))
    except SmsError as exc:
        raise jobs.Retry(str(exc)) from exc


@jobs.handler(service.REMIND_JOB)
async def remind(rt: Runtime, job: jobs.JobContext) -> None:
    async with rt.db.sessions() as s:
        await service.remind(s, alert_id=job.payload["alert_id"])
