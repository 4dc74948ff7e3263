"""SMS senders behind one interface.

* ``console`` (default): prints the message to stderr with the number masked,
  so a developer running ``kares serve`` can read the code.
* ``file``: appends one JSON line per message to ``KARES_SMS_FILE``.
* ``http``: POSTs ``{"to", "template", "params", "text"}`` as JSON to
  ``KARES_SMS_HTTP_URL`` (a provider adapter / gateway), bearer token from
  ``KARES_SMS_HTTP_TOKEN``. Any non-2xx answer is a send failure.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import httpx

from kares import gateways
from kares.config import Settings
from kares.logs import mask_phone


class SmsError(RuntimeError):
    pass


@dataclass(frozen=True)
class SmsMessage:
    to: str  # E.164
    template: str
    params: dict[str, str]
    text: str


class SmsSender(Protocol):
    async def send(self, msg: SmsMessage) -> None: ...


class ConsoleSender:
    async def send(self, msg: SmsMessage) -> None:
        print(f"[sms to {mask_phone(msg.to)}] {msg.text}", file=sys.stderr, flush=True)


class FileSender:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, msg: SmsMessage) -> None:
        line = json.dumps(
            {"to": msg.to, "template": msg.template, "params": msg.params, "text": msg.text}
        )

        def _write() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")

        await anyio.to_thread.run_sync(_write)


class HttpSender:
    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        # one client (and its connections) for the process's life, not one per SMS
        self._client = gateways.client(timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, msg: SmsMessage) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        payload = {"to": msg.to, "template": msg.template, "params": msg.params, "text": msg.text}
        try:
            resp = await self._client.post(self.url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise SmsError(f"SMS provider unreachable: {type(exc).__name__}") from exc
        if resp.status_code // 100 != 2:
            raise SmsError(f"SMS provider answered {resp.status_code}")


def make_sender(settings: Settings) -> SmsSender:
    if settings.sms_sender == "http":
        if not settings.sms_http_url:
            raise ValueError("KARES_SMS_SENDER=http needs KARES_SMS_HTTP_URL")
        return HttpSender(
            settings.sms_http_url, settings.sms_http_token, settings.sms_http_timeout_seconds
        )
    if settings.sms_sender == "file":
        return FileSender(settings.sms_file or settings.var_dir / "sms-outbox.jsonl")
    return ConsoleSender()
