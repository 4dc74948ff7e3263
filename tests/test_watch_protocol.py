"""The kids'-watch TCP protocol: framing, escapes, parsing and replies.

The fixtures in tests/data/watch/ are byte-exact frames in the documented
layouts (made-up devices around Shanghai and Beijing)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kares.geo.resolver import Cell, WifiAp
from kares.protocols.watch.frames import (
    ALARM_BITS,
    Frame,
    FrameError,
    FrameReader,
    Health,
    KeepAlive,
    Message,
    Other,
    Position,
    alarms_from_status,
    encode,
    escape,
    parse,
    reply_for,
    unescape,
)

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only

DATA = Path(__file__).parent / "data" / "watch"
FIXTURES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".txt", ".bin"))
ID = "7402610015"


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def frame_of(name: str) -> Frame:
    reader = FrameReader()
    frames = reader.feed(raw(name))
    assert len(frames) == 1, name
    assert reader.buffered == 0
    return frames[0]


def parsed(name: str) -> Message:
    return parse(frame_of(name))


def position(name: str) -> Position:
    msg = parsed(name)
    assert isinstance(msg, Position)
    return msg


def make(content: str | bytes, vendor: str = "3G", device: str = ID) -> Frame:
    frames = FrameReader().feed(encode(vendor, device, content))
    assert len(frames) == 1
    return frames[0]


def ud(tail: str, head: str = "UD,250624,083015,A,31.230416,N,121.473701,E") -> Position:
    msg = parse(make(f"{head},{tail}"))
    assert isinstance(msg, Position)
    return msg


# -- framing -------------------------------------------------------------------


def test_every_fixture_is_one_well_formed_frame() -> None:
    for name in FIXTURES:
        reader = FrameReader()
        frames = reader.feed(raw(name))
        assert len(frames) == 1, name
        expected_ok = name != "sg_ud_short_length.txt"
        assert frames[0].length_ok is expected_ok, name
        assert reader.stats.garbage_bytes == 0
        assert reader.stats.bad_headers == 0


def test_frame_fields() -> None:
    f = frame_of("lk_steps.txt")
    assert (f.vendor, f.device_id, f.command, f.index) == ("3G", ID, "LK", None)
    assert f.content == b"LK,4210,3,87"
    assert f.payload == b"LK,4210,3,87"


def test_sequence_number_before_the_length() -> None:
    f = frame_of("zj_index_lk.txt")
    assert (f.vendor, f.device_id, f.index, f.command) == ("ZJ", "352661090143150", "00A1", "LK")
    assert parse(f) == KeepAlive(steps=0, rolling=0, battery=85)
    assert reply_for(f, parse(f)) == b"[ZJ*352661090143150*00A1*0002*LK]"


def test_lower_case_length_and_vendor() -> None:
    frames = FrameReader().feed(b"[3g*5678901234*000e*btemp2,1,35.29][3G*5678901234*0002*lk]")
    assert [(f.vendor, f.command, f.length_ok) for f in frames] == [
        ("3g", "btemp2", True),
        ("3G", "lk", True),
    ]
    assert reply_for(frames[0]) == b"[3g*5678901234*0006*btemp2]"
    assert reply_for(frames[1]) == b"[3G*5678901234*0002*LK]"


def test_split_at_every_byte_and_merged() -> None:
    # (a raw ']' in an SSID is split apart in its own tests below)
    names = [n for n in FIXTURES if n != "ud_ssid_brackets.txt"]
    stream = b"".join(raw(n) for n in names)
    whole = FrameReader().feed(stream)
    assert len(whole) == len(names)
    for cut in range(1, len(stream)):
        reader = FrameReader()
        frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert frames == whole, cut
    reader = FrameReader()
    one_by_one = [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])]
    assert one_by_one == whole
    assert reader.buffered == 0


def test_garbage_between_frames_is_skipped_and_counted() -> None:
    lk = raw("lk.txt")
    junk1, junk2 = b"GET / HTTP/1.1\r\n\r\n", b"\x00\xff\r\n"
    reader = FrameReader()
    frames = reader.feed(junk1 + lk + junk2 + lk + b"tail")
    assert [f.command for f in frames] == ["LK", "LK"]
    assert reader.stats.garbage_bytes == len(junk1) + len(junk2) + 4
    assert reader.stats.frames == 2
    assert reader.buffered == 0


def test_a_bracket_that_starts_no_frame() -> None:
    reader = FrameReader()
    frames = reader.feed(b"[not a frame]" + raw("lk.txt") + b"[3G**0002*LK]" + raw("tkq.txt"))
    assert [f.command for f in frames] == ["LK", "TKQ"]
    assert reader.stats.bad_headers == 2
    assert reader.stats.garbage_bytes == len(b"not a frame]") + len(b"3G**0002*LK]")


def test_a_partial_header_waits() -> None:
    reader = FrameReader()
    lk = raw("zj_index_lk.txt")
    for cut in range(1, 31):
        assert reader.feed(lk[:cut]) == []
        reader = FrameReader()
    assert reader.feed(lk[:30]) == []
    assert reader.buffered == 30
    assert [f.index for f in reader.feed(lk[30:])] == ["00A1"]


def test_declared_length_over_the_maximum_is_dropped() -> None:
    reader = FrameReader(max_frame=1024)
    frames = reader.feed(b"[3G*7402610015*FFFF*TK,..." + raw("lk.txt"))
    assert [f.command for f in frames] == ["LK"]
    assert reader.stats.oversize == 1


def test_a_frame_that_never_ends_cannot_grow_the_buffer() -> None:
    reader = FrameReader(max_frame=4096)
    assert reader.feed(b"[3G*7402610015*0010*TK,") == []
    for _ in range(100):
        assert reader.feed(b"A" * 1000) == []
        assert reader.buffered <= 4096
    assert reader.stats.oversize == 1
    assert [f.command for f in reader.feed(raw("lk.txt"))] == ["LK"]


def test_endless_bytes_without_a_bracket_are_not_kept() -> None:
    reader = FrameReader()
    for _ in range(256):
        reader.feed(b"x" * 4096)
        assert reader.buffered == 0
    assert reader.stats.garbage_bytes == 256 * 4096


def test_endless_binary_content_in_small_pieces() -> None:
    reader = FrameReader()
    reader.feed(b"[CS*7402610015*FF00*TK,")
    chunk = escape(bytes(range(256))) * 4
    while reader.stats.oversize == 0:
        assert reader.feed(chunk) == []
        assert reader.buffered <= 64 * 1024
    assert reader.buffered < len(chunk)


def test_a_length_that_is_short_is_tolerated_and_counted() -> None:
    reader = FrameReader()
    frames = reader.feed(raw("sg_ud_short_length.txt") + raw("lk.txt"))
    assert [(f.command, f.length_ok) for f in frames] == [("UD", False), ("LK", True)]
    assert reader.stats.length_mismatches == 1
    p = parse(frames[0])
    assert isinstance(p, Position)
    assert p.cells == (Cell(460, 0, 6243, 24131, 153),)


def test_strict_length_drops_the_mismatch() -> None:
    reader = FrameReader(strict_length=True)
    frames = reader.feed(raw("sg_ud_short_length.txt") + raw("lk.txt"))
    assert [f.command for f in frames] == ["LK"]
    assert reader.stats.length_mismatches == 1


def test_a_length_that_is_long_does_not_wait_for_the_next_frame() -> None:
    over = b"[SG*9081000548*0009*LK,0,100]"
    reader = FrameReader()
    got = reader.feed(over)
    assert [(f.command, f.length_ok) for f in got] == [("LK", False)]
    assert reply_for(got[0]) == b"[SG*9081000548*0002*LK]"
    assert [f.length_ok for f in reader.feed(over + b"\r\n" + over + raw("lk.txt"))] == [
        False,
        False,
        True,
    ]
    assert reader.stats.length_mismatches == 3


def test_the_length_counts_wire_bytes_or_unescaped_bytes() -> None:
    audio = raw("tk_voice.audio")
    wire = b"TK," + escape(audio)
    as_devices = raw("tk_voice.bin")
    assert as_devices[15:19] == b"%04X" % len(wire)
    unescaped_count = b"[CS*7402610015*%04X*" % (3 + len(audio)) + wire + b"]"
    for data in (as_devices, unescaped_count):
        reader = FrameReader()
        frames = reader.feed(data + raw("lk.txt") + data)
        assert [(f.command, f.length_ok) for f in frames] == [
            ("TK", True),
            ("LK", True),
            ("TK", True),
        ]
        assert frames[0].content == wire
        assert frames[0].payload == b"TK," + audio


def test_raw_brackets_and_commas_in_wifi_names() -> None:
    data = raw("ud_ssid_brackets.txt")
    p = position("ud_ssid_brackets.txt")
    assert [w.name for w in p.wifi] == ["[Living Room] AC", "Cafe, Bar & Grill", "home-5g"]
    assert [w.mac for w in p.wifi] == [
        "66:a1:ed:e1:e7:25",
        "36:a2:e1:ed:a1:de",
        "a4:3e:51:02:7c:10",
    ]
    assert p.accuracy_m == 7.5
    inner = data.index(b"]") + 1
    for cut in range(1, len(data)):
        if cut == inner:
            continue
        reader = FrameReader()
        frames = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert [(f.content, f.length_ok) for f in frames] == [(data[20:-1], True)], cut


def test_a_segment_ending_right_after_a_raw_bracket_cuts_the_frame() -> None:
    # the documented limitation: the frame is cut there, the rest skipped as garbage
    data = raw("ud_ssid_brackets.txt")
    inner = data.index(b"]") + 1
    reader = FrameReader()
    first = reader.feed(data[:inner])
    rest = reader.feed(data[inner:] + raw("lk.txt"))
    assert [f.length_ok for f in first] == [False]
    assert [f.command for f in rest] == ["LK"]
    cut = parse(first[0])
    assert isinstance(cut, Position) and cut.lat == 31.230416
    assert [c.cid for c in cut.cells] == [24131]


# -- escapes and encoding ----------------------------------------------------


def test_escape_table() -> None:
    assert escape(b"\x7d[],*") == b"\x7d\x01\x7d\x02\x7d\x03\x7d\x04\x7d\x05"
    assert unescape(b"\x7d\x01\x7d\x02\x7d\x03\x7d\x04\x7d\x05") == b"\x7d[],*"
    assert escape(b"plain") == b"plain"


def test_a_lone_escape_byte_stays() -> None:
    assert unescape(b"wifi}name") == b"wifi}name"
    assert unescape(b"}\x06}") == b"}\x06}"
    assert unescape(b"}}\x01") == b"}}"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_escape_round_trips(data: bytes) -> None:
    wire = escape(data)
    assert unescape(wire) == data
    assert not any(b in wire for b in (b"[", b"]", b",", b"*"))


_vendor = st.sampled_from(["3G", "SG", "CS", "ZJ", "3g"])
_device = st.from_regex(r"[0-9]{10}|[0-9]{15}", fullmatch=True)
_payload = st.binary(max_size=200)
_junk = st.binary(max_size=20).map(lambda b: b.replace(b"[", b""))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(_vendor, _device, _payload, _junk), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_the_reader_reassembles_any_chunking(
    items: list[tuple[str, str, bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode(v, d, b"TK," + escape(p)) + junk for v, d, p, junk in items)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    reader = FrameReader()
    frames = [f for piece in pieces for f in reader.feed(piece)]
    assert [(f.vendor, f.device_id, f.payload) for f in frames] == [
        (v, d, b"TK," + p) for v, d, p, _ in items
    ]
    assert all(f.length_ok for f in frames)
    assert reader.stats.garbage_bytes == sum(len(j) for *_, j in items)
    assert reader.buffered == 0


def test_encode() -> None:
    assert encode("3G", "8800000015", "LK") == b"[3G*8800000015*0002*LK]"
    assert encode("SG", "8800000015", "LK,50,100,100") == b"[SG*8800000015*000D*LK,50,100,100]"
    assert encode("ZJ", "352661090143150", b"LK", index="00a1") == (
        b"[ZJ*352661090143150*00a1*0002*LK]"
    )
    assert encode("3G", "1", "x" * 0xABC)[:11] == b"[3G*1*0ABC*"


def test_encode_gives_every_fixture_back() -> None:
    for name in FIXTURES:
        if name == "sg_ud_short_length.txt":
            continue
        f = frame_of(name)
        assert encode(f.vendor, f.device_id, f.content, index=f.index) == raw(name), name


@pytest.mark.parametrize(
    ("vendor", "device", "index"),
    [("3", ID, None), ("3G*", ID, None), ("3G", "", None), ("3G", "12*3", None), ("3G", ID, "xyz")],
)
def test_encode_refuses_bad_headers(vendor: str, device: str, index: str | None) -> None:
    with pytest.raises(FrameError) as e:
        encode(vendor, device, "LK", index=index)
    assert e.value.code == "watch.bad_frame"


def test_encode_refuses_an_overlong_content() -> None:
    with pytest.raises(FrameError):
        encode("3G", ID, b"x" * 0x10000)


# -- parsing -----------------------------------------------------------------


def test_keep_alive() -> None:
    assert parsed("lk.txt") == KeepAlive()
    assert parsed("lk_steps.txt") == KeepAlive(steps=4210, rolling=3, battery=87)
    assert parse(make("LK,0,100", vendor="SG")) == KeepAlive(steps=0, battery=100)


def test_position_with_a_gps_fix() -> None:
    p = position("ud_gps.txt")
    assert p.kind == "UD"
    assert p.time == datetime(2024, 6, 25, 8, 30, 15, tzinfo=UTC)
    assert (p.valid, p.lat, p.lon) == (True, 31.230416, 121.473701)
    assert (p.speed_kmh, p.course, p.altitude_m) == (2.5, 87.3, 12.0)
    assert (p.satellites, p.gsm_signal, p.battery, p.steps, p.rolling) == (9, 85, 76, 1520, 3)
    assert (p.status, p.alarms) == (0, frozenset())
    assert p.cells == (
        Cell(460, 0, 6243, 24131, 156),
        Cell(460, 0, 6243, 24132, 141),
        Cell(460, 0, 6243, 30275, 129),
    )
    assert p.wifi == (
        WifiAp("home-5g", "a4:3e:51:02:7c:10", -48),
        WifiAp("ChinaNet-3F2a", "6c:e8:73:1a:22:b4", -67),
    )
    assert p.accuracy_m == 8.5
    assert reply_for(frame_of("ud_gps.txt"), p) is None


def test_no_fix_carries_cells_and_wifi_but_no_position() -> None:
    p = position("ud_nofix_cells_wifi.txt")
    assert (p.valid, p.lat, p.lon, p.accuracy_m) == (False, None, None, None)
    assert [c.cid for c in p.cells] == [24131, 24132, 30275]
    assert p.wifi == (
        WifiAp("CMCC-7a3f", "3c:46:d8:11:02:aa", -52),
        WifiAp("TP-LINK_5E21", "50:bd:5f:2a:5e:21", -61),
        WifiAp("", "8c:a6:df:90:01:0c", -75),
    )
    assert p.status == 0x10 and p.alarms == frozenset()


def test_zero_zero_is_never_a_position() -> None:
    p = position("ud_a_zero.txt")
    assert (p.valid, p.lat, p.lon, p.accuracy_m) == (False, None, None, None)
    assert p.cells == (Cell(460, 0, 6243, 24131, 160),)
    for head in ("A,0.0,N,0.0,E", "A,00.000000,N, 0.0000000,E", "A,-0.0,S,0.0,W"):
        q = ud("0,0,0,0,100,50,0,0,00000000,0", head=f"UD,250624,083015,{head}")
        assert (q.valid, q.lat, q.lon) == (False, None, None)


def test_no_fix_with_the_last_coordinates_is_no_position() -> None:
    for name in ("wt.txt", "ud_wcdma.txt"):
        p = position(name)
        assert (p.valid, p.lat, p.lon) == (False, None, None), name
    assert position("wt.txt").kind == "WT"
    w = position("ud_wcdma.txt")
    assert w.kind == "UD_WCDMA"
    assert w.cells == (Cell(460, 1, 41021, 1282125, 75),)


def test_stored_and_4g_positions() -> None:
    p = position("ud2.txt")
    assert (p.kind, p.lat, p.lon, p.status, p.alarms) == (
        "UD2",
        39.908722,
        116.397499,
        8,
        frozenset(),
    )
    assert p.cells == (Cell(460, 1, 4124, 52011, 150), Cell(460, 1, 4124, 52012, 138))
    assert p.wifi == () and p.accuracy_m == 12.0
    assert p.time == datetime(2024, 6, 24, 23, 10, tzinfo=UTC)
    q = position("ud_lte.txt")
    assert q.kind == "UD_LTE"
    assert q.cells == (Cell(460, 0, 22543, 118923521, 100),)
    assert [w.name for w in q.wifi] == ["Starbucks", "iShanghai"]
    for name in ("ud2.txt", "ud_lte.txt", "wt.txt"):
        assert reply_for(frame_of(name)) is None


@pytest.mark.parametrize(
    ("name", "alarms"),
    [
        ("al_sos.txt", {"sos"}),
        ("al_removed.txt", {"removed"}),
        ("al_low_battery.txt", {"low_battery"}),
        ("al_fall.txt", {"fall"}),
    ],
)
def test_alarms(name: str, alarms: set[str]) -> None:
    p = position(name)
    assert p.kind == "AL"
    assert p.alarms == alarms
    f = frame_of(name)
    assert reply_for(f, p) == b"[3G*" + f.device_id.encode() + b"*0002*AL]"


def test_alarm_details() -> None:
    low = position("al_low_battery.txt")
    assert (low.battery, low.status) == (9, 0x00020001)
    fall = position("al_fall.txt")
    assert frame_of("al_fall.txt").command == "AL_LTE"
    assert (fall.lat, fall.lon, fall.cells[0].cid) == (39.9042, 116.4074, 27931403)
    removed = position("al_removed.txt")
    assert (removed.lat, removed.lon) == (None, None)
    assert reply_for(frame_of("al_fall.txt")) == b"[3G*5207310042*0002*AL]"


def test_status_bits() -> None:
    assert ALARM_BITS == {
        "sos": 16,
        "low_battery": 17,
        "fence_out": 18,
        "fence_in": 19,
        "removed": 20,
        "fall": 21,
    }
    assert alarms_from_status(0x0000FFFF) == frozenset()  # states, not alarms
    assert alarms_from_status(0x00400000) == frozenset()  # abnormal heart rate: not mapped
    assert alarms_from_status(0x003F0000) == frozenset(ALARM_BITS)
    assert alarms_from_status(0x000C0000) == {"fence_out", "fence_in"}


def test_health() -> None:
    bp = parsed("bphrt.txt")
    # height, gender, age and weight are not kept
    assert bp == Health(
        "blood_pressure", {"systolic": 118.0, "diastolic": 76.0, "heart_rate": 82.0}
    )
    assert parsed("btemp2.txt") == Health("temperature", {"mode": 1.0, "temperature_c": 36.72})
    assert parsed("heart.txt") == Health("heart_rate", {"heart_rate": 88.0})
    assert parsed("oxygen.txt") == Health("blood_oxygen", {"spo2": 98.0})
    assert parse(make("bphrt,0,0,71,,,,")) == Health("heart_rate", {"heart_rate": 71.0})
    assert parse(make("bphrt,120,79,0,,,,")) == Health(
        "blood_pressure", {"systolic": 120.0, "diastolic": 79.0}
    )
    assert parse(make("BLOOD,109,68")) == Health(
        "blood_pressure", {"systolic": 109.0, "diastolic": 68.0}
    )
    assert parse(make("heart,0")) == Health("heart_rate", {})
    assert parse(make("PULSE,72")) == Health("heart_rate", {"heart_rate": 72.0})
    assert parse(make("btemp2,0,0")) == Health("temperature", {"mode": 0.0, "too_low": 1.0})
    assert parse(make("btemp2,1,1")) == Health("temperature", {"mode": 1.0, "too_high": 1.0})
    assert parse(make("TEMP,36.6")) == Health("temperature", {"temperature_c": 36.6})


def test_health_replies() -> None:
    assert reply_for(frame_of("bphrt.txt")) == b"[3G*7402610015*0005*bphrt]"
    assert reply_for(frame_of("btemp2.txt")) == b"[3G*7402610015*0006*btemp2]"
    assert reply_for(frame_of("oxygen.txt")) == b"[3G*7402610015*0008*oxygen,1]"
    assert reply_for(frame_of("heart.txt")) is None
    # the older blood-pressure upload is answered like bphrt: echoed as spelt
    (blood,) = FrameReader().feed(b"[3G*7402610015*000C*BLOOD,109,68]")
    assert reply_for(blood) == b"[3G*7402610015*0005*BLOOD]"
    (lower,) = FrameReader().feed(b"[3G*7402610015*000C*blood,109,68]")
    assert reply_for(lower) == b"[3G*7402610015*0005*blood]"


def test_other_commands() -> None:
    assert parsed("tkq.txt") == Other("TKQ", ())
    assert parsed("iccid.txt") == Other(
        "ICCID", ("89860041191504366046", "", "", "", "mqtt"), b"89860041191504366046,,,,mqtt"
    )
    voice = parsed("tk_voice.bin")
    assert isinstance(voice, Other) and voice.command == "TK"
    assert voice.payload == raw("tk_voice.audio")
    assert parse(make("hrtstart")) == Other("hrtstart", ())


def test_other_replies() -> None:
    assert reply_for(frame_of("tkq.txt")) == b"[3G*7402610015*0003*TKQ]"
    assert reply_for(frame_of("tkq2.txt")) == b"[3G*7402610015*0004*TKQ2]"
    assert reply_for(make("INIT,13800000000,1,1")) == b"[3G*7402610015*0006*INIT,1]"
    assert reply_for(make("RYIMEI,861234567890123")) == b"[3G*7402610015*0008*RYIMEI,1]"
    assert reply_for(make("calllog,10086,,1,1,1719300000,62")) == (
        b"[3G*7402610015*0009*calllog,1]"
    )
    for name in ("iccid.txt", "tk_voice.bin"):
        assert reply_for(frame_of(name), parsed(name)) is None


def test_keep_alive_reply_byte_for_byte() -> None:
    assert reply_for(frame_of("lk.txt"), KeepAlive()) == b"[3G*7402610015*0002*LK]"
    assert reply_for(frame_of("lk_steps.txt")) == b"[3G*7402610015*0002*LK]"
    assert reply_for(make("LK", vendor="SG", device="8800000015")) == b"[SG*8800000015*0002*LK]"
    assert reply_for(make("LK", vendor="CS")) == b"[CS*7402610015*0002*LK]"
    broken = make("LK,x,y,z")
    with pytest.raises(FrameError):
        parse(broken)
    assert reply_for(broken, None) == b"[3G*7402610015*0002*LK]"


# -- the variations seen in the wild -----------------------------------------

REST = "0.00,0.0,0.0,0,100,50,0,0,00000000,0"


def test_coordinate_signs_and_hemispheres() -> None:
    def at(lat: str, lon: str) -> tuple[float | None, float | None]:
        p = ud(REST, head=f"UD,250624,083015,A,{lat},{lon}")
        return p.lat, p.lon

    assert at("33.48,S", "70.76,W") == (-33.48, -70.76)
    assert at("-33.48,N", "-70.76,E") == (-33.48, -70.76)  # a sign wins
    assert at("38.0,N", "-9.0,W") == (38.0, -9.0)
    assert at(" 48.78,N", " 9.15,E") == (48.78, 9.15)
    assert at("52.7,N", "0.37,") == (52.7, 0.37)  # no hemisphere: positive


def test_network_layouts() -> None:
    # a cell count of 0 then the Wi-Fi count at once
    p = ud("0.00,0.0,0.0,0,100,50,0,0,00000000,0,2,a,00:0c:42:51:cf:cd,-53,b,0,-60,0.0")
    assert p.cells == () and [w.mac for w in p.wifi] == ["00:0c:42:51:cf:cd"]
    # 0 cells with a TA, MCC and MNC first, and an empty Wi-Fi count
    p = ud("0.00,0.0,0.0,0,100,50,0,0,00000000,0,1,,,,00")
    assert (p.cells, p.wifi, p.accuracy_m) == ((), (), None)
    # an empty cell signal; an old 4-digit status
    p = ud("0.1,0.0,100,7,60,90,1000,50,0001,1,1,240,7,34505,80806406,,00")
    assert p.cells == (Cell(240, 7, 34505, 80806406, None),)
    assert p.status == 1 and p.alarms == frozenset()
    # truncated: the cells stop where the fields do
    p = ud("0.00,0.0,0.0,0,100,50,0,0,00000000,3,255,460,0,9360,4082,131,9360")
    assert p.cells == (Cell(460, 0, 9360, 4082, 131),)
    # nothing after the status
    p = ud("0.00,0.0,0.0,0,100,50,0,0,00000000")
    assert (p.cells, p.wifi) == ((), ())


def test_cdma_cells_are_not_parsed_but_wifi_is() -> None:
    p = ud(
        "0.00,0.0,0.0,0,100,50,0,0,00000000,1,1,460,3,13824,3,4097,1,x,00:0c:42:51:cf:cd,-53,0",
        head="UD_CDMA,250624,083015,V,0,N,0,E",
    )
    assert p.kind == "UD_CDMA" and p.cells == ()
    assert [w.mac for w in p.wifi] == ["00:0c:42:51:cf:cd"]


def test_vendor_named_alarm() -> None:
    f = make(
        "ALCUSTOMER1,251120,081821,V,0.0,N,0.0,E,2.58,317.462,35.147,14,100,2,11089,0,00100008,"
        "1,1,460,01,42308,101992452,100,0"
    )
    p = parse(f)
    assert isinstance(p, Position) and p.kind == "AL" and p.alarms == {"removed"}
    assert reply_for(f, p) == b"[3G*7402610015*0002*AL]"
    assert parse(make("ALARMSETTING,1")) == Other("ALARMSETTING", ("1",), b"1")
    assert reply_for(make("ALARMSETTING,1")) is None


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("UD,250624,083015,A,31.2,N,121.4,E", "watch.bad_position"),
        ("UD,320624,083015,A,31.2,N,121.4,E," + REST, "watch.bad_position"),
        ("UD,250624,246000,A,31.2,N,121.4,E," + REST, "watch.bad_position"),
        ("UD,2506,083015,A,31.2,N,121.4,E," + REST, "watch.bad_position"),
        ("UD,250624,083015,X,31.2,N,121.4,E," + REST, "watch.bad_position"),
        ("UD,250624,083015,A,north,N,121.4,E," + REST, "watch.bad_position"),
        ("UD,250624,083015,A,nan,N,121.4,E," + REST, "watch.bad_position"),
        ("UD,250624,083015,A,95.0,N,121.4,E," + REST, "watch.bad_position"),
        ("UD,250624,083015,A,31.2,Q,121.4,E," + REST, "watch.bad_position"),
        ("UD,250624,083015,A,31.2,N,,E," + REST, "watch.bad_position"),
        ("UD,250624,083015,A,31.2,N,121.4,E,0,0,0,x,100,50,0,0,00000000", "watch.bad_position"),
        ("UD,250624,083015,A,31.2,N,121.4,E,0,0,0,0,100,50,0,0,zz", "watch.bad_position"),
        ("UD,250624,083015,A,31.2,N,121.4,E,0,0,0,0,100,50,0,0,123456789", "watch.bad_position"),
        ("UD,250624,083015,A,31.2,N,121.4,E,inf,0,0,0,100,50,0,0,0", "watch.bad_position"),
        ("AL,250624,083015", "watch.bad_position"),
        ("LK,x", "watch.bad_keepalive"),
        ("bphrt,high,low,72", "watch.bad_health"),
        ("bphrt,120", "watch.bad_health"),
        ("btemp2,1", "watch.bad_health"),
        ("btemp2,1,hot", "watch.bad_health"),
        ("heart", "watch.bad_health"),
        ("oxygen,0,nan", "watch.bad_health"),
    ],
)
def test_malformed_fields_raise_frame_error(content: str, code: str) -> None:
    with pytest.raises(FrameError) as e:
        parse(make(content))
    assert e.value.code == code


_field = st.text(alphabet="0123456789.-ANSEWVxX:, ", max_size=12)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(
        ["UD", "UD2", "UD_LTE", "AL", "WT", "LK", "bphrt", "btemp2", "oxygen", "heart"]
    ),
    st.lists(_field, max_size=40),
)
def test_parse_raises_nothing_but_frame_error(command: str, fields: list[str]) -> None:
    try:
        msg = parse(make(",".join([command, *fields])))
    except FrameError as e:
        assert e.code.startswith("watch.")
        return
    if isinstance(msg, Position):
        assert (msg.lat is None) == (msg.lon is None)
        assert not (msg.lat == 0.0 and msg.lon == 0.0)
        assert msg.valid or msg.lat is None
