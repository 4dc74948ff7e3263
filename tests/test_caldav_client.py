"""CalDAV round trips with a real client (issue 16): the ``caldav`` library against
``kares`` served by uvicorn on loopback. Discovery from the server's root, a
calendar made on the phone side (MKCALENDAR), an event created by the client,
edited on the server side (the schedule service, as the JSON API does) and seen
changed by the client, deleted; a stale ETag refused with 412; sync-collection
initial and incremental (a deletion included, a stale token refused); a
time-range query; subscription URLs and ICS import and export."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import caldav
import httpx
import pytest
from caldav.lib.error import NotFoundError

from kares.schedule import service as schedule
from tests.conftest import count_rows
from tests.test_caldav_passwords import app_password
from tests.test_families import h, person
from tests.test_matrix import serving

OWNER = "+8613720000201"
OTHER = "+8613720000202"


def event(uid: str, summary: str, start: str = "20261210T090000Z") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261201T000000Z\r\n"
        f"DTSTART:{start}\r\nDURATION:PT1H\r\nSUMMARY:{summary}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def dav_client(url: str, p: dict[str, Any]) -> caldav.DAVClient:
    return caldav.DAVClient(
        url=url + "/", username=p["username"], password=p["password"], require_tls=False
    )


def basic(p: dict[str, Any]) -> dict[str, str]:
    raw = base64.b64encode(f"{p['username']}:{p['password']}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
async def url(app: Any) -> Any:
    async with serving(app) as u:
        yield u


async def test_round_trips_with_a_real_client(
    client: httpx.AsyncClient, sms: Any, app: Any, url: str
) -> None:
    me = await person(client, sms, OWNER, "Ann")
    p = await app_password(client, me)

    def discover() -> tuple[list[str], str]:
        with dav_client(url, p) as dav:
            principal = dav.principal()
            cals = principal.calendars()
            made = principal.make_calendar(name="Phone made", cal_id="phone-made")
            return [c.get_display_name() for c in cals], str(made.url)

    names, made_url = await asyncio.to_thread(discover)
    assert "Personal" in names  # the default calendar, made on first use
    assert made_url.endswith("/phone-made/")

    def create() -> tuple[str, str]:
        with dav_client(url, p) as dav:
            cal = dav.calendar(url=made_url)
            ev = cal.save_event(event("lunch-1", "Lunch"))
            ev.load()
            return str(ev.url), str(ev.props.get("{DAV:}getetag") or "")

    ev_url, _ = await asyncio.to_thread(create)
    # the server sees the phone's event, verbatim
    rt = app.state.runtime
    async with rt.db.sessions() as s:
        seen = await schedule.calendars_for(s, me["account"]["id"])
        cal_row = next(x.calendar for x in seen if x.calendar.name == "Phone made")
        objs = await schedule.objects_of(s, cal_row)
        assert [o.uid for o in objs] == ["lunch-1"]
        assert b"SUMMARY:Lunch" in objs[0].data
        name = objs[0].name
        old_etag = objs[0].etag
        # edited on the server side
        await schedule.put_object(
            s,
            account_id=me["account"]["id"],
            calendar_id=cal_row.id,
            name=name,
            ical_text=event("lunch-1", "Lunch with Grandma"),
        )

    def read_back() -> str:
        with dav_client(url, p) as dav:
            ev = dav.calendar(url=made_url).event_by_uid("lunch-1")
            return str(ev.icalendar_component["SUMMARY"])

    assert await asyncio.to_thread(read_back) == "Lunch with Grandma"

    # a stale ETag: 412, nothing changed
    async with httpx.AsyncClient(base_url=url) as raw:
        r = await raw.put(
            ev_url,
            content=event("lunch-1", "Stale edit").encode(),
            headers={**basic(p), "If-Match": f'"{old_etag}"', "Content-Type": "text/calendar"},
        )
        assert r.status_code == 412, r.text
        r = await raw.put(
            ev_url,
            content=event("lunch-1", "Again").encode(),
            headers={**basic(p), "If-None-Match": "*", "Content-Type": "text/calendar"},
        )
        assert r.status_code == 412, r.text
        r = await raw.get(ev_url, headers=basic(p))
        assert b"Lunch with Grandma" in r.content
        etag = r.headers["etag"]
        r = await raw.put(
            ev_url,
            content=event("lunch-1", "Fresh edit").encode(),
            headers={**basic(p), "If-Match": etag, "Content-Type": "text/calendar"},
        )
        assert r.status_code == 204, r.text
        assert r.headers["etag"] != etag
        # not iCalendar: refused with the CalDAV precondition
        r = await raw.put(
            made_url + "bad.ics",
            content=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            headers={**basic(p), "Content-Type": "text/calendar"},
        )
        assert r.status_code == 403 and b"valid-calendar-data" in r.content

    def delete() -> None:
        with dav_client(url, p) as dav:
            dav.calendar(url=made_url).event_by_uid("lunch-1").delete()

    await asyncio.to_thread(delete)
    async with rt.db.sessions() as s:
        assert await schedule.objects_of(s, cal_row) == []

    def gone() -> bool:
        with dav_client(url, p) as dav:
            try:
                dav.calendar(url=made_url).event_by_uid("lunch-1")
            except NotFoundError:
                return True
            return False

    assert await asyncio.to_thread(gone)


async def test_sync_collection_and_time_range(
    client: httpx.AsyncClient, sms: Any, url: str
) -> None:
    me = await person(client, sms, OWNER, "Ann")
    p = await app_password(client, me)

    def phase1() -> tuple[str, Any, int]:
        with dav_client(url, p) as dav:
            cal = dav.principal().make_calendar(name="Sync", cal_id="sync-cal")
            for i in range(3):
                cal.save_event(event(f"e{i}", f"Event {i}", f"202612{10 + i}T090000Z"))
            objs = cal.objects_by_sync_token(load_objects=False)
            return str(cal.url), objs.sync_token, len(list(objs))

    cal_url, token, n = await asyncio.to_thread(phase1)
    assert n == 3

    def phase2() -> tuple[set[str], Any, int, list[str]]:
        with dav_client(url, p) as dav:
            cal = dav.calendar(url=cal_url)
            cal.save_event(event("e3", "Event 3", "20261220T090000Z"))
            cal.event_by_uid("e0").delete()
            changed = cal.objects_by_sync_token(sync_token=token, load_objects=True)
            uids = {str(o.icalendar_component["UID"]) for o in changed if o.data}
            found = cal.search(
                start=datetime(2026, 12, 11, tzinfo=UTC),
                end=datetime(2026, 12, 13, tzinfo=UTC),
                event=True,
            )
            return (
                uids,
                changed.sync_token,
                len(list(changed)),
                sorted(str(e.icalendar_component["UID"]) for e in found),
            )

    uids, token2, n2, in_range = await asyncio.to_thread(phase2)
    assert uids == {"e3"}  # and e0's deletion (no data)
    assert n2 == 2
    assert token2 != token
    assert in_range == ["e1", "e2"]

    sync = (
        '<d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token>'
        "<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
    )
    async with httpx.AsyncClient(base_url=url) as raw:
        r = await raw.request("REPORT", cal_url, content=sync.format(token2), headers=basic(p))
        assert r.status_code == 207 and r.content.count(b"<d:response>") == 0
        for stale in ("urn:kares:sync:nope:1", token2 + "9999", "garbage"):
            r = await raw.request("REPORT", cal_url, content=sync.format(stale), headers=basic(p))
            assert r.status_code == 403, r.text
            assert b"valid-sync-token" in r.content


async def test_subscription_import_and_export(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    me = await person(client, sms, OWNER, "Ann")
    other = await person(client, sms, OTHER, "Bo")
    async with app.state.runtime.db.sessions() as s:
        cal_id = (await schedule.personal_calendar(s, me["account"]["id"])).id
        await s.commit()
    base = f"/api/v1/calendars/{cal_id}"

    many = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        + "".join(
            f"BEGIN:VEVENT\r\nUID:imp-{i}\r\nDTSTAMP:20261201T000000Z\r\n"
            f"DTSTART:2026121{i}T090000Z\r\nSUMMARY:Imported {i}\r\nEND:VEVENT\r\n"
            for i in range(5)
        )
        + "END:VCALENDAR\r\n"
    )
    headers = {**h(me), "Content-Type": "text/calendar"}
    r = await client.post(f"{base}/import", content=many.encode(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 5, "updated": 0}
    # a bad event in the file: a clear refusal, nothing changed
    before = await count_rows(db, "calendar_objects")
    bad = many.replace("DTSTART:20261213T090000Z\r\n", "").replace("imp-", "new-")
    r = await client.post(f"{base}/import", content=bad.encode(), headers=headers)
    assert r.status_code == 400, r.text
    assert "new-3" in r.json()["detail"]
    assert await count_rows(db, "calendar_objects") == before
    r = await client.post(f"{base}/import", content=b"not a calendar", headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "calendar.invalid_file"
    # someone else's calendar: not found, as any other
    r = await client.post(
        f"{base}/import",
        content=many.encode(),
        headers={**h(other), "Content-Type": "text/calendar"},
    )
    assert r.status_code == 404

    r = await client.get(f"{base}/export.ics", headers=h(me))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    assert r.text.count("BEGIN:VEVENT") == 5

    r = await client.post(f"{base}/subscriptions", json={"name": "Work laptop"}, headers=h(me))
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["webcal"].startswith("webcal://")
    path = "/" + sub["url"].split("/", 3)[3]
    r = await client.get(path)  # no sign-in: the URL is the secret
    assert r.status_code == 200 and r.text.count("BEGIN:VEVENT") == 5
    rows = await count_rows(db, "calendar_subscriptions")
    assert rows == 1
    r = await client.get(path.replace(path[-10:-4], "AAAAAA"))
    assert r.status_code == 404
    r = await client.get(f"{base}/subscriptions", headers=h(me))
    assert [x["id"] for x in r.json()] == [sub["id"]] and "url" not in r.json()[0]
    r = await client.get(f"{base}/subscriptions", headers=h(other))
    assert r.status_code == 404
    r = await client.delete(f"{base}/subscriptions/{sub['id']}", headers=h(other))
    assert r.status_code == 404
    r = await client.delete(f"{base}/subscriptions/{sub['id']}", headers=h(me))
    assert r.status_code == 204
    r = await client.get(path)
    assert r.status_code == 404


async def test_properties_proppatch_query_and_freebusy(client: httpx.AsyncClient, sms: Any) -> None:
    me = await person(client, sms, OWNER, "Ann")
    p = await app_password(client, me)
    auth = basic(p)
    home = f"/dav/calendars/{me['account']['id']}/"
    mk = (
        b'<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>'
        b"<d:displayname>Clinic</d:displayname></d:prop></d:set></c:mkcalendar>"
    )
    r = await client.request("MKCALENDAR", home + "clinic/", content=mk, headers=auth)
    assert r.status_code == 201, r.text
    cal = home + "clinic/"
    r = await client.request("MKCALENDAR", cal, content=mk, headers=auth)
    assert r.status_code == 405  # something is there already
    for uid, start, summary in (
        ("a", "20261210T090000Z", "Doctor Wu"),
        ("b", "20261211T090000Z", "dentist"),
    ):
        r = await client.put(
            f"{cal}{uid}.ics",
            content=event(uid, summary, start).encode(),
            headers={**auth, "Content-Type": "text/calendar"},
        )
        assert r.status_code == 201, r.text

    patch = (
        b'<d:propertyupdate xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/"><d:set><d:prop>'
        b"<d:displayname>Clinic visits</d:displayname>"
        b"<i:calendar-color>#FF0000FF</i:calendar-color>"
        b"</d:prop></d:set></d:propertyupdate>"
    )
    r = await client.request("PROPPATCH", cal, content=patch, headers=auth)
    assert r.status_code == 207 and b"200 OK" in r.content, r.text
    bad = patch.replace(b"#FF0000FF", b"red")
    r = await client.request("PROPPATCH", cal, content=bad, headers=auth)
    assert r.status_code == 207 and b"403 Forbidden" in r.content

    want = (
        b'<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" '
        b'xmlns:cs="http://calendarserver.org/ns/" xmlns:i="http://apple.com/ns/ical/"><d:prop>'
        b"<d:resourcetype/><d:displayname/><cs:getctag/><d:sync-token/>"
        b"<c:supported-calendar-component-set/><i:calendar-color/>"
        b"<d:current-user-privilege-set/><d:owner/><d:getcontenttype/><d:nosuchprop/>"
        b"</d:prop></d:propfind>"
    )
    r = await client.request("PROPFIND", cal, content=want, headers={**auth, "Depth": "0"})
    assert r.status_code == 207
    body = r.text
    for needle in (
        "Clinic visits",
        "#FF0000FF",
        "getctag>urn:kares:sync:",
        '<c:comp name="VEVENT"/>',
        "<d:write/>",
        "<c:calendar/>",
        "404 Not Found",  # nosuchprop
    ):
        assert needle in body, (needle, body)
    r = await client.request("PROPFIND", cal, headers={**auth, "Depth": "1"})
    assert r.status_code == 207 and r.text.count("<d:response>") == 3
    assert "getetag" in r.text and "getlastmodified" in r.text

    query = (
        '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        '<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR">'
        '<c:comp-filter name="VEVENT"><c:prop-filter name="SUMMARY">'
        '<c:text-match collation="{}">{}</c:text-match></c:prop-filter>'
        "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
    )
    for collation, text, found in (
        ("i;ascii-casemap", "DOCTOR", 1),
        ("i;octet", "DOCTOR", 0),
        ("i;octet", "Doctor", 1),
    ):
        r = await client.request(
            "REPORT", cal, content=query.format(collation, text), headers={**auth, "Depth": "1"}
        )
        assert r.status_code == 207 and r.text.count("<d:response>") == found, r.text

    fb = (
        b'<c:free-busy-query xmlns:c="urn:ietf:params:xml:ns:caldav">'
        b'<c:time-range start="20261210T000000Z" end="20261211T000000Z"/></c:free-busy-query>'
    )
    r = await client.request("REPORT", cal, content=fb, headers={**auth, "Depth": "1"})
    assert r.status_code == 200 and "BEGIN:VFREEBUSY" in r.text, r.text
    assert ":20261210T090000Z/20261210T100000Z\r\n" in r.text.replace("\r\n ", "")
    assert "20261211T09" not in r.text  # outside the range


async def test_time_range_finds_recurrences_and_expand_lists_them(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await person(client, sms, OWNER, "Ann")
    p = await app_password(client, me)
    auth = basic(p)
    cal = f"/dav/calendars/{me['account']['id']}/pills/"
    r = await client.request("MKCALENDAR", cal, headers=auth)
    assert r.status_code == 201, r.text
    weekly = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        "UID:pills\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:20260105T080000Z\r\n"
        "DURATION:PT15M\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\nSUMMARY:Pills\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    r = await client.put(
        cal + "pills.ics",
        content=weekly.encode(),
        headers={**auth, "Content-Type": "text/calendar"},
    )
    assert r.status_code == 201, r.text
    query = (
        '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>'
        "<c:calendar-data>{expand}</c:calendar-data></d:prop><c:filter>"
        '<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
        '<c:time-range start="{start}" end="{end}"/></c:comp-filter></c:comp-filter>'
        "</c:filter></c:calendar-query>"
    )
    # February holds the 5th to 8th occurrences; after the 10th, nothing
    feb = {"start": "20260201T000000Z", "end": "20260301T000000Z"}
    r = await client.request("REPORT", cal, content=query.format(expand="", **feb), headers=auth)
    assert r.status_code == 207 and r.text.count("<d:response>") == 1
    assert "RRULE:FREQ=WEEKLY;COUNT=10" in r.text  # as stored
    later = {"start": "20260401T000000Z", "end": "20260501T000000Z"}
    r = await client.request("REPORT", cal, content=query.format(expand="", **later), headers=auth)
    assert r.status_code == 207 and r.text.count("<d:response>") == 0
    expand = '<c:expand start="20260201T000000Z" end="20260301T000000Z"/>'
    r = await client.request(
        "REPORT", cal, content=query.format(expand=expand, **feb), headers=auth
    )
    assert r.status_code == 207
    assert r.text.count("BEGIN:VEVENT") == 4 and "RRULE" not in r.text
    assert r.text.count("RECURRENCE-ID") == 4


async def test_a_guardians_phone_names_a_dependants_calendar_by_them(
    client: httpx.AsyncClient, sms: Any, app: Any, url: str
) -> None:
    from tests.support.watch import household

    ctx = await household(client, sms)
    g = ctx["guardians"][0]
    p = await app_password(client, g)

    def names() -> list[str]:
        with dav_client(url, p) as dav:
            return sorted(c.get_display_name() for c in dav.principal().calendars())

    shown = await asyncio.to_thread(names)
    # their own, the dependant's (named by her), the family's: never two "Personal"
    assert "Personal" in shown and "Grandma Li · Personal" in shown
    assert len(shown) == len(set(shown))
    # renamed on the phone as shown: stored without the name in front, shown with it
    rt = app.state.runtime
    async with rt.db.sessions() as s:
        seen = await schedule.calendars_for(s, g["account"]["id"])
    theirs = next(x.calendar for x in seen if x.calendar.account_id == ctx["dep"])
    cal_url = f"{url}/dav/calendars/{g['account']['id']}/{theirs.id}/"
    async with httpx.AsyncClient() as http:
        r = await http.request(
            "PROPPATCH",
            cal_url,
            content=b'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>'
            b"<d:displayname>Grandma Li \xc2\xb7 Medicine</d:displayname>"
            b"</d:prop></d:set></d:propertyupdate>",
            headers={**basic(p), "Content-Type": "application/xml"},
        )
    assert r.status_code == 207, r.text
    async with rt.db.sessions() as s:
        seen = await schedule.calendars_for(s, g["account"]["id"])
    assert next(x.calendar.name for x in seen if x.calendar.id == theirs.id) == "Medicine"
    assert "Grandma Li · Medicine" in await asyncio.to_thread(names)
