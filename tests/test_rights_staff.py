"""Requests that need a person (policy 5.1, 5.6, 5.8 and 8): made through the API
by the account holder or a guardian, answered by staff from the command line.

Due dates are checked against hand-counted days (the same sources as
tests/test_workdays.py): the service clock is moved to days of 2026 whose
calendar ``chinesecalendar`` knows, and to late December 2026, which it
refuses (the request is still stored, with no due date yet).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kares import clock, jobs
from kares.workdays import local_day
from tests.conftest import (
    TEST_DATA_KEYS,
    TEST_INDEX_KEY,
    bearer,
    count_rows,
    query,
    sign_up,
    snapshot,
)
from tests.support import cli
from tests.test_cli import run_kares

URL = "/api/v1/me/rights/requests"
PHONE_B = "+8613900002222"


def at(moment: str) -> None:
    """Set the service clock to ``moment`` (ISO 8601 with its zone)."""
    target = datetime.fromisoformat(moment)
    clock.advance((target - clock.utcnow()).total_seconds())


def correction(**over: Any) -> dict[str, Any]:
    body = {
        "kind": "correction",
        "about": "account.age",
        "record": "my birth date",
        "wrong": "It says 1990-01-01",
        "should_be": "1985-06-01, as on my ID card",
    }
    body.update(over)
    return body


async def make(
    c: httpx.AsyncClient, token: str, body: dict[str, Any], lang: str | None = None
) -> dict[str, Any]:
    headers = bearer(token) | ({"Accept-Language": lang} if lang else {})
    r = await c.post(URL, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rights_repeat_limit": 2, "rights_repeat_period_days": 30}


# --- due dates -------------------------------------------------------------------------


async def test_a_correction_is_due_15_working_days_later_across_the_spring_festival(
    client: httpx.AsyncClient, sms: Any
) -> None:
    at("2026-02-13T09:00:00+08:00")  # Friday before the 2026 Spring Festival
    me = await sign_up(client, sms)
    r = await make(client, me["token"], correction())
    # day 1 is the make-up Saturday 14 Feb, the holiday runs 15-23 Feb, 28 Feb is a
    # make-up Saturday: Feb 14(1) 24-27(2-5) 28(6) Mar 2-6(7-11) 9-12(12-15)
    assert r["due_on"] == "2026-03-12" and r["due_pending"] is None
    assert r["status"] == "open" and r["kind"] == "correction"
    assert r["response_working_days"] == 15 and r["working_days_left"] == 15
    assert r["overdue"] is False and r["on_behalf"] is False
    assert r["account_id"] == r["filed_by"] == me["account"]["id"]
    assert r["wrong"] == "It says 1990-01-01" and r["about"] == "account.age"

    # 00:30 in Beijing on the 14th (still the 13th in UTC): the receipt day is the 14th
    at("2026-02-13T16:30:00+00:00")
    late = await make(
        client, me["token"], {"kind": "explanation", "text": "Why do you keep my age?"}
    )
    assert late["due_on"] == "2026-03-13"

    # the person sees both, newest first, and each one
    listed = (await client.get(URL, headers=bearer(me["token"]))).json()
    assert [x["id"] for x in listed] == [late["id"], r["id"]]
    one = await client.get(f"{URL}/{r['id']}", headers=bearer(me["token"]))
    assert one.status_code == 200 and one.json() == r | {"working_days_left": 14}

    at("2026-03-13T09:00:00+08:00")  # the day after the first is due
    one = (await client.get(f"{URL}/{r['id']}", headers=bearer(me["token"]))).json()
    assert one["overdue"] is True and one["working_days_left"] == -1


async def test_national_day_holiday_and_the_free_text_at_rest(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    at("2026-09-30T10:00:00+08:00")
    me = await sign_up(client, sms)
    r = await make(
        client, me["token"], {"kind": "complaint", "text": "The map showed me in the wrong city"}
    )
    # Oct 1-7 holiday, Sat 10 Oct a make-up day:
    # Oct 8-9(1-2) 10(3) 12-16(4-8) 19-23(9-13) 26-27(14-15)
    assert r["due_on"] == "2026-10-27"
    (row,) = await query(db, "SELECT text, topic FROM rights_requests")
    assert "wrong city" not in row["text"]  # encrypted at rest


async def test_a_request_the_calendar_cannot_date_yet_is_kept_and_filled_later(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    at("2026-12-07T10:00:00+08:00")  # its 15th working day falls in 2027
    me = await sign_up(client, sms)
    with caplog.at_level(logging.ERROR, logger="kares.rights.staff"):
        r = await make(client, me["token"], {"kind": "feedback", "text": "Please add dark mode"})
    assert r["status"] == "open" and r["due_on"] is None
    assert "2027" in r["due_pending"] and "chinesecalendar" in r["due_pending"]
    assert r["working_days_left"] is None and r["overdue"] is False
    assert any(
        rec.levelno == logging.ERROR and r["id"] in rec.getMessage() for rec in caplog.records
    )
    (job,) = await query(
        db, "SELECT kind, run_at, attempts FROM jobs WHERE kind = 'rights.due_date'"
    )
    assert job["attempts"] == 0

    # a day later the calendar still lacks 2027: the job waits again, no attempt counted
    clock.advance(86400 + 60)
    await jobs.run_due(app.state.runtime)
    (job,) = await query(db, "SELECT status, attempts FROM jobs WHERE kind = 'rights.due_date'")
    assert job == {"status": "queued", "attempts": 0}
    assert (await client.get(f"{URL}/{r['id']}", headers=bearer(me["token"]))).json()[
        "due_on"
    ] is None

    # once the calendar knows every day it needs, the job fills the date and ends
    # (here: the request is moved to a receipt day the pinned calendar covers)
    async with db.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text("UPDATE rights_requests SET created_at = :t"),
            {"t": datetime(2026, 11, 30, 2, 0, tzinfo=UTC)},
        )
    clock.advance(86400 + 60)
    await jobs.run_due(app.state.runtime)
    assert await query(db, "SELECT id FROM jobs WHERE kind = 'rights.due_date'") == []
    one = (await client.get(f"{URL}/{r['id']}", headers=bearer(me["token"]))).json()
    assert one["due_on"] == "2026-12-21" and one["due_pending"] is None


# --- bad input -------------------------------------------------------------------------

# The body's schema states a correction's fields and the text rules, so most
# bad input is request.invalid; what only the service knows has its own code.
BAD: list[tuple[dict[str, Any], int, str]] = [
    ({"kind": "praise", "text": "hi"}, 422, "request.invalid"),
    (correction(should_be=None), 422, "request.invalid"),
    (correction(about=None), 422, "request.invalid"),
    (correction(wrong="   "), 422, "request.invalid"),
    ({"kind": "complaint"}, 422, "request.invalid"),
    ({"kind": "feedback", "text": " \n\t "}, 422, "request.invalid"),
    ({"kind": "explanation", "text": "why?", "wrong": "x"}, 422, "request.invalid"),
    ({"kind": "complaint", "text": "bad\x07thing"}, 422, "request.invalid"),
    ({"kind": "complaint", "text": "bad\x00thing"}, 400, "request.nul_character"),
    ({"kind": "complaint", "text": "x" * 4001}, 422, "request.invalid"),
    (correction(record="r" * 201), 422, "request.invalid"),
    ({"kind": "complaint", "text": "x", "extra": 1}, 422, "request.invalid"),
    ({"kind": "complaint", "text": 5}, 422, "request.invalid"),
    ({"kind": "complaint", "text": "x", "lang": "fr"}, 422, "request.invalid"),
    (correction(about="shoe.size"), 404, "rights.unknown_category"),
    ({"kind": "complaint", "about": "shoe.size", "text": "x"}, 404, "rights.unknown_category"),
    (correction(about="account.profile"), 409, "rights.edit_in_app"),
    (correction(about="privacy.consent"), 409, "rights.edit_in_app"),
]


async def test_bad_requests_are_refused_with_a_code_and_store_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    at("2026-06-01T09:00:00+08:00")
    me = await sign_up(client, sms)
    before = await snapshot(db)
    for body, status, code in BAD:
        r = await client.post(URL, json=body, headers=bearer(me["token"]))
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await client.post(
        URL, json=correction(about="account.profile"), headers=bearer(me["token"])
    )
    assert {"method": "PATCH", "path": "/api/v1/me"} in r.json()["edit_at"]
    r = await client.post(
        URL,
        content=b"{not json",
        headers=bearer(me["token"]) | {"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "request.malformed_json"
    r = await client.post(URL, json=correction())
    assert r.status_code == 401
    for path in (f"{URL}/nope", f"{URL}/{'x' * 300}"):
        r = await client.get(path, headers=bearer(me["token"]))
        assert (r.status_code, r.json()["code"]) == (404, "rights.request_not_found")
        r = await client.post(f"{path}/withdraw", headers=bearer(me["token"]))
        assert r.status_code == 404
    assert await snapshot(db) == before


# --- the same request again (5.8) -------------------------------------------------------


async def test_the_same_request_beyond_the_limit_is_refused_with_the_reason(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    at("2026-05-11T09:00:00+08:00")
    me = await sign_up(client, sms)
    tok = me["token"]
    ask = {"kind": "explanation", "about": "location.precise", "text": "Why so precise?"}
    first = await make(client, tok, ask)
    clock.advance(3600)
    # the same kind and subject, other words: still the same explanation; withdrawn counts
    await make(client, tok, ask | {"text": "Explain precise location, please"})
    r = await client.post(f"{URL}/{first['id']}/withdraw", headers=bearer(tok))
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    before = await snapshot(db)
    r = await client.post(URL, json=ask, headers=bearer(tok))
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["code"] == "rights.request_repeated" and "5.8" in body["detail"]
    assert body["limit"] == 2 and body["period_days"] == 30
    # free again 30 days after the first of the two
    again = datetime.fromisoformat(first["received_at"]) + timedelta(days=30)
    assert datetime.fromisoformat(body["again_after"]) == again
    wait = (again - clock.utcnow()).total_seconds()
    assert wait - 2 <= int(r.headers["retry-after"]) <= wait + 2
    assert await snapshot(db) == before

    # another subject, another kind, another person's wording are other requests
    await make(client, tok, ask | {"about": "location.approximate"})
    await make(client, tok, {"kind": "complaint", "about": "location.precise", "text": "x"})
    # feedback is the same when its words are, whatever the case and spacing
    await make(client, tok, {"kind": "feedback", "text": "Add  dark mode"})
    await make(client, tok, {"kind": "feedback", "text": "add dark\nMODE "})
    r = await client.post(
        URL, json={"kind": "feedback", "text": "ADD DARK MODE"}, headers=bearer(tok)
    )
    assert r.status_code == 429
    await make(client, tok, {"kind": "feedback", "text": "Add a light mode"})

    at((again + timedelta(seconds=1)).isoformat())  # the first one left the 30 days
    await make(client, tok, ask)
    assert await count_rows(db, "rights_requests") == 8


async def test_withdrawing_a_closed_request_is_refused(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    at("2026-05-11T09:00:00+08:00")
    me = await sign_up(client, sms)
    r = await make(client, me["token"], {"kind": "complaint", "text": "Slow map"})
    ok = await client.post(f"{URL}/{r['id']}/withdraw", headers=bearer(me["token"]))
    assert ok.json()["closed_at"] is not None
    before = await snapshot(db)
    again = await client.post(f"{URL}/{r['id']}/withdraw", headers=bearer(me["token"]))
    assert (again.status_code, again.json()["code"]) == (409, "rights.request_closed")
    assert await snapshot(db) == before


# --- guardians ---------------------------------------------------------------------------


async def test_a_guardian_asks_for_a_dependant_and_strangers_see_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    at("2026-06-01T09:00:00+08:00")
    mum = await sign_up(client, sms)
    other = await sign_up(client, sms, PHONE_B)
    fam = await client.post(
        "/api/v1/families", json={"name": "Wangs"}, headers=bearer(mum["token"])
    )
    assert fam.status_code == 201, fam.text
    dep = await client.post(
        f"/api/v1/families/{fam.json()['id']}/dependants",
        json={"name": "Doudou", "age_bracket": "under_14"},
        headers=bearer(mum["token"]),
    )
    assert dep.status_code == 201, dep.text
    kid = dep.json()["member"]["account_id"]
    ward_url = f"/api/v1/guardian/wards/{kid}/rights/requests"

    r = await client.post(
        ward_url, json=correction(record="Doudou's birth date"), headers=bearer(mum["token"])
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["account_id"] == kid and made["filed_by"] == mum["account"]["id"]
    assert made["on_behalf"] is True and made["due_on"] == "2026-06-23"  # Dragon Boat 19 Jun
    listed = await client.get(ward_url, headers=bearer(mum["token"]))
    assert [x["id"] for x in listed.json()] == [made["id"]]
    mine = await client.get(URL, headers=bearer(mum["token"]))
    assert [x["id"] for x in mine.json()] == [made["id"]]
    # a guardian's sharing and consent pages are where those are corrected
    r = await client.post(
        ward_url, json=correction(about="privacy.consent"), headers=bearer(mum["token"])
    )
    assert r.status_code == 409
    assert {"method": "POST", "path": f"/api/v1/guardian/wards/{kid}/consents"} in r.json()[
        "edit_at"
    ]

    before = await snapshot(db)
    for method, path, body in (
        ("POST", ward_url, correction()),
        ("GET", ward_url, None),
        ("POST", f"/api/v1/guardian/wards/{mum['account']['id']}/rights/requests", correction()),
        ("GET", f"/api/v1/guardian/wards/{'k' * 40}/rights/requests", None),
    ):
        r = await client.request(method, path, json=body, headers=bearer(other["token"]))
        assert (r.status_code, r.json()["code"]) == (404, "rights.not_your_ward"), path
    for path in (f"{URL}/{made['id']}", f"{URL}/{made['id']}/withdraw"):
        method = "POST" if path.endswith("withdraw") else "GET"
        r = await client.request(method, path, headers=bearer(other["token"]))
        assert (r.status_code, r.json()["code"]) == (404, "rights.request_not_found")
    assert (await client.get(URL, headers=bearer(other["token"]))).json() == []
    # the guardian's own ward route refuses themselves (their own requests are under /me)
    r = await client.get(
        f"/api/v1/guardian/wards/{mum['account']['id']}/rights/requests",
        headers=bearer(mum["token"]),
    )
    assert r.status_code == 404
    assert await snapshot(db) == before


# --- staff, from the command line -------------------------------------------------------


@pytest.fixture
def staff_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return {
        "KARES_VAR_DIR": str(tmp_path / "var"),
        "KARES_DATABASE_URL": db_url,
        "KARES_DATA_KEYS": TEST_DATA_KEYS,
        "KARES_INDEX_KEY": TEST_INDEX_KEY,
        "KARES_LOG_LEVEL": "WARNING",
    }


def staff(*args: str, env: dict[str, str]) -> Any:
    return cli.run("staff", *args, env=env)


async def test_staff_list_answer_and_reject_and_the_person_is_told_in_their_language(
    client: httpx.AsyncClient, sms: Any, db: Any, staff_env: dict[str, str]
) -> None:
    at("2026-02-13T09:00:00+08:00")
    me = await sign_up(client, sms)
    tok = me["token"]
    a = await make(client, tok, correction())  # due 2026-03-12
    at("2026-09-30T10:00:00+08:00")
    tok = (await sign_up(client, sms))["token"]  # months later: sign in again
    b = await make(
        client,
        tok,
        {"kind": "explanation", "about": "location.precise", "text": "为什么需要精确位置?"},
        lang="zh-CN,zh;q=0.9",
    )  # due 2026-10-27, in Chinese
    assert b["lang"] == "zh"
    at("2026-12-01T10:00:00+08:00")
    tok = (await sign_up(client, sms))["token"]
    c = await make(client, tok, {"kind": "complaint", "text": "The app is slow"})
    assert c["due_on"] == "2026-12-22"  # Dec 2-4(1-3) 7-11(4-8) 14-18(9-13) 21-22(14-15)
    at("2026-12-07T10:00:00+08:00")
    d = await make(client, tok, {"kind": "feedback", "text": "Thanks"})  # no due date yet

    # The command runs on the real clock (6 December 2026 or later): A and B are
    # overdue, C only once 22 December has passed, D waits for 2027's calendar.
    # Overdue first, the most overdue first; then the undated; then by due date.
    c_overdue = local_day(datetime.now(UTC)) > date(2026, 12, 22)
    overdue = [a["id"], b["id"], *([c["id"]] if c_overdue else [])]
    r = staff("list", env=staff_env)
    assert r.returncode == 0, r.stderr
    ids = [line.split()[0] for line in r.stdout.splitlines()]
    assert ids == ([*overdue, d["id"]] if c_overdue else [*overdue, d["id"], c["id"]])
    lines = dict(zip(ids, r.stdout.splitlines(), strict=True))
    assert "OVERDUE since 2026-03-12" in lines[a["id"]]
    assert "DUE DATE UNKNOWN" in lines[d["id"]]
    assert ("OVERDUE since 2026-12-22" if c_overdue else "due 2026-12-22") in lines[c["id"]]
    assert "no due date yet" in r.stderr and "2027" in r.stderr
    r = staff("list", "--overdue", "--json", env=staff_env)
    assert [x["id"] for x in json.loads(r.stdout)] == overdue
    r = staff("show", b["id"], "--json", env=staff_env)
    shown = json.loads(r.stdout)
    assert shown["text"] == "为什么需要精确位置?" and shown["due_on"] == "2026-10-27"
    assert shown["overdue"] is True and shown["status"] == "open"

    # answering after the due date is allowed; the person is told
    r = staff(
        "answer", a["id"], "--text", "Corrected to 1985-06-01.", "--by", "ops-li", env=staff_env
    )
    assert r.returncode == 0, r.stderr
    r = staff("answer", b["id"], "--reject", "--reason", "已在隐私政策 1.3 中说明。", env=staff_env)
    assert r.returncode == 0, r.stderr
    got = (await client.get(f"{URL}/{a['id']}", headers=bearer(tok))).json()
    assert got["status"] == "answered" and got["answer"] == "Corrected to 1985-06-01."
    assert got["closed_at"] is not None and got["overdue"] is False
    got = (await client.get(f"{URL}/{b['id']}", headers=bearer(tok))).json()
    assert got["status"] == "rejected" and got["answer"] == "已在隐私政策 1.3 中说明。"
    notes = (await client.get("/api/v1/notifications", headers=bearer(tok))).json()
    by_title = {n["title"]: n for n in notes}
    assert set(by_title) == {"Your request has been answered", "您的请求未被受理"}
    # the inbox shows the answer, read from the request; the stored text (what a
    # push carries) never holds it
    assert by_title["Your request has been answered"]["body"] == "Corrected to 1985-06-01."
    stored = await query(db, "SELECT title, body FROM notifications ORDER BY title")
    assert all("1985" not in n["body"] and "1.3" not in n["body"] for n in stored)
    # each answer is a staff action in the log, by the operator who gave it
    logged = await query(db, "SELECT actor, action, detail FROM staff_actions ORDER BY at")
    assert [(x["actor"], x["action"]) for x in logged] == [
        ("ops-li", "staff.answered"),
        (logged[1]["actor"], "staff.rejected"),
    ]
    details = [
        x["detail"] if isinstance(x["detail"], dict) else json.loads(x["detail"]) for x in logged
    ]
    assert [d["request"] for d in details] == [a["id"], b["id"]]

    # the queue lists what is left; closed ones only with --all
    r = staff("list", env=staff_env)
    left = [c["id"], d["id"]] if c_overdue else [d["id"], c["id"]]
    assert [line.split()[0] for line in r.stdout.splitlines()] == left
    r = staff("list", "--all", "--json", env=staff_env)
    assert {x["id"]: x["answered_by"] for x in json.loads(r.stdout)}[a["id"]] == "ops-li"

    # refusals: a closed request, an unknown one, a missing reason or text
    before = await snapshot(db)
    r = staff("answer", a["id"], "--text", "again", env=staff_env)
    assert r.returncode == 1 and "rights.request_closed" in r.stderr
    r = staff("answer", "nope", "--text", "x", env=staff_env)
    assert r.returncode == 1 and "rights.request_not_found" in r.stderr
    r = staff("show", "nope", env=staff_env)
    assert r.returncode == 1 and "rights.request_not_found" in r.stderr
    r = staff("answer", c["id"], "--reject", env=staff_env)
    assert r.returncode == 2
    r = staff("answer", c["id"], env=staff_env)
    assert r.returncode == 2
    r = staff("answer", c["id"], "--text", "   ", env=staff_env)
    assert r.returncode == 1 and "rights.answer_required" in r.stderr
    assert await snapshot(db) == before


@pytest.mark.db_agnostic
def test_staff_help_lists_its_commands() -> None:
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = run_kares("staff", "--help", env={})
    assert r.returncode == 0
    for cmd in ("list", "show", "answer"):
        assert cmd in r.stdout
    r = cli.run("staff", "answer", "--help", env={})
    for opt in ("--text", "--reject", "--reason", "--by"):
        assert opt in r.stdout


@pytest.mark.db_agnostic
def test_due_date_rule_is_the_clock_of_docs_rights() -> None:
    from kares.rights import staff as staff_mod

    assert staff_mod.due_date(datetime(2026, 2, 13, 1, tzinfo=UTC), 15) == (date(2026, 3, 12), None)
    due, why = staff_mod.due_date(datetime(2026, 12, 7, 2, tzinfo=UTC), 15)
    assert due is None and why is not None and "2027" in why


async def test_a_guardian_asks_for_a_child_and_both_are_told_of_the_answer(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    from kares.rights import staff as staff_mod
    from tests.test_minors import approved_pair

    at("2026-03-02T09:00:00+08:00")
    guardian, child = await approved_pair(client, sms)
    kid = child["account"]["id"]
    r = await client.post(
        f"/api/v1/guardian/wards/{kid}/rights/requests",
        json={"kind": "explanation", "about": "minors.guardianship", "text": "Who sees this?"},
        headers=bearer(guardian["token"]),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    # Mar 3-6(1-4) 9-13(5-9) 16-20(10-14) 23(15): no holiday in March 2026
    assert made["due_on"] == "2026-03-23" and made["on_behalf"] is True
    # the child sees the request made about them
    theirs = (await client.get(URL, headers=bearer(child["token"]))).json()
    assert [x["id"] for x in theirs] == [made["id"]]

    rt = app.state.runtime
    async with rt.db.sessions() as s:
        await staff_mod.close(
            s, rt, made["id"], status="answered", text="Only your guardians.", by="ops"
        )
    for who in (guardian, child):
        notes = (await client.get("/api/v1/notifications", headers=bearer(who["token"]))).json()
        told = [n for n in notes if n["data"].get("request_id") == made["id"]]
        assert len(told) == 1 and told[0]["body"] == "Only your guardians."


async def test_requests_at_once_cannot_both_slip_under_the_limit(
    client: httpx.AsyncClient, sms: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from kares.rights import staff

    counted = staff.repeats

    async def slow_count(*a: Any, **kw: Any) -> Any:
        found = await counted(*a, **kw)
        await asyncio.sleep(0.2)  # every request has counted before any has stored
        return found

    monkeypatch.setattr(staff, "repeats", slow_count)
    at("2026-05-11T09:00:00+08:00")
    me = await sign_up(client, sms)
    ask = {"kind": "explanation", "about": "account.profile", "text": "Why my name?"}
    await make(client, me["token"], ask)
    # one more is allowed (limit 2); four at once: exactly one is taken
    rs = await asyncio.gather(
        *(client.post(URL, json=ask, headers=bearer(me["token"])) for _ in range(4))
    )
    assert sorted(r.status_code for r in rs) == [201, 429, 429, 429], [r.text for r in rs]
    rows = await query(db, "SELECT id FROM rights_requests WHERE kind = 'explanation'")
    assert len(rows) == 2
