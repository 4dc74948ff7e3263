"""The Apple Health parser's columns (``read_export_columns``, what the import
into the store reads): the same samples as ``read_export`` in the same order,
the same counts and progress, the same faults, in batches of any size; and the
dates read on arrays (``_epochs``) exactly as ``_when`` reads them one by one."""

from __future__ import annotations

import io
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kares.protocols import applehealth
from kares.protocols.applehealth import (
    ExportError,
    Progress,
    SampleColumns,
    read_export,
    read_export_columns,
)
from kares.protocols.applehealth_child import ReaderFailed, read_export_columns_apart
from tests.support.applehealth import HEAD, write_export, write_zip

pytestmark = pytest.mark.db_agnostic

EXPORT = Path(__file__).parent / "data" / "applehealth" / "apple_health_export" / "export.xml"
FIELDS = ("metric", "value", "values", "unit", "stage", "source", "record_id")


def as_rows(batches: list[SampleColumns]) -> list[tuple[Any, ...]]:
    out = []
    for c in batches:
        assert len({len(getattr(c, f)) for f in (*FIELDS, "start", "end")}) == 1
        for i in range(len(c)):
            end = c.end[i]
            out.append(
                (*(getattr(c, f)[i] for f in FIELDS), c.start[i], None if math.isnan(end) else end)
            )
    return out


def as_rows_of_samples(samples: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            *(x[f] for f in FIELDS),
            x["start"].timestamp(),
            None if x["end"] is None else x["end"].timestamp(),
        )
        for x in samples
    ]


def progress_of(p: Progress) -> dict[str, Any]:
    return p.as_dict()


def both(source: Any, batch: int) -> None:
    """``read_export_columns`` gives ``read_export``'s samples, counts and end."""
    p1, p2 = Progress(), Progress()
    expected = list(read_export(source() if callable(source) else source, progress=p1))
    got = list(
        read_export_columns(source() if callable(source) else source, batch=batch, progress=p2)
    )
    assert [len(c) for c in got[:-1]] == [batch] * (len(got) - 1)
    assert 0 < len(got[-1]) <= batch
    assert as_rows(got) == as_rows_of_samples(expected)
    assert progress_of(p2) == progress_of(p1)


@pytest.mark.parametrize("batch", [1, 7, 10_000])
def test_the_columns_are_the_samples_of_read_export_in_batches(tmp_path: Path, batch: int) -> None:
    both(EXPORT, batch)
    path = tmp_path / "export.zip"
    write_zip(path, 3000, seed=3)
    both(path, batch)


def test_the_columns_of_a_larger_export_over_many_chunks(tmp_path: Path) -> None:
    path = tmp_path / "export.xml"
    write_export(path, 20_000, seed=5)
    both(path, 10_000)
    # small chunks: batches cut across chunks, and chunks across batches
    p1, p2 = Progress(), Progress()
    expected = list(read_export(path, progress=p1, chunk=4096))
    got = list(read_export_columns(path, batch=333, progress=p2, chunk=4096))
    assert as_rows(got) == as_rows_of_samples(expected)
    assert progress_of(p2) == progress_of(p1)


def record(kind: str, value: str, unit: str, start: str, end: str) -> str:
    return (
        f' <Record type="{kind}" sourceName="Watch" unit="{unit}" '
        f'startDate="{start}" endDate="{end}" value="{value}"/>\n'
    )


def test_records_whose_dates_are_not_dates_are_counted_as_read_export_counts_them() -> None:
    ok = "2025-03-01 08:01:07 +0800"
    steps, hr = "HKQuantityTypeIdentifierStepCount", "HKQuantityTypeIdentifierHeartRate"
    sleep = "HKCategoryTypeIdentifierSleepAnalysis"
    bad = [
        "2025-02-30 08:01:07 +0800",  # no such day
        "2025-03-01 24:01:07 +0800",
        "2025-03-01 08:01:07",  # no offset
        "2025-03-01 08:01:07 +2400",
        "yesterday",
        "",
        "2025-03-01 08:01:07 +0800 and more",
    ]
    odd_but_dates = [
        "2025-03-01T08:01:07 +0800",
        "2025-03-01 08:01:07+08:00",
        "2025-03-01 08:01:07.250 +0800",
        "2024-02-29 23:59:59 -0930",
        "0999-12-31 23:59:59 +0000",
    ]
    body = ""
    for d in [ok, *bad, *odd_but_dates]:
        body += record(steps, "10", "count", d, ok)  # the start
        body += record(steps, "10", "count", ok, d)  # the end (read for an interval)
        body += record(hr, "70", "count/min", d, ok)
        body += record(hr, "70", "count/min", ok, d)  # an instant's end is not read
        body += (
            f' <Record type="{sleep}" sourceName="Watch" startDate="{d}" endDate="{ok}" '
            'value="HKCategoryValueSleepAnalysisAsleepCore"/>\n'
        )
    xml = (HEAD + '<HealthData locale="en_US">\n' + body + "</HealthData>\n").encode()
    for batch in (1, 3, 100):
        both(lambda: io.BytesIO(xml), batch)
    p, ref = Progress(), Progress()
    list(read_export_columns(io.BytesIO(xml), batch=10, progress=p))
    list(read_export(io.BytesIO(xml), progress=ref))
    assert p.invalid == ref.invalid
    assert p.invalid[steps] >= 2 * len(bad) and p.invalid[hr] >= len(bad)
    assert p.samples == ref.samples > 0


def test_a_file_cut_short_gives_every_sample_before_the_cut_then_the_fault() -> None:
    data = EXPORT.read_bytes()
    for cut in (data[: data.index(b"<Correlation")], data[: len(data) * 2 // 3]):
        expected: list[Any] = []
        with pytest.raises(ExportError) as fault:
            for x in read_export(io.BytesIO(cut)):
                expected.append(x)
        for batch in (1, 4, 10_000):
            got: list[SampleColumns] = []
            with pytest.raises(ExportError) as again:
                for c in read_export_columns(io.BytesIO(cut), batch=batch):
                    got.append(c)
            assert again.value.code == fault.value.code == "applehealth.malformed"
            assert as_rows(got) == as_rows_of_samples(expected)


def test_a_hostile_file_is_refused_by_the_columns_as_well() -> None:
    bomb = (
        b'<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n <!ENTITY a "aaaaaaaaaa">\n'
        b' <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\n]>\n'
        b'<HealthData locale="en_US"><Record type="x" value="&b;"/></HealthData>\n'
    )
    with pytest.raises(ExportError) as err:
        list(read_export_columns(io.BytesIO(bomb), batch=10))
    assert err.value.code == "applehealth.unsafe_xml"
    with pytest.raises(ValueError):
        list(read_export_columns(EXPORT, batch=0))


# --- dates on arrays ----------------------------------------------------------------------


def when_timestamp(s: str) -> float | None:
    try:
        return applehealth._when(s).timestamp()
    except ValueError:
        return None


def two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda x: f"{x:02d}")


@st.composite
def apple_dates(draw: st.DrawFn) -> str:
    """Apple's form, often right, sometimes wrong in one place or another."""
    year = draw(st.one_of(st.integers(1990, 2040), st.integers(0, 9999)).map(lambda y: f"{y:04d}"))
    month, day = draw(two(0, 13)), draw(two(0, 32))
    hour, minute, second = draw(two(0, 25)), draw(two(0, 61)), draw(two(0, 61))
    sign = draw(st.sampled_from("+-+-+- x"))
    zh, zm = draw(two(0, 25)), draw(two(0, 61))
    sep = draw(st.sampled_from("  T_"))
    s = f"{year}-{month}-{day}{sep}{hour}:{minute}:{second} {sign}{zh}{zm}"
    how = draw(st.integers(0, 9))
    if how == 0 and s:  # a character changed
        i = draw(st.integers(0, len(s) - 1))
        s = s[:i] + draw(st.characters(codec="utf-8")) + s[i + 1 :]
    elif how == 1:  # cut or lengthened
        s = s[: draw(st.integers(0, len(s)))] + draw(st.text(max_size=3))
    return s


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(apple_dates(), apple_dates(), st.text(max_size=30)), max_size=30))
def test_dates_read_on_arrays_are_read_as_when_reads_them(xs: list[str]) -> None:
    got, bad = applehealth._epochs(xs)
    assert len(got) == len(xs)
    for i, s in enumerate(xs):
        expected = when_timestamp(s)
        if expected is None:
            assert i in bad and math.isnan(got[i]), s
        else:
            assert i not in bad and got[i] == expected, (s, got[i], expected)


def test_dates_on_arrays_pass_numbers_and_none_and_take_mixed_lists() -> None:
    ok = "2025-03-01 08:01:07 +0800"
    got, bad = applehealth._epochs([ok, 12.5, None, "no", ok])
    assert got[0] == got[4] == applehealth._when(ok).timestamp()
    assert got[1] == 12.5 and math.isnan(got[2]) and math.isnan(got[3])
    assert bad == [3]
    empty, none = applehealth._epochs([])
    assert len(empty) == 0 and none == []


# --- the parser in a process of its own (what the import reads) ---------------------------


def apart(path: Path, batch: int, chunk: int = applehealth.CHUNK) -> None:
    """``read_export_columns_apart`` gives ``read_export_columns``'s batches,
    samples and progress."""
    p1, p2 = Progress(), Progress()
    expected = list(read_export_columns(path, batch=batch, progress=p1, chunk=chunk))
    got = list(read_export_columns_apart(path, batch=batch, progress=p2, chunk=chunk))
    assert [len(c) for c in got] == [len(c) for c in expected]
    assert as_rows(got) == as_rows(expected)
    assert progress_of(p2) == progress_of(p1)
    assert p2.done
    assert p2.reader_peak_kb is None or p2.reader_peak_kb > 0


def test_the_reader_process_gives_the_columns_of_the_parser_in_process(tmp_path: Path) -> None:
    for batch in (1, 7, 10_000):
        apart(EXPORT, batch)
    zipped = tmp_path / "export.zip"
    write_zip(zipped, 3000, seed=3)
    apart(zipped, 500)
    larger = tmp_path / "export.xml"
    write_export(larger, 20_000, seed=5)
    apart(larger, 333, chunk=4096)  # many chunks, batches cut across them


def test_the_reader_process_counts_bad_dates_as_the_parser_does(tmp_path: Path) -> None:
    ok = "2025-03-01 08:01:07 +0800"
    steps = "HKQuantityTypeIdentifierStepCount"
    body = "".join(
        record(steps, v, "count", d, ok)
        for d in (ok, "2025-02-30 08:01:07 +0800", "yesterday", "2025-03-01T08:01:07 +0800")
        for v in ("10", "nan", "x")
    )
    path = tmp_path / "export.xml"
    path.write_text(HEAD + '<HealthData locale="en_US">\n' + body + "</HealthData>\n")
    p = Progress()
    list(read_export_columns_apart(path, batch=2, progress=p))
    assert p.invalid[steps] == 10 and p.samples == 2  # the dates here, the values there
    for batch in (1, 2, 100):
        apart(path, batch)


def test_a_fault_in_the_reader_process_comes_after_the_same_samples(tmp_path: Path) -> None:
    data = EXPORT.read_bytes()
    cases = {
        "cut.xml": data[: len(data) * 2 // 3],
        "cut-at-correlation.xml": data[: data.index(b"<Correlation")],
        "bomb.xml": (
            b'<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n <!ENTITY a "aaaaaaaaaa">\n]>\n'
            b'<HealthData locale="en_US"><Record type="x" value="&a;"/></HealthData>\n'
        ),
        "other.xml": b'<?xml version="1.0"?>\n<kml/>\n',
        "empty.xml": b"",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for batch in (1, 4, 10_000):
            expected: list[SampleColumns] = []
            with pytest.raises(ExportError) as fault:
                for c in read_export_columns(path, batch=batch):
                    expected.append(c)
            got: list[SampleColumns] = []
            with pytest.raises(ExportError) as again:
                for c in read_export_columns_apart(path, batch=batch):
                    got.append(c)
            assert (again.value.code, again.value.message) == (
                fault.value.code,
                fault.value.message,
            ), name
            assert as_rows(got) == as_rows(expected), name
    with pytest.raises(ExportError) as missing:
        list(read_export_columns_apart(tmp_path / "nowhere.xml", batch=10))
    assert missing.value.code == "applehealth.unreadable"


def _readers() -> list[int]:
    """This process's reader children still running (or not yet reaped)."""
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and b"kares.protocols.applehealth_child" in cmd:
            out.append(int(d.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_reader_process_ends_with_the_reading_and_its_death_is_not_the_files_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "export.xml"
    write_export(path, 20_000, seed=5)
    assert _readers() == []
    monkeypatch.setenv("KARES_DATA_KEYS", "not-for-the-reader")
    # stopped early: the generator closed, the child goes with it
    batches = read_export_columns_apart(path, batch=100, chunk=4096)
    first = next(batches)
    assert len(first) == 100 and len(_readers()) == 1
    # the process that reads outside input is given no setting and no key
    environ = Path(f"/proc/{_readers()[0]}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith(b"KARES_")]
    batches.close()
    assert _readers() == []
    # killed while it reads: what it sent is given, then an error that is not
    # an ExportError (the file is not to blame)
    batches = read_export_columns_apart(path, batch=100, chunk=4096)
    next(batches)
    (pid,) = _readers()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ReaderFailed):
        for _ in batches:
            pass
    assert _readers() == []
