"""Database plumbing: the declarative base, column types, engine and sessions.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) is chosen by
``KARES_DATABASE_URL`` with no code change. Tables come only from Alembic
migrations (``kares migrate``); the app never creates them itself.
"""

from __future__ import annotations

import logging
import uuid
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import DateTime, MetaData, String, event, make_url, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import TypeDecorator

from kares import sqlite

log = logging.getLogger("kares.db")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns timezone-aware datetimes (SQLite included)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def insert_for(s: AsyncSession) -> Any:
    """The ``insert`` construct with ON CONFLICT clauses for the session's
    database (PostgreSQL or SQLite)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def new_id() -> str:
    return uuid.uuid4().hex


def id_column_type() -> String:
    return String(32)


SQLITE_POOL_SIZE = 32
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    # deleted content is overwritten with zeros, not left in free space for the
    # raw file to show (policy 5.2; docs/RIGHTS.md "Deletion")
    "PRAGMA secure_delete=ON",
)


def _sqlite_file(url: str) -> tuple[str, bool]:
    """The database a SQLite URL names, and whether it is a ``file:`` URI."""
    parsed = make_url(url)
    return parsed.database or ":memory:", parsed.query.get("uri") in ("true", "1")


def make_engine(url: str, **kw: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        # statements run inline on the event loop (kares.sqlite), writers of this
        # process queue at its write gate; SQLite's own lock and busy timeout only
        # ever see other processes
        database, uri = _sqlite_file(url)
        # a connection is cheap here (no thread, no socket) and opening one is not
        # (the pragmas below): keep enough for every request in flight
        kw.setdefault("pool_size", SQLITE_POOL_SIZE)
        kw.setdefault("max_overflow", SQLITE_POOL_SIZE)
        engine = create_async_engine(
            url,
            async_creator=partial(sqlite.connect, database, timeout=30, uri=uri),
            **kw,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            for pragma in SQLITE_PRAGMAS:
                cur.execute(pragma)
            cur.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **kw)


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.dialect: str = self.engine.dialect.name
        # the bare connections of Tx, idle between transactions (SQLite only)
        self._idle: list[sqlite.Connection] = []

    def tx(self) -> Tx:
        """A transaction on a bare driver connection, without an ORM session (SQLite
        only): see :class:`Tx`."""
        assert self.dialect == "sqlite", "Tx runs on SQLite's inline driver"
        return Tx(self)

    async def _take(self) -> sqlite.Connection:
        if self._idle:
            return self._idle.pop()
        database, uri = _sqlite_file(self.url)
        conn = await sqlite.connect(database, timeout=30, uri=uri)
        for pragma in SQLITE_PRAGMAS:
            conn.raw.execute(pragma)
        return conn

    async def _give_back(self, conn: sqlite.Connection) -> None:
        if conn.in_transaction:
            await conn.rollback()
        if len(self._idle) < SQLITE_POOL_SIZE:
            self._idle.append(conn)
        else:
            conn.stop()

    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as s:
            yield s

    async def dispose(self) -> None:
        while self._idle:
            self._idle.pop().stop()
        await self.engine.dispose()


_DRIVER = "kares_sqlite_driver"


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_driver(session: OrmSession, transaction: Any) -> None:
    # the session gives its connection back when its transaction ends; the next
    # one may be another connection of the pool
    if transaction.parent is None:
        session.info.pop(_DRIVER, None)


class Tx:
    """One transaction on a driver connection of the pool, without an ORM session:
    for the steady state of the request path, whose every statement is a
    :class:`Statement` (SQLite only: ``kares.sqlite``'s inline driver).

    An :class:`~sqlalchemy.ext.asyncio.AsyncSession` costs about 0.25 ms of CPU
    for a transaction that runs one statement (check-out, begin, its transaction
    bookkeeping, commit, close, each through a greenlet), ten times the
    statement; a ``Tx`` takes an idle connection of its own and gives it back. It carries
    what a session carries for the request path: the driver, its dialect, and
    what runs after its commit (``kares.events.on_commit``). Whatever the ORM
    does (loading and flushing objects) it cannot do; code that needs that takes
    a session. Leaving the block without :meth:`commit` rolls back, and
    nothing registered to run after the commit runs."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.driver: Any = None
        self.dialect = "sqlite"
        self._after: dict[object, Callable[[], object]] = {}

    def after_commit(self, key: object, fn: Callable[[], object]) -> None:
        """Run ``fn`` once this transaction commits (once per ``key``): what
        ``kares.events.on_commit`` registers."""
        self._after.setdefault(key, fn)

    async def __aenter__(self) -> Tx:
        self.driver = await self._db._take()
        return self

    async def commit(self) -> None:
        await self.driver.commit()
        after, self._after = self._after, {}
        for fn in after.values():
            try:
                fn()
            except Exception:
                log.exception("after-commit callback %r failed", fn)

    async def __aexit__(self, *exc: object) -> None:
        self._after.clear()
        driver, self.driver = self.driver, None
        await self._db._give_back(driver)  # what was not committed is rolled back


Conn = AsyncSession | Tx
"""What the request path's statements run on: an ORM session, or a bare :class:`Tx`."""


def dialect_of(s: Conn) -> str:
    """The name of the database dialect under a session or a :class:`Tx`."""
    return s.dialect if isinstance(s, Tx) else s.get_bind().dialect.name


async def sqlite_driver(s: Conn) -> Any:
    """The session's own SQLite connection (``kares.sqlite``), inside its
    transaction, for statements that go straight to the driver; None on another
    database. Remembered until the transaction ends."""
    if isinstance(s, Tx):
        return s.driver
    info = s.sync_session.info
    driver = info.get(_DRIVER)
    if driver is None:
        if s.get_bind().dialect.name != "sqlite":
            return None
        conn = await s.connection()
        driver = info[_DRIVER] = (await conn.get_raw_connection()).driver_connection
    return driver


class Statement:
    """A Core statement built once and run on the session's own connection, inside
    its transaction: the request path's hot statements.

    On SQLite it goes straight to the driver (``kares.sqlite``, inline): compiled
    once, its parameters bound and its columns read back through their types as
    SQLAlchemy would, but without SQLAlchemy's execution context per call (about
    20 µs instead of 120-200 µs; ``bench/owntracks_statements.py``). Rows come
    back as named tuples. On PostgreSQL it runs through SQLAlchemy's Core
    connection (asyncpg pays a round trip either way).
    """

    def __init__(self, stmt: Any) -> None:
        self.stmt: Any = stmt  # a Core select / insert / update, with bindparams
        self._compiled = False

    def _compile(self) -> None:
        dialect = sqlite_dialect.dialect()
        compiled = self.stmt.compile(dialect=dialect)
        self._sql = str(compiled)
        names = list(compiled.positiontup or ())
        self._names = names
        # literals SQLAlchemy made parameters of (a LIMIT 1), with their values
        self._fixed = {n: compiled.binds[n].effective_value for n in names}
        self._bind: list[Callable[[Any], Any] | None] = [
            compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
        ]
        columns = list(getattr(self.stmt, "selected_columns", None) or ())
        if not columns:
            columns = list(getattr(self.stmt, "exported_columns", None) or ())
        self._result: list[Callable[[Any], Any] | None] = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]
        # only the columns whose type converts what the driver returns
        self._convert = [(k, p) for k, p in enumerate(self._result) if p is not None]
        self._row: Any = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        self._compiled = True

    def _params(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, proc in zip(self._names, self._bind, strict=True):
            v = params[name] if name in params else self._fixed[name]
            out.append(proc(v) if proc is not None and v is not None else v)
        return out

    def _shape(self, raw: list[Any]) -> list[Any]:
        make = self._row._make
        convert = self._convert
        if not convert:
            return [make(r) for r in raw]
        out = []
        for r in raw:
            values = list(r)
            for k, p in convert:
                values[k] = p(values[k])
            out.append(make(values))
        return out

    async def rows(self, s: Conn, params: Mapping[str, Any]) -> list[Any]:
        """Every row (a named tuple per row)."""
        driver = await sqlite_driver(s)
        if driver is None:
            assert isinstance(s, AsyncSession)
            conn = await s.connection()
            return list((await conn.execute(self.stmt, dict(params))).all())
        if not self._compiled:
            self._compile()
        return self._shape(await driver.fetch(self._sql, self._params(params)))

    async def run(self, s: Conn, params: Mapping[str, Any]) -> None:
        """Run a statement that returns no rows (an insert or update without RETURNING)."""
        driver = await sqlite_driver(s)
        if driver is None:
            assert isinstance(s, AsyncSession)
            conn = await s.connection()
            await conn.execute(self.stmt, dict(params))
            return
        if not self._compiled:
            self._compile()
        await driver.fetch(self._sql, self._params(params))

    async def first(self, s: Conn, params: Mapping[str, Any]) -> Any:
        found = await self.rows(s, params)
        return found[0] if found else None


class Entities:
    """Whole entities of a few mapped classes, one row of each per result row
    (a join), read by a :class:`Statement` and made the session's persistent
    objects without the ORM's loading machinery: what a request's one
    authenticating query needs on every call, at a fraction of the cost of
    ``session.execute(select(A, B))`` (``bench/owntracks_statements.py``).

    The objects are the session's own, as if it had loaded them with
    ``populate_existing``: one already in its identity map is refreshed in place;
    changing one is flushed as a change of that row. Only column attributes are
    read (the classes it is used with map no relationships)."""

    def __init__(self, classes: tuple[type[Any], ...], build: Callable[..., Any]) -> None:
        self.classes = classes
        self._props = [
            [(p.key, p.columns[0]) for p in sa_inspect(cls).column_attrs] for cls in classes
        ]
        # build(*columns of each class, in order) -> the select, with its joins and binds
        self.statement = Statement(build(*(c for props in self._props for _, c in props)))

    async def first(self, s: AsyncSession, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        row = await self.statement.first(s, params)
        if row is None:
            return None
        out, at = [], 0
        for cls, props in zip(self.classes, self._props, strict=True):
            values = row[at : at + len(props)]
            at += len(props)
            out.append(_adopt(s.sync_session, cls, props, values))
        return tuple(out)


def _adopt(session: OrmSession, cls: type[Any], props: list[tuple[str, Any]], values: Any) -> Any:
    mapper = sa_inspect(cls)
    pk = tuple(values[i] for i, (_, c) in enumerate(props) if c.primary_key)
    existing = session.identity_map.get(mapper.identity_key_from_primary_key(pk))
    if existing is not None:
        for (key, _), v in zip(props, values, strict=True):
            set_committed_value(existing, key, v)
        return existing
    obj = mapper.class_manager.new_instance()
    # as the ORM's own loader fills a fresh object: straight into its dict, so
    # nothing is recorded as changed
    obj.__dict__.update(zip([key for key, _ in props], values, strict=True))
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


async def hold(s: AsyncSession, entity: Any, key: str) -> None:
    """Hold one row until this transaction ends (a write to it that changes
    nothing: its ``updated_at`` to itself): PostgreSQL locks the row; on SQLite the
    first write of a transaction takes the database's write lock. Requests that
    hold the same row then run what follows one after another: a count made after
    it is exact until the commit, so no burst overruns a cap."""
    await s.execute(
        update(entity)
        .where(entity.id == key)
        .values(updated_at=entity.updated_at)
        .execution_options(synchronize_session=False)
    )
