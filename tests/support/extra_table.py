"""A table that exists in the test suite alone, to show that the rights engine
is generic: a new table with a personal column, declared the way any domain
declares one, is exported (and deleted, and kept no longer than it may be)
with no change anywhere else.

Use it as a fixture in any test module::

    from tests.support import extra_table as xt

    extra_table = xt.extra_table  # fixture

    async def test_...(extra_table: Table, db: Any) -> None:
        await xt.insert(db, account_id, note="...")

The fixture declares the table on ``kares.db.Base.metadata``, creates it in
the test's database, and on the way out drops it and takes it off the metadata
again, so no other test (nor a snapshot of every table) ever sees it.

Its foreign key to ``accounts`` has no ``ON DELETE``: deleting the account
while one of its rows is here fails, so a deletion that forgets the table
cannot pass unnoticed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, String, Table, Text
from sqlalchemy import insert as sa_insert

from kares import clock
from kares.db import Base, UTCDateTime, new_id
from kares.fields import Encrypted, personal, table_info

NAME = "test_extra_diary"


def declare() -> Table:
    """The table on the app's metadata (once; the same object afterwards)."""
    md = Base.metadata
    if NAME in md.tables:
        return md.tables[NAME]
    return Table(
        NAME,
        md,
        Column("id", String(32), primary_key=True),
        Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
        # a personal column in plain text, one encrypted at rest, and a time
        Column("entry", Text, nullable=False, info=personal("account.profile")),
        Column("mood", Encrypted(f"{NAME}.mood"), info=personal("account.profile")),
        Column("written_at", UTCDateTime(), nullable=False, info=personal("account.profile")),
        info=table_info(subject="account_id", not_personal=("id",))["info"],
    )


def forget(table: Table) -> None:
    Base.metadata.remove(table)


@pytest.fixture
async def extra_table(db: Any) -> AsyncIterator[Table]:
    """The extra table, declared and created for this test alone."""
    table = declare()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: table.create(c, checkfirst=True))
        yield table
    finally:
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(lambda c: table.drop(c, checkfirst=True))
        finally:
            forget(table)


async def insert(
    db: Any,
    account_id: str,
    *,
    entry: str,
    mood: str | None = None,
    written_at: datetime | None = None,
) -> dict[str, Any]:
    """Add one row about ``account_id``; returns it as written."""
    table = declare()
    row = {
        "id": new_id(),
        "account_id": account_id,
        "entry": entry,
        "mood": mood,
        "written_at": written_at or clock.utcnow(),
    }
    async with db.engine.begin() as conn:
        await conn.execute(sa_insert(table).values(**row))
    return row
