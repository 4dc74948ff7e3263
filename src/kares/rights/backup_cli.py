"""``kares backup``: encrypted backups, and restores that delete again what the
deletion register names (docs/RIGHTS.md, "Backups").

    kares backup key --out FILE           # a new age key pair: FILE is the secret
    kares backup create [--out FILE]      # KARES_BACKUP_RECIPIENTS
    kares backup restore FILE [--yes]     # KARES_BACKUP_IDENTITY_FILE

Both ``create`` and ``restore`` are logged as staff actions. Any failure exits
non-zero with the reason on stderr and leaves the database as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# what the entry point runs before a command: importing every domain, so that
# their tables and erasure hooks are registered (this package may not import them all)
_prepare: list[Callable[[], None]] = []


def add_commands(sub: Any, *, prepare: Callable[[], None]) -> None:
    """Add ``backup`` to the ``kares`` command's sub-commands."""
    _prepare[:] = [prepare]
    backup = sub.add_parser(
        "backup", help="encrypted backups; a restore deletes again what was deleted since"
    )
    cmds = backup.add_subparsers(dest="backup_command", required=True)
    key = cmds.add_parser(
        "key", help="make an age key pair: write the secret to FILE, print the public key"
    )
    key.add_argument("--out", required=True, metavar="FILE", help="the identity file to write")
    key.set_defaults(func=_cmd_key)
    create = cmds.add_parser(
        "create", help="write one encrypted file: the database (media included) and a manifest"
    )
    create.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="the file to write (default: VAR_DIR/backups/kares-<time>.age)",
    )
    create.set_defaults(func=_cmd_create)
    restore = cmds.add_parser(
        "restore",
        help="replace the database with a backup, then re-apply the deletion register "
        "(stop the server and workers first)",
    )
    restore.add_argument("file", metavar="FILE", help="the backup file")
    restore.add_argument("--yes", action="store_true", help="do not ask before replacing")
    restore.set_defaults(func=_cmd_restore)


def _fail(exc: Any) -> int:
    print(f"kares: backup: {exc.message}", file=sys.stderr)
    return int(exc.exit)


def _cmd_key(args: argparse.Namespace) -> int:
    from kares.rights.backup import BackupError, new_identity

    try:
        public = new_identity(Path(args.out))
    except BackupError as exc:
        return _fail(exc)
    print(public)
    print(
        f"wrote the secret key to {args.out}: keep it away from the server. Set "
        f"KARES_BACKUP_RECIPIENTS={public} where backups are made, and "
        "KARES_BACKUP_IDENTITY_FILE to the file where they are restored.",
        file=sys.stderr,
    )
    return 0


def _cmd_create(args: argparse.Namespace) -> int:
    from kares.config import get_settings
    from kares.logs import setup_logging

    for fn in _prepare:
        fn()
    setup_logging(get_settings().log_level)
    return asyncio.run(_create(args.out))


async def _create(out: str | None) -> int:
    from kares import clock
    from kares.config import get_settings
    from kares.rights.backup import BackupError, create, sqlite_path
    from kares.runtime import Runtime

    settings = get_settings()
    url = settings.effective_database_url
    if url.startswith("sqlite") and not sqlite_path(url).is_file():  # opening would make one
        print(f"kares: backup: there is no database at {sqlite_path(url)}", file=sys.stderr)
        return 2
    if out is None:
        folder = settings.var_dir / "backups"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"kares-{clock.utcnow().strftime('%Y%m%dT%H%M%SZ')}.age"
    else:
        path = Path(out)
    rt = Runtime.build(settings)
    try:
        made = await create(rt, path)
    except BackupError as exc:
        return _fail(exc)
    finally:
        await rt.close()
    m = made.manifest
    print(
        f"wrote {made.path} ({made.size} bytes): {m['dialect']} database at migration "
        f"{m['schema']}, made {m['created_at']}"
    )
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from kares.config import get_settings
    from kares.logs import setup_logging

    for fn in _prepare:
        fn()
    setup_logging(get_settings().log_level)
    return asyncio.run(_restore(Path(args.file), args.yes))


def _ask(yes: bool) -> Callable[[dict[str, Any]], bool]:
    def confirm(manifest: dict[str, Any]) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        answer = input(
            f"Replace the database with the backup made {manifest.get('created_at')} "
            f"(migration {manifest.get('schema')})? Type yes: "
        )
        return answer.strip().lower() == "yes"

    return confirm


async def _restore(file: Path, yes: bool) -> int:
    from kares.config import get_settings
    from kares.rights.backup import BackupError, restore

    try:
        done = await restore(get_settings(), file, confirm=_ask(yes))
    except BackupError as exc:
        return _fail(exc)
    m = done.manifest
    print(f"restored the backup made {m['created_at']} ({m['dialect']}, migration {m['schema']})")
    if done.migrated_from:
        print(f"migrated from {done.migrated_from} to the newest migration")
    print(f"deletion register: {done.register_added} entries added from its copy")
    deleted = [d for d in done.reapplied if d.get("deleted") or d.get("cleared")]
    if not deleted:
        print("re-deleted: nothing (the backup holds nothing the register names)")
    for d in deleted:
        print(f"re-deleted ({d['scope']}, register entry {d['entry']}):")
        for table, n in sorted(d.get("deleted", {}).items()):
            print(f"  {table}: {n}")
        for table, n in sorted(d.get("cleared", {}).items()):
            print(f"  {table}: {n} (reference removed)")
    return 0
