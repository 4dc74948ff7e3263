"""Signed-in devices, revocation, login environment and new-device alerts (policy 1.4)."""

from __future__ import annotations

import httpx

from kares import clock
from tests.conftest import PHONE, bearer, sign_up, snapshot

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


async def test_sessions_list_shows_device_and_environment(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    r = await client.get("/api/v1/me/sessions", headers=bearer(me["token"]))
    assert r.status_code == 200
    [s] = r.json()
    assert s["current"] is True
    assert s["device_model"] == "iPhone15,2"
    assert s["os"] == "iOS" and s["os_version"] == "18.1"
    assert s["app_version"] == "1.2.0" and s["language"] == "zh-CN"
    assert s["ip"] == "127.0.0.1"
    assert s["place"] == "This machine"
    assert s["last_seen_at"]


async def test_place_from_ip_table(client: httpx.AsyncClient, sms, app, tmp_path) -> None:
    from kares.netinfo import PlaceResolver

    csv = tmp_path / "places.csv"
    csv.write_text("# cidr,place\n203.0.113.0/24,Hangzhou, Zhejiang\n1.2.4.0/24,Beijing\n")
    app.state.runtime.places = PlaceResolver.from_csv(csv)
    me = await sign_up(client, sms, device=IPHONE)
    await client.post(
        "/api/v1/auth/sms/send", json={"phone": PHONE}, headers={"X-Forwarded-For": "1.2.4.8"}
    )
    r = await client.post(
        "/api/v1/auth/sms/verify",
        json={"phone": PHONE, "code": sms.last_code(PHONE), "device": ANDROID},
        headers={"X-Forwarded-For": "1.2.4.8"},
    )
    assert r.status_code == 200
    sessions = (await client.get("/api/v1/me/sessions", headers=bearer(me["token"]))).json()
    assert {s["place"] for s in sessions} == {"This machine", "Beijing"}


async def test_last_seen_is_updated_on_use(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms)
    first = (await client.get("/api/v1/me/sessions", headers=bearer(me["token"]))).json()[0]
    clock.advance(120)
    later = (await client.get("/api/v1/me/sessions", headers=bearer(me["token"]))).json()[0]
    assert later["last_seen_at"] > first["last_seen_at"]


async def test_revoke_one_session(client: httpx.AsyncClient, sms) -> None:
    a = await sign_up(client, sms, device=IPHONE)
    b = await sign_up(client, sms, device=ANDROID)
    r = await client.delete(f"/api/v1/me/sessions/{b['session_id']}", headers=bearer(a["token"]))
    assert r.status_code == 204
    r = await client.get("/api/v1/me", headers=bearer(b["token"]))
    assert r.status_code == 401
    assert r.json()["code"] == "auth.invalid_token"
    assert (await client.get("/api/v1/me", headers=bearer(a["token"]))).status_code == 200
    listed = (await client.get("/api/v1/me/sessions", headers=bearer(a["token"]))).json()
    assert [s["id"] for s in listed] == [a["session_id"]]


async def test_cannot_revoke_another_accounts_session(client: httpx.AsyncClient, sms, db) -> None:
    mine = await sign_up(client, sms)
    theirs = await sign_up(client, sms, phone="+8613900000001")
    before = await snapshot(db)
    r = await client.delete(
        f"/api/v1/me/sessions/{theirs['session_id']}", headers=bearer(mine["token"])
    )
    assert r.status_code == 404
    assert r.json()["code"] == "session.not_found"
    assert await snapshot(db) == before
    assert (await client.get("/api/v1/me", headers=bearer(theirs["token"]))).status_code == 200


async def test_revoke_all_others_then_all(client: httpx.AsyncClient, sms) -> None:
    a = await sign_up(client, sms, device=IPHONE)
    b = await sign_up(client, sms, device=ANDROID)
    c = await sign_up(client, sms, device={"id": "third"})
    r = await client.delete("/api/v1/me/sessions", headers=bearer(a["token"]))
    assert r.json() == {"revoked": 2}
    for t in (b, c):
        assert (await client.get("/api/v1/me", headers=bearer(t["token"]))).status_code == 401
    assert (await client.get("/api/v1/me", headers=bearer(a["token"]))).status_code == 200
    r = await client.delete(
        "/api/v1/me/sessions", params={"include_current": "true"}, headers=bearer(a["token"])
    )
    assert r.json() == {"revoked": 1}
    assert (await client.get("/api/v1/me", headers=bearer(a["token"]))).status_code == 401


async def test_logout(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms)
    assert (
        await client.post("/api/v1/auth/logout", headers=bearer(me["token"]))
    ).status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(me["token"]))).status_code == 401


async def test_bad_tokens(client: httpx.AsyncClient) -> None:
    for headers, code in [
        ({}, "auth.required"),
        ({"Authorization": "Bearer"}, "auth.invalid_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "auth.invalid_token"),
        ({"Authorization": "Bearer kares_nope"}, "auth.invalid_token"),
        ({"Authorization": "Bearer " + "x" * 5000}, "auth.invalid_token"),
    ]:
        r = await client.get("/api/v1/me", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["code"] == code
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_sessions_expire_when_idle(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms)
    clock.advance(91 * 86400)
    assert (await client.get("/api/v1/me", headers=bearer(me["token"]))).status_code == 401


async def test_every_sign_in_records_login_environment(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms, device=IPHONE)
    await client.post("/api/v1/auth/sms/send", json={"phone": PHONE})
    await client.post(
        "/api/v1/auth/sms/verify",
        json={"phone": PHONE, "code": sms.last_code(PHONE), "device": ANDROID},
        headers={"User-Agent": "KaresAndroid/1.2.0", "X-Forwarded-For": "203.0.113.7"},
    )
    logins = (await client.get("/api/v1/me/logins", headers=bearer(me["token"]))).json()
    assert len(logins) == 2
    newest, first = logins
    assert newest["success"] and newest["method"] == "sms"
    assert newest["device_model"] == "SM-G9910" and newest["os"] == "Android"
    assert newest["ip"] == "203.0.113.7"
    assert newest["new_device"] is True
    assert first["new_device"] is False  # registration is not an alert
    assert first["device_model"] == "iPhone15,2"


async def test_new_device_notifies_other_sessions(client: httpx.AsyncClient, sms) -> None:
    phone_session = await sign_up(client, sms, device=IPHONE)
    h = bearer(phone_session["token"])
    assert (await client.get("/api/v1/notifications/unread-count", headers=h)).json() == {
        "unread": 0
    }
    second = await sign_up(client, sms, device=ANDROID)
    assert second["new_device"] is True
    inbox = (await client.get("/api/v1/notifications", headers=h)).json()
    assert len(inbox) == 1
    note = inbox[0]
    assert note["category"] == "security"
    assert "SM-G9910" in note["body"]
    assert note["data"]["session_id"] == second["session_id"]
    assert (await client.get("/api/v1/notifications/unread-count", headers=h)).json() == {
        "unread": 1
    }
    r = await client.post(f"/api/v1/notifications/{note['id']}/read", headers=h)
    assert r.json() == {"marked": 1}
    assert (await client.get("/api/v1/notifications/unread-count", headers=h)).json() == {
        "unread": 0
    }


async def test_known_device_does_not_alert_again(client: httpx.AsyncClient, sms) -> None:
    a = await sign_up(client, sms, device=IPHONE)
    again = await sign_up(client, sms, device=IPHONE)
    assert again["new_device"] is False
    inbox = (await client.get("/api/v1/notifications", headers=bearer(a["token"]))).json()
    assert inbox == []


async def test_device_without_id_is_recognised_by_its_attributes(
    client: httpx.AsyncClient, sms
) -> None:
    dev = {"model": "HUAWEI P60", "os": "HarmonyOS"}
    await sign_up(client, sms, device=dev)
    again = await sign_up(client, sms, device=dev)
    assert again["new_device"] is False
    other = await sign_up(client, sms, device={"model": "Pixel 8", "os": "Android"})
    assert other["new_device"] is True


async def test_mark_unknown_notification_is_404(client: httpx.AsyncClient, sms) -> None:
    me = await sign_up(client, sms)
    r = await client.post("/api/v1/notifications/nope/read", headers=bearer(me["token"]))
    assert r.status_code == 404
    assert r.json()["code"] == "notification.not_found"


async def test_overlong_device_fields_are_refused(client: httpx.AsyncClient, sms, db) -> None:
    await client.post("/api/v1/auth/sms/send", json={"phone": PHONE})
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/auth/sms/verify",
        json={"phone": PHONE, "code": sms.last_code(PHONE), "device": {"model": "x" * 500}},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "request.invalid"
    assert await snapshot(db) == before


async def test_the_authenticated_account_is_the_sessions_own_object(
    client: httpx.AsyncClient, sms, app, db
) -> None:
    """The one authenticating query hands back the session's own objects, as the
    ORM would load them: a change to one is stored, the rest kept, and
    reading them again in the same session refreshes the same objects."""
    from sqlalchemy import select, update

    from kares.identity import service as identity
    from kares.identity.models import Account, Session

    me = await sign_up(client, sms)
    rt = app.state.runtime
    async with db.sessions() as s:
        found = await identity.authenticate(s, rt, me["token"])
        assert found is not None
        account, sess = found
        assert (account.name, account.phone, sess.account_id) == (None, PHONE, account.id)
        # the objects are persistent in this session, not copies
        assert (await s.get(Account, account.id)) is account
        assert (await s.get(Session, sess.id)) is sess
        assert account not in s.dirty  # loaded, not changed (the session may be touched)
        # another writer changes the row; reading again refreshes the same object
        await s.execute(update(Account).where(Account.id == account.id).values(name="Mei Li"))
        again = await identity.authenticate(s, rt, me["token"])
        assert again is not None and again[0] is account and account.name == "Mei Li"
        account.name = "Lin"
        assert account in s.dirty
        await s.commit()
    async with db.sessions() as s:
        stored = (await s.execute(select(Account).where(Account.id == account.id))).scalar_one()
        assert stored.name == "Lin"
        assert stored.phone == PHONE  # the rest untouched (and still decrypted)
