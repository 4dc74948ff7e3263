"""The reach engine (kares.privacy.reach) finds every row about one account, from
the declarations alone, and never a row about another account."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kares.db import Base
from kares.privacy import reach
from tests.conftest import bearer, sign_up

ANN, BO = "+8613800000001", "+8613800000002"
IPHONE = {"id": "IDFV-ANN", "model": "iPhone15,2", "os": "iOS", "os_version": "18.1"}


@pytest.mark.db_agnostic
def test_a_table_that_no_reach_finds_says_why() -> None:
    for table in reach.unreached():
        assert table.info.get("why"), f"{table.name}: personal columns that nothing links to"
    # these are linked to no account on purpose: retention alone removes them
    assert {t.name for t in reach.unreached()} == {"auth_tickets", "watch_hello_counts"}


@pytest.mark.db_agnostic
def test_every_personal_table_is_reached_or_says_why() -> None:
    reached = {r.table.name for r in reach.reaches()}
    for table in Base.metadata.sorted_tables:
        if any(c.info.get("pi_category") for c in table.columns):
            assert table.name in reached or table.info.get("why"), table.name


@pytest.mark.db_agnostic
def test_a_table_behind_a_foreign_key_is_reached_through_it() -> None:
    [r] = [r for r in reach.reaches() if r.table.name == "device_permissions"]
    assert r.how == "through" and r.column == "device_id"
    assert r.parent is not None and r.parent.table.name == "devices"
    assert r.role == "subject"


async def rows(db: Any, table: str, account_id: str, **kw: Any) -> int:
    t = Base.metadata.tables[table]
    async with db.sessions() as s:
        values = await reach.values_of(s, account_id)
        cond = reach.where_about(t, account_id, values, **kw)
        assert cond is not None, table
        return int((await s.execute(select(func.count()).select_from(t).where(cond))).scalar_one())


async def test_rows_about_one_account_and_never_another(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ann = await sign_up(client, sms, ANN, device=IPHONE)
    bo = await sign_up(client, sms, BO)
    r = await client.put(
        f"/api/v1/devices/{ann['device_id']}/permissions",
        json={"permissions": {"location": "granted"}},
        headers=bearer(ann["token"]),
    )
    assert r.status_code == 200, r.text
    # a wrong password for Ann's number leaves a limit row keyed by her number
    await client.post("/api/v1/auth/password", json={"phone": ANN, "password": "wrong-pass-1"})

    a, b = ann["account"]["id"], bo["account"]["id"]
    # found by a blind index of her number, read from her own row
    assert await rows(db, "otp_challenges", a) >= 1
    assert await rows(db, "password_limits", a) == 1
    assert await rows(db, "password_limits", b) == 0
    # found through the device it belongs to
    assert await rows(db, "device_permissions", a) >= 1
    assert await rows(db, "device_permissions", b) == 0
    # no row of any table is about both
    for table in Base.metadata.sorted_tables:
        async with db.sessions() as s:
            va = await reach.values_of(s, a)
            vb = await reach.values_of(s, b)
            ca = reach.where_about(table, a, va, role="subject")
            cb = reach.where_about(table, b, vb, role="subject")
            if ca is None or cb is None:
                continue
            both = select(func.count()).select_from(table).where(ca, cb)
            assert (await s.execute(both)).scalar_one() == 0, table.name
