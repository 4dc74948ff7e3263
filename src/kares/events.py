"""In-process event bus: a service publishes after it commits; subscribers react.

Step 5 adds a Redis transport for cross-process fan-out behind the same
``publish``/``subscribe`` calls.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("kares.events")


@dataclass(frozen=True)
class Event:
    name: str
    account_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Event], Awaitable[None]]
_handlers: dict[str, list[Handler]] = defaultdict(list)


def subscribe(name: str, handler: Handler) -> None:
    if handler not in _handlers[name]:
        _handlers[name].append(handler)


async def publish(event: Event) -> None:
    for handler in list(_handlers.get(event.name, ())):
        try:
            await handler(event)
        except Exception:
            log.exception("event handler failed for %s", event.name)
