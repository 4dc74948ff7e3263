"""Logging set-up. Phone numbers never reach a log line in full.

A filter on the root handler rewrites anything that looks like a phone
number into the masked form ``+86 138****1234`` before it is formatted.
"""

from __future__ import annotations

import logging
import re

import phonenumbers

_PHONE_RE = re.compile(r"(?<![\w.])\+?\d[\d \-()]{7,18}\d(?![\w.])")


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
    def _sub(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        if len(digits) < 7:
            return m.group(0)
        raw = m.group(0)
        return mask_phone(raw if raw.startswith("+") else "+" + digits)

    return _PHONE_RE.sub(_sub, text)


class PhoneMaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string is not ours to crash on
            return True
        masked = mask_phones_in(msg)
        if masked != msg:
            record.msg = masked
            record.args = None
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
