"""Deletion routes (policy 5.2, 5.4): chosen data now, the account after a cooling-off."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from kares.accounts import service as accounts
from kares.accounts.api import CODE_ERRORS
from kares.accounts.schemas import SmsCodeSent
from kares.deps import DbDep, RuntimeDep, request_ip
from kares.errors import Problem, responses
from kares.families import service as families
from kares.fields import ZonedTime
from kares.identity.auth import AUTH_ERRORS, SEND_CODE_ERRORS, CallerDep
from kares.identity.models import Account
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import guard
from kares.rights import erase

router = APIRouter(prefix="/api/v1", tags=["rights"])

RIGHTS = guard("privacy_choices")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class HandOver(_In):
    family_id: str = Field(min_length=32, max_length=32)
    action: Literal["transfer"]
    to: str = Field(
        min_length=32, max_length=32, description="The adult member who becomes the owner"
    )


class Dissolve(_In):
    family_id: str = Field(min_length=32, max_length=32)
    action: Literal["dissolve"]


FamilyChoice = Annotated[HandOver | Dissolve, Field(discriminator="action")]


class DeletionIn(_In):
    code: str = Field(min_length=1, max_length=16, description="The code sent to your phone")
    password: str | None = Field(
        default=None, max_length=256, description="Your password, checked too when given"
    )
    families: list[FamilyChoice] = Field(
        default_factory=list,
        max_length=50,
        description="For each family you own: hand it over or dissolve it",
    )


class ThirdPartyAccount(BaseModel):
    provider: str
    note: str


class DeletionOut(BaseModel):
    status: Literal["none", "pending", "cancelled"]
    requested_at: datetime | None = None
    due_on: date | None = Field(default=None, description="The day the account will be deleted")
    cancelled_at: datetime | None = None
    cancel_reason: Literal["asked", "signed_in"] | None = None
    requested_by: str | None = Field(
        default=None, description="The guardian who asked for it (None: the account holder)"
    )
    families: list[FamilyChoice] = Field(default_factory=list)
    third_party_accounts: list[ThirdPartyAccount] = Field(
        default_factory=list,
        description="Accounts at WeChat or Apple you signed in with: they are separate and "
        "stay; delete them with that company",
    )


class ChosenIn(_In):
    category: str = Field(min_length=1, max_length=48, examples=["location.precise"])
    since: ZonedTime | None = Field(default=None, description="From (inclusive)")
    until: ZonedTime | None = Field(default=None, description="Until (exclusive)")
    account_id: str | None = Field(
        default=None,
        min_length=32,
        max_length=32,
        description="A dependant or a child under 14 you are guardian of (default: you)",
    )


class ChosenOut(BaseModel):
    category: str
    since: datetime | None
    until: datetime | None
    deleted: dict[str, int] = Field(description="Rows deleted, per table")
    cleared: dict[str, int] = Field(description="Rows kept with the category's values cleared")
    kept: dict[str, str] = Field(description="Tables left as they were, and why")


_NOTES = {
    "wechat": "Your WeChat account is separate from Kares and is not deleted with it; "
    "to delete it, ask Tencent (WeChat: Me > Settings > Account Security).",
    "apple": "Your Apple ID is separate from Kares and is not deleted with it; you can stop "
    "using Sign in with Apple for Kares in your Apple ID settings, or ask Apple.",
}


async def _third_party_accounts(s: AsyncSession, account_id: str) -> list[ThirdPartyAccount]:
    found = await accounts.identities_of(s, account_id)
    return [
        ThirdPartyAccount(
            provider=i.provider,
            note=_NOTES.get(i.provider, "That account is separate and is not deleted with Kares."),
        )
        for i in found
    ]


async def _out(s: AsyncSession, account: Account) -> DeletionOut:
    req = await erase.latest_request(s, account.id)
    third = await _third_party_accounts(s, account.id)
    if req is None:
        return DeletionOut(status="none", third_party_accounts=third)
    return DeletionOut(
        status="pending" if req.status == erase.PENDING else "cancelled",
        requested_at=req.requested_at,
        due_on=req.due_at.date(),
        cancelled_at=req.cancelled_at,
        cancel_reason=req.cancel_reason,
        requested_by=req.requested_by,
        families=[
            HandOver(**f)
            if f["action"] == "transfer"
            else Dissolve(family_id=f["family_id"], action="dissolve")
            for f in req.families or []
        ],
        third_party_accounts=third,
    )


@router.post(
    "/me/deletion/code",
    dependencies=[RIGHTS],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SmsCodeSent,
    responses=responses(
        *AUTH_ERRORS,
        *SEND_CODE_ERRORS,
    ),
    summary="Send a code to the account's phone, to confirm deleting the account",
)
async def deletion_code(
    request: Request, caller: CallerDep, rt: RuntimeDep, s: DbDep
) -> SmsCodeSent:
    if caller.account.phone is None:
        raise Problem(409, "rights.no_phone", "This account has no phone to send a code to.")
    sent = await accounts.request_reauth_code(s, rt, caller.account, request_ip(request, rt))
    return SmsCodeSent(phone=sent.phone, expires_in=sent.expires_in, resend_after=sent.resend_after)


@router.post(
    "/me/deletion",
    dependencies=[RIGHTS],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeletionOut,
    responses=responses(
        *AUTH_ERRORS,
        *CODE_ERRORS,
        (403, "auth.reauth_required"),
        (409, "rights.deletion_pending"),
        (409, "rights.family_owner"),
        (409, "rights.heir_invalid"),
        (409, "rights.last_guardian"),
        (409, "rights.no_phone"),
        (409, "rights.not_owner"),
    ),
    summary="Ask for the account to be deleted, after the cooling-off period",
    description="Confirmed with a code sent to the account's phone (POST /me/deletion/code), "
    "and the password too when given. The account and all its data are deleted on `due_on` "
    "(KARES_DELETION_COOLING_OFF_DAYS later); signing in before then cancels it. Each family "
    "the account owns must be handed over to an adult member or dissolved; its members are "
    "told when the deletion happens. Someone who is the only one looking after a dependant or "
    "a child must first make another adult their guardian, or delete their profile "
    "(`rights.last_guardian` names them).",
)
async def request_deletion(
    body: DeletionIn, caller: CallerDep, rt: RuntimeDep, s: DbDep
) -> DeletionOut:
    steps = [
        erase.FamilyStep(f.family_id, f.action, f.to if isinstance(f, HandOver) else None)
        for f in body.families
    ]
    await erase.request_deletion(
        s, rt, caller.account, code=body.code, password=body.password, steps=steps
    )
    return await _out(s, caller.account)


@router.get(
    "/me/deletion",
    dependencies=[RIGHTS],
    response_model=DeletionOut,
    responses=responses(*AUTH_ERRORS),
    summary="Whether the account is due to be deleted, and when",
)
async def deletion_status(caller: CallerDep, s: DbDep) -> DeletionOut:
    return await _out(s, caller.account)


@router.delete(
    "/me/deletion",
    dependencies=[RIGHTS],
    response_model=DeletionOut,
    responses=responses(*AUTH_ERRORS, (404, "rights.no_deletion")),
    summary="Cancel the account's deletion",
)
async def cancel_deletion(caller: CallerDep, s: DbDep) -> DeletionOut:
    await erase.cancel(s, caller.account.id)
    return await _out(s, caller.account)


@router.post(
    "/me/data/deletion",
    dependencies=[RIGHTS],
    response_model=ChosenOut,
    responses=responses(
        *AUTH_ERRORS,
        (404, "rights.not_guardian"),
        (409, "rights.category_kept"),
        (409, "rights.legal_hold"),
        (422, "rights.unknown_category"),
        (422, "rights.bad_range"),
    ),
    summary="Delete chosen data: one category, optionally in a time range",
    description="Deletes the account's own data of the category collected from `since` "
    "until `until` (either may be left out), at once. Rows that hold nothing else go; "
    "where a row holds other data too, the category's values are cleared, or the row goes "
    "when it cannot exist without them. `kept` names tables left as they were, and why. "
    "A guardian may delete a dependant's or a child's data with `account_id`.",
)
async def delete_chosen(body: ChosenIn, caller: CallerDep, rt: RuntimeDep, s: DbDep) -> ChosenOut:
    target = caller.account.id
    if body.account_id is not None and body.account_id != target:
        guardians = {a.id for a in await families.guardians_of(s, body.account_id)}
        if target not in guardians:
            raise Problem(404, "rights.not_guardian", "You are not a guardian of that account.")
        target = body.account_id
    erase.check_choice(catalog_of(rt), body.category, body.since, body.until)
    await erase.refuse_if_held(s, target)
    out = await erase.erase_chosen(s, rt, target, body.category, since=body.since, until=body.until)
    await s.commit()
    await erase.settle(rt)  # SQLite: out of the log file; PostgreSQL: autovacuum's
    return ChosenOut(
        category=body.category,
        since=body.since,
        until=body.until,
        deleted=dict(out.deleted),
        cleared=dict(out.cleared),
        kept=out.kept,
    )


# --- a guardian for a dependant or a child under 14 (policy 7) -----------------------------


class WardDeletionIn(_In):
    code: str = Field(min_length=1, max_length=16, description="The code sent to your own phone")
    password: str | None = Field(
        default=None, max_length=256, description="Your password, checked too when given"
    )


WARD = "/dependants/{account_id}/deletion"
WardId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    WARD,
    dependencies=[RIGHTS],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeletionOut,
    responses=responses(
        *AUTH_ERRORS,
        *CODE_ERRORS,
        (403, "auth.reauth_required"),
        (404, "rights.not_guardian"),
        (409, "rights.deletion_pending"),
        (409, "rights.no_phone"),
    ),
    summary="A guardian asks for a dependant's or a child's account to be deleted",
    description="Confirmed with a code sent to the guardian's own phone (POST "
    "/me/deletion/code). The account and all its data are deleted on `due_on`, after the "
    "same cooling-off period; any of its guardians can cancel before then, and all are told.",
)
async def request_ward_deletion(
    account_id: WardId, body: WardDeletionIn, caller: CallerDep, rt: RuntimeDep, s: DbDep
) -> DeletionOut:
    req = await erase.request_ward_deletion(
        s, rt, caller.account, account_id, code=body.code, password=body.password
    )
    ward = await s.get(Account, req.account_id)
    assert ward is not None
    return await _out(s, ward)


@router.get(
    WARD,
    dependencies=[RIGHTS],
    response_model=DeletionOut,
    responses=responses(*AUTH_ERRORS, (404, "rights.not_guardian")),
    summary="Whether a dependant's or a child's account is due to be deleted",
)
async def ward_deletion_status(account_id: WardId, caller: CallerDep, s: DbDep) -> DeletionOut:
    ward = await erase.ward_of(s, caller.account.id, account_id)
    return await _out(s, ward)


@router.delete(
    WARD,
    dependencies=[RIGHTS],
    response_model=DeletionOut,
    responses=responses(*AUTH_ERRORS, (404, "rights.not_guardian"), (404, "rights.no_deletion")),
    summary="A guardian cancels a dependant's or a child's account deletion",
)
async def cancel_ward_deletion(account_id: WardId, caller: CallerDep, s: DbDep) -> DeletionOut:
    await erase.cancel_ward(s, caller.account.id, account_id)
    ward = await erase.ward_of(s, caller.account.id, account_id)
    return await _out(s, ward)
