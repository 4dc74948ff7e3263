"""The device's WebSocket (``/api/v1/ws``): authentication, resume by position,
resync, bad frames, floods, typing, presence.

A real uvicorn server on loopback serves the test's app (its database on the
tier's server) and a real WebSocket client (``websockets``) talks to it; the
two-process and restart cases are in tests/test_ws_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kares import clock, jobs, live
from kares.db import Database
from kares.notify import service as notify
from tests.conftest import bearer, count_rows, query, sign_up
from tests.support.live import free_port
from tests.test_families import join, new_family
from tests.test_location_ingest import fix, member, upload
from tests.test_location_read import at, fam, open_stream, sse_events  # noqa: F401 - fam

ALICE, BOB, CAROL = "+8613700008001", "+8613700008002", "+8613700008003"
PHONE = {"model": "Pixel 8", "os": "Android", "id": "OAID-8001"}
WAIT = 20.0  # a bound on waiting for a frame that must come (never a timing assertion)


@pytest.fixture
def settings_overrides(push_outbox: Path) -> dict[str, Any]:
    return {
        "ws_typing_seconds": 0.3,
        "ws_resume_limit": 5,
        "ws_frames_per_second": 5.0,
        "ws_frames_burst": 20,
        "push_sink": "file",
        "push_file": push_outbox,
    }


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[str]:
    """The app behind a real uvicorn server on loopback; its ws:// base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws="auto", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield f"ws://127.0.0.1:{port}/api/v1/ws"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def ws_url(app: Any) -> AsyncIterator[str]:
    async with serving(app) as url:
        yield url


def opened(url: str, token: str | None, since: str | None = None, **kw: Any) -> Any:
    headers = bearer(token) if token else {}
    full = url + (f"?since={since}" if since else "")
    return connect(full, additional_headers=headers, open_timeout=WAIT, **kw)


async def frame(c: ClientConnection) -> dict[str, Any]:
    got = json.loads(await asyncio.wait_for(c.recv(), WAIT))
    assert isinstance(got, dict)
    return got


async def frames_until(c: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Every frame up to and including the first of type ``kind``."""
    out = []
    while True:
        f = await frame(c)
        out.append(f)
        if f["type"] == kind:
            return out


async def hello(c: ClientConnection) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The hello frame and what follows it up to ``caught_up``."""
    first = await frame(c)
    assert first["type"] == "hello", first
    rest = await frames_until(c, "caught_up")
    return first, rest[:-1]


async def tell(db: Database, account_id: str, *titles: str) -> None:
    async with db.sessions() as s:
        for t in titles:
            await notify.add(s, account_id=account_id, category="messages", title=t, body="-")
        await s.commit()


async def alone_pong(c: ClientConnection, ref: str = "p") -> None:
    """The socket still answers (and nothing else was waiting ahead of the pong)."""
    await c.send(json.dumps({"type": "ping", "id": ref}))
    assert await frame(c) == {"type": "pong", "id": ref}


# --- authentication ------------------------------------------------------------------


async def test_no_token_or_a_bad_one_is_refused_at_the_handshake_with_a_problem(
    ws_url: str, client: httpx.AsyncClient, sms: Any
) -> None:
    for token, code in ((None, "auth.required"), ("not-a-token", "auth.invalid_token")):
        with pytest.raises(InvalidStatus) as info:
            async with opened(ws_url, token):
                pass
        response = info.value.response
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert json.loads(response.body)["code"] == code
    me = await sign_up(client, sms, ALICE)
    r = await client.post("/api/v1/auth/logout", headers=bearer(me["token"]))
    assert r.status_code in (200, 204), r.text
    with pytest.raises(InvalidStatus) as info:
        async with opened(ws_url, me["token"]):
            pass
    assert info.value.response.status_code == 401


async def test_a_browser_sends_its_token_as_a_subprotocol(
    ws_url: str, client: httpx.AsyncClient, sms: Any
) -> None:
    me = await sign_up(client, sms, ALICE, device=PHONE)
    async with connect(
        ws_url, subprotocols=["kares", f"bearer.{me['token']}"], open_timeout=WAIT
    ) as c:
        assert c.subprotocol == "kares"
        first, missed = await hello(c)
        assert first["account_id"] == me["account"]["id"]
        assert first["device_id"] == me["device_id"]
        assert missed == []


# --- resume by position ----------------------------------------------------------------


async def test_inbox_events_arrive_live_and_a_resume_gets_exactly_what_was_missed_in_order(
    ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    me = await sign_up(client, sms, ALICE)
    me_id = me["account"]["id"]
    async with opened(ws_url, me["token"]) as c:
        first, _ = await hello(c)
        assert first["resumed"] is False
        await tell(db, me_id, "one", "two")
        got = [await frame(c), await frame(c)]
        assert [(f["type"], f["source"], f["data"]["title"]) for f in got] == [
            ("notification", "inbox", "one"),
            ("notification", "inbox", "two"),
        ]
        positions = [f["position"] for f in got]
        assert positions[0] < positions[1]
        token_after_one = got[0]["token"]
    await tell(db, me_id, "three", "four")  # while away
    async with opened(ws_url, me["token"], since=token_after_one) as c:
        first, missed = await hello(c)
        assert first["resumed"] is True
        assert [f["data"]["title"] for f in missed] == ["two", "three", "four"]
        assert [f["position"] for f in missed] == sorted({f["position"] for f in missed})
        await tell(db, me_id, "five")
        live_one = await frame(c)
        assert live_one["data"]["title"] == "five"
        last = live_one["token"]
    # resuming from the newest token: nothing again, no duplicates
    async with opened(ws_url, me["token"], since=last) as c:
        _, missed = await hello(c)
        assert missed == []
        await alone_pong(c)


async def test_a_deleted_newest_entry_never_gives_its_position_again(
    ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    """The newest inbox entries deleted (retention, an erased person's notices):
    the next entry takes a position after them, not theirs again, so a socket
    that had seen them resumes without a resync and gets the new entry."""
    me = await sign_up(client, sms, ALICE)
    me_id = me["account"]["id"]
    async with opened(ws_url, me["token"]) as c:
        await hello(c)
        await tell(db, me_id, "kept", "deleted-1", "deleted-2")
        got = [await frame(c) for _ in range(3)]
        seen = got[-1]["token"]
        gone = [f["position"] for f in got[1:]]
    async with db.sessions() as s:
        await s.execute(
            text("DELETE FROM notifications WHERE account_id = :a AND title LIKE 'deleted-%'"),
            {"a": me_id},
        )
        await s.commit()
    await tell(db, me_id, "after")
    rows = await query(
        db, "SELECT seq, title FROM notifications WHERE account_id = :a ORDER BY seq", a=me_id
    )
    assert rows[-1]["title"] == "after" and rows[-1]["seq"] > max(gone)
    async with opened(ws_url, me["token"], since=seen) as c:
        _, missed = await hello(c)
        assert [(f["type"], f["data"]["title"]) for f in missed] == [("notification", "after")]


async def test_a_client_too_far_behind_gets_a_resync_with_where_to_page_history(
    ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    me = await sign_up(client, sms, ALICE)
    me_id = me["account"]["id"]
    async with opened(ws_url, me["token"]) as c:
        first, _ = await hello(c)
        start = first["token"]
    await tell(db, me_id, *(f"n{i}" for i in range(7)))  # the limit is 5
    async with opened(ws_url, me["token"], since=start) as c:
        _, missed = await hello(c)
        assert [f["type"] for f in missed] == ["resync"]
        resync = missed[0]
        assert resync["source"] == "inbox"
        assert resync["reason"] == "too_far_behind"
        assert resync["history"] == "GET /api/v1/notifications"
        await tell(db, me_id, "after")  # then live events as usual
        assert (await frame(c))["data"]["title"] == "after"
    # from the resync's token: what came after it, once
    async with opened(ws_url, me["token"], since=resync["token"]) as c:
        _, missed = await hello(c)
        assert [f["data"]["title"] for f in missed] == ["after"]
    # a token that is not one, and a position this server never gave
    for token, reason in (("zz..1", "token_invalid"), ("i999", "unknown_position")):
        async with opened(ws_url, me["token"], since=token) as c:
            _, missed = await hello(c)
            assert [(f["type"], f["reason"]) for f in missed if f["source"] == "inbox"] == [
                ("resync", reason)
            ]


class Ticker:
    """A test-only stream source: numbered events per account, kept in memory."""

    def __init__(self) -> None:
        self.events: dict[str, list[int]] = {}

    def add(self, account_id: str, n: int) -> None:
        have = self.events.setdefault(account_id, [])
        for _ in range(n):
            have.append(len(have) + 1)
            live.hub.deliver(kind="tick-test", about=account_id, seq=have[-1])

    async def since(self, s: Any, account_id: str, after: int, limit: int) -> Any:
        mine = [p for p in self.events.get(account_id, []) if p > after][:limit]
        items = [{"position": p, "type": "ticked", "n": p} for p in mine]
        return items, mine[-1] if mine else after

    async def head(self, s: Any, account_id: str) -> int:
        return max(self.events.get(account_id, [0]))


@pytest.fixture
def ticker() -> Iterable[Ticker]:
    t = Ticker()
    # adding a source is this one line (messaging's at merge, likewise)
    live.streams.register(
        "t", "ticker", live.by_account(t.since), live.head_by_account(t.head), kinds=["tick-test"]
    )
    try:
        yield t
    finally:
        live.streams.unregister("t")


async def test_a_registered_source_streams_and_resumes_beside_the_others(
    ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database, ticker: Ticker
) -> None:
    me = await sign_up(client, sms, ALICE)
    me_id = me["account"]["id"]
    ticker.add(me_id, 2)  # before connecting: not sent (a new client starts at the head)
    async with opened(ws_url, me["token"]) as c:
        first, missed = await hello(c)
        assert "ticker" in first["sources"] and missed == []
        assert ".t2" in first["token"] or first["token"].endswith("t2")
        ticker.add(me_id, 1)
        await tell(db, me_id, "inbox")
        got = [await frame(c), await frame(c)]
        assert sorted((f["source"], f["position"]) for f in got)[1] == ("ticker", 3)
        assert {f["source"] for f in got} == {"ticker", "inbox"}
        token = got[-1]["token"]
    ticker.add(me_id, 3)
    async with opened(ws_url, me["token"], since=token) as c:
        _, missed = await hello(c)
        assert [(f["type"], f["data"]["n"]) for f in missed] == [
            ("ticked", 4),
            ("ticked", 5),
            ("ticked", 6),
        ]


# --- bad frames and floods ---------------------------------------------------------------


async def test_bad_frames_get_error_events_and_the_socket_stays_open(
    ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    me = await sign_up(client, sms, ALICE)
    other = await sign_up(client, sms, BOB)
    before = await count_rows(db, "notifications")
    async with opened(ws_url, me["token"]) as c, opened(ws_url, other["token"]) as o:
        await hello(c)
        await hello(o)
        cases: Sequence[tuple[str | bytes, str]] = (
            ("not json", "ws.not_json"),
            (b"\x00\x01binary", "ws.not_json"),
            ("[1, 2]", "ws.bad_frame"),
            ('{"type": "subscribe"}', "ws.unknown_type"),
            ('{"type": "typing", "conversation": "nope"}', "ws.bad_frame"),
            (
                '{"type": "typing", "conversation": "someone-elses", "typing": true}',
                "conversation.not_found",
            ),
            (json.dumps({"type": "ping", "pad": "x" * (64 * 1024)}), "ws.too_large"),
        )
        for i, (sent, code) in enumerate(cases):
            await c.send(sent)
            err = await frame(c)
            assert err["type"] == "error" and err["code"] == code, (sent[:40], err)
            if i == 2:
                await alone_pong(o, "other")  # another user's socket is untouched
        await alone_pong(c)
        await alone_pong(o, "other")
    assert await count_rows(db, "notifications") == before


async def test_a_flood_is_refused_then_closed_without_touching_other_sockets(
    ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    me = await sign_up(client, sms, ALICE)
    other = await sign_up(client, sms, BOB)
    async with opened(ws_url, me["token"]) as c, opened(ws_url, other["token"]) as o:
        await hello(c)
        await hello(o)
        errors = []
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(200):
                await c.send('{"type":"ping"}')
            while True:  # drain: pongs for the first few, then refusals, then the close
                f = await frame(c)
                if f["type"] == "error":
                    errors.append(f["code"])
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert errors and set(errors) == {"ws.rate_limited"}
        await alone_pong(o, "still")
        await tell(db, other["account"]["id"], "for bob")
        assert (await frame(o))["data"]["title"] == "for bob"


# --- typing ------------------------------------------------------------------------------


@pytest.fixture
def conversation() -> Iterable[dict[str, set[str]]]:
    """A test-only authoriser: conversations of the test and who sees them."""
    rooms: dict[str, set[str]] = {}

    async def audience(s: Any, account_id: str, conv: str) -> Iterable[str] | None:
        members = rooms.get(conv)
        return members if members is not None and account_id in members else None

    live.typing.register(audience)
    try:
        yield rooms
    finally:
        live.typing.unregister(audience)


async def test_typing_is_relayed_to_the_others_of_the_conversation_and_expires(
    ws_url: str, client: httpx.AsyncClient, sms: Any, conversation: dict[str, set[str]]
) -> None:
    a = await sign_up(client, sms, ALICE)
    b = await sign_up(client, sms, BOB)
    c_ = await sign_up(client, sms, CAROL)
    conversation["test:ab"] = {a["account"]["id"], b["account"]["id"]}
    async with (
        opened(ws_url, a["token"]) as ca,
        opened(ws_url, b["token"]) as cb,
        opened(ws_url, c_["token"]) as cc,
    ):
        for c in (ca, cb, cc):
            await hello(c)
        await ca.send(json.dumps({"type": "typing", "conversation": "test:ab", "typing": True}))
        got = await frame(cb)
        assert got["type"] == "typing"
        assert got["conversation"] == "test:ab"
        assert got["account_id"] == a["account"]["id"]
        assert got["typing"] is True and got["expires_in_ms"] == 300
        assert "position" not in got and "token" not in got  # ephemeral
        # it stops by itself after a few seconds (0.3 here)
        stopped = await frame(cb)
        assert (stopped["type"], stopped["typing"]) == ("typing", False)
        # the typist hears no echo and the outsider nothing
        await alone_pong(ca)
        await alone_pong(cc)
        # Carol may not type in it
        await cc.send(json.dumps({"type": "typing", "conversation": "test:ab", "typing": True}))
        assert (await frame(cc))["code"] == "conversation.not_found"
        # a typist who leaves stops typing for the others
        await ca.send(json.dumps({"type": "typing", "conversation": "test:ab", "typing": True}))
        assert (await frame(cb))["typing"] is True
    # (all closed; the stop went out as Alice's socket closed, before Bob's)


# --- presence --------------------------------------------------------------------------------


async def test_a_connected_device_gets_no_push_and_a_disconnected_one_does(
    app: Any, ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database, push_outbox: Path
) -> None:
    me = await sign_up(client, sms, ALICE, device=PHONE)
    me_id, device = me["account"]["id"], me["device_id"]
    r = await client.put(
        f"/api/v1/devices/{device}/push",
        json={"provider": "console", "token": "ws-phone-1"},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    outbox = push_outbox

    def pushed() -> list[str]:
        if not outbox.exists():
            return []
        return [json.loads(x)["title"] for x in outbox.read_text().splitlines()]

    async with opened(ws_url, me["token"]) as c:
        await hello(c)
        assert await live.presence.devices([me_id]) == {me_id: {device}}
        assert await live.presence.connected(me_id, device)
        await tell(db, me_id, "while connected")
        assert (await frame(c))["data"]["title"] == "while connected"
        await jobs.run_due(app.state.runtime)
        assert pushed() == []
    for _ in range(500):  # the server notices the close
        if not await live.presence.connected(me_id, device):
            break
        await asyncio.sleep(0.01)
    assert not await live.presence.connected(me_id, device)
    await tell(db, me_id, "while away")
    await jobs.run_due(app.state.runtime)
    assert pushed() == ["while away"]


async def test_a_revoked_session_ends_the_socket_at_its_next_event(
    ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    me = await sign_up(client, sms, ALICE)
    async with opened(ws_url, me["token"]) as c:
        await hello(c)
        r = await client.post("/api/v1/auth/logout", headers=bearer(me["token"]))
        assert r.status_code in (200, 204), r.text
        await tell(db, me["account"]["id"], "after logout")
        err = await frame(c)
        assert (err["type"], err["code"]) == ("error", "auth.invalid_token")
        with pytest.raises(ConnectionClosed) as closed:
            await frame(c)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


# --- family locations ------------------------------------------------------------------------


async def test_family_locations_and_changes_stream_and_resume_as_the_state_now(
    ws_url: str, client: httpx.AsyncClient, sms: Any
) -> None:
    a = await member(client, sms, ALICE)
    b = await member(client, sms, BOB)
    b_id = b["account"]["id"]
    fid = await new_family(client, a)
    now = clock.utcnow()

    async def next_location(c: ClientConnection) -> dict[str, Any]:
        while True:
            f = await frame(c)
            if f["type"] == "location" and f["data"]["account_id"] == b_id:
                return f

    async with opened(ws_url, a["token"]) as c:
        await hello(c)
        await join(client, a, fid, b)
        await frames_until(c, "family")  # someone joined: re-read the families
        r = await upload(client, b, [fix(1, now - timedelta(seconds=60))])
        assert r.status_code == 200, r.text
        first = await next_location(c)
        assert first["source"] == "location"
        assert first["data"]["position"]["lat"] == 31.2304
        token = first["token"]
    # away while Bob moves twice: the resume sends where he is now, once
    for i, lat in ((2, 31.25), (3, 31.26)):
        r = await upload(client, b, [fix(i, now - timedelta(seconds=60 - 10 * i), lat=lat)])
        assert r.status_code == 200, r.text
    async with opened(ws_url, a["token"], since=token) as c:
        _, missed = await hello(c)
        assert [(f["type"], f["data"]["position"]["lat"]) for f in missed] == [("location", 31.26)]
        assert missed[0]["position"] > first["position"]


async def test_concurrent_inbox_entries_take_distinct_positions_in_commit_order(
    client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    """Ten transactions add an entry for one account at once: positions 1..10,
    each once; the per-account lock makes each wait for the one before, so a
    position is never committed after a greater one (a resuming reader that
    saw 7 can never later find a 6)."""
    me = await sign_up(client, sms, ALICE)
    me_id = me["account"]["id"]
    start = len(await query(db, "SELECT id FROM notifications WHERE account_id = :a", a=me_id))

    async def one(i: int) -> None:
        await tell(db, me_id, f"c{i}")

    await asyncio.gather(*(one(i) for i in range(10)))
    rows = await query(
        db, "SELECT seq, title FROM notifications WHERE account_id = :a ORDER BY seq", a=me_id
    )
    assert [r["seq"] for r in rows] == list(range(1, start + 11))
    assert sorted(r["title"] for r in rows[start:]) == sorted(f"c{i}" for i in range(10))


async def test_waiting_sockets_hold_no_database_connection(
    app: Any, ws_url: str, client: httpx.AsyncClient, sms: Any, db: Database
) -> None:
    people = [await sign_up(client, sms, p) for p in (ALICE, BOB, CAROL)]
    pool = app.state.runtime.db.engine.pool
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(opened(ws_url, p["token"])) for p in people]
        for c in sockets:
            await hello(c)
        assert pool.checkedout() == 0
        for p, c in zip(people, sockets, strict=True):
            await tell(db, p["account"]["id"], "hi")
            assert (await frame(c))["data"]["title"] == "hi"
        for c in sockets:
            await alone_pong(c)  # each has sent its event and waits again
        assert pool.checkedout() == 0


async def test_a_dead_peer_is_pinged_then_closed_and_no_longer_present(
    app: Any, client: httpx.AsyncClient, sms: Any
) -> None:
    """A client that completes the handshake and then never answers: the server
    pings it and, with no pong, closes it (``kares serve``: every 20 s, 20 s to
    answer; here 0.2 s), and its device stops counting as connected."""
    me = await sign_up(client, sms, ALICE, device=PHONE)
    me_id, device = me["account"]["id"], me["device_id"]
    async with serving(app, ws_ping_interval=0.2, ws_ping_timeout=0.2) as url:
        port = int(url.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                "GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {me['token']}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101")
        opcodes: list[int] = []
        while True:  # read frames, never answering: hello, caught_up, a ping, the close
            first = await asyncio.wait_for(reader.read(2), WAIT)
            if len(first) < 2:
                break  # the server hung up
            size = first[1] & 0x7F
            if size == 126:
                size = int.from_bytes(await reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await reader.readexactly(8), "big")
            await reader.readexactly(size)
            opcodes.append(first[0] & 0x0F)
            if len(opcodes) == 1:  # hello: the device is connected
                assert await live.presence.connected(me_id, device)
            if opcodes[-1] == 0x8:
                break
        writer.close()
        assert 0x9 in opcodes  # pinged
        assert [o for o in opcodes if o == 0x1] == [0x1, 0x1]  # hello and caught_up
        for _ in range(500):
            if not await live.presence.connected(me_id, device):
                break
            await asyncio.sleep(0.01)
        assert not await live.presence.connected(me_id, device)


async def test_the_live_map_stream_ignores_what_is_not_a_move_and_catches_up_on_a_wake(
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    fam: dict[str, Any],  # noqa: F811
) -> None:
    """The SSE map reads the same hub as the sockets: an inbox entry (or, later, a
    message) wakes it but moves nothing on the map, and the catch-up after Redis
    was away gives it a fresh snapshot (it has no positions to resume from)."""
    alice, bob = fam["alice"], fam["bob"]
    task = await open_stream(client, alice, seconds=2)
    await tell(db, alice["account"]["id"], "not a move")
    live.hub.wake_all()
    await upload(client, bob, [at(5, 31.25)])
    r = await asyncio.wait_for(task, timeout=WAIT)
    kinds = [(kind, e.get("account_id")) for kind, e in sse_events(r)]
    assert kinds == [
        ("snapshot", None),
        ("snapshot", None),
        ("location", bob["account"]["id"]),
    ]


class Sparse:
    """A test-only source shaped like messaging's: one global order of events of
    many accounts; ``since`` reads ``limit`` rows, keeps the viewer's, and says
    how far it read (past rows the viewer may not see)."""

    def __init__(self) -> None:
        self.rows: list[str] = []  # the owner of position i + 1

    def add(self, *owners: str) -> None:
        for owner in owners:
            self.rows.append(owner)
            live.hub.deliver(kind="sparse-test", about=owner, seq=len(self.rows))

    async def since(self, s: Any, account_id: str, after: int, limit: int) -> Any:
        rows = list(enumerate(self.rows, start=1))[after : after + limit]
        mine = [{"position": p, "kind": "sparse", "n": p} for p, o in rows if o == account_id]
        upto = rows[-1][0] if len(rows) == limit else len(self.rows)
        return mine, upto

    async def head(self, s: Any, account_id: str) -> int:
        return len(self.rows)


async def test_a_source_that_reads_past_what_the_viewer_may_not_see_loses_nothing(
    ws_url: str, client: httpx.AsyncClient, sms: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kares.protocols import ws

    monkeypatch.setattr(ws, "PAGE", 6)  # pages of six rows, two of them the viewer's
    sparse = Sparse()
    live.streams.register(
        "s",
        "sparse",
        live.by_account(sparse.since),
        live.head_by_account(sparse.head),
        kinds=["sparse-test"],
    )
    try:
        me = await sign_up(client, sms, ALICE)
        me_id = me["account"]["id"]
        async with opened(ws_url, me["token"]) as c:
            await hello(c)
            sparse.add(*[me_id, "x", "y"] * 4)
            got = [await frame(c) for _ in range(4)]
            assert [(f["type"], f["data"]["n"]) for f in got] == [
                ("sparse", 1),
                ("sparse", 4),
                ("sparse", 7),
                ("sparse", 10),
            ]
            token = got[-1]["token"]
        sparse.add(*["x", "y", me_id] * 4)
        async with opened(ws_url, me["token"], since=token) as c:
            _, missed = await hello(c)
            assert [f["data"]["n"] for f in missed] == [15, 18, 21, 24]
            assert missed[-1]["token"].endswith("s24") or ".s24" in missed[-1]["token"]
    finally:
        live.streams.unregister("s")


async def test_typing_in_a_family_conversation_reaches_its_members_now(
    ws_url: str, client: httpx.AsyncClient, sms: Any
) -> None:
    a = await sign_up(client, sms, ALICE)
    b = await sign_up(client, sms, BOB)
    c_ = await sign_up(client, sms, CAROL)
    fid = await new_family(client, a)
    await join(client, a, fid, b)
    async with opened(ws_url, b["token"]) as cb, opened(ws_url, c_["token"]) as cc:
        await hello(cb)
        await hello(cc)
        async with opened(ws_url, a["token"]) as ca:
            await hello(ca)
            await ca.send(json.dumps({"type": "typing", "conversation": fid, "typing": True}))
            got = await frame(cb)
            assert (got["type"], got["conversation"], got["typing"]) == ("typing", fid, True)
        # Carol is not in the family: refused, and she heard nothing
        await cc.send(json.dumps({"type": "typing", "conversation": fid, "typing": True}))
        assert (await frame(cc))["code"] == "conversation.not_found"
