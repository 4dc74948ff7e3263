"""password sign-in limits per number and per address (step 6, issue 12)

The lockout moves from the account to a row per phone number, kept whether or
not an account has the number, so an unknown number is counted and locked like
a registered one; per-address and per-number hourly counts sit beside it. The
account's own counter and lock go.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "password_limits",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_password_limits")),
    )
    with op.batch_alter_table("password_limits", schema=None) as batch_op:
        batch_op.create_index("ix_password_limits_window", ["window_started_at"], unique=False)
    # ALTER TABLE ... DROP COLUMN on both databases (SQLite 3.35+): a batch
    # copy of accounts would trip the triggers that name it
    op.execute("ALTER TABLE accounts DROP COLUMN locked_until")
    op.execute("ALTER TABLE accounts DROP COLUMN password_failures")


def downgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("password_failures", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("accounts", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("password_limits", schema=None) as batch_op:
        batch_op.drop_index("ix_password_limits_window")
    op.drop_table("password_limits")
