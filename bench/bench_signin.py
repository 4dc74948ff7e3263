"""Password sign-in: does a wrong password take the same time for a registered
number as for a number nobody has, at every count of failures?

The app runs in this process (ASGI, httpx), on SQLite in a temporary directory,
with the production Argon2 parameters (64 MiB, t=3, p=2). One account has a
password; a second number has no account. Each round sends, for each count of
failures 1..--counts (through the lockout and past it), one wrong password for
each number, alternating which goes first, each from an address of its own (so
neither counts against the other's). Between rounds the clock moves past the
lock and the hour, so every round starts from nothing.

Printed per count: the answer (status and code, which must be equal), the median
time of each, the ratio unknown/registered, and the noise: the spread between
the 25th and 75th percentile of the registered number's own times. The reference
is that noise, measured in the same run: a difference of medians well inside it
means the time tells nothing.

    .venv/bin/python bench/bench_signin.py --rounds 15

Only the in-process app is used (no socket). Bounded by --rounds and --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from kares import clock  # noqa: E402
from kares.accounts import service  # noqa: E402
from kares.app import create_app  # noqa: E402
from kares.config import Settings  # noqa: E402

REGISTERED = "+8613800000091"
UNKNOWN = "+8613800000092"
LOGIN = "/api/v1/auth/password"


def _quartiles(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


async def run(rounds: int, counts: int, max_seconds: float) -> int:
    with tempfile.TemporaryDirectory(prefix="kares-bench-signin-") as tmp:
        settings = Settings(
            env="development",
            var_dir=Path(tmp),
            trusted_proxies=["127.0.0.1"],
            jobs_worker=False,
            log_level="WARNING",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            rt = app.state.runtime
            async with rt.db.sessions() as s:
                await service.demo_member(
                    s, rt, phone=REGISTERED, name="Bench", password="Right-pass-1"
                )
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
            times: dict[tuple[str, int], list[float]] = {}
            answers: dict[tuple[str, int], set[tuple[int, str]]] = {}
            started = time.monotonic()
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:

                async def attempt(phone: str, ip: str) -> tuple[float, tuple[int, str]]:
                    t0 = time.perf_counter()
                    r = await c.post(
                        LOGIN,
                        json={"phone": phone, "password": "wrong-pass-1"},
                        headers={"X-Forwarded-For": ip},
                    )
                    return time.perf_counter() - t0, (r.status_code, r.json()["code"])

                # one round unmeasured: the dummy hash is made on first use
                await attempt(UNKNOWN, "198.51.100.250")
                done = 0
                for rnd in range(rounds):
                    if time.monotonic() - started > max_seconds:
                        break
                    clock.advance(3601)
                    order = [(REGISTERED, "198.51.100.1"), (UNKNOWN, "198.51.100.2")]
                    if rnd % 2:
                        order.reverse()
                    for n in range(1, counts + 1):
                        for phone, ip in order:
                            dt, ans = await attempt(phone, ip)
                            times.setdefault((phone, n), []).append(dt)
                            answers.setdefault((phone, n), set()).add(ans)
                    done += 1
    print(
        f"# bench_signin: {done} rounds, Python {platform.python_version()}, "
        f"{platform.machine()}, SQLite, Argon2id 64 MiB t=3 p=2"
    )
    print(
        f"{'count':>5}  {'answer':<32} {'registered ms':>13} {'unknown ms':>10} "
        f"{'ratio':>6} {'diff ms':>8} {'noise (IQR) ms':>15}"
    )
    same = True
    for n in range(1, counts + 1):
        a, b = answers[REGISTERED, n], answers[UNKNOWN, n]
        same &= a == b
        ta, tb = times[REGISTERED, n], times[UNKNOWN, n]
        ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
        lo, hi = _quartiles(ta) if len(ta) > 1 else (ta[0], ta[0])
        label = ",".join(f"{s} {c}" for s, c in sorted(a)) + ("" if a == b else " != unknown")
        print(
            f"{n:>5}  {label:<32} {ma:>13.1f} {mb:>10.1f} {mb / ma:>6.2f} "
            f"{mb - ma:>8.1f} {(hi - lo) * 1e3:>15.1f}"
        )
    print("answers equal at every count:", "yes" if same else "NO")
    return 0 if same else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--counts", type=int, default=7, help="failures per round (lockout at 5)")
    p.add_argument("--max-seconds", type=float, default=300.0)
    a = p.parse_args()
    return asyncio.run(run(a.rounds, a.counts, a.max_seconds))


if __name__ == "__main__":
    sys.exit(main())
