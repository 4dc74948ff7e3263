"""Attachments: images through the media pipeline (type sniffed from the bytes,
size and pixels capped, re-encoded with no metadata), voice notes sniffed here
(Ogg Opus, what apps record; AMR-NB, what kids' watches record; WebM/Opus,
what browsers' MediaRecorder records; MP4/AAC, what iOS records), their
duration read from the container itself and capped. Uploaded before the
message that carries them, then referenced by id.

MP4 is read by mutagen. WebM is walked here: neither mutagen nor tinytag reads
Matroska, and ebmlite (a pure-Python EBML reader) takes seconds for a
two-minute browser recording, whose Segment and Clusters have the "unknown"
size of a file written live (its reading of those is quadratic). The walk
reads each element once, bounded in count. A browser's recording has no
duration in its header either, so a WebM note's duration is its last block's
time plus one block's length."""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from mutagen.mp4 import MP4
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, jobs
from kares.errors import Problem
from kares.media import service as media
from kares.messaging.models import Attachment, Message
from kares.runtime import Runtime

IMAGE_MAX_SIDE = 2048
# the job that deletes an attachment nobody sent (KARES_ATTACHMENT_UNSENT_HOURS)
FORGET_UNSENT = "messaging.forget_unsent"

# AMR-NB: bytes of speech data after each frame's header byte, by frame type
_AMR_SIZES = (12, 13, 15, 17, 19, 20, 26, 31, 5, 6, 5, 5, 0, 0, 0, 0)
_AMR_MAGIC = b"#!AMR\n"


@dataclass(frozen=True)
class Voice:
    content_type: str
    codec: str
    duration_ms: int


# what a kids' watch plays (docs/MESSAGING.md, "Chat with a watch")
WATCH_CODEC = "amr-nb"
# the largest "TK," + escaped audio one watch-protocol frame carries (four hex digits)
WATCH_FRAME_MAX = 0xFFFF
_WATCH_ESCAPED = frozenset(b"\x7d\x5b\x5d\x2c\x2a")


def watch_frame_size(audio: bytes) -> int:
    """The bytes of ``TK,`` and the audio once escaped for the watch protocol."""
    return 3 + len(audio) + sum(1 for b in audio if b in _WATCH_ESCAPED)


def playable(att: Attachment) -> bool:
    """Whether a kids' watch can play this voice note: AMR-NB, whole in one frame."""
    return att.codec == WATCH_CODEC and watch_frame_size(att.data) <= WATCH_FRAME_MAX


def check_playable(att: Attachment) -> None:
    """A voice note sent into a watch conversation must be one the watch plays:
    else ``422 message.watch_unplayable`` (nothing is stored)."""
    if att.kind == "voice" and not playable(att):
        raise Problem(
            422,
            "message.watch_unplayable",
            "The watch plays AMR-NB voice notes of up to about 40 seconds only: "
            "record this one as AMR (audio/amr), or send it as text.",
        )


def _unsupported() -> Problem:
    return Problem(
        415,
        "media.unsupported_type",
        "A voice note is Ogg Opus, WebM/Opus, MP4/AAC or AMR-NB audio.",
    )


def _ogg_opus(raw: bytes) -> int:
    """The duration of an Ogg Opus file in ms, from its last page's granule."""
    if len(raw) < 47 or raw[:4] != b"OggS":
        raise _unsupported()
    nseg = raw[26]
    head = 27 + nseg
    if raw[head : head + 8] != b"OpusHead" or len(raw) < head + 19:
        raise _unsupported()
    pre_skip = struct.unpack_from("<H", raw, head + 10)[0]
    last = raw.rfind(b"OggS")
    if last < 0 or last + 14 > len(raw):
        raise _unsupported()
    granule = struct.unpack_from("<q", raw, last + 6)[0]
    if granule <= pre_skip:
        raise Problem(422, "media.empty", "The voice note holds no sound.")
    return (granule - pre_skip) * 1000 // 48000


def _amr_nb(raw: bytes) -> int:
    """The duration of an AMR-NB file in ms: 20 ms a frame, every frame walked."""
    i, frames = len(_AMR_MAGIC), 0
    while i < len(raw):
        size = _AMR_SIZES[(raw[i] >> 3) & 0x0F]
        i += 1 + size
        frames += 1
    if i != len(raw):
        raise _unsupported()
    if frames == 0:
        raise Problem(422, "media.empty", "The voice note holds no sound.")
    return frames * 20


_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
# at most this many elements of a WebM file are looked at (a 2 MiB note of 20 ms
# blocks has about 6,000, with its clusters)
_WEBM_MAX_ELEMENTS = 50_000
# Matroska element ids (the ids include their length marker)
_MASTERS = frozenset(
    {
        0x1A45DFA3,  # EBML (the header)
        0x18538067,  # Segment
        0x1549A966,  # Info
        0x1654AE6B,  # Tracks
        0xAE,  # TrackEntry
        0x1F43B675,  # Cluster
        0xA0,  # BlockGroup
    }
)
_DOC_TYPE, _TIMECODE_SCALE, _DURATION, _CODEC_ID = 0x4282, 0x2AD7B1, 0x4489, 0x86
_CLUSTER_TIME, _SIMPLE_BLOCK, _BLOCK = 0xE7, 0xA3, 0xA1


def _vint(raw: bytes, i: int, *, keep_marker: bool) -> tuple[int, int, bool]:
    """An EBML variable-length integer at ``raw[i]``: its value (an id keeps its
    length marker), where the next byte is, and whether it is the reserved
    "unknown" size (all value bits set)."""
    first = raw[i]
    width = 9 - first.bit_length() if first else 9
    if width > 8 or i + width > len(raw):
        raise ValueError("not an EBML integer")
    value = int.from_bytes(raw[i : i + width], "big")
    if keep_marker:
        return value, i + width, False
    value &= (1 << (7 * width)) - 1
    return value, i + width, value == (1 << (7 * width)) - 1


def _webm(raw: bytes) -> int:
    """The duration of a WebM file with one Opus audio track, in ms."""
    try:
        return _webm_duration(raw)
    except (ValueError, IndexError, struct.error):
        raise _unsupported() from None


def _webm_duration(raw: bytes) -> int:
    """Walk the file's elements once, in order, descending into the few master
    elements that matter and skipping the rest by their size. A master of
    unknown size (a live recording's Segment and Clusters) is simply entered:
    the ids of Matroska are unique, so what follows is read for what it is."""
    doc_type = None
    codecs: list[str] = []
    scale = 1_000_000  # ns per timecode unit (Matroska's default)
    declared: float | None = None
    base = 0
    times: list[int] = []
    i, seen = 0, 0
    while i < len(raw):
        seen += 1
        if seen > _WEBM_MAX_ELEMENTS:
            raise _unsupported()
        eid, i, _ = _vint(raw, i, keep_marker=True)
        size, i, unknown = _vint(raw, i, keep_marker=False)
        if eid in _MASTERS:
            continue  # its children follow
        if unknown or i + size > len(raw):
            raise ValueError("an element runs past the end")
        value = raw[i : i + size]
        i += size
        if eid == _DOC_TYPE:
            doc_type = value.rstrip(b"\x00").decode("ascii", "replace")
        elif eid == _TIMECODE_SCALE:
            scale = int.from_bytes(value, "big")
        elif eid == _DURATION and size in (4, 8):
            declared = struct.unpack(">f" if size == 4 else ">d", value)[0]
        elif eid == _CODEC_ID:
            codecs.append(value.rstrip(b"\x00").decode("ascii", "replace"))
        elif eid == _CLUSTER_TIME:
            base = int.from_bytes(value, "big")
        elif eid in (_SIMPLE_BLOCK, _BLOCK):
            times.append(base + _block_time(value))
    if doc_type not in ("webm", "matroska") or codecs != ["A_OPUS"]:
        raise _unsupported()  # one Opus audio track, nothing else (no video)
    if not 0 < scale <= 10**9:
        raise _unsupported()
    if declared is not None and 0 < declared < 10**12:
        return int(declared * scale / 1_000_000)
    if not times:
        raise Problem(422, "media.empty", "The voice note holds no sound.")
    times.sort()
    step = times[-1] - times[-2] if len(times) > 1 else 0
    return max(0, (times[-1] + step) * scale // 1_000_000)


def _block_time(block: bytes) -> int:
    """A (Simple)Block's time relative to its cluster: after the track number
    (an EBML variable-length integer), a signed 16-bit big-endian number."""
    _, j, _ = _vint(block, 0, keep_marker=False)
    return int(struct.unpack_from(">h", block, j)[0])


def _mp4_aac(raw: bytes) -> int:
    """The duration of an MP4 (M4A) file's AAC audio track, in ms."""
    try:
        info: Any = MP4(io.BytesIO(raw)).info
    except Exception:  # mutagen's errors for a file it cannot read
        raise _unsupported() from None
    if info is None or not str(info.codec).startswith("mp4a"):
        raise _unsupported()  # no audio track, or not AAC (e.g. ALAC)
    if info.length <= 0:
        raise Problem(422, "media.empty", "The voice note holds no sound.")
    return int(info.length * 1000)


def sniff_voice(raw: bytes, *, max_bytes: int, max_seconds: int) -> Voice:
    """Validate a voice note from its bytes (never the name or declared type)."""
    if len(raw) > max_bytes:
        raise Problem(413, "media.too_large", f"Voice notes may be at most {max_bytes} bytes.")
    if not raw:
        raise Problem(422, "media.empty", "The upload is empty.")
    if raw.startswith(_AMR_MAGIC):
        voice = Voice("audio/amr", "amr-nb", _amr_nb(raw))
    elif raw.startswith(b"OggS"):
        voice = Voice("audio/ogg", "opus", _ogg_opus(raw))
    elif raw.startswith(_EBML_MAGIC):
        voice = Voice("audio/webm", "opus", _webm(raw))
    elif raw[4:8] == b"ftyp":
        voice = Voice("audio/mp4", "aac", _mp4_aac(raw))
    else:
        raise _unsupported()
    if voice.duration_ms > max_seconds * 1000:
        raise Problem(
            422, "media.too_long", f"Voice notes may be at most {max_seconds} seconds long."
        )
    return voice


async def upload(
    s: AsyncSession, rt: Runtime, *, account_id: str, kind: str, raw: bytes
) -> Attachment:
    """Check the upload, then store it (one action, committed here)."""
    st = rt.settings
    now = clock.utcnow()
    if kind == "image":
        img = await anyio.to_thread.run_sync(
            lambda: media.clean_image(
                raw,
                max_bytes=st.image_max_bytes,
                max_pixels=st.image_max_pixels,
                max_side=IMAGE_MAX_SIDE,
            )
        )
        att = Attachment(
            owner_account_id=account_id,
            kind="image",
            content_type=img.content_type,
            data=img.data,
            byte_size=len(img.data),
            sha256=hashlib.sha256(img.data).hexdigest(),
            width=img.width,
            height=img.height,
            created_at=now,
        )
    elif kind == "voice":
        v = await anyio.to_thread.run_sync(
            lambda: sniff_voice(raw, max_bytes=st.voice_max_bytes, max_seconds=st.voice_max_seconds)
        )
        att = Attachment(
            owner_account_id=account_id,
            kind="voice",
            content_type=v.content_type,
            data=raw,
            byte_size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            duration_ms=v.duration_ms,
            codec=v.codec,
            created_at=now,
        )
    else:
        raise Problem(422, "message.invalid_kind", "An attachment is an image or a voice note.")
    s.add(att)
    await s.flush()
    # deleted unless a message carries it by then (jobs.py); queued with the upload
    jobs.enqueue(
        s,
        FORGET_UNSENT,
        {"attachment_id": att.id},
        run_at=now + timedelta(hours=st.attachment_unsent_hours),
    )
    await s.commit()
    return att


async def forget_unsent(s: AsyncSession, attachment_id: int) -> bool:
    """Delete the attachment if no message carries it; True if it went. The row
    is locked first (a send in flight locks it too, ``service._body``), then the
    messages are read afresh, so one being sent now is seen and the file kept."""
    q = select(Attachment.id).where(Attachment.id == attachment_id).with_for_update()
    if (await s.execute(q)).first() is None:
        await s.commit()
        return False  # already gone (recalled, its owner's data deleted)
    used = select(Message.position).where(Message.attachment_id == attachment_id).limit(1)
    if (await s.execute(used)).first() is not None:
        await s.commit()
        return False
    await s.execute(
        delete(Attachment)
        .where(Attachment.id == attachment_id)
        .execution_options(synchronize_session=False)
    )
    await s.commit()
    return True


async def get(s: AsyncSession, attachment_id: int) -> Attachment | None:
    q = select(Attachment).where(Attachment.id == attachment_id)
    return (await s.execute(q)).scalar_one_or_none()
