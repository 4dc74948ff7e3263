"""The family view of health (issue 15): a member reads another member's latest
values and summaries only when that person (or a dependant's guardian) shares
health with that family at "summaries" or "series", raw series only at
"series"; a non-member gets 404, a member below the level 403
``health.not_shared``; the person's own consents still decide what exists for
the family. What the family sees is what the person sees of themself (the same
reading functions), checked here against the person's own routes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from kares import clock
from kares.families import service as families
from kares.health import service as health_service
from tests.conftest import POLICY_VERSION, snapshot
from tests.test_families import (
    FAMILIES,
    MEMBER,
    OTHER,
    OWNER,
    STRANGER,
    aid,
    h,
    join,
    new_family,
    problem,
    set_role,
)
from tests.test_families import person as plain_person
from tests.test_families_dependants import add
from tests.test_health import base, grant, hr, iso, ok, steps

VIEWS = ("latest", "daily", "weekly", "series")
NEED = {"latest": "summaries", "daily": "summaries", "weekly": "summaries", "series": "series"}


async def person(client: httpx.AsyncClient, sms: Any, phone: str) -> dict[str, Any]:
    """A signed-up adult who gave both separate consents for health."""
    me = await plain_person(client, sms, phone)
    await grant(client, me, "health.vitals", "health.activity")
    return me


async def pair(client: httpx.AsyncClient, sms: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A viewer (the family's owner) and a member with heart rate and steps stored."""
    viewer = await person(client, sms, OWNER)
    subject = await person(client, sms, MEMBER)
    fid = await new_family(client, viewer)
    await join(client, viewer, fid, subject)
    t = base() + timedelta(hours=8)
    await ok(
        client,
        subject,
        [hr(1, t, 64), hr(2, t + timedelta(minutes=20), 80), steps(1, t, 1200)],
    )
    return viewer, subject, fid


def own_url(view: str) -> str:
    tail = {"daily": "summary/daily", "weekly": "summary/weekly"}.get(view, view)
    return f"/api/v1/health/{tail}"


def family_url(fid: str, account_id: str, view: str) -> str:
    tail = {"daily": "summary/daily", "weekly": "summary/weekly"}.get(view, view)
    return f"{FAMILIES}/{fid}/members/{account_id}/health/{tail}"


def params(view: str, metric: str = "heart_rate") -> dict[str, Any]:
    t = base()
    day = t.date().isoformat()
    if view == "daily":
        return {"since": day, "until": (t + timedelta(days=1)).date().isoformat()}
    if view == "weekly":
        return {"since": day, "weeks": 1}
    if view == "series":
        return {"metric": metric, "since": iso(t), "until": iso(t + timedelta(days=1))}
    return {}


async def view(
    client: httpx.AsyncClient, me: dict[str, Any], fid: str, who: str, name: str, **kw: Any
) -> httpx.Response:
    return await client.get(family_url(fid, who, name), params=params(name, **kw), headers=h(me))


async def own(client: httpx.AsyncClient, me: dict[str, Any], name: str, **kw: Any) -> Any:
    r = await client.get(own_url(name), params=params(name, **kw), headers=h(me))
    assert r.status_code == 200, r.text
    return r.json()


async def share(
    client: httpx.AsyncClient, actor: dict[str, Any], fid: str, who: str = "me", **body: Any
) -> dict[str, Any]:
    r = await client.put(f"{FAMILIES}/{fid}/members/{who}/sharing", json=body, headers=h(actor))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def withdraw(client: httpx.AsyncClient, me: dict[str, Any], category: str) -> None:
    r = await client.post(
        "/api/v1/me/consents",
        json={
            "subject": f"category:{category}",
            "action": "withdraw",
            "policy_version": POLICY_VERSION,
        },
        headers=h(me),
    )
    assert r.status_code == 201, r.text


# --- the level (no database) ---------------------------------------------------------------------


@pytest.mark.db_agnostic
def test_series_implies_summaries() -> None:
    allows = families.health_allows
    assert [allows(lv, "summaries") for lv in families.HEALTH_LEVELS] == [False, True, True]
    assert [allows(lv, "series") for lv in families.HEALTH_LEVELS] == [False, False, True]


# --- each level against each view ----------------------------------------------------------------


async def test_each_level_opens_its_views_and_no_more(client: httpx.AsyncClient, sms: Any) -> None:
    viewer, subject, fid = await pair(client, sms)
    sid = aid(subject)
    # what the person sees of themself: the family sees exactly that when shared
    mine = {name: await own(client, subject, name) for name in VIEWS}
    assert [x["metric"] for x in mine["latest"]["latest"]] == ["heart_rate", "steps"]
    assert mine["daily"]["summaries"][0]["heart_rate_max"] == 80
    assert max(mine["series"]["max"]) == 80
    for level in ("off", "summaries", "series"):
        body = await share(client, subject, fid, health_level=level)
        assert body["choices"]["health_level"] == level
        assert body["effective"]["health_level"] == level
        assert body["choices"]["health"] is (level != "off")
        for name in VIEWS:
            r = await view(client, viewer, fid, sid, name)
            if families.health_allows(level, NEED[name]):
                assert r.status_code == 200, (level, name, r.text)
                assert r.json() == mine[name], (level, name)
            else:
                refusal = problem(r, 403, "health.not_shared")
                assert (refusal["level"], refusal["needed"]) == (level, NEED[name])
                assert "does not share" in refusal["detail"]


async def test_reading_ones_own_health_through_a_family_needs_no_sharing(
    client: httpx.AsyncClient, sms: Any
) -> None:
    _, subject, fid = await pair(client, sms)
    for name in VIEWS:
        r = await view(client, subject, fid, aid(subject), name)
        assert r.status_code == 200, r.text
        assert r.json() == await own(client, subject, name)


async def test_bad_queries_are_the_own_routes_refusals(client: httpx.AsyncClient, sms: Any) -> None:
    viewer, subject, fid = await pair(client, sms)
    await share(client, subject, fid, health_level="series")
    r = await view(client, viewer, fid, aid(subject), "series", metric="pulse")
    problem(r, 422, "health.unknown_metric")
    r = await client.get(
        family_url(fid, aid(subject), "daily"),
        params={"since": "2026-12-05", "until": "2026-12-01"},
        headers=h(viewer),
    )
    problem(r, 422, "health.bad_range")


# --- who is refused, and how ---------------------------------------------------------------------


async def test_non_members_get_404_and_members_a_refusal(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    viewer, subject, fid = await pair(client, sms)
    stranger = await person(client, sms, STRANGER)
    outsider = await person(client, sms, OTHER)  # in no family with anyone
    before = await snapshot(db)
    for name in VIEWS:
        # not a member: the family does not exist for them, shared or not
        problem(await view(client, stranger, fid, aid(subject), name), 404, "family.not_found")
        # a member asking about someone outside the family: no such member
        r = await view(client, viewer, fid, aid(outsider), name)
        problem(r, 404, "family.member_not_found")
        problem(await view(client, viewer, fid, "nobody", name), 404, "family.member_not_found")
        problem(await view(client, viewer, "0" * 32, aid(subject), name), 404, "family.not_found")
        # a member, and the person shares nothing: a refusal that says so
        problem(await view(client, viewer, fid, aid(subject), name), 403, "health.not_shared")
    assert await snapshot(db) == before
    await share(client, subject, fid, health_level="series")
    before = await snapshot(db)
    for name in VIEWS:
        problem(await view(client, stranger, fid, aid(subject), name), 404, "family.not_found")
    r = await client.get(family_url(fid, aid(subject), "latest"))
    assert r.status_code == 401, r.text
    assert await snapshot(db) == before


async def test_sharing_with_another_family_opens_nothing_here(
    client: httpx.AsyncClient, sms: Any
) -> None:
    """The level is per family: sharing with family B is not sharing with A."""
    viewer, subject, fid = await pair(client, sms)
    other_fid = await new_family(client, subject, "Lis")
    await join(client, subject, other_fid, viewer)
    await share(client, subject, other_fid, health_level="series")
    problem(await view(client, viewer, fid, aid(subject), "latest"), 403, "health.not_shared")
    r = await view(client, viewer, other_fid, aid(subject), "series")
    assert r.status_code == 200, r.text


# --- the level through the sharing API -----------------------------------------------------------


async def test_the_health_flag_and_the_level_agree(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    _, subject, fid = await pair(client, sms)
    body = await share(client, subject, fid)
    assert (body["choices"]["health"], body["choices"]["health_level"]) == (False, "off")
    # the flag as before: true shares summaries
    body = await share(client, subject, fid, health=True)
    assert body["choices"]["health_level"] == "summaries"
    body = await share(client, subject, fid, health_level="series")
    assert body["choices"]["health"] is True
    # true again (a client that knows only the flag) keeps the series
    body = await share(client, subject, fid, health=True)
    assert body["choices"]["health_level"] == "series"
    # both given alike
    body = await share(client, subject, fid, health=True, health_level="summaries")
    assert body["choices"]["health_level"] == "summaries"
    body = await share(client, subject, fid, health_level="series")
    # false shares nothing, series included
    body = await share(client, subject, fid, health=False)
    assert (body["choices"]["health"], body["choices"]["health_level"]) == (False, "off")
    await share(client, subject, fid, health_level="series")
    before = await snapshot(db)
    url = f"{FAMILIES}/{fid}/members/me/sharing"
    for bad, code in (
        ({"health": False, "health_level": "series"}, "sharing.invalid"),
        ({"health": True, "health_level": "off"}, "sharing.invalid"),
        ({"health_level": "raw"}, "request.invalid"),
        ({"health_level": None}, "request.invalid"),
    ):
        problem(await client.put(url, json=bad, headers=h(subject)), 422, code)
    assert await snapshot(db) == before


async def test_a_guardian_sets_a_dependants_level(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER)
    guardian = await person(client, sms, MEMBER)
    member = await person(client, sms, OTHER)
    fid = await new_family(client, owner)
    await join(client, owner, fid, guardian)
    await join(client, owner, fid, member)
    assert (await set_role(client, owner, fid, guardian, "guardian")).status_code == 200
    r = await add(client, guardian, fid, name="Grandma", age_bracket="adult")
    assert r.status_code == 201, r.text
    dep = r.json()["member"]["account_id"]
    for cat in ("health.vitals", "health.activity"):
        r = await client.post(
            f"/api/v1/guardian/wards/{dep}/consents",
            json={
                "subject": f"category:{cat}",
                "action": "grant",
                "policy_version": POLICY_VERSION,
            },
            headers=h(guardian),
        )
        assert r.status_code == 201, r.text
    # the wearer's watch readings (as the watch's session stores them)
    t = base() + timedelta(hours=8)
    async with db.sessions() as s:
        out = await health_service.upload(
            s,
            account_id=dep,
            samples=[
                health_service.SampleIn(
                    metric="heart_rate",
                    start=t,
                    end=None,
                    value=71,
                    values=None,
                    unit="/min",
                    stage=None,
                    source="Watch",
                    record_id="w-1",
                )
            ],
            now=clock.utcnow(),
        )
    assert [o.status for o in out] == ["stored"]

    problem(await view(client, member, fid, dep, "latest"), 403, "health.not_shared")
    # a member cannot choose for the dependant; its guardian can
    before = await snapshot(db)
    r = await client.put(
        f"{FAMILIES}/{fid}/members/{dep}/sharing",
        json={"health_level": "series"},
        headers=h(member),
    )
    problem(r, 403, "family.forbidden")
    assert await snapshot(db) == before
    body = await share(client, guardian, fid, dep, health_level="summaries")
    assert body["choices"]["set_by_guardian"] is True
    r = await view(client, member, fid, dep, "latest")
    assert r.status_code == 200, r.text
    assert [(x["metric"], x["value"]) for x in r.json()["latest"]] == [("heart_rate", 71)]
    problem(await view(client, member, fid, dep, "series"), 403, "health.not_shared")
    await share(client, owner, fid, dep, health_level="series")
    r = await view(client, member, fid, dep, "series")
    assert r.status_code == 200, r.text
    assert r.json()["max"] == [71]


# --- changes take effect at the next request -----------------------------------------------------


async def test_a_level_change_or_a_pause_takes_effect_at_the_next_request(
    client: httpx.AsyncClient, sms: Any
) -> None:
    viewer, subject, fid = await pair(client, sms)
    sid = aid(subject)
    await share(client, subject, fid, health_level="series")
    assert (await view(client, viewer, fid, sid, "series")).status_code == 200
    await share(client, subject, fid, health_level="summaries")
    problem(await view(client, viewer, fid, sid, "series"), 403, "health.not_shared")
    assert (await view(client, viewer, fid, sid, "daily")).status_code == 200
    await share(client, subject, fid, health_level="off")
    problem(await view(client, viewer, fid, sid, "daily"), 403, "health.not_shared")
    await share(client, subject, fid, health_level="series")
    # a pause shares nothing until it ends
    until = clock.utcnow() + timedelta(hours=2)
    await share(client, subject, fid, paused_until=until.isoformat())
    body = problem(await view(client, viewer, fid, sid, "latest"), 403, "health.not_shared")
    assert body["level"] == "off"
    clock.advance(3 * 3600)
    assert (await view(client, viewer, fid, sid, "latest")).status_code == 200


async def test_leaving_the_family_ends_access(client: httpx.AsyncClient, sms: Any) -> None:
    viewer, subject, fid = await pair(client, sms)
    third = await person(client, sms, OTHER)
    await join(client, viewer, fid, third)
    await share(client, subject, fid, health_level="series")
    for who in (viewer, third):
        assert (await view(client, who, fid, aid(subject), "series")).status_code == 200
    # the reader leaves: the family is gone for them
    r = await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(third))
    assert r.status_code == 204, r.text
    problem(await view(client, third, fid, aid(subject), "latest"), 404, "family.not_found")
    # the person leaves: no such member any more
    r = await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(subject))
    assert r.status_code == 204, r.text
    for name in VIEWS:
        r = await view(client, viewer, fid, aid(subject), name)
        problem(r, 404, "family.member_not_found")


# --- consents ------------------------------------------------------------------------------------


async def test_the_persons_withdrawn_consent_hides_it_from_the_family_too(
    client: httpx.AsyncClient, sms: Any
) -> None:
    viewer, subject, fid = await pair(client, sms)
    sid = aid(subject)
    await share(client, subject, fid, health_level="series")
    await withdraw(client, subject, "health.vitals")
    r = await view(client, viewer, fid, sid, "latest")
    assert r.status_code == 200, r.text
    assert [x["metric"] for x in r.json()["latest"]] == ["steps"]
    (d, _) = (await view(client, viewer, fid, sid, "daily")).json()["summaries"]
    assert d["steps"] == 1200 and d["heart_rate_max"] is None
    problem(await view(client, viewer, fid, sid, "series"), 403, "health.not_shared")
    r = await view(client, viewer, fid, sid, "series", metric="steps")
    assert r.status_code == 200 and sum(r.json()["sum"]) == 1200
    await withdraw(client, subject, "health.activity")
    for name in VIEWS:
        problem(await view(client, viewer, fid, sid, name), 403, "health.not_shared")


async def test_the_reader_needs_their_own_consent(client: httpx.AsyncClient, sms: Any) -> None:
    """Health data shown on the reader's device is processed for the reader too:
    without either separate consent the guard refuses, as on the own routes."""
    viewer, subject, fid = await pair(client, sms)
    await share(client, subject, fid, health_level="series")
    await withdraw(client, viewer, "health.vitals")
    # only what the reader consented to is shown
    r = await view(client, viewer, fid, aid(subject), "latest")
    assert [x["metric"] for x in r.json()["latest"]] == ["steps"]
    await withdraw(client, viewer, "health.activity")
    problem(await view(client, viewer, fid, aid(subject), "latest"), 403, "consent.required")
