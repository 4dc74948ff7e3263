"""Request and response shapes of the health API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kares.fields import Number, ZonedTime

BATCH_MAX = 2000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SampleIn(_In):
    """One sample (docs/HEALTH.md, "The sample"); the same shape the Apple Health
    and FHIR imports produce."""

    metric: str = Field(min_length=1, max_length=32, description="heart_rate, steps, ...")
    start: ZonedTime = Field(description="The moment, or the interval's start (ISO 8601).")
    end: ZonedTime | None = Field(default=None, description="Interval metrics only.")
    value: Number | None = Field(default=None, description="Single-valued metrics.")
    values: dict[str, Number] | None = Field(
        default=None, max_length=4, description='Blood pressure: {"systolic": 120, "diastolic": 80}'
    )
    unit: str | None = Field(
        default=None, max_length=24, description="The unit as given; converted on the way in."
    )
    stage: str | None = Field(default=None, max_length=24, description="Sleep only.")
    source: str = Field(min_length=1, max_length=64, description="The device or app.")
    record_id: str = Field(
        min_length=1,
        max_length=128,
        description="The source's own id of this record: (source, record_id) is stored once.",
    )


class SampleBatch(_In):
    samples: list[SampleIn] = Field(min_length=1, max_length=BATCH_MAX)


class ItemResult(BaseModel):
    index: int
    status: Literal["stored", "duplicate", "refused"]
    code: str | None = None
    detail: str | None = None


class BatchResult(BaseModel):
    stored: int
    duplicates: int
    refused: int
    results: list[ItemResult] = Field(description="One per sample, in the order sent.")


class LatestOut(BaseModel):
    metric: str
    start: datetime
    end: datetime | None
    value: float | None
    values: dict[str, float] | None
    unit: str | None
    stage: str | None


class LatestList(BaseModel):
    latest: list[LatestOut]


class SummaryOut(BaseModel):
    start: datetime
    end: datetime
    steps: float | None
    distance_m: float | None
    active_energy_kcal: float | None
    heart_rate_min: float | None
    heart_rate_avg: float | None
    heart_rate_max: float | None
    heart_rate_count: int
    resting_heart_rate: float | None = Field(description="The mean of the span's readings.")
    spo2_min: float | None
    sleep_asleep_min: float | None = Field(description="Sessions ending in the span.")
    sleep_in_bed_min: float | None
    sleep_stages_min: dict[str, float] | None


class SummaryList(BaseModel):
    time_zone: str
    summaries: list[SummaryOut]


class SeriesOut(BaseModel):
    metric: str
    unit: str | None
    resolution: str
    aggregate: Literal["sum", "min_avg_max"]
    t: list[datetime] = Field(description="Each bucket's start; empty buckets left out.")
    count: list[int]
    sum: list[float] | None = None
    min: list[float] | None = None
    avg: list[float] | None = None
    max: list[float] | None = None
    min2: list[float] | None = Field(default=None, description="Blood pressure: diastolic.")
    avg2: list[float] | None = None
    max2: list[float] | None = None
