"""schedule (issue 16): calendars, calendar object resources, the sync log

``calendars`` holds personal calendars (``account_id``) and family calendars
(``family_id``), ``default_for`` unique so the calendar made on first use is made
once; ``calendar_objects`` one CalDAV calendar object resource per row (sealed
iCalendar text, unique name and UID per calendar); ``calendar_changes`` the
RFC 6578 change log, one row per resource name.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendars",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("family_id", sa.String(length=32), nullable=True),
        sa.Column("default_for", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("color", sa.String(length=9), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("sync_floor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_calendars_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["families.id"],
            name=op.f("fk_calendars_family_id_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendars")),
        sa.UniqueConstraint("default_for", name=op.f("uq_calendars_default_for")),
    )
    op.create_index(op.f("ix_calendars_account_id"), "calendars", ["account_id"], unique=False)
    op.create_index(op.f("ix_calendars_family_id"), "calendars", ["family_id"], unique=False)
    op.create_table(
        "calendar_objects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("calendar_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("uid", sa.String(length=255), nullable=False),
        sa.Column("component", sa.String(length=8), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("etag", sa.String(length=40), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("range_start", sa.BigInteger(), nullable=True),
        sa.Column("range_end", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["calendars.id"],
            name=op.f("fk_calendar_objects_calendar_id_calendars"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_objects")),
        sa.UniqueConstraint(
            "calendar_id", "name", name=op.f("uq_calendar_objects_calendar_id_name")
        ),
        sa.UniqueConstraint("calendar_id", "uid", name=op.f("uq_calendar_objects_calendar_id_uid")),
    )
    op.create_index(
        "ix_calendar_objects_calendar_modseq",
        "calendar_objects",
        ["calendar_id", "modseq"],
        unique=False,
    )
    op.create_table(
        "calendar_changes",
        sa.Column("calendar_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["calendars.id"],
            name=op.f("fk_calendar_changes_calendar_id_calendars"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("calendar_id", "name", name=op.f("pk_calendar_changes")),
    )
    op.create_index(
        "ix_calendar_changes_calendar_modseq",
        "calendar_changes",
        ["calendar_id", "modseq"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("calendar_changes")
    op.drop_table("calendar_objects")
    op.drop_table("calendars")
