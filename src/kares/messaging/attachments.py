"""Attachments: images through the media pipeline (type sniffed from the bytes,
size and pixels capped, re-encoded with no metadata), voice notes sniffed here
(Ogg Opus, what apps record; AMR-NB, what kids' watches record), their duration
read from the container itself and capped. Uploaded before the message that
carries them, then referenced by id."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.errors import Problem
from kares.media import service as media
from kares.messaging.models import Attachment
from kares.runtime import Runtime

IMAGE_MAX_SIDE = 2048

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
    return Problem(415, "media.unsupported_type", "A voice note is Ogg Opus or AMR-NB audio.")


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
        v = sniff_voice(raw, max_bytes=st.voice_max_bytes, max_seconds=st.voice_max_seconds)
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
    await s.commit()
    return att


async def get(s: AsyncSession, attachment_id: int) -> Attachment | None:
    q = select(Attachment).where(Attachment.id == attachment_id)
    return (await s.execute(q)).scalar_one_or_none()
