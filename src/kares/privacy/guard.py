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

The checks themselves know no framework: :func:`admit` runs them for a
:class:`~kares.identity.auth.Caller` on any connection (the watch's TCP
session, a WebSocket); :class:`Guard` is the FastAPI dependency around it,
for an HTTP request or a WebSocket alike.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from kares.deps import DbDep, RuntimeDep
from kares.errors import Problem
from kares.identity import service as identity
from kares.identity.auth import TRACKER_KIND, Caller, current_caller
from kares.privacy import ports
from kares.privacy.catalog import Catalog, catalog_of
from kares.privacy.ports import Allowed
from kares.privacy.service import check, remembered
from kares.runtime import Runtime

__all__ = ["Allowed", "Guard", "admit", "guard"]


async def admit(
    s: AsyncSession,
    rt: Runtime,
    caller: Caller,
    function: str,
    feature: str | None = None,
    *,
    subject: str | None = None,
    trackers: bool = False,
) -> Allowed:
    """The guard's checks for a caller on any connection (an HTTP request, a
    WebSocket, a watch's TCP session): what it may do for ``function`` /
    ``feature``, about ``subject`` (another account's id) when given. Raises
    the refusal as a Problem."""
    if caller.session.kind == TRACKER_KIND and not trackers:
        raise Problem(
            403,
            "auth.tracker_scope",
            "A tracker credential can only upload locations. Sign in to use the rest.",
        )
    allowed = Allowed(function, feature, caller)
    await check(s, rt, allowed)
    if subject is not None and subject != caller.account.id:
        checks = ports.subject_checks()
        if not checks:
            raise Problem(404, "not_found", "Not found.")
        for chk in checks:
            await chk(s, allowed, subject)
    return allowed


def steady(
    cat: Catalog,
    facts: identity.SessionFacts,
    function: str,
    feature: str | None = None,
    *,
    trackers: bool = False,
) -> tuple[dict[str, str], dict[str, str] | None] | None:
    """:func:`admit` for a caller known by its facts, answered from the guard's
    remembered decision: what to coarsen and the device's permissions when it
    lets the caller through. None when :func:`admit` must run (nothing
    remembered, or a refusal): it decides, remembers, and raises the refusal."""
    if facts.kind == TRACKER_KIND and not trackers:
        return None
    return remembered(cat, facts, function, feature)


class Guard:
    def __init__(
        self,
        function: str,
        feature: str | None = None,
        *,
        about: str | None = None,
        trackers: bool = False,
        any_of: tuple[str, ...] = (),
    ):
        self.function = function
        self.feature = feature
        # a route serving several features (one upload of heart rate and steps):
        # the caller is let in when admitted for at least one of them, and the
        # handler admits each feature it then uses (``admit``); a refusal for all
        # is the first feature's
        self.any_of = any_of
        self.about = about  # name of the path parameter holding another account's id
        # a tracker credential (OwnTracks, Overland, ...) may call this route
        self.trackers = trackers
        # public functions need no sign-in (known from the catalog at start-up)
        self.public_hint = False

    def __repr__(self) -> str:
        if self.any_of:
            return f"guard({self.function!r}, any_of={self.any_of!r})"
        return f"guard({self.function!r}, {self.feature!r})"

    def validate(self, cat: Catalog) -> None:
        if self.function not in cat.functions:
            raise ValueError(f"route declares unknown function {self.function!r}")
        if self.any_of and self.feature is not None:
            raise ValueError("a route declares a feature or any_of features, not both")
        for feature in (self.feature, *self.any_of):
            if feature is not None and feature not in cat.functions[self.function].features:
                raise ValueError(
                    f"route declares unknown feature {feature!r} of function {self.function!r}"
                )
        self.public_hint = self.is_public(cat)

    def is_public(self, cat: Catalog) -> bool:
        f = cat.functions[self.function]
        if self.any_of:
            return f.public and all(f.features[x].public for x in self.any_of)
        if self.feature is None:
            return f.public
        return f.public and f.features[self.feature].public

    async def __call__(self, conn: HTTPConnection, rt: RuntimeDep, s: DbDep) -> Allowed:
        if self.is_public(catalog_of(rt)):
            return Allowed(self.function, self.feature, None)
        caller = await current_caller(conn, rt, s)
        subject = conn.path_params.get(self.about) if self.about is not None else None
        first: Problem | None = None
        for feature in self.any_of or (self.feature,):
            try:
                return await admit(
                    s,
                    rt,
                    caller,
                    self.function,
                    feature,
                    subject=subject if isinstance(subject, str) else None,
                    trackers=self.trackers,
                )
            except Problem as exc:
                first = first or exc
        assert first is not None
        raise first


def guard(
    function: str,
    feature: str | None = None,
    *,
    about: str | None = None,
    trackers: bool = False,
    any_of: tuple[str, ...] = (),
) -> Any:
    """A FastAPI dependency declaring the function a route performs.

    ``about`` names the path parameter holding the account the data is about;
    ``trackers`` lets tracker credentials (sessions of kind ``tracker``) call it;
    ``any_of`` names the features of a route that serves several: the caller
    must be admitted for one, and the handler admits each one it uses.
    """
    return Depends(Guard(function, feature, about=about, trackers=trackers, any_of=any_of))


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
