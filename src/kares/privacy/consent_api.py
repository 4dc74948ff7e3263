"""HTTP routes of the user's privacy choices: consents and their receipts,
guardians of children under 14, "can I use this?", and the right to
explanation. (The public policy pages are in ``privacy/api.py``.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from kares.deps import DbDep, RuntimeDep, request_ip
from kares.errors import Problem, responses
from kares.identity.auth import AUTH_ERRORS, SEND_CODE_ERRORS
from kares.identity.models import Account
from kares.logs import mask_phone
from kares.privacy import service
from kares.privacy.catalog import Catalog, catalog_of
from kares.privacy.consent_schemas import (
    CheckOut,
    ConsentChange,
    ConsentOut,
    ConsentsOut,
    GuardianApprove,
    GuardianAsk,
    GuardianRequestOut,
    PendingRequestOut,
    ProcessingItem,
    ProcessingOut,
    ReceiptOut,
    WardOut,
)
from kares.privacy.guard import Allowed, Guard, guard
from kares.privacy.models import ConsentReceipt

router = APIRouter(prefix="/api/v1", tags=["privacy"])
AUTH = AUTH_ERRORS
CHANGE_ERRORS = (
    (422, "consent.unknown_subject"),
    (409, "consent.policy_version_mismatch"),
    (403, "guardian.consent_required"),
)

ConsentsCtx = Annotated[Allowed, guard("privacy_choices", "consents")]
GuardianCtx = Annotated[Allowed, guard("privacy_choices", "guardian")]


def receipt_out(r: ConsentReceipt) -> ReceiptOut:
    return ReceiptOut(
        id=r.id,
        subject=r.subject,
        action=r.action,
        policy_version=r.policy_version,
        via=r.via,
        by_guardian=r.actor_account_id is not None,
        created_at=r.created_at,
    )


def _subject_name(cat: Catalog, subject: str) -> str:
    kind, _, key = subject.partition(":")
    if subject == "policy":
        return f"Privacy policy {cat.policy.version} (basic functions)"
    if kind == "function":
        return cat.functions[key].name.en
    if kind == "category":
        return cat.categories[key].name.en
    return cat.third_parties[key].name.en


async def consents_of(s: AsyncSession, cat: Catalog, account_id: str) -> ConsentsOut:
    st = await service.state(s, account_id)
    out = []
    for subject, kind in service.consentable(cat).items():
        terms_for = "function:account" if subject == "policy" else subject
        stand = await service.standing(s, cat, st, subject, terms_for)
        if subject == "policy":
            # the policy is current when it still covers every basic function
            stand = service.Standing(
                subject,
                stand.granted,
                stand.granted and await _policy_current(s, cat, st),
                stand.receipt,
            )
        out.append(
            ConsentOut(
                subject=subject,
                kind=kind,
                name=_subject_name(cat, subject),
                granted=stand.granted,
                current=stand.current,
                receipt=receipt_out(stand.receipt) if stand.receipt else None,
            )
        )
    return ConsentsOut(policy_version=cat.policy.version, consents=out)


async def _policy_current(s: AsyncSession, cat: Catalog, st: dict[str, ConsentReceipt]) -> bool:
    for key, f in cat.functions.items():
        if f.kind == "basic" and not f.consent_exempt:
            stand = await service.standing(s, cat, st, "policy", f"function:{key}")
            if not stand.current:
                return False
    return True


@router.get(
    "/me/consents",
    response_model=ConsentsOut,
    responses=responses(*AUTH),
    summary="What you have consented to, and whether it still covers the policy in force",
)
async def my_consents(ctx: ConsentsCtx, rt: RuntimeDep, s: DbDep) -> ConsentsOut:
    return await consents_of(s, catalog_of(rt), ctx.account_id)


async def _change(
    s: AsyncSession,
    rt: RuntimeDep,
    ctx: Allowed,
    account: Account,
    body: ConsentChange,
    *,
    by_guardian: bool,
) -> ReceiptOut:
    assert ctx.caller is not None
    if not by_guardian and body.action == "grant" and service.is_minor(account):
        raise Problem(
            403,
            "guardian.consent_required",
            "A child under 14 cannot consent alone; a guardian gives consent.",
        )
    via = "guardian" if by_guardian else ("web" if ctx.caller.via_cookie else "app")
    r = await service.change_consent(
        s,
        catalog_of(rt),
        account_id=account.id,
        subject=body.subject,
        action=body.action,
        policy_version=body.policy_version,
        via=via,
        actor_account_id=ctx.account_id if by_guardian else None,
        session_id=ctx.caller.session.id,
        device_id=ctx.caller.session.device_id,
    )
    return receipt_out(r)


@router.post(
    "/me/consents",
    status_code=status.HTTP_201_CREATED,
    response_model=ReceiptOut,
    responses=responses(*AUTH, *CHANGE_ERRORS),
    summary="Give or withdraw a consent; takes effect on the next request",
    description="Withdrawal stops the processing at once; what was done before stays "
    "lawful (policy 5.3). Every change is an append-only receipt.",
)
async def change_my_consent(
    body: ConsentChange, ctx: ConsentsCtx, rt: RuntimeDep, s: DbDep
) -> ReceiptOut:
    assert ctx.caller is not None
    return await _change(s, rt, ctx, ctx.caller.account, body, by_guardian=False)


@router.get(
    "/me/consents/receipts",
    response_model=list[ReceiptOut],
    responses=responses(*AUTH),
    summary="Every consent receipt of this account, oldest first",
)
async def my_receipts(ctx: ConsentsCtx, s: DbDep) -> list[ReceiptOut]:
    return [receipt_out(r) for r in await service.receipts(s, ctx.account_id)]


@router.get(
    "/me/functions/{function}",
    response_model=CheckOut,
    responses=responses(
        *AUTH,
        (404, "function.unknown"),
        (403, "consent.policy_required"),
        (403, "consent.required"),
        (403, "consent.reconsent_required"),
        (403, "permission.closed"),
        (403, "guardian.consent_required"),
    ),
    summary="Can I use this function (or feature) now? The same checks as the guard",
    description="Apps call this before opening a feature, to show the right consent or "
    "permission prompt: the refusal is the 403 the feature itself would give.",
)
async def check_function(
    function: str,
    request: Request,
    ctx: ConsentsCtx,
    rt: RuntimeDep,
    s: DbDep,
    feature: Annotated[str | None, Query(max_length=64)] = None,
) -> CheckOut:
    cat = catalog_of(rt)
    if function not in cat.functions or (
        feature is not None and feature not in cat.functions[function].features
    ):
        raise Problem(404, "function.unknown", "No such function or feature in the catalog.")
    probe = Guard(function, feature)
    probe.validate(cat)
    allowed = await probe(request, rt, s)
    return CheckOut(function=function, feature=feature, allowed=True, degraded=allowed.degraded)


@router.get(
    "/me/processing",
    response_model=ProcessingOut,
    responses=responses(*AUTH),
    summary="How your personal information is processed (policy 5.6)",
    description="For every category: whether we hold it, for which functions and purposes, "
    "on which legal basis and consent receipt, shared with whom, and kept until when.",
)
async def my_processing(
    ctx: Annotated[Allowed, guard("privacy_choices", "explanation")], rt: RuntimeDep, s: DbDep
) -> ProcessingOut:
    assert ctx.caller is not None
    items = await service.explain(s, catalog_of(rt), ctx.caller.account)
    return ProcessingOut(
        account_id=ctx.account_id,
        policy_version=catalog_of(rt).policy.version,
        items=[ProcessingItem(**i) for i in items],
    )


# --- guardians (policy 6) ----------------------------------------------------------------


@router.post(
    "/me/guardian",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GuardianRequestOut,
    responses=responses(
        *AUTH,
        (409, "guardian.not_needed"),
        (422, "guardian.self"),
        (422, "phone.invalid"),
        *SEND_CODE_ERRORS,
    ),
    summary="A child under 14 asks a guardian to consent; a code goes to the guardian",
)
async def ask_guardian(
    body: GuardianAsk, request: Request, ctx: GuardianCtx, rt: RuntimeDep, s: DbDep
) -> GuardianRequestOut:
    assert ctx.caller is not None
    req = await service.request_guardian(
        s,
        rt,
        ctx.caller.account,
        guardian_phone=body.guardian_phone,
        ip=request_ip(request, rt),
    )
    return GuardianRequestOut(id=req.id, status=req.status, expires_at=req.expires_at)


@router.post(
    "/guardian/approve",
    response_model=WardOut,
    responses=responses(
        *AUTH,
        (403, "guardian.not_adult"),
        (404, "guardian.no_request"),
        (400, "otp.invalid"),
        (400, "otp.expired"),
        (400, "otp.used"),
        (422, "otp.malformed"),
        (429, "otp.too_many_attempts"),
    ),
    summary="The guardian, signed in, approves with the code sent to their phone",
)
async def approve(body: GuardianApprove, ctx: GuardianCtx, rt: RuntimeDep, s: DbDep) -> WardOut:
    assert ctx.caller is not None
    g = await service.approve_guardian(
        s,
        rt,
        ctx.caller.account,
        code=body.code,
        session_id=ctx.caller.session.id,
        device_id=ctx.caller.session.device_id,
        request_id=body.request_id,
    )
    minor = await s.get(Account, g.minor_account_id)
    return WardOut(
        account_id=g.minor_account_id,
        name=minor.name if minor else None,
        approved_at=g.approved_at,
    )


@router.get(
    "/guardian/requests",
    response_model=list[PendingRequestOut],
    responses=responses(*AUTH),
    summary="Children who asked this account's phone number to be their guardian",
    description="So the guardian sees who is asking before approving with the code.",
)
async def guardian_requests(ctx: GuardianCtx, s: DbDep) -> list[PendingRequestOut]:
    assert ctx.caller is not None
    out = []
    for r in await service.pending_requests(s, ctx.caller.account):
        child = await s.get(Account, r.minor_account_id)
        if child is None:
            continue
        out.append(
            PendingRequestOut(
                id=r.id,
                child_name=child.name,
                child_phone=mask_phone(child.phone),
                created_at=r.created_at,
                expires_at=r.expires_at,
            )
        )
    return out


@router.get(
    "/guardian/wards",
    response_model=list[WardOut],
    responses=responses(*AUTH),
    summary="The children this account is guardian of",
)
async def wards(ctx: GuardianCtx, s: DbDep) -> list[WardOut]:
    out = []
    for g in await service.wards_of(s, ctx.account_id):
        minor = await s.get(Account, g.minor_account_id)
        out.append(
            WardOut(
                account_id=g.minor_account_id,
                name=minor.name if minor else None,
                approved_at=g.approved_at,
            )
        )
    return out


@router.get(
    "/guardian/wards/{minor_id}/consents",
    response_model=ConsentsOut,
    responses=responses(*AUTH, (404, "guardian.not_found")),
    summary="A child's consents, as their guardian sees them",
)
async def ward_consents(minor_id: str, ctx: GuardianCtx, rt: RuntimeDep, s: DbDep) -> ConsentsOut:
    assert ctx.caller is not None
    await service.require_ward(s, ctx.caller.account, minor_id)
    return await consents_of(s, catalog_of(rt), minor_id)


@router.get(
    "/guardian/wards/{minor_id}/consents/receipts",
    response_model=list[ReceiptOut],
    responses=responses(*AUTH, (404, "guardian.not_found")),
    summary="A child's consent receipts",
)
async def ward_receipts(minor_id: str, ctx: GuardianCtx, s: DbDep) -> list[ReceiptOut]:
    assert ctx.caller is not None
    await service.require_ward(s, ctx.caller.account, minor_id)
    return [receipt_out(r) for r in await service.receipts(s, minor_id)]


@router.post(
    "/guardian/wards/{minor_id}/consents",
    status_code=status.HTTP_201_CREATED,
    response_model=ReceiptOut,
    responses=responses(
        *AUTH, *CHANGE_ERRORS, (404, "guardian.not_found"), (403, "guardian.not_adult")
    ),
    summary="The guardian gives or withdraws a consent for the child",
)
async def change_ward_consent(
    minor_id: str, body: ConsentChange, ctx: GuardianCtx, rt: RuntimeDep, s: DbDep
) -> ReceiptOut:
    assert ctx.caller is not None
    await service.require_ward(s, ctx.caller.account, minor_id)
    if body.action == "grant" and not service.is_adult(ctx.caller.account):
        # Only an adult consents for a child; withdrawing stays possible.
        raise Problem(
            403,
            "guardian.not_adult",
            "Only an adult account can consent for a child. Declare your age under your profile.",
        )
    minor = await s.get(Account, minor_id)
    assert minor is not None
    return await _change(s, rt, ctx, minor, body, by_guardian=True)


@router.delete(
    "/guardian/wards/{minor_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH, (404, "guardian.not_found")),
    summary="The guardian withdraws their approval: the child's account stops at once",
)
async def end_ward(minor_id: str, ctx: GuardianCtx, rt: RuntimeDep, s: DbDep) -> Response:
    assert ctx.caller is not None
    await service.end_guardianship(
        s, rt, ctx.caller.account, minor_id, session_id=ctx.caller.session.id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
