"""Issue 13, "Done means": a random account with data in every table it can have
(a family it owns, a watch it paired, a child it is guardian of, tracks, places,
notifications, media, push, a tracker, SOS both ways) is deleted through the
API and its job, and afterwards no table (every classified column), no log line
written while it ran, and on SQLite no byte of the database files holds its
phone number, ids, name, tokens or coordinates; every other account's data is
as it was, but for what the deletion says it does to them (the family handed
over, their notices about the person gone, their rows' reference to it). A
backup taken before the deletion and restored afterwards (``kares backup``)
brings none of it back: the same checks hold after the restore, the raw files
being a plain pg_dump on PostgreSQL."""

from __future__ import annotations

import io
import itertools
import logging
import re
import struct
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import String, select

from kares import clock, crypto, jobs
from kares.calls import service as calls
from kares.db import Base
from kares.privacy import reach
from tests.conftest import POLICY_VERSION, bearer, query, sign_up, snapshot
from tests.support import schedule_items
from tests.support.backup import backup_env, kares, let_go, new_key, plain_dump
from tests.support.providers import FakeWeChat
from tests.support.watch import worn_watch
from tests.test_families import invite, join, person, set_role
from tests.test_location_ingest import fix, grant_precise, upload
from tests.test_minors import child_birth_date, register
from tests.test_rights_erase import ask

_numbers = itertools.count(1)
_backups = itertools.count(1)
ID = re.compile(r"[0-9a-f]{32}")
IPHONE = {"id": "IDFV-TARGET", "model": "iPhone15,2", "os": "iOS", "os_version": "18.1"}
HOME = (39.9042, 116.4074)  # the family's place: not where the person is drawn to be
APNS = "a" * 64
APPLE_EXPORT = Path(__file__).parent / "data/applehealth/apple_health_export/export.xml"


@pytest.fixture(scope="module")
def wechat_server() -> Iterator[FakeWeChat]:
    srv = FakeWeChat()
    yield srv
    srv.close()


@pytest.fixture
def settings_overrides(push_overrides: dict[str, Any], wechat_server: FakeWeChat) -> dict[str, Any]:
    wechat_server.reset()
    return {
        **push_overrides,
        "wechat_app_id": wechat_server.app_id,
        "wechat_app_secret": wechat_server.app_secret,
        "wechat_api_base": wechat_server.base,
    }


# tables the person has no rows in, and why
NOT_HELD = {
    "staff_actions": "no operator acted on the person",
    "jobs": "may hold nothing of theirs at that moment",
    "legal_holds": "an operator's hold; how a hold meets a deletion is open (docs/RIGHTS.md)",
    # tests/test_watch_chat.py deletes a wearer with one
    "watch_chat_cursors": "only a watch's wearer (a dependant) has one; the person wears none",
    # tests/test_health_alerts.py opens them for a dependant
    "health_alert_episodes": "only a dependant's thresholds open episodes; the person is none",
}
# and location_days on PostgreSQL: days are packed on SQLite only (location.days)


def phones() -> tuple[str, ...]:
    n = next(_numbers)
    return tuple(f"+86135{n:04d}{k:04d}" for k in range(5))


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


# a marker first: Hypothesis also draws string constants from the code under test
# ("transparency", "paused", "queued" came up), and a name that is a word of the
# catalog or the schema is found in every database file whatever the deletion did
names = st.text(
    alphabet=st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz李王张刘陈杨黄赵"),
    min_size=6,
    max_size=12,
).map(lambda t: "Qz" + t)
# micro-degrees with all six decimals, so a coordinate is not a value anything else
# might hold by chance (30.0)
coords = st.tuples(
    st.integers(22_000_000, 31_000_000).filter(lambda n: n % 10).map(lambda n: n / 1e6),
    st.integers(103_000_000, 113_000_000).filter(lambda n: n % 10).map(lambda n: n / 1e6),
)


def doubles(x: float) -> list[bytes]:
    """How a coordinate sits in the database files: SQLite's REAL (big-endian),
    the packed day arrays (little-endian), and as text."""
    return [struct.pack(">d", x), struct.pack("<d", x), repr(x).encode()]


def reminder_event(
    uid: str, start: Any, summary: str, rrule: str | None = None, *, confirm: bool = False
) -> str:
    """A VEVENT (a VTODO asking to be confirmed) with a reminder ten minutes before."""
    kind = "VTODO" if confirm else "VEVENT"
    at = start.strftime("%Y%m%dT%H%M%SZ")
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//kares tests//EN", f"BEGIN:{kind}"]
    lines += [f"UID:{uid}", f"DTSTAMP:{at}", f"DTSTART:{at}", f"SUMMARY:{summary}"]
    lines += [f"RRULE:{rrule}"] if rrule else []
    lines += ["X-KARES-CONFIRM:PT30M"] if confirm else []
    lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:x", "TRIGGER:-PT10M", "END:VALARM"]
    lines += [f"END:{kind}", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"


async def world(
    client: httpx.AsyncClient,
    sms: Any,
    app: Any,
    wechat: FakeWeChat,
    name: str,
    where: list[tuple[float, float]],
) -> dict[str, Any]:
    """The person and everyone around them."""
    p_me, p_heir, p_other, p_child, _ = phones()
    me = await sign_up(client, sms, p_me, device=IPHONE)
    h = bearer(me["token"])
    r = await client.patch("/api/v1/me", json={"name": name}, headers=h)
    assert r.status_code == 200, r.text
    await grant_precise(client, me)
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"location": "granted", "notifications": "granted"}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    await client.post("/api/v1/auth/password", json={"phone": p_me, "password": "wrong-pass-1"})
    r = await client.put(
        "/api/v1/me/avatar", files={"file": ("a.png", png(), "image/png")}, headers=h
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        "/api/v1/notifications/preferences", json={"categories": {"messages": False}}, headers=h
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/push",
        json={"provider": "apns", "token": APNS},
        headers=h,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/location/trackers", json={"name": f"{name} phone", "kind": "owntracks"}, headers=h
    )
    assert r.status_code == 201, r.text
    tracker = r.json()
    r = await client.post(
        "/api/v1/me/identities/wechat",
        json={"code": wechat.add_code(f"o_{next(_numbers)}")},
        headers=h,
    )
    assert r.status_code in (200, 201), r.text

    heir = await person(client, sms, p_heir, "Heir Person")
    other = await person(client, sms, p_other, "Other Person")
    for who in (heir, other):
        await grant_precise(client, who)
    r = await client.post("/api/v1/families", json={"name": "Family of Ten"}, headers=h)
    fid = r.json()["id"]
    await join(client, me, fid, heir)
    await join(client, me, fid, other)
    assert (await set_role(client, me, fid, heir, "guardian")).status_code == 200
    await invite(client, me, fid)  # an invitation left open
    r = await client.put(
        f"/api/v1/families/{fid}/photo", files={"file": ("p.png", png(), "image/png")}, headers=h
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/invitations/accept", json={"text": "ZZZZZZZZ"}, headers=h
    )  # a wrong code is counted
    assert r.status_code in (400, 404), r.text
    # conversations: the family's and a direct one, every kind of message, a
    # receipt and a message deleted for the person only
    chat = f"/api/v1/conversations/{fid}/messages"
    r = await client.post(
        "/api/v1/messaging/attachments",
        params={"kind": "image"},
        files={"file": ("c.png", png(), "image/png")},
        headers=h,
    )
    assert r.status_code == 201, r.text
    for k, body in enumerate(
        (
            {"kind": "text", "text": "see you at home"},
            {"kind": "location", "lat": 31.2304, "lon": 121.4737, "accuracy_m": 8.0},
            {"kind": "image", "attachment_id": r.json()["id"]},
        )
    ):
        r = await client.post(chat, json={"txn_id": f"w{k}", **body}, headers=h)
        assert r.status_code == 201, r.text
    r = await client.post(
        chat,
        json={"txn_id": "o1", "kind": "text", "text": "dinner?"},
        headers=bearer(other["token"]),
    )
    assert r.status_code == 201, r.text
    theirs = r.json()["id"]
    r = await client.post(
        f"/api/v1/conversations/{fid}/read", json={"message_id": theirs}, headers=h
    )
    assert r.status_code == 200, r.text
    r = await client.delete(f"{chat}/{theirs}", headers=h)
    assert r.status_code == 204, r.text
    r = await client.post(
        "/api/v1/conversations", json={"account_id": heir["account"]["id"]}, headers=h
    )
    assert r.status_code == 201, r.text
    direct = f"/api/v1/conversations/{r.json()['conversation']['id']}/messages"
    for who, txn, words in ((h, "d1", "just us"), (bearer(heir["token"]), "d2", "sure")):
        r = await client.post(
            direct, json={"txn_id": txn, "kind": "text", "text": words}, headers=who
        )
        assert r.status_code == 201, r.text
    # a Matrix client's sync filter (docs/MESSAGING.md, "Matrix clients")
    me_mx = f"@{me['account']['id']}:{app.state.runtime.settings.server_name}"
    r = await client.post(
        f"/_matrix/client/v3/user/{me_mx}/filter",
        json={"room": {"timeline": {"limit": 20}}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    # a CalDAV app password, a calendar made and an event put by the phone, and
    # a subscription URL of that calendar (docs/CALDAV.md)
    r = await client.post("/api/v1/caldav/passwords", json={"name": "Phone"}, headers=h)
    assert r.status_code == 201, r.text
    dav_auth = (r.json()["username"], r.json()["password"])
    cal_id = uuid.uuid4().hex
    cal_url = f"/dav/calendars/{me['account']['id']}/{cal_id}/"
    r = await client.request("MKCALENDAR", cal_url, auth=dav_auth)
    assert r.status_code == 201, r.text
    r = await client.put(
        cal_url + "e1.ics",
        content=b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
        b"UID:e1\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:20261210T090000Z\r\n"
        b"SUMMARY:Doctor\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        headers={"Content-Type": "text/calendar"},
        auth=dav_auth,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/calendars/{cal_id}/subscriptions", json={"name": "Feed"}, headers=h
    )
    assert r.status_code == 201, r.text
    # a dependant wearing a watch the person paired
    imei = f"88{next(_numbers):08d}"
    _, _, dep = await worn_watch(client, h, fid, "Grandma Dep", imei)
    # health: both separate consents, readings and steps, an Apple Health import
    # (its job runs below), and a threshold the person set for the dependant
    for cat in ("health.vitals", "health.activity"):
        r = await client.post(
            "/api/v1/me/consents",
            json={
                "subject": f"category:{cat}",
                "action": "grant",
                "policy_version": POLICY_VERSION,
            },
            headers=h,
        )
        assert r.status_code == 201, r.text
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"motion_fitness": "granted"}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    t = clock.utcnow() - timedelta(hours=2)
    samples = [
        {"metric": "heart_rate", "start": t.isoformat(), "value": 71, "unit": "bpm"},
        {
            "metric": "steps",
            "start": t.isoformat(),
            "end": (t + timedelta(minutes=5)).isoformat(),
            "value": 420,
            "unit": "count",
        },
    ]
    r = await client.post(
        "/api/v1/health/samples",
        json={
            "samples": [
                {**x, "source": "watch", "record_id": f"r{i}"} for i, x in enumerate(samples)
            ]
        },
        headers=h,
    )
    assert r.status_code == 200 and r.json()["stored"] == 2, r.text
    r = await client.post(
        "/api/v1/health/imports",
        content=APPLE_EXPORT.read_bytes(),
        headers={**h, "Content-Type": "application/xml"},
    )
    assert r.status_code == 202, r.text
    r = await client.put(
        f"/api/v1/families/{fid}/members/{dep}/health/alerts", json={"fall": True}, headers=h
    )
    assert r.status_code == 200, r.text
    # a schedule: a repeating event with a reminder on the person's own calendar
    r = await client.get("/api/v1/calendars", headers=h)
    assert r.status_code == 200, r.text
    mine = next(c["id"] for c in r.json()["calendars"] if c["account_id"] == me["account"]["id"])
    r = await client.post(
        f"/api/v1/calendars/{mine}/events",
        json={
            "title": f"{name} at the dentist",
            "start": clock.utcnow().isoformat(),
            "rrule": "FREQ=WEEKLY;COUNT=4",
            "reminders": [{"minutes_before": 30}],
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    # a family place with alerts both ways
    r = await client.post(
        f"/api/v1/families/{fid}/places",
        json={"name": "Home", "lat": HOME[0], "lon": HOME[1], "radius_m": 100},
        headers=h,
    )
    assert r.status_code in (200, 201), r.text
    place = r.json()["id"]
    r = await client.put(
        f"/api/v1/places/{place}/alerts",
        json={"subject_id": other["account"]["id"], "on_arrive": True, "on_leave": True},
        headers=h,
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        f"/api/v1/places/{place}/alerts",
        json={"subject_id": me["account"]["id"], "on_arrive": True, "on_leave": True},
        headers=bearer(heir["token"]),
    )
    assert r.status_code == 200, r.text
    # schedule reminders: one due in the jobs run below (delivered to the person, late),
    # a daily one still to come (its fires), a to-do the person confirmed
    cal = await schedule_items.personal_calendar(app.state.runtime.db, me)
    soon = clock.utcnow().replace(second=0, microsecond=0) + timedelta(minutes=12)
    n = next(_numbers)
    for uid, ics in (
        ("rem-soon", reminder_event(f"soon-{n}", soon, f"{name} pill")),
        ("rem-daily", reminder_event(f"daily-{n}", soon, f"{name} walk", "FREQ=DAILY")),
        ("rem-todo", reminder_event(f"todo-{n}", soon, f"{name} tea", confirm=True)),
    ):
        await schedule_items.put_item(app.state.runtime.db, me, cal, f"{uid}-{n}", ics)
    r = await client.post(
        f"/api/v1/calendars/{cal}/todos/todo-{n}/confirm",
        json={"occurrence": soon.isoformat()},
        headers=h,
    )
    assert r.status_code == 201, r.text
    # tracks: first at home (presence, an arrival told to the heir), then the drawn places
    now = clock.utcnow()
    at_home = [
        fix(i, now - timedelta(hours=3, minutes=i), lat=HOME[0], lon=HOME[1]) for i in (2, 1)
    ]
    assert (await upload(client, me, at_home)).status_code in (200, 201)
    drawn = [
        fix(10 + i, now - timedelta(minutes=60 - i), lat=lat, lon=lon)
        for i, (lat, lon) in enumerate(where)
    ]
    r = await upload(client, me, drawn)
    assert r.status_code in (200, 201), r.text
    clock.advance(700)
    await jobs.run_due(app.state.runtime)  # days packed, pushes sent
    # SOS: raised by the person (to the others), and by the other, answered by the person
    # a copy of their data asked for, and a request to staff
    r = await client.post("/api/v1/me/rights/export", headers=h)
    assert r.status_code == 202, r.text
    r = await client.post(
        "/api/v1/me/rights/requests",
        json={"kind": "feedback", "text": f"{name} would like dark mode"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/sos", json={"note": f"{name} needs help"}, headers=h)
    assert r.status_code in (200, 201), r.text
    r = await client.post("/api/v1/sos", json={}, headers=bearer(other["token"]))
    assert r.status_code in (200, 201), r.text
    r = await client.post(f"/api/v1/sos/{r.json()['id']}/acknowledge", headers=h)
    assert r.status_code == 200, r.text
    # guardian of a child under 14
    r = await register(client, sms, p_child, birth_date=child_birth_date())
    assert r.status_code == 201, r.text
    child = r.json()
    r = await client.post(
        "/api/v1/me/guardian", json={"guardian_phone": p_me}, headers=bearer(child["token"])
    )
    assert r.status_code == 202, r.text
    r = await client.post(
        "/api/v1/guardian/approve", json={"code": sms.codes_for(p_me)[-1]}, headers=h
    )
    assert r.status_code == 200, r.text
    # calls: one the person made and hung up, one the heir made that was rejected
    rt = app.state.runtime
    async with rt.db.sessions() as s:
        a, b = me["account"]["id"], heir["account"]["id"]
        call, _ = await calls.invite(s, rt, caller_id=a, caller_device="d1", callee_id=b, sdp="v=0")
        await calls.act(
            s, call_id=call.id, account_id=b, device="d2", name="answer", data={"sdp": "v=0"}
        )
        await calls.act(s, call_id=call.id, account_id=a, device="d1", name="hangup")
        call, _ = await calls.invite(s, rt, caller_id=b, caller_device="d2", callee_id=a, sdp="v=0")
        await calls.act(s, call_id=call.id, account_id=a, device="d1", name="reject")
    clock.advance(61)
    return {
        "me": me,
        "phone": p_me,
        "heir": heir,
        "others": [heir, other, child],
        "family_id": fid,
        "dep": dep,
        "tracker": tracker,
    }


async def secrets_of(db: Any, w: dict[str, Any], name: str) -> set[bytes]:
    """What must be gone: the number, the name, the session and tracker tokens
    and their hashes, the push token, and every string id of every row about
    the person (their own rows, found by the reach engine)."""
    me = w["me"]
    a = me["account"]["id"]
    out = {w["phone"].encode(), w["phone"][3:].encode(), name.encode(), APNS.encode(), a.encode()}
    for token in (me["token"], w["tracker"]["secret"]):
        out |= {token.encode(), crypto.token_hash(token).encode()}
    out.add(w["tracker"]["username"].encode())
    async with db.sessions() as s:
        values = await reach.values_of(s, a)
        # the blind indexes that name the person by their number
        for table in Base.metadata.sorted_tables:
            for k in (table.info or {}).get("keyed", ()):
                raw = values.get(k.value)
                if raw:
                    out.add(crypto.blind_index(raw, purpose=k.purpose).encode())
        for table in Base.metadata.sorted_tables:
            cond = reach.where_about(table, a, values, role="subject")
            if cond is None:
                continue
            # a row's own id (a key of several columns names other rows: an SOS
            # someone else raised, the family)
            cols = list(table.primary_key.columns)
            if len(cols) != 1 or not isinstance(cols[0].type, String):
                continue
            for row in (await s.execute(select(*cols).where(cond))).all():
                out |= {str(v).encode() for v in row if v and ID.fullmatch(str(v))}
    # the family goes on with the heir, and its photo with it
    [fam] = await query(
        db, "SELECT id, photo_media_id FROM families WHERE id = :f", f=w["family_id"]
    )
    out -= {str(v).encode() for v in fam.values()}
    return {x for x in out if len(x) >= 6}


async def tables_with_rows_about(db: Any, account_id: str) -> set[str]:
    out = set()
    async with db.sessions() as s:
        values = await reach.values_of(s, account_id)
        for table in Base.metadata.sorted_tables:
            cond = reach.where_about(table, account_id, values)
            if cond is not None and (await s.execute(select(table).where(cond).limit(1))).first():
                out.add(table.name)
    return out


def hits(blob: bytes, secrets: set[bytes]) -> list[bytes]:
    return [x for x in secrets if x in blob]


def rows_without(
    before: dict[str, list[tuple[Any, ...]]], secrets: set[bytes]
) -> dict[str, set[str]]:
    """Each table's rows (as text) that mention none of the secrets."""
    text = {x.decode("utf-8", "replace") for x in secrets}
    out: dict[str, set[str]] = {}
    for table, rows in before.items():
        out[table] = {repr(r) for r in rows if not any(t in repr(r) for t in text)}
    return out


# what a deletion changes in other people's data, besides rows naming the person
HANDED_OVER = {"families", "family_members"}
BOOKKEEPING = {"jobs"}
# counters that the deletion's notices to others move on (checked apart: never back)
ADVANCING = {"notification_heads"}


def heads_moved_on(before: dict[str, Any], after: dict[str, Any], gone: str) -> None:
    """Everyone else's inbox head is where it was or further on (the notices
    about the deletion), never back: a position is never given twice. The
    deleted account's is gone."""
    was = {r[0]: r[1] for r in before["notification_heads"] if r[0] != gone}
    now = {r[0]: r[1] for r in after["notification_heads"]}
    assert gone not in now
    for account, seq in was.items():
        assert now.get(account, -1) >= seq, (account, seq, now.get(account))


def database_files(url: str) -> list[Path]:
    path = Path(url.split("///", 1)[1].split("?", 1)[0])
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


# no shrinking: each example builds a whole world (seconds), and a failure's
# message already names the table and row that kept something
@settings(
    max_examples=3,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=names, where=st.lists(coords, min_size=1, max_size=4, unique=True))
async def test_a_deleted_account_leaves_nothing_and_changes_no_one_else(
    client: httpx.AsyncClient,
    sms: Any,
    app: Any,
    db: Any,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
    wechat_server: FakeWeChat,
    var_dir: Path,
    tmp_path: Path,
    name: str,
    where: list[tuple[float, float]],
) -> None:
    w = await world(client, sms, app, wechat_server, name, where)
    me, heir = w["me"], w["heir"]
    a = me["account"]["id"]
    secrets = await secrets_of(db, w, name)
    coordinates = {b for lat, lon in where for x in (lat, lon) for b in doubles(x)}

    r = await ask(
        client,
        sms,
        me,
        families=[{"family_id": w["family_id"], "action": "transfer", "to": heir["account"]["id"]}],
    )
    assert r.status_code == 202, r.text
    # the person has rows in every table that can hold them
    held = await tables_with_rows_about(db, a)
    reached = {r.table.name for r in reach.reaches()}
    may_lack = set(NOT_HELD) | ({"location_days"} if db.dialect != "sqlite" else set())
    assert reached - held <= may_lack, sorted(reached - held - may_lack)

    # what was due before the deletion runs first (and may log what it does)
    clock.advance(15 * 86400 - 3600)
    await jobs.run_due(app.state.runtime)
    before = await snapshot(db)
    clean = rows_without(before, secrets)
    # a backup taken now, before the deletion, is restored at the end
    n = next(_backups)
    env = backup_env(db_url, var_dir, new_key(tmp_path, f"key-{n}.txt"))
    saved = tmp_path / f"before-{n}.age"
    r = await kares("backup", "create", "--out", str(saved), env=env)
    assert r.returncode == 0, r.stderr
    clock.advance(2 * 3600)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        await jobs.run_due(app.state.runtime)

    # the account is gone
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    assert (await client.get("/api/v1/me", headers=bearer(me["token"]))).status_code == 401
    # the family went on with the heir
    [fam] = await query(db, "SELECT owner_account_id FROM families WHERE id = :f", f=w["family_id"])
    assert fam["owner_account_id"] == heir["account"]["id"]

    # no table holds any of it, in any classified column (or any column at all)
    after = await snapshot(db)
    for table, rows in after.items():
        for row in rows:
            text = repr(row).encode()
            assert not hits(text, secrets), (table, row)
    # no log line written while it ran
    for rec in caplog.records:
        line = rec.getMessage().encode()
        assert not hits(line, secrets), line
        assert not any(c in line for c in coordinates if len(c) > 8), line

    # everyone else's data is as it was, but for the hand-over
    now = {t: {repr(r) for r in rows} for t, rows in after.items()}
    for table, rows in clean.items():
        if table in HANDED_OVER | BOOKKEEPING | ADVANCING:
            continue
        missing = rows - now[table]
        assert not missing, (table, sorted(missing)[:3])
    heads_moved_on(before, after, a)
    for other in w["others"][:2]:
        r = await client.get("/api/v1/me", headers=bearer(other["token"]))
        assert r.status_code == 200, r.text
    # what the person said stays with the others, from nobody
    r = await client.get(
        f"/api/v1/conversations/{w['family_id']}/messages", headers=bearer(heir["token"])
    )
    said = {m["text"]: m["sender_id"] for m in r.json()["messages"] if m["kind"] == "text"}
    assert said["see you at home"] is None and said["dinner?"] is not None
    # the child's guardianship went with the guardian: it needs one again, and is told
    child = w["others"][2]
    r = await client.get("/api/v1/me", headers=bearer(child["token"]))
    assert (r.status_code, r.json()["code"]) == (403, "guardian.consent_required")
    told = await query(
        db, "SELECT title FROM notifications WHERE account_id = :c", c=child["account"]["id"]
    )
    assert "Your guardian's account was deleted" in [n["title"] for n in told]

    # the raw database files hold none of it (SQLite; PostgreSQL: docs/RIGHTS.md)
    if db.dialect == "sqlite":
        for path in database_files(db_url):
            blob = path.read_bytes()
            assert not hits(blob, secrets), (path.name, hits(blob, secrets)[:3])
            assert not hits(blob, coordinates), (path.name, "a coordinate")

    # the backup taken before the deletion, restored: the register deletes it again
    await let_go(db)
    r = await kares("backup", "restore", str(saved), "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert "re-deleted (account" in r.stdout, r.stdout
    assert not hits((r.stdout + r.stderr).encode(), secrets)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    restored = await snapshot(db)
    # the backup's queued jobs are back (the deletion's own job finds nothing to do):
    # their kind and status are words a generated name may equal ("queued")
    wordless = secrets - {name.encode()}
    for table, rows in restored.items():
        for row in rows:
            found = hits(repr(row).encode(), wordless if table == "jobs" else secrets)
            assert not found, ("restored", table, row)
    now = {t: {repr(r) for r in rows} for t, rows in restored.items()}
    for table, rows in clean.items():
        if table in HANDED_OVER | BOOKKEEPING | ADVANCING:
            continue
        missing = rows - now[table]
        assert not missing, ("restored", table, sorted(missing)[:3])
    heads_moved_on(before, restored, a)
    blobs = (
        [p.read_bytes() for p in database_files(db_url)]
        if db.dialect == "sqlite"
        else [plain_dump(db_url)]
    )
    for blob in blobs:
        assert not hits(blob, secrets), ("restored", hits(blob, secrets)[:3])
        assert not hits(blob, coordinates), ("restored", "a coordinate")
