"""HTTP routes of reminders and confirmations (docs/SCHEDULE_REMINDERS.md): confirm
one occurrence of an entry done, list my reminders to come, list the missed
confirmations I was told of. Entries are named as the schedule's JSON API names
them: their calendar, their id (the iCalendar UID) and an occurrence's
``recurrence_id``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from kares.deps import DbDep
from kares.errors import responses
from kares.fields import Day, ZonedTime
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.guard import Allowed, guard
from kares.schedule import reminders

router = APIRouter(tags=["schedule"])
Events = Annotated[Allowed, guard("schedule", "events")]


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    occurrence: ZonedTime | Day | None = Field(
        default=None,
        description="The occurrence's recurrence_id (as the occurrences list gives it: a "
        "time with its offset, or a date); leave it out for an entry that does not repeat",
        examples=["2026-12-07T08:00:00+08:00"],
    )


class ConfirmationOut(BaseModel):
    calendar_id: str
    entry_id: str
    occurrence: datetime = Field(description="The occurrence's original start, in UTC")
    confirmed_by: str
    confirmed_at: datetime
    via: str


class ReminderOut(BaseModel):
    calendar_id: str
    entry_id: str = Field(description="The entry's id (its iCalendar UID)")
    type: Literal["event", "todo"]
    occurrence: datetime = Field(description="The occurrence's original start, in UTC")
    fire_at: datetime = Field(description="When the reminder is delivered")
    starts_at: datetime
    title: str


class Reminders(BaseModel):
    reminders: list[ReminderOut]


class MissedOut(BaseModel):
    delivery_id: str
    calendar_id: str
    entry_id: str
    type: Literal["event", "todo"]
    occurrence: datetime
    title: str
    starts_at: datetime
    due_at: datetime = Field(description="When the confirmation was due")
    told_at: datetime
    status: Literal["told", "stale"] = Field(
        description="told; stale: due too long ago (the service was down), recorded, nobody told"
    )
    unconfirmed_by: str | None = Field(
        description="The account that did not confirm (none: a family entry for several)"
    )


class MissedList(BaseModel):
    missed: list[MissedOut]


CONFIRM_ERRORS = (
    *AUTH_ERRORS,
    (404, "calendar.not_found"),
    (404, "calendar.entry_not_found"),
    (404, "calendar.occurrence_not_found"),
    (409, "schedule.confirmation_not_asked"),
    (403, "schedule.confirm_forbidden"),
)


def _confirm_route(type_: str, component: str) -> None:
    async def confirm(
        calendar_id: str,
        entry_id: str,
        body: ConfirmIn,
        ctx: Events,
        s: DbDep,
        response: Response,
    ) -> ConfirmationOut:
        when: date | datetime | None = body.occurrence
        row, made = await reminders.confirm(
            s,
            actor_id=ctx.account_id,
            calendar_id=calendar_id,
            entry_id=entry_id,
            component=component,
            occurrence=when,
        )
        if not made:
            response.status_code = 200
        return ConfirmationOut(
            calendar_id=calendar_id,
            entry_id=entry_id,
            occurrence=reminders.from_ms(row.occurrence_ms),
            confirmed_by=row.account_id,
            confirmed_at=row.confirmed_at,
            via=row.via,
        )

    router.add_api_route(
        f"/api/v1/calendars/{{calendar_id}}/{type_}s/{{entry_id}}/confirm",
        confirm,
        methods=["POST"],
        status_code=201,
        response_model=ConfirmationOut,
        responses={
            200: {"model": ConfirmationOut, "description": "Confirmed already: the first one"},
            **responses(*CONFIRM_ERRORS),
        },
        summary=f"Confirm one occurrence of a {type_} done",
        description="For an entry that asks to be confirmed (X-KARES-CONFIRM). Whoever it "
        "is for, or their guardian, confirms; 201 the first time, 200 with the first "
        "confirmation afterwards. Once confirmed, nobody is told it was missed.",
        name=f"confirm_{type_}",
    )


_confirm_route("event", "VEVENT")
_confirm_route("todo", "VTODO")


@router.get(
    "/api/v1/schedule/reminders",
    response_model=Reminders,
    responses=responses(*AUTH_ERRORS),
    summary="My reminders to come",
)
async def my_reminders(
    ctx: Events,
    s: DbDep,
    hours: Annotated[int, Query(ge=1, le=48, description="How far ahead")] = 48,
) -> Reminders:
    got = await reminders.upcoming(s, account_id=ctx.account_id, hours=hours)
    return Reminders(
        reminders=[
            ReminderOut(
                calendar_id=u.item.calendar_id,
                entry_id=u.item.entry_id,
                type=u.item.type,
                occurrence=u.occurrence,
                fire_at=u.fire_at,
                starts_at=u.starts_at,
                title=u.title,
            )
            for u in got
        ]
    )


@router.get(
    "/api/v1/schedule/missed-confirmations",
    response_model=MissedList,
    responses=responses(*AUTH_ERRORS),
    summary="Missed confirmations I was told of",
    description="Entries that asked their person to confirm them done, unconfirmed at "
    "their time plus the grace: what the guardians (or the family's owner and "
    "guardians) were told, newest first.",
)
async def missed_confirmations(
    ctx: Events,
    s: DbDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> MissedList:
    got = await reminders.missed(s, account_id=ctx.account_id, limit=limit)
    return MissedList(
        missed=[
            MissedOut(
                delivery_id=m.delivery_id,
                calendar_id=m.item.calendar_id,
                entry_id=m.item.entry_id,
                type=m.item.type,
                occurrence=m.occurrence,
                title=m.title,
                starts_at=m.starts_at,
                due_at=m.due_at,
                told_at=m.told_at,
                status=m.status,
                unconfirmed_by=m.unconfirmed_by,
            )
            for m in got
        ]
    )
