"""A voice call between two real WebRTC peers (``aiortc``) set up through Kares'
signalling alone (docs/CALLS.md, "One call, step by step").

Ann and Bo share a family and have the calls function granted; each holds a real
``/api/v1/ws`` socket to a real uvicorn server on loopback. Ann's peer connection
sends a synthetic tone, offers through ``call.invite``; Bo's answers through
``call.answer``. The ICE candidates are taken out of both session descriptions
and travel only as ``call.candidates`` frames (trickle), so the media connects
only if Kares relays them. Bo's peer must then receive audio frames that are not
silence; Ann hangs up and both ends hear it and close.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from typing import Any

import aioice.ice
import httpx
import numpy as np
import pytest
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame

from kares.db import Database
from tests.conftest import query
from tests.test_calls_ws import ANN, BO, BO_PHONE, PHONE, caller, send
from tests.test_families import join, new_family
from tests.test_ws import frame, hello, opened, ws_url  # noqa: F401 - ws_url

RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
LOUD = 1000  # a sample above this (of 32767) is no silence; the tone peaks near 9800
FRAMES_WANTED = 25  # half a second of tone
BOUND = 60.0  # the whole call must be over well within this (a bound, not a timing check)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"calls_ring_seconds": 60}


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peers gather host candidates on 127.0.0.1 alone: the media stays on
    loopback like everything else, whatever interfaces the machine has (aioice
    leaves loopback out by default)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class Tone(AudioStreamTrack):
    """A sine tone at ``hz``, 20 ms frames of 16-bit mono at 48 kHz, paced in real
    time (as a microphone would deliver them)."""

    def __init__(self, hz: float) -> None:
        super().__init__()
        self.hz = hz
        self.sent = 0  # samples
        self.start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.sent / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(FRAME_SAMPLES) + self.sent) / RATE
        pcm = (0.3 * 32767 * np.sin(2 * math.pi * self.hz * t)).astype(np.int16)
        out = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        out.sample_rate = RATE
        out.pts = self.sent
        out.time_base = fractions.Fraction(1, RATE)
        self.sent += FRAME_SAMPLES
        return out


def without_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """The session description with its ICE candidates taken out, and those
    candidates as a trickling client sends them ({candidate, sdpMid})."""
    kept: list[str] = []
    found: list[dict[str, Any]] = []
    mid = None
    for line in sdp.splitlines():
        if line.startswith("a=mid:"):
            mid = line.removeprefix("a=mid:")
        if line.startswith("a=candidate:"):
            found.append({"candidate": line.removeprefix("a="), "sdpMid": mid})
            continue
        if line.startswith("a=end-of-candidates"):
            continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n", found


async def add_candidates(pc: RTCPeerConnection, candidates: list[dict[str, Any]]) -> int:
    """Candidates relayed by Kares into the peer connection; an empty candidate
    is the end of them. Returns how many real candidates were added."""
    added = 0
    for c in candidates:
        if not c["candidate"]:
            await pc.addIceCandidate(None)
            continue
        ice = candidate_from_sdp(c["candidate"].removeprefix("candidate:"))
        ice.sdpMid = c["sdpMid"]
        await pc.addIceCandidate(ice)
        added += 1
    return added


async def loud_frames(track: MediaStreamTrack, wanted: int) -> tuple[int, int]:
    """Read the received track until ``wanted`` frames carried sound; returns
    (frames read, frames with sound)."""
    read = loud = 0
    while loud < wanted:
        got = await track.recv()
        assert isinstance(got, AudioFrame)
        read += 1
        if int(np.abs(got.to_ndarray()).max()) > LOUD:
            loud += 1
    return read, loud


async def until(c: Any, kind: str) -> dict[str, Any]:
    """The next frame of ``kind`` on the socket (frames of other kinds may come
    first: inbox notices, the message stream)."""
    while True:
        f = await frame(c)
        assert f["type"] != "error", f
        if f["type"] == kind:
            return f


async def test_two_webrtc_peers_talk_through_our_signalling(
    ws_url: str,  # noqa: F811
    client: httpx.AsyncClient,
    sms: Any,
    db: Database,
    loopback_only: None,
) -> None:
    ann = await caller(client, sms, ANN, PHONE)
    bo = await caller(client, sms, BO, BO_PHONE)
    fid = await new_family(client, ann, "Lis")
    await join(client, ann, fid, bo)
    pc_a, pc_b = RTCPeerConnection(), RTCPeerConnection()
    received: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @pc_b.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not received.done():
            received.set_result(track)

    try:
        async with (
            asyncio.timeout(BOUND),
            opened(ws_url, ann["token"]) as a,
            opened(ws_url, bo["token"]) as b,
        ):
            await hello(a)
            await hello(b)
            # Ann: a microphone (the tone), an offer; aiortc gathers into the SDP,
            # and the candidates leave it to travel as frames of their own
            pc_a.addTrack(Tone(440.0))
            pc_b.addTrack(Tone(660.0))
            await pc_a.setLocalDescription(await pc_a.createOffer())
            offer, ann_candidates = without_candidates(pc_a.localDescription.sdp)
            assert ann_candidates and "a=candidate" not in offer
            assert all(" 127.0.0.1 " in c["candidate"] for c in ann_candidates)
            await send(a, type="call.invite", callee=bo["account"]["id"], sdp=offer, id="inv")
            ok = await until(a, "call.ok")
            cid = ok["call"]["id"]
            assert ok["call"]["state"] == "ringing"

            # Bo's phone rings with the offer, says so, and answers
            invite = await until(b, "call.invite")
            assert invite["call"]["id"] == cid and invite["sdp"] == offer
            assert invite["from"]["id"] == ann["account"]["id"]
            await send(b, type="call.ringing", call=cid)
            await until(b, "call.ok")
            await until(a, "call.ringing")
            await pc_b.setRemoteDescription(RTCSessionDescription(invite["sdp"], "offer"))
            await pc_b.setLocalDescription(await pc_b.createAnswer())
            answer, bo_candidates = without_candidates(pc_b.localDescription.sdp)
            assert bo_candidates
            await send(b, type="call.answer", call=cid, sdp=answer, id="ans")
            assert (await until(b, "call.ok"))["call"]["state"] == "connected"
            got = await until(a, "call.answer")
            await pc_a.setRemoteDescription(RTCSessionDescription(got["sdp"], "answer"))

            # the candidates, each way through Kares, then the end of them
            end = {"candidate": "", "sdpMid": ann_candidates[0]["sdpMid"]}
            await send(a, type="call.candidates", call=cid, candidates=[*ann_candidates, end])
            await until(a, "call.ok")
            relayed = await until(b, "call.candidates")
            assert relayed["candidates"] == [*ann_candidates, end]
            assert await add_candidates(pc_b, relayed["candidates"]) == len(ann_candidates)
            end = {"candidate": "", "sdpMid": bo_candidates[0]["sdpMid"]}
            await send(b, type="call.candidates", call=cid, candidates=[*bo_candidates, end])
            await until(b, "call.ok")
            relayed = await until(a, "call.candidates")
            assert await add_candidates(pc_a, relayed["candidates"]) == len(bo_candidates)

            # audio flows, peer to peer: Bo hears Ann's tone
            track = await received
            read, loud = await loud_frames(track, FRAMES_WANTED)
            assert loud == FRAMES_WANTED and read >= loud
            assert pc_a.connectionState == pc_b.connectionState == "connected"

            # Ann hangs up: her socket is answered, Bo's phone is told why
            await send(a, type="call.hangup", call=cid, id="bye")
            done = await until(a, "call.ok")
            assert (done["call"]["state"], done["call"]["end_reason"]) == ("ended", "hangup")
            bye = await until(b, "call.hangup")
            assert (bye["call"]["id"], bye["reason"]) == (cid, "hangup")
            await pc_a.close()
            await pc_b.close()
            # Bo's received track ends with the call
            with pytest.raises(MediaStreamError):
                while True:
                    await track.recv()
    finally:
        await pc_a.close()
        await pc_b.close()
    assert pc_a.connectionState == pc_b.connectionState == "closed"
    (row,) = await query(db, "SELECT state, end_reason FROM calls WHERE id = :id", id=cid)
    assert (row["state"], row["end_reason"]) == ("ended", "hangup")
