"""Policy revisions (policy 7): a significant change asks again before the
functions it changed work; unchanged functions keep working; a revision that
only gives users more asks nothing; and no revision can stretch existing
consents without being marked significant."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kares.app import create_app
from kares.privacy import catalog as catalog_mod
from kares.privacy.catalog import CatalogError
from tests.conftest import POLICY_VERSION, bearer, sign_up


def revision(tmp_path: Path, version: str, significant: bool, change: Any) -> Path:
    data = yaml.safe_load(catalog_mod.DEFAULT_PATH.read_text(encoding="utf-8"))
    data["policy"]["version"] = version
    data["policy"]["significant"] = significant
    data["policy"]["changes"] = [{"en": f"Revision {version}.", "zh": f"修订 {version}。"}]
    change(data)
    path = tmp_path / f"catalog-{version}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def serving(settings: Any, catalog_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    s = settings.model_copy(update={"privacy_catalog": catalog_path})
    app = create_app(s, migrate_embedded=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            yield c


async def check(c: httpx.AsyncClient, token: str, function: str, feature: str) -> httpx.Response:
    return await c.get(
        f"/api/v1/me/functions/{function}", params={"feature": feature}, headers=bearer(token)
    )


def add_category_to_messaging(data: dict) -> None:
    data["functions"]["messaging"]["categories"].append("device.attributes")
    data["functions"]["messaging"]["features"]["chat"]["categories"].append("device.attributes")


async def test_significant_revision_asks_again_only_where_terms_changed(
    client: httpx.AsyncClient, sms: Any, settings: Any, tmp_path: Path
) -> None:
    me = await sign_up(client, sms)
    token = me["token"]
    assert (await check(client, token, "messaging", "chat")).status_code == 200

    v2 = revision(tmp_path, "2025-01-01", True, add_category_to_messaging)
    async with serving(settings, v2) as c2:
        r = await check(c2, token, "messaging", "chat")
        assert r.status_code == 403
        assert r.json()["code"] == "consent.reconsent_required"
        assert r.json()["policy_version"] == "2025-01-01"
        # untouched functions keep working without asking
        assert (await check(c2, token, "schedule", "events")).status_code == 200
        assert (await check(c2, token, "notifications", "inbox")).status_code == 200
        consents = (await c2.get("/api/v1/me/consents", headers=bearer(token))).json()
        policy = next(x for x in consents["consents"] if x["subject"] == "policy")
        assert policy["granted"] is True and policy["current"] is False
        # accepting the old version is not accepting the new one
        r = await c2.post(
            "/api/v1/me/consents",
            json={"subject": "policy", "action": "grant", "policy_version": POLICY_VERSION},
            headers=bearer(token),
        )
        assert r.status_code == 409
        assert r.json()["code"] == "consent.policy_version_mismatch"
        r = await c2.post(
            "/api/v1/me/consents",
            json={"subject": "policy", "action": "grant", "policy_version": "2025-01-01"},
            headers=bearer(token),
        )
        assert r.status_code == 201
        assert (await check(c2, token, "messaging", "chat")).status_code == 200
        # new registrations accept the new version
        await c2.post("/api/v1/auth/sms/send", json={"phone": "+8613900000055"})
        r = await c2.post(
            "/api/v1/auth/sms/verify",
            json={
                "phone": "+8613900000055",
                "code": sms.last_code("+8613900000055"),
                "accept_policy": POLICY_VERSION,
                "age_bracket": "adult",
            },
        )
        assert r.status_code == 400
        assert r.json()["policy_version"] == "2025-01-01"


async def test_narrowing_revision_keeps_consents(
    client: httpx.AsyncClient, sms: Any, settings: Any, tmp_path: Path
) -> None:
    me = await sign_up(client, sms)
    token = me["token"]
    r = await client.post(
        "/api/v1/me/consents",
        json={
            "subject": "category:location.precise",
            "action": "grant",
            "policy_version": POLICY_VERSION,
        },
        headers=bearer(token),
    )
    assert r.status_code == 201

    def shorter(data: dict) -> None:
        data["categories"]["location.precise"]["retention"] = {"days": 30, "then": "delete"}

    v2 = revision(tmp_path, "2025-02-01", False, shorter)
    async with serving(settings, v2) as c2:
        r = await check(c2, token, "driving_tracks", "upload")
        assert r.status_code == 200, r.text
        assert r.json()["degraded"] == {}


async def test_longer_retention_is_a_reduction(
    client: httpx.AsyncClient, sms: Any, settings: Any, tmp_path: Path
) -> None:
    me = await sign_up(client, sms)
    token = me["token"]
    await client.post(
        "/api/v1/me/consents",
        json={
            "subject": "category:health.vitals",
            "action": "grant",
            "policy_version": POLICY_VERSION,
        },
        headers=bearer(token),
    )
    assert (await check(client, token, "health", "readings")).status_code == 200

    def longer(data: dict) -> None:
        data["categories"]["health.vitals"]["retention"] = {"days": 3650, "then": "delete"}

    v2 = revision(tmp_path, "2025-03-01", True, longer)
    async with serving(settings, v2) as c2:
        r = await check(c2, token, "health", "readings")
        assert r.status_code == 403
        assert r.json()["code"] == "consent.reconsent_required"
        # both the function's terms (via the policy) and the category's changed:
        # each is asked for again, the policy first
        for subject in ("policy", "category:health.vitals"):
            r = await check(c2, token, "health", "readings")
            assert r.status_code == 403
            assert r.json()["missing"] == [subject]
            r = await c2.post(
                "/api/v1/me/consents",
                json={"subject": subject, "action": "grant", "policy_version": "2025-03-01"},
                headers=bearer(token),
            )
            assert r.status_code == 201
        assert (await check(c2, token, "health", "readings")).status_code == 200


async def test_stretching_consents_without_the_significant_flag_refuses_to_start(
    client: httpx.AsyncClient, sms: Any, settings: Any, tmp_path: Path
) -> None:
    await sign_up(client, sms)  # version 1 is published
    v2 = revision(tmp_path, "2025-04-01", False, add_category_to_messaging)
    with pytest.raises(CatalogError, match="significant"):
        async with serving(settings, v2):
            pass


async def test_a_published_version_cannot_change(
    client: httpx.AsyncClient, sms: Any, settings: Any, tmp_path: Path
) -> None:
    await sign_up(client, sms)

    def edit(data: dict) -> None:
        data["policy"]["version"] = POLICY_VERSION
        data["categories"]["calls.records"]["retention"] = {"days": 90, "then": "delete"}

    path = revision(tmp_path, POLICY_VERSION, True, edit)
    with pytest.raises(CatalogError, match="already published"):
        async with serving(settings, path):
            pass


@pytest.mark.db_agnostic
def test_covers_is_the_reduction_rule() -> None:
    cat = catalog_mod.load()
    t = cat.function_terms("messaging")
    assert catalog_mod.covers(t, t)
    narrower = {**t, "categories": t["categories"][:1], "retention": {}}
    assert catalog_mod.covers(t, narrower)
    assert not catalog_mod.covers(narrower, t)
    assert not catalog_mod.covers(t, {**t, "purpose": "something else"})
    assert not catalog_mod.covers(t, {**t, "third_parties": ["someone"]})
    assert not catalog_mod.covers(None, t)


async def test_versions_list_what_each_revision_asked_again(
    client: httpx.AsyncClient, sms: Any, settings: Any, tmp_path: Path
) -> None:
    await sign_up(client, sms)
    v2 = revision(tmp_path, "2025-05-01", True, add_category_to_messaging)
    async with serving(settings, v2) as c2:
        r = await c2.get("/api/v1/privacy/versions")
        assert r.status_code == 200
        first, second = r.json()
        assert first["version"] == POLICY_VERSION and first["asks_again_about"] == []
        assert second["version"] == "2025-05-01" and second["significant"] is True
        # messaging takes a new category, and that category serves a new function
        assert second["asks_again_about"] == ["category:device.attributes", "function:messaging"]
        assert second["changes"] == [{"en": "Revision 2025-05-01.", "zh": "修订 2025-05-01。"}]
