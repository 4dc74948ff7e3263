"""The privacy catalog: the shipped one loads; a broken one is refused, naming the entry.

Each broken catalog is the shipped one with one thing wrong, written to a
file, then loaded (``catalog.load``) and checked with ``kares policy check
--catalog``, which must exit 2 and name the same entry.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kares.privacy import catalog
from kares.privacy.catalog import CatalogError
from tests.support import cli
from tests.test_cli import run_kares

pytestmark = pytest.mark.db_agnostic  # no database: runs in the SQLite tier only

Raw = dict[str, Any]


def shipped() -> Raw:
    raw = yaml.safe_load(catalog.DEFAULT_PATH.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


def write(tmp_path: Path, raw: Raw | str) -> Path:
    path = tmp_path / "bad.yaml"
    text = raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_catalog_loads() -> None:
    cat = catalog.load()
    assert cat.policy.contact_email == "support@auroraKare.com"
    assert cat.policy.response_working_days == 15
    # table 1.6.1 of the seed policy, in its order
    assert [p.name.en for p in cat.permissions.values()] == [
        "Location",
        "Microphone",
        "Photos",
        "Calendar",
        "Camera",
        "Notifications",
        "Make Phone Calls",
        "Storage",
        "Device Information (OAID, etc.)",
        "Wireless Network",
        "Motion and Fitness",
        "Floating Window",
    ]
    assert all(cat.functions_using(k) for k in cat.categories), "a category no function uses"
    # the shipped file parses the same through a round trip of its data
    assert catalog.parse(yaml.safe_dump(shipped(), allow_unicode=True)).digest() == cat.digest()


def test_policy_check_command_accepts_the_shipped_catalog() -> None:
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = run_kares("policy", "check", env={})
    assert r.returncode == 0, r.stderr
    cat = catalog.load()
    assert "catalog OK" in r.stdout
    assert cat.policy.version in r.stdout
    assert f"{len(cat.functions)} functions" in r.stdout
    assert cat.digest() in r.stdout
    r = cli.run("policy", "check", "--catalog", str(catalog.DEFAULT_PATH), env={})
    assert r.returncode == 0, r.stderr


# --- one thing wrong each ----------------------------------------------------------------


def unknown_category(raw: Raw) -> list[str]:
    fkey = next(iter(raw["functions"]))
    raw["functions"][fkey]["categories"].append("health.dna")
    return [f"functions.{fkey}.categories", "unknown category 'health.dna'"]


def unknown_permission(raw: Raw) -> list[str]:
    for fkey, f in raw["functions"].items():
        for name, feat in (f.get("features") or {}).items():
            feat["permissions"] = ["teleport"]
            return [f"functions.{fkey}.features.{name}", "unknown permission 'teleport'"]
    raise AssertionError("no feature in the catalog")


def sensitive_fallback(raw: Raw) -> list[str]:
    cats = raw["categories"]
    sensitive = [k for k, c in cats.items() if c["sensitive"]]
    ckey = next((k for k, c in cats.items() if c.get("fallback")), sensitive[0])
    target = next(k for k in sensitive if k != ckey)
    cats[ckey]["fallback"] = target
    return [f"categories.{ckey}.fallback", f"'{target}' is sensitive"]


def days_and_kept(raw: Raw) -> list[str]:
    ckey = next(iter(raw["categories"]))
    raw["categories"][ckey]["retention"] = {"days": 30, "kept": "account", "then": "delete"}
    return [f"categories.{ckey}.retention", "exactly one of 'days' or 'kept"]


def extended_without_consent(raw: Raw) -> list[str]:
    fkey = next(k for k, f in raw["functions"].items() if f["kind"] == "extended")
    basis = next(k for k, b in raw["legal_bases"].items() if not b["needs_consent"])
    raw["functions"][fkey]["legal_basis"] = basis
    return [f"functions.{fkey}.legal_basis", "an extended function needs consent"]


def missing_translation(raw: Raw) -> list[str]:
    pkey = next(iter(raw["permissions"]))
    del raw["permissions"][pkey]["method"]["zh"]
    return [f"permissions.{pkey}.method.zh", "Field required"]


def unknown_legal_basis(raw: Raw) -> list[str]:
    fkey = next(iter(raw["functions"]))
    raw["functions"][fkey]["legal_basis"] = "because"
    return [f"functions.{fkey}.legal_basis", "unknown legal basis 'because'"]


def sdk_unknown_permission(raw: Raw) -> list[str]:
    skey = next(iter(raw["sdks"]))
    raw["sdks"][skey]["permissions"] = ["bluetooth"]
    return [f"sdks.{skey}.permissions", "unknown permission 'bluetooth'"]


def third_party_cookie_unnamed(raw: Raw) -> list[str]:
    # the shipped catalog sets no third-party cookie (Baidu Tongji went in 2026-12-06)
    raw["cookies"]["tracker"] = {
        "kind": "analytics",
        "purpose": {"en": "Counts visits", "zh": "统计访问"},
        "expires_days": 30,
        "http_only": False,
        "first_party": False,
    }
    return ["cookies.tracker", "a third-party cookie names its third party"]


def feature_unnamed(raw: Raw) -> list[str]:
    del raw["functions"]["health"]["features"]["steps"]["name"]
    return ["functions.health.features.steps.name", "Field required"]


BREAKS: list[Callable[[Raw], list[str]]] = [
    unknown_category,
    unknown_permission,
    sensitive_fallback,
    days_and_kept,
    extended_without_consent,
    missing_translation,
    unknown_legal_basis,
    sdk_unknown_permission,
    third_party_cookie_unnamed,
    feature_unnamed,
]


@pytest.mark.parametrize("brk", BREAKS, ids=lambda f: f.__name__)
def test_a_broken_catalog_is_refused_naming_the_entry(
    tmp_path: Path, brk: Callable[[Raw], list[str]]
) -> None:
    raw = copy.deepcopy(shipped())
    expected = brk(raw)
    path = write(tmp_path, raw)
    with pytest.raises(CatalogError) as err:
        catalog.load(path)
    for part in expected:
        assert part in str(err.value)
    assert str(path) in str(err.value)

    r = cli.run("policy", "check", "--catalog", str(path), env={})
    assert r.returncode == 2, r.stdout
    assert "catalog error" in r.stderr
    for part in expected:
        assert part in r.stderr
    assert "catalog OK" not in r.stdout
    assert "Traceback" not in r.stderr


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = catalog.DEFAULT_PATH.read_text(encoding="utf-8")
    path = write(tmp_path, text.replace("policy:\n", "policy: [unclosed\n", 1))
    with pytest.raises(CatalogError) as err:
        catalog.load(path)
    assert f"{path}: not valid YAML" in str(err.value)
    r = cli.run("policy", "check", "--catalog", str(path), env={})
    assert r.returncode == 2
    assert f"{path}: not valid YAML" in r.stderr
    assert "line" in r.stderr  # where in the file


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n")
    with pytest.raises(CatalogError, match="must be a mapping"):
        catalog.load(path)
    missing = tmp_path / "nope.yaml"
    r = cli.run("policy", "check", "--catalog", str(missing), env={})
    assert r.returncode == 2 and "cannot read the catalog" in r.stderr


def test_check_reads_the_configured_catalog(tmp_path: Path) -> None:
    raw = copy.deepcopy(shipped())
    expected = unknown_category(raw)
    path = write(tmp_path, raw)
    r = cli.run("policy", "check", env={"KARES_PRIVACY_CATALOG": str(path)})
    assert r.returncode == 2
    assert expected[0] in r.stderr
    # --catalog wins over the setting
    r = cli.run(
        "policy",
        "check",
        "--catalog",
        str(catalog.DEFAULT_PATH),
        env={"KARES_PRIVACY_CATALOG": str(path)},
    )
    assert r.returncode == 0, r.stderr


def test_render_refuses_a_broken_catalog(tmp_path: Path) -> None:
    raw = copy.deepcopy(shipped())
    expected = unknown_permission(raw)
    path = write(tmp_path, raw)
    r = cli.run("policy", "render", "--catalog", str(path), env={})
    assert r.returncode == 2
    assert expected[0] in r.stderr
    assert r.stdout == ""


def test_help_lists_the_policy_commands() -> None:
    r = cli.run("--help", env={})
    assert "policy" in r.stdout
    r = cli.run("policy", "--help", env={})
    assert r.returncode == 0 and "check" in r.stdout and "render" in r.stdout
    r = cli.run("policy", "render", "--help", env={})
    assert "--lang" in r.stdout and "--format" in r.stdout and "--catalog" in r.stdout
