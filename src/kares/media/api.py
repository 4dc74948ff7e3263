"""HTTP routes of the media domain."""

from __future__ import annotations

from fastapi import APIRouter, Response

from kares.deps import DbDep
from kares.errors import Problem, responses
from kares.identity.auth import CallerDep
from kares.media import service
from kares.privacy.guard import guard

router = APIRouter(prefix="/api/v1", tags=["media"])


@router.get(
    "/media/{media_id}",
    dependencies=[guard("account", "profile")],
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "The image"},
        **responses((401, "auth.required"), (401, "auth.invalid_token"), (404, "media.not_found")),
    },
    summary="Download an uploaded image (re-encoded, without metadata)",
)
async def get_media(media_id: str, caller: CallerDep, s: DbDep) -> Response:
    obj = await service.get_media(s, media_id)
    # Until families exist (step 3) only the owner may see an image; anyone
    # else gets the same 404 as for an image that does not exist.
    if obj is None or obj.owner_account_id != caller.account.id:
        raise Problem(404, "media.not_found", "No such image.")
    return Response(
        obj.data,
        media_type=obj.content_type,
        headers={
            "Cache-Control": "private, max-age=86400",
            "ETag": f'"{obj.sha256}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
