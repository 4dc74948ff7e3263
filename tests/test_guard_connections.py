"""The guard and the caller's resolution work on any connection, not only on an
HTTP request: a WebSocket handshake is admitted or refused by the same checks
(the refusal is the same problem document, as a WebSocket denial response),
and a session the server holds itself (a watch's TCP connection) resolves to
a caller until it is revoked."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import WebSocket
from starlette.testclient import TestClient, WebSocketDenialResponse

from kares.app import create_app
from kares.identity.auth import caller_for_session
from kares.privacy.guard import Allowed, guard
from tests.conftest import POLICY_VERSION, REGISTRATION


def _app_with_probe(settings: Any) -> Any:
    app = create_app(settings, migrate_embedded=False)

    @app.websocket("/ws-probe")
    async def probe(
        ws: WebSocket, ctx: Annotated[Allowed, guard("driving_tracks", "view")]
    ) -> None:
        await ws.accept()
        await ws.send_json({"account": ctx.account_id, "function": ctx.function})
        await ws.close()

    return app


def _sign_up(c: TestClient, sms: Any, phone: str) -> dict[str, Any]:
    r = c.post("/api/v1/auth/sms/send", json={"phone": phone})
    assert r.status_code == 202, r.text
    body = {"phone": phone, "code": sms.last_code(phone), **REGISTRATION}
    r = c.post("/api/v1/auth/sms/verify", json=body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def test_a_websocket_is_admitted_and_refused_by_the_guard(settings: Any, sms: Any) -> None:
    with TestClient(_app_with_probe(settings), base_url="https://testserver") as c:
        me = _sign_up(c, sms, "+8613812345678")
        auth = {"authorization": f"Bearer {me['token']}"}
        with c.websocket_connect("/ws-probe", headers=auth) as ws:
            assert ws.receive_json() == {
                "account": me["account"]["id"],
                "function": "driving_tracks",
            }

        # no credentials: the handshake is denied with the guard's own problem
        with pytest.raises(WebSocketDenialResponse) as denied:
            with c.websocket_connect("/ws-probe"):
                pass
        assert denied.value.status_code == 401
        assert denied.value.json()["code"] == "auth.required"

        # a withdrawn consent stops the next connection, as it stops a request
        r = c.post(
            "/api/v1/me/consents",
            json={
                "subject": "category:location.precise",
                "action": "withdraw",
                "policy_version": POLICY_VERSION,
            },
            headers=auth,
        )
        assert r.status_code == 201, r.text
        r = c.post(
            "/api/v1/me/consents",
            json={"subject": "policy", "action": "withdraw", "policy_version": POLICY_VERSION},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        with pytest.raises(WebSocketDenialResponse) as denied:
            with c.websocket_connect("/ws-probe", headers=auth):
                pass
        assert denied.value.status_code == 403
        assert denied.value.json()["code"] == "consent.policy_required"

        # a portal cookie opens a WebSocket only from the server's own origin
        cookie = {"cookie": f"{settings.session_cookie_name}={me['token']}"}
        with pytest.raises(WebSocketDenialResponse) as denied:
            with c.websocket_connect(
                "/ws-probe", headers={**cookie, "origin": "https://evil.example"}
            ):
                pass
        assert denied.value.json()["code"] == "auth.csrf"


async def test_a_session_the_server_holds_resolves_until_it_is_revoked(
    client: Any, sms: Any, db: Any
) -> None:
    from tests.conftest import bearer, sign_up

    me = await sign_up(client, sms)
    session_id = (await client.get("/api/v1/me/sessions", headers=bearer(me["token"]))).json()
    (current,) = [x for x in session_id if x.get("current")]
    async with db.sessions() as s:
        caller = await caller_for_session(s, current["id"])
        assert caller is not None and caller.account.id == me["account"]["id"]
    r = await client.delete(f"/api/v1/me/sessions/{current['id']}", headers=bearer(me["token"]))
    assert r.status_code == 204, r.text
    async with db.sessions() as s:
        assert await caller_for_session(s, current["id"]) is None
