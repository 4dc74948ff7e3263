"""Where a person's data is: every table's rows about one account, from the declarations.

Export, deletion, retention and the explanation (policy 5.1-5.6) all need the
same answer to "which rows of which table are about this account?". It is
read from the tables themselves, never written per feature, so a new table is
covered the moment it declares its columns (``kares.fields.table_info``):

- **subject**: the table names the account in its ``subject`` column;
- **also**: a further column names an account the rows also concern
  (``also_about``: a guardian, the member who acknowledged an SOS). The rows
  belong to someone else; this account appears in them;
- **through**: a table about no account directly, whose foreign key points at
  a table that has a subject (``device_permissions.device_id`` ->
  ``devices.account_id``), follows it (several steps if need be);
- **keyed**: a table keyed by a blind index of one of the account's values
  (``otp_challenges.phone_hash`` is ``blind_index(phone, purpose="phone")``)
  declares it with ``keyed=...``; the value is read from the account's own
  row, so the engine needs no code of the domain that wrote it.

A table with personal columns that none of these reaches must say why in
``why`` (a sign-in ticket linked to no account yet, a rate limit per network
address); retention alone removes such rows. ``unreached`` lists them and a
test keeps that list honest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Column, ColumnElement, MetaData, Table, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import crypto
from kares.db import Base
from kares.fields import PI_INFO_KEY, Keyed

Role = Literal["subject", "also"]
How = Literal["subject", "also", "through", "keyed"]


@dataclass(frozen=True)
class Reach:
    """One way the rows of ``table`` can be about an account."""

    table: Table
    how: How
    column: str  # the column that names the account, the foreign key, or the keyed column
    parent: Reach | None = None  # for "through": how the referenced table is reached
    keyed: Keyed | None = None
    personal: tuple[Column[Any], ...] = field(default=(), compare=False)

    @property
    def role(self) -> Role:
        """Whose rows: the account's own ("subject") or someone else's that
        name it ("also")."""
        if self.how == "also":
            return "also"
        if self.how == "through":
            assert self.parent is not None
            return self.parent.role
        if self.how == "keyed":
            assert self.keyed is not None
            return self.keyed.role
        return "subject"

    def where(self, account_id: str, values: dict[str, str | None]) -> ColumnElement[bool]:
        """The rows about ``account_id``; ``values`` holds the account's own
        values that keyed columns index (``values_of``)."""
        t = self.table
        if self.how in ("subject", "also"):
            return t.c[self.column] == account_id
        if self.how == "through":
            assert self.parent is not None
            fk = next(iter(t.c[self.column].foreign_keys))
            target = fk.column
            inner = select(target).where(self.parent.where(account_id, values))
            return t.c[self.column].in_(inner.scalar_subquery())
        assert self.keyed is not None
        raw = values.get(self.keyed.value)
        if raw is None:
            return false()
        digest = crypto.blind_index(raw, purpose=self.keyed.purpose)
        cond = t.c[self.column] == digest
        for col, want in self.keyed.when:
            cond = cond & (t.c[col] == want)
        return cond


def _personal(table: Table) -> tuple[Column[Any], ...]:
    return tuple(c for c in table.columns if c.info.get(PI_INFO_KEY))


def _info(table: Table) -> dict[str, Any]:
    return table.info or {}


def _subject_reach(table: Table) -> Reach | None:
    col = _info(table).get("subject_column")
    return Reach(table, "subject", col, personal=_personal(table)) if col else None


def _through(table: Table, seen: frozenset[str]) -> Reach | None:
    """The first foreign key of a subject-less table that leads to a subject."""
    for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
        target = fk.column.table
        if target.name in seen:
            continue
        parent = _subject_reach(target) or _through(target, seen | {table.name})
        if parent is not None:
            return Reach(table, "through", fk.parent.name, parent, personal=_personal(table))
    return None


def reaches(metadata: MetaData | None = None) -> list[Reach]:
    """Every way every table's rows can be about an account, tables in
    dependency order (a parent before the tables that reference it)."""
    md = metadata if metadata is not None else Base.metadata
    out: list[Reach] = []
    for table in md.sorted_tables:
        out.extend(_reaches_of(table))
    return out


def _reaches_of(table: Table) -> Iterator[Reach]:
    info = _info(table)
    personal = _personal(table)
    subject = _subject_reach(table)
    if subject is not None:
        yield subject
    for col in info.get("also_about", ()):
        yield Reach(table, "also", col, personal=personal)
    for k in info.get("keyed", ()):
        yield Reach(table, "keyed", k.column, keyed=k, personal=personal)
    if subject is None and not info.get("keyed"):
        through = _through(table, frozenset({table.name}))
        if through is not None:
            yield through


def unreached(metadata: MetaData | None = None) -> list[Table]:
    """Tables with personal columns that no reach finds: they must say why."""
    md = metadata if metadata is not None else Base.metadata
    found = {r.table.name for r in reaches(md)}
    return [t for t in md.sorted_tables if t.name not in found and _personal(t)]


def where_about(
    table: Table, account_id: str, values: dict[str, str | None], *, role: Role | None = None
) -> ColumnElement[bool] | None:
    """Every row of ``table`` about ``account_id`` (only ``role``'s when given),
    or None when no reach of the table finds accounts."""
    conds = [
        r.where(account_id, values) for r in _reaches_of(table) if role is None or r.role == role
    ]
    return or_(*conds) if conds else None


async def values_of(
    s: AsyncSession, account_id: str, metadata: MetaData | None = None
) -> dict[str, str | None]:
    """The account's own values that keyed columns index, read (decrypted)
    from its row: ``{"accounts.phone": "+8613800138000"}``."""
    md = metadata if metadata is not None else Base.metadata
    wanted = sorted({k.value for t in md.sorted_tables for k in _info(t).get("keyed", ())})
    out: dict[str, str | None] = {}
    for name in wanted:
        table_name, col = name.split(".", 1)
        table = md.tables[table_name]
        subject = _info(table).get("subject_column")
        if subject is None:
            raise ValueError(f"{name}: a keyed value comes from a table with a subject")
        row = await s.execute(select(table.c[col]).where(table.c[subject] == account_id))
        out[name] = row.scalar_one_or_none()
    return out
