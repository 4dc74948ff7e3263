"""Third-party sign-in (WeChat OAuth2, Sign in with Apple) through the public API.

Nothing in Kares is mocked: its real HTTP client talks to fake WeChat and
Apple servers on loopback (tests/support/providers.py). Every refusal is
checked for its status, its problem ``code``, and for leaving stored data
exactly as it was.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import text

from kares import clock
from tests.conftest import PHONE, REGISTRATION, bearer, count_rows, sign_up, snapshot
from tests.support.fakes import FakeServer, FakeSmsGateway
from tests.support.providers import (
    FakeAppleID,
    FakeWeChat,
    hashed_nonce,
    make_image,
    tamper_payload,
)

PHONE_B = "+8613900001111"
PHONE_C = "+8615800002222"
DEAD = "<dead>"  # in a settings parameter: replaced by the URL of a port nobody listens on
NONCE_TTL = 600


# --- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="session")
def wechat_server() -> Iterator[FakeWeChat]:
    srv = FakeWeChat()
    yield srv
    srv.close()


@pytest.fixture(scope="session")
def apple_server() -> Iterator[FakeAppleID]:
    # Tokens are minted against the service clock, so tests can move time.
    srv = FakeAppleID(now=lambda: clock.utcnow().timestamp())
    yield srv
    srv.close()


@pytest.fixture
def wechat(wechat_server: FakeWeChat) -> FakeWeChat:
    wechat_server.reset()
    return wechat_server


@pytest.fixture
def apple(apple_server: FakeAppleID) -> FakeAppleID:
    apple_server.reset()
    return apple_server


@pytest.fixture(scope="session")
def dead_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
def settings_overrides(
    request: pytest.FixtureRequest, wechat: FakeWeChat, apple: FakeAppleID, dead_url: str
) -> dict[str, Any]:
    """Point Kares at the fakes; a test may change more with indirect parametrization."""
    over: dict[str, Any] = dict(
        wechat_app_id=wechat.app_id,
        wechat_app_secret=wechat.app_secret,
        wechat_api_base=wechat.base,
        wechat_avatar_hosts=[f"127.0.0.1:{wechat.port}"],
        wechat_avatar_scheme="http",
        apple_client_ids=[apple.client_id],
        apple_jwks_url=apple.jwks_url,
        apple_issuer=apple.ISSUER,
        oauth_nonce_ttl_seconds=NONCE_TTL,
    )
    for key, value in getattr(request, "param", {}).items():
        over[key] = value.replace(DEAD, dead_url) if isinstance(value, str) else value
    return over


@pytest.fixture
def other_host() -> Iterator[FakeServer]:
    """Some other web server on loopback (not an allowed avatar host)."""
    srv = FakeServer()
    srv.route(
        "GET", "/avatar.png", lambda _r: (200, {"Content-Type": "image/png"}, make_image("PNG"))
    )
    yield srv
    srv.close()


# --- helpers ---------------------------------------------------------------------


def expect_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["detail"]
    return dict(body)


def expect_phone_required(r: httpx.Response, provider: str) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "phone_required", body
    assert body["provider"] == provider
    assert isinstance(body["link_ticket"], str) and len(body["link_ticket"]) >= 20
    assert body["expires_in"] == NONCE_TTL
    assert "token" not in body and "account" not in body
    return dict(body)


def expect_signed_in(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert "status" not in body, body
    assert body["token"].startswith("kares_")
    assert body["created"] is False
    return dict(body)


async def wechat_login(client: httpx.AsyncClient, code: str) -> httpx.Response:
    return await client.post("/api/v1/auth/wechat", json={"code": code})


async def get_nonce(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/v1/auth/apple/nonce")
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] == NONCE_TTL
    return str(r.json()["nonce"])


async def apple_login(
    client: httpx.AsyncClient, id_token: str, nonce: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/apple", json={"id_token": id_token, "nonce": nonce, **extra}
    )


async def send_code(client: httpx.AsyncClient, sms: FakeSmsGateway, phone: str) -> str:
    r = await client.post("/api/v1/auth/sms/send", json={"phone": phone})
    assert r.status_code == 202, r.text
    return sms.last_code(phone)


async def verify(
    client: httpx.AsyncClient, phone: str, code: str, link_ticket: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"phone": phone, "code": code, **REGISTRATION}
    if link_ticket is not None:
        body["link_ticket"] = link_ticket
    return await client.post("/api/v1/auth/sms/verify", json=body)


async def me(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    r = await client.get("/api/v1/me", headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wechat_ticket(
    client: httpx.AsyncClient, wechat: FakeWeChat, openid: str, **kw: Any
) -> str:
    r = await wechat_login(client, wechat.add_code(openid, **kw))
    return str(expect_phone_required(r, "wechat")["link_ticket"])


async def apple_ticket(client: httpx.AsyncClient, apple: FakeAppleID, sub: str) -> str:
    nonce = await get_nonce(client)
    r = await apple_login(client, apple.id_token(sub, nonce), nonce)
    return str(expect_phone_required(r, "apple")["link_ticket"])


async def linked_via_wechat(
    client: httpx.AsyncClient,
    sms: FakeSmsGateway,
    wechat: FakeWeChat,
    openid: str,
    phone: str = PHONE,
    **kw: Any,
) -> dict[str, Any]:
    """A WeChat sign-in that asked for a phone, completed by the SMS code."""
    ticket = await wechat_ticket(client, wechat, openid, **kw)
    return await sign_up(client, sms, phone, link_ticket=ticket)


async def fetch_image(client: httpx.AsyncClient, token: str, url: str) -> Image.Image:
    r = await client.get(url, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] in ("image/jpeg", "image/png")
    img = Image.open(io.BytesIO(r.content))
    img.load()
    return img


# --- WeChat: sign-in and linking by phone -----------------------------------------


async def test_wechat_unknown_identity_links_by_phone_then_signs_in_directly(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    code = wechat.add_code("o_openid_1", unionid="u_union_1", nickname="李阿姨")
    r = await wechat_login(client, code)
    pr = expect_phone_required(r, "wechat")
    assert pr["nickname"] == "李阿姨"
    assert await count_rows(db, "accounts") == 0
    assert await count_rows(db, "external_identities") == 0

    # Kares exchanged the code with the app's credentials, then read the profile.
    [tok] = wechat.calls(wechat.TOKEN_PATH)
    assert tok.q("appid") == wechat.app_id
    assert tok.q("secret") == wechat.app_secret
    assert tok.q("grant_type") == "authorization_code"
    assert tok.q("code") == code
    [info] = wechat.calls(wechat.USERINFO_PATH)
    assert info.q("openid") == "o_openid_1"
    assert wechat.calls(wechat.avatar_path("o_openid_1")) == []  # not before linking

    signed = await sign_up(client, sms, PHONE, link_ticket=pr["link_ticket"])
    assert signed["created"] is True
    account = signed["account"]
    assert account["identities"] == ["wechat"]
    assert account["name"] == "李阿姨"
    assert account["avatar_url"]
    assert len(wechat.calls(wechat.avatar_path("o_openid_1"))) == 1
    img = await fetch_image(client, signed["token"], account["avatar_url"])
    assert img.size == (48, 32)

    # Next time the same WeChat user signs straight in, with no phone step.
    r = await wechat_login(client, wechat.add_code("o_openid_1", unionid="u_union_1"))
    again = expect_signed_in(r)
    assert again["account"]["id"] == account["id"]
    assert (await me(client, again["token"]))["identities"] == ["wechat"]
    assert await count_rows(db, "accounts") == 1

    # The union id is the identity: another app of the same developer (another
    # openid, same unionid) is the same WeChat user.
    r = await wechat_login(client, wechat.add_code("o_other_app", unionid="u_union_1"))
    assert expect_signed_in(r)["account"]["id"] == account["id"]


async def test_wechat_profile_does_not_overwrite_existing_name_or_avatar(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat
) -> None:
    first = await sign_up(client, sms, PHONE)
    token = first["token"]
    r = await client.patch("/api/v1/me", json={"name": "Wang Fang"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    r = await client.put(
        "/api/v1/me/avatar",
        files={"file": ("me.jpg", make_image("JPEG", (20, 20)), "image/jpeg")},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    avatar_url = r.json()["avatar_url"]

    signed = await linked_via_wechat(client, sms, wechat, "o_has_name", nickname="微信昵称")
    assert signed["created"] is False
    assert signed["account"]["id"] == first["account"]["id"]
    assert signed["account"]["identities"] == ["wechat"]
    assert signed["account"]["name"] == "Wang Fang"
    assert signed["account"]["avatar_url"] == avatar_url
    assert wechat.calls(wechat.avatar_path("o_has_name")) == []
    assert (await fetch_image(client, token, avatar_url)).size == (20, 20)


async def test_wechat_fills_only_the_empty_fields(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat
) -> None:
    first = await sign_up(client, sms, PHONE)
    r = await client.patch("/api/v1/me", json={"name": "Wang Fang"}, headers=bearer(first["token"]))
    assert r.status_code == 200, r.text
    signed = await linked_via_wechat(client, sms, wechat, "o_no_avatar", nickname="微信昵称")
    assert signed["account"]["name"] == "Wang Fang"
    assert signed["account"]["avatar_url"]  # there was none: WeChat's is taken
    await fetch_image(client, signed["token"], signed["account"]["avatar_url"])


async def test_wechat_base_scope_imports_nothing_and_skips_userinfo(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat
) -> None:
    code = wechat.add_code("o_base_only", scope="snsapi_base", nickname="不该出现")
    pr = expect_phone_required(await wechat_login(client, code), "wechat")
    assert pr["nickname"] is None
    signed = await sign_up(client, sms, PHONE, link_ticket=pr["link_ticket"])
    account = signed["account"]
    assert account["identities"] == ["wechat"]
    assert account["name"] is None
    assert account["avatar_url"] is None
    assert wechat.calls(wechat.USERINFO_PATH) == []
    assert wechat.calls(wechat.avatar_path("o_base_only")) == []

    # Without a union id the openid is the identity.
    r = await wechat_login(client, wechat.add_code("o_base_only", scope="snsapi_base"))
    assert expect_signed_in(r)["account"]["id"] == account["id"]
    assert wechat.calls(wechat.USERINFO_PATH) == []


# --- WeChat: refusals -------------------------------------------------------------------


async def test_wechat_unknown_code_is_refused(
    client: httpx.AsyncClient, wechat: FakeWeChat, db: Any
) -> None:
    before = await snapshot(db)
    expect_problem(await wechat_login(client, "no-such-code"), 400, "oauth.invalid_code")
    assert await snapshot(db) == before


async def test_wechat_code_is_single_use(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    code = wechat.add_code("o_once")
    expect_phone_required(await wechat_login(client, code), "wechat")
    before = await snapshot(db)
    expect_problem(await wechat_login(client, code), 400, "oauth.invalid_code")
    assert await snapshot(db) == before

    # Also once the identity is linked: a replayed code does not sign in.
    await linked_via_wechat(client, sms, wechat, "o_once")
    code = wechat.add_code("o_once")
    expect_signed_in(await wechat_login(client, code))
    before = await snapshot(db)
    expect_problem(await wechat_login(client, code), 400, "oauth.invalid_code")
    assert await snapshot(db) == before


@pytest.mark.parametrize("failure", ["token_500", "token_503", "userinfo_500", "not_json"])
async def test_wechat_server_failure_is_provider_unavailable(
    client: httpx.AsyncClient, wechat: FakeWeChat, db: Any, failure: str
) -> None:
    if failure == "not_json":
        wechat.garbage = True
    elif failure.startswith("token_"):
        wechat.fail_on[wechat.TOKEN_PATH] = int(failure[-3:])
    else:
        wechat.fail_on[wechat.USERINFO_PATH] = 500
    before = await snapshot(db)
    expect_problem(
        await wechat_login(client, wechat.add_code("o_down")), 502, "oauth.provider_unavailable"
    )
    assert await snapshot(db) == before


@pytest.mark.parametrize("settings_overrides", [{"wechat_api_base": DEAD}], indirect=True)
async def test_wechat_unreachable_is_provider_unavailable(
    client: httpx.AsyncClient, wechat: FakeWeChat, db: Any
) -> None:
    before = await snapshot(db)
    expect_problem(
        await wechat_login(client, wechat.add_code("o_x")), 502, "oauth.provider_unavailable"
    )
    assert await snapshot(db) == before
    assert wechat.requests == []


@pytest.mark.parametrize(
    "settings_overrides",
    [{"wechat_app_id": ""}, {"wechat_app_secret": ""}],
    indirect=True,
    ids=["no_app_id", "no_secret"],
)
async def test_wechat_not_configured(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    code = wechat.add_code("o_x")
    before = await snapshot(db)
    expect_problem(await wechat_login(client, code), 404, "oauth.provider_not_configured")
    assert await snapshot(db) == before
    signed = await sign_up(client, sms, PHONE)
    await me(client, signed["token"])
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/me/identities/wechat", json={"code": code}, headers=bearer(signed["token"])
    )
    expect_problem(r, 404, "oauth.provider_not_configured")
    assert await snapshot(db) == before
    assert wechat.requests == []
    r = await client.get("/api/v1/auth/methods")
    assert r.status_code == 200
    assert [m["method"] for m in r.json()["methods"]] == ["sms", "password", "apple"]


@pytest.mark.parametrize("where", ["other_port", "other_name", "other_scheme"])
async def test_wechat_avatar_from_unlisted_host_is_not_fetched(
    client: httpx.AsyncClient,
    sms: FakeSmsGateway,
    wechat: FakeWeChat,
    other_host: FakeServer,
    where: str,
) -> None:
    path = "/mmopen/elsewhere/132"
    wechat.serve_image(path, make_image("PNG"))
    url = {
        "other_port": other_host.base + "/avatar.png",
        "other_name": f"http://localhost:{wechat.port}{path}",
        "other_scheme": f"https://127.0.0.1:{wechat.port}{path}",
    }[where]
    signed = await linked_via_wechat(
        client, sms, wechat, "o_elsewhere", nickname="Li", headimgurl=url
    )
    assert signed["account"]["identities"] == ["wechat"]
    assert signed["account"]["name"] == "Li"
    assert signed["account"]["avatar_url"] is None
    assert other_host.requests == []
    assert wechat.calls(path) == []


async def test_wechat_avatar_redirect_is_not_followed(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, other_host: FakeServer
) -> None:
    path = "/mmopen/redirect/132"
    wechat.route("GET", path, lambda _r: (302, {"Location": other_host.base + "/avatar.png"}, b""))
    signed = await linked_via_wechat(
        client, sms, wechat, "o_redirect", headimgurl=wechat.base + path
    )
    assert signed["account"]["avatar_url"] is None
    assert len(wechat.calls(path)) == 1
    assert other_host.requests == []


@pytest.mark.parametrize("kind", ["html", "huge", "missing"])
async def test_wechat_unusable_avatar_is_skipped(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any, kind: str
) -> None:
    path = "/mmopen/odd/132"
    if kind == "html":
        wechat.route("GET", path, lambda _r: (200, {"Content-Type": "image/png"}, b"<html/>"))
    elif kind == "huge":
        big = make_image("PNG", (1500, 1500)) + b"\0" * (6 * 1024 * 1024)
        wechat.serve_image(path, big)
    headimgurl = wechat.base + path  # "missing": the fake answers 404
    signed = await linked_via_wechat(
        client, sms, wechat, "o_odd", nickname="Zhang", headimgurl=headimgurl
    )
    assert signed["account"]["identities"] == ["wechat"]
    assert signed["account"]["name"] == "Zhang"
    assert signed["account"]["avatar_url"] is None
    assert await count_rows(db, "media_objects") == 0


# --- Apple: sign-in and linking by phone ------------------------------------------


async def test_apple_unknown_identity_links_by_phone_then_signs_in_directly(
    client: httpx.AsyncClient, sms: FakeSmsGateway, apple: FakeAppleID, db: Any
) -> None:
    email = "x7hq2k9d4m@privaterelay.appleid.com"
    sub = "001234.0a1b2c3d4e5f.0123"
    nonce = await get_nonce(client)
    token = apple.id_token(sub, nonce, email=email)
    r = await apple_login(client, token, nonce, name={"givenName": "Mei", "familyName": "Wang"})
    pr = expect_phone_required(r, "apple")
    assert pr["nickname"] == "Mei Wang"
    assert len(apple.requests) == 1 and apple.requests[0].path == apple.KEYS_PATH

    signed = await sign_up(client, sms, PHONE, link_ticket=pr["link_ticket"])
    assert signed["created"] is True
    account = signed["account"]
    assert account["identities"] == ["apple"]
    assert account["name"] == "Mei Wang"
    assert account["avatar_url"] is None

    # Later sign-ins go straight through (Apple sends the name only the first time).
    nonce = await get_nonce(client)
    r = await apple_login(client, apple.id_token(sub, nonce, email=email), nonce)
    again = expect_signed_in(r)
    assert again["account"]["id"] == account["id"]
    assert again["account"]["name"] == "Mei Wang"
    assert (await me(client, again["token"]))["identities"] == ["apple"]

    # Apple's e-mail claim is not stored anywhere.
    stored = repr(await snapshot(db))
    assert email not in stored
    assert email.split("@")[0] not in stored
    assert "privaterelay" not in stored


async def test_apple_name_is_optional_and_does_not_replace_a_name(
    client: httpx.AsyncClient, sms: FakeSmsGateway, apple: FakeAppleID
) -> None:
    nonce = await get_nonce(client)
    pr = expect_phone_required(
        await apple_login(client, apple.id_token("sub-noname", nonce), nonce), "apple"
    )
    assert pr["nickname"] is None
    signed = await sign_up(client, sms, PHONE, link_ticket=pr["link_ticket"])
    assert signed["account"]["name"] is None

    other = await sign_up(client, sms, PHONE_B)
    r = await client.patch(
        "/api/v1/me", json={"name": "Grandpa Chen"}, headers=bearer(other["token"])
    )
    assert r.status_code == 200, r.text
    nonce = await get_nonce(client)
    r = await apple_login(
        client,
        apple.id_token("sub-named", nonce),
        nonce,
        name={"givenName": "Jian", "familyName": "Chen"},
    )
    pr = expect_phone_required(r, "apple")
    signed = await sign_up(client, sms, PHONE_B, link_ticket=pr["link_ticket"])
    assert signed["account"]["identities"] == ["apple"]
    assert signed["account"]["name"] == "Grandpa Chen"


async def test_apple_token_with_raw_nonce_is_accepted(
    client: httpx.AsyncClient, apple: FakeAppleID
) -> None:
    # Apple's JS (web) flow carries the nonce as given rather than hashed.
    nonce = await get_nonce(client)
    r = await apple_login(client, apple.id_token("sub-web", nonce, nonce_hashed=False), nonce)
    expect_phone_required(r, "apple")


# --- Apple: refused tokens -----------------------------------------------------------


def _other_nonce_token(apple: FakeAppleID, nonce: str) -> str:
    return apple.id_token("sub-x", "some-other-nonce")


Forge = Callable[[FakeAppleID, str], str]

FORGERIES: dict[str, Forge] = {
    "key_not_in_jwks": lambda a, n: a.id_token("sub-x", n, signer="other"),
    "unknown_kid": lambda a, n: a.id_token("sub-x", n, signer="other", kid="notAppleKid"),
    "no_kid": lambda a, n: a.id_token("sub-x", n, kid=None),
    "tampered_subject": lambda a, n: tamper_payload(a.id_token("sub-x", n), sub="sub-victim"),
    "expired": lambda a, n: a.id_token("sub-x", n, iat_offset=-7200, exp_in=600),
    "issued_in_future": lambda a, n: a.id_token("sub-x", n, iat_offset=3600),
    "wrong_aud": lambda a, n: a.id_token("sub-x", n, aud="com.someone.else"),
    "wrong_iss": lambda a, n: a.id_token("sub-x", n, iss="https://appleid.example.com"),
    "wrong_nonce": _other_nonce_token,
    "double_hashed_nonce": lambda a, n: a.id_token("sub-x", hashed_nonce(n)),
    "no_nonce": lambda a, n: a.id_token("sub-x", None),
    "no_sub": lambda a, n: a.id_token("sub-x", n, drop=("sub",)),
    "no_exp": lambda a, n: a.id_token("sub-x", n, drop=("exp",)),
    "hs256": lambda a, n: a.id_token("sub-x", n, alg="HS256"),
    "hs256_with_public_key": lambda a, n: a.id_token(
        "sub-x", n, alg="HS256", hmac_key=a.public_pem()
    ),
    "alg_none": lambda a, n: a.id_token("sub-x", n, alg="none"),
    "malformed": lambda a, n: "not-a-jwt",
    "malformed_three_parts": lambda a, n: "abc.def.ghi",
    "signature_stripped": lambda a, n: a.id_token("sub-x", n).rsplit(".", 1)[0] + ".",
}


@pytest.mark.parametrize("forge", list(FORGERIES), ids=list(FORGERIES))
async def test_apple_bad_token_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, apple: FakeAppleID, db: Any, forge: str
) -> None:
    nonce = await get_nonce(client)
    before = await snapshot(db)
    r = await apple_login(client, FORGERIES[forge](apple, nonce), nonce)
    expect_problem(r, 401, "oauth.invalid_token")
    assert await snapshot(db) == before
    # A refused token does not spend the nonce: a genuine token still works.
    r = await apple_login(client, apple.id_token("sub-genuine", nonce), nonce)
    expect_phone_required(r, "apple")


async def test_apple_expiry_follows_the_service_clock(
    client: httpx.AsyncClient, apple: FakeAppleID, db: Any
) -> None:
    nonce = await get_nonce(client)
    token = apple.id_token("sub-clock", nonce, exp_in=60)
    clock.advance(91)  # past exp plus the 30 s leeway
    before = await snapshot(db)
    expect_problem(await apple_login(client, token, nonce), 401, "oauth.invalid_token")
    assert await snapshot(db) == before

    nonce = await get_nonce(client)
    token = apple.id_token("sub-clock", nonce, exp_in=60)
    clock.advance(80)  # within the leeway
    expect_phone_required(await apple_login(client, token, nonce), "apple")


# --- Apple: nonces -----------------------------------------------------------------


async def test_apple_nonce_is_single_use(
    client: httpx.AsyncClient, sms: FakeSmsGateway, apple: FakeAppleID, db: Any
) -> None:
    nonce = await get_nonce(client)
    expect_phone_required(await apple_login(client, apple.id_token("sub-1", nonce), nonce), "apple")
    before = await snapshot(db)
    r = await apple_login(client, apple.id_token("sub-1", nonce), nonce)
    expect_problem(r, 400, "oauth.ticket_used")
    assert await snapshot(db) == before

    # Also for an identity that is linked: a replay does not sign in.
    await sign_up(client, sms, PHONE, link_ticket=await apple_ticket(client, apple, "sub-2"))
    nonce = await get_nonce(client)
    token = apple.id_token("sub-2", nonce)
    expect_signed_in(await apple_login(client, token, nonce))
    before = await snapshot(db)
    expect_problem(await apple_login(client, token, nonce), 400, "oauth.ticket_used")
    assert await snapshot(db) == before


async def test_apple_unknown_nonce_is_refused(
    client: httpx.AsyncClient, apple: FakeAppleID, db: Any
) -> None:
    before = await snapshot(db)
    nonce = "made-up-nonce-that-kares-never-issued"
    r = await apple_login(client, apple.id_token("sub-1", nonce), nonce)
    expect_problem(r, 400, "oauth.ticket_invalid")
    assert await snapshot(db) == before
    assert apple.requests == []


async def test_apple_nonce_expires(client: httpx.AsyncClient, apple: FakeAppleID, db: Any) -> None:
    nonce = await get_nonce(client)
    clock.advance(NONCE_TTL + 1)
    before = await snapshot(db)
    r = await apple_login(client, apple.id_token("sub-1", nonce), nonce)
    expect_problem(r, 400, "oauth.ticket_expired")
    assert await snapshot(db) == before


async def test_nonces_and_link_tickets_are_not_interchangeable(
    client: httpx.AsyncClient, sms: FakeSmsGateway, apple: FakeAppleID, db: Any
) -> None:
    link_ticket = await apple_ticket(client, apple, "sub-1")
    nonce = await get_nonce(client)
    code = await send_code(client, sms, PHONE)
    before = await snapshot(db)
    r = await apple_login(client, apple.id_token("sub-1", link_ticket), link_ticket)
    expect_problem(r, 400, "oauth.ticket_invalid")
    expect_problem(
        await verify(client, PHONE, code, link_ticket=nonce), 400, "oauth.ticket_invalid"
    )
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "settings_overrides", [{"apple_jwks_url": DEAD + "/auth/keys"}], indirect=True
)
async def test_apple_keys_unreachable_is_provider_unavailable(
    client: httpx.AsyncClient, apple: FakeAppleID, db: Any
) -> None:
    nonce = await get_nonce(client)
    before = await snapshot(db)
    r = await apple_login(client, apple.id_token("sub-1", nonce), nonce)
    expect_problem(r, 502, "oauth.provider_unavailable")
    assert await snapshot(db) == before


async def test_apple_keys_server_error_is_provider_unavailable(
    client: httpx.AsyncClient, apple: FakeAppleID, db: Any
) -> None:
    apple.fail_with = 500
    nonce = await get_nonce(client)
    before = await snapshot(db)
    r = await apple_login(client, apple.id_token("sub-1", nonce), nonce)
    expect_problem(r, 502, "oauth.provider_unavailable")
    assert await snapshot(db) == before
    apple.fail_with = None  # Apple is back: the nonce was not spent
    expect_phone_required(await apple_login(client, apple.id_token("sub-1", nonce), nonce), "apple")


async def test_sign_in_methods_list_what_is_configured(
    client: httpx.AsyncClient, wechat: FakeWeChat, apple: FakeAppleID
) -> None:
    r = await client.get("/api/v1/auth/methods")
    assert r.status_code == 200
    methods = {m["method"]: m for m in r.json()["methods"]}
    assert list(methods) == ["sms", "password", "wechat", "apple"]
    assert methods["wechat"]["app_id"] == wechat.app_id
    assert methods["wechat"].get("client_ids") is None
    assert methods["apple"]["client_ids"] == [apple.client_id]
    assert methods["apple"]["nonce_path"] == "/api/v1/auth/apple/nonce"
    # every path listed is a route of this server
    spec = (await client.get("/openapi.json")).json()
    for m in methods.values():
        assert m["path"] in spec["paths"]
    assert wechat.requests == [] and apple.requests == []


async def test_no_sign_in_route_documents_a_5xx_for_a_missing_provider(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/api/v1/auth/wechat", "/api/v1/auth/apple", "/api/v1/auth/apple/nonce"):
        responses = spec["paths"][path]["post"]["responses"]
        assert "oauth.provider_not_configured" in responses["404"]["description"]
        assert "503" not in responses


@pytest.mark.parametrize("settings_overrides", [{"apple_client_ids": []}], indirect=True)
async def test_apple_not_configured(client: httpx.AsyncClient, apple: FakeAppleID, db: Any) -> None:
    before = await snapshot(db)
    # neither a nonce (nothing stored for a sign-in that cannot happen) nor a sign-in
    expect_problem(
        await client.post("/api/v1/auth/apple/nonce"), 404, "oauth.provider_not_configured"
    )
    r = await apple_login(client, apple.id_token("sub-1", "n" * 32), "n" * 32)
    expect_problem(r, 404, "oauth.provider_not_configured")
    assert await snapshot(db) == before
    assert apple.requests == []
    r = await client.get("/api/v1/auth/methods")
    assert [m["method"] for m in r.json()["methods"]] == ["sms", "password", "wechat"]


# --- link tickets -------------------------------------------------------------------


async def test_link_ticket_is_single_use(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    ticket = await wechat_ticket(client, wechat, "o_ticket")
    await sign_up(client, sms, PHONE, link_ticket=ticket)
    code = await send_code(client, sms, PHONE_B)
    before = await snapshot(db)
    expect_problem(await verify(client, PHONE_B, code, ticket), 400, "oauth.ticket_used")
    assert await snapshot(db) == before
    r = await verify(client, PHONE_B, code)
    assert r.status_code == 201, r.text
    assert r.json()["account"]["identities"] == []


async def test_unknown_link_ticket_is_refused(
    client: httpx.AsyncClient, sms: FakeSmsGateway, db: Any
) -> None:
    code = await send_code(client, sms, PHONE)
    before = await snapshot(db)
    expect_problem(await verify(client, PHONE, code, "not-a-ticket"), 400, "oauth.ticket_invalid")
    assert await snapshot(db) == before


async def test_link_ticket_expires(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    ticket = await wechat_ticket(client, wechat, "o_slow")
    clock.advance(NONCE_TTL + 1)
    code = await send_code(client, sms, PHONE)
    before = await snapshot(db)
    expect_problem(await verify(client, PHONE, code, ticket), 400, "oauth.ticket_expired")
    assert await snapshot(db) == before
    r = await verify(client, PHONE, code)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("provider", ["wechat", "apple"])
async def test_link_ticket_for_identity_taken_meanwhile(
    client: httpx.AsyncClient,
    sms: FakeSmsGateway,
    wechat: FakeWeChat,
    apple: FakeAppleID,
    db: Any,
    provider: str,
) -> None:
    async def ticket() -> str:
        if provider == "wechat":
            return await wechat_ticket(client, wechat, "o_contested")
        return await apple_ticket(client, apple, "sub-contested")

    first, second, third = await ticket(), await ticket(), await ticket()  # all unlinked yet
    owner = await sign_up(client, sms, PHONE, link_ticket=first)
    assert owner["account"]["identities"] == [provider]

    code = await send_code(client, sms, PHONE_B)
    before = await snapshot(db)
    expect_problem(await verify(client, PHONE_B, code, second), 409, "identity.taken")
    assert await snapshot(db) == before
    # The code was not spent: it still signs in, without the ticket.
    r = await verify(client, PHONE_B, code)
    assert r.status_code == 201, r.text
    assert r.json()["account"]["identities"] == []

    # Redeemed by the owner's own number, a stale ticket just signs in.
    r = await verify(client, PHONE, await send_code(client, sms, PHONE), third)
    assert r.status_code == 200, r.text
    assert r.json()["account"]["id"] == owner["account"]["id"]
    assert r.json()["account"]["identities"] == [provider]
    assert await count_rows(db, "external_identities") == 1


async def test_link_ticket_for_existing_account_with_other_wechat(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    await linked_via_wechat(client, sms, wechat, "o_first")
    ticket = await wechat_ticket(client, wechat, "o_second")
    code = await send_code(client, sms, PHONE)
    before = await snapshot(db)
    expect_problem(await verify(client, PHONE, code, ticket), 409, "identity.already_linked")
    assert await snapshot(db) == before
    r = await verify(client, PHONE, code)
    assert r.status_code == 200, r.text
    assert r.json()["account"]["identities"] == ["wechat"]


async def test_link_ticket_taken_by_existing_account_with_identity(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    """A ticket for A's WeChat, redeemed with B's phone where B has its own WeChat."""
    first = await wechat_ticket(client, wechat, "o_a")
    second = await wechat_ticket(client, wechat, "o_a")
    await sign_up(client, sms, PHONE, link_ticket=first)
    await linked_via_wechat(client, sms, wechat, "o_b", phone=PHONE_B)
    clock.advance(61)
    code = await send_code(client, sms, PHONE_B)
    before = await snapshot(db)
    expect_problem(await verify(client, PHONE_B, code, second), 409, "identity.taken")
    assert await snapshot(db) == before


# --- linking and unlinking while signed in ---------------------------------------------


async def test_link_wechat_while_signed_in(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat
) -> None:
    signed = await sign_up(client, sms, PHONE)
    token = signed["token"]
    code = wechat.add_code("o_link", unionid="u_link", nickname="老张")
    r = await client.post(
        "/api/v1/me/identities/wechat", json={"code": code}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    account = r.json()
    assert account["identities"] == ["wechat"]
    assert account["name"] == "老张"
    assert account["avatar_url"]
    await fetch_image(client, token, account["avatar_url"])

    r = await wechat_login(client, wechat.add_code("o_link", unionid="u_link"))
    assert expect_signed_in(r)["account"]["id"] == signed["account"]["id"]

    # Linking the same WeChat again is harmless.
    r = await client.post(
        "/api/v1/me/identities/wechat",
        json={"code": wechat.add_code("o_link", unionid="u_link")},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    assert r.json()["identities"] == ["wechat"]


async def test_link_apple_while_signed_in(
    client: httpx.AsyncClient, sms: FakeSmsGateway, apple: FakeAppleID, db: Any
) -> None:
    signed = await sign_up(client, sms, PHONE)
    token = signed["token"]
    nonce = await get_nonce(client)
    id_token = apple.id_token("sub-link", nonce, email="someone@example.com")
    r = await client.post(
        "/api/v1/me/identities/apple",
        json={"id_token": id_token, "nonce": nonce},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    assert r.json()["identities"] == ["apple"]
    assert "someone@example.com" not in repr(await snapshot(db))

    before = await snapshot(db)
    r = await client.post(
        "/api/v1/me/identities/apple",
        json={"id_token": id_token, "nonce": nonce},
        headers=bearer(token),
    )
    expect_problem(r, 400, "oauth.ticket_used")
    assert await snapshot(db) == before

    nonce = await get_nonce(client)
    r = await apple_login(client, apple.id_token("sub-link", nonce), nonce)
    assert expect_signed_in(r)["account"]["id"] == signed["account"]["id"]


async def test_link_apple_bad_token_is_refused(
    client: httpx.AsyncClient, sms: FakeSmsGateway, apple: FakeAppleID, db: Any
) -> None:
    signed = await sign_up(client, sms, PHONE)
    await me(client, signed["token"])
    nonce = await get_nonce(client)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/me/identities/apple",
        json={"id_token": apple.id_token("sub-x", nonce, signer="other"), "nonce": nonce},
        headers=bearer(signed["token"]),
    )
    expect_problem(r, 401, "oauth.invalid_token")
    assert await snapshot(db) == before


async def test_link_identity_owned_by_another_account(
    client: httpx.AsyncClient,
    sms: FakeSmsGateway,
    wechat: FakeWeChat,
    apple: FakeAppleID,
    db: Any,
) -> None:
    await linked_via_wechat(client, sms, wechat, "o_owned", phone=PHONE_B)
    await sign_up(client, sms, PHONE_C, link_ticket=await apple_ticket(client, apple, "sub-owned"))
    signed = await sign_up(client, sms, PHONE)
    token = signed["token"]
    await me(client, token)

    before = await snapshot(db)
    r = await client.post(
        "/api/v1/me/identities/wechat",
        json={"code": wechat.add_code("o_owned")},
        headers=bearer(token),
    )
    expect_problem(r, 409, "identity.taken")
    assert await snapshot(db) == before

    nonce = await get_nonce(client)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/me/identities/apple",
        json={"id_token": apple.id_token("sub-owned", nonce), "nonce": nonce},
        headers=bearer(token),
    )
    expect_problem(r, 409, "identity.taken")
    assert await snapshot(db) == before
    assert (await me(client, token))["identities"] == []


async def test_link_second_wechat_is_refused(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    signed = await linked_via_wechat(client, sms, wechat, "o_mine")
    token = signed["token"]
    await me(client, token)
    before = await snapshot(db)
    r = await client.post(
        "/api/v1/me/identities/wechat",
        json={"code": wechat.add_code("o_another")},
        headers=bearer(token),
    )
    expect_problem(r, 409, "identity.already_linked")
    assert await snapshot(db) == before


async def test_unlink_wechat(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    signed = await linked_via_wechat(client, sms, wechat, "o_unlink", nickname="小王")
    token = signed["token"]
    r = await client.delete("/api/v1/me/identities/wechat", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["identities"] == []
    assert r.json()["name"] == "小王"  # the imported profile stays: it is the account's now
    assert await count_rows(db, "external_identities") == 0

    # WeChat no longer signs in to this account: it asks for a phone again ...
    pr = expect_phone_required(await wechat_login(client, wechat.add_code("o_unlink")), "wechat")
    # ... and may now be linked to another account.
    other = await sign_up(client, sms, PHONE_B, link_ticket=pr["link_ticket"])
    assert other["account"]["identities"] == ["wechat"]
    assert other["account"]["id"] != signed["account"]["id"]

    before = await snapshot(db)
    r = await client.delete("/api/v1/me/identities/wechat", headers=bearer(token))
    expect_problem(r, 404, "identity.not_linked")
    assert await snapshot(db) == before


async def test_unlink_not_linked(client: httpx.AsyncClient, sms: FakeSmsGateway, db: Any) -> None:
    signed = await sign_up(client, sms, PHONE)
    await me(client, signed["token"])
    before = await snapshot(db)
    for provider in ("wechat", "apple"):
        r = await client.delete(
            f"/api/v1/me/identities/{provider}", headers=bearer(signed["token"])
        )
        expect_problem(r, 404, "identity.not_linked")
    assert await snapshot(db) == before


async def test_linking_needs_a_signed_in_caller(
    client: httpx.AsyncClient, wechat: FakeWeChat, apple: FakeAppleID, db: Any
) -> None:
    code = wechat.add_code("o_anon")
    nonce = await get_nonce(client)
    before = await snapshot(db)
    r = await client.post("/api/v1/me/identities/wechat", json={"code": code})
    expect_problem(r, 401, "auth.required")
    r = await client.post(
        "/api/v1/me/identities/apple", json={"id_token": apple.id_token("s", nonce), "nonce": nonce}
    )
    expect_problem(r, 401, "auth.required")
    r = await client.delete("/api/v1/me/identities/wechat")
    expect_problem(r, 401, "auth.required")
    assert await snapshot(db) == before
    assert wechat.requests == []  # the code was not even spent


# --- odd provider data ----------------------------------------------------------------


def _has_control(s: str) -> bool:
    return any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in s)


@pytest.mark.parametrize(
    ("nickname", "expected"),
    [("Li\x07Ming\x1b[31m", "LiMing[31m"), ("\x00Li\x00", "Li"), ("\n\t\x85", None)],
    ids=["bell_escape", "nul", "only_control"],
)
async def test_wechat_nickname_with_control_characters(
    client: httpx.AsyncClient,
    sms: FakeSmsGateway,
    wechat: FakeWeChat,
    nickname: str,
    expected: str | None,
) -> None:
    # PATCH /me refuses names with control characters; an imported one must not bring them in
    # (and a NUL must not reach PostgreSQL, which cannot store it).
    code = wechat.add_code("o_ctrl", nickname=nickname)
    pr = expect_phone_required(await wechat_login(client, code), "wechat")
    assert pr["nickname"] == expected
    signed = await sign_up(client, sms, PHONE, link_ticket=pr["link_ticket"])
    assert signed["account"]["identities"] == ["wechat"]
    name = signed["account"]["name"]
    assert name == expected
    assert name is None or not _has_control(name)
    r = await wechat_login(client, wechat.add_code("o_ctrl", nickname=nickname))
    assert expect_signed_in(r)["account"]["id"] == signed["account"]["id"]


@pytest.mark.parametrize("given", ["Mei\x00", "Mei\x07"], ids=["nul", "bell"])
async def test_apple_name_with_control_characters(
    client: httpx.AsyncClient, sms: FakeSmsGateway, apple: FakeAppleID, given: str
) -> None:
    nonce = await get_nonce(client)
    r = await apple_login(
        client,
        apple.id_token("sub-ctrl", nonce),
        nonce,
        name={"givenName": given, "familyName": "Wang"},
    )
    if "\x00" in given:
        # a NUL never reaches the service: every JSON body with one is refused
        expect_problem(r, 400, "request.nul_character")
        return
    pr = expect_phone_required(r, "apple")
    assert pr["nickname"] == "Mei Wang"
    signed = await sign_up(client, sms, PHONE, link_ticket=pr["link_ticket"])
    assert signed["account"]["name"] == "Mei Wang"
    assert not _has_control(signed["account"]["name"])


@pytest.mark.parametrize("kind", ["bad_port", "control_char", "overlong", "not_http"])
async def test_wechat_odd_avatar_url_is_skipped(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, kind: str
) -> None:
    path = "/mmopen/odd/132"
    wechat.serve_image(path, make_image("PNG"))
    url = {
        "bad_port": "http://127.0.0.1:99999" + path,
        "control_char": f"http://127.0.0.1:{wechat.port}{path}\x01",
        "overlong": f"http://127.0.0.1:{wechat.port}{path}?" + "x" * 600,
        "not_http": "javascript:alert(1)",
    }[kind]
    signed = await linked_via_wechat(
        client, sms, wechat, "o_odd_url", nickname="Zhao", headimgurl=url
    )
    assert signed["account"]["identities"] == ["wechat"]
    assert signed["account"]["name"] == "Zhao"
    assert signed["account"]["avatar_url"] is None
    assert wechat.calls(path) == []


@pytest.mark.parametrize("field", ["openid", "unionid"])
async def test_wechat_overlong_identity_is_an_unexpected_reply(
    client: httpx.AsyncClient, wechat: FakeWeChat, db: Any, field: str
) -> None:
    long_id = "o" + "x" * 300
    if field == "openid":
        code = wechat.add_code(long_id)
    else:
        code = wechat.add_code("o_short", unionid=long_id)
    before = await snapshot(db)
    expect_problem(await wechat_login(client, code), 502, "oauth.provider_unavailable")
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "settings_overrides",
    [{"wechat_app_id": "wx-wrong"}, {"wechat_app_secret": "wrong-secret"}],
    indirect=True,
    ids=["bad_app_id", "bad_secret"],
)
async def test_wechat_refusing_our_credentials_is_not_blamed_on_the_code(
    client: httpx.AsyncClient, wechat: FakeWeChat, db: Any
) -> None:
    before = await snapshot(db)
    # the server is set up but broken: a 5xx with its own code, never blamed on the user's code
    expect_problem(
        await wechat_login(client, wechat.add_code("o_cfg")), 502, "oauth.provider_misconfigured"
    )
    assert await snapshot(db) == before


async def test_apple_nonces_are_capped_per_network(client: httpx.AsyncClient, db: Any) -> None:
    net = {"X-Forwarded-For": "203.0.113.77"}
    for _ in range(60):
        assert (await client.post("/api/v1/auth/apple/nonce", headers=net)).status_code == 200
    before = await snapshot(db)
    r = await client.post("/api/v1/auth/apple/nonce", headers=net)
    expect_problem(r, 429, "oauth.nonce_limit")
    assert int(r.headers["Retry-After"]) > 0
    assert await snapshot(db) == before
    other = await client.post("/api/v1/auth/apple/nonce", headers={"X-Forwarded-For": "192.0.2.8"})
    assert other.status_code == 200
    clock.advance(3601)
    # an hour later the old nonces are purged and the network may ask again
    assert (await client.post("/api/v1/auth/apple/nonce", headers=net)).status_code == 200
    assert await count_rows(db, "auth_tickets") == 1


async def test_used_link_ticket_keeps_no_third_party_profile(
    client: httpx.AsyncClient, sms: FakeSmsGateway, wechat: FakeWeChat, db: Any
) -> None:
    ticket = await wechat_ticket(client, wechat, "o_forget", nickname="Grandma Li")
    code = await send_code(client, sms, PHONE)
    assert (await verify(client, PHONE, code, ticket)).status_code == 201
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT subject, nickname, avatar_url, used_at FROM auth_tickets "
                    "WHERE kind = 'link'"
                )
            )
        ).all()
    assert len(rows) == 1
    subject, nickname, avatar_url, used_at = rows[0]
    assert used_at is not None
    assert (subject, nickname, avatar_url) == (None, None, None)
