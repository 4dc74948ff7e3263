"""Sending waits for delivery (kares.live.Hub.admit): while more than BACKLOG
woken streams wait for their turn to read, a fan-out write waits (holding
nothing) until they are fewer, or for ADMIT_WAIT_S at most; streams that only
look (a first read, a poll) never hold a write back."""

from __future__ import annotations

import asyncio
import importlib

import httpx
import pytest

from kares import live


async def _hold(hub: live.Hub, go: asyncio.Event, *, woken: bool) -> None:
    async with hub.reading(woken=woken):
        await go.wait()


@pytest.mark.db_agnostic
async def test_a_write_waits_while_woken_streams_queue_for_their_read() -> None:
    hub = live.Hub()
    go = asyncio.Event()
    # READERS hold their turn, BACKLOG + 1 more wait for one
    tasks = [
        asyncio.create_task(_hold(hub, go, woken=True))
        for _ in range(live.READERS + live.BACKLOG + 1)
    ]
    await asyncio.sleep(0)
    assert hub.backlog == live.BACKLOG + 1  # only the waiting ones count
    write = asyncio.create_task(hub.admit(wait_s=10))
    await asyncio.sleep(0.05)
    assert not write.done()
    go.set()  # the readers move on: the write is let through
    waited = await asyncio.wait_for(write, 5)
    assert 0.04 < waited < 5 and hub.admitted_late == 1
    await asyncio.gather(*tasks)
    assert hub.backlog == 0
    assert await hub.admit() == 0.0  # nothing queued: no wait at all


@pytest.mark.db_agnostic
async def test_the_wait_is_bounded_and_looking_streams_never_count() -> None:
    hub = live.Hub()
    go = asyncio.Event()
    looking = [asyncio.create_task(_hold(hub, go, woken=False)) for _ in range(40)]
    await asyncio.sleep(0)
    assert hub.backlog == 0 and await hub.admit() == 0.0
    go.set()
    await asyncio.gather(*looking)
    stuck = asyncio.Event()
    woken = [
        asyncio.create_task(_hold(hub, stuck, woken=True))
        for _ in range(live.READERS + live.BACKLOG + 5)
    ]
    await asyncio.sleep(0)
    waited = await hub.admit(wait_s=0.1)  # a stuck reader never stops the writes
    assert 0.09 < waited < 2
    stuck.set()
    await asyncio.gather(*woken)


@pytest.mark.db_agnostic
def test_the_fanout_routes_are_registered_by_their_owners() -> None:
    for owner in ("kares.messaging.api", "kares.protocols.matrix.api"):
        importlib.import_module(owner)  # each registers its route

    w = live.fanout_writes
    assert w.matches("POST", "/api/v1/conversations/abc-123/messages")
    assert not w.matches("GET", "/api/v1/conversations/abc-123/messages")
    assert not w.matches("POST", "/api/v1/conversations/abc/messages/extra")
    assert not w.matches("POST", "/api/v1/conversations/a/b/messages")
    assert w.matches("PUT", "/_matrix/client/v3/rooms/!r:x/send/m.room.message/t1")


async def test_a_send_through_the_app_waits_for_the_readers(
    client: httpx.AsyncClient, sms: object
) -> None:
    """End to end: a message POSTed while the readers are behind is answered
    only once they caught up, and is stored (nothing refused, nothing lost)."""
    from tests.test_messaging import family_of_three, said

    owner, _member, _other, fid = await family_of_three(client, sms)
    go = asyncio.Event()
    hub = live.hub
    tasks = [
        asyncio.create_task(_hold(hub, go, woken=True))
        for _ in range(live.READERS + live.BACKLOG + 1)
    ]
    await asyncio.sleep(0)
    late = hub.admitted_late
    sent = asyncio.create_task(said(client, owner, fid, "after the readers"))
    await asyncio.sleep(0.1)
    assert not sent.done()
    go.set()
    msg = await asyncio.wait_for(sent, 10)
    assert msg["text"] == "after the readers" and hub.admitted_late == late + 1
    await asyncio.gather(*tasks)
