"""HTTP routes of the families domain: parse, call the service, shape the reply."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Annotated, Any

import segno
from fastapi import APIRouter, File, Request, Response, UploadFile, status
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.deps import DbDep, RuntimeDep
from kares.errors import responses
from kares.families import service
from kares.families.schemas import (
    DependantAdded,
    DependantCreate,
    EffectiveSharing,
    FamilyCreate,
    FamilyOut,
    FamilyRename,
    FamilySummary,
    InvitationCreate,
    InvitationOut,
    InvitationPreview,
    Joined,
    MemberOut,
    MemberSharingOut,
    PersonOut,
    RoleChange,
    ScannedText,
    SharingOut,
    SharingUpdate,
    Transfer,
)
from kares.identity.auth import AUTH_ERRORS
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, Guard, guard

if TYPE_CHECKING:
    from kares.families.models import Family, FamilyInvitation, FamilyMember
    from kares.identity.models import Account

router = APIRouter(prefix="/api/v1", tags=["families"])

AUTH = AUTH_ERRORS
NOT_FOUND = (404, "family.not_found")
FORBIDDEN = (403, "family.forbidden")
MEMBER_NOT_FOUND = (404, "family.member_not_found")
ABOUT = (404, "not_found")  # the guard: that person shares no family with the caller
IMAGE_ERRORS = (
    (413, "media.too_large"),
    (413, "request.too_large"),
    (415, "media.unsupported_type"),
    (422, "media.empty"),
    (422, "media.too_many_pixels"),
)
CODE_ERRORS = (
    (400, "invitation.invalid"),
    (410, "invitation.expired"),
    (410, "invitation.revoked"),
    (410, "invitation.used_up"),
    (429, "invitation.too_many_attempts"),
)

Circles = Annotated[Allowed, guard("family", "circles")]
_SCAN = Guard("family", "scan_code")


def _caller(ctx: Allowed) -> Account:
    assert ctx.caller is not None
    return ctx.caller.account


# --- shaping -------------------------------------------------------------------------------


def sharing_out(m: FamilyMember) -> SharingOut:
    now = clock.utcnow()
    return SharingOut(
        location=m.location,
        health=m.health,
        health_level=service.health_level(m),
        schedule=m.schedule,
        paused_until=m.paused_until if service.is_paused(m, now) else None,
        paused=service.is_paused(m, now),
        updated_at=m.sharing_updated_at,
        set_by_guardian=m.sharing_updated_by not in (None, m.account_id),
    )


def member_out(m: FamilyMember, acc: Account) -> MemberOut:
    avatar = (
        f"/api/v1/families/{m.family_id}/members/{acc.id}/avatar" if acc.avatar_media_id else None
    )
    return MemberOut(
        account_id=acc.id,
        name=acc.name,
        role=m.role,
        managed=acc.status == "managed",
        avatar_url=avatar,
        joined_at=m.joined_at,
        sharing=sharing_out(m),
    )


def member_sharing_out(m: FamilyMember) -> MemberSharingOut:
    eff = service.effective(m, clock.utcnow())
    return MemberSharingOut(
        family_id=m.family_id,
        account_id=m.account_id,
        choices=sharing_out(m),
        effective=EffectiveSharing(
            location=eff.location,
            health=eff.health,
            schedule=eff.schedule,
            health_level=eff.health_level,
        ),
    )


def _photo_url(fam: Family) -> str | None:
    return f"/api/v1/families/{fam.id}/photo" if fam.photo_media_id else None


async def family_out(s: AsyncSession, fam: Family, caller_id: str) -> FamilyOut:
    rows = await service.members_of(s, fam.id)
    mine = next((m.role for m, a in rows if a.id == caller_id), "member")
    return FamilyOut(
        id=fam.id,
        name=fam.name,
        my_role=mine,
        member_count=len(rows),
        photo_url=_photo_url(fam),
        created_at=fam.created_at,
        owner_account_id=fam.owner_account_id,
        members=[member_out(m, a) for m, a in rows],
    )


def invitation_out(inv: FamilyInvitation, creator: Account | None) -> InvitationOut:
    state = service.invitation_status(inv, clock.utcnow())
    active = state == "active"
    base = f"/api/v1/families/{inv.family_id}/invitations/{inv.id}"
    return InvitationOut(
        id=inv.id,
        family_id=inv.family_id,
        status=state,
        code=service.display_code(service.invitation_code(inv.id)) if active else None,
        token=service.invitation_token(inv) if active else None,
        text=service.invitation_text(inv) if active else None,
        qr_png_url=f"{base}/qr.png" if active else None,
        qr_svg_url=f"{base}/qr.svg" if active else None,
        max_uses=inv.max_uses,
        uses=inv.uses,
        created_by=PersonOut(
            account_id=inv.created_by_account_id, name=creator.name if creator else None
        ),
        created_at=inv.created_at,
        expires_at=inv.expires_at,
        revoked_at=inv.revoked_at,
    )


def _image(data: bytes, media_type: str, etag: str) -> Response:
    return Response(
        data,
        media_type=media_type,
        headers={
            "Cache-Control": "private, max-age=86400",
            "ETag": f'"{etag}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


IMAGE_200 = {"content": {"image/jpeg": {}, "image/png": {}}, "description": "The image"}


# --- families ------------------------------------------------------------------------------


@router.post(
    "/families",
    status_code=status.HTTP_201_CREATED,
    response_model=FamilyOut,
    responses=responses(*AUTH, (422, "family.invalid_name"), (403, "family.adult_required")),
    summary="Create a family; you are its owner",
)
async def create_family(body: FamilyCreate, ctx: Circles, s: DbDep) -> FamilyOut:
    fam = await service.create_family(s, owner=_caller(ctx), name=body.name)
    return await family_out(s, fam, ctx.account_id)


@router.get(
    "/families",
    response_model=list[FamilySummary],
    responses=responses(*AUTH),
    summary="The families you belong to",
)
async def my_families(ctx: Circles, s: DbDep) -> list[FamilySummary]:
    return [
        FamilySummary(
            id=x.family.id,
            name=x.family.name,
            my_role=x.member.role,
            member_count=x.member_count,
            photo_url=_photo_url(x.family),
            created_at=x.family.created_at,
        )
        for x in await service.families_of(s, ctx.account_id)
    ]


@router.get(
    "/families/{family_id}",
    response_model=FamilyOut,
    responses=responses(*AUTH, NOT_FOUND),
    summary="A family with its members, their roles and what each shares",
)
async def get_family(family_id: str, ctx: Circles, s: DbDep) -> FamilyOut:
    fam, _ = await service.require_member(s, family_id, ctx.account_id)
    return await family_out(s, fam, ctx.account_id)


@router.patch(
    "/families/{family_id}",
    response_model=FamilyOut,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN, (422, "family.invalid_name")),
    summary="Rename the family (owner or guardian)",
)
async def rename_family(family_id: str, body: FamilyRename, ctx: Circles, s: DbDep) -> FamilyOut:
    fam = await service.rename(s, family_id=family_id, actor_id=ctx.account_id, name=body.name)
    return await family_out(s, fam, ctx.account_id)


@router.delete(
    "/families/{family_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN),
    summary="Dissolve the family (owner): every member loses access at once",
)
async def dissolve_family(family_id: str, ctx: Circles, s: DbDep) -> Response:
    await service.dissolve(s, family_id=family_id, actor_id=ctx.account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/families/{family_id}/photo",
    response_model=FamilyOut,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN, *IMAGE_ERRORS),
    summary="Set the group photo (owner or guardian; JPEG, PNG, WebP or GIF)",
    description="Same rules as avatars: the type is sniffed from the bytes, the size "
    "capped, the image re-encoded and all its metadata (EXIF, GPS, XMP, ICC) dropped. "
    "The previous photo is deleted.",
)
async def put_photo(
    family_id: str,
    file: Annotated[UploadFile, File(description="The image")],
    ctx: Annotated[Allowed, guard("family", "photo_upload")],
    rt: RuntimeDep,
    s: DbDep,
) -> FamilyOut:
    raw = await file.read(rt.settings.image_max_bytes + 1)
    fam = await service.set_photo(s, rt, family_id=family_id, actor_id=ctx.account_id, raw=raw)
    return await family_out(s, fam, ctx.account_id)


@router.get(
    "/families/{family_id}/photo",
    response_class=Response,
    responses={200: IMAGE_200, **responses(*AUTH, NOT_FOUND, (404, "media.not_found"))},
    summary="The group photo (members only)",
)
async def get_photo(family_id: str, ctx: Circles, s: DbDep) -> Response:
    obj = await service.photo_of(s, family_id=family_id, account_id=ctx.account_id)
    return _image(obj.data, obj.content_type, obj.sha256)


@router.delete(
    "/families/{family_id}/photo",
    response_model=FamilyOut,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN),
    summary="Remove the group photo (owner or guardian)",
)
async def delete_photo(family_id: str, ctx: Circles, s: DbDep) -> FamilyOut:
    fam = await service.remove_photo(s, family_id=family_id, actor_id=ctx.account_id)
    return await family_out(s, fam, ctx.account_id)


@router.post(
    "/families/{family_id}/transfer",
    response_model=FamilyOut,
    responses=responses(
        *AUTH,
        NOT_FOUND,
        FORBIDDEN,
        MEMBER_NOT_FOUND,
        (409, "family.already_owner"),
        (409, "family.dependant_role"),
        (409, "family.member_not_adult"),
    ),
    summary="Hand the family over to an adult member (owner); you become a guardian",
)
async def transfer(family_id: str, body: Transfer, ctx: Circles, s: DbDep) -> FamilyOut:
    fam = await service.transfer(
        s, family_id=family_id, actor_id=ctx.account_id, account_id=body.account_id
    )
    return await family_out(s, fam, ctx.account_id)


# --- members (the "me" routes first: they must win over {account_id}) ---------------------


@router.get(
    "/families/{family_id}/members/me",
    response_model=MemberOut,
    responses=responses(*AUTH, NOT_FOUND),
    summary="Your own membership of the family",
)
async def get_me(family_id: str, ctx: Circles, s: DbDep) -> MemberOut:
    m, acc = await service.member_view(
        s, family_id=family_id, caller_id=ctx.account_id, account_id=ctx.account_id
    )
    return member_out(m, acc)


@router.delete(
    "/families/{family_id}/members/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN, (409, "family.owner_cannot_leave")),
    summary="Leave the family (the owner must hand it over first)",
)
async def leave(family_id: str, ctx: Circles, s: DbDep) -> Response:
    await service.leave(s, family_id=family_id, account_id=ctx.account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


SHARING_ERRORS = (
    (422, "sharing.invalid_pause"),
    (422, "sharing.invalid"),
)


@router.get(
    "/families/{family_id}/members/me/sharing",
    response_model=MemberSharingOut,
    responses=responses(*AUTH, NOT_FOUND),
    summary="What you share with this family",
)
async def get_my_sharing(family_id: str, ctx: Circles, s: DbDep) -> MemberSharingOut:
    m, _ = await service.member_view(
        s, family_id=family_id, caller_id=ctx.account_id, account_id=ctx.account_id
    )
    return member_sharing_out(m)


@router.put(
    "/families/{family_id}/members/me/sharing",
    response_model=MemberSharingOut,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN, *SHARING_ERRORS),
    summary="Choose what you share with this family: location, health summaries, "
    "schedule, or pause everything until a time",
    description="Fields left out keep their value. `location`: live, history (implies "
    "live) or off. `paused_until`: at most 7 days ahead; null ends the pause. "
    "Defaults: live location, health off, schedule on.",
)
async def put_my_sharing(
    family_id: str, body: SharingUpdate, ctx: Circles, s: DbDep
) -> MemberSharingOut:
    m, _ = await service.set_sharing(
        s,
        family_id=family_id,
        actor_id=ctx.account_id,
        account_id=ctx.account_id,
        changes=body.model_dump(include=body.model_fields_set),
    )
    return member_sharing_out(m)


@router.get(
    "/families/{family_id}/members/{account_id}",
    response_model=MemberOut,
    responses=responses(*AUTH, ABOUT, NOT_FOUND, MEMBER_NOT_FOUND),
    summary="One member: role, name, avatar and sharing choices",
)
async def get_member(
    family_id: str,
    account_id: str,
    ctx: Annotated[Allowed, guard("family", "circles", about="account_id")],
    s: DbDep,
) -> MemberOut:
    m, acc = await service.member_view(
        s, family_id=family_id, caller_id=ctx.account_id, account_id=account_id
    )
    return member_out(m, acc)


@router.get(
    "/families/{family_id}/members/{account_id}/sharing",
    response_model=MemberSharingOut,
    responses=responses(*AUTH, ABOUT, NOT_FOUND, MEMBER_NOT_FOUND),
    summary="What this member shares with the family (with you), now",
)
async def get_member_sharing(
    family_id: str,
    account_id: str,
    ctx: Annotated[Allowed, guard("family", "circles", about="account_id")],
    s: DbDep,
) -> MemberSharingOut:
    m, _ = await service.member_view(
        s, family_id=family_id, caller_id=ctx.account_id, account_id=account_id
    )
    return member_sharing_out(m)


@router.put(
    "/families/{family_id}/members/{account_id}/sharing",
    response_model=MemberSharingOut,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN, MEMBER_NOT_FOUND, *SHARING_ERRORS),
    summary="Choose what a dependant shares (the family's owner and guardians)",
    description="Members choose for themselves (`members/me/sharing`); a dependant's "
    "choices are made by the family's owner and guardians.",
)
async def put_member_sharing(
    family_id: str, account_id: str, body: SharingUpdate, ctx: Circles, s: DbDep
) -> MemberSharingOut:
    m, _ = await service.set_sharing(
        s,
        family_id=family_id,
        actor_id=ctx.account_id,
        account_id=account_id,
        changes=body.model_dump(include=body.model_fields_set),
    )
    return member_sharing_out(m)


@router.get(
    "/families/{family_id}/members/{account_id}/avatar",
    response_class=Response,
    responses={
        200: IMAGE_200,
        **responses(*AUTH, ABOUT, NOT_FOUND, MEMBER_NOT_FOUND, (404, "media.not_found")),
    },
    summary="A member's avatar (for the family's members)",
)
async def get_member_avatar(
    family_id: str,
    account_id: str,
    ctx: Annotated[Allowed, guard("family", "circles", about="account_id")],
    s: DbDep,
) -> Response:
    obj = await service.avatar_of(
        s, family_id=family_id, caller_id=ctx.account_id, account_id=account_id
    )
    return _image(obj.data, obj.content_type, obj.sha256)


@router.put(
    "/families/{family_id}/members/{account_id}/role",
    response_model=MemberOut,
    responses=responses(
        *AUTH,
        NOT_FOUND,
        FORBIDDEN,
        MEMBER_NOT_FOUND,
        (409, "family.owner_role"),
        (409, "family.dependant_role"),
        (409, "family.member_not_adult"),
    ),
    summary="Promote a member to guardian or demote a guardian (owner)",
)
async def put_role(
    family_id: str, account_id: str, body: RoleChange, ctx: Circles, s: DbDep
) -> MemberOut:
    m, acc = await service.set_role(
        s, family_id=family_id, actor_id=ctx.account_id, account_id=account_id, role=body.role
    )
    return member_out(m, acc)


@router.delete(
    "/families/{family_id}/members/{account_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(
        *AUTH, NOT_FOUND, FORBIDDEN, MEMBER_NOT_FOUND, (409, "family.owner_cannot_leave")
    ),
    summary="Remove a member (owner); they lose access with their next request",
)
async def remove_member(family_id: str, account_id: str, ctx: Circles, s: DbDep) -> Response:
    await service.remove_member(
        s, family_id=family_id, actor_id=ctx.account_id, account_id=account_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- invitations ---------------------------------------------------------------------------


@router.post(
    "/families/{family_id}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationOut,
    responses=responses(
        *AUTH,
        NOT_FOUND,
        FORBIDDEN,
        (409, "invitation.too_many"),
        (422, "invitation.invalid_limits"),
    ),
    summary="Invite people (owner or guardian): a short code and a QR code",
    description="Lasts `expires_in_days` (1-30, default 7) and `max_uses` joins (1-50, "
    "default 1). The code and QR code stop working when they expire, are used up or "
    "revoked, or when their inviter may no longer invite.",
)
async def create_invitation(
    family_id: str, body: InvitationCreate, ctx: Circles, s: DbDep
) -> InvitationOut:
    inv = await service.create_invitation(
        s,
        family_id=family_id,
        actor_id=ctx.account_id,
        expires_in_days=body.expires_in_days,
        max_uses=body.max_uses,
    )
    return invitation_out(inv, _caller(ctx))


@router.get(
    "/families/{family_id}/invitations",
    response_model=list[InvitationOut],
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN),
    summary="The family's invitations, newest first (owner or guardian)",
)
async def list_invitations(family_id: str, ctx: Circles, s: DbDep) -> list[InvitationOut]:
    rows = await service.list_invitations(s, family_id=family_id, actor_id=ctx.account_id)
    return [invitation_out(i, a) for i, a in rows]


@router.get(
    "/families/{family_id}/invitations/{invitation_id}",
    response_model=InvitationOut,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN, (404, "invitation.not_found")),
    summary="One invitation (owner or guardian)",
)
async def get_invitation(
    family_id: str, invitation_id: str, ctx: Circles, s: DbDep
) -> InvitationOut:
    inv, creator = await service.invitation_of(
        s, family_id=family_id, actor_id=ctx.account_id, invitation_id=invitation_id
    )
    return invitation_out(inv, creator)


@router.delete(
    "/families/{family_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH, NOT_FOUND, FORBIDDEN, (404, "invitation.not_found")),
    summary="Revoke an invitation (owner or guardian); its code and QR code stop at once",
)
async def revoke_invitation(family_id: str, invitation_id: str, ctx: Circles, s: DbDep) -> Response:
    await service.revoke_invitation(
        s, family_id=family_id, actor_id=ctx.account_id, invitation_id=invitation_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


QR_ERRORS = (
    *AUTH,
    NOT_FOUND,
    FORBIDDEN,
    (404, "invitation.not_found"),
    (410, "invitation.expired"),
    (410, "invitation.revoked"),
    (410, "invitation.used_up"),
)


def _qr(inv: FamilyInvitation) -> Any:
    return segno.make(service.invitation_text(inv), error="m", micro=False)


@router.get(
    "/families/{family_id}/invitations/{invitation_id}/qr.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The QR code"},
        **responses(*QR_ERRORS),
    },
    summary="The invitation's QR code as PNG (it encodes kares://join/<token>)",
)
async def invitation_qr_png(family_id: str, invitation_id: str, ctx: Circles, s: DbDep) -> Response:
    inv = await service.active_invitation(
        s, family_id=family_id, actor_id=ctx.account_id, invitation_id=invitation_id
    )
    buf = io.BytesIO()
    _qr(inv).save(buf, kind="png", scale=8, border=4)
    return Response(buf.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/families/{family_id}/invitations/{invitation_id}/qr.svg",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "The QR code"},
        **responses(*QR_ERRORS),
    },
    summary="The invitation's QR code as SVG",
)
async def invitation_qr_svg(family_id: str, invitation_id: str, ctx: Circles, s: DbDep) -> Response:
    inv = await service.active_invitation(
        s, family_id=family_id, actor_id=ctx.account_id, invitation_id=invitation_id
    )
    buf = io.BytesIO()
    _qr(inv).save(buf, kind="svg", scale=8, border=4, title="Kares family invitation")
    return Response(
        buf.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
    )


async def _scanned(request: Request, rt: RuntimeDep, s: DbDep, body: ScannedText) -> None:
    """A scanned code also needs what scanning needs (the Camera permission)."""
    if body.scanned:
        _SCAN.validate(catalog_of(rt))
        await _SCAN(request, rt, s)


@router.post(
    "/invitations/preview",
    response_model=InvitationPreview,
    responses=responses(*AUTH, *CODE_ERRORS),
    summary="What a scanned QR code or typed code leads to, without joining",
    description="`text` is what the camera read (`kares://join/<token>`) or the short "
    "code as typed (dashes and spaces ignored). With `scanned: true` the Camera "
    "permission is needed as well.",
)
async def preview_invitation(
    body: ScannedText, request: Request, ctx: Circles, rt: RuntimeDep, s: DbDep
) -> InvitationPreview:
    await _scanned(request, rt, s, body)
    p = await service.preview(s, account_id=ctx.account_id, text=body.text)
    return InvitationPreview(
        family_id=p.family.id,
        family_name=p.family.name,
        member_count=p.member_count,
        inviter_name=p.inviter_name,
        expires_at=p.expires_at,
        already_member=p.already_member,
    )


@router.post(
    "/invitations/accept",
    status_code=status.HTTP_201_CREATED,
    response_model=Joined,
    responses={
        200: {"model": Joined, "description": "Already a member: nothing changed"},
        **responses(*AUTH, *CODE_ERRORS, (409, "family.full")),
    },
    summary="Join the family (after the user confirmed the preview)",
)
async def accept_invitation(
    body: ScannedText,
    request: Request,
    response: Response,
    ctx: Circles,
    rt: RuntimeDep,
    s: DbDep,
) -> Joined:
    await _scanned(request, rt, s, body)
    fam, joined = await service.accept(s, account_id=ctx.account_id, text=body.text)
    if not joined:
        response.status_code = status.HTTP_200_OK
    return Joined(joined=joined, family=await family_out(s, fam, ctx.account_id))


# --- dependants ----------------------------------------------------------------------------


@router.post(
    "/families/{family_id}/dependants",
    status_code=status.HTTP_201_CREATED,
    response_model=DependantAdded,
    responses={
        200: {"model": DependantAdded, "description": "Already a dependant of this family"},
        **responses(
            *AUTH,
            NOT_FOUND,
            FORBIDDEN,
            (403, "family.adult_required"),
            (404, "dependant.not_found"),
            (409, "dependant.not_eligible"),
            (409, "family.full"),
            (422, "dependant.invalid_name"),
            (422, "account.age_required"),
            (422, "account.invalid_birth_date"),
        ),
    },
    summary="Add a dependant (owner or guardian): a child or an elder whose profile you manage",
    description="With `name` and `birth_date` or `age_bracket`: a new managed profile "
    "with no phone and no sign-in; you become its guardian and accept the policy for "
    "it. With `account_id`: an existing child account whose guardian you are.",
)
async def add_dependant(
    family_id: str,
    body: DependantCreate,
    response: Response,
    ctx: Circles,
    rt: RuntimeDep,
    s: DbDep,
) -> DependantAdded:
    assert ctx.caller is not None
    res = await service.add_dependant(
        s,
        rt,
        family_id=family_id,
        actor=ctx.caller.account,
        session_id=ctx.caller.session.id,
        device_id=ctx.caller.session.device_id,
        name=body.name,
        birth_date=body.birth_date,
        age_bracket=body.age_bracket,
        account_id=body.account_id,
    )
    if not res.added:
        response.status_code = status.HTTP_200_OK
    return DependantAdded(created=res.created_profile, member=member_out(res.member, res.account))
