"""The process-wide things a request or job needs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY

from kares import crypto, gateways
from kares.config import Settings, resolve_keys
from kares.db import Database
from kares.gateways.oauth import AppleKeys
from kares.gateways.push import Push
from kares.gateways.sms import SmsSender, make_sender
from kares.netinfo import PlaceResolver


@dataclass
class Runtime:
    settings: Settings
    db: Database
    sms: SmsSender
    places: PlaceResolver
    http: httpx.AsyncClient
    passwords: PasswordHasher
    push: Push
    apple_keys: AppleKeys = field(default_factory=AppleKeys)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        data_keys, index_key = resolve_keys(settings)
        crypto.install(crypto.KeyRing.parse(data_keys, index_key))
        hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost_kib,
            parallelism=settings.argon2_parallelism,
            hash_len=RFC_9106_LOW_MEMORY.hash_len,
            salt_len=RFC_9106_LOW_MEMORY.salt_len,
        )
        return cls(
            settings=settings,
            db=Database(settings.effective_database_url),
            sms=make_sender(settings),
            places=PlaceResolver.from_csv(settings.ip_places_csv),
            http=gateways.client(
                timeout=settings.oauth_http_timeout_seconds, follow_redirects=False
            ),
            passwords=hasher,
            push=Push(settings),
        )

    async def close(self) -> None:
        closer = getattr(self.sms, "aclose", None)
        if closer is not None:
            await closer()
        await self.http.aclose()
        await self.push.aclose()
        await self.db.dispose()
