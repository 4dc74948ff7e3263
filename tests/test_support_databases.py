"""``tests/support/databases.py``: every test's database is a fresh copy of the
migrated template, whatever the test before it did, and on PostgreSQL also when
the copy made ahead of time failed."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy import text

from kares import migrations
from kares.db import make_engine
from tests.support.databases import PgTemplate, Template


async def _leftovers_then_leave_one(url: str, n: int) -> list[str]:
    """The tables named leftover_* in the database at ``url``, and its migration;
    then one more such table is left behind."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                q = "SELECT tablename FROM pg_tables WHERE tablename LIKE 'leftover%'"
            else:
                q = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'leftover%'"
            found = list((await conn.execute(text(q))).scalars())
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            assert version == migrations.head_revision()
            await conn.execute(text(f"CREATE TABLE leftover_{n} (x INTEGER)"))
            await conn.execute(text(f"INSERT INTO leftover_{n} VALUES (1)"))
    finally:
        await engine.dispose()
    return found


async def test_each_copy_is_the_template_whatever_the_last_one_did(
    database_template: Template, tmp_path: Path
) -> None:
    for n in range(3):
        async with database_template.copy(tmp_path) as url:
            assert await _leftovers_then_leave_one(url, n) == []


async def test_a_failed_spare_is_dropped_and_the_copy_made_at_once(
    database_template: Template, tmp_path: Path
) -> None:
    if not isinstance(database_template, PgTemplate):
        pytest.skip("SQLite copies a file: nothing is made ahead")
    async with database_template.copy(tmp_path) as url:
        await _leftovers_then_leave_one(url, 0)
    # the spare made meanwhile exists; say it failed, as a broken CREATE would
    made = database_template._spare
    assert made is not None
    made.result()
    failed: Future[None] = Future()
    failed.set_exception(RuntimeError("the spare could not be made"))
    database_template._spare = failed
    async with database_template.copy(tmp_path) as url:
        assert await _leftovers_then_leave_one(url, 1) == []
    async with database_template.copy(tmp_path) as url:  # and the next spare is whole
        assert await _leftovers_then_leave_one(url, 2) == []
