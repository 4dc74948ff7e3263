"""``kares serve --watch-port``: the kids'-watch listener's port on the command line."""

from __future__ import annotations

import pytest

from kares.cli import build_parser

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only


def test_serve_accepts_a_watch_port() -> None:
    args = build_parser().parse_args(["serve", "--watch-port", "5093"])
    assert args.command == "serve"
    assert args.watch_port == 5093


def test_the_watch_port_is_left_to_the_settings_by_default() -> None:
    args = build_parser().parse_args(["serve"])
    assert args.watch_port is None  # KARES_WATCH_PORT decides (0: off)


def test_the_watch_port_is_a_number() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--watch-port", "watches"])
