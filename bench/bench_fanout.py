# ruff: noqa: S603, S607  (fixed local commands)
"""The WebSocket's fan-out: 1,000 connected sockets on one process (issue 14, "Performance").

One run per database (``--db sqlite``, ``postgresql`` or ``both``) and one of the
reference, each on a fresh server:

  1. ``kares serve`` (one process) on a fresh instance: ``kares migrate`` and
     ``kares demo --families F --json`` (F families of four: 1,000 members for the
     default 250, each with a bearer token). PostgreSQL: the test suite's throwaway
     server (``tests/support/pgserver.py``), restarted with its durable defaults, as
     bench_ingest.py does.
  2. The server's RSS (VmRSS) before any socket is opened.
  3. One WebSocket per member (``GET /api/v1/ws``, ``Authorization: Bearer``), at most
     --connect-batch handshakes in flight at once; each is open once it has had
     ``hello`` and ``caught_up``. The time this takes, the server's CPU for it and its
     RSS with every socket open (a few seconds later): per connection = the RSS
     delta / sockets.
  4. --messages text messages into the families' conversations, open loop at --rate a
     second (message i at t0 + i/rate, family i mod F, the sender rotating over the
     family's members), each through the API the app uses: ``POST
     /api/v1/conversations/{family}/messages`` with the sender's token and a ``txn_id``.
     Every socket reads its frames all along. A **delivery** is a ``message`` frame of
     this run on the socket of a member other than the sender; its latency runs from
     just before the POST was written to the moment the frame was read (one clock:
     this process). The sender's own socket gets the message too (its other devices
     would): counted apart as echoes.
  5. After the last send, up to --drain s for what is still on the way; then every
     socket is closed (in batches) and the server stopped.

Figures: sockets open / refused, connect time, deliveries expected / received / lost /
duplicated (lost and duplicated must be 0; a frame of this run on a socket outside the
message's family is counted too, and must be 0), latency p50 / p99 / max over every
delivery, the POST's round trip, server CPU (cores over the send window and CPU ms per
message; the database server's apart on PostgreSQL), RSS before / with the sockets /
per connection, the lines of the server's log that say ERROR.

The reference, measured in the same run on the same machine with the same client code:
a minimal broadcast server written with ``websockets`` (this script with
``--reference-server``; uvloop when installed, as uvicorn uses it), one process: the
same 1,000 sockets (``?family=&member=``, no authentication), the same ``hello`` /
``caught_up`` and ``message`` frames, a send being a ``send`` frame on the sender's
socket (``websockets`` serves no POST) answered ``sent`` after the message was pushed
to the family's sockets with ``websockets.broadcast``. ``--reference-store sqlite``
also makes it INSERT and COMMIT each message into a SQLite file (WAL,
synchronous=NORMAL, as the app configures SQLite) before it broadcasts: a durable floor.
The table prints Kares / reference for each figure.

    .venv/bin/python bench/bench_fanout.py            # 250 families, 500 messages at 25/s
    .venv/bin/python bench/bench_fanout.py --db both --families 25 --messages 100
    .venv/bin/python bench/bench_fanout.py --reuse /tmp/fanout-250  # seed SQLite once, reuse

Only 127.0.0.1 is used. Every loop is bounded by a count and a time; the servers run
under ``timeout`` and are stopped at the end; the client's descriptor limit is raised
within the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

WS_PATH = "/api/v1/ws"
FAMILY_SIZE = 4


def pct(xs: Sequence[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))]


def fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mb(pids: Sequence[int]) -> float:
    kb = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
                    break
    return kb / 1024


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- the reference: a minimal broadcast server (this script with --reference-server) --------


def reference_server(port: int, store: str, store_path: str) -> int:
    """Families of sockets in memory; a ``send`` frame is pushed to the sender's family."""
    from websockets.asyncio.server import broadcast, serve

    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    db: sqlite3.Connection | None = None
    if store == "sqlite":
        db = sqlite3.connect(store_path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS messages (position INTEGER PRIMARY KEY, "
            "conversation_id TEXT NOT NULL, sender TEXT NOT NULL, txn_id TEXT NOT NULL, "
            "body TEXT NOT NULL, sent_at TEXT NOT NULL, UNIQUE (sender, txn_id))"
        )
    fams: dict[str, set[Any]] = {}
    state = {"pos": 0}

    async def handler(ws: Any) -> None:
        q = parse_qs(urlsplit(ws.request.path).query)
        fam, me = q.get("family", [""])[0], q.get("member", [""])[0]
        if not fam or not me:
            await ws.close(1008, "family and member")
            return
        fams.setdefault(fam, set()).add(ws)
        try:
            tok = f"m{state['pos']}"
            await ws.send(json.dumps({"type": "hello", "account_id": me, "token": tok}))
            await ws.send(json.dumps({"type": "caught_up", "token": tok}))
            async for raw in ws:
                try:
                    f = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(f, dict) or f.get("type") != "send":
                    continue
                sent_at = datetime.now(UTC).isoformat()
                text, txn = str(f.get("text", ""))[:4000], str(f.get("txn_id", ""))[:64]
                if db is not None:
                    cur = db.execute(
                        "INSERT INTO messages (conversation_id, sender, txn_id, body, sent_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (fam, me, txn, json.dumps({"text": text}), sent_at),
                    )
                    pos = int(cur.lastrowid or 0)
                else:
                    pos = state["pos"] + 1
                state["pos"] = pos
                msg = {
                    "id": str(pos),
                    "position": pos,
                    "conversation_id": fam,
                    "sender_id": me,
                    "kind": "text",
                    "sent_at": sent_at,
                    "text": text,
                }
                frame = {
                    "type": "message",
                    "source": "message",
                    "position": pos,
                    "token": f"m{pos}",
                    "data": {"conversation_id": fam, "message": msg},
                }
                broadcast(fams[fam], json.dumps(frame, separators=(",", ":")))
                await ws.send(json.dumps({"type": "sent", "id": str(pos), "txn_id": txn}))
        finally:
            fams[fam].discard(ws)

    async def main() -> None:
        async with serve(
            handler, "127.0.0.1", port, ping_interval=20, ping_timeout=20, max_size=1 << 20
        ):
            print("ready", flush=True)
            await asyncio.Future()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


# --- what a run talks to ---------------------------------------------------------------------


@dataclass
class Member:
    account_id: str
    token: str


@dataclass
class Family:
    id: str
    members: list[Member]


@dataclass
class Target:
    name: str  # "kares" or "reference"
    db: str
    ws_url: str  # without the query
    http_url: str
    families: list[Family]
    pids: list[int]
    db_pids: list[int] = field(default_factory=list)
    log_path: Path | None = None
    notes: str = ""


@dataclass
class Result:
    name: str
    db: str
    sockets: int = 0
    opened: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    connect_s: float = float("nan")
    connect_cpu_ms: float = float("nan")  # server CPU per socket opened
    idle_cpu: float = float("nan")  # cores, every socket open and nothing sent
    rss_before: float = float("nan")
    rss_with: float = float("nan")
    rss_peak: float = float("nan")
    messages: int = 0
    accepted: int = 0
    send_errors: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    strays: int = 0
    echoes_expected: int = 0
    echoes: int = 0
    latencies: list[float] = field(default_factory=list)
    send_rtt: list[float] = field(default_factory=list)
    send_window_s: float = float("nan")
    server_cpu: float = float("nan")  # cores over the send window (and drain)
    db_cpu: float = float("nan")
    cpu_ms_per_message: float = float("nan")
    client_cpu: float = float("nan")
    client_lag_ms: float = 0.0
    dropped_sockets: int = 0  # sockets whose reading ended before the run closed them
    dropped_why: dict[str, int] = field(default_factory=dict)
    others: float = float("nan")
    log_errors: list[str] = field(default_factory=list)

    @property
    def per_conn_kib(self) -> float:
        if not self.opened:
            return float("nan")
        return (self.rss_with - self.rss_before) * 1024 / self.opened


def machine_ticks() -> tuple[int, int]:
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(vals) - vals[3] - vals[4], sum(vals)


_RUN_TEXT = re.compile(r"^fanout (\S+) (\d+) ")


async def measure(t: Target, args: argparse.Namespace) -> Result:
    """Open the sockets, send, collect; everything closed before it returns."""
    import httpx
    from bench_ingest import tree_cpu
    from websockets.asyncio.client import connect

    res = Result(t.name, t.db)
    run_id = secrets.token_hex(4)
    loop = asyncio.get_running_loop()
    members = [(fi, mi, m) for fi, f in enumerate(t.families) for mi, m in enumerate(f.members)]
    res.sockets = len(members)
    socks: list[Any] = [None] * len(members)
    index = {(fi, mi): k for k, (fi, mi, _) in enumerate(members)}
    # (socket index, message id) -> how many times; and each delivery's arrival time
    got: Counter[tuple[int, int]] = Counter()
    arrivals: list[tuple[int, int, float]] = []
    strays = [0]
    strays_why: Counter[str] = Counter()  # why a socket's reader ended early
    dropped: set[int] = set()
    sent_at: dict[int, float] = {}
    acked: dict[int, float] = {}
    mid_family: dict[int, tuple[int, int]] = {}  # message -> (family, sender)
    log0 = t.log_path.stat().st_size if t.log_path and t.log_path.exists() else 0

    await asyncio.sleep(2.0)  # the server settles after start-up (or the last run)
    res.rss_before = rss_mb(t.pids)

    # --- 3. the sockets, at most --connect-batch handshakes at once
    gate = asyncio.Semaphore(args.connect_batch)

    async def open_one(k: int) -> None:
        fi, _, m = members[k]
        if t.name == "kares":
            url, hdr = t.ws_url, {"Authorization": f"Bearer {m.token}"}
        else:
            url, hdr = f"{t.ws_url}?family={t.families[fi].id}&member={m.account_id}", {}
        async with gate:
            try:
                ws = await connect(
                    url,
                    additional_headers=hdr,
                    open_timeout=args.connect_timeout,
                    ping_interval=None,  # the server pings; the client answers
                    max_size=1 << 20,
                    compression=None,
                )
            except Exception as exc:  # refused: status, reset, time-out
                key = type(exc).__name__
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status is not None:
                    key = f"HTTP {status}"
                res.refused[key] = res.refused.get(key, 0) + 1
                return
            try:
                deadline = loop.time() + args.connect_timeout
                for _ in range(1000):  # hello, (missed events), caught_up
                    raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - loop.time()))
                    if json.loads(raw).get("type") == "caught_up":
                        socks[k] = ws
                        return
                raise TimeoutError
            except Exception as exc:
                res.refused[f"no caught_up: {type(exc).__name__}"] = (
                    res.refused.get(f"no caught_up: {type(exc).__name__}", 0) + 1
                )
                await ws.close()

    c0, a0 = tree_cpu(t.pids), time.perf_counter()
    await asyncio.gather(*(open_one(k) for k in range(len(members))))
    res.connect_s = time.perf_counter() - a0
    res.opened = sum(1 for w in socks if w is not None)
    res.connect_cpu_ms = (tree_cpu(t.pids) - c0) * 1000 / max(1, res.opened)
    print(
        f"    {t.name} {t.db}: {res.opened} of {len(members)} sockets open in "
        f"{res.connect_s:.1f} s; refused {res.refused or 0}",
        flush=True,
    )
    i0, a1 = tree_cpu(t.pids), time.perf_counter()
    await asyncio.sleep(args.settle)  # the sockets open and idle (the server pings them)
    res.idle_cpu = (tree_cpu(t.pids) - i0) / (time.perf_counter() - a1)
    res.rss_with = rss_mb(t.pids)
    res.rss_peak = res.rss_with

    # --- every socket reads all along
    async def reader(k: int, ws: Any) -> None:
        fi, mi, _ = members[k]
        try:
            async for raw in ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                if frame.get("type") == "sent":  # the reference's answer to a send
                    run, _, i = str(frame.get("txn_id", "")).partition(".")
                    if run == run_id and i.isdigit():
                        acked.setdefault(int(i), now)
                    continue
                if frame.get("type") != "message":
                    continue
                text = ((frame.get("data") or {}).get("message") or {}).get("text") or ""
                m = _RUN_TEXT.match(text)
                if m is None or m.group(1) != run_id:
                    continue
                mid = int(m.group(2))
                fam_sender = mid_family.get(mid)
                if fam_sender is None or fam_sender[0] != fi:
                    strays[0] += 1
                    continue
                got[(k, mid)] += 1
                if mi != fam_sender[1]:
                    arrivals.append((k, mid, now))
        except Exception as exc:  # the server closed it, or it broke: counted
            strays_why[type(exc).__name__] += 1
        finally:
            dropped.add(k)

    readers = [asyncio.create_task(reader(k, ws)) for k, ws in enumerate(socks) if ws is not None]

    async def sampler(until: float) -> None:
        while loop.time() < until:
            res.rss_peak = max(res.rss_peak, rss_mb(t.pids))
            await asyncio.sleep(0.5)

    # --- 4. the messages, open loop
    pad = "x" * max(0, args.body_bytes - 30)
    inflight = [0]
    lag = [0.0]
    http = httpx.AsyncClient(
        base_url=t.http_url, timeout=60, limits=httpx.Limits(max_connections=args.max_inflight)
    )
    send_tasks: set[asyncio.Task[None]] = set()

    async def send(i: int) -> None:
        fi = i % len(t.families)
        mi = (i // len(t.families)) % len(t.families[fi].members)
        fam = t.families[fi]
        sender = fam.members[mi]
        mid_family[i] = (fi, mi)
        text = f"fanout {run_id} {i} {pad}"
        inflight[0] += 1
        try:
            if t.name == "kares":
                sent_at[i] = time.perf_counter()
                r = await http.post(
                    f"/api/v1/conversations/{fam.id}/messages",
                    json={"txn_id": f"{run_id}.{i}", "kind": "text", "text": text},
                    headers={"Authorization": f"Bearer {sender.token}"},
                )
                if r.status_code in (200, 201):
                    acked[i] = time.perf_counter()
                else:
                    key = f"HTTP {r.status_code}"
                    res.send_errors[key] = res.send_errors.get(key, 0) + 1
            else:
                ws = socks[index[(fi, mi)]]
                if ws is None:
                    res.send_errors["no socket"] = res.send_errors.get("no socket", 0) + 1
                    return
                sent_at[i] = time.perf_counter()
                await ws.send(json.dumps({"type": "send", "txn_id": f"{run_id}.{i}", "text": text}))
                # acknowledged when its `sent` answer comes back on the socket (reader)
        except Exception as exc:
            key = type(exc).__name__
            res.send_errors[key] = res.send_errors.get(key, 0) + 1
        finally:
            inflight[0] -= 1

    res.messages = args.messages
    spy = None
    if args.profile and t.name == "kares":  # py-spy over the send window (collapsed stacks)
        exe = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
        seconds = int(args.messages / args.rate) + 3
        spy = subprocess.Popen(  # noqa: ASYNC220  (before the clock matters)
            [exe, "record", "--pid", str(t.pids[0]), "--output", f"{args.profile}.{t.db}",
             "--format", "raw", "--rate", "200", "--duration", str(seconds), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    window_end = loop.time() + 2 + args.messages / args.rate + args.drain
    samp = asyncio.create_task(sampler(window_end + 60))
    b0, c0, d0, o0 = machine_ticks(), tree_cpu(t.pids), tree_cpu(t.db_pids), own_cpu()
    a0 = time.perf_counter()
    t0 = loop.time() + 0.2
    for i in range(args.messages):
        planned = t0 + i / args.rate
        if planned > loop.time():
            await asyncio.sleep(planned - loop.time())
        lag[0] = max(lag[0], loop.time() - planned)
        if inflight[0] >= args.max_inflight:
            res.skipped += 1
            continue
        task = asyncio.create_task(send(i))
        send_tasks.add(task)
        task.add_done_callback(send_tasks.discard)
    # --- 5. what is still on the way
    if send_tasks:
        await asyncio.wait(list(send_tasks), timeout=60)
    ack_end = loop.time() + args.drain
    while t.name == "reference" and len(acked) < len(sent_at) and loop.time() < ack_end:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    accepted = set(acked)
    expected = {
        (index[(mid_family[i][0], mi)], i)
        for i in accepted
        for mi in range(len(t.families[mid_family[i][0]].members))
    }
    drain_end = loop.time() + args.drain
    while loop.time() < drain_end:
        if all(got[e] for e in expected):
            break
        await asyncio.sleep(0.05)
    el = time.perf_counter() - a0
    b1, c1, d1, o1 = machine_ticks(), tree_cpu(t.pids), tree_cpu(t.db_pids), own_cpu()
    samp.cancel()
    await http.aclose()
    if spy is not None:
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.terminate()
            spy.wait(10)
    res.send_window_s = el
    res.server_cpu = (c1 - c0) / el
    res.db_cpu = (d1 - d0) / el if t.db_pids else float("nan")
    res.cpu_ms_per_message = (c1 - c0) * 1000 / max(1, len(accepted))
    res.client_cpu = (o1 - o0) / el
    machine = (os.cpu_count() or 1) * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
    db_cpu = 0.0 if res.db_cpu != res.db_cpu else res.db_cpu
    res.others = max(0.0, machine - res.client_cpu - res.server_cpu - db_cpu)
    res.client_lag_ms = lag[0] * 1000
    res.accepted = len(accepted)

    # --- the figures
    others = {(k, i) for k, i in expected if members[k][1] != mid_family[i][1]}
    echoes = expected - others
    res.expected = len(others)
    res.echoes_expected = len(echoes)
    res.delivered = sum(1 for e in others if got[e])
    res.echoes = sum(1 for e in echoes if got[e])
    res.lost = sum(1 for e in expected if not got[e])
    res.duplicated = sum(n - 1 for n in got.values() if n > 1)
    res.strays = strays[0]
    first: dict[tuple[int, int], float] = {}
    for k, i, at in arrivals:
        first.setdefault((k, i), at)
    res.latencies = [(at - sent_at[i]) * 1000 for (k, i), at in first.items() if i in accepted]
    res.send_rtt = [(acked[i] - sent_at[i]) * 1000 for i in accepted]
    res.dropped_sockets = len(dropped)
    res.dropped_why = dict(strays_why)

    # --- everything closed
    async def close_one(ws: Any) -> None:
        async with gate:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 10)

    await asyncio.gather(*(close_one(w) for w in socks if w is not None))
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    if t.log_path is not None and t.log_path.exists():
        text = t.log_path.read_bytes()[log0:].decode("utf-8", "replace")
        pat = re.compile(r"ERROR|Traceback|QueuePool|too many open files", re.I)
        res.log_errors = [ln for ln in text.splitlines() if pat.search(ln)]
    return res


# --- the servers -----------------------------------------------------------------------------


def seed(env: dict[str, str], families: int, limit_s: float) -> list[Family]:
    kares = str(VENV_BIN / "kares")
    subprocess.run([kares, "migrate"], env=env, check=True, timeout=300, capture_output=True)
    t0 = time.perf_counter()
    out = subprocess.run(
        [kares, "demo", "--families", str(families), "--json"],
        env=env,
        check=True,
        timeout=limit_s,
        capture_output=True,
        text=True,
    ).stdout
    print(f"  kares demo --families {families}: {time.perf_counter() - t0:.0f} s", flush=True)
    return parse_demo(out)


def parse_demo(text: str) -> list[Family]:
    data = json.loads(text)
    return [
        Family(str(f["id"]), [Member(m["account_id"], m["token"]) for m in f["members"]])
        for f in data["families"]
    ]


def run_kares(db: str, args: argparse.Namespace, limit_s: int) -> Result:
    import bench_ingest as bi

    reuse = Path(args.reuse) if args.reuse and db == "sqlite" else None
    var_dir = reuse or Path(tempfile.mkdtemp(prefix=f"fanout-kares-{db}-"))
    pg = None
    try:
        if db == "postgresql":
            pg = bi.start_durable_pg()
        env = bi.kares_env(var_dir, pg.url if pg else "", "WARNING")
        demo = var_dir / "bench-demo.json"
        if reuse is not None and demo.exists():
            fams = parse_demo(demo.read_text())
            print(f"  reusing {len(fams)} families from {demo}", flush=True)
        else:
            var_dir.mkdir(parents=True, exist_ok=True)
            fams = seed(env, args.families, args.max_seconds)
            if reuse is not None:
                demo.write_text(
                    json.dumps(
                        {
                            "families": [
                                {
                                    "id": f.id,
                                    "members": [
                                        {"account_id": m.account_id, "token": m.token}
                                        for m in f.members
                                    ],
                                }
                                for f in fams
                            ]
                        }
                    )
                )
        fams = fams[: args.families]
        with bi.Server(env, hard_limit_s=limit_s) as srv:
            pids = srv.pids() or [srv.proc.pid]
            db_pids = (
                [int((pg.root / "data" / "postmaster.pid").read_text().split()[0])] if pg else []
            )
            port = srv.port
            t = Target(
                "kares",
                db,
                f"ws://127.0.0.1:{port}{WS_PATH}",
                srv.url,
                fams,
                pids,
                db_pids,
                srv.log_path,
                f"kares serve (1 process, pid {pids}), {db}, log {srv.log_path}",
            )
            print(f"  {t.notes}", flush=True)
            bi.wait_quiet(args.quiet_wait)
            return asyncio.run(measure(t, args))
    finally:
        if pg is not None:
            pg.stop()
        if reuse is None:
            shutil.rmtree(var_dir, ignore_errors=True)


def run_reference(store: str, families: int, args: argparse.Namespace, limit_s: int) -> Result:
    import bench_ingest as bi

    scratch = Path(tempfile.mkdtemp(prefix="fanout-ref-"))
    port = bi.free_port()
    log_path = scratch / "server.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        ["timeout", "-s", "TERM", "-k", "10", str(limit_s), sys.executable, __file__,
         "--reference-server", str(port), "--reference-store", store,
         "--store-path", str(scratch / "ref.db")],
        stdout=subprocess.PIPE, stderr=log, cwd=str(ROOT),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if line != "ready":
            raise RuntimeError(f"reference server did not start, see {log_path}")
        pids = bi.descendants(proc.pid) or [proc.pid]
        fams = [
            Family(
                f"fam{f:04d}{secrets.token_hex(8)}",
                [Member(f"acc{f:04d}m{m}{secrets.token_hex(6)}", "") for m in range(FAMILY_SIZE)],
            )
            for f in range(families)
        ]
        t = Target(
            "reference",
            store,
            f"ws://127.0.0.1:{port}/ws",
            "",
            fams,
            pids,
            [],
            log_path,
            f"websockets broadcast server (1 process, pid {pids}), store {store}",
        )
        print(f"  {t.notes}", flush=True)
        bi.wait_quiet(args.quiet_wait)
        return asyncio.run(measure(t, args))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


# --- the report --------------------------------------------------------------------------------


def rows(r: Result) -> dict[str, tuple[float, str]]:
    lat = r.latencies
    return {
        "sockets open / of": (r.opened, f"{r.opened} / {r.sockets}"),
        "refused": (sum(r.refused.values()), str(sum(r.refused.values()))),
        "connect all, s": (r.connect_s, f"{r.connect_s:.1f}"),
        "server CPU per connect, ms": (r.connect_cpu_ms, f"{r.connect_cpu_ms:.2f}"),
        "server CPU idle, cores": (r.idle_cpu, f"{r.idle_cpu:.3f}"),
        "RSS before, MB": (r.rss_before, f"{r.rss_before:.0f}"),
        "RSS with sockets, MB": (r.rss_with, f"{r.rss_with:.0f}"),
        "RSS peak (sending), MB": (r.rss_peak, f"{r.rss_peak:.0f}"),
        "per connection, KiB": (r.per_conn_kib, fmt(r.per_conn_kib, ".1f")),
        "messages accepted / sent": (r.accepted, f"{r.accepted} / {r.messages - r.skipped}"),
        "deliveries expected": (r.expected, str(r.expected)),
        "deliveries received": (r.delivered, str(r.delivered)),
        "lost (echoes incl.)": (r.lost, str(r.lost)),
        "duplicated": (r.duplicated, str(r.duplicated)),
        "to a wrong socket": (r.strays, str(r.strays)),
        "delivery p50, ms": (pct(lat, 0.5), fmt(pct(lat, 0.5), ".1f")),
        "delivery p99, ms": (pct(lat, 0.99), fmt(pct(lat, 0.99), ".1f")),
        "delivery max, ms": (
            max(lat, default=float("nan")),
            fmt(max(lat, default=float("nan")), ".1f"),
        ),
        "send p99, ms": (pct(r.send_rtt, 0.99), fmt(pct(r.send_rtt, 0.99), ".1f")),
        "server CPU, cores": (r.server_cpu, f"{r.server_cpu:.2f}"),
        "server CPU per message, ms": (r.cpu_ms_per_message, f"{r.cpu_ms_per_message:.2f}"),
        "db CPU, cores": (r.db_cpu, fmt(r.db_cpu, ".2f")),
        "client CPU, cores": (r.client_cpu, f"{r.client_cpu:.2f}"),
        "others, cores": (r.others, f"{r.others:.2f}"),
    }


RATIO_ROWS = (
    "connect all, s",
    "server CPU per connect, ms",
    "RSS with sockets, MB",
    "per connection, KiB",
    "delivery p50, ms",
    "delivery p99, ms",
    "delivery max, ms",
    "send p99, ms",
    "server CPU per message, ms",
)


def report(results: list[Result], args: argparse.Namespace) -> None:
    if not results:
        return
    refs = [r for r in results if r.name == "reference"]
    kares = [r for r in results if r.name == "kares"]
    cols = [(f"{r.name[:3]} {r.db}", rows(r)) for r in results]
    pairs = [(k, f) for k in kares for f in refs]
    head = f"  {'':<28}" + "".join(f"{c:>15}" for c, _ in cols)
    head += "".join(f"{f'{k.db[:6]}/{f.db}':>15}" for k, f in pairs)
    print(
        f"\n== fan-out: {args.families} families of {FAMILY_SIZE} ({args.families * FAMILY_SIZE} "
        f"sockets), {args.messages} messages at {args.rate:g}/s, one server process =="
    )
    print(head)
    for key in cols[0][1]:
        line = f"  {key:<28}" + "".join(f"{c[key][1]:>15}" for _, c in cols)
        for k, f in pairs:
            v, rv = rows(k)[key][0], rows(f)[key][0]
            ok = key in RATIO_ROWS and v == v and rv == rv and rv > 0
            line += f"{(f'{v / rv:.2f}x' if ok else ''):>15}"
        print(line)
    print(
        "  kar = Kares (its database), ref = the websockets broadcast server (none: in memory; "
        "sqlite: an INSERT and COMMIT per message); the last columns: Kares / reference"
    )
    for r in results:
        if r.send_errors or r.refused or r.log_errors or r.dropped_sockets:
            print(
                f"  {r.name} {r.db}: send errors {r.send_errors or 0}, refused {r.refused or 0}, "
                f"sockets ended during the run {r.dropped_sockets} {r.dropped_why or ''}, "
                f"log lines with ERROR {len(r.log_errors)}"
            )
            for ln in r.log_errors[:5]:
                print(f"    {ln[:200]}")
        if r.client_lag_ms > 100:
            print(f"  !! {r.name} {r.db}: the sender fell {r.client_lag_ms:.0f} ms behind its plan")
    print(
        "  latency: from just before the POST (reference: the send frame) to the frame read on "
        "another member's socket; lost counts every member's socket, the sender's own included; "
        "CPU: over the send window and drain (100% = one core)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    p.add_argument("--families", type=int, default=250, help="families of four (sockets / 4)")
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--rate", type=float, default=25.0, help="messages a second (open loop)")
    p.add_argument("--body-bytes", type=int, default=100)
    p.add_argument("--connect-batch", type=int, default=50, help="handshakes in flight at once")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p.add_argument(
        "--settle", type=float, default=10.0, help="s idle after connecting (idle CPU, RSS)"
    )
    p.add_argument("--drain", type=float, default=20.0, help="s to wait after the last send")
    p.add_argument("--max-inflight", type=int, default=64, help="sends in flight at most")
    p.add_argument(
        "--reference-store",
        default="none,sqlite",
        help="reference runs: comma separated of none, sqlite ('' for no reference)",
    )
    p.add_argument("--no-kares", action="store_true", help="only the reference")
    p.add_argument("--reuse", default="", help="SQLite: seed this var dir once and reuse it")
    p.add_argument("--quiet-wait", type=float, default=60.0)
    p.add_argument("--max-seconds", type=float, default=2400.0, help="bound on the whole run")
    p.add_argument("--json-out", default="")
    p.add_argument(
        "--profile", default="", help="py-spy the Kares server while it sends, into FILE.<db>"
    )
    # the reference server (this script, as a child)
    p.add_argument("--reference-server", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--store-path", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.reference_server:
        return reference_server(args.reference_server, args.reference_store, args.store_path)
    for name, lo, hi in (
        ("families", 1, 2500),
        ("messages", 1, 100_000),
        ("rate", 0.1, 2000),
        ("connect_batch", 1, 1000),
        ("drain", 0, 300),
        ("max_inflight", 1, 1000),
        ("body_bytes", 30, 4000),
    ):
        if not lo <= getattr(args, name) <= hi:
            p.error(f"--{name.replace('_', '-')} must be within {lo}..{hi}")
    stores = [s for s in args.reference_store.split(",") if s]
    if any(s not in ("none", "sqlite") for s in stores):
        p.error("--reference-store: none, sqlite")
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from bench_ingest import machine

    n = args.families * FAMILY_SIZE
    fds = raise_fd_limit(2 * n + 1024)  # the servers inherit it
    print(f"bench_fanout {datetime.now(UTC).isoformat(timespec='seconds')}  {machine()}")
    print(
        f"  {args.families} families x {FAMILY_SIZE} = {n} sockets, {args.messages} messages at "
        f"{args.rate:g}/s, connect {args.connect_batch} at a time; descriptor limit {fds}; "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    limit = int(args.max_seconds) + 120
    deadline = time.monotonic() + args.max_seconds
    results: list[Result] = []
    dbs = [] if args.no_kares else (["sqlite", "postgresql"] if args.db == "both" else [args.db])
    plan = [("kares", d) for d in dbs] + [("reference", s) for s in stores]
    for kind, what in plan:
        if time.monotonic() > deadline:
            print(f"  !! --max-seconds reached: {kind} {what} not run")
            continue
        try:
            if kind == "kares":
                r = run_kares(what, args, limit)
            else:
                r = run_reference(what, args.families, args, limit)
        except subprocess.CalledProcessError as exc:
            print(f"  !! {kind} {what}: {exc}; {str(exc.stderr)[-300:]}")
            continue
        results.append(r)
        print(
            f"    {r.name} {r.db}: {r.delivered}/{r.expected} deliveries, lost {r.lost}, dup "
            f"{r.duplicated}, p50 {pct(r.latencies, 0.5):.1f} ms, p99 "
            f"{pct(r.latencies, 0.99):.1f} ms; RSS {r.rss_before:.0f} -> {r.rss_with:.0f} MB",
            flush=True,
        )
    report(results, args)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                [
                    {
                        **{
                            k: v
                            for k, v in r.__dict__.items()
                            if k not in ("latencies", "send_rtt")
                        },
                        "p50_ms": pct(r.latencies, 0.5),
                        "p99_ms": pct(r.latencies, 0.99),
                        "per_conn_kib": r.per_conn_kib,
                    }
                    for r in results
                ],
                indent=1,
            )
        )
    bad = any(r.lost or r.duplicated or r.strays for r in results)
    return 1 if bad or not results else 0


if __name__ == "__main__":
    raise SystemExit(main())
