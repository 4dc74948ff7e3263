"""Family actions: circles and roles, invitations (short code and signed QR
token), per-member sharing choices, dependants, and the guard's check for data
about another person.

Each public ``async def`` that changes something checks everything first,
then writes and commits once, so a refused request leaves stored data as it
was (the one exception: a code that matches no invitation is counted, so
codes cannot be guessed).

Who may see what:

* A non-member gets 404 ``family.not_found`` for anything of a family, never
  a 403 that would say the family exists.
* Members get 403 ``family.forbidden`` for what their role does not allow.
* Reading another person's data (routes declared with ``about=``) is allowed
  only to someone sharing a family with them, and for location, health and
  schedule only while that person's choice in one of the shared families
  allows it (``check_subject``, registered with the privacy core at import).
"""

from __future__ import annotations

import base64
import hmac
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto, db, events, live
from kares.accounts import service as accounts
from kares.db import new_id
from kares.errors import Problem
from kares.families.models import Family, FamilyInvitation, FamilyMember, InvitationAttempt
from kares.identity.models import Account
from kares.media import service as media
from kares.privacy import ports
from kares.privacy import service as privacy
from kares.privacy.catalog import catalog_of
from kares.privacy.models import Guardianship
from kares.privacy.ports import register_erasure, register_subject_check

if TYPE_CHECKING:
    from kares.media.models import MediaObject
    from kares.privacy.ports import Allowed
    from kares.runtime import Runtime

ROLES = ("owner", "guardian", "member", "dependant")
ADMINS = ("owner", "guardian")
NAME_MAX = 40
PROFILE_NAME_MAX = 64
MAX_MEMBERS = 50
MAX_ACTIVE_INVITATIONS = 20
MAX_PAUSE = timedelta(days=7)
PAUSE_SLACK = timedelta(minutes=1)  # a client's "now + 7 days" arrives a moment later
PHOTO_PURPOSE = "family_photo"

# Defaults: the circle exists to see where each other is (live location on),
# history is kept to the member's own choice (more revealing than "where now"),
# health is sensitive (PIPL Art. 28) so it is shared only when the member
# turns it on, and the family schedule is made to be shared.
DEFAULT_LOCATION = "live"
DEFAULT_HEALTH = False
DEFAULT_SCHEDULE = True

# Invitation codes: 8 characters from 32 that cannot be confused (no 0/O, 1/I),
# 40 bits, derived from the invitation id with the index key.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8
JOIN_PREFIX = "kares://join/"
ATTEMPTS_PER_HOUR = 10
_TOKEN = re.compile(r"([0-9a-f]{32})\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})")
_ID = re.compile(r"[0-9a-f]{32}")

# driving_tracks features that read the past (routes, trips) need "history";
# every other one (where the person is now) needs "live" or "history".
HISTORY_FEATURES = frozenset({"history", "tracks", "trips", "routes"})


# --- errors --------------------------------------------------------------------------------


def _not_found() -> Problem:
    return Problem(404, "family.not_found", "No such family.")


def _forbidden(detail: str) -> Problem:
    return Problem(403, "family.forbidden", detail)


def _member_not_found() -> Problem:
    return Problem(404, "family.member_not_found", "No such member in this family.")


_BIDI_CONTROLS = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def clean_name(raw: str, *, max_len: int, code: str) -> str:
    """A display name: trimmed, NFC, 1..max_len characters, no control characters
    (line breaks, bidirectional overrides)."""
    name = unicodedata.normalize("NFC", raw.strip())
    if not 1 <= len(name) <= max_len:
        raise Problem(422, code, f"A name has 1 to {max_len} characters.")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ord(ch) in _BIDI_CONTROLS:
            raise Problem(422, code, "Names cannot contain control characters.")
    return name


def is_id(value: str) -> bool:
    """Ids are 32 hex digits. Anything else is nobody, and never reaches the
    database (PostgreSQL refuses a NUL byte in text with an error)."""
    return _ID.fullmatch(value) is not None


# --- membership ------------------------------------------------------------------------------


def _new_member(
    family_id: str, account_id: str, role: str, now: datetime, *, by: str | None = None
) -> FamilyMember:
    return FamilyMember(
        family_id=family_id,
        account_id=account_id,
        role=role,
        joined_at=now,
        location=DEFAULT_LOCATION,
        health=DEFAULT_HEALTH,
        schedule=DEFAULT_SCHEDULE,
        paused_until=None,
        sharing_updated_at=now,
        sharing_updated_by=by or account_id,
    )


async def member(s: AsyncSession, family_id: str, account_id: str) -> FamilyMember | None:
    if not (is_id(family_id) and is_id(account_id)):
        return None
    q = select(FamilyMember).where(
        FamilyMember.family_id == family_id, FamilyMember.account_id == account_id
    )
    return (await s.execute(q)).scalar_one_or_none()


async def require_member(
    s: AsyncSession, family_id: str, account_id: str
) -> tuple[Family, FamilyMember]:
    """The family and the caller's membership, or 404 ``family.not_found``."""
    m = await member(s, family_id, account_id)
    fam = await s.get(Family, family_id) if m is not None else None
    if m is None or fam is None:
        raise _not_found()
    return fam, m


async def require_admin(
    s: AsyncSession, family_id: str, account_id: str
) -> tuple[Family, FamilyMember]:
    fam, m = await require_member(s, family_id, account_id)
    if m.role not in ADMINS:
        raise _forbidden("Only the family's owner and guardians can do this.")
    return fam, m


async def require_owner(
    s: AsyncSession, family_id: str, account_id: str
) -> tuple[Family, FamilyMember]:
    fam, m = await require_member(s, family_id, account_id)
    if m.role != "owner":
        raise _forbidden("Only the family's owner can do this.")
    return fam, m


async def member_count(s: AsyncSession, family_id: str) -> int:
    q = select(func.count()).select_from(FamilyMember).where(FamilyMember.family_id == family_id)
    return int((await s.execute(q)).scalar_one())


async def hold(s: AsyncSession, family_id: str) -> None:
    """Hold the family until this transaction ends, before counting what it has
    (members, open invitations, places) against a cap (``db.hold``)."""
    await db.hold(s, Family, family_id)


async def _check_room(s: AsyncSession, family_id: str) -> None:
    await hold(s, family_id)
    if await member_count(s, family_id) >= MAX_MEMBERS:
        raise Problem(409, "family.full", f"A family has at most {MAX_MEMBERS} members.")


_ROLE_ORDER = {r: i for i, r in enumerate(ROLES)}


async def members_of(s: AsyncSession, family_id: str) -> list[tuple[FamilyMember, Account]]:
    """Members with their accounts: owner, guardians, members, dependants."""
    q = (
        select(FamilyMember, Account)
        .join(Account, Account.id == FamilyMember.account_id)
        .where(FamilyMember.family_id == family_id)
        .order_by(FamilyMember.joined_at, FamilyMember.account_id)
    )
    rows = [(m, a) for m, a in (await s.execute(q)).all()]
    return sorted(rows, key=lambda r: _ROLE_ORDER.get(r[0].role, 9))


@dataclass(frozen=True)
class Membership:
    family: Family
    member: FamilyMember
    member_count: int


async def families_of(s: AsyncSession, account_id: str) -> list[Membership]:
    """The families an account belongs to, oldest first."""
    q = (
        select(Family, FamilyMember)
        .join(FamilyMember, FamilyMember.family_id == Family.id)
        .where(FamilyMember.account_id == account_id)
        .order_by(Family.created_at, Family.id)
    )
    rows = (await s.execute(q)).all()
    ids = [f.id for f, _ in rows]
    counts: dict[str, int] = {}
    if ids:
        cq = (
            select(FamilyMember.family_id, func.count())
            .where(FamilyMember.family_id.in_(ids))
            .group_by(FamilyMember.family_id)
        )
        counts = {fid: int(n) for fid, n in (await s.execute(cq)).all()}
    return [Membership(f, m, counts.get(f.id, 0)) for f, m in rows]


# --- families --------------------------------------------------------------------------------


async def member_ids(s: AsyncSession, family_id: str) -> list[str]:
    q = select(FamilyMember.account_id).where(FamilyMember.family_id == family_id)
    return list((await s.execute(q)).scalars())


def _streams_reread(ids: Iterable[str]) -> None:
    for a in set(ids):
        live.hub.deliver(kind="family", about=a)


async def _family_changed(s: AsyncSession, family_id: str, *also: str) -> None:
    """After the commit, the live streams of everyone in the family (and of
    ``also``, who just left it) re-read what they may see and renew their interest:
    who shares a family with whom, or what they share, changed."""
    ids = [*await member_ids(s, family_id), *also]
    events.on_commit(s, lambda: _streams_reread(ids))


async def create_family(s: AsyncSession, *, owner: Account, name: str) -> Family:
    name = clean_name(name, max_len=NAME_MAX, code="family.invalid_name")
    if not privacy.is_adult(owner):
        raise Problem(
            403,
            "family.adult_required",
            "Only an adult can create a family; ask a parent to invite you to theirs.",
        )
    now = clock.utcnow()
    fam = Family(id=new_id(), name=name, owner_account_id=owner.id, created_at=now, updated_at=now)
    s.add(fam)
    await s.flush()
    s.add(_new_member(fam.id, owner.id, "owner", now))
    await events.emit(s, "family.created", family_id=fam.id, account_id=owner.id)
    await _family_changed(s, fam.id, owner.id)
    await s.commit()
    return fam


async def rename(s: AsyncSession, *, family_id: str, actor_id: str, name: str) -> Family:
    fam, _ = await require_admin(s, family_id, actor_id)
    fam.name = clean_name(name, max_len=NAME_MAX, code="family.invalid_name")
    fam.updated_at = clock.utcnow()
    await s.commit()
    return fam


async def dissolve(s: AsyncSession, *, family_id: str, actor_id: str) -> None:
    """The owner dissolves the family: members, invitations and the photo go at
    once (the database cascades). Managed profiles stay with their guardian."""
    fam, _ = await require_owner(s, family_id, actor_id)
    photo = fam.photo_media_id
    await _family_changed(s, fam.id)
    await s.execute(
        delete(Family).where(Family.id == fam.id).execution_options(synchronize_session=False)
    )
    await _delete_media(s, photo)
    await s.commit()


async def _delete_media(s: AsyncSession, media_id: str | None) -> None:
    if media_id:
        obj = await media.get_media(s, media_id)
        if obj is not None:
            await s.delete(obj)


async def _lock_family(s: AsyncSession, family_id: str, now: datetime) -> str | None:
    """Write the family row first (a concurrent change waits on it), then read
    its current photo: whichever commits last wins and deletes the other."""
    await s.execute(
        update(Family)
        .where(Family.id == family_id)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    q = select(Family.photo_media_id).where(Family.id == family_id)
    return (await s.execute(q)).scalar_one_or_none()


async def set_photo(
    s: AsyncSession, rt: Runtime, *, family_id: str, actor_id: str, raw: bytes
) -> Family:
    """A new group photo (owner or guardian), through the image pipeline: type
    sniffed, size capped, re-encoded without metadata. Owned by the family's
    owner account; the old one is deleted."""
    fam, _ = await require_admin(s, family_id, actor_id)
    cfg = rt.settings
    obj = await media.store_image(
        s,
        owner_account_id=fam.owner_account_id,
        purpose=PHOTO_PURPOSE,
        raw=raw,
        max_bytes=cfg.image_max_bytes,
        max_pixels=cfg.image_max_pixels,
        max_side=cfg.avatar_max_side,
    )
    now = clock.utcnow()
    old = await _lock_family(s, fam.id, now)
    fam.photo_media_id = obj.id
    fam.updated_at = now
    await s.flush()
    if old != obj.id:
        await _delete_media(s, old)
    await s.commit()
    return fam


async def remove_photo(s: AsyncSession, *, family_id: str, actor_id: str) -> Family:
    fam, _ = await require_admin(s, family_id, actor_id)
    now = clock.utcnow()
    old = await _lock_family(s, fam.id, now)
    fam.photo_media_id = None
    fam.updated_at = now
    await s.flush()
    await _delete_media(s, old)
    await s.commit()
    return fam


def _no_image() -> Problem:
    return Problem(404, "media.not_found", "No such image.")


async def photo_of(s: AsyncSession, *, family_id: str, account_id: str) -> MediaObject:
    fam, _ = await require_member(s, family_id, account_id)
    obj = await media.get_media(s, fam.photo_media_id) if fam.photo_media_id else None
    if obj is None:
        raise _no_image()
    return obj


async def avatar_of(
    s: AsyncSession, *, family_id: str, caller_id: str, account_id: str
) -> MediaObject:
    """A member's avatar, for the other members of the family."""
    await require_member(s, family_id, caller_id)
    if await member(s, family_id, account_id) is None:
        raise _member_not_found()
    acc = await s.get(Account, account_id)
    obj = await media.get_media(s, acc.avatar_media_id) if acc and acc.avatar_media_id else None
    if obj is None:
        raise _no_image()
    return obj


# --- roles -----------------------------------------------------------------------------------


async def _revoke_invitations_by(
    s: AsyncSession, family_id: str, account_id: str, now: datetime
) -> None:
    """Invitations stand for their inviter: they stop when the inviter may no
    longer invite (left, removed, demoted)."""
    await s.execute(
        update(FamilyInvitation)
        .where(
            FamilyInvitation.family_id == family_id,
            FamilyInvitation.created_by_account_id == account_id,
            FamilyInvitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


async def set_role(
    s: AsyncSession, *, family_id: str, actor_id: str, account_id: str, role: str
) -> tuple[FamilyMember, Account]:
    """The owner promotes a member to guardian or demotes a guardian to member."""
    await require_owner(s, family_id, actor_id)
    m = await member(s, family_id, account_id)
    acc = await s.get(Account, account_id) if m is not None else None
    if m is None or acc is None:
        raise _member_not_found()
    if m.role == "owner":
        raise Problem(
            409,
            "family.owner_role",
            "The owner's role changes only by handing the family over (transfer).",
        )
    if m.role == "dependant":
        raise Problem(
            409, "family.dependant_role", "A dependant's role cannot be changed; remove it instead."
        )
    if role not in ("guardian", "member"):
        raise Problem(422, "family.invalid_role", "A role can be changed to guardian or member.")
    if role == "guardian" and not privacy.is_adult(acc):
        raise Problem(409, "family.member_not_adult", "Only an adult can be a guardian.")
    if m.role != role:
        m.role = role
        if role == "member":
            await _revoke_invitations_by(s, family_id, account_id, clock.utcnow())
        await s.commit()
    return m, acc


async def _remove(s: AsyncSession, m: FamilyMember, *, how: str) -> None:
    """``how``: "left" or "removed" (emitted as ``family.<how>`` before the row goes)."""
    await _revoke_invitations_by(s, m.family_id, m.account_id, clock.utcnow())
    await events.emit(s, f"family.{how}", family_id=m.family_id, account_id=m.account_id)
    await _family_changed(s, m.family_id)
    await s.execute(
        delete(FamilyMember)
        .where(FamilyMember.family_id == m.family_id, FamilyMember.account_id == m.account_id)
        .execution_options(synchronize_session=False)
    )
    await s.commit()


async def leave(s: AsyncSession, *, family_id: str, account_id: str) -> None:
    _, m = await require_member(s, family_id, account_id)
    if m.role == "owner":
        raise Problem(
            409,
            "family.owner_cannot_leave",
            "The owner cannot leave: hand the family over to another adult member first "
            "(transfer), or dissolve it.",
        )
    if m.role == "dependant":
        raise _forbidden("A dependant's guardians decide which families it belongs to.")
    await _remove(s, m, how="left")


async def remove_member(s: AsyncSession, *, family_id: str, actor_id: str, account_id: str) -> None:
    """The owner removes someone; they lose access with their next request."""
    if account_id == actor_id:
        await leave(s, family_id=family_id, account_id=actor_id)
        return
    await require_owner(s, family_id, actor_id)
    m = await member(s, family_id, account_id)
    if m is None:
        raise _member_not_found()
    await _remove(s, m, how="removed")


async def transfer(s: AsyncSession, *, family_id: str, actor_id: str, account_id: str) -> Family:
    """The owner hands the family to an adult member; the old owner becomes a
    guardian. The group photo changes hands with it."""
    fam, me = await require_owner(s, family_id, actor_id)
    if account_id == actor_id:
        raise Problem(409, "family.already_owner", "You already own this family.")
    m = await member(s, family_id, account_id)
    acc = await s.get(Account, account_id) if m is not None else None
    if m is None or acc is None:
        raise _member_not_found()
    if m.role == "dependant":
        raise Problem(409, "family.dependant_role", "A dependant cannot own a family.")
    if acc.status != "active" or not privacy.is_adult(acc):
        raise Problem(409, "family.member_not_adult", "Only an adult can own a family.")
    now = clock.utcnow()
    me.role = "guardian"
    m.role = "owner"
    fam.owner_account_id = acc.id
    fam.updated_at = now
    if fam.photo_media_id:
        photo = await media.get_media(s, fam.photo_media_id)
        if photo is not None:
            photo.owner_account_id = acc.id
    await s.commit()
    return fam


# --- sharing -----------------------------------------------------------------------------------


def is_paused(m: FamilyMember, now: datetime) -> bool:
    return m.paused_until is not None and m.paused_until > now


# health shared with a family: off, summaries, or series (raw series imply
# summaries); stored as the original ``health`` flag (summaries) plus
# ``health_series``, so clients that only know the flag keep working
HEALTH_LEVELS = ("off", "summaries", "series")


def health_level(m: FamilyMember) -> str:
    if not m.health:
        return "off"
    return "series" if m.health_series else "summaries"


def health_allows(level: str, need: str) -> bool:
    """Whether a health sharing level covers ``need`` (summaries or series)."""
    return HEALTH_LEVELS.index(level) >= HEALTH_LEVELS.index(need)


@dataclass(frozen=True)
class Effective:
    location: str
    health: bool
    schedule: bool
    health_level: str = "off"


def effective(m: FamilyMember, now: datetime) -> Effective:
    """What the family sees of this member now: nothing during a pause."""
    if is_paused(m, now):
        return Effective("off", False, False)
    return Effective(m.location, m.health, m.schedule, health_level(m))


async def member_view(
    s: AsyncSession, *, family_id: str, caller_id: str, account_id: str
) -> tuple[FamilyMember, Account]:
    """Another member (or oneself), as a member of the family sees them."""
    await require_member(s, family_id, caller_id)
    m = await member(s, family_id, account_id)
    acc = await s.get(Account, account_id) if m is not None else None
    if m is None or acc is None:
        raise _member_not_found()
    return m, acc


SHARING_FIELDS = ("location", "health", "health_level", "schedule", "paused_until")


async def set_sharing(
    s: AsyncSession,
    *,
    family_id: str,
    actor_id: str,
    account_id: str,
    changes: dict[str, Any],
) -> tuple[FamilyMember, Account]:
    """Change what a member shares with this family: the member themself, or for
    a dependant its family's owner and guardians. Fields not given keep their value."""
    _, me = await require_member(s, family_id, actor_id)
    if account_id == actor_id:
        if me.role == "dependant":
            raise _forbidden("Your guardians choose what you share with this family.")
        m = me
    else:
        found = await member(s, family_id, account_id)
        if found is None:
            raise _member_not_found()
        if found.role != "dependant":
            raise _forbidden("Each member chooses what they share.")
        if me.role not in ADMINS:
            raise _forbidden(
                "A dependant's sharing is managed by the family's owner and guardians."
            )
        m = found
    now = clock.utcnow()
    unknown = set(changes) - set(SHARING_FIELDS)
    if unknown:
        raise ValueError(f"unknown sharing fields {sorted(unknown)}")
    if changes.get("location") not in (None, "live", "history", "off"):
        raise Problem(422, "sharing.invalid", "Location sharing is live, history or off.")
    changes = _health_changes(m, changes)
    until = changes.get("paused_until")
    if until is not None:
        if not isinstance(until, datetime) or until.tzinfo is None:
            raise Problem(
                422, "sharing.invalid_pause", "Give the end of a pause with its time zone."
            )
        if until <= now or until > now + MAX_PAUSE + PAUSE_SLACK:
            raise Problem(
                422,
                "sharing.invalid_pause",
                "A pause ends in the future, at most 7 days from now.",
                max_until=(now + MAX_PAUSE).isoformat(),
            )
    for k, v in changes.items():
        setattr(m, k, v)
    m.sharing_updated_at = now
    m.sharing_updated_by = actor_id
    await _family_changed(s, family_id)
    await s.commit()
    acc = await s.get(Account, m.account_id)
    assert acc is not None
    return m, acc


def _health_changes(m: FamilyMember, changes: dict[str, Any]) -> dict[str, Any]:
    """``health_level`` as the stored pair (``health``, ``health_series``). The
    flag alone keeps its meaning: true shares at least summaries (a member who
    shares series keeps them), false shares nothing."""
    out = dict(changes)
    level = out.pop("health_level", None)
    flag = out.get("health")
    if level is None:
        if flag is False:
            out["health_series"] = False
        return out
    if level not in HEALTH_LEVELS:
        raise Problem(422, "sharing.invalid", "Health sharing is off, summaries or series.")
    if flag is not None and flag != (level != "off"):
        raise Problem(
            422,
            "sharing.invalid",
            "health and health_level disagree: give one of them, or both alike.",
        )
    out["health"] = level != "off"
    out["health_series"] = level == "series"
    return out


def _needs(function: str, feature: str | None) -> tuple[str, str] | None:
    """Which sharing choice a function's read of another person's data needs."""
    if function == "driving_tracks":
        return ("location", "history" if feature in HISTORY_FEATURES else "live")
    if function in ("health", "schedule"):
        return (function, "on")
    return None


def allows(m: FamilyMember, need: tuple[str, str], now: datetime) -> bool:
    """Whether this membership's choices, now, let the family read ``need``: a
    (what, level) pair such as ("location", "live") or ("health", "on")."""
    eff = effective(m, now)
    what, level = need
    if what == "location":
        return eff.location == "history" or (level == "live" and eff.location == "live")
    return bool(getattr(eff, what))


async def shared_memberships(
    s: AsyncSession, viewer_id: str, subject_id: str
) -> list[FamilyMember]:
    """The subject's memberships in the families the viewer belongs to."""
    mine = select(FamilyMember.family_id).where(FamilyMember.account_id == viewer_id)
    q = select(FamilyMember).where(
        FamilyMember.account_id == subject_id, FamilyMember.family_id.in_(mine)
    )
    return list((await s.execute(q)).scalars())


LIVE_LOCATION = ("location", "live")


async def may_see(
    s: AsyncSession, viewer_id: str, subject_id: str, need: tuple[str, str] = LIVE_LOCATION
) -> bool:
    """The sharing rule for one pair, as a yes or no: oneself, or a shared family
    where the subject's choices allow ``need`` now (the live map's rule by default:
    location shared live or with history, and not paused). ``check_subject`` is
    the same rule as the guard applies it, with the reasons."""
    if viewer_id == subject_id:
        return True
    now = clock.utcnow()
    return any(allows(m, need, now) for m in await shared_memberships(s, viewer_id, subject_id))


async def co_members(s: AsyncSession, account_id: str) -> set[str]:
    """Everyone who shares a family with the account (the account included)."""
    mine = select(FamilyMember.family_id).where(FamilyMember.account_id == account_id)
    q = select(FamilyMember.account_id).where(FamilyMember.family_id.in_(mine))
    return {account_id, *(await s.execute(q)).scalars()}


async def check_subject(s: AsyncSession, allowed: Allowed, subject: str) -> None:
    """The guard's hook for data about another account (routes with ``about=``).

    Allowed only when caller and subject share a family (else 404: the person
    does not exist for the caller), and for location, health and schedule only
    when the subject's choice in at least one shared family allows it now (else
    403 ``sharing.off`` with those choices). Other functions need only the
    shared family; their domains may register stricter checks.
    """
    if not is_id(subject):
        raise Problem(404, "not_found", "Not found.")
    shared = await shared_memberships(s, allowed.account_id, subject)
    if not shared:
        raise Problem(404, "not_found", "Not found.")
    need = _needs(allowed.function, allowed.feature)
    if need is None:
        return
    now = clock.utcnow()
    if any(allows(m, need, now) for m in shared):
        return
    raise Problem(
        403,
        "sharing.off",
        "This member does not share this with you.",
        function=allowed.function,
        feature=allowed.feature,
        choices=[
            {
                "family_id": m.family_id,
                "location": m.location,
                "health": m.health,
                "health_level": health_level(m),
                "schedule": m.schedule,
                "paused_until": (
                    m.paused_until.isoformat()
                    if m.paused_until is not None and is_paused(m, now)
                    else None
                ),
            }
            for m in sorted(shared, key=lambda x: x.family_id)
        ],
    )


register_subject_check(check_subject)


# --- invitations -------------------------------------------------------------------------------


def _mac(value: str, purpose: str) -> bytes:
    return bytes.fromhex(crypto.blind_index(value, purpose=purpose))


def invitation_code(invitation_id: str) -> str:
    """The short code of an invitation (8 characters, 40 bits), derived from its id."""
    n = int.from_bytes(_mac(invitation_id, "family-invitation-code")[:5], "big")
    out = []
    for _ in range(CODE_LENGTH):
        out.append(CODE_ALPHABET[n & 31])
        n >>= 5
    return "".join(out)


def display_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def _code_hash(code: str) -> str:
    return crypto.blind_index(code, purpose="family-invitation-lookup")


def _signature(body: str) -> str:
    raw = _mac(body, "family-invitation-token")[:16]
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def invitation_token(inv: FamilyInvitation) -> str:
    """``<id>.<expiry, unix seconds>.<HMAC>``: what the QR code carries."""
    body = f"{inv.id}.{int(inv.expires_at.timestamp())}"
    return f"{body}.{_signature(body)}"


def invitation_text(inv: FamilyInvitation) -> str:
    return JOIN_PREFIX + invitation_token(inv)


def invitation_status(inv: FamilyInvitation, now: datetime) -> str:
    if inv.revoked_at is not None:
        return "revoked"
    if now >= inv.expires_at:
        return "expired"
    if inv.uses >= inv.max_uses:
        return "used_up"
    return "active"


_STATUS_PROBLEMS = {
    "revoked": "This invitation was withdrawn. Ask for a new one.",
    "expired": "This invitation has expired. Ask for a new one.",
    "used_up": "This invitation has been used as many times as it allows. Ask for a new one.",
}


def _status_problem(status: str) -> Problem:
    return Problem(410, f"invitation.{status}", _STATUS_PROBLEMS[status])


async def create_invitation(
    s: AsyncSession, *, family_id: str, actor_id: str, expires_in_days: int, max_uses: int
) -> FamilyInvitation:
    await require_admin(s, family_id, actor_id)
    if not 1 <= expires_in_days <= 30 or not 1 <= max_uses <= 50:
        raise Problem(
            422, "invitation.invalid_limits", "An invitation lasts 1-30 days and 1-50 uses."
        )
    now = clock.utcnow().replace(microsecond=0)
    await hold(s, family_id)
    active = (
        await s.execute(
            select(func.count())
            .select_from(FamilyInvitation)
            .where(
                FamilyInvitation.family_id == family_id,
                FamilyInvitation.revoked_at.is_(None),
                FamilyInvitation.expires_at > now,
                FamilyInvitation.uses < FamilyInvitation.max_uses,
            )
        )
    ).scalar_one()
    if active >= MAX_ACTIVE_INVITATIONS:
        raise Problem(
            409,
            "invitation.too_many",
            f"A family has at most {MAX_ACTIVE_INVITATIONS} open invitations; revoke one first.",
        )
    # A code collides with an existing one with odds of about 1 in 2^40 per
    # invitation stored; pick another id if it does.
    for _ in range(8):
        inv_id = new_id()
        code_hash = _code_hash(invitation_code(inv_id))
        taken = await s.execute(
            select(FamilyInvitation.id).where(FamilyInvitation.code_hash == code_hash)
        )
        if taken.first() is None:
            break
    inv = FamilyInvitation(
        id=inv_id,
        family_id=family_id,
        created_by_account_id=actor_id,
        code_hash=code_hash,
        max_uses=max_uses,
        uses=0,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days),
    )
    s.add(inv)
    await s.commit()
    return inv


async def list_invitations(
    s: AsyncSession, *, family_id: str, actor_id: str
) -> list[tuple[FamilyInvitation, Account | None]]:
    await require_admin(s, family_id, actor_id)
    q = (
        select(FamilyInvitation, Account)
        .outerjoin(Account, Account.id == FamilyInvitation.created_by_account_id)
        .where(FamilyInvitation.family_id == family_id)
        .order_by(FamilyInvitation.created_at.desc(), FamilyInvitation.id)
    )
    return [(i, a) for i, a in (await s.execute(q)).all()]


async def _family_invitation(
    s: AsyncSession, family_id: str, invitation_id: str
) -> FamilyInvitation:
    q = select(FamilyInvitation).where(
        FamilyInvitation.id == invitation_id, FamilyInvitation.family_id == family_id
    )
    inv = (await s.execute(q)).scalar_one_or_none() if is_id(invitation_id) else None
    if inv is None:
        raise Problem(404, "invitation.not_found", "No such invitation in this family.")
    return inv


async def invitation_of(
    s: AsyncSession, *, family_id: str, actor_id: str, invitation_id: str
) -> tuple[FamilyInvitation, Account | None]:
    await require_admin(s, family_id, actor_id)
    inv = await _family_invitation(s, family_id, invitation_id)
    return inv, await s.get(Account, inv.created_by_account_id)


async def active_invitation(
    s: AsyncSession, *, family_id: str, actor_id: str, invitation_id: str
) -> FamilyInvitation:
    """An invitation that can still be used (for its QR code)."""
    await require_admin(s, family_id, actor_id)
    inv = await _family_invitation(s, family_id, invitation_id)
    status = invitation_status(inv, clock.utcnow())
    if status != "active":
        raise _status_problem(status)
    return inv


async def revoke_invitation(
    s: AsyncSession, *, family_id: str, actor_id: str, invitation_id: str
) -> None:
    await require_admin(s, family_id, actor_id)
    inv = await _family_invitation(s, family_id, invitation_id)
    if inv.revoked_at is None:
        inv.revoked_at = clock.utcnow()
        await s.commit()


async def _find_invitation(s: AsyncSession, text: str) -> FamilyInvitation | None:
    """The invitation a scanned text (``kares://join/<token>``), a bare token or
    a typed short code names; None when it names none (unknown or tampered)."""
    raw = text.strip()
    if raw[: len(JOIN_PREFIX)].lower() == JOIN_PREFIX:
        raw = raw[len(JOIN_PREFIX) :]
    m = _TOKEN.fullmatch(raw)
    if m is not None:
        inv_id, exp, sig = m.groups()
        if not hmac.compare_digest(_signature(f"{inv_id}.{exp}"), sig):
            return None
        inv = await s.get(FamilyInvitation, inv_id)
        if inv is None or int(inv.expires_at.timestamp()) != int(exp):
            return None
        return inv
    code = re.sub(r"[\s-]", "", raw).upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    q = select(FamilyInvitation).where(FamilyInvitation.code_hash == _code_hash(code))
    return (await s.execute(q)).scalar_one_or_none()


async def _check_attempts(s: AsyncSession, account_id: str, now: datetime) -> None:
    since = now - timedelta(hours=1)
    count, first = (
        await s.execute(
            select(func.count(), func.min(InvitationAttempt.created_at)).where(
                InvitationAttempt.account_id == account_id, InvitationAttempt.created_at > since
            )
        )
    ).one()
    if count >= ATTEMPTS_PER_HOUR:
        wait = max(1, int((first + timedelta(hours=1) - now).total_seconds() + 0.999))
        raise Problem(
            429,
            "invitation.too_many_attempts",
            "Too many codes that match no invitation. Try again later.",
            headers={"Retry-After": str(wait)},
        )


async def _lookup(s: AsyncSession, account_id: str, text: str) -> FamilyInvitation:
    """The invitation a text names, whatever its state; 400 when it names none.

    The caller's account is held first (``db.hold``), so one account's lookups
    count their wrong codes one after another: a burst of guesses gets no more
    tries than the hour allows."""
    now = clock.utcnow()
    await db.hold(s, Account, account_id)
    await _check_attempts(s, account_id, now)
    inv = await _find_invitation(s, text)
    if inv is None:
        # The one write a refusal makes: the wrong code counts against guessing.
        await s.execute(
            delete(InvitationAttempt)
            .where(InvitationAttempt.created_at <= now - timedelta(hours=1))
            .execution_options(synchronize_session=False)
        )
        s.add(InvitationAttempt(account_id=account_id, created_at=now))
        await s.commit()
        raise Problem(400, "invitation.invalid", "That is not a valid invitation code or QR code.")
    return inv


def _require_active(inv: FamilyInvitation) -> None:
    status = invitation_status(inv, clock.utcnow())
    if status != "active":
        raise _status_problem(status)


async def _family_of(s: AsyncSession, inv: FamilyInvitation) -> Family:
    fam = await s.get(Family, inv.family_id)
    if fam is None:  # dissolved a moment ago (the invitation goes with it)
        raise Problem(400, "invitation.invalid", "That is not a valid invitation code or QR code.")
    return fam


@dataclass(frozen=True)
class Preview:
    family: Family
    member_count: int
    inviter_name: str | None
    expires_at: datetime
    already_member: bool


async def preview(s: AsyncSession, *, account_id: str, text: str) -> Preview:
    """What an invitation leads to, without joining."""
    inv = await _lookup(s, account_id, text)
    fam = await _family_of(s, inv)
    already = await member(s, fam.id, account_id) is not None
    if not already:
        _require_active(inv)
    inviter = await s.get(Account, inv.created_by_account_id)
    return Preview(
        family=fam,
        member_count=await member_count(s, fam.id),
        inviter_name=inviter.name if inviter else None,
        expires_at=inv.expires_at,
        already_member=already,
    )


async def accept(s: AsyncSession, *, account_id: str, text: str) -> tuple[Family, bool]:
    """Join the family an invitation names. Joining again changes nothing and
    spends no use (even once the invitation is used up or has expired). Returns
    the family and whether the caller joined now."""
    inv = await _lookup(s, account_id, text)
    fam = await _family_of(s, inv)
    if await member(s, fam.id, account_id) is not None:
        return fam, False
    _require_active(inv)
    await _check_room(s, fam.id)
    now = clock.utcnow()
    # a rollback below expires every loaded object: keep what is needed after it
    fam_id, inv_id = fam.id, inv.id
    res = await s.execute(
        update(FamilyInvitation)
        .where(
            FamilyInvitation.id == inv_id,
            FamilyInvitation.revoked_at.is_(None),
            FamilyInvitation.expires_at > now,
            FamilyInvitation.uses < FamilyInvitation.max_uses,
        )
        .values(uses=FamilyInvitation.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        # another join took the last use (or it was revoked) just now
        await s.rollback()
        if await member(s, fam_id, account_id) is not None:
            await s.refresh(fam)
            return fam, False  # this account's own concurrent join took it
        fresh = await s.get(FamilyInvitation, inv_id, populate_existing=True)
        status = invitation_status(fresh, now) if fresh is not None else "revoked"
        raise _status_problem("used_up" if status == "active" else status)
    s.add(_new_member(fam_id, account_id, "member", now))
    try:
        await s.flush()
    except IntegrityError:
        # the same account joined in a concurrent request: nothing more to do
        await s.rollback()
        await s.refresh(fam)
        return fam, False
    await events.emit(s, "family.joined", family_id=fam_id, account_id=account_id)
    await _family_changed(s, fam_id)
    await s.commit()
    return fam, True


# --- dependants ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DependantResult:
    member: FamilyMember
    account: Account
    created_profile: bool
    added: bool


async def add_dependant(
    s: AsyncSession,
    rt: Runtime,
    *,
    family_id: str,
    actor: Account,
    session_id: str | None,
    device_id: str | None,
    name: str | None = None,
    birth_date: date | None = None,
    age_bracket: str | None = None,
    account_id: str | None = None,
) -> DependantResult:
    """The family's owner or a guardian adds a dependant: a new managed profile
    (no phone, no sign-in; the caller becomes its guardian and accepts the policy
    for it), or an existing child account the caller is the guardian of."""
    fam, _ = await require_admin(s, family_id, actor.id)
    if not privacy.is_adult(actor):
        raise Problem(403, "family.adult_required", "Only an adult can be a dependant's guardian.")
    now = clock.utcnow()
    if account_id is not None:
        ward = await privacy.guardian_of(s, account_id, actor.id) if is_id(account_id) else None
        acc = await s.get(Account, account_id) if ward is not None else None
        if acc is None:
            raise Problem(
                404, "dependant.not_found", "You are not the guardian of such an account."
            )
        if acc.status != "managed" and not privacy.is_minor(acc):
            raise Problem(
                409,
                "dependant.not_eligible",
                "Only a child under 14 or a managed profile can be a dependant.",
            )
        m = await member(s, fam.id, acc.id)
        if m is not None and m.role in ADMINS:
            raise Problem(
                409, "dependant.not_eligible", "The family's owner or a guardian is no dependant."
            )
        if m is not None:
            if m.role != "dependant":
                m.role = "dependant"
                await s.commit()
            return DependantResult(m, acc, created_profile=False, added=False)
        await _check_room(s, fam.id)
        m = _new_member(fam.id, acc.id, "dependant", now, by=actor.id)
        s.add(m)
        await s.flush()
        await events.emit(s, "family.joined", family_id=fam.id, account_id=acc.id)
        await _family_changed(s, fam.id)
        await s.commit()
        return DependantResult(m, acc, created_profile=False, added=True)

    clean = clean_name(name or "", max_len=PROFILE_NAME_MAX, code="dependant.invalid_name")
    birth, bracket = privacy.check_age(birth_date, age_bracket, now.date())
    await _check_room(s, fam.id)
    acc = await accounts.new_managed_account(s, name=clean, birth_date=birth, age_bracket=bracket)
    s.add(
        Guardianship(
            minor_account_id=acc.id,
            guardian_account_id=actor.id,
            approved_at=now,
            note="managed profile added to a family by this guardian",
        )
    )
    await privacy.record(
        s,
        account_id=acc.id,
        subject="policy",
        action="grant",
        policy_version=catalog_of(rt).policy.version,
        via="guardian",
        actor_account_id=actor.id,
        session_id=session_id,
        device_id=device_id,
    )
    m = _new_member(fam.id, acc.id, "dependant", now, by=actor.id)
    s.add(m)
    await s.flush()
    await events.emit(s, "family.joined", family_id=fam.id, account_id=acc.id)
    await _family_changed(s, fam.id)
    await s.commit()
    return DependantResult(m, acc, created_profile=True, added=True)


async def dependants_of(s: AsyncSession, family_id: str) -> list[Account]:
    """The family's dependants (step 3's watches bind to these)."""
    q = (
        select(Account)
        .join(FamilyMember, FamilyMember.account_id == Account.id)
        .where(FamilyMember.family_id == family_id, FamilyMember.role == "dependant")
        .order_by(FamilyMember.joined_at, Account.id)
    )
    return list((await s.execute(q)).scalars())


async def guardians_of(s: AsyncSession, account_id: str) -> list[Account]:
    """Who looks after an account (to notify for an SOS): its verified guardians
    (privacy Guardianship) and the owner and guardians of every family where it
    is a dependant. Active accounts only, never the account itself."""
    ids: set[str] = set()
    gq = select(Guardianship.guardian_account_id).where(
        Guardianship.minor_account_id == account_id, Guardianship.ended_at.is_(None)
    )
    ids.update((await s.execute(gq)).scalars())
    as_dependant = select(FamilyMember.family_id).where(
        FamilyMember.account_id == account_id, FamilyMember.role == "dependant"
    )
    fq = select(FamilyMember.account_id).where(
        FamilyMember.family_id.in_(as_dependant), FamilyMember.role.in_(ADMINS)
    )
    ids.update((await s.execute(fq)).scalars())
    ids.discard(account_id)
    if not ids:
        return []
    q = select(Account).where(Account.id.in_(ids), Account.status == "active").order_by(Account.id)
    return list((await s.execute(q)).scalars())


# --- deletion (policy 5.2, 5.4) -----------------------------------------------------------------


async def _photos_on_erasure(s: AsyncSession, e: ports.Erasure) -> None:
    """A family's photo is a media object of the account that set it: before that
    account's pictures go, the family stops pointing at one (after a chosen
    deletion of profile pictures, at one that is gone)."""
    from kares.media.models import MediaObject

    cond: ColumnElement[bool]
    if e.scope == "account":
        theirs = select(MediaObject.id).where(MediaObject.owner_account_id == e.account_id)
        cond = Family.photo_media_id.in_(theirs)
    elif e.category == "account.profile":
        cond = Family.photo_media_id.is_not(None) & Family.photo_media_id.not_in(
            select(MediaObject.id)
        )
    else:
        return
    await s.execute(
        update(Family)
        .where(cond)
        .values(photo_media_id=None)
        .execution_options(synchronize_session=False)
    )


register_erasure("before", _photos_on_erasure)
register_erasure("after", _photos_on_erasure)
