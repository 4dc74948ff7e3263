"""The health metrics as data (``metrics.yaml``): kind, canonical UCUM unit,
LOINC code, physiological bounds and the units accepted on the way in.

A closed list of a dozen metrics and some twenty input units, each a linear
conversion (a factor, and an offset for degrees Fahrenheit): an explicit table
reads and reviews better than a units library (docs/HEALTH.md says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Kind = Literal["instant", "interval", "event", "interval_event"]
KINDS = ("instant", "interval", "event", "interval_event")
CATEGORIES = ("health.vitals", "health.activity")
FEATURES = ("readings", "steps")


@dataclass(frozen=True)
class Component:
    key: str
    loinc: str
    bounds: tuple[float, float]


@dataclass(frozen=True)
class Metric:
    key: str
    kind: Kind
    unit: str | None
    loinc: str | None
    category: str
    feature: str
    bounds: tuple[float, float] | None = None
    units: dict[str, tuple[float, float]] = field(default_factory=dict)
    components: tuple[Component, ...] = ()
    stages: tuple[str, ...] = ()
    max_hours: float | None = None

    @property
    def valued(self) -> bool:
        return self.unit is not None

    @property
    def interval(self) -> bool:
        return self.kind in ("interval", "interval_event")

    @property
    def additive(self) -> bool:
        """Counted over intervals and added up (steps, distance, energy): two
        sources counting the same walk must not both count."""
        return self.kind == "interval" and self.valued

    def convert(self, value: float, unit: str) -> float | None:
        """``value`` in ``unit`` as the canonical unit; None for a unit not accepted."""
        conv = self.units.get(unit)
        if conv is None:
            return None
        factor, offset = conv
        return value * factor + offset


def _load(path: Path) -> dict[str, Metric]:
    raw: dict[str, Any] = yaml.safe_load(path.read_text())["metrics"]
    out: dict[str, Metric] = {}
    for key, m in raw.items():
        if m["kind"] not in KINDS:
            raise ValueError(f"health metric {key}: unknown kind {m['kind']!r}")
        if m["category"] not in CATEGORIES or m["feature"] not in FEATURES:
            raise ValueError(f"health metric {key}: unknown category or feature")
        units = {u: (float(f), float(o)) for u, (f, o) in (m.get("units") or {}).items()}
        unit = m.get("unit")
        if unit is not None and units.get(unit) != (1.0, 0.0):
            raise ValueError(f"health metric {key}: its own unit {unit!r} must convert as 1")
        comps = tuple(
            Component(k, c["loinc"], (float(c["bounds"][0]), float(c["bounds"][1])))
            for k, c in (m.get("components") or {}).items()
        )
        b = m.get("bounds")
        if unit is not None and b is None and not comps:
            raise ValueError(f"health metric {key}: a valued metric needs bounds")
        out[key] = Metric(
            key=key,
            kind=m["kind"],
            unit=unit,
            loinc=m.get("loinc"),
            category=m["category"],
            feature=m["feature"],
            bounds=(float(b[0]), float(b[1])) if b else None,
            units=units,
            components=comps,
            stages=tuple(m.get("stages") or ()),
            max_hours=float(m["max_hours"]) if m.get("max_hours") else None,
        )
    return out


METRICS: dict[str, Metric] = _load(Path(__file__).with_name("metrics.yaml"))
# sleep stages are stored as their index in this tuple
STAGES: tuple[str, ...] = METRICS["sleep"].stages
ASLEEP = frozenset({"asleep_core", "asleep_deep", "asleep_rem", "asleep_unspecified"})

# the metrics with values to plot as a series (sleep and events have none): the
# series routes' ``metric`` is one of these, and their schema says so
SERIES_METRICS: list[str] = [k for k, m in METRICS.items() if m.valued]
