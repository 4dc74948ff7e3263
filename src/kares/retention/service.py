"""Retention (policy 4.1): what the catalog keeps for a number of days goes after them.

The engine walks the tables' declarations, like the data map does: each personal
column's category (``kares.fields.personal``) and its ``retention`` in the
catalog, and each table's ``collected`` column (``kares.fields.table_info``).
It names no domain; a domain that derives data from a table registers what must
follow a removal (``kares.fields.expiry_hook``) and it runs in the same
transaction.

**Rules.** One rule per table and retention length:

* *days rules*: for the categories of a table kept ``days`` days, the rows whose
  ``collected`` time is more than ``days`` before now. What happens to them:

  - ``then: anonymise``: the category's columns are set to NULL and the row stays.
  - ``then: delete``: the category's data goes. If every one of its columns may be
    NULL and the row holds personal data kept longer (a consent receipt's choice,
    kept for the account's life, next to the session it was given in, kept 180
    days), the columns are set to NULL and the row stays. Otherwise the row is
    deleted: a column that may not be NULL means the row is not meaningful
    without it (a login event without its address and time is no record of a
    login), so the longer-kept columns of that row go with it (a login event's
    device model: the device itself is kept in ``devices``).

* *lifetime rules*: short-lived rows (codes, tickets, rate-limit counters) declare
  ``lifetime={column: age}``; a row is deleted once every listed column is NULL or
  older than its age.

**Legal holds.** Rows about an account under a legal hold (its subject column, or
an ``also_about`` column) are left alone by every rule. Tables about no account
(codes, tickets and counters keyed by hashes) cannot be held.

**Batches.** Each rule walks its table in primary-key order, reading the keys of
up to ``batch_size`` expired rows without a lock, then removing them in one short
transaction that checks the rule again (a row held or changed meanwhile stays)
and commits. A run stopped at any point leaves only whole batches done; the next
run finds what is left by the same rule, so nothing is removed twice nor left
behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    MetaData,
    Table,
    and_,
    delete,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.db import Base
from kares.fields import PI_INFO_KEY, Expired, expiry_hooks
from kares.identity.models import Account
from kares.identity.service import find_by_phone, parse_phone
from kares.privacy import ports
from kares.privacy.catalog import Catalog
from kares.retention.models import LegalHold

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.retention")

DAY_MS = 86_400_000
DELETE, ANONYMISE = "delete", "anonymise"


class RetentionPlanError(ValueError):
    """A table's declarations do not let retention enforce the catalog."""


@dataclass(frozen=True)
class Rule:
    """What goes from one table, and when."""

    table: Table
    categories: tuple[str, ...]
    action: str  # "delete" the row, or "anonymise": set ``columns`` to NULL
    columns: tuple[str, ...]  # the expiring columns
    days: int | None = None  # days rule
    collected: str | None = None
    unit: str = "time"
    lifetime: tuple[tuple[str, timedelta], ...] = ()  # lifetime rule

    @property
    def name(self) -> str:
        return f"{self.table.name}:{self.days}d" if self.days else f"{self.table.name}:lifetime"

    @property
    def kept(self) -> str:
        if self.days is not None:
            return f"{self.days} days after {self.collected}"
        return ", ".join(f"{c} + {_age(a)}" for c, a in self.lifetime)

    def cutoff(self, now: datetime) -> Any:
        """The value of ``collected`` before which a row is expired."""
        assert self.days is not None
        at = now - timedelta(days=self.days)
        if self.unit == "time":
            return at
        ms = int(at.timestamp() * 1000)
        return ms if self.unit == "ms" else ms // DAY_MS

    def cutoff_ms(self, now: datetime) -> int:
        if self.days is None:
            return int(now.timestamp() * 1000)
        return int((now - timedelta(days=self.days)).timestamp() * 1000)

    def expired(self, now: datetime) -> ColumnElement[bool]:
        c = self.table.c
        if self.days is None:
            return and_(
                true(), *(or_(c[col].is_(None), c[col] <= now - age) for col, age in self.lifetime)
            )
        assert self.collected is not None
        due = c[self.collected] < self.cutoff(now)
        if self.action == ANONYMISE:  # what was nulled out is done
            due = and_(due, or_(*(c[col].is_not(None) for col in self.columns)))
        return due

    def held(self) -> ColumnElement[bool]:
        """Rows about an account under a legal hold."""
        cols = _account_columns(self.table)
        if not cols:
            return false()
        h = LegalHold.__table__.c
        return or_(
            *(
                exists().where(h.account_id == self.table.c[col], h.released_at.is_(None))
                for col in cols
            )
        )

    def to_time(self, value: Any) -> datetime | None:
        """When a row with ``collected == value`` expires."""
        if value is None or self.days is None:
            return None
        keep = timedelta(days=self.days)
        if self.unit == "time":
            return value + keep
        ms = int(value) if self.unit == "ms" else (int(value) + 1) * DAY_MS
        return datetime.fromtimestamp(ms / 1000, UTC) + keep


def _age(a: timedelta) -> str:
    s = int(a.total_seconds())
    if s % 86400 == 0:
        return f"{s // 86400}d"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{s}s"


def _account_columns(table: Table) -> list[str]:
    info = table.info or {}
    cols = [info.get("subject_column"), *info.get("also_about", [])]
    return [c for c in cols if c]


def _metadata() -> MetaData:
    return Base.metadata


def plan(cat: Catalog, metadata: MetaData | None = None) -> list[Rule]:
    """Every rule the declarations and the catalog make, in table order; raises
    :class:`RetentionPlanError` naming the table that cannot be enforced."""
    md = metadata if metadata is not None else _metadata()
    rules: list[Rule] = []
    for table in sorted(md.tables.values(), key=lambda t: t.name):
        info = table.info or {}
        by_days: dict[tuple[int, str], list[tuple[str, str]]] = {}
        longest = 0.0  # the longest retention of any personal column
        for col in table.columns:
            key = col.info.get(PI_INFO_KEY)
            if key is None:
                continue
            category = cat.categories.get(str(key))
            if category is None:
                raise RetentionPlanError(f"{table.name}.{col.name}: unknown category {key!r}")
            ret = category.retention
            longest = max(longest, ret.limit)
            if ret.days is not None:
                by_days.setdefault((ret.days, ret.then), []).append((str(key), col.name))
        collected = info.get("collected")
        unit = info.get("collected_unit", "time")
        if by_days and not collected:
            raise RetentionPlanError(
                f"{table.name}: holds data kept for a number of days but declares no "
                "collected=... column in table_info"
            )
        if collected and collected not in table.c:
            raise RetentionPlanError(f"{table.name}: collected={collected!r} is not a column")
        for (days, then), cols in sorted(by_days.items()):
            names = tuple(dict.fromkeys(c for _, c in cols))
            nullable = all(table.c[c].nullable and not table.c[c].primary_key for c in names)
            if then == ANONYMISE:
                if not nullable:
                    raise RetentionPlanError(
                        f"{table.name}: {', '.join(names)} must be anonymised after {days} "
                        "days but cannot be NULL"
                    )
                action = ANONYMISE
            else:
                action = ANONYMISE if nullable and longest > days else DELETE
            rules.append(
                Rule(
                    table=table,
                    categories=tuple(sorted({k for k, _ in cols})),
                    action=action,
                    columns=names,
                    days=days,
                    collected=collected,
                    unit=unit,
                )
            )
        lifetime = info.get("lifetime") or {}
        for col in lifetime:
            if col not in table.c:
                raise RetentionPlanError(f"{table.name}: lifetime column {col!r} is not a column")
        if lifetime:
            rules.append(
                Rule(
                    table=table,
                    categories=(),
                    action=DELETE,
                    columns=(),
                    lifetime=tuple(lifetime.items()),
                )
            )
    return rules


# --- legal holds ------------------------------------------------------------------------


async def account_by_phone(s: AsyncSession, rt: Runtime, phone: str) -> Account | None:
    return await find_by_phone(s, parse_phone(phone, rt.settings.default_region))


async def hold(s: AsyncSession, *, account_id: str, reason: str) -> tuple[LegalHold, bool]:
    """Put the account under a legal hold (the one in force, if there is one: its
    reason is kept). Returns the hold and whether it is new. Not committed."""
    current = await active_hold(s, account_id)
    if current is not None:
        return current, False
    h = LegalHold(account_id=account_id, reason=reason, set_at=clock.utcnow())
    s.add(h)
    await s.flush()
    return h, True


async def release(s: AsyncSession, *, account_id: str) -> LegalHold | None:
    """End the account's hold in force (None if there is none; two set at once both
    end). Not committed."""
    current = await active_hold(s, account_id)
    if current is not None:
        await s.execute(
            update(LegalHold)
            .where(LegalHold.account_id == account_id, LegalHold.released_at.is_(None))
            .values(released_at=clock.utcnow())
            .execution_options(synchronize_session="fetch")
        )
        await s.refresh(current)
    return current


async def active_hold(s: AsyncSession, account_id: str) -> LegalHold | None:
    q = select(LegalHold).where(LegalHold.account_id == account_id, LegalHold.released_at.is_(None))
    return (await s.execute(q.limit(1))).scalar_one_or_none()


async def _hold_reason(s: AsyncSession, account_id: str) -> str | None:
    h = await active_hold(s, account_id)
    return None if h is None else f"under a legal hold since {h.set_at.date().isoformat()}"


ports.register_hold_check(_hold_reason)


# --- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    rule: Rule
    due: int  # rows that would go (or be anonymised) now
    held: int  # rows that would, but a legal hold keeps them
    next_at: datetime | None  # when the next row not yet due will be


async def report(rt: Runtime, rules: Sequence[Rule], *, now: datetime | None = None) -> list[Line]:
    """A dry run: per rule, what would go now and when the next rows expire."""
    now = now or clock.utcnow()
    out = []
    async with rt.db.sessions() as s:
        for rule in rules:
            t = rule.table
            due = rule.expired(now)
            held = rule.held()
            n_due = await _count(s, t, and_(due, not_(held)))
            n_held = await _count(s, t, and_(due, held))
            next_at: datetime | None = None
            if rule.days is not None:
                assert rule.collected is not None
                c = t.c[rule.collected]
                first = (await s.execute(select(func.min(c)).where(c >= rule.cutoff(now)))).scalar()
                next_at = rule.to_time(first)
            else:
                col, age = rule.lifetime[0]
                c = t.c[col]
                first = (
                    await s.execute(select(func.min(c)).where(c > now - age, not_(due)))
                ).scalar()
                next_at = first + age if first is not None else None
            out.append(Line(rule, n_due, n_held, next_at))
    return out


async def _count(s: AsyncSession, t: Table, where: ColumnElement[bool]) -> int:
    return int((await s.execute(select(func.count()).select_from(t).where(where))).scalar_one())


def format_report(lines: Sequence[Line], now: datetime) -> str:
    head = ("category", "table", "kept", "then", "due now", "held", "next expires")
    rows = [head]
    for ln in lines:
        r = ln.rule
        rows.append(
            (
                ", ".join(r.categories) or "(short-lived)",
                r.table.name,
                r.kept,
                "anonymise " + ",".join(r.columns) if r.action == ANONYMISE else "delete row",
                str(ln.due),
                str(ln.held),
                ln.next_at.strftime("%Y-%m-%d %H:%M UTC") if ln.next_at else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    text = [f"retention report at {now:%Y-%m-%d %H:%M:%S} UTC (dry run: nothing changed)"]
    for row in rows:
        text.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(text)


# --- the run ----------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one run removed, per rule name, and how long its write transactions were."""

    removed: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_batch_s: float = 0.0
    more: bool = False  # stopped by its deadline or batch limit with work left

    @property
    def total(self) -> int:
        return sum(self.removed.values())


class _Stop(Exception):
    pass


async def run(
    rt: Runtime,
    rules: Sequence[Rule],
    *,
    now: datetime | None = None,
    batch_size: int | None = None,
    deadline: float | None = None,
    max_batches: int | None = None,
    pause_s: float | None = None,
) -> RunResult:
    """Remove what is expired by every rule, batch by batch, each batch committed on
    its own. Stops early (``more``) once ``time.monotonic()`` passes ``deadline`` or
    after ``max_batches`` batches; the next run carries on from there."""
    now = now or clock.utcnow()
    size = batch_size or rt.settings.retention_batch_size
    pause = rt.settings.retention_pause_seconds if pause_s is None else pause_s
    result = RunResult()
    try:
        for rule in rules:
            await _run_rule(rt, rule, now, size, pause, result, deadline, max_batches)
    except _Stop:
        result.more = True
    if result.total:
        log.info(
            "retention removed %d rows in %d batches (%s)",
            result.total,
            result.batches,
            ", ".join(f"{k}={v}" for k, v in result.removed.items() if v),
        )
    return result


async def _run_rule(
    rt: Runtime,
    rule: Rule,
    now: datetime,
    size: int,
    pause: float,
    result: RunResult,
    deadline: float | None,
    max_batches: int | None,
) -> None:
    t = rule.table
    pk = list(t.primary_key.columns)
    key = pk[0] if len(pk) == 1 else tuple_(*pk)
    subject = (t.info or {}).get("subject_column")
    hooks = expiry_hooks(t.name)
    carried = [
        t.c[subject] if subject else literal(None),
        t.c[rule.collected] if rule.collected else literal(None),
    ]
    due = and_(rule.expired(now), not_(rule.held()))

    def value(row: Sequence[Any]) -> Any:
        return row[0] if len(pk) == 1 else tuple_(*row)

    after: Any = None  # the batches so far covered the keys up to this one
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise _Stop
        if max_batches is not None and result.batches >= max_batches:
            raise _Stop
        # the batch's keys, read without taking the write lock (the scan that finds
        # there are no more happens here too, never under the lock): the batch is
        # every expired row with a key in (after, last]
        todo = due if after is None else and_(due, key > after)
        async with rt.db.sessions() as s:
            keys = (await s.execute(select(*pk).where(todo).order_by(*pk).limit(size))).all()
        if not keys:
            return
        last = keys[-1]
        batch = and_(todo, key <= value(last))
        started = time.monotonic()
        async with rt.db.sessions() as s:
            stmt: Any
            if rule.action == DELETE:
                stmt = delete(t).where(batch)
            else:
                stmt = update(t).where(batch).values({c: None for c in rule.columns})
            stmt = stmt.execution_options(synchronize_session=False)
            if hooks:  # they are told which rows went
                rows = [
                    {"subject": r[0], "collected": r[1]}
                    for r in (await s.execute(stmt.returning(*carried)))
                ]
                n = len(rows)
                if n:
                    expired = Expired(t.name, rule.action, rule.cutoff_ms(now), rows)
                    for hook in hooks:
                        await hook(s, expired)
            else:
                n = (await s.execute(stmt)).rowcount  # type: ignore[attr-defined]
            await s.commit()
        held_for = time.monotonic() - started
        result.batches += 1
        result.longest_batch_s = max(result.longest_batch_s, held_for)
        result.removed[rule.name] = result.removed.get(rule.name, 0) + n
        if len(keys) < size:
            return
        after = value(last)
        # what else this process has to do runs between batches, and a writer of
        # another process (which asks for the lock every few ms) gets its turn
        await asyncio.sleep(pause)
