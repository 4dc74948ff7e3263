"""A fresh, migrated database for every test, copied from one template per session.

Migrating takes a few hundred milliseconds, copying a migrated database a few
milliseconds, so each test session (each pytest-xdist worker has its own)
migrates one template and every test gets a copy of it, at the same URL for
every test of the session:

* SQLite: the migrated template file is copied to ``<dir>/kares.db``, and
  removed after the test.
* PostgreSQL: one throwaway server per session (``tests/support/pgserver.py``)
  holds a migrated ``kares_template`` database; every test gets a copy of it
  named ``kares``, dropped after the test. The copy is made ahead: while a test
  runs, a thread makes the next one (``CREATE DATABASE kares_spare TEMPLATE
  kares_template``), and the next test renames it to ``kares``, which takes no
  time; a spare that failed is dropped and the copy made there and then.

A test therefore starts from an empty, fully migrated database whatever ran
before it, on whichever worker, and leaves nothing behind for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import asyncpg

from kares import migrations
from tests.support.pgserver import PgServer

TIERS = ("sqlite", "postgresql")


def tier() -> str:
    """The database tier of this test session: ``KARES_TEST_DB``, SQLite by default."""
    name = os.environ.get("KARES_TEST_DB", "sqlite")
    if name not in TIERS:
        raise RuntimeError(f"KARES_TEST_DB must be one of {', '.join(TIERS)}, not {name!r}")
    return name


class SqliteTemplate:
    def __init__(self, root: Path) -> None:
        self.path = root / "template.db"
        migrations.upgrade(f"sqlite+aiosqlite:///{self.path}")
        # WAL mode: fold the log into the file, so that the file alone is the database
        con = sqlite3.connect(self.path)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def copy(self, where: Path) -> AsyncIterator[str]:
        path = self._copy_to(where / "kares.db")
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            self._remove(path)

    def _copy_to(self, path: Path) -> Path:
        self._remove(path)
        shutil.copyfile(self.path, path)
        return path

    @staticmethod
    def _remove(path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


class PgTemplate:
    NAME = "kares_template"
    COPY = "kares"
    SPARE = "kares_spare"

    def __init__(self) -> None:
        self.server = PgServer.start()
        try:
            self.server.create_database(self.NAME)
            migrations.upgrade(self.server.url_for(self.NAME))
            # PostgreSQL 15 and later copy a database block by block through the
            # WAL unless told to copy its files, which in memory is twice as fast
            self._copy_how = " STRATEGY FILE_COPY" if self._version() >= 150000 else ""
        except BaseException:
            self.server.stop()
            raise
        # the next test's copy, made while this one runs (its own thread and event
        # loop, so that no task of the tests' loop is left behind)
        self._ahead = ThreadPoolExecutor(1, thread_name_prefix="kares-pg-spare")
        self._spare: Future[None] | None = None

    def _version(self) -> int:
        async def ask() -> int:
            admin = await self._admin()
            try:
                return int(await admin.fetchval("SHOW server_version_num"))
            finally:
                await admin.close()

        return asyncio.run(ask())

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            host="127.0.0.1", port=self.server.port, user="postgres", database="postgres"
        )

    async def _execute(self, sql: str) -> None:
        admin = await self._admin()
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    def _make_spare(self) -> None:
        asyncio.run(
            self._execute(f'CREATE DATABASE "{self.SPARE}" TEMPLATE "{self.NAME}"{self._copy_how}')
        )

    async def _fresh_copy(self) -> None:
        """``kares``, a copy of the template: the spare renamed, else made now."""
        spare, self._spare = self._spare, None
        if spare is not None:
            try:
                await asyncio.wrap_future(spare)
            except Exception:  # whatever it left is dropped; the copy is made here
                await self._execute(f'DROP DATABASE IF EXISTS "{self.SPARE}" WITH (FORCE)')
            else:
                await self._execute(f'ALTER DATABASE "{self.SPARE}" RENAME TO "{self.COPY}"')
                return
        await self._execute(f'CREATE DATABASE "{self.COPY}" TEMPLATE "{self.NAME}"{self._copy_how}')

    @contextlib.asynccontextmanager
    async def copy(self, where: Path) -> AsyncIterator[str]:
        await self._fresh_copy()
        self._spare = self._ahead.submit(self._make_spare)
        try:
            yield self.server.url_for(self.COPY)
        finally:
            admin = await self._admin()
            try:
                left = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", self.COPY
                )
                if left:
                    # a leak in the test or the service: said, not hidden, and not
                    # handed on to the next test
                    warnings.warn(
                        f"{left} connection(s) to the test's database left open", stacklevel=1
                    )
                await admin.execute(f'DROP DATABASE "{self.COPY}" WITH (FORCE)')
            finally:
                await admin.close()

    def close(self) -> None:
        try:
            self._ahead.shutdown(wait=True)  # a spare being made is finished first
        finally:
            self.server.stop()


Template = SqliteTemplate | PgTemplate


def start_template(root: Path) -> Template:
    return PgTemplate() if tier() == "postgresql" else SqliteTemplate(root)
