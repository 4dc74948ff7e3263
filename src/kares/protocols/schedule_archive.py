"""The person's calendars as iCalendar files in the rights archive (policy 5.1).

One ``.ics`` file per personal calendar the account owns, every event and to-do
with its recurrences, exceptions and alarms as stored (what a phone synced
included), so any calendar app imports it. Family calendars are the family's,
not one person's: they are not written here (the family's owner's export covers
``families``; docs/SCHEDULE.md, "Privacy")."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares.rights import formats
from kares.schedule import service
from kares.schedule.models import Calendar

if TYPE_CHECKING:
    from kares.runtime import Runtime

_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")


@formats.register(
    "calendars",
    title=("Calendars (iCalendar)", "日历(iCalendar)"),
    about=(
        "your calendars, one .ics file each, with every event, to-do, repetition and "
        "reminder: any calendar app (phone, Outlook, Thunderbird) imports them",
        "您的日历,每个日历一个 .ics 文件,包含所有日程、待办、重复规则和提醒,"
        "可导入任何日历应用(手机、Outlook、Thunderbird)",
    ),
)
async def export_calendars(
    s: AsyncSession, rt: Runtime, account_id: str
) -> AsyncIterator[formats.ArchiveFile]:
    q = select(Calendar).where(Calendar.account_id == account_id).order_by(Calendar.created_at)
    for i, cal in enumerate((await s.execute(q)).scalars(), start=1):
        slug = _UNSAFE.sub("-", cal.name).strip("-")[:40] or "calendar"
        yield formats.ArchiveFile(f"{i:02d}-{slug}.ics", await service.calendar_ics(s, cal))
