"""The deletion register: what was deleted, kept so a restored backup is deleted again.

Policy 5.2: a backup may still hold what a person deleted, until it is updated.
Every deletion writes one entry here, in its own transaction; after a restore,
``kares.rights.erase.reapply`` walks the register and deletes again every
account and every chosen range it names.

An entry holds no personal information: never a phone number, a name or an
id, only a blind index of the account id (a keyed hash: it finds the account
again if it comes back with a restore, and says nothing to anyone without the
index key), the scope (the account, or one category and time range), the day,
and for an account the number of rows each table gave up (the tombstone).

The register also has a copy outside the database (``register_file``: one JSON
line per entry under the var directory), because a restore replaces the
database and its register with them: ``entries_from_file`` reads it back so the
entries can be merged into the restored database before ``reapply``.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Date, Index, String, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from kares import clock, crypto
from kares.db import Base, UTCDateTime, new_id
from kares.fields import not_personal, table_info

PURPOSE = "deletion-register"
FILE_NAME = "deletion-register.jsonl"


def subject_index(account_id: str) -> str:
    """The register's name for an account: a keyed hash of its id."""
    return crypto.blind_index(account_id, purpose=PURPOSE)


class DeletionEntry(Base):
    """One deletion: an account (its tombstone) or one category and time range."""

    __tablename__ = "deletion_register"
    __table_args__ = (
        Index("ix_deletion_register_subject", "subject_index"),
        table_info(
            subject=None,
            why="the deletion register holds no personal information: a keyed hash of a "
            "deleted account's id, what went and when, so a restored backup is deleted again",
            not_personal=("id",),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subject_index: Mapped[str] = mapped_column(
        String(64), info=not_personal("a keyed hash of an account id, never the id")
    )
    scope: Mapped[str] = mapped_column(
        String(16), info=not_personal("account or chosen: what kind of deletion")
    )
    category: Mapped[str | None] = mapped_column(
        String(48), info=not_personal("a catalog category key, not a value")
    )
    since: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=not_personal("the chosen range's start, not a person's value")
    )
    until: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=not_personal("the chosen range's end, not a person's value")
    )
    on: Mapped[date] = mapped_column(Date, info=not_personal("the day the deletion ran"))
    counts: Mapped[dict[str, Any]] = mapped_column(
        JSON, info=not_personal("rows per table name, and the third parties told; no values")
    )


def _as_dict(e: DeletionEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "subject_index": e.subject_index,
        "scope": e.scope,
        "category": e.category,
        "since": e.since.isoformat() if e.since else None,
        "until": e.until.isoformat() if e.until else None,
        "on": e.on.isoformat(),
        "counts": e.counts,
    }


async def add(
    s: AsyncSession,
    *,
    account_id: str,
    scope: str,
    counts: dict[str, Any],
    category: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Write one entry in the caller's transaction; returns it as a dict (what
    ``append_file`` writes once the transaction committed)."""
    on = clock.utcnow().date()
    entry: dict[str, Any] = {
        "id": new_id(),
        "subject_index": subject_index(account_id),
        "scope": scope,
        "category": category,
        "since": since,
        "until": until,
        "on": on,
        "counts": counts,
    }
    await s.execute(insert(DeletionEntry).values(**entry))
    return {
        **entry,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "on": on.isoformat(),
    }


async def entries(s: AsyncSession) -> list[dict[str, Any]]:
    """Every entry, oldest first."""
    q = select(DeletionEntry).order_by(DeletionEntry.on, DeletionEntry.id)
    return [_as_dict(e) for e in (await s.execute(q)).scalars()]


async def merge(s: AsyncSession, found: list[dict[str, Any]]) -> int:
    """Add the entries the database lacks (after a restore: the ones written since
    the backup was taken); in the caller's transaction. How many were added."""
    have = set((await s.execute(select(DeletionEntry.id))).scalars())
    added = 0
    for e in found:
        if e["id"] in have:
            continue
        await s.execute(
            insert(DeletionEntry).values(
                id=e["id"],
                subject_index=e["subject_index"],
                scope=e["scope"],
                category=e.get("category"),
                since=datetime.fromisoformat(e["since"]) if e.get("since") else None,
                until=datetime.fromisoformat(e["until"]) if e.get("until") else None,
                on=date.fromisoformat(e["on"]),
                counts=e.get("counts") or {},
            )
        )
        have.add(e["id"])
        added += 1
    return added


def register_file(var_dir: Path) -> Path:
    return var_dir / FILE_NAME


def append_file(var_dir: Path, entry: dict[str, Any]) -> None:
    """Add one entry to the copy outside the database (after its commit)."""
    path = register_file(var_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def entries_from_file(var_dir: Path) -> list[dict[str, Any]]:
    path = register_file(var_dir)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out
