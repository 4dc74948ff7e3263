"""calls: the record of each voice call (issue 14; policy 1.6.1, calls.records)

Who called whom, from which device, when it rang, was answered and ended, and
why it ended. Never the audio, and never the session descriptions or ICE
candidates the signalling relays.

Revision ID: 0023
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("caller_id", sa.String(length=32), nullable=False),
        sa.Column("callee_id", sa.String(length=32), nullable=False),
        sa.Column("caller_device_id", sa.String(length=32), nullable=False),
        sa.Column("answered_device_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ring_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["caller_id"],
            ["accounts.id"],
            name=op.f("fk_calls_caller_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["callee_id"],
            ["accounts.id"],
            name=op.f("fk_calls_callee_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index("ix_calls_callee_created", "calls", ["callee_id", "created_at"])
    op.create_index("ix_calls_caller_created", "calls", ["caller_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_caller_created", table_name="calls")
    op.drop_index("ix_calls_callee_created", table_name="calls")
    op.drop_table("calls")
