"""HTTP routes of reminders and confirmations (docs/SCHEDULE_REMINDERS.md): confirm
an occurrence done, list my reminders to come, list the missed confirmations I
was told of."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from kares.deps import DbDep
from kares.errors import responses
from kares.fields import ZonedTime
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.guard import Allowed, guard
from kares.schedule import reminders

router = APIRouter(prefix="/api/v1/schedule", tags=["schedule"])
Events = Annotated[Allowed, guard("schedule", "events")]


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    occurrence: ZonedTime = Field(
        description="The occurrence: its RECURRENCE-ID, i.e. its start as the rule gives "
        "it (for an item that does not repeat, its start)",
        examples=["2026-12-07T08:00:00+08:00"],
    )


class ConfirmationOut(BaseModel):
    object_id: str
    occurrence: datetime
    confirmed_by: str
    confirmed_at: datetime
    via: str


class ReminderOut(BaseModel):
    object_id: str
    calendar_id: str
    occurrence: datetime
    fire_at: datetime = Field(description="when the reminder is delivered")
    starts_at: datetime
    title: str


class Reminders(BaseModel):
    reminders: list[ReminderOut]


class MissedOut(BaseModel):
    delivery_id: str
    object_id: str
    occurrence: datetime
    title: str
    starts_at: datetime
    due_at: datetime = Field(description="when the confirmation was due")
    told_at: datetime
    status: str = Field(description="told; stale: due too long ago, recorded, nobody told")
    about: str | None = Field(description="the account that did not confirm")


class MissedList(BaseModel):
    missed: list[MissedOut]


@router.post(
    "/objects/{object_id}/confirm",
    response_model=ConfirmationOut,
    status_code=201,
    responses={
        200: {"model": ConfirmationOut, "description": "Confirmed already: the first one"},
        **responses(
            *AUTH_ERRORS,
            (404, "schedule.object_not_found"),
            (404, "schedule.occurrence_not_found"),
            (409, "schedule.confirmation_not_asked"),
            (403, "schedule.confirm_forbidden"),
        ),
    },
    summary="Confirm one occurrence of an item done",
    description="For an item that asks to be confirmed (X-KARES-CONFIRM). Whoever it is "
    "for, or their guardian, confirms; 201 the first time, 200 with the first "
    "confirmation afterwards. Once confirmed, nobody is told it was missed.",
)
async def confirm(
    object_id: str, body: ConfirmIn, ctx: Events, s: DbDep, response: Response
) -> ConfirmationOut:
    row, made = await reminders.confirm(
        s, actor_id=ctx.account_id, object_id=object_id, occurrence=body.occurrence
    )
    if not made:
        response.status_code = 200
    return ConfirmationOut(
        object_id=row.object_id,
        occurrence=reminders.from_ms(row.occurrence_ms),
        confirmed_by=row.account_id,
        confirmed_at=row.confirmed_at,
        via=row.via,
    )


@router.get(
    "/reminders",
    response_model=Reminders,
    responses=responses(*AUTH_ERRORS),
    summary="My reminders to come",
)
async def my_reminders(
    ctx: Events,
    s: DbDep,
    hours: Annotated[int, Query(ge=1, le=48, description="how far ahead")] = 48,
) -> Reminders:
    got = await reminders.upcoming(s, account_id=ctx.account_id, hours=hours)
    return Reminders(
        reminders=[
            ReminderOut(
                object_id=u.object_id,
                calendar_id=u.calendar_id,
                occurrence=u.occurrence,
                fire_at=u.fire_at,
                starts_at=u.starts_at,
                title=u.title,
            )
            for u in got
        ]
    )


@router.get(
    "/missed-confirmations",
    response_model=MissedList,
    responses=responses(*AUTH_ERRORS),
    summary="Missed confirmations I was told of",
    description="Items that asked their person to confirm them done, unconfirmed at "
    "their time plus the grace: what the guardians (or the family's guardians) were "
    "told, newest first.",
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
                object_id=m.object_id,
                occurrence=m.occurrence,
                title=m.title,
                starts_at=m.starts_at,
                due_at=m.due_at,
                told_at=m.told_at,
                status=m.status,
                about=m.unconfirmed_by,
            )
            for m in got
        ]
    )
