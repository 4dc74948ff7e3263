"""``kares staff``: the operators' side of the requests that need a person.

    kares staff list [--overdue] [--all] [--json]
    kares staff show ID [--json]
    kares staff answer ID --text TEXT [--by NAME]
    kares staff answer ID --reject --reason TEXT [--by NAME]

The listing shows overdue requests first, then those still waiting for a due
date (the working-day calendar of their year is not known yet: an operator
must look), then the rest by due date. Answering after the due date is
allowed. The person is told through the notify domain, in their language.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from kares.errors import Problem

# what the entry point runs before a command: importing every domain, so that
# their tables and hooks are registered (this package may not import them all)
_prepare: list[Callable[[], None]] = []


def add_commands(sub: Any, *, prepare: Callable[[], None]) -> None:
    """Add ``staff`` to the ``kares`` command's sub-commands; ``prepare`` runs
    before any of them."""
    _prepare[:] = [prepare]
    staff = sub.add_parser(
        "staff", help="requests that need a person: list, show, answer or reject them"
    )
    cmds = staff.add_subparsers(dest="staff_command", required=True)
    ls = cmds.add_parser("list", help="open requests, overdue first")
    ls.add_argument("--overdue", action="store_true", help="only the overdue ones")
    ls.add_argument("--all", action="store_true", help="closed requests too")
    ls.add_argument("--json", action="store_true", help="print JSON for scripts")
    ls.set_defaults(func=_cmd_list)
    show = cmds.add_parser("show", help="one request, in full")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(func=_cmd_show)
    ans = cmds.add_parser("answer", help="answer a request, or reject it with the reason")
    ans.add_argument("id")
    ans.add_argument("--text", default=None, help="the answer")
    ans.add_argument("--reject", action="store_true", help="refuse the request (give --reason)")
    ans.add_argument("--reason", default=None, help="why it is refused (with --reject)")
    ans.add_argument("--by", default=None, help="the operator's name (default: the OS user)")
    ans.set_defaults(func=_cmd_answer)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment (a container)
        return "staff"


def _row(item: Any) -> dict[str, Any]:
    r = item.request
    return {
        "id": r.id,
        "kind": r.kind,
        "status": r.status,
        "account_id": r.account_id,
        "filed_by": r.filed_by,
        "about": r.about,
        "record": r.record,
        "wrong": r.wrong,
        "should_be": r.should_be,
        "text": r.text,
        "lang": r.lang,
        "received_at": r.created_at.isoformat(),
        "due_on": r.due_on.isoformat() if r.due_on else None,
        "due_pending": r.due_pending,
        "overdue": item.overdue,
        "working_days_left": item.days_left,
        "answer": r.answer,
        "answered_by": r.answered_by,
        "closed_at": r.closed_at.isoformat() if r.closed_at else None,
    }


def _due_text(row: dict[str, Any]) -> str:
    if row["status"] != "open":
        return row["status"]
    if row["due_on"] is None:
        return "DUE DATE UNKNOWN"
    if row["overdue"]:
        return f"OVERDUE since {row['due_on']}"
    left = row["working_days_left"]
    return f"due {row['due_on']}" + (f" ({left} working days left)" if left is not None else "")


async def _run(work: Any) -> int:
    from kares import migrations
    from kares.config import get_settings
    from kares.runtime import Runtime

    for prepare in _prepare:
        prepare()
    rt = Runtime.build(get_settings())
    try:
        current = await migrations.current_revision(rt.db.engine)
        if current != migrations.head_revision():
            print(
                f"kares: the database is at migration {current}, not "
                f"{migrations.head_revision()}: run `kares migrate` first",
                file=sys.stderr,
            )
            return 2
        async with rt.db.sessions() as s:
            try:
                return int(await work(s, rt))
            except Problem as p:
                print(f"kares: {p.code}: {p.detail}", file=sys.stderr)
                return 1
    finally:
        await rt.close()


def _cmd_list(args: argparse.Namespace) -> int:
    from kares.rights import staff

    async def work(s: Any, rt: Any) -> int:
        items = await staff.queue(s, rt, overdue_only=args.overdue, include_closed=args.all)
        rows = [_row(i) for i in items]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return 0
        unknown = [r for r in rows if r["status"] == "open" and r["due_on"] is None]
        if unknown:
            print(
                f"! {len(unknown)} request(s) have no due date yet: {unknown[0]['due_pending']}",
                file=sys.stderr,
            )
        if not rows:
            print("no requests" if not args.overdue else "no overdue requests")
        for r in rows:
            about = f" [{r['about']}]" if r["about"] else ""
            print(f"{r['id']}  {r['kind']:<11}{about}  {_due_text(r)}  received {r['received_at']}")
        return 0

    return asyncio.run(_run(work))


def _cmd_show(args: argparse.Namespace) -> int:
    from kares import clock
    from kares.privacy.catalog import catalog_of
    from kares.rights import staff
    from kares.workdays import local_day

    async def work(s: Any, rt: Any) -> int:
        await staff.fill_due_dates(s, catalog_of(rt))
        r = await staff.find(s, args.id)
        now = clock.utcnow()
        row = _row(
            staff.Queued(r, staff.is_overdue(r, local_day(now)), staff.working_days_left(r, now))
        )
        if args.json:
            print(json.dumps(row, ensure_ascii=False, indent=2))
            return 0
        print(f"{row['id']}: {row['kind']}, {_due_text(row)}")
        for key in ("account_id", "filed_by", "about", "record", "wrong", "should_be", "text",
                    "lang", "received_at", "due_on", "due_pending", "answer", "answered_by",
                    "closed_at"):  # fmt: skip
            if row[key] is not None:
                print(f"  {key}: {row[key]}")
        return 0

    return asyncio.run(_run(work))


def _cmd_answer(args: argparse.Namespace) -> int:
    from kares.rights import staff

    if args.reject:
        if args.text is not None or not args.reason:
            print("kares: --reject takes --reason (and no --text)", file=sys.stderr)
            return 2
        status, text = staff.REJECTED, args.reason
    else:
        if args.reason is not None or not args.text:
            print("kares: give --text (or --reject with --reason)", file=sys.stderr)
            return 2
        status, text = staff.ANSWERED, args.text
    by = args.by or _os_user()

    async def work(s: Any, rt: Any) -> int:
        r = await staff.close(s, rt, args.id, status=status, text=text, by=by)
        print(f"{r.id} {r.status}; the person is told")
        return 0

    return asyncio.run(_run(work))
