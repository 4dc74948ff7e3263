"""The right to explanation (policy 5.6): GET /api/v1/me/processing tells an
account, for every category of personal information, whether we hold it, for
which functions, on which basis and consent receipt, shared with whom and
kept until when."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from kares import clock
from kares.privacy import catalog
from tests.conftest import POLICY_VERSION, bearer, sign_up

CAT = catalog.load()
IPHONE = {"id": "IDFV-1111", "model": "iPhone15,2", "os": "iOS", "os_version": "18.1"}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def processing(client: httpx.AsyncClient, me: dict[str, Any]) -> dict[str, dict[str, Any]]:
    r = await client.get("/api/v1/me/processing", headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["account_id"] == me["account"]["id"]
    assert body["policy_version"] == POLICY_VERSION
    keys = [i["category"] for i in body["items"]]
    assert len(keys) == len(set(keys)), "a category appears twice"
    return {i["category"]: i for i in body["items"]}


async def policy_receipt(client: httpx.AsyncClient, me: dict[str, Any]) -> dict[str, Any]:
    r = await client.get("/api/v1/me/consents/receipts", headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    [receipt] = [x for x in r.json() if x["subject"] == "policy"]
    assert receipt["action"] == "grant" and receipt["by_guardian"] is False
    return dict(receipt)


async def consent(
    client: httpx.AsyncClient, me: dict[str, Any], subject: str, action: str = "grant"
) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": subject, "action": action}
    if action == "grant":
        body["policy_version"] = POLICY_VERSION
    r = await client.post("/api/v1/me/consents", json=body, headers=bearer(me["token"]))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_every_catalog_category_exactly_once(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    r = await client.get("/api/v1/me/processing", headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    keys = [i["category"] for i in r.json()["items"]]
    assert sorted(keys) == sorted(CAT.categories)
    for item in r.json()["items"]:
        c = CAT.categories[item["category"]]
        assert item["name"] == c.name.en
        assert item["sensitive"] == c.sensitive
        assert item["fides"] == c.fides
        assert item["functions"] == CAT.functions_using(item["category"])
        assert len(item["purposes"]) == len(item["functions"])
        if c.sensitive:
            assert item["legal_basis"] in ([], ["separate_consent"])


async def test_phone_number(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    receipt = await policy_receipt(client, me)
    phone = (await processing(client, me))["contact.phone"]
    assert phone["held"] is True
    assert "account" in phone["functions"]
    assert phone["legal_basis"] == ["contract"]
    assert phone["consent_receipt"] == receipt["id"]
    assert phone["retention"].startswith("while the account exists")
    assert phone["kept_until"] is None
    assert "sms_gateway" in phone["shared_with"]
    assert phone["sensitive"] is False


async def test_login_environment_kept_180_days_from_first_sign_in(
    client: httpx.AsyncClient, sms
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    r = await client.get("/api/v1/me/sessions", headers=bearer(me["token"]))
    [sess] = r.json()
    first = ts(sess["created_at"])
    env = (await processing(client, me))["security.login_environment"]
    assert env["held"] is True
    assert env["retention"] == "180 days, then delete"
    assert env["kept_until"] is not None
    expected = first + timedelta(days=180)
    assert abs((ts(env["kept_until"]) - expected).total_seconds()) <= 1.5

    # A later sign-in does not move it: it counts from the oldest item held.
    clock.advance(10 * 86400)
    again = await sign_up(client, sms, device=IPHONE)
    env = (await processing(client, again))["security.login_environment"]
    assert abs((ts(env["kept_until"]) - expected).total_seconds()) <= 1.5


async def test_precise_location_and_its_consent_receipt(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    loc = (await processing(client, me))["location.precise"]
    assert loc["held"] is False
    assert loc["consent_receipt"] is None
    assert loc["kept_until"] is None
    assert loc["sensitive"] is True
    assert loc["legal_basis"] == ["separate_consent"]
    assert loc["retention"] == "90 days, then delete"

    granted = await consent(client, me, "category:location.precise")
    items = await processing(client, me)
    assert items["location.precise"]["consent_receipt"] == granted["id"]
    assert items["location.precise"]["held"] is False  # consent is not data
    # Another sensitive category is untouched by it.
    assert items["health.vitals"]["consent_receipt"] is None

    await consent(client, me, "category:location.precise", "withdraw")
    loc = (await processing(client, me))["location.precise"]
    assert loc["consent_receipt"] is None


async def test_what_a_fresh_account_holds(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    items = await processing(client, me)
    held = {k for k, v in items.items() if v["held"]}
    for k in (
        "contact.phone",
        "account.age",
        "privacy.consent",
        "device.identifier",
        "device.attributes",
        "security.login_environment",
    ):
        assert k in held, k
    for k in (
        "account.credentials",
        "account.external_id",
        "location.precise",
        "location.approximate",
        "health.vitals",
        "minors.guardianship",
    ):
        assert k not in held, k
    for item in items.values():
        if not item["held"]:
            assert item["kept_until"] is None


async def test_held_follows_the_data(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    auth = bearer(me["token"])
    assert (await processing(client, me))["account.credentials"]["held"] is False
    r = await client.put(
        "/api/v1/me/password", json={"new_password": "Correct-Horse-99"}, headers=auth
    )
    assert r.status_code == 200, r.text
    assert (await processing(client, me))["account.credentials"]["held"] is True

    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"location": "approximate"}},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    assert (await processing(client, me))["device.permissions"]["held"] is True


async def test_processing_needs_sign_in(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/me/processing")
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "auth.required"
