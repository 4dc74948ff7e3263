"""Requests that need a person (policy 5.1, 5.6, 5.8 and 8), and the staff queue.

An account holder (or a guardian, for a dependant or a child under 14) asks
for something the app cannot do by itself: a **correction** of a disputed
record, an **explanation** beyond the automatic one of ``/me/processing``, a
**complaint** or **feedback**. Each request is stored at once with its due
date, ``response_working_days`` (catalog, 15) working days on the
mainland-China calendar (``kares.workdays``), and waits in the staff queue
until an operator answers or rejects it (``kares staff``); the person is told
through the notify domain, in the language they wrote in.

Rules (docs/RIGHTS.md, "Requests that need a person"):

* **Nothing acknowledged is lost.** When the calendar of a year the due date
  needs is not known yet (``WorkdaysUnknown``: late December of the library's
  last year), the request is stored with ``due_on`` NULL and the reason in
  ``due_pending``, an error is logged for the operator, the staff queue shows
  it among the first, and a job (``rights.due_date``) fills the date once the
  library knows the year (the staff listing tries too).
* **Edited in place.** A correction of something the app lets the person edit
  (their name, password, sharing, consents, ...) is refused with where to edit
  it, and nothing is stored.
* **Free, within reason (5.8).** The same request (same kind, same person,
  same subject: ``topic_of``) more than ``KARES_RIGHTS_REPEAT_LIMIT`` times in
  ``KARES_RIGHTS_REPEAT_PERIOD_DAYS`` days is refused with the reason.

Staff actions (answer, reject) are not yet written to the staff-action log
(``rights/audit.py``, built alongside): the lead wires that call.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto, jobs
from kares.errors import Problem, retry_after
from kares.families import service as families
from kares.identity.models import Account
from kares.notify import service as notify
from kares.notify.models import Notification
from kares.privacy.catalog import Catalog, catalog_of
from kares.rights import audit
from kares.rights.staff_models import RightsRequest
from kares.workdays import WorkdaysUnknown, add_working_days, local_day, working_days_between

if TYPE_CHECKING:
    from kares.runtime import Runtime

log = logging.getLogger("kares.rights.staff")

KINDS = ("correction", "explanation", "complaint", "feedback")
OPEN, ANSWERED, REJECTED, WITHDRAWN = "open", "answered", "rejected", "withdrawn"
LANGS = ("en", "zh")
DUE_JOB = "rights.due_date"
RENDER = "rights_request"
TEXT_MAX = 4000
RECORD_MAX = 200
ANSWER_MAX = 8000

# What the app lets a person edit themselves, by category: a correction of it is
# made there, not by staff. (The age is not here: a child cannot change it, and
# a disputed birth date is a case for staff.)
EDIT_IN_APP: dict[str, tuple[tuple[str, str], ...]] = {
    "account.profile": (("PATCH", "/api/v1/me"), ("PUT", "/api/v1/me/avatar")),
    "account.credentials": (("POST", "/api/v1/me/password"),),
    "account.external_id": (("DELETE", "/api/v1/me/identities/{provider}"),),
    "privacy.consent": (("POST", "/api/v1/me/consents"),),
    "family.membership": (("PATCH", "/api/v1/families/{family_id}/members/me/sharing"),),
    "device.permissions": (("PUT", "/api/v1/devices/{device_id}/permissions"),),
}
# ... and what a guardian edits for a dependant or a child
EDIT_FOR_WARD: dict[str, tuple[tuple[str, str], ...]] = {
    "privacy.consent": (("POST", "/api/v1/guardian/wards/{account_id}/consents"),),
    "family.membership": (("PATCH", "/api/v1/families/{family_id}/members/{account_id}/sharing"),),
}


# --- the rules (pure) ------------------------------------------------------------------


def _fold(text: str) -> str:
    """Text as compared for "the same request": NFKC, case-folded, runs of
    whitespace made one space, trimmed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def topic_of(kind: str, about: str | None, record: str | None, text: str | None) -> str:
    """What makes two requests of one person *the same* (a keyed hash of it):

    * a correction: the same category and the same record named;
    * an explanation: the same category (or both about the processing in general);
    * a complaint or feedback: the same category, and the same words (compared
      ignoring case and spacing).

    The kind and the person are compared beside it (``repeats``).
    """
    if kind == "correction":
        parts = [about or "", _fold(record or "")]
    elif kind == "explanation":
        parts = [about or ""]
    else:
        parts = [about or "", _fold(text or "")]
    return crypto.blind_index("\x1f".join([kind, *parts]), purpose="rights.topic")


def due_date(received: datetime, days: int) -> tuple[date | None, str | None]:
    """The due date of a request received at ``received``, or None and why."""
    try:
        return add_working_days(received, days), None
    except WorkdaysUnknown as e:
        return None, str(e)


def is_overdue(r: RightsRequest, today: date) -> bool:
    return r.status == OPEN and r.due_on is not None and r.due_on < today


def working_days_left(r: RightsRequest, now: datetime) -> int | None:
    """Working days from today to the due date (below 0 once overdue), or None
    when the due date or a day on the way is not known."""
    if r.due_on is None or r.status != OPEN:
        return None
    try:
        return working_days_between(now, r.due_on)
    except WorkdaysUnknown:
        return None


# --- who may ---------------------------------------------------------------------------


def _not_found() -> Problem:
    return Problem(404, "rights.request_not_found", "No such request.")


async def acts_for(s: AsyncSession, caller: Account, account_id: str) -> bool:
    """Whether ``caller`` may make and see requests about ``account_id``: it is
    the caller, or the caller looks after it (a verified guardian of a child
    under 14, or an owner or guardian of a family where it is a dependant:
    ``families.guardians_of``)."""
    if account_id == caller.id:
        return True
    return any(g.id == caller.id for g in await families.guardians_of(s, account_id))


async def require_ward(s: AsyncSession, caller: Account, account_id: str) -> Account:
    acc = await s.get(Account, account_id) if len(account_id) <= 32 else None
    if acc is None or account_id == caller.id or not await acts_for(s, caller, account_id):
        raise Problem(
            404,
            "rights.not_your_ward",
            "You do not look after such an account (a dependant "
            "or a child under 14 you are the guardian of).",
        )
    return acc


async def visible(s: AsyncSession, caller: Account, request_id: str) -> RightsRequest:
    """A request the caller filed, is about the caller, or about someone the
    caller looks after; 404 otherwise (never 403: its existence is not told)."""
    r = await s.get(RightsRequest, request_id) if len(request_id) <= 32 else None
    if r is None:
        raise _not_found()
    if r.filed_by == caller.id or await acts_for(s, caller, r.account_id):
        return r
    raise _not_found()


# --- the person's side -----------------------------------------------------------------


@dataclass(frozen=True)
class NewRequest:
    kind: str
    about: str | None = None
    record: str | None = None
    wrong: str | None = None
    should_be: str | None = None
    text: str | None = None
    lang: str = "en"


def _clean(value: str | None, max_len: int, field: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > max_len:
        raise Problem(
            422, "rights.too_long", f"'{field}' is longer than {max_len} characters.", field=field
        )
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t\r" for c in value):
        raise Problem(
            422, "rights.invalid_text", f"'{field}' holds control characters.", field=field
        )
    return value


def _checked(cat: Catalog, req: NewRequest) -> NewRequest:
    """The request as it will be stored, or a 4xx naming what is wrong."""
    if req.kind not in KINDS:
        raise Problem(422, "rights.unknown_kind", f"A request is one of: {', '.join(KINDS)}.")
    if req.lang not in LANGS:
        raise Problem(422, "rights.unknown_language", "The language is en or zh.")
    if req.about is not None and req.about not in cat.categories:
        raise Problem(  # like an unknown function (function.unknown): not found
            404,
            "rights.unknown_category",
            "'about' names a category of personal information of the privacy policy "
            "(GET /api/v1/privacy/data-map lists them).",
        )
    record = _clean(req.record, RECORD_MAX, "record")
    wrong = _clean(req.wrong, TEXT_MAX, "wrong")
    should_be = _clean(req.should_be, TEXT_MAX, "should_be")
    text = _clean(req.text, TEXT_MAX, "text")
    if req.kind == "correction":
        if req.about is None or wrong is None or should_be is None:
            raise Problem(
                422,
                "rights.correction_incomplete",
                "A correction names the category it is about ('about'), what is wrong "
                "('wrong') and what it should be ('should_be').",
            )
    else:
        if wrong is not None or should_be is not None:
            raise Problem(
                422,
                "rights.not_a_correction",
                "'wrong' and 'should_be' belong to a correction.",
            )
        if text is None:
            raise Problem(
                422, "rights.text_required", f"Say what the {req.kind} is about in 'text'."
            )
    return NewRequest(req.kind, req.about, record, wrong, should_be, text, req.lang)


def edit_in_app(category: str, *, for_ward: str | None) -> list[dict[str, str]] | None:
    """Where the app lets the person (or, for a ward, the guardian) edit the
    category themselves; None when only staff can correct it."""
    table = EDIT_FOR_WARD if for_ward is not None else EDIT_IN_APP
    found = table.get(category)
    if found is None:
        return None
    return [{"method": m, "path": p.replace("{account_id}", for_ward or "")} for m, p in found]


async def repeats(
    s: AsyncSession, *, account_id: str, kind: str, topic: str, since: datetime
) -> list[datetime]:
    """When the same request was received since ``since``, oldest first (withdrawn
    and answered ones count too: they were asked)."""
    q = (
        select(RightsRequest.created_at)
        .where(
            RightsRequest.account_id == account_id,
            RightsRequest.kind == kind,
            RightsRequest.topic == topic,
            RightsRequest.created_at > since,
        )
        .order_by(RightsRequest.created_at)
    )
    return list((await s.execute(q)).scalars())


async def create(
    s: AsyncSession, rt: Runtime, *, caller: Account, account_id: str, req: NewRequest
) -> RightsRequest:
    """Store a request about ``account_id`` (the caller, or one they look after).

    Checks everything first (4xx, nothing stored), then stores it with its due
    date, in one transaction. A due date the calendar cannot give yet is left
    empty with the reason, logged as an error, and filled later by a job.
    """
    cat = catalog_of(rt)
    req = _checked(cat, req)
    ward = None if account_id == caller.id else account_id
    if req.kind == "correction" and req.about is not None:
        where = edit_in_app(req.about, for_ward=ward)
        if where is not None:
            raise Problem(
                409,
                "rights.edit_in_app",
                "You can correct this yourself in the app; no request is needed.",
                edit_at=where,
            )
    now = clock.utcnow()
    topic = topic_of(req.kind, req.about, req.record, req.text)
    settings = rt.settings
    period = timedelta(days=settings.rights_repeat_period_days)
    # Counted under a lock on the account's row: two requests at once are counted
    # one after the other (PostgreSQL: the row lock; SQLite: the write gate), so
    # both cannot slip under the limit.
    await s.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(status=Account.status)
        .execution_options(synchronize_session=False)
    )
    seen = await repeats(s, account_id=account_id, kind=req.kind, topic=topic, since=now - period)
    if len(seen) >= settings.rights_repeat_limit:
        free_again = seen[-settings.rights_repeat_limit] + period
        raise Problem(
            429,
            "rights.request_repeated",
            f"The same request was made {len(seen)} times in the last "
            f"{settings.rights_repeat_period_days} days. Reasonable requests are free, but "
            "requests repeated beyond a reasonable limit may be refused (privacy policy "
            "5.8). The earlier requests are being answered; you can make it again after "
            f"{free_again.isoformat(timespec='seconds')}.",
            headers=retry_after((free_again - now).total_seconds()),
            limit=settings.rights_repeat_limit,
            period_days=settings.rights_repeat_period_days,
            again_after=free_again.isoformat(),
        )
    due, pending = due_date(now, cat.policy.response_working_days)
    r = RightsRequest(
        account_id=account_id,
        filed_by=caller.id,
        kind=req.kind,
        about=req.about,
        record=req.record,
        wrong=req.wrong,
        should_be=req.should_be,
        text=req.text,
        topic=topic,
        lang=req.lang,
        status=OPEN,
        created_at=now,
        due_on=due,
        due_pending=pending,
    )
    s.add(r)
    await s.flush()
    if due is None:
        # the request is kept and acknowledged; the operator must hear of the gap
        log.error(
            "rights request %s stored without a due date: %s. It shows first in "
            "`kares staff list`; the date is filled once the calendar is known.",
            r.id,
            pending,
        )
        jobs.enqueue(
            s, DUE_JOB, {"request_id": r.id}, account_id=account_id, run_at=now + timedelta(days=1)
        )
    await s.commit()
    return r


async def list_mine(s: AsyncSession, caller: Account) -> list[RightsRequest]:
    """Requests the caller filed or that are about the caller, newest first."""
    q = (
        select(RightsRequest)
        .where(or_(RightsRequest.account_id == caller.id, RightsRequest.filed_by == caller.id))
        .order_by(RightsRequest.created_at.desc(), RightsRequest.id)
    )
    return list((await s.execute(q)).scalars())


async def list_about(s: AsyncSession, account_id: str) -> list[RightsRequest]:
    q = (
        select(RightsRequest)
        .where(RightsRequest.account_id == account_id)
        .order_by(RightsRequest.created_at.desc(), RightsRequest.id)
    )
    return list((await s.execute(q)).scalars())


async def withdraw(s: AsyncSession, caller: Account, request_id: str) -> RightsRequest:
    r = await visible(s, caller, request_id)
    if r.status != OPEN:
        raise Problem(
            409, "rights.request_closed", f"This request is {r.status}: it cannot be withdrawn."
        )
    r.status = WITHDRAWN
    r.closed_at = clock.utcnow()
    await s.commit()
    return r


# --- due dates the calendar could not give at once ---------------------------------------


async def fill_due_dates(s: AsyncSession, cat: Catalog) -> int:
    """Give open requests stored without a due date theirs, where the calendar
    now knows it (after an upgrade of ``chinesecalendar``). Commits; returns
    how many were filled."""
    q = select(RightsRequest).where(RightsRequest.due_on.is_(None), RightsRequest.status == OPEN)
    filled = 0
    for r in (await s.execute(q)).scalars():
        due, pending = due_date(r.created_at, cat.policy.response_working_days)
        if due is not None:
            r.due_on, r.due_pending = due, None
            filled += 1
        elif pending != r.due_pending:
            r.due_pending = pending
    await s.commit()
    return filled


# --- the staff side --------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    request: RightsRequest
    overdue: bool
    days_left: int | None


def _queue_order(item: Queued) -> tuple[Any, ...]:
    r = item.request
    # overdue first (the most overdue first), then those with no due date yet (an
    # operator must look), then by due date; closed ones last
    if r.status != OPEN:
        return (3, -r.created_at.timestamp(), r.id)
    if item.overdue:
        assert r.due_on is not None
        return (0, r.due_on.toordinal(), r.created_at.timestamp(), r.id)
    if r.due_on is None:
        return (1, 0, r.created_at.timestamp(), r.id)
    return (2, r.due_on.toordinal(), r.created_at.timestamp(), r.id)


async def queue(
    s: AsyncSession, rt: Runtime, *, overdue_only: bool = False, include_closed: bool = False
) -> list[Queued]:
    """The staff queue: open requests, overdue first, then those still waiting
    for a due date, then by due date. Fills due dates the calendar now knows."""
    await fill_due_dates(s, catalog_of(rt))
    now = clock.utcnow()
    today = local_day(now)
    q = select(RightsRequest)
    if not include_closed:
        q = q.where(RightsRequest.status == OPEN)
    items = [
        Queued(r, is_overdue(r, today), working_days_left(r, now))
        for r in (await s.execute(q)).scalars()
    ]
    if overdue_only:
        items = [i for i in items if i.overdue]
    return sorted(items, key=_queue_order)


async def find(s: AsyncSession, request_id: str) -> RightsRequest:
    r = await s.get(RightsRequest, request_id) if len(request_id) <= 32 else None
    if r is None:
        raise _not_found()
    return r


_TOLD = {
    ANSWERED: ("Your request has been answered", "您的请求已答复"),
    REJECTED: ("Your request was refused", "您的请求未被受理"),
}
_KIND_NAMES = {
    "correction": ("correction", "更正"),
    "explanation": ("explanation", "解释说明"),
    "complaint": ("complaint", "投诉"),
    "feedback": ("feedback", "反馈"),
}


def _words(r: RightsRequest) -> tuple[str, str]:
    en, zh = _TOLD[r.status]
    title = zh if r.lang == "zh" else en
    kind_en, kind_zh = _KIND_NAMES[r.kind]
    if r.lang == "zh":
        body = f"您的{kind_zh}请求已处理。请打开 Kares 查看。"
    else:
        body = f"Your {kind_en} request has been dealt with. Open Kares to read it."
    return title, body


async def close(
    s: AsyncSession,
    rt: Runtime,
    request_id: str,
    *,
    status: str,
    text: str,
    by: str,
) -> RightsRequest:
    """Answer (``status=answered``) or reject (``rejected``, ``text`` the reason)
    an open request, and tell the person: the account it is about, if it can sign
    in, and whoever filed it. Allowed after the due date too."""
    if status not in (ANSWERED, REJECTED):
        raise ValueError(status)
    r = await find(s, request_id)
    if r.status != OPEN:
        raise Problem(409, "rights.request_closed", f"This request is already {r.status}.")
    field = "text" if status == ANSWERED else "reason"
    cleaned = _clean(text, ANSWER_MAX, field)
    if cleaned is None:
        raise Problem(422, "rights.answer_required", f"Give the {field}.")
    by = by.strip()[:64] or "staff"
    r.status, r.answer, r.answered_by, r.closed_at = status, cleaned, by, clock.utcnow()
    told = [r.account_id] if r.filed_by is None else [r.filed_by, r.account_id]
    accounts = [await s.get(Account, a) for a in dict.fromkeys(told)]
    title, body = _words(r)
    await notify.send(
        s,
        account_ids=[a.id for a in accounts if a is not None and a.status == "active"],
        category="system",
        title=title,
        body=body,
        data={notify.RENDER: RENDER, "request_id": r.id},
    )
    # the staff-action log, in the same transaction as the answer
    await audit.record(
        s,
        f"staff.{status}",
        account_id=r.account_id,
        detail={
            "request": r.id,
            "kind": r.kind,
            "late": r.due_on is not None and local_day(clock.utcnow()) > r.due_on,
        },
        actor=by,
    )
    await s.commit()
    return r


@notify.renderer(RENDER)
async def _shown(s: AsyncSession, note: Notification) -> notify.Shown | None:
    """The notice of an answer, with the answer read from the request (the
    notification itself, and so a push, never carries it)."""
    data = dict(note.data or {})
    r = await s.get(RightsRequest, str(data.get("request_id", "")))
    if r is None or r.answer is None:
        return None
    return notify.Shown(note.title, r.answer, data)


async def count_open(s: AsyncSession) -> int:
    q = select(func.count()).select_from(RightsRequest).where(RightsRequest.status == OPEN)
    return int((await s.execute(q)).scalar_one())
