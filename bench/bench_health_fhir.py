"""Benchmark: the FHIR files of the rights archive and a FHIR import, through the
store (kares.protocols.healthfhir).

Run from the repository root:

    .venv/bin/python bench/bench_health_fhir.py [--days 30] [--runs 3]

A fresh SQLite database (a temporary file), migrated; one account with a
heart rate a minute for ``--days`` days, stored through
``kares.health.service.upload``. Then, best of ``--runs``:

1. **archive**: the ``fhir/`` writer of the rights archive
   (``export_health_fhir``): every day read from the store and decrypted, the
   samples mapped to Observations, 5,000 a Bundle, every one validated.
   Reference in the same run: ``fhir.bundles_json`` of the same samples already
   in memory (the mapper alone). The ratio is what the store adds.
2. **import**: the files written, read back (``fhir.read``) and stored for a
   second account (``service.upload``, one transaction per file), as
   ``POST /api/v1/health/fhir`` does. Reference: ``fhir.read`` alone.

It is a benchmark, not a test: the only checks are that the counts agree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "src", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

BATCH = 2000


async def run(days: int, runs: int) -> None:
    import kares.domains  # noqa: F401 - every table, for the foreign keys
    from kares.config import get_settings
    from kares.health import service
    from kares.health.service import SampleIn
    from kares.protocols import fhir, healthfhir
    from kares.runtime import Runtime

    rt = Runtime.build(get_settings())
    n = days * 1440
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(minutes=n - 1)

    from bench_health_query import bare_accounts

    owner, copy = await bare_accounts(rt, 2, "+861390001")
    for k in range(0, n, BATCH):
        batch = [
            SampleIn(
                metric="heart_rate",
                start=start + timedelta(minutes=k + j),
                value=float(60 + (k + j) % 40),
                unit="/min",
                source="Bench Watch",
                record_id=f"hr-{k + j}",
            )
            for j in range(min(BATCH, n - k))
        ]
        async with rt.db.sessions() as s:
            await service.upload(s, account_id=owner, samples=batch, now=datetime.now(UTC))

    async def archive() -> list[bytes]:
        async with rt.db.sessions() as s:
            return [f.data async for f in healthfhir.export_health_fhir(s, rt, owner)]

    async with rt.db.sessions() as s:
        lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000) + 1
        x = await service.read(
            s, account_id=owner, metric="heart_rate", lo_ms=lo, hi_ms=hi, sources=True
        )
        in_memory: list[dict[str, Any]] = list(healthfhir.samples_of(x))
    assert len(in_memory) == n, len(in_memory)

    best_arch = best_map = best_imp = best_read = float("inf")
    files: list[bytes] = []
    for r in range(runs):
        t = time.perf_counter()
        files = await archive()
        best_arch = min(best_arch, time.perf_counter() - t)
        t = time.perf_counter()
        ref = list(fhir.bundles_json(in_memory, owner))
        best_map = min(best_map, time.perf_counter() - t)
        assert len(ref) == len(files)
        t = time.perf_counter()
        got = [fhir.read(f) for f in files]
        best_read = min(best_read, time.perf_counter() - t)
        assert sum(len(g.samples) for g in got) == n
        t = time.perf_counter()
        stored = 0
        for g in (fhir.read(f) for f in files):
            samples = [healthfhir.sample_in(d) for d in g.samples]
            async with rt.db.sessions() as s:
                out = await service.upload(
                    s, account_id=copy, samples=samples, now=datetime.now(UTC)
                )
            stored += sum(o.status == "stored" for o in out)
        best_imp = min(best_imp, time.perf_counter() - t)
        assert stored == (n if r == 0 else 0), stored  # later runs: all duplicates

    print(f"samples: {n:,} heart rates ({days} days), {len(files)} Bundle files, SQLite")
    print(f"archive writer (store + map): {best_arch:.2f} s, {n / best_arch:,.0f} samples/s")
    print(f"mapper alone (reference):     {best_map:.2f} s, {n / best_map:,.0f} samples/s")
    print(f"  ratio archive / mapper: {best_arch / best_map:.2f}")
    print(f"import (read + store):        {best_imp:.2f} s, {n / best_imp:,.0f} samples/s")
    print(f"fhir.read alone (reference):  {best_read:.2f} s, {n / best_read:,.0f} samples/s")
    print(f"  ratio import / read: {best_imp / best_read:.2f}")
    await rt.db.engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    var = tempfile.mkdtemp(prefix="kares-bench-hfhir-")
    os.environ.update(KARES_VAR_DIR=var, KARES_JOBS_WORKER="false", KARES_ENV="development")
    from kares import migrations
    from kares.config import get_settings

    migrations.upgrade(get_settings().effective_database_url)
    asyncio.run(run(args.days, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
