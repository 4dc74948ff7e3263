"""the staff-action log (issue 13)

``staff_actions`` records every operator run against a person's data (rights
export and deletion from the command line, answers to the staff queue, legal
holds), in the transaction of what it did. Its account id is cleared when the
account is deleted; the detail holds counts and table names only.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_actions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_staff_actions_account_at", "staff_actions", ["account_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_staff_actions_account_at", table_name="staff_actions")
    op.drop_table("staff_actions")
