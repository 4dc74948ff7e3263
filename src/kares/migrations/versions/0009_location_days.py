"""the day store: each person's good fixes of a UTC day, packed as columns (step 5)

location_days is a derived copy of location_fixes, read by the track and the
timeline instead of a day's 86,400 rows. It is personal data like the fixes, and
must never outlive any of them: triggers delete a day's copy whenever one of its
fixes is deleted (history deletion, retention, the account's deletion) or changed
(anonymisation), whatever statement does it; the copy is packed again later from
what is left. The account's deletion also reaches it through its foreign key.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# a fix's UTC day is recorded_ms / 86400000 (integer division; times are after 1970)

_SQLITE_TRIGGERS = (
    """
CREATE TRIGGER location_days_fix_deleted AFTER DELETE ON location_fixes
BEGIN
    DELETE FROM location_days
    WHERE account_id = OLD.account_id AND day = OLD.recorded_ms / 86400000;
END
""",
    """
CREATE TRIGGER location_days_fix_changed AFTER UPDATE ON location_fixes
BEGIN
    DELETE FROM location_days
    WHERE account_id = OLD.account_id AND day = OLD.recorded_ms / 86400000;
    DELETE FROM location_days
    WHERE account_id = NEW.account_id AND day = NEW.recorded_ms / 86400000;
END
""",
)

# PostgreSQL: one statement-level trigger per kind, over the rows it touched
_PG_FUNCTIONS = (
    """
CREATE FUNCTION location_days_drop_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM location_days d USING (SELECT DISTINCT account_id, recorded_ms / 86400000 AS day
                                       FROM old_fixes) o
    WHERE d.account_id = o.account_id AND d.day = o.day;
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION location_days_drop_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM location_days d USING (
        SELECT account_id, recorded_ms / 86400000 AS day FROM old_fixes
        UNION SELECT account_id, recorded_ms / 86400000 AS day FROM new_fixes) o
    WHERE d.account_id = o.account_id AND d.day = o.day;
    RETURN NULL;
END $$
""",
    """
CREATE TRIGGER location_days_fix_deleted AFTER DELETE ON location_fixes
REFERENCING OLD TABLE AS old_fixes FOR EACH STATEMENT EXECUTE FUNCTION location_days_drop_old()
""",
    """
CREATE TRIGGER location_days_fix_changed AFTER UPDATE ON location_fixes
REFERENCING OLD TABLE AS old_fixes NEW TABLE AS new_fixes
FOR EACH STATEMENT EXECUTE FUNCTION location_days_drop_changed()
""",
)


def upgrade() -> None:
    op.create_table(
        "location_days",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("through_id", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("ids", sa.LargeBinary(), nullable=False),
        sa.Column("t_ms", sa.LargeBinary(), nullable=False),
        sa.Column("lat", sa.LargeBinary(), nullable=False),
        sa.Column("lon", sa.LargeBinary(), nullable=False),
        sa.Column("accuracy_m", sa.LargeBinary(), nullable=False),
        sa.Column("speed_mps", sa.LargeBinary(), nullable=False),
        sa.Column("precise", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_location_days_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_location_days")),
    )
    statements = _PG_FUNCTIONS if op.get_bind().dialect.name == "postgresql" else _SQLITE_TRIGGERS
    for sql in statements:
        op.execute(sql)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS location_days_fix_deleted ON location_fixes"
        if op.get_bind().dialect.name == "postgresql"
        else "DROP TRIGGER IF EXISTS location_days_fix_deleted"
    )
    op.execute(
        "DROP TRIGGER IF EXISTS location_days_fix_changed ON location_fixes"
        if op.get_bind().dialect.name == "postgresql"
        else "DROP TRIGGER IF EXISTS location_days_fix_changed"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS location_days_drop_old()")
        op.execute("DROP FUNCTION IF EXISTS location_days_drop_changed()")
    op.drop_table("location_days")
