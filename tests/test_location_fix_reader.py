"""The batch route reads its body straight into ``service.FixIn``s (one pydantic
schema in Rust, no model objects): whatever that reader takes, the route's model
(``schemas.FixBatch``, which the OpenAPI document describes and whose answers a
refused body gets) takes too and turns into the same fixes; the rest it leaves to
the model. The usual bodies of our apps must take the fast way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kares.location import api
from kares.location import schemas as sc

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only

# each value as JSON text, so that 25.0, 1e2, NaN and big numbers reach the parser as
# sent; the first few of each are what clients send, the rest what they should not
INTS = [
    "80",
    "0",
    "100",
    "-1",
    "80.0",
    "80.5",
    "1e2",
    "true",
    '"80"',
    "null",
    "123456789012345678901",
]
NUMBERS = [
    "8",
    "31.2304",
    "-1.5",
    "0",
    "1e308",
    "8.0",
    "1e400",
    "NaN",
    "-Infinity",
    '"8"',
    "true",
    "null",
]
TIMES = [
    '"2026-12-06T08:00:00+08:00"',
    '"2026-12-06T08:00:00Z"',
    '"2026-12-06T08:00:00.1234567Z"',
    '"2026-12-06T08:00:00.999999-03:30"',
    '"2026-12-06 08:00:00Z"',
    '"2026-12-06t08:00:00z"',
    '" 2026-12-06T08:00:00Z"',
    '"2026-12-06T08:00:00Z "',
    '"2026-12-06T08:00:00"',
    '"2026-12-06"',
    '"2026-12-06T23:59:60Z"',
    '"2026-13-06T08:00:00Z"',
    '"0001-01-01T00:00:00+08:00"',
    '"9999-12-31T23:59:59-23:59"',
    '"1733446800"',
    '"1e9"',
    '"-1733446800"',
    "1733446800",
    "1.5",
    "true",
    "null",
]
IDS = [
    '"a"',
    '"b-17"',
    '" a "',
    '"x y"',
    '""',
    '"   "',
    '"é"',
    f'"{"a" * 80}"',
    f'"{"a" * 81}"',
    "5",
    "null",
]
SOURCES = ['"gps"', '"cell"', '"manual"', '" gps"', '"GPS"', '"import"', "1", "null"]
CELLS = [
    '{"mcc":460,"mnc":0,"lac":1,"cid":2}',
    '{"mcc":460,"mnc":0,"lac":1,"cid":2,"rssi":-80}',
    '{"mcc":460.0,"mnc":0,"lac":1,"cid":2}',
    '{"mcc":1000,"mnc":0,"lac":1,"cid":2}',
    '{"mcc":460,"mnc":0,"lac":1}',
    '{"mcc":460,"mnc":0,"lac":1,"cid":2,"x":1}',
]
WIFI = [
    '{"mac":"aa:bb:cc:dd:ee:ff"}',
    '{"mac":"AA-bb-CC-dd-EE-ff","rssi":-50}',
    '{"mac":" aabbccddeeff "}',
    '{"mac":"zz"}',
    '{"mac":"aa:bb:cc:dd:ee:ff","rssi":-50.0}',
]


def _mostly(values: list[str], usual: int = 3) -> st.SearchStrategy[str]:
    """The first ``usual`` values nine times as often as any other: most bodies
    must be ones the reader takes, or the property below tests little."""
    return st.sampled_from(values[:usual] * 8 + values)


def _lists(item: list[str], most: int) -> st.SearchStrategy[str]:
    too_many = st.just(",".join([item[0]] * (most + 1)))
    some = st.lists(_mostly(item, 2), max_size=3).map(",".join)
    return st.one_of(some, some, too_many).map(lambda s: f"[{s}]")


FIELDS: dict[str, st.SearchStrategy[str]] = {
    "id": _mostly(IDS, 2),
    "t": _mostly(TIMES, 4),
    "lat": _mostly(NUMBERS),
    "lon": _mostly(NUMBERS),
    "accuracy_m": _mostly(NUMBERS),
    "altitude_m": _mostly(NUMBERS),
    "speed_mps": _mostly(NUMBERS),
    "course_deg": _mostly(NUMBERS),
    "battery": _mostly(INTS),
    "source": _mostly(SOURCES),
    "cells": _lists(CELLS, 16),
    "wifi": _lists(WIFI, 32),
}
# not fields of the body, whatever service.FixIn calls them
NOT_FIELDS = ['"flag":"fix.contested"', '"t_ms":1733446800000', '"client_id":"a"']


@st.composite
def fixes(draw: st.DrawFn) -> str:
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=6))
    if draw(st.integers(0, 7)):
        names.append("t")  # most fixes have their time
    parts = [f'"{n}":{draw(FIELDS[n])}' for n in dict.fromkeys(names)]
    if not draw(st.integers(0, 15)):
        parts.append(draw(st.sampled_from(NOT_FIELDS)))
    return "{" + ",".join(parts) + "}"


def _outcome(read: Any, raw: bytes) -> tuple[str, str]:
    try:
        return "taken", repr(read(raw))  # repr: NaN equals itself there
    except ValidationError:
        return "refused", ""
    except Exception as exc:  # any other failure: the same both ways
        return "failed", type(exc).__name__


def _by_model(raw: bytes) -> list[Any]:
    return [api._fix_in(f) for f in sc.FixBatch.model_validate_json(raw).fixes]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fixes(), min_size=1, max_size=2))
def test_what_the_reader_takes_the_model_takes_and_reads_the_same(batch: list[str]) -> None:
    raw = ('{"fixes":[' + ",".join(batch) + "]}").encode()
    fast = _outcome(api._read_fixes, raw)
    if fast[0] != "refused":
        assert _outcome(_by_model, raw) == fast


@pytest.mark.parametrize(
    "raw",
    [
        b'{"fixes":[]}',
        b'{"fixes":[{"t":"2026-12-06T08:00:00Z"}],"more":1}',
        b'{"fixes":{"t":"2026-12-06T08:00:00Z"}}',
        b"[]",
        b"null",
        b'{"fixes":[',
        b"",
        b'{"fixes":[' + b",".join([b'{"t":"2026-12-06T08:00:00Z"}'] * 1001) + b"]}",
    ],
)
def test_bodies_the_model_refuses_the_reader_refuses(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        sc.FixBatch.model_validate_json(raw)
    with pytest.raises(ValidationError):
        api._read_fixes(raw)


def test_the_usual_bodies_are_read_without_the_model() -> None:
    usual = [
        {
            "id": f"b{i}",
            "t": f"2026-12-06T08:00:0{i}.5+08:00",
            "lat": 31.23,
            "lon": 121,
            "accuracy_m": 8,
            "speed_mps": 1.2,
            "course_deg": 90,
            "altitude_m": -3.5,
            "battery": 80,
            "source": "gps",
        }
        for i in range(3)
    ]
    usual.append({"t": "2026-12-06T00:00:00Z", "lat": None, "lon": None, "cells": [], "wifi": []})
    usual.append(
        {
            "t": "2026-12-06T00:00:00.123Z",
            "source": "cell",
            "cells": [{"mcc": 460, "mnc": 0, "lac": 1, "cid": 2, "rssi": -80}],
            "wifi": [{"mac": "AA-BB-CC-DD-EE-FF", "rssi": -50}],
        }
    )
    raw = json.dumps({"fixes": usual}).encode()
    read = api._read_fixes(raw)
    assert read == _by_model(raw)
    assert read[0].t_ms == 1796515200500 and read[0].client_id == "b0" and read[0].flag is None
    assert read[3].cells == () and read[3].wifi == ()
    assert read[4].wifi[0].mac == "aa:bb:cc:dd:ee:ff" and read[4].t_ms % 1000 == 123
