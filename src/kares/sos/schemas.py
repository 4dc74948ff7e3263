"""Request and response shapes of the SOS API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kares.fields import Count, Number


class SosRaise(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    lat: Number | None = Field(default=None, ge=-90, le=90)
    lon: Number | None = Field(default=None, ge=-180, le=180)
    accuracy_m: Number | None = Field(default=None, ge=0, le=100_000)
    battery: Count | None = Field(default=None, ge=0, le=100)
    note: str | None = Field(default=None, max_length=200)


class SosOut(BaseModel):
    id: str
    account_id: str
    status: Literal["open", "acknowledged", "late"] = Field(
        description="late: a device's alarm that arrived too old to be an emergency; "
        "recorded with its own time (alarm_at), nobody was alerted"
    )
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    precision: str = Field(description="precise, approximate (consent or permission), or none")
    battery: int | None
    note: str | None
    recipients: list[str]
    created_at: datetime
    alarm_at: datetime | None = Field(
        description="When the device says the alarm was given (a watch's alarm carries its time)"
    )
    repeats: int = Field(
        description="Further alarms of the same device, or SOS of the same person from "
        "the app, added to this alert while it was open"
    )
    repeated_at: datetime | None = Field(
        description="When the last of those repeats came (null while there is none)"
    )
    acknowledged_by: str | None
    acknowledged_at: datetime | None
