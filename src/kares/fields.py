"""Column helpers that declare what personal information a column holds.

``personal("contact.phone")`` goes in a column's ``info``; export, deletion,
retention and anonymisation walk these declarations (step 2 onwards), so no
feature writes its own. ``Encrypted`` stores a string encrypted at rest with
the key ring in ``kares.crypto``; the table and column are bound into the
ciphertext so a value cannot be moved to another column unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import AwareDatetime, BeforeValidator, Field, WrapValidator
from sqlalchemy import LargeBinary, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from kares import crypto

PI_INFO_KEY = "pi_category"


def personal(category: str) -> dict[str, Any]:
    """``info=`` for a column holding personal information of ``category``."""
    return {PI_INFO_KEY: category}


def not_personal(reason: str) -> dict[str, Any]:
    """``info=`` for a column that looks personal but is not (say why)."""
    return {PI_INFO_KEY: None, "not_personal_reason": reason}


class Encrypted(TypeDecorator[str]):
    """A text value encrypted with AES-256-GCM at rest."""

    impl = Text
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return crypto.encrypt(value, context=self.context)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return crypto.decrypt(value, context=self.context)


class Sealed(TypeDecorator[bytes]):
    """Bytes encrypted with AES-256-GCM at rest (``crypto.seal``), the table and
    column bound in like ``Encrypted``: for packed arrays (a day of a person's
    health samples), where a text token would cost a third more."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return crypto.seal(value, context=self.context)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return crypto.unseal(bytes(value), context=self.context)


@dataclass(frozen=True)
class Keyed:
    """A column holding ``crypto.blind_index(<an account's value>, purpose=...)``.

    ``value`` names the account's column that was indexed (``"accounts.phone"``,
    read decrypted); ``role`` says whether the rows are the account's own
    ("subject") or someone else's that name it ("also": a guardian named by
    number in a child's request); ``when`` limits the match to rows whose
    columns hold these values (password_limits: only ``scope = "number"``).
    """

    column: str
    value: str
    purpose: str
    role: Literal["subject", "also"] = "subject"
    when: tuple[tuple[str, str], ...] = ()


COLLECTED_UNITS = ("time", "ms", "day")


def table_info(
    *,
    subject: str | None,
    not_personal: tuple[str, ...] = (),
    why: str = "",
    also_about: tuple[str, ...] = (),
    keyed: tuple[Keyed, ...] = (),
    collected: str | None = None,
    collected_unit: str = "time",
    lifetime: dict[str, timedelta] | None = None,
) -> dict[str, Any]:
    """``__table_args__`` entry: whose data the table holds and which columns are
    explicitly not personal.

    ``subject`` names the column holding the account id the rows are about (None
    for tables about no account, with ``why``); ``also_about`` names further
    account columns whose account the rows also concern (a guardian);
    ``keyed`` names columns that find an account by a blind index of one of its
    values (``kares.privacy.reach`` reads all three). A test fails on any column
    that is neither ``personal(...)``, ``not_personal(...)`` nor listed here.

    Retention (``kares.retention``) reads two more:

    * ``collected`` names the column that says when a row's data was collected,
      in ``collected_unit``: ``"time"`` (a UTC datetime), ``"ms"`` (milliseconds
      since 1970) or ``"day"`` (days since 1970; a day's row counts as collected
      at the day's end). Every table with a column of a category kept for a
      number of ``days`` must declare it (a test fails otherwise).
    * ``lifetime`` declares short-lived rows (codes, tickets, rate-limit
      counters): ``{column: age}``, the row is of no use once every listed
      column is NULL or older than its age, and the retention job deletes it.
    """
    if collected_unit not in COLLECTED_UNITS:
        raise ValueError(f"collected_unit must be one of {COLLECTED_UNITS}")
    return {
        "info": {
            "subject_column": subject,
            "not_personal": list(not_personal),
            "why": why,
            "also_about": list(also_about),
            "keyed": list(keyed),
            "collected": collected,
            "collected_unit": collected_unit,
            "lifetime": dict(lifetime or {}),
        }
    }


# What follows a table's rows when retention removes them, registered by the domain
# that derives data from them (``@expiry_hook("location_fixes")``). Retention runs
# them in the transaction of each batch, with the rows that went; it never names a
# domain, and a domain never imports retention (it sits above the features).
ExpiryHook = Callable[[Any, "Expired"], Awaitable[None]]
_expiry_hooks: dict[str, list[ExpiryHook]] = {}


class Expired:
    """One batch that retention removed or anonymised in ``table``: ``rows`` hold
    each row's subject (``subject``, or None) and collection value (``collected``,
    in the table's ``collected_unit``); ``cutoff_ms`` is the rule's limit in
    milliseconds since 1970 (rows collected before it went)."""

    __slots__ = ("action", "cutoff_ms", "rows", "table")

    def __init__(self, table: str, action: str, cutoff_ms: int, rows: list[dict[str, Any]]) -> None:
        self.table = table
        self.action = action
        self.cutoff_ms = cutoff_ms
        self.rows = rows


def expiry_hook(table: str) -> Callable[[ExpiryHook], ExpiryHook]:
    """Register ``fn(session, expired)`` to run after retention removes rows of
    ``table`` (in the same transaction, before its commit)."""

    def register(fn: ExpiryHook) -> ExpiryHook:
        _expiry_hooks.setdefault(table, []).append(fn)
        return fn

    return register


def expiry_hooks(table: str) -> list[ExpiryHook]:
    return list(_expiry_hooks.get(table, ()))


# Request fields take what their JSON Schema says and nothing more. pydantic's lax
# mode would read true as 1, 0 as 1970-01-01, "1" as true and "1700000000" as a
# time; these types refuse all of that, so a body that breaks its schema gets 422.


def _json_integer(v: object) -> object:
    """An integer as JSON Schema means it: 25 and 25.0 (a number with no fraction
    part), never true/false nor a string of digits."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _iso_text(v: object) -> object:
    """A date or time comes as an ISO 8601 string: a number (or a string of one)
    is refused, where pydantic would read it as seconds since 1970."""
    if isinstance(v, datetime | date):  # made in code, not read from a request
        return v
    if not isinstance(v, str):
        raise ValueError("a date or time is an ISO 8601 string, e.g. 2026-12-06T08:00:00+08:00")
    if re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", v):
        raise ValueError("a date or time is ISO 8601, e.g. 2026-12-06T08:00:00+08:00")
    return v


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(v: object) -> object:
    """A date comes as a string YYYY-MM-DD (JSON Schema's ``format: date``)."""
    if isinstance(v, date) and not isinstance(v, datetime):
        return v
    if not isinstance(v, str) or not _DAY.fullmatch(v):
        raise ValueError("a date is a string YYYY-MM-DD, e.g. 2015-06-01")
    return v


# a JSON number, never true/false nor a string of digits (an int is a number too)
Number = Annotated[float, Field(strict=True)]
# a JSON integer (25 or 25.0), never true/false, 25.5 nor "25"
Count = Annotated[
    int, Field(strict=True), WrapValidator(lambda v, strict: strict(_json_integer(v)))
]
# true or false, never 0/1 nor "yes"
Flag = Annotated[bool, Field(strict=True)]
# a date as YYYY-MM-DD, never a number
Day = Annotated[date, BeforeValidator(_iso_day)]
# an ISO 8601 time (a zone is checked where one is required), never a number
Time = Annotated[datetime, BeforeValidator(_iso_text)]
# an ISO 8601 time with its zone (JSON Schema's ``format: date-time``)
ZonedTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]


# What a display name may not hold (families.service.clean_name): control
# characters (Cc), line and paragraph separators, bidirectional overrides.
CONTROLS = r"\u0000-\u001f\u007f-\u009f"
NAME_CONTROLS = CONTROLS + r"\u2028-\u202e\u2066-\u2069"


def trimmed(pattern: str) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` of a string that is trimmed before it is checked
    (``str_strip_whitespace``): ``pattern`` states the rule, whitespace around
    included, and takes the place of minLength/maxLength, which JSON Schema would
    count on the untrimmed string. The service may still answer its own code."""

    def extra(schema: dict[str, Any]) -> None:
        for part in [schema, *schema.get("anyOf", [])]:
            part.pop("minLength", None)
            part.pop("maxLength", None)
        schema["pattern"] = pattern

    return extra


def name_rule(max_len: int, controls: str = NAME_CONTROLS) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` of a display name: 1 to ``max_len`` characters once
    trimmed, no control character (what families.service.clean_name checks)."""
    c = controls
    return trimmed(rf"^\s*[^\s{c}]([^{c}]{{0,{max_len - 2}}}[^\s{c}])?\s*$")


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """The IANA time zone names this machine knows, sorted."""
    return tuple(sorted(available_timezones()))


def zone_rule(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of an IANA time zone field or query parameter
    (nullable or not): the names the service takes, stated for clients."""
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        for b in branches:
            if isinstance(b, dict) and b.get("type") == "string":
                b["enum"] = list(zone_names())
        return
    schema["enum"] = list(zone_names())


def not_null(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of an optional field that may be left out but not
    sent as null (the model refuses null): the schema drops its null branch."""
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        kept = [b for b in branches if b != {"type": "null"}]
        del schema["anyOf"]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
    schema.pop("default", None)
