"""Schedule storage and access: calendars, calendar object resources, the sync log.

Every public ``async def`` that changes something checks everything first, then
writes and commits once (one action, one transaction). The CalDAV protocol
module (``kares.protocols``) and the JSON API both call these functions, so both
see the same objects. Interface for the other modules: /docs/SCHEDULE.md.

Who may do what (``access``):

* a personal calendar: read/write for its owner, and for the owner's guardians
  (``families.guardians_of``: verified guardians, and the owner and guardians of a
  family where the owner is a dependant): a dependant's schedule is managed by
  them;
* a family calendar: read for every member, write for members who are not
  dependants;
* anyone else: 404 ``calendar.not_found``, never a word on whether it exists.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import icalendar
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.db import insert_for, new_id
from kares.errors import Problem
from kares.families import service as families
from kares.families.models import Family, FamilyMember
from kares.identity.models import Account
from kares.privacy.models import Guardianship
from kares.schedule import ical, recurrence
from kares.schedule.models import Calendar, CalendarChange, CalendarObject

Access = Literal["read", "write"]
KINDS = ("personal", "family")
DEFAULT_TIME_ZONE = "Asia/Shanghai"
TOMBSTONE_DAYS = 90  # a deletion is told to sync clients for this long
MAX_CALENDARS = 20  # calendars per owner, the default one included
NAME_MAX = 64
_ID = re.compile(r"[0-9a-f]{32}")
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?")
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


# --- errors ------------------------------------------------------------------------------


def not_found() -> Problem:
    return Problem(404, "calendar.not_found", "No such calendar.")


def object_not_found() -> Problem:
    return Problem(404, "calendar.object_not_found", "No such calendar object.")


def read_only() -> Problem:
    return Problem(403, "calendar.read_only", "You may read this calendar but not change it.")


def precondition_failed() -> Problem:
    return Problem(
        412, "calendar.precondition_failed", "The calendar object changed or exists already."
    )


class SyncTokenInvalid(Problem):
    """A sync token this calendar cannot answer (older than its oldest kept
    tombstone, newer than its counter, or not ours): the client syncs again from
    scratch (CalDAV: 403 DAV:valid-sync-token)."""

    def __init__(self) -> None:
        super().__init__(
            409, "calendar.sync_token_invalid", "The sync token is too old or not valid."
        )


# --- hooks -------------------------------------------------------------------------------

ObjectHook = Callable[[AsyncSession, Calendar, str, CalendarObject | None], Awaitable[None]]
_object_hooks: list[ObjectHook] = []


def on_object_change(fn: ObjectHook) -> ObjectHook:
    """Register ``fn(session, calendar, name, obj)`` to run inside the transaction
    of every write (``obj`` the stored object, flushed) or deletion (``obj`` None)
    of a calendar object, before the commit; deleting a whole calendar calls it
    for each object. A raised Problem refuses the write."""
    _object_hooks.append(fn)
    return fn


async def _changed(s: AsyncSession, cal: Calendar, name: str, obj: CalendarObject | None) -> None:
    for fn in _object_hooks:
        await fn(s, cal, name, obj)


# --- access ------------------------------------------------------------------------------


def is_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))


async def _guards(s: AsyncSession, guardian_id: str, account_id: str) -> bool:
    return any(a.id == guardian_id for a in await families.guardians_of(s, account_id))


async def _access_to(s: AsyncSession, account_id: str, cal: Calendar) -> Access | None:
    if cal.kind == "personal":
        if cal.account_id == account_id:
            return "write"
        if cal.account_id is not None and await _guards(s, account_id, cal.account_id):
            return "write"
        return None
    if cal.family_id is None:
        return None
    m = await families.member(s, cal.family_id, account_id)
    if m is None:
        return None
    return "read" if m.role == "dependant" else "write"


async def access(s: AsyncSession, account_id: str, calendar_id: str) -> Access:
    """What ``account_id`` may do with the calendar: "read" or "write"; 404
    ``calendar.not_found`` when nothing (or no such calendar)."""
    cal = await s.get(Calendar, calendar_id) if is_id(calendar_id) else None
    got = await _access_to(s, account_id, cal) if cal is not None else None
    if cal is None or got is None:
        raise not_found()
    return got


async def calendar_for(
    s: AsyncSession, account_id: str, calendar_id: str, *, write: bool = False
) -> tuple[Calendar, Access]:
    """The calendar and the caller's access; 404 as ``access``, 403
    ``calendar.read_only`` when ``write`` is asked of a read-only one."""
    cal = await s.get(Calendar, calendar_id) if is_id(calendar_id) else None
    got = await _access_to(s, account_id, cal) if cal is not None else None
    if cal is None or got is None:
        raise not_found()
    if write and got != "write":
        raise read_only()
    return cal, got


async def wards_of(s: AsyncSession, account_id: str) -> list[str]:
    """The accounts whose schedule ``account_id`` manages: its verified wards and
    the dependants of families where it is the owner or a guardian."""
    ids: set[str] = set()
    gq = select(Guardianship.minor_account_id).where(
        Guardianship.guardian_account_id == account_id, Guardianship.ended_at.is_(None)
    )
    ids.update((await s.execute(gq)).scalars())
    admin_of = select(FamilyMember.family_id).where(
        FamilyMember.account_id == account_id, FamilyMember.role.in_(families.ADMINS)
    )
    dq = select(FamilyMember.account_id).where(
        FamilyMember.family_id.in_(admin_of), FamilyMember.role == "dependant"
    )
    ids.update((await s.execute(dq)).scalars())
    ids.discard(account_id)
    return sorted(ids)


# --- calendars ---------------------------------------------------------------------------


def _etag(calendar_id: str, modseq: int, data: bytes) -> str:
    h = hashlib.sha256()
    h.update(calendar_id.encode())
    h.update(modseq.to_bytes(8, "big"))
    h.update(data)
    return h.hexdigest()[:32]


def _clean_name(raw: str) -> str:
    return families.clean_name(raw, max_len=NAME_MAX, code="calendar.invalid_name")


def _check_color(color: str | None) -> str | None:
    if color is None:
        return None
    if not _COLOR.fullmatch(color):
        raise Problem(400, "calendar.invalid_color", "A color is #RRGGBB or #RRGGBBAA.")
    return color.upper()


def _check_zone(tz: str | None) -> str:
    if tz is None:
        return DEFAULT_TIME_ZONE
    if len(tz) > 64 or recurrence.zone(tz) is None:
        raise Problem(400, "calendar.invalid_time_zone", "Not a known IANA time zone.")
    return tz


async def _ensure_default(
    s: AsyncSession, *, kind: str, owner: str, name: str, time_zone: str | None = None
) -> None:
    now = clock.utcnow()
    stmt = (
        insert_for(s)(Calendar)
        .values(
            id=new_id(),
            kind=kind,
            account_id=owner if kind == "personal" else None,
            family_id=owner if kind == "family" else None,
            default_for=owner,
            name=name,
            color=None,
            description=None,
            time_zone=time_zone or DEFAULT_TIME_ZONE,
            modseq=0,
            sync_floor=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Calendar.__table__.c.default_for])
    )
    await s.execute(stmt)


@dataclass(frozen=True)
class _Reach:
    """Whose calendars an account sees: its wards, and its families with its
    role and the family's name."""

    wards: list[str]
    families: dict[str, tuple[str, str]]  # family id -> (role, family name)


async def _reach(s: AsyncSession, account_id: str) -> _Reach:
    q = (
        select(FamilyMember.family_id, FamilyMember.role, Family.name)
        .join(Family, Family.id == FamilyMember.family_id)
        .where(FamilyMember.account_id == account_id)
    )
    fams = {fid: (role, name) for fid, role, name in (await s.execute(q)).all()}
    return _Reach(await wards_of(s, account_id), fams)


async def ensure_defaults(s: AsyncSession, account_id: str, reach: _Reach | None = None) -> bool:
    """Make, on first use, the calendars the account sees: its own, each of its
    families', each of its wards' (no commit: the caller's action commits).
    True when it made one."""
    r = reach or await _reach(s, account_id)
    wanted: list[tuple[str, str, str]] = [("personal", account_id, "Personal")]
    wanted += [("personal", w, "Personal") for w in r.wards]
    wanted += [("family", fid, name) for fid, (_, name) in r.families.items()]
    ids = [o for _, o, _ in wanted]
    have = select(Calendar.default_for).where(Calendar.default_for.in_(ids))
    existing = set((await s.execute(have)).scalars())
    made = False
    for kind, owner, name in wanted:
        if owner not in existing:
            await _ensure_default(s, kind=kind, owner=owner, name=name[:NAME_MAX])
            made = True
    return made


async def personal_calendar(s: AsyncSession, account_id: str) -> Calendar:
    """The account's own default calendar, made on first use (no commit)."""
    await _ensure_default(s, kind="personal", owner=account_id, name="Personal")
    q = select(Calendar).where(Calendar.default_for == account_id)
    return (await s.execute(q)).scalar_one()


async def family_calendar(s: AsyncSession, family_id: str) -> Calendar:
    """The family's default calendar, made on first use (no commit)."""
    fam = await s.get(Family, family_id)
    if fam is None:
        raise not_found()
    await _ensure_default(s, kind="family", owner=family_id, name=fam.name[:NAME_MAX])
    q = select(Calendar).where(Calendar.default_for == family_id)
    return (await s.execute(q)).scalar_one()


@dataclass(frozen=True)
class Seen:
    """A calendar as one account sees it."""

    calendar: Calendar
    access: Access


async def calendars_for(s: AsyncSession, account_id: str) -> list[Seen]:
    """Every calendar the account sees: its own, its families', its wards' (the
    defaults made on first use: this commits when it made one). The access is
    :func:`access`'s, read from the same memberships."""
    before = s.in_transaction() and bool(s.new or s.dirty)
    r = await _reach(s, account_id)
    made = await ensure_defaults(s, account_id, r)
    q = (
        select(Calendar)
        .where(
            or_(
                Calendar.account_id == account_id,
                Calendar.account_id.in_(r.wards),
                Calendar.family_id.in_(list(r.families)),
            )
        )
        .order_by(Calendar.created_at, Calendar.id)
    )
    out = []
    for c in (await s.execute(q)).scalars():
        if c.kind == "personal":
            out.append(Seen(c, "write"))  # its own, or a ward's its guardians keep
        elif c.family_id in r.families:
            role = r.families[c.family_id][0]
            out.append(Seen(c, "read" if role == "dependant" else "write"))
    if made and not before:
        await s.commit()
    return out


async def create_calendar(
    s: AsyncSession,
    *,
    account_id: str,
    name: str,
    family_id: str | None = None,
    owner_id: str | None = None,
    color: str | None = None,
    description: str | None = None,
    time_zone: str | None = None,
    calendar_id: str | None = None,
) -> Calendar:
    """A further calendar: the caller's own (or, with ``owner_id``, a ward's), or
    with ``family_id`` the family's (a member who is not a dependant). Commits.
    ``calendar_id`` (32 hex digits) is the id to give it: CalDAV's MKCALENDAR
    names the new calendar's URL."""
    if calendar_id is not None and not is_id(calendar_id):
        raise Problem(400, "calendar.invalid_id", "A calendar id is 32 hex digits.")
    clean = _clean_name(name)
    color = _check_color(color)
    tz = _check_zone(time_zone)
    if description is not None and len(description) > 2000:
        raise Problem(400, "calendar.invalid_description", "At most 2000 characters.")
    if family_id is not None:
        m = await families.member(s, family_id, account_id)
        if m is None:
            raise Problem(404, "family.not_found", "No such family.")
        if m.role == "dependant":
            raise read_only()
        kind, owner = "family", family_id
        cond = Calendar.family_id == family_id
    else:
        owner = owner_id or account_id
        if owner != account_id and not (is_id(owner) and await _guards(s, account_id, owner)):
            raise Problem(404, "calendar.owner_not_found", "No such person to make a calendar for.")
        kind = "personal"
        cond = Calendar.account_id == owner
    have = list((await s.execute(select(Calendar.id).where(cond))).scalars())
    if len(have) >= MAX_CALENDARS:
        raise Problem(409, "calendar.too_many", f"At most {MAX_CALENDARS} calendars each.")
    now = clock.utcnow()
    cal = Calendar(
        id=calendar_id or new_id(),
        kind=kind,
        account_id=owner if kind == "personal" else None,
        family_id=owner if kind == "family" else None,
        default_for=None,
        name=clean,
        color=color,
        description=description,
        time_zone=tz,
        modseq=0,
        sync_floor=0,
        created_at=now,
        updated_at=now,
    )
    s.add(cal)
    await s.commit()
    return cal


_UNSET = object()


async def update_calendar(
    s: AsyncSession,
    *,
    account_id: str,
    calendar_id: str,
    name: str | None = None,
    color: str | object | None = _UNSET,
    description: str | object | None = _UNSET,
    time_zone: str | None = None,
) -> Calendar:
    """Rename a calendar, or change its color, description or default time zone
    (write access). Commits."""
    cal, _ = await calendar_for(s, account_id, calendar_id, write=True)
    if name is not None:
        cal.name = _clean_name(name)
    if color is not _UNSET:
        cal.color = _check_color(color if isinstance(color, str) else None)
    if description is not _UNSET:
        d = description if isinstance(description, str) else None
        if d is not None and len(d) > 2000:
            raise Problem(400, "calendar.invalid_description", "At most 2000 characters.")
        cal.description = d
    if time_zone is not None:
        cal.time_zone = _check_zone(time_zone)
    cal.updated_at = clock.utcnow()
    await s.commit()
    return cal


async def delete_calendar(s: AsyncSession, *, account_id: str, calendar_id: str) -> None:
    """Delete a calendar and its objects (write access; a default calendar cannot
    be deleted: 409 ``calendar.is_default``). Commits."""
    cal, _ = await calendar_for(s, account_id, calendar_id, write=True)
    if cal.default_for is not None:
        raise Problem(409, "calendar.is_default", "The default calendar cannot be deleted.")
    names = (
        await s.execute(select(CalendarObject.name).where(CalendarObject.calendar_id == cal.id))
    ).scalars()
    for n in list(names):
        await _changed(s, cal, n, None)
    await s.delete(cal)
    await s.commit()


# --- objects -----------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not name or len(name) > 255 or name in (".", "..") or _BAD_NAME.search(name):
        raise Problem(400, "calendar.invalid_name", "A resource name is 1-255 characters, no '/'.")
    return name


async def _next_modseq(s: AsyncSession, cal: Calendar) -> int:
    """Take the calendar's next change number; holds the calendar's row until the
    transaction ends, so writes to one calendar run one after another."""
    row = await s.execute(
        update(Calendar)
        .where(Calendar.id == cal.id)
        .values(modseq=Calendar.modseq + 1, updated_at=clock.utcnow())
        .returning(Calendar.modseq)
        .execution_options(synchronize_session=False)
    )
    n = int(row.scalar_one())
    cal.modseq = n
    return n


async def _log(s: AsyncSession, cal: Calendar, name: str, modseq: int, deleted: bool) -> None:
    now = clock.utcnow()
    stmt = insert_for(s)(CalendarChange).values(
        calendar_id=cal.id, name=name, modseq=modseq, deleted=deleted, changed_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[CalendarChange.calendar_id, CalendarChange.name],
        set_={"modseq": modseq, "deleted": deleted, "changed_at": now},
    )
    await s.execute(stmt)
    await _prune(s, cal, now)


async def _prune(s: AsyncSession, cal: Calendar, now: datetime) -> None:
    """Drop this calendar's tombstones older than TOMBSTONE_DAYS; tokens from
    before the newest dropped one are refused from then on."""
    cutoff = now - timedelta(days=TOMBSTONE_DAYS)
    old = CalendarChange.calendar_id == cal.id, CalendarChange.deleted.is_(True)
    q = select(CalendarChange.modseq).where(*old, CalendarChange.changed_at < cutoff)
    gone = list((await s.execute(q)).scalars())
    if not gone:
        return
    await s.execute(delete(CalendarChange).where(*old, CalendarChange.changed_at < cutoff))
    floor = max(gone)
    if floor > cal.sync_floor:
        await s.execute(update(Calendar).where(Calendar.id == cal.id).values(sync_floor=floor))
        cal.sync_floor = floor


def decode(obj: CalendarObject) -> icalendar.Calendar:
    """The stored object's VCALENDAR."""
    return icalendar.Calendar.from_ical(obj.data.decode("utf-8"))


async def _object(s: AsyncSession, calendar_id: str, name: str) -> CalendarObject | None:
    q = select(CalendarObject).where(
        CalendarObject.calendar_id == calendar_id, CalendarObject.name == name
    )
    return (await s.execute(q)).scalar_one_or_none()


def _matches(if_match: str, obj: CalendarObject | None) -> bool:
    if obj is None:
        return False
    return if_match == "*" or if_match.strip('"') == obj.etag


@dataclass(frozen=True)
class Written:
    object: CalendarObject
    created: bool


async def store(
    s: AsyncSession,
    cal: Calendar,
    *,
    name: str,
    parsed: ical.Parsed,
    data: bytes,
    if_match: str | None = None,
    if_none_match: bool = False,
) -> Written:
    """Write one checked resource into a calendar the caller may write (no
    commit: for actions that write several, like a series split)."""
    _check_name(name)
    start, end = recurrence.span_ms(parsed.calendar, parsed.component)
    modseq = await _next_modseq(s, cal)
    obj = await _object(s, cal.id, name)
    if if_none_match and obj is not None:
        raise precondition_failed()
    if if_match is not None and not _matches(if_match, obj):
        raise precondition_failed()
    q = select(CalendarObject.name).where(
        CalendarObject.calendar_id == cal.id, CalendarObject.uid == parsed.uid
    )
    other = (await s.execute(q)).scalar_one_or_none()
    if other is not None and other != name:
        raise Problem(
            409,
            "calendar.uid_conflict",
            "Another object of this calendar has this UID.",
            name=other,
        )
    if obj is not None and obj.component != parsed.component:
        raise Problem(
            409, "calendar.component_changed", "An object keeps its component type (VEVENT/VTODO)."
        )
    now = clock.utcnow()
    created = obj is None
    if obj is None:
        obj = CalendarObject(id=new_id(), calendar_id=cal.id, name=name, created_at=now)
        s.add(obj)
    obj.uid = parsed.uid
    obj.component = parsed.component
    obj.data = data
    obj.etag = _etag(cal.id, modseq, data)
    obj.modseq = modseq
    obj.range_start = start
    obj.range_end = end
    obj.updated_at = now
    await s.flush()
    await _log(s, cal, name, modseq, False)
    await _changed(s, cal, name, obj)
    return Written(obj, created)


async def put_object(
    s: AsyncSession,
    *,
    account_id: str,
    calendar_id: str,
    name: str,
    ical_text: bytes | str,
    if_match: str | None = None,
    if_none_match: bool = False,
) -> Written:
    """Create or replace the resource ``name`` with ``ical_text`` (verbatim).

    ``if_match``: an ETag (quotes optional) the stored object must have, or "*"
    (it must exist); ``if_none_match``: it must not exist. Errors: 404
    ``calendar.not_found``, 403 ``calendar.read_only``, 400
    ``calendar.invalid_object`` / ``calendar.unsupported_component`` /
    ``calendar.invalid_name``, 413 ``calendar.too_large``, 412
    ``calendar.precondition_failed``, 409 ``calendar.uid_conflict`` (the UID is
    another resource's: its ``name`` in the problem) / ``calendar.component_changed``.
    Commits."""
    cal, _ = await calendar_for(s, account_id, calendar_id, write=True)
    data = ical_text.encode("utf-8") if isinstance(ical_text, str) else ical_text
    parsed = ical.parse(data)
    w = await store(
        s, cal, name=name, parsed=parsed, data=data, if_match=if_match, if_none_match=if_none_match
    )
    await s.commit()
    return w


async def remove(s: AsyncSession, cal: Calendar, name: str, *, if_match: str | None = None) -> None:
    """Delete one resource of a calendar the caller may write (no commit)."""
    await _next_modseq(s, cal)
    obj = await _object(s, cal.id, name)
    if obj is None:
        if if_match is not None:
            raise precondition_failed()
        raise object_not_found()
    if if_match is not None and not _matches(if_match, obj):
        raise precondition_failed()
    await s.delete(obj)
    await s.flush()
    await _log(s, cal, name, cal.modseq, True)
    await _changed(s, cal, name, None)


async def delete_object(
    s: AsyncSession,
    *,
    account_id: str,
    calendar_id: str,
    name: str,
    if_match: str | None = None,
) -> None:
    """Delete the resource ``name``. Errors: 404 ``calendar.not_found`` /
    ``calendar.object_not_found``, 403 ``calendar.read_only``, 412
    ``calendar.precondition_failed``. Commits."""
    cal, _ = await calendar_for(s, account_id, calendar_id, write=True)
    await remove(s, cal, name, if_match=if_match)
    await s.commit()


async def get_object(
    s: AsyncSession, *, account_id: str, calendar_id: str, name: str
) -> CalendarObject:
    """The resource ``name`` (read access). 404 ``calendar.not_found`` /
    ``calendar.object_not_found``."""
    await calendar_for(s, account_id, calendar_id)
    obj = await _object(s, calendar_id, name)
    if obj is None:
        raise object_not_found()
    return obj


async def get_by_uid(s: AsyncSession, calendar_id: str, uid: str) -> CalendarObject | None:
    """The resource with this UID in a calendar (no access check: the caller's)."""
    q = select(CalendarObject).where(
        CalendarObject.calendar_id == calendar_id, CalendarObject.uid == uid
    )
    return (await s.execute(q)).scalar_one_or_none()


def _ms(t: datetime) -> int:
    return recurrence._ms(t)


async def objects_of(
    s: AsyncSession,
    cal: Calendar,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    component: str | None = None,
    names: list[str] | None = None,
    exact: bool = True,
) -> list[CalendarObject]:
    """The calendar's objects (no access check), optionally only ``component``,
    only ``names``, and only those with an occurrence overlapping [start, end)
    (aware times: the stored span first, then, when ``exact``, each candidate
    expanded)."""
    q = select(CalendarObject).where(CalendarObject.calendar_id == cal.id)
    if component is not None:
        q = q.where(CalendarObject.component == component)
    if names is not None:
        q = q.where(CalendarObject.name.in_(names))
    if end is not None:
        q = q.where(
            or_(CalendarObject.range_start.is_(None), CalendarObject.range_start < _ms(end))
        )
    if start is not None:
        hi_col = CalendarObject.range_end
        q = q.where(or_(hi_col.is_(None), hi_col >= _ms(start)))
    rows = list((await s.execute(q.order_by(CalendarObject.name))).scalars())
    if (start is None and end is None) or not exact:
        return rows
    lo = start or recurrence.EPOCH
    hi = end or datetime(9999, 1, 1, tzinfo=lo.tzinfo)
    tz = recurrence.zone(cal.time_zone)
    return [o for o in rows if recurrence.between(decode(o), o.component, lo, hi, tz)]


async def list_objects(
    s: AsyncSession,
    *,
    account_id: str,
    calendar_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    component: str | None = None,
) -> list[CalendarObject]:
    """The calendar's objects the caller may read, filtered as ``objects_of``."""
    cal, _ = await calendar_for(s, account_id, calendar_id)
    return await objects_of(s, cal, start=start, end=end, component=component)


@dataclass(frozen=True)
class Changes:
    """What changed since a sync token: names written (still there) and names
    deleted, and the token to give back (the calendar's modseq now)."""

    changed: list[str]
    deleted: list[str]
    token: int


async def changes_since(s: AsyncSession, cal: Calendar, token: int | None) -> Changes:
    """RFC 6578: every name written or deleted after ``token`` (None or 0: an
    initial sync, every object, no deletions). ``SyncTokenInvalid`` when the token
    is below the calendar's ``sync_floor`` (tombstones pruned) or above its
    counter."""
    if token is None or token == 0:
        q = select(CalendarObject.name).where(CalendarObject.calendar_id == cal.id)
        names = sorted((await s.execute(q)).scalars())
        return Changes(names, [], cal.modseq)
    if token < cal.sync_floor or token > cal.modseq or token < 0:
        raise SyncTokenInvalid()
    q2 = select(CalendarChange.name, CalendarChange.deleted).where(
        CalendarChange.calendar_id == cal.id, CalendarChange.modseq > token
    )
    rows = (await s.execute(q2.order_by(CalendarChange.modseq))).all()
    return Changes([n for n, d in rows if not d], [n for n, d in rows if d], cal.modseq)


async def calendar_ics(s: AsyncSession, cal: Calendar) -> bytes:
    """The whole calendar as one iCalendar file (every object's components and
    the time zones they use), for export and subscriptions (no access check)."""
    out = icalendar.Calendar()
    out.add("PRODID", "-//Kares//Schedule//EN")
    out.add("VERSION", "2.0")
    out.add("X-WR-CALNAME", cal.name)
    zones: set[str] = set()
    q = select(CalendarObject).where(CalendarObject.calendar_id == cal.id)
    for obj in (await s.execute(q.order_by(CalendarObject.name))).scalars():
        for c in decode(obj).subcomponents:
            if c.name == "VTIMEZONE":
                tzid = str(c.get("TZID", ""))
                if tzid in zones:
                    continue
                zones.add(tzid)
            out.add_component(c)
    return bytes(out.to_ical())


async def owner_name(s: AsyncSession, cal: Calendar) -> str | None:
    """The display name of a personal calendar's owner (for titles)."""
    if cal.account_id is None:
        return None
    acc = await s.get(Account, cal.account_id)
    return acc.name if acc is not None else None
