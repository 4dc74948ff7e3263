"""An account linked to WeChat is told, when it asks to be deleted, that the
WeChat account is separate; WeChat is among the third parties the tombstone
lists as asked to delete what they received."""

from __future__ import annotations

from typing import Any

import httpx

from kares import clock
from tests.conftest import bearer, query, sign_up
from tests.support.providers import FakeWeChat
from tests.test_rights_erase import ask, run_jobs
from tests.test_third_party import (  # noqa: F401 - fixtures
    apple,
    apple_server,
    dead_url,
    settings_overrides,
    wechat,
    wechat_server,
)

ANN = "+8613700006001"


async def test_a_wechat_account_is_told_it_stays_with_wechat(
    client: httpx.AsyncClient,
    sms: Any,
    app: Any,
    db: Any,
    wechat: FakeWeChat,  # noqa: F811
) -> None:
    ann = await sign_up(client, sms, ANN)
    r = await client.post(
        "/api/v1/me/identities/wechat",
        json={"code": wechat.add_code("o_ann")},
        headers=bearer(ann["token"]),
    )
    assert r.status_code in (200, 201), r.text
    r = await ask(client, sms, ann)
    assert r.status_code == 202, r.text
    [third] = r.json()["third_party_accounts"]
    assert third["provider"] == "wechat" and "separate" in third["note"]
    r = await client.get("/api/v1/notifications", headers=bearer(ann["token"]))
    [notice] = [n for n in r.json() if n["title"] == "Your account will be deleted"]
    assert "Your WeChat account is separate from Kares" in notice["body"]
    clock.advance(16 * 86400)
    await run_jobs(app)
    [entry] = await query(db, "SELECT counts FROM deletion_register")
    counts = entry["counts"]
    if isinstance(counts, str):
        import json

        counts = json.loads(counts)
    assert "wechat_login" in counts["third_parties"]
    assert "apple_login" not in counts["third_parties"]
    assert counts["deleted"]["external_identities"] == 1
