"""The health domain (issue 15): metrics as data and unit conversion, the native
batch upload (per-item refusals, idempotency, consent and the Motion & fitness
permission), encryption at rest (the raw database file scanned), the rights
export and deletion through the column declarations, and the reading endpoints
checked against values computed here independently."""

from __future__ import annotations

import asyncio
import json
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from kares import clock, jobs
from kares.health import chunks
from kares.health import service as health_service
from kares.health.metrics import METRICS
from tests.conftest import POLICY_VERSION, bearer, count_rows, query, sign_up, snapshot
from tests.support.watch import (
    conn,
    frame,
    from_file,
    household,
    reply,
    server,
    settings_overrides,
)
from tests.test_devices import IPHONE
from tests.test_rights_erase import ask as ask_deletion
from tests.test_rights_export import check_against_schema, download, ready, unzip

__all__ = ["conn", "server", "settings_overrides"]  # fixtures, from tests.support.watch

SAMPLES = "/api/v1/health/samples"
ME = "+8613700015001"
OTHER = "+8613700015002"


def iso(t: datetime) -> str:
    return t.isoformat()


async def grant(client: httpx.AsyncClient, me: dict[str, Any], *cats: str) -> None:
    for c in cats:
        r = await client.post(
            "/api/v1/me/consents",
            json={"subject": f"category:{c}", "action": "grant", "policy_version": POLICY_VERSION},
            headers=bearer(me["token"]),
        )
        assert r.status_code == 201, r.text


async def grant_ward(
    client: httpx.AsyncClient, guardian: dict[str, Any], ward_id: str, *cats: str
) -> None:
    """A guardian grants a ward's separate consents."""
    for c in cats:
        r = await client.post(
            f"/api/v1/guardian/wards/{ward_id}/consents",
            json={"subject": f"category:{c}", "action": "grant", "policy_version": POLICY_VERSION},
            headers=bearer(guardian["token"]),
        )
        assert r.status_code == 201, r.text


async def person(client: httpx.AsyncClient, sms: Any, phone: str = ME, **kw: Any) -> dict:
    """A signed-up adult who gave both separate consents for health."""
    me = await sign_up(client, sms, phone, **kw)
    await grant(client, me, "health.vitals", "health.activity")
    return me


def hr(i: int, t: datetime, bpm: float, **kw: Any) -> dict[str, Any]:
    return {
        "metric": "heart_rate",
        "start": iso(t),
        "value": bpm,
        "unit": "/min",
        "source": "Watch",
        "record_id": f"hr-{i}",
        **kw,
    }


def steps(i: int, t: datetime, n: float, minutes: int = 10, **kw: Any) -> dict[str, Any]:
    return {
        "metric": "steps",
        "start": iso(t),
        "end": iso(t + timedelta(minutes=minutes)),
        "value": n,
        "unit": "count",
        "source": "Phone",
        "record_id": f"st-{i}",
        **kw,
    }


async def send(client: httpx.AsyncClient, me: dict, samples: list[dict]) -> httpx.Response:
    return await client.post(SAMPLES, json={"samples": samples}, headers=bearer(me["token"]))


async def ok(client: httpx.AsyncClient, me: dict, samples: list[dict]) -> dict[str, Any]:
    r = await send(client, me, samples)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def get(client: httpx.AsyncClient, me: dict, url: str, **params: Any) -> dict[str, Any]:
    r = await client.get(url, params=params, headers=bearer(me["token"]))
    assert r.status_code == 200, r.text
    return dict(r.json())


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.json()["code"] == code, r.text
    return dict(r.json())


def base() -> datetime:
    """Midnight UTC three days before the test clock's now."""
    now = clock.utcnow()
    return datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=3)


# --- metrics and units (no database) ------------------------------------------------------------


@pytest.mark.db_agnostic
def test_units_convert_to_the_canonical_unit() -> None:
    t = METRICS["body_temperature"]
    assert t.unit == "Cel"
    assert t.convert(98.6, "[degF]") == pytest.approx(37.0)
    assert t.convert(212, "°F") == pytest.approx(100.0)
    assert t.convert(32, "degF") == pytest.approx(0.0, abs=1e-9)
    assert t.convert(36.6, "Cel") == 36.6
    w = METRICS["weight"]
    assert w.convert(150, "lb") == pytest.approx(68.0388555)
    assert w.convert(1, "[lb_av]") == pytest.approx(0.45359237)
    d = METRICS["distance"]
    assert d.convert(5, "km") == 5000
    assert d.convert(1, "mi") == pytest.approx(1609.344)
    e = METRICS["active_energy"]
    assert e.convert(4.184, "kJ") == pytest.approx(1.0)
    assert e.convert(250, "Cal") == 250
    assert METRICS["blood_pressure"].convert(120, "mmHg") == 120
    assert METRICS["heart_rate"].convert(72, "count/min") == 72
    assert METRICS["steps"].convert(1000, "count") == 1000
    # a unit of another dimension is not accepted
    assert METRICS["heart_rate"].convert(72, "kg") is None
    assert METRICS["body_temperature"].convert(37, "K") is None


@pytest.mark.db_agnostic
def test_the_metrics_table_carries_the_codes_the_issue_names() -> None:
    codes = {k: m.loinc for k, m in METRICS.items()}
    assert codes["heart_rate"] == "8867-4"
    assert codes["steps"] == "55423-8"
    assert codes["spo2"] == "59408-5"
    assert codes["body_temperature"] == "8310-5"
    assert codes["weight"] == "29463-7"
    bp = METRICS["blood_pressure"]
    assert bp.loinc == "85354-9"
    assert [(c.key, c.loinc) for c in bp.components] == [
        ("systolic", "8480-6"),
        ("diastolic", "8462-4"),
    ]
    assert codes["fall"] is None and codes["wrist_off"] is None
    for m in METRICS.values():
        if m.unit is not None:
            assert m.convert(1.0, m.unit) == 1.0


@pytest.mark.db_agnostic
def test_a_packed_day_reads_back_only_as_the_row_it_was_packed_for() -> None:
    d = chunks.Day("acc1", "heart_rate", 20000)
    d.add([(20000 * chunks.DAY_MS + 5, 20000 * chunks.DAY_MS + 5, 71.0, float("nan"), -1, 0, 7)])
    blob = chunks.pack(d)
    back = chunks.unpack(blob, account_id="acc1", metric="heart_rate", day=20000)
    assert back.v.tolist() == [71.0] and back.key.tolist() == [7]
    with pytest.raises(chunks.CorruptDay):
        chunks.unpack(blob, account_id="acc2", metric="heart_rate", day=20000)


# --- the batch upload ---------------------------------------------------------------------------


async def test_out_of_bounds_samples_are_refused_one_by_one_and_the_rest_stored(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms)
    t = base()
    out = await ok(
        client,
        me,
        [
            hr(1, t, 72),
            hr(2, t + timedelta(minutes=1), 400),  # above 300
            {**hr(3, t + timedelta(minutes=2), 98.6), "metric": "body_temperature", "unit": "°F"},
            {**hr(4, t + timedelta(minutes=3), 120), "metric": "body_temperature", "unit": "Cel"},
            {**hr(5, t, 72), "unit": "kg"},
            {**hr(6, t, 72), "metric": "mood"},
            {
                "metric": "blood_pressure",
                "start": iso(t),
                "values": {"systolic": 118, "diastolic": 76},
                "unit": "mmHg",
                "source": "Cuff",
                "record_id": "bp-1",
            },
            steps(1, t, 500, minutes=60 * 30),  # longer than a day
            {**hr(7, clock.utcnow() + timedelta(hours=2), 70)},
        ],
    )
    got = [(x["status"], x["code"]) for x in out["results"]]
    assert got == [
        ("stored", None),
        ("refused", "health.out_of_bounds"),
        ("stored", None),
        ("refused", "health.out_of_bounds"),
        ("refused", "health.unit_not_accepted"),
        ("refused", "health.unknown_metric"),
        ("stored", None),
        ("refused", "health.bad_interval"),
        ("refused", "health.in_future"),
    ]
    assert (out["stored"], out["duplicates"], out["refused"]) == (3, 0, 6)
    assert "400" in out["results"][1]["detail"] and "300" in out["results"][1]["detail"]
    latest = {x["metric"]: x for x in (await get(client, me, "/api/v1/health/latest"))["latest"]}
    assert latest["heart_rate"]["value"] == 72
    assert latest["body_temperature"]["value"] == pytest.approx(37.0)
    assert latest["body_temperature"]["unit"] == "Cel"
    assert latest["blood_pressure"]["values"] == {"systolic": 118, "diastolic": 76}
    assert latest["blood_pressure"]["unit"] == "mm[Hg]"
    assert set(latest) == {"heart_rate", "body_temperature", "blood_pressure"}


async def test_a_reupload_stores_nothing_new(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    me = await person(client, sms)
    t = base()
    batch = [hr(i, t + timedelta(minutes=i), 60 + i) for i in range(50)]
    batch += [steps(i, t + timedelta(hours=1, minutes=10 * i), 100 + i) for i in range(5)]
    first = await ok(client, me, batch)
    assert (first["stored"], first["duplicates"]) == (55, 0)
    before = await snapshot(db)
    again = await ok(client, me, batch)
    assert (again["stored"], again["duplicates"], again["refused"]) == (0, 55, 0)
    assert await snapshot(db) == before
    # the same record from another source is another record; a repeat in one batch is one
    more = await ok(client, me, [{**hr(0, t, 61), "source": "Phone"}, hr(99, t, 80), hr(99, t, 80)])
    assert [x["status"] for x in more["results"]] == ["stored", "stored", "duplicate"]
    day = await get(
        client,
        me,
        "/api/v1/health/summary/daily",
        since=t.date().isoformat(),
        until=t.date().isoformat(),
    )
    s = day["summaries"][0]
    assert s["heart_rate_count"] == 52
    assert s["steps"] == sum(100 + i for i in range(5))


async def test_uploads_at_once_to_the_same_day_lose_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """Each upload reads the day, adds to it and writes it back: two at once must
    queue on the day's row, never write over each other."""
    me = await person(client, sms)
    t = base()
    batches = [
        [hr(100 * k + i, t + timedelta(minutes=5 * i, seconds=k), 60 + k) for i in range(100)]
        for k in range(6)
    ]
    outs = await asyncio.gather(*(send(client, me, b) for b in batches))
    assert all(r.status_code == 200 for r in outs), [r.text for r in outs]
    assert all(r.json()["stored"] == 100 for r in outs)
    day = t.date().isoformat()
    (d,) = (await get(client, me, "/api/v1/health/summary/daily", since=day, until=day))[
        "summaries"
    ]
    assert d["heart_rate_count"] == 600
    assert (d["heart_rate_min"], d["heart_rate_max"]) == (60, 65)


async def test_a_bad_batch_is_refused_whole_and_changes_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms)
    t = base()
    before = await snapshot(db)
    problem(await send(client, me, []), 422, "request.invalid")
    problem(await send(client, me, [{**hr(1, t, 70), "value": "70"}]), 422, "request.invalid")
    problem(
        await send(client, me, [{**hr(1, t, 70), "start": "1700000000"}]), 422, "request.invalid"
    )
    problem(await send(client, me, [hr(i, t, 70) for i in range(2001)]), 422, "request.invalid")
    naive = {**hr(1, t, 70), "start": "2026-12-01T08:00:00"}
    problem(await send(client, me, [naive]), 422, "request.invalid")
    assert await snapshot(db) == before


async def test_health_needs_its_separate_consent(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await sign_up(client, sms, ME)
    t = base()
    before = await snapshot(db)
    r = problem(await send(client, me, [hr(1, t, 70)]), 403, "consent.required")
    assert "category:health.vitals" in r["missing"]
    problem(
        await client.get("/api/v1/health/latest", headers=bearer(me["token"])),
        403,
        "consent.required",
    )
    assert await snapshot(db) == before
    await grant(client, me, "health.vitals", "health.activity")
    assert (await ok(client, me, [hr(1, t, 70)]))["stored"] == 1
    # withdrawn: nothing more is stored
    r = await client.post(
        "/api/v1/me/consents",
        json={
            "subject": "category:health.vitals",
            "action": "withdraw",
            "policy_version": POLICY_VERSION,
        },
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text
    problem(await send(client, me, [hr(2, t, 71)]), 403, "consent.required")


async def test_each_consent_opens_only_its_own_data(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    """Step counting does not need the consent for health readings, nor the other
    way round: no consent is bundled with another."""
    me = await sign_up(client, sms, ME)
    await grant(client, me, "health.activity")
    t = base()
    out = await ok(client, me, [steps(1, t, 900), hr(1, t, 70)])
    assert [(x["status"], x["code"]) for x in out["results"]] == [
        ("stored", None),
        ("refused", "consent.required"),
    ]
    problem(await send(client, me, [hr(2, t, 71)]), 403, "consent.required")
    await grant(client, me, "health.vitals")
    assert (await ok(client, me, [hr(3, t, 72)]))["stored"] == 1
    # readings withdrawn: what is read of them is left out, steps are still shown
    r = await client.post(
        "/api/v1/me/consents",
        json={
            "subject": "category:health.vitals",
            "action": "withdraw",
            "policy_version": POLICY_VERSION,
        },
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text
    latest = (await get(client, me, "/api/v1/health/latest"))["latest"]
    assert [x["metric"] for x in latest] == ["steps"]
    day = t.date().isoformat()
    (d,) = (await get(client, me, "/api/v1/health/summary/daily", since=day, until=day))[
        "summaries"
    ]
    assert d["steps"] == 900 and d["heart_rate_max"] is None and d["heart_rate_count"] == 0
    span = {"since": iso(t), "until": iso(t + timedelta(days=1))}
    r = await client.get(
        "/api/v1/health/series",
        params={"metric": "heart_rate", **span},
        headers=bearer(me["token"]),
    )
    problem(r, 403, "consent.required")
    s = await get(client, me, "/api/v1/health/series", metric="steps", **span)
    assert s["sum"] == [900]
    # the heart rate is still stored (withdrawing stops the processing; deleting
    # it is the person's choice, POST /api/v1/me/data/deletion)
    assert await count_rows(db, "health_vitals_days") == 1


async def test_steps_need_the_motion_and_fitness_permission(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms, device=IPHONE)
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"motion_fitness": "denied"}},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    t = base()
    out = await ok(client, me, [hr(1, t, 70), steps(1, t, 300)])
    assert [(x["status"], x["code"]) for x in out["results"]] == [
        ("stored", None),
        ("refused", "permission.closed"),
    ]
    # a batch of steps alone gets the guard's refusal as it is
    problem(await send(client, me, [steps(2, t, 300)]), 403, "permission.closed")


# --- encryption at rest -------------------------------------------------------------------------


async def test_no_health_value_is_readable_in_the_database(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    me = await person(client, sms)
    t = base()
    # distinctive values: a record id, a source name and a reading as text and as a double
    rid = "ZEBRA-RECORD-1234567"
    source = "QuokkaWatch Ultra"
    weight = 87.654321
    await ok(
        client,
        me,
        [
            {
                "metric": "weight",
                "start": iso(t),
                "value": weight,
                "unit": "kg",
                "source": source,
                "record_id": rid,
            }
        ]
        + [hr(i, t + timedelta(minutes=i), 63.125) for i in range(30)],
    )
    import struct

    needles = [rid.encode(), source.encode(), struct.pack("<d", weight), struct.pack("<d", 63.125)]
    needles += [repr(weight).encode(), b"QuokkaWatch"]
    rows = await query(db, "SELECT metric, day, data FROM health_vitals_days")
    assert {r["metric"] for r in rows} == {"weight", "heart_rate"}
    for r in rows:
        raw = bytes(r["data"])
        assert raw[:1] == b"\x01"  # sealed
        for n in needles:
            assert n not in raw
    if db.dialect == "sqlite":
        # checkpoint the write-ahead log into the file, then scan every byte of both
        async with db.engine.connect() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        path = Path(db.engine.url.database)
        files = [path, Path(f"{path}-wal")]
        blob = b"".join(f.read_bytes() for f in files if f.exists())
        assert len(blob) > 0
        for n in needles:
            assert n not in blob, n
    # and the reader gets them back
    latest = {x["metric"]: x for x in (await get(client, me, "/api/v1/health/latest"))["latest"]}
    assert latest["weight"]["value"] == weight


# --- rights: export and deletion through the declarations ---------------------------------------


async def test_export_and_chosen_deletion_cover_health(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any
) -> None:
    me = await person(client, sms)
    other = await person(client, sms, OTHER)
    t = base()
    await ok(client, me, [hr(1, t, 70), steps(1, t, 1234)])
    await ok(client, other, [hr(1, t, 90)])
    req = await ready(client, app, me)
    files = unzip((await download(client, me, req)).content)
    seen = await check_against_schema(db, files, me["account"]["id"])
    assert {"health_vitals_days", "health_activity_days"} <= seen
    data = json.loads(files["data/health.vitals.json"])
    assert len(data["tables"]["health_vitals_days"]["rows"]) == 1
    # chosen deletion of steps and activity: only those rows go
    r = await client.post(
        "/api/v1/me/data/deletion",
        json={"category": "health.activity"},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    a = me["account"]["id"]
    assert not await query(db, "SELECT day FROM health_activity_days WHERE account_id = :a", a=a)
    days = "SELECT day FROM health_vitals_days WHERE account_id = :a ORDER BY day"
    assert [r["day"] for r in await query(db, days, a=a)] == [chunks.day_of(t)]
    # a range of days: only the days in it go
    await ok(client, me, [hr(2, t + timedelta(days=1), 71), hr(3, t + timedelta(days=2), 72)])
    r = await client.post(
        "/api/v1/me/data/deletion",
        json={
            "category": "health.vitals",
            "since": iso(t + timedelta(days=1)),
            "until": iso(t + timedelta(days=2)),
        },
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    got = [r["day"] for r in await query(db, days, a=a)]
    assert got == [chunks.day_of(t), chunks.day_of(t) + 2]
    # the account's deletion takes the rest, and nothing of the other person
    r = await ask_deletion(client, sms, me)
    assert r.status_code == 202, r.text
    clock.advance(16 * 86400)
    await jobs.run_due(app.state.runtime)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    assert not await query(db, "SELECT day FROM health_vitals_days WHERE account_id = :a", a=a)
    assert await count_rows(db, "health_vitals_days") == 1


# --- the kids' watch ----------------------------------------------------------------------------


async def test_a_watchs_health_frames_are_stored_as_the_wearers_samples(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Any
) -> None:
    ctx = await household(client, sms)
    g, dep = ctx["guardians"][0], ctx["dep"]
    await conn.sync()
    # without the wearer's separate consent: answered, nothing kept
    assert await conn.ask(from_file("oxygen.txt")) == b"[3G*8800000015*0008*oxygen,1]"
    assert await count_rows(db, "health_vitals_days") == 0
    await grant_ward(client, g, dep, "health.vitals")
    await grant_ward(client, g, dep, "health.activity")
    assert await conn.ask(from_file("bphrt.txt")) == b"[3G*8800000015*0005*bphrt]"
    assert await conn.ask(from_file("bphrt.txt")) == b"[3G*8800000015*0005*bphrt]"  # sent again
    assert await conn.ask(from_file("btemp2.txt")) == b"[3G*8800000015*0006*btemp2]"
    assert await conn.ask(from_file("oxygen.txt")) == b"[3G*8800000015*0008*oxygen,1]"
    await conn.send(from_file("heart.txt"))
    await conn.silent()
    await conn.sync()
    async with db.sessions() as s:
        latest = {x.metric: x for x in await health_service.latest(s, account_id=dep)}
        t = clock.utcnow()
        hrs = await health_service.read(
            s, account_id=dep, metric="heart_rate", lo_ms=0, hi_ms=int(t.timestamp() * 1000) + 1
        )
    assert latest["blood_pressure"].values == {"systolic": 118, "diastolic": 76}
    assert latest["body_temperature"].value == 36.72
    assert latest["spo2"].value == 98
    # the heart rate measured with the blood pressure, and the heart frame's; the
    # blood-pressure frame sent twice is stored once
    assert sorted(hrs.v.tolist()) == [82.0, 88.0]
    assert latest["heart_rate"].unit == "/min"


# --- reading ------------------------------------------------------------------------------------


async def test_summaries_and_series_match_what_the_samples_say(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms)
    t = base()  # three days back, midnight UTC
    # two days of heart rate every 7 minutes, a known but irregular pattern
    beats = {t + timedelta(minutes=7 * i): 50 + (i * 37) % 90 for i in range(2 * 24 * 60 // 7)}
    hrs = [hr(i, at, v) for i, (at, v) in enumerate(beats.items())]
    for k in range(0, len(hrs), 2000):
        await ok(client, me, hrs[k : k + 2000])
    walk = [steps(i, t + timedelta(hours=i), 100 * i + 7) for i in range(30)]  # 30 hours
    spo2 = [
        {**hr(1000 + i, t + timedelta(hours=3 * i), v), "metric": "spo2", "unit": "%"}
        for i, v in enumerate([97, 95, 99, 93, 98, 96, 94, 97, 99, 92])
    ]
    rest = [
        {**hr(2000 + i, t + timedelta(hours=8 + 24 * i), v), "metric": "resting_heart_rate"}
        for i, v in enumerate([58, 61])
    ]
    # a night ending on day 2 at 07:00: in bed 23:00-07:00, core and deep and REM, awake
    night = t + timedelta(days=1) - timedelta(hours=1)

    def sleep(i: int, a: int, b: int, stage: str) -> dict[str, Any]:
        return {
            "metric": "sleep",
            "start": iso(night + timedelta(minutes=a)),
            "end": iso(night + timedelta(minutes=b)),
            "stage": stage,
            "source": "Watch",
            "record_id": f"sl-{i}",
        }

    nights = [
        sleep(0, 0, 480, "in_bed"),
        sleep(1, 10, 100, "asleep_core"),
        sleep(2, 100, 160, "asleep_deep"),
        sleep(3, 160, 200, "awake"),
        sleep(4, 200, 300, "asleep_rem"),
        sleep(5, 300, 470, "asleep_core"),
    ]
    out = await ok(client, me, walk + spo2 + rest + nights)
    assert out["refused"] == 0, out
    d0, d1 = t.date(), (t + timedelta(days=1)).date()
    got = await get(
        client, me, "/api/v1/health/summary/daily", since=d0.isoformat(), until=d1.isoformat()
    )
    days = got["summaries"]
    assert [d["start"] for d in days] == [
        iso(t).replace("+00:00", "Z"),
        iso(t + timedelta(days=1)).replace("+00:00", "Z"),
    ]
    for n, d in enumerate(days):
        lo, hi = t + timedelta(days=n), t + timedelta(days=n + 1)
        vals = [v for at, v in beats.items() if lo <= at < hi]
        assert d["heart_rate_min"] == min(vals)
        assert d["heart_rate_max"] == max(vals)
        assert d["heart_rate_avg"] == pytest.approx(statistics.fmean(vals), abs=0.05)
        assert d["heart_rate_count"] == len(vals)
        assert d["steps"] == sum(
            100 * i + 7 for i in range(30) if lo <= t + timedelta(hours=i) < hi
        )
        sp = [
            v
            for i, v in enumerate([97, 95, 99, 93, 98, 96, 94, 97, 99, 92])
            if lo <= t + timedelta(hours=3 * i) < hi
        ]
        assert d["spo2_min"] == (min(sp) if sp else None)
        assert d["resting_heart_rate"] == [58, 61][n]
    assert days[0]["sleep_asleep_min"] is None  # the night ends on the second day
    assert days[1]["sleep_asleep_min"] == 90 + 60 + 100 + 170
    assert days[1]["sleep_in_bed_min"] == 480
    assert days[1]["sleep_stages_min"] == {
        "in_bed": 480,
        "awake": 40,
        "asleep_core": 260,
        "asleep_deep": 60,
        "asleep_rem": 100,
    }
    # a week from day 0: everything
    wk = (await get(client, me, "/api/v1/health/summary/weekly", since=d0.isoformat()))["summaries"]
    assert len(wk) == 1
    allv = list(beats.values())
    assert (wk[0]["heart_rate_min"], wk[0]["heart_rate_max"]) == (min(allv), max(allv))
    assert wk[0]["steps"] == sum(100 * i + 7 for i in range(30))
    assert wk[0]["spo2_min"] == 92
    assert wk[0]["resting_heart_rate"] == pytest.approx(59.5)
    # the series, hourly, against buckets computed here
    since, until = t + timedelta(hours=5), t + timedelta(hours=29)
    s = await get(
        client, me, "/api/v1/health/series", metric="heart_rate", since=iso(since), until=iso(until)
    )
    want: dict[datetime, list[float]] = {}
    for at, v in beats.items():
        if since <= at < until:
            want.setdefault(at.replace(minute=0, second=0, microsecond=0), []).append(v)
    assert [datetime.fromisoformat(x) for x in s["t"]] == sorted(want)
    assert s["min"] == [min(want[k]) for k in sorted(want)]
    assert s["max"] == [max(want[k]) for k in sorted(want)]
    assert s["count"] == [len(want[k]) for k in sorted(want)]
    assert s["avg"] == pytest.approx([statistics.fmean(want[k]) for k in sorted(want)], abs=0.01)
    # steps by day in Asia/Shanghai (UTC+8): sums
    s = await get(
        client,
        me,
        "/api/v1/health/series",
        metric="steps",
        since=iso(t - timedelta(hours=8)),
        until=iso(t + timedelta(days=2) - timedelta(hours=8)),
        resolution="day",
        tz="Asia/Shanghai",
    )
    assert s["aggregate"] == "sum"
    first = sum(100 * i + 7 for i in range(30) if i < 16)  # before 16:00 UTC = local midnight
    assert s["sum"] == [first, sum(100 * i + 7 for i in range(30)) - first]
    # refusals
    r = await client.get(
        "/api/v1/health/series",
        params={
            "metric": "heart_rate",
            "since": iso(t - timedelta(days=365)),
            "until": iso(t),
            "resolution": "minute",
        },
        headers=bearer(me["token"]),
    )
    problem(r, 422, "health.too_many_points")
    r = await client.get(
        "/api/v1/health/series",
        params={"metric": "sleep", "since": iso(t), "until": iso(t + timedelta(days=1))},
        headers=bearer(me["token"]),
    )
    problem(r, 422, "health.no_series")
    r = await client.get(
        "/api/v1/health/summary/daily",
        params={"since": d0.isoformat(), "until": d1.isoformat(), "tz": "Mars/Olympus"},
        headers=bearer(me["token"]),
    )
    problem(r, 422, "health.bad_time_zone")


async def test_a_phone_and_a_watch_counting_the_same_walk_count_it_once(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await person(client, sms)
    t = base() + timedelta(hours=9)

    def at(minutes: int) -> datetime:
        return t + timedelta(minutes=minutes)

    samples = [
        # 09:00-10:00 both count the morning walk: the watch counted more
        steps(0, at(0), 1000),
        steps(1, at(30), 900),
        steps(2, at(5), 1200, source="Watch"),
        steps(3, at(35), 1100, source="Watch"),
        # 10:00-11:00 the phone stayed on the table: the watch alone
        steps(4, at(70), 800, source="Watch"),
        # 11:00-12:00 the watch was charging: the phone alone, two samples
        steps(5, at(125), 300),
        steps(6, at(150), 200),
        # the night: the phone knows the time in bed, the watch the stages,
        # a second watch the same night again
        {
            **steps(7, at(13 * 60), 0),
            "metric": "sleep",
            "value": None,
            "unit": None,
            "end": iso(at(21 * 60)),
            "stage": "in_bed",
        },
        {
            **steps(8, at(13 * 60 + 10), 0),
            "metric": "sleep",
            "value": None,
            "unit": None,
            "end": iso(at(13 * 60 + 400)),
            "stage": "asleep_core",
            "source": "Watch",
        },
        {
            **steps(9, at(13 * 60 + 20), 0),
            "metric": "sleep",
            "value": None,
            "unit": None,
            "end": iso(at(13 * 60 + 380)),
            "stage": "asleep_core",
            "source": "Watch 2",
        },
    ]
    out = await ok(client, me, samples)
    assert out["stored"] == len(samples), out
    d0, d1 = t.date(), (t + timedelta(days=1)).date()
    days = (
        await get(
            client, me, "/api/v1/health/summary/daily", since=d0.isoformat(), until=d1.isoformat()
        )
    )["summaries"]
    assert days[0]["steps"] == (1200 + 1100) + 800 + (300 + 200)
    # the night ends on the second day: in bed from the phone, asleep from the watch that saw more
    assert days[1]["sleep_in_bed_min"] == 480
    assert days[1]["sleep_stages_min"] == {"in_bed": 480, "asleep_core": 390}
    assert days[1]["sleep_asleep_min"] == 390
    # the hourly series says the same, hour by hour; a 15-minute one keeps the winner's samples
    s = await get(
        client, me, "/api/v1/health/series", metric="steps", since=iso(t), until=iso(at(180))
    )
    assert s["sum"] == [2300, 800, 500]
    s = await get(
        client,
        me,
        "/api/v1/health/series",
        metric="steps",
        since=iso(t),
        until=iso(at(60)),
        resolution="15min",
    )
    assert (s["t"], s["sum"]) == (
        [iso(at(0)).replace("+00:00", "Z"), iso(at(30)).replace("+00:00", "Z")],
        [1200, 1100],
    )


@pytest.mark.db_agnostic
def test_one_source_per_hour_keeps_the_hours_biggest_counter_and_is_stable() -> None:
    m = METRICS["steps"]
    h = 3_600_000
    t0 = np.array([0, 10, 20, h, h + 5, 2 * h], np.int64)
    v = np.array([5.0, 7.0, 5.0, 3.0, 3.0, 9.0])
    names = np.array(["b", "a", "b", "b", "a", "a"], dtype=object)
    x = health_service.Samples(m, t0, t0 + 1, v, v * 0, np.zeros(6, np.int8), names)
    got = health_service.one_source_per_hour(x)
    # hour 0: b counted 10, a 7 -> b; hour 1: a tie, the first name (a); hour 2: a alone
    assert got.t0.tolist() == [0, 20, h + 5, 2 * h]
    assert got.src_names is not None and got.src_names.tolist() == ["b", "b", "a", "a"]


async def test_a_watchs_step_count_is_stored_as_the_steps_since_its_last_report(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Any
) -> None:
    ctx = await household(client, sms)
    g, dep = ctx["guardians"][0], ctx["dep"]
    for cat in ("health.vitals", "health.activity"):
        r = await client.post(
            f"/api/v1/guardian/wards/{dep}/consents",
            json={
                "subject": f"category:{cat}",
                "action": "grant",
                "policy_version": POLICY_VERSION,
            },
            headers=bearer(g["token"]),
        )
        assert r.status_code == 201, r.text
    await conn.sync()
    t0 = clock.utcnow()
    # the watch's totals since its midnight; 200 after it started a new day
    for total in (1000, 1500, 1500, 200, 260):
        assert await conn.ask(frame(f"LK,{total},0,90")) == reply("LK")
        clock.advance(300)
    async with db.sessions() as s:
        x = await health_service.read(
            s,
            account_id=dep,
            metric="steps",
            lo_ms=int(t0.timestamp() * 1000) - 1000,
            hi_ms=int(clock.utcnow().timestamp() * 1000),
        )
    # the first report as it is, then the differences; nothing when it did not move
    assert x.v.tolist() == [1000, 500, 200, 60]
    assert x.v2.tolist() == [1000, 1500, 200, 260]
    # each increment spans the time since the report before it (5 minutes of the
    # test clock apart, plus the real time the frames took)
    spans = (x.t1 - x.t0).tolist()
    assert spans[0] == 0
    for got, want in zip(spans[1:], [300_000, 600_000, 300_000], strict=True):
        assert want <= got < want + 5_000
    assert (x.t0[1:] == x.t1[:-1]).all()
