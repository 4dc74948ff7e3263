"""Tables of the media domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import personal, table_info


class MediaObject(Base):
    """A re-encoded image. Only the re-encoded bytes are kept, never the upload."""

    __tablename__ = "media_objects"
    __table_args__ = (
        table_info(
            subject="owner_account_id",
            not_personal=(
                "id",
                "purpose",
                "content_type",
                "width",
                "height",
                "byte_size",
                "sha256",
                "created_at",
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary, info=personal("account.profile"))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
