"""No IMEI and no SOS coordinates as text at rest: a watch reports and raises an
SOS over its TCP port, then every stored value (both tiers) and the raw
database file and its write-ahead log (SQLite) are searched for the watch's
IMEI and for the alert's coordinates written out as text. The guardians still
read where the SOS was raised: the inbox renders it from the alert."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from kares.domains import metadata
from tests.support import watch as ws
from tests.support.databases import tier
from tests.support.watch import WID, Conn, alerts, from_file, household, inbox, now_s

server, conn = ws.server, ws.conn  # the listener and a connection to it (fixtures)

# the SOS capture's position, and the position report's
SOS_AT = (31.22987, 121.474125)
FIX_AT = (31.230416, 121.473701)


def as_text(lat: float, lon: float) -> list[bytes]:
    """The ways a program writes a coordinate pair out as text."""
    out: list[bytes] = []
    for x in (lat, lon):
        out += [repr(x).encode(), f"{x:.5f}".encode(), f"{x:.4f}".encode()]
    return out


def file_bytes(path: Path) -> bytes:
    """A SQLite database file and its write-ahead log, as bytes."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def stored_text(db: Any) -> list[tuple[str, str, str]]:
    """Every stored value that is text (or JSON), as (table, column, text)."""
    out: list[tuple[str, str, str]] = []
    async with db.engine.connect() as c:
        for t in metadata.sorted_tables:
            for row in (await c.execute(select(t))).all():
                for col, v in zip(t.columns, row, strict=True):
                    if isinstance(v, str):
                        out.append((t.name, col.name, v))
                    elif isinstance(v, dict | list):
                        out.append((t.name, col.name, json.dumps(v)))
                    elif isinstance(v, bytes):
                        out.append((t.name, col.name, v.decode("latin-1")))
    return out


async def test_an_sos_from_a_watch_leaves_no_imei_and_no_coordinates_as_text(
    client: httpx.AsyncClient, sms: Any, db: Any, conn: Conn
) -> None:
    ctx = await household(client, sms)
    # a position, then an alarm: frames are handled in order, so the answer covers both
    await conn.send(from_file("ud_gps.txt", at=now_s() - timedelta(seconds=40)))
    assert await conn.ask(from_file("al_sos.txt")) == b"[3G*8800000015*0002*AL]"
    (alert,) = await alerts(db, ctx["dep"])
    assert (alert["lat"], alert["lon"]) == SOS_AT

    # the guardian reads where it was raised: rendered from the alert
    for g in ctx["guardians"]:
        (note,) = [n for n in await inbox(client, g) if n["category"] == "sos"]
        assert note["data"]["sos_id"] == alert["id"]
        assert (note["data"]["lat"], note["data"]["lon"]) == SOS_AT
        lat, lon = SOS_AT
        assert note["body"] == (
            f"Grandma Li asked for help near {lat:.5f}, {lon:.5f}. Open Kares to respond."
        )

    needles = [WID.encode(), *as_text(*SOS_AT), *as_text(*FIX_AT)]
    found = [
        (table, col, n)
        for table, col, v in await stored_text(db)
        for n in needles
        if n.decode() in v
    ]
    assert found == []
    # what the watch stored is keyed without its IMEI: only its last four characters
    rows = await stored_text(db)
    assert ("watches", "imei_tail", WID[-4:]) in rows

    if tier() == "sqlite":
        raw = file_bytes(Path(db.engine.url.database))
        assert WID[-4:].encode() in raw  # the files really were read
        assert [n for n in needles if n in raw] == []
