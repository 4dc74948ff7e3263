"""Tables come from Alembic migrations, and the migrations match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kares.domains import metadata


async def test_models_and_migrations_agree(db) -> None:
    def diff(sync_conn):  # type: ignore[no-untyped-def]
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata)

    async with db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == [], f"models differ from migrations: {changes}"


@pytest.mark.db_agnostic
def test_every_migration_goes_down_and_up_again_keeping_rows(tmp_path) -> None:
    """Downgrade to the first revision and back: rows in tables that other tables
    point at (devices) survive where a migration only adds columns."""
    import sqlite3

    from alembic import command

    from kares import migrations

    path = tmp_path / "roundtrip.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrations.upgrade(url)
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys=ON")
    con.execute(
        "INSERT INTO accounts (id, phone, phone_hash, status, created_at, "
        "updated_at) VALUES ('a1', 'x', 'h1', 'active', '2026-01-01', '2026-01-01')"
    )
    con.execute(
        "INSERT INTO devices (id, account_id, device_key, kind, first_seen_at, last_seen_at) "
        "VALUES ('d1', 'a1', 'k1', 'app', '2026-01-01', '2026-01-01')"
    )
    con.execute(
        "INSERT INTO device_permissions (device_id, permission, state, reported_at) "
        "VALUES ('d1', 'location', 'granted', '2026-01-01')"
    )
    con.commit()
    con.close()
    cfg = migrations.alembic_config(url)
    command.downgrade(cfg, "0005")
    command.upgrade(cfg, "head")
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM device_permissions").fetchone() == (1,)
    assert con.execute("SELECT battery FROM devices").fetchone() == (None,)
    con.close()
