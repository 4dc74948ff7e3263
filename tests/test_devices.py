"""Devices and their OS permission states (policy 1.6.1): closing a permission
disables only the features that need it, on that device only."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
from PIL import Image

from kares.privacy import catalog
from tests.conftest import PHONE, POLICY_VERSION, bearer, sign_up, snapshot

IPHONE = {
    "id": "IDFV-1111",
    "model": "iPhone15,2",
    "os": "iOS",
    "os_version": "18.1",
    "app_version": "1.2.0",
    "language": "zh-CN",
}
ANDROID = {
    "id": "OAID-2222",
    "model": "SM-G9910",
    "os": "Android",
    "os_version": "14",
    "app_version": "1.2.0",
    "language": "en-GB",
}
OTHER_PHONE = "+8613900009999"

UPLOAD = "/api/v1/me/functions/driving_tracks?feature=upload"
PUSH = "/api/v1/me/functions/notifications?feature=push"
INBOX = "/api/v1/me/functions/notifications?feature=inbox"
DEGRADED = {"location.precise": "location.approximate"}


def small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = dict(r.json())
    assert body["code"] == code, body
    return body


async def report(
    client: httpx.AsyncClient, me: dict[str, Any], perms: dict[str, str]
) -> httpx.Response:
    return await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": perms},
        headers=bearer(me["token"]),
    )


async def reported(client: httpx.AsyncClient, me: dict[str, Any], perms: dict[str, str]) -> None:
    r = await report(client, me, perms)
    assert r.status_code == 200, r.text
    for k, v in perms.items():
        assert r.json()["permissions"][k] == v


async def upload_avatar(client: httpx.AsyncClient, me: dict[str, Any]) -> httpx.Response:
    return await client.put(
        "/api/v1/me/avatar",
        files={"file": ("a.png", small_png(), "image/png")},
        headers=bearer(me["token"]),
    )


async def grant(client: httpx.AsyncClient, me: dict[str, Any], subject: str) -> None:
    r = await client.post(
        "/api/v1/me/consents",
        json={"subject": subject, "action": "grant", "policy_version": POLICY_VERSION},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text


# --- the device list -----------------------------------------------------------------------


async def test_signed_in_device_is_listed(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    assert me["device_id"]
    auth = bearer(me["token"])
    r = await client.get("/api/v1/devices", headers=auth)
    assert r.status_code == 200, r.text
    [dev] = r.json()
    assert dev["id"] == me["device_id"]
    assert dev["current"] is True
    assert dev["kind"] == "app"
    assert dev["model"] == "iPhone15,2" and dev["os"] == "iOS" and dev["os_version"] == "18.1"
    assert dev["app_version"] == "1.2.0" and dev["language"] == "zh-CN"
    assert dev["permissions"] == {}
    # The raw per-install identifier is never given back.
    assert "IDFV-1111" not in r.text

    r = await client.get(f"/api/v1/devices/{me['device_id']}", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == dev

    r = await client.get("/api/v1/me/sessions", headers=auth)
    [sess] = r.json()
    assert sess["device_id"] == me["device_id"]


async def test_same_device_is_recognised_and_second_is_added(
    client: httpx.AsyncClient, sms
) -> None:
    a = await sign_up(client, sms, device=IPHONE)
    again = await sign_up(client, sms, device=IPHONE)
    assert again["device_id"] == a["device_id"] and again["new_device"] is False
    b = await sign_up(client, sms, device=ANDROID)
    assert b["device_id"] != a["device_id"] and b["new_device"] is True

    r = await client.get("/api/v1/devices", headers=bearer(b["token"]))
    devs = {d["id"]: d for d in r.json()}
    assert set(devs) == {a["device_id"], b["device_id"]}
    assert devs[b["device_id"]]["current"] is True and devs[a["device_id"]]["current"] is False
    assert devs[b["device_id"]]["model"] == "SM-G9910"
    sessions = (await client.get("/api/v1/me/sessions", headers=bearer(b["token"]))).json()
    assert {x["device_id"] for x in sessions} == {a["device_id"], b["device_id"]}


# --- reporting permissions -----------------------------------------------------------------------


async def test_report_and_read_back(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await reported(client, me, {"location": "approximate", "notifications": "denied"})
    # Permissions not named keep their last state.
    r = await report(client, me, {"notifications": "granted"})
    assert r.status_code == 200, r.text
    assert r.json()["permissions"] == {"location": "approximate", "notifications": "granted"}
    r = await client.get(f"/api/v1/devices/{me['device_id']}", headers=bearer(me["token"]))
    assert r.json()["permissions"] == {"location": "approximate", "notifications": "granted"}


async def test_every_catalog_permission_and_state_is_accepted(
    client: httpx.AsyncClient, sms
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    perms = catalog.load().permissions
    for state in ("granted", "denied"):
        await reported(client, me, {k: state for k in perms})
    await reported(client, me, {"location": "approximate"})


async def test_unknown_permission_and_bad_state(client: httpx.AsyncClient, sms, db) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await reported(client, me, {"camera": "granted"})
    before = await snapshot(db)
    problem(await report(client, me, {"telepathy": "granted"}), 422, "permission.unknown")
    problem(await report(client, me, {"camera": "sometimes"}), 422, "permission.invalid_state")
    # "approximate" is a state of location only.
    problem(await report(client, me, {"camera": "approximate"}), 422, "permission.invalid_state")
    # One bad entry in a batch stores nothing, wherever it is.
    problem(
        await report(client, me, {"camera": "denied", "photos": "denied", "telepathy": "granted"}),
        422,
        "permission.unknown",
    )
    problem(
        await report(client, me, {"location": "sometimes", "camera": "denied"}),
        422,
        "permission.invalid_state",
    )
    assert await snapshot(db) == before
    r = await client.get(f"/api/v1/devices/{me['device_id']}", headers=bearer(me["token"]))
    assert r.json()["permissions"] == {"camera": "granted"}


async def test_malformed_report_is_refused(client: httpx.AsyncClient, sms, db) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    before = await snapshot(db)
    url = f"/api/v1/devices/{me['device_id']}/permissions"
    for body in (
        {"permissions": {"camera": 1}},
        {"permissions": ["camera"]},
        {"camera": "denied"},
        {"permissions": {"camera": "denied"}, "extra": True},
    ):
        r = await client.put(url, json=body, headers=bearer(me["token"]))
        assert r.status_code == 422, r.text
    assert await snapshot(db) == before


async def test_another_accounts_device_is_not_found(client: httpx.AsyncClient, sms, db) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    other = await sign_up(client, sms, OTHER_PHONE, device=ANDROID)
    before = await snapshot(db)
    auth = bearer(me["token"])
    r = await client.put(
        f"/api/v1/devices/{other['device_id']}/permissions",
        json={"permissions": {"camera": "denied"}},
        headers=auth,
    )
    problem(r, 404, "device.not_found")
    problem(
        await client.get(f"/api/v1/devices/{other['device_id']}", headers=auth),
        404,
        "device.not_found",
    )
    problem(await client.get("/api/v1/devices/nosuchdevice", headers=auth), 404, "device.not_found")
    r = await client.put(
        "/api/v1/devices/nosuchdevice/permissions",
        json={"permissions": {"camera": "denied"}},
        headers=auth,
    )
    problem(r, 404, "device.not_found")
    # Not found comes before validation: nothing about the other device leaks.
    r = await client.put(
        f"/api/v1/devices/{other['device_id']}/permissions",
        json={"permissions": {"telepathy": "granted"}},
        headers=auth,
    )
    problem(r, 404, "device.not_found")
    assert await snapshot(db) == before
    ids = [d["id"] for d in (await client.get("/api/v1/devices", headers=auth)).json()]
    assert ids == [me["device_id"]]


async def test_devices_need_sign_in(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    problem(await client.get("/api/v1/devices"), 401, "auth.required")
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"camera": "denied"}},
    )
    problem(r, 401, "auth.required")


# --- closing a permission disables only what needs it ---------------------------------------------


async def test_closed_photos_and_camera_stop_avatar_upload_only(
    client: httpx.AsyncClient, sms, db
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    auth = bearer(me["token"])
    await reported(client, me, {"photos": "denied", "camera": "denied"})
    before = await snapshot(db)
    body = problem(await upload_avatar(client, me), 403, "permission.closed")
    assert sorted(body["permissions"]) == ["camera", "photos"]
    assert await snapshot(db) == before
    r = await client.get("/api/v1/notifications", headers=auth)
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/me", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["avatar_url"] is None
    # Either of the two is enough.
    await reported(client, me, {"photos": "granted"})
    r = await upload_avatar(client, me)
    assert r.status_code == 200, r.text
    assert r.json()["avatar_url"]
    await reported(client, me, {"photos": "denied", "camera": "granted"})
    r = await upload_avatar(client, me)
    assert r.status_code == 200, r.text


async def test_one_closed_of_any_permission_is_enough(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await reported(client, me, {"photos": "denied"})
    r = await upload_avatar(client, me)
    assert r.status_code == 200, r.text


async def test_closed_notifications_stop_push_not_inbox(client: httpx.AsyncClient, sms, db) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    auth = bearer(me["token"])
    r = await client.get(PUSH, headers=auth)
    assert r.status_code == 200, r.text
    await reported(client, me, {"notifications": "denied"})
    before = await snapshot(db)
    body = problem(await client.get(PUSH, headers=auth), 403, "permission.closed")
    assert body["permissions"] == ["notifications"]
    assert await snapshot(db) == before
    r = await client.get(INBOX, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["allowed"] is True and r.json()["degraded"] == {}
    assert (await client.get("/api/v1/notifications", headers=auth)).status_code == 200
    await reported(client, me, {"notifications": "granted"})
    assert (await client.get(PUSH, headers=auth)).status_code == 200


async def test_location_states_without_precise_consent(client: httpx.AsyncClient, sms, db) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    auth = bearer(me["token"])
    # Nothing reported yet and no separate consent: only approximate location.
    r = await client.get(UPLOAD, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["allowed"] is True and r.json()["degraded"] == DEGRADED

    await reported(client, me, {"location": "granted"})
    r = await client.get(UPLOAD, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] == DEGRADED

    await reported(client, me, {"location": "approximate"})
    r = await client.get(UPLOAD, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] == DEGRADED

    await reported(client, me, {"location": "denied"})
    before = await snapshot(db)
    body = problem(await client.get(UPLOAD, headers=auth), 403, "permission.closed")
    assert body["permissions"] == ["location"]
    assert await snapshot(db) == before


async def test_location_states_with_precise_consent(client: httpx.AsyncClient, sms, db) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    auth = bearer(me["token"])
    await grant(client, me, "category:location.precise")

    await reported(client, me, {"location": "granted"})
    r = await client.get(UPLOAD, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["allowed"] is True and r.json()["degraded"] == {}

    await reported(client, me, {"location": "approximate"})
    r = await client.get(UPLOAD, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] == DEGRADED

    await reported(client, me, {"location": "denied"})
    before = await snapshot(db)
    problem(await client.get(UPLOAD, headers=auth), 403, "permission.closed")
    assert await snapshot(db) == before
    # Viewing tracks needs no device permission.
    r = await client.get("/api/v1/me/functions/driving_tracks?feature=view", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] == {}

    await reported(client, me, {"location": "granted"})
    r = await client.get(UPLOAD, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] == {}


# --- per device -----------------------------------------------------------------------------------


async def test_permissions_are_per_device(client: httpx.AsyncClient, sms) -> None:
    phone = await sign_up(client, sms, device=IPHONE)
    tablet = await sign_up(client, sms, device=ANDROID)
    assert phone["device_id"] != tablet["device_id"]
    await reported(client, phone, {"photos": "denied", "camera": "denied", "location": "denied"})
    await grant(client, phone, "category:location.precise")

    problem(await upload_avatar(client, phone), 403, "permission.closed")
    problem(await client.get(UPLOAD, headers=bearer(phone["token"])), 403, "permission.closed")

    r = await upload_avatar(client, tablet)
    assert r.status_code == 200, r.text
    r = await client.get(UPLOAD, headers=bearer(tablet["token"]))
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] == {}

    # One device may report for another of the same account.
    r = await client.get(f"/api/v1/devices/{tablet['device_id']}", headers=bearer(phone["token"]))
    assert r.status_code == 200 and r.json()["permissions"] == {}
    assert r.json()["current"] is False
    r = await client.put(
        f"/api/v1/devices/{tablet['device_id']}/permissions",
        json={"permissions": {"camera": "denied", "photos": "denied"}},
        headers=bearer(phone["token"]),
    )
    assert r.status_code == 200, r.text
    problem(await upload_avatar(client, tablet), 403, "permission.closed")


# --- at the same time ----------------------------------------------------------------------


async def test_concurrent_reports_from_one_device(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    url = f"/api/v1/devices/{me['device_id']}/permissions"
    bodies = [
        {"camera": "denied", "photos": "granted"},
        {"photos": "denied", "camera": "granted"},
    ] * 4
    rs = await asyncio.gather(
        *(client.put(url, json={"permissions": b}, headers=bearer(me["token"])) for b in bodies)
    )
    assert [r.status_code for r in rs] == [200] * len(bodies), [r.text for r in rs]
    r = await client.get(f"/api/v1/devices/{me['device_id']}", headers=bearer(me["token"]))
    assert r.json()["permissions"] in bodies


async def test_concurrent_first_sign_ins_from_one_new_device(
    client: httpx.AsyncClient, sms
) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    password = "Correct-Horse-99"
    r = await client.put(
        "/api/v1/me/password", json={"new_password": password}, headers=bearer(me["token"])
    )
    assert r.status_code == 200, r.text
    body = {"phone": PHONE, "password": password, "device": ANDROID}
    rs = await asyncio.gather(*(client.post("/api/v1/auth/password", json=body) for _ in range(4)))
    assert [r.status_code for r in rs] == [200] * 4, [r.text for r in rs]
    assert len({r.json()["device_id"] for r in rs}) == 1
    # It is one new device: one of them saw it first, and one alert was sent.
    assert sum(r.json()["new_device"] for r in rs) == 1
    devs = (await client.get("/api/v1/devices", headers=bearer(me["token"]))).json()
    assert len(devs) == 2
    inbox = (await client.get("/api/v1/notifications", headers=bearer(me["token"]))).json()
    assert sum(n["title"] == "New sign-in to your Kares account" for n in inbox) == 1


async def test_devices_report_their_battery(client: httpx.AsyncClient, sms, db) -> None:
    me = await sign_up(client, sms, device={"id": "battery-1", "model": "Kid W1"})
    h = bearer(me["token"])
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/status",
        json={"battery": 23, "charging": False},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["battery"], r.json()["charging"]) == (23, False)
    assert r.json()["battery_at"] is not None
    listed = (await client.get("/api/v1/devices", headers=h)).json()
    assert listed[0]["battery"] == 23
    before = await snapshot(db)
    for body in ({"battery": 101}, {"battery": -1}, {"battery": "full"}, {}):
        r = await client.put(f"/api/v1/devices/{me['device_id']}/status", json=body, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "request.invalid"
    r = await client.put("/api/v1/devices/nope/status", json={"battery": 5}, headers=h)
    assert r.status_code == 404 and r.json()["code"] == "device.not_found"
    assert await snapshot(db) == before
