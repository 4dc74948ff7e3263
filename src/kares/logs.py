"""Logging set-up. Phone numbers never reach a log line in full.

A filter on the root handler rewrites anything that looks like a phone
number into the masked form ``+86 138****1234`` before it is formatted.
"""

from __future__ import annotations

import logging
import re

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
