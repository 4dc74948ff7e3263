"""Deletion (policy 5.2 and 5.4), walked from the declarations.

Two kinds, both built on ``kares.privacy.reach`` (which rows of each table are
about an account) and the column declarations (``kares.fields``), so no domain
writes delete code and a new table is covered the moment it declares itself:

* **Chosen data** (5.2, :func:`erase_chosen`): one category, optionally within a
  time range, of the account's own rows. A row whose chosen columns can all be
  cleared (nullable) keeps its other data and loses those; a row that cannot
  exist without them goes, with the rest of what it held (a location fix and
  the battery level recorded with it), unless the rest includes a category the
  service must keep (``KEPT``), and then that table is left as it was and the
  answer says why. Categories in ``KEPT`` are refused outright.
* **The account** (5.4, :func:`erase_account`): every row about the account.
  Its own rows ("subject") are deleted, unless the table's foreign key says
  its rows outlive the account (``ON DELETE SET NULL``: the staff-action log,
  a watch): then only the reference is cleared. Someone else's rows that name
  it ("also") keep their data and lose the reference the way their foreign key
  says: ``SET NULL`` clears it, ``CASCADE`` means the row means nothing without
  this account (a guardianship of a child, an alert about this person) and it
  goes; a reference with no foreign key (an id or a blind index kept in a
  plain column) is replaced by ``ERASED``, which names no account.

Domains register hooks (``kares.privacy.ports.register_erasure``) for what rows
cannot say: a summary to rebuild, a device to revoke, a picture another table
points at. They run in the deletion's transaction.

The account request itself (verification, cooling-off, family hand-over, the
job that carries it out and survives restarts) is below, with the deletion
register's ``reapply`` for restored backups.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from kares import clock, events, jobs
from kares.accounts import service as accounts
from kares.db import Base, UTCDateTime, new_id
from kares.errors import Problem
from kares.families import service as families
from kares.families.models import Family, FamilyMember
from kares.fields import PI_INFO_KEY, not_personal, personal, table_info
from kares.identity.models import Account
from kares.identity.service import check_code, consume_code
from kares.privacy import ports, reach
from kares.privacy.catalog import Catalog, catalog_of
from kares.privacy.models import ConsentReceipt, Guardianship
from kares.privacy.service import is_adult
from kares.rights import audit, register
from kares.runtime import Runtime

log = logging.getLogger("kares.rights.erase")

ERASED = "erased"
"""What a reference with no foreign key becomes: no id nor blind index is this."""

ERASE_JOB = "rights.erase_account"
DAY_MS = 86_400_000

# Categories a person cannot delete on their own while the account exists, and why.
KEPT: dict[str, str] = {
    "contact.phone": "Your phone number is how you sign in. Delete the account to remove it.",
    "account.age": "Your age decides which rules for children apply. Correct it instead.",
    "privacy.consent": "Consent receipts prove what you agreed to and are kept while the "
    "account exists (policy 5.3).",
    "security.login_environment": "Sign-in records are kept at least six months by law "
    "(Cybersecurity Law art. 21).",
    "minors.guardianship": "A guardianship ends through the guardian, not by deleting it.",
    "family.membership": "Other people share your families: leave a family, or dissolve "
    "one you own, instead.",
}
# Of those, the ones whose values must stay where they are: a row holding any of them
# is never deleted as a side effect of deleting another category with it.
STAYS = frozenset(KEPT) - {"family.membership"}


# --- the time a row was collected -------------------------------------------------------

# Where a table does not say (``table_info(collected=...)``, being added for
# retention), the first of these it has: the time the row's data was collected.
_KNOWN_TIMES = (
    "recorded_ms",
    "occurred_at",
    "reported_at",
    "since_ms",
    "day",
    "first_seen_at",
    "linked_at",
    "joined_at",
    "approved_at",
    "requested_at",
    "at",
    "created_at",
)


def time_column(table: Table) -> tuple[Column[Any], str] | None:
    """The column telling when a row's data was collected and its unit ("time",
    "ms" since 1970, "day" since 1970, "date"), or None. Prefers the table's own
    ``collected`` declaration, else a known name."""
    info = table.info or {}
    name = info.get("collected")
    if name is None:
        name = next((n for n in _KNOWN_TIMES if n in table.c), None)
    if name is None:
        return None
    col = table.c[name]
    unit = info.get("collected_unit") if info.get("collected") else None
    if unit is None:
        if isinstance(col.type, DateTime | UTCDateTime):
            unit = "time"
        elif isinstance(col.type, Date):
            unit = "date"
        elif name == "day":
            unit = "day"
        elif isinstance(col.type, Integer | BigInteger):
            unit = "ms"
        else:
            return None
    return col, str(unit)


def _in_range(
    col: Column[Any], unit: str, since: datetime | None, until: datetime | None
) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = []
    for bound, lower in ((since, True), (until, False)):
        if bound is None:
            continue
        ms = int(bound.timestamp() * 1000)
        value: Any
        if unit == "ms":
            value = ms
        elif unit == "day":  # a day's summary overlapping the range goes (it is rebuilt)
            value = ms // DAY_MS if lower else (ms - 1) // DAY_MS
            conds.append(col >= value if lower else col <= value)
            continue
        elif unit == "date":
            value = bound.date()
        else:
            value = bound
        conds.append(col >= value if lower else col < value)
    out = conds[0]
    for c in conds[1:]:
        out = out & c
    return out


# --- what a deletion did ----------------------------------------------------------------


@dataclass
class Outcome:
    deleted: Counter[str] = field(default_factory=Counter)  # rows deleted per table
    cleared: Counter[str] = field(default_factory=Counter)  # rows kept, columns cleared
    kept: dict[str, str] = field(default_factory=dict)  # table -> why it was left
    third_parties: list[str] = field(default_factory=list)
    entry: dict[str, Any] | None = None  # the deletion register's entry

    def counts(self) -> dict[str, Any]:
        return {
            "deleted": dict(sorted((k, v) for k, v in self.deleted.items() if v)),
            "cleared": dict(sorted((k, v) for k, v in self.cleared.items() if v)),
        }


def _personal(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if c.info.get(PI_INFO_KEY)]


def _ondelete(col: Column[Any]) -> str | None:
    """What the column's foreign key does when its row goes (None: no foreign key)."""
    for fk in col.foreign_keys:
        return (fk.ondelete or "NO ACTION").upper()
    return None


def _md(metadata: MetaData | None) -> MetaData:
    return metadata if metadata is not None else Base.metadata


async def _count(s: AsyncSession, stmt: Any) -> int:
    res = await s.execute(stmt.execution_options(synchronize_session=False))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


# --- the account: every row -------------------------------------------------------------


async def _erase_rows(s: AsyncSession, account_id: str, md: MetaData, out: Outcome) -> None:
    values = await reach.values_of(s, account_id, md)
    for r in reversed(reach.reaches(md)):
        t, cond = r.table, r.where(account_id, values)
        col = t.c[r.column]
        if r.role == "subject":
            if r.how == "subject" and col.nullable and _ondelete(col) == "SET NULL":
                out.cleared[t.name] += await _count(
                    s, update(t).where(cond).values({col.name: None})
                )
            else:
                out.deleted[t.name] += await _count(s, delete(t).where(cond))
            continue
        how = _ondelete(col)
        if how == "SET NULL":
            out.cleared[t.name] += await _count(s, update(t).where(cond).values({col.name: None}))
        elif how is not None:
            out.deleted[t.name] += await _count(s, delete(t).where(cond))
        else:
            out.cleared[t.name] += await _count(s, update(t).where(cond).values({col.name: ERASED}))


async def _third_parties(s: AsyncSession, cat: Catalog, account_id: str, md: MetaData) -> list[str]:
    """The third parties that received this account's data: those the catalog
    entrusts or shares a category with that the account has rows of (a sign-in
    provider only if the account linked it)."""
    values = await reach.values_of(s, account_id, md)
    held: set[str] = set()
    for table in md.sorted_tables:
        cond = reach.where_about(table, account_id, values, role="subject")
        cols = _personal(table)
        if cond is None or not cols:
            continue
        if (await s.execute(select(1).select_from(table).where(cond).limit(1))).first():
            held.update(str(c.info[PI_INFO_KEY]) for c in cols)
    linked = {i.provider for i in await accounts.identities_of(s, account_id)}
    out = []
    for key in cat.third_parties_receiving(sorted(held)):
        if key.endswith("_login") and key.removesuffix("_login") not in linked:
            continue
        out.append(key)
    consented = await _consented_third_parties(s, account_id)
    out.extend(k for k in consented if k in cat.third_parties and k not in out)
    return sorted(out)


async def _consented_third_parties(s: AsyncSession, account_id: str) -> list[str]:
    q = select(ConsentReceipt.subject).where(
        ConsentReceipt.account_id == account_id,
        ConsentReceipt.subject.like("third_party:%"),
        ConsentReceipt.action == "grant",
    )
    return sorted({x.split(":", 1)[1] for x in (await s.execute(q)).scalars()})


async def erase_account(
    s: AsyncSession,
    rt: Runtime,
    account_id: str,
    *,
    metadata: MetaData | None = None,
    record: bool = True,
) -> Outcome:
    """Delete every row about the account, in the caller's transaction (the caller
    commits, then calls :func:`settle`). Families it owns must be handed over or
    dissolved first (:func:`hand_over`). Writes the tombstone (unless ``record``
    is false: ``reapply`` redoing one already in the register)."""
    md = _md(metadata)
    out = Outcome()
    out.third_parties = await _third_parties(s, catalog_of(rt), account_id, md)
    erasure = ports.Erasure(account_id=account_id, scope="account", rt=rt)
    # consent receipts may go once their account is being deleted (migrations 0002, 0018)
    await s.execute(update(Account).where(Account.id == account_id).values(status="deleting"))
    for hook in ports.erasure_hooks("before"):
        await hook(s, erasure)
    await _erase_rows(s, account_id, md, out)
    for hook in ports.erasure_hooks("after"):
        await hook(s, erasure)
    out.deleted.update(erasure.removed)
    if record:
        counts = {**out.counts(), "third_parties": out.third_parties}
        out.entry = await register.add(s, account_id=account_id, scope="account", counts=counts)
        _after_commit_file(s, rt, out.entry)
        for key in out.third_parties:
            # no provider here offers a deletion API: the request is this log line and
            # the tombstone's list, for the operator who sends it (docs/RIGHTS.md)
            log.info("deletion %s: third party %s asked to delete", out.entry["id"], key)
    return out


def _after_commit_file(s: AsyncSession, rt: Runtime, entry: dict[str, Any]) -> None:
    var_dir = rt.settings.var_dir
    events.on_commit(s, lambda: register.append_file(var_dir, entry))


# --- chosen data ------------------------------------------------------------------------


def check_choice(
    cat: Catalog, category: str, since: datetime | None, until: datetime | None
) -> None:
    """Refuse, before anything changes, a choice that cannot be carried out."""
    if category not in cat.categories:
        raise Problem(
            422,
            "rights.unknown_category",
            f"No category {category!r}; see /api/v1/privacy/data-map.",
        )
    if category in KEPT:
        raise Problem(409, "rights.category_kept", KEPT[category], category=category)
    if since is not None and until is not None and since >= until:
        raise Problem(422, "rights.bad_range", "The range's start must come before its end.")


async def refuse_if_held(s: AsyncSession, account_id: str) -> None:
    """Policy 5.2: data a law requires us to keep is kept, stored only, until the
    obligation ends; nothing of a held account is deleted before then."""
    why = await ports.held(s, account_id)
    if why is not None:
        raise Problem(
            409,
            "rights.legal_hold",
            "The law requires us to keep this account's data for now: it is only stored, "
            "and it is deleted when that obligation ends.",
        )


async def erase_chosen(
    s: AsyncSession,
    rt: Runtime,
    account_id: str,
    category: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    metadata: MetaData | None = None,
    record: bool = True,
) -> Outcome:
    """Delete the account's own data of ``category`` collected in [since, until),
    in the caller's transaction. A table with no time column is left alone when a
    range is given (and said so in ``kept``)."""
    check_choice(catalog_of(rt), category, since, until)
    md = _md(metadata)
    out = Outcome()
    values = await reach.values_of(s, account_id, md)
    erasure = ports.Erasure(
        account_id=account_id, scope="chosen", category=category, since=since, until=until, rt=rt
    )
    for hook in ports.erasure_hooks("before"):
        await hook(s, erasure)
    for table in reversed(md.sorted_tables):
        cols = _personal(table)
        chosen = [c for c in cols if c.info[PI_INFO_KEY] == category]
        if not chosen:
            continue
        cond = reach.where_about(table, account_id, values, role="subject")
        if cond is None:
            continue
        if since is not None or until is not None:
            found = time_column(table)
            if found is None:
                out.kept[table.name] = "no time of collection: delete without a range"
                continue
            cond = cond & _in_range(*found, since, until)
        others = sorted({str(c.info[PI_INFO_KEY]) for c in cols} - {category})
        if "privacy.consent" in others:  # a receipt is kept as it was given
            out.kept[table.name] = KEPT["privacy.consent"]
            continue
        if all(c.nullable for c in chosen):
            stmt = update(table).where(cond).values({c.name: None for c in chosen})
            out.cleared[table.name] += await _count(s, stmt)
            continue
        kept = [k for k in others if k in STAYS]
        if kept:
            out.kept[table.name] = f"its rows also hold {', '.join(kept)}: {KEPT[kept[0]]}"
            continue
        out.deleted[table.name] += await _count(s, delete(table).where(cond))
    for hook in ports.erasure_hooks("after"):
        await hook(s, erasure)
    out.deleted.update(erasure.removed)
    if record:
        out.entry = await register.add(
            s,
            account_id=account_id,
            scope="chosen",
            category=category,
            since=since,
            until=until,
            counts=out.counts(),
        )
        _after_commit_file(s, rt, out.entry)
    return out


# --- making it really gone --------------------------------------------------------------


SETTLE_TRIES, SETTLE_PAUSE_S = 40, 0.05  # about two seconds at most


async def settle(rt: Runtime, tables: list[str] | None = None) -> str:
    """After a deletion committed: SQLite copies the write-ahead log into the
    database and truncates it (deleted content was zeroed in place, ``PRAGMA
    secure_delete``); PostgreSQL vacuums the tables (dead rows' space made
    reusable, their index entries removed). What happened."""
    if rt.db.dialect == "sqlite":
        # a reader's snapshot or the background checkpointer (kares.sqlite) can hold
        # the log for a moment: try again, a bounded number of times
        for attempt in range(SETTLE_TRIES):
            async with rt.db.engine.connect() as conn:
                row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
            if int(row[0]) == 0:
                return "checkpointed"
            if attempt + 1 < SETTLE_TRIES:
                await asyncio.sleep(SETTLE_PAUSE_S)
        log.warning("checkpoint after a deletion was blocked by a reader; the next one copies it")
        return "busy"
    async with rt.db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for name in tables or []:
            if name in Base.metadata.tables:
                await conn.exec_driver_sql(f'VACUUM "{name}"')
    return "vacuumed"


# --- the account request: verified, cooled off, carried out by a job --------------------


class DeletionRequest(Base):
    """A person asked for their account to be deleted; it happens at ``due_at``."""

    __tablename__ = "deletion_requests"
    __table_args__ = (
        Index("ix_deletion_requests_account", "account_id", "requested_at"),
        table_info(
            subject="account_id", also_about=("requested_by",), not_personal=("id", "job_id")
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), info=personal("privacy.consent")
    )
    # a guardian asking for a dependant (None: the account holder)
    requested_by: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), info=personal("minors.guardianship")
    )
    status: Mapped[str] = mapped_column(String(16), info=personal("privacy.consent"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("privacy.consent"))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), info=personal("privacy.consent"))
    cancelled_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), info=personal("privacy.consent")
    )
    # "asked" (the person cancelled) or "signed_in"
    cancel_reason: Mapped[str | None] = mapped_column(String(16), info=personal("privacy.consent"))
    # what becomes of each family the account owns: [{family_id, action, to}]
    families: Mapped[list[Any]] = mapped_column(JSON, info=personal("family.membership"))
    job_id: Mapped[str | None] = mapped_column(String(32), info=not_personal("a job's id"))


PENDING, CANCELLED = "pending", "cancelled"
HOLD_RECHECK = timedelta(hours=1)  # a deletion held by law is looked at again this often
PROVIDERS = {"wechat": "WeChat", "apple": "Apple"}


@dataclass(frozen=True)
class FamilyStep:
    family_id: str
    action: str  # "transfer" | "dissolve"
    to: str | None = None


async def _owned(s: AsyncSession, account_id: str) -> list[Family]:
    q = select(Family).where(Family.owner_account_id == account_id).order_by(Family.created_at)
    return list((await s.execute(q)).scalars())


async def _heirs(s: AsyncSession, family_id: str, owner_id: str) -> list[Account]:
    """Members who could own the family: active adults, guardians first, then by
    how long they have been in it."""
    q = (
        select(Account, FamilyMember)
        .join(FamilyMember, FamilyMember.account_id == Account.id)
        .where(
            FamilyMember.family_id == family_id,
            FamilyMember.account_id != owner_id,
            FamilyMember.role.in_(("guardian", "member")),
            Account.status == "active",
        )
        .order_by(FamilyMember.role != "guardian", FamilyMember.joined_at, Account.id)
    )
    return [a for a, _m in (await s.execute(q)).all() if is_adult(a)]


async def check_plan(
    s: AsyncSession, account_id: str, steps: list[FamilyStep]
) -> list[dict[str, Any]]:
    """Every family the account owns must be handed over to an adult member or
    dissolved; refuse (409, naming them and who could take each) otherwise."""
    owned = await _owned(s, account_id)
    given = {st.family_id: st for st in steps}
    unknown = sorted(set(given) - {f.id for f in owned})
    if unknown:
        raise Problem(409, "rights.not_owner", "You do not own these families.", families=unknown)
    missing = []
    for fam in owned:
        st = given.get(fam.id)
        heirs = await _heirs(s, fam.id, account_id)
        if st is None:
            missing.append({"id": fam.id, "name": fam.name, "heirs": [a.id for a in heirs]})
        elif st.action == "transfer" and st.to not in {a.id for a in heirs}:
            raise Problem(
                409,
                "rights.heir_invalid",
                "A family can be handed over only to an adult member of it.",
                family_id=fam.id,
            )
    if missing:
        raise Problem(
            409,
            "rights.family_owner",
            "You own families: say for each whether it is handed over to an adult member or "
            "dissolved (its members are told).",
            families=missing,
        )
    return [{"family_id": st.family_id, "action": st.action, "to": st.to} for st in steps]


async def wards(s: AsyncSession, account_id: str) -> list[Account]:
    """Whom the account looks after: the children it is the verified guardian of,
    and the dependants of the families it owns or is a guardian in."""
    verified = select(Guardianship.minor_account_id).where(
        Guardianship.guardian_account_id == account_id, Guardianship.ended_at.is_(None)
    )
    runs = select(FamilyMember.family_id).where(
        FamilyMember.account_id == account_id, FamilyMember.role.in_(families.ADMINS)
    )
    dependants = select(FamilyMember.account_id).where(
        FamilyMember.family_id.in_(runs), FamilyMember.role == "dependant"
    )
    q = (
        select(Account)
        .where(
            or_(Account.id.in_(verified), Account.id.in_(dependants)),
            Account.id != account_id,
            Account.status.in_(("active", "managed")),
        )
        .order_by(Account.id)
    )
    return list((await s.execute(q)).scalars())


async def orphans(s: AsyncSession, account_id: str, plan: list[dict[str, Any]]) -> list[Account]:
    """The account's managed profiles nobody would look after once it is deleted
    with this family plan: no other verified guardian, and no family of theirs
    that keeps an owner or guardian (a family handed over keeps one; a dissolved
    one does not). A child with a sign-in of its own is not one: it is told, and
    asks someone else to be its guardian."""
    dissolved = {p["family_id"] for p in plan if p.get("action") == "dissolve"}
    left = []
    for ward in await wards(s, account_id):
        if ward.status != "managed" or await pending_request(s, ward.id) is not None:
            continue  # due to be deleted itself
        others = select(Guardianship.guardian_account_id).where(
            Guardianship.minor_account_id == ward.id,
            Guardianship.ended_at.is_(None),
            Guardianship.guardian_account_id != account_id,
        )
        if (await s.execute(others.limit(1))).first() is not None:
            continue
        fams = select(FamilyMember.family_id).where(
            FamilyMember.account_id == ward.id, FamilyMember.role == "dependant"
        )
        kept = [f for f in (await s.execute(fams)).scalars() if f not in dissolved]
        admins = select(FamilyMember.account_id).where(
            FamilyMember.family_id.in_(kept),
            FamilyMember.role.in_(families.ADMINS),
            FamilyMember.account_id != account_id,
        )
        mine = select(Family.id).where(Family.id.in_(kept), Family.owner_account_id == account_id)
        if (await s.execute(admins.limit(1))).first() is not None:
            continue
        # a family of theirs the account owns and hands over gets a new owner
        handed = {p["family_id"] for p in plan if p.get("action") == "transfer"}
        if any(f in handed for f in (await s.execute(mine)).scalars()):
            continue
        left.append(ward)
    return left


async def refuse_orphans(s: AsyncSession, account_id: str, plan: list[dict[str, Any]]) -> None:
    left = await orphans(s, account_id, plan)
    if left:
        raise Problem(
            409,
            "rights.last_guardian",
            "You are the only one who looks after these dependants: make another adult a "
            "guardian in one of their families, or delete their profiles first "
            "(POST /api/v1/dependants/{id}/deletion).",
            dependants=[{"id": a.id, "name": a.name} for a in left],
        )


async def hand_over(
    s: AsyncSession, account_id: str, plan: list[dict[str, Any]], *, tell: bool = True
) -> list[dict[str, Any]]:
    """Carry out the plan for every family the account still owns (each through the
    families domain, which commits): handed over to the chosen heir while they can
    take it, else to the first who can, else dissolved. Members are told. What was
    done."""
    chosen = {p["family_id"]: p for p in plan}
    done = []
    for fam in await _owned(s, account_id):
        step = chosen.get(fam.id, {"action": "transfer", "to": None})
        heirs = await _heirs(s, fam.id, account_id)
        heir = None
        if step["action"] == "transfer" and heirs:
            heir = next((a for a in heirs if a.id == step.get("to")), heirs[0])
        members = [m for m in await families.member_ids(s, fam.id) if m != account_id]
        name = fam.name
        if heir is not None:
            if tell:
                for m in members:
                    await ports.tell(
                        s,
                        account_id=m,
                        category="system",
                        title=f"{name} has a new owner",
                        body=f"The owner of {name} deleted their account; "
                        f"{heir.name or 'a member'} now owns the family.",
                        data={"family_id": fam.id},
                    )
            await families.transfer(s, family_id=fam.id, actor_id=account_id, account_id=heir.id)
            done.append({"family_id": fam.id, "action": "transfer"})
        else:
            if tell:
                for m in members:
                    await ports.tell(
                        s,
                        account_id=m,
                        category="system",
                        title=f"{name} was dissolved",
                        body=f"The owner of {name} deleted their account and no adult member "
                        "could take it over, so the family was dissolved.",
                    )
            await families.dissolve(s, family_id=fam.id, actor_id=account_id)
            done.append({"family_id": fam.id, "action": "dissolve"})
    return done


async def verify(
    s: AsyncSession, rt: Runtime, account: Account, *, code: str, password: str | None
) -> None:
    """Identity re-verified: a code sent to the account's phone (and, when given,
    its password too). The code is used up; nothing else is written."""
    if account.phone is None or account.phone_hash is None:
        raise Problem(409, "rights.no_phone", "This account has no phone to send a code to.")
    if password is not None and not await accounts.verify_password(rt, account, password):
        raise Problem(403, "auth.reauth_required", "That password is not right.")
    challenge_id = await check_code(s, rt, ph=account.phone_hash, purpose="reauth", code=code)
    await consume_code(s, rt, challenge_id)


async def pending_request(s: AsyncSession, account_id: str) -> DeletionRequest | None:
    q = select(DeletionRequest).where(
        DeletionRequest.account_id == account_id, DeletionRequest.status == PENDING
    )
    return (await s.execute(q)).scalar_one_or_none()


async def latest_request(s: AsyncSession, account_id: str) -> DeletionRequest | None:
    q = (
        select(DeletionRequest)
        .where(DeletionRequest.account_id == account_id)
        .order_by(DeletionRequest.requested_at.desc())
        .limit(1)
    )
    return (await s.execute(q)).scalar_one_or_none()


def cooling_off(rt: Runtime) -> timedelta:
    return timedelta(days=rt.settings.deletion_cooling_off_days)


async def request_deletion(
    s: AsyncSession,
    rt: Runtime,
    account: Account,
    *,
    code: str,
    password: str | None,
    steps: list[FamilyStep],
) -> DeletionRequest:
    """Verify, check the family plan, and plan the deletion after the cooling-off
    period; one transaction. A pending request is answered as it stands."""
    found = await pending_request(s, account.id)
    if found is not None:
        raise Problem(409, "rights.deletion_pending", "Your account is already due to be deleted.")
    plan = await check_plan(s, account.id, steps)
    await refuse_orphans(s, account.id, plan)
    await verify(s, rt, account, code=code, password=password)
    now = clock.utcnow()
    req = DeletionRequest(
        id=new_id(),
        account_id=account.id,
        status=PENDING,
        requested_at=now,
        due_at=now + cooling_off(rt),
        families=plan,
    )
    # the job names nothing: it finds its request by its own id
    job = jobs.enqueue(s, ERASE_JOB, {}, run_at=req.due_at)
    req.job_id = job.id
    s.add(req)
    when = req.due_at.date().isoformat()
    body = (
        f"Your Kares account and its data will be deleted on {when}. Sign in again, or "
        "cancel under Settings, before then to keep it."
    )
    linked = sorted(
        {PROVIDERS.get(i.provider, i.provider) for i in await accounts.identities_of(s, account.id)}
    )
    if linked:
        body += (
            f" Your {' and '.join(linked)} account is separate from Kares and is not deleted "
            "with it: to delete it, ask that company (policy 5.4)."
        )
    await ports.tell(
        s,
        account_id=account.id,
        category="security",
        title="Your account will be deleted",
        body=body,
    )
    await s.commit()
    return req


async def request_ward_deletion(
    s: AsyncSession,
    rt: Runtime,
    guardian: Account,
    ward_id: str,
    *,
    code: str,
    password: str | None,
) -> DeletionRequest:
    """Policy 7: a guardian asks for a dependant's (or a child's under 14) account
    to be deleted, confirmed with a code sent to the guardian's own phone. The same
    cooling-off period, then the same job; any of the ward's guardians can cancel
    it, and the ward's own sign-in does not. The ward's guardians are told."""
    ward = await ward_of(s, guardian.id, ward_id)
    if await pending_request(s, ward.id) is not None:
        raise Problem(409, "rights.deletion_pending", "That account is already due to be deleted.")
    await verify(s, rt, guardian, code=code, password=password)
    now = clock.utcnow()
    req = DeletionRequest(
        id=new_id(),
        account_id=ward.id,
        requested_by=guardian.id,
        status=PENDING,
        requested_at=now,
        due_at=now + cooling_off(rt),
        families=[],
    )
    job = jobs.enqueue(s, ERASE_JOB, {}, run_at=req.due_at)
    req.job_id = job.id
    s.add(req)
    who = ward.name or "A dependant"
    when = req.due_at.date().isoformat()
    for g in await families.guardians_of(s, ward.id):
        await ports.tell(
            s,
            account_id=g.id,
            category="security",
            title=f"{who}'s account will be deleted",
            body=f"{guardian.name or 'A guardian'} asked for {who}'s Kares account and its "
            f"data to be deleted on {when}. Any guardian can cancel it before then.",
            data={"account_id": ward.id},
        )
    await s.commit()
    return req


async def ward_of(s: AsyncSession, guardian_id: str, ward_id: str) -> Account:
    """The ward, if the account looks after it; 404 otherwise (never says whether
    such an account exists)."""
    for w in await wards(s, guardian_id):
        if w.id == ward_id:
            return w
    raise Problem(404, "rights.not_guardian", "You are not a guardian of that account.")


async def cancel_ward(s: AsyncSession, guardian_id: str, ward_id: str) -> DeletionRequest:
    ward = await ward_of(s, guardian_id, ward_id)
    req = await pending_request(s, ward.id)
    if req is None:
        raise Problem(404, "rights.no_deletion", "That account is not due to be deleted.")
    await _cancel(s, req, "asked")
    await s.commit()
    return req


async def _cancel(s: AsyncSession, req: DeletionRequest, reason: str) -> None:
    req.status = CANCELLED
    req.cancelled_at = clock.utcnow()
    req.cancel_reason = reason
    if req.job_id:
        await s.execute(delete(jobs.Job).where(jobs.Job.id == req.job_id))
    if req.requested_by is not None:  # a guardian's request: the guardians are told
        for g in await families.guardians_of(s, req.account_id):
            await ports.tell(
                s,
                account_id=g.id,
                category="security",
                title="An account will not be deleted",
                body="The deletion of an account you look after was cancelled by a guardian.",
                data={"account_id": req.account_id},
            )
        return
    why = "you signed in" if reason == "signed_in" else "you asked"
    await ports.tell(
        s,
        account_id=req.account_id,
        category="security",
        title="Your account will not be deleted",
        body=f"The deletion of your Kares account was cancelled because {why}.",
    )


async def cancel(s: AsyncSession, account_id: str) -> DeletionRequest:
    req = await pending_request(s, account_id)
    if req is None or req.requested_by is not None:
        raise Problem(404, "rights.no_deletion", "Your account is not due to be deleted.")
    await _cancel(s, req, "asked")
    await s.commit()
    return req


async def _cancel_on_sign_in(s: AsyncSession, account: Account) -> None:
    """Signing in during the cooling-off period cancels the deletion (in the
    sign-in's transaction); the person is told."""
    req = await pending_request(s, account.id)
    if req is not None and req.requested_by is None:  # a guardian's request stands
        await _cancel(s, req, "signed_in")


accounts.on_sign_in(_cancel_on_sign_in)


async def carry_out(rt: Runtime, account_id: str, plan: list[dict[str, Any]]) -> Outcome:
    """Hand families over, delete every row, commit, make it gone from the files."""
    async with rt.db.sessions() as s:
        await hand_over(s, account_id, plan)
    async with rt.db.sessions() as s:
        out = await erase_account(s, rt, account_id)
        await s.commit()
    await settle(rt, sorted({*out.deleted, *out.cleared}))
    return out


@jobs.handler(ERASE_JOB)
async def _erase_job(rt: Runtime, job: jobs.JobContext) -> None:
    """Runs at the end of the cooling-off period (a durable job: a restart does not
    lose it). A request that was cancelled, or whose account is gone, ends here."""
    async with rt.db.sessions() as s:
        q = select(DeletionRequest).where(DeletionRequest.job_id == job.id)
        req = (await s.execute(q)).scalar_one_or_none()
        if req is None or req.status != PENDING:
            return
        if req.due_at > clock.utcnow():
            raise jobs.Defer(req.due_at, "cooling off")
        account_id, plan = req.account_id, list(req.families or [])
        why = await ports.held(s, account_id)
    if why is not None:
        # kept (stored only) until the hold is released; looked at again each hour
        log.info("deletion of an account waits: %s", why)
        raise jobs.Defer(clock.utcnow() + HOLD_RECHECK, why)
    await carry_out(rt, account_id, plan)


# --- operators ----------------------------------------------------------------------------


async def delete_now(rt: Runtime, account: Account) -> Outcome:
    """``kares rights delete --now``: the operator verified the person; no cooling
    off. Families go to an heir, else are dissolved. Logged as a staff action."""
    account_id = account.id
    async with rt.db.sessions() as s:
        await refuse_if_held(s, account_id)
        await hand_over(s, account_id, [])
    async with rt.db.sessions() as s:
        out = await erase_account(s, rt, account_id)
        await audit.record(
            s,
            "rights.delete",
            account_id=None,
            detail={**out.counts(), "register": out.entry["id"] if out.entry else None},
        )
        await s.commit()
    await settle(rt, sorted({*out.deleted, *out.cleared}))
    return out


# --- after a restore ----------------------------------------------------------------------


async def reapply(s: AsyncSession, rt: Runtime) -> list[dict[str, Any]]:
    """Delete again what the register says was deleted (after a backup was
    restored and ``register.merge`` brought back the newer entries). Commits each
    deletion; what was done, per entry found."""
    entries = await register.entries(s)
    ids = list((await s.execute(select(Account.id))).scalars())
    by_index = {register.subject_index(a): a for a in ids}
    done: list[dict[str, Any]] = []
    gone: set[str] = set()
    for e in entries:
        account_id = by_index.get(e["subject_index"])
        if account_id is None or account_id in gone:
            continue
        if e["scope"] == "account":
            await hand_over(s, account_id, [], tell=False)
            out = await erase_account(s, rt, account_id, record=False)
            gone.add(account_id)
        else:
            since = datetime.fromisoformat(e["since"]) if e.get("since") else None
            until = datetime.fromisoformat(e["until"]) if e.get("until") else None
            out = await erase_chosen(
                s, rt, account_id, e["category"], since=since, until=until, record=False
            )
        await s.commit()
        done.append({"entry": e["id"], "scope": e["scope"], **out.counts()})
    if done:
        await settle(rt, sorted({t for d in done for t in (*d["deleted"], *d["cleared"])}))
    return done
