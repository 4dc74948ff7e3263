"""CalDAV app passwords (issue 16): made, listed with the sessions, scoped to CalDAV
alone, revoked; discovery and the XML parser's refusals. Over the ASGI app."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx

from kares import clock
from tests.conftest import bearer, count_rows
from tests.test_families import h, person

OWNER = "+8613720000101"
PASSWORDS = "/api/v1/caldav/passwords"
PROPFIND = (
    b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:current-user-principal/></d:prop></d:propfind>"
)


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def propfind(client: httpx.AsyncClient, path: str, auth: dict[str, str]) -> httpx.Response:
    return await client.request("PROPFIND", path, content=PROPFIND, headers={**auth, "Depth": "0"})


async def app_password(client: httpx.AsyncClient, me: dict[str, Any], name: str = "iPhone") -> Any:
    r = await client.post(PASSWORDS, json={"name": name}, headers=h(me))
    assert r.status_code == 201, r.text
    return r.json()


async def test_app_password_works_for_caldav_and_nothing_else(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms, OWNER, "Ann")
    p = await app_password(client, me)
    assert p["setup"]["url"].endswith("/dav/")
    assert p["setup"]["username"] == p["username"] and p["setup"]["password"] == p["password"]
    auth = basic(p["username"], p["password"])

    clock.advance(3600)  # its first use an hour later: seen as its last use
    r = await propfind(client, "/dav/", auth)
    assert r.status_code == 207, r.text
    assert f"/dav/principals/{me['account']['id']}/".encode() in r.content

    # listed with the sessions, by the session it is
    r = await client.get("/api/v1/me/sessions", headers=h(me))
    mine = [x for x in r.json() if x["id"] == p["session_id"]]
    assert mine and mine[0]["kind"] == "caldav" and mine[0]["label"] == "iPhone"

    # scoped: not a bearer token, not Basic anywhere else, not with another user name
    for headers in (bearer(p["password"]), auth):
        for path in ("/api/v1/me", PASSWORDS):
            r = await client.get(path, headers=headers)
            assert r.status_code == 401, (path, r.text)
    r = await client.post("/owntracks", json={"_type": "location"}, headers=auth)
    assert r.status_code == 401
    r = await propfind(client, "/dav/", basic("someone-else", p["password"]))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    # and a person's own bearer token is not what CalDAV takes
    r = await propfind(client, "/dav/", basic(p["username"], me["token"]))
    assert r.status_code == 401
    r = await propfind(client, "/dav/", h(me))
    assert r.status_code == 401

    r = await client.get(PASSWORDS, headers=h(me))
    listed = r.json()
    assert [x["id"] for x in listed] == [p["id"]]
    assert "password" not in listed[0] and listed[0]["last_used_at"] is not None
    assert await count_rows(db, "caldav_app_passwords") == 1


async def test_revoked_here_or_as_a_session_it_stops_at_once(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await person(client, sms, OWNER, "Ann")
    one, two, three = [await app_password(client, me, n) for n in ("a", "b", "c")]
    for p in (one, two, three):
        assert (
            await propfind(client, "/dav/", basic(p["username"], p["password"]))
        ).status_code == 207

    r = await client.delete(f"{PASSWORDS}/{one['id']}", headers=h(me))
    assert r.status_code == 204
    r = await client.delete(f"/api/v1/me/sessions/{two['session_id']}", headers=h(me))
    assert r.status_code == 204
    for p in (one, two):
        r = await propfind(client, "/dav/", basic(p["username"], p["password"]))
        assert r.status_code == 401
    assert (
        await propfind(client, "/dav/", basic(three["username"], three["password"]))
    ).status_code == 207
    r = await client.get(PASSWORDS, headers=h(me))
    assert {x["id"]: x["revoked"] for x in r.json()} == {
        one["id"]: True,
        two["id"]: True,
        three["id"]: False,
    }
    # signing out everywhere ends it too
    r = await client.delete("/api/v1/me/sessions", headers=h(me))
    assert r.status_code in (200, 204), r.text
    r = await propfind(client, "/dav/", basic(three["username"], three["password"]))
    assert r.status_code == 401
    # someone else's id, or none
    r = await client.delete(
        f"{PASSWORDS}/{'0' * 32}", headers=h(await person(client, sms, "+8613720000102"))
    )
    assert r.status_code == 404


async def test_discovery_and_options(client: httpx.AsyncClient) -> None:
    r = await client.request("PROPFIND", "/.well-known/caldav")
    assert r.status_code == 301 and r.headers["location"] == "/dav/"
    r = await client.get("/.well-known/caldav")
    assert r.status_code == 301
    r = await client.options("/dav/")
    assert r.status_code == 200
    assert "calendar-access" in r.headers["dav"] and "1" in r.headers["dav"]
    assert "REPORT" in r.headers["allow"]
    r = await client.request("PROPFIND", "/dav/")
    assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]


async def test_xml_is_parsed_safely(client: httpx.AsyncClient, sms: Any) -> None:
    me = await person(client, sms, OWNER, "Ann")
    p = await app_password(client, me)
    auth = {**basic(p["username"], p["password"]), "Depth": "0"}
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<d:propfind xmlns:d="DAV:"><d:prop><d:displayname>&b;</d:displayname>'
        b"</d:prop></d:propfind>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<d:propfind xmlns:d="DAV:"><d:prop><d:displayname>&x;</d:displayname>'
        b"</d:prop></d:propfind>"
    )
    for body in (bomb, external, b"<d:propfind xmlns:d='DAV:'><d:prop>", b"not xml"):
        r = await client.request("PROPFIND", "/dav/", content=body, headers=auth)
        assert r.status_code == 400, r.text
        assert b"root:" not in r.content
        assert r.headers["content-type"].startswith("application/xml")


async def test_odd_requests_get_a_4xx_never_a_5xx(client: httpx.AsyncClient, sms: Any) -> None:
    me = await person(client, sms, OWNER, "Ann")
    p = await app_password(client, me)
    auth = basic(p["username"], p["password"])
    home = f"/dav/calendars/{me['account']['id']}/"
    r = await client.request("PROPFIND", home, headers={**auth, "Depth": "1"})
    assert r.status_code == 207
    cal = re.findall(re.escape(home) + r"[0-9a-f]{32}/", r.text)[0]  # the first calendar
    r = await client.request("PROPFIND", cal, headers={**auth, "Depth": "0"})
    assert r.status_code == 207 and "<c:calendar/>" in r.text
    odd = [
        ("PROPFIND", f"/dav/calendars/{'0' * 32}/", b""),  # someone else's home
        ("PROPFIND", "/dav/principals/nobody/", b""),
        (
            "REPORT",
            cal,
            b'<d:sync-collection xmlns:d="DAV:"><d:sync-level>9</d:sync-level></d:sync-collection>',
        ),
        ("REPORT", cal, b'<x:unknown xmlns:x="urn:x"/>'),
        ("REPORT", cal, b""),
        (
            "REPORT",
            cal,
            b'<c:calendar-query xmlns:c="urn:ietf:params:xml:ns:caldav"><c:filter>'
            b'<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            b'<c:time-range start="yesterday"/></c:comp-filter></c:comp-filter></c:filter>'
            b"</c:calendar-query>",
        ),
        ("REPORT", cal, b'<c:free-busy-query xmlns:c="urn:ietf:params:xml:ns:caldav"/>'),
        (
            "PROPPATCH",
            cal,
            b'<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>'
            b"</d:displayname></d:prop></d:set></d:propertyupdate>",
        ),
        ("PROPPATCH", cal, b"<nope/>"),
        ("PUT", cal + "x.ics", b"\xff\xfe not utf-8"),
        (
            "PUT",
            cal + "x.ics",
            b"BEGIN:VCALENDAR\r\nBEGIN:VJOURNAL\r\nUID:j\r\nEND:VJOURNAL\r\nEND:VCALENDAR\r\n",
        ),
        ("GET", cal + "missing.ics", b""),
        ("DELETE", cal + "missing.ics", b""),
        ("DELETE", cal, b""),  # a default calendar stays
        ("MOVE", cal, b""),
        ("PROPFIND", cal + "a/b/c", b""),
        ("GET", "/dav/feeds/nothing.ics", b""),
    ]
    for method, path, body in odd:
        r = await client.request(method, path, content=body, headers=auth)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/xml"), (method, path)
        assert b"<k:message" in r.content or b"message" in r.content
