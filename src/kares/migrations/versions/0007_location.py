"""location: fixes, last locations, trackers, places

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER on both databases (see 0006): a watch's alarm key on SOS alerts
    op.add_column("sos_alerts", sa.Column("source_key", sa.String(length=96), nullable=True))
    op.create_index(
        "uq_sos_alerts_account_id_source_key",
        "sos_alerts",
        ["account_id", "source_key"],
        unique=True,
    )
    op.create_table(
        "location_fixes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("client_id", sa.String(length=96), nullable=True),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("altitude_m", sa.Float(), nullable=True),
        sa.Column("speed_mps", sa.Float(), nullable=True),
        sa.Column("course_deg", sa.Float(), nullable=True),
        sa.Column("battery", sa.SmallInteger(), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("precise", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("flag", sa.String(length=32), nullable=True),
        sa.Column("radio", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_location_fixes_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_location_fixes_device_id_devices"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_location_fixes")),
        sa.UniqueConstraint(
            "account_id", "client_id", name=op.f("uq_location_fixes_account_id_client_id")
        ),
    )
    with op.batch_alter_table("location_fixes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_location_fixes_account_id_recorded_ms", ["account_id", "recorded_ms"], unique=False
        )

    op.create_table(
        "location_last",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("speed_mps", sa.Float(), nullable=True),
        sa.Column("course_deg", sa.Float(), nullable=True),
        sa.Column("battery", sa.SmallInteger(), nullable=True),
        sa.Column("precise", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_location_last_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_location_last_device_id_devices"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_location_last")),
    )
    op.create_table(
        "places",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=True),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("radius_m", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_places_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["families.id"],
            name=op.f("fk_places_family_id_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_places")),
        sa.UniqueConstraint(
            "account_id", "external_id", name=op.f("uq_places_account_id_external_id")
        ),
    )
    with op.batch_alter_table("places", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_places_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_places_family_id"), ["family_id"], unique=False)

    op.create_table(
        "location_trackers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("username", sa.String(length=40), nullable=False),
        sa.Column("tid", sa.String(length=4), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_location_trackers_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_location_trackers_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_location_trackers_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_location_trackers")),
        sa.UniqueConstraint("username", name=op.f("uq_location_trackers_username")),
    )
    with op.batch_alter_table("location_trackers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_location_trackers_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "place_alerts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("place_id", sa.String(length=32), nullable=False),
        sa.Column("watcher_id", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=True),
        sa.Column("on_arrive", sa.Boolean(), nullable=False),
        sa.Column("on_leave", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["place_id"],
            ["places.id"],
            name=op.f("fk_place_alerts_place_id_places"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["accounts.id"],
            name=op.f("fk_place_alerts_subject_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["watcher_id"],
            ["accounts.id"],
            name=op.f("fk_place_alerts_watcher_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_place_alerts")),
        sa.UniqueConstraint(
            "place_id",
            "watcher_id",
            "subject_id",
            name=op.f("uq_place_alerts_place_id_watcher_id_subject_id"),
        ),
    )
    with op.batch_alter_table("place_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_place_alerts_place_id"), ["place_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_place_alerts_subject_id"), ["subject_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_place_alerts_watcher_id"), ["watcher_id"], unique=False
        )

    op.create_table(
        "place_presence",
        sa.Column("place_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("inside", sa.Boolean(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("pending_since_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_place_presence_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["place_id"],
            ["places.id"],
            name=op.f("fk_place_presence_place_id_places"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("place_id", "account_id", name=op.f("pk_place_presence")),
    )
    with op.batch_alter_table("place_presence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_place_presence_account_id"), ["account_id"], unique=False
        )


def downgrade() -> None:
    op.drop_index("uq_sos_alerts_account_id_source_key", table_name="sos_alerts")
    op.execute("ALTER TABLE sos_alerts DROP COLUMN source_key")
    with op.batch_alter_table("place_presence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_place_presence_account_id"))

    op.drop_table("place_presence")
    with op.batch_alter_table("place_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_place_alerts_watcher_id"))
        batch_op.drop_index(batch_op.f("ix_place_alerts_subject_id"))
        batch_op.drop_index(batch_op.f("ix_place_alerts_place_id"))

    op.drop_table("place_alerts")
    with op.batch_alter_table("location_trackers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_location_trackers_account_id"))

    op.drop_table("location_trackers")
    with op.batch_alter_table("places", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_places_family_id"))
        batch_op.drop_index(batch_op.f("ix_places_account_id"))

    op.drop_table("places")
    op.drop_table("location_last")
    with op.batch_alter_table("location_fixes", schema=None) as batch_op:
        batch_op.drop_index("ix_location_fixes_account_id_recorded_ms")

    op.drop_table("location_fixes")
