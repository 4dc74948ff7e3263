"""Families through the public API: creating and naming them, roles (owner,
guardian, member, dependant) and what each may do, leaving, removing,
handing over and dissolving, and the group photo. A non-member gets a 404
for anything of a family, never a 403; refused requests change nothing.

The helpers at the top are shared by the other tests/test_families_*.py files.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.conftest import bearer, count_rows, sign_up, snapshot
from tests.support.tiers import examples
from tests.test_avatar import assert_clean, encode, jpeg_with_metadata, padded_png, photo

OWNER = "+8613700000001"
MEMBER = "+8613700000002"
OTHER = "+8613700000003"
STRANGER = "+8613700000004"
TEEN = "+8613700000005"

FAMILIES = "/api/v1/families"


# --- helpers (shared with the other test_families_*.py files) ------------------------------


def h(me: dict[str, Any]) -> dict[str, str]:
    return bearer(me["token"])


def aid(me: dict[str, Any]) -> str:
    return str(me["account"]["id"])


def problem(r: httpx.Response, status: int, code: str | set[str]) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    body = dict(r.json())
    codes = {code} if isinstance(code, str) else code
    assert body["code"] in codes, body
    return body


async def person(
    client: httpx.AsyncClient, sms: Any, phone: str, name: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A signed-up account (adult unless told), optionally with a name."""
    me = await sign_up(client, sms, phone, **extra)
    if name is not None:
        r = await client.patch("/api/v1/me", json={"name": name}, headers=h(me))
        assert r.status_code == 200, r.text
        me["account"] = r.json()
    return me


async def new_family(client: httpx.AsyncClient, owner: dict[str, Any], name: str = "Wangs") -> str:
    r = await client.post(FAMILIES, json={"name": name}, headers=h(owner))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def invite(
    client: httpx.AsyncClient, admin: dict[str, Any], fid: str, **body: Any
) -> dict[str, Any]:
    r = await client.post(f"{FAMILIES}/{fid}/invitations", json=body, headers=h(admin))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def join(
    client: httpx.AsyncClient, admin: dict[str, Any], fid: str, who: dict[str, Any]
) -> None:
    inv = await invite(client, admin, fid)
    r = await client.post("/api/v1/invitations/accept", json={"text": inv["code"]}, headers=h(who))
    assert r.status_code == 201, r.text
    assert r.json()["joined"] is True


async def family(client: httpx.AsyncClient, me: dict[str, Any], fid: str) -> dict[str, Any]:
    r = await client.get(f"{FAMILIES}/{fid}", headers=h(me))
    assert r.status_code == 200, r.text
    return dict(r.json())


def roles(fam: dict[str, Any]) -> dict[str, str]:
    return {m["account_id"]: m["role"] for m in fam["members"]}


async def circle(
    client: httpx.AsyncClient, sms: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """An owner and two members in one family."""
    owner = await person(client, sms, OWNER, "Wang Fang")
    member = await person(client, sms, MEMBER, "Wang Lei")
    other = await person(client, sms, OTHER, "Li Na")
    fid = await new_family(client, owner)
    await join(client, owner, fid, member)
    await join(client, owner, fid, other)
    return owner, member, other, fid


async def set_role(
    client: httpx.AsyncClient, actor: dict[str, Any], fid: str, who: dict[str, Any], role: str
) -> httpx.Response:
    return await client.put(
        f"{FAMILIES}/{fid}/members/{aid(who)}/role", json={"role": role}, headers=h(actor)
    )


async def upload_photo(
    client: httpx.AsyncClient, me: dict[str, Any], fid: str, data: bytes, name: str = "a.jpg"
) -> httpx.Response:
    return await client.put(
        f"{FAMILIES}/{fid}/photo",
        files={"file": (name, data, "application/octet-stream")},
        headers=h(me),
    )


# --- creating, naming, listing ------------------------------------------------------------------


async def test_create_list_and_get(client: httpx.AsyncClient, sms: Any) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    r = await client.post(FAMILIES, json={"name": "  The Wangs 王家 🏠 "}, headers=h(owner))
    assert r.status_code == 201, r.text
    fam = r.json()
    assert fam["name"] == "The Wangs 王家 🏠"
    assert fam["my_role"] == "owner" and fam["owner_account_id"] == aid(owner)
    assert fam["member_count"] == 1 and fam["photo_url"] is None
    [me] = fam["members"]
    assert me["account_id"] == aid(owner) and me["role"] == "owner"
    assert me["name"] == "Wang Fang" and me["managed"] is False and me["avatar_url"] is None
    # the defaults: live location, health off, schedule on, no pause
    sharing = me["sharing"]
    assert (sharing["location"], sharing["health"], sharing["schedule"]) == ("live", False, True)
    assert sharing["paused"] is False and sharing["paused_until"] is None

    listed = (await client.get(FAMILIES, headers=h(owner))).json()
    assert [(f["id"], f["my_role"], f["member_count"]) for f in listed] == [(fam["id"], "owner", 1)]
    assert await family(client, owner, fam["id"]) == fam


async def test_a_user_may_belong_to_several_families(client: httpx.AsyncClient, sms: Any) -> None:
    a = await person(client, sms, OWNER)
    b = await person(client, sms, MEMBER)
    mine = await new_family(client, a, "Mine")
    theirs = await new_family(client, b, "Theirs")
    await join(client, b, theirs, a)
    listed = {f["id"]: f["my_role"] for f in (await client.get(FAMILIES, headers=h(a))).json()}
    assert listed == {mine: "owner", theirs: "member"}
    assert (await family(client, a, theirs))["my_role"] == "member"


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("", 422, "family.invalid_name"),
        ("   ", 422, "family.invalid_name"),
        ("x" * 41, 422, "family.invalid_name"),
        ("Wang\nFamily", 422, "family.invalid_name"),
        ("Wang\x07", 422, "family.invalid_name"),
        ("Wang\x00", 400, "request.nul_character"),
        ("\u202egnaW", 422, "family.invalid_name"),
        (42, 422, "request.invalid"),
        (None, 422, "request.invalid"),
    ],
)
async def test_bad_names_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, name: Any, status: int, code: str
) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    before = await snapshot(db)
    problem(await client.post(FAMILIES, json={"name": name}, headers=h(owner)), status, code)
    r = await client.patch(f"{FAMILIES}/{fid}", json={"name": name}, headers=h(owner))
    problem(r, status, code)
    assert await snapshot(db) == before


async def test_malformed_bodies_are_refused(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner = await person(client, sms, OWNER)
    before = await snapshot(db)
    problem(
        await client.post(FAMILIES, json={"name": "A", "owner": "x"}, headers=h(owner)),
        422,
        "request.invalid",
    )
    problem(
        await client.post(
            FAMILIES, content=b"{not json", headers={**h(owner), "content-type": "application/json"}
        ),
        400,
        "request.malformed_json",
    )
    assert await snapshot(db) == before


async def test_forty_characters_is_the_longest_name(client: httpx.AsyncClient, sms: Any) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner, "家" * 40)
    r = await client.patch(f"{FAMILIES}/{fid}", json={"name": "x" * 40}, headers=h(owner))
    assert r.status_code == 200 and r.json()["name"] == "x" * 40


async def test_only_adults_create_families(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    teen = await person(client, sms, TEEN, age_bracket="14_to_17")
    before = await snapshot(db)
    r = await client.post(FAMILIES, json={"name": "Teens"}, headers=h(teen))
    problem(r, 403, "family.adult_required")
    assert await snapshot(db) == before


async def test_families_need_sign_in(client: httpx.AsyncClient, sms: Any) -> None:
    problem(await client.get(FAMILIES), 401, "auth.required")
    problem(await client.post(FAMILIES, json={"name": "x"}), 401, "auth.required")


# --- non-members: 404, never 403 ------------------------------------------------------------------


def family_routes(fid: str, someone: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every route of one family, with a body each would accept."""
    base = f"{FAMILIES}/{fid}"
    return [
        ("GET", base, {}),
        ("PATCH", base, {"json": {"name": "Mine now"}}),
        ("DELETE", base, {}),
        ("GET", f"{base}/photo", {}),
        ("DELETE", f"{base}/photo", {}),
        ("PUT", f"{base}/photo", {"files": {"file": ("a.png", encode(photo(), "PNG"))}}),
        ("POST", f"{base}/transfer", {"json": {"account_id": someone}}),
        ("GET", f"{base}/members/me", {}),
        ("DELETE", f"{base}/members/me", {}),
        ("GET", f"{base}/members/me/sharing", {}),
        ("PUT", f"{base}/members/me/sharing", {"json": {"location": "off"}}),
        ("GET", f"{base}/members/{someone}", {}),
        ("GET", f"{base}/members/{someone}/sharing", {}),
        ("PUT", f"{base}/members/{someone}/sharing", {"json": {"health": True}}),
        ("GET", f"{base}/members/{someone}/avatar", {}),
        ("PUT", f"{base}/members/{someone}/role", {"json": {"role": "guardian"}}),
        ("DELETE", f"{base}/members/{someone}", {}),
        ("POST", f"{base}/invitations", {"json": {}}),
        ("GET", f"{base}/invitations", {}),
        ("GET", f"{base}/invitations/0123456789abcdef0123456789abcdef", {}),
        ("DELETE", f"{base}/invitations/0123456789abcdef0123456789abcdef", {}),
        ("GET", f"{base}/invitations/0123456789abcdef0123456789abcdef/qr.png", {}),
        ("GET", f"{base}/invitations/0123456789abcdef0123456789abcdef/qr.svg", {}),
        ("POST", f"{base}/dependants", {"json": {"name": "Kid", "age_bracket": "under_14"}}),
    ]


async def test_non_members_get_404_never_403(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner, member, _, fid = await circle(client, sms)
    stranger = await person(client, sms, STRANGER)
    # the stranger has a family of their own, with the same shape
    await new_family(client, stranger, "Elsewhere")
    inv = await invite(client, owner, fid)
    before = await snapshot(db)
    for target in (fid, "0" * 32):  # a real family and one that does not exist: the same answer
        for method, url, kw in family_routes(target, aid(member)):
            url = url.replace("0123456789abcdef0123456789abcdef", inv["id"])
            r = await client.request(method, url, headers=h(stranger), **kw)
            # routes about a person: the guard says that person does not exist for the caller
            problem(r, 404, {"family.not_found", "not_found"})
            assert "Wangs" not in r.text
    assert await snapshot(db) == before
    assert roles(await family(client, owner, fid))[aid(member)] == "member"


# --- roles ---------------------------------------------------------------------------------------


async def test_a_member_cannot_remove_the_owner_or_change_roles(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, other, fid = await circle(client, sms)
    before = await snapshot(db)
    base = f"{FAMILIES}/{fid}"
    refused = [
        await client.delete(f"{base}/members/{aid(owner)}", headers=h(member)),
        await client.delete(f"{base}/members/{aid(other)}", headers=h(member)),
        await set_role(client, member, fid, other, "guardian"),
        await set_role(client, member, fid, member, "guardian"),
        await set_role(client, member, fid, owner, "member"),
        await client.post(f"{base}/transfer", json={"account_id": aid(member)}, headers=h(member)),
        await client.delete(base, headers=h(member)),
        await client.patch(base, json={"name": "Ours"}, headers=h(member)),
        await client.post(f"{base}/invitations", json={}, headers=h(member)),
        await client.get(f"{base}/invitations", headers=h(member)),
        await upload_photo(client, member, fid, encode(photo(), "PNG")),
        await client.post(
            f"{base}/dependants", json={"name": "K", "age_bracket": "adult"}, headers=h(member)
        ),
    ]
    for r in refused:
        problem(r, 403, "family.forbidden")
    assert await snapshot(db) == before


async def test_a_guardian_cannot_remove_the_owner_or_change_roles(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, guardian, other, fid = await circle(client, sms)
    assert (await set_role(client, owner, fid, guardian, "guardian")).status_code == 200
    before = await snapshot(db)
    base = f"{FAMILIES}/{fid}"
    for r in (
        await client.delete(f"{base}/members/{aid(owner)}", headers=h(guardian)),
        await client.delete(f"{base}/members/{aid(other)}", headers=h(guardian)),
        await set_role(client, guardian, fid, other, "guardian"),
        await set_role(client, guardian, fid, guardian, "member"),
        await client.post(
            f"{base}/transfer", json={"account_id": aid(guardian)}, headers=h(guardian)
        ),
        await client.delete(base, headers=h(guardian)),
    ):
        problem(r, 403, "family.forbidden")
    assert await snapshot(db) == before
    # what a guardian may do: rename and invite
    r = await client.patch(base, json={"name": "Renamed"}, headers=h(guardian))
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    await invite(client, guardian, fid)


async def test_owner_promotes_and_demotes(client: httpx.AsyncClient, sms: Any) -> None:
    owner, member, _, fid = await circle(client, sms)
    r = await set_role(client, owner, fid, member, "guardian")
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "guardian" and r.json()["account_id"] == aid(member)
    assert roles(await family(client, member, fid))[aid(member)] == "guardian"
    inv = await invite(client, member, fid)
    # promoting again changes nothing
    assert (await set_role(client, owner, fid, member, "guardian")).json()["role"] == "guardian"

    r = await set_role(client, owner, fid, member, "member")
    assert r.status_code == 200 and r.json()["role"] == "member"
    problem(
        await client.post(f"{FAMILIES}/{fid}/invitations", json={}, headers=h(member)),
        403,
        "family.forbidden",
    )
    # what they invited with stops with their right to invite
    [listed] = [
        i
        for i in (await client.get(f"{FAMILIES}/{fid}/invitations", headers=h(owner))).json()
        if i["id"] == inv["id"]
    ]
    assert listed["status"] == "revoked" and listed["code"] is None


async def test_role_changes_that_are_not_allowed(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, _, fid = await circle(client, sms)
    teen = await person(client, sms, TEEN, age_bracket="14_to_17")
    await join(client, owner, fid, teen)
    stranger = await person(client, sms, STRANGER)
    before = await snapshot(db)
    problem(await set_role(client, owner, fid, owner, "member"), 409, "family.owner_role")
    problem(await set_role(client, owner, fid, teen, "guardian"), 409, "family.member_not_adult")
    problem(
        await set_role(client, owner, fid, stranger, "guardian"), 404, "family.member_not_found"
    )
    for role in ("owner", "dependant", "admin", None):
        problem(await set_role(client, owner, fid, member, role), 422, "request.invalid")  # type: ignore[arg-type]
    assert await snapshot(db) == before


async def test_removed_member_loses_access_immediately(client: httpx.AsyncClient, sms: Any) -> None:
    owner, member, other, fid = await circle(client, sms)
    assert (await client.get(f"{FAMILIES}/{fid}", headers=h(member))).status_code == 200
    r = await client.delete(f"{FAMILIES}/{fid}/members/{aid(member)}", headers=h(owner))
    assert r.status_code == 204, r.text
    # their very next request
    problem(await client.get(f"{FAMILIES}/{fid}", headers=h(member)), 404, "family.not_found")
    problem(
        await client.get(f"{FAMILIES}/{fid}/members/{aid(other)}", headers=h(member)),
        404,
        "not_found",
    )
    assert (await client.get(FAMILIES, headers=h(member))).json() == []
    assert aid(member) not in roles(await family(client, owner, fid))
    # removing again: they are not a member
    r = await client.delete(f"{FAMILIES}/{fid}/members/{aid(member)}", headers=h(owner))
    problem(r, 404, "family.member_not_found")


async def test_owner_cannot_leave_members_can(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner, member, _, fid = await circle(client, sms)
    before = await snapshot(db)
    body = problem(
        await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(owner)),
        409,
        "family.owner_cannot_leave",
    )
    assert "transfer" in body["detail"]
    problem(
        await client.delete(f"{FAMILIES}/{fid}/members/{aid(owner)}", headers=h(owner)),
        409,
        "family.owner_cannot_leave",
    )
    assert await snapshot(db) == before

    assert (
        await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(member))
    ).status_code == 204
    problem(await client.get(f"{FAMILIES}/{fid}", headers=h(member)), 404, "family.not_found")
    problem(
        await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(member)),
        404,
        "family.not_found",
    )
    assert aid(member) not in roles(await family(client, owner, fid))


async def test_transfer_ownership(client: httpx.AsyncClient, sms: Any) -> None:
    owner, member, other, fid = await circle(client, sms)
    r = await client.post(
        f"{FAMILIES}/{fid}/transfer", json={"account_id": aid(member)}, headers=h(owner)
    )
    assert r.status_code == 200, r.text
    fam = r.json()
    assert fam["owner_account_id"] == aid(member) and fam["my_role"] == "guardian"
    assert roles(fam) == {aid(member): "owner", aid(owner): "guardian", aid(other): "member"}
    # the old owner is a guardian now: no more owner's powers
    problem(
        await client.delete(f"{FAMILIES}/{fid}/members/{aid(other)}", headers=h(owner)),
        403,
        "family.forbidden",
    )
    # and may leave; the new owner may not
    problem(
        await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(member)),
        409,
        "family.owner_cannot_leave",
    )
    assert (
        await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(owner))
    ).status_code == 204


async def test_transfer_refusals_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, _, fid = await circle(client, sms)
    teen = await person(client, sms, TEEN, age_bracket="14_to_17")
    await join(client, owner, fid, teen)
    stranger = await person(client, sms, STRANGER)
    before = await snapshot(db)
    url = f"{FAMILIES}/{fid}/transfer"
    for who, status, code in (
        (aid(owner), 409, "family.already_owner"),
        (aid(teen), 409, "family.member_not_adult"),
        (aid(stranger), 404, "family.member_not_found"),
        ("0" * 32, 404, "family.member_not_found"),
    ):
        problem(await client.post(url, json={"account_id": who}, headers=h(owner)), status, code)
    problem(await client.post(url, json={}, headers=h(owner)), 422, "request.invalid")
    assert await snapshot(db) == before
    assert (await family(client, member, fid))["owner_account_id"] == aid(owner)


async def test_dissolve(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner, member, other, fid = await circle(client, sms)
    inv = await invite(client, owner, fid, max_uses=5)
    assert (await upload_photo(client, owner, fid, encode(photo(), "PNG"))).status_code == 200
    keep = await new_family(client, owner, "Another")
    assert (await client.delete(f"{FAMILIES}/{fid}", headers=h(owner))).status_code == 204
    for who in (owner, member, other):
        problem(await client.get(f"{FAMILIES}/{fid}", headers=h(who)), 404, "family.not_found")
    assert [f["id"] for f in (await client.get(FAMILIES, headers=h(owner))).json()] == [keep]
    assert (await client.get(FAMILIES, headers=h(member))).json() == []
    stranger = await person(client, sms, STRANGER)
    r = await client.post(
        "/api/v1/invitations/preview", json={"text": inv["text"]}, headers=h(stranger)
    )
    problem(r, 400, "invitation.invalid")
    async with db.engine.connect() as conn:
        for table in ("family_members", "family_invitations"):
            n = await conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE family_id = :f"), {"f": fid}
            )
            assert n.scalar_one() == 0, table
    assert await count_rows(db, "media_objects") == 0


# --- the group photo ---------------------------------------------------------------------------


async def test_group_photo_is_cleaned_and_shown_to_members_only(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, _, fid = await circle(client, sms)
    stranger = await person(client, sms, STRANGER)
    r = await upload_photo(client, owner, fid, jpeg_with_metadata())
    assert r.status_code == 200, r.text
    url = r.json()["photo_url"]
    assert url == f"/api/v1/families/{fid}/photo"
    assert (await family(client, member, fid))["photo_url"] == url
    listed = (await client.get(FAMILIES, headers=h(member))).json()
    assert listed[0]["photo_url"] == url

    got = await client.get(url, headers=h(member))
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert_clean(got.content)  # no EXIF, GPS, XMP, ICC, comment
    problem(await client.get(url, headers=h(stranger)), 404, "family.not_found")
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT owner_account_id, purpose, data FROM media_objects"))
        ).one()
    assert row[0] == aid(owner) and row[1] == "family_photo"
    assert_clean(bytes(row[2]))


async def test_replacing_and_removing_the_photo_deletes_the_old_one(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER)
    guardian = await person(client, sms, MEMBER)
    fid = await new_family(client, owner)
    second = await new_family(client, owner, "Second")
    await join(client, owner, fid, guardian)
    assert (await set_role(client, owner, fid, guardian, "guardian")).status_code == 200
    # the owner's other family has a photo of its own, which must survive
    assert (await upload_photo(client, owner, second, encode(photo(), "PNG"))).status_code == 200
    first = await upload_photo(client, owner, fid, encode(photo((40, 30)), "PNG"))
    assert first.status_code == 200
    old = (await client.get(f"{FAMILIES}/{fid}/photo", headers=h(owner))).content
    # a guardian may change it too
    r = await upload_photo(client, guardian, fid, encode(photo((50, 20)), "JPEG"))
    assert r.status_code == 200, r.text
    new = (await client.get(f"{FAMILIES}/{fid}/photo", headers=h(owner))).content
    assert new != old
    assert await count_rows(db, "media_objects") == 2
    assert (await client.get(f"{FAMILIES}/{second}/photo", headers=h(owner))).status_code == 200

    r = await client.delete(f"{FAMILIES}/{fid}/photo", headers=h(guardian))
    assert r.status_code == 200 and r.json()["photo_url"] is None
    problem(await client.get(f"{FAMILIES}/{fid}/photo", headers=h(owner)), 404, "media.not_found")
    assert await count_rows(db, "media_objects") == 1
    assert (await client.get(f"{FAMILIES}/{second}/photo", headers=h(owner))).status_code == 200


async def test_bad_photos_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    assert (await upload_photo(client, owner, fid, encode(photo(), "PNG"))).status_code == 200
    before = await snapshot(db)
    problem(
        await upload_photo(client, owner, fid, b"%PDF-1.4 not an image", "a.png"),
        415,
        "media.unsupported_type",
    )
    problem(await upload_photo(client, owner, fid, b""), 422, "media.empty")
    problem(
        await upload_photo(client, owner, fid, padded_png(5 * 1024 * 1024 + 1)),
        413,
        {"media.too_large", "request.too_large"},
    )
    r = await client.put(
        f"{FAMILIES}/{fid}/photo", files={"photo": ("a.png", b"x")}, headers=h(owner)
    )
    problem(r, 422, "request.invalid")
    assert await snapshot(db) == before


async def test_photos_up_to_the_image_cap_are_accepted(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    for size in (2 * 1024 * 1024, 5 * 1024 * 1024):  # over the 1 MiB JSON limit; the cap
        r = await upload_photo(client, owner, fid, padded_png(size), "a.png")
        assert r.status_code == 200, r.text
    got = await client.get(f"{FAMILIES}/{fid}/photo", headers=h(owner))
    assert len(assert_clean(got.content).tobytes()) > 0 and len(got.content) < 100_000
    assert await count_rows(db, "media_objects") == 1


async def test_photo_upload_needs_photos_or_camera(client: httpx.AsyncClient, sms: Any) -> None:
    owner = await person(client, sms, OWNER, device={"id": "IDFV-PHOTO", "model": "iPhone15,2"})
    fid = await new_family(client, owner)

    async def report(perms: dict[str, str]) -> None:
        r = await client.put(
            f"/api/v1/devices/{owner['device_id']}/permissions",
            json={"permissions": perms},
            headers=h(owner),
        )
        assert r.status_code == 200, r.text

    await report({"photos": "denied", "camera": "denied"})
    body = problem(
        await upload_photo(client, owner, fid, encode(photo(), "PNG")), 403, "permission.closed"
    )
    assert set(body["permissions"]) == {"photos", "camera"}
    # the rest of the family keeps working
    assert (await client.get(f"{FAMILIES}/{fid}", headers=h(owner))).status_code == 200
    await report({"camera": "granted"})
    assert (await upload_photo(client, owner, fid, encode(photo(), "PNG"))).status_code == 200


async def test_photo_changes_hands_with_the_family(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner, member, _, fid = await circle(client, sms)
    assert (await upload_photo(client, owner, fid, encode(photo(), "PNG"))).status_code == 200
    r = await client.post(
        f"{FAMILIES}/{fid}/transfer", json={"account_id": aid(member)}, headers=h(owner)
    )
    assert r.status_code == 200
    async with db.engine.connect() as conn:
        owner_id = (
            await conn.execute(text("SELECT owner_account_id FROM media_objects"))
        ).scalar_one()
    assert owner_id == aid(member)
    assert (await client.get(f"{FAMILIES}/{fid}/photo", headers=h(owner))).status_code == 200


async def test_members_see_each_others_avatars(client: httpx.AsyncClient, sms: Any) -> None:
    owner, member, _, fid = await circle(client, sms)
    stranger = await person(client, sms, STRANGER)
    r = await client.put(
        "/api/v1/me/avatar",
        files={"file": ("a.jpg", jpeg_with_metadata(), "image/jpeg")},
        headers=h(member),
    )
    assert r.status_code == 200, r.text
    fam = await family(client, owner, fid)
    [m] = [x for x in fam["members"] if x["account_id"] == aid(member)]
    assert m["avatar_url"] == f"/api/v1/families/{fid}/members/{aid(member)}/avatar"
    got = await client.get(m["avatar_url"], headers=h(owner))
    assert got.status_code == 200
    img = assert_clean(got.content)
    assert img.size == (96, 64)
    problem(await client.get(m["avatar_url"], headers=h(stranger)), 404, "not_found")
    # an account without an avatar
    url = f"/api/v1/families/{fid}/members/{aid(owner)}/avatar"
    problem(await client.get(url, headers=h(member)), 404, "media.not_found")


async def test_a_member_profile_shows_role_and_sharing(client: httpx.AsyncClient, sms: Any) -> None:
    owner, member, _, fid = await circle(client, sms)
    r = await client.get(f"{FAMILIES}/{fid}/members/{aid(owner)}", headers=h(member))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["role"], body["name"]) == ("owner", "Wang Fang")
    me = (await client.get(f"{FAMILIES}/{fid}/members/me", headers=h(member))).json()
    assert me["account_id"] == aid(member) and me["role"] == "member"
    stranger = await person(client, sms, STRANGER)
    fid2 = await new_family(client, stranger, "Other")
    await join(client, stranger, fid2, member)
    # sharing a family with the member, but not this one
    problem(
        await client.get(f"{FAMILIES}/{fid}/members/{aid(member)}", headers=h(stranger)),
        404,
        "family.not_found",
    )


async def test_image_content_is_what_was_uploaded(client: httpx.AsyncClient, sms: Any) -> None:
    from PIL import Image

    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    red = Image.new("RGB", (30, 20), (220, 20, 20))
    assert (await upload_photo(client, owner, fid, encode(red, "PNG"))).status_code == 200
    got = Image.open(
        io.BytesIO((await client.get(f"{FAMILIES}/{fid}/photo", headers=h(owner))).content)
    )
    r, g, b = got.convert("RGB").getpixel((15, 10))  # type: ignore[misc]
    assert r > 180 and g < 70 and b < 70


# --- no input is a 500 -------------------------------------------------------------------------


async def test_ids_that_are_not_ids_are_nobody(client: httpx.AsyncClient, sms: Any) -> None:
    """Ids are 32 hex digits; anything else is nobody. (A NUL byte, which PostgreSQL
    cannot store in text, is refused even before: 400 ``request.nul_character``.)"""
    owner, member, _, fid = await circle(client, sms)
    for bad in ("zz", "A" * 32, fid[:-1] + "g", "%00", "a%00b", fid + "%00"):
        want = {400} if "%00" in bad else {404}
        for method, url, kw in family_routes(bad, bad):
            r = await client.request(method, url, headers=h(owner), **kw)
            assert r.status_code in want, (method, url, r.text)
        for method, url, kw in family_routes(fid, bad):
            url = url.replace("0123456789abcdef" * 2, bad)
            if bad not in url:
                continue
            r = await client.request(method, url, headers=h(member), **kw)
            assert r.status_code in want | {403}, (method, url, r.text)
    for body in ({"account_id": "zz"}, {"account_id": "\u0000"}):
        nul = "\u0000" in body["account_id"]
        r = await client.post(f"{FAMILIES}/{fid}/transfer", json=body, headers=h(owner))
        problem(r, *((400, "request.nul_character") if nul else (404, "family.member_not_found")))
        r = await client.post(f"{FAMILIES}/{fid}/dependants", json=body, headers=h(owner))
        problem(r, *((400, "request.nul_character") if nul else (404, "dependant.not_found")))
    assert roles(await family(client, owner, fid))[aid(member)] == "member"


FIELDS = [
    "name",
    "location",
    "health",
    "schedule",
    "paused_until",
    "role",
    "account_id",
    "expires_in_days",
    "max_uses",
    "text",
    "scanned",
    "birth_date",
    "age_bracket",
]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=60),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(
    max_examples=examples(300),  # all on PostgreSQL, a quarter on SQLite
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_family_request_gets_a_500(
    client: httpx.AsyncClient, sms: Any, app: Any, data: Any
) -> None:
    if not hasattr(client, "_fam"):
        owner, member, _, fid = await circle(client, sms)
        inv = await invite(client, owner, fid, max_uses=50)
        client._fam = (owner, member, fid, inv)  # type: ignore[attr-defined]
    owner, member, fid, inv = client._fam  # type: ignore[attr-defined]
    spec = app.openapi()
    routes = [
        (m.upper(), p)
        for p, ops in spec["paths"].items()
        for m in ops
        if p.startswith(("/api/v1/families", "/api/v1/invitations"))
    ]
    method, path = data.draw(st.sampled_from(routes))
    ids = {
        "family_id": [fid, "0" * 32, "x"],
        "account_id": [aid(owner), aid(member), "me", "0" * 32],
        "invitation_id": [inv["id"], "0" * 32],
    }
    path = re.sub(
        r"\{([^}]+)\}",
        lambda m: data.draw(
            st.sampled_from(ids[m[1]]) | st.text(alphabet="abcdef0123456789-_.%", max_size=40)
        ),
        path,
    )
    if method == "DELETE" and re.fullmatch(r"/api/v1/families/[0-9a-f]{32}", path):
        return  # dissolving would end the fuzzing of this family early
    who = data.draw(st.sampled_from([owner, member, None]))
    headers = h(who) if who else {}
    kind = data.draw(st.sampled_from(["object", "json", "raw", "file"]))
    kw: dict[str, Any] = {}
    if kind == "object":
        body = data.draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4))
        if data.draw(st.booleans()):
            body["text"] = data.draw(st.sampled_from([inv["text"], inv["code"], inv["token"]]))
        kw["content"] = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    elif kind == "json":
        kw["content"] = json.dumps(data.draw(json_values)).encode()
        headers["content-type"] = "application/json"
    elif kind == "raw":
        kw["content"] = data.draw(st.binary(max_size=200))
        headers["content-type"] = data.draw(
            st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x"])
        )
    else:
        kw["files"] = {"file": ("x", data.draw(st.binary(max_size=300)))}
    if method in ("GET", "DELETE"):
        kw = {}
    r = await client.request(method, path, headers=headers, **kw)
    assert r.status_code < 500, f"{method} {path} -> {r.status_code}: {r.text[:300]}"
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
