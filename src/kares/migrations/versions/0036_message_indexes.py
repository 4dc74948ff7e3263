"""two partial indexes of messages for every sync (issue 14)

``ix_messages_unread``:

A Matrix sync and the conversation list count, per conversation, the others'
messages after the reader's receipt. The count read every such message's row
(its kind, whether it was recalled, its sender, when it was sent): a member who
has not read for a while made every sync of theirs scan them all. The partial
index holds exactly the messages that can be unread (not notices, not
recalled), with the sender, the time and the columns of its own condition
(which SQLite checks against the index), so the count reads the index alone.

``ix_messages_notices``: a Matrix sync looks for the reader's own notices
(left, removed) among the positions it reads. That search went through every
message the reader ever sent (``ix_messages_sender_account_id``); notices are
few, and this index holds only them, by sender and position.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

WHERE = sa.text("kind != 'system' AND recalled_at IS NULL")
NOTICES = sa.text("kind = 'system'")


def upgrade() -> None:
    op.create_index(
        "ix_messages_unread",
        "messages",
        ["conversation_id", "position", "sender_account_id", "sent_at", "kind", "recalled_at"],
        unique=False,
        sqlite_where=WHERE,
        postgresql_where=WHERE,
    )
    op.create_index(
        "ix_messages_notices",
        "messages",
        ["sender_account_id", "position"],
        unique=False,
        sqlite_where=NOTICES,
        postgresql_where=NOTICES,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_notices", table_name="messages")
    op.drop_index("ix_messages_unread", table_name="messages")
