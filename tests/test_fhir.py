"""FHIR R4 Observations in and out (kares.protocols.fhir): the shape of each
metric against the R4 vital-signs profile, the blood-pressure panel, units and
codes, the round trip, real-shaped files (the specification's example
Observations, a Synthea-style transaction Bundle, a FHIR server's searchset)
and inputs that must be refused or skipped without a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kares.protocols import fhir
from kares.protocols.fhir import FhirError, FhirExportError

pytestmark = pytest.mark.db_agnostic

DATA = Path(__file__).parent / "data" / "fhir"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CST = timezone(timedelta(hours=8))
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VS = "http://hl7.org/fhir/StructureDefinition/"


def sample(metric: str, **kw: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "metric": metric,
        "start": T0,
        "end": None,
        "value": None,
        "values": None,
        "unit": None,
        "stage": None,
        "source": "Apple Watch",
        "record_id": f"rec-{metric}",
    }
    s.update(kw)
    return s


ONE_OF_EACH = [
    sample("steps", end=T0 + timedelta(hours=1), value=1843, unit="{steps}"),
    sample("distance", end=T0 + timedelta(minutes=30), value=2512.5, unit="m"),
    sample("active_energy", end=T0 + timedelta(minutes=30), value=123.4, unit="kcal"),
    sample("heart_rate", value=72, unit="/min"),
    sample("resting_heart_rate", value=55, unit="/min"),
    sample("spo2", value=97, unit="%"),
    sample("blood_pressure", values={"systolic": 120, "diastolic": 80}, unit="mm[Hg]"),
    sample("body_temperature", value=36.6, unit="Cel"),
    sample("weight", value=71.25, unit="kg"),
    sample(
        "sleep",
        start=datetime(2026, 11, 30, 23, 10, tzinfo=CST),
        end=datetime(2026, 12, 1, 0, 40, tzinfo=CST),
        stage="asleep_deep",
    ),
    sample("fall", source="Kids Watch K1"),
    sample("wrist_off", end=T0 + timedelta(hours=3), source="Kids Watch K1"),
]


def exported(s: dict[str, Any]) -> dict[str, Any]:
    """The Observation as JSON, re-parsed by the library (it must validate)."""
    text = fhir.observation_json(s, "p-42")
    Observation.model_validate_json(text)
    return json.loads(text)


def codes(cc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in cc["coding"]]


def category(o: dict[str, Any]) -> list[str]:
    return [c["code"] for cat in o.get("category", []) for c in cat["coding"]]


# ---------------------------------------------------------------- export


@pytest.mark.parametrize(
    ("metric", "code", "value", "unit", "profile"),
    [
        ("heart_rate", "8867-4", 72, "/min", "heartrate"),
        ("resting_heart_rate", "40443-4", 55, "/min", None),
        ("body_temperature", "8310-5", 36.6, "Cel", "bodytemp"),
        ("weight", "29463-7", 71.25, "kg", "bodyweight"),
    ],
)
def test_vital_sign_instants(
    metric: str, code: str, value: float, unit: str, profile: str | None
) -> None:
    o = exported(next(s for s in ONE_OF_EACH if s["metric"] == metric))
    assert o["resourceType"] == "Observation"
    assert o["status"] == "final"
    assert category(o) == ["vital-signs"]
    assert o["category"][0]["coding"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/observation-category"
    )
    assert codes(o["code"]) == [(LOINC, code)]
    assert o["code"]["coding"][0]["display"]
    assert o["valueQuantity"] == {"value": value, "unit": unit, "system": UCUM, "code": unit}
    assert o["effectiveDateTime"] == "2026-12-01T08:00:00Z"
    assert "effectivePeriod" not in o
    assert o["subject"] == {"reference": "Patient/p-42"}
    assert o["device"] == {"display": "Apple Watch"}
    assert o["identifier"] == [{"system": fhir.RECORD_ID_SYSTEM, "value": f"rec-{metric}"}]
    assert o.get("meta", {}).get("profile") == ([VS + profile] if profile else None)


def test_spo2_carries_both_codes_the_profile_asks() -> None:
    o = exported(sample("spo2", value=97, unit="%"))
    # the R4 oxygensat profile requires 2708-6; 59408-5 says it was a pulse oximeter
    assert codes(o["code"]) == [(LOINC, "2708-6"), (LOINC, "59408-5")]
    assert o["meta"]["profile"] == [VS + "oxygensat"]
    assert o["valueQuantity"] == {"value": 97, "unit": "%", "system": UCUM, "code": "%"}


def test_blood_pressure_is_one_panel_with_two_components() -> None:
    o = exported(sample("blood_pressure", values={"systolic": 121, "diastolic": 79}, unit="mm[Hg]"))
    assert codes(o["code"]) == [(LOINC, "85354-9")]
    assert o["meta"]["profile"] == [VS + "bp"]
    assert category(o) == ["vital-signs"]
    assert "valueQuantity" not in o
    comps = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in o["component"]}
    assert comps == {
        "8480-6": {"value": 121, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
        "8462-4": {"value": 79, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
    }
    assert len(o["component"]) == 2


@pytest.mark.parametrize(
    ("metric", "code", "unit"),
    [
        ("steps", "55423-8", "{steps}"),
        ("distance", "55430-3", "m"),
        ("active_energy", "41981-2", "kcal"),
    ],
)
def test_activity_intervals_use_a_period(metric: str, code: str, unit: str) -> None:
    s = next(s for s in ONE_OF_EACH if s["metric"] == metric)
    o = exported(s)
    assert category(o) == ["activity"]
    assert codes(o["code"]) == [(LOINC, code)]
    assert "meta" not in o  # no vital-signs profile is claimed
    assert o["effectivePeriod"] == {
        "start": "2026-12-01T08:00:00Z",
        "end": s["end"].isoformat().replace("+00:00", "Z"),
    }
    assert "effectiveDateTime" not in o
    assert o["valueQuantity"]["code"] == unit
    assert o["valueQuantity"]["system"] == UCUM


def test_sleep_stage_is_a_coded_value_over_a_period() -> None:
    s = next(s for s in ONE_OF_EACH if s["metric"] == "sleep")
    o = exported(s)
    assert o["effectivePeriod"] == {
        "start": "2026-11-30T23:10:00+08:00",
        "end": "2026-12-01T00:40:00+08:00",
    }
    assert o["valueCodeableConcept"]["coding"] == [
        {"system": fhir.SLEEP_STAGE_SYSTEM, "code": "asleep_deep", "display": "Asleep, deep sleep"}
    ]
    # the period's length under LOINC's "Sleep duration", for LOINC-only readers
    (dur,) = o["component"]
    assert codes(dur["code"]) == [(LOINC, "93832-4")]
    assert dur["valueQuantity"] == {"value": 90, "unit": "min", "system": UCUM, "code": "min"}


def test_events_have_no_value() -> None:
    fall = exported(next(s for s in ONE_OF_EACH if s["metric"] == "fall"))
    assert codes(fall["code"]) == [(fhir.METRIC_SYSTEM, "fall")]
    assert fall["effectiveDateTime"] == "2026-12-01T08:00:00Z"
    assert not any(k.startswith("value") for k in fall)
    off = exported(next(s for s in ONE_OF_EACH if s["metric"] == "wrist_off"))
    assert off["effectivePeriod"]["end"] == "2026-12-01T11:00:00Z"
    assert not any(k.startswith("value") for k in off)


def test_a_unit_that_is_not_ucum_is_never_written_as_a_ucum_code() -> None:
    o = exported(sample("heart_rate", value=72, unit="bpm"))
    assert o["valueQuantity"] == {"value": 72, "unit": "bpm"}
    o = exported(sample("weight", value=160, unit="[lb_av]"))
    assert o["valueQuantity"]["code"] == "[lb_av]"


def test_nothing_about_the_person_but_the_reference() -> None:
    text = fhir.bundle_json(ONE_OF_EACH, "p-42").decode()
    doc = json.loads(text)
    refs = {e["resource"]["subject"]["reference"] for e in doc["entry"]}
    assert refs == {"Patient/p-42"}
    assert not any(e["resource"]["resourceType"] != "Observation" for e in doc["entry"])


def test_bundle_is_a_validated_collection() -> None:
    raw = fhir.bundle_json(ONE_OF_EACH, "p-42", timestamp=T0)
    b = Bundle.model_validate_json(raw)  # the library re-parses it
    assert b.type == "collection"
    assert len(b.entry) == len(ONE_OF_EACH)
    for e in b.entry:
        assert isinstance(e.resource, Observation)
        assert e.fullUrl == f"urn:uuid:{e.resource.id}"
    doc = json.loads(raw)
    assert doc["timestamp"] == "2026-12-01T08:00:00Z"
    assert len({e["fullUrl"] for e in doc["entry"]}) == len(ONE_OF_EACH)


def test_ids_are_stable_across_exports() -> None:
    a = json.loads(fhir.bundle_json(ONE_OF_EACH, "p-42"))
    b = json.loads(fhir.bundle_json(ONE_OF_EACH, "p-42"))
    other = json.loads(fhir.bundle_json(ONE_OF_EACH, "p-43"))
    ids = [e["resource"]["id"] for e in a["entry"]]
    assert ids == [e["resource"]["id"] for e in b["entry"]]
    assert not set(ids) & {e["resource"]["id"] for e in other["entry"]}


def test_a_long_history_is_split_into_bundles() -> None:
    many = [
        sample(
            "heart_rate",
            value=60 + i % 40,
            unit="/min",
            record_id=f"r{i}",
            start=T0 + timedelta(minutes=i),
        )
        for i in range(25)
    ]
    parts = list(fhir.bundles_json(iter(many), "p-42", per_bundle=10))
    assert [len(json.loads(p)["entry"]) for p in parts] == [10, 10, 5]
    back = [s for p in parts for s in fhir.read(p).samples]
    assert back == many
    assert list(fhir.bundles_json([], "p-42")) == []


def test_an_empty_bundle_is_valid() -> None:
    raw = fhir.bundle_json([], "p-42")
    assert json.loads(raw) == {"resourceType": "Bundle", "type": "collection"}
    assert fhir.read(raw).samples == []


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (sample("heart_rate", value=72, unit="/min", start=datetime(2026, 12, 1, 8)), "aware"),
        (sample("heart_rate", value=None, unit="/min"), "number"),
        (sample("heart_rate", value=True, unit="/min"), "number"),
        (sample("heart_rate", value=float("nan"), unit="/min"), "finite"),
        (sample("blood_pressure", values=None, unit="mm[Hg]"), "systolic"),
        (sample("blood_pressure", values={"systolic": 120}, unit="mm[Hg]"), "diastolic"),
        (sample("sleep", end=T0 + timedelta(hours=1), stage="dreaming"), "stage"),
        (sample("sleep", end=T0 - timedelta(hours=1), stage="awake"), "before"),
        (sample("steps", value=10, unit="{steps}"), "end"),
        (sample("glucose", value=5.4, unit="mmol/L"), "unknown metric"),
        (sample("heart_rate", value=72, unit="/min", record_id=""), "record_id"),
    ],
)
def test_export_refuses_a_sample_it_cannot_write(bad: dict[str, Any], match: str) -> None:
    with pytest.raises(FhirExportError, match=match):
        fhir.observation(bad, "p-42")


@pytest.mark.parametrize("patient", ["", "Patient/1", "a b", "x" * 65, "张三"])
def test_export_wants_an_opaque_patient_id(patient: str) -> None:
    with pytest.raises(FhirExportError, match="patient"):
        fhir.observation(ONE_OF_EACH[3], patient)


# ---------------------------------------------------------------- round trip


def test_round_trip_gives_the_same_samples() -> None:
    raw = fhir.bundle_json(ONE_OF_EACH, "p-42")
    got = fhir.read(raw)
    assert got.skipped == []
    assert got.samples == ONE_OF_EACH
    assert got.subjects == {"Patient/p-42"}
    # the offsets are kept as written, not only the instants
    sleep = next(s for s in got.samples if s["metric"] == "sleep")
    assert sleep["start"].utcoffset() == timedelta(hours=8)
    assert type(next(s for s in got.samples if s["metric"] == "heart_rate")["value"]) is int


# what a device's name or record id holds; other whitespace: test_odd_whitespace
PLAIN = st.characters(
    exclude_categories=("Zs", "Zl", "Zp", "Cs"), exclude_characters="\x0b\x0c\x1c\x1d\x1e\x1f\x85"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    minutes=st.integers(min_value=0, max_value=10_000_000),
    offset=st.integers(min_value=-12 * 60, max_value=14 * 60),
    record_id=st.text(PLAIN, min_size=1, max_size=80),
    source=st.text(PLAIN, min_size=1, max_size=40).filter(str.strip),
    metric=st.sampled_from(["heart_rate", "weight", "distance", "body_temperature"]),
)
def test_round_trip_property(
    value: float, minutes: int, offset: int, record_id: str, source: str, metric: str
) -> None:
    start = datetime(2020, 1, 1, tzinfo=timezone(timedelta(minutes=offset))) + timedelta(
        minutes=minutes, microseconds=minutes % 1000
    )
    unit = fhir.METRICS[metric].ucum
    s = sample(metric, start=start, value=value, unit=unit, record_id=record_id, source=source)
    if metric == "distance":
        s["end"] = start + timedelta(seconds=value % 3600)
    got = fhir.read(fhir.bundle_json([s], "p-1"))
    assert got.skipped == []
    assert got.samples == [s]


def test_odd_whitespace_does_not_stop_an_export() -> None:
    s = sample("heart_rate", value=70, unit="/min", source="Watch\u00a0K1", record_id="a\x0cb")
    o = exported(s)
    assert o["device"]["display"] == "Watch K1"
    assert o["identifier"][0]["value"] == "a b"
    assert "device" not in exported({**s, "source": "  "})


# ---------------------------------------------------------------- import


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_import_spec_heart_rate() -> None:
    got = fhir.read(load("observation-heart-rate.json"))
    assert got.samples == [
        {
            "metric": "heart_rate",
            "start": datetime(1999, 7, 2, 9, 30, tzinfo=timezone(timedelta(hours=-5))),
            "end": None,
            "value": 44,
            "values": None,
            "unit": "/min",  # the UCUM code, not the human "beats/minute"
            "stage": None,
            "source": "FHIR",
            "record_id": "heart-rate",
        }
    ]


def test_import_spec_blood_pressure_panel() -> None:
    (s,) = fhir.read(load("observation-blood-pressure.json"), default_source="Clinic").samples
    assert s["metric"] == "blood_pressure"
    assert s["values"] == {"systolic": 107, "diastolic": 60}
    assert s["value"] is None
    assert s["unit"] == "mm[Hg]"
    assert s["source"] == "Clinic"
    assert s["record_id"] == "blood-pressure"


def test_import_spec_spo2_and_weight_and_temperature() -> None:
    (spo2,) = fhir.read(load("observation-spo2.json")).samples
    assert (spo2["metric"], spo2["value"], spo2["unit"]) == ("spo2", 95, "%")
    assert spo2["start"] == datetime(2014, 12, 5, 8, 30, 10, tzinfo=UTC)
    (w,) = fhir.read(load("observation-body-weight.json")).samples
    # the unit passes through as the source gave it: the domain converts
    assert (w["metric"], w["value"], w["unit"]) == ("weight", 185, "[lb_av]")
    (t,) = fhir.read(load("observation-body-temperature.json")).samples
    assert (t["metric"], t["value"], t["unit"]) == ("body_temperature", 36.5, "Cel")


def test_import_synthea_takes_only_observations() -> None:
    got = fhir.read(load("bundle-synthea.json"))
    assert got.other_resources == {"Patient": 1, "Encounter": 1, "Condition": 1, "Immunization": 1}
    assert sorted(s["metric"] for s in got.samples) == [
        "blood_pressure",
        "body_temperature",
        "heart_rate",
        "spo2",
        "weight",
    ]
    bp = next(s for s in got.samples if s["metric"] == "blood_pressure")
    # Synthea lists the diastolic component first
    assert bp["values"] == {"systolic": 131, "diastolic": 84}
    # height, BMI, respiratory rate, a lab and a survey answer: not health metrics
    assert sorted((k.reason, k.detail.rsplit("|", 1)[-1]) for k in got.skipped) == [
        ("code_unknown", "2339-0"),
        ("code_unknown", "39156-5"),
        ("code_unknown", "72166-2"),
        ("code_unknown", "8302-2"),
        ("code_unknown", "9279-1"),
    ]
    # nothing from the Patient resource reaches a sample
    text = repr(got.samples)
    assert "Example123" not in text and "1961" not in text
    assert got.subjects == {"urn:uuid:b8a3f6c0-5d2e-4f1a-9c7b-2e6d8f0a1b3c"}


def test_import_server_searchset() -> None:
    got = fhir.read(load("bundle-searchset.json"))
    taken = {s["record_id"]: s for s in got.samples}
    assert set(taken) == {"7001", "7002", "7007", "7009", "7010"}
    assert taken["7001"]["metric"] == "steps"
    assert taken["7001"]["source"] == "Mi Band 8"
    assert taken["7001"]["end"] - taken["7001"]["start"] == timedelta(hours=1)
    # 40443-4 beside 8867-4: the more specific resting heart rate; {beats}/min is /min
    assert (taken["7002"]["metric"], taken["7002"]["unit"]) == ("resting_heart_rate", "/min")
    assert (taken["7007"]["value"], taken["7007"]["unit"]) == (98.6, "[degF]")
    assert taken["7009"]["metric"] == "active_energy"
    # LOINC's sleep duration: asleep over the period, stage unknown
    assert (taken["7010"]["metric"], taken["7010"]["stage"]) == ("sleep", "asleep_unspecified")
    assert {k.id: k.reason for k in got.skipped} == {
        "7003": "status",  # entered-in-error
        "7004": "value_missing",  # dataAbsentReason
        "7005": "time_missing",  # a date without a time
        "7006": "bp_incomplete",  # a systolic alone
        "7008": "status",  # cancelled
        "7011": "unit_not_accepted",  # grams
    }
    assert got.other_resources == {"OperationOutcome": 1}


def test_record_id_falls_back_to_identifier_then_a_stable_hash() -> None:
    base = json.loads(load("observation-heart-rate.json"))
    del base["id"]
    base["identifier"] = [{"system": "https://hospital.example/obs", "value": "A-77"}]
    (s,) = fhir.read(base).samples
    assert s["record_id"] == "https://hospital.example/obs|A-77"
    del base["identifier"]
    (a,) = fhir.read(base).samples
    (b,) = fhir.read(json.dumps(base, indent=4)).samples
    assert a["record_id"].startswith("sha256:")
    assert a["record_id"] == b["record_id"]  # the same content, the same id
    base["valueQuantity"]["value"] = 45
    (c,) = fhir.read(base).samples
    assert c["record_id"] != a["record_id"]


def test_subject_filter() -> None:
    got = fhir.read(load("bundle-searchset.json"), subject="Patient/other")
    assert got.samples == []
    assert {k.reason for k in got.skipped} >= {"subject_other"}
    got = fhir.read(load("bundle-searchset.json"), subject="Patient/1092")
    assert len(got.samples) == 5


def _obs(**kw: Any) -> dict[str, Any]:
    o: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "x1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "effectiveDateTime": "2026-12-01T08:00:00+08:00",
        "valueQuantity": {"value": 70, "unit": "/min", "system": UCUM, "code": "/min"},
    }
    o.update(kw)
    return {k: v for k, v in o.items() if v is not None}


@pytest.mark.parametrize(
    ("unit", "code", "expected"),
    [
        ("bpm", None, "bpm"),
        ("count/min", None, "count/min"),
        ("beats/minute", "/min", "/min"),
        ("beats/min", "{beats}/min", "/min"),
        ("bpm", "bpm", "bpm"),
    ],
)
def test_heart_rate_units_pass_through(unit: str, code: str | None, expected: str) -> None:
    q: dict[str, Any] = {"value": 70, "unit": unit}
    if code:
        q |= {"system": UCUM, "code": code}
    (s,) = fhir.read(_obs(valueQuantity=q)).samples
    assert s["unit"] == expected


@pytest.mark.parametrize(
    ("code", "unit", "metric"),
    [
        ("29463-7", "lb", "weight"),
        ("8310-5", "°F", "body_temperature"),
        ("8310-5", "degF", "body_temperature"),
        ("55430-3", "km", "distance"),
        ("41953-1", "mi", "distance"),
        ("41981-2", "kJ", "active_energy"),
        ("41981-2", "Cal", "active_energy"),
        ("55423-8", "count", "steps"),
    ],
)
def test_accepted_units_from_the_sample_table(code: str, unit: str, metric: str) -> None:
    period = {"start": "2026-12-01T08:00:00Z", "end": "2026-12-01T09:00:00Z"}
    interval = fhir.METRICS[metric].kind == "interval"
    o = _obs(
        code={"coding": [{"system": LOINC, "code": code}]},
        valueQuantity={"value": 3, "unit": unit},
        effectiveDateTime=None if interval else "2026-12-01T08:00:00Z",
        effectivePeriod=period if interval else None,
    )
    (s,) = fhir.read(o).samples
    assert (s["metric"], s["unit"], s["value"]) == (metric, unit, 3)


def test_steps_without_a_unit_are_a_count() -> None:
    o = _obs(
        code={"coding": [{"system": LOINC, "code": "55423-8"}]},
        valueQuantity={"value": 500},
        effectiveDateTime=None,
        effectivePeriod={"start": "2026-12-01T08:00:00Z", "end": "2026-12-01T09:00:00Z"},
    )
    assert fhir.read(o).samples[0]["unit"] == "{steps}"


def test_loinc_by_its_oid() -> None:
    o = _obs(code={"coding": [{"system": "urn:oid:2.16.840.1.113883.6.1", "code": "8867-4"}]})
    assert fhir.read(o).samples[0]["metric"] == "heart_rate"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "entered-in-error"}, "status"),
        ({"status": "cancelled"}, "status"),
        ({"status": "registered"}, "status"),
        ({"status": "bogus"}, "status"),
        ({"code": {"text": "Heart rate"}}, "code_unknown"),
        (
            {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "364075005"}]}},
            "code_unknown",
        ),
        (
            {
                "code": {
                    "coding": [
                        {"system": LOINC, "code": "8867-4"},
                        {"system": LOINC, "code": "8310-5"},
                    ]
                }
            },
            "code_ambiguous",
        ),
        ({"valueQuantity": None}, "value_missing"),
        ({"valueQuantity": {"unit": "/min"}}, "value_missing"),
        ({"valueQuantity": None, "valueString": "72"}, "value_invalid"),
        (
            {"valueQuantity": None, "dataAbsentReason": {"coding": [{"code": "asked-declined"}]}},
            "value_missing",
        ),
        ({"valueQuantity": {"value": 70, "unit": "Hz"}}, "unit_not_accepted"),
        ({"valueQuantity": {"value": 70}}, "unit_not_accepted"),
        ({"valueQuantity": {"value": 1e308, "unit": "/min"}}, None),
        ({"effectiveDateTime": None}, "time_missing"),
        ({"effectiveDateTime": "2026-12-01"}, "time_missing"),
        ({"effectiveDateTime": "2026-12"}, "time_missing"),
        ({"effectiveDateTime": "2026-12-01T08:00:00"}, "invalid"),  # no zone: not FHIR
        ({"effectiveDateTime": "yesterday"}, "invalid"),
        ({"valueQuantity": {"value": "seventy"}}, "invalid"),
        ({"unknownElement": 1}, "invalid"),
        ({"status": None}, "invalid"),
        ({"code": None}, "invalid"),
        ({"contained": [{"resourceType": "NoSuchThing"}]}, "invalid"),
    ],
)
def test_observations_not_taken_say_why(changes: dict[str, Any], reason: str | None) -> None:
    o = _obs()
    for k, v in changes.items():
        if v is None:
            o.pop(k, None)
        else:
            o[k] = v
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o}]}
    got = fhir.read(json.dumps(doc))
    if reason is None:
        assert len(got.samples) == 1  # read; the domain judges the bounds
        return
    assert got.samples == []
    (k,) = got.skipped
    assert (k.index, k.id, k.reason) == (0, "x1", reason)
    assert k.detail


def test_interval_metric_needs_a_period() -> None:
    o = _obs(code={"coding": [{"system": LOINC, "code": "55423-8"}]})
    (k,) = fhir.read(o).skipped
    assert k.reason == "time_missing"
    o = _obs(
        code={"coding": [{"system": LOINC, "code": "55423-8"}]},
        effectiveDateTime=None,
        effectivePeriod={"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T08:00:00Z"},
    )
    assert fhir.read(o).skipped[0].reason == "time_missing"


def test_bp_panel_variants() -> None:
    def panel(*comps: tuple[str, Any, str]) -> dict[str, Any]:
        return _obs(
            code={"coding": [{"system": LOINC, "code": "85354-9"}]},
            valueQuantity=None,
            component=[
                {
                    "code": {"coding": [{"system": LOINC, "code": c}]},
                    **({"valueQuantity": {"value": v, "unit": u}} if v is not None else {}),
                }
                for c, v, u in comps
            ],
        )

    (s,) = fhir.read(panel(("8480-6", 130, "mmHg"), ("8462-4", 85, "mmHg"))).samples
    assert (s["values"], s["unit"]) == ({"systolic": 130, "diastolic": 85}, "mmHg")
    assert fhir.read(panel(("8480-6", 130, "mmHg"))).skipped[0].reason == "bp_incomplete"
    got = fhir.read(panel(("8480-6", 130, "mmHg"), ("8462-4", None, "mmHg")))
    assert got.skipped[0].reason == "value_missing"
    got = fhir.read(panel(("8480-6", 130, "mmHg"), ("8462-4", 85, "mm[Hg]")))
    assert got.skipped[0].reason == "unit_not_accepted"
    got = fhir.read(panel(("8480-6", 130, "kPa"), ("8462-4", 85, "kPa")))
    assert got.skipped[0].reason == "unit_not_accepted"
    # the older panel code some systems (and older Synthea) still send
    old = panel(("8480-6", 130, "mm[Hg]"), ("8462-4", 85, "mm[Hg]"))
    old["code"] = {"coding": [{"system": LOINC, "code": "55284-4"}]}
    assert fhir.read(old).samples[0]["metric"] == "blood_pressure"


def test_sleep_stage_needs_our_coding() -> None:
    o = _obs(
        code={"coding": [{"system": fhir.METRIC_SYSTEM, "code": "sleep"}]},
        valueQuantity=None,
        effectiveDateTime=None,
        effectivePeriod={"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z"},
        valueCodeableConcept={"text": "deep"},
    )
    assert fhir.read(o).skipped[0].reason == "stage_unknown"
    del o["valueCodeableConcept"]
    assert fhir.read(o).skipped[0].reason == "value_missing"


def test_one_bad_observation_never_fails_the_rest() -> None:
    good = _obs()
    entries = [
        {"resource": {"resourceType": "Observation", "status": 5}},
        {"resource": "not an object"},
        {"resource": {"resourceType": "Observation"}},
        {"fullUrl": "urn:uuid:7d1f", "response": {"status": "201 Created"}},
        {"resource": good},
    ]
    got = fhir.read({"resourceType": "Bundle", "type": "batch-response", "entry": entries})
    assert [s["record_id"] for s in got.samples] == ["x1"]
    assert [(k.index, k.reason) for k in got.skipped] == [
        (0, "invalid"),
        (1, "invalid"),
        (2, "invalid"),
    ]


# ---------------------------------------------------------------- refused files


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, "fhir.json_invalid"),
        (b"{", 400, "fhir.json_invalid"),
        (b"\xff\xfe{}", 400, "fhir.json_invalid"),
        (b"[1, 2]", 400, "fhir.json_invalid"),
        (b'"Bundle"', 400, "fhir.json_invalid"),
        (b'{"resourceType": "Bundle", "type": "collection", "x": NaN}', 400, "fhir.json_invalid"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "fhir.json_invalid"),
        (b"{}", 422, "fhir.not_bundle"),
        (b'{"resourceType": "Patient", "id": "p"}', 422, "fhir.not_bundle"),
        (b'{"resourceType": "OperationOutcome"}', 422, "fhir.not_bundle"),
        (b'{"resourceType": ["Bundle"]}', 422, "fhir.not_bundle"),
        (b'{"resourceType": "Bundle"}', 422, "fhir.bundle_invalid"),  # type is required
        (
            b'{"resourceType": "Bundle", "type": "collection", "entry": {}}',
            422,
            "fhir.bundle_invalid",
        ),
        (
            b'{"resourceType": "Bundle", "type": "collection", "entry": [1]}',
            422,
            "fhir.bundle_invalid",
        ),
        (
            b'{"resourceType": "Bundle", "type": "collection", "bogus": 1}',
            422,
            "fhir.bundle_invalid",
        ),
        (
            b'{"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": 5}]}',
            422,
            "fhir.bundle_invalid",
        ),
    ],
)
def test_refused_files(raw: bytes, status: int, code: str) -> None:
    with pytest.raises(FhirError) as e:
        fhir.read(raw)
    assert (e.value.status, e.value.code) == (status, code)
    assert e.value.detail


def test_too_many_entries_is_refused_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fhir, "MAX_ENTRIES", 3)
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _obs()}] * 4}
    with pytest.raises(FhirError) as e:
        fhir.read(doc)
    assert (e.value.status, e.value.code) == (413, "fhir.bundle_too_large")


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["final", "8867-4", LOINC, UCUM, "/min", "2026-12-01T08:00:00Z", "Observation"]
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "status",
                    "code",
                    "coding",
                    "system",
                    "value",
                    "unit",
                    "valueQuantity",
                    "effectiveDateTime",
                    "effectivePeriod",
                    "start",
                    "end",
                    "component",
                    "id",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.dictionaries(st.sampled_from(list(_obs())), JSONISH, max_size=6))
def test_hostile_observations_never_crash(junk: dict[str, Any]) -> None:
    o = {**_obs(), **junk}
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o}]}
    got = fhir.read(json.dumps(doc))
    assert len(got.samples) + len(got.skipped) + sum(got.other_resources.values()) == 1
    for s in got.samples:
        assert s["start"].tzinfo is not None


@settings(max_examples=200, deadline=None)
@given(doc=JSONISH)
def test_hostile_documents_are_read_or_refused(doc: Any) -> None:
    try:
        fhir.read(json.dumps(doc))
    except FhirError as e:
        assert e.code.startswith("fhir.")
