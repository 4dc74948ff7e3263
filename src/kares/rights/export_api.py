"""HTTP routes of the right of access and copy (policy 5.1): ask for an archive,
watch it being made, download it once."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem, responses
from kares.fields import Count
from kares.identity.auth import AUTH_ERRORS
from kares.identity.models import Account
from kares.privacy import service as privacy
from kares.privacy.guard import Allowed, guard
from kares.rights import export
from kares.rights.export import ExportRequest

router = APIRouter(prefix="/api/v1", tags=["privacy"])

ExportCtx = Annotated[Allowed, guard("privacy_choices", "export")]
BASE = "/api/v1/me/rights/export"
_ID = re.compile(r"[0-9a-f]{32}")
NOT_FOUND = (404, "rights.export_not_found")


class ExportAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="A dependant's or a child's account you are the guardian of; "
        "leave out (or null) for your own",
    )


class ExportOut(BaseModel):
    id: str
    account_id: str = Field(description="Whose data the archive holds")
    status: Literal["queued", "running", "ready", "downloaded", "expired", "failed"]
    steps_done: Count
    steps_total: Count = Field(description="0 until the job has counted its steps")
    created_at: datetime
    ready_at: datetime | None
    link_expires_at: datetime | None
    downloaded_at: datetime | None
    file_deleted_at: datetime | None
    url: str = Field(description="Where to watch this request")
    download_url: str | None = Field(
        description="While the archive is ready: its link, which works once and expires"
    )


def out(req: ExportRequest) -> ExportOut:
    url = f"{BASE}/{req.id}"
    link = (
        f"{url}/download?key={req.link_secret}"
        if req.status == export.READY and req.link_secret
        else None
    )
    return ExportOut(
        id=req.id,
        account_id=req.account_id,
        status=req.status,
        steps_done=req.steps_done,
        steps_total=req.steps_total,
        created_at=req.created_at,
        ready_at=req.ready_at,
        link_expires_at=req.link_expires_at,
        downloaded_at=req.downloaded_at,
        file_deleted_at=req.deleted_at,
        url=url,
        download_url=link,
    )


async def _whose(s: DbDep, ctx: Allowed, account_id: str | None) -> str:
    """The account an archive is asked for: the caller's own, or a ward's that
    the caller is the guardian of (a dependant, or a child under 14)."""
    me = ctx.account_id
    if account_id is None or account_id == me:
        return me
    ward = await privacy.guardian_of(s, account_id, me)
    acc = await s.get(Account, account_id) if ward is not None else None
    if acc is None or not (acc.status == "managed" or privacy.is_minor(acc)):
        raise Problem(404, "guardian.not_found", "You are not this account's guardian.")
    return account_id


async def _visible(s: DbDep, ctx: Allowed, export_id: str) -> ExportRequest:
    """A request the caller made, or one about the caller or a ward of theirs;
    anything else is the same 404 as a request that does not exist."""
    req = await s.get(ExportRequest, export_id) if _ID.fullmatch(export_id) else None
    me = ctx.account_id
    if req is not None and me not in (req.requested_by, req.account_id):
        if await privacy.guardian_of(s, req.account_id, me) is None:
            req = None
    if req is None:
        raise Problem(404, "rights.export_not_found", "No such archive.")
    return req


@router.post(
    "/me/rights/export",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportOut,
    responses=responses(*AUTH_ERRORS, (404, "guardian.not_found")),
    summary="Ask for a copy of your personal information (policy 5.1)",
    description="Starts making a zip archive of everything Kares holds about you (or about "
    "a dependant or a child under 14 you are the guardian of): one JSON file per kind of "
    "information, your tracks as GPX and GeoJSON, your images, your consent receipts and "
    "login history, and an `index.html` to read it all. Answers 202 with the request; "
    "watch its `url` until it is `ready` and gives a `download_url`. While an archive of "
    "the same account is being made, asking again answers that one.",
)
async def ask_export(
    ctx: ExportCtx, s: DbDep, response: Response, body: ExportAsk | None = None
) -> ExportOut:
    whose = await _whose(s, ctx, body.account_id if body is not None else None)
    started = await export.start(s, account_id=whose, requested_by=ctx.account_id)
    response.headers["Location"] = f"{BASE}/{started.request.id}"
    return out(started.request)


@router.get(
    "/me/rights/export/{export_id}",
    response_model=ExportOut,
    responses=responses(*AUTH_ERRORS, NOT_FOUND),
    summary="How an archive is coming along, and its link once it is ready",
)
async def get_export(export_id: str, ctx: ExportCtx, s: DbDep) -> ExportOut:
    return out(await _visible(s, ctx, export_id))


@router.get(
    "/me/rights/export",
    response_model=list[ExportOut],
    responses=responses(*AUTH_ERRORS),
    summary="Your archive requests, newest first",
)
async def list_exports(ctx: ExportCtx, s: DbDep) -> list[ExportOut]:
    q = (
        select(ExportRequest)
        .where(export.may_see_statement(ctx.account_id))
        .order_by(ExportRequest.created_at.desc(), ExportRequest.id)
    )
    return [out(r) for r in (await s.execute(q)).scalars()]


@router.get(
    "/me/rights/export/{export_id}/download",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The archive"},
        **responses(
            *AUTH_ERRORS,
            NOT_FOUND,
            (409, "rights.export_not_ready"),
            (410, "rights.export_link_used"),
            (410, "rights.export_link_expired"),
            (410, "rights.export_failed"),
        ),
    },
    summary="Download an archive: the link works once, until it expires",
)
async def download_export(
    export_id: str,
    ctx: ExportCtx,
    rt: RuntimeDep,
    s: DbDep,
    tasks: BackgroundTasks,
    key: Annotated[str, Query(max_length=128, description="The link's one-time secret")],
) -> FileResponse:
    req = await _visible(s, ctx, export_id)
    path = await export.take_download(s, rt, req, key)
    tasks.add_task(export.downloaded, rt, req.id)
    day = (req.ready_at or req.created_at).strftime("%Y%m%d")
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"kares-data-{day}.zip",
        headers={"Cache-Control": "no-store"},
        background=tasks,
    )
