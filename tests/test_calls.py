"""Voice calls (issue 14): the state machine, the stored call and what each step
tells whom, the ringing time, and TURN credentials by coturn's REST scheme."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kares import clock, jobs
from kares.calls import machine, service, turn
from kares.calls.machine import CALLEE, CALLER, CallError
from kares.errors import Problem
from kares.notify import service as notify
from kares.notify.models import Notification
from tests.conftest import query
from tests.test_families import join, new_family, person

ANN, BO, CY = "+8613700008001", "+8613700008002", "+8613700008003"
OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
ANSWER = OFFER.replace("o=- 1 2", "o=- 3 4")


# --- the machine, with no I/O ---------------------------------------------------------------


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("state", "step", "side", "device", "expect"),
    [
        ("ringing", "answer", CALLEE, "b1", ("connected", None)),
        ("ringing", "reject", CALLEE, "b1", ("ended", "rejected")),
        ("ringing", "hangup", CALLER, "a1", ("ended", "cancelled")),
        ("ringing", "hangup", CALLEE, "b2", ("ended", "rejected")),
        ("ringing", "expire", CALLER, None, ("ended", "missed")),
        ("ringing", "ringing", CALLEE, "b2", ("ringing", None)),
        ("ringing", "candidates", CALLER, "a1", ("ringing", None)),
        ("connected", "hangup", CALLER, "a1", ("ended", "hangup")),
        ("connected", "hangup", CALLEE, "b1", ("ended", "hangup")),
        ("connected", "negotiate", CALLEE, "b1", ("connected", None)),
        ("connected", "candidates", CALLEE, "b1", ("connected", None)),
        ("connected", "fail", CALLER, "a1", ("ended", "failed")),
        ("ringing", "answer", CALLER, "a1", "call.not_callee"),
        ("ringing", "reject", CALLER, "a1", "call.not_callee"),
        ("ringing", "negotiate", CALLER, "a1", "call.not_connected"),
        ("ringing", "ringing", CALLER, "a1", "call.not_ringing"),
        ("ringing", "hangup", CALLER, "a2", "call.other_device"),
        ("connected", "answer", CALLEE, "b1", "call.already_answered"),
        ("connected", "reject", CALLEE, "b1", "call.already_answered"),
        ("connected", "hangup", CALLEE, "b2", "call.answered_elsewhere"),
        ("connected", "candidates", CALLEE, "b2", "call.answered_elsewhere"),
        ("connected", "expire", CALLER, None, "call.already_answered"),
        ("ended", "hangup", CALLER, "a1", "call.ended"),
        ("ended", "answer", CALLEE, "b1", "call.ended"),
        ("ringing", "dance", CALLER, "a1", "call.unknown_step"),
    ],
)
def test_each_step_in_each_state(
    state: str, step: str, side: str, device: str | None, expect: Any
) -> None:
    answered = "b1" if state == "connected" else None
    if isinstance(expect, str):
        with pytest.raises(CallError) as e:
            machine.step(
                state, step, side=side, device=device, caller_device="a1", answered_device=answered
            )
        assert e.value.code == expect
    else:
        out = machine.step(
            state, step, side=side, device=device, caller_device="a1", answered_device=answered
        )
        assert (out.state, out.end_reason) == expect
        if step == "answer":
            assert out.answered_device == device


# --- TURN ----------------------------------------------------------------------------------


@pytest.mark.db_agnostic
def test_turn_credentials_are_what_a_coturn_server_recomputes() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    c = turn.credentials(
        secret="north-wind", uris=["turn:127.0.0.1:3478"], account_id="a" * 32, now=now, ttl=600
    )
    expiry, who = c.username.split(":")
    assert int(expiry) == int(now.timestamp()) + 600 and who == "a" * 32
    # coturn's use-auth-secret: base64(HMAC-SHA1(static-auth-secret, username))
    mac = hmac.new(b"north-wind", c.username.encode(), hashlib.sha1).digest()
    assert c.password == base64.b64encode(mac).decode()
    assert c.uris == ["turn:127.0.0.1:3478"] and c.ttl == 600


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "calls_ring_seconds": 30,
        "turn_uris": ["turn:127.0.0.1:3478?transport=udp"],
        "turn_secret": "north-wind",
    }


async def test_turn_only_when_configured(app: Any) -> None:
    rt = app.state.runtime
    got = service.turn_for(rt, "b" * 32)
    assert got is not None and got.uris == ["turn:127.0.0.1:3478?transport=udp"]
    rt.settings.turn_secret = ""
    try:
        assert service.turn_for(rt, "b" * 32) is None
    finally:
        rt.settings.turn_secret = "north-wind"


# --- calls, stored and signalled -------------------------------------------------------------


@pytest.fixture
def heard() -> Iterator[list[service.Signal]]:
    got: list[service.Signal] = []

    def keep(signals: Sequence[service.Signal]) -> None:
        got.extend(signals)

    service.on_signals(keep)
    yield got
    service.off_signals(keep)


async def people(client: httpx.AsyncClient, sms: Any) -> tuple[str, str, str]:
    """Ann and Bo share a family; Cy shares none with them."""
    ann = await person(client, sms, ANN, "Ann")
    bo = await person(client, sms, BO, "Bo")
    cy = await person(client, sms, CY, "Cy")
    fid = await new_family(client, ann, "Lis")
    await join(client, ann, fid, bo)
    return ann["account"]["id"], bo["account"]["id"], cy["account"]["id"]


async def call_up(app: Any, a: str, b: str, device: str = "a1") -> str:
    async with app.state.runtime.db.sessions() as s:
        call, _ = await service.invite(
            s, app.state.runtime, caller_id=a, caller_device=device, callee_id=b, sdp=OFFER
        )
    return call.id


async def act(app: Any, call_id: str, who: str, device: str, name: str, **data: Any) -> Any:
    async with app.state.runtime.db.sessions() as s:
        call, signals = await service.act(
            s, call_id=call_id, account_id=who, device=device, name=name, data=data
        )
        return call, signals


def kinds(signals: Sequence[service.Signal]) -> list[tuple[str, str | None, str]]:
    return [(x.to, x.device, x.kind) for x in signals]


async def test_a_call_rings_everywhere_is_answered_on_one_device_and_hung_up(
    app: Any, client: httpx.AsyncClient, sms: Any, heard: list[service.Signal], db: Any
) -> None:
    a, b, _ = await people(client, sms)
    cid = await call_up(app, a, b)
    [invite] = heard
    assert (invite.to, invite.device, invite.kind) == (b, None, "call.invite")
    assert invite.data["sdp"] == OFFER and invite.data["from"] == {"id": a, "name": "Ann"}
    assert invite.data["lifetime_ms"] == 30_000
    heard.clear()

    _, sig = await act(app, cid, b, "b2", "ringing")
    assert kinds(sig) == [(a, "a1", "call.ringing")]
    # the two phones of Bo answer at once: one holds the call, the other is told
    answered_from = clock.utcnow()
    results = await asyncio.gather(
        act(app, cid, b, "b1", "answer", sdp=ANSWER),
        act(app, cid, b, "b2", "answer", sdp=ANSWER),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, Problem)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].code in ("call.answered_elsewhere", "call.already_answered")
    call, sig = won[0]
    holder = call.answered_device_id
    assert kinds(sig) == [(a, "a1", "call.answer"), (b, None, "call.answered_elsewhere")]
    assert sig[0].data["sdp"] == ANSWER and sig[1].data["except"] == holder

    # ICE both ways, and a renegotiation, go to the one device on the other side
    _, sig = await act(app, cid, a, "a1", "candidates", candidates=[{"candidate": "c1"}])
    assert kinds(sig) == [(b, holder, "call.candidates")]
    _, sig = await act(app, cid, b, holder, "negotiate", sdp=OFFER, type="offer")
    assert kinds(sig) == [(a, "a1", "call.negotiate")] and sig[0].data["type"] == "offer"
    other = "b2" if holder == "b1" else "b1"
    with pytest.raises(Problem) as e:
        await act(app, cid, b, other, "hangup")
    assert e.value.code == "call.answered_elsewhere"

    clock.advance(95)
    call, sig = await act(app, cid, a, "a1", "hangup")
    hung_up_by = clock.utcnow()
    assert kinds(sig) == [(b, holder, "call.hangup")] and sig[0].data["reason"] == "hangup"
    # 95 s of the test clock, plus the real time the steps took (the clock runs on)
    most = int((hung_up_by - answered_from).total_seconds()) + 1
    assert 95 <= service.view(call)["duration_seconds"] <= most
    with pytest.raises(Problem) as e:
        await act(app, cid, b, holder, "hangup")
    assert e.value.code == "call.ended"
    [row] = await query(db, "SELECT state, end_reason FROM calls WHERE id = :c", c=cid)
    assert (row["state"], row["end_reason"]) == ("ended", "hangup")
    # the ringing job finds it ended and does nothing
    clock.advance(60)
    await jobs.run_due(app.state.runtime)
    assert not await query(db, "SELECT id FROM notifications WHERE account_id = :b", b=b)


async def test_nobody_answers_it_is_missed_and_the_callee_is_told(
    app: Any, client: httpx.AsyncClient, sms: Any, heard: list[service.Signal], db: Any
) -> None:
    a, b, _ = await people(client, sms)
    cid = await call_up(app, a, b)
    clock.advance(29)
    await jobs.run_due(app.state.runtime)
    [row] = await query(db, "SELECT state FROM calls WHERE id = :c", c=cid)
    assert row["state"] == "ringing"
    clock.advance(2)
    await jobs.run_due(app.state.runtime)
    [row] = await query(db, "SELECT state, end_reason FROM calls WHERE id = :c", c=cid)
    assert (row["state"], row["end_reason"]) == ("ended", "missed")
    assert ("call.hangup", "missed") in [(x.kind, x.data.get("reason")) for x in heard]
    # the callee's inbox: stored (and pushed) naming nobody, read naming the caller
    async with app.state.runtime.db.sessions() as s:
        (note,) = (
            await s.execute(select(Notification).where(Notification.account_id == b))
        ).scalars()
        assert (note.category, note.title, note.body) == (
            "calls",
            "Missed call",
            "A family member called you.",
        )
        assert note.data["call_id"] == cid and a not in json.dumps(note.data)
        shown = await notify.shown(s, note)
    assert (shown.title, shown.body) == ("Missed call from Ann", "Ann called you.")
    # and a notice in their conversation: who called, nothing else
    [msg] = await query(
        db,
        "SELECT m.sender_account_id, m.kind, c.kind AS conv, c.member_a, c.member_b "
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.kind = 'system' AND c.kind = 'direct'",
    )
    assert (msg["sender_account_id"], msg["conv"]) == (a, "direct")
    assert {msg["member_a"], msg["member_b"]} == {a, b}
    with pytest.raises(Problem) as e:
        await act(app, cid, b, "b1", "answer", sdp=ANSWER)
    assert e.value.code == "call.ended"


async def test_rejected_and_cancelled_calls_stop_every_device(
    app: Any, client: httpx.AsyncClient, sms: Any, heard: list[service.Signal]
) -> None:
    a, b, _ = await people(client, sms)
    cid = await call_up(app, a, b)
    _, sig = await act(app, cid, b, "b1", "reject")
    assert kinds(sig) == [(a, "a1", "call.hangup"), (b, None, "call.hangup")]
    assert sig[0].data["reason"] == "rejected" and sig[1].data["except"] == "b1"
    cid = await call_up(app, a, b)
    with pytest.raises(Problem) as e:  # the caller's other phone cannot speak for the call
        await act(app, cid, a, "a2", "hangup")
    assert e.value.code == "call.other_device"
    _, sig = await act(app, cid, a, "a1", "hangup")
    assert kinds(sig) == [(b, None, "call.hangup")] and sig[0].data["reason"] == "cancelled"


async def test_only_family_can_be_called_and_only_the_two_can_act(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    a, b, c = await people(client, sms)
    for callee in (c, a, "0" * 32):
        with pytest.raises(Problem) as e:
            await call_up(app, a, callee)
        assert (e.value.status, e.value.code) == (404, "call.callee_not_found")
    assert await query(db, "SELECT id FROM calls") == []
    cid = await call_up(app, a, b)
    with pytest.raises(Problem) as e:
        await act(app, cid, c, "c1", "hangup")
    assert (e.value.status, e.value.code) == (404, "call.not_found")
    for bad, code in (({}, "call.sdp_required"), ({"sdp": "x" * 70_000}, "call.sdp_too_large")):
        with pytest.raises(Problem) as e:
            await act(app, cid, b, "b1", "answer", **bad)
        assert e.value.code == code
    with pytest.raises(Problem) as e:
        await act(app, cid, a, "a1", "candidates", candidates=[])
    assert e.value.code == "call.candidates_required"
    [row] = await query(db, "SELECT state FROM calls WHERE id = :c", c=cid)
    assert row["state"] == "ringing"  # nothing a refused step changed
