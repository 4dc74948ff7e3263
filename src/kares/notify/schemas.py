"""Request and response shapes of the notify API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool

from kares.fields import Count, Number, zone_rule


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

# what can be turned on or off (notify.service checks the names against these)
CATEGORIES = (
    "security",
    "messages",
    "calls",
    "reminders",
    "location",
    "health",
    "sos",
    "system",
)
# ... and what cannot be turned off: pushed at once even in quiet hours (and marked
# urgent); a request may name them, only as true
URGENT = ("security", "sos")

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class QuietHours(BaseModel):
    """Pushes of non-urgent categories wait while the local time is in
    [start, end); the window may cross midnight (22:00 to 07:00)."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=HHMM, examples=["22:00"])
    end: str = Field(pattern=HHMM, examples=["07:00"])
    time_zone: str = Field(
        min_length=1,
        max_length=64,
        examples=["Asia/Shanghai"],
        description="An IANA time zone name",
        # the names the service takes (notify.service.time_zones), stated for clients
        json_schema_extra=zone_rule,
    )


class PreferencesIn(BaseModel):
    """Change some choices: categories named here change, the rest keep theirs;
    ``quiet_hours`` set replaces them, ``null`` removes them, absent keeps them."""

    model_config = ConfigDict(extra="forbid")

    categories: dict[str, StrictBool] | None = Field(
        default=None,
        max_length=32,
        examples=[{"messages": True, "reminders": False}],
        json_schema_extra={
            "propertyNames": {"enum": list[JsonValue](CATEGORIES)},
            "properties": {c: {"const": True} for c in URGENT},
        },
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
    voip_token: str | None = Field(
        default=None,
        max_length=256,
        description="The PushKit VoIP token, hexadecimal: an incoming call wakes the device "
        "through it while the app holds no WebSocket (docs/CALLS.md). Left out: none.",
    )


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

    endpoint: str = Field(
        max_length=2048,
        description="The push service's https URL (only known push services are taken)",
        json_schema_extra={"pattern": r"^https://[^\u0000]*$"},
    )
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
    voip: bool = Field(
        description="Whether an incoming call can wake the device by a push "
        "(APNs: a VoIP token registered; FCM: always)"
    )
    created_at: datetime
    updated_at: datetime


class PushConfigOut(BaseModel):
    providers: list[str] = Field(description="Providers a device can register with here")
    webpush_public_key: str | None = Field(
        description="The VAPID public key (applicationServerKey) for Web Push subscriptions"
    )
