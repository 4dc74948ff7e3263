"""The readable policy as a tree of sections and blocks, before it becomes HTML,
plain text or JSON (``kares.privacy.render``).

Blocks hold plain strings only; the HTML template escapes them and turns
addresses (``https://...``, e-mail) into links, so no catalog text can inject
markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Paragraph:
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "paragraph", "text": self.text}


@dataclass
class Items:
    items: list[str]
    ordered: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"type": "list", "ordered": self.ordered, "items": list(self.items)}


@dataclass
class Table:
    id: str
    columns: list[str]
    rows: list[list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "table",
            "id": self.id,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
        }


@dataclass
class Card:
    """One function of the catalog: labelled fields, a value or a list of values each."""

    id: str
    title: str
    fields: list[tuple[str, str | list[str]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "card",
            "id": self.id,
            "title": self.title,
            "fields": [
                {"label": label, "value": value if isinstance(value, str) else list(value)}
                for label, value in self.fields
            ],
        }


@dataclass
class Contents:
    """A table of contents: (section id, heading)."""

    entries: list[tuple[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "contents",
            "entries": [{"id": sid, "heading": heading} for sid, heading in self.entries],
        }


Block = Paragraph | Items | Table | Card | Contents


@dataclass
class Section:
    id: str
    number: str | None
    title: str
    blocks: list[Block] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    @property
    def heading(self) -> str:
        if self.number is None:
            return self.title
        if "." in self.number:
            return f"{self.number} {self.title}"
        return f"{self.number}. {self.title}"

    def walk(self) -> list[Section]:
        out = [self]
        for s in self.sections:
            out.extend(s.walk())
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "title": self.title,
            "heading": self.heading,
            "blocks": [b.to_dict() for b in self.blocks],
            "sections": [s.to_dict() for s in self.sections],
        }


@dataclass
class Document:
    lang: str
    title: str
    meta: list[str]  # "Updated: ...", "Effective date: ...", "Version: ..."
    sections: list[Section]
    info: dict[str, Any]  # version, date, effective, significant, changes, ...

    def walk(self) -> list[Section]:
        out: list[Section] = []
        for s in self.sections:
            out.extend(s.walk())
        return out

    def section(self, sid: str) -> Section:
        for s in self.walk():
            if s.id == sid:
                return s
        raise KeyError(sid)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info,
            "lang": self.lang,
            "title": self.title,
            "meta": list(self.meta),
            "sections": [s.to_dict() for s in self.sections],
        }
