"""``tests/support/cli.py``: a ``kares`` command run in the test process answers as
the same command run as a process does, and leaves the test process as it was."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kares import cli as kares_cli
from kares import clock, crypto
from kares.config import get_settings
from tests.support import cli
from tests.test_cli import run_kares

pytestmark = pytest.mark.db_agnostic  # fresh SQLite files under tmp_path, no test database


@pytest.mark.parametrize(
    "args",
    [
        ("policy", "render", "--format", "json"),  # written to stdout's buffer, as bytes
        ("policy", "render", "--lang", "fr"),  # argparse's refusal: usage, exit 2
    ],
)
def test_in_process_answers_as_the_process_does(args: tuple[str, ...]) -> None:
    process = run_kares(*args, env={})
    here = cli.run(*args, env={})
    assert (here.returncode, here.stdout, here.stderr) == (
        process.returncode,
        process.stdout,
        process.stderr,
    )


def test_a_command_reads_its_environment_and_logs_to_its_stderr(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {"KARES_VAR_DIR": str(var), "KARES_LOG_LEVEL": "DEBUG"}
    args = ("retention", "report")  # sets up logging, builds a runtime; not migrated: exit 2
    r = cli.run(*args, env=env)
    assert r.returncode == 2 and "kares migrate" in r.stderr
    # the command's own log set-up, at its level, on its stderr (the event loop it starts)
    assert " DEBUG asyncio: Using selector" in r.stderr
    # migrated in-process at the place the environment names, then reported on
    r = cli.run("migrate", env=env)
    assert r.returncode == 0, r.stderr
    assert (var / "kares.db").exists()
    r = cli.run(*args, env=env)
    assert r.returncode == 0, r.stderr
    assert "location_fixes" in r.stdout


def test_the_test_process_is_left_as_it_was(tmp_path: Path) -> None:
    clock.advance(10 * 86400)
    offset = clock.utcnow() - datetime.now(UTC)
    ring = crypto._ring
    settings = get_settings()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stdout, stderr = sys.stdout, sys.stderr
    assert "KARES_VAR_DIR" not in os.environ
    try:
        r = cli.run("retention", "report", env={"KARES_VAR_DIR": str(tmp_path / "v")})
        assert r.returncode == 2  # it got as far as the database (not migrated)
        assert os.environ.get("KARES_VAR_DIR") is None
        assert crypto._ring is ring
        assert get_settings() is not settings  # read afresh, from this process's environment
        assert get_settings().var_dir == settings.var_dir
        assert (root.handlers, root.level) == (handlers, level)
        assert (sys.stdout, sys.stderr) == (stdout, stderr)
        assert abs(clock.utcnow() - datetime.now(UTC) - offset) < timedelta(hours=1)
    finally:
        clock.reset()


def test_a_command_runs_on_the_real_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def now(_args: object) -> int:
        print(clock.utcnow().isoformat())
        return 0

    monkeypatch.setattr(kares_cli, "_cmd_migrate", now)
    clock.advance(10 * 86400)
    try:
        r = cli.run("migrate", env={})
    finally:
        clock.reset()
    assert r.returncode == 0, r.stderr
    seen = datetime.fromisoformat(r.stdout.strip())
    assert abs(seen - datetime.now(UTC)) < timedelta(days=1)


def test_an_uncaught_exception_is_exit_1_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(_args: object) -> int:
        print("started")
        raise RuntimeError("boom")

    monkeypatch.setattr(kares_cli, "_cmd_migrate", boom)
    r = cli.run("migrate", env={})
    assert r.returncode == 1
    assert r.stdout == "started\n"
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.rstrip().endswith("RuntimeError: boom")


async def test_from_the_event_loop_too(tmp_path: Path) -> None:
    """A test's event loop cannot run a command's ``asyncio.run`` itself: both ways
    in run it in a thread of its own."""
    env = {"KARES_VAR_DIR": str(tmp_path / "v")}
    r = cli.run("migrate", env=env)
    assert r.returncode == 0, r.stderr
    r = await cli.arun("retention", "report", env=env)
    assert r.returncode == 0, r.stderr
