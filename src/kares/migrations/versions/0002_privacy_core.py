"""privacy core: policy versions, consent ledger, guardians, devices

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE FUNCTION consent_receipts_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'consent receipts are append-only';
    END IF;
    IF EXISTS (SELECT 1 FROM accounts WHERE id = OLD.account_id AND status <> 'deleting') THEN
        RAISE EXCEPTION 'consent receipts are kept while the account exists';
    END IF;
    RETURN OLD;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("published_on", sa.Date(), nullable=False),
        sa.Column("significant", sa.Boolean(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reductions", sa.JSON(), nullable=False),
        sa.Column("first_served_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_policy_versions")),
    )
    op.create_table(
        "consent_receipts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=96), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("actor_account_id", sa.String(length=32), nullable=True),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_consent_receipts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["policy_version"],
            ["policy_versions.version"],
            name=op.f("fk_consent_receipts_policy_version_policy_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_receipts")),
    )
    with op.batch_alter_table("consent_receipts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_receipts_account_subject",
            ["account_id", "subject", "created_at"],
            unique=False,
        )

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("device_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("os", sa.String(length=32), nullable=True),
        sa.Column("os_version", sa.String(length=32), nullable=True),
        sa.Column("app_version", sa.String(length=32), nullable=True),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_devices_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint(
            "account_id", "device_key", name=op.f("uq_devices_account_id_device_key")
        ),
    )
    op.create_table(
        "guardian_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("minor_account_id", sa.String(length=32), nullable=False),
        sa.Column("guardian_phone_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["minor_account_id"],
            ["accounts.id"],
            name=op.f("fk_guardian_requests_minor_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardian_requests")),
    )
    with op.batch_alter_table("guardian_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_guardian_requests_guardian", ["guardian_phone_hash", "created_at"], unique=False
        )

    op.create_table(
        "guardianships",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("minor_account_id", sa.String(length=32), nullable=False),
        sa.Column("guardian_account_id", sa.String(length=32), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["guardian_account_id"],
            ["accounts.id"],
            name=op.f("fk_guardianships_guardian_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["minor_account_id"],
            ["accounts.id"],
            name=op.f("fk_guardianships_minor_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardianships")),
    )
    op.create_table(
        "device_permissions",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("permission", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_permissions_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "permission", name=op.f("pk_device_permissions")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("birth_date", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("age_bracket", sa.String(length=16), nullable=True))

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_sessions_device_id"), ["device_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_sessions_device_id_devices"),
            "devices",
            ["device_id"],
            ["id"],
            ondelete="SET NULL",
        )

    # Step 1's known devices become the device registry; sessions point at them.
    op.execute(
        "INSERT INTO devices (id, account_id, device_key, kind, first_seen_at, last_seen_at) "
        "SELECT id, account_id, device_key, 'app', first_seen_at, last_seen_at FROM known_devices"
    )
    op.execute(
        "UPDATE sessions SET device_id = (SELECT d.id FROM devices d "
        "WHERE d.account_id = sessions.account_id AND d.device_key = sessions.device_key)"
    )
    op.drop_table("known_devices")

    # Consent receipts are append-only: never updated, never deleted while the
    # account lives. Deleting an account first marks it 'deleting'; then the
    # delete cascades to its receipts.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER consent_receipts_append_only BEFORE UPDATE OR DELETE "
            "ON consent_receipts FOR EACH ROW EXECUTE FUNCTION consent_receipts_guard()"
        )
    else:
        op.execute(
            "CREATE TRIGGER consent_receipts_no_update BEFORE UPDATE ON consent_receipts "
            "BEGIN SELECT RAISE(ABORT, 'consent receipts are append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER consent_receipts_no_delete BEFORE DELETE ON consent_receipts "
            "WHEN EXISTS (SELECT 1 FROM accounts "
            "WHERE id = OLD.account_id AND status <> 'deleting') "
            "BEGIN SELECT RAISE(ABORT, 'consent receipts are kept while the account exists'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER consent_receipts_append_only ON consent_receipts")
        op.execute("DROP FUNCTION consent_receipts_guard()")
    else:
        op.execute("DROP TRIGGER consent_receipts_no_update")
        op.execute("DROP TRIGGER consent_receipts_no_delete")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_sessions_device_id_devices"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_sessions_device_id"))
        batch_op.drop_column("device_id")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("age_bracket")
        batch_op.drop_column("birth_date")

    op.create_table(
        "known_devices",
        sa.Column("id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("account_id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("device_key", sa.VARCHAR(length=64), nullable=False),
        sa.Column("first_seen_at", sa.DATETIME(), nullable=False),
        sa.Column("last_seen_at", sa.DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_known_devices_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_devices")),
        sa.UniqueConstraint(
            "account_id", "device_key", name=op.f("uq_known_devices_account_id_device_key")
        ),
    )
    op.drop_table("device_permissions")
    op.drop_table("guardianships")
    with op.batch_alter_table("guardian_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_guardian_requests_guardian")

    op.drop_table("guardian_requests")
    op.drop_table("devices")
    with op.batch_alter_table("consent_receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_receipts_account_subject")

    op.drop_table("consent_receipts")
    op.drop_table("policy_versions")
