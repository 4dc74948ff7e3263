"""No request body, header or query of any shape gets a 5xx, nor a status or
code the OpenAPI document does not list for its route (property test).

Hypothesis builds requests for every route in the OpenAPI document: random
path parameters (or the caller's own ids), query strings, headers and JSON
bodies (shaped by the route's own schema so that they get past validation
into the handler, well-formed but ill-typed, and not JSON at all), with and
without a valid token. Any status from 500 to 599 fails, and so does an
exception escaping the app (the test transport re-raises it); so does a
refusal whose status and code the route's OpenAPI operation does not list.
"""

from __future__ import annotations

import json
import re
from datetime import UTC
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kares import clock
from tests.conftest import sign_up
from tests.support.tiers import examples

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

FIELD_NAMES = [
    "phone",
    "code",
    "client",
    "device",
    "password",
    "new_password",
    "current_password",
    "name",
    "id_token",
    "nonce",
    "link_ticket",
    "model",
    "id",
    "fixes",
    "t",
    "lat",
    "lon",
    "_type",
    "tst",
    "locations",
    "radius_m",
    "kind",
]


def from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """Values shaped by an OpenAPI (JSON Schema) schema: the right types, enum
    members and bounds, random contents."""
    if depth > 5:
        return st.none()
    deeper = depth + 1
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[-1]], components, deeper)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(sub, components, deeper) for sub in schema[key]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
        if fmt == "date":
            return st.dates().map(lambda d: d.isoformat())
        low = schema.get("minLength", 0)
        return st.text(min_size=low, max_size=max(low, min(schema.get("maxLength", 40), 40)))
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        exact = st.integers(min_value=low, max_value=high)
        if kind == "integer":
            return exact | st.integers()
        return exact | st.floats(min_value=low, max_value=high, allow_nan=False) | st.floats()
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, deeper), max_size=3)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, components, deeper) for k, v in props.items() if k in required},
            optional={
                k: from_schema(v, components, deeper) for k, v in props.items() if k not in required
            },
        )
    return json_values


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["json", "object", "raw"]))
    if kind == "raw":
        return bytes(draw(st.binary(max_size=200)))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    obj = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=5))
    return json.dumps(obj).encode()


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


class Route:
    def __init__(self, method: str, path: str, op: dict[str, Any], components: Any) -> None:
        self.method = method
        self.path = path
        self.responses = op.get("responses", {})
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        self.body = from_schema(schema["schema"], components) if "schema" in schema else None
        self.query = {
            p["name"]: from_schema(p.get("schema", {}), components).map(as_query)
            for p in op.get("parameters", [])
            if p["in"] == "query"
        }


def as_query(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value).strip('"')


@pytest.fixture
def routes(app: Any) -> list[Route]:
    spec = app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    return [
        Route(m.upper(), p, op, components)
        for p, ops in spec["paths"].items()
        for m, op in ops.items()
    ]


@settings(
    max_examples=examples(400),  # all on PostgreSQL, a quarter on SQLite
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_request_gets_a_5xx(
    client: httpx.AsyncClient, sms: Any, routes: list[Route], data: Any
) -> None:
    me = getattr(client, "_fuzz_me", None)
    if me is None:  # first, or an earlier request signed out or deleted the account
        clock.advance(3600)  # past the hourly caps on SMS codes
        n = client._fuzz_n = getattr(client, "_fuzz_n", 0) + 1  # type: ignore[attr-defined]
        me = client._fuzz_me = await sign_up(client, sms, f"+86139{n:08d}")  # type: ignore[attr-defined]
    route = data.draw(st.sampled_from(routes))
    method = route.method
    own_ids = st.sampled_from([me["account"]["id"], me["device_id"]])
    path = re.sub(
        r"\{[^}]+\}",
        lambda _m: data.draw(
            own_ids | st.text(alphabet="abcdef0123456789-_.%", min_size=1, max_size=40)
        ),
        route.path,
    )
    headers: dict[str, str] = {}
    auth = data.draw(st.sampled_from(["none", "valid", "valid", "garbage", "cookie"]))
    if auth == "valid":
        headers["Authorization"] = f"Bearer {me['token']}"
    elif auth == "garbage":
        headers["Authorization"] = data.draw(header_text)
    elif auth == "cookie":
        headers["Cookie"] = "kares_session=" + data.draw(header_text).replace(";", "")
    headers["Content-Type"] = data.draw(
        st.sampled_from(
            [
                "application/json",
                "text/plain",
                "multipart/form-data",
                "multipart/form-data; boundary=x",
                "application/x-www-form-urlencoded",
                "",
            ]
        )
    )
    if data.draw(st.booleans()):
        headers["X-Forwarded-For"] = data.draw(header_text)
    params = data.draw(
        st.dictionaries(
            st.sampled_from(
                ["limit", "before", "include_current", "lang", "x", "from", "to", "raw", "cursor"]
            ),
            header_text,
            max_size=3,
        )
    )
    if route.query:
        params.update(data.draw(st.fixed_dictionaries({}, optional=route.query)))
    if path == "/api/v1/location/stream":
        # an event stream lasts until the client leaves; the in-memory transport
        # waits for the whole response, so this one is told to end soon
        params["max_seconds"] = "0.2"
    body = b""
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        if route.body is not None and data.draw(st.booleans()):
            # shaped by the route's schema, sent as JSON: this gets into the handler
            body = json.dumps(data.draw(route.body)).encode()
            headers["Content-Type"] = "application/json"
        else:
            body = data.draw(bodies())
    r = await client.request(method, path, headers=headers, params=params, content=body)
    assert r.status_code < 500, (
        f"5xx: {method} {path} params={params} headers={headers} body={body[:300]!r} "
        f"-> {r.status_code}: {r.text[:300]}"
    )
    if auth == "valid" and r.status_code == 401:
        client._fuzz_me = None  # type: ignore[attr-defined]
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
        code = r.json()["code"]
        assert code
        # the OpenAPI document lists every status and code a route answers (a path
        # the random ids made unroutable is answered by the router, not the route)
        sent = r.request.url.path  # as the client sent it: "." and ".." segments resolved
        template = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(route.path))
        if not re.fullmatch(template, sent):
            return  # the random ids made it another path: the router answered, not the route
        documented = route.responses.get(str(r.status_code))
        assert documented is not None, f"{method} {route.path}: undocumented {r.status_code} {code}"
        schema = documented["content"]["application/problem+json"]["schema"]
        assert code in schema["properties"]["code"]["enum"], (
            f"{method} {route.path}: {r.status_code} {code} is not in the document"
        )
