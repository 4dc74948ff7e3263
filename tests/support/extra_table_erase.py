"""A table the service does not have, declared here in the test suite alone, to
show that deletion needs nothing but the declarations: ``pet_walks`` (a person's
walks with their pet: when, a note, who came along).

It lives in a copy of the service's metadata, never in ``kares.db.Base``: the
other tests' snapshots walk that and would look for a table their databases
lack. ``extra_metadata()`` gives the copy; the ``pet_walks`` fixture creates the
table in the test's database and hands the copy over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text

from kares.db import Base
from kares.fields import personal, table_info

NAME = "pet_walks"


def extra_metadata() -> MetaData:
    md = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(md)
    info = table_info(subject="account_id", also_about=("companion_id",), not_personal=("id",))
    walks = Table(
        NAME,
        md,
        Column("id", String(32), primary_key=True),
        # no foreign key: nothing in the database deletes these rows by itself
        Column("account_id", String(32), nullable=False),
        Column("note", Text, nullable=False, info=personal("calendar.events")),
        Column("mood", String(16), nullable=True, info=personal("health.activity")),
        Column("companion_id", String(32), nullable=True, info=personal("family.membership")),
        Column(
            "walked_at", DateTime(timezone=True), nullable=False, info=personal("calendar.events")
        ),
        **info,
    )
    # when the data was collected, as the retention work declares it
    walks.info["collected"] = "walked_at"
    return md


@pytest.fixture
async def pet_walks(db: Any) -> AsyncIterator[MetaData]:
    md = extra_metadata()
    async with db.engine.begin() as conn:
        await conn.run_sync(md.tables[NAME].create)
    yield md
