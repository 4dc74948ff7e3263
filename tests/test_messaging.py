"""Messaging through the public API (issue 14, "Conversations and messages"):
family and direct conversations and who may read them, idempotent sending,
positions, history paging, receipts and unread counts, recall, deleting for
oneself, the permissions that gate voice notes, photos and shared locations,
system notices, bad input (a clear 4xx that changes nothing), pushes to people
with no live client, and an account's deletion leaving its messages to the
others with nothing that names it."""

from __future__ import annotations

import asyncio
import itertools
import struct
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event as sa_event

from kares import clock, jobs, live, livebus
from kares.livebus import RedisBridge
from kares.messaging import stream
from tests.conftest import count_rows, query, snapshot
from tests.support.redisserver import RedisServer, redis_server  # noqa: F401 - fixture
from tests.test_avatar import jpeg_with_metadata
from tests.test_devices import reported
from tests.test_families import aid, h, join, new_family, person, problem
from tests.test_location_ingest import fix, grant_precise, upload
from tests.test_rights_erase import ask

OWNER, MEMBER, OTHER, STRANGER = (f"+86137100000{i:02d}" for i in range(1, 5))
IPHONE = {"id": "IDFV-CHAT", "model": "iPhone15,2", "os": "iOS", "os_version": "18.1"}
CONV = "/api/v1/conversations"
ATTACH = "/api/v1/messaging/attachments"
EVENTS = "/api/v1/messaging/events"
_txns = itertools.count(1)


# --- helpers ---------------------------------------------------------------------------------


def ogg_opus(seconds: float) -> bytes:
    """A minimal Ogg Opus file: the OpusHead page and a last page whose granule
    position says how long it is (48 kHz, 312 samples of pre-skip)."""

    def page(kind: int, granule: int, payload: bytes, seq: int) -> bytes:
        head = b"OggS" + bytes([0, kind]) + struct.pack("<qIII", granule, 7, seq, 0)
        return head + bytes([1, len(payload)]) + payload

    opus_head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    return page(2, 0, opus_head, 0) + page(4, 312 + int(48000 * seconds), b"\x00" * 20, 1)


def amr(seconds: float) -> bytes:
    """AMR-NB: the magic, then 20 ms frames of mode 7 (31 bytes after the header)."""
    return b"#!AMR\n" + (b"\x3c" + b"\x11" * 31) * int(seconds * 50)


async def send(
    client: httpx.AsyncClient, me: dict[str, Any], cid: str, text: str = "hi", **body: Any
) -> httpx.Response:
    payload = {
        "txn_id": body.pop("txn_id", f"t-{next(_txns)}"),
        "kind": body.pop("kind", "text"),
        **body,
    }
    if payload["kind"] == "text" and "text" not in body:
        payload["text"] = text
    return await client.post(f"{CONV}/{cid}/messages", json=payload, headers=h(me))


async def said(
    client: httpx.AsyncClient, me: dict[str, Any], cid: str, text: str
) -> dict[str, Any]:
    r = await send(client, me, cid, text)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def page(
    client: httpx.AsyncClient, me: dict[str, Any], cid: str, **params: Any
) -> dict[str, Any]:
    r = await client.get(f"{CONV}/{cid}/messages", params=params, headers=h(me))
    assert r.status_code == 200, r.text
    return dict(r.json())


def texts(p: dict[str, Any]) -> list[str | None]:
    return [m["text"] for m in p["messages"] if m["kind"] == "text"]


def notices(p: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(m["sender_id"], m["system"]["event"]) for m in p["messages"] if m["kind"] == "system"]


async def family_of_three(
    client: httpx.AsyncClient, sms: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    owner = await person(client, sms, OWNER, "Wang Fang")
    member = await person(client, sms, MEMBER, "Wang Lei")
    other = await person(client, sms, OTHER, "Li Na")
    fid = await new_family(client, owner)
    await join(client, owner, fid, member)
    await join(client, owner, fid, other)
    return owner, member, other, fid


async def since(client: httpx.AsyncClient, me: dict[str, Any], after: int) -> dict[str, Any]:
    r = await client.get(EVENTS, params={"after": after, "limit": 1000}, headers=h(me))
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- conversations and who may read them --------------------------------------------------------


async def test_a_family_conversation_is_the_familys_members_now(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, other, fid = await family_of_three(client, sms)
    await said(client, owner, fid, "dinner at 7")
    r = await client.get(CONV, headers=h(member))
    assert r.status_code == 200, r.text
    [conv] = r.json()
    assert conv["id"] == fid and conv["kind"] == "family" and conv["title"] == "Wangs"
    assert sorted(conv["members"]) == sorted(aid(x) for x in (owner, member, other))
    assert conv["last_message"]["text"] == "dinner at 7" and conv["unread"] == 1

    # leaving ends access on the next request; the history stays with the others
    before_leaving = await said(client, member, fid, "I'll be late")
    r = await client.delete(f"/api/v1/families/{fid}/members/{aid(member)}", headers=h(member))
    assert r.status_code == 204, r.text
    problem(
        await client.get(f"{CONV}/{fid}/messages", headers=h(member)), 404, "conversation.not_found"
    )
    problem(await send(client, member, fid, "still here?"), 404, "conversation.not_found")
    assert (await client.get(CONV, headers=h(member))).json() == []
    seen = await page(client, owner, fid)
    assert texts(seen) == ["dinner at 7", "I'll be late"]
    assert seen["messages"][-2]["id"] == before_leaving["id"]
    assert (aid(member), "left") in notices(seen)

    # being removed: the same, and the notice says so
    r = await client.delete(f"/api/v1/families/{fid}/members/{aid(other)}", headers=h(owner))
    assert r.status_code == 204, r.text
    problem(await client.get(f"{CONV}/{fid}", headers=h(other)), 404, "conversation.not_found")
    assert (aid(other), "removed") in notices(await page(client, owner, fid))

    # who joins later reads from their joining on
    await join(client, owner, fid, member)
    back = await page(client, member, fid)
    assert texts(back) == [] and notices(back) == [(aid(member), "joined")]
    await said(client, owner, fid, "welcome back")
    assert texts(await page(client, member, fid)) == ["welcome back"]


async def test_direct_conversations_need_a_shared_family_to_send(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    stranger = await person(client, sms, STRANGER, "Zhao")
    r = await client.post(CONV, json={"account_id": aid(member)}, headers=h(owner))
    assert r.status_code == 201, r.text
    conv = r.json()["conversation"]
    assert conv["kind"] == "direct" and conv["peer_id"] == aid(member)
    # opening it again, from either side, is the same conversation
    for who, peer in ((owner, member), (member, owner)):
        r = await client.post(CONV, json={"account_id": aid(peer)}, headers=h(who))
        assert r.status_code == 200 and r.json()["conversation"]["id"] == conv["id"], r.text
    cid = conv["id"]
    await said(client, owner, cid, "just us")
    # nobody else reads it; a stranger cannot open one with a member
    problem(
        await client.get(f"{CONV}/{cid}/messages", headers=h(stranger)),
        404,
        "conversation.not_found",
    )
    r = await client.post(CONV, json={"account_id": aid(owner)}, headers=h(stranger))
    problem(r, 404, "conversation.person_not_found")
    r = await client.post(CONV, json={"account_id": aid(owner)}, headers=h(owner))
    problem(r, 409, "conversation.self")
    # no longer sharing a family: the history stays readable, sending stops
    r = await client.delete(f"/api/v1/families/{fid}/members/{aid(member)}", headers=h(member))
    assert r.status_code == 204
    assert texts(await page(client, member, cid)) == ["just us"]
    problem(await send(client, member, cid, "hello?"), 403, "conversation.no_shared_family")


async def test_a_dependant_is_a_participant_of_a_watch_conversation(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    fid = await new_family(client, owner)
    r = await client.post(
        f"/api/v1/families/{fid}/dependants",
        json={"name": "Grandma", "age_bracket": "adult"},
        headers=h(owner),
    )
    assert r.status_code == 201, r.text
    dep = r.json()["account_id"] if "account_id" in r.json() else r.json()["member"]["account_id"]
    r = await client.post(CONV, json={"account_id": dep}, headers=h(owner))
    assert r.status_code == 201, r.text
    conv = r.json()["conversation"]
    assert conv["kind"] == "watch" and sorted(conv["members"]) == sorted([aid(owner), dep])
    await said(client, owner, conv["id"], "time for your pills")
    notes = notices(await page(client, owner, fid))
    assert (dep, "joined") in notes


# --- sending is idempotent ----------------------------------------------------------------------


async def test_a_retry_returns_the_first_message_and_stores_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    first = await send(client, owner, fid, "once", txn_id="abc")
    assert first.status_code == 201, first.text
    n = await count_rows(db, "messages")
    events = await count_rows(db, "message_events")
    again = await send(client, owner, fid, "once (edited?)", txn_id="abc")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert (await count_rows(db, "messages"), await count_rows(db, "message_events")) == (n, events)
    # the same id from another person is another message
    r = await send(client, member, fid, "mine", txn_id="abc")
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]


async def test_two_identical_sends_at_once_store_one_message(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, _, _, fid = await family_of_three(client, sms)
    await said(client, owner, fid, "warm up")  # the conversation row exists
    n = await count_rows(db, "messages")
    got = await asyncio.gather(
        *(send(client, owner, fid, "same", txn_id="dup-1") for _ in range(2))
    )
    assert sorted(r.status_code for r in got) == [200, 201], [r.text for r in got]
    a, b = (r.json() for r in got)
    assert (a["id"], a["position"]) == (b["id"], b["position"])
    assert await count_rows(db, "messages") == n + 1
    rows = await query(
        db, "SELECT count(*) AS n FROM messages WHERE position = :p", p=a["position"]
    )
    assert rows[0]["n"] == 1


# --- positions -----------------------------------------------------------------------------------


async def test_positions_increase_and_a_reader_misses_nothing_under_concurrency(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, other, fid = await family_of_three(client, sms)
    start = (await since(client, owner, 0))["next"]
    senders = (owner, member, other)
    done = asyncio.Event()
    seen: list[int] = []

    async def reader() -> None:
        after = start
        while True:
            finished = done.is_set()
            got = await since(client, owner, after)
            seen.extend(e["position"] for e in got["events"] if e["kind"] == "message")
            after = got["next"]
            if finished:
                return
            await asyncio.sleep(0)

    async def writer(who: dict[str, Any], k: int) -> int:
        r = await send(client, who, fid, f"m{k}", txn_id=f"c-{k}")
        assert r.status_code == 201, r.text
        return int(r.json()["position"])

    task = asyncio.create_task(reader())
    sent = await asyncio.gather(*(writer(senders[k % 3], k) for k in range(30)))
    done.set()
    await task
    assert seen == sorted(seen) and len(set(seen)) == len(seen)  # strictly increasing
    assert set(sent) <= set(seen)  # none missed


async def test_a_position_taken_later_never_shows_before_an_earlier_one_commits(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """PostgreSQL: a transaction holding position N keeps the next one waiting, so
    a reader can never see N+1 while N is still to commit (SQLite: one writer)."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    owner, _, _, fid = await family_of_three(client, sms)
    await said(client, owner, fid, "row exists")
    async with db.sessions() as first, db.sessions() as second, db.sessions() as reader:
        a = await stream.take(first, conversation_id=fid, kind="hide", about=None)
        later = asyncio.create_task(
            stream.take(second, conversation_id=fid, kind="hide", about=None)
        )
        await asyncio.sleep(0.3)
        assert not later.done()  # waits for the first to end
        assert await stream.top(reader) < a.position
        await first.commit()
        b = await asyncio.wait_for(later, 10)
        assert b.position > a.position
        await reader.rollback()
        assert await stream.top(reader) == a.position  # b not committed yet
        await second.commit()
        await reader.rollback()
        assert await stream.top(reader) == b.position


# --- history -------------------------------------------------------------------------------------


async def test_history_pages_both_ways_by_a_stable_cursor(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    for i in range(7):
        await said(client, owner, fid, f"m{i}")
    newest = await page(client, member, fid, limit=3)
    assert texts(newest) == ["m4", "m5", "m6"]
    # messages arriving while paging back change nothing behind the cursor
    await said(client, owner, fid, "m7")
    older = await page(client, member, fid, limit=3, before=newest["before"])
    assert texts(older) == ["m1", "m2", "m3"]
    oldest = await page(client, member, fid, limit=3, before=older["before"])
    assert texts(oldest)[-1] == "m0"
    # the start: only the notices of joining before m0 remain, then nothing
    while oldest["before"] is not None:
        oldest = await page(client, member, fid, limit=3, before=oldest["before"])
    # forwards from the first page: what came after it, the new one included
    forward = await page(client, member, fid, limit=10, after=newest["after"])
    assert texts(forward) == ["m7"]
    between = await page(client, member, fid, after=older["before"], before=newest["after"])
    assert texts(between) == ["m2", "m3", "m4", "m5"]  # both ends excluded
    quiet = await page(client, member, fid, after=forward["after"])
    assert quiet["messages"] == [] and quiet["after"] == forward["after"]
    for bad in ("nope", "m1.!!!", "m1." + "A" * 38):
        r = await client.get(f"{CONV}/{fid}/messages", params={"before": bad}, headers=h(member))
        problem(r, 422, {"message.bad_cursor", "request.invalid"})


# --- receipts, unread counts ----------------------------------------------------------------------


async def test_receipts_and_unread_counts(client: httpx.AsyncClient, sms: Any) -> None:
    owner, member, other, fid = await family_of_three(client, sms)
    ms = [await said(client, owner, fid, f"r{i}") for i in range(3)]

    async def unread(who: dict[str, Any]) -> int:
        return int((await client.get(f"{CONV}/{fid}", headers=h(who))).json()["unread"])

    assert await unread(member) == 3 and await unread(owner) == 0
    r = await client.post(f"{CONV}/{fid}/read", json={"message_id": ms[1]["id"]}, headers=h(member))
    assert r.status_code == 200 and r.json()["up_to"] == ms[1]["id"], r.text
    assert await unread(member) == 1 and await unread(other) == 3
    # reading an older one again does not move it back
    r = await client.post(f"{CONV}/{fid}/read", json={"message_id": ms[0]["id"]}, headers=h(member))
    assert r.json()["up_to"] == ms[1]["id"]
    # every member sees every receipt
    r = await client.get(f"{CONV}/{fid}/receipts", headers=h(other))
    assert [(x["account_id"], x["up_to"]) for x in r.json()] == [(aid(member), ms[1]["id"])]
    # and the stream carries it
    got = await since(client, owner, ms[2]["position"])
    assert [(e["kind"], e["account_id"], e["up_to"]) for e in got["events"]] == [
        ("receipt", aid(member), ms[1]["position"])
    ]
    problem(
        await client.post(f"{CONV}/{fid}/read", json={"message_id": "999999"}, headers=h(member)),
        404,
        "message.not_found",
    )


async def test_unread_counts_read_their_index_alone(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """Counting unread messages (the conversation list here, every Matrix sync)
    reads the partial index ``ix_messages_unread``: the query states its
    condition in the index's own words, so the database may use it (a count
    that read every unread message's row made each sync of a member who had not
    read for a while scan them all)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the plan is read with SQLite's EXPLAIN QUERY PLAN")
    owner, member, _, fid = await family_of_three(client, sms)
    for i in range(3):
        await said(client, owner, fid, f"u{i}")
    seen: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if "count(*)" in statement and "FROM messages" in statement:
            seen.append((statement, params))

    engine = db.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", keep)
    try:
        r = await client.get(f"{CONV}/{fid}", headers=h(member))
    finally:
        sa_event.remove(engine, "before_cursor_execute", keep)
    assert r.json()["unread"] == 3
    [(statement, params)] = seen
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        plan = raw.driver_connection.raw.execute(f"EXPLAIN QUERY PLAN {statement}", params)
        details = [row[3] for row in plan.fetchall()]
    assert any("COVERING INDEX ix_messages_unread" in d for d in details), details
    # ... and knows it holds nothing else to check: the index's condition is in
    # the statement as literals (with a parameter SQLite may still pick the index,
    # but then reads every row to check it: 0.7 ms against 0.13 ms for 540
    # unread messages)
    assert "kind != 'system' AND recalled_at IS NULL" in statement


# --- recall, delete for me ----------------------------------------------------------------------


async def test_recall_within_the_window_only_by_the_sender(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    m = await said(client, owner, fid, "oops")
    url = f"{CONV}/{fid}/messages/{m['id']}/recall"
    problem(await client.post(url, headers=h(member)), 403, "message.not_sender")
    clock.advance(60)
    r = await client.post(url, headers=h(owner))
    assert r.status_code == 200, r.text
    assert r.json()["recalled"] is True and r.json()["text"] is None
    [seen] = [x for x in (await page(client, member, fid))["messages"] if x["id"] == m["id"]]
    assert seen["recalled"] is True and seen["text"] is None
    got = await since(client, member, m["position"])
    assert [e["kind"] for e in got["events"]] == ["recall"]
    late = await said(client, owner, fid, "too late to take back")
    clock.advance(121)
    r = await client.post(f"{CONV}/{fid}/messages/{late['id']}/recall", headers=h(owner))
    problem(r, 409, "message.recall_expired")
    assert texts(await page(client, member, fid))[-1] == "too late to take back"


async def test_delete_for_me_hides_it_from_me_only(client: httpx.AsyncClient, sms: Any) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    m = await said(client, owner, fid, "hide me")
    r = await client.delete(f"{CONV}/{fid}/messages/{m['id']}", headers=h(member))
    assert r.status_code == 204, r.text
    r = await client.delete(f"{CONV}/{fid}/messages/{m['id']}", headers=h(member))
    assert r.status_code == 204, r.text  # again: nothing more
    assert "hide me" not in texts(await page(client, member, fid))
    assert "hide me" in texts(await page(client, owner, fid))
    assert [e["kind"] for e in (await since(client, member, m["position"]))["events"]] == ["hide"]
    assert (await since(client, owner, m["position"]))["events"] == []
    problem(
        await client.delete(f"{CONV}/{fid}/messages/424242", headers=h(member)),
        404,
        "message.not_found",
    )


# --- attachments and the permissions that gate them ----------------------------------------------


async def test_images_and_voice_notes_go_through_the_pipeline(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    r = await client.post(
        ATTACH,
        params={"kind": "image"},
        files={"file": ("a.jpg", jpeg_with_metadata(), "image/jpeg")},
        headers=h(owner),
    )
    assert r.status_code == 201, r.text
    image = r.json()
    assert image["content_type"] in ("image/jpeg", "image/png")
    r = await send(client, owner, fid, kind="image", attachment_id=image["id"])
    assert r.status_code == 201, r.text
    url = r.json()["attachment"]["url"]
    got = await client.get(url, headers=h(member))
    assert got.status_code == 200 and got.headers["content-type"] == image["content_type"]
    for voice, codec, ms in ((ogg_opus(3.5), "opus", 3500), (amr(2), "amr-nb", 2000)):
        r = await client.post(
            ATTACH,
            params={"kind": "voice"},
            files={"file": ("v.bin", voice, "application/octet-stream")},
            headers=h(owner),
        )
        assert r.status_code == 201, r.text
        assert (r.json()["codec"], r.json()["duration_ms"]) == (codec, ms)
        r = await send(client, owner, fid, kind="voice", attachment_id=r.json()["id"])
        assert r.status_code == 201, r.text
        assert r.json()["attachment"]["duration_ms"] == ms
    # the same attachment cannot be sent twice, nor someone else's
    problem(
        await send(client, owner, fid, kind="image", attachment_id=image["id"]),
        409,
        "attachment.used",
    )
    problem(
        await send(client, member, fid, kind="image", attachment_id=image["id"]),
        404,
        "attachment.not_found",
    )
    # too long, not audio
    r = await client.post(
        ATTACH,
        params={"kind": "voice"},
        files={"file": ("v", ogg_opus(600), "audio/ogg")},
        headers=h(owner),
    )
    problem(r, 422, "media.too_long")
    r = await client.post(
        ATTACH,
        params={"kind": "voice"},
        files={"file": ("v", b"RIFF....WAVE", "audio/ogg")},
        headers=h(owner),
    )
    problem(r, 415, "media.unsupported_type")
    # a location
    r = await send(client, owner, fid, kind="location", lat=39.9, lon=116.4, accuracy_m=12.0)
    assert r.status_code == 201 and r.json()["location"]["lat"] == 39.9, r.text


async def test_closed_permissions_stop_voice_photos_and_locations(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang", device=IPHONE)
    fid = await new_family(client, owner)
    await reported(
        client,
        owner,
        {"microphone": "denied", "photos": "denied", "camera": "denied", "location": "denied"},
    )
    before = await snapshot(db)
    r = await client.post(
        ATTACH,
        params={"kind": "voice"},
        files={"file": ("v", amr(1), "audio/amr")},
        headers=h(owner),
    )
    assert problem(r, 403, "permission.closed")["permissions"] == ["microphone"]
    r = await client.post(
        ATTACH,
        params={"kind": "image"},
        files={"file": ("a.jpg", jpeg_with_metadata(), "image/jpeg")},
        headers=h(owner),
    )
    problem(r, 403, "permission.closed")
    problem(
        await send(client, owner, fid, kind="voice", attachment_id="1"), 403, "permission.closed"
    )
    problem(
        await send(client, owner, fid, kind="location", lat=1.0, lon=2.0), 403, "permission.closed"
    )
    assert await snapshot(db) == before
    # text needs none of them
    await said(client, owner, fid, "typed")
    await reported(client, owner, {"microphone": "granted"})
    r = await client.post(
        ATTACH,
        params={"kind": "voice"},
        files={"file": ("v", amr(1), "audio/amr")},
        headers=h(owner),
    )
    assert r.status_code == 201, r.text


# --- bad input ----------------------------------------------------------------------------------


async def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    stranger = await person(client, sms, STRANGER, "Zhao")
    theirs = await new_family(client, stranger, "Zhaos")
    await said(client, stranger, theirs, "private")
    await said(client, owner, fid, "ours")
    before = await snapshot(db)
    for path in (
        f"{CONV}/{theirs}",
        f"{CONV}/{theirs}/messages",
        f"{CONV}/{'0' * 32}",
        f"{CONV}/not-an-id/messages",
    ):
        problem(await client.get(path, headers=h(owner)), 404, "conversation.not_found")
    problem(await send(client, owner, theirs, "hello"), 404, "conversation.not_found")
    problem(await send(client, owner, fid, "x" * 4001), 422, "request.invalid")
    problem(await send(client, owner, fid, "   "), 422, "request.invalid")
    problem(await send(client, owner, fid, kind="sticker"), 422, "request.invalid")
    problem(
        await send(client, owner, fid, kind="system", text="fake notice"), 422, "request.invalid"
    )
    problem(await send(client, owner, fid, kind="location", lat=1.0), 422, "request.invalid")
    problem(
        await send(client, owner, fid, kind="location", lat=91.0, lon=0.0), 422, "request.invalid"
    )
    problem(await send(client, owner, fid, kind="image"), 422, "request.invalid")
    problem(
        await send(client, owner, fid, kind="text", text="a", txn_id=""), 422, "request.invalid"
    )
    r = await client.post(
        f"{CONV}/{fid}/messages",
        json={"txn_id": "a", "kind": "text", "text": "x", "extra": 1},
        headers=h(owner),
    )
    problem(r, 422, "request.invalid")
    problem(
        await client.post(f"{CONV}/{fid}/messages/999999/recall", headers=h(member)),
        404,
        "message.not_found",
    )
    assert await snapshot(db) == before


# --- system notices -------------------------------------------------------------------------------


async def test_an_sos_is_told_in_the_family_conversation(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    r = await client.post("/api/v1/sos", json={"note": "fell"}, headers=h(member))
    assert r.status_code in (200, 201), r.text
    r = await client.post(f"/api/v1/sos/{r.json()['id']}/acknowledge", headers=h(owner))
    assert r.status_code == 200, r.text
    notes = notices(await page(client, owner, fid))
    assert notes[-2:] == [(aid(member), "sos_raised"), (aid(owner), "sos_answered")]


# --- pushes ---------------------------------------------------------------------------------------


async def test_only_people_with_no_live_client_get_a_push_notice(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, other, fid = await family_of_three(client, sms)
    sub = live.hub.subscribe(aid(member), watching=[aid(owner)])
    try:
        m = await said(client, owner, fid, "are you there")
    finally:
        live.hub.unsubscribe(sub)
    rows = await query(db, "SELECT account_id, body FROM notifications WHERE category = 'messages'")
    assert [r["account_id"] for r in rows] == [aid(other)]
    # what is stored and pushed names nobody and never holds the words
    assert "are you there" not in rows[0]["body"] and "Wang Fang" not in rows[0]["body"]
    # the inbox names the sender when it is read
    r = await client.get("/api/v1/notifications", headers=h(other))
    items = r.json()["items"] if isinstance(r.json(), dict) else r.json()
    [note] = [n for n in items if n["category"] == "messages"]
    assert note["title"] == "Wang Fang" and note["body"] == "Wang Fang sent a message."
    assert not sub.queue.empty() and sub.queue.get_nowait().seq == m["position"]


async def test_a_member_live_on_another_process_gets_no_push_notice(
    client: httpx.AsyncClient,
    sms: Any,
    db: Any,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """With Redis (``kares serve --workers N``), a member whose socket another
    process holds is live: the message makes them no notice; once that socket
    is gone, the next one does."""
    owner, member, other, fid = await family_of_three(client, sms)

    async def present(account_id: str, want: bool) -> None:
        for _ in range(2000):
            if bool((await live.presence.devices([account_id])).get(account_id)) == want:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"presence of {account_id} never became {want}")

    here = await livebus.attach(redis_server.url, 60)  # this process's bridge
    far = await RedisBridge(redis_server.url).start()  # another process's
    try:
        far.arrive(aid(member), "phone-on-b")
        await present(aid(member), True)
        await said(client, owner, fid, "are you there")
        far.leave(aid(member), "phone-on-b")
        await present(aid(member), False)
        await said(client, owner, fid, "and now")
    finally:
        await far.stop()
        await livebus.detach(here)
    rows = await query(db, "SELECT account_id FROM notifications WHERE category = 'messages'")
    got = sorted(r["account_id"] for r in rows)
    assert got == sorted([aid(other), aid(other), aid(member)])


# --- an account's deletion ------------------------------------------------------------------------


async def test_a_deleted_accounts_messages_stay_with_a_tombstone(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    sent = await said(client, member, fid, "remember the milk")
    r = await client.post(CONV, json={"account_id": aid(owner)}, headers=h(member))
    cid = r.json()["conversation"]["id"]
    await said(client, member, cid, "between us")
    await said(client, owner, cid, "sure")
    await client.post(f"{CONV}/{fid}/read", json={"message_id": sent["id"]}, headers=h(member))
    r = await ask(client, sms, member)
    assert r.status_code == 202, r.text
    clock.advance(15 * 86400 + 3600)
    await jobs.run_due(app.state.runtime)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=aid(member))

    fam = await page(client, owner, fid)
    [kept] = [m for m in fam["messages"] if m["id"] == sent["id"]]
    assert kept["sender_id"] is None and kept["text"] == "remember the milk"
    direct = await page(client, owner, cid)
    assert [(m["sender_id"], m["text"]) for m in direct["messages"]] == [
        (None, "between us"),
        (aid(owner), "sure"),
    ]
    r = await client.get(f"{CONV}/{cid}", headers=h(owner))
    assert r.json()["peer_id"] is None and r.json()["members"] == [aid(owner)]
    problem(await send(client, owner, cid, "hello?"), 409, "conversation.closed")
    # nothing left names the person: no row holds their id
    for table in (
        "messages",
        "message_events",
        "message_receipts",
        "conversations",
        "message_attachments",
        "message_hidden",
    ):
        rows = await query(db, f"SELECT * FROM {table}")
        assert not any(aid(member) in repr(r) for r in rows), table


# --- the rights engine, with no chat code -----------------------------------------------------


async def test_processing_and_chosen_deletion_cover_messages(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, _, fid = await family_of_three(client, sms)
    await said(client, member, fid, "my words")
    theirs = await said(client, owner, fid, "theirs")
    r = await client.get("/api/v1/me/processing", headers=h(member))
    assert r.status_code == 200, r.text
    held = {i["category"]: i for i in r.json()["items"]}
    assert held["messaging.content"]["held"] and held["messaging.metadata"]["held"]
    assert "messaging" in held["messaging.content"]["functions"]
    # the content of what the member said goes; its place (and everyone else's) stays
    r = await client.post(
        "/api/v1/me/data/deletion", json={"category": "messaging.content"}, headers=h(member)
    )
    assert r.status_code == 200, r.text
    assert r.json()["cleared"].get("messages", 0) >= 1
    seen = await page(client, owner, fid)
    assert "my words" not in texts(seen) and "theirs" in texts(seen)
    rows = await query(db, "SELECT body FROM messages WHERE sender_account_id = :a", a=aid(member))
    assert rows and all(r["body"] is None for r in rows)
    assert theirs["id"] in [m["id"] for m in seen["messages"]]


async def test_text_that_is_not_unicode_is_refused(client: httpx.AsyncClient, sms: Any) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    fid = await new_family(client, owner)
    raw = b'{"txn_id": "s1", "kind": "text", "text": "bad \\ud800 half"}'
    r = await client.post(
        f"{CONV}/{fid}/messages",
        content=raw,
        headers={**h(owner), "content-type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text


async def test_arriving_at_a_family_place_is_told_while_location_is_shared(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner, member, other, fid = await family_of_three(client, sms)
    home = (39.9042, 116.4074)
    r = await client.post(
        f"/api/v1/families/{fid}/places",
        json={"name": "Home", "lat": home[0], "lon": home[1], "radius_m": 100},
        headers=h(owner),
    )
    assert r.status_code in (200, 201), r.text
    now = clock.utcnow()
    for who in (member, other):
        await grant_precise(client, who)
    # the other shares nothing with the family: no notice about them
    r = await client.put(
        f"/api/v1/families/{fid}/members/me/sharing", json={"location": "off"}, headers=h(other)
    )
    assert r.status_code == 200, r.text
    for who in (member, other):
        # away first, then home for longer than a crossing takes to be sure of
        away = [fix(9, now - timedelta(minutes=9), lat=home[0] + 0.05, lon=home[1])]
        at_home = [fix(i, now - timedelta(minutes=i), lat=home[0], lon=home[1]) for i in (3, 1)]
        assert (await upload(client, who, away + at_home)).status_code in (200, 201)
    notes = [n for n in notices(await page(client, owner, fid)) if n[1] == "place_arrived"]
    assert notes == [(aid(member), "place_arrived")]
    [m] = [
        m
        for m in (await page(client, owner, fid))["messages"]
        if m["kind"] == "system" and m["system"]["event"] == "place_arrived"
    ]
    assert m["system"]["place"] == "Home"
