"""JsonModelRoute validates a JSON body straight from its bytes; for every body a
client may send it must answer exactly what an ordinary route answers."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kares.deps import JsonModelRoute, read_body
from kares.errors import install_handlers

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    t: AwareDatetime
    lat: float | None = None
    name: str | None = Field(default=None, max_length=5)


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Item] = Field(min_length=1, max_length=3)


seen: list[str] = []


def _shown(body: Batch) -> dict[str, object]:
    return {
        "n": len(body.items),
        "t": [i.t.isoformat() for i in body.items],
        "lat": [i.lat for i in body.items],
        "name": [i.name for i in body.items],
    }


def _reader(raw: bytes) -> dict[str, object]:
    # narrower than the model: strict (no "1.5" for a number), the rest goes its way
    return _shown(Batch.model_validate_json(raw, strict=True))


def _app() -> FastAPI:
    app = FastAPI()
    install_handlers(app)  # the answers Kares gives: problem documents with stable codes
    router = APIRouter()

    async def echo(body: Batch) -> dict[str, object]:
        seen.append(type(body).__name__)
        return _shown(body)

    async def echo_read(body: Batch, request: Request) -> dict[str, object]:
        got = read_body(request)
        seen.append("reader" if got is not None else type(body).__name__)
        return got if got is not None else _shown(body)

    router.add_api_route("/plain", echo, methods=["POST"])
    router.add_api_route("/fast", echo, methods=["POST"], route_class_override=JsonModelRoute)
    router.add_api_route(
        "/read",
        echo_read,
        methods=["POST"],
        route_class_override=JsonModelRoute.reading(_reader),
    )
    app.include_router(router)
    return app


BODIES = [
    b'{"items":[{"t":"2026-12-06T01:00:00Z","lat":1,"name":"  ab  "}]}',
    b'{"items":[{"t":"2026-12-06T01:00:00+08:00","lat":"1.5"}]}',
    b'{"items":[{"t":"2026-12-06T01:00:00","lat":1}]}',  # no zone
    b'{"items":[{"t":"nope"}]}',
    b'{"items":[{"t":"2026-12-06T01:00:00Z","extra":1}]}',
    b'{"items":[{"t":"2026-12-06T01:00:00Z","name":"toolongname"}]}',
    b'{"items":[]}',
    b'{"items":[',
    b"[1]",
    b"null",
    b'{"items":[{"t":1733446800}]}',
    b'{"items":[{"t":"2026-12-06T01:00:00Z","lat":true}]}',
    b"",
    b'{"items":' + b"[" * 50_000,  # too deep for json.loads: a 400, not a 500
]


@pytest.mark.parametrize("body", BODIES)
async def test_a_fast_route_answers_as_an_ordinary_one(body: bytes) -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        headers = {"content-type": "application/json"}
        plain = await c.post("/plain", content=body, headers=headers)
        fast = await c.post("/fast", content=body, headers=headers)
        read = await c.post("/read", content=body, headers=headers)
    assert (fast.status_code, fast.json()) == (plain.status_code, plain.json())
    assert (read.status_code, read.json()) == (plain.status_code, plain.json())


async def test_a_reader_takes_what_it_can_and_leaves_the_rest_to_the_model() -> None:
    transport = httpx.ASGITransport(app=_app())
    seen.clear()
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        taken = await c.post("/read", json={"items": [{"t": "2026-12-06T01:00:00Z", "lat": 2}]})
        left = await c.post("/read", json={"items": [{"t": "2026-12-06T01:00:00Z", "lat": "2"}]})
    assert (taken.status_code, left.status_code) == (200, 200)
    assert taken.json()["lat"] == left.json()["lat"] == [2.0]
    assert seen == ["reader", "Batch"]


async def test_a_valid_body_is_validated_from_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from_bytes: list[bytes] = []
    real = Batch.model_validate_json

    def counted(raw: bytes) -> Batch:
        from_bytes.append(raw)
        return real(raw)

    monkeypatch.setattr(Batch, "model_validate_json", counted)
    transport = httpx.ASGITransport(app=_app())
    seen.clear()
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/fast", json={"items": [{"t": "2026-12-06T01:00:00Z", "lat": 2.5}]})
    assert r.status_code == 200
    assert r.json()["t"] == [datetime.fromisoformat("2026-12-06T01:00:00+00:00").isoformat()]
    assert seen == ["Batch"]
    assert len(from_bytes) == 1  # pydantic's JSON parser, not json.loads


def test_only_a_route_with_one_model_body_takes_the_fast_path() -> None:
    async def no_body() -> dict[str, str]:
        return {}

    route = JsonModelRoute("/x", no_body, methods=["GET"])
    assert route.body_field is None  # nothing to parse: the ordinary handler
