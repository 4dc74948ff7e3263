"""families invitations sharing (step 3)

Families, their members with each member's sharing choices, invitations and
wrong-code attempts; accounts.phone and phone_hash become nullable for managed
profiles (dependants a guardian adds, who never sign in).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PHONE_COLUMNS = re.compile(r"\b(phone|phone_hash) (TEXT|VARCHAR\(64\))( NOT NULL)?(?=,)")


def _sqlite_phone_nullable(nullable: bool) -> None:
    """Drop (or restore) NOT NULL on accounts.phone and phone_hash on SQLite.

    Not a batch "move and copy": with foreign keys on (and the pragma cannot
    be turned off inside the migration's transaction), dropping the old
    accounts table would cascade into every table that points at it. SQLite
    documents editing the stored schema text for exactly this change
    (https://sqlite.org/lang_altertable.html, "other kinds of table schema
    changes"); the rows on disk are untouched.
    """
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'accounts'"
    ).scalar_one()
    suffix = "" if nullable else " NOT NULL"
    new, n = _PHONE_COLUMNS.subn(lambda m: f"{m[1]} {m[2]}{suffix}", sql)
    if n != 2:
        raise RuntimeError(f"unexpected accounts schema, not changed: {sql}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text(
            "UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'accounts'"
        ).bindparams(sql=new)
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    op.create_table(
        "families",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("photo_media_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_families_owner_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_families")),
    )
    with op.batch_alter_table("families", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_families_owner_account_id"), ["owner_account_id"], unique=False
        )

    op.create_table(
        "family_members",
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", sa.String(length=8), nullable=False),
        sa.Column("health", sa.Boolean(), nullable=False),
        sa.Column("schedule", sa.Boolean(), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sharing_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sharing_updated_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_family_members_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["families.id"],
            name=op.f("fk_family_members_family_id_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("family_id", "account_id", name=op.f("pk_family_members")),
    )
    with op.batch_alter_table("family_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_family_members_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "family_invitations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("created_by_account_id", sa.String(length=32), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_account_id"],
            ["accounts.id"],
            name=op.f("fk_family_invitations_created_by_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["families.id"],
            name=op.f("fk_family_invitations_family_id_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_invitations")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_family_invitations_code_hash")),
    )
    with op.batch_alter_table("family_invitations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_family_invitations_created_by_account_id"),
            ["created_by_account_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_family_invitations_family_id"), ["family_id"], unique=False
        )

    op.create_table(
        "invitation_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_invitation_attempts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitation_attempts")),
    )
    with op.batch_alter_table("invitation_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invitation_attempts_account_created", ["account_id", "created_at"], unique=False
        )

    # Managed profiles (dependants) have no phone number.
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_phone_nullable(True)
    else:
        op.alter_column("accounts", "phone", existing_type=sa.Text(), nullable=True)
        op.alter_column("accounts", "phone_hash", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("invitation_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_invitation_attempts_account_created")
    op.drop_table("invitation_attempts")
    with op.batch_alter_table("family_invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_family_invitations_family_id"))
        batch_op.drop_index(batch_op.f("ix_family_invitations_created_by_account_id"))
    op.drop_table("family_invitations")
    with op.batch_alter_table("family_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_family_members_account_id"))
    op.drop_table("family_members")
    with op.batch_alter_table("families", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_families_owner_account_id"))
    op.drop_table("families")

    # Managed profiles cannot exist without families: they go (their consent
    # receipts may only go with an account marked 'deleting').
    op.execute("UPDATE accounts SET status = 'deleting' WHERE phone IS NULL")
    op.execute("DELETE FROM accounts WHERE phone IS NULL")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_phone_nullable(False)
    else:
        op.alter_column(
            "accounts", "phone_hash", existing_type=sa.String(length=64), nullable=False
        )
        op.alter_column("accounts", "phone", existing_type=sa.Text(), nullable=False)
