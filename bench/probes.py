"""Replay issue 12's probes against a live Kares on loopback, and print what held.

Run from the repository root:

    .venv/bin/python bench/probes.py                 # every probe, SQLite, once
    .venv/bin/python bench/probes.py --scale 4       # bursts four times as large
    .venv/bin/python bench/probes.py --only 1-lockout-burst,3-place-cap
    .venv/bin/python bench/probes.py --database-url postgresql+asyncpg://... \
        --data-keys ... --index-key ...              # against a PostgreSQL database

Starts a fake SMS gateway (an HTTP server on 127.0.0.1) and ``kares serve`` on a
fresh ``KARES_VAR_DIR`` (``kares migrate``, ``kares demo`` first), runs the probes of
``tests/support/probes.py`` one after another within ``--budget`` seconds, prints a
table, and exits 1 if any did not hold. ``tests/test_probes.py`` runs the same
probes on each database tier in CI; this is the by-hand form with larger bursts.
Nothing leaves 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "src", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import httpx  # noqa: E402
from tests.support import probes  # noqa: E402
from tests.support.fakes import FakeSmsGateway  # noqa: E402
from tests.support.live import live_server  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1, help="burst size multiplier (default 1)")
    ap.add_argument("--only", default="", help="comma-separated probe names")
    ap.add_argument("--budget", type=float, default=300, help="seconds for all probes")
    ap.add_argument("--database-url", default="", help="default: embedded SQLite")
    ap.add_argument("--data-keys", default="", help="KARES_DATA_KEYS for PostgreSQL")
    ap.add_argument("--index-key", default="", help="KARES_INDEX_KEY for PostgreSQL")
    ap.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    ap.add_argument("--list", action="store_true", help="list the probes and exit")
    args = ap.parse_args()
    if args.list:
        for name, (what, _) in probes.PROBES.items():
            print(f"{name:24} {what}")
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(probes.PROBES)
    if unknown:
        ap.error(f"unknown probes: {', '.join(sorted(unknown))}")
    sms = FakeSmsGateway()
    with tempfile.TemporaryDirectory(prefix="kares-probes-") as tmp:
        env = {
            "KARES_VAR_DIR": str(Path(tmp) / "var"),
            "KARES_SMS_SENDER": "http",
            "KARES_SMS_HTTP_URL": sms.base + "/send",
            "KARES_SMS_HTTP_TOKEN": "sms-secret",
            "KARES_TRUSTED_PROXIES": "127.0.0.1",
        }
        if args.database_url:
            env.update(
                KARES_DATABASE_URL=args.database_url,
                KARES_DATA_KEYS=args.data_keys,
                KARES_INDEX_KEY=args.index_key,
            )
        try:
            with live_server(env, Path(tmp), watch=True) as live:

                async def go() -> list[probes.Outcome]:
                    async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
                        ctx = probes.Ctx(live, client, sms, scale=args.scale)
                        return await probes.run(ctx, names or None, budget_s=args.budget)

                outcomes = asyncio.run(go())
        finally:
            sms.close()
    print(probes.dumps(outcomes) if args.json else probes.table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
