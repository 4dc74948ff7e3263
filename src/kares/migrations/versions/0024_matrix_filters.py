"""matrix: the sync filters Matrix clients upload (issue 14, "Matrix clients can
join the family chat")

A client's own settings for how its /sync is shaped, kept with the account and
deleted with it. Everything else a Matrix client reads is the messaging domain's.

Revision ID: 0024
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matrix_filters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_matrix_filters_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matrix_filters")),
    )
    with op.batch_alter_table("matrix_filters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_matrix_filters_account_id"), ["account_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("matrix_filters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_matrix_filters_account_id"))
    op.drop_table("matrix_filters")
