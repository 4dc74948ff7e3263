"""``kares health import FILE --phone P``: an Apple Health export (the Health
app's zip, or its export.xml) into the health data of the account with that
phone number, for operators and self-hosters.

Progress goes to stderr (bytes read, records, samples stored / duplicate /
refused), a summary to stdout at the end. Exit codes: 0 imported; 1 no account
has that number; 2 the file cannot be read (its ``applehealth.*`` code is
printed; what came before a fault in the file stays stored) or the number is
not one; 3 the person has not consented to health (nothing is read: an
operator's import does not bypass consent).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_prepare: list[Callable[[], None]] = []


def add_commands(sub: Any, *, prepare: Callable[[], None]) -> None:
    """Add ``health`` to the ``kares`` command's sub-commands; ``prepare`` runs
    before any of them (it registers every domain)."""
    _prepare[:] = [prepare]
    health = sub.add_parser("health", help="health data: import an Apple Health export")
    cmds = health.add_subparsers(dest="health_command", required=True)
    imp = cmds.add_parser(
        "import",
        help="store an Apple Health export (the zip or export.xml) for the account with a "
        "phone number; needs the person's health consent",
    )
    imp.add_argument("file", metavar="FILE", help="export.zip or export.xml")
    imp.add_argument("--phone", required=True, help="the account's phone number")
    imp.set_defaults(func=_cmd_import)


def _cmd_import(args: argparse.Namespace) -> int:
    from kares.config import get_settings
    from kares.logs import setup_logging

    file = Path(args.file)
    if not file.is_file():
        print(f"kares: {file}: no such file", file=sys.stderr)
        return 2
    for prepare in _prepare:
        prepare()
    setup_logging(get_settings().log_level)
    return asyncio.run(_import(file, args.phone))


def _line(p: Any, t: Any) -> str:
    frac = p.fraction
    pct = f"{frac * 100:5.1f}%" if frac is not None else "    ?%"
    return (
        f"{pct}  {p.records:,} records  {t.stored:,} stored  {t.duplicates:,} duplicate  "
        f"{t.refused:,} refused  {sum(p.skipped.values()):,} skipped"
    )


async def _import(file: Path, phone: str) -> int:
    from kares import migrations
    from kares.config import get_settings
    from kares.errors import Problem
    from kares.identity.service import find_by_phone, parse_phone
    from kares.logs import mask_phone
    from kares.protocols.applehealth import ExportError, Progress
    from kares.protocols.applehealth_import import Tally, refused_features, run_import
    from kares.runtime import Runtime

    err, out = sys.stderr, sys.stdout
    settings = get_settings()
    rt = Runtime.build(settings)
    try:
        if await migrations.current_revision(rt.db.engine) != migrations.head_revision():
            print("kares: the database is not migrated: run `kares migrate` first", file=err)
            return 2
        try:
            e164 = parse_phone(phone, settings.default_region)
        except Problem as exc:
            print(f"kares: {exc.detail}", file=err)
            return 2
        async with rt.db.sessions() as s:
            account = await find_by_phone(s, e164)
            if account is None:
                print("kares: no account has this phone number", file=err)
                return 1
            try:
                refused = await refused_features(s, rt, account)
            except Problem as exc:
                print(
                    f"kares: not imported: {mask_phone(e164)} has not consented to health data "
                    f"({exc.code}: {exc.detail}). The person gives it in the app; an operator's "
                    "import does not bypass it.",
                    file=err,
                )
                return 3
        for feature, (code, _) in sorted(refused.items()):
            print(f"kares: no consent for health {feature} ({code}): refused", file=err)
        account_id = account.id
        tty = err.isatty()
        progress, tally = Progress(), Tally()

        def draw(s: Any, p: Progress, t: Tally) -> None:
            print(_line(p, t), file=err, end="\r" if tty else "\n", flush=True)

        failed: ExportError | Problem | None = None
        try:
            await run_import(rt, account_id, file, progress=progress, tally=tally, after_batch=draw)
        except (ExportError, Problem) as exc:
            failed = exc
        except LookupError:
            print("kares: the account was deleted during the import", file=err)
            return 1
        if tty:
            print(file=err)
        print(f"imported {file.name} for {mask_phone(e164)} (account {account_id})", file=out)
        print(
            f"  {progress.records:,} records, {progress.samples:,} samples: "
            f"{tally.stored:,} stored, {tally.duplicates:,} already stored, "
            f"{tally.refused:,} refused",
            file=out,
        )
        for code, n in sorted(tally.refused_codes.items()):
            print(f"  refused {code}: {n:,}", file=out)
        for kind, n in sorted(progress.skipped.items()):
            print(f"  skipped {kind}: {n:,}", file=out)
        for kind, n in sorted(progress.invalid.items()):
            print(f"  unreadable {kind}: {n:,}", file=out)
        if isinstance(failed, ExportError):
            print(f"kares: {failed.code}: {failed.message}", file=err)
            if tally.stored:
                print("kares: what came before the fault is stored", file=err)
            return 2
        if isinstance(failed, Problem):
            print(f"kares: stopped: {failed.code}: {failed.detail}", file=err)
            return 3
        return 0
    finally:
        await rt.close()
