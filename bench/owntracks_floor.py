"""The floor under ``POST /owntracks``: the same SQL a Kares post runs, with nothing around it.

A bare ASGI app (run by uvicorn, as ``kares serve`` is) that does for one OwnTracks
location what Kares does at the database, statement for statement, on one
``sqlite3`` connection of the Kares database itself: look the credential's token
hash up with its account, read the last location, ``BEGIN IMMEDIATE``, insert the
fix (``ON CONFLICT DO NOTHING``), upsert the last location (``RETURNING position``),
read the places, ``COMMIT``, and read the family's last locations for the reply.
What it leaves out is everything else Kares is: FastAPI's routing and
dependencies, SQLAlchemy's session, the guard's checks, the fix's checks, the
places' arrivals and the live notices. So ``bench_owntracks.py --variants floor``
measures what this machine's Python, uvicorn and SQLite allow for our SQL, and
the gap between it and ``kares`` is the cost of our own layers.

It is a reference for a benchmark, never a server: no consent, no sharing choices,
no checks of what it is sent. Configured by the environment:

  FLOOR_DB    path of the Kares SQLite database (after ``kares migrate`` and ``kares demo``)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import time
from typing import Any

_AUTH = (
    "SELECT sessions.id, sessions.account_id, sessions.kind, sessions.expires_at, "
    "sessions.revoked_at, accounts.status, accounts.privacy_version, accounts.name "
    "FROM sessions JOIN accounts ON accounts.id = sessions.account_id "
    "WHERE sessions.token_hash = ?"
)
_LAST = "SELECT recorded_ms, lat, lon FROM location_last WHERE account_id = ?"
_INSERT = (
    "INSERT INTO location_fixes (account_id, device_id, client_id, recorded_ms, received_ms, "
    "lat, lon, accuracy_m, altitude_m, speed_mps, course_deg, battery, source, precise, status, "
    "flag, radio) VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'gps', 1, 'ok', NULL, NULL) "
    "ON CONFLICT (account_id, client_id) DO NOTHING"
)
_UPSERT = (
    "INSERT INTO location_last (account_id, device_id, recorded_ms, lat, lon, accuracy_m, "
    "speed_mps, course_deg, battery, precise, position) VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, 1, "
    "(SELECT max(id) FROM location_fixes WHERE account_id = ? AND recorded_ms = ?)) "
    "ON CONFLICT (account_id) DO UPDATE SET recorded_ms = excluded.recorded_ms, "
    "lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m, "
    "speed_mps = excluded.speed_mps, course_deg = excluded.course_deg, "
    "battery = excluded.battery, position = excluded.position "
    "WHERE location_last.recorded_ms < excluded.recorded_ms RETURNING position"
)
_PLACES = (
    "SELECT id, family_id, name, lat, lon, radius_m FROM places WHERE family_id IN "
    "(SELECT family_id FROM family_members WHERE account_id = ?) "
    "OR family_id IS NULL AND account_id = ?"
)
_FAMILY = (
    "SELECT m.account_id, m.location, a.name, l.recorded_ms, l.lat, l.lon, l.accuracy_m, "
    "l.battery, (SELECT t.tid FROM location_trackers t WHERE t.account_id = m.account_id "
    "AND t.tid IS NOT NULL ORDER BY t.created_at LIMIT 1) "
    "FROM family_members m JOIN accounts a ON a.id = m.account_id "
    "LEFT JOIN location_last l ON l.account_id = m.account_id "
    "WHERE m.family_id IN (SELECT family_id FROM family_members WHERE account_id = ?) "
    "ORDER BY m.joined_at, m.account_id"
)

_con: sqlite3.Connection | None = None


def _db() -> sqlite3.Connection:
    global _con
    if _con is None:
        _con = sqlite3.connect(os.environ["FLOOR_DB"], isolation_level=None)
        _con.execute("PRAGMA journal_mode=WAL")
        _con.execute("PRAGMA synchronous=NORMAL")
        _con.execute("PRAGMA busy_timeout=30000")
    return _con


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def post(headers: dict[bytes, bytes], body: bytes) -> tuple[int, bytes]:
    auth = headers.get(b"authorization", b"")
    if not auth.startswith(b"Basic "):
        return 401, b"[]"
    user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
    con = _db()
    me = con.execute(_AUTH, (hashlib.sha256(secret.encode()).hexdigest(),)).fetchone()
    if me is None or me[4] is not None:
        return 401, b"[]"
    account = me[1]
    msg = json.loads(body)
    lat, lon, tst = _num(msg.get("lat")), _num(msg.get("lon")), msg.get("tst")
    if msg.get("_type") != "location" or lat is None or lon is None or not isinstance(tst, int):
        return 200, b"[]"
    device = headers.get(b"x-limit-d", b"phone").decode()[:32]
    con.execute(_LAST, (account,)).fetchone()
    vel = _num(msg.get("vel"))
    t_ms = tst * 1000
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute(
            _INSERT,
            (account, f"ot:{device}:{tst}:{lat:.6f},{lon:.6f}", t_ms, int(time.time() * 1000),
             lat, lon, _num(msg.get("acc")), _num(msg.get("alt")),
             vel / 3.6 if vel is not None else None, _num(msg.get("cog")), msg.get("batt")),
        )  # fmt: skip
        con.execute(
            _UPSERT,
            (account, t_ms, lat, lon, _num(msg.get("acc")),
             vel / 3.6 if vel is not None else None, _num(msg.get("cog")), msg.get("batt"),
             account, t_ms),
        ).fetchall()  # fmt: skip
        con.execute(_PLACES, (account, account)).fetchall()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    out: list[dict[str, Any]] = []
    for who, sharing, name, rec, la, lo, acc, batt, tid in con.execute(_FAMILY, (account,)):
        if who != account and sharing == "off":
            continue
        topic = f"owntracks/{user}/{device}" if who == account else f"owntracks/k-{who[:12]}/k"
        tid = tid or (name or "??")[:2].upper()
        out.append({"_type": "card", "tid": tid, "topic": topic, "name": name})
        if rec is not None:
            loc = {"_type": "location", "tid": tid, "lat": la, "lon": lo, "tst": rec // 1000}
            loc.update(topic=topic, acc=round(acc or 0), batt=batt)
            out.append(loc)
    return 200, json.dumps(out).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = "lifespan.startup.complete"
            if message["type"] == "lifespan.shutdown":
                done = "lifespan.shutdown.complete"
            await send({"type": done})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/healthz":  # what the benchmark waits for
        status, reply = 200, b"{}"
    elif scope["method"] != "POST" or scope["path"] != "/owntracks":
        status, reply = 404, b"[]"
    else:
        status, reply = post(dict(scope["headers"]), body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(reply)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": reply})
