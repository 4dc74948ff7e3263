"""Image intake: sniff the real type from the bytes, cap size and pixels,
apply the EXIF orientation, re-encode, and keep nothing of the original's
metadata (EXIF with GPS, XMP, ICC comments, text chunks)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import anyio
from PIL import Image, ImageOps
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.errors import Problem
from kares.media.models import MediaObject

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    content_type: str
    width: int
    height: int


def clean_image(raw: bytes, *, max_bytes: int, max_pixels: int, max_side: int) -> CleanImage:
    """Validate and re-encode an uploaded image; raise a 4xx Problem if it is not one."""
    if len(raw) > max_bytes:
        raise Problem(413, "media.too_large", f"Images may be at most {max_bytes} bytes.")
    if not raw:
        raise Problem(422, "media.empty", "The upload is empty.")
    try:
        # Opening reads only the header, so the pixel cap is checked before any
        # pixel is decoded (no process-wide warning filter needed).
        img: Image.Image = Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
        if img.width * img.height > max_pixels:
            raise Problem(
                422, "media.too_many_pixels", f"Images may have at most {max_pixels} pixels."
            )
        img.load()
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img = ImageOps.exif_transpose(img)
    except Problem:
        raise
    except Image.DecompressionBombError as exc:
        raise Problem(
            422, "media.too_many_pixels", f"Images may have at most {max_pixels} pixels."
        ) from exc
    except Exception as exc:  # PIL raises many kinds for bad data
        raise Problem(
            415,
            "media.unsupported_type",
            "The upload is not a JPEG, PNG, WebP or GIF image.",
        ) from exc

    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    # Alpha is an alpha band, or a transparent palette index / colour key (PNG tRNS,
    # GIF transparency) in any mode.
    has_alpha = img.mode in ("RGBA", "LA", "PA") or img.info.get("transparency") is not None
    # A fresh image with only pixel data: no info dict, no EXIF, no ICC, no text.
    if has_alpha:
        clean = Image.new("RGBA", img.size)
        clean.paste(img.convert("RGBA"))
        fmt, ctype = "PNG", "image/png"
    else:
        clean = Image.new("RGB", img.size)
        clean.paste(img.convert("RGB"))
        fmt, ctype = "JPEG", "image/jpeg"
    out = io.BytesIO()
    if fmt == "JPEG":
        clean.save(out, format=fmt, quality=85, optimize=True)
    else:
        clean.save(out, format=fmt, optimize=True)
    return CleanImage(out.getvalue(), ctype, clean.width, clean.height)


async def store_image(
    s: AsyncSession,
    *,
    owner_account_id: str,
    purpose: str,
    raw: bytes,
    max_bytes: int,
    max_pixels: int,
    max_side: int,
) -> MediaObject:
    """Clean ``raw`` (off the event loop) and add it to the session (not committed)."""
    img = await anyio.to_thread.run_sync(
        lambda: clean_image(raw, max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side)
    )
    obj = MediaObject(
        owner_account_id=owner_account_id,
        purpose=purpose,
        content_type=img.content_type,
        data=img.data,
        width=img.width,
        height=img.height,
        byte_size=len(img.data),
        sha256=hashlib.sha256(img.data).hexdigest(),
        created_at=clock.utcnow(),
    )
    s.add(obj)
    await s.flush()
    return obj


async def get_media(s: AsyncSession, media_id: str) -> MediaObject | None:
    q = select(MediaObject).where(MediaObject.id == media_id)
    return (await s.execute(q)).scalar_one_or_none()


async def delete_owned(
    s: AsyncSession, *, owner_account_id: str, purpose: str, keep_id: str | None = None
) -> None:
    """Delete an owner's images of one purpose, but ``keep_id``.

    Deleting by owner and purpose, not by "the previous id", means two
    uploads racing each other cannot leave an orphaned image behind.
    """
    q = delete(MediaObject).where(
        MediaObject.owner_account_id == owner_account_id, MediaObject.purpose == purpose
    )
    if keep_id is not None:
        q = q.where(MediaObject.id != keep_id)
    await s.execute(q)
