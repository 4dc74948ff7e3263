"""Request and response shapes of the consent, guardian and explanation API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ConsentChange(_In):
    subject: str = Field(
        min_length=1,
        max_length=96,
        examples=["category:location.precise"],
        description="`policy`, `function:<extended function>`, `category:<sensitive "
        "category>` or `third_party:<third party>`; GET /api/v1/me/consents lists them",
    )
    action: Literal["grant", "withdraw"]
    policy_version: str | None = Field(
        default=None, max_length=32, description="Required to grant: the version in force"
    )


class ReceiptOut(BaseModel):
    id: str
    subject: str
    action: str
    policy_version: str
    via: str
    by_guardian: bool
    created_at: datetime


class ConsentOut(BaseModel):
    subject: str
    kind: str
    name: str
    granted: bool
    current: bool = Field(
        description="Granted and still covering the policy in force (false: a revision "
        "changed the terms and it must be accepted again)"
    )
    receipt: ReceiptOut | None


class ConsentsOut(BaseModel):
    policy_version: str
    consents: list[ConsentOut]


class CheckOut(BaseModel):
    function: str
    feature: str | None
    allowed: bool
    degraded: dict[str, str] = Field(
        description="Sensitive categories that are used only in their coarser form"
    )


class GuardianAsk(_In):
    guardian_phone: str = Field(min_length=1, max_length=32)


class GuardianApprove(_In):
    code: str = Field(min_length=1, max_length=16)
    request_id: str | None = Field(
        default=None,
        max_length=32,
        description="Which child's request (GET /api/v1/guardian/requests); default: the newest",
    )


class PendingRequestOut(BaseModel):
    id: str
    child_name: str | None
    child_phone: str = Field(description="Masked, e.g. +86 139****0078")
    created_at: datetime
    expires_at: datetime


class GuardianRequestOut(BaseModel):
    id: str
    status: str
    expires_at: datetime


class WardOut(BaseModel):
    account_id: str
    name: str | None
    approved_at: datetime


class ProcessingItem(BaseModel):
    category: str
    name: str
    sensitive: bool
    fides: str
    held: bool = Field(description="Whether we hold data of this category about you now")
    functions: list[str]
    purposes: list[str]
    legal_basis: list[str]
    consent_receipt: str | None = Field(
        description="The receipt of the consent this rests on, when it rests on consent"
    )
    shared_with: list[str]
    retention: str
    kept_until: datetime | None = Field(
        description="When the oldest item of this category is deleted; null while the "
        "account exists for data kept for the account's life"
    )


class ProcessingOut(BaseModel):
    account_id: str
    policy_version: str
    items: list[ProcessingItem]


Via = Literal["app", "web", "watch"]
