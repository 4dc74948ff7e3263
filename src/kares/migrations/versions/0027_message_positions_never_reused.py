"""message positions are never given twice on SQLite (AUTOINCREMENT)

``message_events.position`` was SQLite's plain rowid: the largest one plus one.
When the newest event was deleted (a family dissolved with its conversation, an
erased account's receipts), the next event took its number again, at or below a
position a client had already seen, so a socket resuming after it skipped that
event for good. AUTOINCREMENT never hands a number out twice; the table is
rebuilt with it, keeping every row and its position (SQLite's sequence starts
at the largest). PostgreSQL's sequence never goes back: nothing to do there.

Revision ID: 0027
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "message_events",
        recreate="always",
        table_kwargs={"sqlite_autoincrement": autoincrement},
    ):
        pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
