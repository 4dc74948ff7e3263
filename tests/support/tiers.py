"""Which tests run on which database tier, and a check that each runs somewhere.

``scripts/test`` runs the suite twice, with ``KARES_TEST_DB=sqlite`` and with
``KARES_TEST_DB=postgresql``. A test whose outcome cannot depend on the
database is marked ``@pytest.mark.db_agnostic`` (a module says
``pytestmark = pytest.mark.db_agnostic``) and runs in the SQLite tier only;
every other test runs in both. The rule is the marker alone, and collection
refuses a marked test that asks for a database (the ``db_url`` fixture, which
``settings``, ``app``, ``client`` and ``db`` are built on).

A property test over the API that runs on both tiers takes its number of
examples from :func:`examples`: all of them on PostgreSQL, a quarter on SQLite.

With ``KARES_TIER_REPORT=<file>`` a run writes down what it collected and what
each test did; ``python -m tests.support.tiers <sqlite report> <postgresql
report>`` then fails if any collected test ran (set up and called, not
skipped) in neither tier.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.support.databases import TIERS, tier

MARK = "db_agnostic"
DATABASE_FIXTURE = "db_url"


# A property test over the API that runs on both tiers draws all its examples on
# PostgreSQL, the stricter database (text with NUL, column widths, integer ranges,
# locks and deadlocks between concurrent writers: the 500s this suite has found so
# far were PostgreSQL's), and one in SQLITE_SHARE of them on SQLite, where the same
# code and rules run again over the embedded database.
SQLITE_SHARE = 4


def examples(n: int) -> int:
    """How many examples a property test that runs on both tiers draws on this one:
    ``n`` on PostgreSQL, a quarter of ``n`` on SQLite (``max_examples=examples(n)``)."""
    return n if tier() == "postgresql" else max(1, n // SQLITE_SHARE)


def tiers_of(item: pytest.Item) -> tuple[str, ...]:
    """The tiers that run this test."""
    return ("sqlite",) if item.get_closest_marker(MARK) else TIERS


def pytest_configure(config: pytest.Config) -> None:
    try:
        tier()
    except RuntimeError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.addinivalue_line(
        "markers",
        f"{MARK}: touches no database, so its outcome cannot differ between the database "
        "tiers; it runs in the SQLite tier only",
    )
    report = os.environ.get("KARES_TIER_REPORT")
    if report and not hasattr(config, "workerinput"):
        # where the results arrive: the one process, or xdist's controller
        config.pluginmanager.register(Outcomes(Path(report)), "kares-tier-outcomes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = [i.nodeid for i in items if i.get_closest_marker(MARK) and _uses_database(i)]
    if wrong:
        raise pytest.UsageError(
            f"marked {MARK} but asks for a database ({DATABASE_FIXTURE}): " + ", ".join(wrong)
        )
    current = tier()
    report = os.environ.get("KARES_TIER_REPORT")
    if report:
        # every xdist worker collects the whole suite; each writes down its list
        worker = getattr(config, "workerinput", {}).get("workerid", "main")
        Path(f"{report}.collected-{worker}").write_text(
            json.dumps({"tier": current, "collected": [i.nodeid for i in items]})
        )
    dropped = [i for i in items if current not in tiers_of(i)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if current in tiers_of(i)]


def _uses_database(item: pytest.Item) -> bool:
    return DATABASE_FIXTURE in getattr(item, "fixturenames", ())


class Outcomes:
    """Writes down, per test, whether it ran (was called, not skipped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.outcomes[report.nodeid] = "skipped" if report.skipped else "ran"
        elif report.skipped or report.failed:
            self.outcomes.setdefault(report.nodeid, f"{report.outcome} in {report.when}")

    def pytest_sessionfinish(self) -> None:
        self.path.write_text(json.dumps({"tier": tier(), "outcomes": self.outcomes}, indent=0))


def check(report_files: list[str]) -> list[str]:
    """The tests that the reports say were collected but ran in no tier."""
    collected: set[str] = set()
    ran: dict[str, list[str]] = {}
    tiers = []
    for name in report_files:
        rep = json.loads(Path(name).read_text())
        tiers.append(rep["tier"])
        lists = sorted(Path(name).parent.glob(Path(name).name + ".collected-*"))
        if not lists:
            raise SystemExit(f"{name}: no list of collected tests beside it")
        for lst in lists:
            collected.update(json.loads(lst.read_text())["collected"])
        for nodeid, outcome in rep["outcomes"].items():
            if outcome == "ran":
                ran.setdefault(nodeid, []).append(rep["tier"])
    if sorted(tiers) != sorted(TIERS):
        raise SystemExit(f"expected one report per tier {TIERS}, got {tiers}")
    nowhere = sorted(collected - set(ran))
    both = sum(1 for t in ran.values() if len(t) == len(TIERS))
    print(
        f"{len(collected)} tests: {both} ran on both databases, "
        f"{len(collected) - both - len(nowhere)} on one only, {len(nowhere)} in no tier"
    )
    return nowhere


def main(argv: list[str]) -> int:
    nowhere = check(argv)
    for nodeid in nowhere:
        print(f"ran in no tier: {nodeid}", file=sys.stderr)
    return 1 if nowhere else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
