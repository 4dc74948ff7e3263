"""The deletion register (policy 5.2): a backup restored after a deletion gets
the deletion again, from entries that hold no personal information; and the
operator's command deletes at once, logged."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from kares import clock, crypto
from kares.rights import erase, register
from kares.runtime import Runtime
from tests.conftest import TEST_DATA_KEYS, TEST_INDEX_KEY, bearer, query, sign_up
from tests.test_cli import run_kares
from tests.test_location_ingest import fix, member, upload
from tests.test_rights_erase import CHOSEN, ask, run_jobs

ANN, BO = "+8613700003001", "+8613700003002"


async def checkpoint(db: Any) -> None:
    async with db.engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def db_file(url: str) -> Path:
    return Path(url.split("///", 1)[1])


async def test_a_restored_backup_is_deleted_again(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any, db_url: str, tmp_path: Path
) -> None:
    if db.dialect != "sqlite":
        pytest.skip("the backup here is a copy of the SQLite file (pg_dump: issue 13, backups)")
    ann = await sign_up(client, sms, ANN)
    bo = await member(client, sms, BO)
    a, b = ann["account"]["id"], bo["account"]["id"]
    now = clock.utcnow()
    r = await upload(
        client,
        bo,
        [fix(1, now - timedelta(days=30)), fix(2, now - timedelta(days=2), lat=30.123457)],
    )
    assert r.status_code in (200, 201), r.text
    # the backup, taken before anything was deleted
    await checkpoint(db)
    backup = tmp_path / "backup.db"
    shutil.copyfile(db_file(db_url), backup)

    r = await client.post(
        CHOSEN,
        json={"category": "location.precise", "since": (now - timedelta(days=7)).isoformat()},
        headers=bearer(bo["token"]),
    )
    assert r.status_code == 200 and r.json()["deleted"]["location_fixes"] == 1, r.text
    assert (await ask(client, sms, ann)).status_code == 202
    clock.advance(16 * 86400)
    await run_jobs(app)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)

    # the register, in the database and in its copy beside it, names no one
    rt = app.state.runtime
    found = register.entries_from_file(rt.settings.var_dir)
    assert [e["scope"] for e in found] == ["chosen", "account"]
    for e in found:
        assert a not in repr(e) and b not in repr(e) and ANN not in repr(e)
        assert e["subject_index"] in {register.subject_index(a), register.subject_index(b)}

    # restore the backup: the person and the chosen week are back ...
    url = f"sqlite+aiosqlite:///{backup}"
    restored = Runtime.build(rt.settings.model_copy(update={"database_url": url}))
    try:
        async with restored.db.sessions() as s:
            assert await register.entries(s) == []  # the backup predates the register's entries
            assert await register.merge(s, found) == 2
            await s.commit()
            assert await register.merge(s, found) == 0
        # ... until the register is applied again
        async with restored.db.sessions() as s:
            done = await erase.reapply(s, restored)
        assert [d["scope"] for d in done] == ["chosen", "account"]
        assert not await query(restored.db, "SELECT id FROM accounts WHERE id = :a", a=a)
        left = await query(
            restored.db, "SELECT recorded_ms FROM location_fixes WHERE account_id = :b", b=b
        )
        assert len(left) == 1
        # and it is gone from the file, not just from the tables
        blob = backup.read_bytes()
        assert a.encode() not in blob
        assert crypto.token_hash(ann["token"]).encode() not in blob
        # applying it again finds nothing more to do
        async with restored.db.sessions() as s:
            again = await erase.reapply(s, restored)
        assert [d["scope"] for d in again] == ["chosen"]
        assert again[0]["deleted"] == {}
    finally:
        await restored.close()


async def test_the_operator_deletes_at_once_and_it_is_logged(
    client: httpx.AsyncClient, sms: Any, db: Any, db_url: str, var_dir: Path
) -> None:
    ann = await sign_up(client, sms, ANN)
    bo = await sign_up(client, sms, BO)
    a = ann["account"]["id"]
    env = {
        "KARES_DATABASE_URL": db_url,
        "KARES_DATA_KEYS": TEST_DATA_KEYS,
        "KARES_INDEX_KEY": TEST_INDEX_KEY,
        "KARES_VAR_DIR": str(var_dir),
    }
    r = await anyio.to_thread.run_sync(
        lambda: run_kares("rights", "delete", "--phone", ANN, env=env)
    )
    assert r.returncode == 2 and "--now" in r.stderr  # nothing happens without it
    assert await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    r = await anyio.to_thread.run_sync(
        lambda: run_kares("rights", "delete", "--phone", ANN, "--now", env=env)
    )
    assert r.returncode == 0, r.stderr
    assert "  accounts: 1" in r.stdout and "  sessions: 1" in r.stdout, r.stdout
    assert a not in r.stdout + r.stderr and ANN not in r.stdout + r.stderr
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    [action] = await query(db, "SELECT * FROM staff_actions")
    assert (action["action"], action["account_id"]) == ("rights.delete", None)
    assert a not in repr(action)
    assert await query(db, "SELECT id FROM accounts WHERE id = :b", b=bo["account"]["id"])
    r = await anyio.to_thread.run_sync(
        lambda: run_kares("rights", "delete", "--phone", ANN, "--now", env=env)
    )
    assert r.returncode == 1 and "no account" in r.stderr
