"""Optional password (Argon2id), password sign-in and lockout (policy 1.1)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from kares import clock
from tests.conftest import PHONE, bearer, count_rows, sign_up, snapshot

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
    """Guesses sent all at once, not one after another: each is counted by the
    database before its password is checked, so exactly five passwords are
    checked and the other eleven are refused without one, like guesses in a row."""
    await _with_password(client, sms)
    answers = await asyncio.gather(
        *(
            client.post(LOGIN, json={"phone": PHONE, "password": f"wrong-pass-{i}"})
            for i in range(16)
        )
    )
    assert sorted(r.status_code for r in answers) == [401] * 5 + [423] * 11
    async with db.engine.connect() as conn:
        failures, locked = (
            await conn.execute(
                text("SELECT failures, locked_until FROM password_limits WHERE scope = 'number'")
            )
        ).one()
    assert locked is not None and failures == 5  # refused guesses are not counted
    r = await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})
    assert r.status_code == 423 and r.json()["code"] == "auth.locked"


async def test_lockout_leaves_sms_sign_in_open(client: httpx.AsyncClient, sms) -> None:
    await _with_password(client, sms)
    for _ in range(5):
        await client.post(LOGIN, json={"phone": PHONE, "password": "wrong-pass-1"})
    assert (await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})).status_code == 423
    again = await sign_up(client, sms)  # the owner can still get in by SMS
    assert again["created"] is False
    # and having signed in, the owner's password works again at once
    assert (await client.post(LOGIN, json={"phone": PHONE, "password": GOOD})).status_code == 200


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


# --- limits per number and per address, the same for unknown numbers ---------------

UNKNOWN = "+8613999999999"


@pytest.fixture
def still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's clock stands still (tests still move it with clock.advance):
    two answers compared for equality, Retry-After included, are computed at the
    same instant however busy the machine is."""
    start = datetime.now(UTC)
    monkeypatch.setattr(clock, "utcnow", lambda: start + clock._offset)


def _login(client: httpx.AsyncClient, phone: str, password: str, ip: str):
    return client.post(
        LOGIN, json={"phone": phone, "password": password}, headers={"X-Forwarded-For": ip}
    )


def _answer(r: httpx.Response) -> tuple[int, object, str | None]:
    return r.status_code, r.json(), r.headers.get("Retry-After")


async def test_an_unknown_number_answers_like_a_registered_one_at_every_count(
    client: httpx.AsyncClient, sms, db, still_clock
) -> None:
    """Wrong passwords for a registered number and for a number nobody has, side
    by side (each from its own address): the same status, body and Retry-After at
    every count, through the lockout, its end, a second lockout and the hourly
    limit per number."""
    await _with_password(client, sms)
    seen = []
    for i in range(14):
        if i in (6, 12):
            clock.advance(901)  # the lock runs out
        a = await _login(client, PHONE, "wrong-pass-1", "198.51.100.1")
        b = await _login(client, UNKNOWN, "wrong-pass-1", "198.51.100.2")
        assert _answer(a) == _answer(b), i
        seen.append(a.json()["code"])
    bad, locked, limit = "auth.invalid_credentials", "auth.locked", "auth.number_limit"
    assert seen == [bad] * 5 + [locked] + [bad] * 5 + [locked] + [limit] * 2
    # ten passwords checked in the hour for each number, and not one more
    async with db.engine.connect() as conn:
        counts = (
            await conn.execute(
                text("SELECT window_count FROM password_limits WHERE scope = 'number'")
            )
        ).scalars()
        assert sorted(counts) == [10, 10]
    clock.advance(3600)  # a new hour: the right password works again
    assert (await _login(client, PHONE, GOOD, "198.51.100.1")).status_code == 200


async def test_bursts_on_an_unknown_and_a_registered_number_are_answered_alike(
    client: httpx.AsyncClient, sms, still_clock
) -> None:
    await _with_password(client, sms)
    answers = {}
    for phone, ip in ((PHONE, "198.51.100.1"), (UNKNOWN, "198.51.100.2")):
        burst = await asyncio.gather(
            *(_login(client, phone, f"wrong-pass-{i}", ip) for i in range(12))
        )
        answers[phone] = sorted((r.status_code, r.json()["code"]) for r in burst)
    assert answers[PHONE] == answers[UNKNOWN]
    assert answers[PHONE] == [(401, "auth.invalid_credentials")] * 5 + [(423, "auth.locked")] * 7


@pytest.mark.parametrize("settings_overrides", [{"password_per_ip_per_hour": 4}])
async def test_wrong_passwords_from_one_address_are_limited_even_in_a_burst(
    client: httpx.AsyncClient, sms, db, still_clock
) -> None:
    """Twelve different numbers tried from one address at once: four passwords
    are checked, the rest are refused 429 with when to retry, and another address
    is not affected. A refused attempt counts against no number."""
    await _with_password(client, sms)
    burst = await asyncio.gather(
        *(_login(client, f"+86139000000{i:02d}", "wrong-pass-1", "203.0.113.9") for i in range(12))
    )
    assert sorted(r.status_code for r in burst) == [401] * 4 + [429] * 8
    refused = [r for r in burst if r.status_code == 429]
    assert {r.json()["code"] for r in refused} == {"auth.ip_limit"}
    assert {r.headers["Retry-After"] for r in refused} == {"3600"}
    assert await count_rows(db, "password_limits") == 1 + 4  # the address, four numbers
    # the owner, from elsewhere, signs in as usual
    assert (await _login(client, PHONE, GOOD, "198.51.100.1")).status_code == 200
    # a success is not a failure: it is taken back from the address's count
    ok = [await _login(client, PHONE, GOOD, "198.51.100.7") for _ in range(6)]
    assert {r.status_code for r in ok} == {200}
    clock.advance(3600)
    assert (await _login(client, UNKNOWN, "wrong-pass-1", "203.0.113.9")).status_code == 401


async def test_right_passwords_at_once_from_one_address_all_sign_in(
    client: httpx.AsyncClient, sms
) -> None:
    """Each attempt counts the address's row, then the number's; a success takes
    both back in the same order, in the transaction that signs in. Taken in
    opposite orders, PostgreSQL found a deadlock between the two (a 500 in about
    one burst of four in three)."""
    await _with_password(client, sms)
    for _ in range(6):  # four at a time: below the lockout, which counts before it checks
        burst = await asyncio.gather(
            *(_login(client, PHONE, GOOD, "203.0.113.20") for _ in range(4))
        )
        assert [r.status_code for r in burst] == [200] * 4, [r.text for r in burst]


@pytest.mark.parametrize(
    "settings_overrides", [{"password_per_number_per_hour": 3, "password_max_failures": 100}]
)
async def test_wrong_passwords_for_one_number_are_limited_per_hour_even_in_a_burst(
    client: httpx.AsyncClient, sms, still_clock
) -> None:
    await _with_password(client, sms)
    for phone in (PHONE, UNKNOWN):
        burst = await asyncio.gather(
            *(_login(client, phone, "wrong-pass-1", f"198.51.100.{i}") for i in range(10))
        )
        assert (
            sorted((r.status_code, r.json()["code"]) for r in burst)
            == [(401, "auth.invalid_credentials")] * 3 + [(429, "auth.number_limit")] * 7
        )
        assert {r.headers.get("Retry-After") for r in burst if r.status_code == 429} == {"3600"}
    r = await _login(client, PHONE, GOOD, "198.51.100.1")
    assert r.status_code == 429  # the limit holds for the right password too, until the hour ends
    clock.advance(3600)
    assert (await _login(client, PHONE, GOOD, "198.51.100.1")).status_code == 200


async def test_limits_that_ran_out_are_tidied_away(client: httpx.AsyncClient, db) -> None:
    for i in range(3):
        await _login(client, f"+86139000000{i:02d}", "wrong-pass-1", "203.0.113.9")
    assert await count_rows(db, "password_limits") == 4
    clock.advance(3601)
    # the address's first attempt of a new hour removes what limits nothing any more
    await _login(client, UNKNOWN, "wrong-pass-1", "203.0.113.9")
    assert await count_rows(db, "password_limits") == 2


async def test_a_bad_number_changes_nothing(client: httpx.AsyncClient, db) -> None:
    before = await snapshot(db)
    r = await client.post(LOGIN, json={"phone": "12", "password": "wrong-pass-1"})
    assert r.status_code == 422 and r.json()["code"] == "phone.invalid"
    assert await snapshot(db) == before
