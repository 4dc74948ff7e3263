"""The privacy core: every route declares its function, every column its
category, and removing a consent, a permission or a guardian's approval
refuses exactly what needs it (driven by the catalog itself)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from kares.app import create_app
from kares.domains import metadata
from kares.errors import Problem
from kares.privacy import catalog as catalog_mod
from kares.privacy import guard as guard_mod
from kares.privacy import ports
from kares.privacy import service as privacy
from kares.privacy.guard import Guard, api_routes, guard, route_guards
from tests.conftest import PHONE, POLICY_VERSION, REGISTRATION, bearer, sign_up, snapshot

CAT = catalog_mod.load()

# --- declarations -------------------------------------------------------------------------


def test_every_route_declares_a_function(app: Any) -> None:
    undeclared = [f"{sorted(r.methods)} {r.path}" for r in api_routes(app) if not route_guards(r)]
    assert undeclared == []
    for r in api_routes(app):
        for g in route_guards(r):
            assert g.function in CAT.functions


def test_declaring_an_unknown_function_fails_at_start_up(settings: Any) -> None:
    app = create_app(settings, migrate_embedded=False)
    bad = APIRouter()

    @bad.get("/api/v1/nope", dependencies=[guard("telepathy")])
    async def nope() -> dict[str, str]:
        return {}

    app.include_router(bad)
    from kares.privacy.guard import check_routes

    with pytest.raises(ValueError, match="telepathy"):
        check_routes(app, CAT)


@pytest.mark.db_agnostic
def test_every_column_is_classified() -> None:
    unclassified = []
    for t in metadata.sorted_tables:
        info = t.info or {}
        assert "subject_column" in info, f"table {t.name} has no table_info(...)"
        allowed = set(info.get("not_personal", []))
        for c in t.columns:
            if "pi_category" in c.info or c.name in allowed or c.name == info["subject_column"]:
                continue
            unclassified.append(f"{t.name}.{c.name}")
        if info["subject_column"] is None:
            assert info.get("why"), f"{t.name}: say why it is about no account"
    assert unclassified == [], "classify these with personal(...) or not_personal(...)"


@pytest.mark.db_agnostic
def test_declared_categories_exist_in_the_catalog() -> None:
    for t in metadata.sorted_tables:
        for c in t.columns:
            key = c.info.get("pi_category")
            if key is not None:
                assert key in CAT.categories, f"{t.name}.{c.name}: unknown category {key}"


# --- registration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        ({"age_bracket": "adult"}, 400, "consent.policy_required"),
        ({"age_bracket": "adult", "accept_policy": "1999-01-01"}, 400, "consent.policy_required"),
        ({"accept_policy": POLICY_VERSION}, 422, "account.age_required"),
        (
            {"accept_policy": POLICY_VERSION, "birth_date": "2999-01-01"},
            422,
            "account.invalid_birth_date",
        ),
    ],
)
async def test_registration_needs_policy_and_age(
    client: httpx.AsyncClient, sms: Any, db: Any, extra: dict, status: int, code: str
) -> None:
    await client.post("/api/v1/auth/sms/send", json={"phone": PHONE})
    sms_code = sms.last_code(PHONE)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/auth/sms/verify", json={"phone": PHONE, "code": sms_code, **extra}
    )
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    if code == "consent.policy_required":
        assert r.json()["policy_version"] == POLICY_VERSION
    assert await snapshot(db) == before
    # the code was not spent on the refused attempt
    r = await client.post(
        "/api/v1/auth/sms/verify", json={"phone": PHONE, "code": sms_code, **REGISTRATION}
    )
    assert r.status_code == 201


async def test_registration_records_a_receipt(client: httpx.AsyncClient, sms: Any) -> None:
    me = await sign_up(client, sms, device={"id": "IDFV-9", "model": "iPhone15,2"})
    receipts = (
        await client.get("/api/v1/me/consents/receipts", headers=bearer(me["token"]))
    ).json()
    assert len(receipts) == 1
    r = receipts[0]
    assert (r["subject"], r["action"], r["policy_version"], r["via"]) == (
        "policy",
        "grant",
        POLICY_VERSION,
        "app",
    )
    assert r["by_guardian"] is False


async def test_existing_accounts_sign_in_without_registration_fields(
    client: httpx.AsyncClient, sms: Any
) -> None:
    await sign_up(client, sms)
    await client.post("/api/v1/auth/sms/send", json={"phone": PHONE})
    r = await client.post(
        "/api/v1/auth/sms/verify", json={"phone": PHONE, "code": sms.last_code(PHONE)}
    )
    assert r.status_code == 200


# --- the ledger is append-only ---------------------------------------------------------------


async def test_receipts_cannot_be_changed_or_deleted(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    await sign_up(client, sms)
    for sql in (
        "UPDATE consent_receipts SET action = 'withdraw'",
        "DELETE FROM consent_receipts",
    ):
        with pytest.raises((IntegrityError, DBAPIError)):
            async with db.engine.begin() as conn:
                await conn.execute(text(sql))
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT action FROM consent_receipts"))).all()
    assert [r[0] for r in rows] == ["grant"]


async def test_receipts_go_with_a_deleted_account(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    await sign_up(client, sms)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE accounts SET status = 'deleting'"))
        await conn.execute(text("DELETE FROM accounts"))
    async with db.engine.connect() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM consent_receipts"))).scalar_one()
    assert n == 0


# --- consent changes --------------------------------------------------------------------------


async def _consent(
    client: httpx.AsyncClient, token: str, subject: str, action: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/me/consents",
        json={"subject": subject, "action": action, "policy_version": POLICY_VERSION},
        headers=bearer(token),
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"subject": "category:contact.phone", "action": "grant"}, 422, "consent.unknown_subject"),
        ({"subject": "function:health", "action": "grant"}, 422, "consent.unknown_subject"),
        ({"subject": "nonsense", "action": "withdraw"}, 422, "consent.unknown_subject"),
        (
            {"subject": "category:health.vitals", "action": "grant", "policy_version": "old"},
            409,
            "consent.policy_version_mismatch",
        ),
        ({"subject": "category:health.vitals", "action": "maybe"}, 422, "request.invalid"),
    ],
)
async def test_bad_consent_changes_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, body: dict, status: int, code: str
) -> None:
    me = await sign_up(client, sms)
    await client.get("/api/v1/me", headers=bearer(me["token"]))
    before = await snapshot(db)
    r = await client.post("/api/v1/me/consents", json=body, headers=bearer(me["token"]))
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert await snapshot(db) == before


async def test_consents_list_every_consentable_subject(client: httpx.AsyncClient, sms: Any) -> None:
    me = await sign_up(client, sms)
    body = (await client.get("/api/v1/me/consents", headers=bearer(me["token"]))).json()
    subjects = {c["subject"]: c for c in body["consents"]}
    assert set(subjects) == set(privacy.consentable(CAT))
    assert subjects["policy"]["granted"] and subjects["policy"]["current"]
    assert not subjects["category:location.precise"]["granted"]
    assert "category:contact.phone" not in subjects  # not sensitive: the policy covers it


async def test_withdrawal_stops_a_real_route_at_once(client: httpx.AsyncClient, sms: Any) -> None:
    me = await sign_up(client, sms)
    h = bearer(me["token"])
    assert (await client.get("/api/v1/notifications", headers=h)).status_code == 200
    assert (await _consent(client, me["token"], "policy", "withdraw")).status_code == 201
    r = await client.get("/api/v1/notifications", headers=h)
    assert r.status_code == 403
    assert r.json()["code"] == "consent.policy_required"
    # managing the account and one's choices keeps working
    assert (await client.get("/api/v1/me", headers=h)).status_code == 200
    assert (await client.get("/api/v1/me/consents", headers=h)).status_code == 200
    assert (await _consent(client, me["token"], "policy", "grant")).status_code == 201
    assert (await client.get("/api/v1/notifications", headers=h)).status_code == 200


# --- the catalog-driven test -----------------------------------------------------------------

PAIRS = [
    (fkey, feat)
    for fkey, f in CAT.functions.items()
    for feat in [None, *f.features]
    if not Guard(fkey, feat).is_public(CAT)
]


def _check_url(function: str, feature: str | None) -> str:
    url = f"/api/v1/me/functions/{function}"
    return url + (f"?feature={feature}" if feature else "")


async def _everything_granted(client: httpx.AsyncClient, sms: Any) -> dict[str, Any]:
    me = await sign_up(client, sms, device={"id": "catalog-probe", "model": "Probe"})
    for subject in privacy.consentable(CAT):
        if subject != "policy":
            assert (await _consent(client, me["token"], subject, "grant")).status_code == 201
    perms = {p: "granted" for p in CAT.permissions}
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": perms},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    return me


async def _expect(
    client: httpx.AsyncClient,
    token: str,
    function: str,
    feature: str | None,
    code: str | None,
    degraded: dict[str, str] | None = None,
) -> None:
    r = await client.get(_check_url(function, feature), headers=bearer(token))
    where = f"{function}.{feature}"
    if code is None:
        assert r.status_code == 200, f"{where}: {r.text}"
        assert r.json()["allowed"] is True
        assert r.json()["degraded"] == (degraded or {}), where
    else:
        assert r.status_code == 403, f"{where}: {r.text}"
        assert r.json()["code"] == code, where


@pytest.mark.parametrize(("function", "feature"), PAIRS, ids=[f"{f}.{x}" for f, x in PAIRS])
async def test_each_function_follows_consents_and_permissions(
    client: httpx.AsyncClient, sms: Any, function: str, feature: str | None
) -> None:
    me = await _everything_granted(client, sms)
    token = me["token"]
    fn = CAT.functions[function]
    feat = CAT.feature(function, feature)
    await _expect(client, token, function, feature, None)

    # the function's own consent (the policy for basic functions)
    main = "policy" if fn.kind == "basic" else f"function:{function}"
    await _consent(client, token, main, "withdraw")
    if fn.consent_exempt:
        await _expect(client, token, function, feature, None)
    else:
        want = "consent.policy_required" if main == "policy" else "consent.required"
        await _expect(client, token, function, feature, want)
    await _consent(client, token, main, "grant")
    await _expect(client, token, function, feature, None)

    # each sensitive category it uses
    if not fn.consent_exempt:
        for c in feat.categories:
            spec = CAT.categories[c]
            if not spec.sensitive:
                continue
            await _consent(client, token, f"category:{c}", "withdraw")
            if spec.fallback and spec.fallback in feat.categories:
                await _expect(client, token, function, feature, None, {c: spec.fallback})
            else:
                await _expect(client, token, function, feature, "consent.required")
            await _consent(client, token, f"category:{c}", "grant")
            await _expect(client, token, function, feature, None)

    # each device permission it needs
    async def report(states: dict[str, str]) -> None:
        r = await client.put(
            f"/api/v1/devices/{me['device_id']}/permissions",
            json={"permissions": states},
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text

    for p in feat.permissions:
        await report({p: "denied"})
        await _expect(client, token, function, feature, "permission.closed")
        await report({p: "granted"})
        await _expect(client, token, function, feature, None)
    if feat.any_permission:
        await report({p: "denied" for p in feat.any_permission})
        await _expect(client, token, function, feature, "permission.closed")
        await report({feat.any_permission[-1]: "granted"})
        await _expect(client, token, function, feature, None)
    # a permission no feature of this function needs changes nothing here
    unrelated = [
        p
        for p in CAT.permissions
        if p not in feat.permissions
        and p not in feat.any_permission
        and not CAT.permissions[p].degrade
    ]
    await report({p: "denied" for p in unrelated})
    await _expect(client, token, function, feature, None)


async def test_each_function_follows_the_guardians_approval(
    client: httpx.AsyncClient, sms: Any
) -> None:
    guardian = await sign_up(client, sms, phone="+8613900000077")
    child_phone = "+8613900000078"
    child = await sign_up(
        client, sms, phone=child_phone, accept_policy=POLICY_VERSION, age_bracket="under_14"
    )
    assert child["account"]["needs_guardian"] is True

    async def each(expect_blocked: bool) -> None:
        for function, feature in PAIRS:
            fn = CAT.functions[function]
            feat = CAT.feature(function, feature)
            minor_ok = fn.minor_allowed or feat.minor_allowed
            r = await client.get(_check_url(function, feature), headers=bearer(child["token"]))
            if expect_blocked and not minor_ok:
                assert r.status_code == 403, f"{function}.{feature}"
                assert r.json()["code"] == "guardian.consent_required"
            elif not expect_blocked:
                assert r.json().get("code") != "guardian.consent_required", f"{function}.{feature}"

    await each(expect_blocked=True)
    r = await client.post(
        "/api/v1/me/guardian",
        json={"guardian_phone": "+8613900000077"},
        headers=bearer(child["token"]),
    )
    assert r.status_code == 202, r.text
    r = await client.post(
        "/api/v1/guardian/approve",
        json={"code": sms.last_code("+8613900000077")},
        headers=bearer(guardian["token"]),
    )
    assert r.status_code == 200, r.text
    await each(expect_blocked=False)
    r = await client.delete(
        f"/api/v1/guardian/wards/{child['account']['id']}", headers=bearer(guardian["token"])
    )
    assert r.status_code == 204
    await each(expect_blocked=True)


# --- location minimisation -------------------------------------------------------------------


@pytest.mark.db_agnostic
def test_coarsen_rounds_as_the_catalog_says() -> None:
    assert privacy.coarsen(CAT, "location.approximate", 39.904211, 116.407395) == (39.9, 116.41)
    with pytest.raises(ValueError):
        privacy.coarsen(CAT, "contact.phone", 1.0, 2.0)


# --- data about another person ---------------------------------------------------------------


async def test_reading_about_another_person_asks_the_registered_checks(
    app: Any, settings: Any, sms: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `app` is here for its teardown: it wipes the database this test writes to
    app = create_app(settings, migrate_embedded=False)
    probe = APIRouter()

    @probe.get("/api/v1/probe/{account_id}")
    async def read(
        account_id: str,
        ctx: Annotated[guard_mod.Allowed, guard("family", "circles", about="account_id")],
    ) -> dict[str, str]:
        return {"about": account_id, "by": ctx.account_id}

    app.include_router(probe)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40002))
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            me = await sign_up(c, sms)
            other = await sign_up(c, sms, phone="+8613900000099")
            h = bearer(me["token"])
            own = await c.get(f"/api/v1/probe/{me['account']['id']}", headers=h)
            assert own.status_code == 200
            # nobody said this person may be seen: it does not exist for the caller
            r = await c.get(f"/api/v1/probe/{other['account']['id']}", headers=h)
            assert r.status_code == 404

            async def sharing_off(_s: Any, allowed: Any, subject: str) -> None:
                assert allowed.function == "family"
                raise Problem(403, "sharing.off", "This member does not share this with you.")

            monkeypatch.setattr(ports, "_subject_checks", [sharing_off])
            r = await c.get(f"/api/v1/probe/{other['account']['id']}", headers=h)
            assert r.status_code == 403
            assert r.json()["code"] == "sharing.off"

            async def sharing_on(_s: Any, _allowed: Any, _subject: str) -> None:
                return None

            monkeypatch.setattr(ports, "_subject_checks", [sharing_on])
            r = await c.get(f"/api/v1/probe/{other['account']['id']}", headers=h)
            assert r.status_code == 200


async def test_jobs_stop_at_once_when_consent_is_withdrawn(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    from kares.identity.models import Account

    me = await sign_up(client, sms)
    await _consent(client, me["token"], "category:health.vitals", "grant")

    async def job() -> dict[str, str] | str:
        async with db.sessions() as s:
            account = await s.get(Account, me["account"]["id"])
            try:
                return await privacy.check_for_job(s, CAT, account, "health", "readings")
            except Problem as exc:
                return exc.code

    assert await job() == {}
    await _consent(client, me["token"], "category:health.vitals", "withdraw")
    assert await job() == "consent.required"
    await _consent(client, me["token"], "category:health.vitals", "grant")
    assert await job() == {}
