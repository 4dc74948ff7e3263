"""What follows a change runs after its commit (Zulip's ``on_commit``).

An action writes everything it changes in one transaction (the inbox entries
and the jobs it enqueues included) and registers with :func:`on_commit` what
must happen once that transaction is durable: a live notice to connected
clients, waking the job worker, later a message to other processes. When the
transaction rolls back, nothing registered runs, so no client ever hears of a
change that did not happen.

Callbacks run right after the commit, in the order they were registered, and
must be quick: they may not touch the database (anything longer is a job,
enqueued inside the transaction) and their errors are logged, never raised
into the action that already committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from kares.db import Tx

log = logging.getLogger("kares.events")

_KEY = "kares_on_commit"
Callback = Callable[[], object]


def on_commit(s: AsyncSession | Session | Tx, fn: Callback, *, key: object = None) -> None:
    """Run ``fn`` once the session's current transaction commits. With ``key``,
    a callback is registered once per transaction however often it is asked."""
    if isinstance(s, Tx):
        s.after_commit(key if key is not None else object(), fn)
        return
    sync = s.sync_session if isinstance(s, AsyncSession) else s
    pending: dict[object, Callback] = sync.info.setdefault(_KEY, {})
    pending.setdefault(key if key is not None else object(), fn)


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for fn in session.info.pop(_KEY, {}).values():
        try:
            fn()
        except Exception:
            log.exception("after-commit callback %r failed", fn)


@sa_event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_KEY, None)


# --- what happened, inside the transaction ------------------------------------------------

# A lower domain says "this happened" (a member joined a family, an SOS was raised)
# inside its transaction with :func:`emit`; a higher domain that must act on it in
# the same transaction (the messaging domain writes a system notice) registers with
# :func:`listen`. The lower domain never imports the higher one, and nothing is
# written unless the action commits.
Listener = Callable[..., Awaitable[None]]
_listeners: dict[str, list[Listener]] = {}


def listen(name: str) -> Callable[[Listener], Listener]:
    """Register ``fn(session, **facts)`` to run when ``name`` is emitted."""

    def register(fn: Listener) -> Listener:
        _listeners.setdefault(name, []).append(fn)
        return fn

    return register


async def emit(s: AsyncSession, name: str, **facts: Any) -> None:
    """Run every listener of ``name`` in the caller's transaction, in order."""
    for fn in _listeners.get(name, ()):
        await fn(s, **facts)
