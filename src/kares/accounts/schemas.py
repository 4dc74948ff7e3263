"""Request and response shapes of the accounts API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kares.fields import CONTROLS, Day, name_rule


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DeviceInfo(_In):
    """What the client says about the device it runs on (policy 1.4).

    ``id`` is the app's per-install identifier (IDFV on iOS, OAID on
    Android); it is only ever stored hashed.
    """

    id: str | None = Field(default=None, min_length=1, max_length=128)
    model: str | None = Field(default=None, max_length=64, examples=["iPhone15,2"])
    os: str | None = Field(default=None, max_length=32, examples=["iOS"])
    os_version: str | None = Field(default=None, max_length=32, examples=["18.1"])
    app_version: str | None = Field(default=None, max_length=32, examples=["1.0.0"])
    language: str | None = Field(default=None, max_length=35, examples=["zh-CN"])


ClientKind = Literal["app", "web"]


class SmsCodeRequest(_In):
    phone: str = Field(min_length=1, max_length=32, examples=["+86 138 0013 8000"])


class SmsCodeSent(BaseModel):
    phone: str = Field(description="The number, masked", examples=["+86 138****8000"])
    expires_in: int = Field(description="Seconds until the code expires")
    resend_after: int = Field(description="Seconds until another code may be requested")


AgeBracket = Literal["under_14", "14_to_17", "adult"]


class SmsVerifyRequest(_In):
    phone: str = Field(min_length=1, max_length=32)
    code: str = Field(min_length=1, max_length=16)
    accept_policy: str | None = Field(
        default=None,
        max_length=32,
        description="Registering: the policy version the user accepted (GET "
        "/api/v1/privacy/policy). Ignored when the number already has an account.",
    )
    birth_date: Day | None = Field(
        default=None, description="Registering: birth date, or give age_bracket instead"
    )
    age_bracket: AgeBracket | None = None
    client: ClientKind = "app"
    device: DeviceInfo = Field(default_factory=DeviceInfo)
    link_ticket: str | None = Field(
        default=None,
        max_length=128,
        description="From a third-party sign-in that answered `phone_required`: "
        "links that WeChat/Apple identity to this phone's account.",
    )


class PasswordLoginRequest(_In):
    phone: str = Field(min_length=1, max_length=32)
    password: str = Field(min_length=1, max_length=1024)
    client: ClientKind = "app"
    device: DeviceInfo = Field(default_factory=DeviceInfo)


class AccountOut(BaseModel):
    id: str
    phone: str | None = Field(
        description="E.164; shown only to the account itself; null for a managed profile"
    )
    name: str | None
    age_bracket: str | None = Field(description="under_14, 14_to_17, adult, or null if unknown")
    needs_guardian: bool = Field(
        description="A child under 14 whose guardian has not consented yet"
    )
    avatar_url: str | None
    has_password: bool
    identities: list[str] = Field(description="Linked third-party providers")
    created_at: datetime


class SignedIn(BaseModel):
    account: AccountOut
    created: bool = Field(description="True when this sign-in registered a new account")
    new_device: bool
    session_id: str
    device_id: str = Field(description="This device, for PUT /api/v1/devices/{id}/permissions")
    token: str | None = Field(
        description="Bearer token (apps and devices); null for the web portal, "
        "which gets an HttpOnly cookie instead"
    )
    expires_at: datetime


class SignInMethod(BaseModel):
    method: Literal["sms", "password", "wechat", "apple"]
    path: str = Field(description="The route that signs in this way")
    nonce_path: str | None = Field(
        default=None, description="Apple: where to get the nonce the ID token must carry"
    )
    app_id: str | None = Field(default=None, description="WeChat: the app id to authorise with")
    client_ids: list[str] | None = Field(
        default=None, description="Apple: the client ids (services ids) tokens may be issued to"
    )


class SignInMethods(BaseModel):
    methods: list[SignInMethod]


class PhoneRequired(BaseModel):
    status: Literal["phone_required"] = "phone_required"
    provider: str
    link_ticket: str = Field(
        description="Pass to POST /api/v1/auth/sms/verify with the phone's code"
    )
    expires_in: int
    nickname: str | None


class ProfilePatch(_In):
    name: str | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=name_rule(64, CONTROLS)
    )
    birth_date: Day | None = None
    age_bracket: AgeBracket | None = None


class PasswordSet(_In):
    new_password: str = Field(min_length=1, max_length=1024)
    current_password: str | None = Field(default=None, max_length=1024)
    code: str | None = Field(
        default=None, max_length=16, description="SMS code, instead of the current password"
    )


class SessionOut(BaseModel):
    id: str
    device_id: str | None
    current: bool
    kind: str
    method: str
    label: str | None
    device_model: str | None
    os: str | None
    os_version: str | None
    app_version: str | None
    language: str | None
    ip: str
    place: str | None
    created_at: datetime
    last_seen_at: datetime


class LoginEventOut(BaseModel):
    id: str
    method: str
    success: bool
    reason: str | None
    new_device: bool
    device_model: str | None
    os: str | None
    app_version: str | None
    ip: str
    place: str | None
    occurred_at: datetime


class RevokedCount(BaseModel):
    revoked: int


class WeChatLogin(_In):
    code: str = Field(min_length=1, max_length=256)
    client: ClientKind = "app"
    device: DeviceInfo = Field(default_factory=DeviceInfo)


class AppleNonce(BaseModel):
    nonce: str
    expires_in: int


class AppleName(_In):
    given_name: str | None = Field(default=None, max_length=64, alias="givenName")
    family_name: str | None = Field(default=None, max_length=64, alias="familyName")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)


class AppleLogin(_In):
    id_token: str = Field(min_length=1, max_length=8192)
    nonce: str = Field(min_length=1, max_length=128)
    name: AppleName | None = Field(
        default=None,
        description="The name Apple handed the app on the first authorisation, if the "
        "user chose to share it",
    )
    client: ClientKind = "app"
    device: DeviceInfo = Field(default_factory=DeviceInfo)


class WeChatLink(_In):
    code: str = Field(min_length=1, max_length=256)


class AppleLink(_In):
    id_token: str = Field(min_length=1, max_length=8192)
    nonce: str = Field(min_length=1, max_length=128)
