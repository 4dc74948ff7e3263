"""messaging (issue 14): conversations, messages and attachments, the stream of
positions, read receipts and messages hidden for one person

Messages and attachments are keyed by integers and name their sender in a column
that a deleted account sets to NULL: the message stays in the conversation for
the others. Positions (``message_events.position``) come from one sequence.

Revision ID: 0020
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_attachments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("owner_account_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("codec", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_message_attachments_owner_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attachments")),
    )
    with op.batch_alter_table("message_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_attachments_owner_account_id"),
            ["owner_account_id"],
            unique=False,
        )

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=True),
        sa.Column("member_a", sa.String(length=32), nullable=True),
        sa.Column("member_b", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["families.id"],
            name=op.f("fk_conversations_family_id_families"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_a"],
            ["accounts.id"],
            name=op.f("fk_conversations_member_a_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["member_b"],
            ["accounts.id"],
            name=op.f("fk_conversations_member_b_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint("family_id", name=op.f("uq_conversations_family_id")),
        sa.UniqueConstraint(
            "member_a", "member_b", name=op.f("uq_conversations_member_a_member_b")
        ),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conversations_member_a"), ["member_a"], unique=False)
        batch_op.create_index(batch_op.f("ix_conversations_member_b"), ["member_b"], unique=False)

    op.create_table(
        "message_events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("message_position", sa.BigInteger(), nullable=True),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_message_events_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_message_events_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_message_events")),
    )
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_events_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_message_events_conversation_position", ["conversation_id", "position"], unique=False
        )

    op.create_table(
        "message_receipts",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("up_to", sa.BigInteger(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_message_receipts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_message_receipts_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", "account_id", name=op.f("pk_message_receipts")),
    )
    with op.batch_alter_table("message_receipts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_receipts_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("sender_account_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column(
            "attachment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("txn_key", sa.String(length=64), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recalled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["attachment_id"],
            ["message_attachments.id"],
            name=op.f("fk_messages_attachment_id_message_attachments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sender_account_id"],
            ["accounts.id"],
            name=op.f("fk_messages_sender_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_messages")),
        sa.UniqueConstraint("attachment_id", name=op.f("uq_messages_attachment_id")),
        sa.UniqueConstraint(
            "sender_account_id", "txn_key", name=op.f("uq_messages_sender_account_id_txn_key")
        ),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_conversation_position", ["conversation_id", "position"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_messages_sender_account_id"), ["sender_account_id"], unique=False
        )

    op.create_table(
        "message_hidden",
        sa.Column("message_position", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_message_hidden_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_position"],
            ["messages.position"],
            name=op.f("fk_message_hidden_message_position_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_position", "account_id", name=op.f("pk_message_hidden")),
    )
    with op.batch_alter_table("message_hidden", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_hidden_account_id"), ["account_id"], unique=False
        )

    # every family has its conversation from the start (new ones get it with the
    # family): sending never has to write it, so no transaction holding a position
    # waits on another's first write of it
    op.execute(
        "INSERT INTO conversations (id, kind, family_id, created_at) "
        "SELECT id, 'family', id, created_at FROM families"
    )


def downgrade() -> None:
    with op.batch_alter_table("message_hidden", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_hidden_account_id"))

    op.drop_table("message_hidden")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_sender_account_id"))
        batch_op.drop_index("ix_messages_conversation_position")

    op.drop_table("messages")
    with op.batch_alter_table("message_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_receipts_account_id"))

    op.drop_table("message_receipts")
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.drop_index("ix_message_events_conversation_position")
        batch_op.drop_index(batch_op.f("ix_message_events_account_id"))

    op.drop_table("message_events")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversations_member_b"))
        batch_op.drop_index(batch_op.f("ix_conversations_member_a"))

    op.drop_table("conversations")
    with op.batch_alter_table("message_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_attachments_owner_account_id"))

    op.drop_table("message_attachments")
