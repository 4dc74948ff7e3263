"""Setting calls up: the stored state, the steps of :mod:`kares.calls.machine`,
and what each step tells whom.

Every step is one transaction. It locks the call's row (a conditional UPDATE on
the state it read: two devices answering at once, one wins and the other is
told the call was answered elsewhere), stores the new state, and returns the
*signals* to deliver: who hears what, on which device (None: all of that
person's devices). They are delivered after the commit by the transports
registered with :func:`on_signals` (the WebSocket); a signal carries the SDP and
ICE candidates it relays, which are never stored.

A call rings for ``calls_ring_seconds``; a durable job ends it as missed then
(the callee is told in the inbox). Only two people who share a family can call
each other; anyone else gets 404 (the person does not exist for the caller).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, jobs
from kares.calls import machine
from kares.calls.machine import CALLEE, CALLER, CallError
from kares.calls.models import Call
from kares.calls.turn import TurnCredentials, credentials
from kares.errors import Problem
from kares.families import service as families
from kares.identity.models import Account
from kares.notify import service as notify

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.calls")

EXPIRE_JOB = "calls.expire"
SDP_MAX = 64 * 1024  # characters of one offer or answer
CANDIDATES_MAX = 50  # ICE candidates in one step


@dataclass(frozen=True)
class Signal:
    """What one person's devices (or one device) hear of a call."""

    to: str  # account id
    device: str | None  # None: every device of ``to``
    kind: str  # call.invite, call.ringing, call.answer, call.answered_elsewhere, ...
    data: dict[str, Any] = field(default_factory=dict)


Deliver = Callable[[Sequence[Signal]], None]
_deliverers: list[Deliver] = []


def on_signals(fn: Deliver) -> None:
    """A transport (the WebSocket) registers how signals reach devices."""
    if fn not in _deliverers:
        _deliverers.append(fn)


def off_signals(fn: Deliver) -> None:
    if fn in _deliverers:
        _deliverers.remove(fn)


def _deliver(signals: Sequence[Signal]) -> None:
    for fn in list(_deliverers):
        try:
            fn(signals)
        except Exception:  # one broken transport must not stop the others
            log.exception("delivering call signals failed")


def _problem(e: CallError) -> Problem:
    return Problem(e.status, e.code, e.message)


def view(call: Call) -> dict[str, Any]:
    """A call as either side sees it."""
    duration = None
    if call.answered_at is not None and call.ended_at is not None:
        duration = int((call.ended_at - call.answered_at).total_seconds())
    return {
        "id": call.id,
        "caller_id": call.caller_id,
        "callee_id": call.callee_id,
        "state": call.state,
        "end_reason": call.end_reason,
        "created_at": call.created_at.isoformat(),
        "ring_until": call.ring_until.isoformat(),
        "answered_at": call.answered_at.isoformat() if call.answered_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "duration_seconds": duration,
    }


def _check_sdp(sdp: Any) -> str:
    if not isinstance(sdp, str) or not sdp.strip():
        raise Problem(422, "call.sdp_required", "Give the session description (SDP).")
    if len(sdp) > SDP_MAX:
        raise Problem(
            413, "call.sdp_too_large", f"A session description has at most {SDP_MAX} characters."
        )
    return sdp


async def invite(
    s: AsyncSession,
    rt: Runtime,
    *,
    caller_id: str,
    caller_device: str,
    callee_id: str,
    sdp: Any,
) -> tuple[Call, list[Signal]]:
    """Start a call: it rings on every device of the callee until one answers,
    the callee rejects, the caller hangs up, or the ringing time is over."""
    offer = _check_sdp(sdp)
    if callee_id == caller_id or callee_id not in await families.co_members(s, caller_id):
        raise Problem(404, "call.callee_not_found", "There is nobody to call by that id.")
    callee = await s.get(Account, callee_id)
    if callee is None or callee.status not in ("active", "managed"):
        raise Problem(404, "call.callee_not_found", "There is nobody to call by that id.")
    now = clock.utcnow()
    call = Call(
        caller_id=caller_id,
        callee_id=callee_id,
        caller_device_id=caller_device,
        state=machine.RINGING,
        created_at=now,
        ring_until=now + timedelta(seconds=rt.settings.calls_ring_seconds),
    )
    s.add(call)
    await s.flush()
    jobs.enqueue(s, EXPIRE_JOB, {"call_id": call.id}, account_id=caller_id, run_at=call.ring_until)
    caller = await s.get(Account, caller_id)
    signals = [
        Signal(
            callee_id,
            None,
            "call.invite",
            {
                "call": view(call),
                "from": {"id": caller_id, "name": caller.name if caller else None},
                "sdp": offer,
                "lifetime_ms": rt.settings.calls_ring_seconds * 1000,
            },
        )
    ]
    await s.commit()
    _deliver(signals)  # after the commit
    return call, signals


async def act(
    s: AsyncSession,
    *,
    call_id: str,
    account_id: str,
    device: str,
    name: str,
    data: dict[str, Any] | None = None,
) -> tuple[Call, list[Signal]]:
    """One step of a call by one of its sides, from one device; committed, then
    its signals delivered."""
    data = data or {}
    call = await s.get(Call, call_id)
    if call is None or account_id not in (call.caller_id, call.callee_id):
        raise Problem(404, "call.not_found", "There is no such call.")
    side = CALLER if account_id == call.caller_id else CALLEE
    try:
        out = machine.step(
            call.state,
            name,
            side=side,
            device=device,
            caller_device=call.caller_device_id,
            answered_device=call.answered_device_id,
        )
    except CallError as e:
        raise _problem(e) from e
    sdp = _check_sdp(data.get("sdp")) if name in ("answer", "negotiate") else None
    candidates = _check_candidates(data.get("candidates")) if name == "candidates" else None
    signals = await _apply(
        s, call, side, device, name, out, sdp=sdp, candidates=candidates, data=data
    )
    await s.commit()
    _deliver(signals)
    return call, signals


def _check_candidates(found: Any) -> list[Any]:
    if not isinstance(found, list) or not found:
        raise Problem(422, "call.candidates_required", "Give a list of ICE candidates.")
    if len(found) > CANDIDATES_MAX:
        raise Problem(
            413, "call.too_many_candidates", f"At most {CANDIDATES_MAX} candidates at once."
        )
    return found


def _other(call: Call, side: str) -> tuple[str, str | None]:
    """The other side's account and device (None: every device, while ringing)."""
    if side == CALLER:
        return call.callee_id, call.answered_device_id
    return call.caller_id, call.caller_device_id


async def _apply(
    s: AsyncSession,
    call: Call,
    side: str,
    device: str,
    name: str,
    out: machine.Outcome,
    *,
    sdp: str | None,
    candidates: list[Any] | None,
    data: dict[str, Any],
) -> list[Signal]:
    now = clock.utcnow()
    other, other_device = _other(call, side)
    if out.state != call.state:
        values: dict[str, Any] = {"state": out.state}
        if out.state == machine.CONNECTED:
            values.update(answered_at=now, answered_device_id=out.answered_device)
        if out.state == machine.ENDED:
            values.update(ended_at=now, end_reason=out.end_reason)
        # the state it was read in: of two steps at once, the first wins
        res = await s.execute(
            update(Call)
            .where(Call.id == call.id, Call.state == call.state)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            await s.rollback()
            fresh = await s.get(Call, call.id)
            code = (
                "call.ended"
                if fresh is None or fresh.state == machine.ENDED
                else ("call.answered_elsewhere" if side == CALLEE else "call.already_answered")
            )
            raise Problem(409, code, "The call changed meanwhile.")
        await s.refresh(call)
    v = view(call)
    if name == "ringing":
        return [Signal(other, other_device, "call.ringing", {"call": v})]
    if name == "answer":
        return [
            Signal(other, other_device, "call.answer", {"call": v, "sdp": sdp}),
            # the callee's other devices stop ringing
            Signal(call.callee_id, None, "call.answered_elsewhere", {"call": v, "except": device}),
        ]
    if name == "candidates":
        return [
            Signal(other, other_device, "call.candidates", {"call": v, "candidates": candidates})
        ]
    if name == "negotiate":
        kind = data.get("type") if data.get("type") in ("offer", "answer") else "offer"
        return [
            Signal(other, other_device, "call.negotiate", {"call": v, "sdp": sdp, "type": kind})
        ]
    # reject, hangup, fail: the call ended; both sides' devices hear it
    signals = [Signal(other, other_device, "call.hangup", {"call": v, "reason": out.end_reason})]
    if side == CALLEE and call.answered_device_id is None:
        # the callee's other devices stop ringing
        signals.append(
            Signal(
                call.callee_id,
                None,
                "call.hangup",
                {"call": v, "reason": out.end_reason, "except": device},
            )
        )
    return signals


async def expire(s: AsyncSession, call_id: str) -> list[Signal]:
    """The ringing time is over: a call nobody answered ends as missed, and the
    callee is told in the inbox (and so by a push)."""
    call = await s.get(Call, call_id)
    if call is None or call.state != machine.RINGING:
        return []
    if call.ring_until > clock.utcnow():
        raise jobs.Defer(call.ring_until, "still ringing")
    now = clock.utcnow()
    res = await s.execute(
        update(Call)
        .where(Call.id == call.id, Call.state == machine.RINGING)
        .values(state=machine.ENDED, end_reason=machine.MISSED, ended_at=now)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return []
    await s.refresh(call)
    caller = await s.get(Account, call.caller_id)
    who = (caller.name if caller else None) or "A family member"
    await notify.add(
        s,
        account_id=call.callee_id,
        category="messages",
        title=f"Missed call from {who}",
        body=f"{who} called you at {now.strftime('%H:%M')} UTC.",
        data={"call_id": call.id, "account_id": call.caller_id},
    )
    v = view(call)
    signals = [
        Signal(
            call.caller_id,
            call.caller_device_id,
            "call.hangup",
            {"call": v, "reason": machine.MISSED},
        ),
        Signal(call.callee_id, None, "call.hangup", {"call": v, "reason": machine.MISSED}),
    ]
    await s.commit()
    _deliver(signals)
    return signals


@jobs.handler(EXPIRE_JOB)
async def _expire_job(rt: Runtime, job: jobs.JobContext) -> None:
    async with rt.db.sessions() as s:
        await expire(s, str(job.payload.get("call_id", "")))


def turn_for(rt: Runtime, account_id: str) -> TurnCredentials | None:
    """TURN credentials for the account, or None when no TURN server is configured
    (the devices then connect directly, or through STUN)."""
    settings = rt.settings
    if not settings.turn_uris or not settings.turn_secret:
        return None
    return credentials(
        secret=settings.turn_secret,
        uris=list(settings.turn_uris),
        account_id=account_id,
        now=clock.utcnow(),
        ttl=settings.turn_ttl_seconds,
    )
