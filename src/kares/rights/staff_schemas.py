"""Request and response shapes of the requests that need a person."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["correction", "explanation", "complaint", "feedback"]
Status = Literal["open", "answered", "rejected", "withdrawn"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestCreate(_In):
    """A request for a person to deal with. A correction names the category it is
    about, the record, what is wrong and what it should be; the other kinds say
    what they are about in ``text``."""

    kind: Kind = Field(
        description="correction (a disputed record the app cannot change), explanation "
        "(beyond GET /api/v1/me/processing), complaint or feedback"
    )
    about: str | None = Field(
        default=None,
        max_length=64,
        description="The category of personal information it is about "
        "(a key of GET /api/v1/privacy/data-map, e.g. location.precise); "
        "required for a correction",
        examples=["account.age"],
    )
    record: str | None = Field(
        default=None,
        max_length=200,
        description="Which record (a correction): e.g. the trip of 3 March",
    )
    wrong: str | None = Field(
        default=None, max_length=4000, description="What is wrong (a correction)"
    )
    should_be: str | None = Field(
        default=None, max_length=4000, description="What it should be (a correction)"
    )
    text: str | None = Field(
        default=None,
        max_length=4000,
        description="The question, complaint or feedback (required for those kinds)",
    )
    lang: Literal["en", "zh"] | None = Field(
        default=None,
        description="The language of the answer; without it, Accept-Language decides",
    )


class RequestOut(BaseModel):
    id: str
    kind: Kind
    status: Status
    account_id: str = Field(description="The account the request is about")
    filed_by: str | None = Field(description="Who made it: the account, or a guardian")
    on_behalf: bool = Field(description="A guardian made it for a dependant or a child")
    about: str | None
    record: str | None
    wrong: str | None
    should_be: str | None
    text: str | None
    lang: Literal["en", "zh"]
    received_at: datetime
    response_working_days: int = Field(description="The policy's answer time (5.8, 8)")
    due_on: date | None = Field(
        description="The last day of the answer time (Beijing calendar); null while the "
        "working-day calendar of the year is not known yet (see due_pending)"
    )
    due_pending: str | None = Field(
        description="Why there is no due date yet; it is filled once the calendar is known"
    )
    working_days_left: int | None = Field(description="Below 0 once overdue; null if closed")
    overdue: bool
    answer: str | None = Field(description="The answer, or the reason for a refusal")
    closed_at: datetime | None
