"""The send lane's steady path stores and answers exactly what the route does.

``POST /api/v1/conversations/{id}/messages`` is served by a lane (``kares.lanes``):
on SQLite a text message to a family's conversation in the steady state (a live
session, the guard's decision remembered, every other member connected, a new
transaction id) is stored on a bare transaction (``messaging.api.send_lane``,
``service.send_steady``); everything else is declined, with nothing stored, and
the route answers it with the body handed over again. These tests run the same
conversation in two identical families, one with the steady path and one
without it, and compare what either answers and leaves behind: replies,
messages, stream events, notices, what the live streams hear.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest

from kares import live
from kares.messaging import service
from tests.conftest import query
from tests.test_families import aid, h, join, new_family, person
from tests.test_messaging import CONV, page

SENT_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def count_steady(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each send from now on was stored by the steady path."""
    taken: list[bool] = []
    steady = service.send_steady

    async def counted(*a: Any, **kw: Any) -> Any:
        got = await steady(*a, **kw)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(service, "send_steady", counted)
    return taken


def never_steady(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every send goes the route's way."""

    async def never(*a: Any, **kw: Any) -> None:
        return None

    monkeypatch.setattr(service, "send_steady", never)


async def remembered(client: httpx.AsyncClient, *fams: dict[str, Any]) -> None:
    """The guard's decision for each sender, remembered by a first request."""
    for fam in fams:
        for who in ("owner", "member"):
            r = await client.get(f"{CONV}/{fam['fid']}", headers=h(fam[who]))
            assert r.status_code == 200, r.text


async def family(client: httpx.AsyncClient, sms: Any, n: int) -> dict[str, Any]:
    owner = await person(client, sms, f"+8613711{n:02d}0001", "Wang Fang")
    member = await person(client, sms, f"+8613711{n:02d}0002", "Wang Lei")
    other = await person(client, sms, f"+8613711{n:02d}0003", "Li Na")
    fid = await new_family(client, owner)
    await join(client, owner, fid, member)
    await join(client, owner, fid, other)
    return {"owner": owner, "member": member, "other": other, "fid": fid}


async def post(
    client: httpx.AsyncClient, me: dict[str, Any], cid: str, body: Any, **headers: str
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hs = {**h(me), "content-type": "application/json", **headers}
    return await client.post(f"{CONV}/{cid}/messages", content=raw, headers=hs)


async def conversation(
    client: httpx.AsyncClient, fam: dict[str, Any], stranger_fid: str
) -> list[httpx.Response]:
    """One morning's sends, everyone connected (as sockets are) until the other
    leaves."""
    owner, member, fid = fam["owner"], fam["member"], fam["fid"]
    subs = [
        live.hub.subscribe(aid(fam[who]), watching=[aid(owner), aid(member)], device_id="phone")
        for who in ("owner", "member", "other")
    ]
    fam["subs"] = subs
    out = []

    async def send(me: dict[str, Any], body: Any, cid: str = fid, **headers: str) -> None:
        out.append(await post(client, me, cid, body, **headers))

    await send(owner, {"txn_id": "a1", "kind": "text", "text": "good morning"})
    await send(owner, {"txn_id": "a2", "kind": "text", "text": "  breakfast at 8?  "})
    await send(owner, {"txn_id": "a1", "kind": "text", "text": "good morning"})  # a retry
    await send(owner, {"txn_id": "a1", "kind": "text", "text": "changed words"})  # same id
    await send(member, {"txn_id": "b1", "kind": "text", "text": "yes"})
    await send(member, {"txn_id": "b2", "kind": "text", "text": "see you"})
    await send(owner, {"txn_id": "a3", "kind": "text", "text": "x" * 4001})  # too long
    await send(owner, {"txn_id": "a4", "kind": "text", "text": "   "})  # only spaces
    await send(owner, {"txn_id": "a5", "kind": "text", "text": "hi", "extra": 1})
    await send(owner, {"txn_id": "", "kind": "text", "text": "hi"})
    await send(owner, {"txn_id": "a6", "kind": "location", "lat": 31.2, "lon": 121.4})
    await send(owner, b'{"txn_id": "a7", "kind": "text", "text": "broken"')  # not JSON
    await send(
        owner, {"txn_id": "a8", "kind": "text", "text": "typed"}, **{"content-type": "text/plain"}
    )
    await send(owner, {"txn_id": "a9", "kind": "text", "text": "not mine"}, cid=stranger_fid)
    await send(owner, {"txn_id": "a10", "kind": "text", "text": "nobody"}, cid="f" * 32)
    await send(owner, {"txn_id": "a11", "kind": "text", "text": "nobody"}, cid="not-an-id")
    await send(
        owner, {"txn_id": "a12", "kind": "text", "text": "ok"}, Authorization="Bearer kares_nope"
    )
    live.hub.unsubscribe(subs[2])  # the other closes the app
    await send(owner, {"txn_id": "a13", "kind": "text", "text": "where is Li Na?"})
    await send(member, {"txn_id": "b3", "kind": "text", "text": "asleep"})
    live.hub.unsubscribe(subs[0])
    live.hub.unsubscribe(subs[1])
    return out


def neutral(replies: list[httpx.Response], fam: dict[str, Any]) -> list[Any]:
    """The replies with the family's ids, positions and times replaced by names."""
    names = {aid(fam[w]): w for w in ("owner", "member", "other")} | {fam["fid"]: "FAMILY"}
    positions: dict[int, str] = {}
    out = []
    for r in replies:
        body = r.json()
        if "position" in body:
            p = positions.setdefault(body["position"], f"P{len(positions)}")
            assert body["id"] == str(body["position"]) and SENT_AT.fullmatch(body["sent_at"])
            body = {
                **body,
                "id": p,
                "position": p,
                "sent_at": "T",
                "conversation_id": names[body["conversation_id"]],
                "sender_id": names[body["sender_id"]],
            }
        out.append((r.status_code, r.headers["content-type"], list(body), body))
    return out


async def left_behind(client: httpx.AsyncClient, db: Any, fam: dict[str, Any]) -> dict[str, Any]:
    fid = fam["fid"]
    names = {aid(fam[w]): w for w in ("owner", "member", "other")}
    msgs = (await page(client, fam["member"], fid, limit=100))["messages"]
    mine = [m for m in msgs if m["kind"] != "system"]
    events = await query(
        db,
        "SELECT position, kind, account_id, message_position FROM message_events"
        " WHERE conversation_id = :c ORDER BY position",
        c=fid,
    )
    notes = await query(
        db,
        "SELECT account_id, title, body, data FROM notifications"
        " WHERE category = 'messages' AND account_id IN (:a, :b, :c) ORDER BY created_at",
        a=aid(fam["owner"]),
        b=aid(fam["member"]),
        c=aid(fam["other"]),
    )
    positions = [m["position"] for m in mine]
    heard = []
    for sub in fam["subs"]:
        got = []
        while not sub.queue.empty():
            got.append(sub.queue.get_nowait())
        heard.append(
            [positions.index(n.seq) for n in got if n.kind == "message" and n.seq in positions]
        )
    txn = await query(
        db,
        "SELECT count(*) AS n FROM messages WHERE conversation_id = :c AND txn_key IS NOT NULL",
        c=fid,
    )
    return {
        "messages": [(names[m["sender_id"]], m["kind"], m["text"]) for m in mine],
        "events": [
            (e["kind"], e["account_id"], e["message_position"] == e["position"])
            for e in events
            if e["position"] in positions
        ],
        "notes": sorted((names[n["account_id"]], n["title"], n["body"]) for n in notes),
        "heard": heard,
        "with_txn": txn[0]["n"],
    }


async def test_the_steady_path_answers_and_leaves_what_the_route_does(
    client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_fam, off_fam = await family(client, sms, 1), await family(client, sms, 2)
    stranger = await family(client, sms, 3)
    await remembered(client, on_fam, off_fam)
    taken = count_steady(monkeypatch)
    replies_on = await conversation(client, on_fam, stranger["fid"])
    steady_taken = list(taken)
    never_steady(monkeypatch)
    replies_off = await conversation(client, off_fam, stranger["fid"])

    assert neutral(replies_on, on_fam) == neutral(replies_off, off_fam)
    on, off = await left_behind(client, db, on_fam), await left_behind(client, db, off_fam)
    assert on == off
    # and what they answered and left is what the morning says
    assert [r.status_code for r in replies_on] == [
        *(201, 201, 200, 200, 201, 201),
        *(422, 422, 422, 422, 201, 400, 422, 404, 404, 404, 401),
        *(201, 201),
    ]
    assert replies_on[2].json() == replies_on[0].json()  # a retry: the first message
    assert on["messages"] == [
        ("owner", "text", "good morning"),
        ("owner", "text", "breakfast at 8?"),
        ("member", "text", "yes"),
        ("member", "text", "see you"),
        ("owner", "location", None),  # the route's: a location is never steady
        ("owner", "text", "where is Li Na?"),
        ("member", "text", "asleep"),
    ]
    assert all(point for _, _, point in on["events"]) and len(on["events"]) == 7
    assert [n[0] for n in on["notes"]] == ["other", "other"]  # once the other left
    assert on["heard"] == [[0, 1, 2, 3, 4, 5, 6]] * 2 + [[0, 1, 2, 3, 4]] and on["with_txn"] == 7

    if db.engine.dialect.name != "sqlite":
        assert steady_taken == []  # PostgreSQL: every send goes the route's way
    else:
        # the steady path stored the four steady sends; it declined the two
        # retries, the three to conversations that are not the sender's, and the
        # two with someone to notify; the rest never reached it (the lane left
        # them to the route: a body it refuses, another kind, a bad token)
        assert steady_taken == [True, True, False, False, True, True] + [False] * 5, steady_taken


async def test_sends_at_once_store_each_message_once(
    client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fam = await family(client, sms, 4)
    owner, fid = fam["owner"], fam["fid"]
    subs = [
        live.hub.subscribe(aid(fam[w]), watching=[aid(owner)], device_id="phone")
        for w in ("member", "other")
    ]
    try:
        r = await client.get(f"{CONV}/{fid}", headers=h(owner))
        assert r.status_code == 200
        taken = count_steady(monkeypatch)
        # the same send eight times at once: one message, the others its retries
        twins = await asyncio.gather(
            *(
                post(client, owner, fid, {"txn_id": "z", "kind": "text", "text": "one"})
                for _ in range(8)
            )
        )
        assert sorted(r.status_code for r in twins) == [200] * 7 + [201]
        assert len({r.json()["position"] for r in twins}) == 1
        # forty different sends, eight at a time
        gate = asyncio.Semaphore(8)

        async def one(k: int) -> httpx.Response:
            async with gate:
                return await post(
                    client, owner, fid, {"txn_id": f"m{k}", "kind": "text", "text": f"#{k}"}
                )

        many = await asyncio.gather(*(one(k) for k in range(40)))
        assert {r.status_code for r in many} == {201}
    finally:
        for sub in subs:
            live.hub.unsubscribe(sub)
    rows = await query(
        db,
        "SELECT position, txn_key FROM messages WHERE conversation_id = :c"
        " AND kind = 'text' ORDER BY position",
        c=fid,
    )
    assert len(rows) == 41 and len({r["txn_key"] for r in rows}) == 41
    got = sorted(r.json()["position"] for r in many)
    assert got == sorted({r["position"] for r in rows} - {twins[0].json()["position"]})
    heard = []
    while not subs[0].queue.empty():
        heard.append(subs[0].queue.get_nowait().seq)
    assert sorted(n for n in heard if n in got) == got  # each message heard
    if db.engine.dialect.name == "sqlite":
        assert taken.count(True) >= 40


# --- the same over the Matrix client-server API ----------------------------------------------

MX = "/_matrix/client/v3"


async def mx_conversation(
    client: httpx.AsyncClient, fam: dict[str, Any], stranger_fid: str
) -> list[httpx.Response]:
    """A morning of ``PUT .../send`` (the Matrix send lane), everyone connected
    until the other leaves."""
    owner, member, fid = fam["owner"], fam["member"], fam["fid"]
    room = f"!{fid}:localhost"
    subs = [
        live.hub.subscribe(aid(fam[who]), watching=[aid(owner), aid(member)], device_id="phone")
        for who in ("owner", "member", "other")
    ]
    fam["subs"] = subs
    out = []

    async def put(
        me: dict[str, Any],
        txn: str,
        body: Any,
        where: str = room,
        kind: str = "m.room.message",
        **headers: str,
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        hs = {**h(me), "content-type": "application/json", **headers}
        url = f"{MX}/rooms/{where}/send/{kind}/{txn}"
        out.append(await client.put(url, content=raw, headers=hs))

    await put(owner, "a1", {"msgtype": "m.text", "body": "good morning", "kares_ts": 1})
    await put(owner, "a2", {"msgtype": "m.notice", "body": "  breakfast at 8?  "})
    await put(owner, "a1", {"msgtype": "m.text", "body": "good morning", "kares_ts": 1})
    await put(owner, "a3", {"msgtype": "m.emote", "body": "waves"})
    await put(member, "b1", {"msgtype": "m.text", "body": "yes"})
    await put(member, "t" * 100, {"msgtype": "m.text", "body": "a long transaction id"})
    await put(owner, "a4", {"msgtype": "m.text", "body": "x" * 4001})
    await put(owner, "a5", {"msgtype": "m.text", "body": "   "})
    await put(owner, "a6", {"msgtype": "m.text", "body": 7})
    await put(owner, "a7", {"msgtype": "m.text", "body": "big", "pad": "p" * 5000})
    await put(owner, "a8", {"body": "no type"})
    await put(owner, "a9", [1])
    await put(owner, "a10", b'{"msgtype": "m.text"')
    await put(owner, "a11", b"")
    await put(owner, "a12", {"msgtype": "m.text", "body": "a reaction?"}, kind="m.reaction")
    await put(owner, "a13", {"msgtype": "m.location", "body": "here", "geo_uri": "nowhere"})
    await put(owner, "a14", {"msgtype": "m.text", "body": "x"}, where=f"!{stranger_fid}:localhost")
    await put(owner, "a15", {"msgtype": "m.text", "body": "x"}, where=f"!{fid}:elsewhere")
    await put(owner, "a16", {"msgtype": "m.text", "body": "x"}, where="!" + "f" * 32 + ":localhost")
    await put(owner, "a17", {"msgtype": "m.text", "body": "x"}, Authorization="Bearer kares_no")
    live.hub.unsubscribe(subs[2])  # the other closes the app
    await put(owner, "a18", {"msgtype": "m.text", "body": "where is Li Na?"})
    live.hub.unsubscribe(subs[0])
    live.hub.unsubscribe(subs[1])
    return out


def mx_neutral(replies: list[httpx.Response]) -> list[Any]:
    """The replies with event ids replaced by their order of first appearance."""
    seen: dict[str, str] = {}
    out = []
    for r in replies:
        body = r.json()
        if "event_id" in body:
            body = {"event_id": seen.setdefault(body["event_id"], f"E{len(seen)}")}
        out.append((r.status_code, r.headers["content-type"], body))
    return out


async def mx_history(client: httpx.AsyncClient, fam: dict[str, Any]) -> list[Any]:
    names = {f"@{aid(fam[w])}:localhost": w for w in ("owner", "member", "other")}
    r = await client.get(
        f"{MX}/rooms/!{fam['fid']}:localhost/messages",
        params={"dir": "f", "limit": 100},
        headers=h(fam["member"]),
    )
    assert r.status_code == 200, r.text
    return [
        (names[e["sender"]], e["content"])
        for e in r.json()["chunk"]
        if e["type"] == "m.room.message" and "kares.system" not in json.dumps(e["content"])
    ]


async def test_the_matrix_send_lane_answers_and_leaves_what_the_route_does(
    client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_fam, off_fam = await family(client, sms, 5), await family(client, sms, 6)
    stranger = await family(client, sms, 7)
    await remembered(client, on_fam, off_fam)
    taken = count_steady(monkeypatch)
    replies_on = await mx_conversation(client, on_fam, stranger["fid"])
    steady_taken = list(taken)
    never_steady(monkeypatch)
    replies_off = await mx_conversation(client, off_fam, stranger["fid"])

    assert mx_neutral(replies_on) == mx_neutral(replies_off)
    on, off = await left_behind(client, db, on_fam), await left_behind(client, db, off_fam)
    assert on == off
    assert await mx_history(client, on_fam) == await mx_history(client, off_fam)
    assert [r.status_code for r in replies_on] == [
        *(200,) * 6,
        *(400, 400, 400, 413, 400, 400, 400, 400, 400, 400, 403, 403, 403, 401),
        200,
    ]
    assert [r.json().get("errcode") for r in replies_on[6:20]] == [
        "M_BAD_JSON",  # ... too long for a message
        "M_BAD_JSON",
        "M_BAD_JSON",
        "M_TOO_LARGE",
        "M_BAD_JSON",
        "M_BAD_JSON",
        "M_NOT_JSON",
        "M_BAD_JSON",
        "M_UNRECOGNIZED",
        "M_BAD_JSON",
        "M_FORBIDDEN",
        "M_FORBIDDEN",
        "M_FORBIDDEN",
        "M_UNKNOWN_TOKEN",
    ]
    assert replies_on[2].json() == replies_on[0].json()  # a retry: the first event
    history = await mx_history(client, on_fam)
    assert [(who, c["msgtype"], c["body"]) for who, c in history] == [
        ("owner", "m.text", "good morning"),
        ("owner", "m.notice", "breakfast at 8?"),
        ("owner", "m.emote", "waves"),
        ("member", "m.text", "yes"),
        ("member", "m.text", "a long transaction id"),
        ("owner", "m.text", "where is Li Na?"),
    ]
    assert history[0][1]["kares_ts"] == 1  # what the client added comes back
    assert [n[0] for n in on["notes"]] == ["other"]
    if db.engine.dialect.name != "sqlite":
        assert steady_taken == []
    else:
        # stored: the five steady sends; declined: the retry, the words too long
        # and the spaces, the two rooms of this server that are not the sender's
        # family's, the one with someone to notify
        assert steady_taken == [True, True, False, True, True, True] + [False] * 5, steady_taken
