"""The guard: every route declares the function (and feature) it performs.

    @router.get("/...", dependencies=[guard("transparency")])
    async def handler(...): ...

or, when the handler needs what the guard found::

    async def handler(ctx: Annotated[Allowed, guard("driving_tracks", "view")]): ...

Before the handler runs the guard checks, in order, and refuses with a 403
problem whose ``code`` says which check failed:

1. the caller is signed in (unless the function/feature is public) and the
   account is active                          -> auth.* / account.inactive
2. a child under 14 has a guardian's consent  -> guardian.consent_required
3. consent: the policy (for basic functions), the function's own consent
   (extended), each sensitive category the feature uses, all covering the
   terms in force                             -> consent.policy_required /
                                                 consent.required /
                                                 consent.reconsent_required
4. the calling device's reported permissions  -> permission.closed
5. for data about another person, that person's choices (hooks registered
   by the families domain)                    -> sharing.off (or a 404)

A sensitive category with a fallback (precise location -> approximate) is
not refused: the guard lets the request through with ``degraded`` naming
what must be coarsened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from kares.accounts.auth import TRACKER_KIND, Caller, DbDep, RuntimeDep, current_caller
from kares.errors import Problem
from kares.privacy.catalog import Catalog, catalog_of


@dataclass
class Allowed:
    """What the guard established for this request."""

    function: str
    feature: str | None
    caller: Caller | None
    # sensitive categories that must be coarsened to their fallback
    degraded: dict[str, str] = field(default_factory=dict)
    # the calling device's reported permissions, when the checks read them
    # (None: not read; a handler that needs them asks devices.permissions_of)
    permissions: dict[str, str] | None = None

    @property
    def account_id(self) -> str:
        if self.caller is None:
            raise RuntimeError("public route has no caller")
        return self.caller.account.id


# A subject check decides whether the caller may read data about another
# account for a function: returns None to allow, or raises a Problem.
SubjectCheck = Callable[[AsyncSession, Allowed, str], Awaitable[None]]
_subject_checks: list[SubjectCheck] = []


def register_subject_check(check: SubjectCheck) -> None:
    if check not in _subject_checks:
        _subject_checks.append(check)


class Guard:
    def __init__(
        self,
        function: str,
        feature: str | None = None,
        *,
        about: str | None = None,
        trackers: bool = False,
    ):
        self.function = function
        self.feature = feature
        self.about = about  # name of the path parameter holding another account's id
        # a tracker credential (OwnTracks, Overland, ...) may call this route
        self.trackers = trackers
        # public functions need no sign-in (known from the catalog at start-up)
        self.public_hint = False

    def __repr__(self) -> str:
        return f"guard({self.function!r}, {self.feature!r})"

    def validate(self, cat: Catalog) -> None:
        if self.function not in cat.functions:
            raise ValueError(f"route declares unknown function {self.function!r}")
        if self.feature is not None and self.feature not in cat.functions[self.function].features:
            raise ValueError(
                f"route declares unknown feature {self.feature!r} of function {self.function!r}"
            )
        self.public_hint = self.is_public(cat)

    def is_public(self, cat: Catalog) -> bool:
        f = cat.functions[self.function]
        if self.feature is None:
            return f.public
        return f.public and f.features[self.feature].public

    async def __call__(self, request: Request, rt: RuntimeDep, s: DbDep) -> Allowed:
        from kares.privacy import service as privacy

        cat: Catalog = catalog_of(rt)
        if self.is_public(cat):
            return Allowed(self.function, self.feature, None)
        caller = await current_caller(request, rt, s)
        if caller.session.kind == TRACKER_KIND and not self.trackers:
            raise Problem(
                403,
                "auth.tracker_scope",
                "A tracker credential can only upload locations. Sign in to use the rest.",
            )
        allowed = Allowed(self.function, self.feature, caller)
        await privacy.check(s, rt, allowed)
        if self.about is not None:
            subject = request.path_params.get(self.about)
            if isinstance(subject, str) and subject != caller.account.id:
                if not _subject_checks:
                    raise Problem(404, "not_found", "Not found.")
                for chk in _subject_checks:
                    await chk(s, allowed, subject)
        return allowed


def guard(
    function: str, feature: str | None = None, *, about: str | None = None, trackers: bool = False
) -> Any:
    """A FastAPI dependency declaring the function a route performs.

    ``about`` names the path parameter holding the account the data is about;
    ``trackers`` lets tracker credentials (sessions of kind ``tracker``) call it.
    """
    return Depends(Guard(function, feature, about=about, trackers=trackers))


def route_guards(route: APIRoute) -> list[Guard]:
    """The guards a route declares (directly or as a handler parameter)."""
    found: list[Guard] = []

    def walk(dep: Any) -> None:
        call = getattr(dep, "call", None)
        if isinstance(call, Guard):
            found.append(call)
        for sub in getattr(dep, "dependencies", []):
            walk(sub)

    walk(route.dependant)
    return found


def api_routes(app: Any) -> list[APIRoute]:
    """Every API route of the app, with included routers expanded."""
    try:  # FastAPI >= 0.16x includes routers lazily
        from fastapi.routing import _iter_included_route_candidates

        routes = list(_iter_included_route_candidates(app.routes))
    except ImportError:  # pragma: no cover - older FastAPI
        routes = list(app.routes)
    return [r for r in routes if isinstance(r, APIRoute)]


def check_routes(app: Any, cat: Catalog) -> None:
    """At start-up: each declared function must be in the catalog."""
    for route in api_routes(app):
        if isinstance(route, APIRoute):
            for g in route_guards(route):
                try:
                    g.validate(cat)
                except ValueError as exc:
                    raise ValueError(f"{route.path}: {exc}") from exc


GUARD_ERRORS = (
    (403, "account.inactive"),
    (403, "auth.tracker_scope"),
    (403, "guardian.consent_required"),
    (403, "consent.policy_required"),
    (403, "consent.required"),
    (403, "consent.reconsent_required"),
    (403, "permission.closed"),
)


def document_routes(app: Any) -> None:
    """Add the guard's refusals to each guarded, non-public route's OpenAPI errors."""
    from kares.errors import responses

    for route in api_routes(app):
        guards = route_guards(route)
        if not guards or all(g.public_hint for g in guards):
            continue
        extra = responses(*GUARD_ERRORS)
        for status, doc in extra.items():
            if status in route.responses:
                have = route.responses[status]
                codes = doc["description"].split("code: ", 1)[1]
                have["description"] = f"{have.get('description', '')}, {codes}"
            else:
                route.responses[status] = doc
