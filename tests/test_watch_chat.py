"""Chat with a dependant's watch over the watch protocol, end to end: the real
listener on loopback, the watch client of tests/support/watch.py, the family
through the HTTP API.

Up: a voice note the watch records (``TK``, or ``JXTK`` in parts) becomes a
voice message from the dependant in the family's conversation, answered
``TK,1`` only once stored, refused (``TK,0``, nothing stored) when the guard
says no. Down: what the family writes to the dependant reaches the watch in
order, one frame at a time, each acknowledged; what was acknowledged is never
sent again, what was not is sent again on the next connection."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest

from kares import clock, jobs
from kares.protocols.watch import frames as wp
from kares.protocols.watch.server import WatchServer
from tests.conftest import bearer, count_rows, query
from tests.support.watch import (
    QUIET,
    WAIT,
    WID,
    Conn,
    frame,
    household,
    reply,
    server,
    settings_overrides,
    state_but_last_seen,
)
from tests.test_messaging import ogg_opus
from tests.test_rights_erase import code_for

__all__ = ["server", "settings_overrides"]  # fixtures, from tests.support.watch

CONV = "/api/v1/conversations"
ATTACH = "/api/v1/messaging/attachments"
_txns = itertools.count(1)


def amr(frames: int, fill: bytes = b"\x7d[],*\x11") -> bytes:
    """AMR-NB: the magic, then 20 ms frames of mode 7 (31 bytes after the header),
    filled with bytes the watch protocol must escape."""
    body = (fill * 31)[:31]
    return wp.AMR_MAGIC + (b"\x3c" + body) * frames


def tk(audio: bytes, wid: str = WID) -> bytes:
    return wp.encode("3G", wid, wp.voice_content(audio))


async def next_frame(c: Conn) -> wp.Frame:
    """The next whole frame the server sends (binary content is escaped, so its
    first ']' ends it)."""
    (f,) = wp.FrameReader().feed(await c.reply())
    return f


async def family_page(client: httpx.AsyncClient, who: dict[str, Any], cid: str) -> list[Any]:
    r = await client.get(f"{CONV}/{cid}/messages", headers=bearer(who["token"]))
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


async def send_text(
    client: httpx.AsyncClient, who: dict[str, Any], cid: str, text: str
) -> dict[str, Any]:
    r = await client.post(
        f"{CONV}/{cid}/messages",
        json={"txn_id": f"w-{next(_txns)}", "kind": "text", "text": text},
        headers=bearer(who["token"]),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def upload_voice(client: httpx.AsyncClient, who: dict[str, Any], audio: bytes) -> str:
    r = await client.post(
        ATTACH,
        params={"kind": "voice"},
        files={"file": ("v", audio, "application/octet-stream")},
        headers=bearer(who["token"]),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def send_voice(
    client: httpx.AsyncClient, who: dict[str, Any], cid: str, audio: bytes
) -> httpx.Response:
    att = await upload_voice(client, who, audio)
    return await client.post(
        f"{CONV}/{cid}/messages",
        json={"txn_id": f"w-{next(_txns)}", "kind": "voice", "attachment_id": att},
        headers=bearer(who["token"]),
    )


async def watch_conversation(client: httpx.AsyncClient, who: dict[str, Any], dep: str) -> str:
    r = await client.post(CONV, json={"account_id": dep}, headers=bearer(who["token"]))
    assert r.status_code in (200, 201), r.text
    assert r.json()["conversation"]["kind"] == "watch"
    return str(r.json()["conversation"]["id"])


async def watch_permissions(
    client: httpx.AsyncClient, ctx: dict[str, Any], states: dict[str, str]
) -> None:
    """The watch reports its permission states, as any device does."""
    h = bearer(ctx["watch_token"])
    me = (await client.get("/api/v1/devices", headers=h)).json()
    device_id = next(d["id"] for d in me if d["current"])
    r = await client.put(
        f"/api/v1/devices/{device_id}/permissions", json={"permissions": states}, headers=h
    )
    assert r.status_code == 200, r.text


async def voices(db: Any) -> int:
    rows = await query(db, "SELECT count(*) AS n FROM messages WHERE kind = 'voice'")
    return int(rows[0]["n"])


async def connected(port: int) -> Conn:
    c = await Conn.open(port)
    await c.sync()
    return c


# --- up: what the watch records -----------------------------------------------------------------


async def test_a_voice_note_from_the_watch_is_a_voice_message_in_the_family_conversation(
    client: httpx.AsyncClient, sms: Any, server: WatchServer, db: Any
) -> None:
    ctx = await household(client, sms)
    g, g2 = ctx["guardians"]
    audio = amr(150)  # 3 s, with bytes that travel escaped
    c = await connected(server.port)  # type: ignore[attr-defined]
    try:
        assert await c.ask(tk(audio)) == reply("TK,1")
        msgs = [m for m in await family_page(client, g2, ctx["family_id"]) if m["kind"] == "voice"]
        assert len(msgs) == 1
        m = msgs[0]
        assert m["sender_id"] == ctx["dep"]
        assert (m["attachment"]["codec"], m["attachment"]["duration_ms"]) == ("amr-nb", 3000)
        got = await client.get(m["attachment"]["url"], headers=bearer(g["token"]))
        assert got.status_code == 200 and got.content == audio
        # the watch resends it (our answer was lost): answered again, stored once
        assert await c.ask(tk(audio)) == reply("TK,1")
        assert await voices(db) == 1
        assert await count_rows(db, "message_attachments") == 1
    finally:
        await c.close()


async def test_a_voice_note_in_parts_is_joined(
    client: httpx.AsyncClient, sms: Any, server: WatchServer, db: Any
) -> None:
    ctx = await household(client, sms)
    audio = amr(100)
    half = len(audio) // 2
    parts = [audio[:half], audio[half:]]
    c = await connected(server.port)  # type: ignore[attr-defined]
    try:
        for n, part in enumerate(parts, 1):
            content = b"JXTK,0,watch_7_20261206093954,%d,2," % n + wp.escape(part)
            got = await c.ask(wp.encode("ZJ", WID, content, index=f"{n:04X}"))
            assert got == wp.encode("ZJ", WID, "JXTKR,1", index=f"{n:04X}")
        msgs = await family_page(client, ctx["guardians"][0], ctx["family_id"])
        (voice,) = [m for m in msgs if m["kind"] == "voice"]
        assert voice["attachment"]["duration_ms"] == 2000
        got_audio = await client.get(
            voice["attachment"]["url"], headers=bearer(ctx["guardians"][0]["token"])
        )
        assert got_audio.content == audio
        # a part out of order is refused and nothing is kept
        content = b"JXTK,0,other,2,2," + wp.escape(parts[1])
        assert await c.ask(wp.encode("ZJ", WID, content)) == wp.encode("ZJ", WID, "JXTKR,0")
        assert await voices(db) == 1
    finally:
        await c.close()


async def test_the_microphone_permission_and_the_childs_guardian_decide(
    client: httpx.AsyncClient, sms: Any, server: WatchServer, db: Any
) -> None:
    ctx = await household(client, sms)
    c = await connected(server.port)  # type: ignore[attr-defined]
    try:
        # the watch's Microphone closed: not kept, answered as failed
        await watch_permissions(client, ctx, {"microphone": "denied"})
        before = await state_but_last_seen(db)
        assert await c.ask(tk(amr(50))) == reply("TK,0")
        assert await state_but_last_seen(db) == before
        await watch_permissions(client, ctx, {"microphone": "granted"})
        assert await c.ask(tk(amr(50))) == reply("TK,1")
        # not audio the service reads: refused too
        assert await c.ask(tk(b"#!AMR\n\x3c\x00")) == reply("TK,0")
    finally:
        await c.close()


@pytest.mark.parametrize("granted", [False, True])
async def test_a_child_under_14_needs_a_guardian_to_have_granted_the_microphone(
    client: httpx.AsyncClient, sms: Any, server: WatchServer, db: Any, granted: bool
) -> None:
    ctx = await household(client, sms)
    g = ctx["guardians"][0]
    r = await client.post(
        f"/api/v1/families/{ctx['family_id']}/dependants",
        json={"name": "Xiao Ming", "age_bracket": "under_14"},
        headers=bearer(g["token"]),
    )
    assert r.status_code == 201, r.text
    child = r.json()["member"]["account_id"]
    w = await client.post("/api/v1/watches/hello", json={"imei": "8800000099", "model": "K"})
    r = await client.post(
        "/api/v1/watches/pair",
        json={
            "text": w.json()["pairing_text"],
            "family_id": ctx["family_id"],
            "dependant_id": child,
        },
        headers=bearer(g["token"]),
    )
    assert r.status_code == 201, r.text
    if granted:
        r = await client.put(
            f"/api/v1/watches/{r.json()['id']}/permissions",
            json={"permissions": {"microphone": "granted"}},
            headers=bearer(g["token"]),
        )
        assert r.status_code == 200, r.text
    c = await Conn.open(server.port)  # type: ignore[attr-defined]
    try:
        await c.sync("8800000099")
        got = await c.ask(tk(amr(50), "8800000099"))
        assert got == reply("TK,1" if granted else "TK,0", "8800000099")
        assert await voices(db) == int(granted)
    finally:
        await c.close()


async def test_only_the_familys_admins_set_a_watchs_permissions(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    g = ctx["guardians"][0]
    url = f"/api/v1/watches/{ctx['watch_id']}/permissions"
    body = {"permissions": {"microphone": "granted"}}
    r = await client.put(url, json=body, headers=bearer(g["token"]))
    assert r.status_code == 200, r.text
    assert r.json()["permissions"]["microphone"] == "granted"
    r = await client.put(
        url, json={"permissions": {"microphone": "loud"}}, headers=bearer(g["token"])
    )
    assert r.status_code == 422 and r.json()["code"] == "permission.invalid_state"
    r = await client.put(
        "/api/v1/watches/nosuchwatch/permissions", json=body, headers=bearer(g["token"])
    )
    assert r.status_code == 404 and r.json()["code"] == "watch.not_found"


# --- down: what the family writes to the watch ------------------------------------------------


async def test_messages_wait_for_the_watch_and_arrive_in_order_once_each(
    client: httpx.AsyncClient, sms: Any, server: WatchServer, db: Any
) -> None:
    ctx = await household(client, sms)
    g, g2 = ctx["guardians"]
    dep = ctx["dep"]
    cid = await watch_conversation(client, g, dep)
    voice = amr(60)
    # written while the watch is offline: its own conversation, the family's,
    # and what the watch cannot take (an image-less location, its own words)
    await send_text(client, g, cid, "Dinner at six")
    r = await send_voice(client, g, cid, voice)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{CONV}/{ctx['family_id']}/messages",
        json={"txn_id": "loc-1", "kind": "location", "lat": 31.2, "lon": 121.4},
        headers=bearer(g2["token"]),
    )
    assert r.status_code == 201, r.text
    await send_text(client, g2, ctx["family_id"], "We are home 你好")
    name = (await client.get("/api/v1/me", headers=bearer(g["token"]))).json().get("name")

    c = await connected(server.port)  # type: ignore[attr-defined]
    try:
        f = await next_frame(c)
        assert f.command == "MESSAGE"
        assert wp.text_of(f.content) == (f"{name}: Dinner at six" if name else "Dinner at six")
        await c.send(frame("MESSAGE"))
        f = await next_frame(c)
        assert f.command == "TK" and f.payload == b"TK," + voice
        await c.send(frame("TK,1"))
        f = await next_frame(c)
        assert f.command == "MESSAGE" and wp.text_of(f.content).endswith("We are home 你好")
        # not acknowledged: the watch goes away
    finally:
        await c.close()
    await asyncio.sleep(0)
    c = await connected(server.port)  # type: ignore[attr-defined]
    try:
        f = await next_frame(c)  # the one not acknowledged, again; nothing before it
        assert wp.text_of(f.content).endswith("We are home 你好")
        await c.send(frame("MESSAGE"))
        await c.silent()
    finally:
        await c.close()
    c = await connected(server.port)  # type: ignore[attr-defined]
    try:
        await c.silent()  # everything was acknowledged: nothing comes twice
    finally:
        await c.close()


async def test_a_connected_watch_gets_a_message_at_once(
    client: httpx.AsyncClient, sms: Any, server: WatchServer
) -> None:
    ctx = await household(client, sms)
    g = ctx["guardians"][0]
    cid = await watch_conversation(client, g, ctx["dep"])
    c = await connected(server.port)  # type: ignore[attr-defined]
    try:
        await c.silent()
        await send_text(client, g, cid, "Look up!")
        f = await asyncio.wait_for(next_frame(c), WAIT)
        assert wp.text_of(f.content).endswith("Look up!")
        # a failure answer: sent again after the next keep-alive
        await c.send(frame("TK,0"))  # not what is in flight: ignored
        await c.send(frame("LK"))
        assert await c.reply() == reply("LK")
        await c.silent(QUIET)
        await c.send(frame("MESSAGE"))
        # the dependant's own messages never come back to the watch
        assert await c.ask(tk(amr(25))) == reply("TK,1")
        await c.silent()
    finally:
        await c.close()


async def test_nothing_is_sent_while_two_connections_speak_for_the_watch(
    client: httpx.AsyncClient, sms: Any, server: WatchServer
) -> None:
    ctx = await household(client, sms)
    g = ctx["guardians"][0]
    cid = await watch_conversation(client, g, ctx["dep"])
    a = await connected(server.port)  # type: ignore[attr-defined]
    b = await connected(server.port)  # type: ignore[attr-defined]
    try:
        await send_text(client, g, cid, "secret plans")
        await a.silent()
        await b.silent()
        await b.close()
        await a.sync()  # a keep-alive after the copy left: now it is sent
        f = await next_frame(a)
        assert wp.text_of(f.content).endswith("secret plans")
    finally:
        await a.close()


async def test_a_voice_note_the_watch_cannot_play_is_refused_in_its_conversation(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    g = ctx["guardians"][0]
    cid = await watch_conversation(client, g, ctx["dep"])
    att = await upload_voice(client, g, ogg_opus(2))
    before = await count_rows(db, "messages")
    r = await client.post(
        f"{CONV}/{cid}/messages",
        json={"txn_id": "opus-1", "kind": "voice", "attachment_id": att},
        headers=bearer(g["token"]),
    )
    assert r.status_code == 422 and r.json()["code"] == "message.watch_unplayable", r.text
    assert await count_rows(db, "messages") == before
    # too long for one frame, though AMR
    r = await send_voice(client, g, cid, amr(2400, b"\x11"))
    assert r.status_code == 422 and r.json()["code"] == "message.watch_unplayable", r.text
    # the family's conversation takes it (the watch just does not get it)
    r = await send_voice(client, g, ctx["family_id"], ogg_opus(2))
    assert r.status_code == 201, r.text


async def test_deleting_the_wearer_leaves_their_voice_notes_to_the_family_and_no_cursor(
    client: httpx.AsyncClient, sms: Any, server: WatchServer, app: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    g, g2 = ctx["guardians"]
    dep = ctx["dep"]
    cid = await watch_conversation(client, g, dep)
    await send_text(client, g, cid, "hello")
    c = await connected(server.port)  # type: ignore[attr-defined]
    try:
        assert (await next_frame(c)).command == "MESSAGE"
        await c.send(frame("MESSAGE"))
        assert await c.ask(tk(amr(50))) == reply("TK,1")
    finally:
        await c.close()
    rows = await query(db, "SELECT account_id FROM watch_chat_cursors")
    assert [r["account_id"] for r in rows] == [dep]
    # a guardian deletes the dependant's account (policy 7 with 5.4)
    code = await code_for(client, sms, g2)
    r = await client.post(
        f"/api/v1/dependants/{dep}/deletion", json={"code": code}, headers=bearer(g2["token"])
    )
    assert r.status_code == 202, r.text
    clock.advance(16 * 86400)
    await jobs.run_due(app.state.runtime)
    assert await query(db, "SELECT id FROM accounts WHERE id = :d", d=dep) == []
    assert await query(db, "SELECT * FROM watch_chat_cursors") == []
    (voice,) = [m for m in await family_page(client, g, ctx["family_id"]) if m["kind"] == "voice"]
    assert voice["sender_id"] is None  # the family keeps it, from nobody
    got = await client.get(voice["attachment"]["url"], headers=bearer(g["token"]))
    assert got.status_code == 200


async def test_a_watch_paired_or_unpaired_while_connected_is_served_from_its_next_keepalive(
    client: httpx.AsyncClient, sms: Any, server: WatchServer
) -> None:
    ctx = await household(client, sms)
    g = ctx["guardians"][0]
    wid = "8800000077"
    r = await client.post(
        f"/api/v1/families/{ctx['family_id']}/dependants",
        json={"name": "Grandpa Li", "age_bracket": "adult"},
        headers=bearer(g["token"]),
    )
    assert r.status_code == 201, r.text
    grandpa = r.json()["member"]["account_id"]
    w = await client.post("/api/v1/watches/hello", json={"imei": wid, "model": "K"})
    assert w.status_code == 200, w.text
    c = await Conn.open(server.port)  # type: ignore[attr-defined]
    try:
        await c.sync(wid)  # not paired yet: only its keep-alive is answered
        r = await client.post(
            "/api/v1/watches/pair",
            json={"text": w.json()["pairing_text"], "family_id": ctx["family_id"]}
            | {"dependant_id": grandpa},
            headers=bearer(g["token"]),
        )
        assert r.status_code == 201, r.text
        watch_id = r.json()["id"]
        await send_text(client, g, ctx["family_id"], "Lunch is ready")
        await c.silent()  # nothing woke this connection's link: there is none yet
        await c.sync(wid)
        f = await next_frame(c)
        assert wp.text_of(f.content).endswith("Lunch is ready")
        await c.send(frame("MESSAGE", wid))
        r = await client.delete(f"/api/v1/watches/{watch_id}", headers=bearer(g["token"]))
        assert r.status_code == 204, r.text
        await send_text(client, g, ctx["family_id"], "Not for an unpaired watch")
        await c.sync(wid)
        await c.silent()
    finally:
        await c.close()


# --- the frames, without a socket -----------------------------------------------------------


@pytest.mark.db_agnostic
def test_chat_frames_both_ways() -> None:
    # text down: UTF-16BE code units in upper-case hex, and back
    f = wp.text_frame("3G", WID, "你好 Li 👋")
    (got,) = wp.FrameReader().feed(f)
    assert got.command == "MESSAGE" and wp.text_of(got.content) == "你好 Li 👋"
    assert got.content.startswith(b"MESSAGE,4F60597D0020")
    # voice down: escaped on the wire, whole again once read
    audio = amr(10)
    (got,) = wp.FrameReader().feed(wp.voice_frame("3G", WID, audio))
    assert got.payload == b"TK," + audio and got.length_ok
    assert wp.voice_fits(audio) and not wp.voice_fits(amr(2100, b"\x7d"))
    # acknowledgements, and what is not one
    acks = [
        wp.ack_of(g)
        for g in wp.FrameReader().feed(
            frame("TK,1") + frame("TK,0") + frame("MESSAGE") + frame("MESSAGE,1") + frame("LK")
        )
    ]
    assert acks == [("TK", True), ("TK", False), ("MESSAGE", True), ("MESSAGE", True), None]
    # voice up: whole, or a numbered part
    (tk_frame,) = wp.FrameReader().feed(tk(audio))
    assert wp.voice_of(tk_frame, wp.parse(tk_frame)) == wp.VoicePart(audio)
    (ack_frame,) = wp.FrameReader().feed(frame("TK,1"))
    assert wp.voice_of(ack_frame, wp.parse(ack_frame)) is None
    content = b"JXTK,0,note_1,2,3," + wp.escape(audio)
    (part,) = wp.FrameReader().feed(wp.encode("ZJ", WID, content, index="0007"))
    assert wp.voice_of(part, wp.parse(part)) == wp.VoicePart(audio, 2, 3, "note_1")
    assert wp.voice_reply(part, True) == wp.encode("ZJ", WID, "JXTKR,1", index="0007")
    for bad in (b"JXTK,0,n,4,3,xx", b"JXTK,0,n,0,3,xx", b"JXTK,0,n,a,3,xx", b"JXTK,0,n,1"):
        (g,) = wp.FrameReader().feed(wp.encode("ZJ", WID, bad))
        assert wp.voice_of(g, wp.parse(g)) is None
