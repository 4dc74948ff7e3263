"""Tables of the accounts domain: the login history, linked third-party
identities and the sign-in tickets of their flows. The account and its
sessions are identity's (``kares.identity.models``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kares.db import Base, UTCDateTime, new_id
from kares.fields import Keyed, personal, table_info


class LoginEvent(Base):
    """The login environment of every sign-in attempt on an account (policy 1.4)."""

    __tablename__ = "login_events"
    __table_args__ = (
        Index("ix_login_events_account_time", "account_id", "occurred_at"),
        table_info(
            subject="account_id",
            not_personal=("id", "session_id", "method", "success", "reason", "new_device"),
            collected="occurred_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(String(16))
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(48))
    new_device: Mapped[bool] = mapped_column(Boolean, default=False)
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
    occurred_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), info=personal("security.login_environment")
    )


class ExternalIdentity(Base):
    """A WeChat or Apple account linked to a Kares account."""

    __tablename__ = "external_identities"
    __table_args__ = (
        UniqueConstraint("provider", "subject"),
        UniqueConstraint("account_id", "provider"),
        table_info(subject="account_id", not_personal=("id", "provider")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(255), info=personal("account.external_id"))
    nickname: Mapped[str | None] = mapped_column(String(64), info=personal("account.profile"))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("account.external_id"))


class AuthTicket(Base):
    """Short-lived single-use secrets of the third-party sign-in flows.

    kind ``nonce``: a server-issued nonce an Apple ID token must carry.
    kind ``link``: a verified third-party identity waiting for the user to
    prove a phone number, so it can be linked to that phone's account.
    """

    __tablename__ = "auth_tickets"
    __table_args__ = (
        Index("ix_auth_tickets_ip_created", "ip", "created_at"),
        table_info(
            subject=None,
            why="sign-in tickets: not linked to an account, purged within an hour",
            collected="created_at",
            lifetime={"expires_at": timedelta(hours=1)},
            not_personal=(
                "id",
                "secret_hash",
                "kind",
                "provider",
                "created_at",
                "expires_at",
                "used_at",
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(255), info=personal("account.external_id"))
    nickname: Mapped[str | None] = mapped_column(String(64), info=personal("account.profile"))
    avatar_url: Mapped[str | None] = mapped_column(String(512), info=personal("account.profile"))
    ip: Mapped[str | None] = mapped_column(String(64), info=personal("security.login_environment"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PasswordLimit(Base):
    """Password sign-in attempts counted per phone number and per client address.

    A number's row is keyed by a keyed hash of the number, whether or not an
    account has it, so an unknown number is counted, locked and refused exactly
    like a registered one. ``failures`` (in a row, since the last success) and
    ``locked_until`` are the lockout; ``window_started_at`` and ``window_count``
    the hourly limit. An address's row uses only the hourly limit. Each attempt
    changes its rows in one statement (``accounts.limits``).
    """

    __tablename__ = "password_limits"
    __table_args__ = (
        Index("ix_password_limits_window", "window_started_at"),
        table_info(
            subject=None,
            why="sign-in limits: keyed hashes of a number or an address, kept about an hour",
            keyed=(
                Keyed(
                    "key",
                    value="accounts.phone",
                    purpose="password-limit-number",
                    when=(("scope", "number"),),
                ),
            ),
            collected="window_started_at",
            # over once its window ended and no lock runs (limits.purge, WINDOW)
            lifetime={"window_started_at": timedelta(hours=1), "locked_until": timedelta(0)},
            not_personal=(
                "scope",
                "failures",
                "locked_until",
                "window_started_at",
                "window_count",
            ),
        ),
    )

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)  # "number" | "ip"
    key: Mapped[str] = mapped_column(
        String(64), primary_key=True, info=personal("security.login_environment")
    )
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    window_count: Mapped[int] = mapped_column(Integer)
