"""Registration and sign-in with a phone number and an SMS one-time code (policy 1.1)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from kares import clock
from tests.conftest import PHONE, REGISTRATION, bearer, count_rows, sign_up, snapshot
from tests.support.fakes import FakeSmsGateway

SEND = "/api/v1/auth/sms/send"
VERIFY = "/api/v1/auth/sms/verify"


async def test_register_with_code_normalises_number(client: httpx.AsyncClient, sms) -> None:
    r = await client.post(SEND, json={"phone": "138 1234 5678"})  # national, default region CN
    assert r.status_code == 202, r.text
    assert r.json() == {"phone": "+86 138****5678", "expires_in": 300, "resend_after": 60}
    msg = sms.messages[-1]
    assert msg["to"] == PHONE
    assert msg["authorization"] == "Bearer sms-secret"
    code = msg["params"]["code"]
    assert len(code) == 6 and code.isdigit()
    assert code in msg["text"]

    r = await client.post(VERIFY, json={**REGISTRATION, "phone": "+86 13812345678", "code": code})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] is True
    assert body["account"]["phone"] == PHONE
    assert body["token"].startswith("kares_")
    me = await client.get("/api/v1/me", headers=bearer(body["token"]))
    assert me.status_code == 200
    assert me.json()["id"] == body["account"]["id"]


async def test_second_sign_in_reuses_the_account(client: httpx.AsyncClient, sms, db) -> None:
    first = await sign_up(client, sms)
    again = await sign_up(client, sms, phone="(+86) 138-1234-5678")
    assert again["created"] is False
    assert again["account"]["id"] == first["account"]["id"]
    assert await count_rows(db, "accounts") == 1


@pytest.mark.parametrize(
    ("phone", "code"),
    [
        ("12345", "phone.invalid"),
        ("not a number", "phone.invalid"),
        ("+86 1381234567", "phone.invalid"),  # one digit short
        ("+999 12345678", "phone.invalid"),  # no such country
        ("+86 10 6552 9988", "phone.not_mobile"),  # Beijing landline
    ],
)
async def test_malformed_numbers_are_refused(
    client: httpx.AsyncClient, sms, db, phone: str, code: str
) -> None:
    before = await snapshot(db)
    r = await client.post(SEND, json={"phone": phone})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    assert sms.messages == []
    assert await snapshot(db) == before


async def test_wrong_code_is_refused_and_counts(client: httpx.AsyncClient, sms, db) -> None:
    await client.post(SEND, json={"phone": PHONE})
    right = sms.last_code(PHONE)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": wrong})
    assert r.status_code == 400
    assert r.json()["code"] == "otp.invalid"
    assert r.json()["remaining_attempts"] == 4
    assert await count_rows(db, "accounts") == 0
    assert await count_rows(db, "sessions") == 0
    # the right code still works afterwards
    r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": right})
    assert r.status_code == 201


async def test_malformed_code_is_not_an_attempt(client: httpx.AsyncClient, sms, db) -> None:
    await client.post(SEND, json={"phone": PHONE})
    before = await snapshot(db)
    for bad in ("12345", "1234567", "abcdef", "12 456"):
        r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": bad})
        assert r.status_code == 422
        assert r.json()["code"] == "otp.malformed"
    assert await snapshot(db) == before


async def test_code_expires_after_five_minutes(client: httpx.AsyncClient, sms, db) -> None:
    await client.post(SEND, json={"phone": PHONE})
    code = sms.last_code(PHONE)
    clock.advance(299)
    clock.advance(1.5)
    before = await snapshot(db)
    r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": code})
    assert r.status_code == 400
    assert r.json()["code"] == "otp.expired"
    assert await snapshot(db) == before


async def test_code_valid_just_before_expiry(client: httpx.AsyncClient, sms) -> None:
    await client.post(SEND, json={"phone": PHONE})
    clock.advance(295)
    r = await client.post(
        VERIFY, json={**REGISTRATION, "phone": PHONE, "code": sms.last_code(PHONE)}
    )
    assert r.status_code == 201


async def test_code_is_single_use(client: httpx.AsyncClient, sms, db) -> None:
    await client.post(SEND, json={"phone": PHONE})
    code = sms.last_code(PHONE)
    assert (
        await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": code})
    ).status_code == 201
    before = await snapshot(db)
    r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": code})
    assert r.status_code == 400
    assert r.json()["code"] == "otp.used"
    assert await snapshot(db) == before
    assert await count_rows(db, "sessions") == 1


async def test_concurrent_use_of_one_code_signs_in_once(client: httpx.AsyncClient, sms, db) -> None:
    await client.post(SEND, json={"phone": PHONE})
    code = sms.last_code(PHONE)
    results = await asyncio.gather(
        *[
            client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": code})
            for _ in range(5)
        ]
    )
    ok = [r for r in results if r.status_code in (200, 201)]
    assert len(ok) == 1, [r.text for r in results]
    for r in results:
        assert r.status_code < 500, r.text
    assert await count_rows(db, "sessions") == 1
    assert await count_rows(db, "accounts") == 1


async def test_five_wrong_tries_burn_the_code(client: httpx.AsyncClient, sms, db) -> None:
    await client.post(SEND, json={"phone": PHONE})
    right = sms.last_code(PHONE)
    wrong = f"{(int(right) + 7) % 1_000_000:06d}"
    codes = []
    for _ in range(5):
        r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": wrong})
        codes.append(r.json()["code"])
    assert codes == ["otp.invalid"] * 4 + ["otp.too_many_attempts"]
    r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": right})
    assert r.status_code == 429
    assert r.json()["code"] == "otp.too_many_attempts"
    assert await count_rows(db, "accounts") == 0
    # a new code works
    clock.advance(61)
    await client.post(SEND, json={"phone": PHONE})
    r = await client.post(
        VERIFY, json={**REGISTRATION, "phone": PHONE, "code": sms.last_code(PHONE)}
    )
    assert r.status_code == 201


async def test_brute_force_over_many_codes_is_bounded(client: httpx.AsyncClient, sms, db) -> None:
    """An attacker gets at most 5 guesses a code and 5 codes an hour: 25 guesses of 10^6."""
    guesses = 0
    for _ in range(10):
        r = await client.post(SEND, json={"phone": PHONE})
        if r.status_code == 429:
            assert r.json()["code"] == "otp.number_limit"
            break
        for g in range(10):
            r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": f"{g:06d}"})
            if r.status_code == 429:
                break
            if r.status_code == 201:  # astronomically unlikely; would be a real code
                pytest.skip("guessed a real code")
            guesses += 1
        clock.advance(61)
    assert guesses <= 5 * 5
    assert await count_rows(db, "sessions") == 0


async def test_only_the_newest_code_counts(client: httpx.AsyncClient, sms) -> None:
    await client.post(SEND, json={"phone": PHONE})
    old = sms.last_code(PHONE)
    clock.advance(61)
    await client.post(SEND, json={"phone": PHONE})
    new = sms.last_code(PHONE)
    if old != new:
        r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": old})
        assert r.status_code == 400
        assert r.json()["code"] == "otp.invalid"
    r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": new})
    assert r.status_code == 201


async def test_verify_without_request(client: httpx.AsyncClient, sms, db) -> None:
    r = await client.post(VERIFY, json={**REGISTRATION, "phone": PHONE, "code": "123456"})
    assert r.status_code == 400
    assert r.json()["code"] == "otp.not_requested"
    assert await count_rows(db, "accounts") == 0


async def test_resend_cooldown(client: httpx.AsyncClient, sms) -> None:
    assert (await client.post(SEND, json={"phone": PHONE})).status_code == 202
    clock.advance(30)
    r = await client.post(SEND, json={"phone": PHONE})
    assert r.status_code == 429
    assert r.json()["code"] == "otp.cooldown"
    assert 29 <= int(r.headers["Retry-After"]) <= 31
    assert len(sms.messages) == 1
    clock.advance(31)
    assert (await client.post(SEND, json={"phone": PHONE})).status_code == 202


async def test_per_number_hourly_cap(client: httpx.AsyncClient, sms) -> None:
    for _ in range(5):
        assert (await client.post(SEND, json={"phone": PHONE})).status_code == 202
        clock.advance(61)
    r = await client.post(SEND, json={"phone": PHONE})
    assert r.status_code == 429
    assert r.json()["code"] == "otp.number_limit"
    assert int(r.headers["Retry-After"]) > 0
    assert len(sms.messages) == 5
    clock.advance(3600)
    assert (await client.post(SEND, json={"phone": PHONE})).status_code == 202


async def test_per_ip_hourly_cap(client: httpx.AsyncClient, sms) -> None:
    ip = {"X-Forwarded-For": "203.0.113.9"}
    for i in range(20):
        r = await client.post(SEND, json={"phone": f"+861390000{i:04d}"}, headers=ip)
        assert r.status_code == 202, r.text
    r = await client.post(SEND, json={"phone": "+8613900009999"}, headers=ip)
    assert r.status_code == 429
    assert r.json()["code"] == "otp.ip_limit"
    # another network is not affected
    r = await client.post(
        SEND, json={"phone": "+8613900009999"}, headers={"X-Forwarded-For": "198.51.100.7"}
    )
    assert r.status_code == 202


async def test_untrusted_forwarded_for_is_ignored(client: httpx.AsyncClient, sms, app) -> None:
    app.state.runtime.settings.trusted_proxies = []
    try:
        for i in range(20):
            r = await client.post(
                SEND,
                json={"phone": f"+861390000{i:04d}"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            assert r.status_code == 202
        # spoofing a new X-Forwarded-For does not escape the per-IP cap
        r = await client.post(
            SEND, json={"phone": "+8613900009999"}, headers={"X-Forwarded-For": "192.0.2.1"}
        )
        assert r.status_code == 429
        assert r.json()["code"] == "otp.ip_limit"
    finally:
        app.state.runtime.settings.trusted_proxies = ["127.0.0.1"]


async def test_sms_provider_down_is_502_and_retryable(
    client: httpx.AsyncClient, sms: FakeSmsGateway, db
) -> None:
    sms.fail_with = 503
    before = await snapshot(db)
    r = await client.post(SEND, json={"phone": PHONE})
    assert r.status_code == 502
    assert r.json()["code"] == "sms.unavailable"
    assert await snapshot(db) == before
    sms.fail_with = None
    r = await client.post(SEND, json={"phone": PHONE})  # no cooldown from the failed send
    assert r.status_code == 202


async def test_web_client_gets_secure_httponly_cookie(client: httpx.AsyncClient, sms) -> None:
    await client.post(SEND, json={"phone": PHONE})
    r = await client.post(
        VERIFY, json={**REGISTRATION, "phone": PHONE, "code": sms.last_code(PHONE), "client": "web"}
    )
    assert r.status_code == 201
    assert r.json()["token"] is None
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("kares_session=kares_")
    low = cookie.lower()
    assert "httponly" in low and "secure" in low and "samesite=lax" in low and "path=/" in low
    # the cookie signs the portal in
    me = await client.get("/api/v1/me")
    assert me.status_code == 200
    # changing something with only the cookie needs the CSRF header
    r = await client.patch("/api/v1/me", json={"name": "Li"})
    assert r.status_code == 403
    assert r.json()["code"] == "auth.csrf"
    assert (await client.get("/api/v1/me")).json()["name"] is None
    r = await client.patch("/api/v1/me", json={"name": "Li"}, headers={"X-Kares-CSRF": "1"})
    assert r.status_code == 200
    assert r.json()["name"] == "Li"
    # sign out clears it
    r = await client.post("/api/v1/auth/logout", headers={"X-Kares-CSRF": "1"})
    assert r.status_code == 204
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_unknown_fields_are_refused(client: httpx.AsyncClient, sms, db) -> None:
    r = await client.post(SEND, json={"phone": PHONE, "admin": True})
    assert r.status_code == 422
    assert r.json()["code"] == "request.invalid"
    assert sms.messages == []


@pytest.mark.parametrize("settings_overrides", [{"sms_sender": "file"}])
async def test_file_sender_writes_json_lines(client: httpx.AsyncClient, settings, sms) -> None:
    import json

    r = await client.post(SEND, json={"phone": PHONE})
    assert r.status_code == 202
    outbox = settings.var_dir / "sms-outbox.jsonl"
    [line] = outbox.read_text().splitlines()
    msg = json.loads(line)
    assert msg["to"] == PHONE and msg["template"] == "otp"
    assert sms.messages == []  # nothing went to the HTTP gateway
    r = await client.post(
        VERIFY, json={**REGISTRATION, "phone": PHONE, "code": msg["params"]["code"]}
    )
    assert r.status_code == 201


@pytest.mark.parametrize("settings_overrides", [{"sms_http_url": "http://127.0.0.1:9/unreachable"}])
async def test_unreachable_sms_gateway_is_502(client: httpx.AsyncClient, db) -> None:
    before = await snapshot(db)
    r = await client.post(SEND, json={"phone": PHONE})
    assert r.status_code == 502
    assert r.json()["code"] == "sms.unavailable"
    assert await snapshot(db) == before
