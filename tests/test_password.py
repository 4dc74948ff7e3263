"""Optional password (Argon2id), password sign-in and lockout (policy 1.1)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from kares import clock
from tests.conftest import PHONE, bearer, sign_up, snapshot

LOGIN = "/api/v1/auth/password"
GOOD = "correct-horse-9"


async def _with_password(client: httpx.AsyncClient, sms) -> dict:
    me = await sign_up(client, sms)
    r = await client.put(
        "/api/v1/me/password", json={"new_password": GOOD}, headers=bearer(me["token"])
    )
    assert r.status_code == 200, r.text
    return me


async def test_password_is_stored_as_argon2id(client: httpx.AsyncClient, sms, db) -> None:
    await _with_password(client, sms)
    async with db.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT password_hash FROM accounts"))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert GOOD not in stored


async def test_sign_in_with_password(client: httpx.AsyncClient, sms) -> None:
    me = await _with_password(client, sms)
    r = await client.post(LOGIN, json={"phone": "13812345678", "password": GOOD})
    assert r.status_code == 200, r.text
    assert r.json()["account"]["id"] == me["account"]["id"]
    assert r.json()["account"]["has_password"] is True
    assert (await client.get("/api/v1/me", headers=bearer(r.json()["token"]))).status_code == 200


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short1!", "length"),
        ("onlyletters", "kinds"),
        ("1234567890", "kinds"),
        ("ab13812345678", "phone"),
    ],
)
async def test_weak_passwords_are_refused(
    client: httpx.AsyncClient, sms, db, password, why
) -> None:
    me = await sign_up(client, sms)
    before = await snapshot(db)
    r = await client.put(
        "/api/v1/me/password", json={"new_password": password}, headers=bearer(me["token"])
    )
    assert r.status_code == 422, why
    assert r.json()["code"] == "password.too_weak"
    assert await snapshot(db) == before


async def test_wrong_password_and_unknown_number_look_the_same(
    client: httpx.AsyncClient, sms
) -> None:
    await _with_password(client, sms)
    a = await client.post(LOGIN, json={"phone": PHONE, "password": "wrong-pass-1"})
    b = await client.post(LOGIN, json={"phone": "+8613999999999", "password": "wrong-pass-1"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()
    assert a.json()["code"] == "auth.invalid_credentials"


async def test_account_without_password_cannot_password_sign_in(
    client: httpx.AsyncClient, sms
) -> None:
    await sign_up(client, sms)
    r = await client.post(LOGIN, json={"phone": PHONE, "password": "anything-1"})
    assert r.status_code == 401
    assert r.json()["code"] == "auth.invalid_credentials"


async def test_lockout_after_five_failures(client: httpx.AsyncClient, sms, db) -> None:
    await _with_password(client, sms)
    for _ in range(5):
        r = await client.post(LOGIN, json={"phone": PHONE, "password": "wrong-pass-1"})
        assert r.status_code == 401
    # now even the right password is refused, with a clear code and when to retry
    r = await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})
    assert r.status_code == 423
    assert r.json()["code"] == "auth.locked"
    assert 890 <= int(r.headers["Retry-After"]) <= 900
    clock.advance(901)
    r = await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})
    assert r.status_code == 200


async def test_a_burst_of_wrong_passwords_at_once_still_locks(
    client: httpx.AsyncClient, sms, db
) -> None:
    """Guesses sent all at once, not one after another: every one of them counts
    (the database adds each), so the burst locks the account like five in a row."""
    import asyncio

    await _with_password(client, sms)
    answers = await asyncio.gather(
        *(
            client.post(LOGIN, json={"phone": PHONE, "password": f"wrong-pass-{i}"})
            for i in range(16)
        )
    )
    assert all(r.status_code in (401, 423) for r in answers), [r.text for r in answers]
    async with db.engine.connect() as conn:
        failures, locked = (
            await conn.execute(text("SELECT password_failures, locked_until FROM accounts"))
        ).one()
    assert locked is not None  # five of the sixteen were enough
    assert 0 <= failures < 5  # each lock starts the count again; it never passes the limit
    r = await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})
    assert r.status_code == 423 and r.json()["code"] == "auth.locked"


async def test_lockout_leaves_sms_sign_in_open(client: httpx.AsyncClient, sms) -> None:
    await _with_password(client, sms)
    for _ in range(5):
        await client.post(LOGIN, json={"phone": PHONE, "password": "wrong-pass-1"})
    assert (await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})).status_code == 423
    again = await sign_up(client, sms)  # the owner can still get in by SMS
    assert again["created"] is False


async def test_successful_sign_in_resets_failure_count(client: httpx.AsyncClient, sms) -> None:
    await _with_password(client, sms)
    for _ in range(4):
        await client.post(LOGIN, json={"phone": PHONE, "password": "wrong-pass-1"})
    assert (await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})).status_code == 200
    for _ in range(4):
        await client.post(LOGIN, json={"phone": PHONE, "password": "wrong-pass-1"})
    assert (await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})).status_code == 200


async def test_failed_attempts_are_recorded_with_environment(
    client: httpx.AsyncClient, sms
) -> None:
    me = await _with_password(client, sms)
    await client.post(
        LOGIN,
        json={"phone": PHONE, "password": "wrong-pass-1", "device": {"model": "SM-G9910"}},
        headers={"X-Forwarded-For": "203.0.113.50"},
    )
    logins = (await client.get("/api/v1/me/logins", headers=bearer(me["token"]))).json()
    failed = [e for e in logins if not e["success"]]
    assert len(failed) == 1
    assert failed[0]["reason"] == "bad_password"
    assert failed[0]["ip"] == "203.0.113.50"
    assert failed[0]["device_model"] == "SM-G9910"


async def test_changing_password_needs_the_old_one_or_a_code(
    client: httpx.AsyncClient, sms, db
) -> None:
    me = await _with_password(client, sms)
    h = bearer(me["token"])
    before = await snapshot(db)
    r = await client.put("/api/v1/me/password", json={"new_password": "another-pass-2"}, headers=h)
    assert r.status_code == 403
    assert r.json()["code"] == "auth.reauth_required"
    r = await client.put(
        "/api/v1/me/password",
        json={"new_password": "another-pass-2", "current_password": "wrong-pass-1"},
        headers=h,
    )
    assert r.status_code == 403
    assert await snapshot(db) == before
    r = await client.put(
        "/api/v1/me/password",
        json={"new_password": "another-pass-2", "current_password": GOOD},
        headers=h,
    )
    assert r.status_code == 200
    # or with a code sent to the account's own phone
    clock.advance(61)
    r = await client.post("/api/v1/me/password/code", headers=h)
    assert r.status_code == 202
    code = sms.last_code(PHONE)
    r = await client.put(
        "/api/v1/me/password", json={"new_password": "third-pass-3", "code": code}, headers=h
    )
    assert r.status_code == 200, r.text
    ok = await client.post(LOGIN, json={"phone": PHONE, "password": "third-pass-3"})
    assert ok.status_code == 200


async def test_a_login_code_is_not_a_password_change_code(client: httpx.AsyncClient, sms) -> None:
    me = await _with_password(client, sms)
    await client.post("/api/v1/auth/sms/send", json={"phone": PHONE})
    login_code = sms.last_code(PHONE)
    r = await client.put(
        "/api/v1/me/password",
        json={"new_password": "another-pass-2", "code": login_code},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 400
    assert r.json()["code"] == "otp.not_requested"


async def test_password_change_signs_out_other_sessions(client: httpx.AsyncClient, sms) -> None:
    me = await _with_password(client, sms)
    other = (await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})).json()
    r = await client.put(
        "/api/v1/me/password",
        json={"new_password": "another-pass-2", "current_password": GOOD},
        headers=bearer(me["token"]),
    )
    assert r.json()["revoked"] == 1
    assert (await client.get("/api/v1/me", headers=bearer(other["token"]))).status_code == 401
    assert (await client.get("/api/v1/me", headers=bearer(me["token"]))).status_code == 200
