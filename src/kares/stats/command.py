"""``kares stats``: publish a release of the anonymised statistics, and show the budget.

``register`` adds the subcommand to the ``kares`` parser; everything heavy is
imported when the command runs. The entry point passes ``prepare``, which
registers every domain (this package may not import ``kares.domains``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import date
from typing import Any


def register(sub: Any, *, prepare: Callable[[], None]) -> None:
    stats = sub.add_parser(
        "stats",
        help="publish anonymised usage statistics (k-anonymity and differential privacy); "
        "`kares stats budget` shows the privacy budget spent",
    )
    stats.add_argument(
        "--days", type=int, default=7, help="whole UTC days before today (default 7)"
    )
    stats.add_argument("--from", dest="first", type=date.fromisoformat, default=None, metavar="DAY")
    stats.add_argument("--to", dest="last", type=date.fromisoformat, default=None, metavar="DAY")
    stats.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="epsilon spent by each figure (default KARES_STATS_EPSILON)",
    )
    stats.add_argument("--json", action="store_true", help="print the release as JSON")
    stats.set_defaults(func=_cmd_stats, stats_command=None, prepare=prepare)
    stats_sub = stats.add_subparsers(dest="stats_command")
    b = stats_sub.add_parser("budget", help="the releases of the budget period and what they spent")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=_cmd_budget, prepare=prepare)


async def _run(args: argparse.Namespace, work: Any) -> Any:
    from kares.config import get_settings
    from kares.runtime import Runtime

    args.prepare()
    settings = get_settings()
    rt = Runtime.build(settings)
    try:
        async with rt.db.sessions() as s:
            return await work(s, settings)
    finally:
        await rt.close()


def _fail(exc: Exception) -> int:
    from kares.errors import Problem

    if isinstance(exc, Problem):
        print(f"kares: {exc.detail} ({exc.code})", file=sys.stderr)
        return 2
    raise exc


def _cmd_stats(args: argparse.Namespace) -> int:
    from kares.errors import Problem
    from kares.stats import service

    async def work(s: Any, settings: Any) -> dict[str, Any]:
        if args.first is not None or args.last is not None:
            last = args.last or service.default_window(1)[1]
            first = args.first or last
        else:
            if not 1 <= args.days <= service.MAX_DAYS:
                raise Problem(422, "stats.range_too_long", f"--days is 1 to {service.MAX_DAYS}.")
            first, last = service.default_window(args.days)
        policy = service.Policy.of(settings, epsilon=args.epsilon)
        release = await service.publish(s, policy, first_day=first, last_day=last)
        return service.as_dict(release)

    try:
        out = asyncio.run(_run(args, work))
    except Problem as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(render_text(out))
    return 0


def _cmd_budget(args: argparse.Namespace) -> int:
    from kares.stats import service

    async def work(s: Any, settings: Any) -> dict[str, Any]:
        policy = service.Policy.of(settings)
        b = await service.budget(s, policy)
        return {
            "period_days": b.period_days,
            "since": b.since.isoformat(),
            "budget": b.limit,
            "spent": b.spent,
            "left": b.left,
            "epsilon_per_figure": policy.epsilon,
            "epsilon_per_release": policy.per_release,
            "releases": [
                {
                    "id": r.id,
                    "created_at": r.created_at.isoformat(),
                    "first_day": r.first_day.isoformat(),
                    "last_day": r.last_day.isoformat(),
                    "k": r.k,
                    "epsilon_total": r.epsilon_total,
                    "epsilons": r.epsilons,
                }
                for r in b.releases
            ],
        }

    out = asyncio.run(_run(args, work))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"privacy budget: {out['spent']:.3f} of {out['budget']:.3f} spent in the last "
        f"{out['period_days']} days ({out['left']:.3f} left; a release spends at most "
        f"{out['epsilon_per_release']:.3f})"
    )
    for r in out["releases"]:
        print(
            f"  {r['created_at']}  {r['first_day']}..{r['last_day']}  k={r['k']}  "
            f"epsilon {r['epsilon_total']:.3f}  ({r['id']})"
        )
    return 0


def _cell_label(cell: dict[str, Any]) -> str:
    return "  ".join(str(v) for k, v in cell.items() if k not in ("value", "suppressed"))


def render_text(release: dict[str, Any]) -> str:
    """A release as text: each figure with its guarantee, each cell with its value or
    "suppressed"."""
    lines = [
        f"Kares anonymised statistics, release {release['id']}",
        f"UTC days {release['first_day']} to {release['last_day']}; groups of fewer than "
        f"{release['k']} people suppressed; epsilon spent {release['epsilon_total']:.3f}",
    ]
    for fig in release["figures"]:
        g = fig["guarantee"]
        lines += [
            "",
            f"{fig['title']} [{fig['unit']}]",
            f"  guarantee: k={g['k']}, epsilon={g['epsilon']:.3f} ({g['mechanism']}; "
            f"{g['contribution']}); noise within +/-{g['margin95']:.1f} with 95% probability",
        ]
        if "as_of" in fig:
            lines.append(f"  as of {fig['as_of']}")
        if not fig["cells"]:
            lines.append("  (no groups)")
        for cell in fig["cells"]:
            shown = "suppressed (fewer than k people)" if cell["suppressed"] else cell["value"]
            lines.append(f"  {_cell_label(cell)}: {shown}")
    return "\n".join(lines)
