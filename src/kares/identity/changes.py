"""Whether any session or account may have stopped being usable: a counter.

A connection that lives long (a WebSocket, a Matrix sync's long-poll) used to
re-read its session at every event it was woken for, to end at once when the
session is revoked or its account can no longer use it. That is one query per
woken connection per event. Instead it keeps what it read with :data:`epoch`'s
value and reads again only when the counter moved (or after a few seconds, the
backstop for what this process cannot see: a change made by hand in the
database, or by a process without Redis).

The counter moves after the commit of any transaction that changed a session
or an account other than a session's touch (``last_seen_at``/``expires_at``
moved forward): SQLAlchemy's flush of such objects and its bulk ``UPDATE`` /
``DELETE`` statements on those tables are watched. The change is announced on
the hub as a ``sessions`` notice about nobody (no personal data), so other
processes (``kares.livebus``) move their counters too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as OrmSession

from kares import live
from kares.identity.auth import caller_for_session
from kares.identity.models import Account, Session

KIND = "sessions"
RECHECK_SECONDS = 5.0
_FLAG = "kares_identity_changed"
_TOUCH = frozenset({"last_seen_at", "expires_at"})
_WATCHED = (Session, Account)


class _Epoch:
    value = 0


epoch = _Epoch()


def _hear(notice: live.Notice) -> None:
    if notice.kind == KIND and notice.data is None:
        epoch.value += 1


live.hub.listen(_hear)


def _touch_only(cols: set[str]) -> bool:
    return bool(cols) and cols <= _TOUCH


@event.listens_for(OrmSession, "do_orm_execute")
def _bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mappers = state.all_mappers
    if not any(m.class_ in _WATCHED for m in mappers):
        return
    if state.is_update:
        values: Any = getattr(state.statement, "_values", None) or {}
        cols = {str(getattr(k, "key", k)) for k in values}
        if _touch_only(cols):
            return
    state.session.info[_FLAG] = True


@event.listens_for(OrmSession, "before_flush")
def _flushed(session: OrmSession, _ctx: Any, _instances: Any) -> None:
    if session.info.get(_FLAG):
        return
    for obj in session.deleted:
        if isinstance(obj, _WATCHED):
            session.info[_FLAG] = True
            return
    for obj in session.dirty:
        if isinstance(obj, _WATCHED):
            st: Any = inspect(obj)
            changed = {a.key for a in st.attrs if a.history.has_changes()}
            if changed and not _touch_only(changed):
                session.info[_FLAG] = True
                return


@event.listens_for(OrmSession, "after_commit")
def _committed(session: OrmSession) -> None:
    if not session.info.pop(_FLAG, False):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a thread without a loop (a migration, a script)
        epoch.value += 1
        return
    live.hub.deliver(kind=KIND, about="")  # here (through _hear) and elsewhere


@event.listens_for(OrmSession, "after_rollback")
def _rolled_back(session: OrmSession) -> None:
    session.info.pop(_FLAG, None)


class SessionCheck:
    """Whether a long-lived connection's session is still live, read again at a
    wake only when a session or account changed since the last reading (here, or
    in another process through the bridge), or after :data:`RECHECK_SECONDS`
    (what no process announced, and a session that expired by itself)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.epoch = epoch.value
        self.at = time.monotonic()  # read when the connection was authenticated

    def due(self) -> bool:
        return epoch.value != self.epoch or time.monotonic() - self.at >= RECHECK_SECONDS

    async def run(self, s: Any) -> bool:
        """Read it now: False once the session ended."""
        now = epoch.value  # before the read: a change during it makes it due again
        if await caller_for_session(s, self.session_id) is None:
            return False
        self.epoch, self.at = now, time.monotonic()
        return True
