"""Apple Health's export read into neutral health samples (kares.protocols.applehealth).

tests/data/applehealth/apple_health_export/ holds an export in the exact form the
Health app writes it (HealthKit export version 14: the internal DTD, ExportDate,
Me, Records with device strings and MetadataEntry children, a heart-rate
variability record with its beat list, the blood-pressure Correlation whose two
records also stand at the top level, a food Correlation, a Workout with its
events, statistics and route, an ActivitySummary) and the export_cda.xml beside
it; the zip is put together here the way the Health app lays it out. Hostile XML
(entity bombs, external entities, an outside DTD) is written here too.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kares.protocols.applehealth import (
    ExportError,
    Progress,
    Sample,
    read_export,
)
from tests.support.applehealth import HEAD, hk_date, write_export, write_to, write_zip

pytestmark = pytest.mark.db_agnostic

DATA = Path(__file__).parent / "data" / "applehealth" / "apple_health_export"
EXPORT = DATA / "export.xml"
CST = timezone(timedelta(hours=8))
WATCH = "王芳的Apple Watch"
KEYS = {"metric", "start", "end", "value", "values", "unit", "stage", "source", "record_id"}


def read(source: Any, **kw: Any) -> tuple[list[Sample], Progress]:
    prog = Progress()
    return list(read_export(source, progress=prog, **kw)), prog


def of(samples: list[Sample], metric: str) -> list[Sample]:
    return [s for s in samples if s["metric"] == metric]


def health_zip(path: Path, xml: bytes | None = None, *, member: str | None = None) -> Path:
    """The archive as the Health app writes it: apple_health_export/ with export.xml,
    export_cda.xml, a workout route and an ECG beside them."""
    xml = EXPORT.read_bytes() if xml is None else xml
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("apple_health_export/export_cda.xml", (DATA / "export_cda.xml").read_bytes())
        z.writestr(member or "apple_health_export/export.xml", xml)
        z.writestr(
            "apple_health_export/workout-routes/route_2025-03-01_5.35pm.gpx",
            '<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="Apple Health'
            ' Export"/>\n',
        )
        z.writestr(
            "apple_health_export/electrocardiograms/ecg_2025-03-01.csv",
            "Name,王芳\nClassification,Sinus Rhythm\n",
        )
    return path


def export_with(records: str) -> bytes:
    """A whole export.xml (Apple's prolog, header elements) around some records."""
    return (
        HEAD + '<HealthData locale="en_US">\n <ExportDate value="2025-03-02 21:14:09 +0800"/>\n'
        ' <Me HKCharacteristicTypeIdentifierDateOfBirth="" '
        'HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexNotSet" '
        'HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet" '
        'HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet" '
        'HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse="None"/>\n'
        f"{records}</HealthData>\n"
    ).encode()


def record(kind: str, value: str | None, unit: str | None = None, **over: str) -> str:
    a = {
        "type": kind,
        "sourceName": "iPhone",
        "sourceVersion": "18.3",
        "unit": unit,
        "creationDate": "2025-03-01 08:00:09 +0800",
        "startDate": "2025-03-01 08:00:00 +0800",
        "endDate": "2025-03-01 08:05:00 +0800",
        "value": value,
        **over,
    }
    return " <Record " + " ".join(f'{k}="{v}"' for k, v in a.items() if v is not None) + "/>\n"


# --- the real-format export --------------------------------------------------------------


def test_the_health_apps_export_reads_into_samples_of_every_kind() -> None:
    samples, prog = read(EXPORT)
    assert all(set(s) == KEYS for s in samples)
    assert Counter(s["metric"] for s in samples) == {
        "heart_rate": 3,
        "steps": 2,
        "distance": 1,
        "active_energy": 1,
        "resting_heart_rate": 1,
        "spo2": 1,
        "body_temperature": 2,
        "weight": 2,
        "blood_pressure": 1,
        "sleep": 7,
        "fall": 1,
    }
    hr = of(samples, "heart_rate")
    assert hr[0] == {
        "metric": "heart_rate",
        "start": datetime(2025, 3, 1, 8, 1, 7, tzinfo=CST),
        "end": None,
        "value": 74.0,
        "values": None,
        "unit": "count/min",
        "stage": None,
        "source": WATCH,
        "record_id": hr[0]["record_id"],
    }
    assert hr[1]["value"] == 81.5
    # a record written while travelling keeps its own offset (aware, not shifted)
    assert hr[2]["start"] == datetime(2025, 2, 20, 18, 29, 40, tzinfo=timezone(-timedelta(hours=5)))
    assert hr[2]["start"].utcoffset() == -timedelta(hours=5)

    steps = of(samples, "steps")
    assert [(s["value"], s["unit"], s["source"]) for s in steps] == [
        (862.0, "count", "王芳的iPhone"),
        (901.0, "count", WATCH),
    ]
    assert steps[0]["start"] == datetime(2025, 3, 1, 8, 21, 44, tzinfo=CST)
    assert steps[0]["end"] == datetime(2025, 3, 1, 8, 31, 17, tzinfo=CST)
    (dist,) = of(samples, "distance")
    assert (dist["value"], dist["unit"]) == (0.61842, "km")
    assert dist["end"] is not None
    (energy,) = of(samples, "active_energy")
    assert (energy["value"], energy["unit"]) == (31.204, "Cal")  # Apple's food calorie, as given
    (rest,) = of(samples, "resting_heart_rate")
    assert (rest["value"], rest["unit"], rest["end"]) == (58.0, "count/min", None)

    # units pass through as the source wrote them (the domain converts), but
    # Apple's own spelling of Celsius becomes UCUM's
    temps = of(samples, "body_temperature")
    assert [(t["value"], t["unit"], t["source"]) for t in temps] == [
        (99.5, "degF", "Kinsa"),
        (36.8, "Cel", "健康"),
    ]
    weights = of(samples, "weight")
    assert [(w["value"], w["unit"]) for w in weights] == [(132.3, "lb"), (60.1, "kg")]

    assert prog.records == 31  # top-level data elements; ExportDate and Me are the header
    assert prog.samples == len(samples) == 22
    assert prog.invalid == {}
    assert prog.export_date == datetime(2025, 3, 2, 21, 14, 9, tzinfo=CST)
    assert prog.locale == "zh_CN"
    assert prog.done
    assert prog.bytes_read == prog.bytes_total == EXPORT.stat().st_size


def test_oxygen_saturation_comes_as_a_fraction_and_leaves_as_a_percentage() -> None:
    (spo2,) = of(read(EXPORT)[0], "spo2")
    assert (spo2["value"], spo2["unit"]) == (97.0, "%")
    # a writer that already gave a percentage is left as it is
    xml = export_with(record("HKQuantityTypeIdentifierOxygenSaturation", "96", "%"))
    ((other,), _) = read(io.BytesIO(xml))
    assert (other["value"], other["unit"]) == (96.0, "%")


def test_a_blood_pressure_correlation_is_one_sample_and_its_records_do_not_come_out_alone() -> None:
    samples, prog = read(EXPORT)
    (bp,) = of(samples, "blood_pressure")
    assert bp["values"] == {"systolic": 132.0, "diastolic": 84.0}
    assert (bp["value"], bp["unit"], bp["source"]) == (None, "mmHg", "Omron Connect")
    assert bp["start"] == datetime(2025, 3, 1, 7, 50, 12, tzinfo=CST)
    assert bp["end"] is None
    # Apple writes the two records again at the top level: skipped, counted
    assert prog.skipped["HKQuantityTypeIdentifierBloodPressureSystolic"] == 1
    assert prog.skipped["HKQuantityTypeIdentifierBloodPressureDiastolic"] == 1
    assert not [s for s in samples if s["values"] is None and s["unit"] == "mmHg"]


def test_a_correlation_missing_a_reading_is_refused_not_half_read() -> None:
    half = (
        ' <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Omron" '
        'startDate="2025-03-01 07:50:12 +0800" endDate="2025-03-01 07:50:12 +0800">\n'
        + record(
            "HKQuantityTypeIdentifierBloodPressureSystolic",
            "130",
            "mmHg",
            startDate="2025-03-01 07:50:12 +0800",
        )
        + " </Correlation>\n"
    )
    samples, prog = read(
        io.BytesIO(
            export_with(half + record("HKQuantityTypeIdentifierHeartRate", "70", "count/min"))
        )
    )
    assert [s["metric"] for s in samples] == ["heart_rate"]
    assert prog.invalid == {"HKCorrelationTypeIdentifierBloodPressure": 1}


def test_sleep_stages_old_and_new() -> None:
    sleep = of(read(EXPORT)[0], "sleep")
    assert [(s["stage"], s["source"]) for s in sleep] == [
        ("in_bed", "王芳的iPhone"),
        ("asleep_unspecified", "AutoSleep"),  # "Asleep", before iOS 16
        ("awake", WATCH),
        ("asleep_core", WATCH),
        ("asleep_deep", WATCH),
        ("asleep_rem", WATCH),
        ("asleep_unspecified", "Sleep Cycle"),
    ]
    assert all(s["value"] is None and s["unit"] is None for s in sleep)
    assert sleep[4]["start"] == datetime(2025, 2, 28, 23, 47, 30, tzinfo=CST)
    assert sleep[4]["end"] == datetime(2025, 3, 1, 0, 31, tzinfo=CST)
    # very old exports wrote the raw value; an unknown stage is refused
    xml = export_with(
        record("HKCategoryTypeIdentifierSleepAnalysis", "0")
        + record("HKCategoryTypeIdentifierSleepAnalysis", "4")
        + record("HKCategoryTypeIdentifierSleepAnalysis", "HKCategoryValueSleepAnalysisDreaming")
    )
    samples, prog = read(io.BytesIO(xml))
    assert [s["stage"] for s in samples] == ["in_bed", "asleep_deep"]
    assert prog.invalid == {"HKCategoryTypeIdentifierSleepAnalysis": 1}


def test_falls_are_events_one_per_fall() -> None:
    (fall,) = of(read(EXPORT)[0], "fall")
    assert fall["start"] == datetime(2025, 3, 1, 16, 42, 7, tzinfo=CST)
    assert (fall["end"], fall["value"], fall["unit"]) == (None, None, None)
    kind = "HKQuantityTypeIdentifierNumberOfTimesFallen"
    xml = export_with(
        record(kind, "2", "count")
        + record(kind, "0", "count", startDate="2025-03-02 08:00:00 +0800")
        + record(kind, "1e9", "count", startDate="2025-03-03 08:00:00 +0800")
    )
    samples, prog = read(io.BytesIO(xml))
    assert [s["metric"] for s in samples] == ["fall", "fall"]
    assert len({s["record_id"] for s in samples}) == 2
    assert prog.skipped == {kind: 1}  # a record of no fall
    assert prog.invalid == {kind: 1}  # a billion falls in five minutes


def test_every_other_type_and_element_is_counted_as_skipped_per_type() -> None:
    _, prog = read(EXPORT)
    assert prog.skipped == {
        "HKQuantityTypeIdentifierBasalEnergyBurned": 1,
        "HKQuantityTypeIdentifierHeartRateVariabilitySDNN": 1,
        "HKCategoryTypeIdentifierAppleStandHour": 1,
        "HKQuantityTypeIdentifierDietaryEnergyConsumed": 1,
        "HKQuantityTypeIdentifierBloodPressureSystolic": 1,
        "HKQuantityTypeIdentifierBloodPressureDiastolic": 1,
        "HKCorrelationTypeIdentifierFood": 1,  # its inner record not counted twice
        "Workout": 1,
        "ActivitySummary": 1,
    }


def test_records_that_cannot_be_read_are_counted_and_the_rest_go_on() -> None:
    hr = "HKQuantityTypeIdentifierHeartRate"
    xml = export_with(
        record(hr, "abc", "count/min")
        + record(hr, "NaN", "count/min")
        + record(hr, None, "count/min")
        + record(hr, "70", "count/min", startDate="yesterday")
        + record(hr, "71", "count/min", startDate="2025-03-01 08:00:00")  # no offset
        + record(hr, "72", "count/min")
    )
    samples, prog = read(io.BytesIO(xml))
    assert [s["value"] for s in samples] == [72.0]
    assert prog.invalid == {hr: 5}
    assert prog.records == 6


# --- record ids --------------------------------------------------------------------------


def test_record_ids_are_stable_across_imports_and_tell_records_apart(tmp_path: Path) -> None:
    first, _ = read(EXPORT)
    again, _ = read(health_zip(tmp_path / "export.zip"))
    assert [s["record_id"] for s in first] == [s["record_id"] for s in again]
    assert first == again
    ids = [s["record_id"] for s in first]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_record_id_changes_with_what_identifies_the_record_only() -> None:
    hr = "HKQuantityTypeIdentifierHeartRate"
    base = record(hr, "70", "count/min")
    variants = [
        base,
        base.replace('creationDate="2025-03-01 08:00:09', 'creationDate="2025-03-04 10:00:00'),
        base.replace('sourceVersion="18.3"', 'sourceVersion="18.4"'),
        record(hr, "71", "count/min"),
        record(hr, "70", "count/min", sourceName="Polar Flow"),
        record(hr, "70", "count/min", startDate="2025-03-01 08:00:01 +0800"),
        record(hr, "70", "count/min", endDate="2025-03-01 08:05:01 +0800"),
        record(hr, "70", "Hz"),
        record("HKQuantityTypeIdentifierRestingHeartRate", "70", "count/min"),
    ]
    ids = [read(io.BytesIO(export_with(v)))[0][0]["record_id"] for v in variants]
    # written again later (creation date, app version): the same record
    assert ids[0] == ids[1] == ids[2]
    assert len(set(ids[2:])) == len(ids) - 2


# --- the file: zip or XML, path or file object, progress ---------------------------------


def test_the_zip_is_read_from_a_path_and_from_a_file_object(tmp_path: Path) -> None:
    path = health_zip(tmp_path / "导出.zip")
    by_path, prog = read(path)
    by_str, _ = read(str(path))
    with open(path, "rb") as f:
        by_file, _ = read(f)
    by_bytes, _ = read(io.BytesIO(path.read_bytes()))
    assert by_path == by_str == by_file == by_bytes == read(EXPORT)[0]
    # the total is export.xml's own size, not the archive's (the CDA is not read)
    assert prog.bytes_total == prog.bytes_read == EXPORT.stat().st_size


def test_an_archive_made_again_by_hand_is_read_from_its_export_xml(tmp_path: Path) -> None:
    path = health_zip(tmp_path / "mine.zip", member="backup/export.xml")
    assert read(path)[0] == read(EXPORT)[0]


def test_an_archive_without_export_xml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cda-only.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("apple_health_export/export_cda.xml", (DATA / "export_cda.xml").read_bytes())
    with pytest.raises(ExportError) as err:
        read(path)
    assert err.value.code == "applehealth.no_export_xml"


def test_a_damaged_archive_is_refused(tmp_path: Path) -> None:
    good = health_zip(tmp_path / "good.zip").read_bytes()
    path = tmp_path / "cut.zip"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ExportError) as err:
        read(path)
    assert err.value.code == "applehealth.bad_zip"


def test_an_archive_damaged_inside_its_export_xml_is_refused(tmp_path: Path) -> None:
    path = health_zip(tmp_path / "export.zip")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("apple_health_export/export.xml")
    # garble the middle of export.xml's compressed bytes (after its local header)
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle : middle + 64] = bytes(64)
    with pytest.raises(ExportError) as err:
        read(io.BytesIO(bytes(data)))
    assert err.value.code == "applehealth.bad_zip"


def test_an_encrypted_archive_is_refused(tmp_path: Path) -> None:
    path = health_zip(tmp_path / "export.zip")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("apple_health_export/export.xml")
    # set the "encrypted" flag, in the local header and in the central directory
    data[info.header_offset + 6] |= 0x01
    at = data.rindex(info.filename.encode()) - 46  # its central directory entry
    assert data[at : at + 4] == b"PK\x01\x02"
    data[at + 8] |= 0x01
    with pytest.raises(ExportError) as err:
        read(io.BytesIO(bytes(data)))
    assert err.value.code == "applehealth.bad_zip"


def test_the_xml_is_read_from_a_stream_that_cannot_seek() -> None:
    r, w = os.pipe()
    data = EXPORT.read_bytes()
    import threading

    def write() -> None:
        with os.fdopen(w, "wb") as out:
            out.write(data)

    t = threading.Thread(target=write)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as pipe:
        samples, prog = read(pipe)
    t.join()
    assert samples == read(EXPORT)[0]
    assert prog.bytes_total is None and prog.fraction is None
    assert prog.bytes_read == len(data)


def test_progress_is_reported_as_the_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "export.xml"
    wrote = write_export(path, 2000)
    seen: list[dict[str, Any]] = []
    prog = Progress()
    it = read_export(
        path, progress=prog, on_progress=lambda p: seen.append(p.as_dict()), chunk=16384
    )
    first = next(it)
    assert first["metric"] and not prog.done
    assert 0 < prog.bytes_read < path.stat().st_size  # readable while it runs
    rest = list(it)
    assert len(rest) + 1 == prog.samples
    assert len(seen) > 10
    read_bytes = [s["bytes_read"] for s in seen]
    assert read_bytes == sorted(read_bytes)
    assert [s["records"] for s in seen] == sorted(s["records"] for s in seen)
    assert seen[-1]["done"] and seen[-1]["fraction"] == 1.0
    assert not any(s["done"] for s in seen[:-1])
    assert seen[-1]["records"] == wrote.total()
    assert seen[-1]["skipped"] == {
        k.split(":", 1)[1]: n for k, n in wrote.items() if k.startswith("skipped:")
    }


def test_a_generated_export_parses_to_exactly_what_was_written(tmp_path: Path) -> None:
    """The benchmark's generator and the parser agree, metric by metric, type by type."""
    path = tmp_path / "export.zip"
    wrote = write_zip(path, 5000, seed=3)
    samples, prog = read(path)
    metrics = Counter(s["metric"] for s in samples)
    assert metrics == {k: n for k, n in wrote.items() if not k.startswith("skipped:")}
    assert dict(prog.skipped) == {
        k.split(":", 1)[1]: n for k, n in wrote.items() if k.startswith("skipped:")
    }
    assert prog.records == wrote.total() and prog.invalid == {}
    ids = [s["record_id"] for s in samples]
    assert len(set(ids)) == len(ids)


def test_a_file_cut_short_yields_what_it_holds_then_says_so() -> None:
    data = EXPORT.read_bytes()
    cut = data[: data.index(b"<Correlation")]
    got: list[Sample] = []
    with pytest.raises(ExportError) as err:
        for s in read_export(io.BytesIO(cut)):
            got.append(s)
    assert err.value.code == "applehealth.malformed"
    assert len(got) == 21  # everything before the correlations


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "applehealth.not_an_export"),
        (b"date,steps\n2025-03-01,862\n", "applehealth.malformed"),
        (b'{"resourceType": "Bundle"}', "applehealth.malformed"),
        (
            b'<?xml version="1.0"?>\n<gpx version="1.1"><trk/></gpx>',
            "applehealth.not_an_export",
        ),
        (
            b'<?xml version="1.0"?>\n<HealthData locale="en_US"><Record></HealthData>',
            "applehealth.malformed",
        ),
        (b"<?xml version='1.0'?>\n" + b"<!-- " + b"x" * (1 << 21), "applehealth.not_an_export"),
    ],
    ids=["empty", "csv", "json", "gpx", "broken", "endless-prolog"],
)
def test_what_is_not_an_export_is_refused_with_a_code(data: bytes, code: str) -> None:
    with pytest.raises(ExportError) as err:
        read(io.BytesIO(data))
    assert err.value.code == code
    assert err.value.message


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as err:
        read(tmp_path / "nothing.zip")
    assert err.value.code == "applehealth.unreadable"


# --- hostile XML -------------------------------------------------------------------------

LAUGHS = "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">\n' for i in range(1, 10))
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n <!ENTITY lol0 "lol">\n'
    + LAUGHS
    + ']>\n<HealthData locale="en_US">\n'
    + record("HKQuantityTypeIdentifierHeartRate", "70", "count/min", sourceName="&lol9;")
    + "</HealthData>\n"
).encode()


def test_an_entity_bomb_is_refused_before_anything_is_expanded() -> None:
    got: list[Sample] = []
    with pytest.raises(ExportError) as err:
        for s in read_export(io.BytesIO(BILLION_LAUGHS)):
            got.append(s)
    assert err.value.code == "applehealth.unsafe_xml"
    assert got == []


def test_an_entity_bomb_hidden_inside_apples_dtd_is_refused_too(tmp_path: Path) -> None:
    """The same bomb, its declarations among Apple's own, in a zip."""
    xml = (
        EXPORT.read_bytes()
        .replace(
            b"<!ELEMENT ExportDate EMPTY>",
            b'<!ENTITY lol0 "lol">\n' + LAUGHS.encode() + b"<!ELEMENT ExportDate EMPTY>",
        )
        .replace(b'sourceName="Kinsa"', b'sourceName="&lol9;"')
    )
    with pytest.raises(ExportError) as err:
        read(health_zip(tmp_path / "export.zip", xml))
    assert err.value.code == "applehealth.unsafe_xml"


def test_an_external_entity_is_refused_and_the_file_it_names_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t-do-not-leak")
    for decl in (
        f'<!ENTITY xxe SYSTEM "file://{secret}">',
        f'<!ENTITY % xxe SYSTEM "file://{secret}"> %xxe;',
        '<!ENTITY xxe SYSTEM "http://127.0.0.1:9/steal">',
    ):
        xml = export_with(
            record("HKQuantityTypeIdentifierHeartRate", "70", "count/min", sourceName="&xxe;")
        ).replace(b"<!ELEMENT ExportDate EMPTY>", decl.encode() + b"\n<!ELEMENT ExportDate EMPTY>")
        with pytest.raises(ExportError) as err:
            read(io.BytesIO(xml))
        assert err.value.code == "applehealth.unsafe_xml", decl
        assert "s3cr3t" not in err.value.message


def test_an_outside_dtd_is_refused() -> None:
    xml = export_with(record("HKQuantityTypeIdentifierHeartRate", "70", "count/min"))
    start, end = xml.index(b"<!DOCTYPE"), xml.index(b"]>") + 2
    for doctype in (
        b'<!DOCTYPE HealthData SYSTEM "http://127.0.0.1:9/healthdata.dtd">',
        b'<!DOCTYPE HealthData PUBLIC "-//Apple//HealthData" "file:///etc/passwd">',
    ):
        with pytest.raises(ExportError) as err:
            read(io.BytesIO(xml[:start] + doctype + xml[end:]))
        assert err.value.code == "applehealth.unsafe_xml"


def test_an_undeclared_entity_in_the_body_is_malformed_not_fetched() -> None:
    xml = export_with(
        record("HKQuantityTypeIdentifierHeartRate", "70", "count/min", sourceName="&passwd;")
    )
    with pytest.raises(ExportError) as err:
        read(io.BytesIO(xml))
    assert err.value.code == "applehealth.malformed"


def test_character_references_and_predefined_entities_still_read() -> None:
    xml = export_with(
        record(
            "HKQuantityTypeIdentifierHeartRate",
            "70",
            "count/min",
            sourceName="Ann&#8217;s &amp; Bob&#x2019;s &lt;Watch&gt;",
        )
    )
    ((s,), _) = read(io.BytesIO(xml))
    assert s["source"] == "Ann\u2019s & Bob\u2019s <Watch>"


# --- dates -------------------------------------------------------------------------------


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2099, 12, 31)),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_apple_dates_read_as_the_instant_they_name_with_their_offset(
    local: datetime, minutes: int
) -> None:
    tz = timezone(timedelta(minutes=minutes))
    t = local.replace(microsecond=0, tzinfo=tz)
    xml = export_with(
        record(
            "HKQuantityTypeIdentifierStepCount",
            "10",
            "count",
            startDate=hk_date(t),
            endDate=hk_date(t),
        )
    )
    ((s,), _) = read(io.BytesIO(xml))
    assert s["start"] == t and s["end"] == t
    assert s["start"].utcoffset() == timedelta(minutes=minutes)
    assert s["start"].astimezone(UTC) == t.astimezone(UTC)


def test_dates_read_on_pythons_that_want_no_space_before_the_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.11's fromisoformat takes Apple's "08:15:00 +0800"; one that holds
    to ISO 8601 would not, and the space is then taken out."""
    from kares.protocols import applehealth

    expected = read(EXPORT)[0]
    real = datetime.fromisoformat

    def strict(s: str) -> datetime:
        if " +" in s or " -" in s:
            raise ValueError(f"Invalid isoformat string: {s!r}")
        return real(s)

    monkeypatch.setattr(applehealth, "_fromiso", strict)
    assert applehealth._when("2024-01-02 08:15:00 +0800") == datetime(2024, 1, 2, 8, 15, tzinfo=CST)
    assert applehealth._when("2024-07-02 08:15:00 -0430").utcoffset() == -timedelta(
        hours=4, minutes=30
    )
    with pytest.raises(ValueError):
        applehealth._when("2024-01-02 08:15:00")  # no offset: not placed in time
    assert read(EXPORT)[0] == expected


def test_attribute_order_does_not_change_a_record_or_its_id() -> None:
    """iOS versions write a Record's attributes in different orders."""
    hr = "HKQuantityTypeIdentifierHeartRate"
    one = record(hr, "70", "count/min")
    attrs = one.strip()[len("<Record ") : -2].split('" ')
    reordered = " <Record " + '" '.join(reversed([a.rstrip('"') for a in attrs])) + '"/>\n'
    assert reordered != one and reordered.startswith(' <Record value="70"')
    (a,), _ = read(io.BytesIO(export_with(one)))
    (b,), _ = read(io.BytesIO(export_with(reordered)))
    assert a == b


def test_the_generator_writes_what_it_says(tmp_path: Path) -> None:
    """The synthetic writer streams: its output starts like Apple's and ends closed."""
    buf = io.StringIO()
    wrote = write_to(buf, 50)
    text = buf.getvalue()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE HealthData [\n')
    assert text.rstrip().endswith("</HealthData>")
    assert 50 <= wrote.total() <= 52  # a blood pressure writes three elements at once
