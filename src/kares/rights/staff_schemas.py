"""Request and response shapes of the requests that need a person."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["correction", "explanation", "complaint", "feedback"]
Status = Literal["open", "answered", "rejected", "withdrawn"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# What a free text may be: some character that is not a space, and no control
# character but tab, line feed and carriage return (what the service checks).
_C = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
TEXT = rf"^[^{_C}]*[^\s\u0000-\u001f\u007f-\u009f][^{_C}]*$"
Lang = Literal["en", "zh"]
LANG_DOC = "The language of the answer; without it, Accept-Language decides"
ABOUT_DOC = (
    "The category of personal information it is about (a key of "
    "GET /api/v1/privacy/data-map, e.g. location.precise); an unknown one is 404"
)


class CorrectionCreate(_In):
    """A correction of a disputed record the app cannot change: the category,
    the record, what is wrong and what it should be."""

    kind: Literal["correction"]
    about: str = Field(max_length=64, description=ABOUT_DOC, examples=["account.age"])
    record: str | None = Field(
        default=None,
        max_length=200,
        pattern=TEXT,
        description="Which record: e.g. the trip of 3 March",
    )
    wrong: str = Field(max_length=4000, pattern=TEXT, description="What is wrong")
    should_be: str = Field(max_length=4000, pattern=TEXT, description="What it should be")
    text: str | None = Field(
        default=None, max_length=4000, pattern=TEXT, description="Anything to add"
    )
    lang: Lang | None = Field(default=None, description=LANG_DOC)


class OtherCreate(_In):
    """An explanation beyond GET /api/v1/me/processing, a complaint or feedback:
    what it is about in ``text``."""

    kind: Literal["explanation", "complaint", "feedback"]
    about: str | None = Field(default=None, max_length=64, description=ABOUT_DOC)
    text: str = Field(
        max_length=4000, pattern=TEXT, description="The question, complaint or feedback"
    )
    lang: Lang | None = Field(default=None, description=LANG_DOC)


RequestCreate = Annotated[CorrectionCreate | OtherCreate, Field(discriminator="kind")]


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
