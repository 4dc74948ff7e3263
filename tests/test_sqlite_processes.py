"""Writers of one SQLite database in several processes take turns (kares.sqlite).

Each process asks for SQLite's write lock without waiting and polls while
another process holds it; a process that keeps writing would otherwise take
the lock again within a turn of its loop after each commit, and a poller
could wait for seconds (``kares serve --workers 2`` under batch uploads: a p99
of 3.7 s). Here two real processes, each with two writers, commit back to
back on one database; the order of their rows says whether they took turns.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.db_agnostic

WRITER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from kares import sqlite

    path, who, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    async def main():
        conns = [await sqlite.connect(path, isolation_level="DEFERRED") for _ in range(2)]
        for _ in range(20_000):  # until the test says go (bounded)
            if os.path.exists(go):
                break
            await asyncio.sleep(0.001)

        async def writer(conn):
            for _ in range(n):
                await conn.execute("INSERT INTO t (who) VALUES (?)", (who,))
                time.sleep(0.0003)  # work done inside the transaction
                await conn.commit()

        await asyncio.gather(*(writer(c) for c in conns))
        for c in conns:
            await c.close()

    asyncio.run(main())
    """
)


def test_two_processes_writing_back_to_back_take_turns(tmp_path: Path) -> None:
    path = tmp_path / "turns.db"
    go = tmp_path / "go"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT NOT NULL)")
    setup.commit()
    setup.close()
    per_writer = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), who, str(per_writer), str(go)],
            stderr=subprocess.PIPE,
        )
        for who in "AB"
    ]
    try:
        time.sleep(1.0)  # both started and waiting (they poll for the file)
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    check = sqlite3.connect(path)
    rows = [who for (who,) in check.execute("SELECT who FROM t ORDER BY id")]
    check.close()
    assert len(rows) == 2 * 2 * per_writer
    # while both were writing: up to the last row of the first to finish
    both = rows[: min(max(i for i, w in enumerate(rows) if w == who) for who in "AB") + 1]
    longest = max(len(list(run)) for _, run in itertools.groupby(both))
    # taking turns: a process writes a row or two (its two writers), then the other
    # does; without turns one process held the lock for runs of over a hundred
    assert len(both) > len(rows) // 2
    assert longest <= 10, (longest, "".join(rows))


def _open_turns(path: Path) -> int:
    """How many descriptors of this process are open on the database's turns file."""
    fds = Path("/proc/self/fd")
    target = f"{path}-turns"
    n = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == target:
                n += 1
    return n


async def test_the_turns_file_is_open_once_while_connections_are_and_closed_with_the_last(
    tmp_path: Path,
) -> None:
    from kares import sqlite

    path = tmp_path / "open.db"
    conns = [await sqlite.connect(str(path), isolation_level="DEFERRED") for _ in range(3)]
    await conns[0].execute("CREATE TABLE t (x INTEGER)")
    await conns[0].commit()
    assert _open_turns(path) == 1
    for c in conns[:2]:
        await c.close()
    assert _open_turns(path) == 1
    await conns[2].execute("INSERT INTO t VALUES (1)")  # still taking turns
    await conns[2].commit()
    await conns[2].close()
    assert _open_turns(path) == 0
