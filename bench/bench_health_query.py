"""Benchmark: one year of minute-level heart rate for one person (525,600 samples)
-> a weekly summary and a downsampled year series, read from the database.

Run from the repository root:

    .venv/bin/python bench/bench_health_query.py [--db sqlite|postgresql|both] [--runs 9]

For each database: a fresh instance (a temporary SQLite file, or the test suite's
throwaway PostgreSQL server from tests/support/pgserver.py, with its durable
settings restored), migrated; one account; then

1. **ingestion**: 525,600 samples (one a minute for 365 days, ending now) through
   ``kares.health.service.ingest`` in batches of 2,000, one transaction each, as
   the batch API stores them (validation, unit conversion, the blind-index key,
   the day's read, merge, pack and write). Twice: encrypted (as the service runs)
   and for a second account with ``crypto.seal``/``unseal`` replaced by the
   identity ("plaintext variant": the same code minus AES-GCM), so the ratio is the
   cost of encryption on ingestion.
2. **queries**, each on a new runtime (a new connection: a cold page cache), the
   median of ``--runs``: the weekly summary of the last 7 days
   (``service.summaries``: heart rate min/avg/max and the other metrics, all read)
   and the whole year as a series at ``day`` (365 points) and ``hour`` (8,760
   points) resolution (``service.series``). References in the same run: the same
   computations on numpy arrays already in memory, and the plaintext variant.

Targets (issue 15): weekly summary under 200 ms, downsampled year under 300 ms.
It is a benchmark, not a test: the only checks are sanity checks (the counts and
the values agree with the in-memory reference).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "src", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402

YEAR_MIN = 525_600
BATCH = 2000


def heart_rates(n: int) -> np.ndarray:
    """A plausible day rhythm plus noise, integer beats per minute."""
    rng = np.random.default_rng(15)
    minute = np.arange(n)
    day = 62 + 14 * np.sin((minute % 1440) / 1440 * 2 * np.pi - 2.0)
    return np.clip(np.round(day + rng.normal(0, 6, n)), 35, 190)


async def bare_accounts(rt: Any, count: int, prefix: str) -> list[str]:
    """``count`` active adult accounts (phones ``prefix`` + 4 digits), nothing
    else: the people whose health the health benches store and read."""
    from kares import crypto
    from kares.identity.models import Account

    async with rt.db.sessions() as s:
        ids = []
        for i in range(count):
            phone = f"{prefix}{i:04d}"
            a = Account(
                phone=phone,
                phone_hash=crypto.blind_index(phone, purpose="phone"),
                status="active",
                age_bracket="adult",
                created_at=datetime.now(UTC),
                updated_at=datetime.now(UTC),
            )
            s.add(a)
            await s.flush()
            ids.append(a.id)
        await s.commit()
    return ids


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


async def run(kind: str, runs: int, samples: int) -> None:
    from sqlalchemy import text

    import kares.domains  # noqa: F401 - every table, for the foreign keys
    from kares import crypto
    from kares.config import get_settings
    from kares.health import service
    from kares.health.service import SampleIn
    from kares.runtime import Runtime

    settings = get_settings()
    rt = Runtime.build(settings)  # installs the key ring
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(minutes=samples - 1)
    values = heart_rates(samples)
    times_ms = ms(start) + 60_000 * np.arange(samples, dtype=np.int64)

    sealed_id, plain_id = await bare_accounts(rt, 2, "+861390000")

    async def ingest(account_id: str) -> float:
        t0 = time.perf_counter()
        for k in range(0, samples, BATCH):
            batch = [
                SampleIn(
                    metric="heart_rate",
                    start=start + timedelta(minutes=k + j),
                    value=float(values[k + j]),
                    unit="/min",
                    source="Bench Watch",
                    record_id=f"hr-{k + j}",
                )
                for j in range(min(BATCH, samples - k))
            ]
            async with rt.db.sessions() as s:
                out = await service.upload(
                    s, account_id=account_id, samples=batch, now=datetime.now(UTC)
                )
            assert all(o.status == "stored" for o in out), out[:3]
        return time.perf_counter() - t0

    seal, unseal = crypto.seal, crypto.unseal

    @contextlib.contextmanager
    def plaintext() -> Iterator[None]:
        """The plaintext variant: the same code with AES-GCM left out."""
        crypto.seal = lambda data, *, context: data  # type: ignore[assignment]
        crypto.unseal = lambda blob, *, context: bytes(blob)  # type: ignore[assignment]
        try:
            yield
        finally:
            crypto.seal, crypto.unseal = seal, unseal

    el_sealed = await ingest(sealed_id)
    with plaintext():
        el_plain = await ingest(plain_id)
    async with rt.db.sessions() as s:
        rows, size = (
            await s.execute(
                text(
                    "SELECT count(*), sum(length(data)) FROM health_vitals_days "
                    "WHERE account_id = :a"
                ),
                {"a": sealed_id},
            )
        ).one()
    await rt.close()
    print(f"\n== {kind}: {samples:,} heart-rate samples, {rows} day rows, {size / 1e6:.1f} MB")
    print(
        f"ingestion  encrypted {samples / el_sealed:>9,.0f} samples/s ({el_sealed:.1f} s)   "
        f"plaintext variant {samples / el_plain:>9,.0f} samples/s ({el_plain:.1f} s)   "
        f"encryption costs x{el_sealed / el_plain:.2f}"
    )

    week_lo = end + timedelta(minutes=1) - timedelta(days=7)
    week_hi = end + timedelta(minutes=1)
    year_lo, year_hi = start, end + timedelta(minutes=1)
    tz = __import__("zoneinfo").ZoneInfo("UTC")

    async def timed(fn: Callable[[Any], Awaitable[Any]]) -> tuple[list[float], Any]:
        out: list[float] = []
        got: Any = None
        for k in range(runs + 1):
            rt2 = Runtime.build(settings)
            try:
                async with rt2.db.sessions() as s:
                    await s.connection()
                gc.collect()
                t0 = time.perf_counter()
                async with rt2.db.sessions() as s:
                    got = await fn(s)
                el = (time.perf_counter() - t0) * 1000
                if k:  # the first is a warm-up
                    out.append(el)
            finally:
                await rt2.close()
        return out, got

    def week(account_id: str) -> Callable[[Any], Awaitable[Any]]:
        async def f(s: Any) -> Any:
            return (await service.summaries(s, account_id=account_id, spans=[(week_lo, week_hi)]))[
                0
            ]

        return f

    def year(account_id: str, resolution: str) -> Callable[[Any], Awaitable[Any]]:
        async def f(s: Any) -> Any:
            return await service.series(
                s,
                account_id=account_id,
                metric="heart_rate",
                lo=year_lo,
                hi=year_hi,
                resolution=resolution,
                tz=tz,
            )

        return f

    def in_memory(fn: Callable[[], Any]) -> tuple[list[float], Any]:
        out, got = [], None
        for _ in range(runs):
            gc.collect()
            t0 = time.perf_counter()
            got = fn()
            out.append((time.perf_counter() - t0) * 1000)
        return out, got

    def mem_week() -> tuple[float, float, float]:
        a, b = np.searchsorted(times_ms, [ms(week_lo), ms(week_hi)])
        w = values[a:b]
        return float(w.min()), float(w.mean()), float(w.max())

    def mem_year(step_ms: int) -> tuple[np.ndarray, np.ndarray]:
        idx = times_ms // step_ms  # buckets on UTC hours and days, as the service cuts them
        _, starts = np.unique(idx, return_index=True)
        return np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)

    print(f"{'query':<28}{'median ms':>10}{'best':>8}{'in memory':>11}{'x mem':>8}"
          f"{'plaintext':>11}{'x plain':>9}{'target':>9}")  # fmt: skip
    cases = [
        ("weekly summary", week, (), mem_week, 200.0),
        ("year series, day (365)", year, ("day",), lambda: mem_year(86_400_000), 300.0),
        ("year series, hour (8,760)", year, ("hour",), lambda: mem_year(3_600_000), 300.0),
    ]
    for name, make, args, mem, target in cases:
        t_sealed, got = await timed(make(sealed_id, *args))
        with plaintext():
            t_plain, got_plain = await timed(make(plain_id, *args))
        t_mem, ref = in_memory(mem)
        if name == "weekly summary":
            assert (got.heart_rate_min, got.heart_rate_max) == (ref[0], ref[2]), (got, ref)
            assert abs(got.heart_rate_avg - ref[1]) < 0.06
            assert got.heart_rate_count == 7 * 1440
        else:
            assert got.min == ref[0].tolist() and got.max == ref[1].tolist()
            assert got.max == got_plain.max
        med, med_plain, med_mem = (statistics.median(x) for x in (t_sealed, t_plain, t_mem))
        ok = "ok" if med < target else "MISSED"
        print(
            f"{name:<28}{med:>10.1f}{min(t_sealed):>8.1f}{med_mem:>11.2f}{med / med_mem:>8.0f}"
            f"{med_plain:>11.1f}{med / med_plain:>9.2f}{f'<{target:.0f} {ok}':>9}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--samples", type=int, default=YEAR_MIN)
    args = ap.parse_args()
    if args.db == "both":
        for kind in ("sqlite", "postgresql"):
            cmd = [sys.executable, __file__, "--db", kind, "--runs", str(args.runs)]
            subprocess.run([*cmd, "--samples", str(args.samples)], check=True, timeout=3600)  # noqa: S603
        return 0
    var = tempfile.mkdtemp(prefix="kares-bench-health-")
    os.environ.update(KARES_VAR_DIR=var, KARES_JOBS_WORKER="false", KARES_ENV="development")
    pg = None
    if args.db == "postgresql":
        from bench_ingest import start_durable_pg  # type: ignore[import-not-found]

        pg = start_durable_pg()
        os.environ["KARES_DATABASE_URL"] = pg.url
    try:
        from kares import migrations
        from kares.config import get_settings

        migrations.upgrade(get_settings().effective_database_url)
        asyncio.run(run(args.db, args.runs, args.samples))
    finally:
        if pg is not None:
            pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
