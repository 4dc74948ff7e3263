"""``kares ARGS`` run inside the test process, as if it were a process of its own.

A ``python -m kares ...`` subprocess spends about two seconds importing the
service before it does anything; a test that runs ten commands waits twenty
seconds for imports. :func:`run` calls the command's entry point
(``kares.cli.main``) with the arguments instead, and gives back what
``subprocess.run(..., capture_output=True, text=True)`` would have: the exit
code (argparse's exits and an uncaught exception included, the traceback on
stderr), and what the command wrote to stdout and stderr, its log lines
included.

What a new process would not inherit from the test is set aside while the
command runs and put back afterwards:

* the environment: ``env`` on top of this process's, as the subprocess got it;
* the settings (``get_settings`` reads the environment once) and the catalogs
  read so far (``catalog.load``), so the command reads both afresh;
* the service clock: a command runs on the real clock, whatever the test moved;
* the data key ring the command installs (``Runtime.build``), the privacy
  versions and the tracker credentials it caches, and the logging set-up
  (``setup_logging``): the test's app keeps its own;
* ``sys.stdout`` and ``sys.stderr``, and ``sys.stdin`` (empty, not a terminal).

One command runs at a time, in a thread of its own (the commands start their own
event loop with ``asyncio.run``, which cannot run inside the test's loop); the
calling thread waits for it, as ``subprocess.run`` would. :func:`arun` waits in
a worker thread instead, leaving the test's event loop free, for a command
that must wait for something the test's loop does.

What only a real process shows stays a subprocess: that the console script and
``python -m kares`` start at all (one smoke test per command group, with
``tests.test_cli.run_kares``), signals, and a server that other processes talk to.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping

import anyio

_one_at_a_time = threading.Lock()

# loggers whose handlers ``kares.logs.setup_logging`` replaces
_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


def run(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kares ARGS`` with ``env`` on top of this process's environment: its exit
    code, stdout and stderr (as ``subprocess.run(..., text=True)`` gives them)."""
    argv = list(args)
    done: list[subprocess.CompletedProcess[str]] = []
    with _one_at_a_time:
        worker = threading.Thread(
            target=lambda: done.append(_run_here(argv, dict(env or {}))),
            name="kares-cli",
        )
        worker.start()
        worker.join()
    if not done:  # _run_here catches everything: only a crash of the thread itself
        raise RuntimeError(f"kares {' '.join(argv)}: the command's thread died")
    return done[0]


async def arun(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """:func:`run` from a worker thread, the test's event loop running meanwhile."""
    return await anyio.to_thread.run_sync(lambda: run(*args, env=env))


def _run_here(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out, err = _stream(), _stream()
    with _environment(env), _process_state(), _logging_set_aside():
        saved = sys.stdin, sys.stdout, sys.stderr
        # no terminal to ask on, and nothing to read
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(""), out, err
        try:
            code = _main(argv)
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
    return subprocess.CompletedProcess(["kares", *argv], code, _text(out), _text(err))


def _main(argv: list[str]) -> int:
    """What the console script does (``raise SystemExit(main())``), and how the
    interpreter turns its end into an exit code."""
    from kares.cli import main

    try:
        raise SystemExit(main(argv))
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _stream() -> io.TextIOWrapper:
    """A text stream with a ``buffer`` (``kares policy render`` writes bytes)."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    raw = stream.buffer
    assert isinstance(raw, io.BytesIO)
    # decoded with universal newlines, as subprocess.run(text=True) does
    return io.TextIOWrapper(io.BytesIO(raw.getvalue()), encoding="utf-8").read()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _process_state() -> Iterator[None]:
    from kares import clock, crypto
    from kares.config import get_settings
    from kares.location import trackers
    from kares.privacy import catalog
    from kares.privacy import service as privacy

    offset = clock._offset
    ring = crypto._ring
    versions = dict(privacy._versions)
    credentials = dict(trackers._by_session)
    get_settings.cache_clear()
    catalog.load.cache_clear()
    clock.reset()
    try:
        yield
    finally:
        get_settings.cache_clear()
        catalog.load.cache_clear()
        clock._offset = offset
        crypto._ring = ring
        privacy._versions.clear()
        privacy._versions.update(versions)
        trackers._by_session.clear()
        trackers._by_session.update(credentials)


@contextlib.contextmanager
def _logging_set_aside() -> Iterator[None]:
    """No handlers while the command runs (as in a new process, whose
    ``setup_logging`` adds its own, writing to the command's stderr); the test's
    put back afterwards."""
    saved = []
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.level, lg.propagate))
        lg.handlers = []
    root = logging.getLogger()
    root.setLevel(logging.WARNING)  # a new process's root level
    try:
        yield
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers = handlers
            lg.setLevel(level)
            lg.propagate = propagate
