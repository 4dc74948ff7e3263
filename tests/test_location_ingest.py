"""Location ingestion through our apps' batch API: idempotent retries, late and
out-of-order fixes, impossible values refused or flagged with the reason,
precise location withdrawn -> only approximate location stored, location off
-> nothing stored, and cell/Wi-Fi-only fixes never stored as 0,0."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kares import clock
from tests.conftest import POLICY_VERSION, bearer, count_rows, query, sign_up, snapshot

FIXES = "/api/v1/location/fixes"
ME = "+8613700001001"


def iso(t: datetime) -> str:
    return t.isoformat()


def fix(i: int, t: datetime, lat: float = 31.2304, lon: float = 121.4737, **kw: Any) -> dict:
    return {"id": f"c{i}", "t": iso(t), "lat": lat, "lon": lon, "accuracy_m": 8, **kw}


async def grant_precise(client: httpx.AsyncClient, me: dict[str, Any]) -> None:
    r = await client.post(
        "/api/v1/me/consents",
        json={
            "subject": "category:location.precise",
            "action": "grant",
            "policy_version": POLICY_VERSION,
        },
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text


async def member(client: httpx.AsyncClient, sms: Any, phone: str = ME, **kw: Any) -> dict:
    """A signed-up adult who agreed to precise location."""
    me = await sign_up(client, sms, phone, **kw)
    await grant_precise(client, me)
    return me


async def upload(client: httpx.AsyncClient, me: dict, fixes: list[dict]) -> httpx.Response:
    return await client.post(FIXES, json={"fixes": fixes}, headers=bearer(me["token"]))


async def stored(db: Any, account_id: str) -> list[dict[str, Any]]:
    return await query(
        db,
        "SELECT client_id, recorded_ms, lat, lon, accuracy_m, speed_mps, status, flag, "
        "precise, source, radio FROM location_fixes WHERE account_id = :a "
        "ORDER BY recorded_ms",
        a=account_id,
    )


async def last_of(db: Any, account_id: str) -> dict[str, Any] | None:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM location_last WHERE account_id = :a"), {"a": account_id}
            )
        ).first()
        return dict(row._mapping) if row else None


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


async def test_a_batch_is_stored_once_however_often_it_is_retried(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    batch = [fix(i, now - timedelta(seconds=100 - i), lat=31.23 + i * 1e-4) for i in range(50)]
    r = await upload(client, me, batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 50 and body["duplicates"] == 0 and body["rejected"] == []
    assert body["precision"] == "precise"
    # the client did not see the answer and sends it all again, plus 10 new ones
    batch2 = batch + [fix(100 + i, now - timedelta(seconds=40 - i)) for i in range(10)]
    r = await upload(client, me, batch2)
    assert r.json()["accepted"] == 10 and r.json()["duplicates"] == 50
    rows = await stored(db, me["account"]["id"])
    assert len(rows) == 60
    assert len({r["client_id"] for r in rows}) == 60
    assert all(r["status"] == "ok" and r["precise"] for r in rows)


async def test_the_same_id_twice_in_one_batch_counts_once(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    r = await upload(client, me, [fix(1, now), fix(1, now)])
    assert r.json()["accepted"] == 1 and r.json()["duplicates"] == 1
    assert len(await stored(db, me["account"]["id"])) == 1


async def test_late_and_out_of_order_fixes_are_kept_but_never_rewind_the_last_location(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    r = await upload(client, me, [fix(3, now - timedelta(minutes=1), lat=31.3)])
    assert r.status_code == 200
    # an hour-old batch, out of order, arrives after the newer fix
    late = [
        fix(2, now - timedelta(minutes=50), lat=31.2),
        fix(1, now - timedelta(minutes=60), lat=31.1),
    ]
    assert (await upload(client, me, late)).json()["accepted"] == 2
    rows = await stored(db, me["account"]["id"])
    assert [r["client_id"] for r in rows] == ["c1", "c2", "c3"]
    last = await last_of(db, me["account"]["id"])
    assert last is not None and last["lat"] == pytest.approx(31.3)
    assert last["recorded_ms"] == ms(now - timedelta(minutes=1))


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"lat": 91.0}, "fix.out_of_range"),
        ({"lon": -180.5}, "fix.out_of_range"),
        ({"lat": 0.0, "lon": 0.0}, "fix.null_island"),
        ({"accuracy_m": -3}, "fix.invalid_accuracy"),
        ({"t_shift": timedelta(days=1)}, "fix.future"),
        ({"t_shift": -timedelta(days=400)}, "fix.too_old"),
        ({"lat": None, "lon": None}, "fix.no_position"),
    ],
)
async def test_impossible_fixes_are_refused_with_the_reason_and_the_rest_stored(
    client: httpx.AsyncClient, sms: Any, db: Any, bad: dict, code: str
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    shift = bad.pop("t_shift", timedelta(0))
    good = fix(1, now - timedelta(seconds=5))
    wrong = {**fix(2, now + shift), **bad}
    r = await upload(client, me, [good, wrong])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["index"], x["id"], x["code"]) for x in body["rejected"]] == [(1, "c2", code)]
    assert body["rejected"][0]["detail"]
    assert [r["client_id"] for r in await stored(db, me["account"]["id"])] == ["c1"]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"accuracy_m": 5000}, "fix.poor_accuracy"),
        ({"speed_mps": 500}, "fix.impossible_speed"),
    ],
)
async def test_implausible_fixes_are_kept_flagged_and_never_used_as_good(
    client: httpx.AsyncClient, sms: Any, db: Any, bad: dict, code: str
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    r = await upload(client, me, [{**fix(1, now, lat=35.0), **bad}])
    body = r.json()
    assert body["accepted"] == 1 and [f["code"] for f in body["flagged"]] == [code]
    (row,) = await stored(db, me["account"]["id"])
    assert row["status"] == "flagged" and row["flag"] == code
    assert await last_of(db, me["account"]["id"]) is None


async def test_a_jump_no_vehicle_could_make_is_flagged(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    shanghai = fix(1, now - timedelta(seconds=20))
    # Beijing, ten seconds later: about 1,000 km in 10 s
    beijing = fix(2, now - timedelta(seconds=10), lat=39.9042, lon=116.4074)
    back = fix(3, now, lat=31.2305, lon=121.4738)
    body = (await upload(client, me, [shanghai, beijing, back])).json()
    assert [(f["id"], f["code"]) for f in body["flagged"]] == [("c2", "fix.implied_speed")]
    last = await last_of(db, me["account"]["id"])
    assert last is not None and last["lat"] == pytest.approx(31.2305)


@pytest.mark.parametrize(
    "body",
    [
        {"fixes": []},
        {"fixes": [{"t": "2026-01-01T00:00:00", "lat": 1, "lon": 1}]},  # no zone
        {"fixes": [{"t": "yesterday", "lat": 1, "lon": 1}]},
        {"fixes": [{"lat": 1, "lon": 1}]},
        {"fixes": [{"t": "2026-01-01T00:00:00Z", "lat": "north", "lon": 1}]},
        {"fixes": [{"t": "2026-01-01T00:00:00Z", "lat": 1, "lon": 1, "source": "tea leaves"}]},
        {"fixes": [{"t": "2026-01-01T00:00:00Z", "lat": 1, "lon": 1, "id": "x" * 81}]},
        {"fixes": "all of them"},
        {"fixes": [{"t": "2026-01-01T00:00:00Z", "lat": 1, "lon": 1}] * 1001},
    ],
)
async def test_malformed_batches_get_a_clear_error_and_store_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, body: dict
) -> None:
    me = await member(client, sms)
    before = await snapshot(db)
    r = await client.post(FIXES, json=body, headers=bearer(me["token"]))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "request.invalid"
    assert await snapshot(db) == before


async def test_a_body_only_the_model_reads_is_stored_as_the_usual_one(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    # the route reads usual bodies straight into fixes and leaves the rest to its
    # model (here: a battery of 80.0, which the model reads as 80): stored alike
    me, other = await member(client, sms), await member(client, sms, "+8613700001002")
    now = clock.utcnow()
    usual = [fix(1, now - timedelta(seconds=5), battery=80, speed_mps=1.5)]
    unusual = [fix(1, now - timedelta(seconds=5), battery=80.0, speed_mps=1.5)]
    assert (await upload(client, me, usual)).json()["accepted"] == 1
    assert (await upload(client, other, unusual)).json()["accepted"] == 1
    assert await stored(db, me["account"]["id"]) == await stored(db, other["account"]["id"])
    lasts = [await last_of(db, m["account"]["id"]) for m in (me, other)]
    assert [x["battery"] for x in lasts if x] == [80, 80]


@pytest.mark.parametrize("settings_overrides", [{"location_batch_max": 3}], ids=["max=3"])
@pytest.mark.parametrize("battery", [80, 80.0], ids=["read", "model"])
async def test_a_batch_over_the_configured_limit_is_refused_whole(
    client: httpx.AsyncClient, sms: Any, db: Any, battery: float
) -> None:
    me = await member(client, sms)
    before = await snapshot(db)
    now = clock.utcnow()
    batch = [fix(i, now - timedelta(seconds=10 - i), battery=battery) for i in range(4)]
    r = await upload(client, me, batch)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "location.batch_too_large"
    assert await snapshot(db) == before
    assert (await upload(client, me, batch[:3])).json()["accepted"] == 3


async def test_without_precise_consent_only_approximate_location_is_stored(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await sign_up(client, sms, ME)  # never agreed to precise location
    now = clock.utcnow()
    r = await upload(client, me, [fix(1, now, lat=31.234567, lon=121.476543, speed_mps=3)])
    assert r.json()["precision"] == "approximate"
    (row,) = await stored(db, me["account"]["id"])
    assert (row["lat"], row["lon"]) == (31.23, 121.48)
    assert row["precise"] in (False, 0) and row["speed_mps"] is None
    assert row["accuracy_m"] >= 1000


async def test_withdrawing_precise_location_takes_effect_on_the_next_upload(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    await upload(client, me, [fix(1, now - timedelta(seconds=10), lat=31.234567)])
    r = await client.post(
        "/api/v1/me/consents",
        json={
            "subject": "category:location.precise",
            "action": "withdraw",
            "policy_version": POLICY_VERSION,
        },
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text
    await upload(client, me, [fix(2, now, lat=31.234567)])
    rows = await stored(db, me["account"]["id"])
    assert [r["lat"] for r in rows] == [31.234567, 31.23]
    last = await last_of(db, me["account"]["id"])
    assert last is not None and last["lat"] == 31.23


async def test_the_devices_approximate_location_state_rounds_what_is_stored(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, device={"model": "iPhone15,2", "os": "iOS"})
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"location": "approximate"}},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    body = (await upload(client, me, [fix(1, clock.utcnow(), lat=31.234567)])).json()
    assert body["precision"] == "approximate"
    (row,) = await stored(db, me["account"]["id"])
    assert row["lat"] == 31.23


async def test_location_off_stores_nothing_and_says_why(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, device={"model": "Pixel 8", "os": "Android"})
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"location": "denied"}},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200
    before = await snapshot(db)
    r = await upload(client, me, [fix(1, clock.utcnow())])
    assert r.status_code == 403
    assert r.json()["code"] == "permission.closed"
    assert r.json()["permissions"] == ["location"]
    assert await snapshot(db) == before


CELLS = [{"mcc": 460, "mnc": 0, "lac": 4301, "cid": 20986, "rssi": -70}]
WIFI = [
    {"mac": "a4:56:02:11:22:33", "rssi": -50},
    {"mac": "a4:56:02:11:22:34", "rssi": -60},
]


async def test_cell_and_wifi_only_fixes_are_kept_as_heard_never_as_zero(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms)
    # towers and access points no table knows
    cells = [{**CELLS[0], "cid": 77777}]
    wifi = [{"mac": "02:00:00:00:00:01", "rssi": -40}, {"mac": "02:00:00:00:00:02", "rssi": -45}]
    f = {"id": "r1", "t": iso(clock.utcnow()), "source": "cell", "cells": cells, "wifi": wifi}
    body = (await upload(client, me, [f])).json()
    assert body["accepted"] == 1 and body["unresolved"] == 1
    (row,) = await stored(db, me["account"]["id"])
    assert row["lat"] is None and row["lon"] is None and row["status"] == "unresolved"
    assert "77777" in row["radio"] and "02:00:00:00:00:01" in row["radio"]
    assert await last_of(db, me["account"]["id"]) is None


@pytest.fixture(scope="module")
def geo_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Read-only tables, written once for the module: the settings that name them
    stay equal from test to test, and so share one built app (tests/support/apps.py)."""
    where = tmp_path_factory.mktemp("geo")
    cells = where / "cells.csv"
    cells.write_text(
        "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,"
        "averageSignal\n"
        "LTE,460,0,4301,20986,0,121.4737,31.2304,800,12,1,1459814400,1700000000,0\n"
    )
    wifi = where / "wifi.csv"
    wifi.write_text(
        "mac,lat,lon,range_m\na4:56:02:11:22:33,31.2400,121.4800,40\n"
        "a4:56:02:11:22:34,31.2402,121.4802,40\n"
    )
    return {"geo_cells_csv": cells, "geo_wifi_csv": wifi}


@pytest.fixture
def settings_overrides(geo_tables: dict[str, Any]) -> dict[str, Any]:
    return geo_tables


async def test_a_local_table_resolves_cells_and_wifi_into_positions(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    only_cell = {"id": "r1", "t": iso(now - timedelta(seconds=5)), "cells": CELLS}
    both = {"id": "r2", "t": iso(now), "cells": CELLS, "wifi": WIFI}
    body = (await upload(client, me, [only_cell, both])).json()
    assert body["accepted"] == 2 and body["unresolved"] == 0
    rows = await stored(db, me["account"]["id"])
    assert rows[0]["source"] == "cell" and rows[0]["lat"] == pytest.approx(31.2304, abs=1e-3)
    assert rows[1]["source"] == "wifi" and rows[1]["lat"] == pytest.approx(31.2401, abs=1e-3)
    assert all(r["radio"] is None for r in rows)  # once resolved, what was heard is not kept


async def test_wifi_is_not_used_when_the_wireless_permission_is_closed(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms, device={"model": "Pixel 8", "os": "Android"})
    r = await client.put(
        f"/api/v1/devices/{me['device_id']}/permissions",
        json={"permissions": {"wireless_network": "denied"}},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    f = {"id": "r2", "t": iso(clock.utcnow()), "cells": CELLS, "wifi": WIFI}
    assert (await upload(client, me, [f])).json()["accepted"] == 1
    (row,) = await stored(db, me["account"]["id"])
    assert row["source"] == "cell"


async def test_fixes_count_rows_only_for_their_owner(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    a = await member(client, sms)
    b = await member(client, sms, "+8613700001002")
    now = clock.utcnow()
    await upload(client, a, [fix(1, now)])
    await upload(client, b, [fix(1, now)])  # same client id, another person: not a duplicate
    assert await count_rows(db, "location_fixes") == 2


async def test_the_same_batch_sent_three_times_at_once_is_accepted_once(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await member(client, sms)
    now = clock.utcnow()
    batch = [fix(i, now - timedelta(seconds=300 - i), lat=31.2 + i * 1e-5) for i in range(300)]
    replies = await asyncio.gather(*(upload(client, me, batch) for _ in range(3)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert sum(r.json()["accepted"] for r in replies) == 300
    assert sum(r.json()["duplicates"] for r in replies) == 600
    assert len(await stored(db, me["account"]["id"])) == 300
