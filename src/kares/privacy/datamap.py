"""The data map: every column that holds personal information, from the models.

Columns declare their category in ``info`` (``privacy.fields.personal``);
this walks the metadata and joins each declaration with the catalog: the
category's name, whether it is sensitive, its Fideslang key, the functions
that use it and how long it is kept. Columns declared ``not_personal`` and
columns with no declaration are not rows here (a separate test fails on
undeclared columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData

from kares.db import Base
from kares.fields import PI_INFO_KEY, Encrypted, Sealed
from kares.privacy.catalog import Catalog, Retention, Text


class DataMapError(ValueError):
    """A column names a category the catalog does not have; the message names the column."""


@dataclass(frozen=True)
class DataMapRow:
    table: str
    column: str
    category: str
    category_name: Text
    sensitive: bool
    fides: str
    functions: tuple[str, ...]
    retention: Retention
    encrypted: bool

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        return {
            "table": self.table,
            "column": self.column,
            "category": self.category,
            "category_name": self.category_name.get(lang),
            "sensitive": self.sensitive,
            "fides": self.fides,
            "functions": list(self.functions),
            "retention": {
                "days": self.retention.days,
                "kept": self.retention.kept,
                "then": self.retention.then,
            },
            "encrypted_at_rest": self.encrypted,
        }


def _metadata() -> MetaData:
    """Every table the domains registered (kares.domains imports them all)."""
    return Base.metadata


def personal_columns(metadata: MetaData | None = None) -> list[tuple[str, str, str, bool]]:
    """(table, column, category, encrypted) for every column declared personal."""
    md = metadata if metadata is not None else _metadata()
    out = []
    for table in sorted(md.tables.values(), key=lambda t: t.name):
        for col in table.columns:
            category = col.info.get(PI_INFO_KEY)
            if category is None:  # not_personal(...) or no declaration
                continue
            out.append(
                (table.name, col.name, str(category), isinstance(col.type, Encrypted | Sealed))
            )
    return out


def data_map(cat: Catalog, metadata: MetaData | None = None) -> list[DataMapRow]:
    """One row per personal column, ordered by table name then column order."""
    rows = []
    for table, column, key, encrypted in personal_columns(metadata):
        category = cat.categories.get(key)
        if category is None:
            raise DataMapError(f"{table}.{column}: unknown category {key!r}")
        rows.append(
            DataMapRow(
                table=table,
                column=column,
                category=key,
                category_name=category.name,
                sensitive=category.sensitive,
                fides=category.fides,
                functions=tuple(cat.functions_using(key)),
                retention=category.retention,
                encrypted=encrypted,
            )
        )
    return rows
