"""Tables of identity: the account, its sessions, and the one-time codes that
prove a phone number. Every layer above may read them; the accounts domain
(sign-up, sign-in, profile) is the one that writes most of them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Encrypted, Keyed, not_personal, personal, table_info


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        table_info(
            subject="id",
            not_personal=(
                "id",
                "status",
                "privacy_version",
                "created_at",
                "updated_at",
                "avatar_media_id",
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # None only for a managed profile (a dependant added by a guardian, status
    # "managed"): it never signs in, so no caller's account lacks a phone.
    phone: Mapped[str] = mapped_column(
        Encrypted("accounts.phone"), nullable=True, info=personal("contact.phone")
    )
    phone_hash: Mapped[str] = mapped_column(
        String(64), unique=True, nullable=True, info=personal("contact.phone")
    )
    name: Mapped[str | None] = mapped_column(String(64), info=personal("account.profile"))
    # Not a foreign key (media_objects already points at accounts); the
    # service replaces and deletes avatars together with this column.
    avatar_media_id: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str | None] = mapped_column(
        String(255), info=personal("account.credentials")
    )
    # Policy 6: a birth date (stored encrypted) or a declared age bracket.
    birth_date: Mapped[str | None] = mapped_column(
        Encrypted("accounts.birth_date"), info=personal("account.age")
    )
    age_bracket: Mapped[str | None] = mapped_column(String(16), info=personal("account.age"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # bumped with every change the guard's decision depends on (consents, device
    # permissions, guardians): cached decisions are keyed by it
    privacy_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OtpChallenge(Base):
    """One SMS code sent to one number. Only the newest per number is usable."""

    __tablename__ = "otp_challenges"
    __table_args__ = (
        Index("ix_otp_challenges_phone_created", "phone_hash", "created_at"),
        Index("ix_otp_challenges_ip_created", "ip", "created_at"),
        table_info(
            subject=None,
            why="one-time codes: keyed by a hash of the number, kept minutes",
            keyed=(Keyed("phone_hash", value="accounts.phone", purpose="phone"),),
            not_personal=("id", "purpose", "created_at", "expires_at", "attempts", "consumed_at"),
            collected="created_at",
            # the hourly caps count codes of the last hour: kept an hour past expiry
            lifetime={"expires_at": timedelta(hours=1)},
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    phone_hash: Mapped[str] = mapped_column(String(64), info=personal("contact.phone"))
    purpose: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(
        String(64), info=not_personal("keyed hash of a one-time code")
    )
    ip: Mapped[str] = mapped_column(String(64), info=personal("security.login_environment"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Session(Base):
    """A signed-in device: a bearer token (apps, watches) or a portal cookie."""

    __tablename__ = "sessions"
    __table_args__ = (
        table_info(
            subject="account_id",
            not_personal=(
                "id",
                "token_hash",
                "device_id",
                "kind",
                "method",
                "label",
                "expires_at",
                "revoked_at",
            ),
            # the login environment is refreshed on each use: collected when last seen
            collected="last_seen_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(64))
    device_key: Mapped[str] = mapped_column(String(64), info=personal("device.identifier"))
    device_model: Mapped[str | None] = mapped_column(String(64), info=personal("device.attributes"))
    os: Mapped[str | None] = mapped_column(String(32), info=personal("device.attributes"))
    os_version: Mapped[str | None] = mapped_column(String(32), info=personal("device.attributes"))
    app_version: Mapped[str | None] = mapped_column(String(32), info=personal("device.attributes"))
    language: Mapped[str | None] = mapped_column(String(35), info=personal("device.attributes"))
    user_agent: Mapped[str | None] = mapped_column(
        String(256), info=personal("security.login_environment")
    )
    ip: Mapped[str] = mapped_column(String(64), info=personal("security.login_environment"))
    place: Mapped[str | None] = mapped_column(
        String(128), info=personal("security.login_environment")
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("security.login_environment")
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("security.login_environment")
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
