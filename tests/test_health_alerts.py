"""Health alerts (issue 15): thresholds a family's guardians set for a dependant,
episodes opened once per crossing (not per sample) and closed when the value
returns, one notice per episode to the owner and guardians, nothing new on a
re-upload or from a second runtime on the same database, and the clock-driven
kinds (no steps by a time, the watch off the wrist) with the service clock moved."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from kares import clock, jobs
from kares.health import alerts
from kares.health import service as health_service
from kares.health.service import SampleIn
from tests.conftest import bearer, query, sign_up
from tests.support.watch import conn, from_file, household, server, settings_overrides
from tests.test_families import join, problem, set_role
from tests.test_health import grant_ward

__all__ = ["conn", "server", "settings_overrides"]  # fixtures, from tests.support.watch

STRANGER = "+8613700016001"
MEMBER = "+8613700016002"


AL = b"[3G*8800000015*0002*AL]"  # an alarm frame's answer


def url(ctx: dict[str, Any], account_id: str | None = None) -> str:
    who = account_id or ctx["dep"]
    return f"/api/v1/families/{ctx['family_id']}/members/{who}/health/alerts"


async def put(
    client: httpx.AsyncClient, ctx: dict[str, Any], body: dict[str, Any], who: int = 0
) -> httpx.Response:
    return await client.put(url(ctx), json=body, headers=bearer(ctx["guardians"][who]["token"]))


async def set_ok(client: httpx.AsyncClient, ctx: dict[str, Any], body: dict[str, Any]) -> None:
    r = await put(client, ctx, body)
    assert r.status_code == 200, r.text


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def sample(metric: str, i: int, t: datetime, value: float | None = None, **kw: Any) -> SampleIn:
    units = {"heart_rate": "/min", "spo2": "%", "steps": "{steps}"}
    return SampleIn(
        metric=metric,
        start=t,
        value=value,
        unit=units.get(metric),
        source="Watch",
        record_id=f"{metric}-{i}",
        **kw,
    )


async def upload(db: Any, account_id: str, samples: list[SampleIn]) -> list[str]:
    async with db.sessions() as s:
        out = await health_service.upload(
            s, account_id=account_id, samples=samples, now=clock.utcnow()
        )
    return [o.status for o in out]


async def episodes(db: Any) -> list[dict[str, Any]]:
    return await query(
        db,
        "SELECT e.opened_ms, e.closed_ms, e.open_alert, a.kind FROM health_alert_episodes e"
        " JOIN health_alerts a ON a.id = e.alert_id ORDER BY e.opened_ms",
    )


async def notices(db: Any) -> list[dict[str, Any]]:
    return await query(
        db,
        "SELECT account_id, title, body, data FROM notifications WHERE category = 'health'"
        " ORDER BY seq, account_id",
    )


def guardians(ctx: dict[str, Any]) -> list[str]:
    return sorted(g["account"]["id"] for g in ctx["guardians"])


# --- thresholds ------------------------------------------------------------------------------


async def test_guardians_set_read_and_clear_a_dependants_thresholds(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    ctx = await household(client, sms)
    body = {
        "heart_rate_above": {"bpm": 120, "minutes": 10},
        "spo2_below": {"percent": 92},
        "no_steps_by": {"time": "12:00", "time_zone": "Asia/Shanghai"},
        "fall": True,
        "wrist_off": {"hours": 3},
    }
    r = await put(client, ctx, body)
    assert r.status_code == 200, r.text
    assert r.json() == body
    # the second guardian reads the same, and may change them
    r = await client.get(url(ctx), headers=bearer(ctx["guardians"][1]["token"]))
    assert r.status_code == 200 and r.json() == body
    r = await put(client, ctx, {"fall": True}, who=1)
    assert r.json() == {
        "heart_rate_above": None,
        "spo2_below": None,
        "no_steps_by": None,
        "fall": True,
        "wrist_off": None,
    }
    assert [x["kind"] for x in await query(db, "SELECT kind FROM health_alerts")] == ["fall"]
    # a time of day without a zone is UTC
    r = await put(client, ctx, {"no_steps_by": {"time": "09:30"}})
    assert r.json()["no_steps_by"] == {"time": "09:30", "time_zone": "UTC"}
    r = await client.delete(url(ctx), headers=bearer(ctx["guardians"][0]["token"]))
    assert r.status_code == 204
    assert await query(db, "SELECT kind FROM health_alerts") == []
    # the no_steps_by threshold's check job ends when it runs and finds it gone
    clock.advance(2 * 86_400)
    await jobs.run_due(app.state.runtime)
    async with db.sessions() as s:
        assert await jobs.pending(s, kind=alerts.JOB) == []


@pytest.mark.parametrize(
    "body",
    [
        {"heart_rate_above": {"bpm": 20, "minutes": 10}},
        {"heart_rate_above": {"bpm": 130, "minutes": 0}},
        {"heart_rate_above": {"bpm": 130}},
        {"spo2_below": {"percent": 100}},
        {"spo2_below": {"percent": 40}},
        {"no_steps_by": {"time": "25:00"}},
        {"no_steps_by": {"time": "noon"}},
        {"wrist_off": {"hours": 0}},
        {"wrist_off": {"hours": 500}},
        {"wrist_off": {"hours": 1.5}},
        {"falls": True},
    ],
)
async def test_out_of_bounds_thresholds_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, body: dict[str, Any]
) -> None:
    ctx = await household(client, sms)
    await set_ok(client, ctx, {"fall": True})
    problem(await put(client, ctx, body), 422, "request.invalid")
    assert [x["kind"] for x in await query(db, "SELECT kind FROM health_alerts")] == ["fall"]


async def test_an_unknown_time_zone_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    await set_ok(client, ctx, {"fall": True})
    body = {"fall": False, "no_steps_by": {"time": "12:00", "time_zone": "Mars/Olympus"}}
    problem(await put(client, ctx, body), 422, "health.bad_time_zone")
    assert [x["kind"] for x in await query(db, "SELECT kind FROM health_alerts")] == ["fall"]


async def test_only_the_familys_guardians_set_alerts_and_only_for_dependants(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    g, g2 = ctx["guardians"]
    fid = ctx["family_id"]
    stranger = await sign_up(client, sms, STRANGER)
    member = await sign_up(client, sms, MEMBER)
    await join(client, g, fid, member)
    body = {"fall": True}
    # not in the family: 404 (the family is not shown to exist)
    for method in ("GET", "PUT", "DELETE"):
        r = await client.request(
            method,
            url(ctx),
            json=body if method == "PUT" else None,
            headers=bearer(stranger["token"]),
        )
        problem(r, 404, "family.not_found")
    # a member of the family who is not a guardian: 403
    for method in ("GET", "PUT", "DELETE"):
        r = await client.request(
            method,
            url(ctx),
            json=body if method == "PUT" else None,
            headers=bearer(member["token"]),
        )
        problem(r, 403, "health_alert.forbidden")
    # someone not in the family as the subject: 404
    r = await client.put(url(ctx, stranger["account"]["id"]), json=body, headers=bearer(g["token"]))
    problem(r, 404, "family.member_not_found")
    # alerts are for dependants: not for an adult member or a guardian
    for who in (member, g2):
        r = await client.put(url(ctx, who["account"]["id"]), json=body, headers=bearer(g["token"]))
        problem(r, 403, "health_alert.not_dependant")
    assert await query(db, "SELECT kind FROM health_alerts") == []
    # a guardian demoted to member can no longer set them
    assert (await set_role(client, g, fid, g2, "member")).status_code == 200
    problem(await put(client, ctx, body, who=1), 403, "health_alert.forbidden")
    await set_ok(client, ctx, body)


# --- episodes from samples -------------------------------------------------------------------


async def test_heart_rate_above_for_minutes_opens_once_per_run_and_closes_when_it_returns(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, settings: Any
) -> None:
    ctx = await household(client, sms)
    dep = ctx["dep"]
    await set_ok(client, ctx, {"heart_rate_above": {"bpm": 120, "minutes": 10}})
    t = clock.utcnow() + timedelta(minutes=1)
    clock.advance(3 * 3600)
    # a sample a minute: 100 x5, 130 x5 (too short), 100 x2, 130 x15, 90 x3, 140 x12, 80 x2
    plan = [100] * 5 + [130] * 5 + [100] * 2 + [130] * 15 + [90] * 3 + [140] * 12 + [80] * 2
    xs = [sample("heart_rate", i, t + timedelta(minutes=i), bpm) for i, bpm in enumerate(plan)]
    for k in range(0, len(xs), 4):  # in batches of 4, so a run spans several uploads
        assert set(await upload(db, dep, xs[k : k + 4])) == {"stored"}
    eps = await episodes(db)
    at = [ms(x.start) for x in xs]
    assert [(e["opened_ms"], e["closed_ms"], e["open_alert"]) for e in eps] == [
        (at[12], at[27], None),  # the first sample of the long run .. the first at 90
        (at[30], at[42], None),
    ]
    got = await notices(db)
    assert sorted(n["account_id"] for n in got) == sorted(guardians(ctx) * 2)  # one per episode
    n = got[0]
    assert n["title"] == "Health alert: Grandma Li"
    assert n["body"] == "Grandma Li: heart rate above 120/min for 10 minutes."
    data = n["data"] if isinstance(n["data"], dict) else json.loads(n["data"])
    assert data["alert"] == "heart_rate_above" and data["at_ms"] == at[12]
    assert set(data) == {"family_id", "account_id", "alert", "episode_id", "at_ms"}

    # the same samples again: stored once, nothing opened, nobody told again
    assert set(await upload(db, dep, xs)) == {"duplicate"}
    async with db.sessions() as s:  # evaluated again on purpose: still nothing
        assert await alerts.evaluate(s, account_id=dep, now=clock.utcnow()) == []
        await s.commit()
    # across a restart: another runtime on the same database evaluates everything again
    from kares.runtime import Runtime

    other = Runtime.build(settings)
    try:
        async with other.db.sessions() as s:
            assert await alerts.evaluate(s, account_id=dep) == []
            await s.commit()
        assert await alerts.check_clock(other) == 0
    finally:
        await other.close()
    assert len(await episodes(db)) == 2 and len(await notices(db)) == 4


async def test_an_open_episode_stays_one_while_more_samples_cross(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    dep = ctx["dep"]
    await set_ok(client, ctx, {"heart_rate_above": {"bpm": 120, "minutes": 5}})
    t = clock.utcnow() + timedelta(minutes=1)
    for i in range(20):
        clock.advance(60)
        await upload(db, dep, [sample("heart_rate", i, t + timedelta(minutes=i), 150)])
    (e,) = await episodes(db)
    assert e["opened_ms"] == ms(t) and e["closed_ms"] is None and e["open_alert"] is not None
    assert len(await notices(db)) == 2  # the two guardians, once
    # a silence longer than the gap does not close it: only a value back within bounds does
    clock.advance(3600)
    await upload(db, dep, [sample("heart_rate", 99, clock.utcnow(), 150)])
    assert len(await episodes(db)) == 1
    back = clock.utcnow()
    await upload(db, dep, [sample("heart_rate", 100, back, 70)])
    (e,) = await episodes(db)
    assert e["closed_ms"] == ms(back) and e["open_alert"] is None


async def test_spo2_below_opens_at_the_first_low_reading_and_closes_above(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    dep = ctx["dep"]
    await set_ok(client, ctx, {"spo2_below": {"percent": 92}})
    t = clock.utcnow() + timedelta(minutes=1)
    clock.advance(3600)
    values = [97, 91, 90, 95, 92, 89, 88]
    xs = [sample("spo2", i, t + timedelta(minutes=5 * i), v) for i, v in enumerate(values)]
    for x in xs:
        await upload(db, dep, [x])
    at = [ms(x.start) for x in xs]
    eps = [(e["opened_ms"], e["closed_ms"]) for e in await episodes(db)]
    assert eps == [(at[1], at[3]), (at[5], None)]
    got = await notices(db)
    assert len(got) == 4 and {n["body"] for n in got} == {"Grandma Li: blood oxygen below 92%."}


async def test_a_fall_notifies_once(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    ctx = await household(client, sms)
    dep = ctx["dep"]
    await set_ok(client, ctx, {"fall": True})
    t = clock.utcnow() + timedelta(seconds=30)
    clock.advance(60)
    fall = sample("fall", 1, t)
    assert await upload(db, dep, [fall]) == ["stored"]
    assert await upload(db, dep, [fall]) == ["duplicate"]
    (e,) = await episodes(db)
    assert e["opened_ms"] == e["closed_ms"] == ms(t) and e["open_alert"] is None
    got = await notices(db)
    assert sorted(n["account_id"] for n in got) == guardians(ctx)
    assert got[0]["body"] == "Grandma Li: a fall was recorded."
    # another fall is another episode
    clock.advance(600)
    await upload(db, dep, [sample("fall", 2, clock.utcnow())])
    assert len(await episodes(db)) == 2 and len(await notices(db)) == 4


async def test_samples_from_before_the_threshold_tell_nobody(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    ctx = await household(client, sms)
    dep = ctx["dep"]
    t = clock.utcnow()
    clock.advance(60)
    await set_ok(client, ctx, {"fall": True, "spo2_below": {"percent": 92}})
    await upload(db, dep, [sample("fall", 1, t), sample("spo2", 1, t, 85)])
    assert await episodes(db) == [] and await notices(db) == []


async def test_a_watch_reading_below_the_threshold_tells_the_guardians_once(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Any
) -> None:
    ctx = await household(client, sms)
    g, dep = ctx["guardians"][0], ctx["dep"]
    await grant_ward(client, g, dep, "health.vitals")
    await set_ok(client, ctx, {"spo2_below": {"percent": 99}})
    await conn.sync()
    clock.advance(1)
    assert await conn.ask(from_file("oxygen.txt")) == b"[3G*8800000015*0008*oxygen,1]"  # 98 %
    assert await conn.ask(from_file("oxygen.txt")) == b"[3G*8800000015*0008*oxygen,1]"
    await conn.sync()
    (e,) = await episodes(db)
    assert e["kind"] == "spo2_below" and e["closed_ms"] is None
    assert sorted(n["account_id"] for n in await notices(db)) == guardians(ctx)


async def test_a_watchs_fall_and_wrist_alarms_are_the_wearers_health_history(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Any
) -> None:
    ctx = await household(client, sms)
    g, dep = ctx["guardians"][0], ctx["dep"]
    await set_ok(client, ctx, {"fall": True})
    await conn.sync()
    clock.advance(1)
    # without the wearer's separate consent: the SOS is raised, no health sample kept
    assert await conn.ask(from_file("al_fall.txt")) == AL
    assert await query(db, "SELECT day FROM health_vitals_days") == []
    await grant_ward(client, g, dep, "health.vitals")
    clock.advance(120)
    fell = clock.utcnow().replace(microsecond=0)
    data = from_file("al_fall.txt", at=fell)
    assert await conn.ask(data) == AL
    assert await conn.ask(data) == AL  # our answer lost: sent again
    clock.advance(120)
    off = clock.utcnow().replace(microsecond=0)
    assert await conn.ask(from_file("al_removed.txt", at=off)) == AL
    await conn.sync()
    async with db.sessions() as s:
        falls = await health_service.read(
            s, account_id=dep, metric="fall", lo_ms=0, hi_ms=ms(clock.utcnow()) + 1
        )
        wrist = await health_service.read(
            s, account_id=dep, metric="wrist_off", lo_ms=0, hi_ms=ms(clock.utcnow()) + 1
        )
    assert falls.t0.tolist() == [ms(fell)]  # once, at the alarm's time
    assert (wrist.t0.tolist(), wrist.t1.tolist()) == ([ms(off)], [ms(off)])
    # the guardian's fall threshold saw it: one episode, told once
    (e,) = await episodes(db)
    assert e["kind"] == "fall" and e["opened_ms"] == ms(fell)
    assert sorted(n["account_id"] for n in await notices(db)) == guardians(ctx)


# --- the clock-driven kinds ------------------------------------------------------------------


def zone_where_it_is_morning(now: datetime) -> str:
    """An Etc/GMT zone whose local time is now between 06:00 and 07:00."""
    offset = (6 - now.hour) % 24
    offset = (offset + 11) % 24 - 11  # -11 .. +12
    # Etc/GMT-9 is UTC+9 (the sign is POSIX's)
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


async def test_no_steps_by_a_time_opens_at_that_time_and_closes_on_steps(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    rt = app.state.runtime
    ctx = await household(client, sms)
    dep = ctx["dep"]
    tz = zone_where_it_is_morning(clock.utcnow())
    await set_ok(client, ctx, {"no_steps_by": {"time": "09:00", "time_zone": tz}})
    async with db.sessions() as s:
        (job,) = await jobs.pending(s, kind=alerts.JOB)
    deadline = job.run_at
    assert deadline.astimezone(health_service.zone(tz)).strftime("%H:%M") == "09:00"
    assert timedelta(hours=1) < deadline - clock.utcnow() <= timedelta(hours=3)
    await jobs.run_due(rt)  # not yet
    assert await episodes(db) == []
    clock.advance((deadline - clock.utcnow()).total_seconds() + 60)
    await jobs.run_due(rt)
    (e,) = await episodes(db)
    assert e["opened_ms"] == ms(deadline) and e["closed_ms"] is None
    got = await notices(db)
    assert sorted(n["account_id"] for n in got) == guardians(ctx)
    assert got[0]["body"] == "Grandma Li: no steps by 09:00."
    # checked again (the job, another runtime): still one
    assert await alerts.check_clock(rt) == 0
    await jobs.run_due(rt)
    assert len(await episodes(db)) == 1 and len(await notices(db)) == 2
    # steps at last: closed on the upload
    clock.advance(1800)
    walked = clock.utcnow() - timedelta(minutes=10)
    assert await upload(db, dep, [sample("steps", 1, walked, 40, end=clock.utcnow())]) == ["stored"]
    (e,) = await episodes(db)
    assert e["closed_ms"] == ms(walked) and e["open_alert"] is None
    # the next day without steps: a second episode, at that day's time
    clock.advance(86_400)
    await jobs.run_due(rt)
    eps = await episodes(db)
    assert len(eps) == 2 and eps[1]["opened_ms"] == ms(deadline + timedelta(days=1))
    assert len(await notices(db)) == 4
    # ... which the day's end closes (nobody told again)
    clock.advance(86_400)
    await jobs.run_due(rt)
    eps = await episodes(db)
    assert eps[1]["closed_ms"] is not None and eps[1]["closed_ms"] > eps[1]["opened_ms"]


async def test_steps_before_the_time_open_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    ctx = await household(client, sms)
    tz = zone_where_it_is_morning(clock.utcnow())
    await set_ok(client, ctx, {"no_steps_by": {"time": "09:00", "time_zone": tz}})
    clock.advance(600)
    await upload(
        db,
        ctx["dep"],
        [sample("steps", 1, clock.utcnow() - timedelta(minutes=5), 12, end=clock.utcnow())],
    )
    clock.advance(4 * 3600)
    await jobs.run_due(app.state.runtime)
    assert await episodes(db) == [] and await notices(db) == []


async def test_off_the_wrist_for_hours_opens_by_the_clock_and_closes_when_worn(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    rt = app.state.runtime
    ctx = await household(client, sms)
    dep = ctx["dep"]
    await set_ok(client, ctx, {"wrist_off": {"hours": 2}})
    clock.advance(60)
    off = clock.utcnow()
    # the watch says it came off (an interval of a minute), then nothing more
    assert await upload(db, dep, [sample("wrist_off", 1, off - timedelta(minutes=1), end=off)]) == [
        "stored"
    ]
    clock.advance(3600)
    await jobs.run_due(rt)
    assert await episodes(db) == []
    clock.advance(3600 + 120)
    await jobs.run_due(rt)
    (e,) = await episodes(db)
    assert e["opened_ms"] == ms(off - timedelta(minutes=1)) and e["closed_ms"] is None
    got = await notices(db)
    assert sorted(n["account_id"] for n in got) == guardians(ctx)
    assert got[0]["body"] == "Grandma Li: watch off the wrist for 2 hours."
    clock.advance(900)
    await jobs.run_due(rt)
    assert len(await episodes(db)) == 1 and len(await notices(db)) == 2
    # worn again: the first heart rate closes it
    worn = clock.utcnow()
    await upload(db, dep, [sample("heart_rate", 1, worn, 80)])
    (e,) = await episodes(db)
    assert e["closed_ms"] == ms(worn) and e["open_alert"] is None
    # a short time off afterwards tells nobody
    clock.advance(600)
    t = clock.utcnow()
    await upload(db, dep, [sample("wrist_off", 2, t - timedelta(minutes=30), end=t)])
    await upload(db, dep, [sample("heart_rate", 2, t + timedelta(minutes=1), 80)])
    clock.advance(4 * 3600)
    await jobs.run_due(rt)
    assert len(await episodes(db)) == 1 and len(await notices(db)) == 2


@pytest.mark.db_agnostic
def test_runs_are_found_in_samples_alone() -> None:
    import numpy as np

    t = np.array([0, 60_000, 120_000, 180_000, 240_000], dtype=np.int64)
    v = np.array([130, 130, 130, 100, 130], dtype=np.float64)
    got = alerts.runs(t, v > 120, hold_ms=120_000, gap_ms=alerts.GAP_MS, open_since=None, after=-1)
    assert got == alerts.Found(None, [(0, 180_000)])
    # a gap longer than GAP_MS breaks a run
    t2 = np.array([0, 60_000, 60_000 + alerts.GAP_MS + 1], dtype=np.int64)
    got = alerts.runs(
        t2, np.array([True] * 3), hold_ms=120_000, gap_ms=alerts.GAP_MS, open_since=None, after=-1
    )
    assert got == alerts.Found(None, [])
    # what an open episode sees: only its close
    got = alerts.runs(t, v > 120, hold_ms=0, gap_ms=alerts.GAP_MS, open_since=0, after=0)
    assert got == alerts.Found(180_000, [(240_000, None)])
    assert alerts.stretches(np.array([0, 100, 10 * 60_000]), np.array([50, 200, 11 * 60_000])) == [
        (0, 200),
        (600_000, 660_000),
    ]


async def test_two_processes_checking_at_once_open_one_episode(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, settings: Any
) -> None:
    import asyncio

    from kares.runtime import Runtime

    rt = app.state.runtime
    ctx = await household(client, sms)
    tz = zone_where_it_is_morning(clock.utcnow())
    await set_ok(client, ctx, {"no_steps_by": {"time": "09:00", "time_zone": tz}})
    clock.advance(4 * 3600)
    other = Runtime.build(settings)  # a second process on the same database
    try:
        got = await asyncio.gather(
            alerts.check_clock(rt), alerts.check_clock(other), jobs.run_due(other)
        )
    finally:
        await other.close()
    assert got[0] + got[1] <= 1
    assert len(await episodes(db)) == 1
    assert sorted(n["account_id"] for n in await notices(db)) == guardians(ctx)
