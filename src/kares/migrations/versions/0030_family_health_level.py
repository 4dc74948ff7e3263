"""families (issue 15): health sharing becomes a level, off | summaries | series

``family_members.health_series`` joins the ``health`` flag: the flag keeps its
meaning (summaries shared), the new column adds raw series on top of it. Rows
that exist share summaries or nothing, as before; nobody shares series until
they choose to.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("family_members") as batch:
        batch.add_column(
            sa.Column("health_series", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("family_members") as batch:
        batch.drop_column("health_series")
