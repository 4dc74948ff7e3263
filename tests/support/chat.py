"""A family chatting through real ``kares serve`` processes that die and come back.

For the "Done means" of issue 14: kill the server (``SIGKILL``, no graceful
stop) in the middle of a conversation, start it again, and check that every
acknowledged message reaches every member exactly once, in order. The pieces
here are the client side of that, shared by the WebSocket test
(tests/test_messaging_processes.py) and the Matrix sync one:

* :class:`Server`: one ``kares serve`` on a fixed loopback port that can be
  killed with ``SIGKILL`` and started again on the same port (so a client
  reconnects to the address it knew). :func:`seed` migrates and runs ``kares
  demo --families N --json`` once; restarting a server does not sign anyone in
  again, so the members keep their tokens (and so their retry keys).
* :class:`Sender`: a member sending a numbered series of texts, each with its
  own transaction id. A send whose answer is lost (the server died, the
  connection broke) is sent again with the same transaction id, to the first
  address that answers, until one does: the retry is what the transaction id
  is for. It records every answer.
* :class:`SocketReader`: a member's ``/api/v1/ws`` socket that records every
  ``message`` event it gets and, when the socket breaks, reconnects with the
  token of the last frame it processed (``?since=``), to the first address
  that answers.
* :func:`check_exactly_once`: the verdict, from what was acknowledged, what is
  stored and what each reader got.

Everything is bounded: a send gives up after ``patience`` seconds without an
answer, a reader stops once it has seen a given position or its own bound
runs out, and the callers wrap the whole conversation in a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.support.live import free_port, kares

API = "/api/v1"


def seed(env: dict[str, str], families: int = 1) -> list[dict[str, Any]]:
    """Migrate the database and seed ``families`` demo families of four; each
    family is ``{"id", "name", "members": [{"account_id", "token", ...}]}``."""
    kares("migrate", env=env)
    out = json.loads(kares("demo", "--families", str(families), "--json", env=env))
    return list(out["families"])


@dataclass
class Server:
    """One ``kares serve`` process on a fixed port of 127.0.0.1, with its
    output appended to one log across restarts."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}{API}/ws"

    def start(self, timeout: float = 60) -> Server:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        args = [sys.executable, "-m", "kares", "serve", "--host", "127.0.0.1"]
        with open(self.log_path, "ab") as out:
            out.write(f"\n===== start {self.starts + 1} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [*args, "--port", str(self.port)],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kares serve exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kares serve did not start: {self.log()[-3000:]}")
            time.sleep(0.05)

    async def astart(self) -> Server:
        """:meth:`start` without blocking the event loop the clients run on."""
        return await asyncio.to_thread(self.start)

    def kill(self) -> None:
        """``SIGKILL``: no shutdown, no goodbye to any socket, transactions cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


Addresses = Callable[[], Sequence[str]]
"""Where a client goes, in order of preference (asked again on every attempt)."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Sent:
    """One send as its client saw it: its transaction id and text, every answer
    (an HTTP status, or ``"lost"`` when none came), and the message's position
    once a 2xx said it."""

    txn_id: str
    text: str
    answers: list[int | str] = field(default_factory=list)
    position: int | None = None
    # a send whose answer came and was thrown away (as a network would lose it):
    # the position that answer said, which its retry must give again with 200
    unheard: int | None = None

    @property
    def acked(self) -> bool:
        return self.position is not None

    @property
    def retried(self) -> bool:
        return len(self.answers) > 1

    @property
    def stored_before_retry(self) -> bool:
        """Retried after an answer was lost, and the retry found it stored."""
        return self.retried and self.answers[-1] == 200


class Sender:
    """A member sending numbered texts into a conversation, one after the other.

    A send whose answer is lost is sent again with its transaction id until a
    server answers (``retry``); a sender with ``retry=False`` gives it up
    instead and goes on with the next one, so the conversation also holds sends
    nobody acknowledged (stored or not: the client cannot know)."""

    def __init__(
        self,
        name: str,
        token: str,
        conversation: str,
        addresses: Addresses,
        *,
        retry: bool = True,
        lose_every: int = 0,
        pause: float = 0.0,
        patience: float = 90.0,
    ) -> None:
        self.name, self.token, self.conversation = name, token, conversation
        self.addresses, self.retry, self.lose_every = addresses, retry, lose_every
        self.pause, self.patience = pause, patience
        self.sent: list[Sent] = []
        self.in_flight = False  # a request is out and not answered yet

    async def run(self, count: int, *, run_id: str = "r") -> None:
        """Send ``count`` texts: transaction ids ``<run_id>-<name>-<n>`` (a run
        id of its own for each series of one member)."""
        async with httpx.AsyncClient(timeout=httpx.Timeout(15, connect=2)) as http:
            for n in range(count):
                one = Sent(f"{run_id}-{self.name}-{n}", f"{self.name} #{n} ({run_id})")
                self.sent.append(one)
                if self.lose_every and n % self.lose_every == self.lose_every - 1:
                    await self.lose_answer(http, one)
                await self.send(http, one, retry=self.retry)
                if self.pause:
                    await asyncio.sleep(self.pause)

    async def send(self, http: httpx.AsyncClient, one: Sent, *, retry: bool = True) -> None:
        """Send ``one`` until an answer comes (with ``retry``: the same
        transaction id again after an answer was lost, to the first address
        that answers); a 2xx gives its position."""
        deadline = time.monotonic() + self.patience
        body = {"txn_id": one.txn_id, "kind": "text", "text": one.text}
        path = f"{API}/conversations/{self.conversation}/messages"
        while True:
            for base in self.addresses():
                self.in_flight = True
                try:
                    r = await http.post(base + path, json=body, headers=bearer(self.token))
                except httpx.TransportError:
                    one.answers.append("lost")
                    if not retry:  # given up; the next send waits for a server
                        await self._until_up(http, deadline)
                        return
                    continue
                finally:
                    self.in_flight = False
                one.answers.append(r.status_code)
                if r.is_success:
                    one.position = int(r.json()["id"])
                return
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)

    async def lose_answer(self, http: httpx.AsyncClient, one: Sent) -> None:
        """Send ``one`` and throw its answer away, as if the network lost it
        after the server had stored the message; :meth:`send` retries it next."""
        body = {"txn_id": one.txn_id, "kind": "text", "text": one.text}
        path = f"{API}/conversations/{self.conversation}/messages"
        for base in self.addresses():
            try:
                r = await http.post(base + path, json=body, headers=bearer(self.token))
            except httpx.TransportError:
                one.answers.append("lost")
                return
            one.answers.append("unheard")
            if r.is_success:
                one.unheard = int(r.json()["id"])
            return

    async def _until_up(self, http: httpx.AsyncClient, deadline: float) -> None:
        while time.monotonic() < deadline:
            for base in self.addresses():
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(base + "/readyz")).status_code == 200:
                        return
            await asyncio.sleep(0.05)

    async def resend(self, one: Sent) -> Sent:
        """Send ``one`` once more, as a client does that never saw its answer:
        the same transaction id and text, answered as a new :class:`Sent`."""
        again = Sent(one.txn_id, one.text)
        async with httpx.AsyncClient(timeout=httpx.Timeout(15, connect=2)) as http:
            await self.send(http, again)
        return again


@dataclass
class Got:
    """A ``message`` event as a reader got it."""

    position: int
    text: str | None
    socket: int  # which of the reader's connections brought it (1, 2, ...)


class Reader(Protocol):
    """What the verdict reads of a member's client (a WebSocket here, a Matrix
    sync loop in its own test): its name, every message it got in the order it
    got them, and any resync it was told."""

    name: str
    got: list[Got]
    resyncs: list[dict[str, Any]]


class SocketReader:
    """A member's WebSocket, reconnecting with its last token after a break.

    It processes frames one at a time and keeps the ``token`` of the last one
    processed (what a client stores), so a reconnection resumes exactly after
    what it recorded. ``got`` is every message event in the order they came."""

    def __init__(self, name: str, token: str, addresses: Addresses) -> None:
        self.name, self.token, self.addresses = name, token, addresses
        self.resume: str | None = None  # the token of the last frame processed
        self.got: list[Got] = []
        self.sockets = 0  # connections opened
        self.resyncs: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.ready = asyncio.Event()  # set at the first caught_up
        self.high = 0  # the highest message position seen

    async def run(self, until: Callable[[int], bool], *, bound: float = 120.0) -> None:
        """Read until ``until(highest message position seen)`` is true (checked
        after each frame and at each reconnection), or ``bound`` seconds."""
        deadline = time.monotonic() + bound
        while not until(self.high) and time.monotonic() < deadline:
            for url in self.addresses():
                full = url + (f"?since={self.resume}" if self.resume else "")
                try:
                    async with connect(
                        full, additional_headers=bearer(self.token), open_timeout=5
                    ) as c:
                        self.sockets += 1
                        await self._read(c, until, deadline)
                except (OSError, ConnectionClosed, InvalidHandshake, InvalidStatus, TimeoutError):
                    pass
                if until(self.high) or time.monotonic() >= deadline:
                    return
            await asyncio.sleep(0.05)

    async def _read(self, c: Any, until: Callable[[int], bool], deadline: float) -> None:
        while not until(self.high):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # a short wait, then check the stop condition again: a reader that has
            # everything stops even when nothing more comes
            with contextlib.suppress(TimeoutError):
                raw = await asyncio.wait_for(c.recv(), min(left, 0.5))
                self._process(json.loads(raw))

    async def once_more(self) -> list[dict[str, Any]]:
        """Connect once more with the last token and return what comes up to
        ``caught_up``: after the end of a conversation, nothing but ``hello``."""
        assert self.resume is not None
        frames: list[dict[str, Any]] = []
        url = self.addresses()[0] + f"?since={self.resume}"
        async with connect(url, additional_headers=bearer(self.token), open_timeout=10) as c:
            while not frames or frames[-1].get("type") != "caught_up":
                frames.append(json.loads(await asyncio.wait_for(c.recv(), 30)))
        return frames

    def _process(self, f: dict[str, Any]) -> None:
        kind = f.get("type")
        if kind == "caught_up":
            self.ready.set()
        elif kind == "resync":
            self.resyncs.append(f)
        elif kind == "error":
            self.errors.append(f)
        elif f.get("source") == "message" and kind == "message":
            position = int(f["position"])
            msg = f["data"].get("message") or {}
            self.got.append(Got(position, msg.get("text"), self.sockets))
            self.high = max(self.high, position)
        if isinstance(f.get("token"), str):
            self.resume = f["token"]


async def history(base: str, token: str, conversation: str) -> list[dict[str, Any]]:
    """Every message of the conversation the member may read, oldest first
    (paged backwards with the history's cursors)."""
    out: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "100"}
    async with httpx.AsyncClient(timeout=30) as http:
        while True:
            r = await http.get(
                f"{base}{API}/conversations/{conversation}/messages",
                params=params,
                headers=bearer(token),
            )
            assert r.status_code == 200, r.text
            page = r.json()
            out[:0] = page["messages"]
            if not page.get("before") or not page["messages"]:
                return out
            params = {"limit": "100", "before": page["before"]}


def check_exactly_once(
    senders: Sequence[Sender],
    readers: Sequence[Reader],
    stored: Sequence[dict[str, Any]],
    *,
    after: int,
) -> list[tuple[int, str]]:
    """The verdict; returns the conversation as every reader got it, as
    ``(position, text)`` pairs.

    * no send was answered 5xx, and every send of a retrying sender was
      acknowledged in the end (its retries included); a retry after an answer
      that was stored and lost (``Sent.unheard``) answered 200 with the same
      position;
    * what is stored after position ``after`` is what was sent, each text at
      most once (a retry stored nothing new), and holds every acknowledged send
      at the position its answer gave; a send nobody acknowledged is there
      once or not at all;
    * every reader got exactly what is stored, in the order of positions, each
      message once, whatever connection brought it: so every reader's sequence
      is the same, and nothing appears twice."""
    sends = [one for s in senders for one in s.sent]
    must = [one for s in senders if s.retry for one in s.sent]
    not_acked = [(one.txn_id, one.answers) for one in must if not one.acked]
    assert not not_acked, f"sends never acknowledged: {not_acked[:5]}"
    broken = [(one.txn_id, one.answers) for one in sends if any(_is_5xx(a) for a in one.answers)]
    assert not broken, f"sends answered 5xx: {broken[:5]}"
    unheard = [one for one in sends if one.unheard is not None]
    wrong = [
        (one.txn_id, one.answers, one.unheard, one.position)
        for one in unheard
        if one.acked and (one.answers[-1] != 200 or one.position != one.unheard)
    ]
    assert not wrong, f"a retry after a lost answer stored anew or moved: {wrong[:5]}"
    acked = {one.position: one.text for one in sends if one.acked}
    assert len(acked) == sum(1 for one in sends if one.acked), "two sends at one position"
    conversation = [(int(m["id"]), m["text"]) for m in stored if int(m["id"]) > after]
    texts = [t for _, t in conversation]
    twice = sorted({t for t in texts if texts.count(t) > 1})
    assert not twice, f"stored twice: {twice[:5]}"
    unknown = sorted(set(texts) - {one.text for one in sends}, key=str)
    assert not unknown, f"stored but never sent: {unknown[:5]}"
    lost = sorted(set(acked.items()) - set(conversation))
    assert not lost, f"acknowledged, but not stored as answered: {lost[:5]}"
    for r in readers:
        got = [(g.position, g.text) for g in r.got]
        positions = [p for p, _ in got]
        dup = sorted({p for p in positions if positions.count(p) > 1})
        assert not dup, f"{r.name} got positions twice: {dup[:10]}"
        assert positions == sorted(positions), f"{r.name} got them out of order"
        assert not r.resyncs, f"{r.name} was told to resync: {r.resyncs}"
        missing = sorted(set(conversation) - set(got))
        assert not missing, f"{r.name} never got {missing[:10]} ({len(missing)} in all)"
        assert got == conversation, f"{r.name} got something else than is stored"
    return conversation


def _is_5xx(answer: int | str) -> bool:
    return isinstance(answer, int) and answer >= 500
