"""Deletion (policy 5.2, 5.4): chosen data at once, the account after a cooling-off
period, carried out by a job, with its family handed over or dissolved first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from kares import clock, jobs
from kares.errors import Problem
from kares.identity.models import Account
from tests.conftest import bearer, count_rows, query, sign_up
from tests.test_families import join, new_family, person, problem
from tests.test_location_ingest import fix, member, ms, upload

DELETION = "/api/v1/me/deletion"
CHOSEN = "/api/v1/me/data/deletion"
ANN, BO, CY = "+8613700002001", "+8613700002002", "+8613700002003"


async def code_for(client: httpx.AsyncClient, sms: Any, me: dict[str, Any]) -> str:
    r = await client.post(f"{DELETION}/code", headers=bearer(me["token"]))
    assert r.status_code == 202, r.text
    code = sms.last_code(me["account"]["phone"])
    clock.advance(61)
    return str(code)


async def ask(
    client: httpx.AsyncClient, sms: Any, me: dict[str, Any], **body: Any
) -> httpx.Response:
    code = await code_for(client, sms, me)
    return await client.post(DELETION, json={"code": code, **body}, headers=bearer(me["token"]))


async def run_jobs(app: Any) -> None:
    await jobs.run_due(app.state.runtime)


async def inbox(client: httpx.AsyncClient, me: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/notifications", headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    body = r.json()
    return list(body["items"] if isinstance(body, dict) else body)


async def test_an_account_is_deleted_after_the_cooling_off_period(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    ann = await sign_up(client, sms, ANN)
    bo = await sign_up(client, sms, BO)
    a = ann["account"]["id"]
    r = await ask(client, sms, ann)
    assert r.status_code == 202, r.text
    out = r.json()
    due = (clock.utcnow() + timedelta(days=15)).date().isoformat()
    assert (out["status"], out["due_on"]) == ("pending", due)
    assert (await client.get(DELETION, headers=bearer(ann["token"]))).json()["status"] == "pending"
    # a second request while one is pending
    problem(await ask(client, sms, ann), 409, "rights.deletion_pending")
    # not before its day
    clock.advance(14 * 86400)
    await run_jobs(app)
    assert await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    clock.advance(2 * 86400)
    await run_jobs(app)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    # the tombstone holds counts and no id
    [entry] = await query(db, "SELECT * FROM deletion_register")
    assert entry["scope"] == "account" and a not in repr(entry)
    # Bo is still there
    assert await query(db, "SELECT id FROM accounts WHERE id = :b", b=bo["account"]["id"])
    # Ann's token no longer works
    r = await client.get("/api/v1/me", headers=bearer(ann["token"]))
    assert r.status_code == 401


async def test_a_wrong_code_changes_nothing(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    ann = await sign_up(client, sms, ANN)
    await code_for(client, sms, ann)
    r = await client.post(DELETION, json={"code": "000000"}, headers=bearer(ann["token"]))
    problem(r, 400, {"otp.invalid", "otp.not_requested"})
    assert await count_rows(db, "deletion_requests") == 0
    r = await client.post(
        DELETION, json={"code": "123456", "password": "wrong-pass-1"}, headers=bearer(ann["token"])
    )
    problem(r, 403, "auth.reauth_required")


async def test_cancelling_and_signing_in_cancel_it_and_the_person_is_told(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    ann = await sign_up(client, sms, ANN)
    assert (await ask(client, sms, ann)).status_code == 202
    r = await client.delete(DELETION, headers=bearer(ann["token"]))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert r.json()["cancel_reason"] == "asked"
    problem(await client.delete(DELETION, headers=bearer(ann["token"])), 404, "rights.no_deletion")
    assert (await ask(client, sms, ann)).status_code == 202
    again = await sign_up(client, sms, ANN)  # signing in on any device
    st = (await client.get(DELETION, headers=bearer(again["token"]))).json()
    assert (st["status"], st["cancel_reason"]) == ("cancelled", "signed_in")
    titles = [n["title"] for n in await inbox(client, again)]
    assert "Your account will not be deleted" in titles
    clock.advance(20 * 86400)
    await run_jobs(app)
    assert await query(db, "SELECT id FROM accounts WHERE id = :a", a=ann["account"]["id"])


async def test_an_owner_hands_the_family_over_first_and_members_are_told(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    ann = await person(client, sms, ANN, "Ann")
    bo = await person(client, sms, BO, "Bo")
    cy = await person(client, sms, CY, "Cy")
    fid = await new_family(client, ann, "Anns")
    other = await new_family(client, ann, "Second")
    await join(client, ann, fid, bo)
    await join(client, ann, fid, cy)
    body = problem(await ask(client, sms, ann), 409, "rights.family_owner")
    assert {f["id"] for f in body["families"]} == {fid, other}
    assert bo["account"]["id"] in next(f for f in body["families"] if f["id"] == fid)["heirs"]
    r = await ask(
        client,
        sms,
        ann,
        families=[
            {"family_id": fid, "action": "transfer", "to": bo["account"]["id"]},
            {"family_id": other, "action": "dissolve"},
        ],
    )
    assert r.status_code == 202, r.text
    clock.advance(16 * 86400)
    await run_jobs(app)
    [fam] = await query(db, "SELECT owner_account_id FROM families WHERE id = :f", f=fid)
    assert fam["owner_account_id"] == bo["account"]["id"]
    assert not await query(db, "SELECT id FROM families WHERE id = :f", f=other)
    assert "Anns has a new owner" in [n["title"] for n in await inbox(client, cy)]


async def test_chosen_data_last_weeks_location_goes_and_the_last_location_follows(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, ANN)
    a = me["account"]["id"]
    now = clock.utcnow()
    old = [fix(i, now - timedelta(days=20, minutes=i)) for i in range(3)]
    recent = [fix(10 + i, now - timedelta(days=3, minutes=i), lat=30.1) for i in range(3)]
    r = await upload(client, me, old + recent)
    assert r.status_code in (200, 201), r.text
    since = (now - timedelta(days=7)).isoformat()
    r = await client.post(
        CHOSEN,
        json={"category": "location.precise", "since": since, "until": now.isoformat()},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["deleted"]["location_fixes"] == 3
    left = await query(db, "SELECT recorded_ms FROM location_fixes WHERE account_id = :a", a=a)
    assert sorted(x["recorded_ms"] for x in left) == sorted(
        ms(now - timedelta(days=20, minutes=i)) for i in range(3)
    )
    [last] = await query(
        db, "SELECT recorded_ms, lat FROM location_last WHERE account_id = :a", a=a
    )
    assert last["recorded_ms"] == ms(now - timedelta(days=20))
    # the register remembers the choice, without the id
    [entry] = await query(db, "SELECT * FROM deletion_register")
    assert (entry["scope"], entry["category"]) == ("chosen", "location.precise")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"category": "contact.phone"}, 409, "rights.category_kept"),
        ({"category": "privacy.consent"}, 409, "rights.category_kept"),
        ({"category": "nope.nope"}, 422, "rights.unknown_category"),
        (
            {
                "category": "location.precise",
                "since": "2026-12-06T00:00:00+00:00",
                "until": "2026-12-01T00:00:00+00:00",
            },
            422,
            "rights.bad_range",
        ),
        ({"category": "location.precise", "account_id": "0" * 32}, 404, "rights.not_guardian"),
    ],
)
async def test_choices_that_cannot_be_carried_out_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, body: dict[str, Any], status: int, code: str
) -> None:
    from tests.conftest import snapshot

    me = await member(client, sms, ANN)
    before = await snapshot(db)
    problem(await client.post(CHOSEN, json=body, headers=bearer(me["token"])), status, code)
    assert await snapshot(db) == before


async def test_a_row_holding_what_must_stay_is_kept_and_the_answer_says_why(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ann = await sign_up(client, sms, ANN, device={"id": "IDFV-ANN", "model": "iPhone15,2"})
    a = ann["account"]["id"]
    r = await client.post(
        CHOSEN, json={"category": "device.identifier"}, headers=bearer(ann["token"])
    )
    assert r.status_code == 200, r.text
    out = r.json()
    # the device record goes; sign-in records keep theirs (the law keeps them six months)
    assert out["deleted"]["devices"] == 1
    assert "security.login_environment" in out["kept"]["sessions"]
    assert "security.login_environment" in out["kept"]["login_events"]
    assert "consent_receipts" in out["kept"]
    assert not await query(db, "SELECT id FROM devices WHERE account_id = :a", a=a)
    assert await query(db, "SELECT id FROM login_events WHERE account_id = :a", a=a)
    # the session still works
    assert (await client.get("/api/v1/me", headers=bearer(ann["token"]))).status_code == 200


async def test_a_guardian_deletes_a_dependants_chosen_data(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ann = await person(client, sms, ANN, "Ann")
    bo = await person(client, sms, BO, "Bo")
    fid = await new_family(client, ann)
    await join(client, ann, fid, bo)
    r = await client.post(
        f"/api/v1/families/{fid}/dependants",
        json={"name": "Grandma", "age_bracket": "adult"},
        headers=bearer(ann["token"]),
    )
    assert r.status_code == 201, r.text
    dep = r.json()["member"]["account_id"]
    body = {"category": "account.profile", "account_id": dep}
    # a member who is not its guardian may not
    problem(
        await client.post(CHOSEN, json=body, headers=bearer(bo["token"])),
        404,
        "rights.not_guardian",
    )
    r = await client.post(CHOSEN, json=body, headers=bearer(ann["token"]))
    assert r.status_code == 200, r.text
    assert r.json()["cleared"]["accounts"] == 1
    [row] = await query(db, "SELECT name FROM accounts WHERE id = :d", d=dep)
    assert row["name"] is None


async def hold(db: Any, account_id: str) -> None:
    from kares.retention import service as retention

    async with db.sessions() as s:
        await retention.hold(s, account_id=account_id, reason="court order 2026-17")
        await s.commit()


async def release(db: Any, account_id: str) -> None:
    from kares.retention import service as retention

    async with db.sessions() as s:
        await retention.release(s, account_id=account_id)
        await s.commit()


async def test_a_legal_hold_keeps_the_data_until_it_is_released(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    """Policy 5.2: what a law requires us to keep is kept, stored only; deleting
    it (chosen data, the account, the operator's command) waits for the release."""
    from kares.rights import erase

    bo = await member(client, sms, BO)
    b = bo["account"]["id"]
    now = clock.utcnow()
    r = await upload(client, bo, [fix(1, now - timedelta(days=2))])
    assert r.status_code in (200, 201), r.text
    await hold(db, b)

    # chosen data: refused, nothing changes
    r = await client.post(
        CHOSEN, json={"category": "location.precise"}, headers=bearer(bo["token"])
    )
    problem(r, 409, "rights.legal_hold")
    assert await count_rows(db, "location_fixes") == 1
    # the operator's deletion at once: refused
    async with db.sessions() as s:
        account = await s.get(Account, b)
    assert account is not None
    with pytest.raises(Problem, match="The law requires us to keep") as caught:
        await erase.delete_now(app.state.runtime, account)
    assert caught.value.code == "rights.legal_hold"
    assert await query(db, "SELECT id FROM accounts WHERE id = :b", b=b)

    # the account: the request is taken, and waits past its day while the hold lasts
    assert (await ask(client, sms, bo)).status_code == 202
    clock.advance(16 * 86400)
    await run_jobs(app)
    assert await query(db, "SELECT id FROM accounts WHERE id = :b", b=b)
    assert await count_rows(db, "location_fixes") == 1
    clock.advance(86400)
    await run_jobs(app)
    assert await query(db, "SELECT id FROM accounts WHERE id = :b", b=b)

    # released: the next look (within the hour) deletes it
    await release(db, b)
    clock.advance(erase.HOLD_RECHECK.total_seconds() + 1)
    await run_jobs(app)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :b", b=b)
    assert await count_rows(db, "location_fixes") == 0
