"""A reminder on the dependant's paired watch, over the real watch listener on
loopback (tests/support/watch.py): sent down as a ``MESSAGE`` text when it is
due, before chat, again until the watch acknowledges it, never after."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from kares import clock, jobs
from kares.protocols.watch import frames as wp
from kares.protocols.watch.server import WatchServer
from kares.schedule import service as schedule
from tests.conftest import query
from tests.support.schedule_items import personal_calendar, put_item
from tests.support.watch import WAIT, Conn, frame, household, server, settings_overrides
from tests.test_schedule_reminders import at_minute, event, move_to

__all__ = ["server", "settings_overrides"]  # fixtures, from tests.support.watch


async def next_text(c: Conn) -> str:
    (f,) = wp.FrameReader().feed(await asyncio.wait_for(c.reply(), WAIT))
    assert f.command == "MESSAGE"
    return wp.text_of(f.content)


async def test_the_watch_gets_the_reminder_as_a_message_once(
    client: httpx.AsyncClient, sms: Any, server: WatchServer, app: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    g = ctx["guardians"][0]
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, g, account_id=ctx["dep"])
    await put_item(db, g, cal, "walk", event("walk", start, summary="Walk the dog"))
    c = await Conn.open(server.port)  # type: ignore[attr-defined]
    try:
        await c.sync()
        await c.silent()
        move_to(start - timedelta(minutes=10))
        await jobs.run_due(app.state.runtime)
        local = start.astimezone(ZoneInfo(schedule.DEFAULT_TIME_ZONE)).strftime("%H:%M")
        assert await next_text(c) == f"Reminder: Walk the dog {local}"
        await c.silent()  # one frame in flight until the watch answers
    finally:
        await c.close()
    await asyncio.sleep(0)
    c = await Conn.open(server.port)  # type: ignore[attr-defined]
    try:
        await c.sync()
        assert await next_text(c) == f"Reminder: Walk the dog {local}"  # not acknowledged
        await c.send(frame("MESSAGE"))
        await c.sync()
        await c.silent()
    finally:
        await c.close()
    (row,) = await query(db, "SELECT watch_owed, watch_sent_at FROM schedule_reminder_recipients")
    assert not row["watch_owed"] and row["watch_sent_at"] is not None
    c = await Conn.open(server.port)  # type: ignore[attr-defined]
    try:
        await c.sync()
        await c.silent()  # acknowledged: never again
    finally:
        await c.close()
