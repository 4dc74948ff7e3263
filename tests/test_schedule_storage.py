"""Schedule storage (issue 16): calendar object resources stored verbatim, ETags
and preconditions, UID rules, the RFC 6578 change log, and who may do what
(personal, dependants' and family calendars)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kares import clock
from kares.errors import Problem
from kares.schedule import service as schedule
from kares.schedule.models import Calendar
from tests.conftest import count_rows, query, snapshot
from tests.test_families import aid, join, new_family, person, set_role
from tests.test_families_dependants import add

OWNER, MEMBER, OTHER, STRANGER = (
    "+8613800002001",
    "+8613800002002",
    "+8613800002003",
    "+8613800002004",
)


def event(uid: str = "e1@kares", summary: str = "Medicine", extra: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Phone//EN\r\n"
        "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
        "END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
        "END:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261201T000000Z\r\n"
        "DTSTART;TZID=Europe/Berlin:20261207T080000\r\n"
        "DTEND;TZID=Europe/Berlin:20261207T081500\r\n"
        f"SUMMARY:{summary}\r\nX-PHONE-PRIVATE:kept as it is\r\n{extra}"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


async def sessions(app: Any) -> Any:
    return app.state.runtime.db.sessions()


async def mine(app: Any, who: dict[str, Any]) -> Calendar:
    async with app.state.runtime.db.sessions() as s:
        seen = await schedule.calendars_for(s, aid(who))
        return next(x.calendar for x in seen if x.calendar.default_for == aid(who))


async def put(app: Any, who: dict[str, Any], cal_id: str, name: str, text: str, **kw: Any) -> Any:
    async with app.state.runtime.db.sessions() as s:
        return await schedule.put_object(
            s, account_id=aid(who), calendar_id=cal_id, name=name, ical_text=text, **kw
        )


async def fails(coro: Any, status: int, code: str) -> Problem:
    with pytest.raises(Problem) as e:
        await coro
    assert (e.value.status, e.value.code) == (status, code), e.value.detail
    return e.value


async def test_an_object_round_trips_verbatim_with_etags_and_preconditions(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await person(client, sms, OWNER, "Wang Fang")
    cal = await mine(app, me)
    assert cal.kind == "personal" and cal.account_id == aid(me)
    w = await put(app, me, cal.id, "a.ics", event(), if_none_match=True)
    assert w.created and w.object.component == "VEVENT" and w.object.uid == "e1@kares"
    first = w.object.etag
    async with app.state.runtime.db.sessions() as s:
        got = await schedule.get_object(s, account_id=aid(me), calendar_id=cal.id, name="a.ics")
        assert got.data.decode() == event()  # verbatim, phone's own properties too
    # stored sealed: the summary is not readable in the database
    [row] = await query(db, "SELECT data FROM calendar_objects")
    assert b"Medicine" not in bytes(row["data"])
    # If-None-Match on an existing object, a stale If-Match: 412, nothing changed
    before = await snapshot(db)
    await fails(
        put(app, me, cal.id, "a.ics", event(), if_none_match=True),
        412,
        "calendar.precondition_failed",
    )
    await fails(
        put(app, me, cal.id, "a.ics", event(summary="X"), if_match='"0000"'),
        412,
        "calendar.precondition_failed",
    )
    assert await snapshot(db) == before
    w2 = await put(app, me, cal.id, "a.ics", event(summary="Pills"), if_match=f'"{first}"')
    assert not w2.created and w2.object.etag != first
    # the same UID under another name: 409 with the name that has it
    p = await fails(put(app, me, cal.id, "b.ics", event()), 409, "calendar.uid_conflict")
    assert p.extra["name"] == "a.ics"
    # a stale If-Match on delete: 412; the right one deletes
    await fails(
        _delete(app, me, cal.id, "a.ics", if_match=first), 412, "calendar.precondition_failed"
    )
    await _delete(app, me, cal.id, "a.ics", if_match=w2.object.etag)
    assert await count_rows(db, "calendar_objects") == 0
    await fails(_delete(app, me, cal.id, "a.ics"), 404, "calendar.object_not_found")


async def _delete(app: Any, who: dict[str, Any], cal_id: str, name: str, **kw: Any) -> None:
    async with app.state.runtime.db.sessions() as s:
        await schedule.delete_object(s, account_id=aid(who), calendar_id=cal_id, name=name, **kw)


BAD = {
    "not ical": "hello",
    "two uids": event().replace(
        "END:VCALENDAR",
        "BEGIN:VEVENT\r\nUID:other\r\nDTSTART:20261207T080000Z\r\nEND:VEVENT\r\nEND:VCALENDAR",
    ),
    "mixed kinds": event().replace(
        "END:VCALENDAR", "BEGIN:VTODO\r\nUID:e1@kares\r\nEND:VTODO\r\nEND:VCALENDAR"
    ),
    "method": event().replace("PRODID", "METHOD:REQUEST\r\nPRODID"),
    "no dtstart": event().replace("DTSTART;TZID=Europe/Berlin:20261207T080000\r\n", ""),
    "no uid": event().replace("UID:e1@kares\r\n", ""),
}


@pytest.mark.parametrize("what", sorted(BAD))
async def test_bad_objects_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any, what: str
) -> None:
    me = await person(client, sms, OWNER)
    cal = await mine(app, me)
    before = await snapshot(db)
    with pytest.raises(Problem) as e:
        await put(app, me, cal.id, "a.ics", BAD[what])
    assert e.value.status == 400, e.value.detail
    assert await snapshot(db) == before


async def test_a_journal_and_a_huge_object_are_refused(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await person(client, sms, OWNER)
    cal = await mine(app, me)
    journal = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
        "BEGIN:VJOURNAL\r\nUID:j\r\nEND:VJOURNAL\r\nEND:VCALENDAR\r\n"
    )
    await fails(put(app, me, cal.id, "j.ics", journal), 400, "calendar.unsupported_component")
    huge = event(extra="DESCRIPTION:" + "x" * 600_000 + "\r\n")
    await fails(put(app, me, cal.id, "h.ics", huge), 413, "calendar.too_large")
    await fails(put(app, me, cal.id, "a/b.ics", event()), 400, "calendar.invalid_name")


async def test_changes_since_a_token_and_an_expired_token(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await person(client, sms, OWNER)
    cal = await mine(app, me)
    for i in range(3):
        await put(app, me, cal.id, f"{i}.ics", event(uid=f"u{i}"))
    async with app.state.runtime.db.sessions() as s:
        c = await s.get(Calendar, cal.id)
        assert c is not None
        first = await schedule.changes_since(s, c, None)
    assert first.changed == ["0.ics", "1.ics", "2.ics"] and first.deleted == []
    await put(app, me, cal.id, "1.ics", event(uid="u1", summary="changed"))
    await _delete(app, me, cal.id, "2.ics")
    async with app.state.runtime.db.sessions() as s:
        c = await s.get(Calendar, cal.id)
        assert c is not None
        then = await schedule.changes_since(s, c, first.token)
        assert (then.changed, then.deleted) == (["1.ics"], ["2.ics"])
        assert then.token > first.token
        none = await schedule.changes_since(s, c, then.token)
        assert (none.changed, none.deleted) == ([], [])
        await fails(
            schedule.changes_since(s, c, then.token + 5), 409, "calendar.sync_token_invalid"
        )
    # after the tombstone's retention, a write prunes it: the old token is refused
    clock.advance((schedule.TOMBSTONE_DAYS + 1) * 86400)
    await put(app, me, cal.id, "3.ics", event(uid="u3"))
    async with app.state.runtime.db.sessions() as s:
        c = await s.get(Calendar, cal.id)
        assert c is not None
        await fails(schedule.changes_since(s, c, first.token), 409, "calendar.sync_token_invalid")
        later = await schedule.changes_since(s, c, then.token)
        assert later.changed == ["3.ics"]


async def test_time_range_listing_expands_recurrences(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await person(client, sms, OWNER)
    cal = await mine(app, me)
    await put(app, me, cal.id, "once.ics", event(uid="once"))
    weekly = event(uid="weekly", extra="RRULE:FREQ=WEEKLY;COUNT=10\r\n")
    await put(app, me, cal.id, "weekly.ics", weekly)
    await put(app, me, cal.id, "forever.ics", event(uid="f", extra="RRULE:FREQ=MONTHLY\r\n"))

    async def names(start: datetime, end: datetime) -> list[str]:
        async with app.state.runtime.db.sessions() as s:
            objs = await schedule.list_objects(
                s, account_id=aid(me), calendar_id=cal.id, start=start, end=end
            )
            return [o.name for o in objs]

    d = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # 08:00 Berlin
    assert await names(d, d + timedelta(hours=1)) == ["forever.ics", "once.ics", "weekly.ics"]
    # a week later only the weekly one; two years on only the one that never ends
    assert await names(d + timedelta(days=7), d + timedelta(days=7, hours=1)) == ["weekly.ics"]
    assert await names(d + timedelta(days=700), d + timedelta(days=760)) == ["forever.ics"]
    # between occurrences: none
    assert await names(d + timedelta(days=1), d + timedelta(days=2)) == []


async def test_who_may_read_and_write(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    member = await person(client, sms, MEMBER, "Wang Lei")
    stranger = await person(client, sms, STRANGER, "Zhao")
    fid = await new_family(client, owner)
    await join(client, owner, fid, member)
    r = await add(client, owner, fid, name="Grandpa", age_bracket="adult")
    assert r.status_code == 201, r.text
    dep = r.json()["member"]["account_id"]
    async with app.state.runtime.db.sessions() as s:
        seen = {x.calendar.id: x for x in await schedule.calendars_for(s, aid(owner))}
    by_owner = {
        (x.calendar.kind, x.calendar.account_id or x.calendar.family_id): x for x in seen.values()
    }
    fam_cal = by_owner[("family", fid)]
    dep_cal = by_owner[("personal", dep)]
    own_cal = by_owner[("personal", aid(owner))]
    assert (fam_cal.access, dep_cal.access, own_cal.access) == ("write", "write", "write")
    async with app.state.runtime.db.sessions() as s:
        assert await schedule.access(s, aid(member), fam_cal.calendar.id) == "write"
        # a plain member does not manage the dependant, nor see the owner's own
        await fails(schedule.access(s, aid(member), dep_cal.calendar.id), 404, "calendar.not_found")
        await fails(schedule.access(s, aid(member), own_cal.calendar.id), 404, "calendar.not_found")
        await fails(
            schedule.access(s, aid(stranger), fam_cal.calendar.id), 404, "calendar.not_found"
        )
        await fails(schedule.access(s, aid(owner), "f" * 32), 404, "calendar.not_found")
    # the guardian writes the dependant's schedule
    await put(app, owner, dep_cal.calendar.id, "m.ics", event(uid="med"))
    # made a guardian, the member manages the dependant too
    r = await set_role(client, owner, fid, member, "guardian")
    assert r.status_code == 200, r.text
    async with app.state.runtime.db.sessions() as s:
        assert await schedule.access(s, aid(member), dep_cal.calendar.id) == "write"
    # the dependant (a managed profile, acting through the service) reads the
    # family calendar but may not write it; its own calendar is its own
    dep_who = {"account": {"id": dep}}
    async with app.state.runtime.db.sessions() as s:
        assert await schedule.access(s, dep, fam_cal.calendar.id) == "read"
        assert await schedule.access(s, dep, dep_cal.calendar.id) == "write"
    await fails(
        put(app, dep_who, fam_cal.calendar.id, "x.ics", event(uid="x")), 403, "calendar.read_only"
    )
    # a guardian demoted to member no longer manages the dependant
    r = await set_role(client, owner, fid, member, "member")
    assert r.status_code == 200, r.text
    async with app.state.runtime.db.sessions() as s:
        await fails(schedule.access(s, aid(member), dep_cal.calendar.id), 404, "calendar.not_found")


async def test_the_change_hook_sees_every_write_and_can_refuse_one(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await person(client, sms, OWNER)
    cal = await mine(app, me)
    seen: list[tuple[str, str | None]] = []

    async def hook(s: Any, c: Calendar, name: str, obj: Any) -> None:
        seen.append((name, None if obj is None else obj.etag))
        if name == "refused.ics":
            raise Problem(409, "test.refused", "refused by a hook")

    schedule.on_object_change(hook)
    try:
        w = await put(app, me, cal.id, "a.ics", event())
        await _delete(app, me, cal.id, "a.ics")
        assert seen == [("a.ics", w.object.etag), ("a.ics", None)]
        before = await snapshot(db)
        await fails(put(app, me, cal.id, "refused.ics", event(uid="r")), 409, "test.refused")
        assert await snapshot(db) == before  # the hook's refusal rolled the write back
    finally:
        schedule._object_hooks.remove(hook)
