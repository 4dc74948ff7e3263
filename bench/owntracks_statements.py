"""What one ``POST /owntracks`` costs inside Kares: SQL statements, hand-offs to
the SQLite thread, commits, and CPU, counted in-process (no network, no server).

A fresh embedded instance (SQLite under a temporary KARES_VAR_DIR) is seeded
with the demo family; the first member's tracker credential posts OwnTracks
locations through the ASGI app with httpx, one after another. Every statement
SQLite runs is traced (``sqlite3.Connection.set_trace_callback`` on the
connections aiosqlite opens), every hand-off to aiosqlite's thread is counted
(``aiosqlite.Connection._execute``), and the statements of the steady state
are listed for one post.

    .venv/bin/python bench/owntracks_statements.py --posts 2000
    .venv/bin/python bench/owntracks_statements.py --profile 40   # + the top of cProfile

The CPU figure is process CPU per post with everything in one thread of
control (client and server), so it is an upper bound of the server's share;
compare it with the reference printed beside it: the same number of raw
``sqlite3`` INSERT + COMMIT of a point, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import cProfile
import io
import os
import pstats
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def raw_reference(n: int, path: Path) -> float:
    """Seconds of CPU per point for one INSERT + COMMIT with sqlite3 (WAL, NORMAL)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE fixes (id INTEGER PRIMARY KEY, account TEXT, client TEXT, t INTEGER, "
        "lat REAL, lon REAL, acc REAL, UNIQUE (account, client))"
    )
    t0 = time.process_time()
    for i in range(n):
        con.execute("BEGIN")
        con.execute(
            "INSERT INTO fixes (account, client, t, lat, lon, acc) VALUES (?,?,?,?,?,?)",
            ("a", f"c{i}", i, 31.23, 121.47, 10.0),
        )
        con.execute("COMMIT")
    cpu = time.process_time() - t0
    con.close()
    return cpu / n


async def run(args: argparse.Namespace) -> None:
    import aiosqlite.core
    import httpx

    var = Path(tempfile.mkdtemp(prefix="kares-stmts-"))
    os.environ.update(KARES_VAR_DIR=str(var), KARES_LOG_LEVEL="WARNING", KARES_JOBS_WORKER="0")
    trace: list[str] = []
    hops = collections.Counter[str]()
    real_connect = aiosqlite.core.sqlite3.connect
    real_execute = aiosqlite.core.Connection._execute

    def connect(*a: Any, **kw: Any) -> sqlite3.Connection:
        con = real_connect(*a, **kw)
        con.set_trace_callback(lambda sql: trace.append(" ".join(sql.split())))
        return con

    async def execute(self: Any, fn: Any, *a: Any, **kw: Any) -> Any:
        hops[getattr(fn, "__name__", "?")] += 1
        return await real_execute(self, fn, *a, **kw)

    aiosqlite.core.sqlite3.connect = connect  # type: ignore[assignment]
    aiosqlite.core.Connection._execute = execute  # type: ignore[method-assign]
    try:
        from kares import cli
        from kares.app import create_app
        from kares.config import get_settings

        members, _ = await cli._demo()
        tracker = members[0]["tracker"]
        cred = base64.b64encode(f"{tracker['username']}:{tracker['secret']}".encode()).decode()
        headers = {
            "authorization": f"Basic {cred}",
            "x-limit-u": tracker["username"],
            "x-limit-d": "bench",
            "content-type": "application/json",
        }
        app = create_app(get_settings(), migrate_embedded=False)
        base = int(time.time()) - 86_400
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

                async def post(i: int) -> None:
                    body = (
                        f'{{"_type":"location","lat":{31.23 + (i % 1000) * 1e-5:.6f},'
                        f'"lon":{121.47 + (i % 777) * 1e-5:.6f},"tst":{base + i},"tid":"JJ",'
                        '"acc":10,"batt":80,"vel":0,"conn":"w"}'
                    )
                    r = await c.post("/owntracks", content=body, headers=headers)
                    assert r.status_code == 200, r.text

                for i in range(50):  # warm: imports, caches, the session's touch
                    await post(i)
                trace.clear()
                hops.clear()
                await post(50)
                one = list(trace)
                one_hops = sum(hops.values())
                trace.clear()
                hops.clear()
                prof = cProfile.Profile() if args.profile else None
                t0, c0 = time.perf_counter(), time.process_time()
                if prof:
                    prof.enable()
                for i in range(51, 51 + args.posts):
                    await post(i)
                if prof:
                    prof.disable()
                    if args.dump:
                        prof.dump_stats(args.dump)
                cpu = (time.process_time() - c0) / args.posts
                wall = (time.perf_counter() - t0) / args.posts
        n = args.posts
        ran = list(trace)  # what the posts ran (the reference below is traced too)
        handed = sum(hops.values())
        kinds = collections.Counter(
            (re.split(r"\W", s.strip(), maxsplit=1)[0].upper() or s[:20]) for s in ran
        )
        ref = raw_reference(max(2000, n), var / "ref.db")
        print(f"owntracks_statements: {n} posts, one after another, in-process (SQLite, WAL)")
        print(f"  per post: {len(ran) / n:.1f} SQL statements, {handed / n:.1f} "
              f"hand-offs to the SQLite thread, {kinds['COMMIT'] / n:.2f} commits, "
              f"{kinds['ROLLBACK'] / n:.2f} rollbacks")  # fmt: skip
        print(f"  per post: {cpu * 1000:.3f} ms CPU, {wall * 1000:.3f} ms wall "
              f"(client and server in one process)")  # fmt: skip
        print(f"  reference: raw sqlite3 INSERT + COMMIT of a point {ref * 1000:.3f} ms CPU; "
              f"ratio {cpu / ref:.1f}x")  # fmt: skip
        print(
            "  statement kinds per post: "
            + ", ".join(f"{k} {v / n:.2f}" for k, v in kinds.most_common())
        )
        print(
            "  hand-offs per post by kind: "
            + ", ".join(f"{k} {v / n:.2f}" for k, v in hops.most_common())
        )
        print(f"\n  the statements of one post ({len(one)}; {one_hops} hand-offs):")
        for s in one:
            print(f"    {s if args.full else s[:150]}")
        if prof:
            st = pstats.Stats(prof)
            calls = sum(v[1] for v in st.stats.values())  # type: ignore[attr-defined]
            print(f"  Python function calls per post: {calls / n:,.0f} (cProfile; a count, "
                  "steadier than CPU time on a busy machine)")  # fmt: skip
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out).sort_stats(args.sort)
            stats.print_stats(args.profile)
            if args.callers:
                stats.print_callers(args.callers)
            print(out.getvalue())
    finally:
        aiosqlite.core.sqlite3.connect = real_connect  # type: ignore[assignment]
        aiosqlite.core.Connection._execute = real_execute  # type: ignore[method-assign]
        shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--posts", type=int, default=2000, help="posts measured (100-50000)")
    p.add_argument("--profile", type=int, default=0, help="print the top N of cProfile")
    p.add_argument("--sort", default="tottime", help="cProfile order (tottime, cumulative)")
    p.add_argument("--callers", default="", help="with --profile: who calls these (a regex)")
    p.add_argument("--dump", default="", help="with --profile: write the stats to this file")
    p.add_argument("--full", action="store_true", help="print the statements whole")
    args = p.parse_args()
    if not 100 <= args.posts <= 50_000:
        p.error("--posts must be 100..50000")
    sys.path.insert(0, str(HERE.parent / "src"))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
