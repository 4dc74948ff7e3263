"""Messages over the device's WebSocket: a message sent through the API reaches
the other members' sockets as a `message` event with a position; a socket that
reconnects with its token gets exactly what it missed, in order, once; typing
in a direct conversation reaches its other person only."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.test_families import new_family
from tests.test_messaging import CONV, family_of_three, h, said
from tests.test_ws import frame, frames_until, hello, opened, ws_url  # noqa: F401 - ws_url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ws_typing_seconds": 0.3}


def message_events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("source") == "message"]


async def test_messages_reach_sockets_and_a_resume_gets_the_missed_ones_once(
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
) -> None:
    owner, member, _other, fid = await family_of_three(client, sms)
    async with opened(ws_url, member["token"]) as m:
        await hello(m)
        await said(client, owner, fid, "dinner at seven")
        got = await frame(m)
        while got.get("source") != "message":  # other sources (the inbox) may speak first
            got = await frame(m)
        assert got["type"] == "message" and got["data"]["conversation_id"] == fid
        assert got["data"]["message"]["text"] == "dinner at seven"
        token = got["token"]
    # away: three more messages, then back with the token
    for t in ("one", "two", "three"):
        await said(client, owner, fid, t)
    async with opened(ws_url, member["token"], since=token) as m:
        first = await frame(m)
        assert first["type"] == "hello" and first["resumed"] is True
        rest = await frames_until(m, "caught_up")
        got = [f["data"]["message"]["text"] for f in message_events(rest)]
        assert got == ["one", "two", "three"]
        positions = [f["position"] for f in message_events(rest)]
        assert positions == sorted(positions) and len(set(positions)) == 3
    # and once more from the same token: the same three, nothing else, nothing twice
    async with opened(ws_url, member["token"], since=token) as m:
        await frame(m)
        rest = await frames_until(m, "caught_up")
        assert [f["data"]["message"]["text"] for f in message_events(rest)] == [
            "one",
            "two",
            "three",
        ]


async def test_typing_in_a_direct_conversation_reaches_the_other_person_only(
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
) -> None:
    owner, member, other, _fid = await family_of_three(client, sms)
    r = await client.post(CONV, json={"account_id": member["account"]["id"]}, headers=h(owner))
    assert r.status_code in (200, 201), r.text
    cid = r.json()["conversation"]["id"]
    async with (
        opened(ws_url, owner["token"]) as o,
        opened(ws_url, member["token"]) as m,
        opened(ws_url, other["token"]) as x,
    ):
        for c in (o, m, x):
            await hello(c)
        await o.send(json.dumps({"type": "typing", "conversation": cid, "typing": True}))
        got = await frames_until(m, "typing")
        assert got[-1]["conversation"] == cid and got[-1]["typing"] is True
        # the third member is not in it: nothing but the pong
        await x.send(json.dumps({"type": "ping", "id": "p"}))
        assert await frames_until(x, "pong") == [{"type": "pong", "id": "p"}]
        # the third member cannot type into it
        await x.send(json.dumps({"type": "typing", "conversation": cid, "typing": True, "id": 1}))
        err = await frame(x)
        assert (err["type"], err["code"]) == ("error", "conversation.not_found")


async def test_a_position_is_never_given_again_after_the_newest_event_was_deleted(
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
) -> None:
    """Dissolving a family deletes its conversation and its events, the newest
    position with them. The next message must still come after every position
    a socket has seen: given again (SQLite reused the largest rowid once it was
    gone), a socket that had seen it would skip the new message for good."""
    owner, member, _other, fid = await family_of_three(client, sms)
    weekend = await new_family(client, owner, "Weekend")
    async with opened(ws_url, owner["token"]) as o:
        await hello(o)
        gone = await said(client, owner, weekend, "only here")
        seen = await next_text(o, "only here")
        assert seen["position"] == gone["position"]
        r = await client.delete(f"/api/v1/families/{weekend}", headers=h(owner))
        assert r.status_code == 204, r.text
        kept = await said(client, member, fid, "still here")
        assert kept["position"] > gone["position"]
        got = await next_text(o, "still here")
        assert got["position"] == kept["position"]


async def next_text(c: Any, text: str) -> dict[str, Any]:
    """The next message event carrying ``text`` (other frames skipped)."""
    while True:
        f = await frame(c)
        if f.get("source") == "message" and (f["data"].get("message") or {}).get("text") == text:
            return f
