"""The privacy core's actions: published versions, the consent ledger, the
guard's checks, minors and guardians, and the right to explanation.

Consent is a ledger of receipts; the state of a subject is its newest
receipt. A grant covers the *terms* of the version it was given under
(``PolicyVersion.terms``); it still allows a function after a revision only
when the revision takes nothing more (``catalog.covers``). So a revision can
never silently stretch a consent, and functions whose terms did not change
keep working without asking again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, jobs
from kares.errors import Problem
from kares.identity import service as identity
from kares.identity.models import Account
from kares.privacy import ports
from kares.privacy.catalog import Catalog, CatalogError, catalog_of, covers, reductions
from kares.privacy.models import (
    ConsentReceipt,
    GuardianRequest,
    Guardianship,
    PolicyNotice,
    PolicyVersion,
)
from kares.privacy.ports import Allowed
from kares.runtime import Runtime

log = logging.getLogger("kares.privacy")

ADULT_AGE = 18
MINOR_AGE = 14  # policy 6: under 14 needs a guardian's consent
BRACKETS = ("under_14", "14_to_17", "adult")
VIA = ("app", "web", "watch", "guardian")
GUARDIAN_REQUEST_HOURS = 24
# the job that tells existing accounts in the app about a significant revision
# (policy 8); its handler is registered by the domain that owns the inbox
REVISION_NOTICE_JOB = "privacy.revision_notice"


# --- published versions ---------------------------------------------------------------

_versions: dict[str, dict[str, Any]] = {}  # version -> terms; versions never change


async def sync_policy(
    s: AsyncSession, cat: Catalog, *, text_hash: str = "", dry_run: bool = False
) -> PolicyVersion:
    """Publish the catalog's version if it is new; refuse a changed one.

    A version, once served, is immutable: changing the catalog without a new
    version number is an error, and so is a revision that stretches existing
    consents without being marked significant.
    """
    meta = cat.policy
    row = await s.get(PolicyVersion, meta.version)
    digest = cat.digest()
    if row is not None:
        if row.digest != digest:
            raise CatalogError(
                f"policy.version: {meta.version!r} was already published with different "
                "content; give the revision a new version number"
            )
        if not dry_run:
            _versions[row.version] = row.terms
        return row
    prev = (
        await s.execute(
            select(PolicyVersion).order_by(PolicyVersion.first_served_at.desc()).limit(1)
        )
    ).scalar_one_or_none()
    terms = cat.terms()
    reduced = reductions(prev.terms, terms) if prev is not None else []
    if reduced and not meta.significant:
        raise CatalogError(
            f"policy.significant: version {meta.version!r} asks more of existing consents "
            f"({', '.join(reduced)}) and must be marked significant"
        )
    row = PolicyVersion(
        version=meta.version,
        published_on=meta.date,
        significant=meta.significant,
        digest=digest,
        text_hash=text_hash or digest,
        terms=terms,
        changes=[c.model_dump() for c in meta.changes],
        reductions=reduced,
        first_served_at=clock.utcnow(),
    )
    if dry_run:
        return row
    s.add(row)
    if meta.significant and prev is not None:
        # Policy 8: a significant change is announced in the app to everyone who
        # agreed to an earlier version; a durable job, committed with the version.
        await s.flush()
        s.add(PolicyNotice(version=row.version, before=row.first_served_at, told=0))
        jobs.enqueue(s, REVISION_NOTICE_JOB, {"version": row.version})
    await s.commit()
    _versions[row.version] = terms
    log.info("published privacy policy version %s", meta.version)
    return row


async def sync_at_start(rt: Runtime) -> None:
    """Start-up: publish the catalog's version (skipped until migrations ran)."""
    import hashlib

    from kares.privacy import render

    # the hash of the readable text users were shown, in every language
    text = "\n".join(render.rendered(catalog_of(rt), lang, "html") for lang in render.LANGS)
    text_hash = hashlib.sha256(text.encode()).hexdigest()
    async with rt.db.sessions() as s:
        try:
            await sync_policy(s, catalog_of(rt), text_hash=text_hash)
        except (OperationalError, ProgrammingError):
            log.warning("policy not synced: database not migrated yet (run `kares migrate`)")


async def version_terms(s: AsyncSession, version: str) -> dict[str, Any] | None:
    if version not in _versions:
        row = await s.get(PolicyVersion, version)
        if row is None:
            return None
        _versions[version] = row.terms
    return _versions[version]


async def list_versions(s: AsyncSession) -> list[PolicyVersion]:
    q = select(PolicyVersion).order_by(PolicyVersion.first_served_at)
    return list((await s.execute(q)).scalars())


# --- the consent ledger ----------------------------------------------------------------


def consentable(cat: Catalog) -> dict[str, str]:
    """Subjects a user can grant or withdraw, with their kind."""
    out = {"policy": "policy"}
    for k, f in cat.functions.items():
        if f.kind == "extended":
            out[f"function:{k}"] = "function"
    for k, c in cat.categories.items():
        if c.sensitive:
            out[f"category:{k}"] = "category"
    for k, t in cat.third_parties.items():
        if t.relation == "sharing":
            out[f"third_party:{k}"] = "third_party"
    return out


async def record(
    s: AsyncSession,
    *,
    account_id: str,
    subject: str,
    action: str,
    policy_version: str,
    via: str,
    actor_account_id: str | None = None,
    session_id: str | None = None,
    device_id: str | None = None,
) -> ConsentReceipt:
    """Append a receipt (flushed, not committed: the caller's action commits)."""
    if action not in ("grant", "withdraw") or via not in VIA:
        raise ValueError(f"bad receipt {action!r} via {via!r}")
    r = ConsentReceipt(
        account_id=account_id,
        subject=subject,
        action=action,
        policy_version=policy_version,
        via=via,
        actor_account_id=actor_account_id,
        session_id=session_id,
        device_id=device_id,
        created_at=clock.utcnow(),
    )
    s.add(r)
    await identity.bump_privacy_version(s, account_id)
    await s.flush()
    return r


async def receipts(s: AsyncSession, account_id: str) -> list[ConsentReceipt]:
    q = (
        select(ConsentReceipt)
        .where(ConsentReceipt.account_id == account_id)
        .order_by(ConsentReceipt.created_at, ConsentReceipt.id)
    )
    return list((await s.execute(q)).scalars())


async def state(s: AsyncSession, account_id: str) -> dict[str, ConsentReceipt]:
    """The newest receipt of each subject."""
    out: dict[str, ConsentReceipt] = {}
    for r in await receipts(s, account_id):
        out[r.subject] = r
    return out


@dataclass(frozen=True)
class Standing:
    """Where one consent subject stands for an account."""

    subject: str
    granted: bool
    current: bool  # granted and covering the terms in force
    receipt: ConsentReceipt | None


async def standing(
    s: AsyncSession,
    cat: Catalog,
    st: dict[str, ConsentReceipt],
    subject: str,
    terms_for: str,
) -> Standing:
    r = st.get(subject)
    if r is None or r.action != "grant":
        return Standing(subject, False, False, r)
    old = await version_terms(s, r.policy_version)
    now_terms = cat.terms().get(terms_for)
    ok = covers((old or {}).get(terms_for), now_terms)
    return Standing(subject, True, ok, r)


def _refuse(status: int, code: str, detail: str, **extra: Any) -> Problem:
    return Problem(status, code, detail, **extra)


@dataclass(frozen=True)
class _Decision:
    """A remembered outcome of the guard's checks: a refusal, or what to coarsen."""

    refusal: tuple[int, str, str, dict[str, Any]] | None
    degraded: dict[str, str]
    permissions: dict[str, str] | None


# The guard's decisions, keyed by everything they depend on. The account's
# privacy_version comes with the session that authenticates the request, and every
# change a decision reads (a consent receipt, a device's permissions, a
# guardianship) bumps it in the same transaction: an entry is never used after
# such a change, whichever process made it.
DECISIONS_MAX = 20_000
_decisions: OrderedDict[tuple[Any, ...], _Decision] = OrderedDict()


def _decision_key(cat: Catalog, allowed: Allowed) -> tuple[Any, ...]:
    caller = allowed.caller
    assert caller is not None
    a = caller.account
    return _key(
        cat,
        (a.id, a.privacy_version, a.status, a.birth_date, a.age_bracket),
        caller.session.device_id,
        allowed.function,
        allowed.feature,
    )


def _key(
    cat: Catalog,
    account: tuple[Any, ...],
    device_id: str | None,
    function: str,
    feature: str | None,
) -> tuple[Any, ...]:
    # account: its id, privacy_version, status, birth_date and age_bracket
    return (
        *account,
        clock.utcnow().date(),  # an age bracket can change overnight
        device_id,
        function,
        feature,
        cat.digest(),
    )


def remembered(
    cat: Catalog, facts: identity.SessionFacts, function: str, feature: str | None
) -> tuple[dict[str, str], dict[str, str] | None] | None:
    """The guard's remembered decision for a caller known by its facts, when it let
    the caller through: what to coarsen and the device's permissions. None when
    nothing is remembered, or a refusal is: :func:`check` must run (it remembers
    what it decides, and raises a refusal)."""
    key = _key(
        cat,
        (
            facts.account_id,
            facts.privacy_version,
            facts.status,
            facts.birth_date,
            facts.age_bracket,
        ),
        facts.device_id,
        function,
        feature,
    )
    found = _decisions.get(key)
    if found is None or found.refusal is not None:
        return None
    return dict(found.degraded), found.permissions


async def check(s: AsyncSession, rt: Runtime, allowed: Allowed) -> None:
    """The guard's checks for a signed-in caller (account state, minors,
    consent, device permissions). Raises a 403 Problem naming what failed.

    Remembered per account version (see ``_decisions``): the steady state of a
    device that uploads all day costs no query here."""
    cat = catalog_of(rt)
    key = _decision_key(cat, allowed)
    found = _decisions.get(key)
    if found is None:
        try:
            await _check_uncached(s, cat, allowed)
        except Problem as exc:
            found = _Decision((exc.status, exc.code, exc.detail, dict(exc.extra)), {}, None)
        else:
            found = _Decision(None, dict(allowed.degraded), allowed.permissions)
        _decisions[key] = found
        if len(_decisions) > DECISIONS_MAX:
            _decisions.popitem(last=False)
    if found.refusal is not None:
        status, code, detail, extra = found.refusal
        raise _refuse(status, code, detail, **extra)
    allowed.degraded.update(found.degraded)
    allowed.permissions = found.permissions


async def _check_uncached(s: AsyncSession, cat: Catalog, allowed: Allowed) -> None:
    caller = allowed.caller
    assert caller is not None
    feat = cat.feature(allowed.function, allowed.feature)
    await _check_account(s, cat, caller.account, allowed)

    device_id = caller.session.device_id
    if device_id and (
        feat.permissions or feat.any_permission or not cat.degradable().isdisjoint(feat.categories)
    ):
        perms = await ports.device_permissions(s, device_id)
        allowed.permissions = perms
        closed = [p for p in feat.permissions if perms.get(p) == "denied"]
        if feat.any_permission and all(perms.get(p) == "denied" for p in feat.any_permission):
            closed.extend(feat.any_permission)
        if closed:
            raise _refuse(
                403,
                "permission.closed",
                "This needs the device permission "
                + ", ".join(cat.permissions[p].name.en for p in closed)
                + ", which is closed on this device.",
                permissions=closed,
            )
        for p, st in perms.items():
            spec = cat.permissions.get(p)
            for c in spec.degrade.get(st, []) if spec else []:
                fb = cat.categories[c].fallback
                if c in feat.categories and fb:
                    allowed.degraded[c] = fb


async def check_for_job(
    s: AsyncSession, cat: Catalog, account: Account, function: str, feature: str | None = None
) -> dict[str, str]:
    """What a background job must ask before it processes an account's data for
    a function: the same account, minor and consent checks as the guard (there
    is no device). Raises the same 403 Problem when refused; returns the
    categories to coarsen. Jobs call it per account per run, so a withdrawal
    stops them at their next item (policy 5.3)."""
    allowed = Allowed(function, feature, None)
    await _check_account(s, cat, account, allowed)
    return allowed.degraded


async def _check_account(s: AsyncSession, cat: Catalog, account: Account, allowed: Allowed) -> None:
    """Account state, a guardian for children under 14, and consent."""
    fn = cat.functions[allowed.function]
    feat = cat.feature(allowed.function, allowed.feature)
    if account.status not in ("active", "managed"):
        raise _refuse(403, "account.inactive", "This account is not active.")
    if not (fn.minor_allowed or feat.minor_allowed) and is_minor(account):
        if not await has_guardian(s, account.id):
            raise _refuse(
                403,
                "guardian.consent_required",
                "A child under 14 needs a guardian's consent before using Kares.",
            )
    if not fn.consent_exempt:
        await _check_consent(s, cat, account.id, allowed, fn.kind, feat.categories)


async def _check_consent(
    s: AsyncSession,
    cat: Catalog,
    account_id: str,
    allowed: Allowed,
    kind: str,
    categories: list[str],
) -> None:
    st = await state(s, account_id)
    fkey = f"function:{allowed.function}"
    subject = "policy" if kind == "basic" else fkey
    main = await standing(s, cat, st, subject, fkey)
    if not main.granted:
        if subject == "policy":
            raise _refuse(
                403,
                "consent.policy_required",
                "Accept the privacy policy to use this.",
                policy_version=cat.policy.version,
            )
        raise _refuse(
            403,
            "consent.required",
            "This function needs your consent.",
            missing=[subject],
            policy_version=cat.policy.version,
        )
    if not main.current:
        raise _refuse(
            403,
            "consent.reconsent_required",
            "The policy changed what this function does. Review and accept it again.",
            missing=[subject],
            policy_version=cat.policy.version,
        )
    missing: list[str] = []
    stale: list[str] = []
    for c in categories:
        if not cat.categories[c].sensitive:
            continue
        ckey = f"category:{c}"
        stand = await standing(s, cat, st, ckey, ckey)
        if stand.current:
            continue
        fb = cat.categories[c].fallback
        if fb and fb in categories:
            allowed.degraded[c] = fb
            continue
        (stale if stand.granted else missing).append(ckey)
    if missing:
        raise _refuse(
            403,
            "consent.required",
            "This uses sensitive personal information that needs your separate consent.",
            missing=missing,
            policy_version=cat.policy.version,
        )
    if stale:
        raise _refuse(
            403,
            "consent.reconsent_required",
            "The policy changed how this information is used. Review and accept it again.",
            missing=stale,
            policy_version=cat.policy.version,
        )


async def change_consent(
    s: AsyncSession,
    cat: Catalog,
    *,
    account_id: str,
    subject: str,
    action: str,
    policy_version: str | None,
    via: str,
    actor_account_id: str | None = None,
    session_id: str | None = None,
    device_id: str | None = None,
) -> ConsentReceipt:
    """Grant or withdraw one subject; takes effect on the next request."""
    if subject not in consentable(cat):
        raise Problem(
            422,
            "consent.unknown_subject",
            f"{subject!r} is not something you can consent to; see GET /api/v1/me/consents.",
        )
    if action == "grant" and policy_version != cat.policy.version:
        raise Problem(
            409,
            "consent.policy_version_mismatch",
            f"Consent is given to the policy in force, version {cat.policy.version}.",
            policy_version=cat.policy.version,
        )
    r = await record(
        s,
        account_id=account_id,
        subject=subject,
        action=action,
        policy_version=cat.policy.version,
        via=via,
        actor_account_id=actor_account_id,
        session_id=session_id,
        device_id=device_id,
    )
    await s.commit()
    return r


# --- minors ------------------------------------------------------------------------------


def age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def bracket_of(birth_date: str | None, bracket: str | None, today: date) -> str | None:
    if birth_date:
        age = age_on(date.fromisoformat(birth_date), today)
        if age < MINOR_AGE:
            return "under_14"
        return "14_to_17" if age < ADULT_AGE else "adult"
    return bracket


def is_minor(account: Account) -> bool:
    return bracket_of(account.birth_date, account.age_bracket, clock.utcnow().date()) == "under_14"


def is_adult(account: Account) -> bool:
    return bracket_of(account.birth_date, account.age_bracket, clock.utcnow().date()) == "adult"


def check_age(birth_date: date | None, bracket: str | None, today: date) -> tuple[str | None, str]:
    """Validate registration age data; returns (birth_date iso, bracket)."""
    if birth_date is None and bracket is None:
        raise Problem(
            422,
            "account.age_required",
            "Give a birth date or an age bracket: children under 14 need a guardian's consent.",
        )
    if birth_date is not None:
        if birth_date > today or birth_date.year < 1900:
            raise Problem(422, "account.invalid_birth_date", "That birth date is not possible.")
        iso = birth_date.isoformat()
        return iso, bracket_of(iso, None, today) or "adult"
    assert bracket is not None
    return None, bracket


async def has_guardian(s: AsyncSession, minor_id: str) -> bool:
    q = select(Guardianship.id).where(
        Guardianship.minor_account_id == minor_id, Guardianship.ended_at.is_(None)
    )
    return (await s.execute(q)).first() is not None


async def guardian_of(s: AsyncSession, minor_id: str, guardian_id: str) -> Guardianship | None:
    q = select(Guardianship).where(
        Guardianship.minor_account_id == minor_id,
        Guardianship.guardian_account_id == guardian_id,
        Guardianship.ended_at.is_(None),
    )
    return (await s.execute(q)).scalar_one_or_none()


async def wards_of(s: AsyncSession, guardian_id: str) -> list[Guardianship]:
    q = select(Guardianship).where(
        Guardianship.guardian_account_id == guardian_id, Guardianship.ended_at.is_(None)
    )
    return list((await s.execute(q.order_by(Guardianship.approved_at))).scalars())


async def request_guardian(
    s: AsyncSession, rt: Runtime, minor: Account, *, guardian_phone: str, ip: str
) -> GuardianRequest:
    """A child asks a guardian to approve: a code goes to the guardian's phone."""
    if not is_minor(minor):
        raise Problem(409, "guardian.not_needed", "Only children under 14 need a guardian.")
    e164 = identity.parse_phone(guardian_phone, rt.settings.default_region)
    if e164 == minor.phone:
        raise Problem(422, "guardian.self", "A guardian must be someone else.")
    await identity.request_code(s, rt, phone=e164, purpose="guardian", ip=ip)
    now = clock.utcnow()
    req = GuardianRequest(
        minor_account_id=minor.id,
        guardian_phone_hash=identity.phone_index(e164),
        status="pending",
        created_at=now,
        expires_at=now + timedelta(hours=GUARDIAN_REQUEST_HOURS),
    )
    s.add(req)
    await s.commit()
    return req


async def approve_guardian(
    s: AsyncSession,
    rt: Runtime,
    guardian: Account,
    *,
    code: str,
    session_id: str | None,
    device_id: str | None,
    request_id: str | None = None,
) -> Guardianship:
    """The guardian, signed in on their own adult account, proves the code sent to
    their phone; the child's account is approved and the policy accepted for it."""
    if not is_adult(guardian):
        raise Problem(
            403,
            "guardian.not_adult",
            "Only an adult account can be a guardian. Declare your age under your profile.",
        )
    now = clock.utcnow()
    pending = await pending_requests(s, guardian)
    if request_id is not None:
        pending = [r for r in pending if r.id == request_id]
    if not pending:
        raise Problem(404, "guardian.no_request", "No child has asked you to be their guardian.")
    req = pending[0]
    challenge = await identity.check_code(
        s, rt, ph=guardian.phone_hash, purpose="guardian", code=code
    )
    await identity.consume_code(s, rt, challenge)
    existing = await guardian_of(s, req.minor_account_id, guardian.id)
    g = existing or Guardianship(
        minor_account_id=req.minor_account_id, guardian_account_id=guardian.id, approved_at=now
    )
    if existing is None:
        s.add(g)
    req.status = "approved"
    await record(
        s,
        account_id=req.minor_account_id,
        subject="policy",
        action="grant",
        policy_version=catalog_of(rt).policy.version,
        via="guardian",
        actor_account_id=guardian.id,
        session_id=session_id,
        device_id=device_id,
    )
    await ports.tell(
        s,
        account_id=req.minor_account_id,
        category="security",
        title="Your guardian approved your account",
        body="Your guardian agreed to the privacy policy for you. You can use Kares now.",
    )
    await s.commit()
    return g


async def pending_requests(s: AsyncSession, guardian: Account) -> list[GuardianRequest]:
    """Children's requests addressed to this account's phone, newest first."""
    q = (
        select(GuardianRequest)
        .where(
            GuardianRequest.guardian_phone_hash == guardian.phone_hash,
            GuardianRequest.status == "pending",
            GuardianRequest.expires_at > clock.utcnow(),
        )
        .order_by(GuardianRequest.created_at.desc())
    )
    return list((await s.execute(q)).scalars())


async def end_guardianship(
    s: AsyncSession, rt: Runtime, guardian: Account, minor_id: str, *, session_id: str | None
) -> None:
    """The guardian withdraws their approval: the child's account stops at once."""
    g = await guardian_of(s, minor_id, guardian.id)
    if g is None:
        raise Problem(404, "guardian.not_found", "You are not this account's guardian.")
    g.ended_at = clock.utcnow()
    await identity.bump_privacy_version(s, minor_id)
    await s.flush()
    if not await has_guardian(s, minor_id):
        # the last guardian's approval carried the policy acceptance: it goes too
        await record(
            s,
            account_id=minor_id,
            subject="policy",
            action="withdraw",
            policy_version=catalog_of(rt).policy.version,
            via="guardian",
            actor_account_id=guardian.id,
            session_id=session_id,
        )
    await s.commit()


async def require_ward(s: AsyncSession, guardian: Account, minor_id: str) -> Guardianship:
    """The caller's active guardianship of ``minor_id``, or a 404 (never a 403)."""
    g = await guardian_of(s, minor_id, guardian.id)
    if g is None:
        raise Problem(404, "guardian.not_found", "You are not this account's guardian.")
    return g


# --- the right to explanation (policy 5.6) -------------------------------------------------


async def explain(s: AsyncSession, cat: Catalog, account: Account) -> list[dict[str, Any]]:
    """For each category: held or not, for which functions and purposes, on which
    basis (and which consent receipt), shared with whom, kept until when.

    "Held" is read from the database itself, by walking every table's declared
    subject column and personal columns, so a new feature cannot be missed.
    """
    from sqlalchemy import func as sa_func
    from sqlalchemy import literal
    from sqlalchemy import select as sa_select

    from kares.db import Base
    from kares.privacy import reach

    held: dict[str, datetime | None] = {}
    values = await reach.values_of(s, account.id)
    for table in Base.metadata.sorted_tables:
        # every way the table's rows can be about the account (kares.privacy.reach)
        about = reach.where_about(table, account.id, values)
        if about is None:
            continue
        time_col = next(
            (
                table.c[n]
                for n in (
                    "created_at",
                    "occurred_at",
                    "first_seen_at",
                    "reported_at",
                    "approved_at",
                    "linked_at",
                )
                if n in table.c
            ),
            None,
        )
        for col in table.columns:
            cat_key = col.info.get("pi_category")
            if not cat_key:
                continue
            oldest = sa_func.min(time_col) if time_col is not None else literal(None)
            q = sa_select(sa_func.count(), oldest).select_from(table).where(about, col.is_not(None))
            count, first = (await s.execute(q)).one()
            if count:
                prev = held.get(cat_key)
                if cat_key not in held or (first is not None and (prev is None or first < prev)):
                    held[cat_key] = first
    st = await state(s, account.id)
    items = []
    for key, c in cat.categories.items():
        functions = cat.functions_using(key)
        bases = sorted({cat.basis_for(f, key) for f in functions})
        receipt = None
        if c.sensitive:
            r = st.get(f"category:{key}")
            receipt = r.id if r is not None and r.action == "grant" else None
        elif "policy" in st and st["policy"].action == "grant":
            receipt = st["policy"].id
        first = held.get(key)
        kept_until = None
        if c.retention.days is not None and first is not None:
            kept_until = first + timedelta(days=c.retention.days)
        items.append(
            {
                "category": key,
                "name": c.name.en,
                "sensitive": c.sensitive,
                "fides": c.fides,
                "held": key in held,
                "functions": functions,
                "purposes": [cat.functions[f].purpose.en for f in functions],
                "legal_basis": bases,
                "consent_receipt": receipt,
                "shared_with": cat.third_parties_receiving([key]),
                "retention": (
                    f"{c.retention.days} days, then {c.retention.then}"
                    if c.retention.days is not None
                    else f"while the account exists, then {c.retention.then}"
                ),
                "kept_until": kept_until,
            }
        )
    return items


# --- minimum necessity for location ---------------------------------------------------------


def coarsen(cat: Catalog, category: str, lat: float, lon: float) -> tuple[float, float]:
    """Round a position to the precision the catalog states for ``category``
    (location.approximate: 2 decimals, about 1.1 km), before it is stored or shown."""
    decimals = cat.categories[category].rounding_decimals
    if decimals is None:
        raise ValueError(f"{category} states no rounding")
    return round(lat, decimals), round(lon, decimals)


# --- account deletion (policy 5.4) -------------------------------------------------------------


async def _guardian_on_erasure(s: AsyncSession, e: ports.Erasure) -> None:
    """When a guardian's account is deleted their wards are told (the guardianship
    goes with it, and a child under 14 needs a guardian again). A child's receipts
    keep what the guardian agreed to, but no longer who it was nor the session and device it was
    given from: the one change the receipts' triggers allow (migration 0018)."""
    if e.scope != "account":
        return
    wards = select(Guardianship.minor_account_id).where(
        Guardianship.guardian_account_id == e.account_id, Guardianship.ended_at.is_(None)
    )
    for minor in (await s.execute(wards)).scalars():
        # the guardianship goes with the guardian: the child needs one again
        await ports.tell(
            s,
            account_id=minor,
            category="security",
            title="Your guardian's account was deleted",
            body="Ask a parent or guardian to approve your Kares account again.",
        )
    await s.execute(
        update(ConsentReceipt)
        .where(ConsentReceipt.actor_account_id == e.account_id)
        .values(actor_account_id="erased", session_id=None, device_id=None)
        .execution_options(synchronize_session=False)
    )


ports.register_erasure("before", _guardian_on_erasure)
