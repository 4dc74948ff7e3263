# ruff: noqa: S603, S607  (fixed local commands)
"""Family chat over the Matrix client-server API: one load script, several servers.

The load (shared/peers/synapse.md, issue 14 "Performance (bench/)"): F families of M
members (25 x 4 by default), one private room per family. Every member long-polls
``GET /_matrix/client/v3/sync`` (its own uploaded filter, ``since``, ``timeout=30000``);
messages go out as ``PUT /rooms/{room}/send/m.room.message/{txnId}`` whose content
carries ``kares_ts`` (integer microseconds: Matrix canonical JSON refuses floats), the
run's id and a message id. Two send modes:

  open:R     each family ticks R times a second on a fixed schedule, the sender
             rotating over its members; a tick finds at most --max-inflight sends of
             that family in flight, or it is skipped (and counted);
  closed:N   N workers in all, each sending back to back, rotating over families and
             members.

Each run: filters uploaded and one ``timeout=0`` sync per member (before the clock),
then --warmup s of load, a --window s measurement window, and --drain s with sends
stopped and syncs still running (late deliveries of window messages are still seen);
then every task is cancelled. Figures per run:

  sent/s          PUTs answered 200 that started inside the window
  delivered/s     deliveries received inside the window (another member's message of
                  this run, whenever sent), summed over receivers; ideal (M-1) x sent/s
  p50 / p99       send -> receive, over messages sent inside the window
  PUT p99         the PUT's round trip, same messages
  not served      (window message, receiver) pairs never delivered before the drain ended
  dup             the same message delivered twice to one receiver
  errors          HTTP status or exception name, sends and syncs apart
  server CPU      utime+stime of the server's process tree (/proc/<pid>/stat) over the
                  window, in cores; the database server's apart (PostgreSQL)
  RSS             the largest of 1 s samples of VmRSS (server tree; PostgreSQL apart,
                  a sum that counts shared buffers more than once)
  client CPU      this process over the window; machine = whole-machine busy cores
                  (/proc/stat); others = machine - client - server - database

Targets (--targets), each behind a small server adapter:

  synapse   Matrix Synapse started by this script from --synapse-venv (a config
            generated into a scratch dir under /tmp, changed as peers/synapse.md says),
            or an already-running one (--synapse-url). Users registered with
            m.login.dummy, one private_chat room per family, the others join; kept in
            a state file and reused when the shape matches (SQLite only).
  kares     ``kares serve`` on a fresh instance (or --kares-url); members, passwords
            and rooms from ``kares demo --families F --json`` (``matrix_user``,
            ``password``), ``m.login.password`` + ``m.id.user``, ``GET /joined_rooms``.
            Skipped with a clear message while ``/_matrix/client/versions`` answers 404.
  kares-ws  Kares' own WebSocket: ``kares serve`` on a fresh instance (or --kares-url
            with --kares-demo-json), the same families from ``kares demo --families F
            --json`` (``account_id``, ``token``: what the app holds after signing in).
            Instead of a /sync long-poll each member holds one socket
            (``GET /api/v1/ws``, ``Authorization: Bearer``), opened before the clock
            (up to ``caught_up``); a send is ``POST /api/v1/conversations/{family}/
            messages`` with a ``txn_id`` (the route the Kares app sends with), its text
            carrying the run, the message id and the send time (the REST body takes
            no other fields). A ``message`` frame of this run is a delivery, the
            sender's own an echo; "PUT p99" is the POST's; "limited" counts
            ``resync`` frames; "syncs" counts frames.
  kares-ws-w2  kares-ws on ``kares serve --workers 2`` with a redis-server of the
            bench's own (a socket and a send land on either process; notices and
            presence cross through Redis; Redis's CPU counts as the server's).

Before every run a gate waits (at most --quiet-wait s) for the machine to be under
15 % busy, and between runs the script pauses --pause s (31 by default): a server
may keep serving a vanished client's 30 s long-polls, which the next run would
otherwise inherit. Only 127.0.0.1 is used; every loop is bounded by time and count;
servers run under ``timeout`` and are stopped at the end.

    .venv/bin/python bench/bench_chat.py --targets synapse \\
        --synapse-venv ~/chatbench/synapse-venv --modes open:0.5,closed:8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


CS = "/_matrix/client/v3"
SYNC_FILTER = {
    "room": {"timeline": {"limit": 100}, "state": {"lazy_load_members": True}},
    "presence": {"types": []},
}
RAISED = {"per_second": 100000, "burst_count": 100000}
NOT_MATRIX = "Kares does not speak the Matrix API yet (no /_matrix/client/versions)"
WS_PATH = "/api/v1/ws"
# kares-ws: what a message's text carries (the REST send takes no other fields)
WS_TEXT = re.compile(r"^bench (\S+) (\d+) (\d+) ")


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http") + WS_PATH


class Skip(Exception):
    """A target that cannot be measured here (said why, not an error of the run)."""


def q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def pct(xs: Sequence[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))]


def fmt(x: float, spec: str) -> str:
    """x formatted, or "-" when it was not measured (nan)."""
    return "-" if x != x else format(x, spec)


def rss_mb(roots: Sequence[int]) -> float:
    kb = 0
    for pid in [*roots, *(d for r in roots for d in descendants(r))]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
                    break
    return kb / 1024


def bench_ingest() -> Any:
    """bench_ingest's Kares instances, servers and throwaway PostgreSQL (it imports kares,
    so only when a run needs them: --help and a Synapse-only run work without Kares)."""
    import bench_ingest as bi

    return bi


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        with contextlib.suppress(OSError, ValueError):
            for k in Path(f"/proc/{p}/task/{p}/children").read_text().split():
                out.append(int(k))
                todo.append(int(k))
    return out


def tree_cpu(roots: Sequence[int]) -> float:
    """utime+stime (and waited-for children's) of these processes and all below them, s."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in [*roots, *(d for r in roots for d in descendants(r))]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / tick


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(vals) - vals[3] - vals[4], sum(vals)


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def wait_quiet(max_wait: float, busy_max: float) -> float:
    """The quiet-machine gate: wait (at most max_wait s) until the machine uses at most
    busy_max cores (this process left out); returns the busy cores last seen."""
    deadline = time.monotonic() + max_wait
    ncpu = os.cpu_count() or 1
    warned = False
    while True:
        (b0, n0), o0 = machine_ticks(), own_cpu()
        time.sleep(1.0)
        (b1, n1), o1 = machine_ticks(), own_cpu()
        busy = ncpu * (b1 - b0) / max(1, n1 - n0) - (o1 - o0)
        if busy <= busy_max or time.monotonic() > deadline:
            if busy > busy_max:
                print(
                    f"  !! machine still busy ({busy:.2f} cores used by others) after "
                    f"{max_wait:.0f}s: measuring anyway",
                    flush=True,
                )
            return busy
        if not warned:
            print(f"  .. waiting for a quiet machine ({busy:.2f} cores busy)", flush=True)
            warned = True


def loadavg() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f}, {b:.2f}, {c:.2f}"


# --- what a run needs from a server ---------------------------------------------------------


@dataclass
class Member:
    user_id: str
    token: str


@dataclass
class Family:
    room_id: str
    members: list[Member]


@dataclass
class Target:
    name: str
    url: str
    db: str
    notes: str
    families: list[Family] = field(default_factory=list)
    server_roots: list[int] = field(default_factory=list)  # CPU/RSS: these trees
    db_roots: list[int] = field(default_factory=list)  # the database server's tree
    stop: Callable[[], None] = lambda: None
    # "matrix": /sync long-polls and PUT /send; "ws": Kares' own WebSocket and REST sends
    wire: str = "matrix"


def http_wait(url: str, limit_s: float, proc: subprocess.Popen[bytes] | None, log: Path) -> int:
    """Poll url until it answers (any status); returns the status."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early (rc {proc.returncode}), see {log}")
        try:
            with urllib.request.urlopen(url, timeout=3) as r:  # noqa: S310  (loopback)
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, urllib.error.URLError):
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {limit_s:.0f}s, see {log}")


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # `timeout` passes SIGTERM on
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- Matrix calls used by the adapters (setup, before any clock) ----------------------------


async def mx(
    http: Any, method: str, url: str, token: str = "", body: Any = None, ok: Sequence[int] = (200,)
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as r:
        data = await r.json(content_type=None) if r.content_length != 0 else None
        if r.status not in ok:
            raise RuntimeError(f"{method} {url.split('/_matrix')[-1]} -> {r.status}: {data}")
        return r.status, data


async def gather_bounded(n: int, coros: Sequence[Any]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


# --- synapse ---------------------------------------------------------------------------------


def synapse_config(scratch: Path, port: int, pg: Any) -> Path:
    """Edit the generated homeserver.yaml and log config as peers/synapse.md says."""
    import yaml

    conf_path = scratch / "homeserver.yaml"
    conf = yaml.safe_load(conf_path.read_text())
    conf["listeners"] = [
        {
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }
    ]
    conf["trusted_key_servers"] = []
    conf["suppress_key_server_warning"] = True
    conf["enable_registration"] = True
    conf["enable_registration_without_verification"] = True
    conf["presence"] = {"enabled": False}
    conf["url_preview_enabled"] = False
    conf["report_stats"] = False
    for key in (
        "rc_message",
        "rc_registration",
        "rc_room_creation",
        "rc_joins_per_room",
        "rc_profile",
        "rc_admin_redaction",
        "rc_third_party_invite",
        "rc_media_create",
        "rc_delayed_event_mgmt",
        "rc_reports",
        "rc_user_directory",
    ):
        conf[key] = dict(RAISED)
    conf["rc_login"] = {k: dict(RAISED) for k in ("address", "account", "failed_attempts")}
    conf["rc_joins"] = {k: dict(RAISED) for k in ("local", "remote")}
    conf["rc_invites"] = {k: dict(RAISED) for k in ("per_room", "per_user", "per_issuer")}
    conf["rc_presence"] = {"per_user": dict(RAISED)}
    if pg is None:
        conf["database"] = {"name": "sqlite3", "args": {"database": str(scratch / "homeserver.db")}}
    else:
        conf["database"] = {
            "name": "psycopg2",
            "args": {
                "user": "postgres",
                "dbname": "synapse",
                "host": "127.0.0.1",
                "port": pg.port,
                "cp_min": 5,
                "cp_max": 10,
            },
        }
    log_conf_path = Path(conf["log_config"])
    log_conf = yaml.safe_load(log_conf_path.read_text())
    log_conf["root"]["level"] = "WARNING"
    log_conf.setdefault("loggers", {})["synapse.storage.SQL"] = {"level": "WARNING"}
    log_conf_path.write_text(yaml.safe_dump(log_conf))
    conf_path.write_text(yaml.safe_dump(conf))
    return conf_path


async def synapse_register(url: str, families: int, size: int) -> list[Family]:
    """Users by m.login.dummy registration; one private_chat room per family, invitees join."""
    import aiohttp

    tag = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def register(name: str) -> Member:
            body: dict[str, Any] = {
                "username": name,
                "password": password,
                "auth": {"type": "m.login.dummy"},
            }
            st, data = await mx(http, "POST", f"{url}{CS}/register", body=body, ok=(200, 401))
            if st == 401:  # some versions want the session of the first stage
                body["auth"]["session"] = data["session"]
                _, data = await mx(http, "POST", f"{url}{CS}/register", body=body)
            return Member(data["user_id"], data["access_token"])

        t0 = time.perf_counter()
        names = [f"cb{tag}f{f}m{m}" for f in range(families) for m in range(size)]
        users = await gather_bounded(4, [register(n) for n in names])
        print(f"  synapse: {len(users)} users registered in {time.perf_counter() - t0:.1f}s")

        async def room(members: list[Member], f: int) -> Family:
            _, data = await mx(
                http,
                "POST",
                f"{url}{CS}/createRoom",
                members[0].token,
                {
                    "preset": "private_chat",
                    "name": f"family {f}",
                    "invite": [m.user_id for m in members[1:]],
                },
            )
            rid = data["room_id"]
            for m in members[1:]:
                await mx(http, "POST", f"{url}{CS}/join/{q(rid)}", m.token, {})
            return Family(rid, members)

        t0 = time.perf_counter()
        fams = await gather_bounded(
            4, [room(users[f * size : (f + 1) * size], f) for f in range(families)]
        )
        print(f"  synapse: {len(fams)} rooms created and joined in {time.perf_counter() - t0:.1f}s")
        return fams


def load_state(path: Path | None, url: str, families: int, size: int) -> list[Family] | None:
    if path is None or not path.exists():
        return None
    st = json.loads(path.read_text())
    fams = [Family(f["room_id"], [Member(**m) for m in f["members"]]) for f in st["families"]]
    # the users live in the database, not at a port: a new port (st["url"]) is fine
    if len(fams) < families or any(len(f.members) != size for f in fams):
        print(f"  state {path} has another shape: registering anew")
        return None
    print(f"  synapse: reusing {families} families from {path}")
    return fams[:families]


def save_state(path: Path | None, url: str, fams: list[Family]) -> None:
    if path is not None:
        path.write_text(json.dumps({"url": url, "families": [asdict(f) for f in fams]}))


def synapse_target(args: argparse.Namespace, hard_limit_s: int) -> Target:
    if args.synapse_url:
        url = args.synapse_url.rstrip("/")
        state = Path(args.synapse_state) if args.synapse_state else None
        fams = load_state(state, url, args.families, args.members)
        if fams is None:
            fams = asyncio.run(synapse_register(url, args.families, args.members))
            save_state(state, url, fams)
        roots = [args.synapse_pid] if args.synapse_pid else []
        return Target("synapse", url, "?", f"already running at {url}", fams, roots)

    venv = Path(args.synapse_venv).expanduser()
    py = venv / "bin" / "python"
    if not py.exists():
        raise Skip(f"no Synapse venv at {venv} (see bench/README.md, bench_chat.py set-up)")
    version = subprocess.run(
        [str(py), "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    made = args.synapse_dir is None
    scratch = Path(args.synapse_dir or tempfile.mkdtemp(prefix="chatbench-synapse-", dir="/tmp"))
    scratch.mkdir(parents=True, exist_ok=True)
    pg = None
    proc: subprocess.Popen[bytes] | None = None
    log_f = None
    try:
        if not (scratch / "homeserver.yaml").exists():
            subprocess.run(
                [
                    str(py),
                    "-m",
                    "synapse.app.homeserver",
                    "--server-name",
                    "localhost",
                    "--config-path",
                    str(scratch / "homeserver.yaml"),
                    "--generate-config",
                    "--report-stats=no",
                ],
                cwd=scratch,
                check=True,
                capture_output=True,
                timeout=120,
            )
        if args.db == "postgresql":
            pg = bench_ingest().start_durable_pg()
            pg._run(
                bi_pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(pg.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' "
                "TEMPLATE template0",
            )
        port = free_port()
        conf = synapse_config(scratch, port, pg)
        log_path = scratch / "stdout.log"
        log_f = open(log_path, "ab")
        proc = subprocess.Popen(
            [
                "timeout",
                "-s",
                "TERM",
                "-k",
                "10",
                str(hard_limit_s),
                str(py),
                "-m",
                "synapse.app.homeserver",
                "--config-path",
                str(conf),
            ],
            cwd=scratch,
            stdout=log_f,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        http_wait(url + "/_matrix/client/versions", 180, proc, log_path)
        state = scratch / "bench-state.json" if pg is None else None
        fams = load_state(state, url, args.families, args.members)
        if fams is None:
            fams = asyncio.run(synapse_register(url, args.families, args.members))
            save_state(state, url, fams)
    except BaseException:
        if proc is not None:
            stop_proc(proc)
        if pg is not None:
            pg.stop()
        raise

    def stop() -> None:
        assert proc is not None
        stop_proc(proc)
        if log_f is not None:
            log_f.close()
        if pg is not None:
            pg.stop()
        if made and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    db = "sqlite" if pg is None else "postgresql"
    pg_roots = [pg_postmaster(pg)] if pg is not None else []
    notes = (
        f"Synapse {version} (monolith, presence off, rate limits raised), {db}, scratch {scratch}"
    )
    # the server under `timeout` (its tree, not the wrapper: RSS is the server's own)
    roots = descendants(proc.pid) or [proc.pid]
    return Target("synapse", url, db, notes, fams, roots, pg_roots, stop)


def bi_pg_bin(name: str) -> str:
    from tests.support.pgserver import _bin

    return _bin(name)


def pg_postmaster(pg: Any) -> int:
    return int((pg.root / "data" / "postmaster.pid").read_text().split()[0])


# --- kares -----------------------------------------------------------------------------------


def demo_families(data: Any, size: int) -> list[list[dict[str, Any]]]:
    """``kares demo --families N --json``, read as families of members with ``matrix_user``
    and ``password``: {"families": [{"members": [...]}, ...]}, or a flat "members" list
    (grouped by a "family" key when there is one, else in runs of --members)."""
    if isinstance(data, dict) and isinstance(data.get("families"), list):
        return [list(f["members"]) for f in data["families"]]
    items = data["members"] if isinstance(data, dict) else data
    if items and "family" in items[0]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for m in items:
            groups.setdefault(str(m["family"]), []).append(m)
        return list(groups.values())
    return [items[i : i + size] for i in range(0, len(items), size)]


async def kares_login(url: str, fam_members: list[list[dict[str, Any]]]) -> list[Family]:
    """m.login.password with an m.id.user identifier, then GET /joined_rooms: the family's
    room is the one all its members have joined."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def login(m: dict[str, Any]) -> tuple[Member, set[str]]:
            body = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": m["matrix_user"]},
                "password": m["password"],
            }
            _, data = await mx(http, "POST", f"{url}{CS}/login", body=body)
            _, rooms = await mx(http, "GET", f"{url}{CS}/joined_rooms", data["access_token"])
            return Member(data["user_id"], data["access_token"]), set(rooms["joined_rooms"])

        out = []
        for members in fam_members:
            # a member the demo prints without a Matrix login (a watch-only dependant,
            # say) cannot sync: the family is measured with the others
            members = [m for m in members if m.get("matrix_user") and m.get("password")]
            if len(members) < 2:
                raise RuntimeError("a demo family has fewer than 2 members with a Matrix login")
            got = await gather_bounded(4, [login(m) for m in members])
            common = set.intersection(*(r for _, r in got))
            if len(common) != 1:
                raise RuntimeError(f"expected one room shared by {len(got)} members, got {common}")
            out.append(Family(common.pop(), [m for m, _ in got]))
        return out


def kares_instance(
    args: argparse.Namespace, hard_limit_s: int, matrix: bool, workers: int = 1
) -> tuple[Any, Any, Path, Any]:
    """``kares serve`` on a fresh instance (PostgreSQL with --db postgresql) and its demo
    families: (server, pg or None, var dir, ``kares demo --families F --json``'s output).
    With ``matrix``, skipped while the server does not speak the Matrix API."""
    var_dir = Path(tempfile.mkdtemp(prefix="chatbench-kares-"))
    pg = None
    srv = None
    try:
        if args.db == "postgresql":
            pg = bench_ingest().start_durable_pg()
        bi = bench_ingest()
        env = bi.kares_env(var_dir, pg.url if pg else "", "WARNING")
        kares = str(bi.VENV_BIN / "kares")
        subprocess.run([kares, "migrate"], env=env, check=True, timeout=300, capture_output=True)
        srv = bi.Server(env, hard_limit_s=hard_limit_s, workers=workers)
        srv.wait_ready()
        if matrix:
            st = http_wait(srv.url + "/_matrix/client/versions", 30, srv.proc, srv.log_path)
            if st == 404:
                raise Skip(NOT_MATRIX)
        p = subprocess.run(
            [kares, "demo", "--families", str(args.families), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if p.returncode != 0:
            raise Skip(
                f"`kares demo --families {args.families} --json` failed: {p.stderr.strip()[-300:]}"
            )
        return srv, pg, var_dir, json.loads(p.stdout)
    except BaseException:
        if srv is not None:
            srv.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
        raise


def kares_target(args: argparse.Namespace, hard_limit_s: int) -> Target:
    if args.kares_url:
        url = args.kares_url.rstrip("/")
        st = http_wait(url + "/_matrix/client/versions", 30, None, Path("-"))
        if st == 404:
            raise Skip(NOT_MATRIX)
        if not args.kares_demo_json:
            raise Skip(
                "--kares-url needs --kares-demo-json (the output of `kares demo "
                "--families N --json` on that server's instance)"
            )
        raw = json.loads(Path(args.kares_demo_json).read_text())
        fams = asyncio.run(kares_login(url, demo_families(raw, args.members)[: args.families]))
        roots = [args.kares_pid] if args.kares_pid else []
        return Target("kares", url, "?", f"already running at {url}", fams, roots)

    srv, pg, var_dir, raw = kares_instance(args, hard_limit_s, matrix=True)
    try:
        groups = demo_families(raw, args.members)[: args.families]
        fams = asyncio.run(kares_login(srv.url, groups))
    except BaseException:
        srv.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
        raise
    return kares_server_target("kares", "matrix", args, srv, pg, var_dir, fams)


def kares_server_target(
    name: str,
    wire: str,
    args: argparse.Namespace,
    srv: Any,
    pg: Any,
    var_dir: Path,
    fams: list[Family],
) -> Target:
    def stop() -> None:
        srv.stop()
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(var_dir, ignore_errors=True)

    db = "postgresql" if pg else "sqlite"
    workers = getattr(srv, "workers", 1)
    procs = "1 process" if workers == 1 else f"--workers {workers} with its own Redis"
    notes = f"kares serve ({procs}), {db}, KARES_LOG_LEVEL=WARNING, var {var_dir}"
    pg_roots = [pg_postmaster(pg)] if pg is not None else []
    # the server's process tree, and the Redis of --workers (counted as the
    # server's); tree_cpu and the RSS samples walk each root's descendants
    roots = list(srv.roots())
    return Target(name, srv.url, db, notes, fams, roots, pg_roots, stop, wire)


def demo_ws_families(raw: Any, args: argparse.Namespace) -> list[Family]:
    """``kares demo --families N --json`` as kares-ws families: each member's account id
    and the bearer token its app holds; the family's conversation id is the family's id."""
    out = []
    for f in raw["families"][: args.families]:
        members = [Member(m["account_id"], m["token"]) for m in f["members"] if m.get("token")]
        if len(members) < 2:
            raise RuntimeError("a demo family has fewer than 2 members with a token")
        out.append(Family(str(f["id"]), members))
    return out


def kares_ws_target(args: argparse.Namespace, hard_limit_s: int) -> Target:
    """Kares' own WebSocket: the same members and families, each member holding one
    socket (``/api/v1/ws``) instead of a /sync long-poll, and sending with ``POST
    /api/v1/conversations/{family}/messages`` (the route the Kares app uses)."""
    if args.kares_url:
        url = args.kares_url.rstrip("/")
        if not args.kares_demo_json:
            raise Skip("--kares-url needs --kares-demo-json (`kares demo --families N --json`)")
        raw = json.loads(Path(args.kares_demo_json).read_text())
        fams = demo_ws_families(raw, args)
        roots = [args.kares_pid] if args.kares_pid else []
        return Target("kares-ws", url, "?", f"already running at {url}", fams, roots, wire="ws")
    return _kares_ws(args, hard_limit_s, "kares-ws", 1)


def kares_ws_w2_target(args: argparse.Namespace, hard_limit_s: int) -> Target:
    """``kares-ws`` on ``kares serve --workers 2`` with a Redis of the bench's own
    (messages and presence cross between the two processes through it)."""
    if args.kares_url:
        raise Skip("kares-ws-w2 starts its own server; --kares-url is for kares-ws")
    return _kares_ws(args, hard_limit_s, "kares-ws-w2", 2)


def _kares_ws(args: argparse.Namespace, hard_limit_s: int, name: str, workers: int) -> Target:
    srv, pg, var_dir, raw = kares_instance(args, hard_limit_s, matrix=False, workers=workers)
    try:
        fams = demo_ws_families(raw, args)
    except BaseException:
        srv.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
        raise
    return kares_server_target(name, "ws", args, srv, pg, var_dir, fams)


ADAPTERS: dict[str, Callable[[argparse.Namespace, int], Target]] = {
    "synapse": synapse_target,
    "kares": kares_target,
    "kares-ws": kares_ws_target,
    "kares-ws-w2": kares_ws_w2_target,
}


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    db: str
    mode: str
    window_s: float
    sent: int = 0  # PUT 200, started in the window
    offered: int = 0  # sends started in the window (open loop: ticks not skipped)
    unanswered: int = 0  # of those, PUTs still without an answer when the drain ended
    skipped: int = 0  # open-loop ticks skipped (max in flight), in the window
    delivered_in_window: int = 0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    put_p99_ms: float = float("nan")
    not_served: int = 0
    duplicates: int = 0
    echoes: int = 0
    limited: int = 0
    syncs: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu: float = float("nan")  # cores
    db_cpu: float = float("nan")
    server_rss_mb: float = float("nan")
    db_rss_mb: float = float("nan")
    client_cpu: float = 0.0
    machine_busy: float = 0.0  # cores
    others: float = 0.0
    load_before: str = ""

    @property
    def sent_s(self) -> float:
        return self.sent / self.window_s

    @property
    def delivered_s(self) -> float:
        return self.delivered_in_window / self.window_s


class Meter:
    """CPU over the window: machine (/proc/stat), this process, server and database trees."""

    def __init__(self, server: Sequence[int], db: Sequence[int]) -> None:
        self.server, self.db = list(server), list(db)

    def _now(self) -> tuple[float, tuple[int, int], float, float, float]:
        return (
            time.perf_counter(),
            machine_ticks(),
            own_cpu(),
            tree_cpu(self.server),
            tree_cpu(self.db),
        )

    def start(self) -> None:
        self.a = self._now()

    def stop(self, run: Run) -> None:
        t1, (b1, n1), o1, s1, d1 = self._now()
        t0, (b0, n0), o0, s0, d0 = self.a
        el = t1 - t0
        run.machine_busy = (os.cpu_count() or 1) * (b1 - b0) / max(1, n1 - n0)
        run.client_cpu = (o1 - o0) / el
        known = run.client_cpu
        if self.server:
            run.server_cpu = (s1 - s0) / el
            known += run.server_cpu
        if self.db:
            run.db_cpu = (d1 - d0) / el
            known += run.db_cpu
        run.others = max(0.0, run.machine_busy - known)


async def one_run(t: Target, mode: str, args: argparse.Namespace) -> Run:
    import aiohttp

    kind, _, val = mode.partition(":")
    run = Run(t.name, t.db, mode, float(args.window), load_before=loadavg())
    run_id = f"{t.name}-{secrets.token_hex(4)}"
    members = [(fi, mi, m) for fi, f in enumerate(t.families) for mi, m in enumerate(f.members)]
    errors: Counter[str] = Counter()
    # mid -> (monotonic start, family, sender index, PUT seconds or None, failed)
    sends: dict[int, list[Any]] = {}
    deliveries: list[tuple[float, int, int, float]] = []  # (mono, mid, receiver index, ms)
    counters = {"echo": 0, "limited": 0, "syncs": 0}
    conn = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:
        # setup, before any clock: a filter and a since token per member
        async def setup(m: Member) -> tuple[str, str]:
            _, fd = await mx(
                http, "POST", f"{t.url}{CS}/user/{q(m.user_id)}/filter", m.token, SYNC_FILTER
            )
            fid = fd["filter_id"]
            _, sd = await mx(http, "GET", f"{t.url}{CS}/sync?filter={q(fid)}&timeout=0", m.token)
            return fid, sd["next_batch"]

        async def setup_ws(m: Member) -> Any:
            """The member's socket, open once it has said ``caught_up``."""
            ws = await http.ws_connect(
                ws_url(t.url),
                headers={"Authorization": f"Bearer {m.token}"},
                autoping=True,  # the server pings every 20 s
                max_msg_size=1 << 20,
            )
            for _ in range(10_000):  # hello, then anything missed, then caught_up
                msg = await asyncio.wait_for(ws.receive(), 60)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"socket of {m.user_id}: {msg.type.name} before caught_up")
                if json.loads(msg.data).get("type") == "caught_up":
                    return ws
            raise RuntimeError(f"socket of {m.user_id}: no caught_up")

        t0 = time.perf_counter()
        if t.wire == "ws":
            sockets = await gather_bounded(50, [setup_ws(m) for _, _, m in members])
            print(f"    setup ({len(sockets)} sockets open) {time.perf_counter() - t0:.1f}s")
        else:
            tokens = await gather_bounded(8, [setup(m) for _, _, m in members])
            print(f"    setup (filters, first syncs) {time.perf_counter() - t0:.1f}s", flush=True)

        loop = asyncio.get_running_loop()
        start = loop.time() + 0.5
        w0, w1 = start + args.warmup, start + args.warmup + args.window
        end = w1 + args.drain
        stop_send = asyncio.Event()
        inflight = [0] * len(t.families)
        skipped_at: list[float] = []
        mid_seq = [0]
        body_pad = "x" * max(0, args.body_bytes - 40)

        async def receiver(idx: int, m: Member, fid: str, since: str) -> None:
            url = f"{t.url}{CS}/sync"
            hdr = {"Authorization": f"Bearer {m.token}"}
            backoff = 0.1
            while loop.time() < end:
                params = {"filter": fid, "since": since, "timeout": str(args.sync_timeout_ms)}
                try:
                    async with http.get(
                        url,
                        params=params,
                        headers=hdr,
                        timeout=aiohttp.ClientTimeout(total=args.sync_timeout_ms / 1000 + 30),
                    ) as r:
                        if r.status != 200:
                            errors[f"sync {r.status}"] += 1
                            await asyncio.sleep(backoff)
                            backoff = min(2.0, backoff * 2)
                            continue
                        data = await r.json(content_type=None)
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    errors[f"sync {type(exc).__name__}"] += 1
                    await asyncio.sleep(backoff)
                    backoff = min(2.0, backoff * 2)
                    continue
                now_us = time.time() * 1e6
                mono = loop.time()
                backoff = 0.1
                counters["syncs"] += 1
                since = data.get("next_batch", since)
                for room in (data.get("rooms") or {}).get("join", {}).values():
                    tl = room.get("timeline") or {}
                    if tl.get("limited"):
                        counters["limited"] += 1
                    for ev in tl.get("events") or ():
                        c = ev.get("content") or {}
                        if ev.get("type") != "m.room.message" or c.get("run") != run_id:
                            continue
                        if ev.get("sender") == m.user_id:
                            counters["echo"] += 1
                        else:
                            deliveries.append((mono, c["mid"], idx, (now_us - c["kares_ts"]) / 1e3))

        async def receiver_ws(idx: int, m: Member, ws: Any) -> None:
            """Every frame of the member's socket; a ``message`` of this run is a delivery
            (or an echo, the sender's own); a ``resync`` is counted as "limited"."""
            while loop.time() < end:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        errors[f"ws closed {ws.close_code}"] += 1
                        return
                    if msg.type == aiohttp.WSMsgType.ERROR:
                        errors["ws error"] += 1
                        return
                    continue
                now_us = time.time() * 1e6
                mono = loop.time()
                counters["syncs"] += 1
                frame = json.loads(msg.data)
                kind = frame.get("type")
                if kind == "resync":
                    counters["limited"] += 1
                    continue
                if kind != "message":
                    continue
                mm = (frame.get("data") or {}).get("message") or {}
                got = WS_TEXT.match(mm.get("text") or "")
                if got is None or got.group(1) != run_id:
                    continue
                if mm.get("sender_id") == m.user_id:
                    counters["echo"] += 1
                else:
                    sent_us = int(got.group(3))
                    deliveries.append((mono, int(got.group(2)), idx, (now_us - sent_us) / 1e3))

        async def send(fi: int, mi: int) -> bool:
            f = t.families[fi]
            m = f.members[mi]
            mid_seq[0] += 1
            mid = mid_seq[0]
            rec = [loop.time(), fi, mi, None, False]  # start, family, sender, PUT s, failed
            sends[mid] = rec
            inflight[fi] += 1
            verb = "POST" if t.wire == "ws" else "PUT"
            try:
                ts = int(time.time() * 1e6)
                if t.wire == "ws":  # the route the Kares app sends with
                    url = f"{t.url}/api/v1/conversations/{q(f.room_id)}/messages"
                    content: dict[str, Any] = {
                        "txn_id": f"{run_id}.{mid}",
                        "kind": "text",
                        "text": f"bench {run_id} {mid} {ts} hello family, message {body_pad}",
                    }
                    ok_status: tuple[int, ...] = (200, 201)
                else:
                    url = f"{t.url}{CS}/rooms/{q(f.room_id)}/send/m.room.message/{run_id}.{mid}"
                    content = {
                        "msgtype": "m.text",
                        "body": f"hello family, message {mid} {body_pad}",
                        "kares_ts": ts,
                        "run": run_id,
                        "mid": mid,
                    }
                    ok_status = (200,)
                async with http.request(
                    verb,
                    url,
                    json=content,
                    headers={"Authorization": f"Bearer {m.token}"},
                    timeout=aiohttp.ClientTimeout(total=120),
                ) as r:
                    await r.read()
                    if r.status in ok_status:
                        rec[3] = loop.time() - rec[0]
                        return True
                    errors[f"{verb} {r.status}"] += 1
                    rec[4] = True
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors[f"{verb} {type(exc).__name__}"] += 1
                rec[4] = True
            finally:
                inflight[fi] -= 1
            return False

        tasks: set[asyncio.Task[Any]] = set()

        def spawn(c: Any) -> None:
            task = asyncio.ensure_future(c)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def ticker(fi: int, rate: float) -> None:
            period = 1 / rate
            first = start + period * fi / len(t.families)  # spread the families over a period
            k = 0
            while not stop_send.is_set():
                at = first + k * period
                if at >= w1:
                    return
                if at > loop.time():
                    await asyncio.sleep(at - loop.time())
                if inflight[fi] >= args.max_inflight:
                    skipped_at.append(at)
                else:
                    spawn(send(fi, k % len(t.families[fi].members)))
                k += 1

        async def worker(w: int, rot: list[int]) -> None:
            while not stop_send.is_set() and loop.time() < w1:
                i = rot[0]
                rot[0] += 1
                fi = i % len(t.families)
                mi = (i // len(t.families)) % len(t.families[fi].members)
                if not await send(fi, mi):
                    await asyncio.sleep(0.05)  # a failing server: no hot loop

        rss: dict[str, float] = {"server": 0.0, "db": 0.0}

        async def sampler() -> None:
            while loop.time() < end:
                if t.server_roots:
                    rss["server"] = max(rss["server"], rss_mb(t.server_roots))
                if t.db_roots:
                    rss["db"] = max(rss["db"], rss_mb(t.db_roots))
                await asyncio.sleep(1.0)

        meter = Meter(t.server_roots, t.db_roots)
        for idx, (_, _, m) in enumerate(members):
            if t.wire == "ws":
                spawn(receiver_ws(idx, m, sockets[idx]))
            else:
                fid, since = tokens[idx]
                spawn(receiver(idx, m, fid, since))
        spawn(sampler())
        await asyncio.sleep(max(0.0, start - loop.time()))
        if kind == "open":
            for fi in range(len(t.families)):
                spawn(ticker(fi, float(val)))
        else:
            rot = [0]
            for w in range(int(val)):
                spawn(worker(w, rot))
        await asyncio.sleep(max(0.0, w0 - loop.time()))
        meter.start()
        await asyncio.sleep(max(0.0, w1 - loop.time()))
        meter.stop(run)
        stop_send.set()
        await asyncio.sleep(max(0.0, end - loop.time()))
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if t.wire == "ws":
            await asyncio.wait_for(
                asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 30
            )

    # figures, from what was recorded
    in_w = {mid: r for mid, r in sends.items() if w0 <= r[0] < w1}
    ok = {mid: r for mid, r in in_w.items() if r[3] is not None}
    run.offered = len(in_w)
    run.unanswered = sum(1 for r in in_w.values() if r[3] is None and not r[4])
    run.sent = len(ok)
    run.skipped = sum(1 for a in skipped_at if w0 <= a < w1)
    run.put_p99_ms = pct([r[3] * 1e3 for r in ok.values()], 0.99)
    lat = [ms for _, mid, _, ms in deliveries if mid in ok]
    run.p50_ms, run.p99_ms = pct(lat, 0.5), pct(lat, 0.99)
    run.max_ms = max(lat) if lat else float("nan")
    run.delivered_in_window = sum(1 for mono, *_ in deliveries if w0 <= mono < w1)
    got: Counter[tuple[int, int]] = Counter((mid, rcv) for _, mid, rcv, _ in deliveries)
    run.duplicates = sum(n - 1 for n in got.values() if n > 1)
    index = {(fi, mi): idx for idx, (fi, mi, _) in enumerate(members)}
    for mid, (_, fi, si, *_) in ok.items():
        for mi in range(len(t.families[fi].members)):
            if mi != si and (mid, index[(fi, mi)]) not in got:
                run.not_served += 1
    run.echoes, run.limited, run.syncs = counters["echo"], counters["limited"], counters["syncs"]
    run.errors = dict(errors)
    if t.server_roots:
        run.server_rss_mb = rss["server"]
    if t.db_roots:
        run.db_rss_mb = rss["db"]
    return run


def run_line(r: Run) -> str:
    errs = ", ".join(f"{k} x{v}" for k, v in sorted(r.errors.items())) or "none"
    return (
        f"  {r.target:<8} {r.db:<10} {r.mode:<10} sent {r.sent_s:7.1f}/s  delivered "
        f"{r.delivered_s:7.1f}/s  p50 {r.p50_ms:7.0f} ms  p99 {r.p99_ms:7.0f} ms  PUT p99 "
        f"{r.put_p99_ms:6.0f} ms  unanswered PUTs {r.unanswered}  not served "
        f"{r.not_served}  dup {r.duplicates}  skipped "
        f"{r.skipped}  limited {r.limited}  server CPU {fmt(r.server_cpu, '.0%')}  RSS "
        f"{fmt(r.server_rss_mb, '.0f')} MB  db CPU {fmt(r.db_cpu, '.0%')}  db RSS "
        f"{fmt(r.db_rss_mb, '.0f')} MB  client {r.client_cpu:.0%}  "
        f"machine {r.machine_busy:4.2f} cores  others {r.others:4.2f}  errors: {errs}"
    )


# --- main ------------------------------------------------------------------------------------


def parse_modes(s: str) -> list[str]:
    out = []
    for m in (x.strip() for x in s.split(",") if x.strip()):
        kind, _, val = m.partition(":")
        try:
            v = float(val)
        except ValueError:
            v = -1
        if kind == "open" and 0.01 <= v <= 100:
            out.append(m)
        elif kind == "closed" and v == int(v) and 1 <= v <= 1000:
            out.append(f"closed:{int(v)}")
        else:
            raise argparse.ArgumentTypeError(
                f"bad mode {m!r}: open:R (R msg/s per family, 0.01..100) or closed:N (1..1000)"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--targets",
        default="synapse,kares",
        help="comma separated, of: synapse, kares (Matrix), kares-ws (Kares' WebSocket), "
        "kares-ws-w2 (the same on kares serve --workers 2 with Redis)",
    )
    p.add_argument(
        "--db",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="database of the servers this script starts",
    )
    p.add_argument(
        "--modes",
        type=parse_modes,
        default=parse_modes("open:0.5,closed:8"),
        help="comma separated: open:R (msg/s per family), closed:N (in flight)",
    )
    p.add_argument("--families", type=int, default=25)
    p.add_argument("--members", type=int, default=4, help="members per family")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds (0..60)")
    p.add_argument("--window", type=float, default=30.0, help="seconds (5..300)")
    p.add_argument("--drain", type=float, default=6.0, help="seconds (0..60)")
    p.add_argument("--reps", type=int, default=1, help="runs per (mode, target), interleaved")
    p.add_argument(
        "--max-inflight",
        type=int,
        default=50,
        help="open loop: sends in flight per family before a tick is skipped",
    )
    p.add_argument("--sync-timeout-ms", type=int, default=30000)
    p.add_argument("--body-bytes", type=int, default=100, help="message body length, about")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="before each run wait up to this long for the machine to be < 15%% busy",
    )
    p.add_argument(
        "--pause",
        type=float,
        default=31,
        help="seconds between runs (orphaned 30 s long-polls), 0..120",
    )
    p.add_argument(
        "--synapse-venv",
        default=str(Path.home() / "chatbench" / "synapse-venv"),
        help="a venv with matrix-synapse installed (see bench/README.md)",
    )
    p.add_argument(
        "--synapse-dir",
        help="scratch dir to generate config into and keep "
        "(reused with its users and rooms next time); default: a new /tmp dir",
    )
    p.add_argument("--synapse-url", help="use this running Synapse instead of starting one")
    p.add_argument("--synapse-state", help="with --synapse-url: users/rooms state file")
    p.add_argument("--synapse-pid", type=int, help="with --synapse-url: its pid, for CPU/RSS")
    p.add_argument("--kares-url", help="use this running Kares instead of starting one")
    p.add_argument(
        "--kares-demo-json",
        help="with --kares-url: `kares demo --families N --json` output of its instance",
    )
    p.add_argument("--kares-pid", type=int, help="with --kares-url: its pid, for CPU/RSS")
    p.add_argument("--keep", action="store_true", help="keep the scratch dirs")
    p.add_argument("--json-out", help="also write every run's figures here")
    args = p.parse_args(argv)
    for name, lo, hi in (
        ("warmup", 0, 60),
        ("window", 5, 300),
        ("drain", 0, 60),
        ("pause", 0, 120),
        ("families", 1, 1000),
        ("members", 2, 20),
        ("reps", 1, 10),
        ("max_inflight", 1, 1000),
        ("sync_timeout_ms", 0, 60000),
        ("body_bytes", 10, 60000),
        ("quiet_wait", 0, 3600),
    ):
        if not lo <= getattr(args, name) <= hi:
            p.error(f"--{name.replace('_', '-')} must be within {lo}..{hi}")
    names = [x for x in args.targets.split(",") if x]
    for n in names:
        if n not in ADAPTERS:
            p.error(f"unknown target {n}: of {', '.join(ADAPTERS)}")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        p.error("aiohttp is not installed: .venv/bin/pip install -e '.[bench]'")
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    per_run = args.warmup + args.window + args.drain + args.pause + args.quiet_wait + 180
    hard = int(len(names) * len(args.modes) * args.reps * per_run + 1800)
    print(f"bench_chat {datetime.now(UTC).isoformat(timespec='seconds')}  {machine()}")
    print(
        f"  {loadavg()}; {args.families} families x {args.members} members, modes "
        f"{args.modes}, warm-up {args.warmup:g}s, window {args.window:g}s, drain "
        f"{args.drain:g}s, pause {args.pause:g}s, {args.reps} rep(s)"
    )

    targets: list[Target] = []
    runs: list[Run] = []
    try:
        for n in names:
            try:
                t = ADAPTERS[n](args, hard)
            except Skip as exc:
                print(f"  !! {n}: skipped: {exc}", flush=True)
                continue
            targets.append(t)
            print(f"  {t.name}: {t.url} pids {t.server_roots} db {t.db_roots}: {t.notes}")
        first = True
        for rep in range(args.reps):
            for mode in args.modes:
                order = targets if rep % 2 == 0 else list(reversed(targets))
                for t in order:
                    if not first and args.pause:
                        print(f"  .. pause {args.pause:g}s (orphaned long-polls)", flush=True)
                        time.sleep(args.pause)
                    first = False
                    wait_quiet(args.quiet_wait, busy_max=0.15 * (os.cpu_count() or 1))
                    print(f"  run {rep + 1} {t.name} {mode} ({loadavg()})", flush=True)
                    r = asyncio.run(one_run(t, mode, args))
                    runs.append(r)
                    print(run_line(r), flush=True)
    finally:
        for t in targets:
            with contextlib.suppress(Exception):
                t.stop()

    if not runs:
        print("  no run: nothing to compare")
        return 1
    print("\n== family chat (synapse, kares: Matrix API; kares-ws: /api/v1/ws): medians ==")
    print(
        f"  {'target':<9}{'db':<11}{'mode':<11}{'sent/s':>8}{'deliv/s':>9}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'PUT p99':>8}{'unserved':>9}{'errors':>7}{'CPU':>6}{'RSS MB':>7}"
        f"{'dbCPU':>6}{'client':>7}{'others':>7}{'vs synapse':>11}"
    )
    cell: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        cell.setdefault((r.target, r.mode), []).append(r)

    def med(rs: list[Run], f: Callable[[Run], float]) -> float:
        return statistics.median(f(r) for r in rs)

    for mode in args.modes:
        ref = cell.get(("synapse", mode))
        for t in targets:
            rs = cell[(t.name, mode)]
            sent = med(rs, lambda r: r.sent_s)
            vs = ""
            if ref and t.name != "synapse":
                base = med(ref, lambda r: r.sent_s)
                # Synapse answered no send in the window (overloaded): no ratio
                vs = f"{sent / base:.2f}x" if base > 0 else "ref 0/s"
            print(
                f"  {t.name:<9}{t.db:<11}{mode:<11}{sent:>8.1f}"
                f"{med(rs, lambda r: r.delivered_s):>9.1f}{med(rs, lambda r: r.p50_ms):>8.0f}"
                f"{med(rs, lambda r: r.p99_ms):>8.0f}{med(rs, lambda r: r.put_p99_ms):>8.0f}"
                f"{sum(r.not_served for r in rs):>9}"
                f"{sum(sum(r.errors.values()) for r in rs):>7}"
                f"{fmt(med(rs, lambda r: r.server_cpu), '.0%'):>6}"
                f"{fmt(med(rs, lambda r: r.server_rss_mb), '.0f'):>7}"
                f"{fmt(med(rs, lambda r: r.db_cpu), '.0%'):>6}"
                f"{med(rs, lambda r: r.client_cpu):>7.0%}{max(r.others for r in rs):>7.2f}"
                f"{vs:>11}"
            )
    print(
        "  CPU, dbCPU, client: cores over the window (100% = one core); others: the most "
        "CPU (cores) other processes took in a run; vs synapse: sent/s over Synapse's in "
        "the same mode"
    )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                [{**asdict(r), "sent_s": r.sent_s, "delivered_s": r.delivered_s} for r in runs],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
