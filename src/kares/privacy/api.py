"""Public routes of the policy (the ``transparency`` function; no sign-in).

- ``GET /privacy/policy``: the policy as an HTML page.
- ``GET /privacy/cookies``: the cookie page (policy section 2), HTML.
- ``GET /api/v1/privacy/policy``: the policy as JSON, section by section.
- ``GET /api/v1/privacy/data-map``: every column that holds personal information.

Language: ``?lang=en|zh`` if given, else the best match of Accept-Language
(``zh*`` -> zh), else English. An unknown ``?lang`` is refused (422
``request.invalid``) rather than silently answered in another language;
an Accept-Language we cannot serve falls back to English.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from kares.deps import DbDep, RuntimeDep
from kares.errors import responses
from kares.privacy import render
from kares.privacy import service as privacy_service
from kares.privacy.catalog import Catalog, catalog_of
from kares.privacy.datamap import data_map
from kares.privacy.guard import guard
from kares.privacy.schemas import DataMapRowOut, PolicyOut, VersionOut

router = APIRouter(tags=["privacy"])

LangQuery = Annotated[
    Literal["en", "zh"] | None,
    Query(
        description="en or zh (Simplified Chinese); without it, Accept-Language decides "
        "(zh* -> zh), else English"
    ),
]

# The pages load nothing from anywhere: inline styles only, no scripts.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HTML_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "An HTML page"}
}


# the language a reader chose on a page, remembered (catalog: cookies.kares_lang)
LANG_COOKIE = "kares_lang"


def _lang(request: Request, lang: str | None) -> str:
    """The ``lang`` asked for, else the one the reader chose before (the
    ``kares_lang`` cookie), else what the browser prefers."""
    if lang:
        return lang
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in render.HTML_LANG:
        return remembered
    return render.negotiate(request.headers.get("accept-language"))


def _headers(lang: str) -> dict[str, str]:
    return {"Content-Language": render.HTML_LANG[lang], "Vary": "Accept-Language, Cookie"}


def _page(body: str, lang: str, cat: Catalog, *, remember: bool) -> HTMLResponse:
    """An HTML page; when the reader chose its language (``?lang=``), the choice
    is remembered in the one preferences cookie the catalog declares."""
    page = HTMLResponse(body, headers={**_headers(lang), "Content-Security-Policy": PAGE_CSP})
    if remember:
        c = cat.cookies[LANG_COOKIE]
        page.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=c.expires_days * 86400,
            path="/",
            httponly=c.http_only,
            samesite="lax",
        )
    return page


@router.get(
    "/privacy/policy",
    dependencies=[guard("transparency")],
    response_class=HTMLResponse,
    responses={**HTML_DOC, **responses()},
    summary="The privacy policy (HTML)",
)
async def policy_page(request: Request, rt: RuntimeDep, lang: LangQuery = None) -> HTMLResponse:
    chosen, cat = _lang(request, lang), catalog_of(rt)
    return _page(render.rendered(cat, chosen, "html"), chosen, cat, remember=lang is not None)


@router.get(
    "/privacy/cookies",
    dependencies=[guard("transparency")],
    response_class=HTMLResponse,
    responses={**HTML_DOC, **responses()},
    summary="The cookies Kares sets and why (HTML; policy section 2)",
)
async def cookies_page(request: Request, rt: RuntimeDep, lang: LangQuery = None) -> HTMLResponse:
    chosen, cat = _lang(request, lang), catalog_of(rt)
    return _page(
        render.rendered(cat, chosen, "cookies_html"), chosen, cat, remember=lang is not None
    )


@router.get(
    "/api/v1/privacy/policy",
    dependencies=[guard("transparency")],
    response_model=PolicyOut,
    responses=responses(),
    summary="The privacy policy in force, section by section",
)
async def policy_json(
    request: Request, response: Response, rt: RuntimeDep, lang: LangQuery = None
) -> dict[str, Any]:
    chosen = _lang(request, lang)
    response.headers.update(_headers(chosen))
    return dict(render.rendered(catalog_of(rt), chosen, "json"))


@router.get(
    "/api/v1/privacy/data-map",
    dependencies=[guard("transparency")],
    response_model=list[DataMapRowOut],
    responses=responses(),
    summary="Every column that holds personal information: category, functions, retention",
)
async def data_map_json(
    request: Request, response: Response, rt: RuntimeDep, lang: LangQuery = None
) -> list[dict[str, Any]]:
    chosen = _lang(request, lang)
    response.headers.update(_headers(chosen))
    return [row.to_dict(chosen) for row in data_map(catalog_of(rt))]


@router.get(
    "/api/v1/privacy/versions",
    dependencies=[guard("transparency")],
    response_model=list[VersionOut],
    responses=responses(),
    summary="Every version of the policy served so far, oldest first, with its changes",
)
async def versions(s: DbDep) -> list[VersionOut]:
    return [
        VersionOut(
            version=v.version,
            published_on=v.published_on,
            significant=v.significant,
            changes=v.changes,
            asks_again_about=v.reductions,
            first_served_at=v.first_served_at,
        )
        for v in await privacy_service.list_versions(s)
    ]
