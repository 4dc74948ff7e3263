"""Running ``kares backup`` from a test: its environment (the test's database,
keys and var directory, and a fresh age key pair), the command (in-process, or
as a real process), and a plain ``pg_dump`` of the database to scan."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
import pyrage
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATA_KEYS, TEST_INDEX_KEY
from tests.support import cli
from tests.support.pgserver import _bin
from tests.test_cli import run_kares


def new_key(where: Path, name: str = "backup-key.txt") -> tuple[Path, str]:
    """An age identity file and its public key."""
    ident = pyrage.x25519.Identity.generate()
    path = where / name
    path.write_text(f"{ident}\n")
    return path, str(ident.to_public())


def identity(key_file: Path) -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.from_str(key_file.read_text().strip())


def backup_env(db_url: str, var_dir: Path, key: tuple[Path, str]) -> dict[str, str]:
    return {
        "KARES_DATABASE_URL": db_url,
        "KARES_DATA_KEYS": TEST_DATA_KEYS,
        "KARES_INDEX_KEY": TEST_INDEX_KEY,
        "KARES_VAR_DIR": str(var_dir),
        "KARES_BACKUP_RECIPIENTS": key[1],
        "KARES_BACKUP_IDENTITY_FILE": str(key[0]),
    }


async def kares(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``kares ARGS`` in-process (tests/support/cli.py), the test's event loop
    running meanwhile."""
    return await cli.arun(*args, env=env)


async def kares_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m kares ARGS``, a real process."""
    return await anyio.to_thread.run_sync(lambda: run_kares(*args, env=env))


async def let_go(db: Any) -> None:
    """Close the test process's connections, as a stopped server would have: a
    restore refuses while anything else has the database open."""
    await db.dispose()


def plain_dump(url: str) -> bytes:
    """``pg_dump --format=plain`` of a PostgreSQL database: every row, as text."""
    u = make_url(url)
    where = ["-h", str(u.host), "-p", str(u.port), "-U", str(u.username), "-d", str(u.database)]
    r = subprocess.run(
        [_bin("pg_dump"), "--format=plain", *where],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return r.stdout


def leftovers(var_dir: Path, db_url: str) -> list[str]:
    """Work files a backup or restore may leave behind (none, when it is done)."""
    found = [p.name for p in var_dir.glob(".backup-*")]
    if db_url.startswith("sqlite"):
        db = Path(db_url.split("///", 1)[1])
        found += [p.name for p in db.parent.glob(f".{db.name}.restore-*")]
    return found
