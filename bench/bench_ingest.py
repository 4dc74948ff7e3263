# ruff: noqa: S603, S607, S608  (fixed local commands; SQL from constant table names)
"""Native batch ingestion throughput, durable, against raw executemany into the same database.

What it measures (points per second, median of --reps runs of --points points each):

  (a) ``kares.location.service.ingest`` called in this process with 1,000-fix
      batches, one session and one transaction (commit included) per batch:
      validation, the insert (a retry is found by what the insert skipped), the
      person's last location, the places check and the event;
  (b) end to end over HTTP: ``kares serve`` (the real ASGI app under uvicorn, one
      process) on 127.0.0.1, and 1 or 4 httpx clients in this process (keep-alive),
      each POSTing 1,000-fix batches to ``/api/v1/location/fixes`` with a demo
      member's bearer token (4 clients: 4 different members). The request bodies
      are encoded before the clock starts.

The reference, measured in the same run and the same database file/server: the
driver alone (``sqlite3`` of the standard library, or ``asyncpg``) doing
``executemany`` of the same rows, all 17 columns that ``ingest`` writes, into an
identical table (same columns, the same foreign keys, the same unique index on
(account_id, client_id), the same index on (account_id, recorded_ms)), with the
same ``ON CONFLICT (account_id, client_id) DO NOTHING``, one transaction per 1,000
rows. Turning the fixes into row tuples is inside the timed part. On PostgreSQL a
``COPY`` (asyncpg ``copy_records_to_table``, no conflict handling) is printed too.

Durability: SQLite in WAL mode with synchronous=NORMAL, as the app configures
it (and, unless --no-full, synchronous=FULL too). PostgreSQL is a throwaway
server from tests/support/pgserver.py, restarted with its defaults for durability
(fsync=on, synchronous_commit=on, full_page_writes=on) -- the test server runs
with fsync off, which would not be a durable figure.

Both tables are emptied before every measurement, so every run starts from the
same state. Runs are interleaved (raw and ingest alternate, in alternating order).

    .venv/bin/python bench/bench_ingest.py --db both --points 100000 --reps 3

Only 127.0.0.1 is used. Every loop is bounded by a count and by --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCH = 1000
# issue 11: (a) at least this share of raw executemany's points/s; (b) p99 per request
TARGET_SQLITE = 0.67
TARGET_POSTGRESQL = 0.8
TARGET_P99_MS = 200.0
RAW_TABLE = "bench_raw_fixes"
# the columns ingest writes: the raw reference writes exactly these
from kares.location.service import FIX_COLUMNS as COLUMNS  # noqa: E402

# --- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_rate(x: float) -> str:
    return "-" if x != x else f"{x:,.0f}"


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def now_ms() -> int:
    return int(time.time() * 1000)


# --- a Kares instance: a fresh var dir (SQLite) or database (PostgreSQL), migrated, demo seeded


@dataclass
class Member:
    name: str
    token: str
    tracker_user: str
    tracker_secret: str
    account_id: str = ""
    device_id: str | None = None


@dataclass
class Instance:
    kind: str  # sqlite | postgresql
    var_dir: Path
    env: dict[str, str]
    members: list[Member]
    pg: Any = None  # tests.support.pgserver.PgServer

    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "kares.db"

    @property
    def pg_dsn(self) -> str:
        assert self.pg is not None
        return f"postgresql://postgres@127.0.0.1:{self.pg.port}/kares_test"

    def close(self) -> None:
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.stop()
        shutil.rmtree(self.var_dir, ignore_errors=True)


def start_durable_pg() -> Any:
    """The test suite's throwaway server (initdb, database kares_test), restarted
    without its fsync=off / synchronous_commit=off / full_page_writes=off."""
    from tests.support.pgserver import PgServer, _bin

    srv = PgServer.start()
    data = str(srv.root / "data")
    try:
        srv._run(_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "-t", "60", "stop")
        opts = f"-p {srv.port} -k {srv.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        srv._run(
            _bin("pg_ctl"), "-D", data, "-o", opts, "-l", str(srv.root / "log"), "-w", "-t",
            "60", "start",
        )  # fmt: skip
    except Exception:
        srv.stop()
        raise
    return srv


def kares_env(var_dir: Path, database_url: str = "", log_level: str = "WARNING") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARES_")}
    env.update(
        KARES_VAR_DIR=str(var_dir),
        KARES_ENV="development",
        KARES_JOBS_WORKER="false",
        KARES_LOG_LEVEL=log_level,
    )
    if database_url:
        env["KARES_DATABASE_URL"] = database_url
    return env


def seed(env: dict[str, str]) -> list[Member]:
    """`kares migrate` then `kares demo --json`: 4 members, bearer tokens, tracker credentials."""
    kares = str(VENV_BIN / "kares")
    subprocess.run([kares, "migrate"], env=env, check=True, timeout=180, capture_output=True)
    out = subprocess.run(
        [kares, "demo", "--json"], env=env, check=True, timeout=180, capture_output=True, text=True
    ).stdout
    data = json.loads(out)
    items = data["members"] if isinstance(data, dict) and "members" in data else data
    return [
        Member(
            name=m["name"],
            token=m["token"],
            tracker_user=m["tracker"]["username"],
            tracker_secret=m["tracker"]["secret"],
        )
        for m in items
    ]


def _token_hash(token: str) -> str:
    from kares import crypto

    return crypto.token_hash(token)


async def _resolve_members_pg(dsn: str, members: list[Member]) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for m in members:
            row = await conn.fetchrow(
                "SELECT account_id, device_id FROM sessions WHERE token_hash = $1",
                _token_hash(m.token),
            )
            m.account_id, m.device_id = row["account_id"], row["device_id"]
    finally:
        await conn.close()


def make_instance(kind: str, log_level: str = "WARNING") -> Instance:
    var_dir = Path(tempfile.mkdtemp(prefix=f"kares-bench-{kind}-"))
    pg = None
    try:
        if kind == "postgresql":
            pg = start_durable_pg()
            env = kares_env(var_dir, pg.url, log_level)
        else:
            env = kares_env(var_dir, "", log_level)
        members = seed(env)
        inst = Instance(kind, var_dir, env, members, pg)
        if kind == "postgresql":
            asyncio.run(_resolve_members_pg(inst.pg_dsn, members))
        else:
            con = sqlite3.connect(inst.sqlite_path)
            try:
                for m in members:
                    m.account_id, m.device_id = con.execute(
                        "SELECT account_id, device_id FROM sessions WHERE token_hash = ?",
                        (_token_hash(m.token),),
                    ).fetchone()
            finally:
                con.close()
        return inst
    except BaseException:
        if pg is not None:
            pg.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
        raise


# --- a Kares server as a subprocess --------------------------------------------------------------


class Server:
    """`kares serve` (or uvicorn with workers) on 127.0.0.1, bounded by `timeout`."""

    redis: subprocess.Popen[bytes] | None = None

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        hard_limit_s: int = 3600,
        log_path: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if command is not None:  # another ASGI app under uvicorn (bench_owntracks' floor)
            cmd = [*command, "--host", "127.0.0.1", "--port", str(self.port)]
        elif workers == 1:
            cmd = [
                str(VENV_BIN / "kares"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ]
        else:
            # several processes share their live notices through Redis (kares serve
            # refuses --workers without it): a redis-server of the bench's own on
            # loopback, whose CPU counts as the server's
            cmd = [str(VENV_BIN / "kares"), "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(workers)]  # fmt: skip
            if not env.get("KARES_REDIS_URL"):
                redis_port = free_port()
                self.redis = subprocess.Popen(
                    ["timeout", "-s", "TERM", "-k", "10", str(hard_limit_s), "redis-server",
                     "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                env = {**env, "KARES_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="kares-serve-", suffix=".log")[1])
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["timeout", "-s", "TERM", "-k", "10", str(hard_limit_s), *cmd],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
        )
        self.workers = workers

    def wait_ready(self, limit_s: float = 90) -> None:
        import httpx

        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early, see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {limit_s}s, see {self.log_path}")

    def pids(self) -> list[int]:
        """The server processes (uvicorn's workers included), below `timeout`, and
        the bench's own Redis when it started one."""
        extra = descendants(self.redis.pid) if self.redis is not None else []
        return descendants(self.proc.pid) + extra

    def roots(self) -> list[int]:
        """The `timeout` processes above the server and its Redis (CPU accounting)."""
        return [self.proc.pid] + ([self.redis.pid] if self.redis is not None else [])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # `timeout` passes SIGTERM on to the server
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(20)
        self._log.close()

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for k in Path(f"/proc/{p}/task/{p}/children").read_text().split():
                out.append(int(k))
                todo.append(int(k))
    return out


def tree_cpu(roots: Sequence[int]) -> float:
    """CPU seconds of each root process and everything below it, including children that
    have already exited and been waited for (cutime/cstime of their parent)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for root in roots:
        for pid in [root, *descendants(root)]:
            with contextlib.suppress(OSError, IndexError, ValueError):
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / tick


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime+stime of these processes, from /proc (clock ticks -> seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


class LoadMeter:
    """CPU over a measurement, in cores: the whole machine, this process (and its waited-for
    children, e.g. wrk), given server processes, and the rest ("others": other people's jobs
    on a shared machine -- a run with much of it is noisy)."""

    def __init__(self, roots: Sequence[int] = ()) -> None:
        self.roots = list(roots)

    @staticmethod
    def _machine() -> tuple[int, int]:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(vals) - vals[3] - vals[4], sum(vals)  # busy (not idle/iowait), total

    @staticmethod
    def _own() -> float:
        import resource

        a = resource.getrusage(resource.RUSAGE_SELF)
        b = resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    def __enter__(self) -> LoadMeter:
        self.m0, self.o0, self.s0 = self._machine(), self._own(), tree_cpu(self.roots)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        el = time.perf_counter() - self.t0
        (b1, t1), (b0, t0) = self._machine(), self.m0
        ncpu = os.cpu_count() or 1
        self.machine = ncpu * (b1 - b0) / max(1, t1 - t0)
        self.own = (self._own() - self.o0) / el
        self.server = (tree_cpu(self.roots) - self.s0) / el
        self.others = max(0.0, self.machine - self.own - self.server)


def wait_quiet(max_wait: float, busy_max: float = 0.3) -> float:
    """Wait (at most max_wait s) until the machine is nearly idle: other people's jobs
    on a shared machine make runs noisy. Returns the busy cores last seen."""
    deadline = time.monotonic() + max_wait
    warned = False
    while True:
        with LoadMeter() as m:
            time.sleep(1.0)
        busy = m.machine - m.own
        if busy <= busy_max or time.monotonic() > deadline:
            if busy > busy_max:
                print(f"  !! machine still busy ({busy:.1f} cores used by others) after "
                      f"{max_wait:.0f}s: measuring anyway", flush=True)  # fmt: skip
            return busy
        if not warned:
            print(f"  .. waiting for a quiet machine ({busy:.1f} cores busy)", flush=True)
            warned = True


# --- the synthetic points -------------------------------------------------------------------------


@dataclass
class Track:
    """N fixes, 1 s apart, ending about now: a slow walk in Shanghai."""

    n: int
    t0_ms: int = field(default_factory=lambda: now_ms() - 2000)

    def fixes(self, prefix: str = "b") -> list[Any]:
        from kares.location.service import FixIn

        start = self.t0_ms - (self.n - 1) * 1000
        return [
            FixIn(
                t_ms=start + i * 1000,
                lat=31.23 + (i % 5000) * 1e-5,
                lon=121.47 + (i % 3000) * 1e-5,
                client_id=f"{prefix}{i}",
                accuracy_m=8.0,
                speed_mps=1.2,
                battery=80,
                source="gps",
            )
            for i in range(self.n)
        ]

    def bodies(self, prefix: str = "b") -> list[bytes]:
        """The same fixes as /api/v1/location/fixes request bodies of BATCH fixes."""
        start = self.t0_ms - (self.n - 1) * 1000
        out = []
        for k in range(0, self.n, BATCH):
            fixes = [
                {
                    "id": f"{prefix}{i}",
                    "t": datetime.fromtimestamp((start + i * 1000) / 1000, UTC).isoformat(),
                    "lat": 31.23 + (i % 5000) * 1e-5,
                    "lon": 121.47 + (i % 3000) * 1e-5,
                    "accuracy_m": 8,
                    "speed_mps": 1.2,
                    "battery": 80,
                }
                for i in range(k, min(k + BATCH, self.n))
            ]
            out.append(json.dumps({"fixes": fixes}, separators=(",", ":")).encode())
        return out


def batches(xs: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for k in range(0, len(xs), size):
        yield xs[k : k + size]


def raw_rows(account_id: str, device_id: str | None, fixes: Sequence[Any], received: int) -> list:
    return [
        (
            account_id, device_id, f.client_id, f.t_ms, received, f.lat, f.lon, f.accuracy_m,
            f.altitude_m, f.speed_mps, f.course_deg, f.battery, f.source, True, "ok", None, None,
        )
        for f in fixes
    ]  # fmt: skip


# --- database plumbing for the reference and for emptying tables between runs -------------------


class SqliteDb:
    def __init__(self, inst: Instance) -> None:
        self.path = inst.sqlite_path

    def connect(self, synchronous: str = "NORMAL") -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous}")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    def create_raw_table(self) -> str:
        """The CREATE statements of location_fixes and its indexes, renamed."""
        con = self.connect()
        try:
            stmts = [
                r[0]
                for r in con.execute(
                    "SELECT sql FROM sqlite_master WHERE tbl_name='location_fixes' "
                    "AND sql IS NOT NULL AND type IN ('table', 'index') "
                    "ORDER BY type DESC"  # table first, then indexes (the triggers on
                    # deletes and updates, migration 0009, have no part in an insert)
                )
            ]
            con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
            for sql in stmts:
                con.execute(sql.replace("location_fixes", RAW_TABLE))
            return ";\n".join(s.replace("location_fixes", RAW_TABLE) for s in stmts)
        finally:
            con.close()

    def wipe(self) -> None:
        con = self.connect()
        try:
            con.execute("BEGIN")
            con.execute("DELETE FROM location_fixes")
            con.execute("DELETE FROM location_last")
            con.execute(f"DELETE FROM {RAW_TABLE}")
            con.execute("COMMIT")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()

    def count(self, table: str = "location_fixes") -> int:
        con = self.connect()
        try:
            return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            con.close()

    def raw_insert(
        self, member: Member, fixes: Sequence[Any], synchronous: str, deadline: float
    ) -> int:
        cols = ", ".join(COLUMNS)
        qs = ", ".join("?" for _ in COLUMNS)
        sql = (
            f"INSERT INTO {RAW_TABLE} ({cols}) VALUES ({qs}) "
            "ON CONFLICT (account_id, client_id) DO NOTHING"
        )
        con = self.connect(synchronous)
        done = 0
        try:
            for chunk in batches(fixes):
                if time.monotonic() > deadline:
                    break
                rows = raw_rows(member.account_id, member.device_id, chunk, now_ms())
                con.execute("BEGIN")
                con.executemany(sql, rows)
                con.execute("COMMIT")
                done += len(rows)
        finally:
            con.close()
        return done


class PgDb:
    def __init__(self, inst: Instance) -> None:
        self.dsn = inst.pg_dsn

    async def _conn(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.dsn)

    async def settings(self) -> dict[str, str]:
        conn = await self._conn()
        try:
            out = {}
            for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                         "wal_level", "shared_buffers"):  # fmt: skip
                out[name] = await conn.fetchval(f"SHOW {name}")
            return out
        finally:
            await conn.close()

    async def create_raw_table(self) -> str:
        stmts = [
            f"DROP TABLE IF EXISTS {RAW_TABLE}",
            # columns, NOT NULLs, defaults, the primary key, the unique constraint, the index
            f"CREATE TABLE {RAW_TABLE} (LIKE location_fixes INCLUDING ALL)",
            f"ALTER TABLE {RAW_TABLE} ADD FOREIGN KEY (account_id) REFERENCES accounts(id) "
            "ON DELETE CASCADE",
            f"ALTER TABLE {RAW_TABLE} ADD FOREIGN KEY (device_id) REFERENCES devices(id) "
            "ON DELETE SET NULL",
        ]
        conn = await self._conn()
        try:
            for sql in stmts:
                await conn.execute(sql)
            idx = await conn.fetch(
                "SELECT indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname", RAW_TABLE
            )
            return ";\n".join(stmts[1:] + [r["indexdef"] for r in idx])
        finally:
            await conn.close()

    async def warm_stats(self, member: Member, fixes: Sequence[Any]) -> None:
        """Give the planner statistics for both tables (as autovacuum's ANALYZE would
        after the first minute), then empty them. Without them the first run is a
        different experiment: see bench/README.md ("cold statistics")."""
        cols = ", ".join(COLUMNS)
        qs = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
        conn = await self._conn()
        try:
            rows = raw_rows(member.account_id, member.device_id, fixes, now_ms())
            for table in ("location_fixes", RAW_TABLE):
                async with conn.transaction():
                    await conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({qs})", rows)
                await conn.execute(f"ANALYZE {table}")
            await conn.execute(f"TRUNCATE location_fixes, location_last, {RAW_TABLE}")
        finally:
            await conn.close()

    async def wipe(self) -> None:
        conn = await self._conn()
        try:
            await conn.execute(f"TRUNCATE location_fixes, location_last, {RAW_TABLE}")
        finally:
            await conn.close()

    async def count(self, table: str = "location_fixes") -> int:
        conn = await self._conn()
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await conn.close()

    async def raw_insert(
        self, member: Member, fixes: Sequence[Any], deadline: float, copy: bool = False
    ) -> int:
        cols = ", ".join(COLUMNS)
        qs = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
        sql = (
            f"INSERT INTO {RAW_TABLE} ({cols}) VALUES ({qs}) "
            "ON CONFLICT (account_id, client_id) DO NOTHING"
        )
        conn = await self._conn()
        done = 0
        try:
            for chunk in batches(fixes):
                if time.monotonic() > deadline:
                    break
                rows = raw_rows(member.account_id, member.device_id, chunk, now_ms())
                async with conn.transaction():
                    if copy:
                        await conn.copy_records_to_table(RAW_TABLE, records=rows, columns=COLUMNS)
                    else:
                        await conn.executemany(sql, rows)
                done += len(rows)
        finally:
            await conn.close()
        return done


# --- (a): the service function in this process ------------------------------------------------


@contextlib.asynccontextmanager
async def runtime_for(inst: Instance, synchronous: str = "NORMAL") -> AsyncIterator[Any]:
    from sqlalchemy import event

    import kares.domains  # noqa: F401  (every table, as the app has them: foreign keys resolve)
    from kares.config import Settings
    from kares.runtime import Runtime

    old = dict(os.environ)
    os.environ.update({k: v for k, v in inst.env.items() if k.startswith("KARES_")})
    try:
        settings = Settings()
    finally:
        os.environ.clear()
        os.environ.update(old)
    rt = Runtime.build(settings)
    if inst.kind == "sqlite" and synchronous != "NORMAL":
        # runs after the app's own connect hook (WAL, NORMAL, ...): only the level changes
        @event.listens_for(rt.db.engine.sync_engine, "connect")
        def _sync(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.close()

    try:
        async with rt.db.sessions() as s:  # warm the pool; check the level
            if inst.kind == "sqlite":
                from sqlalchemy import text

                level = (await s.execute(text("PRAGMA synchronous"))).scalar()
                want = {"NORMAL": 1, "FULL": 2}[synchronous]
                assert level == want, f"synchronous is {level}, wanted {want}"
        yield rt
    finally:
        await rt.close()


async def ingest_service(rt: Any, member: Member, fixes: Sequence[Any], deadline: float) -> int:
    from kares.location import service

    done = 0
    for chunk in batches(fixes):
        if time.monotonic() > deadline:
            break
        async with rt.db.sessions() as s:
            res = await service.ingest(
                s,
                rt,
                account_id=member.account_id,
                device_id=member.device_id,
                fixes=list(chunk),
                degraded={},
            )
            await s.commit()  # ingest is a building block: its caller's action commits
        if res.rejected or res.accepted != len(chunk):
            raise RuntimeError(
                f"ingest accepted {res.accepted} of {len(chunk)}: "
                f"{[r.code for r in res.rejected[:3]]}"
            )
        done += res.accepted
    return done


# --- (b): HTTP ------------------------------------------------------------------------------------


async def http_post_all(
    url: str, jobs: list[tuple[str, list[bytes]]], deadline: float
) -> tuple[int, list[float]]:
    """Each job (token, bodies) is one keep-alive client posting its bodies in turn."""
    import httpx

    latencies: list[float] = []

    async def one(token: str, bodies: list[bytes]) -> int:
        done = 0
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=120, limits=httpx.Limits(max_connections=1)
        ) as c:
            for body in bodies:
                if time.monotonic() > deadline:
                    break
                t = time.perf_counter()
                r = await c.post("/api/v1/location/fixes", content=body)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
                res = r.json()
                if res["accepted"] != BATCH and res["rejected"]:
                    raise RuntimeError(f"refused: {res['rejected'][:3]}")
                done += res["accepted"]
        return done

    counts = await asyncio.gather(*(one(t, b) for t, b in jobs))
    return sum(counts), latencies


# --- the runs -------------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    rates: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)  # cores used by other processes
    p99_ms: list[float] = field(default_factory=list)  # (b): per request, each run

    @property
    def med(self) -> float:
        return median(self.rates)


def timed(points: int, seconds: float) -> float:
    return points / seconds if seconds > 0 else float("nan")


def measure(
    args: argparse.Namespace,
    res: Result,
    rep: int,
    go: Callable[[], tuple[int, float]],
    count: Callable[[], int],
    roots: Sequence[int] = (),
    note: Callable[[], str] = lambda: "",
) -> None:
    """One run: wait for a quiet machine, run go() -> (points, seconds), check the count."""
    wait_quiet(args.quiet_wait)
    with LoadMeter(roots) as load:
        n, el = go()
    stored = count()
    res.rates.append(timed(n, el))
    res.others.append(load.others)
    print(f"  {res.label}: run {rep + 1}: {n} points in {el:.2f}s = {timed(n, el):,.0f}/s"
          f"{note()}; CPU (cores): this process {load.own:.2f}, server {load.server:.2f}, "
          f"others {load.others:.2f}; stored {stored}", flush=True)  # fmt: skip
    if stored != n:
        raise RuntimeError(f"{res.label}: {n} acknowledged/written but {stored} stored")


def run_sqlite(args: argparse.Namespace, inst: Instance) -> list[Result]:
    db = SqliteDb(inst)
    ddl = db.create_raw_table()
    print("  reference table (sqlite3):\n    " + ddl.replace("\n", "\n    "))
    member = inst.members[0]
    track = Track(args.points)
    fixes = track.fixes()
    results: list[Result] = []
    levels = ["NORMAL"] + ([] if args.no_full else ["FULL"])
    for level in levels:
        raw = Result(f"raw sqlite3 executemany, synchronous={level}")
        ing = Result(f"(a) service.ingest, synchronous={level}")

        def go_raw(level: str = level) -> tuple[int, float]:
            deadline = time.monotonic() + args.max_seconds
            t0 = time.perf_counter()
            n = db.raw_insert(member, fixes, level, deadline)
            return n, time.perf_counter() - t0

        def go_ingest(level: str = level) -> tuple[int, float]:
            async def go() -> tuple[int, float]:
                deadline = time.monotonic() + args.max_seconds
                async with runtime_for(inst, level) as rt:
                    t0 = time.perf_counter()
                    n = await ingest_service(rt, member, fixes, deadline)
                    return n, time.perf_counter() - t0

            return asyncio.run(go())

        for rep in range(args.reps):
            order = [raw, ing] if rep % 2 == 0 else [ing, raw]
            for which in order:
                db.wipe()
                if which is raw:
                    measure(args, raw, rep, go_raw, lambda: db.count(RAW_TABLE))
                else:
                    measure(args, ing, rep, go_ingest, lambda: db.count())
        results += [raw, ing]
    if not args.no_http:
        results += run_http(args, inst, track, db.wipe, lambda: db.count(), [])
    return results


def pg_root(inst: Instance) -> list[int]:
    return [int((inst.pg.root / "data" / "postmaster.pid").read_text().split()[0])]


def run_postgresql(args: argparse.Namespace, inst: Instance) -> list[Result]:
    db = PgDb(inst)
    settings = asyncio.run(db.settings())
    print(f"  server: {settings}")
    if settings["fsync"] != "on" or settings["synchronous_commit"] != "on":
        raise RuntimeError(f"PostgreSQL is not durable: {settings}")
    ddl = asyncio.run(db.create_raw_table())
    print("  reference table (asyncpg):\n    " + ddl.replace("\n", "\n    "))
    member = inst.members[0]
    track = Track(args.points)
    fixes = track.fixes()
    asyncio.run(db.warm_stats(member, fixes))
    print("  both tables filled once, ANALYZEd, emptied (planner statistics as in steady state)")
    raw = Result("raw asyncpg executemany")
    copy = Result("raw asyncpg COPY (no ON CONFLICT)")
    ing = Result("(a) service.ingest")

    def go_for(which: Result) -> Callable[[], tuple[int, float]]:
        async def go() -> tuple[int, float]:
            deadline = time.monotonic() + args.max_seconds
            if which is ing:
                async with runtime_for(inst) as rt:
                    t0 = time.perf_counter()
                    n = await ingest_service(rt, member, fixes, deadline)
                    return n, time.perf_counter() - t0
            t0 = time.perf_counter()
            n = await db.raw_insert(member, fixes, deadline, copy=which is copy)
            return n, time.perf_counter() - t0

        return lambda: asyncio.run(go())

    for rep in range(args.reps):
        order = [raw, ing, copy] if rep % 2 == 0 else [ing, raw, copy]
        for which in order:
            asyncio.run(db.wipe())
            table = "location_fixes" if which is ing else RAW_TABLE

            def count(t: str = table) -> int:
                return asyncio.run(db.count(t))

            measure(args, which, rep, go_for(which), count, pg_root(inst))
    results = [raw, copy, ing]
    if not args.no_http:
        results += run_http(
            args,
            inst,
            track,
            lambda: asyncio.run(db.wipe()),
            lambda: asyncio.run(db.count()),
            pg_root(inst),
        )
    return results


def run_http(
    args: argparse.Namespace,
    inst: Instance,
    track: Track,
    wipe: Callable[[], None],
    count: Callable[[], int],
    db_roots: list[int],
) -> list[Result]:
    out = []
    for workers in args.workers:
        out += _run_http_on(args, inst, track, wipe, count, db_roots, workers)
    return out


def _run_http_on(
    args: argparse.Namespace,
    inst: Instance,
    track: Track,
    wipe: Callable[[], None],
    count: Callable[[], int],
    db_roots: list[int],
    workers: int,
) -> list[Result]:
    out = []
    procs = "" if workers == 1 else f", kares serve --workers {workers}"
    with Server(inst.env, workers=workers) as srv:
        print(f"  kares serve on {srv.url} (pids {srv.pids()}), log {srv.log_path}", flush=True)
        for clients in args.clients:
            res = Result(f"(b) HTTP /api/v1/location/fixes, {clients} client(s){procs}")
            sub = Track(track.n // clients, track.t0_ms)
            bodies = sub.bodies()
            jobs = [(inst.members[c % len(inst.members)].token, bodies) for c in range(clients)]
            lat: list[float] = []

            def go(
                jobs: list[tuple[str, list[bytes]]] = jobs,
                lat: list[float] = lat,
                res: Result = res,
            ) -> tuple[int, float]:
                deadline = time.monotonic() + args.max_seconds
                t0 = time.perf_counter()
                n, got = asyncio.run(http_post_all(srv.url, jobs, deadline))
                el = time.perf_counter() - t0
                lat[:] = sorted(got)
                if lat:
                    res.p99_ms.append(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000)
                return n, el

            def note(lat: list[float] = lat) -> str:
                p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
                return f" (per 1000-fix request: p50 {p50:.0f} ms, p99 {p99:.0f} ms)"

            for rep in range(args.reps):
                wipe()
                measure(args, res, rep, go, count, [*srv.roots(), *db_roots], note)
            out.append(res)
    return out


def report(kind: str, results: list[Result]) -> None:
    by = {r.label: r for r in results}
    print(
        f"\n== {kind}: points/s, median of runs (runs; most CPU other processes took in a run) =="
    )
    w = max(len(r.label) for r in results)
    for r in results:
        runs = ", ".join(fmt_rate(x) for x in r.rates)
        busy = max(r.others, default=0.0)
        print(f"  {r.label:<{w}}  {fmt_rate(r.med):>9}   ({runs}; others <= {busy:.2f} cores)")
    target = TARGET_SQLITE if kind == "sqlite" else TARGET_POSTGRESQL
    print(f"  ratios (Kares / raw, in points/s; the target for (a) is >= {target}x):")
    if kind == "sqlite":
        pairs = [
            (f"raw sqlite3 executemany, synchronous={lv}", f"(a) service.ingest, synchronous={lv}")
            for lv in ("NORMAL", "FULL")
        ]
        http_ref = "raw sqlite3 executemany, synchronous=NORMAL"
    else:
        pairs = [
            ("raw asyncpg executemany", "(a) service.ingest"),
            ("raw asyncpg COPY (no ON CONFLICT)", "(a) service.ingest"),
        ]
        http_ref = "raw asyncpg executemany"
    pairs += [(http_ref, r.label) for r in results if r.label.startswith("(b)")]
    for ref, got in pairs:
        if ref in by and got in by:
            ratio = by[got].med / by[ref].med
            mark = ""
            if got.startswith("(a)") and "COPY" not in ref:
                mark = f"  at least {target}x: " + ("yes" if ratio >= target else "NO")
            print(f"    {got} / {ref}: {ratio:.2f}x{mark}")
    for r in results:
        if r.p99_ms:
            runs = ", ".join(f"{x:.0f}" for x in r.p99_ms)
            verdict = "yes" if median(r.p99_ms) < TARGET_P99_MS else "NO"
            print(f"  {r.label}: p99 per request {median(r.p99_ms):.0f} ms, median of runs "
                  f"({runs}); under {TARGET_P99_MS:.0f} ms: {verdict}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--points", type=int, default=100_000, help="points per measurement")
    p.add_argument("--reps", type=int, default=3, help="runs per measurement (median reported)")
    p.add_argument("--clients", default="1,4", help="HTTP client counts, comma separated")
    p.add_argument("--no-http", action="store_true", help="skip (b)")
    p.add_argument("--workers", default="1",
                   help="(b): kares serve processes, comma separated (above 1: --workers "
                        "with a redis-server of the bench's)")  # fmt: skip
    p.add_argument("--no-full", action="store_true", help="skip SQLite synchronous=FULL")
    p.add_argument("--max-seconds", type=float, default=300, help="bound per measurement")
    p.add_argument("--quiet-wait", type=float, default=120,
                   help="wait up to this long before each run for other jobs to end")  # fmt: skip
    args = p.parse_args(argv)
    args.clients = [int(x) for x in args.clients.split(",") if x]
    args.workers = [int(x) for x in args.workers.split(",") if x]
    if not args.workers or not all(1 <= w <= 8 for w in args.workers):
        p.error("--workers: 1 to 8 processes, comma separated")
    if args.points < BATCH or args.points > 5_000_000:
        p.error("--points must be between 1000 and 5,000,000")
    print(f"bench_ingest {datetime.now(UTC).isoformat(timespec='seconds')}  {machine()}")
    print(f"  sqlite {sqlite3.sqlite_version}; {args.points} points per run, {args.reps} runs, "
          f"batches of {BATCH}")  # fmt: skip
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for kind in kinds:
        print(f"\n-- {kind} --", flush=True)
        inst = make_instance(kind)
        try:
            results = run_sqlite(args, inst) if kind == "sqlite" else run_postgresql(args, inst)
        finally:
            inst.close()
        report(kind, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
