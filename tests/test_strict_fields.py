"""A request field takes what its JSON Schema says and nothing more: a date or a
time only from an ISO 8601 string, a bool only from true/false, an integer from
a JSON integer (25 or 25.0, never true, 25.5 or "25"). pydantic's lax mode would
read 0 as 1970-01-01 or false and 1 as true; each such body gets 422
request.invalid and changes nothing stored (kares.fields)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from kares import clock
from tests.conftest import PHONE, REGISTRATION, count_rows, snapshot
from tests.test_families import FAMILIES, h, new_family, person, problem

OWNER = "+8613700009001"
NOT_A_DATE = (0, 20150601, "0", "1433116800", "2015-06-01T00:00:00", True)
NOT_A_TIME = (0, 1.5, "0", "1733446800", "1e9", True, "2026-12-06T08:00:00")
NOT_A_BOOL = (0, 1, "true", "yes", "false")


async def test_dates_times_and_bools_are_refused_in_any_other_form(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms, OWNER)
    fid = await new_family(client, me)
    before = await snapshot(db)
    sent: list[tuple[str, str, dict[str, Any]]] = []
    for v in NOT_A_DATE:
        sent.append(("PATCH", "/api/v1/me", {"birth_date": v}))
        sent.append(("POST", f"{FAMILIES}/{fid}/dependants", {"name": "Ming", "birth_date": v}))
    for v in NOT_A_TIME:
        fix = {"t": v, "lat": 31.2304, "lon": 121.4737, "accuracy_m": 8}
        sent.append(("POST", "/api/v1/location/fixes", {"fixes": [fix]}))
        if v != NOT_A_TIME[-1]:  # a time without its zone: sharing.invalid_pause (own test)
            sent.append(("PUT", f"{FAMILIES}/{fid}/members/me/sharing", {"paused_until": v}))
    for v in NOT_A_BOOL:
        sent.append(
            ("PUT", f"/api/v1/devices/{me['device_id']}/status", {"battery": 50, "charging": v})
        )
        sent.append(("PUT", f"{FAMILIES}/{fid}/members/me/sharing", {"health": v}))
        sent.append(("PUT", f"{FAMILIES}/{fid}/members/me/sharing", {"schedule": v}))
        sent.append(("POST", "/api/v1/invitations/preview", {"text": "K7WQ-M3RD", "scanned": v}))
    for v in (True, 50.5, "50"):
        sent.append(("PUT", f"/api/v1/devices/{me['device_id']}/status", {"battery": v}))
    for method, url, body in sent:
        r = await client.request(method, url, json=body, headers=h(me))
        problem(r, 422, "request.invalid")
    assert await snapshot(db) == before


async def test_registering_with_a_number_for_a_birth_date_makes_no_account(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    r = await client.post("/api/v1/auth/sms/send", json={"phone": PHONE})
    assert r.status_code == 202, r.text
    code = sms.last_code(PHONE)
    reg = {k: v for k, v in REGISTRATION.items() if k != "age_bracket"}
    for v in NOT_A_DATE:
        body = {"phone": PHONE, "code": code, **reg, "birth_date": v}
        problem(await client.post("/api/v1/auth/sms/verify", json=body), 422, "request.invalid")
    assert await count_rows(db, "accounts") == 0


async def test_what_the_schema_calls_valid_is_taken(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """The other side: 50.0 is an integer in JSON Schema and is stored as 50; a
    date and a time with its zone, and true/false, are taken."""
    me = await person(client, sms, OWNER)
    fid = await new_family(client, me)
    status = f"/api/v1/devices/{me['device_id']}/status"
    r = await client.put(status, json={"battery": 50.0, "charging": True}, headers=h(me))
    assert r.status_code == 200, r.text
    assert (r.json()["battery"], r.json()["charging"]) == (50, True)
    r = await client.patch("/api/v1/me", json={"birth_date": "1990-06-01"}, headers=h(me))
    assert r.status_code == 200, r.text
    until = (clock.utcnow() + timedelta(days=1)).isoformat()
    sharing = {"health": False, "schedule": True, "paused_until": until}
    r = await client.put(f"{FAMILIES}/{fid}/members/me/sharing", json=sharing, headers=h(me))
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{FAMILIES}/{fid}/invitations",
        json={"expires_in_days": 3.0, "max_uses": 2.0},
        headers=h(me),
    )
    assert r.status_code == 201, r.text
    assert r.json()["max_uses"] == 2
