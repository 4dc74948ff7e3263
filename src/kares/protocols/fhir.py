"""FHIR R4 Observations: health samples out (a person's export, the rights
archive) and in (a Bundle from a hospital portal, a FHIR server's search, a
Synthea record).

It speaks in the neutral health sample of issue 15, a plain dict::

    {"metric": "heart_rate", "start": datetime, "end": None, "value": 72,
     "values": None, "unit": "/min", "stage": None, "source": "Apple Watch",
     "record_id": "..."}

and imports nothing from a Kares domain: the health domain calls it.

Every resource is built and read through the models of ``fhir.resources``
(constructing one validates it). That library's models for the R4 line live in
``fhir.resources.R4B`` (FHIR 4.3.0); true 4.0.1 models exist only in
``fhir.resources`` 6.4 and older, written for pydantic 1, which this project
cannot load. R4B changed no element of Observation, Bundle or the datatypes
used here (Coding, CodeableConcept, Quantity, Period, Reference, Identifier,
Meta), so what is written here is R4 Observation JSON and what R4 systems send
reads through the same models; docs/HEALTH_FHIR.md says how that was checked.

Export follows the R4 vital-signs profile where a metric has one (heart rate,
oxygen saturation, blood pressure, body temperature, body weight) and names
that profile in ``meta.profile``. Import maps by LOINC code, passes the unit on
as the source wrote it (the domain converts), and reports every Observation it
does not take with a stable reason code instead of failing the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timezone
from decimal import Decimal
from typing import Any, Final

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from kares import jsonread
from kares.errors import Problem

FHIR_VERSION: Final = "4.0.1"
"""The FHIR release whose Observation JSON this module writes and reads."""

LOINC: Final = "http://loinc.org"
LOINC_OID: Final = "urn:oid:2.16.840.1.113883.6.1"  # LOINC as some systems name it
UCUM: Final = "http://unitsofmeasure.org"
CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
CATEGORY_DISPLAY: Final = {"vital-signs": "Vital Signs", "activity": "Activity"}

# Kares' own code systems, for what LOINC has no code for (see docs/HEALTH_FHIR.md).
METRIC_SYSTEM: Final = "urn:kares:fhir:health-metric"
SLEEP_STAGE_SYSTEM: Final = "urn:kares:fhir:sleep-stage"
RECORD_ID_SYSTEM: Final = "urn:kares:fhir:source-record-id"

PROFILE_BASE: Final = "http://hl7.org/fhir/StructureDefinition/"

MAX_ENTRIES: Final = 200_000
"""Entries one Bundle may carry; more is refused before any is read."""

PER_BUNDLE: Final = 5_000
"""Observations per Bundle file when an archive splits a long history."""

SLEEP_STAGES: Final = {
    "in_bed": "In bed",
    "awake": "Awake",
    "asleep_core": "Asleep, core (light) sleep",
    "asleep_deep": "Asleep, deep sleep",
    "asleep_rem": "Asleep, REM sleep",
    "asleep_unspecified": "Asleep, stage not specified",
}

SKIP_STATUSES: Final = frozenset({"entered-in-error", "cancelled", "registered"})
KNOWN_STATUSES: Final = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled"}
    | {"entered-in-error", "unknown"}
)

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NAMESPACE = uuid.UUID("6f1d8a52-3c0e-5b8e-9d7a-1f2e4c6b8a90")


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class Metric:
    """How one metric is written as an Observation."""

    key: str
    kind: str  # "instant" | "interval" | "event" | "interval_event" | "panel" | "sleep"
    codes: tuple[Code, ...]  # the codings written, the first one the main
    text: str
    category: str | None  # observation-category code, or None
    profile: str | None  # the R4 vital-signs profile it claims, or None
    ucum: str | None  # the canonical UCUM code written on export
    accepted_units: frozenset[str] = frozenset()  # units read on import (SAMPLE.md)


def _loinc(code: str, display: str) -> Code:
    return Code(LOINC, code, display)


HEART_UNITS = frozenset({"/min", "count/min", "bpm"})
METRICS: Final[dict[str, Metric]] = {
    m.key: m
    for m in (
        Metric(
            "steps",
            "interval",
            (_loinc("55423-8", "Number of steps in unspecified time Pedometer"),),
            "Steps",
            "activity",
            None,
            "{steps}",
            frozenset({"{steps}", "count"}),
        ),
        Metric(
            "distance",
            "interval",
            (_loinc("55430-3", "Distance walked in unspecified time Pedometer"),),
            "Distance walked",
            "activity",
            None,
            "m",
            frozenset({"m", "km", "mi", "[mi_i]"}),
        ),
        Metric(
            "active_energy",
            "interval",
            (_loinc("41981-2", "Calories burned"),),
            "Active energy burned",
            "activity",
            None,
            "kcal",
            frozenset({"kcal", "kJ", "Cal"}),
        ),
        Metric(
            "heart_rate",
            "instant",
            (_loinc("8867-4", "Heart rate"),),
            "Heart rate",
            "vital-signs",
            "heartrate",
            "/min",
            HEART_UNITS,
        ),
        Metric(
            "resting_heart_rate",
            "instant",
            (_loinc("40443-4", "Heart rate --resting"),),
            "Resting heart rate",
            "vital-signs",
            None,
            "/min",
            HEART_UNITS,
        ),
        Metric(
            "spo2",
            "instant",
            (
                _loinc("2708-6", "Oxygen saturation in Arterial blood"),
                _loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
            ),
            "Oxygen saturation (SpO2)",
            "vital-signs",
            "oxygensat",
            "%",
            frozenset({"%"}),
        ),
        Metric(
            "blood_pressure",
            "panel",
            (_loinc("85354-9", "Blood pressure panel with all children optional"),),
            "Blood pressure",
            "vital-signs",
            "bp",
            "mm[Hg]",
            frozenset({"mm[Hg]", "mmHg"}),
        ),
        Metric(
            "body_temperature",
            "instant",
            (_loinc("8310-5", "Body temperature"),),
            "Body temperature",
            "vital-signs",
            "bodytemp",
            "Cel",
            frozenset({"Cel", "degF", "[degF]", "°F"}),
        ),
        Metric(
            "weight",
            "instant",
            (_loinc("29463-7", "Body weight"),),
            "Body weight",
            "vital-signs",
            "bodyweight",
            "kg",
            frozenset({"kg", "lb", "[lb_av]"}),
        ),
        Metric(
            "sleep",
            "sleep",
            (Code(METRIC_SYSTEM, "sleep", "Sleep stage over a period"),),
            "Sleep",
            "activity",
            None,
            None,
        ),
        Metric(
            "fall",
            "event",
            (Code(METRIC_SYSTEM, "fall", "Fall detected by a device"),),
            "Fall",
            None,
            None,
            None,
        ),
        Metric(
            "wrist_off",
            "interval_event",
            (Code(METRIC_SYSTEM, "wrist_off", "Watch off the wrist"),),
            "Watch off the wrist",
            None,
            None,
            None,
        ),
    )
}

SYSTOLIC: Final = _loinc("8480-6", "Systolic blood pressure")
DIASTOLIC: Final = _loinc("8462-4", "Diastolic blood pressure")
SLEEP_DURATION: Final = _loinc("93832-4", "Sleep duration")

# What import reads: (system, code) -> metric. The written codes, and the codes
# other systems commonly use for the same thing.
_READ: dict[tuple[str, str], str] = {}
for _m in METRICS.values():
    for _c in _m.codes:
        _READ[(_c.system, _c.code)] = _m.key
_READ.update(
    {
        (LOINC, "41953-1"): "distance",  # used by several Apple Health → FHIR mappers
        (LOINC, "41950-7"): "steps",  # Number of steps in 24 hour Measured
        (LOINC, "3141-9"): "weight",  # Body weight Measured
        (LOINC, "55284-4"): "blood_pressure",  # the older BP panel (older Synthea)
        (LOINC, SLEEP_DURATION.code): "sleep",  # a duration: read as asleep_unspecified
    }
)
# A coding naming the more specific metric wins over the generic one
# (resting heart rate is often sent with both 40443-4 and 8867-4).
_MORE_SPECIFIC = {"resting_heart_rate": "heart_rate"}


# ---------------------------------------------------------------- errors


class FhirError(Problem):
    """A FHIR document that cannot be read as a whole. ``code`` is stable:

    - ``fhir.json_invalid`` (400): not JSON, or JSON that is not an object
    - ``fhir.not_bundle`` (422): a resource other than a Bundle or an Observation
    - ``fhir.bundle_invalid`` (422): a Bundle the FHIR models refuse (its
      envelope: type, entries)
    - ``fhir.bundle_too_large`` (413): more than ``MAX_ENTRIES`` entries
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status, code, detail)


class FhirExportError(ValueError):
    """A sample that cannot be written as an Observation (a caller's mistake:
    an unknown metric, a naive time, a missing value)."""


# ---------------------------------------------------------------- export


def _iso(t: Any, what: str) -> str:
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FhirExportError(f"{what}: {t!r} is not an ISO 8601 time") from exc
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise FhirExportError(f"{what}: an aware datetime is needed, got {t!r}")
    s = t.isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def _number_out(v: Any, what: str) -> int | float:
    """A JSON number (FHIR's decimal is written from its shortest repr)."""
    if isinstance(v, bool) or not isinstance(v, int | float | Decimal):
        raise FhirExportError(f"{what}: a number is needed, got {v!r}")
    if isinstance(v, Decimal):
        if not v.is_finite():
            raise FhirExportError(f"{what}: {v!r} is not a finite number")
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise FhirExportError(f"{what}: {v!r} is not a finite number")
    return v


# Units among those accepted that are UCUM codes; another unit (``bpm``, ``lb``)
# is written as the quantity's human ``unit`` alone, never as a UCUM code.
UCUM_CODES: Final = frozenset(
    {"/min", "%", "mm[Hg]", "Cel", "[degF]", "kg", "g", "[lb_av]", "m", "km", "[mi_i]"}
    | {"kcal", "kJ", "{steps}", "min"}
)


def _quantity(value: Any, unit: str, what: str) -> dict[str, Any]:
    q: dict[str, Any] = {"value": _number_out(value, what), "unit": unit}
    if unit in UCUM_CODES:
        q |= {"system": UCUM, "code": unit}
    return q


_ODD_SPACE = re.compile(r"[^\S \r\n\t]")


def _text(s: str) -> str:
    """A FHIR string: whitespace other than space, tab and line breaks (a form
    feed, a no-break space) is not allowed there and is written as a space, so
    one odd device name cannot stop a person's export."""
    return _ODD_SPACE.sub(" ", s)


def _patient_ref(patient: str) -> dict[str, str]:
    if not isinstance(patient, str) or not _ID.fullmatch(patient):
        raise FhirExportError(
            "patient: an opaque id of 1-64 letters, digits, '-' or '.' is needed "
            "(a FHIR resource id)"
        )
    return {"reference": f"Patient/{patient}"}


def observation_id(patient: str, sample: Mapping[str, Any]) -> str:
    """The Observation's id: the same sample of the same person always gets the
    same id (a re-export replaces rather than duplicates on a FHIR server)."""
    key = "\x1f".join(
        str(x)
        for x in (
            patient,
            sample.get("metric"),
            sample.get("source"),
            sample.get("record_id"),
            sample.get("start"),
        )
    )
    return str(uuid.uuid5(_NAMESPACE, key))


def _unit(sample: Mapping[str, Any], metric: Metric) -> str:
    unit = sample.get("unit") or metric.ucum
    if not isinstance(unit, str) or not unit:
        raise FhirExportError(f"{metric.key}: a unit is needed")
    return unit


def observation(sample: Mapping[str, Any], patient: str) -> Observation:
    """One sample as a validated R4 Observation about ``Patient/{patient}``.

    ``patient`` is an opaque id; nothing else about the person is written. The
    unit is written as the sample carries it (the store keeps canonical UCUM
    units, so an export from it carries ``/min``, ``kg``, ``Cel``...); a sample
    with no unit is taken to be in the metric's canonical unit."""
    return _build(sample, patient)[1]


def _build(sample: Mapping[str, Any], patient: str) -> tuple[dict[str, Any], Observation]:
    """The Observation's JSON object and its model: the model validated that
    very object, so the object is written as it stands (serialising through the
    model again would cost three times the validation)."""
    key = sample.get("metric")
    metric = METRICS.get(key) if isinstance(key, str) else None
    if metric is None:
        raise FhirExportError(f"unknown metric {key!r}")
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id(patient, sample),
        "status": "final",
        "code": {"coding": [c.coding() for c in metric.codes], "text": metric.text},
        "subject": _patient_ref(patient),
    }
    if metric.profile:
        res["meta"] = {"profile": [PROFILE_BASE + metric.profile]}
    if metric.category:
        shown = CATEGORY_DISPLAY[metric.category]
        coding = {"system": CATEGORY_SYSTEM, "code": metric.category, "display": shown}
        res["category"] = [{"coding": [coding], "text": shown}]
    record_id = sample.get("record_id")
    if record_id is not None:
        if not isinstance(record_id, str) or not record_id:
            raise FhirExportError("record_id: a non-empty string is needed")
        res["identifier"] = [{"system": RECORD_ID_SYSTEM, "value": _text(record_id)}]
    source = sample.get("source")
    if source is not None:
        if not isinstance(source, str):
            raise FhirExportError("source: a string is needed")
        if source.strip():
            res["device"] = {"display": _text(source)}

    start = _iso(sample.get("start"), f"{metric.key}.start")
    if metric.kind in ("interval", "interval_event", "sleep"):
        end = _iso(sample.get("end"), f"{metric.key}.end")
        res["effectivePeriod"] = {"start": start, "end": end}
    else:
        res["effectiveDateTime"] = start

    if metric.kind in ("instant", "interval"):
        res["valueQuantity"] = _quantity(sample.get("value"), _unit(sample, metric), metric.key)
    elif metric.kind == "panel":
        values = sample.get("values")
        if not isinstance(values, Mapping):
            raise FhirExportError("blood_pressure: values {systolic, diastolic} are needed")
        unit = _unit(sample, metric)
        res["component"] = [
            {
                "code": {"coding": [part.coding()], "text": part.display},
                "valueQuantity": _quantity(values.get(name), unit, f"blood_pressure.{name}"),
            }
            for name, part in (("systolic", SYSTOLIC), ("diastolic", DIASTOLIC))
        ]
    elif metric.kind == "sleep":
        stage = sample.get("stage")
        if stage not in SLEEP_STAGES:
            raise FhirExportError(f"sleep: unknown stage {stage!r}")
        res["valueCodeableConcept"] = {
            "coding": [
                {"system": SLEEP_STAGE_SYSTEM, "code": stage, "display": SLEEP_STAGES[stage]}
            ],
            "text": SLEEP_STAGES[stage],
        }
        minutes = (_aware(res["effectivePeriod"]["end"]) - _aware(start)).total_seconds() / 60
        if minutes < 0:
            raise FhirExportError("sleep: the end is before the start")
        res["component"] = [
            {
                "code": {"coding": [SLEEP_DURATION.coding()], "text": SLEEP_DURATION.display},
                "valueQuantity": _quantity(round(minutes, 3), "min", "sleep.duration"),
            }
        ]
    try:
        return res, Observation.model_validate(res)
    except ValidationError as exc:
        raise FhirExportError(f"{metric.key}: the FHIR model refuses it: {_first(exc)}") from exc


def _aware(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def observations(samples: Iterable[Mapping[str, Any]], patient: str) -> Iterator[Observation]:
    for s in samples:
        yield observation(s, patient)


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def observation_json(sample: Mapping[str, Any], patient: str) -> str:
    return _dumps(_build(sample, patient)[0])


def bundle_json(
    samples: Iterable[Mapping[str, Any]], patient: str, *, timestamp: datetime | None = None
) -> bytes:
    """A validated R4 Bundle (type ``collection``) of the samples' Observations,
    each entry with a ``urn:uuid:`` fullUrl, as JSON bytes: what the rights
    archive carries. Each Observation is validated by the models as it is
    built, the envelope (type, timestamp, entries' fullUrls) on its own."""
    entries = []
    for s in samples:
        res, _ = _build(s, patient)
        entries.append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res})
    doc: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    if timestamp is not None:
        doc["timestamp"] = _iso(timestamp, "timestamp")
    if entries:
        doc["entry"] = entries
    envelope = {**doc, "entry": [{"fullUrl": e["fullUrl"]} for e in entries]} if entries else doc
    try:
        Bundle.model_validate(envelope)
    except ValidationError as exc:  # pragma: no cover - our own envelope
        raise FhirExportError(f"Bundle: the FHIR model refuses it: {_first(exc)}") from exc
    return _dumps(doc).encode()


def bundle(
    samples: Iterable[Mapping[str, Any]], patient: str, *, timestamp: datetime | None = None
) -> Bundle:
    """The same Bundle as a model (read back from its JSON by the library)."""
    return Bundle.model_validate_json(bundle_json(samples, patient, timestamp=timestamp))


def bundles_json(
    samples: Iterable[Mapping[str, Any]],
    patient: str,
    *,
    per_bundle: int = PER_BUNDLE,
    timestamp: datetime | None = None,
) -> Iterator[bytes]:
    """The samples as Bundles of at most ``per_bundle`` Observations each, one
    after another, so a long history is never held whole (an archive writes one
    file per Bundle)."""
    if per_bundle < 1:
        raise ValueError("per_bundle must be at least 1")
    chunk: list[Mapping[str, Any]] = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == per_bundle:
            yield bundle_json(chunk, patient, timestamp=timestamp)
            chunk = []
    if chunk:
        yield bundle_json(chunk, patient, timestamp=timestamp)


# ---------------------------------------------------------------- import


@dataclass(frozen=True)
class Skipped:
    """An Observation not taken, and why. ``reason`` is stable:

    ``invalid`` (the FHIR models refuse it), ``status`` (entered-in-error,
    cancelled, registered or an unknown status), ``code_unknown``,
    ``code_ambiguous``, ``value_missing`` (no value, or a dataAbsentReason),
    ``value_invalid``, ``unit_not_accepted``, ``time_missing`` (no effective
    time, a date without a time, or an interval metric without a period),
    ``bp_incomplete`` (a panel without both components, or a systolic or
    diastolic alone), ``stage_unknown``, ``subject_other``.
    """

    index: int  # the entry's place in the Bundle (0 for a bare Observation)
    id: str | None  # the Observation's id, if it has one
    reason: str
    detail: str


@dataclass
class FhirImport:
    samples: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    other_resources: dict[str, int] = field(default_factory=dict)
    """Entries that are not Observations (Patient, Encounter...), counted by type."""
    subjects: set[str] = field(default_factory=set)
    """The subject references the Observations taken name (the caller decides
    whether a file about more than one subject is acceptable)."""


class _Skip(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _first(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False, include_input=False)
    if not errs:
        return str(exc)[:200]
    e = errs[0]
    loc = ".".join(str(p) for p in e.get("loc", ()))
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {e.get('msg', '')}"[:300] + more


def _parse(raw: bytes | bytearray | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        doc: Any = dict(raw)
    else:
        try:
            doc = jsonread.loads(raw)
        except ValueError as exc:
            raise FhirError(
                400, "fhir.json_invalid", f"This is not JSON that can be read ({exc})."
            ) from exc
    if not isinstance(doc, dict):
        raise FhirError(400, "fhir.json_invalid", "A FHIR resource is a JSON object.")
    return doc


def read(
    raw: bytes | bytearray | str | Mapping[str, Any],
    *,
    default_source: str = "FHIR",
    subject: str | None = None,
) -> FhirImport:
    """Samples from a FHIR R4 Bundle of Observations (any Bundle type: a
    collection, a server's searchset, a Synthea transaction), or from a bare
    Observation.

    Entries that are not Observations are counted, not read. An Observation is
    taken or listed in ``skipped`` with its reason; one bad Observation never
    fails the file. The whole file is refused (``FhirError``) only when it is
    not JSON, not a Bundle or Observation, or a Bundle the FHIR models refuse.

    ``default_source`` is the sample's source when the Observation names no
    device by name (``device.display``). With ``subject`` (a
    reference such as ``Patient/123``) Observations about another subject are
    skipped; without it the subjects seen are reported in ``subjects``.
    """
    doc = _parse(raw)
    rt = doc.get("resourceType")
    out = FhirImport()
    if rt == "Observation":
        _take(doc, 0, out, default_source, subject)
        return out
    if rt != "Bundle":
        shown = rt if isinstance(rt, str) else "no resourceType"
        raise FhirError(
            422,
            "fhir.not_bundle",
            f"Expected a FHIR Bundle or Observation, got {str(shown)[:64]!r}.",
        )
    entries = doc.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise FhirError(422, "fhir.bundle_invalid", "Bundle.entry must be a list.")
    entries = entries or []
    if len(entries) > MAX_ENTRIES:
        raise FhirError(
            413,
            "fhir.bundle_too_large",
            f"The Bundle has {len(entries)} entries; at most {MAX_ENTRIES} are read at once.",
        )
    # The envelope is validated by the models without the resources (those are
    # read one by one below, so one bad resource is one skipped entry).
    shell = {k: v for k, v in doc.items() if k != "entry"}
    if entries:
        shell["entry"] = [
            {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
            for e in entries
        ]
    try:
        Bundle.model_validate(shell)
    except ValidationError as exc:
        raise FhirError(
            422, "fhir.bundle_invalid", f"The Bundle is not valid FHIR: {_first(exc)}"
        ) from exc
    others: Counter[str] = Counter()
    for i, entry in enumerate(entries):
        if "resource" not in entry:
            continue  # a transaction-response or a deleted entry: nothing to read
        resource = entry["resource"]
        if not isinstance(resource, dict):
            out.skipped.append(Skipped(i, None, "invalid", "entry.resource is not an object"))
            continue
        rtype = resource.get("resourceType")
        if rtype != "Observation":
            others[str(rtype)[:64] if isinstance(rtype, str) else "?"] += 1
            continue
        _take(resource, i, out, default_source, subject)
    out.other_resources = dict(others)
    return out


def _take(
    res: dict[str, Any],
    index: int,
    out: FhirImport,
    default_source: str,
    subject: str | None,
) -> None:
    rid = res.get("id")
    rid = rid if isinstance(rid, str) else None
    try:
        try:
            obs = Observation.model_validate(res)
        except ValidationError as exc:
            raise _Skip("invalid", _first(exc)) from exc
        except (KeyError, TypeError, ValueError) as exc:
            # the library raises these for e.g. an unknown contained resource type
            raise _Skip("invalid", f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        # The models let a JSON null stand for a required element; FHIR does not.
        if obs.code is None or any(c.code is None for c in obs.component or []):
            raise _Skip("invalid", "code: an Observation (and each component) needs a code")
        ref = obs.subject.reference if obs.subject is not None else None
        if subject is not None and ref is not None and ref != subject:
            raise _Skip("subject_other", f"about {ref[:100]}, not {subject}")
        sample = _sample(obs, res, default_source)
    except _Skip as s:
        out.skipped.append(Skipped(index, rid, s.reason, s.detail))
        return
    if ref:
        out.subjects.add(ref)
    out.samples.append(sample)


def _metric_of(obs: Observation) -> tuple[str, str]:
    found: dict[str, str] = {}
    seen: list[str] = []
    for c in obs.code.coding or []:
        system = LOINC if c.system == LOINC_OID else c.system
        code = c.code or ""
        seen.append(f"{system or '?'}|{code}")
        key = _READ.get((system or "", code))
        if key is not None:
            found.setdefault(key, code)
    for specific, generic in _MORE_SPECIFIC.items():
        if specific in found:
            found.pop(generic, None)
    if not found:
        if (LOINC, SYSTOLIC.code) in _codings(obs) or (LOINC, DIASTOLIC.code) in _codings(obs):
            raise _Skip(
                "bp_incomplete",
                "a systolic or diastolic reading alone: a blood-pressure sample needs "
                "both, as components of one panel (85354-9)",
            )
        shown = ", ".join(seen[:3]) or (obs.code.text or "no coding")[:80]
        raise _Skip("code_unknown", f"no health metric for code {shown}")
    if len(found) > 1:
        raise _Skip("code_ambiguous", f"codes for several metrics: {sorted(found)}")
    key, code = next(iter(found.items()))
    return key, code


def _codings(obs: Observation) -> set[tuple[str, str]]:
    return {
        (LOINC if c.system == LOINC_OID else (c.system or ""), c.code or "")
        for c in obs.code.coding or []
    }


def _time(t: Any, what: str) -> datetime:
    if isinstance(t, datetime) and t.utcoffset() is not None:
        off = t.utcoffset()
        assert off is not None
        return t.replace(tzinfo=UTC if not off else timezone(off))
    if isinstance(t, date | str):
        raise _Skip("time_missing", f"{what} is {str(t)!r}, a date without a time of day")
    raise _Skip("time_missing", f"no {what}")


def _instant(obs: Observation) -> datetime:
    if obs.effectiveDateTime is not None:
        return _time(obs.effectiveDateTime, "effectiveDateTime")
    if obs.effectiveInstant is not None:
        return _time(obs.effectiveInstant, "effectiveInstant")
    if obs.effectivePeriod is not None and obs.effectivePeriod.start is not None:
        return _time(obs.effectivePeriod.start, "effectivePeriod.start")
    raise _Skip("time_missing", "no effective time")


def _period(obs: Observation) -> tuple[datetime, datetime]:
    p = obs.effectivePeriod
    if p is None or p.start is None or p.end is None:
        raise _Skip("time_missing", "an interval metric needs effectivePeriod with start and end")
    start = _time(p.start, "effectivePeriod.start")
    end = _time(p.end, "effectivePeriod.end")
    if end < start:
        raise _Skip("time_missing", "effectivePeriod ends before it starts")
    return start, end


def _number(v: Decimal | None, what: str) -> int | float:
    if v is None:
        raise _Skip("value_missing", f"{what} has no value")
    if not v.is_finite():
        raise _Skip("value_invalid", f"{what} is not a finite number")
    if v == v.to_integral_value() and abs(v) < 10**15:
        return int(v)
    f = float(v)
    if not math.isfinite(f):
        raise _Skip("value_invalid", f"{what} is out of range")
    return f


_ANNOTATION = re.compile(r"\{[^{}]*\}")


def _unit_of(q: Any, metric: Metric, what: str) -> str:
    """The unit as the source gave it: the UCUM code when the quantity is UCUM,
    else its human unit. Only quirks of the wire are normalised: a UCUM
    annotation (``{beats}/min`` is ``/min``; ``{steps}``, ``{count}`` and ``1``
    for a count of steps) carries no unit of its own."""
    code = q.code if q.system == UCUM and q.code else None
    unit = code or q.unit
    if metric.key == "steps":
        if unit is None or unit == "1" or (unit and _ANNOTATION.fullmatch(unit)):
            return "{steps}"
    if unit and metric.ucum == "/min" and _ANNOTATION.sub("", unit) == "/min":
        return "/min"
    if not unit:
        raise _Skip("unit_not_accepted", f"{what} has no unit")
    if unit not in metric.accepted_units:
        # the human unit may be one we accept where the code is not (or the reverse)
        if q.unit in metric.accepted_units:
            return str(q.unit)
        raise _Skip(
            "unit_not_accepted",
            f"{what}: unit {unit[:40]!r} is not one of {sorted(metric.accepted_units)}",
        )
    return unit


def _absent(obs_or_component: Any, what: str) -> None:
    dar = getattr(obs_or_component, "dataAbsentReason", None)
    if dar is not None:
        why = ", ".join((c.code or "?") for c in dar.coding or []) or dar.text or "?"
        raise _Skip("value_missing", f"{what}: data absent ({why[:60]})")


def _source(obs: Observation, default: str) -> str:
    # Not meta.source: servers fill it with their request id (HAPI's "#Xu2b..."),
    # which names no device and would split one source's records.
    if obs.device is not None and obs.device.display:
        return str(obs.device.display)[:200]
    return default


def _record_id(obs: Observation, res: dict[str, Any]) -> str:
    ids = obs.identifier or []
    for i in ids:
        if i.system == RECORD_ID_SYSTEM and i.value:
            return str(i.value)
    if obs.id:
        return str(obs.id)
    for i in ids:
        if i.value:
            return f"{i.system}|{i.value}" if i.system else str(i.value)
    canonical = json.dumps(res, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _sample(obs: Observation, res: dict[str, Any], default_source: str) -> dict[str, Any]:
    status = obs.status
    if status in SKIP_STATUSES or status not in KNOWN_STATUSES:
        raise _Skip("status", f"status {str(status)[:40]!r} is not a result to keep")
    key, code = _metric_of(obs)
    metric = METRICS[key]
    s: dict[str, Any] = {
        "metric": key,
        "start": None,
        "end": None,
        "value": None,
        "values": None,
        "unit": None,
        "stage": None,
        "source": _source(obs, default_source),
        "record_id": _record_id(obs, res),
    }
    if metric.kind in ("instant", "panel", "event"):
        s["start"] = _instant(obs)
    else:
        s["start"], s["end"] = _period(obs)

    if metric.kind in ("instant", "interval"):
        _absent(obs, key)
        q = obs.valueQuantity
        if q is None:
            other = next((n for n in _VALUE_FIELDS if getattr(obs, n, None) is not None), None)
            if other:
                raise _Skip("value_invalid", f"{key}: a Quantity is needed, not {other}")
            raise _Skip("value_missing", f"{key}: no value")
        s["value"] = _number(q.value, key)
        s["unit"] = _unit_of(q, metric, key)
    elif metric.kind == "panel":
        parts: dict[str, Any] = {}
        for comp in obs.component or []:
            codes = {(c.system, c.code) for c in comp.code.coding or []}
            for name, part in (("systolic", SYSTOLIC), ("diastolic", DIASTOLIC)):
                if (LOINC, part.code) in codes or (LOINC_OID, part.code) in codes:
                    parts.setdefault(name, comp)
        if set(parts) != {"systolic", "diastolic"}:
            missing = sorted({"systolic", "diastolic"} - set(parts))
            raise _Skip("bp_incomplete", f"the panel has no {' or '.join(missing)} component")
        values: dict[str, int | float] = {}
        units: set[str] = set()
        for name, comp in parts.items():
            _absent(comp, f"blood_pressure.{name}")
            if comp.valueQuantity is None:
                raise _Skip("value_missing", f"blood_pressure.{name}: no value")
            values[name] = _number(comp.valueQuantity.value, f"blood_pressure.{name}")
            units.add(_unit_of(comp.valueQuantity, metric, f"blood_pressure.{name}"))
        if len(units) != 1:
            raise _Skip("unit_not_accepted", f"systolic and diastolic in different units {units}")
        s["values"] = {"systolic": values["systolic"], "diastolic": values["diastolic"]}
        s["unit"] = units.pop()
    elif metric.kind == "sleep":
        s["stage"] = _stage(obs, code)
    return s


_VALUE_FIELDS = (
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)


def _stage(obs: Observation, code: str) -> str:
    if code == SLEEP_DURATION.code:
        # LOINC's sleep duration says the period was asleep, not in which stage
        _absent(obs, "sleep")
        return "asleep_unspecified"
    cc = obs.valueCodeableConcept
    if cc is None:
        raise _Skip("value_missing", "sleep: no stage (valueCodeableConcept)")
    for c in cc.coding or []:
        if c.system == SLEEP_STAGE_SYSTEM and c.code in SLEEP_STAGES:
            return str(c.code)
    raise _Skip("stage_unknown", "sleep: no stage of " + SLEEP_STAGE_SYSTEM)
