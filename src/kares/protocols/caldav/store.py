"""What the CalDAV routes need of the schedule domain, in the protocol's terms.

Each function here is a thin translation of calls to :mod:`kares.schedule.service`:
the domain stores the calendar object resources verbatim, decides who may read or
write a calendar, keeps the change log the sync tokens point into, and raises its
own errors (which :func:`dav_error` turns into WebDAV preconditions). Listings
that need no iCalendar text read the object rows' plain columns only (name,
ETag, time), never decrypting the sealed text.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares.errors import Problem
from kares.identity.auth import Caller
from kares.protocols.caldav.xml import DavError, c, d
from kares.schedule import ical
from kares.schedule import service as schedule
from kares.schedule.models import Calendar, CalendarObject

GUARD = ("schedule", "device_sync")
MAX_RESOURCE_BYTES = ical.MAX_OBJECT_BYTES
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Cal:
    id: str
    name: str
    color: str | None
    description: str | None
    modseq: int  # the calendar's sync position: grows with every change
    writable: bool
    row: Calendar
    seg: str  # the URL segment the request named it by (its id, or the client's own)
    # what a phone lists it as: a dependant's calendar is "<their name> · <name>",
    # so a guardian's phone does not show two calendars called "Personal"
    shown: str = ""

    @property
    def prefix(self) -> str:
        return self.shown[: len(self.shown) - len(self.name)] if self.shown != self.name else ""


@dataclass(frozen=True)
class Obj:
    name: str  # the resource's name in its calendar ("<uid>.ics")
    etag: str  # as served, quoted
    updated_at: datetime
    size: int
    component: str  # VEVENT | VTODO
    data: str | None = None  # the iCalendar text, when asked for


@dataclass(frozen=True)
class Changes:
    changed: list[Obj]
    deleted: list[str]
    modseq: int


# --- errors ----------------------------------------------------------------------------------

# the schedule domain's refusals as WebDAV answers: status and precondition
_PRECONDITIONS: dict[str, tuple[int, str | None]] = {
    "calendar.invalid_object": (403, c("valid-calendar-data")),
    "calendar.unsupported_component": (403, c("supported-calendar-component")),
    "calendar.uid_conflict": (403, c("no-uid-conflict")),
    "calendar.component_changed": (403, c("valid-calendar-object-resource")),
    "calendar.too_large": (403, c("max-resource-size")),
    "calendar.read_only": (403, d("need-privileges")),
    "calendar.precondition_failed": (412, None),
    "calendar.sync_token_invalid": (403, d("valid-sync-token")),
    "calendar.invalid_name": (400, None),
    "calendar.invalid_color": (400, None),
    "calendar.too_many": (403, None),
}


def dav_error(p: Problem) -> DavError:
    status, pre = _PRECONDITIONS.get(p.code, (p.status, None))
    return DavError(status, p.detail, pre, p.headers)


# --- calendars -------------------------------------------------------------------------------


def calendar_id_of(account_id: str, segment: str) -> str:
    """The calendar id a URL segment names: an id as it is; a UUID (what iOS,
    DAVx5 and Thunderbird choose for MKCALENDAR) as its 32 hex digits; any other
    name as a hash of the account and the name, so a client's chosen URL keeps
    naming the calendar it made."""
    if _HEX32.match(segment):
        return segment
    try:
        return uuid.UUID(segment).hex
    except ValueError:
        return hashlib.sha256(f"{account_id}/{segment}".encode()).hexdigest()[:32]


def _cal(row: Calendar, access: str, seg: str | None = None, owner: str | None = None) -> Cal:
    return Cal(
        row.id,
        row.name,
        row.color,
        row.description,
        row.modseq,
        access == "write",
        row,
        seg or row.id,
        f"{owner} · {row.name}" if owner else row.name,
    )


async def _owner(s: AsyncSession, account_id: str, row: Calendar) -> str | None:
    """The owner's name of someone else's personal calendar (a dependant's)."""
    if row.account_id is None or row.account_id == account_id:
        return None
    return await schedule.owner_name(s, row) or "Dependant"


async def calendars(s: AsyncSession, caller: Caller) -> list[Cal]:
    aid = caller.account.id
    return [
        _cal(x.calendar, x.access, owner=await _owner(s, aid, x.calendar))
        for x in await schedule.calendars_for(s, aid)
    ]


async def calendar_of(s: AsyncSession, account_id: str, segment: str) -> Cal | None:
    try:
        row, access = await schedule.calendar_for(
            s, account_id, calendar_id_of(account_id, segment)
        )
    except Problem as p:
        if p.status == 404:
            return None
        raise
    return _cal(row, access, segment, owner=await _owner(s, account_id, row))


async def calendar(s: AsyncSession, caller: Caller, segment: str) -> Cal | None:
    return await calendar_of(s, caller.account.id, segment)


async def create_calendar(
    s: AsyncSession,
    caller: Caller,
    segment: str,
    *,
    name: str,
    color: str | None,
    description: str | None,
) -> str:
    aid = caller.account.id
    cal_id = calendar_id_of(aid, segment)
    if await s.get(Calendar, cal_id) is not None:
        raise DavError(405, "A calendar exists at this URL already.", d("resource-must-be-null"))
    try:
        row = await schedule.create_calendar(
            s, account_id=aid, name=name, color=color, description=description, calendar_id=cal_id
        )
    except Problem as p:
        raise dav_error(p) from None
    return row.id


async def update_calendar(s: AsyncSession, caller: Caller, cal: Cal, **values: Any) -> None:
    try:
        await schedule.update_calendar(
            s, account_id=caller.account.id, calendar_id=cal.id, **values
        )
    except Problem as p:
        raise dav_error(p) from None


async def delete_calendar(s: AsyncSession, caller: Caller, cal: Cal) -> None:
    try:
        await schedule.delete_calendar(s, account_id=caller.account.id, calendar_id=cal.id)
    except Problem as p:
        if p.code == "calendar.is_default":
            raise DavError(403, p.detail, d("need-privileges")) from None
        raise dav_error(p) from None


# --- objects ---------------------------------------------------------------------------------


def _quoted(etag: str) -> str:
    return f'"{etag}"'


def _obj(o: CalendarObject, data: bool) -> Obj:
    text = o.data.decode("utf-8") if data else None
    size = len(o.data) if data else 0
    return Obj(o.name, _quoted(o.etag), o.updated_at, size, o.component, text)


_LIST = select(
    CalendarObject.name,
    CalendarObject.etag,
    CalendarObject.updated_at,
    CalendarObject.component,
)


def _plain(rows: Any) -> list[Obj]:
    return [Obj(n, _quoted(e), u, 0, comp) for n, e, u, comp in rows]


async def objects(
    s: AsyncSession,
    caller: Caller,
    cal: Cal,
    *,
    data: bool,
    start: datetime | None = None,
    end: datetime | None = None,
    component: str | None = None,
) -> list[Obj]:
    """The calendar's objects (those with an occurrence in [start, end) when given)."""
    if start is None and end is None and not data:
        q = _LIST.where(CalendarObject.calendar_id == cal.id)
        if component is not None:
            q = q.where(CalendarObject.component == component)
        return _plain((await s.execute(q.order_by(CalendarObject.name))).all())
    rows = await schedule.objects_of(s, cal.row, start=start, end=end, component=component)
    return [_obj(o, data) for o in rows]


async def objects_named(
    s: AsyncSession, caller: Caller, cal: Cal, names: list[str], *, data: bool
) -> list[Obj]:
    if not names:
        return []
    if not data:
        q = _LIST.where(CalendarObject.calendar_id == cal.id, CalendarObject.name.in_(names))
        return _plain((await s.execute(q)).all())
    rows = await schedule.objects_of(s, cal.row, names=names)
    return [_obj(o, True) for o in rows]


async def changes(
    s: AsyncSession, caller: Caller, cal: Cal, since: int, *, data: bool
) -> Changes | None:
    """What changed after ``since`` (None: a token the calendar cannot answer)."""
    try:
        ch = await schedule.changes_since(s, cal.row, since)
    except schedule.SyncTokenInvalid:
        return None
    changed = await objects_named(s, caller, cal, ch.changed, data=data)
    return Changes(changed, ch.deleted, ch.token)


async def put(
    s: AsyncSession,
    caller: Caller,
    cal: Cal,
    name: str,
    text: str,
    *,
    if_match: list[str] | None,
    if_none_match: list[str] | None,
) -> tuple[Obj, bool]:
    match = None
    if if_match is not None:
        if len(if_match) != 1:
            # several ETags: the object must have one of them
            found = await objects_named(s, caller, cal, [name], data=False)
            if not found or found[0].etag not in if_match:
                raise DavError(412, "The calendar object changed or does not exist.")
            match = found[0].etag
        else:
            match = if_match[0]
    none_match = False
    if if_none_match is not None:
        if "*" in if_none_match:
            none_match = True
        else:
            found = await objects_named(s, caller, cal, [name], data=False)
            if found and found[0].etag in if_none_match:
                raise DavError(412, "The calendar object has that ETag.")
    try:
        w = await schedule.put_object(
            s,
            account_id=caller.account.id,
            calendar_id=cal.id,
            name=name,
            ical_text=text,
            if_match=match,
            if_none_match=none_match,
        )
    except Problem as p:
        raise dav_error(p) from None
    return _obj(w.object, False), w.created


async def delete(
    s: AsyncSession, caller: Caller, cal: Cal, name: str, *, if_match: list[str] | None
) -> None:
    match = None
    if if_match is not None:
        found = await objects_named(s, caller, cal, [name], data=False)
        if not found or ("*" not in if_match and found[0].etag not in if_match):
            raise DavError(412, "The calendar object changed or does not exist.")
        match = found[0].etag
    try:
        await schedule.delete_object(
            s, account_id=caller.account.id, calendar_id=cal.id, name=name, if_match=match
        )
    except Problem as p:
        raise dav_error(p) from None


async def export(s: AsyncSession, caller: Caller, cal: Cal) -> str:
    return (await schedule.calendar_ics(s, cal.row)).decode("utf-8")


async def export_of(s: AsyncSession, account_id: str, calendar_id: str) -> str | None:
    """A calendar as one iCalendar file, if the account may still read it."""
    cal = await calendar_of(s, account_id, calendar_id)
    if cal is None:
        return None
    return (await schedule.calendar_ics(s, cal.row)).decode("utf-8")


# --- filters on the text ---------------------------------------------------------------------


def matches(o: Obj, component: str, filters: list[Any]) -> bool:
    """Whether the object passes a calendar-query's prop-filters (RFC 4791 9.7.2:
    is-not-defined, text-match with the i;ascii-casemap (default) or i;octet
    collation, its negate-condition) and nested comp-filters (a VALARM must exist or not)."""
    import icalendar

    if o.data is None:
        return True
    cal = icalendar.Calendar.from_ical(o.data)
    comps = [x for x in cal.subcomponents if x.name == component]
    return any(_passes(comp, filters) for comp in comps)


def _passes(comp: Any, filters: list[Any]) -> bool:
    for f in filters:
        name = (f.get("name") or "").upper()
        if f.tag == c("comp-filter"):
            subs = [x for x in comp.subcomponents if x.name == name]
            if f.find(c("is-not-defined")) is not None:
                if subs:
                    return False
            elif not subs:
                return False
            continue
        values = comp.get(name)
        if f.find(c("is-not-defined")) is not None:
            if values is not None:
                return False
            continue
        if values is None:
            return False
        tm = f.find(c("text-match"))
        if tm is None:
            continue
        items = values if isinstance(values, list) else [values]
        if tm.get("collation") == "i;octet":  # case-sensitive (RFC 4790)
            hit = any((tm.text or "") in str(v) for v in items)
        else:  # i;ascii-casemap, the default
            wanted = (tm.text or "").casefold()
            hit = any(wanted in str(v).casefold() for v in items)
        if tm.get("negate-condition") == "yes":
            hit = not hit
        if not hit:
            return False
    return True


def expanded(o: Obj, start: datetime | None, end: datetime | None) -> Obj:
    """The object with its recurrence expanded into occurrences within the range
    (RFC 4791 9.6.5: each occurrence a component with a RECURRENCE-ID, in UTC)."""
    import icalendar
    import recurring_ical_events

    if o.data is None or start is None or end is None:
        return o
    cal = icalendar.Calendar.from_ical(o.data)
    out = icalendar.Calendar()
    out.add("VERSION", "2.0")
    out.add("PRODID", "-//Kares//Schedule//EN")
    for occ in recurring_ical_events.of(cal, components=[o.component]).between(start, end):
        comp = occ.copy() if hasattr(occ, "copy") else occ
        if "RRULE" in comp or "RDATE" in comp or "EXDATE" in comp:
            for p in ("RRULE", "RDATE", "EXDATE"):
                comp.pop(p, None)
        if "RECURRENCE-ID" not in comp and "DTSTART" in comp:
            comp.add("RECURRENCE-ID", comp.decoded("DTSTART"))
        out.add_component(comp)
    text = out.to_ical().decode("utf-8")
    return Obj(o.name, o.etag, o.updated_at, len(text), o.component, text)


async def freebusy(s: AsyncSession, cal: Cal, start: datetime, end: datetime) -> str:
    """RFC 4791 7.10: the busy time of the calendar's events in [start, end) as one
    VFREEBUSY (transparent and cancelled events left out), in UTC."""
    from datetime import UTC, date, time

    import icalendar

    from kares.schedule import recurrence

    zone = recurrence.zone(cal.row.time_zone)

    def utc(v: date | datetime) -> datetime:
        if not isinstance(v, datetime):
            v = datetime.combine(v, time(), zone)
        return v.astimezone(UTC)

    periods: list[tuple[datetime, datetime]] = []
    for o in await schedule.objects_of(s, cal.row, start=start, end=end, component="VEVENT"):
        for occ in recurrence.between(schedule.decode(o), "VEVENT", start, end, zone):
            comp = occ.component
            if str(comp.get("TRANSP", "")).upper() == "TRANSPARENT":
                continue
            if str(comp.get("STATUS", "")).upper() == "CANCELLED":
                continue
            periods.append((max(utc(occ.start), start), min(utc(occ.end), end)))
    out = icalendar.Calendar()
    out.add("VERSION", "2.0")
    out.add("PRODID", "-//Kares//Schedule//EN")
    fb = icalendar.FreeBusy()
    fb.add("DTSTAMP", datetime.now(UTC))
    fb.add("DTSTART", start)
    fb.add("DTEND", end)
    for a, b in sorted(periods):
        if b > a:
            fb.add("FREEBUSY", (a, b))
    out.add_component(fb)
    return out.to_ical().decode("utf-8")
