"""Clients of the outside services Kares talks to: SMS gateways, push providers
(APNs, FCM, Web Push) and sign-in providers (WeChat, Apple). They speak those
services' wire formats and know nothing of Kares' domains."""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Any

import httpx


@lru_cache(maxsize=1)
def tls() -> ssl.SSLContext:
    """One TLS context for every client of this process: making one reads the
    whole CA bundle (tens of milliseconds), so clients share it."""
    return httpx.create_ssl_context()


def client(**kw: Any) -> httpx.AsyncClient:
    """An HTTP client for an outside service, verifying certificates with the
    process's shared TLS context."""
    return httpx.AsyncClient(verify=tls(), **kw)
