"""deletion: account deletion requests, the deletion register (issue 13)

``deletion_requests`` holds an account's pending (or cancelled) deletion and
what becomes of the families it owns; ``deletion_register`` holds one entry per
deletion with no personal information, for re-applying after a restore.

Consent receipts stay append-only, with two exceptions: retention's (0014: the
``session_id`` set to NULL, nothing else changed), and this one: when the
guardian who acted for a child is deleted, the receipt's ``actor_account_id``
may become the marker ``'erased'`` and the guardian's session and device ids
may be cleared (nothing else of the row may change).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_SAME = ("id", "account_id", "subject", "action", "policy_version", "via", "created_at")
# the guardian's session and device may go with them
_GONE = ("session_id", "device_id")
_DELETED_GUARDIAN = (
    "NEW.actor_account_id = 'erased' AND EXISTS (SELECT 1 FROM accounts "
    "WHERE id = OLD.actor_account_id AND status = 'deleting')"
)
# the one update allowed: a deleted guardian's id replaced by the marker, the
# rest of the row as it was
_SQLITE_ERASED = " AND ".join(
    [
        _DELETED_GUARDIAN,
        *(f"NEW.{c} IS OLD.{c}" for c in _SAME),
        *(f"(NEW.{c} IS NULL OR NEW.{c} IS OLD.{c})" for c in _GONE),
    ]
)
_PG_ERASED = " AND ".join(
    [
        _DELETED_GUARDIAN,
        *(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in _SAME),
        *(f"(NEW.{c} IS NULL OR NEW.{c} IS NOT DISTINCT FROM OLD.{c})" for c in _GONE),
    ]
)
# retention's update (migration 0014): the session id goes, nothing else changes
_SQLITE_RETENTION = " AND ".join(
    ["NEW.session_id IS NULL"]
    + [f"NEW.{c} IS OLD.{c}" for c in (*_SAME, "actor_account_id", "device_id")]
)
_PG_RETENTION = (
    "NEW.session_id IS NULL AND to_jsonb(NEW) - 'session_id' = to_jsonb(OLD) - 'session_id'"
)
_SQLITE_ALLOWED = f"({_SQLITE_RETENTION}) OR ({_SQLITE_ERASED})"
_PG_ALLOWED = f"({_PG_RETENTION}) OR ({_PG_ERASED})"

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION consent_receipts_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF ALLOWED THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'consent receipts are append-only';
    END IF;
    IF EXISTS (SELECT 1 FROM accounts WHERE id = OLD.account_id AND status <> 'deleting') THEN
        RAISE EXCEPTION 'consent receipts are kept while the account exists';
    END IF;
    RETURN OLD;
END
$$ LANGUAGE plpgsql
"""


def _pg_function(allowed: str) -> str:
    return _PG_FUNCTION.replace("ALLOWED", allowed)


def upgrade() -> None:
    op.create_table(
        "deletion_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.String(length=16), nullable=True),
        sa.Column("families", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["requested_by"], ["accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_deletion_requests_account", "deletion_requests", ["account_id", "requested_at"]
    )
    op.create_table(
        "deletion_register",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subject_index", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=48), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("on", sa.Date(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deletion_register_subject", "deletion_register", ["subject_index"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_function(_PG_ALLOWED))
    else:
        op.execute("DROP TRIGGER consent_receipts_no_update")
        op.execute(
            "CREATE TRIGGER consent_receipts_no_update BEFORE UPDATE ON consent_receipts "
            f"WHEN NOT ({_SQLITE_ALLOWED}) "
            "BEGIN SELECT RAISE(ABORT, 'consent receipts are append-only'); END"
        )


def downgrade() -> None:
    # back to 0014's guard: retention's update only
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_function(_PG_RETENTION))
    else:
        op.execute("DROP TRIGGER consent_receipts_no_update")
        op.execute(
            "CREATE TRIGGER consent_receipts_no_update BEFORE UPDATE ON consent_receipts "
            f"WHEN NOT ({_SQLITE_RETENTION}) "
            "BEGIN SELECT RAISE(ABORT, 'consent receipts are append-only'); END"
        )
    op.drop_index("ix_deletion_register_subject", table_name="deletion_register")
    op.drop_table("deletion_register")
    op.drop_index("ix_deletion_requests_account", table_name="deletion_requests")
    op.drop_table("deletion_requests")
