"""Request and response shapes of the location API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from kares.fields import Count, Flag, Number, Time, ZonedTime, name_rule

# a read's time range in the query string: ?from=...&to=... (ISO 8601, with zone;
# a bare number such as ?to=0.5 is refused, never read as a 1970 time)
FromQ = Annotated[Time | None, Query(alias="from")]
ToQ = Annotated[Time | None, Query(alias="to")]

BATCH_MAX = 1000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CellIn(_In):
    mcc: Count = Field(ge=0, le=999)
    mnc: Count = Field(ge=0, le=999)
    lac: Count = Field(ge=0, le=2**32)
    cid: Count = Field(ge=0, le=2**32)
    rssi: Count = Field(default=0, ge=-200, le=200)


class WifiIn(_In):
    mac: str = Field(pattern=r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")
    rssi: Count = Field(default=0, ge=-200, le=200)


class FixIn(_In):
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        pattern=r"^[\x21-\x7e]+$",
        description="The client's own id of this fix: a retried batch is stored once.",
    )
    t: ZonedTime = Field(description="When the fix was taken (ISO 8601, with its zone).")
    lat: Number | None = None
    lon: Number | None = None
    accuracy_m: Number | None = Field(default=None, description="Horizontal accuracy, metres.")
    altitude_m: Number | None = None
    speed_mps: Number | None = None
    course_deg: Number | None = None
    battery: Count | None = None
    source: Literal["gps", "wifi", "cell", "network", "manual"] = "gps"
    cells: list[CellIn] = Field(default_factory=list, max_length=16)
    wifi: list[WifiIn] = Field(default_factory=list, max_length=32)


class FixBatch(_In):
    fixes: list[FixIn] = Field(min_length=1, max_length=BATCH_MAX)


class RefusalOut(BaseModel):
    index: int
    id: str | None
    code: str
    detail: str


class BatchResult(BaseModel):
    accepted: int = Field(description="Stored now (good, flagged or waiting to be resolved).")
    duplicates: int = Field(description="Already stored by an earlier try of the same ids.")
    unresolved: int = Field(description="Only cell towers / Wi-Fi: stored, no position yet.")
    flagged: list[RefusalOut] = Field(description="Stored but never used as good, and why.")
    rejected: list[RefusalOut] = Field(description="Not stored, and why.")
    precision: Literal["precise", "approximate"]


class TrackerCreate(_In):
    name: str = Field(min_length=1, max_length=64, json_schema_extra=name_rule(64))
    kind: Literal["owntracks", "overland", "other"] = "other"


class TrackerOut(BaseModel):
    id: str
    name: str
    kind: str
    username: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class TrackerSetup(BaseModel):
    url: str
    auth: str
    user: str | None = None
    password: str | None = None
    token: str | None = None


class TrackerCreated(TrackerOut):
    secret: str = Field(description="Shown this once.")
    setup: TrackerSetup


class Position(BaseModel):
    lat: float
    lon: float
    accuracy_m: float | None
    precise: bool
    speed_mps: float | None = None
    course_deg: float | None = None
    at: datetime


class MemberLocation(BaseModel):
    account_id: str
    name: str | None
    role: str
    sharing: Literal["live", "history", "off", "paused"]
    position: Position | None
    battery: int | None = None
    battery_at: datetime | None = None


class FamilyMap(BaseModel):
    family_id: str
    members: list[MemberLocation]


class TrackPoint(BaseModel):
    t: datetime
    lat: float
    lon: float
    accuracy_m: float | None = None
    speed_mps: float | None = None


class Track(BaseModel):
    account_id: str
    start: datetime
    end: datetime
    raw: bool
    total_points: int
    points: list[TrackPoint]
    next_cursor: str | None = None
    precise: bool


class PlaceRef(BaseModel):
    id: str
    name: str


class StayOut(BaseModel):
    kind: Literal["stay"] = "stay"
    start: datetime
    end: datetime
    duration_s: float
    lat: float
    lon: float
    radius_m: float
    place: PlaceRef | None


class DrivingEventOut(BaseModel):
    kind: Literal["speeding", "hard_braking", "rapid_acceleration"]
    start: datetime
    end: datetime
    lat: float
    lon: float
    value: float = Field(description="Speeding: top speed m/s; otherwise peak |m/s²|.")


class DrivingSummaryOut(BaseModel):
    events: int
    speeding: int
    hard_braking: int
    rapid_acceleration: int
    speeding_s: float
    max_speed_mps: float
    score: int


class TripOut(BaseModel):
    kind: Literal["trip"] = "trip"
    start: datetime
    end: datetime
    duration_s: float
    distance_m: float
    avg_speed_mps: float
    max_speed_mps: float
    mode: Literal["walking", "cycling", "driving", "other"]
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    from_place: PlaceRef | None
    to_place: PlaceRef | None
    events: list[DrivingEventOut]
    summary: DrivingSummaryOut | None


class Timeline(BaseModel):
    account_id: str
    start: datetime
    end: datetime
    precise: bool
    items: list[StayOut | TripOut]


class RefusedPoint(BaseModel):
    point: int = Field(description="The point's place in the file, from 0, in reading order.")
    time: datetime | None = Field(description="The point's time; null when it has none.")
    code: str
    detail: str


class ImportResult(BaseModel):
    format: Literal["gpx", "geojson", "owntracks-recorder"]
    points: int
    accepted: int
    duplicates: int
    rejected: int
    flagged: int
    refused: list[RefusedPoint] = Field(
        description="Each point not kept as good (rejected or flagged), in file order; at "
        "most the first 1,000 (`refused_truncated` says when there were more)."
    )
    refused_truncated: bool


class PlaceCreate(_In):
    name: str = Field(min_length=1, max_length=64, json_schema_extra=name_rule(64))
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)
    radius_m: Number = Field(default=150, ge=50, le=50_000)


class PlaceUpdate(_In):
    name: str | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=name_rule(64)
    )
    lat: Number | None = Field(default=None, ge=-90, le=90)
    lon: Number | None = Field(default=None, ge=-180, le=180)
    radius_m: Number | None = Field(default=None, ge=50, le=50_000)


class PresenceOut(BaseModel):
    account_id: str
    inside: bool
    since: datetime


class PlaceOut(BaseModel):
    id: str
    family_id: str | None
    name: str
    lat: float
    lon: float
    radius_m: float
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    present: list[PresenceOut] = Field(default_factory=list)


class AlertIn(_In):
    subject_id: str | None = Field(
        default=None, max_length=32, description="A member, or null for anyone of the family."
    )
    on_arrive: Flag = True
    on_leave: Flag = True


class AlertOut(BaseModel):
    place_id: str
    subject_id: str | None
    on_arrive: bool
    on_leave: bool
