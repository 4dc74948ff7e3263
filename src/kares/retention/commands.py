"""``kares retention ...``: the operator's commands (the CLI parses, this acts).

* ``report``: a dry run: per category and table, how many rows would go now, how
  many a legal hold keeps, and when the next ones expire.
* ``run``: one full run now (every batch, no time limit).
* ``hold --phone P --reason TEXT`` / ``release --phone P``: suspend retention for
  one account, and end that.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TextIO

from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.errors import Problem
from kares.identity.models import Account
from kares.logs import mask_phone
from kares.privacy.catalog import catalog_of
from kares.retention import service

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.retention")


async def report(rt: Runtime, out: TextIO) -> int:
    now = clock.utcnow()
    lines = await service.report(rt, service.plan(catalog_of(rt)), now=now)
    print(service.format_report(lines, now), file=out)
    return 0


async def run(rt: Runtime, out: TextIO) -> int:
    result = await service.run(rt, service.plan(catalog_of(rt)))
    for name, n in result.removed.items():
        if n:
            print(f"{name}: {n} rows", file=out)
    print(
        f"retention removed {result.total} rows in {result.batches} batches "
        f"(longest batch {result.longest_batch_s * 1000:.1f} ms)",
        file=out,
    )
    return 0


async def hold(rt: Runtime, out: TextIO, err: TextIO, *, phone: str, reason: str) -> int:
    reason = reason.strip()
    if not reason:
        print("kares: a legal hold needs a reason (--reason)", file=err)
        return 2
    if len(reason) > 500:
        print("kares: the reason is longer than 500 characters", file=err)
        return 2
    async with rt.db.sessions() as s:
        account = await _account(s, rt, phone, err)
        if account is None:
            return 1
        h, new = await service.hold(s, account_id=account.id, reason=reason)
        await s.commit()
    masked = mask_phone(account.phone or "")
    if new:
        log.warning("legal hold set on account %s (%s)", account.id, masked)
        print(
            f"legal hold set on {masked} (account {account.id}) at {h.set_at:%Y-%m-%d %H:%M} UTC",
            file=out,
        )
    else:
        print(
            f"{masked} (account {account.id}) is already under a legal hold since "
            f"{h.set_at:%Y-%m-%d %H:%M} UTC: {h.reason}",
            file=out,
        )
    return 0


async def release(rt: Runtime, out: TextIO, err: TextIO, *, phone: str) -> int:
    async with rt.db.sessions() as s:
        account = await _account(s, rt, phone, err)
        if account is None:
            return 1
        h = await service.release(s, account_id=account.id)
        await s.commit()
    masked = mask_phone(account.phone or "")
    if h is None:
        print(f"kares: {masked} is under no legal hold", file=err)
        return 1
    log.warning("legal hold released on account %s (%s)", account.id, masked)
    print(f"legal hold on {masked} (account {account.id}) released", file=out)
    return 0


async def _account(s: AsyncSession, rt: Runtime, phone: str, err: TextIO) -> Account | None:
    try:
        account = await service.account_by_phone(s, rt, phone)
    except Problem as exc:
        print(f"kares: {exc}", file=err)
        return None
    if account is None:
        print("kares: no account has that phone number", file=err)
    return account
