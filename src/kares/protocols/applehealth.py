"""Apple Health's export: the archive the Health app writes with "Export All
Health Data" (``apple_health_export/export.xml`` in a zip, beside
``export_cda.xml``, which is not read), or the ``export.xml`` alone, turned into
the neutral health samples every health protocol yields (plain dicts, the item
shape of ``POST /api/v1/health/samples``; docs/HEALTH_IMPORT.md).

``read_export(source)`` streams: a file of any size is read in chunks of 1 MiB
by a SAX-style lxml parser that builds no tree, so memory stays the same
whatever the file's size, and samples are yielded as they are read. A
``Progress`` (bytes read of the total, records read, samples yielded, records
skipped and refused per type) is updated as it goes, for a command line to draw
and an API to report while the import runs. ``read_export_columns(source,
batch=n)`` yields the same samples in batches of columns (times as epoch
seconds, no dict and no datetime per sample): what the import into the store
reads.

What it reads (every other type, and ``Workout``, ``ActivitySummary``,
``ClinicalRecord``... elements, are counted as skipped, per type):

========================================================= ===================
``Record type=`` / ``Correlation type=``                  metric
========================================================= ===================
HKQuantityTypeIdentifierStepCount                          steps
HKQuantityTypeIdentifierDistanceWalkingRunning             distance
HKQuantityTypeIdentifierActiveEnergyBurned                 active_energy
HKQuantityTypeIdentifierHeartRate                          heart_rate
HKQuantityTypeIdentifierRestingHeartRate                   resting_heart_rate
HKQuantityTypeIdentifierOxygenSaturation                   spo2 (fraction -> %)
HKQuantityTypeIdentifierBodyTemperature                    body_temperature
HKQuantityTypeIdentifierBodyMass                           weight
HKCorrelationTypeIdentifierBloodPressure                   blood_pressure
HKCategoryTypeIdentifierSleepAnalysis                      sleep (with its stage)
HKQuantityTypeIdentifierNumberOfTimesFallen                fall (one per fall)
========================================================= ===================

A blood pressure is one ``Correlation`` holding a systolic and a diastolic
``Record``; Apple writes those two records at the top level as well (its DTD
says so), so the top-level ``HKQuantityTypeIdentifierBloodPressureSystolic`` /
``...Diastolic`` records are skipped: the correlation is the one sample.

Record ids: export.xml carries no identifier per record, so each sample's
``record_id`` is derived from what identifies the record in the file: a SHA-256
of its type, source name, start and end dates, value and unit, exactly as
written (for a blood pressure: the correlation's type, source and dates and both
values with their units). The same export imported twice, or a later export
holding the same records, yields the same ids; the store's idempotency on
(person, source, record id) does the rest.

Safety: the file is outside input. The prolog (everything before the root
element, where XML allows the DTD and so every entity declaration) is read first
by defusedxml's parser, which refuses any entity declaration and any external
reference; Apple's internal DTD declares elements and attributes only and
passes. An external DOCTYPE is refused too. The body is then parsed by lxml with
no external entity ever resolved (only XML's five predefined ones, as no other
can have been declared), no network, no DTD loading, and libxml2's own limits
(entity amplification, ``huge_tree`` off). A refused file raises
``ExportError`` with a stable code.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import blake2b
from operator import itemgetter
from typing import IO, TYPE_CHECKING, Any, TypedDict, cast

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from lxml import etree

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "CHUNK",
    "MAX_PROLOG",
    "ExportError",
    "Progress",
    "Sample",
    "SampleColumns",
    "read_export",
    "read_export_columns",
]

CHUNK = 1 << 20  # bytes read and fed at a time
MAX_PROLOG = 1 << 20  # Apple's DTD is ~6 KB; a prolog past this is not an export
MAX_FALLS_PER_RECORD = 10

Q = "HKQuantityTypeIdentifier"
BLOOD_PRESSURE = "HKCorrelationTypeIdentifierBloodPressure"
SYSTOLIC = Q + "BloodPressureSystolic"
DIASTOLIC = Q + "BloodPressureDiastolic"
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
FALLEN = Q + "NumberOfTimesFallen"
SPO2 = Q + "OxygenSaturation"

# Quantity records read as one sample each: type -> (metric, interval?).
# Interval metrics keep the end date; instant ones are placed at the start.
QUANTITIES: dict[str, tuple[str, bool]] = {
    Q + "StepCount": ("steps", True),
    Q + "DistanceWalkingRunning": ("distance", True),
    Q + "ActiveEnergyBurned": ("active_energy", True),
    Q + "HeartRate": ("heart_rate", False),
    Q + "RestingHeartRate": ("resting_heart_rate", False),
    SPO2: ("spo2", False),
    Q + "BodyTemperature": ("body_temperature", False),
    Q + "BodyMass": ("weight", False),
}

# HKCategoryValueSleepAnalysis, by name and by raw value (old exports wrote
# numbers). "Asleep" (before iOS 16) became "AsleepUnspecified", same raw value.
SLEEP_STAGES: dict[str, str] = {
    "HKCategoryValueSleepAnalysisInBed": "in_bed",
    "HKCategoryValueSleepAnalysisAsleep": "asleep_unspecified",
    "HKCategoryValueSleepAnalysisAsleepUnspecified": "asleep_unspecified",
    "HKCategoryValueSleepAnalysisAwake": "awake",
    "HKCategoryValueSleepAnalysisAsleepCore": "asleep_core",
    "HKCategoryValueSleepAnalysisAsleepDeep": "asleep_deep",
    "HKCategoryValueSleepAnalysisAsleepREM": "asleep_rem",
    "0": "in_bed",
    "1": "asleep_unspecified",
    "2": "awake",
    "3": "asleep_core",
    "4": "asleep_deep",
    "5": "asleep_rem",
}

# Apple's spellings of units that UCUM writes otherwise (everything else passes
# through as written; the health domain converts).
UNITS: dict[str, str] = {"degC": "Cel"}

# Top-level records that are not samples of their own (see the module's doc).
COPIES = frozenset({SYSTOLIC, DIASTOLIC})
# Elements at the top level that are the export's header, not data.
HEADER = frozenset({"ExportDate", "Me"})


class Sample(TypedDict):
    """The neutral health sample (shared by every health protocol)."""

    metric: str
    start: datetime
    end: datetime | None
    value: float | None
    values: dict[str, float] | None
    unit: str | None
    stage: str | None
    source: str
    record_id: str


class ExportError(ValueError):
    """A file that is not an Apple Health export we can read, or refused as unsafe."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Progress:
    """How far an import has come; updated in place as the file is read (after
    every chunk, and once more at the end with ``done``)."""

    bytes_read: int = 0  # of export.xml (uncompressed, when it came in a zip)
    bytes_total: int | None = None  # export.xml's size when known
    records: int = 0  # top-level data elements read (Record, Correlation, Workout, ...)
    samples: int = 0  # samples yielded
    skipped: Counter[str] = field(default_factory=Counter)  # type -> records not read
    invalid: Counter[str] = field(default_factory=Counter)  # type -> records unusable
    export_date: datetime | None = None  # the export's own ExportDate
    locale: str | None = None
    done: bool = False
    # the peak memory (kB) of the process that read the file, when that was a
    # process of its own (applehealth_child); not part of ``as_dict``
    reader_peak_kb: int | None = None

    @property
    def fraction(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(1.0, self.bytes_read / self.bytes_total)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot (for an API that reports the import while it runs)."""
        return {
            "bytes_read": self.bytes_read,
            "bytes_total": self.bytes_total,
            "fraction": self.fraction,
            "records": self.records,
            "samples": self.samples,
            "skipped": dict(self.skipped),
            "invalid": dict(self.invalid),
            "export_date": self.export_date.isoformat() if self.export_date else None,
            "locale": self.locale,
            "done": self.done,
        }


Source = str | os.PathLike[str] | IO[bytes]
OnProgress = Callable[[Progress], None]


def read_export(
    source: Source,
    *,
    progress: Progress | None = None,
    on_progress: OnProgress | None = None,
    chunk: int = CHUNK,
) -> Iterator[Sample]:
    """Yield the samples of an Apple Health export: the Health app's zip or its
    ``export.xml``, by path or as a binary file object (a zip needs a seekable
    one). ``progress`` (a fresh one if not given) is updated in place;
    ``on_progress`` is called with it after every chunk read and at the end.

    Raises ``ExportError`` (``applehealth.*`` codes) for a file that is not an
    export, a damaged one, or XML refused as unsafe; a file cut short raises it
    after yielding what came before the cut.
    """
    prog = progress if progress is not None else Progress()
    with _open(source) as (stream, total):
        prog.bytes_total = total
        yield from _parse(stream, prog, on_progress, chunk)
    prog.done = True
    if on_progress is not None:
        on_progress(prog)


# --- opening: zip or bare XML, path or file object -------------------------------------

ZIP_MAGIC = b"PK\x03\x04"
EXPORT_XML = "export.xml"
EXPORT_PATH = "apple_health_export/export.xml"


@contextmanager
def _open(source: Source) -> Iterator[tuple[IO[bytes], int | None]]:
    if isinstance(source, str | os.PathLike):
        try:
            f: IO[bytes] = open(source, "rb")
        except OSError as exc:
            raise ExportError("applehealth.unreadable", f"Cannot read the file: {exc}") from exc
        try:
            with _open_stream(f, os.fstat(f.fileno()).st_size) as opened:
                yield opened
        finally:
            f.close()
    else:
        size = None
        if source.seekable():
            here = source.tell()
            size = source.seek(0, io.SEEK_END) - here
            source.seek(here)
        with _open_stream(source, size) as opened:
            yield opened


@contextmanager
def _open_stream(f: IO[bytes], size: int | None) -> Iterator[tuple[IO[bytes], int | None]]:
    head = f.read(4)
    if head != ZIP_MAGIC:
        yield cast(IO[bytes], _Prefixed(head, f)), size
        return
    if not f.seekable():
        raise ExportError(
            "applehealth.unseekable", "A zip archive can only be read from a seekable file."
        )
    f.seek(-4, io.SEEK_CUR)
    try:
        z = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExportError("applehealth.bad_zip", "The zip archive is damaged.") from exc
    with z:
        member = _export_member(z)
        try:
            xml = z.open(member)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
            # a bad header, an encrypted member, a compression zipfile cannot undo
            raise ExportError(
                "applehealth.bad_zip", f"Cannot open {member.filename}: {exc}"
            ) from exc
        try:
            with xml:
                yield xml, member.file_size
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            # damaged while it was being read: a bad CRC, a cut or garbled stream
            raise ExportError(
                "applehealth.bad_zip", f"Cannot read {member.filename}: {exc}"
            ) from exc


def _export_member(z: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The archive's export.xml: apple_health_export/export.xml as the Health app
    writes it, or else the export.xml nearest the top (an archive made again by
    hand). export_cda.xml and the other files are not read."""
    found = [
        i
        for i in z.infolist()
        if not i.is_dir() and i.filename.replace("\\", "/").rsplit("/", 1)[-1] == EXPORT_XML
    ]
    if not found:
        raise ExportError(
            "applehealth.no_export_xml",
            "The archive holds no export.xml (Health app: Export All Health Data).",
        )
    found.sort(key=lambda i: (i.filename != EXPORT_PATH, i.filename.count("/"), i.filename))
    return found[0]


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            if n < 0:
                return head + self._rest.read()
            if n <= len(head):
                self._head = head[n:]
                return head[:n]
            return head + self._rest.read(n - len(head))
        return self._rest.read(n)


# --- the prolog check: defusedxml on everything before the root element ------------------


class _RootReached(Exception):
    def __init__(self, tag: str, attrib: dict[str, str]) -> None:
        self.tag = tag
        self.attrib = attrib


class _PrologTarget:
    def start(self, tag: str, attrib: dict[str, str]) -> None:
        raise _RootReached(tag, attrib)

    def close(self) -> None:
        return None


def _refuse_external_doctype(
    name: str, sysid: str | None, pubid: str | None, has_internal_subset: int
) -> None:
    if sysid is not None or pubid is not None:
        raise ExportError(
            "applehealth.unsafe_xml",
            "The file's DOCTYPE refers to an outside DTD; an export carries its DTD inline.",
        )


def _check_prolog(stream: IO[bytes], prog: Progress, chunk: int) -> list[bytes]:
    """Read up to the root element's start through defusedxml, refusing entity
    declarations, external references and an external DTD; return the bytes
    read, for the body's parser to start from."""
    vetting = DefusedXMLParser(
        target=_PrologTarget(),
        encoding="utf-8",
        forbid_dtd=False,
        forbid_entities=True,
        forbid_external=True,
    )
    vetting.parser.StartDoctypeDeclHandler = _refuse_external_doctype
    read: list[bytes] = []
    size = 0
    step = min(chunk, 64 * 1024)
    try:
        while True:
            data = stream.read(step)
            if not data:
                if size:
                    vetting.close()  # no root element: raises ParseError
                raise ExportError(
                    "applehealth.not_an_export",
                    "The file holds no XML element." if size else "The file is empty.",
                )
            read.append(data)
            size += len(data)
            prog.bytes_read = size
            vetting.feed(data)
            if size > MAX_PROLOG:
                raise ExportError(
                    "applehealth.not_an_export",
                    f"No root element in the first {MAX_PROLOG} bytes: not an export.xml.",
                )
    except _RootReached as root:
        if root.tag != "HealthData":
            raise ExportError(
                "applehealth.not_an_export",
                f"The XML's root element is <{root.tag[:40]}>, not <HealthData>: "
                "not an Apple Health export.",
            ) from None
        prog.locale = root.attrib.get("locale")
        return read
    except DefusedXmlException as exc:
        raise ExportError(
            "applehealth.unsafe_xml",
            f"The file declares entities or refers to outside resources ({type(exc).__name__}); "
            "an Apple Health export does neither, so it is refused.",
        ) from None
    except SyntaxError as exc:  # xml.etree's ParseError
        raise ExportError(
            "applehealth.malformed", f"The file is not well-formed XML: {exc}"
        ) from None


# --- the body: lxml, no tree, samples made at each top-level element's start -------------


_fromiso = datetime.fromisoformat
_isfinite = math.isfinite


def _when(s: str) -> datetime:
    """``2024-01-02 08:15:00 +0800`` -> an aware datetime, its own offset kept.
    Python 3.11's ``fromisoformat`` reads Apple's form as it is (the space before
    the offset is not ISO 8601); where it does not, the space is taken out."""
    try:
        t = _fromiso(s)
    except ValueError:
        if len(s) != 25 or s[19] != " ":
            raise
        t = _fromiso(s[:19] + s[20:])
    if t.tzinfo is None:
        raise ValueError("no offset")
    return t


# Apple writes every date as "YYYY-MM-DD HH:MM:SS +HHMM" (25 characters). The
# import (``read_export_columns``) wants epoch seconds, not datetimes, and reads
# the dates of a chunk's records at once on arrays (``_epochs``): each digit as
# a number, the fields checked against their ranges, the epoch seconds from the
# civil date. A date not in that form, or outside the ranges checked, goes
# through ``_when`` itself, so the result (or the refusal) is always
# ``_when(s).timestamp()``'s (a property test holds it to that).
_FORM = "0000-00-00 00:00:00 +0000"
# per character of the form: its lowest byte and how far above it may go (a
# digit 0-9, a mark exactly, the offset's sign "+" to "-"), and a NUL after
# (NULs to 32 bytes, so that a row is read as four 64-bit words)
_LOW_BYTES = bytes([*(ord(ch) for ch in _FORM), *[0] * 7])
_SPAN_BYTES = bytes([*(9 if ch == "0" else 2 if ch == "+" else 0 for ch in _FORM), *[0] * 7])
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# numpy is imported where it is first needed (``_epochs`` and ``settle``, in
# the process that stores): the reader process (applehealth_child) parses
# without it, and is lighter by its 13 MB.


def _epochs(xs: list[Any]) -> tuple[npt.NDArray[np.float64], list[int]]:
    """Epoch seconds (``datetime.timestamp()``) of Apple's date strings, a float
    passed as it is and None as NaN; and the positions of the strings that are
    not dates (``_when`` refuses them; NaN there)."""
    import numpy as np

    n = len(xs)
    out = np.full(n, math.nan)
    if not n:
        return out, []
    try:  # a byte per character; a longer string leaves a non-NUL 26th
        c = np.array(xs, dtype="S32").view(np.uint8).reshape(n, 32)
    except (TypeError, ValueError):  # not ASCII (UnicodeEncodeError), not text
        c = np.zeros((n, 32), np.uint8)
    # bytes wrap: below the lowest is above the span
    low = np.frombuffer(_LOW_BYTES, np.uint8)
    span = np.frombuffer(_SPAN_BYTES, np.uint8)
    off = ((c - low) > span).view(np.uint64)  # four words a row, 0 where all is well
    ok = (off[:, 0] | off[:, 1] | off[:, 2] | off[:, 3]) == 0
    ok &= c[:, 20] != ord(",")  # between "+" and "-"
    v = c.T.astype(np.int64) - ord("0")  # a row per character: contiguous

    def num(i: int, j: int) -> npt.NDArray[np.int64]:
        x = v[i]
        for k in range(i + 1, j):
            x = x * 10 + v[k]
        return x

    year, month, day = num(0, 4), num(5, 7), num(8, 10)
    hour, minute, second = num(11, 13), num(14, 16), num(17, 19)
    zh, zm = num(21, 23), num(23, 25)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok &= (year >= 1000) & (month >= 1) & (month <= 12) & (day >= 1)
    ok &= day <= np.array(_MONTH_DAYS)[np.where(ok, month, 1)] + ((month == 2) & leap)
    ok &= (hour < 24) & (minute < 60) & (second < 60) & (zh < 24) & (zm < 60)
    # days since 1970-01-01 of the civil date (proleptic Gregorian)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    sign = np.where(c[:, 20] == ord("-"), -1, 1)  # "+" or "-" where ok
    t = days * 86_400 + hour * 3600 + minute * 60 + second - sign * (zh * 3600 + zm * 60)
    out[ok] = t[ok]
    bad: list[int] = []
    for i in np.flatnonzero(~ok).tolist():
        x = xs[i]
        if x is None:
            continue
        if isinstance(x, float):
            out[i] = x
            continue
        try:
            out[i] = _when(x).timestamp()
        except ValueError:
            bad.append(i)
    return out, bad


def _number(v: str) -> float:
    f = float(v)
    if not _isfinite(f):
        raise ValueError("not finite")
    return f


# BLAKE2b-128 before any input: a copy of it is cheaper than a new one
_RID = blake2b(digest_size=16).copy


def _rid(key: str) -> str:
    """A record id: BLAKE2b-128 of the record's identifying fields, in hex."""
    h = _RID()
    h.update(key.encode())
    return h.hexdigest()


BAD = (ValueError, TypeError, KeyError)


def _quantity_fields(
    kind: str, q: tuple[str, bool], a: dict[str, str]
) -> tuple[str, bool, float, str | None, str, str, str, str]:
    """A quantity record's fields as both readers use them (metric, whether it
    has an end, value, unit, start and end as written, source, and the text its
    record id is the digest of); raises one of ``BAD`` for a record that is not
    one."""
    v = a["value"]
    value = float(v)
    if not _isfinite(value):
        raise ValueError(v)
    unit = a.get("unit")
    s = a["startDate"]
    e = a["endDate"]
    src = a["sourceName"]
    metric, interval = q
    if kind == SPO2 and unit == "%" and value <= 1.0:
        value = round(value * 100, 6)  # HealthKit keeps SpO2 as a fraction
    return (
        metric,
        interval,
        value,
        unit,
        s,
        e,
        src,
        f"{kind}\x1f{src}\x1f{s}\x1f{e}\x1f{v}\x1f{unit or ''}",
    )


class _Body:
    """lxml's parser target: called at each element's start and end; it builds no
    tree. A top-level ``Record`` is read at its start (its attributes are all
    there); a blood-pressure ``Correlation`` at its end, once its two records
    have come. Counters are plain attributes here (the hot path) and copied to
    the ``Progress`` after each chunk (``sync``)."""

    __slots__ = ("add", "corr", "depth", "inner", "invalid", "prog", "records", "skipped")

    def __init__(self, prog: Progress, out: list[Sample]) -> None:
        self.prog = prog
        self.add = out.append
        self.depth = 0
        self.records = 0
        self.skipped: dict[str, int] = {}
        self.invalid: dict[str, int] = {}
        self.corr: dict[str, str] | None = None  # an open blood-pressure Correlation
        self.inner: list[dict[str, str]] = []  # and its Records

    def sync(self) -> None:
        p = self.prog
        p.records = self.records
        # new counters, not updated ones: a reader in another thread (an API
        # reporting the import) sees the old ones or the new, never one mid-change
        p.skipped = Counter(self.skipped)
        p.invalid = Counter(self.invalid)

    def _skip(self, kind: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1

    def _invalid(self, kind: str) -> None:
        self.invalid[kind] = self.invalid.get(kind, 0) + 1

    def start(self, tag: str, a: dict[str, str]) -> None:
        depth = self.depth
        self.depth = depth + 1
        if depth != 1:
            if depth == 2 and tag == "Record" and self.corr is not None:
                self.inner.append(a)
            return
        if tag != "Record":
            self._other(tag, a)
            return
        self.records += 1
        kind = a.get("type") or "Record"
        q = QUANTITIES.get(kind)
        if q is None:
            if kind == SLEEP:
                self._sleep(a)
            elif kind == FALLEN:
                self._falls(a)
            else:
                self._skip(kind)
            return
        self._quantity(kind, q, a)  # nine in ten of the records read

    def _quantity(self, kind: str, q: tuple[str, bool], a: dict[str, str]) -> None:
        try:
            metric, interval, value, unit, s, e, src, key = _quantity_fields(kind, q, a)
            self.add(
                {
                    "metric": metric,
                    "start": _when(s),
                    "end": _when(e) if interval else None,
                    "value": value,
                    "values": None,
                    "unit": UNITS.get(unit, unit) if unit is not None else None,
                    "stage": None,
                    "source": src,
                    "record_id": _rid(key),
                }
            )
        except BAD:
            self._invalid(kind)

    def end(self, tag: str) -> None:
        self.depth -= 1
        if self.depth == 1 and self.corr is not None:
            self._blood_pressure(self.corr, self.inner)
            self.corr = None
            self.inner = []

    def close(self) -> None:
        return None

    def _other(self, tag: str, a: dict[str, str]) -> None:
        if tag == "Correlation":
            self.records += 1
            kind = a.get("type") or tag
            if kind == BLOOD_PRESSURE:
                self.corr = a
                self.inner = []
            else:
                self._skip(kind)
        elif tag == "ExportDate":
            try:
                self.prog.export_date = _when(a["value"])
            except BAD:
                pass
        elif tag != "Me":  # Me: the person's characteristics, not read
            self.records += 1
            self._skip(tag)

    @staticmethod
    def _key(kind: str, a: dict[str, str]) -> str:
        return "\x1f".join(
            (kind, a["sourceName"], a["startDate"], a["endDate"], a["value"], a.get("unit") or "")
        )

    def _sleep(self, a: dict[str, str]) -> None:
        try:
            self.add(
                {
                    "metric": "sleep",
                    "start": _when(a["startDate"]),
                    "end": _when(a["endDate"]),
                    "value": None,
                    "values": None,
                    "unit": None,
                    "stage": SLEEP_STAGES[a["value"]],
                    "source": a["sourceName"],
                    "record_id": _rid(self._key(SLEEP, a)),
                }
            )
        except BAD:
            self._invalid(SLEEP)

    def _falls(self, a: dict[str, str]) -> None:
        """A fall is an event with no value; a record counting n falls is n events."""
        try:
            n = _number(a["value"])
            if n != int(n) or n < 0 or n > MAX_FALLS_PER_RECORD:
                raise ValueError("not a count of falls")
            start = _when(a["startDate"])
            _when(a["endDate"])
            rid = _rid(self._key(FALLEN, a))
            source = a["sourceName"]
        except BAD:
            self._invalid(FALLEN)
            return
        if n == 0:
            self._skip(FALLEN)  # a record saying that no fall happened
            return
        for k in range(int(n)):
            self.add(
                {
                    "metric": "fall",
                    "start": start,
                    "end": None,
                    "value": None,
                    "values": None,
                    "unit": None,
                    "stage": None,
                    "source": source,
                    "record_id": rid if k == 0 else f"{rid}.{k}",
                }
            )

    def _blood_pressure(self, c: dict[str, str], inner: list[dict[str, str]]) -> None:
        try:
            (sys_r,) = [r for r in inner if r.get("type") == SYSTOLIC]
            (dia_r,) = [r for r in inner if r.get("type") == DIASTOLIC]
            unit = sys_r.get("unit")
            if dia_r.get("unit") != unit:
                raise ValueError("systolic and diastolic in different units")
            sys_key = self._key(SYSTOLIC, sys_r)  # the records' own fields, checked
            dia_key = self._key(DIASTOLIC, dia_r)
            self.add(
                {
                    "metric": "blood_pressure",
                    "start": _when(c["startDate"]),
                    "end": None,
                    "value": None,
                    "values": {
                        "systolic": _number(sys_r["value"]),
                        "diastolic": _number(dia_r["value"]),
                    },
                    "unit": unit,
                    "stage": None,
                    "source": c["sourceName"],
                    "record_id": _rid(
                        "\x1f".join((BLOOD_PRESSURE, c["sourceName"], c["startDate"], c["endDate"]))
                        + f"\x1e{sys_key}\x1e{dia_key}"
                    ),
                }
            )
        except BAD:
            self._invalid(BLOOD_PRESSURE)


def _body_parser(body: _Body) -> etree.XMLParser:
    return etree.XMLParser(
        target=body,
        encoding="utf-8",
        # "internal": the five predefined entities read as the characters they
        # stand for (off, libxml2 hands "&amp;" in an attribute over as "&#38;");
        # no other entity can be declared (the prolog check), and external
        # ones are never resolved
        resolve_entities="internal",
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
    )


def _feed(parser: etree.XMLParser, data: bytes) -> None:
    try:
        parser.feed(data)
    except etree.XMLSyntaxError as exc:
        raise ExportError(
            "applehealth.malformed", f"The file is not well-formed XML: {exc}"
        ) from None


def _close(parser: etree.XMLParser) -> None:
    try:
        parser.close()
    except etree.XMLSyntaxError as exc:
        raise ExportError(
            "applehealth.malformed", f"The file ends before its XML does (cut short?): {exc}"
        ) from None


def _parse(
    stream: IO[bytes], prog: Progress, on_progress: OnProgress | None, chunk: int
) -> Iterator[Sample]:
    head = _check_prolog(stream, prog, chunk)
    out: list[Sample] = []
    body = _Body(prog, out)
    parser = _body_parser(body)
    for data in head:
        _feed(parser, data)
    while True:
        body.sync()
        if out:
            yield from out
            prog.samples += len(out)
            out.clear()
        if on_progress is not None:
            on_progress(prog)
        data = stream.read(chunk)
        if not data:
            break
        prog.bytes_read += len(data)
        _feed(parser, data)
    _close(parser)
    body.sync()
    if out:
        yield from out
        prog.samples += len(out)
        out.clear()


# --- the same samples as columns, for an import into the store --------------------------------


NAN = math.nan


@dataclass
class SampleColumns:
    """A batch of samples as parallel lists (the ``Sample`` fields), what
    ``read_export_columns`` yields: the same samples as ``read_export``'s, in
    the same order, with the times as epoch seconds (``datetime.timestamp()``
    of ``Sample.start`` / ``Sample.end``; NaN where ``end`` is None)."""

    metric: list[str]
    start: list[float]
    end: list[float]
    value: list[float | None]
    values: list[dict[str, float] | None]
    unit: list[str | None]
    stage: list[str | None]
    source: list[str]
    record_id: list[str]

    def __len__(self) -> int:
        return len(self.metric)


# metric, start, end, value, unit, source, record id; the times as written (a
# quantity's, read by ``settle``) or as epoch seconds (sleep, falls, blood pressure)
Row = tuple[str, str | float, str | float | None, float | None, str | None, str, str]
_KIND_OF_METRIC = {metric: kind for kind, (metric, _) in QUANTITIES.items()}


class _ColumnBody(_Body):
    """``_Body`` holding each sample as a row instead of a dict (a stage or
    values aside, by position): the quantities (nine records in ten) are read
    inline with their dates kept as written, and read for all the records of a
    chunk at once (``settle``, after each chunk fed); sleep, falls and blood
    pressure are read by ``_Body``'s own code and their dicts made rows (``_put``)."""

    __slots__ = ("rows", "stages", "t0", "t1", "values")

    def __init__(self, prog: Progress) -> None:
        super().__init__(prog, [])
        self.add = self._put
        self.rows: list[Row] = []
        self.t0: list[float] = []  # epoch seconds of the rows settled
        self.t1: list[float] = []  # NaN: no end
        # by position: nearly every sample has neither
        self.stages: dict[int, str] = {}
        self.values: dict[int, dict[str, float]] = {}

    def __len__(self) -> int:
        """The samples settled (read whole)."""
        return len(self.t0)

    def settle(self) -> None:
        """Read the dates of the rows added since the last call; a record whose
        date is not a date is unusable (counted in ``invalid``, as ``_Body``
        counts it) and its row goes."""
        import numpy as np

        base = len(self.t0)
        new = self.rows[base:]
        if not new:
            return
        t0, bad0 = _epochs([r[1] for r in new])
        t1, bad1 = _epochs([r[2] for r in new])
        if bad0 or bad1:
            bad = sorted(set(bad0) | set(bad1))
            for i in bad:
                self._invalid(_KIND_OF_METRIC[new[i][0]])
            for i in reversed(bad):
                del self.rows[base + i]
            t0, t1 = np.delete(t0, bad), np.delete(t1, bad)
            # a stage or values is a later row's (those rows' dates are read)
            gone = np.array(bad) + base
            self.stages = {int(i - np.searchsorted(gone, i)): x for i, x in self.stages.items()}
            self.values = {int(i - np.searchsorted(gone, i)): y for i, y in self.values.items()}
        self.t0.extend(t0.tolist())
        self.t1.extend(t1.tolist())

    def cut(self, n: int) -> SampleColumns:
        """The first ``n`` samples settled (all when fewer), taken out."""
        n = min(n, len(self.t0))
        rows = self.rows[:n]
        start, end = self.t0[:n], self.t1[:n]
        del self.rows[:n], self.t0[:n], self.t1[:n]
        stage: list[str | None] = [None] * n
        values: list[dict[str, float] | None] = [None] * n
        if self.stages:
            left: dict[int, str] = {}
            for i, x in self.stages.items():
                if i < n:
                    stage[i] = x
                else:
                    left[i - n] = x
            self.stages = left
        if self.values:
            rest: dict[int, dict[str, float]] = {}
            for i, y in self.values.items():
                if i < n:
                    values[i] = y
                else:
                    rest[i - n] = y
            self.values = rest
        if not rows:
            return SampleColumns([], [], [], [], [], [], [], [], [])
        # column by column (zip(*rows) would make an iterator per row)
        metric, value, unit, source, record_id = (
            list(map(itemgetter(k), rows)) for k in (0, 3, 4, 5, 6)
        )
        return SampleColumns(metric, start, end, value, values, unit, stage, source, record_id)

    def drop_after(self, n: int) -> None:
        """Forget the samples after the first ``n`` settled (read from a chunk
        that then failed: ``read_export`` never yields those either)."""
        del self.rows[n:], self.t0[n:], self.t1[n:]
        self.stages = {i: x for i, x in self.stages.items() if i < n}
        self.values = {i: y for i, y in self.values.items() if i < n}

    def _put(self, x: Sample) -> None:
        i = len(self.rows)
        end = x["end"]
        self.rows.append(
            (
                x["metric"],
                x["start"].timestamp(),
                NAN if end is None else end.timestamp(),
                x["value"],
                x["unit"],
                x["source"],
                x["record_id"],
            )
        )
        if x["stage"] is not None:
            self.stages[i] = x["stage"]
        if x["values"] is not None:
            self.values[i] = x["values"]

    def _quantity(self, kind: str, q: tuple[str, bool], a: dict[str, str]) -> None:
        # _Body's, the dates left to ``settle``
        try:
            metric, interval, value, unit, s, e, src, key = _quantity_fields(kind, q, a)
            h = _RID()  # _rid, inline
            h.update(key.encode())
            rid = h.hexdigest()
        except BAD:
            self._invalid(kind)
            return
        self.rows.append(
            (
                metric,
                s,
                e if interval else None,
                value,
                UNITS.get(unit, unit) if unit is not None else None,
                src,
                rid,
            )
        )


def read_export_columns(
    source: Source,
    *,
    batch: int,
    progress: Progress | None = None,
    on_progress: OnProgress | None = None,
    chunk: int = CHUNK,
) -> Generator[SampleColumns, None, None]:
    """``read_export``'s samples in batches of ``batch`` (the last one smaller)
    as :class:`SampleColumns`, for an import that stores them by batches: no
    dict and no datetime per sample. The same samples in the same order, the
    same progress (``progress.samples`` counts the samples of the batches
    yielded), the same errors: a file cut short raises ``ExportError`` after
    the batch of every sample ``read_export`` would have yielded before it."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    prog = progress if progress is not None else Progress()
    with _open(source) as (stream, total):
        prog.bytes_total = total
        head = _check_prolog(stream, prog, chunk)
        body = _ColumnBody(prog)
        parser = _body_parser(body)

        def feed(data: bytes) -> Iterator[SampleColumns]:
            held = len(body)
            try:
                _feed(parser, data)
            except ExportError:
                body.drop_after(held)
                if held:
                    yield from take(held)
                raise
            body.settle()
            while len(body) >= batch:
                yield from take(batch)

        def take(n: int) -> Iterator[SampleColumns]:
            out = body.cut(n)
            body.sync()
            prog.samples += len(out)
            yield out

        for data in head:  # read_export yields nothing when the prolog's end fails
            _feed(parser, data)
        body.settle()
        while len(body) >= batch:
            yield from take(batch)
        while True:
            body.sync()
            if on_progress is not None:
                on_progress(prog)
            data = stream.read(chunk)
            if not data:
                break
            prog.bytes_read += len(data)
            yield from feed(data)
        held = len(body)
        try:
            _close(parser)
        except ExportError:
            body.drop_after(held)
            if held:
                yield from take(held)
            raise
        body.settle()
        body.sync()
        if len(body):
            yield from take(len(body))
    prog.done = True
    if on_progress is not None:
        on_progress(prog)
