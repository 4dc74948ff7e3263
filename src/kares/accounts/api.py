"""HTTP routes of the accounts domain: parse, call the service, shape the reply."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.accounts import service
from kares.accounts.models import LoginEvent
from kares.accounts.schemas import (
    AccountOut,
    AppleLink,
    AppleLogin,
    AppleNonce,
    DeviceInfo,
    LoginEventOut,
    PasswordLoginRequest,
    PasswordSet,
    PhoneRequired,
    ProfilePatch,
    RevokedCount,
    SessionOut,
    SignedIn,
    SignInMethod,
    SignInMethods,
    SmsCodeRequest,
    SmsCodeSent,
    SmsVerifyRequest,
    WeChatLink,
    WeChatLogin,
)
from kares.deps import DbDep, RuntimeDep, request_ip
from kares.errors import responses
from kares.gateways import oauth
from kares.identity import service as identity
from kares.identity.auth import AUTH_ERRORS, SEND_CODE_ERRORS, CallerDep
from kares.identity.models import Account, Session
from kares.privacy import service as privacy
from kares.privacy.guard import guard
from kares.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def environment(
    request: Request, rt: Runtime, device: DeviceInfo, client: str
) -> service.Environment:
    """Where a sign-in comes from (policy 1.4): address, user agent, device."""
    return service.Environment(
        ip=request_ip(request, rt),
        user_agent=request.headers.get("user-agent"),
        device=device,
        client=client,
    )


PHONE_ERRORS = ((422, "phone.invalid"), (422, "phone.not_mobile"))
CODE_ERRORS = (
    (400, "otp.not_requested"),
    (400, "otp.invalid"),
    (400, "otp.expired"),
    (400, "otp.used"),
    (422, "otp.malformed"),
    (429, "otp.too_many_attempts"),
)


async def account_out(s: AsyncSession, account: Account) -> AccountOut:
    idents = await service.identities_of(s, account.id)
    minor = privacy.is_minor(account)
    return AccountOut(
        id=account.id,
        phone=account.phone,
        name=account.name,
        age_bracket=privacy.bracket_of(
            account.birth_date, account.age_bracket, clock.utcnow().date()
        ),
        needs_guardian=minor and not await privacy.has_guardian(s, account.id),
        avatar_url=f"/api/v1/media/{account.avatar_media_id}" if account.avatar_media_id else None,
        has_password=account.password_hash is not None,
        identities=[i.provider for i in idents],
        created_at=account.created_at,
    )


async def signed_in(
    s: AsyncSession, rt: Runtime, response: Response, res: service.SignInResult
) -> SignedIn:
    token: str | None = res.token
    if res.session.kind == "cookie":
        response.set_cookie(
            rt.settings.session_cookie_name,
            res.token,
            max_age=rt.settings.session_ttl_days * 86400,
            path="/",
            secure=rt.settings.session_cookie_secure,
            httponly=True,
            samesite="lax",
        )
        token = None
    return SignedIn(
        account=await account_out(s, res.account),
        created=res.created,
        new_device=res.new_device,
        session_id=res.session.id,
        device_id=res.session.device_id or "",
        token=token,
        expires_at=res.session.expires_at,
    )


def session_out(x: Session, current_id: str) -> SessionOut:
    return SessionOut(
        id=x.id,
        device_id=x.device_id,
        current=x.id == current_id,
        kind=x.kind,
        method=x.method,
        label=x.label,
        device_model=x.device_model,
        os=x.os,
        os_version=x.os_version,
        app_version=x.app_version,
        language=x.language,
        ip=x.ip,
        place=x.place,
        created_at=x.created_at,
        last_seen_at=x.last_seen_at,
    )


def login_out(e: LoginEvent) -> LoginEventOut:
    return LoginEventOut(
        id=e.id,
        method=e.method,
        success=e.success,
        reason=e.reason,
        new_device=e.new_device,
        device_model=e.device_model,
        os=e.os,
        app_version=e.app_version,
        ip=e.ip,
        place=e.place,
        occurred_at=e.occurred_at,
    )


# --- sign-in -------------------------------------------------------------------


@router.post(
    "/auth/sms/send",
    dependencies=[guard("account", "sign_in")],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SmsCodeSent,
    responses=responses(
        *PHONE_ERRORS,
        *SEND_CODE_ERRORS,
    ),
    summary="Send a one-time sign-in code by SMS",
)
async def send_code(
    body: SmsCodeRequest, request: Request, rt: RuntimeDep, s: DbDep
) -> SmsCodeSent:
    sent = await identity.request_code(
        s, rt, phone=body.phone, purpose="login", ip=request_ip(request, rt)
    )
    return SmsCodeSent(phone=sent.phone, expires_in=sent.expires_in, resend_after=sent.resend_after)


@router.post(
    "/auth/sms/verify",
    dependencies=[guard("account", "sign_in")],
    response_model=SignedIn,
    responses=responses(
        *PHONE_ERRORS,
        *CODE_ERRORS,
        (400, "oauth.ticket_invalid"),
        (400, "oauth.ticket_used"),
        (400, "oauth.ticket_expired"),
        (403, "account.inactive"),
        (409, "identity.taken"),
        (409, "identity.already_linked"),
        (400, "consent.policy_required"),
        (422, "account.age_required"),
        (422, "account.invalid_birth_date"),
    ),
    summary="Register or sign in with the SMS code",
    description="Creates the account on first use of a number. With `client=web` the "
    "session is set as an HttpOnly cookie and no token is returned.",
)
async def verify_code(
    body: SmsVerifyRequest, request: Request, response: Response, rt: RuntimeDep, s: DbDep
) -> SignedIn:
    res = await service.sign_in_with_code(
        s,
        rt,
        phone=body.phone,
        code=body.code,
        env=environment(request, rt, body.device, body.client),
        link_ticket=body.link_ticket,
        registration=service.Registration(
            accept_policy=body.accept_policy,
            birth_date=body.birth_date,
            age_bracket=body.age_bracket,
        ),
    )
    if res.created:
        response.status_code = status.HTTP_201_CREATED
    return await signed_in(s, rt, response, res)


@router.post(
    "/auth/password",
    dependencies=[guard("account", "sign_in")],
    response_model=SignedIn,
    responses=responses(
        *PHONE_ERRORS,
        (401, "auth.invalid_credentials"),
        (403, "account.inactive"),
        (423, "auth.locked"),
        (429, "auth.number_limit"),
        (429, "auth.ip_limit"),
    ),
    summary="Sign in with phone number and password",
)
async def password_login(
    body: PasswordLoginRequest, request: Request, response: Response, rt: RuntimeDep, s: DbDep
) -> SignedIn:
    res = await service.sign_in_with_password(
        s,
        rt,
        phone=body.phone,
        password=body.password,
        env=environment(request, rt, body.device, body.client),
    )
    return await signed_in(s, rt, response, res)


OAUTH_ERRORS = (
    (400, "oauth.invalid_code"),
    (403, "account.inactive"),
    (404, "oauth.provider_not_configured"),
    (502, "oauth.provider_unavailable"),
)
WECHAT_ERRORS = (*OAUTH_ERRORS, (502, "oauth.provider_misconfigured"))


@router.get(
    "/auth/methods",
    dependencies=[guard("account", "sign_in")],
    response_model=SignInMethods,
    responses=responses(),
    summary="The ways to sign in that this server offers",
    description="SMS code and password always; WeChat and Sign in with Apple only where the "
    "server is set up for them (their routes answer 404 `oauth.provider_not_configured` "
    "otherwise). Apps show only the buttons listed here.",
)
async def sign_in_methods(rt: RuntimeDep) -> SignInMethods:
    on = oauth.configured(rt.settings)
    methods = [
        SignInMethod(method="sms", path="/api/v1/auth/sms/send"),
        SignInMethod(method="password", path="/api/v1/auth/password"),
    ]
    if on["wechat"]:
        methods.append(
            SignInMethod(
                method="wechat", path="/api/v1/auth/wechat", app_id=rt.settings.wechat_app_id
            )
        )
    if on["apple"]:
        methods.append(
            SignInMethod(
                method="apple",
                path="/api/v1/auth/apple",
                nonce_path="/api/v1/auth/apple/nonce",
                client_ids=list(rt.settings.apple_client_ids),
            )
        )
    return SignInMethods(methods=methods)


async def _identity_sign_in(
    s: AsyncSession,
    rt: Runtime,
    response: Response,
    profile: oauth.ExternalProfile,
    env: service.Environment,
) -> SignedIn | PhoneRequired:
    res = await service.sign_in_with_identity(s, rt, profile=profile, env=env)
    if isinstance(res, service.SignInResult):
        return await signed_in(s, rt, response, res)
    ticket, ttl, prof = res
    return PhoneRequired(
        provider=prof.provider, link_ticket=ticket, expires_in=ttl, nickname=prof.nickname
    )


@router.post(
    "/auth/wechat",
    dependencies=[guard("account", "sign_in")],
    response_model=SignedIn | PhoneRequired,
    responses=responses(*WECHAT_ERRORS),
    summary="Sign in with WeChat (OAuth2 authorization code)",
    description="A linked WeChat account signs in. An unknown one answers `phone_required` "
    "with a `link_ticket`: verify a phone number with it to link the two.",
)
async def wechat_login(
    body: WeChatLogin, request: Request, response: Response, rt: RuntimeDep, s: DbDep
) -> SignedIn | PhoneRequired:
    profile = await oauth.wechat_exchange(rt.settings, rt.http, body.code)
    env = environment(request, rt, body.device, body.client)
    return await _identity_sign_in(s, rt, response, profile, env)


@router.post(
    "/auth/apple/nonce",
    dependencies=[guard("account", "sign_in")],
    response_model=AppleNonce,
    responses=responses((404, "oauth.provider_not_configured"), (429, "oauth.nonce_limit")),
    summary="Get a single-use nonce for Sign in with Apple",
)
async def apple_nonce(request: Request, rt: RuntimeDep, s: DbDep) -> AppleNonce:
    oauth.require_configured(rt.settings, "apple")
    nonce, ttl = await service.issue_nonce(s, rt, provider="apple", ip=request_ip(request, rt))
    return AppleNonce(nonce=nonce, expires_in=ttl)


async def _apple_profile(
    s: AsyncSession, rt: Runtime, id_token: str, nonce: str
) -> oauth.ExternalProfile:
    oauth.require_configured(rt.settings, "apple")
    ticket = await service.check_nonce(s, nonce, "apple")
    profile = await oauth.apple_verify(rt.settings, rt.http, rt.apple_keys, id_token, nonce)
    await service.use_nonce(s, ticket)
    return profile


@router.post(
    "/auth/apple",
    dependencies=[guard("account", "sign_in")],
    response_model=SignedIn | PhoneRequired,
    responses=responses(
        *OAUTH_ERRORS,
        (400, "oauth.ticket_invalid"),
        (400, "oauth.ticket_used"),
        (400, "oauth.ticket_expired"),
        (401, "oauth.invalid_token"),
    ),
    summary="Sign in with Apple (verified ID token)",
    description="The ID token must be signed by a key in Apple's JWKS, issued by Apple for "
    "one of our client ids, unexpired, and carry the nonce from /auth/apple/nonce.",
)
async def apple_login(
    body: AppleLogin, request: Request, response: Response, rt: RuntimeDep, s: DbDep
) -> SignedIn | PhoneRequired:
    profile = await _apple_profile(s, rt, body.id_token, body.nonce)
    if body.name is not None:
        full = " ".join(p for p in (body.name.given_name, body.name.family_name) if p)
        if full:
            profile = oauth.ExternalProfile(profile.provider, profile.subject, full[:64])
    env = environment(request, rt, body.device, body.client)
    return await _identity_sign_in(s, rt, response, profile, env)


@router.post(
    "/auth/logout",
    dependencies=[guard("account_security", "sign_out")],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH_ERRORS),
    summary="Sign out this session",
)
async def logout(caller: CallerDep, rt: RuntimeDep, s: DbDep, response: Response) -> Response:
    await service.revoke_session(s, account_id=caller.account.id, session_id=caller.session.id)
    out = Response(status_code=status.HTTP_204_NO_CONTENT)
    out.delete_cookie(
        rt.settings.session_cookie_name,
        path="/",
        secure=rt.settings.session_cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return out


# --- the caller's own account -------------------------------------------------------


@router.get(
    "/me",
    dependencies=[guard("account", "profile")],
    response_model=AccountOut,
    responses=responses(*AUTH_ERRORS),
    summary="The signed-in account",
)
async def me(caller: CallerDep, s: DbDep) -> AccountOut:
    return await account_out(s, caller.account)


@router.patch(
    "/me",
    dependencies=[guard("account", "profile")],
    response_model=AccountOut,
    responses=responses(
        *AUTH_ERRORS,
        (422, "profile.invalid_name"),
        (422, "account.invalid_birth_date"),
        (422, "account.age_change_refused"),
        (403, "guardian.consent_required"),
    ),
    summary="Change the account name",
)
async def patch_me(body: ProfilePatch, caller: CallerDep, s: DbDep) -> AccountOut:
    account = await service.update_profile(
        s, caller.account, name=body.name, birth_date=body.birth_date, age_bracket=body.age_bracket
    )
    return await account_out(s, account)


@router.put(
    "/me/avatar",
    dependencies=[guard("account", "avatar_upload")],
    response_model=AccountOut,
    responses=responses(
        *AUTH_ERRORS,
        (413, "media.too_large"),
        (413, "request.too_large"),
        (415, "media.unsupported_type"),
        (422, "media.empty"),
        (422, "media.too_many_pixels"),
    ),
    summary="Upload an avatar (JPEG, PNG, WebP or GIF)",
    description="The image is re-encoded and all its metadata (EXIF, GPS, XMP, ICC) dropped; "
    "the original bytes are not kept.",
)
async def put_avatar(
    file: Annotated[UploadFile, File(description="The image")],
    caller: CallerDep,
    rt: RuntimeDep,
    s: DbDep,
) -> AccountOut:
    raw = await file.read(rt.settings.image_max_bytes + 1)
    account = await service.set_avatar(s, rt, caller.account, raw)
    return await account_out(s, account)


@router.delete(
    "/me/avatar",
    dependencies=[guard("account", "profile")],
    response_model=AccountOut,
    responses=responses(*AUTH_ERRORS),
    summary="Remove the avatar",
)
async def delete_avatar(caller: CallerDep, s: DbDep) -> AccountOut:
    account = await service.remove_avatar(s, caller.account)
    return await account_out(s, account)


@router.post(
    "/me/password/code",
    dependencies=[guard("account", "profile")],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SmsCodeSent,
    responses=responses(
        *AUTH_ERRORS,
        *SEND_CODE_ERRORS,
    ),
    summary="Send a code to the account's phone, to change the password without the old one",
)
async def password_code(
    request: Request, caller: CallerDep, rt: RuntimeDep, s: DbDep
) -> SmsCodeSent:
    sent = await service.request_reauth_code(s, rt, caller.account, request_ip(request, rt))
    return SmsCodeSent(phone=sent.phone, expires_in=sent.expires_in, resend_after=sent.resend_after)


@router.put(
    "/me/password",
    dependencies=[guard("account", "profile")],
    response_model=RevokedCount,
    responses=responses(
        *AUTH_ERRORS, *CODE_ERRORS, (403, "auth.reauth_required"), (422, "password.too_weak")
    ),
    summary="Set or change the password; signs out every other session",
)
async def put_password(
    body: PasswordSet, caller: CallerDep, rt: RuntimeDep, s: DbDep
) -> RevokedCount:
    n = await service.set_password(
        s,
        rt,
        caller.account,
        caller.session.id,
        new_password=body.new_password,
        current_password=body.current_password,
        code=body.code,
    )
    return RevokedCount(revoked=n)


@router.get(
    "/me/sessions",
    dependencies=[guard("account_security", "sessions")],
    response_model=list[SessionOut],
    responses=responses(*AUTH_ERRORS),
    summary="Signed-in devices",
)
async def sessions(caller: CallerDep, s: DbDep) -> list[SessionOut]:
    rows = await identity.list_sessions(s, account_id=caller.account.id)
    return [session_out(x, caller.session.id) for x in rows]


@router.delete(
    "/me/sessions/{session_id}",
    dependencies=[guard("account_security", "sessions")],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*AUTH_ERRORS, (404, "session.not_found")),
    summary="Sign out one device",
)
async def revoke_one(session_id: str, caller: CallerDep, s: DbDep) -> Response:
    await service.revoke_session(s, account_id=caller.account.id, session_id=session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/me/sessions",
    dependencies=[guard("account_security", "sessions")],
    response_model=RevokedCount,
    responses=responses(*AUTH_ERRORS),
    summary="Sign out every device (all but this one unless include_current=true)",
)
async def revoke_all(
    caller: CallerDep, s: DbDep, include_current: Annotated[bool, Query()] = False
) -> RevokedCount:
    keep = None if include_current else caller.session.id
    n = await service.revoke_all_sessions(s, account_id=caller.account.id, keep_session_id=keep)
    return RevokedCount(revoked=n)


@router.get(
    "/me/logins",
    dependencies=[guard("account_security", "sessions")],
    response_model=list[LoginEventOut],
    responses=responses(*AUTH_ERRORS),
    summary="Recent sign-ins and failed attempts, with their login environment",
)
async def logins(
    caller: CallerDep, s: DbDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[LoginEventOut]:
    rows = await service.list_logins(s, account_id=caller.account.id, limit=limit)
    return [login_out(e) for e in rows]


LINK_ERRORS = (
    *AUTH_ERRORS,
    *OAUTH_ERRORS,
    (409, "identity.taken"),
    (409, "identity.already_linked"),
)


@router.post(
    "/me/identities/wechat",
    dependencies=[guard("account", "profile")],
    response_model=AccountOut,
    responses=responses(*LINK_ERRORS, (502, "oauth.provider_misconfigured")),
    summary="Link a WeChat account",
)
async def link_wechat(body: WeChatLink, caller: CallerDep, rt: RuntimeDep, s: DbDep) -> AccountOut:
    profile = await oauth.wechat_exchange(rt.settings, rt.http, body.code)
    await service.link_identity(s, rt, caller.account, profile)
    return await account_out(s, caller.account)


@router.post(
    "/me/identities/apple",
    dependencies=[guard("account", "profile")],
    response_model=AccountOut,
    responses=responses(
        *LINK_ERRORS,
        (400, "oauth.ticket_invalid"),
        (400, "oauth.ticket_used"),
        (400, "oauth.ticket_expired"),
        (401, "oauth.invalid_token"),
    ),
    summary="Link an Apple ID",
)
async def link_apple(body: AppleLink, caller: CallerDep, rt: RuntimeDep, s: DbDep) -> AccountOut:
    profile = await _apple_profile(s, rt, body.id_token, body.nonce)
    await service.link_identity(s, rt, caller.account, profile)
    return await account_out(s, caller.account)


@router.delete(
    "/me/identities/{provider}",
    dependencies=[guard("account", "profile")],
    response_model=AccountOut,
    responses=responses(*AUTH_ERRORS, (404, "identity.not_linked")),
    summary="Unlink a third-party account",
)
async def unlink(provider: Literal["wechat", "apple"], caller: CallerDep, s: DbDep) -> AccountOut:
    await service.unlink_identity(s, caller.account, provider)
    return await account_out(s, caller.account)
