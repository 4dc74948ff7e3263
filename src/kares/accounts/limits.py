"""Limits on password sign-in: a number's lockout, and hourly limits per number
and per client address (policy 1.4; docs/ACCOUNTS.md, "Password").

Every attempt is counted *before* its password is checked, by one statement per
row (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``): the database adds the
attempts of a burst one after another and hands each its own count, and that
count alone decides whether its password is checked at all. So however many
guesses arrive at once, no more passwords are checked than the limits allow, on
SQLite and PostgreSQL alike. A success takes its attempt back.

A number is counted by a keyed hash of the number itself, whether or not an
account has it: an unknown number is counted, locked and refused exactly like
a registered one, so the answers never tell which numbers have accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, delete, null, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kares import crypto
from kares.accounts.models import PasswordLimit
from kares.config import Settings
from kares.db import Statement, UTCDateTime
from kares.errors import Problem, retry_after

WINDOW = timedelta(hours=1)

NUMBER = "number"
IP = "ip"


def _key(scope: str, value: str) -> str:
    return crypto.blind_index(value, purpose=f"password-limit-{scope}")


def _count_statement(dialect: str, *, lockout: bool) -> Statement:
    """Count one attempt on a row (made by the first attempt), unless the row
    refuses it: a lock still running (numbers), or the hourly window full. A
    refused attempt changes nothing and gets no row back; a counted one gets the
    row as it left it. The lockout's failures in a row start again after a lock
    ran out, and the window starts again when its hour is over."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite_insert
    table: Any = PasswordLimit.__table__
    c = table.c
    now = bindparam("now", type_=UTCDateTime())
    ins = insert(table).values(
        scope=bindparam("scope"),
        key=bindparam("key"),
        failures=1,
        locked_until=bindparam("first_lock", type_=UTCDateTime()),
        window_started_at=now,
        window_count=1,
    )
    fresh = c.window_started_at <= bindparam("window_floor", type_=UTCDateTime())
    values: dict[str, Any] = {
        "window_started_at": case((fresh, now), else_=c.window_started_at),
        "window_count": case((fresh, 1), else_=c.window_count + 1),
    }
    admits = or_(fresh, c.window_count < bindparam("per_hour", type_=Integer()))
    if lockout:
        # counted only when no lock is running, so a lock here has run out
        failures = case((c.locked_until.is_not(None), 1), else_=c.failures + 1)
        values["failures"] = failures
        values["locked_until"] = case(
            (
                failures >= bindparam("max_failures", type_=Integer()),
                bindparam("lock_end", type_=UTCDateTime()),
            ),
            else_=null(),
        )
        admits = and_(or_(c.locked_until.is_(None), c.locked_until <= now), admits)
    stmt = ins.on_conflict_do_update(
        index_elements=["scope", "key"], set_=values, where=admits
    ).returning(c.failures, c.window_started_at)
    return Statement(stmt)


_COUNT = {
    (d, lockout): _count_statement(d, lockout=lockout)
    for d in ("sqlite", "postgresql")
    for lockout in (False, True)
}


@dataclass(frozen=True)
class Attempt:
    """One counted attempt: where it was counted, and its refusal if any."""

    number_key: str
    ip_key: str
    number_window: datetime | None
    ip_window: datetime | None
    refusal: Problem | None = None
    reason: str | None = None  # for the login record: "locked", "number_limit", "ip_limit"
    locks: bool = False  # a wrong password in this attempt locks the number
    purge_due: bool = False  # the address's first attempt this hour: time to tidy up


async def _count(
    s: AsyncSession, scope: str, key: str, *, per_hour: int, cfg: Settings, now: datetime
) -> Any:
    lockout = scope == NUMBER
    lock_end = now + timedelta(seconds=cfg.password_lockout_seconds)
    params = {
        "scope": scope,
        "key": key,
        "now": now,
        "first_lock": lock_end if lockout and cfg.password_max_failures <= 1 else None,
        "window_floor": now - WINDOW,
        "per_hour": per_hour,
    }
    if lockout:
        params.update(max_failures=cfg.password_max_failures, lock_end=lock_end)
    return await _COUNT[s.get_bind().dialect.name, lockout].first(s, params)


async def _row(s: AsyncSession, scope: str, key: str) -> PasswordLimit | None:
    return (
        await s.execute(
            select(PasswordLimit).where(PasswordLimit.scope == scope, PasswordLimit.key == key)
        )
    ).scalar_one_or_none()


async def count_attempt(
    s: AsyncSession, cfg: Settings, *, e164: str, ip: str, now: datetime
) -> Attempt:
    """Count one password attempt against the client's address and the number,
    in the caller's transaction (which the caller commits before it checks the
    password). When a limit refuses it, the attempt carries the refusal and is
    counted nowhere: the address's limit first, then the number's lock, then the
    number's hourly limit."""
    ip_key, number_key = _key(IP, ip), _key(NUMBER, e164)
    by_ip = await _count(s, IP, ip_key, per_hour=cfg.password_per_ip_per_hour, cfg=cfg, now=now)
    if by_ip is None:
        row = await _row(s, IP, ip_key)
        ends = row.window_started_at + WINDOW if row is not None else now
        return Attempt(
            number_key,
            ip_key,
            None,
            None,
            refusal=Problem(
                429,
                "auth.ip_limit",
                "Too many wrong passwords from this network in the last hour. "
                "Sign in with an SMS code, or try again later.",
                headers=retry_after((ends - now).total_seconds()),
            ),
            reason="ip_limit",
        )
    by_number = await _count(
        s, NUMBER, number_key, per_hour=cfg.password_per_number_per_hour, cfg=cfg, now=now
    )
    if by_number is not None:
        return Attempt(
            number_key,
            ip_key,
            by_number.window_started_at,
            by_ip.window_started_at,
            locks=by_number.failures >= cfg.password_max_failures,
            purge_due=by_ip.window_started_at == now,
        )
    # refused by the number: the address's count of it is taken back
    await _take_back(s, IP, ip_key, by_ip.window_started_at)
    row = await _row(s, NUMBER, number_key)
    refused = Attempt(number_key, ip_key, None, None)
    if row is not None and row.locked_until is not None and row.locked_until > now:
        return _refused(
            refused,
            Problem(
                423,
                "auth.locked",
                "Too many wrong passwords. Sign in with an SMS code, or try again later.",
                headers=retry_after((row.locked_until - now).total_seconds()),
            ),
            "locked",
        )
    ends = row.window_started_at + WINDOW if row is not None else now
    return _refused(
        refused,
        Problem(
            429,
            "auth.number_limit",
            "Too many wrong passwords for this number in the last hour. "
            "Sign in with an SMS code, or try again later.",
            headers=retry_after((ends - now).total_seconds()),
        ),
        "number_limit",
    )


def _refused(a: Attempt, problem: Problem, reason: str) -> Attempt:
    return Attempt(a.number_key, a.ip_key, a.number_window, a.ip_window, problem, reason)


async def _take_back(s: AsyncSession, scope: str, key: str, window: datetime | None) -> None:
    """Take one attempt back from a row's hourly count, if it is still the window
    the attempt was counted in."""
    if window is None:
        return
    c = PasswordLimit.__table__.c
    await s.execute(
        update(PasswordLimit)
        .where(c.scope == scope, c.key == key, c.window_started_at == window, c.window_count > 0)
        .values(window_count=c.window_count - 1)
        .execution_options(synchronize_session=False)
    )


async def succeeded(s: AsyncSession, a: Attempt) -> None:
    """The right password: this attempt was no failure, so it is taken back from
    both hourly counts. In the order :func:`count_attempt` writes them (the
    address's row, then the number's): two transactions that take the same rows
    in opposite orders deadlock on PostgreSQL."""
    await _take_back(s, IP, a.ip_key, a.ip_window)
    await _take_back(s, NUMBER, a.number_key, a.number_window)


async def clear_lock(s: AsyncSession, e164: str) -> None:
    """A sign-in of the number's account (by any method) ends its lockout and
    starts its failures in a row again; its hourly count stays."""
    c = PasswordLimit.__table__.c
    await s.execute(
        update(PasswordLimit)
        .where(
            c.scope == NUMBER,
            c.key == _key(NUMBER, e164),
            (c.failures > 0) | c.locked_until.is_not(None),
        )
        .values(failures=0, locked_until=None)
        .execution_options(synchronize_session=False)
    )


async def purge(s: AsyncSession, now: datetime) -> None:
    """Delete rows that no longer limit anything (window over, no lock running).
    Rows another transaction holds are skipped (PostgreSQL), so this never waits
    on, or deadlocks with, an attempt being counted. Not committed."""
    c = PasswordLimit.__table__.c
    stale = (
        select(c.scope, c.key)
        .where(
            c.window_started_at <= now - WINDOW,
            (c.locked_until.is_(None)) | (c.locked_until <= now),
        )
        .with_for_update(skip_locked=True)
    )
    await s.execute(
        delete(PasswordLimit)
        .where(tuple_(c.scope, c.key).in_(stale))
        .execution_options(synchronize_session=False)
    )
