"""``kares stats``: a release printed (text and JSON) and recorded; ``kares stats budget``
shows what was spent; a release past the budget is a clear error and records nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import cli, live
from tests.test_cli import run_kares


@pytest.fixture
def kares_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    env = live.kares_env(tmp_path / "var", db_url)
    r = cli.run("migrate", env=env)
    assert r.returncode == 0, r.stderr
    return env


def test_stats_prints_records_and_keeps_to_the_budget(kares_env: dict[str, str]) -> None:
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = run_kares("stats", "--days", "2", "--json", env=kares_env)
    assert r.returncode == 0, r.stderr
    release = json.loads(r.stdout)
    assert [f["name"] for f in release["figures"]] == [
        "active_accounts",
        "feature_use",
        "trips",
        "distance_km",
        "watch_wearers",
    ]
    for fig in release["figures"]:
        assert fig["guarantee"]["k"] == 10
        assert 0 < fig["guarantee"]["epsilon"] <= 0.4  # KARES_STATS_EPSILON's default
        # nobody here: every cell is a group below k
        assert all(c["suppressed"] and c["value"] is None for c in fig["cells"])
    assert len([c for c in release["figures"][0]["cells"]]) == 2  # one per day
    assert 1.99 < release["epsilon_total"] <= 2.0

    r = cli.run("stats", "--days", "1", env=kares_env)
    assert r.returncode == 0, r.stderr
    assert "guarantee: k=10, epsilon=0.400" in r.stdout
    assert "suppressed (fewer than k people)" in r.stdout

    r = cli.run("stats", "budget", "--json", env=kares_env)
    assert r.returncode == 0, r.stderr
    budget = json.loads(r.stdout)
    assert len(budget["releases"]) == 2
    assert budget["spent"] == pytest.approx(sum(x["epsilon_total"] for x in budget["releases"]))
    assert budget["releases"][0]["id"] == release["id"]

    # a budget of 5 per period: the two releases spent 4, a third would take 6
    tight = {**kares_env, "KARES_STATS_BUDGET_EPSILON": "5"}
    r = cli.run("stats", env=tight)
    assert r.returncode == 2
    assert "stats.budget_exceeded" in r.stderr and "already spent" in r.stderr
    assert r.stdout == ""
    r = cli.run("stats", "--days", "99", env=kares_env)
    assert r.returncode == 2 and "stats.range_too_long" in r.stderr
