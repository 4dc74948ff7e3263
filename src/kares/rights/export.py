"""Access and copy (policy 5.1): a person's data as an archive they can keep.

The archive is a zip written from the declarations, never from per-domain
code: every table the reach engine (``kares.privacy.reach``) finds rows of
for the account, every classified column of those rows, grouped by category,
one JSON file per category (``data/<category>.json``). A table added tomorrow
is in it the moment it declares its columns. Beside the JSON:

- the formats registered in ``kares.rights.formats`` (tracks as GPX and
  GeoJSON, images as image files, ...);
- the consent receipts and the login history as files of their own
  (``consent-receipts.json``, ``login-history.json``), also shown as tables in
  ``index.html``;
- ``manifest.json``: the schema (table -> column -> category), what each file
  is, and the counts;
- ``index.html``: a page a person can open and read, in English and Chinese,
  with no script and nothing loaded from elsewhere.

Values are written as JSON can hold them: encrypted columns decrypted, times
in ISO 8601 UTC (``...Z``; integer columns named ``*_ms`` hold milliseconds
since 1970 by house rule and are written as times too), bytes in base64,
JSON as it is. The values of ``account.credentials`` (a one-way hash of the
password) are withheld: the column is listed, its value is not, because a
copy that leaves the service must not help anyone guess the password.

**Other people.** Rows the account owns (reach role "subject") are written
whole. Rows that belong to someone else and only name the account (role
"also": the SOS of a family member this account answered, the guardianship of
a child it guards) give only what describes the relationship or what was sent
to this account, the categories in :data:`ALSO_SHOWN`, plus the column that
names the account; never that person's location, phone, name, device or
anything else. See docs/RIGHTS.md, "Export (access and copy)".
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import secrets
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    delete,
    false,
    func,
    not_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from kares import clock, events, jobs
from kares.db import Base, UTCDateTime, new_id
from kares.errors import Problem
from kares.fields import PI_INFO_KEY, Encrypted, personal, table_info
from kares.identity import service as identity
from kares.media.models import MediaObject
from kares.privacy import ports, reach
from kares.privacy.catalog import Catalog, catalog_of
from kares.rights import audit, formats
from kares.rights.formats import ArchiveFile

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.rights.export")

ARCHIVE_VERSION = 1

# Rows of another person that name this account (reach role "also") give only
# these categories: the relationship itself and what was sent to this account.
ALSO_SHOWN = frozenset({"family.membership", "minors.guardianship", "notification.content"})
# Listed, never written: a copy that leaves the service must not help guess a password.
WITHHELD = frozenset({"account.credentials"})
WITHHELD_VALUE = "(withheld)"

# Tables that are also written whole, as a file of their own a person can read.
VIEWS = (
    ("consent_receipts", "consent-receipts.json", ("Consent receipts", "同意凭证")),
    ("login_events", "login-history.json", ("Login history", "登录记录")),
)

# steps of the request while it runs
QUEUED, RUNNING, READY, DOWNLOADED, EXPIRED, FAILED = (
    "queued",
    "running",
    "ready",
    "downloaded",
    "expired",
    "failed",
)
BUILD_JOB = "rights.export.build"
EXPIRE_JOB = "rights.export.expire"


class ExportRequest(Base):
    """One request for an archive (policy 5.1): its progress, its one-time link
    and whether the file still exists. The archive itself is a file under
    ``export_dir`` named after the request's id, never in the database."""

    __tablename__ = "rights_exports"
    __table_args__ = (
        Index("ix_rights_exports_account_id", "account_id"),
        # one archive in the making per account: the column holds the account's id
        # while the request is queued or running, NULL afterwards
        Index("uq_rights_exports_running_for", "running_for", unique=True),
        table_info(
            subject="account_id",
            also_about=("requested_by",),
            not_personal=(
                "id",
                "running_for",
                "status",
                "steps_done",
                "steps_total",
                "byte_size",
                "link_secret",
                "ready_at",
                "link_expires_at",
                "downloaded_at",
                "deleted_at",
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # who asked: the account itself or its guardian; NULL for an operator's run
    requested_by: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), info=personal("privacy.consent")
    )
    running_for: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    steps_total: Mapped[int] = mapped_column(Integer, default=0)
    byte_size: Mapped[int | None] = mapped_column(BigInteger)
    # the download link's one-time secret while it can be used, else NULL
    link_secret: Mapped[str | None] = mapped_column(Encrypted("rights_exports.link_secret"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("privacy.consent"))
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    link_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    downloaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # when the archive file was deleted (after its download, or its keeping time)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# --- where archives live -------------------------------------------------------------------


def export_dir(rt: Runtime) -> Path:
    """The private directory of archives (``KARES_EXPORT_DIR``, else var/exports)."""
    return rt.settings.export_dir or rt.settings.var_dir / "exports"


def archive_path(rt: Runtime, export_id: str) -> Path:
    """The archive of one request: named after its id alone, so the file can be
    found (and deleted) with nothing but the id."""
    if not export_id.isalnum():
        raise ValueError("an export id is hexadecimal")
    return export_dir(rt) / f"{export_id}.zip"


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _finish(tmp: Path, dest: Path) -> None:
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest)


async def _remove(path: Path) -> None:
    await anyio.Path(path).unlink(missing_ok=True)


# --- values as JSON ------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ms_column(col: Column[Any]) -> bool:
    return col.name.endswith("_ms") and isinstance(col.type, Integer | BigInteger | SmallInteger)


def plain(value: Any, col: Column[Any] | None = None) -> Any:
    """A column's value as JSON holds it."""
    if value is None:
        return None
    if col is not None and _ms_column(col) and isinstance(value, int):
        return _iso(datetime.fromtimestamp(value / 1000, UTC))
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def _category(col: Column[Any]) -> str | None:
    cat = col.info.get(PI_INFO_KEY)
    return str(cat) if cat else None


# --- what is about the account ---------------------------------------------------------------


@dataclass
class Part:
    """One table's share of one category: its key columns and classified columns."""

    table: Table
    key: list[Column[Any]]
    columns: list[Column[Any]]


def plan(metadata: MetaData | None = None) -> dict[str, list[Part]]:
    """Category -> the tables (and their columns) that hold it, for every table
    the reach engine finds accounts in."""
    md = metadata if metadata is not None else Base.metadata
    reached = {r.table.name for r in reach.reaches(md)}
    out: dict[str, list[Part]] = {}
    for table in md.sorted_tables:
        if table.name not in reached:
            continue
        by_cat: dict[str, list[Column[Any]]] = {}
        for col in table.columns:
            cat = _category(col)
            if cat:
                by_cat.setdefault(cat, []).append(col)
        for cat, cols in by_cat.items():
            out.setdefault(cat, []).append(Part(table, list(table.primary_key.columns), cols))
    return {k: out[k] for k in sorted(out)}


def schema(metadata: MetaData | None = None) -> dict[str, dict[str, str]]:
    """The manifest's schema: table -> column -> category, for every reached table."""
    md = metadata if metadata is not None else Base.metadata
    reached = {r.table.name for r in reach.reaches(md)}
    return {
        t.name: {c.name: cat for c in t.columns if (cat := _category(c))}
        for t in md.sorted_tables
        if t.name in reached and any(_category(c) for c in t.columns)
    }


@dataclass(frozen=True)
class About:
    """Which rows of a table are about the account: its own, and others' that name it."""

    own: ColumnElement[bool] | None
    naming: ColumnElement[bool] | None  # only the rows that are not its own
    naming_columns: frozenset[str]  # the columns by which others' rows name it


def about(table: Table, account_id: str, values: dict[str, str | None]) -> About:
    own = reach.where_about(table, account_id, values, role="subject")
    also = reach.where_about(table, account_id, values, role="also")
    if also is not None and own is not None:
        also = and_(also, not_(func.coalesce(own, false())))
    names = frozenset(
        r.column for r in reach.reaches(table.metadata) if r.table is table and r.role == "also"
    )
    return About(own, also, names)


def shown_to_also(col: Column[Any], naming: frozenset[str]) -> bool:
    """Whether a column of another person's row that names the account is written."""
    return col.name in naming or _category(col) in ALSO_SHOWN


# --- writing the archive ---------------------------------------------------------------------


@dataclass
class Counts:
    own: int = 0
    naming: int = 0


@dataclass
class Written:
    """What an archive holds, for its manifest and index.html (counts, never values)."""

    account_id: str
    generated_at: datetime
    categories: dict[str, dict[str, Counts]] = field(default_factory=dict)
    files: list[tuple[str, str, tuple[str, str]]] = field(default_factory=list)  # path, kind, about
    views: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def rows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for tables in self.categories.values():
            for name, c in tables.items():
                out[name] = max(out.get(name, 0), c.own + c.naming)
        return out


Progress = Callable[[int, int], Awaitable[None]]

_CHUNK = 1000


class _Zip:
    """A zip being written, its blocking calls run off the event loop."""

    def __init__(self, path: Path) -> None:
        self.zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)

    async def add(self, name: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(self.zf.writestr, name, data)

    async def open(self, name: str) -> Any:
        return await anyio.to_thread.run_sync(lambda: self.zf.open(name, "w", force_zip64=True))

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.zf.close)


async def _stream(s: AsyncSession, q: Any) -> AsyncIterator[list[Any]]:
    result = await s.stream(q.execution_options(yield_per=_CHUNK))
    async for part in result.partitions(_CHUNK):
        yield list(part)


def _row(
    cols: Iterable[Column[Any]],
    row: Any,
    naming: frozenset[str] | None,
    account_id: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in cols:
        if naming is not None and not (col.primary_key or shown_to_also(col, naming)):
            continue
        value = row._mapping[col.name]
        # a row that names the account by one column may name someone else by another
        # (the two people of a conversation): that person is not the account's to see
        other = naming is not None and col.name in naming and value not in (None, account_id)
        held = other or (value is not None and _category(col) in WITHHELD)
        out[col.name] = WITHHELD_VALUE if held else plain(value, col)
    return out


async def _write_category(
    s: AsyncSession,
    z: _Zip,
    cat: Catalog,
    category: str,
    parts: list[Part],
    account_id: str,
    values: dict[str, str | None],
    written: Written,
) -> None:
    name = cat.categories.get(category)
    head = {
        "category": category,
        "name": {"en": name.name.en, "zh": name.name.zh} if name else None,
        "about": "Every row about you that holds this kind of information, table by table. "
        "`rows` are your own; `rows_naming_you` are other people's rows that name you, with "
        "only what describes your relationship or what was sent to you.",
    }
    fh = await z.open(f"data/{category}.json")

    async def put(text: str) -> None:
        await anyio.to_thread.run_sync(fh.write, text.encode("utf-8"))

    counts: dict[str, Counts] = {}
    try:
        await put(json.dumps(head, ensure_ascii=False)[:-1] + ', "tables": {')
        first_table = True
        for part in parts:
            t = part.table
            ab = about(t, account_id, values)
            cols = list(dict.fromkeys([*part.key, *part.columns]))
            count = Counts()
            meta = {
                "key": [k.name for k in part.key],
                "columns": {col.name: _describe(col) for col in part.columns},
                "naming_you_columns": [
                    col.name for col in part.columns if shown_to_also(col, ab.naming_columns)
                ],
            }
            await put(("" if first_table else ", ") + json.dumps(t.name) + ": ")
            await put(json.dumps(meta, ensure_ascii=False)[:-1] + ', "rows": [')
            first_table = False
            for label, cond, naming in (
                ("rows", ab.own, None),
                ("rows_naming_you", ab.naming, ab.naming_columns),
            ):
                if label == "rows_naming_you":
                    await put('], "rows_naming_you": [')
                if cond is None:
                    continue
                q = select(*cols).where(cond).order_by(*part.key)
                n = 0
                async for chunk in _stream(s, q):
                    text = ", ".join(
                        json.dumps(_row(cols, r, naming, account_id), ensure_ascii=False)
                        for r in chunk
                    )
                    await put((", " if n else "") + text)
                    n += len(chunk)
                if naming is None:
                    count.own = n
                else:
                    count.naming = n
            await put("]}")
            counts[t.name] = count
        await put("}}")
    finally:
        await anyio.to_thread.run_sync(fh.close)
    written.categories[category] = counts


def _describe(col: Column[Any]) -> str:
    if _category(col) in WITHHELD:
        return "withheld"
    if _ms_column(col) or isinstance(col.type, UTCDateTime):
        return "time (ISO 8601, UTC)"
    if isinstance(col.type, LargeBinary):
        return "bytes (base64)"
    return "text" if isinstance(col.type, String | Encrypted) else type(col.type).__name__.lower()


async def _write_view(
    s: AsyncSession,
    z: _Zip,
    table: Table,
    path: str,
    account_id: str,
    values: dict[str, str | None],
    written: Written,
) -> None:
    own = reach.where_about(table, account_id, values, role="subject")
    cols = [c for c in table.columns if c.primary_key or _category(c)]
    rows: list[dict[str, Any]] = []
    if own is not None:
        q = select(*cols).where(own).order_by(*table.primary_key.columns)
        async for chunk in _stream(s, q):
            rows.extend(_row(cols, r, None) for r in chunk)
    time_col = next((c.name for c in cols if isinstance(c.type, UTCDateTime)), None)
    if time_col:
        rows.sort(key=lambda r: r.get(time_col) or "")
    await z.add(path, json.dumps({"table": table.name, "rows": rows}, ensure_ascii=False).encode())
    written.views[table.name] = rows


async def write_archive(
    s: AsyncSession,
    rt: Runtime,
    cat: Catalog,
    account_id: str,
    dest: Path,
    *,
    progress: Progress | None = None,
    metadata: MetaData | None = None,
) -> Written:
    """Write the archive of ``account_id`` to ``dest`` (replaced if it exists)."""
    md = metadata if metadata is not None else Base.metadata
    values = await reach.values_of(s, account_id, md)
    parts = plan(md)
    views = [(md.tables[t], p, title) for t, p, title in VIEWS if t in md.tables]
    fmts = formats.registered()
    total = len(parts) + len(views) + len(fmts) + 1
    done = 0
    written = Written(account_id=account_id, generated_at=clock.utcnow())

    async def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            await progress(done, total)

    if progress is not None:
        await progress(0, total)
    await anyio.to_thread.run_sync(_private_dir, dest.parent)
    tmp = dest.with_name(dest.name + ".part")
    z = _Zip(tmp)
    try:
        for category, category_parts in parts.items():
            await _write_category(s, z, cat, category, category_parts, account_id, values, written)
            written.files.append(
                (f"data/{category}.json", "category", _category_about(cat, category))
            )
            await step()
        for table, path, title in views:
            await _write_view(s, z, table, path, account_id, values, written)
            written.files.append((path, "view", title))
            await step()
        for fmt in fmts:
            async for f in fmt.write(s, rt, account_id):
                path = f"{fmt.key}/{f.path}"
                await z.add(path, f.data)
                written.files.append((path, fmt.key, fmt.title))
            await step()
        manifest = _manifest(cat, written, md)
        await z.add("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1).encode())
        await z.add("index.html", render_index(cat, written, fmts).encode("utf-8"))
        await z.close()
        await anyio.to_thread.run_sync(_finish, tmp, dest)
    except BaseException:
        await _remove(tmp)
        raise
    await step()
    return written


def _category_about(cat: Catalog, category: str) -> tuple[str, str]:
    c = cat.categories.get(category)
    return (c.name.en, c.name.zh) if c else (category, category)


def _manifest(cat: Catalog, w: Written, md: MetaData) -> dict[str, Any]:
    return {
        "archive_version": ARCHIVE_VERSION,
        "account_id": w.account_id,
        "generated_at": _iso(w.generated_at),
        "policy_version": cat.policy.version,
        "schema": schema(md),
        "withheld_categories": sorted(WITHHELD),
        "categories_shown_from_rows_naming_you": sorted(ALSO_SHOWN),
        "categories": {
            k: {t: {"rows": c.own, "rows_naming_you": c.naming} for t, c in v.items()}
            for k, v in w.categories.items()
        },
        "files": [
            {"path": p, "kind": kind, "about": {"en": a[0], "zh": a[1]}} for p, kind, a in w.files
        ],
    }


# --- index.html ----------------------------------------------------------------------------

TEMPLATES = Path(__file__).with_name("templates")
_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"], default_for_string=True),
    keep_trailing_newline=True,
)


def render_index(cat: Catalog, w: Written, fmts: list[formats.Format]) -> str:
    categories = []
    for category, tables in w.categories.items():
        en, zh = _category_about(cat, category)
        categories.append(
            {
                "en": en,
                "zh": zh,
                "file": f"data/{category}.json",
                "tables": [
                    {"name": t, "own": c.own, "naming": c.naming} for t, c in tables.items()
                ],
            }
        )
    others = []
    for _table, path, (en, zh) in VIEWS:
        if any(p == path for p, _, _ in w.files):
            others.append({"path": path, "en": en, "zh": zh, "count": 1})
    for fmt in fmts:
        n = sum(1 for _, kind, _ in w.files if kind == fmt.key)
        others.append(
            {
                "path": f"{fmt.key}/",
                "en": f"{fmt.title[0]}: {fmt.about[0]}",
                "zh": f"{fmt.title[1]}:{fmt.about[1]}",
                "count": n,
            }
        )
    views = []
    for table, _path, (en, zh) in VIEWS:
        rows = w.views.get(table, [])
        columns = list(dict.fromkeys(k for r in rows for k in r))
        views.append({"en": en, "zh": zh, "rows": rows, "columns": columns})
    return _ENV.get_template("export_index.html").render(
        account_id=w.account_id,
        generated_at=_iso(w.generated_at),
        categories=categories,
        others=others,
        views=views,
    )


# --- images as image files -------------------------------------------------------------------

_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


@formats.register(
    "media",
    title=("Images", "图片"),
    about=(
        "your avatar and the other images you uploaded, as image files",
        "您的头像及您上传的其他图片,以图片文件形式提供",
    ),
)
async def _media(s: AsyncSession, rt: Runtime, account_id: str) -> AsyncIterator[ArchiveFile]:
    q = (
        select(MediaObject.id, MediaObject.purpose, MediaObject.content_type)
        .where(MediaObject.owner_account_id == account_id)
        .order_by(MediaObject.created_at, MediaObject.id)
    )
    for mid, purpose, ctype in (await s.execute(q)).all():
        data = (await s.execute(select(MediaObject.data).where(MediaObject.id == mid))).scalar_one()
        yield ArchiveFile(f"{purpose}-{mid}.{_EXT.get(ctype, 'bin')}", bytes(data))


# --- the request's life ------------------------------------------------------------------------


def link_deadline(rt: Runtime, ready_at: datetime) -> datetime:
    return ready_at + timedelta(hours=rt.settings.export_link_hours)


def keep_deadline(rt: Runtime, ready_at: datetime) -> datetime:
    return ready_at + timedelta(hours=rt.settings.export_keep_hours)


def may_see_statement(account_id: str) -> Any:
    """Requests an account may see: those it made, and those about itself."""
    return (ExportRequest.requested_by == account_id) | (ExportRequest.account_id == account_id)


@dataclass(frozen=True)
class Started:
    request: ExportRequest
    created: bool


async def running_for(s: AsyncSession, account_id: str) -> ExportRequest | None:
    q = select(ExportRequest).where(ExportRequest.running_for == account_id)
    return (await s.execute(q)).scalar_one_or_none()


async def start(s: AsyncSession, *, account_id: str, requested_by: str) -> Started:
    """Start an archive of ``account_id`` (the caller's own, or its ward's: the
    caller checked that), or answer the one already in the making. Commits."""
    running = await running_for(s, account_id)
    if running is not None:
        return Started(running, False)
    req = ExportRequest(
        id=new_id(),
        account_id=account_id,
        requested_by=requested_by,
        running_for=account_id,
        status=QUEUED,
        steps_done=0,
        steps_total=0,
        created_at=clock.utcnow(),
    )
    s.add(req)
    jobs.enqueue(s, BUILD_JOB, {"export_id": req.id}, account_id=account_id)
    try:
        await s.commit()
    except IntegrityError:
        # another request for the same account won the race: answer that one
        await s.rollback()
        running = await running_for(s, account_id)
        if running is None:
            raise
        return Started(running, False)
    return Started(req, True)


async def build(rt: Runtime, export_id: str) -> None:
    """The build job: write the archive, then open its link and plan its deletion.
    Repeatable: a run that died midway starts the archive over."""
    async with rt.db.sessions() as s:
        req = await s.get(ExportRequest, export_id)
        if req is None or req.status not in (QUEUED, RUNNING):
            return
        req.status = RUNNING
        req.steps_done = 0
        account_id = req.account_id
        await s.commit()

    async def progress(done: int, total: int) -> None:
        async with rt.db.sessions() as ps:
            await ps.execute(
                update(ExportRequest)
                .where(ExportRequest.id == export_id, ExportRequest.status == RUNNING)
                .values(steps_done=done, steps_total=total)
            )
            await ps.commit()

    dest = archive_path(rt, export_id)
    async with rt.db.sessions() as s:
        written = await write_archive(s, rt, catalog_of(rt), account_id, dest, progress=progress)
    now = clock.utcnow()
    async with rt.db.sessions() as s:
        res = await s.execute(
            update(ExportRequest)
            .where(ExportRequest.id == export_id, ExportRequest.status == RUNNING)
            .values(
                status=READY,
                running_for=None,
                ready_at=now,
                link_expires_at=link_deadline(rt, now),
                link_secret=secrets.token_urlsafe(32),
                byte_size=(await anyio.Path(dest).stat()).st_size,
            )
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            # the request went away meanwhile (its account was deleted)
            await s.rollback()
            await _remove(dest)
            return
        # the deletion job names no account, so it outlives the account's deletion
        jobs.enqueue(s, EXPIRE_JOB, {"export_id": export_id}, run_at=keep_deadline(rt, now))
        await s.commit()
    log.info("export %s ready: %d files", export_id, len(written.files))


async def fail(rt: Runtime, export_id: str) -> None:
    """The build gave up: the request says so and no longer blocks a new one."""
    await _remove(archive_path(rt, export_id))
    async with rt.db.sessions() as s:
        await s.execute(
            update(ExportRequest)
            .where(ExportRequest.id == export_id, ExportRequest.status.in_((QUEUED, RUNNING)))
            .values(status=FAILED, running_for=None)
        )
        await s.commit()


async def expire(rt: Runtime, export_id: str) -> None:
    """The deletion job: the archive file goes; the request keeps its history."""
    await _remove(archive_path(rt, export_id))
    async with rt.db.sessions() as s:
        await s.execute(
            update(ExportRequest)
            .where(ExportRequest.id == export_id, ExportRequest.status == READY)
            .values(status=EXPIRED)
        )
        await s.execute(
            update(ExportRequest)
            .where(ExportRequest.id == export_id, ExportRequest.deleted_at.is_(None))
            .values(deleted_at=clock.utcnow(), link_secret=None)
        )
        await s.commit()


async def take_download(s: AsyncSession, rt: Runtime, req: ExportRequest, key: str) -> Path:
    """Use the request's one-time link: the archive's path, once. Commits."""
    now = clock.utcnow()
    if req.status in (QUEUED, RUNNING):
        raise Problem(409, "rights.export_not_ready", "The archive is still being made.")
    if req.status == FAILED:
        raise Problem(
            410, "rights.export_failed", "This archive could not be made. Ask for a new one."
        )
    if req.downloaded_at is not None or req.status == DOWNLOADED:
        raise Problem(
            410,
            "rights.export_link_used",
            "This link was used already; it works once. Ask for a new archive.",
        )
    path = archive_path(rt, req.id)
    expired = (
        req.status == EXPIRED
        or req.deleted_at is not None
        or req.link_expires_at is None
        or req.link_expires_at <= now
        or not await anyio.Path(path).exists()
    )
    if expired:
        raise Problem(
            410, "rights.export_link_expired", "This link has expired. Ask for a new archive."
        )
    if not hmac.compare_digest(key.encode(), (req.link_secret or "").encode()):
        raise Problem(404, "rights.export_not_found", "No such archive.")
    res = await s.execute(
        update(ExportRequest)
        .where(ExportRequest.id == req.id, ExportRequest.status == READY)
        .values(status=DOWNLOADED, downloaded_at=now, link_secret=None)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        await s.rollback()
        raise Problem(
            410,
            "rights.export_link_used",
            "This link was used already; it works once. Ask for a new archive.",
        )
    await s.commit()
    return path


async def downloaded(rt: Runtime, export_id: str) -> None:
    """After the download was sent: the file goes at once (the link cannot be
    used again, so keeping it would only keep a copy of the person's data)."""
    await _remove(archive_path(rt, export_id))
    async with rt.db.sessions() as s:
        await s.execute(
            update(ExportRequest)
            .where(ExportRequest.id == export_id, ExportRequest.deleted_at.is_(None))
            .values(deleted_at=clock.utcnow())
        )
        await s.commit()


# --- operators ---------------------------------------------------------------------------------


async def operator_export(rt: Runtime, phone: str, out: Path) -> Written | None:
    """``kares rights export --phone P --out FILE``: the archive of the account
    with that number, logged as a staff action; None when no account has it.
    The file is written first and removed again if the log cannot be written."""
    e164 = identity.parse_phone(phone, rt.settings.default_region)
    async with rt.db.sessions() as s:
        account = await identity.find_by_phone(s, e164)
        if account is None:
            return None
        account_id = account.id
    async with rt.db.sessions() as s:
        written = await write_archive(s, rt, catalog_of(rt), account_id, out)
    try:
        async with rt.db.sessions() as s:
            await audit.record(
                s,
                "rights.export",
                account_id=account_id,
                detail={"files": len(written.files), "rows": written.rows()},
            )
            await s.commit()
    except BaseException:
        await _remove(out)
        raise
    return written


async def _archives_on_erasure(s: AsyncSession, e: ports.Erasure) -> None:
    """An account's deletion takes its archives at once: the files (after the
    deletion commits) and the jobs that would delete them later, whose payload
    names the request (its rows go with the account)."""
    if e.scope != "account":
        return
    ids = set(
        (await s.execute(select(ExportRequest.id).where(ExportRequest.account_id == e.account_id)))
        .scalars()
        .all()
    )
    if not ids:
        return
    pending = (
        await s.execute(select(jobs.Job.id, jobs.Job.payload).where(jobs.Job.kind == EXPIRE_JOB))
    ).all()
    doomed = [j for j, payload in pending if (payload or {}).get("export_id") in ids]
    if doomed:
        await s.execute(delete(jobs.Job).where(jobs.Job.id.in_(doomed)))
        e.removed["jobs"] = e.removed.get("jobs", 0) + len(doomed)
    if e.rt is None:
        return
    paths = [archive_path(e.rt, i) for i in sorted(ids)]

    def unlink() -> None:
        for path in paths:
            for p in (path, path.with_name(path.name + ".part")):
                p.unlink(missing_ok=True)

    events.on_commit(s, unlink)


ports.register_erasure("before", _archives_on_erasure)
