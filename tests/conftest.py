"""Test fixtures: a real database (SQLite by default, PostgreSQL with
``KARES_TEST_DB=postgresql``), the app driven through its HTTP API, and fake
outside services as real HTTP servers on loopback."""

from __future__ import annotations

import base64
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from kares import clock
from kares.config import Settings
from kares.db import make_engine
from kares.domains import metadata
from kares.privacy import catalog
from tests.support.apps import Apps
from tests.support.databases import Template, start_template, tier
from tests.support.fakes import FakeSmsGateway

pytest_plugins = [
    "tests.support.tiers",  # db_agnostic: which tests run on which database tier
    "tests.support.push_fakes",  # fake_apns, fake_fcm, fake_webpush, push_overrides
]

TEST_DATA_KEYS = "t1:" + base64.b64encode(b"k" * 32).decode()
TEST_INDEX_KEY = base64.b64encode(b"i" * 32).decode()


def pytest_report_header(config: pytest.Config) -> str:
    return f"kares database tier: {tier()}"


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    """The session's migrated template database (one per xdist worker)."""
    template = start_template(tmp_path_factory.mktemp("template"))
    yield template
    template.close()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture
async def db_url(database_template: Template, session_dir: Path) -> AsyncIterator[str]:
    """A fresh, migrated database of the tier's kind for this test alone (at the
    same URL for every test of the session)."""
    async with database_template.copy(session_dir) as url:
        yield url


@pytest.fixture
def var_dir(session_dir: Path) -> Path:
    """The app's ``var`` directory, empty for each test (at the same path for
    every test of the session)."""
    path = session_dir / "var"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


@pytest.fixture
def push_outbox(session_dir: Path) -> Path:
    """A file for the ``file`` push sink (``push_file``), absent at the start of each
    test; at the same path for every test of the session, so that tests whose
    settings name it still share one built app (tests/support/apps.py)."""
    path = session_dir / "pushes.jsonl"
    path.unlink(missing_ok=True)
    return path


@pytest.fixture(scope="session")
def sms_gateway() -> Iterator[FakeSmsGateway]:
    gw = FakeSmsGateway()
    yield gw
    gw.close()


@pytest.fixture
def sms(sms_gateway: FakeSmsGateway) -> FakeSmsGateway:
    sms_gateway.messages.clear()
    sms_gateway.requests.clear()
    sms_gateway.fail_with = None
    return sms_gateway


def make_settings(db_url: str, var_dir: Path, sms_url: str, **over: Any) -> Settings:
    base: dict[str, Any] = dict(
        env="test",
        var_dir=var_dir,
        database_url=db_url,
        data_keys=TEST_DATA_KEYS,
        index_key=TEST_INDEX_KEY,
        sms_sender="http",
        sms_http_url=sms_url + "/send",
        sms_http_token="sms-secret",
        argon2_time_cost=1,
        argon2_memory_cost_kib=1024,
        argon2_parallelism=1,
        trusted_proxies=["127.0.0.1"],
    )
    base.update(over)
    return Settings(**base)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture(scope="session")
def apps() -> Apps:
    return Apps()


@pytest.fixture
def settings(
    db_url: str,
    var_dir: Path,
    sms: FakeSmsGateway,
    settings_overrides: dict[str, Any],
    apps: Apps,
) -> Settings:
    return apps.settings(make_settings(db_url, var_dir, sms.base, **settings_overrides))


async def _wipe(db_url: str) -> None:
    """Empty every table. (Each test gets a database of its own from ``db_url``:
    this is for a test that starts over within itself.)"""
    engine = make_engine(db_url)
    async with engine.begin() as conn:
        names = [t.name for t in reversed(metadata.sorted_tables)]
        if conn.dialect.name == "postgresql":
            await conn.execute(text("TRUNCATE " + ", ".join(names) + " CASCADE"))
        else:
            # Consent receipts may only go with an account being deleted.
            await conn.execute(text("UPDATE accounts SET status = 'deleting'"))
            await conn.execute(text("DELETE FROM accounts"))
            for name in names:
                await conn.execute(text(f"DELETE FROM {name}"))
    await engine.dispose()


@pytest.fixture
async def app(settings: Settings, apps: Apps) -> AsyncIterator[Any]:
    """The app, started for this test: built for its settings, or reused from an
    earlier test with equal settings (see tests/support/apps.py)."""
    clock.reset()
    application = apps.app(settings)
    async with application.router.lifespan_context(application):
        yield application
    clock.reset()
    apps.done(application)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


@pytest.fixture
def db(app: Any) -> Any:
    """Direct database access for assertions about what is (not) stored."""
    return app.state.runtime.db


PHONE = "+8613812345678"
POLICY_VERSION = catalog.load().policy.version
# What a new account gives when it registers (ignored for existing numbers).
REGISTRATION = {"accept_policy": POLICY_VERSION, "age_bracket": "adult"}


async def sign_up(
    client: httpx.AsyncClient,
    sms: FakeSmsGateway,
    phone: str = PHONE,
    device: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Register (or sign in) through the public API; returns the SignedIn body."""
    r = await client.post("/api/v1/auth/sms/send", json={"phone": phone})
    assert r.status_code == 202, r.text
    code = sms.last_code(phone)
    body = {"phone": phone, "code": code, **REGISTRATION, **extra}
    if device is not None:
        body["device"] = device
    r = await client.post("/api/v1/auth/sms/verify", json=body)
    assert r.status_code in (200, 201), r.text
    clock.advance(61)  # past the resend cooldown, for the next code to this number
    return dict(r.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def query(db: Any, sql: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of a SELECT on the test's database, each as a dict."""
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def count_rows(db: Any, table: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


# Bookkeeping that any authenticated request may move (a session's "last seen"
# slides with use); it is not data a refused request could have changed.
VOLATILE = {"sessions": {"last_seen_at", "expires_at"}}


async def snapshot(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to assert that a refused request changed nothing."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with db.engine.connect() as conn:
        for t in metadata.sorted_tables:
            skip = VOLATILE.get(t.name, set())
            cols = [c for c in t.columns if c.name not in skip]
            rows = (await conn.execute(select(*cols))).all()
            out[t.name] = sorted((tuple(r) for r in rows), key=repr)
    return out
