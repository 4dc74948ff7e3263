"""Reminders of calendar items, delivered with a controllable clock through the
public API (docs/SCHEDULE_REMINDERS.md): at the due minute and not before,
recurring, moved by an edit, cancelled by a deletion, once across a restart in
the due minute and across two racing workers, late-marked when late; missed
confirmations told to the guardians once; the reminder on the dependant's watch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kares import clock, jobs
from kares.schedule import reminders
from tests.conftest import bearer, count_rows, query, sign_up, snapshot
from tests.support.schedule_items import delete_item, family_calendar, personal_calendar, put_item
from tests.test_families import join, new_family, set_role

ME = "+8613800138100"
OTHER = "+8613800138101"
THIRD = "+8613800138102"
REMINDERS = "/api/v1/schedule/reminders"
MISSED = "/api/v1/schedule/missed-confirmations"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"jobs_lease_seconds": 60}


def at_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def event(
    uid: str,
    start: datetime,
    *,
    summary: str = "Medicine",
    alarms: tuple[str, ...] = ("-PT10M",),
    rrule: str | None = None,
    confirm: str | None = None,
    component: str = "VEVENT",
    extra: str = "",
) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//kares tests//EN",
        f"BEGIN:{component}",
        f"UID:{uid}",
        f"DTSTAMP:{stamp(start)}",
        f"DTSTART:{stamp(start)}",
        f"SUMMARY:{summary}",
    ]
    if component == "VEVENT":
        lines.append("DURATION:PT30M")
    if rrule:
        lines.append(f"RRULE:{rrule}")
    if confirm is not None:
        lines.append(f"X-KARES-CONFIRM:{confirm}")
    if extra:
        lines.append(extra)
    for trig in alarms:
        lines += [
            "BEGIN:VALARM",
            "ACTION:DISPLAY",
            "DESCRIPTION:x",
            f"TRIGGER:{trig}",
            "END:VALARM",
        ]
    lines += [f"END:{component}", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"


def move_to(t: datetime) -> None:
    clock.advance((t - clock.utcnow()).total_seconds())


async def inbox(client: httpx.AsyncClient, who: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/notifications", headers=bearer(who["token"]))
    assert r.status_code == 200, r.text
    got = r.json()
    items = got["notifications"] if isinstance(got, dict) else got
    return [n for n in items if n["category"] == "reminders"]


async def run(app: Any, **kw: Any) -> jobs.RunStats:
    return await jobs.run_due(app.state.runtime, **kw)


async def deliveries(db: Any) -> list[dict[str, Any]]:
    return await query(
        db,
        "SELECT kind, status, late_seconds, alarm_key FROM schedule_reminder_deliveries "
        "ORDER BY due_at",
    )


# --- delivery ---------------------------------------------------------------------------------


async def test_a_reminder_arrives_at_its_minute_and_not_before(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await sign_up(client, sms, ME)
    start = at_minute(clock.utcnow()) + timedelta(minutes=40)
    cal = await personal_calendar(db, me)
    await put_item(db, me, cal, "pill", event("pill", start))
    r = await client.get(REMINDERS, headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    (up,) = r.json()["reminders"]
    assert up["title"] == "Medicine"
    assert datetime.fromisoformat(up["fire_at"]) == start - timedelta(minutes=10)

    await run(app)
    move_to(start - timedelta(minutes=10, seconds=1))
    await run(app)
    assert await inbox(client, me) == []
    move_to(start - timedelta(minutes=10))
    await run(app)
    (note,) = await inbox(client, me)
    assert note["title"] == "Reminder: Medicine"
    assert note["data"]["late"] is False
    assert datetime.fromisoformat(note["data"]["starts_at"]) == start
    move_to(start + timedelta(hours=3))
    await run(app)
    assert len(await inbox(client, me)) == 1
    assert await deliveries(db) == [
        {"kind": "alarm", "status": "on_time", "late_seconds": 0, "alarm_key": "a-600"}
    ]
    r = await client.get(REMINDERS, headers=bearer(me["token"]))
    assert r.json()["reminders"] == []


async def test_every_occurrence_of_a_recurring_event_reminds_beyond_the_horizon(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await sign_up(client, sms, ME)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, me)
    await put_item(
        db,
        me,
        cal,
        "daily",
        event("daily", start, rrule="FREQ=DAILY;COUNT=5", alarms=("-PT5M", "PT0M")),
    )
    for day in range(5):
        move_to(start + timedelta(days=day, minutes=-5))
        await run(app)
        assert len(await inbox(client, me)) == 2 * day + 1, day
        move_to(start + timedelta(days=day))
        await run(app)
        assert len(await inbox(client, me)) == 2 * day + 2, day
    move_to(start + timedelta(days=9))
    await run(app)
    assert len(await inbox(client, me)) == 10
    assert [d["status"] for d in await deliveries(db)] == ["on_time"] * 10
    # the series is over: its refill job ended, nothing of it is left to fire
    async with db.sessions() as s:
        assert await jobs.pending(s, kind=reminders.REFILL_JOB) == []
        assert await jobs.pending(s, kind=reminders.JOB) == []
    assert await count_rows(db, "schedule_reminder_sources") == 0
    assert await count_rows(db, "schedule_reminder_fires") == 0


async def test_an_edit_moves_the_reminder_and_a_deletion_cancels_it(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await sign_up(client, sms, ME)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, me)
    await put_item(db, me, cal, "visit", event("visit", start, summary="Doctor"))
    later = start + timedelta(hours=2)
    await put_item(db, me, cal, "visit", event("visit", later, summary="Doctor"))
    move_to(start - timedelta(minutes=10))
    await run(app)
    assert await inbox(client, me) == []  # not at the old time
    move_to(later - timedelta(minutes=10))
    await run(app)
    (note,) = await inbox(client, me)
    assert datetime.fromisoformat(note["data"]["starts_at"]) == later

    soon = later + timedelta(hours=1)
    await put_item(db, me, cal, "gone", event("gone", soon, summary="Cancelled"))
    assert await count_rows(db, "schedule_reminder_fires") == 1
    await delete_item(db, me, cal, "gone")
    assert await count_rows(db, "schedule_reminder_fires") == 0
    move_to(soon)
    await run(app)
    assert len(await inbox(client, me)) == 1


async def test_due_while_down_is_delivered_late_once_and_stale_is_recorded(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await sign_up(client, sms, ME)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, me)
    await put_item(db, me, cal, "a", event("a", start, summary="Pick-up"))
    await put_item(db, me, cal, "b", event("b", start + timedelta(hours=1), summary="Gym"))
    # the service is down from before the first reminder until ten minutes into
    # the first event; then down again until the second event is over
    move_to(start + timedelta(minutes=10))
    await run(app)
    (note,) = await inbox(client, me)
    assert note["title"] == "Late reminder: Pick-up" and note["data"]["late"] is True
    assert "(delivered late)" in note["body"]
    move_to(start + timedelta(hours=3))
    await run(app)
    assert len(await inbox(client, me)) == 1  # the Gym's was stale: recorded, not sent
    got = await deliveries(db)
    assert [(d["status"], d["late_seconds"]) for d in got] == [
        ("late", 20 * 60),
        ("stale", 2 * 3600 + 10 * 60),
    ]


async def test_a_worker_that_dies_in_the_due_minute_delivers_once_late_marked(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    """The job's worker claims it in the due minute and dies before running it: a
    survivor takes it over when the lease ends (a minute later: late). Another
    delivers and dies before it could finish the job: the job runs again and
    sends nothing twice."""
    rt = app.state.runtime
    me = await sign_up(client, sms, ME)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, me)
    await put_item(db, me, cal, "a", event("a", start, summary="First"))
    await put_item(db, me, cal, "b", event("b", start + timedelta(hours=1), summary="Second"))

    move_to(start - timedelta(minutes=10))
    (claimed,) = await jobs.claim(rt, worker="dies", limit=5)
    assert claimed.kind == reminders.JOB
    await run(app)  # leased to the dead worker: nobody runs it
    assert await inbox(client, me) == []
    clock.advance(61)
    stats = await run(app, worker="survivor")
    assert stats.done == 1
    (note,) = await inbox(client, me)
    assert note["data"]["late"] is True
    # the dead worker wakes up: it may run the handler, but nothing is sent twice
    assert await jobs.run_job(rt, claimed, worker="dies") == "done"
    assert len(await inbox(client, me)) == 1

    move_to(start + timedelta(minutes=50))
    (claimed,) = await jobs.claim(rt, worker="dies-after", limit=5)
    await reminders.fire_job(rt, claimed)  # delivered and committed; then the worker died
    assert len(await inbox(client, me)) == 2
    clock.advance(61)
    assert (await run(app, worker="survivor")).done == 1
    assert len(await inbox(client, me)) == 2
    assert [d["status"] for d in await deliveries(db)] == ["late", "on_time"]


async def test_two_workers_racing_deliver_once(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any, settings: Any
) -> None:
    from kares.runtime import Runtime

    rt = app.state.runtime
    me = await sign_up(client, sms, ME)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, me)
    await put_item(db, me, cal, "a", event("a", start))
    # a second job for the same fire, as a retry or an edit's job would be
    (fire,) = await query(db, "SELECT id FROM schedule_reminder_fires")
    async with db.sessions() as s:
        for _ in range(3):
            jobs.enqueue(
                s, reminders.JOB, {"fire_id": fire["id"]}, run_at=start - timedelta(minutes=10)
            )
        await s.commit()
    move_to(start - timedelta(minutes=10))
    other = Runtime.build(settings)
    try:
        a, b = await asyncio.gather(jobs.run_due(rt, worker="a"), jobs.run_due(other, worker="b"))
    finally:
        await other.close()
    assert a.done + b.done == 4
    assert len(await inbox(client, me)) == 1
    assert await count_rows(db, "schedule_reminder_deliveries") == 1
    assert await count_rows(db, "schedule_reminder_recipients") == 1


# --- confirmations ------------------------------------------------------------------------------


async def dependant(client: httpx.AsyncClient, owner: dict[str, Any], family_id: str) -> str:
    r = await client.post(
        f"/api/v1/families/{family_id}/dependants",
        json={"name": "Grandpa Wu", "age_bracket": "adult"},
        headers=bearer(owner["token"]),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["member"]["account_id"])


async def test_a_missed_confirmation_tells_the_guardians_once(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    g = await sign_up(client, sms, ME)
    g2 = await sign_up(client, sms, OTHER)
    adult = await sign_up(client, sms, THIRD)
    fid = await new_family(client, g)
    await join(client, g, fid, g2)
    await join(client, g, fid, adult)
    assert (await set_role(client, g, fid, g2, "guardian")).status_code == 200
    dep = await dependant(client, g, fid)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, g, account_id=dep)
    ics = event("pill", start, component="VTODO", confirm="PT30M", rrule="FREQ=DAILY;COUNT=2")
    await put_item(db, g, cal, "pill", ics)
    move_to(start + timedelta(minutes=29, seconds=59))
    await run(app)
    assert await inbox(client, g) == []
    move_to(start + timedelta(minutes=30))
    await run(app)
    for who in (g, g2):
        (note,) = await inbox(client, who)
        assert note["title"] == "Not confirmed: Medicine"
        assert "not confirmed 30 minutes after" in note["body"]
        assert note["data"]["unconfirmed_by"] == dep
    assert await inbox(client, adult) == []  # a member, not a guardian
    move_to(start + timedelta(hours=3))
    await run(app)
    assert len(await inbox(client, g)) == 1  # once
    r = await client.get(MISSED, headers=bearer(g2["token"]))
    (m,) = r.json()["missed"]
    assert m["unconfirmed_by"] == dep and m["status"] == "told" and m["title"] == "Medicine"
    assert datetime.fromisoformat(m["starts_at"]) == start

    # the next day the guardian confirms in time (they gave the pill): nobody is told
    nxt = start + timedelta(days=1)
    url = f"/api/v1/calendars/{cal}/todos/pill/confirm"
    r = await client.post(url, json={"occurrence": nxt.isoformat()}, headers=bearer(g2["token"]))
    assert r.status_code == 201, r.text
    r2 = await client.post(url, json={"occurrence": nxt.isoformat()}, headers=bearer(g["token"]))
    assert r2.status_code == 200 and r2.json()["confirmed_by"] == r.json()["confirmed_by"]
    move_to(nxt + timedelta(hours=2))
    await run(app)
    assert len(await inbox(client, g)) == 1 and len(await inbox(client, g2)) == 1


async def test_a_todo_made_in_the_app_asks_for_its_confirmation(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    g = await sign_up(client, sms, ME)
    fid = await new_family(client, g)
    dep = await dependant(client, g, fid)
    cal = await personal_calendar(db, g, account_id=dep)
    due = at_minute(clock.utcnow()) + timedelta(hours=1)
    r = await client.post(
        f"/api/v1/calendars/{cal}/todos",
        json={"title": "Medicine", "due": due.isoformat(), "confirm_minutes": 45},
        headers=bearer(g["token"]),
    )
    assert r.status_code == 201, r.text
    assert r.json()["confirm_minutes"] == 45
    move_to(due + timedelta(minutes=44))
    await run(app)
    assert await inbox(client, g) == []
    move_to(due + timedelta(minutes=45))
    await run(app)
    (note,) = await inbox(client, g)
    assert "not confirmed 45 minutes after" in note["body"]
    # asked no more: the property goes, and the entry says so
    uid = r.json()["id"]
    r = await client.patch(
        f"/api/v1/calendars/{cal}/todos/{uid}",
        json={"confirm_minutes": None},
        headers=bearer(g["token"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["entries"][0]["confirm_minutes"] is None


async def object_id(db: Any, uid: str) -> str:
    (row,) = await query(db, "SELECT id FROM calendar_objects WHERE uid = :u", u=uid)
    return str(row["id"])


async def test_a_todo_completed_on_the_phone_counts_and_confirming_checks_everything(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await sign_up(client, sms, ME)
    stranger = await sign_up(client, sms, OTHER)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, me)
    await put_item(db, me, cal, "t", event("t", start, component="VTODO", confirm=""))
    await put_item(db, me, cal, "e", event("e", start, summary="No ask"))
    # a CalDAV client marks the to-do done
    done = event("t", start, component="VTODO", confirm="", extra="STATUS:COMPLETED")
    await put_item(db, me, cal, "t", done)
    base = f"/api/v1/calendars/{cal}"
    before = await snapshot(db)
    bad = [
        (stranger, f"{base}/todos/t", start, 404, "calendar.not_found"),
        (me, f"{base}/todos/nope", start, 404, "calendar.entry_not_found"),
        (me, f"{base}/events/t", start, 404, "calendar.entry_not_found"),
        (me, f"{base}/todos/t", start + timedelta(minutes=1), 404, "calendar.occurrence_not_found"),
        (me, f"{base}/events/e", None, 409, "schedule.confirmation_not_asked"),
    ]
    for who, url, occ, status, code in bad:
        body = {"occurrence": occ.isoformat()} if occ else {}
        r = await client.post(f"{url}/confirm", json=body, headers=bearer(who["token"]))
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
    for body in ({"occurrence": "2026-01-01T08:00:00"}, {"occurrence": 1}, {"when": "x"}):
        r = await client.post(f"{base}/todos/t/confirm", json=body, headers=bearer(me["token"]))
        assert r.status_code == 422, r.text  # a time without its zone, not a time, unknown
    assert await snapshot(db) == before
    move_to(start + timedelta(hours=1))
    await run(app)
    assert await inbox(client, me) == []  # completed: nobody told
    # the two alarms (stale by then, recorded); no missed confirmation
    assert [d["kind"] for d in await deliveries(db)] == ["alarm", "alarm"]
    assert await count_rows(db, "schedule_reminder_fires") == 0


# --- family calendars, and the person's copy of their data -------------------------------------


async def test_a_family_item_reminds_its_assignees_or_everyone_and_its_miss_goes_to_the_admins(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    owner = await sign_up(client, sms, ME)
    member = await sign_up(client, sms, OTHER)
    third = await sign_up(client, sms, THIRD)
    fid = await new_family(client, owner)
    await join(client, owner, fid, member)
    await join(client, owner, fid, third)
    cal = await family_calendar(db, fid)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    who = f"ATTENDEE:urn:kares:account:{member['account']['id']}"
    await put_item(db, owner, cal, "bins", event("bins", start, summary="Bins", extra=who))
    await put_item(db, owner, cal, "dinner", event("dinner", start, summary="Dinner"))
    # the member's chore asks to be confirmed; they forget
    chore = event("chore", start, summary="Dishes", extra=who, confirm="PT30M", alarms=())
    await put_item(db, owner, cal, "chore", chore)
    r = await client.get(REMINDERS, headers=bearer(member["token"]))
    assert sorted(x["title"] for x in r.json()["reminders"]) == ["Bins", "Dinner"]
    r = await client.get(REMINDERS, headers=bearer(third["token"]))
    assert [x["title"] for x in r.json()["reminders"]] == ["Dinner"]
    move_to(start - timedelta(minutes=10))
    await run(app)
    assert sorted(n["title"] for n in await inbox(client, member)) == [
        "Reminder: Bins",
        "Reminder: Dinner",
    ]
    assert [n["title"] for n in await inbox(client, third)] == ["Reminder: Dinner"]
    move_to(start + timedelta(minutes=30))
    await run(app)
    # an adult member's miss: the family's owner and guardians are told, not the others
    missed = [n for n in await inbox(client, owner) if n["title"].startswith("Not confirmed")]
    assert [n["data"]["unconfirmed_by"] for n in missed] == [member["account"]["id"]]
    assert len(await inbox(client, third)) == 1
    assert len(await inbox(client, member)) == 2


async def test_the_persons_copy_of_their_data_holds_their_reminders(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    from tests.test_rights_export import check_against_schema, download, ready, unzip

    me = await sign_up(client, sms, ME)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, me)
    await put_item(db, me, cal, "soon", event("soon", start, summary="Soon"))
    await put_item(db, me, cal, "pill", event("pill", start, rrule="FREQ=DAILY", confirm="PT30M"))
    r = await client.post(
        f"/api/v1/calendars/{cal}/events/pill/confirm",
        json={"occurrence": start.isoformat()},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text
    move_to(start - timedelta(minutes=10))
    await run(app)
    req = await ready(client, app, me)
    files = unzip((await download(client, me, req)).content)
    seen = await check_against_schema(db, files, me["account"]["id"])
    assert {
        "schedule_reminder_fires",
        "schedule_reminder_deliveries",
        "schedule_reminder_recipients",
        "schedule_confirmations",
    } <= seen, seen


async def test_reminders_written_by_the_json_api_follow_an_edit_of_one_occurrence(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    """The schedule's JSON API writes the reminders as VALARMs; moving one occurrence
    ("this") moves its reminder and leaves the others'."""
    me = await sign_up(client, sms, ME)
    cid = await personal_calendar(db, me)
    start = at_minute(clock.utcnow()) + timedelta(hours=2)
    r = await client.post(
        f"/api/v1/calendars/{cid}/events",
        json={
            "title": "Swim",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "rrule": "FREQ=DAILY;COUNT=3",
            "reminders": [{"minutes_before": 15}],
        },
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    second = start + timedelta(days=1)
    r = await client.get(
        f"/api/v1/calendars/{cid}/occurrences",
        params={"from": start.isoformat(), "to": (start + timedelta(days=3)).isoformat()},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    rid = r.json()["occurrences"][1]["recurrence_id"]
    later = second + timedelta(hours=3)
    r = await client.patch(
        f"/api/v1/calendars/{cid}/events/{uid}",
        json={
            "scope": "this",
            "occurrence": rid,
            "start": later.isoformat(),
            "end": (later + timedelta(hours=1)).isoformat(),
        },
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    r = await client.get(REMINDERS, headers=bearer(me["token"]))
    got = [(x["entry_id"], datetime.fromisoformat(x["fire_at"])) for x in r.json()["reminders"]]
    assert got == [
        (uid, start - timedelta(minutes=15)),
        (uid, later - timedelta(minutes=15)),
    ]
    for t in (start, second, later, start + timedelta(days=2)):
        move_to(t - timedelta(minutes=15))
        await run(app)
    notes = await inbox(client, me)
    assert [datetime.fromisoformat(n["data"]["starts_at"]) for n in reversed(notes)] == [
        start,
        later,
        start + timedelta(days=2),
    ]
    assert {n["data"]["entry_id"] for n in notes} == {uid}


async def test_a_dense_rule_is_materialised_in_rounds(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_FIRES fires per object at a time (500; 5 here): the refill job
    makes the next round at once, from where the last one stopped."""
    monkeypatch.setattr(reminders, "MAX_FIRES", 5)
    me = await sign_up(client, sms, ME)
    start = at_minute(clock.utcnow()) + timedelta(hours=1)
    cal = await personal_calendar(db, me)
    await put_item(db, me, cal, "tick", event("tick", start, rrule="FREQ=HOURLY"))
    first = start - timedelta(minutes=10)

    async def fire_times() -> list[datetime]:
        rows = await query(db, "SELECT fire_at FROM schedule_reminder_fires")
        return sorted(datetime.fromisoformat(str(r["fire_at"])).replace(tzinfo=UTC) for r in rows)

    assert await fire_times() == [first + timedelta(hours=i) for i in range(5)]
    await run(app)  # the refill job is due at once: the next round
    assert await fire_times() == [first + timedelta(hours=i) for i in range(10)]
