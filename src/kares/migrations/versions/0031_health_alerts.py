"""health alerts (issue 15): guardians' thresholds for a dependant, and episodes

``health_alerts`` holds a threshold per (family, dependant, kind);
``health_alert_episodes`` one crossing per (threshold, moment its condition
began), unique, so evaluating the same samples again opens nothing; its
``open_alert`` (unique) holds the threshold's id while the episode is open.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "health_alerts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("level", sa.Float(), nullable=True),
        sa.Column("minutes", sa.Integer(), nullable=True),
        sa.Column("local_time", sa.String(length=5), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=True),
        sa.Column("set_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_health_alerts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["families.id"],
            name=op.f("fk_health_alerts_family_id_families"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_by"],
            ["accounts.id"],
            name=op.f("fk_health_alerts_set_by_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_alerts")),
        sa.UniqueConstraint(
            "family_id",
            "account_id",
            "kind",
            name=op.f("uq_health_alerts_family_id_account_id_kind"),
        ),
    )
    op.create_index(
        op.f("ix_health_alerts_account_id"), "health_alerts", ["account_id"], unique=False
    )
    op.create_table(
        "health_alert_episodes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("opened_ms", sa.BigInteger(), nullable=False),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.Column("open_alert", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_health_alert_episodes_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["health_alerts.id"],
            name=op.f("fk_health_alert_episodes_alert_id_health_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_alert_episodes")),
        sa.UniqueConstraint(
            "alert_id", "opened_ms", name=op.f("uq_health_alert_episodes_alert_id_opened_ms")
        ),
    )
    op.create_index(
        op.f("ix_health_alert_episodes_account_id"),
        "health_alert_episodes",
        ["account_id"],
        unique=False,
    )
    op.create_index(
        "uq_health_alert_episodes_open_alert", "health_alert_episodes", ["open_alert"], unique=True
    )


def downgrade() -> None:
    op.drop_table("health_alert_episodes")
    op.drop_table("health_alerts")
