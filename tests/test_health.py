"""The health domain (issue 15): metrics as data and unit conversion, the native
batch upload (per-item refusals, idempotency, consent and the Motion & fitness
permission), encryption at rest (the raw database file scanned), the rights
export and deletion through the column declarations, and the reading endpoints
checked against values computed here independently."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kares import clock, jobs
from kares.health import chunks
from kares.health.metrics import METRICS
from tests.conftest import POLICY_VERSION, bearer, count_rows, query, sign_up, snapshot
from tests.test_devices import IPHONE
from tests.test_rights_erase import ask as ask_deletion
from tests.test_rights_export import check_against_schema, download, ready, unzip

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
    assert await query(db, "SELECT day FROM health_vitals_days WHERE account_id = :a", a=a)
    # the account's deletion takes the rest, and nothing of the other person
    r = await ask_deletion(client, sms, me)
    assert r.status_code == 202, r.text
    clock.advance(16 * 86400)
    await jobs.run_due(app.state.runtime)
    assert not await query(db, "SELECT id FROM accounts WHERE id = :a", a=a)
    assert not await query(db, "SELECT day FROM health_vitals_days WHERE account_id = :a", a=a)
    assert await count_rows(db, "health_vitals_days") == 1
