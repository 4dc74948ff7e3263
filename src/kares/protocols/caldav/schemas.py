"""Request and response bodies of the CalDAV module's JSON routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from kares.fields import name_rule


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AppPasswordCreate(_In):
    name: str = Field(min_length=1, max_length=64, json_schema_extra=name_rule(64))


class AppPasswordOut(BaseModel):
    id: str
    name: str
    username: str
    session_id: str = Field(description="The session it is listed as under /api/v1/me/sessions.")
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class CalDavSetup(BaseModel):
    url: str = Field(description="The server address to type into the phone's calendar.")
    username: str
    password: str


class AppPasswordCreated(AppPasswordOut):
    password: str = Field(description="Shown this once.")
    setup: CalDavSetup


class SubscriptionCreate(_In):
    name: str = Field(
        default="Subscription", min_length=1, max_length=64, json_schema_extra=name_rule(64)
    )


class SubscriptionOut(BaseModel):
    id: str
    calendar_id: str
    name: str
    created_at: datetime
    revoked: bool


class SubscriptionCreated(SubscriptionOut):
    url: str = Field(description="The secret read-only iCalendar URL (shown this once).")
    webcal: str


class ImportResult(BaseModel):
    created: int
    updated: int
