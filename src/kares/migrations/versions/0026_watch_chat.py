"""watch chat (issue 14): how far each watch has received its chat

A watch acknowledges each message the server sends it over the watch protocol;
``watch_chat_cursors.up_to`` is the last acknowledged message's position.

Revision ID: 0026
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_chat_cursors",
        sa.Column("watch_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("up_to", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_watch_chat_cursors_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["watch_id"],
            ["watches.id"],
            name=op.f("fk_watch_chat_cursors_watch_id_watches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("watch_id", name=op.f("pk_watch_chat_cursors")),
    )
    with op.batch_alter_table("watch_chat_cursors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_watch_chat_cursors_account_id"), ["account_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("watch_chat_cursors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_watch_chat_cursors_account_id"))
    op.drop_table("watch_chat_cursors")
