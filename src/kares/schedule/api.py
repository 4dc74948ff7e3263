"""HTTP routes of the schedule domain: calendars, events and to-dos in JSON, and
their occurrences over a window (docs/SCHEDULE.md). CalDAV serves the same
objects (``kares.protocols``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel

from kares.deps import DbDep
from kares.errors import responses
from kares.fields import ZonedTime
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.guard import Allowed, guard
from kares.schedule import entries, recurrence, service
from kares.schedule import schemas as sc
from kares.schedule.models import Calendar, CalendarObject

router = APIRouter(tags=["schedule"])
AUTH = AUTH_ERRORS
SCHEDULE = guard("schedule", "events")
BASE = "/api/v1/calendars"
NOT_FOUND = (404, "calendar.not_found")
READ_ONLY = (403, "calendar.read_only")
ENTRY_ERRORS = (
    NOT_FOUND,
    READ_ONLY,
    (404, "calendar.entry_not_found"),
    (404, "calendar.occurrence_not_found"),
    (400, "calendar.invalid_times"),
    (400, "calendar.invalid_rrule"),
    (400, "calendar.invalid_attendees"),
    (400, "calendar.invalid_time_zone"),
    (400, "calendar.invalid_occurrence"),
    (412, "calendar.precondition_failed"),
    (422, "request.invalid"),
)
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match", max_length=80, description="The entry's etag: refused (412) if stale."
    ),
]


def _cal(c: Calendar, access: str) -> sc.CalendarOut:
    return sc.CalendarOut(
        id=c.id,
        kind=c.kind,
        account_id=c.account_id,
        family_id=c.family_id,
        name=c.name,
        color=c.color,
        description=c.description,
        time_zone=c.time_zone,
        default=c.default_for is not None,
        access=access,
        modseq=c.modseq,
    )


@router.get(
    BASE,
    response_model=sc.CalendarList,
    responses=responses(*AUTH),
    summary="The calendars you see: your own, your families', your dependants'",
)
async def list_calendars(ctx: Annotated[Allowed, SCHEDULE], s: DbDep) -> sc.CalendarList:
    seen = await service.calendars_for(s, ctx.account_id)
    return sc.CalendarList(calendars=[_cal(x.calendar, x.access) for x in seen])


@router.post(
    BASE,
    status_code=201,
    response_model=sc.CalendarOut,
    responses=responses(
        *AUTH,
        (404, "family.not_found"),
        (404, "calendar.owner_not_found"),
        READ_ONLY,
        (400, "calendar.invalid_time_zone"),
        (409, "calendar.too_many"),
        (422, "request.invalid"),
    ),
    summary="Make a further calendar (yours, a dependant's, or a family's)",
)
async def create_calendar(
    body: sc.CalendarIn, ctx: Annotated[Allowed, SCHEDULE], s: DbDep
) -> sc.CalendarOut:
    cal = await service.create_calendar(
        s,
        account_id=ctx.account_id,
        name=body.name,
        family_id=body.family_id,
        owner_id=body.owner_id,
        color=body.color,
        description=body.description,
        time_zone=body.time_zone,
    )
    return _cal(cal, "write")


@router.patch(
    BASE + "/{calendar_id}",
    response_model=sc.CalendarOut,
    responses=responses(*AUTH, NOT_FOUND, READ_ONLY, (400, "calendar.invalid_time_zone")),
    summary="Rename a calendar, or change its color, description or time zone",
)
async def update_calendar(
    calendar_id: str, body: sc.CalendarPatch, ctx: Annotated[Allowed, SCHEDULE], s: DbDep
) -> sc.CalendarOut:
    given = body.model_fields_set
    kw: dict[str, Any] = {}
    if "color" in given:
        kw["color"] = body.color
    if "description" in given:
        kw["description"] = body.description
    cal = await service.update_calendar(
        s,
        account_id=ctx.account_id,
        calendar_id=calendar_id,
        name=body.name,
        time_zone=body.time_zone,
        **kw,
    )
    return _cal(cal, "write")


@router.delete(
    BASE + "/{calendar_id}",
    status_code=204,
    responses=responses(*AUTH, NOT_FOUND, READ_ONLY, (409, "calendar.is_default")),
    summary="Delete a calendar you made, with its entries",
)
async def delete_calendar(
    calendar_id: str, ctx: Annotated[Allowed, SCHEDULE], s: DbDep
) -> Response:
    await service.delete_calendar(s, account_id=ctx.account_id, calendar_id=calendar_id)
    return Response(status_code=204)


def _out(obj: CalendarObject, cal: Calendar) -> sc.EntryOut:
    return sc.EntryOut.model_validate(entries.view(obj, cal))


def _fields(body: BaseModel) -> entries.Fields:
    skip = {"scope", "occurrence"}
    values = {k: getattr(body, k) for k in body.model_fields_set if k not in skip}
    if "reminders" in values and values["reminders"] is not None:
        values["reminders"] = [
            entries.Reminder(minutes_before=r.minutes_before, at=r.at) for r in values["reminders"]
        ]
    return entries.Fields(values)


def _entry_routes(type_: str, body_in: type[BaseModel], body_patch: type[BaseModel]) -> None:
    """The CRUD routes of one entry type: /calendars/{id}/events or /todos."""
    path = f"{BASE}/{{calendar_id}}/{type_}s"
    component = entries.KIND_OF[type_]

    async def list_entries(
        calendar_id: str, ctx: Annotated[Allowed, SCHEDULE], s: DbDep
    ) -> sc.EntryList:
        cal, _ = await service.calendar_for(s, ctx.account_id, calendar_id)
        objs = await service.objects_of(s, cal, component=component)
        return sc.EntryList(entries=[_out(o, cal) for o in objs])

    async def create_entry(
        calendar_id: str,
        body: body_in,  # type: ignore[valid-type]
        ctx: Annotated[Allowed, SCHEDULE],
        s: DbDep,
    ) -> sc.EntryOut:
        obj = await entries.create(
            s,
            account_id=ctx.account_id,
            calendar_id=calendar_id,
            type_=type_,
            fields=_fields(body),
        )
        cal, _ = await service.calendar_for(s, ctx.account_id, calendar_id)
        return _out(obj, cal)

    async def get_entry(
        calendar_id: str, entry_id: str, ctx: Annotated[Allowed, SCHEDULE], s: DbDep
    ) -> sc.EntryOut:
        cal, obj = await entries.get(
            s, account_id=ctx.account_id, calendar_id=calendar_id, uid=entry_id
        )
        if obj.component != component:
            raise entries.entry_not_found()
        return _out(obj, cal)

    async def update_entry(
        calendar_id: str,
        entry_id: str,
        body: body_patch,  # type: ignore[valid-type]
        ctx: Annotated[Allowed, SCHEDULE],
        s: DbDep,
        if_match: IfMatch = None,
    ) -> sc.Edited:
        cal, obj = await entries.get(
            s, account_id=ctx.account_id, calendar_id=calendar_id, uid=entry_id
        )
        if obj.component != component:
            raise entries.entry_not_found()
        objs = await entries.update(
            s,
            account_id=ctx.account_id,
            calendar_id=calendar_id,
            uid=entry_id,
            fields=_fields(body),
            scope=body.scope,  # type: ignore[attr-defined]
            occurrence=body.occurrence,  # type: ignore[attr-defined]
            if_match=if_match,
        )
        return sc.Edited(entries=[_out(o, cal) for o in objs])

    async def delete_entry(
        calendar_id: str,
        entry_id: str,
        ctx: Annotated[Allowed, SCHEDULE],
        s: DbDep,
        if_match: IfMatch = None,
        scope: Annotated[str, Query(pattern="^(all|this|following)$")] = "all",
        occurrence: Annotated[
            str | None, Query(max_length=40, description="The occurrence's recurrence_id.")
        ] = None,
    ) -> Response:
        _, obj = await entries.get(
            s, account_id=ctx.account_id, calendar_id=calendar_id, uid=entry_id
        )
        if obj.component != component:
            raise entries.entry_not_found()
        await entries.delete(
            s,
            account_id=ctx.account_id,
            calendar_id=calendar_id,
            uid=entry_id,
            scope=scope,
            occurrence=_occurrence(occurrence),
            if_match=if_match,
        )
        return Response(status_code=204)

    # the body types are this call's: given as objects, not as names to resolve
    create_entry.__annotations__["body"] = body_in
    update_entry.__annotations__["body"] = body_patch
    label = "event" if type_ == "event" else "to-do"
    router.add_api_route(
        path,
        list_entries,
        methods=["GET"],
        response_model=sc.EntryList,
        responses=responses(*AUTH, NOT_FOUND),
        summary=f"The calendar's {label}s",
        name=f"list_{type_}s",
    )
    router.add_api_route(
        path,
        create_entry,
        methods=["POST"],
        status_code=201,
        response_model=sc.EntryOut,
        responses=responses(*AUTH, *ENTRY_ERRORS),
        summary=f"Add a {label} (written as iCalendar: phones see it over CalDAV)",
        name=f"create_{type_}",
    )
    router.add_api_route(
        path + "/{entry_id}",
        get_entry,
        methods=["GET"],
        response_model=sc.EntryOut,
        responses=responses(*AUTH, NOT_FOUND, (404, "calendar.entry_not_found")),
        summary=f"One {label}",
        name=f"get_{type_}",
    )
    router.add_api_route(
        path + "/{entry_id}",
        update_entry,
        methods=["PATCH"],
        response_model=sc.Edited,
        responses=responses(*AUTH, *ENTRY_ERRORS),
        summary=f"Change a {label}: the series, this occurrence, or this and following",
        name=f"update_{type_}",
    )
    router.add_api_route(
        path + "/{entry_id}",
        delete_entry,
        methods=["DELETE"],
        status_code=204,
        responses=responses(*AUTH, *ENTRY_ERRORS),
        summary=f"Delete a {label}, one occurrence, or this and following",
        name=f"delete_{type_}",
    )


def _occurrence(text: str | None) -> date | datetime | None:
    if text is None:
        return None
    from pydantic import TypeAdapter, ValidationError

    from kares.errors import Problem
    from kares.fields import Day

    for t in (ZonedTime, Day):
        try:
            return TypeAdapter(t).validate_python(text)
        except ValidationError:
            continue
    raise Problem(400, "calendar.invalid_occurrence", "An ISO 8601 time with offset, or a date.")


_entry_routes("event", sc.EventIn, sc.EventPatch)
_entry_routes("todo", sc.TodoIn, sc.TodoPatch)


def _occ_out(f: entries.Found) -> sc.OccurrenceOut:
    o = f.occurrence
    c = o.component
    rid: str | None = None
    if isinstance(o.rid, datetime) and o.rid.tzinfo is None:
        rid = o.rid.replace(tzinfo=recurrence.zone(f.calendar.time_zone)).isoformat()
    elif o.rid is not None:
        rid = o.rid.isoformat()
    return sc.OccurrenceOut(
        calendar_id=f.calendar.id,
        id=f.object.uid,
        type=entries.TYPE_OF[f.object.component],
        recurrence_id=rid,
        title=str(c["SUMMARY"]) if "SUMMARY" in c else None,
        place=str(c["LOCATION"]) if "LOCATION" in c else None,
        all_day=o.all_day,
        start=o.start,
        end=o.end,
        overridden=f.overridden,
    )


FromQ = Annotated[datetime, Query(alias="from", description="ISO 8601 with offset.")]
ToQ = Annotated[
    datetime, Query(alias="to", description="ISO 8601 with offset; at most 400 days on.")
]
TzQ = Annotated[
    str | None,
    Query(max_length=64, description="IANA zone for floating times and all-day dates."),
]


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None:
        from kares.errors import Problem

        raise Problem(400, "calendar.invalid_window", "Give 'from' and 'to' with their offset.")
    return t


@router.get(
    BASE + "/occurrences",
    response_model=sc.OccurrenceList,
    responses=responses(*AUTH, (400, "calendar.invalid_window")),
    summary="Every occurrence in a window across the calendars you see",
)
async def all_occurrences(
    start: FromQ, end: ToQ, ctx: Annotated[Allowed, SCHEDULE], s: DbDep, tz: TzQ = None
) -> sc.OccurrenceList:
    found = await entries.occurrences(
        s, account_id=ctx.account_id, start=_aware(start), end=_aware(end), time_zone=tz
    )
    return sc.OccurrenceList(occurrences=[_occ_out(f) for f in found])


@router.get(
    BASE + "/{calendar_id}/occurrences",
    response_model=sc.OccurrenceList,
    responses=responses(*AUTH, NOT_FOUND, (400, "calendar.invalid_window")),
    summary="The calendar's occurrences in a window (recurrences expanded)",
)
async def calendar_occurrences(
    calendar_id: str,
    start: FromQ,
    end: ToQ,
    ctx: Annotated[Allowed, SCHEDULE],
    s: DbDep,
    tz: TzQ = None,
) -> sc.OccurrenceList:
    found = await entries.occurrences(
        s,
        account_id=ctx.account_id,
        start=_aware(start),
        end=_aware(end),
        calendar_id=calendar_id,
        time_zone=tz,
    )
    return sc.OccurrenceList(occurrences=[_occ_out(f) for f in found])
