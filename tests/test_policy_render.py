"""The readable policy, rendered from the catalog, covers the seed policy.

Driven through the public routes (no sign-in) and ``kares policy render``;
the seed policy in tests/data is the specification the rendering is
checked against, section by section.
"""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kares.domains import metadata
from kares.fields import PI_INFO_KEY
from kares.privacy import catalog
from tests.support import cli
from tests.test_cli import run_kares

SEED = Path(__file__).parent / "data" / "kares-privacy-policy.txt"
CAT = catalog.load()
CJK = re.compile(r"[\u4e00-\u9fff]")


def seed_sections() -> dict[str, str]:
    """Number -> heading of every numbered section of the seed policy.

    The seed numbers every top-level heading "1." (a lost list numbering):
    the first nine are its table of contents, in order, and the rest are the
    headings in the body (section 7 has none there); they are matched to
    the contents by their first three words.
    """
    text = SEED.read_text(encoding="utf-8")
    tops = re.findall(r"^\s*1\. (.+?)\s*$", text, re.M)
    toc, body = tops[:9], tops[9:]

    def key(title: str) -> str:
        return " ".join(title.lower().split()[:3])

    number = {key(t): str(i) for i, t in enumerate(toc, 1)}
    out = {str(i): t for i, t in enumerate(toc, 1)}
    for t in body:
        out[number[key(t)]] = t  # the body's own heading wins
    for num, title in re.findall(r"^\s*•\s+(\d+(?:\.\d+)+)\s+(.+?)\s*$", text, re.M):
        out[num] = title
    return out


def order(number: str) -> tuple[int, ...]:
    return tuple(int(p) for p in number.split("."))


def flatten(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in sections:
        out.append(s)
        out.extend(flatten(s["sections"]))
    return out


def blocks_of(doc: dict[str, Any], section_id: str) -> list[dict[str, Any]]:
    for s in flatten(doc["sections"]):
        if s["id"] == section_id:
            return list(s["blocks"])
    raise AssertionError(f"no section {section_id}")


def table(doc: dict[str, Any], table_id: str) -> dict[str, Any]:
    for s in flatten(doc["sections"]):
        for b in s["blocks"]:
            if b["type"] == "table" and b["id"] == table_id:
                return b
    raise AssertionError(f"no table {table_id}")


def cards(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in flatten(doc["sections"]):
        for b in s["blocks"]:
            if b["type"] == "card":
                assert b["id"] not in out, f"{b['id']} rendered twice"
                out[b["id"]] = b
    return out


def all_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False)


def page_text(body: str) -> str:
    """An HTML page's text with tags removed and entities decoded."""
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", body))


async def policy(client: httpx.AsyncClient, lang: str) -> dict[str, Any]:
    r = await client.get("/api/v1/privacy/policy", params={"lang": lang})
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- sections ------------------------------------------------------------------------


@pytest.mark.db_agnostic
def test_the_seed_is_read_whole() -> None:
    seed = seed_sections()
    assert [n for n in seed if "." not in n] == [str(i) for i in range(1, 10)]
    assert seed["1.6.1"] == "Device Permission Calls"
    assert seed["3"].endswith("the Third Parties We Access")
    assert len(seed) == 9 + 25


async def test_every_seed_section_is_rendered_in_order_in_english(
    client: httpx.AsyncClient,
) -> None:
    seed = seed_sections()
    doc = await policy(client, "en")
    rendered = {s["number"]: s for s in flatten(doc["sections"]) if s["number"]}
    for number, title in seed.items():
        assert number in rendered, f"section {number} {title!r} is missing"
        assert rendered[number]["title"].casefold() == title.casefold(), number
    numbers = [s["number"] for s in flatten(doc["sections"]) if s["number"]]
    assert numbers == sorted(seed, key=order), "sections are not in the seed's order"
    unnumbered = [s["title"] for s in doc["sections"] if s["number"] is None]
    assert unnumbered[:2] == ["Introduction", "Our Principles"]
    assert "Appendix: Definitions" in unnumbered
    assert "Appendix: Data Map" in unnumbered
    # The table of contents lists the nine parts, as the seed's does
    contents = [b for b in doc["sections"][0]["blocks"] if b["type"] == "contents"]
    assert [e["heading"] for e in contents[0]["entries"]] == [
        f"{n}. {rendered[str(n)]['title']}" for n in range(1, 10)
    ]
    for s in flatten(doc["sections"]):
        assert s["blocks"] or s["sections"], f"{s['heading']} is empty"


async def test_chinese_has_the_same_sections_in_chinese(client: httpx.AsyncClient) -> None:
    en = await policy(client, "en")
    zh = await policy(client, "zh")
    assert zh["lang"] == "zh" and zh["title"] == "Kares 隐私政策"
    en_secs, zh_secs = flatten(en["sections"]), flatten(zh["sections"])
    assert [s["id"] for s in zh_secs] == [s["id"] for s in en_secs]
    assert [s["number"] for s in zh_secs] == [s["number"] for s in en_secs]
    for e, z in zip(en_secs, zh_secs, strict=True):
        assert CJK.search(z["title"]), z["title"]
        assert z["title"] != e["title"]
        paragraphs = [b["text"] for b in z["blocks"] if b["type"] == "paragraph"]
        for p in paragraphs:
            assert CJK.search(p), f"{z['heading']}: paragraph not in Chinese: {p[:60]}"
    titles = {s["number"]: s["title"] for s in zh_secs if s["number"]}
    assert titles["1.6.1"] == "设备权限调用"
    assert titles["5"] == "您的权利"
    assert titles["9"] == "如何联系我们"


# --- the catalog in the text ------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_permission_table_is_the_catalogs_exactly(
    client: httpx.AsyncClient, lang: str
) -> None:
    doc = await policy(client, lang)
    t = table(doc, "permissions")
    assert len(t["columns"]) == 5
    closable = {True: {"en": "Yes", "zh": "是"}[lang], False: {"en": "No", "zh": "否"}[lang]}
    assert len(t["rows"]) == len(CAT.permissions)
    for row, p in zip(t["rows"], CAT.permissions.values(), strict=True):
        assert row[:3] == [p.name.get(lang), p.business.get(lang), p.method.get(lang)]
        assert row[3] == ("" if p.closable is None else closable[p.closable])
    r = await client.get("/privacy/policy", params={"lang": lang})
    text = htmllib.unescape(r.text)
    for p in CAT.permissions.values():
        assert f"<td>{p.business.get(lang)}</td>" in text
        assert f"<td>{p.method.get(lang)}</td>" in text


async def test_closing_a_permission_says_what_stops(client: httpx.AsyncClient) -> None:
    doc = await policy(client, "en")
    stops = {row[0]: row[4] for row in table(doc, "permissions")["rows"]}
    for key, p in CAT.permissions.items():
        needing = [
            (fk, name)
            for fk, f in CAT.functions.items()
            for name, feat in f.features.items()
            if key in feat.permissions or key in feat.any_permission
        ]
        cell = stops[p.name.en]
        if needing:
            assert len(cell.split("; ")) == len(needing), (key, cell)
        else:
            assert cell == "No function described in this policy depends on it"
    assert "Scanning a code to join a family" in stops["Camera"]
    # avatars can come from either the camera or the photos
    assert "Uploading an avatar (keeps working while Photos is allowed)" in stops["Camera"]


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_every_catalog_entry_appears(client: httpx.AsyncClient, lang: str) -> None:
    doc = await policy(client, lang)
    text = all_text(doc)
    r = await client.get("/privacy/policy", params={"lang": lang})
    page = page_text(r.text)
    for c in CAT.categories.values():
        assert c.name.get(lang) in text
        assert c.name.get(lang) in page
    for f in CAT.functions.values():
        assert f.name.get(lang) in page
        assert f.purpose.get(lang) in page
    for lb in CAT.legal_bases.values():
        if not lb.needs_consent:
            assert lb.name.get(lang) in page  # 1.5 and 3.4
    for name, cookie in CAT.cookies.items():
        assert name in page and cookie.purpose.get(lang) in page
    for sdk in CAT.sdks.values():
        for s in (sdk.name, sdk.company.get(lang), sdk.purpose.get(lang), sdk.data.get(lang)):
            assert s in page
        assert f'href="{sdk.privacy_url}"' in r.text
    for tp in CAT.third_parties.values():
        assert tp.name.get(lang) in page and tp.purpose.get(lang) in page
    for change in CAT.policy.changes:
        assert change.get(lang) in page
    assert CAT.policy.operator.get(lang) in page
    assert f'href="mailto:{CAT.policy.contact_email}"' in r.text
    days = CAT.policy.response_working_days
    rights = all_text({"b": blocks_of(doc, "s5-8")})
    contact = all_text({"b": blocks_of(doc, "s9")})
    if lang == "en":
        assert f"{days} working days" in rights and f"{days} working days" in contact
    else:
        assert f"{days} 个工作日" in rights and f"{days} 个工作日" in contact
    assert CAT.policy.contact_email in rights and CAT.policy.contact_email in contact


@pytest.mark.db_agnostic
def test_every_feature_has_a_readable_name_in_both_languages() -> None:
    # the catalog itself names them (a feature without a name does not load:
    # tests/test_catalog.py); each name is words, not its key, in both languages
    for fkey, f in CAT.functions.items():
        for name, feat in f.features.items():
            label = (feat.name.en, feat.name.zh)
            assert label[0] and CJK.search(label[1]), f"{fkey}.{name}: {label}"
            assert "_" not in label[0], f"{fkey}.{name}: {label}"


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_policy_shows_readable_names_only(client: httpx.AsyncClient, lang: str) -> None:
    """No internal label of the catalog reaches a reader: not a feature's key
    ("(wlan fix)", "(photo upload)") or a function's, in brackets or bare."""
    r = await client.get("/privacy/policy", params={"lang": lang})
    shown = [page_text(r.text), all_text(await policy(client, lang))]
    keys = {name for f in CAT.functions.values() for name in f.features}
    keys |= set(CAT.functions)
    for text in shown:
        for key in keys:
            for form in (key, key.replace("_", " ")):
                assert f"({form})" not in text and f"（{form}）" not in text, (key, lang)
    for key in keys:  # the JSON document names its entries by key; the page never
        if "_" in key:
            assert key not in shown[0], (key, lang)
    if lang == "en":
        assert "Finding your location from nearby Wi-Fi networks" in shown[0]
        assert "Setting a family's group photo" in shown[0]


async def test_each_function_has_its_purpose_basis_and_categories(
    client: httpx.AsyncClient,
) -> None:
    doc = await policy(client, "en")
    found = cards(doc)
    assert set(found) == {f"function-{k}" for k in CAT.functions}
    for key, f in CAT.functions.items():
        fields = {x["label"]: x["value"] for x in found[f"function-{key}"]["fields"]}
        assert fields["Purpose"] == f.purpose.en
        basis = CAT.legal_bases[f.legal_basis]
        assert fields["Legal basis"] == f"{basis.name.en} ({basis.article})"
        if not f.categories:
            assert fields["Personal information"] == "None"
            continue
        lines = fields["Personal information"]
        assert len(lines) == len(f.categories)
        for line, ckey in zip(lines, f.categories, strict=True):
            c = CAT.categories[ckey]
            assert line.startswith(c.name.en + " — ")
            assert ("separate consent" in line) == c.sensitive, line
            r = c.retention
            if r.days is not None:
                assert f"kept for {r.days} days from collection" in line
            else:
                assert "kept while your account exists" in line
    # the function sits in the section the catalog names
    assert "function-account" in {b.get("id") for b in blocks_of(doc, "s1-1")}
    assert "function-driving_tracks" in {b.get("id") for b in blocks_of(doc, "s1-3")}


async def test_retention_table_and_exceptions(client: httpx.AsyncClient) -> None:
    doc = await policy(client, "en")
    rows = {row[0]: row for row in table(doc, "retention")["rows"]}
    assert set(rows) == {c.name.en for c in CAT.categories.values()}
    for c in CAT.categories.values():
        kept = rows[c.name.en][2]
        if c.retention.days is None:
            assert kept == "While your account exists"
        else:
            assert kept == f"{c.retention.days} days from collection"
    no_consent = [lb for lb in CAT.legal_bases.values() if not lb.needs_consent]
    for sid in ("s1-5", "s3-4"):
        (items,) = [b for b in blocks_of(doc, sid) if b["type"] == "list"]
        assert len(items["items"]) == len(no_consent)
        for item, lb in zip(items["items"], no_consent, strict=True):
            assert item.startswith(f"{lb.name.en} ({lb.article})")


# --- the pages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "lang"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("zh-TW", "zh"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR", "en"),
        ("fr, zh;q=0.5, en;q=0.4", "zh"),
        ("en;q=0.2, zh;q=0.7", "zh"),
        ("zh;q=0, en", "en"),
        ("*", "en"),
        ("", "en"),
        ("@@;q=nonsense,,;", "en"),
    ],
)
async def test_html_language_follows_accept_language(
    client: httpx.AsyncClient, accept: str, lang: str
) -> None:
    r = await client.get("/privacy/policy", headers={"Accept-Language": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html_lang = {"en": "en", "zh": "zh-CN"}[lang]
    assert f'<html lang="{html_lang}">' in r.text
    assert r.headers["content-language"] == html_lang
    assert "Accept-Language" in r.headers["vary"]
    title = {"en": "Kares Privacy Policy", "zh": "Kares 隐私政策"}[lang]
    assert f"<h1>{title}</h1>" in r.text


async def test_lang_parameter_wins_and_unknown_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/privacy/policy", params={"lang": "en"}, headers={"Accept-Language": "zh-CN"}
    )
    assert '<html lang="en">' in r.text
    r = await client.get("/privacy/policy", params={"lang": "zh"})
    assert '<html lang="zh-CN">' in r.text
    assert "<h2>1. 我们收集的信息及相应的使用目的</h2>" in r.text
    for path in ("/privacy/policy", "/privacy/cookies", "/api/v1/privacy/policy"):
        r = await client.get(path, params={"lang": "fr"})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "request.invalid"


async def test_page_headings_and_safety_headers(client: httpx.AsyncClient) -> None:
    seed = seed_sections()
    r = await client.get("/privacy/policy", params={"lang": "en"})
    text = htmllib.unescape(r.text)
    for number, title in seed.items():
        heading = f"{number}. {title}" if "." not in number else f"{number} {title}"
        assert re.search(rf"<h\d>{re.escape(heading)}</h\d>", text, re.I), heading
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "<script" not in r.text


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_cookie_page(client: httpx.AsyncClient, lang: str) -> None:
    r = await client.get("/privacy/cookies", params={"lang": lang})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    text = page_text(r.text)
    for name, cookie in CAT.cookies.items():
        assert f"<td>{name}</td>" in r.text
        assert cookie.purpose.get(lang) in text
        days = {"en": f"{cookie.expires_days} days", "zh": f"{cookie.expires_days} 天"}[lang]
        assert days in text
    # only first-party cookies: no third party's name on the page (Baidu Tongji,
    # declared but never used, left the catalog in 2026-12-06)
    assert all(c.first_party for c in CAT.cookies.values())
    assert "Baidu" not in text and "百度" not in text
    assert f'href="/privacy/policy?lang={lang}#s2"' in r.text


async def test_public_without_sign_in_whatever_the_credentials(
    client: httpx.AsyncClient,
) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Cookie": "kares_session=x"}):
        for path in (
            "/privacy/policy",
            "/privacy/cookies",
            "/api/v1/privacy/policy",
            "/api/v1/privacy/data-map",
        ):
            r = await client.get(path, headers=headers)
            assert r.status_code == 200, (path, headers, r.text[:200])


@pytest.mark.db_agnostic
def test_catalog_text_cannot_inject_markup(tmp_path: Path) -> None:
    raw = yaml.safe_load(catalog.DEFAULT_PATH.read_text(encoding="utf-8"))
    fkey = next(iter(raw["functions"]))
    raw["functions"][fkey]["purpose"]["en"] = (
        "<script>alert(1)</script> & see https://x.test/a?b=1&c=2."
    )
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    r = cli.run("policy", "render", "--format", "html", "--catalog", str(path), env={})
    assert r.returncode == 0, r.stderr
    assert "<script>" not in r.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; see " in r.stdout
    assert '<a href="https://x.test/a?b=1&amp;c=2">https://x.test/a?b=1&amp;c=2</a>.' in r.stdout


# --- JSON ------------------------------------------------------------------------------


async def test_json_policy_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/privacy/policy", headers={"Accept-Language": "zh-CN"})
    assert r.status_code == 200
    assert r.headers["content-language"] == "zh-CN"
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    p = CAT.policy
    assert doc["version"] == p.version
    assert doc["date"] == p.date.isoformat() and doc["effective"] == p.effective.isoformat()
    assert doc["significant"] is p.significant
    assert doc["changes"] == [c.zh for c in p.changes]
    assert doc["contact_email"] == p.contact_email
    assert doc["response_working_days"] == p.response_working_days
    assert doc["catalog_digest"] == CAT.digest()
    assert doc["lang"] == "zh"
    for s in flatten(doc["sections"]):
        assert set(s) == {"id", "number", "title", "heading", "blocks", "sections"}
        for b in s["blocks"]:
            assert b["type"] in {"paragraph", "list", "table", "card", "contents"}
            if b["type"] == "table":
                assert all(len(row) == len(b["columns"]) for row in b["rows"])
    en = await policy(client, "en")
    assert en["changes"] == [c.en for c in p.changes]
    openapi = (await client.get("/openapi.json")).json()
    for path in (
        "/privacy/policy",
        "/privacy/cookies",
        "/api/v1/privacy/policy",
        "/api/v1/privacy/data-map",
    ):
        assert "422" in openapi["paths"][path]["get"]["responses"]


# --- the data map ----------------------------------------------------------------------


def declared_columns() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    personal, other = set(), set()
    for t in metadata.tables.values():
        for c in t.columns:
            if c.info.get(PI_INFO_KEY) is not None:
                personal.add((t.name, c.name))
            else:
                other.add((t.name, c.name))
    return personal, other


async def test_data_map(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/privacy/data-map")
    assert r.status_code == 200
    rows = r.json()
    by_col = {(row["table"], row["column"]): row for row in rows}
    assert len(by_col) == len(rows)
    phone = by_col[("accounts", "phone")]
    assert phone["category"] == "contact.phone"
    assert phone["category_name"] == "Phone number"
    assert phone["fides"] == "user.contact.phone_number"
    assert phone["sensitive"] is False
    assert "account" in phone["functions"]
    assert phone["functions"] == CAT.functions_using("contact.phone")
    assert phone["retention"] == {"days": None, "kept": "account", "then": "delete"}
    assert phone["encrypted_at_rest"] is True
    assert by_col[("accounts", "phone_hash")]["encrypted_at_rest"] is False
    personal, other = declared_columns()
    assert set(by_col) == personal
    assert not set(by_col) & other
    assert ("otp_challenges", "code_hash") in other  # not_personal(...)
    assert ("accounts", "id") in other  # no declaration
    for row in rows:
        c = CAT.categories[row["category"]]
        assert row["fides"] == c.fides and row["sensitive"] == c.sensitive
        assert row["retention"]["days"] == c.retention.days
    zh = (await client.get("/api/v1/privacy/data-map", params={"lang": "zh"})).json()
    assert {(x["table"], x["column"]): x for x in zh}[("accounts", "phone")][
        "category_name"
    ] == "手机号码"


async def test_data_map_is_in_the_policy(client: httpx.AsyncClient) -> None:
    doc = await policy(client, "en")
    t = table(doc, "data-map-table")
    personal, _ = declared_columns()
    assert {row[0] for row in t["rows"]} == {f"{a}.{b}" for a, b in personal}
    phone = next(row for row in t["rows"] if row[0] == "accounts.phone")
    assert phone[1:5] == [
        "Phone number",
        "No",
        "user.contact.phone_number",
        "Registration and account login",
    ]


# --- the command -----------------------------------------------------------------------


@pytest.mark.db_agnostic
def test_render_command_text_in_both_languages() -> None:
    seed = seed_sections()
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = run_kares("policy", "render", "--lang", "en", env={})
    assert r.returncode == 0, r.stderr
    lines = set(r.stdout.splitlines())
    for number, title in seed.items():
        heading = f"{number}. {title}" if "." not in number else f"{number} {title}"
        if len(heading) <= 78:  # longer headings wrap
            assert any(line.casefold() == heading.casefold() for line in lines), heading
    flat = " ".join(r.stdout.split())
    for p in CAT.permissions.values():
        assert " ".join(p.method.en.split()) in flat
    assert all(len(line) <= 78 or " " not in line.strip() for line in r.stdout.splitlines())

    r = cli.run("policy", "render", "--lang", "zh", "--format", "text", env={})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Kares 隐私政策\n")
    for heading in ("1.6.1 设备权限调用", "5.8 如何响应您的权利请求", "9. 如何联系我们"):
        assert heading in r.stdout
    squashed = "".join(r.stdout.split())
    for p in CAT.permissions.values():
        assert "".join(p.business.zh.split()) in squashed


@pytest.mark.db_agnostic
def test_render_command_html_and_json() -> None:
    r = cli.run("policy", "render", "--lang", "zh", "--format", "html", env={})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<!doctype html>")
    assert '<html lang="zh-CN">' in r.stdout
    r = cli.run("policy", "render", "--format", "json", env={})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["lang"] == "en" and doc["version"] == CAT.policy.version
    r = cli.run("policy", "render", "--lang", "fr", env={})
    assert r.returncode == 2 and "invalid choice" in r.stderr


async def test_a_chosen_language_is_remembered_in_the_declared_cookie(
    client: httpx.AsyncClient,
) -> None:
    declared = CAT.cookies["kares_lang"]
    r = await client.get("/privacy/cookies", params={"lang": "zh"})
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith("kares_lang=zh;")
    assert f"Max-Age={declared.expires_days * 86400}" in set_cookie
    assert ("HttpOnly" in set_cookie) is declared.http_only
    # later pages, with no lang, come in the language chosen, not the browser's
    r = await client.get("/privacy/policy", headers={"Accept-Language": "en-GB"})
    assert '<html lang="zh-CN">' in r.text
    assert "Cookie" in r.headers["vary"]
    # a page read without choosing sets nothing; every cookie set is declared
    client.cookies.clear()
    r = await client.get("/privacy/policy", headers={"Accept-Language": "en-GB"})
    assert '<html lang="en">' in r.text and "set-cookie" not in r.headers
    r = await client.get("/api/v1/privacy/policy", params={"lang": "zh"})
    assert "set-cookie" not in r.headers
