"""Per-member sharing choices, per family, enforced by the guard for every read
of another person's data: location live / history / off, health summaries,
schedule, and a pause with an end time during which nothing is shared.

Reads of another person's location, health and schedule come with later
steps; here probe routes declare them exactly as those routes will
(``guard("driving_tracks", "view", about="account_id")``), in an app that
is otherwise the real one, so the families domain's registered check runs
end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from kares import clock
from kares.app import create_app
from kares.families import service as families
from kares.privacy.guard import guard
from tests.conftest import POLICY_VERSION, snapshot
from tests.test_families import (
    FAMILIES,
    MEMBER,
    OTHER,
    OWNER,
    STRANGER,
    aid,
    family,
    h,
    join,
    new_family,
    person,
    problem,
)

PROBES = {
    "location": ("driving_tracks", "view"),
    "health": ("health", "readings"),
    "schedule": ("schedule", "events"),
    "chat": ("messaging", "chat"),
}


@pytest.fixture
async def client(app: Any, settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus one read route per function about another person.
    (`app` is here for its teardown: it wipes the database this test writes to.)"""
    application = create_app(settings, migrate_embedded=False)
    probe = APIRouter()

    async def read(account_id: str) -> dict[str, str]:
        return {"about": account_id}

    for name, (function, feature) in PROBES.items():
        probe.add_api_route(
            f"/api/v1/probe/{name}/{{account_id}}",
            read,
            methods=["GET"],
            dependencies=[guard(function, feature, about="account_id")],
        )
    application.include_router(probe)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40003))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            yield c


async def sees(client: httpx.AsyncClient, me: dict[str, Any], who: dict[str, Any]) -> set[str]:
    """Which of the probes ``me`` may read about ``who``."""
    out = set()
    for name in PROBES:
        r = await client.get(f"/api/v1/probe/{name}/{aid(who)}", headers=h(me))
        if r.status_code == 200:
            out.add(name)
        else:
            problem(r, 403, "sharing.off")
    return out


async def share(
    client: httpx.AsyncClient, me: dict[str, Any], fid: str, **body: Any
) -> httpx.Response:
    return await client.put(f"{FAMILIES}/{fid}/members/me/sharing", json=body, headers=h(me))


async def pair(client: httpx.AsyncClient, sms: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Two adults in one family; the first may read health data at all (its own
    separate consent to health data, which the guard asks first)."""
    a = await person(client, sms, OWNER, "Wang Fang")
    b = await person(client, sms, MEMBER, "Wang Lei")
    r = await client.post(
        "/api/v1/me/consents",
        json={
            "subject": "category:health.vitals",
            "action": "grant",
            "policy_version": POLICY_VERSION,
        },
        headers=h(a),
    )
    assert r.status_code == 201, r.text
    fid = await new_family(client, a)
    await join(client, a, fid, b)
    return a, b, fid


# --- my choices ----------------------------------------------------------------------------------


async def test_defaults_and_changing_my_choices(client: httpx.AsyncClient, sms: Any) -> None:
    _, b, fid = await pair(client, sms)
    r = await client.get(f"{FAMILIES}/{fid}/members/me/sharing", headers=h(b))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["family_id"] == fid and body["account_id"] == aid(b)
    c = body["choices"]
    assert (c["location"], c["health"], c["schedule"], c["paused"]) == ("live", False, True, False)
    assert body["effective"] == {
        "location": "live",
        "health": False,
        "schedule": True,
        "health_level": "off",
    }

    r = await share(client, b, fid, location="history")
    assert r.status_code == 200, r.text
    r = await share(client, b, fid, health=True)
    # fields left out keep their value
    c = r.json()["choices"]
    assert (c["location"], c["health"], c["schedule"]) == ("history", True, True)
    assert c["set_by_guardian"] is False
    r = await share(client, b, fid, location="off", schedule=False)
    assert r.json()["effective"] == {
        "location": "off",
        "health": True,
        "schedule": False,
        "health_level": "summaries",
    }
    assert (await share(client, b, fid)).json()["effective"]["location"] == "off"


async def test_bad_choices_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    _, b, fid = await pair(client, sms)
    now = clock.utcnow()
    before = await snapshot(db)
    for body, code in (
        ({"location": "sometimes"}, "request.invalid"),
        ({"location": None}, "request.invalid"),
        ({"health": "maybe"}, "request.invalid"),
        ({"schedule": None}, "request.invalid"),
        ({"visible": True}, "request.invalid"),
        ({"paused_until": "tomorrow"}, "request.invalid"),
        ({"paused_until": (now + timedelta(hours=1)).replace(tzinfo=None).isoformat()}, None),
        ({"paused_until": (now - timedelta(minutes=1)).isoformat()}, None),
        ({"paused_until": (now + timedelta(days=7, minutes=5)).isoformat()}, None),
        ({"location": "off", "paused_until": (now + timedelta(days=30)).isoformat()}, None),
    ):
        r = await share(client, b, fid, **body)
        problem(r, 422, code or "sharing.invalid_pause")
    assert await snapshot(db) == before
    r = await share(client, b, fid, paused_until=(now + timedelta(days=7)).isoformat())
    assert r.status_code == 200 and r.json()["choices"]["paused"] is True


async def test_members_choose_only_for_themselves(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    a, b, fid = await pair(client, sms)
    before = await snapshot(db)
    for me, other in ((a, b), (b, a)):
        r = await client.put(
            f"{FAMILIES}/{fid}/members/{aid(other)}/sharing",
            json={"location": "off"},
            headers=h(me),
        )
        problem(r, 403, "family.forbidden")
    assert await snapshot(db) == before


# --- the guard enforces them -------------------------------------------------------------------


async def test_choices_decide_what_another_member_reads(
    client: httpx.AsyncClient, sms: Any
) -> None:
    a, b, fid = await pair(client, sms)
    # defaults: location and schedule, not health
    assert await sees(client, a, b) == {"location", "schedule", "chat"}
    r = await client.get(f"/api/v1/probe/health/{aid(b)}", headers=h(a))
    body = problem(r, 403, "sharing.off")
    assert body["function"] == "health"
    assert body["choices"] == [
        {
            "family_id": fid,
            "location": "live",
            "health": False,
            "health_level": "off",
            "schedule": True,
            "paused_until": None,
        }
    ]

    await share(client, b, fid, health=True, location="off")
    assert await sees(client, a, b) == {"health", "schedule", "chat"}
    await share(client, b, fid, location="history", schedule=False)
    assert await sees(client, a, b) == {"location", "health", "chat"}
    # the member's own data is theirs, whatever they share
    await share(client, b, fid, location="off", schedule=False)
    for name in ("location", "schedule"):
        r = await client.get(f"/api/v1/probe/{name}/{aid(b)}", headers=h(b))
        assert r.status_code == 200, r.text


async def test_no_shared_family_means_not_found(client: httpx.AsyncClient, sms: Any) -> None:
    a, b, fid = await pair(client, sms)
    stranger = await person(client, sms, STRANGER)
    await new_family(client, stranger, "Elsewhere")
    for name in PROBES:
        # (only `a` has the caller's own consent to health data, which the guard asks first)
        pairs = [(a, stranger)] if name == "health" else [(stranger, b), (b, stranger)]
        for me, who in pairs:
            r = await client.get(f"/api/v1/probe/{name}/{aid(who)}", headers=h(me))
            problem(r, 404, "not_found")
        r = await client.get(f"/api/v1/probe/{name}/{'0' * 32}", headers=h(a))
        problem(r, 404, "not_found")
    # and once removed, a former member is a stranger again
    assert (
        await client.delete(f"{FAMILIES}/{fid}/members/{aid(b)}", headers=h(a))
    ).status_code == 204
    problem(await client.get(f"/api/v1/probe/location/{aid(b)}", headers=h(a)), 404, "not_found")
    problem(await client.get(f"/api/v1/probe/location/{aid(a)}", headers=h(b)), 404, "not_found")


async def test_a_pause_shares_nothing_until_it_ends(client: httpx.AsyncClient, sms: Any) -> None:
    a, b, fid = await pair(client, sms)
    await share(client, b, fid, health=True)
    assert await sees(client, a, b) == set(PROBES)
    until = clock.utcnow() + timedelta(hours=2)
    r = await share(client, b, fid, paused_until=until.isoformat())
    assert r.status_code == 200, r.text
    assert r.json()["effective"] == {
        "location": "off",
        "health": False,
        "schedule": False,
        "health_level": "off",
    }
    assert datetime.fromisoformat(r.json()["choices"]["paused_until"]) == until

    assert await sees(client, a, b) == {"chat"}
    body = problem(
        await client.get(f"/api/v1/probe/location/{aid(b)}", headers=h(a)), 403, "sharing.off"
    )
    [choice] = body["choices"]
    assert datetime.fromisoformat(choice["paused_until"]) == until
    # what the others see of the member: paused
    seen = (await client.get(f"{FAMILIES}/{fid}/members/{aid(b)}/sharing", headers=h(a))).json()
    assert seen["choices"]["paused"] is True
    assert seen["effective"] == {
        "location": "off",
        "health": False,
        "schedule": False,
        "health_level": "off",
    }
    [m] = [x for x in (await family(client, a, fid))["members"] if x["account_id"] == aid(b)]
    assert m["sharing"]["paused"] is True

    clock.advance(2 * 3600 - 60)
    assert await sees(client, a, b) == {"chat"}
    clock.advance(61)
    assert await sees(client, a, b) == set(PROBES)
    seen = (await client.get(f"{FAMILIES}/{fid}/members/{aid(b)}/sharing", headers=h(a))).json()
    assert seen["choices"]["paused"] is False and seen["choices"]["paused_until"] is None

    # a pause can also end early
    await share(client, b, fid, paused_until=(clock.utcnow() + timedelta(days=3)).isoformat())
    assert await sees(client, a, b) == {"chat"}
    await share(client, b, fid, paused_until=None)
    assert await sees(client, a, b) == set(PROBES)


async def test_choices_are_per_family(client: httpx.AsyncClient, sms: Any) -> None:
    a, b, close = await pair(client, sms)
    c = await person(client, sms, OTHER, "Li Na")
    wide = await new_family(client, b, "Wide")
    await join(client, b, wide, a)
    await join(client, b, wide, c)
    # b shares location with the close family only
    await share(client, b, wide, location="off")
    assert "location" in await sees(client, a, b)  # a is in both
    body = problem(
        await client.get(f"/api/v1/probe/location/{aid(b)}", headers=h(c)), 403, "sharing.off"
    )
    # c is told only about the family c is in
    assert [x["family_id"] for x in body["choices"]] == [wide]
    assert close not in str(body)
    await share(client, b, close, location="off")
    assert "location" not in await sees(client, a, b)


@pytest.mark.db_agnostic
def test_which_choice_each_function_needs() -> None:
    assert families._needs("driving_tracks", "view") == ("location", "live")
    assert families._needs("driving_tracks", "history") == ("location", "history")
    assert families._needs("health", "readings") == ("health", "on")
    assert families._needs("schedule", None) == ("schedule", "on")
    assert families._needs("family", "circles") is None
    assert families._needs("messaging", "chat") is None
