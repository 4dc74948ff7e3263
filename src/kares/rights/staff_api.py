"""HTTP routes of the requests that need a person (policy 5.1, 5.6, 5.8 and 8).

- ``POST /api/v1/me/rights/requests``: make one (correction, explanation,
  complaint, feedback); ``GET`` lists the caller's (made by or about them).
- ``GET /api/v1/me/rights/requests/{id}``, ``POST .../{id}/withdraw``.
- ``POST``/``GET /api/v1/guardian/wards/{account_id}/rights/requests``: the same
  for a dependant or a child the caller looks after.

Staff answer from the command line (``kares staff``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, status

from kares import clock
from kares.deps import DbDep, RuntimeDep
from kares.errors import responses
from kares.identity.auth import AUTH_ERRORS
from kares.identity.models import Account
from kares.privacy import render
from kares.privacy.catalog import catalog_of
from kares.privacy.guard import Allowed, guard
from kares.rights import staff
from kares.rights.staff_models import RightsRequest
from kares.rights.staff_schemas import CorrectionCreate, RequestCreate, RequestOut
from kares.workdays import local_day

router = APIRouter(prefix="/api/v1", tags=["rights"])

Ctx = Annotated[Allowed, guard("privacy_choices", "requests")]
NOT_FOUND = (404, "rights.request_not_found")
# (the body's schema states the rest: a correction's fields, the text rules)
CREATE_ERRORS = (
    (404, "rights.unknown_category"),
    (409, "rights.edit_in_app"),
    (429, "rights.request_repeated"),
)


def _caller(ctx: Allowed) -> Account:
    assert ctx.caller is not None
    return ctx.caller.account


def request_out(r: RightsRequest, days: int) -> RequestOut:
    now = clock.utcnow()
    return RequestOut(
        id=r.id,
        kind=r.kind,
        status=r.status,
        account_id=r.account_id,
        filed_by=r.filed_by,
        on_behalf=r.filed_by is not None and r.filed_by != r.account_id,
        about=r.about,
        record=r.record,
        wrong=r.wrong,
        should_be=r.should_be,
        text=r.text,
        lang="zh" if r.lang == "zh" else "en",
        received_at=r.created_at,
        response_working_days=days,
        due_on=r.due_on,
        due_pending=r.due_pending,
        working_days_left=staff.working_days_left(r, now),
        overdue=staff.is_overdue(r, local_day(now)),
        answer=r.answer,
        closed_at=r.closed_at,
    )


def _new(body: RequestCreate, request: Request) -> staff.NewRequest:
    lang = body.lang or render.negotiate(request.headers.get("accept-language"))
    if isinstance(body, CorrectionCreate):
        return staff.NewRequest(
            kind=body.kind,
            about=body.about,
            record=body.record,
            wrong=body.wrong,
            should_be=body.should_be,
            text=body.text,
            lang=lang,
        )
    return staff.NewRequest(kind=body.kind, about=body.about, text=body.text, lang=lang)


@router.post(
    "/me/rights/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=RequestOut,
    responses=responses(*AUTH_ERRORS, *CREATE_ERRORS),
    summary="Ask for something a person must answer: a correction, an explanation, "
    "a complaint or feedback (answered within the policy's working days)",
)
async def create(
    body: RequestCreate, request: Request, ctx: Ctx, rt: RuntimeDep, s: DbDep
) -> RequestOut:
    me = _caller(ctx)
    r = await staff.create(s, rt, caller=me, account_id=me.id, req=_new(body, request))
    return request_out(r, catalog_of(rt).policy.response_working_days)


@router.get(
    "/me/rights/requests",
    response_model=list[RequestOut],
    responses=responses(*AUTH_ERRORS),
    summary="Your requests (made by you or about you), newest first",
)
async def mine(ctx: Ctx, rt: RuntimeDep, s: DbDep) -> list[RequestOut]:
    days = catalog_of(rt).policy.response_working_days
    return [request_out(r, days) for r in await staff.list_mine(s, _caller(ctx))]


@router.get(
    "/me/rights/requests/{request_id}",
    response_model=RequestOut,
    responses=responses(*AUTH_ERRORS, NOT_FOUND),
    summary="One of your requests, with its due date and answer",
)
async def one(request_id: str, ctx: Ctx, rt: RuntimeDep, s: DbDep) -> RequestOut:
    r = await staff.visible(s, _caller(ctx), request_id)
    return request_out(r, catalog_of(rt).policy.response_working_days)


@router.post(
    "/me/rights/requests/{request_id}/withdraw",
    response_model=RequestOut,
    responses=responses(*AUTH_ERRORS, NOT_FOUND, (409, "rights.request_closed")),
    summary="Withdraw an open request (it stays listed, as withdrawn)",
)
async def withdraw(request_id: str, ctx: Ctx, rt: RuntimeDep, s: DbDep) -> RequestOut:
    r = await staff.withdraw(s, _caller(ctx), request_id)
    return request_out(r, catalog_of(rt).policy.response_working_days)


@router.post(
    "/guardian/wards/{account_id}/rights/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=RequestOut,
    responses=responses(*AUTH_ERRORS, *CREATE_ERRORS, (404, "rights.not_your_ward")),
    summary="Make a request for a dependant or a child under 14 you look after",
)
async def create_for_ward(
    account_id: str, body: RequestCreate, request: Request, ctx: Ctx, rt: RuntimeDep, s: DbDep
) -> RequestOut:
    me = _caller(ctx)
    await staff.require_ward(s, me, account_id)
    r = await staff.create(s, rt, caller=me, account_id=account_id, req=_new(body, request))
    return request_out(r, catalog_of(rt).policy.response_working_days)


@router.get(
    "/guardian/wards/{account_id}/rights/requests",
    response_model=list[RequestOut],
    responses=responses(*AUTH_ERRORS, (404, "rights.not_your_ward")),
    summary="The requests about a dependant or a child you look after",
)
async def ward_requests(account_id: str, ctx: Ctx, rt: RuntimeDep, s: DbDep) -> list[RequestOut]:
    await staff.require_ward(s, _caller(ctx), account_id)
    days = catalog_of(rt).policy.response_working_days
    return [request_out(r, days) for r in await staff.list_about(s, account_id)]
