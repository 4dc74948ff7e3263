"""Logging set-up. Phone numbers never reach a log line in full.

A filter on the root handler rewrites anything that looks like a phone
number into the masked form ``+86 138****1234`` before it is formatted.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import phonenumbers

# An international number (+ and 7-15 digits, spaces or dashes allowed), or a
# bare mainland mobile number (11 digits starting 13-19).
_INTL_RE = re.compile(r"(?<![\w+])\+\d(?:[ \-]?\d){6,14}(?!\d)")
_CN_MOBILE_RE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def mask_phone(e164: str) -> str:
    """``+8613812341234`` -> ``+86 138****1234``."""
    try:
        num = phonenumbers.parse(e164, None)
        cc = f"+{num.country_code}"
        national = str(num.national_number)
    except phonenumbers.NumberParseException:
        cc, national = "", re.sub(r"\D", "", e164)
    if len(national) <= 4:
        return f"{cc} ****".strip()
    head = national[:3] if len(national) >= 10 else national[:1]
    return f"{cc} {head}****{national[-4:]}".strip()


def mask_phones_in(text: str) -> str:
    text = _INTL_RE.sub(lambda m: mask_phone("+" + re.sub(r"\D", "", m.group(0))), text)
    return _CN_MOBILE_RE.sub(lambda m: mask_phone("+86" + m.group(0)), text)


class PhoneMaskFilter(logging.Filter):
    """Masks phone numbers in the message and in any attached traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string is not ours to crash on
            return True
        masked = mask_phones_in(msg)
        if masked != msg:
            record.msg = masked
            record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask_phones_in(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask_phones_in(record.exc_text)
        return True


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(isinstance(f, PhoneMaskFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(PhoneMaskFilter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True


access = logging.getLogger("kares.access")

# query parameters that carry a secret (a download link's key, a token): the access
# log writes their name and "***", never the value
_SECRET_PARAM = re.compile(
    r"(^|&)((?:key|token|access_token|secret|code|password|sig|signature)=)[^&]*", re.I
)


def _query(raw: bytes) -> str:
    text = raw.decode("latin-1")
    return _SECRET_PARAM.sub(r"\1\2***", text)


def _client(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class AccessLog:
    """The access log: a line per request, in uvicorn's words, except for lanes.

    A lane (``kares.lanes``) serves what devices post all day; a line for each
    post would be most of the log and a measurable part of the post's cost. Its
    answers are counted instead and summed up once a ``every`` seconds (on the
    first answer after that), per path and status; an answer of 400 or above is
    still a line of its own, at once.
    """

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._since = time.monotonic()

    def line(self, scope: Mapping[str, Any], status: int) -> None:
        if not access.isEnabledFor(logging.INFO):
            return
        query = scope.get("query_string", b"")
        path = scope["path"] + ("?" + _query(query) if query else "")
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            _client(scope),
            scope["method"],
            path,
            scope.get("http_version", "1.1"),
            status,
        )

    def lane(self, scope: Mapping[str, Any], status: int | None) -> None:
        if status is None:
            return  # the client went away; the lane said so
        if status >= 400:
            self.line(scope, status)
        self._counts[scope["method"], scope["path"], status] += 1
        now = time.monotonic()
        if now - self._since >= self.every:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log the lanes' counts since the last summary, and start again."""
        now = time.monotonic() if now is None else now
        counts, self._counts = self._counts, Counter()
        seconds, self._since = now - self._since, now
        by_route: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for (method, path, status), n in sorted(counts.items()):
            by_route.setdefault((method, path), []).append((status, n))
        for (method, path), statuses in by_route.items():
            total = sum(n for _, n in statuses)
            access.info(
                "%s %s: %d answered in %.0f s (%s)",
                method,
                path,
                total,
                seconds,
                "; ".join(f"{status}: {n}" for status, n in statuses),
            )
