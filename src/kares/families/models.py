"""Tables of the families domain: families, their members (with each member's
sharing choices in that family), invitations, and wrong-code attempts."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import personal, table_info


class Family(Base):
    """A family circle. Its owner decides who is in it; dissolving deletes it."""

    __tablename__ = "families"
    __table_args__ = (
        table_info(
            subject="owner_account_id",
            not_personal=("id", "photo_media_id", "created_at", "updated_at"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(40), info=personal("family.membership"))
    # Deleting the owner's account deletes the family (the rights step hands
    # ownership on first, when it deletes accounts).
    owner_account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    # The group photo: a media object owned by the family's owner account.
    # Not a foreign key (like accounts.avatar_media_id): the service replaces
    # and deletes it together with this column.
    photo_media_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FamilyMember(Base):
    """One account in one family: its role, and what it shares with that family."""

    __tablename__ = "family_members"
    __table_args__ = (
        # sharing_updated_by: the guardian who set a dependant's sharing
        table_info(
            subject="account_id",
            also_about=("sharing_updated_by",),
            not_personal=("family_id",),
        ),
    )

    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # owner | guardian | member | dependant
    role: Mapped[str] = mapped_column(String(16), info=personal("family.membership"))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("family.membership"))
    # Sharing choices in this family: location live | history | off (history
    # implies live), health summaries, schedule; a pause shares nothing until
    # it ends. Health is a level: off (health false), summaries (health true),
    # series (health and health_series true: raw series imply summaries).
    location: Mapped[str] = mapped_column(String(8), info=personal("family.membership"))
    health: Mapped[bool] = mapped_column(Boolean, info=personal("family.membership"))
    health_series: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), info=personal("family.membership")
    )
    schedule: Mapped[bool] = mapped_column(Boolean, info=personal("family.membership"))
    paused_until: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("family.membership")
    )
    sharing_updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("family.membership")
    )
    # who last changed them: the member, or (for a dependant) one of its guardians
    sharing_updated_by: Mapped[str | None] = mapped_column(
        String(32), info=personal("family.membership")
    )


class FamilyInvitation(Base):
    """An invitation to join a family: a short code and a signed token (QR).

    Neither secret is stored: both are derived from the id with the server's
    index key, and the code is found by its keyed hash.
    """

    __tablename__ = "family_invitations"
    __table_args__ = (
        table_info(
            subject="created_by_account_id",
            not_personal=(
                "id",
                "family_id",
                "code_hash",
                "max_uses",
                "uses",
                "expires_at",
                "revoked_at",
            ),
            # a month after it expired, a code is answered "not found" like any other
            lifetime={"expires_at": timedelta(days=30)},
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    created_by_account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("family.membership"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InvitationAttempt(Base):
    """A code that matched no invitation, counted per account for an hour so
    codes cannot be guessed (the only write a refused join makes)."""

    __tablename__ = "invitation_attempts"
    __table_args__ = (
        Index("ix_invitation_attempts_account_created", "account_id", "created_at"),
        table_info(
            subject="account_id",
            not_personal=("id",),
            lifetime={"created_at": timedelta(hours=1)},  # counted for an hour
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("family.membership"))
