"""Encrypted backups that never bring deleted data back (policy 5.2).

A backup is ONE file: an age-encrypted (X25519, https://age-encryption.org/v1)
gzip'd tar holding

* ``manifest.json``: the format and its version, when it was made, the
  database's migration revision, the dialect, the Kares version, and the size
  and SHA-256 of the database member. No personal data;
* the database: on SQLite a copy made with the online backup API
  (``sqlite3.Connection.backup``: a consistent snapshot while the service
  writes), on PostgreSQL ``pg_dump --format=custom``. Media (pictures) are rows
  of ``media_objects``, so the database holds them: there is no media directory.

Restoring checks everything before it touches the configured database: the key
opens the file (age authenticates every 64 KiB chunk, so a flipped byte fails),
the manifest is one this code reads, the dialect is the configured one, the
revision is one this code knows (a newer one is refused), the database member
matches its digest, and nothing else has the database open. Then:

* SQLite: the backup is prepared in a file beside the database (migrated to
  head, the deletion register merged and re-applied, checkpointed), and only
  then swapped in with one rename. The database never holds what was deleted.
* PostgreSQL: ``psql --single-transaction`` drops the ``public`` schema and
  replays the dump in one transaction (all or nothing); then migrations run to
  head, and the register is merged and re-applied.

The register (``kares.rights.register``) comes from its file beside the var
directory and from the database being replaced (the newest), and
``erase.reapply`` deletes again everything it names; ``erase.settle`` then
makes it gone from the files.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyrage
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from kares import __version__, clock, migrations
from kares.config import Settings
from kares.db import Database
from kares.rights import audit, erase, register
from kares.runtime import Runtime

log = logging.getLogger("kares.rights.backup")

FORMAT, FORMAT_VERSION = "kares-backup", 1
MANIFEST = "manifest.json"
MEMBER = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup could not be made or restored; nothing was changed. ``code`` is
    stable, ``exit`` is the command's exit status (2: configuration or usage)."""

    def __init__(self, code: str, message: str, *, exit: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit = exit


# --- keys ---------------------------------------------------------------------------------


def new_identity(path: Path) -> str:
    """Write a new age identity (the secret key) to ``path`` (mode 600, never
    over an existing file); returns its public recipient (``age1...``)."""
    ident = pyrage.x25519.Identity.generate()
    public = str(ident.to_public())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError("backup.key_exists", f"{path} exists: not overwritten", exit=2) from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(f"# created: {clock.utcnow().isoformat()}\n# public key: {public}\n{ident}\n")
    return public


def _identity_lines(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BackupError(
            "backup.no_key", f"cannot read the backup identity file {path}: {exc.strerror}", exit=2
        ) from None
    return [ln.strip() for ln in raw.splitlines() if ln.strip() and not ln.startswith("#")]


def identities(settings: Settings) -> list[pyrage.x25519.Identity]:
    """The secret keys that open a backup (``KARES_BACKUP_IDENTITY_FILE``)."""
    path = settings.backup_identity_file
    if path is None:
        raise BackupError(
            "backup.no_key",
            "set KARES_BACKUP_IDENTITY_FILE to the age identity file that opens the backup",
            exit=2,
        )
    out = []
    for line in _identity_lines(path):
        try:
            out.append(pyrage.x25519.Identity.from_str(line))
        except Exception:  # pyrage raises its own error types for a bad key
            raise BackupError(
                "backup.bad_key", f"{path} holds a line that is not an age identity", exit=2
            ) from None
    if not out:
        raise BackupError("backup.bad_key", f"{path} holds no age identity", exit=2)
    return out


def recipients(settings: Settings) -> list[pyrage.x25519.Recipient]:
    """Who can open a new backup: ``KARES_BACKUP_RECIPIENTS`` (public keys), else
    the public half of ``KARES_BACKUP_IDENTITY_FILE``."""
    if not settings.backup_recipients:
        if settings.backup_identity_file is None:
            raise BackupError(
                "backup.no_key",
                "set KARES_BACKUP_RECIPIENTS to the age public key(s) backups are encrypted "
                "to (make a key pair with `kares backup key --out FILE`)",
                exit=2,
            )
        return [i.to_public() for i in identities(settings)]
    out = []
    for text_ in settings.backup_recipients:
        try:
            out.append(pyrage.x25519.Recipient.from_str(text_))
        except Exception:
            raise BackupError(
                "backup.bad_key",
                "KARES_BACKUP_RECIPIENTS holds something that is not an age public key (age1...)",
                exit=2,
            ) from None
    return out


# --- the database's files and tools --------------------------------------------------------


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("backup.no_file", "an in-memory database cannot be backed up", exit=2)
    return Path(database)


def pg_tool(name: str) -> str:
    """A PostgreSQL client program: the newest next to the server binaries, else
    the one on PATH (a newer pg_dump reads an older server, not the reverse)."""
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise BackupError(
        "backup.no_pg_tool",
        f"PostgreSQL's {name} was not found on PATH or in /usr/lib/postgresql/*/bin "
        "(install the PostgreSQL client package)",
        exit=2,
    )


def _version_key(path: str) -> tuple[int, ...]:
    part = Path(path).parent.parent.name
    return tuple(int(x) for x in part.split(".") if x.isdigit()) or (0,)


def pg_env(url: str) -> dict[str, str]:
    """libpq's environment for the configured database (the password never on a
    command line, where ``ps`` would show it)."""
    u = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    host = u.query.get("host")
    parts = {
        "PGHOST": u.host or (host if isinstance(host, str) else None),
        "PGPORT": str(u.port) if u.port else None,
        "PGUSER": u.username,
        "PGPASSWORD": u.password,
        "PGDATABASE": u.database,
    }
    ssl = u.query.get("ssl") or u.query.get("sslmode")
    if isinstance(ssl, str):
        parts["PGSSLMODE"] = {"true": "require", "false": "disable"}.get(ssl, ssl)
    env.update({k: v for k, v in parts.items() if v})
    env["PGAPPNAME"] = "kares-backup"
    return env


def _run(cmd: list[str], env: dict[str, str], code: str, what: str) -> None:
    # the PostgreSQL tools, found by pg_tool; arguments are paths and fixed options
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if r.returncode != 0:
        tail = "\n".join(r.stderr.strip().splitlines()[-5:])
        raise BackupError(code, f"{what} failed (exit {r.returncode}): {tail}")


def _sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy with the online backup API (never a file copy: a copy of
    the file while the service writes can be torn, and misses the log)."""
    if not src.is_file():
        raise BackupError("backup.no_database", f"there is no database at {src}", exit=2)
    source = sqlite3_connect(f"file:{quote(str(src))}?mode=rw")
    try:
        dest = sqlite3_connect(str(dst), uri=False)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()


def sqlite3_connect(target: str, *, uri: bool = True) -> Any:
    import sqlite3

    conn = sqlite3.connect(target, uri=uri, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _work_dir(settings: Settings) -> Path:
    """A private directory (mode 700) for the plaintext while it is needed; removed after."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".backup-", dir=settings.var_dir))


# --- create ---------------------------------------------------------------------------------


@dataclass
class Created:
    path: Path
    manifest: dict[str, Any]
    size: int


async def create(rt: Runtime, out: Path) -> Created:
    """Write the encrypted backup of the configured database to ``out`` (written
    beside it as ``.part`` and renamed when complete). Logged as a staff action."""
    settings = rt.settings
    keys = recipients(settings)
    dialect = rt.db.dialect
    if dialect not in MEMBER:
        raise BackupError("backup.dialect", f"cannot back up a {dialect} database", exit=2)
    # a database behind the code is backed up as it is (a restore migrates it); one
    # never migrated holds nothing to keep
    revision = await migrations.current_revision(rt.db.engine)
    if revision is None:
        raise BackupError(
            "backup.not_migrated", "the database holds no Kares schema: nothing to back up", exit=2
        )
    if not out.parent.is_dir():
        raise BackupError("backup.bad_out", f"{out.parent} is not a directory", exit=2)
    work = _work_dir(settings)
    try:
        member = work / MEMBER[dialect]
        url = settings.effective_database_url
        if dialect == "sqlite":
            await asyncio.to_thread(_sqlite_copy, sqlite_path(url), member)
        else:
            cmd = [pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges"]
            await asyncio.to_thread(
                _run, [*cmd, "--file", str(member)], pg_env(url), "backup.pg_dump", "pg_dump"
            )
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": clock.utcnow().isoformat(),
            "schema": revision,
            "dialect": dialect,
            "kares_version": __version__,
            "database": {
                "file": member.name,
                "bytes": member.stat().st_size,
                "sha256": await asyncio.to_thread(_sha256, member),
            },
            "media": "in the database (media_objects)",
        }
        plain = work / "backup.tar.gz"
        await asyncio.to_thread(_pack, plain, manifest, member)
        part = out.with_name(out.name + ".part")
        try:
            await asyncio.to_thread(pyrage.encrypt_file, str(plain), str(part), keys)
            part.chmod(0o600)  # encrypted, and still nobody else's business
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = (await asyncio.to_thread(out.stat)).st_size
    async with rt.db.sessions() as s:
        await audit.record(
            s,
            "backup.create",
            account_id=None,
            detail={"file": out.name, "bytes": size, "schema": revision, "dialect": dialect},
        )
        await s.commit()
    return Created(out, manifest, size)


def _pack(plain: Path, manifest: dict[str, Any], member: Path) -> None:
    # gzip level 6 on a SQLite file; a custom-format dump is compressed already
    level = 1 if member.suffix == ".pgdump" else 6
    with gzip.open(plain, "wb", compresslevel=level) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(clock.utcnow().timestamp())
            tar.addfile(info, io.BytesIO(data))
            tar.add(member, arcname=member.name, recursive=False)


# --- restore --------------------------------------------------------------------------------


@dataclass
class Restored:
    manifest: dict[str, Any]
    migrated_from: str | None  # the backup's revision when it was older than head
    register_added: int
    reapplied: list[dict[str, Any]] = field(default_factory=list)


def _open(file: Path, settings: Settings, work: Path) -> tuple[dict[str, Any], Path]:
    """Decrypt and check the backup into ``work``: its manifest, and its database
    member's path. Changes nothing outside ``work``."""
    keys = identities(settings)
    if not file.is_file():
        raise BackupError("backup.not_found", f"there is no backup file at {file}", exit=2)
    plain = work / "backup.tar.gz"
    try:
        pyrage.decrypt_file(str(file), str(plain), keys)
    except (pyrage.DecryptError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the disk, not the file
            raise BackupError("backup.io", f"cannot decrypt into {work}: {exc}") from None
        # a damaged chunk surfaces from the stream as an OSError without an errno
        raise BackupError(
            "backup.cannot_decrypt",
            f"{file} cannot be opened: the key is not the one it was made for, or the file "
            f"is damaged or was changed ({exc})",
        ) from None
    try:
        with tarfile.open(plain, mode="r:gz") as tar:
            manifest = _manifest(tar)
            dialect = manifest.get("dialect")
            meta = manifest.get("database") or {}
            if dialect not in MEMBER or meta.get("file") != MEMBER[dialect]:
                raise BackupError("backup.corrupt", "the backup's manifest names no database")
            src = tar.extractfile(MEMBER[dialect])
            if src is None:
                raise BackupError("backup.corrupt", "the backup holds no database")
            member = work / MEMBER[dialect]
            h = hashlib.sha256()
            with src, member.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
    except (tarfile.TarError, OSError, EOFError, KeyError, ValueError) as exc:
        raise BackupError("backup.corrupt", f"the backup's contents are damaged ({exc})") from None
    if h.hexdigest() != meta.get("sha256"):
        raise BackupError("backup.corrupt", "the backup's database does not match its digest")
    return manifest, member


def _manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    src = tar.extractfile(MANIFEST)
    if src is None:
        raise BackupError("backup.corrupt", "the backup holds no manifest")
    manifest = json.loads(src.read().decode("utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("backup.corrupt", "this is not a Kares backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            "backup.format",
            f"backup format {manifest.get('format_version')} is not one this version of "
            f"Kares reads ({FORMAT_VERSION})",
        )
    return manifest


def check_schema(revision: str | None) -> None:
    """A backup's migration revision must be one this code knows: head or older."""
    scripts = ScriptDirectory.from_config(migrations.alembic_config("sqlite://"))
    try:
        known = revision is not None and scripts.get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise BackupError(
            "backup.newer_schema",
            f"the backup is at migration {revision}, which this version of Kares does not "
            f"know (its newest is {migrations.head_revision()}): restore it with the Kares "
            "version that made it, or a newer one",
        )


def sqlite_users(path: Path) -> list[int]:
    """Other processes that have the SQLite database (or its log) open. Linux:
    read from /proc; elsewhere nothing can be seen, and the operator must stop the
    service first (docs/RIGHTS.md)."""
    names = {str(p.resolve()) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))}
    me = os.getpid()
    out = []
    for proc in glob("/proc/[0-9]*"):
        pid = int(proc.rsplit("/", 1)[1])
        if pid == me:
            continue
        try:
            fds = os.listdir(f"{proc}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{proc}/fd/{fd}") in names:
                    out.append(pid)
                    break
            except OSError:
                continue
    return out


async def pg_users(url: str) -> int:
    """Other client connections to the configured PostgreSQL database."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            q = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            return int((await conn.execute(q)).scalar_one())
    except (SQLAlchemyError, OSError) as exc:
        raise BackupError(
            "backup.no_database", f"the configured database cannot be reached ({exc})", exit=2
        ) from None
    finally:
        await db.dispose()


async def _live_entries(url: str) -> list[dict[str, Any]]:
    """The register of the database about to be replaced (the newest), if it has one."""
    if url.startswith("sqlite") and not sqlite_path(url).is_file():
        return []
    db = Database(url)
    try:
        async with db.sessions() as s:
            return await register.entries(s)
    except SQLAlchemyError as exc:  # no such table (never migrated): the file has them
        log.warning("the current database's deletion register could not be read: %s", exc)
        return []
    finally:
        await db.dispose()


async def _apply_register(
    rt: Runtime, live: list[dict[str, Any]], manifest: dict[str, Any], migrated: str | None
) -> tuple[int, list[dict[str, Any]]]:
    """Merge the register (its file, and the replaced database's) into the restored
    database, delete again what it names, and log the restore as a staff action."""
    found = register.entries_from_file(rt.settings.var_dir)
    seen = {e["id"] for e in found}
    found += [e for e in live if e["id"] not in seen]
    async with rt.db.sessions() as s:
        added = await register.merge(s, found)
        await s.commit()
    async with rt.db.sessions() as s:
        done = await erase.reapply(s, rt)
    totals: dict[str, int] = {}
    for d in done:
        for table, n in d.get("deleted", {}).items():
            totals[table] = totals.get(table, 0) + int(n)
    async with rt.db.sessions() as s:
        await audit.record(
            s,
            "backup.restore",
            account_id=None,
            detail={
                "backup_created_at": manifest.get("created_at"),
                "schema": manifest.get("schema"),
                "migrated": migrated is not None,
                "register_added": added,
                "reapplied": len(done),
                "deleted": totals,
            },
        )
        await s.commit()
    return added, done


async def restore(
    settings: Settings, file: Path, *, confirm: Callable[[dict[str, Any]], bool]
) -> Restored:
    """Restore ``file`` into the configured database, then re-apply the deletion
    register. Every check runs before the database is touched; ``confirm`` is asked
    (with the manifest) last, and a ``False`` changes nothing."""
    url = settings.effective_database_url
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    identities(settings)  # a missing key is said before anything is read
    work = _work_dir(settings)
    try:
        manifest, member = await asyncio.to_thread(_open, file, settings, work)
        if manifest["dialect"] != dialect:
            raise BackupError(
                "backup.wrong_dialect",
                f"this is a backup of a {manifest['dialect']} database; the configured one "
                f"is {dialect}",
            )
        revision = manifest.get("schema")
        check_schema(revision)
        migrated = revision if revision != migrations.head_revision() else None
        if dialect == "sqlite":
            users = await asyncio.to_thread(sqlite_users, sqlite_path(url))
            if users:
                raise BackupError(
                    "backup.in_use",
                    f"the database is open in {len(users)} other process(es) (pid "
                    f"{', '.join(map(str, users))}): stop `kares serve` and `kares worker` first",
                )
        else:
            n = await pg_users(url)
            if n:
                raise BackupError(
                    "backup.in_use",
                    f"{n} other connection(s) to the database: stop `kares serve` and "
                    "`kares worker` first",
                )
        if not confirm(manifest):
            raise BackupError("backup.not_confirmed", "not restored: say --yes", exit=2)
        live = await _live_entries(url)
        if dialect == "sqlite":
            added, done = await _restore_sqlite(settings, manifest, member, migrated, live)
        else:
            added, done = await _restore_pg(settings, manifest, member, migrated, live)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Restored(manifest, migrated, added, done)


async def _restore_sqlite(
    settings: Settings,
    manifest: dict[str, Any],
    member: Path,
    migrated: str | None,
    live: list[dict[str, Any]],
) -> tuple[int, list[dict[str, Any]]]:
    """Prepare the restored database beside the live one, then swap it in."""
    target = sqlite_path(settings.effective_database_url)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.restore-", dir=target.parent)
    os.close(fd)
    prepared = Path(name)
    try:
        await asyncio.to_thread(shutil.copyfile, member, prepared)
        await asyncio.to_thread(_sqlite_sane, prepared)
        prepared_url = f"sqlite+aiosqlite:///{prepared}"
        if migrated:
            await asyncio.to_thread(migrations.upgrade, prepared_url)
        rt = Runtime.build(settings.model_copy(update={"database_url": prepared_url}))
        try:
            added, done = await _apply_register(rt, live, manifest, migrated)
        finally:
            await rt.close()
        await asyncio.to_thread(_fold_log, prepared)
        await asyncio.to_thread(_swap, prepared, target)
    finally:
        await asyncio.to_thread(_remove_sqlite, prepared)
    return added, done


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", "-turns"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _sqlite_sane(path: Path) -> None:
    conn = sqlite3_connect(str(path), uri=False)
    try:
        row = conn.execute("PRAGMA quick_check").fetchone()
    except Exception as exc:
        raise BackupError("backup.corrupt", f"the backup's database is damaged ({exc})") from None
    finally:
        conn.close()
    if not row or row[0] != "ok":
        raise BackupError("backup.corrupt", f"the backup's database is damaged ({row})")


def _fold_log(path: Path) -> None:
    """Copy the write-ahead log into the file and empty it, so the file alone is
    the database (and a stale log cannot meet another file)."""
    conn = sqlite3_connect(str(path), uri=False)
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        conn.close()
    if busy:
        raise BackupError("backup.busy", f"the log of {path} could not be folded in")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _swap(prepared: Path, target: Path) -> None:
    if target.exists():
        prepared.chmod(stat.S_IMODE(target.stat().st_mode))  # mkstemp made it 600
        _fold_log(target)  # what it held goes with it; its log must not outlive it
    os.replace(prepared, target)


async def _restore_pg(
    settings: Settings,
    manifest: dict[str, Any],
    member: Path,
    migrated: str | None,
    live: list[dict[str, Any]],
) -> tuple[int, list[dict[str, Any]]]:
    """Replace the ``public`` schema with the dump's in one transaction, then
    migrate and re-apply the register."""
    url = settings.effective_database_url
    env = pg_env(url)
    script = member.with_suffix(".sql")
    await asyncio.to_thread(
        _run,
        [pg_tool("pg_restore"), "--no-owner", "--no-privileges", f"--file={script}", str(member)],
        env,
        "backup.corrupt",
        "reading the dump (pg_restore)",
    )
    await asyncio.to_thread(
        _run,
        [
            pg_tool("psql"),
            "--no-psqlrc",
            "--quiet",
            "--single-transaction",
            "--set=ON_ERROR_STOP=1",
            "--command=DROP SCHEMA IF EXISTS public CASCADE",
            "--command=CREATE SCHEMA public",
            f"--file={script}",
        ],
        env,
        "backup.pg_restore",
        "restoring the dump (psql, one transaction: nothing was changed)",
    )
    script.unlink(missing_ok=True)
    if migrated:
        await asyncio.to_thread(migrations.upgrade, url)
    rt = Runtime.build(settings)
    try:
        return await _apply_register(rt, live, manifest, migrated)
    finally:
        await rt.close()
