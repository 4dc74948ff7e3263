"""TURN credentials by the TURN REST scheme coturn implements (``use-auth-secret``
with ``static-auth-secret``): the username is ``<expiry unix time>:<account id>``
and the password is base64(HMAC-SHA1(secret, username)). The TURN server checks
both with the same shared secret, with no call to Kares; a credential stops
working at its expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TurnCredentials:
    uris: list[str]
    username: str
    password: str
    ttl: int  # seconds


def credentials(
    *, secret: str, uris: list[str], account_id: str, now: datetime, ttl: int
) -> TurnCredentials:
    expiry = int(now.timestamp()) + ttl
    username = f"{expiry}:{account_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(uris, username, base64.b64encode(digest).decode(), ttl)
