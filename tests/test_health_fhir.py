"""FHIR R4 over the health domain (kares.protocols.healthfhir): importing the
real-shaped Bundles of tests/data/fhir/ through the native batch's checks and
guard, idempotent re-import, refusals that change nothing, the export of one's
own Observations and its round trip into another account, and the FHIR files
of the rights archive read back with the mapper and the FHIR models."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fhir.resources.R4B.bundle import Bundle

from kares.protocols import fhir, healthfhir
from tests.conftest import bearer, sign_up, snapshot
from tests.test_health import OTHER, base, get, grant, hr, iso, ok, person, problem, steps
from tests.test_rights_export import download, ready, unzip

DATA = Path(__file__).parent / "data" / "fhir"
URL = "/api/v1/health/fhir"
FHIR_JSON = "application/fhir+json"


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


async def post(
    client: httpx.AsyncClient, me: dict[str, Any], body: bytes, ctype: str = FHIR_JSON
) -> httpx.Response:
    return await client.post(
        URL, content=body, headers={**bearer(me["token"]), "content-type": ctype}
    )


async def imported(
    client: httpx.AsyncClient, me: dict[str, Any], body: bytes, ctype: str = FHIR_JSON
) -> dict[str, Any]:
    r = await post(client, me, body, ctype)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def export(client: httpx.AsyncClient, me: dict[str, Any], **params: Any) -> httpx.Response:
    return await client.get(URL, params=params, headers=bearer(me["token"]))


def latest_by_metric(got: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["metric"]: x for x in got["latest"]}


async def test_a_servers_searchset_is_imported_through_the_native_checks(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms)
    out = await imported(client, me, data("bundle-searchset.json"))
    assert out["observations"] == 5
    assert (out["stored"], out["duplicates"], out["refused"]) == (5, 0, 0)
    assert [x["metric"] for x in out["results"]] == [
        "steps",
        "resting_heart_rate",
        "body_temperature",
        "active_energy",
        "sleep",
    ]
    assert [x["record_id"] for x in out["results"]] == ["7001", "7002", "7007", "7009", "7010"]
    assert {(k["entry"], k["reason"]) for k in out["skipped"]} == {
        (2, "status"),
        (3, "value_missing"),
        (4, "time_missing"),
        (5, "bp_incomplete"),
        (7, "status"),
        (10, "unit_not_accepted"),
    }
    assert out["other_resources"] == {"OperationOutcome": 1}
    got = latest_by_metric(await get(client, me, "/api/v1/health/latest"))
    assert got["steps"]["value"] == 1843
    assert got["resting_heart_rate"]["value"] == 58
    # 98.6 °F, passed on as the file wrote it, stored in the canonical unit
    assert got["body_temperature"]["unit"] == "Cel"
    assert abs(got["body_temperature"]["value"] - 37.0) < 1e-9
    assert got["sleep"]["stage"] == "asleep_unspecified"

    # the same file again: every sample a duplicate, nothing stored changed
    before = await snapshot(db)
    again = await imported(client, me, data("bundle-searchset.json"))
    assert (again["stored"], again["duplicates"], again["refused"]) == (0, 5, 0)
    assert await snapshot(db) == before


async def test_a_synthea_transaction_and_a_bare_observation_are_imported(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await person(client, sms)
    out = await imported(client, me, data("bundle-synthea.json"), "application/json")
    assert out["stored"] == 5, out
    assert {x["metric"] for x in out["results"]} == {
        "weight",
        "blood_pressure",
        "heart_rate",
        "body_temperature",
        "spo2",
    }
    assert {k["reason"] for k in out["skipped"]} == {"code_unknown"}
    assert out["other_resources"] == {
        "Patient": 1,
        "Encounter": 1,
        "Condition": 1,
        "Immunization": 1,
    }
    got = latest_by_metric(await get(client, me, "/api/v1/health/latest"))
    assert got["blood_pressure"]["values"] == {"systolic": 131, "diastolic": 84}
    assert got["weight"]["value"] == 86.2

    one = await imported(client, me, data("observation-blood-pressure.json"))
    assert (one["observations"], one["stored"]) == (1, 1)
    # the specification's example (2012) is older: the newest stays the Synthea one (2019)
    got = latest_by_metric(await get(client, me, "/api/v1/health/latest"))
    assert got["blood_pressure"]["values"] == {"systolic": 131, "diastolic": 84}


async def test_what_is_not_a_fhir_bundle_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await person(client, sms)
    before = await snapshot(db)
    patient = json.dumps({"resourceType": "Patient", "id": "p1"}).encode()
    r = problem(await post(client, me, patient), 422, "fhir.not_bundle")
    assert "Patient" in r["detail"]
    problem(await post(client, me, b"{not json"), 400, "fhir.json_invalid")
    bad_type = json.dumps({"resourceType": "Bundle"}).encode()  # type is required
    problem(await post(client, me, bad_type), 422, "fhir.bundle_invalid")
    problem(
        await post(client, me, data("bundle-searchset.json"), "text/plain"),
        415,
        "fhir.unsupported_media_type",
    )
    # two patients in one file: not one person's record
    doc = json.loads(data("bundle-searchset.json"))
    doc["entry"][0]["resource"]["subject"] = {"reference": "Patient/somebody-else"}
    problem(await post(client, me, json.dumps(doc).encode()), 422, "fhir.many_subjects")
    # bounded: a body over the cap is refused before it is read
    big = b" " * (healthfhir.BODY_LIMIT + 1)
    problem(await post(client, me, big), 413, "request.too_large")
    assert await snapshot(db) == before


async def test_the_import_is_guarded_as_the_native_upload(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    me = await sign_up(client, sms)
    before = await snapshot(db)
    # no consent at all: the guard's refusal as it is, nothing stored
    r = problem(await post(client, me, data("bundle-searchset.json")), 403, "consent.required")
    assert "category:health.vitals" in r["missing"] or "category:health.activity" in r["missing"]
    assert await snapshot(db) == before
    # only the activity consent: steps and energy stored, the readings refused one by one
    await grant(client, me, "health.activity")
    out = await imported(client, me, data("bundle-searchset.json"))
    status = {x["metric"]: (x["status"], x["code"]) for x in out["results"]}
    assert status["steps"] == ("stored", None)
    assert status["active_energy"] == ("stored", None)
    for m in ("resting_heart_rate", "body_temperature", "sleep"):
        assert status[m] == ("refused", "consent.required"), status
    assert (out["stored"], out["refused"]) == (2, 3)


async def test_an_export_imported_elsewhere_reads_the_same(
    client: httpx.AsyncClient, sms: Any
) -> None:
    me = await person(client, sms)
    other = await person(client, sms, OTHER)
    t = base()
    native = [hr(i, t + timedelta(minutes=7 * i), 60 + i) for i in range(1, 6)]
    native += [steps(i, t + timedelta(hours=i), 100 * i) for i in range(1, 4)]
    native += [
        {
            "metric": "blood_pressure",
            "start": iso(t + timedelta(hours=9)),
            "values": {"systolic": 121, "diastolic": 79},
            "unit": "mmHg",
            "source": "Cuff",
            "record_id": "bp-1",
        },
        {
            "metric": "sleep",
            "start": iso(t - timedelta(hours=2)),
            "end": iso(t + timedelta(hours=5)),
            "stage": "asleep_core",
            "source": "Watch",
            "record_id": "sl-1",
        },
        {
            "metric": "fall",
            "start": iso(t + timedelta(hours=10)),
            "source": "Watch",
            "record_id": "f",
        },
        {
            "metric": "weight",
            "start": iso(t + timedelta(days=1)),
            "value": 150,
            "unit": "[lb_av]",
            "source": "Scale",
            "record_id": "w-1",
        },
    ]
    assert (await ok(client, me, native))["stored"] == len(native)
    lo, hi = iso(t - timedelta(days=1)), iso(t + timedelta(days=2))
    r = await export(client, me, **{"from": lo, "to": hi})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    b = Bundle.model_validate_json(r.content)
    assert b.type == "collection"
    assert len(b.entry or []) == len(native)
    subjects = {e.resource.subject.reference for e in b.entry or []}
    assert subjects == {f"Patient/{me['account']['id']}"}

    # into another account: the same latest values and daily summaries
    out = await imported(client, other, r.content)
    assert (out["stored"], out["refused"], out["skipped"]) == (len(native), 0, [])
    mine = await get(client, me, "/api/v1/health/latest")
    theirs = await get(client, other, "/api/v1/health/latest")
    assert theirs == mine
    days = {
        "since": (t - timedelta(days=1)).date().isoformat(),
        "until": (t + timedelta(days=1)).date().isoformat(),
    }
    assert await get(client, other, "/api/v1/health/summary/daily", **days) == await get(
        client, me, "/api/v1/health/summary/daily", **days
    )
    # the export of the copy is the same readings again; importing it twice stores nothing
    again = await export(client, other, **{"from": lo, "to": hi})
    assert len(Bundle.model_validate_json(again.content).entry or []) == len(native)
    twice = await imported(client, other, r.content)
    assert (twice["stored"], twice["duplicates"]) == (0, len(native))
    # back into the account it came from (a restore): every reading is already held
    back = await imported(client, me, r.content)
    assert (back["stored"], back["duplicates"], back["refused"]) == (0, len(native), 0)
    assert [x["index"] for x in back["results"]] == list(range(len(native)))
    assert await get(client, me, "/api/v1/health/latest") == mine

    # one metric; only one's own; the range is bounded
    r = await export(client, me, **{"from": lo, "to": hi, "metric": "heart_rate"})
    got = fhir.read(r.content)
    assert sorted(x["value"] for x in got.samples) == [61, 62, 63, 64, 65]
    stranger = await sign_up(client, sms, "+8613700015009")
    problem(await export(client, stranger, **{"from": lo, "to": hi}), 403, "consent.required")
    problem(
        await export(client, me, **{"from": lo, "to": iso(t + timedelta(days=40))}),
        422,
        "health.bad_range",
    )
    problem(
        await export(client, me, **{"from": lo, "to": hi, "metric": "mood"}),
        422,
        "health.unknown_metric",
    )
    # one reading changed in the file is a new reading; the rest still duplicates
    whole = await export(client, me, **{"from": lo, "to": hi})
    doc = json.loads(whole.content)
    first = next(e["resource"] for e in doc["entry"] if "valueQuantity" in e["resource"])
    first["valueQuantity"]["value"] = first["valueQuantity"]["value"] + 1
    first["id"] = "changed-1"
    changed = await imported(client, me, json.dumps(doc).encode())
    assert (changed["stored"], changed["duplicates"]) == (1, len(native) - 1)


async def test_the_rights_archive_carries_fhir_bundles(
    client: httpx.AsyncClient, sms: Any, app: Any
) -> None:
    me = await person(client, sms)
    other = await person(client, sms, OTHER)
    t = base()
    await ok(client, me, [hr(i, t + timedelta(minutes=i), 70 + i) for i in range(3)])
    await ok(client, me, [steps(1, t, 1234)])
    await ok(client, other, [hr(1, t, 99)])
    await imported(client, me, data("bundle-synthea.json"))
    req = await ready(client, app, me)
    files = unzip((await download(client, me, req)).content)
    names = sorted(n for n in files if n.startswith("fhir/"))
    assert names, sorted(files)
    samples = []
    for n in names:
        Bundle.model_validate_json(files[n])  # a valid R4 Bundle, read by the models
        got = fhir.read(files[n])
        assert got.skipped == [], (n, got.skipped)
        assert got.subjects == {f"Patient/{me['account']['id']}"}
        samples += got.samples
    hrs = sorted(x["value"] for x in samples if x["metric"] == "heart_rate")
    assert hrs == [70, 71, 72, 78]  # the Synthea 78 too, and nothing of the other person
    assert [x["value"] for x in samples if x["metric"] == "steps"] == [1234]
    assert {x["metric"] for x in samples} >= {"weight", "blood_pressure", "spo2"}
    # index.html names the folder beside the generic JSON
    assert b"fhir/" in files["index.html"]
    assert any(n.startswith("data/health") for n in files)
