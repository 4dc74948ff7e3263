"""legal holds that suspend retention for named accounts (issue 13)

- ``legal_holds``: an account's hold, from ``set_at`` until ``released_at``.
- Consent receipts stay append-only with one exception: retention may set
  ``session_id`` (the login environment, kept 180 days) to NULL, changing nothing
  else. The receipt itself, the proof of a choice, is kept for the account's life.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_OTHER = (
    "id",
    "account_id",
    "subject",
    "action",
    "policy_version",
    "via",
    "actor_account_id",
    "device_id",
    "created_at",
)
_SAME = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _OTHER)

SQLITE_NO_UPDATE = (
    "CREATE TRIGGER consent_receipts_no_update BEFORE UPDATE ON consent_receipts "
    "WHEN NOT (NEW.session_id IS NULL AND {same}) "
    "BEGIN SELECT RAISE(ABORT, 'consent receipts are append-only'); END"
)
SQLITE_NO_UPDATE_BEFORE = (
    "CREATE TRIGGER consent_receipts_no_update BEFORE UPDATE ON consent_receipts "
    "BEGIN SELECT RAISE(ABORT, 'consent receipts are append-only'); END"
)
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION consent_receipts_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.session_id IS NULL
           AND to_jsonb(NEW) - 'session_id' = to_jsonb(OLD) - 'session_id' THEN
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
PG_FUNCTION_BEFORE = """
CREATE OR REPLACE FUNCTION consent_receipts_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'consent receipts are append-only';
    END IF;
    IF EXISTS (SELECT 1 FROM accounts WHERE id = OLD.account_id AND status <> 'deleting') THEN
        RAISE EXCEPTION 'consent receipts are kept while the account exists';
    END IF;
    RETURN OLD;
END
$$ LANGUAGE plpgsql
"""


def _receipts_guard(*, retention: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION if retention else PG_FUNCTION_BEFORE)
    else:
        op.execute("DROP TRIGGER consent_receipts_no_update")
        op.execute(SQLITE_NO_UPDATE.format(same=_SAME) if retention else SQLITE_NO_UPDATE_BEFORE)


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_legal_holds_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index("ix_legal_holds_account_released", "legal_holds", ["account_id", "released_at"])
    _receipts_guard(retention=True)


def downgrade() -> None:
    _receipts_guard(retention=False)
    op.drop_index("ix_legal_holds_account_released", table_name="legal_holds")
    op.drop_table("legal_holds")
