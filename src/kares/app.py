"""Builds the ASGI app: settings -> runtime -> routers, error handlers, middleware."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kares import __version__, domains, jobs, live, livebus, migrations, openapi
from kares.accounts import api as accounts_api
from kares.config import Settings, get_settings
from kares.deps import RequestSessions
from kares.devices import api as devices_api
from kares.errors import NUL_CODE, NUL_DETAIL, install_handlers, problem_response
from kares.families import api as families_api
from kares.health import alerts_api as health_alerts_api
from kares.health import api as health_api
from kares.health import family_api as health_family_api
from kares.lanes import Declined, Lanes
from kares.location import api as location_api
from kares.logs import AccessLog, setup_logging
from kares.media import api as media_api
from kares.messaging import api as messaging_api
from kares.notify import api as notify_api
from kares.privacy import api as privacy_api
from kares.privacy import catalog, consent_api, guard
from kares.privacy import service as privacy
from kares.protocols import applehealth_import, healthfhir, overland, owntracks, trackfiles, ws
from kares.protocols.caldav import api as caldav_api
from kares.protocols.caldav import dav as caldav_dav
from kares.protocols.matrix import api as matrix_api
from kares.protocols.watch.server import WatchServer
from kares.rights import erase_api
from kares.rights import export_api as rights_export_api
from kares.rights import staff_api as rights_staff_api
from kares.runtime import Runtime
from kares.schedule import api as schedule_api
from kares.schedule import reminders_api as schedule_reminders_api
from kares.sos import api as sos_api
from kares.watches import api as watches_api

log = logging.getLogger("kares.app")

JSON_BODY_LIMIT = 1024 * 1024
# Image uploads: the avatar, a family's group photo, a chat's images and voice notes
# (capped at KARES_VOICE_MAX_BYTES, below the image cap).
UPLOAD_PATH = re.compile(
    r"^(/api/v1/(me/avatar|families/[^/]+/photo|messaging/attachments)|/_matrix/media/v3/upload)$"
)
# GPX / GeoJSON route files: larger than JSON bodies, checked point by point
IMPORT_PATH = "/api/v1/location/import"
IMPORT_BODY_LIMIT = 32 * 1024 * 1024
# Apple Health exports (kares.protocols.applehealth_import): streamed to a file,
# capped at KARES_HEALTH_IMPORT_MAX_BYTES
HEALTH_IMPORT_PATH = "/api/v1/health/imports"


class BodyLimit:
    """Refuses request bodies over a limit with 413, before or while they stream in,
    and NUL characters in a path, query or JSON body with 400 (no database stores
    them in text, and none of our text needs them).

    JSON bodies are capped at 1 MiB; image uploads at the image cap plus room
    for the multipart envelope.
    """

    def __init__(self, app: ASGIApp, upload_limit: int, health_import_limit: int = 0) -> None:
        self.app = app
        self.upload_limit = upload_limit
        self.health_import_limit = health_import_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = bool(UPLOAD_PATH.match(scope["path"]))
        limit = self.upload_limit if upload else JSON_BODY_LIMIT
        if scope["path"] == IMPORT_PATH:
            limit = IMPORT_BODY_LIMIT
        elif scope["path"] == HEALTH_IMPORT_PATH:
            upload, limit = True, self.health_import_limit
        elif scope["path"] == healthfhir.PATH:
            limit = healthfhir.BODY_LIMIT
        elif caldav_api.IMPORT_PATH.match(scope["path"]):
            limit = caldav_api.IMPORT_BODY_LIMIT
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        query = scope.get("query_string", b"")
        if b"\x00" in raw_path or b"%00" in raw_path or b"\x00" in query or b"%00" in query:
            await problem_response(400, NUL_CODE, NUL_DETAIL)(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    resp = problem_response(
                        413,
                        "request.too_large",
                        f"Request bodies here may be at most {limit} bytes.",
                    )
                    await resp(scope, receive, send)
                    return
        seen = 0
        tail = b""

        async def limited() -> Message:
            nonlocal seen, tail
            msg = await receive()
            if msg["type"] == "http.request":
                chunk = msg.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    raise StarletteHTTPException(
                        413, f"Request bodies here may be at most {limit} bytes."
                    )
                if not upload:
                    window = tail + chunk
                    if b"\\u0000" in window or b"\x00" in chunk:
                        raise StarletteHTTPException(400, NUL_DETAIL)
                    tail = window[-5:]
            return msg

        await self.app(scope, limited, send)


_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_NO_STORE = ((b"cache-control", b"no-store"),)


class SecurityHeaders:
    """Adds the security headers to every response (and ``Cache-Control: no-store``
    under /api/), unless the route set them: a plain ASGI middleware, so a request
    pays for a header list and nothing more."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _SECURITY_HEADERS + (_NO_STORE if scope["path"].startswith("/api/") else ())

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                have = {name.lower() for name, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in have)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class KaresApp(FastAPI):
    """The FastAPI app, with the lanes served in front of its middleware and the
    access log written here (``kares serve`` turns uvicorn's off).

    A lane's request (``kares.lanes``) never enters the framework's stack; every
    other request goes through it unchanged, its access line written when its
    answer starts, as uvicorn writes it."""

    lanes: Lanes
    access: AccessLog

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if live.fanout_writes.matches(scope["method"], scope["path"]):
            await live.hub.admit()  # before any session: the wait holds nothing
        lane = self.lanes.get(scope)
        if lane is not None:
            scope["app"] = self
            served = await self.lanes.serve(lane, scope, receive, send)
            if not isinstance(served, Declined):
                self.access.lane(scope, served)
                return
            receive = served.receive(receive)  # the route answers, with the body read
        line = self.access.line

        async def logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                line(scope, message["status"])
            await send(message)

        await super().__call__(scope, receive, logged)


class Health(BaseModel):
    status: str
    version: str


class Ready(BaseModel):
    status: str
    database: str
    migration: str | None
    expected_migration: str


def create_app(settings: Settings | None = None, *, migrate_embedded: bool = True) -> FastAPI:
    settings = settings or get_settings()
    assert domains.metadata.tables, "every domain registers its tables on import"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.build(settings)
        worker = watches = bridge = None
        try:
            # a start that fails (a bad catalog, a database not migrated) still
            # closes the pool and the clients it opened
            if migrate_embedded and settings.is_embedded_db:
                await anyio.to_thread.run_sync(migrations.upgrade, settings.effective_database_url)
            await privacy.sync_at_start(rt)
            app.state.runtime = rt
            # hub notices and presence between processes, with KARES_REDIS_URL
            bridge = await livebus.attach(settings.redis_url, settings.live_catchup_seconds)
            worker = jobs.Worker(rt).start() if settings.jobs_worker_enabled else None
            if settings.watch_port:
                watches = WatchServer(rt)
                app.state.watch_port = await watches.start(settings.watch_host, settings.watch_port)
            yield
        finally:
            if watches is not None:
                await watches.stop()
            if worker is not None:
                await worker.stop()
            await livebus.detach(bridge)
            await rt.close()

    app = KaresApp(
        title="Kares API",
        version=__version__,
        description="The Kares family-care service. Errors are application/problem+json "
        "(RFC 9457) with a stable `code`.",
        lifespan=lifespan,
        # /docs is served from the installed Swagger UI files (openapi.install_docs);
        # FastAPI's own pages load theirs from a CDN
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {
                "name": "accounts",
                "description": "Registration, sign-in, sessions (policy 1.1, 1.4)",
            },
            {
                "name": "notifications",
                "description": "The in-app inbox, push channels and preferences (policy 1.6.1)",
            },
            {"name": "media", "description": "Uploaded images"},
            {
                "name": "location",
                "description": "Location uploads (apps, OwnTracks, Overland, watches), the "
                "family map, tracks, timelines and places (policy 1.3)",
            },
            {"name": "ops", "description": "Liveness and readiness"},
        ],
    )
    install_handlers(app)
    # what devices post all day, served in front of the framework (kares.lanes)
    app.lanes = Lanes(
        {**owntracks.LANES, **messaging_api.LANES, **matrix_api.LANES},
        limit=JSON_BODY_LIMIT,
        headers=list(_SECURITY_HEADERS),
    )
    app.access = AccessLog()
    app.add_middleware(RequestSessions)
    app.add_middleware(
        BodyLimit,
        upload_limit=settings.image_max_bytes + 64 * 1024,
        health_import_limit=settings.health_import_max_bytes,
    )

    app.add_middleware(SecurityHeaders)

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["ops"],
        summary="The process is up",
        dependencies=[guard.guard("operations")],
    )
    async def healthz() -> Health:
        return Health(status="ok", version=__version__)

    @app.get(
        "/readyz",
        dependencies=[guard.guard("operations")],
        response_model=Ready,
        tags=["ops"],
        summary="The database is reachable and its migrations are current",
        responses={503: {"model": Ready, "description": "Not ready"}},
    )
    async def readyz() -> Any:
        rt: Runtime = app.state.runtime
        expected = migrations.head_revision()
        try:
            current = await migrations.current_revision(rt.db.engine)
            db = "ok"
        except Exception as exc:  # unreachable database
            log.warning("readiness: database unreachable: %s", type(exc).__name__)
            current, db = None, "unreachable"
        ready = db == "ok" and current == expected
        body = Ready(
            status="ready" if ready else "not_ready",
            database=db,
            migration=current,
            expected_migration=expected,
        )
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    # Routes are matched in order, one by one: what devices call all day (location
    # uploads) first. The Matrix client API's routers match only /_matrix paths and
    # say no to any other at once (docs/MESSAGING.md); its catch-all after it.
    app.include_router(matrix_api.router)
    app.include_router(matrix_api.fallback)
    app.include_router(owntracks.router)
    app.include_router(overland.router)
    app.include_router(location_api.router)
    app.include_router(trackfiles.router)
    app.include_router(accounts_api.router)
    app.include_router(notify_api.router)
    app.include_router(media_api.router)
    app.include_router(privacy_api.router)
    app.include_router(consent_api.router)
    app.include_router(rights_export_api.router)
    app.include_router(rights_staff_api.router)
    app.include_router(devices_api.router)
    app.include_router(watches_api.router)
    app.include_router(families_api.router)
    app.include_router(sos_api.router)
    app.include_router(health_api.router)
    app.include_router(applehealth_import.router)
    app.include_router(healthfhir.router)
    app.include_router(health_family_api.router)
    app.include_router(health_alerts_api.router)
    app.include_router(schedule_api.router)
    app.include_router(schedule_reminders_api.router)
    app.include_router(messaging_api.router)
    app.include_router(erase_api.router)
    # CalDAV (docs/CALDAV.md): app passwords, subscriptions, ICS under /api/v1, and
    # the WebDAV methods at /dav and /.well-known/caldav (a plain ASGI app)
    app.include_router(caldav_api.router)
    caldav_dav.mount(app)
    # the one WebSocket of a device (docs/MESSAGING.md)
    app.include_router(ws.router)
    # Every route's declared function must be in the catalog: checked here, so
    # a bad declaration stops the service from starting.
    guard.check_routes(app, catalog.load(settings.privacy_catalog))
    guard.document_routes(app)
    openapi.install(app)
    openapi.install_docs(app)

    return app


def worker_app() -> FastAPI:
    """One process of ``kares serve --workers N`` (uvicorn calls it in each): the
    database was migrated and the policy published before they started."""
    import gc

    settings = get_settings()
    _factory_logging(settings.log_level)
    app = create_app(settings, migrate_embedded=False)
    gc.freeze()  # as kares serve does: what start-up built stays out of full passes
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory kares.app:app_factory`` (with
    ``--no-access-log --http kares.httpserver:HttpProtocol``, as ``kares serve``
    runs it: the app writes the access log)."""
    settings = get_settings()
    _factory_logging(settings.log_level)
    return create_app(settings)


def _factory_logging(level: str) -> None:
    """Logging in a process uvicorn made: set up after uvicorn's own (which the
    set-up resets), so uvicorn's access logger is silenced again here: the app
    writes the access log (kares.logs.AccessLog), one line per request."""
    setup_logging(level)
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers = []
    uvicorn_access.propagate = False
