"""Retention (policy 4.1): what the catalog keeps for a number of days goes after them.

Time moves with ``kares.clock`` (the service's clock); the data comes in through
the public API where there is one (sign-up, location uploads) and the retention
engine runs as its job would.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, text

from kares import clock, fields, jobs
from kares.db import UTCDateTime
from kares.domains import metadata
from kares.fields import not_personal, personal, table_info
from kares.location import days
from kares.notify import service as notify
from kares.privacy import catalog
from kares.retention import commands, service
from kares.retention import jobs as retention_jobs
from tests.conftest import count_rows, query
from tests.test_location_days import fake_pack, pack_due, packed_days
from tests.test_location_ingest import member, upload

ME = "+8613700005001"
OTHER = "+8613700005002"
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def rules() -> list[service.Rule]:
    return service.plan(catalog.load())


def rule(table: str, lifetime: bool = False) -> service.Rule:
    (r,) = [x for x in rules() if x.table.name == table and (x.days is None) == lifetime]
    return r


def set_clock(at: datetime) -> None:
    """Put the service's clock at ``at``."""
    clock.advance((at - clock.utcnow()).total_seconds())


def fixes(start: datetime, n: int, tag: str, step: timedelta = timedelta(minutes=10)) -> list:
    return [
        {
            "id": f"{tag}{i}",
            "t": (start + i * step).isoformat(),
            "lat": 31.23 + i * 1e-4,
            "lon": 121.47 + i * 5e-5,
            "accuracy_m": 8,
        }
        for i in range(n)
    ]


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


async def retain(app: Any, only: list[service.Rule] | None = None, **kw: Any) -> service.RunResult:
    return await service.run(app.state.runtime, rules() if only is None else only, **kw)


async def notify_me(db: Any, account_id: str, title: str = "Hello") -> None:
    async with db.sessions() as s:
        await notify.add(s, account_id=account_id, category="messages", title=title, body="b")
        await s.commit()


# --- the declarations ---------------------------------------------------------------------


@pytest.mark.db_agnostic
def test_every_table_with_data_kept_for_days_says_when_it_was_collected() -> None:
    """The plan covers every column of a category kept for a number of days, and a
    table that holds one without ``collected=`` makes the plan fail, naming it."""
    cat = catalog.load()
    covered = {(r.table.name, c) for r in rules() for c in r.columns}
    for t in metadata.tables.values():
        for c in t.columns:
            key = c.info.get(fields.PI_INFO_KEY)
            if key is not None and cat.categories[key].retention.days is not None:
                assert (t.name, c.name) in covered, f"{t.name}.{c.name} is never expired"
                assert t.info.get("collected"), f"{t.name} declares no collected=..."
    md = MetaData()
    Table(
        "new_things",
        md,
        Column("id", Integer, primary_key=True),
        Column("ip", String(64), info=personal("security.login_environment")),
        Column("at", UTCDateTime(), info=not_personal("when")),
        **table_info(subject=None, why="a test table"),
    )
    with pytest.raises(service.RetentionPlanError, match="new_things"):
        service.plan(cat, md)


@pytest.mark.db_agnostic
def test_a_new_table_is_enforced_from_its_declarations_alone() -> None:
    """The engine is generic: a table declared in the test alone gets its rules."""
    md = MetaData()
    Table("accounts", md, Column("id", String(32), primary_key=True))
    Table(
        "gadget_pings",
        md,
        Column("id", Integer, primary_key=True),
        Column("account_id", String(32), ForeignKey("accounts.id")),
        Column("lat", String(20), nullable=True, info=personal("location.precise")),
        Column("name", String(20), info=personal("account.profile")),
        Column("at", UTCDateTime(), info=not_personal("when")),
        **table_info(subject="account_id", collected="at"),
    )
    (r,) = service.plan(catalog.load(), md)
    assert (r.table.name, r.days, r.action, r.columns) == (
        "gadget_pings",
        90,
        "anonymise",
        ("lat",),
    )


@pytest.mark.db_agnostic
def test_a_row_with_data_kept_longer_is_anonymised_else_deleted() -> None:
    """The choice for rows that mix retentions (docs/RIGHTS.md): a consent receipt
    keeps its choice for the account's life and loses the session it was given in;
    a login event cannot exist without its address and time, so it goes whole."""
    assert rule("consent_receipts").action == "anonymise"
    assert rule("consent_receipts").columns == ("session_id",)
    assert rule("login_events").action == "delete"
    assert rule("location_fixes").action == "delete"  # the battery level goes with it
    for table in ("otp_challenges", "auth_tickets", "password_limits", "watch_hello_counts"):
        assert rule(table, lifetime=True).lifetime, table


# --- each retention, just inside and just outside -----------------------------------------


async def test_rows_just_inside_their_retention_stay_and_just_outside_go(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    me = await member(client, sms, ME)
    aid = me["account"]["id"]
    now = clock.utcnow()
    r = await upload(client, me, fixes(now - timedelta(hours=2), 6, "a"))
    assert r.status_code == 200, r.text
    await notify_me(db, aid)
    if db.engine.dialect.name == "sqlite":
        await pack_due(app)
    else:
        await fake_pack(db, aid, ms(now - timedelta(hours=2)) // days.DAY_MS)
    seen = set()
    for rl in sorted(rules(), key=lambda x: x.days or 0):
        if rl.days is None:
            continue
        t, c = rl.table.name, rl.collected
        (first,) = await query(db, f"SELECT min({c}) AS v FROM {t}")
        if first["v"] is None:
            continue
        v = first["v"]
        if rl.unit == "time" and isinstance(v, str):  # SQLite gives the stored text
            v = datetime.fromisoformat(v)
        if isinstance(v, datetime) and v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        expires = rl.to_time(v)
        assert expires is not None
        seen.add(t)
        before = await count_rows(db, t)
        set_clock(expires - SECOND)  # just inside
        assert (await retain(app, [rl])).total == 0, t
        assert await count_rows(db, t) == before
        set_clock(expires + SECOND)  # just outside
        assert (await retain(app, [rl])).total >= 1, t
        left = await query(db, f"SELECT count(*) AS n FROM {t} WHERE {c} = :v", v=first["v"])
        if rl.action == "delete":
            assert left[0]["n"] == 0, t
        else:
            nulls = " AND ".join(f"{x} IS NULL" for x in rl.columns)
            n = await query(
                db, f"SELECT count(*) AS n FROM {t} WHERE {c} = :v AND {nulls}", v=first["v"]
            )
            assert n[0]["n"] == left[0]["n"] >= 1, t
    assert {"location_fixes", "location_last", "location_days", "notifications"} <= seen
    assert {"login_events", "sessions", "consent_receipts"} <= seen


async def test_a_run_removes_every_category_at_its_own_age(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    """91 days on, location and notifications are gone and the login history is
    still there; 181 days on, it is gone too and the consent receipts stay, without
    the session they were given in."""
    me = await member(client, sms, ME)
    aid = me["account"]["id"]
    h = {"Authorization": f"Bearer {me['token']}"}
    fam = (await client.post("/api/v1/families", json={"name": "Li"}, headers=h)).json()
    r = await client.post(
        f"/api/v1/families/{fam['id']}/places",
        json={"name": "Home", "lat": 31.23, "lon": 121.47, "radius_m": 150},
        headers=h,
    )
    assert r.status_code == 201, r.text
    await upload(client, me, fixes(clock.utcnow() - timedelta(hours=1), 5, "a"))
    await notify_me(db, aid)
    receipts = await count_rows(db, "consent_receipts")
    assert await query(db, "SELECT 1 FROM consent_receipts WHERE session_id IS NOT NULL")
    clock.advance(91 * 86400)
    await retain(app)
    for t in ("location_fixes", "location_last", "notifications", "place_presence"):
        assert await count_rows(db, t) == 0, t
    # a saved place is kept until someone deletes it (location.places, 2026-12-06.2)
    assert [p["name"] for p in await query(db, "SELECT name FROM places")] == ["Home"]
    assert await count_rows(db, "login_events") >= 1
    assert await count_rows(db, "otp_challenges") == 0  # short-lived: long gone
    clock.advance(90 * 86400)
    await retain(app)
    assert await count_rows(db, "login_events") == 0
    assert await count_rows(db, "sessions") == 0
    assert await count_rows(db, "consent_receipts") == receipts
    assert not await query(db, "SELECT 1 FROM consent_receipts WHERE session_id IS NOT NULL")
    assert await count_rows(db, "accounts") == 1  # kept for the account's life
    assert await count_rows(db, "places") == 1
    assert (await retain(app)).total == 0  # nothing left to do


# --- short-lived rows ---------------------------------------------------------------------


async def test_short_lived_rows_go_once_their_lifetime_is_over(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    await member(client, sms, ME)
    (otp,) = await query(db, "SELECT id, expires_at FROM otp_challenges")
    now = clock.utcnow()
    async with db.engine.begin() as conn:
        await conn.execute(  # a sign-in ticket of three days (as a long-lived one would be)
            text(
                "INSERT INTO auth_tickets (id, secret_hash, kind, provider, ip, created_at, "
                "expires_at) VALUES ('t1', 'h1', 'nonce', 'apple', '10.0.0.1', :c, :e)"
            ),
            {"c": now, "e": now + 3 * DAY - timedelta(hours=1)},
        )
        for key, lock in (("free", None), ("locked", now + 3 * DAY)):
            await conn.execute(
                text(
                    "INSERT INTO password_limits (scope, key, failures, locked_until, "
                    "window_started_at, window_count) VALUES ('number', :k, 1, :l, :w, 1)"
                ),
                {"k": key, "l": lock, "w": now},
            )
        await conn.execute(
            text(
                "INSERT INTO watch_hello_counts (peer_hash, window_start, count) "
                "VALUES ('peer', :w, 3)"
            ),
            {"w": now},
        )
    lifetime = [r for r in rules() if r.days is None]
    set_clock(now + timedelta(minutes=59))
    await retain(app, lifetime)
    for t in ("otp_challenges", "auth_tickets", "watch_hello_counts"):
        assert await count_rows(db, t) == 1, t
    assert await count_rows(db, "password_limits") == 2
    set_clock(now + timedelta(minutes=61))
    await retain(app, lifetime)
    assert await count_rows(db, "watch_hello_counts") == 0  # its hour is over
    assert await query(db, "SELECT key FROM password_limits") == [{"key": "locked"}]
    expires = otp["expires_at"]
    expires = datetime.fromisoformat(expires) if isinstance(expires, str) else expires
    expires = expires.replace(tzinfo=UTC) if expires.tzinfo is None else expires
    set_clock(expires + timedelta(hours=1) + SECOND)
    await retain(app, lifetime)
    assert await count_rows(db, "otp_challenges") == 0
    set_clock(now + 3 * DAY + SECOND)
    await retain(app, lifetime)
    assert await count_rows(db, "auth_tickets") == 0
    assert await count_rows(db, "password_limits") == 0  # its lock ran out


# --- legal hold ---------------------------------------------------------------------------


async def test_a_legal_hold_keeps_an_accounts_data_until_it_is_released(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    rt = app.state.runtime
    held = await member(client, sms, ME)
    other = await member(client, sms, OTHER)
    start = clock.utcnow() - timedelta(hours=1)
    for m in (held, other):
        assert (await upload(client, m, fixes(start, 4, "a"))).status_code == 200
    out, err = io.StringIO(), io.StringIO()
    assert await commands.hold(rt, out, err, phone=ME, reason="court order 2026-17") == 0
    assert "legal hold set" in out.getvalue() and "13700005001" not in out.getvalue()
    assert await commands.hold(rt, out, err, phone=ME, reason="again") == 0  # one hold
    assert await count_rows(db, "legal_holds") == 1
    assert await commands.hold(rt, out, err, phone="+8613700009999", reason="x") == 1
    assert await commands.hold(rt, out, err, phone="not a phone", reason="x") == 1
    assert await commands.hold(rt, out, err, phone=ME, reason="  ") == 2
    clock.advance(91 * 86400)
    lines = await service.report(rt, [rule("location_fixes")])
    assert (lines[0].due, lines[0].held) == (4, 4)
    await retain(app)
    held_id, other_id = held["account"]["id"], other["account"]["id"]
    q = "SELECT count(*) AS n FROM location_fixes WHERE account_id = :a"
    assert (await query(db, q, a=held_id))[0]["n"] == 4
    assert (await query(db, q, a=other_id))[0]["n"] == 0
    assert await count_rows(db, "login_events") >= 1
    assert await commands.release(rt, out, err, phone=ME) == 0
    assert await commands.release(rt, out, err, phone=ME) == 1  # none in force
    await retain(app)
    assert (await query(db, q, a=held_id))[0]["n"] == 0
    (h,) = await query(db, "SELECT reason, released_at FROM legal_holds")
    assert h["reason"] == "court order 2026-17" and h["released_at"] is not None


# --- derived location data ----------------------------------------------------------------


async def test_the_days_copy_and_the_last_location_follow_the_fixes(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    """Fixes on three days; retention's limit falls inside the second. The first
    day's copy goes, the second is packed again from what is left of it, the third
    stays; both reads agree; the last location stays while a fix is left and goes
    with the last one."""
    me = await member(client, sms, ME)
    aid = me["account"]["id"]
    today = clock.utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    d0 = today - 3 * DAY
    for i in range(3):
        batch = fixes(d0 + i * DAY + timedelta(hours=8), 6, f"d{i}-", step=timedelta(hours=1))
        assert (await upload(client, me, batch)).status_code == 200
    first_day = ms(d0) // days.DAY_MS
    sqlite = db.engine.dialect.name == "sqlite"
    if sqlite:
        await pack_due(app)
    else:
        for d in range(3):
            await fake_pack(db, aid, first_day + d)
    assert set(await packed_days(db, aid)) == {first_day, first_day + 1, first_day + 2}
    # the limit at 10:30 of the second day: its fixes of 08:00-10:00 go, 11:00-13:00 stay
    set_clock(d0 + DAY + timedelta(hours=10, minutes=30) + timedelta(days=90))
    await retain(app)
    rows = await query(db, "SELECT recorded_ms FROM location_fixes ORDER BY recorded_ms")
    assert len(rows) == 3 + 6
    assert rows[0]["recorded_ms"] == ms(d0 + DAY + timedelta(hours=11))
    packs = await packed_days(db, aid)
    assert first_day not in packs and first_day + 1 not in packs
    assert await query(db, "SELECT 1 FROM location_last WHERE account_id = :a", a=aid)
    if sqlite:
        await jobs.run_due(app.state.runtime)  # the pack retention planned
        assert (await packed_days(db, aid)).get(first_day + 1) == 3
        assert (await packed_days(db, aid)).get(first_day + 2) == 6
        async with db.sessions() as s:
            lo, hi = first_day * days.DAY_MS, (first_day + 3) * days.DAY_MS
            via = await days.read(s, account_id=aid, from_ms=lo, to_ms=hi)
        assert via is not None and via.n == 9
    set_clock(d0 + 3 * DAY + timedelta(days=90))
    await retain(app)
    assert await count_rows(db, "location_fixes") == 0
    assert await packed_days(db, aid) == {}
    assert await count_rows(db, "location_last") == 0


# --- batches and restarts -----------------------------------------------------------------


async def test_a_run_stopped_part_way_is_finished_by_the_next_without_twice_or_left(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    """Batches of 7: one run stops after 3 batches, the next dies in its second
    batch (its transaction rolls back), a third finishes. Together they removed every
    expired fix exactly once and not one of the fixes still in their time."""
    me = await member(client, sms, ME)
    now = clock.utcnow()
    old = fixes(now - timedelta(hours=50), 40, "old", step=timedelta(minutes=1))
    new = fixes(now - timedelta(hours=1), 10, "new", step=timedelta(minutes=1))
    assert (await upload(client, me, old + new)).status_code == 200
    fx = rule("location_fixes")
    set_clock(now + timedelta(days=90) - timedelta(hours=10))  # the old ones are over

    first = await retain(app, [fx], batch_size=7, max_batches=3)
    assert first.more and first.batches == 3 and first.total == 21
    assert await count_rows(db, "location_fixes") == 50 - 21

    calls = 0

    async def dies(s: Any, expired: fields.Expired) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the process died")

    fields.expiry_hook("location_fixes")(dies)
    try:
        with pytest.raises(RuntimeError):
            await retain(app, [fx], batch_size=7)
    finally:
        fields._expiry_hooks["location_fixes"].remove(dies)
    assert await count_rows(db, "location_fixes") == 50 - 28  # its first batch stands

    last = await retain(app, [fx], batch_size=7)
    assert not last.more and last.total == 40 - 28
    assert await query(db, "SELECT client_id FROM location_fixes WHERE client_id LIKE 'old%'") == []
    assert await count_rows(db, "location_fixes") == 10
    (line,) = await service.report(app.state.runtime, [fx])
    assert line.due == 0 and line.next_at is not None


# --- the schedule -------------------------------------------------------------------------


async def test_the_job_is_scheduled_once_and_runs_in_one_worker_at_a_time(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, settings: Any
) -> None:
    from kares.runtime import Runtime

    rt = app.state.runtime
    other = Runtime.build(settings)  # a second process on the same database
    try:
        await asyncio.gather(jobs.ensure_recurring(rt), jobs.ensure_recurring(other))
        await jobs.ensure_recurring(rt)  # a restart
        rows = await query(db, "SELECT id, status FROM jobs WHERE kind = 'retention.run'")
        assert rows == [{"id": "every:retention.run", "status": "queued"}]
        a, b = await asyncio.gather(
            jobs.claim(rt, worker="a", limit=5), jobs.claim(other, worker="b", limit=5)
        )
        assert sorted(len(x) for x in (a, b)) == [0, 1]  # one of them has it
        (job,) = a or b
        assert await jobs.ensure_recurring(other) == []  # running: left alone
        assert await jobs.run_job(rt, job, worker="a" if a else "b") == "done"
    finally:
        await other.close()
    (row,) = await query(
        db, "SELECT status, attempts, run_at FROM jobs WHERE kind = 'retention.run'"
    )
    assert row["status"] == "queued" and row["attempts"] == 0
    assert (await jobs.run_due(rt)).ran == 0  # not due again before its interval
    async with db.sessions() as s:
        assert await jobs.pending(s) == []  # the schedule is no pending work
        assert len(await jobs.pending(s, recurring=True)) == 1
    clock.advance(settings.retention_interval_seconds + 1)
    stats = await jobs.run_due(rt)
    assert stats.ids == ["every:retention.run"] and stats.done == 1
    async with db.engine.begin() as conn:  # failures left it dead: a restart revives it
        await conn.execute(text("UPDATE jobs SET status = 'dead' WHERE kind = 'retention.run'"))
    assert await jobs.ensure_recurring(rt) == [retention_jobs.KIND]
    (row,) = await query(db, "SELECT status FROM jobs WHERE kind = 'retention.run'")
    assert row["status"] == "queued"


async def test_the_report_says_what_would_go_and_when_and_changes_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    me = await member(client, sms, ME)
    start = clock.utcnow() - timedelta(hours=1)
    assert (await upload(client, me, fixes(start, 3, "a"))).status_code == 200
    set_clock(start + timedelta(days=90, minutes=15))  # the first two of three are over
    rt = app.state.runtime
    out = io.StringIO()
    assert await commands.report(rt, out) == 0
    text_ = out.getvalue()
    assert "dry run" in text_
    (line,) = [
        ln
        for ln in text_.splitlines()
        if ln.startswith("location.precise") and "location_fixes" in ln
    ]
    assert " 2 " in line and "delete row" in line
    expected = start + timedelta(minutes=20) + timedelta(days=90)
    assert f"{expected:%Y-%m-%d %H:%M}" in line
    assert await count_rows(db, "location_fixes") == 3
    out = io.StringIO()
    assert await commands.run(rt, out) == 0
    assert "location_fixes:90d: 2 rows" in out.getvalue()
    assert await count_rows(db, "location_fixes") == 1


async def test_the_commands_from_the_shell(tmp_path: Any, db_url: str) -> None:
    """`kares retention hold/release/report/run` as an operator types them: the
    account found by its phone number, a refusal named, nothing printed in clear."""
    from tests.support import cli, live
    from tests.test_cli import run_kares

    env = live.kares_env(tmp_path / "var", db_url)
    r = cli.run("demo", "--json", env=env)
    assert r.returncode == 0, r.stderr
    phone = json.loads(r.stdout)["members"][0]["phone"]
    r = cli.run("retention", "hold", "--phone", phone, "--reason", "case 7", env=env)
    assert r.returncode == 0, r.stderr
    assert "legal hold set" in r.stdout and phone not in r.stdout + r.stderr
    r = cli.run("retention", "hold", "--phone", "+8613700009999", "--reason", "x", env=env)
    assert r.returncode == 1 and "no account" in r.stderr
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = run_kares("retention", "report", env=env)
    assert r.returncode == 0, r.stderr
    assert "location_fixes" in r.stdout and "login_events" in r.stdout
    r = cli.run("retention", "run", env=env)
    assert r.returncode == 0, r.stderr
    assert "retention removed" in r.stdout
    r = cli.run("retention", "release", "--phone", phone, env=env)
    assert r.returncode == 0, r.stderr
    r = cli.run("retention", "release", "--phone", phone, env=env)
    assert r.returncode == 1 and "no legal hold" in r.stderr
