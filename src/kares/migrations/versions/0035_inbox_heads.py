"""inbox heads (issue 14): the last inbox position given per account

``notification_heads`` keeps, per account, the last position its inbox stream
gave (``notifications.seq``). Positions used to be the account's largest plus
one, so deleting the newest entries (retention, an erased person's notices)
let a number be given twice. Filled from the positions given so far.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_heads",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_notification_heads_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_notification_heads")),
    )
    op.execute(
        "INSERT INTO notification_heads (account_id, seq) "
        "SELECT account_id, MAX(seq) FROM notifications WHERE seq IS NOT NULL "
        "GROUP BY account_id"
    )


def downgrade() -> None:
    op.drop_table("notification_heads")
