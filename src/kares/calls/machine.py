"""The state machine of one call, with no I/O: what may happen in each state,
and what it leads to. The service stores the state and delivers what each step
says to whom; an invalid step is refused with a stable code and changes nothing.

    ringing --answer--> connected --hangup--> ended(hangup)
       |                    |
       |                    +--fail--> ended(failed)
       +--reject (callee)--> ended(rejected)
       +--hangup (caller)--> ended(cancelled)
       +--hangup (callee)--> ended(rejected)
       +--ringing time over--> ended(missed)

Relayed, state unchanged: ``ringing`` (a callee device rings), ``candidates``
(ICE, either side, in ringing or connected) and ``negotiate`` (a new offer or
answer while connected). While ringing, the callee's every device hears the
caller; once one device answers, the callee side is that device alone and the
others are told the call was answered elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

RINGING, CONNECTED, ENDED = "ringing", "connected", "ended"
STATES = (RINGING, CONNECTED, ENDED)
CALLER, CALLEE = "caller", "callee"
# why a call ended
HANGUP, REJECTED, CANCELLED, MISSED, FAILED = "hangup", "rejected", "cancelled", "missed", "failed"
END_REASONS = (HANGUP, REJECTED, CANCELLED, MISSED, FAILED)
STEPS = ("ringing", "answer", "reject", "hangup", "candidates", "negotiate", "expire", "fail")


class CallError(Exception):
    """A step the call's state does not allow: ``code`` is stable (for clients),
    ``status`` the HTTP-like status a transport answers with."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Outcome:
    state: str  # the state after the step
    end_reason: str | None = None  # set when the step ended the call
    # the callee device that now holds the call (set by an answer)
    answered_device: str | None = None


def step(
    state: str,
    name: str,
    *,
    side: str,
    device: str | None = None,
    caller_device: str | None = None,
    answered_device: str | None = None,
) -> Outcome:
    """What ``name``, taken by ``side`` from ``device``, does to a call in ``state``;
    raises :class:`CallError` when it may not."""
    if state not in STATES:
        raise ValueError(state)
    if name not in STEPS:
        raise CallError("call.unknown_step", f"There is no step {name!r}.", 422)
    if state == ENDED:
        raise CallError("call.ended", "The call has ended.")
    if name == "expire":  # the ringing time is over (the server's own step)
        if state != RINGING:
            raise CallError("call.already_answered", "The call was answered.")
        return Outcome(ENDED, MISSED)
    # a device that is not the call's own on its side may not speak for it
    if side == CALLER and caller_device is not None and device != caller_device:
        raise CallError("call.other_device", "The call is held by another of your devices.")
    if side == CALLEE and state == CONNECTED and device != answered_device:
        raise CallError("call.answered_elsewhere", "The call was answered on another device.")
    if name == "ringing":
        if side != CALLEE or state != RINGING:
            raise CallError("call.not_ringing", "Only a ringing callee device can say it rings.")
        return Outcome(state)
    if name == "answer":
        if side != CALLEE:
            raise CallError("call.not_callee", "Only the person called can answer.", 403)
        if state != RINGING:
            raise CallError("call.already_answered", "The call was answered.")
        return Outcome(CONNECTED, answered_device=device)
    if name == "reject":
        if side != CALLEE:
            raise CallError("call.not_callee", "Only the person called can reject.", 403)
        if state != RINGING:
            raise CallError("call.already_answered", "The call was answered; hang up instead.")
        return Outcome(ENDED, REJECTED)
    if name == "hangup":
        if state == RINGING:
            return Outcome(ENDED, CANCELLED if side == CALLER else REJECTED)
        return Outcome(ENDED, HANGUP)
    if name == "fail":  # a side's media could not connect
        return Outcome(ENDED, FAILED)
    if name == "negotiate" and state != CONNECTED:
        raise CallError("call.not_connected", "A call is renegotiated once it is connected.")
    return Outcome(state)  # candidates, negotiate: relayed
