"""Telling everyone in the app about a significant revision of the policy (policy 8).

When the privacy core first publishes a version marked significant, it writes a
``policy_notices`` row and queues :data:`~kares.privacy.service.REVISION_NOTICE_JOB`
in the same transaction. This handler tells every account that agreed to an
earlier version (active, created before the version was first served) with a
``system`` notice in its inbox and, through the inbox, a push.

Accounts are told in order of id, a batch per transaction; the batch's notices
and the cursor past it commit together, so a restart resumes after the last
batch that committed and nobody is told twice. Each notice is written in the
language of the account's most recently seen device (Chinese or English).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from kares import clock, jobs
from kares.devices.models import Device
from kares.identity.models import Account
from kares.notify import service
from kares.privacy.models import PolicyNotice, PolicyVersion
from kares.privacy.service import REVISION_NOTICE_JOB

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from kares.runtime import Runtime

log = logging.getLogger("kares.notify.revision")

BATCH = 500
RUN_SECONDS = 20.0  # one run's share of work, well inside a job's lease
RENDER = "policy.revised"

_TITLE = {"en": "Our privacy policy has changed", "zh": "隐私政策已更新"}


def _body(lang: str, version: str, reconsent: bool) -> str:
    if lang == "zh":
        body = f"Kares 隐私政策已更新(版本 {version}),包含重大变更。请在“隐私政策”中查看变更内容。"
        if reconsent:
            body += "部分功能需要您重新同意后才能继续使用。"
        body += "如果您不同意,可以停止使用 Kares 并注销账号。"
        return body
    body = (
        f"The Kares privacy policy has changed (version {version}) and the change is "
        "significant. Open the privacy policy to read what changed."
    )
    if reconsent:
        body += " Some functions need your consent again before they go on."
    body += " If you do not agree, you can stop using Kares and delete your account."
    return body


async def _languages(s: AsyncSession, account_ids: list[str]) -> dict[str, str]:
    """``zh`` or ``en`` per account: the language its newest device reported."""
    rows = await s.execute(
        select(Device.account_id, Device.language)
        .where(Device.account_id.in_(account_ids))
        .order_by(Device.last_seen_at)
    )
    out: dict[str, str] = {}
    for account_id, language in rows:  # the newest device comes last and wins
        out[account_id] = "zh" if (language or "").lower().startswith("zh") else "en"
    return out


async def tell_batch(s: AsyncSession, version: str) -> int | None:
    """Tell the next batch; returns how many were told, or None when all are."""
    notice = await s.get(PolicyNotice, version, with_for_update=True)
    row = await s.get(PolicyVersion, version)
    if notice is None or row is None or notice.finished_at is not None:
        return None
    q = (
        select(Account.id)
        .where(Account.status == "active", Account.created_at < notice.before)
        .order_by(Account.id)
        .limit(BATCH)
    )
    if notice.told_through is not None:
        q = q.where(Account.id > notice.told_through)
    ids = list((await s.execute(q)).scalars())
    if not ids:
        notice.finished_at = clock.utcnow()
        await s.commit()
        return None
    langs = await _languages(s, ids)
    reconsent = bool(row.reductions)
    for lang in ("en", "zh"):
        told = [a for a in ids if langs.get(a, "en") == lang]
        if told:
            await service.send(
                s,
                account_ids=told,
                category="system",
                title=_TITLE[lang],
                body=_body(lang, version, reconsent),
                data={service.RENDER: RENDER, "version": version},
            )
    notice.told_through = ids[-1]
    notice.told += len(ids)
    await s.commit()
    return len(ids)


@jobs.handler(REVISION_NOTICE_JOB)
async def tell_everyone(rt: Runtime, job: jobs.JobContext) -> None:
    version = str(job.payload.get("version", ""))
    deadline = time.monotonic() + RUN_SECONDS
    total = 0
    while True:
        async with rt.db.sessions() as s:
            n = await tell_batch(s, version)
        if n is None:
            break
        total += n
        if time.monotonic() > deadline:
            log.info("told %d more accounts of policy version %s; more to tell", total, version)
            raise jobs.Defer(clock.utcnow() + timedelta(seconds=1), "more to tell")
    log.info("told %d accounts of policy version %s", total, version)
