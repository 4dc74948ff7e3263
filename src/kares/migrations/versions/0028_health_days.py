"""health (issue 15): a day of one person's samples of one metric per row, encrypted

``health_vitals_days`` and ``health_activity_days`` (one per personal-information
category) hold, per (account, metric, UTC day), the day's samples packed as
arrays, compressed and encrypted with AES-256-GCM (``kares.fields.Sealed``):
no value, time or record id of a sample is readable in the database file.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

TABLES = ("health_vitals_days", "health_activity_days")


def upgrade() -> None:
    for name in TABLES:
        op.create_table(
            name,
            sa.Column("account_id", sa.String(length=32), nullable=False),
            sa.Column("metric", sa.String(length=24), nullable=False),
            sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("data", sa.LargeBinary(), nullable=False),
            sa.ForeignKeyConstraint(
                ["account_id"],
                ["accounts.id"],
                name=op.f(f"fk_{name}_account_id_accounts"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("account_id", "metric", "day", name=op.f(f"pk_{name}")),
        )


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
