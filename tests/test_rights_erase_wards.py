"""Policy 7 with 5.4: a guardian deletes a dependant's account; and nobody who is
the only one looking after a dependant can delete their own account and leave
the dependant with nobody."""

from __future__ import annotations

from typing import Any

import httpx

from kares import clock
from tests.conftest import bearer, query, sign_up
from tests.test_families import FAMILIES, join, new_family, person, problem, set_role
from tests.test_rights_erase import ask, code_for, inbox, run_jobs

ANN, BO, CY = "+8613700004001", "+8613700004002", "+8613700004003"


async def dependant(client: httpx.AsyncClient, admin: dict[str, Any], fid: str) -> str:
    r = await client.post(
        f"{FAMILIES}/{fid}/dependants",
        json={"name": "Grandma Li", "age_bracket": "adult"},
        headers=bearer(admin["token"]),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["member"]["account_id"])


def ward_url(ward: str) -> str:
    return f"/api/v1/dependants/{ward}/deletion"


async def test_a_guardian_deletes_a_dependants_account_after_the_cooling_off(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    ann = await person(client, sms, ANN, "Ann")
    bo = await person(client, sms, BO, "Bo")
    cy = await person(client, sms, CY, "Cy")
    fid = await new_family(client, ann, "Lis")
    await join(client, ann, fid, bo)
    await join(client, ann, fid, cy)
    assert (await set_role(client, ann, fid, bo, "guardian")).status_code == 200
    gran = await dependant(client, ann, fid)

    # a member who is no guardian cannot, and learns nothing
    code = await code_for(client, sms, cy)
    r = await client.post(ward_url(gran), json={"code": code}, headers=bearer(cy["token"]))
    problem(r, 404, "rights.not_guardian")
    problem(
        await client.get(ward_url(gran), headers=bearer(cy["token"])), 404, "rights.not_guardian"
    )
    # a wrong code changes nothing
    await code_for(client, sms, bo)
    r = await client.post(ward_url(gran), json={"code": "000000"}, headers=bearer(bo["token"]))
    problem(r, 400, {"otp.invalid", "otp.not_requested"})
    assert await query(db, "SELECT id FROM deletion_requests") == []

    code = await code_for(client, sms, bo)
    r = await client.post(ward_url(gran), json={"code": code}, headers=bearer(bo["token"]))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending" and r.json()["requested_by"] == bo["account"]["id"]
    # both guardians are told; the other guardian (the owner) sees it too
    for g in (ann, bo):
        assert "Grandma Li's account will be deleted" in [
            n["title"] for n in await inbox(client, g)
        ]
    st = (await client.get(ward_url(gran), headers=bearer(ann["token"]))).json()
    assert st["status"] == "pending"

    # any guardian can cancel; then ask again
    r = await client.delete(ward_url(gran), headers=bearer(ann["token"]))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    code = await code_for(client, sms, bo)
    r = await client.post(ward_url(gran), json={"code": code}, headers=bearer(bo["token"]))
    assert r.status_code == 202, r.text

    clock.advance(16 * 86400)
    await run_jobs(app)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :g", g=gran)
    assert not await query(
        db, "SELECT account_id FROM family_members WHERE account_id = :g", g=gran
    )
    assert await query(db, "SELECT id FROM accounts WHERE id = :b", b=bo["account"]["id"])


async def test_the_only_guardian_cannot_leave_a_dependant_with_nobody(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    ann = await person(client, sms, ANN, "Ann")
    bo = await person(client, sms, BO, "Bo")
    fid = await new_family(client, ann, "Lis")
    await join(client, ann, fid, bo)
    gran = await dependant(client, ann, fid)

    # dissolving the family would leave Grandma with nobody: refused, naming her
    r = await ask(client, sms, ann, families=[{"family_id": fid, "action": "dissolve"}])
    body = problem(r, 409, "rights.last_guardian")
    assert [d["id"] for d in body["dependants"]] == [gran]
    assert await query(db, "SELECT id FROM deletion_requests") == []
    # handing the family to Bo leaves her with Bo as the family's owner: taken
    r = await ask(
        client,
        sms,
        ann,
        families=[{"family_id": fid, "action": "transfer", "to": bo["account"]["id"]}],
    )
    assert r.status_code == 202, r.text
    await client.delete("/api/v1/me/deletion", headers=bearer(ann["token"]))

    # a guardian in the family does not help once the family is dissolved
    assert (await set_role(client, ann, fid, bo, "guardian")).status_code == 200
    r = await ask(client, sms, ann, families=[{"family_id": fid, "action": "dissolve"}])
    problem(r, 409, "rights.last_guardian")

    # deleting Grandma's profile first (she is due to go) lets Ann go too
    clock.advance(3600)  # past the hourly limit of codes to one number
    code = await code_for(client, sms, ann)
    r = await client.post(ward_url(gran), json={"code": code}, headers=bearer(ann["token"]))
    assert r.status_code == 202, r.text
    r = await ask(client, sms, ann, families=[{"family_id": fid, "action": "dissolve"}])
    assert r.status_code == 202, r.text
    clock.advance(16 * 86400)
    await run_jobs(app)
    for a in (gran, ann["account"]["id"]):
        assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    assert await query(db, "SELECT id FROM accounts WHERE id = :b", b=bo["account"]["id"])


async def test_a_childs_own_sign_in_does_not_cancel_a_guardians_request(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    from tests.test_minors import approved_pair

    ann, kid = await approved_pair(client, sms)
    k = kid["account"]["id"]
    clock.advance(61)  # the guardian's approval code was just sent
    code = await code_for(client, sms, ann)
    r = await client.post(ward_url(k), json={"code": code}, headers=bearer(ann["token"]))
    assert r.status_code == 202, r.text
    again = await sign_up(client, sms, kid["account"]["phone"])  # the child signs in
    st = (await client.get("/api/v1/me/deletion", headers=bearer(again["token"]))).json()
    assert st["status"] == "pending" and st["requested_by"] == ann["account"]["id"]
    # nor can the child cancel it
    r = await client.delete("/api/v1/me/deletion", headers=bearer(again["token"]))
    problem(r, 404, "rights.no_deletion")
    clock.advance(16 * 86400)
    await run_jobs(app)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :k", k=k)
