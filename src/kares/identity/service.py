"""Identity: who someone is and how they prove it.

A phone number (validated, and found by a keyed hash, never by its plain
value), the one-time SMS codes that prove it, and the bearer tokens of
sessions. Every layer above asks here who a caller is; the privacy core hangs
consent on the account this resolves. Nothing here knows a feature.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import phonenumbers
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto
from kares.db import Conn, Entities, Statement
from kares.errors import Problem, retry_after
from kares.gateways.sms import SmsError, SmsMessage
from kares.identity.models import Account, OtpChallenge, Session
from kares.logs import mask_phone
from kares.runtime import Runtime

log = logging.getLogger("kares.identity")

# sessions of this kind are tracker credentials (OwnTracks, Overland, ...):
# the guard lets them call only the routes that upload locations
TRACKER_KIND = "tracker"

TOKEN_PREFIX = "kares_"


# session kinds that are devices, not people: they do not expire after a month unused
LONG_LIVED = frozenset({"watch", "tracker"})


def parse_phone(raw: str, region: str) -> str:
    """Validate and normalise to E.164 (``+8613800138000``), or a 422 Problem."""
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise Problem(422, "phone.invalid", "That is not a phone number.") from exc
    if not phonenumbers.is_valid_number(num):
        raise Problem(422, "phone.invalid", "That is not a valid phone number.")
    kind = phonenumbers.number_type(num)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise Problem(
            422, "phone.not_mobile", "Codes are sent by SMS, so the number must be a mobile number."
        )
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def phone_index(e164: str) -> str:
    return crypto.blind_index(e164, purpose="phone")


async def find_by_phone(s: AsyncSession, e164: str) -> Account | None:
    q = select(Account).where(Account.phone_hash == phone_index(e164))
    return (await s.execute(q)).scalar_one_or_none()


@dataclass(frozen=True)
class CodeSent:
    phone: str
    expires_in: int
    resend_after: int


def _code_hash(challenge_id: str, code: str) -> str:
    return crypto.blind_index(f"{challenge_id}:{code}", purpose="otp")


async def request_code(
    s: AsyncSession, rt: Runtime, *, phone: str, purpose: str, ip: str
) -> CodeSent:
    """Send a fresh code by SMS, within the cooldown and hourly caps."""
    cfg = rt.settings
    e164 = parse_phone(phone, cfg.default_region)
    ph = phone_index(e164)
    now = clock.utcnow()
    hour_ago = now - timedelta(hours=1)

    latest = (
        await s.execute(
            select(OtpChallenge.created_at)
            .where(OtpChallenge.phone_hash == ph)
            .order_by(OtpChallenge.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if latest is not None and (now - latest).total_seconds() < cfg.otp_resend_cooldown_seconds:
        wait = cfg.otp_resend_cooldown_seconds - (now - latest).total_seconds()
        raise Problem(
            429,
            "otp.cooldown",
            f"A code was just sent. You can ask for another in {int(wait + 0.999)} s.",
            headers=retry_after(wait),
        )
    by_number = (
        await s.execute(
            select(func.count(), func.min(OtpChallenge.created_at)).where(
                OtpChallenge.phone_hash == ph, OtpChallenge.created_at > hour_ago
            )
        )
    ).one()
    if by_number[0] >= cfg.otp_per_number_per_hour:
        wait = (by_number[1] + timedelta(hours=1) - now).total_seconds()
        raise Problem(
            429,
            "otp.number_limit",
            "Too many codes were sent to this number in the last hour.",
            headers=retry_after(wait),
        )
    by_ip = (
        await s.execute(
            select(func.count(), func.min(OtpChallenge.created_at)).where(
                OtpChallenge.ip == ip, OtpChallenge.created_at > hour_ago
            )
        )
    ).one()
    if by_ip[0] >= cfg.otp_per_ip_per_hour:
        wait = (by_ip[1] + timedelta(hours=1) - now).total_seconds()
        raise Problem(
            429,
            "otp.ip_limit",
            "Too many codes were requested from this network in the last hour.",
            headers=retry_after(wait),
        )

    code = f"{secrets.randbelow(10**cfg.otp_length):0{cfg.otp_length}d}"
    challenge = OtpChallenge(
        id=secrets.token_hex(16),
        phone_hash=ph,
        purpose=purpose,
        ip=ip,
        created_at=now,
        expires_at=now + timedelta(seconds=cfg.otp_ttl_seconds),
        attempts=0,
    )
    challenge.code_hash = _code_hash(challenge.id, code)
    s.add(challenge)
    await s.commit()

    minutes = max(1, cfg.otp_ttl_seconds // 60)
    msg = SmsMessage(
        to=e164,
        template="otp",
        params={"code": code, "minutes": str(minutes)},
        text=f"[Kares] Your verification code is {code}. It expires in {minutes} minutes. "
        "Never share it with anyone.",
    )
    try:
        await rt.sms.send(msg)
    except SmsError as exc:
        # Not sent: take the challenge back so it neither counts nor blocks a retry.
        await s.delete(challenge)
        await s.commit()
        log.warning("SMS to %s failed: %s", e164, exc)
        raise Problem(502, "sms.unavailable", "The code could not be sent. Try again.") from exc
    log.info("code sent to %s for %s", e164, purpose)
    return CodeSent(mask_phone(e164), cfg.otp_ttl_seconds, cfg.otp_resend_cooldown_seconds)


async def check_code(s: AsyncSession, rt: Runtime, *, ph: str, purpose: str, code: str) -> str:
    """Check a code without consuming it; returns the challenge id. Wrong guesses count."""
    cfg = rt.settings
    if not re.fullmatch(rf"\d{{{cfg.otp_length}}}", code):
        raise Problem(422, "otp.malformed", f"A code is {cfg.otp_length} digits.")
    ch = (
        await s.execute(
            select(OtpChallenge)
            .where(OtpChallenge.phone_hash == ph, OtpChallenge.purpose == purpose)
            .order_by(OtpChallenge.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    now = clock.utcnow()
    if ch is None:
        raise Problem(400, "otp.not_requested", "No code was sent to this number. Ask for one.")
    if ch.consumed_at is not None:
        raise Problem(400, "otp.used", "That code was already used. Ask for a new one.")
    if ch.attempts >= cfg.otp_max_attempts:
        raise Problem(429, "otp.too_many_attempts", "Too many wrong codes. Ask for a new one.")
    if now >= ch.expires_at:
        raise Problem(400, "otp.expired", "That code has expired. Ask for a new one.")
    if not crypto.constant_time_equal(ch.code_hash, _code_hash(ch.id, code)):
        res = await s.execute(
            update(OtpChallenge)
            .where(OtpChallenge.id == ch.id)
            .values(attempts=OtpChallenge.attempts + 1)
            .returning(OtpChallenge.attempts)
        )
        attempts = int(res.scalar_one())
        await s.commit()
        left = cfg.otp_max_attempts - attempts
        if left <= 0:
            raise Problem(429, "otp.too_many_attempts", "Too many wrong codes. Ask for a new one.")
        raise Problem(400, "otp.invalid", "That code is not right.", remaining_attempts=left)
    return ch.id


async def consume_code(s: AsyncSession, rt: Runtime, challenge_id: str) -> None:
    """Mark the code used; exactly one concurrent caller wins."""
    res = await s.execute(
        update(OtpChallenge)
        .where(
            OtpChallenge.id == challenge_id,
            OtpChallenge.consumed_at.is_(None),
            OtpChallenge.attempts < rt.settings.otp_max_attempts,
        )
        .values(consumed_at=clock.utcnow())
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        await s.rollback()
        raise Problem(400, "otp.used", "That code was already used. Ask for a new one.")


async def bump_privacy_version(s: AsyncSession, account_id: str) -> None:
    """Mark that something the guard's decision about this account depends on
    changed (a consent, a device's permissions, a guardian), in the caller's
    transaction: cached decisions keyed by the old version are never used again,
    in this process or any other (each request reads the version with its session)."""
    await s.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(privacy_version=Account.privacy_version + 1)
    )


def usable(account: Account, sess: Session) -> bool:
    """Whether the account may use this session: an active account any of its
    sessions; a managed profile (a child or elder run by a guardian) has no
    sign-in of its own, so only the session of its paired watch."""
    return _usable(account.status, sess.kind)


def _usable(status: str, kind: str) -> bool:
    return status == "active" or (status == "managed" and kind == "watch")


def _live(revoked_at: datetime | None, expires_at: datetime, now: datetime) -> bool:
    return revoked_at is None and expires_at > now


def credential_state(sess: Session, now: datetime) -> tuple[datetime | None, bool]:
    """What a credential backed by a session (a tracker, an app password) shows
    its owner: when it was last used (None: never), and whether it is revoked or
    expired."""
    used = sess.last_seen_at if sess.last_seen_at > sess.created_at else None
    return used, not _live(sess.revoked_at, sess.expires_at, now)


# built once: the one query every signed-in request makes (the account's
# privacy_version comes with it, for the guard's cached decisions)
def _session_and_account(where: Any) -> Entities:
    return Entities(
        (Session, Account),
        lambda *cols: select(*cols).join(Account, Account.id == Session.account_id).where(where),
    )


_BY_TOKEN = _session_and_account(Session.token_hash == bindparam("token_hash"))


# the same for a session the server holds itself (a watch's connection, a live stream)
_BY_SESSION_ID = _session_and_account(Session.id == bindparam("session_id"))


async def live_session(s: AsyncSession, session_id: str) -> tuple[Account, Session] | None:
    """A session the server already holds, with its account, read fresh in one
    query: None once it is revoked or expired, or its account cannot use it."""
    row = await _BY_SESSION_ID.first(s, {"session_id": session_id})
    if row is None:
        return None
    sess, account = row
    if not _live(sess.revoked_at, sess.expires_at, clock.utcnow()):
        return None
    return (account, sess) if usable(account, sess) else None


class SessionFacts(NamedTuple):
    """What the request path needs of a live session and its account, as plain
    values (no ORM objects): the caller of a steady-state request."""

    session_id: str
    account_id: str
    kind: str
    device_id: str | None
    privacy_version: int
    status: str
    birth_date: str | None  # as stored (decrypted)
    age_bracket: str | None
    label: str | None  # the session's own (a Matrix client's device id, kares.protocols.matrix)


_FACTS = Statement(
    select(
        Session.id,
        Session.account_id,
        Session.kind,
        Session.device_id,
        Account.privacy_version,
        Account.status,
        Account.birth_date,
        Account.age_bracket,
        Session.label,
        Session.expires_at,
        Session.revoked_at,
        Session.last_seen_at,
    )
    .join(Account, Account.id == Session.account_id)
    .where(Session.token_hash == bindparam("token_hash"))
)


async def steady_session(s: Conn, rt: Runtime, token: str) -> SessionFacts | None:
    """The live session behind a token when nothing about it needs writing (it was
    used within ``session_touch_seconds``): its facts, in one statement. None when
    :func:`authenticate` must answer instead (no such live session, or one to
    touch): it decides the same, with the account and session as objects."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    row = await _FACTS.first(s, {"token_hash": crypto.token_hash(token)})
    if row is None:
        return None
    now = clock.utcnow()
    if (
        not _live(row.revoked_at, row.expires_at, now)
        or not _usable(row.status, row.kind)
        or _due_a_touch(rt, row.last_seen_at, now)
    ):
        return None
    return SessionFacts(*row[:9])


def _due_a_touch(rt: Runtime, last_seen_at: datetime, now: datetime) -> bool:
    return (now - last_seen_at).total_seconds() >= rt.settings.session_touch_seconds


async def authenticate(s: AsyncSession, rt: Runtime, token: str) -> tuple[Account, Session] | None:
    """The live session and account a token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    row = await _BY_TOKEN.first(s, {"token_hash": crypto.token_hash(token)})
    if row is None:
        return None
    sess, account = row
    now = clock.utcnow()
    if not _live(sess.revoked_at, sess.expires_at, now) or not usable(account, sess):
        return None
    if _due_a_touch(rt, sess.last_seen_at, now):
        # watches and trackers keep the long life they were given; a person's
        # sessions live ``session_ttl_days`` past their last use
        ttl = timedelta(days=rt.settings.session_ttl_days)
        expires = max(sess.expires_at, now + ttl) if sess.kind in LONG_LIVED else now + ttl
        await s.execute(
            update(Session)
            .where(Session.id == sess.id)
            .values(last_seen_at=now, expires_at=expires)
        )
        await s.commit()
        sess.last_seen_at = now
    return account, sess


async def list_sessions(s: AsyncSession, *, account_id: str) -> list[Session]:
    """Signed-in devices. Tracker credentials are listed with the trackers
    (/api/v1/location/trackers), though signing out everywhere revokes them too."""
    now = clock.utcnow()
    q = (
        select(Session)
        .where(
            Session.account_id == account_id,
            Session.revoked_at.is_(None),
            Session.expires_at > now,
            Session.kind != "tracker",
        )
        .order_by(Session.last_seen_at.desc())
    )
    return list((await s.execute(q)).scalars())
