"""Benchmark: health samples -> FHIR R4 Bundle -> samples (kares.protocols.fhir).

Run from the repository root:

    .venv/bin/python bench/bench_fhir.py [--samples 20000] [--runs 3]

Builds a mixed synthetic history (heart rate, steps, blood pressure, SpO2,
weight, sleep, in that proportion of a watch's day), then times the export
(``bundles_json``, 5,000 Observations a Bundle, every resource validated by the
``fhir.resources`` models) and the import (``read`` of the same Bundles, every
Observation validated again), and prints samples/s and the best of N runs.

The reference, measured in the same run on the same bytes, is the JSON alone:
``json.dumps`` of the exported documents and ``jsonread.loads`` of them, with
no model. Its ratio says what the validation and mapping cost on top of merely
moving the JSON, so figures compare across machines.

It is a benchmark, not a test: the only check is that the round trip returns
the samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from kares import jsonread  # noqa: E402
from kares.protocols import fhir  # noqa: E402


def history(n: int) -> list[dict[str, Any]]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(n):
        t = t0 + timedelta(minutes=i)
        base: dict[str, Any] = {
            "start": t,
            "end": None,
            "value": None,
            "values": None,
            "unit": None,
            "stage": None,
            "source": "Apple Watch",
            "record_id": f"r{i}",
        }
        k = i % 20
        if k < 12:
            base |= {"metric": "heart_rate", "value": 55 + i % 60, "unit": "/min"}
        elif k < 16:
            base |= {
                "metric": "steps",
                "end": t + timedelta(minutes=1),
                "value": i % 120,
                "unit": "{steps}",
            }
        elif k == 16:
            base |= {
                "metric": "blood_pressure",
                "values": {"systolic": 110 + i % 30, "diastolic": 70 + i % 15},
                "unit": "mm[Hg]",
            }
        elif k == 17:
            base |= {"metric": "spo2", "value": 94 + i % 6, "unit": "%"}
        elif k == 18:
            base |= {"metric": "weight", "value": 70 + (i % 50) / 10, "unit": "kg"}
        else:
            base |= {"metric": "sleep", "end": t + timedelta(minutes=1), "stage": "asleep_core"}
        out.append(base)
    return out


def best(fn: Any, runs: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    samples = history(a.samples)

    t_exp, docs = best(lambda: list(fhir.bundles_json(samples, "p-bench")), a.runs)
    t_imp, back = best(lambda: [s for d in docs for s in fhir.read(d).samples], a.runs)
    assert back == samples, "the round trip lost samples"
    parsed = [json.loads(d) for d in docs]
    t_dumps, _ = best(lambda: [json.dumps(p).encode() for p in parsed], a.runs)
    t_loads, _ = best(lambda: [jsonread.loads(d) for d in docs], a.runs)

    size = sum(len(d) for d in docs)
    n = len(samples)
    print(f"samples {n}, bundles {len(docs)}, {size / 1e6:.1f} MB of FHIR JSON")
    print(
        f"export  {t_exp * 1000:8.1f} ms  {n / t_exp:10,.0f} samples/s   "
        f"json.dumps ref {t_dumps * 1000:7.1f} ms   ratio {t_exp / t_dumps:5.1f}x"
    )
    print(
        f"import  {t_imp * 1000:8.1f} ms  {n / t_imp:10,.0f} samples/s   "
        f"jsonread ref   {t_loads * 1000:7.1f} ms   ratio {t_imp / t_loads:5.1f}x"
    )


if __name__ == "__main__":
    main()
