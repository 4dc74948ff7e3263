"""Placing fixes that carry only cell towers and Wi-Fi access points."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from kares.geo.resolver import (
    DEFAULT_CELL_RANGE_M,
    Cell,
    LoadStats,
    LocalResolver,
    NullResolver,
    Resolved,
    Resolver,
    WifiAp,
    haversine_m,
    mac_key,
    normalise_mac,
    signal_weight,
)
from kares.protocols.watch.frames import FrameReader, Position, parse

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "opencellid-sample.csv"

WIFI_CSV = """\
mac,lat,lon,range_m
# home, Huangpu
3C:46:D8:11:02:AA,31.23050,121.47330,40
50-bd-5f-2a-5e-21,31.23070,121.47360,60
8ca6df90010c,31.23040,121.47390,
not-a-mac,31.2,121.4,50
a4:3e:51:02:7c:10,0,0,50
a4:3e:51:02:7c:11,31.2,north,50
a4:3e:51:02:7c:12,91.0,121.4,50
3c:46:d8:11:02:aa,39.9,116.4,50

d8:c7:c8:41:9a:01,31.22430,121.46910,80
"""


def sample() -> LocalResolver:
    r = LocalResolver()
    r.load_opencellid_csv(SAMPLE)
    r.load_wifi_csv(WIFI_CSV.splitlines())
    return r


def test_opencellid_sample_loads_and_counts_what_it_skips() -> None:
    r = LocalResolver()
    stats = r.load_opencellid_csv(SAMPLE)
    # 16 rows: 10 good (one with an empty range), one duplicate key (the same
    # ids as LTE), five bad: a word for a number, 0,0, latitude 95, NaN, short
    assert stats == LoadStats(rows=16, loaded=10, skipped=5, duplicates=1)
    assert r.cell_count == 10


def test_opencellid_columns_are_lon_then_lat() -> None:
    r = LocalResolver()
    r.load_opencellid_csv(SAMPLE)
    found = r.resolve([Cell(460, 0, 22543, 118923521, -80)], [])
    assert found == Resolved(31.224, 121.47, 500.0, "cell")


def test_opencellid_without_header_gz_and_other_column_order(tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines()
    headless = LocalResolver()
    assert headless.load_opencellid_csv(lines[1:]).loaded == 10
    gz = tmp_path / "cell_towers.csv.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    zipped = LocalResolver()
    assert zipped.load_opencellid_csv(gz).loaded == 10
    reordered = LocalResolver()
    stats = reordered.load_opencellid_csv(
        ["radio,lat,lon,mcc,net,area,cell", "GSM,39.9,116.4,460,1,4124,9"]
    )
    assert stats.loaded == 1
    got = reordered.resolve([Cell(460, 1, 4124, 9)], [])
    assert got is not None and (got.lat, got.lon) == (39.9, 116.4)
    assert got.accuracy_m == DEFAULT_CELL_RANGE_M  # no range column: the default


def test_a_header_without_the_needed_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="OpenCellID"):
        LocalResolver().load_opencellid_csv(["radio,mcc,net,cell,lat,lon", "GSM,1,2,3,4,5"])


def test_wifi_csv_loads_and_counts_what_it_skips() -> None:
    r = LocalResolver()
    stats = r.load_wifi_csv(WIFI_CSV.splitlines())
    # nine rows: four good, a duplicate MAC, four bad (MAC, 0,0, a word, latitude 91)
    assert stats == LoadStats(rows=9, loaded=4, skipped=4, duplicates=1)
    assert r.wifi_count == 4


def test_wifi_csv_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "wifi.csv"
    path.write_text("00:11:22:33:44:55,31.23,121.47,30\n00:11:22:33:44:56,31.2301,121.4701\n")
    r = LocalResolver()
    assert r.load_wifi_csv(path) == LoadStats(rows=2, loaded=2)


def test_mac_spellings() -> None:
    assert normalise_mac("3C:46:D8:11:02:AA") == "3c:46:d8:11:02:aa"
    assert normalise_mac("3c-46-d8-11-02-aa") == "3c:46:d8:11:02:aa"
    assert normalise_mac("3c46d81102aa") == "3c:46:d8:11:02:aa"
    assert normalise_mac("38:37:8b:7:cf:99") == "38:37:8b:07:cf:99"
    for bad in ("", "0", "00:00:00:00:00:00", "3c:46:d8:11:02", "a0:c5:f2:b0:7.4:d0", "zz" * 6):
        assert normalise_mac(bad) is None, bad
    assert mac_key("00:00:00:00:00:01") == 1


def test_wifi_is_preferred_over_cells() -> None:
    r = sample()
    cells = [Cell(460, 0, 6243, 24131, 160), Cell(460, 0, 6243, 24132, 144)]
    wifi = [
        WifiAp("CMCC-7a3f", "3c:46:d8:11:02:aa", -52),
        WifiAp("TP-LINK_5E21", "50:bd:5f:2a:5e:21", -61),
    ]
    found = r.resolve(cells, wifi)
    assert found is not None and found.source == "wifi"
    assert found.lat == pytest.approx(31.2306, abs=2e-4)
    assert found.lon == pytest.approx(121.4734, abs=2e-4)
    assert found.accuracy_m < 100


def test_one_known_access_point_is_not_enough() -> None:
    r = sample()
    found = r.resolve(
        [Cell(460, 0, 6243, 24131, 160)],
        [WifiAp("CMCC-7a3f", "3c:46:d8:11:02:aa", -52), WifiAp("?", "00:00:00:00:00:07", -40)],
    )
    assert found == Resolved(31.231, 121.472, 800.0, "cell")


def test_weighted_centroid_of_access_points() -> None:
    r = LocalResolver()
    r.add_wifi("00:00:00:00:00:01", 31.2300, 121.4700, 30)
    r.add_wifi("00:00:00:00:00:02", 31.2310, 121.4710, 500)
    found = r.resolve(
        [], [WifiAp("a", "00:00:00:00:00:01", -40), WifiAp("b", "00:00:00:00:00:02", -80)]
    )
    # weights: -40 dBm -> 60, -80 dBm -> 20
    assert signal_weight(-40, -100) == 60 and signal_weight(-80, -100) == 20
    assert found is not None and found.source == "wifi"
    assert found.lat == pytest.approx((60 * 31.2300 + 20 * 31.2310) / 80, abs=1e-7)
    assert found.lon == pytest.approx((60 * 121.4700 + 20 * 121.4710) / 80, abs=1e-7)
    # accuracy: the strongest one's range (30 m) or the spread, whichever is larger
    spread = haversine_m(found.lat, found.lon, 31.2310, 121.4710)
    assert 100 < spread < 120
    assert found.accuracy_m == pytest.approx(spread)


def test_accuracy_is_the_strongest_range_when_that_is_larger() -> None:
    r = LocalResolver()
    r.add_wifi("00:00:00:00:00:01", 31.2300, 121.4700, 250)
    r.add_wifi("00:00:00:00:00:02", 31.2301, 121.4701, 20)
    found = r.resolve(
        [], [WifiAp("a", "00:00:00:00:00:01", -45), WifiAp("b", "00:00:00:00:00:02", -90)]
    )
    assert found is not None and found.accuracy_m == 250


def test_weighted_centroid_of_cells() -> None:
    r = sample()
    # the watches' own signal scale (bigger is stronger): weights 150 and 50
    found = r.resolve([Cell(460, 1, 4124, 52011, 150), Cell(460, 1, 4124, 52012, 50)], [])
    assert found is not None and found.source == "cell"
    assert found.lat == pytest.approx((150 * 39.909 + 50 * 39.9075) / 200, abs=1e-7)
    assert found.lon == pytest.approx((150 * 116.397 + 50 * 116.3995) / 200, abs=1e-7)
    assert found.accuracy_m == 1000  # the strongest cell's range beats the spread
    # dBm, and an unknown signal weighing least
    assert signal_weight(-60, -120) == 60 and signal_weight(None, -120) == 1
    dbm = r.resolve([Cell(460, 1, 4124, 52011, -60), Cell(460, 1, 4124, 52012, None)], [])
    assert dbm is not None
    assert dbm.lat == pytest.approx((60 * 39.909 + 1 * 39.9075) / 61, abs=1e-7)


def test_an_access_point_that_moved_is_left_out() -> None:
    r = LocalResolver()
    r.add_wifi("00:00:00:00:00:01", 31.2300, 121.4700, 50)
    r.add_wifi("00:00:00:00:00:02", 31.2302, 121.4702, 50)
    r.add_wifi("00:00:00:00:00:03", 39.9042, 116.4074, 50)  # a travel router, now in Beijing
    found = r.resolve(
        [],
        [
            WifiAp("a", "00:00:00:00:00:01", -70),
            WifiAp("b", "00:00:00:00:00:02", -70),
            WifiAp("c", "00:00:00:00:00:03", -30),
        ],
    )
    assert found is not None and found.source == "wifi"
    assert found.lat == pytest.approx(31.2301, abs=1e-6)
    assert found.accuracy_m < 100


def test_access_points_that_disagree_fall_back_to_cells() -> None:
    r = sample()
    r.add_wifi("00:00:00:00:00:01", 31.2300, 121.4700, 50)
    r.add_wifi("00:00:00:00:00:02", 31.2500, 121.4700, 50)  # 2.2 km apart
    found = r.resolve(
        [Cell(460, 0, 6243, 24131, 150)],
        [WifiAp("a", "00:00:00:00:00:01", -60), WifiAp("b", "00:00:00:00:00:02", -60)],
    )
    assert found is not None and found.source == "cell"


def test_unknown_is_none_and_never_zero_zero() -> None:
    r = sample()
    assert r.resolve([], []) is None
    assert r.resolve([Cell(460, 0, 1, 2, 100)], [WifiAp("x", "00:00:00:00:00:09", -50)]) is None
    assert r.add_cell(460, 0, 1, 2, 0.0, 0.0, 100) is False
    assert r.add_wifi("00:00:00:00:00:09", 0.0, 0.0) is False
    assert r.add_cell(460, 0, 1, 2, float("nan"), 1.0) is False
    assert r.resolve([Cell(460, 0, 1, 2, 100)], []) is None
    # the table's 0,0 row was skipped
    assert r.resolve([Cell(460, 0, 6244, 1002)], []) is None


def test_null_resolver() -> None:
    resolver: Resolver = NullResolver()
    assert resolver.resolve([Cell(460, 0, 6243, 24131, 150)], []) is None


def test_a_watch_fix_without_gps_is_placed() -> None:
    data = (DATA / "watch" / "ud_nofix_cells_wifi.txt").read_bytes()
    (frame,) = FrameReader().feed(data)
    p = parse(frame)
    assert isinstance(p, Position) and p.lat is None
    by_wifi = sample().resolve(p.cells, p.wifi)
    assert by_wifi is not None and by_wifi.source == "wifi"
    assert haversine_m(by_wifi.lat, by_wifi.lon, 31.2305, 121.4736) < 50
    cells_only = LocalResolver()
    cells_only.load_opencellid_csv(SAMPLE)
    by_cell = cells_only.resolve(p.cells, p.wifi)
    assert by_cell is not None and by_cell.source == "cell"
    assert haversine_m(by_cell.lat, by_cell.lon, 31.2310, 121.4725) < 500
    assert by_cell.accuracy_m >= 800
