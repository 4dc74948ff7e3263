"""Voice notes in the containers browsers and iOS record, besides Ogg Opus and
AMR-NB: WebM/Opus (MediaRecorder; written live, so its duration is read from
its last block) and MP4/AAC (M4A; read by mutagen). Sniffed from the bytes,
duration read and capped like the others; anything else is a clear 4xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kares.errors import Problem
from kares.messaging.attachments import sniff_voice
from tests.conftest import snapshot
from tests.support.audio import m4a, webm
from tests.test_families import h, new_family, person, problem
from tests.test_messaging import ATTACH, OWNER, send

MAX_BYTES = 2 * 1024 * 1024


async def upload(client: httpx.AsyncClient, me: dict[str, Any], raw: bytes) -> httpx.Response:
    return await client.post(
        ATTACH,
        params={"kind": "voice"},
        files={"file": ("voice", raw, "application/octet-stream")},
        headers=h(me),
    )


@pytest.mark.parametrize(
    ("raw", "content_type", "codec", "ms"),
    [
        (webm(3), "audio/webm", "opus", 3000),  # as a browser records it: no duration
        (webm(2, duration_ms=2345.0), "audio/webm", "opus", 2345),  # as a tool writes it
        (m4a(4.5), "audio/mp4", "aac", 4500),
    ],
)
async def test_webm_and_mp4_voice_notes_are_read_and_sent(
    client: httpx.AsyncClient, sms: Any, raw: bytes, content_type: str, codec: str, ms: int
) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    fid = await new_family(client, owner)
    r = await upload(client, owner, raw)
    assert r.status_code == 201, r.text
    got = r.json()
    assert (got["content_type"], got["codec"], got["duration_ms"]) == (content_type, codec, ms)
    r = await send(client, owner, fid, kind="voice", attachment_id=got["id"])
    assert r.status_code == 201, r.text
    assert r.json()["attachment"]["duration_ms"] == ms
    file = await client.get(r.json()["attachment"]["url"], headers=h(owner))
    assert file.status_code == 200
    assert file.headers["content-type"] == content_type and file.content == raw


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (webm(121), 422, "media.too_long"),
        (m4a(121), 422, "media.too_long"),
        (webm(0), 422, "media.empty"),
        (webm(2, video=True), 415, "media.unsupported_type"),  # a video is no voice note
        (webm(2, codec="A_VORBIS"), 415, "media.unsupported_type"),
        (webm(2)[:300], 415, "media.unsupported_type"),  # cut in the middle of a block
        (m4a(2, handler=b"vide"), 415, "media.unsupported_type"),
        (m4a(2, entry=b"alac"), 415, "media.unsupported_type"),
        (m4a(2)[:90], 415, "media.unsupported_type"),
    ],
)
async def test_other_webm_and_mp4_files_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sms: Any, db: Any, raw: bytes, status: int, code: str
) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    before = await snapshot(db)
    problem(await upload(client, owner, raw), status, code)
    assert await snapshot(db) == before


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
    which=st.sampled_from(["webm", "m4a"]),
)
def test_damaged_files_are_a_4xx_never_an_error(
    cut: int, flips: list[tuple[int, int]], which: str
) -> None:
    raw = bytearray(webm(1) if which == "webm" else m4a(1))
    for at, byte in flips:
        if 4 <= at < len(raw):  # the magic stays, so the container's reader is the one asked
            raw[at] = byte
    raw = raw[: max(cut, 8)]
    try:
        v = sniff_voice(bytes(raw), max_bytes=MAX_BYTES, max_seconds=120)
    except Problem as exc:
        assert 400 <= exc.status < 500
    else:
        assert 0 <= v.duration_ms <= 120_000
