"""The schedule in the person's rights (issue 16): the archive holds each of the
person's calendars as an .ics file that reads back to the same events, and
deleting the account deletes its calendars and everything in them."""

from __future__ import annotations

from typing import Any

import httpx
import icalendar
import recurring_ical_events

from kares import jobs
from tests.conftest import count_rows, query
from tests.test_families import aid, h, person
from tests.test_rights_export import download, ready, unzip

OWNER = "+8613800004001"
CAL = "/api/v1/calendars"


async def test_the_archive_holds_each_calendar_as_ics(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await person(client, sms, OWNER, "Wang Fang")
    r = await client.get(CAL, headers=h(me))
    cid = next(c["id"] for c in r.json()["calendars"] if c["account_id"] == aid(me))
    r = await client.post(
        f"{CAL}/{cid}/events",
        json={
            "title": "Eye drops",
            "start": "2026-12-07T09:00:00+08:00",
            "time_zone": "Asia/Shanghai",
            "rrule": "FREQ=DAILY;COUNT=5",
            "exdates": ["2026-12-09T09:00:00+08:00"],
        },
        headers=h(me),
    )
    assert r.status_code == 201, r.text
    req = await ready(client, app, me)
    files = unzip((await download(client, me, req)).content)
    ics = [n for n in files if n.startswith("calendars/") and n.endswith(".ics")]
    assert len(ics) == 1, sorted(files)
    cal = icalendar.Calendar.from_ical(files[ics[0]].decode())
    occ = list(recurring_ical_events.of(cal).all())
    assert [str(e["SUMMARY"]) for e in occ] == ["Eye drops"] * 4  # five less the exception


async def test_deleting_the_account_deletes_its_schedule(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    from tests.test_rights_erase import ask

    me = await person(client, sms, OWNER, "Wang Fang")
    r = await client.get(CAL, headers=h(me))
    cid = next(c["id"] for c in r.json()["calendars"] if c["account_id"] == aid(me))
    r = await client.post(f"{CAL}/{cid}/todos", json={"title": "Call grandma"}, headers=h(me))
    assert r.status_code == 201, r.text
    assert await count_rows(db, "calendar_objects") == 1
    r = await ask(client, sms, me)
    assert r.status_code == 202, r.text
    from kares import clock

    clock.advance(16 * 86400)
    await jobs.run_due(app.state.runtime)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=aid(me))
    for table in ("calendars", "calendar_objects", "calendar_changes"):
        assert await count_rows(db, table) == 0, table
