"""Tables of the privacy core: published policy versions, the consent ledger,
and guardianship of children under 14."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Keyed, not_personal, personal, table_info


class PolicyVersion(Base):
    """A published version of the policy, with the terms each consent can cover.

    Written once, when a catalog version first starts; never changed after.
    """

    __tablename__ = "policy_versions"
    __table_args__ = (table_info(subject=None, why="the published policy itself"),)

    version: Mapped[str] = mapped_column(
        String(32), primary_key=True, info=not_personal("policy metadata")
    )
    published_on: Mapped[date] = mapped_column(Date, info=not_personal("policy metadata"))
    significant: Mapped[bool] = mapped_column(Boolean, info=not_personal("policy metadata"))
    digest: Mapped[str] = mapped_column(String(64), info=not_personal("policy metadata"))
    text_hash: Mapped[str] = mapped_column(String(64), info=not_personal("policy metadata"))
    terms: Mapped[dict[str, Any]] = mapped_column(JSON, info=not_personal("policy metadata"))
    changes: Mapped[list[Any]] = mapped_column(JSON, info=not_personal("policy metadata"))
    reductions: Mapped[list[Any]] = mapped_column(JSON, info=not_personal("policy metadata"))
    first_served_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=not_personal("policy metadata")
    )


class PolicyNotice(Base):
    """Telling existing accounts in the app about a significant revision (policy
    8): how far the telling has got, so a restart resumes where it stopped and
    nobody is told twice. Written with the version; the cursor moves in the same
    transaction as the notices it covers."""

    __tablename__ = "policy_notices"
    __table_args__ = (table_info(subject=None, why="progress of telling about a revision"),)

    version: Mapped[str] = mapped_column(
        ForeignKey("policy_versions.version"), primary_key=True, info=not_personal("version")
    )
    # accounts created before this moment agreed to an earlier version
    before: Mapped[datetime] = mapped_column(UTCDateTime(), info=not_personal("a time"))
    # the last account id told (ids are told in order); None: nobody yet
    told_through: Mapped[str | None] = mapped_column(
        String(32), info=not_personal("a cursor over account ids")
    )
    told: Mapped[int] = mapped_column(default=0, info=not_personal("a count"))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), info=not_personal("a time"))


class ConsentReceipt(Base):
    """One grant or withdrawal. Append-only: database triggers refuse UPDATE,
    and DELETE while the account still exists."""

    __tablename__ = "consent_receipts"
    __table_args__ = (
        Index("ix_consent_receipts_account_subject", "account_id", "subject", "created_at"),
        # the guardian who acted for a child (deleting the guardian's account
        # replaces it by a marker: the one change the triggers allow)
        table_info(
            subject="account_id",
            also_about=("actor_account_id",),
            not_personal=("id",),
            collected="created_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), info=personal("privacy.consent")
    )
    # "policy", "function:<key>", "category:<key>", "third_party:<key>"
    subject: Mapped[str] = mapped_column(String(96), info=personal("privacy.consent"))
    action: Mapped[str] = mapped_column(String(16), info=personal("privacy.consent"))
    policy_version: Mapped[str] = mapped_column(
        ForeignKey("policy_versions.version"), info=personal("privacy.consent")
    )
    via: Mapped[str] = mapped_column(String(16), info=personal("privacy.consent"))
    actor_account_id: Mapped[str | None] = mapped_column(
        String(32), info=personal("minors.guardianship")
    )
    session_id: Mapped[str | None] = mapped_column(
        String(32), info=personal("security.login_environment")
    )
    device_id: Mapped[str | None] = mapped_column(String(32), info=personal("device.identifier"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("privacy.consent"))


class GuardianRequest(Base):
    """A child's request that a guardian approve their account (policy 6)."""

    __tablename__ = "guardian_requests"
    __table_args__ = (
        Index("ix_guardian_requests_guardian", "guardian_phone_hash", "created_at"),
        table_info(
            subject="minor_account_id",
            not_personal=("id",),
            # the guardian asked for, named by number before they answer
            keyed=(
                Keyed("guardian_phone_hash", value="accounts.phone", purpose="phone", role="also"),
            ),
            # an answered or lapsed request: a month after it expired it is of no use
            lifetime={"expires_at": timedelta(days=30)},
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    minor_account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), info=personal("minors.guardianship")
    )
    guardian_phone_hash: Mapped[str] = mapped_column(
        String(64), info=personal("minors.guardianship")
    )
    status: Mapped[str] = mapped_column(String(16), info=personal("minors.guardianship"))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("minors.guardianship")
    )
    expires_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("minors.guardianship")
    )


class Guardianship(Base):
    """An adult account's verified guardianship of a child's account."""

    __tablename__ = "guardianships"
    __table_args__ = (
        table_info(
            subject="minor_account_id",
            also_about=("guardian_account_id",),
            not_personal=("id",),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    minor_account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), info=personal("minors.guardianship")
    )
    guardian_account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), info=personal("minors.guardianship")
    )
    approved_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("minors.guardianship")
    )
    ended_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("minors.guardianship")
    )
    note: Mapped[str | None] = mapped_column(Text, info=personal("minors.guardianship"))
