"""One read per message shared by the sockets it wakes (kares.messaging.fanread):
the window serves what the database would, under each viewer's own rights, and a
member removed from a family gets nothing of it after the removal, even with
their rights and the window warm."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kares import live
from kares.identity import changes
from kares.messaging import fanread, stream
from tests.test_families import new_family
from tests.test_messaging import CONV, family_of_three, h, said
from tests.test_ws import frame, hello, opened, ws_url  # noqa: F401 - ws_url


def aid(p: dict[str, Any]) -> str:
    return str(p["account"]["id"])


def texts(items: list[dict[str, Any]]) -> list[str | None]:
    return [i["message"]["text"] for i in items if i["kind"] == "message" and "message" in i]


async def direct(client: httpx.AsyncClient, a: dict[str, Any], b: dict[str, Any]) -> str:
    r = await client.post(CONV, json={"account_id": aid(b)}, headers=h(a))
    assert r.status_code in (200, 201), r.text
    return str(r.json()["conversation"]["id"])


async def next_message(c: Any) -> dict[str, Any]:
    got = await frame(c)
    while got.get("source") != "message" or got["type"] != "message":
        got = await frame(c)
    return got


async def test_a_removed_member_gets_nothing_after_removal_with_the_cache_warm(
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
    db: Any,
) -> None:
    owner, member, other, fid = await family_of_three(client, sms)
    async with opened(ws_url, member["token"]) as m, opened(ws_url, other["token"]) as x:
        await hello(m)
        await hello(x)
        await said(client, owner, fid, "before")
        for c in (m, x):  # both read it: the window and their rights are warm
            got = await next_message(c)
            assert got["data"]["message"]["text"] == "before"
        async with db.sessions() as s:  # and warm for certain (a socket may read the database)
            got = await fanread.since_rows(s, aid(other), await stream.top(s) - 1, 10)
            assert len(got.rows) == 1 and aid(other) in fanread.window.viewers
        r = await client.delete(f"/api/v1/families/{fid}/members/{aid(other)}", headers=h(owner))
        assert r.status_code in (200, 204), r.text
        await said(client, owner, fid, "after")
        own = await new_family(client, other, "Lis")
        await said(client, other, own, "a family of my own")
        got = await next_message(m)
        while got["data"]["message"]["kind"] == "system":  # the removal's notice
            got = await next_message(m)
        assert got["data"]["message"]["text"] == "after"
        # the removed member's next message is in its new family: nothing of the old
        got = await next_message(x)
        while got["data"]["conversation_id"] == own and got["data"]["message"]["kind"] == "system":
            got = await next_message(x)
        assert got["data"]["conversation_id"] == own, got
        assert got["data"]["message"]["text"] == "a family of my own"


async def test_the_window_takes_a_removal_in_before_what_follows_it(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """Without the family notice (as if it came late), the removal's own notice in
    the window forgets the removed member's rights before a later message is
    served from it."""
    owner, member, other, fid = await family_of_three(client, sms)
    await said(client, owner, fid, "before")
    async with db.sessions() as s:
        top = await stream.top(s)
        got = await fanread.since_rows(s, aid(other), top - 1, 100)
        assert [ev.position for ev, _ in got.rows] == [top]
        assert aid(other) in fanread.window.viewers
    live.hub.unlisten(fanread.window.hear)
    try:
        r = await client.delete(f"/api/v1/families/{fid}/members/{aid(other)}", headers=h(owner))
        assert r.status_code in (200, 204), r.text
        await said(client, owner, fid, "after")
        async with db.sessions() as s:
            fanread.window.heard = await stream.top(s)  # heard of the message only
            reads = fanread.window.reads
            got = await fanread.since_rows(s, aid(other), top, 100)
            assert fanread.window.reads == reads + 1  # read from the window, once
            assert got.rows == [] and fid not in got.scopes
            # the others still see it, from the same window
            seen = await fanread.since_rows(s, aid(member), top, 100)
            assert fanread.window.reads == reads + 1
            assert [m.kind for _, m in seen.rows if m is not None][-1] == "text"
    finally:
        live.hub.listen(fanread.window.hear)


async def test_the_window_serves_what_the_database_would_for_every_viewer(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, other, fid = await family_of_three(client, sms)
    dm = await direct(client, owner, member)
    first = await said(client, owner, fid, "one")
    await said(client, member, fid, "two")
    await said(client, owner, dm, "private")
    late = await said(client, owner, fid, "taken back")
    r = await client.post(f"{CONV}/{fid}/messages/{late['id']}/recall", headers=h(owner))
    assert r.status_code == 200, r.text
    r = await client.delete(f"{CONV}/{fid}/messages/{first['id']}", headers=h(member))
    assert r.status_code in (200, 204), r.text
    r = await client.post(f"{CONV}/{fid}/read", json={"message_id": first["id"]}, headers=h(other))
    assert r.status_code in (200, 204), r.text
    r = await client.delete(f"/api/v1/families/{fid}/members/{aid(other)}", headers=h(owner))
    assert r.status_code in (200, 204), r.text
    await said(client, owner, fid, "three")
    async with db.sessions() as s:
        top = await stream.top(s)
        base = first["position"] - 1
        # warm: the window is read from the first message on
        fanread.window.clear()
        fanread.window.lo = fanread.window.hi = base
        fanread.window.fresh = False
        for who in (owner, member, other):
            for after in range(base, top + 1):
                for limit in (1, 3, 1000):
                    want, want_next = await stream.since(s, aid(who), after, limit)
                    got, got_next = await fanread.since(s, aid(who), after, limit)
                    assert got == want, (who["account"]["name"], after, limit)
                    if limit == 1000:
                        assert got_next == want_next == top
    assert "private" not in [t for t in texts(await _all(db, aid(other), base))]
    assert "one" not in texts(await _all(db, aid(member), base))  # hidden by them


async def _all(db: Any, account_id: str, after: int) -> list[dict[str, Any]]:
    async with db.sessions() as s:
        got, _ = await fanread.since(s, account_id, after, 1000)
    return got


@pytest.mark.db_agnostic
def test_a_tick_makes_the_window_read_again() -> None:
    w = fanread.Window()
    w.fresh, w.started = True, 1e18
    w.hi = w.heard = 5
    w.viewers["a"] = fanread.Rights({}, {}, set(), 0.0)
    w.hear(live.Notice(0, live.TICK, ""))
    assert not w.fresh and not w.viewers
    w.fresh = True
    w.hear(live.Notice(7, "message", "b"))
    assert w.heard == 7 and not w.current()
    w.hi = 7
    w.viewers["a"] = fanread.Rights({}, {}, set(), 0.0)
    w.hear(live.Notice(0, "family", "a"))
    assert "a" not in w.viewers and w.lo == w.hi == 7 and not w.rows


async def test_a_session_is_read_again_at_a_wake_only_after_a_change(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """The WebSocket's session re-check (kares.identity.changes): a revocation
    moves the counter, so the next wake reads the session (and ends); a wake
    with nothing changed reads nothing."""
    owner, member, _other, _fid = await family_of_three(client, sms)
    check = changes.SessionCheck(owner["session_id"])
    assert not check.due()
    async with db.sessions() as s:
        assert await check.run(s)
    r = await client.post("/api/v1/auth/logout", headers=h(member))  # someone else's
    assert r.status_code in (200, 204), r.text
    assert check.due()  # any change: read again
    async with db.sessions() as s:
        assert await check.run(s)
    assert not check.due()
    r = await client.post("/api/v1/auth/logout", headers=h(owner))
    assert r.status_code in (200, 204), r.text
    assert check.due()
    async with db.sessions() as s:
        assert not await check.run(s)


async def test_a_reader_arriving_during_a_fill_waits_for_it(
    client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a Redis restart showed: after a tick (nothing heard of what
    another process committed meanwhile) one reader fills the window; a second
    reader arriving during that read used to find the window "fresh" and take it
    as it was, serving nothing new, with no later wake to come. Now it waits for
    the fill and gets the message."""
    import asyncio

    owner, member, other, fid = await family_of_three(client, sms)
    await said(client, owner, fid, "before")
    async with db.sessions() as s:
        top = await stream.top(s)
        await fanread.since_rows(s, aid(member), top - 1, 10)  # warm, fresh, at top
    live.hub.unlisten(fanread.window.hear)
    try:
        await said(client, owner, fid, "unheard")  # as if sent through another process
    finally:
        live.hub.listen(fanread.window.hear)
    fanread.window.hear(live.Notice(0, live.TICK, ""))
    real_top = stream.top
    reading, go = asyncio.Event(), asyncio.Event()

    async def slow_top(s: Any) -> int:
        reading.set()
        await go.wait()
        return await real_top(s)

    monkeypatch.setattr(stream, "top", slow_top)

    async def read(who: dict[str, Any]) -> list[str | None]:
        async with db.sessions() as s:
            got = await fanread.since_rows(s, aid(who), top, 10)
        return [m.body and "x" for _, m in got.rows if m is not None]

    first = asyncio.create_task(read(member))
    await asyncio.wait_for(reading.wait(), 10)
    second = asyncio.create_task(read(other))
    await asyncio.sleep(0.05)
    assert not second.done(), "served the window while it was being read"
    go.set()
    assert len(await asyncio.wait_for(first, 10)) == 1
    assert len(await asyncio.wait_for(second, 10)) == 1


@pytest.mark.db_agnostic
def test_a_tick_during_a_fill_leaves_the_window_stale() -> None:
    w = fanread.Window()
    w.stale()
    ticks = w.ticks
    w.hear(live.Notice(0, live.TICK, ""))
    assert w.ticks == ticks + 1 and not w.fresh
    w.clear()
    assert w.epoch == 1 and not w.fresh
