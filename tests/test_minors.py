"""Children under 14 and their guardians (policy 6): a child's account does
nothing but privacy choices until a verified adult guardian consents for it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx

from kares import clock
from tests.conftest import POLICY_VERSION, bearer, sign_up, snapshot

CHILD = "+8613900000101"
GUARDIAN = "+8613900000202"
STRANGER = "+8613900000303"
TEEN = "+8613900000404"

BLOCKED = (
    "/api/v1/me",
    "/api/v1/notifications",
    "/api/v1/devices",
    "/api/v1/me/functions/health?feature=readings",
)


def years_before(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


def child_birth_date() -> str:
    return years_before(clock.utcnow().date(), 10).isoformat()


async def register(client: httpx.AsyncClient, sms: Any, phone: str, **age: Any) -> httpx.Response:
    """Register a new number through the API; returns the raw response."""
    r = await client.post("/api/v1/auth/sms/send", json={"phone": phone})
    assert r.status_code == 202, r.text
    body = {"phone": phone, "code": sms.last_code(phone), "accept_policy": POLICY_VERSION, **age}
    r = await client.post("/api/v1/auth/sms/verify", json=body)
    clock.advance(61)
    return r


async def sign_up_child(client: httpx.AsyncClient, sms: Any, phone: str = CHILD) -> dict[str, Any]:
    r = await register(client, sms, phone, birth_date=child_birth_date())
    assert r.status_code == 201, r.text
    return dict(r.json())


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = dict(r.json())
    assert body["code"] == code, body
    return body


async def ask_guardian(
    client: httpx.AsyncClient, sms: Any, child: dict[str, Any], phone: str = GUARDIAN
) -> str:
    """The child asks ``phone`` to be their guardian; returns the code sent there."""
    before = len(sms.codes_for(phone))
    r = await client.post(
        "/api/v1/me/guardian", json={"guardian_phone": phone}, headers=bearer(child["token"])
    )
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    codes = sms.codes_for(phone)
    assert len(codes) == before + 1
    return codes[-1]


async def approved_pair(
    client: httpx.AsyncClient, sms: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    guardian = await sign_up(client, sms, GUARDIAN)
    child = await sign_up_child(client, sms)
    code = await ask_guardian(client, sms, child)
    r = await client.post(
        "/api/v1/guardian/approve", json={"code": code}, headers=bearer(guardian["token"])
    )
    assert r.status_code == 200, r.text
    return guardian, child


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


# --- registering a child ------------------------------------------------------------------


async def test_child_registers_by_birth_date_and_needs_a_guardian(
    client: httpx.AsyncClient, sms
) -> None:
    r = await register(client, sms, CHILD, birth_date=child_birth_date())
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["created"] is True
    assert child["account"]["age_bracket"] == "under_14"
    assert child["account"]["needs_guardian"] is True
    # The child's own "accept" is not consent: nothing is recorded for them.
    r = await client.get("/api/v1/me/consents/receipts", headers=bearer(child["token"]))
    assert r.status_code == 200, r.text
    assert r.json() == []
    r = await client.get("/api/v1/me/consents", headers=bearer(child["token"]))
    assert r.status_code == 200, r.text
    [policy] = [c for c in r.json()["consents"] if c["subject"] == "policy"]
    assert policy["granted"] is False and policy["receipt"] is None


async def test_child_registers_by_age_bracket(client: httpx.AsyncClient, sms) -> None:
    r = await register(client, sms, CHILD, age_bracket="under_14")
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["account"]["age_bracket"] == "under_14"
    assert child["account"]["needs_guardian"] is True
    r = await client.get("/api/v1/me/consents/receipts", headers=bearer(child["token"]))
    assert r.status_code == 200 and r.json() == []


# --- what a child can do alone ------------------------------------------------------------


async def test_child_without_guardian_is_blocked_except_privacy_choices(
    client: httpx.AsyncClient, sms, db
) -> None:
    child = await sign_up_child(client, sms)
    auth = bearer(child["token"])
    before = await snapshot(db)
    for url in BLOCKED:
        problem(await client.get(url, headers=auth), 403, "guardian.consent_required")
    assert await snapshot(db) == before

    r = await client.get("/api/v1/me/consents", headers=auth)
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/me/processing", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["account_id"] == child["account"]["id"]
    assert await snapshot(db) == before

    r = await client.post("/api/v1/auth/logout", headers=auth)
    assert r.status_code == 204, r.text
    problem(await client.get("/api/v1/me/consents", headers=auth), 401, "auth.invalid_token")


async def test_child_cannot_consent_alone(client: httpx.AsyncClient, sms, db) -> None:
    child = await sign_up_child(client, sms)
    auth = bearer(child["token"])
    before = await snapshot(db)
    for subject in ("policy", "category:health.vitals", "category:location.precise"):
        r = await client.post(
            "/api/v1/me/consents",
            json={"subject": subject, "action": "grant", "policy_version": POLICY_VERSION},
            headers=auth,
        )
        problem(r, 403, "guardian.consent_required")
    assert await snapshot(db) == before
    r = await client.get("/api/v1/me/consents/receipts", headers=auth)
    assert r.json() == []


async def test_child_cannot_change_own_age(client: httpx.AsyncClient, sms, db) -> None:
    child = await sign_up_child(client, sms)
    auth = bearer(child["token"])
    before = await snapshot(db)
    for body in ({"birth_date": "1990-01-01"}, {"age_bracket": "adult"}):
        r = await client.patch("/api/v1/me", json=body, headers=auth)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "guardian.consent_required"
    assert await snapshot(db) == before


async def test_child_with_guardian_still_cannot_change_own_age(
    client: httpx.AsyncClient, sms, db
) -> None:
    _, child = await approved_pair(client, sms)
    auth = bearer(child["token"])
    before = await snapshot(db)
    for body in ({"birth_date": "1990-01-01"}, {"age_bracket": "adult"}):
        problem(
            await client.patch("/api/v1/me", json=body, headers=auth),
            403,
            "guardian.consent_required",
        )
    assert await snapshot(db) == before
    me = (await client.get("/api/v1/me", headers=auth)).json()
    assert me["age_bracket"] == "under_14"


# --- the guardian flow -----------------------------------------------------------------------


async def test_guardian_flow(client: httpx.AsyncClient, sms, db) -> None:
    guardian = await sign_up(client, sms, GUARDIAN)
    child = await sign_up_child(client, sms)
    g_auth, c_auth = bearer(guardian["token"]), bearer(child["token"])
    child_id = child["account"]["id"]

    code = await ask_guardian(client, sms, child)
    # Asking does not yet unlock anything.
    problem(await client.get("/api/v1/me", headers=c_auth), 403, "guardian.consent_required")

    r = await client.post("/api/v1/guardian/approve", json={"code": code}, headers=g_auth)
    assert r.status_code == 200, r.text
    assert r.json()["account_id"] == child_id

    r = await client.get("/api/v1/me", headers=c_auth)
    assert r.status_code == 200, r.text
    assert r.json()["needs_guardian"] is False
    assert r.json()["age_bracket"] == "under_14"

    r = await client.get("/api/v1/me/consents/receipts", headers=c_auth)
    [receipt] = r.json()
    assert receipt["subject"] == "policy" and receipt["action"] == "grant"
    assert receipt["by_guardian"] is True and receipt["via"] == "guardian"
    assert receipt["policy_version"] == POLICY_VERSION

    # The child is told, in their inbox.
    r = await client.get("/api/v1/notifications", headers=c_auth)
    assert r.status_code == 200, r.text
    assert any("guardian" in n["title"].lower() for n in r.json())

    r = await client.get("/api/v1/guardian/wards", headers=g_auth)
    assert r.status_code == 200, r.text
    assert [w["account_id"] for w in r.json()] == [child_id]

    r = await client.get(f"/api/v1/guardian/wards/{child_id}/consents", headers=g_auth)
    assert r.status_code == 200, r.text
    consents = {c["subject"]: c for c in r.json()["consents"]}
    assert consents["policy"]["granted"] is True
    assert consents["category:health.vitals"]["granted"] is False
    r = await client.get(f"/api/v1/guardian/wards/{child_id}/consents/receipts", headers=g_auth)
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()] == [receipt["id"]]

    readings = "/api/v1/me/functions/health?feature=readings"
    body = problem(await client.get(readings, headers=c_auth), 403, "consent.required")
    assert body["missing"] == ["category:health.vitals"]

    grant = {"subject": "category:health.vitals", "action": "grant"}
    r = await client.post(
        f"/api/v1/guardian/wards/{child_id}/consents",
        json={**grant, "policy_version": POLICY_VERSION},
        headers=g_auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["by_guardian"] is True and r.json()["via"] == "guardian"
    r = await client.get(readings, headers=c_auth)
    assert r.status_code == 200, r.text
    assert r.json()["allowed"] is True and r.json()["degraded"] == {}

    r = await client.post(
        f"/api/v1/guardian/wards/{child_id}/consents",
        json={"subject": "category:health.vitals", "action": "withdraw"},
        headers=g_auth,
    )
    assert r.status_code == 201, r.text
    problem(await client.get(readings, headers=c_auth), 403, "consent.required")

    # The guardian ends it: the child's account stops at once.
    r = await client.delete(f"/api/v1/guardian/wards/{child_id}", headers=g_auth)
    assert r.status_code == 204, r.text
    for url in BLOCKED:
        problem(await client.get(url, headers=c_auth), 403, "guardian.consent_required")
    r = await client.get("/api/v1/me/consents", headers=c_auth)
    assert r.status_code == 200, r.text
    policy = {c["subject"]: c for c in r.json()["consents"]}["policy"]
    assert policy["granted"] is False
    assert policy["receipt"]["action"] == "withdraw" and policy["receipt"]["by_guardian"] is True
    r = await client.get("/api/v1/guardian/wards", headers=g_auth)
    assert r.json() == []
    before = await snapshot(db)
    problem(
        await client.get(f"/api/v1/guardian/wards/{child_id}/consents", headers=g_auth),
        404,
        "guardian.not_found",
    )
    problem(
        await client.delete(f"/api/v1/guardian/wards/{child_id}", headers=g_auth),
        404,
        "guardian.not_found",
    )
    assert await snapshot(db) == before


async def test_child_can_ask_again_after_guardianship_ended(client: httpx.AsyncClient, sms) -> None:
    guardian, child = await approved_pair(client, sms)
    g_auth, c_auth = bearer(guardian["token"]), bearer(child["token"])
    child_id = child["account"]["id"]
    r = await client.delete(f"/api/v1/guardian/wards/{child_id}", headers=g_auth)
    assert r.status_code == 204
    clock.advance(61)
    code = await ask_guardian(client, sms, child)
    r = await client.post("/api/v1/guardian/approve", json={"code": code}, headers=g_auth)
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/me", headers=c_auth)).status_code == 200
    r = await client.get("/api/v1/guardian/wards", headers=g_auth)
    assert [w["account_id"] for w in r.json()] == [child_id]


async def test_guardian_consent_needs_current_policy_version(
    client: httpx.AsyncClient, sms, db
) -> None:
    guardian, child = await approved_pair(client, sms)
    child_id = child["account"]["id"]
    before = await snapshot(db)
    url = f"/api/v1/guardian/wards/{child_id}/consents"
    auth = bearer(guardian["token"])
    grant = {"subject": "category:health.vitals", "action": "grant"}
    problem(
        await client.post(url, json=grant, headers=auth), 409, "consent.policy_version_mismatch"
    )
    problem(
        await client.post(url, json={**grant, "policy_version": "1999-01-01"}, headers=auth),
        409,
        "consent.policy_version_mismatch",
    )
    problem(
        await client.post(
            url,
            json={"subject": "category:nope", "action": "grant", "policy_version": POLICY_VERSION},
            headers=auth,
        ),
        422,
        "consent.unknown_subject",
    )
    assert await snapshot(db) == before


# --- refusals ----------------------------------------------------------------------------------


async def test_approve_without_request(client: httpx.AsyncClient, sms, db) -> None:
    guardian = await sign_up(client, sms, GUARDIAN)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/guardian/approve", json={"code": "123456"}, headers=bearer(guardian["token"])
    )
    problem(r, 404, "guardian.no_request")
    assert await snapshot(db) == before


async def test_approve_with_wrong_code(client: httpx.AsyncClient, sms, db) -> None:
    guardian = await sign_up(client, sms, GUARDIAN)
    child = await sign_up_child(client, sms)
    code = await ask_guardian(client, sms, child)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/guardian/approve", json={"code": wrong(code)}, headers=bearer(guardian["token"])
    )
    body = problem(r, 400, "otp.invalid")
    assert body["remaining_attempts"] >= 1
    after = await snapshot(db)
    # Only the wrong-guess counter of the guardian's code moved.
    assert {k: v for k, v in after.items() if k != "otp_challenges"} == {
        k: v for k, v in before.items() if k != "otp_challenges"
    }
    assert after["otp_challenges"] != before["otp_challenges"]
    problem(
        await client.get("/api/v1/me", headers=bearer(child["token"])),
        403,
        "guardian.consent_required",
    )
    # The right code still works afterwards.
    r = await client.post(
        "/api/v1/guardian/approve", json={"code": code}, headers=bearer(guardian["token"])
    )
    assert r.status_code == 200, r.text
    # and only once
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/guardian/approve", json={"code": code}, headers=bearer(guardian["token"])
    )
    problem(r, 404, "guardian.no_request")
    assert await snapshot(db) == before


async def test_request_and_code_expire(client: httpx.AsyncClient, sms, db) -> None:
    guardian = await sign_up(client, sms, GUARDIAN)
    child = await sign_up_child(client, sms)
    auth = bearer(guardian["token"])
    code = await ask_guardian(client, sms, child)
    clock.advance(6 * 60)  # past the code's 5 minutes, within the request's 24 hours
    before = await snapshot(db)
    r = await client.post("/api/v1/guardian/approve", json={"code": code}, headers=auth)
    problem(r, 400, "otp.expired")
    assert await snapshot(db) == before
    # The child asks again and the new code works.
    code = await ask_guardian(client, sms, child)
    clock.advance(25 * 3600)  # now the request itself has expired
    before = await snapshot(db)
    r = await client.post("/api/v1/guardian/approve", json={"code": code}, headers=auth)
    problem(r, 404, "guardian.no_request")
    assert await snapshot(db) == before
    problem(
        await client.get("/api/v1/me", headers=bearer(child["token"])),
        403,
        "guardian.consent_required",
    )


async def test_asking_again_at_once_is_throttled(client: httpx.AsyncClient, sms, db) -> None:
    child = await sign_up_child(client, sms)
    await ask_guardian(client, sms, child)
    sent = len(sms.messages)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/me/guardian", json={"guardian_phone": GUARDIAN}, headers=bearer(child["token"])
    )
    problem(r, 429, "otp.cooldown")
    assert await snapshot(db) == before
    assert len(sms.messages) == sent


async def test_guardian_must_be_adult(client: httpx.AsyncClient, sms, db) -> None:
    r = await register(client, sms, TEEN, age_bracket="14_to_17")
    assert r.status_code == 201, r.text
    teen = r.json()
    assert teen["account"]["age_bracket"] == "14_to_17"
    assert teen["account"]["needs_guardian"] is False
    child = await sign_up_child(client, sms)
    code = await ask_guardian(client, sms, child, TEEN)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/guardian/approve", json={"code": code}, headers=bearer(teen["token"])
    )
    problem(r, 403, "guardian.not_adult")
    assert await snapshot(db) == before
    problem(
        await client.get("/api/v1/me", headers=bearer(child["token"])),
        403,
        "guardian.consent_required",
    )


async def test_guardian_declares_age_via_profile(client: httpx.AsyncClient, sms, db) -> None:
    guardian = await sign_up(client, sms, GUARDIAN)
    auth = bearer(guardian["token"])
    r = await client.patch("/api/v1/me", json={"age_bracket": "14_to_17"}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["age_bracket"] == "14_to_17"
    child = await sign_up_child(client, sms)
    code = await ask_guardian(client, sms, child)
    before = await snapshot(db)
    problem(
        await client.post("/api/v1/guardian/approve", json={"code": code}, headers=auth),
        403,
        "guardian.not_adult",
    )
    assert await snapshot(db) == before
    adult_birth = years_before(clock.utcnow().date(), 40).isoformat()
    r = await client.patch("/api/v1/me", json={"birth_date": adult_birth}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["age_bracket"] == "adult"
    r = await client.post("/api/v1/guardian/approve", json={"code": code}, headers=auth)
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/me", headers=bearer(child["token"]))).status_code == 200


async def test_adult_does_not_need_a_guardian(client: httpx.AsyncClient, sms, db) -> None:
    adult = await sign_up(client, sms, STRANGER)
    sent = len(sms.messages)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/me/guardian", json={"guardian_phone": GUARDIAN}, headers=bearer(adult["token"])
    )
    problem(r, 409, "guardian.not_needed")
    assert await snapshot(db) == before
    assert len(sms.messages) == sent


async def test_child_cannot_name_themself(client: httpx.AsyncClient, sms, db) -> None:
    child = await sign_up_child(client, sms)
    sent = len(sms.messages)
    before = await snapshot(db)
    for phone in (CHILD, "139 0000 0101", "+86 139-0000-0101"):
        r = await client.post(
            "/api/v1/me/guardian", json={"guardian_phone": phone}, headers=bearer(child["token"])
        )
        problem(r, 422, "guardian.self")
    assert await snapshot(db) == before
    assert len(sms.messages) == sent


async def test_malformed_guardian_phone(client: httpx.AsyncClient, sms, db) -> None:
    child = await sign_up_child(client, sms)
    sent = len(sms.messages)
    before = await snapshot(db)
    for phone in ("not a phone", "12345", "+86 139"):
        r = await client.post(
            "/api/v1/me/guardian", json={"guardian_phone": phone}, headers=bearer(child["token"])
        )
        problem(r, 422, "phone.invalid")
    assert await snapshot(db) == before
    assert len(sms.messages) == sent


async def test_other_adult_cannot_see_or_act_for_a_child(
    client: httpx.AsyncClient, sms, db
) -> None:
    _, child = await approved_pair(client, sms)
    child_id = child["account"]["id"]
    stranger = await sign_up(client, sms, STRANGER)
    auth = bearer(stranger["token"])
    before = await snapshot(db)
    base = f"/api/v1/guardian/wards/{child_id}"
    problem(await client.get(f"{base}/consents", headers=auth), 404, "guardian.not_found")
    problem(await client.get(f"{base}/consents/receipts", headers=auth), 404, "guardian.not_found")
    r = await client.post(
        f"{base}/consents",
        json={
            "subject": "category:health.vitals",
            "action": "grant",
            "policy_version": POLICY_VERSION,
        },
        headers=auth,
    )
    problem(r, 404, "guardian.not_found")
    problem(await client.delete(base, headers=auth), 404, "guardian.not_found")
    # An id that is no account at all looks the same.
    problem(
        await client.get("/api/v1/guardian/wards/nosuchaccount/consents", headers=auth),
        404,
        "guardian.not_found",
    )
    assert (await client.get("/api/v1/guardian/wards", headers=auth)).json() == []
    assert await snapshot(db) == before


async def test_guardian_no_longer_adult_cannot_grant_but_can_withdraw(
    client: httpx.AsyncClient, sms, db
) -> None:
    guardian, child = await approved_pair(client, sms)
    auth = bearer(guardian["token"])
    url = f"/api/v1/guardian/wards/{child['account']['id']}/consents"
    grant = {
        "subject": "category:health.vitals",
        "action": "grant",
        "policy_version": POLICY_VERSION,
    }
    r = await client.post(url, json=grant, headers=auth)
    assert r.status_code == 201, r.text
    r = await client.patch("/api/v1/me", json={"age_bracket": "14_to_17"}, headers=auth)
    assert r.status_code == 200, r.text
    before = await snapshot(db)
    grant["subject"] = "category:location.precise"
    problem(await client.post(url, json=grant, headers=auth), 403, "guardian.not_adult")
    assert await snapshot(db) == before
    r = await client.post(
        url, json={"subject": "category:health.vitals", "action": "withdraw"}, headers=auth
    )
    assert r.status_code == 201, r.text
    problem(
        await client.get(
            "/api/v1/me/functions/health?feature=readings", headers=bearer(child["token"])
        ),
        403,
        "consent.required",
    )


# --- birth date arithmetic --------------------------------------------------------------------


async def test_child_turning_14_no_longer_needs_a_guardian(client: httpx.AsyncClient, sms) -> None:
    birthday = clock.utcnow().date() + timedelta(days=2)
    birth = years_before(birthday, 14).isoformat()
    r = await register(client, sms, CHILD, birth_date=birth)
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["account"]["age_bracket"] == "under_14"
    assert child["account"]["needs_guardian"] is True
    auth = bearer(child["token"])
    problem(await client.get("/api/v1/me", headers=auth), 403, "guardian.consent_required")

    clock.advance(3 * 86400)
    r = await client.get("/api/v1/me", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["age_bracket"] == "14_to_17"
    assert r.json()["needs_guardian"] is False
    # Now 14, they consent for themself: the policy first, then basic functions work.
    problem(await client.get("/api/v1/notifications", headers=auth), 403, "consent.policy_required")
    r = await client.post(
        "/api/v1/me/consents",
        json={"subject": "policy", "action": "grant", "policy_version": POLICY_VERSION},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["by_guardian"] is False
    r = await client.get("/api/v1/notifications", headers=auth)
    assert r.status_code == 200, r.text


# --- corner cases -----------------------------------------------------------------------------


async def test_an_adult_cannot_turn_into_a_child(client: httpx.AsyncClient, sms, db) -> None:
    adult = await sign_up(client, sms, GUARDIAN)
    auth = bearer(adult["token"])
    await client.get("/api/v1/me", headers=auth)
    before = await snapshot(db)
    for body in ({"age_bracket": "under_14"}, {"birth_date": child_birth_date()}):
        problem(
            await client.patch("/api/v1/me", json=body, headers=auth),
            422,
            "account.age_change_refused",
        )
    assert await snapshot(db) == before
    assert (await client.get("/api/v1/me", headers=auth)).status_code == 200


async def test_one_of_two_guardians_leaving_keeps_the_child_approved(
    client: httpx.AsyncClient, sms
) -> None:
    guardian, child = await approved_pair(client, sms)
    second = await sign_up(client, sms, STRANGER)
    code = await ask_guardian(client, sms, child, STRANGER)
    r = await client.post(
        "/api/v1/guardian/approve", json={"code": code}, headers=bearer(second["token"])
    )
    assert r.status_code == 200, r.text
    r = await client.delete(
        f"/api/v1/guardian/wards/{child['account']['id']}", headers=bearer(guardian["token"])
    )
    assert r.status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(child["token"]))).status_code == 200
    r = await client.delete(
        f"/api/v1/guardian/wards/{child['account']['id']}", headers=bearer(second["token"])
    )
    assert r.status_code == 204
    problem(
        await client.get("/api/v1/me", headers=bearer(child["token"])),
        403,
        "guardian.consent_required",
    )


async def test_guardian_sees_who_asks_and_approves_that_child(
    client: httpx.AsyncClient, sms
) -> None:
    guardian = await sign_up(client, sms, GUARDIAN)
    first = await sign_up_child(client, sms, CHILD)
    second = await sign_up_child(client, sms, TEEN)
    await ask_guardian(client, sms, first)
    clock.advance(61)
    code = await ask_guardian(client, sms, second)
    pending = (
        await client.get("/api/v1/guardian/requests", headers=bearer(guardian["token"]))
    ).json()
    assert len(pending) == 2
    # the newest request comes first; each names the child by their masked number
    assert [p["child_phone"] for p in pending] == ["+86 139****0404", "+86 139****0101"]
    named = pending[1]
    r = await client.post(
        "/api/v1/guardian/approve",
        json={"code": code, "request_id": named["id"]},
        headers=bearer(guardian["token"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["account_id"] == first["account"]["id"]
    assert (await client.get("/api/v1/me", headers=bearer(first["token"]))).status_code == 200
    problem(
        await client.get("/api/v1/me", headers=bearer(second["token"])),
        403,
        "guardian.consent_required",
    )


async def test_the_guardian_is_told_they_hold_a_guardianship(
    client: httpx.AsyncClient, sms
) -> None:
    guardian, _child = await approved_pair(client, sms)
    items = (await client.get("/api/v1/me/processing", headers=bearer(guardian["token"]))).json()[
        "items"
    ]
    item = next(i for i in items if i["category"] == "minors.guardianship")
    assert item["held"] is True
