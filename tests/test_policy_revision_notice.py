"""Policy 8: a significant revision is announced in the app to everyone who
agreed to an earlier version, once each, in their language, resuming after a
restart; a revision that is not significant, and the same version served
again, tell nobody."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml

from kares import jobs
from kares.notify import revision
from kares.privacy import catalog as catalog_mod
from kares.privacy.service import sync_policy
from tests.conftest import POLICY_VERSION, bearer, query, sign_up

ZH = {"id": "IDFV-7001", "model": "iPhone15,2", "os": "iOS", "language": "zh-Hans-CN"}
EN = {"id": "OAID-7002", "model": "Pixel 8", "os": "Android", "language": "en-GB"}
PHONES = ["+8613700007001", "+8613700007002", "+8613700007003"]


def revised(*, version: str, significant: bool, stretch: bool) -> catalog_mod.Catalog:
    data = yaml.safe_load(catalog_mod.DEFAULT_PATH.read_text(encoding="utf-8"))
    data["policy"]["version"] = version
    data["policy"]["significant"] = significant
    if stretch:  # a consent is asked for longer: people must agree again
        data["categories"]["calls.records"]["retention"] = {"days": 400, "then": "delete"}
    else:  # only words change
        data["policy"]["contact_email"] = "privacy@auroraKare.com"
    return catalog_mod.parse(yaml.safe_dump(data, allow_unicode=True))


async def publish(app: Any, cat: catalog_mod.Catalog) -> None:
    async with app.state.runtime.db.sessions() as s:
        await sync_policy(s, cat)


async def notices(db: Any, version: str) -> list[dict[str, Any]]:
    rows = await query(db, "SELECT account_id, title, body, data FROM notifications")
    out = []
    for r in rows:
        data = r["data"] if isinstance(r["data"], dict) else yaml.safe_load(r["data"])
        if data.get("render") == revision.RENDER and data.get("version") == version:
            out.append(r)
    return out


async def test_everyone_who_agreed_before_is_told_once_in_their_language(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(revision, "BATCH", 1)  # a batch per account: the cursor is exercised
    ann = await sign_up(client, sms, PHONES[0], device=ZH)
    bo = await sign_up(client, sms, PHONES[1], device=EN)
    old = {ann["account"]["id"], bo["account"]["id"]}

    await publish(app, revised(version="2099-01-01", significant=True, stretch=True))
    later = await sign_up(client, sms, PHONES[2], device=EN)  # agrees to what is served now

    # one batch commits, then the worker "dies": the job is still queued
    async with app.state.runtime.db.sessions() as s:
        assert await revision.tell_batch(s, "2099-01-01") == 1
    assert len(await notices(db, "2099-01-01")) == 1
    await jobs.run_due(app.state.runtime)
    await jobs.run_due(app.state.runtime)  # nothing left to do, nothing told twice

    told = await notices(db, "2099-01-01")
    assert sorted(r["account_id"] for r in told) == sorted(old)
    assert later["account"]["id"] not in {r["account_id"] for r in told}
    by = {r["account_id"]: r for r in told}
    zh, en = by[ann["account"]["id"]], by[bo["account"]["id"]]
    assert zh["title"] == "隐私政策已更新" and "2099-01-01" in zh["body"]
    assert "重新同意" in zh["body"]  # a consent was stretched: they are asked again
    assert en["title"] == "Our privacy policy has changed"
    assert "consent again" in en["body"]
    [progress] = await query(db, "SELECT told, finished_at FROM policy_notices")
    assert progress["told"] == 2 and progress["finished_at"] is not None

    # in the person's inbox, through the API
    r = await client.get("/api/v1/notifications", headers=bearer(bo["token"]))
    assert r.status_code == 200, r.text
    items = r.json()["items"] if isinstance(r.json(), dict) else r.json()
    assert any(i["title"] == "Our privacy policy has changed" for i in items)

    # served again (a restart): already published, nobody told again
    await publish(app, revised(version="2099-01-01", significant=True, stretch=True))
    await jobs.run_due(app.state.runtime)
    assert len(await notices(db, "2099-01-01")) == 2


async def test_a_revision_that_is_not_significant_tells_nobody(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    await sign_up(client, sms, PHONES[0], device=EN)
    await publish(app, revised(version="2099-02-01", significant=False, stretch=False))
    await jobs.run_due(app.state.runtime)
    assert await notices(db, "2099-02-01") == []
    assert await query(db, "SELECT version FROM policy_notices") == []


async def test_the_first_version_served_tells_nobody(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    # the catalog's own version was published when the app started, on an
    # empty database: there was nobody to tell, whatever it says
    await sign_up(client, sms, PHONES[0], device=EN)
    await jobs.run_due(app.state.runtime)
    assert await notices(db, POLICY_VERSION) == []
