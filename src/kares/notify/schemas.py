"""Request and response shapes of the notify API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from kares.fields import Count, Number


class NotificationOut(BaseModel):
    id: str
    category: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class UnreadCount(BaseModel):
    unread: int


class MarkedRead(BaseModel):
    marked: int


# --- preferences -----------------------------------------------------------------------

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class QuietHours(BaseModel):
    """Pushes of non-urgent categories wait while the local time is in
    [start, end); the window may cross midnight (22:00 to 07:00)."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=HHMM, examples=["22:00"])
    end: str = Field(pattern=HHMM, examples=["07:00"])
    time_zone: str = Field(min_length=1, max_length=64, examples=["Asia/Shanghai"])


class PreferencesIn(BaseModel):
    """Change some choices: categories named here change, the rest keep theirs;
    ``quiet_hours`` set replaces them, ``null`` removes them, absent keeps them."""

    model_config = ConfigDict(extra="forbid")

    categories: dict[str, StrictBool] | None = Field(
        default=None, max_length=32, examples=[{"messages": True, "reminders": False}]
    )
    quiet_hours: QuietHours | None = None


class PreferencesOut(BaseModel):
    categories: dict[str, bool]
    always_on: list[str] = Field(description="Categories that cannot be turned off")
    quiet_hours: QuietHours | None


# --- push channels ---------------------------------------------------------------------


class ApnsRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["apns"]
    token: str = Field(max_length=256, description="The APNs device token, hexadecimal")


class FcmRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["fcm"]
    token: str = Field(max_length=4096, description="The FCM registration token")


class ConsoleRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["console"]
    token: str = Field(min_length=1, max_length=256, description="Any label (development)")


class WebPushKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(max_length=128)
    auth: str = Field(max_length=64)


class WebPushSubscription(BaseModel):
    """``PushSubscription.toJSON()`` from the browser (``expirationTime`` is ignored)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(max_length=2048)
    keys: WebPushKeys
    expirationTime: Count | Number | None = None  # the browser's name for it


class WebPushRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["webpush"]
    subscription: WebPushSubscription


PushRegistration = Annotated[
    ApnsRegistration | FcmRegistration | WebPushRegistration | ConsoleRegistration,
    Field(discriminator="provider"),
]


class PushTokenOut(BaseModel):
    device_id: str
    provider: str
    hint: str = Field(description="The token's last characters, or the push service's host")
    created_at: datetime
    updated_at: datetime


class PushConfigOut(BaseModel):
    providers: list[str] = Field(description="Providers a device can register with here")
    webpush_public_key: str | None = Field(
        description="The VAPID public key (applicationServerKey) for Web Push subscriptions"
    )
