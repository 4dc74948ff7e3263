"""Account actions: codes, sign-in, sessions, profile, third-party identities.

Each public ``async def`` is one action: it checks everything first, then
writes and commits, so a refused request leaves stored data as it was (the
only writes a refusal makes are security counters: a wrong code's attempt,
a wrong password's failure and its login record).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import anyio
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto
from kares.accounts import limits
from kares.accounts.models import AuthTicket, ExternalIdentity, LoginEvent
from kares.accounts.schemas import DeviceInfo
from kares.devices import service as devices
from kares.errors import Problem, retry_after
from kares.gateways.oauth import (
    ExternalProfile,
    clean_nickname,
    fetch_avatar,
    wechat_avatar_allowed,
)
from kares.identity.models import Account, Session
from kares.identity.service import (
    TOKEN_PREFIX,
    CodeSent,
    authenticate,
    check_code,
    consume_code,
    find_by_phone,
    parse_phone,
    phone_index,
    request_code,
)
from kares.media import service as media
from kares.media.models import MediaObject
from kares.notify import service as notify
from kares.privacy import ports
from kares.privacy import service as privacy
from kares.privacy.catalog import catalog_of
from kares.runtime import Runtime

log = logging.getLogger("kares.accounts")

PURPOSES = ("login", "reauth", "guardian")

# What else a sign-in sets off, registered by layers above (the rights engine: a
# sign-in during the cooling-off period cancels an account's deletion). Each runs
# in the sign-in's transaction, for an account that existed before it.
SignInHook = Callable[[AsyncSession, Account], Awaitable[None]]
_sign_in_hooks: list[SignInHook] = []


def on_sign_in(hook: SignInHook) -> None:
    if hook not in _sign_in_hooks:
        _sign_in_hooks.append(hook)


# --- sign-in -----------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """Where a sign-in comes from (policy 1.4)."""

    ip: str
    user_agent: str | None
    device: DeviceInfo
    client: str  # "app" | "web"


@dataclass
class SignInResult:
    account: Account
    session: Session
    token: str
    created: bool
    new_device: bool


def _device_key(env: Environment) -> str:
    d = env.device
    if d.id:
        return crypto.blind_index(f"id:{d.id}", purpose="device")
    return crypto.blind_index(
        f"fp:{d.model or ''}|{d.os or ''}|{env.user_agent or ''}", purpose="device"
    )


async def _new_account(
    s: AsyncSession, e164: str, *, birth_date: str | None, age_bracket: str | None
) -> Account:
    now = clock.utcnow()
    acc = Account(
        phone=e164,
        phone_hash=phone_index(e164),
        birth_date=birth_date,
        age_bracket=age_bracket,
        status="active",
        created_at=now,
        updated_at=now,
    )
    s.add(acc)
    await s.flush()
    return acc


async def new_managed_account(
    s: AsyncSession, *, name: str, birth_date: str | None, age_bracket: str
) -> Account:
    """A managed profile (a dependant a guardian adds to a family): no phone,
    no password, status "managed", so nothing can sign in to it (the families
    domain adds it and records its guardian). Flushed, not committed."""
    _check_name(name)
    now = clock.utcnow()
    acc = Account(
        name=name,
        birth_date=birth_date,
        age_bracket=age_bracket,
        status="managed",
        created_at=now,
        updated_at=now,
    )
    s.add(acc)
    await s.flush()
    return acc


def _login_event(account_id: str, env: Environment, method: str, **kw: object) -> LoginEvent:
    d = env.device
    return LoginEvent(
        account_id=account_id,
        method=method,
        device_key=_device_key(env),
        device_model=d.model,
        os=d.os,
        os_version=d.os_version,
        app_version=d.app_version,
        language=d.language,
        user_agent=(env.user_agent or "")[:256] or None,
        ip=env.ip,
        occurred_at=clock.utcnow(),
        **kw,
    )


async def _complete_sign_in(
    s: AsyncSession,
    rt: Runtime,
    *,
    account: Account,
    created: bool,
    method: str,
    env: Environment,
    label: str | None = None,
    accept_policy: str | None = None,
) -> SignInResult:
    """Issue a session, record the login environment (and, on registration, the
    policy acceptance), alert on a new device; commit."""
    now = clock.utcnow()
    key = _device_key(env)
    place = rt.places.place(env.ip)
    d = env.device
    device, first_time = await devices.touch(
        s,
        account_id=account.id,
        device_key=key,
        kind="browser" if env.client == "web" else "app",
        model=d.model,
        os=d.os,
        os_version=d.os_version,
        app_version=d.app_version,
        language=d.language,
        now=now,
    )
    new_device = first_time and not created

    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    sess = Session(
        account_id=account.id,
        token_hash=crypto.token_hash(token),
        device_id=device.id,
        kind="cookie" if env.client == "web" else "bearer",
        method=method,
        label=label,
        device_key=key,
        device_model=d.model,
        os=d.os,
        os_version=d.os_version,
        app_version=d.app_version,
        language=d.language,
        user_agent=(env.user_agent or "")[:256] or None,
        ip=env.ip,
        place=place,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=rt.settings.session_ttl_days),
    )
    s.add(sess)
    await s.flush()
    event = _login_event(account.id, env, method, success=True, new_device=new_device)
    event.session_id = sess.id
    event.place = place
    s.add(event)
    if accept_policy is not None:
        await privacy.record(
            s,
            account_id=account.id,
            subject="policy",
            action="grant",
            policy_version=accept_policy,
            via="web" if env.client == "web" else "app",
            session_id=sess.id,
            device_id=device.id,
        )
    if account.phone:  # a sign-in of the number's owner ends its password lock
        await limits.clear_lock(s, account.phone)
    if not created:
        for hook in _sign_in_hooks:
            await hook(s, account)
    if new_device:
        what = " ".join(p for p in (d.model, d.os, d.os_version) if p) or "an unknown device"
        where = place or env.ip
        await notify.add(
            s,
            account_id=account.id,
            category="security",
            title="New sign-in to your Kares account",
            body=f"Your account was just signed in on {what} ({where}). If this was not you, "
            "sign that device out under Signed-in devices and change your password.",
            data={"session_id": sess.id, "method": method, "ip": env.ip, "place": place},
        )
    await s.commit()
    return SignInResult(account, sess, token, created, new_device)


async def _ticket(s: AsyncSession, secret: str, kind: str) -> AuthTicket:
    t = (
        await s.execute(
            select(AuthTicket).where(AuthTicket.secret_hash == crypto.token_hash(secret))
        )
    ).scalar_one_or_none()
    if t is None or t.kind != kind:
        raise Problem(400, "oauth.ticket_invalid", "That sign-in ticket is not valid.")
    if t.used_at is not None:
        raise Problem(400, "oauth.ticket_used", "That sign-in ticket was already used.")
    if clock.utcnow() >= t.expires_at:
        raise Problem(400, "oauth.ticket_expired", "That sign-in ticket has expired.")
    return t


async def _use_ticket(s: AsyncSession, ticket: AuthTicket) -> None:
    """Mark a ticket used (one winner) and drop the profile it carried: once
    used, nothing needs the third-party subject, nickname or avatar URL."""
    res = await s.execute(
        update(AuthTicket)
        .where(AuthTicket.id == ticket.id, AuthTicket.used_at.is_(None))
        .values(used_at=clock.utcnow(), subject=None, nickname=None, avatar_url=None)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        await s.rollback()
        raise Problem(400, "oauth.ticket_used", "That sign-in ticket was already used.")


@dataclass(frozen=True)
class Registration:
    """What a new account must give (policy 6, 7): the accepted policy version
    and a birth date or age bracket."""

    accept_policy: str | None = None
    birth_date: date | None = None
    age_bracket: str | None = None


def _check_registration(rt: Runtime, reg: Registration) -> tuple[str | None, str]:
    version = catalog_of(rt).policy.version
    if reg.accept_policy != version:
        raise Problem(
            400,
            "consent.policy_required",
            f"Registering means accepting the privacy policy in force (version {version}).",
            policy_version=version,
        )
    return privacy.check_age(reg.birth_date, reg.age_bracket, clock.utcnow().date())


async def sign_in_with_code(
    s: AsyncSession,
    rt: Runtime,
    *,
    phone: str,
    code: str,
    env: Environment,
    link_ticket: str | None = None,
    registration: Registration | None = None,
) -> SignInResult:
    """Register or sign in with an SMS code; optionally link a third-party identity."""
    e164 = parse_phone(phone, rt.settings.default_region)
    ticket = await _ticket(s, link_ticket, "link") if link_ticket else None
    account = await find_by_phone(s, e164)
    age: tuple[str | None, str] | None = None
    if account is None:
        age = _check_registration(rt, registration or Registration())
    if ticket is not None:
        await _check_identity_free(s, ticket.provider, ticket.subject or "", account)
    challenge_id = await check_code(s, rt, ph=phone_index(e164), purpose="login", code=code)
    await consume_code(s, rt, challenge_id)
    created = account is None
    accept: str | None = None
    if account is None:
        assert age is not None
        account = await _new_account(s, e164, birth_date=age[0], age_bracket=age[1])
        # A child's own acceptance is not consent (policy 6): a guardian's is.
        accept = None if age[1] == "under_14" else catalog_of(rt).policy.version
        log.info("registered account for %s", e164)
    elif account.status != "active":
        await s.rollback()
        raise Problem(403, "account.inactive", "This account cannot sign in.")
    if ticket is not None:
        profile = ExternalProfile(
            ticket.provider, ticket.subject or "", ticket.nickname, ticket.avatar_url
        )
        await _use_ticket(s, ticket)
        await _attach_identity(s, rt, account, profile)
    return await _complete_sign_in(
        s, rt, account=account, created=created, method="sms", env=env, accept_policy=accept
    )


_DUMMY_HASH: str | None = None


async def _verify_password(rt: Runtime, hashed: str | None, password: str) -> bool:
    global _DUMMY_HASH
    if hashed is None:
        # Same work for unknown numbers, so timing does not reveal who has an account.
        if _DUMMY_HASH is None:
            _DUMMY_HASH = rt.passwords.hash(secrets.token_hex(8))
        hashed = _DUMMY_HASH
        password = password + "\x00"
    target = hashed

    def _check() -> bool:
        try:
            return rt.passwords.verify(target, password)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(_check)


async def verify_password(rt: Runtime, account: Account, password: str) -> bool:
    """Whether ``password`` is the account's (False when it has none)."""
    return account.password_hash is not None and await _verify_password(
        rt, account.password_hash, password
    )


async def sign_in_with_password(
    s: AsyncSession,
    rt: Runtime,
    *,
    phone: str | None = None,
    account_id: str | None = None,
    password: str,
    env: Environment,
    label: str | None = None,
) -> SignInResult:
    """Sign in with a number (or, for a wire format that names accounts by id,
    such as the Matrix client API, the account's id) and its password, within the
    limits of ``accounts.limits``: an account named by id is counted and locked
    under its number, as if the number had been given. An unknown number (or id)
    takes the same path as a registered one: counted and locked alike, a dummy
    hash checked, the same answers. ``label`` names the session (its client)."""
    cfg = rt.settings
    if account_id is not None:
        found = await s.get(Account, account_id) if len(account_id) <= 32 else None
        account = found if found is not None and found.phone else None
        e164 = account.phone if account is not None else f"account:{account_id[:64]}"
    else:
        e164 = parse_phone(phone or "", cfg.default_region)
        account = await find_by_phone(s, e164)
    now = clock.utcnow()
    attempt = await limits.count_attempt(s, cfg, e164=e164, ip=env.ip, now=now)
    if attempt.refusal is not None:
        if account is not None:
            s.add(_login_event(account.id, env, "password", success=False, reason=attempt.reason))
        await s.commit()
        raise attempt.refusal
    # The count stands before the slow hash: a burst is decided by it, and no
    # write lock is held while the password is checked.
    await s.commit()
    if attempt.purge_due:
        await limits.purge(s, now)
        await s.commit()
    ok = await _verify_password(rt, account.password_hash if account else None, password)
    if account is None or account.password_hash is None or not ok:
        if account is not None:
            reason = "bad_password" if account.password_hash else "no_password"
            if attempt.locks:
                reason = "locked_now"
            s.add(_login_event(account.id, env, "password", success=False, reason=reason))
            await s.commit()
        raise Problem(401, "auth.invalid_credentials", "The phone number or password is wrong.")
    if account.status != "active":
        raise Problem(403, "account.inactive", "This account cannot sign in.")
    await limits.succeeded(s, attempt)
    if rt.passwords.check_needs_rehash(account.password_hash):
        account.password_hash = await anyio.to_thread.run_sync(rt.passwords.hash, password)
    return await _complete_sign_in(
        s, rt, account=account, created=False, method="password", env=env, label=label
    )


# --- sessions ------------------------------------------------------------------


async def revoke_session(s: AsyncSession, *, account_id: str, session_id: str) -> None:
    res = await s.execute(
        update(Session)
        .where(
            Session.id == session_id,
            Session.account_id == account_id,
            Session.revoked_at.is_(None),
        )
        .values(revoked_at=clock.utcnow())
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise Problem(404, "session.not_found", "No such signed-in device.")
    await s.commit()


async def revoke_all_sessions(
    s: AsyncSession, *, account_id: str, keep_session_id: str | None
) -> int:
    q = update(Session).where(Session.account_id == account_id, Session.revoked_at.is_(None))
    if keep_session_id is not None:
        q = q.where(Session.id != keep_session_id)
    res = await s.execute(q.values(revoked_at=clock.utcnow()))
    await s.commit()
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def list_logins(s: AsyncSession, *, account_id: str, limit: int) -> list[LoginEvent]:
    q = (
        select(LoginEvent)
        .where(LoginEvent.account_id == account_id)
        .order_by(LoginEvent.occurred_at.desc(), LoginEvent.id)
        .limit(limit)
    )
    return list((await s.execute(q)).scalars())


# --- profile -------------------------------------------------------------------


async def identities_of(s: AsyncSession, account_id: str) -> list[ExternalIdentity]:
    q = select(ExternalIdentity).where(ExternalIdentity.account_id == account_id)
    return list((await s.execute(q.order_by(ExternalIdentity.provider))).scalars())


async def update_profile(
    s: AsyncSession,
    account: Account,
    *,
    name: str | None,
    birth_date: date | None = None,
    age_bracket: str | None = None,
) -> Account:
    if name is not None:
        _check_name(name)
    age: tuple[str | None, str] | None = None
    if birth_date is not None or age_bracket is not None:
        if privacy.is_minor(account):
            # A child grows out of needing a guardian by the birth date alone.
            raise Problem(
                403,
                "guardian.consent_required",
                "A child's age cannot be changed here; ask your guardian.",
            )
        age = privacy.check_age(birth_date, age_bracket, clock.utcnow().date())
        if age[1] == "under_14":
            # An account cannot turn itself into a child's account (it would lock
            # itself out with nobody able to undo it); a child registers their own.
            raise Problem(
                422,
                "account.age_change_refused",
                "An existing account cannot become a child's account; a child under 14 "
                "registers their own account.",
            )
    if age is not None:
        account.birth_date, account.age_bracket = age
    if name is not None:
        account.name = name
    account.updated_at = clock.utcnow()
    await s.commit()
    return account


def _check_name(name: str) -> None:
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise Problem(422, "profile.invalid_name", "Names cannot contain control characters.")


async def set_avatar(s: AsyncSession, rt: Runtime, account: Account, raw: bytes) -> Account:
    cfg = rt.settings
    obj = await media.store_image(
        s,
        owner_account_id=account.id,
        purpose="avatar",
        raw=raw,
        max_bytes=cfg.image_max_bytes,
        max_pixels=cfg.image_max_pixels,
        max_side=cfg.avatar_max_side,
    )
    account.avatar_media_id = obj.id
    account.updated_at = clock.utcnow()
    # The account row is written first: a concurrent upload waits on it, so
    # whichever commits last both wins the column and deletes the other image.
    await s.flush()
    await media.delete_owned(s, owner_account_id=account.id, purpose="avatar", keep_id=obj.id)
    await s.commit()
    return account


async def remove_avatar(s: AsyncSession, account: Account) -> Account:
    account.avatar_media_id = None
    account.updated_at = clock.utcnow()
    await s.flush()
    await media.delete_owned(s, owner_account_id=account.id, purpose="avatar")
    await s.commit()
    return account


def check_password_strength(password: str, *, min_length: int, phone: str) -> None:
    if len(password) < min_length:
        raise Problem(
            422, "password.too_weak", f"A password needs at least {min_length} characters."
        )
    kinds = sum(
        (
            any(c.isalpha() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if kinds < 2:
        raise Problem(
            422,
            "password.too_weak",
            "Mix at least two of letters, digits and symbols.",
        )
    digits = re.sub(r"\D", "", phone)
    if digits[-8:] and digits[-8:] in password:
        raise Problem(422, "password.too_weak", "A password cannot contain your phone number.")


async def set_password(
    s: AsyncSession,
    rt: Runtime,
    account: Account,
    current_session_id: str,
    *,
    new_password: str,
    current_password: str | None,
    code: str | None,
) -> int:
    """Set or change the password; other sessions are signed out. Returns how many."""
    check_password_strength(
        new_password, min_length=rt.settings.password_min_length, phone=account.phone
    )
    challenge_id = None
    if account.password_hash is not None:
        if code:
            challenge_id = await check_code(
                s, rt, ph=account.phone_hash, purpose="reauth", code=code
            )
        elif current_password is None or not await _verify_password(
            rt, account.password_hash, current_password
        ):
            raise Problem(
                403,
                "auth.reauth_required",
                "Give your current password, or a code sent to your phone, to change it.",
            )
    if challenge_id:
        await consume_code(s, rt, challenge_id)
    account.password_hash = await anyio.to_thread.run_sync(rt.passwords.hash, new_password)
    await limits.clear_lock(s, account.phone)
    account.updated_at = clock.utcnow()
    await notify.add(
        s,
        account_id=account.id,
        category="security",
        title="Your password was changed",
        body="Your Kares password was set or changed. Other devices were signed out.",
    )
    await s.flush()
    return await revoke_all_sessions(s, account_id=account.id, keep_session_id=current_session_id)


async def request_reauth_code(s: AsyncSession, rt: Runtime, account: Account, ip: str) -> CodeSent:
    return await request_code(s, rt, phone=account.phone, purpose="reauth", ip=ip)


# --- third-party identities ----------------------------------------------------


async def _purge_tickets(s: AsyncSession, now: datetime) -> None:
    """Tickets live minutes; anything over an hour old is of no use to anyone."""
    await s.execute(delete(AuthTicket).where(AuthTicket.created_at < now - timedelta(hours=1)))


async def issue_nonce(s: AsyncSession, rt: Runtime, *, provider: str, ip: str) -> tuple[str, int]:
    now = clock.utcnow()
    cap = rt.settings.oauth_nonce_per_ip_per_hour
    issued = (
        await s.execute(
            select(func.count(), func.min(AuthTicket.created_at)).where(
                AuthTicket.ip == ip,
                AuthTicket.kind == "nonce",
                AuthTicket.created_at > now - timedelta(hours=1),
            )
        )
    ).one()
    if issued[0] >= cap:
        wait = (issued[1] + timedelta(hours=1) - now).total_seconds()
        raise Problem(
            429,
            "oauth.nonce_limit",
            "Too many sign-in attempts from this network. Try again later.",
            headers=retry_after(wait),
        )
    await _purge_tickets(s, now)
    secret = secrets.token_urlsafe(24)
    ttl = rt.settings.oauth_nonce_ttl_seconds
    s.add(
        AuthTicket(
            secret_hash=crypto.token_hash(secret),
            kind="nonce",
            provider=provider,
            ip=ip,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    await s.commit()
    return secret, ttl


async def check_nonce(s: AsyncSession, nonce: str, provider: str) -> AuthTicket:
    t = await _ticket(s, nonce, "nonce")
    if t.provider != provider:
        raise Problem(400, "oauth.ticket_invalid", "That nonce is not for this provider.")
    return t


async def use_nonce(s: AsyncSession, t: AuthTicket) -> None:
    await _use_ticket(s, t)


async def _check_identity_free(
    s: AsyncSession, provider: str, subject: str, account: Account | None
) -> None:
    owner = (
        await s.execute(
            select(ExternalIdentity).where(
                ExternalIdentity.provider == provider, ExternalIdentity.subject == subject
            )
        )
    ).scalar_one_or_none()
    if owner is not None and (account is None or owner.account_id != account.id):
        raise Problem(
            409, "identity.taken", f"That {provider} account is linked to another Kares account."
        )
    if account is not None and owner is None:
        other = (
            await s.execute(
                select(ExternalIdentity).where(
                    ExternalIdentity.account_id == account.id,
                    ExternalIdentity.provider == provider,
                )
            )
        ).scalar_one_or_none()
        if other is not None:
            raise Problem(
                409,
                "identity.already_linked",
                f"This Kares account is already linked to another {provider} account.",
            )


async def _attach_identity(
    s: AsyncSession, rt: Runtime, account: Account, profile: ExternalProfile
) -> None:
    """Link, and import the authorised public profile into empty profile fields only."""
    existing = (
        await s.execute(
            select(ExternalIdentity).where(
                ExternalIdentity.provider == profile.provider,
                ExternalIdentity.subject == profile.subject,
            )
        )
    ).scalar_one_or_none()
    if existing is None:
        s.add(
            ExternalIdentity(
                account_id=account.id,
                provider=profile.provider,
                subject=profile.subject,
                nickname=profile.nickname,
                linked_at=clock.utcnow(),
            )
        )
    if profile.nickname and not account.name:
        account.name = profile.nickname[:64]
    if profile.avatar_url and not account.avatar_media_id:
        await _import_avatar(s, rt, account, profile.avatar_url)
    try:
        await s.flush()
    except IntegrityError as exc:
        await s.rollback()
        raise Problem(409, "identity.taken", "That account was linked elsewhere just now.") from exc


async def _import_avatar(s: AsyncSession, rt: Runtime, account: Account, url: str) -> None:
    if not wechat_avatar_allowed(rt.settings, url):
        log.info("provider avatar host not allowed; skipped")
        return
    raw = await fetch_avatar(rt.http, url, rt.settings.image_max_bytes)
    if raw is None:
        return
    try:
        obj = await media.store_image(
            s,
            owner_account_id=account.id,
            purpose="avatar",
            raw=raw,
            max_bytes=rt.settings.image_max_bytes,
            max_pixels=rt.settings.image_max_pixels,
            max_side=rt.settings.avatar_max_side,
        )
    except Problem:
        log.info("provider avatar was not a usable image; skipped")
        return
    account.avatar_media_id = obj.id


async def sign_in_with_identity(
    s: AsyncSession, rt: Runtime, *, profile: ExternalProfile, env: Environment
) -> SignInResult | tuple[str, int, ExternalProfile]:
    """Sign in a linked identity, or hand back a link ticket (phone needed first)."""
    profile = replace(profile, nickname=clean_nickname(profile.nickname))
    ident = (
        await s.execute(
            select(ExternalIdentity).where(
                ExternalIdentity.provider == profile.provider,
                ExternalIdentity.subject == profile.subject,
            )
        )
    ).scalar_one_or_none()
    if ident is not None:
        account = await s.get(Account, ident.account_id)
        if account is None or account.status != "active":
            raise Problem(403, "account.inactive", "This account cannot sign in.")
        if profile.nickname:
            ident.nickname = profile.nickname
        return await _complete_sign_in(
            s, rt, account=account, created=False, method=profile.provider, env=env
        )
    secret = secrets.token_urlsafe(24)
    now = clock.utcnow()
    ttl = rt.settings.oauth_nonce_ttl_seconds
    s.add(
        AuthTicket(
            secret_hash=crypto.token_hash(secret),
            kind="link",
            provider=profile.provider,
            subject=profile.subject,
            nickname=profile.nickname,
            avatar_url=profile.avatar_url,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    await s.commit()
    return secret, ttl, profile


async def link_identity(
    s: AsyncSession, rt: Runtime, account: Account, profile: ExternalProfile
) -> None:
    profile = replace(profile, nickname=clean_nickname(profile.nickname))
    await _check_identity_free(s, profile.provider, profile.subject, account)
    await _attach_identity(s, rt, account, profile)
    await s.commit()


async def unlink_identity(s: AsyncSession, account: Account, provider: str) -> None:
    ident = (
        await s.execute(
            select(ExternalIdentity).where(
                ExternalIdentity.account_id == account.id, ExternalIdentity.provider == provider
            )
        )
    ).scalar_one_or_none()
    if ident is None:
        raise Problem(404, "identity.not_linked", f"No {provider} account is linked.")
    await s.delete(ident)
    await s.commit()


# --- demo ------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoMember:
    account: Account
    token: str
    created: tuple[str, ...]  # what this run made: "account", "password", "token"


async def demo_member(
    s: AsyncSession,
    rt: Runtime,
    *,
    phone: str,
    name: str,
    password: str,
    token: str | None = None,
) -> DemoMember:
    """Make what is missing of a demo member: the account, its password (set again
    only when it no longer matches) and a bearer token. ``token``, the one a
    previous run printed, is kept while it still works; otherwise a new one is
    made and any other demo token of the account revoked (nobody can print
    those again)."""
    e164 = parse_phone(phone, rt.settings.default_region)
    account = await find_by_phone(s, e164)
    created: list[str] = []
    if account is None:
        account = await _new_account(s, e164, birth_date=None, age_bracket="adult")
        created.append("account")
    account.name = name
    if account.password_hash is None or not await _verify_password(
        rt, account.password_hash, password
    ):
        account.password_hash = await anyio.to_thread.run_sync(rt.passwords.hash, password)
        if not created:  # a new account's password goes without saying
            created.append("password")
    await limits.clear_lock(s, e164)  # the printed password works at once
    found = await authenticate(s, rt, token) if token else None
    if found is not None and found[0].id == account.id and found[1].label == "demo":
        session = found[1]
    else:
        await s.execute(
            update(Session)
            .where(
                Session.account_id == account.id,
                Session.label == "demo",
                Session.revoked_at.is_(None),
            )
            .values(revoked_at=clock.utcnow())
        )
        env = Environment(
            ip="127.0.0.1",
            user_agent="kares-demo",
            device=DeviceInfo(id="kares-demo", model="Demo", os="kares"),
            client="app",
        )
        res = await _complete_sign_in(
            s, rt, account=account, created=True, method="demo", env=env, label="demo"
        )
        session, token = res.session, res.token
        created.append("token")
    assert token is not None
    # Demo members have agreed to everything, so the demo shows every function.
    st = await privacy.state(s, account.id)
    for subject in privacy.consentable(catalog_of(rt)):
        if subject not in st or st[subject].action != "grant":
            await privacy.record(
                s,
                account_id=account.id,
                subject=subject,
                action="grant",
                policy_version=catalog_of(rt).policy.version,
                via="app",
                session_id=session.id,
                device_id=session.device_id,
            )
    await s.commit()
    return DemoMember(account, token, tuple(created))


# --- deletion (policy 5.2) -------------------------------------------------------------


async def _avatar_on_erasure(s: AsyncSession, e: ports.Erasure) -> None:
    """After a chosen deletion of profile data, the account no longer points at an
    avatar that is gone."""
    if e.scope != "chosen" or e.category != "account.profile":
        return
    await s.execute(
        update(Account)
        .where(
            Account.id == e.account_id,
            Account.avatar_media_id.is_not(None),
            Account.avatar_media_id.not_in(select(MediaObject.id)),
        )
        .values(avatar_media_id=None)
        .execution_options(synchronize_session=False)
    )


ports.register_erasure("after", _avatar_on_erasure)
