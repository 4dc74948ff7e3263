"""The deletion register (policy 5.2): a backup restored after a deletion gets
the deletion again, from entries that hold no personal information (through
``kares backup create`` and ``kares backup restore``, on both tiers); and the
operator's command deletes at once, logged."""

from __future__ import annotations

import io
import struct
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
from PIL import Image

from kares import clock, crypto
from kares.rights import register
from tests.conftest import TEST_DATA_KEYS, TEST_INDEX_KEY, bearer, query, sign_up, snapshot
from tests.support import cli
from tests.support.backup import backup_env, kares, let_go, new_key, plain_dump
from tests.test_location_ingest import fix, member, upload
from tests.test_rights_erase import CHOSEN, ask, run_jobs

ANN, BO, CY = "+8613700003001", "+8613700003002", "+8613700003003"


NAME = "Annabel Qiuzhen"
HERE = (30.246813, 120.135792)  # where Ann was: six decimals, nothing else holds them
WEEK = 30.123457  # a latitude of Bo's week, deleted by his own choice


def as_stored(x: float) -> list[bytes]:
    """How a coordinate may sit in the files: SQLite's REAL, packed arrays, text."""
    return [struct.pack(">d", x), struct.pack("<d", x), repr(x).encode()]


def sqlite_files(url: str) -> list[Path]:
    path = Path(url.split("///", 1)[1])
    return [p for p in (path, Path(f"{path}-wal")) if p.exists()]


def raw_bytes(db: Any, url: str) -> dict[str, bytes]:
    """The database as bytes: SQLite's file and its log, or a fresh plain pg_dump."""
    if db.dialect == "sqlite":
        return {p.name: p.read_bytes() for p in sqlite_files(url)}
    return {"pg_dump": plain_dump(url)}


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 24), (20, 160, 90)).save(out, "PNG")
    return out.getvalue()


async def test_a_restored_backup_is_deleted_again(
    client: httpx.AsyncClient,
    sms: Any,
    app: Any,
    db: Any,
    db_url: str,
    var_dir: Path,
    tmp_path: Path,
) -> None:
    env = backup_env(db_url, var_dir, new_key(tmp_path))
    ann = await member(client, sms, ANN)
    bo = await member(client, sms, BO)
    cy = await member(client, sms, CY)
    a, b = ann["account"]["id"], bo["account"]["id"]
    r = await client.patch("/api/v1/me", json={"name": NAME}, headers=bearer(ann["token"]))
    assert r.status_code == 200, r.text
    r = await client.put(
        "/api/v1/me/avatar",
        files={"file": ("a.png", png(), "image/png")},
        headers=bearer(ann["token"]),
    )
    assert r.status_code == 200, r.text
    now = clock.utcnow()
    for who, fixes in (
        (ann, [fix(1, now - timedelta(days=1), lat=HERE[0], lon=HERE[1])]),
        (
            bo,
            [
                fix(1, now - timedelta(days=30)),
                fix(2, now - timedelta(days=2), lat=WEEK),
            ],
        ),
        (cy, [fix(1, now - timedelta(days=2), lat=31.1, lon=121.2)]),
    ):
        r = await upload(client, who, fixes)
        assert r.status_code in (200, 201), r.text
    # what must never come back: Ann's number, name, ids, tokens, picture, place,
    # and Bo's deleted week
    secrets = {ANN.encode(), ANN[3:].encode(), NAME.encode(), a.encode()}
    secrets |= {ann["token"].encode(), crypto.token_hash(ann["token"]).encode()}
    for table, col in (("sessions", "id"), ("media_objects", "id"), ("devices", "id")):
        column = "owner_account_id" if table == "media_objects" else "account_id"
        rows = await query(db, f"SELECT {col} FROM {table} WHERE {column} = :a", a=a)
        secrets |= {str(row[col]).encode() for row in rows}
    assert len(secrets) >= 8
    places = {x for v in (*HERE, WEEK) for x in as_stored(v)}

    # the backup, taken before anything was deleted
    out = tmp_path / "before.age"
    r = await kares("backup", "create", "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr

    # Bo deletes last week's locations; Ann deletes her account
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
    deleted = await snapshot(db)

    # the register, in the database and in its copy beside it, names no one
    found = register.entries_from_file(var_dir)
    assert [e["scope"] for e in found] == ["chosen", "account"]
    for e in found:
        assert a not in repr(e) and b not in repr(e) and ANN not in repr(e)
        assert e["subject_index"] in {register.subject_index(a), register.subject_index(b)}

    # restoring the backup brings Ann and Bo's week back, and the register deletes
    # them again before the command ends
    await let_go(db)
    r = await kares("backup", "restore", str(out), "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert "deletion register: 2 entries added" in r.stdout, r.stdout
    assert "re-deleted (chosen" in r.stdout and "re-deleted (account" in r.stdout, r.stdout
    assert "  accounts: 1" in r.stdout and "  location_fixes: 1" in r.stdout, r.stdout
    assert a not in r.stdout + r.stderr and ANN not in r.stdout + r.stderr
    # nothing of it in the raw database the command leaves (SQLite's file and its
    # log; PostgreSQL: a fresh plain pg_dump)
    for name, blob in (await anyio.to_thread.run_sync(raw_bytes, db, db_url)).items():
        assert not [x for x in secrets if x in blob], (name, [x for x in secrets if x in blob])
        assert not [x for x in places if x in blob], (name, "a deleted place")

    # once the jobs it queued have run (Bo's days packed again), every table is as
    # it was after the deletions (the staff-action log has the restore instead of
    # the backup, which it logged after its copy)
    await run_jobs(app)
    restored = await snapshot(db)
    differ = [t for t in restored if restored[t] != deleted[t]]
    assert differ == ["staff_actions"], differ
    logged = await query(db, "SELECT action, detail FROM staff_actions")
    assert [x["action"] for x in logged] == ["backup.restore"]
    assert a not in repr(logged) and ANN not in repr(logged)

    # nothing of Ann or Bo's week in any column of any table
    for table, rows in restored.items():
        for row in rows:
            assert not [x for x in secrets if x in repr(row).encode()], (table, row)
    left = await query(db, "SELECT recorded_ms FROM location_fixes WHERE account_id = :b", b=b)
    assert len(left) == 1
    for name, blob in (await anyio.to_thread.run_sync(raw_bytes, db, db_url)).items():
        assert not [x for x in secrets if x in blob], (name, [x for x in secrets if x in blob])
    # and Cy, Bo and their data are there, signed in as before
    for who in (bo, cy):
        r = await client.get("/api/v1/me", headers=bearer(who["token"]))
        assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/me", headers=bearer(ann["token"]))).status_code == 401


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
    r = await cli.arun("rights", "delete", "--phone", ANN, env=env)
    assert r.returncode == 2 and "--now" in r.stderr  # nothing happens without it
    assert await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    r = await cli.arun("rights", "delete", "--phone", ANN, "--now", env=env)
    assert r.returncode == 0, r.stderr
    assert "  accounts: 1" in r.stdout and "  sessions: 1" in r.stdout, r.stdout
    assert a not in r.stdout + r.stderr and ANN not in r.stdout + r.stderr
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    [action] = await query(db, "SELECT * FROM staff_actions")
    assert (action["action"], action["account_id"]) == ("rights.delete", None)
    assert a not in repr(action)
    assert await query(db, "SELECT id FROM accounts WHERE id = :b", b=bo["account"]["id"])
    r = await cli.arun("rights", "delete", "--phone", ANN, "--now", env=env)
    assert r.returncode == 1 and "no account" in r.stderr
