"""The HTTP protocol ``kares serve`` gives uvicorn: its own, writing an answer's
head and body in one go.

uvicorn writes a response's status line and headers to the socket when the app
sends ``http.response.start``, and the body when it sends
``http.response.body``: two writes, two system calls and, on loopback or a
fast network, two segments the client wakes up for. For a small answer sent
whole (a JSON reply, a lane's), that second write is a sizeable part of the
request's cost (``bench/README.md``, "bench_owntracks.py").

:class:`HttpProtocol` is uvicorn's httptools protocol with the transport
wrapped: a response head is held back until the next write on the same
connection, which is its body in the usual case, and the two go out as one.
Nothing waits on it: a head that no write follows in the same turn of the
event loop (a stream's first event comes later) is written on the loop's next
turn, and closing the connection writes what is held first. The bytes on the
wire are the same, in the same order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Coalescing:
    """A transport that writes a response head together with what follows it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n":  # a response head
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing a response's head with its body."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = _Coalescing(transport, asyncio.get_running_loop())
        super().connection_made(wrapped)
