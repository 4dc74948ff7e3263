"""Request and response shapes of the schedule API (docs/SCHEDULE.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kares.fields import Count, Day, Flag, ZonedTime, name_rule, zone_rule


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CalendarIn(_In):
    name: str = Field(max_length=200, json_schema_extra=name_rule(64))
    color: str | None = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")
    description: str | None = Field(default=None, max_length=2000)
    time_zone: str | None = Field(
        default=None, max_length=64, examples=["Asia/Shanghai"], json_schema_extra=zone_rule
    )
    family_id: str | None = Field(
        default=None, max_length=32, description="Make it the family's (else your own)."
    )
    owner_id: str | None = Field(
        default=None, max_length=32, description="A dependant you look after: make it theirs."
    )


class CalendarPatch(_In):
    name: str | None = Field(default=None, max_length=200, json_schema_extra=name_rule(64))
    color: str | None = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")
    description: str | None = Field(default=None, max_length=2000)
    time_zone: str | None = Field(default=None, max_length=64, json_schema_extra=zone_rule)


class CalendarOut(BaseModel):
    id: str
    kind: Literal["personal", "family"]
    account_id: str | None = Field(description="A personal calendar's owner.")
    family_id: str | None = Field(description="A family calendar's family.")
    name: str
    color: str | None
    description: str | None
    time_zone: str
    default: bool = Field(description="The one made for its owner; it cannot be deleted.")
    access: Literal["read", "write"]
    modseq: int = Field(description="Changes with every change of its entries.")


class CalendarList(BaseModel):
    calendars: list[CalendarOut]


class ReminderIn(_In):
    """``minutes_before`` the start (a to-do without start: its due time), or
    ``at`` a moment."""

    minutes_before: Count | None = Field(default=None, ge=0, le=40320)
    at: ZonedTime | None = None


class EntryIn(_In):
    """An event or a to-do. Timed: ``start``/``end`` (ISO 8601 with offset) and
    ``time_zone`` (IANA; the calendar's if left out) that the times repeat in.
    All-day: ``all_day`` true with ``start_date``/``end_date`` (end exclusive).
    ``rrule``: an RFC 5545 RRULE value (``FREQ=WEEKLY;BYDAY=MO,WE``);
    ``exdates``: occurrences left out (their original starts)."""

    title: str | None = Field(default=None, max_length=500)
    notes: str | None = Field(default=None, max_length=10000)
    place: str | None = Field(default=None, max_length=500)
    all_day: Flag | None = None
    start: ZonedTime | None = None
    end: ZonedTime | None = None
    start_date: Day | None = None
    end_date: Day | None = None
    time_zone: str | None = Field(default=None, max_length=64, json_schema_extra=zone_rule)
    rrule: str | None = Field(default=None, max_length=500)
    exdates: list[ZonedTime | Day] | None = Field(default=None, max_length=1000)
    reminders: list[ReminderIn] | None = Field(default=None, max_length=10)
    confirm_minutes: int | None = Field(
        default=None,
        ge=1,
        le=1440,
        description="Ask the people it is for to confirm each occurrence done (POST .../confirm);"
        " if none has after this many minutes from its time, their guardians are told (written"
        " as X-KARES-CONFIRM). null: no confirmation asked.",
    )


class EventIn(EntryIn):
    attendees: list[str] | None = Field(
        default=None, max_length=50, description="Account ids of family members."
    )


class TodoIn(EntryIn):
    due: ZonedTime | None = None
    due_date: Day | None = None
    assignees: list[str] | None = Field(
        default=None, max_length=50, description="Account ids of family members."
    )
    status: Literal["needs-action", "in-process", "completed", "cancelled"] | None = None


class Scoped(_In):
    scope: Literal["all", "this", "following"] = Field(
        default="all",
        description="all: the series; this: one occurrence (an override); following: "
        "the occurrence and those after it (the series is split, the new part gets a new id).",
    )
    occurrence: ZonedTime | Day | None = Field(
        default=None, description="The occurrence's original start (its recurrence_id)."
    )


class EventPatch(EventIn, Scoped):
    pass


class TodoPatch(TodoIn, Scoped):
    pass


class ReminderOut(BaseModel):
    minutes_before: int | None = None
    at: str | None = None


class EntryOut(BaseModel):
    id: str = Field(description="The iCalendar UID.")
    calendar_id: str
    type: Literal["event", "todo"]
    etag: str
    title: str | None
    notes: str | None
    place: str | None
    all_day: bool
    start: str | None = None
    end: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    time_zone: str | None
    rrule: str | None
    exdates: list[str | None]
    overrides: list[str | None] = Field(description="Occurrences changed on their own.")
    reminders: list[ReminderOut]
    confirm_minutes: int | None = None
    attendees: list[str] | None = None
    assignees: list[str] | None = None
    due: str | None = None
    due_date: str | None = None
    status: str | None = None
    completed_at: str | None = None
    updated_at: str


class EntryList(BaseModel):
    entries: list[EntryOut]


class Edited(BaseModel):
    entries: list[EntryOut] = Field(
        description="The entry as changed; after a 'following' edit, then the new series."
    )


class OccurrenceOut(BaseModel):
    calendar_id: str
    id: str
    type: Literal["event", "todo"]
    recurrence_id: str | None = Field(description="Pass as occurrence to edit this one.")
    title: str | None
    place: str | None
    all_day: bool
    start: datetime | date | None
    end: datetime | date | None
    overridden: bool


class OccurrenceList(BaseModel):
    occurrences: list[OccurrenceOut]
