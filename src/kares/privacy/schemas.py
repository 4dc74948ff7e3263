"""Response shapes of the privacy routes."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field


class SectionOut(BaseModel):
    """One section of the policy. ``blocks`` are, by ``type``: ``paragraph``
    {text}, ``list`` {ordered, items}, ``table`` {id, columns, rows},
    ``card`` {id, title, fields: [{label, value}]} (one function of the
    catalog), ``contents`` {entries: [{id, heading}]}."""

    id: str = Field(examples=["s1-6-1"])
    number: str | None = Field(examples=["1.6.1"])
    title: str = Field(examples=["Device Permission Calls"])
    heading: str = Field(examples=["1.6.1 Device Permission Calls"])
    blocks: list[dict[str, Any]]
    sections: list[SectionOut]


class PolicyOut(BaseModel):
    """The privacy policy in force, in one language, section by section."""

    version: str = Field(examples=["2024-07-09"])
    date: dt.date
    effective: dt.date
    significant: bool
    changes: list[str]
    operator: str
    contact_email: str
    response_working_days: int
    catalog_digest: str
    lang: Literal["en", "zh"]
    title: str
    meta: list[str]
    sections: list[SectionOut]


class RetentionOut(BaseModel):
    days: int | None = Field(description="days from collection, or null with `kept`")
    kept: Literal["account"] | None = Field(description="'account': while the account exists")
    then: Literal["delete", "anonymise"]


class DataMapRowOut(BaseModel):
    """One column that holds personal information."""

    table: str = Field(examples=["accounts"])
    column: str = Field(examples=["phone"])
    category: str = Field(examples=["contact.phone"])
    category_name: str = Field(examples=["Phone number"])
    sensitive: bool
    fides: str = Field(examples=["user.contact.phone_number"])
    functions: list[str] = Field(examples=[["account"]])
    retention: RetentionOut
    encrypted_at_rest: bool


class VersionOut(BaseModel):
    """A published version of the policy and what it changed."""

    version: str
    published_on: dt.date
    significant: bool
    changes: list[dict[str, str]] = Field(description="What changed, in en and zh")
    asks_again_about: list[str] = Field(
        description="Consents this version stretched: users agree again before these apply"
    )
    first_served_at: dt.datetime
