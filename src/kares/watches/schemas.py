"""Request and response shapes of the watches domain."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from kares.fields import trimmed


class WatchHello(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    imei: str = Field(
        min_length=1,
        max_length=32,
        examples=["358240051111110"],
        description="The watch's IMEI or serial: 8 to 20 letters or digits",
        # stated for clients; the service answers watch.invalid_imei itself
        json_schema_extra=trimmed(r"^\s*[0-9A-Za-z]{8,20}\s*$"),
    )
    model: str | None = Field(default=None, max_length=64)


class WatchCredentials(BaseModel):
    watch_id: str
    token: str = Field(description="The watch's credential: Authorization: Bearer <token>")
    pairing_text: str = Field(description="Show it as a QR code for a guardian to scan")
    pairing_qr_svg: str


class WatchPair(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=256, description="The scanned pairing code")
    family_id: str = Field(min_length=1, max_length=32)
    dependant_id: str = Field(min_length=1, max_length=32)


class WatchOut(BaseModel):
    id: str
    status: str
    model: str | None
    imei_tail: str = Field(description="The last 4 characters of the IMEI, to tell watches apart")
    account_id: str | None
    family_id: str | None
    device_id: str | None
    paired_at: datetime | None
    last_seen_at: datetime | None
