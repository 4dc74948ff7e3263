"""The one table of the Matrix client API: the sync filters clients upload.

A filter is how a client wants its ``/sync`` shaped (how many timeline events a
room, which event types): the client's own settings, kept with the account
(``messaging.metadata``) and deleted with it. Everything else a Matrix client
reads is the messaging domain's data, shaped on the way out: no second store.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime
from kares.fields import personal, table_info

METADATA = "messaging.metadata"


class MatrixFilter(Base):
    __tablename__ = "matrix_filters"
    __table_args__ = (
        table_info(subject="account_id", not_personal=("id",), collected="created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    # the filter's JSON as the client uploaded it (at most 8 KiB)
    definition: Mapped[str] = mapped_column(Text, info=personal(METADATA))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal(METADATA))
