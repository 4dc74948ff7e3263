"""CalDAV app passwords: what a phone's calendar signs in with.

A person makes one per client (the iPhone, DAVx5, Thunderbird): a user name
and a secret shown once. The secret is the token of a session of kind
``caldav``: listed with the person's sessions (``GET /api/v1/me/sessions``),
revoked like any of them (one by one, or all at once by signing out
everywhere), its last use the session's.

Scoped to CalDAV alone by construction: the secret does not carry the
``kares_`` prefix every other token has, so the identity service's
:func:`~kares.identity.service.authenticate` (bearer tokens, cookies, tracker
credentials, the WebSocket, Matrix) refuses it before any lookup; only
:func:`authenticate` here, which the CalDAV routes call, accepts it, and only
with its user name. A person's ordinary password or bearer token is never what
a phone needs.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto
from kares.errors import Problem
from kares.identity import service as identity
from kares.identity.models import Account, Session
from kares.protocols.caldav.models import AppPassword
from kares.runtime import Runtime

CALDAV_KIND = "caldav"
PASSWORD_DAYS = 3650
MAX_PASSWORDS = 20
# 4 groups of 4 from 32 letters and digits (no 0/1/l/o): 80 bits, typable on a phone
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_SECRET = re.compile(r"^[a-z2-9]{4}(-[a-z2-9]{4}){3}$")
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class PasswordView:
    password: AppPassword
    last_used_at: datetime | None
    revoked: bool


def _secret() -> str:
    groups = ("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(4))
    return "-".join(groups)


def _username(name: str) -> str:
    slug = _SLUG.sub("-", name.lower()).strip("-")[:24] or "calendar"
    return f"{slug}-{secrets.token_hex(3)}"


async def create(
    s: AsyncSession, *, account_id: str, name: str, ip: str
) -> tuple[AppPassword, str]:
    """A new app password; returns it with its secret (shown this once)."""
    from kares.families.service import clean_name

    clean = clean_name(name, max_len=64, code="caldav.invalid_name")
    live = await list_for(s, account_id=account_id)
    if sum(1 for p in live if not p.revoked) >= MAX_PASSWORDS:
        raise Problem(409, "caldav.limit", f"At most {MAX_PASSWORDS} CalDAV app passwords.")
    now = clock.utcnow()
    secret = _secret()
    sess = Session(
        account_id=account_id,
        token_hash=crypto.token_hash(secret),
        device_id=None,
        kind=CALDAV_KIND,
        method="app_password",
        label=clean,
        device_key=crypto.blind_index(f"caldav:{secrets.token_hex(16)}", purpose="device"),
        device_model="CalDAV",
        ip=ip,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=PASSWORD_DAYS),
    )
    s.add(sess)
    await s.flush()
    for _ in range(5):
        username = _username(clean)
        taken = await s.execute(select(AppPassword.id).where(AppPassword.username == username))
        if taken.first() is None:
            break
    p = AppPassword(
        account_id=account_id, session_id=sess.id, name=clean, username=username, created_at=now
    )
    s.add(p)
    await s.commit()
    return p, secret


async def list_for(s: AsyncSession, *, account_id: str) -> list[PasswordView]:
    q = (
        select(AppPassword, Session)
        .join(Session, Session.id == AppPassword.session_id)
        .where(AppPassword.account_id == account_id)
        .order_by(AppPassword.created_at, AppPassword.id)
    )
    now = clock.utcnow()
    out = []
    for p, sess in (await s.execute(q)).all():
        out.append(PasswordView(p, *identity.credential_state(sess, now)))
    return out


async def revoke(s: AsyncSession, *, account_id: str, password_id: str) -> None:
    p = await s.get(AppPassword, password_id) if len(password_id) <= 32 else None
    if p is None or p.account_id != account_id:
        raise Problem(404, "caldav.not_found", "No such app password.")
    await s.execute(
        update(Session)
        .where(Session.id == p.session_id, Session.revoked_at.is_(None))
        .values(revoked_at=clock.utcnow())
    )
    await s.commit()


_BY_SECRET = (
    select(AppPassword.username, Session.id)
    .join(Session, Session.id == AppPassword.session_id)
    .where(Session.kind == CALDAV_KIND)
)


async def authenticate(
    s: AsyncSession, rt: Runtime, username: str, secret: str
) -> tuple[Account, Session] | None:
    """The account and live session behind a CalDAV client's user name and app
    password, or None (wrong pair, revoked, expired, account not active)."""
    secret = secret.strip().lower()
    if not _SECRET.match(secret) or len(username) > 40:
        return None
    q = _BY_SECRET.where(Session.token_hash == crypto.token_hash(secret))
    row = (await s.execute(q)).first()
    if row is None or not secrets.compare_digest(row[0].encode(), username.encode()):
        return None
    found = await identity.live_session(s, row[1])
    if found is None:
        return None
    account, sess = found
    now = clock.utcnow()
    if (now - sess.last_seen_at).total_seconds() >= rt.settings.session_touch_seconds:
        await s.execute(update(Session).where(Session.id == sess.id).values(last_seen_at=now))
        await s.commit()
        sess.last_seen_at = now
    return account, sess


DEMO_NAME = "Demo CalDAV"


async def demo(
    s: AsyncSession, rt: Runtime, account_id: str, last: dict[str, str] | None
) -> tuple[dict[str, str], bool]:
    """``kares demo``'s CalDAV app password for a member: the one the last run
    printed while it still works, else a new one (and any older demo password,
    whose secret nobody can print again, is revoked). True when it is new."""
    if last:
        found = await authenticate(
            s, rt, str(last.get("username", "")), str(last.get("password", ""))
        )
        if found is not None and found[0].id == account_id:
            return {k: str(last[k]) for k in ("id", "username", "password")}, False
    for v in await list_for(s, account_id=account_id):
        if v.password.name == DEMO_NAME and not v.revoked:
            await revoke(s, account_id=account_id, password_id=v.password.id)
    p, secret = await create(s, account_id=account_id, name=DEMO_NAME, ip="127.0.0.1")
    return {"id": p.id, "username": p.username, "password": secret}, True
