"""caldav (issue 16): app passwords for CalDAV clients, calendar subscriptions

``caldav_app_passwords`` gives a session of kind ``caldav`` (the secret is its
token) the user name a CalDAV client signs in with; ``calendar_subscriptions``
holds the keyed hash of each read-only iCalendar URL's token.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "caldav_app_passwords",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_caldav_app_passwords_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_caldav_app_passwords_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caldav_app_passwords")),
        sa.UniqueConstraint("session_id", name=op.f("uq_caldav_app_passwords_session_id")),
        sa.UniqueConstraint("username", name=op.f("uq_caldav_app_passwords_username")),
    )
    op.create_index(
        op.f("ix_caldav_app_passwords_account_id"),
        "caldav_app_passwords",
        ["account_id"],
        unique=False,
    )
    op.create_table(
        "calendar_subscriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("calendar_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_calendar_subscriptions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["calendars.id"],
            name=op.f("fk_calendar_subscriptions_calendar_id_calendars"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_subscriptions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_subscriptions_token_hash")),
    )
    op.create_index(
        op.f("ix_calendar_subscriptions_account_id"),
        "calendar_subscriptions",
        ["account_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_calendar_subscriptions_calendar_id"),
        "calendar_subscriptions",
        ["calendar_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_calendar_subscriptions_calendar_id"), table_name="calendar_subscriptions"
    )
    op.drop_index(op.f("ix_calendar_subscriptions_account_id"), table_name="calendar_subscriptions")
    op.drop_table("calendar_subscriptions")
    op.drop_index(op.f("ix_caldav_app_passwords_account_id"), table_name="caldav_app_passwords")
    op.drop_table("caldav_app_passwords")
