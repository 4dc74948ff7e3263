# ruff: noqa: S603, S607  (fixed local commands)
"""Many open live maps on one process: do ordinary requests stay as fast as with none?

One run, one ``kares serve`` (one process; SQLite by default, or the test suite's
throwaway PostgreSQL with --db postgresql), seeded with ``kares demo`` (4 members
in one family, sharing live). The streams are opened --reps times; around each:

  1. without streams: ``GET /api/v1/me`` at a fixed rate (open loop: request i is
     sent at t0 + i/rate whatever happened to the ones before; its latency counts
     from that planned moment, so a stalled server cannot hide its stall), p50,
     p99, max, non-2xx;
  2. N streams opened (``GET /api/v1/location/stream``, the bearer tokens of the
     four members in turn) by a separate holder process (this script with --hold,
     a raw HTTP/1.1 client per stream, so the load generator does not share its
     event loop): how many were answered 200, how many refused (another status, a
     reset, a time-out), whether each got its first ``snapshot`` event;
  3. with the N streams open and waiting: the same load, same rate, same length;
  4. (first time only) the same load again while --moves location uploads by one
     member (``POST /api/v1/location/fixes``) fan out to every stream: how long
     until each stream (the mover's own and the other members') gets its
     ``location`` event, and what the fan-out does to ordinary requests;
  5. the streams closed; then 1. again.

It prints the figures side by side and the ratio with / without (medians over
the runs; the target: p99 within 2x, no stream refused). Also: every non-2xx
answer, the streams the server ended before the holder closed them, the lines
of the server's log that say ERROR or name a pool time-out, and on PostgreSQL,
sampled from outside every 0.5 s (pg_stat_activity), the connections the server
holds and how many sit idle inside a transaction. (SQLite's pool cannot be seen
from outside: a closed connection's descriptors stay open while others of the
process hold locks on the file.)

    .venv/bin/python bench/bench_streams.py          # 1,000 streams, 50 req/s, 20 s, 2 reps
    .venv/bin/python bench/bench_streams.py --db postgresql --streams 1000 --reps 2
    # before/after: the same run with the server's code from another checkout
    git archive <commit> src | tar -x -C /tmp/old && \\
      .venv/bin/python bench/bench_streams.py --server-src /tmp/old/src

Only 127.0.0.1 is used. Every loop is bounded by a count and a time; the server
and the holder run under ``timeout`` and are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

STREAM_PATH = "/api/v1/location/stream"
FIXES_PATH = "/api/v1/location/fixes"


def pct(xs: Sequence[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))]


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the holder: N raw SSE clients in one process (this script with --hold) ---------------------


@dataclass
class Stream:
    index: int
    token: str
    status: int | None = None
    refused: str = ""  # why it was not opened (status, reset, time-out)
    snapshot_at: float | None = None  # monotonic time of the first snapshot event
    ended: str = ""  # an `end` event or the connection closing before we closed it
    moves: dict[str, list[float]] = field(default_factory=dict)  # about -> arrival times
    writer: asyncio.StreamWriter | None = None


_SEP = re.compile(rb"\r?\n\r?\n")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = await reader.readline()
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ConnectionError(f"bad status line {line!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for _ in range(100):
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


async def _chunks(reader: asyncio.StreamReader, headers: dict[str, str]) -> Any:
    """The body, piece by piece (chunked or until the connection closes)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readline()
            if not size_line:
                return
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


async def run_stream(st: Stream, port: int, open_timeout: float, opened: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), open_timeout
        )
    except (OSError, TimeoutError) as exc:
        st.refused = f"connect: {type(exc).__name__}"
        opened.set()
        return
    st.writer = writer
    try:
        writer.write(
            (
                f"GET {STREAM_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {st.token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        st.status, headers = await asyncio.wait_for(_read_head(reader), open_timeout)
        if st.status != 200:
            st.refused = f"HTTP {st.status}"
            opened.set()
            return
        buf = b""
        async for data in _chunks(reader, headers):
            buf += data
            while True:
                m = _SEP.search(buf)
                if m is None:
                    break
                block, buf = buf[: m.start()], buf[m.end() :]
                _on_event(st, block)
                if st.snapshot_at is not None:
                    opened.set()
        if not st.ended:
            st.ended = "closed by the server"
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
        if st.status is None:
            st.refused = f"{type(exc).__name__}"
        elif not st.ended:
            st.ended = f"{type(exc).__name__}"
    finally:
        opened.set()
        writer.close()


def _on_event(st: Stream, block: bytes) -> None:
    now = time.monotonic()
    event, data = "", []
    for line in block.decode("utf-8", "replace").splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if event == "snapshot" and st.snapshot_at is None:
        st.snapshot_at = now
    elif event == "location":
        about = json.loads("\n".join(data)).get("account_id", "")
        st.moves.setdefault(about, []).append(now)
    elif event == "end":
        st.ended = "end: " + "\n".join(data)


async def hold(args: argparse.Namespace) -> int:
    """Open the streams, report, then answer `collect` commands on stdin until `close`."""
    tokens = args.token_list
    streams = [Stream(i, tokens[i % len(tokens)]) for i in range(args.hold)]
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(args.open_concurrency)
    tasks: list[asyncio.Task[None]] = []

    async def open_one(st: Stream) -> None:
        ev = asyncio.Event()
        async with gate:
            tasks.append(asyncio.create_task(run_stream(st, args.port, args.open_timeout, ev)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), args.open_timeout)

    t0 = time.monotonic()
    await asyncio.gather(*(open_one(st) for st in streams))
    opened_s = time.monotonic() - t0

    def out(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def summary() -> dict[str, Any]:
        refused: dict[str, int] = {}
        for st in streams:
            if st.refused:
                refused[st.refused] = refused.get(st.refused, 0) + 1
        ended: dict[str, int] = {}
        for st in streams:
            if st.ended:
                ended[st.ended[:80]] = ended.get(st.ended[:80], 0) + 1
        return {
            "streams": len(streams),
            "ok": sum(1 for st in streams if st.status == 200),
            "refused": refused,
            "snapshots": sum(1 for st in streams if st.snapshot_at is not None),
            "ended": ended,
        }

    out({"opened": summary(), "seconds": opened_s})
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    for _ in range(10_000):  # bounded: the parent sends a few commands
        line = (await reader.readline()).decode().strip()
        if not line or line == "close":
            break
        cmd, *rest = line.split()
        if cmd == "collect":
            about, since, limit = rest
            since_f, deadline = float(since), time.monotonic() + float(limit)

            def got(st: Stream, about: str = about, since_f: float = since_f) -> float | None:
                times = [t for t in st.moves.get(about, []) if t >= since_f]
                return times[0] if times else None

            while time.monotonic() < deadline:
                if all(got(st) is not None for st in streams if st.status == 200 and not st.ended):
                    break
                await asyncio.sleep(0.01)
            arrivals = [(st.index, got(st)) for st in streams if st.status == 200]
            out(
                {
                    "arrivals": [(i, a - since_f) for i, a in arrivals if a is not None],
                    "missing": sum(1 for _, a in arrivals if a is None),
                    "summary": summary(),
                }
            )
        elif cmd == "status":
            out({"summary": summary()})
    final = summary()
    for st in streams:
        if st.writer is not None:
            st.writer.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out({"closed": final})
    return 0


class Holder:
    """The holder process, driven over its stdin/stdout."""

    def __init__(self, port: int, tokens_file: Path, n: int, args: argparse.Namespace) -> None:
        cmd = [
            sys.executable, __file__, "--hold", str(n), "--port", str(port),
            "--tokens", str(tokens_file), "--open-timeout", str(args.open_timeout),
            "--open-concurrency", str(args.open_concurrency),
        ]  # fmt: skip
        limit = int(args.max_seconds)
        self.proc = subprocess.Popen(
            ["timeout", "-s", "TERM", "-k", "10", str(limit), *cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )

    def read(self, limit_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(limit_s)
        if not box or not box[0]:
            raise RuntimeError("the stream holder did not answer")
        return dict(json.loads(box[0]))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self, limit_s: float = 60) -> dict[str, Any] | None:
        res = None
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.send("close")
                res = self.read(limit_s)
            try:
                self.proc.wait(limit_s)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(15)
        return res


# --- the load and the observations ------------------------------------------------------------


@dataclass
class Load:
    label: str
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    late_s: float = 0.0  # how far behind its plan the sender fell at most
    slow: list[tuple[float, float]] = field(default_factory=list)  # (planned, s) of the slowest

    def line(self) -> str:
        lat = self.latencies
        bad = sum(n for s, n in self.statuses.items() if not 200 <= s < 300)
        return (
            f"{self.label:<28} n={len(lat):>5}  p50 {pct(lat, 0.5) * 1000:7.2f} ms  "
            f"p99 {pct(lat, 0.99) * 1000:7.2f} ms  max {max(lat, default=float('nan')) * 1000:7.1f}"
            f" ms  non-2xx {bad}  errors {sum(self.errors.values())}"
        )


async def me_load(url: str, tokens: list[str], rate: float, seconds: float, label: str) -> Load:
    """GET /api/v1/me at `rate` per second for `seconds`, open loop."""
    import httpx

    res = Load(label)
    n = int(rate * seconds)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=httpx.Limits(max_connections=64)
    ) as c:
        for i in range(20):  # warm the client's connections and the server's caches
            await c.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens[i % 4]}"})

        async def one(i: int, planned: float) -> None:
            try:
                r = await c.get(
                    "/api/v1/me", headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                )
                res.statuses[r.status_code] = res.statuses.get(r.status_code, 0) + 1
            except httpx.HTTPError as exc:
                res.errors[type(exc).__name__] = res.errors.get(type(exc).__name__, 0) + 1
                return
            res.latencies.append(time.monotonic() - planned)
            res.slow.append((planned, res.latencies[-1]))

        t0 = time.monotonic() + 0.05
        tasks = []
        for i in range(n):
            planned = t0 + i / rate
            delay = planned - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            res.late_s = max(res.late_s, -delay)
            tasks.append(asyncio.create_task(one(i, planned)))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    return res


class Sampler:
    """Every 0.5 s, from outside the server: the database connections it holds
    (PostgreSQL: pg_stat_activity), and how many sit idle inside a transaction."""

    def __init__(self, kind: str, pg_dsn: str) -> None:
        self.kind, self.dsn = kind, pg_dsn
        self.samples: list[tuple[float, int, int]] = []  # (t, connections, in a transaction)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _pg(self, conn: Any) -> tuple[int, int]:
        rows = conn.fetch_states()
        return len(rows), sum(1 for s in rows if s.startswith("idle in transaction"))

    def _run(self) -> None:
        pg = _PgStates(self.dsn) if self.kind == "postgresql" else None
        try:
            for _ in range(100_000):  # bounded; stopped by stop()
                if self._stop.is_set():
                    break
                # SQLite: nothing to see from outside (a closed connection's descriptors
                # stay open while other connections of the process hold locks on the file)
                n, tx = self._pg(pg) if pg is not None else (0, -1)
                self.samples.append((time.monotonic(), n, tx))
                self._stop.wait(0.5)
        finally:
            if pg is not None:
                pg.close()

    def start(self) -> Sampler:
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join(10)

    def between(self, a: float, b: float) -> tuple[int, int]:
        xs = [(n, tx) for t, n, tx in self.samples if a <= t <= b]
        return max((n for n, _ in xs), default=0), max((tx for _, tx in xs), default=0)


class _PgStates:
    """pg_stat_activity of the Kares database, from a thread (its own event loop)."""

    def __init__(self, dsn: str) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(dsn))

    def fetch_states(self) -> list[str]:
        rows = self.loop.run_until_complete(
            self.conn.fetch(
                "SELECT coalesce(state, '') AS state FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return [r["state"] for r in rows]

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def log_problems(path: Path, start: int) -> list[str]:
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    pat = re.compile(r"ERROR|Traceback|QueuePool|TimeoutError|too many open files", re.I)
    return [ln for ln in text.splitlines() if pat.search(ln)]


def upload_body(i: int) -> bytes:
    t = datetime.now(UTC) - timedelta(seconds=1)
    fix = {"id": f"stream-bench-{i}-{time.time_ns()}", "t": t.isoformat(), "accuracy_m": 8,
           "lat": 31.2304 + i * 1e-4, "lon": 121.4737}  # fmt: skip
    return json.dumps({"fixes": [fix]}).encode()


# --- the run -----------------------------------------------------------------------------------


def moves(
    url: str, mover: Any, others_of: int, holder: Holder, n: int, bound: float, gap: float
) -> dict[str, Any]:
    """n uploads by `mover`, `gap` s apart: when each reached each open stream."""
    import httpx

    delays: list[float] = []
    missing = others = 0
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(n):
            since = time.monotonic()
            r = c.post(
                FIXES_PATH,
                content=upload_body(i),
                headers={"Authorization": f"Bearer {mover.token}",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            if r.status_code != 200 or r.json().get("accepted") != 1:
                raise RuntimeError(f"upload refused: {r.status_code} {r.text[:200]}")
            holder.send(f"collect {mover.account_id} {since} {bound}")
            got = holder.read(bound + 30)
            these = [d for _, d in got["arrivals"]]
            delays += these
            others += sum(1 for k, _ in got["arrivals"] if k % others_of != 0)
            missing += got["missing"]
            print(f"    upload {i + 1}: reached {len(these)} streams, missing {got['missing']}; "
                  f"slowest {max(these, default=0):.2f} s", flush=True)  # fmt: skip
            time.sleep(max(0.0, since + gap - time.monotonic()))
    return {"delays": delays, "missing": missing, "others": others, "n": n}


class Profile:
    """py-spy on the server for a while (--profile FILE): collapsed stacks."""

    def __init__(self, path: str, pid: int, seconds: float) -> None:
        self.proc = None
        if path:
            spy = Path(sys.executable).parent / "py-spy"
            self.proc = subprocess.Popen(
                [str(spy), "record", "--pid", str(pid), "--output", path, "--format", "raw",
                 "--rate", "250", "--duration", str(int(seconds)), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

    def wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--rate", type=float, default=50, help="GET /api/v1/me per second")
    p.add_argument("--seconds", type=float, default=20, help="length of each load")
    p.add_argument("--reps", type=int, default=2, help="times the streams are opened (each "
                   "with a load before and after)")  # fmt: skip
    p.add_argument("--moves", type=int, default=5, help="uploads while the streams are open "
                   "(during a load of their own)")  # fmt: skip
    p.add_argument("--move-bound", type=float, default=10, help="seconds an upload may take "
                   "to reach every stream")  # fmt: skip
    p.add_argument("--open-timeout", type=float, default=30)
    p.add_argument("--open-concurrency", type=int, default=100)
    p.add_argument("--profile", default="", help="py-spy the server during the uploads into "
                   "this file (collapsed stacks)")  # fmt: skip
    p.add_argument("--server-src", default="", help="run the server from this src/ (another "
                   "checkout's), for a before/after comparison")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=1200, help="bound on the whole run")
    p.add_argument("--quiet-wait", type=float, default=60)
    # the holder process
    p.add_argument("--hold", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--tokens", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 0 < args.streams <= 10_000 or not 0 < args.rate <= 1000 or not 0 < args.seconds <= 300:
        p.error("--streams 1..10000, --rate 1..1000, --seconds 1..300")
    if not 1 <= args.reps <= 10 or not 0 <= args.moves <= 100:
        p.error("--reps 1..10, --moves 0..100")
    if args.hold:
        raise_fd_limit(args.hold + 256)
        args.token_list = json.loads(Path(args.tokens).read_text())
        return asyncio.run(hold(args))

    from bench_ingest import LoadMeter, Server, machine, make_instance, wait_quiet

    fds = raise_fd_limit(2 * args.streams + 1024)  # the server and the holder inherit it
    print(f"bench_streams {datetime.now(UTC).isoformat(timespec='seconds')}  {machine()}")
    print(f"  {args.db}; {args.streams} streams, opened {args.reps} times; GET /api/v1/me at "
          f"{args.rate:g}/s for {args.seconds:g} s per load (open loop); descriptor limit {fds}",
          flush=True)  # fmt: skip
    started = time.monotonic()
    deadline = started + args.max_seconds
    inst = make_instance(args.db)
    holder: Holder | None = None
    try:
        tokens = [m.token for m in inst.members]
        tokens_file = inst.var_dir / "bench-tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        env = dict(inst.env)
        if args.server_src:
            env["PYTHONPATH"] = str(Path(args.server_src).resolve())
        with Server(env, hard_limit_s=int(args.max_seconds) + 60) as srv:
            pids = srv.pids() or [srv.proc.pid]
            log0 = srv.log_path.stat().st_size
            src = f", code from {env['PYTHONPATH']}" if args.server_src else ""
            print(f"  kares serve on {srv.url} (pid {pids}), log {srv.log_path}{src}", flush=True)
            sampler = Sampler(args.db, inst.pg_dsn if args.db == "postgresql" else "").start()
            rows: list[tuple[Load, tuple[int, int], Any]] = []
            without: list[Load] = []
            with_: list[Load] = []
            opened: list[dict[str, Any]] = []
            ended: list[dict[str, Any]] = []
            held: list[tuple[int, int]] = []
            moved: dict[str, Any] = {}

            def run_load(label: str, during: Any = None) -> Load:
                if time.monotonic() > deadline:
                    raise RuntimeError("--max-seconds reached")
                wait_quiet(args.quiet_wait)
                a = time.monotonic()
                side: list[Any] = []
                t = None
                if during is not None:
                    t = threading.Thread(target=lambda: side.append(during()), daemon=True)
                    t.start()
                with LoadMeter(pids) as cpu:
                    res = asyncio.run(me_load(srv.url, tokens, args.rate, args.seconds, label))
                if t is not None:
                    t.join(args.seconds + args.moves * (args.move_bound + 40))
                    if side:
                        moved.update(side[0])
                rows.append((res, sampler.between(a, time.monotonic()), cpu))
                print("  " + res.line() + f"; server CPU {cpu.server:.2f} cores, others "
                      f"{cpu.others:.2f}", flush=True)  # fmt: skip
                return res

            without.append(run_load("without streams"))
            for rep in range(args.reps):
                a = time.monotonic()
                holder = Holder(srv.port, tokens_file, args.streams, args)
                o = holder.read(args.open_timeout * (args.streams / args.open_concurrency + 2))
                opened.append(o)
                oo = o["opened"]
                print(f"  opened {oo['ok']} of {oo['streams']} streams in {o['seconds']:.1f} s; "
                      f"refused {sum(oo['refused'].values())} {oo['refused'] or ''}; first "
                      f"snapshot: {oo['snapshots']}; ended early: {oo['ended'] or 0}",
                      flush=True)  # fmt: skip
                with_.append(run_load(f"with {args.streams} streams"))
                if rep == 0 and args.moves:
                    gap = max(1.0, args.seconds / args.moves)
                    prof = Profile(args.profile, pids[0], args.seconds)
                    h = holder

                    def during(h: Holder = h, gap: float = gap) -> dict[str, Any]:
                        return moves(
                            srv.url, inst.members[0], len(tokens), h, args.moves,
                            args.move_bound, gap,
                        )  # fmt: skip

                    run_load(f"with {args.streams}, uploads", during)
                    prof.wait()
                holder.send("status")
                ended.append(holder.read(30)["summary"])
                held.append(sampler.between(a, time.monotonic()))
                holder.close()
                holder = None
                time.sleep(2)
                without.append(run_load("without streams"))
            sampler.stop()
            problems = log_problems(srv.log_path, log0)

        # --- the report
        print(f"\n== GET /api/v1/me, open loop at {args.rate:g}/s for {args.seconds:g} s per "
              "run (latency counted from the planned send) ==")  # fmt: skip
        for res, (conns, tx), cpu in rows:
            pg = f"; db connections <= {conns}, idle in a transaction <= {tx}" if tx >= 0 else ""
            print(f"  {res.line()}; server CPU {cpu.server:.2f}, others {cpu.others:.2f}{pg}")

        def med(loads: list[Load], q: float) -> float:
            return statistics.median(pct(x.latencies, q) for x in loads)

        r50 = med(with_, 0.5) / med(without, 0.5)
        r99 = med(with_, 0.99) / med(without, 0.99)
        print(f"  median over runs: without p50 {med(without, 0.5) * 1000:.2f} ms, p99 "
              f"{med(without, 0.99) * 1000:.2f} ms; with {args.streams} streams p50 "
              f"{med(with_, 0.5) * 1000:.2f} ms, p99 {med(with_, 0.99) * 1000:.2f} ms")  # fmt: skip
        print(f"  ratio with / without: p50 {r50:.2f}x, p99 {r99:.2f}x "
              f"(p99 within 2x: {'yes' if r99 <= 2 else 'NO'})")  # fmt: skip
        print(f"\n== {args.streams} streams, opened {len(opened)} times ==")
        for k, o in enumerate(opened):
            oo, e = o["opened"], ended[k] if k < len(ended) else {}
            conns, tx = held[k] if k < len(held) else (0, -1)
            pg = (f"; the server's db connections <= {conns}, idle in a transaction <= {tx}"
                  if tx >= 0 else "")  # fmt: skip
            print(f"  {k + 1}: answered 200: {oo['ok']}, refused or non-2xx: "
                  f"{sum(oo['refused'].values())} {oo['refused'] or ''}; first snapshot: "
                  f"{oo['snapshots']}; opening took {o['seconds']:.1f} s; ended by the server "
                  f"before we closed them: {sum(e.get('ended', {}).values())} "
                  f"{e.get('ended') or ''}{pg}")  # fmt: skip
        if moved:
            d = moved["delays"]
            ok = not moved["missing"] and max(d, default=0) <= args.move_bound
            print(f"  {moved['n']} uploads by {inst.members[0].name}: {len(d)} deliveries "
                  f"({moved['others']} to the other members' streams), {moved['missing']} "
                  f"missing; delay from the POST p50 {pct(d, 0.5) * 1000:.0f} ms, p99 "
                  f"{pct(d, 0.99) * 1000:.0f} ms, max {max(d, default=float('nan')) * 1000:.0f} "
                  f"ms (bound {args.move_bound:g} s: {'met' if ok else 'MISSED'})")  # fmt: skip
        bad = sum(n for res, _, _ in rows for s, n in res.statuses.items() if not 200 <= s < 300)
        print(f"  non-2xx answers to GET /api/v1/me: {bad}; server log lines with ERROR / "
              f"pool time-outs: {len(problems)}")  # fmt: skip
        for ln in problems[:10]:
            print(f"    {ln[:200]}")
        if args.db == "sqlite":
            print(
                "  (SQLite: the pool's check-outs are not observable from outside; the "
                "descriptors of the file stay open after a close while others hold locks)"
            )
        print(f"  whole run {time.monotonic() - started:.0f} s")
        return 0
    finally:
        if holder is not None:
            holder.close(10)
        inst.close()


if __name__ == "__main__":
    raise SystemExit(main())
