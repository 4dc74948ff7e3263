"""devices report their battery (step 3)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases: a batch rebuild of `devices` on SQLite
# would drop the table, and with it (foreign keys on) every row pointing at it.


def upgrade() -> None:
    op.add_column("devices", sa.Column("battery", sa.Integer(), nullable=True))
    op.add_column("devices", sa.Column("charging", sa.Boolean(), nullable=True))
    op.add_column("devices", sa.Column("battery_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for column in ("battery_at", "charging", "battery"):
        op.execute(f"ALTER TABLE devices DROP COLUMN {column}")
