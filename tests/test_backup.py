"""``kares backup create`` and ``kares backup restore`` (issue 13, "Backups";
policy 5.2), on the test tier's real database: a round trip brings the data back
as it was; a wrong key, a changed byte, a missing file, another dialect's
backup, a newer schema and a database still in use are refused, and nothing
changes; a backup of an older schema is migrated once restored. (The deletion
register after a restore: test_rights_erase_register.py.)"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pyrage
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from kares import clock, migrations
from kares.rights import backup
from tests.conftest import count_rows, query, sign_up, snapshot
from tests.support.backup import (
    backup_env,
    identity,
    kares,
    kares_process,
    leftovers,
    let_go,
    new_key,
)
from tests.test_location_ingest import fix, member, upload

ANN, BO = "+8613700004001", "+8613700004002"


def without_log(snap: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every table but the staff-action log (each backup command adds a row)."""
    return {t: rows for t, rows in snap.items() if t != "staff_actions"}


async def world(client: httpx.AsyncClient, sms: Any) -> dict[str, Any]:
    ann = await member(client, sms, ANN)
    now = clock.utcnow()
    fixes = [fix(1, now - timedelta(days=3), lat=30.654321), fix(2, now - timedelta(hours=2))]
    r = await upload(client, ann, fixes)
    assert r.status_code in (200, 201), r.text
    return ann


async def test_a_backup_restored_brings_the_data_back_as_it_was(
    client: httpx.AsyncClient, sms: Any, db: Any, db_url: str, var_dir: Path, tmp_path: Path
) -> None:
    env = backup_env(db_url, var_dir, new_key(tmp_path))
    ann = await world(client, sms)
    a = ann["account"]["id"]
    before = await snapshot(db)
    out = tmp_path / "kares.age"
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = await kares_process("backup", "create", "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and a not in r.stdout
    [made] = await query(db, "SELECT action, account_id, detail FROM staff_actions")
    assert (made["action"], made["account_id"]) == ("backup.create", None)

    # the file is encrypted: nothing of the person can be read in it
    blob = out.read_bytes()
    assert blob.startswith(b"age-encryption.org/v1\n")
    assert out.stat().st_mode & 0o777 == 0o600
    for secret in (a, ANN, ANN[3:], "30.654321"):
        assert secret.encode() not in blob
    # and its manifest holds no personal data, just what it is
    ident = identity(Path(env["KARES_BACKUP_IDENTITY_FILE"]))
    with tarfile.open(fileobj=io.BytesIO(pyrage.decrypt(blob, [ident])), mode="r:gz") as tar:
        assert tar.getnames() == ["manifest.json", backup.MEMBER[db.dialect]]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert set(manifest) == {
        "format",
        "format_version",
        "created_at",
        "schema",
        "dialect",
        "kares_version",
        "database",
        "media",
    }
    assert (manifest["schema"], manifest["dialect"]) == (migrations.head_revision(), db.dialect)
    assert a not in json.dumps(manifest) and ANN not in json.dumps(manifest)

    # things change after the backup: a new account, another fix, a name
    bo = await sign_up(client, sms, BO)
    r = await upload(client, ann, [fix(3, clock.utcnow() - timedelta(minutes=5), lat=29.1)])
    assert r.status_code in (200, 201), r.text
    r = await client.patch(
        "/api/v1/me", json={"name": "Changed"}, headers={"Authorization": f"Bearer {ann['token']}"}
    )
    assert r.status_code == 200, r.text
    assert without_log(await snapshot(db)) != without_log(before)

    await let_go(db)
    r = await kares("backup", "restore", str(out), "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert "re-deleted: nothing" in r.stdout
    # every table as it was when the backup was made
    assert without_log(await snapshot(db)) == without_log(before)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :b", b=bo["account"]["id"])
    # the restore is in the staff-action log (the backup's own entry was written
    # after the copy was taken, so the restored log does not have it)
    logged = await query(db, "SELECT action, account_id, detail FROM staff_actions")
    assert [(x["action"], x["account_id"]) for x in logged] == [("backup.restore", None)]
    assert leftovers(var_dir, db_url) == []
    # the account signs in again with the token it had then
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {ann['token']}"})
    assert r.status_code == 200 and r.json()["id"] == a, r.text


def rewrap(
    good: Path, key: tuple[Path, str], out: Path, change: dict[str, Any], member: str | None = None
) -> Path:
    """The good backup with its manifest changed (and its database under another
    name), encrypted again to the same key: a well-made file that must be refused."""
    ident = identity(key[0])
    plain = pyrage.decrypt(good.read_bytes(), [ident])
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as src,
        tarfile.open(fileobj=buf, mode="w:gz") as dst,
    ):
        manifest = json.loads(src.extractfile("manifest.json").read())  # type: ignore[union-attr]
        data = src.extractfile(manifest["database"]["file"]).read()  # type: ignore[union-attr]
        manifest.update(change)
        if member:
            manifest["database"]["file"] = member
        for name, body in (
            ("manifest.json", json.dumps(manifest).encode()),
            (manifest["database"]["file"], data),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            dst.addfile(info, io.BytesIO(body))
    out.write_bytes(pyrage.encrypt(buf.getvalue(), [pyrage.x25519.Recipient.from_str(key[1])]))
    return out


async def test_a_bad_backup_or_key_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    sms: Any,
    app: Any,
    db: Any,
    db_url: str,
    var_dir: Path,
    tmp_path: Path,
) -> None:
    key = new_key(tmp_path)
    env = backup_env(db_url, var_dir, key)
    await world(client, sms)
    good = tmp_path / "good.age"
    r = await kares("backup", "create", "--out", str(good), env=env)
    assert r.returncode == 0, r.stderr
    # what the database holds now is what every refused restore must leave
    await sign_up(client, sms, BO)
    before = await snapshot(db)

    other_key = new_key(tmp_path, "other-key.txt")
    flipped = tmp_path / "flipped.age"
    raw = bytearray(good.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    flipped.write_bytes(bytes(raw))
    header = tmp_path / "header.age"
    raw = bytearray(good.read_bytes())
    raw[40] ^= 0x01  # inside the recipient stanza
    header.write_bytes(bytes(raw))
    notage = tmp_path / "plain.age"
    notage.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    wrong = "sqlite" if db.dialect == "postgresql" else "postgresql"
    dialect = rewrap(good, key, tmp_path / "dialect.age", {"dialect": wrong}, backup.MEMBER[wrong])
    newer = rewrap(good, key, tmp_path / "newer.age", {"schema": "9999"})

    def keyed(k: tuple[Path, str]) -> Any:
        return app.state.runtime.settings.model_copy(
            update={"backup_identity_file": k[0], "backup_recipients": [k[1]]}
        )

    def never(manifest: dict[str, Any]) -> bool:
        raise AssertionError("asked to confirm a restore that must be refused before")

    ok = keyed(key)
    cases = [
        (keyed(other_key), good, "backup.cannot_decrypt", "the key is not the one"),
        (ok, flipped, "backup.cannot_decrypt", "cannot be opened"),
        (ok, header, "backup.cannot_decrypt", "cannot be opened"),
        (ok, notage, "backup.cannot_decrypt", "cannot be opened"),
        (ok, tmp_path / "missing.age", "backup.not_found", "there is no backup file"),
        (ok, dialect, "backup.wrong_dialect", f"this is a backup of a {wrong} database"),
        (ok, newer, "backup.newer_schema", "migration 9999, which this version of Kares"),
    ]
    # each check, in this process (a command each would take seconds) ...
    for st, path, code, said in cases:
        with pytest.raises(backup.BackupError) as refused:
            await backup.restore(st, path, confirm=never)
        assert (refused.value.code, said in refused.value.message) == (code, True), path.name
        assert leftovers(var_dir, db_url) == [], path.name
    # ... and as the command says them: the reason on stderr, a non-zero exit
    await let_go(db)
    other = backup_env(db_url, var_dir, other_key)
    r = await kares("backup", "restore", str(good), "--yes", env=other)
    assert (r.returncode, "cannot be opened: the key is not the one" in r.stderr) == (1, True)
    assert r.stdout == "", r.stdout
    r = await kares("backup", "restore", str(tmp_path / "missing.age"), "--yes", env=env)
    assert (r.returncode, "there is no backup file" in r.stderr) == (2, True), r.stderr
    # without --yes, and no terminal to ask on: refused
    r = await kares("backup", "restore", str(good), env=env)
    assert (r.returncode, "say --yes" in r.stderr) == (2, True), r.stderr
    # a database still open elsewhere (a running server) is not replaced under it
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        # (a real process: on SQLite, what the command looks for is another process)
        r = await kares_process("backup", "restore", str(good), "--yes", env=env)
    assert (r.returncode, "stop `kares serve`" in r.stderr) == (1, True), r.stderr
    # no key configured at all
    no_key = {k: v for k, v in env.items() if not k.startswith("KARES_BACKUP")}
    r = await kares("backup", "restore", str(good), "--yes", env=no_key)
    assert (r.returncode, "KARES_BACKUP_IDENTITY_FILE" in r.stderr) == (2, True), r.stderr
    r = await kares("backup", "create", "--out", str(tmp_path / "x.age"), env=no_key)
    assert (r.returncode, "KARES_BACKUP_RECIPIENTS" in r.stderr) == (2, True), r.stderr
    assert not (tmp_path / "x.age").exists()

    assert await snapshot(db) == before
    assert leftovers(var_dir, db_url) == []


def previous_revision() -> str:
    scripts = ScriptDirectory.from_config(migrations.alembic_config("sqlite://"))
    down = scripts.get_revision(migrations.head_revision()).down_revision
    assert isinstance(down, str)
    return down


@contextlib.asynccontextmanager
async def older_database(db_url: str, where: Path) -> AsyncIterator[str]:
    """A second database of the tier's kind, migrated to the revision before head."""
    if db_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{where / 'older.db'}"
        await anyio.to_thread.run_sync(migrations.upgrade, url, previous_revision())
        yield url
        return
    u = make_url(db_url)
    admin = await asyncpg.connect(host=u.host, port=u.port, user=u.username, database="postgres")
    try:
        await admin.execute('CREATE DATABASE "kares_older"')
        url = u.set(database="kares_older").render_as_string(hide_password=False)
        await anyio.to_thread.run_sync(migrations.upgrade, url, previous_revision())
        yield url
    finally:
        await admin.execute('DROP DATABASE IF EXISTS "kares_older" WITH (FORCE)')
        await admin.close()


async def test_a_backup_of_an_older_schema_is_migrated_after_it_is_restored(
    client: httpx.AsyncClient, sms: Any, db: Any, db_url: str, var_dir: Path, tmp_path: Path
) -> None:
    key = new_key(tmp_path)
    old = tmp_path / "older.age"
    async with older_database(db_url, tmp_path) as url:
        r = await kares("backup", "create", "--out", str(old), env=backup_env(url, var_dir, key))
        assert r.returncode == 0, r.stderr
        assert f"at migration {previous_revision()}" in r.stdout, r.stdout
    await let_go(db)
    r = await kares("backup", "restore", str(old), "--yes", env=backup_env(db_url, var_dir, key))
    assert r.returncode == 0, r.stderr
    assert f"migrated from {previous_revision()}" in r.stdout, r.stdout
    [row] = await query(db, "SELECT version_num FROM alembic_version")
    assert row["version_num"] == migrations.head_revision()
    # the newest migration's table is there (the register, made by 0018) and empty
    assert await count_rows(db, "deletion_register") == 0
    assert await query(db, "SELECT action FROM staff_actions") == [{"action": "backup.restore"}]
