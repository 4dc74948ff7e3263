"""Matrix clients in the family chat (issue 14, "Matrix clients can join the family
chat"): matrix-nio, a real Matrix client, against ``kares`` served by uvicorn on
loopback. Log in (user id, localpart, phone), whoami, joined rooms, send, receive
through sync, page history, receipts, typing, images, redactions, logout; the
errors in the Matrix form (raw httpx); a member removed from the family loses the
room on the next sync and may no longer send; a waiting sync holds no database
connection."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from nio import (
    AsyncClient,
    DownloadResponse,
    JoinedRoomsResponse,
    LoginResponse,
    ReceiptEvent,
    RedactedEvent,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    UpdateReceiptMarkerResponse,
    UploadResponse,
    WhoamiResponse,
)
from nio.api import MessageDirection

from kares import clock
from tests.conftest import count_rows, query, snapshot
from tests.support.live import free_port
from tests.test_avatar import jpeg_with_metadata
from tests.test_devices import reported
from tests.test_families import aid, h, join, new_family, person

OWNER, MEMBER, THIRD = (f"+86137200000{i:02d}" for i in range(1, 4))
PASSWORD = "family-chat-9"
SERVER = "localhost"
CS = "/_matrix/client/v3"
WAIT = 20.0  # a bound on waiting for what must come (never a timing assertion)


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """The app behind a real uvicorn server on loopback; its http:// base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        await task


@pytest.fixture
async def url(app: Any) -> AsyncIterator[str]:
    async with serving(app) as u:
        yield u


async def with_password(client: httpx.AsyncClient, me: dict[str, Any]) -> dict[str, Any]:
    r = await client.put("/api/v1/me/password", json={"new_password": PASSWORD}, headers=h(me))
    assert r.status_code == 200, r.text
    return me


def mxid(me: dict[str, Any]) -> str:
    return f"@{aid(me)}:{SERVER}"


@asynccontextmanager
async def nio_client(url: str, who: str, device: str | None = None) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(url, who, device_id=device or "")
    try:
        r = await c.login(PASSWORD, device_name="nio in the tests")
        assert isinstance(r, LoginResponse), r
        yield c
    finally:
        await c.close()


async def family(client: httpx.AsyncClient, sms: Any) -> tuple[dict, dict, str]:
    owner = await with_password(client, await person(client, sms, OWNER, "Wang Fang"))
    member = await with_password(client, await person(client, sms, MEMBER, "Wang Lei"))
    fid = await new_family(client, owner, "Wangs")
    await join(client, owner, fid, member)
    return owner, member, fid


def room_of(fid: str) -> str:
    return f"!{fid}:{SERVER}"


async def until(c: AsyncClient, pred: Any, limit: int = 8) -> list[SyncResponse]:
    """Sync (long-polling) until ``pred(response)`` holds; every response seen."""
    seen = []
    for _ in range(limit):
        r = await asyncio.wait_for(c.sync(timeout=10_000), WAIT)
        assert isinstance(r, SyncResponse), r
        seen.append(r)
        if pred(r):
            return seen
    raise AssertionError("the sync never brought it")


def texts(r: SyncResponse, room: str) -> list[str]:
    info = r.rooms.join.get(room)
    if info is None:
        return []
    return [e.body for e in info.timeline.events if isinstance(e, RoomMessageText)]


async def test_log_in_sync_send_receive_page_and_receipts(
    url: str, client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, fid = await family(client, sms)
    room = room_of(fid)
    # with the full user id, and with the bare localpart
    async with nio_client(url, mxid(owner), "OWNERPHONE") as a, nio_client(url, aid(member)) as b:
        assert a.user_id == mxid(owner) and a.device_id == "OWNERPHONE"
        who = await a.whoami()
        assert isinstance(who, WhoamiResponse)
        assert (who.user_id, who.device_id) == (mxid(owner), "OWNERPHONE")
        assert b.user_id == mxid(member) and b.device_id  # a new device id
        rooms = await b.joined_rooms()
        assert isinstance(rooms, JoinedRoomsResponse) and rooms.rooms == [room]
        # the first sync: the room, its name and members
        first = await b.sync(timeout=0, full_state=True)
        assert isinstance(first, SyncResponse)
        assert room in first.rooms.join
        r = b.rooms[room]
        assert r.name == "Wangs"
        assert set(r.users) == {mxid(owner), mxid(member)}
        assert r.users[mxid(owner)].display_name == "Wang Fang"
        await a.sync(timeout=0)
        # send through one, receive through the other's long-poll
        waiting = asyncio.create_task(until(b, lambda x: "hello from nio" in texts(x, room)))
        await asyncio.sleep(0.2)
        sent = await a.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"}, tx_id="t-hello"
        )
        assert isinstance(sent, RoomSendResponse), sent
        got = await waiting
        ev = [e for e in got[-1].rooms.join[room].timeline.events if isinstance(e, RoomMessageText)]
        assert ev[-1].event_id == sent.event_id and ev[-1].sender == mxid(owner)
        # the same message over Kares' own API
        r2 = await client.get(f"/api/v1/conversations/{fid}/messages", headers=h(member))
        assert r2.json()["messages"][-1]["text"] == "hello from nio"
        # a retry of the same transaction stores nothing new
        n = await count_rows(db, "messages")
        again = await a.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": "x"}, tx_id="t-hello"
        )
        assert isinstance(again, RoomSendResponse) and again.event_id == sent.event_id
        assert await count_rows(db, "messages") == n
        # page history backwards with room_messages
        for i in range(12):
            s = await a.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"n{i}"})
            assert isinstance(s, RoomSendResponse)
        page = await b.room_messages(room, start="", limit=5)
        assert isinstance(page, RoomMessagesResponse), page
        bodies = [e.body for e in page.chunk if isinstance(e, RoomMessageText)]
        assert bodies == ["n11", "n10", "n9", "n8", "n7"]
        older = await b.room_messages(room, start=page.end, limit=5)
        assert isinstance(older, RoomMessagesResponse)
        assert [e.body for e in older.chunk if isinstance(e, RoomMessageText)] == [
            "n6",
            "n5",
            "n4",
            "n3",
            "n2",
        ]
        forward = await b.room_messages(
            room, start=older.end, limit=3, direction=MessageDirection.front
        )
        assert isinstance(forward, RoomMessagesResponse)
        assert [e.body for e in forward.chunk if isinstance(e, RoomMessageText)] == [
            "n2",
            "n3",
            "n4",
        ]
        # unread counts, then a receipt by the member, seen by the owner
        await until(b, lambda x: "n11" in texts(x, room) or b.rooms[room].unread_notifications > 0)
        assert b.rooms[room].unread_notifications == 13
        last = page.chunk[0].event_id
        r3 = await b.update_receipt_marker(room, last)
        assert isinstance(r3, UpdateReceiptMarkerResponse), r3

        def read_by_member(x: SyncResponse) -> bool:
            info = x.rooms.join.get(room)
            return info is not None and any(
                isinstance(e, ReceiptEvent)
                and any(
                    (rc.event_id, rc.user_id, rc.receipt_type) == (last, mxid(member), "m.read")
                    for rc in e.receipts
                )
                for e in info.ephemeral
            )

        await until(a, read_by_member)
        await until(b, lambda x: b.rooms[room].unread_notifications == 0)
        rows = await query(
            db, "SELECT up_to FROM message_receipts WHERE account_id = :a", a=aid(member)
        )
        assert f"${rows[0]['up_to']}:{SERVER}" == last


async def test_typing_images_redaction_and_logout(
    url: str, client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, fid = await family(client, sms)
    room = room_of(fid)
    async with nio_client(url, mxid(owner)) as a, nio_client(url, mxid(member)) as b:
        await a.sync(timeout=0)
        await b.sync(timeout=0)
        # typing, seen by the other
        waiting = asyncio.create_task(
            until(
                b, lambda x: mxid(owner) in (b.rooms[room].typing_users if room in b.rooms else ())
            )
        )
        await asyncio.sleep(0.2)
        await a.room_typing(room, True, timeout=5000)
        await waiting
        waiting = asyncio.create_task(until(b, lambda x: not b.rooms[room].typing_users))
        await asyncio.sleep(0.2)
        await a.room_typing(room, False)
        await waiting
        # an image: upload, send, download (the metadata stripped by the pipeline)
        raw = jpeg_with_metadata()
        up, _ = await a.upload(
            io.BytesIO(raw), content_type="image/jpeg", filename="a.jpg", filesize=len(raw)
        )
        assert isinstance(up, UploadResponse), up
        assert up.content_uri.startswith(f"mxc://{SERVER}/")
        sent = await a.room_send(
            room, "m.room.message", {"msgtype": "m.image", "body": "a.jpg", "url": up.content_uri}
        )
        assert isinstance(sent, RoomSendResponse), sent
        got = await until(
            b,
            lambda x: any(
                getattr(e, "url", None) == up.content_uri
                for e in (x.rooms.join[room].timeline.events if room in x.rooms.join else [])
            ),
        )
        assert got
        dl = await b.download(mxc=up.content_uri)
        assert isinstance(dl, DownloadResponse), dl
        assert dl.body[:2] == b"\xff\xd8" and len(dl.body) > 100
        assert b"Exif" not in dl.body[:200]
        # someone outside the family cannot download it
        stranger = await with_password(client, await person(client, sms, THIRD, "Li"))
        r = await client.get(
            f"/_matrix/client/v1/media/download/{SERVER}/{up.content_uri.rsplit('/', 1)[1]}",
            headers=h(stranger),
        )
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        # a redaction recalls the message for everyone
        text = await a.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "oops"})
        assert isinstance(text, RoomSendResponse)
        red = await a.room_redact(room, text.event_id)
        assert getattr(red, "event_id", None), red
        await until(
            b,
            lambda x: any(
                getattr(e, "redacts", None) == text.event_id
                for e in (x.rooms.join[room].timeline.events if room in x.rooms.join else [])
            ),
        )
        page = await b.room_messages(room, start="", limit=1)
        assert isinstance(page.chunk[0], RedactedEvent)
        r = await client.get(f"/api/v1/conversations/{fid}/messages", headers=h(member))
        assert r.json()["messages"][-1]["recalled"] is True
        # someone else's message cannot be redacted; nor after the window
        mine = await b.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "mine"})
        r = await client.put(
            f"{CS}/rooms/{room}/redact/{mine.event_id}/t1", json={}, headers=h(owner)
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        clock.advance(600)
        r = await client.put(
            f"{CS}/rooms/{room}/redact/{mine.event_id}/t2",
            json={},
            headers={"Authorization": f"Bearer {b.access_token}"},
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        # logging out ends the Kares session behind it
        out = await b.logout()
        assert not hasattr(out, "status_code") or out.status_code is None, out
        r = await client.get(
            f"{CS}/account/whoami", headers={"Authorization": f"Bearer {b.access_token}"}
        )
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {b.access_token}"})
        assert r.status_code == 401


async def test_phone_login_and_a_revoked_device_ends_the_matrix_session(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, _, fid = await family(client, sms)
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.phone", "country": "CN", "phone": OWNER[3:]},
        "password": PASSWORD,
        "device_id": "PHONELOGIN",
    }
    r = await client.post(f"{CS}/login", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["user_id"] == mxid(owner) and got["device_id"] == "PHONELOGIN"
    token = got["access_token"]
    mx = {"Authorization": f"Bearer {token}"}
    r = await client.get(f"{CS}/joined_rooms", headers=mx)
    assert r.json() == {"joined_rooms": [room_of(fid)]}
    # the legacy top-level "user" too
    r = await client.post(
        f"{CS}/login", json={"type": "m.login.password", "user": aid(owner), "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    # the Matrix login is a Kares session: revoking it in Kares ends it
    sessions = (await client.get("/api/v1/me/sessions", headers=h(owner))).json()
    matrix = [x for x in sessions if x["label"] == "matrix:PHONELOGIN"]
    assert len(matrix) == 1
    r = await client.delete(f"/api/v1/me/sessions/{matrix[0]['id']}", headers=h(owner))
    assert r.status_code == 204
    r = await client.get(f"{CS}/account/whoami", headers=mx)
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def test_errors_in_the_matrix_form(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner, member, fid = await family(client, sms)
    room = room_of(fid)
    r = await client.get("/_matrix/client/versions")
    assert r.status_code == 200 and "v1.1" in r.json()["versions"]
    other = await with_password(client, await person(client, sms, THIRD, "Li"))
    ofid = await new_family(client, other, "Lis")
    before = await snapshot(db)

    async def err(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/json")
        body = dict(r.json())
        assert body["errcode"] == code and isinstance(body["error"], str), body
        return body

    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": aid(owner)}}
    await err(
        await client.post(f"{CS}/login", json={**login, "password": "wrong-one"}),
        403,
        "M_FORBIDDEN",
    )
    await err(await client.post(f"{CS}/login", content=b"{nope"), 400, "M_NOT_JSON")
    await err(await client.post(f"{CS}/login", json=[1]), 400, "M_BAD_JSON")
    await err(await client.post(f"{CS}/login", json={"type": "m.login.token"}), 400, "M_UNKNOWN")
    await err(await client.get(f"{CS}/sync"), 401, "M_MISSING_TOKEN")
    await err(
        await client.get(f"{CS}/sync", headers={"Authorization": "Bearer nope"}),
        401,
        "M_UNKNOWN_TOKEN",
    )
    mx = h(owner)
    await err(
        await client.get(f"{CS}/sync", params={"since": "garbage"}, headers=mx),
        400,
        "M_INVALID_PARAM",
    )
    await err(
        await client.get(f"{CS}/sync", params={"timeout": "-1"}, headers=mx), 400, "M_INVALID_PARAM"
    )
    await err(
        await client.get(f"{CS}/sync", params={"filter": "999"}, headers=mx), 404, "M_NOT_FOUND"
    )
    # another family's room, a room of another server, an event that is not ours
    await err(
        await client.put(
            f"{CS}/rooms/{room_of(ofid)}/send/m.room.message/t1",
            json={"msgtype": "m.text", "body": "x"},
            headers=mx,
        ),
        403,
        "M_FORBIDDEN",
    )
    await err(
        await client.put(
            f"{CS}/rooms/!{fid}:elsewhere/send/m.room.message/t1",
            json={"msgtype": "m.text", "body": "x"},
            headers=mx,
        ),
        403,
        "M_FORBIDDEN",
    )
    await err(
        await client.put(f"{CS}/rooms/{room}/send/m.room.message/t2", content=b"nope", headers=mx),
        400,
        "M_NOT_JSON",
    )
    await err(
        await client.put(
            f"{CS}/rooms/{room}/send/m.room.message/t3",
            json={"msgtype": "m.file", "body": "f"},
            headers=mx,
        ),
        400,
        "M_BAD_JSON",
    )
    await err(
        await client.put(f"{CS}/rooms/{room}/send/m.reaction/t4", json={}, headers=mx),
        400,
        "M_UNRECOGNIZED",
    )
    await err(
        await client.post(f"{CS}/rooms/{room}/receipt/m.read/$999:{SERVER}", json={}, headers=mx),
        404,
        "M_NOT_FOUND",
    )
    await err(
        await client.get(f"{CS}/profile/{mxid(other)}", headers=h(member)), 404, "M_NOT_FOUND"
    )
    await err(
        await client.put(
            f"{CS}/rooms/{room}/typing/{mxid(member)}", json={"typing": True}, headers=mx
        ),
        403,
        "M_FORBIDDEN",
    )
    # what Kares does not do: M_UNRECOGNIZED, 404 (405 for a known path, another method)
    for method, path in (
        ("POST", f"{CS}/createRoom"),
        ("POST", f"{CS}/rooms/{room}/invite"),
        ("POST", f"{CS}/join/{room}"),
        ("POST", f"{CS}/keys/upload"),
        ("GET", "/_matrix/federation/v1/version"),
        ("GET", "/_matrix/key/v2/server"),
        ("GET", f"{CS}/pushrules/"),
    ):
        await err(await client.request(method, path, headers=mx), 404, "M_UNRECOGNIZED")
    await err(await client.delete(f"{CS}/sync", headers=mx), 405, "M_UNRECOGNIZED")
    # none of it changed anything (the failed login is counted and recorded, as any)
    after = await snapshot(db)
    for table in set(before) - {"password_limits", "login_events"}:
        assert before[table] == after[table], table
    # a profile of a co-member is readable
    r = await client.get(f"{CS}/profile/{mxid(member)}", headers=mx)
    assert r.json() == {"displayname": "Wang Lei"}
    r = await client.get(f"{CS}/rooms/{room}/joined_members", headers=mx)
    assert set(r.json()["joined"]) == {mxid(owner), mxid(member)}


async def test_the_policy_and_permissions_guard_matrix_as_the_api(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, _, fid = await family(client, sms)
    room = room_of(fid)
    r = await client.post(
        f"{CS}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": mxid(owner)},
            "password": PASSWORD,
        },
    )
    me = {"token": r.json()["access_token"]}
    sessions = (await client.get("/api/v1/me/sessions", headers=h(me))).json()
    me["device_id"] = next(x["device_id"] for x in sessions if x["current"])
    await reported(client, me, {"photos": "denied", "camera": "denied"})
    raw = jpeg_with_metadata()
    r = await client.post(
        "/_matrix/media/v3/upload", content=raw, headers={**h(me), "Content-Type": "image/jpeg"}
    )
    assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN"), r.text
    # withdrawing the policy: M_CONSENT_NOT_GIVEN with where to read it
    r = await client.post(
        "/api/v1/me/consents", json={"subject": "policy", "action": "withdraw"}, headers=h(owner)
    )
    assert r.status_code == 201, r.text
    r = await client.put(
        f"{CS}/rooms/{room}/send/m.room.message/c1",
        json={"msgtype": "m.text", "body": "x"},
        headers=h(owner),
    )
    assert (r.status_code, r.json()["errcode"]) == (403, "M_CONSENT_NOT_GIVEN"), r.text
    assert r.json()["consent_uri"].endswith("/privacy/policy")
    r = await client.get(f"{CS}/sync", headers=h(owner))
    assert (r.status_code, r.json()["errcode"]) == (403, "M_CONSENT_NOT_GIVEN"), r.text


async def test_a_removed_member_leaves_the_room_on_the_next_sync(
    url: str, client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, fid = await family(client, sms)
    room = room_of(fid)
    async with nio_client(url, mxid(owner)) as a, nio_client(url, mxid(member)) as b:
        await a.sync(timeout=0)
        await b.sync(timeout=0)
        r = await client.delete(f"/api/v1/families/{fid}/members/{aid(member)}", headers=h(owner))
        assert r.status_code == 204, r.text
        got = await until(b, lambda x: room in x.rooms.leave)
        assert room not in got[-1].rooms.join
        leave = got[-1].rooms.leave[room].timeline.events
        assert isinstance(leave[-1], RoomMemberEvent) and leave[-1].membership == "leave"
        # the owner sees the member leave
        seen = await until(
            a,
            lambda x: (
                room in x.rooms.join
                and any(
                    isinstance(e, RoomMemberEvent)
                    and e.state_key == mxid(member)
                    and e.membership == "leave"
                    for e in x.rooms.join[room].timeline.events
                )
            ),
        )
        assert seen
        # once: the next sync has nothing of the room
        nxt = await b.sync(timeout=0)
        assert room not in nxt.rooms.leave and room not in nxt.rooms.join
        r2 = await b.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "still?"})
        assert getattr(r2, "status_code", None) == "M_FORBIDDEN", r2
        assert (await b.joined_rooms()).rooms == []


async def test_waiting_syncs_hold_no_database_connection(
    app: Any, url: str, client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, fid = await family(client, sms)
    room = room_of(fid)
    pool = app.state.runtime.db.engine.pool
    async with nio_client(url, mxid(owner)) as a, nio_client(url, mxid(member)) as b:
        await a.sync(timeout=0)
        await b.sync(timeout=0)
        waiting = [
            asyncio.create_task(until(c, lambda x, c=c: "ping" in texts(x, room))) for c in (a, b)
        ]
        await asyncio.sleep(0.5)  # both long-polls are parked on the hub
        assert pool.checkedout() == 0
        r = await client.post(
            f"/api/v1/conversations/{fid}/messages",
            json={"txn_id": "p1", "kind": "text", "text": "ping"},
            headers=h(owner),
        )
        assert r.status_code == 201
        for t in waiting:
            await asyncio.wait_for(t, WAIT)
        with contextlib.suppress(Exception):
            pass
        assert pool.checkedout() == 0


async def test_the_sync_lane_answers_what_the_route_does(
    client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /sync`` is served by a lane (``kares.lanes``) in its steady state (an
    incremental sync, its filter by id, a live session, the guard's decision
    remembered): the same poll as the route's, the same answer, the same parked
    subscription, and a session ended while it waits answered in the Matrix form."""
    from kares.protocols.matrix import api as matrix_api

    owner, member, fid = await family(client, sms)
    login = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": aid(member)},
        "password": PASSWORD,
        "device_id": "LANEPHONE",
    }
    r = await client.post(f"{CS}/login", json=login)
    assert r.status_code == 200, r.text
    mx = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = await client.post(
        f"{CS}/user/{mxid(member)}/filter", json={"room": {"timeline": {"limit": 2}}}, headers=mx
    )
    filter_id = r.json()["filter_id"]
    r = await client.get(f"{CS}/sync", params={"filter": filter_id}, headers=mx)  # the route's
    assert r.status_code == 200, r.text
    first = r.json()["next_batch"]
    for i in range(3):
        r = await client.post(
            f"/api/v1/conversations/{fid}/messages",
            json={"txn_id": f"s{i}", "kind": "text", "text": f"m{i}"},
            headers=h(owner),
        )
        assert r.status_code == 201, r.text

    steady = matrix_api.steady_session
    lane: list[bool] = []

    async def counted(*a: Any, **kw: Any) -> Any:
        got = await steady(*a, **kw)
        lane.append(got is not None)
        return got

    async def declined(*a: Any, **kw: Any) -> None:
        return None

    async def sync(**params: Any) -> httpx.Response:
        return await client.get(f"{CS}/sync", params={"filter": filter_id, **params}, headers=mx)

    monkeypatch.setattr(matrix_api, "steady_session", counted)
    by_lane = await sync(since=first, timeout=0)
    monkeypatch.setattr(matrix_api, "steady_session", declined)
    by_route = await sync(since=first, timeout=0)
    monkeypatch.setattr(matrix_api, "steady_session", counted)
    expected_lane = [True] if db.engine.dialect.name == "sqlite" else []
    assert lane == expected_lane
    assert by_lane.status_code == by_route.status_code == 200
    assert by_lane.headers["content-type"] == by_route.headers["content-type"]
    assert by_lane.json() == by_route.json()
    timeline = by_lane.json()["rooms"]["join"][room_of(fid)]["timeline"]
    assert [e["content"]["body"] for e in timeline["events"]] == ["m1", "m2"]
    assert timeline["limited"] is True
    # a long poll woken by a message
    since = by_lane.json()["next_batch"]
    waiting = asyncio.create_task(sync(since=since, timeout=10_000))
    await asyncio.sleep(0.05)
    r = await client.post(
        f"/api/v1/conversations/{fid}/messages",
        json={"txn_id": "s3", "kind": "text", "text": "m3"},
        headers=h(owner),
    )
    woke = await asyncio.wait_for(waiting, WAIT)
    events = woke.json()["rooms"]["join"][room_of(fid)]["timeline"]["events"]
    assert [e["content"]["body"] for e in events] == ["m3"]
    # it parked its subscription under the device the client named at login
    assert (aid(member), "mx:LANEPHONE") in matrix_api.parking._subs

    # the session ends while a poll waits: the next wake answers 401 in the Matrix form
    waiting = asyncio.create_task(sync(since=woke.json()["next_batch"], timeout=10_000))
    await asyncio.sleep(0.05)
    sessions = (await client.get("/api/v1/me/sessions", headers=h(member))).json()
    [matrix] = [x for x in sessions if x["label"] == "matrix:LANEPHONE"]
    r = await client.delete(f"/api/v1/me/sessions/{matrix['id']}", headers=h(member))
    assert r.status_code == 204
    await client.post(
        f"/api/v1/conversations/{fid}/messages",
        json={"txn_id": "s4", "kind": "text", "text": "m4"},
        headers=h(owner),
    )
    ended = await asyncio.wait_for(waiting, WAIT)
    assert (ended.status_code, ended.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert ended.headers["content-type"] == "application/json"
    assert ended.headers.get_list("content-length") == [str(len(ended.content))]
    if db.engine.dialect.name == "sqlite":
        assert lane == [True, True, True]


async def test_a_sync_finds_the_readers_notices_by_their_index(db: Any) -> None:
    """The search a sync makes for the reader's own notices (left, removed) among
    the positions it reads goes through ``ix_messages_notices`` (notices only),
    not through every message the reader ever sent."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the plan is read with SQLite's EXPLAIN QUERY PLAN")
    from kares.protocols.matrix import sync as syncing

    async with db.sessions() as s:
        await syncing._OWN_NOTICES.rows(s, {"account_id": "a" * 32, "after": 0, "upto": 9})
        sql, params = syncing._OWN_NOTICES._sql, ["a" * 32, 0, 9]
        conn = await s.connection()
        raw = await conn.get_raw_connection()
        plan = raw.driver_connection.raw.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    details = [row[3] for row in plan]
    assert any("ix_messages_notices" in d for d in details), details
