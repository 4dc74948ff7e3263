"""inbox positions: each notification's place in its account's stream (issue 14)

The WebSocket resumes an account's inbox by position (docs/MESSAGING.md,
"Positions and resume"): ``notifications.seq`` counts 1, 2, 3... per account,
allocated one at a time per account, so they commit in the order they count.
Existing entries are numbered oldest first.

Revision ID: 0022
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE notifications SET seq = (SELECT count(*) FROM notifications n2 "
        "WHERE n2.account_id = notifications.account_id AND (n2.created_at < "
        "notifications.created_at OR (n2.created_at = notifications.created_at "
        "AND n2.id <= notifications.id)))"
    )
    op.create_index(
        "ux_notifications_account_seq", "notifications", ["account_id", "seq"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_notifications_account_seq", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("seq")
