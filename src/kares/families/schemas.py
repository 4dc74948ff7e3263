"""Request and response shapes of the families API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kares.fields import Count, Day, Flag, Time, name_rule, not_null

Role = Literal["owner", "guardian", "member", "dependant"]
LocationSharing = Literal["live", "history", "off"]
HealthLevel = Literal["off", "summaries", "series"]
AgeBracket = Literal["under_14", "14_to_17", "adult"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- families ------------------------------------------------------------------------


class FamilyCreate(_In):
    name: str = Field(
        max_length=200,
        description="1 to 40 characters, no control characters",
        examples=["The Wangs"],
        json_schema_extra=name_rule(40),
    )


class FamilyRename(_In):
    name: str = Field(
        max_length=200, description="1 to 40 characters", json_schema_extra=name_rule(40)
    )


class SharingOut(BaseModel):
    """What a member shares with one family."""

    location: LocationSharing = Field(description="live, history (implies live) or off")
    health: bool = Field(description="Health summaries (true when health_level is not off)")
    health_level: HealthLevel = Field(
        description="Health shared: off, summaries, or series (raw series, implies summaries)"
    )
    schedule: bool
    paused_until: datetime | None = Field(
        description="While in the future, nothing is shared with this family"
    )
    paused: bool = Field(description="A pause is in force now")
    updated_at: datetime
    set_by_guardian: bool = Field(description="A dependant's guardian made the last change")


class EffectiveSharing(BaseModel):
    """What the family sees of the member right now (the pause applied)."""

    location: LocationSharing
    health: bool
    schedule: bool
    health_level: HealthLevel


class MemberOut(BaseModel):
    account_id: str
    name: str | None
    role: Role
    managed: bool = Field(description="A managed profile (a dependant without its own sign-in)")
    avatar_url: str | None
    joined_at: datetime
    sharing: SharingOut


class FamilySummary(BaseModel):
    id: str
    name: str
    my_role: Role
    member_count: int
    photo_url: str | None
    created_at: datetime


class FamilyOut(FamilySummary):
    owner_account_id: str
    members: list[MemberOut]


class MemberSharingOut(BaseModel):
    """What one member shares with a family (their choices and their effect now)."""

    family_id: str
    account_id: str
    choices: SharingOut
    effective: EffectiveSharing


class SharingUpdate(_In):
    """Fields left out keep their value; ``paused_until: null`` ends a pause."""

    location: LocationSharing | None = Field(default=None, json_schema_extra=not_null)
    health: Flag | None = Field(
        default=None,
        description="true shares at least summaries; false shares no health",
        json_schema_extra=not_null,
    )
    health_level: HealthLevel | None = Field(
        default=None,
        description="off, summaries, or series (implies summaries)",
        json_schema_extra=not_null,
    )
    schedule: Flag | None = Field(default=None, json_schema_extra=not_null)
    paused_until: Time | None = Field(
        default=None,
        description="End of a pause (with a time zone), at most 7 days ahead; null resumes",
    )

    @model_validator(mode="after")
    def _no_nulls_but_pause(self) -> SharingUpdate:
        for f in ("location", "health", "health_level", "schedule"):
            if f in self.model_fields_set and getattr(self, f) is None:
                raise ValueError(f"{f} cannot be null")
        return self


class RoleChange(_In):
    role: Literal["guardian", "member"]


class Transfer(_In):
    account_id: str = Field(min_length=1, max_length=64)


# --- invitations ---------------------------------------------------------------------


class InvitationCreate(_In):
    expires_in_days: Count = Field(default=7, ge=1, le=30)
    max_uses: Count = Field(default=1, ge=1, le=50)


class PersonOut(BaseModel):
    account_id: str
    name: str | None


class InvitationOut(BaseModel):
    id: str
    family_id: str
    status: Literal["active", "expired", "revoked", "used_up"]
    code: str | None = Field(
        description="8 characters (no 0/O/1/I); typed in by the invitee. Only while active",
        examples=["K7WQ-M3RD"],
    )
    token: str | None = Field(description="The signed token the QR code carries. Only while active")
    text: str | None = Field(
        description="What the QR code encodes: kares://join/<token>. Only while active"
    )
    qr_png_url: str | None
    qr_svg_url: str | None
    max_uses: int
    uses: int
    created_by: PersonOut
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class ScannedText(_In):
    text: str = Field(
        min_length=1,
        max_length=512,
        description="What the camera read from the QR code, or the short code as typed",
    )
    scanned: Flag = Field(
        default=False,
        description="True when the camera scanned it (needs the Camera permission), "
        "false when typed in",
    )


class InvitationPreview(BaseModel):
    family_id: str
    family_name: str
    member_count: int
    inviter_name: str | None
    expires_at: datetime
    already_member: bool


class Joined(BaseModel):
    joined: bool = Field(description="False when the caller was already a member")
    family: FamilyOut


# --- dependants ------------------------------------------------------------------------


class DependantCreate(_In):
    """Either a new managed profile (``name`` and ``birth_date`` or
    ``age_bracket``) or ``account_id``: an existing child account whose
    guardian you are."""

    # the one-shape rule below, stated for clients (JSON Schema's anyOf)
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["account_id"],
                    "properties": {
                        "account_id": {"type": "string"},
                        "name": {"type": "null"},
                        "birth_date": {"type": "null"},
                        "age_bracket": {"type": "null"},
                    },
                },
                {
                    "required": ["name", "birth_date"],
                    "properties": {
                        "name": {"type": "string"},
                        "birth_date": {"type": "string"},
                        "account_id": {"type": "null"},
                    },
                },
                {
                    "required": ["name", "age_bracket"],
                    "properties": {
                        "name": {"type": "string"},
                        "age_bracket": {"type": "string"},
                        "account_id": {"type": "null"},
                    },
                },
            ]
        }
    )

    name: str | None = Field(
        default=None, max_length=200, examples=["Xiaoming"], json_schema_extra=name_rule(64)
    )
    birth_date: Day | None = None
    age_bracket: AgeBracket | None = None
    account_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_shape(self) -> DependantCreate:
        if self.account_id is not None:
            if self.name is not None or self.birth_date is not None or self.age_bracket:
                raise ValueError("give account_id alone, or name with birth_date or age_bracket")
        elif self.name is None:
            raise ValueError("give a name (and birth_date or age_bracket), or account_id")
        return self


class DependantAdded(BaseModel):
    created: bool = Field(description="A new managed profile was created")
    member: MemberOut
