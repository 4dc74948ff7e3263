"""Watches paired with a dependant, and SOS end to end (step 3)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kares import clock, jobs
from tests.conftest import bearer, sign_up, snapshot

GUARDIAN = "+8613900000501"
OTHER = "+8613900000502"
IMEI = "358240051111110"


async def family_with_dependant(client: httpx.AsyncClient, sms: Any) -> dict[str, Any]:
    g = await sign_up(client, sms, GUARDIAN)
    h = bearer(g["token"])
    fam = (await client.post("/api/v1/families", json={"name": "Li family"}, headers=h)).json()
    r = await client.post(
        f"/api/v1/families/{fam['id']}/dependants",
        json={"name": "Grandma Li", "age_bracket": "adult"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    return {"guardian": g, "family": fam, "dependant_id": r.json()["member"]["account_id"]}


async def hello(client: httpx.AsyncClient, imei: str = IMEI) -> dict[str, Any]:
    r = await client.post("/api/v1/watches/hello", json={"imei": imei, "model": "Kid W1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"].startswith("kares_w")
    assert body["pairing_text"].startswith("kares-watch:pair?imei=" + imei)
    assert body["pairing_qr_svg"].startswith("<svg")
    return dict(body)


async def paired(client: httpx.AsyncClient, sms: Any) -> dict[str, Any]:
    ctx = await family_with_dependant(client, sms)
    w = await hello(client)
    r = await client.post(
        "/api/v1/watches/pair",
        json={
            "text": w["pairing_text"],
            "family_id": ctx["family"]["id"],
            "dependant_id": ctx["dependant_id"],
        },
        headers=bearer(ctx["guardian"]["token"]),
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "paired"
    return {**ctx, "watch": w, "watch_id": r.json()["id"]}


async def test_watch_pairs_and_reports_as_its_wearer(client: httpx.AsyncClient, sms) -> None:
    ctx = await family_with_dependant(client, sms)
    w = await hello(client)
    me = await client.get("/api/v1/watches/me", headers=bearer(w["token"]))
    assert me.json()["status"] == "unpaired"
    # before pairing the credential is nobody's session
    assert (await client.get("/api/v1/me", headers=bearer(w["token"]))).status_code == 401
    r = await client.post(
        "/api/v1/watches/pair",
        json={
            "text": w["pairing_text"],
            "family_id": ctx["family"]["id"],
            "dependant_id": ctx["dependant_id"],
        },
        headers=bearer(ctx["guardian"]["token"]),
    )
    assert r.status_code == 201, r.text
    assert (await client.get("/api/v1/watches/me", headers=bearer(w["token"]))).json()[
        "status"
    ] == "paired"
    me = await client.get("/api/v1/me", headers=bearer(w["token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == ctx["dependant_id"]
    assert me.json()["phone"] is None
    listed = await client.get(
        f"/api/v1/families/{ctx['family']['id']}/watches",
        headers=bearer(ctx["guardian"]["token"]),
    )
    assert [x["imei_tail"] for x in listed.json()] == [IMEI[-4:]]


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda t: t.replace("&s=", "&s=x"), 400, "watch.pairing_invalid"),
        (lambda t: "kares-watch:pair?imei=999999999999999&s=abc", 400, "watch.pairing_invalid"),
        (lambda t: "https://example.com/not-a-watch", 400, "watch.pairing_invalid"),
    ],
)
async def test_bad_pairing_codes_change_nothing(
    client: httpx.AsyncClient, sms, db, mutate, status, code
) -> None:
    ctx = await family_with_dependant(client, sms)
    w = await hello(client)
    h = bearer(ctx["guardian"]["token"])
    await client.get("/api/v1/me", headers=h)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/watches/pair",
        json={
            "text": mutate(w["pairing_text"]),
            "family_id": ctx["family"]["id"],
            "dependant_id": ctx["dependant_id"],
        },
        headers=h,
    )
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert await snapshot(db) == before


async def test_only_the_familys_guardians_pair_and_only_with_dependants(
    client: httpx.AsyncClient, sms
) -> None:
    ctx = await family_with_dependant(client, sms)
    w = await hello(client)
    stranger = await sign_up(client, sms, OTHER)
    body = {
        "text": w["pairing_text"],
        "family_id": ctx["family"]["id"],
        "dependant_id": ctx["dependant_id"],
    }
    r = await client.post("/api/v1/watches/pair", json=body, headers=bearer(stranger["token"]))
    assert r.status_code == 404 and r.json()["code"] == "family.not_found"
    body["dependant_id"] = ctx["guardian"]["account"]["id"]
    r = await client.post(
        "/api/v1/watches/pair", json=body, headers=bearer(ctx["guardian"]["token"])
    )
    assert r.status_code == 404 and r.json()["code"] == "dependant.not_found"


async def test_a_paired_watch_cannot_be_taken_over(client: httpx.AsyncClient, sms) -> None:
    await paired(client, sms)
    r = await client.post("/api/v1/watches/hello", json={"imei": IMEI})
    assert r.status_code == 409
    assert r.json()["code"] == "watch.already_paired"
    r = await client.post("/api/v1/watches/hello", json={"imei": "12"})
    assert r.status_code == 422 and r.json()["code"] == "watch.invalid_imei"


async def test_unpairing_revokes_the_watch_at_once(client: httpx.AsyncClient, sms) -> None:
    ctx = await paired(client, sms)
    token = ctx["watch"]["token"]
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    r = await client.delete(
        f"/api/v1/watches/{ctx['watch_id']}", headers=bearer(ctx["guardian"]["token"])
    )
    assert r.status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401
    assert (await client.get("/api/v1/watches/me", headers=bearer(token))).status_code == 401
    again = await hello(client)  # it can introduce itself again, with a new credential
    assert again["token"] != token


async def test_sos_from_a_watch_reaches_every_guardian_until_answered(
    client: httpx.AsyncClient, sms, app
) -> None:
    ctx = await paired(client, sms)
    g = bearer(ctx["guardian"]["token"])
    rt = app.state.runtime
    sms.messages.clear()
    r = await client.post(
        "/api/v1/sos",
        json={"lat": 39.904211, "lon": 116.407395, "accuracy_m": 12, "battery": 41},
        headers=bearer(ctx["watch"]["token"]),
    )
    assert r.status_code == 201, r.text
    alert = r.json()
    assert alert["status"] == "open" and alert["account_id"] == ctx["dependant_id"]
    assert alert["recipients"] == [ctx["guardian"]["account"]["id"]]
    assert alert["precision"] == "precise"
    watch_device = next(
        d
        for d in (await client.get("/api/v1/devices", headers=bearer(ctx["watch"]["token"]))).json()
        if d["current"]
    )
    assert watch_device["battery"] == 41  # the SOS also reported the watch's battery
    # in-app at once
    inbox = (await client.get("/api/v1/notifications", headers=g)).json()
    sos = [n for n in inbox if n["category"] == "sos"]
    assert len(sos) == 1 and sos[0]["data"]["sos_id"] == alert["id"]
    assert "Grandma Li" in sos[0]["title"]
    # SMS to the guardian's phone, as a job
    await jobs.run_due(rt)
    assert [m["to"] for m in sms.messages] == [GUARDIAN]
    assert "SOS from Grandma Li" in sms.messages[0]["text"]
    # open alerts are listed for the guardian
    listed = (await client.get("/api/v1/sos", params={"status": "open"}, headers=g)).json()
    assert [a["id"] for a in listed] == [alert["id"]]
    # nobody answered: a reminder
    clock.advance(121)
    await jobs.run_due(rt)
    inbox = (await client.get("/api/v1/notifications", headers=g)).json()
    assert sum(n["category"] == "sos" for n in inbox) == 2
    assert any(n["title"].startswith("Still waiting") for n in inbox)
    # the person who raised it cannot close it; a stranger cannot see it
    r = await client.post(
        f"/api/v1/sos/{alert['id']}/acknowledge", headers=bearer(ctx["watch"]["token"])
    )
    assert r.status_code == 403 and r.json()["code"] == "sos.not_recipient"
    stranger = await sign_up(client, sms, OTHER)
    r = await client.post(
        f"/api/v1/sos/{alert['id']}/acknowledge", headers=bearer(stranger["token"])
    )
    assert r.status_code == 404 and r.json()["code"] == "sos.not_found"
    # the guardian answers: it closes, and no more reminders come
    r = await client.post(f"/api/v1/sos/{alert['id']}/acknowledge", headers=g)
    assert r.status_code == 200
    assert r.json()["status"] == "acknowledged"
    assert r.json()["acknowledged_by"] == ctx["guardian"]["account"]["id"]
    clock.advance(600)
    await jobs.run_due(rt)
    inbox = (await client.get("/api/v1/notifications", headers=g)).json()
    assert sum(n["category"] == "sos" for n in inbox) == 2
    assert (await client.get("/api/v1/sos", params={"status": "open"}, headers=g)).json() == []


async def test_sos_with_approximate_location_is_coarsened(client: httpx.AsyncClient, sms) -> None:
    ctx = await paired(client, sms)
    token = ctx["watch"]["token"]
    me = (await client.get("/api/v1/devices", headers=bearer(token))).json()
    device_id = next(d["id"] for d in me if d["current"])
    r = await client.put(
        f"/api/v1/devices/{device_id}/permissions",
        json={"permissions": {"location": "approximate"}},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/sos", json={"lat": 39.904211, "lon": 116.407395}, headers=bearer(token)
    )
    assert r.status_code == 201, r.text
    assert (r.json()["lat"], r.json()["lon"], r.json()["precision"]) == (
        39.9,
        116.41,
        "approximate",
    )


async def test_bad_sos_input_changes_nothing(client: httpx.AsyncClient, sms, db) -> None:
    me = await sign_up(client, sms)
    h = bearer(me["token"])
    await client.get("/api/v1/me", headers=h)
    before = await snapshot(db)
    for body in (
        {"lat": 91, "lon": 0},
        {"battery": 150},
        {"lat": "north"},
        {"x": 1},
        # true and false are not numbers: no SOS at 0,0 told to every guardian
        {"lat": False, "lon": 0.0, "accuracy_m": True},
        {"lat": "31.2", "lon": "121.4"},
        {"battery": True},
    ):
        r = await client.post("/api/v1/sos", json=body, headers=h)
        assert r.status_code == 422, body
        assert r.json()["code"] == "request.invalid"
    assert await snapshot(db) == before
