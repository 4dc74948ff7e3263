"""the request path's caches and the live stream's positions (step 5)

accounts.privacy_version: bumped in the same transaction as every change the
guard's decision depends on (a consent receipt, a device's permissions, a
guardianship), and read with the session that authenticates each request, so a
cached decision is never used after such a change, whichever process made it.

location_last.position: the id of the fix that became the last location, the
same in every process: a live notice carries it, and a stream can resume from it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (no batch rebuild on SQLite: with foreign
# keys on, dropping `accounts` would take every row that points at it).


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("privacy_version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("location_last", sa.Column("position", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE location_last DROP COLUMN position")
    op.execute("ALTER TABLE accounts DROP COLUMN privacy_version")
