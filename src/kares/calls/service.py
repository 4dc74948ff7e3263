"""Setting calls up: the stored state, the steps of :mod:`kares.calls.machine`,
and what each step tells whom.

Every step is one transaction. It locks the call's row (a conditional UPDATE on
the state it read: two devices answering at once, one wins and the other is
told the call was answered elsewhere), stores the new state, and returns the
*signals* to deliver: who hears what, on which device (None: all of that
person's devices). They are delivered after the commit by the transports
registered with :func:`on_signals` (the WebSocket); a signal carries the SDP and
ICE candidates it relays, which are never stored (but for the caller's offer,
held while the call rings: see below).

A call rings for ``calls_ring_seconds``; a durable job ends it as missed then.
A callee device that holds no socket is woken by a push (``calls.wake``, one job
per device with a push channel: an APNs VoIP push, an FCM high-priority data
message); when its socket opens it hears of the calls ringing for it, with the
caller's offer, which is held for that only while the call rings. A call the
callee never answered (the ringing time over, or the caller hanging up first)
is a missed call: a system notice in the two people's conversation and a
notification to the callee. Only two people who share a family can call each
other; anyone else gets 404 (the person does not exist for the caller).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, jobs
from kares.calls import machine
from kares.calls.machine import CALLEE, CALLER, CallError
from kares.calls.models import Call
from kares.calls.turn import TurnCredentials, credentials
from kares.errors import Problem
from kares.families import service as families
from kares.gateways.push import CallWake
from kares.identity.models import Account
from kares.messaging import service as messaging
from kares.notify import service as notify
from kares.notify.models import Notification
from kares.privacy import service as privacy
from kares.privacy.catalog import catalog_of

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.calls")

EXPIRE_JOB = "calls.expire"
WAKE_JOB = "calls.wake"  # a push that rings one callee device holding no socket
MISSED_EVENT = "call_missed"  # the system notice of a missed call (kares.messaging)
MISSED_RENDER = "call"  # notify renderer of the missed-call notice
# how a call ended that makes it a missed call for the callee: nobody answered
# before the ringing time was over, or the caller gave up first. A rejected call
# is the callee's own choice and is not "missed"; neither is one that connected.
MISSED_REASONS = (machine.MISSED, machine.CANCELLED)
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
        offer=offer,
    )
    s.add(call)
    await s.flush()
    jobs.enqueue(s, EXPIRE_JOB, {"call_id": call.id}, account_id=caller_id, run_at=call.ring_until)
    # each callee device that can be woken: the job asks then whether it holds a socket
    for row in await notify.list_push(s, account_id=callee_id):
        if notify.wakes(row):
            jobs.enqueue(
                s,
                WAKE_JOB,
                {"call_id": call.id, "device_id": row.device_id},
                account_id=callee_id,
                run_at=now,
            )
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
    # read now: a rollback below expires the object (and an async session cannot
    # load it again implicitly)
    call_id, was = call.id, call.state
    if out.state != was:
        values: dict[str, Any] = {"state": out.state}
        if was == machine.RINGING:
            values["offer"] = None  # held only while it rings
        if out.state == machine.CONNECTED:
            values.update(answered_at=now, answered_device_id=out.answered_device)
        if out.state == machine.ENDED:
            values.update(ended_at=now, end_reason=out.end_reason)
        # the state it was read in: of two steps at once, the first wins
        res = await s.execute(
            update(Call)
            .where(Call.id == call_id, Call.state == was)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            await s.rollback()
            now_state = (
                await s.execute(select(Call.state).where(Call.id == call_id))
            ).scalar_one_or_none()
            code = (
                "call.ended"
                if now_state is None or now_state == machine.ENDED
                else ("call.answered_elsewhere" if side == CALLEE else "call.already_answered")
            )
            raise Problem(409, code, "The call changed meanwhile.")
        await s.refresh(call)
        if call.end_reason in MISSED_REASONS:
            await _missed(s, call)
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
    """The ringing time is over: a call nobody answered ends as missed (a notice
    in the conversation, and the callee's inbox and so a push)."""
    call = await s.get(Call, call_id)
    if call is None or call.state != machine.RINGING:
        return []
    if call.ring_until > clock.utcnow():
        raise jobs.Defer(call.ring_until, "still ringing")
    now = clock.utcnow()
    res = await s.execute(
        update(Call)
        .where(Call.id == call.id, Call.state == machine.RINGING)
        .values(state=machine.ENDED, end_reason=machine.MISSED, ended_at=now, offer=None)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return []
    await s.refresh(call)
    await _missed(s, call)
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


# --- missed calls ------------------------------------------------------------------------------


async def _missed(s: AsyncSession, call: Call) -> None:
    """A call the callee never answered, in the step's transaction: a system notice
    in the two people's conversation (its sender is the caller: who called, and
    nothing else) and a notification to the callee. What is stored in the inbox
    and pushed names nobody; the inbox names the caller when it is read."""
    conv = await messaging.direct_between(s, call.caller_id, call.callee_id)
    await messaging.post_system(
        s, conversation_id=conv.id, about=call.caller_id, event=MISSED_EVENT, family=False
    )
    await notify.add(
        s,
        account_id=call.callee_id,
        category="calls",
        title="Missed call",
        body="A family member called you.",
        # no one's id: the call record says who called, while it is kept
        data={notify.RENDER: MISSED_RENDER, "call_id": call.id, "conversation_id": conv.id},
    )


@notify.renderer(MISSED_RENDER)
async def _shown(s: AsyncSession, note: Notification) -> notify.Shown | None:
    """A missed call as the callee reads it: who called, named now."""
    call = await s.get(Call, note.data.get("call_id"))
    caller = await s.get(Account, call.caller_id) if call is not None else None
    if call is None or caller is None or not caller.name:
        return None
    who = caller.name[:100]
    return notify.Shown(f"Missed call from {who}", f"{who} called you.", dict(note.data))


# --- waking a callee device that holds no socket -----------------------------------------------


@jobs.handler(WAKE_JOB)
async def _wake_job(rt: Runtime, job: jobs.JobContext) -> None:
    """Ring one callee device by a push (payload: call_id, device_id) while the call
    rings and the device holds no socket. Outcomes as a notification's push: sent
    -> done; the token no longer valid -> forgotten, done; 429 / 5xx / unreachable
    -> retried (a retry after the ringing is over finds the call ended and stops)."""
    call_id = str(job.payload.get("call_id", ""))
    device_id = str(job.payload.get("device_id", ""))
    async with rt.db.sessions() as s:
        call = await s.get(Call, call_id)
        if call is None or call.state != machine.RINGING or call.ring_until <= clock.utcnow():
            return
        callee = await s.get(Account, call.callee_id)
        try:  # a callee who may not take calls (no consent, say) is not woken for one
            if callee is None:
                raise Problem(404, "account.gone", "The callee's account is gone.")
            await privacy.check_for_job(s, catalog_of(rt), callee, "calls", "voice")
        except Problem as exc:
            log.info("call %s: device %s not woken: %s", call_id, device_id, exc.code)
            return
        plan = await notify.plan_wake(
            s,
            catalog_of(rt),
            account_id=call.callee_id,
            device_id=device_id,
            until=call.ring_until,
        )
        wake = CallWake(call.id, call.ring_until)
    if isinstance(plan, notify.Decision):
        log.info("call %s: device %s not woken: %s", call_id, device_id, plan.reason)
        return
    provider = rt.push.provider(plan.provider)
    if provider is None:
        log.warning(
            "call %s: device %s not woken: %s unavailable", call_id, device_id, plan.provider
        )
        return
    outcome = await provider.wake(plan.token, wake)
    what = outcome.describe(plan.provider)
    if outcome.kind == "sent":
        log.info("call %s: device %s woken (%s)", call_id, device_id, what)
    elif outcome.kind == "invalid_token":
        forget = notify.forget_voip if plan.voip else notify.forget_token
        async with rt.db.sessions() as s:
            await forget(s, token_id=plan.token_id, token_hash=plan.token_hash)
        log.info(
            "call %s: the token of device %s is no longer valid (%s)", call_id, device_id, what
        )
    elif outcome.kind == "retry":
        raise jobs.Retry(what, after=outcome.retry_after)
    else:
        log.warning("call %s: waking device %s refused: %s", call_id, device_id, what)


async def ringing_for(s: AsyncSession, account_id: str) -> list[dict[str, Any]]:
    """The calls ringing for ``account_id`` now, as the ``call.invite`` a device
    hears when its socket opens (a device woken by a push, or one that was away
    when the call came): the call, the caller and the offer held while it rings."""
    now = clock.utcnow()
    q = (
        select(Call)
        .where(
            Call.callee_id == account_id,
            Call.state == machine.RINGING,
            Call.ring_until > now,
        )
        .order_by(Call.created_at)
    )
    out: list[dict[str, Any]] = []
    for call in (await s.execute(q)).scalars():
        if call.offer is None:
            continue
        caller = await s.get(Account, call.caller_id)
        out.append(
            {
                "call": view(call),
                "from": {"id": call.caller_id, "name": caller.name if caller else None},
                "sdp": call.offer,
                "lifetime_ms": max(0, int((call.ring_until - now).total_seconds() * 1000)),
            }
        )
    return out


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
