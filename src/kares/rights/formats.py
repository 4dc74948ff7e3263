"""Richer formats for the export archive, registered by whoever writes them.

The generic JSON of the archive (``kares.rights.export``) always covers every
classified column. A format adds a file a person can open with an ordinary
tool: tracks as GPX and GeoJSON (registered by ``kares.protocols.trackfiles``),
images as image files; later a calendar as ICS, health readings as FHIR, chats
as transcripts. This package never names the modules that register: they call
:func:`register` when they are imported (``kares.domains`` imports them all).

A writer gets a read-only session, the runtime and the id of the account the
archive is about, and yields the files to add, one at a time (a large history
is split into several files, so no writer holds it all in memory). It must
write only what is about that account and that the account could see in the
app; it never writes anything about another person.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from kares.runtime import Runtime


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive: its path inside the zip and its bytes."""

    path: str
    data: bytes


Writer = Callable[[AsyncSession, "Runtime", str], AsyncIterator[ArchiveFile]]


@dataclass(frozen=True)
class Format:
    key: str  # a folder of the archive: "tracks", "media"
    title: tuple[str, str]  # (English, Chinese), shown in index.html
    about: tuple[str, str]  # what the files are and what opens them (en, zh)
    write: Writer


_formats: dict[str, Format] = {}


def register(
    key: str, *, title: tuple[str, str], about: tuple[str, str]
) -> Callable[[Writer], Writer]:
    """Register ``fn`` as the writer of the archive's ``key/`` folder."""
    if not key.isidentifier():
        raise ValueError(f"{key!r}: a format's key names a folder of the archive")

    def add(fn: Writer) -> Writer:
        _formats[key] = Format(key, title, about, fn)
        return fn

    return add


def registered() -> list[Format]:
    """Every registered format, by key."""
    return [_formats[k] for k in sorted(_formats)]
