"""the watch port held at its edges; no IMEI and no SOS coordinates as text (step 6)

- A device has one live SOS alert at a time (``sos_alerts.open_device``,
  unique); further alarms are added to it (``repeats``, ``repeated_at``); a
  device's alarm keeps its own time (``alarm_at``).
- ``watch_hello_counts``: introductions per peer address (a keyed hash) and
  hour, counted by one upsert, for the limit of ``POST /watches/hello``.

- What a watch reported was keyed by its protocol id, usually its IMEI, in
  plaintext: ``location_fixes.client_id`` (``w:<id>:<kind>:<ms>``) and
  ``sos_alerts.source_key`` (``w:<id>:<ms>:<status>``). New keys name the watch
  by a prefix of the IMEI's keyed hash; the key to compute it for old rows is
  not the migration's to hold, so old keys keep only the id's last four
  characters (``w:~1234:...``), as the docs promise. (Only a resend of a frame
  stored before this migration could be stored a second time.)
- SOS notices stored the alert's coordinates in their text
  (``notifications.body`` "... near 31.23040, 121.47370 ..." and
  ``data.lat``/``data.lon``). They now reference the alert, and the inbox
  renders the place when it is read; old notices are rewritten the same way.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_NEAR = re.compile(r" near -?\d+(?:\.\d+)?, -?\d+(?:\.\d+)?")


def _tail_key(key: str) -> str:
    """``w:<id>:rest`` -> ``w:~<last 4 of id>:rest``; anything else as it is."""
    prefix, sep, rest = key.partition(":")
    ident, sep2, tail = rest.partition(":")
    if prefix != "w" or not sep or not sep2 or ident.startswith("~"):
        return key
    return f"w:~{ident[-4:]}:{tail}"


def _rekey(bind: sa.Connection, table: str, column: str, pk: str) -> None:
    t = sa.table(table, sa.column(pk), sa.column("account_id"), sa.column(column))
    rows = bind.execute(
        sa.select(t.c[pk], t.c.account_id, t.c[column]).where(t.c[column].like("w:%"))
    ).all()
    taken = {(r[1], r[2]) for r in rows}
    for ident, account_id, key in rows:
        new = _tail_key(key)
        if new == key:
            continue
        if (account_id, new) in taken:  # two watches with the same tail, same time
            new = f"{new}:{ident}"[:96]
        taken.add((account_id, new))
        bind.execute(sa.update(t).where(t.c[pk] == ident).values({column: new}))


def _sos_notices(bind: sa.Connection) -> None:
    t = sa.table(
        "notifications",
        sa.column("id", sa.String),
        sa.column("category", sa.String),
        sa.column("body", sa.Text),
        sa.column("data", sa.JSON),
    )
    rows = bind.execute(sa.select(t.c.id, t.c.body, t.c.data).where(t.c.category == "sos")).all()
    for ident, body, data in rows:
        data = dict(data or {})
        new_body = _NEAR.sub("", body or "")
        if "sos_id" in data and "acknowledged_by" not in data:
            data["render"] = "sos"
        had = "lat" in data or "lon" in data
        data.pop("lat", None)
        data.pop("lon", None)
        if had or new_body != body:
            bind.execute(sa.update(t).where(t.c.id == ident).values(body=new_body, data=data))


def upgrade() -> None:
    # one live alert per device, its repeats, and an alarm's own time; plain
    # ALTER TABLE on both databases (a batch rebuild on SQLite would drop the
    # table and, foreign keys on, what points at it)
    op.add_column("sos_alerts", sa.Column("alarm_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sos_alerts", sa.Column("open_device", sa.String(length=32), nullable=True))
    op.add_column(
        "sos_alerts", sa.Column("repeats", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("sos_alerts", sa.Column("repeated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("uq_sos_alerts_open_device", "sos_alerts", ["open_device"], unique=True)
    op.create_table(
        "watch_hello_counts",
        sa.Column("peer_hash", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("peer_hash", name=op.f("pk_watch_hello_counts")),
    )
    bind = op.get_bind()
    _rekey(bind, "location_fixes", "client_id", "id")
    _rekey(bind, "sos_alerts", "source_key", "id")
    _sos_notices(bind)


def downgrade() -> None:
    # the plaintext ids are gone for good, which is the point
    op.drop_table("watch_hello_counts")
    op.drop_index("uq_sos_alerts_open_device", table_name="sos_alerts")
    for column in ("repeated_at", "repeats", "open_device", "alarm_at"):
        op.execute(f"ALTER TABLE sos_alerts DROP COLUMN {column}")
