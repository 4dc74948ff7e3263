"""Access and copy (policy 5.1): the export archive, made by a job from the
column declarations.

The archive holds every classified column of every row about the account
(checked here against the schema itself: the reach engine and the metadata,
not a list of tables), tracks as GPX and GeoJSON, images as files, the
consent receipts and login history, a manifest and an index.html; and nothing
about another person beyond what the app shows the account. The link works
once and expires; the file is deleted after its download and after the
configured time; the job's progress is visible; a guardian may export for a
ward; operators export from the command line, logged; and a table the test
suite alone declares is exported with no other change.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import BigInteger, Integer, SmallInteger, Table, select

from kares import clock, jobs
from kares.db import Base, UTCDateTime
from kares.fields import PI_INFO_KEY
from kares.privacy import reach
from kares.rights import export, formats
from kares.runtime import Runtime
from tests.conftest import TEST_DATA_KEYS, TEST_INDEX_KEY, bearer, query, sign_up
from tests.support import cli
from tests.support import extra_table as xt
from tests.support.watch import GUARDIAN, SECOND_GUARDIAN, household
from tests.test_avatar import encode, photo
from tests.test_location_ingest import fix
from tests.test_minors import CHILD, ask_guardian, sign_up_child

extra_table = xt.extra_table  # fixture

EXPORT = "/api/v1/me/rights/export"
IPHONE = {"id": "IDFV-ANN-EXPORT", "model": "iPhone15,2", "os": "iOS", "os_version": "18.1"}
# what the other guardian of the family holds: none of it may be in Ann's archive
OTHER_NAME = "Zephyrine Quillfeather"
OTHER_MODEL = "QuillPhone-Z9"
OTHER_LAT, OTHER_LON = 22.5432187, 114.0543219
# the child's SOS, answered by Ann: the alert's place is the child's, not Ann's
CHILD_LAT, CHILD_LON = 30.2741936, 120.1551847
ANN_LAT, ANN_LON = 31.2304123, 121.4737456
ANN_UA = "AnnPhone/1.0 <b>&amp;</b>"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"export_link_hours": 2, "export_keep_hours": 5}


def h(me: dict[str, Any]) -> dict[str, str]:
    return bearer(me["token"])


def aid(me: dict[str, Any]) -> str:
    return str(me["account"]["id"])


def problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["code"] == code, r.text


async def ask(client: httpx.AsyncClient, me: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = await client.post(EXPORT, json=body or None, headers=h(me))
    assert r.status_code == 202, r.text
    assert r.headers["location"] == r.json()["url"]
    return dict(r.json())


async def status_of(client: httpx.AsyncClient, me: dict[str, Any], req: dict) -> dict[str, Any]:
    r = await client.get(req["url"], headers=h(me))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def ready(
    client: httpx.AsyncClient, app: Any, me: dict[str, Any], **body: Any
) -> dict[str, Any]:
    """Ask for an archive, run the job, and return the request once ready."""
    req = await ask(client, me, **body)
    await jobs.run_due(app.state.runtime)
    done = await status_of(client, me, req)
    assert done["status"] == "ready", done
    assert done["download_url"]
    return done


async def download(client: httpx.AsyncClient, me: dict[str, Any], req: dict) -> httpx.Response:
    return await client.get(req["download_url"], headers=h(me))


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


# --- a full account --------------------------------------------------------------------------


async def full_account(client: httpx.AsyncClient, sms: Any, db: Any) -> dict[str, Any]:
    """Ann: in a family with a dependant wearing a paired watch and a second
    guardian, with a name, an avatar, places, two days of tracks, device
    permissions, consents, sign-ins, a child she guards whose SOS she answered
    (notifications); the second guardian with values of her own."""
    ctx = await household(client, sms)
    ann = ctx["guardians"][0]
    other = ctx["guardians"][1]
    fid = ctx["family_id"]
    # a sign-in from a phone that reports its permissions (a login event, a device)
    ann = await sign_up(client, sms, GUARDIAN, device=IPHONE)
    r = await client.put(
        f"/api/v1/devices/{ann['device_id']}/permissions",
        json={"permissions": {"location": "granted", "notifications": "granted"}},
        headers=h(ann),
    )
    assert r.status_code == 200, r.text
    r = await client.patch("/api/v1/me", json={"name": "Ann Holder"}, headers=h(ann))
    assert r.status_code == 200, r.text
    avatar = encode(photo(), "JPEG")
    r = await client.put(
        "/api/v1/me/avatar", files={"file": ("a.jpg", avatar, "image/jpeg")}, headers=h(ann)
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/families/{fid}/places",
        json={"name": "Ann's office", "lat": 31.2401, "lon": 121.4901},
        headers=h(ann),
    )
    assert r.status_code == 201, r.text
    now = clock.utcnow().replace(microsecond=0)
    fixes = [
        fix(i, now - timedelta(days=1, minutes=10 - i), lat=ANN_LAT + i * 1e-4, lon=ANN_LON)
        for i in range(3)
    ] + [fix(10 + i, now - timedelta(minutes=5 - i), lat=ANN_LAT, lon=ANN_LON) for i in range(3)]
    r = await client.post("/api/v1/location/fixes", json={"fixes": fixes}, headers=h(ann))
    assert r.status_code == 200, r.text

    # the other guardian: a name, a phone of her own, and fixes Ann may see on the map
    other = await sign_up(
        client,
        sms,
        SECOND_GUARDIAN,
        device={"id": "IDFV-OTHER", "model": OTHER_MODEL, "os": "Android", "os_version": "15"},
    )
    r = await client.patch("/api/v1/me", json={"name": OTHER_NAME}, headers=h(other))
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/location/fixes",
        json={"fixes": [fix(90, now - timedelta(minutes=2), lat=OTHER_LAT, lon=OTHER_LON)]},
        headers=h(other),
    )
    assert r.status_code == 200, r.text

    # the family's conversation: Ann writes and sends a photo, the other guardian
    # shares where she is (hers, not Ann's), Ann reads it; a direct conversation
    chat = f"/api/v1/conversations/{fid}/messages"
    r = await client.post(
        "/api/v1/messaging/attachments",
        params={"kind": "image"},
        files={"file": ("c.jpg", avatar, "image/jpeg")},
        headers=h(ann),
    )
    assert r.status_code == 201, r.text
    for body in (
        {"txn_id": "a1", "kind": "text", "text": "Ann's words"},
        {"txn_id": "a2", "kind": "image", "attachment_id": r.json()["id"]},
    ):
        r = await client.post(chat, json=body, headers=h(ann))
        assert r.status_code == 201, r.text
    r = await client.post(
        chat,
        json={"txn_id": "o1", "kind": "location", "lat": OTHER_LAT, "lon": OTHER_LON},
        headers=h(other),
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/conversations/{fid}/read", json={"message_id": r.json()["id"]}, headers=h(ann)
    )
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/conversations", json={"account_id": aid(other)}, headers=h(ann))
    assert r.status_code == 201, r.text

    # a child Ann guards raises an SOS; Ann answers it
    child = await sign_up_child(client, sms, CHILD)
    code = await ask_guardian(client, sms, child, GUARDIAN)
    r = await client.post("/api/v1/guardian/approve", json={"code": code}, headers=h(ann))
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/sos",
        json={"lat": CHILD_LAT, "lon": CHILD_LON, "accuracy_m": 10},
        headers=h(child),
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/api/v1/sos/{r.json()['id']}/acknowledge", headers=h(ann))
    assert r.status_code == 200, r.text
    await jobs.run_due(client._transport.app.state.runtime)  # type: ignore[attr-defined]
    return {"ann": ann, "other": other, "child": child, "ctx": ctx, "avatar_sent": avatar}


# --- checking an archive against the schema ----------------------------------------------------


def _ms_column(col: Any) -> bool:
    return col.name.endswith("_ms") and isinstance(col.type, Integer | BigInteger | SmallInteger)


def same(value: Any, written: Any, col: Any) -> bool:
    """Whether the archive wrote ``value`` of ``col`` faithfully (read back
    independently of the code that wrote it)."""
    if value is None:
        return written is None
    if col.info.get(PI_INFO_KEY) == "account.credentials":
        return bool(written == "(withheld)")
    if isinstance(value, datetime):
        assert isinstance(written, str) and written.endswith("Z"), written
        return datetime.fromisoformat(written) == value.astimezone(UTC)
    if _ms_column(col):
        assert isinstance(written, str) and written.endswith("Z"), written
        return datetime.fromisoformat(written) == datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, bytes | memoryview):
        return base64.b64decode(written) == bytes(value)
    return bool(value == written)


async def check_against_schema(db: Any, files: dict[str, bytes], account_id: str) -> set[str]:
    """Every classified column of every row the reach engine finds about the
    account is in the archive, under its category, with its value; rows that
    only name the account carry only what the rule allows. Returns the tables
    that had rows."""
    seen: set[str] = set()
    data = {
        name[len("data/") : -len(".json")]: json.loads(body)
        for name, body in files.items()
        if name.startswith("data/")
    }
    manifest = json.loads(files["manifest.json"])
    async with db.sessions() as s:
        values = await reach.values_of(s, account_id)
        for table in Base.metadata.sorted_tables:
            classified = [c for c in table.columns if c.info.get(PI_INFO_KEY)]
            own = reach.where_about(table, account_id, values, role="subject")
            if own is None or not classified:
                continue
            assert manifest["schema"][table.name] == {
                c.name: c.info[PI_INFO_KEY] for c in classified
            }
            key = list(table.primary_key.columns)
            rows = (await s.execute(select(*table.columns).where(own))).all()
            if rows:
                seen.add(table.name)
            for col in classified:
                cat = col.info[PI_INFO_KEY]
                part = data[cat]["tables"][table.name]
                by_key = {tuple(r[k.name] for k in key): r for r in part["rows"]}
                assert len(by_key) == len(rows), (table.name, cat)
                for row in rows:
                    m = row._mapping
                    k = tuple(export.plain(m[c.name], c) for c in key)
                    assert k in by_key, (table.name, k)
                    got = by_key[k][col.name]
                    assert same(m[col.name], got, col), (table.name, col.name, m[col.name], got)
            # rows of others that name the account: only the relationship's columns
            also = export.about(table, account_id, values)
            if also.naming is None:
                continue
            naming = (await s.execute(select(*table.columns).where(also.naming))).all()
            for col in classified:
                part = data[col.info[PI_INFO_KEY]]["tables"][table.name]
                assert len(part["rows_naming_you"]) == len(naming), table.name
                shown = export.shown_to_also(col, also.naming_columns)
                for r in part["rows_naming_you"]:
                    assert (col.name in r) == (shown or col.primary_key), (table.name, col.name)
    return seen


def assert_absent(files: dict[str, bytes], *needles: str) -> None:
    for name, body in files.items():
        for needle in needles:
            assert needle.encode() not in body, f"{needle!r} is in {name}"


# --- the tests -----------------------------------------------------------------------------------


async def test_the_archive_holds_every_classified_column_and_nothing_of_others(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    acc = await full_account(client, sms, db)
    ann = acc["ann"]
    req = await ready(client, app, ann)
    r = await download(client, ann, req)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    files = unzip(r.content)

    seen = await check_against_schema(db, files, aid(ann))
    # the account really has data in many tables (the check above is not vacuous)
    assert seen >= {
        "accounts",
        "consent_receipts",
        "devices",
        "device_permissions",
        "families",
        "family_members",
        "login_events",
        "location_fixes",
        "location_last",
        "media_objects",
        "message_attachments",
        "message_receipts",
        "messages",
        "notifications",
        "otp_challenges",
        "places",
        "sessions",
    }, seen
    profile = json.loads(files["data/account.profile.json"])
    [me] = profile["tables"]["accounts"]["rows"]
    assert me["name"] == "Ann Holder"
    phone = json.loads(files["data/contact.phone.json"])
    assert phone["tables"]["accounts"]["rows"][0]["phone"] == GUARDIAN  # decrypted
    assert phone["name"]["zh"] == "手机号码"

    # the guardianship of the child and the SOS Ann answered name her: the
    # relationship is there, the child's location is not
    guard = json.loads(files["data/minors.guardianship.json"])["tables"]["guardianships"]
    wards = {g["minor_account_id"] for g in guard["rows_naming_you"]}
    assert wards == {aid(acc["child"]), acc["ctx"]["dep"]}
    sos = json.loads(files["data/family.membership.json"])["tables"]["sos_alerts"]
    [answered] = sos["rows_naming_you"]
    assert answered["acknowledged_by"] == aid(ann)
    located = json.loads(files["data/location.precise.json"])["tables"]
    assert located["sos_alerts"]["rows_naming_you"] == [{"id": answered["id"]}]

    # what Ann said, decrypted; a direct conversation shows only that it names her
    content = json.loads(files["data/messaging.content.json"])["tables"]
    assert "Ann's words" in {json.loads(m["body"]).get("text") for m in content["messages"]["rows"]}
    meta = json.loads(files["data/messaging.metadata.json"])["tables"]
    [pair] = meta["conversations"]["rows_naming_you"]
    # the other person of the conversation is not Ann's to see: withheld
    assert set(pair.values()) == {pair["id"], aid(ann), "(withheld)"}

    # richer formats: tracks, images; receipts and logins on their own
    # a GPX and a GeoJSON file per UTC day of her good fixes (two days or three:
    # her fixes a day apart, and near midnight UTC a third day; CI once ran at 00:01)
    days = await query(
        db,
        "SELECT DISTINCT recorded_ms / 86400000 AS d FROM location_fixes "
        "WHERE account_id = :a AND status = 'ok'",
        a=aid(ann),
    )
    names = {datetime.fromtimestamp(int(r["d"]) * 86400, UTC).strftime("%Y-%m-%d") for r in days}
    assert len(names) >= 2
    tracks = sorted(n for n in files if n.startswith("tracks/"))
    assert tracks == sorted(f"tracks/{d}.{ext}" for d in names for ext in ("gpx", "geojson"))
    gpx = next(files[n] for n in tracks if n.endswith(".gpx")).decode()
    assert "<gpx" in gpx and f'lat="{ANN_LAT}"' in gpx
    geo = json.loads(next(files[n] for n in tracks if n.endswith(".geojson")))
    assert geo["type"] == "FeatureCollection" and geo["features"]
    [avatar] = [n for n in files if n.startswith("media/")]
    assert avatar.endswith(".jpg") and files[avatar][:3] == b"\xff\xd8\xff"
    receipts = json.loads(files["consent-receipts.json"])["rows"]
    assert any(r["subject"] == "category:location.precise" for r in receipts)
    logins = json.loads(files["login-history.json"])["rows"]
    assert any(r["device_model"] == IPHONE["model"] for r in logins)

    manifest = json.loads(files["manifest.json"])
    assert manifest["account_id"] == aid(ann)
    listed = {f["path"] for f in manifest["files"]}
    assert listed == set(files) - {"manifest.json", "index.html"}

    index = files["index.html"].decode()
    assert "Your data at Kares" in index and "您在 Kares 的数据" in index
    assert "手机号码" in index and "Phone number" in index
    for forbidden in ("<script", "http://", "https://", "src=", "<link"):
        assert forbidden not in index

    # nothing of the other guardian, nor the child's own data, is anywhere
    assert_absent(
        files,
        SECOND_GUARDIAN,
        SECOND_GUARDIAN[3:],
        OTHER_NAME,
        OTHER_MODEL,
        f"{OTHER_LAT}",
        f"{OTHER_LON}",
        aid(acc["other"]),
        CHILD,
        f"{CHILD_LAT}",
        f"{CHILD_LON}",
    )


async def test_the_archive_at_one_minute_past_midnight_utc(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    """The same archive made at 00:01 UTC, where the tracks' days (UTC) turn over
    between her fixes (CI once ran then, and a count of files written for
    noon failed)."""
    now = clock.utcnow()
    target = (now + timedelta(days=1)).replace(hour=0, minute=1, second=0, microsecond=0)
    clock.advance((target - now).total_seconds())
    await test_the_archive_holds_every_classified_column_and_nothing_of_others(client, sms, db, app)


async def test_the_index_escapes_what_it_shows(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await sign_up(client, sms, GUARDIAN)
    # a sign-in whose user agent is markup
    r = await client.post("/api/v1/auth/sms/send", json={"phone": GUARDIAN})
    assert r.status_code == 202, r.text
    r = await client.post(
        "/api/v1/auth/sms/verify",
        json={"phone": GUARDIAN, "code": sms.last_code(GUARDIAN)},
        headers={"User-Agent": ANN_UA},
    )
    assert r.status_code == 200, r.text
    req = await ready(client, app, me)
    files = unzip((await download(client, me, req)).content)
    index = files["index.html"].decode()
    assert ANN_UA not in index
    assert "AnnPhone/1.0 &lt;b&gt;&amp;amp;&lt;/b&gt;" in index


async def test_progress_is_visible_while_the_job_runs(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await sign_up(client, sms, GUARDIAN)
    reached, go = asyncio.Event(), asyncio.Event()

    @formats.register("zz_slow", title=("Slow", "慢"), about=("a test's", "测试"))
    async def slow(s: Any, rt: Any, account_id: str) -> AsyncIterator[formats.ArchiveFile]:
        reached.set()
        await go.wait()
        yield formats.ArchiveFile("note.txt", b"made while someone watched")

    try:
        req = await ask(client, me)
        queued = await status_of(client, me, req)
        assert queued["status"] == "queued" and queued["download_url"] is None
        run = asyncio.create_task(jobs.run_due(app.state.runtime))
        await asyncio.wait_for(reached.wait(), 60)
        mid = await status_of(client, me, req)
        assert mid["status"] == "running", mid
        assert 0 < mid["steps_done"] < mid["steps_total"], mid
        assert mid["download_url"] is None
        # asking again while it runs answers the same request
        again = await ask(client, me)
        assert again["id"] == req["id"]
        go.set()
        await asyncio.wait_for(run, 60)
    finally:
        formats._formats.pop("zz_slow", None)
    done = await status_of(client, me, req)
    assert done["status"] == "ready"
    assert done["steps_done"] == done["steps_total"] > mid["steps_done"]
    files = unzip((await download(client, me, done)).content)
    assert files["zz_slow/note.txt"] == b"made while someone watched"
    # once finished, a new request is a new archive
    assert (await ask(client, me))["id"] != req["id"]


async def test_a_build_cut_off_midway_is_made_again_from_the_start(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    """A worker that dies while writing leaves its job leased; when the lease
    runs out another run writes the archive from the start."""
    me = await sign_up(client, sms, GUARDIAN)
    reached = asyncio.Event()
    runs = 0

    @formats.register("zz_once_stuck", title=("Stuck", "卡住"), about=("a test's", "测试"))
    async def stuck(s: Any, rt: Any, account_id: str) -> AsyncIterator[formats.ArchiveFile]:
        nonlocal runs
        runs += 1
        if runs == 1:
            reached.set()
            await asyncio.Event().wait()  # never: the worker dies here
        yield formats.ArchiveFile("note.txt", b"second run")

    try:
        req = await ask(client, me)
        run = asyncio.create_task(jobs.run_due(app.state.runtime))
        await asyncio.wait_for(reached.wait(), 60)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert (await status_of(client, me, req))["status"] == "running"
        clock.advance(app.state.runtime.settings.jobs_lease_seconds + 1)
        await jobs.run_due(app.state.runtime)
    finally:
        formats._formats.pop("zz_once_stuck", None)
    done = await status_of(client, me, req)
    assert done["status"] == "ready" and runs == 2
    files = unzip((await download(client, me, done)).content)
    assert files["zz_once_stuck/note.txt"] == b"second run"
    leftovers = list(export.export_dir(app.state.runtime).iterdir())
    assert leftovers == [], leftovers


async def test_a_build_that_keeps_failing_gives_up_and_frees_the_account(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await sign_up(client, sms, GUARDIAN)

    @formats.register("zz_broken", title=("Broken", "损坏"), about=("a test's", "测试"))
    async def broken(s: Any, rt: Any, account_id: str) -> AsyncIterator[formats.ArchiveFile]:
        raise RuntimeError("this format is broken")
        yield  # pragma: no cover

    try:
        req = await ask(client, me)
        for _ in range(5):
            await jobs.run_due(app.state.runtime)
            clock.advance(3600)
    finally:
        formats._formats.pop("zz_broken", None)
    failed = await status_of(client, me, req)
    assert failed["status"] == "failed" and failed["download_url"] is None
    problem(
        await client.get(req["url"] + "/download?key=x", headers=h(me)), 410, "rights.export_failed"
    )
    assert list(export.export_dir(app.state.runtime).iterdir()) == []
    # a new request is a new archive, and it is made
    again = await ready(client, app, me)
    assert again["id"] != req["id"]


async def test_requests_at_once_make_one_archive(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await sign_up(client, sms, GUARDIAN)
    answers = await asyncio.gather(*(ask(client, me) for _ in range(4)))
    assert len({a["id"] for a in answers}) == 1
    assert len(await query(db, "SELECT id FROM rights_exports")) == 1
    r = await client.get(EXPORT, headers=h(me))
    assert [x["id"] for x in r.json()] == [answers[0]["id"]]


async def test_the_link_works_once_and_the_file_goes_after_the_download(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await sign_up(client, sms, GUARDIAN)
    req = await ready(client, app, me)
    path = export.archive_path(app.state.runtime, req["id"])
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    # a wrong secret is no archive, and uses nothing up
    wrong = req["download_url"].split("key=")[0] + "key=not-the-secret"
    problem(await client.get(wrong, headers=h(me)), 404, "rights.export_not_found")
    # someone else with the right link finds nothing either
    other = await sign_up(client, sms, SECOND_GUARDIAN)
    problem(await download(client, other, req), 404, "rights.export_not_found")
    assert (await client.get(req["url"], headers=h(other))).status_code == 404

    r = await download(client, me, req)
    assert r.status_code == 200, r.text
    assert "kares-data-" in r.headers["content-disposition"]
    assert "index.html" in unzip(r.content)
    problem(await download(client, me, req), 410, "rights.export_link_used")
    after = await status_of(client, me, req)
    assert after["status"] == "downloaded" and after["download_url"] is None
    assert after["file_deleted_at"] is not None
    assert not path.exists()


async def test_the_link_expires_and_the_file_is_deleted_after_the_keeping_time(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    me = await sign_up(client, sms, GUARDIAN)
    req = await ready(client, app, me)
    path = export.archive_path(app.state.runtime, req["id"])
    ready_at = datetime.fromisoformat(req["ready_at"])
    assert datetime.fromisoformat(req["link_expires_at"]) == ready_at + timedelta(hours=2)
    clock.advance(2 * 3600 + 1)
    problem(await download(client, me, req), 410, "rights.export_link_expired")
    assert path.exists()  # kept until its time: the job, not the refusal, deletes it
    # the deletion is a durable job: it waits in the database for its time
    [job] = await query(
        db, "SELECT run_at, account_id FROM jobs WHERE kind = :k", k=export.EXPIRE_JOB
    )
    assert job["account_id"] is None
    await jobs.run_due(app.state.runtime)
    assert path.exists()
    clock.advance(3 * 3600)
    # another process (a restart, a `kares worker`) runs it when its time comes
    later = Runtime.build(app.state.runtime.settings)
    try:
        stats = await jobs.run_due(later)
    finally:
        await later.close()
    assert stats.done == 1
    assert not path.exists()
    gone = await status_of(client, me, req)
    assert gone["status"] == "expired" and gone["file_deleted_at"] is not None
    problem(await download(client, me, req), 410, "rights.export_link_expired")


async def test_a_guardian_exports_for_a_child_and_nobody_else_can(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    guardian = await sign_up(client, sms, GUARDIAN)
    child = await sign_up_child(client, sms, CHILD)
    code = await ask_guardian(client, sms, child, GUARDIAN)
    r = await client.post("/api/v1/guardian/approve", json={"code": code}, headers=h(guardian))
    assert r.status_code == 200, r.text
    stranger = await sign_up(client, sms, SECOND_GUARDIAN)

    r = await client.post(EXPORT, json={"account_id": aid(child)}, headers=h(stranger))
    problem(r, 404, "guardian.not_found")
    r = await client.post(EXPORT, json={"account_id": aid(guardian)}, headers=h(child))
    problem(r, 404, "guardian.not_found")
    r = await client.post(EXPORT, json={"account_id": "nobody"}, headers=h(guardian))
    assert r.status_code == 422, r.text

    req = await ready(client, app, guardian, account_id=aid(child))
    assert req["account_id"] == aid(child)
    assert (await client.get(req["url"], headers=h(stranger))).status_code == 404
    files = unzip((await download(client, guardian, req)).content)
    manifest = json.loads(files["manifest.json"])
    assert manifest["account_id"] == aid(child)
    [acc] = json.loads(files["data/contact.phone.json"])["tables"]["accounts"]["rows"]
    assert acc["phone"] == CHILD
    assert_absent(files, GUARDIAN, SECOND_GUARDIAN)


async def test_a_dependant_is_exported_by_its_guardian(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    ctx = await household(client, sms)
    g, g2 = ctx["guardians"]
    req = await ready(client, app, g, account_id=ctx["dep"])
    files = unzip((await download(client, g, req)).content)
    [acc] = json.loads(files["data/account.profile.json"])["tables"]["accounts"]["rows"]
    assert acc["name"] == "Grandma Li"
    assert "watches" in json.loads(files["data/device.identifier.json"])["tables"]
    # the second guardian helps run the family but is not the dependant's guardian
    # of record (who consents for it): a copy of its data is not hers to take
    r = await client.post(EXPORT, json={"account_id": ctx["dep"]}, headers=h(g2))
    problem(r, 404, "guardian.not_found")


async def test_a_table_only_the_tests_declare_is_exported(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any, extra_table: Table
) -> None:
    me = await sign_up(client, sms, GUARDIAN)
    other = await sign_up(client, sms, SECOND_GUARDIAN)
    row = await xt.insert(db, aid(me), entry="Walked by the river", mood="cheerful")
    await xt.insert(db, aid(other), entry="Someone else's diary", mood="secretive")
    req = await ready(client, app, me)
    files = unzip((await download(client, me, req)).content)
    part = json.loads(files["data/account.profile.json"])["tables"][xt.NAME]
    [got] = part["rows"]
    assert got["entry"] == "Walked by the river"
    assert got["mood"] == "cheerful"  # decrypted
    assert datetime.fromisoformat(got["written_at"]) == row["written_at"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["schema"][xt.NAME] == {
        "entry": "account.profile",
        "mood": "account.profile",
        "written_at": "account.profile",
    }
    assert_absent(files, "Someone else's diary", "secretive")
    await check_against_schema(db, files, aid(me))


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KARES_VAR_DIR": str(tmp_path / "cli-var"),
        "KARES_DATABASE_URL": db_url,
        "KARES_DATA_KEYS": TEST_DATA_KEYS,
        "KARES_INDEX_KEY": TEST_INDEX_KEY,
    }


def kares(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kares", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


async def test_an_operator_exports_by_phone_and_it_is_logged(
    client: httpx.AsyncClient, sms: Any, db: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    me = await sign_up(client, sms, GUARDIAN)
    r = await client.patch("/api/v1/me", json={"name": "Ann Holder"}, headers=h(me))
    assert r.status_code == 200, r.text
    out = tmp_path / "ann.zip"
    national = GUARDIAN[3:]  # the number as an operator may type it
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    done = await asyncio.to_thread(
        kares, "rights", "export", "--phone", national, "--out", str(out), env=cli_env
    )
    assert done.returncode == 0, done.stderr
    files = unzip(out.read_bytes())
    [acc] = json.loads(files["data/account.profile.json"])["tables"]["accounts"]["rows"]
    assert acc["name"] == "Ann Holder"
    [logged] = await query(db, "SELECT action, account_id, actor, detail FROM staff_actions")
    assert logged["action"] == "rights.export" and logged["account_id"] == aid(me)
    detail = (
        logged["detail"] if isinstance(logged["detail"], dict) else json.loads(logged["detail"])
    )
    assert detail["rows"]["accounts"] == 1
    assert GUARDIAN not in json.dumps(detail) and "Ann" not in json.dumps(detail)

    missing = await cli.arun(
        "rights",
        "export",
        "--phone",
        "+8613999999999",
        "--out",
        str(tmp_path / "x.zip"),
        env=cli_env,
    )
    assert missing.returncode == 1 and "no account" in missing.stderr
    assert not (tmp_path / "x.zip").exists()
    assert len(await query(db, "SELECT id FROM staff_actions")) == 1


async def test_export_needs_sign_in(client: httpx.AsyncClient) -> None:
    r = await client.post(EXPORT)
    assert r.status_code == 401


@pytest.mark.db_agnostic
def test_values_are_written_as_json_holds_them() -> None:
    t = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    assert export.plain(t) == "2026-12-06T08:00:00Z"
    assert export.plain(b"\x00\xff") == "AP8="
    col = Base.metadata.tables["location_fixes"].c.recorded_ms
    assert export.plain(1_733_472_000_000, col) == "2024-12-06T08:00:00Z"
    assert isinstance(Base.metadata.tables["sessions"].c.created_at.type, UTCDateTime)
