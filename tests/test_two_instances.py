"""Two app instances on one database: what one of them caches never lets a change
made through the other one through.

Instance A and instance B are two ``create_app(settings)`` with their own
lifespans, runtimes and engines on the session's database (the PostgreSQL
server of the test session with ``KARES_TEST_DB=postgresql``, else one SQLite
file), as two ``kares serve`` processes would be. What a process keeps in module
globals (the guard's decisions, the tracker behind a session, the live hub, the
terms of each policy version) is swapped in per instance around each request
(:class:`Process`), so A never sees what B did in memory, only what B stored.

Each case: a request through A that is allowed (so anything cacheable is cached
there, and A's own decision cache is checked to hold it), the change through B,
then the very next request through A is refused with the right code or shows no
position, and stores nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from kares import clock, live
from kares.app import create_app
from kares.config import Settings
from kares.location import trackers
from kares.privacy import service as privacy_service
from tests.conftest import POLICY_VERSION, bearer, sign_up, snapshot
from tests.test_families import join, new_family, problem
from tests.test_location_clients import basic, ot_location
from tests.test_location_ingest import fix, member, stored
from tests.test_minors import approved_pair
from tests.test_owntracks_steady import count_steady

ALICE, BOB = "+8613700007001", "+8613700007002"
PHONE_A = {"model": "Pixel 8", "os": "Android", "id": "OAID-7001"}
PHONE_B = {"model": "iPhone15,2", "os": "iOS", "id": "IDFV-7002"}
FIXES = "/api/v1/location/fixes"


class Process:
    """The module-level state one server process holds of its own. Swapped in
    around every request of its instance, so two instances in one test process
    share nothing in memory that two server processes would not share."""

    STATE: tuple[tuple[Any, str, Callable[[], Any]], ...] = (
        (privacy_service, "_decisions", OrderedDict),
        (privacy_service, "_versions", dict),
        (trackers, "_by_session", dict),
        (live, "hub", live.Hub),
    )

    def __init__(self) -> None:
        self.state = {(m, name): make() for m, name, make in self.STATE}

    @contextmanager
    def active(self) -> Iterator[None]:
        saved = {(m, name): getattr(m, name) for m, name, _ in self.STATE}
        for (m, name), value in self.state.items():
            setattr(m, name, value)
        try:
            yield
        finally:
            for (m, name), value in saved.items():
                setattr(m, name, value)

    def decided_for(self, account_id: str) -> bool:
        """Whether this process holds a cached guard decision about the account."""
        return any(key[0] == account_id for key in self.state[(privacy_service, "_decisions")])


class ProcessTransport(httpx.AsyncBaseTransport):
    """The app in its own process state; httpx's ASGI transport runs each request
    to its end (the response read) inside ``handle_async_request``."""

    def __init__(self, app: Any, process: Process) -> None:
        self.inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        self.process = process

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self.process.active():
            return await self.inner.handle_async_request(request)


class Instance:
    def __init__(self, app: Any, client: httpx.AsyncClient, process: Process) -> None:
        self.app, self.client, self.process = app, client, process


@pytest.fixture
async def b_app(settings: Settings, app: Any) -> AsyncIterator[Any]:
    """Instance B: its own app, lifespan, runtime and engine on the same database
    (the ``app`` fixture, instance A, wipes the database afterwards)."""
    other = create_app(settings, migrate_embedded=False)
    async with other.router.lifespan_context(other):
        assert other.state.runtime is not app.state.runtime
        assert other.state.runtime.db.engine is not app.state.runtime.db.engine
        yield other


@pytest.fixture
async def a(app: Any) -> AsyncIterator[Instance]:
    p = Process()
    async with httpx.AsyncClient(
        transport=ProcessTransport(app, p), base_url="https://testserver"
    ) as c:
        yield Instance(app, c, p)


@pytest.fixture
async def b(b_app: Any) -> AsyncIterator[Instance]:
    p = Process()
    async with httpx.AsyncClient(
        transport=ProcessTransport(b_app, p), base_url="https://testserver"
    ) as c:
        yield Instance(b_app, c, p)


async def refused_and_nothing_stored(
    db: Any, request: Callable[[], Any], status: int, code: str | set[str]
) -> dict[str, Any]:
    before = await snapshot(db)
    r = await request()
    body = problem(r, status, code)
    assert await snapshot(db) == before
    return body


def at(seconds_ago: float, lat: float, **kw: Any) -> dict[str, Any]:
    return fix(int(seconds_ago * 1000), clock.utcnow() - timedelta(seconds=seconds_ago), lat, **kw)


async def upload(inst: Instance, me: dict[str, Any], fixes: list[dict[str, Any]]) -> Any:
    return await inst.client.post(FIXES, json={"fixes": fixes}, headers=bearer(me["token"]))


async def family_of_two(b: Instance, sms: Any) -> dict[str, Any]:
    """Alice owns a family, Bob is in it and shares his location history; both
    agreed to precise location; each signed in on a phone. Made through B."""
    alice = await member(b.client, sms, ALICE, device=PHONE_A)
    bob = await member(b.client, sms, BOB, device=PHONE_B)
    fid = await new_family(b.client, alice, "Lis")
    await join(b.client, alice, fid, bob)
    r = await b.client.put(
        f"/api/v1/families/{fid}/members/me/sharing",
        json={"location": "history"},
        headers=bearer(bob["token"]),
    )
    assert r.status_code == 200, r.text
    r = await upload(b, bob, [at(60, 31.234567)])
    assert r.json()["accepted"] == 1
    return {"alice": alice, "bob": bob, "fid": fid}


def bob_on_the_map(body: dict[str, Any], bob: dict[str, Any]) -> dict[str, Any] | None:
    by = {m["account_id"]: m for m in body["members"]}
    return by.get(bob["account"]["id"])


async def consent(inst: Instance, me: dict[str, Any], subject: str, action: str) -> None:
    r = await inst.client.post(
        "/api/v1/me/consents",
        json={"subject": subject, "action": action, "policy_version": POLICY_VERSION},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text


# --- consents ------------------------------------------------------------------------------


async def test_a_policy_withdrawn_through_b_is_refused_by_a(
    a: Instance, b: Instance, sms: Any, db: Any
) -> None:
    f = await family_of_two(b, sms)
    bob, fid = f["bob"], f["fid"]
    r = await upload(a, bob, [at(30, 31.2301)])
    assert r.status_code == 200 and r.json()["accepted"] == 1
    r = await a.client.get(f"/api/v1/families/{fid}/map", headers=bearer(bob["token"]))
    assert r.status_code == 200
    assert a.process.decided_for(bob["account"]["id"])

    await consent(b, bob, "policy", "withdraw")

    await refused_and_nothing_stored(
        db, lambda: upload(a, bob, [at(20, 31.2302)]), 403, "consent.policy_required"
    )
    await refused_and_nothing_stored(
        db,
        lambda: a.client.get(f"/api/v1/families/{fid}/map", headers=bearer(bob["token"])),
        403,
        "consent.policy_required",
    )
    assert [x["client_id"] for x in await stored(db, bob["account"]["id"])] == ["c60000", "c30000"]


async def test_precise_location_withdrawn_through_b_is_coarse_on_a(
    a: Instance, b: Instance, sms: Any, db: Any
) -> None:
    f = await family_of_two(b, sms)
    alice, bob, fid = f["alice"], f["bob"], f["fid"]
    url = f"/api/v1/families/{fid}/map"
    pos = bob_on_the_map((await a.client.get(url, headers=bearer(alice["token"]))).json(), bob)
    assert pos is not None and pos["position"]["precise"] is True
    assert pos["position"]["lat"] == pytest.approx(31.234567)
    r = await upload(a, bob, [at(30, 31.234567)])
    assert r.json()["precision"] == "precise"

    # the viewer withdraws precise location: A shows her only approximate positions
    await consent(b, alice, "category:location.precise", "withdraw")
    before = await snapshot(db)
    pos = bob_on_the_map((await a.client.get(url, headers=bearer(alice["token"]))).json(), bob)
    assert pos is not None
    assert (pos["position"]["lat"], pos["position"]["precise"]) == (31.23, False)
    assert pos["position"]["speed_mps"] is None
    assert await snapshot(db) == before

    # the uploader withdraws it: A stores his next fix rounded
    await consent(b, bob, "category:location.precise", "withdraw")
    r = await upload(a, bob, [at(10, 31.234567)])
    assert r.status_code == 200 and r.json()["precision"] == "approximate"
    newest = (await stored(db, bob["account"]["id"]))[-1]
    assert (newest["lat"], newest["precise"]) == (31.23, False)


async def test_a_guardian_ending_approval_through_b_stops_the_child_on_a(
    a: Instance, b: Instance, sms: Any, db: Any
) -> None:
    guardian, child = await approved_pair(b.client, sms)
    r = await a.client.get("/api/v1/me", headers=bearer(child["token"]))
    assert r.status_code == 200, r.text
    assert a.process.decided_for(child["account"]["id"])

    r = await b.client.delete(
        f"/api/v1/guardian/wards/{child['account']['id']}", headers=bearer(guardian["token"])
    )
    assert r.status_code == 204, r.text

    await refused_and_nothing_stored(
        db,
        lambda: a.client.get("/api/v1/me", headers=bearer(child["token"])),
        403,
        "guardian.consent_required",
    )


# --- device permissions --------------------------------------------------------------------


async def test_a_permission_closed_through_b_is_refused_by_a(
    a: Instance, b: Instance, sms: Any, db: Any
) -> None:
    f = await family_of_two(b, sms)
    bob = f["bob"]
    r = await upload(a, bob, [at(30, 31.234567)])
    assert r.status_code == 200 and r.json()["precision"] == "precise"
    assert a.process.decided_for(bob["account"]["id"])

    async def report(state: str) -> None:
        r = await b.client.put(
            f"/api/v1/devices/{bob['device_id']}/permissions",
            json={"permissions": {"location": state}},
            headers=bearer(bob["token"]),
        )
        assert r.status_code == 200, r.text

    # reduced to approximate on the phone: A stores only a rounded position
    await report("approximate")
    r = await upload(a, bob, [at(20, 31.234567)])
    assert r.status_code == 200 and r.json()["precision"] == "approximate"
    assert (await stored(db, bob["account"]["id"]))[-1]["lat"] == 31.23

    # closed: A refuses the upload and stores nothing
    await report("denied")
    body = await refused_and_nothing_stored(
        db, lambda: upload(a, bob, [at(10, 31.234567)]), 403, "permission.closed"
    )
    assert body["permissions"] == ["location"]


# --- sessions ------------------------------------------------------------------------------


async def test_a_session_revoked_through_b_is_refused_by_a(
    a: Instance, b: Instance, sms: Any, db: Any
) -> None:
    first = await member(b.client, sms, BOB, device=PHONE_A)
    second = await sign_up(b.client, sms, BOB, device=PHONE_B)
    assert first["session_id"] != second["session_id"]
    for path in ("/api/v1/me", "/api/v1/me/sessions"):
        r = await a.client.get(path, headers=bearer(first["token"]))
        assert r.status_code == 200, r.text
    r = await upload(a, first, [at(30, 31.2)])
    assert r.status_code == 200 and r.json()["accepted"] == 1

    r = await b.client.delete(
        f"/api/v1/me/sessions/{first['session_id']}", headers=bearer(second["token"])
    )
    assert r.status_code == 204, r.text

    for request in (
        lambda: a.client.get("/api/v1/me", headers=bearer(first["token"])),
        lambda: upload(a, first, [at(20, 31.2)]),
    ):
        await refused_and_nothing_stored(db, request, 401, "auth.invalid_token")
    r = await a.client.get("/api/v1/me", headers=bearer(second["token"]))
    assert r.status_code == 200

    # signing out everywhere through B ends the session A just served
    r = await b.client.delete(
        "/api/v1/me/sessions", params={"include_current": "true"}, headers=bearer(second["token"])
    )
    assert r.status_code == 200, r.text
    await refused_and_nothing_stored(
        db,
        lambda: a.client.get("/api/v1/me", headers=bearer(second["token"])),
        401,
        "auth.invalid_token",
    )


async def test_a_tracker_revoked_through_b_is_refused_by_a(
    a: Instance, b: Instance, sms: Any, db: Any
) -> None:
    me = await member(b.client, sms, BOB)
    r = await b.client.post(
        "/api/v1/location/trackers",
        json={"name": "Bob's phone", "kind": "owntracks"},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 201, r.text
    t = r.json()
    auth = basic(t["username"], t["secret"])
    now = int(clock.utcnow().timestamp())
    r = await a.client.post("/owntracks", json=ot_location(now - 30), headers=auth)
    assert r.status_code == 200, r.text
    assert len(await stored(db, me["account"]["id"])) == 1
    # A now remembers which tracker this session is
    assert a.process.state[(trackers, "_by_session")]

    r = await b.client.delete(f"/api/v1/location/trackers/{t['id']}", headers=bearer(me["token"]))
    assert r.status_code == 204

    await refused_and_nothing_stored(
        db,
        lambda: a.client.post("/owntracks", json=ot_location(now - 10), headers=auth),
        401,
        "auth.invalid_token",
    )


async def test_owntracks_steady_posts_on_a_follow_consents_changed_through_b(
    a: Instance, b: Instance, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane's steady path (SQLite) answers from A's memory only while B changed
    nothing: every change bumps the version it reads with the session."""
    me = await member(b.client, sms, BOB)
    r = await b.client.post(
        "/api/v1/location/trackers",
        json={"name": "Bob's phone", "kind": "owntracks"},
        headers=bearer(me["token"]),
    )
    t = r.json()
    auth = basic(t["username"], t["secret"])
    taken = count_steady(monkeypatch)
    sqlite = db.engine.dialect.name == "sqlite"
    now = int(clock.utcnow().timestamp())

    async def post(ago: int) -> httpx.Response:
        return await a.client.post("/owntracks", json=ot_location(now - ago), headers=auth)

    assert (await post(50)).status_code == 200
    assert (await post(40)).status_code == 200
    assert taken == ([False, True] if sqlite else [])

    await consent(b, me, "category:location.precise", "withdraw")
    assert (await post(30)).status_code == 200
    assert (await post(20)).status_code == 200
    assert taken[2:] == ([False, True] if sqlite else [])
    rows = await stored(db, me["account"]["id"])
    assert [(x["lat"], x["precise"]) for x in rows[2:]] == [(31.23, False), (31.23, False)]

    await consent(b, me, "policy", "withdraw")
    await refused_and_nothing_stored(db, lambda: post(10), 403, "consent.policy_required")
    assert len(await stored(db, me["account"]["id"])) == 4


# --- sharing choices -----------------------------------------------------------------------


async def test_sharing_paused_or_off_through_b_hides_the_position_on_a(
    a: Instance, b: Instance, sms: Any, db: Any
) -> None:
    f = await family_of_two(b, sms)
    alice, bob, fid = f["alice"], f["bob"], f["fid"]
    url = f"/api/v1/families/{fid}/map"
    track = f"/api/v1/location/{bob['account']['id']}/track"
    sharing = f"/api/v1/families/{fid}/members/me/sharing"

    async def seen() -> tuple[dict[str, Any] | None, httpx.Response]:
        before = await snapshot(db)
        m = bob_on_the_map((await a.client.get(url, headers=bearer(alice["token"]))).json(), bob)
        t = await a.client.get(track, headers=bearer(alice["token"]))
        assert await snapshot(db) == before
        return m, t

    m, t = await seen()
    assert m is not None and m["sharing"] == "history" and m["position"] is not None
    assert t.status_code == 200 and len(t.json()["points"]) == 1

    until = (clock.utcnow() + timedelta(hours=2)).isoformat()
    r = await b.client.put(sharing, json={"paused_until": until}, headers=bearer(bob["token"]))
    assert r.status_code == 200, r.text
    m, t = await seen()
    assert m is not None and m["sharing"] == "paused"
    assert m["position"] is None and m["battery"] is None
    problem(t, 403, "sharing.off")

    r = await b.client.put(sharing, json={"paused_until": None}, headers=bearer(bob["token"]))
    assert r.status_code == 200, r.text
    m, t = await seen()
    assert m is not None and m["position"] is not None and t.status_code == 200

    r = await b.client.put(sharing, json={"location": "off"}, headers=bearer(bob["token"]))
    assert r.status_code == 200, r.text
    m, t = await seen()
    assert m is not None and m["sharing"] == "off" and m["position"] is None
    problem(t, 403, "sharing.off")

    # live, not history: the map shows him again, his track stays closed
    r = await b.client.put(sharing, json={"location": "live"}, headers=bearer(bob["token"]))
    assert r.status_code == 200, r.text
    m, t = await seen()
    assert m is not None and m["sharing"] == "live" and m["position"] is not None
    problem(t, 403, "sharing.off")


# --- family membership ---------------------------------------------------------------------


async def test_a_member_removed_through_b_loses_access_on_a(
    a: Instance, b: Instance, sms: Any, db: Any
) -> None:
    f = await family_of_two(b, sms)
    alice, bob, fid = f["alice"], f["bob"], f["fid"]
    r = await upload(a, alice, [at(30, 31.25)])
    assert r.json()["accepted"] == 1
    url = f"/api/v1/families/{fid}/map"
    r = await a.client.get(url, headers=bearer(bob["token"]))
    assert r.status_code == 200
    assert {m["account_id"] for m in r.json()["members"]} == {
        alice["account"]["id"],
        bob["account"]["id"],
    }
    r = await a.client.get(url, headers=bearer(alice["token"]))
    assert bob_on_the_map(r.json(), bob) is not None
    track = f"/api/v1/location/{bob['account']['id']}/track"
    assert (await a.client.get(track, headers=bearer(alice["token"]))).status_code == 200
    assert (await a.client.get(f"/api/v1/families/{fid}", headers=bearer(bob["token"]))).is_success

    r = await b.client.delete(
        f"/api/v1/families/{fid}/members/{bob['account']['id']}", headers=bearer(alice["token"])
    )
    assert r.status_code == 204, r.text

    for request in (
        lambda: a.client.get(url, headers=bearer(bob["token"])),
        lambda: a.client.get(f"/api/v1/families/{fid}", headers=bearer(bob["token"])),
        lambda: a.client.get(
            f"/api/v1/location/{alice['account']['id']}/track", headers=bearer(bob["token"])
        ),
    ):
        await refused_and_nothing_stored(db, request, 404, {"family.not_found", "not_found"})
    before = await snapshot(db)
    r = await a.client.get(url, headers=bearer(alice["token"]))
    assert r.status_code == 200 and bob_on_the_map(r.json(), bob) is None
    problem(await a.client.get(track, headers=bearer(alice["token"])), 404, "not_found")
    assert await snapshot(db) == before
