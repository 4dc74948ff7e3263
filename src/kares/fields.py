"""Column helpers that declare what personal information a column holds.

``personal("contact.phone")`` goes in a column's ``info``; export, deletion,
retention and anonymisation walk these declarations (step 2 onwards), so no
feature writes its own. ``Encrypted`` stores a string encrypted at rest with
the key ring in ``kares.crypto``; the table and column are bound into the
ciphertext so a value cannot be moved to another column unnoticed.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import Text
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


def table_info(
    *,
    subject: str | None,
    not_personal: tuple[str, ...] = (),
    why: str = "",
    also_about: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``__table_args__`` entry: whose data the table holds and which columns are
    explicitly not personal.

    ``subject`` names the column holding the account id the rows are about (None
    for tables about no account, with ``why``); ``also_about`` names further
    account columns whose account the rows also concern (a guardian). A test
    fails on any column that is neither ``personal(...)``, ``not_personal(...)``
    nor listed here.
    """
    return {
        "info": {
            "subject_column": subject,
            "not_personal": list(not_personal),
            "why": why,
            "also_about": list(also_about),
        }
    }


# Numbers in request bodies: a JSON number, never true/false (pydantic's lax mode
# reads true as 1) nor a string of digits. An int is a number too.
Number = Annotated[float, Field(strict=True)]
Count = Annotated[int, Field(strict=True)]
