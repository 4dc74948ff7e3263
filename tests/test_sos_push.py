"""An SOS end to end with real push requests to fake APNs and FCM servers:
every guardian's every device gets it, quiet hours or not (step 3)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kares import jobs
from tests.conftest import bearer, sign_up
from tests.support.push_fakes import FakeAPNs, FakeFCM
from tests.test_watches_sos import GUARDIAN, paired

APNS_TOKEN = "b2" * 32
FCM_TOKEN = "fcm-registration-token:APA91b" + "y" * 140
SECOND_GUARDIAN = "+8613900000503"


@pytest.fixture
def settings_overrides(push_overrides: dict[str, Any]) -> dict[str, Any]:
    return push_overrides


async def test_sos_pushes_to_every_device_of_every_guardian_despite_quiet_hours(
    app: Any, client: httpx.AsyncClient, sms: Any, fake_apns: FakeAPNs, fake_fcm: FakeFCM
) -> None:
    ctx = await paired(client, sms)
    g = ctx["guardian"]
    fid = ctx["family"]["id"]
    # the guardian's iPhone has an APNs channel and quiet hours around the clock
    r = await client.put(
        f"/api/v1/devices/{g['device_id']}/push",
        json={"provider": "apns", "token": APNS_TOKEN},
        headers=bearer(g["token"]),
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        "/api/v1/notifications/preferences",
        json={"quiet_hours": {"start": "00:00", "end": "23:59", "time_zone": "Asia/Shanghai"}},
        headers=bearer(g["token"]),
    )
    assert r.status_code == 200, r.text
    # a second guardian, on Android
    second = await sign_up(
        client, sms, SECOND_GUARDIAN, device={"id": "OAID-SOS", "model": "SM-G9910"}
    )
    inv = await client.post(
        f"/api/v1/families/{fid}/invitations", json={}, headers=bearer(g["token"])
    )
    assert inv.status_code == 201, inv.text
    r = await client.post(
        "/api/v1/invitations/accept",
        json={"text": inv.json()["code"]},
        headers=bearer(second["token"]),
    )
    assert r.status_code in (200, 201), r.text
    r = await client.put(
        f"/api/v1/families/{fid}/members/{second['account']['id']}/role",
        json={"role": "guardian"},
        headers=bearer(g["token"]),
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        f"/api/v1/devices/{second['device_id']}/push",
        json={"provider": "fcm", "token": FCM_TOKEN},
        headers=bearer(second["token"]),
    )
    assert r.status_code == 200, r.text

    r = await client.post(
        "/api/v1/sos", json={"lat": 31.2304, "lon": 121.4737}, headers=bearer(ctx["watch"]["token"])
    )
    assert r.status_code == 201, r.text
    alert = r.json()
    assert sorted(alert["recipients"]) == sorted([g["account"]["id"], second["account"]["id"]])
    assert fake_apns.requests == [] and fake_fcm.requests == []  # delivery is a job
    await jobs.run_due(app.state.runtime)

    (apns,) = fake_apns.delivered()
    assert apns.token == APNS_TOKEN
    assert apns.headers["apns-priority"] == "10"
    assert apns.body["kares"]["category"] == "sos"
    assert apns.body["aps"]["alert"]["title"] == "SOS from Grandma Li"
    assert apns.body["aps"]["interruption-level"] in ("critical", "time-sensitive")
    (fcm,) = fake_fcm.delivered()
    assert fcm.token == FCM_TOKEN
    msg = fcm.message
    assert msg["android"]["priority"] == "HIGH"
    assert msg["data"]["category"] == "sos"
    # and each guardian's phone got the SMS
    assert sorted(m["to"] for m in sms.messages if m["template"] == "sos") == sorted(
        [GUARDIAN, SECOND_GUARDIAN]
    )
