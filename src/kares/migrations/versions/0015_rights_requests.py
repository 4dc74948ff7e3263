"""requests that need a person: corrections, explanations, complaints, feedback (issue 13)

``rights_requests`` holds each request with its due date (15 working days on
the mainland-China calendar, ``due_on``; NULL with ``due_pending`` while the
calendar of the year is not known), its state and the answer. Free texts are
encrypted at rest.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rights_requests",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(length=32),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "filed_by",
            sa.String(length=32),
            sa.ForeignKey("accounts.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("about", sa.String(length=64), nullable=True),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("wrong", sa.Text(), nullable=True),
        sa.Column("should_be", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("due_pending", sa.String(length=255), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(length=64), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_rights_requests_account_id", "rights_requests", ["account_id"])
    op.create_index("ix_rights_requests_filed_by", "rights_requests", ["filed_by"])
    op.create_index(
        "ix_rights_requests_same",
        "rights_requests",
        ["account_id", "kind", "topic", "created_at"],
    )
    op.create_index("ix_rights_requests_status_due", "rights_requests", ["status", "due_on"])


def downgrade() -> None:
    op.drop_table("rights_requests")
