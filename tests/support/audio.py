"""Voice-note files made for the tests, byte by byte, in the shapes the clients
record: WebM/Opus as a browser's MediaRecorder writes it (a Segment and
Clusters of unknown size, written live, so no Duration in its Info) and
MP4/AAC (M4A) as iOS writes it (the duration in the audio track's ``mdhd``)."""

from __future__ import annotations

import struct

# --- WebM (EBML) --------------------------------------------------------------------------------

_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _el(eid: int, payload: bytes = b"", *, unknown: bool = False) -> bytes:
    """One EBML element: its id, its size (8-byte form, or "unknown"), its payload."""
    head = eid.to_bytes((eid.bit_length() + 7) // 8, "big")
    size = _UNKNOWN_SIZE if unknown else b"\x01" + len(payload).to_bytes(7, "big")
    return head + size + payload


def _uint(eid: int, v: int) -> bytes:
    return _el(eid, v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big"))


def _str(eid: int, s: str) -> bytes:
    return _el(eid, s.encode("ascii"))


def webm(
    seconds: float,
    *,
    codec: str = "A_OPUS",
    video: bool = False,
    duration_ms: float | None = None,
    block_ms: int = 20,
) -> bytes:
    """A WebM file: one audio track of ``codec`` (and a VP8 video track when
    ``video``), 20 ms blocks in clusters of a second; ``duration_ms`` written
    into its Info when given (a file made by a tool, not a recorder)."""
    header = _el(
        0x1A45DFA3,
        _uint(0x4286, 1) + _uint(0x42F7, 1) + _str(0x4282, "webm") + _uint(0x4287, 4),
    )
    info = _uint(0x2AD7B1, 1_000_000) + _str(0x4D80, "Chrome") + _str(0x5741, "Chrome")
    if duration_ms is not None:
        info += _el(0x4489, struct.pack(">d", duration_ms))
    tracks = _el(0xAE, _uint(0xD7, 1) + _uint(0x83, 2) + _str(0x86, codec))
    if video:
        tracks += _el(0xAE, _uint(0xD7, 2) + _uint(0x83, 1) + _str(0x86, "V_VP8"))
    body = _el(0x1549A966, info) + _el(0x1654AE6B, tracks)
    blocks = int(seconds * 1000 / block_ms)
    per_cluster = 1000 // block_ms
    for first in range(0, blocks, per_cluster):
        cluster = _uint(0xE7, first * block_ms)
        for n in range(first, min(blocks, first + per_cluster)):
            rel = (n - first) * block_ms
            cluster += _el(0xA3, b"\x81" + struct.pack(">hB", rel, 0x80) + b"\xfc" + b"\x00" * 40)
        body += _el(0x1F43B675, cluster, unknown=True)
    return header + _el(0x18538067, body, unknown=True)


# --- MP4 (ISO base media) -----------------------------------------------------------------------


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def _desc(tag: int, payload: bytes) -> bytes:
    return bytes([tag, len(payload)]) + payload


def m4a(seconds: float, *, handler: bytes = b"soun", entry: bytes = b"mp4a") -> bytes:
    """An M4A file: one track (``handler`` soun: audio) whose sample entry is
    ``entry`` (mp4a: AAC), its length in the media header at 44.1 kHz."""
    rate = 44100
    ftyp = _box(b"ftyp", b"M4A " + struct.pack(">I", 0) + b"M4A mp42isom")
    mvhd = _full(b"mvhd", struct.pack(">IIII", 0, 0, 1000, int(seconds * 1000)) + bytes(80))
    tkhd = _full(b"tkhd", bytes(80), flags=7)
    mdhd = _full(b"mdhd", struct.pack(">IIIIHH", 0, 0, rate, int(seconds * rate), 0x55C4, 0))
    hdlr = _full(b"hdlr", bytes(4) + handler + bytes(12) + b"SoundHandler\x00")
    sample = (
        bytes(6) + struct.pack(">H", 1) + bytes(8) + struct.pack(">HHHHI", 1, 16, 0, 0, rate << 16)
    )
    # the AAC decoder's configuration: AAC LC, 44.1 kHz, mono
    asc = _desc(0x05, b"\x12\x08")
    config = _desc(0x04, bytes([0x40, 0x15]) + bytes(3) + struct.pack(">II", 64000, 64000) + asc)
    esds = _full(b"esds", _desc(0x03, struct.pack(">HB", 1, 0) + config + _desc(0x06, b"\x02")))
    stsd = _full(b"stsd", struct.pack(">I", 1) + _box(entry, sample + esds))
    minf = _box(b"minf", _box(b"stbl", stsd))
    trak = _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr + minf))
    return ftyp + _box(b"moov", mvhd + trak) + _box(b"mdat", bytes(64))
