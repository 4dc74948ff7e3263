"""The probes of issue 12 (step 6), replayed from outside against a live server.

Each probe is what an attacker, a crowd or an odd client did to a running Kares
when steps 1-4 were probed: bursts of requests at once, hostile bodies, a client
that goes away. Each one sends its requests for real (over loopback, many at once
where the original did) to a :class:`tests.support.live.Live` server, and raises
``AssertionError`` saying what it saw when the service does not hold.

``tests/test_probes.py`` runs every probe against a server on each database tier;
``bench/probes.py`` runs them by hand, with larger bursts (``--scale``), and prints
a table. Loops are bounded in count and time; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.fakes import FakeSmsGateway
from tests.support.live import Live

POLICY_HEADERS = {"content-type": "application/json"}


@dataclass
class Ctx:
    live: Live
    client: httpx.AsyncClient
    sms: FakeSmsGateway
    scale: int = 1
    _phones: itertools.count[int] = field(
        default_factory=lambda: itertools.count(random.randrange(0, 9000) * 100)
    )
    _ips: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def phone(self) -> str:
        """A new mobile number (China, 139 prefix) no probe used before in this run."""
        return f"+86139{next(self._phones) % 100_000_000:08d}"

    def ip(self) -> dict[str, str]:
        """An ``X-Forwarded-For`` header naming an address no probe used before (the
        server trusts 127.0.0.1 as a proxy), so per-address limits of one probe do not
        spill into the next."""
        n = next(self._ips)
        net = "198.51.100" if n < 250 else "203.0.113"
        return {"X-Forwarded-For": f"{net}.{n % 250 + 1}"}

    def demo(self, i: int) -> dict[str, Any]:
        return self.live.demo[i]

    async def sign_up(self, phone: str | None = None) -> dict[str, Any]:
        """A new adult account through the public API; its SignedIn body."""
        phone = phone or self.phone()
        hdr = self.ip()
        r = await self.client.post("/api/v1/auth/sms/send", json={"phone": phone}, headers=hdr)
        assert r.status_code == 202, f"sms/send {r.status_code} {r.text}"
        policy = (await self.client.get("/api/v1/privacy/policy")).json()["version"]
        body = {
            "phone": phone,
            "code": self.sms.last_code(phone),
            "accept_policy": policy,
            "age_bracket": "adult",
        }
        r = await self.client.post("/api/v1/auth/sms/verify", json=body, headers=hdr)
        assert r.status_code in (200, 201), f"sms/verify {r.status_code} {r.text}"
        return dict(r.json())


def auth(who: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {who['token']}"}


def statuses(answers: list[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in answers)


def no_5xx(answers: list[httpx.Response]) -> None:
    bad = [f"{r.status_code} {r.text[:200]}" for r in answers if r.status_code >= 500]
    assert not bad, f"5xx answers: {bad}"


def code(r: httpx.Response) -> str | None:
    try:
        return str(r.json().get("code"))
    except (ValueError, AttributeError):
        return None


Probe = Callable[[Ctx], Awaitable[None]]
PROBES: dict[str, tuple[str, Probe]] = {}


def probe(name: str, what: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        PROBES[name] = (what, fn)
        return fn

    return register


# --- 1. password guesses at once ------------------------------------------------------------


@probe("1-lockout-burst", "30 wrong passwords at once lock the account; the right one is refused")
async def lockout_burst(c: Ctx) -> None:
    who = c.demo(3)
    n = 30 * c.scale
    answers = await asyncio.gather(
        *(
            c.client.post(
                "/api/v1/auth/password",
                json={"phone": who["phone"], "password": f"wrong-{i}"},
                headers=c.ip(),
            )
            for i in range(n)
        )
    )
    no_5xx(answers)
    assert set(statuses(answers)) <= {401, 423, 429}, statuses(answers)
    r = await c.client.post(
        "/api/v1/auth/password",
        json={"phone": who["phone"], "password": who["password"]},
        headers=c.ip(),
    )
    assert r.status_code == 423 and code(r) == "auth.locked", f"{r.status_code} {r.text}"


# --- 3. caps under a burst ------------------------------------------------------------------


@probe("3-invitation-cap", "40 invitations asked for at once leave exactly 20 open")
async def invitation_cap(c: Ctx) -> None:
    owner = await c.sign_up()
    r = await c.client.post("/api/v1/families", json={"name": "Probe"}, headers=auth(owner))
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    url = f"/api/v1/families/{fid}/invitations"
    answers = await asyncio.gather(
        *(c.client.post(url, json={}, headers=auth(owner)) for _ in range(40 * c.scale))
    )
    no_5xx(answers)
    assert statuses(answers).count(201) == 20, statuses(answers)
    listed = (await c.client.get(url, headers=auth(owner))).json()
    assert sum(i["status"] == "active" for i in listed) == 20


@probe("3-place-cap", "130 places created at once leave exactly 100")
async def place_cap(c: Ctx) -> None:
    owner = await c.sign_up()
    r = await c.client.post("/api/v1/families", json={"name": "Probe"}, headers=auth(owner))
    fid = r.json()["id"]
    url = f"/api/v1/families/{fid}/places"
    answers = await asyncio.gather(
        *(
            c.client.post(
                url,
                json={"name": f"p{i}", "lat": 31.2 + i / 1000, "lon": 121.4},
                headers=auth(owner),
            )
            for i in range(130)
        )
    )
    no_5xx(answers)
    assert statuses(answers) == [201] * 100 + [409] * 30, statuses(answers)
    assert len((await c.client.get(url, headers=auth(owner))).json()) == 100


@probe("3-preview-guesses", "30 invalid invitation codes at once get exactly 10 lookups")
async def preview_guesses(c: Ctx) -> None:
    guesser = await c.sign_up()
    answers = await asyncio.gather(
        *(
            c.client.post(
                "/api/v1/invitations/preview",
                json={"text": f"2222-{i:04d}"},
                headers=auth(guesser),
            )
            for i in range(30)
        )
    )
    no_5xx(answers)
    codes = sorted(str(code(r)) for r in answers)
    assert codes == ["invitation.invalid"] * 10 + ["invitation.too_many_attempts"] * 20, codes


# --- 4. the last use of an invitation -------------------------------------------------------


@probe("4-last-use-race", "three accounts take the last use at once: one 201, two 410, no 500")
async def last_use_race(c: Ctx) -> None:
    owner = await c.sign_up()
    r = await c.client.post("/api/v1/families", json={"name": "Probe"}, headers=auth(owner))
    fid = r.json()["id"]
    r = await c.client.post(
        f"/api/v1/families/{fid}/invitations", json={"max_uses": 1}, headers=auth(owner)
    )
    assert r.status_code == 201, r.text
    text = r.json()["text"]
    people = [await c.sign_up() for _ in range(3)]
    answers = await asyncio.gather(
        *(
            c.client.post("/api/v1/invitations/accept", json={"text": text}, headers=auth(p))
            for p in people
        )
    )
    assert statuses(answers) == [201, 410, 410], [f"{r.status_code} {r.text}" for r in answers]


# --- 5. deeply nested JSON ------------------------------------------------------------------


def _raw(live: Live, requests: list[bytes], timeout: float = 10) -> list[bytes]:
    """Send each request on ONE connection, reading each answer before the next."""
    out: list[bytes] = []
    with socket.create_connection(("127.0.0.1", live.port), timeout=timeout) as s:
        for req in requests:
            s.sendall(req)
            out.append(_read_response(s))
    return out


def _read_response(s: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return buf
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


@probe("5-nested-json", "[ x 50,000 answers 400 request.bad and the connection lives on")
async def nested_json(c: Ctx) -> None:
    me = c.demo(0)
    tracker = me["tracker"]
    basic_header = (
        "Basic " + base64.b64encode(f"{tracker['username']}:{tracker['secret']}".encode()).decode()
    )
    deep = b"[" * 50_000
    targets = [
        ("/owntracks", {"Authorization": basic_header, "Content-Type": "application/json"}),
        ("/overland", {**auth(me), "Content-Type": "application/json"}),
        ("/api/v1/location/import", {**auth(me), "Content-Type": "application/geo+json"}),
    ]
    for path, headers in targets:
        bad, after = await asyncio.to_thread(
            _raw,
            c.live,
            [_request("POST", path, headers, deep), _request("GET", "/healthz", {})],
        )
        assert _status(bad) == 400 and b"request.bad" in bad, f"{path}: {bad[:300]!r}"
        assert _status(after) == 200, f"{path}: the next request on the connection: {after[:200]!r}"


# --- 6. booleans where numbers are meant ----------------------------------------------------


@probe("6-booleans", "booleans for numbers, a bare number for a time: 422, nothing stored")
async def booleans(c: Ctx) -> None:
    me = c.demo(1)
    before = (await c.client.get("/api/v1/sos", headers=auth(me))).json()
    r = await c.client.post(
        "/api/v1/sos", json={"lat": False, "lon": 0.0, "accuracy_m": True}, headers=auth(me)
    )
    assert r.status_code == 422, f"sos: {r.status_code} {r.text}"
    assert (await c.client.get("/api/v1/sos", headers=auth(me))).json() == before
    fam = (await c.client.get("/api/v1/families", headers=auth(me))).json()
    assert fam, "the demo member is in a family"
    url = f"/api/v1/families/{fam[0]['id']}/places"
    places = (await c.client.get(url, headers=auth(me))).json()
    r = await c.client.post(url, json={"name": "bool", "lat": True, "lon": False}, headers=auth(me))
    assert r.status_code == 422, f"place: {r.status_code} {r.text}"
    assert (await c.client.get(url, headers=auth(me))).json() == places
    r = await c.client.get(
        f"/api/v1/location/{await _me_id(c, me)}/track",
        params={"to": "0.5"},
        headers=auth(me),
    )
    assert r.status_code == 422, f"?to=0.5: {r.status_code} {r.text}"


async def _me_id(c: Ctx, me: dict[str, Any]) -> str:
    return str((await c.client.get("/api/v1/me", headers=auth(me))).json()["id"])


# --- 10. a client that goes away ------------------------------------------------------------


@probe("10-client-disconnect", "a client gone mid-body is one info line in the log, no traceback")
async def client_disconnect(c: Ctx) -> None:
    me = c.demo(2)
    paths = ["/api/v1/location/fixes", "/api/v1/families", "/overland"]

    def go_away(path: str) -> None:
        with socket.create_connection(("127.0.0.1", c.live.port), timeout=5) as s:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {me['token']}\r\nContent-Type: application/json\r\n"
                "Content-Length: 100000\r\n\r\n"
            )
            s.sendall(head.encode() + b'{"fixes": [')
            time.sleep(0.2)  # the route is reading the body when the client leaves

    mark = len(c.live.log())
    for path in paths:
        await asyncio.to_thread(go_away, path)
    for _ in range(100):  # the log is written after the server notices: up to 10 s
        if c.live.log()[mark:].count("went away") >= len(paths):
            break
        await asyncio.sleep(0.1)
    new = c.live.log()[mark:]
    for path in paths:
        lines = [x for x in new.splitlines() if "went away" in x and x.endswith(f" {path}")]
        assert len(lines) == 1 and " INFO " in lines[0], f"{path}: {new[-2000:]}"
    assert "Traceback" not in new and " ERROR " not in new, new[-2000:]
    assert (await c.client.get("/healthz")).status_code == 200


# --- 2. an unknown number looks like a registered one ---------------------------------------


@probe("2-unknown-number", "an unknown number answers like a registered one at every failure count")
async def unknown_number(c: Ctx) -> None:
    registered = c.demo(2)["phone"]
    unknown = c.phone()
    for attempt in range(1, 9):
        hdr = c.ip()
        got = []
        for phone in (registered, unknown):
            r = await c.client.post(
                "/api/v1/auth/password",
                json={"phone": phone, "password": f"not-it-{attempt}"},
                headers=hdr,
            )
            body = r.json()
            got.append(
                (r.status_code, body.get("code"), body.get("detail"), "retry-after" in r.headers)
            )
        assert got[0] == got[1], f"attempt {attempt}: registered {got[0]} unknown {got[1]}"


# --- 7, 8, 9, 17: the watch port --------------------------------------------------------------


async def _household(c: Ctx, wid: str) -> dict[str, Any]:
    """Two guardians, a dependant and the watch ``wid`` paired (as the watch tests
    set it up), with numbers no other probe used."""
    from tests.support.watch import household

    assert c.live.watch_port, "the server listens for watches"
    return await household(c.client, c.sms, wid=wid, phones=(c.phone(), c.phone()))


async def _sos_notes(c: Ctx, who: dict[str, Any]) -> list[dict[str, Any]]:
    """The SOS notices in ``who``'s inbox."""
    notes = (await c.client.get("/api/v1/notifications", headers=auth(who))).json()
    items = notes["items"] if isinstance(notes, dict) else notes
    return [n for n in items if n.get("category") == "sos"]


@probe("7-watch-spoof", "a second connection for a watch's id plants nothing on the family map")
async def watch_spoof(c: Ctx) -> None:
    from tests.support.watch import Conn, frame, from_file, now_s, reply

    wid = "8800000071"
    ctx = await _household(c, wid)
    watch = await Conn.open(c.live.watch_port)
    copy = await Conn.open(c.live.watch_port)
    try:
        await asyncio.gather(watch.sync(wid), copy.sync(wid))
        t = now_s()
        planted = from_file("ud_gps.txt", at=t, wid=wid).replace(b"31.230416", b"39.908722")
        await copy.send(planted)
        await asyncio.gather(watch.sync(wid), copy.sync(wid))
        r = await c.client.get(
            f"/api/v1/families/{ctx['family_id']}/map", headers=auth(ctx["guardians"][0])
        )
        dep = next(m for m in r.json()["members"] if m["account_id"] == ctx["dep"])
        assert dep["position"] is None, f"planted position shown: {dep}"
        # more connections for the same id than allowed are refused
        extra = [await Conn.open(c.live.watch_port) for _ in range(3)]
        answered = 0
        for x in extra:
            try:
                answered += await x.ask(frame("LK", wid)) == reply("LK", wid)
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                pass  # closed by the server: refused
            await x.close()
        assert answered == 0, f"{answered} connections beyond the per-id limit were answered"
    finally:
        await copy.close()
        await watch.close()


@probe("7-one-open-sos", "alarms sent at once by a watch open one SOS and tell each guardian once")
async def one_open_sos(c: Ctx) -> None:
    from tests.support.watch import Conn, from_file, now_s

    wid = "8800000072"
    ctx = await _household(c, wid)
    t = now_s() - timedelta(seconds=30)
    conns = [await Conn.open(c.live.watch_port) for _ in range(2)]
    try:
        await asyncio.gather(
            *(
                x.ask(from_file("al_sos.txt", at=t + timedelta(seconds=k), wid=wid))
                for k, x in enumerate(conns)
            )
        )
        w = conns[0]
        for k in range(3):
            await w.ask(from_file("al_fall.txt", at=t + timedelta(seconds=5 + k), wid=wid))
    finally:
        for x in conns:
            await x.close()
    g = ctx["guardians"][0]
    alerts = (await c.client.get("/api/v1/sos", headers=auth(g))).json()
    mine = [a for a in alerts if a["account_id"] == ctx["dep"]]
    assert len(mine) == 1 and mine[0]["status"] == "open", mine
    assert mine[0]["repeats"] == 4, mine
    for who in ctx["guardians"]:
        assert len(await _sos_notes(c, who)) == 1


@probe("17-old-alarm", "a watch alarm from 2017 is recorded with its date and raises no live SOS")
async def old_alarm(c: Ctx) -> None:
    from tests.support.watch import Conn, from_file

    wid = "8800000073"
    ctx = await _household(c, wid)
    w = await Conn.open(c.live.watch_port)
    try:
        at = datetime(2017, 3, 2, 10, 15, tzinfo=UTC)
        await w.ask(from_file("al_sos.txt", at=at, wid=wid))
    finally:
        await w.close()
    g = ctx["guardians"][0]
    alerts = [
        a
        for a in (await c.client.get("/api/v1/sos", headers=auth(g))).json()
        if a["account_id"] == ctx["dep"]
    ]
    assert [(a["status"], a["alarm_at"]) for a in alerts] == [("late", "2017-03-02T10:15:00Z")]
    assert await _sos_notes(c, g) == []


@probe("8-hello-burst", "30 watch introductions at once from one address: 20 answered, 10 refused")
async def hello_burst(c: Ctx) -> None:
    hdr = c.ip()
    answers = await asyncio.gather(
        *(
            c.client.post(
                "/api/v1/watches/hello", json={"imei": f"86{i:013d}", "model": "probe"}, headers=hdr
            )
            for i in range(30)
        )
    )
    no_5xx(answers)
    assert statuses(answers) == [200] * 20 + [429] * 10, statuses(answers)
    assert {code(r) for r in answers if r.status_code == 429} == {"watch.hello_limit"}


@probe("9-imei-at-rest", "after a watch's SOS no IMEI or SOS coordinate is in the database files")
async def imei_at_rest(c: Ctx) -> None:
    from tests.support.watch import Conn, from_file, now_s

    assert c.live.watch_port
    db_file = Path(c.live.env.get("KARES_VAR_DIR", "")) / "kares.db"
    if "KARES_DATABASE_URL" in c.live.env or not db_file.exists():
        return  # PostgreSQL: tests/test_watch_at_rest.py reads every stored value there
    wid = "8800000077"
    await _household(c, wid)
    w = await Conn.open(c.live.watch_port)
    try:
        sos = from_file("al_sos.txt", at=now_s() - timedelta(seconds=10), wid=wid)
        await w.ask(sos)
        await w.send(from_file("ud_gps.txt", at=now_s(), wid=wid))
        await w.sync(wid)  # positions get no reply; a keep-alive's comes after it is stored
    finally:
        await w.close()
    raw = b"".join(
        p.read_bytes() for p in (db_file, db_file.with_name("kares.db-wal")) if p.exists()
    )
    for needle in (wid.encode(), b"31.230416", b"121.4737"):
        assert needle not in raw, f"{needle!r} is in the database files"


# --- 13-18: what real clients send ------------------------------------------------------------


def _basic(tracker: dict[str, Any]) -> dict[str, str]:
    token = base64.b64encode(f"{tracker['username']}:{tracker['secret']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _tracker(c: Ctx, who: dict[str, Any], kind: str) -> dict[str, Any]:
    r = await c.client.post(
        "/api/v1/location/trackers", json={"name": f"probe {kind}", "kind": kind}, headers=auth(who)
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _precise(c: Ctx) -> dict[str, Any]:
    who = await c.sign_up()
    policy = (await c.client.get("/api/v1/privacy/policy")).json()["version"]
    r = await c.client.post(
        "/api/v1/me/consents",
        json={"subject": "category:location.precise", "action": "grant", "policy_version": policy},
        headers=auth(who),
    )
    assert r.status_code == 201, r.text
    return who


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@probe("13-overland-action", "an Overland batch with action, visit and trip entries is taken: ok")
async def overland_action(c: Ctx) -> None:
    who = await _precise(c)
    tr = await _tracker(c, who, "overland")
    now = time.time() - 60
    point = {"type": "Point", "coordinates": [121.4737, 31.2304]}
    batch = {
        "locations": [
            {
                "type": "Feature",
                "geometry": point,
                "properties": {"timestamp": _iso(now), "horizontal_accuracy": 10},
            },
            {"type": "Feature", "properties": {"action": "will_terminate"}},
            {
                "type": "Feature",
                "geometry": point,
                "properties": {
                    "action": "visit",
                    "timestamp": _iso(now + 1),
                    "arrival_date": _iso(now - 600),
                },
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [0.0, 0.0]},
                "properties": {"type": "trip", "timestamp": _iso(now + 2), "mode": "car"},
            },
        ]
    }
    r = await c.client.post(
        "/overland", json=batch, headers={"Authorization": f"Bearer {tr['secret']}"}
    )
    assert r.status_code == 200 and r.json()["result"] == "ok", f"{r.status_code} {r.text}"
    codes = {x["code"] for x in r.json().get("refused", [])}
    assert codes == {"overland.action", "overland.visit", "overland.trip"}, r.text
    me = await _me_id(c, who)
    track = (await c.client.get(f"/api/v1/location/{me}/track", headers=auth(who))).json()
    pts = track.get("points", track.get("fixes", []))
    assert len(pts) == 1, track


@probe(
    "15-late-teleports", "fixes in Sydney, London, Shanghai 2 s apart, arriving late, are flagged"
)
async def late_teleports(c: Ctx) -> None:
    who = await _precise(c)
    now = time.time()
    track = [
        {
            "t": _iso(now - 600 + 60 * k),
            "lat": 31.2304 + k * 1e-4,
            "lon": 121.4737,
            "accuracy_m": 10,
        }
        for k in range(6)
    ]
    r = await c.client.post("/api/v1/location/fixes", json={"fixes": track}, headers=auth(who))
    assert r.status_code == 200, r.text
    late = [
        {"t": _iso(now - 400), "lat": -33.8688, "lon": 151.2093, "accuracy_m": 10},
        {"t": _iso(now - 398), "lat": 51.5074, "lon": -0.1278, "accuracy_m": 10},
        {"t": _iso(now - 396), "lat": 31.2304, "lon": 121.4737, "accuracy_m": 10},
    ]
    r = await c.client.post("/api/v1/location/fixes", json={"fixes": late}, headers=auth(who))
    assert r.status_code == 200, r.text
    flagged = {f["index"] for f in r.json()["flagged"]}
    assert flagged == {0, 1}, r.text
    me = await _me_id(c, who)
    tl = (await c.client.get(f"/api/v1/location/{me}/timeline", headers=auth(who))).json()
    assert "26" not in json.dumps([x for x in tl.get("items", []) if x.get("kind") == "trip"]), tl
    for item in tl.get("items", []):
        assert (item.get("distance_m") or 0) < 50_000, item


@probe("16-stale-first-fix", "a stale fix in Beijing does not veto the true fixes in Shanghai")
async def stale_first_fix(c: Ctx) -> None:
    who = await _precise(c)
    now = time.time()
    hdr = auth(who)
    stale = {"t": _iso(now - 300), "lat": 39.9042, "lon": 116.4074, "accuracy_m": 20}
    r = await c.client.post("/api/v1/location/fixes", json={"fixes": [stale]}, headers=hdr)
    assert r.status_code == 200, r.text
    for k in range(3):
        fix = {"t": _iso(now - 240 + 60 * k), "lat": 31.2304, "lon": 121.4737, "accuracy_m": 10}
        r = await c.client.post("/api/v1/location/fixes", json={"fixes": [fix]}, headers=hdr)
        assert r.status_code == 200, r.text
    me = await _me_id(c, who)
    r = await c.client.get(f"/api/v1/location/{me}/track", headers=hdr)
    assert r.status_code == 200, r.text
    track = r.json()
    assert track["total_points"] == 3, f"the track keeps the three Shanghai fixes: {track}"
    assert all(abs(p["lat"] - 31.2304) < 0.01 for p in track["points"]), track


@probe("18-owntracks-encrypted", "an encrypted OwnTracks message is answered 200 with why")
async def owntracks_encrypted(c: Ctx) -> None:
    who = await _precise(c)
    tr = await _tracker(c, who, "owntracks")
    basic = _basic({"username": tr["username"], "secret": tr["secret"]})
    r = await c.client.post(
        "/owntracks", json={"_type": "encrypted", "data": "c2VjcmV0"}, headers=basic
    )
    assert r.status_code == 200, r.text
    assert r.headers.get("x-kares-refused") == "owntracks.encrypted", dict(r.headers)
    r = await c.client.post("/owntracks", json={"hello": "world"}, headers=basic)
    assert r.status_code == 200 and r.headers.get("x-kares-refused") == "owntracks.unknown_type"


# --- the runner -----------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    what: str
    ok: bool
    seconds: float
    detail: str = ""


async def run(ctx: Ctx, names: list[str] | None = None, budget_s: float = 120) -> list[Outcome]:
    """Run the probes (all, or those named) one after another; each is bounded by the
    time left of ``budget_s``."""
    out: list[Outcome] = []
    end = time.monotonic() + budget_s
    for name, (what, fn) in PROBES.items():
        if names and name not in names:
            continue
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(fn(ctx), timeout=max(1.0, end - t0))
            out.append(Outcome(name, what, True, time.monotonic() - t0))
        except (AssertionError, TimeoutError, httpx.HTTPError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            out.append(Outcome(name, what, False, time.monotonic() - t0, detail[:1500]))
    return out


def table(outcomes: list[Outcome]) -> str:
    rows = [f"{'probe':24} {'result':6} {'s':>5}  what"]
    for o in outcomes:
        rows.append(f"{o.name:24} {'ok' if o.ok else 'FAIL':6} {o.seconds:5.1f}  {o.what}")
        if o.detail:
            rows.append("    " + o.detail.replace("\n", "\n    "))
    return "\n".join(rows)


def dumps(outcomes: list[Outcome]) -> str:
    return json.dumps([o.__dict__ for o in outcomes], indent=2)
