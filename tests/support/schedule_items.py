"""Calendar items for the reminder tests, written through the schedule domain's
service (what its JSON API and CalDAV call), so every write runs its hooks."""

from __future__ import annotations

from typing import Any

from kares.schedule import service as schedule


def _id(who: dict[str, Any]) -> str:
    return str(who["account"]["id"])


async def personal_calendar(db: Any, who: dict[str, Any], *, account_id: str | None = None) -> str:
    """The default personal calendar of ``account_id`` (a ward of ``who``), or of ``who``."""
    async with db.sessions() as s:
        cal = await schedule.personal_calendar(s, account_id or _id(who))
        await s.commit()
        await schedule.calendar_for(s, _id(who), cal.id, write=True)
        return str(cal.id)


async def family_calendar(db: Any, family_id: str) -> str:
    async with db.sessions() as s:
        cal = await schedule.family_calendar(s, family_id)
        await s.commit()
        return str(cal.id)


async def put_item(db: Any, who: dict[str, Any], calendar_id: str, name: str, ics: str) -> str:
    async with db.sessions() as s:
        written = await schedule.put_object(
            s, account_id=_id(who), calendar_id=calendar_id, name=f"{name}.ics", ical_text=ics
        )
        return str(written.object.id)


async def delete_item(db: Any, who: dict[str, Any], calendar_id: str, name: str) -> None:
    async with db.sessions() as s:
        await schedule.delete_object(
            s, account_id=_id(who), calendar_id=calendar_id, name=f"{name}.ics"
        )
