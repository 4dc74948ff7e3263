"""``GET /api/v1/ws``: one WebSocket per device for every real-time event.

The wire format (JSON text frames) is documented in docs/MESSAGING.md, "The
WebSocket" and "Positions and resume". In short:

* Authenticated with the session's bearer token: an ``Authorization: Bearer``
  header, or, for browsers (which cannot set headers on a WebSocket), the
  subprotocols ``kares`` and ``bearer.<token>`` (the server answers ``kares``).
  A refused handshake is an HTTP 401/403 problem document.
* ``?since=<token>`` resumes: the token is every stream source's position
  (``kares.live.streams``); the server sends what was missed, in order, then
  live events. Each event carries the token that follows it.
* Nothing holds a database connection while the socket waits; re-reads take a
  turn through ``hub.reading()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.websockets import WebSocketDisconnect, WebSocketState

from kares import live
from kares.calls import service as calls
from kares.errors import PROBLEM_MEDIA_TYPE, Problem, problem_body
from kares.families import service as families
from kares.families import typing as _family_typing  # noqa: F401 - family conversations
from kares.identity import changes
from kares.identity.auth import Caller, request_caller
from kares.location import stream as _location_stream  # noqa: F401 - registers "l"
from kares.messaging import fanread as _message_reads  # noqa: F401 - registers "m"
from kares.messaging import stream as _message_stream  # noqa: F401 - typing
from kares.notify import stream as _inbox_stream  # noqa: F401 - registers "i"
from kares.privacy.guard import admit
from kares.runtime import Runtime

log = logging.getLogger("kares.ws")

router = APIRouter()

PATH = "/api/v1/ws"
SUBPROTOCOL = "kares"
BEARER_PREFIX = "bearer."
PAGE = 200  # events read at once from a source
CLOSE_SESSION_ENDED = 4401  # the session was revoked or expired
CLOSE_FLOOD = 1008  # policy violation: the socket kept sending over its rate
_CONVERSATION = re.compile(r"^[A-Za-z0-9:_.-]{1,128}$")


@dataclass(frozen=True)
class Resync:
    reason: str


@dataclass(frozen=True)
class Read:
    events: list[live.Event]
    upto: int  # the position the source read up to (at least the last event's)


CALL_STEPS = ("ringing", "answer", "reject", "hangup", "candidates", "negotiate", "fail")
CALL_ABOUT = "call"  # the "about" of call signals: never an account, never filtered out


def _deliver_call_signals(signals: Iterable[calls.Signal]) -> None:
    """Call signals to the sockets of the device they name (or of every device
    of the person), in this process and, through the bridge, in the others."""
    for sig in signals:
        data = {**sig.data, "to_device": sig.device}
        live.hub.tell([sig.to], kind=sig.kind, about=CALL_ABOUT, data=data)


calls.on_signals(_deliver_call_signals)


@router.websocket(PATH)
async def ws_endpoint(websocket: WebSocket) -> None:
    rt: Runtime = websocket.app.state.runtime
    await Socket(rt, websocket).run()


def _bearer_from_subprotocols(ws: WebSocket) -> str | None:
    for p in ws.scope.get("subprotocols", []) or []:
        if isinstance(p, str) and p.startswith(BEARER_PREFIX) and len(p) > len(BEARER_PREFIX):
            return p[len(BEARER_PREFIX) :]
    return None


class Bucket:
    """A token bucket: ``rate`` frames a second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Socket:
    def __init__(self, rt: Runtime, ws: WebSocket) -> None:
        self.rt, self.ws = rt, ws
        self.settings = rt.settings
        self.caller: Caller | None = None
        self.account_id = ""
        self.device_id = ""
        self.pos: dict[str, int] = {}
        self.sub: live.Subscription | None = None
        self.send_lock = asyncio.Lock()
        self.bucket = Bucket(self.settings.ws_frames_per_second, self.settings.ws_frames_burst)
        self.strikes = 0
        self.typing: dict[str, tuple[asyncio.Task[None], frozenset[str]]] = {}
        self.closing: tuple[int, str] | None = None

    # --- the handshake --------------------------------------------------------------

    async def _authenticate(self) -> Caller | Problem:
        ws = self.ws
        headers = dict(ws.headers)
        token = _bearer_from_subprotocols(ws)
        if token is not None and "authorization" not in headers:
            headers["authorization"] = f"Bearer {token}"
        async with live.hub.reading(), self.rt.db.sessions() as s:
            try:
                caller = await request_caller(
                    s, self.rt, headers, ws.cookies, lambda: not _same_origin(ws)
                )
                # the account may use the service at all (active, not a tracker credential)
                await admit(s, self.rt, caller, "account", "profile")
            except Problem as exc:
                return exc
        return caller

    async def _deny(self, exc: Problem) -> None:
        if "websocket.http.response" in self.ws.scope.get("extensions", {}):
            resp = Response(
                problem_body(exc.status, exc.code, exc.detail),
                status_code=exc.status,
                headers=dict(exc.headers or {}),
                media_type=PROBLEM_MEDIA_TYPE,
            )
            await self.ws.send_denial_response(resp)
        else:
            await self.ws.close(code=1008, reason=exc.code)

    async def run(self) -> None:
        got = await self._authenticate()
        if isinstance(got, Problem):
            await self._deny(got)
            return
        self.caller = caller = got
        self.session_check = changes.SessionCheck(caller.session.id)
        self.account_id = caller.account.id
        self.device_id = caller.session.device_id or f"session:{caller.session.id}"
        offered = self.ws.scope.get("subprotocols", []) or []
        await self.ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        async with live.hub.reading(), self.rt.db.sessions() as s:
            watching = await families.co_members(s, self.account_id)
        # subscribed before the first read: a change committed meanwhile is read
        # now or woken for later, never missed (positions keep it from coming twice)
        sub = self.sub = live.hub.subscribe(self.account_id, watching, device_id=self.device_id)
        bridge = live.hub.bridge
        if bridge is not None:
            bridge.arrive(self.account_id, self.device_id)
        frames: asyncio.Task[None] | None = None
        try:
            await self._start(self.ws.query_params.get("since"))
            frames = asyncio.create_task(self._frames())
            await self._follow(sub)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client left
        finally:
            sub.close()
            if frames is not None:
                frames.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await frames
            live.hub.unsubscribe(sub)
            if bridge is not None:
                bridge.leave(self.account_id, self.device_id)
            self._stop_typing_all()
            if self.ws.application_state != WebSocketState.DISCONNECTED:
                code, reason = self.closing or (1000, "")
                with contextlib.suppress(Exception):
                    await self.ws.close(code=code, reason=reason)

    # --- sending -----------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        async with self.send_lock:
            await self.ws.send_text(text)

    def token(self) -> str:
        return live.encode_token(self.pos)

    async def _send_events(self, src: live.Source, got: Read) -> None:
        for ev in got.events:
            self.pos[src.key] = ev.position
            await self.send(
                {
                    "type": ev.type,
                    "source": src.name,
                    "position": ev.position,
                    "token": self.token(),
                    "data": dict(ev.data),
                }
            )
        # past what this viewer may not see: the next frame's token skips it
        self.pos[src.key] = max(self.pos.get(src.key, 0), got.upto)

    async def _resync(self, src: live.Source, head: int, reason: str) -> None:
        self.pos[src.key] = head
        await self.send(
            {
                "type": "resync",
                "source": src.name,
                "reason": reason,
                "history": src.history,
                "token": self.token(),
            }
        )

    # --- reading the sources -------------------------------------------------------

    async def _viewer(self, s: AsyncSession, src: live.Source, want: int = 0) -> live.Viewer | None:
        """The viewer as this source's function admits it now; None when it does not."""
        degraded: dict[str, str] = {}
        if src.function is not None:
            assert self.caller is not None
            try:
                allowed = await admit(s, self.rt, self.caller, *src.function)
            except Problem:
                return None
            degraded = dict(allowed.degraded)
        return live.Viewer(self.account_id, self.device_id, degraded, self.rt, want)

    async def _read(
        self, s: AsyncSession, src: live.Source, viewer: live.Viewer, after: int
    ) -> Read | Resync:
        """Everything after ``after``, in order, and the position read up to (a
        source may read past events this viewer may not see); or a resync when
        that is more than the resume limit (or older than the source keeps)."""
        limit = self.settings.ws_resume_limit
        out: list[live.Event] = []
        last = cursor = after
        while True:
            want = min(PAGE, limit + 1 - len(out))
            try:
                items, upto = await src.since(s, viewer, cursor, want)
            except live.Expired:
                return Resync("expired")
            for ev in (live.as_event(src, i) for i in items):
                if ev.position > last:  # strictly increasing, whatever a source returns
                    out.append(ev)
                    last = ev.position
            if len(out) > limit:
                return Resync("too_far_behind")
            # until a read moves no further: a short page is no sign of the end
            # when the source keeps only the viewer's rows of a page it read
            moved = max(int(upto), last)
            if moved <= cursor:
                return Read(out, cursor)
            cursor = moved

    async def _start(self, token: str | None) -> None:
        wanted = live.decode_token(token) if token else {}
        bad_token = token is not None and wanted is None
        pending: list[tuple[live.Source, Read | Resync, int]] = []
        async with live.hub.reading(), self.rt.db.sessions() as s:
            for src in live.streams.all():
                viewer = await self._viewer(s, src)
                head = await src.head(s, viewer or live.Viewer(self.account_id, self.device_id))
                after = (wanted or {}).get(src.key)
                if after is None:
                    self.pos[src.key] = head
                    if bad_token:
                        pending.append((src, Resync("token_invalid"), head))
                elif after > head:
                    self.pos[src.key] = head
                    pending.append((src, Resync("unknown_position"), head))
                elif viewer is None:
                    self.pos[src.key] = after  # its events wait for the function to be allowed
                else:
                    self.pos[src.key] = after
                    pending.append((src, await self._read(s, src, viewer, after), head))
            # calls ringing for this person now: a device woken by a push (or away
            # when the call came) hears of them as the others did
            ringing = await calls.ringing_for(s, self.account_id)
        await self.send(
            {
                "type": "hello",
                "account_id": self.account_id,
                "device_id": self.device_id,
                "sources": [src.name for src in live.streams.all()],
                "resumed": bool(wanted),
                "token": self.token(),
            }
        )
        for src, got, head in pending:
            if isinstance(got, Resync):
                await self._resync(src, head, got.reason)
            else:
                await self._send_events(src, got)
        await self.send({"type": "caught_up", "token": self.token()})
        for invite in ringing:
            await self.send({"type": "call.invite", **invite})

    async def _catch_up(
        self, sources: Iterable[live.Source], refamily: bool, want: dict[str, int] | None = None
    ) -> bool:
        """Read what moved in ``sources`` (re-checking the session first) and send
        it; False when the socket must close."""
        assert self.caller is not None and self.sub is not None
        results: list[tuple[live.Source, Read | Resync, int]] = []
        async with live.hub.reading(woken=True):
            if self.sub.closed:
                return False
            async with self.rt.db.sessions() as s:
                if self.session_check.due() and not await self.session_check.run(s):
                    self.closing = (CLOSE_SESSION_ENDED, "auth.invalid_token")
                    ended = {"code": "auth.invalid_token", "detail": "This session has ended."}
                    await self._error_unlocked(ended)
                    return False
                if refamily:
                    live.hub.watch(self.sub, await families.co_members(s, self.account_id))
                for src in sources:
                    viewer = await self._viewer(s, src, (want or {}).get(src.key, 0))
                    if viewer is None:
                        continue
                    got = await self._read(s, src, viewer, self.pos.get(src.key, 0))
                    head = await src.head(s, viewer) if isinstance(got, Resync) else 0
                    results.append((src, got, head))
        # sent with the session closed: a slow client holds no connection
        if refamily:
            await self.send({"type": "family", "token": self.token()})
        for src, got, head in results:
            if isinstance(got, Resync):
                await self._resync(src, head, got.reason)
            else:
                await self._send_events(src, got)
        return True

    async def _error_unlocked(self, body: dict[str, str]) -> None:
        with contextlib.suppress(Exception):
            await self.send({"type": "error", **body})

    async def _follow(self, sub: live.Subscription) -> None:
        while not sub.closed:
            notice = await sub.queue.get()
            if sub.closed:
                return
            notices = [notice]
            while not sub.queue.empty():
                notices.append(sub.queue.get_nowait())
            lagged, sub.lagged = sub.lagged, False
            refamily = False
            kinds: set[str] = set()
            want: dict[str, int] = {}  # the highest position named, by source
            for n in notices:
                if n.data is not None:  # ephemeral: typing, call signals
                    if n.kind.startswith("call."):
                        await self._call_signal(n)
                    elif n.about != self.account_id:
                        await self.send({"type": n.kind, **n.data})
                    continue
                if n.kind == "family":
                    refamily = True
                elif n.kind == live.TICK:
                    kinds.add(live.TICK)
                else:
                    mine = n.about == self.account_id
                    for src in live.streams.all():
                        if n.kind in src.kinds and (mine or not src.own_only):
                            if n.seq > self.pos.get(src.key, 0) or n.seq == 0:
                                kinds.add(src.key)
                                want[src.key] = max(want.get(src.key, 0), n.seq)
            if lagged or refamily or live.TICK in kinds:
                todo = live.streams.all()
                want = {}  # catching up: as far as there is
            else:
                todo = [src for src in live.streams.all() if src.key in kinds]
            if (todo or refamily) and not await self._catch_up(todo, refamily, want):
                return

    # --- frames from the client ---------------------------------------------------

    async def _frames(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if not self.bucket.take():
                    self.strikes += 1
                    if self.strikes > self.settings.ws_frames_burst:
                        self.closing = (CLOSE_FLOOD, "ws.rate_limited")
                        await self._error("ws.rate_limited", "Too many frames: closing.")
                        break
                    if self.strikes == 1 or self.strikes % 10 == 0:
                        await self._error(
                            "ws.rate_limited",
                            f"At most {self.settings.ws_frames_per_second:g} frames a second; "
                            "this one was dropped.",
                        )
                    continue
                self.strikes = 0
                await self._frame(msg)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass
        finally:
            assert self.sub is not None
            self.sub.close()

    async def _error(self, code: str, detail: str, **extra: Any) -> None:
        await self.send({"type": "error", "code": code, "detail": detail, **extra})

    async def _frame(self, msg: MutableMapping[str, Any]) -> None:
        text = msg.get("text")
        limit = self.settings.ws_frame_max_bytes
        if text is None:
            size = len(msg.get("bytes") or b"")
            if size > limit:
                await self._error("ws.too_large", f"Frames are at most {limit} bytes.")
            else:
                await self._error("ws.not_json", "Frames are JSON text, not binary.")
            return
        if len(text) > limit or len(text.encode("utf-8")) > limit:
            await self._error("ws.too_large", f"Frames are at most {limit} bytes.")
            return
        try:
            frame = json.loads(text)
        except ValueError:
            await self._error("ws.not_json", "This frame is not JSON.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._error("ws.bad_frame", 'A frame is a JSON object with a "type".')
            return
        ref = frame.get("id") if isinstance(frame.get("id"), str | int) else None
        kind = frame["type"]
        if kind == "ping":
            await self.send({"type": "pong", **({"id": ref} if ref is not None else {})})
        elif kind == "typing":
            await self._typing(frame, ref)
        elif kind.startswith("call."):
            await self._call(frame, kind[5:], ref)
        else:
            await self._error("ws.unknown_type", f"Unknown frame type {kind[:40]!r}.", **_ref(ref))

    # --- calls (docs/CALLS.md) ---------------------------------------------------------

    async def _call_signal(self, n: live.Notice) -> None:
        """A call signal for this person: sent when it names this device, or every
        device but the one it excepts."""
        data = dict(n.data or {})
        to = data.pop("to_device", None)
        if to is not None and to != self.device_id:
            return
        if data.get("except") is not None and data["except"] == self.device_id:
            return
        data.pop("except", None)
        await self.send({"type": n.kind, **data})

    async def _call(self, frame: dict[str, Any], step: str, ref: str | int | None) -> None:
        """``call.invite`` ({"callee", "sdp"}) starts a call; ``call.<step>``
        ({"call", ...}) takes a step of one. The acting device is answered
        ``call.ok`` with the call, or an ``error`` with the call's code."""
        assert self.caller is not None
        try:
            async with live.hub.reading(), self.rt.db.sessions() as s:
                # the calls function: its own consent, the microphone and
                # phone-call permissions of this device (policy 1.6.1)
                await admit(s, self.rt, self.caller, "calls", "voice")
                if step == "invite":
                    callee = frame.get("callee")
                    if not isinstance(callee, str) or not _CONVERSATION.match(callee):
                        raise Problem(422, "call.callee_required", "Say whom to call (callee).")
                    call, _ = await calls.invite(
                        s,
                        self.rt,
                        caller_id=self.account_id,
                        caller_device=self.device_id,
                        callee_id=callee,
                        sdp=frame.get("sdp"),
                    )
                elif step in CALL_STEPS:
                    cid = frame.get("call")
                    if not isinstance(cid, str) or not _CONVERSATION.match(cid):
                        raise Problem(422, "call.id_required", "Say which call (call).")
                    data: dict[str, Any] = {
                        k: frame[k] for k in ("sdp", "candidates", "type") if k in frame
                    }
                    call, _ = await calls.act(
                        s,
                        call_id=cid,
                        account_id=self.account_id,
                        device=self.device_id,
                        name=step,
                        data=data,
                    )
                else:
                    raise Problem(422, "call.unknown_step", f"There is no call step {step[:40]!r}.")
        except Problem as exc:
            await self._error(exc.code, exc.detail, **_ref(ref))
            return
        await self.send({"type": "call.ok", "call": calls.view(call), **_ref(ref)})

    # --- typing ------------------------------------------------------------------------

    async def _typing(self, frame: dict[str, Any], ref: str | int | None) -> None:
        conv, typing = frame.get("conversation"), frame.get("typing")
        if (
            not isinstance(conv, str)
            or not _CONVERSATION.match(conv)
            or not isinstance(typing, bool)
        ):
            await self._error(
                "ws.bad_frame",
                'A typing frame is {"type":"typing","conversation":"<id>","typing":true|false}.',
                **_ref(ref),
            )
            return
        async with live.hub.reading(), self.rt.db.sessions() as s:
            audience = await live.typing.audience(s, self.account_id, conv)
        if audience is None or self.account_id not in audience:
            await self._error(
                "conversation.not_found", "No such conversation of yours.", **_ref(ref)
            )
            return
        others = frozenset(audience - {self.account_id})
        old = self.typing.pop(conv, None)
        if old is not None:
            old[0].cancel()
        self._tell_typing(conv, others, typing)
        if typing:
            expiry = asyncio.create_task(self._expire(conv, others))
            self.typing[conv] = (expiry, others)

    def _tell_typing(self, conv: str, audience: Iterable[str], typing: bool) -> None:
        seconds = self.settings.ws_typing_seconds
        data: dict[str, Any] = {
            "conversation": conv,
            "account_id": self.account_id,
            "typing": typing,
        }
        if typing:
            data["expires_in_ms"] = int(seconds * 1000)
        live.hub.tell(audience, kind="typing", about=self.account_id, data=data)

    async def _expire(self, conv: str, audience: frozenset[str]) -> None:
        await asyncio.sleep(self.settings.ws_typing_seconds)
        if self.typing.get(conv, (None,))[0] is asyncio.current_task():
            del self.typing[conv]
            self._tell_typing(conv, audience, False)

    def _stop_typing_all(self) -> None:
        for conv, (task, audience) in list(self.typing.items()):
            task.cancel()
            self._tell_typing(conv, audience, False)
        self.typing.clear()


def _ref(ref: str | int | None) -> dict[str, Any]:
    return {"id": ref} if ref is not None else {}


def _same_origin(ws: WebSocket) -> bool:
    from urllib.parse import urlsplit

    origin = ws.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == ws.headers.get("host")
