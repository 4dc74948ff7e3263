"""Migration 0003 on a database with data in it (SQLite, or PostgreSQL in the
PostgreSQL tier): accounts.phone becomes nullable without touching a row of
any table that points at accounts, and the downgrade takes managed profiles
away and restores the constraint."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kares import migrations
from kares.db import make_engine

NOW = datetime(2024, 7, 9, 12, 0, tzinfo=UTC)


@pytest.fixture
async def fresh_url(db_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the tier's kind."""
    if os.environ.get("KARES_TEST_DB", "sqlite") != "postgresql":
        yield f"sqlite+aiosqlite:///{tmp_path / 'mig.db'}"
        return
    name = f"kares_mig_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(db_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as c:
        await c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield db_url.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as c:
            await c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()


async def migrate(url: str, revision: str, *, down: bool = False) -> None:
    def run() -> None:
        if down:
            command.downgrade(migrations.alembic_config(url), revision)
        else:
            migrations.upgrade(url, revision)

    await anyio.to_thread.run_sync(run)


async def add_account(engine: AsyncEngine, account_id: str, phone: str | None, **kw: Any) -> None:
    async with engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO accounts (id, phone, phone_hash, password_failures, status, "
                "created_at, updated_at) VALUES (:id, :p, :ph, 0, :st, :t, :t)"
            ),
            {"id": account_id, "p": phone, "ph": phone and f"h-{phone}", "st": "active", "t": NOW}
            | kw,
        )
        await c.execute(
            text(
                "INSERT INTO consent_receipts (id, account_id, subject, action, policy_version, "
                "via, created_at) VALUES (:id, :a, 'policy', 'grant', 'v1', 'app', :t)"
            ),
            {"id": f"r-{account_id}", "a": account_id, "t": NOW},
        )


async def counts(engine: AsyncEngine) -> dict[str, int]:
    out = {}
    async with engine.connect() as c:
        for table in ("accounts", "consent_receipts", "sessions", "media_objects"):
            out[table] = (await c.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
    return out


async def test_phone_becomes_nullable_and_nothing_else_moves(fresh_url: str) -> None:
    await migrate(fresh_url, "0002")
    engine = make_engine(fresh_url)
    try:
        async with engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO policy_versions (version, published_on, significant, digest, "
                    "text_hash, terms, changes, reductions, first_served_at) VALUES "
                    "('v1', :d, true, 'd', 't', '{}', '[]', '[]', :t)"
                ),
                {"d": NOW.date(), "t": NOW},
            )
        await add_account(engine, "a1", "+8613800000001")
        async with engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO sessions (id, account_id, token_hash, kind, method, device_key, "
                    "ip, created_at, last_seen_at, expires_at) VALUES "
                    "('s1', 'a1', 'th', 'bearer', 'sms', 'dk', '127.0.0.1', :t, :t, :t)"
                ),
                {"t": NOW},
            )
            await c.execute(
                text(
                    "INSERT INTO media_objects (id, owner_account_id, purpose, content_type, "
                    "data, width, height, byte_size, sha256, created_at) VALUES "
                    "('m1', 'a1', 'avatar', 'image/png', :b, 1, 1, 1, 's', :t)"
                ),
                {"b": b"\x89PNG", "t": NOW},
            )
        before = await counts(engine)
        await engine.dispose()

        await migrate(fresh_url, "0003")
        assert await counts(engine) == before
        # profiles without a phone, as many as needed; phone numbers stay unique
        await add_account(engine, "m1", None, st="managed")
        await add_account(engine, "m2", None, st="managed")
        with pytest.raises((IntegrityError, DBAPIError)):
            await add_account(engine, "a2", "+8613800000001")
        assert (await counts(engine))["accounts"] == 3
        await engine.dispose()

        await migrate(fresh_url, "0002", down=True)
        after = await counts(engine)
        assert after == before  # the managed profiles went, with their receipts
        with pytest.raises((IntegrityError, DBAPIError)):
            await add_account(engine, "m3", None)
        await engine.dispose()

        await migrate(fresh_url, "0003")
        await add_account(engine, "m4", None, st="managed")
    finally:
        await engine.dispose()
