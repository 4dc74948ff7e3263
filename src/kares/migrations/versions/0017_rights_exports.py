"""export archives of the right of access and copy (issue 13, policy 5.1)

``rights_exports`` holds each request for an archive: its progress while the
job makes it, its one-time link (the secret encrypted, cleared once used),
and when the file was deleted. ``running_for`` holds the account's id while
the archive is being made, so one account has one in the making at a time.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rights_exports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=True),
        sa.Column("running_for", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("steps_total", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=True),
        sa.Column("link_secret", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("link_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("downloaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_rights_exports_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["accounts.id"],
            name=op.f("fk_rights_exports_requested_by_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rights_exports")),
    )
    op.create_index("ix_rights_exports_account_id", "rights_exports", ["account_id"])
    op.create_index("uq_rights_exports_running_for", "rights_exports", ["running_for"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_rights_exports_running_for", table_name="rights_exports")
    op.drop_index("ix_rights_exports_account_id", table_name="rights_exports")
    op.drop_table("rights_exports")
