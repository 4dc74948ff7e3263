"""Apple Health exports into the health domain (kares.protocols.applehealth_import):
``kares health import FILE --phone P`` and the API import (upload, background
job, progress, outcome), on the real-format sample under tests/data/applehealth/."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from kares import jobs
from kares.protocols import applehealth_import
from kares.protocols.applehealth import ExportError, Progress, read_export
from tests.conftest import TEST_DATA_KEYS, TEST_INDEX_KEY, bearer, count_rows, query, sign_up
from tests.support import cli
from tests.test_applehealth import EXPORT, LAUGHS, health_zip
from tests.test_health import grant, person

ME = "+8613700016001"
OTHER = "+8613700016002"
IMPORTS = "/api/v1/health/imports"
CAP = 300_000


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"health_import_max_bytes": CAP}


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "KARES_VAR_DIR": str(tmp_path / "cli-var"),
        "KARES_DATABASE_URL": db_url,
        "KARES_DATA_KEYS": TEST_DATA_KEYS,
        "KARES_INDEX_KEY": TEST_INDEX_KEY,
    }


def parsed() -> Progress:
    """What the parser itself reads from the sample."""
    prog = Progress()
    for _ in read_export(EXPORT, progress=prog):
        pass
    return prog


def counts(stdout: str) -> dict[str, int]:
    m = re.search(
        r"([\d,]+) records, ([\d,]+) samples: ([\d,]+) stored, ([\d,]+) already stored, "
        r"([\d,]+) refused",
        stdout,
    )
    assert m, stdout
    n = [int(x.replace(",", "")) for x in m.groups()]
    return dict(zip(("records", "samples", "stored", "duplicates", "refused"), n, strict=True))


async def day_rows(db: Any) -> int:
    return await count_rows(db, "health_vitals_days") + await count_rows(db, "health_activity_days")


async def test_the_cli_imports_the_sample_and_again_stores_nothing_new(
    client: httpx.AsyncClient, sms: Any, db: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    me = await person(client, sms, ME)
    export = health_zip(tmp_path / "export.zip")
    r = await cli.arun("health", "import", str(export), "--phone", ME, env=cli_env)
    assert r.returncode == 0, r.stderr
    first = counts(r.stdout)
    want = parsed()
    assert first["records"] == want.records and first["samples"] == want.samples > 10
    assert first["stored"] + first["refused"] == first["samples"]
    assert first["stored"] > 10 and first["duplicates"] == 0
    assert "skipped HKWorkoutTypeIdentifier" in r.stdout or "skipped Workout" in r.stdout
    assert "100.0%" in r.stderr and "stored" in r.stderr  # the progress line
    assert await day_rows(db) > 0
    latest = await client.get("/api/v1/health/latest", headers=bearer(me["token"]))
    assert latest.status_code == 200, latest.text
    metrics = {x["metric"] for x in latest.json()["latest"]}
    assert {"heart_rate", "steps", "blood_pressure", "sleep"} <= metrics

    # the bare export.xml, the same records: nothing new
    again = await cli.arun("health", "import", str(EXPORT), "--phone", ME, env=cli_env)
    assert again.returncode == 0, again.stderr
    second = counts(again.stdout)
    assert second["stored"] == 0
    assert second["duplicates"] == first["stored"]
    assert second["refused"] == first["refused"]


async def test_the_cli_refuses_without_consent_and_says_why(
    client: httpx.AsyncClient, sms: Any, db: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    me = await sign_up(client, sms, ME)  # the policy accepted, no health consent
    export = health_zip(tmp_path / "export.zip")
    r = await cli.arun("health", "import", str(export), "--phone", ME, env=cli_env)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "not imported" in r.stderr and "consent" in r.stderr
    assert await day_rows(db) == 0

    # steps only: the readings are refused with the guard's code, the steps stored
    await grant(client, me, "health.activity")
    r = await cli.arun("health", "import", str(export), "--phone", ME, env=cli_env)
    assert r.returncode == 0, r.stderr
    assert "no consent for health readings" in r.stderr
    assert "refused consent.required" in r.stdout
    assert await count_rows(db, "health_activity_days") > 0
    assert await count_rows(db, "health_vitals_days") == 0


async def test_the_cli_fails_clearly_on_a_bad_file_or_number(
    client: httpx.AsyncClient, sms: Any, db: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await person(client, sms, ME)
    bad = tmp_path / "export.xml"
    bad.write_bytes(b"date,steps\n2025-03-01,862\n")
    r = await cli.arun("health", "import", str(bad), "--phone", ME, env=cli_env)
    assert r.returncode == 2 and "applehealth.malformed" in r.stderr
    r = await cli.arun(
        "health", "import", str(tmp_path / "nothing.zip"), "--phone", ME, env=cli_env
    )
    assert r.returncode == 2 and "no such file" in r.stderr
    export = health_zip(tmp_path / "export.zip")
    r = await cli.arun("health", "import", str(export), "--phone", OTHER, env=cli_env)
    assert r.returncode == 1 and "no account" in r.stderr
    assert await day_rows(db) == 0


def uploads(settings: Any) -> list[Path]:
    d = Path(settings.var_dir) / "health-imports"
    return sorted(d.iterdir()) if d.exists() else []


async def test_an_upload_is_imported_in_the_background_and_only_its_owner_sees_it(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, settings: Any, tmp_path: Path
) -> None:
    me = await person(client, sms, ME)
    other = await person(client, sms, OTHER)
    body = health_zip(tmp_path / "export.zip").read_bytes()
    r = await client.post(
        IMPORTS,
        content=body,
        headers={**bearer(me["token"]), "Content-Type": "application/zip"},
    )
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["state"] == "queued" and started["size"] == len(body)
    assert len(uploads(settings)) == 1  # kept only until the import ends
    url = f"{IMPORTS}/{started['id']}"
    r = await client.get(url, headers=bearer(me["token"]))
    assert r.status_code == 200 and r.json()["state"] == "queued"
    assert r.json()["finished_at"] is None
    r = await client.get(url, headers=bearer(other["token"]))
    assert r.status_code == 404, r.text

    await jobs.run_due(app.state.runtime)
    r = await client.get(url, headers=bearer(me["token"]))
    done = r.json()
    assert done["state"] == "done", done
    want = parsed()
    assert done["progress"]["fraction"] == 1.0 and done["progress"]["records"] == want.records
    assert done["progress"]["skipped"] == dict(want.skipped)
    assert done["stored"] > 10 and done["duplicates"] == 0
    assert done["stored"] + done["refused"] == done["progress"]["samples"]
    assert done["progress"]["skipped"] and done["finished_at"] is not None
    assert uploads(settings) == []
    assert await day_rows(db) > 0
    latest = await client.get("/api/v1/health/latest", headers=bearer(me["token"]))
    assert "heart_rate" in {x["metric"] for x in latest.json()["latest"]}
    # nothing reached the other person
    latest = await client.get("/api/v1/health/latest", headers=bearer(other["token"]))
    assert latest.json()["latest"] == []

    # the same export again: nothing new stored
    r = await client.post(IMPORTS, content=EXPORT.read_bytes(), headers=bearer(me["token"]))
    assert r.status_code == 202, r.text
    await jobs.run_due(app.state.runtime)
    again = (await client.get(f"{IMPORTS}/{r.json()['id']}", headers=bearer(me["token"]))).json()
    assert again["state"] == "done"
    assert again["stored"] == 0 and again["duplicates"] == done["stored"]
    assert uploads(settings) == []


async def test_a_hostile_or_unreadable_file_fails_clearly_and_is_removed(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, settings: Any, tmp_path: Path
) -> None:
    me = await person(client, sms, ME)
    bomb = (
        EXPORT.read_bytes()
        .replace(
            b"<!ELEMENT ExportDate EMPTY>",
            b'<!ENTITY lol0 "lol">\n' + LAUGHS.encode() + b"<!ELEMENT ExportDate EMPTY>",
        )
        .replace(b'sourceName="Kinsa"', b'sourceName="&lol9;"')
    )
    ids = []
    for data in (health_zip(tmp_path / "bomb.zip", bomb).read_bytes(), b"PK\x03\x04broken"):
        r = await client.post(IMPORTS, content=data, headers=bearer(me["token"]))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    await jobs.run_due(app.state.runtime)
    got = [(await client.get(f"{IMPORTS}/{i}", headers=bearer(me["token"]))).json() for i in ids]
    assert [(g["state"], g["error_code"]) for g in got] == [
        ("failed", "applehealth.unsafe_xml"),
        ("failed", "applehealth.bad_zip"),
    ]
    assert all(g["error_detail"] and g["stored"] == 0 for g in got)
    assert uploads(settings) == []
    assert await day_rows(db) == 0

    # not an export at all, or too large: refused at once, nothing kept
    r = await client.post(IMPORTS, content=b"date,steps\n", headers=bearer(me["token"]))
    assert r.status_code == 415 and r.json()["code"] == "health.import_unsupported"
    r = await client.post(IMPORTS, content=b"<" + b"x" * CAP, headers=bearer(me["token"]))
    assert r.status_code == 413, r.text

    async def chunks() -> Any:
        for _ in range(CAP // 10_000 + 1):
            yield b"<" + b"x" * 9_999

    r = await client.post(IMPORTS, content=chunks(), headers=bearer(me["token"]))
    assert r.status_code == 413, r.text
    assert uploads(settings) == []
    rows = await query(db, "SELECT state FROM health_imports ORDER BY created_at")
    assert [x["state"] for x in rows] == ["failed", "failed"]


async def test_an_import_without_consent_fails_with_the_guards_code(
    client: httpx.AsyncClient, sms: Any, app: Any, settings: Any, tmp_path: Path
) -> None:
    me = await person(client, sms, ME)
    r = await client.post(IMPORTS, content=EXPORT.read_bytes(), headers=bearer(me["token"]))
    assert r.status_code == 202, r.text
    for cat in ("health.vitals", "health.activity"):  # withdrawn before the job runs
        w = await client.post(
            "/api/v1/me/consents",
            json={"subject": f"category:{cat}", "action": "withdraw"},
            headers=bearer(me["token"]),
        )
        assert w.status_code in (200, 201), w.text
    await jobs.run_due(app.state.runtime)
    rows = await query(app.state.runtime.db, "SELECT state, error_code, stored FROM health_imports")
    assert rows == [{"state": "failed", "error_code": "consent.required", "stored": 0}]
    assert uploads(settings) == []


async def test_deleting_the_readings_takes_a_queued_upload_with_them(
    client: httpx.AsyncClient, sms: Any, db: Any, app: Any, settings: Any
) -> None:
    me = await person(client, sms, ME)
    r = await client.post(IMPORTS, content=EXPORT.read_bytes(), headers=bearer(me["token"]))
    assert r.status_code == 202, r.text
    assert len(uploads(settings)) == 1
    r = await client.post(
        "/api/v1/me/data/deletion",
        json={"category": "health.vitals"},
        headers=bearer(me["token"]),
    )
    assert r.status_code == 200, r.text
    assert uploads(settings) == []
    assert await count_rows(db, "health_imports") == 0
    await jobs.run_due(app.state.runtime)  # the job finds nothing left to read
    assert await day_rows(db) == 0


async def test_progress_is_readable_while_the_import_runs(
    client: httpx.AsyncClient, sms: Any, app: Any, settings: Any, monkeypatch: Any
) -> None:
    # many transactions on a small file, on either database
    monkeypatch.setattr(applehealth_import, "BATCH", 3)
    monkeypatch.setattr(applehealth_import, "BATCH_POSTGRESQL", 3)
    me = await person(client, sms, ME)
    r = await client.post(IMPORTS, content=EXPORT.read_bytes(), headers=bearer(me["token"]))
    url = f"{IMPORTS}/{r.json()['id']}"
    seen: list[tuple[str, int, int]] = []
    task = asyncio.create_task(jobs.run_due(app.state.runtime))
    while not task.done():
        got = (await client.get(url, headers=bearer(me["token"]))).json()
        seen.append((got["state"], got["progress"].get("samples", 0), got["stored"]))
        await asyncio.sleep(0)
    await task
    final = (await client.get(url, headers=bearer(me["token"]))).json()
    assert final["state"] == "done"
    running = [x for x in seen if x[0] == "running"]
    assert any(0 < stored < final["stored"] for _, _, stored in running), seen
    assert [x[2] for x in seen] == sorted(x[2] for x in seen)  # it only ever grows


async def test_an_export_cut_short_keeps_every_sample_before_the_cut(
    client: httpx.AsyncClient, sms: Any, app: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    # small batches, so the fault comes in the middle of one, with the next read ahead
    monkeypatch.setattr(applehealth_import, "BATCH", 4)
    monkeypatch.setattr(applehealth_import, "BATCH_POSTGRESQL", 4)
    me = await person(client, sms, ME)
    whole = EXPORT.read_bytes()
    cut = whole[: int(len(whole) * 0.6)]
    (tmp_path / "cut.xml").write_bytes(cut)
    before_cut = 0
    with pytest.raises(ExportError) as fault:
        for _ in read_export(tmp_path / "cut.xml"):
            before_cut += 1
    assert fault.value.code == "applehealth.malformed" and before_cut % 4 != 0
    r = await client.post(IMPORTS, content=cut, headers=bearer(me["token"]))
    await jobs.run_due(app.state.runtime)
    first = (await client.get(f"{IMPORTS}/{r.json()['id']}", headers=bearer(me["token"]))).json()
    assert first["state"] == "failed" and first["error_code"] == "applehealth.malformed", first
    # every sample the parser gave before the fault was stored (or refused),
    # the last partial batch included
    assert first["stored"] + first["duplicates"] + first["refused"] == before_cut
    assert first["stored"] > 0
    # the whole file later adds the rest, and finds the first part stored
    r = await client.post(IMPORTS, content=whole, headers=bearer(me["token"]))
    await jobs.run_due(app.state.runtime)
    again = (await client.get(f"{IMPORTS}/{r.json()['id']}", headers=bearer(me["token"]))).json()
    assert again["state"] == "done", again
    assert again["duplicates"] == first["stored"] and again["stored"] > 0
