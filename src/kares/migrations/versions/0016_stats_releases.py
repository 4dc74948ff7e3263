"""anonymised statistics (issue 13, policy 1.6): the releases and the budget they spent

``stats_releases`` holds every release of ``kares stats`` as published (noisy
figures of groups of at least k people) with the epsilon each figure spent; the
budget per period is checked against it. It holds no account's data.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_releases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("epsilons", sa.JSON(), nullable=False),
        sa.Column("epsilon_total", sa.Float(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_releases")),
    )
    op.create_index("ix_stats_releases_created_at", "stats_releases", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_stats_releases_created_at", table_name="stats_releases")
    op.drop_table("stats_releases")
