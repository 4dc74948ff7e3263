"""one open SOS per person from the app (issue 12)

``sos_alerts.open_person`` (unique) holds the person of an SOS raised through
the API while it is open and live, as ``open_device`` does for a watch's alarm:
a second SOS while one is open is added to it (``repeats``) instead of telling
every guardian again, and the database decides it in one statement.

Alerts open before this migration: the newest open alert of each person that
no device holds (an app's SOS) takes ``open_person``; older ones stay open for
their guardians but take no new SOS.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE on both databases (a batch rebuild on SQLite would drop the
    # table and, foreign keys on, what points at it)
    op.add_column("sos_alerts", sa.Column("open_person", sa.String(length=32), nullable=True))
    op.execute(
        "UPDATE sos_alerts SET open_person = account_id WHERE id IN ("
        " SELECT a.id FROM sos_alerts a WHERE a.status = 'open' AND a.open_device IS NULL"
        " AND a.source_key IS NULL AND NOT EXISTS ("
        "  SELECT 1 FROM sos_alerts b WHERE b.account_id = a.account_id AND b.status = 'open'"
        "  AND b.open_device IS NULL AND b.source_key IS NULL"
        "  AND (b.created_at > a.created_at OR (b.created_at = a.created_at AND b.id > a.id))))"
    )
    op.create_index("uq_sos_alerts_open_person", "sos_alerts", ["open_person"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_sos_alerts_open_person", table_name="sos_alerts")
    op.execute("ALTER TABLE sos_alerts DROP COLUMN open_person")
