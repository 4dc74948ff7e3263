"""Benchmark: an Apple Health export imported into the health store
(kares.protocols.applehealth_import.run_import: the parser streamed into
service.ingest_columns in batches, one transaction each), on embedded SQLite or
on PostgreSQL (a throwaway durable server, as bench_ingest.py starts it).

Run from the repository root:

    .venv/bin/python bench/bench_health_import.py [--sizes 20000,100000] [--dir DIR]
        [--db sqlite|postgresql] [--before SRC]

``--before SRC`` also imports each file with the code of another checkout's
``src`` (the code before a change: ``git worktree add --detach /tmp/before
<commit>``, then ``--before /tmp/before/src``), each pass in its own child,
and prints after / before: a before-and-after measured in the same run.

For each size it writes a synthetic export.xml of that many top-level records
(tests/support/applehealth.py, as bench_applehealth.py does), then, each in a
fresh child process on the same file:

* ``import``: a new SQLite database, one consenting account, ``run_import`` to
  the end (every sample checked, packed, sealed and stored);
* ``parse``: the reference, the parser consumed alone as the import reads it
  (``read_export_columns`` in batches of ``BATCH``; no storage);
* ``before`` (with ``--before``): ``import`` again, with the other tree's code.

Per pass: records/s (wall and CPU) and the child's peak RSS; each line ends
with the load averages when it was printed. Memory is bounded
when the import's peak does not grow with the file: the last lines print the
peak of the largest size over the smallest (about 1 for constant memory), and
import / parse (time and peak) in the same run.

A benchmark, not a test: the only checks are sanity checks (every sample was
stored or refused, none lost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (Path(os.environ.get("KARES_BENCH_SRC") or ROOT / "src"), ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


BATCH = 5_000  # kares.protocols.applehealth_import.BATCH (not imported: the whole app)


def _load() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


async def _import(path: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    import kares.domains  # noqa: F401 - every table and hook
    from kares import crypto
    from kares.config import get_settings
    from kares.identity.models import Account
    from kares.privacy import service as privacy
    from kares.privacy.catalog import catalog_of
    from kares.protocols.applehealth import Progress
    from kares.protocols.applehealth_import import Tally, run_import
    from kares.runtime import Runtime

    rt = Runtime.build(get_settings())
    await privacy.sync_at_start(rt)  # the policy version the receipts name
    version = catalog_of(rt).policy.version
    async with rt.db.sessions() as s:
        now = datetime.now(UTC)
        phone = "+8613900001234"
        a = Account(
            phone=phone,
            phone_hash=crypto.blind_index(phone, purpose="phone"),
            status="active",
            age_bracket="adult",
            created_at=now,
            updated_at=now,
        )
        s.add(a)
        await s.flush()
        for subject in ("policy", "category:health.vitals", "category:health.activity"):
            await privacy.record(
                s,
                account_id=a.id,
                subject=subject,
                action="grant",
                policy_version=version,
                via="app",
            )
        await s.commit()
        account_id = a.id
    before = _rss_mb()
    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    prog, tally = Progress(), Tally()
    await run_import(rt, account_id, path, progress=prog, tally=tally)
    out = {
        "wall": time.perf_counter() - t0,
        # the reader process's CPU too (run_import parses in a child)
        "cpu": time.process_time() - c0 + _children_cpu() - k0,
        "reader_peak_mb": (getattr(prog, "reader_peak_kb", None) or 0) / 1024.0,
        "records": prog.records,
        "samples": prog.samples,
        "stored": tally.stored,
        "duplicates": tally.duplicates,
        "refused": tally.refused,
        "refused_codes": dict(tally.refused_codes),
        "rss_before_mb": before,
    }
    await rt.close()
    return out


def child(mode: str, path: str) -> dict[str, Any]:
    if mode == "import":
        with tempfile.TemporaryDirectory(prefix="kares-bench-himport-") as var:
            os.environ.update(KARES_VAR_DIR=var, KARES_JOBS_WORKER="false", KARES_ENV="development")
            pg = None
            if os.environ.get("KARES_BENCH_DB") == "postgresql":
                sys.path.insert(1, str(ROOT / "bench"))
                from bench_ingest import start_durable_pg  # type: ignore[import-not-found]

                pg = start_durable_pg()
                os.environ["KARES_DATABASE_URL"] = pg.url
            try:
                # migrated by a process of its own, as ``kares migrate`` before
                # ``kares health import``: the import's process does not carry
                # alembic and the migrations in its peak memory
                src = os.environ.get("KARES_BENCH_SRC") or str(ROOT / "src")
                subprocess.run(  # noqa: S603
                    [
                        sys.executable,
                        "-c",
                        f"import sys; sys.path.insert(0, {src!r}); from kares import migrations; "
                        "from kares.config import get_settings; "
                        "migrations.upgrade(get_settings().effective_database_url)",
                    ],
                    check=True,
                )
                out = asyncio.run(_import(path))
            finally:
                if pg is not None:
                    pg.stop()
    else:
        from kares.protocols.applehealth import Progress, read_export_columns

        before = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        prog = Progress()
        # the parser as the import reads it: batches of columns
        for _ in read_export_columns(path, batch=BATCH, progress=prog):
            pass
        out = {
            "wall": time.perf_counter() - t0,
            "cpu": time.process_time() - c0,
            "records": prog.records,
            "samples": prog.samples,
            "rss_before_mb": before,
        }
    # the import's peak: this process's and, beside it, its reader's (the sum:
    # both may peak at once)
    out.update(mode=mode, peak_mb=_rss_mb() + out.get("reader_peak_mb", 0.0))
    return out


def run_child(mode: str, path: Path, db: str, src: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, str(path)]
    env = {**os.environ, "KARES_BENCH_DB": db}
    env.pop("KARES_BENCH_SRC", None)
    if src:
        env["KARES_BENCH_SRC"] = src
    done = subprocess.run(  # noqa: S603
        cmd, check=True, capture_output=True, text=True, timeout=3600, env=env
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--before", default=None, metavar="SRC", help="another checkout's src")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "PATH"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    from tests.support.applehealth import write_export

    sizes = [int(x) for x in args.sizes.split(",")]
    folder = Path(args.dir or tempfile.mkdtemp(prefix="kares-bench-himport-files-"))
    folder.mkdir(parents=True, exist_ok=True)
    peaks: dict[int, float] = {}
    for n in sizes:
        path = folder / f"export-{n}.xml"
        if not path.exists():
            write_export(path, n, seed=15)
        imp, ref = run_child("import", path, args.db), run_child("parse", path, args.db)
        assert imp["records"] == ref["records"] and imp["samples"] == ref["samples"]
        assert imp["stored"] + imp["duplicates"] + imp["refused"] == imp["samples"]
        peaks[n] = imp["peak_mb"]
        print(
            f"{n:>9,} records ({path.stat().st_size / 1e6:,.0f} MB, {imp['samples']:,} samples): "
            f"import {imp['records'] / imp['wall']:,.0f} records/s "
            f"(cpu {imp['records'] / imp['cpu']:,.0f}), {imp['stored']:,} stored, "
            f"{imp['refused']:,} refused {imp['refused_codes']}, peak {imp['peak_mb']:.1f} MB "
            f"(reader {imp.get('reader_peak_mb', 0.0):.1f}) | "
            f"parse alone {ref['records'] / ref['wall']:,.0f} records/s "
            f"(cpu {ref['records'] / ref['cpu']:,.0f}), peak {ref['peak_mb']:.1f} MB"
            f" | import/parse: time {imp['wall'] / ref['wall']:.1f}x, "
            f"peak {imp['peak_mb'] / ref['peak_mb']:.2f}x | load {_load()}",
            flush=True,
        )
        if args.before:
            old = run_child("import", path, args.db, str(Path(args.before).resolve()))
            # the same samples; as many stored unless the file runs into the
            # future (3 M): "now" moves between the passes, and with it the
            # last samples refused as in the future
            assert old["records"] == imp["records"] and old["samples"] == imp["samples"]
            assert old["stored"] + old["duplicates"] + old["refused"] == imp["samples"]
            print(
                f"{'':>9}  before ({args.before}): import {old['records'] / old['wall']:,.0f} "
                f"records/s (cpu {old['records'] / old['cpu']:,.0f}), {old['stored']:,} stored, "
                f"{old['refused']:,} refused {old['refused_codes']}, peak {old['peak_mb']:.1f} MB"
                f" | after/before: speed {old['wall'] / imp['wall']:.2f}x "
                f"(cpu {old['cpu'] / imp['cpu']:.2f}x) | load {_load()}",
                flush=True,
            )
    lo, hi = min(sizes), max(sizes)
    print(f"database: {args.db}")
    print(
        f"import peak memory, {hi:,} records / {lo:,} records: {peaks[hi] / peaks[lo]:.2f}x "
        f"(file {hi / lo:.0f}x larger)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
