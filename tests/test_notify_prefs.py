"""Notification preferences: categories, quiet hours, SOS and security always
on, and a closed Notifications permission. Pushes go to the console provider
writing JSON lines, so a test reads exactly what was pushed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kares import clock, jobs
from kares.db import Database
from kares.notify import service as notify
from kares.notify.service import Prefs, QuietHours, decide
from tests.conftest import bearer, sign_up, snapshot

PHONE_DEVICE = {"id": "IDFV-PREFS-1", "model": "iPhone15,2", "os": "iOS"}
PREFS = "/api/v1/notifications/preferences"
ZONE = "Asia/Shanghai"


@pytest.fixture
def outbox(push_outbox: Path) -> Path:
    return push_outbox


@pytest.fixture
def settings_overrides(outbox: Path) -> dict[str, Any]:
    return {"push_sink": "file", "push_file": outbox}


def pushed(outbox: Path) -> list[dict[str, Any]]:
    if not outbox.exists():
        return []
    return [json.loads(x) for x in outbox.read_text().splitlines()]


async def phone(client: httpx.AsyncClient, sms: Any) -> dict[str, Any]:
    me = await sign_up(client, sms, device=PHONE_DEVICE)
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/push",
        json={"provider": "console", "token": "phone-token-1"},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    return me


async def tell(db: Database, me: dict[str, Any], category: str, title: str = "t") -> str:
    async with db.sessions() as s:
        n = await notify.add(
            s, account_id=me["account"]["id"], category=category, title=title, body="b"
        )
        await s.commit()
        return n.id


async def run(app: Any) -> jobs.RunStats:
    return await jobs.run_due(app.state.runtime)


async def put(client: httpx.AsyncClient, me: dict[str, Any], body: Any) -> httpx.Response:
    return await client.put(PREFS, json=body, headers=bearer(me["token"]))


def hhmm(t: datetime) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


# --- the API ---------------------------------------------------------------------------


async def test_defaults_and_changes(client: httpx.AsyncClient, sms: Any) -> None:
    me = await sign_up(client, sms)
    h = bearer(me["token"])
    r = await client.get(PREFS, headers=h)
    assert r.status_code == 200
    assert r.json() == {
        "categories": {
            "security": True,
            "messages": True,
            "calls": True,
            "reminders": True,
            "location": True,
            "health": True,
            "sos": True,
            "system": True,
        },
        "always_on": ["security", "sos"],
        "quiet_hours": None,
    }
    quiet = {"start": "22:30", "end": "07:00", "time_zone": ZONE}
    r = await put(client, me, {"categories": {"reminders": False}, "quiet_hours": quiet})
    assert r.status_code == 200, r.text
    assert r.json()["categories"]["reminders"] is False
    assert r.json()["quiet_hours"] == quiet
    # categories not named keep their choice; quiet hours left out stay
    r = await put(client, me, {"categories": {"location": False, "sos": True}})
    body = r.json()
    assert body["categories"]["reminders"] is False and body["categories"]["location"] is False
    assert body["quiet_hours"] == quiet
    r = await put(client, me, {"categories": {"reminders": True}, "quiet_hours": None})
    assert r.json()["categories"]["reminders"] is True and r.json()["quiet_hours"] is None
    assert (await client.get(PREFS, headers=h)).json() == r.json()


BAD: list[tuple[Any, str]] = [
    ({"categories": {"sos": False}}, "preferences.cannot_disable"),
    ({"categories": {"security": False, "messages": False}}, "preferences.cannot_disable"),
    ({"categories": {"spam": False}}, "preferences.category_unknown"),
    (
        {"quiet_hours": {"start": "22:00", "end": "22:00", "time_zone": ZONE}},
        "preferences.quiet_hours_invalid",
    ),
    (
        {"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Mars/Olympus"}},
        "preferences.time_zone_unknown",
    ),
    (
        {"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "../../etc/passwd"}},
        "preferences.time_zone_unknown",
    ),
    (
        {"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "/etc/localtime"}},
        "preferences.time_zone_unknown",
    ),
    ({"quiet_hours": {"start": "7:00", "end": "08:00", "time_zone": ZONE}}, "request.invalid"),
    ({"quiet_hours": {"start": "24:00", "end": "08:00", "time_zone": ZONE}}, "request.invalid"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00"}}, "request.invalid"),
    ({"categories": {"messages": "false"}}, "request.invalid"),
    ({"categories": {"messages": 0}}, "request.invalid"),
    ({"categories": ["messages"]}, "request.invalid"),
    ({"volume": 11}, "request.invalid"),
    ([], "request.invalid"),
]


@pytest.mark.parametrize(("body", "code"), BAD, ids=lambda x: str(x)[:50])
async def test_bad_preferences_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Database, body: Any, code: str
) -> None:
    me = await sign_up(client, sms)
    r = await put(client, me, {"categories": {"reminders": False}})
    assert r.status_code == 200
    before = await snapshot(db)
    r = await put(client, me, body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    assert await snapshot(db) == before


# --- what gets pushed ------------------------------------------------------------------


async def test_a_category_turned_off_is_not_pushed_but_kept_in_the_inbox(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, outbox: Path
) -> None:
    me = await phone(client, sms)
    assert (await put(client, me, {"categories": {"reminders": False}})).status_code == 200
    await tell(db, me, "reminders", "Take your pills")
    await tell(db, me, "messages", "Hi from Mum")
    await run(app)
    assert [p["title"] for p in pushed(outbox)] == ["Hi from Mum"]
    inbox = (await client.get("/api/v1/notifications", headers=bearer(me["token"]))).json()
    assert [n["title"] for n in inbox] == ["Hi from Mum", "Take your pills"]


async def test_turning_a_category_off_also_stops_pushes_already_queued(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, outbox: Path
) -> None:
    me = await phone(client, sms)
    await tell(db, me, "location", "Dad left the park")
    assert (await put(client, me, {"categories": {"location": False}})).status_code == 200
    assert (await run(app)).done == 1
    assert pushed(outbox) == []


def quiet_around_now(hours_before: int = 1, hours_after: int = 2) -> dict[str, str]:
    local = clock.utcnow().astimezone(ZoneInfo(ZONE))
    return {
        "start": hhmm(local - timedelta(hours=hours_before)),
        "end": hhmm(local + timedelta(hours=hours_after)),
        "time_zone": ZONE,
    }


async def test_quiet_hours_hold_pushes_until_they_end_but_not_sos_or_security(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, outbox: Path
) -> None:
    me = await phone(client, sms)
    quiet = quiet_around_now()
    assert (await put(client, me, {"quiet_hours": quiet})).status_code == 200
    held = await tell(db, me, "messages", "Goodnight")
    await tell(db, me, "sos", "SOS from Grandpa")
    await tell(db, me, "security", "New sign-in")
    await run(app)
    assert [p["title"] for p in pushed(outbox)] == ["SOS from Grandpa", "New sign-in"]
    assert all(p["urgent"] for p in pushed(outbox))
    async with db.sessions() as s:
        (job,) = await jobs.pending(s)
    assert job.payload["notification_id"] == held and job.attempts == 0
    end_local = datetime.combine(
        clock.utcnow().astimezone(ZoneInfo(ZONE)).date(),
        time.fromisoformat(quiet["end"]),
        tzinfo=ZoneInfo(ZONE),
    )
    if end_local < clock.utcnow():
        end_local += timedelta(days=1)
    assert job.run_at == end_local.astimezone(UTC)
    clock.advance(3600)  # still quiet
    assert (await run(app)).ran == 0
    clock.advance((job.run_at - clock.utcnow()).total_seconds() + 1)
    assert (await run(app)).done == 1
    assert [p["title"] for p in pushed(outbox)][-1] == "Goodnight"


async def test_a_held_push_read_meanwhile_is_not_pushed(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, outbox: Path
) -> None:
    me = await phone(client, sms)
    assert (await put(client, me, {"quiet_hours": quiet_around_now()})).status_code == 200
    nid = await tell(db, me, "messages", "Seen in the app")
    r = await client.post(f"/api/v1/notifications/{nid}/read", headers=bearer(me["token"]))
    assert r.json() == {"marked": 1}
    clock.advance(3 * 3600)
    assert (await run(app)).done == 1
    assert pushed(outbox) == []


async def test_ending_quiet_hours_releases_held_pushes(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, outbox: Path
) -> None:
    me = await phone(client, sms)
    assert (await put(client, me, {"quiet_hours": quiet_around_now()})).status_code == 200
    await tell(db, me, "health", "Heart rate high")
    await run(app)
    assert pushed(outbox) == []
    assert (await put(client, me, {"quiet_hours": None})).status_code == 200
    assert (await run(app)).done == 1
    assert [p["title"] for p in pushed(outbox)] == ["Heart rate high"]


async def test_quiet_hours_that_start_while_queued_hold_the_push(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, outbox: Path
) -> None:
    me = await phone(client, sms)
    await tell(db, me, "reminders", "Queued before the quiet hours")
    assert (await put(client, me, {"quiet_hours": quiet_around_now()})).status_code == 200
    assert (await run(app)).deferred == 1
    assert pushed(outbox) == []


async def test_a_closed_notifications_permission_gets_no_push_but_the_inbox_fills(
    app: Any, client: httpx.AsyncClient, sms: Any, db: Database, outbox: Path
) -> None:
    me = await phone(client, sms)
    h = bearer(me["token"])
    perms = f"/api/v1/devices/{me['device_id']}/permissions"
    r = await client.put(perms, json={"permissions": {"notifications": "denied"}}, headers=h)
    assert r.status_code == 200
    await tell(db, me, "messages", "Closed 1")
    await tell(db, me, "sos", "Closed SOS")
    assert (await run(app)).ran == 0  # nothing was even queued
    assert pushed(outbox) == []
    assert (await client.get("/api/v1/notifications/unread-count", headers=h)).json() == {
        "unread": 2
    }
    r = await client.get("/api/v1/notifications", headers=h)  # the inbox needs no permission
    assert [n["title"] for n in r.json()] == ["Closed SOS", "Closed 1"]
    # queued while open, closed before delivery: not pushed either
    r = await client.put(perms, json={"permissions": {"notifications": "granted"}}, headers=h)
    await tell(db, me, "messages", "Queued while open")
    r = await client.put(perms, json={"permissions": {"notifications": "denied"}}, headers=h)
    assert (await run(app)).done == 1
    assert pushed(outbox) == []
    r = await client.put(perms, json={"permissions": {"notifications": "granted"}}, headers=h)
    await tell(db, me, "messages", "Open again")
    await run(app)
    assert [p["title"] for p in pushed(outbox)] == ["Open again"]


# --- the rules themselves --------------------------------------------------------------


NOW = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
LATER = NOW + timedelta(days=1)


@pytest.mark.db_agnostic
def test_decide() -> None:
    quiet = QuietHours(time(21, 0), time(7, 0), ZONE)
    base: dict[str, Any] = dict(
        now=NOW, prefs=Prefs(), signed_in=True, permission="granted", read=False, expires_at=LATER
    )
    assert decide(category="messages", **base).action == "send"
    assert decide(category="messages", **{**base, "signed_in": False}).action == "skip"
    assert decide(category="sos", **{**base, "permission": "denied"}).action == "skip"
    assert decide(category="messages", **{**base, "read": True}).action == "skip"
    assert decide(category="messages", **{**base, "expires_at": NOW}).action == "skip"
    muted = Prefs(frozenset({"messages", "sos"}), quiet)
    assert decide(category="messages", **{**base, "prefs": muted}).action == "skip"
    assert decide(category="sos", **{**base, "prefs": muted}).action == "send"
    assert decide(category="security", **{**base, "prefs": muted}).action == "send"
    d = decide(category="health", **{**base, "prefs": muted})
    assert d.action == "hold" and d.until == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # 07:00
    soon = {**base, "prefs": muted, "expires_at": NOW + timedelta(hours=1)}
    assert decide(category="health", **soon).action == "skip"


@pytest.mark.db_agnostic
@settings(max_examples=300, deadline=None)
@given(
    start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    end=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    zone=st.sampled_from(
        ["Asia/Shanghai", "Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]
    ),
    now=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
)
def test_quiet_hours_release_property(start: time, end: time, zone: str, now: datetime) -> None:
    """Inside the window, the release is after now, within a day, and outside the
    window; outside the window there is nothing to wait for."""
    if start == end:
        return
    q = QuietHours(start, end, zone)
    wall = now.astimezone(ZoneInfo(zone)).time().replace(tzinfo=None, fold=0)
    inside = (start <= wall < end) if start < end else (wall >= start or wall < end)
    release = q.release(now)
    if not inside:
        assert release is None
        return
    assert release is not None
    assert now < release <= now + timedelta(hours=25)
    assert q.release(release) is None
