"""The house stands in layers (docs/ARCHITECTURE.md): the import-linter
contracts in pyproject.toml hold for the code as it is, imports inside
functions and under TYPE_CHECKING included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from importlinter import cli

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.db_agnostic


def test_imports_run_one_way_and_no_package_has_a_loop() -> None:
    # in a process of its own: import-linter configures logging with dictConfig,
    # which disables every logger that exists (Kares' own included), so a later
    # test in this process would see no log record at all
    done = subprocess.run(
        [sys.executable, "-c", _LINT, str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != cli.EXIT_STATUS_SUCCESS:
        pytest.fail(
            "an import-linter contract is broken: run `lint-imports` to see which\n"
            + done.stdout[-3000:]
            + done.stderr[-3000:]
        )


_LINT = (
    "import sys; from importlinter import cli; "
    "sys.exit(cli.lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"
)


def test_the_layers_picture_in_the_docs_is_the_one_the_code_draws() -> None:
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["layers.py", "--check"]
    try:
        layers = runpy.run_path(str(ROOT / "scripts" / "layers.py"))
        assert layers["main"]() == 0, "docs/ARCHITECTURE.md: run scripts/layers.py to redraw"
    finally:
        sys.argv = argv
