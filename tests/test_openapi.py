"""The OpenAPI document is the truth: what every route can answer is listed (status
and stable code), the schemas say what the code refuses, OPTIONS answers name the
path's real methods, and /docs works without the internet."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx

from kares.openapi import NO_NUL
from tests.conftest import bearer, sign_up


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def documented_codes(op: dict[str, Any], status: int) -> list[str]:
    """The codes an operation lists for a status (the enum on the problem's code)."""
    response = op["responses"].get(str(status))
    if response is None:
        return []
    schema = response["content"]["application/problem+json"]["schema"]
    return list(schema["properties"]["code"]["enum"])


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "0", path)


async def test_every_operation_lists_the_refusals_every_route_can_give(app: Any) -> None:
    spec = app.openapi()
    for method, path, op in operations(spec):
        where = f"{method} {path}"
        assert "request.nul_character" in documented_codes(op, 400), where
        assert "request.invalid" in documented_codes(op, 422), where
        if "requestBody" in op:
            assert "request.bad" in documented_codes(op, 400), where
            assert "request.too_large" in documented_codes(op, 413), where
        for status, response in op["responses"].items():
            if 400 <= int(status) < 500:
                # problems only, each with the codes it can carry
                assert list(response["content"]) == ["application/problem+json"], where
                assert documented_codes(op, int(status)), (where, status)


async def test_strings_a_request_carries_say_they_refuse_nul(app: Any) -> None:
    spec = app.openapi()
    families = spec["paths"]["/api/v1/families"]["post"]
    ref = families["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"]["name"]
    # a name states its own rule (kares.fields.name_rule), which refuses NUL too
    assert "\\u0000-" in name["pattern"]
    phone = spec["components"]["schemas"]["SmsCodeRequest"]["properties"]["phone"]
    assert phone["pattern"] == NO_NUL
    for _method, _path, op in operations(spec):
        for param in op.get("parameters", []):
            schema = param["schema"]
            for s in [schema, *schema.get("anyOf", [])]:
                if s.get("type") == "string" and not ({"format", "enum"} & set(s)):
                    assert "pattern" in s, param


async def test_a_nul_character_gets_the_documented_400_and_changes_nothing(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    from tests.conftest import snapshot

    me = await sign_up(client, sms)
    spec = app.openapi()
    before = await snapshot(db)
    for method, path, body in [
        ("GET", "/api/v1/sos?status=a%00b", None),
        ("GET", "/api/v1/me/logins?x=%00", None),
        ("POST", "/api/v1/families", b'{"name": "a\\u0000b"}'),
        ("PATCH", "/api/v1/me", b'{"name": "\\u0000"}'),
    ]:
        r = await client.request(
            method,
            path,
            content=body,
            headers={**bearer(me["token"]), "content-type": "application/json"},
        )
        assert r.status_code == 400, r.text
        code = r.json()["code"]
        assert code == "request.nul_character"
        op = spec["paths"][path.split("?")[0]][method.lower()]
        assert code in documented_codes(op, 400)
    assert await snapshot(db) == before


async def test_options_and_other_methods_name_every_method_of_the_path(
    client: httpx.AsyncClient, app: Any
) -> None:
    spec = app.openapi()
    shapes = [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), {m.upper() for m in ops})
        for p, ops in spec["paths"].items()
    ]
    for path in spec["paths"]:
        # every documented operation on this path, including those of a templated
        # path it also matches (DELETE /me/identities/{provider} for .../wechat)
        methods = set().union(*(ms for shape, ms in shapes if shape.match(concrete(path))))
        for probe in ["OPTIONS", *sorted({"GET", "PUT", "POST", "DELETE", "PATCH"} - methods)]:
            r = await client.request(probe, concrete(path))
            assert r.status_code == 405, (probe, path, r.status_code)
            assert r.json()["code"] == "method_not_allowed"
            allow = {m.strip() for m in r.headers["allow"].split(",")}
            assert allow == methods, (probe, path)


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


async def test_docs_load_only_local_assets_and_each_answers(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = _Assets()
    page.feed(r.text)
    assert len(page.urls) >= 3  # the script, the stylesheet, the icon
    # the page's script loads the document from here too
    assert "url: '/openapi.json'" in r.text
    assert "//" not in r.text.replace("<!--", "").split("<script>")[-1].split("url:")[0]
    for url in page.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    js = next(u for u in page.urls if u.endswith(".js"))
    assert "javascript" in (await client.get(js)).headers["content-type"]
    assert "http" not in "".join(page.urls)
    assert (await client.get("/docs/oauth2-redirect")).status_code == 200
    assert (await client.get("/redoc")).status_code == 404  # it would need a CDN


async def test_routes_that_read_their_own_body_document_it(app: Any) -> None:
    spec = app.openapi()
    body = {
        p: spec["paths"][p]["post"]["requestBody"]["content"]
        for p in ("/owntracks", "/overland", "/api/v1/location/import")
    }
    fix = body["/owntracks"]["application/json"]["schema"]["anyOf"][0]
    assert set(fix["required"]) == {"_type", "lat", "lon", "tst"}
    batch = body["/overland"]["application/json"]["schema"]
    assert batch["required"] == ["locations"] and batch["properties"]["locations"]["maxItems"]
    assert set(body["/api/v1/location/import"]) == {"application/gpx+xml", "application/geo+json"}
    # every other route that takes a body declares it (those without take none)
    for method, path, op in operations(spec):
        if method in ("POST", "PUT", "PATCH") and "requestBody" not in op:
            assert path.endswith(
                (
                    "/nonce",
                    "/logout",
                    "/code",
                    "/read",
                    "/read-all",
                    "/acknowledge",
                    "/withdraw",
                    "/recall",
                )
            )


async def test_bounds_are_named_as_json_schema_names_them(app: Any) -> None:
    """A bound pydantic cannot draw through a union (``Count | None = Field(ge=0)``)
    is still stated, as minimum/maximum, never as pydantic's own ``ge``/``le``."""
    spec = app.openapi()
    battery = spec["components"]["schemas"]["SosRaise"]["properties"]["battery"]
    assert {"type": "integer", "minimum": 0, "maximum": 100} in battery["anyOf"]
    stray: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("integer", "number"):
                stray.extend(f"{where}.{k}" for k in ("ge", "le", "gt", "lt") if k in node)
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(spec, "")
    assert stray == []


async def test_a_templated_route_answers_at_a_literal_path_it_also_matches(
    client: httpx.AsyncClient, sms: Any
) -> None:
    """Why OPTIONS /watches/hello names DELETE (scripts/fuzz-baseline.json keeps
    schemathesis's Allow findings there): DELETE /watches/{watch_id} really answers
    at /watches/hello, and DELETE /me/identities/{provider} at .../wechat."""
    me = await sign_up(client, sms)
    for url in (
        "/api/v1/watches/hello",
        "/api/v1/watches/pair",
        "/api/v1/watches/me",
        "/api/v1/me/identities/wechat",
        "/api/v1/me/identities/apple",
    ):
        r = await client.delete(url, headers=bearer(me["token"]))
        assert r.status_code == 404 and r.json()["code"] != "method_not_allowed", (url, r.text)
