"""The TCP listener for the kids'-watch text protocol (``kares serve --watch-port``).

Each connection feeds its bytes to a :class:`FrameReader`; every frame is
handled, *then* answered, so a reply the watch treats as an acknowledgement
(``AL`` for an alarm) is sent only once what it acknowledges is stored and
the guardians are being told. A watch is recognised by the id in its frames:
it must have introduced itself with that id (``POST /api/v1/watches/hello``,
the id as its IMEI, the answer's pairing code printed on its box) and be
paired with a family's dependant. Everything it reports then goes through
the same guard as an HTTP request of that watch: the dependant's account
state and consents, the watch's reported permissions, precise -> approximate.

An unknown or unpaired watch gets its ``LK`` answered (so it stays connected
until it is paired) and nothing it sends is stored; its alarms are *not*
answered, so the watch keeps trying (and falls back to calling its SOS
numbers) instead of believing someone was told.

Health readings (heart rate, blood pressure, SpO2, temperature, and the step
count of each keep-alive) are stored
through the health domain (``kares.health.service.ingest``) as the wearer's
samples, under the guard's ``health`` function (the wearer's separate consents);
refused or out of bounds, they are answered and not kept.

Chat (docs/MESSAGING.md, "Chat with a watch"): a voice note the watch records
(``TK``, or ``JXTK`` in parts) becomes a voice message from the wearer in the
family's conversation, under the guard's ``messaging/voice`` (the wearer's
consents, the watch's Microphone permission; for a child under 14 the
Microphone permission a guardian granted). Once the watch is attributed, a
:class:`ChatLink` sends it what the family writes to the wearer, one message at
a time: the next only after the watch acknowledged the last (``TK,1``,
``MESSAGE``), and what it acknowledged is never sent again. While another
connection speaks for the same id nothing is sent (either could be a copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, events, live
from kares.devices import service as devices
from kares.errors import Problem
from kares.families import service as families
from kares.geo.resolver import resolver_for
from kares.health import service as health
from kares.identity.auth import Caller, caller_for_session
from kares.identity.models import Account
from kares.location import service
from kares.messaging import watchchat
from kares.notify import service as notify
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, admit
from kares.privacy.service import is_minor
from kares.protocols.watch import frames as wp
from kares.runtime import Runtime
from kares.schedule import reminders
from kares.sos import service as sos
from kares.watches import service as watches
from kares.watches.models import Watch

log = logging.getLogger("kares.watch")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# a position sent while another connection spoke for the same watch id
CONTESTED = "fix.contested"
READ_CHUNK = 4096
TOLD_MAX = 10_000
# frames after which the chat link is looked for again (a watch paired since) or
# woken: the keep-alive, and the watch asking for voice messages it is owed
WAKES = frozenset({"LK", "TKQ", "TKQ2"})
# alarms that are emergencies: every guardian is told at once, until one answers
SOS_ALARMS = {"sos": "SOS from the watch", "fall": "The watch detected a fall"}
NOTICE_ALARMS = {
    "removed": ("location", "took off the watch"),
    "low_battery": ("system", "'s watch battery is low"),
}


@dataclass
class Wearer:
    watch: Watch
    caller: Caller  # the wearer, on the watch's own session

    @property
    def account(self) -> Account:
        return self.caller.account


# what each reading of a health frame is in the health domain: (metric, unit)
_HEALTH_VALUES = {
    "heart_rate": ("heart_rate", "/min"),
    "spo2": ("spo2", "%"),
    "temperature_c": ("body_temperature", "Cel"),
}


def health_samples(frame: wp.Frame, msg: wp.Health, now: datetime) -> list[health.SampleIn]:
    """The health domain's samples in a health frame. The frames carry no time
    of their own: the reading is taken as of its arrival, and its record id is
    the frame's content and the minute it arrived, so a frame the watch sends
    again (its answer lost) within the minute is stored once."""
    at = msg.time or now
    digest = hashlib.sha256(frame.content).hexdigest()[:16]
    rid = f"{frame.command.lower()}:{digest}:{int(at.timestamp()) // 60}"
    source = f"watch {frame.device_id}"
    v = msg.values
    out: list[health.SampleIn] = []
    if "systolic" in v and "diastolic" in v:
        out.append(
            health.SampleIn(
                metric="blood_pressure",
                start=at,
                values={"systolic": v["systolic"], "diastolic": v["diastolic"]},
                unit="mm[Hg]",
                source=source,
                record_id=f"{rid}:bp",
            )
        )
    for key, (metric, unit) in _HEALTH_VALUES.items():
        if key in v:
            out.append(
                health.SampleIn(
                    metric=metric,
                    start=at,
                    value=v[key],
                    unit=unit,
                    source=source,
                    record_id=f"{rid}:{metric}",
                )
            )
    return out


def alarm_samples(frame: wp.Frame, pos: wp.Position) -> list[health.SampleIn]:
    """The health samples an alarm frame makes: a fall at the alarm's time, and
    the watch taken off the wrist as a ``wrist_off`` interval starting (and, as
    far as the watch says, ending) then; the health domain takes the watch as
    still off until it next measures a heart rate (docs/HEALTH.md, "Alerts").
    Their record ids are the alarm's time: a resent alarm is stored once."""
    source = f"watch {frame.device_id}"
    at = pos.time
    stamp = int(at.timestamp() * 1000)
    out: list[health.SampleIn] = []
    if "fall" in pos.alarms:
        out.append(
            health.SampleIn(metric="fall", start=at, source=source, record_id=f"al:{stamp}:fall")
        )
    if "removed" in pos.alarms:
        out.append(
            health.SampleIn(
                metric="wrist_off",
                start=at,
                end=at,
                source=source,
                record_id=f"al:{stamp}:wrist_off",
            )
        )
    return out


async def wearer(s: AsyncSession, device_id: str) -> Wearer | None:
    """The paired watch with this protocol id and its live credential, or None."""
    w = await watches.watch_by_imei(s, device_id)
    if w is None or w.status != "paired" or w.account_id is None or w.session_id is None:
        return None
    caller = await caller_for_session(s, w.session_id)
    if caller is None or caller.account.id != w.account_id:
        return None
    return Wearer(w, caller)


async def _battery(s: AsyncSession, who: Wearer, battery: int | None) -> None:
    """A battery level the watch reported lands on its device (written with the
    frame's other changes)."""
    device_id = who.caller.session.device_id
    if battery is not None and device_id is not None:
        await devices.note_battery(s, device_id, battery)


def _address(writer: asyncio.StreamWriter) -> IPAddress | None:
    """The peer's address (an IPv4 address mapped into IPv6 as IPv4)."""
    peer = writer.get_extra_info("peername")
    try:
        ip = ipaddress.ip_address(peer[0] if isinstance(peer, tuple) else peer)
    except (TypeError, ValueError, IndexError):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Connection:
    """One watch's TCP connection: its writer (replies and chat frames are
    written whole, one at a time), its chat link once the watch is known, and
    the parts of a voice note that is still arriving (``JXTK``)."""

    def __init__(self, writer: asyncio.StreamWriter, idle: float) -> None:
        self.writer = writer
        self.idle = idle
        self.lock = asyncio.Lock()
        self.link: ChatLink | None = None
        self.tried = False  # whether the chat link was looked for yet
        self._parts: list[bytes] = []
        self._name = ""

    async def write(self, data: bytes) -> None:
        async with self.lock:
            self.writer.write(data)
            # a watch that never reads must not hold the task forever
            await asyncio.wait_for(self.writer.drain(), timeout=self.idle)

    def gather(self, part: wp.VoicePart, max_bytes: int) -> bytes | None:
        """Add one part of a voice note: the whole note once its last part is
        here, else None. A part out of order, another note's, or a note over
        ``max_bytes`` raises ValueError (and what was held is dropped); the
        same part again (our answer was lost) replaces itself."""
        if part.part == 1:
            self._parts, self._name = [], part.name
        elif part.name != self._name or part.part not in (len(self._parts), len(self._parts) + 1):
            self._parts, self._name = [], ""
            raise ValueError("a voice part out of order")
        if part.part == len(self._parts):
            self._parts.pop()
        self._parts.append(part.audio)
        if sum(len(p) for p in self._parts) > max_bytes:
            self._parts, self._name = [], ""
            raise ValueError("a voice note over the size limit")
        if part.part < part.parts:
            return None
        audio = b"".join(self._parts)
        self._parts, self._name = [], ""
        return audio


class ChatLink:
    """The chat going down one connection to a paired watch: what the family
    writes to its wearer, in order, one frame in flight at a time. Woken by the
    hub (a message from anyone the wearer shares a family with), by the watch's
    acknowledgements and keep-alives; it re-reads from the database what the
    watch is owed, so a lost wake-up loses nothing."""

    def __init__(self, server: WatchServer, conn: Connection, frame: wp.Frame, who: Wearer) -> None:
        self.server = server
        self.conn = conn
        self.vendor = frame.vendor
        self.device_id = frame.device_id
        self.watch_id = who.watch.id
        self.account_id = who.account.id
        self.sub = live.hub.subscribe(self.account_id)
        # (a chat position or a reminder's recipient id, the acknowledgement it
        # waits for) of the frame in flight
        self.outstanding: tuple[int | str, str] | None = None
        self.sent = 0
        self.task = asyncio.create_task(self._run())
        self.poke()

    def serves(self, who: Wearer) -> bool:
        """Whether this link is for the watch's pairing now."""
        return who.watch.id == self.watch_id and who.account.id == self.account_id

    def poke(self) -> None:
        """Look for what the watch is owed (after a keep-alive, an acknowledgement)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.sub.queue.put_nowait(live.Notice(0, live.TICK, self.account_id))

    async def close(self) -> None:
        self.sub.close()
        live.hub.unsubscribe(self.sub)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

    async def _run(self) -> None:
        while True:
            await self.sub.queue.get()
            if self.sub.closed:
                return
            self.sub.lagged = False
            try:
                await self._send_next()
            except (ConnectionError, TimeoutError):
                return
            except Exception:
                log.exception("watch chat delivery failed")

    async def _send_next(self) -> None:
        if self.outstanding is not None or self.server.connections_of(self.device_id) > 1:
            return
        rt = self.server.rt
        async with live.hub.reading(), rt.db.sessions() as s:
            who = await wearer(s, self.device_id)
            if who is None or not self.serves(who) or who.watch.family_id is None:
                return  # unpaired, or paired anew: the next keep-alive makes a new link
            live.hub.watch(self.sub, await families.co_members(s, self.account_id))
            assert who.watch.paired_at is not None
            due = await self._reminder(s, who)
            if due is not None:
                data = wp.text_frame(self.vendor, self.device_id, due.text)
                self.outstanding = (due.recipient_id, "MESSAGE")
                self.sent += 1
                await self.conn.write(data)
                return
            try:
                await admit(s, rt, who.caller, "messaging", "chat")
            except Problem as exc:
                log.info("watch chat not delivered: %s", exc.code)
                return
            out = await watchchat.next_for_watch(
                s,
                watch_id=self.watch_id,
                dependant_id=self.account_id,
                family_id=who.watch.family_id,
                paired_at=who.watch.paired_at,
            )
        if out is None:
            return
        if out.kind == "voice":
            assert out.audio is not None
            data, ack = wp.voice_frame(self.vendor, self.device_id, out.audio), "TK"
        else:
            data, ack = wp.text_frame(self.vendor, self.device_id, out.text or ""), "MESSAGE"
        self.outstanding = (out.position, ack)
        self.sent += 1
        await self.conn.write(data)

    async def _reminder(self, s: AsyncSession, who: Wearer) -> reminders.WatchReminder | None:
        """A reminder the wearer's watch still owes (docs/SCHEDULE_REMINDERS.md):
        sent before chat, as a ``MESSAGE`` text."""
        assert who.watch.paired_at is not None
        try:
            await admit(s, self.server.rt, who.caller, "schedule", "events")
        except Problem as exc:
            log.info("watch reminder not delivered: %s", exc.code)
            return None
        return await reminders.next_for_watch(
            s, account_id=self.account_id, paired_at=who.watch.paired_at
        )

    async def acked(self, s: AsyncSession, command: str, ok: bool) -> None:
        """The watch answered the frame in flight: received (it is never sent
        again) or failed (sent again after its next keep-alive)."""
        if self.outstanding is None or self.outstanding[1] != command:
            return
        key = self.outstanding[0]
        if ok:
            if isinstance(key, str):
                await reminders.watch_took(s, recipient_id=key)
            else:
                await watchchat.acknowledged(
                    s, watch_id=self.watch_id, dependant_id=self.account_id, position=key
                )
            self.outstanding = None
            self.poke()
        else:
            self.outstanding = None


class WatchServer:
    """The listener. What holds a connection at the edge, in this process:

    - ``KARES_WATCH_ALLOW``: when set, only peers in those networks are served;
      anyone else is closed at once, before a byte is read.
    - At most ``watch_max_per_peer`` open connections per peer address; more
      are closed at once.
    - A connection speaks for the watch id of its first frame, and only for it
      (a frame for another id is ignored). At most ``watch_max_per_id``
      connections speak for one id at once; one more is closed at its first
      frame. While more than one does, the positions of every one of them are
      stored flagged ``fix.contested`` (kept, never on the family map or the
      timeline): the listener cannot tell the watch from whoever copies its
      id, so neither is believed until one of them is gone. Alarms are still
      raised (an emergency is never dropped; one live SOS per watch bounds
      what a copy can do).
    - A connection silent for ``watch_idle_seconds`` (120) is closed.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[None]] = set()
        self.frames = 0
        self.errors = 0
        self.refused = 0  # connections closed by the allow-list or a limit
        # notices already sent per alarm key: a resent alarm tells nobody twice
        # (SOS alerts are deduplicated in the database, by the same key)
        self._told: dict[tuple[str, str], None] = {}
        self._allow = [ipaddress.ip_network(c, strict=False) for c in rt.settings.watch_allow]
        self._per_peer: dict[IPAddress | None, int] = {}
        self._per_id: dict[str, set[int]] = {}
        self._next_conn = 0
        self._states: dict[int, Connection] = {}

    def connections_of(self, device_id: str) -> int:
        """How many open connections speak for this watch id now."""
        return len(self._per_id.get(device_id, ()))

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, limit=wp.MAX_FRAME)
        sock = self.server.sockets[0]
        bound = int(sock.getsockname()[1])
        log.info("watch protocol listening on %s:%s", host, bound)
        return bound

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for t in list(self.connections):
                t.cancel()
            await asyncio.gather(*self.connections, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    def _admit(self, ip: IPAddress | None) -> bool:
        """Whether a new connection from ``ip`` may be served (and counted)."""
        settings = self.rt.settings
        if self._allow and (ip is None or not any(ip in net for net in self._allow)):
            log.info("watch connection from %s refused: not in KARES_WATCH_ALLOW", ip)
            return False
        if self._per_peer.get(ip, 0) >= settings.watch_max_per_peer:
            log.info("watch connection from %s refused: %s open already", ip, self._per_peer[ip])
            return False
        self._per_peer[ip] = self._per_peer.get(ip, 0) + 1
        return True

    def _release(self, ip: IPAddress | None, conn: int, device_id: str | None) -> None:
        n = self._per_peer.get(ip, 0) - 1
        if n > 0:
            self._per_peer[ip] = n
        else:
            self._per_peer.pop(ip, None)
        self._states.pop(conn, None)
        if device_id is not None:
            holders = self._per_id.get(device_id)
            if holders is not None:
                holders.discard(conn)
                if not holders:
                    del self._per_id[device_id]
                for other in holders:
                    # the one left may be owed what a contested id held back
                    state = self._states.get(other)
                    if state is not None and state.link is not None:
                        state.link.poke()

    def _claim(self, conn: int, device_id: str) -> bool:
        """The connection speaks for ``device_id`` from now on, if the limit allows."""
        holders = self._per_id.setdefault(device_id, set())
        if len(holders) >= self.rt.settings.watch_max_per_id:
            log.info("watch connection closed: %s connections speak for its id", len(holders))
            return False
        holders.add(conn)
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = _address(writer)
        if not self._admit(ip):
            self.refused += 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        self._next_conn += 1
        conn = self._next_conn
        device_id: str | None = None
        frames = wp.FrameReader()
        idle = self.rt.settings.watch_idle_seconds
        state = self._states[conn] = Connection(writer, idle)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), timeout=idle)
                except TimeoutError:
                    break
                if not data:
                    break
                for frame in frames.feed(data):
                    self.frames += 1
                    if device_id is None:
                        if not self._claim(conn, frame.device_id):
                            self.refused += 1
                            return
                        device_id = frame.device_id
                    elif frame.device_id != device_id:
                        self.errors += 1
                        log.info("watch frame for another id than its connection's ignored")
                        continue
                    reply = await self.handle(
                        frame, contested=self.connections_of(device_id) > 1, conn=state
                    )
                    if reply is not None:
                        await state.write(reply)
                    if frame.command.upper() in WAKES or not state.tried:
                        await self._attach(state, frame)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            if state.link is not None:
                await state.link.close()
            self._release(ip, conn, device_id)
            if task is not None:
                self.connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _attach(self, state: Connection, frame: wp.Frame) -> None:
        """Start the chat link of a connection once its watch is paired (looked
        for at the first frame and at each of :data:`WAKES`); wake it on those
        (what the watch is owed may have changed while nothing woke it)."""
        state.tried = True
        async with self.rt.db.sessions() as s:
            who = await wearer(s, frame.device_id)
        link = state.link
        if link is not None and who is not None and link.serves(who) and not link.task.done():
            link.poke()
            return
        if link is not None:  # unpaired, paired anew meanwhile, or its writes timed out
            state.link = None
            await link.close()
        if who is not None:
            state.link = ChatLink(self, state, frame, who)

    async def handle(
        self, frame: wp.Frame, *, contested: bool = False, conn: Connection | None = None
    ) -> bytes | None:
        """Handle one frame; return the bytes to answer (None: no answer).
        ``contested``: another connection speaks for the same id right now;
        ``conn``: the connection it came on (its chat link and voice parts)."""
        try:
            msg: wp.Message | None = wp.parse(frame)
        except wp.FrameError as exc:
            self.errors += 1
            log.info("watch frame refused (%s): %s", exc.code, frame.command)
            msg = None
        try:
            async with self.rt.db.sessions() as s:
                who = await wearer(s, frame.device_id)
                if who is None:
                    # only a keep-alive is answered for a watch we cannot attribute
                    return wp.reply_for(frame, msg) if frame.command.upper() == "LK" else None
                handled = await self._process(s, who, frame, msg, contested, conn)
        except Exception:
            self.errors += 1
            log.exception("watch frame %s failed", frame.command)
            return None
        if isinstance(handled, bytes):
            return handled
        return wp.reply_for(frame, msg) if handled else None

    async def _allowed(self, s: AsyncSession, who: Wearer, feature: str) -> Allowed | None:
        try:
            return await admit(s, self.rt, who.caller, "driving_tracks", feature)
        except Problem as exc:
            log.info("watch report not kept: %s", exc.code)
            return None

    async def _process(
        self,
        s: AsyncSession,
        who: Wearer,
        frame: wp.Frame,
        msg: wp.Message | None,
        contested: bool,
        conn: Connection | None = None,
    ) -> bool | bytes:
        """Store what the frame says; True when it may be acknowledged (the
        bytes of the answer when it is not the command's usual one)."""
        now = clock.utcnow()
        who.watch.last_seen_at = now
        if isinstance(msg, wp.KeepAlive):
            await _battery(s, who, msg.battery)
            if msg.steps is not None:
                await self._steps(s, who, frame, msg.steps, now)
            await s.commit()
            return True
        if isinstance(msg, wp.Health):
            # answered whatever becomes of it, so the watch stops resending
            await self._health(s, who, frame, msg, now)
            await s.commit()
            return True
        if isinstance(msg, wp.Position):
            return await self._position(s, who, frame, msg, contested)
        ack = wp.ack_of(frame)
        if ack is not None:
            await s.commit()
            if conn is not None and conn.link is not None:
                await conn.link.acked(s, *ack)
            return False  # an acknowledgement is not answered
        part = wp.voice_of(frame, msg)
        if part is not None:
            return await self._voice(s, who, frame, part, conn)
        await s.commit()
        return msg is not None or frame.command.upper() == "LK"

    async def _health(
        self, s: AsyncSession, who: Wearer, frame: wp.Frame, msg: wp.Health, now: datetime
    ) -> None:
        samples = health_samples(frame, msg, now)
        if not samples:
            return
        try:
            await admit(s, self.rt, who.caller, "health", "readings")
        except Problem as exc:
            log.info("watch health reading not kept: %s", exc.code)
            return
        out = await health.ingest(s, account_id=who.account.id, samples=samples, now=now)
        for o in out:
            if o.status == "refused":
                log.info("watch health reading refused: %s", o.code)

    async def _steps(
        self, s: AsyncSession, who: Wearer, frame: wp.Frame, steps: int, now: datetime
    ) -> None:
        """The keep-alive's step count: the watch's total since its midnight,
        stored as the steps taken since its last report."""
        try:
            await admit(s, self.rt, who.caller, "health", "steps")
        except Problem as exc:
            log.debug("watch steps not kept: %s", exc.code)
            return
        out = await health.ingest_running_total(
            s,
            account_id=who.account.id,
            metric="steps",
            source=f"watch {frame.device_id}",
            total=steps,
            unit="{steps}",
            at=now,
            now=now,
        )
        if out is not None and out.status == "refused":
            log.info("watch steps refused: %s", out.code)

    async def _voice(
        self,
        s: AsyncSession,
        who: Wearer,
        frame: wp.Frame,
        part: wp.VoicePart,
        conn: Connection | None,
    ) -> bytes:
        """A voice note (or part of one) the watch recorded: kept as a voice
        message when the guard allows it, and answered ``1`` only then."""
        await s.commit()  # the watch was seen, whatever becomes of the note
        audio: bytes | None = part.audio
        if part.parts > 1:
            if conn is None:
                return wp.voice_reply(frame, False)
            try:
                audio = conn.gather(part, self.rt.settings.voice_max_bytes)
            except ValueError as exc:
                log.info("watch voice note not kept: %s", exc)
                return wp.voice_reply(frame, False)
            if audio is None:
                return wp.voice_reply(frame, True)  # a part held; the rest follows
        assert audio is not None
        return wp.voice_reply(frame, await self._keep_voice(s, who, audio))

    async def _keep_voice(self, s: AsyncSession, who: Wearer, audio: bytes) -> bool:
        try:
            allowed = await admit(s, self.rt, who.caller, "messaging", "voice")
        except Problem as exc:
            log.info("watch voice note not kept: %s", exc.code)
            return False
        mic = (allowed.permissions or {}).get("microphone")
        if is_minor(who.account) and mic != "granted":
            # a child cannot answer the Microphone question: a guardian must have
            log.info("watch voice note not kept: no guardian granted the microphone")
            return False
        if who.watch.family_id is None:
            return False
        device_id = who.caller.session.device_id
        scope = f"d:{device_id}" if device_id else f"s:{who.caller.session.id}"
        try:
            await watchchat.voice_from_watch(
                s,
                self.rt,
                wearer=who.account,
                family_id=who.watch.family_id,
                scope=scope,
                audio=audio,
            )
        except Problem as exc:
            await s.rollback()
            log.info("watch voice note not kept: %s", exc.code)
            return False
        return True

    async def _position(
        self, s: AsyncSession, who: Wearer, frame: wp.Frame, pos: wp.Position, contested: bool
    ) -> bool:
        """A position report (and an alarm in it), stored in one transaction."""
        t_ms = int(pos.time.timestamp() * 1000)
        if pos.kind == "AL":
            # the alarm first: its answer is what the watch waits for, and a
            # resend (our answer was lost) is recognised by its own key
            await self._alarm(s, who, frame, pos, t_ms)
        await _battery(s, who, pos.battery)
        allowed = await self._allowed(s, who, "upload")
        if allowed is None:
            await s.commit()
            return True
        fix = service.FixIn(
            t_ms=t_ms,
            lat=pos.lat,
            lon=pos.lon,
            client_id=f"w:{watches.report_key(who.watch)}:{pos.kind}:{t_ms}",
            accuracy_m=pos.accuracy_m if pos.lat is not None else None,
            altitude_m=pos.altitude_m,
            speed_mps=pos.speed_kmh / 3.6 if pos.speed_kmh is not None else None,
            course_deg=pos.course,
            battery=pos.battery,
            source="gps" if pos.lat is not None else "cell",
            cells=pos.cells,
            wifi=pos.wifi,
            flag=CONTESTED if contested else None,
        )
        await service.upload(s, self.rt, allowed, [fix])
        return True

    def _where(self, pos: wp.Position) -> tuple[float | None, float | None, float | None]:
        """Where an alarm was raised, as the watch knows it: its GPS fix, else
        what the local tables make of the towers and access points it heard."""
        if pos.lat is not None and pos.lon is not None:
            return pos.lat, pos.lon, pos.accuracy_m
        settings = self.rt.settings
        resolver = resolver_for(settings.geo_cells_csv, settings.geo_wifi_csv)
        found = resolver.resolve(pos.cells, pos.wifi) if pos.cells or pos.wifi else None
        return (found.lat, found.lon, found.accuracy_m) if found else (None, None, None)

    async def _alarm(
        self, s: AsyncSession, who: Wearer, frame: wp.Frame, pos: wp.Position, t_ms: int
    ) -> None:
        """Raise what an alarm frame says, once per alarm (a resend raises nothing)."""
        key = f"w:{watches.report_key(who.watch)}:{t_ms}:{pos.status:x}"
        # an alarm the watch kept (offline, or a firmware that replays old ones)
        # is history, not an emergency: recorded with its own time, nobody alerted
        age = (clock.utcnow() - pos.time).total_seconds()
        late = age > self.rt.settings.watch_alarm_max_age_seconds
        emergencies = [a for a in SOS_ALARMS if a in pos.alarms]
        if emergencies:
            # SOS is consent-exempt (vital interests): the position goes as the
            # watch knows it, rounded only if the watch's permission says so
            ctx = await admit(s, self.rt, who.caller, "sos", "raise")
            lat, lon, acc = self._where(pos)
            await sos.open_alert(
                s,
                catalog_of(self.rt),
                account=who.account,
                device_id=who.caller.session.device_id,
                degraded=ctx.degraded,
                lat=lat,
                lon=lon,
                accuracy_m=acc,
                battery=pos.battery,
                note=SOS_ALARMS[emergencies[0]],
                source_key=key,
                alarm_at=pos.time,
                late=late,
            )
        await self._alarm_samples(s, who, frame, pos)
        if late:
            return
        notices = [a for a in NOTICE_ALARMS if a in pos.alarms and (key, a) not in self._told]
        if notices:
            guardians = await sos.recipients_for(s, who.account)
            name = who.account.name or "A family member"
            for a in notices:
                category, what = NOTICE_ALARMS[a]
                sep = "" if what.startswith("'") else " "
                await notify.send(
                    s,
                    account_ids=guardians,
                    category=category,
                    title=f"{name}{sep}{what}"[:120],
                    body=f"{name}{sep}{what}.",
                    data={"account_id": who.account.id, "alarm": a},
                )
            events.on_commit(s, lambda: self._remember(key, notices))

    async def _alarm_samples(
        self, s: AsyncSession, who: Wearer, frame: wp.Frame, pos: wp.Position
    ) -> None:
        """A fall, or the watch taken off the wrist, is also the wearer's health
        history (metrics ``fall`` and ``wrist_off``, what a guardian's health
        alerts look at), stored under the wearer's separate consent like any
        reading. Late ones too: history, with their own time."""
        samples = alarm_samples(frame, pos)
        if not samples:
            return
        try:
            await admit(s, self.rt, who.caller, "health", "readings")
        except Problem as exc:
            log.info("watch alarm not kept as a health sample: %s", exc.code)
            return
        out = await health.ingest(s, account_id=who.account.id, samples=samples, now=clock.utcnow())
        for o in out:
            if o.status == "refused":
                log.info("watch alarm sample refused: %s", o.code)

    def _remember(self, key: str, notices: list[str]) -> None:
        for a in notices:
            self._told[(key, a)] = None
            if len(self._told) > TOLD_MAX:
                self._told.pop(next(iter(self._told)))
