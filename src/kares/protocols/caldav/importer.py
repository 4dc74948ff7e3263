"""ICS import: a file of many events into one calendar, all or nothing.

The file is split by UID (:mod:`kares.protocols.caldav.ics`); each part is checked
by the schedule domain as a CalDAV PUT would be and written with its
``store`` (no commit), an existing object of the same UID replaced; one commit at
the end. The first part the domain refuses ends the import with that refusal,
naming the event, and the transaction is rolled back: nothing changed.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy.ext.asyncio import AsyncSession

from kares.errors import Problem
from kares.protocols.caldav import ics
from kares.schedule import ical
from kares.schedule import service as schedule

_SAFE = re.compile(r"^[A-Za-z0-9@._+=-]{1,200}$")


def resource_name(uid: str) -> str:
    """The name an imported UID is stored under: the UID itself when it is a
    plain one, else a hash of it (names are path segments)."""
    if _SAFE.match(uid):
        return f"{uid}.ics"
    return hashlib.sha256(uid.encode()).hexdigest()[:40] + ".ics"


async def import_file(
    s: AsyncSession, account_id: str, calendar_id: str, data: bytes
) -> tuple[int, int]:
    """Import ``data`` into the calendar; (created, updated)."""
    cal, _ = await schedule.calendar_for(s, account_id, calendar_id, write=True)
    parts = ics.split(data)
    created = updated = 0
    try:
        for i, (uid, text) in enumerate(parts, 1):
            raw = text.encode("utf-8")
            try:
                parsed = ical.parse(raw)
                have = await schedule.get_by_uid(s, cal.id, parsed.uid)
                name = have.name if have is not None else resource_name(parsed.uid)
                w = await schedule.store(s, cal, name=name, parsed=parsed, data=raw)
            except Problem as p:
                raise Problem(
                    p.status,
                    p.code,
                    f"Event {i} of the file (UID {uid[:80]!r}): {p.detail} Nothing was imported.",
                ) from None
            if w.created:
                created += 1
            else:
                updated += 1
        await s.commit()
    except BaseException:
        await s.rollback()
        raise
    return created, updated
