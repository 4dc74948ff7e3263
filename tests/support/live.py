"""A real ``kares serve`` process on loopback, for tests and bench scripts that must
talk to the service the way a client on the network does (raw sockets, many
connections at once, the log a server writes).

``live_server(env)`` runs ``kares migrate`` and ``kares demo --json`` with ``env``
(so the demo's accounts, tokens and tracker credentials exist; in this process,
see ``tests/support/cli.py``), starts ``kares serve``
on a free port of 127.0.0.1 (and a watch port when asked), waits for ``/readyz`` and
yields a :class:`Live`. The server's output goes to a file the caller can read
(``Live.log()``); the process is stopped on exit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kares(*args: str, env: dict[str, str]) -> str:
    """``kares ARGS`` with ``env`` on top of this process's, run in-process
    (tests/support/cli.py: the server is the real process here); its stdout."""
    r = cli.run(*args, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"kares {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def kares_env(var_dir: Path, db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``kares`` command on the test tier's database (``db_url``:
    SQLite under ``var_dir``, or the PostgreSQL database with the tests' keys), with
    cheap password hashing and ``extra`` settings."""
    from tests.conftest import TEST_DATA_KEYS, TEST_INDEX_KEY

    env = {
        "KARES_VAR_DIR": str(var_dir),
        "KARES_ARGON2_MEMORY_COST_KIB": "1024",
        "KARES_ARGON2_TIME_COST": "1",
        **extra,
    }
    if db_url.startswith("postgresql"):
        env.update(
            KARES_DATABASE_URL=db_url,
            KARES_DATA_KEYS=TEST_DATA_KEYS,
            KARES_INDEX_KEY=TEST_INDEX_KEY,
        )
    return env


@dataclass
class Live:
    url: str
    port: int
    watch_port: int | None
    env: dict[str, str]
    demo: list[dict[str, Any]]
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextmanager
def live_server(
    env: dict[str, str],
    log_dir: Path,
    *,
    watch: bool = False,
    start_timeout: float = 60,
    seeded: list[dict[str, Any]] | None = None,
    workers: int = 1,
) -> Iterator[Live]:
    """``kares serve`` on a free port of 127.0.0.1, the database migrated and the
    demo seeded first; ``seeded``: a second process on a database another
    ``live_server`` already seeded, whose demo members it shares (two ``kares``
    runs fewer); ``workers``: ``kares serve --workers N``."""
    if seeded is None:
        kares("migrate", env=env)
        demo = json.loads(kares("demo", "--json", env=env))["members"]
    else:
        demo = seeded
    port = free_port()
    watch_port = free_port() if watch else None
    args = [sys.executable, "-m", "kares", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if watch_port is not None:
        args += ["--watch-port", str(watch_port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    log_path = log_dir / f"kares-serve-{port}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"kares serve exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kares serve did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Live(url, port, watch_port, env, demo, log_path, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
