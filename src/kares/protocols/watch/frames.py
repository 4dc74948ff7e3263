"""The kids'-watch text protocol over TCP ("3G protocol"): framing, parsing, replies.

Pure: bytes in, values out, no I/O. The TCP listener feeds each connection's
bytes to a :class:`FrameReader`, :func:`parse` s each :class:`Frame` and writes
back what :func:`reply_for` says.

What the protocol is
====================

Spoken by the Wonlex / SeTracker / Beesure family of children's and elderly
watches (the vendors' "4G Communication Protocol" documents, and the way
open servers such as Traccar decode it). Every message, both ways, is::

    [VV*IIIIIIIIII*LLLL*CONTENT]

- ``VV``: a two-character vendor tag (``3G``, ``SG``, ``CS``, ``ZJ``, seen in
  lower case too). Replies echo it.
- ``IIIIIIIIII``: the device id, usually 10 digits taken from the IMEI (some
  send the whole 15-digit IMEI). Accepted: 1-32 letters/digits.
- ``LLLL``: the content length, four hex digits (upper or lower case both
  seen). Some vendors (``ZJ``) put a four-hex-digit sequence number before it:
  ``[ZJ*id*0034*0009*LK,0,0,19]``; that is :attr:`Frame.index`, and replies
  carry it back.
- ``CONTENT``: ``CMD`` or ``CMD,field,field,...``.

Binary content (voice ``TK``, ``JXTK``, images) escapes five bytes as 0x7D
followed by a code: 0x7D -> 7D 01, ``[`` -> 7D 02, ``]`` -> 7D 03,
``,`` -> 7D 04, ``*`` -> 7D 05 (:func:`escape`, :func:`unescape`). Text fields
are not escaped, so a Wi-Fi name may contain a raw ``[``, ``]`` or ``}`` (real
captures show ``[LG_Wall-Mount A/C]e725`` as an SSID). :func:`unescape` turns
a 0x7D that is not followed by a code 1-5 back into itself.

The length, as devices really send it
-------------------------------------

The documents say "content length" in bytes, and do not say whether escapes
count. A real capture of a ``ZJ`` watch's voice frame settles it for that
firmware: ``JXTK`` declared 0x0439 = 1081, which is the bytes on the wire,
escapes included (1058 once unescaped). Traccar's hand-made ``TK`` test
vector counts the unescaped bytes instead (``000e`` for 8 + 6 bytes, 19 on
the wire). For text, which has no escapes, the two agree: the bytes between
the length's ``*`` and the ``]`` (UTF-8 bytes, not characters). And devices
get it wrong often: in public captures the ``SG`` watches' position reports
declare 3 bytes fewer than they send, some declare more
(``[SG*...*0009*LK,0,100]`` carries 8), and even the vendor's own document
has examples off by one. Widely used servers ignore the length and cut at
the first ``]``. So the reader here:

1. ends the frame where the declared length says, counted in wire bytes or
   else in unescaped bytes, when a ``]`` is exactly there (that is what lets
   a raw ``]`` inside an SSID through);
2. else ends it at the first ``]`` - once the declared end is in the
   buffer, or earlier when that ``]`` is followed (after an optional line
   end) by the next frame's ``[`` or by the end of what has arrived (a
   frame that declares too much must not wait for the next one: the watch
   waits for our ``LK`` reply). Such a
   frame is delivered with ``length_ok=False`` and counted in
   :attr:`ReaderStats.length_mismatches`; with ``strict_length=True`` it is
   dropped (and counted) instead.

The one thing this gets wrong: a frame with a raw ``]`` in an SSID whose TCP
segment ends exactly after that ``]`` is cut there (the rest is then skipped
as garbage). Devices write whole frames, so that is rare, and it costs one
position's Wi-Fi tail at worst.

Bytes before a ``[`` are skipped and counted as garbage; a ``[`` that does
not start a valid header counts as a bad header and is skipped; a frame
longer than ``max_frame`` (64 KiB by default), declared or actual, is dropped
and counted, so a client cannot make the buffer grow past that.

Messages from the watch
-----------------------

``LK[,steps,rolling,battery]``: keep-alive every few minutes; the server
must answer ``LK`` or the watch reconnects, then reboots.

Positions: ``UD`` (live), ``UD2`` (stored while offline, sent later),
``UD_LTE`` / ``UD_WCDMA`` / ``UD_TDSCDMA`` (the same on 4G/3G; the cell part
has the same shape, with TAC/ECI or UTRAN ids), ``UD_CDMA`` (cells are
SID/NID/BID, not parsed), ``UD3`` (seen in the wild), ``WT`` (the newer
documents: a weather request carrying the same location data; older ones: a
blind-area report) and ``AL`` / ``AL_<radio>`` (alarm, answered ``AL`` or the
watch repeats it; a vendor-named ``AL...`` command whose fields are a
position, e.g. ``ALCUSTOMER1``, is one too). Fields after the command::

    date ddMMyy, time HHmmss (UTC), A|V, lat, N|S, lon, E|W, speed km/h,
    course, altitude m, satellites, GSM signal 0-100, battery %, steps,
    rolling (turns in sleep), terminal status (hex),
    cell count, TA, MCC, MNC, then per cell LAC, CID, signal,
    Wi-Fi count, then per AP name, MAC, signal dBm,
    positioning accuracy m

Seen variations, all accepted: a space before a coordinate; a negative
coordinate with N/E or with S/W (a sign wins: ``-33.48,N`` is south); an
empty hemisphere; a 4-digit status; an empty cell signal; a cell count of 0
followed directly by the Wi-Fi count (or by TA/MCC/MNC first); MACs with
one-digit octets; an AP with MAC ``0`` (skipped); SSIDs with commas.

The terminal status (32 bits, hex): the low 16 bits are states, the high 16
alarms. Bits: 0 low battery (state), 1 out of fence, 2 in fence, 3 wrist
strap, 4 still/moving (documented "1: stationary"; Traccar reads it as
moving), 16 SOS, 17 low battery alarm, 18 out-of-fence alarm, 19 in-fence
alarm, 20 removed from the wrist, 21 fall (elderly watches: "SOS (fall)"),
22 abnormal heart rate. :attr:`Position.alarms` holds the names of the alarm
bits 16-21 (:data:`ALARM_BITS`); the states and bit 22 stay in
:attr:`Position.status`.

Health: ``bphrt,systolic,diastolic,heart_rate,height,gender,age,weight`` (0:
not measured; height/gender/age/weight are profile values the watch echoes,
deliberately not kept), answered ``bphrt``; ``btemp2,mode,temp`` (mode 0
forehead, 1 wrist; a temperature of 0 means "too low to measure", 1 "too
high"), answered ``btemp2``; ``oxygen,type,spo2``, answered ``oxygen,1``;
``BLOOD,sys,dia[,bpm]`` (the older blood-pressure upload that ``bphrt``
replaced), answered like ``bphrt``: the command echoed as the watch spelt it
(``BLOOD``). No vendor document we found names its reply; the watches that
send it resend an unanswered upload as they do ``bphrt``, and the echo is
the answer the protocol gives every upload of this family. ``heart,bpm`` /
``PULSE,bpm`` / ``TEMP,deg`` have no reply known. ``hrtstart`` is the watch
acknowledging our own command.

Everything else is :class:`Other`. Of those, ``TKQ`` / ``TKQ2`` (the watch
asking for pending voice messages) are echoed, ``INIT`` is answered
``INIT,1``, ``calllog`` ``calllog,1`` and ``RYIMEI`` ``RYIMEI,1``.

Chat (voice notes and text)
---------------------------

Voice notes are AMR-NB files (``#!AMR\n`` and 20 ms frames), binary, escaped.

- ``TK,<audio>`` from the watch: one voice note the child recorded, whole in
  one frame. The server answers ``TK,1`` once it is stored (the watch shows
  it as sent) or ``TK,0`` when it is refused (not kept; the watch shows it as
  failed), never ``TK,1`` for a note that was not kept
  (:func:`voice_reply`). :func:`voice_of` reads it.
- ``JXTK,<flag>,<name>,<part>,<parts>,<audio part>`` from the watch (the
  ``ZJ`` firmwares): one voice note split over several frames, numbered from
  1, the first part starting with ``#!AMR``. Each part is answered
  ``JXTKR,1``; the last one only once the whole note is stored (``JXTKR,0``
  when it is refused). :func:`voice_of` reads a part; the listener joins them.
- ``TK,<audio>`` to the watch (:func:`voice_frame`): a voice note it plays.
  The whole note is one frame, so at most 65,532 bytes once escaped (about
  40 s at 12.2 kbit/s; :func:`voice_fits`). The watch answers ``TK,1``
  (received) or ``TK,0`` (failed): :func:`ack_of`.
- ``MESSAGE,<text>`` to the watch (:func:`text_frame`): a text it shows, the
  text as UTF-16 big-endian code units in upper-case hex (the vendors'
  "unicode" fields: ``MESSAGE,4F60597D`` is 你好). The watch answers
  ``MESSAGE`` (:func:`ack_of`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from kares.geo.resolver import Cell, WifiAp, normalise_mac

MAX_FRAME = 64 * 1024
MAX_DEVICE_ID = 32
MAX_WIFI = 64
MAX_CELLS = 64

# Terminal status: alarm name -> bit (see the module doc)
ALARM_BITS: dict[str, int] = {
    "sos": 16,
    "low_battery": 17,
    "fence_out": 18,
    "fence_in": 19,
    "removed": 20,
    "fall": 21,
}
HEART_RATE_ALARM_BIT = 22

PositionKind = Literal[
    "UD", "UD2", "UD3", "UD_LTE", "UD_WCDMA", "UD_TDSCDMA", "UD_CDMA", "WT", "AL"
]
HealthKind = Literal["heart_rate", "blood_pressure", "temperature", "blood_oxygen"]

_OPEN, _CLOSE, _STAR, _ESC_BYTE = 0x5B, 0x5D, 0x2A, 0x7D
_ESCAPES = {
    0x7D: b"\x7d\x01",
    0x5B: b"\x7d\x02",
    0x5D: b"\x7d\x03",
    0x2C: b"\x7d\x04",
    0x2A: b"\x7d\x05",
}
_UNESCAPES = {1: b"\x7d", 2: b"[", 3: b"]", 4: b",", 5: b"*"}
_TO_ESCAPE = re.compile(rb"[\x7d\x5b\x5d\x2c\x2a]")
_ESC_PAIR = re.compile(rb"\x7d[\x01-\x05]")
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_LINE_END = frozenset(b"\r\n")
_VENDOR = re.compile(r"[0-9A-Za-z]{2}")
_DEVICE_ID = re.compile(r"[0-9A-Za-z]{1,32}")
_INDEX = re.compile(r"[0-9A-Fa-f]{4}")
_DIGITS6 = re.compile(r"\d{6}")
_MAC_LIKE = re.compile(r"[0-9a-fA-F]{1,2}(?:[:\-][0-9a-fA-F]{1,2}){5}|[0-9a-fA-F]{12}")


class FrameError(ValueError):
    """A frame or a field that does not parse; ``code`` is stable:

    ``watch.bad_frame`` (arguments to :func:`encode`), ``watch.bad_keepalive``,
    ``watch.bad_position``, ``watch.bad_health``.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# -- escaping ----------------------------------------------------------------


def escape(b: bytes) -> bytes:
    """Escape binary content for the wire (0x7D ``[`` ``]`` ``,`` ``*``)."""
    return _TO_ESCAPE.sub(lambda m: _ESCAPES[m[0][0]], bytes(b))


def unescape(b: bytes) -> bytes:
    """Undo :func:`escape`; a 0x7D not followed by 1-5 stays as it is."""
    data = bytes(b)
    if _ESC_BYTE not in data:
        return data
    return _ESC_PAIR.sub(lambda m: _UNESCAPES[m[0][1]], data)


# -- frames ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``content`` is as on the wire (escaped): its text fields
    split on the raw commas; :attr:`payload` is it unescaped. ``command`` is
    the content up to the first comma. ``index`` is the optional sequence
    number some vendors send before the length; ``length_ok`` is False when
    the declared length did not match (the frame was cut at its ``]``)."""

    vendor: str
    device_id: str
    content: bytes
    command: str
    index: str | None = None
    length_ok: bool = True

    @property
    def payload(self) -> bytes:
        return unescape(self.content)


def encode(vendor: str, device_id: str, content: bytes | str, *, index: str | None = None) -> bytes:
    """One frame as bytes: ``[vendor*id*LLLL*content]`` with LLLL four upper-case
    hex digits counting the content's bytes as sent (escapes included, as the
    watches count them). ``content`` is the wire form:
    text as it is, binary parts already through :func:`escape`.
    ``encode(f.vendor, f.device_id, f.content, index=f.index)`` gives back a
    well-formed frame byte for byte."""
    if not _VENDOR.fullmatch(vendor):
        raise FrameError("watch.bad_frame", "the vendor is two letters or digits")
    if not _DEVICE_ID.fullmatch(device_id):
        raise FrameError("watch.bad_frame", "the device id is 1-32 letters or digits")
    if index is not None and not _INDEX.fullmatch(index):
        raise FrameError("watch.bad_frame", "the index is four hex digits")
    body = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    length = len(body)
    if length > 0xFFFF:
        raise FrameError("watch.bad_frame", "the content is longer than 65535 bytes")
    head = f"[{vendor}*{device_id}*" + (f"{index}*" if index is not None else "")
    return head.encode("ascii") + b"%04X*" % length + body + b"]"


@dataclass
class ReaderStats:
    """What a :class:`FrameReader` has seen and skipped."""

    frames: int = 0
    garbage_bytes: int = 0
    bad_headers: int = 0
    length_mismatches: int = 0
    oversize: int = 0


@dataclass(frozen=True, slots=True)
class _Header:
    vendor: str
    device_id: str
    index: str | None
    length: int
    content_start: int


_MORE = object()  # the header is not complete yet


def _parse_header(buf: bytearray, pos: int) -> _Header | object | None:
    """The header of a frame starting at ``buf[pos] == '['``: a :class:`_Header`,
    ``_MORE`` when more bytes are needed to tell, or None when it is not one."""
    n = len(buf)
    i = pos + 1
    for _ in range(2):
        if i >= n:
            return _MORE
        if buf[i] not in _ALNUM:
            return None
        i += 1
    if i >= n:
        return _MORE
    if buf[i] != _STAR:
        return None
    i += 1
    id_start = i
    while True:
        if i >= n:
            return _MORE
        c = buf[i]
        if c == _STAR:
            break
        if c not in _ALNUM or i - id_start >= MAX_DEVICE_ID:
            return None
        i += 1
    if i == id_start:
        return None
    device_id = buf[id_start:i].decode("ascii")
    i += 1
    # the length, or a sequence number and then the length: 4 hex digits and '*'
    groups: list[str] = []
    while len(groups) < 2:
        j = i
        while j < n and j < i + 4 and buf[j] in _HEX:
            j += 1
        if j == n:
            return _MORE
        if j < i + 4 or buf[j] != _STAR:
            break
        groups.append(buf[i:j].decode("ascii"))
        i = j + 1
    if not groups:
        return None
    return _Header(
        vendor=buf[pos + 1 : pos + 3].decode("ascii"),
        device_id=device_id,
        index=groups[0] if len(groups) == 2 else None,
        length=int(groups[-1], 16),
        content_start=i,
    )


def _declared_end(buf: bytearray, start: int, length: int) -> int | None:
    """Where the ``]`` must be if ``length`` unescaped bytes start at ``start``;
    None when the buffer does not reach that far yet."""
    n = len(buf)
    pairs = 0
    while True:
        end = start + length + pairs
        if end >= n:
            return None
        found = sum(1 for _ in _ESC_PAIR.finditer(buf, start, end))
        if found == pairs:
            break
        pairs = found
    if end > start and buf[end - 1] == _ESC_BYTE and 1 <= buf[end] <= 5:
        end += 1  # an escape pair cut in two by the estimate
        if end >= n:
            return None
    return end


def _frame_end(buf: bytearray, head: _Header) -> tuple[int | None, bool, bool]:
    """Where the frame ends: (index of its ']' or None, length matched, still
    waiting for the declared length to arrive)."""
    start, length = head.content_start, head.length
    # the length counting wire bytes (escapes included), as devices send it, then
    # counting unescaped bytes; wire first: the other can reach into the next frame
    wire_end = start + length
    if wire_end < len(buf) and buf[wire_end] == _CLOSE:
        return wire_end, True, False
    unescaped_end = _declared_end(buf, start, length)
    if unescaped_end is not None and buf[unescaped_end] == _CLOSE:
        return unescaped_end, True, False
    close = buf.find(b"]", start)
    if unescaped_end is not None:
        # all the declared length is here and no ']' follows it: the first ']' ends it
        return (close if close >= 0 else None), False, False
    while close >= 0:
        after = close + 1
        while after < len(buf) and buf[after] in _LINE_END:
            after += 1
        if after == len(buf) or buf[after] == _OPEN:
            return close, False, False
        close = buf.find(b"]", close + 1)
    return None, False, True


class FrameReader:
    """Incremental decoder for one connection: ``feed`` it whatever TCP gave
    and get the complete frames back. Never raises on bad input: what it
    skips is counted in :attr:`stats` (see the module doc for the rules)."""

    def __init__(self, *, max_frame: int = MAX_FRAME, strict_length: bool = False) -> None:
        if max_frame < 16:
            raise ValueError("max_frame is too small to hold a frame")
        self.max_frame = max_frame
        self.strict_length = strict_length
        self.stats = ReaderStats()
        self._buf = bytearray()
        self._wait_for = 0  # buffer length below which a pending frame cannot end by length

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        if self._wait_for and len(buf) < self._wait_for and b"]" not in data:
            return []
        self._wait_for = 0
        out: list[Frame] = []
        stats = self.stats
        pos = 0
        while pos < len(buf):
            start = buf.find(b"[", pos)
            if start < 0:
                stats.garbage_bytes += len(buf) - pos
                pos = len(buf)
                break
            stats.garbage_bytes += start - pos
            pos = start
            head = _parse_header(buf, pos)
            if head is _MORE:
                break
            if not isinstance(head, _Header):
                stats.bad_headers += 1
                pos += 1
                continue
            if head.content_start - pos + head.length + 1 > self.max_frame:
                stats.oversize += 1
                pos += 1
                continue
            end, exact, by_length = _frame_end(buf, head)
            if end is None:
                if len(buf) - pos > self.max_frame:
                    stats.oversize += 1
                    pos += 1
                    continue
                if by_length:  # nothing can end it before this many bytes or a ']'
                    self._wait_for = head.content_start - pos + head.length + 1
                break
            content = bytes(buf[head.content_start : end])
            pos = end + 1
            if not exact:
                stats.length_mismatches += 1
                if self.strict_length:
                    continue
            comma = content.find(b",")
            command = unescape(content if comma < 0 else content[:comma])
            out.append(
                Frame(
                    vendor=head.vendor,
                    device_id=head.device_id,
                    content=content,
                    command=command.decode("utf-8", "replace").strip(),
                    index=head.index,
                    length_ok=exact,
                )
            )
            stats.frames += 1
        del buf[:pos]
        return out


# -- messages ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeepAlive:
    steps: int | None = None
    rolling: int | None = None
    battery: int | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """A location report. ``lat``/``lon`` are None unless the watch had a GPS
    fix (``A``) that is not exactly 0,0 (then ``valid`` is False too);
    ``accuracy_m`` is the watch's own estimate, None without a position.
    ``cells``/``wifi`` are what it heard, for a resolver to place."""

    kind: PositionKind
    time: datetime
    valid: bool
    lat: float | None
    lon: float | None
    speed_kmh: float | None
    course: float | None
    altitude_m: float | None
    satellites: int | None
    gsm_signal: int | None
    battery: int | None
    steps: int | None
    rolling: int | None
    status: int
    alarms: frozenset[str]
    cells: tuple[Cell, ...]
    wifi: tuple[WifiAp, ...]
    accuracy_m: float | None


@dataclass(frozen=True, slots=True)
class Health:
    """A measurement. ``values`` keys by kind: heart_rate ``heart_rate`` (bpm);
    blood_pressure ``systolic``/``diastolic`` (mmHg) and ``heart_rate`` when
    measured with it; temperature ``temperature_c`` and ``mode`` (0 forehead,
    1 wrist), or ``too_low``/``too_high`` = 1 when the watch could not
    measure; blood_oxygen ``spo2`` (%). A value the watch sent as 0 (not
    measured) is left out."""

    kind: HealthKind
    values: dict[str, float]
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Other:
    """Any other command: its fields as text, and ``payload``, the unescaped
    bytes after the command's comma (the audio of a ``TK``)."""

    command: str
    fields: tuple[str, ...]
    payload: bytes = b""


Message = KeepAlive | Position | Health | Other


def _text(field: bytes) -> str:
    return unescape(field).decode("utf-8", "replace")


def _opt_int(s: str, code: str, what: str) -> int | None:
    t = s.strip()
    if not t:
        return None
    try:
        return int(t)
    except ValueError:
        raise FrameError(code, f"{what} is not a whole number: {t[:20]!r}") from None


def _opt_float(s: str, code: str, what: str) -> float | None:
    t = s.strip()
    if not t:
        return None
    try:
        x = float(t)
    except ValueError:
        raise FrameError(code, f"{what} is not a number: {t[:20]!r}") from None
    if not math.isfinite(x):
        raise FrameError(code, f"{what} is not a finite number")
    return x


def _loose_int(s: str) -> int | None:
    try:
        return int(s.strip())
    except ValueError:
        return None


def _cell_number(s: str) -> int | None:
    """LAC/CID: decimal, or hex when it has hex letters (some firmwares)."""
    t = s.strip()
    if not t:
        return None
    if t.isdigit():
        return int(t)
    if all(c in "0123456789abcdefABCDEF" for c in t):
        return int(t, 16)
    return None


_BAD_POS = "watch.bad_position"


def _coordinate(value: str, hemi: str, pos_neg: str, limit: float, what: str) -> float:
    x = _opt_float(value, _BAD_POS, what)
    if x is None:
        raise FrameError(_BAD_POS, f"{what} is missing")
    h = hemi.strip().upper()
    if h not in ("", pos_neg[0], pos_neg[1]):
        raise FrameError(_BAD_POS, f"{what} hemisphere is {h[:5]!r}")
    x = -abs(x) if (x < 0 or h == pos_neg[1]) else x
    if abs(x) > limit:
        raise FrameError(_BAD_POS, f"{what} {x} is out of range")
    return x


def _time(date: str, clock: str) -> datetime:
    d, t = date.strip(), clock.strip()
    if not _DIGITS6.fullmatch(d) or not _DIGITS6.fullmatch(t):
        raise FrameError(_BAD_POS, f"date/time {d[:8]!r} {t[:8]!r} is not ddMMyy HHmmss")
    try:
        return datetime(
            2000 + int(d[4:6]),
            int(d[2:4]),
            int(d[0:2]),
            int(t[0:2]),
            int(t[2:4]),
            int(t[4:6]),
            tzinfo=UTC,
        )
    except ValueError:
        raise FrameError(_BAD_POS, f"date/time {d} {t} is not a real time") from None


def _wifi_tail(
    rest: list[str], j: int, *, strict: bool
) -> tuple[tuple[WifiAp, ...], float | None] | None:
    """The Wi-Fi part from ``rest[j]`` (count, then name/MAC/signal triples)
    and the accuracy after it. None (when ``strict``) if it does not fit."""
    if j >= len(rest):
        return (), None
    count_s = rest[j].strip()
    count = 0 if not count_s else _loose_int(count_s)
    if count is None or not 0 <= count <= MAX_WIFI:
        return None if strict else ((), None)
    j += 1
    aps: list[WifiAp] = []
    for _ in range(count):
        k: int | None = j + 1
        if not (j + 2 < len(rest) and _loose_int(rest[j + 2]) is not None):
            # a name with commas in it spans fields: find "MAC,signal" further on
            k = next(
                (
                    m
                    for m in range(j + 2, min(j + 10, len(rest) - 1))
                    if _MAC_LIKE.fullmatch(rest[m].strip()) and _loose_int(rest[m + 1]) is not None
                ),
                None,
            )
        if k is None or k + 1 >= len(rest):
            return None if strict else (tuple(aps), None)
        mac = normalise_mac(rest[k])
        rssi = _loose_int(rest[k + 1])
        if mac is not None and rssi is not None:
            aps.append(WifiAp(name=",".join(rest[j:k]), mac=mac, rssi=rssi))
        j = k + 2
    left = rest[j:]
    if len(left) > 1:
        return None if strict else (tuple(aps), None)
    accuracy: float | None = None
    if left:
        try:
            accuracy = float(left[0])
        except ValueError:
            return None if strict else (tuple(aps), None)
        if not math.isfinite(accuracy) or accuracy <= 0:
            accuracy = None
    return tuple(aps), accuracy


def _network(
    rest: list[str], cdma: bool
) -> tuple[tuple[Cell, ...], tuple[WifiAp, ...], float | None]:
    """Cells, Wi-Fi and accuracy from the fields after the status. Lenient: a
    part that does not fit is left out, never an error (its layout varies)."""
    if not rest:
        return (), (), None
    n_cells = _loose_int(rest[0])
    if n_cells is None or not 0 <= n_cells <= MAX_CELLS:
        return (), (), None
    if n_cells == 0:
        # "0" then the Wi-Fi count, or "0,TA" or "0,TA,MCC,MNC" first
        for j in (1, 2, 4):
            got = _wifi_tail(rest, j, strict=True)
            if got is not None:
                return (), got[0], got[1]
        return (), (), None
    mcc = _loose_int(rest[2]) if len(rest) > 2 else None
    mnc = _loose_int(rest[3]) if len(rest) > 3 else None
    cells: list[Cell] = []
    j = 4
    for _ in range(n_cells):
        if j + 3 > len(rest):
            return tuple(cells), (), None
        lac, cid = _cell_number(rest[j]), _cell_number(rest[j + 1])
        rssi = _loose_int(rest[j + 2])
        if not cdma and mcc is not None and mnc is not None and lac is not None and cid is not None:
            cells.append(Cell(mcc=mcc, mnc=mnc, lac=lac, cid=cid, rssi=rssi))
        j += 3
    got = _wifi_tail(rest, j, strict=False)
    wifi, accuracy = got if got is not None else ((), None)
    return tuple(cells), wifi, accuracy


def _position_kind(command: str) -> PositionKind | None:
    c = command.upper()
    if c == "UD":
        return "UD"
    if c == "UD2":
        return "UD2"
    if c == "UD3":
        return "UD3"
    if c == "WT":
        return "WT"
    if c == "AL" or c.startswith("AL_"):
        return "AL"
    if c == "UD_LTE":
        return "UD_LTE"
    if c == "UD_WCDMA":
        return "UD_WCDMA"
    if c == "UD_TDSCDMA":
        return "UD_TDSCDMA"
    if c == "UD_CDMA":
        return "UD_CDMA"
    if c.startswith("UD_"):
        return "UD"
    return None


def _parse_position(kind: PositionKind, command: str, f: list[str]) -> Position:
    if len(f) < 16:
        raise FrameError(_BAD_POS, f"{len(f)} fields, a position has at least 16")
    when = _time(f[0], f[1])
    validity = f[2].strip().upper()
    if validity not in ("A", "V"):
        raise FrameError(_BAD_POS, f"validity is {validity[:5]!r}, not A or V")
    valid = validity == "A"
    lat = lon = None
    if valid:
        lat = _coordinate(f[3], f[4], "NS", 90.0, "latitude")
        lon = _coordinate(f[5], f[6], "EW", 180.0, "longitude")
        if lat == 0.0 and lon == 0.0:
            lat = lon = None
            valid = False
    speed = _opt_float(f[7], _BAD_POS, "speed")
    course = _opt_float(f[8], _BAD_POS, "course")
    altitude = _opt_float(f[9], _BAD_POS, "altitude")
    status_s = f[15].strip()
    if len(status_s) > 8 or any(c not in "0123456789abcdefABCDEF" for c in status_s):
        raise FrameError(_BAD_POS, f"terminal status {status_s[:12]!r} is not hex")
    status = int(status_s, 16) if status_s else 0
    cells, wifi, accuracy = _network(f[16:], cdma=command.upper().endswith("_CDMA"))
    return Position(
        kind=kind,
        time=when,
        valid=valid,
        lat=lat,
        lon=lon,
        speed_kmh=speed if speed is not None and speed >= 0 else None,
        course=course if course is not None and 0 <= course <= 360 else None,
        altitude_m=altitude,
        satellites=_opt_int(f[10], _BAD_POS, "satellites"),
        gsm_signal=_opt_int(f[11], _BAD_POS, "GSM signal"),
        battery=_opt_int(f[12], _BAD_POS, "battery"),
        steps=_opt_int(f[13], _BAD_POS, "steps"),
        rolling=_opt_int(f[14], _BAD_POS, "rolling"),
        status=status,
        alarms=alarms_from_status(status),
        cells=cells,
        wifi=wifi,
        accuracy_m=accuracy if lat is not None else None,
    )


def alarms_from_status(status: int) -> frozenset[str]:
    """The names of the alarm bits set in a terminal status (:data:`ALARM_BITS`)."""
    return frozenset(name for name, bit in ALARM_BITS.items() if status >> bit & 1)


_BAD_HEALTH = "watch.bad_health"


def _measure(f: list[str], i: int, what: str) -> float | None:
    """Field i as a measurement: missing or 0 (not measured) -> None."""
    if i >= len(f):
        return None
    x = _opt_float(f[i], _BAD_HEALTH, what)
    return x if x else None


def _parse_health(command: str, f: list[str]) -> Health | None:
    c = command.lower()
    values: dict[str, float] = {}

    def put(key: str, x: float | None) -> None:
        if x is not None:
            values[key] = x

    if c in ("bphrt", "blood"):
        if len(f) < 2:
            raise FrameError(_BAD_HEALTH, f"{command} needs systolic and diastolic")
        put("systolic", _measure(f, 0, "systolic"))
        put("diastolic", _measure(f, 1, "diastolic"))
        put("heart_rate", _measure(f, 2, "heart rate"))
        if "systolic" not in values and "diastolic" not in values and "heart_rate" in values:
            return Health("heart_rate", values)
        return Health("blood_pressure", values)
    if c in ("heart", "pulse"):
        if not f:
            raise FrameError(_BAD_HEALTH, f"{command} needs a heart rate")
        put("heart_rate", _measure(f, 0, "heart rate"))
        return Health("heart_rate", values)
    if c == "btemp2":
        if len(f) < 2:
            raise FrameError(_BAD_HEALTH, "btemp2 needs a mode and a temperature")
        mode = _opt_float(f[0], _BAD_HEALTH, "mode")
        temp = _opt_float(f[1], _BAD_HEALTH, "temperature")
        put("mode", mode)
        if temp == 0:
            values["too_low"] = 1.0
        elif temp == 1:
            values["too_high"] = 1.0
        else:
            put("temperature_c", temp)
        return Health("temperature", values)
    if c == "temp":
        if not f:
            raise FrameError(_BAD_HEALTH, "TEMP needs a temperature")
        put("temperature_c", _measure(f, 0, "temperature"))
        return Health("temperature", values)
    if c == "oxygen":
        if len(f) < 2:
            raise FrameError(_BAD_HEALTH, "oxygen needs a type and a value")
        put("spo2", _measure(f, 1, "blood oxygen"))
        return Health("blood_oxygen", values)
    return None


def _parse_keepalive(f: list[str]) -> KeepAlive:
    code = "watch.bad_keepalive"
    nums = [_opt_int(x, code, "LK field") for x in f[:3]]
    if len(nums) >= 3:
        return KeepAlive(steps=nums[0], rolling=nums[1], battery=nums[2])
    if len(nums) == 2:  # "LK,steps,battery" (SG firmwares)
        return KeepAlive(steps=nums[0], battery=nums[1])
    if len(nums) == 1:
        return KeepAlive(steps=nums[0])
    return KeepAlive()


def parse(frame: Frame) -> Message:
    """The typed message in a frame. A malformed field value raises
    :class:`FrameError` (``watch.bad_keepalive`` / ``bad_position`` /
    ``bad_health``); an unknown command is :class:`Other`, never an error."""
    raw = frame.content.split(b",")
    command = frame.command
    f = [_text(x) for x in raw[1:]]
    if command.upper() == "LK":
        return _parse_keepalive(f)
    kind = _position_kind(command)
    if kind is not None:
        return _parse_position(kind, command, f)
    if command.upper().startswith("AL"):
        # vendor-named alarms ("ALCUSTOMER1" is seen) carry a position too
        try:
            return _parse_position("AL", command, f)
        except FrameError:
            pass
    health = _parse_health(command, f)
    if health is not None:
        return health
    comma = frame.content.find(b",")
    payload = unescape(frame.content[comma + 1 :]) if comma >= 0 else b""
    return Other(command=command, fields=tuple(f), payload=payload)


# -- replies -----------------------------------------------------------------


def reply_for(frame: Frame, message: Message | None = None) -> bytes | None:
    """The exact bytes to send back for a frame, or None when none is due.

    Same vendor, device id and index as the request: ``LK`` -> ``LK``; any
    alarm (``AL``, ``AL_LTE``, ...) -> ``AL``; ``TKQ``/``TKQ2``/``bphrt``/
    ``BLOOD``/``btemp2`` echoed; ``INIT``/``oxygen``/``calllog``/``RYIMEI`` -> ``CMD,1``.
    ``message`` may be None: the reply depends on the command, so a keep-alive
    or an alarm whose fields did not parse is still answered (the watch
    retries, then reconnects, otherwise); only a vendor-named alarm
    (``ALCUSTOMER1``) is recognised from its parsed :class:`Position`."""
    command = frame.command
    upper = command.upper()
    if upper == "LK":
        content = "LK"
    elif (
        upper == "AL"
        or upper.startswith("AL_")
        or (isinstance(message, Position) and message.kind == "AL")
    ):
        content = "AL"
    elif upper in ("TKQ", "TKQ2") or command.lower() in ("bphrt", "blood", "btemp2"):
        content = command
    elif upper in ("INIT", "OXYGEN", "CALLLOG", "RYIMEI"):
        content = f"{command},1"
    else:
        return None
    return encode(frame.vendor, frame.device_id, content, index=frame.index)


# -- chat ----------------------------------------------------------------------

AMR_MAGIC = b"#!AMR\n"


@dataclass(frozen=True, slots=True)
class VoicePart:
    """A voice note, or one part of one, the watch sent: ``part`` of ``parts``
    (1 of 1 for a ``TK``), ``name`` the watch's name for the note (``JXTK``)."""

    audio: bytes
    part: int = 1
    parts: int = 1
    name: str = ""


def voice_of(frame: Frame, message: Message | None) -> VoicePart | None:
    """The voice note (or part) in a ``TK`` / ``JXTK`` frame from the watch;
    None for anything else (an acknowledgement ``TK,1`` is :func:`ack_of`)."""
    if not isinstance(message, Other):
        return None
    upper = frame.command.upper()
    if upper == "TK":
        if message.payload in (b"", b"0", b"1"):
            return None
        return VoicePart(message.payload)
    if upper == "JXTK":
        head = frame.content.split(b",", 5)
        if len(head) < 6:
            return None
        try:
            part, parts = int(head[3]), int(head[4])
        except ValueError:
            return None
        if not 1 <= part <= parts <= 1000:
            return None
        return VoicePart(unescape(head[5]), part, parts, _text(head[2])[:64])
    return None


def ack_of(frame: Frame) -> tuple[str, bool] | None:
    """The watch acknowledging what the server sent: ``("TK", ok)`` for a voice
    note (``TK,1`` / ``TK,0``), ``("MESSAGE", True)`` for a text; else None."""
    upper = frame.command.upper()
    payload = frame.payload
    rest = payload[payload.find(b",") + 1 :] if b"," in payload else b""
    if upper == "TK" and rest in (b"0", b"1"):
        return "TK", rest == b"1"
    if upper == "MESSAGE" and rest in (b"", b"1"):
        return "MESSAGE", True
    return None


def voice_reply(frame: Frame, ok: bool) -> bytes:
    """The answer to a voice note (or part) from the watch: ``TK,1`` / ``TK,0``,
    ``JXTKR,1`` / ``JXTKR,0``; ``ok`` only once it is kept (or a part held)."""
    command = "JXTKR" if frame.command.upper() == "JXTK" else frame.command
    return encode(frame.vendor, frame.device_id, f"{command},{int(ok)}", index=frame.index)


def voice_content(audio: bytes) -> bytes:
    return b"TK," + escape(audio)


def voice_fits(audio: bytes) -> bool:
    """Whether a voice note fits in one ``TK`` frame to the watch."""
    return len(voice_content(audio)) <= 0xFFFF


def voice_frame(vendor: str, device_id: str, audio: bytes) -> bytes:
    """A voice note down to the watch (AMR-NB): ``TK,`` and the file, escaped."""
    return encode(vendor, device_id, voice_content(audio))


def text_frame(vendor: str, device_id: str, text: str) -> bytes:
    """A text down to the watch: ``MESSAGE,`` and its UTF-16BE code units in hex."""
    return encode(vendor, device_id, "MESSAGE," + text.encode("utf-16-be").hex().upper())


def text_of(content: bytes) -> str:
    """The text of a ``MESSAGE,<hex>`` content (what a watch shows)."""
    _, _, hexed = content.partition(b",")
    return bytes.fromhex(hexed.decode("ascii")).decode("utf-16-be")


__all__ = [
    "ALARM_BITS",
    "AMR_MAGIC",
    "HEART_RATE_ALARM_BIT",
    "MAX_FRAME",
    "Cell",
    "Frame",
    "FrameError",
    "FrameReader",
    "Health",
    "HealthKind",
    "KeepAlive",
    "Message",
    "Other",
    "Position",
    "PositionKind",
    "ReaderStats",
    "VoicePart",
    "WifiAp",
    "ack_of",
    "alarms_from_status",
    "encode",
    "escape",
    "parse",
    "reply_for",
    "text_frame",
    "text_of",
    "unescape",
    "voice_fits",
    "voice_frame",
    "voice_of",
    "voice_reply",
]
