"""Real-time delivery to connected clients: one hub, per-account subscriptions.

A domain says "something about account X moved" (``deliver``) to the
accounts that may care; each connected client's stream then re-reads what
moved *under its own rights* and sends it. The hub carries no personal data,
only who moved and a kind, so a stale or over-broad notice can never leak
anything: the stream decides what the viewer may see at the moment it sends.

Today the stream is server-sent events (``/api/v1/location/stream``); step 5's
WebSocket subscribes to the same hub. The hub is in-process; step 5 adds the
cross-process fan-out (Redis) behind the same ``deliver``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

QUEUE_SIZE = 256


@dataclass(frozen=True)
class Notice:
    seq: int
    kind: str
    about: str  # the account whose data moved


@dataclass(eq=False)
class Subscription:
    account_id: str
    queue: asyncio.Queue[Notice] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    # set when notices were dropped because the client fell behind: it must
    # re-read everything (a snapshot) instead of trusting the deltas
    lagged: bool = False


class Hub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._seq = itertools.count(1)

    def subscribe(self, account_id: str) -> Subscription:
        sub = Subscription(account_id)
        self._subs.setdefault(account_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.account_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.account_id]

    def connected(self, account_ids: Iterable[str]) -> set[str]:
        return {a for a in account_ids if a in self._subs}

    def any_connected(self) -> bool:
        return bool(self._subs)

    def deliver(self, account_ids: Iterable[str], *, kind: str, about: str) -> int:
        """Tell the connected clients of these accounts; returns how many."""
        n = 0
        seq = next(self._seq)
        for a in set(account_ids):
            for sub in self._subs.get(a, ()):
                try:
                    sub.queue.put_nowait(Notice(seq, kind, about))
                    n += 1
                except asyncio.QueueFull:
                    sub.lagged = True
        return n


hub = Hub()
