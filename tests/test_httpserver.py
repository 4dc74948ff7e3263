"""``kares serve``'s HTTP protocol (kares.httpserver) writes an answer's head and
body as one write, and never holds a head back from a stream; the lanes served in
front of the framework (kares.lanes) answer like the framework does; the access
log (kares.logs.AccessLog) sums lanes up and writes a line for everything else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from kares.httpserver import HttpProtocol
from kares.logs import AccessLog
from tests.support.live import free_port


async def small(scope: Any, receive: Any, send: Any) -> None:
    """A tiny ASGI app: /json answers whole; /stream sends its head, then an event
    later; /close answers and closes the connection."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b'{"ok":true}'
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-s", b"1")]})
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if scope["path"] == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(app: Any = small) -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=HttpProtocol, access_log=False, log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def read_segments(sock: socket.socket, want: bytes, limit: float = 5.0) -> list[bytes]:
    """What the socket delivers, one recv at a time, until ``want`` has arrived."""
    sock.settimeout(limit)
    got: list[bytes] = []
    while want not in b"".join(got):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got.append(chunk)
    return got


@pytest.mark.db_agnostic
async def test_a_whole_answer_goes_out_as_one_write() -> None:
    async with serving() as port:
        # three answers on one keep-alive connection
        def exchange() -> list[list[bytes]]:
            out = []
            with socket.create_connection(("127.0.0.1", port)) as sock:
                for _ in range(3):
                    sock.sendall(b"GET /json HTTP/1.1\r\nhost: x\r\n\r\n")
                    out.append(read_segments(sock, b'{"ok":true}'))
            return out

        for segments in await asyncio.to_thread(exchange):
            # head and body in the first read: one write, not two
            assert len(segments) == 1, segments
            assert segments[0].startswith(b"HTTP/1.1 200 OK\r\n")
            assert segments[0].endswith(b'\r\n\r\n{"ok":true}')


@pytest.mark.db_agnostic
async def test_a_streams_head_is_not_held_back_until_its_first_event() -> None:
    async with serving() as port:

        def exchange() -> tuple[bytes, bytes]:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
                sock.settimeout(0.25)  # the event comes 0.3 s after the head
                head = sock.recv(65536)
                rest = b"".join(read_segments(sock, b"data: 1"))
                return head, rest

        head, rest = await asyncio.to_thread(exchange)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"x-s: 1" in head
        assert b"data: 1" not in head and b"data: 1" in rest


@pytest.mark.db_agnostic
async def test_closing_the_connection_writes_what_is_held_first() -> None:
    async with serving() as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            r = await c.get("/close")
            assert r.status_code == 200 and r.json() == {"ok": True}
            assert r.headers["connection"] == "close"


# --- lanes in front of the framework ------------------------------------------------------


async def test_a_lane_answers_like_the_framework(client: httpx.AsyncClient) -> None:
    # no credentials: the lane's problem document, with the security headers
    r = await client.post("/owntracks", json={"_type": "location", "lat": 1, "lon": 2, "tst": 1})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    # a body over the JSON limit, and NUL characters, as the framework refuses them
    r = await client.post("/owntracks", content=b"[" + b" " * (1024 * 1024 + 10) + b"]")
    assert r.status_code == 413 and r.json()["code"] == "request.too_large"
    r = await client.post("/owntracks", content=b'{"_type":"location","tid":"a\\u0000"}')
    assert r.status_code == 400 and r.json()["code"] == "request.nul_character"
    r = await client.post("/owntracks?u=a%00b", json={})
    assert r.status_code == 400 and r.json()["code"] == "request.nul_character"


async def test_an_unexpected_error_in_a_lane_is_a_logged_500(
    app: Any, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(scope: Any, raw: bytes) -> Any:
        raise RuntimeError("a bug")

    lanes = app.lanes.lanes
    saved = lanes[("POST", "/owntracks")]
    lanes[("POST", "/owntracks")] = broken
    try:
        with caplog.at_level(logging.ERROR, logger="kares.lanes"):
            r = await client.post("/owntracks", json={})
    finally:
        lanes[("POST", "/owntracks")] = saved
    assert r.status_code == 500 and r.json()["code"] == "internal"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert any("RuntimeError" in rec.getMessage() for rec in caplog.records)


# --- the access log ----------------------------------------------------------------------


def scope(path: str, query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query,
        "http_version": "1.1",
        "client": ("127.0.0.1", 50000),
    }


@pytest.mark.db_agnostic
def test_lanes_are_summed_up_and_refusals_are_lines(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog(every=3600)
    with caplog.at_level(logging.INFO, logger="kares.access"):
        for _ in range(5):
            log.lane(scope("/owntracks"), 200)
        log.lane(scope("/owntracks", b"u=bob"), 401)
        log.lane(scope("/owntracks"), None)  # the client went away: nothing to count
        lines = [r.getMessage() for r in caplog.records]
        assert lines == ['127.0.0.1:50000 - "POST /owntracks?u=bob HTTP/1.1" 401']
        log.flush()
        summary = caplog.records[-1].getMessage()
    assert summary.startswith("POST /owntracks: 6 answered in ")
    assert summary.endswith("(200: 5; 401: 1)")


async def test_a_framework_request_gets_its_own_line(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kares.access"):
        r = await client.get("/healthz")
    assert r.status_code == 200
    assert [rec.getMessage() for rec in caplog.records if rec.name == "kares.access"] == [
        '127.0.0.1:40000 - "GET /healthz HTTP/1.1" 200'
    ]


@pytest.mark.db_agnostic
def test_the_access_log_never_writes_a_secret_in_a_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = AccessLog()
    with caplog.at_level(logging.INFO, logger="kares.access"):
        log.line(scope("/api/v1/me/rights/export/x/download", b"key=s3cr3t&n=1"), 200)
        log.line(scope("/cb", b"state=a&code=123456&TOKEN=abc"), 302)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        '127.0.0.1:50000 - "POST /api/v1/me/rights/export/x/download?key=***&n=1 HTTP/1.1" 200',
        '127.0.0.1:50000 - "POST /cb?state=a&code=***&TOKEN=*** HTTP/1.1" 302',
    ]
