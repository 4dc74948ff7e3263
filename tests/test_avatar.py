"""Avatar upload through the public API: the type is sniffed from the bytes, the
size and pixel count are capped, the image is re-encoded (EXIF orientation
applied, long side at most ``avatar_max_side``) and every piece of metadata
(EXIF with GPS, XMP, ICC, comments, text chunks) is dropped. Refused uploads
change nothing, and no upload of any shape is a 500."""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin
from sqlalchemy import text

from tests.conftest import bearer, count_rows, sign_up, snapshot

AVATAR = "/api/v1/me/avatar"
OTHER_PHONE = "+8613812345679"
MAX_BYTES = 5 * 1024 * 1024  # the default image_max_bytes
MAX_SIDE = 1024  # the default avatar_max_side

# Strings planted in the uploads' metadata; none may survive.
MAKE = "KaresTestCamMake"
MODEL = "KaresTestModel9"
COMMENT = "KaresSecretComment"
XMP_MARK = "KaresXmpMarker"
PNG_TEXT = "KaresPngTextChunk"
PNG_ZTEXT = "KaresPngZtxtChunk"
PNG_ITEXT = "KaresPngItxtChunk"
PAD_MARK = b"KARES-PADDING-CHUNK"
XMP = (
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    f'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    f'exif:GPSLatitude="39,54.43N">{XMP_MARK}</rdf:Description>'
    '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
).encode()
MARKERS = [
    s.encode() if isinstance(s, str) else s
    for s in (MAKE, MODEL, COMMENT, XMP_MARK, PNG_TEXT, PNG_ZTEXT, PNG_ITEXT, PAD_MARK)
]
# Containers of metadata in JPEG/PNG/WebP files.
METADATA_SIGNS = [b"Exif", b"http://ns.adobe.com", b"xmpmeta", b"ICC_PROFILE", b"acsp"]


# --- making images --------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def photo(size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    """A smooth, photo-like picture (compresses well, survives JPEG)."""
    w, h = size
    r = Image.linear_gradient("L").resize(size)
    g = Image.linear_gradient("L").rotate(90).resize(size)
    b = Image.new("L", size, 128)
    img = Image.merge("RGB", (r, g, b))
    if mode == "RGBA":
        img = img.convert("RGBA")
    elif mode != "RGB":
        img = img.convert(mode)
    assert img.size == (w, h)
    return img


def gps_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = MAKE
    exif[ExifTags.Base.Model] = MODEL
    exif[ExifTags.Base.ImageDescription] = COMMENT
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (39.0, 54.0, 26.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (116.0, 23.0, 0.0)
    return exif


@functools.cache
def icc_profile() -> bytes:
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def png_text_info() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", PNG_TEXT)
    info.add_text("Location", PNG_ZTEXT, zip=True)
    info.add_itxt("Description", PNG_ITEXT, lang="en", tkey="Description")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    return info


def jpeg_with_metadata(size: tuple[int, int] = (96, 64), orientation: int | None = None) -> bytes:
    return encode(
        photo(size),
        "JPEG",
        exif=gps_exif(orientation),
        comment=COMMENT.encode(),
        xmp=XMP,
        icc_profile=icc_profile(),
    )


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_chunks(data: bytes) -> list[bytes]:
    """The chunk types of a PNG file, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, tags = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tags.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return tags


def jpeg_markers(data: bytes) -> list[int]:
    """The marker segments of a JPEG file up to its first scan."""
    assert data[:2] == b"\xff\xd8"
    pos, markers = 2, []
    while pos < len(data):
        assert data[pos] == 0xFF, f"bad marker at {pos}"
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return markers


def padded_png(total: int) -> bytes:
    """A valid PNG of exactly ``total`` bytes: a small image plus a private ancillary chunk."""
    base = encode(photo((32, 32)), "PNG")
    iend = png_chunk(b"IEND", b"")
    assert base.endswith(iend)
    filler_len = total - len(base) - 12
    assert filler_len >= 0
    filler = (PAD_MARK * (filler_len // len(PAD_MARK) + 1))[:filler_len]
    # Before IDAT, so Pillow reads (and skips) it while opening the file.
    ihdr_end = 8 + 12 + 13
    out = base[:ihdr_end] + png_chunk(b"kaRs", filler) + base[ihdr_end:]
    assert len(out) == total
    return out


@functools.cache
def png_bomb(width: int, height: int) -> bytes:
    """A real, valid, all-black 1-bit PNG: tiny on the wire, huge once decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\0" * (1 + (width + 7) // 8)
    co = zlib.compressobj(9)
    idat = b"".join(co.compress(row) for _ in range(height)) + co.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def gif_bomb() -> bytes:
    """A GIF whose logical screen is 65535x65535 around a 1x1 frame."""
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0)
        + b"\0\0\0\xff\xff\xff"  # global colour table, 2 entries
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00"  # LZW min code size 2, one data block, terminator
        + b"\x3b"
    )


def jpeg_bomb() -> bytes:
    """A small JPEG whose frame header claims 65500x65500 pixels."""
    data = bytearray(encode(photo((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65500, 65500)
    return bytes(data)


def frames(fmt: str) -> bytes:
    """An animation of red, green and blue frames."""
    imgs = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(imgs[0], fmt, save_all=True, append_images=imgs[1:], duration=100, loop=0)


def multipart(
    data: bytes,
    *,
    field: str = "file",
    filename: str = "avatar.png",
    ctype: str = "image/png",
    boundary: str = "kares-test-boundary-7d3f",
) -> tuple[bytes, str]:
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, f"multipart/form-data; boundary={boundary}"


class Chunks:
    """An async body that records how much of it the server pulled."""

    def __init__(self, body: bytes, size: int = 64 * 1024) -> None:
        self.body = body
        self.size = size
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), self.size):
            chunk = self.body[i : i + self.size]
            self.sent += len(chunk)
            yield chunk


# --- talking to the API -------------------------------------------------------------


async def signed_in(client: httpx.AsyncClient, sms: Any, phone: str | None = None) -> str:
    """Sign up and return the bearer token, with the session's last-seen already touched
    (so later snapshots only change by what the request under test does)."""
    body = await sign_up(client, sms) if phone is None else await sign_up(client, sms, phone)
    token = str(body["token"])
    r = await client.get("/api/v1/me", headers=bearer(token))
    assert r.status_code == 200, r.text
    return token


async def upload(
    client: httpx.AsyncClient,
    token: str | None,
    data: bytes,
    filename: str = "avatar.jpg",
    ctype: str = "image/jpeg",
) -> httpx.Response:
    headers = bearer(token) if token else {}
    return await client.put(AVATAR, files={"file": (filename, data, ctype)}, headers=headers)


async def upload_ok(client: httpx.AsyncClient, token: str, data: bytes, **kw: Any) -> str:
    r = await upload(client, token, data, **kw)
    assert r.status_code == 200, r.text
    url = r.json()["avatar_url"]
    assert isinstance(url, str) and url.startswith("/api/v1/media/")
    return url


async def download(client: httpx.AsyncClient, token: str, url: str) -> bytes:
    r = await client.get(url, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] in ("image/jpeg", "image/png")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"].startswith("private")
    return r.content


def opened(data: bytes) -> Image.Image:
    Image.open(io.BytesIO(data)).verify()
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def assert_clean(data: bytes) -> Image.Image:
    """``data`` is a valid JPEG or PNG with no metadata of any kind."""
    img = opened(data)
    assert img.format in ("JPEG", "PNG")
    assert len(img.getexif()) == 0
    for key in ("exif", "xmp", "icc_profile", "comment", "XML:com.adobe.xmp", "Comment"):
        assert key not in img.info, key
    for needle in MARKERS + METADATA_SIGNS:
        assert needle not in data, needle
    if img.format == "JPEG":
        assert data.startswith(b"\xff\xd8")
        # Only JFIF's APP0, tables, frame and scan: no APP1 (EXIF/XMP), APP2 (ICC), COM ...
        allowed = {0xE0, 0xDB, 0xC4, 0xC0, 0xC1, 0xC2, 0xDD, 0xDA}
        assert set(jpeg_markers(data)) <= allowed, [hex(m) for m in jpeg_markers(data)]
    else:
        assert getattr(img, "text", {}) == {}
        assert set(png_chunks(data)) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}, png_chunks(
            data
        )
    return img


async def assert_stored_clean(db: Any) -> None:
    """What is at rest is the re-encoded image only, never the upload."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT data FROM media_objects"))).all()
    for (data,) in rows:
        assert_clean(bytes(data))


def near(px: Any, want: tuple[int, int, int], tol: int = 48) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(px[:3], want, strict=True))


async def assert_refused(
    client: httpx.AsyncClient,
    db: Any,
    token: str,
    r: httpx.Response,
    status: int,
    codes: set[str],
    before: dict[str, Any],
    prev: tuple[str, bytes] | None,
) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] in codes, r.json()
    assert await snapshot(db) == before
    me = (await client.get("/api/v1/me", headers=bearer(token))).json()
    if prev is None:
        assert me["avatar_url"] is None
    else:
        assert me["avatar_url"] == prev[0]
        assert await download(client, token, prev[0]) == prev[1]


# --- metadata is dropped --------------------------------------------------------------


async def test_jpeg_exif_gps_xmp_icc_and_comment_are_stripped(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    raw = jpeg_with_metadata()
    src = Image.open(io.BytesIO(raw))  # the upload really carries all of it
    assert src.getexif()[ExifTags.Base.Make] == MAKE
    assert src.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert {"exif", "xmp", "icc_profile", "comment"} <= set(src.info)

    token = await signed_in(client, sms)
    r = await upload(client, token, raw)
    assert r.status_code == 200, r.text
    body = r.json()
    url = body["avatar_url"]
    assert url.startswith("/api/v1/media/")
    me = (await client.get("/api/v1/me", headers=bearer(token))).json()
    assert me["avatar_url"] == url

    resp = await client.get(url, headers=bearer(token))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/jpeg"
    img = assert_clean(resp.content)
    assert img.format == "JPEG"
    assert img.size == (96, 64)
    assert resp.headers["etag"].strip('"') != ""

    await assert_stored_clean(db)
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT content_type, width, height, byte_size, purpose FROM media_objects")
            )
        ).one()
    assert tuple(row) == ("image/jpeg", 96, 64, len(resp.content), "avatar")


@pytest.mark.parametrize(
    ("fmt", "kw"),
    [
        ("PNG", {"exif": True, "pnginfo": True, "icc_profile": True}),
        ("WEBP", {"exif": True, "xmp": True, "icc_profile": True}),
        ("GIF", {"comment": True}),
    ],
    ids=["png", "webp", "gif"],
)
async def test_metadata_of_other_formats_is_stripped(
    client: httpx.AsyncClient, sms: Any, db: Any, fmt: str, kw: dict[str, bool]
) -> None:
    opts: dict[str, Any] = {}
    if kw.get("exif"):
        opts["exif"] = gps_exif()
    if kw.get("pnginfo"):
        opts["pnginfo"] = png_text_info()
    if kw.get("icc_profile"):
        opts["icc_profile"] = icc_profile()
    if kw.get("xmp"):
        opts["xmp"] = XMP
    if kw.get("comment"):
        opts["comment"] = COMMENT.encode()
    raw = encode(photo((80, 60)), fmt, **opts)
    assert any(m in raw for m in MARKERS)

    token = await signed_in(client, sms)
    url = await upload_ok(client, token, raw, filename=f"a.{fmt.lower()}")
    img = assert_clean(await download(client, token, url))
    assert img.size == (80, 60)
    await assert_stored_clean(db)


@pytest.mark.parametrize(
    ("orientation", "size", "left_goes_to"),
    [(6, (80, 40), "top"), (8, (80, 40), "bottom"), (3, (80, 40), "right")],
    ids=["rotate90cw", "rotate90ccw", "rotate180"],
)
async def test_exif_orientation_is_applied_before_stripping(
    client: httpx.AsyncClient, sms: Any, orientation: int, size: tuple[int, int], left_goes_to: str
) -> None:
    w, h = size
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, w // 2, h))  # left half red, right half blue
    raw = encode(img, "JPEG", exif=gps_exif(orientation), quality=95)

    token = await signed_in(client, sms)
    url = await upload_ok(client, token, raw)
    out = assert_clean(await download(client, token, url)).convert("RGB")
    assert len(out.getexif()) == 0  # no Orientation left to apply twice
    ow, oh = out.size
    if orientation in (6, 8):
        assert (ow, oh) == (h, w)
    else:
        assert (ow, oh) == (w, h)
    spots = {
        "top": (ow // 2, oh // 4),
        "bottom": (ow // 2, oh * 3 // 4),
        "left": (ow // 4, oh // 2),
        "right": (ow * 3 // 4, oh // 2),
    }
    opposite = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}
    assert near(out.getpixel(spots[left_goes_to]), (255, 0, 0))
    assert near(out.getpixel(spots[opposite[left_goes_to]]), (0, 0, 255))


# --- formats ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode",
    ["RGBA", "LA", "P-transparency", "L-trns", "RGB-trns"],
)
async def test_png_with_alpha_stays_png_with_alpha(
    client: httpx.AsyncClient, sms: Any, mode: str
) -> None:
    if mode in ("RGBA", "LA"):
        img = Image.new(mode, (64, 64), (200, 0) if mode == "LA" else (200, 30, 30, 0))
        img.paste((200, 255) if mode == "LA" else (200, 30, 30, 255), (32, 0, 64, 64))
        raw = encode(img, "PNG", pnginfo=png_text_info())
    elif mode == "P-transparency":
        img = Image.new("P", (64, 64), 0)
        img.putpalette([0, 0, 0, 200, 30, 30] + [0] * (256 * 3 - 6))
        img.paste(1, (32, 0, 64, 64))
        raw = encode(img, "PNG", transparency=0, pnginfo=png_text_info())
    elif mode == "L-trns":
        img = Image.new("L", (64, 64), 0)
        img.paste(200, (32, 0, 64, 64))
        raw = encode(img, "PNG", transparency=0, pnginfo=png_text_info())
    else:
        img = Image.new("RGB", (64, 64), (0, 0, 0))
        img.paste((200, 30, 30), (32, 0, 64, 64))
        raw = encode(img, "PNG", transparency=(0, 0, 0), pnginfo=png_text_info())

    token = await signed_in(client, sms)
    url = await upload_ok(client, token, raw, filename="a.png", ctype="image/png")
    r = await client.get(url, headers=bearer(token))
    assert r.headers["content-type"] == "image/png"
    out = assert_clean(r.content)
    assert out.format == "PNG"
    assert out.mode in ("RGBA", "LA") or "transparency" in out.info
    rgba = out.convert("RGBA")
    assert rgba.getpixel((8, 32))[3] == 0  # the transparent half
    assert rgba.getpixel((56, 32))[3] == 255  # the opaque half


async def test_opaque_images_become_jpeg(client: httpx.AsyncClient, sms: Any) -> None:
    token = await signed_in(client, sms)
    for fmt in ("PNG", "WEBP", "GIF"):
        url = await upload_ok(client, token, encode(photo(), fmt), filename="x", ctype="image/x")
        r = await client.get(url, headers=bearer(token))
        assert r.headers["content-type"] == "image/jpeg", fmt
        assert assert_clean(r.content).size == (96, 64)


async def test_webp_with_alpha_becomes_png_with_alpha(client: httpx.AsyncClient, sms: Any) -> None:
    img = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    img.paste((10, 200, 10, 255), (25, 0, 50, 50))
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, encode(img, "WEBP", lossless=True), filename="a.webp")
    out = assert_clean(await download(client, token, url)).convert("RGBA")
    assert out.getpixel((5, 25))[3] == 0
    assert out.getpixel((45, 25)) == (10, 200, 10, 255)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"], ids=["gif", "webp", "apng"])
async def test_animation_keeps_first_frame(client: httpx.AsyncClient, sms: Any, fmt: str) -> None:
    raw = frames(fmt)
    assert getattr(Image.open(io.BytesIO(raw)), "n_frames", 1) == 3
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, raw, filename="anim")
    out = assert_clean(await download(client, token, url))
    assert getattr(out, "n_frames", 1) == 1
    assert out.size == (40, 30)
    assert near(out.convert("RGB").getpixel((20, 15)), (255, 0, 0))


@pytest.mark.parametrize("mode", ["1", "L", "P", "I;16", "CMYK-jpeg", "L-jpeg"])
async def test_unusual_pixel_modes_are_accepted(
    client: httpx.AsyncClient, sms: Any, mode: str
) -> None:
    if mode.endswith("-jpeg"):
        raw = encode(photo(mode=mode.split("-")[0]), "JPEG")
    else:
        raw = encode(photo(mode="L" if mode == "I;16" else mode).convert(mode), "PNG")
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, raw)
    assert assert_clean(await download(client, token, url)).size == (96, 64)


# --- the type comes from the bytes --------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "filename", "ctype"),
    [
        ("PNG", "x.jpg", "image/jpeg"),
        ("JPEG", "photo.gif", "image/gif"),
        ("WEBP", "noext", "application/octet-stream"),
        ("GIF", "avatar.exe", "application/x-msdownload"),
    ],
)
async def test_type_is_sniffed_not_taken_from_name_or_content_type(
    client: httpx.AsyncClient, sms: Any, fmt: str, filename: str, ctype: str
) -> None:
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, encode(photo(), fmt), filename=filename, ctype=ctype)
    assert_clean(await download(client, token, url))


def _not_images() -> dict[str, bytes]:
    jpeg = encode(photo((200, 150)), "JPEG")
    png = encode(photo((200, 150)), "PNG")
    gif = encode(photo((200, 150)), "GIF")
    webp = encode(photo((200, 150)), "WEBP")
    return {
        "text": b"hello, this is not an image\n",
        "pdf": b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n",
        "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
        b'height="10"><script>alert(1)</script><rect width="10" height="10"/></svg>',
        "html": b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>",
        "zip": b"PK\x03\x04" + b"\0" * 100,
        "bmp": encode(photo(), "BMP"),
        "tiff": encode(photo(), "TIFF"),
        "ico": encode(photo((32, 32)), "ICO"),
        "random": random.Random(7).randbytes(4096),
        "jpeg-truncated": jpeg[: len(jpeg) // 2],
        "jpeg-header-only": jpeg[:200],
        "jpeg-magic-then-garbage": b"\xff\xd8\xff\xe0" + b"\x00" * 64,
        "png-truncated": png[: len(png) // 2],
        "png-signature-only": png[:8],
        "png-bad-crc": png[:29] + b"\0\0\0\0" + png[33:],
        "gif-truncated": gif[: len(gif) // 2],
        "webp-truncated": webp[: len(webp) // 2],
        "riff-not-webp": b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\0" * 16,
        "html-after-gif-magic": b"GIF89a<script>alert(1)</script>",
    }


NOT_IMAGES = _not_images()


@pytest.mark.parametrize("kind", list(NOT_IMAGES))
async def test_non_images_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, kind: str
) -> None:
    token = await signed_in(client, sms)
    prev_url = await upload_ok(client, token, jpeg_with_metadata())
    prev = (prev_url, await download(client, token, prev_url))
    before = await snapshot(db)
    r = await upload(client, token, NOT_IMAGES[kind], filename="avatar.png", ctype="image/png")
    await assert_refused(client, db, token, r, 415, {"media.unsupported_type"}, before, prev)


async def test_empty_file_is_refused(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    token = await signed_in(client, sms)
    before = await snapshot(db)
    r = await upload(client, token, b"", filename="avatar.png", ctype="image/png")
    await assert_refused(client, db, token, r, 422, {"media.empty"}, before, None)


async def test_missing_or_wrong_file_field_is_refused(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    token = await signed_in(client, sms)
    prev_url = await upload_ok(client, token, encode(photo(), "PNG"))
    prev = (prev_url, await download(client, token, prev_url))
    before = await snapshot(db)
    png = encode(photo(), "PNG")
    auth = bearer(token)
    attempts = [
        client.put(AVATAR, files={"avatar": ("a.png", png, "image/png")}, headers=auth),
        client.put(AVATAR, data={"file": "not a file"}, headers=auth),
        client.put(AVATAR, headers=auth),
        client.put(AVATAR, json={"file": "aGVsbG8="}, headers=auth),
    ]
    for attempt in attempts:
        r = await attempt
        await assert_refused(client, db, token, r, 422, {"request.invalid"}, before, prev)


async def test_upload_needs_sign_in(client: httpx.AsyncClient, sms: Any, db: Any) -> None:
    await signed_in(client, sms)
    before = await snapshot(db)
    r = await upload(client, None, encode(photo(), "PNG"))
    assert r.status_code == 401
    assert r.json()["code"] == "auth.required"
    r = await upload(client, "kares_not-a-token", encode(photo(), "PNG"))
    assert r.status_code == 401
    assert r.json()["code"] == "auth.invalid_token"
    assert await snapshot(db) == before
    assert await count_rows(db, "media_objects") == 0


# --- size caps --------------------------------------------------------------------------


async def test_image_of_exactly_the_cap_is_accepted_one_more_byte_is_not(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, padded_png(MAX_BYTES), filename="a.png")
    prev = (url, await download(client, token, url))
    assert_clean(prev[1])
    assert len(prev[1]) < 100_000  # the padding chunk was not kept
    await assert_stored_clean(db)

    before = await snapshot(db)
    r = await upload(client, token, padded_png(MAX_BYTES + 1), filename="a.png")
    await assert_refused(client, db, token, r, 413, {"media.too_large"}, before, prev)


async def test_oversize_upload_with_content_length_is_refused(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    token = await signed_in(client, sms)
    prev_url = await upload_ok(client, token, encode(photo(), "PNG"))
    prev = (prev_url, await download(client, token, prev_url))
    before = await snapshot(db)
    for size in (MAX_BYTES + 200 * 1024, 3 * MAX_BYTES):
        r = await upload(client, token, padded_png(size), filename="a.png")
        assert r.request.headers.get("content-length") is not None
        await assert_refused(
            client, db, token, r, 413, {"request.too_large", "media.too_large"}, before, prev
        )


@pytest.mark.parametrize("declared", [None, "1000"], ids=["no-content-length", "lying-length"])
async def test_oversize_streamed_upload_is_refused_not_500(
    client: httpx.AsyncClient, sms: Any, db: Any, declared: str | None
) -> None:
    token = await signed_in(client, sms)
    prev_url = await upload_ok(client, token, encode(photo(), "PNG"))
    prev = (prev_url, await download(client, token, prev_url))
    before = await snapshot(db)

    body, ctype = multipart(padded_png(4 * MAX_BYTES))
    stream = Chunks(body)
    headers = {**bearer(token), "Content-Type": ctype}
    if declared is not None:
        headers["Content-Length"] = declared
    r = await client.put(AVATAR, content=stream, headers=headers)
    if declared is None:
        assert "content-length" not in r.request.headers
        assert r.request.headers.get("transfer-encoding") == "chunked"
    await assert_refused(
        client, db, token, r, 413, {"request.too_large", "media.too_large"}, before, prev
    )
    # The server stopped reading soon after the cap instead of taking it all in.
    assert stream.sent < 2 * MAX_BYTES


async def test_streamed_upload_under_the_cap_is_accepted(
    client: httpx.AsyncClient, sms: Any
) -> None:
    token = await signed_in(client, sms)
    body, ctype = multipart(jpeg_with_metadata(), filename="a.jpg", ctype="image/jpeg")
    r = await client.put(
        AVATAR, content=Chunks(body, 1000), headers={**bearer(token), "Content-Type": ctype}
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 200, r.text
    assert_clean(await download(client, token, r.json()["avatar_url"]))


SMALL_CAP = {"image_max_bytes": 20_000}


@pytest.mark.parametrize("settings_overrides", [SMALL_CAP], ids=["image_max_bytes=20000"])
async def test_configured_byte_cap_is_enforced(
    client: httpx.AsyncClient, sms: Any, db: Any, settings_overrides: dict[str, Any]
) -> None:
    token = await signed_in(client, sms)
    small = encode(photo((64, 64)), "JPEG")
    assert len(small) < 20_000
    prev_url = await upload_ok(client, token, small)
    prev = (prev_url, await download(client, token, prev_url))
    before = await snapshot(db)

    just_over = padded_png(20_001)
    r = await upload(client, token, just_over, filename="a.png")
    await assert_refused(client, db, token, r, 413, {"media.too_large"}, before, prev)

    far_over = padded_png(500_000)  # beyond the cap plus the multipart envelope allowance
    r = await upload(client, token, far_over, filename="a.png")
    await assert_refused(client, db, token, r, 413, {"request.too_large"}, before, prev)

    body, ctype = multipart(far_over)
    stream = Chunks(body, 8192)
    r = await client.put(AVATAR, content=stream, headers={**bearer(token), "Content-Type": ctype})
    await assert_refused(
        client, db, token, r, 413, {"request.too_large", "media.too_large"}, before, prev
    )
    assert stream.sent < 200_000


# --- pixel caps and downscaling -----------------------------------------------------------


BOMBS = {
    "png-30000x30000": lambda: png_bomb(30000, 30000),
    "png-8000x6000-over-default-cap": lambda: png_bomb(8000, 6000),
    "gif-65535x65535": gif_bomb,
    "jpeg-65500x65500": jpeg_bomb,
}


@pytest.mark.parametrize("kind", list(BOMBS))
async def test_decompression_bombs_are_refused(
    client: httpx.AsyncClient, sms: Any, db: Any, kind: str
) -> None:
    raw = BOMBS[kind]()
    assert len(raw) < MAX_BYTES
    token = await signed_in(client, sms)
    prev_url = await upload_ok(client, token, encode(photo(), "JPEG"))
    prev = (prev_url, await download(client, token, prev_url))
    before = await snapshot(db)
    r = await upload(client, token, raw, filename="a.png", ctype="image/png")
    await assert_refused(client, db, token, r, 422, {"media.too_many_pixels"}, before, prev)


@pytest.mark.parametrize(
    "settings_overrides", [{"image_max_pixels": 10_000}], ids=["image_max_pixels=10000"]
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
async def test_configured_pixel_cap_is_enforced(
    client: httpx.AsyncClient, sms: Any, db: Any, fmt: str, settings_overrides: dict[str, Any]
) -> None:
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, encode(photo((100, 100)), fmt), filename="a")
    prev = (url, await download(client, token, url))
    before = await snapshot(db)
    for size in ((101, 100), (10_001, 1)):
        r = await upload(client, token, encode(photo(size), fmt), filename="a")
        await assert_refused(client, db, token, r, 422, {"media.too_many_pixels"}, before, prev)


@pytest.mark.parametrize(
    ("size", "fmt", "want"),
    [
        ((3000, 1500), "JPEG", (1024, 512)),
        ((600, 2400), "PNG", (256, 1024)),
        ((2048, 2048), "WEBP", (1024, 1024)),
        ((1025, 10), "GIF", (1024, 10)),
        ((1024, 700), "JPEG", (1024, 700)),
        ((300, 200), "PNG", (300, 200)),
    ],
)
async def test_large_images_are_downscaled_small_ones_kept(
    client: httpx.AsyncClient,
    sms: Any,
    db: Any,
    size: tuple[int, int],
    fmt: str,
    want: tuple[int, int],
) -> None:
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, encode(photo(size), fmt), filename="a")
    out = assert_clean(await download(client, token, url))
    assert out.size == want
    assert max(out.size) <= MAX_SIDE
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT width, height FROM media_objects"))).one()
    assert tuple(row) == want


async def test_huge_but_allowed_dimensions_are_downscaled(
    client: httpx.AsyncClient, sms: Any
) -> None:
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, png_bomb(6000, 4000), filename="a.png")
    out = assert_clean(await download(client, token, url))
    assert out.size == (1024, 683)
    assert near(out.convert("RGB").getpixel((500, 300)), (0, 0, 0), tol=2)


# --- replacing, removing, and who may see it ------------------------------------------------


async def test_replacing_the_avatar_deletes_the_old_image(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    token = await signed_in(client, sms)
    first = await upload_ok(client, token, jpeg_with_metadata())
    assert await count_rows(db, "media_objects") == 1
    second = await upload_ok(client, token, encode(photo((50, 50)), "PNG"))
    assert second != first
    assert await count_rows(db, "media_objects") == 1

    r = await client.get(first, headers=bearer(token))
    assert r.status_code == 404
    assert r.json()["code"] == "media.not_found"
    assert opened(await download(client, token, second)).size == (50, 50)
    me = (await client.get("/api/v1/me", headers=bearer(token))).json()
    assert me["avatar_url"] == second


async def test_deleting_the_avatar_removes_the_image(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    token = await signed_in(client, sms)
    url = await upload_ok(client, token, jpeg_with_metadata())
    r = await client.delete(AVATAR, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["avatar_url"] is None
    assert (await client.get("/api/v1/me", headers=bearer(token))).json()["avatar_url"] is None
    assert await count_rows(db, "media_objects") == 0
    r = await client.get(url, headers=bearer(token))
    assert r.status_code == 404
    assert r.json()["code"] == "media.not_found"

    r = await client.delete(AVATAR, headers=bearer(token))  # again: nothing to do
    assert r.status_code == 200
    assert r.json()["avatar_url"] is None
    r = await client.delete(AVATAR)
    assert r.status_code == 401
    assert r.json()["code"] == "auth.required"


async def test_only_the_owner_can_fetch_the_image(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    mine = await signed_in(client, sms)
    theirs = await signed_in(client, sms, OTHER_PHONE)
    url = await upload_ok(client, mine, jpeg_with_metadata())

    r_other = await client.get(url, headers=bearer(theirs))
    r_missing = await client.get("/api/v1/media/" + "0" * 32, headers=bearer(theirs))
    assert r_other.status_code == r_missing.status_code == 404
    assert r_other.json()["code"] == "media.not_found"
    assert r_other.json() == r_missing.json()
    assert b"\xff\xd8" not in r_other.content

    r = await client.get(url)
    assert r.status_code == 401
    assert r.json()["code"] == "auth.required"
    r = await client.get(url, headers=bearer("kares_bogus"))
    assert r.status_code == 401
    assert r.json()["code"] == "auth.invalid_token"

    # The other account replacing and removing its own avatar leaves mine alone.
    other_url = await upload_ok(client, theirs, encode(photo(), "PNG"))
    assert (await client.get(other_url, headers=bearer(mine))).status_code == 404
    assert (await client.delete(AVATAR, headers=bearer(theirs))).json()["avatar_url"] is None
    assert_clean(await download(client, mine, url))
    assert await count_rows(db, "media_objects") == 1


async def test_concurrent_replacements_leave_one_image(
    client: httpx.AsyncClient, sms: Any, db: Any
) -> None:
    token = await signed_in(client, sms)
    await upload_ok(client, token, encode(photo(), "JPEG"))
    statuses: list[int] = []

    async def put(i: int) -> None:
        r = await upload(client, token, encode(photo((60 + i, 40)), "PNG"))
        statuses.append(r.status_code)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(put, i)
    assert all(s < 500 for s in statuses), statuses
    assert await count_rows(db, "media_objects") == 1


# --- no shape of upload is a 500 ----------------------------------------------------------


def _fuzz_cases() -> list[tuple[str, bytes]]:
    rnd = random.Random(20240601)
    out: list[tuple[str, bytes]] = []
    samples = {
        "jpeg": jpeg_with_metadata((120, 90), orientation=6),
        "png": encode(photo((120, 90), "RGBA"), "PNG", pnginfo=png_text_info()),
        "gif": frames("GIF"),
        "webp": encode(photo((120, 90)), "WEBP", exif=gps_exif()),
        "apng": frames("PNG"),
        "anim-webp": frames("WEBP"),
    }
    for name, data in samples.items():
        for frac in (0.05, 0.3, 0.6, 0.95):
            out.append((f"{name}-cut{frac}", data[: int(len(data) * frac)]))
        for i in range(6):
            flipped = bytearray(data)
            for _ in range(1 + i):
                pos = rnd.randrange(len(flipped))
                flipped[pos] ^= 1 << rnd.randrange(8)
            out.append((f"{name}-flip{i}", bytes(flipped)))
        out.append((f"{name}-doubled", data + data))
        out.append((f"{name}-trailing-junk", data + rnd.randbytes(500)))
    for magic in (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"RIFF\0\0\0\0WEBP"):
        out.append((f"magic-{magic[:4]!r}", magic + rnd.randbytes(300)))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 9  # out of range
    out.append(("orientation-9", encode(photo(), "JPEG", exif=exif)))
    bad_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xffgarbage"
    out.append(("corrupt-exif", encode(photo(), "JPEG", exif=bad_exif)))
    return out


FUZZ = _fuzz_cases()


async def test_no_upload_of_any_shape_is_a_500(
    client: httpx.AsyncClient, sms: Any, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = await signed_in(client, sms)
    auth = bearer(token)
    seen: dict[int, int] = {}

    def check(name: str, r: httpx.Response) -> None:
        assert r.status_code < 500, (name, r.status_code, r.text)
        assert r.status_code in (200, 400, 401, 413, 415, 422), (name, r.status_code, r.text)
        if r.status_code != 200:
            assert r.headers["content-type"].startswith("application/problem+json"), name
        seen[r.status_code] = seen.get(r.status_code, 0) + 1

    for name, data in FUZZ:
        r = await upload(client, token, data, filename="f.bin", ctype="application/octet-stream")
        check(name, r)
        if r.status_code == 200:
            assert_clean(await download(client, token, r.json()["avatar_url"]))

    png = encode(photo(), "PNG")
    raw_shapes: list[tuple[str, bytes, dict[str, str]]] = [
        ("no-boundary", b"--x\r\n\r\n", {"Content-Type": "multipart/form-data"}),
        ("garbage-multipart", b"garbage", {"Content-Type": "multipart/form-data; boundary=x"}),
        ("unterminated", multipart(png)[0][:-30], {"Content-Type": multipart(png)[1]}),
        ("no-content-type", multipart(png)[0], {}),
        ("urlencoded", b"file=abc", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("octet-stream", png, {"Content-Type": "application/octet-stream"}),
        ("image-body", png, {"Content-Type": "image/png"}),
        (
            "bad-length",
            multipart(png)[0],
            {"Content-Type": multipart(png)[1], "Content-Length": "abc"},
        ),
        (
            "negative-length",
            multipart(png)[0],
            {"Content-Type": multipart(png)[1], "Content-Length": "-1"},
        ),
        (
            "no-filename",
            multipart(png)[0].replace(b'; filename="avatar.png"', b""),
            {"Content-Type": multipart(png)[1]},
        ),
        (
            "two-files",
            multipart(png)[0][:-4] + b"\r\n" + multipart(png)[0].split(b"\r\n", 1)[1],
            {"Content-Type": multipart(png)[1]},
        ),
        (
            "odd-filename",
            multipart(png, filename="../../etc/passwd\x00.png")[0],
            {"Content-Type": multipart(png)[1]},
        ),
    ]
    for name, body, headers in raw_shapes:
        r = await client.put(AVATAR, content=body, headers={**auth, **headers})
        check(name, r)
    many = (
        b"".join(
            f'--b\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'.encode()
            for i in range(2000)
        )
        + b"--b--\r\n"
    )
    r = await client.put(
        AVATAR, content=many, headers={**auth, "Content-Type": "multipart/form-data; boundary=b"}
    )
    check("many-fields", r)

    assert not [rec for rec in caplog.records if rec.levelname in ("ERROR", "CRITICAL")]
    assert seen.get(415, 0) > 0 and seen.get(200, 0) > 0
    assert await count_rows(db, "media_objects") <= 1
    await assert_stored_clean(db)
