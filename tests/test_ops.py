"""Liveness, readiness, OpenAPI and the error format."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kares import migrations
from tests.support.asgi import http_scope


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_readyz_reports_current_migration(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["migration"] == migrations.head_revision() == body["expected_migration"]


async def test_readyz_not_ready_when_migrations_behind(client: httpx.AsyncClient, db) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["status"] == "not_ready"
        assert r.json()["migration"] == "older"
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE alembic_version SET version_num = :v"),
                {"v": migrations.head_revision()},
            )


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found"


async def test_wrong_method_is_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.delete("/healthz")
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"


async def test_openapi_documents_every_route_with_shapes_and_errors(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "ProblemDoc" in spec["components"]["schemas"]
    paths = spec["paths"]
    assert "/api/v1/auth/sms/send" in paths
    for path, ops in paths.items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok, f"{where} documents no success response"
            if path.startswith("/api/"):
                errors = [c for c in op["responses"] if c[0] in "45"]
                assert errors, f"{where} documents no error responses"
                for c in errors:
                    content = op["responses"][c].get("content", {})
                    assert "application/problem+json" in content, f"{where} {c} is not a problem"
                    assert "code:" in op["responses"][c]["description"]
            if "requestBody" in op:
                assert op["requestBody"]["content"], f"{where} has no request schema"


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b"{}", b'{"phone": 5}', b"\xff\xfe"])
async def test_odd_bodies_get_4xx(client: httpx.AsyncClient, body: bytes) -> None:
    r = await client.post(
        "/api/v1/auth/sms/send", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["code"] in ("request.invalid", "request.malformed_json")


async def test_oversize_json_body_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/sms/send",
        content=b'{"phone": "' + b"1" * (2 * 1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["code"] == "request.too_large"


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/api/v1/devices/%00", None),
        ("GET", "/api/v1/notifications?before=a%00b", None),
        ("POST", "/api/v1/auth/sms/send", b'{"phone": "138\\u00001234"}'),
        ("POST", "/api/v1/sos", b'{"note": "help\\u0000"}'),
    ],
)
async def test_nul_characters_are_refused_before_any_database_sees_them(
    client: httpx.AsyncClient, method: str, url: str, body: bytes | None
) -> None:
    r = await client.request(
        method, url, content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "request.nul_character"


@pytest.mark.parametrize(
    "path",
    [
        "/owntracks",  # a route that reads its own body
        "/api/v1/location/fixes",  # validated from the raw bytes (JsonModelRoute)
        "/api/v1/families",  # an ordinary route: FastAPI reads the body
    ],
)
async def test_a_client_that_goes_away_mid_request_is_one_info_line(
    app: Any, client: httpx.AsyncClient, sms: Any, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """A phone that loses its signal half-way through an upload is not an error of
    ours: no traceback, no ERROR line to bury the real ones, and no exception out
    of the app for the server to log again."""
    from tests.test_location_ingest import member

    me = await member(client, sms, "+8613700009901")
    messages = [
        {"type": "http.request", "body": b'{"_type": "location", "lat": 3', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(
        "POST",
        path,
        [
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {me['token']}".encode()),
        ],
    )
    with caplog.at_level(logging.INFO):
        await app(scope, receive, send)  # raises nothing
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO and not gone[0].exc_info


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1"]),
        ("10.0.0.0/8, 192.168.0.0/16", ["10.0.0.0/8", "192.168.0.0/16"]),
        ('["10.0.0.0/8"]', ["10.0.0.0/8"]),
        ("", []),
    ],
)
def test_list_settings_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    """README says KARES_TRUSTED_PROXIES takes CIDRs: a plain comma list is read, not
    taken for JSON (which stopped the server at start)."""
    from kares.config import Settings

    monkeypatch.setenv("KARES_TRUSTED_PROXIES", value)
    monkeypatch.setenv("KARES_WEBPUSH_HOSTS", value or "x.example")
    s = Settings()
    assert s.trusted_proxies == expected
    assert s.webpush_hosts == (expected or ["x.example"])
