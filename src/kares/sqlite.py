"""SQLite for asyncio, inline: every statement runs at once on the event loop's thread.

aiosqlite hands each call (open a cursor, execute, fetch, close) to a thread of
its own and back, four hand-offs for one SELECT; each is a wake-up of that
thread and a hand-over of the GIL, and costs far more than SQLite itself, which
answers from its page cache in microseconds. SQLAlchemy's aiosqlite dialect
takes any connection that speaks aiosqlite's interface (``async_creator``),
so this module gives it one whose coroutines do their work and return without
ever suspending: no thread, no hand-off.

What may not run at once is a write. SQLite lets one connection of a database
write at a time; a connection that waited for that lock on the event loop
would stop every other request, including the one holding the lock. So the
first write of a transaction awaits this process's *write gate* for the
database (an ``asyncio.Lock``) and holds it until the transaction ends:
writers of one process queue without blocking anyone, readers never wait
(WAL), and the SQLite lock is never contended inside a process. Between
processes (``uvicorn --workers``, ``kares worker`` beside ``kares serve``) a
writing transaction begins with ``BEGIN IMMEDIATE`` asked without waiting:
while another process holds the write lock, it awaits a few hundred
microseconds and asks again, so SQLite's busy handler never sleeps on the
event loop either.

Polling is unfair: a process that keeps writing takes the lock again within a
turn of its loop after each commit, while one that polls asks only every few
hundred microseconds, and could wait for seconds (two ``--workers`` under
steady batch uploads: p99 3.7 s). So processes take turns (:class:`_Turns`): a
process polling for the lock says so with a shared ``flock`` on a small file
beside the database (``<db>-turns``), and a process about to begin a write lets
such a waiter go first (for up to ``TURN_WAIT_SECONDS``). Nothing ever blocks
on the file: every ``flock`` is asked without waiting.

Long work still runs inline; callers that write many rows in one transaction
(a file import) yield to the loop between their batches. The one slow thing
SQLite does on its own, the checkpoint that copies the write-ahead log into
the database file and syncs it, is taken off the loop: connections are opened
with automatic checkpoints off, and a thread per database checkpoints every
second while the database is open (``Checkpointer``).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

# how long a writer waits for the gate before giving up as SQLite would ("database
# is locked"): only a transaction that never ends can hold it that long
GATE_TIMEOUT_SECONDS = 30.0
_READS = ("SELECT", "EXPLAIN")
# statements that write inside a transaction: one is begun (IMMEDIATE) for them
_TRANSACTIONAL = ("INSERT", "UPDATE", "DELETE", "REPLACE", "SAVEPOINT", "WITH")
BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY_SECONDS = 1.0
# how long a process about to write lets another process's waiting writer go first
TURN_WAIT_SECONDS = 0.05
TURN_POLL_SECONDS = 0.0002
# the longest pause between two asks for the write lock held by another process
POLL_MAX_SECONDS = 0.001

log = logging.getLogger("kares.sqlite")

_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _gate(path: str) -> asyncio.Lock:
    by_path = _gates.setdefault(asyncio.get_running_loop(), {})
    lock = by_path.get(path)
    if lock is None:
        lock = by_path[path] = asyncio.Lock()
    return lock


def _reads_only(sql: str) -> bool:
    head = sql.lstrip()[:8].upper()
    if head.startswith(_READS):
        return True
    return head.startswith("PRAGMA") and "=" not in sql


class _Turns:
    """Write turns between the processes of one database, on ``<db>-turns``.

    A writer that found the write lock taken holds a shared ``flock`` on the file
    while it polls; a writer about to begin asks for an exclusive one without
    waiting, which fails while anyone waits, and then lets them go first. One
    open file per database and process: within a process the write gate lets
    one writer at a time this far, so the process never meets its own lock."""

    _lock = threading.Lock()
    _open: dict[str, _Turns] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self.users = 0
        self._fd = os.open(f"{path}-turns", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @classmethod
    def attach(cls, database: str) -> _Turns | None:
        """The turns of a database file, for one more connection of this process
        (:meth:`detach` when it closes); None for a database in memory."""
        path = database
        if path.startswith("file:"):
            if "mode=memory" in path:
                return None
            path = path[5:].split("?", 1)[0]
        if path in ("", ":memory:"):
            return None
        with cls._lock:
            found = cls._open.get(path)
            if found is None:
                found = cls._open[path] = _Turns(path)
            found.users += 1
            return found

    def detach(self) -> None:
        """One connection fewer; the file is closed with the last."""
        with self._lock:
            self.users -= 1
            if self.users > 0:
                return
            if self._open.get(self.path) is self:
                del self._open[self.path]
            os.close(self._fd)

    def others_waiting(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        return False

    def waiting(self) -> bool:
        """Say this process waits for the lock (False if a probe holds the file
        for the moment: asked again at the next poll)."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def done_waiting(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


class Checkpointer:
    """Copies the write-ahead log into the database file every second, on a thread
    of its own, for as long as a connection of this process has the database open
    (a PASSIVE checkpoint: it never waits for, or blocks, readers and writers)."""

    _lock = threading.Lock()
    _open: dict[str, Checkpointer] = {}

    def __init__(self, path: str, connect_kw: dict[str, Any]) -> None:
        self.path = path
        self.users = 0
        self._stop = threading.Event()
        self._kw = connect_kw
        self._thread = threading.Thread(
            target=self._run, name=f"kares-checkpoint {path}", daemon=True
        )

    @classmethod
    def attach(cls, path: str, connect_kw: dict[str, Any]) -> None:
        if path == ":memory:" or "mode=memory" in path:
            return
        with cls._lock:
            found = cls._open.get(path)
            if found is None:
                found = cls._open[path] = Checkpointer(path, connect_kw)
                found._thread.start()
            found.users += 1

    @classmethod
    def detach(cls, path: str) -> None:
        with cls._lock:
            found = cls._open.get(path)
            if found is None:
                return
            found.users -= 1
            if found.users > 0:
                return
            del cls._open[path]
            found._stop.set()
        # wait for its last checkpoint and its close: once every connection of the
        # process is closed, none may still touch the database's files (a database
        # created anew at the same path must not lose its log to an old connection)
        found._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, **self._kw)
        except sqlite3.Error:
            log.exception("checkpointer for %s could not open the database", self.path)
            return
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(CHECKPOINT_EVERY_SECONDS):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    log.warning("checkpoint of %s failed: %s", self.path, exc)
            # a last one, so a closed database leaves a short log behind
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                pass
        finally:
            conn.close()


class Cursor:
    """aiosqlite's cursor interface over a ``sqlite3.Cursor``, inline."""

    def __init__(self, conn: Connection, cursor: sqlite3.Cursor) -> None:
        self._conn = conn
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        await self._conn._before(sql)
        try:
            self._cursor.execute(sql, parameters)
        finally:
            self._conn._after()
        return self

    async def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor:
        await self._conn._before(sql)
        try:
            self._cursor.executemany(sql, seq)
        finally:
            self._conn._after()
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Result:
    """What ``Connection.execute`` returns: awaitable, and an async context manager
    (``async with conn.execute(...) as cur``), as aiosqlite's is."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self._run = run
        self._cursor: Cursor | None = None

    def __await__(self) -> Generator[Any, None, Cursor]:
        cur: Cursor = yield from self._run().__await__()
        return cur

    async def __aenter__(self) -> Cursor:
        self._cursor = await self._run()
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        if self._cursor is not None:
            await self._cursor.close()


class _InlineQueue:
    """Stands in for aiosqlite's queue to its thread: SQLAlchemy sets the
    isolation level through it; here the function runs at once."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, fn = item
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the awaiting caller
            future.set_exception(exc)


class Connection:
    """aiosqlite's connection interface over a ``sqlite3.Connection``, inline, with
    the process's write gate around each writing transaction."""

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self._path = path
        self._conn = conn
        # commits never checkpoint on the event loop: the Checkpointer's thread does
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self._connection: sqlite3.Connection | None = conn  # aiosqlite's "is open"
        self._tx = _InlineQueue(conn)
        self._holding: asyncio.Lock | None = None
        self._turns = _Turns.attach(path)

    # -- the write gate -------------------------------------------------------------------

    async def _before(self, sql: str) -> None:
        if self._holding is not None or _reads_only(sql):
            return
        gate = _gate(self._path)
        if gate.locked():  # another writer of this process: wait (bounded) for it
            try:
                await asyncio.wait_for(gate.acquire(), GATE_TIMEOUT_SECONDS)
            except TimeoutError:
                raise sqlite3.OperationalError("database is locked") from None
        else:
            await gate.acquire()
        self._holding = gate
        if (
            not self._conn.in_transaction
            and self._conn.isolation_level is not None
            and sql.lstrip()[:9].upper().startswith(_TRANSACTIONAL)
        ):
            try:
                await self._begin_immediate()
            except BaseException:
                self._after()
                raise

    async def _begin_immediate(self) -> None:
        """Take the database's write lock for this transaction without ever sleeping
        on the event loop: ask with no busy timeout, and while another process holds
        it, await a little and ask again (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATE_TIMEOUT_SECONDS
        turns = self._turns
        if turns is not None:
            # another process polls for the lock: its turn first (bounded)
            for _ in range(round(TURN_WAIT_SECONDS / TURN_POLL_SECONDS)):
                if not turns.others_waiting():
                    break
                await asyncio.sleep(TURN_POLL_SECONDS)
        delay = 0.0002
        waiting = False
        self._conn.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or loop.time() > deadline:
                        raise
                if turns is not None and not waiting:
                    waiting = turns.waiting()
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX_SECONDS)
        finally:
            if waiting:
                assert turns is not None
                turns.done_waiting()
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _after(self) -> None:
        if self._holding is not None and not self._conn.in_transaction:
            gate, self._holding = self._holding, None
            gate.release()

    @property
    def raw(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection underneath."""
        return self._conn

    # -- aiosqlite's interface ------------------------------------------------------------

    def cursor(self) -> Cursor:
        return Cursor(self, self._conn.cursor())

    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """Run one statement and return its rows: the shortest way through, for the
        request path's hot statements (kares.db.Statement)."""
        await self._before(sql)
        try:
            return self._conn.execute(sql, parameters).fetchall()
        finally:
            self._after()

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> _Result:
        return _Result(lambda: self.cursor().execute(sql, parameters))

    async def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor:
        return await self.cursor().executemany(sql, seq)

    async def commit(self) -> None:
        try:
            self._conn.commit()
        finally:
            self._after()

    async def rollback(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._after()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close (also SQLAlchemy's terminate)."""
        if self._connection is None:
            return
        try:
            self._conn.close()
        finally:
            self._connection = None
            Checkpointer.detach(self._path)
            if self._turns is not None:
                self._turns.detach()
            if self._holding is not None:
                gate, self._holding = self._holding, None
                gate.release()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes

    @property
    def row_factory(self) -> Any:
        return self._conn.row_factory

    @row_factory.setter
    def row_factory(self, value: Any) -> None:
        self._conn.row_factory = value


async def connect(database: str, **kw: Any) -> Connection:
    """Open ``database`` (a path, or ``file:...`` with ``uri=True``) for asyncio."""
    kw.setdefault("check_same_thread", False)
    conn = sqlite3.connect(database, **kw)
    Checkpointer.attach(database, {k: v for k, v in kw.items() if k == "uri"})
    return Connection(database, conn)
