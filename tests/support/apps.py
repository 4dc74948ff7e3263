"""The app under test, built once per distinct settings and started afresh for each test.

Building the app (``create_app``: the routers, FastAPI's models for every
route, the guard's start-up check of every route) costs about a quarter of a
second, more than most tests take. The app object itself keeps nothing from one
run of its lifespan to the next: what a request reaches (database engine,
HTTP clients, push providers, password hasher, settings) hangs off
``app.state.runtime``, which the lifespan builds anew for each test.

So a test session keeps the last few apps it built, keyed by their settings
(every test's database has the same URL: see ``databases.py``). A test whose
settings equal an earlier one's gets that app with a new ``app.state``, and
runs its own lifespan; everything else is as if it were new. An app whose test
changed it (its routes, middleware, dependency overrides, or the settings
object it was built with) is dropped, never handed on.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import State

from kares.app import create_app
from kares.config import Settings


def _key(settings: Settings) -> str:
    return settings.model_dump_json()


def _shape(app: FastAPI) -> tuple[int, int, int]:
    return (len(app.router.routes), len(app.user_middleware), len(app.dependency_overrides))


@dataclass
class _Built:
    settings: Settings
    app: FastAPI
    shape: tuple[int, int, int]


class Apps:
    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._built: OrderedDict[str, _Built] = OrderedDict()

    def _get(self, key: str) -> _Built | None:
        built = self._built.get(key)
        if built is None:
            return None
        if _key(built.settings) != key or _shape(built.app) != built.shape:
            del self._built[key]  # changed behind our back
            return None
        self._built.move_to_end(key)
        return built

    def settings(self, settings: Settings) -> Settings:
        """The settings object an equal app was built with, else ``settings``."""
        built = self._get(_key(settings))
        return built.settings if built is not None else settings

    def app(self, settings: Settings) -> FastAPI:
        key = _key(settings)
        built = self._get(key)
        if built is not None and built.settings is settings:
            built.app.state = State()
            built.app.openapi_schema = None
            return built.app
        app = create_app(settings, migrate_embedded=False)
        self._built[key] = _Built(settings, app, _shape(app))
        while len(self._built) > self.keep:
            self._built.popitem(last=False)
        return app

    def done(self, app: Any) -> None:
        """After the test: drop the app if the test changed it."""
        for key, built in list(self._built.items()):
            if built.app is app and (_key(built.settings) != key or _shape(app) != built.shape):
                del self._built[key]
