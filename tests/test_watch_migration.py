"""Migration 0010 on a database with data stored before it (SQLite, or
PostgreSQL in its tier): the watch's IMEI leaves the keys of its fixes and
alarms (only its last four characters stay), SOS notices lose the coordinates
in their text and point at their alert, and nothing else moves."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from kares.db import make_engine
from tests import test_families_migration as fm
from tests.test_families_migration import NOW, migrate

fresh_url = fm.fresh_url  # an empty database of the tier's kind (fixture)

IMEI = "358240051111110"


async def rows(engine: Any, sql: str) -> list[dict[str, Any]]:
    async with engine.connect() as c:
        return [dict(r._mapping) for r in await c.execute(text(sql))]


async def seed(engine: Any) -> None:
    """What 0009 stored: a watch's fixes and alarm keyed by its IMEI, SOS notices
    with coordinates in their text, and what is not a watch's."""
    async with engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO accounts (id, phone_hash, password_failures, status, "
                "created_at, updated_at) VALUES ('a1', 'h-a1', 0, 'active', :t, :t)"
            ),
            {"t": NOW},
        )
        for i, key in enumerate(
            (f"w:{IMEI}:UD:1700000000000", "app-fix-1", f"w:{IMEI}:AL:1700000001000")
        ):
            await c.execute(
                text(
                    "INSERT INTO location_fixes (account_id, client_id, recorded_ms, "
                    "received_ms, lat, lon, source, precise, status) VALUES "
                    "('a1', :k, :t, :t, 31.2304, 121.4737, 'gps', true, 'ok')"
                ),
                {"k": key, "t": 1700000000000 + i * 1000},
            )
        await c.execute(
            text(
                "INSERT INTO sos_alerts (id, account_id, lat, lon, precision, status, "
                "reminders_sent, created_at, source_key) VALUES ('s1', 'a1', 31.22987, "
                "121.474125, 'precise', 'open', 0, :t, :k)"
            ),
            {"t": NOW, "k": f"w:{IMEI}:1700000001000:10000"},
        )
        for nid, category, body, data in (
            (
                "n1",
                "sos",
                "Li asked for help near 31.22987, 121.47412. Open Kares to respond.",
                {"sos_id": "s1", "account_id": "a1", "lat": 31.22987, "lon": 121.474125},
            ),
            ("n2", "sos", "Wang answered the SOS from Li.", {"sos_id": "s1"}),
            ("n3", "system", "Li's watch battery is low.", {"alarm": "low_battery"}),
        ):
            await c.execute(
                text(
                    "INSERT INTO notifications (id, account_id, category, title, body, "
                    "data, created_at) VALUES (:id, 'a1', :c, 't', :b, :d, :t)"
                ),
                {"id": nid, "c": category, "b": body, "d": json.dumps(data), "t": NOW},
            )


async def test_old_keys_and_notices_lose_the_imei_and_the_coordinates(fresh_url: str) -> None:
    await migrate(fresh_url, "0009")
    engine = make_engine(fresh_url)
    try:
        await seed(engine)
        await migrate(fresh_url, "0010")

        fixes = await rows(engine, "SELECT client_id FROM location_fixes ORDER BY recorded_ms")
        assert [f["client_id"] for f in fixes] == [
            "w:~1110:UD:1700000000000",
            "app-fix-1",
            "w:~1110:AL:1700000001000",
        ]
        (alert,) = await rows(engine, "SELECT source_key, repeats, open_device FROM sos_alerts")
        assert alert == {
            "source_key": "w:~1110:1700000001000:10000",
            "repeats": 0,
            "open_device": None,
        }
        notes = {n["id"]: n for n in await rows(engine, "SELECT id, body, data FROM notifications")}

        def data(n: dict[str, Any]) -> Any:
            return n["data"] if isinstance(n["data"], dict) else json.loads(n["data"])

        assert notes["n1"]["body"] == "Li asked for help. Open Kares to respond."
        assert data(notes["n1"]) == {"sos_id": "s1", "account_id": "a1", "render": "sos"}
        assert notes["n2"]["body"] == "Wang answered the SOS from Li."
        assert data(notes["n2"]) == {"sos_id": "s1"}
        assert data(notes["n3"]) == {"alarm": "low_battery"}

        # and back: the columns and the table go, the rows stay
        await migrate(fresh_url, "0009", down=True)
        assert len(await rows(engine, "SELECT id FROM sos_alerts")) == 1
        await migrate(fresh_url, "0010")
    finally:
        await engine.dispose()
