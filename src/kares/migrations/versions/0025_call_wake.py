"""calls wake an offline callee (issue 14): a device's PushKit VoIP token beside
its push token, and the caller's offer held (encrypted) while a call rings

Both columns are nullable and start empty: a device registers its VoIP token
again, and a call ringing during the upgrade has no offer held (its callee's
open sockets already had it).

Revision ID: 0025
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("push_tokens", sa.Column("voip_token", sa.Text(), nullable=True))
    op.add_column("calls", sa.Column("offer", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("offer")
    with op.batch_alter_table("push_tokens") as batch:
        batch.drop_column("voip_token")
