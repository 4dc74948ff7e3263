"""Migration 0020 on a database with families in it (SQLite, or PostgreSQL in the
PostgreSQL tier): every family has its conversation, with the family's id, so
sending never writes one while it holds a position (docs/MESSAGING.md)."""

from __future__ import annotations

from sqlalchemy import text

from kares.db import make_engine
from tests.test_families_migration import NOW, fresh_url, migrate

__all__ = ["fresh_url"]  # the fixture


async def test_every_family_has_its_conversation(fresh_url: str) -> None:
    await migrate(fresh_url, "0018")
    engine = make_engine(fresh_url)
    try:
        async with engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO accounts (id, phone, phone_hash, status, created_at, "
                    "updated_at) VALUES (:a, 'x', 'h1', 'active', :t, :t)"
                ),
                {"a": "a" * 32, "t": NOW},
            )
            for fid in ("f" * 32, "e" * 32):
                await c.execute(
                    text(
                        "INSERT INTO families (id, name, owner_account_id, created_at, "
                        "updated_at) VALUES (:f, 'Wangs', :a, :t, :t)"
                    ),
                    {"f": fid, "a": "a" * 32, "t": NOW},
                )
        await migrate(fresh_url, "0020")
        async with engine.connect() as c:
            rows = (
                await c.execute(text("SELECT id, kind, family_id FROM conversations ORDER BY id"))
            ).all()
        assert [tuple(r) for r in rows] == [
            ("e" * 32, "family", "e" * 32),
            ("f" * 32, "family", "f" * 32),
        ]
        await migrate(fresh_url, "0018", down=True)
        async with engine.connect() as c:
            n = (await c.execute(text("SELECT count(*) FROM families"))).scalar_one()
        assert n == 2
    finally:
        await engine.dispose()
