"""Dependants: a child under 14 or an elder whose profile a guardian manages.
A managed profile has no phone and cannot sign in; it appears as a member
with the role ``dependant``; its guardian accepted the policy for it and
manages its sharing. An existing child account can be added by its guardian."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

from kares import clock, crypto
from kares.families import service as families
from kares.identity.models import Session as SessionRow
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
    roles,
    set_role,
)
from tests.test_minors import ask_guardian, child_birth_date, sign_up_child

CHILD = "+8613700000010"


async def add(
    client: httpx.AsyncClient, me: dict[str, Any], fid: str, **body: Any
) -> httpx.Response:
    return await client.post(f"{FAMILIES}/{fid}/dependants", json=body, headers=h(me))


async def household(
    client: httpx.AsyncClient, sms: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """An owner, a guardian and a member."""
    owner = await person(client, sms, OWNER, "Wang Fang")
    guardian = await person(client, sms, MEMBER, "Wang Lei")
    member = await person(client, sms, OTHER, "Li Na")
    fid = await new_family(client, owner)
    await join(client, owner, fid, guardian)
    await join(client, owner, fid, member)
    assert (await set_role(client, owner, fid, guardian, "guardian")).status_code == 200
    return owner, guardian, member, fid


async def test_a_guardian_adds_a_managed_profile(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, guardian, member, fid = await household(client, sms)
    r = await add(client, guardian, fid, name="  Grandma Li ", age_bracket="adult")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] is True
    dep = body["member"]
    assert (dep["name"], dep["role"], dep["managed"]) == ("Grandma Li", "dependant", True)
    assert dep["sharing"]["location"] == "live" and dep["sharing"]["set_by_guardian"] is True
    dep_id = dep["account_id"]
    # everyone in the family sees it, as a dependant
    fam = await family(client, member, fid)
    assert roles(fam)[dep_id] == "dependant" and fam["member_count"] == 4

    # a child too, by birth date; two profiles without a phone can coexist
    r = await add(client, owner, fid, name="Xiaoming", birth_date=child_birth_date())
    assert r.status_code == 201, r.text
    kid_id = r.json()["member"]["account_id"]

    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, phone, phone_hash, status, password_hash, age_bracket "
                    "FROM accounts WHERE id IN (:a, :b) ORDER BY name"
                ),
                {"a": dep_id, "b": kid_id},
            )
        ).all()
        assert [tuple(x) for x in rows] == [
            (dep_id, None, None, "managed", None, "adult"),
            (kid_id, None, None, "managed", None, "under_14"),
        ]
        g = (
            await conn.execute(
                text(
                    "SELECT guardian_account_id, ended_at FROM guardianships "
                    "WHERE minor_account_id = :d"
                ),
                {"d": dep_id},
            )
        ).one()
        assert tuple(g) == (aid(guardian), None)
        receipt = (
            await conn.execute(
                text(
                    "SELECT subject, action, policy_version, via, actor_account_id "
                    "FROM consent_receipts WHERE account_id = :d"
                ),
                {"d": dep_id},
            )
        ).one()
        assert tuple(receipt) == ("policy", "grant", POLICY_VERSION, "guardian", aid(guardian))

    # the guardian finds it among their wards, and manages its consents there
    wards = (await client.get("/api/v1/guardian/wards", headers=h(guardian))).json()
    assert [(w["account_id"], w["name"]) for w in wards] == [(dep_id, "Grandma Li")]
    r = await client.post(
        f"/api/v1/guardian/wards/{dep_id}/consents",
        json={
            "subject": "category:location.precise",
            "action": "grant",
            "policy_version": POLICY_VERSION,
        },
        headers=h(guardian),
    )
    assert r.status_code == 201, r.text
    assert r.json()["by_guardian"] is True


async def test_a_managed_profile_cannot_sign_in(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, _, _, fid = await household(client, sms)
    dep_id = (await add(client, owner, fid, name="Grandpa", age_bracket="adult")).json()["member"][
        "account_id"
    ]
    # it has no phone, password or linked identity to sign in with; and even a
    # session planted in the database does not make it a caller
    token = "kares_" + "p" * 43
    now = clock.utcnow()
    async with db.sessions() as s:
        s.add(
            SessionRow(
                account_id=dep_id,
                token_hash=crypto.token_hash(token),
                kind="bearer",
                method="sms",
                device_key="planted",
                ip="127.0.0.1",
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(days=1),
            )
        )
        await s.commit()
    for url in ("/api/v1/me", FAMILIES, f"{FAMILIES}/{fid}"):
        r = await client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code in (401, 403), r.text
        assert r.json()["code"] in ("auth.invalid_token", "account.inactive")


async def test_guardians_manage_a_dependants_sharing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, guardian, member, fid = await household(client, sms)
    dep_id = (await add(client, owner, fid, name="Grandma", age_bracket="adult")).json()["member"][
        "account_id"
    ]
    url = f"{FAMILIES}/{fid}/members/{dep_id}/sharing"
    r = await client.put(url, json={"health": True, "location": "history"}, headers=h(guardian))
    assert r.status_code == 200, r.text
    c = r.json()["choices"]
    assert (c["location"], c["health"], c["set_by_guardian"]) == ("history", True, True)
    r = await client.put(url, json={"schedule": False}, headers=h(owner))
    assert r.status_code == 200 and r.json()["choices"]["schedule"] is False
    # everyone in the family can see what it shares
    seen = (await client.get(url, headers=h(member))).json()
    assert seen["effective"] == {
        "location": "history",
        "health": True,
        "schedule": False,
        "health_level": "summaries",
    }

    stranger = await person(client, sms, STRANGER)
    before = await snapshot(db)
    problem(
        await client.put(url, json={"health": False}, headers=h(member)), 403, "family.forbidden"
    )
    problem(
        await client.put(url, json={"health": False}, headers=h(stranger)), 404, "family.not_found"
    )
    assert await snapshot(db) == before


async def test_bad_dependants_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, _, member, fid = await household(client, sms)
    stranger = await person(client, sms, STRANGER)
    future = (clock.utcnow().date() + timedelta(days=2)).isoformat()
    before = await snapshot(db)
    for body, status, code in (
        ({"name": "", "age_bracket": "adult"}, 422, "dependant.invalid_name"),
        ({"name": "   ", "age_bracket": "adult"}, 422, "dependant.invalid_name"),
        ({"name": "Li\nNa", "age_bracket": "adult"}, 422, "dependant.invalid_name"),
        ({"name": "x" * 65, "age_bracket": "adult"}, 422, "dependant.invalid_name"),
        ({"name": "Kid"}, 422, "account.age_required"),
        ({"name": "Kid", "birth_date": future}, 422, "account.invalid_birth_date"),
        ({"name": "Kid", "age_bracket": "toddler"}, 422, "request.invalid"),
        (
            {"name": "Kid", "age_bracket": "adult", "account_id": aid(member)},
            422,
            "request.invalid",
        ),
        ({}, 422, "request.invalid"),
        ({"account_id": aid(member)}, 404, "dependant.not_found"),
        ({"account_id": aid(stranger)}, 404, "dependant.not_found"),
        ({"account_id": "0" * 32}, 404, "dependant.not_found"),
    ):
        problem(await add(client, owner, fid, **body), status, code)
    problem(await add(client, member, fid, name="K", age_bracket="adult"), 403, "family.forbidden")
    problem(
        await add(client, stranger, fid, name="K", age_bracket="adult"), 404, "family.not_found"
    )
    assert await snapshot(db) == before


async def test_a_dependants_role_is_fixed(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner, _, _, fid = await household(client, sms)
    dep_id = (await add(client, owner, fid, name="Grandma", age_bracket="adult")).json()["member"][
        "account_id"
    ]
    before = await snapshot(db)
    r = await client.put(
        f"{FAMILIES}/{fid}/members/{dep_id}/role", json={"role": "guardian"}, headers=h(owner)
    )
    problem(r, 409, "family.dependant_role")
    r = await client.post(
        f"{FAMILIES}/{fid}/transfer", json={"account_id": dep_id}, headers=h(owner)
    )
    problem(r, 409, "family.dependant_role")
    assert await snapshot(db) == before


async def test_an_existing_child_account_becomes_a_dependant(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, guardian, _, fid = await household(client, sms)
    child = await sign_up_child(client, sms, CHILD)
    code = await ask_guardian(client, sms, child, OWNER)
    r = await client.post("/api/v1/guardian/approve", json={"code": code}, headers=h(owner))
    assert r.status_code == 200, r.text

    # only the child's own guardian may add them
    before = await snapshot(db)
    problem(await add(client, guardian, fid, account_id=aid(child)), 404, "dependant.not_found")
    assert await snapshot(db) == before

    r = await add(client, owner, fid, account_id=aid(child))
    assert r.status_code == 201, r.text
    assert r.json()["created"] is False
    dep = r.json()["member"]
    assert (dep["account_id"], dep["role"], dep["managed"]) == (aid(child), "dependant", False)
    again = await add(client, owner, fid, account_id=aid(child))
    assert again.status_code == 200 and again.json()["member"]["role"] == "dependant"

    # the child signs in and sees the family, but its guardians decide for it
    [fam] = (await client.get(FAMILIES, headers=h(child))).json()
    assert fam["id"] == fid and fam["my_role"] == "dependant"
    before = await snapshot(db)
    r = await client.put(
        f"{FAMILIES}/{fid}/members/me/sharing", json={"location": "off"}, headers=h(child)
    )
    problem(r, 403, "family.forbidden")
    problem(
        await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(child)),
        403,
        "family.forbidden",
    )
    assert await snapshot(db) == before
    r = await client.put(
        f"{FAMILIES}/{fid}/members/{aid(child)}/sharing",
        json={"location": "off"},
        headers=h(guardian),
    )
    assert r.status_code == 200 and r.json()["choices"]["set_by_guardian"] is True


async def test_a_child_who_joined_by_code_can_be_made_a_dependant(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, _, _, fid = await household(client, sms)
    child = await sign_up_child(client, sms, CHILD)
    code = await ask_guardian(client, sms, child, OWNER)
    assert (
        await client.post("/api/v1/guardian/approve", json={"code": code}, headers=h(owner))
    ).status_code == 200
    await join(client, owner, fid, child)
    assert roles(await family(client, owner, fid))[aid(child)] == "member"
    r = await add(client, owner, fid, account_id=aid(child))
    assert r.status_code == 200 and r.json()["member"]["role"] == "dependant"


async def test_managed_profiles_outlive_their_family(client: httpx.AsyncClient, sms: Any) -> None:
    owner, guardian, _, fid = await household(client, sms)
    dep_id = (await add(client, guardian, fid, name="Grandma", age_bracket="adult")).json()[
        "member"
    ]["account_id"]
    # a dependant does not leave by itself; the owner removes it
    r = await client.delete(f"{FAMILIES}/{fid}/members/{dep_id}", headers=h(owner))
    assert r.status_code == 204
    assert dep_id not in roles(await family(client, owner, fid))
    # the guardian still has the profile, and adds it again (here, or elsewhere)
    r = await add(client, guardian, fid, account_id=dep_id)
    assert r.status_code == 201, r.text
    assert r.json()["member"]["managed"] is True
    assert (await client.delete(f"{FAMILIES}/{fid}", headers=h(owner))).status_code == 204
    wards = (await client.get("/api/v1/guardian/wards", headers=h(guardian))).json()
    assert [w["account_id"] for w in wards] == [dep_id]
    theirs = await new_family(client, guardian, "Guardian's")
    assert (await add(client, guardian, theirs, account_id=dep_id)).status_code == 201


async def test_who_to_tell_about_a_dependant(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    """What step 3's watches and SOS build on."""
    owner, guardian, member, fid = await household(client, sms)
    dep_id = (await add(client, guardian, fid, name="Grandma", age_bracket="adult")).json()[
        "member"
    ]["account_id"]
    other = await person(client, sms, STRANGER)
    fid2 = await new_family(client, other, "Other side")
    await join(client, other, fid2, guardian)
    assert (await set_role(client, other, fid2, guardian, "guardian")).status_code == 200
    assert (await add(client, guardian, fid2, account_id=dep_id)).status_code == 201
    async with db.sessions() as s:
        assert [a.id for a in await families.dependants_of(s, fid)] == [dep_id]
        found = {a.id for a in await families.guardians_of(s, dep_id)}
        assert found == {aid(owner), aid(guardian), aid(other)}
        # a member who is nobody's dependant has no guardians
        assert await families.guardians_of(s, aid(member)) == []
