"""The catalog gaps of step 1, decided in policy version 2026-12-06 (issue 13):

- log information is collected (every request the servers answer is logged),
  so it is a category of account security (1.4);
- WLAN information: the Wi-Fi access points heard near a phone or watch are
  stored only inside location fixes, as precise location; 1.4 says so, and no
  separate category is listed;
- Baidu Tongji was declared but never used: it is gone, with its cookie;
- features carry their display names in the catalog itself.

The rendered policy says each of these under "changes in this version", and
the revision machinery treats the version as the policy (8) says it must.
Version 2026-12-06.2 keeps these changes and adds saved places as a category
of their own (tests/test_policy_revision_notice.py upgrades from 2026-12-06).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kares.domains import metadata
from kares.privacy import catalog as catalog_mod
from kares.privacy import render
from kares.privacy.catalog import CatalogError
from tests.conftest import _wipe, bearer, sign_up
from tests.test_policy_render import all_text, blocks_of, cards, page_text, policy
from tests.test_policy_revision import check, serving

CAT = catalog_mod.load()
VERSION = CAT.policy.version  # 2026-12-06.2
PREVIOUS = "2026-11-27"
SRC = Path(__file__).parents[1] / "src" / "kares"


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for b in blocks:
        if b["type"] == "paragraph":
            out.append(b["text"])
        elif b["type"] == "list":
            out.extend(b["items"])
    return out


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_policy_says_what_changed_in_this_version(
    client: httpx.AsyncClient, lang: str
) -> None:
    doc = await policy(client, lang)
    assert doc["version"] == VERSION and doc["significant"] is True
    changes = [c.get(lang) for c in CAT.policy.changes]
    assert doc["changes"] == changes
    revisions = texts(blocks_of(doc, "s8"))
    for change in changes:
        assert change in revisions
    topics = {
        "en": ["Log information", "WLAN information", "Baidu Tongji", "15 working days"],
        "zh": ["日志信息", "WLAN 信息", "百度统计", "15 个工作日"],
    }[lang]
    for topic in topics:
        assert any(topic in c for c in changes), topic
    said = {
        "en": "It contains significant changes.",
        "zh": "本版本包含重大变更。",
    }[lang]
    assert any(said in t for t in revisions)
    # and the page a person reads says it too
    page = page_text((await client.get("/privacy/policy", params={"lang": lang})).text)
    for change in changes:
        assert change in page


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_log_information_is_listed_under_account_security(
    client: httpx.AsyncClient, lang: str
) -> None:
    logs = CAT.categories["security.logs"]
    assert "security.logs" in CAT.functions["account_security"].categories
    assert logs.retention.days == 180 and not logs.sensitive
    doc = await policy(client, lang)
    assert logs.name.get(lang) in texts(blocks_of(doc, "s1-4"))
    card = cards(doc)["function-account_security"]
    lines = {x["label"]: x["value"] for x in card["fields"]}
    info = lines["Personal information" if lang == "en" else "个人信息"]
    (line,) = [x for x in info if x.startswith(logs.name.get(lang))]
    assert ("kept for 180 days" if lang == "en" else "保存 180 天") in line


@pytest.mark.db_agnostic
def test_log_information_is_what_the_servers_write() -> None:
    """The decision rests on the code: uvicorn's access log (address, request,
    status) reaches the root logger, whose lines carry the time."""
    logs = (SRC / "logs.py").read_text(encoding="utf-8")
    assert re.search(r'"uvicorn\.access"', logs) and "lg.propagate = True" in logs
    assert "%(asctime)s" in logs


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_wlan_information_is_precise_location_and_the_policy_says_so(
    client: httpx.AsyncClient, lang: str
) -> None:
    # what phones and watches report of nearby Wi-Fi is kept in the fix's radio
    # column, declared precise location; no other column holds WLAN information
    radio = metadata.tables["location_fixes"].c["radio"]
    assert radio.info["pi_category"] == "location.precise"
    assert not any("wlan" in k or "wifi" in k for k in CAT.categories)
    doc = await policy(client, lang)
    wlan = [t for t in texts(blocks_of(doc, "s1-4")) if "WLAN" in t]
    assert len(wlan) == 1
    words = {
        "en": ["Wi-Fi access points", "precise location", "We do not record the Wi-Fi network"],
        "zh": ["Wi-Fi 接入点", "精确位置信息", "我们不记录您所连接的 Wi-Fi 网络"],
    }[lang]
    for w in words:
        assert w in wlan[0]
    # the wireless-network permission still stops Wi-Fi positioning (1.6.1)
    feat = CAT.functions["driving_tracks"].features["wlan_fix"]
    assert "wireless_network" in feat.permissions


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_baidu_tongji_is_gone_because_nothing_used_it(
    client: httpx.AsyncClient, lang: str
) -> None:
    assert "baidu_tongji" not in CAT.third_parties
    assert all(c.first_party for c in CAT.cookies.values())
    code = [
        p.read_text(encoding="utf-8")
        for p in SRC.rglob("*")
        if p.is_file() and p.suffix in (".py", ".html", ".js") and p.name != "policy_text.py"
    ]
    assert not any(re.search(r"hm\.baidu\.com|Hm_lvt|tongji", t, re.I) for t in code)
    doc = await policy(client, lang)
    body = all_text({"sections": doc["sections"]})
    for change in CAT.policy.changes:  # only the change that says it went names it
        body = body.replace(change.get(lang), "")
    assert "Baidu" not in body and "百度" not in body
    cookies = page_text((await client.get("/privacy/cookies", params={"lang": lang})).text)
    assert "Baidu" not in cookies and "百度" not in cookies


@pytest.mark.db_agnostic
def test_feature_names_are_read_from_the_catalog(tmp_path: Path) -> None:
    data = yaml.safe_load(catalog_mod.DEFAULT_PATH.read_text(encoding="utf-8"))
    data["functions"]["driving_tracks"]["features"]["wlan_fix"]["name"] = {
        "en": "Locating by nearby hotspots",
        "zh": "通过附近热点定位",
    }
    cat = catalog_mod.parse(yaml.safe_dump(data, allow_unicode=True))
    for lang, name in (("en", "Locating by nearby hotspots"), ("zh", "通过附近热点定位")):
        text = render.text(render.document(cat, lang))
        assert name in text
    assert "Finding your location from nearby Wi-Fi networks" not in render.text(
        render.document(cat, "en")
    )


def previous(tmp_path: Path, *, servable: bool = True) -> Path:
    """The catalog as it stood before this version, in what consents cover:
    without log information and rights requests, with Baidu Tongji. To be served
    over this schema it must still know the category of rights_requests' columns
    (the data map refuses a column of an unknown category), though no function
    used it."""
    data = yaml.safe_load(catalog_mod.DEFAULT_PATH.read_text(encoding="utf-8"))
    data["policy"].update(version=PREVIOUS, significant=False)
    tracks = data["functions"]["driving_tracks"]
    tracks["categories"].remove("location.places")
    tracks["features"]["places"]["categories"].remove("location.places")
    data["functions"]["account_security"]["categories"].remove("security.logs")
    data["functions"]["privacy_choices"]["categories"].remove("rights.requests")
    data["functions"]["privacy_choices"]["features"]["requests"]["categories"] = []
    del data["categories"]["security.logs"]
    if not servable:
        del data["categories"]["rights.requests"]
        del data["categories"]["location.places"]
    data["third_parties"]["baidu_tongji"] = {
        "name": {"en": "Baidu Tongji", "zh": "百度统计"},
        "relation": "sharing",
        "purpose": {"en": "Anonymous web traffic statistics", "zh": "匿名网页流量统计"},
        "categories": [],
    }
    path = tmp_path / f"catalog-{PREVIOUS}-{servable}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def shipped_as(tmp_path: Path, **policy: Any) -> Path:
    data = yaml.safe_load(catalog_mod.DEFAULT_PATH.read_text(encoding="utf-8"))
    data["policy"].update(policy)
    path = tmp_path / "catalog-shipped.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


async def test_upgrading_to_this_version_does_what_section_8_promises(
    client: httpx.AsyncClient, sms: Any, settings: Any, db_url: str, tmp_path: Path
) -> None:
    await _wipe(db_url)  # a service that has only ever served the previous version
    async with serving(settings, previous(tmp_path)) as old:
        me = await sign_up(old, sms, accept_policy=PREVIOUS)
        token = me["token"]

    # three functions take a new kind of information: without the significant flag
    # the service refuses to start
    with pytest.raises(CatalogError, match="must be marked significant"):
        async with serving(settings, shipped_as(tmp_path, significant=False)):
            pass

    async with serving(settings, catalog_mod.DEFAULT_PATH) as new:
        versions = (await new.get("/api/v1/privacy/versions")).json()
        assert [v["version"] for v in versions] == [PREVIOUS, VERSION]
        latest = versions[-1]
        assert latest["significant"] is True
        # the three functions that take a new category are asked about (and, here
        # only, the categories the servable previous catalog had with no function)
        assert latest["asks_again_about"] == [
            "category:location.places",
            "category:rights.requests",
            "function:account_security",
            "function:driving_tracks",
            "function:privacy_choices",
        ]
        assert latest["changes"] == [c.model_dump() for c in CAT.policy.changes]
        # two rest on no consent, so (as 8 now says) they apply without asking
        # again, and what did not change keeps working
        for function, feature in (
            ("account_security", "sessions"),
            ("privacy_choices", "requests"),
            ("messaging", "chat"),
        ):
            r = await check(new, token, function, feature)
            assert r.status_code == 200, (function, r.text)
        # location rests on the accepted policy, and saved places are now kept
        # longer than the 90 days it said: the policy is asked for again
        r = await check(new, token, "driving_tracks", "trackers")
        assert r.status_code == 403 and r.json()["code"] == "consent.reconsent_required"
        consents = (await new.get("/api/v1/me/consents", headers=bearer(token))).json()
        (pol,) = [c for c in consents["consents"] if c["subject"] == "policy"]
        assert pol["granted"] is True and pol["current"] is False
        assert "third_party:baidu_tongji" not in {c["subject"] for c in consents["consents"]}
        r = await new.post(
            "/api/v1/me/consents",
            json={"subject": "policy", "action": "grant", "policy_version": VERSION},
            headers=bearer(token),
        )
        assert r.status_code == 201, r.text
        assert (await check(new, token, "driving_tracks", "trackers")).status_code == 200


@pytest.mark.db_agnostic
def test_against_the_real_previous_version_only_the_three_functions_are_asked_about(
    tmp_path: Path,
) -> None:
    # removing Baidu Tongji takes nothing more; new categories are new subjects
    old = catalog_mod.load(previous(tmp_path, servable=False))
    assert catalog_mod.reductions(old.terms(), CAT.terms()) == [
        "function:account_security",
        "function:driving_tracks",
        "function:privacy_choices",
    ]


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_section_5_8_says_requests_can_be_made_in_the_app(
    client: httpx.AsyncClient, lang: str
) -> None:
    doc = await policy(client, lang)
    said = " ".join(texts(blocks_of(doc, "s5-8")))
    words = {
        "en": ["from the app", "the date by which we will answer", "withdraw", "A guardian"],
        "zh": ["在应用内提交", "截止日期", "撤回", "监护人"],
    }[lang]
    for w in words:
        assert w in said, w
    days = CAT.policy.response_working_days
    assert (f"{days} working days" if lang == "en" else f"{days} 个工作日") in said
