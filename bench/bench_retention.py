"""The retention job on many location rows (SQLite): throughput, lock time, ingestion.

What it does, in a fresh embedded instance (``kares migrate`` + ``kares demo``):

1. Fills ``location_fixes`` with --rows rows (default 10 million) straight through
   ``sqlite3.executemany`` (the demo's four members, times spread evenly over the
   last 180 days, so about half are past the 90 days of ``location.precise``).
2. Copies the database file: the copy is the reference's.
3. Ingestion alone: a task calls ``kares.location.service.ingest`` with one fix at a
   time (its own session and commit, like a phone posting), for --ingest-seconds;
   p50/p99 latency per call.
4. Retention with ingestion: the same task runs while ``kares.retention.service.run``
   removes what is expired (its batches of ``retention_batch_size`` rows, each a short
   transaction; the per-row trigger that drops the day's packed copy included) and
   the location hook runs per batch. Prints rows/s, the number of batches, the
   longest batch's write transaction (statement, hooks and commit: how long the write
   lock was held at most), and the ingestion p50/p99/max while it ran.
5. Reference, on the copy: one raw ``DELETE FROM location_fixes WHERE recorded_ms < ?``
   (sqlite3, one transaction: the write lock is held for all of it, so an ingester
   waits that long). Ratio: retention rows/s / raw rows/s.

    .venv/bin/python bench/bench_retention.py                 # 10 million rows
    .venv/bin/python bench/bench_retention.py --rows 200000   # a quick run

Bounded: filling stops at --rows or --max-fill-seconds, retention at --max-seconds;
only local files are used.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_ingest import Instance, machine, make_instance, runtime_for  # noqa: E402

DAY_MS = 86_400_000
FILL_CHUNK = 200_000


def now_ms() -> int:
    return int(time.time() * 1000)


def fill(inst: Instance, rows: int, max_seconds: float) -> tuple[int, float]:
    """``rows`` fixes over the last 180 days, oldest first, the members in turn."""
    con = sqlite3.connect(inst.sqlite_path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    members = [(m.account_id, m.device_id) for m in inst.members]
    end = now_ms() - DAY_MS
    start = end - 179 * DAY_MS
    step = max(1, (end - start) // max(rows, 1))
    sql = (
        "INSERT INTO location_fixes (account_id, device_id, client_id, recorded_ms, received_ms, "
        "lat, lon, accuracy_m, altitude_m, speed_mps, course_deg, battery, source, precise, "
        "status, flag, radio) VALUES (?, ?, NULL, ?, ?, ?, ?, 8.0, NULL, 1.2, NULL, 80, 'gps', "
        "1, 'ok', NULL, NULL)"
    )
    t0 = time.perf_counter()
    done = 0
    while done < rows and time.perf_counter() - t0 < max_seconds:
        n = min(FILL_CHUNK, rows - done)
        batch = []
        for i in range(done, done + n):
            acc, dev = members[i % len(members)]
            t = start + i * step
            batch.append(
                (acc, dev, t, t + 500, 31.2 + (i % 5000) * 1e-5, 121.4 + (i % 3000) * 1e-5)
            )
        con.execute("BEGIN")
        con.executemany(sql, batch)
        con.execute("COMMIT")
        done += n
    elapsed = time.perf_counter() - t0
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return done, elapsed


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def ingester(rt: Any, member: Any, stop: Any, lat: list[float]) -> None:
    """One fix per call, as a phone posting: its own session and commit."""
    from kares.location.service import FixIn, ingest

    i = 0
    while not stop.is_set() and i < 1_000_000:
        fix = FixIn(
            t_ms=now_ms() - 1000,
            lat=31.23 + (i % 100) * 1e-6,
            lon=121.47,
            client_id=f"live-{id(stop)}-{i}",
            accuracy_m=8.0,
            speed_mps=0.5,
            battery=80,
            source="gps",
        )
        t = time.perf_counter()
        async with rt.db.sessions() as s:
            res = await ingest(
                s, rt, account_id=member.account_id, device_id=member.device_id,
                fixes=[fix], degraded={},
            )  # fmt: skip
            await s.commit()
        lat.append(time.perf_counter() - t)
        if res.accepted != 1:
            raise RuntimeError(f"ingest refused a fix: {[r.code for r in res.rejected]}")
        i += 1
        await asyncio.sleep(0.005)


class Ingestion:
    """The ingesting task: in this event loop (``task``: as in ``kares serve`` with its
    in-process worker) or in a thread with its own loop and connections (``thread``:
    as the API process beside a ``kares worker`` process)."""

    def __init__(self, mode: str, inst: Instance, rt: Any, member: Any) -> None:
        self.mode, self.inst, self.rt, self.member = mode, inst, rt, member
        self.lat: list[float] = []
        self.stop = threading.Event()
        self.task: asyncio.Task[None] | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        if self.mode == "task":
            self.task = asyncio.create_task(ingester(self.rt, self.member, self.stop, self.lat))
            return

        def run() -> None:
            async def go() -> None:
                async with runtime_for(self.inst) as rt:
                    await ingester(rt, self.member, self.stop, self.lat)

            try:
                asyncio.run(go())
            except BaseException as exc:  # reported by finish()
                self.error = exc

        self.thread = threading.Thread(target=run, name="ingest", daemon=True)
        self.thread.start()

    async def finish(self) -> list[float]:
        self.stop.set()
        if self.task is not None:
            await self.task
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, 120)
        if self.error is not None:
            raise self.error
        return self.lat


def show_latency(label: str, lat: list[float]) -> None:
    print(
        f"  {label:<34} {len(lat):>6} inserts  p50 {pct(lat, 0.5) * 1000:7.2f} ms  "
        f"p99 {pct(lat, 0.99) * 1000:7.2f} ms  max {max(lat, default=0) * 1000:7.1f} ms"
    )


async def measure(inst: Instance, args: argparse.Namespace) -> dict[str, Any]:
    from kares.privacy.catalog import catalog_of
    from kares.retention import service

    out: dict[str, Any] = {}
    async with runtime_for(inst) as rt:
        rules = [r for r in service.plan(catalog_of(rt)) if r.table.name == "location_fixes"]
        member = inst.members[1]
        (line,) = await service.report(rt, rules)
        out["due"] = line.due

        ing = Ingestion(args.ingest_in, inst, rt, member)
        ing.start()
        await asyncio.sleep(args.ingest_seconds)
        out["base"] = await ing.finish()

        ing = Ingestion(args.ingest_in, inst, rt, member)
        ing.start()
        await asyncio.sleep(0.5)  # its runtime is up
        t0 = time.perf_counter()
        result = await service.run(
            rt,
            rules,
            batch_size=args.batch,
            pause_s=args.pause,
            deadline=time.monotonic() + args.max_seconds,
        )
        out["elapsed"] = time.perf_counter() - t0
        out["during"] = await ing.finish()
        out["result"] = result
    return out


def raw_delete(path: Path, cutoff_ms: int) -> tuple[int, float]:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA foreign_keys=ON")
    t0 = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    n = con.execute("DELETE FROM location_fixes WHERE recorded_ms < ?", (cutoff_ms,)).rowcount
    con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return n, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="location rows to fill")
    ap.add_argument("--batch", type=int, default=1000, help="retention batch size (rows)")
    ap.add_argument(
        "--pause", type=float, default=0.01, help="pause after each batch, s (the default's)"
    )
    ap.add_argument("--ingest-seconds", type=float, default=10.0, help="ingestion-alone run")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="bound on the retention run")
    ap.add_argument(
        "--ingest-in",
        choices=["thread", "task"],
        default="thread",
        help="the ingester's own thread and connections (default), or a task in the "
        "retention's event loop (an in-process worker)",
    )
    ap.add_argument("--max-fill-seconds", type=float, default=900.0, help="bound on filling")
    args = ap.parse_args()

    print(f"machine: {machine()}")
    inst = make_instance("sqlite")
    try:
        n, took = fill(inst, args.rows, args.max_fill_seconds)
        size = inst.sqlite_path.stat().st_size / 1e6
        print(
            f"filled {n:,} location rows in {took:.1f} s ({n / took:,.0f} rows/s), {size:,.0f} MB"
        )
        ref = inst.var_dir / "reference.db"
        shutil.copy(inst.sqlite_path, ref)

        res = asyncio.run(measure(inst, args))
        result = res["result"]
        removed = result.total
        rate = removed / res["elapsed"] if res["elapsed"] else float("nan")
        print(f"expired at the start: {res['due']:,} rows")
        print(
            f"retention: removed {removed:,} rows in {res['elapsed']:.1f} s = {rate:,.0f} rows/s, "
            f"{result.batches} batches of up to {args.batch}, {args.pause * 1000:.0f} ms apart"
            + (" (stopped by --max-seconds)" if result.more else "")
        )
        print(
            f"  longest batch write transaction (write lock held): "
            f"{result.longest_batch_s * 1000:.1f} ms"
        )
        print(f"ingestion (service.ingest, one fix per call, own commit; in a {args.ingest_in}):")
        show_latency("alone", res["base"])
        show_latency("while retention runs", res["during"])
        for q in (0.5, 0.99):
            ratio = pct(res["during"], q) / pct(res["base"], q)
            print(f"  p{int(q * 100)} while retention runs / alone: {ratio:.2f}x")

        cutoff = now_ms() - 90 * DAY_MS
        rn, rt_s = raw_delete(ref, cutoff)
        raw_rate = rn / rt_s if rt_s else float("nan")
        print(
            f"reference: one raw DELETE of {rn:,} rows in {rt_s:.1f} s = {raw_rate:,.0f} rows/s "
            f"(write lock held {rt_s * 1000:,.0f} ms: an ingester waits all of it)"
        )
        print(f"ratio: retention / raw DELETE rows/s = {rate / raw_rate:.2f}x")
        lock_ratio = result.longest_batch_s / rt_s if rt_s else float("nan")
        print(f"ratio: longest lock, retention batch / raw DELETE = {lock_ratio:.4f}x")
    finally:
        inst.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
