"""Request and response shapes of the devices API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from kares.fields import Count, Flag


class PermissionsReport(BaseModel):
    """The OS permission states the app read on this device, e.g.
    ``{"location": "approximate", "notifications": "denied"}``. Permissions not
    named keep their last reported state."""

    model_config = ConfigDict(extra="forbid")

    permissions: dict[str, str] = Field(
        max_length=64, examples=[{"location": "granted", "microphone": "denied"}]
    )


class DeviceOut(BaseModel):
    id: str
    current: bool
    kind: str
    model: str | None
    os: str | None
    os_version: str | None
    app_version: str | None
    language: str | None
    permissions: dict[str, str]
    battery: int | None = Field(description="Last reported battery level, percent")
    charging: bool | None
    battery_at: datetime | None
    first_seen_at: datetime
    last_seen_at: datetime


class StatusReport(BaseModel):
    """What a device says about itself now (apps and watches report it regularly)."""

    model_config = ConfigDict(extra="forbid")

    battery: Count = Field(ge=0, le=100)
    charging: Flag | None = None
