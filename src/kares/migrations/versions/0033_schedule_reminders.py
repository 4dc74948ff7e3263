"""schedule reminders (issue 16): fire times, deliveries, recipients, confirmations

``schedule_reminder_sources`` names the calendar objects with something to
remind and how far ahead their fires exist; ``schedule_reminder_fires`` one
fire time per (object, occurrence, alarm); ``schedule_reminder_deliveries`` what
was delivered, told or recorded stale, unique per (object, occurrence, alarm) so
a reminder is never delivered twice; ``schedule_reminder_recipients`` who was
told and whether their watch still owes it; ``schedule_confirmations`` the
"done" of one occurrence.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def _object_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["object_id"],
        ["calendar_objects.id"],
        name=op.f(f"fk_{table}_object_id_calendar_objects"),
        ondelete="CASCADE",
    )


def _account_fk(table: str, column: str = "account_id") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["accounts.id"], name=op.f(f"fk_{table}_{column}_accounts"), ondelete="CASCADE"
    )


def upgrade() -> None:
    t = "schedule_reminder_sources"
    op.create_table(
        t,
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        _object_fk(t),
        sa.PrimaryKeyConstraint("object_id", name=op.f(f"pk_{t}")),
    )

    t = "schedule_reminder_fires"
    op.create_table(
        t,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("occurrence_ms", sa.BigInteger(), nullable=False),
        sa.Column("alarm_key", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stale_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("assignees", sa.JSON(), nullable=False),
        _object_fk(t),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{t}")),
        sa.UniqueConstraint(
            "object_id",
            "occurrence_ms",
            "alarm_key",
            name=op.f(f"uq_{t}_object_id_occurrence_ms_alarm_key"),
        ),
    )
    op.create_index(op.f(f"ix_{t}_object_id"), t, ["object_id"], unique=False)
    op.create_index(op.f(f"ix_{t}_fire_at"), t, ["fire_at"], unique=False)

    t = "schedule_reminder_deliveries"
    op.create_table(
        t,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("occurrence_ms", sa.BigInteger(), nullable=False),
        sa.Column("alarm_key", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("late_seconds", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("unconfirmed_by", sa.String(length=32), nullable=True),
        _object_fk(t),
        _account_fk(t, "unconfirmed_by"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{t}")),
        sa.UniqueConstraint(
            "object_id",
            "occurrence_ms",
            "alarm_key",
            name=op.f(f"uq_{t}_object_id_occurrence_ms_alarm_key"),
        ),
    )
    op.create_index(op.f(f"ix_{t}_object_id"), t, ["object_id"], unique=False)
    op.create_index(op.f(f"ix_{t}_unconfirmed_by"), t, ["unconfirmed_by"], unique=False)

    t = "schedule_reminder_recipients"
    op.create_table(
        t,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("notification_id", sa.String(length=32), nullable=True),
        sa.Column("watch_owed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("watch_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _account_fk(t),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["schedule_reminder_deliveries.id"],
            name=op.f(f"fk_{t}_delivery_id_schedule_reminder_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{t}")),
        sa.UniqueConstraint(
            "delivery_id", "account_id", name=op.f(f"uq_{t}_delivery_id_account_id")
        ),
    )
    op.create_index("ix_schedule_reminder_recipients_watch", t, ["account_id", "watch_owed"])

    t = "schedule_confirmations"
    op.create_table(
        t,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("occurrence_ms", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        _object_fk(t),
        _account_fk(t),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{t}")),
        sa.UniqueConstraint(
            "object_id", "occurrence_ms", name=op.f(f"uq_{t}_object_id_occurrence_ms")
        ),
    )
    op.create_index(op.f(f"ix_{t}_object_id"), t, ["object_id"], unique=False)


def downgrade() -> None:
    op.drop_table("schedule_confirmations")
    op.drop_table("schedule_reminder_recipients")
    op.drop_table("schedule_reminder_deliveries")
    op.drop_table("schedule_reminder_fires")
    op.drop_table("schedule_reminder_sources")
