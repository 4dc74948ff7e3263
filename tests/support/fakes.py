"""Fake outside services as real HTTP servers on loopback.

Only what lives outside Kares is faked (SMS gateway, WeChat, Apple); the
real client code in Kares talks to these over real HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import phonenumbers

Route = Callable[["Request"], tuple[int, dict[str, str], bytes]]


class Request:
    def __init__(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def q(self, name: str) -> str | None:
        v = self.query.get(name)
        return v[0] if v else None


class FakeServer:
    """A threaded HTTP server with routes keyed by (method, path)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, parts.path, parse_qs(parts.query), self.headers, body)
                outer.requests.append(req)
                route = outer.routes.get((self.command, parts.path))
                if route is None:
                    status, headers, payload = 404, {}, b"not found"
                else:
                    status, headers, payload = route(req)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, fn: Route) -> None:
        self.routes[(method, path)] = fn

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def json_reply(obj: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


class FakeSmsGateway(FakeServer):
    """Records every SMS Kares sends; can be told to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.route("POST", "/send", self._send)

    def _send(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if self.fail_with is not None:
            return json_reply({"error": "down"}, self.fail_with)
        msg = req.json()
        msg["authorization"] = req.headers.get("authorization")
        self.messages.append(msg)
        return json_reply({"ok": True})

    def codes_for(self, phone: str) -> list[str]:
        num = phonenumbers.parse(phone, "CN")
        e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
        return [m["params"]["code"] for m in self.messages if m["to"] == e164]

    def last_code(self, e164: str) -> str:
        codes = self.codes_for(e164)
        assert codes, f"no SMS was sent to {e164}"
        return codes[-1]
