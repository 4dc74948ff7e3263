"""A table added in the test suite alone (tests/support/extra_table_erase.py) is
deleted, by category and range and with the account, with no other change: the
engine reads the declarations, not a list of tables."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import MetaData, insert

from kares import clock
from kares.db import new_id
from kares.rights import erase
from tests.conftest import query, sign_up
from tests.support.extra_table_erase import NAME, pet_walks  # noqa: F401 - a fixture

ANN, BO = "+8613700005001", "+8613700005002"


async def walks(db: Any) -> list[dict[str, Any]]:
    return await query(db, f"SELECT * FROM {NAME} ORDER BY walked_at, note")


async def test_a_new_table_is_deleted_through_its_declarations(
    client: httpx.AsyncClient,
    sms: Any,
    app: Any,
    db: Any,
    pet_walks: MetaData,  # noqa: F811
) -> None:
    rt = app.state.runtime
    a = (await sign_up(client, sms, ANN))["account"]["id"]
    b = (await sign_up(client, sms, BO))["account"]["id"]
    now = clock.utcnow()
    table = pet_walks.tables[NAME]
    rows = [
        (a, "park, old", "happy", None, now - timedelta(days=30)),
        (a, "river, last week", "calm", b, now - timedelta(days=3)),
        (b, "Bo's own walk", "tired", a, now - timedelta(days=2)),
    ]
    async with db.sessions() as s:
        for who, note, mood, comp, at in rows:
            await s.execute(
                insert(table).values(
                    id=new_id(),
                    account_id=who,
                    note=note,
                    mood=mood,
                    companion_id=comp,
                    walked_at=at,
                )
            )
        await s.commit()

    # chosen: Ann's health.activity of last week (the nullable mood is cleared, the row stays)
    async with db.sessions() as s:
        out = await erase.erase_chosen(
            s, rt, a, "health.activity", since=now - timedelta(days=7), metadata=pet_walks
        )
        await s.commit()
    assert out.cleared[NAME] == 1
    assert [w["mood"] for w in await walks(db)] == ["happy", None, "tired"]
    # chosen: Ann's calendar.events of last week: her walk goes; the old one and Bo's stay
    async with db.sessions() as s:
        out = await erase.erase_chosen(
            s, rt, a, "calendar.events", since=now - timedelta(days=7), metadata=pet_walks
        )
        await s.commit()
    assert out.deleted[NAME] == 1
    assert [w["note"] for w in await walks(db)] == ["park, old", "Bo's own walk"]

    # the account: her rows go, Bo's walk stays and no longer names her
    async with db.sessions() as s:
        out = await erase.erase_account(s, rt, a, metadata=pet_walks)
        await s.commit()
    assert (out.deleted[NAME], out.cleared[NAME]) == (1, 1)
    [left] = await walks(db)
    assert (left["account_id"], left["note"], left["mood"]) == (b, "Bo's own walk", "tired")
    assert left["companion_id"] == erase.ERASED
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)


async def test_its_time_column_is_read_from_its_declaration_first(
    pet_walks: MetaData,  # noqa: F811
) -> None:
    col, unit = erase.time_column(pet_walks.tables[NAME]) or (None, None)
    assert col is not None and (col.name, unit) == ("walked_at", "time")
