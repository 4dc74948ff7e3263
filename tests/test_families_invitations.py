"""Invitations through the public API: a short code and a QR code (PNG and SVG,
decoded here with zxing-cpp as a phone's camera would), preview without
joining, accept after confirming; expired, revoked, used-up, tampered and
unknown codes get clear errors and change nothing."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image, ImageDraw
from sqlalchemy import text

from kares import clock
from kares.families import service as families
from tests.conftest import snapshot
from tests.test_families import (
    FAMILIES,
    MEMBER,
    OTHER,
    OWNER,
    STRANGER,
    aid,
    family,
    h,
    invite,
    join,
    new_family,
    person,
    problem,
    roles,
    set_role,
)

PREVIEW = "/api/v1/invitations/preview"
ACCEPT = "/api/v1/invitations/accept"


def decode_png(data: bytes) -> str:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    [found] = zxingcpp.read_barcodes(img)
    assert found.format == zxingcpp.BarcodeFormat.QRCode and found.valid
    return str(found.text)


def decode_svg(data: bytes) -> str:
    """Draw segno's SVG (one path of 1-module horizontal strokes) and decode it."""
    root = ET.fromstring(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    size = int(root.attrib["width"])
    [path] = root.iter("{http://www.w3.org/2000/svg}path")
    scale = int(re.fullmatch(r"scale\((\d+)\)", path.attrib["transform"])[1])  # type: ignore[index]
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    x = y = 0.0
    for cmd, a, b in re.findall(r"([MmHh])(-?[\d.]+)(?: (-?[\d.]+))?", path.attrib["d"]):
        if cmd in "Mm":
            x, y = (float(a), float(b)) if cmd == "M" else (x + float(a), y + float(b))
        else:
            x2 = float(a) if cmd == "H" else x + float(a)
            top = (y - 0.5) * scale
            draw.rectangle([x * scale, top, x2 * scale - 1, top + scale - 1], fill=0)
            x = x2
    [found] = zxingcpp.read_barcodes(img)
    return str(found.text)


async def preview(
    client: httpx.AsyncClient, me: dict[str, Any], text_: str, **kw: Any
) -> httpx.Response:
    return await client.post(PREVIEW, json={"text": text_, **kw}, headers=h(me))


async def accept(
    client: httpx.AsyncClient, me: dict[str, Any], text_: str, **kw: Any
) -> httpx.Response:
    return await client.post(ACCEPT, json={"text": text_, **kw}, headers=h(me))


def without_attempts(snap: dict[str, Any]) -> dict[str, Any]:
    """A wrong code is counted (against guessing): the one write a refusal makes."""
    return {k: v for k, v in snap.items() if k != "invitation_attempts"}


# --- the whole way, by QR code ---------------------------------------------------------------


async def test_invitation_by_qr_code_end_to_end(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    fid = await new_family(client, owner, "The Wangs")
    inv = await invite(client, owner, fid)
    assert inv["status"] == "active" and (inv["max_uses"], inv["uses"]) == (1, 0)
    assert inv["created_by"] == {"account_id": aid(owner), "name": "Wang Fang"}
    assert inv["text"] == f"kares://join/{inv['token']}"
    expires = datetime.fromisoformat(inv["expires_at"])
    assert abs((expires - clock.utcnow()).total_seconds() - 7 * 86400) < 60

    png = await client.get(inv["qr_png_url"], headers=h(owner))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["cache-control"] == "no-store"
    scanned = decode_png(png.content)
    assert scanned == inv["text"]
    svg = await client.get(inv["qr_svg_url"], headers=h(owner))
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert decode_svg(svg.content) == inv["text"]

    # the invitee's phone scanned it: first the preview, which changes nothing
    joiner = await person(client, sms, MEMBER, device={"id": "IDFV-SCAN", "model": "iPhone"})
    before = await snapshot(db)
    r = await preview(client, joiner, scanned, scanned=True)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "family_id": fid,
        "family_name": "The Wangs",
        "member_count": 1,
        "inviter_name": "Wang Fang",
        "expires_at": inv["expires_at"],
        "already_member": False,
    }
    assert await snapshot(db) == before
    problem(await client.get(f"{FAMILIES}/{fid}", headers=h(joiner)), 404, "family.not_found")

    # then, confirmed, the join
    r = await accept(client, joiner, scanned, scanned=True)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["joined"] is True and body["family"]["id"] == fid
    assert body["family"]["my_role"] == "member" and body["family"]["member_count"] == 2
    assert roles(await family(client, owner, fid)) == {aid(owner): "owner", aid(joiner): "member"}
    [listed] = (await client.get(f"{FAMILIES}/{fid}/invitations", headers=h(owner))).json()
    assert (listed["status"], listed["uses"], listed["code"]) == ("used_up", 1, None)


async def test_scanning_needs_the_camera_typing_does_not(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid)
    joiner = await person(client, sms, MEMBER, device={"id": "IDFV-NOCAM", "model": "iPhone"})
    r = await client.put(
        f"/api/v1/devices/{joiner['device_id']}/permissions",
        json={"permissions": {"camera": "denied"}},
        headers=h(joiner),
    )
    assert r.status_code == 200
    before = await snapshot(db)
    body = problem(
        await accept(client, joiner, inv["text"], scanned=True), 403, "permission.closed"
    )
    assert body["permissions"] == ["camera"]
    problem(await preview(client, joiner, inv["text"], scanned=True), 403, "permission.closed")
    assert await snapshot(db) == before
    # the same code, typed in
    assert (await accept(client, joiner, inv["code"])).status_code == 201


async def test_short_code_is_unambiguous_and_forgiving(client: httpx.AsyncClient, sms: Any) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid, max_uses=3)
    code = inv["code"]
    assert re.fullmatch(r"[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}", code), code
    assert not set(code) & set("01IO")
    for typed, phone in (
        (code.lower(), MEMBER),
        (" " + code.replace("-", " ") + " ", OTHER),
        (code.replace("-", ""), STRANGER),
    ):
        who = await person(client, sms, phone)
        r = await accept(client, who, typed)
        assert r.status_code == 201, (typed, r.text)
    # the bare token, without the kares:// prefix, is accepted as well
    inv2 = await invite(client, owner, fid)
    late = await person(client, sms, "+8613700000099")
    assert (await preview(client, late, inv2["token"])).status_code == 200


@pytest.mark.db_agnostic
def test_codes_are_spread_over_the_alphabet(monkeypatch: pytest.MonkeyPatch) -> None:
    from kares import crypto

    ring = crypto.KeyRing.parse("t:" + "a" * 43 + "=", "aW" * 22)
    monkeypatch.setattr(crypto, "_ring", ring)
    codes = {families.invitation_code(f"{i:032x}") for i in range(2000)}
    assert len(codes) == 2000
    seen = set("".join(codes))
    assert seen == set(families.CODE_ALPHABET)


# --- what stops an invitation -----------------------------------------------------------------


async def test_expired_invitations(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid, expires_in_days=1)
    joiner = await person(client, sms, MEMBER)
    assert (await preview(client, joiner, inv["code"])).status_code == 200
    clock.advance(86400 + 1)
    before = await snapshot(db)
    for t in (inv["text"], inv["code"]):
        problem(await preview(client, joiner, t), 410, "invitation.expired")
        problem(await accept(client, joiner, t), 410, "invitation.expired")
    problem(await client.get(inv["qr_png_url"], headers=h(owner)), 410, "invitation.expired")
    assert await snapshot(db) == before
    [listed] = (await client.get(f"{FAMILIES}/{fid}/invitations", headers=h(owner))).json()
    assert listed["status"] == "expired" and listed["token"] is None


async def test_revoked_invitations(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid, max_uses=10)
    joiner = await person(client, sms, MEMBER)
    r = await client.delete(f"{FAMILIES}/{fid}/invitations/{inv['id']}", headers=h(owner))
    assert r.status_code == 204
    # revoking again is fine
    r = await client.delete(f"{FAMILIES}/{fid}/invitations/{inv['id']}", headers=h(owner))
    assert r.status_code == 204
    before = await snapshot(db)
    for t in (inv["text"], inv["code"]):
        problem(await preview(client, joiner, t), 410, "invitation.revoked")
        problem(await accept(client, joiner, t), 410, "invitation.revoked")
    problem(await client.get(inv["qr_svg_url"], headers=h(owner)), 410, "invitation.revoked")
    assert await snapshot(db) == before
    got = await client.get(f"{FAMILIES}/{fid}/invitations/{inv['id']}", headers=h(owner))
    assert got.json()["status"] == "revoked" and got.json()["revoked_at"] is not None


async def test_used_up_invitations(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid, max_uses=2)
    for phone in (MEMBER, OTHER):
        who = await person(client, sms, phone)
        assert (await accept(client, who, inv["text"])).status_code == 201
    late = await person(client, sms, STRANGER)
    before = await snapshot(db)
    problem(await preview(client, late, inv["text"]), 410, "invitation.used_up")
    problem(await accept(client, late, inv["code"]), 410, "invitation.used_up")
    assert await snapshot(db) == before
    assert (await family(client, owner, fid))["member_count"] == 3


@pytest.mark.parametrize(
    "mangle",
    [
        "signature",
        "expiry",
        "id",
        "unknown_code",
        "garbage",
        "other_scheme",
        "truncated",
    ],
)
async def test_tampered_and_unknown_codes_are_invalid(
    client: httpx.AsyncClient, sms: Any, db: Any, mangle: str
) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid, expires_in_days=1)
    joiner = await person(client, sms, MEMBER)
    inv_id, exp, sig = inv["token"].split(".")
    flip = {"A": "B"}.get(sig[0], "A")
    bad = {
        "signature": f"kares://join/{inv_id}.{exp}.{flip}{sig[1:]}",
        # a month more of validity, same signature
        "expiry": f"kares://join/{inv_id}.{int(exp) + 30 * 86400}.{sig}",
        "id": f"kares://join/{'f' * 32}.{exp}.{sig}",
        "unknown_code": "ABCD-EFGH" if inv["code"] != "ABCD-EFGH" else "HGFE-DCBA",
        "garbage": "hello, this is not a code",
        "other_scheme": f"https://evil.example/join/{inv['token']}",
        "truncated": inv["text"][:-3],
    }[mangle]
    before = await snapshot(db)
    problem(await preview(client, joiner, bad), 400, "invitation.invalid")
    problem(await accept(client, joiner, bad), 400, "invitation.invalid")
    assert without_attempts(await snapshot(db)) == without_attempts(before)
    problem(await client.get(f"{FAMILIES}/{fid}", headers=h(joiner)), 404, "family.not_found")
    # the real one still works
    assert (await accept(client, joiner, inv["text"])).status_code == 201


async def test_bad_scan_bodies_are_refused(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    joiner = await person(client, sms, MEMBER)
    before = await snapshot(db)
    for body in ({}, {"text": ""}, {"text": "x" * 513}, {"text": 5}, {"text": "A", "join": 1}):
        for url in (PREVIEW, ACCEPT):
            problem(await client.post(url, json=body, headers=h(joiner)), 422, "request.invalid")
    assert await snapshot(db) == before


async def test_guessing_codes_is_limited(client: httpx.AsyncClient, sms: Any) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid)
    guesser = await person(client, sms, MEMBER)
    for i in range(families.ATTEMPTS_PER_HOUR):
        problem(await preview(client, guesser, f"2222-{i:04d}"), 400, "invitation.invalid")
    r = await accept(client, guesser, inv["code"])
    problem(r, 429, "invitation.too_many_attempts")
    assert int(r.headers["retry-after"]) > 0
    # someone else is not affected
    other = await person(client, sms, OTHER)
    assert (await preview(client, other, inv["code"])).status_code == 200
    clock.advance(3601)
    assert (await accept(client, guesser, inv["code"])).status_code == 201


# --- joining twice, listing, who may invite ---------------------------------------------------


async def test_joining_twice_changes_nothing(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid, max_uses=2)
    joiner = await person(client, sms, MEMBER)
    assert (await accept(client, joiner, inv["text"])).status_code == 201
    before = await snapshot(db)
    r = await accept(client, joiner, inv["code"])
    assert r.status_code == 200, r.text
    assert r.json()["joined"] is False and r.json()["family"]["id"] == fid
    p = await preview(client, joiner, inv["text"])
    assert p.status_code == 200 and p.json()["already_member"] is True
    assert await snapshot(db) == before
    # the owner "joining" their own family, and a member once the invitation is used up
    assert (await accept(client, owner, inv["code"])).json()["joined"] is False
    single = await invite(client, owner, fid)
    other = await person(client, sms, OTHER)
    assert (await accept(client, other, single["code"])).status_code == 201
    assert (await accept(client, other, single["code"])).status_code == 200


async def test_who_may_invite_and_see_invitations(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER)
    member = await person(client, sms, MEMBER)
    fid = await new_family(client, owner)
    await join(client, owner, fid, member)
    other_fid = await new_family(client, member, "Theirs")
    foreign = await invite(client, member, other_fid)
    before = await snapshot(db)
    base = f"{FAMILIES}/{fid}/invitations"
    problem(await client.post(base, json={}, headers=h(member)), 403, "family.forbidden")
    problem(await client.get(base, headers=h(member)), 403, "family.forbidden")
    # an invitation of another family is not found here, even to an owner
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/qr.png")):
        r = await client.request(method, f"{base}/{foreign['id']}{suffix}", headers=h(owner))
        problem(r, 404, "invitation.not_found")
    for body in (
        {"expires_in_days": 0},
        {"expires_in_days": 31},
        {"max_uses": 0},
        {"max_uses": 51},
        {"max_uses": "many"},
        {"expires_at": "2030-01-01T00:00:00Z"},
    ):
        problem(await client.post(base, json=body, headers=h(owner)), 422, "request.invalid")
    assert await snapshot(db) == before
    longest = await invite(client, owner, fid, expires_in_days=30, max_uses=50)
    assert (longest["max_uses"], longest["status"]) == (50, "active")


async def test_open_invitations_are_capped(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    for _ in range(families.MAX_ACTIVE_INVITATIONS):
        await invite(client, owner, fid)
    before = await snapshot(db)
    r = await client.post(f"{FAMILIES}/{fid}/invitations", json={}, headers=h(owner))
    problem(r, 409, "invitation.too_many")
    assert await snapshot(db) == before
    [first, *_] = (await client.get(f"{FAMILIES}/{fid}/invitations", headers=h(owner))).json()
    await client.delete(f"{FAMILIES}/{fid}/invitations/{first['id']}", headers=h(owner))
    await invite(client, owner, fid)


async def test_invitations_stop_with_their_inviters_rights(
    client: httpx.AsyncClient, sms: Any
) -> None:
    owner = await person(client, sms, OWNER)
    guardian = await person(client, sms, MEMBER)
    fid = await new_family(client, owner)
    await join(client, owner, fid, guardian)
    assert (await set_role(client, owner, fid, guardian, "guardian")).status_code == 200
    by_guardian = await invite(client, guardian, fid, max_uses=5)
    by_owner = await invite(client, owner, fid, max_uses=5)
    # the guardian leaves: what they handed out stops; the owner's does not
    assert (
        await client.delete(f"{FAMILIES}/{fid}/members/me", headers=h(guardian))
    ).status_code == 204
    joiner = await person(client, sms, OTHER)
    problem(await accept(client, joiner, by_guardian["code"]), 410, "invitation.revoked")
    assert (await accept(client, joiner, by_owner["code"])).status_code == 201


async def test_a_full_family_takes_nobody_more(
    client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(families, "MAX_MEMBERS", 2)
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid, max_uses=5)
    assert (await accept(client, await person(client, sms, MEMBER), inv["code"])).status_code == 201
    late = await person(client, sms, OTHER)
    before = await snapshot(db)
    problem(await accept(client, late, inv["code"]), 409, "family.full")
    assert await snapshot(db) == before


async def test_invitation_secrets_are_not_stored(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid)
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM family_invitations"))).one()
    stored = " ".join(str(v) for v in row)
    for secret in (inv["code"], inv["code"].replace("-", ""), inv["token"].split(".")[2]):
        assert secret not in stored


async def test_many_people_taking_the_last_use_at_once(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """One join wins the last use; everyone else is told it is used up (never a 500),
    and the family has exactly one new member, on either database."""
    import asyncio

    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    inv = await invite(client, owner, fid, max_uses=1)
    phones = [f"+86137000099{i:02d}" for i in range(6)]
    people = [await person(client, sms, p) for p in phones]
    answers = await asyncio.gather(*(accept(client, who, inv["text"]) for who in people))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] + [410] * (len(people) - 1), [r.text for r in answers]
    assert all(r.json()["code"] == "invitation.used_up" for r in answers if r.status_code == 410)
    assert (await family(client, owner, fid))["member_count"] == 2


async def test_a_burst_of_new_invitations_stops_at_the_cap(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """Forty invitations asked for at once: the family holds its count while each is
    made, so exactly the cap's worth are open and the rest are refused."""
    import asyncio

    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    cap = families.MAX_ACTIVE_INVITATIONS
    answers = await asyncio.gather(
        *(
            client.post(f"{FAMILIES}/{fid}/invitations", json={}, headers=h(owner))
            for _ in range(2 * cap)
        )
    )
    assert sorted(r.status_code for r in answers) == [201] * cap + [409] * cap
    assert all(r.json()["code"] == "invitation.too_many" for r in answers if r.status_code == 409)
    listed = (await client.get(f"{FAMILIES}/{fid}/invitations", headers=h(owner))).json()
    assert len([i for i in listed if i["status"] == "active"]) == cap


async def test_a_burst_of_guesses_gets_no_more_tries_than_the_limit(
    client: httpx.AsyncClient, sms: Any
) -> None:
    """Thirty wrong codes sent at once: exactly the hour's allowance of them is
    looked up (and answered 400); the rest are refused before any lookup (429)."""
    import asyncio

    owner = await person(client, sms, OWNER)
    fid = await new_family(client, owner)
    await invite(client, owner, fid)
    guesser = await person(client, sms, MEMBER)
    answers = await asyncio.gather(*(preview(client, guesser, f"2222-{i:04d}") for i in range(30)))
    codes = sorted(r.json()["code"] for r in answers)
    allowed = families.ATTEMPTS_PER_HOUR
    assert codes == ["invitation.invalid"] * allowed + ["invitation.too_many_attempts"] * (
        30 - allowed
    )
