"""policy notices: telling existing accounts about a significant revision (policy 8)

``policy_notices`` holds, per significant version, how far the in-app notice has
got (a cursor over account ids and a count), so the job that tells everyone
resumes after a restart and tells nobody twice. No personal information.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_notices",
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("told_through", sa.String(length=32), nullable=True),
        sa.Column("told", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["version"],
            ["policy_versions.version"],
            name=op.f("fk_policy_notices_version_policy_versions"),
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_policy_notices")),
    )


def downgrade() -> None:
    op.drop_table("policy_notices")
