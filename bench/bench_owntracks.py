# ruff: noqa: S603, S607  (fixed local commands)
"""``POST /owntracks`` throughput, side by side with OwnTracks Recorder (the C reference server).

Servers, each on 127.0.0.1 and each started fresh by this script:

  recorder   ot-recorder built on this machine (see bench/README.md), ``--norevgeo``,
             its bundled HTTP server, ``POST /pub``, plain files, no fsync;
  kares      ``kares serve`` (uvicorn, one process) on a fresh KARES_VAR_DIR
             (SQLite, WAL, synchronous=NORMAL), after ``kares migrate`` and
             ``kares demo --json``; HTTP Basic with the first demo member's
             tracker credential, ``X-Limit-U`` = its user name;
  kares-w2   ``kares serve --workers 2``: two processes on one port, their live notices
             shared through a redis-server the bench starts on loopback (its CPU
             counted as the server's);
  recorder-shm (only if asked for) the same with its store on /dev/shm: no disk under
             its file work, the fastest it runs here (its speed on the disk varies by day);
  floor      (only if asked for) the SQL of a Kares post on the same database under a
             bare ASGI app (``bench/owntracks_floor.py``): the cost of our layers is the
             gap between it and ``kares``;
  kares-quiet (only if asked for with --variants) ``kares serve`` with
             KARES_LOG_LEVEL=WARNING: no access-log line per request.

Load: ``wrk -t1 -cC -dDs --latency -s bench/owntracks_post.lua`` -- one thread, so
every post carries a distinct, increasing ``tst``; keep-alive connections; the same
body for every server. Each run uses a new ``X-Limit-D`` (device) and a new
``BASE`` (time of the first point), so a run's points can be counted on their own
and the last location always moves forward. Runs are interleaved: for each
repetition, for each concurrency, every server in turn. Median of the runs.

After every run the points are counted where each server keeps them (Kares:
rows of location_fixes with the run's device in client_id; Recorder: lines of
rec/<user>/<device>/*.rec) and compared with wrk's completed requests: stored
must be >= completed (a post still in flight when wrk stops may be stored but not
counted, so at most `concurrency` more).

Without ot-recorder (not built, or --recorder missing), the reference is the
raw SQLite ceiling instead: one INSERT + COMMIT per point with ``sqlite3``, WAL,
synchronous=NORMAL (what the storage alone allows), and the script says so.

    .venv/bin/python bench/bench_owntracks.py --duration 15 --reps 3

Every server is started under ``timeout`` and stopped at the end; wrk runs under
``timeout`` too. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_ingest as bi  # noqa: E402  (shared: instances, servers, CPU accounting)

LUA = HERE / "owntracks_post.lua"
DEFAULT_RECORDER = Path.home() / "otbench" / "recorder"


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    path: str
    user: str
    auth: str  # Authorization header value or ""
    pids: Any  # () -> list[int]
    # the `timeout` processes above the server (and its Redis): their trees' CPU is the server's
    roots: list[int]
    count: Any  # (device) -> int
    stop: Any  # () -> None
    notes: str = ""


def _kares_count(db: Path, account_id: str) -> Any:
    """(device) -> the fixes a run stored in a Kares database (its client ids name the device)."""

    def count(device: str) -> int:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return int(
                con.execute(
                    "SELECT count(*) FROM location_fixes WHERE account_id = ? AND client_id LIKE ?",
                    (account_id, f"ot:{device}:%"),
                ).fetchone()[0]
            )
        finally:
            con.close()

    return count


def _ready(srv: Any, inst: Any, member: Any) -> str:
    """Wait for the server (stopping it and its instance if it never answers); the
    member's tracker credential as HTTP Basic."""
    try:
        srv.wait_ready()
    except BaseException:
        srv.stop()
        inst.close()
        raise
    return base64.b64encode(f"{member.tracker_user}:{member.tracker_secret}".encode()).decode()


def _stopper(srv: Any, inst: Any) -> Any:
    def stop() -> None:
        srv.stop()
        inst.close()

    return stop


def _instance_target(name: str, srv: Any, inst: Any, notes: str) -> Target:
    """A server started on a demo instance (Kares or the floor), once it answers:
    it posts as the instance's first member, counts that member's stored fixes, and
    stops the server and the instance together."""
    member = inst.members[0]
    cred = _ready(srv, inst, member)
    return Target(
        name=name,
        url=srv.url,
        path="/owntracks",
        user=member.tracker_user,
        auth=f"Basic {cred}",
        pids=srv.pids,
        roots=srv.roots(),
        count=_kares_count(inst.sqlite_path, member.account_id),
        stop=_stopper(srv, inst),
        notes=f"{notes}; log {srv.log_path}",
    )


def kares_target(name: str, workers: int, log_level: str, hard_limit_s: int) -> Target:
    inst = bi.make_instance("sqlite", log_level=log_level)
    srv = bi.Server(inst.env, workers=workers, hard_limit_s=hard_limit_s)
    how = (
        f"kares serve (1 process), KARES_LOG_LEVEL={log_level}"
        if workers == 1
        else f"kares serve --workers {workers}, KARES_REDIS_URL a redis-server of the bench's"
    )
    return _instance_target(name, srv, inst, f"{how}; SQLite WAL synchronous=NORMAL")


def floor_target(hard_limit_s: int) -> Target:
    """The same SQL as a Kares post on a Kares database, under a bare ASGI app
    (bench/owntracks_floor.py): what is left when our layers are taken away."""
    inst = bi.make_instance("sqlite", log_level="WARNING")
    env = {**inst.env, "FLOOR_DB": str(inst.sqlite_path)}
    cmd = [str(bi.VENV_BIN / "uvicorn"), "owntracks_floor:app", "--app-dir", str(HERE),
           "--no-access-log", "--log-level", "warning", "--no-server-header"]  # fmt: skip
    srv = bi.Server(env, hard_limit_s=hard_limit_s, command=cmd)
    return _instance_target(
        "floor",
        srv,
        inst,
        "bench/owntracks_floor.py under uvicorn (1 process, no access log): a Kares "
        "post's SQL on sqlite3 with nothing around it",
    )


def recorder_target(src: Path, hard_limit_s: int, in_memory: bool = False) -> Target:
    """ot-recorder with its store in a temporary folder on the disk, or (in_memory,
    the ``recorder-shm`` variant) on /dev/shm: its per-post file work (create,
    rename, unlink, append) then never waits on the disk's journal, which makes it
    the fastest the Recorder runs here, whatever the disk does that day."""
    exe = src / "ot-recorder"
    if not os.access(exe, os.X_OK):
        raise FileNotFoundError(f"{exe} is not built")
    # mkdtemp: a fresh folder of our own (mode 700) even on the shared /dev/shm
    shm = "/dev/shm" if in_memory else None  # noqa: S108
    store = Path(tempfile.mkdtemp(prefix="otrec-store-", dir=shm))
    subprocess.run(
        [str(exe), "-S", str(store), "--initialize"], check=True, timeout=60, capture_output=True
    )
    port = bi.free_port()
    log_path = store.parent / f"{store.name}.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        ["timeout", "-s", "TERM", "-k", "10", str(hard_limit_s), str(exe), "-S", str(store),
         "--norevgeo", "--http-host", "127.0.0.1", "--http-port", str(port),
         "--doc-root", str(src / "docroot")],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(src),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    import httpx

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ot-recorder exited, see {log_path}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url + "/api/0/version", timeout=2)
            break
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"ot-recorder not listening, see {log_path}")
        time.sleep(0.2)
    user = "jane"

    def pids() -> list[int]:
        with contextlib.suppress(OSError):
            return [
                int(k)
                for k in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            ]
        return []

    def count(device: str) -> int:
        n = 0
        for f in (store / "rec" / user / device).glob("*.rec"):
            with open(f, "rb") as fh:
                n += sum(1 for _ in fh)
        return n

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        shutil.rmtree(store, ignore_errors=True)

    version = "?"
    with contextlib.suppress(OSError):
        for line in (src / "version.h").read_text().splitlines():
            if line.startswith("#define VERSION"):
                version = line.split('"')[1]
    return Target(
        name="recorder-shm" if in_memory else "recorder",
        url=url,
        path="/pub",
        user=user,
        auth="",
        pids=pids,
        roots=[proc.pid],
        count=count,
        stop=stop,
        notes=f"ot-recorder {version} at {exe}, --norevgeo, plain files, no fsync, store {store}",
    )


def sqlite_ceiling(seconds: float, max_rows: int = 2_000_000) -> float:
    """Fallback reference: one INSERT + COMMIT per point, sqlite3, WAL, NORMAL."""
    d = Path(tempfile.mkdtemp(prefix="otceil-"))
    try:
        con = sqlite3.connect(d / "c.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(
            "CREATE TABLE fixes (id INTEGER PRIMARY KEY, user TEXT, device TEXT, tst INTEGER, "
            "lat REAL, lon REAL, acc REAL, batt INTEGER, tid TEXT, raw TEXT)"
        )
        con.execute("CREATE UNIQUE INDEX ux ON fixes (user, device, tst)")
        n, t0 = 0, time.perf_counter()
        while n < max_rows and time.perf_counter() - t0 < seconds:
            n += 1
            msg = {"_type": "location", "lat": 31.23, "lon": 121.47, "tst": n, "acc": 10}
            con.execute("BEGIN")
            con.execute(
                "INSERT INTO fixes (user, device, tst, lat, lon, acc, batt, tid, raw) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                ("jane", "phone", n, 31.23, 121.47, 10, 80, "JJ", json.dumps(msg)),
            )
            con.execute("COMMIT")
        return n / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- one wrk run -----------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    conc: int
    rate: float
    p50_ms: float
    p99_ms: float
    completed: int
    stored: int
    non2xx: int
    errors: int
    cpu: float  # server CPU, cores
    wrk_cpu: float  # the load generator's CPU, cores
    others: float  # CPU of other processes on the machine during the run, cores


def run_wrk(t: Target, conc: int, duration: int, base: int, device: str) -> Run:
    env = dict(os.environ)
    env.update(
        OTPATH=t.path,
        OTHOST=t.url.removeprefix("http://"),
        OTUSER=t.user,
        OTDEV=device,
        OTAUTH=t.auth,
        BASE=str(base),
    )
    with bi.LoadMeter(t.roots) as load:
        p = subprocess.run(
            ["timeout", str(duration + 30), "wrk", "-t1", f"-c{conc}", f"-d{duration}s",
             "--timeout", "5s", "--latency", "-s", str(LUA), t.url + "/"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout[-800:]} {p.stderr[-800:]}")
    w = json.loads(line.removeprefix("WRKJSON "))
    secs = w["duration_us"] / 1e6
    time.sleep(0.5)  # let the last in-flight posts land before counting
    stored = t.count(device)
    return Run(
        target=t.name,
        conc=conc,
        rate=w["requests"] / secs,
        p50_ms=w["p50_us"] / 1000,
        p99_ms=w["p99_us"] / 1000,
        completed=w["requests"],
        stored=stored,
        non2xx=w["non2xx"],
        errors=w["connect"] + w["read"] + w["write"] + w["timeout"],
        cpu=load.server,
        wrk_cpu=load.own,
        others=load.others,
    )


# --- main -----------------------------------------------------------------------------------------


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    def med(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=15, help="seconds per wrk run (10-60)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--conc", default="1,8", help="wrk connections, comma separated")
    p.add_argument("--variants", default="recorder,kares,kares-w2",
                   help="of recorder, recorder-shm, kares, kares-w2, kares-quiet, "
                        "floor")  # fmt: skip
    p.add_argument("--quiet-wait", type=float, default=120,
                   help="wait up to this long before each run for other jobs to end")  # fmt: skip
    p.add_argument("--recorder", type=Path, default=DEFAULT_RECORDER,
                   help="the Recorder source folder, built")  # fmt: skip
    args = p.parse_args(argv)
    if not 5 <= args.duration <= 60 or not 1 <= args.reps <= 10:
        p.error("--duration must be 5..60 and --reps 1..10")
    concs = [int(x) for x in args.conc.split(",") if x]
    variants = [v for v in args.variants.split(",") if v]
    if shutil.which("wrk") is None:
        p.error("wrk is not installed (apt-get install wrk)")
    n_runs = args.reps * len(concs) * len(variants)
    hard = n_runs * (args.duration + 40) + 600

    print(f"bench_owntracks {datetime.now(UTC).isoformat(timespec='seconds')}  {bi.machine()}")
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"  {wrk_v.strip()}; wrk -t1, {args.duration}s per run, {args.reps} runs, "
          f"connections {concs}")  # fmt: skip

    targets: list[Target] = []
    ceiling: float | None = None
    try:
        for v in variants:
            if v == "recorder-shm":
                targets.append(recorder_target(args.recorder, hard, in_memory=True))
            elif v == "recorder":
                try:
                    targets.append(recorder_target(args.recorder, hard))
                except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
                    print(f"  !! OwnTracks Recorder unavailable ({exc}); the reference is the raw "
                          "SQLite ceiling (one INSERT+COMMIT per point) instead")  # fmt: skip
                    ceiling = statistics.median(sqlite_ceiling(5) for _ in range(3))
            elif v == "kares":
                targets.append(kares_target("kares", 1, "INFO", hard))
            elif v == "kares-quiet":
                targets.append(kares_target("kares-quiet", 1, "WARNING", hard))
            elif v == "kares-w2":
                targets.append(kares_target("kares-w2", 2, "INFO", hard))
            elif v == "floor":
                targets.append(floor_target(hard))
            else:
                p.error(f"unknown variant {v}")
        for t in targets:
            print(f"  {t.name}: {t.url}{t.path} pids {t.pids()}: {t.notes}")

        # warm up each server briefly (imports, statement caches, first connections)
        # each run's points take 100,000 s of their own, all within the 90 days of
        # location.precise (older points are refused as past retention)
        now = int(time.time())
        base = now - 85 * 86400
        seq = 0
        for t in targets:
            run_wrk(t, 2, 2, base, f"warm{seq}")
            seq += 1
            base += 100_000

        cells: dict[tuple[str, int], Cell] = {}
        for rep in range(args.reps):
            for conc in concs:
                order = targets if rep % 2 == 0 else list(reversed(targets))
                for t in order:
                    dev = f"r{rep}c{conc}n{seq}"
                    seq += 1
                    base += 100_000  # > any run's post count: points never overlap
                    assert base + 100_000 < now, "time window exhausted"
                    bi.wait_quiet(args.quiet_wait)
                    r = run_wrk(t, conc, args.duration, base, dev)
                    cells.setdefault((t.name, conc), Cell()).runs.append(r)
                    ok = r.stored >= r.completed and r.stored - r.completed <= conc
                    print(f"  run {rep + 1} c={conc:<2} {t.name:<11} {r.rate:8,.0f} posts/s  "
                          f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:7.2f} ms  server CPU "
                          f"{r.cpu:4.0%}  wrk {r.wrk_cpu:4.0%}  others {r.others:4.0%}  "
                          f"completed {r.completed} "
                          f"stored {r.stored} non-2xx {r.non2xx} errors {r.errors} "
                          f"{'OK' if ok and not r.non2xx else '!! MISMATCH'}",
                          flush=True)  # fmt: skip
    finally:
        for t in targets:
            with contextlib.suppress(Exception):
                t.stop()

    ref = "recorder" if any(t.name == "recorder" for t in targets) else None
    print("\n== POST /owntracks vs OwnTracks Recorder POST /pub: medians ==")
    hdr = (f"  {'server':<12}{'conc':>5}{'posts/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU':>6}"
           f"{'runs (posts/s)':>28}{'stored/completed':>20}{'others':>8}{'vs ref':>8}")  # fmt: skip
    print(hdr)
    for conc in concs:
        ref_rate = cells[(ref, conc)].med("rate") if ref else ceiling
        for t in targets:
            c = cells[(t.name, conc)]
            runs = ", ".join(f"{r.rate:,.0f}" for r in c.runs)
            st = f"{sum(r.stored for r in c.runs)}/{sum(r.completed for r in c.runs)}"
            ratio = c.med("rate") / ref_rate if ref_rate else None
            if ratio is None:
                vs = f"{'-':>8}"  # no reference in this run
            else:
                vs = f"{ratio:>7.3f}x" if ratio < 0.1 else f"{ratio:>7.2f}x"
            print(f"  {t.name:<12}{conc:>5}{c.med('rate'):>10,.0f}{c.med('p50_ms'):>9.2f}"
                  f"{c.med('p99_ms'):>9.2f}{c.med('cpu'):>6.0%}{runs:>28}{st:>20}"
                  f"{max(r.others for r in c.runs):>8.2f}{vs}")  # fmt: skip
    if ref is None and ceiling is not None:
        print(f"  reference: raw SQLite ceiling {ceiling:,.0f} points/s (Recorder not available)")
    print(
        "  CPU = the server's CPU in cores (median); others = the most CPU (cores) other "
        "processes on the machine took during a run"
    )
    print("  vs ref = posts/s of the server / posts/s of the reference at the same concurrency")
    names = {t.name for t in targets}
    if "floor" in names:
        for conc in concs:
            floor = cells[("floor", conc)].med("rate")
            for name in ("kares", "kares-quiet", "kares-w2"):
                if name in names and floor:
                    rate = cells[(name, conc)].med("rate")
                    print(f"  {name} / floor at c={conc}: {rate / floor:.2f}x (the floor is the "
                          "same SQL without our layers)")  # fmt: skip
    bad = [r for c in cells.values() for r in c.runs if r.stored < r.completed or r.non2xx]
    if bad:
        print(f"  !! {len(bad)} run(s) lost acknowledged posts or had non-2xx replies")
        return 1
    print("  every acknowledged post was stored (stored >= completed in every run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
