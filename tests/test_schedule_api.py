"""The schedule's JSON API (issue 16): calendars, events and to-dos written as
iCalendar, occurrences expanded across a daylight-saving change, edits of one
occurrence, of this and the following ones (a split series) and of all, and
refusals that change nothing."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar

from kares.schedule import service as schedule
from tests.conftest import query, snapshot
from tests.test_families import aid, h, join, new_family, person, problem
from tests.test_families_dependants import add

OWNER, MEMBER, OTHER, STRANGER = (
    "+8613800003001",
    "+8613800003002",
    "+8613800003003",
    "+8613800003004",
)
CAL = "/api/v1/calendars"
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


async def calendars(client: httpx.AsyncClient, who: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get(CAL, headers=h(who))
    assert r.status_code == 200, r.text
    return list(r.json()["calendars"])


async def own(client: httpx.AsyncClient, who: dict[str, Any]) -> str:
    cals = await calendars(client, who)
    return next(c["id"] for c in cals if c["account_id"] == aid(who) and c["default"])


async def occurrences(
    client: httpx.AsyncClient, who: dict[str, Any], cid: str, start: str, end: str
) -> list[dict[str, Any]]:
    r = await client.get(
        f"{CAL}/{cid}/occurrences", params={"from": start, "to": end}, headers=h(who)
    )
    assert r.status_code == 200, r.text
    return list(r.json()["occurrences"])


async def stored_ical(app: Any, cid: str, uid: str) -> icalendar.Calendar:
    async with app.state.runtime.db.sessions() as s:
        obj = await schedule.get_by_uid(s, cid, uid)
        assert obj is not None
        return schedule.decode(obj)


async def test_a_weekly_event_keeps_its_wall_clock_time_across_dst(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await person(client, sms, OWNER, "Wang Fang")
    cid = await own(client, me)
    r = await client.post(
        f"{CAL}/{cid}/events",
        json={
            "title": "Medicine",
            "notes": "two pills",
            "place": "kitchen",
            "start": "2026-03-22T08:00:00+01:00",
            "end": "2026-03-22T08:15:00+01:00",
            "time_zone": "Europe/Berlin",
            "rrule": "FREQ=WEEKLY;COUNT=3",
            "reminders": [{"minutes_before": 10}, {"at": "2026-03-22T06:00:00Z"}],
        },
        headers=h(me),
    )
    assert r.status_code == 201, r.text
    e = r.json()
    assert e["title"] == "Medicine" and e["time_zone"] == "Europe/Berlin"
    assert e["rrule"] == "FREQ=WEEKLY;COUNT=3"
    assert {"minutes_before": 10, "at": None} in e["reminders"]
    occ = await occurrences(client, me, cid, "2026-03-01T00:00:00Z", "2026-05-01T00:00:00Z")
    starts = [datetime.fromisoformat(o["start"]) for o in occ]
    # 08:00 in Berlin each time: 07:00 UTC before the change on 29 March, 06:00 after
    assert [s.astimezone(BERLIN).hour for s in starts] == [8, 8, 8]
    assert [s.utcoffset().total_seconds() / 3600 for s in starts] == [1, 2, 2]  # type: ignore[union-attr]
    # written as iCalendar with its time zone and alarms: a phone reads the same
    vcal = await stored_ical(app, cid, e["id"])
    ev = next(c for c in vcal.walk("VEVENT"))
    assert ev["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert [c for c in vcal.walk("VTIMEZONE") if str(c["TZID"]) == "Europe/Berlin"]
    assert len(list(ev.walk("VALARM"))) == 2


async def test_this_occurrence_following_and_all(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await person(client, sms, OWNER, "Wang Fang")
    cid = await own(client, me)
    r = await client.post(
        f"{CAL}/{cid}/events",
        json={
            "title": "School pick-up",
            "start": "2026-10-19T15:30:00-04:00",
            "end": "2026-10-19T16:00:00-04:00",
            "time_zone": "America/New_York",
            "rrule": "FREQ=DAILY;COUNT=20",
            "exdates": ["2026-10-20T15:30:00-04:00"],
        },
        headers=h(me),
    )
    assert r.status_code == 201, r.text
    e = r.json()
    uid = e["id"]
    occ = await occurrences(client, me, cid, "2026-10-19T00:00:00Z", "2026-12-01T00:00:00Z")
    assert len(occ) == 19  # twenty less the exception
    # across the end of daylight saving (1 November) it stays at 15:30 local
    assert {datetime.fromisoformat(o["start"]).astimezone(NEW_YORK).hour for o in occ} == {15}
    third = occ[1]["recurrence_id"]
    # this occurrence: moved an hour later, titled apart
    r = await client.patch(
        f"{CAL}/{cid}/events/{uid}",
        json={
            "scope": "this",
            "occurrence": third,
            "title": "Pick-up (late)",
            "start": "2026-10-21T16:30:00-04:00",
            "end": "2026-10-21T17:00:00-04:00",
        },
        headers={**h(me), "If-Match": f'"{e["etag"]}"'},
    )
    assert r.status_code == 200, r.text
    occ = await occurrences(client, me, cid, "2026-10-19T00:00:00Z", "2026-12-01T00:00:00Z")
    moved = [o for o in occ if o["overridden"]]
    assert [o["title"] for o in moved] == ["Pick-up (late)"]
    assert datetime.fromisoformat(moved[0]["start"]).astimezone(NEW_YORK).hour == 16
    # a stale etag: 412, nothing changed
    r2 = await client.patch(
        f"{CAL}/{cid}/events/{uid}",
        json={"title": "x"},
        headers={**h(me), "If-Match": f'"{e["etag"]}"'},
    )
    problem(r2, 412, "calendar.precondition_failed")
    # a bad change is said to be bad, stale etag or not
    r2 = await client.patch(
        f"{CAL}/{cid}/events/{uid}",
        json={"time_zone": "Mars/Olympus"},
        headers={**h(me), "If-Match": f'"{e["etag"]}"'},
    )
    assert r2.status_code in (400, 422) and r2.json()["code"] != "calendar.precondition_failed"
    # this and following from the tenth occurrence: the series splits in two
    tenth = occ[9]["recurrence_id"]
    r = await client.patch(
        f"{CAL}/{cid}/events/{uid}",
        json={"scope": "following", "occurrence": tenth, "title": "Pick-up (new school)"},
        headers=h(me),
    )
    assert r.status_code == 200, r.text
    old, new = r.json()["entries"]
    assert old["id"] == uid and new["id"] != uid
    assert "UNTIL=" in old["rrule"] and "COUNT=10" in new["rrule"]
    occ = await occurrences(client, me, cid, "2026-10-19T00:00:00Z", "2026-12-01T00:00:00Z")
    assert len(occ) == 19  # the same days, now from two series
    titles = [o["title"] for o in occ]
    assert titles[9:] == ["Pick-up (new school)"] * 10
    assert titles[:9].count("School pick-up") == 8
    # all: the first series renamed; its override keeps its own title
    r = await client.patch(
        f"{CAL}/{cid}/events/{uid}", json={"title": "Pick-up", "scope": "all"}, headers=h(me)
    )
    assert r.status_code == 200, r.text
    # delete one occurrence of the new series, then the rest of it from its third
    occ = await occurrences(client, me, cid, "2026-10-19T00:00:00Z", "2026-12-01T00:00:00Z")
    new_occ = [o for o in occ if o["id"] == new["id"]]
    r = await client.delete(
        f"{CAL}/{cid}/events/{new['id']}",
        params={"scope": "this", "occurrence": new_occ[0]["recurrence_id"]},
        headers=h(me),
    )
    assert r.status_code == 204, r.text
    r = await client.delete(
        f"{CAL}/{cid}/events/{new['id']}",
        params={"scope": "following", "occurrence": new_occ[2]["recurrence_id"]},
        headers=h(me),
    )
    assert r.status_code == 204, r.text
    occ = await occurrences(client, me, cid, "2026-10-19T00:00:00Z", "2026-12-01T00:00:00Z")
    assert [o["title"] for o in occ if o["id"] == new["id"]] == ["Pick-up (new school)"]
    # an occurrence that is not one: 404
    r = await client.patch(
        f"{CAL}/{cid}/events/{uid}",
        json={"scope": "this", "occurrence": "2026-10-19T09:00:00-04:00", "title": "x"},
        headers=h(me),
    )
    problem(r, 404, "calendar.occurrence_not_found")


async def test_all_day_events_and_a_todo_for_a_dependant(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    member = await person(client, sms, MEMBER, "Wang Lei")
    fid = await new_family(client, owner)
    await join(client, owner, fid, member)
    r = await add(client, owner, fid, name="Grandpa", age_bracket="adult")
    assert r.status_code == 201, r.text
    dep = r.json()["member"]["account_id"]
    cals = await calendars(client, owner)
    dep_cal = next(c for c in cals if c["account_id"] == dep)
    fam_cal = next(c for c in cals if c["family_id"] == fid)
    assert dep_cal["access"] == "write" and fam_cal["access"] == "write"
    # the guardian sets the dependant's medicine, assigned to the dependant
    r = await client.post(
        f"{CAL}/{dep_cal['id']}/todos",
        json={
            "title": "Blood pressure pill",
            "start": "2026-12-07T08:00:00+08:00",
            "due": "2026-12-07T08:30:00+08:00",
            "rrule": "FREQ=DAILY",
            "assignees": [dep],
            "reminders": [{"minutes_before": 0}],
        },
        headers=h(owner),
    )
    assert r.status_code == 201, r.text
    todo = r.json()
    assert todo["assignees"] == [dep] and todo["status"] == "needs-action"
    # a birthday on the family calendar, all day
    r = await client.post(
        f"{CAL}/{fam_cal['id']}/events",
        json={
            "title": "Grandpa's birthday",
            "all_day": True,
            "start_date": "2026-12-24",
            "rrule": "FREQ=YEARLY",
            "attendees": [aid(owner), aid(member), dep],
        },
        headers=h(member),
    )
    assert r.status_code == 201, r.text
    bday = r.json()
    assert bday["all_day"] and bday["start_date"] == "2026-12-24"
    assert bday["end_date"] == "2026-12-25"
    r = await client.get(
        "/api/v1/me/occurrences",
        params={"from": "2026-12-20T00:00:00+08:00", "to": "2027-01-01T00:00:00+08:00"},
        headers=h(owner),
    )
    assert r.status_code == 200, r.text
    occ = r.json()["occurrences"]
    assert [o["start"] for o in occ if o["id"] == bday["id"]] == ["2026-12-24"]
    assert len([o for o in occ if o["id"] == todo["id"]]) == 12  # 20 to 31 December
    # a non-member may not be an attendee
    stranger = await person(client, sms, STRANGER, "Zhao")
    r = await client.post(
        f"{CAL}/{fam_cal['id']}/events",
        json={"title": "x", "start": "2026-12-07T08:00:00+08:00", "attendees": [aid(stranger)]},
        headers=h(member),
    )
    problem(r, 400, "calendar.invalid_attendees")
    # the plain member neither sees nor writes the dependant's calendar
    r = await client.get(f"{CAL}/{dep_cal['id']}/todos", headers=h(member))
    problem(r, 404, "calendar.not_found")
    # the stranger sees none of the family's calendars
    r = await client.get(f"{CAL}/{fam_cal['id']}/events", headers=h(stranger))
    problem(r, 404, "calendar.not_found")
    # done: the to-do completed
    r = await client.patch(
        f"{CAL}/{dep_cal['id']}/todos/{todo['id']}",
        json={"status": "completed"},
        headers=h(owner),
    )
    assert r.status_code == 200, r.text
    assert r.json()["entries"][0]["status"] == "completed"
    assert r.json()["entries"][0]["completed_at"] is not None


async def test_calendars_are_made_renamed_and_deleted(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms, OWNER, "Wang Fang")
    r = await client.post(CAL, json={"name": "Work", "color": "#FF0000"}, headers=h(me))
    assert r.status_code == 201, r.text
    work = r.json()
    assert work["kind"] == "personal" and not work["default"]
    r = await client.patch(f"{CAL}/{work['id']}", json={"name": "Office"}, headers=h(me))
    assert r.status_code == 200 and r.json()["name"] == "Office"
    default = await own(client, me)
    r = await client.delete(f"{CAL}/{default}", headers=h(me))
    problem(r, 409, "calendar.is_default")
    r = await client.delete(f"{CAL}/{work['id']}", headers=h(me))
    assert r.status_code == 204
    assert not await query(db, "SELECT id FROM calendars WHERE id = :i", i=work["id"])


BAD_EVENTS = [
    ({"title": "no start"}, 400, "calendar.invalid_times"),
    ({"start": "2026-12-07T08:00:00"}, 422, "request.invalid"),  # no offset
    (
        {"start": "2026-12-07T08:00:00Z", "end": "2026-12-07T07:00:00Z"},
        400,
        "calendar.invalid_times",
    ),
    ({"start": "2026-12-07T08:00:00Z", "rrule": "FREQ=SOMETIMES"}, 400, "calendar.invalid_rrule"),
    (
        {"start": "2026-12-07T08:00:00Z", "time_zone": "Mars/Olympus"},
        400,
        "calendar.invalid_time_zone",
    ),
    (
        {"start": "2026-12-07T08:00:00Z", "reminders": [{"minutes_before": -5}]},
        422,
        "request.invalid",
    ),
    ({"start": 1700000000}, 422, "request.invalid"),
    ({"start": "2026-12-07T08:00:00Z", "colour": "red"}, 422, "request.invalid"),
]


async def test_bad_entries_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms, OWNER, "Wang Fang")
    cid = await own(client, me)
    before = await snapshot(db)
    for body, status, code in BAD_EVENTS:
        r = await client.post(f"{CAL}/{cid}/events", json=body, headers=h(me))
        problem(r, status, code)
    r = await client.get(
        f"{CAL}/{cid}/occurrences",
        params={"from": "2026-01-01T00:00:00Z", "to": "2028-01-01T00:00:00Z"},
        headers=h(me),
    )
    problem(r, 400, "calendar.invalid_window")
    assert await snapshot(db) == before
    _ = date


async def test_moving_a_series_moves_its_exceptions_and_overrides(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await person(client, sms, OWNER, "Wang Fang")
    cid = await own(client, me)
    r = await client.post(
        f"{CAL}/{cid}/events",
        json={
            "title": "Piano",
            "start": "2026-12-01T17:00:00+08:00",
            "time_zone": "Asia/Shanghai",
            "rrule": "FREQ=WEEKLY;COUNT=6",
            "exdates": ["2026-12-08T17:00:00+08:00"],
        },
        headers=h(me),
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    r = await client.patch(
        f"{CAL}/{cid}/events/{uid}",
        json={"scope": "this", "occurrence": "2026-12-15T17:00:00+08:00", "place": "school"},
        headers=h(me),
    )
    assert r.status_code == 200, r.text
    # the whole series an hour later: the exception and the override follow
    r = await client.patch(
        f"{CAL}/{cid}/events/{uid}",
        json={"scope": "all", "start": "2026-12-01T18:00:00+08:00"},
        headers=h(me),
    )
    assert r.status_code == 200, r.text
    occ = await occurrences(client, me, cid, "2026-11-30T00:00:00Z", "2027-02-01T00:00:00Z")
    assert [o["start"] for o in occ] == [
        "2026-12-01T18:00:00+08:00",
        "2026-12-15T18:00:00+08:00",
        "2026-12-22T18:00:00+08:00",
        "2026-12-29T18:00:00+08:00",
        "2027-01-05T18:00:00+08:00",
    ]
    assert [o["place"] for o in occ if o["overridden"]] == ["school"]
